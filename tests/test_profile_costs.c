/* test_profile_costs.c -- a profile run as the search's cost model (profiler/costs.c): planted
 * costs sampled on a quick-like grid are reproduced at the grid points and closely between them,
 * extrapolation follows the documented rules, the model is monotone in c and prefix even on
 * noisy samples, links come from p2p samples (per pair, pooled for the rest, uniform from one
 * pair), the all-gather from all-gather samples, KVR-S on the interpolated model matches KVR-S on
 * the planted one, and missing samples, runs and incomplete runs are refused with messages that
 * say what to do. */
#include "kvr_profiler.h"
#include "kvr_search.h"
#include "kvr_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* planted per-layer costs (us) in the form of DESIGN.md section 6 */
static double pl_pre(double c) {
    return 40 + 2.0 * c;
}
static double pl_post(double c) {
    return 90 + 6.0 * c;
}
static double pl_attn(double c, double P) {
    return 15 + 0.3 * c + 0.05 * P + 0.004 * (c * P + c * c / 2);
}
static double pl_embed(double c) {
    return 1 + 0.01 * c;
}
#define PL_HEAD 700.0
#define PL_KVB  1536
#define PL_L    6

/* xorshift for reproducible noise */
static uint64_t rng_state = 88172645463325252ull;
static double rng_u(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static kvr_db_layer_sample sample(const char *op, int64_t c, int64_t P, double t) {
    kvr_db_layer_sample s;
    memset(&s, 0, sizeof s);
    snprintf(s.op, sizeof s.op, "%s", op);
    s.c = c;
    s.prefix = P;
    s.stats.median_us = t;
    s.stats.n_iters = 5;
    return s;
}

/* The quick grid's shape: c = 16..4096 (1/octave), prefixes 0, 256, 1024 and the diagonal
 * 4096 - c; noise: multiplicative, uniform in [1 - noise, 1 + noise]. */
static int64_t make_layers(kvr_db_layer_sample *s, double noise, uint32_t skip_ops) {
    int64_t n = 0;
    const int64_t ctx = 4096;
    for (int64_t c = 16; c <= 4096; c *= 2) {
        const double f1 = 1 + noise * (2 * rng_u() - 1), f2 = 1 + noise * (2 * rng_u() - 1),
                     f3 = 1 + noise * (2 * rng_u() - 1);
        if (!(skip_ops & 1u << KVR_OP_PRE)) s[n++] = sample("pre", c, 0, pl_pre((double)c) * f1);
        if (!(skip_ops & 1u << KVR_OP_POST)) s[n++] = sample("post", c, 0, pl_post((double)c) * f2);
        if (!(skip_ops & 1u << KVR_OP_EMBED))
            s[n++] = sample("embed", c, 0, pl_embed((double)c) * f3);
        if (skip_ops & 1u << KVR_OP_ATTN) continue;
        const int64_t Ps[4] = {0, 256, 1024, ctx - c};
        for (int k = 0; k < 4; k++) {
            if (c + Ps[k] > ctx || (k == 3 && (Ps[k] == 256 || Ps[k] == 1024 || Ps[k] == 0)))
                continue;
            if ((skip_ops & 1u << KVR_OP_LAYER_COUNT) && Ps[k] > 0)
                continue; /* attn at P = 0 only */
            const double f = 1 + noise * (2 * rng_u() - 1);
            s[n++] = sample("attn", c, Ps[k], pl_attn((double)c, (double)Ps[k]) * f);
        }
    }
    if (!(skip_ops & 1u << KVR_OP_HEAD)) s[n++] = sample("head", 1, 0, PL_HEAD);
    return n;
}

static kvr_db_transfer_sample xfer(int src, int dst, int64_t bytes, double t) {
    kvr_db_transfer_sample x;
    memset(&x, 0, sizeof x);
    snprintf(x.pattern, sizeof x.pattern, "p2p");
    x.src = src;
    x.dst = dst;
    x.n_ranks = 2;
    x.size_bytes = bytes;
    x.stats.median_us = t;
    return x;
}

static kvr_db_model planted_model(void) {
    kvr_db_model m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "planted");
    m.n_layers = PL_L;
    m.kv_bytes_per_token = PL_KVB;
    return m;
}

