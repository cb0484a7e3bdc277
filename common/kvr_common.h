/* kvr_common.h -- the vocabulary every kvr module shares: status codes and error messages, the
 * operations, modes and strategies and their names, memory spaces, the rank limit and
 * partitions, the logging hook, clocks, a progress bar, small parsers, input files and growable
 * text, output files and UTF-8. One section per idea below.
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
KVR_API void kvr_abort_(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

#define KVR_CEIL_DIV(a, b) (((a) + (b)-1) / (b))
#define KVR_MIN(a, b)      ((a) < (b) ? (a) : (b))
#define KVR_MAX(a, b)      ((a) > (b) ? (a) : (b))

// ----------------------------------------------------------------------------
// operations: the five layer operations the runtime runs, the profiler times and the cost model
// fits (embed, pre, attn, post, head: the schedules are sequences of exactly these calls), and
// the point-to-point link a K/V transfer crosses, which the cost model fits beside them. The
// names are the strings the store keeps in layer samples and fit targets and the predictor
// files use as keys; they never change. Layer ops come first, so 0..KVR_OP_LAYER_COUNT-1 index
// per-layer-op arrays and bit masks.

typedef enum kvr_op {
    KVR_OP_EMBED, /* token rows -> x, RoPE tables for the chunk: over c */
    KVR_OP_PRE,   /* RMSNorm, QKV GEMM, RoPE, K/V into the cache: over c */
    KVR_OP_ATTN,  /* c queries over prefix + c keys, causal: over (c, prefix) */
    KVR_OP_POST,  /* O-proj + residual, RMSNorm, SwiGLU MLP + residual: over c */
    KVR_OP_HEAD,  /* final RMSNorm + LM head on the last token */
    KVR_OP_LINK,  /* a point-to-point transfer of n bytes (fits and costs; not a layer op) */
    KVR_OP_COUNT
} kvr_op;
#define KVR_OP_LAYER_COUNT KVR_OP_LINK /* embed..head */

KVR_API const char *kvr_op_name(kvr_op op); /* "embed", "pre", ..., "link"; "unknown" */
/* The op named s. KVR_ERR_INVALID_ARG "unknown op "s" (embed, pre, attn, post, head or link)". */
KVR_API kvr_status kvr_op_parse(const char *s, kvr_op *out, kvr_error *err);

// ----------------------------------------------------------------------------
// modes and strategies: a mode is a schedule the runtime runs (single, kvr, tsp, ring; kvr-run --mode,
// the store's measured runs); a strategy is what the search module simulates and its tables
// compare (kvr-s and kvr-e: KV-Runahead with the searched or the even partition, tsp, ring,
// single). A run of a mode is one strategy (kvr with an even partition is kvr-e, with any other
// kvr-s; ring is ring). The names are stored and printed as they are here, and
// the order of kvr_strategy is the order of the store's per-strategy TTFT columns.

typedef enum kvr_mode {
    KVR_MODE_SINGLE,
    KVR_MODE_KVR,
    KVR_MODE_TSP,
    KVR_MODE_RING, /* ring pass-KV over 2p zigzag chunks */
    KVR_MODE_COUNT
} kvr_mode;
KVR_API const char *kvr_mode_name(kvr_mode m); /* "single", "kvr", "tsp", "ring"; "unknown" */
/* KVR_ERR_INVALID_ARG "unknown mode 's' (single, kvr, tsp, ring)" for another name. */
KVR_API kvr_status kvr_mode_parse(const char *s, kvr_mode *out, kvr_error *err);

typedef enum kvr_strategy {
    KVR_STRATEGY_KVR_S,  /* KV-Runahead with the searched partition */
    KVR_STRATEGY_KVR_E,  /* KV-Runahead with an even partition */
    KVR_STRATEGY_TSP,    /* even split, per-layer K/V all-gather */
    KVR_STRATEGY_RING,   /* ring pass-KV, zigzag load-balanced chunks */
    KVR_STRATEGY_SINGLE, /* one rank */
    KVR_STRATEGY_COUNT
} kvr_strategy;

/* "kvr-s", "kvr-e", "tsp", "ring", "single"; "?" for out-of-range values. */
KVR_API const char *kvr_strategy_name(kvr_strategy s);
/* Parse one name (as above). KVR_ERR_INVALID_ARG for an unknown name. */
KVR_API kvr_status kvr_strategy_parse(const char *name, kvr_strategy *out, kvr_error *err);

