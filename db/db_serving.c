/* db_serving.c -- serving runs (schema v5): one replay of a request trace under one scheduling
 * policy, simulated (kvr-serve --simulate) or measured (the engine), with its scheduler
 * parameters, cost source or model, SLO targets and summary; one row per request; the KV pool's
 * occupancy over time. put writes a run and its rows in one transaction, the rows through one
 * prepared statement (10,000 requests in a few milliseconds), so a process killed mid-insert
 * leaves no part of the run behind. begin / requests_add / end (schema v7) store a run as it
 * goes: the header first (end_utc NULL), finished requests in small transactions, the summary
 * and end time last -- a killed run keeps what finished and stays visibly incomplete. Records
 * are column tables (db_cols.c). */
#include "db_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DB_SERVING_SINCE 5
#define DB_SERVING_END_SINCE 7 /* end_utc; runs stored as they go */

#define DB_SR(f, type) DB_COLF(kvr_db_serving_run, f, type, 0, DB_SERVING_SINCE)
static const db_col db_serving_run_cols[] = {
    DB_COLF(kvr_db_serving_run, id, DB_COL_INT64, DB_COL_F_ROWID, DB_SERVING_SINCE),
    DB_SR(kind, DB_COL_TEXT),
    DB_SR(trace, DB_COL_TEXT),
    DB_SR(trace_hash, DB_COL_TEXT),
    DB_SR(n_requests, DB_COL_INT64),
    DB_SR(trace_duration_s, DB_COL_OPT),
    DB_SR(rate_per_s, DB_COL_OPT),
    DB_SR(policy, DB_COL_TEXT),
    DB_SR(block_tokens, DB_COL_INT),
    DB_SR(pool_blocks, DB_COL_INT64),
    DB_SR(watermark, DB_COL_REAL),
    DB_SR(max_seqs, DB_COL_INT),
    DB_SR(max_batched_tokens, DB_COL_INT64),
    DB_SR(max_model_len, DB_COL_INT64),
    DB_SR(cost_source, DB_COL_TEXT),
    DB_SR(cost_kind, DB_COL_TEXT),
    DB_SR(decode_k_us, DB_COL_REAL),
    DB_SR(decode_per_seq_us, DB_COL_REAL),
    DB_SR(decode_per_ctx_token_us, DB_COL_REAL),
    DB_SR(model_id, DB_COL_ID),
    DB_SR(device_id, DB_COL_ID),
    DB_SR(backend, DB_COL_TEXT),
    DB_SR(slo_ttft_ms, DB_COL_REAL),
    DB_SR(slo_tpot_ms, DB_COL_REAL),
    DB_SR(n_finished, DB_COL_INT64),
    DB_SR(n_refused, DB_COL_INT64),
    DB_SR(n_preemptions, DB_COL_INT64),
    DB_SR(ttft_p50_ms, DB_COL_REAL),
    DB_SR(ttft_p90_ms, DB_COL_REAL),
    DB_SR(ttft_p99_ms, DB_COL_REAL),
    DB_SR(ttft_mean_ms, DB_COL_REAL),
    DB_SR(tpot_p50_ms, DB_COL_REAL),
    DB_SR(tpot_p90_ms, DB_COL_REAL),
    DB_SR(tpot_p99_ms, DB_COL_REAL),
    DB_SR(tpot_mean_ms, DB_COL_REAL),
    DB_SR(queue_p50_ms, DB_COL_REAL),
    DB_SR(queue_p90_ms, DB_COL_REAL),
    DB_SR(queue_p99_ms, DB_COL_REAL),
    DB_SR(queue_mean_ms, DB_COL_REAL),
    DB_SR(slo_attainment, DB_COL_REAL),
    DB_SR(output_tok_per_s, DB_COL_REAL),
    DB_SR(req_per_s, DB_COL_REAL),
    DB_SR(duration_s, DB_COL_REAL),
    DB_SR(iterations, DB_COL_INT64),
    DB_SR(peak_blocks, DB_COL_INT64),
    DB_SR(mean_blocks, DB_COL_REAL),
    DB_SR(busy_s, DB_COL_REAL),
    DB_SR(wall_s, DB_COL_REAL),
    DB_SR(kvr_version, DB_COL_TEXT),
    DB_SR(git_commit, DB_COL_TEXT),
    DB_SR(host, DB_COL_TEXT),
    DB_SR(ts_utc, DB_COL_TEXT),
    DB_SR(note, DB_COL_TEXT),
    DB_COLF(kvr_db_serving_run, end_utc, DB_COL_TEXT, 0, DB_SERVING_END_SINCE),
};
#define DB_SR_N DB_NCOLS(db_serving_run_cols)

