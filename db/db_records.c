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

static kvr_run_status db_run_status_parse(const char *s) {
    for (int i = 0; i < KVR_RUN_STATUS_COUNT; i++)
        if (strcmp(s, kvr_run_status_names[i]) == 0) return (kvr_run_status)i;
    return KVR_RUN_FAILED;
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
// devices

kvr_status kvr_db_device_put(kvr_db *db, const kvr_db_device *d, int64_t *id, kvr_error *err) {
    bool own;
    KVR_TRY(db_tx_begin(db, &own, err));
    sqlite3_stmt *s = NULL;
    kvr_status st = db_prepare(db,
                               "INSERT INTO devices(kind, name, host, n_cores, n_sms, clock_mhz, "
                               "mem_bytes, driver_version, cuda_version, nccl_version, blas, "
                               "mpi_version) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12) "
                               "ON CONFLICT DO NOTHING",
                               &s, err);
    if (st == KVR_OK) {
        db_bind_text(s, 1, d->kind);
        db_bind_text(s, 2, d->name);
        db_bind_text(s, 3, d->host);
        sqlite3_bind_int(s, 4, d->n_cores);
        sqlite3_bind_int(s, 5, d->n_sms);
        db_bind_real(s, 6, d->clock_mhz);
        sqlite3_bind_int64(s, 7, d->mem_bytes);
        db_bind_text(s, 8, d->driver_version);
        db_bind_text(s, 9, d->cuda_version);
        db_bind_text(s, 10, d->nccl_version);
        db_bind_text(s, 11, d->blas);
        db_bind_text(s, 12, d->mpi_version);
        st = db_step_done(db, s, "insert device", err);
        sqlite3_finalize(s);
    }
    if (st == KVR_OK)
        st = db_prepare(db,
                        "SELECT id FROM devices WHERE kind=?1 AND name=?2 AND host=?3 AND "
                        "n_cores=?4 AND n_sms=?5 AND mem_bytes=?6 AND driver_version=?7 AND "
                        "cuda_version=?8 AND nccl_version=?9 AND blas=?10 AND mpi_version=?11",
                        &s, err);
    if (st == KVR_OK) {
        db_bind_text(s, 1, d->kind);
        db_bind_text(s, 2, d->name);
        db_bind_text(s, 3, d->host);
        sqlite3_bind_int(s, 4, d->n_cores);
        sqlite3_bind_int(s, 5, d->n_sms);
        sqlite3_bind_int64(s, 6, d->mem_bytes);
        db_bind_text(s, 7, d->driver_version);
        db_bind_text(s, 8, d->cuda_version);
        db_bind_text(s, 9, d->nccl_version);
        db_bind_text(s, 10, d->blas);
        db_bind_text(s, 11, d->mpi_version);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
            *id = sqlite3_column_int64(s, 0);
        else
            st = DB_ERR(db, rc == SQLITE_DONE ? SQLITE_INTERNAL : rc, "find device", err);
        sqlite3_finalize(s);
    }
    return db_tx_end(db, own, st, err);
}

kvr_status kvr_db_device_get(kvr_db *db, int64_t id, kvr_db_device *out, kvr_error *err) {
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db,
                       "SELECT id, kind, name, host, n_cores, n_sms, clock_mhz, mem_bytes, "
                       "driver_version, cuda_version, nccl_version, blas, mpi_version FROM devices "
                       "WHERE id=?1",
                       &s, err));
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    kvr_status st = KVR_OK;
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        out->id = sqlite3_column_int64(s, 0);
        db_col_text(s, 1, out->kind, sizeof out->kind);
        db_col_text(s, 2, out->name, sizeof out->name);
        db_col_text(s, 3, out->host, sizeof out->host);
        out->n_cores = sqlite3_column_int(s, 4);
        out->n_sms = sqlite3_column_int(s, 5);
        out->clock_mhz = db_col_real(s, 6);
        out->mem_bytes = sqlite3_column_int64(s, 7);
        db_col_text(s, 8, out->driver_version, sizeof out->driver_version);
        db_col_text(s, 9, out->cuda_version, sizeof out->cuda_version);
        db_col_text(s, 10, out->nccl_version, sizeof out->nccl_version);
        db_col_text(s, 11, out->blas, sizeof out->blas);
        db_col_text(s, 12, out->mpi_version, sizeof out->mpi_version);
    } else if (rc == SQLITE_DONE) {
        st = kvr_error_set(err, KVR_ERR_NOT_FOUND, "device %lld not found in %s", (long long)id,
                           db->path);
    } else {
        st = DB_ERR(db, rc, "read device", err);
    }
    sqlite3_finalize(s);
    return st;
}

