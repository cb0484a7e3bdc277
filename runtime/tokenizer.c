/* tokenizer.c -- the two tokenizers of llama.cpp's Llama-family vocabularies:
 *   - GPT-2 style byte-level BPE (tokenizer.ggml.model = gpt2, LLAMA_VOCAB_TYPE_BPE), and
 *   - SentencePiece BPE (tokenizer.ggml.model = llama, LLAMA_VOCAB_TYPE_SPM: Llama 1/2, Mistral,
 *     TinyLlama): spaces escaped to U+2581, an optional space prefix, merges by token score
 *     (llm_tokenizer_spm), <0xXX> byte-fallback tokens.
 *
 * SPM encoding (tok_spm_text): special-token partition as below; each raw fragment gets a leading
 * space when add_space_prefix is set and it is the first fragment or follows a special token;
 * every ' ' becomes U+2581; the text is split into UTF-8 characters (by lead byte, no validation,
 * as llama.cpp); adjacent symbols whose concatenation is a token are merged, highest score first,
 * leftmost on ties; a final symbol that is no token becomes its bytes' <0xXX> tokens.
 *
 * BPE pipeline of kvr_tokenizer_encode (each step mirrors a piece of llama.cpp's src/llama-vocab.cpp
 * and src/unicode.cpp; see docs/tokenizer.md):
 *   1. special-token partition (tokenizer_st_partition): for each control/unknown/user-defined
 *      token, longest text first, split every raw fragment on its exact occurrences;
 *   2. per raw fragment, UTF-8 is decoded the way llama.cpp decodes it (each invalid byte becomes
 *      U+FFFD) and re-encoded, giving the canonical text;
 *   3. pre-tokenizer: the regexes of the vocabulary's `pre` type, applied in sequence; each regex
 *      splits every current piece into its matches and the gaps between them (unicode_regex_split).
 *      The regex strings are llama.cpp's, verbatim; PCRE2 runs them, with \s / \S rewritten to
 *      llama.cpp's whitespace set so the classes agree with its custom splitters;
 *   4. each piece is byte-encoded (GPT-2 bytes_to_unicode) and merged by BPE: lowest merge rank
 *      first, leftmost on ties (llm_tokenizer_bpe_session::tokenize), then mapped to ids.
 *
 * Memory: everything is copied in tokenizer_create_bpe / _spm; encode allocates per-call scratch only, so
 * one tokenizer may be shared read-only by any number of threads.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "runtime_internal.h"

enum {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6,
};

#define TOK_MAX_REGEX 4
#define TOK_N_BYTE_CPTS 324 /* bytes_to_unicode maps into [0, 256 + 68) */
#define TOK_MAX_TEXT_BYTES ((size_t)1 << 30)

// ----------------------------------------------------------------------------
// pre-tokenizer definitions (regex strings copied verbatim from llama.cpp's llama-vocab.cpp)

static const char k_re_gpt2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
static const char k_re_llama3[] =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char k_re_qwen2[] =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

typedef struct tok_pre_kind {
    const char *kind; /* llama.cpp's LLAMA_VOCAB_PRE_TYPE_* name, for messages and docs */
    const char *regex[TOK_MAX_REGEX];
    bool ignore_merges; /* a piece that is already a token is emitted whole */
} tok_pre_kind;

static const tok_pre_kind k_pre_default = {
    "DEFAULT",
    {"[\\p{P}\\$\\+<=>\\^~\\|]+", k_re_gpt2, "\\p{N}+", "[0-9][0-9][0-9]"},
    false};
