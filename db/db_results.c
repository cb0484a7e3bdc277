/* db_results.c -- what the later stages store (schema v3): fitted cost-model terms (kvr-fit),
 * KVR-S partition tables with their rows (kvr-search) and KVR-P predictors (kvr-fit --kvrp).
 * Each record carries its producer's self-describing JSON (owned text in the C structs, freed
 * by the matching _free) plus the columns needed to find it. Every statement binds its
 * parameters; every write runs in a BEGIN IMMEDIATE transaction (joining the caller's). */
#include "db_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* < 0 (or NaN) = not computed: stored as NULL, read back as -1. */
static void db_res_bind_opt(sqlite3_stmt *s, int i, double v) {
    db_bind_real(s, i, v >= 0 ? v : NAN);
}

static double db_res_col_opt(sqlite3_stmt *s, int i) {
    const double v = db_col_real(s, i);
    return isfinite(v) ? v : -1;
}

static char *db_res_strdup(const char *s) {
    if (!s) s = "";
    const size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

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

// ----------------------------------------------------------------------------
// fits

kvr_status kvr_db_fit_put(kvr_db *db, kvr_db_fit *f, kvr_error *err) {
    KVR_TRY(db_res_need_v3(db, "fits", err));
    if (!f->target[0] || !f->form[0])
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: fit: empty target or form", db->path);
    bool own;
    KVR_TRY(db_tx_begin(db, &own, err));
    sqlite3_stmt *s = NULL;
    kvr_status st = db_prepare(db,
                               "INSERT INTO fits(run_id, target, form, n_samples, r2, mape_in, "
                               "mape_cv, max_err_cv, json, ts_utc, kvr_version, git_commit) "
                               "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
                               &s, err);
    if (st == KVR_OK) {
        DB_RES_PROVENANCE(f);
        db_bind_id(s, 1, f->run_id);
        db_bind_text(s, 2, f->target);
        db_bind_text(s, 3, f->form);
        sqlite3_bind_int64(s, 4, f->n_samples);
        db_bind_real(s, 5, f->r2); /* r2 may be negative: stored as given (NaN = NULL) */
        db_res_bind_opt(s, 6, f->mape_in);
        db_res_bind_opt(s, 7, f->mape_cv);
        db_res_bind_opt(s, 8, f->max_err_cv);
        db_bind_text(s, 9, f->json);
        db_bind_text(s, 10, f->ts_utc);
        db_bind_text(s, 11, f->kvr_version);
        db_bind_text(s, 12, f->git_commit);
        st = db_step_done(db, s, "insert fit", err);
        if (st == KVR_OK) f->id = sqlite3_last_insert_rowid(db->h);
        sqlite3_finalize(s);
    }
    return db_tx_end(db, own, st, err);
}

void kvr_db_fits_free(kvr_db_fit *f, int64_t n) {
    if (!f) return;
    for (int64_t i = 0; i < n; i++) free(f[i].json);
    free(f);
}

#define DB_FIT_COLS                                                                                \
    "f.id, f.run_id, f.target, f.form, f.n_samples, f.r2, f.mape_in, f.mape_cv, f.max_err_cv, "   \
    "f.json, f.ts_utc, f.kvr_version, f.git_commit"

/* Columns DB_FIT_COLS; false when the json copy failed. */
static bool db_fit_read(sqlite3_stmt *s, kvr_db_fit *x) {
    memset(x, 0, sizeof *x);
    x->id = sqlite3_column_int64(s, 0);
    x->run_id = sqlite3_column_int64(s, 1);
    db_col_text(s, 2, x->target, sizeof x->target);
    db_col_text(s, 3, x->form, sizeof x->form);
    x->n_samples = sqlite3_column_int64(s, 4);
    x->r2 = db_col_real(s, 5);
    if (!isfinite(x->r2)) x->r2 = -1;
    x->mape_in = db_res_col_opt(s, 6);
    x->mape_cv = db_res_col_opt(s, 7);
    x->max_err_cv = db_res_col_opt(s, 8);
    x->json = db_res_strdup((const char *)sqlite3_column_text(s, 9));
    db_col_text(s, 10, x->ts_utc, sizeof x->ts_utc);
    db_col_text(s, 11, x->kvr_version, sizeof x->kvr_version);
    db_col_text(s, 12, x->git_commit, sizeof x->git_commit);
    return x->json != NULL;
}

/* Step a prepared, bound SELECT of DB_FIT_COLS into a list (finalizes s). */
static kvr_status db_fits_collect(kvr_db *db, sqlite3_stmt *s, kvr_db_fit **out, int64_t *n,
                                  kvr_error *err) {
    kvr_db_fit *a = NULL;
    int64_t cnt = 0, cap = 0;
    int rc;
    kvr_status st = KVR_OK;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        kvr_db_fit *g = db_grow(a, cnt, &cap, sizeof *a);
        if (!g) {
            st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory reading fits", db->path);
            break;
        }
        a = g;
        if (!db_fit_read(s, &a[cnt++])) {
            st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory reading fits", db->path);
            break;
        }
    }
    sqlite3_finalize(s);
    if (st == KVR_OK && rc != SQLITE_DONE) st = DB_ERR(db, rc, "list fits", err);
    if (st != KVR_OK) {
        kvr_db_fits_free(a, cnt);
        return st;
    }
    *out = a;
    *n = cnt;
    return KVR_OK;
}

