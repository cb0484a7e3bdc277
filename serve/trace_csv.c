/* trace_csv.c -- the RFC 4180 record reader of the serve module (serve_internal.h): the kvr
 * trace reader and the Azure / BurstGPT importers read their files through it, so quoting,
 * line counting and the limits live in one place. It takes a length-delimited buffer, never
 * reads past it, bounds every size, and is fuzzed through tests/fuzz/fuzz_trace.c. */
#include "serve_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void trace_csv_init(trace_csv *c, const char *buf, size_t len, const char *name, kvr_error *err) {
    memset(c, 0, sizeof *c);
    c->buf = buf;
    c->len = buf ? len : 0;
    c->name = name ? name : "trace";
    c->line = 1;
    c->err = err;
    if (c->len >= 3 && (unsigned char)buf[0] == 0xEF && (unsigned char)buf[1] == 0xBB &&
        (unsigned char)buf[2] == 0xBF)
        c->pos = 3; /* UTF-8 byte order mark */
}

void trace_csv_free(trace_csv *c) {
    free(c->data);
    c->data = NULL;
    c->data_cap = c->data_len = 0;
}

kvr_status trace_csv_fail(const trace_csv *c, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kvr_error_set(c->err, KVR_ERR_FORMAT, "%.200s:%lld: %s", c->name,
                         (long long)c->rec_line, msg);
}

static kvr_status trace_csv_put(trace_csv *c, char ch) {
    if (c->data_len + 1 >= c->data_cap) {
        size_t nc = c->data_cap ? c->data_cap * 2 : 256;
        char *p = realloc(c->data, nc);
        if (!p) return kvr_error_set(c->err, KVR_ERR_NOMEM, "%s: out of memory", c->name);
        c->data = p;
        c->data_cap = nc;
    }
    c->data[c->data_len++] = ch;
    return KVR_OK;
}