// ----------------------------------------------------------------------------
// models

kvr_status kvr_db_model_put(kvr_db *db, const kvr_db_model *m, int64_t *id, kvr_error *err) {
    bool own;
    KVR_TRY(db_tx_begin(db, &own, err));
    sqlite3_stmt *s = NULL;
    kvr_status st = db_prepare(db,
                               "INSERT INTO models(name, arch, source, n_layers, d_model, n_heads, "
                               "n_kv_heads, head_dim, d_ff, vocab_size, max_context, rope_theta, "
                               "tied_embeddings, kv_bytes_per_token, content_hash) "
                               "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15) "
                               "ON CONFLICT DO NOTHING",
                               &s, err);
    if (st == KVR_OK) {
        db_bind_text(s, 1, m->name);
        db_bind_text(s, 2, m->arch);
        db_bind_text(s, 3, m->source);
        sqlite3_bind_int(s, 4, m->n_layers);
        sqlite3_bind_int(s, 5, m->d_model);
        sqlite3_bind_int(s, 6, m->n_heads);
        sqlite3_bind_int(s, 7, m->n_kv_heads);
        sqlite3_bind_int(s, 8, m->head_dim);
        sqlite3_bind_int(s, 9, m->d_ff);
        sqlite3_bind_int(s, 10, m->vocab_size);
        sqlite3_bind_int(s, 11, m->max_context);
        db_bind_real(s, 12, m->rope_theta);
        sqlite3_bind_int(s, 13, m->tied_embeddings ? 1 : 0);
        sqlite3_bind_int64(s, 14, m->kv_bytes_per_token);
        db_bind_text(s, 15, m->content_hash);
        st = db_step_done(db, s, "insert model", err);
        sqlite3_finalize(s);
    }
    if (st == KVR_OK)
        st = db_prepare(db,
                        "SELECT id FROM models WHERE content_hash=?1 AND name=?2 AND n_layers=?3 "
                        "AND d_model=?4 AND n_heads=?5 AND n_kv_heads=?6 AND head_dim=?7 AND "
                        "d_ff=?8 AND vocab_size=?9 AND kv_bytes_per_token=?10",
                        &s, err);
    if (st == KVR_OK) {
        db_bind_text(s, 1, m->content_hash);
        db_bind_text(s, 2, m->name);
        sqlite3_bind_int(s, 3, m->n_layers);
        sqlite3_bind_int(s, 4, m->d_model);
        sqlite3_bind_int(s, 5, m->n_heads);
        sqlite3_bind_int(s, 6, m->n_kv_heads);
        sqlite3_bind_int(s, 7, m->head_dim);
        sqlite3_bind_int(s, 8, m->d_ff);
        sqlite3_bind_int(s, 9, m->vocab_size);
        sqlite3_bind_int64(s, 10, m->kv_bytes_per_token);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
            *id = sqlite3_column_int64(s, 0);
        else
            st = DB_ERR(db, rc == SQLITE_DONE ? SQLITE_INTERNAL : rc, "find model", err);
        sqlite3_finalize(s);
    }
    return db_tx_end(db, own, st, err);
}

