/* kvr_model.h -- Llama-family model configuration, weights and tokenizer.
 *
 * A kvr_model holds a decoder configuration, its weights in one arena, and (when the source has
 * one) a tokenizer (byte-level or SentencePiece BPE). Three sources:
 *   - GGUF v2/v3 files: every matrix kept in its stored type (F32, F16, BF16, Q4_0, Q4_1, Q5_0,
 *     Q5_1, Q8_0, the K-quants, IQ4_NL, IQ4_XS; backends dequantize per GEMM), the norms as fp32;
 *     tokenizer from metadata,
 *   - Hugging Face directories (config.json + *.safetensors, F32/F16/BF16; expanded to fp32),
 *   - built-in shape presets with seeded random weights ("tiny", "llama-2-7b", "llama-3-8b",
 *     "falcon-7b"), with an optional layer-count override, for tests and profiling.
 *
 * Usage:   kvr_model *m; kvr_error err;
 *          kvr_model_load_params lp = kvr_model_load_params_default();
 *          if (kvr_model_load("tiny", &lp, &m, &err) != KVR_OK) { fprintf(stderr, "%s\n", err.msg); }
 *          const kvr_model_config *cfg = kvr_model_get_config(m);
 *          ...; kvr_model_destroy(m);
 * Ownership: the model owns its weights and tokenizer; pointers returned by getters stay valid
 *            until kvr_model_destroy. Token-id arrays returned through **out are freed with free().
 * Threads:  a loaded model is read-only and may be shared by any number of threads.
 */
#ifndef KVR_MODEL_H
#define KVR_MODEL_H
#include "kvr_common.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvr_model_config {
    char arch[32];      /* "llama" (Llama 1/2/3, Mistral, SmolLM) or "qwen2" */
    char name[128];     /* human-readable: preset name or general.name */
    int32_t n_layers;   /* L */
    int32_t d_model;    /* D */
    int32_t n_heads;    /* NH query heads */
    int32_t n_kv_heads; /* NKV; NH % NKV == 0 (GQA; 1 = MQA) */
    int32_t head_dim;   /* HS */
    int32_t d_ff;       /* FF, SwiGLU hidden size */
    int32_t vocab_size; /* V */
    int32_t max_context; /* trained context length (informational; runs may exceed it) */
    float rope_theta;
    float norm_eps;
    bool tied_embeddings; /* LM head shares token_embd */
} kvr_model_config;

typedef struct kvr_model kvr_model;
typedef struct kvr_tokenizer kvr_tokenizer;

typedef struct kvr_model_load_params {
    int32_t n_layers_override; /* presets only: 0 = preset's own count */
    uint64_t seed;             /* presets only: weight RNG seed */
    bool load_tokenizer;       /* GGUF: parse tokenizer metadata (default true) */
} kvr_model_load_params;

KVR_API kvr_model_load_params kvr_model_load_params_default(void);

/* Load from a preset name, a .gguf file, an HF directory or its config.json.
 * Errors: KVR_ERR_NOT_FOUND (no such file/preset), KVR_ERR_FORMAT (malformed file, message names
 * the file and the cause), KVR_ERR_UNSUPPORTED (tensor type or architecture), KVR_ERR_NOMEM. */
KVR_API kvr_status kvr_model_load(const char *path_or_preset, const kvr_model_load_params *params,
                                  kvr_model **out, kvr_error *err);
KVR_API kvr_status kvr_model_load_gguf(const char *path, const kvr_model_load_params *params,
                                       kvr_model **out, kvr_error *err);
KVR_API kvr_status kvr_model_load_hf(const char *dir_or_config, kvr_model **out, kvr_error *err);
KVR_API kvr_status kvr_model_create_preset(const char *name, const kvr_model_load_params *params,
                                           kvr_model **out, kvr_error *err);
KVR_API void kvr_model_destroy(kvr_model *m); /* NULL is a no-op */
/* A view of m's first n_layers layers (1 .. m's count): the same weights and tokenizer, borrowed
 * (m must outlive the view), with config.n_layers = n_layers; kvr_model_destroy frees only the
 * view. The schedules run it like any model -- what kvr-profile --overheads uses to time a
 * schedule at two depths of the same model. Errors: KVR_ERR_INVALID_ARG, KVR_ERR_NOMEM. */
KVR_API kvr_status kvr_model_view_layers(const kvr_model *m, int32_t n_layers, kvr_model **out,
                                         kvr_error *err);

