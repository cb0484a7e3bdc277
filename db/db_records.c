/* db_records.c -- typed reads and writes of the records: devices and models (find-or-insert),
 * profile runs (insert, status, claim for resume, list, delete, reaping dead writers), layer
 * and transfer samples, measured runs. Every statement binds its parameters; every write runs
 * in a BEGIN IMMEDIATE transaction (joining the caller's, when one is open). */
#include "db_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kvr_run_status_names[] = {"running", "complete", "incomplete", "failed"};
_Static_assert(sizeof kvr_run_status_names / sizeof kvr_run_status_names[0] ==
                   KVR_RUN_STATUS_COUNT,
               "run status names");

const char *kvr_run_status_name(kvr_run_status s) {
    return (s >= 0 && s < KVR_RUN_STATUS_COUNT) ? kvr_run_status_names[s] : "unknown";
}

void db_bind_id(sqlite3_stmt *s, int i, int64_t id) {
    if (id > 0)
        sqlite3_bind_int64(s, i, id);
    else
        sqlite3_bind_null(s, i);
}

kvr_status db_step_done(kvr_db *db, sqlite3_stmt *s, const char *what, kvr_error *err) {
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) {
        kvr_status st = DB_ERR(db, rc, what, err);
        sqlite3_reset(s);
        return st;
    }
    sqlite3_reset(s);
    return KVR_OK;
}

void *db_grow(void *p, int64_t n, int64_t *cap, size_t elem) {
    if (n < *cap) return p;
    int64_t nc = *cap ? *cap * 2 : 16;
    void *q = realloc(p, (size_t)nc * elem);
    if (!q) return NULL;
    *cap = nc;
    return q;
}

// ----------------------------------------------------------------------------
// devices and models: found-or-inserted on the columns of their UNIQUE constraint (KEY)

#define K DB_COL_F_KEY
static const db_col db_device_cols[] = {
    DB_COLF(kvr_db_device, id, DB_COL_INT64, DB_COL_F_ROWID, 1),
    DB_COLF(kvr_db_device, kind, DB_COL_TEXT, K, 1),
    DB_COLF(kvr_db_device, name, DB_COL_TEXT, K, 1),
    DB_COLF(kvr_db_device, host, DB_COL_TEXT, K, 1),
    DB_COLF(kvr_db_device, n_cores, DB_COL_INT, K, 1),
    DB_COLF(kvr_db_device, n_sms, DB_COL_INT, K, 1),
    DB_COL(kvr_db_device, clock_mhz, DB_COL_REAL),
    DB_COLF(kvr_db_device, mem_bytes, DB_COL_INT64, K, 1),
    DB_COLF(kvr_db_device, driver_version, DB_COL_TEXT, K, 1),
    DB_COLF(kvr_db_device, cuda_version, DB_COL_TEXT, K, 1),
    DB_COLF(kvr_db_device, nccl_version, DB_COL_TEXT, K, 1),
    DB_COLF(kvr_db_device, blas, DB_COL_TEXT, K, 1),
    DB_COLF(kvr_db_device, mpi_version, DB_COL_TEXT, K, 1),
};

static const db_col db_model_cols[] = {
    DB_COLF(kvr_db_model, id, DB_COL_INT64, DB_COL_F_ROWID, 1),
    DB_COLF(kvr_db_model, name, DB_COL_TEXT, K, 1),
    DB_COL(kvr_db_model, arch, DB_COL_TEXT),
    DB_COL(kvr_db_model, source, DB_COL_TEXT),
    DB_COLF(kvr_db_model, n_layers, DB_COL_INT, K, 1),
    DB_COLF(kvr_db_model, d_model, DB_COL_INT, K, 1),
    DB_COLF(kvr_db_model, n_heads, DB_COL_INT, K, 1),
    DB_COLF(kvr_db_model, n_kv_heads, DB_COL_INT, K, 1),
    DB_COLF(kvr_db_model, head_dim, DB_COL_INT, K, 1),
    DB_COLF(kvr_db_model, d_ff, DB_COL_INT, K, 1),
    DB_COLF(kvr_db_model, vocab_size, DB_COL_INT, K, 1),
    DB_COL(kvr_db_model, max_context, DB_COL_INT),
    DB_COL(kvr_db_model, rope_theta, DB_COL_REAL),
    DB_COL(kvr_db_model, tied_embeddings, DB_COL_BOOL),
    DB_COLF(kvr_db_model, kv_bytes_per_token, DB_COL_INT64, K, 1),
    DB_COLF(kvr_db_model, content_hash, DB_COL_TEXT, K, 1),
};
#undef K

kvr_status kvr_db_device_put(kvr_db *db, const kvr_db_device *d, int64_t *id, kvr_error *err) {
    return db_row_find_or_insert(db, "devices", db_device_cols, DB_NCOLS(db_device_cols), d,
                                 "device", id, err);
}

