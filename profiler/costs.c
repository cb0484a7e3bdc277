/* costs.c -- a profile run as a search cost model: the measured (c, prefix) grid and transfer
 * samples interpolated behind search's custom-source hook (kvr_search_costs_create and
 * kvr_search_costs_set_link_time), so the search module never sees the store. The same curves
 * read a profile back one op at a time (kvr_profile_interp, kvr_profile_predict_single_ms: the
 * single-rank TTFT of kvr-profile and kvr-db): the profiler's one interpolator. docs/search.md
 * ("Cost source: a profile run") states the scheme and its behaviour outside the grid:
 *
 *   pre(c), post(c), embed(c), attn(c, 0): medians made non-decreasing in c (pool-adjacent-
 *     violators), then Steffen's monotone cubic in log c / log t between grid points; below the
 *     first point constant; beyond the last linear from the last two points, in c (pre, post,
 *     embed) or in the causal area c^2/2 (attn at prefix 0).
 *   attn(c, P) = attn(c, 0) + D(c, P): the prefix increment D is, per profiled chunk column c_j,
 *     piecewise linear in P through (0, 0) and the column's points (made non-decreasing), linear
 *     beyond its last point; columns are made non-decreasing in c (running maximum) and D is
 *     linear in c between columns -- exact for the cost form k + b c + g P + a (c P + c^2/2) of
 *     DESIGN.md section 6, whose prefix increment P (g + a c) is linear in c. Below the first
 *     column D is the first column's; beyond the last it grows linearly in c at the relative rate
 *     of the last two columns. Monotone in c and in P everywhere.
 *   links: per measured (src, dst) pair the p2p medians over message size (non-decreasing),
 *     Steffen in log-log between sizes, constant below the smallest, linear (bandwidth) beyond
 *     the largest; a KVR link transfer of n bytes is n_msgs messages of n / n_msgs (kvr-run sends
 *     K and V separately: 2). Pairs not measured use the pooled curve of all pairs (so one
 *     measured pair makes the links uniform). Links also carry alpha + bytes/bandwidth fitted by
 *     least squares in relative error, shown in exports.
 *   TSP all-gather: from all-gather samples, time = A + B bytes fitted as above, as search's
 *     alpha-busbw model for K and V (two collectives).
 */
#include "kvr_profiler.h"
#include "kvr_search.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// monotone 1-D curves

typedef struct pc_curve {
    int n;
    double *x, *y; /* x increasing, > 0; y non-decreasing, > 0 */
    double *d;     /* Steffen slopes in (log x, log y) */
    bool area;     /* extrapolate linearly in x^2/2 instead of x */
} pc_curve;

typedef struct pc_pt {
    double x, y;
} pc_pt;

static int pc_pt_cmp(const void *a, const void *b) {
    const double u = ((const pc_pt *)a)->x, v = ((const pc_pt *)b)->x;
    return (u > v) - (u < v);
}

/* Pool-adjacent-violators: the least-squares non-decreasing fit of y (equal weights), in
 * place. w is scratch for n doubles and blocks for n ints. */
static void pc_isotonic(double *y, int n, double *w, int *len) {
    int nb = 0;
    for (int i = 0; i < n; i++) {
        w[nb] = y[i];
        len[nb] = 1;
        nb++;
        while (nb > 1 && w[nb - 2] > w[nb - 1]) {
            const double s = w[nb - 2] * len[nb - 2] + w[nb - 1] * len[nb - 1];
            len[nb - 2] += len[nb - 1];
            w[nb - 2] = s / len[nb - 2];
            nb--;
        }
    }
    for (int b = 0, k = 0; b < nb; b++)
        for (int j = 0; j < len[b]; j++) y[k++] = w[b];
}

static double pc_sign(double v) {
    return (v > 0) - (v < 0);
}

/* Steffen (1990), A&A 239, 443: slopes that keep a cubic Hermite interpolant monotone. */
static void pc_steffen(const double *X, const double *Y, int n, double *d) {
    if (n < 2) {
        if (n == 1) d[0] = 0;
        return;
    }
    if (n == 2) {
        d[0] = d[1] = (Y[1] - Y[0]) / (X[1] - X[0]);
        return;
    }
    for (int i = 1; i < n - 1; i++) {
        const double h0 = X[i] - X[i - 1], h1 = X[i + 1] - X[i];
        const double s0 = (Y[i] - Y[i - 1]) / h0, s1 = (Y[i + 1] - Y[i]) / h1;
        const double p = (s0 * h1 + s1 * h0) / (h0 + h1);
        d[i] = (pc_sign(s0) + pc_sign(s1)) * fmin(fmin(fabs(s0), fabs(s1)), 0.5 * fabs(p));
    }
    for (int e = 0; e < 2; e++) { /* end slopes: the parabola through three points, bounded */
        const int a = e ? n - 1 : 0, b = e ? n - 2 : 1, c = e ? n - 3 : 2;
        const double h0 = fabs(X[b] - X[a]), h1 = fabs(X[c] - X[b]);
        const double s0 = (Y[b] - Y[a]) / (X[b] - X[a]), s1 = (Y[c] - Y[b]) / (X[c] - X[b]);
        double p = s0 * (1 + h0 / (h0 + h1)) - s1 * h0 / (h0 + h1);
        if (p * s0 <= 0)
            p = 0;
        else if (fabs(p) > 2 * fabs(s0))
            p = 2 * s0;
        d[a] = p;
    }
}