static const tok_pre_kind k_pre_gpt2 = {"GPT2", {k_re_gpt2}, false};
static const tok_pre_kind k_pre_llama3 = {"LLAMA3", {k_re_llama3}, true};
static const tok_pre_kind k_pre_dbrx = {"DBRX", {k_re_llama3}, false};
static const tok_pre_kind k_pre_qwen2 = {"QWEN2", {k_re_qwen2}, false};
static const tok_pre_kind k_pre_starcoder = {"STARCODER", {"\\p{N}", k_re_gpt2}, false};
static const tok_pre_kind k_pre_falcon = {
    "FALCON", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", k_re_gpt2, "[0-9][0-9][0-9]"}, false};

/* tokenizer.ggml.pre values -> kind, as in llama_vocab::impl::load ("gpt2" is our alias). */
static const struct {
    const char *name;
    const tok_pre_kind *kind;
} k_pre_names[] = {
    {"default", &k_pre_default},     {"gpt-2", &k_pre_gpt2},          {"gpt2", &k_pre_gpt2},
    {"phi-2", &k_pre_gpt2},          {"mpt", &k_pre_gpt2},            {"olmo", &k_pre_gpt2},
    {"jais", &k_pre_gpt2},           {"roberta-bpe", &k_pre_gpt2},    {"exaone4", &k_pre_gpt2},
    {"llama3", &k_pre_llama3},       {"llama-v3", &k_pre_llama3},     {"llama-bpe", &k_pre_llama3},
    {"falcon3", &k_pre_llama3},      {"pixtral", &k_pre_llama3},      {"dbrx", &k_pre_dbrx},
    {"smaug-bpe", &k_pre_dbrx},      {"qwen2", &k_pre_qwen2},         {"deepseek-r1-qwen", &k_pre_qwen2},
    {"stablelm2", &k_pre_qwen2},     {"megrez", &k_pre_qwen2},        {"starcoder", &k_pre_starcoder},
    {"refact", &k_pre_starcoder},    {"smollm", &k_pre_starcoder},    {"command-r", &k_pre_starcoder},
    {"codeshell", &k_pre_starcoder}, {"exaone", &k_pre_starcoder},    {"minerva-7b", &k_pre_starcoder},
    {"falcon", &k_pre_falcon},
};

/* Token texts llama.cpp forces to control type when a vocabulary marks them normal (its EOG,
 * EOT/EOM and FIM auto-detection in llama_vocab::impl::load). */
static const char *const k_forced_control[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", "[e~[",
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "\xe2\x96\x81<PRE>",
    "<|code_prefix|>", "<|prefix|>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>",
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<SUF>", "\xe2\x96\x81<SUF>",
    "<|code_suffix|>", "<|suffix|>", "<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>",
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>", "\xe2\x96\x81<MID>",
    "<|code_middle|>", "<|middle|>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>",
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", "<|fim_repo|>", "<|repo_name|>",
    "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>",
};

// ----------------------------------------------------------------------------
// the tokenizer object

enum { TOK_VOCAB_BPE = 0, TOK_VOCAB_SPM = 1 };

struct kvr_tokenizer {
    int vocab; /* TOK_VOCAB_* */
    int32_t n_vocab, bos, eos, unk;
    bool add_bos;          /* what the vocabulary asks for (kvr_tokenizer_wants_bos) */
    bool add_space_prefix; /* SPM: a space before the first fragment and after special tokens */
    float *scores;         /* SPM: (n_vocab) merge priority of each token */
    int32_t byte_id[256];  /* SPM: the <0xXX> token of each byte (or its one-byte token), or -1 */
    char pre[64];
    char *chat_template; /* tokenizer.chat_template (GGUF), or NULL */
    const tok_pre_kind *kind;
    /* tokens: texts in one blob, NUL-separated */
    char *tok_blob;
    size_t *tok_off;   /* (n_vocab) */
    uint32_t *tok_len; /* (n_vocab) */
    int32_t *tok_type; /* (n_vocab), after llama.cpp's forced-control overrides */
    int32_t *tok_hash; /* open addressing, id or -1; capacity tok_hash_mask + 1 */
    uint64_t tok_hash_mask;
    /* merges: the "left right" strings; rank = index */
    char *merge_blob;
    size_t *merge_off;   /* (n_merges) */
    uint32_t *merge_len; /* (n_merges) */
    int32_t n_merges;
    int32_t *merge_hash; /* rank or -1 */
    uint64_t merge_hash_mask;
    /* special tokens for the partition step, longest text first */
    int32_t *special;
    int32_t n_special;
    /* pre-tokenizer */
    pcre2_code *re[TOK_MAX_REGEX];
    bool re_jit[TOK_MAX_REGEX];
    int n_re;
    /* GPT-2 byte mapping */
    char byte_enc[256][2];
    uint8_t byte_enc_len[256];
    int16_t byte_dec[TOK_N_BYTE_CPTS]; /* code point -> byte, or -1 */
};

// ----------------------------------------------------------------------------
// small helpers

static uint64_t tok_fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h;
}
#define TOK_FNV_INIT 14695981039346656037ull

static uint64_t tok_pow2_at_least(uint64_t n) {
    uint64_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

/* Grow *p (elements of size elem) to hold at least need elements. */
static kvr_status tok_reserve(void **p, size_t *cap, size_t need, size_t elem, kvr_error *err) {
    if (need <= *cap) return KVR_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return kvr_error_set(err, KVR_ERR_NOMEM, "tokenizer: out of memory (%zu bytes)", c * elem);
    *p = q;
    *cap = c;
    return KVR_OK;
}

static size_t tok_utf8_encode(uint32_t cpt, char *out) {
    if (cpt <= 0x7f) {
        out[0] = (char)cpt;
        return 1;
    }
    if (cpt <= 0x7ff) {
        out[0] = (char)(0xc0 | (cpt >> 6));
        out[1] = (char)(0x80 | (cpt & 0x3f));
        return 2;
    }
    if (cpt <= 0xffff) {
        out[0] = (char)(0xe0 | (cpt >> 12));
        out[1] = (char)(0x80 | ((cpt >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cpt & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cpt >> 18));
    out[1] = (char)(0x80 | ((cpt >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cpt >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cpt & 0x3f));
    return 4;
}

/* Decode one code point the way llama.cpp's unicode_cpt_from_utf8 does: structure only (overlong
 * forms and surrogates are accepted). Returns the bytes consumed, or 0 for an invalid sequence
 * (the caller substitutes U+FFFD for one byte). Code points above U+10FFFF, which llama.cpp
 * cannot re-encode (it throws), are treated as invalid here. */
static size_t tok_utf8_decode(const unsigned char *s, size_t n, uint32_t *cpt) {
    unsigned char b = s[0];
    if (!(b & 0x80)) {
        *cpt = b;
        return 1;
    }
    if (!(b & 0x40)) return 0;
    if (!(b & 0x20)) {
        if (n < 2 || (s[1] & 0xc0) != 0x80) return 0;
        *cpt = ((uint32_t)(b & 0x1f) << 6) | (s[1] & 0x3f);
        return 2;
    }
    if (!(b & 0x10)) {
        if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80) return 0;
        *cpt = ((uint32_t)(b & 0x0f) << 12) | ((uint32_t)(s[1] & 0x3f) << 6) | (s[2] & 0x3f);
        return 3;
    }
    if (!(b & 0x08)) {
        if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        uint32_t c = ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(s[1] & 0x3f) << 12) |
                     ((uint32_t)(s[2] & 0x3f) << 6) | (s[3] & 0x3f);
        if (c > 0x10ffff) return 0;
        *cpt = c;
        return 4;
    }
    return 0;
}

/* llama.cpp's unicode_len_utf8: sequence length from the lead byte alone. */
static size_t tok_utf8_len(unsigned char b) {
    static const size_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[b >> 4];
}

// ----------------------------------------------------------------------------
// lookups

static int32_t tok_lookup(const kvr_tokenizer *t, const char *s, size_t n) {
    uint64_t i = tok_fnv1a(TOK_FNV_INIT, s, n) & t->tok_hash_mask;
    for (;; i = (i + 1) & t->tok_hash_mask) {
        int32_t id = t->tok_hash[i];
        if (id < 0) return -1;
        if (t->tok_len[id] == n && memcmp(t->tok_blob + t->tok_off[id], s, n) == 0) return id;
    }
}

/* Rank of the merge "a b", or -1. */
static int32_t tok_merge_rank(const kvr_tokenizer *t, const char *a, size_t na, const char *b,
                              size_t nb) {
    if (t->n_merges == 0) return -1;
    uint64_t h = tok_fnv1a(TOK_FNV_INIT, a, na);
    h = tok_fnv1a(h, " ", 1);
    h = tok_fnv1a(h, b, nb);
    for (uint64_t i = h & t->merge_hash_mask;; i = (i + 1) & t->merge_hash_mask) {
        int32_t r = t->merge_hash[i];
        if (r < 0) return -1;
        const char *m = t->merge_blob + t->merge_off[r];
        if (t->merge_len[r] == na + 1 + nb && memcmp(m, a, na) == 0 && m[na] == ' ' &&
            memcmp(m + na + 1, b, nb) == 0)
            return r;
    }
}

// ----------------------------------------------------------------------------
// construction

/* Rewrite \s and \S to llama.cpp's whitespace set (unicode_set_whitespace), which its custom
 * splitters use and which differs from PCRE2's \s (U+180E, U+0085 handling). */
#define TOK_WS "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
static char *tok_rewrite_ws(const char *re) {
    size_t n = strlen(re), cap = n * (sizeof(TOK_WS) + 4) + 1;
    char *out = malloc(cap);
    if (!out) return NULL;
    size_t o = 0;
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = re[i];
        if (c == '\\' && i + 1 < n) {
            char d = re[i + 1];
            i++;
            const char *rep = NULL;
            if (d == 's') rep = in_class ? TOK_WS : "[" TOK_WS "]";
            else if (d == 'S' && !in_class) rep = "[^" TOK_WS "]";
            if (rep) {
                size_t k = strlen(rep);
                memcpy(out + o, rep, k);
                o += k;
            } else {
                out[o++] = c;
                out[o++] = d;
            }
            continue;
        }
        if (c == '[' && !in_class) in_class = true;
        else if (c == ']' && in_class) in_class = false;
        out[o++] = c;
    }
    out[o] = '\0';
    return out;
}

static int tok_special_cmp(const void *pa, const void *pb) {
    const int64_t *a = (const int64_t *)pa, *b = (const int64_t *)pb;
    /* packed as (len << 32) | id: longer first, then lower id */
    int64_t la = a[0] >> 32, lb = b[0] >> 32;
    if (la != lb) return la > lb ? -1 : 1;
    int64_t ia = a[0] & 0xffffffff, ib = b[0] & 0xffffffff;
    return ia < ib ? -1 : ia > ib;
}

static void tok_init_bytes(kvr_tokenizer *t) {
    for (int i = 0; i < TOK_N_BYTE_CPTS; i++) t->byte_dec[i] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool self = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        uint32_t cpt = self ? (uint32_t)b : (uint32_t)(256 + n++);
        char buf[4];
        size_t k = tok_utf8_encode(cpt, buf);
        memcpy(t->byte_enc[b], buf, k);
        t->byte_enc_len[b] = (uint8_t)k;
        t->byte_dec[cpt] = (int16_t)b;
    }
}

/* The parts both vocabulary types share: ids, token texts and types (after llama.cpp's
 * forced-control overrides), the text -> id hash and the special-token list. */
static kvr_status tok_create_common(const char *const *tokens, const int32_t *token_types,
                                    int32_t n, int32_t bos, int32_t eos, kvr_tokenizer **out,
                                    kvr_error *err) {
    if (!out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "tokenizer: out is NULL");
    *out = NULL;
    if (!tokens || n <= 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "tokenizer: no tokens (n = %d)", (int)n);
    if (bos < -1 || bos >= n)
        return kvr_error_set(err, KVR_ERR_FORMAT, "tokenizer: bos id %d outside [0, %d)", (int)bos,
                             (int)n);
    if (eos < -1 || eos >= n)
        return kvr_error_set(err, KVR_ERR_FORMAT, "tokenizer: eos id %d outside [0, %d)", (int)eos,
                             (int)n);
    kvr_status st = KVR_OK;
    kvr_tokenizer *t = calloc(1, sizeof(*t));
    if (!t) return kvr_error_set(err, KVR_ERR_NOMEM, "tokenizer: out of memory");
    t->n_vocab = n;
    t->bos = bos;
    t->eos = eos;
    t->unk = -1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;

    /* tokens */
    size_t blob = 0;
    for (int32_t i = 0; i < n; i++) {
        if (!tokens[i]) {
            st = kvr_error_set(err, KVR_ERR_FORMAT, "tokenizer: token %d is NULL", (int)i);
            goto fail;
        }
        blob += strlen(tokens[i]) + 1;
    }
    t->tok_blob = malloc(blob);
    t->tok_off = malloc((size_t)n * sizeof(size_t));
    t->tok_len = malloc((size_t)n * sizeof(uint32_t));
    t->tok_type = malloc((size_t)n * sizeof(int32_t));
    t->tok_hash_mask = tok_pow2_at_least(2 * (uint64_t)n) - 1;
    t->tok_hash = malloc((t->tok_hash_mask + 1) * sizeof(int32_t));
    if (!t->tok_blob || !t->tok_off || !t->tok_len || !t->tok_type || !t->tok_hash) {
        st = kvr_error_set(err, KVR_ERR_NOMEM, "tokenizer: out of memory (%d tokens)", (int)n);
        goto fail;
    }
    memset(t->tok_hash, 0xff, (t->tok_hash_mask + 1) * sizeof(int32_t));
    size_t off = 0;
    for (int32_t i = 0; i < n; i++) {
        size_t len = strlen(tokens[i]);
        if (len > UINT32_MAX) {
            st = kvr_error_set(err, KVR_ERR_FORMAT, "tokenizer: token %d too long", (int)i);
            goto fail;
        }
        memcpy(t->tok_blob + off, tokens[i], len + 1);
        t->tok_off[i] = off;
        t->tok_len[i] = (uint32_t)len;
        off += len + 1;
        int32_t ty = token_types ? token_types[i] : TOK_TYPE_NORMAL;
        if (ty < TOK_TYPE_NORMAL || ty > TOK_TYPE_BYTE) ty = TOK_TYPE_UNDEFINED;
        if (ty != TOK_TYPE_CONTROL) {
            for (size_t k = 0; k < sizeof(k_forced_control) / sizeof(k_forced_control[0]); k++)
                if (strcmp(tokens[i], k_forced_control[k]) == 0) ty = TOK_TYPE_CONTROL;
        }
        t->tok_type[i] = ty;
        uint64_t h = tok_fnv1a(TOK_FNV_INIT, tokens[i], len) & t->tok_hash_mask;
        for (;; h = (h + 1) & t->tok_hash_mask) {
            int32_t other = t->tok_hash[h];
            if (other < 0) {
                t->tok_hash[h] = i;
                break;
            }
            if (t->tok_len[other] == len && memcmp(t->tok_blob + t->tok_off[other], tokens[i], len) == 0) {
                /* llama.cpp asserts on this (id_to_token.size() == token_to_id.size()) */
                st = kvr_error_set(err, KVR_ERR_FORMAT, "tokenizer: token %d duplicates token %d ('%.40s')",
                                   (int)i, (int)other, tokens[i]);
                goto fail;
            }
        }
    }

    /* special tokens: control, unknown and user-defined, longest first (ties: lower id) */
    {
        int64_t *keys = malloc((size_t)n * sizeof(int64_t));
        if (!keys) {
            st = kvr_error_set(err, KVR_ERR_NOMEM, "tokenizer: out of memory");
            goto fail;
        }
        int32_t ns = 0;
        for (int32_t i = 0; i < n; i++) {
            int32_t ty = t->tok_type[i];
            if ((ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_UNKNOWN || ty == TOK_TYPE_USER_DEFINED) &&
                t->tok_len[i] > 0)
                keys[ns++] = ((int64_t)t->tok_len[i] << 32) | i;
        }
        qsort(keys, (size_t)ns, sizeof(int64_t), tok_special_cmp);
        t->special = malloc((size_t)(ns ? ns : 1) * sizeof(int32_t));
        if (!t->special) {
            free(keys);
            st = kvr_error_set(err, KVR_ERR_NOMEM, "tokenizer: out of memory");
            goto fail;
        }
        for (int32_t i = 0; i < ns; i++) t->special[i] = (int32_t)(keys[i] & 0xffffffff);
        t->n_special = ns;
        free(keys);
    }
    *out = t;
    return KVR_OK;
fail:
    tokenizer_destroy(t);
    return st;
}

kvr_status tokenizer_create_bpe(const char *const *tokens, const int32_t *token_types, int32_t n,
                                const char *const *merges, int32_t n_merges, const char *pre,
                                int32_t bos, int32_t eos, kvr_tokenizer **out, kvr_error *err) {
    if (out) *out = NULL;
    if (n_merges < 0 || (n_merges > 0 && !merges))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "tokenizer: bad merges (n = %d)",
                             (int)n_merges);
    const tok_pre_kind *kind = NULL;
    if (!pre || !*pre) {
        kvr_log(KVR_LOG_WARN, "tokenizer: no pre-tokenizer type, using 'default' (as llama.cpp)");
        pre = "default";
    }
    for (size_t i = 0; i < sizeof(k_pre_names) / sizeof(k_pre_names[0]); i++)
        if (strcmp(pre, k_pre_names[i].name) == 0) kind = k_pre_names[i].kind;
    if (!kind)
        return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                             "tokenizer: tokenizer.ggml.pre = '%s' is not supported (supported: default, "
                             "gpt-2, llama3/llama-bpe, dbrx, qwen2, starcoder/refact/smollm, "
                             "falcon and their llama.cpp aliases)",
                             pre);

    kvr_tokenizer *t = NULL;
    KVR_TRY(tok_create_common(tokens, token_types, n, bos, eos, &t, err));
    kvr_status st = KVR_OK;
    t->vocab = TOK_VOCAB_BPE;
    t->kind = kind;
    t->add_bos = kind == &k_pre_llama3; /* llama.cpp's default for the llama3 family */
    snprintf(t->pre, sizeof(t->pre), "%s", pre);
    tok_init_bytes(t);

    /* merges: "left right", split at the first space after the first byte (llama.cpp) */
    t->n_merges = n_merges;
    if (n_merges > 0) {
        size_t blob = 0;
        for (int32_t i = 0; i < n_merges; i++) {
            if (!merges[i] || !merges[i][0] || !strchr(merges[i] + 1, ' ')) {
                st = kvr_error_set(err, KVR_ERR_FORMAT, "tokenizer: merge %d ('%.40s') is not 'a b'",
                                   (int)i, merges[i] ? merges[i] : "(null)");
                goto fail;
            }
            blob += strlen(merges[i]) + 1;
        }
        t->merge_blob = malloc(blob);
        t->merge_off = malloc((size_t)n_merges * sizeof(size_t));
        t->merge_len = malloc((size_t)n_merges * sizeof(uint32_t));
        t->merge_hash_mask = tok_pow2_at_least(2 * (uint64_t)n_merges) - 1;
        t->merge_hash = malloc((t->merge_hash_mask + 1) * sizeof(int32_t));
        if (!t->merge_blob || !t->merge_off || !t->merge_len || !t->merge_hash) {
            st = kvr_error_set(err, KVR_ERR_NOMEM, "tokenizer: out of memory (%d merges)", (int)n_merges);
            goto fail;
        }
        memset(t->merge_hash, 0xff, (t->merge_hash_mask + 1) * sizeof(int32_t));
        size_t off = 0;
        for (int32_t i = 0; i < n_merges; i++) {
            size_t len = strlen(merges[i]);
            memcpy(t->merge_blob + off, merges[i], len + 1);
            t->merge_off[i] = off;
            t->merge_len[i] = (uint32_t)len;
            off += len + 1;
            uint64_t h = tok_fnv1a(TOK_FNV_INIT, merges[i], len) & t->merge_hash_mask;
            for (;; h = (h + 1) & t->merge_hash_mask) {
                int32_t r = t->merge_hash[h];
                if (r < 0) {
                    t->merge_hash[h] = i;
                    break;
                }
                if (t->merge_len[r] == len && memcmp(t->merge_blob + t->merge_off[r], merges[i], len) == 0)
                    break; /* duplicate: the first (lowest) rank wins, as std::map::emplace */
            }
        }
    }

    /* regexes */
    for (int r = 0; r < TOK_MAX_REGEX && kind->regex[r]; r++) {
        char *pat = tok_rewrite_ws(kind->regex[r]);
        if (!pat) {
            st = kvr_error_set(err, KVR_ERR_NOMEM, "tokenizer: out of memory");
            goto fail;
        }
        int ecode = 0;
        PCRE2_SIZE eoff = 0;
        t->re[r] = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                                 &ecode, &eoff, NULL);
        free(pat);
        if (!t->re[r]) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ecode, msg, sizeof(msg));
            st = kvr_error_set(err, KVR_ERR_INTERNAL, "tokenizer: regex %d of '%s' at %zu: %s", r,
                               pre, (size_t)eoff, (const char *)msg);
            goto fail;
        }
        t->re_jit[r] = pcre2_jit_compile(t->re[r], PCRE2_JIT_COMPLETE) == 0;
        t->n_re = r + 1;
    }

    *out = t;
    return KVR_OK;
