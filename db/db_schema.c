/* db_schema.c -- the schema and its forward migrations.
 *
 * The version lives in PRAGMA user_version and, with a time stamp and the kvr version that
 * applied it, in the table kvr_schema (one row per applied step). db_migrate applies the steps
 * above the file's version in order, each in its own BEGIN IMMEDIATE transaction that re-reads
 * the version under the write lock, so two processes opening an old file at once upgrade it
 * exactly once. Adding a table later (fits, partition tables, predictors) is one more entry in
 * db_migrations[] and a bump of KVR_DB_SCHEMA_VERSION; a test opens a file built at every older
 * version (tests/test_db.c, case migrate_*). Never edit a released step: add a new one. */
#include "db_internal.h"

#include <stdio.h>
#include <string.h>

typedef struct db_migration {
    int32_t version;
    const char *description;
    const char *sql;
} db_migration;

// ----------------------------------------------------------------------------
// steps

static const char db_schema_v1[] =
    "CREATE TABLE kvr_schema(\n"
    "  version INTEGER PRIMARY KEY,\n"
    "  applied_utc TEXT NOT NULL,\n"
    "  kvr_version TEXT NOT NULL,\n"
    "  description TEXT NOT NULL);\n"
    "CREATE TABLE devices(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  kind TEXT NOT NULL, name TEXT NOT NULL, host TEXT NOT NULL,\n"
    "  n_cores INTEGER NOT NULL, n_sms INTEGER NOT NULL, clock_mhz REAL, mem_bytes INTEGER NOT NULL,\n"
    "  driver_version TEXT NOT NULL, cuda_version TEXT NOT NULL, nccl_version TEXT NOT NULL,\n"
    "  blas TEXT NOT NULL, mpi_version TEXT NOT NULL,\n"
    "  UNIQUE(kind, name, host, n_cores, n_sms, mem_bytes, driver_version, cuda_version,\n"
    "         nccl_version, blas, mpi_version));\n"
    "CREATE TABLE models(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  name TEXT NOT NULL, arch TEXT NOT NULL, source TEXT NOT NULL,\n"
    "  n_layers INTEGER NOT NULL, d_model INTEGER NOT NULL, n_heads INTEGER NOT NULL,\n"
    "  n_kv_heads INTEGER NOT NULL, head_dim INTEGER NOT NULL, d_ff INTEGER NOT NULL,\n"
    "  vocab_size INTEGER NOT NULL, max_context INTEGER NOT NULL, rope_theta REAL,\n"
    "  tied_embeddings INTEGER NOT NULL, kv_bytes_per_token INTEGER NOT NULL,\n"
    "  content_hash TEXT NOT NULL,\n"
    "  UNIQUE(content_hash, name, n_layers, d_model, n_heads, n_kv_heads, head_dim, d_ff,\n"
    "         vocab_size, kv_bytes_per_token));\n"
    "CREATE TABLE runs(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  kind TEXT NOT NULL,\n"
    "  status TEXT NOT NULL CHECK(status IN ('running','complete','incomplete','failed')),\n"
    "  device_id INTEGER REFERENCES devices(id),\n"
    "  model_id INTEGER REFERENCES models(id),\n"
    "  backend TEXT NOT NULL, dtype TEXT NOT NULL, transport TEXT NOT NULL,\n"
    "  n_threads INTEGER NOT NULL, n_ranks INTEGER NOT NULL,\n"
    "  kvr_version TEXT NOT NULL, git_commit TEXT NOT NULL, build_type TEXT NOT NULL,\n"
    "  host TEXT NOT NULL, device_name TEXT NOT NULL, blas TEXT NOT NULL,\n"
    "  mpi_version TEXT NOT NULL, cuda_version TEXT NOT NULL, nccl_version TEXT NOT NULL,\n"
    "  ts_utc TEXT NOT NULL, ts_end_utc TEXT NOT NULL,\n"
    "  n_warmup INTEGER NOT NULL, n_iters_min INTEGER NOT NULL, n_iters_max INTEGER NOT NULL,\n"
    "  time_budget_s REAL, rel_tol REAL, timer_overhead_us REAL,\n"
    "  grid TEXT NOT NULL, ops TEXT NOT NULL, params TEXT NOT NULL, source TEXT NOT NULL,\n"
    "  pid INTEGER NOT NULL, pid_start INTEGER NOT NULL, note TEXT NOT NULL);\n"
    "CREATE TABLE layer_samples(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
    "  op TEXT NOT NULL, c INTEGER NOT NULL, prefix INTEGER NOT NULL,\n"
    "  n_warmup INTEGER NOT NULL, n_iters INTEGER NOT NULL,\n"
    "  min_us REAL, p10_us REAL, median_us REAL NOT NULL, p90_us REAL, mean_us REAL,\n"
    "  stddev_us REAL, max_us REAL, is_stable INTEGER NOT NULL, ts_utc TEXT NOT NULL,\n"
    "  UNIQUE(run_id, op, c, prefix));\n"
    "CREATE TABLE transfer_samples(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
    "  pattern TEXT NOT NULL, src INTEGER NOT NULL, dst INTEGER NOT NULL,\n"
    "  n_ranks INTEGER NOT NULL, size_bytes INTEGER NOT NULL,\n"
    "  n_warmup INTEGER NOT NULL, n_iters INTEGER NOT NULL,\n"
    "  min_us REAL, p10_us REAL, median_us REAL NOT NULL, p90_us REAL, mean_us REAL,\n"
    "  stddev_us REAL, max_us REAL, is_stable INTEGER NOT NULL,\n"
    "  algbw_gbps REAL, busbw_gbps REAL, busbw_factor REAL, ts_utc TEXT NOT NULL,\n"
    "  UNIQUE(run_id, pattern, n_ranks, src, dst, size_bytes));\n"
    "CREATE INDEX runs_status ON runs(status);\n";

