/* kvr_math.h -- the per-element math of the layer ops, shared by the CPU backend (C, inlined
 * into its vectorised loops) and the CUDA kernels (__host__ __device__ under nvcc), so both
 * backends evaluate the same formulas and the CPU tests exercise them:
 *   kvr_expf            exp by 2^floor(t) * a degree-6 minimax polynomial of frac(t)
 *   kvr_rmsnorm_scale   1 / sqrt(mean(x^2) + eps) from the sum of squares
 *   kvr_rope_rotate     one interleaved pair rotated by an angle given as (cos, sin)
 *   kvr_silu_mul        silu(gate) * up, SwiGLU's element
 * Only these formulas are shared: the reductions around them (sums of squares, softmax sums,
 * GEMMs) are each backend's own, in its own order, so the backends agree to rounding, not bit for
 * bit. The CPU backend computes exactly what it computed before these were moved here (the
 * expressions are the ones its loops had, inlined into the same loops).
 * Private to the runtime; pure C11 / C++ (no CUDA types). */
#ifndef KVR_MATH_H
#define KVR_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define KVR_HD __host__ __device__ __forceinline__
#else
#define KVR_HD static inline
#endif

/* float with the bits of i (2^e scaling in kvr_expf) */
KVR_HD float kvr_bits_to_float(int32_t i) {
#if defined(__CUDA_ARCH__)
    return __int_as_float(i);
#else
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
#endif
}

/* exp(x) for x in [-87, 88] (clamped outside), written so a compiler vectorises it:
 * 2^t = 2^floor(t) * 2^frac(t), the fraction by a degree-6 polynomial (near-Taylor). Relative
 * error 5.7e-6 for |x| <= 1, growing to 9e-6 at the ends with the float reduction x * log2 e
 * (measured by tests/test_kvr_math.c; the comment this had in backend_cpu.c said ~2e-7, which
 * it never met). Kept as it is: the CPU backend's results depend on it bit for bit. */
KVR_HD float kvr_expf(float x) {
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
    return p * kvr_bits_to_float(((int32_t)fi + 127) << 23);
}

/* RMSNorm's scale of a row of n with sum of squares ss: y[i] = x[i] * scale * w[i]. */
KVR_HD float kvr_rmsnorm_scale(float ss, int64_t n, float eps) {
    return 1.0f / sqrtf(ss / (float)n + eps);
}

/* Rotate the interleaved pair (*a, *b) by the angle whose cosine and sine are cs, sn. */
KVR_HD void kvr_rope_rotate(float *a, float *b, float cs, float sn) {
    const float x = *a, y = *b;
    *a = x * cs - y * sn;
    *b = x * sn + y * cs;
}

/* SwiGLU's element: silu(gate) * up = gate / (1 + exp(-gate)) * up. */
KVR_HD float kvr_silu_mul(float gate, float up) {
    return gate / (1.0f + kvr_expf(-gate)) * up;
}

#endif /* KVR_MATH_H */
