/* kvr_predict.h -- the predictor module at fit time (KVR-P and the cost model): GSL regressions
 * with validation, cost-model fits in the forms of DESIGN.md section 6, KVR-P fitted over KVR-S
 * tables, and the store bridge. What the fits make -- kvr_predict_fit, kvr_predict_costs (and
 * its bridge to the search module), kvr_predictor, predictor files -- and predicting with them
 * is kvr_kvrp.h (included here), the predict-time part a runtime links without GSL or SQLite.
 *
 * The layers, each usable on its own:
 *   1. kvr_predict_lsq_*    least squares on a design matrix: ordinary or weighted (1/y^2 =
 *      relative error), non-negative (active-set NNLS), robust (bisquare), k-fold validation.
 *   2. kvr_predict_fit_*    per-op cost fits from profiled timings (attention in (c, P), pre/post/
 *      head linear in c with an optional bend, links alpha + bytes/bandwidth with optional
 *      protocol pieces), gathered in a kvr_predict_costs that becomes a kvr_search_costs.
 *   3. kvr_predictor_*      KVR-P: per rank count, the partition boundaries S_i/C as functions of
 *      the context C, chosen among regression and monotone-interpolation forms by held-out TTFT
 *      gap against KVR-S (kvr_kvrp.h predicts: well under a microsecond for p = 8).
 *   4. on the store (kvr_db.h): kvr_predict_fit_run fits a profile run's samples,
 *      kvr_predict_run_fit_store/_load keep cost models as fit rows; predictor files
 *      (kvr_kvrp.h) carry KVR-P with its cost model (kvr-fit --export, kvr-run --partition
 *      auto). The regression report over all of it is its own module: report/kvr_report.h.
 *
 * Usage:
 *     kvr_error err; kvr_search_costs *m; kvr_search_table *t; kvr_predictor *kp;
 *     kvr_search_costs_load_json("llama7b_a100.json", &m, &err);
 *     int ranks[] = {8}; int64_t ctx[] = {2048, 4096, 8192, 16384, 32768, 65536};
 *     kvr_search_table_config cfg = {ranks, 1, ctx, 6, kvr_search_params_default(),
 *                                    1u << KVR_STRATEGY_KVR_S};
 *     kvr_search_table_create(m, &cfg, &t, &err);
 *     if (kvr_predictor_fit(m, t, 16, NULL, &kp, &err) != KVR_OK) { puts(err.msg); ... }
 *     int64_t chunks[8];
 *     kvr_predictor_predict(kp, 8, 20000, chunks, &err);      // any C >= 8 * 16
 *     char *json; kvr_predictor_to_json(kp, &json, &err);      // for the store / the runtime
 *     free(json); kvr_predictor_destroy(kp); kvr_search_table_destroy(t); kvr_search_costs_destroy(m);
 *
 * Ownership: kvr_predict_costs and kvr_predictor are opaque handles (create/destroy; destroy(NULL)
 *   is a no-op). kvr_predict_lsq, kvr_predict_cv and kvr_predict_fit are plain values the caller
 *   owns. Arrays and strings passed in are borrowed for the call and copied when kept. Strings
 *   returned through `char **out` are malloc'd: free() them.
 * Threads: fitted objects are immutable; kvr_predictor_predict and kvr_predict_fit_eval may run
 *   concurrently on a shared object. The fitting functions call gsl_set_error_handler_off() (a
 *   process-wide GSL setting: kvr never wants GSL to abort) and are otherwise reentrant.
 * Errors: every fallible function returns a kvr_status and fills the optional trailing kvr_error.
 *   Bad input (too few observations for a form, non-finite or non-positive timings, a
 *   rank-deficient design) is KVR_ERR_INVALID_ARG or KVR_ERR_NUMERIC with a message naming the
 *   fit ("fit attn: 3 observations < 4 parameters"); a failing GSL call is KVR_ERR_NUMERIC with
 *   gsl_strerror's text. Nothing here prints, exits or aborts.
 * Units: times in microseconds (_us), sizes in tokens and bytes; errors and gaps as fractions
 *   (0.01 = 1 %). Formats, forms and measured figures: docs/predictor.md.
 */
#ifndef KVR_PREDICT_H
#define KVR_PREDICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvr_common.h"
#include "kvr_db.h"
#include "kvr_kvrp.h"
#include "kvr_search.h"

