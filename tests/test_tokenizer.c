/* test_tokenizer.c -- byte-level BPE tokenizer: byte mapping, merge ranking, pre-tokenizer
 * regexes (digits, contractions, whitespace runs, unicode, emoji), special tokens, decode,
 * invalid UTF-8, errors and speed, on a small hand-made vocabulary; then the real SmolLM2 vocab
 * against ids produced by llama.cpp (skipped with a note when models/ lacks the GGUF).
 * The full cross-check against llama.cpp is tests/ref/reference_llamacpp.py. */
#include <stdlib.h>

#include "kvr_test.h"
#include "runtime_internal.h"

#ifndef KVR_SOURCE_DIR
#define KVR_SOURCE_DIR "."
#endif

// ----------------------------------------------------------------------------
// the hand-made vocabulary

/* ids 0..4: special; 5..260: the 256 byte tokens in byte order; 261..: merged tokens */
#define ID_BYTE(b) (5 + (int32_t)(unsigned char)(b))
enum { ID_EOT = 0, ID_IM_START = 1, ID_IM_END = 2, ID_TOOL = 3, ID_IM = 4 };
enum { ID_GT = 261, ID_HE, ID_GTHE, ID_AB, ID_BC, ID_AA, ID_G1, ID_12, ID_APOS_S, ID_GG, ID_EACUTE };

static const char *const k_merges[] = {
    "\xc4\xa0 t",     /* Ġ t   -> Ġt   261 */
    "h e",            /* he          262 */
    "\xc4\xa0t he",   /* Ġt he -> Ġthe 263 */
    "a b",            /* ab          264 */
    "b c",            /* bc          265 */
    "a a",            /* aa          266 */
    "\xc4\xa0 1",     /* Ġ1          267 */
    "1 2",            /* 12          268 */
    "' s",            /* 's          269 */
    "\xc4\xa0 \xc4\xa0", /* ĠĠ       270 */
    "\xc3\x83 \xc2\xa9", /* Ã © -> é (bytes C3 A9)  271 */
    "x y",            /* merges, but "xy" is not a token: byte fallback */
};
#define N_MERGES ((int32_t)(sizeof(k_merges) / sizeof(k_merges[0])))

typedef struct vocab {
    char *tok[300];
    int32_t type[300];
    int32_t n;
} vocab;

/* GPT-2 bytes_to_unicode, written out independently of the tokenizer. */
static void byte_char(int b, char out[3]) {
    int cp = b;
    if (!((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae)) {
        int n = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= 0x21 && x <= 0x7e) || (x >= 0xa1 && x <= 0xac) || x >= 0xae)) n++;
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        out[2] = 0;
    }
}

static void vocab_add(vocab *v, const char *s, int32_t type) {
    v->tok[v->n] = malloc(strlen(s) + 1);
    strcpy(v->tok[v->n], s);
    v->type[v->n++] = type;
}

static void vocab_build(vocab *v) {
    v->n = 0;
    vocab_add(v, "<|endoftext|>", 3);
    vocab_add(v, "<|im_start|>", 3);
    vocab_add(v, "<|im_end|>", 3);
    vocab_add(v, "<tool>", 4);
    vocab_add(v, "<|im", 3);
    for (int b = 0; b < 256; b++) {
        char c[3];
        byte_char(b, c);
        vocab_add(v, c, 1);
    }
    static const char *const merged[] = {"\xc4\xa0t", "he", "\xc4\xa0the", "ab", "bc", "aa",
                                         ("\xc4\xa0" "1"), "12", "'s", "\xc4\xa0\xc4\xa0",
                                         "\xc3\x83\xc2\xa9"};
    for (size_t i = 0; i < sizeof(merged) / sizeof(merged[0]); i++) vocab_add(v, merged[i], 1);
}

static void vocab_free(vocab *v) {
    for (int32_t i = 0; i < v->n; i++) free(v->tok[i]);
}

static kvr_tokenizer *make_tok(const char *pre, const char *const *merges, int32_t n_merges) {
    vocab v;
    vocab_build(&v);
    kvr_tokenizer *t = NULL;
    kvr_error e;
    KVR_CHECK_OK(tokenizer_create_bpe((const char *const *)v.tok, v.type, v.n, merges, n_merges,
                                      pre, ID_EOT, ID_IM_END, &t, &e),
                 &e);
    vocab_free(&v);
    return t;
}