static kvr_search_costs *build(const kvr_db_layer_sample *ls, int64_t n,
                               const kvr_db_transfer_sample *ts, int64_t nt,
                               kvr_profile_costs_info *info) {
    kvr_db_model m = planted_model();
    kvr_search_costs *c = NULL;
    kvr_error err = {0};
    KVR_CHECK_OK(kvr_profile_costs_from_samples(&m, ls, n, ts, nt, "planted", NULL, &c, info,
                                                &err),
                 &err);
    return c;
}

static double rel(double a, double b) {
    return fabs(a - b) / fabs(b);
}

// ----------------------------------------------------------------------------

static void test_planted_grid_and_between(void) {
    kvr_db_layer_sample ls[256];
    const int64_t n = make_layers(ls, 0, 0);
    kvr_profile_costs_info info;
    kvr_search_costs *m = build(ls, n, NULL, 0, &info);
    if (!m) return;
    /* at the grid points: the samples */
    for (int64_t i = 0; i < n; i++) {
        double got = -1, want = ls[i].stats.median_us;
        if (!strcmp(ls[i].op, "pre")) got = kvr_search_costs_pre_us(m, ls[i].c);
        if (!strcmp(ls[i].op, "post")) got = kvr_search_costs_post_us(m, ls[i].c);
        if (!strcmp(ls[i].op, "attn")) got = kvr_search_costs_attn_us(m, ls[i].c, ls[i].prefix);
        if (got >= 0) KVR_CHECK_NEAR(got, want, 1e-9, 1e-9);
    }
    KVR_CHECK_NEAR(kvr_search_costs_head_us(m), PL_HEAD, 0, 1e-12);
    KVR_CHECK_NEAR(kvr_search_costs_embed_us(m), pl_embed(1024), 0, 1e-9);
    KVR_CHECK_EQ_INT(kvr_search_costs_n_layers(m), PL_L);
    KVR_CHECK(info.c_min == 16 && info.c_max == 4096 && info.ctx_max == 4096);
    KVR_CHECK_EQ_INT(info.n_link_pairs, 0);
    /* between the grid points (1 point per octave): within 3 % for the affine ops, 2 % for
     * attention (the prefix increment is exact in the cost form; attn(c, 0) is a Steffen
     * cubic in log-log between octaves) */
    double worst_pre = 0, worst_attn = 0;
    for (int64_t c = 16; c <= 4096; c += 16) {
        worst_pre = fmax(worst_pre, rel(kvr_search_costs_pre_us(m, c), pl_pre((double)c)));
        worst_pre = fmax(worst_pre, rel(kvr_search_costs_post_us(m, c), pl_post((double)c)));
        for (int64_t P = 0; P + c <= 4096; P += 112)
            worst_attn = fmax(worst_attn, rel(kvr_search_costs_attn_us(m, c, P),
                                              pl_attn((double)c, (double)P)));
    }
    printf("# planted: worst relative error between grid points: pre/post %.4f, attn %.4f\n",
           worst_pre, worst_attn);
    KVR_CHECK(worst_pre < 0.03);
    KVR_CHECK(worst_attn < 0.02);
    kvr_search_costs_destroy(m);
}

