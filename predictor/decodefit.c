/* decodefit.c -- the serving decode step fitted from profiled batched decode iterations
 * (kvr_predict_fit_decode): time = k + s B + t T by non-negative least squares over a profile's
 * "decode" samples, with its k-fold held-out error (docs/serving.md, "Decode-step costs"). */
#include "predictor_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DECODE_MIN_SAMPLES 4 /* three coefficients and one degree of freedom */

kvr_status kvr_predict_fit_decode(const kvr_predict_decode_sample *s, int n,
                                  const kvr_predict_fit_options *opt, kvr_predict_decode_fit *out,
                                  kvr_error *err) {
    if (!s || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "decode fit: NULL argument");
    if (n < DECODE_MIN_SAMPLES)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "decode fit: %d samples, need at least %d (three coefficients and "
                             "one degree of freedom): profile more batch sizes and contexts "
                             "(kvr-profile --decode)",
                             n, DECODE_MIN_SAMPLES);
    kvr_predict_fit_options o = opt ? *opt : kvr_predict_fit_options_default();
    int64_t b0 = s[0].batch;
    bool two_b = false;
    for (int i = 0; i < n; i++) {
        if (s[i].batch < 1 || s[i].ctx < s[i].batch || !isfinite(s[i].time_us) ||
            !(s[i].time_us > 0))
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "decode fit: sample %d (B=%lld, T=%lld, %g us): need B >= 1, "
                                 "T >= B and a positive finite time",
                                 i, (long long)s[i].batch, (long long)s[i].ctx, s[i].time_us);
        two_b |= s[i].batch != b0;
    }
    if (!two_b)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "decode fit: every sample has batch size %lld: the per-request "
                             "term needs at least two batch sizes",
                             (long long)b0);
    double *X = malloc((size_t)n * 3 * sizeof *X), *y = malloc((size_t)n * sizeof *y);
    if (!X || !y) {
        free(X), free(y);
        return kvr_error_set(err, KVR_ERR_NOMEM, "decode fit: out of memory");
    }
    for (int i = 0; i < n; i++) {
        X[3 * i] = 1;
        X[3 * i + 1] = (double)s[i].batch;
        X[3 * i + 2] = (double)s[i].ctx;
        y[i] = s[i].time_us;
    }
    kvr_predict_lsq_options lo = o.lsq;
    lo.nonneg = true;
    lo.label = "decode fit";
    kvr_predict_decode_fit r;
    memset(&r, 0, sizeof r);
    kvr_status st = kvr_predict_lsq_fit(X, y, n, 3, &lo, &r.lsq, err);
    if (st == KVR_OK) {
        r.step = (kvr_search_decode_step){r.lsq.coef[0], r.lsq.coef[1], r.lsq.coef[2]};
        /* held out: the most folds (<= cv_folds) whose training sets keep >= 3 rows */
        int k = o.cv_folds > 1 ? o.cv_folds : 5;
        while (k >= 2 && n - (n + k - 1) / k < 3) k--;
        r.cv.mape_in = r.cv.max_rel_in = r.cv.mape_out = r.cv.max_rel_out = NAN;
        if (n >= 5 && k >= 2) {
            kvr_error e;
            kvr_predict_cv cv;
            /* a fold without two batch sizes is rank-deficient: no CV then (k stays 0) */
            if (kvr_predict_lsq_cv(X, y, n, 3, &lo, k, o.seed, &cv, &e) == KVR_OK) r.cv = cv;
        }
        if (r.cv.k == 0) { /* the in-sample error at least */
            double sum = 0, mx = 0;
            for (int i = 0; i < n; i++) {
                const double e = fabs(kvr_predict_lsq_eval(&r.lsq, X + 3 * i) - y[i]) / y[i];
                sum += e;
                mx = e > mx ? e : mx;
            }
            r.cv.mape_in = sum / n, r.cv.max_rel_in = mx, r.cv.n_obs = n;
        }
        *out = r;
    }
    free(X), free(y);
    return st;
}
