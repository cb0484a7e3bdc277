/* db_cols.c -- one mechanism for every record's SQL: a record is a table of columns {name, type,
 * offset, capacity, flags, schema version}, and these functions turn the table into the column
 * list of a SELECT, the INSERT statement, the WHERE clause of a find-or-insert, the bindings of a
 * write and the field reads of a row. db_records.c and db_results.c hold the tables; nothing
 * there binds or reads a field by hand. Columns added by a later schema step carry its version,
 * so a file opened read-only at an older version reads the columns it has (the others stay 0). */
#include "db_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool db_col_in(const db_col *c, int32_t version, unsigned need) {
    return c->since <= version && (c->flags & need) == need;
}

/* Append printf text at *len, keeping buf NUL-terminated (truncation is a programmer error:
 * the buffers are sized for the largest table). */
static void db_sql_add(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void db_sql_add(char *buf, size_t cap, size_t *len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    KVR_ASSERT(k >= 0 && (size_t)k < cap - *len);
    *len += (size_t)k;
}

void db_cols_list(const db_col *c, int n, int32_t version, unsigned need, const char *prefix,
                  char *buf, size_t cap) {
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < n; i++)
        if (db_col_in(&c[i], version, need))
            db_sql_add(buf, cap, &len, "%s%s%s", len ? ", " : "", prefix ? prefix : "",
                       c[i].name);
}

void db_cols_insert_sql(const char *verb, const char *table, const db_col *c, int n,
                        int32_t version, const char *extra, const char *tail, char *buf,
                        size_t cap) {
    size_t len = 0;
    int k = 0;
    db_sql_add(buf, cap, &len, "%s INTO %s(", verb, table);
    for (int i = 0; i < n; i++)
        if (db_col_in(&c[i], version, 0) && !(c[i].flags & DB_COL_F_ROWID))
            db_sql_add(buf, cap, &len, "%s%s", k++ ? ", " : "", c[i].name);
    if (extra) db_sql_add(buf, cap, &len, ", %s", extra), k++;
    db_sql_add(buf, cap, &len, ") VALUES(");
    for (int i = 1; i <= k; i++) db_sql_add(buf, cap, &len, "%s?%d", i > 1 ? "," : "", i);
    db_sql_add(buf, cap, &len, ")%s%s", tail ? " " : "", tail ? tail : "");
}

void db_cols_where_sql(const db_col *c, int n, int32_t version, unsigned need, char *buf,
                       size_t cap) {
    size_t len = 0;
    int k = 0;
    buf[0] = 0;
    for (int i = 0; i < n; i++)
        if (db_col_in(&c[i], version, need))
            db_sql_add(buf, cap, &len, "%s%s=?%d", k ? " AND " : "", c[i].name, k + 1), k++;
}

#define DB_FIELD(rec, c, T) ((T *)((char *)(rec) + (c)->offset))
#define DB_CFIELD(rec, c, T) ((const T *)((const char *)(rec) + (c)->offset))

int db_cols_bind(sqlite3_stmt *s, int i0, const db_col *c, int n, int32_t version, unsigned need,
                 const void *rec) {
    int i = i0;
    for (int k = 0; k < n; k++) {
        const db_col *x = &c[k];
        if (!db_col_in(x, version, need) || (x->flags & DB_COL_F_ROWID)) continue;
        switch (x->type) {
            case DB_COL_TEXT: db_bind_text(s, i, DB_CFIELD(rec, x, char)); break;
            case DB_COL_OWNED_TEXT:
                db_bind_text(s, i, *(char *const *)((const char *)rec + x->offset));
                break;
            case DB_COL_INT: sqlite3_bind_int(s, i, *DB_CFIELD(rec, x, int32_t)); break;
            case DB_COL_INT64: sqlite3_bind_int64(s, i, *DB_CFIELD(rec, x, int64_t)); break;
            case DB_COL_ID: db_bind_id(s, i, *DB_CFIELD(rec, x, int64_t)); break;
            case DB_COL_BOOL: sqlite3_bind_int(s, i, *DB_CFIELD(rec, x, bool) ? 1 : 0); break;
            case DB_COL_REAL:
            case DB_COL_REAL_NEG1: db_bind_real(s, i, *DB_CFIELD(rec, x, double)); break;
            case DB_COL_OPT: {
                const double v = *DB_CFIELD(rec, x, double);
                db_bind_real(s, i, v >= 0 ? v : NAN);
                break;
            }
            case DB_COL_RUN_STATUS:
                db_bind_text(s, i, kvr_run_status_name(*DB_CFIELD(rec, x, kvr_run_status)));
                break;
        }
        i++;
    }
    return i;
}

