/* test_predict.c -- the predictor module: the least-squares wrapper against NIST StRD certified
 * results (Norris, Longley), planted coefficients recovered within their standard errors,
 * non-negative and robust fits, k-fold cross-validation, bad input; cost-model fits (bends,
 * protocol pieces) and their search cost models; KVR-P on tables from the example cost files
 * (held-out TTFT gap, partition rules, JSON round trips); the search link-time hook.
 *
 * Run one case: ./test_predict nist_longley */
#include "kvr_test.h"
#include "kvr_predict.h"
#include "predictor_internal.h"

#include <cjson/cJSON.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_interp.h>
#include <stdlib.h>

#ifndef KVR_SOURCE_DIR
#define KVR_SOURCE_DIR "."
#endif

// ----------------------------------------------------------------------------
// helpers

static uint64_t rng_state = 0x243F6A8885A308D3ull;
static double rng_unif(void) {
    return (double)(predict_splitmix64(&rng_state) >> 11) * (1.0 / 9007199254740992.0);
}
static double rng_normal(void) { /* Box-Muller */
    double u = rng_unif(), v = rng_unif();
    if (u < 1e-300) u = 1e-300;
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* Read a whitespace-separated numeric table with '#' comments: rows x cols into v. */
static int read_table(const char *name, int cols, double *v, int max_rows) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/data/%s", KVR_SOURCE_DIR, name);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return -1;
    }
    char line[1024];
    int rows = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        char *p = line;
        int c = 0;
        for (; c < cols && rows < max_rows; c++) {
            char *end;
            double x = strtod(p, &end);
            if (end == p) break;
            v[rows * cols + c] = x;
            p = end;
        }
        if (c == cols) rows++;
    }
    fclose(f);
    return rows;
}

static bool has(const char *msg, const char *sub) {
    bool ok = strstr(msg, sub) != NULL;
    if (!ok) fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", msg, sub);
    return ok;
}

static kvr_search_costs *load_example(const char *file) {
    char path[1024];
    snprintf(path, sizeof path, "%s/docs/examples/%s", KVR_SOURCE_DIR, file);
    kvr_search_costs *m = NULL;
    kvr_error e;
    KVR_CHECK_OK(kvr_search_costs_load_json(path, &m, &e), &e);
    return m;
}

// ----------------------------------------------------------------------------
// NIST StRD (https://www.itl.nist.gov/div898/strd/lls/lls.shtml): data in tests/data/, certified
// values from the same pages, typed in below.

static void test_nist_norris(void) {
    double d[36 * 2];
    int n = read_table("nist_norris.dat", 2, d, 36);
    KVR_CHECK_EQ_INT(n, 36);
    if (n != 36) return;
    double X[36 * 2], y[36];
    for (int i = 0; i < n; i++) {
        y[i] = d[2 * i];
        X[2 * i] = 1;
        X[2 * i + 1] = d[2 * i + 1];
    }
    kvr_predict_lsq r;
    kvr_error e;
    kvr_predict_lsq_options o = kvr_predict_lsq_options_default(); /* ordinary least squares */
    KVR_CHECK_OK(kvr_predict_lsq_fit(X, y, n, 2, &o, &r, &e), &e);
    /* certified: B0, B1 and their standard deviations; residual sd; R^2 */
    KVR_CHECK_NEAR(r.coef[0], -0.262323073774029, 0, 1e-7);
    KVR_CHECK_NEAR(r.coef[1], 1.00211681802045, 0, 1e-7);
    KVR_CHECK_NEAR(r.se[0], 0.232818234301152, 0, 1e-7);
    KVR_CHECK_NEAR(r.se[1], 0.429796848199937E-03, 0, 1e-7);
    KVR_CHECK_NEAR(r.sigma, 0.884796396144373, 0, 1e-7);
    KVR_CHECK_NEAR(r.r2, 0.999993745883712, 0, 1e-9);
    KVR_CHECK_NEAR(r.chi2, 26.6173985294224, 0, 1e-7); /* certified residual sum of squares */
    KVR_CHECK_NEAR(r.dof, 34, 0, 0);
    KVR_CHECK_EQ_INT(r.rank, 2);
    /* the same through weights of 1 (the weighted path with unit weights) */
    double w[36];
    for (int i = 0; i < n; i++) w[i] = 1;
    o.weighting = KVR_PREDICT_WEIGHT_GIVEN;
    o.weights = w;
    kvr_predict_lsq r2;
    KVR_CHECK_OK(kvr_predict_lsq_fit(X, y, n, 2, &o, &r2, &e), &e);
    KVR_CHECK_NEAR(r2.coef[1], r.coef[1], 0, 1e-13);
    KVR_CHECK_NEAR(r2.se[1], r.se[1], 0, 1e-12);
}

static void test_nist_longley(void) {
    double d[16 * 7];
    int n = read_table("nist_longley.dat", 7, d, 16);
    KVR_CHECK_EQ_INT(n, 16);
    if (n != 16) return;
    double X[16 * 7], y[16];
    for (int i = 0; i < n; i++) {
        y[i] = d[7 * i];
        X[7 * i] = 1;
        for (int j = 1; j < 7; j++) X[7 * i + j] = d[7 * i + j];
    }
    static const double cert[7] = {-3482258.63459582,      15.0618722713733,
                                   -0.358191792925910E-01, -2.02022980381683,
                                   -1.03322686717359,      -0.511041056535807E-01,
                                   1829.15146461355};
    static const double cert_sd[7] = {890420.383607373,      84.9149257747669,
                                      0.334910077722432E-01, 0.488399681651699,
                                      0.214274163161675,     0.226073200069370,
                                      455.478499142212};
    kvr_predict_lsq r;
    kvr_error e;
    KVR_CHECK_OK(kvr_predict_lsq_fit(X, y, n, 7, NULL, &r, &e), &e);
    for (int j = 0; j < 7; j++) {
        KVR_CHECK_NEAR(r.coef[j], cert[j], 0, 1e-6);
        KVR_CHECK_NEAR(r.se[j], cert_sd[j], 0, 1e-6);
    }
    KVR_CHECK_NEAR(r.sigma, 304.854073561965, 0, 1e-7);
    KVR_CHECK_NEAR(r.r2, 0.995479004577296, 0, 1e-9);
    KVR_CHECK_NEAR(r.dof, 9, 0, 0);
    KVR_CHECK(r.rcond > 0 && r.rcond < 1);
}

// ----------------------------------------------------------------------------
// planted coefficients, NNLS, robust, CV

/* attention timings with 1 % relative noise: relative weights recover the planted values
 * within 3 standard errors */
static void test_planted_attn(void) {
    const double k = 20, b = 0.02, gg = 0.001, a = 0.00011;
    kvr_predict_sample rows[256];
    int n = 0;
    for (int ci = 0; ci < 8; ci++)
        for (int pi = 0; pi < 8; pi++) {
            int64_t c = (int64_t)64 << ci, P = pi == 0 ? 0 : (int64_t)256 << pi;
            double t = k + b * c + gg * P + a * (c * P + 0.5 * c * c);
            rows[n++] = (kvr_predict_sample){KVR_OP_ATTN, c, P, t * (1 + 0.01 * rng_normal())};
        }
    rows[n++] = (kvr_predict_sample){KVR_OP_PRE, 16, 0, 5}; /* other ops are skipped */
    kvr_predict_fit f;
    kvr_error e;
    kvr_predict_fit_options o = kvr_predict_fit_options_default();
    KVR_CHECK_OK(kvr_predict_fit_op(rows, n, KVR_OP_ATTN, &o, &f, &e), &e);
    const double truth[4] = {k, b, gg, a};
    KVR_CHECK_EQ_INT(f.form, KVR_PREDICT_FORM_ATTN);
    KVR_CHECK_EQ_INT(f.lsq.n_obs, 64);
    for (int j = 0; j < 4; j++) {
        KVR_CHECK(f.lsq.se[j] > 0);
        double z = fabs(f.coef[j] - truth[j]) / f.lsq.se[j];
        if (!(z < 3)) fprintf(stderr, "  coef %d: %g vs %g, z %.2f\n", j, f.coef[j], truth[j], z);
        KVR_CHECK(z < 3);
    }
    /* relative noise of 1 %: sigma of the relative residuals and held-out MAPE near 0.8 % */
    KVR_CHECK_NEAR(f.lsq.sigma, 0.01, 0.003, 0);
    KVR_CHECK(f.cv.k == 5 && f.cv.mape_out > 0.004 && f.cv.mape_out < 0.015);
    KVR_CHECK(f.cv.mape_in <= f.cv.mape_out + 1e-12);
    KVR_CHECK(f.cv.max_rel_out >= f.cv.mape_out);
    KVR_CHECK_NEAR(kvr_predict_fit_eval(&f, 1000, 5000), k + b * 1000 + gg * 5000 +
                                                            a * (1000.0 * 5000 + 0.5e6), 0, 0.02);
}

/* issue 17: above KVR_PREDICT_FIT_MAX_ROWS rows a fit merges samples at one grid point into
 * their median, then keeps every k-th point; the fit record says so, the planted model is still
 * recovered, and the record survives JSON */
