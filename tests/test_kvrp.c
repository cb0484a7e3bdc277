/* test_kvrp.c -- the predict-time predictor (predictor/kvr_kvrp.h) on its own: this program
 * links kvr_kvrp and what it depends on (kvr_search, kvr_common, cJSON) and nothing else -- no
 * GSL, no SQLite, no store -- so building it is the check that a runtime can predict without
 * them. A cost model is made in memory from fits, a KVR-P predictor from its JSON; they are
 * written as a predictor file, loaded back, and predict partitions (the KVR-S rules, identical
 * after the round trip) and TTFT (equal to the closed form and to the search's simulator). */
#include "kvr_kvrp.h"
#include "kvr_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { L = 4 };
static const double kvb = 4096;

static kvr_predict_fit line(kvr_op op, double k, double s) {
    kvr_predict_fit f;
    memset(&f, 0, sizeof f);
    f.op = op;
    f.form = KVR_PREDICT_FORM_HINGE;
    f.n_coef = 2;
    f.coef[0] = k;
    f.coef[1] = s;
    return f;
}

/* pre 10 + 0.05 c, attn 5 + 0.01 c + 0.001 P + 1e-5 (c P + c^2/2), post 20 + 0.1 c,
 * embed 1 + 0.002 c, head 200 (no fit), links 5 us + 25 GB/s. */
static kvr_predict_costs *make_costs(void) {
    kvr_predict_costs_info info = {L, kvb, 50, 200, "tiny", "cpu", "f32", "test_kvrp"};
    kvr_predict_costs *c = NULL;
    kvr_error e;
    KVR_CHECK_OK(kvr_predict_costs_create(&info, &c, &e), &e);
    if (!c) return NULL;
    kvr_predict_fit fits[] = {line(KVR_OP_PRE, 10, 0.05), line(KVR_OP_POST, 20, 0.1),
                              line(KVR_OP_EMBED, 1, 0.002),
                              line(KVR_OP_LINK, 5, 1 / (1000.0 * 25))};
    for (size_t i = 0; i < sizeof fits / sizeof fits[0]; i++)
        KVR_CHECK_OK(kvr_predict_costs_set_fit(c, &fits[i], &e), &e);
    kvr_predict_fit a;
    memset(&a, 0, sizeof a);
    a.op = KVR_OP_ATTN;
    a.form = KVR_PREDICT_FORM_ATTN;
    a.n_coef = 4;
    a.coef[0] = 5;
    a.coef[1] = 0.01;
    a.coef[2] = 0.001;
    a.coef[3] = 1e-5;
    KVR_CHECK_OK(kvr_predict_costs_set_fit(c, &a, &e), &e);
    return c;
}

/* A KVR-P predictor as kvr-fit would export it: 2 ranks (linear in C) and 4 ranks (linear in
 * log C), granularity 16. */
static const char *const predictor_json =
    "{\"schema\": \"kvr-predictor/1\", \"label\": \"test\", \"granularity\": 16,"
    " \"remainder\": \"last-chunk\", \"costs\": {\"source\": \"test_kvrp\", \"model\": \"tiny\","
    " \"layers\": 4}, \"ranks\": ["
    "{\"ranks\": 2, \"form\": \"linear-c\", \"contexts\": [1024, 8192],"
    " \"partitions\": [[576, 448], [4864, 3328]], \"x\": [1024, 8192],"
    " \"fractions\": [[0.5625, 0.59375]]},"
    "{\"ranks\": 4, \"form\": \"linear-logc\", \"contexts\": [1024, 4096, 16384],"
    " \"partitions\": [[320, 256, 240, 208], [1312, 1056, 912, 816], [5408, 4224, 3568, 3184]],"
    " \"x\": [6.931471805599453, 8.317766166719343, 9.704060527839234],"
    " \"fractions\": [[0.3125, 0.3203125, 0.330078125], [0.5625, 0.578125, 0.587890625],"
    " [0.796875, 0.80078125, 0.805664062]]}]}";