kvr_status kvr_db_fits_list(kvr_db *db, int64_t run_id, kvr_db_fit **out, int64_t *n,
                            kvr_error *err) {
    *out = NULL;
    *n = 0;
    if (db->version < 3) return KVR_OK;
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db,
                       "SELECT " DB_FIT_COLS " FROM fits f WHERE ?1 = 0 OR f.run_id = ?1 "
                       "ORDER BY f.id",
                       &s, err));
    sqlite3_bind_int64(s, 1, run_id);
    return db_fits_collect(db, s, out, n, err);
}

kvr_status kvr_db_fits_list_for_model(kvr_db *db, const char *target, const kvr_db_model *model,
                                      kvr_db_fit **out, int64_t *n, kvr_error *err) {
    *out = NULL;
    *n = 0;
    if (db->version < 3) return KVR_OK;
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db,
                       "SELECT " DB_FIT_COLS " FROM fits f JOIN runs r ON r.id = f.run_id "
                       "JOIN models m ON m.id = r.model_id WHERE f.target = ?1 AND "
                       "m.content_hash = ?2 AND m.n_layers = ?3 ORDER BY f.id DESC",
                       &s, err));
    db_bind_text(s, 1, target);
    db_bind_text(s, 2, model->content_hash);
    sqlite3_bind_int(s, 3, model->n_layers);
    return db_fits_collect(db, s, out, n, err);
}

// ----------------------------------------------------------------------------
// partition tables

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
    sqlite3_stmt *s = NULL;
    kvr_status st = db_prepare(db,
                               "INSERT INTO ptables(run_id, source, links, granularity, json, "
                               "ts_utc, kvr_version, git_commit, cost_kind, link_run_id) "
                               "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
                               &s, err);
    int64_t id = 0;
    if (st == KVR_OK) {
        DB_RES_PROVENANCE(t);
        db_bind_id(s, 1, t->run_id);
        db_bind_text(s, 2, t->source);
        db_bind_text(s, 3, t->links);
        sqlite3_bind_int(s, 4, t->granularity);
        db_bind_text(s, 5, t->json);
        db_bind_text(s, 6, t->ts_utc);
        db_bind_text(s, 7, t->kvr_version);
        db_bind_text(s, 8, t->git_commit);
        db_bind_text(s, 9, t->cost_kind);
        db_bind_id(s, 10, t->link_run_id);
        st = db_step_done(db, s, "insert partition table", err);
        if (st == KVR_OK) id = sqlite3_last_insert_rowid(db->h);
        sqlite3_finalize(s);
    }
    if (st == KVR_OK)
        st = db_prepare(db,
                        "INSERT INTO ptable_rows(table_id, n_ranks, context, partition, "
                        "ttft_kvrs_ms, ttft_kvre_ms, ttft_tsp_ms, ttft_ring_ms, ttft_single_ms, "
                        "best, search_ms) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
                        &s, err);
    if (st == KVR_OK) {
        for (int64_t i = 0; i < n && st == KVR_OK; i++) {
            const kvr_db_ptable_row *r = &rows[i];
            sqlite3_bind_int64(s, 1, id);
            sqlite3_bind_int(s, 2, r->n_ranks);
            sqlite3_bind_int64(s, 3, r->context);
            db_bind_text(s, 4, r->partition);
            for (int k = 0; k < 5; k++) db_res_bind_opt(s, 5 + k, r->ttft_ms[k]);
            db_bind_text(s, 10, r->best);
            db_res_bind_opt(s, 11, r->search_ms);
            st = db_step_done(db, s, "insert partition table row", err);
            if (st != KVR_OK && err && strstr(err->msg, "UNIQUE"))
                st = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                   "%s: partition table: two rows for %d ranks at context %lld",
                                   db->path, r->n_ranks, (long long)r->context);
        }
        sqlite3_finalize(s);
    }
    st = db_tx_end(db, own, st, err);
    if (st == KVR_OK) t->id = id;
    return st;
}

