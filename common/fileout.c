/* fileout.c -- outputs that cannot destroy inputs: the same-file check (device + inode after
 * links) and the atomic whole-file writer (temporary beside the target, fsync, rename), with a
 * signal handler that removes an open temporary when the process is interrupted. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "kvr_common.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool kvr_path_same_file(const char *a, const char *b) {
    if (!a || !b || !*a || !*b) return false;
    struct stat sa, sb;
    if (stat(a, &sa) != 0 || stat(b, &sb) != 0) return false;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

kvr_status kvr_output_check(const char *out_what, const char *out, const kvr_path_role *inputs,
                            int n_inputs, kvr_error *err) {
    if (!out || !*out || !strcmp(out, "-")) return KVR_OK;
    struct stat so;
    if (stat(out, &so) == 0 && S_ISDIR(so.st_mode))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s %s: is a directory", out_what, out);
    for (int i = 0; i < n_inputs; i++) {
        const char *in = inputs[i].path;
        if (!in || !*in || !strcmp(in, "-")) continue;
        if (kvr_path_same_file(out, in))
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "%s %s is the same file as %s %s: refusing to overwrite an input",
                                 out_what, out, inputs[i].what, in);
    }
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// temporaries removed on SIGINT/SIGTERM/SIGHUP/SIGPIPE

#define KVR_ATOMIC_SLOTS 16
static char kvr_atomic_tmp[KVR_ATOMIC_SLOTS][PATH_MAX + 32];
static volatile sig_atomic_t kvr_atomic_used[KVR_ATOMIC_SLOTS];
static bool kvr_atomic_handlers;
static const int kvr_atomic_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};

static void kvr_atomic_on_signal(int sig) {
    for (int i = 0; i < KVR_ATOMIC_SLOTS; i++)
        if (kvr_atomic_used[i]) unlink(kvr_atomic_tmp[i]); /* async-signal-safe */
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Install the handler where the disposition is the default (a tool's own handler or an
 * ignored signal stays as it is). */
static void kvr_atomic_install(void) {
    if (kvr_atomic_handlers) return;
    kvr_atomic_handlers = true;
    for (size_t i = 0; i < sizeof kvr_atomic_signals / sizeof kvr_atomic_signals[0]; i++) {
        struct sigaction old, sa;
        if (sigaction(kvr_atomic_signals[i], NULL, &old) != 0 || old.sa_handler != SIG_DFL)
            continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = kvr_atomic_on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(kvr_atomic_signals[i], &sa, NULL);
    }
}

static int kvr_atomic_register(const char *tmp) {
    if (strlen(tmp) >= sizeof kvr_atomic_tmp[0]) return -1;
    for (int i = 0; i < KVR_ATOMIC_SLOTS; i++)
        if (!kvr_atomic_used[i]) {
            memcpy(kvr_atomic_tmp[i], tmp, strlen(tmp) + 1);
            kvr_atomic_used[i] = 1;
            return i;
        }
    return -1;
}

static void kvr_atomic_release(kvr_atomic_file *af) {
    if (af->slot >= 0) kvr_atomic_used[af->slot] = 0;
    af->slot = -1;
}

// ----------------------------------------------------------------------------
// the writer

static void kvr_atomic_clear(kvr_atomic_file *af) {
    free(af->path);
    free(af->tmp);
    af->f = NULL;
    af->path = af->tmp = NULL;
    af->slot = -1;
}

