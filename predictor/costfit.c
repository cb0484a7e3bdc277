/* costfit.c -- cost-model fits in the forms of DESIGN.md section 6:
 *   attention  t(c, P) = k + b c + g P + a (c P + c^2/2)
 *   pre/post/head  t(c) = k + b c, or a continuous hinge with a bend where small-c GEMM
 *              efficiency changes (the breakpoint chosen by held-out error, or none)
 *   link       t(n) = alpha + n / bandwidth, or independent pieces where the protocol changes
 * gathered into a fitted cost model (the object, its evaluation and its bridge to the search
 * module are costs.c's, in kvr_kvrp). */
#include "predictor_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

kvr_predict_fit_options kvr_predict_fit_options_default(void) {
    kvr_predict_fit_options o;
    memset(&o, 0, sizeof o);
    o.lsq = kvr_predict_lsq_options_default();
    o.lsq.weighting = KVR_PREDICT_WEIGHT_RELATIVE;
    o.lsq.nonneg = true;
    o.max_breaks = 1;
    o.min_gain = 0.2;
    o.cv_folds = 5;
    o.seed = 1;
    return o;
}

// ----------------------------------------------------------------------------
// fitting one form

typedef struct fit_data {
    int n;
    double *x, *P, *t; /* n each */
    const char *label;
} fit_data;

/* Folds for CV: the configured count, raised (up to leave-one-out) until every training set
 * keeps at least q rows; 0 when even leave-one-out cannot. */
static int fit_folds(int n, int q, int want) {
    if (want < 2) want = 2;
    for (int k = KVR_MIN(want, n); k <= n && k >= 2; k++) {
        int largest = (n + k - 1) / k;
        if (n - largest >= q) return k;
    }
    return 0;
}

/* Fit form with breaks to the data; with_cv also runs CV (its failure is an error). */
static kvr_status fit_form(const fit_data *d, kvr_op op, kvr_predict_form form,
                           const double *br, int nb, const kvr_predict_fit_options *o,
                           bool with_cv, kvr_predict_fit *out, kvr_error *err) {
    const int q = predict_fit_n_coef(form, nb);
    double *X = malloc((size_t)d->n * (size_t)q * sizeof *X);
    if (!X) return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", d->label);
    for (int i = 0; i < d->n; i++) predict_fit_row(form, br, nb, d->x[i], d->P[i], X + (size_t)i * q);
    kvr_predict_lsq_options lo = o->lsq;
    lo.label = d->label;
    kvr_predict_fit f;
    memset(&f, 0, sizeof f);
    kvr_status s = kvr_predict_lsq_fit(X, d->t, d->n, q, &lo, &f.lsq, err);
    if (s == KVR_OK && with_cv) {
        int k = fit_folds(d->n, q, o->cv_folds);
        if (k >= 2) s = kvr_predict_lsq_cv(X, d->t, d->n, q, &lo, k, o->seed, &f.cv, err);
    }
    free(X);
    if (s != KVR_OK) return s;
    f.op = op;
    f.form = form;
    f.n_breaks = nb;
    for (int j = 0; j < nb; j++) f.breaks[j] = br[j];
    f.n_coef = q;
    memcpy(f.coef, f.lsq.coef, sizeof f.coef);
    f.weighting = o->lsq.weighting;
    f.nonneg = o->lsq.nonneg;
    f.robust = o->lsq.robust;
    f.x_min = INFINITY;
    f.x_max = -INFINITY;
    for (int i = 0; i < d->n; i++) {
        f.x_min = KVR_MIN(f.x_min, d->x[i]);
        f.x_max = KVR_MAX(f.x_max, d->x[i]);
        f.prefix_max = KVR_MAX(f.prefix_max, d->P[i]);
    }
    *out = f;
    return KVR_OK;
}

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Above KVR_PREDICT_FIT_MAX_ROWS rows: merge the rows at one grid point (x, P) into their
 * median time, then, while more than that many points remain, keep every k-th in grid order
 * plus the last (the range stays whole). O(n log n); d is compacted in place and what was
 * done is written to reduce. */
typedef struct fit_row {
    double x, P, t;
} fit_row;

static int cmp_row(const void *a, const void *b) {
    const fit_row *r = a, *s = b;
    if (r->x != s->x) return (r->x > s->x) - (r->x < s->x);
    if (r->P != s->P) return (r->P > s->P) - (r->P < s->P);
    return (r->t > s->t) - (r->t < s->t);
}

