/* hf_tokenizer.c -- a Hugging Face directory's tokenizer.json (the `tokenizers` serialization that
 * transformers saves) turned into one of the two tokenizers of tokenizer.c, parsed with cJSON.
 *
 * Supported (docs/tokenizer.md lists the exact shapes):
 *   - model.type "BPE" with byte-level pre-tokenization (GPT-2, SmolLM, Llama 3, Qwen2): vocab,
 *     merges ("a b" strings or [a, b] pairs), added_tokens; the pre_tokenizer is matched against
 * the shapes these families write and mapped to a tokenizer.ggml.pre kind: ByteLevel(use_regex) ->
 * gpt2 Sequence[Digits(individual_digits), ByteLevel(use_regex)]  -> smollm (starcoder)
 *       Sequence[Split(Llama-3 regex), ByteLevel(no regex)]        -> llama-bpe
 *       Sequence[Split(Qwen2 regex), ByteLevel(no regex)]          -> qwen2
 *   - model.type "BPE" with byte_fallback and no ByteLevel (SentencePiece converted by
 * transformers: Llama 2, Mistral): the SentencePiece tokenizer, a token's score being minus the
 * rank of the merge that makes it, add_space_prefix from a Prepend("\u2581") normalizer or a
 * Metaspace pre-tokenizer. Anything else is KVR_ERR_UNSUPPORTED with a message naming the field and
 * its value; malformed JSON or fields are KVR_ERR_FORMAT naming the field. BOS/EOS ids come from
 * config.json (bos_token_id, eos_token_id; an array's first entry), and a TemplateProcessing
 * post-processor that starts with a special token means "add BOS".
 */
#include "runtime_internal.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define HFT_MAX_JSON ((size_t)512 << 20)

static const char k_hf_re_llama3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char k_hf_re_qwen2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

typedef struct hft_ctx {
    const char *fname;
    kvr_error *err;
} hft_ctx;

static const cJSON *hft_get(const cJSON *o, const char *key) {
    const cJSON *it = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return (it && !cJSON_IsNull(it)) ? it : NULL;
}

static const char *hft_type(const cJSON *o) {
    const cJSON *t = hft_get(o, "type");
    return cJSON_IsString(t) ? t->valuestring : "";
}

static bool hft_flag(const cJSON *o, const char *key, bool def) {
    const cJSON *it = hft_get(o, key);
    return cJSON_IsBool(it) ? cJSON_IsTrue(it) : def;
}

/* A JSON integer id in [0, INT32_MAX), or -1. */
static int64_t hft_id(const cJSON *it) {
    if (!cJSON_IsNumber(it)) return -1;
    double v = it->valuedouble;
    if (!(v >= 0 && v < 2147483647.0) || (double)(int64_t)v != v) return -1;
    return (int64_t)v;
}