fail:
    tokenizer_destroy(t);
    return st;
}

kvr_status tokenizer_create_spm(const char *const *tokens, const int32_t *token_types,
                                const float *scores, int32_t n, int32_t bos, int32_t eos,
                                int32_t unk, bool add_space_prefix, kvr_tokenizer **out,
                                kvr_error *err) {
    if (out) *out = NULL;
    if (unk < -1 || unk >= n)
        return kvr_error_set(err, KVR_ERR_FORMAT, "tokenizer: unknown-token id %d outside [0, %d)",
                             (int)unk, (int)n);
    kvr_tokenizer *t = NULL;
    KVR_TRY(tok_create_common(tokens, token_types, n, bos, eos, &t, err));
    t->vocab = TOK_VOCAB_SPM;
    t->unk = unk;
    t->add_bos = true; /* llama.cpp's default for SPM vocabularies */
    t->add_space_prefix = add_space_prefix;
    snprintf(t->pre, sizeof(t->pre), "%s", "spm");
    t->scores = malloc((size_t)n * sizeof(float));
    if (!t->scores) {
        tokenizer_destroy(t);
        return kvr_error_set(err, KVR_ERR_NOMEM, "tokenizer: out of memory (%d scores)", (int)n);
    }
    for (int32_t i = 0; i < n; i++) t->scores[i] = scores ? scores[i] : 0.0f;
    /* llama_vocab::byte_to_token: "<0xXX>" (upper-case hex), else the one-byte token */
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        const char name[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        const char one = (char)b;
        int32_t id = tok_lookup(t, name, 6);
        t->byte_id[b] = id >= 0 ? id : tok_lookup(t, &one, 1);
    }
    *out = t;
    return KVR_OK;
}

