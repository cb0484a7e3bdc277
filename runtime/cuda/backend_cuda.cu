/* backend_cuda.cu -- the CUDA backend behind kvr_backend.h (docs/gpu.md, "CUDA backend").
 *
 * Weights: uploaded once per model to the device current at upload time, GEMM matrices as bf16
 * (fp16 when KVR_CUDA_DTYPE=f16), norms and the embedding table as fp32 (embed is exact).
 * Activations: the residual stream x, GEMM outputs, the K/V cache and the logits are fp32 (the
 * seam's layout: a transport moves fp32 cache rows); the GEMM inputs (normed x, attention output,
 * SwiGLU output) are written by the kernels in the 16-bit dtype. GEMMs go through cuBLAS
 * (cublasGemmEx: 16-bit inputs, fp32 compute and output, beta = 1 folding the residual adds).
 * Attention: FlashInfer 0.6.8's single prefill when its headers were found at configure time
 * (attn_flashinfer.cu, head dims 64 and 128, bf16), else -- and always on request
 * (KVR_CUDA_ATTN=kvr) -- the tiled kernel below. The per-element formulas are kvr_math.h's,
 * shared with the CPU backend; RoPE's cos/sin tables are computed on the host in double exactly
 * as the CPU backend does, once per workspace for every position.
 * Each workspace has its own stream and cuBLAS handle; every op is asynchronous on that stream;
 * events are cudaEvents on it. Device memory is allocated once per model and per workspace. */
#include "backend_internal.h"
#include "kvr_math.h"
#include "runtime_internal.h"
#include "cuda_internal.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <mutex>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// errors

static kvr_status cu_fail(kvr_error *err, cudaError_t e, const char *what) {
    return kvr_error_set(err, KVR_ERR_CUDA, "cuda: %s: %s", what, cudaGetErrorString(e));
}
#define CU_TRY(call, what)                                                                         \
    do {                                                                                           \
        cudaError_t cu_e_ = (call);                                                                \
        if (cu_e_ != cudaSuccess) return cu_fail(err, cu_e_, what);                                \
    } while (0)
/* after a kernel launch: launch-configuration errors */
#define CU_LAUNCHED(what) CU_TRY(cudaGetLastError(), what)
#define CUBLAS_TRY(call, what)                                                                     \
    do {                                                                                           \
        cublasStatus_t cb_s_ = (call);                                                             \
        if (cb_s_ != CUBLAS_STATUS_SUCCESS)                                                        \
            return kvr_error_set(err, KVR_ERR_CUDA, "cublas: %s: %s", what,                        \
                                 cublasGetStatusString(cb_s_));                                    \
    } while (0)

// ----------------------------------------------------------------------------
// objects

typedef struct cuda_layer {
    float *attn_norm, *ffn_norm;        /* fp32 (D) */
    float *bqkv;                        /* fp32 (nqkv) Q/K/V biases (Qwen2), or NULL */
    void *wqkv, *wo, *w_gate_up, *w_down; /* 16-bit, the model's row-major layout */
} cuda_layer;

typedef struct cuda_weights {
    kvr_weights base;
    int dev;
    bool f16;            /* fp16 instead of bf16 */
    float *f32;          /* one allocation: embeddings, norms */
    void *h16;           /* one allocation: every GEMM matrix */
    float *tok_embd;     /* (V, D) */
    float *output_norm;  /* (D) */
    void *output;        /* (V, D) */
    cuda_layer *layers;  /* host array of device pointers */
} cuda_weights;

typedef struct cuda_ws {
    kvr_workspace base;
    int dev;
    bool f16;
    bool use_fi; /* attention through FlashInfer */
    cudaStream_t stream;
    cublasHandle_t blas;
    float *x;        /* (c, D) */
    void *h;         /* (c, D) 16-bit: normed x; row 0 also the head's normed last row */
    float *qkv;      /* (c, (NH+2NKV)*HS) */
    float *q;        /* (c, NH*HS) rotated queries */
    void *att;       /* (c, NH*HS) 16-bit */
    float *gu;       /* (c, 2FF) */
    void *act;       /* (c, FF) 16-bit */
    float *kcache;   /* (L, max_ctx, NKV*HS) */
    float *vcache;
    float *rope_cos; /* (max_ctx, HS/2) */
    float *rope_sin;
    float *logits;   /* (V) */
    float *lse;      /* (c, NH) */
    float *o32;      /* (c, NH*HS) attn_block's running output, fp32 */
    float *lse_run;  /* (c, NH) attn_block's running log-sum-exp */
    int32_t *tokens; /* (c) */
    int32_t *top;    /* (1) */
    cuda_fi_scratch fi; /* FlashInfer's 16-bit copies (empty without it) */
} cuda_ws;

typedef struct cuda_event {
    kvr_event base;
    cudaEvent_t e;
} cuda_event;

// ----------------------------------------------------------------------------
// availability and info

static kvr_status cuda_available(kvr_error *err) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) return kvr_error_set(err, KVR_ERR_CUDA, "no CUDA device: %s",
                                               cudaGetErrorString(e));
    if (n < 1) return kvr_error_set(err, KVR_ERR_CUDA, "no CUDA device: none found");
    return KVR_OK;
}

/* KVR_CUDA_DTYPE: bf16 (default) or f16 -- the dtype of the uploaded GEMM matrices and of the
 * GEMM inputs. Anything else is bf16. */
static bool cuda_want_f16(void) {
    const char *s = getenv("KVR_CUDA_DTYPE");
    return s && (strcmp(s, "f16") == 0 || strcmp(s, "fp16") == 0);
}

static char cuda_device_name[320], cuda_library[192];
static std::once_flag cuda_info_once;

static void cuda_info_fill(void) {
    int dev = 0, rt = 0, major = 0, minor = 0, patch = 0;
    cudaDeviceProp prop;
    if (cudaGetDevice(&dev) == cudaSuccess && cudaGetDeviceProperties(&prop, dev) == cudaSuccess)
        snprintf(cuda_device_name, sizeof cuda_device_name, "%s (sm_%d%d, %d SMs)", prop.name,
                 prop.major, prop.minor, prop.multiProcessorCount);
    else
        snprintf(cuda_device_name, sizeof cuda_device_name, "no CUDA device");
    cudaRuntimeGetVersion(&rt);
    cublasGetProperty(MAJOR_VERSION, &major);
    cublasGetProperty(MINOR_VERSION, &minor);
    cublasGetProperty(PATCH_LEVEL, &patch);
    snprintf(cuda_library, sizeof cuda_library, "CUDA runtime %d.%d, cuBLAS %d.%d.%d%s", rt / 1000,
             rt % 1000 / 10, major, minor, patch, cuda_fi_version());
}

static kvr_backend_info cuda_info(void) {
    std::call_once(cuda_info_once, cuda_info_fill);
    kvr_backend_info i = {"cuda", KVR_MEM_DEVICE, cuda_device_name, cuda_library,
                          cuda_want_f16() ? "f16" : "bf16"};
    return i;
}

// ----------------------------------------------------------------------------
// kernels

#define KVR_CU_BLOCK 256

