/* bench_gpu.c -- the GPU figures of issue 11 item 6, measured through the backend seam (the
 * cuda backend) in one run. Prints figures and ratios; asserts nothing about speed.
 *
 * Build: cmake --build build --target bench_gpu   (built when CUDA is; scripts/gpu-bundle)
 * Run:   bench_gpu [--quick] [SECTION...]   SECTION: copy attn gemm layer ttft kvr (default all)
 *   copy   cudaMemcpyAsync host->device, device->host (pinned host memory) and device->device
 *          over 4 KiB..256 MiB: GB/s per size (the profiler's same-device transfer sweeps time
 *          device->device between ranks through the transport).
 *   attn   kvr_op_attn of a Llama-3-8B-shaped layer (GQA 32/8, head dim 128, bf16 on the GPU) for
 *          chunks 512..8192 after prefixes 0..24k: TFLOP/s over the causal-valid area,
 *          4*NH*HS*(c*P + c*(c+1)/2) FLOPs. Lines "attn c=C P=P us=T tflops=F", which
 *          scripts/gpu-check joins with sdpa_bench.py's PyTorch figures on the same shapes.
 *   gemm   cublasGemmEx bf16 in, fp32 compute: the 4096 x 14336 x 4096 GEMM rate of this GPU.
 *   layer  one Llama-3-8B-shaped layer (pre + attn + post) at 4k tokens: TFLOP/s and its
 *          fraction of the gemm rate measured in the same run.
 *   ttft   single-GPU TTFT of a Llama-2-7B-shaped model (random weights, 32 layers) at 4k, 16k.
 *   kvr    KV-Runahead on 2 ranks sharing the GPU (same-device transport) against single at
 *          4k: expected slower on one GPU (it checks the schedule, not speed).
 * --quick: fewer shapes and reps, 4 layers for ttft/kvr (a smoke run).
 * Exit 77 when this build has no cuda backend or the machine has no GPU. */
#include "bench_util.h"
#include "kvr_runtime.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdlib.h>
#include <string.h>

static bool quick = false;


static double layer_gemm_flops(const kvr_model_config *c, double tokens) {
    double D = c->d_model, HS = c->head_dim, NH = c->n_heads, NKV = c->n_kv_heads, FF = c->d_ff;
    return 2.0 * tokens * (D * (NH + 2 * NKV) * HS + NH * HS * D + 3 * D * FF);
}
static double attn_flops(const kvr_model_config *c, double chunk, double prefix) {
    return 4.0 * c->n_heads * c->head_dim * (chunk * prefix + chunk * (chunk + 1) / 2);
}

/* A one-layer Llama-3-8B-shaped model on the cuda backend with a workspace. */
typedef struct bg_ctx {
    kvr_model *m;
    kvr_weights *w;
    kvr_workspace *ws;
    kvr_event *a, *b;
} bg_ctx;

static void bg_free(bg_ctx *x) {
    kvr_event_destroy(x->a), kvr_event_destroy(x->b);
    kvr_workspace_destroy(x->ws);
    kvr_weights_free(x->w);
    kvr_model_destroy(x->m);
    memset(x, 0, sizeof *x);
}

static kvr_status bg_open(const kvr_backend *be, const char *preset, int32_t layers,
                          int64_t max_chunk, int64_t max_ctx, bg_ctx *x, kvr_error *e) {
    memset(x, 0, sizeof *x);
    kvr_model_load_params lp = kvr_model_load_params_default();
    lp.n_layers_override = layers;
    lp.seed = 7;
    kvr_status st = kvr_model_create_preset(preset, &lp, &x->m, e);
    if (st == KVR_OK) st = kvr_weights_upload(be, x->m, &x->w, e);
    if (st == KVR_OK) st = kvr_workspace_create(x->w, max_chunk, max_ctx, 1, &x->ws, e);
    if (st == KVR_OK) st = kvr_event_create(x->ws, &x->a, e);
    if (st == KVR_OK) st = kvr_event_create(x->ws, &x->b, e);
    if (st != KVR_OK) bg_free(x);
    return st;
}

static int32_t *bg_tokens(int64_t n, int32_t vocab) {
    int32_t *t = malloc((size_t)n * sizeof *t);
    uint64_t s = 12345;
    for (int64_t i = 0; t && i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = (int32_t)((s >> 33) % (uint64_t)vocab);
    }
    return t;
}

