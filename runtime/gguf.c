/* gguf.c -- GGUF (versions 2 and 3) reader for Llama-family models: header, metadata (every value
 * type, nested arrays skipped), tensor infos, alignment, the tensors copied into the model's
 * arena in their stored types (every type in quant_internal.h's table: F32, F16, BF16, the
 * 32-element quants, the K-quants, IQ4_NL/IQ4_XS; the norms converted to fp32), and the
 * tokenizer metadata (byte-level BPE or SentencePiece).
 *
 * One parsing path: kvr_model_load_gguf maps the file read-only and hands the bytes to
 * gguf_load_from_memory, which the fuzz target (tests/fuzz/fuzz_gguf.c) calls directly.
 *
 * Every value read from the file is checked before use: counts are bounded by the bytes left,
 * every read is bounds-checked against the buffer, sizes use overflow-checked arithmetic, and the
 * tensors the model needs must have the shape the metadata implies, a supported type, an aligned
 * offset, data inside the file and no overlap with one another. The last rule bounds the arena
 * by the file size (plus the norms' fp32 expansion and 3 bytes of padding per tensor), so a small
 * corrupt file can never request gigabytes.
 * Layout reference: ggml docs/gguf.md. Format notes and validation rules: docs/model-formats.md.
 */
#define _DEFAULT_SOURCE /* madvise */
#include "quant_internal.h"
#include "runtime_internal.h"

#include <limits.h>
#include <sys/mman.h>
#include <unistd.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c assumes a little-endian host (GGUF tensor data is little-endian)"
#endif

#define GGUF_MAX_TENSORS   100000
#define GGUF_MAX_KV        1000000
#define GGUF_MAX_DIMS      4
#define GGUF_MAX_DEPTH     8 /* nested metadata arrays deeper than this are rejected */
#define GGUF_MAX_ALIGNMENT (1u << 30)

// ----------------------------------------------------------------------------
// types

enum {
    GGUF_T_U8,
    GGUF_T_I8,
    GGUF_T_U16,
    GGUF_T_I16,
    GGUF_T_U32,
    GGUF_T_I32,
    GGUF_T_F32,
    GGUF_T_BOOL,
    GGUF_T_STRING,
    GGUF_T_ARRAY,
    GGUF_T_U64,
    GGUF_T_I64,
    GGUF_T_F64,
    GGUF_T_COUNT
};
static const uint8_t gguf_value_size[GGUF_T_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
static const char *const gguf_value_names[GGUF_T_COUNT] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32",  "float32",
    "bool",  "string", "array", "uint64", "int64", "float64"};

// ----------------------------------------------------------------------------
// little-endian readers

