/* kvr_report.h -- the regression report (kvr-report, docs/report.md): one self-contained HTML
 * page and a Markdown summary of everything in the store -- cost-model fits, predicted vs
 * measured TTFT, partition tables and KVR-P predictors, per-rank timelines under the fitted costs.
 *
 * Usage:
 *     static kvr_status plot(void *user, const char *name, const char *script, char **svg,
 *                            kvr_error *err);     // e.g. run gnuplot on script
 *     char *html, *md; kvr_report_summary sum; kvr_error err;
 *     if (kvr_report_build(db, NULL, plot, NULL, &html, &md, &sum, &err) != KVR_OK) ...
 *     free(html); free(md);
 *
 * Only text is built here: nothing prints, spawns a process or touches a file (the caller's
 * renderer does the plots). Errors are a kvr_status with the optional trailing kvr_error.
 */
#ifndef KVR_REPORT_H
#define KVR_REPORT_H

#include <stdint.h>

#include "kvr_common.h"
#include "kvr_db.h"

#ifdef __cplusplus
extern "C" {
#endif

// ----------------------------------------------------------------------------
// the report

/* Renders one plot: script is a complete gnuplot script (SVG terminal, data inline); *svg
 * receives malloc'd SVG text (freed by the report). name is a short id ("residuals"). */
typedef kvr_status (*kvr_report_plot_fn)(void *user, const char *name, const char *script,
                                         char **svg, kvr_error *err);

typedef struct kvr_report_options {
    const char *title;        /* default "kvr report" */
    int width;                /* plot width in pixels (default 960) */
    int timeline_ranks;       /* timelines for this rank count (0: the largest predictor's, >= 2) */
    int64_t timeline_context; /* at this context (0: the largest measured at that rank count,
                               * else 4096) */
} kvr_report_options;
KVR_API kvr_report_options kvr_report_options_default(void);

typedef struct kvr_report_summary {
    int n_plots, n_fits, n_cost_models, n_tables, n_predictors, n_measured, n_predicted, n_drift;
    int n_serving_runs, n_serving_traces;
} kvr_report_summary;

/* Build the report of everything in the store: *html is one self-contained HTML page (inline
 * CSS, every plot an inline <svg> from plot()), *md (may be NULL) a Markdown summary of the
 * same tables. Sections: cost-model fits (the newest three: statistics, coefficients with
 * standard errors, error band) with fitted curves and residual plots; predicted vs measured TTFT
 * (scatter with the error band and drift, accuracy per strategy, the newest 40 runs); KVR-P
 * predictors, TTFT vs context per strategy and rank count (the newest partition table, measured
 * runs as points) and partition boundaries vs context (KVR-S points, KVR-P lines); per-rank
 * timelines (KVR-P, KVR-E, TSP) simulated under the newest cost model; serving runs (a table,
 * and for the newest three traces TTFT and TPOT CDFs -- simulated solid, measured dashed --,
 * queue time vs prompt length, pool occupancy over time; TTFT p50/p90 vs arrival rate per family
 * of traces). Missing data gives a
 * note instead of a plot. opt may be NULL; sum (may be NULL) counts what went in. Errors: the
 * store's, the renderer's (prefixed "plot NAME"), KVR_ERR_NOMEM. Strings are malloc'd: free(). */
KVR_API kvr_status kvr_report_build(kvr_db *db, const kvr_report_options *opt,
                                    kvr_report_plot_fn plot, void *user, char **html, char **md,
                                    kvr_report_summary *sum, kvr_error *err);

#ifdef __cplusplus
}
#endif
#endif /* KVR_REPORT_H */
