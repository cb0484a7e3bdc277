/* model.c -- model configuration checks, the weight arena, built-in shape presets with seeded
 * random weights, load dispatch (preset / GGUF / HF) and the default real-model path. */
#include "quant_internal.h"
#include "runtime_internal.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

kvr_model_load_params kvr_model_load_params_default(void) {
    kvr_model_load_params p = {.n_layers_override = 0, .seed = 1234, .load_tokenizer = true};
    return p;
}

size_t kvr_model_weight_bytes(const kvr_model *m) {
    return m ? m->arena_bytes + m->extra_floats * sizeof(float) : 0;
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

kvr_status model_alloc(const kvr_model_config *cfg, const int32_t *types, kvr_model **out,
                       kvr_error *err) {
    *out = NULL;
    KVR_TRY(kvr_model_config_validate(cfg, err));
    const int32_t L = cfg->n_layers, n_slots = MODEL_N_GLOBAL + MODEL_N_PER_LAYER * L;
    kvr_model *m = calloc(1, sizeof *m);
    if (!m) return kvr_error_set(err, KVR_ERR_NOMEM, "model: out of memory");
    m->cfg = *cfg;
    m->n_slots = n_slots;
    m->layers = calloc((size_t)L, sizeof *m->layers);
    m->tensors = calloc((size_t)n_slots, sizeof *m->tensors);
    if (!m->layers || !m->tensors) {
        kvr_model_destroy(m);
        return kvr_error_set(err, KVR_ERR_NOMEM, "model: out of memory");
    }
    /* shapes, types and offsets first, then one allocation */
    size_t total = 0;
    for (int s = 0; s < n_slots; s++) {
        model_tensor *t = &m->tensors[s];
        int64_t sh[2];
        const int nd = model_slot_shape(cfg, s, sh);
        t->rows = nd == 2 ? sh[0] : 1;
        t->cols = sh[nd - 1];
        t->type = nd == 1 || !types ? QUANT_F32 : types[s];
        if (s == MODEL_SLOT_OUTPUT && cfg->tied_embeddings) continue;
        const quant_type_traits *tt = quant_type_get(t->type);
        if (!tt->dequant) {
            kvr_model_destroy(m);
            return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                                 "model: slot %d: type %s (%d) is not supported; supported: "
                                 QUANT_SUPPORTED_TYPES, s, tt->name, t->type);
        }
        if (t->cols % tt->blck != 0) {
            kvr_model_destroy(m);
            return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                                 "model: slot %d: row length %lld is not a multiple of the %s "
                                 "block size %d", s, (long long)t->cols, tt->name, tt->blck);
        }
        t->row_bytes = (size_t)(t->cols / tt->blck) * (size_t)tt->bytes;
        total = (total + 3) & ~(size_t)3;
        t->data = (uint8_t *)(uintptr_t)total; /* an offset until the arena exists */
        total += (size_t)t->rows * t->row_bytes;
    }
    m->arena = calloc(total ? total : 1, 1);
    if (!m->arena) {
        kvr_model_destroy(m);
        return kvr_error_set(err, KVR_ERR_NOMEM, "model: cannot allocate %.2f GiB of weights",
                             (double)total / (1 << 30));
    }
    m->arena_bytes = total;
    for (int s = 0; s < n_slots; s++) m->tensors[s].data = m->arena + (uintptr_t)m->tensors[s].data;
    if (cfg->tied_embeddings) m->tensors[MODEL_SLOT_OUTPUT] = m->tensors[MODEL_SLOT_TOK_EMBD];
    /* fp32 views */
