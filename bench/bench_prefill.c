/* bench_prefill.c -- single-rank prefill of a model against this machine's OpenBLAS sgemm rate,
 * measured side by side in one run, and KV-Runahead on 2 ranks (best of a partition sweep)
 * against single-rank. Prints figures; asserts nothing about speed.
 *
 * Build: cmake --build build --target bench_prefill
 * Run:   build/bench/bench_prefill [--model PATH|PRESET] [--contexts 512,2048] [--threads 2]
 *                                  [--reps 3] [--sweep-context 2048] [--ttft-only | --rates-only]
 * --ttft-only: no sgemm rates, attention share or sweep; per context, as a session
 *   (kvr-run): prepared ranks (kvr_prefill_ready_create: workspace made and touched once), one
 *   warm-up prefill of min(64, C) tokens, then the timed prefills on them; a line
 *   `C median_ttft_ms flop first_token median_cpu_ms` (process CPU time over kvr_prefill_run:
 *   less sensitive than the TTFT to other jobs on a shared machine) for bench/ab_prefill.sh and
 *   bench/vs_llamacpp.py. --rates-only: only the two sgemm rates, as `sgemm_2048 GFLOP/s`,
 *   `sgemm_2048_cpu GFLOP/s` (per process CPU second) and `sgemm_shape GFLOP/s` lines.
 * FLOPs counted (multiply-add = 2): the GEMMs 2*C*(D*(NH+2NKV)*HS + NH*HS*D + 3*D*FF) per layer,
 * causal attention 4*NH*HS*(C*(C+1)/2) per layer (QK^T and PV over the valid triangle), and the
 * LM head 2*D*V. */
#include "bench_util.h"
#include "kvr_runtime.h"

#include <cblas.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


static double cpu_ms_now(void);
static double last_sgemm_cpu_gflops; /* sgemm_gflops' last rate per process CPU second */

/* sgemm C(M,N) = A(M,K) . B(N,K)^T with nt OpenBLAS threads; median GFLOP/s over reps (and in
 * last_sgemm_cpu_gflops the median per process CPU second) */
static double sgemm_gflops(int M, int N, int K, int nt, int reps) {
    float *A = malloc(sizeof(float) * (size_t)M * K), *B = malloc(sizeof(float) * (size_t)N * K);
    float *C = malloc(sizeof(float) * (size_t)M * N);
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)N * K; i++) B[i] = (float)(i % 5) * 0.1f;
    openblas_set_num_threads(nt);
    double t[32], cpu[32];
    for (int r = 0; r < reps + 1; r++) {
        double t0 = kvr_time_us(), c0 = cpu_ms_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
        if (r > 0) t[r - 1] = kvr_time_us() - t0, cpu[r - 1] = cpu_ms_now() - c0; /* r 0: warm-up */
    }
    openblas_set_num_threads(1);
    free(A), free(B), free(C);
    last_sgemm_cpu_gflops = 2.0 * M * N * K / (bench_median(cpu, reps) * 1e6);
    return 2.0 * M * N * K / (bench_median(t, reps) * 1e3);
}

static double prefill_flops(const kvr_model_config *c, int64_t C) {
    double D = c->d_model, HS = c->head_dim, NH = c->n_heads, NKV = c->n_kv_heads, FF = c->d_ff;
    double gemm = 2.0 * (double)C * (D * (NH + 2 * NKV) * HS + NH * HS * D + 3 * D * FF);
    double attn = 4.0 * NH * HS * ((double)C * (double)(C + 1) / 2);
    return c->n_layers * (gemm + attn) + 2.0 * D * c->vocab_size;
}