template <typename T> __device__ __forceinline__ T cu_from_float(float v);
template <> __device__ __forceinline__ __nv_bfloat16 cu_from_float(float v) {
    return __float2bfloat16_rn(v);
}
template <> __device__ __forceinline__ __half cu_from_float(float v) {
    return __float2half_rn(v);
}

template <typename T>
__global__ void __launch_bounds__(KVR_CU_BLOCK)
    k_convert(T *__restrict__ dst, const float *__restrict__ src, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = cu_from_float<T>(src[i]);
}

__global__ void __launch_bounds__(KVR_CU_BLOCK)
    k_embed(float *__restrict__ x, const float *__restrict__ emb, const int32_t *__restrict__ tok,
            int64_t D) {
    const int64_t r = blockIdx.x;
    const float *src = emb + (int64_t)tok[r] * D;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) x[r * D + i] = src[i];
}

__device__ __forceinline__ float cu_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float cu_warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* y (rows, D) = RMSNorm(x) * w, row r of x at x + r * ldx; one block per row. */
template <typename T>
__global__ void __launch_bounds__(KVR_CU_BLOCK)
    k_rmsnorm(T *__restrict__ y, const float *__restrict__ x, int64_t ldx,
              const float *__restrict__ w, int64_t D, float eps) {
    __shared__ float part[KVR_CU_BLOCK / 32];
    const float *xr = x + blockIdx.x * ldx;
    float ss = 0;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) ss += xr[i] * xr[i];
    ss = cu_warp_sum(ss);
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
        ss = threadIdx.x < KVR_CU_BLOCK / 32 ? part[threadIdx.x] : 0.0f;
        ss = cu_warp_sum(ss);
        if (threadIdx.x == 0) part[0] = ss;
    }
    __syncthreads();
    const float r = kvr_rmsnorm_scale(part[0], D, eps);
    T *yr = y + blockIdx.x * D;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) yr[i] = cu_from_float<T>(xr[i] * r * w[i]);
}

/* RoPE on Q and K of chunk row blockIdx.x (global position pos0 + row), Q -> q, K and V -> the
 * cache rows. */
__global__ void __launch_bounds__(KVR_CU_BLOCK)
    k_rope_split(float *__restrict__ q, float *__restrict__ kc, float *__restrict__ vc,
                 const float *__restrict__ qkv, const float *__restrict__ cosv,
                 const float *__restrict__ sinv, const float *__restrict__ bias, int64_t pos0,
                 int32_t NH, int32_t NKV, int32_t HS) {
    const int64_t r = blockIdx.x, pos = pos0 + r, half = HS / 2;
    const int64_t nq = (int64_t)NH * HS, kvd = (int64_t)NKV * HS, nqkv = nq + 2 * kvd;
    const float *src = qkv + r * nqkv;
    const float *cs = cosv + pos * half, *sn = sinv + pos * half;
    for (int64_t p = threadIdx.x; p < (nq + kvd) / 2; p += blockDim.x) {
        float a = src[2 * p], b = src[2 * p + 1];
        if (bias) a += bias[2 * p], b += bias[2 * p + 1]; /* the QKV bias before RoPE */
        const int64_t i = p % half;
        kvr_rope_rotate(&a, &b, cs[i], sn[i]);
        float *dst = 2 * p < nq ? q + r * nq + 2 * p : kc + pos * kvd + (2 * p - nq);
        dst[0] = a;
        dst[1] = b;
    }
    for (int64_t i = threadIdx.x; i < kvd; i += blockDim.x)
        vc[pos * kvd + i] = src[nq + kvd + i] + (bias ? bias[nq + kvd + i] : 0.0f);
}

/* act (rows, FF) = silu(gate) * up of gu (rows, 2FF: gate | up); a grid-stride loop over
 * every element (a 2-D grid would cap rows at 65535). */
template <typename T>
__global__ void __launch_bounds__(KVR_CU_BLOCK)
    k_swiglu(T *__restrict__ act, const float *__restrict__ gu, int64_t FF, int64_t n) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = e / FF, i = e - r * FF;
        act[e] = cu_from_float<T>(kvr_silu_mul(gu[r * 2 * FF + i], gu[r * 2 * FF + FF + i]));
    }
}

/* Index of the largest of n floats, first on ties (kvr_argmax); one block. */
__global__ void __launch_bounds__(1024) k_argmax(int32_t *__restrict__ top,
                                                 const float *__restrict__ x, int64_t n) {
    __shared__ float bv[1024];
    __shared__ int64_t bi[1024];
    float v = -INFINITY;
    int64_t idx = n; /* none yet */
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        if (idx == n || x[i] > v) v = x[i], idx = i;
    bv[threadIdx.x] = v;
    bi[threadIdx.x] = idx;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) {
            const float ov = bv[threadIdx.x + s];
            const int64_t oi = bi[threadIdx.x + s];
            const int64_t mi = bi[threadIdx.x];
            if (oi != n && (mi == n || ov > bv[threadIdx.x] || (ov == bv[threadIdx.x] && oi < mi)))
                bv[threadIdx.x] = ov, bi[threadIdx.x] = oi;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) *top = (int32_t)(bi[0] == n ? 0 : bi[0]);
}

/* The tiled attention: a block of KVR_ATT_WARPS warps takes as many consecutive chunk rows of one
 * query head; K/V tiles of 32 keys of its KV head are staged in shared memory and read by every
 * warp. Lane l of a warp scores key l of the tile; the online softmax (running max m, sum l)
 * rescales the output each lane holds for dims lane + 32 i. The keys are kn rows of K/V at global
 * positions [kpos0, kpos0 + kn); row r, at position q0 + r, sees those at positions <= q0 + r.
 * Causal attention over the cache (kvr_op_attn) is the block q0 = P, kpos0 = 0, kn = P + c: row r
 * sees keys [0, P + r] (bottom-right aligned causal); out gets the result, lse (if not NULL) the
 * natural-log LSE of the scaled scores. MERGE (kvr_op_attn_block): the row's result over this
 * block is merged by log-sum-exp into the running fp32 output o32 and LSE lse (first: start
 * afresh: output 0, LSE -1e30 as backend_cpu.c keeps it) and out gets the merged value; a row
 * that sees no key of the block keeps its running values. */
#define KVR_ATT_WARPS 8
#define KVR_ATT_KT 32