static const char db_schema_v2[] =
    "CREATE TABLE measured_runs(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  ts_utc TEXT NOT NULL,\n"
    "  model_id INTEGER REFERENCES models(id),\n"
    "  device_id INTEGER REFERENCES devices(id),\n"
    "  profile_run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,\n"
    "  mode TEXT NOT NULL, n_ranks INTEGER NOT NULL, n_threads INTEGER NOT NULL,\n"
    "  n_tokens INTEGER NOT NULL, partition TEXT NOT NULL, transport TEXT NOT NULL,\n"
    "  ttft_ms REAL NOT NULL, predicted_ttft_ms REAL,\n"
    "  kvr_version TEXT NOT NULL, git_commit TEXT NOT NULL, host TEXT NOT NULL,\n"
    "  note TEXT NOT NULL);\n";

/* v3: what the fitting and search stages produce, and how a measured run chose its partition.
 * References to runs and tables are SET NULL on delete: a fit or table outlives the profile it
 * came from (its JSON is self-describing). */
static const char db_schema_v3[] =
    "CREATE TABLE fits(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,\n"
    "  target TEXT NOT NULL, form TEXT NOT NULL, n_samples INTEGER NOT NULL,\n"
    "  r2 REAL, mape_in REAL, mape_cv REAL, max_err_cv REAL,\n"
    "  json TEXT NOT NULL,\n"
    "  ts_utc TEXT NOT NULL, kvr_version TEXT NOT NULL, git_commit TEXT NOT NULL);\n"
    "CREATE INDEX fits_run ON fits(run_id);\n"
    "CREATE TABLE ptables(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,\n"
    "  source TEXT NOT NULL, links TEXT NOT NULL, granularity INTEGER NOT NULL,\n"
    "  json TEXT NOT NULL,\n"
    "  ts_utc TEXT NOT NULL, kvr_version TEXT NOT NULL, git_commit TEXT NOT NULL);\n"
    "CREATE TABLE ptable_rows(\n"
    "  table_id INTEGER NOT NULL REFERENCES ptables(id) ON DELETE CASCADE,\n"
    "  n_ranks INTEGER NOT NULL, context INTEGER NOT NULL, partition TEXT NOT NULL,\n"
    "  ttft_kvrs_ms REAL, ttft_kvre_ms REAL, ttft_tsp_ms REAL, ttft_ring_ms REAL,\n"
    "  ttft_single_ms REAL, best TEXT NOT NULL, search_ms REAL,\n"
    "  PRIMARY KEY(table_id, n_ranks, context));\n"
    "CREATE TABLE predictors(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  table_id INTEGER REFERENCES ptables(id) ON DELETE SET NULL,\n"
    "  run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,\n"
    "  n_ranks INTEGER NOT NULL, links TEXT NOT NULL, form TEXT NOT NULL,\n"
    "  gap_mean REAL, gap_max REAL, err_band REAL,\n"
    "  json TEXT NOT NULL,\n"
    "  ts_utc TEXT NOT NULL, kvr_version TEXT NOT NULL, git_commit TEXT NOT NULL);\n"
    "CREATE INDEX predictors_ranks ON predictors(n_ranks);\n"
    "ALTER TABLE measured_runs ADD COLUMN partition_source TEXT NOT NULL DEFAULT '';\n"
    "ALTER TABLE measured_runs ADD COLUMN predictor_id INTEGER\n"
    "  REFERENCES predictors(id) ON DELETE SET NULL;\n"
    "ALTER TABLE measured_runs ADD COLUMN drift INTEGER NOT NULL DEFAULT 0;\n";