/* The strategy a run of mode m is: single, tsp, ring, or for kvr kvr-e when its partition is the even
 * split and kvr-s otherwise. */
KVR_API kvr_strategy kvr_mode_strategy(kvr_mode m, bool even_partition);
/* The mode that runs strategy s (kvr-s, kvr-e: kvr); KVR_MODE_COUNT for an out-of-range s. */
KVR_API kvr_mode kvr_strategy_mode(kvr_strategy s);
/* Whether the runtime can run strategy s on the named backend ("cpu", "cuda"; NULL: cpu) and
 * transport ("threads", "same-device", "nccl", "mpi"; NULL: threads): the one place that says
 * so, for kvr-search's marks and recommendations and kvr-run --mode auto's choice. A strategy
 * runs when a runtime mode runs it (kvr_strategy_mode); a backend or transport that cannot run
 * a mode would be listed here (none today: ring needs the backend's kvr_op_attn_block, which cpu
 * and cuda both have). */
KVR_API bool kvr_strategy_runnable(kvr_strategy s, const char *backend, const char *transport);
/* The bit mask (1u << kvr_strategy) of the strategies kvr_strategy_runnable accepts. */
KVR_API unsigned kvr_strategy_runnable_mask(const char *backend, const char *transport);

// ----------------------------------------------------------------------------
// memory spaces: where a buffer lives, for the backend and transport seams (kvr_backend.h,
// kvr_comm.h). HOST is ordinary process memory; DEVICE is a backend's own memory (CUDA global
// memory), reachable only through that backend's copies or a device-capable transport (NCCL).

typedef enum kvr_mem_space { KVR_MEM_HOST, KVR_MEM_DEVICE } kvr_mem_space;

// ----------------------------------------------------------------------------
// ranks and partitions: a prompt of C tokens split over p ranks into chunk sizes c_0..c_{p-1}
// in causal order (rank i holds tokens [c_0 + ... + c_{i-1}, ... + c_i)). Every chunk is >= 1
// token and the chunks sum to C. KVR_MAX_RANKS bounds p wherever ranks run or are fitted (the
// runtime, the predictor, the tools); the search module's simulator alone models larger device
// counts. A granularity g puts the chunk boundaries on a grid of g tokens: every chunk is a
// multiple of g and >= g, except that the remainder C mod g rides on the last chunk. The text
// form is "c0,c1,..." (what the store, kvr-run and kvr-search write, and --partition reads).

#define KVR_MAX_RANKS 256

/* Chunk i of the even split of C tokens over p ranks (the first C % p chunks get one token
 * more): the one formula, for callers that split more than KVR_MAX_RANKS ways (the search
 * module's simulators) or split units of g tokens rather than tokens. */
static inline int64_t kvr_partition_even_chunk(int64_t n_tokens, int32_t n_ranks, int32_t i) {
    return n_tokens / n_ranks + (i < n_tokens % n_ranks ? 1 : 0);
}
/* Even split into out[0..p), checked: 1 <= p <= KVR_MAX_RANKS and C >= p. */
KVR_API kvr_status kvr_partition_even(int64_t n_tokens, int32_t n_ranks, int64_t *out,
                                      kvr_error *err);
/* Check that p chunks are all >= 1 and sum to C. Messages name the offending chunk. */
KVR_API kvr_status kvr_partition_check(const int64_t *part, int32_t n_ranks, int64_t n_tokens,
                                       kvr_error *err);
/* Parse "even" or "c0,c1,..." for p ranks and C tokens, then check it. */
KVR_API kvr_status kvr_partition_parse(const char *s, int32_t n_ranks, int64_t n_tokens,
                                       int64_t *out, kvr_error *err);
/* Write "c0,c1,..." into buf[0..len) (NUL-terminated). KVR_ERR_INVALID_ARG, with buf left
 * empty, when the text needs more than len bytes. */
KVR_API kvr_status kvr_partition_format(const int64_t *part, int32_t n_ranks, char *buf,
                                        size_t len, kvr_error *err);
/* Round real-valued chunk sizes onto the granularity-g grid of a C-token prompt: units[i] is
 * chunk i in units of g tokens, the units summing to C / g (real: the last one includes the
 * fraction (C mod g) / g). Each chunk gets the floor of its units (at least one unit); the
 * units the floors leave go to the largest remainders (first index on ties), excess units are
 * taken from the smallest remainders of chunks above one unit; then out[i] = units x g with the
 * remainder C mod g on the last chunk. The result sums to C with every chunk >= g. No
 * allocation, O(p) for any p >= 1. KVR_ERR_INVALID_ARG when g < 1, p < 1 or C < p x g. */