kvr_status kvr_atomic_open(kvr_atomic_file *af, const char *path, kvr_error *err) {
    memset(af, 0, sizeof *af);
    af->slot = -1;
    if (!path || !*path) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "empty output path");
    struct stat st;
    bool exists = stat(path, &st) == 0;
    if (exists && S_ISDIR(st.st_mode))
        return kvr_error_set(err, KVR_ERR_IO, "cannot write %s: is a directory", path);
    if (exists && !S_ISREG(st.st_mode)) { /* a device or a FIFO: no rename onto it */
        af->path = strdup(path);
        if (!af->path) return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", path);
        af->f = fopen(path, "w");
        if (!af->f) {
            kvr_error_set(err, KVR_ERR_IO, "cannot write %s: %s", path, strerror(errno));
            kvr_atomic_clear(af);
            return KVR_ERR_IO;
        }
        return KVR_OK;
    }
    /* a symbolic link: write through to its target, so the link stays a link */
    char *target = exists ? realpath(path, NULL) : NULL;
    af->path = target ? target : strdup(path);
    if (!af->path) return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", path);
    const char *slash = strrchr(af->path, '/');
    const size_t dlen = slash ? (size_t)(slash - af->path) + 1 : 0;
    const char *base = slash ? slash + 1 : af->path;
    const size_t n = dlen + strlen(base) + 16;
    af->tmp = malloc(n);
    if (!af->tmp) {
        kvr_atomic_clear(af);
        return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(af->tmp, n, "%.*s.%s.XXXXXX", (int)dlen, af->path, base);
    int fd = mkstemp(af->tmp);
    if (fd < 0) {
        kvr_error_set(err, KVR_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        kvr_atomic_clear(af);
        return KVR_ERR_IO;
    }
    kvr_atomic_install();
    af->slot = kvr_atomic_register(af->tmp);
    mode_t mode;
    if (exists) {
        mode = st.st_mode & 07777;
    } else {
        mode_t um = umask(022);
        umask(um);
        mode = 0666 & ~um;
    }
    const int mode_rc = fchmod(fd, mode); /* a failure keeps mkstemp's 0600: content first */
    (void)mode_rc;
    af->f = fdopen(fd, "w");
    if (!af->f) {
        kvr_error_set(err, KVR_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        close(fd);
        unlink(af->tmp);
        kvr_atomic_release(af);
        kvr_atomic_clear(af);
        return KVR_ERR_IO;
    }
    return KVR_OK;
}

void kvr_atomic_abort(kvr_atomic_file *af) {
    if (!af) return;
    if (af->f) fclose(af->f);
    if (af->tmp) unlink(af->tmp);
    kvr_atomic_release(af);
    kvr_atomic_clear(af);
}

kvr_status kvr_atomic_commit(kvr_atomic_file *af, kvr_error *err) {
    if (!af || !af->f) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "no open output file");
    int e = 0;
    if (fflush(af->f) != 0 || ferror(af->f)) e = errno ? errno : EIO;
    if (!e && af->tmp && fsync(fileno(af->f)) != 0) e = errno;
    if (fclose(af->f) != 0 && !e) e = errno ? errno : EIO;
    af->f = NULL;
    if (!e && af->tmp && rename(af->tmp, af->path) != 0) e = errno;
    if (e) {
        kvr_error_set(err, KVR_ERR_IO, "cannot write %s: %s", af->path, strerror(e));
        kvr_atomic_abort(af);
        return KVR_ERR_IO;
    }
    if (af->tmp) { /* the rename itself to disk: fsync the directory (best effort) */
        const char *slash = strrchr(af->path, '/');
        char *dir = slash ? strndup(af->path, (size_t)(slash - af->path) + 1) : strdup(".");
        int dfd = dir ? open(dir, O_RDONLY) : -1;
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
    kvr_atomic_release(af);
    kvr_atomic_clear(af);
    return KVR_OK;
}

kvr_status kvr_write_file_atomic(const char *path, const void *data, size_t len, kvr_error *err) {
    kvr_atomic_file af;
    KVR_TRY(kvr_atomic_open(&af, path, err));
    if (len && fwrite(data, 1, len, af.f) != len) {
        kvr_error_set(err, KVR_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        kvr_atomic_abort(&af);
        return KVR_ERR_IO;
    }
    return kvr_atomic_commit(&af, err);
}