static void pc_curve_free(pc_curve *k) {
    free(k->x);
    free(k->y);
    free(k->d);
    memset(k, 0, sizeof *k);
}

/* Build from n points (any order; x > 0). Returns false on out of memory. */
static bool pc_curve_build(pc_curve *k, pc_pt *pt, int n, bool area) {
    memset(k, 0, sizeof *k);
    k->area = area;
    if (n <= 0) return true;
    qsort(pt, (size_t)n, sizeof *pt, pc_pt_cmp);
    k->x = malloc((size_t)n * sizeof *k->x);
    k->y = malloc((size_t)n * sizeof *k->y);
    k->d = malloc((size_t)n * sizeof *k->d);
    double *X = malloc((size_t)n * sizeof *X), *Y = malloc((size_t)n * sizeof *Y);
    int *len = malloc((size_t)n * sizeof *len);
    bool ok = k->x && k->y && k->d && X && Y && len;
    if (ok) {
        for (int i = 0; i < n; i++) {
            k->x[i] = pt[i].x;
            k->y[i] = pt[i].y > 1e-3 ? pt[i].y : 1e-3; /* logs need > 0; 1 ns floor */
        }
        k->n = n;
        pc_isotonic(k->y, n, X, len);
        for (int i = 0; i < n; i++) {
            X[i] = log(k->x[i]);
            Y[i] = log(k->y[i]);
        }
        pc_steffen(X, Y, n, k->d);
    }
    free(X);
    free(Y);
    free(len);
    if (!ok) pc_curve_free(k);
    return ok;
}

static double pc_u(const pc_curve *k, double x) {
    return k->area ? 0.5 * x * x : x;
}

static double pc_curve_at(const pc_curve *k, double x) {
    const int n = k->n;
    if (n == 0) return 0;
    if (x <= k->x[0]) return k->y[0];
    if (n == 1) return k->y[0] * pc_u(k, x) / pc_u(k, k->x[0]); /* proportional */
    if (x >= k->x[n - 1]) {
        const double u0 = pc_u(k, k->x[n - 2]), u1 = pc_u(k, k->x[n - 1]);
        const double s = (k->y[n - 1] - k->y[n - 2]) / (u1 - u0); /* >= 0: isotonic */
        return k->y[n - 1] + s * (pc_u(k, x) - u1);
    }
    int lo = 0, hi = n - 1; /* x[lo] <= x < x[hi] */
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (k->x[mid] <= x)
            lo = mid;
        else
            hi = mid;
    }
    const double X0 = log(k->x[lo]), X1 = log(k->x[hi]), h = X1 - X0;
    const double Y0 = log(k->y[lo]), Y1 = log(k->y[hi]);
    const double t = (log(x) - X0) / h, t2 = t * t, t3 = t2 * t;
    const double v = (2 * t3 - 3 * t2 + 1) * Y0 + (t3 - 2 * t2 + t) * h * k->d[lo] +
                     (-2 * t3 + 3 * t2) * Y1 + (t3 - t2) * h * k->d[hi];
    /* the Hermite value stays within [Y0, Y1] for Steffen slopes; clamp rounding */
    return exp(fmin(fmax(v, Y0), Y1));
}

// ----------------------------------------------------------------------------
// attention: prefix-increment columns

typedef struct pc_col {
    double c;
    int n;
    double *P, *d; /* P increasing, > 0; d non-decreasing, >= 0 */
} pc_col;

/* D_j(P): piecewise linear through (0, 0) and the points, linear beyond the last. */
static double pc_col_at(const pc_col *col, double P) {
    if (P <= 0 || col->n == 0) return 0;
    double p0 = 0, d0 = 0;
    int i = 0;
    while (i < col->n && col->P[i] < P) {
        p0 = col->P[i];
        d0 = col->d[i];
        i++;
    }
    if (i < col->n) return d0 + (col->d[i] - d0) * (P - p0) / (col->P[i] - p0);
    /* beyond: the last segment's slope (from the origin when there is one point) */
    const double pa = col->n >= 2 ? col->P[col->n - 2] : 0, da = col->n >= 2 ? col->d[col->n - 2] : 0;
    const double pb = col->P[col->n - 1], db = col->d[col->n - 1];
    return db + (db - da) / (pb - pa) * (P - pb);
}

// ----------------------------------------------------------------------------
// the cost source

typedef struct pc_pair {
    int src, dst;
    pc_curve t; /* one message: bytes -> us */
} pc_pair;

typedef struct pc_src {
    pc_curve pre, post, attn0, embed;
    pc_col *cols; /* by increasing c */
    int n_cols;
    double tail_rate; /* relative growth of D per token beyond the last column */
    pc_pair *pairs;
    int n_pairs;
    pc_curve pooled; /* all pairs together */
    int n_msgs;
} pc_src;