template <int HS, typename T, bool MERGE>
__global__ void __launch_bounds__(KVR_ATT_WARPS * 32)
    k_attn(T *__restrict__ out, float *__restrict__ lse, float *__restrict__ o32,
           const float *__restrict__ q, const float *__restrict__ K, const float *__restrict__ V,
           int32_t c, int64_t q0, int64_t kpos0, int64_t kn, int32_t NH, int32_t group,
           float scale, bool first) {
    constexpr int NC = (HS + 31) / 32;        /* dims per lane: lane + 32 i */
    constexpr int LW = HS < 32 ? HS : 32;     /* lanes holding dims (HS 16: half the warp) */
    extern __shared__ float smem[];
    float *sk = smem;                         /* KVR_ATT_KT x (HS + 1): padded, no conflicts */
    float *sv = smem + KVR_ATT_KT * (HS + 1); /* KVR_ATT_KT x HS */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int h = blockIdx.y, g = h / group;
    const int64_t kvd = (int64_t)(NH / group) * HS;
    const int r = blockIdx.x * KVR_ATT_WARPS + warp;
    const int rlast = min(c, (int)(blockIdx.x + 1) * KVR_ATT_WARPS) - 1;
    /* keys the block stages, keys this warp's row sees: [0, n) of the block, n in [0, kn] */
    const int64_t nk = max((int64_t)0, min(kn, q0 + rlast - kpos0 + 1));
    const int64_t nv = r < c ? max((int64_t)0, min(kn, q0 + r - kpos0 + 1)) : 0;
    const bool holds = lane < LW;
    float qr[NC], acc[NC];
#pragma unroll
    for (int i = 0; i < NC; i++) {
        qr[i] = r < c && holds ? q[(int64_t)r * NH * HS + (int64_t)h * HS + lane + 32 * i] * scale
                               : 0.0f;
        acc[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int64_t k0 = 0; k0 < nk; k0 += KVR_ATT_KT) {
        __syncthreads();
        for (int idx = threadIdx.x; idx < KVR_ATT_KT * HS; idx += blockDim.x) {
            const int j = idx / HS, d = idx % HS;
            const int64_t key = k0 + j;
            float kv = 0.0f, vv = 0.0f;
            if (key < nk) {
                kv = K[key * kvd + (int64_t)g * HS + d];
                vv = V[key * kvd + (int64_t)g * HS + d];
            }
            sk[j * (HS + 1) + d] = kv;
            sv[j * HS + d] = vv;
        }
        __syncthreads();
        if (k0 >= nv) continue; /* warp-uniform; every warp still meets each barrier */
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < NC; i++)
#pragma unroll 8
            for (int t = 0; t < LW; t++)
                dot += __shfl_sync(0xffffffffu, qr[i], t) * sk[lane * (HS + 1) + i * 32 + t];
        const bool valid = k0 + lane < nv;
        const float mnew = fmaxf(m, cu_warp_max(valid ? dot : -INFINITY)); /* key k0 is valid */
        const float p = valid ? kvr_expf(dot - mnew) : 0.0f;
        const float corr = kvr_expf(m - mnew); /* m = -inf: ~1e-38 times l = acc = 0 */
        l = l * corr + cu_warp_sum(p);
#pragma unroll
        for (int i = 0; i < NC; i++) acc[i] *= corr;
#pragma unroll 4
        for (int j = 0; j < KVR_ATT_KT; j++) {
            const float pj = __shfl_sync(0xffffffffu, p, j);
#pragma unroll
            for (int i = 0; i < NC; i++)
                acc[i] += holds ? pj * sv[j * HS + i * 32 + lane] : 0.0f;
        }
        m = mnew;
    }
    if (r >= c) return;
    const int64_t o = (int64_t)r * NH * HS + (int64_t)h * HS;
    if (!MERGE) {
        const float inv = 1.0f / l;
        if (holds) {
#pragma unroll
            for (int i = 0; i < NC; i++) out[o + lane + 32 * i] = cu_from_float<T>(acc[i] * inv);
        }
        if (lse && lane == 0) lse[(int64_t)r * NH + h] = m + logf(l);
        return;
    }
    /* merge: weights a (running) and b (this block) relative to the larger LSE */
    float *run = lse + (int64_t)r * NH + h;
    if (nv == 0 && !first) return; /* sees no key of this block: unchanged */
    const float lb = nv > 0 ? m + logf(l) : -1e30f;
    const float lp = first ? -1e30f : *run;
    const float mx = fmaxf(lp, lb);
    const float a = first ? 0.0f : kvr_expf(lp - mx), b = nv > 0 ? kvr_expf(lb - mx) : 0.0f;
    const float sum = a + b, inv = sum > 0.0f ? 1.0f / sum : 0.0f, bl = nv > 0 ? b / l : 0.0f;
    if (holds) {
#pragma unroll
        for (int i = 0; i < NC; i++) {
            const int64_t d = o + lane + 32 * i;
            const float v = ((first ? 0.0f : o32[d]) * a + acc[i] * bl) * inv;
            o32[d] = v;
            out[d] = cu_from_float<T>(v);
        }
    }
    __syncwarp(); /* every lane has read the running LSE */
    if (lane == 0) *run = sum > 0.0f ? mx + logf(sum) : -1e30f;
}

template <int HS, typename T, bool MERGE>
static cudaError_t cu_attn_launch(cudaStream_t st, T *out, float *lse, float *o32, const float *q,
                                  const float *K, const float *V, int32_t c, int64_t q0,
                                  int64_t kpos0, int64_t kn, int32_t NH, int32_t group, float scale,
                                  bool first) {
    const size_t shm = (size_t)KVR_ATT_KT * (2 * HS + 1) * sizeof(float);
    dim3 grid((unsigned)((c + KVR_ATT_WARPS - 1) / KVR_ATT_WARPS), (unsigned)NH);
    k_attn<HS, T, MERGE><<<grid, KVR_ATT_WARPS * 32, shm, st>>>(out, lse, o32, q, K, V, c, q0,
                                                                kpos0, kn, NH, group, scale, first);
    return cudaGetLastError();
}

/* One dispatch for both uses: o32 NULL = causal attention over the cache (q0 = P, keys [0, P + c)),
 * else the merged block. */
template <typename T>
static cudaError_t cu_attn_dispatch(cudaStream_t st, T *out, float *lse, float *o32,
                                    const float *q, const float *K, const float *V, int32_t c,
                                    int64_t q0, int64_t kpos0, int64_t kn, int32_t NH,
                                    int32_t group, int32_t HS, bool first) {
    const float scale = 1.0f / sqrtf((float)HS);
#define KVR_ATT_CASE(hs)                                                                           \
    case hs:                                                                                       \
        return o32 ? cu_attn_launch<hs, T, true>(st, out, lse, o32, q, K, V, c, q0, kpos0, kn, NH, \
                                                 group, scale, first)                              \
                   : cu_attn_launch<hs, T, false>(st, out, lse, o32, q, K, V, c, q0, kpos0, kn,    \
                                                  NH, group, scale, first)
    switch (HS) {
        KVR_ATT_CASE(16);
        KVR_ATT_CASE(32);
        KVR_ATT_CASE(64);
        KVR_ATT_CASE(96);
        KVR_ATT_CASE(128);
        default: return cudaErrorInvalidValue;
    }
#undef KVR_ATT_CASE
}

/* The tiled kernel on plain device buffers, for the on-device cross-check (cuda_internal.h). */
cudaError_t cuda_attn_tiled_bf16(cudaStream_t st, __nv_bfloat16 *out, float *lse, const float *q,
                                 const float *K, const float *V, int32_t c, int64_t P, int32_t NH,
                                 int32_t NKV, int32_t HS) {
    return cu_attn_dispatch<__nv_bfloat16>(st, out, lse, NULL, q, K, V, c, P, 0, P + c, NH,
                                           NH / NKV, HS, false);
}

// ----------------------------------------------------------------------------
// weights

