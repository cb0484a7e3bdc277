/* backend_cpu.c -- the CPU backend: embedding, RMSNorm, RoPE at global positions, GEMMs
 * through CBLAS (OpenBLAS, single-threaded per call, split across this rank's OpenMP team so
 * several ranks can share one process), causal attention of c queries over a P-token prefix
 * plus the chunk (GQA/MQA, query blocks, numerically stable softmax, optional per-row
 * log-sum-exp), SwiGLU, residuals, and the LM head on the last token. Buffers are host memory;
 * the weights are the model's own arena (borrowed) in their stored types: an F32 matrix is
 * multiplied in place; any other is dequantized (quant_dequant_row's block functions, each thread
 * the rows of its own output columns, then its part of the GEMM on them: cpu_deq_gemm) into the
 * workspace's fp32 scratch just before its GEMM, or -- for chunks
 * of at most KVR_ROWDOT_MAX tokens (decode steps) -- multiplied row by row in its stored type
 * (each row dequantized into a thread's buffer, then dotted with the chunk's rows). Events read
 * the host clock. This file
 * is the reference every other backend is compared with (tests/test_backend_ops.c). Its
 * per-element formulas (exp, RMSNorm scale, RoPE rotation, SwiGLU) are kvr_math.h's, which the
 * CUDA kernels share.
 * Compiled with -ffast-math: no code here relies on NaN/Inf semantics. */
#include "backend_internal.h"
#include "kvr_math.h"
#include "quant_internal.h"
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

/* The LM head of a non-F32 output is dequantized in blocks of at least this many rows. */
#define KVR_HEAD_BLOCK 4096

/* Chunks of at most this many tokens multiply non-F32 weights row by row in their stored type
 * (a weight row is read once per chunk, never expanded whole); larger chunks dequantize the
 * matrix into the scratch and run sgemm (bench/bench_dequant measures both). */
#define KVR_ROWDOT_MAX 8

typedef struct cpu_ws {
    kvr_workspace base; /* m, max_chunk, max_ctx, n_threads, current chunk (c, pos0) */
    float *x;         /* (c, D) hidden state */
    float *h;         /* (c, D) normed input */
    float *qkv;       /* (c, (NH+2NKV)*HS) */
    float *att;       /* (c, NH*HS) attention output */
    float *gu;        /* (c, 2*FF) gate | up */
    float *act;       /* (c, FF) */
    float *rope_cos;  /* (c, HS/2) */
    float *rope_sin;  /* (c, HS/2) */
    float *scratch;   /* (n_threads, QB, max_ctx) attention scores */
    float *blk_out;   /* (n_threads, QB, HS) attn_block's partial output */
    float *lse_run;   /* (c, NH) attn_block's running log-sum-exp */
    float *kcache;    /* (L, max_ctx, NKV*HS) */
    float *vcache;    /* (L, max_ctx, NKV*HS) */
    float *hlast;     /* (D) */
    float *logits;    /* (V) */
    double *inv_freq; /* (HS/2) */
    float *wbuf;      /* fp32 scratch for one dequantized weight matrix (NULL: all F32) */
    size_t wbuf_n;    /* its floats */
    float *rowbuf;    /* (n_threads, max cols) one dequantized weight row per thread */
    int64_t row_max;  /* the widest matrix row (cols) */
} cpu_ws;

typedef struct cpu_event {
    kvr_event base;
    double t_us; /* host clock at record */
} cpu_event;

// ----------------------------------------------------------------------------
// backend, weights, workspace

static kvr_backend_info cpu_info(void) {
    kvr_backend_info i = {"cpu", KVR_MEM_HOST, "host CPU", openblas_get_config(), "f32"};
    return i;
}

/* The model's arena is the CPU format (stored types, dequantized per GEMM): borrow it. */
static kvr_status cpu_weights_upload(const kvr_backend *b, const kvr_model *m, kvr_weights **out,
                                     kvr_error *err) {
    kvr_weights *w = malloc(sizeof *w);
    if (!w) return kvr_error_set(err, KVR_ERR_NOMEM, "weights: out of memory");
    w->be = b;
    w->m = m;
    *out = w;
    return KVR_OK;
}

static void cpu_weights_free(kvr_weights *w) {
    free(w);
}

static pthread_once_t kvr_blas_once = PTHREAD_ONCE_INIT;
/* Our own threads split every GEMM, so OpenBLAS must not start its own pool underneath. Its
 * pthread build has already started it when the library was loaded: n_cpu - 1 workers that
 * spin (sched_yield) for about 2^28 cycles (0.1 s) before they sleep, on the cores the ranks
 * need -- a 2-rank prefill on 2 cores run in that window took 1.5x as long. Set to 1 thread the
 * pool gets no work, so stop it: blas_thread_shutdown_ (exported by OpenBLAS's threaded builds
 * for fork handling; weak, absent from a serial build, which has no pool). Once per process,
 * when the first workspace is made (session creation), outside any TTFT. */
extern int blas_thread_shutdown_(void) __attribute__((weak));
static void kvr_blas_single_thread(void) {
    openblas_set_num_threads(1);
    if (blas_thread_shutdown_) blas_thread_shutdown_();
}