kvr_status kvr_db_device_get(kvr_db *db, int64_t id, kvr_db_device *out, kvr_error *err) {
    return db_row_get(db, -1, "devices", db_device_cols, DB_NCOLS(db_device_cols), sizeof *out,
                      id, "device", out, err);
}

kvr_status kvr_db_model_put(kvr_db *db, const kvr_db_model *m, int64_t *id, kvr_error *err) {
    return db_row_find_or_insert(db, "models", db_model_cols, DB_NCOLS(db_model_cols), m, "model",
                                 id, err);
}

kvr_status kvr_db_model_get(kvr_db *db, int64_t id, kvr_db_model *out, kvr_error *err) {
    return db_row_get(db, -1, "models", db_model_cols, DB_NCOLS(db_model_cols), sizeof *out, id,
                      "model", out, err);
}

// ----------------------------------------------------------------------------
// runs

static const db_col db_run_cols[] = {
    DB_COLF(kvr_db_run, id, DB_COL_INT64, DB_COL_F_ROWID, 1),
    DB_COL(kvr_db_run, kind, DB_COL_TEXT),
    DB_COL(kvr_db_run, status, DB_COL_RUN_STATUS),
    DB_COL(kvr_db_run, device_id, DB_COL_ID),
    DB_COL(kvr_db_run, model_id, DB_COL_ID),
    DB_COL(kvr_db_run, backend, DB_COL_TEXT),
    DB_COL(kvr_db_run, dtype, DB_COL_TEXT),
    DB_COL(kvr_db_run, transport, DB_COL_TEXT),
    DB_COL(kvr_db_run, n_threads, DB_COL_INT),
    DB_COL(kvr_db_run, n_ranks, DB_COL_INT),
    DB_COL(kvr_db_run, kvr_version, DB_COL_TEXT),
    DB_COL(kvr_db_run, git_commit, DB_COL_TEXT),
    DB_COL(kvr_db_run, build_type, DB_COL_TEXT),
    DB_COL(kvr_db_run, host, DB_COL_TEXT),
    DB_COL(kvr_db_run, device_name, DB_COL_TEXT),
    DB_COL(kvr_db_run, blas, DB_COL_TEXT),
    DB_COL(kvr_db_run, mpi_version, DB_COL_TEXT),
    DB_COL(kvr_db_run, cuda_version, DB_COL_TEXT),
    DB_COL(kvr_db_run, nccl_version, DB_COL_TEXT),
    DB_COL(kvr_db_run, ts_utc, DB_COL_TEXT),
    DB_COL(kvr_db_run, ts_end_utc, DB_COL_TEXT),
    DB_COL(kvr_db_run, n_warmup, DB_COL_INT),
    DB_COL(kvr_db_run, n_iters_min, DB_COL_INT),
    DB_COL(kvr_db_run, n_iters_max, DB_COL_INT),
    DB_COL(kvr_db_run, time_budget_s, DB_COL_REAL),
    DB_COL(kvr_db_run, rel_tol, DB_COL_REAL),
    DB_COL(kvr_db_run, timer_overhead_us, DB_COL_REAL),
    DB_COL(kvr_db_run, grid, DB_COL_TEXT),
    DB_COL(kvr_db_run, ops, DB_COL_TEXT),
    DB_COL(kvr_db_run, params, DB_COL_TEXT),
    DB_COL(kvr_db_run, source, DB_COL_TEXT),
    DB_COL(kvr_db_run, pid, DB_COL_INT64),
    DB_COL(kvr_db_run, pid_start, DB_COL_INT64),
    DB_COL(kvr_db_run, note, DB_COL_TEXT),
};

kvr_status kvr_db_run_insert(kvr_db *db, kvr_db_run *run, kvr_error *err) {
    bool own;
    KVR_TRY(db_tx_begin(db, &own, err));
    kvr_status st = db_row_insert(db, "runs", db_run_cols, DB_NCOLS(db_run_cols), run,
                                  "insert run", &run->id, err);
    return db_tx_end(db, own, st, err);
}

kvr_status kvr_db_run_get(kvr_db *db, int64_t id, kvr_db_run *out, kvr_error *err) {
    return db_row_get(db, DB_STMT_RUN_GET, "runs", db_run_cols, DB_NCOLS(db_run_cols),
                      sizeof *out, id, "run", out, err);
}