void tokenizer_set_add_bos(kvr_tokenizer *t, bool add_bos) {
    if (t) t->add_bos = add_bos;
}

void tokenizer_set_special(kvr_tokenizer *t, int32_t bos, int32_t eos) {
    if (!t) return;
    t->bos = bos >= 0 && bos < t->n_vocab ? bos : -1;
    t->eos = eos >= 0 && eos < t->n_vocab ? eos : -1;
}

int32_t tokenizer_lookup(const kvr_tokenizer *t, const char *text) {
    return t && text ? tok_lookup(t, text, strlen(text)) : -1;
}

void tokenizer_destroy(kvr_tokenizer *t) {
    if (!t) return;
    free(t->chat_template);
    for (int r = 0; r < TOK_MAX_REGEX; r++) pcre2_code_free(t->re[r]);
    free(t->tok_blob);
    free(t->tok_off);
    free(t->tok_len);
    free(t->tok_type);
    free(t->tok_hash);
    free(t->merge_blob);
    free(t->merge_off);
    free(t->merge_len);
    free(t->merge_hash);
    free(t->special);
    free(t->scores);
    free(t);
}

// ----------------------------------------------------------------------------
// encoding

typedef struct tok_piece {
    size_t off, len;
} tok_piece;

typedef struct tok_sym {
    int32_t off, n, prev, next;
} tok_sym;

