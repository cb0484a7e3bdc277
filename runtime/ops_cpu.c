/* ops_cpu.c -- the CPU layer kernels: embedding, RMSNorm, RoPE at global positions, GEMMs
 * through CBLAS (OpenBLAS, single-threaded per call, split across this rank's OpenMP team so
 * several ranks can share one process), causal attention of c queries over a P-token prefix
 * plus the chunk (GQA/MQA, query blocks, numerically stable softmax), SwiGLU, residuals, and
 * the LM head on the last token. This file is the reference every GPU kernel is compared with.
 * Compiled with -ffast-math: no code here relies on NaN/Inf semantics. */
#include "kvr_runtime.h"
#include "runtime_internal.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Query rows per attention task: big enough for efficient GEMMs, small enough that the causal
 * waste inside a block (QB/2 keys per row) and the scratch (QB x max_ctx floats) stay small. */
#define KVR_ATTN_QB 128

struct kvr_layer_ws {
    const kvr_model *m;
    int64_t max_chunk, max_ctx;
    int32_t n_threads;
    int64_t c, pos0;  /* current chunk */
    float *x;         /* (c, D) hidden state */
    float *h;         /* (c, D) normed input */
    float *qkv;       /* (c, (NH+2NKV)*HS) */
    float *att;       /* (c, NH*HS) attention output */
    float *gu;        /* (c, 2*FF) gate | up */
    float *act;       /* (c, FF) */
    float *rope_cos;  /* (c, HS/2) */
    float *rope_sin;  /* (c, HS/2) */
    float *scratch;   /* (n_threads, QB, max_ctx) attention scores */
    float *kcache;    /* (L, max_ctx, NKV*HS) */
    float *vcache;    /* (L, max_ctx, NKV*HS) */
    float *hlast;     /* (D) */
    float *logits;    /* (V) */
    double *inv_freq; /* (HS/2) */
};

// ----------------------------------------------------------------------------
// workspace

/* Our own threads split every GEMM, so OpenBLAS must not start its own pool underneath. */
static pthread_once_t kvr_blas_once = PTHREAD_ONCE_INIT;
static void kvr_blas_single_thread(void) {
    openblas_set_num_threads(1);
}

void kvr_layer_ws_destroy(kvr_layer_ws *ws) {
    if (!ws) return;
    free(ws->x), free(ws->h), free(ws->qkv), free(ws->att), free(ws->gu), free(ws->act);
    free(ws->rope_cos), free(ws->rope_sin), free(ws->scratch), free(ws->kcache);
    free(ws->vcache), free(ws->hlast), free(ws->logits), free(ws->inv_freq);
    free(ws);
}

static float *kvr_ws_alloc(size_t n, bool *ok) {
    float *p = NULL;
    if (posix_memalign((void **)&p, 64, (n ? n : 1) * sizeof(float)) != 0) {
        *ok = false;
        return NULL;
    }
    return p;
}

