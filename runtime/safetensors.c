/* safetensors.c -- Hugging Face Llama checkpoints: config.json (cJSON) plus every *.safetensors
 * file of the directory (single file or shards), F32 / F16 / BF16 tensors.
 *
 * HF q_proj / k_proj rows follow the rotate-half RoPE convention; they are permuted at load into
 * the interleaved-pair order of runtime_internal.h, as llama.cpp's GGUF converter does: within
 * each head of HS rows, new row 2j = old row j and new row 2j+1 = old row HS/2 + j.
 *
 * One parsing path: kvr_model_load_hf reads config.json, maps the weight files read-only and hands
 * the bytes to hf_load_from_memory, which the fuzz target calls directly. Validation mirrors
 * gguf.c: the header length, every tensor's dtype / shape / data_offsets are checked against the
 * file before use, needed tensors must match the config and must not overlap (which bounds the
 * fp32 arena by 2x the weight bytes). Format notes: docs/model-formats.md.
 */
#include "quant_internal.h"
#include "runtime_internal.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define HF_MAX_HEADER      (100u << 20) /* safetensors' own limit is 100 MB */
#define HF_MAX_CONFIG      (16u << 20)
#define HF_MAX_SHAPE_DIMS  8
#define HF_MAX_FILES       4096
#define HF_MAX_EXACT_INT   9007199254740992.0 /* 2^53: larger JSON numbers are not exact */

// ----------------------------------------------------------------------------
// config.json

static const cJSON *hf_field(const cJSON *root, const char *key) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    return (it && !cJSON_IsNull(it)) ? it : NULL; /* "head_dim": null means absent */
}

static const char *hf_json_kind(const cJSON *it) {
    if (cJSON_IsString(it)) return "a string";
    if (cJSON_IsNumber(it)) return "a number";
    if (cJSON_IsBool(it)) return "a boolean";
    if (cJSON_IsArray(it)) return "an array";
    if (cJSON_IsObject(it)) return "an object";
    return "null";
}

static kvr_status hf_cfg_int(const cJSON *root, const char *key, bool required, int64_t def,
                             int64_t lo, int64_t hi, int64_t *out, const char *cname,
                             kvr_error *err) {
    const cJSON *it = hf_field(root, key);
    if (!it) {
        if (required) return kvr_error_set(err, KVR_ERR_FORMAT, "%s: missing field %s", cname, key);
        *out = def;
        return KVR_OK;
    }
    if (!cJSON_IsNumber(it))
        return kvr_error_set(err, KVR_ERR_FORMAT, "%s: field %s must be an integer, not %s", cname,
                             key, hf_json_kind(it));
    const double v = it->valuedouble;
    if (!(v >= (double)lo && v <= (double)hi) || (double)(int64_t)v != v)
        return kvr_error_set(err, KVR_ERR_FORMAT, "%s: field %s = %g is not an integer in [%lld, %lld]",
                             cname, key, v, (long long)lo, (long long)hi);
    *out = (int64_t)v;
    return KVR_OK;
}

static kvr_status hf_cfg_num(const cJSON *root, const char *key, bool required, double def,
                             double *out, const char *cname, kvr_error *err) {
    const cJSON *it = hf_field(root, key);
    if (!it) {
        if (required) return kvr_error_set(err, KVR_ERR_FORMAT, "%s: missing field %s", cname, key);
        *out = def;
        return KVR_OK;
    }
    if (!cJSON_IsNumber(it))
        return kvr_error_set(err, KVR_ERR_FORMAT, "%s: field %s must be a number, not %s", cname,
                             key, hf_json_kind(it));
    *out = it->valuedouble;
    return KVR_OK;
}