static inline float gguf_f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t gguf_le16(const uint8_t *b) {
    return (uint16_t)(b[0] | (b[1] << 8));
}
static inline uint32_t gguf_le32(const uint8_t *b) {
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
static inline uint64_t gguf_le64(const uint8_t *b) {
    return (uint64_t)gguf_le32(b) | (uint64_t)gguf_le32(b + 4) << 32;
}

// ----------------------------------------------------------------------------
// bounds-checked reader

typedef struct gguf_sv { /* a string inside the file: not NUL-terminated */
    const char *s;
    size_t n;
} gguf_sv;

typedef struct gguf_kv {
    gguf_sv key;
    uint32_t type;     /* GGUF_T_* */
    size_t at;         /* offset of the value; for arrays, of the first element */
    uint32_t arr_type; /* arrays only */
    uint64_t arr_n;
} gguf_kv;

typedef struct gguf_tinfo {
    bool present;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint32_t type;
    uint64_t offset; /* relative to the data section */
    size_t nbytes;
    const uint8_t *data;
} gguf_tinfo;

typedef struct gguf_ctx {
    const uint8_t *p;
    size_t len, pos;
    const char *fname;
    kvr_error *err;
    gguf_kv *kv;
    uint64_t n_kv;
    bool release; /* p is a read-only file mapping: drop each tensor's pages once copied */
} gguf_ctx;

/* Drop the whole pages of [p, p + n) from a read-only file mapping (they are re-read from the
 * file if touched again), so a load never holds the file and the arena in memory at once. */
static void gguf_release(const gguf_ctx *c, const uint8_t *p, size_t n) {
    if (!c->release || n == 0) return;
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t a = ((uintptr_t)p + pg - 1) / pg * pg, b = ((uintptr_t)p + n) / pg * pg;
    if (b > a) (void)madvise((void *)a, b - a, MADV_DONTNEED); /* advisory: errors ignored */
}

/* at most this many characters of a file-supplied string go into a message */
#define GGUF_SV_ARGS(sv) (int)((sv).n > 80 ? 80 : (sv).n), (sv).s

static kvr_status gguf_truncated(gguf_ctx *c, const char *what) {
    return kvr_error_set(c->err, KVR_ERR_FORMAT,
                         "%s: truncated file: %s at byte %zu runs past the end (%zu bytes)",
                         c->fname, what, c->pos, c->len);
}

static kvr_status gguf_take(gguf_ctx *c, size_t n, const uint8_t **at, const char *what) {
    if (n > c->len - c->pos) return gguf_truncated(c, what);
    *at = c->p + c->pos;
    c->pos += n;
    return KVR_OK;
}
static kvr_status gguf_u32(gguf_ctx *c, uint32_t *v, const char *what) {
    const uint8_t *b = NULL;
    KVR_TRY(gguf_take(c, 4, &b, what));
    *v = gguf_le32(b);
    return KVR_OK;
}
static kvr_status gguf_u64(gguf_ctx *c, uint64_t *v, const char *what) {
    const uint8_t *b = NULL;
    KVR_TRY(gguf_take(c, 8, &b, what));
    *v = gguf_le64(b);
    return KVR_OK;
}
static kvr_status gguf_str(gguf_ctx *c, gguf_sv *s, const char *what) {
    uint64_t n;
    KVR_TRY(gguf_u64(c, &n, what));
    if (n > c->len - c->pos)
        return kvr_error_set(c->err, KVR_ERR_FORMAT,
                             "%s: %s at byte %zu has length %llu, past the end of the file (%zu "
                             "bytes)",
                             c->fname, what, c->pos - 8, (unsigned long long)n, c->len);
    s->s = (const char *)c->p + c->pos;
    s->n = (size_t)n;
    c->pos += (size_t)n;
    return KVR_OK;
}

static kvr_status gguf_skip_elems(gguf_ctx *c, uint32_t et, uint64_t n, int depth,
                                  const gguf_sv *key);

/* Validate and step over one value of the given type. */
static kvr_status gguf_skip_value(gguf_ctx *c, uint32_t type, int depth, const gguf_sv *key) {
    if (type >= GGUF_T_COUNT)
        return kvr_error_set(c->err, KVR_ERR_FORMAT, "%s: metadata %.*s: unknown value type %u",
                             c->fname, GGUF_SV_ARGS(*key), type);
    if (type == GGUF_T_STRING) {
        gguf_sv s;
        return gguf_str(c, &s, "metadata string");
    }
    if (type == GGUF_T_ARRAY) {
        if (depth >= GGUF_MAX_DEPTH)
            return kvr_error_set(c->err, KVR_ERR_FORMAT,
                                 "%s: metadata %.*s: arrays nested deeper than %d", c->fname,
                                 GGUF_SV_ARGS(*key), GGUF_MAX_DEPTH);
        uint32_t et;
        uint64_t n;
        KVR_TRY(gguf_u32(c, &et, "metadata array type"));
        KVR_TRY(gguf_u64(c, &n, "metadata array length"));
        return gguf_skip_elems(c, et, n, depth + 1, key);
    }
    const uint8_t *b = NULL;
    return gguf_take(c, gguf_value_size[type], &b, "metadata value");
}

static kvr_status gguf_skip_elems(gguf_ctx *c, uint32_t et, uint64_t n, int depth,
                                  const gguf_sv *key) {
    if (et >= GGUF_T_COUNT)
        return kvr_error_set(c->err, KVR_ERR_FORMAT,
                             "%s: metadata %.*s: unknown array element type %u", c->fname,
                             GGUF_SV_ARGS(*key), et);
    if (et != GGUF_T_STRING && et != GGUF_T_ARRAY) {
        const size_t sz = gguf_value_size[et];
        if (n > (c->len - c->pos) / sz)
            return kvr_error_set(c->err, KVR_ERR_FORMAT,
                                 "%s: metadata %.*s: array of %llu %s runs past the end of the file",
                                 c->fname, GGUF_SV_ARGS(*key), (unsigned long long)n,
                                 gguf_value_names[et]);
        c->pos += (size_t)n * sz;
        return KVR_OK;
    }
    /* strings take >= 8 bytes and arrays >= 12 each, so this loop is bounded by the file size */
    for (uint64_t i = 0; i < n; i++) KVR_TRY(gguf_skip_value(c, et, depth, key));
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// metadata lookups (values were bounds-checked while parsing)

static const gguf_kv *gguf_find(const gguf_ctx *c, const char *key) {
    const size_t kn = strlen(key);
    for (uint64_t i = 0; i < c->n_kv; i++) /* the first occurrence wins */
        if (c->kv[i].key.n == kn && memcmp(c->kv[i].key.s, key, kn) == 0) return &c->kv[i];
    return NULL;
}

static kvr_status gguf_wrong_type(gguf_ctx *c, const char *key, const gguf_kv *kv,
                                  const char *want) {
    return kvr_error_set(c->err, KVR_ERR_FORMAT, "%s: metadata %s has type %s, expected %s",
                         c->fname, key, gguf_value_names[kv->type], want);
}

/* Integer metadata (any integer type) in [lo, hi]; absent -> def, or an error when required. */
static kvr_status gguf_get_int(gguf_ctx *c, const char *key, bool required, int64_t def, int64_t lo,
                               int64_t hi, int64_t *out, bool *found) {
    const gguf_kv *kv = gguf_find(c, key);
    if (found) *found = kv != NULL;
    if (!kv) {
        if (required)
            return kvr_error_set(c->err, KVR_ERR_FORMAT, "%s: missing metadata %s", c->fname, key);
        *out = def;
        return KVR_OK;
    }
    const uint8_t *b = c->p + kv->at;
    int64_t v;
    switch (kv->type) {
    case GGUF_T_U8: v = b[0]; break;
    case GGUF_T_I8: v = (int8_t)b[0]; break;
    case GGUF_T_U16: v = gguf_le16(b); break;
    case GGUF_T_I16: v = (int16_t)gguf_le16(b); break;
    case GGUF_T_U32: v = gguf_le32(b); break;
    case GGUF_T_I32: v = (int32_t)gguf_le32(b); break;
    case GGUF_T_U64: {
        uint64_t u = gguf_le64(b);
        v = u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)u;
        break;
    }
    case GGUF_T_I64: v = (int64_t)gguf_le64(b); break;
    default: return gguf_wrong_type(c, key, kv, "an integer");
    }
    if (v < lo || v > hi)
        return kvr_error_set(c->err, KVR_ERR_FORMAT, "%s: metadata %s = %lld is outside [%lld, %lld]",
                             c->fname, key, (long long)v, (long long)lo, (long long)hi);
    *out = v;
    return KVR_OK;
}

static kvr_status gguf_get_float(gguf_ctx *c, const char *key, double def, double *out) {
    const gguf_kv *kv = gguf_find(c, key);
    if (!kv) {
        *out = def;
        return KVR_OK;
    }
    const uint8_t *b = c->p + kv->at;
    if (kv->type == GGUF_T_F32) {
        *out = gguf_f32_from_bits(gguf_le32(b));
    } else if (kv->type == GGUF_T_F64) {
        uint64_t u = gguf_le64(b);
        double d;
        memcpy(&d, &u, sizeof d);
        *out = d;
    } else {
        int64_t v;
        if (gguf_get_int(c, key, true, 0, INT64_MIN, INT64_MAX, &v, NULL) != KVR_OK)
            return gguf_wrong_type(c, key, kv, "a number");
        *out = (double)v;
    }
    return KVR_OK;
}

/* String metadata as a view into the file; absent -> s->s == NULL. */
static kvr_status gguf_get_str(gguf_ctx *c, const char *key, gguf_sv *s) {
    const gguf_kv *kv = gguf_find(c, key);
    s->s = NULL;
    s->n = 0;
    if (!kv) return KVR_OK;
    if (kv->type != GGUF_T_STRING) return gguf_wrong_type(c, key, kv, "string");
    s->n = (size_t)gguf_le64(c->p + kv->at);
    s->s = (const char *)c->p + kv->at + 8;
    return KVR_OK;
}

static bool gguf_sv_eq(gguf_sv s, const char *lit) {
    size_t n = strlen(lit);
    return s.s && s.n == n && memcmp(s.s, lit, n) == 0;
}

static void gguf_sv_copy(char *dst, size_t cap, gguf_sv s) {
    size_t n = s.n < cap - 1 ? s.n : cap - 1;
    memcpy(dst, s.s, n);
    dst[n] = '\0';
}

// ----------------------------------------------------------------------------
// tensor slots: the tensors a Llama model needs

static const char *const gguf_global_names[MODEL_N_GLOBAL] = {"token_embd", "output_norm", "output"};
static const char *const gguf_layer_names[MODEL_N_PER_LAYER] = {
    "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
    "ffn_norm",  "ffn_gate", "ffn_up", "ffn_down"};

static void gguf_slot_name(int slot, char *buf, size_t len) {
    if (slot < MODEL_N_GLOBAL)
        snprintf(buf, len, "%s.weight", gguf_global_names[slot]);
    else
        snprintf(buf, len, "blk.%d.%s.weight", (slot - MODEL_N_GLOBAL) / MODEL_N_PER_LAYER,
                 gguf_layer_names[(slot - MODEL_N_GLOBAL) % MODEL_N_PER_LAYER]);
}

/* Slot of a tensor name, or -1 for a tensor the model does not use. */
static int gguf_slot_of(gguf_sv s, int32_t n_layers) {
    static const char suf[] = ".weight";
    const size_t ns = sizeof suf - 1;
    if (s.n <= ns || memcmp(s.s + s.n - ns, suf, ns) != 0) return -1;
    const size_t n = s.n - ns;
    for (int i = 0; i < MODEL_N_GLOBAL; i++)
        if (strlen(gguf_global_names[i]) == n && memcmp(s.s, gguf_global_names[i], n) == 0) return i;
    if (n < 6 || memcmp(s.s, "blk.", 4) != 0) return -1;
    size_t i = 4;
    int64_t layer = 0;
    while (i < n && s.s[i] >= '0' && s.s[i] <= '9' && layer < n_layers) {
        layer = layer * 10 + (s.s[i] - '0');
        i++;
    }
    if (i == 4 || i >= n || s.s[i] != '.' || layer >= n_layers) return -1;
    if (s.s[4] == '0' && i > 5) return -1; /* no leading zeros: one name per slot */
    const char *rest = s.s + i + 1;
    const size_t nr = n - i - 1;
    for (int k = 0; k < MODEL_N_PER_LAYER; k++)
        if (strlen(gguf_layer_names[k]) == nr && memcmp(rest, gguf_layer_names[k], nr) == 0)
            return MODEL_N_GLOBAL + (int)layer * MODEL_N_PER_LAYER + k;
    return -1;
}

/* The optional tensors beyond the slots, numbered from 0: blk.N.attn_{q,k,v}.bias (3 N + j),
 * then rope_freqs.weight (3 L). */
static const char *const gguf_bias_names[3] = {"attn_q", "attn_k", "attn_v"};

static void gguf_extra_name(int x, int32_t n_layers, char *buf, size_t len) {
    if (x == 3 * n_layers)
        snprintf(buf, len, "rope_freqs.weight");
    else
        snprintf(buf, len, "blk.%d.%s.bias", x / 3, gguf_bias_names[x % 3]);
}

/* Extra index of a tensor name, or -1. */
static int gguf_extra_of(gguf_sv s, int32_t n_layers) {
    if (gguf_sv_eq(s, "rope_freqs.weight")) return 3 * n_layers;
    static const char suf[] = ".bias";
    const size_t ns = sizeof suf - 1;
    if (s.n <= ns + 4 || memcmp(s.s + s.n - ns, suf, ns) != 0 || memcmp(s.s, "blk.", 4) != 0)
        return -1;
    size_t i = 4;
    int64_t layer = 0;
    while (i < s.n && s.s[i] >= '0' && s.s[i] <= '9' && layer < n_layers) {
        layer = layer * 10 + (s.s[i] - '0');
        i++;
    }
    if (i == 4 || i >= s.n || s.s[i] != '.' || layer >= n_layers) return -1;
    if (s.s[4] == '0' && i > 5) return -1;
    const char *rest = s.s + i + 1;
    const size_t nr = s.n - ns - i - 1;
    for (int k = 0; k < 3; k++)
        if (strlen(gguf_bias_names[k]) == nr && memcmp(rest, gguf_bias_names[k], nr) == 0)
            return (int)layer * 3 + k;
    return -1;
}

/* Expected GGUF shape [ne0 = inputs, ne1 = outputs]: model_slot_shape reversed; the dims. */
static int gguf_slot_shape(const kvr_model_config *c, int slot, int64_t ne[2]) {
    int64_t sh[2];
    const int nd = model_slot_shape(c, slot, sh);
    ne[0] = sh[nd - 1];
    if (nd == 2) ne[1] = sh[0];
    return nd;
}

static void gguf_fmt_shape(char *buf, size_t len, const int64_t *ne, int n) {
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? ", " : "", (long long)ne[i]);
}

