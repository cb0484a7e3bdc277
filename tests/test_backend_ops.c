/* test_backend_ops.c -- every registered backend's layer ops against a naive fp64 reference
 * written here (in the manner of ggml's test-backend-ops): for a grid of shapes (chunk 1..300,
 * prefix 0..1000, GQA and MQA, head dims 64 and 128) on small seeded random models, it runs
 * embed, pre (RoPE at global positions; the KV rows written), attn (with the per-row log-sum-exp),
 * post and head through kvr_backend.h only, reads every observable result back to host, and
 * compares it with the reference within the tolerance of the backend's dtype. Each op's
 * reference input is the reference output of the op before (the K/V cache and x of the chunk),
 * so an error is charged to the op that made it. A new backend needs nothing here: registering
 * it in runtime/backend.c puts it under this test.
 *
 * Error measure per tensor: max |got - want| / max |want| (relative to the tensor's scale; the
 * LSE's scale is its own magnitude). `./test_backend_ops -v` prints every (backend, shape, op).
 * Also the contract's error cases (bad layer, chunk, rows, ids, names). */
#include "kvr_backend.h"
#include "kvr_test.h"
#include "runtime_internal.h"

#include <math.h>
#include <stdlib.h>

static bool g_verbose;

// ----------------------------------------------------------------------------
// models: small seeded random weights of a given shape

typedef struct bo_model_shape {
    const char *name;
    int32_t D, NH, NKV, HS, FF, V;
} bo_model_shape;

static const bo_model_shape bo_models[] = {
    {"gqa-hs64", 128, 4, 2, 64, 192, 320},
    {"mqa-hs64", 96, 3, 1, 64, 160, 300},
    {"gqa-hs128", 128, 4, 2, 128, 160, 280},
    {"mqa-hs128", 128, 2, 1, 128, 192, 260},
};
#define BO_N_MODELS ((int)(sizeof bo_models / sizeof bo_models[0]))
#define BO_LAYERS 2
#define BO_LAYER 1 /* the layer the ops run: offsets of weights and cache are part of the test */

static uint64_t bo_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float bo_uniform(uint64_t *s) { /* [-1, 1) */
    return (float)((double)(bo_next(s) >> 40) * (2.0 / 16777216.0) - 1.0);
}
static void bo_fill(float *p, size_t n, float scale, float offset, uint64_t *s) {
    for (size_t i = 0; i < n; i++) p[i] = offset + scale * bo_uniform(s);
}

static kvr_model *bo_model_create(const bo_model_shape *sh, uint64_t seed) {
    kvr_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.arch, sizeof cfg.arch, "llama");
    snprintf(cfg.name, sizeof cfg.name, "%s", sh->name);
    cfg.n_layers = BO_LAYERS;
    cfg.d_model = sh->D;
    cfg.n_heads = sh->NH;
    cfg.n_kv_heads = sh->NKV;
    cfg.head_dim = sh->HS;
    cfg.d_ff = sh->FF;
    cfg.vocab_size = sh->V;
    cfg.max_context = 4096;
    cfg.rope_theta = 10000.0f;
    cfg.norm_eps = 1e-5f;
    kvr_model *m = NULL;
    kvr_error e;
    if (model_alloc(&cfg, NULL, &m, &e) != KVR_OK) {
        fprintf(stderr, "model %s: %s\n", sh->name, e.msg);
        return NULL;
    }
    uint64_t s = seed;
    const size_t D = (size_t)sh->D, HS = (size_t)sh->HS, FF = (size_t)sh->FF;
    const size_t NQKV = (size_t)(sh->NH + 2 * sh->NKV) * HS;
    const float sd = 1.0f / sqrtf((float)D);
    bo_fill(m->tok_embd, (size_t)sh->V * D, 1.0f, 0.0f, &s);
    bo_fill(m->output_norm, D, 0.1f, 1.0f, &s);
    bo_fill(m->output, (size_t)sh->V * D, sd, 0.0f, &s);
    for (int32_t l = 0; l < BO_LAYERS; l++) {
        kvr_layer_weights *w = &m->layers[l];
        bo_fill(w->attn_norm, D, 0.1f, 1.0f, &s);
        /* scores of a few units: the softmax neither flat nor one-hot */
        bo_fill(w->wqkv, NQKV * D, 2.5f * sd, 0.0f, &s);
        bo_fill(w->wo, D * (size_t)sh->NH * HS, 1.0f / sqrtf((float)(sh->NH * sh->HS)), 0.0f, &s);
        bo_fill(w->ffn_norm, D, 0.1f, 1.0f, &s);
        bo_fill(w->w_gate_up, 2 * FF * D, 1.7f * sd, 0.0f, &s);
        bo_fill(w->w_down, D * FF, 1.0f / sqrtf((float)FF), 0.0f, &s);
    }
    return m;
}

// ----------------------------------------------------------------------------
// the fp64 reference

static void ref_rmsnorm(double *y, const double *x, const float *w, int64_t n, double eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    const double r = 1.0 / sqrt(ss / (double)n + eps);
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * r * (double)w[i];
}

