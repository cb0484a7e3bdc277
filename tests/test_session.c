/* test_session.c -- the inference session (kvr_session_run) on the tiny preset: the even split
 * with repeats (median run, min/max), an explicit partition, the usage errors (bad partition,
 * more ranks than tokens), auto from a predictor file (its partition, its cost model's
 * predicted TTFT, drift against its error band, another thread count refusing the prediction),
 * auto with a store but no predictor for the model (the printing rank's message), and the record
 * in a writable store (partition source, predictor, drift) but none in a read-only one. */
#include "kvr_kvrp.h"
#include "kvr_session.h"
#include "kvr_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A 2-rank predictor (linear in C) with a cost model of lines: pre 10 + 0.05 c, attn
 * 5 + 0.01 c + 0.001 P + 1e-5 (c P + c^2/2), post 20 + 0.1 c; error band err_band. */
static const char *const predictor_json =
    "{\"schema\": \"kvr-predictor/1\", \"label\": \"test\", \"granularity\": 16,"
    " \"remainder\": \"last-chunk\", \"costs\": {\"source\": \"test\", \"model\": \"tiny\","
    " \"layers\": 4}, \"ranks\": ["
    "{\"ranks\": 2, \"form\": \"linear-c\", \"contexts\": [1024, 8192],"
    " \"partitions\": [[576, 448], [4864, 3328]], \"x\": [1024, 8192],"
    " \"fractions\": [[0.5625, 0.59375]]}]}";

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

/* Write the predictor file with its cost model; threads = the profile's threads per rank;
 * plan (may be NULL) its strategy table. */
static void write_predictor_plan(const char *path, double err_band, int32_t threads,
                                 const kvr_strategy_table *plan);
static void write_predictor(const char *path, double err_band, int32_t threads) {
    write_predictor_plan(path, err_band, threads, NULL);
}
static void write_predictor_plan(const char *path, double err_band, int32_t threads,
                                 const kvr_strategy_table *plan) {
    kvr_error e;
    kvr_predict_costs_info info = {4, 1024, 50, 200, "tiny", "cpu", "f32", "test_session"};
    kvr_predict_costs *c = NULL;
    KVR_CHECK_OK(kvr_predict_costs_create(&info, &c, &e), &e);
    kvr_predict_fit fits[] = {line(KVR_OP_PRE, 10, 0.05), line(KVR_OP_POST, 20, 0.1)};
    for (size_t i = 0; i < 2; i++) KVR_CHECK_OK(kvr_predict_costs_set_fit(c, &fits[i], &e), &e);
    kvr_predict_fit a;
    memset(&a, 0, sizeof a);
    a.op = KVR_OP_ATTN;
    a.form = KVR_PREDICT_FORM_ATTN;
    a.n_coef = 4;
    a.coef[0] = 5, a.coef[1] = 0.01, a.coef[2] = 0.001, a.coef[3] = 1e-5;
    KVR_CHECK_OK(kvr_predict_costs_set_fit(c, &a, &e), &e);
    kvr_predictor *kp = NULL;
    KVR_CHECK_OK(kvr_predictor_from_json(predictor_json, strlen(predictor_json), "t", &kp, &e),
                 &e);
    if (plan) KVR_CHECK_OK(kvr_predictor_set_strategy_table(kp, plan, &e), &e);
    kvr_predictor_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.predictor_id = 42;
    meta.n_threads = threads;
    meta.err_band = err_band;
    char *text = NULL;
    KVR_CHECK_OK(kvr_predictor_file_format(kp, c, &meta, &text, &e), &e);
    FILE *f = fopen(path, "wb");
    KVR_CHECK(f && text && fwrite(text, 1, strlen(text), f) == strlen(text));
    if (f) fclose(f);
    free(text);
    kvr_predictor_destroy(kp);
    kvr_predict_costs_destroy(c);
}

static int32_t *ids_of(int64_t n) {
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    for (int64_t i = 0; i < n; i++) ids[i] = (int32_t)((i * 37 + 11) % 256);
    return ids;
}

