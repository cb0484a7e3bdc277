/* bench_batch.c -- batched decode through the paged KV pool (kvr_batch.h) against the same
 * sequences stepped one at a time, side by side in one run on one model: B sequences of C cached
 * tokens each; per size B, the mean over N steps of one kvr_batch_run of B decode rows, of B
 * kvr_batch_run calls of one row each, and of B kvr_decoder_step calls (the contiguous-cache
 * decode path of kvr_decode.h).
 * With --layerkv: LayerKV's host tier (docs/serving.md "LayerKV in the runtime") -- B sequences
 * of C tokens with every layer resident beside B with half their layers offloaded (the odd ones
 * resident): the prefill of each (the offloaded one copying layers out while the next compute),
 * then the mean decode step over N steps, all resident vs stream reload (each step copies the
 * offloaded layers in through staging), and after a swap-in (the offloaded layers copied back
 * once) vs all resident again, ratios side by side; B = 1 and 4.
 * Usage: bench_batch [--layerkv] [MODEL] [C] [N] [THREADS]    (default: the SmolLM2 GGUF, 128, 8,
 *        1; MODEL "": the default) */
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

/* layer l of L resident with r resident: floor((l + 1) r / L) > floor(l r / L) (LayerKV) */
static bool resident_of(int32_t L, int32_t r, int32_t l) {
    return (int64_t)(l + 1) * r / L > (int64_t)l * r / L;
}

