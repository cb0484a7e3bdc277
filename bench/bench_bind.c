/* bench_bind.c -- ranks as threads bound to CPUs of their own (kvr_prefill_params.bind, the
 * default) against placed by the OS, measured side by side in one run. Prints figures; asserts
 * nothing about speed.
 *
 * Every schedule (single on 1 rank; kvr with the even split, tsp and ring on --ranks) runs on
 * prepared ranks (kvr_prefill_ready_create, as kvr-run's session), bound and unbound, and the
 * runs are interleaved as kvr-profile's end-to-end check and a server taking prompts of
 * different schedules interleave them: each round runs every (schedule, binding) once, every
 * other round in reverse order, after one warm-up round. Per case: the median TTFT over the
 * rounds, p10 and p90, the spread (p90 - p10) / median, and unbound / bound of the medians.
 * Single is the control: one rank is never bound (kvr_rank_thread_bind), so its two columns
 * differ only by the machine's noise.
 *
 * Build: cmake --build build --target bench_bind
 * Run:   build/bench/bench_bind [--model PATH|PRESET] [--context C] [--ranks P] [--rounds N]
 *        defaults: tiny, 512 tokens, 2 ranks, 15 rounds. */
#include "bench_util.h"
#include "kvr_runtime.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N_MODES = 4, MAX_ROUNDS = 1000 };

typedef struct bb_case {
    kvr_prefill_params pp;
    double t[MAX_ROUNDS];
    int bound; /* ranks the last run bound */
} bb_case;

static int bb_run(const kvr_model *m, const int32_t *ids, int64_t C, bb_case *k, double *ms) {
    kvr_error e;
    kvr_prefill_result r;
    if (kvr_prefill_run(m, ids, C, &k->pp, &r, &e) != KVR_OK) {
        fprintf(stderr, "bench_bind: %s p=%d: %s\n", kvr_mode_name(k->pp.mode), k->pp.n_ranks,
                e.msg);
        return 1;
    }
    *ms = r.ttft_ms;
    k->bound = 0;
    for (int32_t i = 0; i < r.n_ranks; i++) k->bound += r.ranks[i].n_cpus > 0;
    kvr_prefill_result_free(&r);
    return 0;
}

int main(int argc, char **argv) {
    const char *model = "tiny";
    int64_t C = 512;
    int P = 2, rounds = 15;
    static const struct option lo[] = {{"model", required_argument, 0, 'm'},
                                       {"context", required_argument, 0, 'c'},
                                       {"ranks", required_argument, 0, 'r'},
                                       {"rounds", required_argument, 0, 'n'},
                                       {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "m:c:r:n:", lo, NULL)) != -1) {
        switch (ch) {
            case 'm': model = optarg; break;
            case 'c': C = atoll(optarg); break;
            case 'r': P = atoi(optarg); break;
            case 'n': rounds = atoi(optarg); break;
            default:
                fprintf(stderr, "usage: bench_bind [--model M] [--context C] [--ranks P] "
                                "[--rounds N]\n");
                return 2;
        }
    }
    if (C < 2 * P || P < 2 || P > KVR_MAX_RANKS || rounds < 3 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "bench_bind: need --ranks 2..%d, --context >= 2 x ranks, --rounds "
                        "3..%d\n", KVR_MAX_RANKS, MAX_ROUNDS);
        return 2;
    }
    kvr_error e;
    kvr_model *m = NULL;
    kvr_model_load_params lp = kvr_model_load_params_default();
    if (kvr_model_load(model, &lp, &m, &e) != KVR_OK) {
        fprintf(stderr, "bench_bind: %s: %s\n", model, e.msg);
        return 1;
    }
    const int32_t vocab = kvr_model_get_config(m)->vocab_size;
    int32_t *ids = malloc((size_t)C * sizeof *ids);
    uint64_t seed = 1;
    for (int64_t i = 0; i < C; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((seed >> 33) % (uint64_t)vocab);
    }
    static const kvr_mode modes[N_MODES] = {KVR_MODE_SINGLE, KVR_MODE_KVR, KVR_MODE_TSP,
                                            KVR_MODE_RING};
    static bb_case cases[2 * N_MODES]; /* [bind on: modes..., bind off: modes...] */
    int rc = 0;
    for (int b = 0; b < 2 && !rc; b++)
        for (int k = 0; k < N_MODES && !rc; k++) {
            bb_case *c = &cases[b * N_MODES + k];
            c->pp = kvr_prefill_params_default();
            c->pp.mode = modes[k];
            c->pp.n_ranks = modes[k] == KVR_MODE_SINGLE ? 1 : P;
            c->pp.bind = b == 0;
            c->pp.keep_logits = false;
            kvr_prefill_ready *ready = NULL;
            if (kvr_prefill_ready_create(m, &c->pp, C, -1, &ready, &e) != KVR_OK) {
                fprintf(stderr, "bench_bind: prepared ranks: %s\n", e.msg);
                rc = 1;
            }
            c->pp.ready = ready;
        }
    const int n_cases = 2 * N_MODES;
    for (int r = -1; r < rounds && !rc; r++) /* round -1: the warm-up */
        for (int j = 0; j < n_cases && !rc; j++) {
            const int i = (r & 1) ? n_cases - 1 - j : j;
            double ms = 0;
            rc = bb_run(m, ids, C, &cases[i], &ms);
            if (r >= 0) cases[i].t[r] = ms;
        }
    if (!rc) {
        printf("# bench_bind: %s, %lld tokens, %d ranks, %d interleaved rounds; TTFT in ms\n",
               model, (long long)C, P, rounds);
        printf("%-7s %5s  %28s  %28s  %9s\n", "", "", "bound (default)", "placed by the OS",
               "OS/bound");
        printf("%-7s %5s  %8s %6s %6s %6s  %8s %6s %6s %6s  %9s\n", "mode", "ranks", "median",
               "p10", "p90", "spread", "median", "p10", "p90", "spread", "(medians)");
        for (int k = 0; k < N_MODES; k++) {
            double med[2], p10[2], p90[2];
            for (int b = 0; b < 2; b++) {
                double *t = cases[b * N_MODES + k].t;
                med[b] = bench_median(t, rounds); /* sorts t */
                p10[b] = t[(rounds - 1) / 10];
                p90[b] = t[rounds - 1 - (rounds - 1) / 10];
            }
            printf("%-7s %5d  %8.3f %6.3f %6.3f %5.1f%%  %8.3f %6.3f %6.3f %5.1f%%  %9.3f%s\n",
                   kvr_mode_name(modes[k]), cases[k].pp.n_ranks, med[0], p10[0], p90[0],
                   100 * (p90[0] - p10[0]) / med[0], med[1], p10[1], p90[1],
                   100 * (p90[1] - p10[1]) / med[1], med[1] / med[0],
                   cases[k].pp.n_ranks < 2                      ? "  (one rank: never bound)"
                   : cases[k].bound == cases[k].pp.n_ranks ? ""
                                                           : "  (bound: not all ranks fit)");
        }
    }
    for (int i = 0; i < n_cases; i++) kvr_prefill_ready_destroy(cases[i].pp.ready);
    free(ids);
    kvr_model_destroy(m);
    return rc;
}
