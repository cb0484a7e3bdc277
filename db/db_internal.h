/* db_internal.h -- declarations shared by the db module's .c files (and, on purpose, its tests):
 * the handle, SQLite error mapping, the statement cache, migrations and a growable text buffer.
 * Nothing here is part of the public API. */
#ifndef KVR_DB_INTERNAL_H
#define KVR_DB_INTERNAL_H
#include "kvr_db.h"

#include <sqlite3.h>
#include <stddef.h>

/* Cached prepared statements (prepared on first use, reset after each use). */
typedef enum db_stmt_id {
    DB_STMT_LAYER_PUT,
    DB_STMT_TRANSFER_PUT,
    DB_STMT_RUN_GET,
    DB_STMT_COUNT
} db_stmt_id;

struct kvr_db {
    sqlite3 *h;
    char *path;
    bool read_only;
    bool in_tx;      /* inside kvr_db_begin .. commit/rollback */
    int32_t version; /* user_version after open (and migration) */
    sqlite3_stmt *stmts[DB_STMT_COUNT];
};

/* Map an SQLite result code to a kvr status and message "PATH: WHAT: sqlite message (errno)".
 * Full disk, I/O and read-only errors become KVR_ERR_IO; a non-database file KVR_ERR_FORMAT. */
kvr_status db_sql_error(sqlite3 *h, const char *path, int rc, const char *what, kvr_error *err);
#define DB_ERR(db, rc, what, err) db_sql_error((db)->h, (db)->path, (rc), (what), (err))

/* Run SQL without results (several statements allowed; trusted, constant SQL only). */
kvr_status db_exec(sqlite3 *h, const char *path, const char *sql, const char *what,
                   kvr_error *err);
/* A cached statement, prepared on first use. */
kvr_status db_stmt(kvr_db *db, db_stmt_id id, const char *sql, sqlite3_stmt **out,
                   kvr_error *err);
/* A fresh statement the caller finalizes. */
kvr_status db_prepare(kvr_db *db, const char *sql, sqlite3_stmt **out, kvr_error *err);

/* Write transactions that nest with an outer kvr_db_begin: *own tells the caller whether it
 * opened the transaction (and must end it). */
kvr_status db_tx_begin(kvr_db *db, bool *own, kvr_error *err);
kvr_status db_tx_end(kvr_db *db, bool own, kvr_status st, kvr_error *err);

/* Migrations (db_schema.c). */
int32_t db_schema_latest(void);
/* Bring the file to version `target` (<= latest), one transaction per step; safe against a
 * concurrent process doing the same (each step re-reads the version under the write lock). */
kvr_status db_migrate(sqlite3 *h, const char *path, int32_t target, kvr_error *err);
kvr_status db_user_version(sqlite3 *h, const char *path, int32_t *out, kvr_error *err);

/* "YYYY-MM-DDTHH:MM:SSZ" for now. */
void db_now_utc(char *buf, size_t len);
/* Copy NUL-terminated text (NULL = "") into a fixed field, truncating. */
void db_copy(char *dst, size_t cap, const char *src);
#define DB_COPY(field, src) db_copy((field), sizeof(field), (src))
/* Bind helpers: text (SQLITE_TRANSIENT), double with NaN as NULL. */
int db_bind_text(sqlite3_stmt *s, int i, const char *v);
int db_bind_real(sqlite3_stmt *s, int i, double v);
/* Column helpers: NULL text as "", NULL real as NaN. */
void db_col_text(sqlite3_stmt *s, int i, char *dst, size_t cap);
double db_col_real(sqlite3_stmt *s, int i);

/* Record helpers (db_records.c): bind an id (<= 0 as NULL); step a write statement to completion
 * and reset it, mapping errors; grow a list array (NULL on allocation failure, p kept). */
void db_bind_id(sqlite3_stmt *s, int i, int64_t id);
kvr_status db_step_done(kvr_db *db, sqlite3_stmt *s, const char *what, kvr_error *err);
void *db_grow(void *p, int64_t n, int64_t *cap, size_t elem);
/* Defined after the column tables below. */
typedef struct db_col db_col;

/* Records as column tables (db_cols.c). A record type's SQL is a static array of db_col, one per
 * column, in the table's column order; the functions below build its SQL text, bind a record's
 * fields and read a row into one. `since` is the schema version that added the column (files at
 * an older version skip it: read as 0); `need` selects columns whose flags include every bit of
 * it (0 = all). */
typedef enum db_col_type {
    DB_COL_TEXT,       /* char[cap]; NULL reads as "" */
    DB_COL_OWNED_TEXT, /* char * (malloc'd on read; freed by db_cols_free_owned) */
    DB_COL_INT,        /* int32_t */
    DB_COL_INT64,      /* int64_t */
    DB_COL_ID,         /* int64_t row reference: <= 0 stored as NULL, NULL reads as 0 */
    DB_COL_BOOL,       /* bool as 0/1 */
    DB_COL_REAL,       /* double: NaN/Inf stored as NULL, NULL reads as NaN */
    DB_COL_REAL_NEG1,  /* double that may be negative: NaN stored as NULL, NULL reads as -1 */
    DB_COL_OPT,        /* double, < 0 = not computed: stored as NULL, NULL reads as -1 */
    DB_COL_RUN_STATUS, /* kvr_run_status as its name; an unknown name reads as failed */
} db_col_type;

