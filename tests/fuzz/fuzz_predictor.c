/* fuzz_predictor.c -- libFuzzer target for the predictor-file parser (kvr_predictor_file_parse:
 * "kvr-predictor/1" with its partitions, strategy table and the fit's "kvr-predict-costs/1" cost
 * model -- fits, overheads, end-to-end scales and their ranges, links -- the code path of
 * kvr-run --predictor FILE after reading the file). Inputs that parse are then used as kvr-run
 * uses them: KVR-P partitions (plain and polished) for every fitted rank count at a few
 * contexts, and the cost model's TTFT of every strategy, so extreme but valid numbers are
 * exercised too. Registered from tests/CMakeLists.txt, seeded with tests/fuzz/corpus_predictor.
 *
 * Build: cmake -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DKVR_FUZZ=ON \
 *              -DKVR_SANITIZE="address;undefined" -DKVR_CUDA=OFF && ninja -C build-fuzz fuzz_predictor
 * Run:   build-fuzz/tests/fuzz_predictor -max_total_time=60 tests/fuzz/corpus_predictor */
#include "kvr_kvrp.h"
#include "kvr_search.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_predictor_quiet_log(kvr_log_level level, const char *msg, void *user) {
    (void)level, (void)msg, (void)user;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init;
    if (!init) {
        kvr_log_set(fuzz_predictor_quiet_log, NULL);
        init = 1;
    }
    /* an exact-size copy so ASan sees any read past the end (the parser takes a length) */
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    kvr_predictor *kp = NULL;
    kvr_predict_costs *c = NULL;
    kvr_predictor_meta meta;
    kvr_error err;
    if (kvr_predictor_file_parse(buf, size, "fuzz.json", &kp, &c, &meta, &err) == KVR_OK) {
        kvr_search_costs *m = NULL;
        if (c && kvr_predict_costs_to_search(c, false, &m, &err) == KVR_OK &&
            kvr_search_costs_n_layers(m) > 256) { /* keep each input fast */
            kvr_search_costs_destroy(m);
            m = NULL;
        }
        static const int64_t ctx[] = {1, 64, 200, 4096};
        int64_t ch[8];
        double t;
        for (int i = 0; kp && i < kvr_predictor_n_ranks(kp) && i < 4; i++) {
            const int p = kvr_predictor_ranks(kp, i);
            if (p < 1 || p > 8) continue;
            for (size_t k = 0; k < sizeof ctx / sizeof ctx[0]; k++) {
                kvr_predictor_predict(kp, p, ctx[k], ch, &err);
                if (m) kvr_predictor_predict_refined(kp, m, p, ctx[k], 4, ch, &t, &err);
            }
        }
        for (int s = 0; m && s < KVR_STRATEGY_COUNT; s++)
            for (int p = 1; p <= 2; p++)
                kvr_predict_costs_ttft(c, (kvr_strategy)s, p, 200, NULL, NULL, &t, &err);
        kvr_search_costs_destroy(m);
    }
    kvr_predictor_destroy(kp);
    kvr_predict_costs_destroy(c);
    free(buf);
    return 0;
}
