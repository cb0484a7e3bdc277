/* quant.c -- GGML tensor types: the trait table and the block dequantizers (see quant_internal.h).
 *
 * Block layouts (ggml's ggml-common.h; all little-endian, `half` = IEEE fp16, QK_K = 256):
 *   Q4_0   32 el,  18 B: half d, u8 qs[16]                 x = (q - 8) * d
 *   Q4_1   32 el,  20 B: half d, half m, u8 qs[16]         x = q * d + m
 *   Q5_0   32 el,  22 B: half d, u8 qh[4], u8 qs[16]       x = (q - 16) * d, q = nibble | bit << 4
 *   Q5_1   32 el,  24 B: half d, half m, u8 qh[4], qs[16]  x = q * d + m
 *   Q8_0   32 el,  34 B: half d, i8 qs[32]                 x = q * d
 *   IQ4_NL 32 el,  18 B: half d, u8 qs[16]                 x = d * kvalues[nibble]
 *   Q2_K  256 el,  84 B: u8 scales[16], u8 qs[64], half d, half dmin
 *   Q3_K  256 el, 110 B: u8 hmask[32], u8 qs[64], u8 scales[12], half d
 *   Q4_K  256 el, 144 B: half d, half dmin, u8 scales[12], u8 qs[128]
 *   Q5_K  256 el, 176 B: half d, half dmin, u8 scales[12], u8 qh[32], u8 qs[128]
 *   Q6_K  256 el, 210 B: u8 ql[128], u8 qh[64], i8 scales[16], half d
 *   Q8_K  256 el, 292 B: f32 d, i8 qs[256], i16 bsums[16]   x = d * q
 *   IQ4_XS 256 el, 136 B: half d, u16 scales_h, u8 scales_l[4], u8 qs[128]
 * In the 32-element types element j of a block is the low nibble of qs[j] and element j + 16 the
 * high nibble (Q5: bit j of qh is the fifth bit of element j). The K-quants' element orders are
 * spelled out beside each function. Products are evaluated in the order ggml's reference C code
 * and gguf-py use (scale = d * sub_scale first, then scale * q - min), and this file is compiled
 * without FP contraction, so results are bit-identical to theirs.
 */
#include "quant_internal.h"

#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "quant.c assumes a little-endian host (GGML block data is little-endian)"
#endif

#define QK_K 256

// ----------------------------------------------------------------------------
// scalar helpers

static inline float quant_f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t quant_le16(const uint8_t *b) { return (uint16_t)(b[0] | (b[1] << 8)); }
static inline uint32_t quant_le32(const uint8_t *b) {
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* IEEE fp16 -> fp32, subnormals, inf and NaN included (no F16C needed). */
static inline float quant_half(const uint8_t *b) {
    const uint16_t h = quant_le16(b);
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0) { /* zero or subnormal: mant * 2^-24 */
        const float f = (float)mant * 5.9604644775390625e-08f;
        return sign ? -f : f;
    }
    if (exp == 31) return quant_f32_from_bits(sign | 0x7f800000u | (mant << 13)); /* inf, nan */
    return quant_f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
}

/* The non-linear 4-bit grid of IQ4_NL and IQ4_XS. */
static const int8_t quant_kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                               1,    13,   25,  38,  53,  69,  89,  113};

// ----------------------------------------------------------------------------
// plain types

static void dq_f32(const uint8_t *x, float *y, int64_t nb) { memcpy(y, x, (size_t)nb * sizeof(float)); }

static void dq_f16(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) y[i] = quant_half(x + 2 * i);
}

static void dq_bf16(const uint8_t *x, float *y, int64_t nb) { /* the top half of an fp32 */
    for (int64_t i = 0; i < nb; i++) y[i] = quant_f32_from_bits((uint32_t)quant_le16(x + 2 * i) << 16);
}

// ----------------------------------------------------------------------------
// 32-element blocks

static void dq_q4_0(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 18, y += 32) {
        const float d = quant_half(x);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((int)(x[2 + j] & 0x0f) - 8) * d;
            y[j + 16] = (float)((int)(x[2 + j] >> 4) - 8) * d;
        }
    }
}

static void dq_q4_1(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 20, y += 32) {
        const float d = quant_half(x), m = quant_half(x + 2);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)(x[4 + j] & 0x0f) * d + m;
            y[j + 16] = (float)(x[4 + j] >> 4) * d + m;
        }
    }
}