static void test_extrapolation_rules(void) {
    kvr_db_layer_sample ls[256];
    const int64_t n = make_layers(ls, 0, 0);
    kvr_search_costs *m = build(ls, n, NULL, 0, NULL);
    if (!m) return;
    /* below the first chunk: the first value */
    KVR_CHECK_NEAR(kvr_search_costs_pre_us(m, 4), pl_pre(16), 0, 1e-12);
    /* beyond the last: linear in c from the last two points (exact for affine pre/post) */
    KVR_CHECK_NEAR(kvr_search_costs_pre_us(m, 10000), pl_pre(10000), 0, 1e-9);
    KVR_CHECK_NEAR(kvr_search_costs_post_us(m, 8192), pl_post(8192), 0, 1e-9);
    /* attention at prefix 0 beyond the grid: linear in the causal area c^2/2 from the last two */
    const double a2 = pl_attn(2048, 0), a4 = pl_attn(4096, 0);
    const double u2 = 2048.0 * 2048 / 2, u4 = 4096.0 * 4096 / 2, u8 = 8192.0 * 8192 / 2;
    KVR_CHECK_NEAR(kvr_search_costs_attn_us(m, 8192, 0), a4 + (a4 - a2) / (u4 - u2) * (u8 - u4),
                   0, 1e-9);
    /* a long prefix beyond the profiled context: linear in P (exact in the cost form) */
    KVR_CHECK_NEAR(kvr_search_costs_attn_us(m, 1024, 12000), pl_attn(1024, 12000), 0, 1e-6);
    /* and within a few percent for a large chunk after a long prefix (extrapolated in c) */
    KVR_CHECK(rel(kvr_search_costs_attn_us(m, 6000, 6000), pl_attn(6000, 6000)) < 0.1);
    kvr_search_costs_destroy(m);
}

/* Monotone in c and in P, everywhere, even when the samples are not. */
static void test_monotone_on_noise(void) {
    for (int rep = 0; rep < 5; rep++) {
        kvr_db_layer_sample ls[256];
        const int64_t n = make_layers(ls, 0.25, 0);
        kvr_search_costs *m = build(ls, n, NULL, 0, NULL);
        if (!m) return;
        int bad = 0;
        double prev_pre = 0, prev_post = 0;
        for (int64_t c = 1; c <= 9000; c += 7) {
            const double pr = kvr_search_costs_pre_us(m, c), po = kvr_search_costs_post_us(m, c);
            bad += pr < prev_pre || po < prev_post || !(pr > 0) || !isfinite(pr);
            prev_pre = pr;
            prev_post = po;
        }
        for (int64_t P = 0; P <= 9000; P += 61) {
            double prev = 0;
            for (int64_t c = 1; c <= 9000; c += 37) {
                const double a = kvr_search_costs_attn_us(m, c, P);
                bad += a < prev * (1 - 1e-12) || !isfinite(a);
                prev = a;
            }
        }
        for (int64_t c = 1; c <= 9000; c += 53) {
            double prev = 0;
            for (int64_t P = 0; P <= 9000; P += 29) {
                const double a = kvr_search_costs_attn_us(m, c, P);
                bad += a < prev * (1 - 1e-12);
                prev = a;
            }
        }
        KVR_CHECK_EQ_INT(bad, 0);
        kvr_search_costs_destroy(m);
    }
}

