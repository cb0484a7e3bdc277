/* bench_dequant.c -- the cost of keeping weights in their stored types on the cpu backend, side
 * by side in one run (issue 15 item 2). Prints figures; asserts nothing about speed.
 *
 * Build: cmake --build build --target bench_dequant
 * Run:   build/bench/bench_dequant [--model PATH] [--tokens 512] [--threads 1] [--reps 3]
 * For the model as loaded (matrices in their stored types) and for the same model expanded to
 * fp32 (model_dequant_all into an all-F32 model: what kvr loaded before), each rep times:
 *   prefill  embed + every layer's pre/attn/post + head over --tokens tokens; for the stored
 *            model also the part of it spent dequantizing weights into the workspace scratch
 *            (kvr_workspace.dequant_us) and its share of the prefill;
 *   step     one decode-sized chunk (1 token at position --tokens): the stored model multiplies
 *            row by row in its stored type (chunks <= 8 tokens), the fp32 model runs sgemm.
 * Every figure is the median over --reps. Also the weights' bytes of both models. */
#include "bench_util.h"
#include "backend_internal.h"
#include "kvr_runtime.h"
#include "runtime_internal.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static kvr_status run_layers(kvr_workspace *ws, int32_t L, kvr_error *e) {
    for (int32_t l = 0; l < L; l++) {
        KVR_TRY(kvr_op_pre(ws, l, e));
        KVR_TRY(kvr_op_attn(ws, l, NULL, e));
        KVR_TRY(kvr_op_post(ws, l, e));
    }
    return kvr_op_head(ws, NULL, e);
}

/* One rep: prefill of T tokens, then one 1-token step after them. */
static kvr_status time_model(const kvr_model *m, int64_t T, int32_t nt, double *prefill_ms,
                             double *dequant_ms, double *step_ms, kvr_error *e) {
    const kvr_backend *be;
    kvr_weights *w = NULL;
    kvr_workspace *ws = NULL;
    KVR_TRY(kvr_backend_get("cpu", &be, e));
    KVR_TRY(kvr_weights_upload(be, m, &w, e));
    kvr_status st = kvr_workspace_create(w, T, T + 1, nt, &ws, e);
    int32_t *ids = malloc((size_t)T * sizeof *ids);
    if (st == KVR_OK && !ids) st = kvr_error_set(e, KVR_ERR_NOMEM, "out of memory");
    if (st == KVR_OK) {
        for (int64_t i = 0; i < T; i++) ids[i] = (int32_t)((i * 7919 + 13) % m->cfg.vocab_size);
        ws->dequant_us = 0;
        double t0 = kvr_time_us();
        st = kvr_op_embed(ws, ids, T, 0, e);
        if (st == KVR_OK) st = run_layers(ws, m->cfg.n_layers, e);
        *prefill_ms = (kvr_time_us() - t0) / 1e3;
        *dequant_ms = ws->dequant_us / 1e3;
        t0 = kvr_time_us();
        if (st == KVR_OK) st = kvr_op_embed(ws, ids, 1, T, e);
        if (st == KVR_OK) st = run_layers(ws, m->cfg.n_layers, e);
        *step_ms = (kvr_time_us() - t0) / 1e3;
    }
    free(ids);
    kvr_workspace_destroy(ws);
    kvr_weights_free(w);
    return st;
}

int main(int argc, char **argv) {
    const char *model = NULL;
    int64_t T = 512;
    int32_t nt = 1, reps = 3;
    static const struct option lo[] = {{"model", required_argument, 0, 'm'},
                                       {"tokens", required_argument, 0, 'T'},
                                       {"threads", required_argument, 0, 't'},
                                       {"reps", required_argument, 0, 'n'},
                                       {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "m:T:t:n:", lo, NULL)) != -1) {
        if (ch == 'm') model = optarg;
        else if (ch == 'T') T = atoll(optarg);
        else if (ch == 't') nt = atoi(optarg);
        else if (ch == 'n') reps = atoi(optarg);
        else {
            fprintf(stderr, "usage: bench_dequant [--model PATH] [--tokens N] [--threads N] "
                            "[--reps N]\n");
            return 2;
        }
    }
    if (T < 9 || nt < 1 || reps < 1 || reps > 100) {
        fprintf(stderr, "bench_dequant: --tokens must be >= 9, --threads >= 1, --reps 1..100\n");
        return 2;
    }
    kvr_error e;
    char path[1024];
    if (!model) {
        if (kvr_model_default_path(path, sizeof path, &e) != KVR_OK) {
            fprintf(stderr, "bench_dequant: %s\n", e.msg);
            return 1;
        }
        model = path;
    }
    kvr_model_load_params lp = kvr_model_load_params_default();
    lp.load_tokenizer = false;
    kvr_model *q = NULL, *f = NULL;
    float *all = NULL;
    size_t n = 0;
    if (kvr_model_load(model, &lp, &q, &e) != KVR_OK || model_dequant_all(q, &all, &n, &e) != KVR_OK ||
        model_alloc(&q->cfg, NULL, &f, &e) != KVR_OK) {
        fprintf(stderr, "bench_dequant: %s: %s\n", model, e.msg);
        return 1;
    }
    memcpy(f->arena, all, n * sizeof(float));
    free(all);
    double *v[6];
    for (int i = 0; i < 6; i++) v[i] = calloc((size_t)reps, sizeof(double));
    for (int r = 0; r < reps; r++) { /* alternating, so drift hits both alike */
        if (time_model(q, T, nt, &v[0][r], &v[1][r], &v[2][r], &e) != KVR_OK ||
            time_model(f, T, nt, &v[3][r], &v[4][r], &v[5][r], &e) != KVR_OK) {
            fprintf(stderr, "bench_dequant: %s\n", e.msg);
            return 1;
        }
    }
    const double pq = bench_median(v[0], reps), dq = bench_median(v[1], reps);
    const double sq = bench_median(v[2], reps), pf = bench_median(v[3], reps);
    const double sf = bench_median(v[5], reps);
    printf("# bench_dequant %s: %d layers, d %d, ff %d, vocab %d; %lld tokens, %d thread(s), "
           "median of %d\n",
           q->cfg.name, q->cfg.n_layers, q->cfg.d_model, q->cfg.d_ff, q->cfg.vocab_size,
           (long long)T, nt, reps);
    printf("%-8s %12s %12s %12s %12s %14s\n", "weights", "MiB", "prefill_ms", "dequant_ms",
           "dequant_%", "step_ms(1 tok)");
    printf("%-8s %12.1f %12.1f %12.1f %12.2f %14.2f\n", "stored", q->arena_bytes / 1048576.0, pq,
           dq, 100 * dq / pq, sq);
    printf("%-8s %12.1f %12.1f %12s %12s %14.2f\n", "fp32", f->arena_bytes / 1048576.0, pf, "-",
           "-", sf);
    printf("# stored/fp32: prefill %.3fx, 1-token step %.3fx\n", pq / pf, sq / sf);
    for (int i = 0; i < 6; i++) free(v[i]);
    kvr_model_destroy(f);
    kvr_model_destroy(q);
    return 0;
}