void kvr_db_ptables_free(kvr_db_ptable *t, int64_t n) {
    if (!t) return;
    for (int64_t i = 0; i < n; i++) free(t[i].json);
    free(t);
}

/* The ptables columns of this file's version (v3 files opened read-only lack the v4 ones). */
static const char *db_ptable_cols(const kvr_db *db) {
    return db->version >= 4 ? "id, run_id, source, links, granularity, json, ts_utc, kvr_version, "
                              "git_commit, cost_kind, link_run_id"
                            : "id, run_id, source, links, granularity, json, ts_utc, kvr_version, "
                              "git_commit";
}

/* Columns db_ptable_cols; false when the json copy failed. */
static bool db_ptable_read(const kvr_db *db, sqlite3_stmt *s, kvr_db_ptable *x) {
    memset(x, 0, sizeof *x);
    x->id = sqlite3_column_int64(s, 0);
    x->run_id = sqlite3_column_int64(s, 1);
    db_col_text(s, 2, x->source, sizeof x->source);
    db_col_text(s, 3, x->links, sizeof x->links);
    x->granularity = sqlite3_column_int(s, 4);
    x->json = db_res_strdup((const char *)sqlite3_column_text(s, 5));
    db_col_text(s, 6, x->ts_utc, sizeof x->ts_utc);
    db_col_text(s, 7, x->kvr_version, sizeof x->kvr_version);
    db_col_text(s, 8, x->git_commit, sizeof x->git_commit);
    if (db->version >= 4) {
        db_col_text(s, 9, x->cost_kind, sizeof x->cost_kind);
        x->link_run_id = sqlite3_column_int64(s, 10);
    }
    return x->json != NULL;
}

kvr_status kvr_db_ptables_list(kvr_db *db, kvr_db_ptable **out, int64_t *n, kvr_error *err) {
    *out = NULL;
    *n = 0;
    if (db->version < 3) return KVR_OK;
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT %s FROM ptables ORDER BY id", db_ptable_cols(db));
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db, sql, &s, err));
    kvr_db_ptable *a = NULL;
    int64_t cnt = 0, cap = 0;
    int rc;
    kvr_status st = KVR_OK;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        kvr_db_ptable *g = db_grow(a, cnt, &cap, sizeof *a);
        if (!g) {
            st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory reading tables", db->path);
            break;
        }
        a = g;
        if (!db_ptable_read(db, s, &a[cnt++])) {
            st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory reading tables", db->path);
            break;
        }
    }
    sqlite3_finalize(s);
    if (st == KVR_OK && rc != SQLITE_DONE) st = DB_ERR(db, rc, "list partition tables", err);
    if (st != KVR_OK) {
        kvr_db_ptables_free(a, cnt);
        return st;
    }
    *out = a;
    *n = cnt;
    return KVR_OK;
}

