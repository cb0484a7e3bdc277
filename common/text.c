/* text.c -- whole-file reads and maps, string copies and the growable text buffer
 * (kvr_common.h). */
#include "kvr_common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define KVR_READ_MAX_DEFAULT ((size_t)1 << 30)

kvr_status kvr_read_stream(FILE *f, const char *name, size_t max_bytes, char **out, size_t *len,
                           kvr_error *err) {
    if (!f || !out || !len) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "read: NULL argument");
    if (!name) name = "(stream)";
    if (max_bytes == 0) max_bytes = KVR_READ_MAX_DEFAULT;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 4096 + 1) { /* room for a read and the NUL */
            if (cap > max_bytes) {
                free(buf);
                return kvr_error_set(err, KVR_ERR_FORMAT, "%s: larger than %zu bytes", name,
                                     max_bytes);
            }
            size_t nc = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, nc);
            if (!nb) {
                free(buf);
                return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", name);
            }
            buf = nb;
            cap = nc;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        int e = errno;
        free(buf);
        return kvr_error_set(err, KVR_ERR_IO, "%s: read error: %s", name,
                             e ? strerror(e) : "unknown");
    }
    if (n > max_bytes) {
        free(buf);
        return kvr_error_set(err, KVR_ERR_FORMAT, "%s: larger than %zu bytes", name, max_bytes);
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return KVR_OK;
}

kvr_status kvr_read_file(const char *path, size_t max_bytes, char **out, size_t *len,
                         kvr_error *err) {
    if (!path) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "read: NULL path");
    bool std_in = strcmp(path, "-") == 0;
    FILE *f = std_in ? stdin : fopen(path, "rb");
    if (!f) return kvr_error_set(err, KVR_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (!std_in && fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fclose(f);
        return kvr_error_set(err, KVR_ERR_IO, "%s: is a directory", path);
    }
    kvr_status s = kvr_read_stream(f, path, max_bytes, out, len, err);
    if (!std_in) fclose(f);
    return s;
}

kvr_status kvr_file_map_open(const char *path, bool heap, size_t max_bytes, kvr_file_map *f,
                             kvr_error *err) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return kvr_error_set(err, e == ENOENT ? KVR_ERR_NOT_FOUND : KVR_ERR_IO, "%s: %s", path,
                             strerror(e));
    }
    struct stat stt;
    if (fstat(fd, &stt) != 0) {
        int e = errno;
        close(fd);
        return kvr_error_set(err, KVR_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(stt.st_mode)) {
        close(fd);
        return kvr_error_set(err, KVR_ERR_IO, "%s: %s", path,
                             S_ISDIR(stt.st_mode) ? "is a directory" : "not a regular file");
    }
    if ((uint64_t)stt.st_size > (uint64_t)SIZE_MAX / 2 ||
        (max_bytes && (uint64_t)stt.st_size > max_bytes)) {
        close(fd);
        return kvr_error_set(err, max_bytes ? KVR_ERR_FORMAT : KVR_ERR_IO, "%s: file too large",
                             path);
    }
    f->len = (size_t)stt.st_size;
    if (f->len == 0) {
        close(fd);
        return KVR_OK;
    }
    if (!heap) {
        void *p = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p != MAP_FAILED) {
            f->map = p;
            f->p = p;
            close(fd);
            return KVR_OK;
        }
    }
    f->heap = malloc(f->len);
    if (!f->heap) {
        close(fd);
        size_t n = f->len;
        memset(f, 0, sizeof *f);
        return kvr_error_set(err, KVR_ERR_NOMEM, "%s: cannot read %zu bytes", path, n);
    }
    size_t got = 0;
    while (got < f->len) {
        ssize_t r = read(fd, (char *)f->heap + got, f->len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            close(fd);
            free(f->heap);
            memset(f, 0, sizeof *f);
            return kvr_error_set(err, KVR_ERR_IO, "%s: read: %s", path,
                                 r == 0 ? "file shrank while reading" : strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    f->p = f->heap;
    return KVR_OK;
}

void kvr_file_map_close(kvr_file_map *f) {
    if (f->map) munmap(f->map, f->len);
    free(f->heap);
    memset(f, 0, sizeof *f);
}

char *kvr_strdup(const char *s) {
    if (!s) s = "";
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

// ----------------------------------------------------------------------------
// growable text

/* Make room for n more bytes and the NUL. */
static bool kvr_text_reserve(kvr_text *t, size_t n) {
    if (t->nomem) return false;
    if (t->s && t->cap - t->len > n) return true;
    size_t nc = t->cap ? t->cap : 4096;
    while (nc - t->len <= n) {
        if (nc > SIZE_MAX / 2) {
            t->nomem = true;
            return false;
        }
        nc *= 2;
    }
    char *ns = realloc(t->s, nc);
    if (!ns) {
        t->nomem = true;
        return false;
    }
    t->s = ns;
    t->cap = nc;
    return true;
}

kvr_status kvr_text_vprintf(kvr_text *t, const char *fmt, va_list ap) {
    if (t->nomem) return KVR_ERR_NOMEM;
    va_list ap2;
    va_copy(ap2, ap);
    int k = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
    if (k >= 0 && t->s && (size_t)k < t->cap - t->len) {
        t->len += (size_t)k;
        va_end(ap2);
        return KVR_OK;
    }
    if (k < 0 || !kvr_text_reserve(t, (size_t)k)) {
        t->nomem = true;
        va_end(ap2);
        return KVR_ERR_NOMEM;
    }
    vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap2);
    va_end(ap2);
    t->len += (size_t)k;
    return KVR_OK;
}

kvr_status kvr_text_printf(kvr_text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    kvr_status s = kvr_text_vprintf(t, fmt, ap);
    va_end(ap);
    return s;
}

kvr_status kvr_text_append(kvr_text *t, const char *s, size_t n) {
    if (!kvr_text_reserve(t, n)) return KVR_ERR_NOMEM;
    if (n) memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = 0;
    return KVR_OK;
}

kvr_status kvr_text_take(kvr_text *t, char **out, const char *what, kvr_error *err) {
    if (!t->nomem && !t->s) kvr_text_reserve(t, 0);
    if (t->nomem) {
        kvr_text_free(t);
        return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (%s)", what ? what : "text");
    }
    t->s[t->len] = 0;
    *out = t->s;
    memset(t, 0, sizeof *t);
    return KVR_OK;
}

void kvr_text_free(kvr_text *t) {
    free(t->s);
    memset(t, 0, sizeof *t);
}
