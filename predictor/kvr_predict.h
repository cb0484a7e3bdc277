/* kvr_predict.h -- the predictor module (KVR-P and the cost model): GSL regressions with
 * validation, cost-model fits in the forms of DESIGN.md section 6, the bridge from fitted costs
 * to the search module, and KVR-P, the partition predictor fitted over KVR-S tables.
 *
 * Three layers, each usable on its own:
 *   1. kvr_predict_lsq_*    least squares on a design matrix: ordinary or weighted (1/y^2 =
 *      relative error), non-negative (active-set NNLS), robust (bisquare), k-fold validation.
 *   2. kvr_predict_fit_*    per-op cost fits from profiled timings (attention in (c, P), pre/post/
 *      head linear in c with an optional bend, links alpha + bytes/bandwidth with optional
 *      protocol pieces), gathered in a kvr_predict_costs that becomes a kvr_search_costs.
 *   3. kvr_predictor_*      KVR-P: per rank count, the partition boundaries S_i/C as functions of
 *      the context C, chosen among regression and monotone-interpolation forms by held-out TTFT
 *      gap against KVR-S; predict() costs well under a microsecond for p = 8.
 *   4. on the store (kvr_db.h): kvr_predict_fit_run fits a profile run's samples,
 *      kvr_predict_run_fit_store/_load keep cost models as fit rows, kvr_predict_costs_ttft
 *      predicts a runtime prefill's TTFT, predictor files carry KVR-P with its cost model
 *      (kvr-fit, kvr-run --partition auto). The regression report over all of it is its own
 *      module: report/kvr_report.h.
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
#include "kvr_search.h"

#ifdef __cplusplus
extern "C" {
#endif

// ----------------------------------------------------------------------------
// least squares (the GSL wrapper)

#define KVR_PREDICT_MAX_PARAMS 16 /* columns of a design */

typedef enum kvr_predict_weighting {
    KVR_PREDICT_WEIGHT_NONE,     /* ordinary least squares */
    KVR_PREDICT_WEIGHT_RELATIVE, /* w_i = 1 / y_i^2: minimise relative error (needs y_i != 0) */
    KVR_PREDICT_WEIGHT_GIVEN,    /* the caller's w_i >= 0 */
    KVR_PREDICT_WEIGHT_COUNT
} kvr_predict_weighting;

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

/* A fitted linear model y ~ X b and its statistics. */
typedef struct kvr_predict_lsq {
    int n_obs, n_params;
    double coef[KVR_PREDICT_MAX_PARAMS];
    double se[KVR_PREDICT_MAX_PARAMS];  /* standard errors (0 for coefficients held at 0) */
    double cov[KVR_PREDICT_MAX_PARAMS * KVR_PREDICT_MAX_PARAMS]; /* row-major n_params^2 */
    double chi2;  /* weighted residual sum of squares, sum w_i r_i^2 (robust: of the final fit) */
    double dof;   /* n_obs - free parameters */
    double r2;    /* 1 - chi2 / (weighted total sum of squares about the weighted mean) */
    double sigma; /* residual standard deviation sqrt(chi2/dof) (robust: GSL's robust sigma) */
    double rcond; /* reciprocal condition number of the balanced weighted design */
    int rank;     /* numerical rank (== n_params on success) */
    bool at_bound[KVR_PREDICT_MAX_PARAMS]; /* nonneg: coefficient held at 0 */
    int n_at_bound;
    int n_outliers; /* robust: observations whose final bisquare weight is 0 */
    int n_iter;     /* robust: IRLS iterations; nonneg: active-set steps */
} kvr_predict_lsq;

/* Fit y (n) on the row-major design X (n x p, p <= KVR_PREDICT_MAX_PARAMS).
 * opt may be NULL (the defaults). Errors: KVR_ERR_INVALID_ARG (n < p, non-finite data, a zero y
 * under relative weights, negative weights), KVR_ERR_NUMERIC (rank-deficient design, GSL failure,
 * robust iteration not converging). *out is written only on success. */