static void dq_q5_0(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 22, y += 32) {
        const float d = quant_half(x);
        const uint32_t qh = quant_le32(x + 2);
        const uint8_t *qs = x + 6;
        for (int j = 0; j < 16; j++) {
            const int q0 = (qs[j] & 0x0f) | (int)((qh >> j) & 1u) << 4;
            const int q1 = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1u) << 4;
            y[j] = (float)(q0 - 16) * d;
            y[j + 16] = (float)(q1 - 16) * d;
        }
    }
}

static void dq_q5_1(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 24, y += 32) {
        const float d = quant_half(x), m = quant_half(x + 2);
        const uint32_t qh = quant_le32(x + 4);
        const uint8_t *qs = x + 8;
        for (int j = 0; j < 16; j++) {
            const int q0 = (qs[j] & 0x0f) | (int)((qh >> j) & 1u) << 4;
            const int q1 = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1u) << 4;
            y[j] = (float)q0 * d + m;
            y[j + 16] = (float)q1 * d + m;
        }
    }
}

static void dq_q8_0(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 34, y += 32) {
        const float d = quant_half(x);
        for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)x[2 + j] * d;
    }
}

static void dq_iq4_nl(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 18, y += 32) {
        const float d = quant_half(x);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)quant_kvalues_iq4nl[x[2 + j] & 0x0f];
            y[j + 16] = d * (float)quant_kvalues_iq4nl[x[2 + j] >> 4];
        }
    }
}

// ----------------------------------------------------------------------------
// K-quants (256-element super-blocks)

/* Q2_K: 16 sub-blocks of 16; scales[s] = (min << 4) | scale. Element e = 128 h + 32 k + l
 * (h < 2, k < 4, l < 32) is bits 2k..2k+1 of qs[32 h + l]; its sub-block is e / 16. */
static void dq_q2_k(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 84, y += QK_K) {
        const uint8_t *sc = x, *qs = x + 16;
        const float d = quant_half(x + 80), dmin = quant_half(x + 82);
        for (int i = 0; i < 16; i++) {
            const float dl = d * (float)(sc[i] & 0x0f), ml = dmin * (float)(sc[i] >> 4);
            for (int e = 16 * i; e < 16 * i + 16; e++) {
                const int h = e / 128, k = (e % 128) / 32, l = e % 32;
                y[e] = dl * (float)((qs[32 * h + l] >> (2 * k)) & 3) - ml;
            }
        }
    }
}

/* Q3_K: 16 sub-blocks of 16 with 6-bit signed scales (offset 32): the low 4 bits of scale i are
 * nibble i / 8 of scales[i % 8], the high 2 bits are bits 2 (i / 4) of scales[8 + i % 4].
 * Element e = 128 h + 32 k + l: low 2 bits from qs as in Q2_K; bit e / 32 of hmask[l] set means
 * q = low, clear means q = low - 4. */
static void dq_q3_k(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 110, y += QK_K) {
        const uint8_t *hm = x, *qs = x + 32, *sc = x + 96;
        const float d = quant_half(x + 108);
        for (int i = 0; i < 16; i++) {
            const int lo = (sc[i % 8] >> (4 * (i / 8))) & 0x0f;
            const int hi = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
            const float dl = d * (float)((lo | hi << 4) - 32);
            for (int e = 16 * i; e < 16 * i + 16; e++) {
                const int h = e / 128, k = (e % 128) / 32, l = e % 32;
                const int q = ((qs[32 * h + l] >> (2 * k)) & 3) - (((hm[l] >> (e / 32)) & 1) ? 0 : 4);
                y[e] = dl * (float)q;
            }
        }
    }
}

/* The 6-bit scale and min of sub-block j (0..7) of Q4_K / Q5_K from the 12 packed bytes. */
static inline void quant_scale_min_k4(int j, const uint8_t *s, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Q4_K: 8 sub-blocks of 32; element e = 64 c + 32 n + l is nibble n of qs[32 c + l]. */
static void dq_q4_k(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 144, y += QK_K) {
        const float d = quant_half(x), dmin = quant_half(x + 2);
        const uint8_t *scales = x + 4, *qs = x + 16;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            quant_scale_min_k4(j, scales, &sc, &m);
            const float dl = d * (float)sc, ml = dmin * (float)m;
            const uint8_t *q = qs + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            for (int l = 0; l < 32; l++) y[32 * j + l] = dl * (float)((q[l] >> shift) & 0x0f) - ml;
        }
    }
}