kvr_status kvr_db_model_get(kvr_db *db, int64_t id, kvr_db_model *out, kvr_error *err) {
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db,
                       "SELECT id, name, arch, source, n_layers, d_model, n_heads, n_kv_heads, "
                       "head_dim, d_ff, vocab_size, max_context, rope_theta, tied_embeddings, "
                       "kv_bytes_per_token, content_hash FROM models WHERE id=?1",
                       &s, err));
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    kvr_status st = KVR_OK;
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        out->id = sqlite3_column_int64(s, 0);
        db_col_text(s, 1, out->name, sizeof out->name);
        db_col_text(s, 2, out->arch, sizeof out->arch);
        db_col_text(s, 3, out->source, sizeof out->source);
        out->n_layers = sqlite3_column_int(s, 4);
        out->d_model = sqlite3_column_int(s, 5);
        out->n_heads = sqlite3_column_int(s, 6);
        out->n_kv_heads = sqlite3_column_int(s, 7);
        out->head_dim = sqlite3_column_int(s, 8);
        out->d_ff = sqlite3_column_int(s, 9);
        out->vocab_size = sqlite3_column_int(s, 10);
        out->max_context = sqlite3_column_int(s, 11);
        out->rope_theta = db_col_real(s, 12);
        out->tied_embeddings = sqlite3_column_int(s, 13) != 0;
        out->kv_bytes_per_token = sqlite3_column_int64(s, 14);
        db_col_text(s, 15, out->content_hash, sizeof out->content_hash);
    } else if (rc == SQLITE_DONE) {
        st = kvr_error_set(err, KVR_ERR_NOT_FOUND, "model %lld not found in %s", (long long)id,
                           db->path);
    } else {
        st = DB_ERR(db, rc, "read model", err);
    }
    sqlite3_finalize(s);
    return st;
}

// ----------------------------------------------------------------------------
// runs

#define DB_RUN_COLS                                                                                \
    "kind, status, device_id, model_id, backend, dtype, transport, n_threads, n_ranks, "          \
    "kvr_version, git_commit, build_type, host, device_name, blas, mpi_version, cuda_version, "   \
    "nccl_version, ts_utc, ts_end_utc, n_warmup, n_iters_min, n_iters_max, time_budget_s, "       \
    "rel_tol, timer_overhead_us, grid, ops, params, source, pid, pid_start, note"

static void db_run_bind(sqlite3_stmt *s, const kvr_db_run *r) {
    db_bind_text(s, 1, r->kind);
    db_bind_text(s, 2, kvr_run_status_name(r->status));
    db_bind_id(s, 3, r->device_id);
    db_bind_id(s, 4, r->model_id);
    db_bind_text(s, 5, r->backend);
    db_bind_text(s, 6, r->dtype);
    db_bind_text(s, 7, r->transport);
    sqlite3_bind_int(s, 8, r->n_threads);
    sqlite3_bind_int(s, 9, r->n_ranks);
    db_bind_text(s, 10, r->kvr_version);
    db_bind_text(s, 11, r->git_commit);
    db_bind_text(s, 12, r->build_type);
    db_bind_text(s, 13, r->host);
    db_bind_text(s, 14, r->device_name);
    db_bind_text(s, 15, r->blas);
    db_bind_text(s, 16, r->mpi_version);
    db_bind_text(s, 17, r->cuda_version);
    db_bind_text(s, 18, r->nccl_version);
    db_bind_text(s, 19, r->ts_utc);
    db_bind_text(s, 20, r->ts_end_utc);
    sqlite3_bind_int(s, 21, r->n_warmup);
    sqlite3_bind_int(s, 22, r->n_iters_min);
    sqlite3_bind_int(s, 23, r->n_iters_max);
    db_bind_real(s, 24, r->time_budget_s);
    db_bind_real(s, 25, r->rel_tol);
    db_bind_real(s, 26, r->timer_overhead_us);
    db_bind_text(s, 27, r->grid);
    db_bind_text(s, 28, r->ops);
    db_bind_text(s, 29, r->params);
    db_bind_text(s, 30, r->source);
    sqlite3_bind_int64(s, 31, r->pid);
    sqlite3_bind_int64(s, 32, r->pid_start);
    db_bind_text(s, 33, r->note);
}

