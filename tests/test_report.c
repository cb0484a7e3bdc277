/* test_report.c -- the regression report (report/report.c) with a stand-in renderer: every
 * section and plot is present for a store holding a fitted cost model, a partition table, a
 * KVR-P predictor and measured runs (one drifting); text is escaped; each plot script is a
 * complete gnuplot SVG script with its data inline; an empty store gives notes and no plots; a
 * failing renderer fails the build with the plot's name; serving runs give the serving section's
 * table and plots. The real gnuplot + headless Chromium
 * rendering is tests/cli/test_kvr_report.sh. */
#include "kvr_predict.h"
#include "kvr_report.h"
#include "kvr_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char kvr_test_tmpdir[256];

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* the stand-in renderer */
typedef struct fake {
    int calls, fail_at;
    char names[16][32];
    bool scripts_ok;
} fake;

static kvr_status fake_plot(void *user, const char *name, const char *script, char **svg,
                            kvr_error *err) {
    fake *f = user;
    if (f->calls < 16) snprintf(f->names[f->calls], sizeof f->names[0], "%s", name);
    f->calls++;
    if (f->calls == f->fail_at) return kvr_error_set(err, KVR_ERR_INTERNAL, "renderer broke");
    /* a complete script: SVG terminal, inline data, one plot command */
    if (strncmp(script, "set terminal svg", 16) != 0 || !strstr(script, "\nplot ") ||
        !strstr(script, "<< EOD\n") || count(script, "<< EOD\n") != count(script, "\nEOD\n"))
        f->scripts_ok = false;
    size_t n = strlen(name) + 128;
    *svg = malloc(n);
    snprintf(*svg, n, "<?xml version=\"1.0\"?>\n<!DOCTYPE svg>\n<svg id=\"s-%s\"><g/></svg>\n",
             name);
    return KVR_OK;
}

static void planted_samples(kvr_db *db, int64_t run) {
    kvr_error e = {0};
    const char *ops[] = {"embed", "pre", "attn", "post", "head"};
    for (int k = 0; k < 5; k++)
        for (int i = 0; i < 8; i++) {
            int64_t c = !strcmp(ops[k], "head") ? 1 : (int64_t)16 << i;
            for (int j = 0; j < (!strcmp(ops[k], "attn") ? 3 : 1); j++) {
                int64_t P = j ? (int64_t)256 << (2 * j) : 0;
                double t = !strcmp(ops[k], "pre")    ? 40 + 2.0 * c
                           : !strcmp(ops[k], "post") ? 120 + 9.0 * c
                           : !strcmp(ops[k], "embed") ? 0.2 * c
                           : !strcmp(ops[k], "head") ? 300
                                                     : 10 + 0.5 * c + 0.01 * P +
                                                           0.004 * (c * (double)P + 0.5 * c * c);
                t *= 1 + 0.01 * sin(7.0 * i + j + k);
                kvr_db_layer_sample s;
                memset(&s, 0, sizeof s);
                s.run_id = run;
                snprintf(s.op, sizeof s.op, "%s", ops[k]);
                s.c = c, s.prefix = P;
                s.stats.n_iters = 3;
                s.stats.min_us = s.stats.p10_us = s.stats.median_us = s.stats.p90_us = t;
                s.stats.mean_us = s.stats.max_us = t;
                KVR_CHECK_OK(kvr_db_layer_sample_put(db, &s, &e), &e);
            }
            if (!strcmp(ops[k], "head")) break;
        }
}