// ----------------------------------------------------------------------------
// sections

static int bench_copy(void) {
    const size_t max = (size_t)(quick ? 64 : 256) << 20;
    void *h = NULL, *d0 = NULL, *d1 = NULL;
    cudaEvent_t a = NULL, b = NULL;
    int rc = 1;
    if (cudaMallocHost(&h, max) || cudaMalloc(&d0, max) || cudaMalloc(&d1, max) ||
        cudaEventCreate(&a) || cudaEventCreate(&b)) {
        fprintf(stderr, "bench_gpu copy: cannot allocate %zu bytes\n", max);
        goto out;
    }
    memset(h, 1, max);
    static const char *const names[3] = {"h2d", "d2h", "d2d"};
    for (size_t sz = 4096; sz <= max; sz *= 4) {
        printf("copy bytes=%zu", sz);
        for (int k = 0; k < 3; k++) {
            void *dst = k == 0 ? d0 : k == 1 ? h : d1;
            const void *src = k == 0 ? h : d0;
            const int reps = sz < (1u << 20) ? 50 : 10;
            cudaMemcpyAsync(dst, src, sz, cudaMemcpyDefault, 0); /* warm-up */
            cudaEventRecord(a, 0);
            for (int r = 0; r < reps; r++) cudaMemcpyAsync(dst, src, sz, cudaMemcpyDefault, 0);
            cudaEventRecord(b, 0);
            float ms = 0;
            if (cudaEventSynchronize(b) != cudaSuccess || cudaEventElapsedTime(&ms, a, b))
                goto out;
            printf(" %s_gbps=%.2f", names[k], (double)sz * reps / (ms * 1e-3) / 1e9);
        }
        printf("\n");
        fflush(stdout);
    }
    rc = 0;
out:
    if (a) cudaEventDestroy(a);
    if (b) cudaEventDestroy(b);
    cudaFreeHost(h), cudaFree(d0), cudaFree(d1);
    return rc;
}

static int bench_attn(const kvr_backend *be) {
    static const int64_t chunks[] = {512, 2048, 8192}, prefixes[] = {0, 8192, 24576};
    const int nc = quick ? 2 : 3, np = quick ? 2 : 3, reps = quick ? 3 : 7;
    bg_ctx x;
    kvr_error e;
    if (bg_open(be, "llama-3-8b", 1, 8192, 8192 + 24576, &x, &e) != KVR_OK) {
        fprintf(stderr, "bench_gpu attn: %s\n", e.msg);
        return 1;
    }
    const kvr_model_config *cfg = kvr_model_get_config(x.m);
    int32_t *tok = bg_tokens(8192, cfg->vocab_size);
    for (int ic = 0; ic < nc; ic++)
        for (int ip = 0; ip < np; ip++) {
            const int64_t c = chunks[ic], P = prefixes[ip];
            double t[16];
            kvr_status st = kvr_op_embed(x.ws, tok, c, P, &e);
            if (st == KVR_OK) st = kvr_op_pre(x.ws, 0, &e);
            for (int r = 0; st == KVR_OK && r < reps + 1; r++) {
                if ((st = kvr_event_record(x.a, &e))) break;
                if ((st = kvr_op_attn(x.ws, 0, NULL, &e))) break;
                if ((st = kvr_event_record(x.b, &e))) break;
                double us;
                if ((st = kvr_event_elapsed_us(x.a, x.b, &us, &e))) break;
                if (r > 0) t[r - 1] = us; /* the first is warm-up */
            }
            if (st != KVR_OK) {
                fprintf(stderr, "bench_gpu attn c=%lld P=%lld: %s\n", (long long)c,
                        (long long)P, e.msg);
                free(tok);
                bg_free(&x);
                return 1;
            }
            const double us = bench_median(t, reps);
            printf("attn c=%lld P=%lld us=%.1f tflops=%.2f\n", (long long)c, (long long)P, us,
                   attn_flops(cfg, (double)c, (double)P) / (us * 1e6));
            fflush(stdout);
        }
    free(tok);
    bg_free(&x);
    return 0;
}

