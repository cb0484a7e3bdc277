/* kvrp.c -- fitting KVR-P: per rank count p, the KVR-S boundaries as fractions f_i(C) = S_i / C
 * of the context, fitted over a KVR-S table with one of several forms (piecewise-linear or
 * monotone cubic interpolation in C or log C, least squares on a small basis in C) chosen by
 * the TTFT gap of leave-one-out predictions; densification; validation against fresh searches.
 * Predicting is predict.c (kvr_kvrp). GSL is used here only: gsl_interp_steffen provides the
 * knot slopes of the monotone interpolant (Steffen, A&A 239, 443 (1990)), which predict() then
 * evaluates as a cubic Hermite spline -- the same curve, without GSL's mutable accelerator in
 * the hot path. */
#include "predictor_internal.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_interp.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

kvr_status kvr_predictor_create(int64_t granularity, const char *label, kvr_predictor **out,
                                kvr_error *err) {
    return predict_kvrp_create(granularity, label, out, err);
}

kvr_predictor_options kvr_predictor_options_default(void) {
    kvr_predictor_options o;
    memset(&o, 0, sizeof o);
    o.densify_gap = 0.0025;
    o.search = kvr_search_params_default();
    return o;
}

/* Sum of squared fraction errors of the balanced form with C0 = c0 (0: the even split). */
static double kvrp_bal_sse(const predict_kvrp_entry *e, const double *F, double c0) {
    const int n = e->n, nbd = e->p - 1;
    double sse = 0;
    for (int j = 0; j < n; j++) {
        double k = c0 > 0 ? (double)e->contexts[j] / c0 : 0;
        for (int i = 0; i < nbd; i++) {
            double d = predict_balanced((double)(i + 1) / e->p, k) - F[(size_t)i * n + j];
            sse += d * d;
        }
    }
    return sse;
}

/* C0 of the balanced form: a scan over log C0 (three decades beyond the contexts either way, or
 * one decade around a hint, and the even split), then golden-section refinement around the
 * best point. */
static double kvrp_bal_fit(const predict_kvrp_entry *e, const double *F, double hint) {
    double lo = log((double)e->contexts[0]) - 3 * log(10.0);
    double hi = log((double)e->contexts[e->n - 1]) + 3 * log(10.0);
    int steps = 240;
    if (hint > 0) { /* a refit on nearly the same data: search a decade around the hint */
        lo = log(hint) - log(10.0);
        hi = log(hint) + log(10.0);
        steps = 20;
    }
    double best_c0 = 0, best = kvrp_bal_sse(e, F, 0), best_u = lo;
    for (int k = 0; k <= steps; k++) {
        double u = lo + (hi - lo) * k / steps, v = kvrp_bal_sse(e, F, exp(u));
        if (v < best) {
            best = v;
            best_c0 = exp(u);
            best_u = u;
        }
    }
    if (best_c0 == 0) return 0;
    double a = best_u - (hi - lo) / steps, b = best_u + (hi - lo) / steps;
    const double gr = 0.6180339887498949;
    double x1 = b - gr * (b - a), x2 = a + gr * (b - a);
    double f1 = kvrp_bal_sse(e, F, exp(x1)), f2 = kvrp_bal_sse(e, F, exp(x2));
    for (int it = 0; it < 60; it++) {
        if (f1 < f2) {
            b = x2;
            x2 = x1;
            f2 = f1;
            x1 = b - gr * (b - a);
            f1 = kvrp_bal_sse(e, F, exp(x1));
        } else {
            a = x1;
            x1 = x2;
            f1 = f2;
            x2 = a + gr * (b - a);
            f2 = kvrp_bal_sse(e, F, exp(x2));
        }
    }
    double u = f1 < f2 ? x1 : x2, v = f1 < f2 ? f1 : f2;
    return v < best ? exp(u) : best_c0;
}