KVR_API kvr_status kvr_partition_round(const double *units, int32_t n_ranks, int64_t n_tokens,
                                       int64_t g, int64_t *out, kvr_error *err);
/* The other rounding, one boundary at a time, for callers with no room for every chunk's
 * remainder (KVR-P beyond its stack scratch) or with boundaries as targets (the search's
 * balanced start): boundary i (the end of chunk i, 0 <= i < p - 1) of n units split p ways,
 * the nearest unit to the target units, clamped so that chunk i keeps at least one unit after
 * the previous boundary prev and every later chunk one unit; a non-finite or out-of-range
 * target falls back to the even boundary n (i + 1) / p. */
KVR_API int64_t kvr_partition_round_bound(double units, int32_t i, int32_t n_ranks, int64_t prev,
                                          int64_t n_units);

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
/* MemAvailable of /proc/meminfo in bytes (what can be allocated without swapping); -1 when
 * unknown (no /proc). */
KVR_API int64_t kvr_mem_available_bytes(void);
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

/* Index of s in names[0..n) (exact match), or -1 (also for s NULL): the parse step of every
 * enum's name table (ops, modes, strategies, formats, columns). */
KVR_API int kvr_name_index(const char *const *names, int n, const char *s);

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

// ----------------------------------------------------------------------------
// input files, strings and text (text.c): the loaders that parse a whole file at once (cost
// files, predictor files, CSV imports, prompts) read it with kvr_read_file, or kvr_read_stream
// when they opened it themselves (standard input, their own open and directory messages); the
// model loaders map theirs (kvr_file_map). The writers that build text (exports, reports, JSON)
// append to a kvr_text, which stops at the first failed allocation and reports it once, when
// the text is taken.

/* Read f to its end into a malloc'd buffer with a NUL after the data (the data may hold NULs;
 * *len is its size without that NUL); f stays open. name labels the messages. At most
 * max_bytes (0: 1 GiB). Errors: KVR_ERR_FORMAT "NAME: larger than N bytes", KVR_ERR_IO "NAME:
 * read error: REASON", KVR_ERR_NOMEM "NAME: out of memory"; *out is untouched on error. */
KVR_API kvr_status kvr_read_stream(FILE *f, const char *name, size_t max_bytes, char **out,
                                   size_t *len, kvr_error *err);
/* kvr_read_stream on path ("-": standard input). Opening errors: KVR_ERR_IO "PATH: REASON",
 * "PATH: is a directory". */
KVR_API kvr_status kvr_read_file(const char *path, size_t max_bytes, char **out, size_t *len,
                                 kvr_error *err);

/* A whole file held read-only in memory for a loader that parses it in place (model files):
 * mapped when possible, else read onto the heap; heap = true always reads (small files parsed
 * and dropped). p is NULL for an empty file. Errors name the path: KVR_ERR_NOT_FOUND when it
 * does not exist, KVR_ERR_IO for other open/read failures, "is a directory", "not a regular
 * file" or "file too large"; KVR_ERR_FORMAT "file too large" over max_bytes (0: no limit);
 * KVR_ERR_NOMEM "cannot read N bytes". f is zeroed on error. */
typedef struct kvr_file_map {
    const uint8_t *p;
    size_t len;
    void *map;  /* munmap on close */
    void *heap; /* free on close */
} kvr_file_map;
KVR_API kvr_status kvr_file_map_open(const char *path, bool heap, size_t max_bytes,
                                     kvr_file_map *f, kvr_error *err);
KVR_API void kvr_file_map_close(kvr_file_map *f);

/* A malloc'd copy of s (NULL: of ""); NULL only when out of memory. */
KVR_API char *kvr_strdup(const char *s);