/* Q5_K: Q4_K plus a fifth bit: bit j of qh[l] for element 32 j + l. */
static void dq_q5_k(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 176, y += QK_K) {
        const float d = quant_half(x), dmin = quant_half(x + 2);
        const uint8_t *scales = x + 4, *qh = x + 16, *qs = x + 48;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            quant_scale_min_k4(j, scales, &sc, &m);
            const float dl = d * (float)sc, ml = dmin * (float)m;
            const uint8_t *q = qs + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            for (int l = 0; l < 32; l++) {
                const int v = ((q[l] >> shift) & 0x0f) | ((qh[l] >> j) & 1) << 4;
                y[32 * j + l] = dl * (float)v - ml;
            }
        }
    }
}

/* Q6_K: 16 sub-blocks of 16 with int8 scales. Element e = 128 h + r (r < 128): the low 4 bits
 * are nibble r / 64 of ql[64 h + r % 64], the high 2 bits are bits 2 (r / 32) of
 * qh[32 h + r % 32]; q = that 6-bit value - 32, x = (d * scales[e / 16]) * q. */
static void dq_q6_k(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 210, y += QK_K) {
        const uint8_t *ql = x, *qh = x + 128;
        const int8_t *sc = (const int8_t *)(x + 192);
        const float d = quant_half(x + 208);
        for (int i = 0; i < 16; i++) {
            const float dl = d * (float)sc[i];
            for (int e = 16 * i; e < 16 * i + 16; e++) {
                const int h = e / 128, r = e % 128;
                const int lo = (ql[64 * h + r % 64] >> (4 * (r / 64))) & 0x0f;
                const int hi = (qh[32 * h + r % 32] >> (2 * (r / 32))) & 3;
                y[e] = dl * (float)((lo | hi << 4) - 32);
            }
        }
    }
}

/* Q8_K: the intermediate type of llama.cpp's K-quant dot products (no file type writes it). */
static void dq_q8_k(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 292, y += QK_K) {
        const float d = quant_f32_from_bits(quant_le32(x));
        for (int j = 0; j < QK_K; j++) y[j] = d * (float)(int8_t)x[4 + j];
    }
}

/* IQ4_XS: 8 sub-blocks of 32; 6-bit scale of sub-block j = nibble j % 2 of scales_l[j / 2] |
 * bits 2 j..2 j + 1 of scales_h << 4, minus 32. Within a sub-block, IQ4_NL's nibble order over
 * qs[16 j .. 16 j + 15]. */
static void dq_iq4_xs(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 136, y += QK_K) {
        const float d = quant_half(x);
        const uint16_t sh = quant_le16(x + 2);
        const uint8_t *sl = x + 4, *qs = x + 8;
        for (int j = 0; j < 8; j++) {
            const int ls = ((sl[j / 2] >> (4 * (j % 2))) & 0x0f) | ((sh >> (2 * j)) & 3) << 4;
            const float dl = d * (float)(ls - 32);
            for (int l = 0; l < 16; l++) {
                y[32 * j + l] = dl * (float)quant_kvalues_iq4nl[qs[16 * j + l] & 0x0f];
                y[32 * j + l + 16] = dl * (float)quant_kvalues_iq4nl[qs[16 * j + l] >> 4];
            }
        }
    }
}

// ----------------------------------------------------------------------------
// the table