/* Builds the form's data from contexts/chunks; see predictor_internal.h. */
kvr_status predict_kvrp_build(predict_kvrp_entry *e, kvr_error *err) {
    gsl_set_error_handler_off();
    const int n = e->n, p = e->p, nbd = p - 1;
    free(e->x);
    free(e->f);
    free(e->d);
    free(e->b);
    e->x = e->f = e->d = e->b = NULL;
    e->nb = predict_form_nb(e->form);
    const double c0_hint = e->c0; /* a C0 to search around (leave-one-out refits), or 0 */
    e->c0 = 0;
    e->c_ref = 0;
    if (n < predict_form_min_knots(e->form))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "predictor: form %s needs at least %d contexts, got %d",
                             kvr_predictor_form_name(e->form), predict_form_min_knots(e->form),
                             n);
    double *F = malloc((size_t)(nbd > 0 ? nbd : 1) * (size_t)n * sizeof *F);
    if (!F) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (predictor)");
    for (int j = 0; j < n; j++) {
        int64_t S = 0;
        for (int i = 0; i < nbd; i++) {
            S += e->chunks[(size_t)j * p + i];
            F[(size_t)i * n + j] = (double)S / (double)e->contexts[j];
        }
    }
    if (predict_form_has_balanced(e->form) && nbd > 0) {
        e->c0 = kvrp_bal_fit(e, F, c0_hint);
        if (e->form == KVR_PREDICTOR_FORM_BALANCED_RESID)
            for (int j = 0; j < n; j++) {
                double k = e->c0 > 0 ? (double)e->contexts[j] / e->c0 : 0;
                for (int i = 0; i < nbd; i++)
                    F[(size_t)i * n + j] -= predict_balanced((double)(i + 1) / p, k);
            }
    }
    if (predict_form_has_knots(e->form)) {
        e->x = malloc((size_t)n * sizeof *e->x);
        if (!e->x) {
            free(F);
            return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (predictor)");
        }
        for (int j = 0; j < n; j++)
            e->x[j] = predict_form_is_log(e->form) ? log((double)e->contexts[j])
                                                   : (double)e->contexts[j];
        e->f = F;
        if (predict_form_is_steffen(e->form) && nbd > 0) {
            e->d = malloc((size_t)nbd * (size_t)n * sizeof *e->d);
            gsl_interp *gi = gsl_interp_alloc(gsl_interp_steffen, (size_t)n);
            if (!e->d || !gi) {
                if (gi) gsl_interp_free(gi);
                return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (predictor)");
            }
            for (int i = 0; i < nbd; i++) {
                const double *y = F + (size_t)i * n;
                int st = gsl_interp_init(gi, e->x, y, (size_t)n);
                for (int j = 0; j < n && st == GSL_SUCCESS; j++)
                    st = gsl_interp_eval_deriv_e(gi, e->x, y, e->x[j], NULL,
                                                 &e->d[(size_t)i * n + j]);
                if (st != GSL_SUCCESS) {
                    gsl_interp_free(gi);
                    return kvr_error_set(err, KVR_ERR_NUMERIC,
                                         "predictor: Steffen interpolation of boundary %d: %s", i,
                                         gsl_strerror(st));
                }
            }
            gsl_interp_free(gi);
        }
        return KVR_OK;
    }
    if (e->nb == 0) { /* balanced: nothing but C0 */
        free(F);
        return KVR_OK;
    }
    /* regression: each boundary fraction by least squares on the basis */
    const int nb = e->nb;
    double lsum = 0;
    for (int j = 0; j < n; j++) lsum += log((double)e->contexts[j]);
    e->c_ref = exp(lsum / n);
    double *X = malloc((size_t)n * (size_t)nb * sizeof *X);
    e->b = malloc((size_t)(nbd > 0 ? nbd : 1) * (size_t)nb * sizeof *e->b);
    if (!X || !e->b) {
        free(X);
        free(F);
        return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (predictor)");
    }
    for (int j = 0; j < n; j++) {
        double phi[4];
        predict_kvrp_basis((double)e->contexts[j], e->c_ref, phi);
        for (int q = 0; q < nb; q++) X[(size_t)j * nb + q] = phi[q];
    }
    kvr_predict_lsq_options lo = kvr_predict_lsq_options_default();
    char label[64];
    kvr_status s = KVR_OK;
    for (int i = 0; i < nbd && s == KVR_OK; i++) {
        snprintf(label, sizeof label, "predictor %s, boundary %d",
                 kvr_predictor_form_name(e->form), i);
        lo.label = label;
        kvr_predict_lsq r;
        s = kvr_predict_lsq_fit(X, F + (size_t)i * n, n, nb, &lo, &r, err);
        if (s == KVR_OK)
            for (int q = 0; q < nb; q++) e->b[(size_t)i * nb + q] = r.coef[q];
    }
    free(X);
    free(F);
    return s;
}