static void pc_src_free(void *ctx) {
    pc_src *s = ctx;
    if (!s) return;
    pc_curve_free(&s->pre);
    pc_curve_free(&s->post);
    pc_curve_free(&s->attn0);
    pc_curve_free(&s->embed);
    for (int j = 0; j < s->n_cols; j++) {
        free(s->cols[j].P);
        free(s->cols[j].d);
    }
    free(s->cols);
    for (int i = 0; i < s->n_pairs; i++) pc_curve_free(&s->pairs[i].t);
    free(s->pairs);
    pc_curve_free(&s->pooled);
    free(s);
}

/* The running maximum of the columns up to j at P: non-decreasing in j. */
static double pc_cummax(const pc_src *s, int j, double P) {
    double g = 0;
    for (int i = 0; i <= j; i++) g = fmax(g, pc_col_at(&s->cols[i], P));
    return g;
}

static double pc_delta(const pc_src *s, double c, double P) {
    if (P <= 0) return 0;
    const int K = s->n_cols;
    if (c <= s->cols[0].c) return pc_cummax(s, 0, P);
    if (c >= s->cols[K - 1].c)
        return pc_cummax(s, K - 1, P) * (1 + s->tail_rate * (c - s->cols[K - 1].c));
    int j = 0;
    while (s->cols[j + 1].c < c) j++;
    const double g0 = pc_cummax(s, j, P), g1 = fmax(g0, pc_col_at(&s->cols[j + 1], P));
    return g0 + (g1 - g0) * (c - s->cols[j].c) / (s->cols[j + 1].c - s->cols[j].c);
}

static double pc_pre_us(const void *ctx, int64_t c) {
    return pc_curve_at(&((const pc_src *)ctx)->pre, (double)c);
}

static double pc_post_us(const void *ctx, int64_t c) {
    return pc_curve_at(&((const pc_src *)ctx)->post, (double)c);
}

static double pc_attn_us(const void *ctx, int64_t c, int64_t prefix) {
    const pc_src *s = ctx;
    return pc_curve_at(&s->attn0, (double)c) + pc_delta(s, (double)c, (double)prefix);
}

static double pc_link_us(const void *ctx, const kvr_search_link *link, double bytes) {
    const pc_src *s = ctx;
    const pc_curve *k = &s->pooled;
    for (int i = 0; i < s->n_pairs; i++)
        if (s->pairs[i].src == link->src && s->pairs[i].dst == link->dst) k = &s->pairs[i].t;
    if (bytes <= 0) return 0;
    return s->n_msgs * pc_curve_at(k, bytes / s->n_msgs);
}

// ----------------------------------------------------------------------------
// fits for the link records and the all-gather

/* t ~ a + b x by least squares in relative error (weights 1/t^2), a, b >= 0. */
static void pc_fit_affine(const pc_pt *p, int n, double *a, double *b) {
    double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int i = 0; i < n; i++) {
        const double w = 1 / (p[i].y * p[i].y);
        sw += w;
        sx += w * p[i].x;
        sy += w * p[i].y;
        sxx += w * p[i].x * p[i].x;
        sxy += w * p[i].x * p[i].y;
    }
    const double det = sw * sxx - sx * sx;
    *a = sw > 0 ? sy / sw : 0;
    *b = 0;
    if (n >= 2 && det > 0) {
        *b = (sw * sxy - sx * sy) / det;
        *a = (sy - *b * sx) / sw;
    }
    if (*b < 0) {
        *b = 0;
        *a = sw > 0 ? sy / sw : 0;
    }
    if (*a < 0) {
        *a = 0;
        *b = sxx > 0 ? sxy / sxx : 0;
    }
}

static kvr_search_link pc_link_of(const pc_pt *p, int n, int src, int dst, int n_msgs) {
    double a, b;
    pc_fit_affine(p, n, &a, &b);
    /* n_msgs messages of n/n_msgs bytes: n_msgs a + n b */
    kvr_search_link l = {src, dst, n_msgs * a, b > 0 ? 1e-3 / b : 0};
    return l;
}

// ----------------------------------------------------------------------------
// building

kvr_profile_costs_params kvr_profile_costs_params_default(void) {
    kvr_profile_costs_params p;
    memset(&p, 0, sizeof p);
    p.embed_tokens = 1024;
    p.n_msgs = 2;
    return p;
}

static bool pc_is(const kvr_db_layer_sample *s, kvr_op op) {
    return strcmp(s->op, kvr_op_name(op)) == 0 && isfinite(s->stats.median_us) &&
           s->stats.median_us >= 0;
}

/* Points of one op at prefix 0 (x = c). */
static int pc_gather(const kvr_db_layer_sample *ls, int64_t n, kvr_op op, pc_pt *pt) {
    int m = 0;
    for (int64_t i = 0; i < n; i++)
        if (pc_is(&ls[i], op) && ls[i].prefix == 0 && ls[i].c >= 1)
            pt[m++] = (pc_pt){(double)ls[i].c, ls[i].stats.median_us};
    return m;
}

/* The median of the head samples (normally one, at c = 1); n_head > 0. pt: scratch. */
static double pc_head_us(const kvr_db_layer_sample *ls, int64_t n, pc_pt *pt) {
    int nh = 0;
    for (int64_t i = 0; i < n; i++)
        if (pc_is(&ls[i], KVR_OP_HEAD)) pt[nh++] = (pc_pt){ls[i].stats.median_us, 0};
    qsort(pt, (size_t)nh, sizeof *pt, pc_pt_cmp);
    return nh % 2 ? pt[nh / 2].x : 0.5 * (pt[nh / 2 - 1].x + pt[nh / 2].x);
}