/* Links: one measured pair makes every link the same; per-pair curves otherwise. */
static void test_links_from_p2p(void) {
    kvr_db_layer_sample ls[256];
    const int64_t n = make_layers(ls, 0, 0);
    kvr_db_transfer_sample ts[64];
    int nt = 0;
    for (int64_t b = 4096; b <= 4 << 20; b *= 2) /* 5 us + 20 GB/s */
        ts[nt++] = xfer(0, 1, b, 5 + (double)b / 20000);
    kvr_profile_costs_info info;
    kvr_search_costs *m = build(ls, n, ts, nt, &info);
    if (!m) return;
    kvr_error err = {0};
    KVR_CHECK_EQ_INT(info.n_link_pairs, 1);
    KVR_CHECK_EQ_INT(kvr_search_costs_max_ranks(m), INT32_MAX);
    /* a KVR transfer of n bytes: two messages of n/2 */
    const double bytes = 1 << 20;
    double t01 = 0, t23 = 0, t70 = 0;
    KVR_CHECK_OK(kvr_search_costs_link_us(m, 0, 1, bytes, &t01, &err), &err);
    KVR_CHECK_OK(kvr_search_costs_link_us(m, 2, 3, bytes, &t23, &err), &err);
    KVR_CHECK_OK(kvr_search_costs_link_us(m, 7, 0, bytes, &t70, &err), &err);
    KVR_CHECK_NEAR(t01, 2 * (5 + bytes / 2 / 20000), 0, 0.01);
    KVR_CHECK_NEAR(t23, t01, 0, 1e-12);
    KVR_CHECK_NEAR(t70, t01, 0, 1e-12);
    /* beyond the largest message: linear (the bandwidth) */
    double big = 0;
    KVR_CHECK_OK(kvr_search_costs_link_us(m, 0, 1, 64.0 * (1 << 20), &big, &err), &err);
    KVR_CHECK_NEAR(big, 2 * (5 + 32.0 * (1 << 20) / 20000), 0, 0.01);
    kvr_search_costs_destroy(m);

    /* two pairs at different speeds, the rest pooled */
    nt = 0;
    for (int64_t b = 4096; b <= 4 << 20; b *= 2) {
        ts[nt++] = xfer(0, 1, b, 5 + (double)b / 20000);
        ts[nt++] = xfer(1, 0, b, 5 + (double)b / 5000);
    }
    m = build(ls, n, ts, nt, &info);
    if (!m) return;
    KVR_CHECK_EQ_INT(info.n_link_pairs, 2);
    double t10 = 0, t12 = 0;
    KVR_CHECK_OK(kvr_search_costs_link_us(m, 0, 1, bytes, &t01, &err), &err);
    KVR_CHECK_OK(kvr_search_costs_link_us(m, 1, 0, bytes, &t10, &err), &err);
    KVR_CHECK_OK(kvr_search_costs_link_us(m, 1, 2, bytes, &t12, &err), &err);
    KVR_CHECK_NEAR(t01, 2 * (5 + bytes / 2 / 20000), 0, 0.01);
    KVR_CHECK_NEAR(t10, 2 * (5 + bytes / 2 / 5000), 0, 0.01);
    KVR_CHECK(t12 > t01 && t12 < t10); /* the pooled average */
    /* the options replace the measured curves */
    KVR_CHECK_OK(kvr_search_costs_override_links(m, 0, 1, &err), &err);
    KVR_CHECK_OK(kvr_search_costs_link_us(m, 0, 1, 1e6, &t01, &err), &err);
    KVR_CHECK_NEAR(t01, 1000, 0, 1e-12);
    kvr_search_costs_destroy(m);
}

static void test_allgather_from_samples(void) {
    kvr_db_layer_sample ls[256];
    const int64_t n = make_layers(ls, 0, 0);
    kvr_db_transfer_sample ts[32];
    int nt = 0;
    for (int64_t b = 1 << 16; b <= 4 << 20; b *= 2) {
        ts[nt] = xfer(-1, -1, b, 0);
        snprintf(ts[nt].pattern, sizeof ts[nt].pattern, "allgather");
        /* 2 ranks: (p-1) alpha + (p-1)/p bytes / busbw, alpha 3 us, busbw 10 GB/s */
        ts[nt].stats.median_us = 3 + 0.5 * (double)b / 10000;
        nt++;
    }
    ts[nt++] = xfer(0, 1, 1 << 20, 60);
    kvr_profile_costs_info info;
    kvr_search_costs *m = build(ls, n, ts, nt, &info);
    if (!m) return;
    KVR_CHECK(info.has_allgather);
    /* TSP on 2 ranks: one all-gather of K and one of V per layer, each of half the bytes */
    kvr_error err = {0};
    double tsp = 0;
    kvr_search_timeline *tl = NULL;
    KVR_CHECK_OK(kvr_search_timeline_create(&tl, &err), &err);
    KVR_CHECK_OK(kvr_search_sim_tsp(m, 2, 2048, tl, &tsp, &err), &err);
    double ag = 0;
    for (size_t i = 0; i < kvr_search_timeline_n_events(tl); i++) {
        const kvr_event *e = kvr_search_timeline_event(tl, i);
        if (e->kind == KVR_EVENT_ALLGATHER && e->rank == 0 && e->layer == 0) ag = e->end_us - e->start_us;
    }
    const double half = (double)PL_KVB * 2048 / 2;
    KVR_CHECK_NEAR(ag, 2 * (3 + 0.5 * half / 10000), 0, 1e-6);
    kvr_search_timeline_destroy(tl);
    kvr_search_costs_destroy(m);
}