static kvr_status fit_reduce(fit_data *d, char *reduce, size_t len, kvr_error *err) {
    reduce[0] = 0;
    if (d->n <= KVR_PREDICT_FIT_MAX_ROWS) return KVR_OK;
    fit_row *r = malloc((size_t)d->n * sizeof *r);
    if (!r) return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", d->label);
    for (int i = 0; i < d->n; i++) r[i] = (fit_row){d->x[i], d->P[i], d->t[i]};
    qsort(r, (size_t)d->n, sizeof *r, cmp_row); /* times ascending within a point */
    int m = 0;
    for (int i = 0; i < d->n;) {
        int j = i;
        while (j < d->n && r[j].x == r[i].x && r[j].P == r[i].P) j++;
        const int g = j - i; /* the median of r[i..j) */
        const double t = g % 2 ? r[i + g / 2].t : 0.5 * (r[i + g / 2 - 1].t + r[i + g / 2].t);
        r[m++] = (fit_row){r[i].x, r[i].P, t};
        i = j;
    }
    snprintf(reduce, len, "median per grid point");
    int k = 1;
    if (m > KVR_PREDICT_FIT_MAX_ROWS) {
        k = (m + KVR_PREDICT_FIT_MAX_ROWS - 2) / (KVR_PREDICT_FIT_MAX_ROWS - 1);
        snprintf(reduce, len, "median per grid point, every %d%s", k,
                 k % 10 == 1 && k % 100 != 11   ? "st"
                 : k % 10 == 2 && k % 100 != 12 ? "nd"
                 : k % 10 == 3 && k % 100 != 13 ? "rd"
                                                : "th");
    }
    int n = 0;
    for (int i = 0; i < m; i++)
        if (i % k == 0 || i == m - 1) {
            d->x[n] = r[i].x;
            d->P[n] = r[i].P;
            d->t[n] = r[i].t;
            n++;
        }
    d->n = n;
    free(r);
    return KVR_OK;
}

/* The piecewise forms: no break, then greedily the candidate break (a distinct x of the data)
 * with the lowest held-out MAPE, kept only when it beats the current form by min_gain. At most
 * KVR_PREDICT_FIT_MAX_BREAK_CANDIDATES candidates, evenly spaced over the distinct x, are tried
 * per round (all of them when there are fewer). */
static kvr_status fit_piecewise(const fit_data *d, kvr_op op, kvr_predict_form form,
                                const kvr_predict_fit_options *o, kvr_predict_fit *out,
                                kvr_error *err) {
    double *u = malloc((size_t)d->n * sizeof *u);
    if (!u) return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", d->label);
    memcpy(u, d->x, (size_t)d->n * sizeof *u);
    qsort(u, (size_t)d->n, sizeof *u, cmp_dbl);
    int K = 0;
    for (int i = 0; i < d->n; i++)
        if (K == 0 || u[i] != u[K - 1]) u[K++] = u[i];
    if (K < 2) {
        free(u);
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "%s: all %d observations at %s = %g: a line needs at least 2 "
                             "distinct values",
                             d->label, d->n, op == KVR_OP_LINK ? "bytes" : "c", d->x[0]);
    }
    kvr_predict_fit best;
    kvr_status s = fit_form(d, op, form, NULL, 0, o, true, &best, err);
    int max_breaks = KVR_MIN(o->max_breaks, KVR_PREDICT_MAX_BREAKS);
    /* a hinge break at u[j] needs 2 distinct x at or below it and 2 above; a segment break
     * (the upper piece starts at u[j]) needs 2 distinct x on each side */
    const int j_lo = form == KVR_PREDICT_FORM_HINGE ? 1 : 2;
    const int j_hi = form == KVR_PREDICT_FORM_HINGE ? K - 3 : K - 2;
    while (s == KVR_OK && best.cv.k >= 2 && best.n_breaks < max_breaks) {
        kvr_predict_fit cand_best;
        bool found = false;
        const int n_cand = j_hi - j_lo + 1;
        const int step = n_cand > KVR_PREDICT_FIT_MAX_BREAK_CANDIDATES
                             ? KVR_CEIL_DIV(n_cand, KVR_PREDICT_FIT_MAX_BREAK_CANDIDATES)
                             : 1;
        for (int j = j_lo; j <= j_hi; j += step) {
            double br[KVR_PREDICT_MAX_BREAKS];
            int nb = 0;
            bool dup = false;
            for (int b = 0; b < best.n_breaks; b++) dup = dup || best.breaks[b] == u[j];
            if (dup) continue;
            for (int b = 0; b < best.n_breaks; b++) br[nb++] = best.breaks[b];
            br[nb++] = u[j];
            qsort(br, (size_t)nb, sizeof br[0], cmp_dbl);
            kvr_predict_fit c;
            kvr_error ce;
            if (fit_form(d, op, form, br, nb, o, true, &c, &ce) != KVR_OK || c.cv.k < 2)
                continue; /* a candidate the data cannot carry (e.g. a rank-deficient fold) */
            if (!found || c.cv.mape_out < cand_best.cv.mape_out) {
                cand_best = c;
                found = true;
            }
        }
        /* relative gain, and more than rounding noise (exact data has MAPEs near 1e-16) */
        if (!found || !(cand_best.cv.mape_out < best.cv.mape_out * (1 - o->min_gain)) ||
            !(best.cv.mape_out - cand_best.cv.mape_out > 1e-9))
            break;
        best = cand_best;
    }
    free(u);
    if (s == KVR_OK) *out = best;
    return s;
}