static int pc_col_cmp(const void *a, const void *b) {
    const double u = ((const pc_col *)a)->c, v = ((const pc_col *)b)->c;
    return (u > v) - (u < v);
}

static kvr_status pc_build_attn(pc_src *s, const kvr_db_layer_sample *ls, int64_t n,
                                pc_pt *pt, const char *name, kvr_error *err) {
    /* columns: distinct c with a prefix > 0 sample */
    int n_cols = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!pc_is(&ls[i], KVR_OP_ATTN) || ls[i].prefix <= 0 || ls[i].c < 1) continue;
        bool seen = false;
        for (int j = 0; j < n_cols && !seen; j++) seen = s->cols[j].c == (double)ls[i].c;
        if (seen) continue;
        pc_col *g = realloc(s->cols, (size_t)(n_cols + 1) * sizeof *g);
        if (!g) return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", name);
        s->cols = g;
        memset(&s->cols[n_cols], 0, sizeof s->cols[n_cols]);
        s->cols[n_cols].c = (double)ls[i].c;
        s->n_cols = ++n_cols;
    }
    if (n_cols == 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "%s has attention samples only at prefix 0: KV-Runahead costs need "
                             "the (c, prefix) plane (kvr-profile with the default grid, or "
                             "--prefixes)",
                             name);
    qsort(s->cols, (size_t)n_cols, sizeof *s->cols, pc_col_cmp);
    double *w = malloc((size_t)n * sizeof *w);
    int *len = malloc((size_t)n * sizeof *len);
    if (!w || !len) {
        free(w);
        free(len);
        return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", name);
    }
    kvr_status st = KVR_OK;
    for (int j = 0; j < n_cols && st == KVR_OK; j++) {
        pc_col *col = &s->cols[j];
        const double a0 = pc_curve_at(&s->attn0, col->c);
        int m = 0;
        for (int64_t i = 0; i < n; i++)
            if (pc_is(&ls[i], KVR_OP_ATTN) && ls[i].prefix > 0 && (double)ls[i].c == col->c)
                pt[m++] = (pc_pt){(double)ls[i].prefix, fmax(0, ls[i].stats.median_us - a0)};
        qsort(pt, (size_t)m, sizeof *pt, pc_pt_cmp);
        col->P = malloc((size_t)m * sizeof *col->P);
        col->d = malloc((size_t)m * sizeof *col->d);
        if (!col->P || !col->d) {
            st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", name);
            break;
        }
        for (int k = 0; k < m; k++) {
            col->P[k] = pt[k].x;
            col->d[k] = pt[k].y;
        }
        col->n = m;
        pc_isotonic(col->d, m, w, len);
    }
    free(w);
    free(len);
    if (st != KVR_OK) return st;
    if (n_cols >= 2) {
        const pc_col *a = &s->cols[n_cols - 2], *b = &s->cols[n_cols - 1];
        const double Pref = b->P[b->n - 1];
        const double ga = pc_cummax(s, n_cols - 2, Pref), gb = pc_cummax(s, n_cols - 1, Pref);
        /* D_K (1 + rate (c - c_K)) = D_K + (D_K - D_{K-1}) (c - c_K) / (c_K - c_{K-1}) at Pref */
        s->tail_rate = gb > 0 ? fmax(0, (1 - ga / gb) / (b->c - a->c)) : 1 / b->c;
    } else {
        s->tail_rate = 1 / s->cols[0].c; /* proportional to c */
    }
    return KVR_OK;
}

static int pc_pair_find(const pc_src *s, int src, int dst) {
    for (int i = 0; i < s->n_pairs; i++)
        if (s->pairs[i].src == src && s->pairs[i].dst == dst) return i;
    return -1;
}