static bool cuda_head_dim_ok(int32_t HS) {
    return HS == 16 || HS == 32 || HS == 64 || HS == 96 || HS == 128;
}

static size_t cu_round(size_t n) { /* elements, to 256-byte boundaries for any element size */
    return (n + 127) / 128 * 128;
}

/* Convert the stored tensors ts[0..n_t) (their rows stacked: the model's layout) into the 16-bit
 * tensor dst: rows are dequantized on the host (model_tensor_rows_f32: quant.c's block
 * functions; an F32 tensor is copied) into hstage, copied to the device staging buffer and
 * converted there. Both buffers hold stage_n floats, at least one row. */
static kvr_status cu_upload16(cuda_weights *w, void *dst, const model_tensor *const *ts, int n_t,
                              float *hstage, float *stage, size_t stage_n, kvr_error *err) {
    size_t o = 0;
    for (int i = 0; i < n_t; i++) {
        const model_tensor *t = ts[i];
        const int64_t per = (int64_t)(stage_n / (size_t)t->cols);
        for (int64_t r0 = 0; r0 < t->rows; r0 += per) {
            const int64_t nr = t->rows - r0 < per ? t->rows - r0 : per;
            const size_t k = (size_t)(nr * t->cols);
            KVR_TRY(model_tensor_rows_f32(t, r0, nr, hstage, 0, err));
            CU_TRY(cudaMemcpy(stage, hstage, k * sizeof(float), cudaMemcpyHostToDevice),
                   "weights upload");
            const unsigned blocks = (unsigned)((k + KVR_CU_BLOCK - 1) / KVR_CU_BLOCK < 65536
                                                   ? (k + KVR_CU_BLOCK - 1) / KVR_CU_BLOCK
                                                   : 65536);
            if (w->f16)
                k_convert<__half><<<blocks, KVR_CU_BLOCK>>>((__half *)dst + o, stage, (int64_t)k);
            else
                k_convert<__nv_bfloat16>
                    <<<blocks, KVR_CU_BLOCK>>>((__nv_bfloat16 *)dst + o, stage, (int64_t)k);
            CU_LAUNCHED("weights conversion");
            o += k;
        }
    }
    return KVR_OK;
}

static void cuda_weights_free(kvr_weights *base) {
    cuda_weights *w = (cuda_weights *)base;
    if (!w) return;
    cudaSetDevice(w->dev);
    cudaFree(w->f32);
    cudaFree(w->h16);
    free(w->layers);
    free(w);
}

static kvr_status cuda_weights_fill(cuda_weights *w, const kvr_model *m, kvr_error *err) {
    const kvr_model_config *cfg = &m->cfg;
    const size_t D = (size_t)cfg->d_model, HS = (size_t)cfg->head_dim, FF = (size_t)cfg->d_ff;
    const size_t NH = (size_t)cfg->n_heads, NKV = (size_t)cfg->n_kv_heads, V = (size_t)cfg->vocab_size;
    const size_t L = (size_t)cfg->n_layers, nqkv = (NH + 2 * NKV) * HS;
    const size_t n_qkv = cu_round(nqkv * D), n_o = cu_round(D * NH * HS);
    const size_t n_gu = cu_round(2 * FF * D), n_dn = cu_round(D * FF), n_out = cu_round(V * D);
    const size_t per16 = n_qkv + n_o + n_gu + n_dn, n16 = L * per16 + n_out;
    const size_t nb32 = m->layers[0].bqkv ? cu_round(nqkv) : 0; /* per layer */
    const size_t n32 = cu_round(V * D) + cu_round(D) + L * (2 * cu_round(D) + nb32);
    const size_t es = 2;
    cudaError_t e = cudaMalloc(&w->h16, n16 * es);
    if (e == cudaSuccess) e = cudaMalloc((void **)&w->f32, n32 * sizeof(float));
    if (e != cudaSuccess)
        return kvr_error_set(err, KVR_ERR_NOMEM, "cuda weights: cannot allocate %.2f GiB: %s",
                             (double)(n16 * es + n32 * 4) / (1 << 30), cudaGetErrorString(e));
    w->layers = (cuda_layer *)calloc(L, sizeof *w->layers);
    if (!w->layers) return kvr_error_set(err, KVR_ERR_NOMEM, "cuda weights: out of memory");
    /* staging: host rows dequantized from the stored types, then the device conversion */
    size_t stage_n = n_out;
    if (n_qkv > stage_n) stage_n = n_qkv;
    if (n_gu > stage_n) stage_n = n_gu;
    if (stage_n > ((size_t)64 << 20)) stage_n = (size_t)64 << 20; /* 256 MiB at most */
    float *stage = NULL;
    CU_TRY(cudaMalloc((void **)&stage, stage_n * sizeof(float)), "weights staging buffer");
    float *hstage = (float *)malloc(stage_n * sizeof(float));
    if (!hstage) {
        cudaFree(stage);
        return kvr_error_set(err, KVR_ERR_NOMEM, "cuda weights: cannot allocate %.1f MiB of host "
                             "staging", (double)stage_n * 4 / (1 << 20));
    }
    kvr_status s = KVR_OK;
    /* fp32: the embedding (dequantized from its stored type) and the norms (fp32 already) */
    float *p32 = w->f32;
    w->tok_embd = p32, p32 += cu_round(V * D);
    w->output_norm = p32, p32 += cu_round(D);
    {
        const model_tensor *te = model_slot_tensor(m, MODEL_SLOT_TOK_EMBD);
        const int64_t per = (int64_t)(stage_n / D);
        for (int64_t r0 = 0; r0 < (int64_t)V && s == KVR_OK; r0 += per) {
            const int64_t nr = (int64_t)V - r0 < per ? (int64_t)V - r0 : per;
            s = model_tensor_rows_f32(te, r0, nr, hstage, 0, err);
            cudaError_t ce = cudaSuccess;
            if (s == KVR_OK)
                ce = cudaMemcpy(w->tok_embd + r0 * (int64_t)D, hstage, (size_t)nr * D * 4,
                                cudaMemcpyHostToDevice);
            if (ce != cudaSuccess) s = cu_fail(err, ce, "upload");
        }
    }
    cudaError_t ce = cudaSuccess;
    if (s == KVR_OK)
        ce = cudaMemcpy(w->output_norm, m->output_norm, D * 4, cudaMemcpyHostToDevice);
    for (size_t l = 0; l < L && s == KVR_OK && ce == cudaSuccess; l++) {
        w->layers[l].attn_norm = p32, p32 += cu_round(D);
        w->layers[l].ffn_norm = p32, p32 += cu_round(D);
        ce = cudaMemcpy(w->layers[l].attn_norm, m->layers[l].attn_norm, D * 4,
                        cudaMemcpyHostToDevice);
        if (ce == cudaSuccess)
            ce = cudaMemcpy(w->layers[l].ffn_norm, m->layers[l].ffn_norm, D * 4,
                            cudaMemcpyHostToDevice);
        if (nb32) {
            w->layers[l].bqkv = p32, p32 += nb32;
            if (ce == cudaSuccess)
                ce = cudaMemcpy(w->layers[l].bqkv, m->layers[l].bqkv, nqkv * 4,
                                cudaMemcpyHostToDevice);
        }
    }
    if (s == KVR_OK && ce != cudaSuccess) s = cu_fail(err, ce, "upload");
    /* 16-bit: every GEMM matrix, fused groups stacked as the CPU layout */
    char *p16 = (char *)w->h16;
    for (size_t l = 0; l < L && s == KVR_OK; l++) {
        cuda_layer *cl = &w->layers[l];
        const model_tensor *ts[3];
        cl->wqkv = p16, p16 += n_qkv * es;
        cl->wo = p16, p16 += n_o * es;
        cl->w_gate_up = p16, p16 += n_gu * es;
        cl->w_down = p16, p16 += n_dn * es;
#define CU_SLOTS(k0, n)                                                                            \
    for (int i_ = 0; i_ < (n); i_++) ts[i_] = model_slot_tensor(m, model_layer_slot((int32_t)l, (k0) + i_))
        CU_SLOTS(MODEL_L_Q, 3);
        s = cu_upload16(w, cl->wqkv, ts, 3, hstage, stage, stage_n, err);
        CU_SLOTS(MODEL_L_O, 1);
        if (s == KVR_OK) s = cu_upload16(w, cl->wo, ts, 1, hstage, stage, stage_n, err);
        CU_SLOTS(MODEL_L_GATE, 2);
        if (s == KVR_OK) s = cu_upload16(w, cl->w_gate_up, ts, 2, hstage, stage, stage_n, err);
        CU_SLOTS(MODEL_L_DOWN, 1);
        if (s == KVR_OK) s = cu_upload16(w, cl->w_down, ts, 1, hstage, stage, stage_n, err);
#undef CU_SLOTS
    }
    w->output = p16;
    const model_tensor *to = model_slot_tensor(m, MODEL_SLOT_OUTPUT);
    if (s == KVR_OK) s = cu_upload16(w, w->output, &to, 1, hstage, stage, stage_n, err);
    free(hstage);
    cudaError_t e2 = cudaDeviceSynchronize();
    cudaFree(stage);
    if (s == KVR_OK && e2 != cudaSuccess) return cu_fail(err, e2, "weights conversion");
    return s;
}

