/* quant_internal.h -- the GGML tensor types kvr can read, and their dequantizers (runtime/quant.c).
 *
 * One table of type traits, indexed by the GGML type id that GGUF files store: the name, the
 * elements and bytes per block, and a block-row dequantizer to fp32. Every loader (GGUF, the
 * safetensors F32/F16/BF16 path) and anything that later dequantizes a row on demand goes through
 * it, so a type is added in one place. Block layouts: ggml's ggml-common.h / ggml-quants.c; the
 * values are checked element for element against gguf-py's numpy dequantizers
 * (tests/ref/reference_quants.py) and, for Q8_K, against ggml's own C dequantizer.
 *
 * Usage:   const quant_type_traits *t = quant_type_get(type);
 *          if (!t->dequant) ... not readable ...;
 *          KVR_TRY(quant_dequant_row(type, src, dst, n_elems, &err));  // one row, this thread
 *          KVR_TRY(quant_dequantize(type, src, dst, n_elems, &err));   // a tensor, OpenMP
 * Threads: everything here is reentrant; quant_dequantize uses the OpenMP team for large inputs.
 * Host:    little-endian (GGUF data is little-endian); fp16 converted in portable C.
 */
#ifndef KVR_QUANT_INTERNAL_H
#define KVR_QUANT_INTERNAL_H

#include "kvr_common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Dequantize n_blocks consecutive blocks at src into n_blocks * blck floats at dst. */
typedef void (*quant_dequant_fn)(const uint8_t *src, float *dst, int64_t n_blocks);

typedef struct quant_type_traits {
    const char *name;         /* "Q4_K"; "unknown" for ids no GGML version defines */
    int32_t blck;             /* elements per block; 0 for a type kvr cannot read */
    int32_t bytes;            /* bytes per block; 0 for a type kvr cannot read */
    quant_dequant_fn dequant; /* NULL for a type kvr cannot read */
} quant_type_traits;

/* The readable types, in the order messages list them. quant_supported_types_ok() checks in the
 * unit tests that this string names exactly the table's readable entries. */
#define QUANT_SUPPORTED_TYPES                                                                       \
    "F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K Q8_K IQ4_NL IQ4_XS"

/* GGML type ids of the readable types (ggml.h's enum ggml_type). */
enum {
    QUANT_F32 = 0,
    QUANT_F16 = 1,
    QUANT_Q4_0 = 2,
    QUANT_Q4_1 = 3,
    QUANT_Q5_0 = 6,
    QUANT_Q5_1 = 7,
    QUANT_Q8_0 = 8,
    QUANT_Q2_K = 10,
    QUANT_Q3_K = 11,
    QUANT_Q4_K = 12,
    QUANT_Q5_K = 13,
    QUANT_Q6_K = 14,
    QUANT_Q8_K = 15,
    QUANT_IQ4_NL = 20,
    QUANT_IQ4_XS = 23,
    QUANT_BF16 = 30,
};

/* Traits of a GGML type id; never NULL (ids outside the table get the "unknown" entry). */
const quant_type_traits *quant_type_get(int64_t type);
static inline bool quant_type_supported(int64_t type) { return quant_type_get(type)->dequant != NULL; }
/* True when QUANT_SUPPORTED_TYPES names exactly the readable entries of the table, each once
 * (a unit-test hook). */
bool quant_supported_types_ok(void);

/* Dequantize n elements (a multiple of the type's block size) on the calling thread.
 * Errors: KVR_ERR_UNSUPPORTED for a type kvr cannot read (the message names it and lists the
 * readable ones), KVR_ERR_INVALID_ARG when n is negative or not a multiple of the block size. */
kvr_status quant_dequant_row(int32_t type, const void *src, float *dst, int64_t n, kvr_error *err);
/* The same for a whole tensor: large inputs are split over the OpenMP threads. */
kvr_status quant_dequantize(int32_t type, const void *src, float *dst, int64_t n, kvr_error *err);

#endif /* KVR_QUANT_INTERNAL_H */