static kvr_status pc_build_links(pc_src *s, const kvr_db_transfer_sample *ts, int64_t n,
                                 pc_pt *pt, kvr_search_link *links, kvr_search_link *dflt,
                                 const char *name, kvr_error *err) {
    int m = 0;
    for (int64_t i = 0; i < n; i++) {
        if (strcmp(ts[i].pattern, "p2p") || ts[i].src < 0 || ts[i].dst < 0 ||
            ts[i].src == ts[i].dst || ts[i].size_bytes < 1 || !isfinite(ts[i].stats.median_us))
            continue;
        if (pc_pair_find(s, ts[i].src, ts[i].dst) >= 0) continue;
        pc_pair *g = realloc(s->pairs, (size_t)(s->n_pairs + 1) * sizeof *g);
        if (!g) return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", name);
        s->pairs = g;
        memset(&s->pairs[s->n_pairs], 0, sizeof s->pairs[s->n_pairs]);
        s->pairs[s->n_pairs].src = ts[i].src;
        s->pairs[s->n_pairs].dst = ts[i].dst;
        s->n_pairs++;
    }
    for (int k = 0; k < s->n_pairs; k++) {
        pc_pair *pr = &s->pairs[k];
        m = 0;
        for (int64_t i = 0; i < n; i++)
            if (!strcmp(ts[i].pattern, "p2p") && ts[i].src == pr->src && ts[i].dst == pr->dst &&
                ts[i].size_bytes >= 1 && isfinite(ts[i].stats.median_us))
                pt[m++] = (pc_pt){(double)ts[i].size_bytes, fmax(ts[i].stats.median_us, 1e-3)};
        links[k] = pc_link_of(pt, m, pr->src, pr->dst, s->n_msgs);
        if (!pc_curve_build(&pr->t, pt, m, false))
            return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", name);
    }
    /* pooled: every pair's points; equal sizes averaged */
    m = 0;
    for (int64_t i = 0; i < n; i++)
        if (!strcmp(ts[i].pattern, "p2p") && ts[i].src >= 0 && ts[i].dst >= 0 &&
            ts[i].src != ts[i].dst && ts[i].size_bytes >= 1 && isfinite(ts[i].stats.median_us))
            pt[m++] = (pc_pt){(double)ts[i].size_bytes, fmax(ts[i].stats.median_us, 1e-3)};
    qsort(pt, (size_t)m, sizeof *pt, pc_pt_cmp);
    int u = 0;
    for (int i = 0; i < m;) {
        int j = i;
        double sum = 0;
        while (j < m && pt[j].x == pt[i].x) sum += pt[j++].y;
        pt[u++] = (pc_pt){pt[i].x, sum / (j - i)};
        i = j;
    }
    *dflt = pc_link_of(pt, u, -1, -1, s->n_msgs);
    if (!pc_curve_build(&s->pooled, pt, u, false))
        return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", name);
    return KVR_OK;
}

/* Each schedule's fixed overheads from the overhead samples (kvr-profile's overheads step:
 * op ovh_<mode>, c = layers, the median excess of measured over per-op-predicted TTFT), fitted
 * by kvr_search_overhead_fit as the predictor's fits do, into mc. */
static kvr_status pc_overheads(const kvr_db_layer_sample *ls, int64_t n_ls, kvr_search_costs *mc,
                               kvr_profile_costs_info *inf, const char *name, kvr_error *err) {
    int L[64];
    double y[64];
    for (int md = 0; md < KVR_MODE_COUNT; md++) {
        int n = 0;
        for (int64_t i = 0; i < n_ls && n < 64; i++) {
            kvr_mode m;
            if (!kvr_search_overhead_op_parse(ls[i].op, &m) || m != (kvr_mode)md ||
                ls[i].c < 1 || ls[i].c > INT32_MAX || !isfinite(ls[i].stats.median_us))
                continue;
            L[n] = (int)ls[i].c;
            y[n++] = ls[i].stats.median_us;
        }
        if (n == 0) continue;
        kvr_search_overhead o;
        bool clamped = false;
        kvr_status st = kvr_search_overhead_fit(L, y, n, &o, &clamped, err);
        if (st == KVR_OK)
            st = kvr_search_costs_set_overhead(mc, (kvr_mode)md, o.run_us, o.layer_us,
                                               "measured: the profile's overheads step", err);
        if (st != KVR_OK) return kvr_error_prefix(err, "%s", name);
        inf->n_overhead_samples += n;
        if (clamped) inf->overheads_clamped |= 1u << md;
    }
    return KVR_OK;
}

/* The host tier's copy rate from the profile's host-copy samples (op KVR_SEARCH_HOST_COPY_OP:
 * c layer blocks moved of prefix bytes each, median_us): the slope of time over bytes by least
 * squares (time = fixed + bytes / rate; the fixed part is the copier's hand-off), or with one
 * size or a slope that is not positive, the largest sample's bytes / time. None: no rate. */
static kvr_status pc_host_copy(const kvr_db_layer_sample *ls, int64_t n, kvr_search_costs *m,
                               const char *name, kvr_error *err) {
    double sx = 0, sy = 0, sxx = 0, sxy = 0, big_x = 0, big_y = 0;
    int k = 0;
    for (int64_t i = 0; i < n; i++) {
        if (strcmp(ls[i].op, KVR_SEARCH_HOST_COPY_OP) != 0 || ls[i].c < 1 || ls[i].prefix < 1 ||
            !(ls[i].stats.median_us > 0))
            continue;
        const double x = (double)ls[i].c * (double)ls[i].prefix, y = ls[i].stats.median_us;
        sx += x, sy += y, sxx += x * x, sxy += x * y, k++;
        if (x > big_x) big_x = x, big_y = y;
    }
    if (k == 0) return KVR_OK;
    const double den = k * sxx - sx * sx, slope = den > 0 ? (k * sxy - sx * sy) / den : 0;
    const double rate = slope > 0 ? 1 / slope : big_x / big_y;
    char how[200];
    snprintf(how, sizeof how, "%s: %d host-copy samples (%s)", name, k,
             slope > 0 ? "least-squares slope" : "largest sample");
    return kvr_search_costs_set_host_copy(m, rate, how, err);
}