KVR_API kvr_status kvr_predict_lsq_fit(const double *X, const double *y, int n, int p,
                                       const kvr_predict_lsq_options *opt, kvr_predict_lsq *out,
                                       kvr_error *err);
/* x (p entries) . coef */
KVR_API double kvr_predict_lsq_eval(const kvr_predict_lsq *f, const double *x);

/* k-fold cross-validation: relative errors |yhat - y| / |y|, as fractions. */
typedef struct kvr_predict_cv {
    int k;         /* folds (0: not run) */
    uint64_t seed; /* fold assignment: a seeded shuffle, the same on every machine */
    int n_obs;
    double mape_in, max_rel_in;   /* the fit on all data, on all data */
    double mape_out, max_rel_out; /* each observation predicted by the fit without its fold */
} kvr_predict_cv;

/* Run k-fold CV of the fit kvr_predict_lsq_fit would make (2 <= k <= n; every training set
 * needs >= p rows). A fold whose training design is rank-deficient fails the call with
 * "cv fold i: ...". */
KVR_API kvr_status kvr_predict_lsq_cv(const double *X, const double *y, int n, int p,
                                      const kvr_predict_lsq_options *opt, int k, uint64_t seed,
                                      kvr_predict_cv *out, kvr_error *err);

// ----------------------------------------------------------------------------
// cost-model fits (DESIGN.md section 6)

/* The fits are over kvr_op (kvr_common.h): pre, attn, post, head and embed over c tokens (attn
 * also over the prefix P; head is paid at c = 1 by a prompt) and link over n bytes. Embed (token
 * rows -> x and the RoPE tables, once per prompt on every rank for its own chunk) is fitted like
 * pre/post; the search module models it as one constant per prompt (embed_us):
 * kvr_predict_costs_ttft evaluates this fit at the run's largest chunk.
 * kvr_predict_fit_order lists the ops in the order fits are listed, stored and written (pre,
 * attn, post, head, link, embed: embed came last, and the store and files keep that order). */
KVR_API extern const kvr_op kvr_predict_fit_order[KVR_OP_COUNT];

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

typedef enum kvr_predict_form {
    /* t = k + b c + g P + a (c P + c^2/2); coef = {k, b, g, a} */
    KVR_PREDICT_FORM_ATTN,
    /* continuous piecewise linear in x, non-decreasing when coefficients are >= 0:
     * t = k + sum_j s_j * clamp(x - x_{j-1}, 0, x_j - x_{j-1}) with x_{-1} = 0, x_m = inf;
     * coef = {k, s_0, .., s_m} (m = n_breaks). No break: k + s_0 x. */
    KVR_PREDICT_FORM_HINGE,
    /* independent pieces (protocol changes): t = k_j + s_j x on [x_{j-1}, x_j);
     * coef = {k_0, s_0, k_1, s_1, ..}. For links s_j = 1 / (1000 * gbps_j). */
    KVR_PREDICT_FORM_SEGMENTS,
    KVR_PREDICT_FORM_COUNT
} kvr_predict_form;

/* "attn", "hinge", "segments". */
KVR_API const char *kvr_predict_form_name(kvr_predict_form f);

#define KVR_PREDICT_MAX_BREAKS 4

/* One fitted cost function with its statistics and validation. A plain value (no pointers):
 * copy it, store it, serialise it with kvr_predict_fit_to_json. */
typedef struct kvr_predict_fit {
    kvr_op op;
    kvr_predict_form form;
    int n_breaks;
    double breaks[KVR_PREDICT_MAX_BREAKS]; /* ascending, in tokens (c) or bytes (link) */
    int n_coef;
    double coef[KVR_PREDICT_MAX_PARAMS]; /* see kvr_predict_form */
    kvr_predict_weighting weighting;
    bool nonneg, robust;
    kvr_predict_lsq lsq; /* the final fit: se, cov, chi2, dof, r2, ... */
    kvr_predict_cv cv;   /* k-fold validation of the chosen form */
    double x_min, x_max; /* range of c (or bytes) in the data */
    double prefix_max;   /* ATTN: largest prefix in the data */
} kvr_predict_fit;

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
/* The fitted cost at x (tokens c, or bytes for links) and prefix (ATTN only). */
KVR_API double kvr_predict_fit_eval(const kvr_predict_fit *f, double x, double prefix);

