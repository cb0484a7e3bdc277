/* kvr_trace.h -- request traces for the serving module (serve/, library kvr_serve): a trace is
 * the list of requests a server sees, each an arrival time, a prompt length and an output length
 * in tokens, optionally with the prompt text. This header holds the kvr trace CSV format (reader
 * and atomic writer), the generators (Poisson or Gamma arrivals, fixed / uniform / lognormal /
 * resampled lengths; GSL random numbers, seeded and reproducible), the importers for the public
 * traces users have (the Azure LLM inference trace and BurstGPT) and summary statistics.
 * Formats, generators and examples: docs/serving.md.
 *
 * Usage:   kvr_error err; kvr_trace *t = NULL;
 *          kvr_trace_gen_params g = kvr_trace_gen_params_default();
 *          g.rate_per_s = 2; g.n_requests = 1000;
 *          g.prompt = (kvr_trace_length){KVR_TRACE_LENGTH_LOGNORMAL, 1024, 0.8, NULL};
 *          if (kvr_trace_generate(&g, &t, &err) != KVR_OK ||
 *              kvr_trace_save(t, "trace.csv", NULL, &err) != KVR_OK)
 *              fprintf(stderr, "%s\n", err.msg);
 *          kvr_trace_destroy(t);
 * Ownership: a kvr_trace owns its requests and their prompt texts; kvr_trace_destroy frees all.
 *            Strings passed in are borrowed for the call and copied when kept; a
 *            kvr_trace_length's source trace is borrowed for the kvr_trace_generate call.
 * Threads:  a trace is plain data: concurrent readers are safe, a writer needs exclusive use.
 *           The functions keep no global state.
 */
#ifndef KVR_TRACE_H
#define KVR_TRACE_H

#include "kvr_common.h"

