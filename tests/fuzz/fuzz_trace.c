/* fuzz_trace.c -- libFuzzer target for the serve module's trace readers: every input goes
 * through the kvr trace CSV reader (kvr_trace_parse) and both importers (Azure, BurstGPT; with
 * filters and keep_failed switched by the input's length, so each path is reached). A trace that
 * parses is summarised (kvr_trace_stats_compute), written as kvr trace CSV and read back, and
 * must come back identical (the documented round trip); any failure there traps. Registered
 * from tests/CMakeLists.txt (the serve block), seeded with tests/fuzz/corpus_trace.
 *
 * Build: cmake -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DKVR_FUZZ=ON \
 *              -DKVR_SANITIZE="address;undefined" -DKVR_CUDA=OFF && ninja -C build-fuzz fuzz_trace
 * Run:   build-fuzz/tests/fuzz_trace -max_total_time=60 tests/fuzz/corpus_trace */
#include "kvr_trace.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void roundtrip(const kvr_trace *t) {
    kvr_error err;
    kvr_trace_stats s;
    if (kvr_trace_stats_compute(t, &s, &err) != KVR_OK) __builtin_trap();
    if (s.n_requests != t->n_requests) __builtin_trap();
    char *text = NULL;
    if (kvr_trace_format(t, "fuzz\ncomment", &text, &err) != KVR_OK) __builtin_trap();
    kvr_trace *u = NULL;
    if (kvr_trace_parse(text, strlen(text), "again.csv", &u, &err) != KVR_OK) __builtin_trap();
    if (u->n_requests != t->n_requests) __builtin_trap();
    for (int64_t i = 0; i < t->n_requests; i++) {
        const kvr_trace_request *a = &t->requests[i], *b = &u->requests[i];
        if (a->arrival_s != b->arrival_s || a->prompt_tokens != b->prompt_tokens ||
            a->output_tokens != b->output_tokens || (a->prompt == NULL) != (b->prompt == NULL) ||
            (a->prompt && strcmp(a->prompt, b->prompt)))
            __builtin_trap();
    }
    kvr_trace_destroy(u);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* an exact-size copy so ASan sees any read past the end (the parsers take a length) */
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    kvr_error err;
    kvr_trace *t = NULL;
    if (kvr_trace_parse(buf, size, "fuzz.csv", &t, &err) == KVR_OK) roundtrip(t);
    kvr_trace_destroy(t);
    for (int f = 0; f < KVR_TRACE_IMPORT_COUNT; f++) {
        kvr_trace_import_params p = kvr_trace_import_params_default();
        p.format = (kvr_trace_import_format)f;
        p.keep_failed = size & 1;
        p.limit = (size & 2) ? 3 : 0;
        p.time_scale = (size & 4) ? 0.001 : 1;
        if (f == KVR_TRACE_IMPORT_BURSTGPT && (size & 8)) {
            p.model = "GPT-4";
            p.log_type = "API log";
        }
        kvr_trace_import_stats s;
        t = NULL;
        if (kvr_trace_import_parse(buf, size, "fuzz.csv", &p, &t, &s, &err) == KVR_OK) {
            if (s.n_kept != t->n_requests || s.n_kept > s.n_rows) __builtin_trap();
            roundtrip(t);
        }
        kvr_trace_destroy(t);
    }
    free(buf);
    return 0;
}