static void cpu_ws_destroy(kvr_workspace *base) {
    cpu_ws *ws = (cpu_ws *)base;
    if (!ws) return;
    free(ws->x), free(ws->h), free(ws->qkv), free(ws->att), free(ws->gu), free(ws->act);
    free(ws->rope_cos), free(ws->rope_sin), free(ws->scratch), free(ws->kcache);
    free(ws->blk_out), free(ws->lse_run);
    free(ws->vcache), free(ws->hlast), free(ws->logits), free(ws->inv_freq);
    free(ws->wbuf), free(ws->rowbuf);
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

static kvr_status cpu_ws_create(const kvr_weights *w, int64_t max_chunk, int64_t max_ctx,
                                int32_t n_threads, kvr_workspace **out, kvr_error *err) {
    pthread_once(&kvr_blas_once, kvr_blas_single_thread);
    const kvr_model_config *cfg = &w->m->cfg;
    cpu_ws *ws = calloc(1, sizeof *ws);
    if (!ws) return kvr_error_set(err, KVR_ERR_NOMEM, "workspace: out of memory");
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
    ws->blk_out = kvr_ws_alloc((size_t)n_threads * KVR_ATTN_QB * HS, &ok);
    ws->lse_run = kvr_ws_alloc(c * NH, &ok);
    ws->kcache = kvr_ws_alloc(L * (size_t)max_ctx * kvd, &ok);
    ws->vcache = kvr_ws_alloc(L * (size_t)max_ctx * kvd, &ok);
    ws->hlast = kvr_ws_alloc(D, &ok);
    ws->logits = kvr_ws_alloc((size_t)cfg->vocab_size, &ok);
    ws->inv_freq = malloc(HS / 2 * sizeof(double));
    /* the weight scratch: the largest matrix (or fused group) not stored as F32; the LM head is
     * dequantized in blocks of rows that fit it (at least KVR_HEAD_BLOCK rows) */
    {
        const kvr_model *m = w->m;
        const size_t need = model_scratch_floats(m, KVR_HEAD_BLOCK);
        int64_t row_max = 0;
        for (int s = 0; s < m->n_slots; s++)
            if (m->tensors[s].type != QUANT_F32 && m->tensors[s].cols > row_max)
                row_max = m->tensors[s].cols;
        if (need) {
            ws->wbuf = kvr_ws_alloc(need, &ok);
            ws->wbuf_n = need;
            ws->rowbuf = kvr_ws_alloc((size_t)n_threads * (size_t)row_max, &ok);
            ws->row_max = row_max;
        }
    }
    if (!ok || !ws->inv_freq) {
        double gib = (double)(2 * L * (size_t)max_ctx * kvd + c * (D * 2 + 4 * FF + 8 * NH * HS)) *
                     4 / (1 << 30);
        cpu_ws_destroy(&ws->base);
        return kvr_error_set(err, KVR_ERR_NOMEM,
                             "workspace for %lld tokens over %lld positions: cannot allocate "
                             "about %.2f GiB",
                             (long long)max_chunk, (long long)max_ctx, gib);
    }
    /* Zero every buffer: the cache so timing harnesses that never fill the prefix read defined
     * values, all of them so their pages are touched here, when the workspace is made, and not
     * by the first prefill (a page fault each 4 KiB, inside its TTFT). */
    memset(ws->x, 0, c * D * sizeof(float));
    memset(ws->h, 0, c * D * sizeof(float));
    memset(ws->qkv, 0, c * (NH + 2 * NKV) * HS * sizeof(float));
    memset(ws->att, 0, c * NH * HS * sizeof(float));
    memset(ws->gu, 0, c * 2 * FF * sizeof(float));
    memset(ws->act, 0, c * FF * sizeof(float));
    memset(ws->rope_cos, 0, c * HS / 2 * sizeof(float));
    memset(ws->rope_sin, 0, c * HS / 2 * sizeof(float));
    memset(ws->scratch, 0, (size_t)n_threads * KVR_ATTN_QB * (size_t)max_ctx * sizeof(float));
    memset(ws->blk_out, 0, (size_t)n_threads * KVR_ATTN_QB * HS * sizeof(float));
    memset(ws->lse_run, 0, c * NH * sizeof(float));
    memset(ws->hlast, 0, D * sizeof(float));
    memset(ws->logits, 0, (size_t)cfg->vocab_size * sizeof(float));
    if (ws->wbuf) memset(ws->wbuf, 0, ws->wbuf_n * sizeof(float));
    if (ws->rowbuf) memset(ws->rowbuf, 0, (size_t)n_threads * (size_t)ws->row_max * sizeof(float));
    memset(ws->kcache, 0, L * (size_t)max_ctx * kvd * sizeof(float));
    memset(ws->vcache, 0, L * (size_t)max_ctx * kvd * sizeof(float));
    for (size_t i = 0; i < HS / 2; i++) /* llama3 RoPE scaling: frequency i / factor i */
        ws->inv_freq[i] = pow((double)cfg->rope_theta, -2.0 * (double)i / (double)HS) /
                          (w->m->rope_factors ? (double)w->m->rope_factors[i] : 1.0);
    *out = &ws->base;
    return KVR_OK;
}

/* The calling thread's OpenMP team, started now rather than in the first timed op (a rank's
 * thread is new each prefill: kvr_prefill_run), each member touching its scratch slice. */
static kvr_status cpu_prepare_thread(kvr_workspace *base, kvr_error *err) {
    (void)err;
    cpu_ws *ws = (cpu_ws *)base;
    const int32_t nt = base->n_threads;
    const size_t slice = (size_t)KVR_ATTN_QB * (size_t)base->max_ctx;
#pragma omp parallel num_threads(nt) if (nt > 1)
    memset(ws->scratch + (size_t)omp_get_thread_num() * slice, 0, slice * sizeof(float));
    return KVR_OK;
}

/* K or V cache of one layer: (max_ctx, NKV*HS) row-major. */
static float *cpu_k(cpu_ws *ws, int32_t layer) {
    return ws->kcache + (size_t)layer * (size_t)ws->base.max_ctx *
                            (size_t)(ws->base.m->cfg.n_kv_heads * ws->base.m->cfg.head_dim);
}
static float *cpu_v(cpu_ws *ws, int32_t layer) {
    return ws->vcache + (size_t)layer * (size_t)ws->base.max_ctx *
                            (size_t)(ws->base.m->cfg.n_kv_heads * ws->base.m->cfg.head_dim);
}

// ----------------------------------------------------------------------------
// elementwise helpers

/* y = x / sqrt(mean(x^2) + eps) * w for one row of n */
static void kvr_rmsnorm_row(float *y, const float *x, const float *w, int64_t n, float eps) {
    float ss = 0;
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    const float r = kvr_rmsnorm_scale(ss, n, eps);
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * r * w[i];
}

static void kvr_rmsnorm(cpu_ws *ws, float *y, const float *x, const float *w, int64_t rows) {
    const int64_t D = ws->base.m->cfg.d_model;
    const float eps = ws->base.m->cfg.norm_eps;
    const int32_t nt = ws->base.n_threads;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
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

/* Rows [a, b) of the stacked tensors ts (all of K columns) dequantized into dst, this thread. */
static void cpu_deq_rows(const model_tensor *const *ts, int n_t, int64_t a, int64_t b, float *dst) {
    int64_t base = 0;
    for (int i = 0; i < n_t && a < b; i++) {
        const int64_t lo = KVR_MAX(a, base), hi = KVR_MIN(b, base + ts[i]->rows);
        if (lo < hi) { /* the types were checked: cannot fail */
            kvr_error e;
            (void)model_tensor_rows_f32(ts[i], lo - base, hi - lo, dst + (lo - a) * ts[i]->cols, 1,
                                        &e);
        }
        base += ts[i]->rows;
    }
}

/* Y (M, N; ldc) = X (M, K; lda) . W^T + beta * Y for W = rows [r0, r0 + N) of the stacked
 * non-F32 tensors ts, through the fp32 scratch ws->wbuf: in one parallel region each thread
 * dequantizes the weight rows of its own output columns (kvr_gemm_nt's split) and multiplies
 * them at once -- no barrier between the two, and the rows are still in its cache (a region to
 * dequantize and another to multiply cost two fork-joins per matrix: a 2-thread prefill of 128
 * tokens on the Q4_1 model on loaded cores spent 5x the CPU of a 1-thread one, mostly waiting at
 * them). The values and sgemm calls are kvr_gemm_nt's on the dequantized matrix, so results are
 * bit-identical to dequantizing first. Time in base.dequant_us: the slowest thread's. */
static kvr_status cpu_deq_gemm(cpu_ws *ws, const model_tensor *const *ts, int n_t, int64_t r0,
                               int64_t N, int64_t M, const float *X, int64_t lda, float beta,
                               float *Y, int64_t ldc, kvr_error *err) {
    const int32_t nt = ws->base.n_threads;
    const int64_t K = ts[0]->cols;
    for (int i = 0; i < n_t; i++)
        if (ts[i]->type != QUANT_F32 && !quant_type_get(ts[i]->type)->dequant)
            return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                                 "model: tensor type %s (%d) is not readable",
                                 quant_type_get(ts[i]->type)->name, ts[i]->type);
    double deq_us = 0;
    if (nt <= 1 || N < 64) { /* kvr_gemm_nt's one-call case */
        const double t0 = kvr_time_us();
        cpu_deq_rows(ts, n_t, r0, r0 + N, ws->wbuf);
        deq_us = kvr_time_us() - t0;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1.0f, X,
                    (int)lda, ws->wbuf, (int)K, beta, Y, (int)ldc);
    } else {
#pragma omp parallel num_threads(nt) reduction(max : deq_us)
        {
            const int t = omp_get_thread_num(), n = omp_get_num_threads();
            int64_t per = KVR_CEIL_DIV(KVR_CEIL_DIV(N, n), 16) * 16;
            int64_t n0 = (int64_t)t * per, n1 = KVR_MIN(N, n0 + per);
            if (n0 < n1) {
                const double t0 = kvr_time_us();
                cpu_deq_rows(ts, n_t, r0 + n0, r0 + n1, ws->wbuf + n0 * K);
                deq_us = kvr_time_us() - t0;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)(n1 - n0),
                            (int)K, 1.0f, X, (int)lda, ws->wbuf + n0 * K, (int)K, beta, Y + n0,
                            (int)ldc);
            }
        }
    }
    ws->base.dequant_us += deq_us;
    return KVR_OK;
}