/* Growable NUL-terminated text; zero-initialise (kvr_text t = {0}). */
typedef struct kvr_text {
    char *s;          /* the text so far (NULL before the first append) */
    size_t len, cap;  /* bytes of text (no NUL), bytes allocated */
    bool nomem;       /* an append failed: the text is incomplete, appends are ignored */
} kvr_text;
/* Append printf-style / n bytes of s. KVR_ERR_NOMEM (no message) once an allocation failed. */
KVR_API kvr_status kvr_text_printf(kvr_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
KVR_API kvr_status kvr_text_vprintf(kvr_text *t, const char *fmt, va_list ap);
KVR_API kvr_status kvr_text_append(kvr_text *t, const char *s, size_t n);
/* Hand the text over (*out malloc'd, "" when nothing was appended) or, after a failed append,
 * KVR_ERR_NOMEM "out of memory (WHAT)"; t is emptied either way. */
KVR_API kvr_status kvr_text_take(kvr_text *t, char **out, const char *what, kvr_error *err);
KVR_API void kvr_text_free(kvr_text *t);

// ----------------------------------------------------------------------------
// output files (fileout.c): no output may destroy an input. Every tool checks each output path
// against its inputs (the store, the model, cost files) before it opens anything for writing,
// and writes whole files through kvr_atomic_file: a temporary file in the output's directory,
// flushed to disk and renamed into place, so an interrupted or failed write leaves the old file
// (or none) and never half a file. "-" is stdout and never the same as a file.

/* True when a and b name the same existing file: the same device and inode after following
 * symbolic links (hard links and "dir/../x" spellings included). A path that does not exist
 * (or cannot be stat'ed) is never the same as anything. */
KVR_API bool kvr_path_same_file(const char *a, const char *b);

/* One input of a tool for kvr_output_check: what it is (the option, "--db") and its path
 * (NULL or "" entries are skipped). */
typedef struct kvr_path_role {
    const char *what, *path;
} kvr_path_role;

/* KVR_ERR_INVALID_ARG when output path out (named out_what, "--export") is the same file as one
 * of inputs[0..n): "--export d.db is the same file as --db d.db: refusing to overwrite an
 * input". Also refuses an output that is an existing directory ("--export D: is a
 * directory"). KVR_OK for out NULL, "" or "-". */
KVR_API kvr_status kvr_output_check(const char *out_what, const char *out,
                                    const kvr_path_role *inputs, int n_inputs, kvr_error *err);

/* A whole-file write that lands atomically: kvr_atomic_open creates a temporary file beside
 * path (same directory, so the rename cannot cross file systems) and gives its FILE*;
 * kvr_atomic_commit flushes, fsyncs, closes and renames it over path (a symbolic link path
 * writes through to its target; a path that is not a regular file, /dev/null or a FIFO, is
 * written directly, no temporary). kvr_atomic_abort closes and removes the temporary; so does a
 * failed commit, and so does SIGINT, SIGTERM, SIGHUP or SIGPIPE arriving while one is open (the
 * handler removes it, then the signal's default action runs). Errors read "cannot write PATH:
 * <the OS reason>". The file's mode is the old file's, or 0666 & ~umask for a new one. */
typedef struct kvr_atomic_file {
    FILE *f;
    char *path; /* the final path (a link's target) */
    char *tmp;  /* the temporary, NULL when writing directly */
    int slot;   /* its entry in the signal-cleanup table, -1 if none */
} kvr_atomic_file;
KVR_API kvr_status kvr_atomic_open(kvr_atomic_file *af, const char *path, kvr_error *err);
KVR_API kvr_status kvr_atomic_commit(kvr_atomic_file *af, kvr_error *err);
KVR_API void kvr_atomic_abort(kvr_atomic_file *af);
/* Open, write len bytes of data, commit. */
KVR_API kvr_status kvr_write_file_atomic(const char *path, const void *data, size_t len,
                                         kvr_error *err);

// ----------------------------------------------------------------------------
// UTF-8 (utf8.c): strings read from files (model names, CSV provenance, cost files) reach JSON
// output; every JSON writer keeps it valid UTF-8.

/* The length (1..4) of the well-formed UTF-8 sequence at s (s NUL-terminated), or 0 when the
 * bytes there are not UTF-8 (a stray continuation byte, an overlong form, a surrogate, a code
 * point above U+10FFFF, a truncated sequence) or s points at the NUL. */
KVR_API int kvr_utf8_seq_len(const char *s);
/* Replace in place every byte that is not part of well-formed UTF-8 by '?'; returns how many. */
KVR_API size_t kvr_utf8_sanitize(char *s);
/* Write s as a JSON string (quotes included): '"', '\\' and control characters escaped, bytes
 * that are not UTF-8 written as \ufffd, so the output is valid JSON and valid UTF-8. NULL is
 * written as "". */
KVR_API void kvr_json_write_str(FILE *f, const char *s);

#ifdef __cplusplus
}
#endif
#endif /* KVR_COMMON_H */