kvr_status kvr_db_run_set_status(kvr_db *db, int64_t id, kvr_run_status status, const char *note,
                                 kvr_error *err) {
    bool own;
    KVR_TRY(db_tx_begin(db, &own, err));
    sqlite3_stmt *s = NULL;
    kvr_status st = db_prepare(db,
                               "UPDATE runs SET status=?2, ts_end_utc=?3, note=coalesce(?4, note) "
                               "WHERE id=?1",
                               &s, err);
    if (st == KVR_OK) {
        char now[32] = "";
        if (status != KVR_RUN_RUNNING) db_now_utc(now, sizeof now);
        sqlite3_bind_int64(s, 1, id);
        db_bind_text(s, 2, kvr_run_status_name(status));
        db_bind_text(s, 3, now);
        if (note)
            db_bind_text(s, 4, note);
        else
            sqlite3_bind_null(s, 4);
        st = db_step_done(db, s, "update run status", err);
        if (st == KVR_OK && sqlite3_changes(db->h) == 0)
            st = kvr_error_set(err, KVR_ERR_NOT_FOUND, "run %lld not found in %s", (long long)id,
                               db->path);
        sqlite3_finalize(s);
    }
    return db_tx_end(db, own, st, err);
}

kvr_status kvr_db_run_claim(kvr_db *db, int64_t id, kvr_error *err) {
    bool own;
    KVR_TRY(db_tx_begin(db, &own, err));
    kvr_db_run r;
    kvr_status st = kvr_db_run_get(db, id, &r, err);
    if (st == KVR_OK && r.status == KVR_RUN_COMPLETE)
        st = kvr_error_set(err, KVR_ERR_INVALID_ARG, "run %lld is already complete",
                           (long long)id);
    if (st == KVR_OK && r.status == KVR_RUN_RUNNING && kvr_db_run_owner_alive(&r))
        st = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                           "run %lld is being written by process %lld on %s", (long long)id,
                           (long long)r.pid, r.host);
    if (st == KVR_OK) {
        sqlite3_stmt *s = NULL;
        st = db_prepare(db,
                        "UPDATE runs SET status='running', ts_end_utc='', note='', pid=?2, "
                        "pid_start=?3 WHERE id=?1",
                        &s, err);
        if (st == KVR_OK) {
            int64_t pid, start;
            kvr_db_self_pid(&pid, &start);
            sqlite3_bind_int64(s, 1, id);
            sqlite3_bind_int64(s, 2, pid);
            sqlite3_bind_int64(s, 3, start);
            st = db_step_done(db, s, "claim run", err);
            sqlite3_finalize(s);
        }
    }
    return db_tx_end(db, own, st, err);
}

kvr_status kvr_db_runs_list(kvr_db *db, kvr_db_run **out, int64_t *n, kvr_error *err) {
    *out = NULL;
    *n = 0;
    char sql[1024], cols[800];
    db_cols_list(db_run_cols, DB_NCOLS(db_run_cols), db->version, 0, NULL, cols, sizeof cols);
    snprintf(sql, sizeof sql, "SELECT %s FROM runs ORDER BY id", cols);
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db, sql, &s, err));
    return db_rows_collect(db, s, db_run_cols, DB_NCOLS(db_run_cols), sizeof **out, "runs",
                           "list runs", (void **)out, n, err);
}

kvr_status kvr_db_run_delete(kvr_db *db, int64_t id, kvr_error *err) {
    bool own;
    KVR_TRY(db_tx_begin(db, &own, err));
    static const struct {
        int32_t since; /* schema version that has the table or column */
        const char *sql;
    } sql[] = {
        {1, "DELETE FROM layer_samples WHERE run_id=?1"},
        {1, "DELETE FROM transfer_samples WHERE run_id=?1"},
        {2, "UPDATE measured_runs SET profile_run_id=NULL WHERE profile_run_id=?1"},
        {3, "UPDATE fits SET run_id=NULL WHERE run_id=?1"},
        {3, "UPDATE ptables SET run_id=NULL WHERE run_id=?1"},
        {4, "UPDATE ptables SET link_run_id=NULL WHERE link_run_id=?1"},
        {3, "UPDATE predictors SET run_id=NULL WHERE run_id=?1"},
        {1, "DELETE FROM runs WHERE id=?1"},
    };
    enum { N_SQL = (int)(sizeof sql / sizeof sql[0]) };
    kvr_status st = KVR_OK;
    for (int i = 0; i < N_SQL && st == KVR_OK; i++) {
        if (db->version < sql[i].since) continue;
        sqlite3_stmt *s = NULL;
        st = db_prepare(db, sql[i].sql, &s, err);
        if (st != KVR_OK) break;
        sqlite3_bind_int64(s, 1, id);
        st = db_step_done(db, s, "delete run", err);
        if (st == KVR_OK && i == N_SQL - 1 && sqlite3_changes(db->h) == 0)
            st = kvr_error_set(err, KVR_ERR_NOT_FOUND, "run %lld not found in %s", (long long)id,
                               db->path);
        sqlite3_finalize(s);
    }
    return db_tx_end(db, own, st, err);
}

