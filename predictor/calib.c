/* calib.c -- calibration of end-to-end TTFT predictions from recorded runs (kvr_predict.h):
 * measured = a * predicted + b with a, b >= 0, judged leave-one-out, and the run-to-run spread
 * of repeated identical runs; the groups of the store's measured runs. */
#include "kvr_predict.h"

#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Least squares of y = a x + b over the points but skip (-1: none), a >= 0, b >= 0: the
 * unconstrained solution when feasible, else the better of the two boundary fits (b = 0: the
 * line through the origin; a = 0: the mean). */
static void nn_line(const kvr_calib_point *p, int n, int skip, double *a, double *b) {
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (i == skip) continue;
        const double x = p[i].predicted_ms, y = p[i].measured_ms;
        sx += x, sy += y, sxx += x * x, sxy += x * y, m++;
    }
    const double mx = sx / m, my = sy / m, vxx = sxx - m * mx * mx, vxy = sxy - m * mx * my;
    if (vxx > 1e-12 * sxx) {
        const double a1 = vxy / vxx, b1 = my - a1 * mx;
        if (a1 >= 0 && b1 >= 0) {
            *a = a1, *b = b1;
            return;
        }
    }
    /* boundaries: through the origin (a0 = sxy / sxx >= 0 for positive data), or the mean */
    const double a0 = sxx > 0 ? sxy / sxx : 0;
    double sse0 = 0, sse1 = 0;
    for (int i = 0; i < n; i++) {
        if (i == skip) continue;
        const double x = p[i].predicted_ms, y = p[i].measured_ms;
        sse0 += (y - a0 * x) * (y - a0 * x);
        sse1 += (y - my) * (y - my);
    }
    if (sse0 <= sse1) *a = a0, *b = 0;
    else *a = 0, *b = my;
}

static int cmp_i64(const void *x, const void *y) {
    const int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

kvr_status kvr_calib_fit_points(const kvr_calib_point *p, int n, kvr_calib_fit *out,
                                kvr_error *err) {
    memset(out, 0, sizeof *out);
    if (n < 3)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "calibration: %d run(s), need at least 3", n);
    for (int i = 0; i < n; i++)
        if (!(p[i].predicted_ms > 0) || !(p[i].measured_ms > 0) || !isfinite(p[i].predicted_ms) ||
            !isfinite(p[i].measured_ms))
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "calibration: run %d: predicted %g ms, measured %g ms (need > 0)",
                                 i, p[i].predicted_ms, p[i].measured_ms);
    double *raw = malloc(3 * (size_t)n * sizeof *raw);
    int64_t *sets = malloc((size_t)n * sizeof *sets);
    if (!raw || !sets) {
        free(raw), free(sets);
        return kvr_error_set(err, KVR_ERR_NOMEM, "calibration: out of memory");
    }
    double *cv = raw + n, *tmp = raw + 2 * n;
    nn_line(p, n, -1, &out->a, &out->b);
    out->n = n;
    for (int i = 0; i < n; i++) {
        raw[i] = fabs(p[i].predicted_ms / p[i].measured_ms - 1);
        double a, b;
        nn_line(p, n, i, &a, &b);
        cv[i] = fabs(kvr_calib_apply(a, b, p[i].predicted_ms) / p[i].measured_ms - 1);
    }
    gsl_sort(raw, 1, (size_t)n);
    gsl_sort(cv, 1, (size_t)n);
    out->raw_med_err = gsl_stats_median_from_sorted_data(raw, 1, (size_t)n);
    out->raw_max_err = raw[n - 1];
    out->cv_med_err = gsl_stats_median_from_sorted_data(cv, 1, (size_t)n);
    out->cv_max_err = cv[n - 1];
    out->cv_q90_err = gsl_stats_quantile_from_sorted_data(cv, 1, (size_t)n, 0.9);
    /* the noise: per set of repeats (max - min) / median, the median over sets */
    int ns = 0;
    for (int i = 0; i < n; i++) sets[i] = p[i].set;
    qsort(sets, (size_t)n, sizeof *sets, cmp_i64);
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && sets[j] == sets[i]) j++;
        if (sets[i] > 0 && j - i >= 2) {
            int k = 0;
            for (int q = 0; q < n; q++)
                if (p[q].set == sets[i]) tmp[k++] = p[q].measured_ms;
            gsl_sort(tmp, 1, (size_t)k);
            const double med = gsl_stats_median_from_sorted_data(tmp, 1, (size_t)k);
            raw[ns++] = (tmp[k - 1] - tmp[0]) / med; /* raw is free again: the spreads */
        }
        i = j;
    }
    if (ns > 0) {
        gsl_sort(raw, 1, (size_t)ns);
        out->spread = gsl_stats_median_from_sorted_data(raw, 1, (size_t)ns);
    }
    out->n_sets = ns;
    out->band = out->cv_q90_err + out->spread;
    free(raw), free(sets);
    return KVR_OK;
}