// ----------------------------------------------------------------------------
// public fits

static kvr_status fit_check_opts(const kvr_predict_fit_options *o, const char *label,
                                 kvr_error *err) {
    if (o->max_breaks < 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: max_breaks must be >= 0", label);
    if (!(o->min_gain >= 0 && o->min_gain < 1))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: min_gain must be in [0, 1)", label);
    return KVR_OK;
}

static kvr_status fit_check_time(double t, int row, const kvr_predict_fit_options *o,
                                 const char *label, kvr_error *err) {
    if (!isfinite(t))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: row %d: time_us is not finite (%g)",
                             label, row, t);
    if (o->lsq.weighting == KVR_PREDICT_WEIGHT_RELATIVE && !(t > 0))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "%s: row %d: time_us must be > 0 for relative-error weights, got %g",
                             label, row, t);
    if (t < 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: row %d: negative time_us %g", label,
                             row, t);
    return KVR_OK;
}

/* Fits one layer op; see kvr_predict.h. */
kvr_status kvr_predict_fit_op(const kvr_predict_sample *rows, int n, kvr_op op,
                              const kvr_predict_fit_options *opt, kvr_predict_fit *out,
                              kvr_error *err) {
    kvr_predict_fit_options o = opt ? *opt : kvr_predict_fit_options_default();
    char label[32];
    snprintf(label, sizeof label, "fit %s", kvr_op_name(op));
    if (!out || (n > 0 && !rows) || n < 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: bad arguments", label);
    if ((unsigned)op >= KVR_OP_COUNT || op == KVR_OP_LINK)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "%s: op must be pre, attn, post, head or embed (links: "
                             "kvr_predict_fit_link)",
                             label);
    KVR_TRY(fit_check_opts(&o, label, err));
    fit_data d = {0, NULL, NULL, NULL, label};
    int m = 0;
    for (int i = 0; i < n; i++) m += rows[i].op == op;
    const int q_min = op == KVR_OP_ATTN ? 4 : 2;
    if (m < q_min)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: %d observations < %d parameters",
                             label, m, q_min);
    d.x = malloc((size_t)m * sizeof *d.x);
    d.P = malloc((size_t)m * sizeof *d.P);
    d.t = malloc((size_t)m * sizeof *d.t);
    kvr_status s = KVR_OK;
    if (!d.x || !d.P || !d.t) {
        s = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", label);
        goto done;
    }
    for (int i = 0; i < n && s == KVR_OK; i++) {
        const kvr_predict_sample *r = &rows[i];
        if (r->op != op) continue;
        if (r->c < 1)
            s = kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: row %d: c must be >= 1, got %lld",
                              label, i, (long long)r->c);
        else if (op == KVR_OP_ATTN && r->prefix < 0)
            s = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                              "%s: row %d: prefix must be >= 0, got %lld", label, i,
                              (long long)r->prefix);
        else
            s = fit_check_time(r->time_us, i, &o, label, err);
        d.x[d.n] = (double)r->c;
        d.P[d.n] = op == KVR_OP_ATTN ? (double)r->prefix : 0;
        d.t[d.n] = r->time_us;
        d.n++;
    }
    if (s != KVR_OK) goto done;
    char reduce[sizeof out->reduce];
    if ((s = fit_reduce(&d, reduce, sizeof reduce, err)) != KVR_OK) goto done;
    if (op == KVR_OP_ATTN) {
        kvr_predict_fit f;
        s = fit_form(&d, op, KVR_PREDICT_FORM_ATTN, NULL, 0, &o, true, &f, err);
        if (s == KVR_OK) *out = f;
    } else {
        s = fit_piecewise(&d, op, KVR_PREDICT_FORM_HINGE, &o, out, err);
    }
    if (s == KVR_OK) {
        out->n_given = m;
        memcpy(out->reduce, reduce, sizeof out->reduce);
    }
