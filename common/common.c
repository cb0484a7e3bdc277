/* common.c -- status strings, error formatting, the log hook, clocks and the progress bar. */
#include "kvr_common.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kvr_version.h"  // KVR_GIT_COMMIT, generated at build time (cmake/kvr_version.cmake)
#ifndef KVR_VERSION_STRING
#define KVR_VERSION_STRING "0.1.0"
#endif

static const char *const kvr_status_names[] = {
    "ok",           "invalid argument", "out of memory", "I/O error",      "database error",
    "CUDA error",   "NCCL error",       "numeric error", "unsupported",    "not found",
    "format error", "communication error", "internal error",
};
_Static_assert(sizeof(kvr_status_names) / sizeof(kvr_status_names[0]) == KVR_STATUS_COUNT,
               "status table out of sync");

const char *kvr_status_str(kvr_status s) {
    if ((int)s < 0 || s >= KVR_STATUS_COUNT) return "unknown status";
    return kvr_status_names[s];
}

kvr_status kvr_error_set(kvr_error *err, kvr_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

kvr_status kvr_error_prefix(kvr_error *err, const char *fmt, ...) {
    if (!err) return KVR_OK;
    char pre[256], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%.250s: %.255s", pre, old);
    return err->code;
}

void kvr_abort_(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "kvr: %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

// ----------------------------------------------------------------------------
// operations

static const char *const kvr_op_names[] = {"embed", "pre", "attn", "post", "head", "link"};
_Static_assert(sizeof kvr_op_names / sizeof kvr_op_names[0] == KVR_OP_COUNT, "op names");

const char *kvr_op_name(kvr_op op) {
    return ((int)op >= 0 && op < KVR_OP_COUNT) ? kvr_op_names[op] : "unknown";
}

kvr_status kvr_op_parse(const char *s, kvr_op *out, kvr_error *err) {
    int i = kvr_name_index(kvr_op_names, KVR_OP_COUNT, s);
    if (i >= 0) {
        *out = (kvr_op)i;
        return KVR_OK;
    }
    return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                         "unknown op \"%s\" (embed, pre, attn, post, head or link)",
                         s ? s : "(null)");
}

// ----------------------------------------------------------------------------
// modes and strategies

static const char *const kvr_mode_names[] = {"single", "kvr", "tsp", "ring"};
_Static_assert(sizeof kvr_mode_names / sizeof kvr_mode_names[0] == KVR_MODE_COUNT, "mode names");

const char *kvr_mode_name(kvr_mode m) {
    return ((int)m >= 0 && m < KVR_MODE_COUNT) ? kvr_mode_names[m] : "unknown";
}

kvr_status kvr_mode_parse(const char *s, kvr_mode *out, kvr_error *err) {
    int i = kvr_name_index(kvr_mode_names, KVR_MODE_COUNT, s);
    if (i >= 0) {
        *out = (kvr_mode)i;
        return KVR_OK;
    }
    return kvr_error_set(err, KVR_ERR_INVALID_ARG, "unknown mode '%s' (single, kvr, tsp, ring)",
                         s ? s : "(null)");
}

static const char *const kvr_strategy_names[] = {"kvr-s", "kvr-e", "tsp", "ring", "single"};
_Static_assert(sizeof kvr_strategy_names / sizeof kvr_strategy_names[0] == KVR_STRATEGY_COUNT,
               "strategy names");

const char *kvr_strategy_name(kvr_strategy s) {
    return (unsigned)s < KVR_STRATEGY_COUNT ? kvr_strategy_names[s] : "?";
}

kvr_status kvr_strategy_parse(const char *name, kvr_strategy *out, kvr_error *err) {
    int i = kvr_name_index(kvr_strategy_names, KVR_STRATEGY_COUNT, name);
    if (i >= 0) {
        *out = (kvr_strategy)i;
        return KVR_OK;
    }
    return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                         "unknown strategy \"%s\" (expected kvr-s, kvr-e, tsp, ring or single)",
                         name ? name : "(null)");
}

kvr_strategy kvr_mode_strategy(kvr_mode m, bool even_partition) {
    switch (m) {
        case KVR_MODE_SINGLE: return KVR_STRATEGY_SINGLE;
        case KVR_MODE_TSP: return KVR_STRATEGY_TSP;
        case KVR_MODE_RING: return KVR_STRATEGY_RING;
        default: return even_partition ? KVR_STRATEGY_KVR_E : KVR_STRATEGY_KVR_S;
    }
}