kvr_status kvr_db_runs_reap(kvr_db *db, int64_t *n_reaped, kvr_error *err) {
    if (n_reaped) *n_reaped = 0;
    if (db->read_only) return KVR_OK;
    kvr_db_run *runs = NULL;
    int64_t n = 0;
    KVR_TRY(kvr_db_runs_list(db, &runs, &n, err));
    kvr_status st = KVR_OK;
    for (int64_t i = 0; i < n && st == KVR_OK; i++) {
        if (runs[i].status != KVR_RUN_RUNNING || kvr_db_run_owner_alive(&runs[i])) continue;
        bool own;
        st = db_tx_begin(db, &own, err);
        if (st != KVR_OK) break;
        /* re-check under the write lock: a resuming process may have claimed it meanwhile */
        kvr_db_run cur;
        st = kvr_db_run_get(db, runs[i].id, &cur, err);
        if (st == KVR_OK && cur.status == KVR_RUN_RUNNING && !kvr_db_run_owner_alive(&cur)) {
            char note[128];
            snprintf(note, sizeof note, "writer process %lld ended without finishing",
                     (long long)cur.pid);
            st = kvr_db_run_set_status(db, cur.id, KVR_RUN_INCOMPLETE, note, err);
            if (st == KVR_OK && n_reaped) (*n_reaped)++;
        }
        st = db_tx_end(db, own, st, err);
    }
    free(runs);
    return st;
}

kvr_status kvr_db_run_counts(kvr_db *db, int64_t run_id, int64_t *n_layer, int64_t *n_transfer,
                             kvr_error *err) {
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db,
                       "SELECT (SELECT count(*) FROM layer_samples WHERE run_id=?1), "
                       "(SELECT count(*) FROM transfer_samples WHERE run_id=?1)",
                       &s, err));
    sqlite3_bind_int64(s, 1, run_id);
    int rc = sqlite3_step(s);
    kvr_status st = KVR_OK;
    if (rc == SQLITE_ROW) {
        if (n_layer) *n_layer = sqlite3_column_int64(s, 0);
        if (n_transfer) *n_transfer = sqlite3_column_int64(s, 1);
    } else {
        st = DB_ERR(db, rc, "count samples", err);
    }
    sqlite3_finalize(s);
    return st;
}

kvr_status kvr_db_run_made_from(kvr_db *db, int64_t run_id, int64_t *n_fits, int64_t *n_tables,
                                int64_t *n_predictors, kvr_error *err) {
    int64_t c[3] = {0, 0, 0};
    if (db->version >= 3) {
        sqlite3_stmt *s = NULL;
        KVR_TRY(db_prepare(db,
                           "SELECT (SELECT count(*) FROM fits WHERE run_id=?1), "
                           "(SELECT count(*) FROM ptables WHERE run_id=?1), "
                           "(SELECT count(*) FROM predictors WHERE run_id=?1)",
                           &s, err));
        sqlite3_bind_int64(s, 1, run_id);
        const int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
            for (int i = 0; i < 3; i++) c[i] = sqlite3_column_int64(s, i);
        sqlite3_finalize(s);
        if (rc != SQLITE_ROW) return DB_ERR(db, rc, "count what was made from a run", err);
    }
    if (n_fits) *n_fits = c[0];
    if (n_tables) *n_tables = c[1];
    if (n_predictors) *n_predictors = c[2];
    return KVR_OK;
}

kvr_status kvr_db_run_latest_with_ops(kvr_db *db, const char *const *ops, int n_ops,
                                      int64_t *run_id, kvr_error *err) {
    sqlite3_stmt *s = NULL, *q = NULL;
    KVR_TRY(db_prepare(db, "SELECT id FROM runs WHERE status != 'failed' ORDER BY id DESC", &s,
                       err));
    kvr_status st = db_prepare(db,
                               "SELECT EXISTS(SELECT 1 FROM layer_samples WHERE run_id=?1 AND "
                               "op=?2)",
                               &q, err);
    int64_t found = 0;
    int rc = SQLITE_DONE;
    while (st == KVR_OK && !found && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        const int64_t id = sqlite3_column_int64(s, 0);
        kvr_db_run r;
        st = kvr_db_run_get(db, id, &r, err);
        if (st != KVR_OK) break;
        if (r.status == KVR_RUN_RUNNING && kvr_db_run_owner_alive(&r)) continue;
        bool all = true;
        for (int k = 0; k < n_ops && all && st == KVR_OK; k++) {
            sqlite3_bind_int64(q, 1, id);
            db_bind_text(q, 2, ops[k]);
            const int qrc = sqlite3_step(q);
            if (qrc == SQLITE_ROW)
                all = sqlite3_column_int(q, 0) != 0;
            else
                st = DB_ERR(db, qrc, "find a profile run", err);
            sqlite3_reset(q);
        }
        if (st == KVR_OK && all) found = id;
    }
    if (st == KVR_OK && !found && rc != SQLITE_DONE && rc != SQLITE_ROW)
        st = DB_ERR(db, rc, "find a profile run", err);
    sqlite3_finalize(q);
    sqlite3_finalize(s);
    if (st != KVR_OK) return st;
    if (!found) {
        char list[128] = "";
        size_t len = 0;
        for (int k = 0; k < n_ops && len < sizeof list; k++)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", k ? ", " : "", ops[k]);
        return kvr_error_set(err, KVR_ERR_NOT_FOUND, "no profile run with %s samples in %s", list,
                             db->path);
    }
    *run_id = found;
    return KVR_OK;
}

