/* predict.c -- KVR-P at predict time: the forms, the predictor object and its accessors, and
 * predict() -- p-1 boundary fractions at C (one binary search over the knots shared by all
 * boundaries, then a Hermite cubic or a dot product each) rounded to the granularity grid under
 * the KVR-S rules: no allocation, no GSL, O(p + log n). predict_refined() polishes the result
 * with the search module's kvr_search_polish. Fitting is kvrp.c (kvr_predict). */
#include "kvrp_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const kvrp_form_names[] = {
    "linear-c", "linear-logc", "steffen-c", "steffen-logc", "reg2", "reg3", "reg4", "balanced",
    "balanced-resid"};
_Static_assert(sizeof kvrp_form_names / sizeof kvrp_form_names[0] == KVR_PREDICTOR_FORM_COUNT,
               "predictor form names");

const char *kvr_predictor_form_name(kvr_predictor_form f) {
    return (unsigned)f < KVR_PREDICTOR_FORM_COUNT ? kvrp_form_names[f] : "?";
}

kvr_status kvr_predictor_form_parse(const char *name, kvr_predictor_form *out, kvr_error *err) {
    int i = kvr_name_index(kvrp_form_names, KVR_PREDICTOR_FORM_COUNT, name);
    if (i >= 0) {
        *out = (kvr_predictor_form)i;
        return KVR_OK;
    }
    return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                         "unknown predictor form \"%s\" (expected linear-c, linear-logc, "
                         "steffen-c, steffen-logc, reg2, reg3, reg4, balanced or "
                         "balanced-resid)",
                         name ? name : "(null)");
}

bool predict_form_has_knots(kvr_predictor_form f) {
    return f == KVR_PREDICTOR_FORM_LINEAR_C || f == KVR_PREDICTOR_FORM_LINEAR_LOGC ||
           f == KVR_PREDICTOR_FORM_STEFFEN_C || f == KVR_PREDICTOR_FORM_STEFFEN_LOGC ||
           f == KVR_PREDICTOR_FORM_BALANCED_RESID;
}
bool predict_form_is_log(kvr_predictor_form f) {
    return f == KVR_PREDICTOR_FORM_LINEAR_LOGC || f == KVR_PREDICTOR_FORM_STEFFEN_LOGC ||
           f == KVR_PREDICTOR_FORM_BALANCED_RESID;
}
bool predict_form_is_steffen(kvr_predictor_form f) {
    return f == KVR_PREDICTOR_FORM_STEFFEN_C || f == KVR_PREDICTOR_FORM_STEFFEN_LOGC;
}
bool predict_form_has_balanced(kvr_predictor_form f) {
    return f == KVR_PREDICTOR_FORM_BALANCED || f == KVR_PREDICTOR_FORM_BALANCED_RESID;
}
int predict_form_nb(kvr_predictor_form f) {
    switch (f) {
    case KVR_PREDICTOR_FORM_REG2: return 2;
    case KVR_PREDICTOR_FORM_REG3: return 3;
    case KVR_PREDICTOR_FORM_REG4: return 4;
    default: return 0;
    }
}
int predict_form_min_knots(kvr_predictor_form f) {
    if (predict_form_is_steffen(f)) return 3;
    int nb = predict_form_nb(f);
    return nb > 0 ? nb : 1;
}

/* x + k x^2 = q (1 + k) solved for x in [0, 1], in the rationalised form that stays accurate as
 * k -> 0 (x -> q) and k -> inf (x -> sqrt q). */
double predict_balanced(double q, double k) {
    return 2 * q * (1 + k) / (1 + sqrt(1 + 4 * k * (1 + k) * q));
}

// ----------------------------------------------------------------------------
// entries

void predict_kvrp_entry_free(predict_kvrp_entry *e) {
    if (!e) return;
    free(e->contexts);
    free(e->chunks);
    free(e->x);
    free(e->f);
    free(e->d);
    free(e->b);
    e->contexts = e->chunks = NULL;
    e->x = e->f = e->d = e->b = NULL;
}

// ----------------------------------------------------------------------------
// prediction (the hot path)

#define KVRP_STACK_RANKS 128 /* largest p rounded chunk-wise (scratch on the stack) */