static bool partition_ok(const int64_t *ch, int p, int64_t C, int64_t g) {
    int64_t s = 0;
    for (int i = 0; i < p; i++) {
        if (ch[i] < g) return false;
        if (i + 1 < p && (s + ch[i]) % g != 0) return false;
        s += ch[i];
    }
    return s == C;
}

static double single_us(int64_t C) {
    const double c = (double)C;
    return (1 + 0.002 * c) + L * ((10 + 0.05 * c) + (5 + 0.01 * c + 1e-5 * c * c / 2) +
                                  (20 + 0.1 * c)) + 200;
}

static void test_file_round_trip(void) {
    kvr_error e;
    kvr_predict_costs *costs = make_costs();
    kvr_predictor *kp = NULL;
    KVR_CHECK_OK(kvr_predictor_from_json(predictor_json, strlen(predictor_json), "test", &kp, &e),
                 &e);
    if (!costs || !kp) return;
    KVR_CHECK_EQ_INT(kvr_predictor_n_ranks(kp), 2);
    KVR_CHECK_EQ_INT(kvr_predictor_granularity(kp), 16);
    kvr_predictor_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.run_id = 7;
    meta.n_threads = 2;
    meta.err_band = 0.05;
    snprintf(meta.model, sizeof meta.model, "tiny");
    char *text = NULL;
    KVR_CHECK_OK(kvr_predictor_file_format(kp, costs, &meta, &text, &e), &e);
    char path[] = "/tmp/kvr_test_kvrp_XXXXXX";
    int fd = mkstemp(path);
    KVR_CHECK(fd >= 0 && text);
    if (fd < 0 || !text) return;
    KVR_CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    free(text);

    kvr_predictor *kp2 = NULL;
    kvr_predict_costs *c2 = NULL;
    kvr_predictor_meta m2;
    KVR_CHECK_OK(kvr_predictor_file_load(path, &kp2, &c2, &m2, &e), &e);
    unlink(path);
    if (!kp2 || !c2) return;
    KVR_CHECK_EQ_INT(m2.run_id, 7);
    KVR_CHECK_EQ_INT(m2.n_threads, 2);
    KVR_CHECK_NEAR(m2.err_band, 0.05, 0, 0);
    KVR_CHECK(strcmp(m2.model, "tiny") == 0);
    KVR_CHECK(strcmp(kvr_predictor_label(kp2), "test") == 0);

    kvr_search_costs *m = NULL;
    KVR_CHECK_OK(kvr_predict_costs_to_search(c2, false, &m, &e), &e);
    const int ranks[] = {2, 4};
    for (int r = 0; r < 2; r++) {
        const int p = ranks[r];
        for (int64_t C = p * 16; C <= 40000; C = C * 5 / 4 + 7) {
            int64_t a[4], b[4], x[4];
            KVR_CHECK_OK(kvr_predictor_predict(kp, p, C, a, &e), &e);
            KVR_CHECK_OK(kvr_predictor_predict(kp2, p, C, b, &e), &e);
            KVR_CHECK(partition_ok(b, p, C, 16));
            KVR_CHECK(memcmp(a, b, (size_t)p * sizeof *a) == 0);
            /* the TTFT of the partition: the same from the file's costs as from the original,
             * and the search simulator's under the costs' search model (same embedding) */
            double t1, t2, ts;
            KVR_CHECK_OK(kvr_predict_costs_ttft(costs, KVR_STRATEGY_KVR_S, p, C, b, NULL, &t1, &e),
                         &e);
            KVR_CHECK_OK(kvr_predict_costs_ttft(c2, KVR_STRATEGY_KVR_S, p, C, b, NULL, &t2, &e), &e);
            KVR_CHECK_NEAR(t1, t2, 0, 0);
            int64_t big = 0;
            for (int i = 0; i < p; i++) big = b[i] > big ? b[i] : big;
            kvr_search_costs *ms = NULL;
            KVR_CHECK_OK(kvr_predict_costs_search_at(c2, big, &ms, &e), &e);
            KVR_CHECK_OK(kvr_search_sim_kvr(ms, p, b, NULL, &ts, &e), &e);
            KVR_CHECK_NEAR(t2, ts, 0, 1e-12);
            kvr_search_costs_destroy(ms);
            /* the polish: never worse under the model, on the grid */
            double tr, tb, tx;
            KVR_CHECK_OK(kvr_predictor_predict_refined(kp2, m, p, C, 0, x, &tr, &e), &e);
            KVR_CHECK(partition_ok(x, p, C, 16));
            KVR_CHECK_OK(kvr_search_sim_kvr(m, p, b, NULL, &tb, &e), &e);
            KVR_CHECK_OK(kvr_search_sim_kvr(m, p, x, NULL, &tx, &e), &e);
            KVR_CHECK_NEAR(tr, tx, 0, 1e-11);
            KVR_CHECK(tx <= tb * (1 + 1e-12));
        }
    }
    /* at a knot the boundaries are the fractions, rounded to the grid */
    int64_t ch[4];
    KVR_CHECK_OK(kvr_predictor_predict(kp2, 4, 4096, ch, &e), &e);
    KVR_CHECK(llabs(ch[0] - (int64_t)(0.3203125 * 4096)) <= 16);
    KVR_CHECK(llabs(ch[0] + ch[1] - (int64_t)(0.578125 * 4096)) <= 16);
    /* single rank: the closed form embed(C) + L (pre + attn(C, 0) + post) + head */
    for (int64_t C = 1; C <= 100000; C = C * 3 + 1) {
        double t;
        KVR_CHECK_OK(kvr_predict_costs_ttft(c2, KVR_STRATEGY_SINGLE, 1, C, NULL, NULL, &t, &e), &e);
        KVR_CHECK_NEAR(t, single_us(C), 1e-9, 1e-12);
    }
    /* a fitted op back out of the file, exactly */
    const kvr_predict_fit *f = kvr_predict_costs_fit(c2, KVR_OP_ATTN);
    KVR_CHECK(f && f->form == KVR_PREDICT_FORM_ATTN);
    if (f) KVR_CHECK_NEAR(kvr_predict_fit_eval(f, 100, 300), 5 + 1 + 0.3 + 1e-5 * 35000, 0, 1e-14);
    kvr_search_costs_destroy(m);
    kvr_predictor_destroy(kp2);
    kvr_predict_costs_destroy(c2);
    kvr_predictor_destroy(kp);
    kvr_predict_costs_destroy(costs);
}

