/* test_cuda.c -- the CUDA backend on a device (label gpu; exits 77 where this build has no CUDA
 * backend or the machine no device, so CPU-only runs skip it):
 *   attn_cross: FlashInfer's attention (when compiled in) against the backend's own tiled kernel
 *     (KVR_CUDA_ATTN=kvr) on the same inputs -- the per-row LSE and x after post, over chunks
 *     after prefixes, GQA and MQA, head dims 64 and 128 (llama-3-8b / falcon-7b-like heads);
 *   model_tiny: the tiny and tiny-mqa presets prefilled single-rank through the seam on cpu and
 *     cuda (one chunk, and two chunks on cuda): the same first token, logits within bf16 bounds.
 * test_backend_ops covers every op against the fp64 reference on a device; scripts/gpu-check
 * runs both. */
#include "kvr_backend.h"
#include "kvr_test.h"
#include "runtime_internal.h"

#include <stdlib.h>

static uint64_t tc_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float tc_uniform(uint64_t *s) { /* [-1, 1) */
    return (float)((double)(tc_next(s) >> 40) * (2.0 / 16777216.0) - 1.0);
}

/* max |a - b| / max |b| */
static double tc_rel(const float *a, const float *b, int64_t n) {
    double d = 0, r = 0;
    for (int64_t i = 0; i < n; i++) {
        const double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= d)) d = e;
        if (fabs((double)b[i]) > r) r = fabs((double)b[i]);
    }
    return d / (r > 0 ? r : 1);
}

static const kvr_backend *g_cuda;

// ----------------------------------------------------------------------------
// FlashInfer against the tiled kernel

/* Run pre over rows [0, P + c) (the prefix in chunks of c), then attn (LSE) and post on the chunk
 * at P; lse (c, NH) and x (c, D) to host. */
static void tc_layer(kvr_workspace *ws, const float *x, int64_t c, int64_t P, float *lse,
                     float *xout) {
    const kvr_model_config *cfg = kvr_workspace_config(ws);
    kvr_error e;
    for (int64_t p0 = 0; p0 < P + c;) {
        const int64_t n = p0 < P ? KVR_MIN(c, P - p0) : c;
        KVR_CHECK_OK(kvr_op_set_chunk(ws, n, p0, &e), &e);
        KVR_CHECK_OK(kvr_workspace_x_from_host(ws, x + p0 * cfg->d_model, n, &e), &e);
        KVR_CHECK_OK(kvr_op_pre(ws, 1, &e), &e);
        p0 += n;
    }
    KVR_CHECK_OK(kvr_op_attn(ws, 1, lse, &e), &e);
    KVR_CHECK_OK(kvr_op_post(ws, 1, &e), &e);
    KVR_CHECK_OK(kvr_workspace_x_to_host(ws, xout, c, &e), &e);
}

static void tc_fill(float *p, size_t n, float scale, float offset, uint64_t *s) {
    for (size_t i = 0; i < n; i++) p[i] = offset + scale * tc_uniform(s);
}

/* A 2-layer model of the given head shape with seeded random weights (scores of a few units,
 * as in test_backend_ops). */
static kvr_model *tc_model(int32_t D, int32_t NH, int32_t NKV, int32_t HS, uint64_t seed) {
    kvr_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.arch, sizeof cfg.arch, "llama");
    snprintf(cfg.name, sizeof cfg.name, "cross-%d-%d-%d", NH, NKV, HS);
    cfg.n_layers = 2, cfg.d_model = D, cfg.n_heads = NH, cfg.n_kv_heads = NKV;
    cfg.head_dim = HS, cfg.d_ff = 256, cfg.vocab_size = 128, cfg.max_context = 8192;
    cfg.rope_theta = 10000.0f, cfg.norm_eps = 1e-5f;
    kvr_model *m = NULL;
    kvr_error e;
    KVR_CHECK_OK(model_alloc(&cfg, NULL, &m, &e), &e);
    if (!m) return NULL;
    const size_t nqkv = (size_t)(NH + 2 * NKV) * (size_t)HS, FF = 256;
    const float sd = 1.0f / sqrtf((float)D);
    uint64_t s = seed;
    tc_fill(m->tok_embd, 128 * (size_t)D, 1.0f, 0.0f, &s);
    tc_fill(m->output_norm, (size_t)D, 0.1f, 1.0f, &s);
    tc_fill(m->output, 128 * (size_t)D, sd, 0.0f, &s);
    for (int l = 0; l < 2; l++) {
        kvr_layer_weights *w = &m->layers[l];
        tc_fill(w->attn_norm, (size_t)D, 0.1f, 1.0f, &s);
        tc_fill(w->wqkv, nqkv * (size_t)D, 2.5f * sd, 0.0f, &s);
        tc_fill(w->wo, (size_t)D * (size_t)(NH * HS), 1.0f / sqrtf((float)(NH * HS)), 0.0f, &s);
        tc_fill(w->ffn_norm, (size_t)D, 0.1f, 1.0f, &s);
        tc_fill(w->w_gate_up, 2 * FF * (size_t)D, 1.7f * sd, 0.0f, &s);
        tc_fill(w->w_down, (size_t)D * FF, 1.0f / sqrtf((float)FF), 0.0f, &s);
    }
    return m;
}