enum {
    DB_COL_F_ROWID = 1, /* the INTEGER PRIMARY KEY: read, never inserted */
    DB_COL_F_KEY = 2,   /* part of a find-or-insert identity (the UNIQUE constraint) */
};

struct db_col {
    const char *name;
    db_col_type type;
    size_t offset, cap; /* of the field in the record; cap: its size (text capacity) */
    unsigned flags;
    int32_t since;
};

#define DB_FIELD_SIZE(T, f) sizeof(((T *)0)->f)
/* A column named as its field, or named explicitly (nested fields: "median_us", stats.median_us). */
#define DB_COL(T, f, type) {#f, (type), offsetof(T, f), DB_FIELD_SIZE(T, f), 0, 1}
#define DB_COLF(T, f, type, flags, since) {#f, (type), offsetof(T, f), DB_FIELD_SIZE(T, f), (flags), (since)}
#define DB_COLN(T, name, f, type) {(name), (type), offsetof(T, f), DB_FIELD_SIZE(T, f), 0, 1}
#define DB_NCOLS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* "a, b, c" (each with prefix, e.g. "p."), the columns present at version with flags need. */
void db_cols_list(const db_col *c, int n, int32_t version, unsigned need, const char *prefix,
                  char *buf, size_t cap);
/* "VERB INTO table(cols[, extra]) VALUES(?1,...)[ tail]" (VERB "INSERT", "INSERT OR REPLACE") over the non-rowid columns; extra
 * names columns the caller binds after them (e.g. "ts_utc"), tail e.g. "ON CONFLICT DO NOTHING". */
void db_cols_insert_sql(const char *verb, const char *table, const db_col *c, int n,
                        int32_t version, const char *extra, const char *tail, char *buf,
                        size_t cap);
/* "a=?1 AND b=?2 ..." over the columns with flags need. */
void db_cols_where_sql(const db_col *c, int n, int32_t version, unsigned need, char *buf,
                       size_t cap);
/* Bind the non-rowid columns with flags need from rec, from parameter i0; returns the next
 * parameter index. */
int db_cols_bind(sqlite3_stmt *s, int i0, const db_col *c, int n, int32_t version, unsigned need,
                 const void *rec);
/* Read the columns present at version from result column i0 on into rec (not cleared first);
 * false when an owned text could not be allocated. */
bool db_cols_read(sqlite3_stmt *s, int i0, const db_col *c, int n, int32_t version, void *rec);
void db_cols_free_owned(const db_col *c, int n, void *rec);
/* Free an array of records and their owned texts (NULL is a no-op). */
void db_rows_free(const db_col *c, int n, void *rows, int64_t n_rows, size_t elem);
/* Step a bound SELECT of the columns (db_cols_list order) into a malloc'd array; finalizes s.
 * Errors: KVR_ERR_NOMEM ("out of memory reading NOUN"), SQLite errors labelled what. */
/* Insert rec (all non-rowid columns) with a fresh statement; *id (may be NULL) = the new rowid.
 * The caller owns the transaction. */
kvr_status db_row_insert(kvr_db *db, const char *table, const db_col *c, int n, const void *rec,
                         const char *what, int64_t *id, kvr_error *err);
/* Insert unless a row with the same DB_COL_F_KEY columns exists (ON CONFLICT DO NOTHING), then
 * *id = that row's id; one transaction. Errors are labelled "insert NOUN" / "find NOUN". */
kvr_status db_row_find_or_insert(kvr_db *db, const char *table, const db_col *c, int n,
                                 const void *rec, const char *noun, int64_t *id, kvr_error *err);
/* Read the row with this id into rec (cleared first; elem = its size), with the cached statement
 * stmt_id (-1: a fresh one). Errors: KVR_ERR_NOT_FOUND "NOUN ID not found in PATH". */
kvr_status db_row_get(kvr_db *db, int stmt_id, const char *table, const db_col *c, int n,
                      size_t elem, int64_t id, const char *noun, void *rec, kvr_error *err);
kvr_status db_rows_collect(kvr_db *db, sqlite3_stmt *s, const db_col *c, int n, size_t elem,
                           const char *noun, const char *what, void **out, int64_t *n_out,
                           kvr_error *err);

/* Export text goes into a kvr_text (kvr_common.h); these append one escaped value. */
void db_buf_json_str(kvr_text *b, const char *s); /* a quoted, escaped JSON string */
void db_buf_json_num(kvr_text *b, double v);      /* a number, or null for NaN/Inf */
void db_buf_csv_str(kvr_text *b, const char *s);  /* a CSV field, quoted when needed */

#endif /* KVR_DB_INTERNAL_H */