// ----------------------------------------------------------------------------
// tokenizer metadata

/* Copy a string array into NUL-terminated strings: *ptrs (n entries) point into *blob. */
static kvr_status gguf_str_array(gguf_ctx *c, const gguf_kv *kv, char ***ptrs, char **blob) {
    *ptrs = NULL;
    *blob = NULL;
    const size_t n = (size_t)kv->arr_n; /* each string took >= 8 bytes of the file */
    size_t total = 0, at = kv->at;
    for (size_t i = 0; i < n; i++) {
        size_t sn = (size_t)gguf_le64(c->p + at);
        total += sn + 1;
        at += 8 + sn;
    }
    char **pp = malloc((n ? n : 1) * sizeof *pp);
    char *bb = malloc(total ? total : 1);
    if (!pp || !bb) {
        free(pp);
        free(bb);
        return kvr_error_set(c->err, KVR_ERR_NOMEM, "%s: out of memory for tokenizer strings",
                             c->fname);
    }
    char *w = bb;
    at = kv->at;
    for (size_t i = 0; i < n; i++) {
        size_t sn = (size_t)gguf_le64(c->p + at);
        memcpy(w, c->p + at + 8, sn);
        w[sn] = '\0';
        pp[i] = w;
        w += sn + 1;
        at += 8 + sn;
    }
    *ptrs = pp;
    *blob = bb;
    return KVR_OK;
}

