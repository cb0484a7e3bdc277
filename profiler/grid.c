/* grid.c -- the (c, prefix) grid: presets, log-spaced values, the base points per op, adaptive
 * refinement where a curve bends, the parameter string stored with a run (for --resume). Reading
 * a profile back (kvr_profile_interp) is costs.c's: the one interpolator of a profile. */
#include "kvr_profiler.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

kvr_status kvr_prof_ops_parse(const char *list, uint32_t *mask, kvr_error *err) {
    if (strcmp(list, "all") == 0) {
        *mask = KVR_PROF_OPS_ALL;
        return KVR_OK;
    }
    if (strcmp(list, "none") == 0 || !*list) {
        *mask = 0;
        return KVR_OK;
    }
    uint32_t m = 0;
    const char *p = list;
    while (*p) {
        char tok[32];
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= sizeof tok)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG, "op list '%s': empty or long item",
                                 list);
        memcpy(tok, p, len);
        tok[len] = 0;
        kvr_op op = KVR_OP_EMBED;
        if (kvr_op_parse(tok, &op, NULL) != KVR_OK || op >= KVR_OP_LAYER_COUNT)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "unknown op '%s' (embed, pre, attn, post, head, all, none)", tok);
        m |= 1u << op;
        p += len;
        if (*p == ',') p++;
    }
    *mask = m;
    return KVR_OK;
}

void kvr_prof_ops_format(uint32_t mask, char *buf, size_t len) {
    if (!len) return;
    buf[0] = 0;
    for (int i = 0; i < KVR_OP_LAYER_COUNT; i++)
        if (mask & (1u << i)) {
            size_t l = strlen(buf);
            snprintf(buf + l, len - l, "%s%s", l ? "," : "", kvr_op_name((kvr_op)i));
        }
}

// ----------------------------------------------------------------------------
// values and presets

/* Round a grid value the way chunk sizes come in practice: multiples of 16 from 128, of 8 from
 * 32 (granularities the search uses), exact below. */
static int64_t prof_nice(double v) {
    if (v >= 128) return (int64_t)llround(v / 16) * 16;
    if (v >= 32) return (int64_t)llround(v / 8) * 8;
    return (int64_t)llround(v);
}

kvr_status kvr_grid_values(int64_t lo, int64_t hi, double per_octave, int64_t **out, int32_t *n,
                           kvr_error *err) {
    *out = NULL;
    *n = 0;
    if (lo < 0 || hi < lo || !(per_octave > 0) || per_octave > 64)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "grid range %lld:%lld with %g points per octave: need 0 <= lo <= hi "
                             "and 0 < points per octave <= 64",
                             (long long)lo, (long long)hi, per_octave);
    const int32_t cap = 4096;
    int64_t *v = malloc((size_t)cap * sizeof *v);
    if (!v) return kvr_error_set(err, KVR_ERR_NOMEM, "grid: out of memory");
    int32_t k = 0;
    if (lo == 0) {
        v[k++] = 0;
        lo = 1;
    }
    if (hi >= lo) {
        const double step = pow(2.0, 1.0 / per_octave);
        for (double x = (double)lo; k < cap - 1; x *= step) {
            int64_t r = x == (double)lo ? lo : prof_nice(x);
            if (r >= hi || x >= (double)hi * (1 - 1e-9)) break;
            if (k == 0 || r > v[k - 1]) v[k++] = r;
        }
        if (k == 0 || v[k - 1] < hi) v[k++] = hi;
    }
    *out = v;
    *n = k;
    return KVR_OK;
}

kvr_status kvr_grid_preset(const char *name, int64_t cap, kvr_grid_params *g, kvr_timing_params *t,
                           kvr_error *err) {
    memset(g, 0, sizeof *g);
    kvr_timing_params tp;
    if (strcmp(name, "quick") == 0) {
        *g = (kvr_grid_params){"quick", 16, 4096, 1, 4096, 256, 0.5, 1, 0.05, 0, 0, {0}, {0}};
        tp = (kvr_timing_params){1, 3, 30, 0.3, 0.02};
    } else if (strcmp(name, "standard") == 0) {
        *g = (kvr_grid_params){"standard", 16, 8192, 2, 8192, 128, 1, 2, 0.03, 0, 0, {0}, {0}};
        tp = (kvr_timing_params){2, 5, 100, 1.0, 0.01};
    } else if (strcmp(name, "full") == 0) {
        *g = (kvr_grid_params){"full", 1, 32768, 4, 32768, 16, 2, 3, 0.02, 0, 0, {0}, {0}};
        tp = (kvr_timing_params){3, 10, 1000, 3.0, 0.005};
    } else {
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "unknown grid '%s' (quick, standard, full)", name);
    }
    if (cap > 0) {
        g->c_max = KVR_MIN(g->c_max, cap);
        g->ctx_max = KVR_MIN(g->ctx_max, cap);
        g->c_min = KVR_MIN(g->c_min, g->c_max);
        g->p_min = KVR_MIN(g->p_min, g->ctx_max);
    }
    if (t) *t = tp;
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// points