/* cuBLAS bf16 GEMM rate, row-major Y(M,N) = X(M,K) W(N,K)^T, fp32 compute; TFLOP/s or -1. */
static double gemm_tflops(int M, int N, int K, int reps) {
    cublasHandle_t h = NULL;
    void *X = NULL, *W = NULL, *Y = NULL;
    cudaEvent_t a = NULL, b = NULL;
    double tf = -1;
    const float alpha = 1, beta = 0;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return -1;
    if (cudaMalloc(&X, (size_t)M * K * 2) || cudaMalloc(&W, (size_t)N * K * 2) ||
        cudaMalloc(&Y, (size_t)M * N * 2) || cudaMemset(X, 0, (size_t)M * K * 2) ||
        cudaMemset(W, 0, (size_t)N * K * 2) || cudaEventCreate(&a) || cudaEventCreate(&b))
        goto out;
    for (int r = 0; r < 3; r++)
        if (cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, W, CUDA_R_16BF, K, X,
                         CUDA_R_16BF, K, &beta, Y, CUDA_R_16BF, N, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS)
            goto out;
    cudaEventRecord(a, 0);
    for (int r = 0; r < reps; r++)
        cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, W, CUDA_R_16BF, K, X,
                     CUDA_R_16BF, K, &beta, Y, CUDA_R_16BF, N, CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT);
    cudaEventRecord(b, 0);
    float ms = 0;
    if (cudaEventSynchronize(b) == cudaSuccess && cudaEventElapsedTime(&ms, a, b) == cudaSuccess &&
        ms > 0)
        tf = 2.0 * M * N * K * reps / (ms * 1e-3) / 1e12;
out:
    if (a) cudaEventDestroy(a);
    if (b) cudaEventDestroy(b);
    cudaFree(X), cudaFree(W), cudaFree(Y);
    cublasDestroy(h);
    return tf;
}

static double gemm_rate = -1;

static int bench_gemm(void) {
    gemm_rate = gemm_tflops(4096, 14336, 4096, quick ? 5 : 20);
    if (gemm_rate < 0) {
        fprintf(stderr, "bench_gpu gemm: cuBLAS failed\n");
        return 1;
    }
    printf("gemm m=4096 n=14336 k=4096 bf16 tflops=%.2f\n", gemm_rate);
    fflush(stdout);
    return 0;
}

static int bench_layer(const kvr_backend *be) {
    const int64_t c = 4096;
    const int reps = quick ? 3 : 10;
    bg_ctx x;
    kvr_error e;
    if (gemm_rate < 0 && bench_gemm() != 0) return 1;
    if (bg_open(be, "llama-3-8b", 1, c, c, &x, &e) != KVR_OK) {
        fprintf(stderr, "bench_gpu layer: %s\n", e.msg);
        return 1;
    }
    const kvr_model_config *cfg = kvr_model_get_config(x.m);
    int32_t *tok = bg_tokens(c, cfg->vocab_size);
    double t[16];
    kvr_status st = kvr_op_embed(x.ws, tok, c, 0, &e);
    for (int r = 0; st == KVR_OK && r < reps + 1; r++) {
        double us;
        if ((st = kvr_op_set_chunk(x.ws, c, 0, &e)) || (st = kvr_event_record(x.a, &e)) ||
            (st = kvr_op_pre(x.ws, 0, &e)) || (st = kvr_op_attn(x.ws, 0, NULL, &e)) ||
            (st = kvr_op_post(x.ws, 0, &e)) || (st = kvr_event_record(x.b, &e)) ||
            (st = kvr_event_elapsed_us(x.a, x.b, &us, &e)))
            break;
        if (r > 0) t[r - 1] = us;
    }
    free(tok);
    if (st != KVR_OK) {
        fprintf(stderr, "bench_gpu layer: %s\n", e.msg);
        bg_free(&x);
        return 1;
    }
    const double us = bench_median(t, reps);
    const double fl = layer_gemm_flops(cfg, (double)c) + attn_flops(cfg, (double)c, 0);
    const double tf = fl / (us * 1e6);
    printf("layer llama-3-8b c=%lld us=%.1f tflops=%.2f frac_of_gemm=%.3f\n", (long long)c, us,
           tf, tf / gemm_rate);
    fflush(stdout);
    bg_free(&x);
    return 0;
}

