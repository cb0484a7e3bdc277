/* kvr_db.h -- the SQLite store (DESIGN.md section 7): devices, models, profile runs with their
 * provenance, layer samples, transfer samples, measured runs, fitted cost-model terms, KVR-S
 * partition tables, KVR-P predictors and serving runs with their requests, in one file (default
 * ./kvr.db).
 *
 * The file is in WAL mode with a busy timeout, so several processes may write it at once (each
 * write waits for the others instead of failing). The schema carries a version: a file made by
 * an older kvr is upgraded step by step when opened read-write; a file made by a newer kvr is
 * refused with a message saying so. Every multi-row write is one transaction, and a profile
 * commits each grid point as it finishes, so a killed profile leaves a consistent, resumable file.
 * docs/db.md describes the schema, the CSV import format and the guarantees.
 *
 * Usage:   kvr_db *db; kvr_error err;
 *          if (kvr_db_open("kvr.db", NULL, &db, &err) != KVR_OK) { fprintf(stderr, "%s\n", err.msg); ... }
 *          kvr_db_run run = kvr_db_run_init("profile");  ...fill provenance...
 *          kvr_db_run_insert(db, &run, &err);            // run.id is set
 *          kvr_db_layer_sample s = {.run_id = run.id, .op = "attn", .c = 256, .prefix = 1024, ...};
 *          kvr_db_layer_sample_put(db, &s, &err);
 *          kvr_db_run_set_status(db, run.id, KVR_RUN_COMPLETE, &err);
 *          kvr_db_close(db);
 * Ownership: strings passed in are borrowed for the call. Rows are plain structs with fixed-size
 *            text fields (longer text is truncated). Arrays returned through **out are malloc'd:
 *            free them with kvr_db_free; strings returned through char **out likewise.
 * Threads:  one kvr_db per thread; a handle is not safe to share between threads at once.
 *           Any number of handles (in any number of processes) may use one file.
 */