/* Y (M, N; ldc) = X (M, K; lda) . W^T + beta * Y for a weight W of N = sum of the tensors' rows
 * (n_t stored tensors stacked, all with K columns) or its fp32 view f32 (non-NULL: used in
 * place). Non-F32: M <= KVR_ROWDOT_MAX multiplies row by row in the stored type; else the
 * tensors are dequantized into ws->wbuf (timed into base.dequant_us) and one sgemm runs. */
static kvr_status cpu_linear(cpu_ws *ws, const float *f32, const model_tensor *const *ts, int n_t,
                             int64_t M, const float *X, int64_t lda, float beta, float *Y,
                             int64_t ldc, kvr_error *err) {
    const int32_t nt = ws->base.n_threads;
    const int64_t K = ts[0]->cols;
    int64_t N = 0;
    for (int i = 0; i < n_t; i++) N += ts[i]->rows;
    if (f32) {
        kvr_gemm_nt(nt, M, N, K, 1.0f, X, lda, f32, K, beta, Y, ldc);
        return KVR_OK;
    }
    if (M <= KVR_ROWDOT_MAX) {
#pragma omp parallel num_threads(nt) if (nt > 1)
        {
            float *row = ws->rowbuf + (int64_t)omp_get_thread_num() * ws->row_max;
            int64_t base = 0;
            for (int i = 0; i < n_t; i++) {
                const model_tensor *t = ts[i];
                const quant_type_traits *tt = quant_type_get(t->type);
                const int64_t nb = K / tt->blck;
#pragma omp for schedule(static)
                for (int64_t n = 0; n < t->rows; n++) {
                    const float *wr = (const float *)(const void *)(t->data + (size_t)n * t->row_bytes);
                    if (t->type != QUANT_F32) {
                        tt->dequant(t->data + (size_t)n * t->row_bytes, row, nb);
                        wr = row;
                    }
                    for (int64_t m = 0; m < M; m++) {
                        const float *x = X + m * lda;
                        float acc = 0.0f;
                        for (int64_t k = 0; k < K; k++) acc += wr[k] * x[k];
                        float *y = Y + m * ldc + base + n;
                        *y = beta == 0.0f ? acc : acc + beta * *y;
                    }
                }
                base += t->rows;
            }
        }
        return KVR_OK;
    }
    return cpu_deq_gemm(ws, ts, n_t, 0, N, M, X, lda, beta, Y, ldc, err);
}

/* The stored tensors of layer's slots [k0, k0 + n). */
static void cpu_layer_tensors(const kvr_model *m, int32_t layer, int k0, int n,
                              const model_tensor **ts) {
    for (int i = 0; i < n; i++) ts[i] = model_slot_tensor(m, model_layer_slot(layer, k0 + i));
}

// ----------------------------------------------------------------------------
// ops

static kvr_status cpu_set_chunk(kvr_workspace *base, kvr_error *err) {
    (void)err;
    cpu_ws *ws = (cpu_ws *)base;
    const int64_t c = base->c, pos0 = base->pos0;
    const int64_t half = base->m->cfg.head_dim / 2;
    for (int64_t r = 0; r < c; r++)
        for (int64_t i = 0; i < half; i++) {
            double th = (double)(pos0 + r) * ws->inv_freq[i];
            ws->rope_cos[r * half + i] = (float)cos(th);
            ws->rope_sin[r * half + i] = (float)sin(th);
        }
    return KVR_OK;
}

static kvr_status cpu_embed(kvr_workspace *base, const int32_t *tokens, kvr_error *err) {
    cpu_ws *ws = (cpu_ws *)base;
    const int64_t D = base->m->cfg.d_model, c = base->c;
    const model_tensor *te = model_slot_tensor(base->m, MODEL_SLOT_TOK_EMBD);
    for (int64_t r = 0; r < c; r++) /* one row per token, dequantized when not F32 */
        KVR_TRY(model_tensor_rows_f32(te, tokens[r], 1, ws->x + r * D, 1, err));
    return KVR_OK;
}

static kvr_status cpu_pre(kvr_workspace *base, int32_t layer, kvr_error *err) {
    cpu_ws *ws = (cpu_ws *)base;
    const kvr_model_config *cfg = &base->m->cfg;
    const kvr_layer_weights *w = &base->m->layers[layer];
    const int64_t D = cfg->d_model, HS = cfg->head_dim, NH = cfg->n_heads, NKV = cfg->n_kv_heads;
    const int64_t nqkv = (NH + 2 * NKV) * HS, kvd = NKV * HS, c = base->c, half = HS / 2;
    const int32_t nt = base->n_threads;
    kvr_rmsnorm(ws, ws->h, ws->x, w->attn_norm, c);
    const model_tensor *ts[3];
    cpu_layer_tensors(base->m, layer, MODEL_L_Q, 3, ts);
    KVR_TRY(cpu_linear(ws, w->wqkv, ts, 3, c, ws->h, D, 0.0f, ws->qkv, nqkv, err));
    float *K = cpu_k(ws, layer) + base->pos0 * kvd;
    float *V = cpu_v(ws, layer) + base->pos0 * kvd;
    /* per row, one pass: the Q/K/V biases (Qwen2), RoPE on the Q and K heads (adjacent in the
     * row: NH + NKV heads from column 0; interleaved pairs rotated by the row's angles), the
     * K and V rows into the cache */
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t r = 0; r < c; r++) {
        float *row = ws->qkv + r * nqkv;
        if (w->bqkv)
            for (int64_t i = 0; i < nqkv; i++) row[i] += w->bqkv[i];
        const float *cs = ws->rope_cos + r * half, *sn = ws->rope_sin + r * half;
        for (int64_t h = 0; h < NH + NKV; h++) {
            float *v = row + h * HS;
            for (int64_t i = 0; i < half; i++)
                kvr_rope_rotate(&v[2 * i], &v[2 * i + 1], cs[i], sn[i]);
        }
        memcpy(K + r * kvd, row + NH * HS, (size_t)kvd * sizeof(float));
        memcpy(V + r * kvd, row + (NH + NKV) * HS, (size_t)kvd * sizeof(float));
    }
    return KVR_OK;
}