static kvr_status cuda_weights_upload(const kvr_backend *b, const kvr_model *m, kvr_weights **out,
                                      kvr_error *err) {
    KVR_TRY(cuda_available(err));
    if (!cuda_head_dim_ok(m->cfg.head_dim))
        return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                             "cuda backend: head dim %d (supported: 16, 32, 64, 96, 128)",
                             m->cfg.head_dim);
    cuda_weights *w = (cuda_weights *)calloc(1, sizeof *w);
    if (!w) return kvr_error_set(err, KVR_ERR_NOMEM, "weights: out of memory");
    w->base.be = b;
    w->base.m = m;
    w->f16 = cuda_want_f16();
    cudaError_t e = cudaGetDevice(&w->dev);
    kvr_status s = e == cudaSuccess ? cuda_weights_fill(w, m, err) : cu_fail(err, e, "device");
    if (s != KVR_OK) {
        cuda_weights_free(&w->base);
        return s;
    }
    *out = &w->base;
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// workspace

static void cuda_ws_destroy(kvr_workspace *base) {
    cuda_ws *ws = (cuda_ws *)base;
    if (!ws) return;
    cudaSetDevice(ws->dev);
    if (ws->stream) cudaStreamSynchronize(ws->stream);
    void *bufs[] = {ws->x,      ws->h,      ws->qkv,    ws->q,      ws->att,
                    ws->gu,     ws->act,    ws->kcache, ws->vcache, ws->rope_cos,
                    ws->rope_sin, ws->logits, ws->lse,  ws->o32,    ws->lse_run,
                    ws->tokens, ws->top};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaFree(bufs[i]);
    cuda_fi_scratch_free(&ws->fi);
    if (ws->blas) cublasDestroy(ws->blas);
    if (ws->stream) cudaStreamDestroy(ws->stream);
    free(ws);
}

static kvr_status cuda_ws_fill(cuda_ws *ws, const kvr_model *m, int64_t max_chunk,
                               int64_t max_ctx, kvr_error *err) {
    const kvr_model_config *cfg = &m->cfg;
    const size_t c = (size_t)max_chunk, D = (size_t)cfg->d_model, HS = (size_t)cfg->head_dim;
    const size_t NH = (size_t)cfg->n_heads, NKV = (size_t)cfg->n_kv_heads, FF = (size_t)cfg->d_ff;
    const size_t kvd = NKV * HS, L = (size_t)cfg->n_layers, S = (size_t)max_ctx, half = HS / 2;
    CU_TRY(cudaStreamCreateWithFlags(&ws->stream, cudaStreamNonBlocking), "stream");
    CUBLAS_TRY(cublasCreate(&ws->blas), "create");
    CUBLAS_TRY(cublasSetStream(ws->blas, ws->stream), "set stream");
    struct {
        void **p;
        size_t bytes;
    } a[] = {
        {(void **)&ws->x, c * D * 4},          {&ws->h, c * D * 2},
        {(void **)&ws->qkv, c * (NH + 2 * NKV) * HS * 4}, {(void **)&ws->q, c * NH * HS * 4},
        {&ws->att, c * NH * HS * 2},           {(void **)&ws->gu, c * 2 * FF * 4},
        {&ws->act, c * FF * 2},                {(void **)&ws->kcache, L * S * kvd * 4},
        {(void **)&ws->vcache, L * S * kvd * 4}, {(void **)&ws->rope_cos, S * half * 4},
        {(void **)&ws->rope_sin, S * half * 4}, {(void **)&ws->logits, (size_t)cfg->vocab_size * 4},
        {(void **)&ws->lse, c * NH * 4},       {(void **)&ws->o32, c * NH * HS * 4},
        {(void **)&ws->lse_run, c * NH * 4},   {(void **)&ws->tokens, c * 4},
        {(void **)&ws->top, 4},
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof a / sizeof a[0]; i++) total += a[i].bytes;
    for (size_t i = 0; i < sizeof a / sizeof a[0]; i++) {
        cudaError_t e = cudaMalloc(a[i].p, a[i].bytes ? a[i].bytes : 1);
        if (e != cudaSuccess)
            return kvr_error_set(err, KVR_ERR_NOMEM,
                                 "cuda workspace for %lld tokens over %lld positions: cannot "
                                 "allocate about %.2f GiB: %s",
                                 (long long)max_chunk, (long long)max_ctx,
                                 (double)total / (1 << 30), cudaGetErrorString(e));
    }
    CU_TRY(cudaMemsetAsync(ws->kcache, 0, L * S * kvd * 4, ws->stream), "zero the KV cache");
    CU_TRY(cudaMemsetAsync(ws->vcache, 0, L * S * kvd * 4, ws->stream), "zero the KV cache");
    /* RoPE tables for every position, on the host in double as backend_cpu.c computes them */
    float *cs = (float *)malloc(S * half * 2 * sizeof(float));
    if (!cs) return kvr_error_set(err, KVR_ERR_NOMEM, "cuda workspace: RoPE tables");
    for (size_t i = 0; i < half; i++) {
        const double inv_freq = pow((double)cfg->rope_theta, -2.0 * (double)i / (double)HS) /
                                (m->rope_factors ? (double)m->rope_factors[i] : 1.0);
        for (size_t p = 0; p < S; p++) {
            const double th = (double)p * inv_freq;
            cs[p * half + i] = (float)cos(th);
            cs[S * half + p * half + i] = (float)sin(th);
        }
    }
    cudaError_t e = cudaMemcpy(ws->rope_cos, cs, S * half * 4, cudaMemcpyHostToDevice);
    if (e == cudaSuccess) e = cudaMemcpy(ws->rope_sin, cs + S * half, S * half * 4,
                                         cudaMemcpyHostToDevice);
    free(cs);
    if (e != cudaSuccess) return cu_fail(err, e, "RoPE tables");
    /* KVR_CUDA_ATTN=kvr: the tiled kernel even where FlashInfer could run */
    const char *attn = getenv("KVR_CUDA_ATTN");
    ws->use_fi = cuda_fi_supported((int32_t)HS, ws->f16) && !(attn && strcmp(attn, "kvr") == 0);
    if (ws->use_fi)
        CU_TRY(cuda_fi_scratch_alloc(&ws->fi, max_chunk, max_ctx, (int32_t)NH, (int32_t)NKV,
                                     (int32_t)HS),
               "FlashInfer scratch");
    return KVR_OK;
}