/* y (n_out) = W (n_out, n_in) . x */
static void ref_matvec(double *y, const float *W, const double *x, int64_t n_out, int64_t n_in) {
    for (int64_t o = 0; o < n_out; o++) {
        double a = 0;
        for (int64_t i = 0; i < n_in; i++) a += (double)W[o * n_in + i] * x[i];
        y[o] = a;
    }
}

/* Rotate interleaved pairs of n_heads heads of HS at global position pos. */
static void ref_rope(double *v, int32_t n_heads, int32_t HS, int64_t pos, double theta) {
    for (int32_t h = 0; h < n_heads; h++)
        for (int32_t i = 0; i < HS / 2; i++) {
            const double ang = (double)pos * pow(theta, -2.0 * i / HS);
            double *p = v + (int64_t)h * HS + 2 * i;
            const double a = p[0], b = p[1];
            p[0] = a * cos(ang) - b * sin(ang);
            p[1] = a * sin(ang) + b * cos(ang);
        }
}

/* pre of one row at global position pos: q (NH*HS), k and v (NKV*HS). */
static void ref_pre_row(const kvr_model *m, int32_t layer, const double *x, int64_t pos,
                        double *q, double *k, double *v) {
    const kvr_model_config *c = &m->cfg;
    const int64_t D = c->d_model, HS = c->head_dim, NH = c->n_heads, NKV = c->n_kv_heads;
    const kvr_layer_weights *w = &m->layers[layer];
    double *h = malloc((size_t)D * sizeof *h), *qkv = malloc((size_t)(NH + 2 * NKV) * HS * sizeof *qkv);
    ref_rmsnorm(h, x, w->attn_norm, D, c->norm_eps);
    ref_matvec(qkv, w->wqkv, h, (NH + 2 * NKV) * HS, D);
    ref_rope(qkv, (int32_t)NH, (int32_t)HS, pos, c->rope_theta);
    ref_rope(qkv + NH * HS, (int32_t)NKV, (int32_t)HS, pos, c->rope_theta);
    memcpy(q, qkv, (size_t)(NH * HS) * sizeof *q);
    memcpy(k, qkv + NH * HS, (size_t)(NKV * HS) * sizeof *k);
    memcpy(v, qkv + (NH + NKV) * HS, (size_t)(NKV * HS) * sizeof *v);
    free(h), free(qkv);
}

/* attention of one query row (NH*HS) over keys [0, nk) of K, V (rows of NKV*HS): out, lse (NH) */
static void ref_attn_row(const kvr_model_config *c, const double *q, const double *K,
                         const double *V, int64_t nk, double *out, double *lse, double *s) {
    const int64_t HS = c->head_dim, NH = c->n_heads, NKV = c->n_kv_heads, kvd = NKV * HS;
    const int64_t group = NH / NKV;
    const double scale = 1.0 / sqrt((double)HS);
    for (int64_t h = 0; h < NH; h++) {
        const int64_t g = h / group;
        double mx = -INFINITY;
        for (int64_t j = 0; j < nk; j++) {
            double a = 0;
            for (int64_t d = 0; d < HS; d++) a += q[h * HS + d] * K[j * kvd + g * HS + d];
            s[j] = a * scale;
            mx = s[j] > mx ? s[j] : mx;
        }
        double sum = 0;
        for (int64_t j = 0; j < nk; j++) sum += exp(s[j] - mx);
        lse[h] = mx + log(sum);
        for (int64_t d = 0; d < HS; d++) {
            double a = 0;
            for (int64_t j = 0; j < nk; j++) a += exp(s[j] - lse[h]) * V[j * kvd + g * HS + d];
            out[h * HS + d] = a;
        }
    }
}

/* post of one row: x += att.Wo^T; x += W_down (silu(gate) * up) of RMSNorm(x). */
static void ref_post_row(const kvr_model *m, int32_t layer, double *x, const double *att) {
    const kvr_model_config *c = &m->cfg;
    const int64_t D = c->d_model, NHS = (int64_t)c->n_heads * c->head_dim, FF = c->d_ff;
    const kvr_layer_weights *w = &m->layers[layer];
    double *t = malloc((size_t)KVR_MAX(D, 2 * FF) * sizeof *t), *h = malloc((size_t)D * sizeof *h);
    double *a = malloc((size_t)FF * sizeof *a);
    ref_matvec(t, w->wo, att, D, NHS);
    for (int64_t i = 0; i < D; i++) x[i] += t[i];
    ref_rmsnorm(h, x, w->ffn_norm, D, c->norm_eps);
    ref_matvec(t, w->w_gate_up, h, 2 * FF, D);
    for (int64_t i = 0; i < FF; i++) a[i] = t[i] / (1.0 + exp(-t[i])) * t[FF + i];
    ref_matvec(t, w->w_down, a, D, FF);
    for (int64_t i = 0; i < D; i++) x[i] += t[i];
    free(t), free(h), free(a);
}

// ----------------------------------------------------------------------------
// comparison

typedef struct bo_err {
    double max_abs, max_ref;
} bo_err;

