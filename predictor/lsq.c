/* lsq.c -- the least-squares wrapper over GSL: weighted least squares (gsl_multifit_wlinear_tsvd
 * on the column-balanced SVD), non-negative least squares (Lawson-Hanson active set, since GSL has
 * none), robust M-estimation (gsl_multifit_robust, bisquare) and k-fold cross-validation.
 *
 * Every GSL status is checked and mapped to KVR_ERR_NUMERIC with gsl_strerror; the GSL error
 * handler is switched off so nothing aborts. Weighted problems are solved in the scaled form
 * A = sqrt(W) X, b = sqrt(W) y, which is what NNLS and the robust fit work on. */
#include "predictor_internal.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_matrix.h>
#include <gsl/gsl_multifit.h>
#include <gsl/gsl_vector.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LSQ_MAXP KVR_PREDICT_MAX_PARAMS

kvr_predict_lsq_options kvr_predict_lsq_options_default(void) {
    kvr_predict_lsq_options o;
    memset(&o, 0, sizeof o);
    o.weighting = KVR_PREDICT_WEIGHT_NONE;
    o.rcond_min = 1e-12;
    return o;
}

const char *predict_label(const kvr_predict_lsq_options *opt) {
    return opt && opt->label ? opt->label : "fit";
}

uint64_t predict_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Fisher-Yates shuffle of 0..n-1 with splitmix64(seed), dealt round-robin into k folds, so fold
 * sizes differ by at most one and the assignment is the same on every machine. */
void predict_folds(int n, int k, uint64_t seed, int *fold) {
    int *perm = fold; /* shuffle in place, then deal */
    for (int i = 0; i < n; i++) perm[i] = i;
    uint64_t st = seed;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(predict_splitmix64(&st) % (uint64_t)(i + 1));
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    /* perm[i] = row at shuffled position i; row perm[i] goes to fold i mod k */
    int *tmp = malloc((size_t)n * sizeof *tmp);
    if (!tmp) { /* fall back to a plain round-robin (still deterministic) */
        for (int i = 0; i < n; i++) fold[i] = i % k;
        return;
    }
    for (int i = 0; i < n; i++) tmp[perm[i]] = i % k;
    memcpy(fold, tmp, (size_t)n * sizeof *fold);
    free(tmp);
}

// ----------------------------------------------------------------------------
// workspace: everything one fit needs, allocated once per call

typedef struct lsq_ws {
    int n, p;
    gsl_matrix *X;   /* n x p, the design */
    gsl_vector *y, *w;
    gsl_vector *c;   /* p */
    gsl_matrix *cov; /* p x p */
    gsl_multifit_linear_workspace *lin;
    double *wt; /* n weights actually used */
} lsq_ws;

static void lsq_ws_free(lsq_ws *ws) {
    if (ws->X) gsl_matrix_free(ws->X);
    if (ws->y) gsl_vector_free(ws->y);
    if (ws->w) gsl_vector_free(ws->w);
    if (ws->c) gsl_vector_free(ws->c);
    if (ws->cov) gsl_matrix_free(ws->cov);
    if (ws->lin) gsl_multifit_linear_free(ws->lin);
    free(ws->wt);
    memset(ws, 0, sizeof *ws);
}

static kvr_status lsq_ws_alloc(lsq_ws *ws, int n, int p, const char *label, kvr_error *err) {
    memset(ws, 0, sizeof *ws);
    ws->n = n;
    ws->p = p;
    ws->X = gsl_matrix_alloc((size_t)n, (size_t)p);
    ws->y = gsl_vector_alloc((size_t)n);
    ws->w = gsl_vector_alloc((size_t)n);
    ws->c = gsl_vector_alloc((size_t)p);
    ws->cov = gsl_matrix_alloc((size_t)p, (size_t)p);
    ws->lin = gsl_multifit_linear_alloc((size_t)n, (size_t)p);
    ws->wt = malloc((size_t)n * sizeof *ws->wt);
    if (!ws->X || !ws->y || !ws->w || !ws->c || !ws->cov || !ws->lin || !ws->wt) {
        lsq_ws_free(ws);
        return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory (%d x %d design)", label, n,
                             p);
    }
    return KVR_OK;
}