KVR_API const kvr_model_config *kvr_model_get_config(const kvr_model *m);
KVR_API const kvr_tokenizer *kvr_model_get_tokenizer(const kvr_model *m); /* NULL if none */
/* Bytes of K plus V for one token in one layer at fp32: 2 * NKV * HS * 4. */
KVR_API size_t kvr_model_kv_bytes_per_token(const kvr_model_config *cfg);
/* Bytes of the loaded weights (the arena every tensor lives in, in its stored type). */
KVR_API size_t kvr_model_weight_bytes(const kvr_model *m);
/* Check a configuration for absurd or inconsistent values; message names the field. */
KVR_API kvr_status kvr_model_config_validate(const kvr_model_config *cfg, kvr_error *err);

/* The names of the built-in presets, NULL-terminated. */
KVR_API const char *const *kvr_model_preset_names(void);

/* Where the default real model (SmolLM2-135M-Instruct Q4_1 GGUF) is looked for: $KVR_MODEL if
 * set, else ./models/SmolLM2-135M-Instruct.Q4_1.gguf, else $XDG_CACHE_HOME (or ~/.cache)
 * /kvr/SmolLM2-135M-Instruct.Q4_1.gguf. Writes the first existing path into buf.
 * Errors: KVR_ERR_NOT_FOUND with the paths tried and the set-up command. */
KVR_API kvr_status kvr_model_default_path(char *buf, size_t len, kvr_error *err);

// ----------------------------------------------------------------------------
// tokenizer: GPT-2 style byte-level BPE (tokens, merges, pre-tokenizer regex via PCRE2) or
// SentencePiece BPE (Llama 1/2, Mistral: scores, U+2581 spaces, <0xXX> byte fallback), from GGUF
// metadata or an HF directory's tokenizer.json (docs/tokenizer.md)

/* Encode UTF-8 text. parse_special: exact matches of control/user-defined tokens in the text
 * become those tokens (as llama.cpp's parse_special). add_bos: prepend BOS if the vocab has one.
 * On success *ids (malloc'd, free with free()) holds *n_ids ids. */
KVR_API kvr_status kvr_tokenizer_encode(const kvr_tokenizer *t, const char *text, size_t len,
                                        bool add_bos, bool parse_special, int32_t **ids,
                                        int64_t *n_ids, kvr_error *err);
/* Decode one token to its UTF-8 bytes (byte-level mapping undone); writes at most len-1 bytes
 * and a NUL. Returns the number of bytes of the piece (may exceed len-1), or -1 for a bad id. */
KVR_API int64_t kvr_tokenizer_decode_token(const kvr_tokenizer *t, int32_t id, char *buf,
                                           size_t len);
KVR_API int32_t kvr_tokenizer_n_vocab(const kvr_tokenizer *t);
KVR_API int32_t kvr_tokenizer_bos(const kvr_tokenizer *t); /* -1 if none */
KVR_API int32_t kvr_tokenizer_eos(const kvr_tokenizer *t); /* -1 if none */
/* Whether the vocabulary asks for BOS at the start of a prompt (GGUF add_bos_token, or llama.cpp's
 * default: yes for SentencePiece and llama3-style vocabularies) and has one. */
KVR_API bool kvr_tokenizer_wants_bos(const kvr_tokenizer *t);
/* "bpe" (byte-level) or "spm" (SentencePiece); "" for NULL. */
KVR_API const char *kvr_tokenizer_type(const kvr_tokenizer *t);
/* The end-of-generation ids, as llama.cpp's llama_vocab_is_eog: the EOS id and the tokens whose
 * text ends a turn or a text in the chat templates llama.cpp knows (<|im_end|>, <|eot_id|>,
 * <|end|>, <end_of_turn>, <|endoftext|>, ...). Writes at most cap ids (16 hold them all), EOS
 * first; returns how many. */
KVR_API int32_t kvr_tokenizer_eog(const kvr_tokenizer *t, int32_t *ids, int32_t cap);
/* The model's chat template (GGUF tokenizer.chat_template, a Jinja text), NUL-terminated, or
 * NULL when the file has none. kvr does not run Jinja: serve/ recognises the template's family
 * (docs/serving.md, "Chat templates"). */
KVR_API const char *kvr_tokenizer_chat_template(const kvr_tokenizer *t);

#ifdef __cplusplus
}
#endif
#endif /* KVR_MODEL_H */