kvr_status kvr_db_ptable_get(kvr_db *db, int64_t id, kvr_db_ptable *out, kvr_error *err) {
    if (db->version < 3)
        return kvr_error_set(err, KVR_ERR_NOT_FOUND, "partition table %lld not found in %s",
                             (long long)id, db->path);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT %s FROM ptables WHERE id = ?1", db_ptable_cols(db));
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db, sql, &s, err));
    sqlite3_bind_int64(s, 1, id);
    const int rc = sqlite3_step(s);
    kvr_status st = KVR_OK;
    if (rc == SQLITE_ROW) {
        kvr_db_ptable x;
        if (db_ptable_read(db, s, &x))
            *out = x;
        else
            st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory reading a table", db->path);
    } else if (rc == SQLITE_DONE) {
        st = kvr_error_set(err, KVR_ERR_NOT_FOUND, "partition table %lld not found in %s",
                           (long long)id, db->path);
    } else {
        st = DB_ERR(db, rc, "read partition table", err);
    }
    sqlite3_finalize(s);
    return st;
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
    KVR_TRY(db_prepare(db,
                       "SELECT table_id, n_ranks, context, partition, ttft_kvrs_ms, ttft_kvre_ms, "
                       "ttft_tsp_ms, ttft_ring_ms, ttft_single_ms, best, search_ms FROM "
                       "ptable_rows WHERE table_id=?1 ORDER BY n_ranks, context",
                       &s, err));
    sqlite3_bind_int64(s, 1, table_id);
    kvr_db_ptable_row *a = NULL;
    int64_t cnt = 0, cap = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        kvr_db_ptable_row *g = db_grow(a, cnt, &cap, sizeof *a);
        if (!g) {
            free(a);
            sqlite3_finalize(s);
            return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory reading rows", db->path);
        }
        a = g;
        kvr_db_ptable_row *x = &a[cnt++];
        memset(x, 0, sizeof *x);
        x->table_id = sqlite3_column_int64(s, 0);
        x->n_ranks = sqlite3_column_int(s, 1);
        x->context = sqlite3_column_int64(s, 2);
        db_col_text(s, 3, x->partition, sizeof x->partition);
        for (int k = 0; k < 5; k++) x->ttft_ms[k] = db_res_col_opt(s, 4 + k);
        db_col_text(s, 9, x->best, sizeof x->best);
        x->search_ms = db_res_col_opt(s, 10);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        free(a);
        return DB_ERR(db, rc, "read partition table rows", err);
    }
    *out = a;
    *n = cnt;
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// predictors

kvr_status kvr_db_predictor_put(kvr_db *db, kvr_db_predictor *p, kvr_error *err) {
    KVR_TRY(db_res_need_v3(db, "predictors", err));
    if (p->n_ranks < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: predictor: %d ranks", db->path,
                             p->n_ranks);
    bool own;
    KVR_TRY(db_tx_begin(db, &own, err));
    sqlite3_stmt *s = NULL;
    kvr_status st = db_prepare(db,
                               "INSERT INTO predictors(table_id, run_id, n_ranks, links, form, "
                               "gap_mean, gap_max, err_band, json, ts_utc, kvr_version, "
                               "git_commit) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
                               &s, err);
    if (st == KVR_OK) {
        DB_RES_PROVENANCE(p);
        db_bind_id(s, 1, p->table_id);
        db_bind_id(s, 2, p->run_id);
        sqlite3_bind_int(s, 3, p->n_ranks);
        db_bind_text(s, 4, p->links);
        db_bind_text(s, 5, p->form);
        db_res_bind_opt(s, 6, p->gap_mean);
        db_res_bind_opt(s, 7, p->gap_max);
        db_res_bind_opt(s, 8, p->err_band);
        db_bind_text(s, 9, p->json);
        db_bind_text(s, 10, p->ts_utc);
        db_bind_text(s, 11, p->kvr_version);
        db_bind_text(s, 12, p->git_commit);
        st = db_step_done(db, s, "insert predictor", err);
        if (st == KVR_OK) p->id = sqlite3_last_insert_rowid(db->h);
        sqlite3_finalize(s);
    }
    return db_tx_end(db, own, st, err);
}

void kvr_db_predictors_free(kvr_db_predictor *p, int64_t n) {
    if (!p) return;
    for (int64_t i = 0; i < n; i++) free(p[i].json);
    free(p);
}

#define DB_PRED_COLS                                                                               \
    "p.id, p.table_id, p.run_id, p.n_ranks, p.links, p.form, p.gap_mean, p.gap_max, "             \
    "p.err_band, p.json, p.ts_utc, p.kvr_version, p.git_commit"

/* Columns DB_PRED_COLS; false when the json copy failed. */
static bool db_pred_read(sqlite3_stmt *s, kvr_db_predictor *x) {
    memset(x, 0, sizeof *x);
    x->id = sqlite3_column_int64(s, 0);
    x->table_id = sqlite3_column_int64(s, 1);
    x->run_id = sqlite3_column_int64(s, 2);
    x->n_ranks = sqlite3_column_int(s, 3);
    db_col_text(s, 4, x->links, sizeof x->links);
    db_col_text(s, 5, x->form, sizeof x->form);
    x->gap_mean = db_res_col_opt(s, 6);
    x->gap_max = db_res_col_opt(s, 7);
    x->err_band = db_res_col_opt(s, 8);
    x->json = db_res_strdup((const char *)sqlite3_column_text(s, 9));
    db_col_text(s, 10, x->ts_utc, sizeof x->ts_utc);
    db_col_text(s, 11, x->kvr_version, sizeof x->kvr_version);
    db_col_text(s, 12, x->git_commit, sizeof x->git_commit);
    return x->json != NULL;
}