/* A store as the quickstart leaves it: profile, fit, table + predictor, measured runs. */
static void fill_store(kvr_db *db) {
    kvr_error e = {0};
    kvr_db_device d;
    memset(&d, 0, sizeof d);
    snprintf(d.kind, sizeof d.kind, "cpu");
    snprintf(d.name, sizeof d.name, "Test <CPU> & co");
    kvr_db_model m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "planted");
    snprintf(m.content_hash, sizeof m.content_hash, "feed");
    m.n_layers = 6, m.kv_bytes_per_token = 256;
    kvr_db_run r = kvr_db_run_init("profile");
    KVR_CHECK_OK(kvr_db_device_put(db, &d, &r.device_id, &e), &e);
    KVR_CHECK_OK(kvr_db_model_put(db, &m, &r.model_id, &e), &e);
    r.n_threads = 1;
    KVR_CHECK_OK(kvr_db_run_insert(db, &r, &e), &e);
    planted_samples(db, r.id);
    kvr_predict_run_fit rf;
    KVR_CHECK_OK(kvr_predict_fit_run(db, r.id, 0, NULL, &rf, &e), &e);
    KVR_CHECK_OK(kvr_predict_run_fit_store(db, &rf, NULL, &e), &e);

    /* KVR-S table over the fitted costs, and KVR-P for 2 ranks */
    kvr_search_costs *sc;
    KVR_CHECK_OK(kvr_predict_costs_search_at(rf.costs, 0, &sc, &e), &e);
    int ranks[] = {2};
    int64_t ctx[8];
    for (int i = 0; i < 8; i++) ctx[i] = 512 << (i / 2) | (i % 2 ? 256 << (i / 2) : 0);
    kvr_search_table_config cfg = {ranks, 1, ctx, 8, kvr_search_params_default(), 0};
    kvr_search_table *t;
    KVR_CHECK_OK(kvr_search_table_create(sc, &cfg, &t, &e), &e);
    kvr_db_ptable_row rows[8];
    memset(rows, 0, sizeof rows);
    const kvr_strategy order[5] = {KVR_STRATEGY_KVR_S, KVR_STRATEGY_KVR_E, KVR_STRATEGY_TSP,
                                   KVR_STRATEGY_RING, KVR_STRATEGY_SINGLE};
    for (int i = 0; i < kvr_search_table_n_rows(t); i++) {
        const kvr_search_row *x = kvr_search_table_row(t, i);
        rows[i].n_ranks = x->n_ranks;
        rows[i].context = x->context;
        snprintf(rows[i].partition, sizeof rows[i].partition, "%lld,%lld",
                 (long long)x->partition[0], (long long)x->partition[1]);
        for (int j = 0; j < 5; j++) rows[i].ttft_ms[j] = x->ttft_us[order[j]] * 1e-3;
        snprintf(rows[i].best, sizeof rows[i].best, "%s", kvr_strategy_name(x->best));
    }
    kvr_db_ptable tab;
    memset(&tab, 0, sizeof tab);
    tab.run_id = r.id;
    snprintf(tab.source, sizeof tab.source, "fitted <costs>");
    snprintf(tab.links, sizeof tab.links, "ideal");
    tab.granularity = 16;
    char *tj;
    KVR_CHECK_OK(kvr_search_table_format(t, KVR_SEARCH_FORMAT_JSON, NULL, &tj, &e), &e);
    tab.json = tj;
    KVR_CHECK_OK(kvr_db_ptable_put(db, &tab, rows, kvr_search_table_n_rows(t), &e), &e);
    free(tj);
    kvr_predictor *kp;
    KVR_CHECK_OK(kvr_predictor_fit(sc, t, 16, NULL, &kp, &e), &e);
    char *pj;
    KVR_CHECK_OK(kvr_predictor_file_format(kp, rf.costs, NULL, &pj, &e), &e);
    kvr_db_predictor pr;
    memset(&pr, 0, sizeof pr);
    pr.table_id = tab.id, pr.run_id = r.id, pr.n_ranks = 2;
    snprintf(pr.form, sizeof pr.form, "balanced");
    snprintf(pr.links, sizeof pr.links, "ideal");
    pr.gap_mean = 0.0001, pr.gap_max = 0.002, pr.err_band = rf.err_band;
    pr.json = pj;
    KVR_CHECK_OK(kvr_db_predictor_put(db, &pr, &e), &e);
    free(pj);

    /* measured runs: every category, one drifting */
    const char *modes[] = {"single", "kvr", "kvr", "tsp", "kvr"};
    const char *src[] = {"even", "even", "auto", "even", "auto"};
    const int nr[] = {1, 2, 2, 2, 2};
    for (int i = 0; i < 5; i++) {
        kvr_db_measured_run mr;
        memset(&mr, 0, sizeof mr);
        mr.model_id = r.model_id;
        snprintf(mr.mode, sizeof mr.mode, "%s", modes[i]);
        snprintf(mr.partition_source, sizeof mr.partition_source, "%s", src[i]);
        snprintf(mr.transport, sizeof mr.transport, "threads");
        mr.n_ranks = nr[i], mr.n_threads = 1, mr.n_tokens = 2048;
        snprintf(mr.partition, sizeof mr.partition, nr[i] == 1 ? "2048" : "1152,896");
        mr.predicted_ttft_ms = 100 + 10 * i;
        mr.ttft_ms = mr.predicted_ttft_ms * (i == 4 ? 1.6 : 1.01);
        mr.drift = i == 4;
        mr.predictor_id = !strcmp(src[i], "auto") ? pr.id : 0;
        KVR_CHECK_OK(kvr_db_measured_run_put(db, &mr, &e), &e);
    }
    kvr_predictor_destroy(kp);
    kvr_search_table_destroy(t);
    kvr_search_costs_destroy(sc);
    kvr_predict_run_fit_free(&rf);
}

