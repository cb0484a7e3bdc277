/* fuzz_tokenizer_json.c -- libFuzzer target for the HF tokenizer.json parser
 * (runtime/hf_tokenizer.c, hf_tokenizer_from_json, which kvr_model_load_hf calls on an HF
 * directory's tokenizer.json).
 *
 * Input: the bytes of a tokenizer.json, copied into an exact-size heap buffer so ASan sees any read
 * past it. A tokenizer that parses is exercised: a few fixed texts (special tokens, spaces,
 * digits, unicode, invalid UTF-8) are encoded with special-token parsing on and off, and every
 * token is decoded. Seeds: tests/fuzz/corpus_tokenizer_json (byte-level and SentencePiece-style).
 *
 * Build: see fuzz_gguf.c. Run: build-fuzz/tests/fuzz/fuzz_tokenizer_json -max_total_time=60 \
 *        tests/fuzz/corpus_tokenizer_json */
#include "runtime_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_quiet_log(kvr_log_level level, const char *msg, void *user) {
    (void)level, (void)msg, (void)user;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init;
    if (!init) {
        kvr_log_set(fuzz_quiet_log, NULL);
        init = 1;
    }
    char *buf = malloc(size ? size : 1);
    if (!buf) abort();
    memcpy(buf, data, size);
    static const char cfg[] = "{\"bos_token_id\": 1, \"eos_token_id\": [2, 3]}";
    kvr_tokenizer *t = (kvr_tokenizer *)0x1;
    kvr_error e;
    memset(&e, 0, sizeof e);
    kvr_status st =
        hf_tokenizer_from_json(buf, size, "fuzz/tokenizer.json", cfg, sizeof cfg - 1, 4096, &t, &e);
    if (st == KVR_OK) {
        static const char *const texts[] = {"Hello world",
                                            "  a b\tc\n\n",
                                            "12345 3.14 it's",
                                            "<s>x</s><|im_end|>",
                                            "h\xc3\xa9llo \xe6\x97\xa5 \xf0\x9f\x98\x80",
                                            "\xff\xc3 bad\xe2\x96",
                                            ""};
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
            for (int special = 0; special < 2; special++) {
                int32_t *ids = NULL;
                int64_t n = 0;
                if (kvr_tokenizer_encode(t, texts[i], strlen(texts[i]), true, special, &ids, &n,
                                         &e) == KVR_OK) {
                    for (int64_t k = 0; k < n; k++)
                        if (ids[k] < 0 || ids[k] >= kvr_tokenizer_n_vocab(t)) abort();
                }
                free(ids);
            }
        char piece[64];
        for (int32_t id = 0; id < kvr_tokenizer_n_vocab(t); id++)
            if (kvr_tokenizer_decode_token(t, id, piece, sizeof piece) < 0) abort();
        tokenizer_destroy(t);
    } else if (t != NULL || e.code != st || strlen(e.msg) == 0) {
        abort();
    }
    free(buf);
    return 0;
}
