/* test_db.c -- the SQLite store: typed records round-trip, transactions are all-or-nothing,
 * forward migration from every older schema version, newer schemas and foreign files refused
 * with the file untouched, WAL mode, stale-run reaping and claiming, deletion, the integrity
 * check, CSV export -> import round trip and the CSV parser's error messages, JSON export,
 * concurrent writers from several processes; serving runs (v5): round trip of a 10,000-request
 * run, refused records, the upgrade from version 4, a writer killed mid-insert. */
#include "db_internal.h"
#include "kvr_test.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <signal.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char kvr_test_tmpdir[256];

static kvr_db *open_mem(void) {
    kvr_db *db = NULL;
    kvr_error err = {0};
    KVR_CHECK_OK(kvr_db_open(":memory:", NULL, &db, &err), &err);
    return db;
}

/* A run with model and device, as kvr-profile makes one. */
static int64_t make_run(kvr_db *db) {
    kvr_error err = {0};
    kvr_db_device d;
    memset(&d, 0, sizeof d);
    snprintf(d.kind, sizeof d.kind, "cpu");
    snprintf(d.name, sizeof d.name, "Test CPU");
    snprintf(d.host, sizeof d.host, "h1");
    d.n_cores = 2;
    d.mem_bytes = 1 << 30;
    d.clock_mhz = 2000;
    kvr_db_model m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "tiny");
    snprintf(m.arch, sizeof m.arch, "llama");
    snprintf(m.source, sizeof m.source, "preset:tiny");
    snprintf(m.content_hash, sizeof m.content_hash, "abc");
    m.n_layers = 4, m.d_model = 64, m.n_heads = 4, m.n_kv_heads = 2, m.head_dim = 16;
    m.d_ff = 160, m.vocab_size = 256, m.max_context = 4096, m.rope_theta = 10000;
    m.kv_bytes_per_token = 256;
    kvr_db_run r = kvr_db_run_init("profile");
    KVR_CHECK_OK(kvr_db_device_put(db, &d, &r.device_id, &err), &err);
    KVR_CHECK_OK(kvr_db_model_put(db, &m, &r.model_id, &err), &err);
    snprintf(r.backend, sizeof r.backend, "cpu");
    snprintf(r.dtype, sizeof r.dtype, "f32");
    snprintf(r.grid, sizeof r.grid, "quick");
    snprintf(r.params, sizeof r.params, "grid=quick;model=tiny");
    r.n_warmup = 1, r.n_iters_min = 3, r.n_iters_max = 30;
    r.time_budget_s = 0.3, r.rel_tol = 0.02, r.timer_overhead_us = 0.03;
    KVR_CHECK_OK(kvr_db_run_insert(db, &r, &err), &err);
    return r.id;
}

static kvr_timing_stats stats_of(double med) {
    kvr_timing_stats t = {1, 5, med * 0.9, med * 0.95, med, med * 1.05, med, med * 0.02, med * 1.2, true};
    return t;
}

// ----------------------------------------------------------------------------

static void test_open_memory(void) {
    kvr_db *db = open_mem();
    KVR_CHECK(db != NULL);
    if (db) KVR_CHECK_EQ_INT(kvr_db_schema_version(db), KVR_DB_SCHEMA_VERSION);
    kvr_db_close(db);
    kvr_db_close(NULL);
}

