/* test_search.c -- the search module: JSON cost files (good and bad), the simulators against
 * hand-computed answers and invariants, KVR-S against its starting points and against a
 * brute-force oracle on hundreds of small random instances (fixed seed), tables and exports.
 *
 * Run one case: ./test_search oracle_small */
#include "kvr_test.h"
#include "kvr_search.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

// ----------------------------------------------------------------------------
// helpers

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next(void) { /* splitmix64: fixed seed, reproducible everywhere */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double rng_unif(void) {
    return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
}
static int64_t rng_int(int64_t lo, int64_t hi) { /* inclusive */
    return lo + (int64_t)(rng_next() % (uint64_t)(hi - lo + 1));
}
/* log-uniform in [lo, hi], or 0 with probability pz (zeros create plateaus: the hard cases) */
static double rng_lu(double lo, double hi, double pz) {
    if (rng_unif() < pz) return 0;
    return exp(log(lo) + rng_unif() * (log(hi) - log(lo)));
}

static kvr_search_coeffs coeffs_example(void) {
    /* Llama-7B-on-A100-like, the same numbers as docs/examples/llama7b_a100.json */
    kvr_search_coeffs co = {0};
    co.n_layers = 32;
    co.kv_bytes_per_token = 16384;
    co.embed_us = 20;
    co.head_us = 150;
    co.pre_k_us = 12;
    co.pre_per_token_us = 0.095;
    co.attn_k_us = 15;
    co.attn_per_token_us = 0.02;
    co.attn_per_prefix_us = 0.0004;
    co.attn_per_area_us = 2.0e-5;
    co.post_k_us = 20;
    co.post_per_token_us = 0.29;
    return co;
}

static kvr_search_costs *model_random(int max_layers) {
    kvr_search_coeffs co = {0};
    co.n_layers = (int)rng_int(1, max_layers);
    co.kv_bytes_per_token = rng_lu(64, 1e6, 0.15);
    co.embed_us = rng_lu(0.1, 100, 0.3);
    co.head_us = rng_lu(0.1, 300, 0.3);
    co.pre_k_us = rng_lu(0.1, 100, 0.3);
    co.pre_per_token_us = rng_lu(1e-3, 10, 0.2);
    co.attn_k_us = rng_lu(0.1, 100, 0.3);
    co.attn_per_token_us = rng_lu(1e-3, 10, 0.3);
    co.attn_per_prefix_us = rng_lu(1e-4, 1, 0.3);
    co.attn_per_area_us = rng_lu(1e-6, 1e-1, 0.2);
    co.post_k_us = rng_lu(0.1, 100, 0.3);
    co.post_per_token_us = rng_lu(1e-3, 10, 0.2);
    kvr_search_link l = {0, 0, rng_lu(0.1, 200, 0.3), rng_lu(0.05, 1000, 0.1)};
    kvr_search_costs *m = NULL;
    kvr_error e;
    KVR_CHECK_OK(kvr_search_costs_create_linear(&co, &l, &m, &e), &e);
    if (m && rng_unif() < 0.3) {
        /* uneven links for a third of the models */
        kvr_search_link ls[8];
        for (int i = 0; i < 8; i++)
            ls[i] = (kvr_search_link){i, i + 1, rng_lu(0.1, 200, 0.3), rng_lu(0.05, 1000, 0.1)};
        KVR_CHECK_OK(kvr_search_costs_set_links(m, &l, ls, 8, &e), &e);
    }
    return m;
}

/* Brute force over all compositions of n units into p parts >= 1 (remainder on the last). */
typedef struct oracle {
    const kvr_search_costs *m;
    int p;
    int64_t n, g, r;
    int64_t ch[8];
    double best;
    int64_t count;
} oracle;

static void oracle_rec(oracle *o, int i, int64_t left) {
    if (i == o->p - 1) {
        o->ch[i] = left * o->g + o->r;
        double t;
        kvr_error e;
        if (kvr_search_sim_kvr(o->m, o->p, o->ch, NULL, &t, &e) == KVR_OK && t < o->best)
            o->best = t;
        o->count++;
        return;
    }
    for (int64_t u = 1; u <= left - (o->p - 1 - i); u++) {
        o->ch[i] = u * o->g;
        oracle_rec(o, i + 1, left - u);
    }
}

static double oracle_best(const kvr_search_costs *m, int p, int64_t C, int64_t g) {
    oracle o = {.m = m, .p = p, .n = C / g, .g = g, .r = C % g, .best = INFINITY};
    oracle_rec(&o, 0, o.n);
    return o.best;
}

static kvr_search_costs *parse(const char *json, kvr_error *e) {
    kvr_search_costs *m = NULL;
    if (kvr_search_costs_parse_json(json, strlen(json), "t.json", &m, e) != KVR_OK) return NULL;
    return m;
}

#define MINIMAL_HEAD                                                                               \
    "{\"layers\": 2, \"kv_bytes_per_token\": 1000, \"embed_us\": 1, \"head_us\": 2,"              \
    " \"pre\": {\"k_us\": 1, \"per_token_us\": 0.5},"                                              \
    " \"attn\": {\"k_us\": 2, \"per_token_us\": 0.25, \"per_prefix_us\": 0.125,"                   \
    " \"per_area_us\": 0.01},"                                                                     \
    " \"post\": {\"k_us\": 3, \"per_token_us\": 1}"

// ----------------------------------------------------------------------------
// cost files

static void test_costs_minimal(void) {
    kvr_error e;
    kvr_search_costs *m = parse(MINIMAL_HEAD ", \"link\": {\"alpha_us\": 5, \"gbps\": 2}}", &e);
    KVR_CHECK(m != NULL);
    if (!m) {
        fprintf(stderr, "  %s\n", e.msg);
        return;
    }
    KVR_CHECK_EQ_INT(kvr_search_costs_n_layers(m), 2);
    KVR_CHECK_NEAR(kvr_search_costs_pre_us(m, 10), 1 + 5, 1e-12, 0);
    KVR_CHECK_NEAR(kvr_search_costs_post_us(m, 10), 3 + 10, 1e-12, 0);
    /* 2 + 0.25*10 + 0.125*20 + 0.01*(10*20 + 50) */
    KVR_CHECK_NEAR(kvr_search_costs_attn_us(m, 10, 20), 2 + 2.5 + 2.5 + 2.5, 1e-12, 0);
    double t;
    KVR_CHECK_OK(kvr_search_costs_link_us(m, 0, 1, 4000, &t, &e), &e);
    KVR_CHECK_NEAR(t, 5 + 4000 / 2000.0, 1e-12, 0); /* 2 GB/s = 2000 bytes/us */
    KVR_CHECK_OK(kvr_search_costs_link_us(m, 5, 3, 0, &t, &e), &e);
    KVR_CHECK_EQ_INT(kvr_search_costs_max_ranks(m), INT32_MAX);
    KVR_CHECK(strcmp(kvr_search_costs_source(m), "t.json") == 0);
    kvr_search_costs_destroy(m);

    /* the all-zero template from the issue loads; gbps 0 is an ideal link */
    m = parse("{\"layers\": 32, \"kv_bytes_per_token\": 16384, \"embed_us\": 0, \"head_us\": 0,"
              "\"pre\": {\"k_us\": 0, \"per_token_us\": 0},"
              "\"attn\": {\"k_us\": 0, \"per_token_us\": 0, \"per_prefix_us\": 0, "
              "\"per_area_us\": 0},"
              "\"post\": {\"k_us\": 0, \"per_token_us\": 0},"
              "\"link\": {\"alpha_us\": 0, \"gbps\": 0}}",
              &e);
    KVR_CHECK(m != NULL);
    if (m) {
        KVR_CHECK_OK(kvr_search_costs_link_us(m, 0, 1, 1e9, &t, &e), &e);
        KVR_CHECK_NEAR(t, 0, 0, 0);
    }
    kvr_search_costs_destroy(m);
}

static void test_costs_links_uneven(void) {
    kvr_error e;
    kvr_search_costs *m =
        parse(MINIMAL_HEAD ", \"links\": [{\"src\":0,\"dst\":1,\"alpha_us\":1,\"gbps\":10},"
                           "{\"src\":1,\"dst\":2,\"alpha_us\":2,\"gbps\":20},"
                           "{\"src\":2,\"dst\":0,\"alpha_us\":3,\"gbps\":30}]}",
              &e);
    KVR_CHECK(m != NULL);
    if (!m) {
        fprintf(stderr, "  %s\n", e.msg);
        return;
    }
    KVR_CHECK_EQ_INT(kvr_search_costs_max_ranks(m), 3);
    double t;
    KVR_CHECK_OK(kvr_search_costs_link_us(m, 1, 2, 20000, &t, &e), &e);
    KVR_CHECK_NEAR(t, 2 + 1, 1e-12, 0);
    KVR_CHECK(kvr_search_costs_link_us(m, 0, 2, 1, &t, &e) == KVR_ERR_NOT_FOUND);
    /* ring at p = 2 needs 1 -> 0, which is not listed and has no default */
    KVR_CHECK(kvr_search_sim_ring(m, 2, 64, NULL, &t, &e) == KVR_ERR_NOT_FOUND);
    KVR_CHECK(strstr(e.msg, "1->0") != NULL);
    KVR_CHECK_OK(kvr_search_sim_ring(m, 3, 64, NULL, &t, &e), &e);
    /* the chain does not need the closing link */
    int64_t ch[2] = {32, 32};
    KVR_CHECK_OK(kvr_search_sim_kvr(m, 2, ch, NULL, &t, &e), &e);
    int64_t ch4[4] = {16, 16, 16, 16};
    KVR_CHECK(kvr_search_sim_kvr(m, 4, ch4, NULL, &t, &e) == KVR_ERR_NOT_FOUND);

    /* a links file replaces the list; uniform override touches every link */
    const char *path = "test_search_links.json";
    FILE *f = fopen(path, "w");
    KVR_CHECK(f != NULL);
    if (f) {
        fputs("[{\"src\":0,\"dst\":1,\"alpha_us\":7,\"gbps\":1}]", f);
        fclose(f);
        KVR_CHECK_OK(kvr_search_costs_load_links_json(m, path, &e), &e);
        KVR_CHECK_EQ_INT(kvr_search_costs_max_ranks(m), 2);
        KVR_CHECK_OK(kvr_search_costs_link_us(m, 0, 1, 1000, &t, &e), &e);
        KVR_CHECK_NEAR(t, 8, 1e-12, 0);
        f = fopen(path, "w");
        fputs("{\"links\": [{\"src\":0,\"dst\":1,\"alpha_us\":7,\"gbps\":1},"
              "{\"src\":0,\"dst\":1,\"alpha_us\":7,\"gbps\":1}]}",
              f);
        fclose(f);
        KVR_CHECK(kvr_search_costs_load_links_json(m, path, &e) == KVR_ERR_FORMAT);
        KVR_CHECK(strstr(e.msg, "duplicate") && strstr(e.msg, path));
        KVR_CHECK_EQ_INT(kvr_search_costs_max_ranks(m), 2); /* unchanged on failure */
        remove(path);
    }
    KVR_CHECK_OK(kvr_search_costs_override_links(m, -1, 4, &e), &e);
    KVR_CHECK_OK(kvr_search_costs_link_us(m, 0, 1, 4000, &t, &e), &e);
    KVR_CHECK_NEAR(t, 7 + 1, 1e-12, 0);
    kvr_search_costs_destroy(m);
}

static void test_costs_bad_files(void) {
    static const struct {
        const char *json, *want;
    } bad[] = {
        {"", "not valid JSON"},
        {"{\"layers\": 2,", "not valid JSON"},
        {"[1, 2]", "top level must be a JSON object"},
        {"{}", "\"layers\" is missing"},
        {"{\"layers\": \"32\"}", "\"layers\" must be a number, got a string"},
        {"{\"layers\": 2.5}", "\"layers\" must be an integer"},
        {"{\"layers\": 0}", "\"layers\" must be an integer"},
        {"{\"layers\": 2, \"kv_bytes_per_token\": -1}", "cannot be negative"},
        {"{\"layers\": 2, \"kv_bytes_per_token\": 1, \"embed_us\": 0, \"head_us\": 0}",
         "object \"pre\" is missing"},
        {"{\"layers\": 2, \"kv_bytes_per_token\": 1, \"embed_us\": 0, \"head_us\": 0, \"pre\": 3}",
         "\"pre\" must be an object"},
        {"{\"layers\": 2, \"kv_bytes_per_token\": 1, \"embed_us\": 0, \"head_us\": 0,"
         " \"pre\": {\"k_us\": 1}}",
         "\"pre.per_token_us\" is missing"},
        {"{\"layers\": 2, \"kv_bytes_per_token\": 1, \"embed_us\": 0, \"head_us\": 0,"
         " \"pre\": {\"k_us\": 1, \"per_tokn_us\": 1}}",
         "unknown field \"pre.per_tokn_us\""},
        {MINIMAL_HEAD "}", "neither \"link\""},
        {MINIMAL_HEAD ", \"link\": {\"alpha_us\": -1, \"gbps\": 1}}", "\"link.alpha_us\" must be >= 0"},
        {MINIMAL_HEAD ", \"link\": {\"alpha_us\": 1, \"gbps\": null}}", "got null"},
        {MINIMAL_HEAD ", \"link\": {\"alpha_us\": 1}}", "\"link.gbps\" is missing"},
        {MINIMAL_HEAD ", \"links\": {}}", "\"links\" must be an array"},
        {MINIMAL_HEAD ", \"links\": []}", "empty"},
        {MINIMAL_HEAD ", \"links\": [{\"src\":0,\"dst\":1,\"alpha_us\":1,\"gbps\":1},"
                      "{\"src\":0,\"dst\":1,\"alpha_us\":2,\"gbps\":1}]}",
         "duplicate link 0->1"},
        {MINIMAL_HEAD ", \"links\": [{\"src\":0,\"dst\":1,\"alpha_us\":1,\"gbps\":1},"
                      "{\"src\":2,\"dst\":3,\"alpha_us\":2,\"gbps\":1}]}",
         "chain link 1->2 is missing"},
        {MINIMAL_HEAD ", \"links\": [{\"src\":1,\"dst\":1,\"alpha_us\":1,\"gbps\":1}]}",
         "self-link"},
        {MINIMAL_HEAD ", \"links\": [{\"src\":-1,\"dst\":1,\"alpha_us\":1,\"gbps\":1}]}",
         "\"links[0].src\" must be >= 0"},
        {MINIMAL_HEAD ", \"links\": [{\"src\":0,\"dst\":1,\"alpha_us\":1}]}",
         "\"links[0].gbps\" is missing"},
        {MINIMAL_HEAD ", \"links\": [{\"src\":0.5,\"dst\":1,\"alpha_us\":1,\"gbps\":1}]}",
         "must be an integer"},
        {MINIMAL_HEAD ", \"links\": [7]}", "\"links[0]\" must be an object"},
        {MINIMAL_HEAD ", \"link\": {\"alpha_us\": 1, \"gbps\": 1},"
                      " \"allgather\": {\"alpha_us\": 1, \"busbw_gbps\": 0}}",
         "busbw_gbps\" must be > 0"},
        {MINIMAL_HEAD ", \"link\": {\"alpha_us\": 1, \"gbps\": 1}} trailing", "not valid JSON"},
        {MINIMAL_HEAD ", \"link\": {\"alpha_us\": 1, \"gbps\": 1e999}}", "not finite"},
        /* issue 17: costs that overflow the search, duplicate keys */
        {"{\"layers\": 2, \"kv_bytes_per_token\": 1, \"embed_us\": 0, \"head_us\": 0,"
         " \"pre\": {\"k_us\": 1, \"per_token_us\": 1e308}}",
         "field \"pre.per_token_us\" is 1e+308, larger than 1e+12"},
        {"{\"layers\": 2, \"kv_bytes_per_token\": 1, \"embed_us\": 1e13, \"head_us\": 0}",
         "field \"embed_us\" is 1e+13"},
        {"{\"layers\": 2, \"layers\": 3, \"kv_bytes_per_token\": 1}", "duplicate field \"layers\""},
        {"{\"layers\": 2, \"kv_bytes_per_token\": 1, \"embed_us\": 0, \"head_us\": 0,"
         " \"pre\": {\"k_us\": 1, \"per_token_us\": 1, \"k_us\": 2}}",
         "duplicate field \"pre.k_us\""},
        {MINIMAL_HEAD ", \"links\": [{\"src\":0,\"dst\":1,\"alpha_us\":1,\"gbps\":1,\"gbps\":2}]}",
         "duplicate field \"links[0].gbps\""},
        {MINIMAL_HEAD ", \"link\": {\"alpha_us\": 1, \"gbps\": 1}, \"model\": 7}",
         "\"model\" must be a string"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kvr_error e = {0};
        kvr_search_costs *m = NULL;
        kvr_status s = kvr_search_costs_parse_json(bad[i].json, strlen(bad[i].json), "bad.json",
                                                   &m, &e);
        KVR_CHECK(s == KVR_ERR_FORMAT);
        KVR_CHECK(m == NULL);
        bool ok = strstr(e.msg, bad[i].want) != NULL && strstr(e.msg, "bad.json") != NULL;
        KVR_CHECK(ok);
        if (!ok || s != KVR_ERR_FORMAT)
            fprintf(stderr, "  case %zu: want \"%s\", got \"%s\"\n", i, bad[i].want, e.msg);
        kvr_search_costs_destroy(m);
    }
    kvr_error e;
    kvr_search_costs *m = NULL;
    KVR_CHECK(kvr_search_costs_load_json("/nonexistent/costs.json", &m, &e) == KVR_ERR_IO);
    KVR_CHECK(strstr(e.msg, "/nonexistent/costs.json") != NULL);
    /* a buffer without NUL terminator and with embedded junk must not be read past len */
    char buf[4] = {'{', '"', 'a', '"'};
    KVR_CHECK(kvr_search_costs_parse_json(buf, sizeof buf, "x", &m, &e) == KVR_ERR_FORMAT);
}

static double dummy_pre(const void *ctx, int64_t c) {
    return *(const double *)ctx * (double)c;
}
static double dummy_attn(const void *ctx, int64_t c, int64_t P) {
    (void)ctx;
    return 0.001 * (double)c * ((double)P + 0.5 * (double)c);
}
static int dummy_destroyed;
static void dummy_destroy(void *ctx) {
    (void)ctx;
    dummy_destroyed++;
}

static void test_costs_custom_source(void) {
    /* the hook for later sources: a custom function table */
    static double scale = 0.5;
    kvr_search_cost_ops ops = {"test", dummy_pre, dummy_attn, dummy_pre, NULL, dummy_destroy};
    kvr_search_cost_info info = {4, 100, 0, 0, "unit test"};
    kvr_search_link l = {0, 0, 1, 10};
    kvr_search_costs *m = NULL;
    kvr_error e;
    dummy_destroyed = 0;
    KVR_CHECK_OK(kvr_search_costs_create(&ops, &scale, &info, &l, &m, &e), &e);
    if (!m) return;
    KVR_CHECK_NEAR(kvr_search_costs_pre_us(m, 10), 5, 1e-12, 0);
    int64_t ch[4];
    kvr_search_params sp = kvr_search_params_default();
    kvr_search_stats st;
    KVR_CHECK_OK(kvr_search_partition(m, 4, 1024, &sp, ch, &st, &e), &e);
    KVR_CHECK_EQ_INT(ch[0] + ch[1] + ch[2] + ch[3], 1024);
    double t;
    /* ring without attn_block_us uses the prefix increment */
    KVR_CHECK_OK(kvr_search_sim_ring(m, 4, 1024, NULL, &t, &e), &e);
    KVR_CHECK(t > 0);
    kvr_search_costs_destroy(m);
    KVR_CHECK_EQ_INT(dummy_destroyed, 1);
    /* invalid info: ctx is released on failure too */
    info.n_layers = 0;
    KVR_CHECK(kvr_search_costs_create(&ops, &scale, &info, &l, &m, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK_EQ_INT(dummy_destroyed, 2);
}

/* issue 17: a cost source whose every price is infinite (or NaN): no strategy may return a
 * result, and nothing is written to the caller's outputs */
static double inf_us(const void *ctx, int64_t c) {
    (void)c;
    return *(const double *)ctx;
}
static double inf_attn_us(const void *ctx, int64_t c, int64_t P) {
    (void)c;
    (void)P;
    return *(const double *)ctx;
}

static void test_costs_not_finite(void) {
    static double vals[2];
    vals[0] = INFINITY;
    vals[1] = NAN;
    for (int v = 0; v < 2; v++) {
        kvr_search_cost_ops ops = {"inf", inf_us, inf_attn_us, inf_us, NULL, NULL};
        kvr_search_cost_info info = {4, 100, 0, 0, "unit test"};
        kvr_search_link l = {0, 0, 1, 10};
        kvr_search_costs *m = NULL;
        kvr_error e;
        KVR_CHECK_OK(kvr_search_costs_create(&ops, &vals[v], &info, &l, &m, &e), &e);
        if (!m) return;
        const int p = 4;
        const int64_t C = 2048;
        int64_t ch[4] = {-7, -7, -7, -7}, even[4] = {512, 512, 512, 512};
        double t = -7;
        kvr_search_params sp = kvr_search_params_default();
        kvr_search_stats st;
        /* kvr-s */
        KVR_CHECK(kvr_search_partition(m, p, C, &sp, ch, &st, &e) == KVR_ERR_NUMERIC);
        KVR_CHECK(strstr(e.msg, "no partition of 2048 tokens over 4 ranks has a finite TTFT"));
        for (int i = 0; i < p; i++) KVR_CHECK_EQ_INT(ch[i], -7); /* never an unfilled buffer */
        sp.multi_start = false;
        sp.refine = false;
        KVR_CHECK(kvr_search_partition(m, p, C, &sp, ch, &st, &e) == KVR_ERR_NUMERIC);
        /* kvr-e, tsp, ring, single and the chain with any partition */
        KVR_CHECK(kvr_search_sim_kvr(m, p, even, NULL, &t, &e) == KVR_ERR_NUMERIC);
        KVR_CHECK(strstr(e.msg, "kvr: the simulated TTFT at context 2048 is") != NULL);
        KVR_CHECK(kvr_search_sim_tsp(m, p, C, NULL, &t, &e) == KVR_ERR_NUMERIC);
        KVR_CHECK(strstr(e.msg, "tsp: ") == e.msg);
        KVR_CHECK(kvr_search_sim_ring(m, p, C, NULL, &t, &e) == KVR_ERR_NUMERIC);
        KVR_CHECK(strstr(e.msg, "ring: ") == e.msg);
        KVR_CHECK(kvr_search_sim_single(m, C, NULL, &t, &e) == KVR_ERR_NUMERIC);
        KVR_CHECK(strstr(e.msg, "single: ") == e.msg);
        KVR_CHECK(t == -7);
        /* with a timeline too */
        kvr_search_timeline *tl = NULL;
        KVR_CHECK_OK(kvr_search_timeline_create(&tl, &e), &e);
        KVR_CHECK(kvr_search_sim_kvr(m, p, even, tl, &t, &e) == KVR_ERR_NUMERIC);
        KVR_CHECK(t == -7);
        kvr_search_timeline_destroy(tl);
        /* KVR-P's polish */
        int64_t pc[4] = {512, 512, 512, 512};
        KVR_CHECK(kvr_search_polish(m, p, C, 16, 0, pc, &t, &e) == KVR_ERR_NUMERIC);
        KVR_CHECK(t == -7 && pc[0] == 512);
        /* the starting points are partitions whatever the costs */
        for (int k = 0; k < KVR_SEARCH_START_COUNT; k++) {
            KVR_CHECK_OK(kvr_search_partition_start(m, (kvr_search_start)k, p, C, 16, ch, &e), &e);
            KVR_CHECK_OK(kvr_partition_check(ch, p, C, &e), &e);
        }
        /* the table: every strategy, one error, no table */
        int ranks[1] = {p};
        int64_t ctx[1] = {C};
        kvr_search_table_config cfg = {ranks, 1, ctx, 1, kvr_search_params_default(), 0};
        kvr_search_table *tab = NULL;
        for (int k = 0; k < KVR_STRATEGY_COUNT; k++) {
            cfg.strategies = 1u << k;
            KVR_CHECK(kvr_search_table_create(m, &cfg, &tab, &e) == KVR_ERR_NUMERIC);
            KVR_CHECK(tab == NULL);
        }
        kvr_search_costs_destroy(m);
    }
}

// ----------------------------------------------------------------------------
// simulators

static kvr_search_costs *model_simple(double alpha, double gbps) {
    /* pre = 1 + c, attn = c*P + c^2/2 (area only), post = 2c, 2 layers, 1 byte/token */
    kvr_search_coeffs co = {0};
    co.n_layers = 2;
    co.kv_bytes_per_token = 1000;
    co.embed_us = 3;
    co.head_us = 5;
    co.pre_k_us = 1;
    co.pre_per_token_us = 1;
    co.attn_per_area_us = 1;
    co.post_per_token_us = 2;
    kvr_search_link l = {0, 0, alpha, gbps};
    kvr_search_costs *m = NULL;
    kvr_error e;
    KVR_CHECK_OK(kvr_search_costs_create_linear(&co, &l, &m, &e), &e);
    return m;
}

static void test_sim_single_known(void) {
    kvr_search_costs *m = model_simple(0, 0);
    double t;
    kvr_error e;
    KVR_CHECK_OK(kvr_search_sim_single(m, 4, NULL, &t, &e), &e);
    /* embed 3 + 2 * (pre 5 + attn 8 + post 8) + head 5 */
    KVR_CHECK_NEAR(t, 3 + 2 * 21 + 5, 1e-12, 0);
    int64_t c = 4;
    double t2;
    KVR_CHECK_OK(kvr_search_sim_kvr(m, 1, &c, NULL, &t2, &e), &e);
    KVR_CHECK_NEAR(t2, t, 1e-12, 0);
    KVR_CHECK_OK(kvr_search_sim_tsp(m, 1, 4, NULL, &t2, &e), &e);
    KVR_CHECK_NEAR(t2, t, 1e-12, 0);
    KVR_CHECK_OK(kvr_search_sim_ring(m, 1, 4, NULL, &t2, &e), &e);
    KVR_CHECK_NEAR(t2, t, 1e-12, 0);
    kvr_search_costs_destroy(m);
}

static void test_sim_kvr_known(void) {
    /* p = 2, chunks {2, 2}, link 1 us + 1000 B/us (1 GB/s), 1000 B/token.
     * rank 0: pre 3, attn 2, post 4 -> w0 = 6; link carries S_0 = 2 tokens: x = 1 + 2 = 3.
     * rank 1: pre 3, attn 2*2 + 2 = 6, post 4 -> w1 = 10.
     * layer 0: r0 ready 3+3 = 6, done 12. r1 own 6, arr 6+3 = 9, ready 9, done 19.
     * layer 1: r0 ready 15, done 21. r1 own 22, arr max(15, 9) + 3 = 18, ready 22, done 32.
     * TTFT = 32 + head 5 = 37. */
    kvr_search_costs *m = model_simple(1, 1);
    int64_t ch[2] = {2, 2};
    double t;
    kvr_error e;
    kvr_search_timeline *tl = NULL;
    KVR_CHECK_OK(kvr_search_timeline_create(&tl, &e), &e);
    KVR_CHECK_OK(kvr_search_sim_kvr(m, 2, ch, tl, &t, &e), &e);
    KVR_CHECK_NEAR(t, 37, 1e-12, 0);
    KVR_CHECK_NEAR(kvr_search_timeline_ttft_us(tl), 37, 1e-12, 0);
    /* the one wait: rank 1 layer 0 waits from 6 to 9 */
    int waits = 0, sends = 0;
    for (size_t i = 0; i < kvr_search_timeline_n_events(tl); i++) {
        const kvr_event *ev = kvr_search_timeline_event(tl, i);
        if (ev->kind == KVR_EVENT_WAIT) {
            waits++;
            KVR_CHECK_EQ_INT(ev->rank, 1);
            KVR_CHECK_NEAR(ev->start_us, 6, 1e-12, 0);
            KVR_CHECK_NEAR(ev->end_us, 9, 1e-12, 0);
        }
        if (ev->kind == KVR_EVENT_SEND) {
            sends++;
            KVR_CHECK_EQ_INT(ev->peer, 1);
        }
    }
    KVR_CHECK_EQ_INT(waits, 1);
    KVR_CHECK_EQ_INT(sends, 2);
    char *txt = NULL, *csv = NULL;
    KVR_CHECK_OK(kvr_search_timeline_format_text(tl, 40, &txt, &e), &e);
    KVR_CHECK_OK(kvr_search_timeline_format_csv(tl, true, &csv, &e), &e);
    KVR_CHECK(txt && strstr(txt, "r1    link") == NULL); /* rank 1 sends nothing */
    KVR_CHECK(txt && strstr(txt, "r0    link") != NULL);
    KVR_CHECK(csv && strncmp(csv, "strategy,ranks,context,rank,layer,kind", 38) == 0);
    KVR_CHECK(csv && strstr(csv, "kvr,2,4,1,0,wait,-1,6.000,9.000") != NULL);
    free(txt);
    free(csv);
    /* link occupancy: a slow link makes transfers queue behind each other */
    kvr_search_costs_destroy(m);
    m = model_simple(0, 0.1); /* 100 B/us: x = 20 per layer, more than a layer of rank 0 */
    KVR_CHECK_OK(kvr_search_sim_kvr(m, 2, ch, tl, &t, &e), &e);
    /* r0 sends at 6 and 15; arrivals 26 and max(15, 26) + 20 = 46; r1 done 36, then 46+10 = 56 */
    KVR_CHECK_NEAR(t, 56 + 5, 1e-12, 0);
    kvr_search_timeline_destroy(tl);
    kvr_search_costs_destroy(m);
}

static void test_sim_tsp_known(void) {
    /* p = 2, C = 4: rows {2, 2}. pre 3 each; all-gather ring: 1 step of (1 + 2000/1000) = 3;
     * attn r0 = 2, r1 = 6; post 4. Layer: a = embed 3 + 3 = 6, e = 9, r1 done 9 + 10 = 19,
     * r0 done 15. Layer 2: a = max(15, 19) + 3 = 22, e = 25, r1 done 35. TTFT 40. */
    kvr_search_costs *m = model_simple(1, 1);
    double t;
    kvr_error e;
    KVR_CHECK_OK(kvr_search_sim_tsp(m, 2, 4, NULL, &t, &e), &e);
    KVR_CHECK_NEAR(t, 40, 1e-12, 0);
    /* the alpha-busbw override: (p-1) * alpha + (p-1)/p * 4000 / 1000 = 1 + 2 = 3: same here */
    KVR_CHECK_OK(kvr_search_costs_set_allgather(m, 1, 1, &e), &e);
    KVR_CHECK_OK(kvr_search_sim_tsp(m, 2, 4, NULL, &t, &e), &e);
    KVR_CHECK_NEAR(t, 40, 1e-12, 0);
    KVR_CHECK_OK(kvr_search_costs_set_allgather(m, 0, 2, &e), &e); /* 1.0 per all-gather */
    KVR_CHECK_OK(kvr_search_sim_tsp(m, 2, 4, NULL, &t, &e), &e);
    KVR_CHECK_NEAR(t, 40 - 4, 1e-12, 0);
    KVR_CHECK(kvr_search_sim_tsp(m, 8, 4, NULL, &t, &e) == KVR_ERR_INVALID_ARG);
    kvr_search_costs_destroy(m);
}

static void test_sim_ring_balance(void) {
    /* attention-area-only model with ideal links: zigzag gives every rank the same attention */
    kvr_search_coeffs co = {0};
    co.n_layers = 3;
    co.attn_per_area_us = 1e-3;
    kvr_search_link l = {0, 0, 0, 0};
    kvr_search_costs *m = NULL;
    kvr_error e;
    KVR_CHECK_OK(kvr_search_costs_create_linear(&co, &l, &m, &e), &e);
    if (!m) return;
    for (int p = 2; p <= 8; p *= 2) {
        int64_t C = 64 * p;
        kvr_search_timeline *tl;
        KVR_CHECK_OK(kvr_search_timeline_create(&tl, &e), &e);
        double t;
        KVR_CHECK_OK(kvr_search_sim_ring(m, p, C, tl, &t, &e), &e);
        double att[8] = {0};
        for (size_t i = 0; i < kvr_search_timeline_n_events(tl); i++) {
            const kvr_event *ev = kvr_search_timeline_event(tl, i);
            if (ev->kind == KVR_EVENT_ATTN) att[ev->rank] += ev->end_us - ev->start_us;
        }
        double total = 0;
        for (int r = 0; r < p; r++) {
            KVR_CHECK_NEAR(att[r], att[0], 1e-9, 1e-9);
            total += att[r];
        }
        /* the blocks tile the causal triangle: 3 layers of C^2/2 area */
        KVR_CHECK_NEAR(total, 3 * 1e-3 * 0.5 * (double)C * (double)C, 1e-6, 1e-12);
        /* and with free links the ring is perfectly parallel */
        KVR_CHECK_NEAR(t, 3 * 1e-3 * 0.5 * (double)C * (double)C / p, 1e-6, 1e-9);
        kvr_search_timeline_destroy(tl);
    }
    double t;
    KVR_CHECK(kvr_search_sim_ring(m, 4, 7, NULL, &t, &e) == KVR_ERR_INVALID_ARG);
    kvr_search_costs_destroy(m);
}

/* Ring pass-KV as the runtime runs it, on model_simple: rank r holds chunks of a = b = 1 token
 * (C = 4, p = 2), link 1 us + 1 GB/s, 2000 bytes per block -> 3 us per transfer.
 * pre = pre(1) + pre(1) = 4, post = 2 + 2 = 4; step 0: A x A causal 0.5 + B x A full 1 + B x B
 * causal 0.5 = 2; step 1: two full 1 x 1 blocks = 2 (either rank).
 * Layer 0: step 0 from 3 + 4 = 7 to 9; the block moves when the receiver has consumed its own
 * (9, not when the sender holds it at 7): 9..12; step 1 12..14; post to 18.
 * Layer 1: 22..24, transfer 24..27, 27..29, post to 33. TTFT 33 + head 5 = 38 (an unbounded
 * forwarding buffer would give 34). */
static void test_sim_ring_known(void) {
    kvr_search_costs *m = model_simple(1, 1);
    kvr_error e;
    kvr_search_timeline *tl = NULL;
    KVR_CHECK_OK(kvr_search_timeline_create(&tl, &e), &e);
    double t;
    KVR_CHECK_OK(kvr_search_sim_ring(m, 2, 4, tl, &t, &e), &e);
    KVR_CHECK_NEAR(t, 38, 1e-12, 0);
    int sends = 0;
    for (size_t i = 0; i < kvr_search_timeline_n_events(tl); i++) {
        const kvr_event *ev = kvr_search_timeline_event(tl, i);
        if (ev->kind != KVR_EVENT_SEND) continue;
        sends++;
        KVR_CHECK_EQ_INT(ev->peer, 1 - ev->rank);
        KVR_CHECK_NEAR(ev->start_us, ev->layer == 0 ? 9 : 24, 1e-12, 0);
        KVR_CHECK_NEAR(ev->end_us - ev->start_us, 3, 1e-12, 0);
    }
    KVR_CHECK_EQ_INT(sends, 4);
    kvr_search_timeline_destroy(tl);
    kvr_search_costs_destroy(m);
}

/* The log-sum-exp merges: every kvr_op_attn_block call merges its rows. On the symmetric case
 * above with ideal links each rank makes 3 calls over 1 + 2 * 1 = 3 rows at step 0 and 2 calls
 * over 2 rows at step 1: merge 0.25 us per call + 0.5 us per row adds 5 * 0.25 + 5 * 0.5 =
 * 3.75 us per layer, 7.5 us in all. p = 1 stays single (no ring, no merges). */
static void test_sim_ring_merges(void) {
    kvr_search_costs *m = model_simple(0, 0);
    kvr_error e;
    double t0, t1, ts;
    KVR_CHECK_OK(kvr_search_sim_ring(m, 2, 4, NULL, &t0, &e), &e);
    KVR_CHECK_NEAR(kvr_search_costs_merge_us(m, 100), 0, 0, 0); /* not set: free */
    KVR_CHECK_OK(kvr_search_costs_set_merge(m, 0.25, 0.5, "test", &e), &e);
    KVR_CHECK_NEAR(kvr_search_costs_merge_us(m, 4), 2.25, 1e-12, 0);
    KVR_CHECK_NEAR(kvr_search_costs_merge_us(m, 0), 0, 0, 0);
    kvr_search_timeline *tl = NULL;
    KVR_CHECK_OK(kvr_search_timeline_create(&tl, &e), &e);
    KVR_CHECK_OK(kvr_search_sim_ring(m, 2, 4, tl, &t1, &e), &e);
    KVR_CHECK(t1 > t0);
    KVR_CHECK_NEAR(t1 - t0, 2 * 3.75, 1e-12, 0);
    double merged[2] = {0, 0};
    for (size_t i = 0; i < kvr_search_timeline_n_events(tl); i++) {
        const kvr_event *ev = kvr_search_timeline_event(tl, i);
        if (ev->kind == KVR_EVENT_MERGE) merged[ev->rank] += ev->end_us - ev->start_us;
    }
    KVR_CHECK_NEAR(merged[0], 7.5, 1e-12, 0);
    KVR_CHECK_NEAR(merged[1], 7.5, 1e-12, 0);
    char *txt = NULL;
    KVR_CHECK_OK(kvr_search_timeline_format_text(tl, 60, &txt, &e), &e);
    KVR_CHECK(txt && strstr(txt, "M merge") != NULL);
    free(txt);
    /* more ranks, longer prompt: merges still only add */
    for (int p = 2; p <= 5; p++) {
        kvr_search_costs *m0 = model_simple(2, 5);
        double a, b;
        KVR_CHECK_OK(kvr_search_sim_ring(m0, p, 101, NULL, &a, &e), &e);
        KVR_CHECK_OK(kvr_search_costs_set_merge(m0, 0, 0.01, NULL, &e), &e);
        KVR_CHECK_OK(kvr_search_sim_ring(m0, p, 101, NULL, &b, &e), &e);
        KVR_CHECK(b > a);
        kvr_search_costs_destroy(m0);
    }
    /* p = 1: ring is single, merges or not */
    KVR_CHECK_OK(kvr_search_sim_ring(m, 1, 4, NULL, &t1, &e), &e);
    KVR_CHECK_OK(kvr_search_sim_single(m, 4, NULL, &ts, &e), &e);
    KVR_CHECK_NEAR(t1, ts, 1e-12, 0);
    KVR_CHECK(kvr_search_costs_set_merge(m, -1, 0, NULL, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(kvr_search_costs_set_merge(m, 0, NAN, NULL, &e) == KVR_ERR_INVALID_ARG);
    kvr_search_timeline_destroy(tl);
    kvr_search_costs_destroy(m);
    /* from a cost file: "merge" is optional, its fields checked like the others */
    m = parse(MINIMAL_HEAD ", \"link\": {\"alpha_us\": 0, \"gbps\": 0},"
                           " \"merge\": {\"k_us\": 0.25, \"per_row_us\": 0.5}}",
              &e);
    KVR_CHECK(m != NULL);
    if (m) KVR_CHECK_NEAR(kvr_search_costs_merge_us(m, 2), 1.25, 1e-12, 0);
    kvr_search_costs_destroy(m);
    KVR_CHECK(parse(MINIMAL_HEAD ", \"link\": {\"alpha_us\": 0, \"gbps\": 0},"
                                 " \"merge\": {\"k_us\": 0, \"per_rows_us\": 0.5}}",
                    &e) == NULL);
    KVR_CHECK(strstr(e.msg, "per_row") != NULL);
    KVR_CHECK(parse(MINIMAL_HEAD ", \"link\": {\"alpha_us\": 0, \"gbps\": 0},"
                                 " \"merge\": {\"k_us\": -1, \"per_row_us\": 0.5}}",
                    &e) == NULL);
}

/* The buffering bound on a ring with a slow link and uneven ranks: the block of step s enters
 * rank r only after r finished step s-1 (attention and merges), and r starts a step only when
 * its block has arrived. */
static void test_sim_ring_buffering(void) {
    for (int p = 2; p <= 5; p++) {
        kvr_search_costs *m = model_simple(3, 0.05);
        kvr_error e;
        KVR_CHECK_OK(kvr_search_costs_set_merge(m, 0.5, 0.01, NULL, &e), &e);
        kvr_search_timeline *tl = NULL;
        KVR_CHECK_OK(kvr_search_timeline_create(&tl, &e), &e);
        double t;
        KVR_CHECK_OK(kvr_search_sim_ring(m, p, 37 * p + 3, tl, &t, &e), &e);
        const size_t n = kvr_search_timeline_n_events(tl);
        int checked = 0;
        for (int r = 0; r < p; r++)
            for (int l = 0; l < 2; l++) {
                /* r's compute steps in layer l (attention, then its merge) and sends into r */
                double step_end[8];
                int ns = 0, nr = 0;
                for (size_t i = 0; i < n; i++) {
                    const kvr_event *ev = kvr_search_timeline_event(tl, i);
                    if (ev->layer != l) continue;
                    const bool mine = ev->rank == r;
                    if (mine && ev->kind == KVR_EVENT_ATTN && ns < 8) step_end[ns++] = ev->end_us;
                    if (mine && ev->kind == KVR_EVENT_MERGE && ns > 0)
                        step_end[ns - 1] = ev->end_us;
                    if (ev->kind == KVR_EVENT_SEND && ev->peer == r && nr < 8) {
                        KVR_CHECK(nr + 1 <= ns); /* after the step it follows */
                        if (nr + 1 <= ns) KVR_CHECK(ev->start_us >= step_end[nr] - 1e-9);
                        nr++;
                        checked++;
                    }
                }
                KVR_CHECK_EQ_INT(ns, p);
                KVR_CHECK_EQ_INT(nr, p - 1);
            }
        KVR_CHECK_EQ_INT(checked, 2 * p * (p - 1));
        kvr_search_timeline_destroy(tl);
        kvr_search_costs_destroy(m);
    }
}

static void test_sim_bad_args(void) {
    kvr_search_costs *m = model_simple(1, 1);
    double t;
    kvr_error e;
    int64_t ch[2] = {4, 0};
    KVR_CHECK(kvr_search_sim_kvr(m, 2, ch, NULL, &t, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "chunk 1") != NULL);
    KVR_CHECK(kvr_search_sim_kvr(m, 0, ch, NULL, &t, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(kvr_search_sim_single(m, 0, NULL, &t, &e) == KVR_ERR_INVALID_ARG);
    kvr_search_costs_destroy(m);
}

// ----------------------------------------------------------------------------
// KVR-S

static void test_search_partition_rules(void) {
    kvr_search_coeffs co = coeffs_example();
    kvr_search_link l = {0, 0, 10, 300}; /* NVLink-class: compute-bound, so front-loaded */
    kvr_search_costs *m = NULL;
    kvr_error e;
    KVR_CHECK_OK(kvr_search_costs_create_linear(&co, &l, &m, &e), &e);
    if (!m) return;
    const int64_t gs[] = {1, 7, 16, 100};
    for (size_t gi = 0; gi < 4; gi++) {
        int64_t g = gs[gi], C = 5000 + 13; /* not a multiple of any g but 1 */
        int64_t ch[8];
        kvr_search_params sp = kvr_search_params_default();
        sp.granularity = g;
        kvr_search_stats st;
        KVR_CHECK_OK(kvr_search_partition(m, 8, C, &sp, ch, &st, &e), &e);
        int64_t sum = 0;
        for (int i = 0; i < 8; i++) {
            KVR_CHECK(ch[i] >= g);
            sum += ch[i];
            if (i < 7) KVR_CHECK_EQ_INT(sum % g, 0); /* boundaries on the grid */
        }
        KVR_CHECK_EQ_INT(sum, C);
        KVR_CHECK_EQ_INT(ch[7] % g, C % g); /* the remainder rides on the last chunk */
        double t;
        KVR_CHECK_OK(kvr_search_sim_kvr(m, 8, ch, NULL, &t, &e), &e);
        KVR_CHECK_NEAR(st.ttft_us, t, 1e-9, 1e-12); /* incremental == full simulation */
        /* front-loaded at fine granularity: the first chunk is larger than the last */
        if (g <= 16) KVR_CHECK(ch[0] > ch[7]);
    }
    { /* issue 17: the largest context is KVR_SEARCH_MAX_CONTEXT (16M tokens) */
        int64_t ch[2];
        kvr_search_params sp = kvr_search_params_default();
        KVR_CHECK(kvr_search_partition(m, 2, KVR_SEARCH_MAX_CONTEXT + 1, &sp, ch, NULL, &e) ==
                  KVR_ERR_INVALID_ARG);
        KVR_CHECK(strstr(e.msg, "16M tokens, the largest the search plans") != NULL);
        int r2[1] = {2};
        int64_t cx[1] = {KVR_SEARCH_MAX_CONTEXT * 2};
        kvr_search_table_config cfg = {r2, 1, cx, 1, kvr_search_params_default(), 0};
        kvr_search_table *tab = NULL;
        KVR_CHECK(kvr_search_table_create(m, &cfg, &tab, &e) == KVR_ERR_INVALID_ARG && !tab);
        KVR_CHECK(strstr(e.msg, "larger than 16777216") != NULL);
    }
    /* errors: context below ranks x g, g < 1, p < 1 */
    int64_t ch[8];
    kvr_search_params sp = kvr_search_params_default();
    KVR_CHECK(kvr_search_partition(m, 8, 8 * 16 - 1, &sp, ch, NULL, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "smaller than ranks x granularity") != NULL);
    KVR_CHECK_OK(kvr_search_partition(m, 8, 8 * 16, &sp, ch, NULL, &e), &e);
    for (int i = 0; i < 8; i++) KVR_CHECK_EQ_INT(ch[i], 16);
    sp.granularity = 0;
    KVR_CHECK(kvr_search_partition(m, 8, 4096, &sp, ch, NULL, &e) == KVR_ERR_INVALID_ARG);
    sp = kvr_search_params_default();
    KVR_CHECK(kvr_search_partition(m, 0, 4096, &sp, ch, NULL, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK_OK(kvr_search_partition(m, 1, 4096, &sp, ch, NULL, &e), &e);
    KVR_CHECK_EQ_INT(ch[0], 4096);
    kvr_search_costs_destroy(m);
}

static void test_search_starts(void) {
    kvr_search_coeffs co = coeffs_example();
    kvr_search_costs *m = NULL;
    kvr_error e;
    KVR_CHECK_OK(kvr_search_costs_create_linear(&co, NULL, &m, &e), &e);
    if (!m) return;
    int64_t ch[4];
    KVR_CHECK_OK(kvr_search_partition_start(m, KVR_SEARCH_START_EVEN, 4, 16 * 10 + 3, 16, ch, &e),
                 &e);
    /* 10 units over 4 ranks: 3,3,2,2 (extra units first), remainder 3 on the last */
    KVR_CHECK_EQ_INT(ch[0], 48);
    KVR_CHECK_EQ_INT(ch[1], 48);
    KVR_CHECK_EQ_INT(ch[2], 32);
    KVR_CHECK_EQ_INT(ch[3], 35);
    KVR_CHECK_OK(kvr_search_partition_start(m, KVR_SEARCH_START_BALANCED, 4, 65536, 1, ch, &e),
                 &e);
    /* c_i * S_i equal (up to rounding to whole tokens) */
    int64_t S = 0;
    double k0 = 0;
    for (int i = 0; i < 4; i++) {
        S += ch[i];
        double k = (double)ch[i] * (double)S;
        if (i == 0) k0 = k;
        KVR_CHECK_NEAR(k, k0, 0, 1e-3);
    }
    KVR_CHECK_OK(kvr_search_partition_start(m, KVR_SEARCH_START_MINMAX, 4, 65536, 1, ch, &e), &e);
    /* per-layer times nearly equal */
    S = 0;
    double tl[4];
    for (int i = 0; i < 4; i++) {
        tl[i] = kvr_search_costs_pre_us(m, ch[i]) + kvr_search_costs_attn_us(m, ch[i], S) +
                kvr_search_costs_post_us(m, ch[i]);
        S += ch[i];
    }
    for (int i = 1; i < 4; i++) KVR_CHECK_NEAR(tl[i], tl[0], 0, 2e-3);
    kvr_search_costs_destroy(m);
}

static void test_search_not_worse_than_starts(void) {
    rng_state = 12345;
    for (int it = 0; it < 120; it++) {
        kvr_search_costs *m = model_random(40);
        if (!m) return;
        int p = (int)rng_int(2, 16);
        int64_t g = rng_int(1, 4) * 8;
        int64_t C = rng_int(p * 4, 400) * g + rng_int(0, g - 1);
        if (C < p * g) C = p * g;
        kvr_search_params sp = kvr_search_params_default();
        sp.granularity = g;
        int64_t ch[16], st_ch[16];
        kvr_search_stats st;
        kvr_error e;
        KVR_CHECK_OK(kvr_search_partition(m, p, C, &sp, ch, &st, &e), &e);
        for (int k = 0; k < KVR_SEARCH_START_COUNT; k++) {
            double t;
            KVR_CHECK_OK(kvr_search_partition_start(m, (kvr_search_start)k, p, C, g, st_ch, &e), &e);
            KVR_CHECK_OK(kvr_search_sim_kvr(m, p, st_ch, NULL, &t, &e), &e);
            KVR_CHECK_NEAR(st.start_ttft_us[k], t, 1e-9, 1e-12);
            KVR_CHECK(st.ttft_us <= t * (1 + 1e-12));
        }
        double t;
        KVR_CHECK_OK(kvr_search_sim_kvr(m, p, ch, NULL, &t, &e), &e);
        KVR_CHECK_NEAR(st.ttft_us, t, 1e-9, 1e-12);
        kvr_search_costs_destroy(m);
    }
}

/* polishing a start: never worse, on the grid, its TTFT the simulator's, a no-op from KVR-S's
 * own local optimum; bad partitions are refused */
static void test_search_polish(void) {
    rng_state = 777;
    for (int it = 0; it < 60; it++) {
        kvr_search_costs *m = model_random(40);
        if (!m) return;
        int p = (int)rng_int(1, 16);
        int64_t g = rng_int(1, 4) * 8;
        int64_t C = rng_int(p * 4, 400) * g + rng_int(0, g - 1);
        int64_t ch[16], cp[16];
        kvr_error e;
        double t0, t1, tp;
        KVR_CHECK_OK(kvr_search_partition_start(m, KVR_SEARCH_START_EVEN, p, C, g, ch, &e), &e);
        KVR_CHECK_OK(kvr_search_sim_kvr(m, p, ch, NULL, &t0, &e), &e);
        memcpy(cp, ch, sizeof ch);
        KVR_CHECK_OK(kvr_search_polish(m, p, C, g, 0, cp, &tp, &e), &e);
        KVR_CHECK_OK(kvr_search_sim_kvr(m, p, cp, NULL, &t1, &e), &e);
        KVR_CHECK_NEAR(tp, t1, 1e-9, 1e-11);
        KVR_CHECK(t1 <= t0 * (1 + 1e-12));
        int64_t sum = 0;
        for (int i = 0; i < p; i++) {
            KVR_CHECK((cp[i] - (i == p - 1 ? C % g : 0)) % g == 0 && cp[i] >= g);
            sum += cp[i];
        }
        KVR_CHECK_EQ_INT(sum, C);
        kvr_search_params sp = kvr_search_params_default();
        sp.granularity = g;
        kvr_search_stats st;
        KVR_CHECK_OK(kvr_search_partition(m, p, C, &sp, ch, &st, &e), &e);
        memcpy(cp, ch, sizeof ch);
        KVR_CHECK_OK(kvr_search_polish(m, p, C, g, 0, cp, NULL, &e), &e);
        KVR_CHECK(memcmp(cp, ch, (size_t)p * sizeof *ch) == 0);
        kvr_search_costs_destroy(m);
    }
    kvr_search_costs *m = model_random(8);
    if (!m) return;
    int64_t bad[2] = {32, 32}, off[2] = {36, 28};
    kvr_error e;
    KVR_CHECK_EQ_INT(kvr_search_polish(m, 2, 48, 16, 0, bad, NULL, &e), KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "sum") != NULL);
    KVR_CHECK_EQ_INT(kvr_search_polish(m, 2, 64, 16, 0, off, NULL, &e), KVR_ERR_INVALID_ARG);
    KVR_CHECK_EQ_INT(kvr_search_polish(m, 2, 64, 16, -1, bad, NULL, &e), KVR_ERR_INVALID_ARG);
    kvr_search_costs_destroy(m);
}

static void test_search_oracle_small(void) {
    /* KVR-S equals the exhaustive optimum on every instance: p <= 4, C/g <= 64 */
    rng_state = 20240601;
    int n_inst = 0, n_miss = 0;
    for (int it = 0; it < 400; it++) {
        kvr_search_costs *m = model_random(12);
        if (!m) return;
        int p = (int)rng_int(1, 4);
        int64_t g = (int64_t[]){1, 3, 16, 64}[rng_int(0, 3)];
        int64_t n = rng_int(p, 64);
        int64_t C = n * g + rng_int(0, g - 1);
        kvr_search_params sp = kvr_search_params_default();
        sp.granularity = g;
        int64_t ch[4];
        kvr_search_stats st;
        kvr_error e;
        KVR_CHECK_OK(kvr_search_partition(m, p, C, &sp, ch, &st, &e), &e);
        double best = oracle_best(m, p, C, g);
        n_inst++;
        if (!(st.ttft_us <= best * (1 + 1e-9) + 1e-9)) {
            n_miss++;
            fprintf(stderr, "  miss: it %d p %d C %lld g %lld: kvr-s %.9g oracle %.9g\n", it, p,
                    (long long)C, (long long)g, st.ttft_us, best);
        }
        KVR_CHECK(st.ttft_us >= best * (1 - 1e-9) - 1e-9); /* cannot beat the optimum */
        kvr_search_costs_destroy(m);
    }
    KVR_CHECK_EQ_INT(n_miss, 0);
    printf("  oracle: %d instances, %d misses\n", n_inst, n_miss);
}

// ----------------------------------------------------------------------------
// tables and exports

static void test_table_exports(void) {
    kvr_search_coeffs co = coeffs_example();
    kvr_search_link l = {0, 0, 10, 25};
    kvr_search_costs *m = NULL;
    kvr_error e;
    KVR_CHECK_OK(kvr_search_costs_create_linear(&co, &l, &m, &e), &e);
    if (!m) return;
    const int ranks[] = {2, 4};
    const int64_t ctx[] = {1024, 8192, 8192 + 5};
    kvr_search_table_config cfg = {ranks, 2, ctx, 3, kvr_search_params_default(), 0};
    kvr_search_table *t = NULL;
    KVR_CHECK_OK(kvr_search_table_create(m, &cfg, &t, &e), &e);
    if (!t) return;
    KVR_CHECK_EQ_INT(kvr_search_table_n_rows(t), 6);
    KVR_CHECK_EQ_INT(kvr_search_table_n_recs(t), 3);
    for (int i = 0; i < kvr_search_table_n_rows(t); i++) {
        const kvr_search_row *r = kvr_search_table_row(t, i);
        for (int k = 0; k < KVR_STRATEGY_COUNT; k++) KVR_CHECK(r->has[k]);
        KVR_CHECK(r->ttft_us[KVR_STRATEGY_KVR_S] <= r->ttft_us[KVR_STRATEGY_KVR_E] * (1 + 1e-12));
        KVR_CHECK(r->ttft_us[r->best] <= r->ttft_us[KVR_STRATEGY_SINGLE]);
    }
    char *s = NULL;
    KVR_CHECK_OK(kvr_search_table_format(t, KVR_SEARCH_FORMAT_JSON, "unit test", &s, &e), &e);
    cJSON *root = s ? cJSON_Parse(s) : NULL;
    KVR_CHECK(root != NULL);
    if (root) {
        KVR_CHECK(strcmp(cJSON_GetObjectItem(root, "schema")->valuestring, "kvr-search-table/1") == 0);
        cJSON *kv = cJSON_GetObjectItem(root, "kvr");
        KVR_CHECK(kv && strcmp(cJSON_GetObjectItem(kv, "version")->valuestring, kvr_version()) == 0);
        KVR_CHECK(cJSON_GetObjectItem(root, "granularity")->valuedouble == 16);
        cJSON *costs = cJSON_GetObjectItem(root, "costs");
        KVR_CHECK(costs && cJSON_GetObjectItem(costs, "link") && cJSON_GetObjectItem(costs, "attn"));
        cJSON *res = cJSON_GetObjectItem(root, "results");
        KVR_CHECK_EQ_INT(cJSON_GetArraySize(res), 6);
        cJSON *r0 = cJSON_GetArrayItem(res, 0);
        KVR_CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(r0, "partition")), 2);
        cJSON *sts = cJSON_GetObjectItem(r0, "strategies");
        const char *names[] = {"kvr-s", "kvr-e", "tsp", "ring", "single"};
        for (int k = 0; k < 5; k++) {
            cJSON *o = cJSON_GetObjectItem(sts, names[k]);
            KVR_CHECK(o && cJSON_IsNumber(cJSON_GetObjectItem(o, "ttft_ms")));
        }
        KVR_CHECK(cJSON_IsString(cJSON_GetObjectItem(r0, "best")));
        KVR_CHECK(cJSON_IsNumber(cJSON_GetObjectItem(r0, "search_ms")));
        KVR_CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(root, "recommendations")), 3);
        cJSON_Delete(root);
    }
    free(s);
    KVR_CHECK_OK(kvr_search_table_format(t, KVR_SEARCH_FORMAT_CSV, NULL, &s, &e), &e);
    int lines = 0;
    for (const char *c = s; c && *c; c++) lines += *c == '\n';
    KVR_CHECK_EQ_INT(lines, 7);
    KVR_CHECK(s && strncmp(s, "ranks,context,kvr_s_ms,kvr_e_ms,tsp_ms,ring_ms,single_ms,best", 61) == 0);
    free(s);
    KVR_CHECK_OK(kvr_search_table_format(t, KVR_SEARCH_FORMAT_VLLM_ENV, NULL, &s, &e), &e);
    /* every weights line sums to exactly 1 at six decimals */
    int n_env = 0;
    for (const char *c = s ? strstr(s, "VLLM_PCP_RUNAHEAD_LOAD_WEIGHTS=") : NULL; c;
         c = strstr(c + 1, "VLLM_PCP_RUNAHEAD_LOAD_WEIGHTS=")) {
        const char *v = c + strlen("VLLM_PCP_RUNAHEAD_LOAD_WEIGHTS=");
        long long sum = 0;
        for (;;) {
            long long a = 0, b = 0;
            int k = 0;
            if (sscanf(v, "%lld.%6lld%n", &a, &b, &k) != 2) break;
            sum += a * 1000000 + b;
            v += k;
            if (*v != ',') break;
            v++;
        }
        KVR_CHECK_EQ_INT(sum, 1000000);
        n_env++;
    }
    KVR_CHECK_EQ_INT(n_env, 6);
    free(s);
    KVR_CHECK_OK(kvr_search_table_format(t, KVR_SEARCH_FORMAT_TEXT, "note", &s, &e), &e);
    KVR_CHECK(s && s[0] == '#' && strstr(s, "(tokens)") && strstr(s, "# recommended"));
    free(s);
    kvr_search_table_destroy(t);

    /* parallel prefill does not pay when links are very slow: single is recommended */
    KVR_CHECK_OK(kvr_search_costs_override_links(m, 1e6, 0.001, &e), &e);
    KVR_CHECK_OK(kvr_search_table_create(m, &cfg, &t, &e), &e);
    if (t) {
        for (int j = 0; j < kvr_search_table_n_recs(t); j++) {
            KVR_CHECK(kvr_search_table_rec(t, j)->strategy == KVR_STRATEGY_SINGLE);
            KVR_CHECK_EQ_INT(kvr_search_table_rec(t, j)->n_ranks, 1);
        }
        kvr_search_table_destroy(t);
    }
    /* bad configurations */
    const int bad_ranks[] = {128};
    kvr_search_table_config bad = {bad_ranks, 1, ctx, 1, kvr_search_params_default(), 0};
    KVR_CHECK(kvr_search_table_create(m, &bad, &t, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "smaller than ranks x granularity") != NULL);
    kvr_search_costs_destroy(m);
}

/* Runnable marks (issue 14 item 4), with an explicit mask: which strategies the runtime lacks is
 * kvr_strategy_runnable's business (today none); the table's marking must work for any. */
static void test_table_unrunnable(void) {
    kvr_search_coeffs co = coeffs_example();
    kvr_search_link l = {0, 0, 1, 1000}; /* fast links: parallel prefill pays */
    kvr_search_costs *m = NULL;
    kvr_error e;
    KVR_CHECK_OK(kvr_search_costs_create_linear(&co, &l, &m, &e), &e);
    if (!m) return;
    const int ranks[] = {2};
    const int64_t ctx[] = {16384};
    const unsigned sel = 1u << KVR_STRATEGY_RING | 1u << KVR_STRATEGY_SINGLE;
    kvr_search_table_config cfg = {ranks, 1, ctx, 1, kvr_search_params_default(), sel};
    kvr_search_table *t = NULL;
    KVR_CHECK_OK(kvr_search_table_create(m, &cfg, &t, &e), &e);
    if (!t) {
        kvr_search_costs_destroy(m);
        return;
    }
    /* the example costs make ring the fastest: the premise of the marks below */
    KVR_CHECK(kvr_search_table_row(t, 0)->best == KVR_STRATEGY_RING);
    KVR_CHECK(kvr_search_table_rec(t, 0)->strategy == KVR_STRATEGY_RING);
    const unsigned ring = 1u << KVR_STRATEGY_RING;
    /* marked, never best or recommended */
    KVR_CHECK_OK(kvr_search_table_set_runnable(t, ring, false, "cuda/threads", &e), &e);
    KVR_CHECK_EQ_INT(kvr_search_table_unrunnable(t), ring);
    KVR_CHECK(kvr_search_table_row(t, 0)->best == KVR_STRATEGY_SINGLE);
    KVR_CHECK(kvr_search_table_rec(t, 0)->strategy == KVR_STRATEGY_SINGLE);
    KVR_CHECK_EQ_INT(kvr_search_table_rec(t, 0)->n_ranks, 1);
    char *s = NULL;
    KVR_CHECK_OK(kvr_search_table_format(t, KVR_SEARCH_FORMAT_TEXT, NULL, &s, &e), &e);
    KVR_CHECK(s && strstr(s, "ring*") && strstr(s, "# * ring: cuda/threads cannot run it"));
    free(s);
    KVR_CHECK_OK(kvr_search_table_format(t, KVR_SEARCH_FORMAT_JSON, NULL, &s, &e), &e);
    cJSON *root = s ? cJSON_Parse(s) : NULL;
    KVR_CHECK(root != NULL);
    if (root) {
        cJSON *u = cJSON_GetObjectItem(root, "unrunnable");
        KVR_CHECK(cJSON_GetArraySize(u) == 1 &&
                  strcmp(cJSON_GetArrayItem(u, 0)->valuestring, "ring") == 0);
        KVR_CHECK(strcmp(cJSON_GetObjectItem(root, "runtime")->valuestring, "cuda/threads") == 0);
        KVR_CHECK(cJSON_IsFalse(cJSON_GetObjectItem(root, "include_unrunnable")));
        cJSON *sts = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "results"), 0),
                                         "strategies");
        KVR_CHECK(cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetObjectItem(sts, "ring"), "runnable")));
        KVR_CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(sts, "single"), "runnable")));
        cJSON_Delete(root);
    }
    free(s);
    KVR_CHECK_OK(kvr_search_table_format(t, KVR_SEARCH_FORMAT_CSV, NULL, &s, &e), &e);
    KVR_CHECK(s && strstr(s, ",single,1,") && strstr(s, ",ring\n"));
    free(s);
    /* allowed on request: recommended again, flagged */
    KVR_CHECK_OK(kvr_search_table_set_runnable(t, ring, true, "cuda/threads", &e), &e);
    KVR_CHECK(kvr_search_table_rec(t, 0)->strategy == KVR_STRATEGY_RING);
    KVR_CHECK_OK(kvr_search_table_format(t, KVR_SEARCH_FORMAT_TEXT, NULL, &s, &e), &e);
    KVR_CHECK(s && strstr(s, "[not runnable]"));
    free(s);
    /* nothing left to recommend: NOT_FOUND, the table unchanged */
    KVR_CHECK(kvr_search_table_set_runnable(t, sel, false, "x/y", &e) == KVR_ERR_NOT_FOUND);
    KVR_CHECK(kvr_search_table_rec(t, 0)->strategy == KVR_STRATEGY_RING);
    /* and back: nothing marked */
    KVR_CHECK_OK(kvr_search_table_set_runnable(t, 0, false, "cpu/threads", &e), &e);
    KVR_CHECK_EQ_INT(kvr_search_table_unrunnable(t), 0);
    KVR_CHECK(kvr_search_table_rec(t, 0)->strategy == KVR_STRATEGY_RING);
    kvr_search_table_destroy(t);
    kvr_search_costs_destroy(m);
}