/* One single-rank prefill through the layer ops with per-op timers: share of attention. */
static double attn_share(const kvr_model *m, const int32_t *ids, int64_t C, int nt) {
    kvr_weights *w = NULL;
    kvr_workspace *ws = NULL;
    kvr_event *ev[5] = {0}; /* start, after pre, after attn, after post, end */
    kvr_error e;
    double share = -1;
    if (kvr_weights_upload(kvr_backend_at(0), m, &w, &e) ||
        kvr_workspace_create(w, C, C, nt, &ws, &e))
        goto out;
    for (int i = 0; i < 5; i++)
        if (kvr_event_create(ws, &ev[i], &e)) goto out;
    double t_pre = 0, t_attn = 0, t_post = 0, total = 0, a;
    if (kvr_event_record(ev[0], &e) || kvr_op_embed(ws, ids, C, 0, &e)) goto out;
    for (int32_t l = 0; l < kvr_model_get_config(m)->n_layers; l++) {
        if (kvr_event_record(ev[1], &e) || kvr_op_pre(ws, l, &e) || kvr_event_record(ev[2], &e) ||
            kvr_event_elapsed_us(ev[1], ev[2], &a, &e))
            goto out;
        t_pre += a;
        if (kvr_op_attn(ws, l, NULL, &e) || kvr_event_record(ev[3], &e) ||
            kvr_event_elapsed_us(ev[2], ev[3], &a, &e))
            goto out;
        t_attn += a;
        if (kvr_op_post(ws, l, &e) || kvr_event_record(ev[4], &e) ||
            kvr_event_elapsed_us(ev[3], ev[4], &a, &e))
            goto out;
        t_post += a;
    }
    if (kvr_op_head(ws, NULL, &e) || kvr_event_record(ev[4], &e) ||
        kvr_event_elapsed_us(ev[0], ev[4], &total, &e))
        goto out;
    printf("#   %lld tokens: pre %.1f ms, attn %.1f ms, post %.1f ms, total %.1f ms\n",
           (long long)C, t_pre * 1e-3, t_attn * 1e-3, t_post * 1e-3, total * 1e-3);
    share = t_attn / total;
out:
    for (int i = 0; i < 5; i++) kvr_event_destroy(ev[i]);
    kvr_workspace_destroy(ws);
    kvr_weights_free(w);
    return share;
}

static int32_t last_first_token = -1; /* the first token of run_ttft's last prefill */

static double last_cpu_ms = 0; /* the median process CPU time of run_ttft's last prefills */

static double cpu_ms_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static double run_ttft_ready(const kvr_model *m, const int32_t *ids, int64_t C, kvr_mode mode,
                             int p, const int64_t *part, int nt, int reps,
                             kvr_prefill_ready *ready) {
    kvr_prefill_params pp = kvr_prefill_params_default();
    pp.ready = ready;
    pp.mode = mode;
    pp.n_ranks = p;
    pp.partition = part;
    pp.n_threads = nt;
    pp.keep_logits = false;
    double t[32], cpu[32];
    kvr_error e;
    for (int r = 0; r < reps; r++) {
        kvr_prefill_result res;
        const double c0 = cpu_ms_now();
        if (kvr_prefill_run(m, ids, C, &pp, &res, &e) != KVR_OK) {
            fprintf(stderr, "bench_prefill: %s\n", e.msg);
            exit(1);
        }
        cpu[r] = cpu_ms_now() - c0;
        t[r] = res.ttft_ms;
        last_first_token = res.first_token;
        kvr_prefill_result_free(&res);
    }
    last_cpu_ms = bench_median(cpu, reps);
    return bench_median(t, reps);
}

static double run_ttft(const kvr_model *m, const int32_t *ids, int64_t C, kvr_mode mode, int p,
                       const int64_t *part, int nt, int reps) {
    return run_ttft_ready(m, ids, C, mode, p, part, nt, reps, NULL);
}