bool db_cols_read(sqlite3_stmt *s, int i0, const db_col *c, int n, int32_t version, void *rec) {
    bool ok = true;
    int i = i0;
    for (int k = 0; k < n; k++) {
        const db_col *x = &c[k];
        if (!db_col_in(x, version, 0)) continue;
        switch (x->type) {
            case DB_COL_TEXT: db_col_text(s, i, DB_FIELD(rec, x, char), x->cap); break;
            case DB_COL_OWNED_TEXT: {
                const char *t = (const char *)sqlite3_column_text(s, i);
                if (!t) t = "";
                const size_t len = strlen(t) + 1;
                char *p = malloc(len);
                if (p) memcpy(p, t, len);
                *DB_FIELD(rec, x, char *) = p;
                ok = ok && p;
                break;
            }
            case DB_COL_INT: *DB_FIELD(rec, x, int32_t) = sqlite3_column_int(s, i); break;
            case DB_COL_INT64:
            case DB_COL_ID: *DB_FIELD(rec, x, int64_t) = sqlite3_column_int64(s, i); break;
            case DB_COL_BOOL: *DB_FIELD(rec, x, bool) = sqlite3_column_int(s, i) != 0; break;
            case DB_COL_REAL: *DB_FIELD(rec, x, double) = db_col_real(s, i); break;
            case DB_COL_OPT:
            case DB_COL_REAL_NEG1: {
                const double v = db_col_real(s, i);
                *DB_FIELD(rec, x, double) = isfinite(v) ? v : -1;
                break;
            }
            case DB_COL_RUN_STATUS: {
                char name[16];
                db_col_text(s, i, name, sizeof name);
                kvr_run_status st = KVR_RUN_FAILED; /* an unknown name: not resumable */
                for (int j = 0; j < KVR_RUN_STATUS_COUNT; j++)
                    if (strcmp(name, kvr_run_status_name((kvr_run_status)j)) == 0)
                        st = (kvr_run_status)j;
                *DB_FIELD(rec, x, kvr_run_status) = st;
                break;
            }
        }
        i++;
    }
    return ok;
}

void db_cols_free_owned(const db_col *c, int n, void *rec) {
    for (int k = 0; k < n; k++)
        if (c[k].type == DB_COL_OWNED_TEXT) {
            free(*DB_FIELD(rec, &c[k], char *));
            *DB_FIELD(rec, &c[k], char *) = NULL;
        }
}

void db_rows_free(const db_col *c, int n, void *rows, int64_t n_rows, size_t elem) {
    if (!rows) return;
    for (int64_t i = 0; i < n_rows; i++) db_cols_free_owned(c, n, (char *)rows + (size_t)i * elem);
    free(rows);
}

kvr_status db_rows_collect(kvr_db *db, sqlite3_stmt *s, const db_col *c, int n, size_t elem,
                           const char *noun, const char *what, void **out, int64_t *n_out,
                           kvr_error *err) {
    char *a = NULL;
    int64_t cnt = 0, cap = 0;
    int rc;
    kvr_status st = KVR_OK;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        char *g = db_grow(a, cnt, &cap, elem);
        if (!g) {
            st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory reading %s", db->path, noun);
            break;
        }
        a = g;
        void *x = a + (size_t)cnt * elem;
        memset(x, 0, elem);
        cnt++;
        if (!db_cols_read(s, 0, c, n, db->version, x)) {
            st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory reading %s", db->path, noun);
            break;
        }
    }
    sqlite3_finalize(s);
    if (st == KVR_OK && rc != SQLITE_DONE) st = DB_ERR(db, rc, what, err);
    if (st != KVR_OK) {
        db_rows_free(c, n, a, cnt, elem);
        return st;
    }
    *out = a;
    *n_out = cnt;
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// whole-record operations over a column table