static kvr_status gguf_get_array(gguf_ctx *c, const char *key, uint32_t et, bool required,
                                 const gguf_kv **out) {
    const gguf_kv *kv = gguf_find(c, key);
    *out = NULL;
    if (!kv) {
        if (required)
            return kvr_error_set(c->err, KVR_ERR_FORMAT, "%s: missing metadata %s", c->fname, key);
        return KVR_OK;
    }
    if (kv->type != GGUF_T_ARRAY || kv->arr_type != et) {
        char want[48];
        snprintf(want, sizeof want, "array of %s", gguf_value_names[et]);
        return kvr_error_set(c->err, KVR_ERR_FORMAT, "%s: metadata %s has type %s%s%s, expected %s",
                             c->fname, key, gguf_value_names[kv->type],
                             kv->type == GGUF_T_ARRAY ? " of " : "",
                             kv->type == GGUF_T_ARRAY && kv->arr_type < GGUF_T_COUNT
                                 ? gguf_value_names[kv->arr_type]
                                 : "",
                             want);
    }
    if (kv->arr_n > INT32_MAX)
        return kvr_error_set(c->err, KVR_ERR_FORMAT, "%s: metadata %s has %llu entries", c->fname,
                             key, (unsigned long long)kv->arr_n);
    *out = kv;
    return KVR_OK;
}

static kvr_status gguf_get_bool(gguf_ctx *c, const char *key, bool def, bool *out) {
    const gguf_kv *kv = gguf_find(c, key);
    *out = def;
    if (!kv) return KVR_OK;
    if (kv->type != GGUF_T_BOOL) return gguf_wrong_type(c, key, kv, "bool");
    *out = c->p[kv->at] != 0;
    return KVR_OK;
}

static kvr_status gguf_load_tokenizer(gguf_ctx *c, kvr_model *m) {
    gguf_sv model;
    KVR_TRY(gguf_get_str(c, "tokenizer.ggml.model", &model));
    if (!model.s) {
        kvr_log(KVR_LOG_INFO, "%s: no tokenizer metadata; loading without a tokenizer", c->fname);
        return KVR_OK;
    }
    const bool spm = gguf_sv_eq(model, "llama");
    if (!spm && !gguf_sv_eq(model, "gpt2")) {
        kvr_log(KVR_LOG_WARN,
                "%s: tokenizer.ggml.model = '%.*s' is not supported (supported: gpt2 byte-level "
                "BPE, llama SentencePiece BPE); loading without a tokenizer (token ids still run: "
                "kvr-run --context)",
                c->fname, GGUF_SV_ARGS(model));
        return KVR_OK;
    }
    const gguf_kv *ktok, *ktype, *kmerge = NULL, *kscore = NULL;
    KVR_TRY(gguf_get_array(c, "tokenizer.ggml.tokens", GGUF_T_STRING, true, &ktok));
    KVR_TRY(gguf_get_array(c, "tokenizer.ggml.token_type", GGUF_T_I32, false, &ktype));
    if (spm) KVR_TRY(gguf_get_array(c, "tokenizer.ggml.scores", GGUF_T_F32, false, &kscore));
    else KVR_TRY(gguf_get_array(c, "tokenizer.ggml.merges", GGUF_T_STRING, true, &kmerge));
    const int32_t n = (int32_t)ktok->arr_n;
    if (n < 1 || n > m->cfg.vocab_size)
        return kvr_error_set(c->err, KVR_ERR_FORMAT,
                             "%s: tokenizer.ggml.tokens has %d entries; expected 1 to vocab size %d",
                             c->fname, n, m->cfg.vocab_size);
    if (ktype && ktype->arr_n != ktok->arr_n)
        return kvr_error_set(c->err, KVR_ERR_FORMAT,
                             "%s: tokenizer.ggml.token_type has %llu entries, tokens has %d",
                             c->fname, (unsigned long long)ktype->arr_n, n);
    if (kscore && kscore->arr_n != ktok->arr_n)
        return kvr_error_set(c->err, KVR_ERR_FORMAT,
                             "%s: tokenizer.ggml.scores has %llu entries, tokens has %d",
                             c->fname, (unsigned long long)kscore->arr_n, n);
    /* bos, eos, unk; llama.cpp's defaults for SPM are 1, 2, 0 */
    int64_t ids[3];
    static const char *const id_keys[3] = {"tokenizer.ggml.bos_token_id",
                                           "tokenizer.ggml.eos_token_id",
                                           "tokenizer.ggml.unknown_token_id"};
    for (int i = 0; i < 3; i++) {
        int64_t def = spm ? (i == 2 ? 0 : i + 1) : -1;
        if (def >= n) def = -1;
        KVR_TRY(gguf_get_int(c, id_keys[i], false, def, INT64_MIN, INT64_MAX, &ids[i], NULL));
        if (ids[i] < -1 || ids[i] >= n) {
            kvr_log(KVR_LOG_WARN, "%s: %s = %lld is not a token id; ignored", c->fname, id_keys[i],
                    (long long)ids[i]);
            ids[i] = def;
        }
    }
    bool add_prefix = true, add_bos = false;
    const bool has_add_bos = gguf_find(c, "tokenizer.ggml.add_bos_token") != NULL;
    KVR_TRY(gguf_get_bool(c, "tokenizer.ggml.add_space_prefix", true, &add_prefix));
    KVR_TRY(gguf_get_bool(c, "tokenizer.ggml.add_bos_token", false, &add_bos));
    gguf_sv pre_sv;
    KVR_TRY(gguf_get_str(c, "tokenizer.ggml.pre", &pre_sv));
    char pre[64] = "default";
    if (pre_sv.s) gguf_sv_copy(pre, sizeof pre, pre_sv);

    kvr_status st;
    char **toks = NULL, *tok_blob = NULL, **merges = NULL, *merge_blob = NULL;
    int32_t *types = NULL;
    float *scores = NULL;
    st = gguf_str_array(c, ktok, &toks, &tok_blob);
    if (st == KVR_OK && kmerge) st = gguf_str_array(c, kmerge, &merges, &merge_blob);
    if (st == KVR_OK && ktype) {
        types = malloc((size_t)n * sizeof *types);
        if (!types)
            st = kvr_error_set(c->err, KVR_ERR_NOMEM, "%s: out of memory for token types", c->fname);
        for (int32_t i = 0; types && i < n; i++)
            types[i] = (int32_t)gguf_le32(c->p + ktype->at + 4 * (size_t)i);
    }
    if (st == KVR_OK && kscore) {
        scores = malloc((size_t)n * sizeof *scores);
        if (!scores)
            st = kvr_error_set(c->err, KVR_ERR_NOMEM, "%s: out of memory for token scores", c->fname);
        for (int32_t i = 0; scores && i < n; i++)
            scores[i] = gguf_f32_from_bits(gguf_le32(c->p + kscore->at + 4 * (size_t)i));
    }
    if (st == KVR_OK) {
        kvr_error terr = {0};
        kvr_tokenizer *tok = NULL;
        kvr_status ts =
            spm ? tokenizer_create_spm((const char *const *)toks, types, scores, n, (int32_t)ids[0],
                                       (int32_t)ids[1], (int32_t)ids[2], add_prefix, &tok, &terr)
                : tokenizer_create_bpe((const char *const *)toks, types, n,
                                       (const char *const *)merges, (int32_t)kmerge->arr_n, pre,
                                       (int32_t)ids[0], (int32_t)ids[1], &tok, &terr);
        if (ts == KVR_OK) {
            if (has_add_bos) tokenizer_set_add_bos(tok, add_bos);
            gguf_sv tmpl = {NULL, 0}; /* kept for serve/'s chat formats */
            st = gguf_get_str(c, "tokenizer.chat_template", &tmpl);
            if (st == KVR_OK && tmpl.s) st = tokenizer_set_chat_template(tok, tmpl.s, tmpl.n, c->err);
            if (st == KVR_OK) m->tok = tok;
            else tokenizer_destroy(tok);
        } else if (ts == KVR_ERR_UNSUPPORTED) {
            kvr_log(KVR_LOG_WARN, "%s: tokenizer not available (%s); loading without a tokenizer",
                    c->fname, terr.msg);
        } else {
            st = kvr_error_set(c->err, ts, "%s: tokenizer: %s", c->fname, terr.msg);
        }
    }
    free(toks);
    free(tok_blob);
    free(merges);
    free(merge_blob);
    free(types);
    free(scores);
    return st;
}