static int layerkv_main(const char *name, int64_t C, int N, int32_t nt) {
    kvr_error e;
    kvr_model_load_params lp = kvr_model_load_params_default();
    kvr_model *m = NULL;
    if (kvr_model_load(name, &lp, &m, &e) != KVR_OK) FAIL(name);
    const kvr_model_config *cfg = kvr_model_get_config(m);
    const int32_t L = cfg->n_layers, R = L / 2, bt = 16, Bmax = 4;
    const int64_t per = (C + N) / bt + 1; /* token blocks per sequence */
    const kvr_backend *be;
    kvr_weights *w = NULL;
    kvr_kv_pool *pool = NULL;
    kvr_batch_runner *r = NULL;
    /* device: the resident sequences, the offloaded ones' resident layers, their swap-ins */
    if (kvr_backend_get("cpu", &be, &e) || kvr_weights_upload(be, m, &w, &e) ||
        kvr_kv_pool_create(w, 2 * per * Bmax, bt, &pool, &e) ||
        /* staging for two layers of all B: a layer's copies overlap the next one's compute */
        kvr_kv_pool_add_host(pool, per * Bmax * (L - R), 2 * per * Bmax, &e) ||
        kvr_batch_runner_create(w, pool, C * Bmax, nt, &r, &e))
        FAIL("setup");
    int32_t *ids = malloc((size_t)(C + N) * sizeof *ids);
    int32_t *rid = malloc((size_t)(Bmax * per * L) * sizeof *rid); /* resident sequences' ids */
    int32_t *oid = malloc((size_t)(Bmax * per * L) * sizeof *oid); /* offloaded ones' */
    const int32_t **rtab = malloc((size_t)(Bmax * L) * sizeof *rtab);
    const int32_t **otab = malloc((size_t)(Bmax * L) * sizeof *otab);
    bool *off = calloc((size_t)L, sizeof *off);
    kvr_kv_copy *cp = malloc((size_t)(Bmax * per * L) * sizeof *cp);
    for (int64_t i = 0; i < C + N; i++) ids[i] = (int32_t)((i * 7919 + 13) % cfg->vocab_size);
    int32_t dev = 0, host = 0;
    for (int32_t l = 0; l < L; l++) off[l] = !resident_of(L, R, l);
    for (int b = 0; b < Bmax; b++)
        for (int32_t l = 0; l < L; l++) {
            int32_t *rt = rid + ((size_t)b * L + l) * per, *ot = oid + ((size_t)b * L + l) * per;
            for (int64_t k = 0; k < per; k++) {
                rt[k] = dev++;
                ot[k] = off[l] ? host++ : dev++;
            }
            rtab[b * L + l] = rt, otab[b * L + l] = ot;
        }
    printf("# bench_batch --layerkv: %s, %lld cached tokens per sequence, %d of %d layers "
           "resident (odd), %d steps, %d threads, blocks of %d, staging %lld layer blocks\n",
           name, (long long)C, R, L, N, nt, bt, (long long)kvr_kv_pool_staging_blocks(pool));
    printf("%2s %9s %9s %6s | %9s %9s %6s | %9s %9s %6s | %8s\n", "B", "pf_res", "pf_off",
           "ratio", "step_res", "stream", "ratio", "step_res", "swapped", "ratio", "swap_in");
    printf("%2s %9s %9s %6s | %9s %9s %6s | %9s %9s %6s | %8s\n", "", "ms", "ms", "", "ms", "ms",
           "", "ms", "ms", "", "ms");
    const int Bs[2] = {1, Bmax};
    kvr_batch_seq sr[4], so[4];
    for (int k = 0; k < 2; k++) {
        const int B = Bs[k];
        const int32_t *const *R0 = rtab, *const *O0 = otab;
        for (int b = 0; b < B; b++) {
            sr[b] = (kvr_batch_seq){ids, C, 0, R0 + b * L, per, false, NULL};
            so[b] = (kvr_batch_seq){ids, C, 0, O0 + b * L, per, false, off};
        }
        double t0 = kvr_time_us();
        if (kvr_batch_run(r, sr, B, &e)) FAIL("resident prefill");
        const double pf_res = kvr_time_us() - t0;
        t0 = kvr_time_us();
        if (kvr_batch_run(r, so, B, &e)) FAIL("offloaded prefill");
        const double pf_off = kvr_time_us() - t0; /* its last copies may still run: in the steps */
        double t_res = 0, t_str = 0, t_res2 = 0, t_swp = 0;
        for (int step = 0; step < N; step++) { /* interleaved: the same machine state for both */
            for (int b = 0; b < B; b++) {
                sr[b] = (kvr_batch_seq){ids + C + step, 1, C + step, R0 + b * L, per, true, NULL};
                so[b] = (kvr_batch_seq){ids + C + step, 1, C + step, O0 + b * L, per, true, off};
            }
            t0 = kvr_time_us();
            if (kvr_batch_run(r, sr, B, &e)) FAIL("resident step");
            t_res += kvr_time_us() - t0;
            t0 = kvr_time_us();
            if (kvr_batch_run(r, so, B, &e)) FAIL("stream step");
            t_str += kvr_time_us() - t0;
        }
        /* swap-in: the offloaded layers' host blocks into fresh device blocks, once */
        int64_t nc = 0;
        int32_t d2 = dev;
        int32_t *sw = malloc((size_t)(B * L * per) * sizeof *sw);
        const int32_t **swt = malloc((size_t)(B * L) * sizeof *swt);
        for (int b = 0; b < B; b++)
            for (int32_t l = 0; l < L; l++) {
                int32_t *t = sw + ((size_t)b * L + l) * per;
                for (int64_t q = 0; q < per; q++) {
                    t[q] = off[l] ? d2++ : O0[b * L + l][q];
                    if (off[l]) cp[nc++] = (kvr_kv_copy){t[q], O0[b * L + l][q], false};
                }
                swt[b * L + l] = t;
            }
        t0 = kvr_time_us();
        if (kvr_kv_pool_copy(pool, cp, nc, &e)) FAIL("swap-in");
        const double t_swapin = kvr_time_us() - t0;
        for (int step = 0; step < N; step++) { /* the same positions again (same K/V written) */
            for (int b = 0; b < B; b++) {
                sr[b] = (kvr_batch_seq){ids + C + step, 1, C + step, R0 + b * L, per, true, NULL};
                so[b] = (kvr_batch_seq){ids + C + step, 1, C + step, swt + b * L, per, true, NULL};
            }
            t0 = kvr_time_us();
            if (kvr_batch_run(r, sr, B, &e)) FAIL("resident step");
            t_res2 += kvr_time_us() - t0;
            t0 = kvr_time_us();
            if (kvr_batch_run(r, so, B, &e)) FAIL("swapped step");
            t_swp += kvr_time_us() - t0;
        }
        free(sw), free(swt);
        printf("%2d %9.2f %9.2f %6.3f | %9.2f %9.2f %6.3f | %9.2f %9.2f %6.3f | %8.2f\n", B,
               pf_res * 1e-3, pf_off * 1e-3, pf_off / pf_res, t_res / N * 1e-3, t_str / N * 1e-3,
               t_str / t_res, t_res2 / N * 1e-3, t_swp / N * 1e-3, t_swp / t_res2,
               t_swapin * 1e-3);
    }
    kvr_kv_pool_stats ps = kvr_kv_pool_get_stats(pool);
    printf("# copier: %lld layer blocks out, %lld in, %.1f ms copying, %lld staging waits\n",
           (long long)ps.copies_out, (long long)ps.copies_in, ps.copy_busy_us * 1e-3,
           (long long)ps.stage_waits);
    free(ids), free(rid), free(oid), free(rtab), free(otab), free(off), free(cp);
    kvr_batch_runner_destroy(r);
    kvr_kv_pool_destroy(pool);
    kvr_weights_free(w);
    kvr_model_destroy(m);
    return 0;
}

int main(int argc, char **argv) {
    kvr_error e;
    char path[1024];
    const bool layerkv = argc > 1 && !strcmp(argv[1], "--layerkv");
    if (layerkv) argc--, argv++;
    const char *name = argc > 1 && argv[1][0] ? argv[1] : NULL;
    if (!name) {
        if (kvr_model_default_path(path, sizeof path, &e) != KVR_OK) FAIL("model");
        name = path;
    }
    const int64_t C = argc > 2 ? atoll(argv[2]) : 128;
    const int N = argc > 3 ? atoi(argv[3]) : 8;
    const int32_t nt = argc > 4 ? atoi(argv[4]) : 1;
    if (layerkv) return layerkv_main(name, C, N, nt);
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