static void test_names(void) {
    kvr_strategy s;
    kvr_error e;
    for (int k = 0; k < KVR_STRATEGY_COUNT; k++) {
        KVR_CHECK_OK(kvr_strategy_parse(kvr_strategy_name((kvr_strategy)k), &s, &e), &e);
        KVR_CHECK_EQ_INT(s, k);
    }
    KVR_CHECK(kvr_strategy_parse("kvr", &s, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "\"kvr\"") != NULL);
    kvr_search_format f;
    KVR_CHECK_OK(kvr_search_format_parse("vllm-env", &f, &e), &e);
    KVR_CHECK_EQ_INT(f, KVR_SEARCH_FORMAT_VLLM_ENV);
    KVR_CHECK(kvr_search_format_parse("xml", &f, &e) == KVR_ERR_INVALID_ARG);
    for (int k = 0; k < KVR_EVENT_KIND_COUNT; k++)
        KVR_CHECK(strcmp(kvr_event_kind_name((kvr_event_kind)k), "?") != 0);
}


/* Fixed overheads (kvr_search_costs_set_overhead): run_us before every rank's embedding,
 * layer_us after every layer's post on every rank; each schedule has its own terms. */
static void test_sim_overheads_known(void) {
    kvr_search_costs *m = model_simple(1, 1);
    kvr_error e;
    double t;
    kvr_search_overhead none = kvr_search_costs_overhead(m, KVR_MODE_KVR);
    KVR_CHECK_NEAR(none.run_us + none.layer_us, 0, 0, 0); /* unset: 0 */
    /* single at C = 4 (model_simple(0, 0) gives 50, test_sim_single_known): run 10, layer 2:
     * 10 + embed 3 + 2 * (21 + 2) + head 5 = 64 */
    kvr_search_costs *m0 = model_simple(0, 0);
    KVR_CHECK_OK(kvr_search_costs_set_overhead(m0, KVR_MODE_SINGLE, 10, 2, "test", &e), &e);
    KVR_CHECK_OK(kvr_search_sim_single(m0, 4, NULL, &t, &e), &e);
    KVR_CHECK_NEAR(t, 64, 1e-12, 0);
    kvr_search_costs_destroy(m0);
    /* KVR chain, chunks {2, 2} (37 without, test_sim_kvr_known), kvr run 10, layer 1:
     * w0 = 6 + 1 = 7, w1 = 10 + 1 = 11, x = 3, both ranks start at 10 + 3 = 13.
     * layer 0: r0 ready 16, done 23; r1 own 16, arr 19, ready 19, done 30.
     * layer 1: r0 ready 26, done 33; r1 own 33, arr max(26, 19) + 3 = 29, ready 33, done 44.
     * TTFT = 44 + head 5 = 49. */
    KVR_CHECK_OK(kvr_search_costs_set_overhead(m, KVR_MODE_KVR, 10, 1, "test", &e), &e);
    kvr_search_timeline *tl = NULL;
    KVR_CHECK_OK(kvr_search_timeline_create(&tl, &e), &e);
    int64_t ch[2] = {2, 2};
    KVR_CHECK_OK(kvr_search_sim_kvr(m, 2, ch, tl, &t, &e), &e);
    KVR_CHECK_NEAR(t, 49, 1e-12, 0);
    double ovh[2] = {0, 0};
    int n_ovh = 0;
    for (size_t i = 0; i < kvr_search_timeline_n_events(tl); i++) {
        const kvr_event *ev = kvr_search_timeline_event(tl, i);
        if (ev->kind == KVR_EVENT_EMBED) KVR_CHECK_NEAR(ev->start_us, 10, 1e-12, 0);
        if (ev->kind != KVR_EVENT_OVERHEAD) continue;
        n_ovh++;
        ovh[ev->rank] += ev->end_us - ev->start_us;
        if (ev->layer == -1) KVR_CHECK_NEAR(ev->start_us, 0, 0, 0);
        if (ev->rank == 1 && ev->layer == 1) KVR_CHECK_NEAR(ev->end_us, 44, 1e-12, 0);
    }
    KVR_CHECK_EQ_INT(n_ovh, 6); /* per rank: one run term, two layer terms */
    KVR_CHECK_NEAR(ovh[0], 12, 1e-12, 0);
    KVR_CHECK_NEAR(ovh[1], 12, 1e-12, 0);
    char *txt = NULL;
    KVR_CHECK_OK(kvr_search_timeline_format_text(tl, 40, &txt, &e), &e);
    KVR_CHECK(txt && strstr(txt, "o fixed overhead") != NULL);
    free(txt);
    /* the optimiser prices the same chain: its TTFT is the simulator's */
    int64_t best[2];
    kvr_search_stats st;
    kvr_search_params sp = kvr_search_params_default();
    sp.granularity = 1;
    KVR_CHECK_OK(kvr_search_partition(m, 2, 4, &sp, best, &st, &e), &e);
    KVR_CHECK_OK(kvr_search_sim_kvr(m, 2, best, NULL, &t, &e), &e);
    KVR_CHECK_NEAR(st.ttft_us, t, 1e-9, 0);
    KVR_CHECK_NEAR(st.start_ttft_us[KVR_SEARCH_START_EVEN], 49, 1e-9, 0);
    double tp;
    int64_t pol[2] = {2, 2};
    KVR_CHECK_OK(kvr_search_polish(m, 2, 4, 1, 0, pol, &tp, &e), &e);
    KVR_CHECK_OK(kvr_search_sim_kvr(m, 2, pol, NULL, &t, &e), &e);
    KVR_CHECK_NEAR(tp, t, 1e-9, 0);
    /* the kvr terms do not touch the other schedules: TSP 40 and ring 38 as before */
    KVR_CHECK_OK(kvr_search_sim_tsp(m, 2, 4, NULL, &t, &e), &e);
    KVR_CHECK_NEAR(t, 40, 1e-12, 0);
    /* TSP, run 10, layer 1: start 13; layer 0: a = 16, e = 19, r0 done 19 + 2 + 4 + 1 = 26,
     * r1 done 19 + 6 + 4 + 1 = 30; layer 1: a = 33, e = 36, r1 done 47; TTFT 52 */
    KVR_CHECK_OK(kvr_search_costs_set_overhead(m, KVR_MODE_TSP, 10, 1, NULL, &e), &e);
    KVR_CHECK_OK(kvr_search_sim_tsp(m, 2, 4, NULL, &t, &e), &e);
    KVR_CHECK_NEAR(t, 52, 1e-12, 0);
    /* ring (38 without, test_sim_ring_known): both ranks run in lockstep on this symmetric
     * case, so run 10 and layer 1 shift everything by 10 + 2 * 1: 50 */
    KVR_CHECK_OK(kvr_search_sim_ring(m, 2, 4, NULL, &t, &e), &e);
    KVR_CHECK_NEAR(t, 38, 1e-12, 0);
    KVR_CHECK_OK(kvr_search_costs_set_overhead(m, KVR_MODE_RING, 10, 1, NULL, &e), &e);
    KVR_CHECK_OK(kvr_search_sim_ring(m, 2, 4, tl, &t, &e), &e);
    KVR_CHECK_NEAR(t, 50, 1e-12, 0);
    KVR_CHECK_NEAR(kvr_search_timeline_ttft_us(tl), 50, 1e-12, 0);
    /* bad values */
    KVR_CHECK(kvr_search_costs_set_overhead(m, KVR_MODE_KVR, -1, 0, NULL, &e) ==
              KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "overheads.kvr") != NULL);
    KVR_CHECK(kvr_search_costs_set_overhead(m, KVR_MODE_KVR, 0, NAN, NULL, &e) ==
              KVR_ERR_INVALID_ARG);
    KVR_CHECK(kvr_search_costs_set_overhead(m, KVR_MODE_COUNT, 0, 0, NULL, &e) ==
              KVR_ERR_INVALID_ARG);
    kvr_search_timeline_destroy(tl);
    kvr_search_costs_destroy(m);
}