/* One row of attention scores in place: the max-subtracted softmax over keys [0, nv) (nv >= 1),
 * zeros over [nv, nk); returns the row's log-sum-exp. Shared by cpu_attn and cpu_attn_block.
 * Not inlined: compiled once, its exp loop is vectorised; inlined into cpu_attn_block's row loop
 * GCC 12 left that loop scalar ("latch block not empty"), which made the block kernel 1.4-1.8x
 * slower per area than cpu_attn (bench/bench_attn_block). A call per row is noise next to it. */
__attribute__((noinline)) static float cpu_softmax_row(float *row, int64_t nv, int64_t nk) {
    float mx = row[0];
    for (int64_t j = 1; j < nv; j++) mx = row[j] > mx ? row[j] : mx;
    float sum = 0;
    for (int64_t j = 0; j < nv; j++) {
        float e = kvr_expf(row[j] - mx);
        row[j] = e;
        sum += e;
    }
    const float l = mx + logf(sum), inv = 1.0f / sum;
    for (int64_t j = 0; j < nv; j++) row[j] *= inv;
    for (int64_t j = nv; j < nk; j++) row[j] = 0.0f;
    return l;
}

static kvr_status cpu_attn(kvr_workspace *base, int32_t layer, float *lse, kvr_error *err) {
    (void)err;
    cpu_ws *ws = (cpu_ws *)base;
    const kvr_model_config *cfg = &base->m->cfg;
    const int64_t HS = cfg->head_dim, NH = cfg->n_heads, NKV = cfg->n_kv_heads;
    const int64_t nqkv = (NH + 2 * NKV) * HS, kvd = NKV * HS, c = base->c, P = base->pos0;
    const int64_t group = NH / NKV, n_qb = KVR_CEIL_DIV(c, KVR_ATTN_QB);
    const int64_t max_ctx = base->max_ctx;
    const int32_t nt = base->n_threads;
    const float *K = cpu_k(ws, layer), *V = cpu_v(ws, layer);
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
    for (int64_t task = 0; task < NH * n_qb; task++) {
        /* Largest query blocks first (they see the most keys) for better load balance. */
        const int64_t h = task % NH, qb = n_qb - 1 - task / NH;
        const int64_t g = h / group;
        const int64_t r0 = qb * KVR_ATTN_QB, r1 = KVR_MIN(c, r0 + KVR_ATTN_QB), nr = r1 - r0;
        const int64_t nk = P + r1; /* keys any row of the block may see */
        float *S = ws->scratch + (int64_t)omp_get_thread_num() * KVR_ATTN_QB * max_ctx;
        /* scores (nr, nk) = scale * Q_blk . K_g^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)nk, (int)HS, scale,
                    ws->qkv + r0 * nqkv + h * HS, (int)nqkv, K + g * HS, (int)kvd, 0.0f, S,
                    (int)nk);
        for (int64_t i = 0; i < nr; i++) {
            const float l = cpu_softmax_row(S + i * nk, P + r0 + i + 1, nk); /* keys [0, P+r0+i] */
            if (lse) lse[(r0 + i) * NH + h] = l;
        }
        /* out (nr, HS) = probs (nr, nk) . V_g (nk, HS) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)HS, (int)nk, 1.0f, S,
                    (int)nk, V + g * HS, (int)kvd, 0.0f, ws->att + r0 * NH * HS + h * HS,
                    (int)(NH * HS));
    }
    return KVR_OK;
}

/* cpu_attn over an external block of kn keys at positions [kpos0, kpos0 + kn), then the
 * log-sum-exp merge of each (row, head) into att and lse_run. The same row softmax as cpu_attn
 * (cpu_softmax_row); its own loop so cpu_attn's arithmetic stays as it is. */
static kvr_status cpu_attn_block(kvr_workspace *base, const void *kp, const void *vp,
                                 int64_t kpos0, int64_t kn, bool first, kvr_error *err) {
    (void)err;
    cpu_ws *ws = (cpu_ws *)base;
    const kvr_model_config *cfg = &base->m->cfg;
    const int64_t HS = cfg->head_dim, NH = cfg->n_heads, NKV = cfg->n_kv_heads;
    const int64_t nqkv = (NH + 2 * NKV) * HS, kvd = NKV * HS, c = base->c, q0 = base->pos0;
    const int64_t group = NH / NKV, n_qb = KVR_CEIL_DIV(c, KVR_ATTN_QB);
    const int64_t max_ctx = base->max_ctx;
    const int32_t nt = base->n_threads;
    const float *K = kp, *V = vp;
    const float scale = 1.0f / sqrtf((float)HS);
    if (first) { /* -1e30, not -inf: -ffast-math; exp(-1e30 - m) is 0 */
        memset(ws->att, 0, (size_t)(c * NH * HS) * sizeof(float));
        for (int64_t i = 0; i < c * NH; i++) ws->lse_run[i] = -1e30f;
    }
    if (kn == 0 || kpos0 > q0 + c - 1) return KVR_OK; /* every key later than every row */
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
    for (int64_t task = 0; task < NH * n_qb; task++) {
        const int64_t h = task % NH, qb = n_qb - 1 - task / NH;
        const int64_t g = h / group;
        const int64_t r0 = qb * KVR_ATTN_QB, r1 = KVR_MIN(c, r0 + KVR_ATTN_QB), nr = r1 - r0;
        /* keys any row of the block may see */
        const int64_t nk = KVR_MIN(kn, q0 + r1 - kpos0);
        if (nk <= 0) continue;
        float *S = ws->scratch + (int64_t)omp_get_thread_num() * KVR_ATTN_QB * max_ctx;
        float *O = ws->blk_out + (int64_t)omp_get_thread_num() * KVR_ATTN_QB * HS;
        float lse_b[KVR_ATTN_QB];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)nk, (int)HS, scale,
                    ws->qkv + r0 * nqkv + h * HS, (int)nqkv, K + g * HS, (int)kvd, 0.0f, S,
                    (int)nk);
        for (int64_t i = 0; i < nr; i++) {
            float *row = S + i * nk;
            const int64_t nv = KVR_MIN(nk, q0 + r0 + i - kpos0 + 1); /* keys [0, nv) */
            if (nv <= 0) {
                lse_b[i] = -1e30f;
                for (int64_t j = 0; j < nk; j++) row[j] = 0.0f;
                continue;
            }
            lse_b[i] = cpu_softmax_row(row, nv, nk);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)HS, (int)nk, 1.0f, S,
                    (int)nk, V + g * HS, (int)kvd, 0.0f, O, (int)HS);
        for (int64_t i = 0; i < nr; i++) {
            if (lse_b[i] <= -1e29f) continue; /* the row sees no key of this block */
            float *run = ws->lse_run + (r0 + i) * NH + h;
            float *out = ws->att + (r0 + i) * NH * HS + h * HS;
            const float m = *run > lse_b[i] ? *run : lse_b[i];
            const float a = kvr_expf(*run - m), b = kvr_expf(lse_b[i] - m), inv = 1.0f / (a + b);
            for (int64_t d = 0; d < HS; d++) out[d] = (out[d] * a + O[i * HS + d] * b) * inv;
            *run = m + logf(a + b);
        }
    }
    return KVR_OK;
}