static void test_fit_reduce(void) {
    const int n = 30000;
    kvr_predict_sample *rows = malloc((size_t)n * sizeof *rows);
    KVR_CHECK(rows != NULL);
    if (!rows) return;
    kvr_predict_fit f;
    kvr_error e;
    /* 30000 repeats over 40 chunk sizes: one median each */
    for (int i = 0; i < n; i++) {
        const int64_t c = (int64_t)16 * (1 + i % 40);
        rows[i] = (kvr_predict_sample){KVR_OP_POST, c, 0, (30 + 0.1 * c) * (1 + 0.02 * rng_normal())};
    }
    KVR_CHECK_OK(kvr_predict_fit_op(rows, n, KVR_OP_POST, NULL, &f, &e), &e);
    KVR_CHECK_EQ_INT(f.n_given, n);
    KVR_CHECK_EQ_INT(f.lsq.n_obs, 40);
    KVR_CHECK(strcmp(f.reduce, "median per grid point") == 0);
    KVR_CHECK_NEAR(kvr_predict_fit_eval(&f, 320, 0), 30 + 32, 0, 0.01);
    KVR_CHECK(f.x_min == 16 && f.x_max == 640);
    /* 30000 distinct chunk sizes: every 8th of them (first and last kept) */
    for (int i = 0; i < n; i++) {
        const int64_t c = 1 + i;
        rows[i] = (kvr_predict_sample){KVR_OP_PRE, c, 0, (20 + 0.05 * c) * (1 + 0.02 * rng_normal())};
    }
    KVR_CHECK_OK(kvr_predict_fit_op(rows, n, KVR_OP_PRE, NULL, &f, &e), &e);
    KVR_CHECK_EQ_INT(f.n_given, n);
    KVR_CHECK(f.lsq.n_obs <= KVR_PREDICT_FIT_MAX_ROWS && f.lsq.n_obs > KVR_PREDICT_FIT_MAX_ROWS / 2);
    KVR_CHECK(strcmp(f.reduce, "median per grid point, every 8th") == 0);
    KVR_CHECK(f.x_min == 1 && f.x_max == n);
    KVR_CHECK_NEAR(kvr_predict_fit_eval(&f, 10000, 0), 520, 0, 0.01);
    char *txt = NULL;
    KVR_CHECK_OK(kvr_predict_fit_to_json(&f, &txt, &e), &e);
    KVR_CHECK(txt && strstr(txt, "\"median per grid point, every 8th\""));
    kvr_predict_fit g;
    if (txt) KVR_CHECK_OK(kvr_predict_fit_from_json(txt, strlen(txt), &g, &e), &e);
    KVR_CHECK(txt && g.n_given == n && strcmp(g.reduce, f.reduce) == 0);
    free(txt);
    /* below the limit nothing changes, and the record says so */
    KVR_CHECK_OK(kvr_predict_fit_op(rows, 300, KVR_OP_PRE, NULL, &f, &e), &e);
    KVR_CHECK(f.n_given == 300 && f.lsq.n_obs == 300 && f.reduce[0] == 0);
    free(rows);
}

/* ordinary least squares with additive noise: planted line within 3 SE, many seeds */
static void test_planted_ols(void) {
    int bad = 0;
    for (int trial = 0; trial < 40; trial++) {
        double X[50 * 3], y[50];
        for (int i = 0; i < 50; i++) {
            double x1 = rng_unif() * 10, x2 = rng_unif() * 5;
            X[3 * i] = 1;
            X[3 * i + 1] = x1;
            X[3 * i + 2] = x2;
            y[i] = 3 - 2 * x1 + 0.5 * x2 + 0.3 * rng_normal();
        }
        kvr_predict_lsq r;
        kvr_error e;
        KVR_CHECK_OK(kvr_predict_lsq_fit(X, y, 50, 3, NULL, &r, &e), &e);
        const double t[3] = {3, -2, 0.5};
        for (int j = 0; j < 3; j++) bad += fabs(r.coef[j] - t[j]) > 3 * r.se[j];
        KVR_CHECK_NEAR(r.sigma, 0.3, 0.1, 0);
    }
    /* 120 coefficients at 3 sigma: expect ~0.3 misses */
    KVR_CHECK(bad <= 2);
}

/* a design where unconstrained least squares goes negative */
static void test_nnls(void) {
    double X[40 * 3], y[40];
    for (int i = 0; i < 40; i++) {
        double x = 1 + i * 0.25;
        X[3 * i] = 1;
        X[3 * i + 1] = x;
        X[3 * i + 2] = x * x;
        /* truth: 5 + 0 x + 0.1 x^2 with a dip that drives the x coefficient negative */
        y[i] = 5 + 0.1 * x * x - 0.4 * (x > 4 && x < 7) + 0.05 * rng_normal();
    }
    kvr_predict_lsq_options o = kvr_predict_lsq_options_default();
    kvr_predict_lsq ls, nn;
    kvr_error e;
    KVR_CHECK_OK(kvr_predict_lsq_fit(X, y, 40, 3, &o, &ls, &e), &e);
    bool any_neg = false;
    for (int j = 0; j < 3; j++) any_neg = any_neg || ls.coef[j] < 0;
    KVR_CHECK(any_neg);
    o.nonneg = true;
    KVR_CHECK_OK(kvr_predict_lsq_fit(X, y, 40, 3, &o, &nn, &e), &e);
    for (int j = 0; j < 3; j++) KVR_CHECK(nn.coef[j] >= 0);
    KVR_CHECK(nn.n_at_bound >= 1);
    KVR_CHECK(nn.chi2 >= ls.chi2);
    /* the optimum over all feasible column subsets (brute force) has the same chi2 */
    double best = INFINITY;
    for (int mask = 1; mask < 8; mask++) {
        double Xs[40 * 3];
        int q = 0, cols[3];
        for (int j = 0; j < 3; j++)
            if (mask & (1 << j)) cols[q++] = j;
        for (int i = 0; i < 40; i++)
            for (int a = 0; a < q; a++) Xs[i * q + a] = X[3 * i + cols[a]];
        kvr_predict_lsq r;
        kvr_predict_lsq_options po = kvr_predict_lsq_options_default();
        if (kvr_predict_lsq_fit(Xs, y, 40, q, &po, &r, &e) != KVR_OK) continue;
        bool feas = true;
        for (int a = 0; a < q; a++) feas = feas && r.coef[a] >= 0;
        if (feas && r.chi2 < best) best = r.chi2;
    }
    KVR_CHECK_NEAR(nn.chi2, best, 0, 1e-9);
    /* Kuhn-Tucker: no bound coefficient would lower chi2 by rising from 0 */
    for (int j = 0; j < 3; j++) {
        if (!nn.at_bound[j]) continue;
        KVR_CHECK_NEAR(nn.se[j], 0, 0, 0);
        double g = 0;
        for (int i = 0; i < 40; i++) {
            double r = y[i];
            for (int k = 0; k < 3; k++) r -= X[3 * i + k] * nn.coef[k];
            g += X[3 * i + j] * r;
        }
        KVR_CHECK(g <= 1e-9 * fabs(nn.chi2 + 1));
    }
    /* unconstrained-feasible data: NNLS equals least squares */
    for (int i = 0; i < 40; i++) y[i] = 2 + 0.5 * X[3 * i + 1] + 0.01 * X[3 * i + 2];
    KVR_CHECK_OK(kvr_predict_lsq_fit(X, y, 40, 3, &o, &nn, &e), &e);
    KVR_CHECK_NEAR(nn.coef[1], 0.5, 0, 1e-9);
    KVR_CHECK_EQ_INT(nn.n_at_bound, 0);
}

static void test_robust(void) {
    double X[60 * 2], y[60];
    int planted = 0;
    for (int i = 0; i < 60; i++) {
        double x = i;
        X[2 * i] = 1;
        X[2 * i + 1] = x;
        y[i] = 10 + 2 * x + 0.2 * rng_normal();
        if (i % 10 == 3) { /* timing outliers: a noisy neighbour tripled these */
            y[i] *= 3;
            planted++;
        }
    }
    kvr_predict_lsq_options o = kvr_predict_lsq_options_default();
    kvr_predict_lsq ls, rb;
    kvr_error e;
    KVR_CHECK_OK(kvr_predict_lsq_fit(X, y, 60, 2, &o, &ls, &e), &e);
    o.robust = true;
    KVR_CHECK_OK(kvr_predict_lsq_fit(X, y, 60, 2, &o, &rb, &e), &e);
    KVR_CHECK(fabs(ls.coef[1] - 2) > 0.3); /* least squares is dragged away */
    KVR_CHECK_NEAR(rb.coef[0], 10, 0.3, 0);
    KVR_CHECK_NEAR(rb.coef[1], 2, 0.01, 0);
    KVR_CHECK_EQ_INT(rb.n_outliers, planted);
    /* GSL's robust sigma is conservative (the larger of the robust scale and a blend with the
     * least-squares one), so its errors are wide; the planted values still lie within them */
    KVR_CHECK(rb.se[1] > 0 && fabs(rb.coef[1] - 2) < 3 * rb.se[1]);
    KVR_CHECK(rb.se[1] < ls.se[1] * 2);
    /* robust + relative weights + non-negative through the cost-fit path */
    kvr_predict_sample rows[60];
    for (int i = 0; i < 60; i++)
        rows[i] = (kvr_predict_sample){KVR_OP_POST, 1 + i * 8, 0, 0};
    for (int i = 0; i < 60; i++) {
        rows[i].time_us = (25 + 1.55 * (double)rows[i].c) * (1 + 0.005 * rng_normal());
        if (i % 12 == 5) rows[i].time_us *= 2.5;
    }
    kvr_predict_fit_options fo = kvr_predict_fit_options_default();
    fo.lsq.robust = true;
    fo.max_breaks = 0;
    kvr_predict_fit f;
    KVR_CHECK_OK(kvr_predict_fit_op(rows, 60, KVR_OP_POST, &fo, &f, &e), &e);
    KVR_CHECK_NEAR(f.coef[1], 1.55, 0, 0.01);
    KVR_CHECK_NEAR(f.coef[0], 25, 0, 0.1);
    KVR_CHECK_EQ_INT(f.lsq.n_outliers, 5);
}