static void test_attn_cross(void) {
    const kvr_backend_info info = kvr_backend_get_info(g_cuda);
    if (!strstr(info.library, "FlashInfer")) {
        printf("attn_cross: this build has no FlashInfer (%s): nothing to cross-check\n",
               info.library);
        return;
    }
    if (strcmp(info.dtype, "bf16") != 0) {
        printf("attn_cross: FlashInfer runs bf16 only (KVR_CUDA_DTYPE gives %s)\n", info.dtype);
        return;
    }
    /* head shapes of llama-3-8b (GQA 4:1, HS 128), falcon-7b (MQA, HS 64), MHA at HS 64 */
    static const int32_t shapes[][4] = {{256, 8, 2, 128}, {256, 4, 1, 64}, {256, 4, 4, 64}};
    static const int64_t cp[][2] = {{1, 0}, {17, 5}, {128, 0}, {300, 1000}, {64, 3000}, {513, 7}};
    double worst_lse = 0, worst_x = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        kvr_error e;
        kvr_model *m = tc_model(shapes[si][0], shapes[si][1], shapes[si][2], shapes[si][3], 5 + si);
        if (!m) return;
        const kvr_model_config *cfg = kvr_model_get_config(m);
        kvr_weights *w = NULL;
        KVR_CHECK_OK(kvr_weights_upload(g_cuda, m, &w, &e), &e);
        for (size_t ci = 0; w && ci < sizeof cp / sizeof cp[0]; ci++) {
            const int64_t c = cp[ci][0], P = cp[ci][1], S = P + c, D = cfg->d_model;
            kvr_workspace *fi = NULL, *own = NULL;
            KVR_CHECK_OK(kvr_workspace_create(w, c, S, 1, &fi, &e), &e);
            setenv("KVR_CUDA_ATTN", "kvr", 1);
            KVR_CHECK_OK(kvr_workspace_create(w, c, S, 1, &own, &e), &e);
            unsetenv("KVR_CUDA_ATTN");
            float *x = malloc((size_t)(S * D) * sizeof *x);
            float *l1 = malloc((size_t)(c * cfg->n_heads) * sizeof *l1);
            float *l2 = malloc((size_t)(c * cfg->n_heads) * sizeof *l2);
            float *x1 = malloc((size_t)(c * D) * sizeof *x1), *x2 = malloc((size_t)(c * D) * sizeof *x2);
            uint64_t s = 99 + ci;
            for (int64_t i = 0; i < S * D; i++) x[i] = tc_uniform(&s);
            if (fi && own) {
                tc_layer(fi, x, c, P, l1, x1);
                tc_layer(own, x, c, P, l2, x2);
                const double rl = tc_rel(l1, l2, c * cfg->n_heads), rx = tc_rel(x1, x2, c * D);
                if (rl > worst_lse) worst_lse = rl;
                if (rx > worst_x) worst_x = rx;
                kvr_test_checks++;
                if (!(rl <= 3e-2 && rx <= 3e-2)) {
                    kvr_test_fails++;
                    fprintf(stderr, "FAIL %s c=%lld P=%lld: FlashInfer vs kernel: lse %.3g, x %.3g\n",
                            cfg->name, (long long)c, (long long)P, rl, rx);
                }
            }
            free(x), free(l1), free(l2), free(x1), free(x2);
            kvr_workspace_destroy(fi), kvr_workspace_destroy(own);
        }
        kvr_weights_free(w);
        kvr_model_destroy(m);
    }
    printf("attn_cross: FlashInfer vs the tiled kernel: max rel err lse %.3g, x after post %.3g\n",
           worst_lse, worst_x);
}

// ----------------------------------------------------------------------------
// the tiny presets end to end