static kvr_status cuda_ws_create(const kvr_weights *wb, int64_t max_chunk, int64_t max_ctx,
                                 int32_t n_threads, kvr_workspace **out, kvr_error *err) {
    (void)n_threads; /* the device runs the ops */
    const cuda_weights *w = (const cuda_weights *)wb;
    cuda_ws *ws = (cuda_ws *)calloc(1, sizeof *ws);
    if (!ws) return kvr_error_set(err, KVR_ERR_NOMEM, "workspace: out of memory");
    ws->dev = w->dev;
    ws->f16 = w->f16;
    cudaError_t e = cudaSetDevice(ws->dev);
    kvr_status s = e == cudaSuccess ? cuda_ws_fill(ws, wb->m, max_chunk, max_ctx, err)
                                    : cu_fail(err, e, "device");
    if (s == KVR_OK) {
        e = cudaStreamSynchronize(ws->stream);
        if (e != cudaSuccess) s = cu_fail(err, e, "workspace");
    }
    if (s != KVR_OK) {
        cuda_ws_destroy(&ws->base);
        return s;
    }
    *out = &ws->base;
    return KVR_OK;
}

static const cuda_weights *cu_w(const cuda_ws *ws) {
    return (const cuda_weights *)ws->base.w;
}
static size_t cu_kvd(const cuda_ws *ws) {
    return (size_t)ws->base.m->cfg.n_kv_heads * (size_t)ws->base.m->cfg.head_dim;
}
static float *cu_k(const cuda_ws *ws, int32_t layer) {
    return ws->kcache + (size_t)layer * (size_t)ws->base.max_ctx * cu_kvd(ws);
}
static float *cu_v(const cuda_ws *ws, int32_t layer) {
    return ws->vcache + (size_t)layer * (size_t)ws->base.max_ctx * cu_kvd(ws);
}

// ----------------------------------------------------------------------------
// ops

/* Y (M, N) = X (M, K, 16-bit) . W^T (W: N rows of K, 16-bit) + beta * Y, fp32 compute and Y.
 * Column-major cuBLAS sees Y^T (N, M) = op_T(W as K x N) . X^T (K x M). */
static kvr_status cu_gemm(cuda_ws *ws, int64_t M, int64_t N, int64_t K, const void *X,
                          const void *W, float beta, float *Y, kvr_error *err) {
    const float alpha = 1.0f;
    const cudaDataType_t t = ws->f16 ? CUDA_R_16F : CUDA_R_16BF;
    CUBLAS_TRY(cublasGemmEx(ws->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)M, (int)K, &alpha, W,
                            t, (int)K, X, t, (int)K, &beta, Y, CUDA_R_32F, (int)N,
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "gemm");
    return KVR_OK;
}

static kvr_status cu_rmsnorm(cuda_ws *ws, void *y, const float *x, int64_t ldx, const float *w,
                             int64_t rows, kvr_error *err) {
    const kvr_model_config *cfg = &ws->base.m->cfg;
    if (ws->f16)
        k_rmsnorm<__half><<<(unsigned)rows, KVR_CU_BLOCK, 0, ws->stream>>>(
            (__half *)y, x, ldx, w, cfg->d_model, cfg->norm_eps);
    else
        k_rmsnorm<__nv_bfloat16><<<(unsigned)rows, KVR_CU_BLOCK, 0, ws->stream>>>(
            (__nv_bfloat16 *)y, x, ldx, w, cfg->d_model, cfg->norm_eps);
    CU_LAUNCHED("rmsnorm");
    return KVR_OK;
}

/* The RoPE tables cover every position of the workspace: nothing to do per chunk. */
static kvr_status cuda_set_chunk(kvr_workspace *base, kvr_error *err) {
    (void)base, (void)err;
    return KVR_OK;
}

static kvr_status cuda_embed(kvr_workspace *base, const int32_t *tokens, kvr_error *err) {
    cuda_ws *ws = (cuda_ws *)base;
    CU_TRY(cudaSetDevice(ws->dev), "device");
    /* pageable source: staged before the call returns, so tokens may go right after */
    CU_TRY(cudaMemcpyAsync(ws->tokens, tokens, (size_t)base->c * sizeof(int32_t),
                           cudaMemcpyHostToDevice, ws->stream),
           "token ids to device");
    k_embed<<<(unsigned)base->c, KVR_CU_BLOCK, 0, ws->stream>>>(ws->x, cu_w(ws)->tok_embd,
                                                               ws->tokens, base->m->cfg.d_model);
    CU_LAUNCHED("embed");
    return KVR_OK;
}

static kvr_status cuda_pre(kvr_workspace *base, int32_t layer, kvr_error *err) {
    cuda_ws *ws = (cuda_ws *)base;
    const kvr_model_config *cfg = &base->m->cfg;
    const cuda_layer *w = &cu_w(ws)->layers[layer];
    const int64_t D = cfg->d_model, c = base->c;
    const int64_t nqkv = (int64_t)(cfg->n_heads + 2 * cfg->n_kv_heads) * cfg->head_dim;
    CU_TRY(cudaSetDevice(ws->dev), "device");
    KVR_TRY(cu_rmsnorm(ws, ws->h, ws->x, D, w->attn_norm, c, err));
    KVR_TRY(cu_gemm(ws, c, nqkv, D, ws->h, w->wqkv, 0.0f, ws->qkv, err));
    k_rope_split<<<(unsigned)c, KVR_CU_BLOCK, 0, ws->stream>>>(
        ws->q, cu_k(ws, layer), cu_v(ws, layer), ws->qkv, ws->rope_cos, ws->rope_sin, w->bqkv,
        base->pos0, cfg->n_heads, cfg->n_kv_heads, cfg->head_dim);
    CU_LAUNCHED("rope");
    return KVR_OK;
}