/* Columns: id, then DB_RUN_COLS. */
static void db_run_read(sqlite3_stmt *s, kvr_db_run *r) {
    char status[16];
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(s, 0);
    db_col_text(s, 1, r->kind, sizeof r->kind);
    db_col_text(s, 2, status, sizeof status);
    r->status = db_run_status_parse(status);
    r->device_id = sqlite3_column_int64(s, 3);
    r->model_id = sqlite3_column_int64(s, 4);
    db_col_text(s, 5, r->backend, sizeof r->backend);
    db_col_text(s, 6, r->dtype, sizeof r->dtype);
    db_col_text(s, 7, r->transport, sizeof r->transport);
    r->n_threads = sqlite3_column_int(s, 8);
    r->n_ranks = sqlite3_column_int(s, 9);
    db_col_text(s, 10, r->kvr_version, sizeof r->kvr_version);
    db_col_text(s, 11, r->git_commit, sizeof r->git_commit);
    db_col_text(s, 12, r->build_type, sizeof r->build_type);
    db_col_text(s, 13, r->host, sizeof r->host);
    db_col_text(s, 14, r->device_name, sizeof r->device_name);
    db_col_text(s, 15, r->blas, sizeof r->blas);
    db_col_text(s, 16, r->mpi_version, sizeof r->mpi_version);
    db_col_text(s, 17, r->cuda_version, sizeof r->cuda_version);
    db_col_text(s, 18, r->nccl_version, sizeof r->nccl_version);
    db_col_text(s, 19, r->ts_utc, sizeof r->ts_utc);
    db_col_text(s, 20, r->ts_end_utc, sizeof r->ts_end_utc);
    r->n_warmup = sqlite3_column_int(s, 21);
    r->n_iters_min = sqlite3_column_int(s, 22);
    r->n_iters_max = sqlite3_column_int(s, 23);
    r->time_budget_s = db_col_real(s, 24);
    r->rel_tol = db_col_real(s, 25);
    r->timer_overhead_us = db_col_real(s, 26);
    db_col_text(s, 27, r->grid, sizeof r->grid);
    db_col_text(s, 28, r->ops, sizeof r->ops);
    db_col_text(s, 29, r->params, sizeof r->params);
    db_col_text(s, 30, r->source, sizeof r->source);
    r->pid = sqlite3_column_int64(s, 31);
    r->pid_start = sqlite3_column_int64(s, 32);
    db_col_text(s, 33, r->note, sizeof r->note);
}

kvr_status kvr_db_run_insert(kvr_db *db, kvr_db_run *run, kvr_error *err) {
    bool own;
    KVR_TRY(db_tx_begin(db, &own, err));
    sqlite3_stmt *s = NULL;
    kvr_status st = db_prepare(db,
                               "INSERT INTO runs(" DB_RUN_COLS ") VALUES(?1,?2,?3,?4,?5,?6,?7,?8,"
                               "?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,"
                               "?25,?26,?27,?28,?29,?30,?31,?32,?33)",
                               &s, err);
    if (st == KVR_OK) {
        db_run_bind(s, run);
        st = db_step_done(db, s, "insert run", err);
        if (st == KVR_OK) run->id = sqlite3_last_insert_rowid(db->h);
        sqlite3_finalize(s);
    }
    return db_tx_end(db, own, st, err);
}

kvr_status kvr_db_run_get(kvr_db *db, int64_t id, kvr_db_run *out, kvr_error *err) {
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_stmt(db, DB_STMT_RUN_GET, "SELECT id, " DB_RUN_COLS " FROM runs WHERE id=?1", &s,
                    err));
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    kvr_status st = KVR_OK;
    if (rc == SQLITE_ROW)
        db_run_read(s, out);
    else if (rc == SQLITE_DONE)
        st = kvr_error_set(err, KVR_ERR_NOT_FOUND, "run %lld not found in %s", (long long)id,
                           db->path);
    else
        st = DB_ERR(db, rc, "read run", err);
    sqlite3_reset(s);
    return st;
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
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db, "SELECT id, " DB_RUN_COLS " FROM runs ORDER BY id", &s, err));
    kvr_db_run *a = NULL;
    int64_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        kvr_db_run *g = db_grow(a, cnt, &cap, sizeof *a);
        if (!g) {
            free(a);
            sqlite3_finalize(s);
            return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory listing runs", db->path);
        }
        a = g;
        db_run_read(s, &a[cnt++]);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        free(a);
        return DB_ERR(db, rc, "list runs", err);
    }
    *out = a;
    *n = cnt;
    return KVR_OK;
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