// ----------------------------------------------------------------------------
// the loader

static int gguf_cmp_tinfo(const void *a, const void *b) {
    const gguf_tinfo *x = *(const gguf_tinfo *const *)a, *y = *(const gguf_tinfo *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Parse the tensor-info table into slots[] (3 + 9 L slots, then 3 L + 1 extras). */
static kvr_status gguf_parse_tensor_infos(gguf_ctx *c, uint64_t n_tensors, gguf_tinfo *slots,
                                          int32_t n_layers) {
    for (uint64_t t = 0; t < n_tensors; t++) {
        gguf_sv name;
        uint32_t n_dims, type;
        uint64_t offset;
        int64_t ne[GGUF_MAX_DIMS] = {1, 1, 1, 1};
        KVR_TRY(gguf_str(c, &name, "tensor name"));
        KVR_TRY(gguf_u32(c, &n_dims, "tensor dimension count"));
        if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
            return kvr_error_set(c->err, KVR_ERR_FORMAT, "%s: tensor %.*s has %u dimensions (1 to %d)",
                                 c->fname, GGUF_SV_ARGS(name), n_dims, GGUF_MAX_DIMS);
        int64_t numel = 1;
        for (uint32_t d = 0; d < n_dims; d++) {
            uint64_t v;
            KVR_TRY(gguf_u64(c, &v, "tensor dimension"));
            if (v > (uint64_t)INT64_MAX || __builtin_mul_overflow(numel, (int64_t)v, &numel))
                return kvr_error_set(c->err, KVR_ERR_FORMAT,
                                     "%s: tensor %.*s has absurd dimensions (dimension %u is %llu)",
                                     c->fname, GGUF_SV_ARGS(name), d, (unsigned long long)v);
            ne[d] = (int64_t)v;
        }
        KVR_TRY(gguf_u32(c, &type, "tensor type"));
        KVR_TRY(gguf_u64(c, &offset, "tensor offset"));
        int slot = gguf_slot_of(name, n_layers);
        if (slot < 0) {
            const int x = gguf_extra_of(name, n_layers);
            if (x < 0) continue;
            slot = MODEL_N_GLOBAL + MODEL_N_PER_LAYER * n_layers + x;
        }
        gguf_tinfo *ti = &slots[slot];
        if (ti->present)
            return kvr_error_set(c->err, KVR_ERR_FORMAT, "%s: tensor %.*s appears twice", c->fname,
                                 GGUF_SV_ARGS(name));
        ti->present = true;
        ti->n_dims = n_dims;
        memcpy(ti->ne, ne, sizeof ne);
        ti->type = type;
        ti->offset = offset;
    }
    return KVR_OK;
}

/* Check one needed tensor: shape, type, alignment, bounds; sets nbytes and data. */
static kvr_status gguf_check_tensor(gguf_ctx *c, const kvr_model_config *cfg, int slot,
                                    gguf_tinfo *ti, size_t data_start, uint32_t alignment) {
    char name[64];
    int64_t ne[2] = {0, 0};
    const int n_slots = MODEL_N_GLOBAL + MODEL_N_PER_LAYER * cfg->n_layers;
    int nd = 1;
    if (slot < n_slots) {
        gguf_slot_name(slot, name, sizeof name);
        nd = gguf_slot_shape(cfg, slot, ne);
    } else { /* the extras: QKV biases, then rope_freqs */
        gguf_extra_name(slot - n_slots, cfg->n_layers, name, sizeof name);
        const int x = slot - n_slots, HS = cfg->head_dim;
        ne[0] = x == 3 * cfg->n_layers ? HS / 2
                                       : (x % 3 == 0 ? cfg->n_heads : cfg->n_kv_heads) * (int64_t)HS;
    }
    char got[96], want[96];
    int tn = (int)ti->n_dims;
    while (tn > nd && ti->ne[tn - 1] == 1) tn--; /* trailing 1s are not significant */
    if (tn != nd || ti->ne[0] != ne[0] || (nd == 2 && ti->ne[1] != ne[1])) {
        gguf_fmt_shape(got, sizeof got, ti->ne, (int)ti->n_dims);
        gguf_fmt_shape(want, sizeof want, ne, nd);
        return kvr_error_set(c->err, KVR_ERR_FORMAT, "%s: tensor %s has shape [%s], expected [%s]",
                             c->fname, name, got, want);
    }
    const quant_type_traits *td = quant_type_get(ti->type);
    if (!td->dequant)
        return kvr_error_set(c->err, KVR_ERR_UNSUPPORTED,
                             "%s: tensor %s: type %s (%u) is not supported; supported: "
                             QUANT_SUPPORTED_TYPES,
                             c->fname, name, td->name, ti->type);
    if (ne[0] % td->blck != 0)
        return kvr_error_set(c->err, KVR_ERR_FORMAT,
                             "%s: tensor %s: row length %lld is not a multiple of the %s block "
                             "size %d",
                             c->fname, name, (long long)ne[0], td->name, td->blck);
    const int64_t numel = ne[0] * (nd == 2 ? ne[1] : 1); /* both bounded by config validation */
    const uint64_t nbytes = (uint64_t)(numel / td->blck) * (uint64_t)td->bytes;
    if (ti->offset % alignment != 0)
        return kvr_error_set(c->err, KVR_ERR_FORMAT,
                             "%s: tensor %s: offset %llu is not a multiple of the alignment %u",
                             c->fname, name, (unsigned long long)ti->offset, alignment);
    const size_t avail = data_start <= c->len ? c->len - data_start : 0;
    if (ti->offset > avail || nbytes > avail - ti->offset)
        return kvr_error_set(c->err, KVR_ERR_FORMAT,
                             "%s: tensor %s: data at offset %llu + %llu bytes runs past the end "
                             "of the file (%zu bytes of tensor data)",
                             c->fname, name, (unsigned long long)ti->offset,
                             (unsigned long long)nbytes, avail);
    ti->nbytes = (size_t)nbytes;
    ti->data = c->p + data_start + ti->offset;
    return KVR_OK;
}

static void gguf_basename_noext(const char *path, char *buf, size_t len) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(buf, len, "%s", b);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf) *dot = '\0';
}