/* JSON of one fit (schema "kvr-predict-fit/1", docs/predictor.md); numbers are written with 17
 * significant digits so a round trip is exact. */
KVR_API kvr_status kvr_predict_fit_to_json(const kvr_predict_fit *f, char **out, kvr_error *err);
KVR_API kvr_status kvr_predict_fit_from_json(const char *text, size_t len, kvr_predict_fit *out,
                                             kvr_error *err);

// ----------------------------------------------------------------------------
// fitted cost models

typedef struct kvr_predict_costs kvr_predict_costs;

/* What the fits do not say. */
typedef struct kvr_predict_costs_info {
    int n_layers;              /* >= 1 */
    double kv_bytes_per_token; /* K and V of one token in one layer */
    double embed_us;           /* once per prompt */
    double head_us;            /* used when there is no HEAD fit (otherwise head(c = 1)) */
    const char *model, *device, *dtype, *source; /* free text, copied; may be NULL */
} kvr_predict_costs_info;

KVR_API kvr_status kvr_predict_costs_create(const kvr_predict_costs_info *info,
                                            kvr_predict_costs **out, kvr_error *err);
KVR_API void kvr_predict_costs_destroy(kvr_predict_costs *c);
/* Set the fit for f->op (LINK: the default link, used for every pair not set below). */
KVR_API kvr_status kvr_predict_costs_set_fit(kvr_predict_costs *c, const kvr_predict_fit *f,
                                             kvr_error *err);
/* Set the fit of the directed link src -> dst (f->op must be LINK). */
KVR_API kvr_status kvr_predict_costs_set_link_fit(kvr_predict_costs *c, int src, int dst,
                                                  const kvr_predict_fit *f, kvr_error *err);
/* The fit for op (LINK: the default link), or NULL when unset. Valid until the next set or
 * destroy. */
KVR_API const kvr_predict_fit *kvr_predict_costs_fit(const kvr_predict_costs *c, kvr_op op);
/* Fit every op present in rows and, when n_links > 0, the default link; ops without rows stay
 * unset. opt may be NULL. */
KVR_API kvr_status kvr_predict_costs_fit_samples(const kvr_predict_costs_info *info,
                                                 const kvr_predict_sample *rows, int n,
                                                 const kvr_predict_link_sample *links,
                                                 int n_links,
                                                 const kvr_predict_fit_options *opt,
                                                 kvr_predict_costs **out, kvr_error *err);
/* The search module's cost model for these fits. PRE, ATTN and POST must be set, and a LINK
 * (default or listed) unless ideal_links (then links cost nothing). When the compute fits are
 * single lines with coefficients >= 0 the result is the search module's linear model (the
 * kvr_search_coeffs of a cost file: the same numbers appear in table exports); otherwise a
 * custom source of kind "fit" (negative fitted values clamp to 0). Piecewise link fits are
 * installed with kvr_search_costs_set_link_time; the links themselves carry each fit's last
 * (largest-message) piece as nominal alpha/bandwidth. HEAD, when fitted, gives head_us =
 * head(1). The result is independent of c (it copies the fits). */
KVR_API kvr_status kvr_predict_costs_to_search(const kvr_predict_costs *c, bool ideal_links,
                                               kvr_search_costs **out, kvr_error *err);
/* The same as a search cost file (docs/search.md) for kvr-search --costs: only when every fit,
 * links included, is a single line (else KVR_ERR_UNSUPPORTED). Numbers are exact. */
KVR_API kvr_status kvr_predict_costs_to_search_json(const kvr_predict_costs *c, bool ideal_links,
                                                    char **out, kvr_error *err);
