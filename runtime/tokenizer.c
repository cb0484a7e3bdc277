/* tokenizer.c -- placeholder until the BPE tokenizer lands (being written now). */
#include "runtime_internal.h"
kvr_status tokenizer_create_bpe(const char *const *tokens, const int32_t *token_types, int32_t n,
                                const char *const *merges, int32_t n_merges, const char *pre,
                                int32_t bos, int32_t eos, kvr_tokenizer **out, kvr_error *err) {
    (void)tokens, (void)token_types, (void)n, (void)merges, (void)n_merges, (void)bos, (void)eos;
    *out = NULL;
    return kvr_error_set(err, KVR_ERR_UNSUPPORTED, "tokenizer '%s' not built yet", pre);
}
void tokenizer_destroy(kvr_tokenizer *t) {
    (void)t;
}
kvr_status kvr_tokenizer_encode(const kvr_tokenizer *t, const char *text, size_t len, bool add_bos,
                                bool parse_special, int32_t **ids, int64_t *n_ids, kvr_error *err) {
    (void)t, (void)text, (void)len, (void)add_bos, (void)parse_special, (void)n_ids;
    *ids = NULL;
    return kvr_error_set(err, KVR_ERR_UNSUPPORTED, "tokenizer not built yet");
}
int64_t kvr_tokenizer_decode_token(const kvr_tokenizer *t, int32_t id, char *buf, size_t len) {
    (void)t, (void)id, (void)buf, (void)len;
    return -1;
}
int32_t kvr_tokenizer_n_vocab(const kvr_tokenizer *t) { (void)t; return 0; }
int32_t kvr_tokenizer_bos(const kvr_tokenizer *t) { (void)t; return -1; }
int32_t kvr_tokenizer_eos(const kvr_tokenizer *t) { (void)t; return -1; }
