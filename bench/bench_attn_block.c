/* bench_attn_block.c -- the ring schedule's blockwise attention (kvr_op_attn_block) against the
 * causal attention op (kvr_op_attn) over the same (query, key) area, side by side in one run.
 * Prints per-layer times and the ratio per area; asserts nothing about speed.
 *
 * Build: cmake --build build --target bench_attn_block
 * Run:   build/bench/bench_attn_block [--model PATH|PRESET] [--rows 256,512,1024] [--threads 1]
 *                                     [--reps 5]
 * Shapes, c query rows at positions [c, 2c):
 *   full     c rows over a block of c earlier keys: attn_block(kpos0 = 0, kn = c) against
 *            attn(c, P = c) - attn(c, P = 0) (the prefix increment the simulator used to charge)
 *   diagonal c rows over their own c keys, causal: attn_block(kpos0 = c, kn = c, first) against
 *            attn(c, P = 0)
 * Every time is the median over --reps of one call per layer summed over the model's layers. */
#include "bench_util.h"
#include "kvr_runtime.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


enum { SHAPE_ATTN, SHAPE_FULL_BLOCK, SHAPE_DIAG_BLOCK };

/* One shape over every layer; us summed over the layers. ws holds c rows at pos0 (set). */
static kvr_status time_shape(kvr_workspace *ws, int shape, int64_t c, int64_t P, int32_t L,
                             double *us, kvr_error *e) {
    const double t0 = kvr_time_us();
    for (int32_t l = 0; l < L; l++) {
        kvr_status st;
        void *K, *V;
        kvr_workspace_kv_buffers(ws, l, &K, &V);
        if (shape == SHAPE_ATTN) {
            if ((st = kvr_op_set_chunk(ws, c, P, e)) || (st = kvr_op_attn(ws, l, NULL, e)))
                return st;
        } else {
            const int64_t kpos0 = shape == SHAPE_FULL_BLOCK ? 0 : c;
            const size_t off = (size_t)kpos0 * (size_t)(kvr_workspace_config(ws)->n_kv_heads *
                                                        kvr_workspace_config(ws)->head_dim);
            if ((st = kvr_op_set_chunk(ws, c, c, e)) ||
                (st = kvr_op_attn_block(ws, (float *)K + off, (float *)V + off, kpos0, c, true, e)))
                return st;
        }
    }
    *us = kvr_time_us() - t0;
    return KVR_OK;
}

int main(int argc, char **argv) {
    const char *model = NULL, *rows = "256,512,1024";
    int nt = 1, reps = 5;
    setvbuf(stdout, NULL, _IOLBF, 0);
    static const struct option lo[] = {{"model", required_argument, 0, 'm'},
                                       {"rows", required_argument, 0, 'r'},
                                       {"threads", required_argument, 0, 't'},
                                       {"reps", required_argument, 0, 'n'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "m:r:t:n:h", lo, NULL)) != -1) {
        switch (ch) {
            case 'm': model = optarg; break;
            case 'r': rows = optarg; break;
            case 't': nt = atoi(optarg); break;
            case 'n': reps = atoi(optarg); break;
            default:
                fprintf(ch == 'h' ? stdout : stderr,
                        "usage: bench_attn_block [--model M] [--rows 256,512,1024] [--threads N] "
                        "[--reps N]\n");
                return ch == 'h' ? 0 : 2;
        }
    }
    if (nt < 1 || reps < 1 || reps > 32) {
        fprintf(stderr, "bench_attn_block: --threads >= 1, --reps 1..32\n");
        return 2;
    }
    kvr_error e;
    char path[4096];
    if (!model) {
        if (kvr_model_default_path(path, sizeof path, &e) != KVR_OK) {
            fprintf(stderr, "bench_attn_block: %s\n", e.msg);
            return 1;
        }
        model = path;
    }
    kvr_model_load_params lp = kvr_model_load_params_default();
    kvr_model *m = NULL;
    if (kvr_model_load(model, &lp, &m, &e) != KVR_OK) {
        fprintf(stderr, "bench_attn_block: %s\n", e.msg);
        return 1;
    }
    const kvr_model_config *cfg = kvr_model_get_config(m);
    printf("# bench_attn_block: %s, %d layers, %d heads x %d (%d KV), %d thread(s), median of %d\n",
           model, cfg->n_layers, cfg->n_heads, cfg->head_dim, cfg->n_kv_heads, nt, reps);
    printf("#  rows   attn(c,0)  attn(c,c)  block-full  full/incr  block-diag  diag/attn   (ms)\n");
    int rc = 0;
    for (const char *s = rows; *s;) {
        char *end;
        const long long c = strtoll(s, &end, 10);
        if (end == s || c < 1 || c > 65536) {
            fprintf(stderr, "bench_attn_block: --rows '%s': need counts 1..65536\n", rows);
            rc = 2;
            break;
        }
        s = *end == ',' ? end + 1 : end;
        kvr_weights *w = NULL;
        kvr_workspace *ws = NULL;
        int32_t *ids = calloc((size_t)c, sizeof *ids);
        double t[4][32];
        if (!ids || kvr_weights_upload(kvr_backend_at(0), m, &w, &e) ||
            kvr_workspace_create(w, c, 2 * c, nt, &ws, &e)) {
            fprintf(stderr, "bench_attn_block: %s\n", ids ? e.msg : "out of memory");
            rc = 1;
        }
        for (int64_t i = 0; rc == 0 && i < c; i++) ids[i] = (int32_t)((i * 7919) % cfg->vocab_size);
        /* fill Q and the cache's rows [0, 2c) of every layer: pre on both halves */
        for (int half = 0; rc == 0 && half < 2; half++) {
            if (kvr_op_embed(ws, ids, c, half * c, &e)) rc = 1;
            for (int32_t l = 0; rc == 0 && l < cfg->n_layers; l++)
                if (kvr_op_pre(ws, l, &e)) rc = 1;
        }
        /* t[0] attn(c, 0), t[1] attn(c, c), t[2] full block, t[3] diagonal block */
        for (int r = 0; rc == 0 && r <= reps; r++) { /* r = 0: warm-up */
            double us[4];
            if (time_shape(ws, SHAPE_ATTN, c, 0, cfg->n_layers, &us[0], &e) ||
                time_shape(ws, SHAPE_ATTN, c, c, cfg->n_layers, &us[1], &e) ||
                time_shape(ws, SHAPE_FULL_BLOCK, c, c, cfg->n_layers, &us[2], &e) ||
                time_shape(ws, SHAPE_DIAG_BLOCK, c, c, cfg->n_layers, &us[3], &e))
                rc = 1;
            for (int k = 0; r > 0 && k < 4; k++) t[k][r - 1] = us[k];
        }
        if (rc == 1) fprintf(stderr, "bench_attn_block: %s\n", e.msg);
        if (rc == 0) {
            const double a0 = bench_median(t[0], reps) * 1e-3;
            const double ac = bench_median(t[1], reps) * 1e-3;
            const double bf = bench_median(t[2], reps) * 1e-3;
            const double bd = bench_median(t[3], reps) * 1e-3;
            printf("%7lld %11.2f %10.2f %11.2f %10.2f %11.2f %10.2f\n", c, a0, ac, bf,
                   bf / (ac - a0), bd, bd / a0);
        }
        kvr_workspace_destroy(ws);
        kvr_weights_free(w);
        free(ids);
        if (rc) break;
    }
    kvr_model_destroy(m);
    return rc;
}