#ifndef KVR_DB_H
#define KVR_DB_H
#include "kvr_common.h"
#ifdef __cplusplus
extern "C" {
#endif

/* The schema version this kvr writes; files with a higher user_version are refused. */
#define KVR_DB_SCHEMA_VERSION 7

typedef struct kvr_db kvr_db;

// ----------------------------------------------------------------------------
// open / close

typedef struct kvr_db_open_params {
    bool read_only;          /* open without writing anything (no migration, no WAL switch) */
    bool create;             /* create the file when missing (read-write only); default true */
    int32_t busy_timeout_ms; /* how long a write waits for another writer; default 30000 */
    bool verify;             /* run SQLite's quick_check first and refuse a damaged file, so a
                                writer never adds to a corrupt database; default false */
} kvr_db_open_params;
KVR_API kvr_db_open_params kvr_db_open_params_default(void);

/* Open (and create, and upgrade) a kvr database. params NULL = defaults.
 * Errors: KVR_ERR_NOT_FOUND (read-only or create=false and no file; directory missing),
 * KVR_ERR_FORMAT (not an SQLite file, or an SQLite file that is not a kvr database),
 * KVR_ERR_UNSUPPORTED (schema newer than this kvr), KVR_ERR_IO (cannot open or write: read-only
 * location, full disk; the message names the path and the cause), KVR_ERR_DB (other SQLite
 * errors; KVR_ERR_FORMAT too for a damaged file when verify is set). The file is never
 * modified on error. */
KVR_API kvr_status kvr_db_open(const char *path, const kvr_db_open_params *params, kvr_db **out,
                               kvr_error *err);
KVR_API void kvr_db_close(kvr_db *db); /* NULL is a no-op */
KVR_API const char *kvr_db_path(const kvr_db *db);
KVR_API int32_t kvr_db_schema_version(const kvr_db *db); /* the file's version after open */

/* Explicit transactions for callers grouping several writes (BEGIN IMMEDIATE: takes the write
 * lock at once, waiting up to the busy timeout). Nested calls are not supported. */
KVR_API kvr_status kvr_db_begin(kvr_db *db, kvr_error *err);
KVR_API kvr_status kvr_db_commit(kvr_db *db, kvr_error *err);
KVR_API void kvr_db_rollback(kvr_db *db);

/* Integrity check: SQLite's integrity_check and foreign_key_check, the schema version table
 * against user_version, and sample rows whose run is missing. *ok is false on any problem;
 * report (may be NULL) receives one line per finding. Errors only when the checks cannot run. */
KVR_API kvr_status kvr_db_check(kvr_db *db, bool *ok, char *report, size_t report_len,
                                kvr_error *err);

KVR_API void kvr_db_free(void *p); /* free arrays and strings returned by this module */

// ----------------------------------------------------------------------------
// records

typedef struct kvr_timing_stats {
    int32_t n_warmup, n_iters; /* warm-up executions (not in the stats) and measured ones */
    double min_us, p10_us, median_us, p90_us, mean_us, stddev_us, max_us;
    bool is_stable; /* the median met the stability target before the budget ran out */
} kvr_timing_stats;

typedef struct kvr_db_device {
    int64_t id;
    char kind[16];            /* "cpu" | "cuda" */
    char name[128];           /* CPU model or GPU name */
    char host[128];
    int32_t n_cores;          /* logical CPUs (cpu) */
    int32_t n_sms;            /* streaming multiprocessors (cuda) */
    double clock_mhz;         /* nominal/max clock, 0 = unknown */
    int64_t mem_bytes;        /* host RAM (cpu) or device memory (cuda) */
    char driver_version[64];  /* cuda */
    char cuda_version[32];    /* cuda */
    char nccl_version[32];    /* cuda + nccl */
    char blas[128];           /* e.g. openblas_get_config() */
    char mpi_version[128];    /* when built with MPI */
} kvr_db_device;

typedef struct kvr_db_model {
    int64_t id;
    char name[128];
    char arch[32];
    char source[512]; /* path or "preset:NAME" the model was loaded from */
    int32_t n_layers, d_model, n_heads, n_kv_heads, head_dim, d_ff, vocab_size, max_context;
    double rope_theta;
    bool tied_embeddings;
    int64_t kv_bytes_per_token; /* K and V of one token in one layer, in the profiled dtype */
    char content_hash[40];      /* hex; of the file(s), or of the preset name/seed/layers */
} kvr_db_model;

typedef enum kvr_run_status {
    KVR_RUN_RUNNING,    /* a process is (or was, until it died) writing it */
    KVR_RUN_COMPLETE,
    KVR_RUN_INCOMPLETE, /* stopped (SIGINT, SIGKILL, error) before every point: resumable */
    KVR_RUN_FAILED,     /* stopped by an error that resuming would not fix */
    KVR_RUN_STATUS_COUNT
} kvr_run_status;
KVR_API const char *kvr_run_status_name(kvr_run_status s); /* "running", "complete", ... */

/* A profile run and its provenance (CONVENTIONS.md section J). Text fields are "" when unknown. */
typedef struct kvr_db_run {
    int64_t id;
    char kind[16]; /* "profile" (kvr-profile) | "import" (kvr-db import) */
    kvr_run_status status;
    int64_t device_id, model_id; /* 0 = none */
    char backend[16];            /* "cpu" | "cuda" */
    char dtype[16];              /* "f32", "f16", ... (the dtype the ops compute in) */
    char transport[16];          /* "threads" | "mpi" | "nccl" | "" (no transfers) */
    int32_t n_threads, n_ranks;
    char kvr_version[32], git_commit[48], build_type[32];
    char host[128], device_name[128], blas[128], mpi_version[128], cuda_version[32],
        nccl_version[32];
    char ts_utc[32];     /* ISO 8601 start, e.g. 2024-05-01T12:00:00Z */
    char ts_end_utc[32]; /* when the status last left "running"; "" while running */
    int32_t n_warmup, n_iters_min, n_iters_max;
    double time_budget_s, rel_tol; /* per point: stop adding repetitions at either */
    double timer_overhead_us;      /* median cost of one clock read pair */
    char grid[64];                 /* preset name or "custom" */
    char ops[64];                  /* "embed,pre,attn,post,head" or "" */
    char params[1024];             /* everything needed to resume, key=value;... */
    char source[256];              /* "kvr-profile" or the imported file and its harness */
    int64_t pid, pid_start;        /* the writing process (to tell a dead run from a live one) */
    char note[256];                /* why it stopped, when it did not complete */
} kvr_db_run;
/* A run with kind set, the current kvr version/commit/build type, this host and ts_utc = now. */
KVR_API kvr_db_run kvr_db_run_init(const char *kind);

typedef struct kvr_db_layer_sample {
    int64_t run_id;
    char op[16];            /* "embed" | "pre" | "attn" | "post" | "head" */
    int64_t c, prefix;      /* chunk tokens; tokens before the chunk (attn) */
    kvr_timing_stats stats; /* of one execution of the op for one layer */
} kvr_db_layer_sample;

typedef struct kvr_db_transfer_sample {
    int64_t run_id;
    char pattern[16];    /* "p2p" | "chain" | "chain_compute" | "allgather" */
    int32_t src, dst;    /* ranks; -1 = all (collectives, a whole chain) */
    int32_t n_ranks;     /* ranks taking part in the pattern */
    int64_t size_bytes;  /* bytes of the message (p2p, chain link) or gathered in total */
    kvr_timing_stats stats;
    double algbw_gbps;   /* size_bytes / median, decimal GB/s */
    double busbw_gbps;   /* algbw * busbw_factor (nccl-tests convention) */
    double busbw_factor; /* 1 for point-to-point and chain links, (n-1)/n for all-gather */
} kvr_db_transfer_sample;

typedef struct kvr_db_measured_run {
    int64_t id;
    char ts_utc[32];
    int64_t model_id, device_id, profile_run_id; /* 0 = none */
    char mode[16];                               /* "single" | "kvr" | "tsp" */
    int32_t n_ranks, n_threads;
    int64_t n_tokens;
    char partition[1024]; /* "c0,c1,..." */
    char transport[16];
    double ttft_ms;
    double predicted_ttft_ms; /* < 0 = none */
    char kvr_version[32], git_commit[48], host[128], note[256];
    /* schema v3 (files upgraded from v2 read "" / 0 / false for older rows) */
    char partition_source[16]; /* "auto" | "even" | "explicit" | "" (unknown) */
    int64_t predictor_id;      /* the KVR-P predictor that chose the partition (0 = none) */
    bool drift;                /* measured TTFT left the predictor's error band (err_band) */
    /* schema v6 */
    double calibrated_ttft_ms; /* the prediction after the calibration (< 0 = none) */
    int64_t calibration_id;    /* that calibration (0 = none) */
} kvr_db_measured_run;

/* A calibration of end-to-end TTFT predictions (kvr-fit --calibrate, schema v6): for one model,
 * profile run (whose cost model predicted), strategy, rank count, threads per rank and
 * transport, measured = a * predicted + b (a, b >= 0) fitted on the recorded runs. Errors are
 * |prediction / measured - 1|: raw_* of the uncalibrated predictions, cv_* of the calibrated
 * ones held out (leave-one-out); spread: the run-to-run noise of repeated identical runs (median
 * over sets of (max - min) / median; n_repeat_sets sets; 0 sets: unknown, 0); band: the error
 * a run may have before it counts as drift, cv_q90_err + spread. */
typedef struct kvr_db_calibration {
    int64_t id;
    int64_t model_id, profile_run_id; /* 0 = none */
    char strategy[16];                /* "kvr-s", "kvr-e", "tsp", "ring", "single" */
    int32_t n_ranks, n_threads;
    char transport[16];
    double a, b;
    int32_t n_runs;
    double raw_med_err, raw_max_err, cv_med_err, cv_max_err, cv_q90_err;
    double spread;
    int32_t n_repeat_sets;
    double band;
    char ts_utc[32], kvr_version[32], git_commit[48];
} kvr_db_calibration;

/* A fitted cost-model term (kvr-fit). */
typedef struct kvr_db_fit {
    int64_t id, run_id; /* run_id: the profile run it was fitted on (0 = none) */
    char target[32];    /* "attn" | "pre" | "post" | "head" | "embed" | "link" | "link:0-1" ... */
    char form[32];      /* the predictor module's form name */
    int64_t n_samples;
    double r2, mape_in, mape_cv, max_err_cv; /* relative errors as fractions; < 0 = not computed */
    char *json; /* the predictor module's serialisation (owned; freed by kvr_db_fits_free) */
    char ts_utc[32], kvr_version[32], git_commit[48]; /* "" on put = now / this build */
} kvr_db_fit;

/* A KVR-S partition table (kvr-search). */
typedef struct kvr_db_ptable {
    int64_t id, run_id;              /* run_id: profile run the costs came from; 0 = a cost file */
    char source[256], links[256];    /* cost source description; link settings (prose, shown) */
    int32_t granularity;             /* tokens */
    /* schema v4 (files upgraded from v3 get them from the old prose and JSON where it parses) */
    char cost_kind[16];  /* the cost source's kind: "profile" | "fit" | "json" | ... | "" */
    int64_t link_run_id; /* profile run whose transfer samples gave the links (0 = the table's
                            own run, or links not from a profile) */
    char *json;                      /* the full self-describing JSON export (owned) */
    char ts_utc[32], kvr_version[32], git_commit[48]; /* "" on put = now / this build */
} kvr_db_ptable;

/* One (ranks, context) row of a partition table. */
typedef struct kvr_db_ptable_row {
    int64_t table_id;
    int32_t n_ranks;
    int64_t context;          /* tokens */
    char partition[4096];     /* KVR-S "c0,c1,..." */
    double ttft_ms[KVR_STRATEGY_COUNT]; /* by kvr_strategy; < 0 = n/a */
    char best[16];            /* strategy name */
    double search_ms;         /* time the search took */
} kvr_db_ptable_row;

/* A KVR-P predictor (kvr-fit --kvrp). */
typedef struct kvr_db_predictor {
    int64_t id, table_id, run_id; /* run_id: the profile run behind the table (0 = none) */
    int32_t n_ranks;
    char links[256], form[32];
    double gap_mean, gap_max; /* held-out TTFT gap vs KVR-S, fractions */
    double err_band; /* held-out relative error band of the cost model's TTFT (drift threshold) */
    char *json;      /* kvr_predictor serialisation (owned) */
    char ts_utc[32], kvr_version[32], git_commit[48]; /* "" on put = now / this build */
} kvr_db_predictor;

// ----------------------------------------------------------------------------
// devices and models: find-or-insert by every descriptive field

KVR_API kvr_status kvr_db_device_put(kvr_db *db, const kvr_db_device *d, int64_t *id,
                                     kvr_error *err);
KVR_API kvr_status kvr_db_device_get(kvr_db *db, int64_t id, kvr_db_device *out, kvr_error *err);
KVR_API kvr_status kvr_db_model_put(kvr_db *db, const kvr_db_model *m, int64_t *id,
                                    kvr_error *err);
KVR_API kvr_status kvr_db_model_get(kvr_db *db, int64_t id, kvr_db_model *out, kvr_error *err);

// ----------------------------------------------------------------------------
// runs

/* Insert a run; run->id is set. */
KVR_API kvr_status kvr_db_run_insert(kvr_db *db, kvr_db_run *run, kvr_error *err);
/* Errors: KVR_ERR_NOT_FOUND ("run 7 not found in PATH"). */
KVR_API kvr_status kvr_db_run_get(kvr_db *db, int64_t id, kvr_db_run *out, kvr_error *err);
/* Set the status (and ts_end_utc unless running; note may be NULL to keep it). */
KVR_API kvr_status kvr_db_run_set_status(kvr_db *db, int64_t id, kvr_run_status status,
                                         const char *note, kvr_error *err);
/* Take over a run for resuming: status running, pid/pid_start of this process, note cleared.
 * Errors: KVR_ERR_INVALID_ARG when a live process still owns it or it is complete. */
KVR_API kvr_status kvr_db_run_claim(kvr_db *db, int64_t id, kvr_error *err);
/* All runs, oldest first. */
KVR_API kvr_status kvr_db_runs_list(kvr_db *db, kvr_db_run **out, int64_t *n, kvr_error *err);
/* Delete a run and its samples (one transaction). Errors: KVR_ERR_NOT_FOUND. */
KVR_API kvr_status kvr_db_run_delete(kvr_db *db, int64_t id, kvr_error *err);
/* Runs marked running whose process is gone (same host: no such pid, or a different process
 * under it) become incomplete. *n_reaped (may be NULL) counts them. Read-only handles: no-op. */
KVR_API kvr_status kvr_db_runs_reap(kvr_db *db, int64_t *n_reaped, kvr_error *err);
/* Whether the run's writer process is alive (only answerable on the same host: else true). */
KVR_API bool kvr_db_run_owner_alive(const kvr_db_run *run);
/* This process's pid and start time (Linux /proc/self/stat; 0 elsewhere), as stored in runs. */
KVR_API void kvr_db_self_pid(int64_t *pid, int64_t *pid_start);
KVR_API kvr_status kvr_db_run_counts(kvr_db *db, int64_t run_id, int64_t *n_layer,
                                     int64_t *n_transfer, kvr_error *err);
/* What later stages made from a run: fits, partition tables and predictors whose run_id is it
 * (zeros on a file at schema version < 3). Pointers may be NULL. */
KVR_API kvr_status kvr_db_run_made_from(kvr_db *db, int64_t run_id, int64_t *n_fits,
                                        int64_t *n_tables, int64_t *n_predictors, kvr_error *err);
/* The newest run not failed and not being written by a live process (complete, incomplete, or
 * running with its writer gone) that has layer samples of every one of the n_ops ops (e.g. pre,
 * attn, post: what a cost-model fit needs). Errors: KVR_ERR_NOT_FOUND when there is none. */
KVR_API kvr_status kvr_db_run_latest_with_ops(kvr_db *db, const char *const *ops, int n_ops,
                                              int64_t *run_id, kvr_error *err);
/* The newest run (any status) of model_id on device_id (0 matches runs without one) that has
 * transfer samples of the pattern (e.g. "p2p": the links of a cost model).
 * Errors: KVR_ERR_NOT_FOUND when there is none. */
KVR_API kvr_status kvr_db_run_latest_with_transfers(kvr_db *db, int64_t model_id,
                                                    int64_t device_id, const char *pattern,
                                                    int64_t *run_id, kvr_error *err);

// ----------------------------------------------------------------------------
// samples

/* Insert or replace (same run, op, c, prefix) one sample, in its own transaction. */
KVR_API kvr_status kvr_db_layer_sample_put(kvr_db *db, const kvr_db_layer_sample *s,
                                           kvr_error *err);
/* n samples in one transaction (all or none). */
KVR_API kvr_status kvr_db_layer_samples_put(kvr_db *db, const kvr_db_layer_sample *s, int64_t n,
                                            kvr_error *err);
/* A run's samples ordered by op, c, prefix. */
KVR_API kvr_status kvr_db_layer_samples_get(kvr_db *db, int64_t run_id,
                                            kvr_db_layer_sample **out, int64_t *n,
                                            kvr_error *err);
KVR_API kvr_status kvr_db_transfer_sample_put(kvr_db *db, const kvr_db_transfer_sample *s,
                                              kvr_error *err);
KVR_API kvr_status kvr_db_transfer_samples_put(kvr_db *db, const kvr_db_transfer_sample *s,
                                               int64_t n, kvr_error *err);
/* A run's samples ordered by pattern, n_ranks, src, dst, size. */
KVR_API kvr_status kvr_db_transfer_samples_get(kvr_db *db, int64_t run_id,
                                               kvr_db_transfer_sample **out, int64_t *n,
                                               kvr_error *err);

// ----------------------------------------------------------------------------
// measured runs (kvr-run TTFTs, with the prediction they are compared against)

KVR_API kvr_status kvr_db_measured_run_put(kvr_db *db, kvr_db_measured_run *r, kvr_error *err);
/* Calibrations (schema v6): insert (r->id set; empty provenance = now and this build); list all,
 * oldest first; the newest for a key (strategy, ranks, threads, transport and the model and
 * profile run as ids; KVR_ERR_NOT_FOUND when none). A file below v6 has none (list: empty). */
KVR_API kvr_status kvr_db_calibration_put(kvr_db *db, kvr_db_calibration *c, kvr_error *err);
KVR_API kvr_status kvr_db_calibrations_list(kvr_db *db, kvr_db_calibration **out, int64_t *n,
                                            kvr_error *err);
KVR_API kvr_status kvr_db_calibration_latest(kvr_db *db, const kvr_db_calibration *key,
                                             kvr_db_calibration *out, kvr_error *err);
KVR_API kvr_status kvr_db_measured_runs_list(kvr_db *db, kvr_db_measured_run **out, int64_t *n,
                                             kvr_error *err);

// ----------------------------------------------------------------------------
// fits, partition tables, predictors (schema v3; typed table provenance v4)
//
// Puts copy the record (json included) and set its id, and fill empty ts_utc / kvr_version /
// git_commit with now / this build. Lists are oldest first; their records own their json: free
// the whole array with the matching _free (NULL, 0 is a no-op). On a file at schema version < 3
// (opened read-only) lists are empty and puts fail with KVR_ERR_UNSUPPORTED. A deleted profile
// run leaves its fits, tables and predictors in place with run_id 0; a deleted table leaves its
// predictors with table_id 0.

/* Store a fit; f->id is set. Errors: KVR_ERR_INVALID_ARG (empty target or form). */
KVR_API kvr_status kvr_db_fit_put(kvr_db *db, kvr_db_fit *f, kvr_error *err);
/* Fits of one profile run (run_id > 0) or all of them (0). */
KVR_API kvr_status kvr_db_fits_list(kvr_db *db, int64_t run_id, kvr_db_fit **out, int64_t *n,
                                    kvr_error *err);
/* Fits with this target made from profile runs of a model with model's content_hash and
 * n_layers, NEWEST first (empty list when none). */
KVR_API kvr_status kvr_db_fits_list_for_model(kvr_db *db, const char *target,
                                              const kvr_db_model *model, kvr_db_fit **out,
                                              int64_t *n, kvr_error *err);
KVR_API void kvr_db_fits_free(kvr_db_fit *f, int64_t n);

/* Store a table and its n rows in one transaction (all or none); t->id is set (the rows'
 * table_id is ignored). Errors: KVR_ERR_INVALID_ARG (a row with n_ranks < 1 or context < 1, two
 * rows with the same (n_ranks, context)). */
KVR_API kvr_status kvr_db_ptable_put(kvr_db *db, kvr_db_ptable *t, const kvr_db_ptable_row *rows,
                                     int64_t n, kvr_error *err);
KVR_API kvr_status kvr_db_ptables_list(kvr_db *db, kvr_db_ptable **out, int64_t *n,
                                       kvr_error *err);
/* One table; out->json is malloc'd: free it with kvr_db_free(out->json). Errors:
 * KVR_ERR_NOT_FOUND (no such table). */
KVR_API kvr_status kvr_db_ptable_get(kvr_db *db, int64_t id, kvr_db_ptable *out, kvr_error *err);
/* A table's rows ordered by n_ranks, context (free with kvr_db_free). Errors: KVR_ERR_NOT_FOUND
 * (no such table). */
KVR_API kvr_status kvr_db_ptable_rows_get(kvr_db *db, int64_t table_id, kvr_db_ptable_row **out,
                                          int64_t *n, kvr_error *err);
KVR_API void kvr_db_ptables_free(kvr_db_ptable *t, int64_t n);

/* Store a predictor; p->id is set. Errors: KVR_ERR_INVALID_ARG (n_ranks < 1). */
KVR_API kvr_status kvr_db_predictor_put(kvr_db *db, kvr_db_predictor *p, kvr_error *err);
KVR_API kvr_status kvr_db_predictors_list(kvr_db *db, kvr_db_predictor **out, int64_t *n,
                                          kvr_error *err);
/* Newest predictor for n_ranks whose run's model has model_id (0 = any model). *out is
 * overwritten on success; out->json is malloc'd: free it with kvr_db_free(out->json).
 * KVR_ERR_NOT_FOUND names what is missing
 * and the command to make one. */
KVR_API kvr_status kvr_db_predictor_latest(kvr_db *db, int32_t n_ranks, int64_t model_id,
                                           kvr_db_predictor *out, kvr_error *err);
/* Newest predictor for n_ranks made from a profile run of a model with model's content_hash and
 * n_layers (the same weights and depth, whatever the model's row id). *out as above.
 * Errors: KVR_ERR_NOT_FOUND when there is none. */
KVR_API kvr_status kvr_db_predictor_latest_for_model(kvr_db *db, int32_t n_ranks,
                                                     const kvr_db_model *model,
                                                     kvr_db_predictor *out, kvr_error *err);
KVR_API void kvr_db_predictors_free(kvr_db_predictor *p, int64_t n);

// ----------------------------------------------------------------------------
// serving runs (schema v5): a request trace replayed under one scheduling policy -- simulated
// (kvr-serve --simulate: the serving simulator under a cost model) or measured (the engine on a
// real model) -- with one record per request and the KV pool's occupancy over time. Plain fields
// in the store's terms (serve/ converts its records); times are seconds from the trace's start.

typedef struct kvr_db_serving_run {
    int64_t id;
    char kind[16];          /* "simulated" | "measured" */
    char trace[512];        /* the trace file as given */
    char trace_hash[40];    /* hex hash of the trace's requests (kvr_trace_content_hash): the same
                             * trace under another name has the same hash */
    int64_t n_requests;
    double trace_duration_s; /* the last arrival */
    double rate_per_s;       /* mean arrival rate, n_requests / trace_duration_s (< 0: unknown) */
    char policy[16];         /* "vllm" | "chunked" | "layerkv" */
    int32_t block_tokens;    /* the scheduler's parameters, defaults resolved */
    int64_t pool_blocks;
    double watermark;
    int32_t max_seqs;
    int64_t max_batched_tokens, max_model_len;
    char cost_source[256];   /* simulated: the cost model (file or profile run) */
    char cost_kind[16];      /* simulated: the cost source's kind ("json", "profile", "fit", ...) */
    double decode_k_us, decode_per_seq_us, decode_per_ctx_token_us; /* simulated: fitted decode
                                                                     * costs; all 0 = from ops */
    int64_t model_id, device_id; /* measured: the model and device (0 = none) */
    char backend[16];            /* measured: "cpu" | "cuda" */
    double slo_ttft_ms, slo_tpot_ms; /* targets (0 = not checked) */
    /* the summary (kvr_serving_summarize), times in ms */
    int64_t n_finished, n_refused, n_preemptions;
    double ttft_p50_ms, ttft_p90_ms, ttft_p99_ms, ttft_mean_ms;
    double tpot_p50_ms, tpot_p90_ms, tpot_p99_ms, tpot_mean_ms;
    double queue_p50_ms, queue_p90_ms, queue_p99_ms, queue_mean_ms;
    double slo_attainment, output_tok_per_s, req_per_s, duration_s;
    int64_t iterations, peak_blocks; /* engine iterations; most pool blocks in use */
    double mean_blocks;              /* pool blocks in use, averaged over busy time */
    double busy_s;                   /* time with an iteration running */
    double wall_s;                   /* how long the replay (or simulation) took */
    char kvr_version[32], git_commit[48], host[128], ts_utc[32]; /* "" on put = this build/now */
    char note[256];
    char end_utc[32]; /* when the run ended and its summary was written (schema v7); "" (NULL in
                       * the file): still running, or killed -- its requests are those stored */
} kvr_db_serving_run;

/* One request of a serving run. Times < 0: did not happen (stored as NULL). */
typedef struct kvr_db_serving_request {
    int64_t run_id, idx;   /* idx: the request's index in the trace */
    double arrival_s, admitted_s, first_token_s, finish_s;
    int64_t prompt_tokens, output_tokens, max_blocks;
    int32_t preemptions;
    bool refused;          /* the scheduler refused it: it can never run */
} kvr_db_serving_request;

/* The pool's occupancy over [t_s, the next point's t_s) (the last: to the run's end). */
typedef struct kvr_db_serving_occupancy {
    int64_t run_id;
    double t_s;
    double blocks_mean; /* time-weighted mean of blocks held */
    int64_t blocks_max;
} kvr_db_serving_occupancy;

/* Store a run, its n_req requests and n_occ occupancy points in one transaction (all or none;
 * run->id is set, the rows' run_id ignored). Empty kvr_version / git_commit / host / ts_utc are
 * filled with this build, this host and now. Errors: KVR_ERR_INVALID_ARG (kind not simulated or
 * measured, empty policy, a request index repeated or outside [0, n_requests), occupancy times
 * not increasing), KVR_ERR_UNSUPPORTED (a file below version 5 opened read-only). */
KVR_API kvr_status kvr_db_serving_run_put(kvr_db *db, kvr_db_serving_run *run,
                                          const kvr_db_serving_request *req, int64_t n_req,
                                          const kvr_db_serving_occupancy *occ, int64_t n_occ,
                                          kvr_error *err);
/* A run stored as it goes (kvr-serve's replay and server: a killed process loses no finished
 * request). begin writes the header row (run as given -- summary fields may be zero -- with no
 * end time; run->id is set; ts_utc etc. filled as put does); requests_add stores finished
 * requests in one transaction (n_requests grows to cover their indices); end writes the summary
 * (every field of run but id, kind and the provenance) and the occupancy, and the end time.
 * Errors: as put; requests_add: KVR_ERR_INVALID_ARG (an index < 0 or stored twice), end:
 * KVR_ERR_NOT_FOUND (no such run), KVR_ERR_INVALID_ARG (it has ended already). */
KVR_API kvr_status kvr_db_serving_run_begin(kvr_db *db, kvr_db_serving_run *run, kvr_error *err);
KVR_API kvr_status kvr_db_serving_requests_add(kvr_db *db, int64_t run_id,
                                               const kvr_db_serving_request *req, int64_t n,
                                               kvr_error *err);
KVR_API kvr_status kvr_db_serving_run_end(kvr_db *db, kvr_db_serving_run *run,
                                          const kvr_db_serving_occupancy *occ, int64_t n_occ,
                                          kvr_error *err);
/* Every serving run, oldest first (free with kvr_db_free; empty below version 5). */
KVR_API kvr_status kvr_db_serving_runs_list(kvr_db *db, kvr_db_serving_run **out, int64_t *n,
                                            kvr_error *err);
/* Errors: KVR_ERR_NOT_FOUND ("serving run 7 not found in PATH"). */
KVR_API kvr_status kvr_db_serving_run_get(kvr_db *db, int64_t id, kvr_db_serving_run *out,
                                          kvr_error *err);
/* A run's requests by index, its occupancy by time (free with kvr_db_free).
 * Errors: KVR_ERR_NOT_FOUND (no such run). */
KVR_API kvr_status kvr_db_serving_requests_get(kvr_db *db, int64_t run_id,
                                               kvr_db_serving_request **out, int64_t *n,
                                               kvr_error *err);
KVR_API kvr_status kvr_db_serving_occupancy_get(kvr_db *db, int64_t run_id,
                                                kvr_db_serving_occupancy **out, int64_t *n,
                                                kvr_error *err);
/* Delete a serving run with its requests and occupancy. Errors: KVR_ERR_NOT_FOUND. */
KVR_API kvr_status kvr_db_serving_run_delete(kvr_db *db, int64_t id, kvr_error *err);

// ----------------------------------------------------------------------------
// export and import (formats in docs/db.md)

/* A run's samples as CSV (the import format, with '#' provenance lines) or one JSON object
 * (run, model, device, layer_samples, transfer_samples). *out is malloc'd: kvr_db_free. */
KVR_API kvr_status kvr_db_export_csv(kvr_db *db, int64_t run_id, char **out, kvr_error *err);
KVR_API kvr_status kvr_db_export_json(kvr_db *db, int64_t run_id, char **out, kvr_error *err);

/* A parsed CSV file: a run (kind "import"), its model and device, and the samples. */
typedef struct kvr_db_csv {
    kvr_db_run run;
    kvr_db_model model;
    kvr_db_device device;
    kvr_db_layer_sample *layers;
    int64_t n_layers;
    kvr_db_transfer_sample *transfers;
    int64_t n_transfers;
} kvr_db_csv;

/* Parse a CSV import file held in memory (buf need not be NUL-terminated). name is used in
 * messages ("file.csv:12: ..."). Errors: KVR_ERR_FORMAT with the line and the cause. */
KVR_API kvr_status kvr_db_csv_parse(const char *buf, size_t len, const char *name,
                                    kvr_db_csv **out, kvr_error *err);
KVR_API void kvr_db_csv_free(kvr_db_csv *csv); /* NULL is a no-op */
/* Store a parsed file as a new run (model, device, run and samples in one transaction). */
KVR_API kvr_status kvr_db_csv_store(kvr_db *db, kvr_db_csv *csv, int64_t *run_id,
                                    kvr_error *err);

#ifdef __cplusplus
}
#endif
#endif /* KVR_DB_H */