/* v4: what kvr-search wrote into ptables as prose and kvr-fit parsed back, as typed columns: the
 * kind of the cost source (from the table's JSON export, "costs": {"kind": ...}) and the profile
 * run whose transfer samples gave the links (from "run N: ..." that kvr-search wrote, or
 * "fitted p2p links (run N)" that kvr-fit wrote; only when that run still exists). */
static const char db_schema_v4[] =
    "ALTER TABLE ptables ADD COLUMN cost_kind TEXT NOT NULL DEFAULT '';\n"
    "ALTER TABLE ptables ADD COLUMN link_run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL;\n"
    "UPDATE ptables SET cost_kind = coalesce((SELECT CASE WHEN json_valid(json) AND\n"
    "  json_type(json, '$.costs.kind') = 'text' THEN json_extract(json, '$.costs.kind') END),\n"
    "  '');\n"
    "UPDATE ptables SET link_run_id = (SELECT r.id FROM runs r WHERE r.id = CASE\n"
    "    WHEN links GLOB 'run [0-9]*:*' AND\n"
    "         substr(links, 5, instr(links, ':') - 5) NOT GLOB '*[^0-9]*'\n"
    "      THEN CAST(substr(links, 5, instr(links, ':') - 5) AS INTEGER)\n"
    "    WHEN links GLOB 'fitted p2p links (run [0-9]*)' AND\n"
    "         substr(links, 23, length(links) - 23) NOT GLOB '*[^0-9]*'\n"
    "      THEN CAST(substr(links, 23, length(links) - 23) AS INTEGER) END);\n";

/* v5: serving runs (kvr-serve: a request trace replayed under one scheduling policy, simulated
 * or measured), one row per request of each, and the KV pool's occupancy over the run. */
