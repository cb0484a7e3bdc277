/* db_results.c -- what the later stages store (schema v3): fitted cost-model terms (kvr-fit),
 * KVR-S partition tables with their rows (kvr-search) and KVR-P predictors (kvr-fit --kvrp).
 * Each record carries its producer's self-describing JSON (owned text in the C structs, freed
 * by the matching _free) plus the columns needed to find it. Each record's SQL is its column
 * table (db_cols.c); every write runs in a BEGIN IMMEDIATE transaction (joining the caller's). */
#include "db_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static kvr_status db_res_need_v3(kvr_db *db, const char *what, kvr_error *err) {
    if (db->version >= 3) return KVR_OK;
    return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                         "%s: schema version %d has no %s (open it read-write to upgrade)",
                         db->path, db->version, what);
}

/* Fill empty provenance with now and this build. */
static void db_res_provenance(char *ts, size_t ts_len, char *ver, size_t ver_len, char *commit,
                              size_t commit_len) {
    if (!ts[0]) db_now_utc(ts, ts_len);
    if (!ver[0]) db_copy(ver, ver_len, kvr_version());
    if (!commit[0]) db_copy(commit, commit_len, kvr_build_commit());
}
#define DB_RES_PROVENANCE(x)                                                                       \
    db_res_provenance((x)->ts_utc, sizeof (x)->ts_utc, (x)->kvr_version,                           \
                      sizeof (x)->kvr_version, (x)->git_commit, sizeof (x)->git_commit)

/* SELECT COLS FROM table [alias] REST with the columns of cols, each prefixed (alias "p."). */
static kvr_status db_res_select(kvr_db *db, const db_col *c, int n, const char *prefix,
                                const char *from_rest, sqlite3_stmt **s, kvr_error *err) {
    char sql[2048], cols[1024];
    db_cols_list(c, n, db->version, 0, prefix, cols, sizeof cols);
    snprintf(sql, sizeof sql, "SELECT %s FROM %s", cols, from_rest);
    return db_prepare(db, sql, s, err);
}

#define DB_PROVENANCE_COLS(T)                                                                      \
    DB_COL(T, ts_utc, DB_COL_TEXT), DB_COL(T, kvr_version, DB_COL_TEXT),                           \
        DB_COL(T, git_commit, DB_COL_TEXT)

// ----------------------------------------------------------------------------
// fits

static const db_col db_fit_cols[] = {
    DB_COLF(kvr_db_fit, id, DB_COL_INT64, DB_COL_F_ROWID, 1),
    DB_COL(kvr_db_fit, run_id, DB_COL_ID),
    DB_COL(kvr_db_fit, target, DB_COL_TEXT),
    DB_COL(kvr_db_fit, form, DB_COL_TEXT),
    DB_COL(kvr_db_fit, n_samples, DB_COL_INT64),
    DB_COL(kvr_db_fit, r2, DB_COL_REAL_NEG1), /* r2 may be negative: stored as given */
    DB_COL(kvr_db_fit, mape_in, DB_COL_OPT),
    DB_COL(kvr_db_fit, mape_cv, DB_COL_OPT),
    DB_COL(kvr_db_fit, max_err_cv, DB_COL_OPT),
    DB_COL(kvr_db_fit, json, DB_COL_OWNED_TEXT),
    DB_PROVENANCE_COLS(kvr_db_fit),
};
#define DB_FIT_N DB_NCOLS(db_fit_cols)

kvr_status kvr_db_fit_put(kvr_db *db, kvr_db_fit *f, kvr_error *err) {
    KVR_TRY(db_res_need_v3(db, "fits", err));
    if (!f->target[0] || !f->form[0])
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: fit: empty target or form", db->path);
    bool own;
    KVR_TRY(db_tx_begin(db, &own, err));
    DB_RES_PROVENANCE(f);
    kvr_status st = db_row_insert(db, "fits", db_fit_cols, DB_FIT_N, f, "insert fit", &f->id, err);
    return db_tx_end(db, own, st, err);
}

void kvr_db_fits_free(kvr_db_fit *f, int64_t n) {
    db_rows_free(db_fit_cols, DB_FIT_N, f, n, sizeof *f);
}

kvr_status kvr_db_fits_list(kvr_db *db, int64_t run_id, kvr_db_fit **out, int64_t *n,
                            kvr_error *err) {
    *out = NULL;
    *n = 0;
    if (db->version < 3) return KVR_OK;
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_res_select(db, db_fit_cols, DB_FIT_N, "f.",
                          "fits f WHERE ?1 = 0 OR f.run_id = ?1 ORDER BY f.id", &s, err));
    sqlite3_bind_int64(s, 1, run_id);
    return db_rows_collect(db, s, db_fit_cols, DB_FIT_N, sizeof **out, "fits", "list fits",
                           (void **)out, n, err);
}