static kvr_status cpu_post(kvr_workspace *base, int32_t layer, kvr_error *err) {
    cpu_ws *ws = (cpu_ws *)base;
    const kvr_model_config *cfg = &base->m->cfg;
    const kvr_layer_weights *w = &base->m->layers[layer];
    const int64_t D = cfg->d_model, HS = cfg->head_dim, NH = cfg->n_heads, FF = cfg->d_ff;
    const int64_t c = base->c;
    const int32_t nt = base->n_threads;
    /* x += att . Wo^T (residual folded into beta = 1) */
    const model_tensor *ts[2];
    cpu_layer_tensors(base->m, layer, MODEL_L_O, 1, ts);
    KVR_TRY(cpu_linear(ws, w->wo, ts, 1, c, ws->att, NH * HS, 1.0f, ws->x, D, err));
    kvr_rmsnorm(ws, ws->h, ws->x, w->ffn_norm, c);
    cpu_layer_tensors(base->m, layer, MODEL_L_GATE, 2, ts);
    KVR_TRY(cpu_linear(ws, w->w_gate_up, ts, 2, c, ws->h, D, 0.0f, ws->gu, 2 * FF, err));
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t r = 0; r < c; r++) {
        const float *gt = ws->gu + r * 2 * FF, *up = gt + FF;
        float *a = ws->act + r * FF;
        for (int64_t i = 0; i < FF; i++) a[i] = kvr_silu_mul(gt[i], up[i]);
    }
    cpu_layer_tensors(base->m, layer, MODEL_L_DOWN, 1, ts);
    return cpu_linear(ws, w->w_down, ts, 1, c, ws->act, FF, 1.0f, ws->x, D, err);
}