/* The pre_tokenizer's shape -> a tokenizer.ggml.pre name, or NULL (message in err). */
static kvr_status hft_pre_kind(hft_ctx *c, const cJSON *pre, const char **out) {
    *out = NULL;
    const char *ty = hft_type(pre);
    if (strcmp(ty, "ByteLevel") == 0 && hft_flag(pre, "use_regex", true) &&
        !hft_flag(pre, "add_prefix_space", false)) {
        *out = "gpt2";
        return KVR_OK;
    }
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *list = hft_get(pre, "pretokenizers");
        if (cJSON_IsArray(list) && cJSON_GetArraySize(list) == 2) {
            const cJSON *a = cJSON_GetArrayItem(list, 0), *b = cJSON_GetArrayItem(list, 1);
            const bool b_bl =
                strcmp(hft_type(b), "ByteLevel") == 0 && !hft_flag(b, "add_prefix_space", false);
            if (b_bl && strcmp(hft_type(a), "Digits") == 0 &&
                hft_flag(a, "individual_digits", false) && hft_flag(b, "use_regex", true)) {
                *out = "smollm";
                return KVR_OK;
            }
            const cJSON *pat = hft_get(hft_get(a, "pattern"), "Regex");
            const cJSON *beh = hft_get(a, "behavior");
            if (b_bl && !hft_flag(b, "use_regex", true) && strcmp(hft_type(a), "Split") == 0 &&
                cJSON_IsString(pat) && cJSON_IsString(beh) &&
                strcmp(beh->valuestring, "Isolated") == 0 && !hft_flag(a, "invert", false)) {
                if (strcmp(pat->valuestring, k_hf_re_llama3) == 0)
                    *out = "llama-bpe";
                else if (strcmp(pat->valuestring, k_hf_re_qwen2) == 0)
                    *out = "qwen2";
                if (*out) return KVR_OK;
                return kvr_error_set(
                    c->err, KVR_ERR_UNSUPPORTED,
                    "%s: pre_tokenizer Split regex '%.80s' is not supported (known: "
                    "the Llama 3 and Qwen2 regexes)",
                    c->fname, pat->valuestring);
            }
        }
    }
    char *txt = cJSON_PrintUnformatted(pre);
    kvr_status st =
        kvr_error_set(c->err, KVR_ERR_UNSUPPORTED,
                      "%s: pre_tokenizer %.160s is not supported (supported: ByteLevel; "
                      "Sequence[Digits, ByteLevel]; Sequence[Split(Llama 3 or Qwen2 "
                      "regex), ByteLevel])",
                      c->fname, txt ? txt : "(type?)");
    free(txt);
    return st;
}

/* SentencePiece-style: add_space_prefix from the normalizer / pre_tokenizer; other steps than
 * Prepend/Replace/Metaspace are refused. */
static kvr_status hft_spm_prefix(hft_ctx *c, const cJSON *norm, const cJSON *pre, bool *prefix) {
    *prefix = false;
    const cJSON *steps[64];
    int n = 0;
    if (norm) {
        if (strcmp(hft_type(norm), "Sequence") == 0) {
            const cJSON *it;
            cJSON_ArrayForEach(it, hft_get(norm, "normalizers")) if (n < 64) steps[n++] = it;
        } else {
            steps[n++] = norm;
        }
    }
    for (int i = 0; i < n; i++) {
        const char *ty = hft_type(steps[i]);
        if (strcmp(ty, "Prepend") == 0) {
            const cJSON *p = hft_get(steps[i], "prepend");
            if (cJSON_IsString(p) && strcmp(p->valuestring, "\xe2\x96\x81") == 0) *prefix = true;
        } else if (strcmp(ty, "Replace") != 0) {
            return kvr_error_set(c->err, KVR_ERR_UNSUPPORTED,
                                 "%s: normalizer type '%s' is not supported with a SentencePiece "
                                 "(byte_fallback) BPE model (supported: Prepend, Replace)",
                                 c->fname, ty);
        }
    }
    if (pre) {
        if (strcmp(hft_type(pre), "Metaspace") != 0)
            return kvr_error_set(
                c->err, KVR_ERR_UNSUPPORTED,
                "%s: pre_tokenizer type '%s' is not supported with a SentencePiece "
                "(byte_fallback) BPE model (supported: none, Metaspace)",
                c->fname, hft_type(pre));
        const cJSON *scheme = hft_get(pre, "prepend_scheme");
        if (cJSON_IsString(scheme))
            *prefix = strcmp(scheme->valuestring, "never") != 0;
        else
            *prefix = hft_flag(pre, "add_prefix_space", true);
    }
    return KVR_OK;
}

/* bos_token_id / eos_token_id of config.json (an integer, or an array's first integer). */
static int32_t hft_cfg_id(const cJSON *cfg, const char *key, int32_t n) {
    const cJSON *it = hft_get(cfg, key);
    if (cJSON_IsArray(it)) it = cJSON_GetArrayItem(it, 0);
    int64_t id = hft_id(it);
    return id >= 0 && id < n ? (int32_t)id : -1;
}

/* The post-processor adds BOS: TemplateProcessing whose "single" starts with a special token
 * (alone or inside a Sequence). Returns that token's text or NULL. */