kvr_status kvr_profile_costs_from_samples(const kvr_db_model *model,
                                          const kvr_db_layer_sample *ls, int64_t n_ls,
                                          const kvr_db_transfer_sample *ts, int64_t n_ts,
                                          const char *source, const kvr_profile_costs_params *p,
                                          kvr_search_costs **out, kvr_profile_costs_info *info,
                                          kvr_error *err) {
    *out = NULL;
    const kvr_profile_costs_params pp = p ? *p : kvr_profile_costs_params_default();
    const char *name = source && *source ? source : "the profile";
    if (!model || model->n_layers < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: the model's layer count is unknown",
                             name);
    if (!(model->kv_bytes_per_token > 0))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "%s: the model's K/V bytes per token are unknown (an import without "
                             "model.kv_bytes_per_token, or n_kv_heads and head_dim)",
                             name);
    if (pp.n_msgs < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: n_msgs must be >= 1", name);
    kvr_profile_costs_info inf;
    memset(&inf, 0, sizeof inf);
    static const kvr_op need[] = {KVR_OP_PRE, KVR_OP_ATTN, KVR_OP_POST, KVR_OP_HEAD};
    for (int64_t i = 0; i < n_ls; i++) {
        kvr_op op;
        if (kvr_op_parse(ls[i].op, &op, NULL) == KVR_OK && op < KVR_OP_LAYER_COUNT &&
            pc_is(&ls[i], op))
            inf.n_samples[op]++;
    }
    for (int k = 0; k < 4; k++) {
        if (inf.n_samples[need[k]] == 0)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "%s has no %s samples: the search needs pre, attn, post and "
                                 "head (kvr-profile --ops all)",
                                 name, kvr_op_name(need[k]));
    }
    const int64_t nmax = (n_ls > n_ts ? n_ls : n_ts) + 1;
    pc_pt *pt = malloc((size_t)nmax * sizeof *pt);
    pc_src *s = calloc(1, sizeof *s);
    kvr_search_link *links = malloc((size_t)(n_ts + 1) * sizeof *links);
    if (!pt || !s || !links) {
        free(pt);
        free(s);
        free(links);
        return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", name);
    }
    s->n_msgs = pp.n_msgs;
    kvr_status st = KVR_OK;
    int m = pc_gather(ls, n_ls, KVR_OP_ATTN, pt);
    if (m == 0)
        st = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                           "%s has no attention samples at prefix 0 (the chunk's own causal "
                           "attention): re-profile with kvr-profile --ops all",
                           name);
    bool ok = true;
    if (st == KVR_OK) ok = pc_curve_build(&s->attn0, pt, m, true);
    if (st == KVR_OK && ok) ok = pc_curve_build(&s->pre, pt, pc_gather(ls, n_ls, KVR_OP_PRE, pt), false);
    if (st == KVR_OK && ok)
        ok = pc_curve_build(&s->post, pt, pc_gather(ls, n_ls, KVR_OP_POST, pt), false);
    if (st == KVR_OK && ok)
        ok = pc_curve_build(&s->embed, pt, pc_gather(ls, n_ls, KVR_OP_EMBED, pt), false);
    if (st == KVR_OK && !ok) st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", name);
    if (st == KVR_OK && (s->pre.n == 0 || s->post.n == 0))
        st = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                           "%s has no pre/post samples at prefix 0: re-profile with kvr-profile "
                           "--ops all",
                           name);
    if (st == KVR_OK) st = pc_build_attn(s, ls, n_ls, pt, name, err);
    const double head_us = st == KVR_OK ? pc_head_us(ls, n_ls, pt) : 0;
    kvr_search_link dflt = {-1, -1, 0, 0};
    if (st == KVR_OK) st = pc_build_links(s, ts, n_ts, pt, links, &dflt, name, err);
    /* all-gather: t = A + B bytes for one collective of K (or V) */
    double ag_a = 0, ag_b = 0;
    int n_ag = 0, ag_ranks = 0;
    if (st == KVR_OK) {
        for (int64_t i = 0; i < n_ts; i++)
            if (!strcmp(ts[i].pattern, "allgather") && ts[i].n_ranks > ag_ranks) ag_ranks = ts[i].n_ranks;
        for (int64_t i = 0; i < n_ts; i++)
            if (!strcmp(ts[i].pattern, "allgather") && ts[i].n_ranks == ag_ranks &&
                ts[i].size_bytes > 0 && isfinite(ts[i].stats.median_us) &&
                ts[i].stats.median_us > 0)
                pt[n_ag++] = (pc_pt){(double)ts[i].size_bytes, ts[i].stats.median_us};
        if (n_ag > 0) pc_fit_affine(pt, n_ag, &ag_a, &ag_b);
    }
    char src_text[512];
    snprintf(src_text, sizeof src_text,
             "%s: interpolated (monotone; Steffen in log-log, prefix increments linear in c)",
             name);
    kvr_search_costs *mc = NULL;
    if (st == KVR_OK) {
        inf.embed_us = s->embed.n ? pc_curve_at(&s->embed, (double)(pp.embed_tokens > 0 ? pp.embed_tokens : 1)) : 0;
        inf.head_us = head_us;
        static const kvr_search_cost_ops ops = {"profile", pc_pre_us, pc_attn_us, pc_post_us,
                                                NULL, pc_src_free};
        kvr_search_cost_info ci = {model->n_layers, (double)model->kv_bytes_per_token,
                                   inf.embed_us, head_us, src_text};
        /* the model owns s from here on, also on failure */
        st = kvr_search_costs_create(&ops, s, &ci, s->n_pairs ? &dflt : NULL, &mc, err);
        pc_src *src = s;
        s = NULL;
        if (st == KVR_OK) st = kvr_search_costs_set_names(mc, model->name, NULL, NULL, err);
        /* ring's log-sum-exp merges are not an op of their own (kvr_op_attn_block ends with
         * them): modelled from the measured embedding rate -- a merge reads and writes about
         * the bytes of one embedding row per query row (D floats each way, plus an exp and a
         * log per head) -- so per row embed(1024) / 1024, no fixed part (docs/search.md) */
        if (st == KVR_OK && src->embed.n)
            st = kvr_search_costs_set_merge(mc, 0, pc_curve_at(&src->embed, 1024.0) / 1024.0,
                                            "modelled: the profile's embedding rate per row",
                                            err);
        if (st == KVR_OK && src->n_pairs > 0) {
            st = kvr_search_costs_set_links(mc, &dflt, links, src->n_pairs, err);
            char lname[160];
            snprintf(lname, sizeof lname,
                     "p2p medians interpolated per pair (%d measured, others pooled), %d "
                     "message%s per link transfer",
                     src->n_pairs, src->n_msgs, src->n_msgs > 1 ? "s" : "");
            if (st == KVR_OK)
                st = kvr_search_costs_set_link_time(mc, pc_link_us, src, NULL, lname, err);
        }
        if (st == KVR_OK && n_ag > 0 && ag_ranks >= 2) {
            /* A = (r-1) alpha, B = (r-1)/r / (busbw 1000); K and V: 2 collectives of half the
             * bytes -> alpha' = 2 alpha, the same busbw */
            const double alpha = ag_a / (ag_ranks - 1);
            const double busbw = ag_b > 0 ? (double)(ag_ranks - 1) / ag_ranks / (ag_b * 1000) : 0;
            if (busbw > 0) st = kvr_search_costs_set_allgather(mc, 2 * alpha, busbw, err);
            inf.has_allgather = busbw > 0;
        }
        if (st == KVR_OK && !pp.no_overheads) st = pc_overheads(ls, n_ls, mc, &inf, name, err);
        if (st == KVR_OK) {
            inf.n_link_pairs = src->n_pairs;
            for (int64_t i = 0; i < n_ts; i++) inf.n_p2p_samples += !strcmp(ts[i].pattern, "p2p");
            inf.c_min = (int64_t)src->pre.x[0];
            inf.c_max = (int64_t)src->pre.x[src->pre.n - 1];
            inf.n_attn_columns = src->n_cols;
            for (int64_t i = 0; i < n_ls; i++)
                if (pc_is(&ls[i], KVR_OP_ATTN) && ls[i].c + ls[i].prefix > inf.ctx_max)
                    inf.ctx_max = ls[i].c + ls[i].prefix;
            char bw[32] = "no size dependence";
            if (dflt.gbps > 0) snprintf(bw, sizeof bw, "%.3g GB/s", dflt.gbps);
            if (src->n_pairs)
                snprintf(inf.links, sizeof inf.links,
                         "from %lld p2p samples: %d pair%s measured (others: pooled), default "
                         "fit %.3g us + %s per KVR transfer (%d messages)%s",
                         (long long)inf.n_p2p_samples, src->n_pairs, src->n_pairs > 1 ? "s" : "",
                         dflt.alpha_us, bw, src->n_msgs,
                         inf.has_allgather ? "; TSP all-gather from all-gather samples" : "");
            else
                snprintf(inf.links, sizeof inf.links, "none in the profile (ideal links)");
        }
    }
    pc_src_free(s);
    free(pt);
    free(links);
    if (st == KVR_OK) st = pc_host_copy(ls, n_ls, mc, name, err);
    if (st != KVR_OK) {
        kvr_search_costs_destroy(mc);
        return st;
    }
    *out = mc;
    if (info) *info = inf;
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// reading a profile back: the same curves, one op at a time

