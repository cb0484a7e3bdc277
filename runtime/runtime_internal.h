/* runtime_internal.h -- declarations shared by the runtime's own .c files (and its tests):
 * the weight layout every loader fills, the arena allocator, and the tokenizer constructor.
 * Tools and other modules never include this file. */
#ifndef KVR_RUNTIME_INTERNAL_H
#define KVR_RUNTIME_INTERNAL_H
#include "kvr_model.h"

/* Per-layer weights, fp32, row-major with one row per output feature (the GGUF/HF layout:
 * y = W x with W of shape (out, in)). Q and K rows are in "interleaved pair" RoPE order (the
 * order llama.cpp's GGUF converter writes; HF weights are permuted into it at load), so one RoPE
 * kernel serves every source. */
typedef struct kvr_layer_weights {
    float *attn_norm; /* (D) */
    float *wqkv;      /* ((NH + 2*NKV)*HS, D): Q rows, then K rows, then V rows */
    float *wo;        /* (D, NH*HS) */
    float *ffn_norm;  /* (D) */
    float *w_gate_up; /* (2*FF, D): gate rows, then up rows */
    float *w_down;    /* (D, FF) */
} kvr_layer_weights;

struct kvr_model {
    kvr_model_config cfg;
    float *arena;       /* one allocation holding every tensor below */
    size_t arena_floats;
    float *tok_embd;    /* (V, D) */
    float *output_norm; /* (D) */
    float *output;      /* (V, D); == tok_embd when cfg.tied_embeddings */
    kvr_layer_weights *layers; /* (L) */
    kvr_tokenizer *tok; /* NULL when the source has none */
};

/* Validate cfg, allocate the arena and point every tensor into it (zero-filled).
 * Errors: KVR_ERR_INVALID_ARG (bad config), KVR_ERR_NOMEM (message gives the size). */
kvr_status model_alloc(const kvr_model_config *cfg, kvr_model **out, kvr_error *err);

/* The tensors a Llama model needs, numbered as every loader numbers them (each names them in
 * its own format): the token embedding, the output norm and the output, then per layer
 * attn_norm, q, k, v, o, ffn_norm, gate, up, down, MODEL_N_PER_LAYER slots each. */
enum { MODEL_SLOT_TOK_EMBD, MODEL_SLOT_OUTPUT_NORM, MODEL_SLOT_OUTPUT, MODEL_N_GLOBAL };
#define MODEL_N_PER_LAYER 9
/* Where slot's fp32 data goes in m's arena (q, k, v into wqkv; gate, up into w_gate_up). */
float *model_slot_dst(kvr_model *m, int slot);
/* Slot's shape [outputs, inputs] (a norm: [D]); returns the number of dims. */
int model_slot_shape(const kvr_model_config *c, int slot, int64_t sh[2]);

/* Tokenizer construction from GGUF metadata. tokens: n strings (byte-level BPE alphabet, as
 * stored), token_types: n llama.cpp token types (1 normal, 2 unknown, 3 control, 4 user-defined,
 * 5 unused, 6 byte) or NULL; merges: n_merges strings "a b"; pre: tokenizer.ggml.pre value
 * (selects the pre-tokenizer regexes). All inputs are copied.
 * Errors: KVR_ERR_UNSUPPORTED for an unknown pre-tokenizer, KVR_ERR_FORMAT for bad merges. */
kvr_status tokenizer_create_bpe(const char *const *tokens, const int32_t *token_types, int32_t n,
                                const char *const *merges, int32_t n_merges, const char *pre,
                                int32_t bos, int32_t eos, kvr_tokenizer **out, kvr_error *err);
void tokenizer_destroy(kvr_tokenizer *t);

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

#endif