kvr_status kvr_db_run_latest_with_transfers(kvr_db *db, int64_t model_id, int64_t device_id,
                                            const char *pattern, int64_t *run_id,
                                            kvr_error *err) {
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db,
                       "SELECT r.id FROM runs r WHERE coalesce(r.model_id, 0) = ?1 AND "
                       "coalesce(r.device_id, 0) = ?2 AND EXISTS(SELECT 1 FROM transfer_samples "
                       "t WHERE t.run_id = r.id AND t.pattern = ?3) ORDER BY r.id DESC LIMIT 1",
                       &s, err));
    sqlite3_bind_int64(s, 1, model_id > 0 ? model_id : 0);
    sqlite3_bind_int64(s, 2, device_id > 0 ? device_id : 0);
    db_bind_text(s, 3, pattern);
    const int rc = sqlite3_step(s);
    kvr_status st = KVR_OK;
    if (rc == SQLITE_ROW)
        *run_id = sqlite3_column_int64(s, 0);
    else if (rc == SQLITE_DONE)
        st = kvr_error_set(err, KVR_ERR_NOT_FOUND,
                           "no run of model %lld on device %lld with %s transfer samples in %s",
                           (long long)model_id, (long long)device_id, pattern, db->path);
    else
        st = DB_ERR(db, rc, "find a transfer run", err);
    sqlite3_finalize(s);
    return st;
}

// ----------------------------------------------------------------------------
// samples

#define DB_STATS_COLS(T)                                                                           \
    DB_COLN(T, "n_warmup", stats.n_warmup, DB_COL_INT),                                           \
        DB_COLN(T, "n_iters", stats.n_iters, DB_COL_INT),                                         \
        DB_COLN(T, "min_us", stats.min_us, DB_COL_REAL),                                          \
        DB_COLN(T, "p10_us", stats.p10_us, DB_COL_REAL),                                          \
        DB_COLN(T, "median_us", stats.median_us, DB_COL_REAL),                                    \
        DB_COLN(T, "p90_us", stats.p90_us, DB_COL_REAL),                                          \
        DB_COLN(T, "mean_us", stats.mean_us, DB_COL_REAL),                                        \
        DB_COLN(T, "stddev_us", stats.stddev_us, DB_COL_REAL),                                    \
        DB_COLN(T, "max_us", stats.max_us, DB_COL_REAL),                                          \
        DB_COLN(T, "is_stable", stats.is_stable, DB_COL_BOOL)

/* The samples' ts_utc (when it was written) is no field: put binds now after these columns. */
static const db_col db_layer_cols[] = {
    DB_COL(kvr_db_layer_sample, run_id, DB_COL_INT64),
    DB_COL(kvr_db_layer_sample, op, DB_COL_TEXT),
    DB_COL(kvr_db_layer_sample, c, DB_COL_INT64),
    DB_COL(kvr_db_layer_sample, prefix, DB_COL_INT64),
    DB_STATS_COLS(kvr_db_layer_sample),
};

static const db_col db_transfer_cols[] = {
    DB_COL(kvr_db_transfer_sample, run_id, DB_COL_INT64),
    DB_COL(kvr_db_transfer_sample, pattern, DB_COL_TEXT),
    DB_COL(kvr_db_transfer_sample, src, DB_COL_INT),
    DB_COL(kvr_db_transfer_sample, dst, DB_COL_INT),
    DB_COL(kvr_db_transfer_sample, n_ranks, DB_COL_INT),
    DB_COL(kvr_db_transfer_sample, size_bytes, DB_COL_INT64),
    DB_STATS_COLS(kvr_db_transfer_sample),
    DB_COL(kvr_db_transfer_sample, algbw_gbps, DB_COL_REAL),
    DB_COL(kvr_db_transfer_sample, busbw_gbps, DB_COL_REAL),
    DB_COL(kvr_db_transfer_sample, busbw_factor, DB_COL_REAL),
};

/* Insert or replace one sample with its ts_utc = now (cached statement). */
static kvr_status db_sample_put1(kvr_db *db, db_stmt_id sid, const char *table, const db_col *c,
                                 int n, const void *x, const char *what, kvr_error *err) {
    char sql[1024];
    db_cols_insert_sql("INSERT OR REPLACE", table, c, n, db->version, "ts_utc", NULL, sql,
                       sizeof sql);
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_stmt(db, sid, sql, &s, err));
    char now[32];
    db_now_utc(now, sizeof now);
    db_bind_text(s, db_cols_bind(s, 1, c, n, db->version, 0, x), now);
    return db_step_done(db, s, what, err);
}

