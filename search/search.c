/* search.c -- KVR-S: the partition optimiser over the KVR chain.
 *
 * Partitions live in units of g tokens (boundaries on the g grid; C mod g rides on the last
 * chunk). Starting points: even (KVR-E), attention-balanced (c_i * S_i equal), min-max per-layer
 * stage time by bisection on the target (compute and outgoing link), and the same min-max with
 * the first p-q ranks "collapsed" to one unit (q = 1, 2, 4, .., p-1: fewer effective ranks, which
 * wins on slow links) or with a one-unit last chunk (wins when layers are few). All are evaluated;
 * the three public ones and the best of the others are refined by a variable-neighbourhood
 * descent, best start first:
 *   1. pair moves: s units from rank i to rank j, every ordered pair (adjacent first), repeated
 *      while the move improves, for steps s = 2^k ~ n/(4p) down to 1;
 *   2. when no pair move improves: joint shifts of two chunk boundaries by (d1*s, d2*s),
 *      |d| <= 3 (nearby boundary pairs only when p > 32), which walk along ridges where two
 *      critical paths tie and every single pair move lengthens one of them; and spread moves
 *      (one rank gives or takes s units to or from each rank of a group: all, before, after);
 *   3. at s = 1 the same plus exact line searches along every pair direction (adjacent pairs and
 *      pairs with the last rank when p > 8) and every spread direction, and for 4 <= p <= 8
 *      joint shifts of three boundaries (+-4 units each for p = 4, +-2 up to p = 8).
 * A move is accepted only if the TTFT drops (relative 1e-12), so the result is never worse than
 * any starting point, and the final partition is a local optimum of every neighbourhood above.
 *
 * The evaluation is exact and O(p), not O(p*L): the DESIGN.md section 4 recurrence is a max-plus
 * system whose longest paths are staircases over (rank, layer) -- a flow shop with L identical
 * jobs (layers) and stages rank 0, link 0, rank 1, ..., so a longest path enters the chain at
 * some rank j, crosses every link after it once and spends its L-1 extra layers on the slowest
 * stage it visits:
 *   TTFT = embed + head + w_{p-1}
 *        + max_j [ pre_j + sum_{k=j}^{p-2} x_k + (L-1) * max(tau_j..tau_{p-1}, x_j..x_{p-2}) ]
 * with tau_i = pre_i + attn_i + post_i, w_i = attn_i + post_i and x_k the link k -> k+1 time
 * for bytes(S_k). sim.c keeps the literal recurrence (it also draws the timeline); the tests check
 * the two agree. A candidate move that changes ranks a..b only re-prices those ranks and
 * re-scans j <= b from suffix values kept for the current partition. */
#include "search_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct srch {
    const kvr_search_costs *m;
    int p, L;
    int64_t n, g, r; /* units, granularity (tokens), remainder tokens on the last chunk */
    double embed_us, head_us, kvb;
    kvr_search_link *lk; /* lk[i]: link i -> i+1 */
    /* current partition and its per-rank terms */
    int64_t *u;
    double *pre, *tau, *x, *w; /* x[p-1] = 0 */
    double *sX, *sM, *sB;      /* suffix: X_j, M_j, max_{j' >= j} term_j' */
    double ttft;
    /* candidate: new units and terms for ranks a..b */
    int64_t *cu;
    double *cpre, *ctau, *cx, *cw;
    int64_t n_evals, n_moves, max_evals;
    void *block; /* the per-rank arrays above, when malloc'd (NULL: the caller's buffer) */
} srch;

/* Bytes of srch's per-rank arrays for one rank: 11 doubles, 2 int64_t and a link. */
#define SRCH_RANK_BYTES (11 * sizeof(double) + 2 * sizeof(int64_t) + sizeof(kvr_search_link))

static void srch_free(srch *S) {
    free(S->block);
    S->block = NULL;
}

