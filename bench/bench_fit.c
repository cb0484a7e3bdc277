/* bench_fit.c -- how kvr-fit's time grows with the sample count (issue 17: it must stay
 * near-linear). Not a test: prints figures, asserts nothing.
 *
 * For N in {300, 3000, 30000, 1000000} samples (or the counts given): an imported run of
 * synthetic layer samples -- pre and post at N/3 distinct chunk sizes each, attn at N/3
 * distinct (c, prefix) points (c 1..32, prefixes every 64 tokens), times from a planted cost model with 3 % noise, the hardest case
 * for the fits since no two samples share a grid point -- is written into a scratch store
 * through the CSV import (kvr_db_csv_parse + kvr_db_csv_store, what kvr-db import does), then
 * kvr_predict_fit_run (what kvr-fit --run does: every op's fit with its break search and k-fold
 * validation, plus the held-out error band) is timed. Prints per N: the import time, the fit
 * time, the rows each op's fit used and how its data was reduced (kvr_predict_fit.reduce).
 *
 * Build and run:  cd build && ninja bench_fit && ./bench/bench_fit [N ...] */
#include "kvr_predict.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static double urand(void) { /* splitmix64 -> [0, 1) */
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (double)((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
}

static double noisy(double t) {
    return t * (1 + 0.03 * (2 * urand() - 1));
}

/* The CSV of n samples (kvr-db's import format). */
static char *make_csv(int64_t n, size_t *len) {
    kvr_text t = {0};
    kvr_text_printf(&t, "# model.name: synthetic\n# model.n_layers: 32\n"
                        "# model.kv_bytes_per_token: 2048\n# run.source: bench_fit\n"
                        "kind,op,c,prefix,median_us\n");
    const int64_t per = n / 3;
    for (int64_t i = 0; i < per; i++) {
        const int64_t c = 1 + i;
        kvr_text_printf(&t, "layer,pre,%lld,0,%.6g\n", (long long)c, noisy(20 + 0.05 * c));
        kvr_text_printf(&t, "layer,post,%lld,0,%.6g\n", (long long)c, noisy(30 + 0.12 * c));
    }
    for (int64_t i = 0; i < n - 2 * per; i++) { /* distinct (c, prefix): c in 1..32 */
        const int64_t c = 1 + i % 32, P = (i / 32) * 64;
        kvr_text_printf(&t, "layer,attn,%lld,%lld,%.6g\n", (long long)c, (long long)P,
                        noisy(10 + 0.02 * c + 0.001 * P + 1e-6 * (c * P + 0.5 * c * c)));
    }
    *len = t.len;
    char *s = NULL;
    kvr_error e;
    if (kvr_text_take(&t, &s, "bench csv", &e) != KVR_OK) return NULL;
    return s;
}

int main(int argc, char **argv) {
    int64_t counts[16] = {300, 3000, 30000, 1000000};
    int n_counts = 4;
    if (argc > 1) {
        n_counts = 0;
        for (int i = 1; i < argc && n_counts < 16; i++) counts[n_counts++] = atoll(argv[i]);
    }
    printf("# bench_fit: kvr_predict_fit_run on an imported run of N synthetic layer samples "
           "(no two at one grid point)\n");
    printf("%9s %9s %9s  %-46s %s\n", "N", "import_s", "fit_s", "rows fitted pre/attn/post",
           "reduce");
    fflush(stdout);
    for (int k = 0; k < n_counts; k++) {
        const int64_t n = counts[k];
        char path[] = "/tmp/kvr-bench-fit-XXXXXX";
        int fd = mkstemp(path);
        if (fd < 0) return 1;
        close(fd);
        unlink(path);
        kvr_error e;
        size_t len = 0;
        char *csv = make_csv(n, &len);
        kvr_db *db = NULL;
        kvr_db_csv *c = NULL;
        int64_t run = 0;
        kvr_db_open_params op = kvr_db_open_params_default();
        op.create = true;
        double t0 = kvr_time_us();
        if (!csv || kvr_db_open(path, &op, &db, &e) != KVR_OK ||
            kvr_db_csv_parse(csv, len, "synthetic.csv", &c, &e) != KVR_OK ||
            kvr_db_csv_store(db, c, &run, &e) != KVR_OK) {
            fprintf(stderr, "bench_fit: N = %lld: %s\n", (long long)n, e.msg);
            return 1;
        }
        const double t_import = (kvr_time_us() - t0) * 1e-6;
        kvr_db_csv_free(c);
        free(csv);
        kvr_predict_run_fit rf;
        t0 = kvr_time_us();
        kvr_status s = kvr_predict_fit_run(db, run, 0, NULL, &rf, &e);
        const double t_fit = (kvr_time_us() - t0) * 1e-6;
        if (s != KVR_OK) {
            fprintf(stderr, "bench_fit: N = %lld: fit: %s\n", (long long)n, e.msg);
            return 1;
        }
        char rows[128], how[160] = "";
        const kvr_op ops[3] = {KVR_OP_PRE, KVR_OP_ATTN, KVR_OP_POST};
        rows[0] = 0;
        for (int i = 0; i < 3; i++) {
            const kvr_predict_fit *f = kvr_predict_costs_fit(rf.costs, ops[i]);
            snprintf(rows + strlen(rows), sizeof rows - strlen(rows), "%s%d of %lld", i ? " / " : "",
                     f->lsq.n_obs, (long long)f->n_given);
            if (f->reduce[0] && !strstr(how, f->reduce))
                snprintf(how + strlen(how), sizeof how - strlen(how), "%s%s: %s", how[0] ? "; " : "",
                         kvr_op_name(ops[i]), f->reduce);
        }
        printf("%9lld %9.2f %9.2f  %-46s %s\n", (long long)n, t_import, t_fit, rows,
               how[0] ? how : "none");
        fflush(stdout);
        kvr_predict_run_fit_free(&rf);
        kvr_db_close(db);
        unlink(path);
        char side[64];
        snprintf(side, sizeof side, "%s-wal", path);
        unlink(side);
        snprintf(side, sizeof side, "%s-shm", path);
        unlink(side);
    }
    return 0;
}
