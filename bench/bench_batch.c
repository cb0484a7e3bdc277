/* bench_batch.c -- batched decode through the paged KV pool (kvr_batch.h) against the same
 * sequences stepped one at a time, side by side in one run on one model: B sequences of C cached
 * tokens each; per size B, the mean over N steps of one kvr_batch_run of B decode rows, of B
 * kvr_batch_run calls of one row each, and of B kvr_decoder_step calls (the contiguous-cache
 * decode path of kvr_decode.h).
 * Usage: bench_batch [MODEL] [C] [N] [THREADS]    (default: the SmolLM2 GGUF, 128, 8, 1; MODEL "": the default) */
#include "kvr_batch.h"
#include "kvr_decode.h"
#include "kvr_runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAIL(what)                                                                                 \
    do {                                                                                           \
        fprintf(stderr, "bench_batch: %s: %s\n", what, e.msg);                                     \
        return 1;                                                                                  \
    } while (0)

int main(int argc, char **argv) {
    kvr_error e;
    char path[1024];
    const char *name = argc > 1 && argv[1][0] ? argv[1] : NULL;
    if (!name) {
        if (kvr_model_default_path(path, sizeof path, &e) != KVR_OK) FAIL("model");
        name = path;
    }
    const int64_t C = argc > 2 ? atoll(argv[2]) : 128;
    const int N = argc > 3 ? atoi(argv[3]) : 8;
    const int32_t nt = argc > 4 ? atoi(argv[4]) : 1;
    const int Bs[] = {1, 4, 8, 16}, nB = 4, Bmax = 16;
    kvr_model_load_params lp = kvr_model_load_params_default();
    kvr_model *m = NULL;
    if (kvr_model_load(name, &lp, &m, &e) != KVR_OK) FAIL(name);
    const kvr_model_config *cfg = kvr_model_get_config(m);
    const kvr_backend *be;
    kvr_weights *w = NULL;
    kvr_kv_pool *pool = NULL;
    kvr_batch_runner *r = NULL;
    const int32_t bt = 16;
    const int64_t per = (C + N + bt) / bt + 1;
    if (kvr_backend_get("cpu", &be, &e) || kvr_weights_upload(be, m, &w, &e) ||
        kvr_kv_pool_create(w, per * Bmax, bt, &pool, &e) ||
        kvr_batch_runner_create(w, pool, C, nt, &r, &e))
        FAIL("setup");
    int32_t *ids = malloc((size_t)(C + N) * sizeof *ids), *blocks = malloc((size_t)(per * Bmax) * sizeof *blocks);
    for (int64_t i = 0; i < C + N; i++) ids[i] = (int32_t)((i * 7919 + 13) % cfg->vocab_size);
    for (int64_t i = 0; i < per * Bmax; i++) blocks[i] = (int32_t)i;
    const int32_t L = cfg->n_layers; /* each sequence's layer tables */
    int32_t *lids = malloc((size_t)(per * Bmax * L) * sizeof *lids);
    const int32_t **tabs = malloc((size_t)(Bmax * L) * sizeof *tabs);
    for (int b = 0; b < Bmax; b++)
        kvr_kv_layer_tables(L, blocks + b * per, per, lids + (size_t)b * per * L, tabs + b * L);
    /* every sequence's prompt into its blocks, one at a time */
    for (int b = 0; b < Bmax; b++) {
        kvr_batch_seq s = {ids, C, 0, tabs + b * L, per, false, NULL};
        if (kvr_batch_run(r, &s, 1, &e)) FAIL("prefill");
    }
    /* the contiguous path: one decoder per sequence size 1 (a workspace of C + N positions) */
    kvr_decoder *d = NULL;
    {
        kvr_prefill_params pp = kvr_prefill_params_default();
        pp.decode_reserve = N * 2 + 1;
        pp.n_threads = nt;
        kvr_prefill_result pr;
        if (kvr_prefill_run(m, ids, C, &pp, &pr, &e)) FAIL("prefill (decoder)");
        d = pr.decoder;
        pr.decoder = NULL;
        kvr_prefill_result_free(&pr);
    }
    printf("# bench_batch: %s, %lld cached tokens per sequence, %d steps, %d threads, blocks of "
           "%d\n",
           name, (long long)C, N, nt, bt);
    printf("%4s %14s %14s %14s %10s\n", "B", "batched_ms", "B_x_1row_ms", "B_x_decoder_ms",
           "speedup");
    kvr_batch_seq s[16];
    for (int k = 0; k < nB; k++) {
        const int B = Bs[k];
        double tb = 0, t1 = 0, td = 0;
        for (int step = 0; step < N; step++) {
            for (int b = 0; b < B; b++)
                s[b] = (kvr_batch_seq){ids + C + step, 1, C + step, tabs + b * L, per, true, NULL};
            double t0 = kvr_time_us();
            if (kvr_batch_run(r, s, B, &e)) FAIL("batched step");
            tb += kvr_time_us() - t0;
            t0 = kvr_time_us();
            for (int b = 0; b < B; b++)
                if (kvr_batch_run(r, &s[b], 1, &e)) FAIL("one-row step");
            t1 += kvr_time_us() - t0;
        }
        /* the decoder: B steps per step (its cache grows by B per step; the context differs from
         * the pool's by at most B * N tokens) */
        kvr_decoder_destroy(d);
        {
            kvr_prefill_params pp = kvr_prefill_params_default();
            pp.decode_reserve = (int64_t)B * N + 1;
            pp.n_threads = nt;
            kvr_prefill_result pr;
            if (kvr_prefill_run(m, ids, C, &pp, &pr, &e)) FAIL("prefill (decoder)");
            d = pr.decoder;
            pr.decoder = NULL;
            kvr_prefill_result_free(&pr);
        }
        for (int step = 0; step < N; step++) {
            const double t0 = kvr_time_us();
            for (int b = 0; b < B; b++)
                if (kvr_decoder_step(d, ids[C], NULL, NULL, &e)) FAIL("decoder step");
            td += kvr_time_us() - t0;
        }
        printf("%4d %14.2f %14.2f %14.2f %9.2fx\n", B, tb / N * 1e-3, t1 / N * 1e-3,
               td / N * 1e-3, t1 / tb);
    }
    kvr_decoder_destroy(d);
    free(ids), free(blocks), free(lids), free(tabs);
    kvr_batch_runner_destroy(r);
    kvr_kv_pool_destroy(pool);
    kvr_weights_free(w);
    kvr_model_destroy(m);
    return 0;
}