static void bo_err_add(bo_err *e, double got, double want) {
    const double d = fabs(got - want);
    if (!(d <= e->max_abs)) e->max_abs = d; /* NaN sticks */
    if (fabs(want) > e->max_ref) e->max_ref = fabs(want);
}
static double bo_err_rel(const bo_err *e) {
    return e->max_abs / (e->max_ref > 0 ? e->max_ref : 1.0);
}

/* The tolerance of a backend's dtype on these normalised errors. */
static double bo_tolerance(const char *dtype) {
    if (strcmp(dtype, "f32") == 0) return 1e-4;
    if (strcmp(dtype, "f16") == 0) return 5e-3;
    if (strcmp(dtype, "bf16") == 0) return 3e-2;
    return 1e-4;
}

/* Whether be can run here (cuda: a device is present); prints why not. A backend this machine
 * cannot run is skipped, not failed: the CPU-only run covers cpu, a GPU machine covers cuda. */
static bool bo_usable(const kvr_backend *be) {
    const kvr_backend *again = NULL;
    kvr_error e;
    if (kvr_backend_get(kvr_backend_name(be), &again, &e) == KVR_OK) return true;
    printf("backend %s: skipped (%s)\n", kvr_backend_name(be), e.msg);
    return false;
}

static double g_worst[6];
static const char *const bo_op_names[6] = {"embed", "pre", "attn", "post", "head", "attn_block"};

static void bo_report(const char *be, const char *shape, int op, const bo_err *e, double tol) {
    const double r = bo_err_rel(e);
    if (!(r <= g_worst[op])) g_worst[op] = r;
    kvr_test_checks++;
    if (!(r <= tol)) {
        kvr_test_fails++;
        fprintf(stderr, "FAIL %s %s %s: max rel err %.3g > %.3g\n", be, shape,
                bo_op_names[op], r, tol);
    } else if (g_verbose) {
        printf("  %-5s %-28s %-6s max rel err %.3g\n", be, shape, bo_op_names[op], r);
    }
}

// ----------------------------------------------------------------------------
// one (backend, model, chunk, prefix) case

typedef struct bo_case {
    int model;
    int64_t c, P;
    int32_t n_threads;
} bo_case;

/* Chunks up to 300, prefixes up to 1000, every model shape; the query-block edges of the CPU
 * backend (128) and single-row chunks are in. Not a full product: each row adds something. */
static const bo_case bo_cases[] = {
    {0, 1, 0, 1},    {0, 17, 5, 2},    {0, 128, 0, 1},  {0, 300, 1000, 2}, {0, 1, 1000, 1},
    {1, 1, 0, 1},    {1, 129, 64, 2},  {1, 33, 1000, 1}, {1, 300, 0, 2},
    {2, 1, 0, 2},    {2, 7, 300, 1},   {2, 200, 1000, 2}, {2, 300, 17, 1},
    {3, 1, 1000, 2}, {3, 64, 0, 1},    {3, 257, 500, 1}, {3, 300, 1000, 2},
};
#define BO_N_CASES ((int)(sizeof bo_cases / sizeof bo_cases[0]))