/* JSON of the whole model (schema "kvr-predict-costs/1"), and back. */
KVR_API kvr_status kvr_predict_costs_to_json(const kvr_predict_costs *c, char **out,
                                             kvr_error *err);
KVR_API kvr_status kvr_predict_costs_from_json(const char *text, size_t len, const char *name,
                                               kvr_predict_costs **out, kvr_error *err);

// ----------------------------------------------------------------------------
// KVR-P: the partition predictor

/* Candidate forms for the boundary fractions f_i(C) = S_i / C, i < p-1. */
typedef enum kvr_predictor_form {
    KVR_PREDICTOR_FORM_LINEAR_C,     /* piecewise-linear interpolation in C (the paper's) */
    KVR_PREDICTOR_FORM_LINEAR_LOGC,  /* piecewise-linear interpolation in log C */
    KVR_PREDICTOR_FORM_STEFFEN_C,    /* monotone cubic (Steffen) interpolation in C */
    KVR_PREDICTOR_FORM_STEFFEN_LOGC, /* monotone cubic (Steffen) interpolation in log C */
    KVR_PREDICTOR_FORM_REG2,         /* least squares on {1, 1/C} */
    KVR_PREDICTOR_FORM_REG3,         /* least squares on {1, 1/C, log C} */
    KVR_PREDICTOR_FORM_REG4,         /* least squares on {1, 1/C, log C, C} */
    /* stage balance: S_i + k S_i^2 / C = (i+1)/p (C + k C), k = C / C0, the boundaries that
     * equalise per-rank time b c_i + a (c_i P_i + c_i^2 / 2) when the linear cost b and the
     * attention area cost a dominate (C0 = 2 b / a, fitted): even split for C << C0, S_i / C ->
     * sqrt((i+1)/p) for C >> C0 */
    KVR_PREDICTOR_FORM_BALANCED,
    /* balanced plus its residuals at the table's contexts, interpolated linearly in log C (held
     * at the end values outside the table) */
    KVR_PREDICTOR_FORM_BALANCED_RESID,
    KVR_PREDICTOR_FORM_COUNT
} kvr_predictor_form;

/* "linear-c", "linear-logc", "steffen-c", "steffen-logc", "reg2", "reg3", "reg4", "balanced",
 * "balanced-resid". */
KVR_API const char *kvr_predictor_form_name(kvr_predictor_form f);
KVR_API kvr_status kvr_predictor_form_parse(const char *name, kvr_predictor_form *out,
                                            kvr_error *err);

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

/* Per rank count: what was fitted and how well it held out. Gaps are TTFT(predicted partition)
 * / TTFT(KVR-S) - 1 under the cost model the predictor was fitted with (negative: the
 * prediction beat the search). Held-out = leave-one-out over the interior contexts of the
 * table (each predicted by the form fitted without it). NaN where not evaluated. */
typedef struct kvr_predictor_stats {
    int n_ranks;
    int n_contexts;                   /* fitted: given + added by densification */
    int n_added;                      /* contexts densification added */
    int64_t context_min, context_max;
    kvr_predictor_form form;
    double loo_mean_gap, loo_max_gap; /* of the chosen form */
    double fit_max_gap;               /* the final fit at the table's own contexts */
    double cand_mean_gap[KVR_PREDICTOR_FORM_COUNT], cand_max_gap[KVR_PREDICTOR_FORM_COUNT];
} kvr_predictor_stats;

typedef struct kvr_predictor kvr_predictor;

/* An empty predictor for granularity g (>= 1); add rank counts with kvr_predictor_add. */
KVR_API kvr_status kvr_predictor_create(int64_t granularity, const char *label,
                                        kvr_predictor **out, kvr_error *err);
KVR_API void kvr_predictor_destroy(kvr_predictor *kp);
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
/* The partition for p ranks and C tokens: chunks_out (p entries) sums to C, every chunk >= g,
 * boundaries on the g grid, the remainder C mod g on the last chunk (the KVR-S rules). No
 * allocation; thread-safe. Outside the fitted contexts interpolants hold their end fractions and
 * regressions extrapolate. Errors: KVR_ERR_NOT_FOUND (p not fitted), KVR_ERR_INVALID_ARG
 * (C < p*g). */