static kvr_status hf_check_arch(const cJSON *root, const char *cname, kvr_error *err) {
    const cJSON *mt = hf_field(root, "model_type"), *ar = hf_field(root, "architectures");
    if (mt) {
        if (!cJSON_IsString(mt))
            return kvr_error_set(err, KVR_ERR_FORMAT, "%s: field model_type must be a string, not %s",
                                 cname, hf_json_kind(mt));
        if (strcmp(mt->valuestring, "llama") == 0) return KVR_OK;
        return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                             "%s: model_type '%.64s' is not supported (only llama)", cname,
                             mt->valuestring);
    }
    if (!ar)
        return kvr_error_set(err, KVR_ERR_FORMAT, "%s: missing field model_type (and architectures)",
                             cname);
    if (!cJSON_IsArray(ar))
        return kvr_error_set(err, KVR_ERR_FORMAT, "%s: field architectures must be an array, not %s",
                             cname, hf_json_kind(ar));
    const char *first = NULL;
    const cJSON *e;
    cJSON_ArrayForEach(e, ar) {
        if (!cJSON_IsString(e)) continue;
        if (strcmp(e->valuestring, "LlamaForCausalLM") == 0) return KVR_OK;
        if (!first) first = e->valuestring;
    }
    return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                         "%s: architecture '%.64s' is not supported (only LlamaForCausalLM)", cname,
                         first ? first : "(none)");
}

/* rope_scaling of rope_type llama3: its parameters (factor 0: none). */
typedef struct hf_rope {
    double factor, low, high, orig;
} hf_rope;

static kvr_status hf_parse_config(const char *json, size_t len, const char *cname,
                                  const char *model_name, kvr_model_config *cfg, hf_rope *rope,
                                  kvr_error *err) {
    /* a NUL-terminated copy: cJSON never has to be trusted with the caller's length */
    if (len > HF_MAX_CONFIG)
        return kvr_error_set(err, KVR_ERR_FORMAT, "%s: %zu bytes is too large for a config", cname,
                             len);
    char *txt = malloc(len + 1);
    if (!txt) return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", cname);
    if (len) memcpy(txt, json, len);
    txt[len] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(txt, &end, 0);
    kvr_status st = KVR_OK;
    if (!root) {
        size_t at = (end && end >= txt && end <= txt + len) ? (size_t)(end - txt) : 0;
        st = kvr_error_set(err, KVR_ERR_FORMAT, "%s: invalid JSON near byte %zu", cname, at);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        st = kvr_error_set(err, KVR_ERR_FORMAT, "%s: top level is %s, not an object", cname,
                           hf_json_kind(root));
        goto done;
    }
    if ((st = hf_check_arch(root, cname, err)) != KVR_OK) goto done;
    int64_t D, L, NH, NKV, FF, V, ctx, HS;
    double theta, eps;
#define HF_INT(key, req, def, out)                                                                 \
    if ((st = hf_cfg_int(root, key, req, def, 1, INT32_MAX, out, cname, err)) != KVR_OK) goto done
    HF_INT("hidden_size", true, 0, &D);
    HF_INT("num_hidden_layers", true, 0, &L);
    HF_INT("num_attention_heads", true, 0, &NH);
    HF_INT("num_key_value_heads", false, NH, &NKV);
    HF_INT("intermediate_size", true, 0, &FF);
    HF_INT("vocab_size", true, 0, &V);
    HF_INT("max_position_embeddings", false, 2048, &ctx);
    HF_INT("head_dim", false, D % NH == 0 ? D / NH : 0, &HS);
#undef HF_INT
    if (HS == 0) {
        st = kvr_error_set(err, KVR_ERR_FORMAT,
                           "%s: hidden_size %lld is not a multiple of num_attention_heads %lld and "
                           "head_dim is absent",
                           cname, (long long)D, (long long)NH);
        goto done;
    }
    if ((st = hf_cfg_num(root, "rope_theta", false, 10000.0, &theta, cname, err)) != KVR_OK)
        goto done;
    if ((st = hf_cfg_num(root, "rms_norm_eps", true, 0, &eps, cname, err)) != KVR_OK) goto done;
    const cJSON *tie = hf_field(root, "tie_word_embeddings");
    if (tie && !cJSON_IsBool(tie)) {
        st = kvr_error_set(err, KVR_ERR_FORMAT,
                           "%s: field tie_word_embeddings must be a boolean, not %s", cname,
                           hf_json_kind(tie));
        goto done;
    }
    memset(rope, 0, sizeof *rope);
    const cJSON *rsc = hf_field(root, "rope_scaling");
    if (rsc && !cJSON_IsNull(rsc)) {
        if (!cJSON_IsObject(rsc)) {
            st = kvr_error_set(err, KVR_ERR_FORMAT, "%s: field rope_scaling must be an object, not %s",
                               cname, hf_json_kind(rsc));
            goto done;
        }
        const cJSON *rt = hf_field(rsc, "rope_type");
        if (!rt) rt = hf_field(rsc, "type");
        if (!rt || !cJSON_IsString(rt) || strcmp(rt->valuestring, "llama3") != 0) {
            st = kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                               "%s: rope_scaling.rope_type = %.64s is not supported (llama3 is)",
                               cname, rt && cJSON_IsString(rt) ? rt->valuestring : "(absent)");
            goto done;
        }
        if ((st = hf_cfg_num(rsc, "factor", true, 0, &rope->factor, cname, err)) != KVR_OK ||
            (st = hf_cfg_num(rsc, "low_freq_factor", false, 1, &rope->low, cname, err)) != KVR_OK ||
            (st = hf_cfg_num(rsc, "high_freq_factor", false, 4, &rope->high, cname, err)) != KVR_OK ||
            (st = hf_cfg_num(rsc, "original_max_position_embeddings", false, 8192, &rope->orig,
                             cname, err)) != KVR_OK) {
            kvr_error_prefix(err, "rope_scaling");
            goto done;
        }
        if (!(rope->factor > 0) || !(rope->low > 0) || !(rope->high > rope->low) ||
            !(rope->orig > 0)) {
            st = kvr_error_set(err, KVR_ERR_FORMAT,
                               "%s: rope_scaling: need factor > 0, 0 < low_freq_factor < "
                               "high_freq_factor, original_max_position_embeddings > 0 (got %g, "
                               "%g, %g, %g)",
                               cname, rope->factor, rope->low, rope->high, rope->orig);
            goto done;
        }
    }
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->arch, sizeof cfg->arch, "llama");
    const char *base = model_name ? strrchr(model_name, '/') : NULL;
    snprintf(cfg->name, sizeof cfg->name, "%s", base && base[1] ? base + 1 : model_name ? model_name : "hf");
    kvr_utf8_sanitize(cfg->name); /* it reaches JSON and the store: no stray bytes */
    cfg->n_layers = (int32_t)L;
    cfg->d_model = (int32_t)D;
    cfg->n_heads = (int32_t)NH;
    cfg->n_kv_heads = (int32_t)NKV;
    cfg->head_dim = (int32_t)HS;
    cfg->d_ff = (int32_t)FF;
    cfg->vocab_size = (int32_t)V;
    cfg->max_context = (int32_t)ctx;
    cfg->rope_theta = (float)theta;
    cfg->norm_eps = (float)eps;
    cfg->tied_embeddings = tie && cJSON_IsTrue(tie);
    if ((st = kvr_model_config_validate(cfg, err)) != KVR_OK) kvr_error_prefix(err, "%s", cname);