#define DB_STATS_COLS "n_warmup, n_iters, min_us, p10_us, median_us, p90_us, mean_us, stddev_us, max_us, is_stable"

static void db_stats_bind(sqlite3_stmt *s, int i0, const kvr_timing_stats *t) {
    sqlite3_bind_int(s, i0 + 0, t->n_warmup);
    sqlite3_bind_int(s, i0 + 1, t->n_iters);
    db_bind_real(s, i0 + 2, t->min_us);
    db_bind_real(s, i0 + 3, t->p10_us);
    db_bind_real(s, i0 + 4, t->median_us);
    db_bind_real(s, i0 + 5, t->p90_us);
    db_bind_real(s, i0 + 6, t->mean_us);
    db_bind_real(s, i0 + 7, t->stddev_us);
    db_bind_real(s, i0 + 8, t->max_us);
    sqlite3_bind_int(s, i0 + 9, t->is_stable ? 1 : 0);
}

static void db_stats_read(sqlite3_stmt *s, int i0, kvr_timing_stats *t) {
    t->n_warmup = sqlite3_column_int(s, i0 + 0);
    t->n_iters = sqlite3_column_int(s, i0 + 1);
    t->min_us = db_col_real(s, i0 + 2);
    t->p10_us = db_col_real(s, i0 + 3);
    t->median_us = db_col_real(s, i0 + 4);
    t->p90_us = db_col_real(s, i0 + 5);
    t->mean_us = db_col_real(s, i0 + 6);
    t->stddev_us = db_col_real(s, i0 + 7);
    t->max_us = db_col_real(s, i0 + 8);
    t->is_stable = sqlite3_column_int(s, i0 + 9) != 0;
}

static kvr_status db_layer_put1(kvr_db *db, const kvr_db_layer_sample *x, kvr_error *err) {
    if (!isfinite(x->stats.median_us))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: layer sample %s c=%lld: no median",
                             db->path, x->op, (long long)x->c);
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_stmt(db, DB_STMT_LAYER_PUT,
                    "INSERT OR REPLACE INTO layer_samples(run_id, op, c, prefix, " DB_STATS_COLS
                    ", ts_utc) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)",
                    &s, err));
    char now[32];
    db_now_utc(now, sizeof now);
    sqlite3_bind_int64(s, 1, x->run_id);
    db_bind_text(s, 2, x->op);
    sqlite3_bind_int64(s, 3, x->c);
    sqlite3_bind_int64(s, 4, x->prefix);
    db_stats_bind(s, 5, &x->stats);
    db_bind_text(s, 15, now);
    return db_step_done(db, s, "insert layer sample", err);
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
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db,
                       "SELECT run_id, op, c, prefix, " DB_STATS_COLS " FROM layer_samples "
                       "WHERE run_id=?1 ORDER BY CASE op WHEN 'embed' THEN 0 WHEN 'pre' THEN 1 "
                       "WHEN 'attn' THEN 2 WHEN 'post' THEN 3 WHEN 'head' THEN 4 ELSE 5 END, op, "
                       "c, prefix",
                       &s, err));
    sqlite3_bind_int64(s, 1, run_id);
    kvr_db_layer_sample *a = NULL;
    int64_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        kvr_db_layer_sample *g = db_grow(a, cnt, &cap, sizeof *a);
        if (!g) {
            free(a);
            sqlite3_finalize(s);
            return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory reading samples", db->path);
        }
        a = g;
        kvr_db_layer_sample *x = &a[cnt++];
        memset(x, 0, sizeof *x);
        x->run_id = sqlite3_column_int64(s, 0);
        db_col_text(s, 1, x->op, sizeof x->op);
        x->c = sqlite3_column_int64(s, 2);
        x->prefix = sqlite3_column_int64(s, 3);
        db_stats_read(s, 4, &x->stats);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        free(a);
        return DB_ERR(db, rc, "read layer samples", err);
    }
    *out = a;
    *n = cnt;
    return KVR_OK;
}