/* buf: p * SRCH_RANK_BYTES bytes aligned for doubles, or NULL to allocate them. */
static kvr_status srch_init(srch *S, const kvr_search_costs *m, int p, int64_t C, int64_t g,
                            int64_t max_evals, void *buf, kvr_error *err) {
    memset(S, 0, sizeof *S);
    S->m = m;
    S->p = p;
    S->L = m->n_layers;
    S->g = g;
    S->n = C / g;
    S->r = C - S->n * g;
    S->embed_us = m->ovh[KVR_MODE_KVR].run_us + m->embed_us; /* every rank starts after it */
    S->head_us = m->head_us;
    S->kvb = m->kv_bytes_per_token;
    S->max_evals = max_evals;
    size_t np = (size_t)p;
    if (!buf) buf = S->block = malloc(np * SRCH_RANK_BYTES);
    if (!buf) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (search, %d ranks)", p);
    /* one block: the doubles, then the int64_t, then the links (all 8-byte aligned) */
    double **d[] = {&S->pre, &S->tau, &S->x, &S->w, &S->sX, &S->sM, &S->sB,
                    &S->cpre, &S->ctau, &S->cx, &S->cw};
    double *dp = buf;
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++, dp += np) *d[i] = dp;
    S->u = (int64_t *)dp;
    S->cu = S->u + np;
    S->lk = (kvr_search_link *)(S->cu + np);
    for (int i = 0; i + 1 < p; i++)
        if (!search_costs_link_find(m, i, i + 1, &S->lk[i])) {
            srch_free(S);
            return kvr_error_set(err, KVR_ERR_NOT_FOUND,
                                 "KVR chain with %d ranks needs link %d->%d, which the cost model "
                                 "lacks (links cover %d devices)",
                                 p, i, i + 1, m->n_devices);
        }
    return KVR_OK;
}

/* Terms of rank i holding u units after a prefix of pu units. */
static inline void srch_price(const srch *S, int i, int64_t u, int64_t pu, double *pre,
                              double *tau, double *x, double *w) {
    const kvr_search_costs *m = S->m;
    int64_t c = u * S->g + (i == S->p - 1 ? S->r : 0), P = pu * S->g;
    double pr = m->ops.pre_us(m->ctx, c);
    double ww = m->ops.attn_us(m->ctx, c, P) + m->ops.post_us(m->ctx, c) +
                m->ovh[KVR_MODE_KVR].layer_us; /* as search_chain_costs_fill */
    *pre = pr;
    *w = ww;
    *tau = pr + ww;
    *x = i + 1 < S->p ? search_link_time_us(S->m, &S->lk[i], S->kvb * (double)(P + c)) : 0;
}

static inline double srch_max3(double a, double b, double c) {
    double m = a > b ? a : b;
    return m > c ? m : c;
}

/* Suffix values for ranks j0 down to 0 (entries above j0 must be current). */
static void srch_suffix(srch *S, int j0) {
    const int p = S->p;
    const double L1 = (double)(S->L - 1);
    if (j0 >= p - 1) {
        S->sX[p - 1] = 0;
        S->sM[p - 1] = S->tau[p - 1];
        S->sB[p - 1] = S->pre[p - 1] + L1 * S->tau[p - 1];
        j0 = p - 2;
    }
    for (int j = j0; j >= 0; j--) {
        double X = S->sX[j + 1] + S->x[j];
        double M = srch_max3(S->sM[j + 1], S->tau[j], S->x[j]);
        double v = S->pre[j] + X + L1 * M;
        S->sX[j] = X;
        S->sM[j] = M;
        S->sB[j] = v > S->sB[j + 1] ? v : S->sB[j + 1];
    }
    S->ttft = S->embed_us + S->head_us + S->w[p - 1] + S->sB[0];
}

/* Full evaluation of S->u. */
static void srch_full(srch *S) {
    int64_t pu = 0;
    for (int i = 0; i < S->p; i++) {
        srch_price(S, i, S->u[i], pu, &S->pre[i], &S->tau[i], &S->x[i], &S->w[i]);
        pu += S->u[i];
    }
    srch_suffix(S, S->p - 1);
    S->n_evals++;
}

/* TTFT of the candidate cu[a..b] (the rest as now). */
static double srch_try_range(srch *S, int a, int b) {
    const int p = S->p;
    const double L1 = (double)(S->L - 1);
    int64_t pu = 0;
    for (int i = 0; i < a; i++) pu += S->u[i];
    for (int i = a; i <= b; i++) {
        srch_price(S, i, S->cu[i], pu, &S->cpre[i], &S->ctau[i], &S->cx[i], &S->cw[i]);
        pu += S->cu[i];
    }
    double X, M, B;
    int j = b;
    if (b == p - 1) {
        X = 0;
        M = S->ctau[p - 1];
        B = S->cpre[p - 1] + L1 * M;
        j = p - 2;
    } else {
        X = S->sX[b + 1];
        M = S->sM[b + 1];
        B = S->sB[b + 1];
    }
    for (; j >= a; j--) {
        X += S->cx[j];
        M = srch_max3(M, S->ctau[j], S->cx[j]);
        double v = S->cpre[j] + X + L1 * M;
        if (v > B) B = v;
    }
    for (; j >= 0; j--) {
        X += S->x[j];
        M = srch_max3(M, S->tau[j], S->x[j]);
        double v = S->pre[j] + X + L1 * M;
        if (v > B) B = v;
    }
    S->n_evals++;
    return S->embed_us + S->head_us + (b == p - 1 ? S->cw[p - 1] : S->w[p - 1]) + B;
}

