/* bench_predict.c -- KVR-P: how close predicted partitions come to KVR-S, and what a prediction
 * costs (not a test: prints figures, asserts nothing).
 *
 * For each example cost setting (docs/examples: llama7b_a100.json with its NVLink-class link,
 * the same with a 10 GB/s link, llama7b_a100_2nodes.json, and links_pcie_8.json as links file)
 * and p in {2, 4, 8}: a KVR-S table over a geometric grid of contexts from 1K to 64K (default 13
 * points, two per octave), the predictor fitted on it, then
 *   loo        leave-one-out gap over the table's interior contexts (what selection saw),
 *   in-range   gap at 200 random contexts strictly between the table's ends, none in the table,
 *   below      gap at contexts from p*g up to the smallest table context (extrapolation),
 *   above      gap at 96K, 128K, 192K, 256K (extrapolation),
 * where gap = TTFT(predicted partition) / TTFT(fresh KVR-S search) - 1 under the same costs.
 * Then the cost of kvr_predictor_predict (ns per call, median of 9 runs of 200k calls over
 * varying C) for p = 2, 8, 64.
 *
 * Build and run:  cd build && ninja bench_predict && ./bench/bench_predict [examples_dir [points]]
 *   examples_dir defaults to ../docs/examples (run from build/). */
#include "kvr_predict.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint64_t rnd(void) {
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

typedef struct setting {
    const char *name, *costs, *links;
    double gbps; /* > 0: override every link's bandwidth */
} setting;

static kvr_search_costs *load(const char *dir, const setting *st) {
    char path[1024];
    kvr_error e;
    kvr_search_costs *m;
    snprintf(path, sizeof path, "%s/%s", dir, st->costs);
    if (kvr_search_costs_load_json(path, &m, &e) != KVR_OK) {
        fprintf(stderr, "bench_predict: %s\n", e.msg);
        return NULL;
    }
    if (st->links) {
        snprintf(path, sizeof path, "%s/%s", dir, st->links);
        if (kvr_search_costs_load_links_json(m, path, &e) != KVR_OK) {
            fprintf(stderr, "bench_predict: %s\n", e.msg);
            kvr_search_costs_destroy(m);
            return NULL;
        }
    }
    if (st->gbps > 0 && kvr_search_costs_override_links(m, -1, st->gbps, &e) != KVR_OK) {
        fprintf(stderr, "bench_predict: %s\n", e.msg);
        kvr_search_costs_destroy(m);
        return NULL;
    }
    return m;
}

typedef struct gapstat {
    double sum, max;
    int n;
} gapstat;

/* One KVR-S search per context, then the gap of the raw and the refined prediction. */
static int measure(const kvr_predictor *kp, const kvr_search_costs *m, int p, const int64_t *ctx,
                   int n, gapstat *raw, gapstat *ref) {
    int64_t a[64], b[64];
    kvr_error e;
    kvr_search_params sp = kvr_search_params_default();
    sp.granularity = kvr_predictor_granularity(kp);
    for (int j = 0; j < n; j++) {
        kvr_search_stats st;
        double t_raw, t_ref;
        if (kvr_search_partition(m, p, ctx[j], &sp, a, &st, &e) != KVR_OK ||
            kvr_predictor_predict(kp, p, ctx[j], b, &e) != KVR_OK ||
            kvr_search_sim_kvr(m, p, b, NULL, &t_raw, &e) != KVR_OK ||
            kvr_predictor_predict_refined(kp, m, p, ctx[j], 0, b, NULL, &e) != KVR_OK ||
            kvr_search_sim_kvr(m, p, b, NULL, &t_ref, &e) != KVR_OK) {
            fprintf(stderr, "bench_predict: %s\n", e.msg);
            return 1;
        }
        double g0 = t_raw / st.ttft_us - 1, g1 = t_ref / st.ttft_us - 1;
        raw->sum += g0;
        raw->max = raw->n ? (g0 > raw->max ? g0 : raw->max) : g0;
        raw->n++;
        ref->sum += g1;
        ref->max = ref->n ? (g1 > ref->max ? g1 : ref->max) : g1;
        ref->n++;
    }
    return 0;
}

static void put(const gapstat *g, gapstat *agg_mean_max) {
    if (!g->n) {
        printf(" %8s %8s", "-", "-");
        return;
    }
    printf(" %8.4f %8.4f", 100 * g->sum / g->n, 100 * g->max);
    agg_mean_max->sum += g->sum / g->n;
    agg_mean_max->n++;
    if (g->max > agg_mean_max->max) agg_mean_max->max = g->max;
}