static kvr_status db_transfer_put1(kvr_db *db, const kvr_db_transfer_sample *x, kvr_error *err) {
    if (!isfinite(x->stats.median_us))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: transfer sample %s: no median",
                             db->path, x->pattern);
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_stmt(db, DB_STMT_TRANSFER_PUT,
                    "INSERT OR REPLACE INTO transfer_samples(run_id, pattern, src, dst, n_ranks, "
                    "size_bytes, " DB_STATS_COLS ", algbw_gbps, busbw_gbps, busbw_factor, ts_utc) "
                    "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,"
                    "?20)",
                    &s, err));
    char now[32];
    db_now_utc(now, sizeof now);
    sqlite3_bind_int64(s, 1, x->run_id);
    db_bind_text(s, 2, x->pattern);
    sqlite3_bind_int(s, 3, x->src);
    sqlite3_bind_int(s, 4, x->dst);
    sqlite3_bind_int(s, 5, x->n_ranks);
    sqlite3_bind_int64(s, 6, x->size_bytes);
    db_stats_bind(s, 7, &x->stats);
    db_bind_real(s, 17, x->algbw_gbps);
    db_bind_real(s, 18, x->busbw_gbps);
    db_bind_real(s, 19, x->busbw_factor);
    db_bind_text(s, 20, now);
    return db_step_done(db, s, "insert transfer sample", err);
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
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db,
                       "SELECT run_id, pattern, src, dst, n_ranks, size_bytes, " DB_STATS_COLS
                       ", algbw_gbps, busbw_gbps, busbw_factor FROM transfer_samples WHERE "
                       "run_id=?1 ORDER BY pattern, n_ranks, src, dst, size_bytes",
                       &s, err));
    sqlite3_bind_int64(s, 1, run_id);
    kvr_db_transfer_sample *a = NULL;
    int64_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        kvr_db_transfer_sample *g = db_grow(a, cnt, &cap, sizeof *a);
        if (!g) {
            free(a);
            sqlite3_finalize(s);
            return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory reading samples", db->path);
        }
        a = g;
        kvr_db_transfer_sample *x = &a[cnt++];
        memset(x, 0, sizeof *x);
        x->run_id = sqlite3_column_int64(s, 0);
        db_col_text(s, 1, x->pattern, sizeof x->pattern);
        x->src = sqlite3_column_int(s, 2);
        x->dst = sqlite3_column_int(s, 3);
        x->n_ranks = sqlite3_column_int(s, 4);
        x->size_bytes = sqlite3_column_int64(s, 5);
        db_stats_read(s, 6, &x->stats);
        x->algbw_gbps = db_col_real(s, 16);
        x->busbw_gbps = db_col_real(s, 17);
        x->busbw_factor = db_col_real(s, 18);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        free(a);
        return DB_ERR(db, rc, "read transfer samples", err);
    }
    *out = a;
    *n = cnt;
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// measured runs

kvr_status kvr_db_measured_run_put(kvr_db *db, kvr_db_measured_run *r, kvr_error *err) {
    if (db->version < 2)
        return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                             "%s: schema version %d has no measured runs (open it read-write to "
                             "upgrade)", db->path, db->version);
    bool own;
    KVR_TRY(db_tx_begin(db, &own, err));
    sqlite3_stmt *s = NULL;
    /* a v2 file opened read-write was upgraded on open; only a v2 file cannot be written */
    kvr_status st = db_prepare(db,
                               "INSERT INTO measured_runs(ts_utc, model_id, device_id, "
                               "profile_run_id, mode, n_ranks, n_threads, n_tokens, partition, "
                               "transport, ttft_ms, predicted_ttft_ms, kvr_version, git_commit, "
                               "host, note, partition_source, predictor_id, drift) "
                               "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,"
                               "?17,?18,?19)",
                               &s, err);
    if (st == KVR_OK) {
        if (!r->ts_utc[0]) db_now_utc(r->ts_utc, sizeof r->ts_utc);
        db_bind_text(s, 1, r->ts_utc);
        db_bind_id(s, 2, r->model_id);
        db_bind_id(s, 3, r->device_id);
        db_bind_id(s, 4, r->profile_run_id);
        db_bind_text(s, 5, r->mode);
        sqlite3_bind_int(s, 6, r->n_ranks);
        sqlite3_bind_int(s, 7, r->n_threads);
        sqlite3_bind_int64(s, 8, r->n_tokens);
        db_bind_text(s, 9, r->partition);
        db_bind_text(s, 10, r->transport);
        db_bind_real(s, 11, r->ttft_ms);
        db_bind_real(s, 12, r->predicted_ttft_ms >= 0 ? r->predicted_ttft_ms : NAN);
        db_bind_text(s, 13, r->kvr_version[0] ? r->kvr_version : kvr_version());
        db_bind_text(s, 14, r->git_commit[0] ? r->git_commit : kvr_build_commit());
        db_bind_text(s, 15, r->host);
        db_bind_text(s, 16, r->note);
        db_bind_text(s, 17, r->partition_source);
        db_bind_id(s, 18, r->predictor_id);
        sqlite3_bind_int(s, 19, r->drift ? 1 : 0);
        st = db_step_done(db, s, "insert measured run", err);
        if (st == KVR_OK) r->id = sqlite3_last_insert_rowid(db->h);
        sqlite3_finalize(s);
    }
    return db_tx_end(db, own, st, err);
}