static void bo_run_case(const kvr_backend *be, const kvr_model *m, const bo_case *cs,
                        uint64_t seed) {
    const kvr_model_config *cfg = kvr_model_get_config(m);
    const int64_t D = cfg->d_model, HS = cfg->head_dim, NH = cfg->n_heads, NKV = cfg->n_kv_heads;
    const int64_t kvd = NKV * HS, c = cs->c, P = cs->P, S = P + c, V = cfg->vocab_size;
    const kvr_backend_info info = kvr_backend_get_info(be);
    const double tol = bo_tolerance(info.dtype);
    char shape[64];
    snprintf(shape, sizeof shape, "%s c=%lld P=%lld t=%d", bo_models[cs->model].name,
             (long long)c, (long long)P, cs->n_threads);
    kvr_error e;
    kvr_weights *w = NULL;
    kvr_workspace *ws = NULL;
    KVR_CHECK_OK(kvr_weights_upload(be, m, &w, &e), &e);
    if (!w) return;
    KVR_CHECK_OK(kvr_workspace_create(w, c, S, cs->n_threads, &ws, &e), &e);
    if (!ws) {
        kvr_weights_free(w);
        return;
    }
    uint64_t s = seed;
    float *xf = malloc((size_t)(S * D) * sizeof *xf);     /* input hidden states, rows [0, S) */
    float *got = malloc((size_t)KVR_MAX(S * kvd, KVR_MAX(c * D, V)) * sizeof *got);
    float *got_v = malloc((size_t)(S * kvd) * sizeof *got_v);
    float *lse = malloc((size_t)(c * NH) * sizeof *lse);
    int32_t *tok = malloc((size_t)c * sizeof *tok);
    double *x = malloc((size_t)(S * D) * sizeof *x), *q = malloc((size_t)(c * NH * HS) * sizeof *q);
    double *K = malloc((size_t)(S * kvd) * sizeof *K), *Vc = malloc((size_t)(S * kvd) * sizeof *Vc);
    double *att = malloc((size_t)(NH * HS) * sizeof *att), *rl = malloc((size_t)NH * sizeof *rl);
    double *sc = malloc((size_t)S * sizeof *sc), *qtmp = malloc((size_t)(NH * HS) * sizeof *qtmp);
    double *h = malloc((size_t)D * sizeof *h), *logits = malloc((size_t)V * sizeof *logits);
    bo_fill(xf, (size_t)(S * D), 1.0f, 0.0f, &s);
    for (int64_t i = 0; i < S * D; i++) x[i] = xf[i];

    /* embed: token rows, exact */
    bo_err er = {0, 0};
    for (int64_t r = 0; r < c; r++) tok[r] = (int32_t)(bo_next(&s) % (uint64_t)V);
    KVR_CHECK_OK(kvr_op_embed(ws, tok, c, P, &e), &e);
    KVR_CHECK_OK(kvr_workspace_x_to_host(ws, got, c, &e), &e);
    for (int64_t r = 0; r < c; r++)
        for (int64_t i = 0; i < D; i++) bo_err_add(&er, got[r * D + i], m->tok_embd[tok[r] * D + i]);
    kvr_test_checks++;
    if (er.max_abs != 0) {
        kvr_test_fails++;
        fprintf(stderr, "FAIL %s %s embed: rows differ from the token embeddings\n",
                kvr_backend_name(be), shape);
    }
    bo_report(kvr_backend_name(be), shape, 0, &er, tol);

    /* pre: the prefix [0, P) in chunks of up to c rows, then the chunk; every KV row [0, S) */
    for (int64_t p0 = 0; p0 < S; p0 += KVR_MIN(c, P - p0 > 0 ? P - p0 : c)) {
        const int64_t n = p0 < P ? KVR_MIN(c, P - p0) : c; /* the last one is (c, P) */
        KVR_CHECK_OK(kvr_op_set_chunk(ws, n, p0, &e), &e);
        KVR_CHECK_OK(kvr_workspace_x_from_host(ws, xf + p0 * D, n, &e), &e);
        KVR_CHECK_OK(kvr_op_pre(ws, BO_LAYER, &e), &e);
    }
    for (int64_t r = 0; r < S; r++)
        ref_pre_row(m, BO_LAYER, x + r * D, r, r >= P ? q + (r - P) * NH * HS : qtmp, K + r * kvd,
                    Vc + r * kvd);
    KVR_CHECK_OK(kvr_workspace_kv_to_host(ws, BO_LAYER, 0, S, got, got_v, &e), &e);
    er = (bo_err){0, 0};
    for (int64_t i = 0; i < S * kvd; i++) bo_err_add(&er, got[i], K[i]);
    for (int64_t i = 0; i < S * kvd; i++) bo_err_add(&er, got_v[i], Vc[i]);
    bo_report(kvr_backend_name(be), shape, 1, &er, tol);

    /* attn: the LSE of every row and head; its output is checked through post */
    KVR_CHECK_OK(kvr_op_attn(ws, BO_LAYER, lse, &e), &e);
    bo_err el = {0, 0}, ep = {0, 0};
    for (int64_t r = 0; r < c; r++) {
        double *xr = x + (P + r) * D;
        ref_attn_row(cfg, q + r * NH * HS, K, Vc, P + r + 1, att, rl, sc);
        for (int64_t hh = 0; hh < NH; hh++) bo_err_add(&el, lse[r * NH + hh], rl[hh]);
        ref_post_row(m, BO_LAYER, xr, att);
    }
    bo_report(kvr_backend_name(be), shape, 2, &el, tol);

    /* post: x of the chunk after attention, O-proj, MLP and residuals */
    KVR_CHECK_OK(kvr_op_post(ws, BO_LAYER, &e), &e);
    KVR_CHECK_OK(kvr_workspace_x_to_host(ws, got, c, &e), &e);
    for (int64_t i = 0; i < c * D; i++) bo_err_add(&ep, got[i], x[P * D + i]);
    bo_report(kvr_backend_name(be), shape, 3, &ep, tol);

    /* head: logits of the last row, and their argmax */
    int32_t top = -1;
    KVR_CHECK_OK(kvr_op_head(ws, &top, &e), &e);
    KVR_CHECK_OK(kvr_workspace_logits_to_host(ws, got, &e), &e);
    ref_rmsnorm(h, x + (S - 1) * D, m->output_norm, D, cfg->norm_eps);
    ref_matvec(logits, m->output, h, V, D);
    er = (bo_err){0, 0};
    for (int64_t i = 0; i < V; i++) bo_err_add(&er, got[i], logits[i]);
    bo_report(kvr_backend_name(be), shape, 4, &er, tol);
    KVR_CHECK_EQ_INT(top, kvr_argmax(got, V));

    /* attn_block: the chunk again, its attention as three blocks of the cache in a shuffled
     * order (the last one first, a block entirely later than early rows, an empty one), merged
     * by log-sum-exp; checked through post against the same reference x */
    KVR_CHECK_OK(kvr_op_set_chunk(ws, c, P, &e), &e);
    KVR_CHECK_OK(kvr_workspace_x_from_host(ws, xf + P * D, c, &e), &e);
    KVR_CHECK_OK(kvr_op_pre(ws, BO_LAYER, &e), &e);
    char *kb, *vb;
    kvr_workspace_kv_buffers(ws, BO_LAYER, (void **)&kb, (void **)&vb);
    const int64_t b1 = S / 3, b2 = P + c / 2, rb = sizeof(float) * kvd;
    const int64_t blocks[4][2] = {{b2, S - b2}, {0, b1}, {b1, 0}, {b1, b2 - b1}};
    kvr_status sb = KVR_OK;
    for (int i = 0; i < 4 && sb == KVR_OK; i++)
        sb = kvr_op_attn_block(ws, kb + blocks[i][0] * rb, vb + blocks[i][0] * rb, blocks[i][0],
                               blocks[i][1], i == 0, &e);
    if (sb == KVR_ERR_UNSUPPORTED) { /* a backend without it: ring is refused there */
        if (g_verbose) printf("  %-5s %-28s attn_block: %s\n", kvr_backend_name(be), shape, e.msg);
    } else {
        KVR_CHECK_OK(sb, &e);
        KVR_CHECK_OK(kvr_op_post(ws, BO_LAYER, &e), &e);
        KVR_CHECK_OK(kvr_workspace_x_to_host(ws, got, c, &e), &e);
        er = (bo_err){0, 0};
        for (int64_t i = 0; i < c * D; i++) bo_err_add(&er, got[i], x[P * D + i]);
        bo_report(kvr_backend_name(be), shape, 5, &er, tol);
    }

    free(xf), free(got), free(got_v), free(lse), free(tok), free(x), free(q), free(K), free(Vc);
    free(att), free(rl), free(sc), free(qtmp), free(h), free(logits);
    kvr_workspace_destroy(ws);
    kvr_weights_free(w);
}