#ifdef __cplusplus
extern "C" {
#endif

// ----------------------------------------------------------------------------
// least squares (the GSL wrapper)

typedef struct kvr_predict_lsq_options {
    kvr_predict_weighting weighting; /* default NONE */
    const double *weights;           /* n weights for WEIGHT_GIVEN; borrowed */
    /* WEIGHT_GIVEN with w_i = 1/sigma_i^2 of known sigmas: the covariance is (X'WX)^-1 as it
     * stands. Otherwise (the default) weights are relative and the covariance is scaled by
     * chi2/dof, as for ordinary least squares. */
    bool weights_are_inverse_variance;
    bool nonneg; /* every coefficient >= 0 (Lawson-Hanson active set); default false */
    bool robust; /* bisquare M-estimation (gsl_multifit_robust) against outliers; default false */
    /* designs whose reciprocal condition number (after column balancing) is below this are
     * rank-deficient: KVR_ERR_NUMERIC. Default 1e-12. */
    double rcond_min;
    const char *label; /* names the fit in messages, e.g. "fit attn"; NULL = "fit" */
} kvr_predict_lsq_options;

KVR_API kvr_predict_lsq_options kvr_predict_lsq_options_default(void);

/* Fit y (n) on the row-major design X (n x p, p <= KVR_PREDICT_MAX_PARAMS).
 * opt may be NULL (the defaults). Errors: KVR_ERR_INVALID_ARG (n < p, non-finite data, a zero y
 * under relative weights, negative weights), KVR_ERR_NUMERIC (rank-deficient design, GSL failure,
 * robust iteration not converging). *out is written only on success. */
KVR_API kvr_status kvr_predict_lsq_fit(const double *X, const double *y, int n, int p,
                                       const kvr_predict_lsq_options *opt, kvr_predict_lsq *out,
                                       kvr_error *err);
/* x (p entries) . coef */
KVR_API double kvr_predict_lsq_eval(const kvr_predict_lsq *f, const double *x);

/* Run k-fold CV of the fit kvr_predict_lsq_fit would make (2 <= k <= n; every training set
 * needs >= p rows). A fold whose training design is rank-deficient fails the call with
 * "cv fold i: ...". */
KVR_API kvr_status kvr_predict_lsq_cv(const double *X, const double *y, int n, int p,
                                      const kvr_predict_lsq_options *opt, int k, uint64_t seed,
                                      kvr_predict_cv *out, kvr_error *err);

// ----------------------------------------------------------------------------
// cost-model fits (DESIGN.md section 6)

/* One profiled layer timing (a row of the store's layer samples). */
typedef struct kvr_predict_sample {
    kvr_op op;         /* PRE, ATTN, POST, HEAD or EMBED */
    int64_t c;         /* tokens in the chunk, >= 1 */
    int64_t prefix;    /* ATTN: tokens before the chunk (>= 0); ignored otherwise */
    double time_us;    /* a robust statistic of repeated runs (the median), > 0 */
} kvr_predict_sample;

/* One profiled transfer (a row of the store's transfer samples). */
typedef struct kvr_predict_link_sample {
    double bytes;   /* >= 0 */
    double time_us; /* > 0 */
} kvr_predict_link_sample;

typedef struct kvr_predict_fit_options {
    kvr_predict_lsq_options lsq; /* default: relative weights, nonneg, not robust */
    int max_breaks;              /* pre/post/head/link: at most this many breaks (default 1) */
    /* a break is kept only when it cuts the held-out MAPE by this fraction (default 0.2) and by
     * more than 1e-9 (exact data) */
    double min_gain;
    int cv_folds;      /* default 5 (fewer when there are fewer observations) */
    uint64_t seed;     /* default 1 */
    bool link_hinge;   /* links: continuous hinge pieces instead of independent segments */
} kvr_predict_fit_options;

KVR_API kvr_predict_fit_options kvr_predict_fit_options_default(void);

/* Fit op (PRE, ATTN, POST, HEAD or EMBED) over the rows of that op in rows[0..n) (rows of other ops are
 * skipped). Breakpoints (not for ATTN) are chosen among the distinct c of the data by held-out
 * error: each candidate is scored by k-fold CV and the best is kept only when it beats the form
 * without it by min_gain. opt may be NULL. Errors: KVR_ERR_INVALID_ARG (too few rows: the
 * message says "fit attn: 3 observations < 4 parameters"; bad values), KVR_ERR_NUMERIC. */
KVR_API kvr_status kvr_predict_fit_op(const kvr_predict_sample *rows, int n, kvr_op op,
                                      const kvr_predict_fit_options *opt, kvr_predict_fit *out,
                                      kvr_error *err);
/* Fit a link: t = alpha + bytes / bandwidth, piecewise in bytes where the protocol changes. */
KVR_API kvr_status kvr_predict_fit_link(const kvr_predict_link_sample *rows, int n,
                                        const kvr_predict_fit_options *opt, kvr_predict_fit *out,
                                        kvr_error *err);

// ----------------------------------------------------------------------------
// the serving decode step (docs/serving.md, "Decode-step costs")

/* One profiled batched decode iteration: batch requests, ctx cached tokens in all (each
 * request's cache plus its new token), the median time of the whole step. */
typedef struct kvr_predict_decode_sample {
    int64_t batch, ctx;
    double time_us;
} kvr_predict_decode_sample;

typedef struct kvr_predict_decode_fit {
    kvr_search_decode_step step; /* k_us + per_seq_us * B + per_ctx_token_us * T, each >= 0 */
    kvr_predict_lsq lsq;         /* the least-squares fit (coef: k, per_seq, per_ctx_token) */
    kvr_predict_cv cv;           /* k-fold held-out relative errors (k 0: too few to hold out) */
} kvr_predict_decode_fit;

/* Fit time = k + s B + t T over n samples by non-negative least squares (GSL, relative weights
 * as the op fits: opt->lsq; NULL = kvr_predict_fit_options_default()), and its k-fold held-out
 * error (opt->cv_folds, fewer when there are fewer than 2 samples per fold; none below 5
 * samples). Errors: KVR_ERR_INVALID_ARG (fewer than 4 samples: "decode fit: 3 samples, need at
 * least 4 ...", fewer than 2 batch sizes, a batch < 1, ctx < batch, a non-positive or
 * non-finite time -- naming the sample), KVR_ERR_NUMERIC (a rank-deficient design: B and T
 * proportional in every sample). */
KVR_API kvr_status kvr_predict_fit_decode(const kvr_predict_decode_sample *s, int n,
                                          const kvr_predict_fit_options *opt,
                                          kvr_predict_decode_fit *out, kvr_error *err);

// ----------------------------------------------------------------------------
// fitted cost models

/* Fit every op present in rows and, when n_links > 0, the default link; ops without rows stay
 * unset. opt may be NULL. */
KVR_API kvr_status kvr_predict_costs_fit_samples(const kvr_predict_costs_info *info,
                                                 const kvr_predict_sample *rows, int n,
                                                 const kvr_predict_link_sample *links,
                                                 int n_links,
                                                 const kvr_predict_fit_options *opt,
                                                 kvr_predict_costs **out, kvr_error *err);

// ----------------------------------------------------------------------------
// KVR-P: the partition predictor

typedef struct kvr_predictor_options {
    unsigned forms;    /* bit mask of 1u << kvr_predictor_form to consider; 0 = all */
    const char *label; /* the link setting / provenance, stored with the predictor; may be NULL */
    /* Densification (> 0, default 0.0025 = 0.25 %): after fitting, probe the geometric middle of
     * every interval between neighbouring contexts (wider than 4 g and 2 %) with a KVR-S search
     * under m; where the fit misses it by more than this gap, add the probe as a context and
     * refit; repeat (at most 8 rounds) until every probe passes or max_contexts is reached.
     * 0 = fit the given rows only. */
    double densify_gap;
    int max_contexts;         /* cap on contexts after densifying (0: 4 x given + 16) */
    kvr_search_params search; /* KVR-S settings of the probes (granularity: the predictor's);
                               * all-zero = kvr_search_params_default() */
} kvr_predictor_options;

KVR_API kvr_predictor_options kvr_predictor_options_default(void);

/* An empty predictor for granularity g (>= 1); add rank counts with kvr_predictor_add. */
KVR_API kvr_status kvr_predictor_create(int64_t granularity, const char *label,
                                        kvr_predictor **out, kvr_error *err);
/* Fit rank count p from n KVR-S rows (contexts in any order, distinct; chunks n x p row-major,
 * on the granularity grid) under the cost model m they were searched with (it scores the forms
 * by TTFT and answers densification probes). Replaces an existing entry for p. opt may be NULL
 * (the defaults). n >= 1; with fewer than 3 contexts nothing can be held out and the form is
 * the first selected one the contexts can carry (linear-c by default). */
KVR_API kvr_status kvr_predictor_add(kvr_predictor *kp, const kvr_search_costs *m, int p, int n,
                                     const int64_t *contexts, const int64_t *chunks,
                                     const kvr_predictor_options *opt, kvr_error *err);
/* A predictor for every rank count > 1 of a KVR-S table (its KVR-S partitions; rows whose
 * partition is KVR-E because kvr-s was not selected are rejected) built from m with
 * granularity g. */
KVR_API kvr_status kvr_predictor_fit(const kvr_search_costs *m, const kvr_search_table *t,
                                     int64_t granularity, const kvr_predictor_options *opt,
                                     kvr_predictor **out, kvr_error *err);

/* Validation against fresh KVR-S searches at any contexts (inside or outside the table). */
typedef struct kvr_predictor_validation {
    int n;
    double mean_gap, max_gap;
    int64_t worst_context;
} kvr_predictor_validation;

/* For each context: KVR-S with sp (NULL: defaults with the predictor's granularity) and the
 * predicted partition (refine_moves < 0: kvr_predictor_predict; >= 0: predict_refined with that
 * max_moves), both simulated under m; gaps_out (n entries, may be NULL) receives each gap. */
KVR_API kvr_status kvr_predictor_validate(const kvr_predictor *kp, const kvr_search_costs *m,
                                          int p, const int64_t *contexts, int n,
                                          const kvr_search_params *sp, int refine_moves,
                                          double *gaps_out, kvr_predictor_validation *out,
                                          kvr_error *err);

// ----------------------------------------------------------------------------
// cost models fitted from the store, and KVR-P checks (predictor/fitdb.c)

/* Fit every op of a profile run (layer samples of run_id; p2p transfer samples of link_run_id,
 * which may be run_id itself, 0 = no links: ideal). Everything is read and validated first:
 * missing run, no model record, missing pre/attn/post samples ("run 3 has no attn samples (ops
 * profiled: pre,post)"), non-finite or non-positive timings (naming op, c and prefix), too few
 * samples for a form, rank-deficient designs -- each a clear KVR_ERR_INVALID_ARG /
 * KVR_ERR_NUMERIC / KVR_ERR_NOT_FOUND; the store is only read. opt may be NULL. *out is
 * written only on success; free it with kvr_predict_run_fit_free. */
KVR_API kvr_status kvr_predict_fit_run(kvr_db *db, int64_t run_id, int64_t link_run_id,
                                       const kvr_predict_fit_options *opt,
                                       kvr_predict_run_fit *out, kvr_error *err);
/* The error band from a profile's end-to-end check: n >= 1 points, each a prompt run
 * identically several times (the median, 10th and 90th percentile of its TTFTs, all > 0) and
 * the TTFT the cost model predicts for it (> 0). *e2e = the largest |median / predicted - 1|
 * (the held-out error of end-to-end predictions), *spread = the median over the points of
 * (p90 - p10) / median (the run-to-run spread: the middle 80 % of the repeats, so that one slow
 * repeat among many does not set it), *band = *e2e + *spread, at least band_floor. Any output
 * may be NULL. Errors: KVR_ERR_INVALID_ARG (n < 1, a time not finite and > 0, p10 > median or
 * median > p90). */
typedef struct kvr_predict_e2e_point {
    double predicted_us, median_us, p10_us, p90_us;
} kvr_predict_e2e_point;
KVR_API kvr_status kvr_predict_e2e_band(const kvr_predict_e2e_point *pts, int n, double band_floor,
                                        double *e2e, double *spread, double *band,
                                        kvr_error *err);

/* Store a run fit in one transaction (all rows or none): one fit row per fitted op (target =
 * the op name, "link" for the default link; json = "kvr-predict-fit/1"; r2, mape_in, mape_cv =
 * cv.mape_out, max_err_cv = cv.max_rel_out) and one row with target "costs", form
 * "kvr-fit-costs" (json = kvr_predict_run_fit_to_json, max_err_cv = err_band). *costs_id (may
 * be NULL) receives the id of the "costs" row. The handle must not be inside a transaction. */
KVR_API kvr_status kvr_predict_run_fit_store(kvr_db *db, const kvr_predict_run_fit *f,
                                             int64_t *costs_id, kvr_error *err);
/* The newest stored cost model ("costs" row): of profile run run_id when > 0; else the newest
 * whose profile was of model_id (0 = any) with n_threads threads per rank (0 = any).
 * *fit_id (may be NULL) receives its row id. Errors: KVR_ERR_NOT_FOUND (saying how to make one),
 * KVR_ERR_FORMAT (a damaged row). */
KVR_API kvr_status kvr_predict_run_fit_load(kvr_db *db, int64_t run_id, int64_t model_id,
                                            int32_t n_threads, kvr_predict_run_fit *out,
                                            int64_t *fit_id, kvr_error *err);

/* Copy rank count p's fit from src into dst (replacing dst's own for p). Errors:
 * KVR_ERR_NOT_FOUND (src has no fit for p), KVR_ERR_INVALID_ARG (different granularities). */
KVR_API kvr_status kvr_predictor_copy_ranks(kvr_predictor *dst, const kvr_predictor *src, int p,
                                            kvr_error *err);

/* The held-out TTFT gap of a KVR-P predictor against fresh KVR-S searches for rank count p:
 * inside the fitted context range (n_in contexts spread geometrically between the table's
 * contexts, none of them in the table) and outside it (below: down to p * g; above: up to
 * 2 x the largest context). Gaps as kvr_predictor_validate (fractions). */
typedef struct kvr_predictor_gaps {
    int n_in, n_out;
    double in_mean, in_max, out_mean, out_max;
    int64_t in_worst, out_worst; /* contexts of the largest gaps */
} kvr_predictor_gaps;
KVR_API kvr_status kvr_predictor_gaps_get(const kvr_predictor *kp, const kvr_search_costs *m,
                                          int p, int n_in, kvr_predictor_gaps *out,
                                          kvr_error *err);

/* The run whose p2p transfer samples give the links when fitting profile run run_id:
 * requested > 0 as given, < 0 none (ideal links: *link_run = 0), 0 the default -- the newest
 * run of the same model and device with p2p samples (run_id itself included; 0 when there is
 * none). Errors: KVR_ERR_NOT_FOUND (no run run_id), db errors. */
KVR_API kvr_status kvr_predict_fit_links(kvr_db *db, int64_t run_id, int64_t requested,
                                         int64_t *link_run, kvr_error *err);

// ----------------------------------------------------------------------------
// KVR-P as kvr-fit --kvrp fits it, end to end (predictor/kvrp_fit.c)

typedef struct kvr_predict_kvrp_params {
    int64_t table_id;       /* > 0: over this stored partition table (its rows, scored under the
                               costs it was searched with); 0: over a KVR-S table built here from
                               the fitted costs at `contexts` */
    const char *costs_path; /* table_id: score under this cost file instead */
    const int *ranks;       /* rank counts to fit */
    int n_ranks;
    const int64_t *contexts; /* built table: sorted, unique */
    int n_contexts;
    int64_t granularity;    /* built table (a stored one has its own); default 16 */
    bool no_densify;        /* fit the table's contexts only */
    int64_t costs_fit_id;   /* the stored fit row of rf's cost model (labels; 0: unknown) */
    bool store;             /* store the built table and one predictor row per rank count (one
                               transaction); default true */
    /* A table kvr-search made from a profile run (cost kind "profile") is scored under that
     * profile's interpolated costs, which the profiler builds: the caller provides them
     * (kvr_profile_costs_from_run with link_run_id and allow_incomplete). */
    kvr_status (*profile_costs)(void *user, kvr_db *db, int64_t run_id, int64_t link_run_id,
                                kvr_search_costs **out, kvr_error *err);
    void *user;
} kvr_predict_kvrp_params;
KVR_API kvr_predict_kvrp_params kvr_predict_kvrp_params_default(void);

typedef struct kvr_predict_kvrp_rank {
    int p;
    kvr_predictor_stats st;
    kvr_predictor_gaps gaps; /* 24 contexts inside the range, and outside */
    int64_t predictor_id;    /* its stored row (0: not stored) */
} kvr_predict_kvrp_rank;

typedef struct kvr_predict_kvrp_result {
    kvr_predictor *kp;             /* every rank count (owned) */
    kvr_predict_kvrp_rank *ranks;  /* n_ranks, in the order asked (owned) */
    int n_ranks;
    int64_t table_id;              /* the table fitted over: the given or the stored one (0: a
                                      built table not stored) */
    char links[256];               /* the links as the table describes them */
} kvr_predict_kvrp_result;

/* Fit KVR-P per p->ranks and, with p->store, store it. rf is the cost model of the run (from
 * kvr_predict_fit_run, or empty: then the newest stored one, or for a stored table its run's,
 * is loaded into it). Errors name the table, run or rank count at fault (with kvr-fit's option
 * names, as they are shown to users); nothing is stored on error. *out: free with
 * kvr_predict_kvrp_result_free. */
KVR_API kvr_status kvr_predict_kvrp_fit(kvr_db *db, const kvr_predict_kvrp_params *p,
                                        kvr_predict_run_fit *rf, kvr_predict_kvrp_result *out,
                                        kvr_error *err);
KVR_API void kvr_predict_kvrp_result_free(kvr_predict_kvrp_result *r); /* NULL-safe; zeroes */
/* The predictor file (kvr_predictor_file_format) of what kvr_predict_kvrp_fit fitted, with rf's
 * cost model. *out: free(). */
KVR_API kvr_status kvr_predict_kvrp_file_format(const kvr_predict_kvrp_result *r,
                                                const kvr_predict_run_fit *rf, char **out,
                                                kvr_error *err);
/* The predictor file of stored predictors: predictor_id's (> 0), else the newest for each of
 * ranks; the cost model of the first. Errors: KVR_ERR_NOT_FOUND naming what is missing. */
KVR_API kvr_status kvr_predict_kvrp_file_from_store(kvr_db *db, int64_t predictor_id,
                                                    const int *ranks, int n_ranks, char **out,
                                                    kvr_error *err);

// ----------------------------------------------------------------------------
// calibration of end-to-end predictions (kvr-fit --calibrate; docs/predictor.md)
//
// The cost model sums ops; a schedule also pays what lies between them (rank start, barriers,
// thread-team wake-ups, first touches), which the op model misses most for small models and
// short prompts. A calibration fits, per (model, profile run, strategy, ranks, threads,
// transport), measured = a * predicted + b with a, b >= 0 over the recorded runs -- b is the
// schedule's fixed overhead, a its proportional miss -- and judges it held out.

typedef struct kvr_calib_point {
    double predicted_ms, measured_ms; /* both > 0 */
    int64_t set; /* > 0: points of one set are repeats of one identical run (the noise); 0 none */
} kvr_calib_point;

typedef struct kvr_calib_fit {
    double a, b;
    int32_t n;
    double raw_med_err, raw_max_err;            /* |predicted / measured - 1| */
    double cv_med_err, cv_max_err, cv_q90_err;  /* the calibrated prediction, leave-one-out */
    double spread;                              /* median over sets of (max - min) / median */
    int32_t n_sets;                             /* repeat sets with >= 2 points */
    double band;                                /* cv_q90_err + spread */
} kvr_calib_fit;

/* Fit n >= 3 points (non-negative least squares on the two parameters; the leave-one-out fits
 * use the same rule on n - 1). Errors: KVR_ERR_INVALID_ARG (n < 3, a non-positive or
 * non-finite time), NOMEM. */
KVR_API kvr_status kvr_calib_fit_points(const kvr_calib_point *pts, int n, kvr_calib_fit *out,
                                        kvr_error *err);

/* Every group of the store's measured runs with a raw prediction (model, profile run, strategy
 * -- kvr with an even partition is kvr-e, else kvr-s --, ranks, threads, transport) with at
 * least min_runs (>= 3) runs, fitted: *out (kvr_db_free) holds n rows ready for
 * kvr_db_calibration_put (id 0, provenance empty); groups with fewer runs are counted in
 * *n_small (may be NULL). Runs of one set: the same tokens count and partition. */
KVR_API kvr_status kvr_calib_from_store(kvr_db *db, int min_runs, kvr_db_calibration **out,
                                        int64_t *n, int64_t *n_small, kvr_error *err);

#ifdef __cplusplus
}
#endif
#endif /* KVR_PREDICT_H */