/* Encode and compare with the expected ids; prints both on mismatch. */
static void expect_ids(const kvr_tokenizer *t, const char *text, size_t len, bool bos, bool special,
                       const int32_t *want, int64_t n_want, int line) {
    int32_t *ids = NULL;
    int64_t n = -1;
    kvr_error e;
    kvr_status s = kvr_tokenizer_encode(t, text, len, bos, special, &ids, &n, &e);
    bool ok = s == KVR_OK && n == n_want && (n == 0 || memcmp(ids, want, (size_t)n * 4) == 0);
    kvr_test_checks++;
    if (!ok) {
        kvr_test_fails++;
        fprintf(stderr, "FAIL %s:%d encode(\"%.40s\") status %s:\n  got ", __FILE__, line, text,
                kvr_status_str(s));
        for (int64_t i = 0; s == KVR_OK && i < n; i++) fprintf(stderr, "%d ", ids[i]);
        fprintf(stderr, "\n  want ");
        for (int64_t i = 0; i < n_want; i++) fprintf(stderr, "%d ", want[i]);
        fprintf(stderr, "\n");
    }
    free(ids);
}
#define EXPECT(t, text, special, ...)                                                              \
    do {                                                                                           \
        const int32_t want_[] = {__VA_ARGS__};                                                     \
        expect_ids(t, text, strlen(text), false, special, want_,                                   \
                   (int64_t)(sizeof(want_) / sizeof(want_[0])), __LINE__);                         \
    } while (0)

// ----------------------------------------------------------------------------
// cases on the hand-made vocabulary

static void test_byte_mapping(void) {
    kvr_tokenizer *t = make_tok("gpt2", k_merges, N_MERGES);
    if (!t) return;
    KVR_CHECK_EQ_INT(kvr_tokenizer_n_vocab(t), 272);
    KVR_CHECK_EQ_INT(kvr_tokenizer_bos(t), ID_EOT);
    KVR_CHECK_EQ_INT(kvr_tokenizer_eos(t), ID_IM_END);
    /* every byte that is a whole UTF-8 character on its own maps to its byte token */
    for (int b = 1; b < 0x80; b++) {
        char s[2] = {(char)b, 0};
        EXPECT(t, s, false, ID_BYTE(b));
    }
    EXPECT(t, " ", false, ID_BYTE(' '));
    EXPECT(t, "\n", false, ID_BYTE('\n'));
    /* NUL inside the text is a byte like any other */
    expect_ids(t, "a\0b", 3, false, false, (const int32_t[]){ID_BYTE('a'), ID_BYTE(0), ID_BYTE('b')},
               3, __LINE__);
    /* decode undoes the mapping for all 256 byte tokens */
    for (int b = 0; b < 256; b++) {
        char buf[8];
        int64_t k = kvr_tokenizer_decode_token(t, ID_BYTE(b), buf, sizeof buf);
        KVR_CHECK_EQ_INT(k, 1);
        KVR_CHECK_EQ_INT((unsigned char)buf[0], b);
    }
    tokenizer_destroy(t);
}

static void test_merge_ranking(void) {
    kvr_tokenizer *t = make_tok("gpt2", k_merges, N_MERGES);
    if (!t) return;
    EXPECT(t, "abc", false, ID_AB, ID_BYTE('c'));  /* "a b" (rank 3) beats "b c" (rank 4) */
    EXPECT(t, "aaa", false, ID_AA, ID_BYTE('a'));  /* equal ranks: leftmost first */
    EXPECT(t, "aaaa", false, ID_AA, ID_AA);
    EXPECT(t, " the", false, ID_GTHE);             /* two-level merge */
    EXPECT(t, "the", false, ID_BYTE('t'), ID_HE);
    EXPECT(t, " then", false, ID_GTHE, ID_BYTE('n'));
    EXPECT(t, "xy", false, ID_BYTE('x'), ID_BYTE('y')); /* merged symbol not in vocab: bytes */
    tokenizer_destroy(t);

    /* the same merges with "b c" ranked first */
    const char *swapped[N_MERGES];
    memcpy(swapped, k_merges, sizeof(swapped));
    swapped[3] = "b c";
    swapped[4] = "a b";
    t = make_tok("gpt2", swapped, N_MERGES);
    if (!t) return;
    EXPECT(t, "abc", false, ID_BYTE('a'), ID_BC);
    tokenizer_destroy(t);
}

static void test_pretokenizer_digits(void) {
    kvr_tokenizer *gpt2 = make_tok("gpt2", k_merges, N_MERGES);
    kvr_tokenizer *smol = make_tok("smollm", k_merges, N_MERGES);
    kvr_tokenizer *l3 = make_tok("llama3", k_merges, N_MERGES);
    kvr_tokenizer *qw = make_tok("qwen2", k_merges, N_MERGES);
    kvr_tokenizer *def = make_tok("default", k_merges, N_MERGES);
    if (!gpt2 || !smol || !l3 || !qw || !def) goto done;
    /* gpt2: " 12" is one piece; "Ġ 1" (rank 6) merges before "1 2" (rank 7) */
    EXPECT(gpt2, " 12", false, ID_G1, ID_BYTE('2'));
    /* smollm: \p{N} isolates every digit first, so the space stays alone */
    EXPECT(smol, " 12", false, ID_BYTE(' '), ID_BYTE('1'), ID_BYTE('2'));
    EXPECT(smol, "12", false, ID_BYTE('1'), ID_BYTE('2'));
    /* llama3: \p{N}{1,3} keeps "12" together, the space is its own piece */
    EXPECT(l3, " 12", false, ID_BYTE(' '), ID_12);
    EXPECT(l3, "1212", false, ID_12, ID_BYTE('1'), ID_BYTE('2')); /* "121" + "2" */
    /* qwen2: \p{N} one digit at a time */
    EXPECT(qw, " 12", false, ID_BYTE(' '), ID_BYTE('1'), ID_BYTE('2'));
    /* default: the gpt2 pass keeps " 12", then \p{N}+ splits it into " " and "12" */
    EXPECT(def, " 12", false, ID_BYTE(' '), ID_12);
    /* unicode digits are \p{N}: Arabic-Indic one (U+0661) isolated by smollm */
    EXPECT(smol, "a\xd9\xa1", false, ID_BYTE('a'), ID_BYTE(0xd9), ID_BYTE(0xa1));
done:
    tokenizer_destroy(gpt2);
    tokenizer_destroy(smol);
    tokenizer_destroy(l3);
    tokenizer_destroy(qw);
    tokenizer_destroy(def);
}