/* KVR-S on the interpolated profile finds partitions as good as on the planted costs. */
static void test_search_matches_planted(void) {
    kvr_db_layer_sample ls[256];
    const int64_t n = make_layers(ls, 0, 0);
    kvr_db_transfer_sample ts[32];
    int nt = 0;
    for (int64_t b = 4096; b <= 8 << 20; b *= 2) ts[nt++] = xfer(0, 1, b, 5 + (double)b / 20000);
    kvr_search_costs *m = build(ls, n, ts, nt, NULL);
    if (!m) return;
    /* the planted model as a linear source with the same link */
    kvr_search_coeffs co = {PL_L, PL_KVB, pl_embed(1024), PL_HEAD, 40, 2.0, 15, 0.3, 0.05,
                            0.004, 90, 6.0};
    kvr_search_link l = {0, 0, 10, 20};
    kvr_search_costs *lin = NULL;
    kvr_error err = {0};
    KVR_CHECK_OK(kvr_search_costs_create_linear(&co, &l, &lin, &err), &err);
    if (!lin) return;
    const kvr_search_params sp = kvr_search_params_default();
    const int ps[3] = {2, 4, 8};
    const int64_t Cs[3] = {1024, 2048, 4096};
    double worst = 0;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            int64_t ch_i[8], ch_l[8];
            kvr_search_stats si, sl;
            KVR_CHECK_OK(kvr_search_partition(m, ps[a], Cs[b], &sp, ch_i, &si, &err), &err);
            KVR_CHECK_OK(kvr_search_partition(lin, ps[a], Cs[b], &sp, ch_l, &sl, &err), &err);
            double t_i = 0; /* the interpolated model's partition, priced by the planted costs */
            KVR_CHECK_OK(kvr_search_sim_kvr(lin, ps[a], ch_i, NULL, &t_i, &err), &err);
            worst = fmax(worst, t_i / sl.ttft_us - 1);
        }
    printf("# planted: KVR-S on the interpolated profile within %.4f%% of KVR-S on the planted "
           "costs\n", 100 * worst);
    KVR_CHECK(worst < 0.005);
    kvr_search_costs_destroy(lin);
    kvr_search_costs_destroy(m);
}

static void expect_invalid(const kvr_db_layer_sample *ls, int64_t n, const char *want) {
    kvr_db_model m = planted_model();
    kvr_search_costs *c = NULL;
    kvr_error err = {0};
    kvr_status st = kvr_profile_costs_from_samples(&m, ls, n, NULL, 0, "run 9", NULL, &c, NULL, &err);
    KVR_CHECK(st == KVR_ERR_INVALID_ARG && c == NULL);
    KVR_CHECK(strstr(err.msg, want) != NULL);
    if (!strstr(err.msg, want)) fprintf(stderr, "  message: %s\n", err.msg);
}