kvr_status db_row_insert(kvr_db *db, const char *table, const db_col *c, int n, const void *rec,
                         const char *what, int64_t *id, kvr_error *err) {
    char sql[2048];
    db_cols_insert_sql("INSERT", table, c, n, db->version, NULL, NULL, sql, sizeof sql);
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db, sql, &s, err));
    db_cols_bind(s, 1, c, n, db->version, 0, rec);
    kvr_status st = db_step_done(db, s, what, err);
    if (st == KVR_OK && id) *id = sqlite3_last_insert_rowid(db->h);
    sqlite3_finalize(s);
    return st;
}

kvr_status db_row_find_or_insert(kvr_db *db, const char *table, const db_col *c, int n,
                                 const void *rec, const char *noun, int64_t *id,
                                 kvr_error *err) {
    bool own;
    KVR_TRY(db_tx_begin(db, &own, err));
    char sql[2048], what[64];
    db_cols_insert_sql("INSERT", table, c, n, db->version, NULL, "ON CONFLICT DO NOTHING", sql,
                       sizeof sql);
    sqlite3_stmt *s = NULL;
    kvr_status st = db_prepare(db, sql, &s, err);
    if (st == KVR_OK) {
        db_cols_bind(s, 1, c, n, db->version, 0, rec);
        snprintf(what, sizeof what, "insert %s", noun);
        st = db_step_done(db, s, what, err);
        sqlite3_finalize(s);
    }
    if (st == KVR_OK) {
        size_t len = (size_t)snprintf(sql, sizeof sql, "SELECT id FROM %s WHERE ", table);
        db_cols_where_sql(c, n, db->version, DB_COL_F_KEY, sql + len, sizeof sql - len);
        st = db_prepare(db, sql, &s, err);
    }
    if (st == KVR_OK) {
        db_cols_bind(s, 1, c, n, db->version, DB_COL_F_KEY, rec);
        const int rc = sqlite3_step(s);
        snprintf(what, sizeof what, "find %s", noun);
        if (rc == SQLITE_ROW)
            *id = sqlite3_column_int64(s, 0);
        else
            st = DB_ERR(db, rc == SQLITE_DONE ? SQLITE_INTERNAL : rc, what, err);
        sqlite3_finalize(s);
    }
    return db_tx_end(db, own, st, err);
}

kvr_status db_row_get(kvr_db *db, int stmt_id, const char *table, const db_col *c, int n,
                      size_t elem, int64_t id, const char *noun, void *rec, kvr_error *err) {
    char sql[2048], cols[1536];
    db_cols_list(c, n, db->version, 0, NULL, cols, sizeof cols);
    snprintf(sql, sizeof sql, "SELECT %s FROM %s WHERE id=?1", cols, table);
    sqlite3_stmt *s = NULL;
    if (stmt_id >= 0)
        KVR_TRY(db_stmt(db, (db_stmt_id)stmt_id, sql, &s, err));
    else
        KVR_TRY(db_prepare(db, sql, &s, err));
    sqlite3_bind_int64(s, 1, id);
    const int rc = sqlite3_step(s);
    kvr_status st = KVR_OK;
    if (rc == SQLITE_ROW) {
        memset(rec, 0, elem);
        if (!db_cols_read(s, 0, c, n, db->version, rec)) {
            db_cols_free_owned(c, n, rec);
            st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory reading %s %lld", db->path,
                               noun, (long long)id);
        }
    } else if (rc == SQLITE_DONE) {
        st = kvr_error_set(err, KVR_ERR_NOT_FOUND, "%s %lld not found in %s", noun, (long long)id,
                           db->path);
    } else {
        char what[64];
        snprintf(what, sizeof what, "read %s", noun);
        st = DB_ERR(db, rc, what, err);
    }
    if (stmt_id >= 0)
        sqlite3_reset(s);
    else
        sqlite3_finalize(s);
    return st;
}
