/* fuzz_costs.c -- libFuzzer target for the search module's JSON cost-file parser: the input is a
 * whole cost file (kvr_search_costs_parse_json, the code path of kvr_search_costs_load_json after
 * reading the file). Inputs that parse are then pushed through every simulator and a small KVR-S
 * search, so extreme but valid numbers (1e300, zero bandwidth, huge layer counts) are exercised
 * too. Registered from tests/CMakeLists.txt (not tests/fuzz/CMakeLists.txt, the loaders' file).
 *
 * Build: cmake -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DKVR_FUZZ=ON \
 *              -DKVR_SANITIZE="address;undefined" -DKVR_CUDA=OFF && ninja -C build-fuzz fuzz_costs
 * Run:   build-fuzz/tests/fuzz_costs -max_total_time=60 docs/examples */
#include "kvr_search.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_costs_quiet_log(kvr_log_level level, const char *msg, void *user) {
    (void)level, (void)msg, (void)user;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init;
    if (!init) {
        kvr_log_set(fuzz_costs_quiet_log, NULL);
        init = 1;
    }
    /* an exact-size copy so ASan sees any read past the end (the parser takes a length) */
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    kvr_search_costs *m = NULL;
    kvr_error err;
    if (kvr_search_costs_parse_json(buf, size, "fuzz.json", &m, &err) == KVR_OK) {
        if (kvr_search_costs_n_layers(m) > 256) { /* keep each input fast */
            kvr_search_costs_destroy(m);
            free(buf);
            return 0;
        }
        double t;
        int64_t ch[4];
        kvr_search_params sp = kvr_search_params_default();
        kvr_search_timeline *tl = NULL;
        kvr_search_timeline_create(&tl, &err);
        for (int p = 1; p <= 4 && p <= kvr_search_costs_max_ranks(m); p++) {
            if (kvr_search_partition(m, p, 200, &sp, ch, NULL, &err) == KVR_OK)
                kvr_search_sim_kvr(m, p, ch, tl, &t, &err);
            kvr_search_sim_tsp(m, p, 200, tl, &t, &err);
            kvr_search_sim_ring(m, p, 200, tl, &t, &err);
        }
        kvr_search_sim_single(m, 200, tl, &t, &err);
        char *txt = NULL;
        if (tl && kvr_search_timeline_format_text(tl, 40, &txt, &err) == KVR_OK) free(txt);
        kvr_search_timeline_destroy(tl);
    }
    kvr_search_costs_destroy(m);
    free(buf);
    return 0;
}