KVR_API kvr_status kvr_predictor_predict(const kvr_predictor *kp, int p, int64_t C,
                                         int64_t *chunks_out, kvr_error *err);
/* KVR-P followed by a bounded exact polish under the cost model m (the one the predictor was
 * fitted with, or the runtime's current one): the predicted partition through the search's
 * kvr_search_polish -- repeatedly the best move of one granularity unit across one boundary or,
 * when none helps and p <= 16, between any two ranks, while TTFT drops, at most max_moves moves
 * (0: 16). Never worse than kvr_predictor_predict under m. Microseconds for p = 8, milliseconds
 * for p = 64 (bench_predict). ttft_us (may be NULL) receives the simulated TTFT. No allocation
 * for p <= 128. Errors: as kvr_predictor_predict; KVR_ERR_NOT_FOUND for a chain link m lacks. */
KVR_API kvr_status kvr_predictor_predict_refined(const kvr_predictor *kp,
                                                 const kvr_search_costs *m, int p, int64_t C,
                                                 int max_moves, int64_t *chunks_out,
                                                 double *ttft_us, kvr_error *err);
KVR_API int64_t kvr_predictor_granularity(const kvr_predictor *kp);
KVR_API const char *kvr_predictor_label(const kvr_predictor *kp); /* "" if none */
KVR_API int kvr_predictor_n_ranks(const kvr_predictor *kp);       /* fitted rank counts */
KVR_API int kvr_predictor_ranks(const kvr_predictor *kp, int i);  /* ascending; i < n_ranks */
KVR_API kvr_status kvr_predictor_stats_get(const kvr_predictor *kp, int p,
                                           kvr_predictor_stats *out, kvr_error *err);

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

/* JSON (schema "kvr-predictor/1", docs/predictor.md): everything predict needs, with exact
 * numbers, plus the statistics. from_json rebuilds a predictor that predicts identically. */
KVR_API kvr_status kvr_predictor_to_json(const kvr_predictor *kp, char **out, kvr_error *err);
KVR_API kvr_status kvr_predictor_from_json(const char *text, size_t len, const char *name,
                                           kvr_predictor **out, kvr_error *err);
/* Read an exported predictor file (the runtime's entry point). */
KVR_API kvr_status kvr_predictor_load(const char *path, kvr_predictor **out, kvr_error *err);

// ----------------------------------------------------------------------------
// fits from the store and the TTFT they predict (predictor/fitdb.c)

/* The TTFT (us) fitted costs predict for one prefill as the runtime runs it, through the search
 * module's simulators: KVR_STRATEGY_SINGLE (p must be 1), KVR_STRATEGY_KVR_S or _KVR_E with the
 * runtime's chunks (p entries summing to C; NULL = the runtime's even split, the first C mod p
 * chunks one token longer), KVR_STRATEGY_TSP, KVR_STRATEGY_RING. The embedding time is the EMBED
 * fit at the largest chunk (every rank embeds its own chunk at the start; 0 without an EMBED
 * fit). Without any link fit the links are ideal. tl (may be NULL) receives the timeline.
 * Errors: as the simulators; KVR_ERR_INVALID_ARG when pre, attn or post is not fitted. */
KVR_API kvr_status kvr_predict_costs_ttft(const kvr_predict_costs *c, kvr_strategy s, int p,
                                          int64_t C, const int64_t *chunks,
                                          kvr_search_timeline *tl, double *ttft_us,
                                          kvr_error *err);
/* The search cost model of c with the embedding time of a chunk of `chunk` tokens (the EMBED
 * fit there; 0 without one). A constant embedding time shifts every strategy's TTFT alike, so
 * KVR-S partitions do not depend on it. Ideal links without a link fit. */
KVR_API kvr_status kvr_predict_costs_search_at(const kvr_predict_costs *c, int64_t chunk,
                                               kvr_search_costs **out, kvr_error *err);

