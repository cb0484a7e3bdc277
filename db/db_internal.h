/* db_internal.h -- declarations shared by the db module's .c files (and, on purpose, its tests):
 * the handle, SQLite error mapping, the statement cache, migrations and a growable text buffer.
 * Nothing here is part of the public API. */
#ifndef KVR_DB_INTERNAL_H
#define KVR_DB_INTERNAL_H
#include "kvr_db.h"

#include <sqlite3.h>

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

/* Growable text buffer for exports; any allocation failure sets oom and stops appending. */
typedef struct db_buf {
    char *p;
    size_t len, cap;
    bool oom;
} db_buf;
void db_buf_printf(db_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void db_buf_json_str(db_buf *b, const char *s); /* a quoted, escaped JSON string */
void db_buf_json_num(db_buf *b, double v);       /* a number, or null for NaN/Inf */
void db_buf_csv_str(db_buf *b, const char *s);   /* a CSV field, quoted when needed */

#endif /* KVR_DB_INTERNAL_H */