static void srch_accept_range(srch *S, int a, int b) {
    for (int i = a; i <= b; i++) {
        S->u[i] = S->cu[i];
        S->pre[i] = S->cpre[i];
        S->tau[i] = S->ctau[i];
        S->x[i] = S->cx[i];
        S->w[i] = S->cw[i];
    }
    srch_suffix(S, b);
    S->n_moves++;
}

static bool srch_budget_left(const srch *S) {
    return S->max_evals <= 0 || S->n_evals < S->max_evals;
}

static inline bool srch_better(const srch *S, double t) {
    return t < S->ttft - 1e-12 * fabs(S->ttft);
}

/* Try s units from -> to, repeating while it improves. Returns true if it improved. */
static bool srch_push(srch *S, int from, int to, int64_t s) {
    bool any = false;
    int a = from < to ? from : to, b = from < to ? to : from;
    while (S->u[from] - s >= 1 && srch_budget_left(S)) {
        for (int i = a; i <= b; i++) S->cu[i] = S->u[i];
        S->cu[from] -= s;
        S->cu[to] += s;
        double t = srch_try_range(S, a, b);
        if (!srch_better(S, t)) break;
        srch_accept_range(S, a, b);
        any = true;
    }
    return any;
}

static bool srch_pass_pairs(srch *S, int64_t s) {
    const int p = S->p;
    bool imp = false;
    for (int k = 0; k + 1 < p; k++) {
        imp |= srch_push(S, k, k + 1, s);
        imp |= srch_push(S, k + 1, k, s);
    }
    if (imp) return true;
    for (int d = 2; d < p; d++)
        for (int a = 0; a + d < p; a++) {
            imp |= srch_push(S, a, a + d, s);
            imp |= srch_push(S, a + d, a, s);
        }
    return imp;
}

/* Shift boundaries k[0..nk-1] (boundary k sits between ranks k and k+1) by d[]*s units. */
static bool srch_try_bounds(srch *S, const int *k, const int *d, int nk, int64_t s) {
    int a = k[0], b = k[nk - 1] + 1;
    for (int i = a; i <= b; i++) S->cu[i] = S->u[i];
    for (int q = 0; q < nk; q++) {
        S->cu[k[q]] += d[q] * s;
        S->cu[k[q] + 1] -= d[q] * s;
    }
    for (int i = a; i <= b; i++)
        if (S->cu[i] < 1) return false;
    double t = srch_try_range(S, a, b);
    if (!srch_better(S, t)) return false;
    srch_accept_range(S, a, b);
    return true;
}

#define SRCH_W2 3
#define SRCH_NEAR 8 /* boundary-pair distance limit when p > 32 */

static bool srch_pass_window2(srch *S, int64_t s) {
    const int nb = S->p - 1;
    bool imp = false;
    for (int k1 = 0; k1 < nb; k1++)
        for (int k2 = k1 + 1; k2 < nb; k2++) {
            if (S->p > 32 && k2 - k1 > SRCH_NEAR && k2 != nb - 1) continue;
            for (int d1 = -SRCH_W2; d1 <= SRCH_W2; d1++)
                for (int d2 = -SRCH_W2; d2 <= SRCH_W2; d2++) {
                    if (!d1 || !d2 || !srch_budget_left(S)) continue;
                    int k[2] = {k1, k2}, d[2] = {d1, d2};
                    imp |= srch_try_bounds(S, k, d, 2, s);
                }
        }
    return imp;
}

/* Three boundaries by up to +-W units each: (2W+1)^3 - 1 candidates per triple; W = 4 for p <= 4,
 * 2 for p <= 8 (not used beyond). */