#ifdef __cplusplus
extern "C" {
#endif

// ----------------------------------------------------------------------------
// the trace

#define KVR_TRACE_MAX_TOKENS       ((int64_t)1 << 30) /* per prompt or output */
#define KVR_TRACE_MAX_REQUESTS     ((int64_t)1 << 26) /* per trace */
#define KVR_TRACE_MAX_PROMPT_BYTES ((size_t)1 << 20)  /* prompt text per request */
#define KVR_TRACE_MAX_ARRIVAL_S    1e12                /* seconds (31,700 years) */

typedef struct kvr_trace_request {
    double arrival_s;      /* seconds from the trace's start: in [0, KVR_TRACE_MAX_ARRIVAL_S],
                            * non-decreasing */
    int64_t prompt_tokens; /* 1..KVR_TRACE_MAX_TOKENS */
    int64_t output_tokens; /* 1..KVR_TRACE_MAX_TOKENS (the first token included) */
    char *prompt;          /* the prompt's text (valid UTF-8, non-empty) or NULL; the trace owns
                            * it. prompt_tokens stays what the engine uses: the text is not
                            * tokenised here. */
} kvr_trace_request;

typedef struct kvr_trace {
    kvr_trace_request *requests; /* [n_requests], in arrival order */
    int64_t n_requests;
    int64_t cap_requests; /* entries allocated (private) */
} kvr_trace;

/* An empty trace. Errors: KVR_ERR_NOMEM. */
KVR_API kvr_status kvr_trace_create(kvr_trace **out, kvr_error *err);
KVR_API void kvr_trace_destroy(kvr_trace *t); /* NULL is a no-op */

/* Append one request (prompt: NULL or "" for none; copied). Checks what every trace holds:
 * arrival_s in [0, KVR_TRACE_MAX_ARRIVAL_S] and >= the last request's; token counts in
 * 1..KVR_TRACE_MAX_TOKENS; the prompt valid UTF-8 of at most KVR_TRACE_MAX_PROMPT_BYTES; at
 * most KVR_TRACE_MAX_REQUESTS requests.
 * Errors: KVR_ERR_INVALID_ARG naming the field and the value, KVR_ERR_NOMEM; t is unchanged. */
KVR_API kvr_status kvr_trace_append(kvr_trace *t, double arrival_s, int64_t prompt_tokens,
                                    int64_t output_tokens, const char *prompt, kvr_error *err);

/* A 64-bit FNV-1a hash of the requests (each arrival's IEEE bits, prompt and output tokens, the
 * prompt text when present): the same schedule gives the same hash whatever the file's name,
 * comments or number formatting; written as 16 hex digits into buf (>= 17 bytes). */
KVR_API void kvr_trace_content_hash(const kvr_trace *t, char *buf, size_t len);

// ----------------------------------------------------------------------------
// the kvr trace CSV format (docs/serving.md): an optional UTF-8 byte order mark, '#' comment
// lines and blank lines anywhere between records, one header row naming the columns
// arrival_s, prompt_tokens, output_tokens and optionally prompt (any order; no other column),
// then one row per request. Fields follow RFC 4180: a field in double quotes may hold commas,
// line breaks and "" for a quote; spaces around unquoted fields are ignored. Rows must be in
// arrival order: an arrival earlier than the previous row's is an error (a trace is a replay
// schedule; an unsorted file is most likely two files pasted together), never silently sorted.
// An empty prompt field means no text.

/* Parse a trace held in memory (buf need not be NUL-terminated; never read past len). name
 * labels the messages. Errors: KVR_ERR_FORMAT "NAME:LINE: column 'C': cause" (the line a
 * record starts on), "NAME:LINE: N fields, the header has M", "NAME: no header row";
 * KVR_ERR_NOMEM. *out is NULL on error. */
KVR_API kvr_status kvr_trace_parse(const char *buf, size_t len, const char *name,
                                   kvr_trace **out, kvr_error *err);
/* kvr_trace_parse on a file ("-": standard input). Errors also: KVR_ERR_IO / KVR_ERR_NOT_FOUND
 * "PATH: REASON". */
KVR_API kvr_status kvr_trace_load(const char *path, kvr_trace **out, kvr_error *err);

/* The trace as kvr trace CSV text: comment (NULL: none; each of its lines written as "# line")
 * first, then the header (with the prompt column only when a request has text), then the rows.
 * Arrival times are written with the fewest digits that read back to the same double, so
 * format -> parse gives the identical trace. *out is malloc'd (free()). Errors: KVR_ERR_NOMEM. */
KVR_API kvr_status kvr_trace_format(const kvr_trace *t, const char *comment, char **out,
                                    kvr_error *err);
/* kvr_trace_format written to path through kvr_atomic_file (a temporary renamed into place:
 * never half a file). Errors: KVR_ERR_IO "cannot write PATH: REASON", KVR_ERR_NOMEM. */
KVR_API kvr_status kvr_trace_save(const kvr_trace *t, const char *path, const char *comment,
                                  kvr_error *err);

// ----------------------------------------------------------------------------
// generators: arrivals form a renewal process that starts with the first request at 0 s;
// inter-arrival gaps are exponential (Poisson arrivals) or Gamma with shape k = 1/cv^2 and
// scale 1/(rate k), so the mean gap is 1/rate and the gaps' coefficient of variation is cv
// (cv 1 is Poisson, above 1 bursty, below 1 smoother). Lengths are drawn per request.
// Random numbers: GSL's MT19937, one stream each for the gaps, the prompt lengths and the
// output lengths, seeded from the seed; the same seed and parameters give the same trace, and
// changing a length distribution leaves the arrival times as they were.

typedef enum kvr_trace_arrival {
    KVR_TRACE_ARRIVAL_POISSON, /* exponential gaps at rate_per_s */
    KVR_TRACE_ARRIVAL_GAMMA,   /* Gamma gaps at rate_per_s with coefficient of variation cv */
    KVR_TRACE_ARRIVAL_COUNT
} kvr_trace_arrival;
KVR_API const char *kvr_trace_arrival_name(kvr_trace_arrival a); /* "poisson", "gamma"; "?" */
/* KVR_ERR_INVALID_ARG "unknown arrival process 'S' (poisson, gamma)". */
KVR_API kvr_status kvr_trace_arrival_parse(const char *s, kvr_trace_arrival *out,
                                           kvr_error *err);

typedef enum kvr_trace_length_kind {
    KVR_TRACE_LENGTH_FIXED,     /* a tokens every time */
    KVR_TRACE_LENGTH_UNIFORM,   /* a whole number uniform in [a, b], both ends included */
    KVR_TRACE_LENGTH_LOGNORMAL, /* mean a tokens (the length's own mean, not the log's) and
                                 * sigma b of ln(length): ln L ~ N(ln a - b^2/2, b^2); rounded
                                 * to the nearest whole number, at least 1 and at most
                                 * KVR_TRACE_MAX_TOKENS */
    KVR_TRACE_LENGTH_RESAMPLE,  /* drawn uniformly, with replacement, from source's requests
                                 * (their prompt_tokens for the prompt, output_tokens for the
                                 * output); when prompt and output resample the same source
                                 * trace, one request is drawn for both, keeping their pairing */
    KVR_TRACE_LENGTH_COUNT
} kvr_trace_length_kind;

typedef struct kvr_trace_length {
    kvr_trace_length_kind kind;
    double a, b;             /* as above (fixed: a; uniform: a, b; lognormal: mean a, sigma b) */
    const kvr_trace *source; /* resample: the trace drawn from (borrowed) */
    const char *path;        /* resample: the file named by kvr_trace_length_parse (borrowed
                              * from its spec), for the caller to load into source */
} kvr_trace_length;

/* Parse a length spec: "N" or "fixed:N", "uniform:A,B", "lognormal:MEAN,SIGMA",
 * "file:PATH" (resample; path points into spec, source is left NULL for the caller to load).
 * Token counts are whole numbers in 1..KVR_TRACE_MAX_TOKENS, A <= B; MEAN >= 1, SIGMA in
 * [0, 4]. Errors: KVR_ERR_INVALID_ARG naming the spec and the rule it breaks. */
KVR_API kvr_status kvr_trace_length_parse(const char *spec, kvr_trace_length *out,
                                          kvr_error *err);
/* The spec back as text ("lognormal:1024,0.8"), NUL-terminated in buf[0..len). */
KVR_API void kvr_trace_length_format(const kvr_trace_length *l, char *buf, size_t len);

typedef struct kvr_trace_gen_params {
    kvr_trace_arrival arrival;
    double rate_per_s;       /* mean arrival rate, requests per second (> 0) */
    double cv;               /* gamma: the gaps' coefficient of variation, (0, 10]; 1 = Poisson */
    kvr_trace_length prompt; /* prompt lengths */
    kvr_trace_length output; /* output lengths */
    int64_t n_requests;      /* stop after this many requests (0: no count limit) */
    double duration_s;       /* requests arrive before this time (0: no time limit) */
    uint64_t seed;
} kvr_trace_gen_params;

/* Poisson, rate 1/s, cv 1, prompt fixed 512, output fixed 128, no limits (set at least one of
 * n_requests and duration_s), seed 1. */
KVR_API kvr_trace_gen_params kvr_trace_gen_params_default(void);

/* Generate a trace: requests until n_requests are made or the next arrival would be at or after
 * duration_s, whichever comes first (the first request arrives at 0). Errors:
 * KVR_ERR_INVALID_ARG for a parameter out of range ("rate_per_s must be > 0", neither limit
 * set, an expected count rate x duration above KVR_TRACE_MAX_REQUESTS, a resample length with
 * no source or an empty one), KVR_ERR_NOMEM. *out is NULL on error. */
KVR_API kvr_status kvr_trace_generate(const kvr_trace_gen_params *p, kvr_trace **out,
                                      kvr_error *err);

// ----------------------------------------------------------------------------
// importers for public traces. Columns are found by their header names (case-insensitive, any
// order, other columns ignored); a row with the wrong number of fields, a missing or malformed
// value is an error "NAME:LINE: column 'C': cause". Times become seconds from the earliest kept
// row, times time_scale.
//   azure:    the Azure LLM inference traces (2023, 2024): TIMESTAMP, ContextTokens,
//             GeneratedTokens; TIMESTAMP is "YYYY-MM-DD HH:MM:SS[.fraction]" with up to 9
//             fractional digits (the files have 7), 'T' or ' ' between date and time, and an
//             optional "Z" or "+HH:MM"/"-HH:MM" offset (converted to UTC). Differences are
//             exact to the nanosecond.
//   burstgpt: BurstGPT: Timestamp (seconds from the trace's start), Request tokens, Response
//             tokens; Model and Log Type are read only for the filters (model and log_type keep
//             the rows whose Model / Log Type equal the given text, case-insensitively); Total
//             tokens is not read.
// Rows with 0 output tokens are failed requests (BurstGPT's own marking): skipped and counted
// unless keep_failed, which keeps them as 1-token outputs (the prefill still happened). Rows
// with 0 prompt tokens cannot be prefilled: always skipped and counted. Rows out of time order
// are counted and the kept requests sorted by time (stable).

typedef enum kvr_trace_import_format {
    KVR_TRACE_IMPORT_AZURE,
    KVR_TRACE_IMPORT_BURSTGPT,
    KVR_TRACE_IMPORT_COUNT
} kvr_trace_import_format;
KVR_API const char *kvr_trace_import_format_name(kvr_trace_import_format f); /* "azure"... */
/* KVR_ERR_INVALID_ARG "unknown trace format 'S' (azure, burstgpt)". */
KVR_API kvr_status kvr_trace_import_format_parse(const char *s, kvr_trace_import_format *out,
                                                 kvr_error *err);

typedef struct kvr_trace_import_params {
    kvr_trace_import_format format;
    int64_t limit;        /* keep the first limit requests of the file after filtering (0: all) */
    double time_scale;    /* arrival_s = (t - t_earliest) x time_scale; > 0 (0.5: twice as fast) */
    const char *model;    /* burstgpt: keep only this Model (NULL: all) */
    const char *log_type; /* burstgpt: keep only this Log Type, e.g. "Conversation log" */
    bool keep_failed;     /* keep 0-output-token rows as 1-token outputs */
} kvr_trace_import_params;
/* azure, no limit, time_scale 1, no filters, failed rows skipped. */
KVR_API kvr_trace_import_params kvr_trace_import_params_default(void);

typedef struct kvr_trace_import_stats {
    int64_t n_rows;        /* data rows read (up to the limit) */
    int64_t n_kept;        /* requests in the trace */
    int64_t n_filtered;    /* rows skipped by the model / log_type filters */
    int64_t n_failed;      /* rows with 0 output tokens (kept only with keep_failed) */
    int64_t n_empty;       /* rows with 0 prompt tokens (skipped) */
    int64_t n_out_of_order; /* kept rows earlier than the kept row before them (then sorted) */
} kvr_trace_import_stats;

/* Import a public trace held in memory (never read past len); name labels the messages. stats
 * may be NULL. Errors: KVR_ERR_INVALID_ARG for bad params, KVR_ERR_FORMAT "NAME:LINE: ..." (a
 * missing column names the columns found), KVR_ERR_NOMEM. *out is NULL on error. */
KVR_API kvr_status kvr_trace_import_parse(const char *buf, size_t len, const char *name,
                                          const kvr_trace_import_params *p, kvr_trace **out,
                                          kvr_trace_import_stats *stats, kvr_error *err);
/* kvr_trace_import_parse on a file ("-": standard input); files are mapped, not copied. */
KVR_API kvr_status kvr_trace_import_load(const char *path, const kvr_trace_import_params *p,
                                         kvr_trace **out, kvr_trace_import_stats *stats,
                                         kvr_error *err);

// ----------------------------------------------------------------------------
// statistics

typedef struct kvr_trace_summary {
    double mean, min, p50, p90, p99, max; /* percentiles interpolate between order statistics
                                           * (GSL's quantile_from_sorted_data) */
    int64_t total;
} kvr_trace_summary;

typedef struct kvr_trace_stats {
    int64_t n_requests;
    int64_t n_with_prompt;      /* requests with prompt text */
    double first_s, last_s;     /* first and last arrival */
    double duration_s;          /* last_s - first_s */
    double rate_per_s;          /* (n - 1) / duration_s: one over the mean gap */
    double gap_mean_s, gap_cv;  /* inter-arrival gaps: mean, coefficient of variation (sample
                                 * standard deviation / mean) */
    kvr_trace_summary prompt_tokens, output_tokens;
} kvr_trace_stats;

/* Statistics of t. Undefined values are NAN: everything for an empty trace, the gap figures for
 * fewer than 2 requests (cv: fewer than 3), the rate and cv when all arrive at once. Errors:
 * KVR_ERR_NOMEM. */
KVR_API kvr_status kvr_trace_stats_compute(const kvr_trace *t, kvr_trace_stats *out,
                                           kvr_error *err);

#ifdef __cplusplus
}
#endif
#endif /* KVR_TRACE_H */