static kvr_status lsq_gsl(int status, const char *label, const char *what, kvr_error *err) {
    if (status == GSL_SUCCESS) return KVR_OK;
    return kvr_error_set(err, KVR_ERR_NUMERIC, "%s: %s: %s", label, what, gsl_strerror(status));
}

// ----------------------------------------------------------------------------
// input checks and weights

static kvr_status lsq_check(const double *X, const double *y, int n, int p,
                            const kvr_predict_lsq_options *o, double *wt, int *n_eff,
                            kvr_error *err) {
    const char *label = predict_label(o);
    if (!X || !y) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: NULL data", label);
    if (p < 1 || p > LSQ_MAXP)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: %d parameters (1..%d supported)",
                             label, p, LSQ_MAXP);
    if (n < p)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: %d observations < %d parameters",
                             label, n, p);
    if ((unsigned)o->weighting >= KVR_PREDICT_WEIGHT_COUNT)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: unknown weighting %d", label,
                             (int)o->weighting);
    if (o->weighting == KVR_PREDICT_WEIGHT_GIVEN && !o->weights)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: weighting GIVEN without weights",
                             label);
    if (!(o->rcond_min > 0 && o->rcond_min < 1))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: rcond_min must be in (0, 1), got %g",
                             label, o->rcond_min);
    int ne = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(y[i]))
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "%s: observation %d: response is not finite (%g)", label, i,
                                 y[i]);
        for (int j = 0; j < p; j++)
            if (!isfinite(X[(size_t)i * p + j]))
                return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                     "%s: observation %d: regressor %d is not finite (%g)", label,
                                     i, j, X[(size_t)i * p + j]);
        double w = 1;
        if (o->weighting == KVR_PREDICT_WEIGHT_RELATIVE) {
            if (y[i] == 0)
                return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                     "%s: observation %d: response 0 cannot be weighted by "
                                     "relative error (1/y^2)",
                                     label, i);
            w = 1.0 / (y[i] * y[i]);
            if (!isfinite(w) || w == 0)
                return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                     "%s: observation %d: relative weight 1/y^2 of %g is not "
                                     "representable",
                                     label, i, y[i]);
        } else if (o->weighting == KVR_PREDICT_WEIGHT_GIVEN) {
            w = o->weights[i];
            if (!isfinite(w) || w < 0)
                return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                     "%s: observation %d: weight must be finite and >= 0, got %g",
                                     label, i, w);
        }
        wt[i] = w;
        if (w > 0) ne++;
    }
    if (ne < p)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: %d observations < %d parameters",
                             label, ne, p);
    *n_eff = ne;
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// weighted least squares on a column subset

/* WLS of y on the columns cols[0..q) of X with weights wt (n rows). Writes coef/cov for those
 * columns (q and q x q, row-major), chi2, rank and rcond. Rank deficiency (rcond below
 * rcond_min) is KVR_ERR_NUMERIC. */