// ----------------------------------------------------------------------------
// fitting one rank count

/* The KVR-S rows of one rank count, ascending in C, with their simulated TTFT. */
typedef struct kvrp_set {
    int p, n, cap;
    int64_t *C;  /* n */
    int64_t *ch; /* n x p */
    double *ref; /* n: TTFT of the KVR-S partition */
} kvrp_set;

static void kvrp_set_free(kvrp_set *S) {
    free(S->C);
    free(S->ch);
    free(S->ref);
}

/* Insert a row keeping C ascending (C must be new). */
static kvr_status kvrp_set_add(kvrp_set *S, int64_t C, const int64_t *chunks, double ref,
                               kvr_error *err) {
    if (S->n == S->cap) {
        int cap = S->cap ? 2 * S->cap : 16;
        int64_t *nc = realloc(S->C, (size_t)cap * sizeof *nc);
        if (nc) S->C = nc;
        int64_t *nch = nc ? realloc(S->ch, (size_t)cap * (size_t)S->p * sizeof *nch) : NULL;
        if (nch) S->ch = nch;
        double *nr = nch ? realloc(S->ref, (size_t)cap * sizeof *nr) : NULL;
        if (!nr) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (predictor)");
        S->ref = nr;
        S->cap = cap;
    }
    int at = S->n;
    while (at > 0 && S->C[at - 1] > C) at--;
    const size_t p = (size_t)S->p;
    memmove(S->C + at + 1, S->C + at, (size_t)(S->n - at) * sizeof *S->C);
    memmove(S->ref + at + 1, S->ref + at, (size_t)(S->n - at) * sizeof *S->ref);
    memmove(S->ch + (size_t)(at + 1) * p, S->ch + (size_t)at * p,
            (size_t)(S->n - at) * p * sizeof *S->ch);
    S->C[at] = C;
    S->ref[at] = ref;
    memcpy(S->ch + (size_t)at * p, chunks, p * sizeof *S->ch);
    S->n++;
    return KVR_OK;
}

/* Entry over the set's rows except `skip` (-1: none); contexts/chunks copied. */
static kvr_status kvrp_entry_make(const kvrp_set *S, int skip, kvr_predictor_form form,
                                  double c0_hint, predict_kvrp_entry *e, kvr_error *err) {
    const int p = S->p, m = S->n - (skip >= 0 ? 1 : 0);
    memset(e, 0, sizeof *e);
    e->p = p;
    e->form = form;
    e->n = m;
    e->c0 = c0_hint;
    e->contexts = malloc((size_t)m * sizeof *e->contexts);
    e->chunks = malloc((size_t)m * (size_t)p * sizeof *e->chunks);
    if (!e->contexts || !e->chunks) {
        predict_kvrp_entry_free(e);
        return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (predictor)");
    }
    int k = 0;
    for (int j = 0; j < S->n; j++) {
        if (j == skip) continue;
        e->contexts[k] = S->C[j];
        memcpy(e->chunks + (size_t)k * p, S->ch + (size_t)j * p, (size_t)p * sizeof *e->chunks);
        k++;
    }
    kvr_status s = predict_kvrp_build(e, err);
    if (s != KVR_OK) predict_kvrp_entry_free(e);
    return s;
}