#define DB_SQ(f, type) DB_COLF(kvr_db_serving_request, f, type, 0, DB_SERVING_SINCE)
static const db_col db_serving_req_cols[] = {
    DB_SQ(run_id, DB_COL_INT64),
    DB_SQ(idx, DB_COL_INT64),
    DB_SQ(arrival_s, DB_COL_REAL),
    DB_SQ(admitted_s, DB_COL_OPT),
    DB_SQ(first_token_s, DB_COL_OPT),
    DB_SQ(finish_s, DB_COL_OPT),
    DB_SQ(prompt_tokens, DB_COL_INT64),
    DB_SQ(output_tokens, DB_COL_INT64),
    DB_SQ(max_blocks, DB_COL_INT64),
    DB_SQ(preemptions, DB_COL_INT),
    DB_SQ(refused, DB_COL_BOOL),
};
#define DB_SQ_N DB_NCOLS(db_serving_req_cols)

#define DB_SO(f, type) DB_COLF(kvr_db_serving_occupancy, f, type, 0, DB_SERVING_SINCE)
static const db_col db_serving_occ_cols[] = {
    DB_SO(run_id, DB_COL_INT64),
    DB_SO(t_s, DB_COL_REAL),
    DB_SO(blocks_mean, DB_COL_REAL),
    DB_SO(blocks_max, DB_COL_INT64),
};
#define DB_SO_N DB_NCOLS(db_serving_occ_cols)

static kvr_status db_serving_need(kvr_db *db, kvr_error *err) {
    if (db->version >= DB_SERVING_SINCE) return KVR_OK;
    return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                         "%s: schema version %d has no serving runs (open it read-write to "
                         "upgrade)",
                         db->path, db->version);
}

static kvr_status db_serving_check(kvr_db *db, const kvr_db_serving_run *r,
                                   const kvr_db_serving_request *req, int64_t n_req,
                                   const kvr_db_serving_occupancy *occ, int64_t n_occ,
                                   kvr_error *err) {
    if (strcmp(r->kind, "simulated") != 0 && strcmp(r->kind, "measured") != 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "%s: serving run: kind '%s' (simulated or measured)", db->path,
                             r->kind);
    if (!r->policy[0])
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: serving run: empty policy", db->path);
    if (n_req < 0 || n_occ < 0 || (n_req && !req) || (n_occ && !occ) || r->n_requests < n_req)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "%s: serving run: %lld request rows for %lld requests", db->path,
                             (long long)n_req, (long long)r->n_requests);
    for (int64_t i = 0; i < n_req; i++)
        if (req[i].idx < 0 || req[i].idx >= r->n_requests)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "%s: serving run: request row %lld has index %lld, outside "
                                 "[0, %lld)",
                                 db->path, (long long)i, (long long)req[i].idx,
                                 (long long)r->n_requests);
    for (int64_t i = 0; i < n_occ; i++)
        if (!isfinite(occ[i].t_s) || (i > 0 && !(occ[i].t_s > occ[i - 1].t_s)))
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "%s: serving run: occupancy point %lld at %g s does not follow "
                                 "the one before",
                                 db->path, (long long)i, occ[i].t_s);
    return KVR_OK;
}