static kvr_status lsq_wls_cols(lsq_ws *ws, const double *X, const double *y, const double *wt,
                               const int *cols, int q, double rcond_min, const char *label,
                               double *coef, double *cov, double *chi2, int *rank, double *rcond,
                               kvr_error *err) {
    const int n = ws->n, p = ws->p;
    gsl_matrix_view Xv = gsl_matrix_submatrix(ws->X, 0, 0, (size_t)n, (size_t)q);
    gsl_vector_view cv = gsl_vector_subvector(ws->c, 0, (size_t)q);
    gsl_matrix_view Cv = gsl_matrix_submatrix(ws->cov, 0, 0, (size_t)q, (size_t)q);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < q; j++)
            gsl_matrix_set(&Xv.matrix, (size_t)i, (size_t)j, X[(size_t)i * p + cols[j]]);
        gsl_vector_set(ws->y, (size_t)i, y[i]);
        gsl_vector_set(ws->w, (size_t)i, wt[i]);
    }
    size_t rk = 0;
    double c2 = 0;
    int st = gsl_multifit_wlinear_tsvd(&Xv.matrix, ws->w, ws->y, rcond_min, &cv.vector,
                                       &Cv.matrix, &c2, &rk, ws->lin);
    KVR_TRY(lsq_gsl(st, label, "weighted least squares", err));
    double rc = gsl_multifit_linear_rcond(ws->lin);
    if ((int)rk < q || !(rc >= rcond_min))
        return kvr_error_set(err, KVR_ERR_NUMERIC,
                             "%s: rank-deficient design (numerical rank %d < %d parameters, "
                             "reciprocal condition number %.3g < %.3g): the data cannot "
                             "separate the coefficients",
                             label, (int)rk, q, rc, rcond_min);
    for (int j = 0; j < q; j++) {
        coef[j] = gsl_vector_get(&cv.vector, (size_t)j);
        for (int k = 0; k < q; k++) cov[j * q + k] = gsl_matrix_get(&Cv.matrix, (size_t)j, (size_t)k);
    }
    for (int j = 0; j < q; j++)
        if (!isfinite(coef[j]))
            return kvr_error_set(err, KVR_ERR_NUMERIC, "%s: coefficient %d is not finite", label,
                                 cols[j]);
    *chi2 = c2;
    *rank = (int)rk;
    *rcond = rc;
    return KVR_OK;
}

/* Fill the result from a fit on the free columns (the others held at 0). */
static void lsq_fill(kvr_predict_lsq *r, const double *X, const double *y, const double *wt,
                     int n, int p, int n_eff, const int *cols, int q, const double *coef,
                     const double *cov, bool scale_cov) {
    memset(r->coef, 0, sizeof r->coef);
    memset(r->se, 0, sizeof r->se);
    memset(r->cov, 0, sizeof r->cov);
    for (int j = 0; j < LSQ_MAXP; j++) r->at_bound[j] = j < p; /* free columns cleared below */
    double chi2 = 0, sw = 0, swy = 0;
    double full[LSQ_MAXP] = {0};
    for (int a = 0; a < q; a++) {
        full[cols[a]] = coef[a];
        r->at_bound[cols[a]] = false;
    }
    for (int i = 0; i < n; i++) {
        double yh = 0;
        for (int j = 0; j < p; j++) yh += X[(size_t)i * p + j] * full[j];
        double res = y[i] - yh;
        chi2 += wt[i] * res * res;
        sw += wt[i];
        swy += wt[i] * y[i];
    }
    double ybar = sw > 0 ? swy / sw : 0, tss = 0;
    for (int i = 0; i < n; i++) tss += wt[i] * (y[i] - ybar) * (y[i] - ybar);
    r->n_params = p;
    r->chi2 = chi2;
    r->dof = (double)(n_eff - q);
    r->sigma = r->dof > 0 ? sqrt(chi2 / r->dof) : 0;
    r->r2 = tss > 0 ? 1 - chi2 / tss : (chi2 == 0 ? 1 : 0);
    double s2 = scale_cov ? (r->dof > 0 ? chi2 / r->dof : 0) : 1;
    for (int a = 0; a < q; a++) {
        r->coef[cols[a]] = coef[a];
        for (int b = 0; b < q; b++) r->cov[cols[a] * p + cols[b]] = cov[a * q + b] * s2;
    }
    for (int j = 0; j < p; j++) {
        double v = r->cov[j * p + j];
        r->se[j] = v > 0 ? sqrt(v) : 0;
    }
    r->n_at_bound = 0;
    for (int j = 0; j < p; j++) r->n_at_bound += r->at_bound[j];
}

// ----------------------------------------------------------------------------
// NNLS: Lawson & Hanson, "Solving Least Squares Problems" (1974), ch. 23, on the scaled and
// column-normalised system, with the inner solves done by the same GSL WLS (unit weights).