static void test_full_report(void) {
    const char *path = kvr_test_tmp_path("full.db");
    kvr_db *db;
    kvr_error e = {0};
    KVR_CHECK_OK(kvr_db_open(path, NULL, &db, &e), &e);
    fill_store(db);
    fake f = {0, 0, {{0}}, true};
    char *html = NULL, *md = NULL;
    kvr_report_summary sum;
    kvr_report_options o = kvr_report_options_default();
    o.title = "A <report> & more";
    KVR_CHECK_OK(kvr_report_build(db, &o, fake_plot, &f, &html, &md, &sum, &e), &e);
    if (!html || !md) return;
    const char *want[] = {"fits",           "residuals",     "pred_vs_measured",
                          "ttft_vs_context", "fractions",     "timeline_kvrp",
                          "timeline_kvre",   "timeline_tsp"};
    KVR_CHECK_EQ_INT(sum.n_plots, 8);
    KVR_CHECK_EQ_INT(f.calls, 8);
    KVR_CHECK(f.scripts_ok);
    KVR_CHECK_EQ_INT(count(html, "<svg"), 8);
    KVR_CHECK_EQ_INT(count(html, "<?xml"), 0); /* prologues stripped: inline SVG */
    for (int i = 0; i < 8; i++) {
        char id[64];
        snprintf(id, sizeof id, "id=\"plot-%s\"", want[i]);
        KVR_CHECK(strstr(html, id) != NULL);
        KVR_CHECK(!strcmp(f.names[i], want[i]));
    }
    KVR_CHECK(strstr(html, "<title>A &lt;report&gt; &amp; more</title>") != NULL);
    KVR_CHECK(strstr(html, "Test &lt;CPU&gt; &amp; co") != NULL);
    KVR_CHECK(strstr(html, "<CPU>") == NULL);
    KVR_CHECK(strstr(html, "TTFT error band") != NULL);
    KVR_CHECK(count(html, "class=\"drift\"") == 1);
    KVR_CHECK(strstr(html, "<td>kvr-p</td><td>threads</td><td>2</td><td>2</td>") != NULL);
    KVR_CHECK(strstr(html, "http://") == NULL && strstr(html, "https://") == NULL &&
              strstr(html, "<script") == NULL); /* self-contained */
    KVR_CHECK(sum.n_cost_models == 1 && sum.n_predictors == 1 && sum.n_measured == 5 &&
              sum.n_predicted == 5 && sum.n_drift == 1 && sum.n_tables == 1);
    /* the summary */
    KVR_CHECK(strstr(md, "# A <report> & more") != NULL);
    KVR_CHECK(strstr(md, "| attn | attn |") != NULL);
    KVR_CHECK(strstr(md, "| kvr-p | threads | 2 | 2 |") != NULL);
    KVR_CHECK(strstr(md, "DRIFT") != NULL);
    free(html);
    free(md);

    /* a failing renderer fails the report, naming the plot */
    fake g = {0, 3, {{0}}, true};
    html = NULL;
    KVR_CHECK(kvr_report_build(db, NULL, fake_plot, &g, &html, NULL, NULL, &e) ==
              KVR_ERR_INTERNAL);
    KVR_CHECK(strstr(e.msg, "plot pred_vs_measured") && strstr(e.msg, "renderer broke"));
    KVR_CHECK(html == NULL);
    kvr_db_close(db);
}