typedef struct tok_bigram {
    int64_t rank; /* BPE: merge rank; SPM: tok_spm_key(score) */
    int32_t left, right, left_n, right_n;
} tok_bigram;

typedef struct tok_frag {
    size_t off, len;
    int32_t id; /* >= 0: a special token; -1: raw text */
} tok_frag;

typedef struct tok_scratch {
    int32_t *out;
    size_t n_out, cap_out;
    char *canon, *subj; /* canonical text and its PCRE2-safe copy (surrogates -> U+FFFD) */
    size_t cap_canon, cap_subj;
    tok_piece *pa, *pb;
    size_t cap_pa, cap_pb;
    char *word;
    size_t cap_word;
    tok_sym *syms;
    size_t cap_syms;
    tok_bigram *heap;
    size_t n_heap, cap_heap;
    tok_frag *fa, *fb;
    size_t cap_fa, cap_fb;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;
} tok_scratch;

static void tok_scratch_free(tok_scratch *s) {
    free(s->out);
    free(s->canon);
    free(s->subj);
    free(s->pa);
    free(s->pb);
    free(s->word);
    free(s->syms);
    free(s->heap);
    free(s->fa);
    free(s->fb);
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mctx);
    pcre2_jit_stack_free(s->jit_stack);
}

static kvr_status tok_push(tok_scratch *s, int32_t id, kvr_error *err) {
    KVR_TRY(tok_reserve((void **)&s->out, &s->cap_out, s->n_out + 1, sizeof(int32_t), err));
    s->out[s->n_out++] = id;
    return KVR_OK;
}

static bool tok_bigram_before(const tok_bigram *a, const tok_bigram *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static kvr_status tok_heap_push(tok_scratch *s, tok_bigram b, kvr_error *err) {
    KVR_TRY(tok_reserve((void **)&s->heap, &s->cap_heap, s->n_heap + 1, sizeof(tok_bigram), err));
    size_t i = s->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!tok_bigram_before(&b, &s->heap[p])) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = b;
    return KVR_OK;
}

static tok_bigram tok_heap_pop(tok_scratch *s) {
    tok_bigram top = s->heap[0];
    tok_bigram last = s->heap[--s->n_heap];
    size_t i = 0, n = s->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && tok_bigram_before(&s->heap[c + 1], &s->heap[c])) c++;
        if (!tok_bigram_before(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n > 0) s->heap[i] = last;
    return top;
}

static kvr_status tok_add_bigram(const kvr_tokenizer *t, tok_scratch *s, int32_t left,
                                 int32_t right, kvr_error *err) {
    if (left < 0 || right < 0) return KVR_OK;
    const tok_sym *l = &s->syms[left], *r = &s->syms[right];
    int32_t rank = tok_merge_rank(t, s->word + l->off, (size_t)l->n, s->word + r->off, (size_t)r->n);
    if (rank < 0) return KVR_OK;
    tok_bigram b = {rank, left, right, l->n, r->n};
    return tok_heap_push(s, b, err);
}

/* Queue the bigram of symbols left and right (if the vocabulary merges them; -1: none). */
typedef kvr_status (*tok_bigram_fn)(const kvr_tokenizer *t, tok_scratch *s, int32_t left,
                                    int32_t right, kvr_error *err);

/* Split s->word[0..wn) into UTF-8 characters (s->syms, *n_sym of them) and merge neighbours
 * while add_bigram queues a merge, best first (BPE: merge rank; SPM: score); merged-away
 * symbols are left with n == 0. */
static kvr_status tok_merge_symbols(const kvr_tokenizer *t, tok_scratch *s, int32_t wn,
                                    tok_bigram_fn add_bigram, int32_t *n_sym, kvr_error *err) {
    *n_sym = 0;
    KVR_TRY(tok_reserve((void **)&s->syms, &s->cap_syms, (size_t)wn, sizeof(tok_sym), err));
    int32_t ns = 0;
    for (int32_t off = 0; off < wn;) {
        int32_t clen = (int32_t)tok_utf8_len((unsigned char)s->word[off]);
        if (clen > wn - off) clen = wn - off;
        tok_sym sym = {off, clen, ns - 1, off + clen == wn ? -1 : ns + 1};
        s->syms[ns++] = sym;
        off += clen;
    }
    *n_sym = ns;
    s->n_heap = 0;
    for (int32_t i = 1; i < ns; i++) KVR_TRY(add_bigram(t, s, i - 1, i, err));
    while (s->n_heap > 0) {
        tok_bigram b = tok_heap_pop(s);
        tok_sym *l = &s->syms[b.left], *r = &s->syms[b.right];
        /* outdated (llama.cpp compares the texts; sizes are equivalent: a symbol only grows by
         * absorbing its right neighbour, which then has n == 0) */
        if (l->n == 0 || r->n == 0 || l->n != b.left_n || r->n != b.right_n) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s->syms[r->next].prev = b.left;
        KVR_TRY(add_bigram(t, s, l->prev, b.left, err));
        KVR_TRY(add_bigram(t, s, b.left, s->syms[b.left].next, err));
    }
    return KVR_OK;
}

