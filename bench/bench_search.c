/* bench_search.c -- speed of the KVR-S search (not a test: prints figures, asserts nothing).
 *
 * Cases (issue 4 targets, on the 2-core dev box):
 *   p = 8,  C = 16384,     g = 16   median <= 10 ms
 *   p = 64, C = 1,048,576, g = 256  median <= 1 s
 * each under a Llama-7B-on-A100-like cost model (docs/examples/llama7b_a100.json) with an
 * NVLink-class link (250 GB/s) and a PCIe/Ethernet-class link (10 GB/s), since the landscape and
 * hence the number of moves depend on which stage is the bottleneck.
 *
 * Build and run:  cd build && ninja bench_search && ./bench/bench_search [reps_small [reps_large]]
 * Columns: min/median/mean/max wall time of kvr_search_partition over the repetitions (after one
 * warm-up), evaluations of the TTFT model per search, and the KVR-S / KVR-E TTFT it found. */
#include "kvr_search.h"

#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static kvr_search_costs *bench_model(double gbps) {
    kvr_search_coeffs co;
    memset(&co, 0, sizeof co);
    co.n_layers = 32;
    co.kv_bytes_per_token = 16384;
    co.embed_us = 30; /* the numbers of docs/examples/llama7b_a100.json */
    co.head_us = 180;
    co.pre_k_us = 15;
    co.pre_per_token_us = 0.55;
    co.attn_k_us = 20;
    co.attn_per_token_us = 0.02;
    co.attn_per_prefix_us = 0.001;
    co.attn_per_area_us = 0.00011;
    co.post_k_us = 25;
    co.post_per_token_us = 1.55;
    kvr_search_link l = {0, 0, 8, gbps};
    kvr_search_costs *m = NULL;
    kvr_error e;
    if (kvr_search_costs_create_linear(&co, &l, &m, &e) != KVR_OK) {
        fprintf(stderr, "bench_search: %s\n", e.msg);
        exit(1);
    }
    return m;
}

static int bench_case(int p, int64_t C, int64_t g, double gbps, int reps) {
    kvr_search_costs *m = bench_model(gbps);
    int64_t *ch = malloc((size_t)p * sizeof *ch);
    double *ms = malloc((size_t)reps * sizeof *ms);
    if (!ch || !ms) {
        fprintf(stderr, "bench_search: out of memory\n");
        return 1;
    }
    kvr_search_params sp = kvr_search_params_default();
    sp.granularity = g;
    kvr_search_stats st;
    kvr_error e;
    if (kvr_search_partition(m, p, C, &sp, ch, &st, &e) != KVR_OK) { /* warm-up */
        fprintf(stderr, "bench_search: %s\n", e.msg);
        return 1;
    }
    for (int r = 0; r < reps; r++) {
        double t0 = kvr_time_us();
        kvr_search_partition(m, p, C, &sp, ch, &st, &e);
        ms[r] = (kvr_time_us() - t0) * 1e-3;
    }
    qsort(ms, (size_t)reps, sizeof *ms, cmp_double);
    double mean = 0;
    for (int r = 0; r < reps; r++) mean += ms[r] / reps;
    double median = reps % 2 ? ms[reps / 2] : 0.5 * (ms[reps / 2 - 1] + ms[reps / 2]);
    printf("%4d %9lld %5lld %7.0f %5d %10.3f %10.3f %10.3f %10.3f %9lld %12.3f %12.3f %6.2f\n", p,
           (long long)C, (long long)g, gbps, reps, ms[0], median, mean, ms[reps - 1],
           (long long)st.n_evals, st.ttft_us * 1e-3,
           st.start_ttft_us[KVR_SEARCH_START_EVEN] * 1e-3,
           st.start_ttft_us[KVR_SEARCH_START_EVEN] / st.ttft_us);
    free(ch);
    free(ms);
    kvr_search_costs_destroy(m);
    return 0;
}

int main(int argc, char **argv) {
    int reps_small = argc > 1 ? atoi(argv[1]) : 51, reps_large = argc > 2 ? atoi(argv[2]) : 7;
    if (reps_small < 1 || reps_large < 1) {
        fprintf(stderr, "usage: %s [reps_small [reps_large]]\n", argv[0]);
        return 2;
    }
    printf("# bench_search: kvr %s (commit %s); Llama-7B/A100-like costs, 32 layers, 16 KiB "
           "KV/token/layer, link alpha 8 us\n",
           kvr_version(), kvr_build_commit());
    printf("# targets: p=8 C=16384 g=16 median <= 10 ms; p=64 C=1048576 g=256 median <= 1000 ms\n");
    printf("%4s %9s %5s %7s %5s %10s %10s %10s %10s %9s %12s %12s %6s\n", "p", "context", "g",
           "link", "reps", "min", "median", "mean", "max", "evals", "kvr-s", "kvr-e", "gain");
    printf("%4s %9s %5s %7s %5s %10s %10s %10s %10s %9s %12s %12s %6s\n", "(-)", "(tokens)",
           "(tok)", "(GB/s)", "(-)", "(ms)", "(ms)", "(ms)", "(ms)", "(-)", "(ms)", "(ms)", "(x)");
    int rc = 0;
    rc |= bench_case(8, 16384, 16, 250, reps_small);
    rc |= bench_case(8, 16384, 16, 10, reps_small);
    rc |= bench_case(64, 1048576, 256, 250, reps_large);
    rc |= bench_case(64, 1048576, 256, 10, reps_large);
    return rc;
}