kvr_status kvr_db_fits_list_for_model(kvr_db *db, const char *target, const kvr_db_model *model,
                                      kvr_db_fit **out, int64_t *n, kvr_error *err) {
    *out = NULL;
    *n = 0;
    if (db->version < 3) return KVR_OK;
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_res_select(db, db_fit_cols, DB_FIT_N, "f.",
                          "fits f JOIN runs r ON r.id = f.run_id JOIN models m ON "
                          "m.id = r.model_id WHERE f.target = ?1 AND m.content_hash = ?2 AND "
                          "m.n_layers = ?3 ORDER BY f.id DESC",
                          &s, err));
    db_bind_text(s, 1, target);
    db_bind_text(s, 2, model->content_hash);
    sqlite3_bind_int(s, 3, model->n_layers);
    return db_rows_collect(db, s, db_fit_cols, DB_FIT_N, sizeof **out, "fits", "list fits",
                           (void **)out, n, err);
}

// ----------------------------------------------------------------------------
// partition tables

static const db_col db_ptable_cols[] = {
    DB_COLF(kvr_db_ptable, id, DB_COL_INT64, DB_COL_F_ROWID, 1),
    DB_COL(kvr_db_ptable, run_id, DB_COL_ID),
    DB_COL(kvr_db_ptable, source, DB_COL_TEXT),
    DB_COL(kvr_db_ptable, links, DB_COL_TEXT),
    DB_COL(kvr_db_ptable, granularity, DB_COL_INT),
    DB_COL(kvr_db_ptable, json, DB_COL_OWNED_TEXT),
    DB_PROVENANCE_COLS(kvr_db_ptable),
    /* v4; a v3 file opened read-only lacks them */
    DB_COLF(kvr_db_ptable, cost_kind, DB_COL_TEXT, 0, 4),
    DB_COLF(kvr_db_ptable, link_run_id, DB_COL_ID, 0, 4),
};
#define DB_PTABLE_N DB_NCOLS(db_ptable_cols)

static const db_col db_ptable_row_cols[] = {
    DB_COL(kvr_db_ptable_row, table_id, DB_COL_INT64),
    DB_COL(kvr_db_ptable_row, n_ranks, DB_COL_INT),
    DB_COL(kvr_db_ptable_row, context, DB_COL_INT64),
    DB_COL(kvr_db_ptable_row, partition, DB_COL_TEXT),
    DB_COLN(kvr_db_ptable_row, "ttft_kvrs_ms", ttft_ms[KVR_STRATEGY_KVR_S], DB_COL_OPT),
    DB_COLN(kvr_db_ptable_row, "ttft_kvre_ms", ttft_ms[KVR_STRATEGY_KVR_E], DB_COL_OPT),
    DB_COLN(kvr_db_ptable_row, "ttft_tsp_ms", ttft_ms[KVR_STRATEGY_TSP], DB_COL_OPT),
    DB_COLN(kvr_db_ptable_row, "ttft_ring_ms", ttft_ms[KVR_STRATEGY_RING], DB_COL_OPT),
    DB_COLN(kvr_db_ptable_row, "ttft_single_ms", ttft_ms[KVR_STRATEGY_SINGLE], DB_COL_OPT),
    DB_COL(kvr_db_ptable_row, best, DB_COL_TEXT),
    DB_COL(kvr_db_ptable_row, search_ms, DB_COL_OPT),
};
#define DB_PTABLE_ROW_N DB_NCOLS(db_ptable_row_cols)

kvr_status kvr_db_ptable_put(kvr_db *db, kvr_db_ptable *t, const kvr_db_ptable_row *rows,
                             int64_t n, kvr_error *err) {
    KVR_TRY(db_res_need_v3(db, "partition tables", err));
    for (int64_t i = 0; i < n; i++)
        if (rows[i].n_ranks < 1 || rows[i].context < 1)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "%s: partition table row %lld: %d ranks, context %lld", db->path,
                                 (long long)i, rows[i].n_ranks, (long long)rows[i].context);
    bool own;
    KVR_TRY(db_tx_begin(db, &own, err));
    DB_RES_PROVENANCE(t);
    int64_t id = 0;
    kvr_status st = db_row_insert(db, "ptables", db_ptable_cols, DB_PTABLE_N, t,
                                  "insert partition table", &id, err);
    sqlite3_stmt *s = NULL;
    if (st == KVR_OK) {
        char sql[1024];
        db_cols_insert_sql("INSERT", "ptable_rows", db_ptable_row_cols, DB_PTABLE_ROW_N,
                           db->version, NULL, NULL, sql, sizeof sql);
        st = db_prepare(db, sql, &s, err);
    }
    if (st == KVR_OK) {
        for (int64_t i = 0; i < n && st == KVR_OK; i++) {
            kvr_db_ptable_row r = rows[i];
            r.table_id = id;
            db_cols_bind(s, 1, db_ptable_row_cols, DB_PTABLE_ROW_N, db->version, 0, &r);
            st = db_step_done(db, s, "insert partition table row", err);
            if (st != KVR_OK && err && strstr(err->msg, "UNIQUE"))
                st = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                   "%s: partition table: two rows for %d ranks at context %lld",
                                   db->path, r.n_ranks, (long long)r.context);
        }
        sqlite3_finalize(s);
    }
    st = db_tx_end(db, own, st, err);
    if (st == KVR_OK) t->id = id;
    return st;
}