static void test_pretokenizer_words(void) {
    kvr_tokenizer *t = make_tok("smollm", k_merges, N_MERGES);
    kvr_tokenizer *l3 = make_tok("llama3", k_merges, N_MERGES);
    if (!t || !l3) goto done;
    /* contractions: "'s" is its own piece and merges */
    EXPECT(t, "it's", false, ID_BYTE('i'), ID_BYTE('t'), ID_APOS_S);
    /* gpt2-style 's is lower-case only: "'S" is punctuation + letter */
    EXPECT(t, "IT'S", false, ID_BYTE('I'), ID_BYTE('T'), ID_BYTE('\''), ID_BYTE('S'));
    /* whitespace runs: \s+(?!\S) leaves the last space for the next word */
    EXPECT(t, "a   b", false, ID_BYTE('a'), ID_GG, ID_BYTE(' '), ID_BYTE('b'));
    EXPECT(t, "a  ", false, ID_BYTE('a'), ID_GG);                 /* trailing run stays whole */
    EXPECT(t, "  the", false, ID_BYTE(' '), ID_GTHE);
    /* a tab before a word is not absorbed (only a plain space is) */
    EXPECT(t, "\tthe", false, ID_BYTE('\t'), ID_BYTE('t'), ID_HE);
    /* llama3 absorbs one non-letter before letters; case-insensitive contractions */
    EXPECT(l3, " the", false, ID_GTHE);
    EXPECT(l3, "it's", false, ID_BYTE('i'), ID_BYTE('t'), ID_APOS_S);
    /* unicode letters: é (C3 A9) is a letter, merges through the byte alphabet */
    EXPECT(t, "\xc3\xa9", false, ID_EACUTE);
    EXPECT(t, " \xc3\xa9", false, ID_BYTE(' '), ID_EACUTE);
    /* CJK letter and emoji: byte tokens */
    EXPECT(t, "\xe6\x97\xa5", false, ID_BYTE(0xe6), ID_BYTE(0x97), ID_BYTE(0xa5));
    EXPECT(t, "\xf0\x9f\x98\x80", false, ID_BYTE(0xf0), ID_BYTE(0x9f), ID_BYTE(0x98), ID_BYTE(0x80));
    /* U+3000 (ideographic space) is whitespace for llama.cpp: the run keeps its last char */
    EXPECT(t, "\xe3\x80\x80\xe3\x80\x80x", false, ID_BYTE(0xe3), ID_BYTE(0x80), ID_BYTE(0x80),
           ID_BYTE(0xe3), ID_BYTE(0x80), ID_BYTE(0x80), ID_BYTE('x'));
done:
    tokenizer_destroy(t);
    tokenizer_destroy(l3);
}

static void test_special_tokens(void) {
    kvr_tokenizer *t = make_tok("smollm", k_merges, N_MERGES);
    if (!t) return;
    EXPECT(t, "<|im_start|>user<|im_end|>", true, ID_IM_START, ID_BYTE('u'), ID_BYTE('s'),
           ID_BYTE('e'), ID_BYTE('r'), ID_IM_END);
    EXPECT(t, "<|im<|im_start|>", true, ID_IM, ID_IM_START); /* longest first, then the rest */
    EXPECT(t, "<|im_end|><|im_end|>", true, ID_IM_END, ID_IM_END);
    /* without parse_special control tokens are plain text; user-defined ones still split */
    EXPECT(t, "<|im", false, ID_BYTE('<'), ID_BYTE('|'), ID_BYTE('i'), ID_BYTE('m'));
    EXPECT(t, "a<tool>b", false, ID_BYTE('a'), ID_TOOL, ID_BYTE('b'));
    /* BOS */
    const int32_t want[] = {ID_EOT, ID_AB};
    expect_ids(t, "ab", 2, true, false, want, 2, __LINE__);
    expect_ids(t, "", 0, true, false, want, 1, __LINE__);
    expect_ids(t, "", 0, false, false, want, 0, __LINE__);
    tokenizer_destroy(t);
}