void predict_kvrp_entry_predict(const predict_kvrp_entry *e, int64_t C, int64_t g,
                                int64_t *chunks) {
    const int p = e->p, n = e->n;
    const int64_t n_units = C / g;
    const double Cd = (double)C, units_per_frac = Cd / (double)g;
    /* locate C once: segment j with x_j <= x < x_{j+1}, t in [0, 1) */
    int j = 0, mode = 0; /* 0: inside, -1: left of the knots, +1: right (or a single knot) */
    double t = 0, h = 0;
    double phi[4] = {0, 0, 0, 0};
    if (e->x) {
        double x = predict_form_is_log(e->form) ? log(Cd) : Cd;
        if (n == 1 || x <= e->x[0]) {
            mode = -1;
        } else if (x >= e->x[n - 1]) {
            mode = 1;
        } else {
            int lo = 0, hi = n - 1; /* x[lo] <= x < x[hi] */
            while (hi - lo > 1) {
                int mid = (lo + hi) / 2;
                if (e->x[mid] <= x)
                    lo = mid;
                else
                    hi = mid;
            }
            j = lo;
            h = e->x[j + 1] - e->x[j];
            t = (x - e->x[j]) / h;
        }
    } else if (e->b) {
        predict_kvrp_basis(Cd, e->c_ref, phi);
    }
    /* balanced term: k = C / C0 (k = 0 is the even split); -1 = no balanced term */
    const double bal_k = predict_form_has_balanced(e->form) ? (e->c0 > 0 ? Cd / e->c0 : 0) : -1;
    /* Hermite basis (Steffen forms) */
    const double t2 = t * t, t3 = t2 * t;
    const double h00 = 2 * t3 - 3 * t2 + 1, h10 = t3 - 2 * t2 + t, h01 = -2 * t3 + 3 * t2,
                 h11 = t3 - t2;
    /* boundary fractions -> chunk sizes in units of g, then kvr_partition_round (largest
     * remainders; the remainder C mod g stays on the last chunk) */
    double tgt_buf[KVRP_STACK_RANKS];
    double *tgt = p <= KVRP_STACK_RANKS ? tgt_buf : NULL;
    double fprev = 0;
    int64_t prev = 0;
    for (int i = 0; i < p; i++) {
        double f = 1;
        if (i + 1 < p) {
            f = bal_k >= 0 ? predict_balanced((double)(i + 1) / p, bal_k) : 0;
            if (e->x) {
                const double *F = e->f + (size_t)i * n;
                if (mode < 0)
                    f += F[0];
                else if (mode > 0)
                    f += F[n - 1];
                else if (e->d) {
                    const double *D = e->d + (size_t)i * n;
                    f += h00 * F[j] + h10 * h * D[j] + h01 * F[j + 1] + h11 * h * D[j + 1];
                } else
                    f += F[j] + t * (F[j + 1] - F[j]);
            } else if (e->b) {
                const double *B = e->b + (size_t)i * e->nb;
                for (int q = 0; q < e->nb; q++) f += B[q] * phi[q];
            }
            if (!isfinite(f)) f = (double)(i + 1) / p; /* cannot happen with checked data */
        }
        if (tgt) {
            tgt[i] = (f - fprev) * units_per_frac;
            fprev = f;
            continue;
        }
        /* many ranks: round the boundaries (no scratch space for the chunk remainders) */
        if (i + 1 == p) break;
        chunks[i] = prev = kvr_partition_round_bound(f * units_per_frac, i, p, prev, n_units);
    }
    if (!tgt) {
        /* boundaries (units) -> chunks (tokens); the remainder stays on the last chunk */
        chunks[p - 1] = C - prev * g;
        for (int i = p - 2; i >= 1; i--) chunks[i] = (chunks[i] - chunks[i - 1]) * g;
        if (p > 1) chunks[0] *= g;
        return;
    }
    /* C >= p x g was checked by the caller */
    kvr_partition_round(tgt, p, C, g, chunks, NULL);
}

