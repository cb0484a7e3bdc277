/* fuzz_safetensors.c -- libFuzzer target for the Hugging Face loader (config.json + safetensors).
 *
 * Input format: [u16 little-endian n][n bytes of config.json][the rest: one .safetensors file].
 * Both pieces are copied into their own exact-size heap buffers so ASan sees any read past
 * either, then parsed by the loader's own code path (hf_load_from_memory, which
 * kvr_model_load_hf calls after reading config.json and mapping the weight files).
 * Seeds: tests/fuzz/corpus_safetensors (tools/gen_test_models.py corpus tests/fuzz).
 *
 * Build: see fuzz_gguf.c. Run: build-fuzz/tests/fuzz/fuzz_safetensors -max_total_time=60 \
 *        tests/fuzz/corpus_safetensors */
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
    if (size < 2) return 0;
    size_t n_cfg = (size_t)data[0] | (size_t)data[1] << 8;
    if (n_cfg > size - 2) n_cfg = size - 2;
    const size_t n_st = size - 2 - n_cfg;
    char *cfg = malloc(n_cfg ? n_cfg : 1);
    uint8_t *st_buf = malloc(n_st ? n_st : 1);
    if (!cfg || !st_buf) abort();
    memcpy(cfg, data + 2, n_cfg);
    memcpy(st_buf, data + 2 + n_cfg, n_st);
    const uint8_t *bufs[1] = {st_buf};
    const size_t lens[1] = {n_st};
    const char *names[1] = {"fuzz/model.safetensors"};
    kvr_model *m = (kvr_model *)0x1;
    kvr_error e;
    memset(&e, 0, sizeof e);
    kvr_status st = hf_load_from_memory(cfg, n_cfg, "fuzz/config.json", "fuzz", 1, bufs, lens,
                                        names, &m, &e);
    if (st == KVR_OK) {
        volatile float acc = 0;
        for (size_t i = 0; i < m->arena_bytes; i++) acc += m->arena[i];
        (void)acc;
        kvr_model_destroy(m);
    } else if (m != NULL || e.code != st || strlen(e.msg) == 0) {
        abort();
    }
    free(cfg);
    free(st_buf);
    return 0;
}