static kvr_status cpu_head(kvr_workspace *base, int32_t *top, kvr_error *err) {
    cpu_ws *ws = (cpu_ws *)base;
    const kvr_model_config *cfg = &base->m->cfg;
    const int64_t D = cfg->d_model, V = cfg->vocab_size;
    kvr_rmsnorm_row(ws->hlast, ws->x + (base->c - 1) * D, base->m->output_norm, D, cfg->norm_eps);
    /* logits (V) = W_out (V, D) . h: one GEMM row, N = V split across the threads */
    const model_tensor *out = model_slot_tensor(base->m, MODEL_SLOT_OUTPUT);
    if (base->m->output || base->c <= KVR_ROWDOT_MAX) {
        KVR_TRY(cpu_linear(ws, base->m->output, &out, 1, 1, ws->hlast, D, 0.0f, ws->logits, V,
                           err));
    } else { /* blocks of rows through the scratch: each logit is the same sgemm column */
        const int64_t blk = (int64_t)(ws->wbuf_n / (size_t)D) / 16 * 16;
        for (int64_t r0 = 0; r0 < V; r0 += blk)
            KVR_TRY(cpu_deq_gemm(ws, &out, 1, r0, KVR_MIN(blk, V - r0), 1, ws->hlast, D, 0.0f,
                                 ws->logits + r0, V, err));
    }
    if (top) *top = kvr_argmax(ws->logits, V);
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// the paged KV pool (kvr_batch.h): blocks in host memory, K/V placement, paged attention

/* The host tier's copier: a thread that runs queued layer-block copies in order. */
typedef struct cpu_copy_job {
    const float *src;
    float *dst;
    uint64_t fence; /* done becomes this after the copy when last */
    bool last, to_host;
} cpu_copy_job;

typedef struct cpu_copier {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    cpu_copy_job *q; /* ring of cap jobs: [head, head + n) */
    size_t cap, head, n;
    size_t floats; /* per layer block */
    uint64_t submitted, done;
    bool hold, quit, started;
    int64_t n_out, n_in;
    double busy_us;
} cpu_copier;

typedef struct cpu_pool {
    kvr_kv_pool base;
    /* layer block b: K (block_tokens, NKV*HS) then V, 2 x block_tokens x NKV*HS floats; blocks
     * [0, n_layer_blocks) in dev, the staging blocks after them in stage */
    float *dev, *stage;
    float *host; /* the host tier: a separate region of host_blocks layer blocks */
    cpu_copier cp;
    float *gk, *gv;      /* attn_paged: each sequence's keys gathered in position order */
    float *scores;       /* attn_paged: (n_threads, QB, longest sequence) */
    int64_t *off;        /* attn_paged: (n + 1) first gathered key of each sequence; tasks */
    size_t gk_cap, gv_cap, s_cap, off_cap; /* floats (off: entries) */
} cpu_pool;

static size_t cpu_block_floats(const kvr_kv_pool *p) {
    return 2 * (size_t)p->block_tokens * (size_t)(p->m->cfg.n_kv_heads * p->m->cfg.head_dim);
}

/* Layer block b of the device side (pool, then staging): its K; its V block_tokens rows on. */
static float *cpu_block(cpu_pool *p, int64_t b) {
    const size_t f = cpu_block_floats(&p->base);
    return b < p->base.n_layer_blocks ? p->dev + (size_t)b * f
                                      : p->stage + (size_t)(b - p->base.n_layer_blocks) * f;
}

static void *cpu_copier_main(void *arg) {
    cpu_pool *p = arg;
    cpu_copier *c = &p->cp;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->quit && (c->n == 0 || c->hold)) pthread_cond_wait(&c->cv_work, &c->mu);
        if (c->quit) break;
        const cpu_copy_job j = c->q[c->head];
        pthread_mutex_unlock(&c->mu);
        const double t0 = kvr_time_us();
        memcpy(j.dst, j.src, c->floats * sizeof(float));
        const double dt = kvr_time_us() - t0;
        pthread_mutex_lock(&c->mu);
        c->head = (c->head + 1) % c->cap;
        c->n--;
        c->busy_us += dt;
        if (j.to_host) c->n_out++;
        else c->n_in++;
        if (j.last) {
            c->done = j.fence;
            pthread_cond_broadcast(&c->cv_done);
        }
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void cpu_pool_destroy(kvr_kv_pool *base) {
    cpu_pool *p = (cpu_pool *)base;
    if (!p) return;
    if (p->cp.started) { /* what is queued is dropped: nothing reads the tier after this */
        pthread_mutex_lock(&p->cp.mu);
        p->cp.quit = true;
        pthread_cond_broadcast(&p->cp.cv_work);
        pthread_mutex_unlock(&p->cp.mu);
        pthread_join(p->cp.thread, NULL);
        pthread_mutex_destroy(&p->cp.mu);
        pthread_cond_destroy(&p->cp.cv_work);
        pthread_cond_destroy(&p->cp.cv_done);
    }
    free(p->cp.q), free(p->host), free(p->stage);
    free(p->dev), free(p->gk), free(p->gv), free(p->scores), free(p->off);
    free(p);
}

static kvr_status cpu_pool_create(const kvr_weights *w, int64_t n_blocks, int32_t block_tokens,
                                  kvr_kv_pool **out, kvr_error *err) {
    const kvr_model_config *cfg = &w->m->cfg;
    const size_t n = 2 * (size_t)cfg->n_layers * (size_t)n_blocks * (size_t)block_tokens *
                     (size_t)cfg->n_kv_heads * (size_t)cfg->head_dim;
    cpu_pool *p = calloc(1, sizeof *p);
    bool ok = p != NULL;
    if (ok) p->dev = kvr_ws_alloc(n, &ok);
    if (!ok) {
        cpu_pool_destroy(p ? &p->base : NULL);
        return kvr_error_set(err, KVR_ERR_NOMEM,
                             "KV pool of %lld blocks of %d tokens: cannot allocate %.2f GiB",
                             (long long)n_blocks, block_tokens,
                             (double)n * sizeof(float) / (1 << 30));
    }
    memset(p->dev, 0, n * sizeof(float));
    *out = &p->base;
    return KVR_OK;
}

static kvr_status cpu_host_create(kvr_kv_pool *base, int64_t host_blocks, int64_t staging_blocks,
                                  kvr_error *err) {
    cpu_pool *p = (cpu_pool *)base;
    cpu_copier *c = &p->cp;
    const size_t f = cpu_block_floats(base);
    bool ok = true;
    p->host = kvr_ws_alloc((size_t)host_blocks * f, &ok);
    if (ok) p->stage = kvr_ws_alloc((size_t)staging_blocks * f, &ok);
    c->cap = 256;
    if (ok) ok = (c->q = malloc(c->cap * sizeof *c->q)) != NULL;
    if (ok) {
        pthread_mutex_init(&c->mu, NULL);
        pthread_cond_init(&c->cv_work, NULL);
        pthread_cond_init(&c->cv_done, NULL);
        c->floats = f;
        ok = pthread_create(&c->thread, NULL, cpu_copier_main, p) == 0;
        if (!ok) {
            pthread_mutex_destroy(&c->mu);
            pthread_cond_destroy(&c->cv_work);
            pthread_cond_destroy(&c->cv_done);
        }
    }
    if (!ok) {
        free(p->host), free(p->stage), free(c->q);
        p->host = p->stage = NULL, c->q = NULL;
        return kvr_error_set(err, KVR_ERR_NOMEM,
                             "KV host tier of %lld layer blocks (+ %lld staging): cannot allocate "
                             "%.2f GiB or start the copier",
                             (long long)host_blocks, (long long)staging_blocks,
                             (double)(host_blocks + staging_blocks) * (double)f * sizeof(float) /
                                 (1 << 30));
    }
    memset(p->host, 0, (size_t)host_blocks * f * sizeof(float));
    memset(p->stage, 0, (size_t)staging_blocks * f * sizeof(float));
    c->started = true;
    return KVR_OK;
}

static kvr_status cpu_copy_submit(kvr_kv_pool *base, const kvr_kv_copy *cs, int64_t n,
                                  uint64_t *fence, kvr_error *err) {
    cpu_pool *p = (cpu_pool *)base;
    cpu_copier *c = &p->cp;
    const size_t f = c->floats;
    pthread_mutex_lock(&c->mu);
    if (c->n + (size_t)n > c->cap) { /* grow the ring, unrolled to [0, n) */
        size_t cap = c->cap;
        while (cap < c->n + (size_t)n) cap *= 2;
        cpu_copy_job *q = malloc(cap * sizeof *q);
        if (!q) {
            pthread_mutex_unlock(&c->mu);
            return kvr_error_set(err, KVR_ERR_NOMEM, "KV copier: out of memory for %lld copies",
                                 (long long)n);
        }
        for (size_t i = 0; i < c->n; i++) q[i] = c->q[(c->head + i) % c->cap];
        free(c->q);
        c->q = q, c->cap = cap, c->head = 0;
    }
    const uint64_t fc = ++c->submitted;
    for (int64_t i = 0; i < n; i++) {
        float *d = cpu_block(p, cs[i].dev), *h = p->host + (size_t)cs[i].host * f;
        c->q[(c->head + c->n++) % c->cap] = (cpu_copy_job){
            cs[i].to_host ? d : h, cs[i].to_host ? h : d, fc, i == n - 1, cs[i].to_host};
    }
    pthread_cond_signal(&c->cv_work);
    pthread_mutex_unlock(&c->mu);
    *fence = fc;
    return KVR_OK;
}

static kvr_status cpu_copy_wait(kvr_kv_pool *base, uint64_t fence, kvr_error *err) {
    cpu_copier *c = &((cpu_pool *)base)->cp;
    pthread_mutex_lock(&c->mu);
    const bool bad = fence > c->submitted;
    while (!bad && c->done < fence) pthread_cond_wait(&c->cv_done, &c->mu);
    pthread_mutex_unlock(&c->mu);
    if (bad)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "KV copier: fence %llu never submitted",
                             (unsigned long long)fence);
    return KVR_OK;
}

static uint64_t cpu_copy_done(kvr_kv_pool *base) {
    cpu_copier *c = &((cpu_pool *)base)->cp;
    pthread_mutex_lock(&c->mu);
    const uint64_t d = c->done;
    pthread_mutex_unlock(&c->mu);
    return d;
}

static void cpu_copy_hold(kvr_kv_pool *base, bool hold) {
    cpu_copier *c = &((cpu_pool *)base)->cp;
    pthread_mutex_lock(&c->mu);
    c->hold = hold;
    pthread_cond_broadcast(&c->cv_work);
    pthread_mutex_unlock(&c->mu);
}

static void cpu_copy_stats(kvr_kv_pool *base, kvr_kv_pool_stats *st) {
    cpu_copier *c = &((cpu_pool *)base)->cp;
    pthread_mutex_lock(&c->mu);
    st->copies_out = c->n_out;
    st->copies_in = c->n_in;
    st->copy_busy_us = c->busy_us;
    pthread_mutex_unlock(&c->mu);
}