typedef struct prof_pts {
    kvr_prof_point *a;
    int64_t n, cap;
    bool oom;
} prof_pts;

static void prof_pts_add(prof_pts *p, kvr_op op, int64_t c, int64_t prefix) {
    if (p->oom) return;
    if (p->n == p->cap) {
        int64_t nc = p->cap ? p->cap * 2 : 64;
        kvr_prof_point *q = realloc(p->a, (size_t)nc * sizeof *q);
        if (!q) {
            p->oom = true;
            return;
        }
        p->a = q;
        p->cap = nc;
    }
    p->a[p->n++] = (kvr_prof_point){op, c, prefix};
}

static kvr_status prof_c_values(const kvr_grid_params *g, int64_t **v, int32_t *n,
                                kvr_error *err) {
    if (g->n_c_list > 0) {
        *v = malloc((size_t)g->n_c_list * sizeof **v);
        if (!*v) return kvr_error_set(err, KVR_ERR_NOMEM, "grid: out of memory");
        memcpy(*v, g->c_list, (size_t)g->n_c_list * sizeof **v);
        *n = g->n_c_list;
        return KVR_OK;
    }
    if (g->c_min < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "grid: smallest chunk %lld < 1",
                             (long long)g->c_min);
    return kvr_grid_values(g->c_min, g->c_max, g->c_per_octave, v, n, err);
}

kvr_status kvr_grid_points(const kvr_grid_params *g, uint32_t ops, kvr_prof_point **out,
                           int64_t *n_out, kvr_error *err) {
    *out = NULL;
    *n_out = 0;
    int64_t *cv = NULL, *pv = NULL;
    int32_t nc = 0, np = 0;
    KVR_TRY(prof_c_values(g, &cv, &nc, err));
    for (int32_t i = 0; i < nc; i++)
        if (cv[i] < 1 || cv[i] > g->ctx_max) {
            kvr_status st = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                          "grid: chunk %lld outside [1, max context %lld]",
                                          (long long)cv[i], (long long)g->ctx_max);
            free(cv);
            return st;
        }
    kvr_status st = KVR_OK;
    if (g->n_p_list > 0) {
        pv = malloc((size_t)g->n_p_list * sizeof *pv);
        if (!pv) st = kvr_error_set(err, KVR_ERR_NOMEM, "grid: out of memory");
        else memcpy(pv, g->p_list, (size_t)g->n_p_list * sizeof *pv);
        np = g->n_p_list;
    } else if (g->p_min >= 1 && g->p_min < g->ctx_max) {
        st = kvr_grid_values(g->p_min, g->ctx_max, g->p_per_octave, &pv, &np, err);
    }
    if (st != KVR_OK) {
        free(cv);
        return st;
    }
    prof_pts P = {0};
    for (int op = 0; op < KVR_OP_LAYER_COUNT; op++) {
        if (!(ops & (1u << op))) continue;
        if (op == KVR_OP_HEAD) {
            prof_pts_add(&P, KVR_OP_HEAD, 1, 0);
            continue;
        }
        for (int32_t i = 0; i < nc; i++) {
            const int64_t c = cv[i];
            if (op != KVR_OP_ATTN) {
                prof_pts_add(&P, (kvr_op)op, c, 0);
                continue;
            }
            if (g->n_p_list == 0) prof_pts_add(&P, KVR_OP_ATTN, c, 0);
            int64_t last = 0;
            for (int32_t j = 0; j < np; j++) {
                if (pv[j] + c > g->ctx_max) break;
                if (g->n_p_list == 0 && pv[j] == 0) continue;
                prof_pts_add(&P, KVR_OP_ATTN, c, pv[j]);
                last = pv[j];
            }
            /* the diagonal: the longest prefix this chunk can follow in the largest context */
            const int64_t diag = g->ctx_max - c;
            if (g->n_p_list == 0 && diag > 0 && diag - last >= KVR_MAX(16, diag / 8))
                prof_pts_add(&P, KVR_OP_ATTN, c, diag);
        }
    }
    free(cv);
    free(pv);
    if (P.oom) {
        free(P.a);
        return kvr_error_set(err, KVR_ERR_NOMEM, "grid: out of memory");
    }
    *out = P.a;
    *n_out = P.n;
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// refinement