done:
    cJSON_Delete(root);
    free(txt);
    return st;
}

// ----------------------------------------------------------------------------
// tensor slots: HF names for runtime_internal.h's MODEL_SLOT_* numbering

static const char *const hf_global_names[MODEL_N_GLOBAL] = {"model.embed_tokens", "model.norm",
                                                         "lm_head"};
static const char *const hf_layer_names[MODEL_N_PER_LAYER] = {
    "input_layernorm",          "self_attn.q_proj", "self_attn.k_proj",
    "self_attn.v_proj",         "self_attn.o_proj", "post_attention_layernorm",
    "mlp.gate_proj",            "mlp.up_proj",      "mlp.down_proj"};

typedef struct hf_tinfo {
    bool present;
    int32_t type; /* GGML type id: 0 F32, 1 F16, 30 BF16 */
    const uint8_t *data;
    size_t nbytes;
    const char *fname;
    int file;
} hf_tinfo;

static void hf_slot_name(int slot, char *buf, size_t len) {
    if (slot < MODEL_N_GLOBAL)
        snprintf(buf, len, "%s.weight", hf_global_names[slot]);
    else
        snprintf(buf, len, "model.layers.%d.%s.weight", (slot - MODEL_N_GLOBAL) / MODEL_N_PER_LAYER,
                 hf_layer_names[(slot - MODEL_N_GLOBAL) % MODEL_N_PER_LAYER]);
}