static void test_ops_grid(void) {
    for (int32_t b = 0; b < kvr_backend_count(); b++) {
        const kvr_backend *be = kvr_backend_at(b);
        if (!bo_usable(be)) continue;
        memset(g_worst, 0, sizeof g_worst);
        kvr_model *models[BO_N_MODELS] = {0};
        for (int i = 0; i < BO_N_MODELS; i++) {
            models[i] = bo_model_create(&bo_models[i], 1000 + (uint64_t)i);
            KVR_CHECK(models[i] != NULL);
        }
        for (int i = 0; i < BO_N_CASES; i++)
            if (models[bo_cases[i].model])
                bo_run_case(be, models[bo_cases[i].model], &bo_cases[i], 77 + (uint64_t)i);
        const kvr_backend_info info = kvr_backend_get_info(be);
        printf("backend %s (%s, %s): %d shapes, max rel err embed %.2g, pre %.2g, attn (lse) %.2g, "
               "post %.2g, head %.2g, attn_block (through post) %.2g (tolerance %.0e)\n",
               info.name, info.device, info.dtype, BO_N_CASES, g_worst[0], g_worst[1], g_worst[2],
               g_worst[3], g_worst[4], g_worst[5], bo_tolerance(info.dtype));
        for (int i = 0; i < BO_N_MODELS; i++) kvr_model_destroy(models[i]);
    }
}

// ----------------------------------------------------------------------------
// the contract's errors and bookkeeping

static void test_registry(void) {
    kvr_error e;
    const kvr_backend *be = NULL;
    KVR_CHECK(kvr_backend_count() >= 1);
    KVR_CHECK_OK(kvr_backend_get("cpu", &be, &e), &e);
    KVR_CHECK(be == kvr_backend_at(0));
    KVR_CHECK(strcmp(kvr_backend_name(be), "cpu") == 0);
    KVR_CHECK(kvr_backend_mem_space(be) == KVR_MEM_HOST);
    KVR_CHECK(kvr_backend_at(kvr_backend_count()) == NULL);
    const kvr_backend_info info = kvr_backend_get_info(be);
    KVR_CHECK(info.library && info.library[0] && strcmp(info.dtype, "f32") == 0);
    KVR_CHECK_EQ_INT(kvr_backend_get("tpu", &be, &e), KVR_ERR_INVALID_ARG);
    KVR_CHECK(be == NULL && strstr(e.msg, "unknown backend 'tpu' (cpu, cuda)"));
#ifndef KVR_USE_CUDA
    KVR_CHECK_EQ_INT(kvr_backend_get("cuda", &be, &e), KVR_ERR_UNSUPPORTED);
    KVR_CHECK(strstr(e.msg, "built without the CUDA backend") != NULL);
#else
    /* built in: found when a device is present, else a clear error */
    kvr_status st = kvr_backend_get("cuda", &be, &e);
    KVR_CHECK(st == KVR_OK || (st == KVR_ERR_CUDA && be == NULL &&
                               strncmp(e.msg, "no CUDA device: ", 16) == 0));
    if (st == KVR_OK) KVR_CHECK(kvr_backend_mem_space(be) == KVR_MEM_DEVICE);
#endif
    for (int32_t i = 0; i < kvr_backend_count(); i++) {
        const kvr_backend *b = kvr_backend_at(i), *again = NULL;
        if (!bo_usable(b)) continue;
        KVR_CHECK_OK(kvr_backend_get(kvr_backend_name(b), &again, &e), &e);
        KVR_CHECK(again == b);
    }
}