/* grow *buf to at least n floats (contents dropped) */
static bool cpu_grow(float **buf, size_t *cap, size_t n) {
    if (n <= *cap) return true;
    free(*buf);
    bool ok = true;
    *buf = kvr_ws_alloc(n, &ok);
    *cap = ok ? n : 0;
    return ok;
}

static kvr_status cpu_set_rows(kvr_workspace *base, const int64_t *pos, kvr_error *err) {
    (void)err;
    cpu_ws *ws = (cpu_ws *)base;
    const int64_t half = base->m->cfg.head_dim / 2;
    for (int64_t r = 0; r < base->c; r++)
        for (int64_t i = 0; i < half; i++) {
            double th = (double)pos[r] * ws->inv_freq[i];
            ws->rope_cos[r * half + i] = (float)cos(th);
            ws->rope_sin[r * half + i] = (float)sin(th);
        }
    return KVR_OK;
}

static kvr_status cpu_kv_store(kvr_workspace *base, kvr_kv_pool *pb, int32_t layer,
                               const int64_t *slots, kvr_error *err) {
    (void)err;
    cpu_ws *ws = (cpu_ws *)base;
    cpu_pool *p = (cpu_pool *)pb;
    const size_t kvd = (size_t)base->m->cfg.n_kv_heads * (size_t)base->m->cfg.head_dim;
    const int64_t bt = pb->block_tokens;
    const float *K = cpu_k(ws, layer), *V = cpu_v(ws, layer);
    for (int64_t r = 0; r < base->c; r++) {
        if (slots[r] < 0) continue;
        float *blk = cpu_block(p, slots[r] / bt) + (size_t)(slots[r] % bt) * kvd;
        memcpy(blk, K + (size_t)r * kvd, kvd * sizeof(float));
        memcpy(blk + (size_t)bt * kvd, V + (size_t)r * kvd, kvd * sizeof(float));
    }
    return KVR_OK;
}

/* Each sequence's keys are first gathered from its blocks into position order (one copy of
 * what attention reads anyway), then attended exactly as cpu_attn does for a chunk of n_rows
 * rows after an n_past prefix: the same query blocks, GEMMs and row softmax, so a sequence's
 * rows get cpu_attn's arithmetic. Tasks (sequence, head, query block) share the team. */
static kvr_status cpu_attn_paged(kvr_workspace *base, kvr_kv_pool *pb, int32_t layer,
                                 const kvr_paged_seq *seqs, int32_t n, kvr_error *err) {
    cpu_ws *ws = (cpu_ws *)base;
    cpu_pool *p = (cpu_pool *)pb;
    const kvr_model_config *cfg = &base->m->cfg;
    const int64_t HS = cfg->head_dim, NH = cfg->n_heads, NKV = cfg->n_kv_heads;
    const int64_t nqkv = (NH + 2 * NKV) * HS, kvd = NKV * HS, group = NH / NKV;
    const int64_t bt = pb->block_tokens;
    const int32_t nt = base->n_threads;
    const float scale = 1.0f / sqrtf((float)HS);
    int64_t total = 0, longest = 0;
    for (int32_t i = 0; i < n; i++) {
        const int64_t nk = seqs[i].n_past + seqs[i].n_rows;
        total += nk;
        longest = KVR_MAX(longest, nk);
    }
    const size_t need_off = 2 * ((size_t)n + 1);
    if (need_off > p->off_cap) {
        int64_t *o = realloc(p->off, need_off * sizeof *o);
        if (!o) return kvr_error_set(err, KVR_ERR_NOMEM, "paged attention: out of memory");
        p->off = o, p->off_cap = need_off;
    }
    int64_t *off = p->off, *tasks = p->off + n + 1; /* first key; first task of each sequence */
    off[0] = tasks[0] = 0;
    for (int32_t i = 0; i < n; i++) {
        off[i + 1] = off[i] + seqs[i].n_past + seqs[i].n_rows;
        tasks[i + 1] = tasks[i] + NH * KVR_CEIL_DIV(seqs[i].n_rows, KVR_ATTN_QB);
    }
    if (!cpu_grow(&p->gk, &p->gk_cap, (size_t)total * (size_t)kvd) ||
        !cpu_grow(&p->gv, &p->gv_cap, (size_t)total * (size_t)kvd) ||
        !cpu_grow(&p->scores, &p->s_cap, (size_t)nt * KVR_ATTN_QB * (size_t)longest))
        return kvr_error_set(err, KVR_ERR_NOMEM,
                             "paged attention: cannot allocate the gather buffers for %lld keys",
                             (long long)total);
    (void)layer; /* the blocks are the layer's */
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
    for (int32_t i = 0; i < n; i++) {
        const int64_t nk = seqs[i].n_past + seqs[i].n_rows;
        for (int64_t b = 0; b * bt < nk; b++) {
            const size_t rows = (size_t)KVR_MIN(bt, nk - b * bt);
            const float *blk = cpu_block(p, seqs[i].blocks[b]);
            const size_t dst = (size_t)(off[i] + b * bt) * (size_t)kvd;
            memcpy(p->gk + dst, blk, rows * (size_t)kvd * sizeof(float));
            memcpy(p->gv + dst, blk + (size_t)bt * kvd, rows * (size_t)kvd * sizeof(float));
        }
    }
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
    for (int64_t task = 0; task < tasks[n]; task++) {
        int32_t i = 0; /* the sequence: the last whose first task is <= task */
        for (int32_t lo = 0, hi = n - 1; lo <= hi;) {
            const int32_t mid = (lo + hi) / 2;
            if (tasks[mid] <= task) i = mid, lo = mid + 1;
            else hi = mid - 1;
        }
        const kvr_paged_seq *sq = &seqs[i];
        const int64_t t = task - tasks[i], h = t % NH, qb = t / NH, g = h / group;
        const int64_t P = sq->n_past;
        const int64_t r0 = qb * KVR_ATTN_QB, r1 = KVR_MIN(sq->n_rows, r0 + KVR_ATTN_QB);
        const int64_t nr = r1 - r0, nk = P + r1;
        const float *K = p->gk + off[i] * kvd, *V = p->gv + off[i] * kvd;
        const float *Q = ws->qkv + (sq->row0 + r0) * nqkv + h * HS;
        float *S = p->scores + (int64_t)omp_get_thread_num() * KVR_ATTN_QB * longest;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)nk, (int)HS, scale, Q,
                    (int)nqkv, K + g * HS, (int)kvd, 0.0f, S, (int)nk);
        for (int64_t j = 0; j < nr; j++) cpu_softmax_row(S + j * nk, P + r0 + j + 1, nk);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)HS, (int)nk, 1.0f, S,
                    (int)nk, V + g * HS, (int)kvd, 0.0f,
                    ws->att + (sq->row0 + r0) * NH * HS + h * HS, (int)(NH * HS));
    }
    return KVR_OK;
}

/* The LM head of n rows as one multiplication: the rows normed into h (free after post), then
 * cpu_head's two paths with M = n rows (F32 or n <= KVR_ROWDOT_MAX: cpu_linear; else the
 * stored head dequantized in blocks, each block's sgemm over all n rows). */