/* A cost file's optional "overheads": absent = 0, present = read, bad = a message naming the
 * field. */
static void test_costs_overheads_json(void) {
    kvr_error e;
    kvr_search_costs *m = parse(MINIMAL_HEAD ", \"link\": {\"alpha_us\": 0, \"gbps\": 0}}", &e);
    KVR_CHECK(m != NULL);
    for (int md = 0; m && md < KVR_MODE_COUNT; md++) {
        kvr_search_overhead o = kvr_search_costs_overhead(m, (kvr_mode)md);
        KVR_CHECK(o.run_us == 0 && o.layer_us == 0);
    }
    double t0 = 0, t1 = 0;
    if (m) KVR_CHECK_OK(kvr_search_sim_single(m, 8, NULL, &t0, &e), &e);
    kvr_search_costs_destroy(m);
    m = parse(MINIMAL_HEAD ", \"link\": {\"alpha_us\": 0, \"gbps\": 0},"
                           " \"overheads\": {\"single\": {\"run_us\": 100, \"layer_us\": 7},"
                           " \"kvr\": {\"layer_us\": 3}, \"ring\": {}}}",
              &e);
    KVR_CHECK(m != NULL);
    if (m) {
        kvr_search_overhead o = kvr_search_costs_overhead(m, KVR_MODE_SINGLE);
        KVR_CHECK_NEAR(o.run_us, 100, 0, 0);
        KVR_CHECK_NEAR(o.layer_us, 7, 0, 0);
        o = kvr_search_costs_overhead(m, KVR_MODE_KVR);
        KVR_CHECK(o.run_us == 0 && o.layer_us == 3);
        o = kvr_search_costs_overhead(m, KVR_MODE_TSP);
        KVR_CHECK(o.run_us == 0 && o.layer_us == 0);
        KVR_CHECK_OK(kvr_search_sim_single(m, 8, NULL, &t1, &e), &e);
        KVR_CHECK_NEAR(t1 - t0, 100 + 2 * 7, 1e-9, 0); /* 2 layers */
    }
    kvr_search_costs_destroy(m);
    static const struct {
        const char *tail, *want;
    } bad[] = {
        {"\"overheads\": []}", "\"overheads\" must be an object"},
        {"\"overheads\": {\"kvr-s\": {}}}", "unknown field \"overheads.kvr-s\""},
        {"\"overheads\": {\"kvr\": 5}}", "\"overheads.kvr\" must be an object"},
        {"\"overheads\": {\"tsp\": {\"run\": 5}}}", "unknown field \"overheads.tsp.run\""},
        {"\"overheads\": {\"tsp\": {\"run_us\": -5}}}", "\"overheads.tsp.run_us\" must be >= 0"},
        {"\"overheads\": {\"ring\": {\"layer_us\": \"1\"}}}",
         "\"overheads.ring.layer_us\" must be a number"},
        {"\"overheads\": {\"single\": {\"run_us\": 1, \"run_us\": 2}}}",
         "duplicate field \"overheads.single.run_us\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[1024];
        snprintf(text, sizeof text, "%s, \"link\": {\"alpha_us\": 0, \"gbps\": 0}, %s",
                 MINIMAL_HEAD, bad[i].tail);
        kvr_search_costs *b = parse(text, &e);
        KVR_CHECK(b == NULL);
        if (b || !strstr(e.msg, bad[i].want))
            fprintf(stderr, "  case %zu: want \"%s\", got \"%s\"\n", i, bad[i].want,
                    b ? "(parsed)" : e.msg);
        KVR_CHECK(b == NULL && strstr(e.msg, bad[i].want) != NULL);
        KVR_CHECK(strstr(e.msg, "t.json") != NULL);
        kvr_search_costs_destroy(b);
    }
}

/* A cost file's optional "host_copy_gbps" (LayerKV's host tier): absent = no rate, present =
 * GB/s x 1000 bytes/us, zero, negative or not a number = a message naming the field. */
static void test_costs_host_copy_json(void) {
    kvr_error e;
    kvr_search_costs *m = parse(MINIMAL_HEAD ", \"link\": {\"alpha_us\": 0, \"gbps\": 0}}", &e);
    KVR_CHECK(m != NULL && !kvr_search_costs_host_copy(m, NULL, NULL));
    kvr_search_costs_destroy(m);
    m = parse(MINIMAL_HEAD ", \"link\": {\"alpha_us\": 0, \"gbps\": 0}, \"host_copy_gbps\": 25}",
              &e);
    KVR_CHECK(m != NULL);
    double bpus = 0;
    const char *how = NULL;
    KVR_CHECK(m && kvr_search_costs_host_copy(m, &bpus, &how));
    KVR_CHECK_NEAR(bpus, 25000, 0, 0);
    KVR_CHECK(how && strstr(how, "t.json") != NULL);
    if (m) {
        KVR_CHECK(kvr_search_costs_set_host_copy(m, 0, NULL, &e) == KVR_ERR_INVALID_ARG);
        KVR_CHECK(kvr_search_costs_set_host_copy(m, NAN, NULL, &e) == KVR_ERR_INVALID_ARG);
        KVR_CHECK_OK(kvr_search_costs_set_host_copy(m, 12.5, "measured", &e), &e);
        KVR_CHECK(kvr_search_costs_host_copy(m, &bpus, &how) && bpus == 12.5);
        KVR_CHECK(strcmp(how, "measured") == 0);
    }
    kvr_search_costs_destroy(m);
    static const char *const bad[][2] = {
        {"\"host_copy_gbps\": 0}", "\"host_copy_gbps\" must be > 0"},
        {"\"host_copy_gbps\": -3}", "\"host_copy_gbps\" must be >= 0"},
        {"\"host_copy_gbps\": \"fast\"}", "\"host_copy_gbps\" must be a number"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[1024];
        snprintf(text, sizeof text, "%s, \"link\": {\"alpha_us\": 0, \"gbps\": 0}, %s",
                 MINIMAL_HEAD, bad[i][0]);
        kvr_search_costs *b = parse(text, &e);
        KVR_CHECK(b == NULL && strstr(e.msg, bad[i][1]) != NULL && strstr(e.msg, "t.json"));
        kvr_search_costs_destroy(b);
    }
}

static const kvr_test_case cases[] = {
    {"costs_minimal", test_costs_minimal},
    {"costs_links_uneven", test_costs_links_uneven},
    {"costs_bad_files", test_costs_bad_files},
    {"costs_custom_source", test_costs_custom_source},
    {"costs_not_finite", test_costs_not_finite},
    {"sim_single_known", test_sim_single_known},
    {"sim_kvr_known", test_sim_kvr_known},
    {"sim_tsp_known", test_sim_tsp_known},
    {"sim_ring_balance", test_sim_ring_balance},
    {"sim_ring_known", test_sim_ring_known},
    {"sim_ring_merges", test_sim_ring_merges},
    {"sim_ring_buffering", test_sim_ring_buffering},
    {"sim_bad_args", test_sim_bad_args},
    {"sim_overheads_known", test_sim_overheads_known},
    {"costs_overheads_json", test_costs_overheads_json},
    {"costs_host_copy_json", test_costs_host_copy_json},
    {"search_partition_rules", test_search_partition_rules},
    {"search_starts", test_search_starts},
    {"search_not_worse_than_starts", test_search_not_worse_than_starts},
    {"search_polish", test_search_polish},
    {"oracle_small", test_search_oracle_small},
    {"table_exports", test_table_exports},
    {"table_unrunnable", test_table_unrunnable},
    {"names", test_names},
};
KVR_TEST_MAIN(cases)