/* Every id a GGML version has defined gets its name (for messages); readable ones a layout. */
static const quant_type_traits quant_types[] = {
    [QUANT_F32] = {"F32", 1, 4, dq_f32},
    [QUANT_F16] = {"F16", 1, 2, dq_f16},
    [QUANT_Q4_0] = {"Q4_0", 32, 18, dq_q4_0},
    [QUANT_Q4_1] = {"Q4_1", 32, 20, dq_q4_1},
    [4] = {"Q4_2", 0, 0, NULL}, /* removed from ggml in 2023 */
    [5] = {"Q4_3", 0, 0, NULL},
    [QUANT_Q5_0] = {"Q5_0", 32, 22, dq_q5_0},
    [QUANT_Q5_1] = {"Q5_1", 32, 24, dq_q5_1},
    [QUANT_Q8_0] = {"Q8_0", 32, 34, dq_q8_0},
    [9] = {"Q8_1", 0, 0, NULL},
    [QUANT_Q2_K] = {"Q2_K", QK_K, 84, dq_q2_k},
    [QUANT_Q3_K] = {"Q3_K", QK_K, 110, dq_q3_k},
    [QUANT_Q4_K] = {"Q4_K", QK_K, 144, dq_q4_k},
    [QUANT_Q5_K] = {"Q5_K", QK_K, 176, dq_q5_k},
    [QUANT_Q6_K] = {"Q6_K", QK_K, 210, dq_q6_k},
    [QUANT_Q8_K] = {"Q8_K", QK_K, 292, dq_q8_k},
    [16] = {"IQ2_XXS", 0, 0, NULL},
    [17] = {"IQ2_XS", 0, 0, NULL},
    [18] = {"IQ3_XXS", 0, 0, NULL},
    [19] = {"IQ1_S", 0, 0, NULL},
    [QUANT_IQ4_NL] = {"IQ4_NL", 32, 18, dq_iq4_nl},
    [21] = {"IQ3_S", 0, 0, NULL},
    [22] = {"IQ2_S", 0, 0, NULL},
    [QUANT_IQ4_XS] = {"IQ4_XS", QK_K, 136, dq_iq4_xs},
    [24] = {"I8", 0, 0, NULL},
    [25] = {"I16", 0, 0, NULL},
    [26] = {"I32", 0, 0, NULL},
    [27] = {"I64", 0, 0, NULL},
    [28] = {"F64", 0, 0, NULL},
    [29] = {"IQ1_M", 0, 0, NULL},
    [QUANT_BF16] = {"BF16", 1, 2, dq_bf16},
    [34] = {"TQ1_0", 0, 0, NULL},
    [35] = {"TQ2_0", 0, 0, NULL},
    [39] = {"MXFP4", 0, 0, NULL},
};
#define QUANT_N_TYPES ((int64_t)(sizeof quant_types / sizeof quant_types[0]))

const quant_type_traits *quant_type_get(int64_t type) {
    static const quant_type_traits unknown = {"unknown", 0, 0, NULL};
    if (type < 0 || type >= QUANT_N_TYPES || !quant_types[type].name) return &unknown;
    return &quant_types[type];
}

bool quant_supported_types_ok(void) {
    const char *s = QUANT_SUPPORTED_TYPES;
    int listed = 0, readable = 0;
    bool seen[QUANT_N_TYPES] = {false};
    while (*s) {
        const size_t n = strcspn(s, " ");
        int64_t hit = -1;
        for (int64_t t = 0; t < QUANT_N_TYPES; t++)
            if (quant_types[t].dequant && strlen(quant_types[t].name) == n &&
                memcmp(quant_types[t].name, s, n) == 0)
                hit = t;
        if (hit < 0 || seen[hit]) return false;
        seen[hit] = true;
        listed++;
        s += n;
        s += strspn(s, " ");
    }
    for (int64_t t = 0; t < QUANT_N_TYPES; t++) readable += quant_types[t].dequant != NULL;
    return listed == readable;
}

static kvr_status quant_check(int32_t type, int64_t n, const quant_type_traits **out, kvr_error *err) {
    const quant_type_traits *t = quant_type_get(type);
    if (!t->dequant)
        return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                             "type %s (%d) is not supported; supported: " QUANT_SUPPORTED_TYPES,
                             t->name, type);
    if (n < 0 || n % t->blck != 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "dequantize %s: %lld elements is not a multiple of the block size %d",
                             t->name, (long long)n, t->blck);
    *out = t;
    return KVR_OK;
}

kvr_status quant_dequant_row(int32_t type, const void *src, float *dst, int64_t n, kvr_error *err) {
    const quant_type_traits *t = NULL;
    KVR_TRY(quant_check(type, n, &t, err));
    t->dequant(src, dst, n / t->blck);
    return KVR_OK;
}

kvr_status quant_dequantize(int32_t type, const void *src_v, float *dst, int64_t n, kvr_error *err) {
    const quant_type_traits *t = NULL;
    KVR_TRY(quant_check(type, n, &t, err));
    const uint8_t *src = src_v;
    const int64_t nb = n / t->blck;
    /* chunks of about 64 Ki elements; large tensors are converted by all OpenMP threads */
    const int64_t per = (65536 + t->blck - 1) / t->blck, n_chunks = (nb + per - 1) / per;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n_chunks > 4)
#endif
    for (int64_t c = 0; c < n_chunks; c++) {
        const int64_t b0 = c * per, nbc = nb - b0 < per ? nb - b0 : per;
        t->dequant(src + (size_t)b0 * (size_t)t->bytes, dst + (size_t)b0 * (size_t)t->blck, nbc);
    }
    return KVR_OK;
}