static kvr_status lsq_nnls(lsq_ws *ws, const double *X, const double *y, const double *wt,
                           double rcond_min, const char *label, bool *passive, int *n_iter,
                           kvr_error *err) {
    const int n = ws->n, p = ws->p;
    kvr_status s = KVR_OK;
    /* A = sqrt(W) X D^-1 (unit columns), b = sqrt(W) y */
    double *A = malloc((size_t)n * p * sizeof *A), *b = malloc((size_t)n * sizeof *b);
    double *ones = malloc((size_t)n * sizeof *ones), *r = malloc((size_t)n * sizeof *r);
    if (!A || !b || !ones || !r) {
        s = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory (NNLS)", label);
        goto done;
    }
    double D[LSQ_MAXP];
    for (int j = 0; j < p; j++) {
        double ss = 0;
        for (int i = 0; i < n; i++) {
            double a = sqrt(wt[i]) * X[(size_t)i * p + j];
            A[(size_t)i * p + j] = a;
            ss += a * a;
        }
        D[j] = ss > 0 ? sqrt(ss) : 1;
    }
    double bnorm = 0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < p; j++) A[(size_t)i * p + j] /= D[j];
        b[i] = sqrt(wt[i]) * y[i];
        bnorm += b[i] * b[i];
        ones[i] = 1;
    }
    bnorm = sqrt(bnorm);
    const double tol = 1e-12 * (bnorm > 0 ? bnorm : 1) * sqrt((double)n);
    double x[LSQ_MAXP] = {0}, z[LSQ_MAXP], zc[LSQ_MAXP], cov[LSQ_MAXP * LSQ_MAXP];
    int cols[LSQ_MAXP];
    for (int j = 0; j < p; j++) passive[j] = false;
    int it = 0;
    const int max_it = 30 * p + 30;
    for (; it < max_it; it++) {
        /* gradient w = A'(b - A x) over the active (zero) set */
        for (int i = 0; i < n; i++) {
            double ax = 0;
            for (int j = 0; j < p; j++) ax += A[(size_t)i * p + j] * x[j];
            r[i] = b[i] - ax;
        }
        int t = -1;
        double wmax = tol;
        for (int j = 0; j < p; j++) {
            if (passive[j]) continue;
            double g = 0;
            for (int i = 0; i < n; i++) g += A[(size_t)i * p + j] * r[i];
            if (g > wmax) {
                wmax = g;
                t = j;
            }
        }
        if (t < 0) break; /* Kuhn-Tucker conditions hold */
        passive[t] = true;
        for (int inner = 0; inner <= p; inner++) {
            int q = 0;
            for (int j = 0; j < p; j++)
                if (passive[j]) cols[q++] = j;
            if (q == 0) break; /* every variable back at 0 */
            double c2, rc;
            int rk;
            s = lsq_wls_cols(ws, A, b, ones, cols, q, rcond_min, label, zc, cov, &c2, &rk, &rc,
                             err);
            if (s != KVR_OK) goto done;
            for (int j = 0; j < p; j++) z[j] = 0;
            for (int a = 0; a < q; a++) z[cols[a]] = zc[a];
            bool feasible = true;
            for (int a = 0; a < q; a++) feasible = feasible && zc[a] > 0;
            if (feasible) {
                memcpy(x, z, sizeof x);
                break;
            }
            /* step from x towards z until the first passive variable hits 0 */
            double alpha = 1;
            for (int a = 0; a < q; a++) {
                int j = cols[a];
                if (z[j] <= 0) {
                    double al = x[j] / (x[j] - z[j]);
                    if (al < alpha) alpha = al;
                }
            }
            for (int j = 0; j < p; j++) {
                if (!passive[j]) continue;
                x[j] += alpha * (z[j] - x[j]);
                if (x[j] <= 1e-15 * (bnorm > 0 ? bnorm : 1)) {
                    x[j] = 0;
                    passive[j] = false;
                }
            }
        }
    }
    *n_iter = it;
    if (it >= max_it)
        s = kvr_error_set(err, KVR_ERR_NUMERIC,
                          "%s: non-negative least squares did not converge in %d steps", label,
                          max_it);
done:
    free(A);
    free(b);
    free(ones);
    free(r);
    return s;
}

// ----------------------------------------------------------------------------
// the public fit