static void test_decode(void) {
    kvr_tokenizer *t = make_tok("gpt2", k_merges, N_MERGES);
    if (!t) return;
    char buf[64];
    KVR_CHECK_EQ_INT(kvr_tokenizer_decode_token(t, ID_GTHE, buf, sizeof buf), 4);
    KVR_CHECK(strcmp(buf, " the") == 0);
    KVR_CHECK_EQ_INT(kvr_tokenizer_decode_token(t, ID_EACUTE, buf, sizeof buf), 2);
    KVR_CHECK(strcmp(buf, "\xc3\xa9") == 0);
    KVR_CHECK_EQ_INT(kvr_tokenizer_decode_token(t, ID_IM_START, buf, sizeof buf), 12);
    KVR_CHECK(strcmp(buf, "<|im_start|>") == 0);
    /* truncation: the full length is returned, len-1 bytes and a NUL are written */
    KVR_CHECK_EQ_INT(kvr_tokenizer_decode_token(t, ID_GTHE, buf, 3), 4);
    KVR_CHECK(strcmp(buf, " t") == 0);
    KVR_CHECK_EQ_INT(kvr_tokenizer_decode_token(t, ID_GTHE, NULL, 0), 4);
    KVR_CHECK_EQ_INT(kvr_tokenizer_decode_token(t, -1, buf, sizeof buf), -1);
    KVR_CHECK_EQ_INT(kvr_tokenizer_decode_token(t, 272, buf, sizeof buf), -1);
    /* round trip of some text through encode + decode */
    const char *text = "the cat's 12  a\tb \xc3\xa9\xe6\x97\xa5 \xf0\x9f\x98\x80\n";
    int32_t *ids;
    int64_t n;
    kvr_error e;
    KVR_CHECK_OK(kvr_tokenizer_encode(t, text, strlen(text), false, false, &ids, &n, &e), &e);
    char out[256] = "";
    size_t o = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t k = kvr_tokenizer_decode_token(t, ids[i], out + o, sizeof out - o);
        KVR_CHECK(k >= 0);
        if (k > 0) o += (size_t)k;
    }
    KVR_CHECK(strcmp(out, text) == 0);
    free(ids);
    tokenizer_destroy(t);
}

static void test_invalid_utf8(void) {
    kvr_tokenizer *t = make_tok("smollm", k_merges, N_MERGES);
    if (!t) return;
    /* as llama.cpp: each invalid byte becomes U+FFFD (EF BF BD) */
    EXPECT(t, "\xff", false, ID_BYTE(0xef), ID_BYTE(0xbf), ID_BYTE(0xbd));
    EXPECT(t, "a\x80", false, ID_BYTE('a'), ID_BYTE(0xef), ID_BYTE(0xbf), ID_BYTE(0xbd));
    /* overlong C0 80 decodes structurally to U+0000 and is re-encoded as one NUL byte */
    EXPECT(t, "\xc0\x80", false, ID_BYTE(0));
    /* a surrogate is kept as its three bytes */
    EXPECT(t, "\xed\xa0\x80", false, ID_BYTE(0xed), ID_BYTE(0xa0), ID_BYTE(0x80));
    /* random bytes never crash, ids stay in range */
    uint64_t s = 42;
    char buf[512];
    for (int it = 0; it < 2000; it++) {
        size_t len = 1 + (size_t)(it % 511);
        for (size_t i = 0; i < len; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            buf[i] = (char)(s >> 56);
        }
        int32_t *ids;
        int64_t n;
        kvr_error e;
        kvr_status st = kvr_tokenizer_encode(t, buf, len, false, it & 1, &ids, &n, &e);
        KVR_CHECK(st == KVR_OK);
        if (st != KVR_OK) break;
        KVR_CHECK(n > 0);
        for (int64_t i = 0; i < n; i++) KVR_CHECK(ids[i] >= 0 && ids[i] < 272);
        free(ids);
    }
    tokenizer_destroy(t);
}