/* A cost model fitted from one profile run of the store (kvr-profile, or an import). */
typedef struct kvr_predict_run_fit {
    int64_t run_id;      /* the layer samples */
    int64_t link_run_id; /* the transfer samples (0: none, links ideal) */
    int64_t model_id, device_id;
    int32_t n_threads;   /* threads per rank of the profile (predictions hold for runs alike) */
    char model[128], device[128], dtype[16];
    kvr_predict_costs *costs; /* owned: pre, attn, post (+ head, embed, link when profiled) */
    int n_samples[KVR_OP_COUNT]; /* rows used per op (LINK: p2p transfer rows) */
    bool head_constant;  /* head profiled at one c only: a constant (coef {median, 0}) */
    /* The held-out error band of a TTFT prediction, as a fraction (kvr-run flags a run whose
     * measured TTFT is further than this from the prediction: drift): over every chunk size
     * c >= band_min_c profiled for pre, attn (prefix 0) and post, the k-fold held-out relative
     * error of one layer's time pre(c) + attn(c, 0) + post(c) -- what a TTFT sums -- each op
     * predicted by its fit refitted without that sample's fold; the largest, at least 2 %.
     * (When no chunk size has all three: the ops' own held-out maxima.) */
    double err_band;
    int64_t band_min_c;
} kvr_predict_run_fit;

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
KVR_API void kvr_predict_run_fit_free(kvr_predict_run_fit *f); /* NULL-safe; zeroes it */

/* JSON of a run fit (schema "kvr-fit-costs/1": the ids, threads, error band and the cost model
 * as "kvr-predict-costs/1", numbers exact) -- the json of the store's "costs" fit row -- and
 * back (out is written only on success; free it with kvr_predict_run_fit_free). */
KVR_API kvr_status kvr_predict_run_fit_to_json(const kvr_predict_run_fit *f, char **out,
                                               kvr_error *err);
KVR_API kvr_status kvr_predict_run_fit_from_json(const char *text, size_t len, const char *name,
                                                 kvr_predict_run_fit *out, kvr_error *err);
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

/* Predictor files (what `kvr-fit --export` writes and `kvr-run --predictor` reads): a
 * "kvr-predictor/1" document (kvr_predictor_to_json) with one more member, "kvr_fit": the
 * fitted cost model (a "kvr-predict-costs/1" document, so the runtime can also predict TTFT),
 * its error band and where it came from. kvr_predictor_from_json reads such a file as a plain
 * predictor. */
typedef struct kvr_predictor_meta {
    int64_t predictor_id; /* store ids (0: none) */
    int64_t run_id, link_run_id, table_id, model_id;
    int32_t n_threads;    /* threads per rank of the profile behind the costs (0: unknown) */
    double err_band;      /* < 0: unknown */
    char model[128];
} kvr_predictor_meta;
/* costs and meta may be NULL. *out is malloc'd: free(). */
KVR_API kvr_status kvr_predictor_file_format(const kvr_predictor *kp,
                                             const kvr_predict_costs *costs,
                                             const kvr_predictor_meta *meta, char **out,
                                             kvr_error *err);
/* Parse a predictor file (name for messages). costs_out (may be NULL) receives the cost model
 * or NULL when the file has none; meta (may be NULL) is zeroed with err_band -1 when absent. */
KVR_API kvr_status kvr_predictor_file_parse(const char *text, size_t len, const char *name,
                                            kvr_predictor **kp_out,
                                            kvr_predict_costs **costs_out,
                                            kvr_predictor_meta *meta, kvr_error *err);
/* Read a file and parse it. Errors: KVR_ERR_IO (unreadable, naming the path), KVR_ERR_FORMAT. */
KVR_API kvr_status kvr_predictor_file_load(const char *path, kvr_predictor **kp_out,
                                           kvr_predict_costs **costs_out,
                                           kvr_predictor_meta *meta, kvr_error *err);

#ifdef __cplusplus
}
#endif
#endif /* KVR_PREDICT_H */