done:
    free(d.x);
    free(d.P);
    free(d.t);
    return s;
}

/* Fits a link; see kvr_predict.h. */
kvr_status kvr_predict_fit_link(const kvr_predict_link_sample *rows, int n,
                                const kvr_predict_fit_options *opt, kvr_predict_fit *out,
                                kvr_error *err) {
    kvr_predict_fit_options o = opt ? *opt : kvr_predict_fit_options_default();
    const char *label = "fit link";
    if (!out || (n > 0 && !rows) || n < 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: bad arguments", label);
    KVR_TRY(fit_check_opts(&o, label, err));
    if (n < 2)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: %d observations < 2 parameters",
                             label, n);
    fit_data d = {0, NULL, NULL, NULL, label};
    d.x = malloc((size_t)n * sizeof *d.x);
    d.P = calloc((size_t)n, sizeof *d.P);
    d.t = malloc((size_t)n * sizeof *d.t);
    kvr_status s = KVR_OK;
    if (!d.x || !d.P || !d.t) {
        s = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", label);
        goto done;
    }
    for (int i = 0; i < n && s == KVR_OK; i++) {
        if (!isfinite(rows[i].bytes) || rows[i].bytes < 0)
            s = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                              "%s: row %d: bytes must be finite and >= 0, got %g", label, i,
                              rows[i].bytes);
        else
            s = fit_check_time(rows[i].time_us, i, &o, label, err);
        d.x[i] = rows[i].bytes;
        d.t[i] = rows[i].time_us;
    }
    d.n = n;
    char reduce[sizeof out->reduce];
    if (s == KVR_OK) s = fit_reduce(&d, reduce, sizeof reduce, err);
    if (s == KVR_OK)
        s = fit_piecewise(&d, KVR_OP_LINK,
                          o.link_hinge ? KVR_PREDICT_FORM_HINGE : KVR_PREDICT_FORM_SEGMENTS, &o,
                          out, err);
    if (s == KVR_OK) {
        out->n_given = n;
        memcpy(out->reduce, reduce, sizeof out->reduce);
    }
done:
    free(d.x);
    free(d.P);
    free(d.t);
    return s;
}


kvr_status kvr_predict_costs_fit_samples(const kvr_predict_costs_info *info,
                                         const kvr_predict_sample *rows, int n,
                                         const kvr_predict_link_sample *links, int n_links,
                                         const kvr_predict_fit_options *opt,
                                         kvr_predict_costs **out, kvr_error *err) {
    if (!out || n < 0 || n_links < 0 || (n > 0 && !rows) || (n_links > 0 && !links))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "costs: bad arguments");
    kvr_predict_costs *c;
    KVR_TRY(kvr_predict_costs_create(info, &c, err));
    kvr_status s = KVR_OK;
    for (int k = 0; k < KVR_OP_COUNT && s == KVR_OK; k++) {
        const kvr_op op = kvr_predict_fit_order[k];
        if (op == KVR_OP_LINK) continue;
        bool any = false;
        for (int i = 0; i < n && !any; i++)
            any = rows[i].op == (kvr_op)op;
        if (!any) continue;
        kvr_predict_fit f;
        s = kvr_predict_fit_op(rows, n, (kvr_op)op, opt, &f, err);
        if (s == KVR_OK) s = kvr_predict_costs_set_fit(c, &f, err);
    }
    if (s == KVR_OK && n_links > 0) {
        kvr_predict_fit f;
        s = kvr_predict_fit_link(links, n_links, opt, &f, err);
        if (s == KVR_OK) s = kvr_predict_costs_set_fit(c, &f, err);
    }
    if (s != KVR_OK) {
        kvr_predict_costs_destroy(c);
        return s;
    }
    *out = c;
    return KVR_OK;
}
