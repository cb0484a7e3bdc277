/* model.c -- model configuration checks, the weight arena, built-in shape presets with seeded
 * random weights, load dispatch (preset / GGUF / HF) and the default real-model path. */
#include "runtime_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

kvr_model_load_params kvr_model_load_params_default(void) {
    kvr_model_load_params p = {.n_layers_override = 0, .seed = 1234, .load_tokenizer = true};
    return p;
}

size_t kvr_model_weight_bytes(const kvr_model *m) {
    return m ? m->arena_floats * sizeof(float) : 0;
}

size_t kvr_model_kv_bytes_per_token(const kvr_model_config *cfg) {
    return (size_t)2 * (size_t)cfg->n_kv_heads * (size_t)cfg->head_dim * sizeof(float);
}

// ----------------------------------------------------------------------------
// configuration

/* Upper bounds that no real Llama-family model exceeds; anything larger is a corrupt file. */
#define KVR_MAX_LAYERS 1024
#define KVR_MAX_DIM    (1 << 17)
#define KVR_MAX_HEADS  1024
#define KVR_MAX_VOCAB  (1 << 22)

kvr_status kvr_model_config_validate(const kvr_model_config *c, kvr_error *err) {
#define KVR_CFG_RANGE(field, lo, hi)                                                               \
    if ((int64_t)c->field < (lo) || (int64_t)c->field > (hi))                                      \
        return kvr_error_set(err, KVR_ERR_FORMAT, "model config: %s = %lld is outside [%lld, %lld]", \
                             #field, (long long)c->field, (long long)(lo), (long long)(hi));
    KVR_CFG_RANGE(n_layers, 1, KVR_MAX_LAYERS);
    KVR_CFG_RANGE(d_model, 1, KVR_MAX_DIM);
    KVR_CFG_RANGE(n_heads, 1, KVR_MAX_HEADS);
    KVR_CFG_RANGE(n_kv_heads, 1, KVR_MAX_HEADS);
    KVR_CFG_RANGE(head_dim, 2, 1024);
    KVR_CFG_RANGE(d_ff, 1, 8 * KVR_MAX_DIM);
    KVR_CFG_RANGE(vocab_size, 1, KVR_MAX_VOCAB);
#undef KVR_CFG_RANGE
    if (c->n_heads % c->n_kv_heads != 0)
        return kvr_error_set(err, KVR_ERR_FORMAT,
                             "model config: n_heads %d is not a multiple of n_kv_heads %d",
                             c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2 != 0)
        return kvr_error_set(err, KVR_ERR_FORMAT, "model config: head_dim %d is odd (RoPE pairs)",
                             c->head_dim);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return kvr_error_set(err, KVR_ERR_FORMAT, "model config: rope_theta %g is not positive",
                             (double)c->rope_theta);
    if (!(c->norm_eps > 0) || !(c->norm_eps < 1))
        return kvr_error_set(err, KVR_ERR_FORMAT, "model config: norm_eps %g is not in (0, 1)",
                             (double)c->norm_eps);
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// arena

kvr_status model_alloc(const kvr_model_config *cfg, kvr_model **out, kvr_error *err) {
    *out = NULL;
    KVR_TRY(kvr_model_config_validate(cfg, err));
    const size_t D = (size_t)cfg->d_model, L = (size_t)cfg->n_layers, V = (size_t)cfg->vocab_size;
    const size_t HS = (size_t)cfg->head_dim, NH = (size_t)cfg->n_heads,
                 NKV = (size_t)cfg->n_kv_heads, FF = (size_t)cfg->d_ff;
    const size_t per_layer = D + (NH + 2 * NKV) * HS * D + D * NH * HS + D + 2 * FF * D + D * FF;
    const size_t total = V * D + D + (cfg->tied_embeddings ? 0 : V * D) + L * per_layer;
    kvr_model *m = calloc(1, sizeof *m);
    if (!m) return kvr_error_set(err, KVR_ERR_NOMEM, "model: out of memory");
    m->cfg = *cfg;
    m->layers = calloc(L, sizeof *m->layers);
    m->arena = calloc(total, sizeof(float));
    if (!m->layers || !m->arena) {
        kvr_model_destroy(m);
        return kvr_error_set(err, KVR_ERR_NOMEM, "model: cannot allocate %.2f GiB of fp32 weights",
                             (double)total * 4 / (1 << 30));
    }
    m->arena_floats = total;
    float *p = m->arena;
    m->tok_embd = p, p += V * D;
    m->output_norm = p, p += D;
    if (cfg->tied_embeddings) {
        m->output = m->tok_embd;
    } else {
        m->output = p, p += V * D;
    }
    for (size_t l = 0; l < L; l++) {
        kvr_layer_weights *w = &m->layers[l];
        w->attn_norm = p, p += D;
        w->wqkv = p, p += (NH + 2 * NKV) * HS * D;
        w->wo = p, p += D * NH * HS;
        w->ffn_norm = p, p += D;
        w->w_gate_up = p, p += 2 * FF * D;
        w->w_down = p, p += D * FF;
    }
    KVR_ASSERT((size_t)(p - m->arena) == total);
    *out = m;
    return KVR_OK;
}

float *model_slot_dst(kvr_model *m, int slot) {
    if (slot == MODEL_SLOT_TOK_EMBD) return m->tok_embd;
    if (slot == MODEL_SLOT_OUTPUT_NORM) return m->output_norm;
    if (slot == MODEL_SLOT_OUTPUT) return m->output;
    const kvr_model_config *c = &m->cfg;
    const size_t D = (size_t)c->d_model, HS = (size_t)c->head_dim, FF = (size_t)c->d_ff;
    kvr_layer_weights *w = &m->layers[(slot - MODEL_N_GLOBAL) / MODEL_N_PER_LAYER];
    switch ((slot - MODEL_N_GLOBAL) % MODEL_N_PER_LAYER) {
    case 0: return w->attn_norm;
    case 1: return w->wqkv;
    case 2: return w->wqkv + (size_t)c->n_heads * HS * D;
    case 3: return w->wqkv + (size_t)(c->n_heads + c->n_kv_heads) * HS * D;
    case 4: return w->wo;
    case 5: return w->ffn_norm;
    case 6: return w->w_gate_up;
    case 7: return w->w_gate_up + FF * D;
    default: return w->w_down;
    }
}

int model_slot_shape(const kvr_model_config *c, int slot, int64_t sh[2]) {
    const int64_t D = c->d_model, V = c->vocab_size, FF = c->d_ff;
    const int64_t Q = (int64_t)c->n_heads * c->head_dim, KV = (int64_t)c->n_kv_heads * c->head_dim;
    if (slot < MODEL_N_GLOBAL) {
        if (slot == MODEL_SLOT_OUTPUT_NORM) return sh[0] = D, 1;
        return sh[0] = V, sh[1] = D, 2;
    }
    switch ((slot - MODEL_N_GLOBAL) % MODEL_N_PER_LAYER) {
    case 0: case 5: return sh[0] = D, 1;             /* norms */
    case 1: return sh[0] = Q, sh[1] = D, 2;          /* q */
    case 2: case 3: return sh[0] = KV, sh[1] = D, 2; /* k, v */
    case 4: return sh[0] = D, sh[1] = Q, 2;          /* o */
    case 6: case 7: return sh[0] = FF, sh[1] = D, 2; /* gate, up */
    default: return sh[0] = D, sh[1] = FF, 2;        /* down */
    }
}

void kvr_model_destroy(kvr_model *m) {
    if (!m) return;
    tokenizer_destroy(m->tok);
    free(m->arena);
    free(m->layers);
    free(m);
}

const kvr_model_config *kvr_model_get_config(const kvr_model *m) {
    return &m->cfg;
}
const kvr_tokenizer *kvr_model_get_tokenizer(const kvr_model *m) {
    return m->tok;
}

// ----------------------------------------------------------------------------
// presets: real model shapes, seeded random weights (for tests and profiling shapes)

typedef struct kvr_preset {
    const char *name;
    kvr_model_config cfg;
} kvr_preset;

static const kvr_preset kvr_presets[] = {
    /* tiny: a few layers with GQA (4 query heads over 2 KV heads) for tests */
    {"tiny", {"llama", "tiny", 4, 64, 4, 2, 16, 160, 256, 4096, 10000.0f, 1e-5f, false}},
    /* tiny-mqa: the same with a single KV head */
    {"tiny-mqa", {"llama", "tiny-mqa", 3, 64, 4, 1, 16, 160, 256, 4096, 10000.0f, 1e-5f, true}},
    {"llama-2-7b",
     {"llama", "llama-2-7b", 32, 4096, 32, 32, 128, 11008, 32000, 4096, 10000.0f, 1e-5f, false}},
    {"llama-3-8b",
     {"llama", "llama-3-8b", 32, 4096, 32, 8, 128, 14336, 128256, 8192, 500000.0f, 1e-5f, false}},
    /* Falcon-7B-like: 71 query heads sharing one KV head (MQA) in a Llama-family block */
    {"falcon-7b",
     {"llama", "falcon-7b", 32, 4544, 71, 1, 64, 18176, 65024, 2048, 10000.0f, 1e-5f, false}},
};
#define KVR_N_PRESETS (sizeof kvr_presets / sizeof kvr_presets[0])

const char *const *kvr_model_preset_names(void) {
    static const char *names[KVR_N_PRESETS + 1];
    for (size_t i = 0; i < KVR_N_PRESETS; i++) names[i] = kvr_presets[i].name;
    names[KVR_N_PRESETS] = NULL;
    return names;
}

/* splitmix64 -> uniform in [-1, 1); fast enough to fill a 7B-shaped layer in well under a second */
static inline float kvr_rand_uniform(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 40) * (2.0 / 16777216.0) - 1.0);
}