static void test_contract_errors(void) {
    kvr_model *m = bo_model_create(&bo_models[0], 5);
    KVR_CHECK(m != NULL);
    if (!m) return;
    for (int32_t b = 0; b < kvr_backend_count(); b++) {
        const kvr_backend *be = kvr_backend_at(b);
        if (!bo_usable(be)) continue;
        kvr_error e;
        kvr_weights *w = NULL;
        kvr_workspace *ws = NULL;
        KVR_CHECK_OK(kvr_weights_upload(be, m, &w, &e), &e);
        KVR_CHECK_EQ_INT(kvr_workspace_create(w, 0, 8, 1, &ws, &e), KVR_ERR_INVALID_ARG);
        KVR_CHECK_EQ_INT(kvr_workspace_create(w, 9, 8, 1, &ws, &e), KVR_ERR_INVALID_ARG);
        KVR_CHECK_EQ_INT(kvr_workspace_create(w, 4, 8, 0, &ws, &e), KVR_ERR_INVALID_ARG);
        KVR_CHECK_OK(kvr_workspace_create(w, 4, 8, 1, &ws, &e), &e);
        if (!ws) {
            kvr_weights_free(w);
            continue;
        }
        KVR_CHECK(kvr_workspace_backend(ws) == be);
        KVR_CHECK_EQ_INT(kvr_workspace_config(ws)->d_model, bo_models[0].D);
        /* ops before a chunk, bad layers, chunks that do not fit, ids outside the vocabulary */
        KVR_CHECK_EQ_INT(kvr_op_pre(ws, 0, &e), KVR_ERR_INVALID_ARG);
        KVR_CHECK_EQ_INT(kvr_op_head(ws, NULL, &e), KVR_ERR_INVALID_ARG);
        float blk[64];
        KVR_CHECK_EQ_INT(kvr_op_attn_block(ws, blk, blk, 0, 1, true, &e), KVR_ERR_INVALID_ARG);
        KVR_CHECK_EQ_INT(kvr_op_set_chunk(ws, 5, 0, &e), KVR_ERR_INVALID_ARG);
        KVR_CHECK_EQ_INT(kvr_op_set_chunk(ws, 4, 5, &e), KVR_ERR_INVALID_ARG);
        KVR_CHECK(strstr(e.msg, "does not fit the workspace") != NULL);
        const int32_t bad[2] = {1, bo_models[0].V};
        KVR_CHECK_EQ_INT(kvr_op_embed(ws, bad, 2, 3, &e), KVR_ERR_INVALID_ARG);
        KVR_CHECK(strstr(e.msg, "at position 4 is outside the vocabulary") != NULL);
        KVR_CHECK_OK(kvr_op_set_chunk(ws, 4, 4, &e), &e);
        KVR_CHECK_EQ_INT(kvr_op_attn(ws, BO_LAYERS, NULL, &e), KVR_ERR_INVALID_ARG);
        KVR_CHECK_EQ_INT(kvr_op_post(ws, -1, &e), KVR_ERR_INVALID_ARG);
        KVR_CHECK_EQ_INT(kvr_op_attn_block(ws, blk, blk, 0, -1, true, &e), KVR_ERR_INVALID_ARG);
        KVR_CHECK_EQ_INT(kvr_op_attn_block(ws, NULL, blk, 0, 1, true, &e), KVR_ERR_INVALID_ARG);
        KVR_CHECK_EQ_INT(kvr_workspace_kv_to_host(ws, 0, 6, 3, NULL, NULL, &e), KVR_ERR_INVALID_ARG);
        KVR_CHECK_EQ_INT(kvr_workspace_x_from_host(ws, NULL, 5, &e), KVR_ERR_INVALID_ARG);
        /* a fresh cache is zero; raw buffers say where they live */
        float kv[8 * 64 * 2];
        KVR_CHECK_OK(kvr_workspace_kv_to_host(ws, 1, 0, 8, kv, NULL, &e), &e);
        bool zero = true;
        for (int i = 0; i < 8 * bo_models[0].NKV * bo_models[0].HS; i++) zero = zero && kv[i] == 0;
        KVR_CHECK(zero);
        void *k0 = NULL, *v0 = NULL, *k1 = NULL, *v1 = NULL;
        KVR_CHECK(kvr_workspace_kv_buffers(ws, 0, &k0, &v0) == kvr_backend_mem_space(be));
        kvr_workspace_kv_buffers(ws, 1, &k1, &v1);
        KVR_CHECK(k0 && v0 && k1 && v1 && k0 != k1 && k0 != v0);
        /* events: elapsed needs two recorded events, and is >= 0 */
        kvr_event *a = NULL, *z = NULL;
        double us = -1;
        KVR_CHECK_OK(kvr_event_create(ws, &a, &e), &e);
        KVR_CHECK_OK(kvr_event_create(ws, &z, &e), &e);
        KVR_CHECK_EQ_INT(kvr_event_elapsed_us(a, z, &us, &e), KVR_ERR_INVALID_ARG);
        KVR_CHECK_OK(kvr_event_record(a, &e), &e);
        KVR_CHECK_OK(kvr_op_pre(ws, 1, &e), &e);
        KVR_CHECK_OK(kvr_event_record(z, &e), &e);
        KVR_CHECK_OK(kvr_event_elapsed_us(a, z, &us, &e), &e);
        KVR_CHECK(us >= 0);
        KVR_CHECK_OK(kvr_workspace_sync(ws, &e), &e);
        kvr_event_destroy(a), kvr_event_destroy(z);
        kvr_workspace_destroy(ws);
        kvr_weights_free(w);
    }
    kvr_model_destroy(m);
}