static int bench_gaps(const char *dir, int points, bool densify) {
    const setting settings[] = {
        {"a100-nvlink", "llama7b_a100.json", NULL, 0},
        {"a100-10GB/s", "llama7b_a100.json", NULL, 10},
        {"a100-2nodes", "llama7b_a100_2nodes.json", NULL, 0},
        {"a100-pcie8", "llama7b_a100.json", "links_pcie_8.json", 0},
    };
    const int ranks[] = {2, 4, 8};
    const int64_t g = 16, lo = 1024, hi = 65536;
    int64_t *grid = malloc((size_t)points * sizeof *grid);
    if (!grid) return 1;
    for (int k = 0; k < points; k++)
        grid[k] = (int64_t)llround(lo * pow((double)hi / lo, (double)k / (points - 1)));
    printf("# KVR-P gap vs KVR-S (percent; gap = TTFT(predicted)/TTFT(KVR-S) - 1), granularity %lld\n",
           (long long)g);
    printf("# table: %d contexts, geometric %lld..%lld; in-range: 200 random contexts not in the "
           "table; below: p*g..%lld; above: 96K..256K\n",
           points, (long long)lo, (long long)hi, (long long)lo);
    printf("%-12s %2s %-14s %4s %-7s %8s %8s %8s %8s %8s %8s %8s %8s\n", "setting", "p", "form",
           "ctx", "mode", "loo_mean", "loo_max", "in_mean", "in_max", "lo_mean", "lo_max",
           "hi_mean", "hi_max");
    gapstat agg[2][3];
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 3; b++) agg[a][b] = (gapstat){0, -1, 0};
    for (size_t si = 0; si < sizeof settings / sizeof settings[0]; si++) {
        kvr_search_costs *m = load(dir, &settings[si]);
        if (!m) return 1;
        for (size_t ri = 0; ri < sizeof ranks / sizeof ranks[0]; ri++) {
            int p = ranks[ri];
            kvr_search_table_config cfg = {&p, 1, grid, points, kvr_search_params_default(),
                                           1u << KVR_STRATEGY_KVR_S};
            cfg.params.granularity = g;
            kvr_search_table *t;
            kvr_predictor *kp;
            kvr_error e;
            kvr_predictor_options po = kvr_predictor_options_default();
            if (!densify) po.densify_gap = 0;
            if (kvr_search_table_create(m, &cfg, &t, &e) != KVR_OK ||
                kvr_predictor_fit(m, t, g, &po, &kp, &e) != KVR_OK) {
                fprintf(stderr, "bench_predict: %s\n", e.msg);
                return 1;
            }
            kvr_predictor_stats st;
            kvr_predictor_stats_get(kp, p, &st, &e);
            int64_t in[200];
            int nin = 0;
            while (nin < 200) {
                int64_t C = lo + 1 + (int64_t)(rnd() % (uint64_t)(hi - lo - 1));
                bool dup = false;
                for (int k = 0; k < points; k++) dup = dup || grid[k] == C;
                if (!dup) in[nin++] = C;
            }
            int64_t below[16];
            int nb = 0;
            for (int64_t C = p * g; C < lo && nb < 16; C = C * 3 / 2 + 1) below[nb++] = C;
            const int64_t above[] = {98304, 131072, 196608, 262144};
            gapstat r[2][3];
            memset(r, 0, sizeof r);
            if (measure(kp, m, p, in, nin, &r[0][0], &r[1][0]) ||
                measure(kp, m, p, below, nb, &r[0][1], &r[1][1]) ||
                measure(kp, m, p, above, 4, &r[0][2], &r[1][2]))
                return 1;
            for (int mode = 0; mode < 2; mode++) {
                printf("%-12s %2d %-14s %4d %-7s", settings[si].name, p,
                       kvr_predictor_form_name(st.form), st.n_contexts, mode ? "refined" : "raw");
                if (mode == 0)
                    printf(" %8.4f %8.4f", 100 * st.loo_mean_gap, 100 * st.loo_max_gap);
                else
                    printf(" %8s %8s", "", "");
                for (int k = 0; k < 3; k++) put(&r[mode][k], &agg[mode][k]);
                printf("\n");
            }
            kvr_predictor_destroy(kp);
            kvr_search_table_destroy(t);
        }
        kvr_search_costs_destroy(m);
    }
    for (int mode = 0; mode < 2; mode++)
        printf("# %s over %d (setting, p): in-range mean %.4f%%, max %.4f%%; below: mean %.4f%%, "
               "max %.4f%%; above: mean %.4f%%, max %.4f%%\n",
               mode ? "refined" : "raw    ", agg[mode][0].n, 100 * agg[mode][0].sum / agg[mode][0].n,
               100 * agg[mode][0].max, 100 * agg[mode][1].sum / agg[mode][1].n,
               100 * agg[mode][1].max, 100 * agg[mode][2].sum / agg[mode][2].n,
               100 * agg[mode][2].max);
    free(grid);
    return 0;
}

