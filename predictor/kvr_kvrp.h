/* kvr_kvrp.h -- predict time: a fitted cost model and a KVR-P partition predictor as loaded
 * from a predictor file or the store's JSON, the partition for a prompt and the TTFT the costs
 * predict for it (through the search module's simulators). What a runtime links: library
 * kvr_kvrp, which depends on kvr_common, kvr_search and cJSON only -- no GSL, no SQLite. Making
 * them (least squares, cost fits, KVR-P fitting, the store) is fit time: kvr_predict.h.
 *
 * Usage (kvr-run --partition auto --predictor FILE):
 *     kvr_error err; kvr_predictor *kp; kvr_predict_costs *costs; kvr_predictor_meta meta;
 *     if (kvr_predictor_file_load("kvrp.json", &kp, &costs, &meta, &err) != KVR_OK) ...
 *     int64_t chunks[8]; double ttft_us;
 *     kvr_predictor_predict(kp, 8, 20000, chunks, &err);          // any C >= 8 * g
 *     if (costs) kvr_predict_costs_ttft(costs, KVR_STRATEGY_KVR_S, 8, 20000, chunks, NULL,
 *                                       &ttft_us, &err);           // what it should take
 *     kvr_predict_costs_destroy(costs); kvr_predictor_destroy(kp);
 *
 * Ownership: kvr_predict_costs and kvr_predictor are opaque handles (destroy(NULL) is a no-op);
 *   kvr_predict_fit, kvr_predict_run_fit and kvr_predictor_meta are values the caller owns
 *   (a run fit owns its costs: kvr_predict_run_fit_free). Strings returned through `char **out`
 *   are malloc'd: free() them.
 * Threads: loaded objects are immutable; kvr_predictor_predict, kvr_predict_fit_eval and
 *   kvr_predict_costs_ttft may run concurrently on a shared object.
 * Errors: every fallible function returns a kvr_status and fills the optional trailing
 *   kvr_error; a malformed document is KVR_ERR_FORMAT naming the file and the member. Nothing
 *   here prints, exits or aborts.
 * Units: times in microseconds (_us), sizes in tokens and bytes; errors and gaps as fractions
 *   (0.01 = 1 %). Formats and forms: docs/predictor.md.
 */
#ifndef KVR_KVRP_H
#define KVR_KVRP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvr_common.h"
#include "kvr_search.h"

#ifdef __cplusplus
extern "C" {
#endif

// ----------------------------------------------------------------------------
// a fitted cost function's statistics (plain values; kvr_predict.h makes them)

#define KVR_PREDICT_MAX_PARAMS 16 /* columns of a design */

typedef enum kvr_predict_weighting {
    KVR_PREDICT_WEIGHT_NONE,     /* ordinary least squares */
    KVR_PREDICT_WEIGHT_RELATIVE, /* w_i = 1 / y_i^2: minimise relative error (needs y_i != 0) */
    KVR_PREDICT_WEIGHT_GIVEN,    /* the caller's w_i >= 0 */
    KVR_PREDICT_WEIGHT_COUNT
} kvr_predict_weighting;

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

/* k-fold cross-validation: relative errors |yhat - y| / |y|, as fractions. */
typedef struct kvr_predict_cv {
    int k;         /* folds (0: not run) */
    uint64_t seed; /* fold assignment: a seeded shuffle, the same on every machine */
    int n_obs;
    double mape_in, max_rel_in;   /* the fit on all data, on all data */
    double mape_out, max_rel_out; /* each observation predicted by the fit without its fold */
} kvr_predict_cv;

// ----------------------------------------------------------------------------
// fitted cost functions (DESIGN.md section 6; fitting them: kvr_predict.h)

/* The fits are over kvr_op (kvr_common.h): pre, attn, post, head and embed over c tokens (attn
 * also over the prefix P; head is paid at c = 1 by a prompt) and link over n bytes. Embed (token
 * rows -> x and the RoPE tables, once per prompt on every rank for its own chunk) is fitted like
 * pre/post; the search module models it as one constant per prompt (embed_us):
 * kvr_predict_costs_ttft evaluates this fit at the run's largest chunk.
 * kvr_predict_fit_order lists the ops in the order fits are listed, stored and written (pre,
 * attn, post, head, link, embed: embed came last, and the store and files keep that order). */
KVR_API extern const kvr_op kvr_predict_fit_order[KVR_OP_COUNT];

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
    /* The data behind it: n_given rows were given, lsq.n_obs were fitted. They differ only
     * above KVR_PREDICT_FIT_MAX_ROWS rows, where the samples at one grid point (c and prefix,
     * or bytes) are merged into their median and, if more points than that remain, every k-th
     * point in grid order is kept (first and last included); reduce names what was done ("" =
     * nothing, "median per grid point", "median per grid point, every 3rd"). This keeps a fit
     * near-linear in the sample count (docs/predictor.md). 0 / "" when not recorded. */
    int64_t n_given;
    char reduce[48];
} kvr_predict_fit;