static void kvr_fill_uniform(float *p, size_t n, float scale, uint64_t *s) {
    for (size_t i = 0; i < n; i++) p[i] = scale * kvr_rand_uniform(s);
}
static void kvr_fill_norm(float *p, size_t n, uint64_t *s) {
    for (size_t i = 0; i < n; i++) p[i] = 1.0f + 0.1f * kvr_rand_uniform(s);
}

kvr_status kvr_model_create_preset(const char *name, const kvr_model_load_params *params,
                                   kvr_model **out, kvr_error *err) {
    *out = NULL;
    kvr_model_load_params dp = kvr_model_load_params_default();
    if (!params) params = &dp;
    const kvr_preset *pr = NULL;
    for (size_t i = 0; i < KVR_N_PRESETS; i++)
        if (strcmp(kvr_presets[i].name, name) == 0) pr = &kvr_presets[i];
    if (!pr) return kvr_error_set(err, KVR_ERR_NOT_FOUND, "unknown preset '%s'", name);
    kvr_model_config cfg = pr->cfg;
    if (params->n_layers_override < 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "preset %s: negative layer count %d", name,
                             params->n_layers_override);
    if (params->n_layers_override > 0) cfg.n_layers = params->n_layers_override;
    kvr_model *m;
    KVR_TRY(model_alloc(&cfg, &m, err));
    /* Uniform weights scaled like a 1/sqrt(fan_in) init keep activations O(1) through depth. */
    uint64_t s = params->seed;
    const size_t D = (size_t)cfg.d_model, HS = (size_t)cfg.head_dim, FF = (size_t)cfg.d_ff;
    const size_t NQKV = (size_t)(cfg.n_heads + 2 * cfg.n_kv_heads) * HS;
    const float sd = 1.0f / sqrtf((float)D);
    kvr_fill_uniform(m->tok_embd, (size_t)cfg.vocab_size * D, 1.0f, &s);
    kvr_fill_norm(m->output_norm, D, &s);
    if (!cfg.tied_embeddings) kvr_fill_uniform(m->output, (size_t)cfg.vocab_size * D, sd, &s);
    for (int32_t l = 0; l < cfg.n_layers; l++) {
        kvr_layer_weights *w = &m->layers[l];
        kvr_fill_norm(w->attn_norm, D, &s);
        kvr_fill_uniform(w->wqkv, NQKV * D, sd * 1.7f, &s);
        kvr_fill_uniform(w->wo, D * (size_t)cfg.n_heads * HS, 1.0f / sqrtf((float)(cfg.n_heads * HS)), &s);
        kvr_fill_norm(w->ffn_norm, D, &s);
        kvr_fill_uniform(w->w_gate_up, 2 * FF * D, sd * 1.7f, &s);
        kvr_fill_uniform(w->w_down, D * FF, 1.0f / sqrtf((float)FF), &s);
    }
    *out = m;
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// dispatch

static bool kvr_is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool kvr_ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

kvr_status kvr_model_load(const char *src, const kvr_model_load_params *params, kvr_model **out,
                          kvr_error *err) {
    *out = NULL;
    if (!src || !*src) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "model: empty name");
    for (size_t i = 0; i < KVR_N_PRESETS; i++)
        if (strcmp(kvr_presets[i].name, src) == 0)
            return kvr_model_create_preset(src, params, out, err);
    if (kvr_is_dir(src) || kvr_ends_with(src, "config.json")) return kvr_model_load_hf(src, out, err);
    FILE *f = fopen(src, "rb");
    if (!f) {
        int e = errno;
        if (e == ENOENT) {
            char names[256] = "";
            for (size_t i = 0; i < KVR_N_PRESETS; i++) {
                strncat(names, kvr_presets[i].name, sizeof names - strlen(names) - 1);
                if (i + 1 < KVR_N_PRESETS) strncat(names, ", ", sizeof names - strlen(names) - 1);
            }
            return kvr_error_set(err, KVR_ERR_NOT_FOUND,
                                 "model %s: no such file, directory or preset (presets: %s)", src,
                                 names);
        }
        return kvr_error_set(err, KVR_ERR_IO, "model %s: %s", src, strerror(e));
    }
    fclose(f);
    return kvr_model_load_gguf(src, params, out, err);
}