static int bench_speed(const char *dir, int points) {
    setting st = {"a100-nvlink", "llama7b_a100.json", NULL, 0};
    kvr_search_costs *m = load(dir, &st);
    if (!m) return 1;
    const int ranks[] = {2, 8, 64};
    printf("# kvr_predictor_predict cost (ns per call; median of 9 runs of 200000 calls, C varying)\n");
    printf("%3s %-14s %-7s %10s %10s %10s\n", "p", "form", "mode", "min_ns", "median_ns",
           "max_ns");
    for (size_t ri = 0; ri < sizeof ranks / sizeof ranks[0]; ri++) {
        int p = ranks[ri];
        int64_t g = p == 64 ? 256 : 16;
        int64_t ctx[64];
        for (int k = 0; k < points && k < 64; k++)
            ctx[k] = (int64_t)llround(p * g * 4 * pow(64.0, (double)k / (points - 1)));
        kvr_search_table_config cfg = {&p, 1, ctx, points, kvr_search_params_default(),
                                       1u << KVR_STRATEGY_KVR_S};
        cfg.params.granularity = g;
        kvr_search_table *t;
        kvr_predictor *kp;
        kvr_error e;
        if (kvr_search_table_create(m, &cfg, &t, &e) != KVR_OK ||
            kvr_predictor_fit(m, t, g, NULL, &kp, &e) != KVR_OK) {
            fprintf(stderr, "bench_predict: %s\n", e.msg);
            return 1;
        }
        kvr_predictor_stats s;
        kvr_predictor_stats_get(kp, p, &s, &e);
        int64_t *ch = malloc((size_t)p * sizeof *ch);
        for (int mode = 0; mode < 2; mode++) {
            /* refined calls cost O(moves x p^2): fewer of them for many ranks */
            const int calls = mode ? (p > 8 ? 200 : 20000) : 200000;
            double ns[9];
            volatile int64_t sink = 0;
            for (int rep = 0; rep < 10; rep++) { /* rep 0 warms up */
                double t0 = kvr_time_us();
                for (int i = 0; i < calls; i++) {
                    int64_t C = ctx[0] + (int64_t)((uint64_t)i * 7919u % (uint64_t)(ctx[points - 1] - ctx[0]));
                    if (mode)
                        kvr_predictor_predict_refined(kp, m, p, C, 0, ch, NULL, NULL);
                    else
                        kvr_predictor_predict(kp, p, C, ch, NULL);
                    sink += ch[p - 1];
                }
                double dt = kvr_time_us() - t0;
                if (rep > 0) ns[rep - 1] = dt * 1e3 / calls;
            }
            (void)sink;
            qsort(ns, 9, sizeof ns[0], cmp_double);
            printf("%3d %-14s %-7s %10.1f %10.1f %10.1f\n", p, kvr_predictor_form_name(s.form),
                   mode ? "refined" : "raw", ns[0], ns[4], ns[8]);
        }
        free(ch);
        kvr_predictor_destroy(kp);
        kvr_search_table_destroy(t);
    }
    kvr_search_costs_destroy(m);
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "../docs/examples";
    int points = argc > 2 ? atoi(argv[2]) : 13;
    bool densify = !(argc > 3 && strcmp(argv[3], "--no-densify") == 0);
    if (points < 4 || points > 64) {
        fprintf(stderr, "usage: bench_predict [examples_dir [points 4..64]]\n");
        return 2;
    }
    printf("# bench_predict (kvr %s, commit %s)\n", kvr_version(), kvr_build_commit());
    if (bench_gaps(dir, points, densify) != 0) return 1;
    return bench_speed(dir, points);
}