static const predict_kvrp_entry *kvrp_find(const kvr_predictor *kp, int p) {
    int lo = 0, hi = kp->n_e - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (kp->e[mid].p == p) return &kp->e[mid];
        if (kp->e[mid].p < p)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

/* Predicts a partition; see kvr_kvrp.h. */
kvr_status kvr_predictor_predict(const kvr_predictor *kp, int p, int64_t C, int64_t *chunks_out,
                                 kvr_error *err) {
    if (!kp || !chunks_out)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "predict: NULL argument");
    const predict_kvrp_entry *e = kvrp_find(kp, p);
    if (!e)
        return kvr_error_set(err, KVR_ERR_NOT_FOUND,
                             "predict: no partition predictor for %d ranks (fitted: %d rank "
                             "count%s)",
                             p, kp->n_e, kp->n_e == 1 ? "" : "s");
    if (C < (int64_t)p * kp->g)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "predict: context %lld is smaller than ranks x granularity (%d x "
                             "%lld)",
                             (long long)C, p, (long long)kp->g);
    predict_kvrp_entry_predict(e, C, kp->g, chunks_out);
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// the predictor object

kvr_status predict_kvrp_create(int64_t granularity, const char *label, kvr_predictor **out,
                               kvr_error *err) {
    if (!out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "predictor: NULL argument");
    if (granularity < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "predictor: granularity must be >= 1, got %lld",
                             (long long)granularity);
    kvr_predictor *kp = calloc(1, sizeof *kp);
    if (!kp) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (predictor)");
    kp->g = granularity;
    kp->label = kvr_strdup(label);
    kp->costs_source = kvr_strdup("");
    kp->model = kvr_strdup("");
    if (!kp->label || !kp->costs_source || !kp->model) {
        kvr_predictor_destroy(kp);
        return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (predictor)");
    }
    *out = kp;
    return KVR_OK;
}

void kvr_predictor_destroy(kvr_predictor *kp) {
    if (!kp) return;
    for (int i = 0; i < kp->n_e; i++) predict_kvrp_entry_free(&kp->e[i]);
    free(kp->e);
    free(kp->label);
    free(kp->costs_source);
    free(kp->model);
    kvr_strategy_table_destroy(kp->plan);
    free(kp);
}

kvr_status predict_kvrp_insert(kvr_predictor *kp, predict_kvrp_entry *e, kvr_error *err) {
    int at = 0;
    while (at < kp->n_e && kp->e[at].p < e->p) at++;
    if (at < kp->n_e && kp->e[at].p == e->p) {
        predict_kvrp_entry_free(&kp->e[at]);
        kp->e[at] = *e;
        return KVR_OK;
    }
    predict_kvrp_entry *ne = realloc(kp->e, (size_t)(kp->n_e + 1) * sizeof *ne);
    if (!ne) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (predictor)");
    kp->e = ne;
    memmove(&kp->e[at + 1], &kp->e[at], (size_t)(kp->n_e - at) * sizeof *ne);
    kp->e[at] = *e;
    kp->n_e++;
    return KVR_OK;
}

/* Predicts and polishes; see kvr_kvrp.h. */
kvr_status kvr_predictor_predict_refined(const kvr_predictor *kp, const kvr_search_costs *m,
                                         int p, int64_t C, int max_moves, int64_t *chunks_out,
                                         double *ttft_us, kvr_error *err) {
    if (!m) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "predict: NULL cost model");
    if (max_moves < 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "predict: max_moves must be >= 0");
    KVR_TRY(kvr_predictor_predict(kp, p, C, chunks_out, err));
    return kvr_search_polish(m, p, C, kp->g, max_moves, chunks_out, ttft_us, err);
}

int64_t kvr_predictor_granularity(const kvr_predictor *kp) {
    return kp ? kp->g : 0;
}
const char *kvr_predictor_label(const kvr_predictor *kp) {
    return kp ? kp->label : "";
}
int kvr_predictor_n_ranks(const kvr_predictor *kp) {
    return kp ? kp->n_e : 0;
}
int kvr_predictor_ranks(const kvr_predictor *kp, int i) {
    return kp && i >= 0 && i < kp->n_e ? kp->e[i].p : 0;
}
kvr_status kvr_predictor_stats_get(const kvr_predictor *kp, int p, kvr_predictor_stats *out,
                                   kvr_error *err) {
    if (!kp || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "predictor: NULL argument");
    const predict_kvrp_entry *e = kvrp_find(kp, p);
    if (!e)
        return kvr_error_set(err, KVR_ERR_NOT_FOUND, "predictor: no entry for %d ranks", p);
    *out = e->st;
    return KVR_OK;
}