static kvr_status db_layer_put1(kvr_db *db, const kvr_db_layer_sample *x, kvr_error *err) {
    if (!isfinite(x->stats.median_us))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: layer sample %s c=%lld: no median",
                             db->path, x->op, (long long)x->c);
    return db_sample_put1(db, DB_STMT_LAYER_PUT, "layer_samples", db_layer_cols,
                          DB_NCOLS(db_layer_cols), x, "insert layer sample", err);
}

kvr_status kvr_db_layer_samples_put(kvr_db *db, const kvr_db_layer_sample *x, int64_t n,
                                    kvr_error *err) {
    bool own;
    KVR_TRY(db_tx_begin(db, &own, err));
    kvr_status st = KVR_OK;
    for (int64_t i = 0; i < n && st == KVR_OK; i++) st = db_layer_put1(db, &x[i], err);
    return db_tx_end(db, own, st, err);
}

kvr_status kvr_db_layer_sample_put(kvr_db *db, const kvr_db_layer_sample *x, kvr_error *err) {
    return kvr_db_layer_samples_put(db, x, 1, err);
}

kvr_status kvr_db_layer_samples_get(kvr_db *db, int64_t run_id, kvr_db_layer_sample **out,
                                    int64_t *n, kvr_error *err) {
    *out = NULL;
    *n = 0;
    char sql[1024], cols[512];
    db_cols_list(db_layer_cols, DB_NCOLS(db_layer_cols), db->version, 0, NULL, cols, sizeof cols);
    snprintf(sql, sizeof sql,
             "SELECT %s FROM layer_samples WHERE run_id=?1 ORDER BY CASE op WHEN 'embed' THEN 0 "
             "WHEN 'pre' THEN 1 WHEN 'attn' THEN 2 WHEN 'post' THEN 3 WHEN 'head' THEN 4 ELSE 5 "
             "END, op, c, prefix",
             cols);
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db, sql, &s, err));
    sqlite3_bind_int64(s, 1, run_id);
    return db_rows_collect(db, s, db_layer_cols, DB_NCOLS(db_layer_cols), sizeof **out, "samples",
                           "read layer samples", (void **)out, n, err);
}

static kvr_status db_transfer_put1(kvr_db *db, const kvr_db_transfer_sample *x, kvr_error *err) {
    if (!isfinite(x->stats.median_us))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: transfer sample %s: no median",
                             db->path, x->pattern);
    return db_sample_put1(db, DB_STMT_TRANSFER_PUT, "transfer_samples", db_transfer_cols,
                          DB_NCOLS(db_transfer_cols), x, "insert transfer sample", err);
}

kvr_status kvr_db_transfer_samples_put(kvr_db *db, const kvr_db_transfer_sample *x, int64_t n,
                                       kvr_error *err) {
    bool own;
    KVR_TRY(db_tx_begin(db, &own, err));
    kvr_status st = KVR_OK;
    for (int64_t i = 0; i < n && st == KVR_OK; i++) st = db_transfer_put1(db, &x[i], err);
    return db_tx_end(db, own, st, err);
}

kvr_status kvr_db_transfer_sample_put(kvr_db *db, const kvr_db_transfer_sample *x,
                                      kvr_error *err) {
    return kvr_db_transfer_samples_put(db, x, 1, err);
}

kvr_status kvr_db_transfer_samples_get(kvr_db *db, int64_t run_id, kvr_db_transfer_sample **out,
                                       int64_t *n, kvr_error *err) {
    *out = NULL;
    *n = 0;
    char sql[1024], cols[512];
    db_cols_list(db_transfer_cols, DB_NCOLS(db_transfer_cols), db->version, 0, NULL, cols,
                 sizeof cols);
    snprintf(sql, sizeof sql,
             "SELECT %s FROM transfer_samples WHERE run_id=?1 ORDER BY pattern, n_ranks, src, "
             "dst, size_bytes",
             cols);
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db, sql, &s, err));
    sqlite3_bind_int64(s, 1, run_id);
    return db_rows_collect(db, s, db_transfer_cols, DB_NCOLS(db_transfer_cols), sizeof **out,
                           "samples", "read transfer samples", (void **)out, n, err);
}

// ----------------------------------------------------------------------------
// measured runs