#define KVR_F32(s) (m->tensors[s].type == QUANT_F32 ? (float *)(void *)m->tensors[s].data : NULL)
    m->tok_embd = KVR_F32(MODEL_SLOT_TOK_EMBD);
    m->output_norm = KVR_F32(MODEL_SLOT_OUTPUT_NORM);
    m->output = KVR_F32(MODEL_SLOT_OUTPUT);
    for (int32_t l = 0; l < L; l++) {
        kvr_layer_weights *w = &m->layers[l];
        const int s0 = model_layer_slot(l, 0);
        w->attn_norm = KVR_F32(s0 + MODEL_L_ATTN_NORM);
        w->ffn_norm = KVR_F32(s0 + MODEL_L_FFN_NORM);
        w->wo = KVR_F32(s0 + MODEL_L_O);
        w->w_down = KVR_F32(s0 + MODEL_L_DOWN);
        if (KVR_F32(s0 + MODEL_L_Q) && KVR_F32(s0 + MODEL_L_K) && KVR_F32(s0 + MODEL_L_V))
            w->wqkv = KVR_F32(s0 + MODEL_L_Q);
        if (KVR_F32(s0 + MODEL_L_GATE) && KVR_F32(s0 + MODEL_L_UP))
            w->w_gate_up = KVR_F32(s0 + MODEL_L_GATE);
    }
#undef KVR_F32
    *out = m;
    return KVR_OK;
}

kvr_status model_alloc_extras(kvr_model *m, bool qkv_bias, bool rope_factors, kvr_error *err) {
    const kvr_model_config *c = &m->cfg;
    const size_t nqkv = (size_t)(c->n_heads + 2 * c->n_kv_heads) * (size_t)c->head_dim;
    const size_t nb = qkv_bias ? (size_t)c->n_layers * nqkv : 0;
    const size_t nr = rope_factors ? (size_t)c->head_dim / 2 : 0;
    if (nb + nr == 0) return KVR_OK;
    m->extra = calloc(nb + nr, sizeof(float));
    if (!m->extra) return kvr_error_set(err, KVR_ERR_NOMEM, "model: out of memory for biases");
    m->extra_floats = nb + nr;
    for (int32_t l = 0; l < c->n_layers && nb; l++) m->layers[l].bqkv = m->extra + (size_t)l * nqkv;
    if (nr) m->rope_factors = m->extra + nb;
    return KVR_OK;
}

void model_llama3_rope_factors(float *out, int32_t head_dim, double theta, double factor,
                               double low_freq_factor, double high_freq_factor,
                               double original_max_pos) {
    const double low_wavelen = original_max_pos / low_freq_factor;
    const double high_wavelen = original_max_pos / high_freq_factor;
    for (int32_t i = 0; i < head_dim / 2; i++) {
        const double freq = 1.0 / pow(theta, (double)(2 * i) / (double)head_dim);
        const double wavelen = 2 * 3.14159265358979323846 / freq; /* math.pi */
        if (wavelen < high_wavelen) {
            out[i] = 1.0f;
        } else if (wavelen > low_wavelen) {
            out[i] = (float)factor;
        } else {
            const double smooth = (original_max_pos / wavelen - low_freq_factor) /
                                  (high_freq_factor - low_freq_factor);
            out[i] = (float)(1.0 / ((1 - smooth) / factor + smooth));
        }
    }
}

void model_rope_rows_to_pairs(uint8_t *dst, const uint8_t *src, int32_t n_heads, int32_t HS,
                              size_t row_bytes) {
    for (int32_t h = 0; h < n_heads; h++)
        for (int32_t r = 0; r < HS; r++) {
            const size_t sr = (size_t)h * (size_t)HS + (size_t)(r % 2 == 0 ? r / 2 : HS / 2 + r / 2);
            memcpy(dst + ((size_t)h * (size_t)HS + (size_t)r) * row_bytes, src + sr * row_bytes,
                   row_bytes);
        }
}