/* Above this many rows a fit reduces its data (kvr_predict_fit.reduce); piecewise fits also
 * try at most KVR_PREDICT_FIT_MAX_BREAK_CANDIDATES break positions, evenly spaced over the
 * distinct x values. */
#define KVR_PREDICT_FIT_MAX_ROWS 4096
#define KVR_PREDICT_FIT_MAX_BREAK_CANDIDATES 64

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
/* A schedule's fixed overheads (kvr_search_costs_set_overhead: run_us once per prefill,
 * layer_us once per layer step on every rank), carried into every search cost model made from
 * c, its JSON and the predictor files; unset = 0. Errors: KVR_ERR_INVALID_ARG (mode out of
 * range, negative or non-finite). */
KVR_API kvr_status kvr_predict_costs_set_overhead(kvr_predict_costs *c, kvr_mode mode,
                                                  double run_us, double layer_us,
                                                  kvr_error *err);
/* The overheads of a schedule ({0, 0} when unset). */
KVR_API kvr_search_overhead kvr_predict_costs_overhead(const kvr_predict_costs *c, kvr_mode mode);
/* Whether any overhead was set (the JSON then holds "overheads"). */
KVR_API bool kvr_predict_costs_has_overheads(const kvr_predict_costs *c);
/* The fit for op (LINK: the default link), or NULL when unset. Valid until the next set or
 * destroy. */
KVR_API const kvr_predict_fit *kvr_predict_costs_fit(const kvr_predict_costs *c, kvr_op op);
/* A schedule's end-to-end scale: kvr_predict_costs_ttft multiplies that schedule's predicted
 * TTFT of a prompt of C tokens by it when C <= upto_tokens (0: at every length) -- kvr-fit sets
 * it from the profile's end-to-end check when it predicts held-out prompts better than the op
 * model alone, with upto_tokens = twice the check's longest prompt: a correction measured at
 * 64 and 256 tokens is not carried to 2048 (docs/predictor.md, "Error band"). Default 1 for
 * every schedule; kept in "kvr-predict-costs/1" as "scale": {"single", "kvr", "tsp", "ring"}
 * and "scale_upto": {...} (absent: 0, every length). The search module's simulators and tables
 * do not apply it (a per-schedule factor moves no partition of that schedule). Errors:
 * KVR_ERR_INVALID_ARG (unknown schedule, a scale outside [KVR_PREDICT_SCALE_MIN,
 * KVR_PREDICT_SCALE_MAX], upto_tokens < 0). */
#define KVR_PREDICT_SCALE_MIN 0.25
#define KVR_PREDICT_SCALE_MAX 4.0
KVR_API kvr_status kvr_predict_costs_set_scale(kvr_predict_costs *c, kvr_mode mode, double scale,
                                               int64_t upto_tokens, kvr_error *err);
/* The scale applied to a prompt of n_tokens (1 beyond its upto_tokens); n_tokens <= 0: the
 * scale itself, whatever its range. *upto (may be NULL): its upto_tokens. */
KVR_API double kvr_predict_costs_scale(const kvr_predict_costs *c, kvr_mode mode, int64_t n_tokens,
                                       int64_t *upto);
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

/* A cost model fitted from one profile run of the store (kvr-profile, or an import):
 * kvr_predict_fit_run (kvr_predict.h) makes it, the store keeps it as the JSON below. */