kvr_mode kvr_strategy_mode(kvr_strategy s) {
    switch (s) {
        case KVR_STRATEGY_KVR_S:
        case KVR_STRATEGY_KVR_E: return KVR_MODE_KVR;
        case KVR_STRATEGY_TSP: return KVR_MODE_TSP;
        case KVR_STRATEGY_SINGLE: return KVR_MODE_SINGLE;
        case KVR_STRATEGY_RING: return KVR_MODE_RING;
        default: return KVR_MODE_COUNT;
    }
}

bool kvr_strategy_runnable(kvr_strategy s, const char *backend, const char *transport) {
    /* every transport runs every mode the runtime has; ring needs the backend's blockwise
     * attention (kvr_op_attn_block), which both backends (cpu, cuda) have */
    (void)backend, (void)transport;
    return s >= 0 && s < KVR_STRATEGY_COUNT && kvr_strategy_mode(s) != KVR_MODE_COUNT;
}

unsigned kvr_strategy_runnable_mask(const char *backend, const char *transport) {
    unsigned m = 0;
    for (int k = 0; k < KVR_STRATEGY_COUNT; k++)
        if (kvr_strategy_runnable((kvr_strategy)k, backend, transport)) m |= 1u << k;
    return m;
}

// ----------------------------------------------------------------------------
// logging

static void kvr_log_default(kvr_log_level level, const char *msg, void *user) {
    (void)user;
    if (level >= KVR_LOG_WARN) fprintf(stderr, "kvr: %s\n", msg);
}
static kvr_log_fn kvr_log_fn_cur = kvr_log_default;
static void *kvr_log_user;

void kvr_log_set(kvr_log_fn fn, void *user) {
    kvr_log_fn_cur = fn ? fn : kvr_log_default;
    kvr_log_user = user;
}

void kvr_log(kvr_log_level level, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    kvr_log_fn_cur(level, buf, kvr_log_user);
}

// ----------------------------------------------------------------------------
// clocks and provenance

double kvr_time_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

int64_t kvr_mem_available_bytes(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return -1;
    char line[256];
    long long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) break;
    fclose(f);
    return kb >= 0 ? (int64_t)kb * 1024 : -1;
}

const char *kvr_version(void) {
    return KVR_VERSION_STRING;
}
const char *kvr_build_commit(void) {
    return KVR_GIT_COMMIT;
}

// ----------------------------------------------------------------------------
// progress bar

void kvr_progress_start(kvr_progress *p, FILE *out, const char *label, int64_t total) {
    memset(p, 0, sizeof *p);
    p->out = out;
    p->label = label;
    p->total = total > 0 ? total : 1;
    p->t_start_us = p->t_last_us = kvr_time_us();
    p->is_tty = out && isatty(fileno(out));
    p->last_decile = -1;
}

void kvr_progress_update(kvr_progress *p, int64_t done) {
    if (!p->out) return;
    p->done = done;
    double now = kvr_time_us();
    double frac = (double)done / (double)p->total;
    if (frac > 1) frac = 1;
    double el_s = (now - p->t_start_us) * 1e-6;
    double eta_s = frac > 0 ? el_s * (1 - frac) / frac : 0;
    if (p->is_tty) {
        if (now - p->t_last_us < 100e3 && done < p->total) return; /* 10 Hz redraw */
        p->t_last_us = now;
        char bar[31];
        int n = (int)(frac * 30);
        for (int i = 0; i < 30; i++) bar[i] = i < n ? '#' : '.';
        bar[30] = 0;
        fprintf(p->out, "\r%s [%s] %3d%% %lld/%lld  %.1fs elapsed, ETA %.1fs ", p->label, bar,
                (int)(frac * 100), (long long)done, (long long)p->total, el_s, eta_s);
        fflush(p->out);
    } else {
        int dec = (int)(frac * 10);
        if (dec == p->last_decile) return;
        p->last_decile = dec;
        fprintf(p->out, "# %s: %d%% (%lld/%lld) %.1fs elapsed, ETA %.1fs\n", p->label, dec * 10,
                (long long)done, (long long)p->total, el_s, eta_s);
    }
}