static void test_empty_store(void) {
    const char *path = kvr_test_tmp_path("empty.db");
    kvr_db *db;
    kvr_error e = {0};
    KVR_CHECK_OK(kvr_db_open(path, NULL, &db, &e), &e);
    fake f = {0, 0, {{0}}, true};
    char *html = NULL, *md = NULL;
    kvr_report_summary sum;
    KVR_CHECK_OK(kvr_report_build(db, NULL, fake_plot, &f, &html, &md, &sum, &e), &e);
    KVR_CHECK_EQ_INT(sum.n_plots, 0);
    KVR_CHECK_EQ_INT(f.calls, 0);
    KVR_CHECK(html && strstr(html, "No fitted cost model yet") && strstr(html, "</html>"));
    KVR_CHECK(md && strstr(md, "No measured runs yet") && strstr(md, "No serving runs yet"));
    free(html);
    free(md);
    KVR_CHECK(kvr_report_build(NULL, NULL, fake_plot, &f, &html, NULL, NULL, &e) ==
              KVR_ERR_INVALID_ARG);
    kvr_db_close(db);
}

/* A renderer that keeps every script (for the serving section's checks). */
typedef struct keep {
    int n;
    char names[32][48];
    char *scripts[32];
} keep;

static kvr_status keep_plot(void *user, const char *name, const char *script, char **svg,
                            kvr_error *err) {
    keep *k = user;
    if (k->n < 32) {
        snprintf(k->names[k->n], sizeof k->names[0], "%s", name);
        k->scripts[k->n] = kvr_strdup(script);
        k->n++;
    }
    return fake_plot(&(fake){0, 0, {{0}}, true}, name, script, svg, err);
}

static const char *kept(const keep *k, const char *name) {
    for (int i = 0; i < k->n; i++)
        if (!strcmp(k->names[i], name)) return k->scripts[i];
    return NULL;
}

static void put_serving(kvr_db *db, const char *kind, const char *trace, const char *hash,
                        const char *policy, double rate, bool with_occ) {
    enum { N = 50 };
    kvr_db_serving_run r;
    memset(&r, 0, sizeof r);
    snprintf(r.kind, sizeof r.kind, "%s", kind);
    snprintf(r.trace, sizeof r.trace, "%s", trace);
    snprintf(r.trace_hash, sizeof r.trace_hash, "%s", hash);
    snprintf(r.policy, sizeof r.policy, "%s", policy);
    snprintf(r.cost_source, sizeof r.cost_source, "%s", strcmp(kind, "measured") ? "costs.json" : "");
    snprintf(r.backend, sizeof r.backend, "cpu");
    r.n_requests = N, r.trace_duration_s = N / rate, r.rate_per_s = rate;
    r.block_tokens = 16, r.pool_blocks = 100, r.max_seqs = 8;
    r.n_finished = N - 1, r.n_refused = 1;
    r.ttft_p50_ms = 100 * rate, r.ttft_p90_ms = 300 * rate;
    kvr_db_serving_request q[N];
    memset(q, 0, sizeof q);
    for (int i = 0; i < N; i++) {
        q[i].idx = i;
        q[i].arrival_s = i / rate;
        q[i].prompt_tokens = 100 + 37 * i;
        q[i].output_tokens = 1 + i % 9;
        q[i].max_blocks = 1 + i % 5;
        if (i == 7) {
            q[i].refused = true;
            q[i].admitted_s = q[i].first_token_s = q[i].finish_s = -1;
            continue;
        }
        q[i].admitted_s = q[i].arrival_s + 0.002 * (i % 4);
        q[i].first_token_s = q[i].admitted_s + 0.05 + 0.001 * i;
        q[i].finish_s = q[i].first_token_s + 0.02 * q[i].output_tokens;
    }
    kvr_db_serving_occupancy o[3] = {{0, 0, 10, 12}, {0, 1, 40.5, 60}, {0, 2, 0, 0}};
    kvr_error e = {0};
    KVR_CHECK_OK(kvr_db_serving_run_put(db, &r, q, N, with_occ ? o : NULL, with_occ ? 3 : 0, &e),
                 &e);
}