static bool srch_pass_window3(srch *S, int64_t s) {
    const int nb = S->p - 1, SRCH_W3 = S->p <= 4 ? 4 : 2;
    bool imp = false;
    for (int k1 = 0; k1 < nb; k1++)
        for (int k2 = k1 + 1; k2 < nb; k2++)
            for (int k3 = k2 + 1; k3 < nb; k3++)
                for (int d1 = -SRCH_W3; d1 <= SRCH_W3; d1++)
                    for (int d2 = -SRCH_W3; d2 <= SRCH_W3; d2++)
                        for (int d3 = -SRCH_W3; d3 <= SRCH_W3; d3++) {
                            if (!d1 || !d2 || !d3 || !srch_budget_left(S)) continue;
                            int k[3] = {k1, k2, k3}, d[3] = {d1, d2, d3};
                            imp |= srch_try_bounds(S, k, d, 3, s);
                        }
    return imp;
}

/* Exact line search along one pair direction: the best of every transfer between ranks a < b. */
static bool srch_line(srch *S, int a, int b) {
    int64_t best_t = 0;
    double best = S->ttft;
    for (int64_t t = -(S->u[b] - 1); t <= S->u[a] - 1 && srch_budget_left(S); t++) {
        if (t == 0) continue;
        for (int i = a; i <= b; i++) S->cu[i] = S->u[i];
        S->cu[a] -= t;
        S->cu[b] += t;
        double v = srch_try_range(S, a, b);
        if (v < best) {
            best = v;
            best_t = t;
        }
    }
    if (best_t == 0 || !srch_better(S, best)) return false;
    for (int i = a; i <= b; i++) S->cu[i] = S->u[i];
    S->cu[a] -= best_t;
    S->cu[b] += best_t;
    srch_try_range(S, a, b); /* re-price the winner into the candidate arrays */
    srch_accept_range(S, a, b);
    return true;
}

static bool srch_pass_lines(srch *S) {
    const int p = S->p;
    bool imp = false;
    for (int a = 0; a + 1 < p; a++)
        for (int b = a + 1; b < p; b++) {
            /* every pair for small p; adjacent pairs and pairs with the last rank otherwise */
            if (p > 8 && b != a + 1 && b != p - 1) continue;
            imp |= srch_line(S, a, b);
        }
    return imp;
}

/* Spread moves: rank j gives d units to each rank of a group (sign > 0) or takes d from each
 * (sign < 0). Groups: every other rank, the ranks after j, the ranks before j. These are the
 * ridge directions where one chunk must shrink (often the last, or a rank that should collapse
 * to one unit when links are slow) while a whole group grows together. */
static bool srch_spread_fill(srch *S, int j, int grp, int sign, int64_t d, int *a, int *b) {
    const int p = S->p;
    int lo = grp == 1 ? j + 1 : 0, hi = grp == 2 ? j - 1 : p - 1;
    if (lo > hi) return false;
    int cnt = hi - lo + 1 - (j >= lo && j <= hi);
    if (cnt < 1) return false;
    *a = lo < j ? lo : j;
    *b = hi > j ? hi : j;
    for (int i = *a; i <= *b; i++) {
        S->cu[i] = S->u[i];
        if (i == j)
            S->cu[i] -= sign * d * cnt;
        else if (i >= lo && i <= hi)
            S->cu[i] += sign * d;
        if (S->cu[i] < 1) return false;
    }
    return true;
}

/* Fixed step d, repeated while it improves (coarse phases). */
static bool srch_pass_spread(srch *S, int64_t d) {
    const int p = S->p;
    bool imp = false;
    for (int j = 0; j < p; j++)
        for (int grp = 0; grp < 3; grp++)
            for (int sign = -1; sign <= 1; sign += 2)
                for (;;) {
                    int a, b;
                    if (!srch_budget_left(S)) return imp;
                    if (!srch_spread_fill(S, j, grp, sign, d, &a, &b)) break;
                    double t = srch_try_range(S, a, b);
                    if (!srch_better(S, t)) break;
                    srch_accept_range(S, a, b);
                    imp = true;
                }
    return imp;
}

/* Exact line search over d for every spread direction (polish). */
static bool srch_pass_spread_lines(srch *S) {
    const int p = S->p;
    bool imp = false;
    for (int j = 0; j < p; j++)
        for (int grp = 0; grp < 3; grp++)
            for (int sign = -1; sign <= 1; sign += 2) {
                int64_t best_d = 0;
                double best = S->ttft;
                int a, b;
                for (int64_t d = 1; srch_budget_left(S); d++) {
                    if (!srch_spread_fill(S, j, grp, sign, d, &a, &b)) break;
                    double t = srch_try_range(S, a, b);
                    if (t < best) {
                        best = t;
                        best_d = d;
                    }
                }
                if (best_d == 0 || !srch_better(S, best)) continue;
                srch_spread_fill(S, j, grp, sign, best_d, &a, &b);
                srch_try_range(S, a, b);
                srch_accept_range(S, a, b);
                imp = true;
            }
    return imp;
}