static void test_missing_samples(void) {
    kvr_db_layer_sample ls[256];
    int64_t n = make_layers(ls, 0, 1u << KVR_OP_ATTN);
    expect_invalid(ls, n, "run 9 has no attn samples");
    n = make_layers(ls, 0, 1u << KVR_OP_LAYER_COUNT); /* attn at prefix 0 only */
    expect_invalid(ls, n, "only at prefix 0");
    n = make_layers(ls, 0, 1u << KVR_OP_HEAD);
    expect_invalid(ls, n, "no head samples");
    n = make_layers(ls, 0, 1u << KVR_OP_PRE);
    expect_invalid(ls, n, "no pre samples");
    expect_invalid(ls, 0, "no pre samples");
    /* embed is optional */
    n = make_layers(ls, 0, 1u << KVR_OP_EMBED);
    kvr_search_costs *m = build(ls, n, NULL, 0, NULL);
    if (m) KVR_CHECK_NEAR(kvr_search_costs_embed_us(m), 0, 0, 0);
    kvr_search_costs_destroy(m);
    /* the model must give the K/V size */
    n = make_layers(ls, 0, 0);
    kvr_db_model md = planted_model();
    md.kv_bytes_per_token = 0;
    kvr_error err = {0};
    KVR_CHECK(kvr_profile_costs_from_samples(&md, ls, n, NULL, 0, "x", NULL, &m, NULL, &err) ==
              KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(err.msg, "K/V bytes") != NULL);
}

/* From the store: missing, incomplete and transfers-only runs; --link-run. */
static void test_from_run(void) {
    kvr_db *db = NULL;
    kvr_error err = {0};
    KVR_CHECK_OK(kvr_db_open(":memory:", NULL, &db, &err), &err);
    if (!db) return;
    kvr_db_model md = planted_model();
    int64_t model_id = 0;
    KVR_CHECK_OK(kvr_db_model_put(db, &md, &model_id, &err), &err);
    kvr_db_run r = kvr_db_run_init("profile");
    r.model_id = model_id;
    KVR_CHECK_OK(kvr_db_run_insert(db, &r, &err), &err);
    kvr_db_layer_sample ls[256];
    const int64_t n = make_layers(ls, 0, 0);
    for (int64_t i = 0; i < n; i++) ls[i].run_id = r.id;
    KVR_CHECK_OK(kvr_db_layer_samples_put(db, ls, n, &err), &err);
    kvr_search_costs *m = NULL;
    /* still running (this process is alive) */
    KVR_CHECK(kvr_profile_costs_from_run(db, r.id, NULL, &m, NULL, &err) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(err.msg, "still being written") != NULL);
    KVR_CHECK_OK(kvr_db_run_set_status(db, r.id, KVR_RUN_INCOMPLETE, "interrupted (SIGINT)", &err), &err);
    KVR_CHECK(kvr_profile_costs_from_run(db, r.id, NULL, &m, NULL, &err) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(err.msg, "is incomplete (interrupted (SIGINT))") &&
              strstr(err.msg, "kvr-profile --resume") && strstr(err.msg, "--allow-incomplete"));
    kvr_profile_costs_params pp = kvr_profile_costs_params_default();
    pp.allow_incomplete = true;
    KVR_CHECK_OK(kvr_profile_costs_from_run(db, r.id, &pp, &m, NULL, &err), &err);
    kvr_search_costs_destroy(m);
    m = NULL;
    KVR_CHECK_OK(kvr_db_run_set_status(db, r.id, KVR_RUN_COMPLETE, NULL, &err), &err);
    kvr_profile_costs_info info;
    KVR_CHECK_OK(kvr_profile_costs_from_run(db, r.id, NULL, &m, &info, &err), &err);
    if (m) KVR_CHECK(strstr(kvr_search_costs_source(m), "run 1") != NULL);
    KVR_CHECK_EQ_INT(info.n_link_pairs, 0);
    kvr_search_costs_destroy(m);
    m = NULL;
    KVR_CHECK(kvr_profile_costs_from_run(db, 42, NULL, &m, NULL, &err) == KVR_ERR_NOT_FOUND);
    KVR_CHECK(strstr(err.msg, "run 42 not found") && strstr(err.msg, "kvr-db list"));
    /* a transfers-only run gives the links */
    kvr_db_run x = kvr_db_run_init("profile");
    x.model_id = model_id;
    x.status = KVR_RUN_COMPLETE;
    KVR_CHECK_OK(kvr_db_run_insert(db, &x, &err), &err);
    kvr_db_transfer_sample ts[16];
    int nt = 0;
    for (int64_t b = 4096; b <= 1 << 20; b *= 4) {
        ts[nt] = xfer(0, 1, b, 5 + (double)b / 20000);
        ts[nt++].run_id = x.id;
    }
    KVR_CHECK_OK(kvr_db_transfer_samples_put(db, ts, nt, &err), &err);
    KVR_CHECK(kvr_profile_costs_from_run(db, x.id, NULL, &m, NULL, &err) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(err.msg, "no layer samples") != NULL);
    pp = kvr_profile_costs_params_default();
    pp.link_run_id = x.id;
    KVR_CHECK_OK(kvr_profile_costs_from_run(db, r.id, &pp, &m, &info, &err), &err);
    KVR_CHECK_EQ_INT(info.n_link_pairs, 1);
    kvr_search_costs_destroy(m);
    pp.link_run_id = 77;
    KVR_CHECK(kvr_profile_costs_from_run(db, r.id, &pp, &m, NULL, &err) == KVR_ERR_NOT_FOUND);
    KVR_CHECK(strstr(err.msg, "links: run 77 not found") != NULL);
    kvr_db_close(db);
}