int main(int argc, char **argv) {
    const char *model = NULL, *contexts = "512,2048";
    int nt = 2, reps = 3, ttft_only = 0, rates_only = 0;
    int64_t sweep_ctx = 2048;
    setvbuf(stdout, NULL, _IOLBF, 0); /* figures appear as they are measured */
    static const struct option lo[] = {{"model", required_argument, 0, 'm'},
                                       {"contexts", required_argument, 0, 'c'},
                                       {"threads", required_argument, 0, 't'},
                                       {"reps", required_argument, 0, 'n'},
                                       {"sweep-context", required_argument, 0, 's'},
                                       {"ttft-only", no_argument, 0, 'T'},
                                       {"rates-only", no_argument, 0, 'R'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "m:c:t:n:s:h", lo, NULL)) != -1) {
        switch (ch) {
            case 'm': model = optarg; break;
            case 'c': contexts = optarg; break;
            case 't': nt = atoi(optarg); break;
            case 'n': reps = atoi(optarg); break;
            case 's': sweep_ctx = atoll(optarg); break;
            case 'T': ttft_only = 1; break;
            case 'R': rates_only = 1; break;
            default:
                fprintf(ch == 'h' ? stdout : stderr,
                        "usage: bench_prefill [--model M] [--contexts 512,2048] [--threads N] "
                        "[--reps N] [--sweep-context C (0 = skip)] [--ttft-only | --rates-only]\n");
                return ch == 'h' ? 0 : 2;
        }
    }
    if (nt < 1 || reps < 1 || reps > 32) {
        fprintf(stderr, "bench_prefill: --threads >= 1, --reps 1..32\n");
        return 2;
    }
    kvr_error e;
    char path[1024];
    if (!model) {
        if (kvr_model_default_path(path, sizeof path, &e) != KVR_OK) {
            fprintf(stderr, "bench_prefill: %s\n", e.msg);
            return 1;
        }
        model = path;
    }
    kvr_model *m;
    kvr_model_load_params lp = kvr_model_load_params_default();
    if (kvr_model_load(model, &lp, &m, &e) != KVR_OK) {
        fprintf(stderr, "bench_prefill: %s\n", e.msg);
        return 1;
    }
    const kvr_model_config *cfg = kvr_model_get_config(m);
    if (ttft_only) { /* the timed prefill only, warmed up, machine-readable */
        printf("# bench_prefill --ttft-only: kvr %s (%s), model %s, %d threads, median of %d "
               "runs after a warm-up prefill on prepared ranks\n"
               "# context ttft_ms flop first_token cpu_ms\n",
               kvr_version(), kvr_build_commit(), cfg->name, nt, reps);
        char *list = strdup(contexts);
        for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
            int64_t C = atoll(tok);
            if (C < 1) continue;
            int32_t *ids = malloc((size_t)C * sizeof *ids);
            for (int64_t i = 0; i < C; i++) ids[i] = (int32_t)((i * 7919 + 13) % cfg->vocab_size);
            kvr_prefill_params pp = kvr_prefill_params_default();
            pp.n_threads = nt;
            kvr_prefill_ready *ready = NULL;
            if (kvr_prefill_ready_create(m, &pp, C, -1, &ready, &e) != KVR_OK) {
                fprintf(stderr, "bench_prefill: %s\n", e.msg);
                return 1;
            }
            run_ttft_ready(m, ids, KVR_MIN(C, 64), KVR_MODE_SINGLE, 1, NULL, nt, 1, ready);
            double ms = run_ttft_ready(m, ids, C, KVR_MODE_SINGLE, 1, NULL, nt, reps, ready);
            printf("%lld %.3f %.6g %d %.3f\n", (long long)C, ms, prefill_flops(cfg, C),
                   last_first_token, last_cpu_ms);
            kvr_prefill_ready_destroy(ready);
            free(ids);
        }
        free(list);
        kvr_model_destroy(m);
        return 0;
    }
    if (rates_only) {
        printf("sgemm_2048 %.2f\n", sgemm_gflops(2048, 2048, 2048, nt, reps));
        printf("sgemm_2048_cpu %.2f\n", last_sgemm_cpu_gflops);
        printf("sgemm_shape %.2f\n", sgemm_gflops(2048, 2 * cfg->d_ff, cfg->d_model, nt, reps));
        kvr_model_destroy(m);
        return 0;
    }
    printf("# bench_prefill: kvr %s (%s), model %s, %d threads, median of %d runs\n",
           kvr_version(), kvr_build_commit(), cfg->name, nt, reps);
    /* the reference rates, measured now, beside the prefill */
    double peak = sgemm_gflops(2048, 2048, 2048, nt, reps);
    double shape = sgemm_gflops(2048, 2 * cfg->d_ff, cfg->d_model, nt, reps);
    printf("# OpenBLAS %s sgemm, %d threads: 2048^3 %.1f GFLOP/s; model shape (2048 x %d x %d) "
           "%.1f GFLOP/s\n",
           openblas_get_config(), nt, peak, 2 * cfg->d_ff, cfg->d_model, shape);
    printf("%8s %10s %10s %10s %12s %12s %10s\n", "context", "ttft", "tok/s", "GFLOP/s",
           "vs_sgemm^3", "vs_shape", "attn_share");
    printf("%8s %10s %10s %10s %12s %12s %10s\n", "(tok)", "(ms)", "", "", "(ratio)", "(ratio)",
           "(frac)");
    char *list = strdup(contexts);
    int64_t max_c = 0;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        int64_t C = atoll(tok);
        if (C < 1) continue;
        max_c = KVR_MAX(max_c, C);
        int32_t *ids = malloc((size_t)C * sizeof *ids);
        for (int64_t i = 0; i < C; i++) ids[i] = (int32_t)((i * 7919 + 13) % cfg->vocab_size);
        double ms = run_ttft(m, ids, C, KVR_MODE_SINGLE, 1, NULL, nt, reps);
        double gf = prefill_flops(cfg, C) / (ms * 1e6);
        double share = attn_share(m, ids, C, nt);
        printf("%8lld %10.1f %10.1f %10.1f %12.3f %12.3f %10.3f\n", (long long)C, ms,
               (double)C / (ms * 1e-3), gf, gf / peak, gf / shape, share);
        free(ids);
    }
    free(list);

    if (sweep_ctx > 0) {
        const int64_t C = sweep_ctx;
        int32_t *ids = malloc((size_t)C * sizeof *ids);
        for (int64_t i = 0; i < C; i++) ids[i] = (int32_t)((i * 7919 + 13) % cfg->vocab_size);
        printf("\n# KV-Runahead on 2 ranks x 1 thread vs single-rank, %lld tokens\n", (long long)C);
        double single1 = run_ttft(m, ids, C, KVR_MODE_SINGLE, 1, NULL, 1, reps);
        double single2 = run_ttft(m, ids, C, KVR_MODE_SINGLE, 1, NULL, 2, reps);
        printf("%-22s %10s %12s %12s\n", "run", "ttft", "vs_single1", "vs_single2");
        printf("%-22s %10s %12s %12s\n", "", "(ms)", "(ratio)", "(ratio)");
        printf("%-22s %10.1f %12.3f %12.3f\n", "single 1x1", single1, 1.0, single1 / single2);
        printf("%-22s %10.1f %12.3f %12.3f\n", "single 1x2", single2, single2 / single1, 1.0);
        double best = 1e30;
        int64_t best_c0 = 0;
        const double fr[] = {0.50, 0.54, 0.58, 0.62, 0.66, 0.70};
        for (size_t i = 0; i < sizeof fr / sizeof fr[0]; i++) {
            int64_t part[2] = {(int64_t)(fr[i] * (double)C), 0};
            part[1] = C - part[0];
            double ms = run_ttft(m, ids, C, KVR_MODE_KVR, 2, part, 1, reps);
            char name[64];
            snprintf(name, sizeof name, "kvr 2x1 %lld,%lld", (long long)part[0],
                     (long long)part[1]);
            printf("%-22s %10.1f %12.3f %12.3f\n", name, ms, ms / single1, ms / single2);
            if (ms < best) best = ms, best_c0 = part[0];
        }
        double tsp = run_ttft(m, ids, C, KVR_MODE_TSP, 2, NULL, 1, reps);
        printf("%-22s %10.1f %12.3f %12.3f\n", "tsp 2x1 even", tsp, tsp / single1, tsp / single2);
        printf("# best kvr partition %lld,%lld: TTFT %.1f ms = %.3fx single 1x1, %.3fx single "
               "1x2 (speed-up %.2fx / %.2fx)\n",
               (long long)best_c0, (long long)(C - best_c0), best, best / single1, best / single2,
               single1 / best, single2 / best);
        free(ids);
    }
    kvr_model_destroy(m);
    return 0;
}