static const char db_schema_v5[] =
    "CREATE TABLE serving_runs(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  kind TEXT NOT NULL CHECK(kind IN ('simulated','measured')),\n"
    "  trace TEXT NOT NULL, trace_hash TEXT NOT NULL,\n"
    "  n_requests INTEGER NOT NULL, trace_duration_s REAL, rate_per_s REAL,\n"
    "  policy TEXT NOT NULL,\n"
    "  block_tokens INTEGER NOT NULL, pool_blocks INTEGER NOT NULL, watermark REAL NOT NULL,\n"
    "  max_seqs INTEGER NOT NULL, max_batched_tokens INTEGER NOT NULL,\n"
    "  max_model_len INTEGER NOT NULL,\n"
    "  cost_source TEXT NOT NULL, cost_kind TEXT NOT NULL,\n"
    "  decode_k_us REAL, decode_per_seq_us REAL, decode_per_ctx_token_us REAL,\n"
    "  model_id INTEGER REFERENCES models(id), device_id INTEGER REFERENCES devices(id),\n"
    "  backend TEXT NOT NULL,\n"
    "  slo_ttft_ms REAL, slo_tpot_ms REAL,\n"
    "  n_finished INTEGER NOT NULL, n_refused INTEGER NOT NULL, n_preemptions INTEGER NOT NULL,\n"
    "  ttft_p50_ms REAL, ttft_p90_ms REAL, ttft_p99_ms REAL, ttft_mean_ms REAL,\n"
    "  tpot_p50_ms REAL, tpot_p90_ms REAL, tpot_p99_ms REAL, tpot_mean_ms REAL,\n"
    "  queue_p50_ms REAL, queue_p90_ms REAL, queue_p99_ms REAL, queue_mean_ms REAL,\n"
    "  slo_attainment REAL, output_tok_per_s REAL, req_per_s REAL, duration_s REAL,\n"
    "  iterations INTEGER NOT NULL, peak_blocks INTEGER NOT NULL, mean_blocks REAL,\n"
    "  busy_s REAL, wall_s REAL,\n"
    "  kvr_version TEXT NOT NULL, git_commit TEXT NOT NULL, host TEXT NOT NULL,\n"
    "  ts_utc TEXT NOT NULL, note TEXT NOT NULL);\n"
    "CREATE INDEX serving_runs_trace ON serving_runs(trace_hash);\n"
    "CREATE TABLE serving_requests(\n"
    "  run_id INTEGER NOT NULL REFERENCES serving_runs(id) ON DELETE CASCADE,\n"
    "  idx INTEGER NOT NULL,\n"
    "  arrival_s REAL NOT NULL, admitted_s REAL, first_token_s REAL, finish_s REAL,\n"
    "  prompt_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,\n"
    "  max_blocks INTEGER NOT NULL, preemptions INTEGER NOT NULL, refused INTEGER NOT NULL,\n"
    "  PRIMARY KEY(run_id, idx)) WITHOUT ROWID;\n"
    "CREATE TABLE serving_occupancy(\n"
    "  run_id INTEGER NOT NULL REFERENCES serving_runs(id) ON DELETE CASCADE,\n"
    "  t_s REAL NOT NULL, blocks_mean REAL NOT NULL, blocks_max INTEGER NOT NULL,\n"
    "  PRIMARY KEY(run_id, t_s)) WITHOUT ROWID;\n";

/* v6: calibrations of end-to-end TTFT predictions (kvr-fit --calibrate: per model, profile run,
 * strategy, ranks, threads and transport, measured = a * predicted + b from the recorded runs,
 * with held-out errors and the run-to-run spread), and on measured runs the calibrated
 * prediction beside the raw one. */
static const char db_schema_v6[] =
    "CREATE TABLE calibrations(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  model_id INTEGER REFERENCES models(id) ON DELETE SET NULL,\n"
    "  profile_run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,\n"
    "  strategy TEXT NOT NULL, n_ranks INTEGER NOT NULL, n_threads INTEGER NOT NULL,\n"
    "  transport TEXT NOT NULL,\n"
    "  a REAL NOT NULL, b REAL NOT NULL, n_runs INTEGER NOT NULL,\n"
    "  raw_med_err REAL, raw_max_err REAL, cv_med_err REAL, cv_max_err REAL, cv_q90_err REAL,\n"
    "  spread REAL, n_repeat_sets INTEGER NOT NULL, band REAL,\n"
    "  ts_utc TEXT NOT NULL, kvr_version TEXT NOT NULL, git_commit TEXT NOT NULL);\n"
    "CREATE INDEX calibrations_key ON calibrations(model_id, profile_run_id, strategy, n_ranks);\n"
    "ALTER TABLE measured_runs ADD COLUMN calibrated_ttft_ms REAL;\n"
    "ALTER TABLE measured_runs ADD COLUMN calibration_id INTEGER\n"
    "  REFERENCES calibrations(id) ON DELETE SET NULL;\n";

/* v7: serving runs are stored as they go (the header at the start, each finished request as it
 * finishes, the summary at the end): the end time, NULL while a run is going or after it was
 * killed. Runs stored before were written whole at their end, at ts_utc. */
static const char db_schema_v7[] =
    "ALTER TABLE serving_runs ADD COLUMN end_utc TEXT;\n"
    "UPDATE serving_runs SET end_utc = ts_utc;\n";