/* Insert n rows of a column table through one prepared statement, run_id set on a copy. */
static kvr_status db_serving_rows(kvr_db *db, const char *table, const db_col *c, int nc,
                                  const void *rows, size_t elem, int64_t n, int64_t run_id,
                                  const char *what, kvr_error *err) {
    if (n == 0) return KVR_OK;
    char sql[1024];
    db_cols_insert_sql("INSERT", table, c, nc, db->version, NULL, NULL, sql, sizeof sql);
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db, sql, &s, err));
    kvr_status st = KVR_OK;
    unsigned char tmp[sizeof(kvr_db_serving_request) > sizeof(kvr_db_serving_occupancy)
                          ? sizeof(kvr_db_serving_request)
                          : sizeof(kvr_db_serving_occupancy)];
    KVR_ASSERT(elem <= sizeof tmp);
    for (int64_t i = 0; i < n && st == KVR_OK; i++) {
        memcpy(tmp, (const char *)rows + (size_t)i * elem, elem);
        memcpy(tmp, &run_id, sizeof run_id); /* run_id is each row struct's first field */
        db_cols_bind(s, 1, c, nc, db->version, 0, tmp);
        st = db_step_done(db, s, what, err);
    }
    sqlite3_finalize(s);
    if (st != KVR_OK && err && strstr(err->msg, "UNIQUE"))
        st = kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: %s: two rows with one key", db->path,
                           what);
    return st;
}
_Static_assert(offsetof(kvr_db_serving_request, run_id) == 0, "run_id first");
_Static_assert(offsetof(kvr_db_serving_occupancy, run_id) == 0, "run_id first");

/* The header row: provenance filled, end_utc NULL until end (v7). The caller owns the tx. */
static kvr_status db_serving_insert_run(kvr_db *db, kvr_db_serving_run *x, kvr_error *err) {
    if (!x->kvr_version[0]) DB_COPY(x->kvr_version, kvr_version());
    if (!x->git_commit[0]) DB_COPY(x->git_commit, kvr_build_commit());
    if (!x->host[0] && gethostname(x->host, sizeof x->host) != 0) DB_COPY(x->host, "unknown");
    x->host[sizeof x->host - 1] = 0;
    if (!x->ts_utc[0]) db_now_utc(x->ts_utc, sizeof x->ts_utc);
    x->end_utc[0] = 0;
    KVR_TRY(db_row_insert(db, "serving_runs", db_serving_run_cols, DB_SR_N, x,
                          "insert serving run", &x->id, err));
    if (db->version < DB_SERVING_END_SINCE) return KVR_OK;
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db, "UPDATE serving_runs SET end_utc=NULL WHERE id=?1", &s, err));
    sqlite3_bind_int64(s, 1, x->id);
    const kvr_status st = db_step_done(db, s, "begin serving run", err);
    sqlite3_finalize(s);
    return st;
}

/* The summary over the header row, and the end time (v7). The caller owns the tx. */
static kvr_status db_serving_update_run(kvr_db *db, kvr_db_serving_run *x, kvr_error *err) {
    if (db->version >= DB_SERVING_END_SINCE) db_now_utc(x->end_utc, sizeof x->end_utc);
    char sql[2048];
    size_t len = (size_t)snprintf(sql, sizeof sql, "UPDATE serving_runs SET ");
    int k = 0;
    for (int i = 0; i < DB_SR_N; i++) {
        const db_col *c = &db_serving_run_cols[i];
        if (c->since > db->version || (c->flags & DB_COL_F_ROWID)) continue;
        len += (size_t)snprintf(sql + len, sizeof sql - len, "%s%s=?%d", k ? ", " : "", c->name,
                                k + 1);
        k++;
        KVR_ASSERT(len < sizeof sql);
    }
    snprintf(sql + len, sizeof sql - len, " WHERE id=?%d", k + 1);
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db, sql, &s, err));
    const int i = db_cols_bind(s, 1, db_serving_run_cols, DB_SR_N, db->version, 0, x);
    sqlite3_bind_int64(s, i, x->id);
    kvr_status st = db_step_done(db, s, "end serving run", err);
    sqlite3_finalize(s);
    return st;
}

/* n_requests covers index hi - 1 (requests stored as they finish: the server's count grows). */
static kvr_status db_serving_grow(kvr_db *db, int64_t run_id, int64_t hi, kvr_error *err) {
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db, "UPDATE serving_runs SET n_requests=max(n_requests, ?2) WHERE id=?1",
                       &s, err));
    sqlite3_bind_int64(s, 1, run_id);
    sqlite3_bind_int64(s, 2, hi);
    const kvr_status st = db_step_done(db, s, "update serving run", err);
    sqlite3_finalize(s);
    return st;
}