/* Non-robust fit with weights wt: unconstrained WLS, then NNLS when asked and needed. */
static kvr_status lsq_fit_plain(lsq_ws *ws, const double *X, const double *y, const double *wt,
                                int n_eff, const kvr_predict_lsq_options *o, bool scale_cov,
                                kvr_predict_lsq *r, kvr_error *err) {
    const int n = ws->n, p = ws->p;
    const char *label = predict_label(o);
    int cols[LSQ_MAXP];
    for (int j = 0; j < p; j++) cols[j] = j;
    double coef[LSQ_MAXP], cov[LSQ_MAXP * LSQ_MAXP], chi2, rcond;
    int rank;
    KVR_TRY(lsq_wls_cols(ws, X, y, wt, cols, p, o->rcond_min, label, coef, cov, &chi2, &rank,
                         &rcond, err));
    r->rank = rank;
    r->rcond = rcond;
    r->n_iter = 0;
    bool neg = false;
    for (int j = 0; j < p; j++) neg = neg || coef[j] < 0;
    if (!o->nonneg || !neg) {
        lsq_fill(r, X, y, wt, n, p, n_eff, cols, p, coef, cov, scale_cov);
        return KVR_OK;
    }
    bool passive[LSQ_MAXP];
    int it = 0;
    KVR_TRY(lsq_nnls(ws, X, y, wt, o->rcond_min, label, passive, &it, err));
    int q = 0;
    for (int j = 0; j < p; j++)
        if (passive[j]) cols[q++] = j;
    if (q > 0) {
        /* the conditional fit on the free columns gives coefficients, covariance and errors */
        double c2;
        int rk;
        double rc;
        KVR_TRY(lsq_wls_cols(ws, X, y, wt, cols, q, o->rcond_min, label, coef, cov, &c2, &rk,
                             &rc, err));
        for (int a = 0; a < q; a++)
            if (coef[a] < 0) coef[a] = 0; /* rounding at the boundary */
    }
    lsq_fill(r, X, y, wt, n, p, n_eff, cols, q, coef, cov, scale_cov);
    r->n_iter = it;
    return KVR_OK;
}

/* Robust fit: bisquare IRLS on the scaled system; with nonneg, a non-negative refit using the
 * final robust weights folded into the weights. */