/* TTFT of one prefill (weights upload excluded: the clock starts at the ranks' barrier). */
static kvr_status prefill_ttft(const kvr_model *m, const kvr_backend *be, const int32_t *tok,
                               int64_t C, kvr_mode mode, int32_t p, double *ms, kvr_error *e) {
    kvr_prefill_params pp = kvr_prefill_params_default();
    pp.backend = be;
    pp.mode = mode;
    pp.n_ranks = p;
    pp.keep_logits = false;
    pp.transport = p > 1 ? KVR_TRANSPORT_SAME_DEVICE : KVR_TRANSPORT_THREADS;
    kvr_prefill_result r;
    KVR_TRY(kvr_prefill_run(m, tok, C, &pp, &r, e));
    *ms = r.ttft_ms;
    kvr_prefill_result_free(&r);
    return KVR_OK;
}

static int bench_ttft_kvr(const kvr_backend *be, bool ttft, bool kvr) {
    kvr_model_load_params lp = kvr_model_load_params_default();
    lp.n_layers_override = quick ? 4 : 32;
    lp.seed = 7;
    kvr_model *m;
    kvr_error e;
    double t0 = kvr_time_us();
    if (kvr_model_create_preset("llama-2-7b", &lp, &m, &e) != KVR_OK) {
        fprintf(stderr, "bench_gpu ttft: %s\n", e.msg);
        return 1;
    }
    const int32_t L = kvr_model_get_config(m)->n_layers;
    fprintf(stderr, "bench_gpu: llama-2-7b (%d layers) made in %.1f s\n", L,
            (kvr_time_us() - t0) * 1e-6);
    const int64_t Cmax = quick ? 4096 : 16384;
    int32_t *tok = bg_tokens(Cmax, kvr_model_get_config(m)->vocab_size);
    int rc = 0;
    double single4k = -1, ms;
    if (prefill_ttft(m, be, tok, 1024, KVR_MODE_SINGLE, 1, &ms, &e) != KVR_OK) { /* warm-up */
        fprintf(stderr, "bench_gpu ttft: %s\n", e.msg);
        rc = 1;
        goto out;
    }
    for (int64_t C = 4096; C <= Cmax && (ttft || C == 4096); C *= 4) {
        if (prefill_ttft(m, be, tok, C, KVR_MODE_SINGLE, 1, &ms, &e) != KVR_OK) {
            fprintf(stderr, "bench_gpu ttft C=%lld: %s\n", (long long)C, e.msg);
            rc = 1;
            goto out;
        }
        if (C == 4096) single4k = ms;
        if (ttft)
            printf("ttft llama-2-7b layers=%d C=%lld ms=%.1f tok_per_s=%.0f\n", L,
                   (long long)C, ms, (double)C / (ms * 1e-3));
        fflush(stdout);
    }
    if (kvr) {
        if (prefill_ttft(m, be, tok, 4096, KVR_MODE_KVR, 2, &ms, &e) != KVR_OK) {
            fprintf(stderr, "bench_gpu kvr: %s\n", e.msg);
            rc = 1;
            goto out;
        }
        printf("kvr llama-2-7b layers=%d C=4096 p=2 same-device ms=%.1f single_ms=%.1f "
               "ratio=%.3f\n", L, ms, single4k, ms / single4k);
    }
out:
    free(tok);
    kvr_model_destroy(m);
    return rc;
}

int main(int argc, char **argv) {
    enum { NS = 6 };
    bool want[NS] = {false}, any = false;
    static const char *const names[NS] = {"attn", "gemm", "layer", "ttft", "kvr", "copy"};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = true;
            continue;
        }
        int k = 0;
        while (k < NS && strcmp(argv[i], names[k]) != 0) k++;
        if (k == NS) {
            fprintf(stderr, "usage: bench_gpu [--quick] [copy|attn|gemm|layer|ttft|kvr ...]\n");
            return 2;
        }
        want[k] = any = true;
    }
    if (!any)
        for (int k = 0; k < NS; k++) want[k] = true;
    const kvr_backend *be;
    kvr_error e;
    if (kvr_backend_get("cuda", &be, &e) != KVR_OK) {
        printf("skipped: %s\n", e.msg);
        return 77;
    }
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        printf("skipped: no CUDA device\n");
        return 77;
    }
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
        printf("# bench_gpu on %s (%d SMs)%s\n", prop.name, prop.multiProcessorCount,
               quick ? ", quick" : "");
    int rc = 0;
    if (want[5]) rc |= bench_copy();
    if (want[0]) rc |= bench_attn(be);
    if (want[1]) rc |= bench_gemm();
    if (want[2]) rc |= bench_layer(be);
    if (want[3] || want[4]) rc |= bench_ttft_kvr(be, want[3], want[4]);
    return rc;
}