static kvr_status gguf_load(const uint8_t *buf, size_t len, const char *fname,
                            const kvr_model_load_params *params, bool release, kvr_model **out,
                            kvr_error *err) {
    *out = NULL;
    kvr_model_load_params dp = kvr_model_load_params_default();
    if (!params) params = &dp;
    gguf_ctx ctx = {.p = buf, .len = buf ? len : 0, .fname = fname, .err = err, .release = release};
    gguf_ctx *c = &ctx;
    gguf_tinfo *slots = NULL;
    kvr_model *m = NULL;
    kvr_status st = KVR_OK;

    // header
    const uint8_t *b = NULL;
    if (c->len < 4) return gguf_truncated(c, "magic");
    KVR_TRY(gguf_take(c, 4, &b, "magic"));
    if (memcmp(b, "GGUF", 4) != 0)
        return kvr_error_set(err, KVR_ERR_FORMAT,
                             "%s: not a GGUF file (magic bytes %02x %02x %02x %02x, expected "
                             "\"GGUF\")",
                             fname, b[0], b[1], b[2], b[3]);
    uint32_t version;
    KVR_TRY(gguf_u32(c, &version, "version"));
    if (version == 1)
        return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                             "%s: GGUF version 1 is not supported (versions 2 and 3 are)", fname);
    if (version == 0x02000000u || version == 0x03000000u)
        return kvr_error_set(err, KVR_ERR_UNSUPPORTED, "%s: big-endian GGUF is not supported",
                             fname);
    if (version != 2 && version != 3)
        return kvr_error_set(err, KVR_ERR_FORMAT, "%s: unknown GGUF version %u (2 and 3 are read)",
                             fname, version);
    uint64_t n_tensors, n_kv;
    KVR_TRY(gguf_u64(c, &n_tensors, "tensor count"));
    KVR_TRY(gguf_u64(c, &n_kv, "metadata count"));
    if (n_tensors > GGUF_MAX_TENSORS || n_tensors > (c->len - c->pos) / 24)
        return kvr_error_set(err, KVR_ERR_FORMAT,
                             "%s: tensor count %llu is absurd (limit %d, or the file is too short)",
                             fname, (unsigned long long)n_tensors, GGUF_MAX_TENSORS);
    if (n_kv > GGUF_MAX_KV || n_kv > (c->len - c->pos) / 13)
        return kvr_error_set(err, KVR_ERR_FORMAT,
                             "%s: metadata count %llu is absurd (limit %d, or the file is too short)",
                             fname, (unsigned long long)n_kv, GGUF_MAX_KV);

    // metadata
    c->kv = calloc(n_kv ? n_kv : 1, sizeof *c->kv);
    if (!c->kv) return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", fname);
    for (uint64_t i = 0; i < n_kv && st == KVR_OK; i++) {
        gguf_kv *kv = &c->kv[i];
        st = gguf_str(c, &kv->key, "metadata key");
        if (st == KVR_OK) st = gguf_u32(c, &kv->type, "metadata value type");
        if (st == KVR_OK && kv->type == GGUF_T_ARRAY) {
            st = gguf_u32(c, &kv->arr_type, "metadata array type");
            if (st == KVR_OK) st = gguf_u64(c, &kv->arr_n, "metadata array length");
            kv->at = c->pos;
            if (st == KVR_OK) st = gguf_skip_elems(c, kv->arr_type, kv->arr_n, 1, &kv->key);
        } else if (st == KVR_OK) {
            kv->at = c->pos;
            st = gguf_skip_value(c, kv->type, 0, &kv->key);
        }
        c->n_kv = i + 1;
    }
    if (st != KVR_OK) goto fail;

    // architecture and configuration
    gguf_sv arch;
    if ((st = gguf_get_str(c, "general.architecture", &arch)) != KVR_OK) goto fail;
    if (!arch.s) {
        st = kvr_error_set(err, KVR_ERR_FORMAT, "%s: missing metadata general.architecture", fname);
        goto fail;
    }
    if (!gguf_sv_eq(arch, "llama") && !gguf_sv_eq(arch, "qwen2")) {
        st = kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                           "%s: general.architecture = '%.*s' is not supported (supported: llama "
                           "-- Llama 1/2/3, Mistral, SmolLM -- and qwen2)",
                           fname, GGUF_SV_ARGS(arch));
        goto fail;
    }
    const bool qwen2 = gguf_sv_eq(arch, "qwen2");
    kvr_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.arch, sizeof cfg.arch, "%s", qwen2 ? "qwen2" : "llama");
    bool qkv_bias = qwen2; /* llama: when the file has attn_q.bias (below) */
    gguf_sv gname;
    if ((st = gguf_get_str(c, "general.name", &gname)) != KVR_OK) goto fail;
    if (gname.s && gname.n > 0)
        gguf_sv_copy(cfg.name, sizeof cfg.name, gname);
    else
        gguf_basename_noext(fname, cfg.name, sizeof cfg.name);
    kvr_utf8_sanitize(cfg.name); /* it reaches JSON and the store: no stray bytes */

    int64_t L, D, NH, NKV, FF, V, ctx_len, key_len, val_len, rope_dim;
    bool has_v, has_key_len, has_val_len, has_rope_dim;
    double theta, eps;
    char key[96];
#define GGUF_KEY(suffix) (snprintf(key, sizeof key, "%s.%s", cfg.arch, suffix), key)
#define GGUF_INT(suffix, req, def, out, found)                                                     \
    if ((st = gguf_get_int(c, GGUF_KEY(suffix), req, def, 0, INT32_MAX, out, found)) != KVR_OK)   \
    goto fail
    GGUF_INT("block_count", true, 0, &L, NULL);
    GGUF_INT("embedding_length", true, 0, &D, NULL);
    GGUF_INT("attention.head_count", true, 0, &NH, NULL);
    GGUF_INT("attention.head_count_kv", false, NH, &NKV, NULL);
    GGUF_INT("feed_forward_length", true, 0, &FF, NULL);
    GGUF_INT("vocab_size", false, 0, &V, &has_v);
    GGUF_INT("context_length", false, 2048, &ctx_len, NULL);
    GGUF_INT("attention.key_length", false, 0, &key_len, &has_key_len);
    GGUF_INT("attention.value_length", false, 0, &val_len, &has_val_len);
    GGUF_INT("rope.dimension_count", false, 0, &rope_dim, &has_rope_dim);