kvr_status kvr_db_measured_runs_list(kvr_db *db, kvr_db_measured_run **out, int64_t *n,
                                     kvr_error *err) {
    *out = NULL;
    *n = 0;
    if (db->version < 2) return KVR_OK;
    sqlite3_stmt *s = NULL;
    const bool v3 = db->version >= 3; /* a v2 file opened read-only lacks the v3 columns */
    KVR_TRY(db_prepare(db,
                       v3 ? "SELECT id, ts_utc, model_id, device_id, profile_run_id, mode, "
                            "n_ranks, n_threads, n_tokens, partition, transport, ttft_ms, "
                            "predicted_ttft_ms, kvr_version, git_commit, host, note, "
                            "partition_source, predictor_id, drift FROM measured_runs ORDER BY id"
                          : "SELECT id, ts_utc, model_id, device_id, profile_run_id, mode, "
                            "n_ranks, n_threads, n_tokens, partition, transport, ttft_ms, "
                            "predicted_ttft_ms, kvr_version, git_commit, host, note "
                            "FROM measured_runs ORDER BY id",
                       &s, err));
    kvr_db_measured_run *a = NULL;
    int64_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        kvr_db_measured_run *g = db_grow(a, cnt, &cap, sizeof *a);
        if (!g) {
            free(a);
            sqlite3_finalize(s);
            return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", db->path);
        }
        a = g;
        kvr_db_measured_run *x = &a[cnt++];
        memset(x, 0, sizeof *x);
        x->id = sqlite3_column_int64(s, 0);
        db_col_text(s, 1, x->ts_utc, sizeof x->ts_utc);
        x->model_id = sqlite3_column_int64(s, 2);
        x->device_id = sqlite3_column_int64(s, 3);
        x->profile_run_id = sqlite3_column_int64(s, 4);
        db_col_text(s, 5, x->mode, sizeof x->mode);
        x->n_ranks = sqlite3_column_int(s, 6);
        x->n_threads = sqlite3_column_int(s, 7);
        x->n_tokens = sqlite3_column_int64(s, 8);
        db_col_text(s, 9, x->partition, sizeof x->partition);
        db_col_text(s, 10, x->transport, sizeof x->transport);
        x->ttft_ms = db_col_real(s, 11);
        double p = db_col_real(s, 12);
        x->predicted_ttft_ms = isfinite(p) ? p : -1;
        db_col_text(s, 13, x->kvr_version, sizeof x->kvr_version);
        db_col_text(s, 14, x->git_commit, sizeof x->git_commit);
        db_col_text(s, 15, x->host, sizeof x->host);
        db_col_text(s, 16, x->note, sizeof x->note);
        if (v3) {
            db_col_text(s, 17, x->partition_source, sizeof x->partition_source);
            x->predictor_id = sqlite3_column_int64(s, 18);
            x->drift = sqlite3_column_int(s, 19) != 0;
        }
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        free(a);
        return DB_ERR(db, rc, "list measured runs", err);
    }
    *out = a;
    *n = cnt;
    return KVR_OK;
}