/* kvr_workspace_kv_copy: rows of one workspace's cache into another's (ring's decode), exact,
 * nothing else touched; rows outside either cache, bad layers and another model refused. */
static void test_kv_copy(void) {
    kvr_model *m = bo_model_create(&bo_models[0], 5), *m2 = bo_model_create(&bo_models[1], 6);
    KVR_CHECK(m != NULL && m2 != NULL);
    if (!m || !m2) {
        kvr_model_destroy(m), kvr_model_destroy(m2);
        return;
    }
    const int64_t kvd = (int64_t)bo_models[0].NKV * bo_models[0].HS;
    for (int32_t b = 0; b < kvr_backend_count(); b++) {
        const kvr_backend *be = kvr_backend_at(b);
        if (!bo_usable(be)) continue;
        kvr_error e;
        kvr_weights *w = NULL, *w2 = NULL;
        kvr_workspace *src = NULL, *dst = NULL, *other = NULL;
        KVR_CHECK_OK(kvr_weights_upload(be, m, &w, &e), &e);
        KVR_CHECK_OK(kvr_weights_upload(be, m2, &w2, &e), &e);
        if (w) KVR_CHECK_OK(kvr_workspace_create(w, 4, 8, 1, &src, &e), &e);
        if (w) KVR_CHECK_OK(kvr_workspace_create(w, 2, 12, 1, &dst, &e), &e);
        if (w2) KVR_CHECK_OK(kvr_workspace_create(w2, 2, 12, 1, &other, &e), &e);
        if (src && dst && other) {
            const int32_t ids[4] = {3, 1, 4, 1};
            KVR_CHECK_OK(kvr_op_embed(src, ids, 4, 2, &e), &e);
            KVR_CHECK_OK(kvr_op_pre(src, 1, &e), &e); /* rows 2..5 of layer 1 */
            KVR_CHECK_OK(kvr_workspace_kv_copy(dst, src, 1, 2, 4, &e), &e);
            float *ks = calloc((size_t)(12 * kvd), sizeof(float));
            float *vs = calloc((size_t)(12 * kvd), sizeof(float));
            float *kd = calloc((size_t)(12 * kvd), sizeof(float));
            float *vd = calloc((size_t)(12 * kvd), sizeof(float));
            KVR_CHECK_OK(kvr_workspace_kv_to_host(src, 1, 0, 8, ks, vs, &e), &e);
            KVR_CHECK_OK(kvr_workspace_kv_to_host(dst, 1, 0, 12, kd, vd, &e), &e);
            bool same = true, zero = true, nonzero = false;
            for (int64_t i = 0; i < 12 * kvd; i++) {
                const int64_t row = i / kvd;
                if (row >= 2 && row < 6) {
                    same = same && kd[i] == ks[i] && vd[i] == vs[i];
                    nonzero = nonzero || ks[i] != 0;
                } else {
                    zero = zero && kd[i] == 0 && vd[i] == 0;
                }
            }
            KVR_CHECK(same && zero && nonzero);
            KVR_CHECK_OK(kvr_workspace_kv_to_host(dst, 0, 0, 12, kd, vd, &e), &e);
            for (int64_t i = 0; i < 12 * kvd; i++) zero = zero && kd[i] == 0 && vd[i] == 0;
            KVR_CHECK(zero); /* layer 0 untouched */
            free(ks), free(vs), free(kd), free(vd);
            KVR_CHECK_EQ_INT(kvr_workspace_kv_copy(dst, src, 1, 6, 4, &e), KVR_ERR_INVALID_ARG);
            KVR_CHECK(strstr(e.msg, "outside") != NULL);
            KVR_CHECK_EQ_INT(kvr_workspace_kv_copy(dst, src, BO_LAYERS, 0, 1, &e),
                             KVR_ERR_INVALID_ARG);
            KVR_CHECK_EQ_INT(kvr_workspace_kv_copy(other, src, 0, 0, 1, &e), KVR_ERR_INVALID_ARG);
        }
        kvr_workspace_destroy(src), kvr_workspace_destroy(dst), kvr_workspace_destroy(other);
        kvr_weights_free(w), kvr_weights_free(w2);
    }
    kvr_model_destroy(m), kvr_model_destroy(m2);
}

// ----------------------------------------------------------------------------
// stored types: a quantized model against its own fp32 expansion on the cpu backend