typedef struct kvr_predict_run_fit {
    int64_t run_id;      /* the layer samples */
    int64_t link_run_id; /* the transfer samples (0: none, links ideal) */
    int64_t model_id, device_id;
    int32_t n_threads;   /* threads per rank of the profile (predictions hold for runs alike) */
    char model[128], device[128], dtype[16];
    kvr_predict_costs *costs; /* owned: pre, attn, post (+ head, embed, link when profiled) */
    int n_samples[KVR_OP_COUNT]; /* rows used per op (LINK: p2p transfer rows) */
    bool head_constant;  /* head profiled at one c only: a constant (coef {median, 0}) */
    int n_overhead_samples;      /* ovh_* samples used (costs' overheads; 0: none profiled) */
    unsigned overheads_clamped;  /* 1 << kvr_mode: a term fitted negative, clamped at 0 */
    /* The error band of a TTFT prediction, as a fraction (kvr-run flags a run whose measured
     * TTFT is further than this from the prediction: drift), at least 2 %. With the profile's
     * end-to-end check (n_e2e > 0, kvr_profile_overheads' "e2e_<mode>" samples): band_e2e +
     * band_spread (kvr_predict_e2e_band). Without (profiles made before it): band_op. */
    double err_band;
    int n_e2e;          /* end-to-end samples judged (0: none; band_e2e, band_spread < 0) */
    double band_e2e;    /* the largest |median measured / predicted - 1| over them: held out,
                         * since nothing is fitted on them */
    double band_spread; /* the median over them of (max - min) / median of their repeats: the
                         * run-to-run spread of this machine during the profile */
    /* The end-to-end scale per schedule (kvr_predict_costs_set_scale, on costs): for a schedule
     * with end-to-end points at >= 2 prompt lengths, s = the mean of measured / predicted over
     * them, kept (bit 1 << mode of scale_kept) only when predicting each point with the scale
     * of the others (held out) beats the op model alone by 20 %: scale_heldout_err < 0.8 x
     * scale_raw_err (largest relative errors; NaN with < 2 points). The band's end-to-end term is then the
     * held-out error of the scaled predictions. */
    double scale[KVR_MODE_COUNT];
    unsigned scale_kept;
    double scale_raw_err[KVR_MODE_COUNT], scale_heldout_err[KVR_MODE_COUNT];
    double scale_spread[KVR_MODE_COUNT]; /* the largest (p90 - p10) / median of its points: a
                                          * scale is kept only when |s - 1| >= 2 x this */
    int64_t scale_upto[KVR_MODE_COUNT]; /* kept: applied up to this many tokens (2 x the
                                         * check's longest prompt; 0: every length) */
    /* The per-op held-out error of one layer: over every chunk size c >= band_min_c profiled
     * for pre, attn (prefix 0) and post, the k-fold held-out relative error of pre(c) +
     * attn(c, 0) + post(c) -- each op predicted by its fit refitted without that sample's
     * fold; the largest, at least 2 %. (When no chunk size has all three: the ops' own
     * held-out maxima.) */
    double band_op;
    int64_t band_min_c;
    /* The serving decode step (kvr_search_decode_step) fitted from the run's "decode" samples
     * (kvr_predict_fit_decode): n_decode_samples 0 = none profiled (the rest unset). */
    int n_decode_samples;
    kvr_search_decode_step decode;
    double decode_mape_in, decode_mape_cv, decode_max_rel_cv; /* fractions; NaN: no CV */
} kvr_predict_run_fit;
KVR_API void kvr_predict_run_fit_free(kvr_predict_run_fit *f); /* NULL-safe; zeroes it */

/* JSON of a run fit (schema "kvr-fit-costs/1": the ids, threads, error band and the cost model
 * as "kvr-predict-costs/1", numbers exact) -- the json of the store's "costs" fit row -- and
 * back (out is written only on success; free it with kvr_predict_run_fit_free). */
KVR_API kvr_status kvr_predict_run_fit_to_json(const kvr_predict_run_fit *f, char **out,
                                               kvr_error *err);
KVR_API kvr_status kvr_predict_run_fit_from_json(const char *text, size_t len, const char *name,
                                                 kvr_predict_run_fit *out, kvr_error *err);

// ----------------------------------------------------------------------------
// KVR-P: the partition predictor (fitting it: kvr_predict.h)

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

KVR_API void kvr_predictor_destroy(kvr_predictor *kp);
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

/* JSON (schema "kvr-predictor/1", docs/predictor.md): everything predict needs, with exact
 * numbers, plus the statistics. from_json rebuilds a predictor that predicts identically. */
KVR_API kvr_status kvr_predictor_to_json(const kvr_predictor *kp, char **out, kvr_error *err);
KVR_API kvr_status kvr_predictor_from_json(const char *text, size_t len, const char *name,
                                           kvr_predictor **out, kvr_error *err);
/* Read an exported predictor file (the runtime's entry point). */
KVR_API kvr_status kvr_predictor_load(const char *path, kvr_predictor **out, kvr_error *err);

// ----------------------------------------------------------------------------
// the strategy table (plan.c): per context range, the strategy and degree to run and the
// predicted TTFT of every (strategy, degree) the KVR-S table compared -- what kvr-run --mode
// auto asks. kvr-fit builds it from the table it fits KVR-P over and a predictor carries it
// (member "strategy_table" of "kvr-predictor/1"; docs/predictor.md).

typedef struct kvr_strategy_option {
    kvr_strategy strategy;
    int n_ranks; /* 1 for single */
    double ttft_us;
} kvr_strategy_option;

/* One context of the table: it answers for contexts in [context_min, context_max] (the
 * geometric midpoints to its neighbours; the first from 1, the last to KVR_SEARCH_MAX_CONTEXT).
 * best is the fastest option (ties: fewer ranks); options are ordered by TTFT. */
typedef struct kvr_strategy_entry {
    int64_t context, context_min, context_max;
    kvr_strategy_option best;
    int n_options;
    const kvr_strategy_option *options;
} kvr_strategy_entry;