size_t model_scratch_floats(const kvr_model *m, int64_t head_block) {
    const kvr_model_config *c = &m->cfg;
    const size_t D = (size_t)c->d_model, HS = (size_t)c->head_dim, FF = (size_t)c->d_ff;
    const size_t NH = (size_t)c->n_heads, NKV = (size_t)c->n_kv_heads;
    size_t need = 0;
    for (int32_t l = 0; l < c->n_layers; l++) {
        const kvr_layer_weights *w = &m->layers[l];
        const size_t g[4] = {w->wqkv ? 0 : (NH + 2 * NKV) * HS * D, w->wo ? 0 : D * NH * HS,
                             w->w_gate_up ? 0 : 2 * FF * D, w->w_down ? 0 : D * FF};
        for (int i = 0; i < 4; i++) need = g[i] > need ? g[i] : need;
    }
    if (!m->output) {
        const size_t hb = (size_t)(c->vocab_size < head_block ? c->vocab_size : head_block) * D;
        need = hb > need ? hb : need;
    }
    return need;
}

void *model_slot_dst(kvr_model *m, int slot) {
    return m->tensors[slot].data;
}

kvr_status model_tensor_rows_f32(const model_tensor *t, int64_t r0, int64_t n, float *dst,
                                 int32_t nt, kvr_error *err) {
    if (t->type == QUANT_F32) { /* a copy; the backends use an F32 tensor in place */
        memcpy(dst, t->data + (size_t)r0 * t->row_bytes, (size_t)n * t->row_bytes);
        return KVR_OK;
    }
    const quant_type_traits *tt = quant_type_get(t->type);
    if (!tt->dequant)
        return kvr_error_set(err, KVR_ERR_UNSUPPORTED, "model: tensor type %s (%d) is not readable",
                             tt->name, t->type);
    const int64_t nb = t->cols / tt->blck;
    /* the type was checked at model_alloc: every row is whole blocks */
#pragma omp parallel for num_threads(nt > 0 ? nt : omp_get_max_threads()) schedule(static) if (nt != 1 && n > 1)
    for (int64_t r = 0; r < n; r++)
        tt->dequant(t->data + (size_t)(r0 + r) * t->row_bytes, dst + r * t->cols, nb);
    return KVR_OK;
}

kvr_status model_dequant_all(const kvr_model *m, float **out, size_t *n, kvr_error *err) {
    *out = NULL;
    *n = 0;
    size_t total = 0;
    for (int s = 0; s < m->n_slots; s++) {
        if (s == MODEL_SLOT_OUTPUT && m->cfg.tied_embeddings) continue;
        total += (size_t)(m->tensors[s].rows * m->tensors[s].cols);
    }
    float *buf = malloc((total ? total : 1) * sizeof(float));
    if (!buf) return kvr_error_set(err, KVR_ERR_NOMEM, "model: cannot allocate %zu floats", total);
    size_t at = 0;
    for (int s = 0; s < m->n_slots; s++) {
        if (s == MODEL_SLOT_OUTPUT && m->cfg.tied_embeddings) continue;
        const model_tensor *t = &m->tensors[s];
        kvr_status st = model_tensor_rows_f32(t, 0, t->rows, buf + at, 1, err);
        if (st != KVR_OK) {
            free(buf);
            return st;
        }
        at += (size_t)(t->rows * t->cols);
    }
    *out = buf;
    *n = total;
    return KVR_OK;
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
    if (m->view) { /* the weights belong to the model it views */
        free(m);
        return;
    }
    tokenizer_destroy(m->tok);
    free(m->arena);
    free(m->extra);
    free(m->tensors);
    free(m->layers);
    free(m);
}

kvr_status kvr_model_view_layers(const kvr_model *m, int32_t n_layers, kvr_model **out,
                                 kvr_error *err) {
    if (!m || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "model view: NULL argument");
    if (n_layers < 1 || n_layers > m->cfg.n_layers)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "model view: layers must be in [1, %d], got %d", m->cfg.n_layers,
                             n_layers);
    kvr_model *v = malloc(sizeof *v);
    if (!v) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (model view)");
    *v = *m;
    v->cfg.n_layers = n_layers;
    v->view = true;
    *out = v;
    return KVR_OK;
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
    KVR_TRY(model_alloc(&cfg, NULL, &m, err));
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