/* BPE one byte-encoded word (s->word[0..wn)) and append its ids. */
static kvr_status tok_bpe_word(const kvr_tokenizer *t, tok_scratch *s, int32_t wn, kvr_error *err) {
    if (wn == 0) return KVR_OK;
    if (t->kind->ignore_merges) {
        int32_t id = tok_lookup(t, s->word, (size_t)wn);
        if (id >= 0) return tok_push(s, id, err);
    }
    int32_t n_sym;
    KVR_TRY(tok_merge_symbols(t, s, wn, tok_add_bigram, &n_sym, err));
    for (int32_t i = 0; i < n_sym; i++) {
        const tok_sym *sym = &s->syms[i];
        if (sym->n == 0) continue;
        int32_t id = tok_lookup(t, s->word + sym->off, (size_t)sym->n);
        if (id >= 0) {
            KVR_TRY(tok_push(s, id, err));
            continue;
        }
        /* llama.cpp's fallback: look each byte of the symbol up as a one-byte token */
        for (int32_t k = 0; k < sym->n; k++) {
            int32_t bid = tok_lookup(t, s->word + sym->off + k, 1);
            if (bid >= 0) KVR_TRY(tok_push(s, bid, err));
        }
    }
    return KVR_OK;
}

/* Order-preserving key of an SPM score: the heap pops the lowest key, llama.cpp's queue the
 * highest score, so the key is the complement of the float's sortable bit pattern. */
static int64_t tok_spm_key(float score) {
    if (score == 0.0f) score = 0.0f; /* -0 and +0 tie, as in a float comparison */
    uint32_t u;
    memcpy(&u, &score, sizeof u);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return (int64_t)(uint32_t)~u;
}

static kvr_status tok_spm_add_bigram(const kvr_tokenizer *t, tok_scratch *s, int32_t left,
                                     int32_t right, kvr_error *err) {
    if (left < 0 || right < 0) return KVR_OK;
    const tok_sym *l = &s->syms[left], *r = &s->syms[right];
    int32_t id = tok_lookup(t, s->word + l->off, (size_t)(l->n + r->n));
    if (id < 0) return KVR_OK;
    tok_bigram b = {tok_spm_key(t->scores[id]), left, right, l->n, r->n};
    return tok_heap_push(s, b, err);
}

/* SentencePiece BPE of one raw fragment (llm_tokenizer_spm_session::tokenize after
 * llama_escape_whitespace); prefix: add the leading space. */
static kvr_status tok_spm_text(const kvr_tokenizer *t, tok_scratch *s, const char *raw, size_t n,
                               bool prefix, kvr_error *err) {
    KVR_TRY(tok_reserve((void **)&s->word, &s->cap_word, 3 * n + 4, 1, err));
    size_t wn = 0;
    if (prefix) {
        memcpy(s->word, "\xe2\x96\x81", 3);
        wn = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (raw[i] == ' ') {
            memcpy(s->word + wn, "\xe2\x96\x81", 3);
            wn += 3;
        } else {
            s->word[wn++] = raw[i];
        }
    }
    if (wn == 0) return KVR_OK;
    if (wn > INT32_MAX / 2)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "tokenizer: a %zu-byte fragment", wn);
    int32_t n_sym;
    KVR_TRY(tok_merge_symbols(t, s, (int32_t)wn, tok_spm_add_bigram, &n_sym, err));
    for (int32_t i = 0; i < n_sym; i++) {
        const tok_sym *sym = &s->syms[i];
        if (sym->n == 0) continue;
        int32_t id = tok_lookup(t, s->word + sym->off, (size_t)sym->n);
        if (id >= 0) {
            KVR_TRY(tok_push(s, id, err));
            continue;
        }
        /* resegment: a symbol that is no token is a single character; emit its bytes */
        for (int32_t k = 0; k < sym->n; k++) {
            unsigned char byte = (unsigned char)s->word[sym->off + k];
            int32_t bid = t->byte_id[byte] >= 0 ? t->byte_id[byte] : t->unk;
            if (bid < 0)
                return kvr_error_set(err, KVR_ERR_FORMAT,
                                     "tokenizer: byte 0x%02X has no <0x%02X> token and the "
                                     "vocabulary no unknown token",
                                     byte, byte);
            KVR_TRY(tok_push(s, bid, err));
        }
    }
    return KVR_OK;
}

/* Split every piece in in[0..n_in) by regex r into matches and gaps, into s->pb. */
static kvr_status tok_regex_split(const kvr_tokenizer *t, tok_scratch *s, int r,
                                  const tok_piece *in, size_t n_in, size_t *n_out, kvr_error *err) {
    size_t no = 0;
    for (size_t p = 0; p < n_in; p++) {
        PCRE2_SPTR subj = (PCRE2_SPTR)(s->subj + in[p].off);
        size_t len = in[p].len, pos = 0, last = 0;
        while (pos < len) {
            int rc = pcre2_match(t->re[r], subj, len, pos, PCRE2_NO_UTF_CHECK, s->md, s->mctx);
            if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
                rc = pcre2_match(t->re[r], subj, len, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, s->md,
                                 s->mctx);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) {
                PCRE2_UCHAR msg[160];
                pcre2_get_error_message(rc, msg, sizeof(msg));
                return kvr_error_set(err, KVR_ERR_INTERNAL,
                                     "tokenizer: pre-tokenizer regex %d failed on a %zu-byte piece: %s",
                                     r, len, (const char *)msg);
            }
            const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
            size_t ms = ov[0], me = ov[1];
            if (me <= ms) { /* empty match: step one character, keep it in the gap */
                pos = ms + tok_utf8_len(subj[ms]);
                continue;
            }
            /* two pieces at most per match; capacity was reserved by the caller */
            if (ms > last) s->pb[no++] = (tok_piece){in[p].off + last, ms - last};
            s->pb[no++] = (tok_piece){in[p].off + ms, me - ms};
            last = pos = me;
        }
        if (last < len) s->pb[no++] = (tok_piece){in[p].off + last, len - last};
    }
    *n_out = no;
    return KVR_OK;
}