kvr_status kvr_layer_ws_create(const kvr_model *m, int64_t max_chunk, int64_t max_ctx,
                               int32_t n_threads, kvr_layer_ws **out, kvr_error *err) {
    *out = NULL;
    pthread_once(&kvr_blas_once, kvr_blas_single_thread);
    const kvr_model_config *cfg = &m->cfg;
    if (max_chunk < 1 || max_ctx < max_chunk)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "workspace: need 1 <= max_chunk (%lld) <= max_ctx (%lld)",
                             (long long)max_chunk, (long long)max_ctx);
    if (n_threads < 1 || n_threads > 1024)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "workspace: %d threads", n_threads);
    kvr_layer_ws *ws = calloc(1, sizeof *ws);
    if (!ws) return kvr_error_set(err, KVR_ERR_NOMEM, "workspace: out of memory");
    ws->m = m;
    ws->max_chunk = max_chunk;
    ws->max_ctx = max_ctx;
    ws->n_threads = n_threads;
    const size_t c = (size_t)max_chunk, D = (size_t)cfg->d_model, HS = (size_t)cfg->head_dim;
    const size_t NH = (size_t)cfg->n_heads, NKV = (size_t)cfg->n_kv_heads, FF = (size_t)cfg->d_ff;
    const size_t kvd = NKV * HS, L = (size_t)cfg->n_layers;
    bool ok = true;
    ws->x = kvr_ws_alloc(c * D, &ok);
    ws->h = kvr_ws_alloc(c * D, &ok);
    ws->qkv = kvr_ws_alloc(c * (NH + 2 * NKV) * HS, &ok);
    ws->att = kvr_ws_alloc(c * NH * HS, &ok);
    ws->gu = kvr_ws_alloc(c * 2 * FF, &ok);
    ws->act = kvr_ws_alloc(c * FF, &ok);
    ws->rope_cos = kvr_ws_alloc(c * HS / 2, &ok);
    ws->rope_sin = kvr_ws_alloc(c * HS / 2, &ok);
    ws->scratch = kvr_ws_alloc((size_t)n_threads * KVR_ATTN_QB * (size_t)max_ctx, &ok);
    ws->kcache = kvr_ws_alloc(L * (size_t)max_ctx * kvd, &ok);
    ws->vcache = kvr_ws_alloc(L * (size_t)max_ctx * kvd, &ok);
    ws->hlast = kvr_ws_alloc(D, &ok);
    ws->logits = kvr_ws_alloc((size_t)cfg->vocab_size, &ok);
    ws->inv_freq = malloc(HS / 2 * sizeof(double));
    if (!ok || !ws->inv_freq) {
        double gib = (double)(2 * L * (size_t)max_ctx * kvd + c * (D * 2 + 4 * FF + 8 * NH * HS)) *
                     4 / (1 << 30);
        kvr_layer_ws_destroy(ws);
        return kvr_error_set(err, KVR_ERR_NOMEM,
                             "workspace for %lld tokens over %lld positions: cannot allocate "
                             "about %.2f GiB",
                             (long long)max_chunk, (long long)max_ctx, gib);
    }
    /* Zero the cache so timing harnesses that never fill the prefix read defined values. */
    memset(ws->kcache, 0, L * (size_t)max_ctx * kvd * sizeof(float));
    memset(ws->vcache, 0, L * (size_t)max_ctx * kvd * sizeof(float));
    for (size_t i = 0; i < HS / 2; i++)
        ws->inv_freq[i] = pow((double)cfg->rope_theta, -2.0 * (double)i / (double)HS);
    *out = ws;
    return KVR_OK;
}

float *kvr_layer_ws_k(kvr_layer_ws *ws, int32_t layer) {
    return ws->kcache + (size_t)layer * (size_t)ws->max_ctx *
                            (size_t)(ws->m->cfg.n_kv_heads * ws->m->cfg.head_dim);
}
float *kvr_layer_ws_v(kvr_layer_ws *ws, int32_t layer) {
    return ws->vcache + (size_t)layer * (size_t)ws->max_ctx *
                            (size_t)(ws->m->cfg.n_kv_heads * ws->m->cfg.head_dim);
}
float *kvr_layer_ws_x(kvr_layer_ws *ws) {
    return ws->x;
}

// ----------------------------------------------------------------------------
// elementwise helpers

/* exp(x) for x in [-87, 88] to ~2e-7 relative, written so the compiler vectorizes it:
 * 2^t = 2^floor(t) * 2^frac(t), the fraction by a degree-6 minimax polynomial. */
static inline float kvr_expf(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float t = x * 1.44269504088896341f;
    float fi = floorf(t);
    float f = t - fi;
    float p = 1.535336188319500e-4f;
    p = p * f + 1.339887440266574e-3f;
    p = p * f + 9.618437357674640e-3f;
    p = p * f + 5.550332471162809e-2f;
    p = p * f + 2.402264791363012e-1f;
    p = p * f + 6.931472028550421e-1f;
    p = p * f + 1.0f;
    int32_t bits = ((int32_t)fi + 127) << 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    return p * s;
}

/* y = x / sqrt(mean(x^2) + eps) * w for one row of n */
static void kvr_rmsnorm_row(float *y, const float *x, const float *w, int64_t n, float eps) {
    float ss = 0;
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    const float r = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * r * w[i];
}

static void kvr_rmsnorm(kvr_layer_ws *ws, float *y, const float *x, const float *w, int64_t rows) {
    const int64_t D = ws->m->cfg.d_model;
    const float eps = ws->m->cfg.norm_eps;
#pragma omp parallel for num_threads(ws->n_threads) schedule(static) if (ws->n_threads > 1)
    for (int64_t r = 0; r < rows; r++) kvr_rmsnorm_row(y + r * D, x + r * D, w, D, eps);
}

/* Y (M, N; ldc) = alpha * X (M, K; lda) . W^T (W: N rows of K; ldb) + beta * Y.
 * The N dimension is split across this rank's threads, each calling single-threaded sgemm. */
static void kvr_gemm_nt(int32_t nt, int64_t M, int64_t N, int64_t K, float alpha, const float *X,
                        int64_t lda, const float *W, int64_t ldb, float beta, float *Y,
                        int64_t ldc) {
    if (nt <= 1 || N < 64) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, alpha, X,
                    (int)lda, W, (int)ldb, beta, Y, (int)ldc);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), n = omp_get_num_threads();
        int64_t per = KVR_CEIL_DIV(KVR_CEIL_DIV(N, n), 16) * 16;
        int64_t n0 = (int64_t)t * per, n1 = KVR_MIN(N, n0 + per);
        if (n0 < n1)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)(n1 - n0), (int)K,
                        alpha, X, (int)lda, W + n0 * ldb, (int)ldb, beta, Y + n0, (int)ldc);
    }
}