kvr_status kvr_model_default_path(char *buf, size_t len, kvr_error *err) {
    const char *fname = "SmolLM2-135M-Instruct.Q4_1.gguf";
    char cands[3][1024];
    int n = 0;
    const char *env = getenv("KVR_MODEL");
    if (env && *env) snprintf(cands[n++], sizeof cands[0], "%s", env);
    snprintf(cands[n++], sizeof cands[0], "models/%s", fname);
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg)
        snprintf(cands[n++], sizeof cands[0], "%s/kvr/%s", xdg, fname);
    else if (home && *home)
        snprintf(cands[n++], sizeof cands[0], "%s/.cache/kvr/%s", home, fname);
    for (int i = 0; i < n; i++) {
        struct stat st;
        if (stat(cands[i], &st) == 0 && S_ISREG(st.st_mode)) {
            if (strlen(cands[i]) + 1 > len)
                return kvr_error_set(err, KVR_ERR_INVALID_ARG, "model path too long");
            memcpy(buf, cands[i], strlen(cands[i]) + 1);
            return KVR_OK;
        }
    }
    return kvr_error_set(err, KVR_ERR_NOT_FOUND,
                         "default model not found (tried %s%s%s%s%s); run scripts/fetch-model to "
                         "install it",
                         cands[0], n > 1 ? ", " : "", n > 1 ? cands[1] : "", n > 2 ? ", " : "",
                         n > 2 ? cands[2] : "");
}