/* Run a whole prefill of c tokens (every layer, then the head) and return the logits. */
static float *bo_prefill_logits(const kvr_model *m, int64_t c, int32_t nt) {
    const kvr_backend *be = NULL;
    kvr_weights *w = NULL;
    kvr_workspace *ws = NULL;
    kvr_error e;
    const int32_t V = m->cfg.vocab_size;
    float *logits = malloc((size_t)V * sizeof(float));
    int32_t *ids = malloc((size_t)c * sizeof(int32_t));
    KVR_CHECK_OK(kvr_backend_get("cpu", &be, &e), &e);
    KVR_CHECK_OK(kvr_weights_upload(be, m, &w, &e), &e);
    KVR_CHECK_OK(kvr_workspace_create(w, c, c, nt, &ws, &e), &e);
    for (int64_t i = 0; i < c; i++) ids[i] = (int32_t)((i * 7919 + 13) % V);
    KVR_CHECK_OK(kvr_op_embed(ws, ids, c, 0, &e), &e);
    for (int32_t l = 0; l < m->cfg.n_layers; l++) {
        KVR_CHECK_OK(kvr_op_pre(ws, l, &e), &e);
        KVR_CHECK_OK(kvr_op_attn(ws, l, NULL, &e), &e);
        KVR_CHECK_OK(kvr_op_post(ws, l, &e), &e);
    }
    KVR_CHECK_OK(kvr_op_head(ws, NULL, &e), &e);
    KVR_CHECK_OK(kvr_workspace_logits_to_host(ws, logits, &e), &e);
    kvr_workspace_destroy(ws);
    kvr_weights_free(w);
    free(ids);
    return logits;
}

/* The fuzz seeds hold every readable type (F16, BF16, the 32-element quants, the K-quants,
 * IQ4_*); the cpu backend keeps them stored and dequantizes per GEMM. A chunk above
 * KVR_ROWDOT_MAX (8) takes the scratch + sgemm path: logits bit-identical to the same model
 * expanded to fp32 at load (the same values, the same sgemm). A chunk of at most 8 multiplies row
 * by row in the stored type: the same values summed in another order. */
static void test_stored_types(void) {
    static const char *const seeds[] = {"tiny_q4_1_f16_bf16.gguf",   "tiny_q4_0_q8_0_tied.gguf",
                                        "tiny_q5_0_q5_1_iq4_nl.gguf", "wide_k_quants.gguf",
                                        "tiny_qwen2_bias.gguf", "tiny_llama_bias_rope_freqs.gguf"};
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/tests/fuzz/corpus_gguf/%s", KVR_SOURCE_DIR, seeds[i]);
        kvr_model_load_params lp = kvr_model_load_params_default();
        lp.load_tokenizer = false;
        kvr_model *q = NULL, *f = NULL;
        kvr_error e;
        KVR_CHECK_OK(kvr_model_load_gguf(path, &lp, &q, &e), &e);
        if (!q) continue;
        bool quantized = false;
        for (int s = 0; s < q->n_slots; s++) quantized |= q->tensors[s].type != 0;
        KVR_CHECK(quantized);
        float *all = NULL;
        size_t n = 0;
        KVR_CHECK_OK(model_dequant_all(q, &all, &n, &e), &e);
        KVR_CHECK_OK(model_alloc(&q->cfg, NULL, &f, &e), &e);
        if (!f || !all) {
            free(all);
            kvr_model_destroy(q);
            continue;
        }
        KVR_CHECK_EQ_INT(f->arena_bytes, n * sizeof(float));
        memcpy(f->arena, all, n * sizeof(float));
        KVR_CHECK_OK(model_alloc_extras(f, q->layers[0].bqkv != NULL, q->rope_factors != NULL, &e),
                     &e); /* biases, RoPE factors: fp32 in both */
        KVR_CHECK_EQ_INT(f->extra_floats, q->extra_floats);
        if (q->extra_floats) memcpy(f->extra, q->extra, q->extra_floats * sizeof(float));
        free(all);
        const int64_t chunks[2] = {40, 5};
        for (int k = 0; k < 2; k++)
            for (int32_t nt = 1; nt <= 2; nt++) {
                float *a = bo_prefill_logits(q, chunks[k], nt), *b = bo_prefill_logits(f, chunks[k], nt);
                double md = 0, mx = 0;
                for (int32_t v = 0; v < q->cfg.vocab_size; v++) {
                    md = fmax(md, fabs((double)a[v] - b[v]));
                    mx = fmax(mx, fabs((double)b[v]));
                }
                if (g_verbose)
                    printf("  %s c=%lld t=%d: max |stored - fp32| = %.3g (max |logit| %.3g)\n",
                           seeds[i], (long long)chunks[k], nt, md, mx);
                if (chunks[k] > 8)
                    KVR_CHECK(memcmp(a, b, (size_t)q->cfg.vocab_size * sizeof(float)) == 0);
                else
                    KVR_CHECK(md <= 1e-4 * mx && mx > 0);
                free(a);
                free(b);
            }
        kvr_model_destroy(f);
        kvr_model_destroy(q);
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        g_verbose = true;
        argc--, argv++;
    }
    static const kvr_test_case cases[] = {
        {"registry", test_registry},
        {"contract_errors", test_contract_errors},
        {"ops_grid", test_ops_grid},
        {"kv_copy", test_kv_copy},
        {"stored_types", test_stored_types},
    };
    return kvr_test_main(cases, (int)(sizeof cases / sizeof cases[0]), argc, argv);
}