kvr_status kvr_db_serving_run_put(kvr_db *db, kvr_db_serving_run *run,
                                  const kvr_db_serving_request *req, int64_t n_req,
                                  const kvr_db_serving_occupancy *occ, int64_t n_occ,
                                  kvr_error *err) {
    KVR_TRY(db_serving_need(db, err));
    KVR_TRY(db_serving_check(db, run, req, n_req, occ, n_occ, err));
    bool own;
    KVR_TRY(db_tx_begin(db, &own, err));
    kvr_db_serving_run x = *run;
    kvr_status st = db_serving_insert_run(db, &x, err);
    if (st == KVR_OK)
        st = db_serving_rows(db, "serving_requests", db_serving_req_cols, DB_SQ_N, req,
                             sizeof *req, n_req, x.id, "insert serving request", err);
    if (st == KVR_OK)
        st = db_serving_rows(db, "serving_occupancy", db_serving_occ_cols, DB_SO_N, occ,
                             sizeof *occ, n_occ, x.id, "insert serving occupancy", err);
    if (st == KVR_OK) st = db_serving_update_run(db, &x, err);
    st = db_tx_end(db, own, st, err);
    if (st == KVR_OK) *run = x;
    return st;
}

kvr_status kvr_db_serving_run_begin(kvr_db *db, kvr_db_serving_run *run, kvr_error *err) {
    KVR_TRY(db_serving_need(db, err));
    KVR_TRY(db_serving_check(db, run, NULL, 0, NULL, 0, err));
    bool own;
    KVR_TRY(db_tx_begin(db, &own, err));
    kvr_db_serving_run x = *run;
    kvr_status st = db_serving_insert_run(db, &x, err);
    st = db_tx_end(db, own, st, err);
    if (st == KVR_OK) *run = x;
    return st;
}

kvr_status kvr_db_serving_requests_add(kvr_db *db, int64_t run_id,
                                       const kvr_db_serving_request *req, int64_t n,
                                       kvr_error *err) {
    KVR_TRY(db_serving_need(db, err));
    if (n < 0 || (n && !req))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: serving run %lld: %lld request rows",
                             db->path, (long long)run_id, (long long)n);
    if (n == 0) return KVR_OK;
    int64_t hi = 0;
    for (int64_t i = 0; i < n; i++) {
        if (req[i].idx < 0)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "%s: serving run %lld: request row %lld has index %lld",
                                 db->path, (long long)run_id, (long long)i, (long long)req[i].idx);
        hi = KVR_MAX(hi, req[i].idx + 1);
    }
    kvr_db_serving_run r;
    KVR_TRY(kvr_db_serving_run_get(db, run_id, &r, err));
    bool own;
    KVR_TRY(db_tx_begin(db, &own, err));
    kvr_status st = db_serving_rows(db, "serving_requests", db_serving_req_cols, DB_SQ_N, req,
                                    sizeof *req, n, run_id, "insert serving request", err);
    if (st == KVR_OK && hi > r.n_requests) st = db_serving_grow(db, run_id, hi, err);
    return db_tx_end(db, own, st, err);
}

kvr_status kvr_db_serving_run_end(kvr_db *db, kvr_db_serving_run *run,
                                  const kvr_db_serving_occupancy *occ, int64_t n_occ,
                                  kvr_error *err) {
    KVR_TRY(db_serving_need(db, err));
    kvr_db_serving_run cur;
    KVR_TRY(kvr_db_serving_run_get(db, run->id, &cur, err));
    if (cur.end_utc[0])
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: serving run %lld ended at %s",
                             db->path, (long long)run->id, cur.end_utc);
    kvr_db_serving_run x = *run;
    /* identity and provenance as begun; n_requests at least the rows stored */
    memcpy(x.kind, cur.kind, sizeof x.kind);
    memcpy(x.kvr_version, cur.kvr_version, sizeof x.kvr_version);
    memcpy(x.git_commit, cur.git_commit, sizeof x.git_commit);
    memcpy(x.host, cur.host, sizeof x.host);
    memcpy(x.ts_utc, cur.ts_utc, sizeof x.ts_utc);
    x.n_requests = KVR_MAX(x.n_requests, cur.n_requests);
    KVR_TRY(db_serving_check(db, &x, NULL, 0, occ, n_occ, err));
    bool own;
    KVR_TRY(db_tx_begin(db, &own, err));
    kvr_status st = db_serving_rows(db, "serving_occupancy", db_serving_occ_cols, DB_SO_N, occ,
                                    sizeof *occ, n_occ, x.id, "insert serving occupancy", err);
    if (st == KVR_OK) st = db_serving_update_run(db, &x, err);
    st = db_tx_end(db, own, st, err);
    if (st == KVR_OK) *run = x;
    return st;
}