void kvr_progress_finish(kvr_progress *p) {
    if (!p->out) return;
    kvr_progress_update(p, p->total);
    if (p->is_tty) fputc('\n', p->out);
}

// ----------------------------------------------------------------------------
// parsing

int kvr_name_index(const char *const *names, int n, const char *s) {
    for (int i = 0; s && i < n; i++)
        if (names[i] && strcmp(s, names[i]) == 0) return i;
    return -1;
}

kvr_status kvr_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out, kvr_error *err) {
    if (!s || !*s) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "empty number");
    if (isspace((unsigned char)s[0])) /* strtoll would skip it: " 12" is not what was meant */
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "'%s' is not an integer", s);
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end != '\0')
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "'%s' is not an integer", s);
    if (v < lo || v > hi)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s is out of range [%lld, %lld]", s,
                             (long long)lo, (long long)hi);
    *out = v;
    return KVR_OK;
}

kvr_status kvr_parse_size(const char *s, int64_t lo, int64_t hi, int64_t *out, kvr_error *err) {
    char buf[64];
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= sizeof buf)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "bad number \"%s\"", s ? s : "");
    memcpy(buf, s, n + 1);
    int64_t mul = 1;
    char c = buf[n - 1];
    if (c == 'k' || c == 'K') mul = (int64_t)1 << 10;
    if (c == 'm' || c == 'M') mul = (int64_t)1 << 20;
    if (c == 'g' || c == 'G') mul = (int64_t)1 << 30;
    if (mul > 1) buf[n - 1] = 0;
    int64_t v;
    if (kvr_parse_i64(buf, 0, INT64_MAX / mul, &v, NULL) != KVR_OK)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "\"%s\" is not a whole number (K/M/G suffixes allowed)", s);
    v *= mul;
    if (v < lo || v > hi)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%lld is out of range [%lld, %lld]",
                             (long long)v, (long long)lo, (long long)hi);
    *out = v;
    return KVR_OK;
}

/* One FROM, TO or STEP of a range: its name before the size's own message. */
static kvr_status parse_range_part(const char *what, const char *s, int64_t lo, int64_t hi,
                                   int64_t *out, kvr_error *err) {
    kvr_error e;
    if (kvr_parse_size(s, lo, hi, out, &e) == KVR_OK) return KVR_OK;
    return kvr_error_set(err, e.code, "%s %s", what, e.msg);
}

kvr_status kvr_parse_size_list(const char *s, int64_t lo, int64_t hi, int64_t *out, int max,
                               int *n, kvr_error *err) {
    if (!s || !out || !n || max < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "size list: bad argument");
    char *dup = strdup(s), *save = NULL;
    if (!dup) return kvr_error_set(err, KVR_ERR_NOMEM, "size list: out of memory");
    kvr_status st = KVR_OK;
    int k = 0;
    for (char *t = strtok_r(dup, ",", &save); t && st == KVR_OK; t = strtok_r(NULL, ",", &save)) {
        int64_t from, to, step = 1;
        char *c1 = strchr(t, ':');
        if (!c1) {
            if ((st = kvr_parse_size(t, lo, hi, &from, err))) break;
            to = from;
        } else {
            char *c2 = strchr(c1 + 1, ':');
            if (!c2 || strchr(c2 + 1, ':')) {
                st = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                   "\"%s\" is neither N nor FROM:TO:STEP", t);
                break;
            }
            *c1 = *c2 = 0;
            if ((st = parse_range_part("FROM", t, lo, hi, &from, err))) break;
            if ((st = parse_range_part("TO", c1 + 1, lo, hi, &to, err))) break;
            if ((st = parse_range_part("STEP", c2 + 1, 1, hi, &step, err))) break;
            if (from > to) {
                st = kvr_error_set(err, KVR_ERR_INVALID_ARG, "FROM %lld is larger than TO %lld",
                                   (long long)from, (long long)to);
                break;
            }
        }
        int64_t count = (to - from) / step + 1;
        if (count > max - k) {
            st = kvr_error_set(err, KVR_ERR_INVALID_ARG, "more than %d values", max);
            break;
        }
        for (int64_t i = 0; i < count; i++) out[k++] = from + i * step;
    }
    if (st == KVR_OK && k == 0)
        st = kvr_error_set(err, KVR_ERR_INVALID_ARG, "empty list \"%s\"", s);
    free(dup);
    if (st == KVR_OK) *n = k;
    return st;
}