kvr_status kvr_profile_interp(const kvr_db_layer_sample *s, int64_t n, kvr_op op, int64_t c,
                              int64_t prefix, double *time_us, kvr_error *err) {
    const char *name = kvr_op_name(op);
    int64_t have = 0;
    for (int64_t i = 0; i < n; i++) have += pc_is(&s[i], op);
    if (have == 0)
        return kvr_error_set(err, KVR_ERR_NOT_FOUND, "the profile has no %s samples", name);
    pc_pt *pt = malloc((size_t)(n + 1) * sizeof *pt);
    pc_src *src = calloc(1, sizeof *src);
    if (!pt || !src) {
        free(pt);
        free(src);
        return kvr_error_set(err, KVR_ERR_NOMEM, "interpolation: out of memory");
    }
    kvr_status st = KVR_OK;
    if (op == KVR_OP_HEAD) {
        *time_us = pc_head_us(s, n, pt);
    } else {
        pc_curve *k = op == KVR_OP_ATTN ? &src->attn0 : &src->pre;
        const int m = pc_gather(s, n, op, pt);
        if (m == 0)
            st = kvr_error_set(err, KVR_ERR_NOT_FOUND, "the profile has no %s samples at prefix 0",
                               name);
        else if (!pc_curve_build(k, pt, m, op == KVR_OP_ATTN))
            st = kvr_error_set(err, KVR_ERR_NOMEM, "interpolation: out of memory");
        if (st == KVR_OK && op == KVR_OP_ATTN && prefix > 0)
            st = pc_build_attn(src, s, n, pt, "the profile", err);
        if (st == KVR_OK)
            *time_us = pc_curve_at(k, (double)c) +
                       (op == KVR_OP_ATTN ? pc_delta(src, (double)c, (double)prefix) : 0);
    }
    pc_src_free(src);
    free(pt);
    return st;
}