static kvr_status lsq_fit_robust(lsq_ws *ws, const double *X, const double *y, const double *wt,
                                 int n_eff, const kvr_predict_lsq_options *o,
                                 kvr_predict_lsq *r, kvr_error *err) {
    const int n = ws->n, p = ws->p;
    const char *label = predict_label(o);
    if (n_eff <= p)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "%s: a robust fit needs more observations than parameters (%d <= "
                             "%d)",
                             label, n_eff, p);
    /* full-rank check and rcond through the plain fit first */
    kvr_predict_lsq plain;
    kvr_predict_lsq_options po = *o;
    po.nonneg = false;
    KVR_TRY(lsq_fit_plain(ws, X, y, wt, n_eff, &po, true, &plain, err));
    int *rows = malloc((size_t)n * sizeof *rows);
    double *rw_full = calloc((size_t)n, sizeof *rw_full);
    gsl_matrix *A = gsl_matrix_alloc((size_t)n_eff, (size_t)p);
    gsl_vector *b = gsl_vector_alloc((size_t)n_eff), *c = gsl_vector_alloc((size_t)p);
    gsl_matrix *cov = gsl_matrix_alloc((size_t)p, (size_t)p);
    gsl_multifit_robust_workspace *rws =
        gsl_multifit_robust_alloc(gsl_multifit_robust_bisquare, (size_t)n_eff, (size_t)p);
    kvr_status s = KVR_OK;
    if (!rows || !rw_full || !A || !b || !c || !cov || !rws) {
        s = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory (robust fit)", label);
        goto done;
    }
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (!(wt[i] > 0)) continue;
        double sw = sqrt(wt[i]);
        for (int j = 0; j < p; j++)
            gsl_matrix_set(A, (size_t)m, (size_t)j, sw * X[(size_t)i * p + j]);
        gsl_vector_set(b, (size_t)m, sw * y[i]);
        rows[m++] = i;
    }
    gsl_multifit_robust_maxiter(200, rws);
    int st = gsl_multifit_robust(A, b, c, cov, rws);
    if (st == GSL_EMAXITER) {
        s = kvr_error_set(err, KVR_ERR_NUMERIC,
                          "%s: robust fit did not converge in 200 iterations (%s)", label,
                          gsl_strerror(st));
        goto done;
    }
    if ((s = lsq_gsl(st, label, "robust fit", err)) != KVR_OK) goto done;
    gsl_multifit_robust_stats rs = gsl_multifit_robust_statistics(rws);
    int n_out = 0;
    for (int a = 0; a < m; a++) {
        double v = gsl_vector_get(rs.weights, (size_t)a);
        rw_full[rows[a]] = v;
        if (v <= 0) n_out++;
    }
    bool neg = false;
    for (int j = 0; j < p; j++) neg = neg || gsl_vector_get(c, (size_t)j) < 0;
    if (o->nonneg && neg) {
        /* NNLS with the robust weights folded in; its errors come from that weighted refit */
        double *w2 = malloc((size_t)n * sizeof *w2);
        if (!w2) {
            s = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory (robust fit)", label);
            goto done;
        }
        int ne2 = 0;
        for (int i = 0; i < n; i++) {
            w2[i] = wt[i] * rw_full[i];
            ne2 += w2[i] > 0;
        }
        if (ne2 < p) {
            free(w2);
            s = kvr_error_set(err, KVR_ERR_NUMERIC,
                              "%s: robust fit left %d observations with weight > 0 < %d "
                              "parameters",
                              label, ne2, p);
            goto done;
        }
        s = lsq_fit_plain(ws, X, y, w2, ne2, o, true, r, err);
        free(w2);
        if (s != KVR_OK) goto done;
    } else {
        memset(r->coef, 0, sizeof r->coef);
        memset(r->se, 0, sizeof r->se);
        memset(r->cov, 0, sizeof r->cov);
        memset(r->at_bound, 0, sizeof r->at_bound);
        r->n_at_bound = 0;
        r->n_params = p;
        for (int j = 0; j < p; j++) {
            r->coef[j] = gsl_vector_get(c, (size_t)j);
            for (int k = 0; k < p; k++) r->cov[j * p + k] = gsl_matrix_get(cov, (size_t)j, (size_t)k);
            double v = r->cov[j * p + j];
            r->se[j] = v > 0 ? sqrt(v) : 0;
        }
        r->chi2 = rs.sse;
        r->dof = rs.dof;
        r->sigma = rs.sigma;
        r->r2 = rs.Rsq;
    }
    r->rank = plain.rank;
    r->rcond = plain.rcond;
    r->n_outliers = n_out;
    r->n_iter = (int)rs.numit;
done:
    free(rows);
    free(rw_full);
    if (A) gsl_matrix_free(A);
    if (b) gsl_vector_free(b);
    if (c) gsl_vector_free(c);
    if (cov) gsl_matrix_free(cov);
    if (rws) gsl_multifit_robust_free(rws);
    return s;
}

/* Fits y on X; see kvr_predict.h. */
kvr_status kvr_predict_lsq_fit(const double *X, const double *y, int n, int p,
                               const kvr_predict_lsq_options *opt, kvr_predict_lsq *out,
                               kvr_error *err) {
    gsl_set_error_handler_off();
    kvr_predict_lsq_options o = opt ? *opt : kvr_predict_lsq_options_default();
    if (!out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: NULL result", predict_label(&o));
    if (p < 1 || p > LSQ_MAXP || n < 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: %d parameters (1..%d supported)",
                             predict_label(&o), p, LSQ_MAXP);
    if (n < p)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: %d observations < %d parameters",
                             predict_label(&o), n, p);
    lsq_ws ws;
    KVR_TRY(lsq_ws_alloc(&ws, n, p, predict_label(&o), err));
    int n_eff = 0;
    kvr_predict_lsq r;
    memset(&r, 0, sizeof r);
    kvr_status s = lsq_check(X, y, n, p, &o, ws.wt, &n_eff, err);
    if (s == KVR_OK) {
        bool scale = !(o.weighting == KVR_PREDICT_WEIGHT_GIVEN && o.weights_are_inverse_variance);
        if (o.robust)
            s = lsq_fit_robust(&ws, X, y, ws.wt, n_eff, &o, &r, err);
        else
            s = lsq_fit_plain(&ws, X, y, ws.wt, n_eff, &o, scale, &r, err);
    }
    lsq_ws_free(&ws);
    if (s != KVR_OK) return s;
    r.n_obs = n;
    r.n_params = p;
    *out = r;
    return KVR_OK;
}

