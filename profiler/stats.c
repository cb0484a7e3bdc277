/* stats.c -- robust statistics over repetitions and the adaptive timing harness (warm-up, a
 * minimum of repetitions, more until the median is stable or the point's budget is spent), and
 * the timer's own overhead. Used for layer ops and, collectively, for transfers. */
#include "profiler_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int prof_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double kvr_stats_quantile(const double *s, int32_t n, double q) {
    if (n <= 0) return NAN;
    if (n == 1) return s[0];
    q = q < 0 ? 0 : (q > 1 ? 1 : q);
    double h = q * (n - 1);
    int32_t i = (int32_t)floor(h);
    if (i >= n - 1) return s[n - 1];
    return s[i] + (h - i) * (s[i + 1] - s[i]);
}

void kvr_stats_compute(double *x, int32_t n, kvr_timing_stats *out) {
    out->n_iters = n;
    if (n <= 0) {
        out->min_us = out->p10_us = out->median_us = out->p90_us = NAN;
        out->mean_us = out->stddev_us = out->max_us = NAN;
        return;
    }
    qsort(x, (size_t)n, sizeof *x, prof_cmp_double);
    double sum = 0;
    for (int32_t i = 0; i < n; i++) sum += x[i];
    const double mean = sum / n;
    double ss = 0;
    for (int32_t i = 0; i < n; i++) ss += (x[i] - mean) * (x[i] - mean);
    out->min_us = x[0];
    out->max_us = x[n - 1];
    out->p10_us = kvr_stats_quantile(x, n, 0.10);
    out->median_us = kvr_stats_quantile(x, n, 0.50);
    out->p90_us = kvr_stats_quantile(x, n, 0.90);
    out->mean_us = mean;
    out->stddev_us = n > 1 ? sqrt(ss / (n - 1)) : 0.0;
}

bool kvr_stats_median_stable(const double *s, int32_t n, double rel_tol) {
    if (n < 3) return false;
    /* distribution-free 95% CI of the median: ranks n/2 -+ 1.96 sqrt(n)/2 (1-based) */
    const double half = 0.98 * sqrt((double)n);
    int32_t j = (int32_t)floor(n / 2.0 - half), k = (int32_t)ceil(n / 2.0 + 1 + half);
    if (j < 1) j = 1;
    if (k > n) k = n;
    const double med = kvr_stats_quantile(s, n, 0.5);
    return s[k - 1] - s[j - 1] <= 2 * rel_tol * med;
}

/* Insert v into the sorted prefix s[0..n). */
static void prof_insert_sorted(double *s, int32_t n, double v) {
    int32_t i = n;
    while (i > 0 && s[i - 1] > v) {
        s[i] = s[i - 1];
        i--;
    }
    s[i] = v;
}

void prof_timer_init(prof_timer *t, const kvr_timing_params *tp, double *scratch) {
    memset(t, 0, sizeof *t);
    t->tp = tp;
    t->s = scratch;
    t->warm_done = tp->n_warmup <= 0;
}

bool prof_timer_wants_warmup(const prof_timer *t) {
    return !t->warm_done;
}

void prof_timer_add(prof_timer *t, double time_us) {
    const kvr_timing_params *tp = t->tp;
    if (!t->warm_done) {
        /* warm-ups: the asked number, but no more than half the budget once one has run */
        t->n_warm++;
        t->warm_us += time_us;
        if (t->n_warm >= tp->n_warmup || t->warm_us > tp->budget_s * 1e6 / 2) t->warm_done = true;
        return;
    }
    prof_insert_sorted(t->s, t->n, time_us);
    t->n++;
    t->sum_us += time_us;
    t->stable = kvr_stats_median_stable(t->s, t->n, tp->rel_tol);
    if (t->n >= tp->max_iters ||
        (t->n >= tp->min_iters && (t->stable || t->sum_us >= tp->budget_s * 1e6)))
        t->done = true;
}

void prof_timer_stats(prof_timer *t, kvr_timing_stats *out) {
    kvr_stats_compute(t->s, t->n, out);
    out->n_warmup = t->n_warm;
    out->is_stable = t->stable;
}

kvr_status kvr_time_adaptive(kvr_measure_fn fn, void *user, const kvr_timing_params *tp,
                             double *scratch, kvr_timing_stats *out, kvr_error *err) {
    if (tp->min_iters < 1 || tp->max_iters < tp->min_iters || tp->n_warmup < 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "timing: need 1 <= min_iters (%d) <= max_iters (%d), n_warmup (%d) >= 0",
                             tp->min_iters, tp->max_iters, tp->n_warmup);
    prof_timer t;
    prof_timer_init(&t, tp, scratch);
    while (!t.done) {
        double us = 0;
        const bool warm = prof_timer_wants_warmup(&t);
        KVR_TRY(fn(user, warm ? -tp->n_warmup + t.n_warm : t.n, &us, err));
        prof_timer_add(&t, us);
    }
    prof_timer_stats(&t, out);
    return KVR_OK;
}

double kvr_timer_overhead_us(void) {
    enum { N = 20000 };
    double *d = malloc(N * sizeof *d);
    if (!d) return NAN;
    for (int i = 0; i < N; i++) {
        double a = kvr_time_us();
        double b = kvr_time_us();
        d[i] = b - a;
    }
    qsort(d, N, sizeof *d, prof_cmp_double);
    double med = kvr_stats_quantile(d, N, 0.5);
    free(d);
    return med;
}

bool prof_sample_stored(const kvr_db_layer_sample *s, int64_t n, const char *op, int64_t c,
                        int64_t prefix) {
    for (int64_t i = 0; i < n; i++)
        if (s[i].c == c && s[i].prefix == prefix && strcmp(s[i].op, op) == 0) return true;
    return false;
}

void prof_point_skipped(kvr_profile_result *res, const kvr_profile_hooks *hooks,
                        const char *label) {
    res->n_skipped++;
    if (hooks && hooks->on_point)
        hooks->on_point(hooks->user, label, NULL, res->n_skipped + res->n_measured, res->n_points);
}

kvr_status prof_point_measured(kvr_db *db, int64_t run_id, const char *op, int64_t c,
                               int64_t prefix, const kvr_timing_stats *st,
                               kvr_profile_result *res, const kvr_profile_hooks *hooks,
                               const char *label, kvr_error *err) {
    kvr_db_layer_sample smp;
    memset(&smp, 0, sizeof smp);
    smp.run_id = run_id;
    snprintf(smp.op, sizeof smp.op, "%s", op);
    smp.c = c;
    smp.prefix = prefix;
    smp.stats = *st;
    KVR_TRY(kvr_db_layer_sample_put(db, &smp, err));
    res->n_measured++;
    if (hooks && hooks->on_point)
        hooks->on_point(hooks->user, label, &smp.stats, res->n_skipped + res->n_measured,
                        res->n_points);
    return KVR_OK;
}