static void test_errors(void) {
    vocab v;
    vocab_build(&v);
    const char *const *tok = (const char *const *)v.tok;
    kvr_tokenizer *t = (kvr_tokenizer *)&v; /* non-NULL, must be reset to NULL on failure */
    kvr_error e;
    KVR_CHECK_EQ_INT(tokenizer_create_bpe(tok, v.type, v.n, k_merges, N_MERGES, "no-such-pre", 0,
                                          2, &t, &e),
                     KVR_ERR_UNSUPPORTED);
    KVR_CHECK(t == NULL);
    KVR_CHECK(strstr(e.msg, "no-such-pre") != NULL);
    const char *bad[] = {"a b", "abc"};
    KVR_CHECK_EQ_INT(tokenizer_create_bpe(tok, v.type, v.n, bad, 2, "gpt2", 0, 2, &t, &e),
                     KVR_ERR_FORMAT);
    KVR_CHECK(strstr(e.msg, "merge 1") != NULL);
    KVR_CHECK_EQ_INT(tokenizer_create_bpe(tok, v.type, v.n, k_merges, N_MERGES, "gpt2", v.n, 2, &t, &e),
                     KVR_ERR_FORMAT);
    KVR_CHECK_EQ_INT(tokenizer_create_bpe(tok, v.type, 0, k_merges, N_MERGES, "gpt2", 0, 2, &t, &e),
                     KVR_ERR_INVALID_ARG);
    char *saved = v.tok[7];
    v.tok[7] = v.tok[6]; /* duplicate token text */
    KVR_CHECK_EQ_INT(tokenizer_create_bpe(tok, v.type, v.n, k_merges, N_MERGES, "gpt2", 0, 2, &t, &e),
                     KVR_ERR_FORMAT);
    v.tok[7] = saved;
    /* no token types: everything normal, still works; NULL pre means llama.cpp's default */
    KVR_CHECK_OK(tokenizer_create_bpe(tok, NULL, v.n, k_merges, N_MERGES, NULL, -1, -1, &t, &e), &e);
    if (t) {
        KVR_CHECK_EQ_INT(kvr_tokenizer_bos(t), -1);
        int32_t *ids = (int32_t *)&v;
        int64_t n = 5;
        KVR_CHECK_EQ_INT(kvr_tokenizer_encode(t, NULL, 3, false, false, &ids, &n, &e),
                         KVR_ERR_INVALID_ARG);
        KVR_CHECK(ids == NULL);
        KVR_CHECK_OK(kvr_tokenizer_encode(t, "ab", 2, true, true, &ids, &n, &e), &e);
        KVR_CHECK_EQ_INT(n, 1); /* no BOS, one token */
        free(ids);
        tokenizer_destroy(t);
    }
    tokenizer_destroy(NULL);
    vocab_free(&v);
}

static void test_speed_small_vocab(void) {
    kvr_tokenizer *t = make_tok("smollm", k_merges, N_MERGES);
    if (!t) return;
    /* 1 MB in one word and 1 MB of spaces: the heap-based BPE and the regexes stay linear */
    size_t len = 1 << 20;
    char *buf = malloc(len);
    memset(buf, 'a', len);
    int32_t *ids;
    int64_t n;
    kvr_error e;
    double t0 = kvr_time_us();
    KVR_CHECK_OK(kvr_tokenizer_encode(t, buf, len, false, false, &ids, &n, &e), &e);
    KVR_CHECK_EQ_INT(n, (int64_t)len / 2);
    free(ids);
    memset(buf, ' ', len);
    buf[len - 1] = 'x';
    KVR_CHECK_OK(kvr_tokenizer_encode(t, buf, len, false, false, &ids, &n, &e), &e);
    KVR_CHECK(n > 0);
    free(ids);
    double ms = (kvr_time_us() - t0) * 1e-3;
    printf("  2 MB of pathological text: %.0f ms (figure only; speed is not asserted)\n", ms);
    free(buf);
    tokenizer_destroy(t);
}

// ----------------------------------------------------------------------------
// the real SmolLM2 vocabulary (ids from llama.cpp via llama-cpp-python 0.3.36)

static kvr_model *load_real(void) {
    static char path[1024];
    const char *env = getenv("KVR_MODEL");
    snprintf(path, sizeof path, "%s", env && *env ? env
                                                  : KVR_SOURCE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("  note: %s not found, real-vocab case skipped (scripts/fetch-model)\n", path);
        KVR_CHECK(getenv("KVR_REQUIRE_MODEL") == NULL); /* CI must not skip it */
        return NULL;
    }
    fclose(f);
    kvr_model_load_params lp = kvr_model_load_params_default();
    kvr_model *m = NULL;
    kvr_error e;
    KVR_CHECK_OK(kvr_model_load_gguf(path, &lp, &m, &e), &e);
    if (m) KVR_CHECK(kvr_model_get_tokenizer(m) != NULL);
    return m;
}