/* TTFT gap of the entry's prediction at C against the reference TTFT. */
static kvr_status kvrp_gap(const predict_kvrp_entry *e, const kvr_search_costs *m, int64_t C,
                           int64_t g, double ref_us, int64_t *buf, double *gap, kvr_error *err) {
    predict_kvrp_entry_predict(e, C, g, buf);
    double t;
    KVR_TRY(kvr_search_sim_kvr(m, e->p, buf, NULL, &t, err));
    *gap = t / ref_us - 1;
    return KVR_OK;
}

/* Leave-one-out over the interior contexts for every selected form; picks the form. */
static kvr_status kvrp_select(const kvrp_set *S, unsigned mask, const kvr_search_costs *m,
                              int64_t g, int64_t *buf, kvr_predictor_stats *st, int *best_out,
                              kvr_error *err) {
    const int n = S->n;
    int best = -1;
    double c0_hint = 0;
    if (mask & ((1u << KVR_PREDICTOR_FORM_BALANCED) | (1u << KVR_PREDICTOR_FORM_BALANCED_RESID))) {
        predict_kvrp_entry e; /* C0 of all rows: the starting point of every leave-one-out fit */
        kvr_error le;
        if (kvrp_entry_make(S, -1, KVR_PREDICTOR_FORM_BALANCED, 0, &e, &le) == KVR_OK) {
            c0_hint = e.c0;
            predict_kvrp_entry_free(&e);
        }
    }
    st->loo_mean_gap = st->loo_max_gap = NAN;
    for (int f = 0; f < KVR_PREDICTOR_FORM_COUNT; f++) {
        st->cand_mean_gap[f] = st->cand_max_gap[f] = NAN;
        if (!(mask & (1u << f))) continue;
        /* the ends are left in: holding them out would be extrapolation */
        if (n < 3 || n - 1 < predict_form_min_knots((kvr_predictor_form)f)) continue;
        double sum = 0, mx = -INFINITY;
        for (int j = 1; j + 1 < n; j++) {
            predict_kvrp_entry e;
            kvr_error le;
            if (kvrp_entry_make(S, j, (kvr_predictor_form)f, c0_hint, &e, &le) != KVR_OK) {
                mx = NAN; /* the form cannot be built without this context */
                break;
            }
            double gap = 0;
            kvr_status s = kvrp_gap(&e, m, S->C[j], g, S->ref[j], buf, &gap, err);
            predict_kvrp_entry_free(&e);
            if (s != KVR_OK) return s;
            sum += gap;
            if (gap > mx) mx = gap;
        }
        if (isnan(mx)) continue;
        st->cand_mean_gap[f] = sum / (n - 2);
        st->cand_max_gap[f] = mx;
        /* the lowest worst-case gap wins; within 0.005 percentage points, the lower mean */
        if (best < 0 || mx < st->cand_max_gap[best] - 5e-5 ||
            (mx <= st->cand_max_gap[best] + 5e-5 &&
             st->cand_mean_gap[f] < st->cand_mean_gap[best]))
            best = f;
    }
    if (best >= 0) {
        st->loo_mean_gap = st->cand_mean_gap[best];
        st->loo_max_gap = st->cand_max_gap[best];
    } else {
        /* nothing could be held out: the first selected form the contexts can carry */
        for (int f = 0; f < KVR_PREDICTOR_FORM_COUNT && best < 0; f++)
            if ((mask & (1u << f)) && n >= predict_form_min_knots((kvr_predictor_form)f)) best = f;
        if (best < 0)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "predictor: %d ranks: %d context%s cannot carry any selected "
                                 "form",
                                 S->p, n, n == 1 ? "" : "s");
    }
    *best_out = best;
    return KVR_OK;
}

/* A probe of densification: a context between two rows with its KVR-S partition. */
typedef struct kvrp_probe {
    int64_t C;
    double ref;
    int64_t *ch; /* p */
} kvrp_probe;

