/* attn_flashinfer.cu -- attention through FlashInfer 0.6.8's single prefill
 * (SinglePrefillWithKVCacheDispatched: bf16, head dims 64 and 128, causal, no RoPE inside), when
 * cmake found its headers (cmake/kvr_flashinfer.cmake fetches them into the build tree; never
 * committed). Only the four variants the backend calls are instantiated, here, in one unit.
 *
 * FlashInfer's causal mask is bottom-right aligned (query q of qo_len sees keys
 * [0, kv_len - qo_len + q]) -- exactly KV-Runahead's chunk after a prefix -- and GQA/MQA come
 * from num_qo_heads / num_kv_heads. Its LSE is base 2 (log2(sum) + max of log2e-scaled scores):
 * converted here to the seam's natural log (times ln 2). Without the headers every entry point
 * says "not supported" and the backend uses its own tiled kernel. */
#include "cuda_internal.h"

#ifdef KVR_USE_FLASHINFER

#include <flashinfer/attention/default_prefill_params.cuh>
#include <flashinfer/attention/prefill.cuh>
#include <flashinfer/attention/variants.cuh>

#include <exception>

const char *cuda_fi_version(void) {
    return ", FlashInfer " KVR_FLASHINFER_VERSION;
}

bool cuda_fi_supported(int32_t HS, bool f16) {
    return !f16 && (HS == 64 || HS == 128);
}

cudaError_t cuda_fi_scratch_alloc(cuda_fi_scratch *s, int64_t max_chunk, int64_t max_ctx,
                                  int32_t NH, int32_t NKV, int32_t HS) {
    const size_t nq = (size_t)max_chunk * (size_t)NH * (size_t)HS;
    const size_t nkv = (size_t)max_ctx * (size_t)NKV * (size_t)HS;
    cudaError_t e = cudaMalloc((void **)&s->q, nq * sizeof(__nv_bfloat16));
    if (e == cudaSuccess) e = cudaMalloc((void **)&s->k, nkv * sizeof(__nv_bfloat16));
    if (e == cudaSuccess) e = cudaMalloc((void **)&s->v, nkv * sizeof(__nv_bfloat16));
    if (e == cudaSuccess) e = cudaMalloc((void **)&s->lse, (size_t)max_chunk * NH * sizeof(float));
    return e;
}

void cuda_fi_scratch_free(cuda_fi_scratch *s) {
    cudaFree(s->q), cudaFree(s->k), cudaFree(s->v), cudaFree(s->lse);
    s->q = s->k = s->v = NULL;
    s->lse = NULL;
}

__global__ void __launch_bounds__(256)
    k_fi_to_bf16(__nv_bfloat16 *__restrict__ dst, const float *__restrict__ src, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ void __launch_bounds__(256)
    k_fi_lse_ln(float *__restrict__ dst, const float *__restrict__ src2, int64_t n) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) dst[i] = src2[i] * 0.69314718055994531f; /* log2 -> ln */
}

static cudaError_t fi_convert(cudaStream_t st, __nv_bfloat16 *dst, const float *src, int64_t n) {
    int64_t blocks = (n + 255) / 256;
    if (blocks > 65536) blocks = 65536;
    k_fi_to_bf16<<<(unsigned)blocks, 256, 0, st>>>(dst, src, n);
    return cudaGetLastError();
}

template <uint32_t HS>
static cudaError_t fi_run(cudaStream_t st, cuda_fi_scratch *s, __nv_bfloat16 *out, bool want_lse,
                          uint32_t c, uint32_t kv_len, uint32_t NH, uint32_t NKV) {
    using namespace flashinfer;
    using Params = SinglePrefillParams<__nv_bfloat16, __nv_bfloat16, __nv_bfloat16>;
    using Variant = DefaultAttention<false, false, false, false>;
    Params p(s->q, s->k, s->v, /*maybe_custom_mask=*/nullptr, out, want_lse ? s->lse : nullptr,
             /*maybe_alibi_slopes=*/nullptr, NH, NKV, c, kv_len, /*q_stride_n=*/NH * HS,
             /*q_stride_h=*/HS, /*kv_stride_n=*/NKV * HS, /*kv_stride_h=*/HS, HS,
             /*window_left=*/-1, /*logits_soft_cap=*/0.0f, 1.0f / sqrtf((float)HS),
             /*rope_scale=*/1.0f, /*rope_theta=*/1e4f);
    try {
        /* tmp = nullptr: no split-KV partitions (one pass per query tile) */
        return SinglePrefillWithKVCacheDispatched<HS, HS, PosEncodingMode::kNone, false,
                                                  MaskMode::kCausal, Variant, Params>(p, nullptr,
                                                                                      st);
    } catch (const std::exception &) {
        return cudaErrorInvalidConfiguration;
    }
}

cudaError_t cuda_fi_attn(cudaStream_t st, cuda_fi_scratch *s, __nv_bfloat16 *out, float *lse,
                         const float *q, const float *K, const float *V, int32_t c, int64_t P,
                         int32_t NH, int32_t NKV, int32_t HS) {
    const int64_t S = P + c, kvd = (int64_t)NKV * HS;
    cudaError_t e = fi_convert(st, s->q, q, (int64_t)c * NH * HS);
    if (e == cudaSuccess) e = fi_convert(st, s->k, K, S * kvd);
    if (e == cudaSuccess) e = fi_convert(st, s->v, V, S * kvd);
    if (e != cudaSuccess) return e;
    if (HS == 64)
        e = fi_run<64>(st, s, out, lse != NULL, (uint32_t)c, (uint32_t)S, (uint32_t)NH,
                       (uint32_t)NKV);
    else if (HS == 128)
        e = fi_run<128>(st, s, out, lse != NULL, (uint32_t)c, (uint32_t)S, (uint32_t)NH,
                        (uint32_t)NKV);
    else
        e = cudaErrorNotSupported;
    if (e != cudaSuccess || !lse) return e;
    const int64_t n = (int64_t)c * NH;
    k_fi_lse_ln<<<(unsigned)((n + 255) / 256), 256, 0, st>>>(lse, s->lse, n);
    return cudaGetLastError();
}

#else /* no FlashInfer headers at configure time */

const char *cuda_fi_version(void) {
    return "";
}
bool cuda_fi_supported(int32_t HS, bool f16) {
    (void)HS, (void)f16;
    return false;
}
cudaError_t cuda_fi_scratch_alloc(cuda_fi_scratch *s, int64_t max_chunk, int64_t max_ctx,
                                  int32_t NH, int32_t NKV, int32_t HS) {
    (void)max_chunk, (void)max_ctx, (void)NH, (void)NKV, (void)HS;
    s->q = s->k = s->v = NULL;
    s->lse = NULL;
    return cudaSuccess;
}
void cuda_fi_scratch_free(cuda_fi_scratch *s) {
    (void)s;
}
cudaError_t cuda_fi_attn(cudaStream_t st, cuda_fi_scratch *s, __nv_bfloat16 *out, float *lse,
                         const float *q, const float *K, const float *V, int32_t c, int64_t P,
                         int32_t NH, int32_t NKV, int32_t HS) {
    (void)st, (void)s, (void)out, (void)lse, (void)q, (void)K, (void)V, (void)c, (void)P;
    (void)NH, (void)NKV, (void)HS;
    return cudaErrorNotSupported;
}

#endif
