/* fuzz_gguf.c -- libFuzzer target for the GGUF loader: the input is a whole .gguf file, parsed by
 * the loader's own code path (gguf_load_from_memory, which kvr_model_load_gguf calls after
 * mapping the file) with tokenizer metadata enabled. The same bytes then go through one of the
 * block dequantizers (quant_internal.h; the first byte picks a readable type, the rest are blocks)
 * so every block layout sees arbitrary scale and index bytes too; the seeds hold tensors of every
 * readable type (tools/gen_test_models.py corpus tests/fuzz).
 *
 * Build: cmake -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DKVR_FUZZ=ON \
 *              -DKVR_SANITIZE="address;undefined" -DKVR_CUDA=OFF && ninja -C build-fuzz fuzz_gguf
 * Run:   build-fuzz/tests/fuzz/fuzz_gguf -max_total_time=60 tests/fuzz/corpus_gguf
 * (see docs/model-formats.md for longer runs). */
#include "quant_internal.h"
#include "runtime_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_quiet_log(kvr_log_level level, const char *msg, void *user) {
    (void)level, (void)msg, (void)user;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init, n_types;
    static int32_t types[64];
    if (!init) {
        kvr_log_set(fuzz_quiet_log, NULL);
        for (int32_t t = 0; t < 64; t++)
            if (quant_type_supported(t)) types[n_types++] = t;
        init = 1;
    }
    kvr_model_load_params lp = kvr_model_load_params_default();
    kvr_model *m = (kvr_model *)0x1;
    kvr_error e;
    memset(&e, 0, sizeof e);
    kvr_status st = gguf_load_from_memory(data, size, "fuzz.gguf", &lp, &m, &e);
    if (st == KVR_OK) {
        /* dequantize every stored tensor (what the backends do per GEMM), so a mis-sized
         * allocation or a tensor read past its bytes shows up under ASan */
        float *all = NULL;
        size_t n_all = 0;
        if (model_dequant_all(m, &all, &n_all, &e) == KVR_OK) {
            volatile float acc = 0;
            for (size_t i = 0; i < n_all; i++) acc += all[i];
            (void)acc;
        }
        free(all);
        kvr_model_destroy(m);
    } else {
        if (m != NULL || e.code != st || strlen(e.msg) == 0 || strncmp(e.msg, "fuzz.gguf", 9) != 0)
            abort(); /* contract: *out NULL, message set and naming the file */
    }
    if (size >= 1) {
        const int32_t t = types[data[0] % n_types];
        const quant_type_traits *tt = quant_type_get(t);
        int64_t nb = (int64_t)(size - 1) / tt->bytes;
        if (nb * tt->blck > 4096) nb = 4096 / tt->blck; /* enough blocks to reach every path */
        float *y = malloc((size_t)(nb * tt->blck + 1) * sizeof *y);
        if (!y) return 0;
        if (quant_dequant_row(t, data + 1, y, nb * tt->blck, &e) != KVR_OK) abort();
        volatile float acc = 0;
        for (int64_t i = 0; i < nb * tt->blck; i++) acc += y[i];
        (void)acc;
        free(y);
    }
    return 0;
}