static int hf_slot_of(const char *s, int32_t n_layers) {
    static const char suf[] = ".weight";
    const size_t ns = sizeof suf - 1, len = strlen(s);
    if (len <= ns || strcmp(s + len - ns, suf) != 0) return -1;
    const size_t n = len - ns;
    for (int i = 0; i < MODEL_N_GLOBAL; i++)
        if (strlen(hf_global_names[i]) == n && memcmp(s, hf_global_names[i], n) == 0) return i;
    static const char pre[] = "model.layers.";
    const size_t np = sizeof pre - 1;
    if (n < np + 2 || memcmp(s, pre, np) != 0) return -1;
    size_t i = np;
    int64_t layer = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9' && layer < n_layers) layer = layer * 10 + (s[i++] - '0');
    if (i == np || i >= n || s[i] != '.' || layer >= n_layers) return -1;
    if (s[np] == '0' && i > np + 1) return -1;
    const char *rest = s + i + 1;
    const size_t nr = n - i - 1;
    for (int k = 0; k < MODEL_N_PER_LAYER; k++)
        if (strlen(hf_layer_names[k]) == nr && memcmp(rest, hf_layer_names[k], nr) == 0)
            return MODEL_N_GLOBAL + (int)layer * MODEL_N_PER_LAYER + k;
    return -1;
}

// ----------------------------------------------------------------------------
// safetensors header

typedef struct hf_dtype {
    const char *name;
    int32_t bytes;
    int32_t ggml; /* -1: not loadable */
} hf_dtype;
static const hf_dtype hf_dtypes[] = {
    {"F32", 4, 0},  {"F16", 2, 1},  {"BF16", 2, 30}, {"F64", 8, -1},     {"I64", 8, -1},
    {"I32", 4, -1}, {"I16", 2, -1}, {"I8", 1, -1},   {"U8", 1, -1},      {"BOOL", 1, -1},
    {"U16", 2, -1}, {"U32", 4, -1}, {"U64", 8, -1},  {"F8_E4M3", 1, -1}, {"F8_E5M2", 1, -1},
};

static const hf_dtype *hf_dtype_find(const char *s) {
    for (size_t i = 0; i < sizeof hf_dtypes / sizeof hf_dtypes[0]; i++)
        if (strcmp(hf_dtypes[i].name, s) == 0) return &hf_dtypes[i];
    return NULL;
}

static bool hf_json_uint(const cJSON *it, uint64_t *out) {
    if (!cJSON_IsNumber(it)) return false;
    const double v = it->valuedouble;
    if (!(v >= 0 && v <= HF_MAX_EXACT_INT) || (double)(uint64_t)v != v) return false;
    *out = (uint64_t)v;
    return true;
}

static void hf_fmt_shape(char *buf, size_t len, const int64_t *sh, int n) {
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? ", " : "", (long long)sh[i]);
}