static const db_col db_measured_cols[] = {
    DB_COLF(kvr_db_measured_run, id, DB_COL_INT64, DB_COL_F_ROWID, 2),
    DB_COLF(kvr_db_measured_run, ts_utc, DB_COL_TEXT, 0, 2),
    DB_COLF(kvr_db_measured_run, model_id, DB_COL_ID, 0, 2),
    DB_COLF(kvr_db_measured_run, device_id, DB_COL_ID, 0, 2),
    DB_COLF(kvr_db_measured_run, profile_run_id, DB_COL_ID, 0, 2),
    DB_COLF(kvr_db_measured_run, mode, DB_COL_TEXT, 0, 2),
    DB_COLF(kvr_db_measured_run, n_ranks, DB_COL_INT, 0, 2),
    DB_COLF(kvr_db_measured_run, n_threads, DB_COL_INT, 0, 2),
    DB_COLF(kvr_db_measured_run, n_tokens, DB_COL_INT64, 0, 2),
    DB_COLF(kvr_db_measured_run, partition, DB_COL_TEXT, 0, 2),
    DB_COLF(kvr_db_measured_run, transport, DB_COL_TEXT, 0, 2),
    DB_COLF(kvr_db_measured_run, ttft_ms, DB_COL_REAL, 0, 2),
    DB_COLF(kvr_db_measured_run, predicted_ttft_ms, DB_COL_OPT, 0, 2),
    DB_COLF(kvr_db_measured_run, kvr_version, DB_COL_TEXT, 0, 2),
    DB_COLF(kvr_db_measured_run, git_commit, DB_COL_TEXT, 0, 2),
    DB_COLF(kvr_db_measured_run, host, DB_COL_TEXT, 0, 2),
    DB_COLF(kvr_db_measured_run, note, DB_COL_TEXT, 0, 2),
    DB_COLF(kvr_db_measured_run, partition_source, DB_COL_TEXT, 0, 3),
    DB_COLF(kvr_db_measured_run, predictor_id, DB_COL_ID, 0, 3),
    DB_COLF(kvr_db_measured_run, drift, DB_COL_BOOL, 0, 3),
    DB_COLF(kvr_db_measured_run, calibrated_ttft_ms, DB_COL_OPT, 0, 6),
    DB_COLF(kvr_db_measured_run, calibration_id, DB_COL_ID, 0, 6),
};

kvr_status kvr_db_measured_run_put(kvr_db *db, kvr_db_measured_run *r, kvr_error *err) {
    if (db->version < 2)
        return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                             "%s: schema version %d has no measured runs (open it read-write to "
                             "upgrade)", db->path, db->version);
    bool own;
    KVR_TRY(db_tx_begin(db, &own, err));
    /* a v2 file opened read-write was upgraded on open; only a v2 file cannot be written */
    if (!r->ts_utc[0]) db_now_utc(r->ts_utc, sizeof r->ts_utc);
    kvr_db_measured_run x = *r; /* empty provenance = this build (the caller's copy untouched) */
    if (!x.kvr_version[0]) DB_COPY(x.kvr_version, kvr_version());
    if (!x.git_commit[0]) DB_COPY(x.git_commit, kvr_build_commit());
    kvr_status st = db_row_insert(db, "measured_runs", db_measured_cols,
                                  DB_NCOLS(db_measured_cols), &x, "insert measured run", &r->id,
                                  err);
    return db_tx_end(db, own, st, err);
}

kvr_status kvr_db_measured_runs_list(kvr_db *db, kvr_db_measured_run **out, int64_t *n,
                                     kvr_error *err) {
    *out = NULL;
    *n = 0;
    if (db->version < 2) return KVR_OK;
    /* a v2 file opened read-only lacks the v3 columns: they read as ""/0/false */
    char sql[1024], cols[800];
    db_cols_list(db_measured_cols, DB_NCOLS(db_measured_cols), db->version, 0, NULL, cols,
                 sizeof cols);
    snprintf(sql, sizeof sql, "SELECT %s FROM measured_runs ORDER BY id", cols);
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db, sql, &s, err));
    return db_rows_collect(db, s, db_measured_cols, DB_NCOLS(db_measured_cols), sizeof **out,
                           "measured runs", "list measured runs", (void **)out, n, err);
}

// ----------------------------------------------------------------------------
// calibrations (schema v6)

static const db_col db_calib_cols[] = {
    DB_COLF(kvr_db_calibration, id, DB_COL_INT64, DB_COL_F_ROWID, 6),
    DB_COLF(kvr_db_calibration, model_id, DB_COL_ID, 0, 6),
    DB_COLF(kvr_db_calibration, profile_run_id, DB_COL_ID, 0, 6),
    DB_COLF(kvr_db_calibration, strategy, DB_COL_TEXT, 0, 6),
    DB_COLF(kvr_db_calibration, n_ranks, DB_COL_INT, 0, 6),
    DB_COLF(kvr_db_calibration, n_threads, DB_COL_INT, 0, 6),
    DB_COLF(kvr_db_calibration, transport, DB_COL_TEXT, 0, 6),
    DB_COLF(kvr_db_calibration, a, DB_COL_REAL, 0, 6),
    DB_COLF(kvr_db_calibration, b, DB_COL_REAL, 0, 6),
    DB_COLF(kvr_db_calibration, n_runs, DB_COL_INT, 0, 6),
    DB_COLF(kvr_db_calibration, raw_med_err, DB_COL_REAL, 0, 6),
    DB_COLF(kvr_db_calibration, raw_max_err, DB_COL_REAL, 0, 6),
    DB_COLF(kvr_db_calibration, cv_med_err, DB_COL_REAL, 0, 6),
    DB_COLF(kvr_db_calibration, cv_max_err, DB_COL_REAL, 0, 6),
    DB_COLF(kvr_db_calibration, cv_q90_err, DB_COL_REAL, 0, 6),
    DB_COLF(kvr_db_calibration, spread, DB_COL_REAL, 0, 6),
    DB_COLF(kvr_db_calibration, n_repeat_sets, DB_COL_INT, 0, 6),
    DB_COLF(kvr_db_calibration, band, DB_COL_REAL, 0, 6),
    DB_COLF(kvr_db_calibration, ts_utc, DB_COL_TEXT, 0, 6),
    DB_COLF(kvr_db_calibration, kvr_version, DB_COL_TEXT, 0, 6),
    DB_COLF(kvr_db_calibration, git_commit, DB_COL_TEXT, 0, 6),
};
#define DB_CALIB_N DB_NCOLS(db_calib_cols)