// ----------------------------------------------------------------------------
// ops

kvr_status kvr_op_set_chunk(kvr_layer_ws *ws, int64_t c, int64_t pos0, kvr_error *err) {
    if (c < 1 || c > ws->max_chunk || pos0 < 0 || pos0 + c > ws->max_ctx)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "chunk of %lld tokens at %lld does not fit the workspace "
                             "(max chunk %lld, max context %lld)",
                             (long long)c, (long long)pos0, (long long)ws->max_chunk,
                             (long long)ws->max_ctx);
    ws->c = c;
    ws->pos0 = pos0;
    const int64_t half = ws->m->cfg.head_dim / 2;
    for (int64_t r = 0; r < c; r++)
        for (int64_t i = 0; i < half; i++) {
            double th = (double)(pos0 + r) * ws->inv_freq[i];
            ws->rope_cos[r * half + i] = (float)cos(th);
            ws->rope_sin[r * half + i] = (float)sin(th);
        }
    return KVR_OK;
}

kvr_status kvr_op_embed(kvr_layer_ws *ws, const int32_t *tokens, int64_t c, int64_t pos0,
                        kvr_error *err) {
    const kvr_model_config *cfg = &ws->m->cfg;
    for (int64_t r = 0; r < c; r++)
        if (tokens[r] < 0 || tokens[r] >= cfg->vocab_size)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "token id %d at position %lld is outside the vocabulary [0, %d)",
                                 tokens[r], (long long)(pos0 + r), cfg->vocab_size);
    KVR_TRY(kvr_op_set_chunk(ws, c, pos0, err));
    const int64_t D = cfg->d_model;
    for (int64_t r = 0; r < c; r++)
        memcpy(ws->x + r * D, ws->m->tok_embd + (int64_t)tokens[r] * D, (size_t)D * sizeof(float));
    return KVR_OK;
}

/* Rotate interleaved pairs (x[2i], x[2i+1]) of each head by the row's angles. */
static void kvr_rope_rows(kvr_layer_ws *ws, float *base, int64_t ld, int32_t n_heads) {
    const int64_t HS = ws->m->cfg.head_dim, half = HS / 2, c = ws->c;
#pragma omp parallel for num_threads(ws->n_threads) schedule(static) if (ws->n_threads > 1)
    for (int64_t r = 0; r < c; r++) {
        const float *cs = ws->rope_cos + r * half, *sn = ws->rope_sin + r * half;
        for (int32_t h = 0; h < n_heads; h++) {
            float *v = base + r * ld + (int64_t)h * HS;
            for (int64_t i = 0; i < half; i++) {
                float a = v[2 * i], b = v[2 * i + 1];
                v[2 * i] = a * cs[i] - b * sn[i];
                v[2 * i + 1] = a * sn[i] + b * cs[i];
            }
        }
    }
}

void kvr_op_pre(kvr_layer_ws *ws, int32_t layer) {
    const kvr_model_config *cfg = &ws->m->cfg;
    const kvr_layer_weights *w = &ws->m->layers[layer];
    const int64_t D = cfg->d_model, HS = cfg->head_dim, NH = cfg->n_heads, NKV = cfg->n_kv_heads;
    const int64_t nqkv = (NH + 2 * NKV) * HS, kvd = NKV * HS, c = ws->c;
    kvr_rmsnorm(ws, ws->h, ws->x, w->attn_norm, c);
    kvr_gemm_nt(ws->n_threads, c, nqkv, D, 1.0f, ws->h, D, w->wqkv, D, 0.0f, ws->qkv, nqkv);
    kvr_rope_rows(ws, ws->qkv, nqkv, (int32_t)NH);
    kvr_rope_rows(ws, ws->qkv + NH * HS, nqkv, (int32_t)NKV);
    float *K = kvr_layer_ws_k(ws, layer) + ws->pos0 * kvd;
    float *V = kvr_layer_ws_v(ws, layer) + ws->pos0 * kvd;
    for (int64_t r = 0; r < c; r++) {
        memcpy(K + r * kvd, ws->qkv + r * nqkv + NH * HS, (size_t)kvd * sizeof(float));
        memcpy(V + r * kvd, ws->qkv + r * nqkv + (NH + NKV) * HS, (size_t)kvd * sizeof(float));
    }
}

