/* fuzz_gguf.c -- libFuzzer target for the GGUF loader: the input is a whole .gguf file, parsed by
 * the loader's own code path (gguf_load_from_memory, which kvr_model_load_gguf calls after
 * mapping the file) with tokenizer metadata enabled.
 *
 * Build: cmake -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DKVR_FUZZ=ON \
 *              -DKVR_SANITIZE="address;undefined" -DKVR_CUDA=OFF && ninja -C build-fuzz fuzz_gguf
 * Run:   build-fuzz/tests/fuzz/fuzz_gguf -max_total_time=60 tests/fuzz/corpus_gguf
 * (see docs/model-formats.md for longer runs). */
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
    kvr_model_load_params lp = kvr_model_load_params_default();
    kvr_model *m = (kvr_model *)0x1;
    kvr_error e;
    memset(&e, 0, sizeof e);
    kvr_status st = gguf_load_from_memory(data, size, "fuzz.gguf", &lp, &m, &e);
    if (st == KVR_OK) {
        /* touch the whole arena so a mis-sized allocation shows up under ASan */
        volatile float acc = 0;
        for (size_t i = 0; i < m->arena_floats; i++) acc += m->arena[i];
        (void)acc;
        kvr_model_destroy(m);
    } else {
        if (m != NULL || e.code != st || strlen(e.msg) == 0 || strncmp(e.msg, "fuzz.gguf", 9) != 0)
            abort(); /* contract: *out NULL, message set and naming the file */
    }
    return 0;
}