static void test_session(void) {
    kvr_model_load_params lp = kvr_model_load_params_default();
    kvr_model *m = NULL;
    kvr_error e = {0};
    KVR_CHECK_OK(kvr_model_load("tiny", &lp, &m, &e), &e);
    if (!m) return;
    const int64_t n = 96;
    int32_t *ids = ids_of(n);
    kvr_session_params sp = kvr_session_params_default();
    sp.model = m;
    sp.mode = KVR_MODE_KVR;
    sp.n_ranks = 2;
    sp.repeat = 3;
    kvr_session_result r;

    /* even, three runs: the median and the spread */
    KVR_CHECK_OK(kvr_session_run(&sp, ids, n, &r, &e), &e);
    KVR_CHECK(r.stage == KVR_SESSION_STAGE_NONE && r.n_runs == 3);
    const kvr_prefill_result *med = kvr_session_median(&r);
    KVR_CHECK(med->partition[0] == 48 && med->partition[1] == 48);
    KVR_CHECK(r.ttft_min_ms <= med->ttft_ms && med->ttft_ms <= r.ttft_max_ms);
    KVR_CHECK(r.partition_source == KVR_SESSION_PARTITION_EVEN && r.predicted_ttft_ms < 0);
    KVR_CHECK(strstr(r.no_prediction, "no store or predictor file") && isnan(r.prediction_error));
    KVR_CHECK(r.measured_run_id == 0 && !r.has_predictor);
    /* the session was made before the first run: both ranks prepared, every run on them */
    KVR_CHECK_EQ_INT(r.session_ranks, 2);
    KVR_CHECK_EQ_INT(r.session_warmup_tokens, 96); /* min(the prompt, 64 per rank) */
    KVR_CHECK(r.session_ms >= 0);
    for (int32_t i = 0; i < r.n_runs; i++)
        KVR_CHECK(r.runs[i].ranks[0].ready && r.runs[i].ranks[1].ready);
    const int32_t first = med->first_token;
    kvr_session_result_free(&r);

    /* explicit: the same first token; "even" as text is the even source */
    sp.repeat = 1;
    sp.partition = KVR_SESSION_PARTITION_EXPLICIT;
    sp.partition_text = "70,26";
    KVR_CHECK_OK(kvr_session_run(&sp, ids, n, &r, &e), &e);
    KVR_CHECK(kvr_session_median(&r)->partition[0] == 70 && r.partition_source ==
                                                                 KVR_SESSION_PARTITION_EXPLICIT);
    KVR_CHECK_EQ_INT(kvr_session_median(&r)->first_token, first);
    kvr_session_result_free(&r);
    sp.partition_text = "even";
    KVR_CHECK_OK(kvr_session_run(&sp, ids, n, &r, &e), &e);
    KVR_CHECK(r.partition_source == KVR_SESSION_PARTITION_EVEN);
    kvr_session_result_free(&r);

    /* usage errors */
    sp.partition_text = "70,x";
    KVR_CHECK(kvr_session_run(&sp, ids, n, &r, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(r.stage == KVR_SESSION_STAGE_INPUT && strstr(e.msg, "--partition: "));
    kvr_session_result_free(&r);
    sp.partition = KVR_SESSION_PARTITION_AUTO;
    KVR_CHECK(kvr_session_run(&sp, ids, 1, &r, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(r.stage == KVR_SESSION_STAGE_INPUT && strstr(e.msg, "more ranks than the 1"));
    kvr_session_result_free(&r);

    /* auto from a predictor file: its partition, its cost model, drift against a tiny band */
    char path[] = "/tmp/kvr_test_session_XXXXXX";
    int fd = mkstemp(path);
    KVR_CHECK(fd >= 0);
    if (fd >= 0) close(fd);
    write_predictor(path, 1e-9, 1);
    sp.predictor_path = path;
    KVR_CHECK_OK(kvr_session_run(&sp, ids, n, &r, &e), &e);
    KVR_CHECK(r.has_predictor && r.predictor_id == 42 && strstr(r.predictor_from, path));
    int64_t want[2];
    kvr_predictor *kp = NULL;
    KVR_CHECK_OK(kvr_predictor_load(path, &kp, &e), &e);
    KVR_CHECK_OK(kvr_predictor_predict(kp, 2, n, want, &e), &e);
    kvr_predictor_destroy(kp);
    KVR_CHECK(kvr_session_median(&r)->partition[0] == want[0] && r.partition[1] == want[1]);
    KVR_CHECK(r.predicted_ttft_ms > 0 && r.err_band == 1e-9 && r.drift);
    KVR_CHECK(strstr(r.cost_model_from, "the cost model of predictor file"));
    KVR_CHECK(r.predict_us > 0 && r.predict_warm_us > 0);
    kvr_session_result_free(&r);
    /* the cost model of a 2-thread profile does not predict a 1-thread run */
    write_predictor(path, 0.5, 2);
    sp.partition = KVR_SESSION_PARTITION_EVEN;
    KVR_CHECK_OK(kvr_session_run(&sp, ids, n, &r, &e), &e);
    KVR_CHECK(r.predicted_ttft_ms < 0 && strstr(r.no_prediction, "profiled with 2 thread(s)"));
    kvr_session_result_free(&r);

    /* a store: auto without a predictor for this model; the record of an even run */
    kvr_db *db = NULL;
    KVR_CHECK_OK(kvr_db_open(":memory:", NULL, &db, &e), &e);
    kvr_db_model rec;
    memset(&rec, 0, sizeof rec);
    snprintf(rec.name, sizeof rec.name, "tiny");
    snprintf(rec.content_hash, sizeof rec.content_hash, "t1");
    rec.n_layers = 4;
    int64_t model_id = 0;
    KVR_CHECK_OK(kvr_db_model_put(db, &rec, &model_id, &e), &e);
    sp.db = db;
    sp.db_writable = true;
    sp.model_record = &rec;
    sp.model_id = model_id;
    sp.predictor_path = NULL;
    sp.partition = KVR_SESSION_PARTITION_AUTO;
    KVR_CHECK(kvr_session_run(&sp, ids, n, &r, &e) == KVR_ERR_NOT_FOUND);
    KVR_CHECK(r.stage == KVR_SESSION_STAGE_PREDICTOR &&
              strstr(e.msg, "no 2-rank KVR-P predictor for model tiny"));
    kvr_session_result_free(&r);
    sp.partition = KVR_SESSION_PARTITION_EVEN;
    KVR_CHECK_OK(kvr_session_run(&sp, ids, n, &r, &e), &e);
    KVR_CHECK(r.measured_run_id > 0 && strstr(r.no_prediction, "no cost model of this model"));
    kvr_db_measured_run *mr = NULL;
    int64_t nm = 0;
    KVR_CHECK_OK(kvr_db_measured_runs_list(db, &mr, &nm, &e), &e);
    KVR_CHECK(nm == 1 && mr && !strcmp(mr[0].partition_source, "even") && mr[0].model_id == model_id);
    KVR_CHECK(nm == 1 && mr && !strcmp(mr[0].partition, "48,48") && !strcmp(mr[0].mode, "kvr"));
    KVR_CHECK(nm == 1 && mr && !strcmp(mr[0].transport, "threads") && mr[0].predicted_ttft_ms < 0);
    kvr_db_free(mr);
    kvr_session_result_free(&r);
    sp.db_writable = false; /* a read-only store: nothing recorded */
    KVR_CHECK_OK(kvr_session_run(&sp, ids, n, &r, &e), &e);
    KVR_CHECK(r.measured_run_id == 0);
    kvr_session_result_free(&r);
    kvr_session_result_free(NULL);
    KVR_CHECK(!strcmp(kvr_session_partition_name(KVR_SESSION_PARTITION_AUTO), "auto"));

    kvr_db_close(db);
    unlink(path);
    free(ids);
    kvr_model_destroy(m);
}

/* issue 14: --mode auto -- the strategy table's choice within the ranks offered among what the
 * runtime runs, KVR-P's partition for kvr-s, single on one rank, and a file without a table. */
static void test_auto_mode(void) {
    kvr_model_load_params lp = kvr_model_load_params_default();
    kvr_model *m = NULL;
    kvr_error e = {0};
    KVR_CHECK_OK(kvr_model_load("tiny", &lp, &m, &e), &e);
    if (!m) return;
    const int64_t n = 96;
    int32_t *ids = ids_of(n);
    /* one context (96): ring on 4 ranks, then kvr-s on 2, tsp on 4, single */
    kvr_strategy_row rows[3];
    for (int i = 0; i < 3; i++) {
        rows[i].context = 96;
        for (int k = 0; k < KVR_STRATEGY_COUNT; k++) rows[i].ttft_us[k] = -1;
    }
    rows[0].n_ranks = 4, rows[0].ttft_us[KVR_STRATEGY_RING] = 100;
    rows[0].ttft_us[KVR_STRATEGY_TSP] = 300;
    rows[1].n_ranks = 2, rows[1].ttft_us[KVR_STRATEGY_KVR_S] = 200;
    rows[2].n_ranks = 1, rows[2].ttft_us[KVR_STRATEGY_SINGLE] = 400;
    kvr_strategy_table *plan = NULL;
    KVR_CHECK_OK(kvr_strategy_table_build(rows, 3, &plan, &e), &e);
    char path[] = "/tmp/kvr_test_auto_XXXXXX";
    int fd = mkstemp(path);
    KVR_CHECK(fd >= 0);
    if (fd >= 0) close(fd);
    write_predictor_plan(path, 0.5, 1, plan);
    kvr_session_params sp = kvr_session_params_default();
    sp.model = m;
    sp.auto_mode = true;
    sp.predictor_path = path;
    kvr_session_result r;
    const bool ring_runs = kvr_strategy_runnable(KVR_STRATEGY_RING, "cpu", "threads");
    sp.n_ranks = 4;
    KVR_CHECK_OK(kvr_session_run(&sp, ids, n, &r, &e), &e);
    if (ring_runs) {
        KVR_CHECK(r.strategy == KVR_STRATEGY_RING && r.n_ranks == 4 && r.mode == KVR_MODE_RING);
        KVR_CHECK(kvr_session_median(&r)->n_ranks == 4);
    } else {
        KVR_CHECK(r.strategy == KVR_STRATEGY_KVR_S && r.n_ranks == 2);
    }
    KVR_CHECK(r.plan_us > 0 && r.plan_warm_us > 0 && r.plan_context == 96 && r.plan_in_range);
    KVR_CHECK(r.predicted_ttft_ms > 0 && strstr(r.predictor_from, path));
    kvr_session_result_free(&r);
    /* at most 3 ranks: kvr-s on 2 with KVR-P's partition */
    sp.n_ranks = 3;
    KVR_CHECK_OK(kvr_session_run(&sp, ids, n, &r, &e), &e);
    KVR_CHECK(r.strategy == KVR_STRATEGY_KVR_S && r.n_ranks == 2 && r.mode == KVR_MODE_KVR);
    KVR_CHECK(r.partition_source == KVR_SESSION_PARTITION_AUTO);
    int64_t want[2];
    kvr_predictor *kp = NULL;
    KVR_CHECK_OK(kvr_predictor_load(path, &kp, &e), &e);
    KVR_CHECK_OK(kvr_predictor_predict(kp, 2, n, want, &e), &e);
    kvr_predictor_destroy(kp);
    KVR_CHECK(kvr_session_median(&r)->partition[0] == want[0] &&
              kvr_session_median(&r)->partition[1] == want[1]);
    kvr_session_result_free(&r);
    /* one rank offered: single, no table needed */
    sp.n_ranks = 1;
    KVR_CHECK_OK(kvr_session_run(&sp, ids, n, &r, &e), &e);
    KVR_CHECK(r.strategy == KVR_STRATEGY_SINGLE && r.n_ranks == 1 && r.mode == KVR_MODE_SINGLE);
    kvr_session_result_free(&r);
    /* a file made before strategy tables: said, at the predictor stage */
    write_predictor(path, 0.5, 1);
    sp.n_ranks = 2;
    KVR_CHECK(kvr_session_run(&sp, ids, n, &r, &e) == KVR_ERR_NOT_FOUND);
    KVR_CHECK(r.stage == KVR_SESSION_STAGE_PREDICTOR && strstr(e.msg, "has no strategy table"));
    kvr_session_result_free(&r);
    /* no predictor at all */
    sp.predictor_path = NULL;
    KVR_CHECK(kvr_session_run(&sp, ids, n, &r, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(r.stage == KVR_SESSION_STAGE_INPUT && strstr(e.msg, "--mode auto needs a predictor"));
    kvr_session_result_free(&r);
    kvr_strategy_table_destroy(plan);
    unlink(path);
    free(ids);
    kvr_model_destroy(m);
}

/* issue 17: the memory a run needs, from the model's shape alone (the tiny preset: 4 layers,
 * d 64, 4/2 heads x 16, ffn 256 (kvr_model_config), vocab 256) */
static void test_memory_estimate(void) {
    kvr_model_load_params lp = kvr_model_load_params_default();
    kvr_model *m = NULL;
    kvr_error e = {0};
    KVR_CHECK_OK(kvr_model_load("tiny", &lp, &m, &e), &e);
    if (!m) return;
    const kvr_model_config *cfg = kvr_model_get_config(m);
    const double kv_tok = (double)kvr_model_kv_bytes_per_token(cfg) * cfg->n_layers;
    kvr_session_params sp = kvr_session_params_default();
    sp.model = m;
    kvr_session_memory a, b, c;
    /* single: the K/V cache of every layer for all positions */
    KVR_CHECK_OK(kvr_session_memory_estimate(&sp, 1000, &a, &e), &e);
    KVR_CHECK_EQ_INT(a.n_ranks_here, 1);
    KVR_CHECK_NEAR(a.kv_cache, 1000 * kv_tok, 0, 1e-12);
    KVR_CHECK(a.workspaces > 0 && a.weights == (double)kvr_model_weight_bytes(m) && a.weights > 0);
    /* kvr on 4 ranks as threads here: rank i holds (i+1)/4 of the positions */
    sp.mode = KVR_MODE_KVR;
    sp.n_ranks = 4;
    KVR_CHECK_OK(kvr_session_memory_estimate(&sp, 1000, &b, &e), &e);
    KVR_CHECK_EQ_INT(b.n_ranks_here, 4);
    KVR_CHECK_NEAR(b.kv_cache, (250 + 500 + 750 + 1000) * kv_tok, 0, 1e-12);
    /* tsp: every rank holds all of them; an explicit partition is used when it parses */
    sp.mode = KVR_MODE_TSP;
    KVR_CHECK_OK(kvr_session_memory_estimate(&sp, 1000, &c, &e), &e);
    KVR_CHECK_NEAR(c.kv_cache, 4 * 1000 * kv_tok, 0, 1e-12);
    sp.mode = KVR_MODE_KVR;
    sp.partition = KVR_SESSION_PARTITION_EXPLICIT;
    sp.partition_text = "700,100,100,100";
    KVR_CHECK_OK(kvr_session_memory_estimate(&sp, 1000, &c, &e), &e);
    KVR_CHECK_NEAR(c.kv_cache, (700 + 800 + 900 + 1000) * kv_tok, 0, 1e-12);
    /* linear in the context: 1M tokens need ~1000x what 1000 do */
    sp.partition = KVR_SESSION_PARTITION_EVEN;
    sp.mode = KVR_MODE_SINGLE;
    sp.n_ranks = 1;
    KVR_CHECK_OK(kvr_session_memory_estimate(&sp, 1000000, &c, &e), &e);
    KVR_CHECK_NEAR(c.kv_cache + c.workspaces, 1000 * (a.kv_cache + a.workspaces), 0, 0.01);
    KVR_CHECK(kvr_session_memory_estimate(&sp, 0, &c, &e) == KVR_ERR_INVALID_ARG);
    /* what the machine has (Linux: /proc/meminfo) */
    KVR_CHECK(kvr_mem_available_bytes() > 0);
    kvr_model_destroy(m);
}

/* issue 17: the prefill reports the last rank's layers to a progress hook, every run */
static int n_progress, last_layer_seen, bad_sequence;
static void count_progress(void *user, int32_t layer, int32_t n_layers) {
    (void)user;
    if (layer != last_layer_seen % n_layers + 1) bad_sequence++;
    last_layer_seen = layer;
    n_progress++;
}

static void test_progress(void) {
    kvr_model_load_params lp = kvr_model_load_params_default();
    kvr_model *m = NULL;
    kvr_error e = {0};
    KVR_CHECK_OK(kvr_model_load("tiny", &lp, &m, &e), &e);
    if (!m) return;
    int32_t *ids = ids_of(64);
    kvr_session_params sp = kvr_session_params_default();
    sp.model = m;
    sp.mode = KVR_MODE_KVR;
    sp.n_ranks = 2;
    sp.repeat = 2;
    sp.progress = count_progress;
    kvr_session_result r;
    KVR_CHECK_OK(kvr_session_run(&sp, ids, 64, &r, &e), &e);
    KVR_CHECK_EQ_INT(n_progress, 2 * kvr_model_get_config(m)->n_layers);
    KVR_CHECK_EQ_INT(bad_sequence, 0);
    kvr_session_result_free(&r);
    free(ids);
    kvr_model_destroy(m);
}

static const kvr_test_case cases[] = {
    {"auto_mode", test_auto_mode},
    {"session", test_session},
    {"memory_estimate", test_memory_estimate},
    {"progress", test_progress},
};
KVR_TEST_MAIN(cases)