void kvr_op_attn(kvr_layer_ws *ws, int32_t layer) {
    const kvr_model_config *cfg = &ws->m->cfg;
    const int64_t HS = cfg->head_dim, NH = cfg->n_heads, NKV = cfg->n_kv_heads;
    const int64_t nqkv = (NH + 2 * NKV) * HS, kvd = NKV * HS, c = ws->c, P = ws->pos0;
    const int64_t group = NH / NKV, n_qb = KVR_CEIL_DIV(c, KVR_ATTN_QB);
    const float *K = kvr_layer_ws_k(ws, layer), *V = kvr_layer_ws_v(ws, layer);
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel for num_threads(ws->n_threads) schedule(dynamic, 1) if (ws->n_threads > 1)
    for (int64_t task = 0; task < NH * n_qb; task++) {
        /* Largest query blocks first (they see the most keys) for better load balance. */
        const int64_t h = task % NH, qb = n_qb - 1 - task / NH;
        const int64_t g = h / group;
        const int64_t r0 = qb * KVR_ATTN_QB, r1 = KVR_MIN(c, r0 + KVR_ATTN_QB), nr = r1 - r0;
        const int64_t nk = P + r1; /* keys any row of the block may see */
        float *S = ws->scratch + (int64_t)omp_get_thread_num() * KVR_ATTN_QB * ws->max_ctx;
        /* scores (nr, nk) = scale * Q_blk . K_g^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)nk, (int)HS, scale,
                    ws->qkv + r0 * nqkv + h * HS, (int)nqkv, K + g * HS, (int)kvd, 0.0f, S,
                    (int)nk);
        for (int64_t i = 0; i < nr; i++) {
            float *row = S + i * nk;
            const int64_t nv = P + r0 + i + 1; /* causal: keys [0, nv) */
            float mx = row[0];
            for (int64_t j = 1; j < nv; j++) mx = row[j] > mx ? row[j] : mx;
            float sum = 0;
            for (int64_t j = 0; j < nv; j++) {
                float e = kvr_expf(row[j] - mx);
                row[j] = e;
                sum += e;
            }
            const float inv = 1.0f / sum;
            for (int64_t j = 0; j < nv; j++) row[j] *= inv;
            for (int64_t j = nv; j < nk; j++) row[j] = 0.0f;
        }
        /* out (nr, HS) = probs (nr, nk) . V_g (nk, HS) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)HS, (int)nk, 1.0f, S,
                    (int)nk, V + g * HS, (int)kvd, 0.0f, ws->att + r0 * NH * HS + h * HS,
                    (int)(NH * HS));
    }
}

void kvr_op_post(kvr_layer_ws *ws, int32_t layer) {
    const kvr_model_config *cfg = &ws->m->cfg;
    const kvr_layer_weights *w = &ws->m->layers[layer];
    const int64_t D = cfg->d_model, HS = cfg->head_dim, NH = cfg->n_heads, FF = cfg->d_ff;
    const int64_t c = ws->c;
    /* x += att . Wo^T (residual folded into beta = 1) */
    kvr_gemm_nt(ws->n_threads, c, D, NH * HS, 1.0f, ws->att, NH * HS, w->wo, NH * HS, 1.0f, ws->x,
                D);
    kvr_rmsnorm(ws, ws->h, ws->x, w->ffn_norm, c);
    kvr_gemm_nt(ws->n_threads, c, 2 * FF, D, 1.0f, ws->h, D, w->w_gate_up, D, 0.0f, ws->gu, 2 * FF);
#pragma omp parallel for num_threads(ws->n_threads) schedule(static) if (ws->n_threads > 1)
    for (int64_t r = 0; r < c; r++) {
        const float *gt = ws->gu + r * 2 * FF, *up = gt + FF;
        float *a = ws->act + r * FF;
        for (int64_t i = 0; i < FF; i++) a[i] = gt[i] / (1.0f + kvr_expf(-gt[i])) * up[i];
    }
    kvr_gemm_nt(ws->n_threads, c, D, FF, 1.0f, ws->act, FF, w->w_down, FF, 1.0f, ws->x, D);
}

const float *kvr_op_head(kvr_layer_ws *ws) {
    const kvr_model_config *cfg = &ws->m->cfg;
    const int64_t D = cfg->d_model, V = cfg->vocab_size;
    kvr_rmsnorm_row(ws->hlast, ws->x + (ws->c - 1) * D, ws->m->output_norm, D, cfg->norm_eps);
    /* logits (V) = W_out (V, D) . h: one GEMM row, N = V split across the threads */
    kvr_gemm_nt(ws->n_threads, 1, V, D, 1.0f, ws->hlast, D, ws->m->output, D, 0.0f, ws->logits, V);
    return ws->logits;
}

int32_t kvr_argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}