/* Validate one header entry; record it in slots when the model needs it. */
static kvr_status hf_parse_entry(const cJSON *e, const uint8_t *data, size_t data_len,
                                 const char *fname, int file, const kvr_model_config *cfg,
                                 hf_tinfo *slots, kvr_error *err) {
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return kvr_error_set(err, KVR_ERR_FORMAT, "%s: header entry %.80s is not an object", fname,
                             name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(jd) || !cJSON_IsArray(js) || !cJSON_IsArray(jo))
        return kvr_error_set(err, KVR_ERR_FORMAT,
                             "%s: tensor %.80s needs a string dtype, an array shape and an array "
                             "data_offsets",
                             fname, name);
    int64_t sh[HF_MAX_SHAPE_DIMS];
    int nd = 0;
    uint64_t numel = 1;
    const cJSON *d;
    cJSON_ArrayForEach(d, js) {
        uint64_t v;
        if (nd == HF_MAX_SHAPE_DIMS || !hf_json_uint(d, &v) ||
            __builtin_mul_overflow(numel, v, &numel) || numel > (uint64_t)INT64_MAX)
            return kvr_error_set(err, KVR_ERR_FORMAT,
                                 "%s: tensor %.80s has an absurd or malformed shape", fname, name);
        sh[nd++] = (int64_t)v;
    }
    uint64_t b, en;
    if (cJSON_GetArraySize(jo) != 2 || !hf_json_uint(cJSON_GetArrayItem(jo, 0), &b) ||
        !hf_json_uint(cJSON_GetArrayItem(jo, 1), &en) || b > en)
        return kvr_error_set(err, KVR_ERR_FORMAT,
                             "%s: tensor %.80s: data_offsets must be [begin, end] with begin <= end",
                             fname, name);
    if (en > data_len)
        return kvr_error_set(err, KVR_ERR_FORMAT,
                             "%s: tensor %.80s: data_offsets [%llu, %llu] run past the end of the "
                             "file (%zu bytes of data)",
                             fname, name, (unsigned long long)b, (unsigned long long)en, data_len);
    const hf_dtype *dt = hf_dtype_find(jd->valuestring);
    uint64_t want_bytes;
    if (dt && (__builtin_mul_overflow(numel, (uint64_t)dt->bytes, &want_bytes) ||
               want_bytes != en - b))
        return kvr_error_set(err, KVR_ERR_FORMAT,
                             "%s: tensor %.80s: data_offsets span %llu bytes but shape and dtype %s "
                             "need %llu",
                             fname, name, (unsigned long long)(en - b), dt->name,
                             (unsigned long long)(numel * (uint64_t)dt->bytes));
    const int slot = hf_slot_of(name, cfg->n_layers);
    if (slot < 0) return KVR_OK; /* not needed: validated, ignored */
    char sname[96];
    hf_slot_name(slot, sname, sizeof sname);
    if (slots[slot].present)
        return kvr_error_set(err, KVR_ERR_FORMAT, "%s: tensor %s appears twice (also in %s)", fname,
                             sname, slots[slot].fname);
    if (!dt)
        return kvr_error_set(err, KVR_ERR_FORMAT, "%s: tensor %s: unknown dtype '%.32s'", fname,
                             sname, jd->valuestring);
    if (dt->ggml < 0)
        return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                             "%s: tensor %s: dtype %s is not supported; supported: F32 F16 BF16",
                             fname, sname, dt->name);
    int64_t want[2];
    const int wn = model_slot_shape(cfg, slot, want);
    if (nd != wn || sh[0] != want[0] || (wn == 2 && sh[1] != want[1])) {
        char got[128], exp[64];
        hf_fmt_shape(got, sizeof got, sh, nd);
        hf_fmt_shape(exp, sizeof exp, want, wn);
        return kvr_error_set(err, KVR_ERR_FORMAT, "%s: tensor %s has shape [%s], expected [%s]",
                             fname, sname, got, exp);
    }
    slots[slot].present = true;
    slots[slot].type = dt->ggml;
    slots[slot].data = data + b;
    slots[slot].nbytes = (size_t)(en - b);
    slots[slot].fname = fname;
    slots[slot].file = file;
    return KVR_OK;
}

static int hf_cmp_tinfo(const void *a, const void *b) {
    const hf_tinfo *x = *(const hf_tinfo *const *)a, *y = *(const hf_tinfo *const *)b;
    return x->data < y->data ? -1 : x->data > y->data;
}