/* Serving runs: the table, per trace TTFT/TPOT CDFs (simulated solid, measured dashed), queue
 * time vs prompt length, occupancy (stored, or approximated from the requests: said so), and
 * TTFT vs rate for a family of traces at two rates. */
static void test_serving_section(void) {
    const char *path = kvr_test_tmp_path("serving.db");
    kvr_db *db;
    kvr_error e = {0};
    KVR_CHECK_OK(kvr_db_open(path, NULL, &db, &e), &e);
    put_serving(db, "simulated", "fam_r1.csv", "aaaa", "vllm", 1, true);
    put_serving(db, "simulated", "fam_r2.csv", "bbbb", "vllm", 2, true);
    put_serving(db, "simulated", "load_test.csv", "cccc", "vllm", 4, true);
    put_serving(db, "simulated", "renamed.csv", "cccc", "chunked", 4, true); /* same trace */
    put_serving(db, "measured", "load_test.csv", "cccc", "vllm", 4, false);
    keep k = {0, {{0}}, {0}};
    char *html = NULL, *md = NULL;
    kvr_report_summary sum;
    KVR_CHECK_OK(kvr_report_build(db, NULL, keep_plot, &k, &html, &md, &sum, &e), &e);
    if (!html || !md) return;
    KVR_CHECK_EQ_INT(sum.n_serving_runs, 5);
    KVR_CHECK_EQ_INT(sum.n_serving_traces, 3);
    KVR_CHECK_EQ_INT(sum.n_plots, 13);
    static const char *const want[] = {"serving_ttft_cdf_1", "serving_tpot_cdf_1",
                                       "serving_queue_1",    "serving_occupancy_1",
                                       "serving_ttft_cdf_3", "serving_occupancy_3",
                                       "serving_ttft_vs_rate"};
    for (int i = 0; i < 7; i++) KVR_CHECK(kept(&k, want[i]) != NULL);
    const char *cdf = kept(&k, "serving_ttft_cdf_1"); /* the newest trace: 3 runs, one measured */
    if (cdf) {
        KVR_CHECK(strstr(cdf, "'vllm, simulated (run 3)' noenhanced") != NULL);
        KVR_CHECK(strstr(cdf, "'chunked, simulated (run 4)' noenhanced") != NULL);
        KVR_CHECK(strstr(cdf, "dt 2 title 'vllm, measured (run 5)'") != NULL);
        KVR_CHECK(count(cdf, " << EOD\n") == 3);
        KVR_CHECK(strstr(cdf, "set title 'TTFT CDF: load_test.csv' noenhanced") != NULL);
    }
    const char *occ = kept(&k, "serving_occupancy_1");
    KVR_CHECK(occ && strstr(occ, "\n1 40.5\n") && strstr(occ, "with steps"));
    KVR_CHECK(strstr(html, "approximated from their requests") != NULL);
    const char *rate = kept(&k, "serving_ttft_vs_rate"); /* fam_r1 + fam_r2: one family */
    KVR_CHECK(rate && strstr(rate, "'fam_r#.csv, vllm, simulated: p50'") &&
              strstr(rate, "\n1 100 300\n2 200 600\nEOD") && count(rate, " << EOD\n") == 1);
    KVR_CHECK(strstr(html, "<h2>5. Serving</h2>") && strstr(html, "<h3>Trace load_test.csv</h3>"));
    KVR_CHECK(strstr(md, "### Serving runs") && strstr(md, "| 5 | measured | load_test.csv | vllm |"));
    for (int i = 0; i < k.n; i++) free(k.scripts[i]);
    free(html);
    free(md);
    kvr_db_close(db);
}

static const kvr_test_case cases[] = {
    {"full_report", test_full_report},
    {"empty_store", test_empty_store},
    {"serving_section", test_serving_section},
};

int main(int argc, char **argv) {
    int rc = kvr_test_main(cases, (int)(sizeof cases / sizeof cases[0]), argc, argv);
    return kvr_test_tmp_cleanup(rc);
}