/* Fits one rank count; see kvr_predict.h. */
kvr_status kvr_predictor_add(kvr_predictor *kp, const kvr_search_costs *m, int p, int n,
                             const int64_t *contexts, const int64_t *chunks,
                             const kvr_predictor_options *opt, kvr_error *err) {
    if (!kp || !m || !contexts || !chunks)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "predictor: NULL argument");
    kvr_predictor_options o = opt ? *opt : kvr_predictor_options_default();
    const unsigned all = (1u << KVR_PREDICTOR_FORM_COUNT) - 1;
    unsigned mask = o.forms ? o.forms & all : all;
    if (p < 1 || p > 65536)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "predictor: ranks must be in 1..65536, got %d", p);
    if (n < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "predictor: %d ranks: no contexts", p);
    if (mask == 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "predictor: no known form selected");
    if (!(o.densify_gap >= 0) || o.max_contexts < 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "predictor: densify_gap and max_contexts must be >= 0");
    const int64_t g = kp->g;
    kvrp_set S = {p, 0, 0, NULL, NULL, NULL};
    kvrp_probe *pr = NULL;
    int n_pr = 0;
    int64_t *buf = malloc((size_t)p * sizeof *buf);
    predict_kvrp_entry fin;
    memset(&fin, 0, sizeof fin);
    kvr_status s = KVR_OK;
    if (!buf) {
        s = kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (predictor)");
        goto done;
    }
    for (int j = 0; j < n && s == KVR_OK; j++) {
        const int64_t C = contexts[j], *ch = chunks + (size_t)j * p;
        if (C < (int64_t)p * g) {
            s = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                              "predictor: %d ranks, context %lld < ranks x granularity (%lld)", p,
                              (long long)C, (long long)(p * g));
            break;
        }
        int64_t sum = 0;
        for (int i = 0; i < p; i++) {
            if (ch[i] < 1 || (i + 1 < p && (sum + ch[i]) % g != 0)) {
                s = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                  "predictor: %d ranks, context %lld: the partition is not on "
                                  "the granularity-%lld grid with chunks >= 1 (chunk %d = %lld)",
                                  p, (long long)C, (long long)g, i, (long long)ch[i]);
                break;
            }
            sum += ch[i];
        }
        if (s == KVR_OK && sum != C)
            s = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                              "predictor: %d ranks, context %lld: the partition sums to %lld", p,
                              (long long)C, (long long)sum);
        for (int k = 0; k < S.n && s == KVR_OK; k++)
            if (S.C[k] == C)
                s = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                  "predictor: %d ranks: context %lld twice", p, (long long)C);
        double ref = 0;
        if (s == KVR_OK) s = kvr_search_sim_kvr(m, p, ch, NULL, &ref, err);
        if (s == KVR_OK) s = kvrp_set_add(&S, C, ch, ref, err);
    }
    if (s != KVR_OK) goto done;
    const int n_table = S.n;
    const int max_ctx = o.max_contexts > 0 ? o.max_contexts : 4 * n_table + 16;
    kvr_search_params sp = o.search;
    if (sp.granularity == 0) sp = kvr_search_params_default();
    sp.granularity = g;

    kvr_predictor_stats st;
    memset(&st, 0, sizeof st);
    int best = -1;
    for (int round = 0;; round++) {
        s = kvrp_select(&S, mask, m, g, buf, &st, &best, err);
        if (s != KVR_OK) goto done;
        predict_kvrp_entry_free(&fin);
        s = kvrp_entry_make(&S, -1, (kvr_predictor_form)best, 0, &fin, err);
        if (s != KVR_OK) goto done;
        if (!(o.densify_gap > 0) || round >= 8 || S.n >= max_ctx || S.n < 2) break;
        /* probe the (geometric) middle of every interval wide enough; keep those where the
         * current fit misses KVR-S by more than the target */
        int64_t *add = malloc((size_t)S.n * sizeof *add);
        int n_add = 0;
        if (!add) {
            s = kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (predictor)");
            goto done;
        }
        for (int j = 0; j + 1 < S.n && s == KVR_OK; j++) {
            int64_t a = S.C[j], b = S.C[j + 1];
            if (b - a < 4 * g || (double)b < 1.02 * (double)a) continue;
            int64_t mid = (int64_t)llround(sqrt((double)a * (double)b));
            if (mid <= a || mid >= b) continue;
            int k = 0;
            while (k < n_pr && pr[k].C != mid) k++;
            if (k == n_pr) {
                kvrp_probe *np = realloc(pr, (size_t)(n_pr + 1) * sizeof *np);
                int64_t *pch = malloc((size_t)p * sizeof *pch);
                if (!np || !pch) {
                    if (np) pr = np;
                    free(pch);
                    s = kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (predictor)");
                    break;
                }
                pr = np;
                kvr_search_stats ss;
                s = kvr_search_partition(m, p, mid, &sp, pch, &ss, err);
                if (s != KVR_OK) {
                    free(pch);
                    break;
                }
                pr[n_pr].C = mid;
                pr[n_pr].ref = ss.ttft_us;
                pr[n_pr].ch = pch;
                n_pr++;
            }
            double gap = 0;
            s = kvrp_gap(&fin, m, mid, g, pr[k].ref, buf, &gap, err);
            if (s == KVR_OK && gap > o.densify_gap) add[n_add++] = k;
        }
        for (int a = 0; a < n_add && s == KVR_OK && S.n < max_ctx; a++)
            s = kvrp_set_add(&S, pr[add[a]].C, pr[add[a]].ch, pr[add[a]].ref, err);
        free(add);
        if (s != KVR_OK) goto done;
        if (n_add == 0) break;
    }
    st.n_ranks = p;
    st.n_contexts = S.n;
    st.n_added = S.n - n_table;
    st.context_min = S.C[0];
    st.context_max = S.C[S.n - 1];
    st.form = (kvr_predictor_form)best;
    st.fit_max_gap = -INFINITY;
    for (int j = 0; j < S.n && s == KVR_OK; j++) {
        double gap = 0;
        s = kvrp_gap(&fin, m, S.C[j], g, S.ref[j], buf, &gap, err);
        if (s == KVR_OK && gap > st.fit_max_gap) st.fit_max_gap = gap;
    }
    if (s != KVR_OK) goto done;
    fin.st = st;
    if (kp->n_e == 0) {
        /* provenance of the first rank count fitted */
        char *src = kvr_strdup(kvr_search_costs_source(m));
        char *mod = kvr_strdup(kvr_search_costs_model_name(m));
        if (!src || !mod) {
            free(src);
            free(mod);
            s = kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (predictor)");
            goto done;
        }
        free(kp->costs_source);
        free(kp->model);
        kp->costs_source = src;
        kp->model = mod;
        kp->n_layers = kvr_search_costs_n_layers(m);
    }
    if (o.label && !kp->label[0]) {
        char *l = kvr_strdup(o.label);
        if (l) {
            free(kp->label);
            kp->label = l;
        }
    }
    s = predict_kvrp_insert(kp, &fin, err);
    if (s == KVR_OK) memset(&fin, 0, sizeof fin); /* owned by kp now */