static kvr_status hf_parse_safetensors(const uint8_t *buf, size_t len, const char *fname,
                                       int file, const kvr_model_config *cfg, hf_tinfo *slots,
                                       int n_slots, kvr_error *err) {
    if (!buf || len < 8)
        return kvr_error_set(err, KVR_ERR_FORMAT,
                             "%s: truncated file (%zu bytes; a safetensors file starts with an "
                             "8-byte header length)",
                             fname, buf ? len : 0);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    if (hlen > len - 8)
        return kvr_error_set(err, KVR_ERR_FORMAT,
                             "%s: header length %llu runs past the end of the file (%zu bytes)",
                             fname, (unsigned long long)hlen, len);
    if (hlen > HF_MAX_HEADER)
        return kvr_error_set(err, KVR_ERR_FORMAT, "%s: header length %llu exceeds %u bytes", fname,
                             (unsigned long long)hlen, HF_MAX_HEADER);
    char *txt = malloc((size_t)hlen + 1);
    if (!txt) return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", fname);
    memcpy(txt, buf + 8, (size_t)hlen);
    txt[hlen] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(txt, &end, 0);
    kvr_status st = KVR_OK;
    if (!root) {
        size_t at = (end && end >= txt && end <= txt + hlen) ? (size_t)(end - txt) : 0;
        st = kvr_error_set(err, KVR_ERR_FORMAT, "%s: header is not valid JSON (near byte %zu)",
                           fname, 8 + at);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        st = kvr_error_set(err, KVR_ERR_FORMAT, "%s: header is %s, not an object", fname,
                           hf_json_kind(root));
        goto done;
    }
    const uint8_t *data = buf + 8 + hlen;
    const size_t data_len = len - 8 - (size_t)hlen;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (!e->string) continue;
        if (strcmp(e->string, "__metadata__") == 0) continue; /* free-form strings */
        if ((st = hf_parse_entry(e, data, data_len, fname, file, cfg, slots, err)) != KVR_OK) goto done;
    }
    /* needed tensors of this file must not overlap */
    hf_tinfo **order = malloc((size_t)n_slots * sizeof *order);
    if (!order) {
        st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", fname);
        goto done;
    }
    int n = 0;
    for (int s = 0; s < n_slots; s++)
        if (slots[s].present && slots[s].file == file && slots[s].nbytes) order[n++] = &slots[s];
    qsort(order, (size_t)n, sizeof *order, hf_cmp_tinfo);
    for (int i = 0; i + 1 < n; i++) {
        if (order[i]->data + order[i]->nbytes > order[i + 1]->data) {
            char a[96], b2[96];
            hf_slot_name((int)(order[i] - slots), a, sizeof a);
            hf_slot_name((int)(order[i + 1] - slots), b2, sizeof b2);
            st = kvr_error_set(err, KVR_ERR_FORMAT, "%s: tensors %s and %s overlap", fname, a, b2);
            break;
        }
    }
    free(order);
done:
    cJSON_Delete(root);
    free(txt);
    return st;
}

// ----------------------------------------------------------------------------
// the loader

/* q_proj / k_proj: rotate-half rows -> interleaved-pair rows, head by head. */
static kvr_status hf_copy_permuted(const hf_tinfo *t, float *dst, int32_t n_heads, int32_t HS,
                                   int32_t D, kvr_error *err) {
    const size_t esz = t->type == 0 ? 4 : 2;
    for (int32_t h = 0; h < n_heads; h++)
        for (int32_t r = 0; r < HS; r++) {
            const size_t src_row = (size_t)h * HS + (size_t)(r % 2 == 0 ? r / 2 : HS / 2 + r / 2);
            KVR_TRY(quant_dequant_row(t->type, t->data + src_row * (size_t)D * esz,
                                    dst + ((size_t)h * HS + (size_t)r) * (size_t)D, D, err));
        }
    return KVR_OK;
}