kvr_status kvr_db_serving_runs_list(kvr_db *db, kvr_db_serving_run **out, int64_t *n,
                                    kvr_error *err) {
    *out = NULL;
    *n = 0;
    if (db->version < DB_SERVING_SINCE) return KVR_OK;
    char sql[2048], cols[1536];
    db_cols_list(db_serving_run_cols, DB_SR_N, db->version, 0, NULL, cols, sizeof cols);
    snprintf(sql, sizeof sql, "SELECT %s FROM serving_runs ORDER BY id", cols);
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db, sql, &s, err));
    return db_rows_collect(db, s, db_serving_run_cols, DB_SR_N, sizeof **out, "serving runs",
                           "list serving runs", (void **)out, n, err);
}

kvr_status kvr_db_serving_run_get(kvr_db *db, int64_t id, kvr_db_serving_run *out,
                                  kvr_error *err) {
    if (db->version < DB_SERVING_SINCE)
        return kvr_error_set(err, KVR_ERR_NOT_FOUND, "serving run %lld not found in %s",
                             (long long)id, db->path);
    return db_row_get(db, -1, "serving_runs", db_serving_run_cols, DB_SR_N, sizeof *out, id,
                      "serving run", out, err);
}

static kvr_status db_serving_rows_get(kvr_db *db, int64_t run_id, const char *table,
                                      const char *order, const db_col *c, int nc, size_t elem,
                                      const char *noun, void **out, int64_t *n, kvr_error *err) {
    *out = NULL;
    *n = 0;
    kvr_db_serving_run r;
    KVR_TRY(kvr_db_serving_run_get(db, run_id, &r, err));
    char sql[1024], cols[512], what[64];
    db_cols_list(c, nc, db->version, 0, NULL, cols, sizeof cols);
    snprintf(sql, sizeof sql, "SELECT %s FROM %s WHERE run_id=?1 ORDER BY %s", cols, table, order);
    snprintf(what, sizeof what, "read %s", noun);
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db, sql, &s, err));
    sqlite3_bind_int64(s, 1, run_id);
    return db_rows_collect(db, s, c, nc, elem, noun, what, out, n, err);
}

kvr_status kvr_db_serving_requests_get(kvr_db *db, int64_t run_id, kvr_db_serving_request **out,
                                       int64_t *n, kvr_error *err) {
    return db_serving_rows_get(db, run_id, "serving_requests", "idx", db_serving_req_cols,
                               DB_SQ_N, sizeof **out, "serving requests", (void **)out, n, err);
}

kvr_status kvr_db_serving_occupancy_get(kvr_db *db, int64_t run_id,
                                        kvr_db_serving_occupancy **out, int64_t *n,
                                        kvr_error *err) {
    return db_serving_rows_get(db, run_id, "serving_occupancy", "t_s", db_serving_occ_cols,
                               DB_SO_N, sizeof **out, "serving occupancy", (void **)out, n, err);
}

kvr_status kvr_db_serving_run_delete(kvr_db *db, int64_t id, kvr_error *err) {
    kvr_db_serving_run r;
    KVR_TRY(kvr_db_serving_run_get(db, id, &r, err));
    bool own;
    KVR_TRY(db_tx_begin(db, &own, err));
    sqlite3_stmt *s = NULL;
    kvr_status st = db_prepare(db, "DELETE FROM serving_runs WHERE id=?1", &s, err);
    if (st == KVR_OK) {
        sqlite3_bind_int64(s, 1, id);
        st = db_step_done(db, s, "delete serving run", err);
        sqlite3_finalize(s);
    }
    return db_tx_end(db, own, st, err);
}