static void test_cv(void) {
    double X[30 * 2], y[30];
    for (int i = 0; i < 30; i++) {
        X[2 * i] = 1;
        X[2 * i + 1] = 1 + i;
        y[i] = (4 + 3.0 * (1 + i)) * (1 + 0.02 * rng_normal());
    }
    kvr_predict_lsq_options o = kvr_predict_lsq_options_default();
    o.weighting = KVR_PREDICT_WEIGHT_RELATIVE;
    kvr_predict_cv a, b, c;
    kvr_error e;
    KVR_CHECK_OK(kvr_predict_lsq_cv(X, y, 30, 2, &o, 5, 7, &a, &e), &e);
    KVR_CHECK_OK(kvr_predict_lsq_cv(X, y, 30, 2, &o, 5, 7, &b, &e), &e);
    KVR_CHECK_OK(kvr_predict_lsq_cv(X, y, 30, 2, &o, 5, 8, &c, &e), &e);
    KVR_CHECK(a.mape_out == b.mape_out && a.max_rel_out == b.max_rel_out); /* deterministic */
    KVR_CHECK(a.mape_out != c.mape_out);                                   /* seeded */
    KVR_CHECK_NEAR(c.mape_out, a.mape_out, 0, 0.5);
    KVR_CHECK(a.mape_in > 0.005 && a.mape_in < 0.03);
    KVR_CHECK(a.mape_out >= a.mape_in && a.mape_out < 2 * a.mape_in);
    KVR_CHECK(a.max_rel_out >= a.mape_out && a.max_rel_in >= a.mape_in);
    KVR_CHECK_EQ_INT(a.k, 5);
    /* folds: sizes differ by at most one, every row in exactly one */
    int fold[23], cnt[4] = {0};
    predict_folds(23, 4, 99, fold);
    for (int i = 0; i < 23; i++) cnt[fold[i]]++;
    for (int f = 0; f < 4; f++) KVR_CHECK(cnt[f] == 5 || cnt[f] == 6);
    /* leave-one-out of a perfect line: zero error */
    for (int i = 0; i < 30; i++) y[i] = 4 + 3.0 * (1 + i);
    KVR_CHECK_OK(kvr_predict_lsq_cv(X, y, 30, 2, &o, 30, 1, &a, &e), &e);
    KVR_CHECK(a.mape_out < 1e-12);
}