typedef struct prof_cp {
    int64_t c;
    double t;
} prof_cp;

static int prof_cp_cmp(const void *a, const void *b) {
    const prof_cp *x = a, *y = b;
    return (x->c > y->c) - (x->c < y->c);
}

static bool prof_has(const kvr_db_layer_sample *s, int64_t n, const char *op, int64_t c,
                     int64_t prefix) {
    for (int64_t i = 0; i < n; i++)
        if (s[i].c == c && s[i].prefix == prefix && strcmp(s[i].op, op) == 0) return true;
    return false;
}

static void prof_refine_series(const kvr_grid_params *g, prof_cp *v, int64_t m, kvr_op op,
                               int64_t prefix, prof_pts *out) {
    if (m < 3) return;
    qsort(v, (size_t)m, sizeof *v, prof_cp_cmp);
    bool *mark = calloc((size_t)m, sizeof *mark);
    if (!mark) {
        out->oom = true;
        return;
    }
    for (int64_t i = 1; i + 1 < m; i++) {
        const double f = (double)(v[i].c - v[i - 1].c) / (double)(v[i + 1].c - v[i - 1].c);
        const double lin = v[i - 1].t + f * (v[i + 1].t - v[i - 1].t);
        if (v[i].t > 0 && fabs(v[i].t - lin) > g->refine_tol * v[i].t) mark[i - 1] = mark[i] = true;
    }
    for (int64_t j = 0; j + 1 < m; j++) {
        if (!mark[j]) continue;
        int64_t mid = prof_nice(sqrt((double)v[j].c * (double)v[j + 1].c));
        if (mid <= v[j].c || mid >= v[j + 1].c) mid = (v[j].c + v[j + 1].c) / 2;
        if (mid <= v[j].c || mid >= v[j + 1].c) continue;
        if (mid + prefix > g->ctx_max) continue;
        prof_pts_add(out, op, mid, prefix);
    }
    free(mark);
}

