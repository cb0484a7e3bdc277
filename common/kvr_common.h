/* kvr_common.h -- status codes, error messages, logging hook, clocks and a progress bar
 * shared by every kvr module.
 *
 * Usage:   kvr_error err;
 *          if (kvr_something(..., &err) != KVR_OK) fprintf(stderr, "%s\n", err.msg);
 * Ownership: kvr_error is a caller-owned value; strings returned by kvr_status_str are static.
 * Threads:  everything here is thread-safe except kvr_log_set (call it once at start-up).
 */
#ifndef KVR_COMMON_H
#define KVR_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(KVR_SHARED)
#define KVR_API __attribute__((visibility("default")))
#else
#define KVR_API
#endif

typedef enum kvr_status {
    KVR_OK = 0,
    KVR_ERR_INVALID_ARG,
    KVR_ERR_NOMEM,
    KVR_ERR_IO,
    KVR_ERR_DB,
    KVR_ERR_CUDA,
    KVR_ERR_NCCL,
    KVR_ERR_NUMERIC,
    KVR_ERR_UNSUPPORTED,
    KVR_ERR_NOT_FOUND,
    KVR_ERR_FORMAT, /* an external file is malformed */
    KVR_ERR_COMM,   /* a peer rank failed or a transport broke */
    KVR_ERR_INTERNAL,
    KVR_STATUS_COUNT /* keep last */
} kvr_status;

typedef struct kvr_error {
    kvr_status code;
    char msg[512];
} kvr_error;

KVR_API const char *kvr_status_str(kvr_status s);

/* Record code and a printf-style message in err (err may be NULL). Returns code. */
KVR_API kvr_status kvr_error_set(kvr_error *err, kvr_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix an existing message: "prefix: old message". Returns err->code (KVR_OK if err is NULL). */
KVR_API kvr_status kvr_error_prefix(kvr_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define KVR_TRY(expr)                                                                              \
    do {                                                                                           \
        kvr_status kvr_s_ = (expr);                                                                \
        if (kvr_s_ != KVR_OK) return kvr_s_;                                                       \
    } while (0)

/* Programmer errors only (never user input): print file:line and abort. */
#define KVR_ASSERT(x)                                                                              \
    do {                                                                                           \
        if (!(x)) kvr_abort_(__FILE__, __LINE__, "assertion failed: %s", #x);                      \
    } while (0)
#define KVR_ABORT(...) kvr_abort_(__FILE__, __LINE__, __VA_ARGS__)
KVR_API _Noreturn void kvr_abort_(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define KVR_CEIL_DIV(a, b) (((a) + (b)-1) / (b))
#define KVR_MIN(a, b)      ((a) < (b) ? (a) : (b))
#define KVR_MAX(a, b)      ((a) > (b) ? (a) : (b))

// ----------------------------------------------------------------------------
// memory spaces: where a buffer lives, for the backend and transport seams (kvr_backend.h,
// kvr_comm.h). HOST is ordinary process memory; DEVICE is a backend's own memory (CUDA global
// memory), reachable only through that backend's copies or a device-capable transport (NCCL).

typedef enum kvr_mem_space { KVR_MEM_HOST, KVR_MEM_DEVICE } kvr_mem_space;

// ----------------------------------------------------------------------------
// logging: library code never prints; it calls the hook (default: stderr for WARN/ERROR)

typedef enum kvr_log_level {
    KVR_LOG_DEBUG,
    KVR_LOG_INFO,
    KVR_LOG_WARN,
    KVR_LOG_ERROR
} kvr_log_level;
typedef void (*kvr_log_fn)(kvr_log_level level, const char *msg, void *user);
KVR_API void kvr_log_set(kvr_log_fn fn, void *user);
KVR_API void kvr_log(kvr_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

// ----------------------------------------------------------------------------
// clocks and build provenance

KVR_API double kvr_time_us(void); /* CLOCK_MONOTONIC in microseconds */
KVR_API const char *kvr_version(void);      /* "0.1.0" */
KVR_API const char *kvr_build_commit(void); /* short git hash, "-dirty" suffix, or "unknown" */

// ----------------------------------------------------------------------------
// progress bar: a bar with ETA when out is a TTY, a plain line every ~10% otherwise

typedef struct kvr_progress {
    FILE *out;
    const char *label;
    int64_t total, done;
    double t_start_us, t_last_us;
    int last_decile;
    bool is_tty;
} kvr_progress;
KVR_API void kvr_progress_start(kvr_progress *p, FILE *out, const char *label, int64_t total);
KVR_API void kvr_progress_update(kvr_progress *p, int64_t done);
KVR_API void kvr_progress_finish(kvr_progress *p);

// ----------------------------------------------------------------------------
// small parsing helpers shared by the tools and the loaders

/* Parse a decimal integer in [lo, hi]; whole string must be consumed. */
KVR_API kvr_status kvr_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out,
                                 kvr_error *err);

/* A whole number with an optional binary suffix K, M or G ("4K" = 4096) in [lo, hi]. */
KVR_API kvr_status kvr_parse_size(const char *s, int64_t lo, int64_t hi, int64_t *out,
                                  kvr_error *err);

/* A comma-separated list of sizes (kvr_parse_size), each N or FROM:TO:STEP, each value in
 * [lo, hi], appended in order (duplicates kept) to out[0..max); *n = the number written. */
KVR_API kvr_status kvr_parse_size_list(const char *s, int64_t lo, int64_t hi, int64_t *out,
                                       int max, int *n, kvr_error *err);

#ifdef __cplusplus
}
#endif
#endif /* KVR_COMMON_H */