/* The host tier's copy rate (LayerKV): host-copy samples planted at 20 us + bytes / 8000 B/us
 * give 8000 bytes/us (8 GB/s) by the slope; one size alone, its bytes / time; none, no rate. */
static void test_host_copy_rate(void) {
    kvr_db_layer_sample ls[300];
    int64_t n = make_layers(ls, 0, 0);
    kvr_search_costs *m = build(ls, n, NULL, 0, NULL);
    KVR_CHECK(m && !kvr_search_costs_host_copy(m, NULL, NULL));
    kvr_search_costs_destroy(m);
    const int64_t bytes = 32768; /* one layer block */
    for (int64_t c = 2; c <= 128; c *= 4)
        ls[n++] = sample(KVR_SEARCH_HOST_COPY_OP, c, bytes, 20 + (double)(c * bytes) / 8000);
    m = build(ls, n, NULL, 0, NULL);
    double bpus = 0;
    const char *how = NULL;
    KVR_CHECK(m && kvr_search_costs_host_copy(m, &bpus, &how));
    KVR_CHECK(rel(bpus, 8000) < 1e-9);
    KVR_CHECK(how && strstr(how, "4 host-copy samples") != NULL);
    kvr_search_costs_destroy(m);
    ls[n - 4] = ls[n - 1]; /* one size: 128 blocks in 20 + 524.288 us */
    m = build(ls, n - 3, NULL, 0, NULL);
    KVR_CHECK(m && kvr_search_costs_host_copy(m, &bpus, NULL));
    KVR_CHECK(rel(bpus, 128.0 * bytes / (20 + 128.0 * bytes / 8000)) < 1e-9);
    kvr_search_costs_destroy(m);
}

static const kvr_test_case cases[] = {
    {"host_copy_rate", test_host_copy_rate},
    {"planted_grid_and_between", test_planted_grid_and_between},
    {"extrapolation_rules", test_extrapolation_rules},
    {"monotone_on_noise", test_monotone_on_noise},
    {"links_from_p2p", test_links_from_p2p},
    {"allgather_from_samples", test_allgather_from_samples},
    {"search_matches_planted", test_search_matches_planted},
    {"missing_samples", test_missing_samples},
    {"from_run", test_from_run},
};

KVR_TEST_MAIN(cases)
