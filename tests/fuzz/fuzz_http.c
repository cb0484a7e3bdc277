/* fuzz_http.c -- libFuzzer target for kvr-serve --http's request-body parser
 * (http_request_parse, serve_internal.h): every input is parsed as a /v1/completions body and as
 * a /v1/chat/completions body. A body that parses must satisfy what the server relies on (a
 * prompt or messages, sane limits, stop strings within bounds) and its messages must format
 * under every chat template family; a body that fails must say why (a message). Any breach
 * traps. Registered from tests/CMakeLists.txt (the serve block), seeded with
 * tests/fuzz/corpus_http.
 *
 * Build: cmake -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DKVR_FUZZ=ON \
 *              -DKVR_SANITIZE="address;undefined" -DKVR_CUDA=OFF && ninja -C build-fuzz fuzz_http
 * Run:   build-fuzz/tests/fuzz_http -max_total_time=60 tests/fuzz/corpus_http */
#include "serve_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const http_request *r, bool chat) {
    if (chat ? (r->n_messages < 1 || !r->messages) : (!r->prompt == !r->prompt_ids))
        __builtin_trap();
    if (r->prompt_ids && (r->n_prompt_ids < 1 || r->n_prompt_ids > HTTP_MAX_PROMPT_IDS))
        __builtin_trap();
    for (int64_t i = 0; i < r->n_prompt_ids; i++)
        if (r->prompt_ids[i] < 0) __builtin_trap();
    if (r->max_tokens != -1 && (r->max_tokens < 1 || r->max_tokens > HTTP_MAX_TOKENS))
        __builtin_trap();
    if (!(r->temperature >= 0 && r->temperature <= 2) || !(r->top_p > 0 && r->top_p <= 1))
        __builtin_trap();
    if (r->n_stop < 0 || r->n_stop > HTTP_MAX_STOP) __builtin_trap();
    for (int i = 0; i < r->n_stop; i++)
        if (!r->stop[i] || !r->stop[i][0] || strlen(r->stop[i]) > HTTP_MAX_STOP_BYTES)
            __builtin_trap();
    for (int32_t i = 0; i < r->n_messages; i++)
        if (!r->messages[i].content || r->messages[i].role < 0 || r->messages[i].role > 2)
            __builtin_trap();
    for (int f = 0; chat && f < HTTP_CHAT_COUNT; f++) {
        char *p = NULL;
        kvr_error e;
        if (http_chat_prompt((http_chat_format)f, r->messages, r->n_messages, &p, &e) != KVR_OK ||
            !p)
            __builtin_trap();
        free(p);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* an exact-size copy so ASan sees any read past the end (the parser takes a length) */
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    for (int chat = 0; chat < 2; chat++) {
        http_request r;
        if (http_request_parse(buf, size, chat, &r) == KVR_OK) check(&r, chat);
        else if (!r.msg[0]) __builtin_trap();
        http_request_free(&r);
    }
    /* the template detector on the same bytes as text */
    char *t = malloc(size + 1);
    if (t) {
        memcpy(t, data, size);
        t[size] = 0;
        http_chat_format f;
        kvr_error e;
        if (http_chat_detect(t, &f, &e) == KVR_OK && (f < 0 || f >= HTTP_CHAT_COUNT)) __builtin_trap();
        free(t);
    }
    free(buf);
    return 0;
}