kvr_status kvr_db_predictors_list(kvr_db *db, kvr_db_predictor **out, int64_t *n,
                                  kvr_error *err) {
    *out = NULL;
    *n = 0;
    if (db->version < 3) return KVR_OK;
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db, "SELECT " DB_PRED_COLS " FROM predictors p ORDER BY p.id", &s, err));
    kvr_db_predictor *a = NULL;
    int64_t cnt = 0, cap = 0;
    int rc;
    kvr_status st = KVR_OK;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        kvr_db_predictor *g = db_grow(a, cnt, &cap, sizeof *a);
        if (!g) {
            st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory reading predictors",
                               db->path);
            break;
        }
        a = g;
        const bool ok = db_pred_read(s, &a[cnt++]);
        if (!ok) {
            st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory reading predictors",
                               db->path);
            break;
        }
    }
    sqlite3_finalize(s);
    if (st == KVR_OK && rc != SQLITE_DONE) st = DB_ERR(db, rc, "list predictors", err);
    if (st != KVR_OK) {
        kvr_db_predictors_free(a, cnt);
        return st;
    }
    *out = a;
    *n = cnt;
    return KVR_OK;
}

kvr_status kvr_db_predictor_latest_for_model(kvr_db *db, int32_t n_ranks,
                                             const kvr_db_model *model, kvr_db_predictor *out,
                                             kvr_error *err) {
    if (db->version < 3)
        return kvr_error_set(err, KVR_ERR_NOT_FOUND, "no %d-rank KVR-P predictor for model %s in %s",
                             n_ranks, model->name, db->path);
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db,
                       "SELECT " DB_PRED_COLS " FROM predictors p JOIN runs r ON r.id = p.run_id "
                       "JOIN models m ON m.id = r.model_id WHERE p.n_ranks = ?1 AND "
                       "m.content_hash = ?2 AND m.n_layers = ?3 ORDER BY p.id DESC LIMIT 1",
                       &s, err));
    sqlite3_bind_int(s, 1, n_ranks);
    db_bind_text(s, 2, model->content_hash);
    sqlite3_bind_int(s, 3, model->n_layers);
    const int rc = sqlite3_step(s);
    kvr_status st = KVR_OK;
    if (rc == SQLITE_ROW) {
        kvr_db_predictor x;
        if (db_pred_read(s, &x))
            *out = x;
        else
            st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory reading a predictor",
                               db->path);
    } else if (rc == SQLITE_DONE) {
        st = kvr_error_set(err, KVR_ERR_NOT_FOUND, "no %d-rank KVR-P predictor for model %s in %s",
                           n_ranks, model->name, db->path);
    } else {
        st = DB_ERR(db, rc, "find predictor", err);
    }
    sqlite3_finalize(s);
    return st;
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
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db,
                       "SELECT " DB_PRED_COLS " FROM predictors p LEFT JOIN runs r ON "
                       "r.id = p.run_id WHERE p.n_ranks = ?1 AND (?2 = 0 OR r.model_id = ?2) "
                       "ORDER BY p.id DESC LIMIT 1",
                       &s, err));
    sqlite3_bind_int(s, 1, n_ranks);
    sqlite3_bind_int64(s, 2, model_id > 0 ? model_id : 0);
    int rc = sqlite3_step(s);
    kvr_status st = KVR_OK;
    if (rc == SQLITE_ROW) {
        kvr_db_predictor x;
        if (db_pred_read(s, &x))
            *out = x;
        else
            st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory reading a predictor",
                               db->path);
    } else if (rc == SQLITE_DONE) {
        st = kvr_error_set(err, KVR_ERR_NOT_FOUND,
                           "no KVR-P predictor %s in %s: make one with kvr-search --db %s --run "
                           "RUN --ranks %d, then kvr-fit --db %s --kvrp",
                           what, db->path, db->path, n_ranks, db->path);
    } else {
        st = DB_ERR(db, rc, "find predictor", err);
    }
    sqlite3_finalize(s);
    return st;
}