done:
    predict_kvrp_entry_free(&fin);
    kvrp_set_free(&S);
    for (int k = 0; k < n_pr; k++) free(pr[k].ch);
    free(pr);
    free(buf);
    return s;
}

/* Fits every rank count of a table; see kvr_predict.h. */
kvr_status kvr_predictor_fit(const kvr_search_costs *m, const kvr_search_table *t,
                             int64_t granularity, const kvr_predictor_options *opt,
                             kvr_predictor **out, kvr_error *err) {
    if (!m || !t || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "predictor: NULL argument");
    kvr_predictor *kp;
    KVR_TRY(kvr_predictor_create(granularity, opt ? opt->label : NULL, &kp, err));
    int nr = kvr_search_table_n_rows(t);
    int64_t *ctx = malloc((size_t)(nr > 0 ? nr : 1) * sizeof *ctx);
    int64_t *ch = NULL;
    bool *done = calloc((size_t)(nr > 0 ? nr : 1), sizeof *done);
    kvr_status s = KVR_OK;
    if (!ctx || !done) s = kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (predictor)");
    if (s == KVR_OK && nr == 0)
        s = kvr_error_set(err, KVR_ERR_INVALID_ARG, "predictor: the table has no rows");
    for (int a = 0; a < nr && s == KVR_OK; a++) {
        if (done[a]) continue;
        const int p = kvr_search_table_row(t, a)->n_ranks;
        int n = 0;
        int64_t *nch = realloc(ch, (size_t)nr * (size_t)p * sizeof *nch);
        if (!nch) {
            s = kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (predictor)");
            break;
        }
        ch = nch;
        for (int b = a; b < nr && s == KVR_OK; b++) {
            const kvr_search_row *r = kvr_search_table_row(t, b);
            if (r->n_ranks != p) continue;
            done[b] = true;
            if (!r->has[KVR_STRATEGY_KVR_S]) {
                s = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                  "predictor: table row (ranks %d, context %lld) has no KVR-S "
                                  "partition (%s)",
                                  p, (long long)r->context,
                                  r->error[KVR_STRATEGY_KVR_S] ? r->error[KVR_STRATEGY_KVR_S]
                                                               : "kvr-s not selected");
                break;
            }
            ctx[n] = r->context;
            memcpy(ch + (size_t)n * p, r->partition, (size_t)p * sizeof *ch);
            n++;
        }
        if (s == KVR_OK) s = kvr_predictor_add(kp, m, p, n, ctx, ch, opt, err);
    }
    free(ctx);
    free(ch);
    free(done);
    if (s != KVR_OK) {
        kvr_predictor_destroy(kp);
        return s;
    }
    *out = kp;
    return KVR_OK;
}