static void srch_refine(srch *S) {
    const int p = S->p;
    if (p < 2) return;
    int64_t s = 1, top = S->n / (4 * (int64_t)p);
    while (s * 2 <= top) s *= 2;
    for (; s > 1 && srch_budget_left(S); s /= 2) {
        for (;;) {
            bool imp = srch_pass_pairs(S, s);
            if (!imp && p >= 3) imp = srch_pass_window2(S, s);
            if (!imp && p >= 3) imp = srch_pass_spread(S, s);
            if (!imp || !srch_budget_left(S)) break;
        }
    }
    /* polish at single units until no neighbourhood improves */
    while (srch_budget_left(S)) {
        bool imp = srch_pass_pairs(S, 1);
        if (!imp && p >= 3) imp = srch_pass_window2(S, 1);
        if (!imp && p >= 3) imp = srch_pass_spread_lines(S);
        if (!imp) imp = srch_pass_lines(S);
        if (!imp && p >= 4 && p <= 8) imp = srch_pass_window3(S, 1);
        if (!imp) break;
    }
}

// ----------------------------------------------------------------------------
// starting points (units; remainder tokens are implicit on the last chunk)

static void srch_start_even(int p, int64_t n, int64_t *u) {
    /* extra units go to the first ranks: later ranks attend over longer prefixes */
    for (int i = 0; i < p; i++) u[i] = kvr_partition_even_chunk(n, p, i);
}

/* Round token boundaries bnd[0..p-2] (doubles) to units, keeping every chunk >= 1 unit. */
static void srch_round_bounds(int p, int64_t n, int64_t g, const double *bnd, int64_t *u) {
    int64_t prev = 0;
    for (int i = 0; i + 1 < p; i++) {
        int64_t b = kvr_partition_round_bound(bnd[i] / (double)g, i, p, prev, n);
        u[i] = b - prev;
        prev = b;
    }
    u[p - 1] = n - prev;
}

static void srch_start_balanced(int p, int64_t n, int64_t g, int64_t C, int64_t *u, double *bnd) {
    /* c_i * S_i = K for all i: c_i = (sqrt(P_i^2 + 4K) - P_i) / 2; bisection on K so S = C */
    double lo = 0, hi = (double)C * (double)C;
    for (int it = 0; it < 200; it++) {
        double K = 0.5 * (lo + hi), P = 0;
        for (int i = 0; i < p; i++) P += 0.5 * (sqrt(P * P + 4 * K) - P);
        if (P > (double)C)
            hi = K;
        else
            lo = K;
        if (hi - lo <= 1e-12 * hi) break;
    }
    double K = 0.5 * (lo + hi), P = 0;
    for (int i = 0; i + 1 < p; i++) {
        P += 0.5 * (sqrt(P * P + 4 * K) - P);
        bnd[i] = P;
    }
    srch_round_bounds(p, n, g, bnd, u);
}

static double srch_layer_us(const kvr_search_costs *m, int64_t c, int64_t P) {
    return m->ops.pre_us(m->ctx, c) + m->ops.attn_us(m->ctx, c, P) + m->ops.post_us(m->ctx, c);
}

/* Greedy for a per-layer target T: ranks before `first` get one unit (and, with last_one, so does
 * the last rank); every other rank up to the one before `rest` takes the most units that keep both
 * its per-layer time and its outgoing link time <= T (both grow with the chunk, so a binary
 * search finds the largest); `rest` gets what is left. Feasible iff `rest` also meets T. */
static bool srch_minmax_feasible(const srch *S, int first, bool last_one, double T, int64_t *u) {
    const int p = S->p, rest = last_one ? p - 2 : p - 1;
    const int64_t n = S->n - (last_one ? 1 : 0);
    int64_t B = first;
    for (int i = 0; i < first; i++) u[i] = 1;
    if (last_one) u[p - 1] = 1;
    for (int i = first; i < rest; i++) {
        int64_t hi = n - B - (rest - i);
#define SRCH_OK(uu)                                                                                \
    (srch_layer_us(S->m, (uu)*S->g, B * S->g) <= T &&                                              \
     search_link_time_us(S->m, &S->lk[i], S->kvb * (double)((B + (uu)) * S->g)) <= T)
        if (!SRCH_OK(1)) return false;
        int64_t lo = 1;
        while (lo < hi) {
            int64_t mid = lo + (hi - lo + 1) / 2;
            if (SRCH_OK(mid))
                lo = mid;
            else
                hi = mid - 1;
        }
#undef SRCH_OK
        u[i] = lo;
        B += lo;
    }
    u[rest] = n - B;
    return srch_layer_us(S->m, u[rest] * S->g + (rest == p - 1 ? S->r : 0), B * S->g) <= T;
}