/* Skip blank lines and '#' comment lines at pos (a record's start). */
static void trace_csv_skip_lines(trace_csv *c) {
    while (c->pos < c->len) {
        const char *s = c->buf + c->pos;
        const size_t n = c->len - c->pos;
        const char *nl = memchr(s, '\n', n);
        const size_t ll = nl ? (size_t)(nl - s) : n;
        bool skip = s[0] == '#';
        if (!skip) {
            size_t i = 0;
            while (i < ll && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r')) i++;
            skip = i == ll;
        }
        if (!skip || memchr(s, 0, ll)) return; /* a NUL is the record reader's error */
        c->pos += ll + (nl ? 1 : 0);
        if (nl) c->line++;
    }
}

kvr_status trace_csv_next(trace_csv *c, bool *got) {
    *got = false;
    c->n_fields = 0;
    c->data_len = 0;
    trace_csv_skip_lines(c);
    if (c->pos >= c->len) return KVR_OK;
    c->rec_line = c->line;
    const char *s = c->buf;
    const size_t n = c->len;
    size_t i = c->pos;
    for (;;) { /* one field per turn */
        if (c->n_fields >= TRACE_CSV_MAX_FIELDS)
            return trace_csv_fail(c, "more than %d fields", TRACE_CSV_MAX_FIELDS);
        const int k = c->n_fields;
        c->off[k] = c->data_len;
        size_t start = c->data_len;
        while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
        if (i < n && s[i] == '"') {
            const int64_t open_line = c->line;
            i++;
            for (;;) {
                if (i >= n)
                    return trace_csv_fail(c, "field %d: the quote opened on line %lld is never "
                                             "closed",
                                          k + 1, (long long)open_line);
                char ch = s[i];
                if (ch == 0) return trace_csv_fail(c, "NUL byte (not a text file?)");
                if (ch == '"') {
                    if (i + 1 < n && s[i + 1] == '"') {
                        i += 2;
                    } else {
                        i++;
                        break;
                    }
                } else {
                    i++;
                    if (ch == '\n') c->line++;
                }
                if (c->data_len - start + 1 >= TRACE_CSV_MAX_FIELD)
                    return trace_csv_fail(c, "field %d longer than %zu bytes", k + 1,
                                          (size_t)TRACE_CSV_MAX_FIELD - 1);
                KVR_TRY(trace_csv_put(c, ch));
            }
            while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
            if (i < n && s[i] == '\r' && (i + 1 >= n || s[i + 1] == '\n')) i++;
            if (i < n && s[i] != ',' && s[i] != '\n')
                return trace_csv_fail(c, "field %d: text after the closing quote", k + 1);
        } else {
            while (i < n && s[i] != ',' && s[i] != '\n') {
                char ch = s[i];
                if (ch == 0) return trace_csv_fail(c, "NUL byte (not a text file?)");
                if (ch == '"')
                    return trace_csv_fail(c, "field %d: quote inside an unquoted field (quote "
                                             "the whole field and double the quote)",
                                          k + 1);
                if (c->data_len - start + 1 >= TRACE_CSV_MAX_FIELD)
                    return trace_csv_fail(c, "field %d longer than %zu bytes", k + 1,
                                          (size_t)TRACE_CSV_MAX_FIELD - 1);
                KVR_TRY(trace_csv_put(c, ch));
                i++;
            }
            /* drop the CR of a CRLF and trailing spaces */
            while (c->data_len > start &&
                   (c->data[c->data_len - 1] == ' ' || c->data[c->data_len - 1] == '\t' ||
                    (c->data[c->data_len - 1] == '\r' && (i >= n || s[i] == '\n'))))
                c->data_len--;
        }
        KVR_TRY(trace_csv_put(c, 0));
        c->n_fields++;
        if (i >= n) break;
        if (s[i] == '\n') {
            i++;
            c->line++;
            break;
        }
        i++; /* the comma */
        if (i >= n) { /* "a,b," at the very end: one more, empty field */
            if (c->n_fields >= TRACE_CSV_MAX_FIELDS)
                return trace_csv_fail(c, "more than %d fields", TRACE_CSV_MAX_FIELDS);
            c->off[c->n_fields] = c->data_len;
            KVR_TRY(trace_csv_put(c, 0));
            c->n_fields++;
            break;
        }
    }
    c->pos = i;
    *got = true;
    return KVR_OK;
}

kvr_status trace_csv_columns(const trace_csv *c, const char *const *names, const bool *required,
                             int n_names, bool strict, int *col) {
    for (int j = 0; j < n_names; j++) col[j] = -1;
    for (int i = 0; i < c->n_fields; i++) {
        const char *h = trace_csv_field(c, i);
        int which = -1;
        for (int j = 0; j < n_names; j++)
            if (!strcasecmp(h, names[j])) which = j;
        if (which < 0) {
            if (strict)
                return trace_csv_fail(c, "unknown column '%.60s' in the header", h);
            continue;
        }
        if (col[which] >= 0) return trace_csv_fail(c, "column '%s' named twice", names[which]);
        col[which] = i;
    }
    for (int j = 0; j < n_names; j++) {
        if (col[j] >= 0 || !required[j]) continue;
        char found[200];
        size_t fl = 0;
        found[0] = 0;
        for (int i = 0; i < c->n_fields && fl + 4 < sizeof found; i++) {
            int w = snprintf(found + fl, sizeof found - fl, "%s'%.40s'", i ? ", " : "",
                             trace_csv_field(c, i));
            if (w < 0) break;
            fl += (size_t)w;
            if (fl >= sizeof found) fl = sizeof found - 1;
        }
        return trace_csv_fail(c, "no column '%s' in the header (found %s)", names[j],
                              found[0] ? found : "nothing");
    }
    return KVR_OK;
}

kvr_status trace_csv_check_width(const trace_csv *c, int n_header) {
    if (c->n_fields == n_header) return KVR_OK;
    return trace_csv_fail(c, "%d field%s, the header has %d", c->n_fields,
                          c->n_fields == 1 ? "" : "s", n_header);
}

kvr_status trace_csv_i64(const trace_csv *c, const char *what, const char *v, int64_t lo,
                         int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long r = strtoll(v, &end, 10);
    if (!*v || *end || errno == ERANGE || strpbrk(v, "xX")) {
        /* "12.0" is a whole number written as a float (some exports do that) */
        double d = strtod(v, &end);
        if (*v && !*end && !strpbrk(v, "xX") && isfinite(d) && d == floor(d) && fabs(d) < 9e15) {
            r = (long long)d;
        } else {
            return trace_csv_fail(c, "column '%s': '%.40s' is not a whole number", what, v);
        }
    }
    if (r < lo || r > hi)
        return trace_csv_fail(c, "column '%s': %lld is out of range [%lld, %lld]", what, r,
                              (long long)lo, (long long)hi);
    *out = r;
    return KVR_OK;
}

kvr_status trace_csv_f64(const trace_csv *c, const char *what, const char *v, double lo,
                         double hi, double *out) {
    char *end;
    errno = 0;
    double r = strtod(v, &end);
    if (!*v || *end || strpbrk(v, "xX") || !isfinite(r) || (errno == ERANGE && fabs(r) > 1))
        return trace_csv_fail(c, "column '%s': '%.40s' is not a finite number", what, v);
    if (!(r >= lo && r <= hi))
        return trace_csv_fail(c, "column '%s': %.17g is out of range [%g, %g]", what, r, lo, hi);
    *out = r;
    return KVR_OK;
}