/* Validates against fresh KVR-S searches; see kvr_predict.h. */
kvr_status kvr_predictor_validate(const kvr_predictor *kp, const kvr_search_costs *m, int p,
                                  const int64_t *contexts, int n, const kvr_search_params *sp,
                                  int refine_moves, double *gaps_out,
                                  kvr_predictor_validation *out, kvr_error *err) {
    if (!kp || !m || !contexts || !out || n < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "validate: bad arguments");
    kvr_search_params par = sp ? *sp : kvr_search_params_default();
    if (!sp) par.granularity = kp->g;
    int64_t *a = malloc((size_t)p * sizeof *a), *b = malloc((size_t)p * sizeof *b);
    if (!a || !b) {
        free(a);
        free(b);
        return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (validate)");
    }
    kvr_predictor_validation v = {n, 0, -INFINITY, 0};
    kvr_status s = KVR_OK;
    for (int j = 0; j < n && s == KVR_OK; j++) {
        kvr_search_stats st;
        double tp;
        s = kvr_search_partition(m, p, contexts[j], &par, a, &st, err);
        if (s == KVR_OK)
            s = refine_moves < 0
                    ? kvr_predictor_predict(kp, p, contexts[j], b, err)
                    : kvr_predictor_predict_refined(kp, m, p, contexts[j], refine_moves, b, NULL,
                                                    err);
        if (s == KVR_OK) s = kvr_search_sim_kvr(m, p, b, NULL, &tp, err);
        if (s != KVR_OK) break;
        double gap = tp / st.ttft_us - 1;
        if (gaps_out) gaps_out[j] = gap;
        v.mean_gap += gap / n;
        if (gap > v.max_gap) {
            v.max_gap = gap;
            v.worst_context = contexts[j];
        }
    }
    free(a);
    free(b);
    if (s != KVR_OK) return s;
    *out = v;
    return KVR_OK;
}