static void test_real_vocab(void) {
    kvr_model *m = load_real();
    if (!m) return;
    const kvr_tokenizer *t = kvr_model_get_tokenizer(m);
    if (!t) goto done;
    KVR_CHECK_EQ_INT(kvr_tokenizer_n_vocab(t), 49152);
    KVR_CHECK_EQ_INT(kvr_tokenizer_bos(t), 1);
    KVR_CHECK_EQ_INT(kvr_tokenizer_eos(t), 2);
    EXPECT(t, "Hello world", true, 19556, 905);
    EXPECT(t, "12345 3.14", true, 33, 34, 35, 36, 37, 216, 35, 30, 33, 36);
    EXPECT(t, "I'm don't   spaces\n\n\tx", true, 57, 5248, 1326, 982, 256, 5600, 1116, 197, 104);
    EXPECT(t, "h\xc3\xa9llo \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80", true, 88, 2756,
           31394, 17097, 241, 115, 40993, 179, 120, 248, 40303, 218);
    EXPECT(t, "<|im_start|>user\nHi<|im_end|>\n", true, 1, 4093, 198, 26843, 2, 198);
    EXPECT(t, "<|im_start|>user\nHi<|im_end|>\n", false, 44, 108, 306, 79, 3738, 108, 46, 4093,
           198, 26843, 44, 108, 306, 79, 486, 108, 46, 198);
    EXPECT(t, "def f(x):\n    return x**2\n", true, 1604, 275, 24, 104, 727, 472, 1003, 1792, 828,
           34, 198);
    /* every token decodes */
    char buf[256];
    int n_bad = 0;
    for (int32_t i = 0; i < 49152; i++)
        if (kvr_tokenizer_decode_token(t, i, buf, sizeof buf) < 0) n_bad++;
    KVR_CHECK_EQ_INT(n_bad, 0);
    /* speed: ~100 KB of English-like text well under a second */
    static const char *const words[] = {"the ", "model ", "attention ", "is ", "computed ", "in ",
                                        "parallel, ", "and ", "KV-cache ", "of ", "1024 ",
                                        "tokens.\n", "We'll ", "see: "};
    size_t len = 100 * 1024, o = 0;
    char *text = malloc(len + 32);
    uint64_t s = 7;
    while (o < len) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        const char *w = words[(s >> 33) % (sizeof(words) / sizeof(words[0]))];
        memcpy(text + o, w, strlen(w));
        o += strlen(w);
    }
    int32_t *ids;
    int64_t n;
    kvr_error e;
    double t0 = kvr_time_us();
    KVR_CHECK_OK(kvr_tokenizer_encode(t, text, o, false, true, &ids, &n, &e), &e);
    double ms = (kvr_time_us() - t0) * 1e-3;
    printf("  real vocab: %zu bytes -> %lld tokens in %.1f ms (figure only)\n", o, (long long)n, ms);
    /* round trip: the pieces of the ids concatenate back to the text, byte for byte */
    char *back = malloc(o + 1);
    size_t bo = 0;
    int rt_ok = 1;
    for (int64_t i = 0; i < n && rt_ok; i++) {
        int64_t k = kvr_tokenizer_decode_token(t, ids[i], buf, sizeof buf);
        if (k < 0 || k >= (int64_t)sizeof buf || bo + (size_t)k > o) {
            rt_ok = 0;
            break;
        }
        memcpy(back + bo, buf, (size_t)k);
        bo += (size_t)k;
    }
    KVR_CHECK(rt_ok);
    KVR_CHECK_EQ_INT(bo, o);
    KVR_CHECK(rt_ok && memcmp(back, text, o) == 0);
    free(back);
    free(ids);
    free(text);
done:
    kvr_model_destroy(m);
}

// ----------------------------------------------------------------------------
// SentencePiece BPE on a hand-made vocabulary (the full check against llama.cpp is
// tests/ref/reference_tokenizers.py --part spm)

#define U2581 "\xe2\x96\x81"
/* ids 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, then the pieces below */
enum { SPM_SP = 259, SPM_A, SPM_B, SPM_SP_A, SPM_AB, SPM_C, SPM_SP_C, SPM_CC, SPM_SP_CC, SPM_IM, SPM_N };

static kvr_tokenizer *make_spm(bool byte_tokens, bool prefix) {
    static char names[256][16];
    const char *tok[SPM_N];
    int32_t type[SPM_N];
    float score[SPM_N];
    tok[0] = "<unk>", tok[1] = "<s>", tok[2] = "</s>";
    type[0] = 2, type[1] = 3, type[2] = 3;
    for (int b = 0; b < 256; b++) {
        snprintf(names[b], sizeof names[b], byte_tokens ? "<0x%02X>" : "<unused%02X>", b);
        tok[3 + b] = names[b];
        type[3 + b] = byte_tokens ? 6 : 5;
    }
    const char *pieces[] = {U2581, "a", "b", U2581 "a", "ab", "c", U2581 "c", "cc", U2581 "cc", "<im>"};
    const float sc[] = {-100, -100, -100, -1, -1, -100, -3, -2, -0.5f, 0};
    for (int i = 0; i < SPM_N - SPM_SP; i++) {
        tok[SPM_SP + i] = pieces[i];
        type[SPM_SP + i] = i == SPM_IM - SPM_SP ? 3 : 1;
        score[SPM_SP + i] = sc[i];
    }
    for (int i = 0; i < SPM_SP; i++) score[i] = 0;
    kvr_tokenizer *t = NULL;
    kvr_error e;
    KVR_CHECK_OK(tokenizer_create_spm(tok, type, score, SPM_N, 1, 2, 0, prefix, &t, &e), &e);
    return t;
}