static const char *hft_template_bos(const cJSON *pp) {
    if (strcmp(hft_type(pp), "Sequence") == 0) {
        const cJSON *it;
        cJSON_ArrayForEach(it, hft_get(pp, "processors")) {
            const char *s = hft_template_bos(it);
            if (s) return s;
        }
        return NULL;
    }
    if (strcmp(hft_type(pp), "TemplateProcessing") != 0) return NULL;
    const cJSON *single = hft_get(pp, "single");
    const cJSON *first = cJSON_IsArray(single) ? cJSON_GetArrayItem(single, 0) : NULL;
    const cJSON *id = hft_get(hft_get(first, "SpecialToken"), "id");
    return cJSON_IsString(id) ? id->valuestring : NULL;
}

kvr_status hf_tokenizer_from_json(const char *json, size_t len, const char *fname,
                                  const char *config_json, size_t config_len, int32_t max_vocab,
                                  kvr_tokenizer **out, kvr_error *err) {
    *out = NULL;
    hft_ctx c = {fname, err};
    if (len > HFT_MAX_JSON)
        return kvr_error_set(err, KVR_ERR_FORMAT, "%s: %zu bytes is too large for a tokenizer.json",
                             fname, len);
    char *txt = malloc(len + 1);
    if (!txt) return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", fname);
    if (len) memcpy(txt, json, len);
    txt[len] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(txt, &end, 0);
    cJSON *cfg = config_json ? cJSON_ParseWithLengthOpts(config_json, config_len, NULL, 0) : NULL;
    kvr_status st = KVR_OK;
    char **toks = NULL, **merges = NULL;
    int32_t *types = NULL, n = 0, n_merges = 0;
    float *scores = NULL;
    char(*pads)[24] = NULL;
    if (!root) {
        size_t at = (end && end >= txt && end <= txt + len) ? (size_t)(end - txt) : 0;
        st = kvr_error_set(err, KVR_ERR_FORMAT, "%s: invalid JSON near byte %zu", fname, at);
        goto done;
    }
    const cJSON *model = hft_get(root, "model");
    if (!cJSON_IsObject(model)) {
        st = kvr_error_set(err, KVR_ERR_FORMAT, "%s: missing object field model", fname);
        goto done;
    }
    if (strcmp(hft_type(model), "BPE") != 0) {
        st = kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                           "%s: model.type = '%s' is not supported (only BPE: byte-level or "
                           "SentencePiece with byte_fallback)",
                           fname, hft_type(model));
        goto done;
    }
    const cJSON *vocab = hft_get(model, "vocab"), *mlist = hft_get(model, "merges");
    const cJSON *added = hft_get(root, "added_tokens");
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(mlist) || (added && !cJSON_IsArray(added))) {
        st = kvr_error_set(err, KVR_ERR_FORMAT, "%s: %s", fname,
                           !cJSON_IsObject(vocab)  ? "model.vocab must be an object"
                           : !cJSON_IsArray(mlist) ? "model.merges must be an array"
                                                   : "added_tokens must be an array");
        goto done;
    }
    /* ids: vocab and added tokens */
    const cJSON *it;
    int64_t max_id = -1;
    cJSON_ArrayForEach(it, vocab) {
        int64_t id = hft_id(it);
        if (id < 0 || !it->string) {
            st = kvr_error_set(err, KVR_ERR_FORMAT, "%s: model.vocab['%.40s'] is not a token id",
                               fname, it->string ? it->string : "");
            goto done;
        }
        if (id > max_id) max_id = id;
    }
    cJSON_ArrayForEach(it, added) {
        int64_t id = hft_id(hft_get(it, "id"));
        if (id < 0 || !cJSON_IsString(hft_get(it, "content"))) {
            st = kvr_error_set(
                err, KVR_ERR_FORMAT,
                "%s: added_tokens: an entry without an integer id and a string content", fname);
            goto done;
        }
        if (id > max_id) max_id = id;
    }
    if (max_id < 0 || max_id >= max_vocab) {
        st = kvr_error_set(err, KVR_ERR_FORMAT,
                           "%s: token ids run to %lld; expected 0 to the model's vocab_size %d - 1",
                           fname, (long long)max_id, (int)max_vocab);
        goto done;
    }
    n = (int32_t)max_id + 1;
    toks = calloc((size_t)n, sizeof *toks);
    types = malloc((size_t)n * sizeof *types);
    if (!toks || !types) {
        st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory (%d tokens)", fname, (int)n);
        goto done;
    }
    cJSON_ArrayForEach(it, vocab) {
        int32_t id = (int32_t)hft_id(it);
        if (toks[id]) {
            st = kvr_error_set(err, KVR_ERR_FORMAT,
                               "%s: model.vocab: id %d given twice ('%.40s', '%.40s')", fname,
                               (int)id, toks[id], it->string);
            goto done;
        }
        toks[id] = it->string;
        types[id] = 1;
    }
    cJSON_ArrayForEach(it, added) {
        int32_t id = (int32_t)hft_id(hft_get(it, "id"));
        toks[id] = hft_get(it, "content")->valuestring;
        types[id] = hft_flag(it, "special", false) ? 3 : 4; /* control / user-defined */
    }
    /* ids nobody names: placeholders, as llama.cpp's converter writes them */
    int32_t n_pad = 0;
    for (int32_t i = 0; i < n; i++)
        n_pad += toks[i] == NULL;
    if (n_pad) {
        pads = malloc((size_t)n_pad * sizeof *pads);
        if (!pads) {
            st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", fname);
            goto done_pads;
        }
        for (int32_t i = 0, k = 0; i < n; i++)
            if (!toks[i]) {
                snprintf(pads[k], sizeof pads[k], "[PAD%d]", (int)i);
                toks[i] = pads[k++];
                types[i] = 5; /* unused */
            }
    }
    /* merges as "a b" strings */
    n_merges = cJSON_GetArraySize(mlist);
    merges = calloc((size_t)(n_merges ? n_merges : 1), sizeof *merges);
    if (!merges) {
        st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory (%d merges)", fname,
                           (int)n_merges);
        goto done_pads;
    }
    {
        int32_t i = 0;
        cJSON_ArrayForEach(it, mlist) {
            const cJSON *a = NULL, *b = NULL;
            if (cJSON_IsString(it)) {
                merges[i] = strdup(it->valuestring);
            } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 &&
                       cJSON_IsString(a = cJSON_GetArrayItem(it, 0)) &&
                       cJSON_IsString(b = cJSON_GetArrayItem(it, 1))) {
                size_t na = strlen(a->valuestring), nb = strlen(b->valuestring);
                merges[i] = malloc(na + nb + 2);
                if (merges[i]) {
                    memcpy(merges[i], a->valuestring, na);
                    merges[i][na] = ' ';
                    memcpy(merges[i] + na + 1, b->valuestring, nb + 1);
                }
            } else {
                st = kvr_error_set(err, KVR_ERR_FORMAT,
                                   "%s: model.merges[%d] is neither \"a b\" nor [\"a\", \"b\"]",
                                   fname, (int)i);
                goto done_pads;
            }
            if (!merges[i]) {
                st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", fname);
                goto done_pads;
            }
            i++;
        }
    }

    const cJSON *pre = hft_get(root, "pre_tokenizer"), *norm = hft_get(root, "normalizer");
    const cJSON *dec = hft_get(root, "decoder");
    bool byte_level = strcmp(hft_type(dec), "ByteLevel") == 0;
    if (pre && strstr(hft_type(pre), "ByteLevel")) byte_level = true;
    if (pre && strcmp(hft_type(pre), "Sequence") == 0) {
        cJSON_ArrayForEach(it, hft_get(pre, "pretokenizers")) byte_level |=
            strcmp(hft_type(it), "ByteLevel") == 0;
    }
    const bool byte_fallback = hft_flag(model, "byte_fallback", false);
    const int32_t bos_cfg = hft_cfg_id(cfg, "bos_token_id", n),
                  eos = hft_cfg_id(cfg, "eos_token_id", n);
    int32_t bos = bos_cfg;
    const char *tmpl_bos = hft_template_bos(hft_get(root, "post_processor"));
    kvr_tokenizer *t = NULL;
    if (byte_level) {
        if (norm) {
            st = kvr_error_set(
                err, KVR_ERR_UNSUPPORTED,
                "%s: normalizer type '%s' is not supported with a byte-level BPE model", fname,
                hft_type(norm));
            goto done_pads;
        }
        const char *kind = NULL;
        if (!pre) {
            st = kvr_error_set(
                err, KVR_ERR_UNSUPPORTED,
                "%s: a byte-level BPE model without a pre_tokenizer is not supported", fname);
            goto done_pads;
        }
        if ((st = hft_pre_kind(&c, pre, &kind)) != KVR_OK) goto done_pads;
        kvr_error terr;
        st = tokenizer_create_bpe((const char *const *)toks, types, n, (const char *const *)merges,
                                  n_merges, kind, -1, -1, &t, &terr);
        if (st != KVR_OK) {
            kvr_error_set(err, st, "%s: %s", fname, terr.msg);
            goto done_pads;
        }
    } else if (byte_fallback) {
        bool prefix = false;
        if ((st = hft_spm_prefix(&c, norm, pre, &prefix)) != KVR_OK) goto done_pads;
        const cJSON *unk_tok = hft_get(model, "unk_token");
        int32_t unk = -1;
        scores = malloc((size_t)n * sizeof *scores);
        if (!scores) {
            st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", fname);
            goto done_pads;
        }
        for (int32_t i = 0; i < n; i++) {
            scores[i] = -(float)n_merges - 1.0f; /* below every merged token */
            const char *s = toks[i];
            if (types[i] == 1 && strlen(s) == 6 && strncmp(s, "<0x", 3) == 0 && s[5] == '>')
                types[i] = 6; /* byte-fallback token */
            if (cJSON_IsString(unk_tok) && strcmp(s, unk_tok->valuestring) == 0) {
                types[i] = 2;
                unk = i;
            }
        }
        /* a token's score: minus the rank of the first merge that makes it */
        kvr_tokenizer *lookup = NULL;
        kvr_error terr;
        if ((st = tokenizer_create_spm((const char *const *)toks, types, NULL, n, -1, -1, -1,
                                       prefix, &lookup, &terr)) != KVR_OK) {
            kvr_error_set(err, st, "%s: %s", fname, terr.msg);
            goto done_pads;
        }
        for (int32_t r = n_merges - 1; r >= 0; r--) {
            /* "a b": a space after a non-empty first part (an empty or one-part merge names
             * no token; fuzz_tokenizer_json found strchr reading past an empty one) */
            char *sp = merges[r][0] ? strchr(merges[r] + 1, ' ') : NULL;
            if (!sp) continue;
            size_t na = (size_t)(sp - merges[r]);
            char *joined = malloc(strlen(merges[r]));
            if (!joined) break;
            memcpy(joined, merges[r], na);
            strcpy(joined + na, sp + 1);
            int32_t id = tokenizer_lookup(lookup, joined);
            if (id >= 0) scores[id] = -(float)r;
            free(joined);
        }
        tokenizer_destroy(lookup);
        st = tokenizer_create_spm((const char *const *)toks, types, scores, n, -1, -1, unk, prefix,
                                  &t, &terr);
        if (st != KVR_OK) {
            kvr_error_set(err, st, "%s: %s", fname, terr.msg);
            goto done_pads;
        }
    } else {
        st = kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                           "%s: a BPE model with neither a ByteLevel pre-tokenizer/decoder nor "
                           "byte_fallback is not supported",
                           fname);
        goto done_pads;
    }
    /* BOS/EOS, and whether the post-processor adds BOS */
    if (tmpl_bos) {
        int32_t id = tokenizer_lookup(t, tmpl_bos);
        if (id >= 0) bos = id;
    }
    tokenizer_set_special(t, bos, eos);
    tokenizer_set_add_bos(t, tmpl_bos != NULL && bos >= 0);
    *out = t;
done_pads:
    free(pads);
done:
    for (int32_t i = 0; merges && i < n_merges; i++)
        free(merges[i]);
    free(merges);
    free(toks);
    free(types);
    free(scores);
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    free(txt);
    return st;
}