kvr_status hf_load_from_memory(const char *config_json, size_t config_len, const char *config_name,
                               const char *model_name, int n_files, const uint8_t *const *bufs,
                               const size_t *lens, const char *const *fnames, kvr_model **out,
                               kvr_error *err) {
    *out = NULL;
    kvr_model_config cfg;
    hf_rope rope;
    KVR_TRY(hf_parse_config(config_json, config_len, config_name, model_name, &cfg, &rope, err));
    const int n_slots = MODEL_N_GLOBAL + MODEL_N_PER_LAYER * cfg.n_layers;
    hf_tinfo *slots = calloc((size_t)n_slots, sizeof *slots);
    if (!slots) return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", config_name);
    kvr_model *m = NULL;
    kvr_status st = KVR_OK;
    for (int f = 0; f < n_files && st == KVR_OK; f++)
        st = hf_parse_safetensors(bufs[f], lens[f], fnames[f], f, &cfg, slots, n_slots, err);
    if (st != KVR_OK) goto fail;
    for (int s = 0; s < n_slots; s++) {
        if (slots[s].present || (s == MODEL_SLOT_OUTPUT && cfg.tied_embeddings)) continue;
        char name[96];
        hf_slot_name(s, name, sizeof name);
        st = kvr_error_set(err, KVR_ERR_FORMAT, "%s: missing tensor %s%s", model_name, name,
                           s == MODEL_SLOT_OUTPUT ? " (and tie_word_embeddings is false)" : "");
        goto fail;
    }
    if ((st = model_alloc(&cfg, NULL, &m, err)) != KVR_OK ||
        (st = model_alloc_extras(m, false, rope.factor > 0, err)) != KVR_OK) {
        kvr_error_prefix(err, "%s", model_name);
        goto fail;
    }
    if (m->rope_factors)
        model_llama3_rope_factors(m->rope_factors, cfg.head_dim, cfg.rope_theta, rope.factor,
                                  rope.low, rope.high, rope.orig);
    for (int s = 0; s < n_slots && st == KVR_OK; s++) {
        const hf_tinfo *t = &slots[s];
        if (!t->present || (s == MODEL_SLOT_OUTPUT && cfg.tied_embeddings)) continue;
        float *dst = model_slot_dst(m, s); /* all F32: the HF path expands at load */
        const int kind = s < MODEL_N_GLOBAL ? -1 : (s - MODEL_N_GLOBAL) % MODEL_N_PER_LAYER;
        if (kind == 1 || kind == 2)
            st = hf_copy_permuted(t, dst, kind == 1 ? cfg.n_heads : cfg.n_kv_heads, cfg.head_dim,
                                  cfg.d_model, err);
        else
            st = quant_dequantize(t->type, t->data, dst,
                                 (int64_t)(t->nbytes / (t->type == 0 ? 4 : 2)), err);
    }
    if (st != KVR_OK) goto fail;
    free(slots);
    *out = m;
    return KVR_OK;
fail:
    kvr_model_destroy(m);
    free(slots);
    return st;
}

// ----------------------------------------------------------------------------
// files

static int hf_cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *hf_path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* DIR/tokenizer.json, when there is one, becomes m's tokenizer. An unsupported tokenizer (model
 * type, normalizer, pre-tokenizer) is logged and the model loads without one, as the GGUF loader
 * does; a malformed file fails the load. */
static kvr_status hf_load_tokenizer(const char *dir, const kvr_file_map *cfile, kvr_model *m,
                                    kvr_error *err) {
    char *tpath = hf_path_join(dir, "tokenizer.json");
    if (!tpath) return kvr_error_set(err, KVR_ERR_NOMEM, "hf: out of memory");
    struct stat sb;
    if (stat(tpath, &sb) != 0) {
        kvr_log(KVR_LOG_INFO, "%s: no tokenizer.json; loading without a tokenizer", dir);
        free(tpath);
        return KVR_OK;
    }
    kvr_file_map tf = {0};
    kvr_status st = kvr_file_map_open(tpath, true, 0, &tf, err);
    if (st == KVR_OK) {
        kvr_error terr = {0};
        kvr_tokenizer *tok = NULL;
        st = hf_tokenizer_from_json((const char *)tf.p, tf.len, tpath, (const char *)cfile->p,
                                    cfile->len, m->cfg.vocab_size, &tok, &terr);
        if (st == KVR_OK) {
            m->tok = tok;
        } else if (st == KVR_ERR_UNSUPPORTED) {
            kvr_log(KVR_LOG_WARN, "tokenizer not available (%s); loading without a tokenizer",
                    terr.msg);
            st = KVR_OK;
        } else {
            kvr_error_set(err, st, "%s", terr.msg);
        }
    }
    kvr_file_map_close(&tf);
    free(tpath);
    return st;
}