static void test_errors(void) {
    kvr_error e;
    kvr_predictor *kp = NULL;
    kvr_predict_costs *c = NULL;
    KVR_CHECK_EQ_INT(kvr_predictor_file_load("/nonexistent/kvrp.json", &kp, &c, NULL, &e),
                     KVR_ERR_IO);
    KVR_CHECK(strstr(e.msg, "/nonexistent/kvrp.json") != NULL);
    const char bad[] = "{\"schema\": \"kvr-predictor/1\", \"granularity\": 16, \"ranks\": 3}";
    KVR_CHECK_EQ_INT(kvr_predictor_file_parse(bad, strlen(bad), "bad.json", &kp, &c, NULL, &e),
                     KVR_ERR_FORMAT);
    KVR_CHECK(kp == NULL);
    KVR_CHECK_OK(kvr_predictor_from_json(predictor_json, strlen(predictor_json), "t", &kp, &e), &e);
    int64_t ch[8];
    KVR_CHECK_EQ_INT(kvr_predictor_predict(kp, 3, 4096, ch, &e), KVR_ERR_NOT_FOUND);
    KVR_CHECK_EQ_INT(kvr_predictor_predict(kp, 4, 60, ch, &e), KVR_ERR_INVALID_ARG);
    kvr_predictor_destroy(kp);
    /* a file without a cost model: a partition, no TTFT */
    const char *plain = predictor_json;
    KVR_CHECK_OK(kvr_predictor_file_parse(plain, strlen(plain), "plain", &kp, &c, NULL, &e), &e);
    KVR_CHECK(kp != NULL && c == NULL);
    kvr_predictor_destroy(kp);
}

/* The strategy table (issue 14): built from a search table over make_costs (2 and 4 ranks, three
 * contexts), its ranges, the choice within a rank budget and the runnable strategies, its JSON
 * round trip alone and inside a predictor file, and an old file without one. */