/* Encode one raw-text fragment (no special tokens in it). */
static kvr_status tok_encode_text(const kvr_tokenizer *t, tok_scratch *s, const char *raw,
                                  size_t n, kvr_error *err) {
    if (n == 0) return KVR_OK;
    /* 1. canonical text, as llama.cpp's unicode_cpts_from_utf8 + unicode_cpt_to_utf8 */
    KVR_TRY(tok_reserve((void **)&s->canon, &s->cap_canon, 3 * n + 4, 1, err));
    KVR_TRY(tok_reserve((void **)&s->subj, &s->cap_subj, 3 * n + 4, 1, err));
    size_t cn = 0, n_cpts = 0;
    const unsigned char *u = (const unsigned char *)raw;
    for (size_t i = 0; i < n;) {
        uint32_t cpt;
        size_t k = tok_utf8_decode(u + i, n - i, &cpt);
        if (k == 0) {
            cpt = 0xfffd;
            k = 1;
        }
        i += k;
        size_t w = tok_utf8_encode(cpt, s->canon + cn);
        if (cpt >= 0xd800 && cpt <= 0xdfff) /* PCRE2 rejects surrogates; U+FFFD is 3 bytes too */
            memcpy(s->subj + cn, "\xef\xbf\xbd", 3);
        else
            memcpy(s->subj + cn, s->canon + cn, w);
        cn += w;
        n_cpts++;
    }
    /* 2. pre-tokenize: every regex splits every piece; pieces never exceed code points */
    KVR_TRY(tok_reserve((void **)&s->pa, &s->cap_pa, n_cpts + 1, sizeof(tok_piece), err));
    KVR_TRY(tok_reserve((void **)&s->pb, &s->cap_pb, n_cpts + 1, sizeof(tok_piece), err));
    s->pa[0] = (tok_piece){0, cn};
    size_t n_pieces = 1;
    for (int r = 0; r < t->n_re; r++) {
        size_t n_new = 0;
        KVR_TRY(tok_regex_split(t, s, r, s->pa, n_pieces, &n_new, err));
        tok_piece *tmp = s->pa;
        s->pa = s->pb;
        s->pb = tmp;
        size_t tc = s->cap_pa;
        s->cap_pa = s->cap_pb;
        s->cap_pb = tc;
        n_pieces = n_new;
    }
    /* 3. byte-encode and BPE each piece */
    for (size_t p = 0; p < n_pieces; p++) {
        const unsigned char *src = (const unsigned char *)s->canon + s->pa[p].off;
        size_t len = s->pa[p].len;
        KVR_TRY(tok_reserve((void **)&s->word, &s->cap_word, 2 * len + 1, 1, err));
        size_t wn = 0;
        for (size_t i = 0; i < len; i++) {
            memcpy(s->word + wn, t->byte_enc[src[i]], t->byte_enc_len[src[i]]);
            wn += t->byte_enc_len[src[i]];
        }
        KVR_TRY(tok_bpe_word(t, s, (int32_t)wn, err));
    }
    return KVR_OK;
}

/* Split the fragments in s->fa on every occurrence of special token id (tokenizer_st_partition). */
static kvr_status tok_partition_one(const kvr_tokenizer *t, tok_scratch *s, const char *text,
                                    size_t *n_frag, int32_t id, kvr_error *err) {
    const char *tok = t->tok_blob + t->tok_off[id];
    size_t tl = t->tok_len[id];
    size_t nf = *n_frag, no = 0;
    for (size_t f = 0; f < nf; f++) {
        tok_frag fr = s->fa[f];
        if (fr.id >= 0 || fr.len < tl) {
            KVR_TRY(tok_reserve((void **)&s->fb, &s->cap_fb, no + 1, sizeof(tok_frag), err));
            s->fb[no++] = fr;
            continue;
        }
        size_t pos = fr.off, end = fr.off + fr.len;
        while (pos + tl <= end) {
            const char *hit = NULL;
            for (const char *c = text + pos; (size_t)(c - text) + tl <= end;) {
                c = memchr(c, tok[0], end - tl + 1 - (size_t)(c - text));
                if (!c) break;
                if (memcmp(c, tok, tl) == 0) {
                    hit = c;
                    break;
                }
                c++;
            }
            if (!hit) break;
            size_t m = (size_t)(hit - text);
            KVR_TRY(tok_reserve((void **)&s->fb, &s->cap_fb, no + 2, sizeof(tok_frag), err));
            if (m > pos) s->fb[no++] = (tok_frag){pos, m - pos, -1};
            s->fb[no++] = (tok_frag){m, tl, id};
            pos = m + tl;
        }
        if (pos < end) {
            KVR_TRY(tok_reserve((void **)&s->fb, &s->cap_fb, no + 1, sizeof(tok_frag), err));
            s->fb[no++] = (tok_frag){pos, end - pos, -1};
        }
    }
    tok_frag *tmp = s->fa;
    s->fa = s->fb;
    s->fb = tmp;
    size_t tc = s->cap_fa;
    s->cap_fa = s->cap_fb;
    s->cap_fb = tc;
    *n_frag = no;
    return KVR_OK;
}

static kvr_status tok_encode_all(const kvr_tokenizer *t, tok_scratch *s, const char *text,
                                 size_t len, bool add_bos, bool parse_special, kvr_error *err) {
    s->md = pcre2_match_data_create(4, NULL);
    s->mctx = pcre2_match_context_create(NULL);
    if (!s->md || !s->mctx) return kvr_error_set(err, KVR_ERR_NOMEM, "tokenizer: out of memory");
    pcre2_set_match_limit(s->mctx, UINT32_MAX);
    bool any_jit = false;
    for (int r = 0; r < t->n_re; r++) any_jit |= t->re_jit[r];
    if (any_jit) {
        s->jit_stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, NULL);
        if (s->jit_stack) pcre2_jit_stack_assign(s->mctx, NULL, s->jit_stack);
    }

    if (add_bos && t->bos >= 0) KVR_TRY(tok_push(s, t->bos, err));
    if (len == 0) return KVR_OK;

    KVR_TRY(tok_reserve((void **)&s->fa, &s->cap_fa, 1, sizeof(tok_frag), err));
    s->fa[0] = (tok_frag){0, len, -1};
    size_t n_frag = 1;
    for (int32_t i = 0; i < t->n_special; i++) {
        int32_t id = t->special[i];
        int32_t ty = t->tok_type[id];
        if (!parse_special && (ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_UNKNOWN)) continue;
        KVR_TRY(tok_partition_one(t, s, text, &n_frag, id, err));
    }
    bool prev_special = true; /* SPM: the first fragment gets the space prefix */
    for (size_t f = 0; f < n_frag; f++) {
        if (s->fa[f].id >= 0) {
            KVR_TRY(tok_push(s, s->fa[f].id, err));
            prev_special = true;
        } else if (t->vocab == TOK_VOCAB_SPM) {
            KVR_TRY(tok_spm_text(t, s, text + s->fa[f].off, s->fa[f].len,
                                 t->add_space_prefix && prev_special, err));
            prev_special = false;
        } else {
            KVR_TRY(tok_encode_text(t, s, text + s->fa[f].off, s->fa[f].len, err));
        }
    }
    return KVR_OK;
}