#undef GGUF_INT
    if ((st = gguf_get_float(c, GGUF_KEY("rope.freq_base"), 10000.0, &theta)) != KVR_OK) goto fail;
    if ((st = gguf_get_float(c, GGUF_KEY("attention.layer_norm_rms_epsilon"), 1e-5, &eps)) !=
        KVR_OK)
        goto fail;
    {
        /* RoPE scaling: none, or llama3 (its factors come as the rope_freqs tensor) */
        gguf_sv rs;
        if ((st = gguf_get_str(c, GGUF_KEY("rope.scaling.type"), &rs)) != KVR_OK) goto fail;
        if (rs.s && !gguf_sv_eq(rs, "none") && !gguf_sv_eq(rs, "llama3")) {
            st = kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                               "%s: metadata %s = '%.*s' is not supported (none and llama3 -- "
                               "the rope_freqs tensor -- are)",
                               fname, key, GGUF_SV_ARGS(rs));
            goto fail;
        }
    }
#undef GGUF_KEY
    int64_t HS;
    if (has_key_len) {
        HS = key_len;
    } else {
        if (NH <= 0 || D % NH != 0) {
            st = kvr_error_set(err, KVR_ERR_FORMAT,
                               "%s: embedding_length %lld is not a multiple of head_count %lld "
                               "and attention.key_length is absent",
                               fname, (long long)D, (long long)NH);
            goto fail;
        }
        HS = D / NH;
    }
    if (has_val_len && val_len != HS) {
        st = kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                           "%s: attention.value_length %lld differs from the head size %lld",
                           fname, (long long)val_len, (long long)HS);
        goto fail;
    }
    if (has_rope_dim && rope_dim != HS) {
        st = kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                           "%s: rope.dimension_count %lld differs from the head size %lld "
                           "(partial RoPE is not supported)",
                           fname, (long long)rope_dim, (long long)HS);
        goto fail;
    }
    cfg.n_layers = (int32_t)L;
    cfg.d_model = (int32_t)D;
    cfg.n_heads = (int32_t)NH;
    cfg.n_kv_heads = (int32_t)NKV;
    cfg.head_dim = (int32_t)HS;
    cfg.d_ff = (int32_t)FF;
    cfg.vocab_size = 1; /* known after the tensor infos when llama.vocab_size is absent */
    cfg.max_context = (int32_t)ctx_len;
    cfg.rope_theta = (float)theta;
    cfg.norm_eps = (float)eps;
    if ((st = kvr_model_config_validate(&cfg, err)) != KVR_OK) {
        kvr_error_prefix(err, "%s", fname);
        goto fail;
    }
    uint32_t alignment = 32;
    {
        int64_t a;
        if ((st = gguf_get_int(c, "general.alignment", false, 32, 1, GGUF_MAX_ALIGNMENT, &a,
                               NULL)) != KVR_OK)
            goto fail;
        if ((a & (a - 1)) != 0) {
            st = kvr_error_set(err, KVR_ERR_FORMAT,
                               "%s: general.alignment %lld is not a power of two", fname,
                               (long long)a);
            goto fail;
        }
        alignment = (uint32_t)a;
    }

    // tensor infos
    const int n_slots = MODEL_N_GLOBAL + MODEL_N_PER_LAYER * cfg.n_layers;
    const int n_extra = 3 * cfg.n_layers + 1; /* QKV biases, rope_freqs */
    slots = calloc((size_t)(n_slots + n_extra), sizeof *slots);
    if (!slots) {
        st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", fname);
        goto fail;
    }
    if ((st = gguf_parse_tensor_infos(c, n_tensors, slots, cfg.n_layers)) != KVR_OK) goto fail;
    size_t data_start = c->pos;
    if (data_start % alignment) data_start += alignment - data_start % alignment;

    if (has_v) {
        cfg.vocab_size = (int32_t)V;
    } else if (slots[MODEL_SLOT_TOK_EMBD].present && slots[MODEL_SLOT_TOK_EMBD].n_dims >= 2 &&
               slots[MODEL_SLOT_TOK_EMBD].ne[1] <= INT32_MAX) {
        cfg.vocab_size = (int32_t)slots[MODEL_SLOT_TOK_EMBD].ne[1];
    } else if (!slots[MODEL_SLOT_TOK_EMBD].present) {
        st = kvr_error_set(err, KVR_ERR_FORMAT, "%s: missing tensor token_embd.weight", fname);
        goto fail;
    } else {
        st = kvr_error_set(err, KVR_ERR_FORMAT,
                           "%s: tensor token_embd.weight does not give a vocabulary size", fname);
        goto fail;
    }
    cfg.tied_embeddings = !slots[MODEL_SLOT_OUTPUT].present;
    if ((st = kvr_model_config_validate(&cfg, err)) != KVR_OK) {
        kvr_error_prefix(err, "%s", fname);
        goto fail;
    }

    // the tensors the model needs: present, right shape and type, inside the file, disjoint
    /* biases: qwen2 needs them; a llama file may have them (all or none) */
    for (int l = 0; l < cfg.n_layers; l++)
        if (slots[n_slots + 3 * l].present || slots[n_slots + 3 * l + 1].present ||
            slots[n_slots + 3 * l + 2].present)
            qkv_bias = true;
    const bool rope_factors = slots[n_slots + 3 * cfg.n_layers].present;
    gguf_tinfo **order = malloc((size_t)(n_slots + n_extra) * sizeof *order);
    if (!order) {
        st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", fname);
        goto fail;
    }
    int n_present = 0;
    for (int s = 0; s < n_slots && st == KVR_OK; s++) {
        if (!slots[s].present) {
            if (s == MODEL_SLOT_OUTPUT) continue;
            char name[64];
            gguf_slot_name(s, name, sizeof name);
            st = kvr_error_set(err, KVR_ERR_FORMAT, "%s: missing tensor %s", fname, name);
            break;
        }
        st = gguf_check_tensor(c, &cfg, s, &slots[s], data_start, alignment);
        order[n_present++] = &slots[s];
    }
    for (int x = 0; x < n_extra && st == KVR_OK; x++) {
        gguf_tinfo *ti = &slots[n_slots + x];
        if (!ti->present && x < 3 * cfg.n_layers && qkv_bias) {
            char name[64];
            gguf_extra_name(x, cfg.n_layers, name, sizeof name);
            st = kvr_error_set(err, KVR_ERR_FORMAT, "%s: missing tensor %s (%s has Q/K/V biases)",
                               fname, name, qwen2 ? "architecture qwen2" : "another layer");
            break;
        }
        if (!ti->present) continue;
        st = gguf_check_tensor(c, &cfg, n_slots + x, ti, data_start, alignment);
        order[n_present++] = ti;
    }
    if (st == KVR_OK) {
        qsort(order, (size_t)n_present, sizeof *order, gguf_cmp_tinfo);
        for (int i = 0; i + 1 < n_present && st == KVR_OK; i++) {
            if (order[i]->offset + order[i]->nbytes > order[i + 1]->offset) {
                char a[64], bname[64];
                const int ia = (int)(order[i] - slots), ib = (int)(order[i + 1] - slots);
                if (ia < n_slots) gguf_slot_name(ia, a, sizeof a);
                else gguf_extra_name(ia - n_slots, cfg.n_layers, a, sizeof a);
                if (ib < n_slots) gguf_slot_name(ib, bname, sizeof bname);
                else gguf_extra_name(ib - n_slots, cfg.n_layers, bname, sizeof bname);
                st = kvr_error_set(err, KVR_ERR_FORMAT, "%s: tensors %s and %s overlap", fname, a,
                                   bname);
            }
        }
    }
    free(order);
    if (st != KVR_OK) goto fail;

    // allocate and copy: every matrix stays in its stored type; norms become fp32
    {
        int32_t *types = malloc((size_t)n_slots * sizeof *types);
        if (!types) {
            st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", fname);
            goto fail;
        }
        for (int s = 0; s < n_slots; s++) types[s] = slots[s].present ? (int32_t)slots[s].type : 0;
        st = model_alloc(&cfg, types, &m, err);
        free(types);
    }
    if (st != KVR_OK) {
        kvr_error_prefix(err, "%s", fname);
        goto fail;
    }
    if ((st = model_alloc_extras(m, qkv_bias, rope_factors, err)) != KVR_OK) goto fail;
    for (int s = 0; s < n_slots; s++) {
        const gguf_tinfo *ti = &slots[s];
        if (!ti->present) continue;
        const model_tensor *t = model_slot_tensor(m, s);
        const int kind = s < MODEL_N_GLOBAL ? -1 : (s - MODEL_N_GLOBAL) % MODEL_N_PER_LAYER;
        if (qwen2 && (kind == MODEL_L_Q || kind == MODEL_L_K)) { /* NEOX RoPE rows -> pairs */
            model_rope_rows_to_pairs(model_slot_dst(m, s), ti->data,
                                     kind == MODEL_L_Q ? cfg.n_heads : cfg.n_kv_heads,
                                     cfg.head_dim, t->row_bytes);
            gguf_release(c, ti->data, ti->nbytes);
            continue;
        }
        if (t->type == (int32_t)ti->type) {
            memcpy(model_slot_dst(m, s), ti->data, ti->nbytes);
            gguf_release(c, ti->data, ti->nbytes);
            continue;
        }
        const int64_t numel = ti->ne[0] * (ti->n_dims >= 2 ? ti->ne[1] : 1); /* a norm */
        if ((st = quant_dequantize((int32_t)ti->type, ti->data, model_slot_dst(m, s), numel,
                                   err)) != KVR_OK) {
            kvr_error_prefix(err, "%s", fname);
            goto fail;
        }
    }
    for (int x = 0; x < n_extra; x++) { /* biases (Q/K permuted as their rows), RoPE factors */
        const gguf_tinfo *ti = &slots[n_slots + x];
        if (!ti->present) continue;
        const int64_t n = ti->ne[0];
        float *dst = x == 3 * cfg.n_layers ? m->rope_factors : m->layers[x / 3].bqkv;
        if (x < 3 * cfg.n_layers)
            dst += x % 3 == 0 ? 0
                              : (int64_t)(x % 3 == 1 ? cfg.n_heads : cfg.n_heads + cfg.n_kv_heads) *
                                    cfg.head_dim;
        float *tmp = malloc((size_t)n * sizeof(float));
        if (!tmp) {
            st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", fname);
            goto fail;
        }
        st = quant_dequantize((int32_t)ti->type, ti->data, tmp, n, err);
        if (st == KVR_OK && qwen2 && x < 3 * cfg.n_layers && x % 3 < 2)
            model_rope_rows_to_pairs((uint8_t *)dst, (const uint8_t *)tmp,
                                     x % 3 == 0 ? cfg.n_heads : cfg.n_kv_heads, cfg.head_dim,
                                     sizeof(float));
        else if (st == KVR_OK)
            memcpy(dst, tmp, (size_t)n * sizeof(float));
        free(tmp);
        if (st != KVR_OK) {
            kvr_error_prefix(err, "%s", fname);
            goto fail;
        }
        if (x == 3 * cfg.n_layers)
            for (int64_t i = 0; i < n; i++)
                if (!(dst[i] > 0) || !isfinite(dst[i])) {
                    st = kvr_error_set(err, KVR_ERR_FORMAT,
                                       "%s: tensor rope_freqs.weight[%lld] = %g is not a positive "
                                       "factor", fname, (long long)i, (double)dst[i]);
                    goto fail;
                }
    }
    if (params->load_tokenizer && (st = gguf_load_tokenizer(c, m)) != KVR_OK) goto fail;

    free(slots);
    free(c->kv);
    *out = m;
    return KVR_OK;
fail:
    kvr_model_destroy(m);
    free(slots);
    free(c->kv);
    return st;
}

kvr_status gguf_load_from_memory(const uint8_t *buf, size_t len, const char *fname,
                                 const kvr_model_load_params *params, kvr_model **out,
                                 kvr_error *err) {
    return gguf_load(buf, len, fname, params, false, out, err);
}

kvr_status kvr_model_load_gguf(const char *path, const kvr_model_load_params *params,
                               kvr_model **out, kvr_error *err) {
    *out = NULL;
    if (!path) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "gguf: NULL path");
    kvr_file_map f; /* read-only mmap, with a read() fallback */
    KVR_TRY(kvr_file_map_open(path, false, 0, &f, err));
    kvr_status st = gguf_load(f.p, f.len, path, params, f.map != NULL, out, err);
    kvr_file_map_close(&f);
    return st;
}