double kvr_predict_lsq_eval(const kvr_predict_lsq *f, const double *x) {
    double v = 0;
    for (int j = 0; j < f->n_params; j++) v += f->coef[j] * x[j];
    return v;
}

// ----------------------------------------------------------------------------
// k-fold cross-validation

static double lsq_rel_err(double yhat, double y) {
    double d = fabs(yhat - y);
    return y != 0 ? d / fabs(y) : d;
}

/* Runs k-fold CV; see kvr_predict.h. */
kvr_status kvr_predict_lsq_cv(const double *X, const double *y, int n, int p,
                              const kvr_predict_lsq_options *opt, int k, uint64_t seed,
                              kvr_predict_cv *out, kvr_error *err) {
    kvr_predict_lsq_options o = opt ? *opt : kvr_predict_lsq_options_default();
    const char *label = predict_label(&o);
    if (!X || !y || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: NULL argument", label);
    if (k < 2 || k > n)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "%s: cross-validation needs 2 <= folds <= observations, got %d "
                             "folds for %d observations",
                             label, k, n);
    if (p < 1 || p > LSQ_MAXP)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: %d parameters (1..%d supported)",
                             label, p, LSQ_MAXP);
    kvr_predict_lsq full;
    KVR_TRY(kvr_predict_lsq_fit(X, y, n, p, &o, &full, err));
    kvr_predict_cv cv;
    memset(&cv, 0, sizeof cv);
    cv.k = k;
    cv.seed = seed;
    cv.n_obs = n;
    for (int i = 0; i < n; i++) {
        double e = lsq_rel_err(kvr_predict_lsq_eval(&full, X + (size_t)i * p), y[i]);
        cv.mape_in += e / n;
        if (e > cv.max_rel_in) cv.max_rel_in = e;
    }
    int *fold = malloc((size_t)n * sizeof *fold);
    double *Xt = malloc((size_t)n * p * sizeof *Xt), *yt = malloc((size_t)n * sizeof *yt);
    double *wt = o.weighting == KVR_PREDICT_WEIGHT_GIVEN ? malloc((size_t)n * sizeof *wt) : NULL;
    kvr_status s = KVR_OK;
    if (!fold || !Xt || !yt || (o.weighting == KVR_PREDICT_WEIGHT_GIVEN && !wt)) {
        s = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory (cross-validation)", label);
        goto done;
    }
    predict_folds(n, k, seed, fold);
    for (int f = 0; f < k && s == KVR_OK; f++) {
        int m = 0;
        for (int i = 0; i < n; i++) {
            if (fold[i] == f) continue;
            memcpy(Xt + (size_t)m * p, X + (size_t)i * p, (size_t)p * sizeof *Xt);
            yt[m] = y[i];
            if (wt) wt[m] = o.weights[i];
            m++;
        }
        kvr_predict_lsq_options fo = o;
        if (wt) fo.weights = wt;
        kvr_predict_lsq fr;
        s = kvr_predict_lsq_fit(Xt, yt, m, p, &fo, &fr, err);
        if (s != KVR_OK) {
            kvr_error_prefix(err, "cv fold %d of %d", f, k);
            break;
        }
        for (int i = 0; i < n; i++) {
            if (fold[i] != f) continue;
            double e = lsq_rel_err(kvr_predict_lsq_eval(&fr, X + (size_t)i * p), y[i]);
            cv.mape_out += e / n;
            if (e > cv.max_rel_out) cv.max_rel_out = e;
        }
    }
    if (s == KVR_OK) *out = cv;
done:
    free(fold);
    free(Xt);
    free(yt);
    free(wt);
    return s;
}