kvr_status kvr_model_load_hf(const char *dir_or_config, kvr_model **out, kvr_error *err) {
    *out = NULL;
    if (!dir_or_config || !*dir_or_config)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "hf: empty path");
    kvr_status st = KVR_OK;
    char *dir = NULL, *cpath = NULL, **paths = NULL;
    kvr_file_map cfile = {0}, *files = NULL;
    int n_paths = 0;
    struct stat stt;
    if (stat(dir_or_config, &stt) != 0)
        return kvr_error_set(err, errno == ENOENT ? KVR_ERR_NOT_FOUND : KVR_ERR_IO, "%s: %s",
                             dir_or_config, strerror(errno));
    if (S_ISDIR(stt.st_mode)) {
        dir = strdup(dir_or_config);
        cpath = dir ? hf_path_join(dir_or_config, "config.json") : NULL;
    } else {
        cpath = strdup(dir_or_config);
        const char *slash = strrchr(dir_or_config, '/');
        dir = slash ? strndup(dir_or_config, (size_t)(slash - dir_or_config) + (slash == dir_or_config))
                    : strdup(".");
    }
    if (!dir || !cpath) {
        st = kvr_error_set(err, KVR_ERR_NOMEM, "hf: out of memory");
        goto done;
    }
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dir[--dl] = '\0';

    if ((st = kvr_file_map_open(cpath, true, HF_MAX_CONFIG, &cfile, err)) != KVR_OK) goto done;

    DIR *dd = opendir(dir);
    if (!dd) {
        st = kvr_error_set(err, KVR_ERR_IO, "%s: %s", dir, strerror(errno));
        goto done;
    }
    struct dirent *de;
    int cap = 0;
    while ((de = readdir(dd)) != NULL) {
        const size_t n = strlen(de->d_name);
        static const char ext[] = ".safetensors";
        if (n <= sizeof ext - 1 || de->d_name[0] == '.' ||
            strcmp(de->d_name + n - (sizeof ext - 1), ext) != 0)
            continue;
        if (n_paths == HF_MAX_FILES) {
            st = kvr_error_set(err, KVR_ERR_FORMAT, "%s: more than %d safetensors files", dir,
                               HF_MAX_FILES);
            break;
        }
        if (n_paths == cap) {
            cap = cap ? 2 * cap : 8;
            char **np = realloc(paths, (size_t)cap * sizeof *np);
            if (!np) {
                st = kvr_error_set(err, KVR_ERR_NOMEM, "hf: out of memory");
                break;
            }
            paths = np;
        }
        if (!(paths[n_paths] = hf_path_join(dir, de->d_name))) {
            st = kvr_error_set(err, KVR_ERR_NOMEM, "hf: out of memory");
            break;
        }
        n_paths++;
    }
    closedir(dd);
    if (st != KVR_OK) goto done;
    if (n_paths == 0) {
        st = kvr_error_set(err, KVR_ERR_NOT_FOUND, "%s: no *.safetensors files", dir);
        goto done;
    }
    qsort(paths, (size_t)n_paths, sizeof *paths, hf_cmp_str);
    files = calloc((size_t)n_paths, sizeof *files);
    const uint8_t **bufs = calloc((size_t)n_paths, sizeof *bufs);
    size_t *lens = calloc((size_t)n_paths, sizeof *lens);
    if (files && bufs && lens) {
        for (int i = 0; i < n_paths && st == KVR_OK; i++) {
            st = kvr_file_map_open(paths[i], false, 0, &files[i], err);
            bufs[i] = files[i].p;
            lens[i] = files[i].len;
        }
        if (st == KVR_OK)
            st = hf_load_from_memory((const char *)cfile.p, cfile.len, cpath, dir, n_paths, bufs,
                                     lens, (const char *const *)paths, out, err);
        if (st == KVR_OK) st = hf_load_tokenizer(dir, &cfile, *out, err);
        if (st != KVR_OK && *out) {
            kvr_model_destroy(*out);
            *out = NULL;
        }
    } else {
        st = kvr_error_set(err, KVR_ERR_NOMEM, "hf: out of memory");
    }
    free(bufs);
    free(lens);
done:
    for (int i = 0; files && i < n_paths; i++) kvr_file_map_close(&files[i]);
    for (int i = 0; i < n_paths; i++) free(paths[i]);
    free(files);
    free(paths);
    kvr_file_map_close(&cfile);
    free(dir);
    free(cpath);
    return st;
}