kvr_status kvr_grid_refine(const kvr_grid_params *g, uint32_t ops,
                           const kvr_db_layer_sample *s, int64_t n, kvr_prof_point **out,
                           int64_t *n_out, kvr_error *err) {
    *out = NULL;
    *n_out = 0;
    prof_pts cand = {0};
    prof_cp *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    int64_t *prefixes = malloc((size_t)(n > 0 ? n : 1) * sizeof *prefixes);
    if (!v || !prefixes) {
        free(v), free(prefixes);
        return kvr_error_set(err, KVR_ERR_NOMEM, "refine: out of memory");
    }
    for (int op = 0; op < KVR_OP_LAYER_COUNT; op++) {
        if (!(ops & (1u << op)) || op == KVR_OP_HEAD) continue;
        const char *name = kvr_op_name((kvr_op)op);
        /* the prefix rows of this op (just 0 except for attn) */
        int64_t np = 0;
        for (int64_t i = 0; i < n; i++) {
            if (strcmp(s[i].op, name) != 0) continue;
            bool seen = false;
            for (int64_t j = 0; j < np && !seen; j++) seen = prefixes[j] == s[i].prefix;
            if (!seen) prefixes[np++] = s[i].prefix;
        }
        for (int64_t r = 0; r < np; r++) {
            int64_t m = 0;
            for (int64_t i = 0; i < n; i++)
                if (s[i].prefix == prefixes[r] && strcmp(s[i].op, name) == 0 &&
                    isfinite(s[i].stats.median_us))
                    v[m++] = (prof_cp){s[i].c, s[i].stats.median_us};
            prof_refine_series(g, v, m, (kvr_op)op, prefixes[r], &cand);
        }
    }
    free(v);
    free(prefixes);
    if (cand.oom) {
        free(cand.a);
        return kvr_error_set(err, KVR_ERR_NOMEM, "refine: out of memory");
    }
    /* keep new, distinct points */
    int64_t k = 0;
    for (int64_t i = 0; i < cand.n; i++) {
        const kvr_prof_point *p = &cand.a[i];
        if (prof_has(s, n, kvr_op_name(p->op), p->c, p->prefix)) continue;
        bool dup = false;
        for (int64_t j = 0; j < k && !dup; j++)
            dup = cand.a[j].op == p->op && cand.a[j].c == p->c && cand.a[j].prefix == p->prefix;
        if (!dup) cand.a[k++] = *p;
    }
    *out = cand.a;
    *n_out = k;
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// parameters <-> string

kvr_profile_params kvr_profile_params_default(void) {
    kvr_profile_params p;
    memset(&p, 0, sizeof p);
    kvr_grid_preset("standard", 0, &p.grid, &p.timing, NULL);
    p.ops = KVR_PROF_OPS_ALL;
    p.n_threads = 1;
    p.comm = false;
    p.n_ranks = 2;
    p.transport = KVR_TRANSPORT_THREADS;
    p.comm_min_bytes = 4096;
    p.comm_max_bytes = 0;
    p.comm_per_octave = 1;
    p.seed = 1234;
    p.overheads = true;
    p.decode = true;
    p.decode_max_batch = 32;
    p.decode_n_ctx = 3;
    return p;
}

static void prof_list_format(char *buf, size_t len, const int64_t *v, int32_t n) {
    buf[0] = 0;
    for (int32_t i = 0; i < n; i++) {
        size_t l = strlen(buf);
        snprintf(buf + l, len - l, "%s%lld", i ? "," : "", (long long)v[i]);
    }
}

kvr_status kvr_profile_params_format(const kvr_profile_params *p, char *buf, size_t len,
                                     kvr_error *err) {
    char ops[64], cl[600], pl[600];
    kvr_prof_ops_format(p->ops, ops, sizeof ops);
    prof_list_format(cl, sizeof cl, p->grid.c_list, p->grid.n_c_list);
    prof_list_format(pl, sizeof pl, p->grid.p_list, p->grid.n_p_list);
    int n = snprintf(buf, len,
                     "grid=%s;c=%lld:%lld:%g;ctx=%lld;p=%lld:%g;refine=%d:%g;clist=%s;plist=%s;"
                     "timing=%d:%d:%d:%g:%g;ops=%s;threads=%d;comm=%d;ranks=%d;transport=%s;"
                     "compute=%d;bytes=%lld:%lld:%g;seed=%llu;layers=%d;overheads=%d;"
                     "decode=%d:%d:%d;model=%s",
                     p->grid.name, (long long)p->grid.c_min, (long long)p->grid.c_max,
                     p->grid.c_per_octave, (long long)p->grid.ctx_max, (long long)p->grid.p_min,
                     p->grid.p_per_octave, p->grid.refine_levels, p->grid.refine_tol, cl, pl,
                     p->timing.n_warmup, p->timing.min_iters, p->timing.max_iters,
                     p->timing.budget_s, p->timing.rel_tol, ops[0] ? ops : "none", p->n_threads,
                     p->comm ? 1 : 0, p->n_ranks,
                     kvr_comm_transport_name(p->transport), p->comm_compute ? 1 : 0,
                     (long long)p->comm_min_bytes, (long long)p->comm_max_bytes,
                     p->comm_per_octave, (unsigned long long)p->seed, p->model_layers,
                     p->overheads ? 1 : 0, p->decode ? 1 : 0, p->decode_max_batch,
                     p->decode_n_ctx, p->model);
    if (n < 0 || (size_t)n >= len)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "profile parameters longer than %zu bytes",
                             len);
    return KVR_OK;
}

static kvr_status prof_parse_list(const char *v, int64_t *out, int32_t *n, kvr_error *err) {
    *n = 0;
    while (*v) {
        if (*n >= 64) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "list of more than 64 values");
        char *end;
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (end == v || errno || (*end && *end != ',') || x < 0)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG, "bad list value in '%s'", v);
        out[(*n)++] = x;
        v = *end ? end + 1 : end;
    }
    return KVR_OK;
}