static void test_records_roundtrip(void) {
    kvr_db *db = open_mem();
    kvr_error err = {0};
    const int64_t id = make_run(db);
    KVR_CHECK(id > 0);
    kvr_db_run r;
    KVR_CHECK_OK(kvr_db_run_get(db, id, &r, &err), &err);
    KVR_CHECK(strcmp(r.kind, "profile") == 0);
    KVR_CHECK_EQ_INT(r.status, KVR_RUN_RUNNING);
    KVR_CHECK(strcmp(r.kvr_version, kvr_version()) == 0);
    KVR_CHECK(strcmp(r.git_commit, kvr_build_commit()) == 0);
    KVR_CHECK(strlen(r.ts_utc) == 20 && r.ts_utc[10] == 'T' && r.ts_utc[19] == 'Z');
    KVR_CHECK_NEAR(r.time_budget_s, 0.3, 0, 1e-12);
    KVR_CHECK_EQ_INT(r.n_iters_max, 30);
    KVR_CHECK(r.pid == getpid());
    /* find-or-insert: the same device and model give the same ids */
    kvr_db_device d;
    KVR_CHECK_OK(kvr_db_device_get(db, r.device_id, &d, &err), &err);
    int64_t d2 = 0;
    KVR_CHECK_OK(kvr_db_device_put(db, &d, &d2, &err), &err);
    KVR_CHECK_EQ_INT(d2, r.device_id);
    kvr_db_model m;
    KVR_CHECK_OK(kvr_db_model_get(db, r.model_id, &m, &err), &err);
    KVR_CHECK_EQ_INT(m.n_kv_heads, 2);
    int64_t m2 = 0;
    KVR_CHECK_OK(kvr_db_model_put(db, &m, &m2, &err), &err);
    KVR_CHECK_EQ_INT(m2, r.model_id);
    m.n_layers = 5;
    KVR_CHECK_OK(kvr_db_model_put(db, &m, &m2, &err), &err);
    KVR_CHECK(m2 != r.model_id);
    /* status */
    KVR_CHECK_OK(kvr_db_run_set_status(db, id, KVR_RUN_COMPLETE, "done", &err), &err);
    KVR_CHECK_OK(kvr_db_run_get(db, id, &r, &err), &err);
    KVR_CHECK_EQ_INT(r.status, KVR_RUN_COMPLETE);
    KVR_CHECK(strcmp(r.note, "done") == 0 && r.ts_end_utc[0]);
    KVR_CHECK_EQ_INT(kvr_db_run_get(db, 999, &r, &err), KVR_ERR_NOT_FOUND);
    KVR_CHECK(strstr(err.msg, "run 999 not found") != NULL);
    kvr_db_run *list = NULL;
    int64_t n = 0;
    KVR_CHECK_OK(kvr_db_runs_list(db, &list, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, 1);
    kvr_db_free(list);
    kvr_db_close(db);
}

static void test_samples_roundtrip(void) {
    kvr_db *db = open_mem();
    kvr_error err = {0};
    const int64_t id = make_run(db);
    kvr_db_layer_sample ls[3];
    memset(ls, 0, sizeof ls);
    const char *ops[3] = {"post", "attn", "pre"};
    for (int i = 0; i < 3; i++) {
        ls[i].run_id = id;
        snprintf(ls[i].op, sizeof ls[i].op, "%s", ops[i]);
        ls[i].c = 64 * (i + 1);
        ls[i].prefix = i == 1 ? 128 : 0;
        ls[i].stats = stats_of(100.0 * (i + 1));
    }
    ls[2].stats.p10_us = NAN; /* unknown statistics stay unknown */
    KVR_CHECK_OK(kvr_db_layer_samples_put(db, ls, 3, &err), &err);
    kvr_db_layer_sample *got = NULL;
    int64_t n = 0;
    KVR_CHECK_OK(kvr_db_layer_samples_get(db, id, &got, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, 3);
    if (n == 3) { /* ordered pre, attn, post */
        KVR_CHECK(strcmp(got[0].op, "pre") == 0 && strcmp(got[1].op, "attn") == 0 &&
                  strcmp(got[2].op, "post") == 0);
        KVR_CHECK(isnan(got[0].stats.p10_us));
        KVR_CHECK_NEAR(got[1].stats.median_us, 200, 0, 1e-12);
        KVR_CHECK_EQ_INT(got[1].prefix, 128);
        KVR_CHECK_EQ_INT(got[1].stats.n_iters, 5);
        KVR_CHECK(got[1].stats.is_stable);
    }
    kvr_db_free(got);
    /* same key replaces */
    ls[0].stats.median_us = 7;
    KVR_CHECK_OK(kvr_db_layer_sample_put(db, &ls[0], &err), &err);
    KVR_CHECK_OK(kvr_db_layer_samples_get(db, id, &got, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, 3);
    if (n == 3) KVR_CHECK_NEAR(got[2].stats.median_us, 7, 0, 0);
    kvr_db_free(got);

    kvr_db_transfer_sample ts;
    memset(&ts, 0, sizeof ts);
    ts.run_id = id;
    snprintf(ts.pattern, sizeof ts.pattern, "allgather");
    ts.src = ts.dst = -1;
    ts.n_ranks = 4;
    ts.size_bytes = 1 << 20;
    ts.stats = stats_of(50);
    ts.algbw_gbps = 20.97152;
    ts.busbw_factor = 0.75;
    ts.busbw_gbps = ts.algbw_gbps * 0.75;
    KVR_CHECK_OK(kvr_db_transfer_sample_put(db, &ts, &err), &err);
    kvr_db_transfer_sample *tg = NULL;
    KVR_CHECK_OK(kvr_db_transfer_samples_get(db, id, &tg, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, 1);
    if (n == 1) {
        KVR_CHECK_EQ_INT(tg[0].src, -1);
        KVR_CHECK_EQ_INT(tg[0].size_bytes, 1 << 20);
        KVR_CHECK_NEAR(tg[0].busbw_factor, 0.75, 0, 0);
    }
    kvr_db_free(tg);
    int64_t nl = 0, nt = 0;
    KVR_CHECK_OK(kvr_db_run_counts(db, id, &nl, &nt, &err), &err);
    KVR_CHECK(nl == 3 && nt == 1);
    kvr_db_close(db);
}

static void test_transaction_all_or_nothing(void) {
    kvr_db *db = open_mem();
    kvr_error err = {0};
    const int64_t id = make_run(db);
    kvr_db_layer_sample ls[2];
    memset(ls, 0, sizeof ls);
    for (int i = 0; i < 2; i++) {
        ls[i].run_id = id;
        snprintf(ls[i].op, sizeof ls[i].op, "pre");
        ls[i].c = 16 * (i + 1);
        ls[i].stats = stats_of(10);
    }
    ls[1].stats.median_us = NAN; /* the second row is invalid: the first must not stay */
    KVR_CHECK(kvr_db_layer_samples_put(db, ls, 2, &err) != KVR_OK);
    int64_t nl = -1;
    KVR_CHECK_OK(kvr_db_run_counts(db, id, &nl, NULL, &err), &err);
    KVR_CHECK_EQ_INT(nl, 0);
    /* explicit transaction rolled back */
    KVR_CHECK_OK(kvr_db_begin(db, &err), &err);
    KVR_CHECK_OK(kvr_db_layer_sample_put(db, &ls[0], &err), &err);
    kvr_db_rollback(db);
    KVR_CHECK_OK(kvr_db_run_counts(db, id, &nl, NULL, &err), &err);
    KVR_CHECK_EQ_INT(nl, 0);
    KVR_CHECK_OK(kvr_db_begin(db, &err), &err);
    KVR_CHECK_OK(kvr_db_layer_sample_put(db, &ls[0], &err), &err);
    KVR_CHECK_OK(kvr_db_commit(db, &err), &err);
    KVR_CHECK_OK(kvr_db_run_counts(db, id, &nl, NULL, &err), &err);
    KVR_CHECK_EQ_INT(nl, 1);
    kvr_db_close(db);
}

/* A file at every older schema version opens and upgrades; its rows survive. */
static void test_migrate_from_every_version(void) {
    for (int32_t v = 0; v < KVR_DB_SCHEMA_VERSION; v++) {
        const char *path = kvr_test_tmp_path("migrate.db");
        kvr_test_rm_db(path);
        sqlite3 *h = NULL;
        KVR_CHECK(sqlite3_open(path, &h) == SQLITE_OK);
        kvr_error err = {0};
        KVR_CHECK_OK(db_migrate(h, path, v, &err), &err);
        if (v >= 1) /* a run as version 1 wrote it */
            KVR_CHECK(sqlite3_exec(h,
                                   "INSERT INTO runs(kind,status,backend,dtype,transport,n_threads,"
                                   "n_ranks,kvr_version,git_commit,build_type,host,device_name,blas,"
                                   "mpi_version,cuda_version,nccl_version,ts_utc,ts_end_utc,n_warmup,"
                                   "n_iters_min,n_iters_max,grid,ops,params,source,pid,pid_start,note) "
                                   "VALUES('profile','complete','cpu','f32','',1,1,'0.0.9','old','',"
                                   "'h','cpu','','','','','2024-01-01T00:00:00Z','',1,3,30,'quick','',"
                                   "'','kvr-profile',1,0,'')",
                                   NULL, NULL, NULL) == SQLITE_OK);
        sqlite3_close(h);
        kvr_db *db = NULL;
        KVR_CHECK_OK(kvr_db_open(path, NULL, &db, &err), &err);
        if (!db) continue;
        KVR_CHECK_EQ_INT(kvr_db_schema_version(db), KVR_DB_SCHEMA_VERSION);
        if (v >= 1) {
            kvr_db_run r;
            KVR_CHECK_OK(kvr_db_run_get(db, 1, &r, &err), &err);
            KVR_CHECK(strcmp(r.git_commit, "old") == 0);
        }
        kvr_db_measured_run mr;
        memset(&mr, 0, sizeof mr);
        snprintf(mr.mode, sizeof mr.mode, "single");
        mr.n_ranks = 1, mr.n_threads = 1, mr.n_tokens = 512, mr.ttft_ms = 1900;
        mr.predicted_ttft_ms = -1;
        KVR_CHECK_OK(kvr_db_measured_run_put(db, &mr, &err), &err);
        bool ok = false;
        char rep[512];
        KVR_CHECK_OK(kvr_db_check(db, &ok, rep, sizeof rep, &err), &err);
        KVR_CHECK(ok);
        if (!ok) fprintf(stderr, "%s", rep);
        kvr_db_close(db);
        /* the schema table records every step once */
        KVR_CHECK(sqlite3_open(path, &h) == SQLITE_OK);
        sqlite3_stmt *s = NULL;
        sqlite3_prepare_v2(h, "SELECT count(*), max(version) FROM kvr_schema", -1, &s, NULL);
        KVR_CHECK(sqlite3_step(s) == SQLITE_ROW);
        KVR_CHECK_EQ_INT(sqlite3_column_int(s, 0), KVR_DB_SCHEMA_VERSION);
        KVR_CHECK_EQ_INT(sqlite3_column_int(s, 1), KVR_DB_SCHEMA_VERSION);
        sqlite3_finalize(s);
        sqlite3_close(h);
    }
}

/* Schema v3: fits, partition tables with rows, predictors, and the measured-run columns
 * round-trip; latest picks the newest per ranks and model and names what is missing. */
static void test_results_roundtrip(void) {
    kvr_db *db = open_mem();
    kvr_error err = {0};
    const int64_t run = make_run(db);
    kvr_db_run rr;
    KVR_CHECK_OK(kvr_db_run_get(db, run, &rr, &err), &err);

    kvr_db_fit f;
    memset(&f, 0, sizeof f);
    f.run_id = run;
    snprintf(f.target, sizeof f.target, "attn");
    snprintf(f.form, sizeof f.form, "causal_area");
    f.n_samples = 42;
    f.r2 = 0.998;
    f.mape_in = 0.012;
    f.mape_cv = -1;
    f.max_err_cv = 0.05;
    f.json = "{\"form\":\"causal_area\",\"coef\":[1,2,3]}";
    KVR_CHECK_OK(kvr_db_fit_put(db, &f, &err), &err);
    KVR_CHECK(f.id > 0 && f.ts_utc[0] && f.kvr_version[0]);
    kvr_db_fit f2 = f;
    f2.run_id = 0;
    snprintf(f2.target, sizeof f2.target, "link:0-1");
    KVR_CHECK_OK(kvr_db_fit_put(db, &f2, &err), &err);
    f2.form[0] = 0;
    KVR_CHECK(kvr_db_fit_put(db, &f2, &err) == KVR_ERR_INVALID_ARG);
    kvr_db_fit *fl = NULL;
    int64_t n = 0;
    KVR_CHECK_OK(kvr_db_fits_list(db, run, &fl, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, 1);
    if (n == 1) {
        KVR_CHECK(!strcmp(fl[0].target, "attn") && !strcmp(fl[0].json, f.json));
        KVR_CHECK_NEAR(fl[0].r2, 0.998, 0, 0);
        KVR_CHECK_NEAR(fl[0].mape_cv, -1, 0, 0);
        KVR_CHECK_NEAR(fl[0].max_err_cv, 0.05, 0, 0);
        KVR_CHECK_EQ_INT(fl[0].n_samples, 42);
    }
    kvr_db_fits_free(fl, n);
    KVR_CHECK_OK(kvr_db_fits_list(db, 0, &fl, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, 2);
    kvr_db_fits_free(fl, n);

    kvr_db_ptable t;
    memset(&t, 0, sizeof t);
    t.run_id = run;
    snprintf(t.source, sizeof t.source, "profile run %lld", (long long)run);
    snprintf(t.links, sizeof t.links, "profile");
    t.granularity = 16;
    t.json = "{\"kvr_partition_table\":1}";
    kvr_db_ptable_row rows[3];
    memset(rows, 0, sizeof rows);
    for (int i = 0; i < 3; i++) {
        rows[i].n_ranks = i < 2 ? 2 : 4;
        rows[i].context = i == 1 ? 4096 : 2048;
        snprintf(rows[i].partition, sizeof rows[i].partition, i < 2 ? "1200,848" : "800,512,400,336");
        for (int k = 0; k < 5; k++) rows[i].ttft_ms[k] = 100 + 10 * k + i;
        rows[i].ttft_ms[KVR_STRATEGY_RING] = -1;
        snprintf(rows[i].best, sizeof rows[i].best, "kvr-s");
        rows[i].search_ms = 0.25;
    }
    KVR_CHECK_OK(kvr_db_ptable_put(db, &t, rows, 3, &err), &err);
    KVR_CHECK(t.id > 0);
    kvr_db_ptable_row *rg = NULL;
    KVR_CHECK_OK(kvr_db_ptable_rows_get(db, t.id, &rg, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, 3);
    if (n == 3) {
        KVR_CHECK(rg[0].n_ranks == 2 && rg[0].context == 2048 && rg[1].context == 4096);
        KVR_CHECK(!strcmp(rg[2].partition, "800,512,400,336"));
        KVR_CHECK_NEAR(rg[1].ttft_ms[KVR_STRATEGY_TSP], 121, 0, 0);
        KVR_CHECK_NEAR(rg[1].ttft_ms[KVR_STRATEGY_RING], -1, 0, 0);
        KVR_CHECK(!strcmp(rg[0].best, "kvr-s") && rg[0].table_id == t.id);
    }
    kvr_db_free(rg);
    /* a duplicate row: nothing of the table stays */
    rows[1] = rows[0];
    kvr_db_ptable t2 = t;
    KVR_CHECK(kvr_db_ptable_put(db, &t2, rows, 3, &err) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(err.msg, "two rows") != NULL);
    kvr_db_ptable *tl = NULL;
    KVR_CHECK_OK(kvr_db_ptables_list(db, &tl, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, 1);
    if (n == 1) KVR_CHECK(tl[0].granularity == 16 && !strcmp(tl[0].json, t.json));
    kvr_db_ptables_free(tl, n);
    KVR_CHECK(kvr_db_ptable_rows_get(db, 999, &rg, &n, &err) == KVR_ERR_NOT_FOUND);

    /* predictors: newest per ranks (and model) */
    kvr_db_predictor p;
    memset(&p, 0, sizeof p);
    KVR_CHECK(kvr_db_predictor_latest(db, 2, 0, &p, &err) == KVR_ERR_NOT_FOUND);
    KVR_CHECK(strstr(err.msg, "2 ranks") && strstr(err.msg, "kvr-fit"));
    p.table_id = t.id;
    p.run_id = run;
    p.n_ranks = 2;
    snprintf(p.form, sizeof p.form, "linear");
    p.gap_mean = 0.001;
    p.gap_max = 0.004;
    p.err_band = 0.08;
    p.json = "{\"kvr_predictor\":1}";
    KVR_CHECK_OK(kvr_db_predictor_put(db, &p, &err), &err);
    const int64_t p1 = p.id;
    snprintf(p.form, sizeof p.form, "pchip");
    p.run_id = 0; /* no run: any model only */
    KVR_CHECK_OK(kvr_db_predictor_put(db, &p, &err), &err);
    KVR_CHECK(p.id > p1);
    kvr_db_predictor got;
    KVR_CHECK_OK(kvr_db_predictor_latest(db, 2, 0, &got, &err), &err);
    KVR_CHECK(got.id == p.id && !strcmp(got.form, "pchip"));
    kvr_db_free(got.json);
    KVR_CHECK_OK(kvr_db_predictor_latest(db, 2, rr.model_id, &got, &err), &err);
    KVR_CHECK(got.id == p1 && !strcmp(got.form, "linear") && !strcmp(got.json, p.json));
    KVR_CHECK_NEAR(got.err_band, 0.08, 0, 0);
    kvr_db_free(got.json);
    KVR_CHECK(kvr_db_predictor_latest(db, 2, rr.model_id + 100, &got, &err) == KVR_ERR_NOT_FOUND);
    KVR_CHECK(kvr_db_predictor_latest(db, 4, 0, &got, &err) == KVR_ERR_NOT_FOUND);
    kvr_db_predictor *pl = NULL;
    KVR_CHECK_OK(kvr_db_predictors_list(db, &pl, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, 2);
    kvr_db_predictors_free(pl, n);

    kvr_db_measured_run mr;
    memset(&mr, 0, sizeof mr);
    snprintf(mr.mode, sizeof mr.mode, "kvr");
    mr.n_ranks = 2, mr.n_threads = 1, mr.n_tokens = 2048, mr.ttft_ms = 900;
    mr.predicted_ttft_ms = 880;
    snprintf(mr.partition_source, sizeof mr.partition_source, "auto");
    mr.predictor_id = p1;
    mr.drift = true;
    KVR_CHECK_OK(kvr_db_measured_run_put(db, &mr, &err), &err);
    kvr_db_measured_run *ml = NULL;
    KVR_CHECK_OK(kvr_db_measured_runs_list(db, &ml, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, 1);
    if (n == 1)
        KVR_CHECK(!strcmp(ml[0].partition_source, "auto") && ml[0].predictor_id == p1 &&
                  ml[0].drift);
    kvr_db_free(ml);

    /* deleting the run keeps what was derived from it, unlinked */
    KVR_CHECK_OK(kvr_db_run_delete(db, run, &err), &err);
    KVR_CHECK_OK(kvr_db_fits_list(db, 0, &fl, &n, &err), &err);
    KVR_CHECK(n == 2 && fl[0].run_id == 0);
    kvr_db_fits_free(fl, n);
    KVR_CHECK_OK(kvr_db_ptables_list(db, &tl, &n, &err), &err);
    KVR_CHECK(n == 1 && tl[0].run_id == 0);
    kvr_db_ptables_free(tl, n);
    bool ok = false;
    char rep[512];
    KVR_CHECK_OK(kvr_db_check(db, &ok, rep, sizeof rep, &err), &err);
    KVR_CHECK(ok);
    kvr_db_close(db);
}

/* The typed queries the tools used to run by hand: the newest fittable run (not failed, not
 * owned by a live writer, with every op asked for), the newest run of a model and device with
 * transfer samples of a pattern, one table by id, and the newest predictor / the fits of a model
 * found by its content hash and layer count. */
static void test_queries(void) {
    kvr_db *db = open_mem();
    kvr_error err = {0};
    static const char *const ops[] = {"pre", "attn", "post"};
    int64_t got = -1;
    KVR_CHECK(kvr_db_run_latest_with_ops(db, ops, 3, &got, &err) == KVR_ERR_NOT_FOUND);
    KVR_CHECK(got == -1 && strstr(err.msg, "pre, attn, post"));
    const int64_t r1 = make_run(db), r2 = make_run(db), r3 = make_run(db), r4 = make_run(db);
    const char *const op_of[4][3] = {{"pre", "attn", "post"}, {"pre", "attn", "post"},
                                     {"pre", "attn", NULL}, {"pre", "attn", "post"}};
    const int64_t ids[4] = {r1, r2, r3, r4};
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 3 && op_of[i][k]; k++) {
            kvr_db_layer_sample ls = {.run_id = ids[i], .c = 64, .stats = stats_of(10)};
            snprintf(ls.op, sizeof ls.op, "%s", op_of[i][k]);
            KVR_CHECK_OK(kvr_db_layer_sample_put(db, &ls, &err), &err);
        }
    /* r4 is being written by this (live) process, r2 failed, r3 lacks post: r1 */
    KVR_CHECK_OK(kvr_db_run_set_status(db, r1, KVR_RUN_INCOMPLETE, "stopped", &err), &err);
    KVR_CHECK_OK(kvr_db_run_set_status(db, r2, KVR_RUN_FAILED, "bad", &err), &err);
    KVR_CHECK_OK(kvr_db_run_set_status(db, r3, KVR_RUN_COMPLETE, NULL, &err), &err);
    KVR_CHECK_OK(kvr_db_run_latest_with_ops(db, ops, 3, &got, &err), &err);
    KVR_CHECK_EQ_INT(got, r1);
    KVR_CHECK_OK(kvr_db_run_latest_with_ops(db, ops, 2, &got, &err), &err);
    KVR_CHECK_EQ_INT(got, r3);
    KVR_CHECK_OK(kvr_db_run_set_status(db, r4, KVR_RUN_COMPLETE, NULL, &err), &err);
    KVR_CHECK_OK(kvr_db_run_latest_with_ops(db, ops, 3, &got, &err), &err);
    KVR_CHECK_EQ_INT(got, r4);

    kvr_db_run run;
    KVR_CHECK_OK(kvr_db_run_get(db, r1, &run, &err), &err);
    got = -1;
    KVR_CHECK(kvr_db_run_latest_with_transfers(db, run.model_id, run.device_id, "p2p", &got,
                                               &err) == KVR_ERR_NOT_FOUND);
    KVR_CHECK_EQ_INT(got, -1);
    for (int i = 0; i < 3; i++) {
        kvr_db_transfer_sample ts = {.run_id = i == 2 ? r3 : r2, .src = 0, .dst = 1, .n_ranks = 2,
                                     .size_bytes = 4096 << i, .stats = stats_of(5)};
        snprintf(ts.pattern, sizeof ts.pattern, "%s", i == 1 ? "allgather" : "p2p");
        KVR_CHECK_OK(kvr_db_transfer_sample_put(db, &ts, &err), &err);
    }
    KVR_CHECK_OK(kvr_db_run_latest_with_transfers(db, run.model_id, run.device_id, "p2p", &got,
                                                  &err), &err);
    KVR_CHECK_EQ_INT(got, r3);
    KVR_CHECK(kvr_db_run_latest_with_transfers(db, run.model_id + 1, run.device_id, "p2p", &got,
                                               &err) == KVR_ERR_NOT_FOUND);
    KVR_CHECK(kvr_db_run_latest_with_transfers(db, run.model_id, run.device_id, "chain", &got,
                                               &err) == KVR_ERR_NOT_FOUND);

    int64_t mf = -1, mt = -1, mp = -1;
    KVR_CHECK_OK(kvr_db_run_made_from(db, r1, &mf, &mt, &mp, &err), &err);
    KVR_CHECK(mf == 0 && mt == 0 && mp == 0);
    kvr_db_ptable t;
    memset(&t, 0, sizeof t);
    t.run_id = r1;
    t.link_run_id = r3;
    snprintf(t.cost_kind, sizeof t.cost_kind, "profile");
    snprintf(t.links, sizeof t.links, "run %lld: p2p", (long long)r3);
    t.granularity = 32;
    t.json = "{\"x\":1}";
    KVR_CHECK_OK(kvr_db_ptable_put(db, &t, NULL, 0, &err), &err);
    kvr_db_ptable tg;
    KVR_CHECK_OK(kvr_db_ptable_get(db, t.id, &tg, &err), &err);
    KVR_CHECK(tg.id == t.id && tg.run_id == r1 && tg.link_run_id == r3 && tg.granularity == 32);
    KVR_CHECK(!strcmp(tg.cost_kind, "profile") && !strcmp(tg.json, t.json));
    kvr_db_free(tg.json);
    KVR_CHECK(kvr_db_ptable_get(db, t.id + 1, &tg, &err) == KVR_ERR_NOT_FOUND);

    /* a second model row with the same hash and depth (another source path) matches too */
    kvr_db_model m;
    KVR_CHECK_OK(kvr_db_model_get(db, run.model_id, &m, &err), &err);
    kvr_db_model other = m;
    snprintf(other.content_hash, sizeof other.content_hash, "def");
    kvr_db_predictor pr;
    KVR_CHECK(kvr_db_predictor_latest_for_model(db, 2, &m, &pr, &err) == KVR_ERR_NOT_FOUND);
    for (int i = 0; i < 3; i++) {
        kvr_db_predictor p;
        memset(&p, 0, sizeof p);
        p.run_id = i == 2 ? 0 : r1;
        p.n_ranks = 2;
        snprintf(p.form, sizeof p.form, "f%d", i);
        p.json = "{}";
        KVR_CHECK_OK(kvr_db_predictor_put(db, &p, &err), &err);
    }
    KVR_CHECK_OK(kvr_db_predictor_latest_for_model(db, 2, &m, &pr, &err), &err);
    KVR_CHECK(!strcmp(pr.form, "f1")); /* f2 has no run, so no model */
    kvr_db_free(pr.json);
    KVR_CHECK(kvr_db_predictor_latest_for_model(db, 4, &m, &pr, &err) == KVR_ERR_NOT_FOUND);
    KVR_CHECK(kvr_db_predictor_latest_for_model(db, 2, &other, &pr, &err) == KVR_ERR_NOT_FOUND);
    other = m;
    other.n_layers = m.n_layers + 1;
    KVR_CHECK(kvr_db_predictor_latest_for_model(db, 2, &other, &pr, &err) == KVR_ERR_NOT_FOUND);

    for (int i = 0; i < 4; i++) {
        kvr_db_fit f;
        memset(&f, 0, sizeof f);
        f.run_id = i == 3 ? 0 : r1;
        snprintf(f.target, sizeof f.target, "%s", i == 1 ? "attn" : "costs");
        snprintf(f.form, sizeof f.form, "form%d", i);
        f.json = "{}";
        KVR_CHECK_OK(kvr_db_fit_put(db, &f, &err), &err);
    }
    KVR_CHECK_OK(kvr_db_run_made_from(db, r1, &mf, &mt, &mp, &err), &err);
    KVR_CHECK(mf == 3 && mt == 1 && mp == 2);
    KVR_CHECK_OK(kvr_db_run_made_from(db, r2, &mf, NULL, NULL, &err), &err);
    KVR_CHECK_EQ_INT(mf, 0);
    kvr_db_fit *fl = NULL;
    int64_t n = 0;
    KVR_CHECK_OK(kvr_db_fits_list_for_model(db, "costs", &m, &fl, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, 2);
    if (n == 2) KVR_CHECK(!strcmp(fl[0].form, "form2") && !strcmp(fl[1].form, "form0"));
    kvr_db_fits_free(fl, n);
    other.n_layers = m.n_layers + 1;
    KVR_CHECK_OK(kvr_db_fits_list_for_model(db, "costs", &other, &fl, &n, &err), &err);
    KVR_CHECK(n == 0 && fl == NULL);
    kvr_db_close(db);
}

/* A version-2 file with a profile run, samples and a measured run opens read-only as version 2
 * (lists of v3 records empty, measured runs readable), then read-write: it is upgraded to
 * the latest version with every row intact and the new columns at their defaults. */
static void test_migrate_v2_data_intact(void) {
    const char *path = kvr_test_tmp_path("v2.db");
    kvr_test_rm_db(path);
    sqlite3 *h = NULL;
    KVR_CHECK(sqlite3_open(path, &h) == SQLITE_OK);
    kvr_error err = {0};
    KVR_CHECK_OK(db_migrate(h, path, 2, &err), &err);
    KVR_CHECK(sqlite3_exec(h,
                           "INSERT INTO runs(kind,status,backend,dtype,transport,n_threads,"
                           "n_ranks,kvr_version,git_commit,build_type,host,device_name,blas,"
                           "mpi_version,cuda_version,nccl_version,ts_utc,ts_end_utc,n_warmup,"
                           "n_iters_min,n_iters_max,grid,ops,params,source,pid,pid_start,note) "
                           "VALUES('profile','complete','cpu','f32','threads',1,2,'0.1.0','v2c',"
                           "'','h','cpu','','','','','2024-01-01T00:00:00Z','',1,3,30,'quick',"
                           "'pre,attn','','kvr-profile',1,0,'');"
                           "INSERT INTO layer_samples(run_id,op,c,prefix,n_warmup,n_iters,"
                           "median_us,is_stable,ts_utc) VALUES(1,'attn',256,1024,1,5,812.5,1,'t');"
                           "INSERT INTO transfer_samples(run_id,pattern,src,dst,n_ranks,"
                           "size_bytes,n_warmup,n_iters,median_us,is_stable,ts_utc) "
                           "VALUES(1,'p2p',0,1,2,65536,1,5,12.5,1,'t');"
                           "INSERT INTO measured_runs(ts_utc,profile_run_id,mode,n_ranks,"
                           "n_threads,n_tokens,partition,transport,ttft_ms,kvr_version,"
                           "git_commit,host,note) VALUES('2024-01-02T00:00:00Z',1,'kvr',2,1,"
                           "2048,'1200,848','threads',950.5,'0.1.0','v2c','h','')",
                           NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(h);

    kvr_db_open_params ro = kvr_db_open_params_default();
    ro.read_only = true;
    kvr_db *db = NULL;
    KVR_CHECK_OK(kvr_db_open(path, &ro, &db, &err), &err);
    if (db) {
        KVR_CHECK_EQ_INT(kvr_db_schema_version(db), 2);
        kvr_db_measured_run *ml = NULL;
        int64_t n = 0;
        KVR_CHECK_OK(kvr_db_measured_runs_list(db, &ml, &n, &err), &err);
        KVR_CHECK(n == 1 && ml[0].ttft_ms == 950.5 && !ml[0].partition_source[0]);
        kvr_db_free(ml);
        kvr_db_ptable *tl = NULL;
        KVR_CHECK_OK(kvr_db_ptables_list(db, &tl, &n, &err), &err);
        KVR_CHECK(n == 0 && tl == NULL);
        kvr_db_predictor p;
        KVR_CHECK(kvr_db_predictor_latest(db, 2, 0, &p, &err) == KVR_ERR_NOT_FOUND);
        kvr_db_fit f;
        memset(&f, 0, sizeof f);
        snprintf(f.target, sizeof f.target, "pre");
        snprintf(f.form, sizeof f.form, "linear");
        KVR_CHECK(kvr_db_fit_put(db, &f, &err) == KVR_ERR_UNSUPPORTED);
        kvr_db_close(db);
    }

    KVR_CHECK_OK(kvr_db_open(path, NULL, &db, &err), &err);
    if (!db) return;
    KVR_CHECK_EQ_INT(kvr_db_schema_version(db), KVR_DB_SCHEMA_VERSION);
    kvr_db_run r;
    KVR_CHECK_OK(kvr_db_run_get(db, 1, &r, &err), &err);
    KVR_CHECK(!strcmp(r.git_commit, "v2c") && r.n_ranks == 2 && !strcmp(r.ops, "pre,attn"));
    kvr_db_layer_sample *ls = NULL;
    kvr_db_transfer_sample *ts = NULL;
    int64_t n = 0;
    KVR_CHECK_OK(kvr_db_layer_samples_get(db, 1, &ls, &n, &err), &err);
    KVR_CHECK(n == 1 && ls[0].c == 256 && ls[0].prefix == 1024 && ls[0].stats.median_us == 812.5);
    kvr_db_free(ls);
    KVR_CHECK_OK(kvr_db_transfer_samples_get(db, 1, &ts, &n, &err), &err);
    KVR_CHECK(n == 1 && ts[0].size_bytes == 65536 && ts[0].stats.median_us == 12.5);
    kvr_db_free(ts);
    kvr_db_measured_run *ml = NULL;
    KVR_CHECK_OK(kvr_db_measured_runs_list(db, &ml, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, 1);
    if (n == 1) {
        KVR_CHECK(!strcmp(ml[0].partition, "1200,848") && ml[0].profile_run_id == 1);
        KVR_CHECK_NEAR(ml[0].ttft_ms, 950.5, 0, 0);
        KVR_CHECK(!ml[0].partition_source[0] && ml[0].predictor_id == 0 && !ml[0].drift);
    }
    kvr_db_free(ml);
    /* the v3 tables work on the upgraded file */
    kvr_db_ptable t;
    memset(&t, 0, sizeof t);
    t.run_id = 1;
    t.granularity = 16;
    t.json = "{}";
    kvr_db_ptable_row row;
    memset(&row, 0, sizeof row);
    row.n_ranks = 2;
    row.context = 2048;
    KVR_CHECK_OK(kvr_db_ptable_put(db, &t, &row, 1, &err), &err);
    bool ok = false;
    char rep[512];
    KVR_CHECK_OK(kvr_db_check(db, &ok, rep, sizeof rep, &err), &err);
    KVR_CHECK(ok);
    kvr_db_close(db);
}

/* A version-3 file holding partition tables as kvr-search and kvr-fit wrote them (the cost kind
 * only inside the JSON export, the link run only inside the links prose) reads read-only as
 * version 3 (typed fields empty), then upgrades to 4 with the typed columns filled where the old
 * text parses: "run N: ..." and "fitted p2p links (run N)" give link_run_id N when run N exists,
 * "costs": {"kind": K} gives cost_kind K; anything else (a link run since deleted, prose without
 * a run, JSON that is not JSON) is left at the defaults. The prose columns are kept as written;
 * deleting the link run later clears link_run_id. */
static void test_migrate_v3_typed_provenance(void) {
    const char *path = kvr_test_tmp_path("v3.db");
    kvr_test_rm_db(path);
    sqlite3 *h = NULL;
    KVR_CHECK(sqlite3_open(path, &h) == SQLITE_OK);
    kvr_error err = {0};
    KVR_CHECK_OK(db_migrate(h, path, 3, &err), &err);
    static const char *const run_sql =
        "INSERT INTO runs(kind,status,backend,dtype,transport,n_threads,n_ranks,kvr_version,"
        "git_commit,build_type,host,device_name,blas,mpi_version,cuda_version,nccl_version,ts_utc,"
        "ts_end_utc,n_warmup,n_iters_min,n_iters_max,grid,ops,params,source,pid,pid_start,note) "
        "VALUES('profile','complete','cpu','f32','threads',1,2,'0.2.0','v3c','','h','cpu','','',"
        "'','','2024-01-01T00:00:00Z','',1,3,30,'quick','','','kvr-profile',1,0,'');";
    for (int i = 0; i < 3; i++) KVR_CHECK(sqlite3_exec(h, run_sql, NULL, NULL, NULL) == SQLITE_OK);
    KVR_CHECK(sqlite3_exec(h,
                           "INSERT INTO ptables(run_id,source,links,granularity,json,ts_utc,"
                           "kvr_version,git_commit) VALUES"
                           /* 1: kvr-search --run 1 --link-run 2 */
                           "(1,'profile of run 1','run 2: p2p 0-1 12 us + 9.5 GB/s',16,"
                           "'{\"format\":\"kvr-search\",\"costs\":{ \"kind\" : \"profile\","
                           "\"source\":\"run 1\"},\"rows\":[]}','t','0.2.0','v3c'),"
                           /* 2: kvr-search --run 1, links from the run itself */
                           "(1,'profile of run 1','p2p 0-1 12 us + 9.5 GB/s',16,"
                           "'{\"costs\":{\"kind\":\"profile\"}}','t','0.2.0','v3c'),"
                           /* 3: kvr-fit --kvrp over run 1 with links from run 3 */
                           "(1,'kvr-fit: cost model fit 4 of run 1','fitted p2p links (run 3)',16,"
                           "'{\"costs\":{\"kind\":\"fit\"}}','t','0.2.0','v3c'),"
                           /* 4: a cost file; 5: a link run that no longer exists; junk JSON */
                           "(NULL,'costs.json','default 8 us + 250 GB/s',16,"
                           "'{\"costs\":{\"kind\":\"json\"}}','t','0.2.0','v3c'),"
                           "(1,'profile of run 1','run 99: p2p',16,'not json','t','0.2.0','v3c'),"
                           "(1,'x','run 2x: p2p',16,'{\"costs\":{\"kind\":7}}','t','0.2.0','v3c')",
                           NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(h);

    kvr_db_open_params ro = kvr_db_open_params_default();
    ro.read_only = true;
    kvr_db *db = NULL;
    kvr_db_ptable *t = NULL;
    int64_t n = 0;
    KVR_CHECK_OK(kvr_db_open(path, &ro, &db, &err), &err);
    if (db) {
        KVR_CHECK_EQ_INT(kvr_db_schema_version(db), 3);
        KVR_CHECK_OK(kvr_db_ptables_list(db, &t, &n, &err), &err);
        KVR_CHECK(n == 6 && t && !t[0].cost_kind[0] && t[0].link_run_id == 0);
        kvr_db_ptables_free(t, n);
        kvr_db_close(db);
    }

    KVR_CHECK_OK(kvr_db_open(path, NULL, &db, &err), &err);
    if (!db) return;
    KVR_CHECK_EQ_INT(kvr_db_schema_version(db), KVR_DB_SCHEMA_VERSION);
    KVR_CHECK_OK(kvr_db_ptables_list(db, &t, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, 6);
    if (n == 6) {
        static const char *const kind[6] = {"profile", "profile", "fit", "json", "", ""};
        static const int64_t lrun[6] = {2, 0, 3, 0, 0, 0};
        for (int i = 0; i < 6; i++) {
            KVR_CHECK(strcmp(t[i].cost_kind, kind[i]) == 0);
            KVR_CHECK_EQ_INT(t[i].link_run_id, lrun[i]);
        }
        KVR_CHECK(strcmp(t[0].links, "run 2: p2p 0-1 12 us + 9.5 GB/s") == 0); /* prose kept */
        KVR_CHECK(strcmp(t[2].links, "fitted p2p links (run 3)") == 0);
    }
    kvr_db_ptables_free(t, n);
    /* typed columns round-trip on the upgraded file; the link run's deletion clears them */
    kvr_db_ptable nt;
    memset(&nt, 0, sizeof nt);
    nt.run_id = 1;
    nt.link_run_id = 3;
    snprintf(nt.cost_kind, sizeof nt.cost_kind, "profile");
    nt.granularity = 16;
    nt.json = "{}";
    KVR_CHECK_OK(kvr_db_ptable_put(db, &nt, NULL, 0, &err), &err);
    KVR_CHECK_OK(kvr_db_run_delete(db, 3, &err), &err);
    KVR_CHECK_OK(kvr_db_ptables_list(db, &t, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, 7);
    if (n == 7) {
        KVR_CHECK(t[2].link_run_id == 0 && strcmp(t[2].cost_kind, "fit") == 0);
        KVR_CHECK(t[6].id == nt.id && t[6].link_run_id == 0 && t[6].run_id == 1 &&
                  strcmp(t[6].cost_kind, "profile") == 0);
        KVR_CHECK(t[0].link_run_id == 2);
    }
    kvr_db_ptables_free(t, n);
    bool ok = false;
    char rep[512];
    KVR_CHECK_OK(kvr_db_check(db, &ok, rep, sizeof rep, &err), &err);
    KVR_CHECK(ok);
    kvr_db_close(db);
}

static bool file_equals(const char *path, const char *want, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char *buf = malloc(n + 16);
    size_t got = fread(buf, 1, n + 16, f);
    fclose(f);
    bool eq = got == n && memcmp(buf, want, n) == 0;
    free(buf);
    return eq;
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(1 << 20);
    *n = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

static void test_newer_schema_refused(void) {
    const char *path = kvr_test_tmp_path("newer.db");
    kvr_test_rm_db(path);
    kvr_db *db = NULL;
    kvr_error err = {0};
    KVR_CHECK_OK(kvr_db_open(path, NULL, &db, &err), &err);
    make_run(db);
    kvr_db_close(db);
    sqlite3 *h = NULL;
    sqlite3_open(path, &h);
    sqlite3_exec(h, "PRAGMA journal_mode=DELETE; PRAGMA user_version=99", NULL, NULL, NULL);
    sqlite3_close(h);
    size_t n = 0;
    char *before = slurp(path, &n);
    KVR_CHECK_EQ_INT(kvr_db_open(path, NULL, &db, &err), KVR_ERR_UNSUPPORTED);
    KVR_CHECK(db == NULL);
    KVR_CHECK(strstr(err.msg, "schema version 99") && strstr(err.msg, "newer kvr"));
    KVR_CHECK(before && file_equals(path, before, n));
    free(before);
}

static void test_foreign_files_refused(void) {
    kvr_error err = {0};
    kvr_db *db = NULL;
    /* not SQLite at all */
    const char *path = kvr_test_tmp_path("text.db");
    const char text[] = "this is not a database, just some text that is long enough\n";
    FILE *f = fopen(path, "wb");
    fwrite(text, 1, sizeof text - 1, f);
    fclose(f);
    KVR_CHECK_EQ_INT(kvr_db_open(path, NULL, &db, &err), KVR_ERR_FORMAT);
    KVR_CHECK(strstr(err.msg, "not a kvr database") != NULL);
    KVR_CHECK(file_equals(path, text, sizeof text - 1));
    /* someone else's SQLite database */
    path = kvr_test_tmp_path("other.db");
    kvr_test_rm_db(path);
    sqlite3 *h = NULL;
    sqlite3_open(path, &h);
    sqlite3_exec(h, "CREATE TABLE foo(x); INSERT INTO foo VALUES(1)", NULL, NULL, NULL);
    sqlite3_close(h);
    size_t n = 0;
    char *before = slurp(path, &n);
    KVR_CHECK_EQ_INT(kvr_db_open(path, NULL, &db, &err), KVR_ERR_FORMAT);
    KVR_CHECK(strstr(err.msg, "not a kvr one") != NULL);
    KVR_CHECK(before && file_equals(path, before, n));
    free(before);
    /* an SQLite header over garbage */
    path = kvr_test_tmp_path("corrupt.db");
    f = fopen(path, "wb");
    char junk[8192];
    memset(junk, 0x5a, sizeof junk);
    memcpy(junk, "SQLite format 3", 16);
    fwrite(junk, 1, sizeof junk, f);
    fclose(f);
    kvr_status st = kvr_db_open(path, NULL, &db, &err);
    KVR_CHECK(st == KVR_ERR_FORMAT || st == KVR_ERR_DB);
    KVR_CHECK(file_equals(path, junk, sizeof junk));
    /* a directory */
    KVR_CHECK_EQ_INT(kvr_db_open(kvr_test_tmpdir, NULL, &db, &err), KVR_ERR_FORMAT);
    /* missing directory */
    KVR_CHECK_EQ_INT(kvr_db_open("/nonexistent-dir-kvr/x.db", NULL, &db, &err), KVR_ERR_NOT_FOUND);
    KVR_CHECK(strstr(err.msg, "does not exist") != NULL);
    /* read-only open of a missing file */
    kvr_db_open_params p = kvr_db_open_params_default();
    p.read_only = true;
    KVR_CHECK_EQ_INT(kvr_db_open(kvr_test_tmp_path("missing.db"), &p, &db, &err),
                     KVR_ERR_NOT_FOUND);
    /* an empty file becomes a database */
    path = kvr_test_tmp_path("empty.db");
    kvr_test_rm_db(path);
    f = fopen(path, "wb");
    fclose(f);
    KVR_CHECK_OK(kvr_db_open(path, NULL, &db, &err), &err);
    kvr_db_close(db);
}

static void test_wal_and_read_only(void) {
    const char *path = kvr_test_tmp_path("wal.db");
    kvr_test_rm_db(path);
    kvr_db *db = NULL;
    kvr_error err = {0};
    KVR_CHECK_OK(kvr_db_open(path, NULL, &db, &err), &err);
    if (!db) return;
    sqlite3_stmt *s = NULL;
    sqlite3_prepare_v2(db->h, "PRAGMA journal_mode", -1, &s, NULL);
    KVR_CHECK(sqlite3_step(s) == SQLITE_ROW &&
              strcmp((const char *)sqlite3_column_text(s, 0), "wal") == 0);
    sqlite3_finalize(s);
    make_run(db);
    kvr_db_close(db);
    kvr_db_open_params p = kvr_db_open_params_default();
    p.read_only = true;
    KVR_CHECK_OK(kvr_db_open(path, &p, &db, &err), &err);
    if (!db) return;
    kvr_db_run r;
    KVR_CHECK_OK(kvr_db_run_get(db, 1, &r, &err), &err);
    KVR_CHECK(kvr_db_run_set_status(db, 1, KVR_RUN_COMPLETE, NULL, &err) != KVR_OK);
    KVR_CHECK(strstr(err.msg, "read-only") != NULL);
    kvr_db_close(db);
}

static void test_reap_and_claim(void) {
    kvr_db *db = open_mem();
    kvr_error err = {0};
    const int64_t mine = make_run(db), dead = make_run(db);
    /* a process that has exited */
    pid_t child = fork();
    if (child == 0) _exit(0);
    waitpid(child, NULL, 0);
    sqlite3_stmt *s = NULL;
    sqlite3_prepare_v2(db->h, "UPDATE runs SET pid=?1, pid_start=0 WHERE id=?2", -1, &s, NULL);
    sqlite3_bind_int64(s, 1, child);
    sqlite3_bind_int64(s, 2, dead);
    KVR_CHECK(sqlite3_step(s) == SQLITE_DONE);
    sqlite3_finalize(s);
    kvr_db_run r;
    KVR_CHECK_OK(kvr_db_run_get(db, dead, &r, &err), &err);
    KVR_CHECK(!kvr_db_run_owner_alive(&r));
    KVR_CHECK_OK(kvr_db_run_get(db, mine, &r, &err), &err);
    KVR_CHECK(kvr_db_run_owner_alive(&r));
    /* claiming a run a live process owns fails */
    KVR_CHECK_EQ_INT(kvr_db_run_claim(db, mine, &err), KVR_ERR_INVALID_ARG);
    int64_t n = 0;
    KVR_CHECK_OK(kvr_db_runs_reap(db, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, 1);
    KVR_CHECK_OK(kvr_db_run_get(db, dead, &r, &err), &err);
    KVR_CHECK_EQ_INT(r.status, KVR_RUN_INCOMPLETE);
    KVR_CHECK(strstr(r.note, "ended without finishing") != NULL);
    KVR_CHECK_OK(kvr_db_run_get(db, mine, &r, &err), &err);
    KVR_CHECK_EQ_INT(r.status, KVR_RUN_RUNNING);
    /* the incomplete run can be claimed (resumed); a complete one cannot */
    KVR_CHECK_OK(kvr_db_run_claim(db, dead, &err), &err);
    KVR_CHECK_OK(kvr_db_run_get(db, dead, &r, &err), &err);
    KVR_CHECK(r.status == KVR_RUN_RUNNING && r.pid == getpid() && !r.note[0]);
    KVR_CHECK_OK(kvr_db_run_set_status(db, dead, KVR_RUN_COMPLETE, NULL, &err), &err);
    KVR_CHECK_EQ_INT(kvr_db_run_claim(db, dead, &err), KVR_ERR_INVALID_ARG);
    kvr_db_close(db);
}

static void test_delete_and_check(void) {
    kvr_db *db = open_mem();
    kvr_error err = {0};
    const int64_t a = make_run(db), b = make_run(db);
    kvr_db_layer_sample s;
    memset(&s, 0, sizeof s);
    snprintf(s.op, sizeof s.op, "attn");
    s.c = 32;
    s.stats = stats_of(5);
    s.run_id = a;
    KVR_CHECK_OK(kvr_db_layer_sample_put(db, &s, &err), &err);
    s.run_id = b;
    KVR_CHECK_OK(kvr_db_layer_sample_put(db, &s, &err), &err);
    bool ok = false;
    char rep[1024];
    KVR_CHECK_OK(kvr_db_check(db, &ok, rep, sizeof rep, &err), &err);
    KVR_CHECK(ok);
    KVR_CHECK_OK(kvr_db_run_delete(db, a, &err), &err);
    KVR_CHECK_EQ_INT(kvr_db_run_delete(db, a, &err), KVR_ERR_NOT_FOUND);
    int64_t nl = -1;
    KVR_CHECK_OK(kvr_db_run_counts(db, a, &nl, NULL, &err), &err);
    KVR_CHECK_EQ_INT(nl, 0);
    KVR_CHECK_OK(kvr_db_run_counts(db, b, &nl, NULL, &err), &err);
    KVR_CHECK_EQ_INT(nl, 1);
    /* an orphan sample (written behind the foreign keys' back) is reported */
    sqlite3_exec(db->h, "PRAGMA foreign_keys=OFF; UPDATE layer_samples SET run_id=777", NULL, NULL,
                 NULL);
    KVR_CHECK_OK(kvr_db_check(db, &ok, rep, sizeof rep, &err), &err);
    KVR_CHECK(!ok);
    KVR_CHECK(strstr(rep, "belong to no run") != NULL);
    kvr_db_close(db);
}

static void test_csv_roundtrip(void) {
    kvr_db *db = open_mem();
    kvr_error err = {0};
    const int64_t id = make_run(db);
    kvr_db_layer_sample ls[3];
    memset(ls, 0, sizeof ls);
    const char *ops[3] = {"pre", "attn", "head"};
    for (int i = 0; i < 3; i++) {
        ls[i].run_id = id;
        snprintf(ls[i].op, sizeof ls[i].op, "%s", ops[i]);
        ls[i].c = i == 2 ? 1 : 100 + i;
        ls[i].prefix = i == 1 ? 77 : 0;
        ls[i].stats = stats_of(123.456789 * (i + 1));
    }
    KVR_CHECK_OK(kvr_db_layer_samples_put(db, ls, 3, &err), &err);
    kvr_db_transfer_sample ts;
    memset(&ts, 0, sizeof ts);
    ts.run_id = id;
    snprintf(ts.pattern, sizeof ts.pattern, "p2p");
    ts.src = 1, ts.dst = 0, ts.n_ranks = 2, ts.size_bytes = 4096;
    ts.stats = stats_of(9.5);
    ts.busbw_factor = 1;
    ts.algbw_gbps = ts.busbw_gbps = 4096 / 9.5e3;
    KVR_CHECK_OK(kvr_db_transfer_sample_put(db, &ts, &err), &err);
    char *csv = NULL;
    KVR_CHECK_OK(kvr_db_export_csv(db, id, &csv, &err), &err);
    if (!csv) return;
    KVR_CHECK(strstr(csv, "# model.name: tiny") != NULL);
    KVR_CHECK(strstr(csv, "# run.kvr_version: ") != NULL);
    kvr_db_csv *parsed = NULL;
    KVR_CHECK_OK(kvr_db_csv_parse(csv, strlen(csv), "export.csv", &parsed, &err), &err);
    kvr_db_free(csv);
    if (!parsed) return;
    int64_t id2 = 0;
    KVR_CHECK_OK(kvr_db_csv_store(db, parsed, &id2, &err), &err);
    kvr_db_csv_free(parsed);
    KVR_CHECK(id2 != id);
    kvr_db_run r;
    KVR_CHECK_OK(kvr_db_run_get(db, id2, &r, &err), &err);
    KVR_CHECK(strcmp(r.kind, "import") == 0 && r.status == KVR_RUN_COMPLETE);
    KVR_CHECK(strcmp(r.kvr_version, kvr_version()) == 0); /* provenance travelled */
    kvr_db_run r1;
    KVR_CHECK_OK(kvr_db_run_get(db, id, &r1, &err), &err);
    KVR_CHECK_EQ_INT(r.model_id, r1.model_id); /* the same model record */
    kvr_db_layer_sample *a = NULL, *b = NULL;
    int64_t na = 0, nb = 0;
    KVR_CHECK_OK(kvr_db_layer_samples_get(db, id, &a, &na, &err), &err);
    KVR_CHECK_OK(kvr_db_layer_samples_get(db, id2, &b, &nb, &err), &err);
    KVR_CHECK_EQ_INT(na, nb);
    for (int64_t i = 0; i < na && i < nb; i++) {
        KVR_CHECK(strcmp(a[i].op, b[i].op) == 0 && a[i].c == b[i].c && a[i].prefix == b[i].prefix);
        KVR_CHECK_NEAR(a[i].stats.median_us, b[i].stats.median_us, 0, 1e-8);
        KVR_CHECK_NEAR(a[i].stats.stddev_us, b[i].stats.stddev_us, 0, 1e-8);
        KVR_CHECK_EQ_INT(a[i].stats.n_iters, b[i].stats.n_iters);
    }
    kvr_db_free(a);
    kvr_db_free(b);
    kvr_db_transfer_sample *t = NULL;
    KVR_CHECK_OK(kvr_db_transfer_samples_get(db, id2, &t, &nb, &err), &err);
    KVR_CHECK_EQ_INT(nb, 1);
    if (nb == 1) {
        KVR_CHECK(t[0].src == 1 && t[0].dst == 0 && t[0].size_bytes == 4096);
        KVR_CHECK_NEAR(t[0].algbw_gbps, 4096 / 9.5e3, 0, 1e-8);
    }
    kvr_db_free(t);
    kvr_db_close(db);
}

static void test_csv_minimal_and_defaults(void) {
    const char *csv = "\xEF\xBB\xBF# a comment line\n"
                      "# model.name: Llama-2-7b\r\n"
                      "# model.n_layers: 32\n"
                      "# model.n_kv_heads: 32\n"
                      "# model.head_dim: 128\n"
                      "# run.dtype: f16\n"
                      "# run.backend: cuda\n"
                      "\n"
                      "kind, op, c, prefix, median_us, pattern, src, dst, size_bytes\r\n"
                      "layer,attn,512,1024,310.5,,,,\n"
                      "layer,\"head\",,,180,,,,\n"
                      "transfer,,,,8.5,p2p,0,1,4096\n"
                      "transfer,,,,100,allgather,,,1000000\n";
    kvr_db_csv *c = NULL;
    kvr_error err = {0};
    KVR_CHECK_OK(kvr_db_csv_parse(csv, strlen(csv), "min.csv", &c, &err), &err);
    if (!c) return;
    KVR_CHECK_EQ_INT(c->n_layers, 2);
    KVR_CHECK_EQ_INT(c->n_transfers, 2);
    KVR_CHECK(strcmp(c->model.name, "Llama-2-7b") == 0 && c->model.n_layers == 32);
    KVR_CHECK_EQ_INT(c->model.kv_bytes_per_token, 2 * 32 * 128 * 2); /* from dtype f16 */
    KVR_CHECK_EQ_INT(c->layers[1].c, 1);                             /* head defaults to c = 1 */
    KVR_CHECK_EQ_INT(c->layers[0].stats.n_iters, 1);
    KVR_CHECK(isnan(c->layers[0].stats.min_us));
    KVR_CHECK_EQ_INT(c->transfers[0].n_ranks, 2);
    KVR_CHECK_NEAR(c->transfers[0].algbw_gbps, 4096 / 8.5e3, 0, 1e-12);
    KVR_CHECK_EQ_INT(c->transfers[1].src, -1);
    KVR_CHECK_NEAR(c->transfers[1].busbw_factor, 0.5, 0, 0);
    KVR_CHECK(strcmp(c->device.kind, "cuda") == 0);
    kvr_db *db = open_mem();
    int64_t id = 0;
    KVR_CHECK_OK(kvr_db_csv_store(db, c, &id, &err), &err);
    KVR_CHECK(id > 0);
    kvr_db_csv_free(c);
    kvr_db_close(db);
}

/* Overhead rows hold signed excesses: equal negative statistics (a sample whose runs all gave
 * the same value) are in order, as they are when positive. */
static void test_csv_negative_stats(void) {
    const char *csv = "# model.name: m\n# model.n_layers: 2\n"
                      "kind,op,c,prefix,min_us,p10_us,median_us,p90_us,mean_us,max_us\n"
                      "layer,ovh_kvr,2,2,-19.234,-19.234,-19.234,-19.234,-19.234,-19.234\n"
                      "layer,ovh_tsp,2,2,-30,-25,-20,-15,-21,-10\n";
    kvr_db_csv *c = NULL;
    kvr_error err = {0};
    KVR_CHECK_OK(kvr_db_csv_parse(csv, strlen(csv), "neg.csv", &c, &err), &err);
    if (!c) return;
    KVR_CHECK_EQ_INT(c->n_layers, 2);
    KVR_CHECK_NEAR(c->layers[0].stats.p10_us, -19.234, 0, 0);
    kvr_db_csv_free(c);
}

static void test_csv_errors(void) {
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"", "no header"},
        {"# model.name: m\n# model.n_layers: 1\nkind,median_us\n", "no samples"},
        {"kind,op,c,median_us\nlayer,pre,16,5\n", "no model name"},
        {"# model.name: m\nkind,op,c,median_us\nlayer,pre,16,5\n", "no layer count"},
        {"# model.name: m\n# model.n_layers: 2\nkind,op,c,bogus\n", ":3: unknown column 'bogus'"},
        {"# model.name: m\n# model.n_layers: 2\nop,c,median_us\n", "needs at least the columns kind"},
        {"# model.name: m\n# model.n_layers: 2\nkind,op,c,c,median_us\n", "appears twice"},
        {"# model.name: m\n# model.n_layers: 2\nkind,op,c,median_us\nlayer,pre,16\n",
         ":4: 3 fields, the header has 4"},
        {"# model.name: m\n# model.n_layers: 2\nkind,op,c,median_us\nlayer,pre,x16,5\n",
         ":4: c: 'x16' is not an integer"},
        {"# model.name: m\n# model.n_layers: 2\nkind,op,c,median_us\nlayer,pre,16,nan\n",
         "not a finite number"},
        {"# model.name: m\n# model.n_layers: 2\nkind,op,c,median_us\nlayer,pre,0,5\n",
         "c: 0 is out of range"},
        {"# model.name: m\n# model.n_layers: 2\nkind,op,c,median_us\nlayer,mlp,16,5\n",
         "op 'mlp' is not one of"},
        {"# model.name: m\n# model.n_layers: 2\nkind,op,c,median_us\nrow,pre,16,5\n",
         "kind 'row' is not layer or transfer"},
        {"# model.name: m\n# model.n_layers: 2\nkind,op,c,median_us,min_us\nlayer,pre,16,5,6\n",
         "min_us (6) > median_us (5)"},
        {"# model.name: m\n# model.n_layers: 2\nkind,op,c,prefix,median_us,min_us\n"
         "layer,ovh_kvr,2,2,-7,-6\n", "min_us (-6) > median_us (-7)"},
        {"# model.name: m\n# model.n_layers: 2\nkind,op,c,median_us\nlayer,pre,16,5\nlayer,pre,16,6\n",
         ":5: duplicates the sample on line 4"},
        {"# model.name: m\n# model.n_layers: 2\nkind,op,c,median_us\nlayer,\"pre,16,5\n",
         "unterminated quote"},
        {"# model.name: m\n# model.n_layers: 2\nkind,op,c,median_us\nlayer,p\"re,16,5\n",
         "quote inside an unquoted field"},
        {"# model.name: m\n# model.bogus: 2\n", ":2: unknown provenance key 'model.bogus'"},
        {"# model.name: m\n# model.name: n\n", "model.name given twice"},
        {"# model.name: m\n# model.n_layers: -2\n", "model.n_layers: -2 is out of range"},
        {"# model.name: m\n# model.n_layers: 2\nkind,pattern,src,dst,size_bytes,median_us\n"
         "transfer,p2p,0,0,10,5\n", "p2p from rank 0 to itself"},
        {"# model.name: m\n# model.n_layers: 2\nkind,pattern,src,dst,size_bytes,median_us\n"
         "transfer,ring,0,1,10,5\n", "pattern 'ring' is not one of"},
        {"# model.name: m\n# model.n_layers: 2\nkind,pattern,src,dst,size_bytes,n_ranks,median_us\n"
         "transfer,p2p,0,3,10,2,5\n", "rank 3 is outside n_ranks 2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kvr_db_csv *c = NULL;
        kvr_error err = {0};
        kvr_status st = kvr_db_csv_parse(cases[i].text, strlen(cases[i].text), "t.csv", &c, &err);
        KVR_CHECK_EQ_INT(st, KVR_ERR_FORMAT);
        KVR_CHECK(c == NULL);
        if (!strstr(err.msg, cases[i].want)) {
            fprintf(stderr, "case %zu: want '%s' in '%s'\n", i, cases[i].want, err.msg);
            KVR_CHECK(0);
        }
    }
    /* a NUL byte and an over-long line */
    const char nul[] = "# model.name: m\nkind,op\0,c\n";
    kvr_db_csv *c = NULL;
    kvr_error err = {0};
    KVR_CHECK_EQ_INT(kvr_db_csv_parse(nul, sizeof nul - 1, "t.csv", &c, &err), KVR_ERR_FORMAT);
    KVR_CHECK(strstr(err.msg, "NUL byte") != NULL);
    size_t big = 70000;
    char *longline = malloc(big);
    memset(longline, 'a', big);
    KVR_CHECK_EQ_INT(kvr_db_csv_parse(longline, big, "t.csv", &c, &err), KVR_ERR_FORMAT);
    KVR_CHECK(strstr(err.msg, "longer than") != NULL);
    free(longline);
}

static void test_json_export(void) {
    kvr_db *db = open_mem();
    kvr_error err = {0};
    const int64_t id = make_run(db);
    kvr_db_layer_sample s;
    memset(&s, 0, sizeof s);
    s.run_id = id;
    snprintf(s.op, sizeof s.op, "post");
    s.c = 64;
    s.stats = stats_of(42);
    s.stats.p90_us = NAN;
    KVR_CHECK_OK(kvr_db_layer_sample_put(db, &s, &err), &err);
    char *js = NULL;
    KVR_CHECK_OK(kvr_db_export_json(db, id, &js, &err), &err);
    cJSON *o = js ? cJSON_Parse(js) : NULL;
    KVR_CHECK(o != NULL);
    if (o) {
        cJSON *ls = cJSON_GetObjectItem(o, "layer_samples");
        KVR_CHECK(cJSON_GetArraySize(ls) == 1);
        cJSON *x = cJSON_GetArrayItem(ls, 0);
        KVR_CHECK_NEAR(cJSON_GetObjectItem(x, "median_us")->valuedouble, 42, 0, 1e-9);
        KVR_CHECK(cJSON_IsNull(cJSON_GetObjectItem(x, "p90_us")));
        cJSON *run = cJSON_GetObjectItem(o, "run");
        KVR_CHECK(strcmp(cJSON_GetObjectItem(run, "status")->valuestring, "running") == 0);
        KVR_CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "model"), "n_layers")->valueint == 4);
        cJSON_Delete(o);
    }
    kvr_db_free(js);
    kvr_db_close(db);
}

/* Several processes insert into one file at once: every write waits its turn, none fails. */
static void test_concurrent_writers(void) {
    const char *path = kvr_test_tmp_path("conc.db");
    kvr_test_rm_db(path);
    enum { N_PROC = 3, N_ROWS = 150 };
    pid_t kids[N_PROC];
    for (int k = 0; k < N_PROC; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            kvr_db *db = NULL;
            kvr_error err = {0};
            if (kvr_db_open(path, NULL, &db, &err) != KVR_OK) {
                fprintf(stderr, "child %d: %s\n", k, err.msg);
                _exit(1);
            }
            const int64_t id = make_run(db);
            for (int i = 0; i < N_ROWS; i++) {
                kvr_db_layer_sample s;
                memset(&s, 0, sizeof s);
                s.run_id = id;
                snprintf(s.op, sizeof s.op, "pre");
                s.c = i + 1;
                s.stats = stats_of(i + 1);
                if (kvr_db_layer_sample_put(db, &s, &err) != KVR_OK) {
                    fprintf(stderr, "child %d row %d: %s\n", k, i, err.msg);
                    _exit(1);
                }
            }
            kvr_db_close(db);
            _exit(kvr_test_fails ? 1 : 0);
        }
    }
    for (int k = 0; k < N_PROC; k++) {
        int status = 0;
        waitpid(kids[k], &status, 0);
        KVR_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    kvr_db *db = NULL;
    kvr_error err = {0};
    KVR_CHECK_OK(kvr_db_open(path, NULL, &db, &err), &err);
    if (!db) return;
    kvr_db_run *runs = NULL;
    int64_t n = 0;
    KVR_CHECK_OK(kvr_db_runs_list(db, &runs, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, N_PROC);
    for (int64_t i = 0; i < n; i++) {
        int64_t nl = 0;
        KVR_CHECK_OK(kvr_db_run_counts(db, runs[i].id, &nl, NULL, &err), &err);
        KVR_CHECK_EQ_INT(nl, N_ROWS);
    }
    kvr_db_free(runs);
    kvr_db_close(db);
}

// ----------------------------------------------------------------------------
// serving runs (schema v5)

static kvr_db_serving_run serving_run_of(const char *policy, int64_t n) {
    kvr_db_serving_run r;
    memset(&r, 0, sizeof r);
    snprintf(r.kind, sizeof r.kind, "simulated");
    snprintf(r.trace, sizeof r.trace, "traces/light.csv");
    snprintf(r.trace_hash, sizeof r.trace_hash, "0123456789abcdef");
    snprintf(r.policy, sizeof r.policy, "%s", policy);
    snprintf(r.cost_source, sizeof r.cost_source, "docs/examples/llama7b_a100.json");
    snprintf(r.cost_kind, sizeof r.cost_kind, "json");
    r.n_requests = n, r.trace_duration_s = 10, r.rate_per_s = n / 10.0;
    r.block_tokens = 16, r.pool_blocks = 4096, r.watermark = 0.01, r.max_seqs = 256;
    r.max_batched_tokens = 2048, r.max_model_len = 65536;
    r.decode_k_us = 5000, r.decode_per_seq_us = 100, r.decode_per_ctx_token_us = 0.5;
    r.slo_ttft_ms = 2000, r.slo_tpot_ms = 100;
    r.n_finished = n - 1, r.n_refused = 1, r.n_preemptions = 3;
    r.ttft_p50_ms = 80.5, r.ttft_p90_ms = 277, r.ttft_p99_ms = 676, r.ttft_mean_ms = 120;
    r.tpot_p50_ms = 3.25, r.tpot_p90_ms = 9.8, r.tpot_p99_ms = 20, r.tpot_mean_ms = 4;
    r.queue_p50_ms = 1.5, r.queue_p90_ms = 97, r.queue_p99_ms = 300, r.queue_mean_ms = 20;
    r.slo_attainment = 0.97, r.output_tok_per_s = 320, r.req_per_s = 4.9, r.duration_s = 12;
    r.iterations = 12345, r.peak_blocks = 4000, r.mean_blocks = 1800.5, r.busy_s = 11;
    r.wall_s = 0.04;
    return r;
}

static kvr_db_serving_request *serving_requests_of(int64_t n) {
    kvr_db_serving_request *q = calloc((size_t)n, sizeof *q);
    for (int64_t i = 0; q && i < n; i++) {
        q[i].idx = i;
        q[i].arrival_s = 0.25 * (double)i;
        q[i].prompt_tokens = 100 + i;
        q[i].output_tokens = 1 + i % 7;
        if (i == 1) { /* refused: no times */
            q[i].refused = true;
            q[i].admitted_s = q[i].first_token_s = q[i].finish_s = -1;
            q[i].output_tokens = 0;
            continue;
        }
        q[i].admitted_s = q[i].arrival_s + 0.001 * (double)(i % 5);
        q[i].first_token_s = q[i].admitted_s + 0.05;
        q[i].finish_s = q[i].first_token_s + 0.01 * (double)q[i].output_tokens;
        q[i].max_blocks = 7 + i % 3;
        q[i].preemptions = (int32_t)(i % 2);
    }
    return q;
}

/* A run, its requests and occupancy round-trip field by field; bad records are refused whole. */
static void test_serving_roundtrip(void) {
    kvr_db *db = open_mem();
    kvr_error err = {0};
    enum { N = 10000 };
    kvr_db_serving_request *q = serving_requests_of(N);
    kvr_db_serving_occupancy occ[3] = {{0, 0, 0, 0}, {0, 1.5, 812.25, 900}, {0, 3, 10, 40}};
    kvr_db_serving_run r = serving_run_of("vllm", N);
    KVR_CHECK_OK(kvr_db_serving_run_put(db, &r, q, N, occ, 3, &err), &err);
    KVR_CHECK(r.id > 0 && r.kvr_version[0] && r.git_commit[0] && r.host[0] && r.ts_utc[0]);
    kvr_db_serving_run r2 = serving_run_of("chunked", 3);
    snprintf(r2.kind, sizeof r2.kind, "measured");
    r2.rate_per_s = -1, r2.model_id = 0;
    KVR_CHECK_OK(kvr_db_serving_run_put(db, &r2, q, 3, NULL, 0, &err), &err);

    kvr_db_serving_run *list = NULL;
    int64_t n = 0;
    KVR_CHECK_OK(kvr_db_serving_runs_list(db, &list, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, 2);
    if (n == 2) {
        /* every field as stored (id and provenance filled on put) */
        KVR_CHECK(memcmp(&list[0], &r, sizeof r) == 0 || (list[0].id == r.id &&
                  strcmp(list[0].trace, r.trace) == 0 && strcmp(list[0].policy, "vllm") == 0));
        KVR_CHECK_EQ_INT(list[0].id, r.id);
        KVR_CHECK(strcmp(list[0].kind, "simulated") == 0 && strcmp(list[1].kind, "measured") == 0);
        KVR_CHECK(strcmp(list[0].trace_hash, "0123456789abcdef") == 0);
        KVR_CHECK(strcmp(list[0].cost_kind, "json") == 0);
        KVR_CHECK_EQ_INT(list[0].pool_blocks, 4096);
        KVR_CHECK_EQ_INT(list[0].max_model_len, 65536);
        KVR_CHECK_EQ_INT(list[0].iterations, 12345);
        KVR_CHECK_EQ_INT(list[0].n_refused, 1);
        KVR_CHECK(list[0].ttft_p90_ms == 277 && list[0].tpot_p50_ms == 3.25 &&
                  list[0].mean_blocks == 1800.5 && list[0].decode_per_ctx_token_us == 0.5 &&
                  list[0].slo_attainment == 0.97 && list[0].rate_per_s == N / 10.0);
        KVR_CHECK(list[1].rate_per_s == -1);
        KVR_CHECK(strcmp(list[0].ts_utc, r.ts_utc) == 0 && strcmp(list[0].host, r.host) == 0);
    }
    kvr_db_free(list);
    kvr_db_serving_run g;
    KVR_CHECK_OK(kvr_db_serving_run_get(db, r2.id, &g, &err), &err);
    KVR_CHECK(strcmp(g.policy, "chunked") == 0);
    KVR_CHECK(kvr_db_serving_run_get(db, 99, &g, &err) == KVR_ERR_NOT_FOUND);
    KVR_CHECK(strstr(err.msg, "serving run 99 not found") != NULL);

    kvr_db_serving_request *back = NULL;
    KVR_CHECK_OK(kvr_db_serving_requests_get(db, r.id, &back, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, N);
    int bad = 0;
    for (int64_t i = 0; back && i < n && i < N; i++) {
        kvr_db_serving_request want = q[i];
        want.run_id = r.id;
        bad += memcmp(&back[i], &want, sizeof want) != 0;
    }
    KVR_CHECK_EQ_INT(bad, 0);
    if (back && n > 1) KVR_CHECK(back[1].refused && back[1].first_token_s == -1);
    kvr_db_free(back);
    kvr_db_serving_occupancy *ob = NULL;
    KVR_CHECK_OK(kvr_db_serving_occupancy_get(db, r.id, &ob, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, 3);
    if (ob && n == 3) KVR_CHECK(ob[1].t_s == 1.5 && ob[1].blocks_mean == 812.25 && ob[1].blocks_max == 900);
    kvr_db_free(ob);
    KVR_CHECK(kvr_db_serving_requests_get(db, 99, &back, &n, &err) == KVR_ERR_NOT_FOUND);

    /* refused whole: bad kind, an index out of range, a repeated index, occupancy out of order */
    kvr_db_serving_run x = serving_run_of("vllm", 3);
    snprintf(x.kind, sizeof x.kind, "guessed");
    KVR_CHECK(kvr_db_serving_run_put(db, &x, q, 3, NULL, 0, &err) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(err.msg, "kind 'guessed'") != NULL);
    x = serving_run_of("vllm", 2);
    KVR_CHECK(kvr_db_serving_run_put(db, &x, q, 3, NULL, 0, &err) == KVR_ERR_INVALID_ARG);
    x = serving_run_of("vllm", 3);
    q[2].idx = 0;
    KVR_CHECK(kvr_db_serving_run_put(db, &x, q, 3, NULL, 0, &err) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(err.msg, "two rows") != NULL);
    q[2].idx = 2;
    occ[2].t_s = 1.5;
    KVR_CHECK(kvr_db_serving_run_put(db, &x, q, 3, occ, 3, &err) == KVR_ERR_INVALID_ARG);
    KVR_CHECK_OK(kvr_db_serving_runs_list(db, &list, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, 2); /* nothing of the refused runs stayed */
    kvr_db_free(list);

    /* delete takes the requests and occupancy with it */
    KVR_CHECK_OK(kvr_db_serving_run_delete(db, r.id, &err), &err);
    KVR_CHECK(kvr_db_serving_run_delete(db, r.id, &err) == KVR_ERR_NOT_FOUND);
    sqlite3_stmt *s = NULL;
    sqlite3_prepare_v2(db->h, "SELECT (SELECT count(*) FROM serving_requests WHERE run_id=?1) + "
                              "(SELECT count(*) FROM serving_occupancy WHERE run_id=?1)", -1, &s,
                       NULL);
    sqlite3_bind_int64(s, 1, r.id);
    KVR_CHECK(sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int(s, 0) == 0);
    sqlite3_finalize(s);
    bool ok = false;
    KVR_CHECK_OK(kvr_db_check(db, &ok, NULL, 0, &err), &err);
    KVR_CHECK(ok);
    free(q);
    kvr_db_close(db);
}

/* A version-4 file (profile run and measured run in it) read read-only has no serving runs and
 * refuses to store one; opened read-write it upgrades to 5, keeps its rows and stores them. */
static void test_migrate_v4_serving(void) {
    const char *path = kvr_test_tmp_path("v4.db");
    kvr_test_rm_db(path);
    sqlite3 *h = NULL;
    KVR_CHECK(sqlite3_open(path, &h) == SQLITE_OK);
    kvr_error err = {0};
    KVR_CHECK_OK(db_migrate(h, path, 4, &err), &err);
    KVR_CHECK(sqlite3_exec(h,
                           "INSERT INTO measured_runs(ts_utc,mode,n_ranks,n_threads,n_tokens,"
                           "partition,transport,ttft_ms,kvr_version,git_commit,host,note) "
                           "VALUES('2024-01-01T00:00:00Z','single',1,2,512,'','',1900,'0.0.9',"
                           "'old','h','')",
                           NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(h);
    kvr_db_open_params ro = kvr_db_open_params_default();
    ro.read_only = true;
    kvr_db *db = NULL;
    KVR_CHECK_OK(kvr_db_open(path, &ro, &db, &err), &err);
    if (!db) return;
    KVR_CHECK_EQ_INT(kvr_db_schema_version(db), 4);
    kvr_db_serving_run *list = NULL;
    int64_t n = -1;
    KVR_CHECK_OK(kvr_db_serving_runs_list(db, &list, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, 0);
    kvr_db_serving_run r = serving_run_of("vllm", 4);
    kvr_db_serving_request *q = serving_requests_of(4);
    KVR_CHECK(kvr_db_serving_run_put(db, &r, q, 4, NULL, 0, &err) == KVR_ERR_UNSUPPORTED);
    KVR_CHECK(strstr(err.msg, "schema version 4 has no serving runs") != NULL);
    kvr_db_close(db);
    db = NULL;
    KVR_CHECK_OK(kvr_db_open(path, NULL, &db, &err), &err);
    if (!db) return;
    KVR_CHECK_EQ_INT(kvr_db_schema_version(db), KVR_DB_SCHEMA_VERSION);
    kvr_db_measured_run *m = NULL;
    KVR_CHECK_OK(kvr_db_measured_runs_list(db, &m, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, 1);
    if (m && n == 1) KVR_CHECK(m[0].ttft_ms == 1900 && strcmp(m[0].git_commit, "old") == 0);
    kvr_db_free(m);
    KVR_CHECK_OK(kvr_db_serving_run_put(db, &r, q, 4, NULL, 0, &err), &err);
    kvr_db_serving_request *back = NULL;
    KVR_CHECK_OK(kvr_db_serving_requests_get(db, r.id, &back, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, 4);
    if (back && n == 4) KVR_CHECK(back[3].finish_s == q[3].finish_s && back[1].refused);
    kvr_db_free(back);
    free(q);
    kvr_db_close(db);
}

/* A process killed (SIGKILL) in the middle of storing a serving run -- its rows written, the
 * transaction not committed -- leaves none of that run, and the runs committed before it intact. */
static void test_serving_killed_mid_insert(void) {
    const char *path = kvr_test_tmp_path("killed.db");
    kvr_test_rm_db(path);
    enum { N = 5000 };
    pid_t kid = fork();
    if (kid == 0) {
        kvr_db *db = NULL;
        kvr_error err = {0};
        kvr_db_serving_request *q = serving_requests_of(N);
        kvr_db_serving_run r = serving_run_of("vllm", N);
        if (!q || kvr_db_open(path, NULL, &db, &err) != KVR_OK ||
            kvr_db_serving_run_put(db, &r, q, N, NULL, 0, &err) != KVR_OK) /* committed */
            _exit(1);
        r = serving_run_of("chunked", N);
        if (kvr_db_begin(db, &err) != KVR_OK ||
            kvr_db_serving_run_put(db, &r, q, N, NULL, 0, &err) != KVR_OK) /* in the open tx */
            _exit(1);
        raise(SIGKILL); /* before the commit */
        _exit(2);
    }
    int status = 0;
    waitpid(kid, &status, 0);
    KVR_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    kvr_db *db = NULL;
    kvr_error err = {0};
    KVR_CHECK_OK(kvr_db_open(path, NULL, &db, &err), &err);
    if (!db) return;
    kvr_db_serving_run *list = NULL;
    int64_t n = 0;
    KVR_CHECK_OK(kvr_db_serving_runs_list(db, &list, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, 1);
    if (list && n == 1) {
        KVR_CHECK(strcmp(list[0].policy, "vllm") == 0);
        kvr_db_serving_request *back = NULL;
        int64_t nb = 0;
        KVR_CHECK_OK(kvr_db_serving_requests_get(db, list[0].id, &back, &nb, &err), &err);
        KVR_CHECK_EQ_INT(nb, N);
        kvr_db_free(back);
    }
    kvr_db_free(list);
    sqlite3_stmt *s = NULL;
    sqlite3_prepare_v2(db->h, "SELECT count(*) FROM serving_requests", -1, &s, NULL);
    KVR_CHECK(sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int(s, 0) == N);
    sqlite3_finalize(s);
    bool ok = false;
    KVR_CHECK_OK(kvr_db_check(db, &ok, NULL, 0, &err), &err);
    KVR_CHECK(ok);
    kvr_db_close(db);
}

/* A run stored as it goes (v7): the header without an end time, finished requests added in
 * batches (n_requests grows with them, a repeated index is refused), the summary and end time
 * last; a process killed (SIGKILL) after adding some keeps them, and its run has no end time. */
static void test_serving_incremental(void) {
    const char *path = kvr_test_tmp_path("incremental.db");
    kvr_test_rm_db(path);
    kvr_db_serving_request *q = serving_requests_of(6);
    pid_t kid = fork();
    if (kid == 0) {
        kvr_db *db = NULL;
        kvr_error err = {0};
        kvr_db_serving_run r = serving_run_of("vllm", 0);
        snprintf(r.kind, sizeof r.kind, "measured");
        if (!q || kvr_db_open(path, NULL, &db, &err) != KVR_OK ||
            kvr_db_serving_run_begin(db, &r, &err) != KVR_OK ||
            kvr_db_serving_requests_add(db, r.id, q + 3, 1, &err) != KVR_OK ||
            kvr_db_serving_requests_add(db, r.id, q, 2, &err) != KVR_OK)
            _exit(1);
        raise(SIGKILL);
        _exit(2);
    }
    int status = 0;
    waitpid(kid, &status, 0);
    KVR_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    kvr_db *db = NULL;
    kvr_error err = {0};
    KVR_CHECK_OK(kvr_db_open(path, NULL, &db, &err), &err);
    if (!db || !q) return;
    kvr_db_serving_run g;
    KVR_CHECK_OK(kvr_db_serving_run_get(db, 1, &g, &err), &err);
    KVR_CHECK(g.end_utc[0] == 0 && g.ts_utc[0] != 0);
    KVR_CHECK_EQ_INT(g.n_requests, 4); /* indices 0, 1, 3 */
    kvr_db_serving_request *back = NULL;
    int64_t n = 0;
    KVR_CHECK_OK(kvr_db_serving_requests_get(db, 1, &back, &n, &err), &err);
    KVR_CHECK_EQ_INT(n, 3);
    if (back && n == 3) KVR_CHECK(back[2].idx == 3 && back[2].finish_s == q[3].finish_s);
    kvr_db_free(back);
    sqlite3_stmt *s = NULL;
    sqlite3_prepare_v2(db->h, "SELECT count(*) FROM serving_runs WHERE end_utc IS NULL", -1, &s,
                       NULL);
    KVR_CHECK(sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int(s, 0) == 1);
    sqlite3_finalize(s);

    /* a run that ends: the summary over the header, the end time; ending twice is refused */
    kvr_db_serving_run r = serving_run_of("chunked", 0);
    KVR_CHECK_OK(kvr_db_serving_run_begin(db, &r, &err), &err);
    KVR_CHECK_OK(kvr_db_serving_requests_add(db, r.id, q, 6, &err), &err);
    KVR_CHECK(kvr_db_serving_requests_add(db, r.id, q + 2, 1, &err) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(err.msg, "two rows") != NULL);
    r = serving_run_of("chunked", 5); /* fewer than stored: the stored count wins */
    r.id = 2;
    snprintf(r.kind, sizeof r.kind, "measured"); /* kind stays as begun */
    kvr_db_serving_occupancy occ[2] = {{0, 0, 1, 2}, {0, 1, 3.5, 4}};
    KVR_CHECK_OK(kvr_db_serving_run_end(db, &r, occ, 2, &err), &err);
    KVR_CHECK_OK(kvr_db_serving_run_get(db, 2, &g, &err), &err);
    KVR_CHECK(g.end_utc[0] != 0 && strcmp(g.kind, "simulated") == 0);
    KVR_CHECK(g.ttft_p90_ms == 277 && g.iterations == 12345 && g.n_requests == 6);
    KVR_CHECK(kvr_db_serving_run_end(db, &r, NULL, 0, &err) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(err.msg, "ended at") != NULL);
    r.id = 99;
    KVR_CHECK(kvr_db_serving_run_end(db, &r, NULL, 0, &err) == KVR_ERR_NOT_FOUND);
    KVR_CHECK(kvr_db_serving_requests_add(db, 99, q, 1, &err) == KVR_ERR_NOT_FOUND);
    /* put: whole runs end at once */
    kvr_db_serving_run w = serving_run_of("vllm", 6);
    KVR_CHECK_OK(kvr_db_serving_run_put(db, &w, q, 6, NULL, 0, &err), &err);
    KVR_CHECK(w.end_utc[0] != 0);
    bool ok = false;
    KVR_CHECK_OK(kvr_db_check(db, &ok, NULL, 0, &err), &err);
    KVR_CHECK(ok);
    free(q);
    kvr_db_close(db);
}

static const kvr_test_case cases[] = {
    {"serving_incremental", test_serving_incremental},
    {"open_memory", test_open_memory},
    {"records_roundtrip", test_records_roundtrip},
    {"samples_roundtrip", test_samples_roundtrip},
    {"transaction_all_or_nothing", test_transaction_all_or_nothing},
    {"migrate_from_every_version", test_migrate_from_every_version},
    {"queries", test_queries},
    {"migrate_v2_data_intact", test_migrate_v2_data_intact},
    {"migrate_v3_typed_provenance", test_migrate_v3_typed_provenance},
    {"results_roundtrip", test_results_roundtrip},
    {"newer_schema_refused", test_newer_schema_refused},
    {"foreign_files_refused", test_foreign_files_refused},
    {"wal_and_read_only", test_wal_and_read_only},
    {"reap_and_claim", test_reap_and_claim},
    {"delete_and_check", test_delete_and_check},
    {"csv_roundtrip", test_csv_roundtrip},
    {"csv_negative_stats", test_csv_negative_stats},
    {"csv_minimal_and_defaults", test_csv_minimal_and_defaults},
    {"csv_errors", test_csv_errors},
    {"json_export", test_json_export},
    {"concurrent_writers", test_concurrent_writers},
    {"serving_roundtrip", test_serving_roundtrip},
    {"migrate_v4_serving", test_migrate_v4_serving},
    {"serving_killed_mid_insert", test_serving_killed_mid_insert},
};

int main(int argc, char **argv) {
    int rc = kvr_test_main(cases, (int)(sizeof cases / sizeof cases[0]), argc, argv);
    return kvr_test_tmp_cleanup(rc);
}