kvr_status kvr_tokenizer_encode(const kvr_tokenizer *t, const char *text, size_t len, bool add_bos,
                                bool parse_special, int32_t **ids, int64_t *n_ids, kvr_error *err) {
    if (!ids || !n_ids)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "tokenizer encode: ids/n_ids is NULL");
    *ids = NULL;
    *n_ids = 0;
    if (!t) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "tokenizer encode: tokenizer is NULL");
    if (!text && len > 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "tokenizer encode: text is NULL");
    if (len > TOK_MAX_TEXT_BYTES)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "tokenizer encode: %zu bytes of text (limit %zu)", len,
                             (size_t)TOK_MAX_TEXT_BYTES);
    tok_scratch s;
    memset(&s, 0, sizeof(s));
    kvr_status st = tok_encode_all(t, &s, text, len, add_bos, parse_special, err);
    if (st == KVR_OK && !s.out) st = tok_reserve((void **)&s.out, &s.cap_out, 1, sizeof(int32_t), err);
    if (st != KVR_OK) {
        tok_scratch_free(&s);
        return st;
    }
    *ids = s.out;
    *n_ids = (int64_t)s.n_out;
    s.out = NULL;
    tok_scratch_free(&s);
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// decoding

static void tok_emit(char *buf, size_t len, size_t *pos, const void *p, size_t n) {
    if (len > 0 && *pos < len - 1) {
        size_t room = len - 1 - *pos;
        memcpy(buf + *pos, p, n < room ? n : room);
    }
    *pos += n;
}

int64_t kvr_tokenizer_decode_token(const kvr_tokenizer *t, int32_t id, char *buf, size_t len) {
    if (!t || id < 0 || id >= t->n_vocab || (!buf && len > 0)) return -1;
    const char *text = t->tok_blob + t->tok_off[id];
    size_t tl = t->tok_len[id], pos = 0;
    switch (t->tok_type[id]) {
    case TOK_TYPE_UNKNOWN:
    case TOK_TYPE_CONTROL:
    case TOK_TYPE_USER_DEFINED: /* as llama_token_to_piece(..., special = true) */
        tok_emit(buf, len, &pos, text, tl);
        break;
    case TOK_TYPE_NORMAL:
        if (t->vocab == TOK_VOCAB_SPM) { /* llama_unescape_whitespace: U+2581 -> ' ' */
            for (size_t i = 0; i < tl;) {
                if (tl - i >= 3 && memcmp(text + i, "\xe2\x96\x81", 3) == 0) {
                    tok_emit(buf, len, &pos, " ", 1);
                    i += 3;
                } else {
                    tok_emit(buf, len, &pos, text + i, 1);
                    i++;
                }
            }
            break;
        }
        { /* llama_decode_text: undo bytes_to_unicode */
            const unsigned char *u = (const unsigned char *)text;
            for (size_t i = 0; i < tl;) {
                uint32_t cpt;
                size_t k = tok_utf8_decode(u + i, tl - i, &cpt);
                if (k == 0) {
                    cpt = 0xfffd;
                    k = 1;
                }
                i += k;
                if (cpt < TOK_N_BYTE_CPTS && t->byte_dec[cpt] >= 0) {
                    char b = (char)t->byte_dec[cpt];
                    tok_emit(buf, len, &pos, &b, 1);
                } else { /* llama.cpp writes this marker for characters outside the byte alphabet */
                    char enc[4], hex[12];
                    size_t w = tok_utf8_encode(cpt, enc);
                    tok_emit(buf, len, &pos, "[UNK_BYTE_0x", 12);
                    for (size_t j = 0; j < w; j++) {
                        snprintf(hex, sizeof(hex), "%02x", (unsigned)(unsigned char)enc[j]);
                        tok_emit(buf, len, &pos, hex, 2);
                    }
                    tok_emit(buf, len, &pos, text, tl);
                    tok_emit(buf, len, &pos, "]", 1);
                }
            }
        }
        break;
    case TOK_TYPE_BYTE: /* "<0xXX>" */
        if (tl >= 6) {
            char hx[3] = {text[3], text[4], 0};
            char b = (char)strtol(hx, NULL, 16);
            tok_emit(buf, len, &pos, &b, 1);
        }
        break;
    default: /* unused / undefined: empty, as llama.cpp */
        break;
    }
    if (len > 0) buf[pos < len - 1 ? pos : len - 1] = '\0';
    return (int64_t)pos;
}

int32_t kvr_tokenizer_n_vocab(const kvr_tokenizer *t) { return t ? t->n_vocab : 0; }
int32_t kvr_tokenizer_bos(const kvr_tokenizer *t) { return t ? t->bos : -1; }
int32_t kvr_tokenizer_eos(const kvr_tokenizer *t) { return t ? t->eos : -1; }
bool kvr_tokenizer_wants_bos(const kvr_tokenizer *t) { return t && t->add_bos && t->bos >= 0; }
const char *kvr_tokenizer_type(const kvr_tokenizer *t) {
    return !t ? "" : t->vocab == TOK_VOCAB_SPM ? "spm" : "bpe";
}

const char *kvr_tokenizer_chat_template(const kvr_tokenizer *t) {
    return t ? t->chat_template : NULL;
}

kvr_status tokenizer_set_chat_template(kvr_tokenizer *t, const char *s, size_t n,
                                       kvr_error *err) {
    char *c = malloc(n + 1);
    if (!c) return kvr_error_set(err, KVR_ERR_NOMEM, "tokenizer: out of memory for the chat template");
    memcpy(c, s, n);
    c[n] = 0;
    free(t->chat_template);
    t->chat_template = c;
    return KVR_OK;
}

int32_t kvr_tokenizer_eog(const kvr_tokenizer *t, int32_t *ids, int32_t cap) {
    /* llama.cpp's end-of-generation texts (llama-vocab.cpp): chat templates' end-of-turn
     * tokens and end-of-text markers */
    static const char *const names[] = {"<|eot_id|>", "<|im_end|>",  "<|end|>",
                                        "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
                                        "<EOT>", "_<EOT>", "<|end_of_text|>"};
    int32_t n = 0;
    if (!t) return 0;
    if (t->eos >= 0 && n < cap) ids[n++] = t->eos;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const int32_t id = tok_lookup(t, names[i], strlen(names[i]));
        bool seen = id < 0;
        for (int32_t j = 0; j < n && !seen; j++) seen = ids[j] == id;
        if (!seen && n < cap) ids[n++] = id;
    }
    return n;
}