static kvr_status cpu_head_rows(kvr_workspace *base, const int64_t *rows, int32_t n,
                                float *logits, kvr_error *err) {
    cpu_ws *ws = (cpu_ws *)base;
    const kvr_model_config *cfg = &base->m->cfg;
    const int64_t D = cfg->d_model, V = cfg->vocab_size;
    for (int32_t i = 0; i < n; i++)
        kvr_rmsnorm_row(ws->h + (int64_t)i * D, ws->x + rows[i] * D, base->m->output_norm, D,
                        cfg->norm_eps);
    const model_tensor *out = model_slot_tensor(base->m, MODEL_SLOT_OUTPUT);
    if (base->m->output || n <= KVR_ROWDOT_MAX)
        return cpu_linear(ws, base->m->output, &out, 1, n, ws->h, D, 0.0f, logits, V, err);
    const int64_t blk = (int64_t)(ws->wbuf_n / (size_t)D) / 16 * 16;
    for (int64_t r0 = 0; r0 < V; r0 += blk) {
        const int64_t nr = KVR_MIN(blk, V - r0);
        const double t0 = kvr_time_us();
        KVR_TRY(model_tensor_rows_f32(out, r0, nr, ws->wbuf, base->n_threads, err));
        base->dequant_us += kvr_time_us() - t0;
        kvr_gemm_nt(base->n_threads, n, nr, D, 1.0f, ws->h, D, ws->wbuf, D, 0.0f, logits + r0, V);
    }
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// copies (host to host), events (host clock)

static kvr_status cpu_kv_to_host(kvr_workspace *base, int32_t layer, int64_t r0, int64_t n,
                                 float *k, float *v, kvr_error *err) {
    (void)err;
    cpu_ws *ws = (cpu_ws *)base;
    const size_t kvd = (size_t)base->m->cfg.n_kv_heads * (size_t)base->m->cfg.head_dim;
    if (k) memcpy(k, cpu_k(ws, layer) + (size_t)r0 * kvd, (size_t)n * kvd * sizeof(float));
    if (v) memcpy(v, cpu_v(ws, layer) + (size_t)r0 * kvd, (size_t)n * kvd * sizeof(float));
    return KVR_OK;
}

static kvr_status cpu_kv_copy(kvr_workspace *dst, kvr_workspace *src, int32_t layer, int64_t r0,
                              int64_t n, kvr_error *err) {
    (void)err;
    cpu_ws *d = (cpu_ws *)dst, *s = (cpu_ws *)src;
    const size_t kvd = (size_t)dst->m->cfg.n_kv_heads * (size_t)dst->m->cfg.head_dim;
    const size_t off = (size_t)r0 * kvd, bytes = (size_t)n * kvd * sizeof(float);
    memcpy(cpu_k(d, layer) + off, cpu_k(s, layer) + off, bytes);
    memcpy(cpu_v(d, layer) + off, cpu_v(s, layer) + off, bytes);
    return KVR_OK;
}

static kvr_status cpu_logits_to_host(kvr_workspace *base, float *out, kvr_error *err) {
    (void)err;
    memcpy(out, ((cpu_ws *)base)->logits, (size_t)base->m->cfg.vocab_size * sizeof(float));
    return KVR_OK;
}

static kvr_status cpu_x_from_host(kvr_workspace *base, const float *x, int64_t rows,
                                  kvr_error *err) {
    (void)err;
    memcpy(((cpu_ws *)base)->x, x, (size_t)rows * (size_t)base->m->cfg.d_model * sizeof(float));
    return KVR_OK;
}

static kvr_status cpu_x_to_host(kvr_workspace *base, float *x, int64_t rows, kvr_error *err) {
    (void)err;
    memcpy(x, ((cpu_ws *)base)->x, (size_t)rows * (size_t)base->m->cfg.d_model * sizeof(float));
    return KVR_OK;
}

static void cpu_kv_buffers(kvr_workspace *base, int32_t layer, void **k, void **v) {
    if (k) *k = cpu_k((cpu_ws *)base, layer);
    if (v) *v = cpu_v((cpu_ws *)base, layer);
}

static kvr_status cpu_event_create(kvr_workspace *ws, kvr_event **out, kvr_error *err) {
    (void)ws;
    cpu_event *ev = calloc(1, sizeof *ev);
    if (!ev) return kvr_error_set(err, KVR_ERR_NOMEM, "event: out of memory");
    *out = &ev->base;
    return KVR_OK;
}

static void cpu_event_destroy(kvr_event *ev) {
    free(ev);
}

/* The ops ran synchronously on this thread: the host clock now is the point after them. */
static kvr_status cpu_event_record(kvr_event *ev, kvr_error *err) {
    (void)err;
    ((cpu_event *)ev)->t_us = kvr_time_us();
    return KVR_OK;
}

static kvr_status cpu_event_elapsed_us(const kvr_event *start, const kvr_event *end, double *us,
                                       kvr_error *err) {
    (void)err;
    *us = ((const cpu_event *)end)->t_us - ((const cpu_event *)start)->t_us;
    return KVR_OK;
}

static kvr_status cpu_sync(kvr_workspace *ws, kvr_error *err) {
    (void)ws, (void)err;
    return KVR_OK;
}

const kvr_backend backend_cpu = {
    .name = "cpu",
    .mem_space = KVR_MEM_HOST,
    .info = cpu_info,
    .weights_upload = cpu_weights_upload,
    .weights_free = cpu_weights_free,
    .ws_create = cpu_ws_create,
    .ws_destroy = cpu_ws_destroy,
    .prepare_thread = cpu_prepare_thread,
    .set_chunk = cpu_set_chunk,
    .embed = cpu_embed,
    .pre = cpu_pre,
    .attn = cpu_attn,
    .attn_block = cpu_attn_block,
    .post = cpu_post,
    .head = cpu_head,
    .kv_to_host = cpu_kv_to_host,
    .kv_copy = cpu_kv_copy,
    .logits_to_host = cpu_logits_to_host,
    .x_from_host = cpu_x_from_host,
    .x_to_host = cpu_x_to_host,
    .kv_buffers = cpu_kv_buffers,
    .event_create = cpu_event_create,
    .event_destroy = cpu_event_destroy,
    .event_record = cpu_event_record,
    .event_elapsed_us = cpu_event_elapsed_us,
    .sync = cpu_sync,
    .pool_create = cpu_pool_create,
    .pool_destroy = cpu_pool_destroy,
    .set_rows = cpu_set_rows,
    .kv_store = cpu_kv_store,
    .attn_paged = cpu_attn_paged,
    .host_create = cpu_host_create,
    .copy_submit = cpu_copy_submit,
    .copy_wait = cpu_copy_wait,
    .copy_done = cpu_copy_done,
    .copy_hold = cpu_copy_hold,
    .copy_stats = cpu_copy_stats,
    .head_rows = cpu_head_rows,
};