void kvr_db_ptables_free(kvr_db_ptable *t, int64_t n) {
    db_rows_free(db_ptable_cols, DB_PTABLE_N, t, n, sizeof *t);
}

kvr_status kvr_db_ptables_list(kvr_db *db, kvr_db_ptable **out, int64_t *n, kvr_error *err) {
    *out = NULL;
    *n = 0;
    if (db->version < 3) return KVR_OK;
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_res_select(db, db_ptable_cols, DB_PTABLE_N, NULL, "ptables ORDER BY id", &s, err));
    return db_rows_collect(db, s, db_ptable_cols, DB_PTABLE_N, sizeof **out, "tables",
                           "list partition tables", (void **)out, n, err);
}

kvr_status kvr_db_ptable_get(kvr_db *db, int64_t id, kvr_db_ptable *out, kvr_error *err) {
    if (db->version < 3)
        return kvr_error_set(err, KVR_ERR_NOT_FOUND, "partition table %lld not found in %s",
                             (long long)id, db->path);
    return db_row_get(db, -1, "ptables", db_ptable_cols, DB_PTABLE_N, sizeof *out, id,
                      "partition table", out, err);
}

kvr_status kvr_db_ptable_rows_get(kvr_db *db, int64_t table_id, kvr_db_ptable_row **out,
                                  int64_t *n, kvr_error *err) {
    *out = NULL;
    *n = 0;
    KVR_TRY(db_res_need_v3(db, "partition tables", err));
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db, "SELECT count(*) FROM ptables WHERE id=?1", &s, err));
    sqlite3_bind_int64(s, 1, table_id);
    int rc = sqlite3_step(s);
    const int64_t found = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW) return DB_ERR(db, rc, "read partition table", err);
    if (!found)
        return kvr_error_set(err, KVR_ERR_NOT_FOUND,
                             "partition table %lld not found in %s (kvr-db tables lists them)",
                             (long long)table_id, db->path);
    KVR_TRY(db_res_select(db, db_ptable_row_cols, DB_PTABLE_ROW_N, NULL,
                          "ptable_rows WHERE table_id=?1 ORDER BY n_ranks, context", &s, err));
    sqlite3_bind_int64(s, 1, table_id);
    return db_rows_collect(db, s, db_ptable_row_cols, DB_PTABLE_ROW_N, sizeof **out, "rows",
                           "read partition table rows", (void **)out, n, err);
}

// ----------------------------------------------------------------------------
// predictors

static const db_col db_pred_cols[] = {
    DB_COLF(kvr_db_predictor, id, DB_COL_INT64, DB_COL_F_ROWID, 1),
    DB_COL(kvr_db_predictor, table_id, DB_COL_ID),
    DB_COL(kvr_db_predictor, run_id, DB_COL_ID),
    DB_COL(kvr_db_predictor, n_ranks, DB_COL_INT),
    DB_COL(kvr_db_predictor, links, DB_COL_TEXT),
    DB_COL(kvr_db_predictor, form, DB_COL_TEXT),
    DB_COL(kvr_db_predictor, gap_mean, DB_COL_OPT),
    DB_COL(kvr_db_predictor, gap_max, DB_COL_OPT),
    DB_COL(kvr_db_predictor, err_band, DB_COL_OPT),
    DB_COL(kvr_db_predictor, json, DB_COL_OWNED_TEXT),
    DB_PROVENANCE_COLS(kvr_db_predictor),
};
#define DB_PRED_N DB_NCOLS(db_pred_cols)

kvr_status kvr_db_predictor_put(kvr_db *db, kvr_db_predictor *p, kvr_error *err) {
    KVR_TRY(db_res_need_v3(db, "predictors", err));
    if (p->n_ranks < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: predictor: %d ranks", db->path,
                             p->n_ranks);
    bool own;
    KVR_TRY(db_tx_begin(db, &own, err));
    DB_RES_PROVENANCE(p);
    kvr_status st = db_row_insert(db, "predictors", db_pred_cols, DB_PRED_N, p,
                                  "insert predictor", &p->id, err);
    return db_tx_end(db, own, st, err);
}