kvr_status kvr_db_calibration_put(kvr_db *db, kvr_db_calibration *c, kvr_error *err) {
    if (db->version < 6)
        return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                             "%s: schema version %d has no calibrations (open it read-write to "
                             "upgrade)", db->path, db->version);
    if (!(c->a >= 0) || !(c->b >= 0) || c->n_ranks < 1 || !c->strategy[0])
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "calibration: a %g, b %g (need >= 0), %d ranks, strategy '%s'", c->a,
                             c->b, c->n_ranks, c->strategy);
    kvr_db_calibration x = *c;
    if (!x.ts_utc[0]) db_now_utc(x.ts_utc, sizeof x.ts_utc);
    if (!x.kvr_version[0]) DB_COPY(x.kvr_version, kvr_version());
    if (!x.git_commit[0]) DB_COPY(x.git_commit, kvr_build_commit());
    return db_row_insert(db, "calibrations", db_calib_cols, DB_CALIB_N, &x, "insert calibration",
                         &c->id, err);
}

kvr_status kvr_db_calibrations_list(kvr_db *db, kvr_db_calibration **out, int64_t *n,
                                    kvr_error *err) {
    *out = NULL;
    *n = 0;
    if (db->version < 6) return KVR_OK;
    char sql[1536], cols[1200];
    db_cols_list(db_calib_cols, DB_CALIB_N, db->version, 0, NULL, cols, sizeof cols);
    snprintf(sql, sizeof sql, "SELECT %s FROM calibrations ORDER BY id", cols);
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db, sql, &s, err));
    return db_rows_collect(db, s, db_calib_cols, DB_CALIB_N, sizeof **out, "calibrations",
                           "list calibrations", (void **)out, n, err);
}

kvr_status kvr_db_calibration_latest(kvr_db *db, const kvr_db_calibration *key,
                                     kvr_db_calibration *out, kvr_error *err) {
    char msg[320];
    snprintf(msg, sizeof msg,
             "no calibration for %s on %d rank(s) x %d thread(s) over %s (model %lld, profile "
             "run %lld) in %s",
             key->strategy, key->n_ranks, key->n_threads, key->transport,
             (long long)key->model_id, (long long)key->profile_run_id, db->path);
    if (db->version < 6) return kvr_error_set(err, KVR_ERR_NOT_FOUND, "%s", msg);
    char sql[1800], cols[1200];
    db_cols_list(db_calib_cols, DB_CALIB_N, db->version, 0, NULL, cols, sizeof cols);
    snprintf(sql, sizeof sql,
             "SELECT %s FROM calibrations WHERE model_id IS ?1 AND profile_run_id IS ?2 AND "
             "strategy = ?3 AND n_ranks = ?4 AND n_threads = ?5 AND transport = ?6 "
             "ORDER BY id DESC LIMIT 1",
             cols);
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db, sql, &s, err));
    if (key->model_id > 0) sqlite3_bind_int64(s, 1, key->model_id);
    else sqlite3_bind_null(s, 1);
    if (key->profile_run_id > 0) sqlite3_bind_int64(s, 2, key->profile_run_id);
    else sqlite3_bind_null(s, 2);
    db_bind_text(s, 3, key->strategy);
    sqlite3_bind_int(s, 4, key->n_ranks);
    sqlite3_bind_int(s, 5, key->n_threads);
    db_bind_text(s, 6, key->transport);
    kvr_db_calibration *rows = NULL;
    int64_t n = 0;
    KVR_TRY(db_rows_collect(db, s, db_calib_cols, DB_CALIB_N, sizeof *rows, "calibrations",
                            "find calibration", (void **)&rows, &n, err));
    if (n == 0) {
        kvr_db_free(rows);
        return kvr_error_set(err, KVR_ERR_NOT_FOUND, "%s", msg);
    }
    *out = rows[0];
    kvr_db_free(rows);
    return KVR_OK;
}