/* Smallest feasible T by bisection; u = even if nothing is feasible (non-monotone source). */
static void srch_start_minmax(const srch *S, int first, bool last_one, int64_t *u, int64_t *tmp) {
    const int p = S->p;
    srch_start_even(p, S->n, u);
    if (p == 1 || (last_one && (p < 3 || first > p - 2)) || S->n - first < p - first) return;
    double hi = 1;
    int grow = 0;
    while (!srch_minmax_feasible(S, first, last_one, hi, tmp) && grow < 200) {
        hi *= 2;
        grow++;
    }
    if (grow >= 200) return;
    double lo = 0;
    for (int it = 0; it < 100 && hi - lo > 1e-9 * hi; it++) {
        double mid = 0.5 * (lo + hi);
        if (srch_minmax_feasible(S, first, last_one, mid, tmp))
            hi = mid;
        else
            lo = mid;
    }
    if (srch_minmax_feasible(S, first, last_one, hi, tmp))
        memcpy(u, tmp, (size_t)p * sizeof *u);
}

static void srch_units_to_tokens(const srch *S, const int64_t *u, int64_t *chunks) {
    for (int i = 0; i < S->p; i++) chunks[i] = u[i] * S->g + (i == S->p - 1 ? S->r : 0);
}

static kvr_status srch_check(const kvr_search_costs *m, int p, int64_t C, int64_t g,
                             kvr_error *err) {
    if (!m) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "search: NULL cost model");
    if (p < 1 || p > SEARCH_MAX_DEVICES)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "ranks must be in [1, %d], got %d",
                             SEARCH_MAX_DEVICES, p);
    if (g < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "granularity must be >= 1, got %lld",
                             (long long)g);
    if (C < 1 || C > KVR_SEARCH_MAX_CONTEXT)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "context must be in [1, %lld] (16M tokens, the largest the search "
                             "plans), got %lld",
                             (long long)KVR_SEARCH_MAX_CONTEXT, (long long)C);
    if (g > C / p)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "context %lld is smaller than ranks x granularity (%d x %lld = %lld): "
                             "every chunk needs at least g tokens",
                             (long long)C, p, (long long)g, (long long)(g * p));
    return KVR_OK;
}

kvr_search_params kvr_search_params_default(void) {
    kvr_search_params sp;
    memset(&sp, 0, sizeof sp);
    sp.granularity = 16;
    sp.refine = true;
    sp.multi_start = true;
    sp.max_evals = 0;
    return sp;
}

/* Computes one starting point in tokens; see kvr_search.h. */
kvr_status kvr_search_partition_start(const kvr_search_costs *m, kvr_search_start which, int p,
                                      int64_t C, int64_t g, int64_t *chunks_out, kvr_error *err) {
    KVR_TRY(srch_check(m, p, C, g, err));
    if (!chunks_out || (unsigned)which >= KVR_SEARCH_START_COUNT)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "search: bad start or NULL output");
    srch S;
    KVR_TRY(srch_init(&S, m, p, C, g, 0, NULL, err));
    int64_t *tmp = malloc((size_t)p * sizeof *tmp);
    double *bnd = malloc((size_t)p * sizeof *bnd);
    if (!tmp || !bnd) {
        free(tmp);
        free(bnd);
        srch_free(&S);
        return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (search)");
    }
    if (which == KVR_SEARCH_START_EVEN)
        srch_start_even(p, S.n, S.u);
    else if (which == KVR_SEARCH_START_BALANCED)
        srch_start_balanced(p, S.n, g, C, S.u, bnd);
    else
        srch_start_minmax(&S, 0, false, S.u, tmp);
    srch_units_to_tokens(&S, S.u, chunks_out);
    free(tmp);
    free(bnd);
    srch_free(&S);
    return KVR_OK;
}