/* The group key of a measured run. */
static bool same_group(const kvr_db_measured_run *x, const kvr_db_measured_run *y) {
    return x->model_id == y->model_id && x->profile_run_id == y->profile_run_id &&
           x->n_ranks == y->n_ranks && x->n_threads == y->n_threads &&
           !strcmp(x->mode, y->mode) && !strcmp(x->transport, y->transport) &&
           (strcmp(x->mode, "kvr") != 0 ||
            !strcmp(x->partition_source, "even") == !strcmp(y->partition_source, "even"));
}

kvr_status kvr_calib_from_store(kvr_db *db, int min_runs, kvr_db_calibration **out, int64_t *n,
                                int64_t *n_small, kvr_error *err) {
    *out = NULL;
    *n = 0;
    if (n_small) *n_small = 0;
    if (min_runs < 3)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "calibration: min_runs %d (need >= 3)",
                             min_runs);
    kvr_db_measured_run *runs = NULL;
    int64_t nr = 0;
    KVR_TRY(kvr_db_measured_runs_list(db, &runs, &nr, err));
    int32_t *group = malloc((size_t)(nr ? nr : 1) * sizeof *group);
    kvr_calib_point *pts = malloc((size_t)(nr ? nr : 1) * sizeof *pts);
    kvr_db_calibration *res = calloc((size_t)(nr ? nr : 1), sizeof *res);
    kvr_status st = KVR_OK;
    if (!group || !pts || !res) {
        st = kvr_error_set(err, KVR_ERR_NOMEM, "calibration: out of memory");
        goto done;
    }
    int32_t ng = 0;
    for (int64_t i = 0; i < nr; i++) { /* groups in order of first appearance */
        group[i] = -1;
        if (!(runs[i].predicted_ttft_ms > 0) || !(runs[i].ttft_ms > 0)) continue;
        for (int64_t j = 0; j < i && group[i] < 0; j++)
            if (group[j] >= 0 && same_group(&runs[i], &runs[j])) group[i] = group[j];
        if (group[i] < 0) group[i] = ng++;
    }
    for (int32_t g = 0; g < ng; g++) {
        int np = 0;
        const kvr_db_measured_run *first = NULL;
        for (int64_t i = 0; i < nr; i++) {
            if (group[i] != g) continue;
            if (!first) first = &runs[i];
            int64_t set = i + 1; /* repeats: the same tokens count and partition */
            for (int64_t j = 0; j < i; j++)
                if (group[j] == g && runs[j].n_tokens == runs[i].n_tokens &&
                    !strcmp(runs[j].partition, runs[i].partition)) {
                    set = j + 1;
                    break;
                }
            pts[np++] = (kvr_calib_point){runs[i].predicted_ttft_ms, runs[i].ttft_ms, set};
        }
        if (np < min_runs) {
            if (n_small) (*n_small)++;
            continue;
        }
        kvr_calib_fit f;
        if ((st = kvr_calib_fit_points(pts, np, &f, err)) != KVR_OK) goto done;
        kvr_db_calibration *c = &res[(*n)++];
        c->model_id = first->model_id;
        c->profile_run_id = first->profile_run_id;
        kvr_mode mode;
        const char *strat = first->mode;
        if (kvr_mode_parse(first->mode, &mode, NULL) == KVR_OK)
            strat = kvr_strategy_name(
                kvr_mode_strategy(mode, strcmp(first->partition_source, "even") == 0));
        snprintf(c->strategy, sizeof c->strategy, "%s", strat);
        c->n_ranks = first->n_ranks;
        c->n_threads = first->n_threads;
        snprintf(c->transport, sizeof c->transport, "%s", first->transport);
        c->a = f.a, c->b = f.b, c->n_runs = f.n;
        c->raw_med_err = f.raw_med_err, c->raw_max_err = f.raw_max_err;
        c->cv_med_err = f.cv_med_err, c->cv_max_err = f.cv_max_err, c->cv_q90_err = f.cv_q90_err;
        c->spread = f.spread, c->n_repeat_sets = f.n_sets, c->band = f.band;
    }
done:
    free(group), free(pts);
    kvr_db_free(runs);
    if (st != KVR_OK) {
        free(res);
        *n = 0;
        return st;
    }
    *out = res;
    return KVR_OK;
}
