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
#include <pthread.h>
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
    /* rows at arbitrary positions (kvr_op_embed_rows; the paged KV pool's ops) */
    bool rope_rows;  /* set_rows: pre takes row r's angles from rows_cos/sin row r */
    float *rows_cos; /* (c, HS/2) */
    float *rows_sin;
    float *h_rows;   /* host: cos (c, HS/2) then sin, computed by set_rows */
    int64_t *slots;  /* (c) kv_store's slots */
    void *meta;      /* attn_paged's sequences, tiles and block tables (meta_cap bytes) */
    void *h_meta;    /* host twin of meta */
    size_t meta_cap;
    float *logits_rows; /* head_rows: (rows, V), grown on demand to logits_rows_n floats */
    size_t logits_rows_n;
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

/* y (rows, D) = RMSNorm(x) * w, row r of x at x + r * ldx (idx: at x + idx[r] * ldx); one
 * block per row. */
template <typename T>
__global__ void __launch_bounds__(KVR_CU_BLOCK)
    k_rmsnorm(T *__restrict__ y, const float *__restrict__ x, int64_t ldx,
              const float *__restrict__ w, int64_t D, float eps,
              const int64_t *__restrict__ idx) {
    __shared__ float part[KVR_CU_BLOCK / 32];
    const float *xr = x + (idx ? idx[blockIdx.x] : (int64_t)blockIdx.x) * ldx;
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

/* Where the block's keys are: key j (of [0, kn)) has its K row at k(j) and its V row at v(j)
 * (NKV*HS floats each; the head's HS start at g*HS). cu_keys_rows: rows of one buffer (the
 * cache, an external block); cu_keys_paged (kvr_op_attn_paged): a sequence's positions through
 * its block table into the pool's layer blocks (K: block_tokens rows, then V) or its staging. */
struct cu_keys_rows {
    const float *K, *V;
    int64_t kvd;
    __device__ __forceinline__ const float *k(int64_t j) const { return K + j * kvd; }
    __device__ __forceinline__ const float *v(int64_t j) const { return V + j * kvd; }
};
struct cu_keys_paged {
    const float *pool, *stage; /* layer blocks [0, n_pool), then the staging blocks */
    const int32_t *tab;        /* the sequence's block table */
    int64_t n_pool, bt, kvd;
    __device__ __forceinline__ const float *k(int64_t j) const {
        const int64_t b = tab[j / bt], f = 2 * bt * kvd;
        return (b < n_pool ? pool + b * f : stage + (b - n_pool) * f) + (j % bt) * kvd;
    }
    __device__ __forceinline__ const float *v(int64_t j) const { return k(j) + bt * kvd; }
};

/* The body of the tiled kernels: rows [bx * KVR_ATT_WARPS, ...) of c, query head h. */
template <int HS, typename T, bool MERGE, typename KEYS>
__device__ __forceinline__ void cu_attn_rows(T *__restrict__ out, float *__restrict__ lse,
                                             float *__restrict__ o32, const float *__restrict__ q,
                                             const KEYS &keys, int32_t c, int64_t q0,
                                             int64_t kpos0, int64_t kn, int32_t NH, int32_t group,
                                             float scale, bool first, int bx, int h) {
    constexpr int NC = (HS + 31) / 32;        /* dims per lane: lane + 32 i */
    constexpr int LW = HS < 32 ? HS : 32;     /* lanes holding dims (HS 16: half the warp) */
    extern __shared__ float smem[];
    float *sk = smem;                         /* KVR_ATT_KT x (HS + 1): padded, no conflicts */
    float *sv = smem + KVR_ATT_KT * (HS + 1); /* KVR_ATT_KT x HS */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = h / group;
    const int r = bx * KVR_ATT_WARPS + warp;
    const int rlast = min(c, (bx + 1) * KVR_ATT_WARPS) - 1;
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
                kv = keys.k(key)[g * HS + d];
                vv = keys.v(key)[g * HS + d];
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
__global__ void __launch_bounds__(KVR_ATT_WARPS * 32)
    k_attn(T *__restrict__ out, float *__restrict__ lse, float *__restrict__ o32,
           const float *__restrict__ q, const float *__restrict__ K, const float *__restrict__ V,
           int32_t c, int64_t q0, int64_t kpos0, int64_t kn, int32_t NH, int32_t group,
           float scale, bool first) {
    const cu_keys_rows keys = {K, V, (int64_t)(NH / group) * HS};
    cu_attn_rows<HS, T, MERGE>(out, lse, o32, q, keys, c, q0, kpos0, kn, NH, group, scale, first,
                               (int)blockIdx.x, (int)blockIdx.y);
}

/* kvr_op_attn_paged: a sequence's rows (its n_rows new tokens after n_past cached ones) at rows
 * [row0, row0 + n_rows) of q and out; its table holds layer block ids at tab of the tables. */
typedef struct cu_pseq {
    int64_t row0, n_rows, n_past, tab;
} cu_pseq;

/* Causal attention of every sequence's rows over its paged keys, the tiled body with the keys
 * read through the block table: grid (tiles, NH), tile t = (sequence, its row tile). Row r of a
 * sequence (position n_past + r) sees positions [0, n_past + r]: cu_attn_rows with q0 = n_past,
 * kpos0 = 0, kn = n_past + n_rows -- as kvr_op_attn sees a chunk after its prefix. */
template <int HS, typename T>
__global__ void __launch_bounds__(KVR_ATT_WARPS * 32)
    k_attn_paged(T *__restrict__ out, const float *__restrict__ q, const float *__restrict__ pool,
                 const float *__restrict__ stage, const cu_pseq *__restrict__ seqs,
                 const int2 *__restrict__ tiles, const int32_t *__restrict__ tabs, int64_t n_pool,
                 int32_t bt, int32_t NH, int32_t group, float scale) {
    const int2 t = tiles[blockIdx.x];
    const cu_pseq s = seqs[t.x];
    const int64_t kvd = (int64_t)(NH / group) * HS, o = s.row0 * NH * HS;
    const cu_keys_paged keys = {pool, stage, tabs + s.tab, n_pool, (int64_t)bt, kvd};
    cu_attn_rows<HS, T, false>(out + o, NULL, NULL, q + o, keys, (int32_t)s.n_rows, s.n_past, 0,
                               s.n_past + s.n_rows, NH, group, scale, false, t.y,
                               (int)blockIdx.y);
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

template <typename T>
static cudaError_t cu_attn_paged_dispatch(cudaStream_t st, T *out, const float *q,
                                          const float *pool, const float *stage,
                                          const cu_pseq *seqs, const int2 *tiles,
                                          const int32_t *tabs, int64_t n_tiles, int64_t n_pool,
                                          int32_t bt, int32_t NH, int32_t group, int32_t HS) {
    const float scale = 1.0f / sqrtf((float)HS);
    const dim3 grid((unsigned)n_tiles, (unsigned)NH);
#define KVR_ATT_CASE(hs)                                                                           \
    case hs:                                                                                       \
        k_attn_paged<hs, T><<<grid, KVR_ATT_WARPS * 32,                                            \
                              (size_t)KVR_ATT_KT * (2 * hs + 1) * sizeof(float), st>>>(            \
            out, q, pool, stage, seqs, tiles, tabs, n_pool, bt, NH, group, scale);                 \
        return cudaGetLastError()
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

/* kvr_op_kv_store: row r's K and V (cache rows r of the layer) into pool slot slots[r] (layer
 * block slot / bt at offset slot % bt; blocks from n_pool on are the staging); -1: not stored.
 * One block per row. */
__global__ void __launch_bounds__(KVR_CU_BLOCK)
    k_kv_store(float *__restrict__ pool, float *__restrict__ stage,
               const int64_t *__restrict__ slots, const float *__restrict__ K, const float *__restrict__ V, int64_t n_pool,
               int64_t bt, int64_t kvd) {
    const int64_t r = blockIdx.x, slot = slots[r];
    if (slot < 0) return;
    const int64_t b = slot / bt, f = 2 * bt * kvd;
    float *dk = (b < n_pool ? pool + b * f : stage + (b - n_pool) * f) + (slot % bt) * kvd;
    float *dv = dk + bt * kvd;
    for (int64_t i = threadIdx.x; i < kvd; i += blockDim.x) {
        dk[i] = K[r * kvd + i];
        dv[i] = V[r * kvd + i];
    }
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
                    ws->tokens, ws->top, ws->rows_cos, ws->rows_sin, ws->slots,
                    ws->meta, ws->logits_rows};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaFree(bufs[i]);
    free(ws->h_rows);
    free(ws->h_meta);
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
        {(void **)&ws->top, 4},                {(void **)&ws->rows_cos, c * half * 4},
        {(void **)&ws->rows_sin, c * half * 4}, {(void **)&ws->slots, c * 8},
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
    ws->h_rows = (float *)malloc(c * half * 2 * sizeof(float));
    if (!ws->h_rows) return kvr_error_set(err, KVR_ERR_NOMEM, "cuda workspace: RoPE rows");
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

/* idx (device, rows entries) or NULL: the rows of x to norm, else rows [0, rows) */
static kvr_status cu_rmsnorm(cuda_ws *ws, void *y, const float *x, int64_t ldx, const float *w,
                             int64_t rows, kvr_error *err, const int64_t *idx = NULL) {
    const kvr_model_config *cfg = &ws->base.m->cfg;
    if (ws->f16)
        k_rmsnorm<__half><<<(unsigned)rows, KVR_CU_BLOCK, 0, ws->stream>>>(
            (__half *)y, x, ldx, w, cfg->d_model, cfg->norm_eps, idx);
    else
        k_rmsnorm<__nv_bfloat16><<<(unsigned)rows, KVR_CU_BLOCK, 0, ws->stream>>>(
            (__nv_bfloat16 *)y, x, ldx, w, cfg->d_model, cfg->norm_eps, idx);
    CU_LAUNCHED("rmsnorm");
    return KVR_OK;
}

/* The RoPE tables cover every position of the workspace: nothing to do per chunk but leave the
 * rows' angles of set_rows. */
static kvr_status cuda_set_chunk(kvr_workspace *base, kvr_error *err) {
    (void)err;
    ((cuda_ws *)base)->rope_rows = false;
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
    /* rows at arbitrary positions (set_rows): row r's angles are row r of the rows' tables, and
     * pos0 is 0, so K/V go to cache rows [0, c) as for a chunk */
    k_rope_split<<<(unsigned)c, KVR_CU_BLOCK, 0, ws->stream>>>(
        ws->q, cu_k(ws, layer), cu_v(ws, layer), ws->qkv,
        ws->rope_rows ? ws->rows_cos : ws->rope_cos, ws->rope_rows ? ws->rows_sin : ws->rope_sin,
        w->bqkv, base->pos0, cfg->n_heads, cfg->n_kv_heads, cfg->head_dim);
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
// the paged KV pool (kvr_batch.h): layer blocks in device memory, the host tier in pinned host
// memory, the copier a second stream

/* Fences the copier keeps events for: fence f uses slot f % KVR_CU_FENCES, and issuing fence f
 * first waits (host) for fence f - KVR_CU_FENCES, so at most this many are in flight. */
#define KVR_CU_FENCES 256

/* The pool. Layer block b (K: block_tokens rows of NKV*HS floats, then V) is blocks + b x its
 * floats for b < n_layer_blocks, else staging block b - n_layer_blocks. Ordering: every op on
 * the pool (kv_store, attn_paged) records ops_ev on its workspace's stream after its kernel, and
 * an op on another stream than the last one first waits for it; every copy the copier issues
 * waits for ops_ev (what the ops wrote is what it copies; what they read is not overwritten
 * under them). The other way, copy_wait waits on the host for the fence's event, so the ops
 * issued after it see the copy (batch.c waits for a staging block's fence before reusing it). */
typedef struct cuda_pool {
    kvr_kv_pool base;
    int dev;
    size_t blk_floats;  /* one layer block */
    float *blocks;      /* n_layer_blocks layer blocks (device) */
    float *stage;       /* staging_blocks layer blocks (device; host tier) */
    float *host;        /* host_blocks layer blocks (pinned host memory; host tier) */
    cudaEvent_t ops_ev; /* after the last op on the pool */
    cudaStream_t ops_stream; /* the stream it was last recorded on; NULL: none yet */
    /* the copier (host tier) */
    bool started;
    cudaStream_t copy;
    int n_ev;           /* events created in each ring (cleanup) */
    cudaEvent_t ev0[KVR_CU_FENCES], ev1[KVR_CU_FENCES]; /* a fence's first and last copy */
    int32_t n_out[KVR_CU_FENCES], n_in[KVR_CU_FENCES];  /* a fence's copies each way */
    pthread_mutex_t mu; /* the fields below: a test thread holds the copier, reads stats */
    pthread_cond_t cv;  /* hold released */
    bool hold;          /* submissions stay queued on the host (tests) */
    kvr_kv_copy *q;     /* submitted, not yet issued, in order; qf: each one's fence */
    uint64_t *qf;
    int64_t qn, qcap;
    uint64_t submitted, issued, done; /* fences */
    int64_t copies_out, copies_in;
    double busy_us;
} cuda_pool;

static float *cu_pool_block(cuda_pool *p, int64_t b) {
    const int64_t n = p->base.n_layer_blocks;
    return b < n ? p->blocks + (size_t)b * p->blk_floats
                 : p->stage + (size_t)(b - n) * p->blk_floats;
}

/* the host tier's memory, stream and events (what of them exists) */
static void cu_host_free(cuda_pool *p) {
    if (p->copy) cudaStreamSynchronize(p->copy); /* what is queued on the host is dropped */
    for (int i = 0; i < p->n_ev; i++) cudaEventDestroy(p->ev0[i]), cudaEventDestroy(p->ev1[i]);
    if (p->copy) cudaStreamDestroy(p->copy);
    cudaFree(p->stage);
    cudaFreeHost(p->host);
    free(p->q), free(p->qf);
    p->copy = NULL, p->n_ev = 0, p->stage = NULL, p->host = NULL, p->q = NULL, p->qf = NULL;
}

static void cuda_pool_destroy(kvr_kv_pool *base) {
    cuda_pool *p = (cuda_pool *)base;
    if (!p) return;
    cudaSetDevice(p->dev);
    if (p->ops_stream) cudaEventSynchronize(p->ops_ev); /* nothing reads the blocks after this */
    cu_host_free(p);
    if (p->started) pthread_mutex_destroy(&p->mu), pthread_cond_destroy(&p->cv);
    if (p->ops_ev) cudaEventDestroy(p->ops_ev);
    cudaFree(p->blocks);
    free(p);
}

static kvr_status cuda_pool_create(const kvr_weights *w, int64_t n_blocks, int32_t block_tokens,
                                   kvr_kv_pool **out, kvr_error *err) {
    const kvr_model_config *cfg = &w->m->cfg;
    cuda_pool *p = (cuda_pool *)calloc(1, sizeof *p);
    if (!p) return kvr_error_set(err, KVR_ERR_NOMEM, "KV pool: out of memory");
    p->dev = ((const cuda_weights *)w)->dev;
    p->blk_floats = 2 * (size_t)block_tokens * (size_t)cfg->n_kv_heads * (size_t)cfg->head_dim;
    const size_t bytes = (size_t)n_blocks * (size_t)cfg->n_layers * p->blk_floats * sizeof(float);
    cudaError_t e = cudaSetDevice(p->dev);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&p->ops_ev, cudaEventDisableTiming);
    if (e != cudaSuccess) {
        cuda_pool_destroy(&p->base);
        return cu_fail(err, e, "KV pool");
    }
    e = cudaMalloc((void **)&p->blocks, bytes);
    if (e != cudaSuccess) {
        cuda_pool_destroy(&p->base);
        return kvr_error_set(err, KVR_ERR_NOMEM,
                             "KV pool of %lld blocks of %d tokens: cannot allocate %.2f GiB of "
                             "device memory: %s",
                             (long long)n_blocks, block_tokens, (double)bytes / (1 << 30),
                             cudaGetErrorString(e));
    }
    e = cudaMemset(p->blocks, 0, bytes); /* the blocks start zeroed (kvr_batch.h) */
    if (e == cudaSuccess) e = cudaDeviceSynchronize(); /* before the ops' non-blocking streams */
    if (e != cudaSuccess) {
        cuda_pool_destroy(&p->base);
        return cu_fail(err, e, "KV pool");
    }
    *out = &p->base;
    return KVR_OK;
}

static kvr_status cuda_host_create(kvr_kv_pool *base, int64_t host_blocks, int64_t staging_blocks,
                                   kvr_error *err) {
    cuda_pool *p = (cuda_pool *)base;
    const size_t blk = p->blk_floats * sizeof(float);
    const size_t hb = (size_t)host_blocks * blk, sb = (size_t)staging_blocks * blk;
    cudaError_t e = cudaSetDevice(p->dev);
    if (e == cudaSuccess) e = cudaHostAlloc((void **)&p->host, hb, cudaHostAllocDefault);
    if (e == cudaSuccess) e = cudaMalloc((void **)&p->stage, sb);
    if (e != cudaSuccess) {
        cu_host_free(p);
        return kvr_error_set(err, KVR_ERR_NOMEM,
                             "KV host tier of %lld layer blocks (%.2f GiB pinned host memory) and "
                             "%lld staging (%.2f GiB device memory): %s",
                             (long long)host_blocks, (double)hb / (1 << 30),
                             (long long)staging_blocks, (double)sb / (1 << 30),
                             cudaGetErrorString(e));
    }
    e = cudaStreamCreateWithFlags(&p->copy, cudaStreamNonBlocking);
    while (e == cudaSuccess && p->n_ev < KVR_CU_FENCES) {
        e = cudaEventCreate(&p->ev0[p->n_ev]);
        if (e == cudaSuccess) {
            e = cudaEventCreate(&p->ev1[p->n_ev]);
            if (e == cudaSuccess) p->n_ev++;
            else cudaEventDestroy(p->ev0[p->n_ev]);
        }
    }
    if (e == cudaSuccess) e = cudaMemset(p->stage, 0, sb);
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    if (e != cudaSuccess) {
        cu_host_free(p);
        return cu_fail(err, e, "KV host tier");
    }
    memset(p->host, 0, hb);
    p->qcap = 256;
    p->q = (kvr_kv_copy *)malloc((size_t)p->qcap * sizeof *p->q);
    p->qf = (uint64_t *)malloc((size_t)p->qcap * sizeof *p->qf);
    if (!p->q || !p->qf) {
        cu_host_free(p);
        return kvr_error_set(err, KVR_ERR_NOMEM, "KV host tier: out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->started = true;
    return KVR_OK;
}

/* Count the fences whose last event has completed, in order (mu held). An error of a copy stops
 * the count; copy_wait reports it. */
static void cu_copier_advance(cuda_pool *p) {
    while (p->done < p->issued) {
        const int s = (int)((p->done + 1) % KVR_CU_FENCES);
        const cudaError_t e = cudaEventQuery(p->ev1[s]);
        if (e == cudaErrorNotReady && cudaPeekAtLastError() == cudaErrorNotReady)
            (void)cudaGetLastError(); /* "not ready" is no error of the next op */
        if (e != cudaSuccess) break;
        float ms = 0;
        if (cudaEventElapsedTime(&ms, p->ev0[s], p->ev1[s]) == cudaSuccess)
            p->busy_us += (double)ms * 1e3;
        p->copies_out += p->n_out[s];
        p->copies_in += p->n_in[s];
        p->done++;
    }
}

/* Issue fence f's n copies on the copy stream, between its two events, after the pool's last op
 * (mu held). */
static kvr_status cu_copier_issue(cuda_pool *p, const kvr_kv_copy *c, int64_t n, uint64_t f,
                                  kvr_error *err) {
    const int s = (int)(f % KVR_CU_FENCES);
    if (f > KVR_CU_FENCES && p->done < f - KVR_CU_FENCES) { /* the slot's previous fence */
        CU_TRY(cudaEventSynchronize(p->ev1[s]), "KV copier");
        cu_copier_advance(p);
    }
    if (p->ops_stream) CU_TRY(cudaStreamWaitEvent(p->copy, p->ops_ev, 0), "KV copier: ops");
    CU_TRY(cudaEventRecord(p->ev0[s], p->copy), "KV copier: event");
    const size_t bytes = p->blk_floats * sizeof(float);
    int32_t out = 0;
    for (int64_t i = 0; i < n; i++) {
        float *d = cu_pool_block(p, c[i].dev), *h = p->host + (size_t)c[i].host * p->blk_floats;
        if (c[i].to_host)
            CU_TRY(cudaMemcpyAsync(h, d, bytes, cudaMemcpyDeviceToHost, p->copy),
                   "KV copier: block to host");
        else
            CU_TRY(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, p->copy),
                   "KV copier: block to device");
        out += c[i].to_host;
    }
    CU_TRY(cudaEventRecord(p->ev1[s], p->copy), "KV copier: event");
    p->n_out[s] = out;
    p->n_in[s] = (int32_t)n - out;
    p->issued = f;
    return KVR_OK;
}

/* Issue every queued submission, in order (mu held; not held). */
static kvr_status cu_copier_flush(cuda_pool *p, kvr_error *err) {
    kvr_status st = KVR_OK;
    if (p->qn > 0) {
        cudaError_t e = cudaSetDevice(p->dev);
        if (e != cudaSuccess) st = cu_fail(err, e, "device");
    }
    for (int64_t i = 0; st == KVR_OK && i < p->qn;) {
        int64_t j = i + 1;
        while (j < p->qn && p->qf[j] == p->qf[i]) j++;
        st = cu_copier_issue(p, p->q + i, j - i, p->qf[i], err);
        i = j;
    }
    p->qn = 0; /* after an error the rest is dropped: copy_wait reports their fences */
    return st;
}

static kvr_status cuda_copy_submit(kvr_kv_pool *base, const kvr_kv_copy *c, int64_t n,
                                   uint64_t *fence, kvr_error *err) {
    cuda_pool *p = (cuda_pool *)base;
    pthread_mutex_lock(&p->mu);
    if (p->qn + n > p->qcap) {
        int64_t cap = p->qcap;
        while (cap < p->qn + n) cap *= 2;
        kvr_kv_copy *q = (kvr_kv_copy *)realloc(p->q, (size_t)cap * sizeof *q);
        if (q) p->q = q;
        uint64_t *qf = (uint64_t *)realloc(p->qf, (size_t)cap * sizeof *qf);
        if (qf) p->qf = qf;
        if (!q || !qf) {
            pthread_mutex_unlock(&p->mu);
            return kvr_error_set(err, KVR_ERR_NOMEM, "KV copier: out of memory for %lld copies",
                                 (long long)n);
        }
        p->qcap = cap;
    }
    const uint64_t f = ++p->submitted;
    for (int64_t i = 0; i < n; i++) p->q[p->qn] = c[i], p->qf[p->qn++] = f;
    const kvr_status st = p->hold ? KVR_OK : cu_copier_flush(p, err);
    pthread_mutex_unlock(&p->mu);
    *fence = f;
    return st;
}

static kvr_status cuda_copy_wait(kvr_kv_pool *base, uint64_t fence, kvr_error *err) {
    cuda_pool *p = (cuda_pool *)base;
    pthread_mutex_lock(&p->mu);
    if (fence > p->submitted) {
        pthread_mutex_unlock(&p->mu);
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "KV copier: fence %llu never submitted",
                             (unsigned long long)fence);
    }
    while (p->hold && fence > p->issued) pthread_cond_wait(&p->cv, &p->mu);
    kvr_status st = fence > p->issued ? cu_copier_flush(p, err) : KVR_OK;
    if (st == KVR_OK && fence > p->issued)
        st = kvr_error_set(err, KVR_ERR_CUDA, "KV copier: fence %llu was dropped after an "
                           "earlier copy failed", (unsigned long long)fence);
    cu_copier_advance(p);
    const bool wait = st == KVR_OK && p->done < fence;
    pthread_mutex_unlock(&p->mu);
    if (!wait) return st;
    /* only this thread issues, so the slot still holds this fence's event */
    CU_TRY(cudaEventSynchronize(p->ev1[fence % KVR_CU_FENCES]), "KV copier: wait");
    pthread_mutex_lock(&p->mu);
    cu_copier_advance(p);
    pthread_mutex_unlock(&p->mu);
    return KVR_OK;
}

static uint64_t cuda_copy_done(kvr_kv_pool *base) {
    cuda_pool *p = (cuda_pool *)base;
    kvr_error ignored;
    pthread_mutex_lock(&p->mu);
    if (!p->hold) (void)cu_copier_flush(p, &ignored); /* an error shows at copy_wait */
    cu_copier_advance(p);
    const uint64_t d = p->done;
    pthread_mutex_unlock(&p->mu);
    return d;
}

/* Tests: hold keeps later submissions queued on the host (copies already issued to the stream
 * run on); releasing lets the next copier call issue them -- a copy_wait blocked on one of them
 * issues them itself. No CUDA call here: any thread may hold and release. */
static void cuda_copy_hold(kvr_kv_pool *base, bool hold) {
    cuda_pool *p = (cuda_pool *)base;
    pthread_mutex_lock(&p->mu);
    p->hold = hold;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Copies and busy time of the fences completed so far (busy: each fence's first to last event,
 * cudaEventElapsedTime). */
static void cuda_copy_stats(kvr_kv_pool *base, kvr_kv_pool_stats *st) {
    cuda_pool *p = (cuda_pool *)base;
    pthread_mutex_lock(&p->mu);
    cu_copier_advance(p);
    st->copies_out = p->copies_out;
    st->copies_in = p->copies_in;
    st->copy_busy_us = p->busy_us;
    pthread_mutex_unlock(&p->mu);
}

/* RoPE angles of rows [0, c) at positions pos, on the host in double as backend_cpu.c's
 * set_rows, to the rows' tables; pre reads them until the next set_chunk. */
static kvr_status cuda_set_rows(kvr_workspace *base, const int64_t *pos, kvr_error *err) {
    cuda_ws *ws = (cuda_ws *)base;
    const kvr_model *m = base->m;
    const int64_t c = base->c, HS = m->cfg.head_dim, half = HS / 2;
    float *cs = ws->h_rows, *sn = ws->h_rows + c * half;
    for (int64_t i = 0; i < half; i++) {
        const double inv_freq = pow((double)m->cfg.rope_theta, -2.0 * (double)i / (double)HS) /
                                (m->rope_factors ? (double)m->rope_factors[i] : 1.0);
        for (int64_t r = 0; r < c; r++) {
            const double th = (double)pos[r] * inv_freq;
            cs[r * half + i] = (float)cos(th);
            sn[r * half + i] = (float)sin(th);
        }
    }
    const size_t bytes = (size_t)(c * half) * sizeof(float);
    CU_TRY(cudaSetDevice(ws->dev), "device");
    /* pageable source: staged before the call returns (as embed's token ids) */
    CU_TRY(cudaMemcpyAsync(ws->rows_cos, cs, bytes, cudaMemcpyHostToDevice, ws->stream),
           "RoPE rows to device");
    CU_TRY(cudaMemcpyAsync(ws->rows_sin, sn, bytes, cudaMemcpyHostToDevice, ws->stream),
           "RoPE rows to device");
    ws->rope_rows = true;
    return KVR_OK;
}

/* Before an op on the pool: the workspace's stream after the pool's last op on another. */
static kvr_status cu_pool_begin(cuda_ws *ws, cuda_pool *p, kvr_error *err) {
    if (p->dev != ws->dev)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "KV pool on GPU %d, the workspace on GPU %d", p->dev, ws->dev);
    CU_TRY(cudaSetDevice(ws->dev), "device");
    if (p->ops_stream && p->ops_stream != ws->stream)
        CU_TRY(cudaStreamWaitEvent(ws->stream, p->ops_ev, 0), "KV pool: order");
    return KVR_OK;
}
static kvr_status cu_pool_end(cuda_ws *ws, cuda_pool *p, kvr_error *err) {
    CU_TRY(cudaEventRecord(p->ops_ev, ws->stream), "KV pool: event");
    p->ops_stream = ws->stream;
    return KVR_OK;
}

static kvr_status cuda_kv_store(kvr_workspace *base, kvr_kv_pool *pb, int32_t layer,
                                const int64_t *slots, kvr_error *err) {
    cuda_ws *ws = (cuda_ws *)base;
    cuda_pool *p = (cuda_pool *)pb;
    KVR_TRY(cu_pool_begin(ws, p, err));
    CU_TRY(cudaMemcpyAsync(ws->slots, slots, (size_t)base->c * sizeof *slots,
                           cudaMemcpyHostToDevice, ws->stream),
           "KV slots to device");
    k_kv_store<<<(unsigned)base->c, KVR_CU_BLOCK, 0, ws->stream>>>(
        p->blocks, p->stage, ws->slots, cu_k(ws, layer), cu_v(ws, layer), pb->n_layer_blocks,
        pb->block_tokens, (int64_t)cu_kvd(ws));
    CU_LAUNCHED("KV store");
    return cu_pool_end(ws, p, err);
}

/* The sequences, their row tiles and their block tables go to the device in one copy (the
 * workspace's meta buffer, grown on demand), then one launch of the paged kernel. */
static kvr_status cuda_attn_paged(kvr_workspace *base, kvr_kv_pool *pb, int32_t layer,
                                  const kvr_paged_seq *seqs, int32_t n, kvr_error *err) {
    cuda_ws *ws = (cuda_ws *)base;
    cuda_pool *p = (cuda_pool *)pb;
    const kvr_model_config *cfg = &base->m->cfg;
    const int64_t bt = pb->block_tokens;
    (void)layer; /* the blocks are the layer's */
    int64_t n_tiles = 0, n_tab = 0;
    for (int32_t i = 0; i < n; i++) {
        n_tiles += KVR_CEIL_DIV(seqs[i].n_rows, (int64_t)KVR_ATT_WARPS);
        n_tab += KVR_CEIL_DIV(seqs[i].n_past + seqs[i].n_rows, bt);
    }
    if (n_tiles == 0) return KVR_OK;
    const size_t o_tiles = (size_t)n * sizeof(cu_pseq), o_tab = o_tiles + (size_t)n_tiles * 8;
    const size_t bytes = o_tab + (size_t)n_tab * sizeof(int32_t);
    if (bytes > ws->meta_cap) {
        const size_t cap = bytes * 2;
        void *h = realloc(ws->h_meta, cap);
        if (!h) return kvr_error_set(err, KVR_ERR_NOMEM, "paged attention: out of memory");
        ws->h_meta = h;
        CU_TRY(cudaSetDevice(ws->dev), "device");
        CU_TRY(cudaStreamSynchronize(ws->stream), "paged attention"); /* the old one is free */
        cudaFree(ws->meta);
        ws->meta = NULL;
        ws->meta_cap = 0;
        const cudaError_t e = cudaMalloc(&ws->meta, cap);
        if (e != cudaSuccess) {
            ws->meta = NULL;
            return kvr_error_set(err, KVR_ERR_NOMEM,
                                 "paged attention: cannot allocate %zu bytes of device memory: %s",
                                 cap, cudaGetErrorString(e));
        }
        ws->meta_cap = cap;
    }
    char *hm = (char *)ws->h_meta;
    cu_pseq *hs = (cu_pseq *)hm;
    int2 *ht = (int2 *)(hm + o_tiles);
    int32_t *hb = (int32_t *)(hm + o_tab);
    int64_t t = 0, k = 0;
    for (int32_t i = 0; i < n; i++) {
        const kvr_paged_seq *s = &seqs[i];
        const int64_t used = KVR_CEIL_DIV(s->n_past + s->n_rows, bt);
        hs[i].row0 = s->row0, hs[i].n_rows = s->n_rows, hs[i].n_past = s->n_past, hs[i].tab = k;
        memcpy(hb + k, s->blocks, (size_t)used * sizeof(int32_t));
        k += used;
        for (int64_t j = 0; j < KVR_CEIL_DIV(s->n_rows, (int64_t)KVR_ATT_WARPS); j++)
            ht[t++] = make_int2((int)i, (int)j);
    }
    KVR_TRY(cu_pool_begin(ws, p, err));
    CU_TRY(cudaMemcpyAsync(ws->meta, hm, bytes, cudaMemcpyHostToDevice, ws->stream),
           "paged attention: tables to device");
    const char *dm = (const char *)ws->meta;
    const cu_pseq *ds = (const cu_pseq *)dm;
    const int2 *dt = (const int2 *)(dm + o_tiles);
    const int32_t *db = (const int32_t *)(dm + o_tab);
    const int32_t NH = cfg->n_heads, group = NH / cfg->n_kv_heads, HS = cfg->head_dim;
    cudaError_t e;
    if (ws->f16)
        e = cu_attn_paged_dispatch<__half>(ws->stream, (__half *)ws->att, ws->q, p->blocks,
                                           p->stage, ds, dt, db, n_tiles, pb->n_layer_blocks,
                                           (int32_t)bt, NH, group, HS);
    else
        e = cu_attn_paged_dispatch<__nv_bfloat16>(ws->stream, (__nv_bfloat16 *)ws->att, ws->q,
                                                  p->blocks, p->stage, ds, dt, db, n_tiles,
                                                  pb->n_layer_blocks, (int32_t)bt, NH, group, HS);
    if (e != cudaSuccess) return cu_fail(err, e, "paged attention");
    return cu_pool_end(ws, p, err);
}

/* The LM head of rows rows[0..n) as one GEMM per max_chunk of them: the rows normed into h
 * (gathered by index; h is free after post), h . W_out^T into the rows' logits buffer (grown on
 * demand), one copy to the host; one synchronisation in all (the front end's fallback, head per
 * row, synchronises per row). */
static kvr_status cuda_head_rows(kvr_workspace *base, const int64_t *rows, int32_t n,
                                 float *logits, kvr_error *err) {
    cuda_ws *ws = (cuda_ws *)base;
    const kvr_model_config *cfg = &base->m->cfg;
    const int64_t D = cfg->d_model, V = cfg->vocab_size;
    const int64_t m_max = n < base->max_chunk ? n : base->max_chunk;
    CU_TRY(cudaSetDevice(ws->dev), "device");
    if ((size_t)(m_max * V) > ws->logits_rows_n) {
        CU_TRY(cudaStreamSynchronize(ws->stream), "LM head rows"); /* the old buffer is free */
        cudaFree(ws->logits_rows);
        ws->logits_rows = NULL;
        ws->logits_rows_n = 0;
        const cudaError_t e = cudaMalloc((void **)&ws->logits_rows, (size_t)(m_max * V) * 4);
        if (e != cudaSuccess) {
            ws->logits_rows = NULL;
            return kvr_error_set(err, KVR_ERR_NOMEM,
                                 "LM head of %lld rows: cannot allocate %.1f MiB of device memory: "
                                 "%s",
                                 (long long)m_max, (double)(m_max * V) * 4 / (1 << 20),
                                 cudaGetErrorString(e));
        }
        ws->logits_rows_n = (size_t)(m_max * V);
    }
    for (int64_t i0 = 0; i0 < n; i0 += m_max) {
        const int64_t m = n - i0 < m_max ? n - i0 : m_max;
        /* the row indices through the slots buffer (max_chunk entries; stream-ordered) */
        CU_TRY(cudaMemcpyAsync(ws->slots, rows + i0, (size_t)m * sizeof *rows,
                               cudaMemcpyHostToDevice, ws->stream),
               "LM head rows to device");
        KVR_TRY(cu_rmsnorm(ws, ws->h, ws->x, D, cu_w(ws)->output_norm, m, err, ws->slots));
        KVR_TRY(cu_gemm(ws, m, V, D, ws->h, cu_w(ws)->output, 0.0f, ws->logits_rows, err));
        CU_TRY(cudaMemcpyAsync(logits + i0 * V, ws->logits_rows, (size_t)(m * V) * sizeof(float),
                               cudaMemcpyDeviceToHost, ws->stream),
               "logits to host");
    }
    CU_TRY(cudaStreamSynchronize(ws->stream), "LM head rows");
    return KVR_OK;
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
    b.pool_create = cuda_pool_create;
    b.pool_destroy = cuda_pool_destroy;
    b.set_rows = cuda_set_rows;
    b.kv_store = cuda_kv_store;
    b.attn_paged = cuda_attn_paged;
    b.host_create = cuda_host_create;
    b.copy_submit = cuda_copy_submit;
    b.copy_wait = cuda_copy_wait;
    b.copy_done = cuda_copy_done;
    b.copy_hold = cuda_copy_hold;
    b.copy_stats = cuda_copy_stats;
    b.head_rows = cuda_head_rows;
    return b;
}
extern "C" const kvr_backend backend_cuda = cuda_table();