static void test_spm(void) {
    kvr_tokenizer *t = make_spm(true, true);
    if (!t) return;
    KVR_CHECK(strcmp(kvr_tokenizer_type(t), "spm") == 0);
    KVR_CHECK(kvr_tokenizer_wants_bos(t));
    /* "ab" -> "_ab": "_a" and "ab" tie at -1, the leftmost merges first */
    EXPECT(t, "ab", false, SPM_SP_A, SPM_B);
    /* higher score first: "cc" (-2) before "_c" (-3), then "_" + "cc" = "_cc" (-0.5) */
    EXPECT(t, "cc", false, SPM_SP_CC);
    /* spaces become U+2581; byte fallback for characters outside the vocabulary */
    EXPECT(t, "a c", false, SPM_SP_A, SPM_SP_C);
    EXPECT(t, "\xc3\xa9", false, SPM_SP, 3 + 0xc3, 3 + 0xa9);
    /* special tokens: the fragment after one gets the space prefix again */
    EXPECT(t, "a<im>a", true, SPM_SP_A, SPM_IM, SPM_SP_A);
    EXPECT(t, "a<im>a", false, SPM_SP_A, 3 + '<', 3 + 'i', 3 + 'm', 3 + '>', SPM_A);
    {
        int32_t *ids = NULL;
        int64_t n = -1;
        kvr_error e0;
        KVR_CHECK_OK(kvr_tokenizer_encode(t, "", 0, false, false, &ids, &n, &e0), &e0);
        KVR_CHECK_EQ_INT(n, 0); /* empty input: no tokens, no space prefix */
        free(ids);
    }
    {
        const int32_t want[] = {1, SPM_SP_A};
        expect_ids(t, "a", 1, true, false, want, 2, __LINE__);
    }
    char buf[16];
    KVR_CHECK_EQ_INT(kvr_tokenizer_decode_token(t, SPM_SP_CC, buf, sizeof buf), 3);
    KVR_CHECK(strcmp(buf, " cc") == 0);
    KVR_CHECK_EQ_INT(kvr_tokenizer_decode_token(t, 3 + 0x41, buf, sizeof buf), 1);
    KVR_CHECK(strcmp(buf, "A") == 0);
    KVR_CHECK_EQ_INT(kvr_tokenizer_decode_token(t, 1, buf, sizeof buf), 3);
    KVR_CHECK(strcmp(buf, "<s>") == 0);
    tokenizer_destroy(t);

    t = make_spm(true, false); /* add_space_prefix = false */
    if (t) {
        EXPECT(t, "ab", false, SPM_AB);
        EXPECT(t, "a c", false, SPM_A, SPM_SP_C);
        tokenizer_destroy(t);
    }
    t = make_spm(false, true); /* no byte tokens: the unknown token stands in */
    if (t) {
        EXPECT(t, "\xc3\xa9", false, SPM_SP, 0, 0);
        tokenizer_destroy(t);
    }
    /* errors: ids out of range */
    const char *tok[] = {"a", "b"};
    kvr_error e;
    kvr_tokenizer *bad = (kvr_tokenizer *)tok;
    KVR_CHECK_EQ_INT(tokenizer_create_spm(tok, NULL, NULL, 2, 0, 1, 5, true, &bad, &e), KVR_ERR_FORMAT);
    KVR_CHECK(bad == NULL);
    KVR_CHECK(strstr(e.msg, "unknown-token id 5") != NULL);
    KVR_CHECK_OK(tokenizer_create_spm(tok, NULL, NULL, 2, -1, -1, -1, true, &bad, &e), &e);
    if (bad) { /* no byte tokens, no unknown token: a character outside the vocabulary fails */
        int32_t *ids = NULL;
        int64_t n = 0;
        KVR_CHECK_EQ_INT(kvr_tokenizer_encode(bad, "ax", 2, false, false, &ids, &n, &e), KVR_ERR_FORMAT);
        KVR_CHECK(strstr(e.msg, "0x20") != NULL || strstr(e.msg, "0x78") != NULL || strstr(e.msg, "0xE2") != NULL);
        tokenizer_destroy(bad);
    }
}

// ----------------------------------------------------------------------------
// HF tokenizer.json (the full check against the real vocabulary is
// tests/ref/reference_tokenizers.py --part hf)

static kvr_status hf_tok(const char *json, int32_t max_vocab, kvr_tokenizer **t, kvr_error *e) {
    static const char cfg[] = "{\"bos_token_id\": 0, \"eos_token_id\": [1, 2]}";
    return hf_tokenizer_from_json(json, strlen(json), "t/tokenizer.json", cfg, strlen(cfg),
                                  max_vocab, t, e);
}