static void test_bad_input(void) {
    kvr_error e;
    kvr_predict_fit f;
    kvr_predict_sample rows[8];
    for (int i = 0; i < 8; i++)
        rows[i] = (kvr_predict_sample){KVR_OP_ATTN, 16 << i, 64 * i, 10 + i};
    /* too few observations for the form */
    KVR_CHECK(kvr_predict_fit_op(rows, 3, KVR_OP_ATTN, NULL, &f, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(has(e.msg, "fit attn: 3 observations < 4 parameters"));
    KVR_CHECK(kvr_predict_fit_op(rows, 8, KVR_OP_PRE, NULL, &f, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(has(e.msg, "fit pre: 0 observations < 2 parameters"));
    /* rank-deficient: no prefix varies, so g cannot be told from the constant */
    for (int i = 0; i < 8; i++) rows[i].prefix = 0;
    KVR_CHECK(kvr_predict_fit_op(rows, 8, KVR_OP_ATTN, NULL, &f, &e) == KVR_ERR_NUMERIC);
    KVR_CHECK(has(e.msg, "fit attn: rank-deficient design"));
    /* non-finite and non-positive timings */
    for (int i = 0; i < 8; i++) rows[i].prefix = 100 * i;
    rows[5].time_us = NAN;
    KVR_CHECK(kvr_predict_fit_op(rows, 8, KVR_OP_ATTN, NULL, &f, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(has(e.msg, "fit attn: row 5: time_us is not finite"));
    rows[5].time_us = 0;
    KVR_CHECK(kvr_predict_fit_op(rows, 8, KVR_OP_ATTN, NULL, &f, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(has(e.msg, "must be > 0 for relative-error weights"));
    rows[5].time_us = INFINITY;
    KVR_CHECK(kvr_predict_fit_op(rows, 8, KVR_OP_ATTN, NULL, &f, &e) == KVR_ERR_INVALID_ARG);
    rows[5].time_us = 12;
    rows[2].c = 0;
    KVR_CHECK(kvr_predict_fit_op(rows, 8, KVR_OP_ATTN, NULL, &f, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(has(e.msg, "row 2: c must be >= 1"));
    KVR_CHECK(kvr_predict_fit_op(rows, 8, KVR_OP_LINK, NULL, &f, &e) == KVR_ERR_INVALID_ARG);
    /* the wrapper: exactly collinear columns, NaN regressors, zero responses, bad weights */
    double X[6 * 3], y[6], w[6];
    for (int i = 0; i < 6; i++) {
        X[3 * i] = 1;
        X[3 * i + 1] = i;
        X[3 * i + 2] = 2 * i + 1; /* = 1 + 2 x: collinear */
        y[i] = 1 + i;
        w[i] = 1;
    }
    kvr_predict_lsq r;
    kvr_predict_lsq_options o = kvr_predict_lsq_options_default();
    o.label = "fit t";
    KVR_CHECK(kvr_predict_lsq_fit(X, y, 6, 3, &o, &r, &e) == KVR_ERR_NUMERIC);
    KVR_CHECK(has(e.msg, "fit t: rank-deficient design (numerical rank 2 < 3 parameters"));
    o.nonneg = true;
    KVR_CHECK(kvr_predict_lsq_fit(X, y, 6, 3, &o, &r, &e) == KVR_ERR_NUMERIC);
    o.nonneg = false;
    o.robust = true;
    KVR_CHECK(kvr_predict_lsq_fit(X, y, 6, 3, &o, &r, &e) == KVR_ERR_NUMERIC);
    o.robust = false;
    X[4] = NAN;
    KVR_CHECK(kvr_predict_lsq_fit(X, y, 6, 3, &o, &r, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(has(e.msg, "observation 1: regressor 1 is not finite"));
    X[4] = 1;
    X[5] = 7;
    y[0] = 0;
    o.weighting = KVR_PREDICT_WEIGHT_RELATIVE;
    KVR_CHECK(kvr_predict_lsq_fit(X, y, 6, 3, &o, &r, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(has(e.msg, "response 0 cannot be weighted"));
    y[0] = 1;
    o.weighting = KVR_PREDICT_WEIGHT_GIVEN;
    o.weights = w;
    w[3] = -1;
    KVR_CHECK(kvr_predict_lsq_fit(X, y, 6, 3, &o, &r, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(has(e.msg, "weight must be finite and >= 0"));
    w[3] = 0, w[4] = 0, w[5] = 0, w[2] = 0; /* 2 rows left for 3 parameters */
    KVR_CHECK(kvr_predict_lsq_fit(X, y, 6, 3, &o, &r, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(has(e.msg, "2 observations < 3 parameters"));
    o = kvr_predict_lsq_options_default();
    KVR_CHECK(kvr_predict_lsq_fit(X, y, 6, 0, &o, &r, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(kvr_predict_lsq_fit(X, y, 6, 17, &o, &r, &e) == KVR_ERR_INVALID_ARG);
    o.robust = true; /* robust needs dof > 0 */
    KVR_CHECK(kvr_predict_lsq_fit(X, y, 3, 3, &o, &r, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(kvr_predict_lsq_cv(X, y, 6, 3, NULL, 1, 1, NULL, &e) == KVR_ERR_INVALID_ARG);
    /* a CV fold whose training rows are rank-deficient */
    double X2[6 * 2] = {1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 5}, y2[6] = {1, 2, 1, 2, 1, 9};
    kvr_predict_cv cv;
    KVR_CHECK(kvr_predict_lsq_cv(X2, y2, 6, 2, NULL, 6, 1, &cv, &e) == KVR_ERR_NUMERIC);
    KVR_CHECK(has(e.msg, "cv fold"));
    /* link fits */
    kvr_predict_link_sample ls[3] = {{100, 5}, {NAN, 6}, {300, 7}};
    KVR_CHECK(kvr_predict_fit_link(ls, 3, NULL, &f, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(has(e.msg, "fit link: row 1: bytes"));
    KVR_CHECK(kvr_predict_fit_link(ls, 1, NULL, &f, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(has(e.msg, "fit link: 1 observations < 2 parameters"));
    ls[1].bytes = 100;
    ls[2].bytes = 100;
    KVR_CHECK(kvr_predict_fit_link(ls, 3, NULL, &f, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(has(e.msg, "at least 2 distinct"));
}

// ----------------------------------------------------------------------------
// cost-model fits

/* pre: flat (memory bound) up to c = 128, linear above; post: one line. The bend is found at
 * 128 and the line is kept without one. */
static kvr_predict_sample *profile_rows(int *n_out) {
    static const int64_t cs[] = {1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768,
                                 1024, 1536, 2048, 3072, 4096};
    const int nc = (int)(sizeof cs / sizeof cs[0]);
    kvr_predict_sample *r = malloc(sizeof *r * (size_t)(nc * 2 + 64 + 4));
    int n = 0;
    for (int i = 0; i < nc; i++) {
        double c = (double)cs[i];
        double pre = c <= 128 ? 15 + 0.05 * c : 15 + 0.05 * 128 + 0.55 * (c - 128);
        for (int rep = 0; rep < 1; rep++) {
            r[n++] = (kvr_predict_sample){KVR_OP_PRE, cs[i], 0, pre * (1 + 0.003 * rng_normal())};
            r[n++] = (kvr_predict_sample){KVR_OP_POST, cs[i], 0,
                                          (25 + 1.55 * c) * (1 + 0.003 * rng_normal())};
        }
    }
    for (int ci = 0; ci < 8; ci++)
        for (int pi = 0; pi < 8; pi++) {
            int64_t c = (int64_t)16 << ci, P = pi ? (int64_t)512 << pi : 0;
            double t = 20 + 0.02 * c + 0.001 * P + 0.00011 * (c * P + 0.5 * c * c);
            r[n++] = (kvr_predict_sample){KVR_OP_ATTN, c, P, t * (1 + 0.003 * rng_normal())};
        }
    for (int i = 1; i <= 4; i++)
        r[n++] =
            (kvr_predict_sample){KVR_OP_HEAD, i, 0, (180 + 0.5 * i) * (1 + 0.001 * rng_normal())};
    *n_out = n;
    return r;
}

/* eager below 64 KiB (5 us + 10 GB/s), rendezvous above (20 us + 25 GB/s) */
static double link_truth(double bytes) {
    return bytes < 65536 ? 5 + bytes / 10e3 : 20 + bytes / 25e3;
}
static int link_rows(kvr_predict_link_sample *ls) {
    int n = 0;
    for (double b = 256; b <= 256 << 20; b *= 2)
        for (int rep = 0; rep < 2; rep++)
            ls[n++] = (kvr_predict_link_sample){b * (rep ? 1.5 : 1),
                                                link_truth(b * (rep ? 1.5 : 1)) * (1 + 0.003 * rng_normal())};
    return n;
}

static void test_fit_ops(void) {
    int n;
    kvr_predict_sample *rows = profile_rows(&n);
    kvr_predict_fit f;
    kvr_error e;
    KVR_CHECK_OK(kvr_predict_fit_op(rows, n, KVR_OP_PRE, NULL, &f, &e), &e);
    KVR_CHECK_EQ_INT(f.form, KVR_PREDICT_FORM_HINGE);
    KVR_CHECK_EQ_INT(f.n_breaks, 1);
    KVR_CHECK_NEAR(f.breaks[0], 128, 0, 0);
    KVR_CHECK_NEAR(f.coef[2], 0.55, 0, 0.01);
    KVR_CHECK_NEAR(kvr_predict_fit_eval(&f, 1000, 0), 15 + 6.4 + 0.55 * 872, 0, 0.01);
    KVR_CHECK(f.cv.mape_out < 0.01);
    KVR_CHECK(f.nonneg && f.weighting == KVR_PREDICT_WEIGHT_RELATIVE);
    KVR_CHECK_OK(kvr_predict_fit_op(rows, n, KVR_OP_POST, NULL, &f, &e), &e);
    KVR_CHECK_EQ_INT(f.n_breaks, 0); /* noise alone does not buy a bend */
    KVR_CHECK_NEAR(f.coef[0], 25, 0, 0.02);
    KVR_CHECK_NEAR(f.coef[1], 1.55, 0, 0.005);
    KVR_CHECK_OK(kvr_predict_fit_op(rows, n, KVR_OP_HEAD, NULL, &f, &e), &e);
    KVR_CHECK_NEAR(kvr_predict_fit_eval(&f, 1, 0), 180.5, 0, 0.01);
    /* max_breaks 0: a single line even for pre */
    kvr_predict_fit_options o = kvr_predict_fit_options_default();
    o.max_breaks = 0;
    KVR_CHECK_OK(kvr_predict_fit_op(rows, n, KVR_OP_PRE, &o, &f, &e), &e);
    KVR_CHECK_EQ_INT(f.n_breaks, 0);
    KVR_CHECK(f.cv.mape_out > 0.05);
    /* links: the protocol change is found and each piece's bandwidth recovered */
    kvr_predict_link_sample ls[64];
    int nl = link_rows(ls);
    KVR_CHECK_OK(kvr_predict_fit_link(ls, nl, NULL, &f, &e), &e);
    KVR_CHECK_EQ_INT(f.form, KVR_PREDICT_FORM_SEGMENTS);
    KVR_CHECK_EQ_INT(f.n_breaks, 1);
    KVR_CHECK(f.breaks[0] > 49152 && f.breaks[0] <= 65536);
    KVR_CHECK_NEAR(f.coef[0], 5, 0, 0.02);
    KVR_CHECK_NEAR(1 / (1000 * f.coef[1]), 10, 0, 0.02);
    KVR_CHECK_NEAR(f.coef[2], 20, 0, 0.05);
    KVR_CHECK_NEAR(1 / (1000 * f.coef[3]), 25, 0, 0.01);
    free(rows);
}

/* fitted costs -> search costs: linear fits give the search module's coefficient model */
static void test_costs_to_search(void) {
    int n;
    kvr_predict_sample *rows = profile_rows(&n);
    kvr_predict_link_sample ls[64];
    int nl = 0;
    for (double b = 1 << 20; b <= 256 << 20; b *= 2) /* rendezvous sizes only: one line */
        ls[nl++] = (kvr_predict_link_sample){b, 8 + b / 250e3};
    kvr_predict_costs_info info = {32, 16384, 30, 0, "llama-2-7b", "a100", "fp16", "unit test"};
    kvr_predict_fit_options o = kvr_predict_fit_options_default();
    o.max_breaks = 0; /* single lines: the linear search model */
    kvr_predict_costs *c;
    kvr_error e;
    KVR_CHECK_OK(kvr_predict_costs_fit_samples(&info, rows, n, ls, nl, &o, &c, &e), &e);
    kvr_search_costs *m;
    KVR_CHECK_OK(kvr_predict_costs_to_search(c, false, &m, &e), &e);
    const kvr_predict_fit *pre = kvr_predict_costs_fit(c, KVR_OP_PRE),
                          *att = kvr_predict_costs_fit(c, KVR_OP_ATTN);
    KVR_CHECK(pre && att && kvr_predict_costs_fit(c, KVR_OP_LINK));
    KVR_CHECK_NEAR(kvr_search_costs_pre_us(m, 300), kvr_predict_fit_eval(pre, 300, 0), 0, 1e-14);
    KVR_CHECK_NEAR(kvr_search_costs_attn_us(m, 300, 7000), kvr_predict_fit_eval(att, 300, 7000), 0,
                   1e-14);
    KVR_CHECK_NEAR(kvr_search_costs_head_us(m), 180.5, 0, 0.01);
    KVR_CHECK_EQ_INT(kvr_search_costs_n_layers(m), 32);
    KVR_CHECK(has(kvr_search_costs_source(m), "unit test: fitted costs"));
    KVR_CHECK(strcmp(kvr_search_costs_model_name(m), "llama-2-7b") == 0);
    double t;
    KVR_CHECK_OK(kvr_search_costs_link_us(m, 0, 1, 64e6, &t, &e), &e);
    KVR_CHECK_NEAR(t, 8 + 64e6 / 250e3, 0, 1e-9);
    /* the same model as a search cost file: parses back to identical numbers */
    char *txt;
    KVR_CHECK_OK(kvr_predict_costs_to_search_json(c, false, &txt, &e), &e);
    kvr_search_costs *m2;
    KVR_CHECK_OK(kvr_search_costs_parse_json(txt, strlen(txt), "fit.json", &m2, &e), &e);
    free(txt);
    int64_t ch[4] = {5000, 4000, 3500, 3000};
    double t1, t2;
    KVR_CHECK_OK(kvr_search_sim_kvr(m, 4, ch, NULL, &t1, &e), &e);
    KVR_CHECK_OK(kvr_search_sim_kvr(m2, 4, ch, NULL, &t2, &e), &e);
    KVR_CHECK(t1 == t2);
    kvr_search_costs_destroy(m2);
    kvr_search_costs_destroy(m);
    /* with the bend in pre and protocol pieces in the link: a "fit" source with link curves */
    kvr_predict_costs_destroy(c);
    nl = link_rows(ls);
    KVR_CHECK_OK(kvr_predict_costs_fit_samples(&info, rows, n, ls, nl, NULL, &c, &e), &e);
    KVR_CHECK_EQ_INT(kvr_predict_costs_fit(c, KVR_OP_PRE)->n_breaks, 1);
    KVR_CHECK_OK(kvr_predict_costs_to_search(c, false, &m, &e), &e);
    KVR_CHECK(kvr_predict_costs_to_search_json(c, false, &txt, &e) == KVR_ERR_UNSUPPORTED);
    pre = kvr_predict_costs_fit(c, KVR_OP_PRE);
    KVR_CHECK_NEAR(kvr_search_costs_pre_us(m, 50), kvr_predict_fit_eval(pre, 50, 0), 0, 1e-14);
    KVR_CHECK_NEAR(kvr_search_costs_pre_us(m, 3000), kvr_predict_fit_eval(pre, 3000, 0), 0, 1e-14);
    const kvr_predict_fit *lf = kvr_predict_costs_fit(c, KVR_OP_LINK);
    KVR_CHECK_OK(kvr_search_costs_link_us(m, 2, 3, 4096, &t, &e), &e);
    KVR_CHECK_NEAR(t, kvr_predict_fit_eval(lf, 4096, 0), 0, 1e-14);
    KVR_CHECK_NEAR(t, link_truth(4096), 0, 0.02);
    KVR_CHECK_OK(kvr_search_costs_link_us(m, 2, 3, 8e6, &t, &e), &e);
    KVR_CHECK_NEAR(t, link_truth(8e6), 0, 0.01);
    /* the simulator uses the link curve; overriding the links drops it */
    int64_t ch2[2] = {4096, 4096};
    KVR_CHECK_OK(kvr_search_sim_kvr(m, 2, ch2, NULL, &t1, &e), &e);
    KVR_CHECK_OK(kvr_search_costs_override_links(m, -1, 1, &e), &e);
    KVR_CHECK_OK(kvr_search_sim_kvr(m, 2, ch2, NULL, &t2, &e), &e);
    KVR_CHECK(t2 > t1);
    KVR_CHECK_OK(kvr_search_costs_link_us(m, 2, 3, 1e6, &t, &e), &e);
    KVR_CHECK_NEAR(t, kvr_predict_fit_eval(lf, 1e9, 0) - 1e9 * lf->coef[3] + 1e6 / 1e3, 0, 1e-9);
    kvr_search_costs_destroy(m);
    /* a listed link and ideal links; missing fits */
    KVR_CHECK_OK(kvr_predict_costs_set_link_fit(c, 3, 4, lf, &e), &e);
    KVR_CHECK_OK(kvr_predict_costs_to_search(c, false, &m, &e), &e);
    KVR_CHECK_OK(kvr_search_costs_link_us(m, 3, 4, 4096, &t, &e), &e);
    KVR_CHECK_NEAR(t, kvr_predict_fit_eval(lf, 4096, 0), 0, 1e-14);
    kvr_search_costs_destroy(m);
    kvr_predict_fit bad = *lf;
    bad.op = KVR_OP_PRE;
    KVR_CHECK(kvr_predict_costs_set_link_fit(c, 3, 4, &bad, &e) == KVR_ERR_INVALID_ARG);
    kvr_predict_costs_destroy(c);
    KVR_CHECK_OK(kvr_predict_costs_fit_samples(&info, rows, n, NULL, 0, NULL, &c, &e), &e);
    KVR_CHECK(kvr_predict_costs_to_search(c, false, &m, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(has(e.msg, "no link fit"));
    KVR_CHECK_OK(kvr_predict_costs_to_search(c, true, &m, &e), &e);
    KVR_CHECK_OK(kvr_search_costs_link_us(m, 0, 1, 1e9, &t, &e), &e);
    KVR_CHECK(t == 0);
    kvr_search_costs_destroy(m);
    kvr_predict_costs_destroy(c);
    kvr_predict_sample only_attn[64];
    int na = 0;
    for (int i = 0; i < n; i++)
        if (rows[i].op == KVR_OP_ATTN) only_attn[na++] = rows[i];
    KVR_CHECK_OK(kvr_predict_costs_fit_samples(&info, only_attn, na, NULL, 0, NULL, &c, &e), &e);
    KVR_CHECK(kvr_predict_costs_to_search(c, true, &m, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(has(e.msg, "no pre fit"));
    kvr_predict_costs_destroy(c);
    free(rows);
}

static void test_json_fits(void) {
    int n;
    kvr_predict_sample *rows = profile_rows(&n);
    kvr_predict_link_sample ls[64];
    int nl = link_rows(ls);
    kvr_predict_costs_info info = {32, 16384, 30, 150, "m", "d", "bf16", "s"};
    kvr_predict_costs *c;
    kvr_error e;
    KVR_CHECK_OK(kvr_predict_costs_fit_samples(&info, rows, n, ls, nl, NULL, &c, &e), &e);
    KVR_CHECK_OK(kvr_predict_costs_set_link_fit(c, 0, 1, kvr_predict_costs_fit(c, KVR_OP_LINK), &e),
                 &e);
    /* one fit: exact round trip */
    for (int op = 0; op < KVR_OP_COUNT; op++) {
        if (op == KVR_OP_EMBED) continue; /* profile_rows has no embed rows */
        const kvr_predict_fit *f = kvr_predict_costs_fit(c, (kvr_op)op);
        KVR_CHECK(f != NULL);
        if (!f) continue;
        char *txt;
        KVR_CHECK_OK(kvr_predict_fit_to_json(f, &txt, &e), &e);
        kvr_predict_fit g;
        KVR_CHECK_OK(kvr_predict_fit_from_json(txt, strlen(txt), &g, &e), &e);
        free(txt);
        KVR_CHECK(g.op == f->op && g.form == f->form && g.n_breaks == f->n_breaks);
        KVR_CHECK(memcmp(g.coef, f->coef, sizeof g.coef) == 0);
        KVR_CHECK(memcmp(g.breaks, f->breaks, sizeof(double) * (size_t)f->n_breaks) == 0);
        for (int j = 0; j < f->n_coef; j++) KVR_CHECK(g.lsq.se[j] == f->lsq.se[j]);
        KVR_CHECK(g.lsq.chi2 == f->lsq.chi2 && g.cv.mape_out == f->cv.mape_out);
        KVR_CHECK(g.cv.seed == f->cv.seed && g.lsq.n_at_bound == f->lsq.n_at_bound);
        KVR_CHECK(kvr_predict_fit_eval(&g, 777, 1234) == kvr_predict_fit_eval(f, 777, 1234));
    }
    /* the cost model: to JSON and back gives the same JSON and the same search model */
    char *a, *b;
    KVR_CHECK_OK(kvr_predict_costs_to_json(c, &a, &e), &e);
    kvr_predict_costs *c2;
    KVR_CHECK_OK(kvr_predict_costs_from_json(a, strlen(a), "costs.json", &c2, &e), &e);
    KVR_CHECK_OK(kvr_predict_costs_to_json(c2, &b, &e), &e);
    KVR_CHECK(strcmp(a, b) == 0);
    cJSON *root = cJSON_Parse(a);
    KVR_CHECK(root && strcmp(cJSON_GetObjectItem(root, "schema")->valuestring,
                             "kvr-predict-costs/1") == 0);
    cJSON_Delete(root);
    free(b);
    /* malformed documents */
    static const char *const bad[] = {
        "[]",
        "{\"schema\": \"kvr-predict-costs/2\"}",
        "{\"schema\": \"kvr-predict-costs/1\", \"layers\": 0, \"kv_bytes_per_token\": 1,"
        " \"embed_us\": 0, \"head_us\": 0}",
        "{\"schema\": \"kvr-predict-costs/1\", \"layers\": 2, \"kv_bytes_per_token\": 1,"
        " \"embed_us\": 0, \"head_us\": 0, \"fits\": {\"pre\": {\"op\": \"pre\", \"form\":"
        " \"hinge\", \"breaks\": [], \"coef\": [1]}}}",
        "{\"schema\": \"kvr-predict-costs/1\", \"layers\": 2, \"kv_bytes_per_token\": 1,"
        " \"embed_us\": 0, \"head_us\": 0, \"fits\": {\"post\": {\"op\": \"pre\", \"form\":"
        " \"hinge\", \"breaks\": [], \"coef\": [1, 2]}}}",
        "{\"schema\": \"kvr-predict-costs/1\", \"layers\": 2, \"kv_bytes_per_token\": 1,"
        " \"embed_us\": 0, \"head_us\": 0, \"fits\": {\"attn\": {\"op\": \"attn\", \"form\":"
        " \"hinge\", \"breaks\": [], \"coef\": [1, 2]}}}",
        "not json",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kvr_predict_costs *x = NULL;
        kvr_status s = kvr_predict_costs_from_json(bad[i], strlen(bad[i]), "bad.json", &x, &e);
        KVR_CHECK(s == KVR_ERR_FORMAT || s == KVR_ERR_INVALID_ARG);
        KVR_CHECK(x == NULL);
        KVR_CHECK(has(e.msg, "bad.json"));
    }
    free(a);
    kvr_predict_costs_destroy(c2);
    kvr_predict_costs_destroy(c);
    free(rows);
}

// ----------------------------------------------------------------------------
// the search link-time hook

static int hook_destroyed;
static double hook_time(const void *ctx, const kvr_search_link *l, double bytes) {
    return *(const double *)ctx + (l->src == 1 ? 1000 : 0) + bytes * 0;
}
static void hook_free(void *ctx) {
    hook_destroyed++;
    free(ctx);
}

static void test_search_link_hook(void) {
    kvr_search_coeffs co = {0};
    co.n_layers = 4;
    co.kv_bytes_per_token = 1000;
    co.pre_per_token_us = 1;
    co.post_per_token_us = 1;
    kvr_search_link l = {0, 0, 2, 1};
    kvr_search_costs *m;
    kvr_error e;
    KVR_CHECK_OK(kvr_search_costs_create_linear(&co, &l, &m, &e), &e);
    double t, t0, t1;
    int64_t ch[3] = {100, 100, 100};
    KVR_CHECK_OK(kvr_search_sim_kvr(m, 3, ch, NULL, &t0, &e), &e);
    double *ctx = malloc(sizeof *ctx);
    *ctx = 7;
    hook_destroyed = 0;
    KVR_CHECK_OK(kvr_search_costs_set_link_time(m, hook_time, ctx, hook_free, "test curve", &e), &e);
    KVR_CHECK_OK(kvr_search_costs_link_us(m, 0, 1, 1e6, &t, &e), &e);
    KVR_CHECK_NEAR(t, 7, 0, 0);
    KVR_CHECK_OK(kvr_search_costs_link_us(m, 1, 2, 1e6, &t, &e), &e);
    KVR_CHECK_NEAR(t, 1007, 0, 0);
    KVR_CHECK_OK(kvr_search_sim_kvr(m, 3, ch, NULL, &t1, &e), &e);
    KVR_CHECK(t1 != t0);
    /* the search honours it too: its TTFT is what the simulator says of its partition */
    kvr_search_params sp = kvr_search_params_default();
    sp.granularity = 10;
    int64_t best[3];
    kvr_search_stats st;
    KVR_CHECK_OK(kvr_search_partition(m, 3, 3000, &sp, best, &st, &e), &e);
    KVR_CHECK_OK(kvr_search_sim_kvr(m, 3, best, NULL, &t, &e), &e);
    KVR_CHECK_NEAR(st.ttft_us, t, 0, 1e-12);
    /* replacing the links removes the source (and frees its context) */
    KVR_CHECK_OK(kvr_search_costs_override_links(m, 3, -1, &e), &e);
    KVR_CHECK_EQ_INT(hook_destroyed, 1);
    KVR_CHECK_OK(kvr_search_costs_link_us(m, 0, 1, 1000, &t, &e), &e);
    KVR_CHECK_NEAR(t, 3 + 1, 0, 1e-12);
    ctx = malloc(sizeof *ctx);
    *ctx = 1;
    KVR_CHECK_OK(kvr_search_costs_set_link_time(m, hook_time, ctx, hook_free, NULL, &e), &e);
    KVR_CHECK_OK(kvr_search_costs_set_link_time(m, NULL, NULL, NULL, NULL, &e), &e);
    KVR_CHECK_EQ_INT(hook_destroyed, 2);
    ctx = malloc(sizeof *ctx);
    *ctx = 1;
    KVR_CHECK_OK(kvr_search_costs_set_link_time(m, hook_time, ctx, hook_free, NULL, &e), &e);
    kvr_search_costs_destroy(m);
    KVR_CHECK_EQ_INT(hook_destroyed, 3);
}

// ----------------------------------------------------------------------------
// KVR-P

static const int64_t g16 = 16;

static kvr_search_table *table_for(const kvr_search_costs *m, const int *ranks, int nr,
                                   int64_t lo, int64_t hi, int points) {
    int64_t ctx[64];
    for (int k = 0; k < points; k++)
        ctx[k] = (int64_t)llround((double)lo * pow((double)hi / (double)lo, (double)k / (points - 1)));
    kvr_search_table_config cfg = {ranks, nr, ctx, points, kvr_search_params_default(),
                                   1u << KVR_STRATEGY_KVR_S};
    cfg.params.granularity = g16;
    kvr_search_table *t = NULL;
    kvr_error e;
    KVR_CHECK_OK(kvr_search_table_create(m, &cfg, &t, &e), &e);
    return t;
}

/* the KVR-S partition rules: sum C, chunks >= g, boundaries on the grid, remainder last */
static bool partition_ok(const int64_t *ch, int p, int64_t C, int64_t g) {
    int64_t S = 0;
    for (int i = 0; i < p; i++) {
        if (ch[i] < g) return false;
        S += ch[i];
        if (i + 1 < p && S % g != 0) return false;
    }
    return S == C;
}

/* the brief's target: within 0.5 % of KVR-S at held-out contexts inside the table's range,
 * under the example cost file (NVLink-class link) */
static void test_kvrp_example(void) {
    kvr_search_costs *m = load_example("llama7b_a100.json");
    if (!m) return;
    const int ranks[] = {2, 4, 8};
    kvr_search_table *t = table_for(m, ranks, 3, 1024, 65536, 13);
    kvr_predictor *kp;
    kvr_error e;
    kvr_predictor_options po = kvr_predictor_options_default();
    po.label = "nvlink 250 GB/s";
    KVR_CHECK_OK(kvr_predictor_fit(m, t, g16, &po, &kp, &e), &e);
    if (!kp) return;
    KVR_CHECK_EQ_INT(kvr_predictor_n_ranks(kp), 3);
    KVR_CHECK(strcmp(kvr_predictor_label(kp), "nvlink 250 GB/s") == 0);
    for (int r = 0; r < 3; r++) {
        int p = ranks[r];
        KVR_CHECK_EQ_INT(kvr_predictor_ranks(kp, r), p);
        kvr_predictor_stats st;
        KVR_CHECK_OK(kvr_predictor_stats_get(kp, p, &st, &e), &e);
        KVR_CHECK(st.n_contexts >= 13 && st.context_min == 1024 && st.context_max == 65536);
        KVR_CHECK(st.loo_max_gap < 0.005);
        KVR_CHECK(st.fit_max_gap < 0.005);
        /* held-out contexts: none in the table */
        int64_t held[40];
        for (int k = 0; k < 40; k++) held[k] = 1100 + (int64_t)(rng_unif() * 64000);
        kvr_predictor_validation v;
        double gaps[40];
        KVR_CHECK_OK(kvr_predictor_validate(kp, m, p, held, 40, NULL, -1, gaps, &v, &e), &e);
        if (!(v.max_gap <= 0.005))
            fprintf(stderr, "  p=%d: max gap %.3f%% at %lld\n", p, 100 * v.max_gap,
                    (long long)v.worst_context);
        KVR_CHECK(v.max_gap <= 0.005);
        KVR_CHECK(v.mean_gap <= 0.001);
        KVR_CHECK(v.n == 40 && gaps[0] >= -0.01);
        /* refinement: never worse, and its TTFT is the simulator's */
        for (int k = 0; k < 10; k++) {
            int64_t a[8], b[8];
            double ta, tb, tr;
            KVR_CHECK_OK(kvr_predictor_predict(kp, p, held[k], a, &e), &e);
            KVR_CHECK_OK(kvr_predictor_predict_refined(kp, m, p, held[k], 0, b, &tr, &e), &e);
            KVR_CHECK(partition_ok(b, p, held[k], g16));
            KVR_CHECK_OK(kvr_search_sim_kvr(m, p, a, NULL, &ta, &e), &e);
            KVR_CHECK_OK(kvr_search_sim_kvr(m, p, b, NULL, &tb, &e), &e);
            KVR_CHECK_NEAR(tr, tb, 0, 1e-11);
            KVR_CHECK(tb <= ta * (1 + 1e-12));
        }
        /* extrapolation (reported, loosely bounded here) */
        const int64_t out[] = {p * g16, 600, 98304, 131072};
        KVR_CHECK_OK(kvr_predictor_validate(kp, m, p, out, 4, NULL, -1, NULL, &v, &e), &e);
        KVR_CHECK(v.max_gap < 0.02);
    }
    kvr_predictor_destroy(kp);
    kvr_search_table_destroy(t);
    kvr_search_costs_destroy(m);
}

/* partition rules for any C and every form, and the JSON round trip predicts identically */
static void test_kvrp_rules_and_json(void) {
    kvr_search_costs *m = load_example("llama7b_a100_2nodes.json");
    if (!m) return;
    const int ranks[] = {4, 8};
    kvr_search_table *t = table_for(m, ranks, 2, 2048, 32768, 9);
    kvr_error e;
    for (int f = 0; f < KVR_PREDICTOR_FORM_COUNT; f++) {
        kvr_predictor_options po = kvr_predictor_options_default();
        po.forms = 1u << f;
        po.densify_gap = 0;
        kvr_predictor *kp, *kq;
        KVR_CHECK_OK(kvr_predictor_fit(m, t, g16, &po, &kp, &e), &e);
        if (!kp) continue;
        kvr_predictor_stats st;
        KVR_CHECK_OK(kvr_predictor_stats_get(kp, 8, &st, &e), &e);
        KVR_CHECK_EQ_INT(st.form, f);
        KVR_CHECK(!isnan(st.loo_max_gap) && st.n_added == 0);
        char *txt, *txt2;
        KVR_CHECK_OK(kvr_predictor_to_json(kp, &txt, &e), &e);
        KVR_CHECK_OK(kvr_predictor_from_json(txt, strlen(txt), "kvrp.json", &kq, &e), &e);
        if (!kq) {
            free(txt);
            kvr_predictor_destroy(kp);
            continue;
        }
        KVR_CHECK_OK(kvr_predictor_to_json(kq, &txt2, &e), &e);
        KVR_CHECK(strcmp(txt, txt2) == 0);
        free(txt);
        free(txt2);
        int mism = 0, bad = 0;
        for (int r = 0; r < 2; r++) {
            int p = ranks[r];
            for (int k = 0; k < 300; k++) {
                int64_t C = p * g16 + (int64_t)(rng_unif() * rng_unif() * 300000);
                int64_t a[8], b[8];
                KVR_CHECK_OK(kvr_predictor_predict(kp, p, C, a, &e), &e);
                KVR_CHECK_OK(kvr_predictor_predict(kq, p, C, b, &e), &e);
                mism += memcmp(a, b, sizeof(int64_t) * (size_t)p) != 0;
                bad += !partition_ok(a, p, C, g16);
            }
            int64_t a[8];
            KVR_CHECK_OK(kvr_predictor_predict(kp, p, p * g16, a, &e), &e);
            for (int i = 0; i < p; i++) KVR_CHECK(a[i] == g16);
            KVR_CHECK_OK(kvr_predictor_predict(kp, p, p * g16 + 5, a, &e), &e);
            KVR_CHECK(a[p - 1] == g16 + 5);
        }
        if (mism || bad)
            fprintf(stderr, "  form %s: %d mismatches, %d bad partitions\n",
                    kvr_predictor_form_name((kvr_predictor_form)f), mism, bad);
        KVR_CHECK_EQ_INT(mism, 0);
        KVR_CHECK_EQ_INT(bad, 0);
        kvr_predictor_destroy(kq);
        kvr_predictor_destroy(kp);
    }
    kvr_search_table_destroy(t);
    kvr_search_costs_destroy(m);
}

/* Steffen forms: the Hermite evaluation in predict() is GSL's steffen interpolant */
static void test_kvrp_steffen_is_gsl(void) {
    kvr_search_costs *m = load_example("llama7b_a100.json");
    if (!m) return;
    int p = 4;
    kvr_search_table *t = table_for(m, &p, 1, 1024, 65536, 9);
    kvr_predictor_options po = kvr_predictor_options_default();
    po.forms = 1u << KVR_PREDICTOR_FORM_STEFFEN_LOGC;
    po.densify_gap = 0;
    kvr_predictor *kp;
    kvr_error e;
    KVR_CHECK_OK(kvr_predictor_fit(m, t, g16, &po, &kp, &e), &e);
    if (!kp) return;
    const predict_kvrp_entry *en = &kp->e[0];
    KVR_CHECK(en->form == KVR_PREDICTOR_FORM_STEFFEN_LOGC && en->d && en->n == 9);
    gsl_interp *gi = gsl_interp_alloc(gsl_interp_steffen, (size_t)en->n);
    double worst = 0;
    for (int i = 0; i < p - 1; i++) {
        const double *y = en->f + (size_t)i * en->n;
        KVR_CHECK(gsl_interp_init(gi, en->x, y, (size_t)en->n) == GSL_SUCCESS);
        for (int k = 0; k < 200; k++) {
            double x = en->x[0] + (en->x[en->n - 1] - en->x[0]) * rng_unif();
            int j = 0;
            while (j + 2 < en->n && en->x[j + 1] <= x) j++;
            double h = en->x[j + 1] - en->x[j], tt = (x - en->x[j]) / h;
            double t2 = tt * tt, t3 = t2 * tt;
            double mine = (2 * t3 - 3 * t2 + 1) * y[j] + (t3 - 2 * t2 + tt) * h * en->d[i * en->n + j] +
                          (-2 * t3 + 3 * t2) * y[j + 1] + (t3 - t2) * h * en->d[i * en->n + j + 1];
            double ref = gsl_interp_eval(gi, en->x, y, x, NULL);
            worst = fmax(worst, fabs(mine - ref));
        }
    }
    gsl_interp_free(gi);
    KVR_CHECK(worst < 1e-13);
    kvr_predictor_destroy(kp);
    kvr_search_table_destroy(t);
    kvr_search_costs_destroy(m);
}

/* the balanced form: its fraction solves the stage-balance equation, its limits are right */
static void test_kvrp_balanced(void) {
    for (int k = 0; k < 50; k++) {
        double q = rng_unif(), kap = exp(rng_normal() * 4);
        double x = predict_balanced(q, kap);
        KVR_CHECK_NEAR(x + kap * x * x, q * (1 + kap), 1e-14, 1e-12);
    }
    KVR_CHECK_NEAR(predict_balanced(0.25, 0), 0.25, 0, 1e-15);
    KVR_CHECK_NEAR(predict_balanced(0.25, 1e12), 0.5, 0, 1e-9);
}

static void test_kvrp_bad_input(void) {
    kvr_search_costs *m = load_example("llama7b_a100.json");
    if (!m) return;
    kvr_predictor *kp;
    kvr_error e;
    KVR_CHECK(kvr_predictor_create(0, NULL, &kp, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK_OK(kvr_predictor_create(16, NULL, &kp, &e), &e);
    int64_t ctx[3] = {1024, 2048, 4096};
    int64_t ch[6] = {512, 512, 1024, 1024, 2048, 2048};
    KVR_CHECK_OK(kvr_predictor_add(kp, m, 2, 3, ctx, ch, NULL, &e), &e);
    int64_t out[4];
    KVR_CHECK(kvr_predictor_predict(kp, 4, 4096, out, &e) == KVR_ERR_NOT_FOUND);
    KVR_CHECK(has(e.msg, "no partition predictor for 4 ranks"));
    KVR_CHECK(kvr_predictor_predict(kp, 2, 31, out, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(has(e.msg, "smaller than ranks x granularity"));
    ch[0] = 500, ch[1] = 524; /* boundary off the grid */
    KVR_CHECK(kvr_predictor_add(kp, m, 2, 3, ctx, ch, NULL, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(has(e.msg, "not on the granularity-16 grid"));
    ch[0] = 512, ch[1] = 500; /* wrong sum */
    KVR_CHECK(kvr_predictor_add(kp, m, 2, 3, ctx, ch, NULL, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(has(e.msg, "sums to"));
    ch[1] = 512;
    ctx[1] = 1024; /* duplicate context */
    KVR_CHECK(kvr_predictor_add(kp, m, 2, 3, ctx, ch, NULL, &e) == KVR_ERR_INVALID_ARG);
    ctx[1] = 2048;
    kvr_predictor_options po = kvr_predictor_options_default();
    po.forms = 1u << KVR_PREDICTOR_FORM_REG4; /* 4 parameters from 3 contexts */
    KVR_CHECK(kvr_predictor_add(kp, m, 2, 3, ctx, ch, &po, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(has(e.msg, "cannot carry any selected form"));
    /* a table whose rows lack KVR-S */
    int p = 2;
    int64_t tc[2] = {1024, 2048};
    kvr_search_table_config cfg = {&p, 1, tc, 2, kvr_search_params_default(),
                                   1u << KVR_STRATEGY_KVR_E};
    kvr_search_table *t;
    KVR_CHECK_OK(kvr_search_table_create(m, &cfg, &t, &e), &e);
    kvr_predictor *kq = NULL;
    KVR_CHECK(kvr_predictor_fit(m, t, 16, NULL, &kq, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(has(e.msg, "has no KVR-S partition"));
    KVR_CHECK(kq == NULL);
    kvr_search_table_destroy(t);
    /* malformed predictor documents */
    static const char *const bad[] = {
        "{}",
        "{\"schema\": \"kvr-predictor/1\", \"granularity\": 0, \"ranks\": []}",
        "{\"schema\": \"kvr-predictor/1\", \"granularity\": 16, \"ranks\": [{\"ranks\": 2,"
        " \"form\": \"linear-c\", \"contexts\": [64], \"partitions\": [[32, 32]], \"x\": [64],"
        " \"fractions\": [[0.5, 0.5]]}]}",
        "{\"schema\": \"kvr-predictor/1\", \"granularity\": 16, \"ranks\": [{\"ranks\": 2,"
        " \"form\": \"cubic\", \"contexts\": [64], \"partitions\": [[32, 32]]}]}",
        "{\"schema\": \"kvr-predictor/1\", \"granularity\": 16, \"ranks\": [{\"ranks\": 2,"
        " \"form\": \"linear-c\", \"contexts\": [64, 32], \"partitions\": [[32, 32], [16, 16]],"
        " \"x\": [64, 32], \"fractions\": [[0.5, 0.5]]}]}",
        "{\"schema\": \"kvr-predictor/1\", \"granularity\": 16, \"ranks\": [{\"ranks\": 2,"
        " \"form\": \"balanced\", \"contexts\": [64], \"partitions\": [[32, 32]], \"c0\": -1}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        KVR_CHECK(kvr_predictor_from_json(bad[i], strlen(bad[i]), "bad.json", &kq, &e) ==
                  KVR_ERR_FORMAT);
        KVR_CHECK(has(e.msg, "bad.json"));
    }
    KVR_CHECK(kvr_predictor_load("/nonexistent/kvrp.json", &kq, &e) == KVR_ERR_IO);
    KVR_CHECK(has(e.msg, "/nonexistent/kvrp.json"));
    kvr_predictor_destroy(kp);
    kvr_search_costs_destroy(m);
}

/* a predictor file written and loaded back (the runtime's path) */
static void test_kvrp_load(void) {
    kvr_search_costs *m = load_example("llama7b_a100.json");
    if (!m) return;
    int p = 8;
    kvr_search_table *t = table_for(m, &p, 1, 4096, 65536, 5);
    kvr_predictor *kp, *kq;
    kvr_error e;
    KVR_CHECK_OK(kvr_predictor_fit(m, t, g16, NULL, &kp, &e), &e);
    char *txt;
    KVR_CHECK_OK(kvr_predictor_to_json(kp, &txt, &e), &e);
    char path[] = "/tmp/kvr_test_predict_XXXXXX";
    int fd = mkstemp(path);
    KVR_CHECK(fd >= 0);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f) {
        fputs(txt, f);
        fclose(f);
    }
    KVR_CHECK_OK(kvr_predictor_load(path, &kq, &e), &e);
    remove(path);
    if (kq) {
        int64_t a[8], b[8];
        KVR_CHECK_OK(kvr_predictor_predict(kp, 8, 50000, a, &e), &e);
        KVR_CHECK_OK(kvr_predictor_predict(kq, 8, 50000, b, &e), &e);
        KVR_CHECK(memcmp(a, b, sizeof a) == 0);
        kvr_predictor_stats s1, s2;
        kvr_predictor_stats_get(kp, 8, &s1, &e);
        kvr_predictor_stats_get(kq, 8, &s2, &e);
        KVR_CHECK(s1.loo_max_gap == s2.loo_max_gap && s1.n_added == s2.n_added &&
                  s1.form == s2.form && s1.fit_max_gap == s2.fit_max_gap);
        kvr_predictor_destroy(kq);
    }
    cJSON *root = cJSON_Parse(txt);
    KVR_CHECK(root && strcmp(cJSON_GetObjectItem(root, "schema")->valuestring, "kvr-predictor/1") == 0);
    cJSON_Delete(root);
    free(txt);
    kvr_predictor_destroy(kp);
    kvr_search_table_destroy(t);
    kvr_search_costs_destroy(m);
}

/* Calibration: an exact line is recovered and predicts held-out points exactly; a line that
 * would need a negative intercept is clamped to b = 0 (and a negative slope to the mean); the
 * spread of repeats; the online factor; too few points. */
static void test_calib(void) {
    kvr_calib_point p[6];
    for (int i = 0; i < 6; i++) p[i] = (kvr_calib_point){10.0 * (i + 1), 2.0 * 10 * (i + 1) + 3, 0};
    kvr_calib_fit f;
    kvr_error e;
    KVR_CHECK_OK(kvr_calib_fit_points(p, 6, &f, &e), &e);
    KVR_CHECK_NEAR(f.a, 2, 1e-12, 1e-12);
    KVR_CHECK_NEAR(f.b, 3, 1e-9, 1e-12);
    KVR_CHECK(f.cv_max_err < 1e-12 && f.cv_q90_err < 1e-12);
    KVR_CHECK_NEAR(f.raw_max_err, 1 - 10.0 / 23, 1e-12, 1e-12); /* the smallest: 10 vs 23 ms */
    KVR_CHECK_EQ_INT(f.n_sets, 0);
    KVR_CHECK_NEAR(f.band, f.cv_q90_err, 0, 0);
    /* measured = 3 x predicted - 5: the unconstrained b < 0; the best line through 0 instead */
    for (int i = 0; i < 6; i++) p[i].measured_ms = 3 * p[i].predicted_ms - 5;
    KVR_CHECK_OK(kvr_calib_fit_points(p, 6, &f, &e), &e);
    KVR_CHECK(f.b == 0 && f.a > 2.7 && f.a < 3);
    /* decreasing: a = 0, b = the mean */
    for (int i = 0; i < 6; i++) p[i].measured_ms = 100 - p[i].predicted_ms;
    KVR_CHECK_OK(kvr_calib_fit_points(p, 6, &f, &e), &e);
    KVR_CHECK(f.a == 0);
    KVR_CHECK_NEAR(f.b, 65, 1e-12, 1e-12);
    /* repeats: two sets, spreads (12 - 10) / 11 and (21 - 20) / 20.5... medians of 3 */
    kvr_calib_point q[6] = {{10, 10, 1}, {10, 12, 1}, {10, 11, 1},
                            {20, 20, 2}, {20, 21, 2}, {20, 20.5, 2}};
    KVR_CHECK_OK(kvr_calib_fit_points(q, 6, &f, &e), &e);
    KVR_CHECK_EQ_INT(f.n_sets, 2);
    KVR_CHECK_NEAR(f.spread, (2.0 / 11 + 1.0 / 20.5) / 2, 1e-12, 1e-12);
    KVR_CHECK_NEAR(f.band, f.cv_q90_err + f.spread, 1e-15, 0);
    KVR_CHECK(kvr_calib_fit_points(q, 2, &f, &e) == KVR_ERR_INVALID_ARG);
    q[0].measured_ms = 0;
    KVR_CHECK(kvr_calib_fit_points(q, 6, &f, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "run 0") != NULL);
    /* online: the factor moves toward measured / predicted by alpha each run */
    kvr_calib_online on = kvr_calib_online_init(0.5);
    KVR_CHECK_NEAR(kvr_calib_online_predict(&on, 10), 10, 0, 0);
    kvr_calib_online_update(&on, 10, 20); /* ratio 2: factor 1.5 */
    KVR_CHECK_NEAR(on.factor, 1.5, 1e-15, 0);
    kvr_calib_online_update(&on, 10, 20); /* 1.75 */
    KVR_CHECK_NEAR(kvr_calib_online_predict(&on, 10), 17.5, 1e-12, 0);
    kvr_calib_online_update(&on, 0, 20); /* nothing to learn */
    KVR_CHECK_EQ_INT(on.n, 2);
    KVR_CHECK_NEAR(kvr_calib_apply(2, 3, 10), 23, 0, 0);
}

/* The store's measured runs grouped (strategy from mode and partition source, ranks, threads,
 * transport, profile run), fitted, stored, and found again by kvr-run's key. */
static void test_calib_store(void) {
    kvr_db *db = NULL;
    kvr_error e;
    kvr_db_open_params op = kvr_db_open_params_default();
    KVR_CHECK_OK(kvr_db_open(":memory:", &op, &db, &e), &e);
    if (!db) return;
    for (int i = 0; i < 8; i++) { /* kvr even (kvr-e): 5 runs; kvr auto (kvr-s): 3 runs */
        kvr_db_measured_run m;
        memset(&m, 0, sizeof m);
        snprintf(m.mode, sizeof m.mode, "kvr");
        snprintf(m.transport, sizeof m.transport, "threads");
        snprintf(m.partition_source, sizeof m.partition_source, i < 5 ? "even" : "auto");
        snprintf(m.partition, sizeof m.partition, "%d,%d", 100 * (i % 3 + 1), 100 * (i % 3 + 1));
        m.n_ranks = 2, m.n_threads = 1, m.n_tokens = 200 * (i % 3 + 1);
        m.predicted_ttft_ms = 10.0 * (i % 3 + 1);
        m.ttft_ms = 1.5 * m.predicted_ttft_ms + 2 + 0.01 * i;
        m.calibrated_ttft_ms = -1;
        KVR_CHECK_OK(kvr_db_measured_run_put(db, &m, &e), &e);
    }
    kvr_db_calibration *c = NULL;
    int64_t n = 0, small = 0;
    KVR_CHECK_OK(kvr_calib_from_store(db, 4, &c, &n, &small, &e), &e);
    KVR_CHECK_EQ_INT(n, 1);
    KVR_CHECK_EQ_INT(small, 1); /* the 3 kvr-s runs */
    if (n == 1) {
        KVR_CHECK(!strcmp(c[0].strategy, "kvr-e") && c[0].n_runs == 5 && c[0].n_ranks == 2);
        KVR_CHECK_NEAR(c[0].a, 1.5, 0.01, 0);
        KVR_CHECK_EQ_INT(c[0].n_repeat_sets, 2); /* runs 0,3 and 1,4 repeat */
        KVR_CHECK_OK(kvr_db_calibration_put(db, &c[0], &e), &e);
        KVR_CHECK(c[0].id > 0);
        kvr_db_calibration key, got;
        memset(&key, 0, sizeof key);
        snprintf(key.strategy, sizeof key.strategy, "kvr-e");
        snprintf(key.transport, sizeof key.transport, "threads");
        key.n_ranks = 2, key.n_threads = 1;
        KVR_CHECK_OK(kvr_db_calibration_latest(db, &key, &got, &e), &e);
        KVR_CHECK(got.id == c[0].id && got.a == c[0].a && got.band == c[0].band);
        key.n_threads = 2;
        KVR_CHECK(kvr_db_calibration_latest(db, &key, &got, &e) == KVR_ERR_NOT_FOUND);
        KVR_CHECK(strstr(e.msg, "kvr-e on 2 rank(s) x 2 thread(s)") != NULL);
    }
    kvr_db_free(c);
    c = NULL;
    KVR_CHECK_OK(kvr_db_calibrations_list(db, &c, &n, &e), &e);
    KVR_CHECK_EQ_INT(n, 1);
    kvr_db_free(c);
    KVR_CHECK(kvr_calib_from_store(db, 2, &c, &n, NULL, &e) == KVR_ERR_INVALID_ARG);
    kvr_db_close(db);
}

/* The decode step: NNLS recovers known coefficients from exact and noisy samples over a B x T
 * grid, reports held-out error, and refuses too few samples, one batch size, bad values. */
static void test_fit_decode(void) {
    kvr_predict_decode_sample s[32];
    int n = 0;
    const double K = 60000, S = 4700, T = 7.9;
    for (int b = 1; b <= 16; b *= 2)
        for (int k = 0; k < 3; k++) {
            const int64_t ctx = (int64_t)b * (16 << (2 * k));
            s[n++] = (kvr_predict_decode_sample){b, ctx, K + S * b + T * (double)ctx};
        }
    kvr_predict_decode_fit f;
    kvr_error e;
    KVR_CHECK_OK(kvr_predict_fit_decode(s, n, NULL, &f, &e), &e);
    KVR_CHECK_NEAR(f.step.k_us, K, 1e-6, 1e-7);
    KVR_CHECK_NEAR(f.step.per_seq_us, S, 1e-6, 1e-7);
    KVR_CHECK_NEAR(f.step.per_ctx_token_us, T, 1e-9, 1e-7);
    KVR_CHECK(f.cv.k >= 2 && f.cv.mape_out < 1e-9);
    /* +-2 % multiplicative noise (deterministic): the coefficients within a few percent */
    for (int i = 0; i < n; i++) s[i].time_us *= 1 + 0.02 * ((i * 7919) % 5 - 2) / 2.0;
    KVR_CHECK_OK(kvr_predict_fit_decode(s, n, NULL, &f, &e), &e);
    KVR_CHECK_NEAR(f.step.k_us, K, 0, 0.05);
    KVR_CHECK_NEAR(f.step.per_seq_us, S, 0, 0.15);
    KVR_CHECK_NEAR(f.step.per_ctx_token_us, T, 0, 0.15);
    KVR_CHECK(f.cv.mape_out > 0 && f.cv.mape_out < 0.05);
    /* a negative true term is held at 0, not fitted negative */
    for (int i = 0; i < n; i++) s[i].time_us = 1000 + 50 * (double)s[i].ctx - 20 * (double)s[i].batch;
    KVR_CHECK_OK(kvr_predict_fit_decode(s, n, NULL, &f, &e), &e);
    KVR_CHECK(f.step.k_us >= 0 && f.step.per_seq_us >= 0 && f.step.per_ctx_token_us > 0);
    /* too few samples, one batch size, bad values: clear messages */
    KVR_CHECK(kvr_predict_fit_decode(s, 3, NULL, &f, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "3 samples, need at least 4") != NULL);
    kvr_predict_decode_sample one[4] = {{2, 40, 10}, {2, 80, 12}, {2, 160, 15}, {2, 320, 20}};
    KVR_CHECK(kvr_predict_fit_decode(one, 4, NULL, &f, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "two batch sizes") != NULL);
    one[1].batch = 1;
    one[3].time_us = -1;
    KVR_CHECK(kvr_predict_fit_decode(one, 4, NULL, &f, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "sample 3") != NULL);
}

static const kvr_test_case cases[] = {
    {"nist_norris", test_nist_norris},
    {"nist_longley", test_nist_longley},
    {"planted_attn", test_planted_attn},
    {"fit_reduce", test_fit_reduce},
    {"planted_ols", test_planted_ols},
    {"nnls", test_nnls},
    {"robust", test_robust},
    {"cv", test_cv},
    {"bad_input", test_bad_input},
    {"fit_decode", test_fit_decode},
    {"fit_ops", test_fit_ops},
    {"costs_to_search", test_costs_to_search},
    {"json_fits", test_json_fits},
    {"search_link_hook", test_search_link_hook},
    {"kvrp_example", test_kvrp_example},
    {"kvrp_rules_and_json", test_kvrp_rules_and_json},
    {"kvrp_steffen_is_gsl", test_kvrp_steffen_is_gsl},
    {"kvrp_balanced", test_kvrp_balanced},
    {"kvrp_bad_input", test_kvrp_bad_input},
    {"kvrp_load", test_kvrp_load},
    {"calib", test_calib},
    {"calib_store", test_calib_store},
};

KVR_TEST_MAIN(cases)