/* Searches the KVR-S partition; see kvr_search.h for the contract. */
kvr_status kvr_search_partition(const kvr_search_costs *m, int p, int64_t C,
                                const kvr_search_params *params, int64_t *chunks_out,
                                kvr_search_stats *stats, kvr_error *err) {
    double t0 = kvr_time_us();
    kvr_search_params sp = params ? *params : kvr_search_params_default();
    KVR_TRY(srch_check(m, p, C, sp.granularity, err));
    if (!chunks_out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "search: NULL chunks_out");
    srch S;
    KVR_TRY(srch_init(&S, m, p, C, sp.granularity, sp.max_evals, NULL, err));
    /* starts: the three public ones, then "collapsed" min-max starts that leave the first p-q
     * ranks with one unit (fewer effective ranks; wins when links are slow) for q = 1, 2, 4, ..
     * below p, and q = p-1 */
    int n_starts = KVR_SEARCH_START_COUNT, qs[40], n_q = 0;
    for (int q = 1; q < p && n_q < 38; q *= 2) qs[n_q++] = q;
    if (p >= 3 && qs[n_q - 1] != p - 1) qs[n_q++] = p - 1;
    n_starts += n_q;
    size_t np = (size_t)p;
    int64_t *starts = malloc((size_t)(n_starts + 1) * np * sizeof *starts);
    int64_t *best = malloc(np * sizeof *best), *tmp = malloc(np * sizeof *tmp);
    double *bnd = malloc(np * sizeof *bnd), *st_t = malloc((size_t)(n_starts + 1) * sizeof *st_t);
    int *order = malloc((size_t)(n_starts + 1) * sizeof *order);
    kvr_status rc = KVR_OK;
    if (!starts || !best || !tmp || !bnd || !st_t || !order) {
        rc = kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (search)");
        goto done;
    }
    srch_start_even(p, S.n, starts);
    srch_start_balanced(p, S.n, S.g, C, starts + np, bnd);
    srch_start_minmax(&S, 0, false, starts + 2 * np, tmp);
    for (int k = 0; k < n_q; k++)
        srch_start_minmax(&S, p - qs[k], false,
                          starts + (size_t)(KVR_SEARCH_START_COUNT + k) * np, tmp);
    /* and min-max with a one-unit last chunk: when layers are few, the last rank's own
     * attention (paid once, after the pipeline) dominates */
    if (p >= 3) srch_start_minmax(&S, 0, true, starts + (size_t)(n_starts++) * np, tmp);

    kvr_search_stats st;
    memset(&st, 0, sizeof st);
    for (int k = 0; k < n_starts; k++) {
        memcpy(S.u, starts + (size_t)k * np, np * sizeof *S.u);
        srch_full(&S);
        st_t[k] = S.ttft;
        if (k < KVR_SEARCH_START_COUNT) st.start_ttft_us[k] = S.ttft;
        order[k] = k;
    }
    /* refine distinct starts, best first: all three public ones and the best collapsed one
     * when multi_start, else only the best */
    for (int i = 1; i < n_starts; i++)
        for (int j = i; j > 0 && st_t[order[j]] < st_t[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    double best_t = INFINITY;
    int best_k = order[0], n_refined = 0;
    bool collapsed_done = false;
    for (int oi = 0; oi < n_starts; oi++) {
        int k = order[oi];
        const int64_t *su = starts + (size_t)k * np;
        bool dup = false; /* identical starts refine identically */
        for (int oj = 0; oj < oi && !dup; oj++)
            dup = memcmp(su, starts + (size_t)order[oj] * np, np * sizeof *su) == 0;
        if (dup) continue;
        bool collapsed = k >= KVR_SEARCH_START_COUNT;
        if (n_refined > 0 && !sp.multi_start) break;
        if (n_refined > 0 && collapsed && collapsed_done) continue;
        collapsed_done |= collapsed;
        memcpy(S.u, su, np * sizeof *S.u);
        srch_full(&S);
        if (sp.refine) srch_refine(&S);
        n_refined++;
        if (S.ttft < best_t) {
            best_t = S.ttft;
            best_k = k;
            memcpy(best, S.u, np * sizeof *best);
        }
        if (!srch_budget_left(&S)) break;
    }
    if (!isfinite(best_t)) { /* no candidate had a finite TTFT: nothing to return */
        rc = kvr_error_set(err, KVR_ERR_NUMERIC,
                           "kvr-s: no partition of %lld tokens over %d ranks has a finite TTFT: "
                           "the cost model overflows or is not finite there",
                           (long long)C, p);
        goto done;
    }
    srch_units_to_tokens(&S, best, chunks_out);
    st.ttft_us = best_t;
    st.best_start = best_k < KVR_SEARCH_START_COUNT ? best_k : KVR_SEARCH_START_MINMAX;
    st.n_evals = S.n_evals;
    st.n_moves = S.n_moves;
    st.elapsed_us = kvr_time_us() - t0;
    if (stats) *stats = st;
done:
    free(starts);
    free(best);
    free(tmp);
    free(bnd);
    free(st_t);
    free(order);
    srch_free(&S);
    return rc;
}

// ----------------------------------------------------------------------------
// polishing a given partition (KVR-P's refinement)

#define SRCH_POLISH_STACK 128 /* no allocation up to this many ranks */
#define SRCH_POLISH_PAIR_MAX 16 /* transfers between non-adjacent ranks up to this many ranks */

/* Bounded steepest descent from a given partition; see kvr_search.h. */
kvr_status kvr_search_polish(const kvr_search_costs *m, int p, int64_t C, int64_t g,
                             int max_moves, int64_t *chunks, double *ttft_us, kvr_error *err) {
    KVR_TRY(srch_check(m, p, C, g, err));
    if (!chunks) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "polish: NULL chunks");
    if (max_moves < 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "polish: max_moves must be >= 0");
    const int64_t r = C % g;
    int64_t sum = 0;
    for (int i = 0; i < p; i++) {
        const int64_t c = chunks[i] - (i == p - 1 ? r : 0);
        if (c < g || c % g != 0)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "polish: chunk %d (%lld tokens) is not a positive multiple of "
                                 "the granularity %lld%s",
                                 i, (long long)chunks[i], (long long)g,
                                 i == p - 1 && r ? " plus C mod g" : "");
        sum += chunks[i];
    }
    if (sum != C)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "polish: chunks sum to %lld, not the context %lld", (long long)sum,
                             (long long)C);
    _Alignas(double) unsigned char sbuf[SRCH_POLISH_STACK * SRCH_RANK_BYTES];
    srch S;
    KVR_TRY(srch_init(&S, m, p, C, g, 0, p <= SRCH_POLISH_STACK ? sbuf : NULL, err));
    for (int i = 0; i < p; i++) S.u[i] = (chunks[i] - (i == p - 1 ? r : 0)) / g;
    srch_full(&S);
    if (!isfinite(S.ttft)) {
        srch_free(&S);
        return kvr_error_set(err, KVR_ERR_NUMERIC,
                             "polish: the TTFT of the given partition of %lld tokens is not "
                             "finite: the cost model overflows or is not finite there",
                             (long long)C);
    }
    if (max_moves == 0) max_moves = 16;
    for (int mv = 0; mv < max_moves && p > 1; mv++) {
        /* the best one-unit move across one boundary; when none improves (and p is small), the
         * best between any two ranks (it shifts every boundary in between) */
        int bi = -1, bj = -1;
        int64_t bd = 0;
        double bT = S.ttft - 1e-12 * fabs(S.ttft);
        for (int pass = 0; pass < 2 && bi < 0; pass++) {
            if (pass == 1 && p > SRCH_POLISH_PAIR_MAX) break;
            for (int i = 0; i + 1 < p; i++)
                for (int j = i + 1; j < p; j++) {
                    if ((pass == 0) != (j == i + 1)) continue; /* adjacent first */
                    for (int64_t d = -1; d <= 1; d += 2) {     /* rank i gains d units */
                        if (S.u[i] + d < 1 || S.u[j] - d < 1) continue;
                        for (int k = i; k <= j; k++) S.cu[k] = S.u[k];
                        S.cu[i] += d;
                        S.cu[j] -= d;
                        const double t = srch_try_range(&S, i, j);
                        if (t < bT) {
                            bT = t;
                            bi = i;
                            bj = j;
                            bd = d;
                        }
                    }
                }
        }
        if (bi < 0) break;
        for (int k = bi; k <= bj; k++) S.cu[k] = S.u[k];
        S.cu[bi] += bd;
        S.cu[bj] -= bd;
        srch_try_range(&S, bi, bj); /* re-price the winner into the candidate arrays */
        srch_accept_range(&S, bi, bj);
    }
    srch_units_to_tokens(&S, S.u, chunks);
    if (ttft_us) *ttft_us = S.ttft;
    srch_free(&S);
    return KVR_OK;
}
