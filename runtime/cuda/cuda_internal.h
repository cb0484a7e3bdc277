/* cuda_internal.h -- what the CUDA backend's translation units share (C++/CUDA only): the
 * attention entry points the backend calls, FlashInfer's (attn_flashinfer.cu, empty-handed when
 * its headers were absent at configure time) and the tiled kernel's (backend_cuda.cu), which the
 * GPU tests also use to cross-check the two on the device. */
#ifndef KVR_CUDA_INTERNAL_H
#define KVR_CUDA_INTERNAL_H

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

/* FlashInfer reads 16-bit Q, K and V: the backend's fp32 rotated queries and fp32 cache rows are
 * converted into these before each call (the seam's cache is fp32). */
typedef struct cuda_fi_scratch {
    __nv_bfloat16 *q; /* (max_chunk, NH*HS) */
    __nv_bfloat16 *k; /* (max_ctx, NKV*HS) */
    __nv_bfloat16 *v;
    float *lse;       /* (max_chunk, NH), FlashInfer's base-2 LSE */
} cuda_fi_scratch;

/* ", FlashInfer 0.6.8" when compiled in, else "" (the backend's library string). */
const char *cuda_fi_version(void);
/* Whether FlashInfer runs this head dim in this dtype (compiled in; bf16; HS 64 or 128). */
bool cuda_fi_supported(int32_t HS, bool f16);
cudaError_t cuda_fi_scratch_alloc(cuda_fi_scratch *s, int64_t max_chunk, int64_t max_ctx,
                                  int32_t NH, int32_t NKV, int32_t HS);
void cuda_fi_scratch_free(cuda_fi_scratch *s);

/* Causal attention of c query rows q (c, NH*HS; fp32, rotated, unscaled) over the cache rows
 * [0, P + c) of K and V ((P + c, NKV*HS) fp32): row r sees keys [0, P + r]. out (c, NH*HS) bf16;
 * lse (device (c, NH), NULL = not wanted): natural-log LSE of the 1/sqrt(HS)-scaled scores.
 * Both asynchronous on st. */
cudaError_t cuda_fi_attn(cudaStream_t st, cuda_fi_scratch *s, __nv_bfloat16 *out, float *lse,
                         const float *q, const float *K, const float *V, int32_t c, int64_t P,
                         int32_t NH, int32_t NKV, int32_t HS);
cudaError_t cuda_attn_tiled_bf16(cudaStream_t st, __nv_bfloat16 *out, float *lse, const float *q,
                                 const float *K, const float *V, int32_t c, int64_t P, int32_t NH,
                                 int32_t NKV, int32_t HS);

#endif