static const db_migration db_migrations[] = {
    {1, "devices, models, profile runs, layer and transfer samples", db_schema_v1},
    {2, "measured runs", db_schema_v2},
    {3, "fits, partition tables and rows, predictors; measured runs: partition source, "
        "predictor, drift", db_schema_v3},
    {4, "partition tables: typed cost source kind and link run", db_schema_v4},
    {5, "serving runs (simulated and measured), their requests and pool occupancy", db_schema_v5},
    {6, "calibrations of TTFT predictions; measured runs: the calibrated prediction",
     db_schema_v6},
    {7, "serving runs: the end time (NULL: running or killed; requests stored as they finish)",
     db_schema_v7},
};
#define DB_N_MIGRATIONS ((int32_t)(sizeof db_migrations / sizeof db_migrations[0]))
_Static_assert(sizeof db_migrations / sizeof db_migrations[0] == KVR_DB_SCHEMA_VERSION,
               "one migration step per schema version");

int32_t db_schema_latest(void) {
    return DB_N_MIGRATIONS;
}

// ----------------------------------------------------------------------------
// applying them

kvr_status db_user_version(sqlite3 *h, const char *path, int32_t *out, kvr_error *err) {
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(h, "PRAGMA user_version", -1, &s, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        kvr_status st = db_sql_error(h, path, rc, "open", err);
        sqlite3_finalize(s);
        return st;
    }
    *out = (int32_t)sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return KVR_OK;
}

static kvr_status db_apply_step(sqlite3 *h, const char *path, const db_migration *m,
                                kvr_error *err) {
    char what[96];
    snprintf(what, sizeof what, "schema upgrade to version %d", m->version);
    KVR_TRY(db_exec(h, path, "BEGIN IMMEDIATE", what, err));
    int32_t cur = 0;
    kvr_status st = db_user_version(h, path, &cur, err);
    if (st == KVR_OK && cur >= m->version) { /* another process got here first */
        return db_exec(h, path, "COMMIT", what, err);
    }
    if (st == KVR_OK && cur != m->version - 1)
        st = kvr_error_set(err, KVR_ERR_INTERNAL, "%s: %s: file is at version %d", path, what, cur);
    if (st == KVR_OK) st = db_exec(h, path, m->sql, what, err);
    if (st == KVR_OK) {
        sqlite3_stmt *s = NULL;
        int rc = sqlite3_prepare_v2(h,
                                    "INSERT INTO kvr_schema(version, applied_utc, kvr_version, "
                                    "description) VALUES(?1, ?2, ?3, ?4)",
                                    -1, &s, NULL);
        char now[32];
        db_now_utc(now, sizeof now);
        if (rc == SQLITE_OK) {
            sqlite3_bind_int(s, 1, m->version);
            db_bind_text(s, 2, now);
            db_bind_text(s, 3, kvr_version());
            db_bind_text(s, 4, m->description);
            rc = sqlite3_step(s);
            if (rc == SQLITE_DONE) rc = SQLITE_OK;
        }
        sqlite3_finalize(s);
        if (rc != SQLITE_OK) st = db_sql_error(h, path, rc, what, err);
    }
    if (st == KVR_OK) {
        /* PRAGMA takes no bound parameters; the value is our own integer. */
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", m->version);
        st = db_exec(h, path, sql, what, err);
    }
    if (st == KVR_OK) st = db_exec(h, path, "COMMIT", what, err);
    if (st != KVR_OK) sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
    return st;
}

kvr_status db_migrate(sqlite3 *h, const char *path, int32_t target, kvr_error *err) {
    if (target < 0 || target > DB_N_MIGRATIONS)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "schema version %d does not exist", target);
    int32_t cur = 0;
    KVR_TRY(db_user_version(h, path, &cur, err));
    for (int32_t i = 0; i < DB_N_MIGRATIONS; i++) {
        const db_migration *m = &db_migrations[i];
        if (m->version <= cur || m->version > target) continue;
        KVR_TRY(db_apply_step(h, path, m, err));
    }
    return KVR_OK;
}