static void test_hf_tokenizer_json(void) {
    /* byte-level: "a", "b", "ab" (merge), " " as "\u0120", a special token at id 5 */
    const char *bl =
        "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": 5, \"content\": \"<|x|>\", \"special\": true}],"
        " \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false,"
        " \"use_regex\": true}, \"decoder\": {\"type\": \"ByteLevel\"},"
        " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1, \"b\": 2, \"ab\": 3, \"\\u0120\": 4, \"<|endoftext|>\": 0},"
        " \"merges\": [[\"a\", \"b\"]]}}";
    kvr_tokenizer *t = NULL;
    kvr_error e;
    KVR_CHECK_OK(hf_tok(bl, 8, &t, &e), &e);
    if (t) {
        KVR_CHECK(strcmp(kvr_tokenizer_type(t), "bpe") == 0);
        KVR_CHECK_EQ_INT(kvr_tokenizer_n_vocab(t), 6);
        KVR_CHECK_EQ_INT(kvr_tokenizer_bos(t), 0);
        KVR_CHECK_EQ_INT(kvr_tokenizer_eos(t), 1);
        KVR_CHECK(!kvr_tokenizer_wants_bos(t));
        EXPECT(t, "ab a<|x|>", true, 3, 4, 1, 5);
        tokenizer_destroy(t);
    }
    /* SentencePiece-style with byte_fallback: merges give the scores */
    const char *sp =
        "{\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": "
        "\"\\u2581\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\\u2581\"}]},"
        " \"pre_tokenizer\": null, \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": "
        "[{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}]},"
        " \"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"unk_token\": \"<unk>\", \"vocab\": "
        "{\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2, \"<0x41>\": 3, \"\\u2581\": 4, \"a\": 5, \"\\u2581a\": 6},"
        " \"merges\": [\"\\u2581 a\"]}}";
    KVR_CHECK_OK(hf_tok(sp, 8, &t, &e), &e);
    if (t) {
        KVR_CHECK(strcmp(kvr_tokenizer_type(t), "spm") == 0);
        KVR_CHECK(kvr_tokenizer_wants_bos(t)); /* TemplateProcessing starts with <s> */
        KVR_CHECK_EQ_INT(kvr_tokenizer_bos(t), 1);
        EXPECT(t, "a A", false, 6, 4, 3);
        tokenizer_destroy(t);
    }
    /* the fuzz seeds parse (tests/fuzz/corpus_tokenizer_json) */
    static const char *const seeds[] = {"bytelevel_gpt2", "bytelevel_smollm", "bytelevel_qwen2",
                                        "spm_bytefallback"};
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/tests/fuzz/corpus_tokenizer_json/%s.json", KVR_SOURCE_DIR,
                 seeds[i]);
        char *json = NULL;
        size_t len = 0;
        KVR_CHECK_OK(kvr_read_file(path, 0, &json, &len, &e), &e);
        if (!json) continue;
        t = NULL;
        KVR_CHECK_OK(hf_tokenizer_from_json(json, len, path, NULL, 0, 4096, &t, &e), &e);
        tokenizer_destroy(t);
        free(json);
    }
    /* errors name the field */
    static const struct {
        const char *json;
        kvr_status code;
        const char *needle;
    } bad[] = {
        {"{\"model\": ", KVR_ERR_FORMAT, "invalid JSON"},
        {"[]", KVR_ERR_FORMAT, "model"},
        {"{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", KVR_ERR_UNSUPPORTED, "Unigram"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1}, \"merges\": 3}}", KVR_ERR_FORMAT, "merges"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1.5}, \"merges\": []}}", KVR_ERR_FORMAT, "vocab['a']"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 9}, \"merges\": []}}", KVR_ERR_FORMAT, "vocab_size"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}", KVR_ERR_FORMAT, "twice"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [[\"a\"]]}}", KVR_ERR_FORMAT, "merges[0]"},
        {"{\"decoder\": {\"type\": \"ByteLevel\"}, \"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"model\": "
         "{\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", KVR_ERR_UNSUPPORTED, "Whitespace"},
        {"{\"normalizer\": {\"type\": \"NFC\"}, \"decoder\": {\"type\": \"ByteLevel\"}, \"model\": "
         "{\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", KVR_ERR_UNSUPPORTED, "NFC"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", KVR_ERR_UNSUPPORTED, "byte_fallback"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t = (kvr_tokenizer *)&e;
        kvr_status st = hf_tok(bad[i].json, 8, &t, &e);
        KVR_CHECK_EQ_INT(st, bad[i].code);
        KVR_CHECK(t == NULL);
        if (st != KVR_OK && !strstr(e.msg, bad[i].needle))
            fprintf(stderr, "case %zu: '%s' lacks '%s'\n", i, e.msg, bad[i].needle);
        KVR_CHECK(st == KVR_OK || strstr(e.msg, bad[i].needle) != NULL);
        if (st == KVR_OK) tokenizer_destroy(t);
    }
}

static const kvr_test_case cases[] = {
    {"byte_mapping", test_byte_mapping},
    {"merge_ranking", test_merge_ranking},
    {"pretokenizer_digits", test_pretokenizer_digits},
    {"pretokenizer_words", test_pretokenizer_words},
    {"special_tokens", test_special_tokens},
    {"decode", test_decode},
    {"invalid_utf8", test_invalid_utf8},
    {"errors", test_errors},
    {"speed_small_vocab", test_speed_small_vocab},
    {"real_vocab", test_real_vocab},
    {"spm", test_spm},
    {"hf_tokenizer_json", test_hf_tokenizer_json},
};
KVR_TEST_MAIN(cases)