static void test_strategy_table(void) {
    kvr_error e;
    kvr_predict_costs *costs = make_costs();
    kvr_search_costs *m = NULL;
    KVR_CHECK_OK(kvr_predict_costs_to_search(costs, false, &m, &e), &e);
    const int ranks[] = {2, 4};
    const int64_t ctx[] = {1024, 4096, 16384};
    kvr_search_table_config cfg = {ranks, 2, ctx, 3, kvr_search_params_default(), 0};
    kvr_search_table *t = NULL;
    KVR_CHECK_OK(kvr_search_table_create(m, &cfg, &t, &e), &e);
    kvr_strategy_table *st = NULL;
    KVR_CHECK_OK(kvr_strategy_table_from_search(t, &st, &e), &e);
    KVR_CHECK_EQ_INT(kvr_strategy_table_n_entries(st), 3);
    /* every entry: single once, four strategies at 2 and 4 ranks; best = the fastest, the
     * search table's recommendation; ranges tile 1 .. max */
    for (int i = 0; i < 3; i++) {
        const kvr_strategy_entry *en = kvr_strategy_table_entry(st, i);
        KVR_CHECK(en->context == ctx[i]);
        KVR_CHECK_EQ_INT(en->n_options, 1 + 4 * 2);
        for (int k = 1; k < en->n_options; k++)
            KVR_CHECK(en->options[k].ttft_us >= en->options[k - 1].ttft_us);
        const kvr_search_rec *rc = kvr_search_table_rec(t, i);
        KVR_CHECK_EQ_INT(en->best.strategy, rc->strategy);
        KVR_CHECK_EQ_INT(en->best.n_ranks, rc->n_ranks);
        KVR_CHECK(en->context_min <= en->context && en->context <= en->context_max);
        if (i > 0) KVR_CHECK(en->context_min == kvr_strategy_table_entry(st, i - 1)->context_max + 1);
    }
    KVR_CHECK(kvr_strategy_table_entry(st, 0)->context_min == 1);
    KVR_CHECK(kvr_strategy_table_entry(st, 2)->context_max == KVR_SEARCH_MAX_CONTEXT);
    /* choose: inside the range, degree capped, runnable only, outside the range */
    kvr_strategy_choice ch;
    KVR_CHECK_OK(kvr_strategy_table_choose(st, 4000, 4, 0, &ch, &e), &e);
    KVR_CHECK(ch.context == 4096 && ch.in_range);
    KVR_CHECK_EQ_INT(ch.strategy, kvr_strategy_table_entry(st, 1)->best.strategy);
    KVR_CHECK_OK(kvr_strategy_table_choose(st, 4000, 2, 0, &ch, &e), &e);
    KVR_CHECK(ch.n_ranks <= 2);
    KVR_CHECK_OK(kvr_strategy_table_choose(st, 4000, 1, 0, &ch, &e), &e);
    KVR_CHECK(ch.n_ranks == 1 && ch.strategy == KVR_STRATEGY_SINGLE);
    const unsigned no_ring = ((1u << KVR_STRATEGY_COUNT) - 1) & ~(1u << KVR_STRATEGY_RING);
    for (int64_t C = 100; C <= 40000; C += 997) {
        KVR_CHECK_OK(kvr_strategy_table_choose(st, C, 4, no_ring, &ch, &e), &e);
        KVR_CHECK(ch.strategy != KVR_STRATEGY_RING && ch.n_ranks <= 4);
    }
    const unsigned only_tsp = 1u << KVR_STRATEGY_TSP;
    KVR_CHECK_OK(kvr_strategy_table_choose(st, 16384, 4, only_tsp, &ch, &e), &e);
    KVR_CHECK(ch.strategy == KVR_STRATEGY_TSP);
    KVR_CHECK_EQ_INT(kvr_strategy_table_choose(st, 16384, 1, only_tsp, &ch, &e), KVR_ERR_NOT_FOUND);
    KVR_CHECK_OK(kvr_strategy_table_choose(st, 100, 4, 0, &ch, &e), &e);
    KVR_CHECK(ch.context == 1024 && !ch.in_range);
    KVR_CHECK_OK(kvr_strategy_table_choose(st, 1000000, 4, 0, &ch, &e), &e);
    KVR_CHECK(ch.context == 16384 && !ch.in_range);
    KVR_CHECK_OK(kvr_strategy_table_choose(st, 3, 4, 0, &ch, &e), &e);
    KVR_CHECK(ch.n_ranks <= 3);
    /* JSON round trip: the same entries, exactly */
    char *js = NULL;
    KVR_CHECK_OK(kvr_strategy_table_to_json(st, &js, &e), &e);
    kvr_strategy_table *back = NULL;
    KVR_CHECK_OK(kvr_strategy_table_from_json(js, strlen(js), "st", &back, &e), &e);
    KVR_CHECK_EQ_INT(kvr_strategy_table_n_entries(back), 3);
    for (int i = 0; back && i < 3; i++) {
        const kvr_strategy_entry *a = kvr_strategy_table_entry(st, i),
                                 *b = kvr_strategy_table_entry(back, i);
        KVR_CHECK(a->context == b->context && a->context_min == b->context_min &&
                  a->context_max == b->context_max && a->n_options == b->n_options);
        for (int k = 0; k < a->n_options && k < b->n_options; k++)
            KVR_CHECK(a->options[k].strategy == b->options[k].strategy &&
                      a->options[k].n_ranks == b->options[k].n_ranks &&
                      a->options[k].ttft_us == b->options[k].ttft_us);
    }
    free(js);
    kvr_strategy_table_destroy(back);
    /* inside a predictor file, and a file without one (made before: still loads) */
    kvr_predictor *kp = NULL, *kp2 = NULL;
    KVR_CHECK_OK(kvr_predictor_from_json(predictor_json, strlen(predictor_json), "t", &kp, &e), &e);
    KVR_CHECK(kvr_predictor_strategy_table(kp) == NULL);
    KVR_CHECK_OK(kvr_predictor_set_strategy_table(kp, st, &e), &e);
    char *file = NULL;
    KVR_CHECK_OK(kvr_predictor_file_format(kp, costs, NULL, &file, &e), &e);
    KVR_CHECK(file && strstr(file, "\"strategy_table\"") != NULL);
    kvr_predict_costs *c2 = NULL;
    KVR_CHECK_OK(kvr_predictor_file_parse(file, strlen(file), "f", &kp2, &c2, NULL, &e), &e);
    const kvr_strategy_table *st2 = kvr_predictor_strategy_table(kp2);
    KVR_CHECK(st2 != NULL);
    KVR_CHECK_OK(kvr_strategy_table_choose(st2, 4000, 4, no_ring, &ch, &e), &e);
    kvr_strategy_choice ch1;
    KVR_CHECK_OK(kvr_strategy_table_choose(st, 4000, 4, no_ring, &ch1, &e), &e);
    KVR_CHECK(ch.strategy == ch1.strategy && ch.n_ranks == ch1.n_ranks && ch.ttft_us == ch1.ttft_us);
    free(file);
    /* bad tables are format errors naming the member */
    const char badt[] = "{\"schema\": \"kvr-predictor/1\", \"granularity\": 16, \"ranks\": [],"
                        " \"strategy_table\": {\"entries\": [{\"context\": 64, \"options\":"
                        " [{\"strategy\": \"warp\", \"ranks\": 2, \"ttft_us\": 1}]}]}}";
    kvr_predictor *kb = NULL;
    KVR_CHECK_EQ_INT(kvr_predictor_from_json(badt, strlen(badt), "b.json", &kb, &e), KVR_ERR_FORMAT);
    KVR_CHECK(strstr(e.msg, "b.json: strategy_table: entries[0]") != NULL);
    kvr_predictor_destroy(kp);
    kvr_predictor_destroy(kp2);
    kvr_predict_costs_destroy(c2);
    kvr_strategy_table_destroy(st);
    kvr_search_table_destroy(t);
    kvr_search_costs_destroy(m);
    kvr_predict_costs_destroy(costs);
}

static const kvr_test_case cases[] = {
    {"file_round_trip", test_file_round_trip},
    {"errors", test_errors},
    {"strategy_table", test_strategy_table},
};
KVR_TEST_MAIN(cases)