/* Single-rank prefill of n tokens in chunks of chunk: logits (V) and the first token. */
static int32_t tc_prefill(const kvr_backend *be, const kvr_model *m, const int32_t *tok,
                          int64_t n, int64_t chunk, float *logits) {
    const kvr_model_config *cfg = kvr_model_get_config(m);
    kvr_error e;
    kvr_weights *w = NULL;
    kvr_workspace *ws = NULL;
    int32_t top = -1;
    KVR_CHECK_OK(kvr_weights_upload(be, m, &w, &e), &e);
    if (w) KVR_CHECK_OK(kvr_workspace_create(w, chunk, n, 1, &ws, &e), &e);
    for (int64_t p0 = 0; ws && p0 < n; p0 += chunk) {
        const int64_t c = KVR_MIN(chunk, n - p0);
        KVR_CHECK_OK(kvr_op_embed(ws, tok + p0, c, p0, &e), &e);
        for (int32_t l = 0; l < cfg->n_layers; l++) {
            KVR_CHECK_OK(kvr_op_pre(ws, l, &e), &e);
            KVR_CHECK_OK(kvr_op_attn(ws, l, NULL, &e), &e);
            KVR_CHECK_OK(kvr_op_post(ws, l, &e), &e);
        }
    }
    if (ws) {
        KVR_CHECK_OK(kvr_op_head(ws, &top, &e), &e);
        KVR_CHECK_OK(kvr_workspace_logits_to_host(ws, logits, &e), &e);
    }
    kvr_workspace_destroy(ws);
    kvr_weights_free(w);
    return top;
}

static void test_model_tiny(void) {
    const kvr_backend *cpu = NULL;
    kvr_error e;
    KVR_CHECK_OK(kvr_backend_get("cpu", &cpu, &e), &e);
    const char *presets[] = {"tiny", "tiny-mqa"};
    for (int pi = 0; pi < 2; pi++) {
        kvr_model_load_params lp = kvr_model_load_params_default();
        kvr_model *m = NULL;
        KVR_CHECK_OK(kvr_model_create_preset(presets[pi], &lp, &m, &e), &e);
        if (!m) return;
        const int64_t V = kvr_model_get_config(m)->vocab_size, n = 200;
        int32_t tok[200];
        float *lc = malloc((size_t)V * sizeof *lc), *lg = malloc((size_t)V * sizeof *lg);
        float *lg2 = malloc((size_t)V * sizeof *lg2);
        /* a prompt whose first token the CPU picks by a clear margin (>= 5% of max |logit|,
         * beyond bf16's error), so "the same first token" is a strict check */
        int32_t t_cpu = -1;
        double margin = 0, scale = 0;
        for (uint64_t seed = 1; seed <= 64 && !(margin >= 0.05 * scale && scale > 0); seed++) {
            uint64_t s = seed;
            for (int64_t i = 0; i < n; i++) tok[i] = (int32_t)(tc_next(&s) % (uint64_t)V);
            t_cpu = tc_prefill(cpu, m, tok, n, n, lc);
            float second = -INFINITY;
            scale = 0;
            for (int64_t i = 0; i < V; i++) {
                if (i != t_cpu && lc[i] > second) second = lc[i];
                if (fabs((double)lc[i]) > scale) scale = fabs((double)lc[i]);
            }
            margin = t_cpu >= 0 ? (double)(lc[t_cpu] - second) : 0;
        }
        const int32_t t_gpu = tc_prefill(g_cuda, m, tok, n, n, lg);
        const int32_t t_gpu2 = tc_prefill(g_cuda, m, tok, n, 120, lg2); /* 120 + 80 */
        const double r1 = tc_rel(lg, lc, V), r2 = tc_rel(lg2, lc, V);
        printf("model_tiny %s: first token cpu %d cuda %d (two chunks %d), logits max rel err %.3g"
               " (two chunks %.3g), cpu top-2 margin %.3g of max |logit| %.3g\n",
               presets[pi], t_cpu, t_gpu, t_gpu2, r1, r2, margin, scale);
        KVR_CHECK(margin >= 0.05 * scale);
        KVR_CHECK(r1 <= 3e-2 && r2 <= 3e-2);
        KVR_CHECK_EQ_INT(t_gpu, t_cpu);
        KVR_CHECK_EQ_INT(t_gpu2, t_cpu);
        free(lc), free(lg), free(lg2);
        kvr_model_destroy(m);
    }
}

int main(int argc, char **argv) {
    kvr_error e;
    if (kvr_backend_get("cuda", &g_cuda, &e) != KVR_OK) {
        printf("skip: cuda backend: %s\n", e.msg);
        return 77;
    }
    printf("cuda backend: %s; %s; %s\n", kvr_backend_get_info(g_cuda).device,
           kvr_backend_get_info(g_cuda).library, kvr_backend_get_info(g_cuda).dtype);
    static const kvr_test_case cases[] = {
        {"attn_cross", test_attn_cross},
        {"model_tiny", test_model_tiny},
    };
    return kvr_test_main(cases, (int)(sizeof cases / sizeof cases[0]), argc, argv);
}