static kvr_status cuda_attn(kvr_workspace *base, int32_t layer, float *lse, kvr_error *err) {
    cuda_ws *ws = (cuda_ws *)base;
    const kvr_model_config *cfg = &base->m->cfg;
    const int32_t c = (int32_t)base->c, NH = cfg->n_heads, NKV = cfg->n_kv_heads;
    const int32_t HS = cfg->head_dim;
    const int64_t P = base->pos0;
    CU_TRY(cudaSetDevice(ws->dev), "device");
    float *dlse = lse ? ws->lse : NULL;
    cudaError_t e;
    if (ws->use_fi)
        e = cuda_fi_attn(ws->stream, &ws->fi, (__nv_bfloat16 *)ws->att, dlse, ws->q,
                         cu_k(ws, layer), cu_v(ws, layer), c, base->pos0, NH, NKV, HS);
    else if (ws->f16)
        e = cu_attn_dispatch<__half>(ws->stream, (__half *)ws->att, dlse, NULL, ws->q,
                                     cu_k(ws, layer), cu_v(ws, layer), c, P, 0, P + c, NH,
                                     NH / NKV, HS, false);
    else
        e = cu_attn_dispatch<__nv_bfloat16>(ws->stream, (__nv_bfloat16 *)ws->att, dlse, NULL,
                                            ws->q, cu_k(ws, layer), cu_v(ws, layer), c, P, 0,
                                            P + c, NH, NH / NKV, HS, false);
    if (e != cudaSuccess) return cu_fail(err, e, "attention");
    if (lse) {
        CU_TRY(cudaMemcpyAsync(lse, ws->lse, (size_t)c * (size_t)NH * sizeof(float),
                               cudaMemcpyDeviceToHost, ws->stream),
               "log-sum-exp to host");
        CU_TRY(cudaStreamSynchronize(ws->stream), "attention");
    }
    return KVR_OK;
}

/* The tiled kernel over the block, merged into the workspace's fp32 running output and LSE
 * (o32, lse_run); att gets the merged value in the 16-bit dtype after every block, so post reads
 * the result whichever block came last. k and v: device rows (this or another workspace's cache
 * on the same device). FlashInfer is not used here: its single prefill has no merge into a
 * running output. */
static kvr_status cuda_attn_block(kvr_workspace *base, const void *k, const void *v,
                                  int64_t kpos0, int64_t kn, bool first, kvr_error *err) {
    cuda_ws *ws = (cuda_ws *)base;
    const kvr_model_config *cfg = &base->m->cfg;
    const int32_t c = (int32_t)base->c, NH = cfg->n_heads, NKV = cfg->n_kv_heads;
    const int32_t HS = cfg->head_dim;
    CU_TRY(cudaSetDevice(ws->dev), "device");
    cudaError_t e;
    if (ws->f16)
        e = cu_attn_dispatch<__half>(ws->stream, (__half *)ws->att, ws->lse_run, ws->o32, ws->q,
                                     (const float *)k, (const float *)v, c, base->pos0, kpos0, kn,
                                     NH, NH / NKV, HS, first);
    else
        e = cu_attn_dispatch<__nv_bfloat16>(ws->stream, (__nv_bfloat16 *)ws->att, ws->lse_run,
                                            ws->o32, ws->q, (const float *)k, (const float *)v, c,
                                            base->pos0, kpos0, kn, NH, NH / NKV, HS, first);
    if (e != cudaSuccess) return cu_fail(err, e, "blockwise attention");
    return KVR_OK;
}

static kvr_status cuda_post(kvr_workspace *base, int32_t layer, kvr_error *err) {
    cuda_ws *ws = (cuda_ws *)base;
    const kvr_model_config *cfg = &base->m->cfg;
    const cuda_layer *w = &cu_w(ws)->layers[layer];
    const int64_t D = cfg->d_model, FF = cfg->d_ff, c = base->c;
    const int64_t NHS = (int64_t)cfg->n_heads * cfg->head_dim;
    CU_TRY(cudaSetDevice(ws->dev), "device");
    KVR_TRY(cu_gemm(ws, c, D, NHS, ws->att, w->wo, 1.0f, ws->x, err)); /* x += att.Wo^T */
    KVR_TRY(cu_rmsnorm(ws, ws->h, ws->x, D, w->ffn_norm, c, err));
    KVR_TRY(cu_gemm(ws, c, 2 * FF, D, ws->h, w->w_gate_up, 0.0f, ws->gu, err));
    const int64_t n = c * FF, nb = (n + KVR_CU_BLOCK - 1) / KVR_CU_BLOCK;
    const unsigned grid = (unsigned)(nb < 65536 ? nb : 65536);
    if (ws->f16)
        k_swiglu<__half><<<grid, KVR_CU_BLOCK, 0, ws->stream>>>((__half *)ws->act, ws->gu, FF, n);
    else
        k_swiglu<__nv_bfloat16>
            <<<grid, KVR_CU_BLOCK, 0, ws->stream>>>((__nv_bfloat16 *)ws->act, ws->gu, FF, n);
    CU_LAUNCHED("swiglu");
    KVR_TRY(cu_gemm(ws, c, D, FF, ws->act, w->w_down, 1.0f, ws->x, err)); /* x += MLP */
    return KVR_OK;
}

static kvr_status cuda_head(kvr_workspace *base, int32_t *top, kvr_error *err) {
    cuda_ws *ws = (cuda_ws *)base;
    const kvr_model_config *cfg = &base->m->cfg;
    const int64_t D = cfg->d_model, V = cfg->vocab_size;
    CU_TRY(cudaSetDevice(ws->dev), "device");
    KVR_TRY(cu_rmsnorm(ws, ws->h, ws->x + (base->c - 1) * D, D, cu_w(ws)->output_norm, 1, err));
    KVR_TRY(cu_gemm(ws, 1, V, D, ws->h, cu_w(ws)->output, 0.0f, ws->logits, err));
    if (!top) return KVR_OK;
    k_argmax<<<1, 1024, 0, ws->stream>>>(ws->top, ws->logits, V);
    CU_LAUNCHED("argmax");
    CU_TRY(cudaMemcpyAsync(top, ws->top, sizeof *top, cudaMemcpyDeviceToHost, ws->stream),
           "argmax to host");
    CU_TRY(cudaStreamSynchronize(ws->stream), "head");
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// copies, raw buffers

static kvr_status cuda_kv_to_host(kvr_workspace *base, int32_t layer, int64_t r0, int64_t n,
                                  float *k, float *v, kvr_error *err) {
    cuda_ws *ws = (cuda_ws *)base;
    const size_t kvd = cu_kvd(ws), bytes = (size_t)n * kvd * sizeof(float);
    CU_TRY(cudaSetDevice(ws->dev), "device");
    if (k)
        CU_TRY(cudaMemcpyAsync(k, cu_k(ws, layer) + (size_t)r0 * kvd, bytes,
                               cudaMemcpyDeviceToHost, ws->stream),
               "K rows to host");
    if (v)
        CU_TRY(cudaMemcpyAsync(v, cu_v(ws, layer) + (size_t)r0 * kvd, bytes,
                               cudaMemcpyDeviceToHost, ws->stream),
               "V rows to host");
    CU_TRY(cudaStreamSynchronize(ws->stream), "KV rows to host");
    return KVR_OK;
}

/* Device to device on dst's stream, after src's stream has finished the rows. */
static kvr_status cuda_kv_copy(kvr_workspace *dst, kvr_workspace *src, int32_t layer, int64_t r0,
                               int64_t n, kvr_error *err) {
    cuda_ws *d = (cuda_ws *)dst, *s = (cuda_ws *)src;
    if (d->dev != s->dev)
        return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                             "KV copy between workspaces on GPUs %d and %d", s->dev, d->dev);
    const size_t kvd = cu_kvd(d), off = (size_t)r0 * kvd, bytes = (size_t)n * kvd * sizeof(float);
    CU_TRY(cudaSetDevice(d->dev), "device");
    CU_TRY(cudaStreamSynchronize(s->stream), "KV copy (source)");
    CU_TRY(cudaMemcpyAsync(cu_k(d, layer) + off, cu_k(s, layer) + off, bytes,
                           cudaMemcpyDeviceToDevice, d->stream),
           "K rows between workspaces");
    CU_TRY(cudaMemcpyAsync(cu_v(d, layer) + off, cu_v(s, layer) + off, bytes,
                           cudaMemcpyDeviceToDevice, d->stream),
           "V rows between workspaces");
    return KVR_OK;
}