kvr_status kvr_profile_params_parse(const char *s, kvr_profile_params *out, kvr_error *err) {
    kvr_profile_params p = kvr_profile_params_default();
    const char *q = s;
    bool got_model = false;
    while (*q && !got_model) {
        const char *semi = strchr(q, ';');
        size_t len = semi ? (size_t)(semi - q) : strlen(q);
        const char *eq = memchr(q, '=', len);
        if (!eq) return kvr_error_set(err, KVR_ERR_FORMAT, "run parameters: '%.40s' has no '='", q);
        char key[32], val[700];
        size_t kl = (size_t)(eq - q);
        if (kl >= sizeof key) return kvr_error_set(err, KVR_ERR_FORMAT, "run parameters: long key");
        memcpy(key, q, kl);
        key[kl] = 0;
        if (strcmp(key, "model") == 0) { /* last: takes the rest, ';' included */
            snprintf(p.model, sizeof p.model, "%s", eq + 1);
            got_model = true;
            break;
        }
        size_t vl = len - kl - 1;
        if (vl >= sizeof val) return kvr_error_set(err, KVR_ERR_FORMAT, "run parameters: long value");
        memcpy(val, eq + 1, vl);
        val[vl] = 0;
        int ok = 1;
        long long a = 0, b = 0;
        double x = 0, y = 0;
        int i1 = 0, i2 = 0, i3 = 0;
        char sbuf[64];
        if (!strcmp(key, "grid")) {
            snprintf(p.grid.name, sizeof p.grid.name, "%.15s", val);
        } else if (!strcmp(key, "c")) {
            ok = sscanf(val, "%lld:%lld:%lf", &a, &b, &x) == 3;
            p.grid.c_min = a, p.grid.c_max = b, p.grid.c_per_octave = x;
        } else if (!strcmp(key, "ctx")) {
            ok = sscanf(val, "%lld", &a) == 1;
            p.grid.ctx_max = a;
        } else if (!strcmp(key, "p")) {
            ok = sscanf(val, "%lld:%lf", &a, &x) == 2;
            p.grid.p_min = a, p.grid.p_per_octave = x;
        } else if (!strcmp(key, "refine")) {
            ok = sscanf(val, "%d:%lf", &i1, &x) == 2;
            p.grid.refine_levels = i1, p.grid.refine_tol = x;
        } else if (!strcmp(key, "clist")) {
            KVR_TRY(prof_parse_list(val, p.grid.c_list, &p.grid.n_c_list, err));
        } else if (!strcmp(key, "plist")) {
            KVR_TRY(prof_parse_list(val, p.grid.p_list, &p.grid.n_p_list, err));
        } else if (!strcmp(key, "timing")) {
            ok = sscanf(val, "%d:%d:%d:%lf:%lf", &i1, &i2, &i3, &x, &y) == 5;
            p.timing = (kvr_timing_params){i1, i2, i3, x, y};
        } else if (!strcmp(key, "ops")) {
            KVR_TRY(kvr_prof_ops_parse(val, &p.ops, err));
        } else if (!strcmp(key, "threads")) {
            ok = sscanf(val, "%d", &i1) == 1;
            p.n_threads = i1;
        } else if (!strcmp(key, "comm")) {
            ok = sscanf(val, "%d", &i1) == 1;
            p.comm = i1 != 0;
        } else if (!strcmp(key, "ranks")) {
            ok = sscanf(val, "%d", &i1) == 1;
            p.n_ranks = i1;
        } else if (!strcmp(key, "transport")) {
            ok = sscanf(val, "%63s", sbuf) == 1 &&
                 kvr_comm_transport_parse(sbuf, &p.transport, NULL) == KVR_OK;
        } else if (!strcmp(key, "compute")) {
            ok = sscanf(val, "%d", &i1) == 1;
            p.comm_compute = i1 != 0;
        } else if (!strcmp(key, "bytes")) {
            ok = sscanf(val, "%lld:%lld:%lf", &a, &b, &x) == 3;
            p.comm_min_bytes = a, p.comm_max_bytes = b, p.comm_per_octave = x;
        } else if (!strcmp(key, "seed")) {
            unsigned long long u = 0;
            ok = sscanf(val, "%llu", &u) == 1;
            p.seed = u;
        } else if (!strcmp(key, "layers")) {
            ok = sscanf(val, "%d", &i1) == 1;
            p.model_layers = i1;
        } else if (!strcmp(key, "overheads")) { /* absent (runs before it): the default */
            ok = sscanf(val, "%d", &i1) == 1;
            p.overheads = i1 != 0;
        } else if (!strcmp(key, "decode")) { /* absent (runs before it): the default */
            ok = sscanf(val, "%d:%d:%d", &i1, &i2, &i3) == 3 && i2 >= 1 && i3 >= 1;
            p.decode = i1 != 0, p.decode_max_batch = i2, p.decode_n_ctx = i3;
        } /* unknown keys: written by a newer kvr; ignored */
        if (!ok) return kvr_error_set(err, KVR_ERR_FORMAT, "run parameters: bad value for %s: '%s'",
                                      key, val);
        q += len + (semi ? 1 : 0);
    }
    if (!got_model) return kvr_error_set(err, KVR_ERR_FORMAT, "run parameters: no model");
    *out = p;
    return KVR_OK;
}