void kvr_db_predictors_free(kvr_db_predictor *p, int64_t n) {
    db_rows_free(db_pred_cols, DB_PRED_N, p, n, sizeof *p);
}

kvr_status kvr_db_predictors_list(kvr_db *db, kvr_db_predictor **out, int64_t *n,
                                  kvr_error *err) {
    *out = NULL;
    *n = 0;
    if (db->version < 3) return KVR_OK;
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_res_select(db, db_pred_cols, DB_PRED_N, "p.", "predictors p ORDER BY p.id", &s,
                          err));
    return db_rows_collect(db, s, db_pred_cols, DB_PRED_N, sizeof **out, "predictors",
                           "list predictors", (void **)out, n, err);
}

/* The first row of a bound SELECT of db_pred_cols into *out (finalizes s); KVR_ERR_NOT_FOUND
 * with msg when there is none. */
static kvr_status db_pred_first(kvr_db *db, sqlite3_stmt *s, kvr_db_predictor *out,
                                const char *msg, kvr_error *err) {
    const int rc = sqlite3_step(s);
    kvr_status st = KVR_OK;
    if (rc == SQLITE_ROW) {
        kvr_db_predictor x;
        memset(&x, 0, sizeof x);
        if (db_cols_read(s, 0, db_pred_cols, DB_PRED_N, db->version, &x)) {
            *out = x;
        } else {
            db_cols_free_owned(db_pred_cols, DB_PRED_N, &x);
            st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory reading a predictor",
                               db->path);
        }
    } else if (rc == SQLITE_DONE) {
        st = kvr_error_set(err, KVR_ERR_NOT_FOUND, "%s", msg);
    } else {
        st = DB_ERR(db, rc, "find predictor", err);
    }
    sqlite3_finalize(s);
    return st;
}

kvr_status kvr_db_predictor_latest_for_model(kvr_db *db, int32_t n_ranks,
                                             const kvr_db_model *model, kvr_db_predictor *out,
                                             kvr_error *err) {
    char msg[512];
    snprintf(msg, sizeof msg, "no %d-rank KVR-P predictor for model %s in %s", n_ranks,
             model->name, db->path);
    if (db->version < 3) return kvr_error_set(err, KVR_ERR_NOT_FOUND, "%s", msg);
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_res_select(db, db_pred_cols, DB_PRED_N, "p.",
                          "predictors p JOIN runs r ON r.id = p.run_id JOIN models m ON "
                          "m.id = r.model_id WHERE p.n_ranks = ?1 AND m.content_hash = ?2 AND "
                          "m.n_layers = ?3 ORDER BY p.id DESC LIMIT 1",
                          &s, err));
    sqlite3_bind_int(s, 1, n_ranks);
    db_bind_text(s, 2, model->content_hash);
    sqlite3_bind_int(s, 3, model->n_layers);
    return db_pred_first(db, s, out, msg, err);
}

kvr_status kvr_db_predictor_latest(kvr_db *db, int32_t n_ranks, int64_t model_id,
                                   kvr_db_predictor *out, kvr_error *err) {
    char what[96];
    if (model_id > 0)
        snprintf(what, sizeof what, "for %d ranks and model %lld", n_ranks, (long long)model_id);
    else
        snprintf(what, sizeof what, "for %d ranks", n_ranks);
    if (db->version < 3)
        return kvr_error_set(err, KVR_ERR_NOT_FOUND,
                             "no KVR-P predictor %s in %s (schema version %d: open it read-write "
                             "to upgrade, then make one with kvr-search --db and kvr-fit --kvrp)",
                             what, db->path, db->version);
    char msg[768];
    snprintf(msg, sizeof msg,
             "no KVR-P predictor %s in %s: make one with kvr-search --db %s --run RUN --ranks %d, "
             "then kvr-fit --db %s --kvrp",
             what, db->path, db->path, n_ranks, db->path);
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_res_select(db, db_pred_cols, DB_PRED_N, "p.",
                          "predictors p LEFT JOIN runs r ON r.id = p.run_id WHERE p.n_ranks = ?1 "
                          "AND (?2 = 0 OR r.model_id = ?2) ORDER BY p.id DESC LIMIT 1",
                          &s, err));
    sqlite3_bind_int(s, 1, n_ranks);
    sqlite3_bind_int64(s, 2, model_id > 0 ? model_id : 0);
    return db_pred_first(db, s, out, msg, err);
}