static kvr_status cuda_logits_to_host(kvr_workspace *base, float *out, kvr_error *err) {
    cuda_ws *ws = (cuda_ws *)base;
    CU_TRY(cudaSetDevice(ws->dev), "device");
    CU_TRY(cudaMemcpyAsync(out, ws->logits, (size_t)base->m->cfg.vocab_size * sizeof(float),
                           cudaMemcpyDeviceToHost, ws->stream),
           "logits to host");
    CU_TRY(cudaStreamSynchronize(ws->stream), "logits to host");
    return KVR_OK;
}

static kvr_status cuda_x_from_host(kvr_workspace *base, const float *x, int64_t rows,
                                   kvr_error *err) {
    cuda_ws *ws = (cuda_ws *)base;
    CU_TRY(cudaSetDevice(ws->dev), "device");
    CU_TRY(cudaMemcpyAsync(ws->x, x, (size_t)rows * (size_t)base->m->cfg.d_model * sizeof(float),
                           cudaMemcpyHostToDevice, ws->stream),
           "x to device");
    return KVR_OK;
}

static kvr_status cuda_x_to_host(kvr_workspace *base, float *x, int64_t rows, kvr_error *err) {
    cuda_ws *ws = (cuda_ws *)base;
    CU_TRY(cudaSetDevice(ws->dev), "device");
    CU_TRY(cudaMemcpyAsync(x, ws->x, (size_t)rows * (size_t)base->m->cfg.d_model * sizeof(float),
                           cudaMemcpyDeviceToHost, ws->stream),
           "x to host");
    CU_TRY(cudaStreamSynchronize(ws->stream), "x to host");
    return KVR_OK;
}

static void cuda_kv_buffers(kvr_workspace *base, int32_t layer, void **k, void **v) {
    if (k) *k = cu_k((cuda_ws *)base, layer);
    if (v) *v = cu_v((cuda_ws *)base, layer);
}

// ----------------------------------------------------------------------------
// events (cudaEvents on the workspace's stream), synchronisation

static kvr_status cuda_event_create(kvr_workspace *base, kvr_event **out, kvr_error *err) {
    cuda_event *ev = (cuda_event *)calloc(1, sizeof *ev);
    if (!ev) return kvr_error_set(err, KVR_ERR_NOMEM, "event: out of memory");
    cudaError_t e = cudaSetDevice(((cuda_ws *)base)->dev);
    if (e == cudaSuccess) e = cudaEventCreate(&ev->e);
    if (e != cudaSuccess) {
        free(ev);
        return cu_fail(err, e, "event");
    }
    *out = &ev->base;
    return KVR_OK;
}

static void cuda_event_destroy(kvr_event *ev) {
    cudaEventDestroy(((cuda_event *)ev)->e);
    free(ev);
}

static kvr_status cuda_event_record(kvr_event *ev, kvr_error *err) {
    cuda_ws *ws = (cuda_ws *)ev->ws;
    CU_TRY(cudaSetDevice(ws->dev), "device");
    CU_TRY(cudaEventRecord(((cuda_event *)ev)->e, ws->stream), "event record");
    return KVR_OK;
}

static kvr_status cuda_event_elapsed_us(const kvr_event *start, const kvr_event *end, double *us,
                                        kvr_error *err) {
    float ms = 0;
    CU_TRY(cudaEventSynchronize(((const cuda_event *)end)->e), "event wait");
    CU_TRY(cudaEventElapsedTime(&ms, ((const cuda_event *)start)->e, ((const cuda_event *)end)->e),
           "event elapsed time");
    *us = (double)ms * 1e3;
    return KVR_OK;
}

static kvr_status cuda_sync(kvr_workspace *base, kvr_error *err) {
    cuda_ws *ws = (cuda_ws *)base;
    CU_TRY(cudaSetDevice(ws->dev), "device");
    CU_TRY(cudaStreamSynchronize(ws->stream), "sync");
    return KVR_OK;
}

/* The compute stream, for a device transport to order its copies against (kvr_workspace_stream). */
static void *cuda_stream(kvr_workspace *base) {
    return (void *)((cuda_ws *)base)->stream;
}

/* The table, filled by name (C++17 has no designated initialisers; an entry this file does not
 * set stays NULL, so new optional entries of backend_internal.h need no edit here). */
static kvr_backend cuda_table(void) {
    kvr_backend b;
    memset(&b, 0, sizeof b);
    b.name = "cuda";
    b.mem_space = KVR_MEM_DEVICE;
    b.available = cuda_available;
    b.info = cuda_info;
    b.weights_upload = cuda_weights_upload;
    b.weights_free = cuda_weights_free;
    b.ws_create = cuda_ws_create;
    b.ws_destroy = cuda_ws_destroy;
    b.set_chunk = cuda_set_chunk;
    b.embed = cuda_embed;
    b.pre = cuda_pre;
    b.attn = cuda_attn;
    b.attn_block = cuda_attn_block;
    b.post = cuda_post;
    b.head = cuda_head;
    b.kv_to_host = cuda_kv_to_host;
    b.kv_copy = cuda_kv_copy;
    b.logits_to_host = cuda_logits_to_host;
    b.x_from_host = cuda_x_from_host;
    b.x_to_host = cuda_x_to_host;
    b.kv_buffers = cuda_kv_buffers;
    b.event_create = cuda_event_create;
    b.event_destroy = cuda_event_destroy;
    b.event_record = cuda_event_record;
    b.event_elapsed_us = cuda_event_elapsed_us;
    b.sync = cuda_sync;
    b.stream = cuda_stream;
    return b;
}
extern "C" const kvr_backend backend_cuda = cuda_table();
