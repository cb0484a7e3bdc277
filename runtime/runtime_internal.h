/* runtime_internal.h -- declarations shared by the runtime's own .c files (and its tests):
 * the weight layout every loader fills, the arena allocator, and the tokenizer constructor.
 * Tools and other modules never include this file. */
#ifndef KVR_RUNTIME_INTERNAL_H
#define KVR_RUNTIME_INTERNAL_H
#include "kvr_model.h"
#ifdef __cplusplus
extern "C" { /* the CUDA backend (C++) calls model_tensor_rows_f32 */
#endif

/* One stored tensor: its GGML type (quant_internal.h), shape and bytes inside the model's arena.
 * A matrix has rows = outputs and cols = inputs (the GGUF/HF layout: y = W x with W (out, in));
 * a norm has rows = 1. Rows are whole blocks (cols is a multiple of the type's block size). */
typedef struct model_tensor {
    int32_t type;
    int64_t rows, cols;
    size_t row_bytes; /* bytes of one row in the stored type */
    uint8_t *data;    /* rows * row_bytes bytes */
} model_tensor;

/* Per-layer fp32 views, row-major with one row per output feature. Q and K rows are in
 * "interleaved pair" RoPE order (the order llama.cpp's GGUF converter writes; HF weights are
 * permuted into it at load), so one RoPE kernel serves every source. The norms are always fp32.
 * A matrix view is non-NULL only when the tensor is stored as F32 (wqkv: Q, K and V all F32;
 * w_gate_up: gate and up both F32 -- the arena keeps them adjacent); otherwise a backend reads
 * the stored tensors (kvr_model.tensors) and dequantizes them itself. */
typedef struct kvr_layer_weights {
    float *attn_norm; /* (D) */
    float *wqkv;      /* ((NH + 2*NKV)*HS, D): Q rows, then K rows, then V rows; or NULL */
    float *wo;        /* (D, NH*HS) or NULL */
    float *ffn_norm;  /* (D) */
    float *w_gate_up; /* (2*FF, D): gate rows, then up rows; or NULL */
    float *w_down;    /* (D, FF) or NULL */
    float *bqkv;      /* ((NH + 2*NKV)*HS) Q, K, V biases (qwen2, or a llama file with them), Q/K
                         in RoPE pair order; else NULL */
} kvr_layer_weights;

struct kvr_model {
    kvr_model_config cfg;
    uint8_t *arena;     /* one allocation holding every tensor in its stored type, slot order */
    size_t arena_bytes;
    model_tensor *tensors; /* (n_slots), indexed by slot; OUTPUT == TOK_EMBD's when tied */
    int32_t n_slots;
    float *tok_embd;    /* (V, D) fp32 view or NULL */
    float *output_norm; /* (D), fp32 */
    float *output;      /* (V, D) fp32 view or NULL; == tok_embd when cfg.tied_embeddings */
    kvr_layer_weights *layers; /* (L) */
    float *extra;        /* fp32 extras in one allocation: the QKV biases, the RoPE factors */
    size_t extra_floats;
    float *rope_factors; /* (HS/2) Llama 3.1 RoPE scaling: frequency i is divided by it; or NULL */
    kvr_tokenizer *tok; /* NULL when the source has none */
    bool view;          /* kvr_model_view_layers: arena, layers and tok are borrowed */
};

/* Validate cfg, allocate the arena and point every tensor into it (zero-filled). types: the
 * stored GGML type of each slot (MODEL_N_GLOBAL + MODEL_N_PER_LAYER * L entries), or NULL for
 * all F32; norms are always F32 (the entry is ignored); the output slot's entry is ignored when
 * cfg->tied_embeddings. Each tensor starts at a 4-byte boundary, in slot order, so runs of F32
 * tensors are contiguous (an all-F32 model's arena is exactly its fp32 weights).
 * Errors: KVR_ERR_INVALID_ARG (bad config), KVR_ERR_UNSUPPORTED (a type kvr cannot read, or a
 * row length that is not a multiple of its block), KVR_ERR_NOMEM (message gives the size). */
kvr_status model_alloc(const kvr_model_config *cfg, const int32_t *types, kvr_model **out,
                       kvr_error *err);

/* Allocate the fp32 extras, zero-filled: per-layer bqkv (qkv_bias) and rope_factors.
 * Errors: KVR_ERR_NOMEM. */
kvr_status model_alloc_extras(kvr_model *m, bool qkv_bias, bool rope_factors, kvr_error *err);
/* Llama 3.1 RoPE factors (HF rope_scaling rope_type "llama3", as llama.cpp's converter computes
 * its rope_freqs tensor) for HS/2 frequencies of base theta. */
void model_llama3_rope_factors(float *out, int32_t head_dim, double theta, double factor,
                               double low_freq_factor, double high_freq_factor,
                               double original_max_pos);
/* Permute the rows of one head-major Q or K tensor (n_heads heads of HS rows, row_bytes each)
 * from rotate-half RoPE order (HF, and GGUF of NEOX-RoPE architectures such as qwen2) into the
 * interleaved-pair order kvr's RoPE uses: dst row h*HS + r = src row h*HS + (r even ? r/2 :
 * HS/2 + r/2). */
void model_rope_rows_to_pairs(uint8_t *dst, const uint8_t *src, int32_t n_heads, int32_t HS,
                              size_t row_bytes);

/* The tensors a Llama model needs, numbered as every loader numbers them (each names them in
 * its own format): the token embedding, the output norm and the output, then per layer
 * attn_norm, q, k, v, o, ffn_norm, gate, up, down, MODEL_N_PER_LAYER slots each. */
enum { MODEL_SLOT_TOK_EMBD, MODEL_SLOT_OUTPUT_NORM, MODEL_SLOT_OUTPUT, MODEL_N_GLOBAL };
#define MODEL_N_PER_LAYER 9
enum { /* a slot's place within its layer */
    MODEL_L_ATTN_NORM, MODEL_L_Q, MODEL_L_K, MODEL_L_V, MODEL_L_O,
    MODEL_L_FFN_NORM, MODEL_L_GATE, MODEL_L_UP, MODEL_L_DOWN
};
static inline int model_layer_slot(int32_t layer, int k) {
    return MODEL_N_GLOBAL + layer * MODEL_N_PER_LAYER + k;
}
/* Floats of the fp32 scratch a CPU workspace needs to dequantize m's largest non-F32 matrix (a
 * fused group counts whole), or head_block rows of a non-F32 output; 0 when all are F32. */
size_t model_scratch_floats(const kvr_model *m, int64_t head_block);
/* Where slot's bytes go in m's arena (its stored type: model_slot_tensor). */
void *model_slot_dst(kvr_model *m, int slot);
static inline const model_tensor *model_slot_tensor(const kvr_model *m, int slot) {
    return &m->tensors[slot];
}
/* Slot's shape [outputs, inputs] (a norm: [D]); returns the number of dims. */
int model_slot_shape(const kvr_model_config *c, int slot, int64_t sh[2]);
/* Rows [r0, r0 + n) of t as fp32 into dst (n * t->cols floats), split over nt OpenMP threads
 * (nt == 1: this thread; nt <= 0: the OpenMP default team). */
kvr_status model_tensor_rows_f32(const model_tensor *t, int64_t r0, int64_t n, float *dst,
                                 int32_t nt, kvr_error *err);
/* Every tensor of m as fp32 in slot order (the output skipped when tied): *out (malloc'd) holds
 * *n floats. For tests and reference dumps. */
kvr_status model_dequant_all(const kvr_model *m, float **out, size_t *n, kvr_error *err);

/* Byte-level BPE tokenizer construction (GGUF tokenizer.ggml.model = gpt2, or tokenizer.json). tokens: n strings (byte-level BPE alphabet, as
 * stored), token_types: n llama.cpp token types (1 normal, 2 unknown, 3 control, 4 user-defined,
 * 5 unused, 6 byte) or NULL; merges: n_merges strings "a b"; pre: tokenizer.ggml.pre value
 * (selects the pre-tokenizer regexes). All inputs are copied.
 * Errors: KVR_ERR_UNSUPPORTED for an unknown pre-tokenizer, KVR_ERR_FORMAT for bad merges. */
kvr_status tokenizer_create_bpe(const char *const *tokens, const int32_t *token_types, int32_t n,
                                const char *const *merges, int32_t n_merges, const char *pre,
                                int32_t bos, int32_t eos, kvr_tokenizer **out, kvr_error *err);
/* SentencePiece-BPE tokenizer (tokenizer.ggml.model = llama): tokens as stored (U+2581 for
 * spaces, <0xXX> byte tokens), their types (as above) and scores (NULL: all 0), the unknown-token
 * id (-1: none; used only for a byte with no <0xXX> token), add_space_prefix
 * (tokenizer.ggml.add_space_prefix, true unless the vocabulary says otherwise). Copies its inputs.
 * Errors: KVR_ERR_FORMAT (ids out of range, duplicate tokens), KVR_ERR_NOMEM. */
kvr_status tokenizer_create_spm(const char *const *tokens, const int32_t *token_types,
                                const float *scores, int32_t n, int32_t bos, int32_t eos,
                                int32_t unk, bool add_space_prefix, kvr_tokenizer **out,
                                kvr_error *err);
/* Whether the vocabulary asks for a BOS token (tokenizer.ggml.add_bos_token; defaults: SPM yes,
 * BPE only for the llama3 pre-tokenizers, as llama.cpp). */
void tokenizer_set_add_bos(kvr_tokenizer *t, bool add_bos);
/* Replace the BOS/EOS ids (-1 or out of range: none). */
void tokenizer_set_special(kvr_tokenizer *t, int32_t bos, int32_t eos);
/* The id of the token whose text is exactly text, or -1. */
int32_t tokenizer_lookup(const kvr_tokenizer *t, const char *text);
/* An HF tokenizer.json (runtime/hf_tokenizer.c): BPE, byte-level or SentencePiece-style with
 * byte_fallback. config_json (may be NULL): config.json, for bos_token_id / eos_token_id;
 * max_vocab: the model's vocab_size (every token id must be below it). Names are for messages.
 * Errors: KVR_ERR_FORMAT (bad JSON or field, named), KVR_ERR_UNSUPPORTED (model type,
 * normalizer or pre-tokenizer, named with its value), KVR_ERR_NOMEM. */
kvr_status hf_tokenizer_from_json(const char *json, size_t len, const char *fname,
                                  const char *config_json, size_t config_len, int32_t max_vocab,
                                  kvr_tokenizer **out, kvr_error *err);
void tokenizer_destroy(kvr_tokenizer *t);
/* Keep a copy of the model's chat template (n bytes; tokenizer.chat_template). Errors: NOMEM. */
kvr_status tokenizer_set_chat_template(kvr_tokenizer *t, const char *s, size_t n, kvr_error *err);

/* The loaders' parsers over images held in memory: the only parsing path. The file loaders map
 * their files read-only and call these; the fuzz targets call them directly. Names are used in
 * messages only; buffers are borrowed for the call. */
kvr_status gguf_load_from_memory(const uint8_t *buf, size_t len, const char *fname,
                                 const kvr_model_load_params *params, kvr_model **out,
                                 kvr_error *err);
/* config.json text plus n_files safetensors images; model_name is the model directory (its last
 * component becomes cfg.name). */
kvr_status hf_load_from_memory(const char *config_json, size_t config_len, const char *config_name,
                               const char *model_name, int n_files, const uint8_t *const *bufs,
                               const size_t *lens, const char *const *fnames, kvr_model **out,
                               kvr_error *err);

#ifdef __cplusplus
}
#endif
#endif