kvr_status kvr_profile_predict_single_ms(const kvr_db_layer_sample *s, int64_t n,
                                         int32_t n_layers, int64_t C, double *ttft_ms,
                                         kvr_error *err) {
    double e, pr, at, po, hd;
    KVR_TRY(kvr_profile_interp(s, n, KVR_OP_EMBED, C, 0, &e, err));
    KVR_TRY(kvr_profile_interp(s, n, KVR_OP_PRE, C, 0, &pr, err));
    KVR_TRY(kvr_profile_interp(s, n, KVR_OP_ATTN, C, 0, &at, err));
    KVR_TRY(kvr_profile_interp(s, n, KVR_OP_POST, C, 0, &po, err));
    KVR_TRY(kvr_profile_interp(s, n, KVR_OP_HEAD, 1, 0, &hd, err));
    *ttft_ms = (e + (double)n_layers * (pr + at + po) + hd) * 1e-3;
    return KVR_OK;
}

void kvr_profile_predict_single_series(const kvr_db_layer_sample *s, int64_t n,
                                       int32_t n_layers, int64_t ctx[4], double ttft_ms[4],
                                       int *n_out) {
    int64_t c_hi = 0;
    for (int64_t i = 0; i < n; i++)
        if (!strcmp(s[i].op, kvr_op_name(KVR_OP_ATTN)) && s[i].prefix == 0 && s[i].c > c_hi)
            c_hi = s[i].c;
    int nc = 0;
    for (int k = 3; k >= 0; k--) {
        const int64_t C = c_hi >> k;
        if (C < 1 || (nc && ctx[nc - 1] == C)) continue;
        if (kvr_profile_predict_single_ms(s, n, n_layers, C, &ttft_ms[nc], NULL) != KVR_OK) break;
        ctx[nc++] = C;
    }
    *n_out = nc;
}

kvr_status kvr_profile_costs_from_run(kvr_db *db, int64_t run_id,
                                      const kvr_profile_costs_params *p, kvr_search_costs **out,
                                      kvr_profile_costs_info *info, kvr_error *err) {
    *out = NULL;
    const kvr_profile_costs_params pp = p ? *p : kvr_profile_costs_params_default();
    kvr_db_run run, lrun;
    kvr_error e2;
    if (kvr_db_run_get(db, run_id, &run, &e2) != KVR_OK)
        return kvr_error_set(err, e2.code, "%s (kvr-db list shows the runs)", e2.msg);
    const int64_t link_id = pp.link_run_id > 0 ? pp.link_run_id : run_id;
    if (link_id != run_id && kvr_db_run_get(db, link_id, &lrun, &e2) != KVR_OK)
        return kvr_error_set(err, e2.code, "links: %s (kvr-db list shows the runs)", e2.msg);
    for (int k = 0; k < (link_id != run_id ? 2 : 1); k++) {
        const kvr_db_run *r = k ? &lrun : &run;
        if (r->status == KVR_RUN_COMPLETE) continue;
        if (r->status == KVR_RUN_RUNNING && kvr_db_run_owner_alive(r))
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "run %lld is still being written by process %lld: wait for it "
                                 "to finish",
                                 (long long)r->id, (long long)r->pid);
        if (!pp.allow_incomplete) {
            char note[200] = "";
            if (r->note[0]) snprintf(note, sizeof note, " (%.180s)", r->note);
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "run %lld is %s%s: finish it with kvr-profile --resume %lld, "
                                 "or use what it has with --allow-incomplete",
                                 (long long)r->id,
                                 r->status == KVR_RUN_FAILED ? "failed" : "incomplete", note,
                                 (long long)r->id);
        }
    }
    kvr_db_model model;
    if (run.model_id <= 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "run %lld has no model record",
                             (long long)run_id);
    KVR_TRY(kvr_db_model_get(db, run.model_id, &model, err));
    kvr_db_layer_sample *ls = NULL;
    kvr_db_transfer_sample *ts = NULL;
    int64_t nl = 0, nt = 0;
    KVR_TRY(kvr_db_layer_samples_get(db, run_id, &ls, &nl, err));
    kvr_status st = kvr_db_transfer_samples_get(db, link_id, &ts, &nt, err);
    char name[160];
    if (link_id != run_id)
        snprintf(name, sizeof name, "%s run %lld (links: run %lld)", kvr_db_path(db),
                 (long long)run_id, (long long)link_id);
    else
        snprintf(name, sizeof name, "%s run %lld", kvr_db_path(db), (long long)run_id);
    if (st == KVR_OK && nl == 0)
        st = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                           "run %lld has no layer samples (a transfers-only profile?): give a "
                           "run profiled with --ops all",
                           (long long)run_id);
    if (st == KVR_OK)
        st = kvr_profile_costs_from_samples(&model, ls, nl, ts, nt, name, &pp, out, info, err);
    kvr_db_free(ls);
    kvr_db_free(ts);
    return st;
}