/* One row of a KVR-S table: ttft_us[k] < 0 or NaN when strategy k was not simulated. */
typedef struct kvr_strategy_row {
    int n_ranks;
    int64_t context;
    double ttft_us[KVR_STRATEGY_COUNT];
} kvr_strategy_row;

typedef struct kvr_strategy_table kvr_strategy_table;

/* Build from rows (any order; several rank counts per context; single at any row counts as
 * degree 1). KVR_ERR_INVALID_ARG for no rows or a row with nothing simulated. */
KVR_API kvr_status kvr_strategy_table_build(const kvr_strategy_row *rows, int n,
                                            kvr_strategy_table **out, kvr_error *err);
/* From a search table (every simulated strategy of every row, whatever it marks). */
KVR_API kvr_status kvr_strategy_table_from_search(const kvr_search_table *t,
                                                  kvr_strategy_table **out, kvr_error *err);
KVR_API kvr_status kvr_strategy_table_copy(const kvr_strategy_table *st,
                                           kvr_strategy_table **out, kvr_error *err);
KVR_API void kvr_strategy_table_destroy(kvr_strategy_table *st);
KVR_API int kvr_strategy_table_n_entries(const kvr_strategy_table *st);
KVR_API const kvr_strategy_entry *kvr_strategy_table_entry(const kvr_strategy_table *st, int i);

/* The choice for a prompt of C tokens: the entry whose range holds C, then the fastest of its
 * options with n_ranks <= max_ranks and <= C (ring: 2 n_ranks <= C) and strategy in runnable (a mask of 1u <<
 * kvr_strategy: kvr_strategy_runnable_mask; 0 = any); ties to fewer ranks. in_range says
 * whether C lies between the table's smallest and largest contexts. No allocation; well under a
 * microsecond. KVR_ERR_NOT_FOUND when no option qualifies. */
typedef struct kvr_strategy_choice {
    kvr_strategy strategy;
    int n_ranks;
    double ttft_us;  /* the table's prediction at `context` */
    int64_t context; /* the entry that answered */
    bool in_range;
} kvr_strategy_choice;
KVR_API kvr_status kvr_strategy_table_choose(const kvr_strategy_table *st, int64_t C,
                                             int max_ranks, unsigned runnable,
                                             kvr_strategy_choice *out, kvr_error *err);
/* JSON ("kvr-strategy-table/1", exact numbers) and back. */
KVR_API kvr_status kvr_strategy_table_to_json(const kvr_strategy_table *st, char **out,
                                              kvr_error *err);
KVR_API kvr_status kvr_strategy_table_from_json(const char *text, size_t len, const char *name,
                                                kvr_strategy_table **out, kvr_error *err);

/* A predictor's strategy table (a copy; NULL removes it), and the one it carries (NULL: none --
 * a predictor made before kvr-fit built them). */
KVR_API kvr_status kvr_predictor_set_strategy_table(kvr_predictor *kp,
                                                    const kvr_strategy_table *st,
                                                    kvr_error *err);
KVR_API const kvr_strategy_table *kvr_predictor_strategy_table(const kvr_predictor *kp);

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
    double band_e2e, band_spread; /* its two terms (kvr_predict_run_fit); < 0 (or both 0 when
                                   * written): not measured, the file has none */
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

// ----------------------------------------------------------------------------
// calibrated predictions at run time (the fit: kvr_predict.h, kvr-fit --calibrate)

/* measured ~ a * predicted + b (a stored calibration). */
static inline double kvr_calib_apply(double a, double b, double predicted) {
    return a * predicted + b;
}

/* Online refit for a long-lived runtime: an exponentially weighted factor on the (calibrated)
 * prediction, following the machine as SGLang's dynamic chunking refits its latency model.
 * After each run: factor <- (1 - alpha) * factor + alpha * measured / predicted (the prediction
 * before the factor); the next prediction is factor * predicted. alpha in (0, 1]; factor 1 at
 * the start (the calibration trusted). */
typedef struct kvr_calib_online {
    double alpha, factor;
    int64_t n; /* updates so far */
} kvr_calib_online;
static inline kvr_calib_online kvr_calib_online_init(double alpha) {
    kvr_calib_online o = {alpha, 1.0, 0};
    return o;
}
static inline double kvr_calib_online_predict(const kvr_calib_online *o, double predicted) {
    return o->factor * predicted;
}
static inline void kvr_calib_online_update(kvr_calib_online *o, double predicted, double measured) {
    if (!(predicted > 0) || !(measured > 0)) return; /* nothing to learn from */
    o->factor = (1 - o->alpha) * o->factor + o->alpha * measured / predicted;
    o->n++;
}

#ifdef __cplusplus
}
#endif
#endif /* KVR_KVRP_H */
