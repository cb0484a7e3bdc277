/* db.c -- opening a kvr database (file checks, WAL, busy timeout, migrations, refusing newer
 * schemas and foreign files), transactions, the integrity check, SQLite error mapping, the
 * liveness of a run's writer process, and small helpers shared by the module. */
#include "db_internal.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef KVR_BUILD_TYPE
#define KVR_BUILD_TYPE "unknown"
#endif

// ----------------------------------------------------------------------------
// helpers

void db_copy(char *dst, size_t cap, const char *src) {
    if (!cap) return;
    snprintf(dst, cap, "%s", src ? src : "");
}

void db_now_utc(char *buf, size_t len) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int db_bind_text(sqlite3_stmt *s, int i, const char *v) {
    return sqlite3_bind_text(s, i, v ? v : "", -1, SQLITE_TRANSIENT);
}

int db_bind_real(sqlite3_stmt *s, int i, double v) {
    if (!isfinite(v)) return sqlite3_bind_null(s, i);
    return sqlite3_bind_double(s, i, v);
}

void db_col_text(sqlite3_stmt *s, int i, char *dst, size_t cap) {
    const unsigned char *t = sqlite3_column_text(s, i);
    db_copy(dst, cap, t ? (const char *)t : "");
}

double db_col_real(sqlite3_stmt *s, int i) {
    if (sqlite3_column_type(s, i) == SQLITE_NULL) return NAN;
    return sqlite3_column_double(s, i);
}

void kvr_db_free(void *p) {
    free(p);
}

// ----------------------------------------------------------------------------
// errors and statements

kvr_status db_sql_error(sqlite3 *h, const char *path, int rc, const char *what, kvr_error *err) {
    const int prim = rc & 0xff;
    const char *msg = (h && (sqlite3_extended_errcode(h) & 0xff) == prim) ? sqlite3_errmsg(h)
                                                                          : sqlite3_errstr(rc);
    const int sys = h ? sqlite3_system_errno(h) : 0;
    char detail[160] = "";
    kvr_status code = KVR_ERR_DB;
    switch (prim) {
        case SQLITE_FULL: code = KVR_ERR_IO; break;
        case SQLITE_IOERR:
            code = KVR_ERR_IO;
            if (sys == ENOSPC)
                snprintf(detail, sizeof detail, " (no space left on device: the disk is full)");
            else if (sys)
                snprintf(detail, sizeof detail, " (%s)", strerror(sys));
            break;
        case SQLITE_CANTOPEN:
        case SQLITE_PERM:
        case SQLITE_READONLY:
            code = KVR_ERR_IO;
            if (sys) snprintf(detail, sizeof detail, " (%s)", strerror(sys));
            break;
        case SQLITE_NOTADB:
            code = KVR_ERR_FORMAT;
            snprintf(detail, sizeof detail, " (not a kvr database)");
            break;
        case SQLITE_CORRUPT:
            code = KVR_ERR_FORMAT;
            snprintf(detail, sizeof detail, " (the file is damaged; left untouched)");
            break;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
            snprintf(detail, sizeof detail,
                     " (another process held the database longer than the busy timeout)");
            break;
        case SQLITE_NOMEM: code = KVR_ERR_NOMEM; break;
        default: break;
    }
    return kvr_error_set(err, code, "%s: %s: %s%s", path ? path : "db", what, msg, detail);
}

kvr_status db_exec(sqlite3 *h, const char *path, const char *sql, const char *what,
                   kvr_error *err) {
    int rc = sqlite3_exec(h, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) return db_sql_error(h, path, rc, what, err);
    return KVR_OK;
}

kvr_status db_stmt(kvr_db *db, db_stmt_id id, const char *sql, sqlite3_stmt **out,
                   kvr_error *err) {
    if (!db->stmts[id]) {
        int rc = sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &db->stmts[id],
                                    NULL);
        if (rc != SQLITE_OK) return DB_ERR(db, rc, "prepare", err);
    }
    sqlite3_reset(db->stmts[id]);
    sqlite3_clear_bindings(db->stmts[id]);
    *out = db->stmts[id];
    return KVR_OK;
}

kvr_status db_prepare(kvr_db *db, const char *sql, sqlite3_stmt **out, kvr_error *err) {
    int rc = sqlite3_prepare_v2(db->h, sql, -1, out, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(*out);
        *out = NULL;
        return DB_ERR(db, rc, "prepare", err);
    }
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// transactions

kvr_status kvr_db_begin(kvr_db *db, kvr_error *err) {
    if (db->read_only)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: opened read-only", db->path);
    if (db->in_tx)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: a transaction is already open",
                             db->path);
    KVR_TRY(db_exec(db->h, db->path, "BEGIN IMMEDIATE", "begin a write", err));
    db->in_tx = true;
    return KVR_OK;
}

kvr_status kvr_db_commit(kvr_db *db, kvr_error *err) {
    if (!db->in_tx) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: no transaction", db->path);
    kvr_status st = db_exec(db->h, db->path, "COMMIT", "commit", err);
    if (st != KVR_OK) {
        sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
    }
    db->in_tx = false;
    return st;
}

void kvr_db_rollback(kvr_db *db) {
    if (!db || !db->in_tx) return;
    sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
    db->in_tx = false;
}

kvr_status db_tx_begin(kvr_db *db, bool *own, kvr_error *err) {
    *own = false;
    if (db->read_only)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: opened read-only", db->path);
    if (db->in_tx) return KVR_OK;
    KVR_TRY(kvr_db_begin(db, err));
    *own = true;
    return KVR_OK;
}

kvr_status db_tx_end(kvr_db *db, bool own, kvr_status st, kvr_error *err) {
    if (!own) return st;
    if (st != KVR_OK) {
        kvr_db_rollback(db);
        return st;
    }
    return kvr_db_commit(db, err);
}

// ----------------------------------------------------------------------------
// open / close

kvr_db_open_params kvr_db_open_params_default(void) {
    kvr_db_open_params p = {false, true, 30000, false};
    return p;
}

/* Refuse a file that exists but is not an SQLite database, without letting SQLite near it. */
static kvr_status db_check_file(const char *path, const kvr_db_open_params *p, kvr_error *err) {
    struct stat sb;
    if (stat(path, &sb) == 0) {
        if (!S_ISREG(sb.st_mode))
            return kvr_error_set(err, KVR_ERR_FORMAT, "%s: not a regular file", path);
        if (sb.st_size == 0) return KVR_OK; /* an empty file becomes a new database */
        FILE *f = fopen(path, "rb");
        if (!f) return kvr_error_set(err, KVR_ERR_IO, "open %s: %s", path, strerror(errno));
        char head[16] = {0};
        size_t n = fread(head, 1, sizeof head, f);
        fclose(f);
        if (n < sizeof head || memcmp(head, "SQLite format 3", 16) != 0)
            return kvr_error_set(err, KVR_ERR_FORMAT,
                                 "%s: not a kvr database (not an SQLite file); left untouched",
                                 path);
        return KVR_OK;
    }
    if (errno != ENOENT) return kvr_error_set(err, KVR_ERR_IO, "%s: %s", path, strerror(errno));
    if (p->read_only || !p->create)
        return kvr_error_set(err, KVR_ERR_NOT_FOUND, "%s: no such database file", path);
    /* a new file: its directory must exist and be writable */
    char dir[1024];
    db_copy(dir, sizeof dir, path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        db_copy(dir, sizeof dir, ".");
    else if (slash == dir)
        slash[1] = 0;
    else
        *slash = 0;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return kvr_error_set(err, KVR_ERR_NOT_FOUND, "%s: cannot create: directory %s does not exist",
                             path, dir);
    if (access(dir, W_OK) != 0)
        return kvr_error_set(err, KVR_ERR_IO, "%s: cannot create: directory %s is not writable (%s)",
                             path, dir, strerror(errno));
    return KVR_OK;
}

/* PRAGMA journal_mode=WAL needs a moment of exclusive access: retry while another process is
 * inside its own open. */
static kvr_status db_set_wal(kvr_db *db, int32_t timeout_ms, kvr_error *err) {
    const double t_end = kvr_time_us() + 1e3 * (timeout_ms > 0 ? timeout_ms : 1000);
    for (;;) {
        sqlite3_stmt *s = NULL;
        int rc = sqlite3_prepare_v2(db->h, "PRAGMA journal_mode=WAL", -1, &s, NULL);
        if (rc == SQLITE_OK) rc = sqlite3_step(s);
        sqlite3_finalize(s);
        if (rc == SQLITE_ROW || rc == SQLITE_DONE) return KVR_OK;
        if ((rc & 0xff) != SQLITE_BUSY || kvr_time_us() > t_end)
            return DB_ERR(db, rc, "switch to WAL mode", err);
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* The newest kvr version recorded in kvr_schema, for the "made by a newer kvr" message. */
static void db_writer_version(kvr_db *db, char *buf, size_t len) {
    db_copy(buf, len, "?");
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db->h, "SELECT kvr_version FROM kvr_schema ORDER BY version DESC LIMIT 1",
                           -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        db_col_text(s, 0, buf, len);
    sqlite3_finalize(s);
}

/* "file:" URI of a path with immutable=1, percent-encoding what URIs reserve. */
static char *db_file_uri(const char *path) {
    const size_t n = strlen(path);
    char *u = malloc(3 * n + 32);
    if (!u) return NULL;
    size_t k = 0;
    k += (size_t)sprintf(u, "file:");
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if (*p == '?' || *p == '#' || *p == '%' || *p <= 0x20 || *p >= 0x7f)
            k += (size_t)sprintf(u + k, "%%%02X", *p);
        else
            u[k++] = (char)*p;
    }
    sprintf(u + k, "?immutable=1");
    return u;
}

/* The primary result code of a first read (0 = fine). */
static int db_probe(kvr_db *db) {
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db->h, "SELECT count(*) FROM sqlite_master", -1, &s, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : (rc & 0xff);
}

kvr_status kvr_db_open(const char *path, const kvr_db_open_params *params, kvr_db **out,
                       kvr_error *err) {
    *out = NULL;
    const kvr_db_open_params p = params ? *params : kvr_db_open_params_default();
    if (!path || !*path) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "database path is empty");
    const bool memory = strcmp(path, ":memory:") == 0;
    if (!memory) KVR_TRY(db_check_file(path, &p, err));

    kvr_db *db = calloc(1, sizeof *db);
    if (!db || !(db->path = malloc(strlen(path) + 1))) {
        free(db);
        return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(db->path, path, strlen(path) + 1);
    db->read_only = p.read_only;
    /* A SQLITE_OPEN_READONLY connection to a WAL store creates -wal and -shm files and leaves
     * them behind, owned by the reader (another user's store then fails to open for its owner).
     * So a read-only open of a file this process may write (in a writable directory) opens it
     * read-write under PRAGMA query_only, and SQLite removes those files when it closes; one
     * it may not write, with no -wal file (no writer connected), is read as immutable, which
     * creates nothing; only with a live writer's -wal is it a plain read-only connection. */
    bool ro_as_rw = false, ro_immutable = false;
    if (p.read_only && !memory) {
        char *wal = malloc(strlen(path) + 8), *dir = malloc(strlen(path) + 2);
        if (wal && dir) {
            sprintf(wal, "%s-wal", path);
            strcpy(dir, path);
            char *sl = strrchr(dir, '/');
            if (!sl)
                strcpy(dir, ".");
            else
                sl[sl == dir ? 1 : 0] = 0;
            struct stat wb;
            ro_as_rw = access(path, W_OK) == 0 && access(dir, W_OK) == 0;
            ro_immutable = !ro_as_rw && stat(wal, &wb) != 0 && errno == ENOENT;
        }
        free(wal);
        free(dir);
    }
    const int flags = p.read_only && !ro_as_rw
                          ? SQLITE_OPEN_READONLY
                          : (SQLITE_OPEN_READWRITE | (p.create ? SQLITE_OPEN_CREATE : 0));
    kvr_status st = KVR_OK;
    char *imm_uri = ro_immutable ? db_file_uri(path) : NULL;
    int rc = imm_uri ? sqlite3_open_v2(imm_uri, &db->h, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL)
                     : sqlite3_open_v2(path, &db->h, flags, NULL);
    free(imm_uri);
    if (rc != SQLITE_OK) {
        st = DB_ERR(db, rc, "open", err);
        goto fail;
    }
    sqlite3_extended_result_codes(db->h, 1);
    sqlite3_busy_timeout(db->h, p.busy_timeout_ms > 0 ? p.busy_timeout_ms : 0);
    if (ro_as_rw &&
        (st = db_exec(db->h, path, "PRAGMA query_only=1", "open read-only", err)) != KVR_OK)
        goto fail;
    if (!p.read_only && sqlite3_db_readonly(db->h, "main") == 1) {
        st = kvr_error_set(err, KVR_ERR_IO,
                           "%s: not writable (a read-only file or location); nothing was changed",
                           path);
        goto fail;
    }
    const int probe = p.read_only && !memory ? db_probe(db) : 0;
    if (probe == SQLITE_CANTOPEN || probe == SQLITE_READONLY) {
        /* A WAL file in a read-only location: SQLite cannot create the -shm index there. Nobody
         * can write it either, so it is read as immutable. */
        sqlite3_close_v2(db->h);
        db->h = NULL;
        char *uri = db_file_uri(path);
        rc = uri ? sqlite3_open_v2(uri, &db->h, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL)
                 : SQLITE_NOMEM;
        free(uri);
        if (rc != SQLITE_OK) {
            st = DB_ERR(db, rc, "open read-only", err);
            goto fail;
        }
        sqlite3_extended_result_codes(db->h, 1);
    }

    /* version and schema objects in one read transaction: another process may be creating
     * the schema right now, and its commit must not fall between the two reads */
    int32_t v = 0;
    int n_obj = 0;
    if ((st = db_exec(db->h, path, "BEGIN", "open", err)) != KVR_OK) goto fail;
    st = db_user_version(db->h, path, &v, err);
    if (st == KVR_OK) {
        sqlite3_stmt *s = NULL;
        rc = sqlite3_prepare_v2(db->h, "SELECT count(*) FROM sqlite_master", -1, &s, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) n_obj = sqlite3_column_int(s, 0);
        sqlite3_finalize(s);
        if (rc != SQLITE_ROW) st = DB_ERR(db, rc, "open", err);
    }
    sqlite3_exec(db->h, "COMMIT", NULL, NULL, NULL);
    if (st != KVR_OK) goto fail;
    const int32_t latest = db_schema_latest();
    if (v < 0) {
        st = kvr_error_set(err, KVR_ERR_FORMAT,
                           "%s: schema version %d is not one kvr ever wrote (versions are 1..%d): "
                           "a damaged or edited file; left untouched",
                           path, v, latest);
        goto fail;
    }
    if (v > latest) {
        /* the kvr_schema table names the writer's version; a development build of the same
         * version number can carry a newer schema, so say so rather than "newer (0.1.0)" */
        char by[32], who[96];
        db_writer_version(db, by, sizeof by);
        if (!strcmp(by, "?"))
            snprintf(who, sizeof who, "%s", "");
        else if (!strcmp(by, kvr_version()))
            snprintf(who, sizeof who, " (a build of %.31s with a newer schema)", by);
        else
            snprintf(who, sizeof who, " (%.31s)", by);
        st = kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                           "%s: schema version %d was written by a newer kvr%s; this kvr %s "
                           "(commit %s) reads versions up to %d: upgrade kvr to use this file",
                           path, v, who, kvr_version(), kvr_build_commit(), latest);
        goto fail;
    }
    if (v == 0) { /* new, or somebody else's SQLite file */
        if (n_obj > 0) {
            st = kvr_error_set(err, KVR_ERR_FORMAT,
                               "%s: an SQLite database but not a kvr one (%d schema objects, no "
                               "kvr schema version); left untouched", path, n_obj);
            goto fail;
        }
        if (p.read_only) {
            st = kvr_error_set(err, KVR_ERR_FORMAT, "%s: empty file, not a kvr database yet",
                               path);
            goto fail;
        }
    }
    if (p.verify && v > 0) {
        sqlite3_stmt *s = NULL;
        rc = sqlite3_prepare_v2(db->h, "PRAGMA quick_check(1)", -1, &s, NULL);
        if (rc == SQLITE_OK) rc = sqlite3_step(s);
        const char *res = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(s, 0) : NULL;
        if (rc == SQLITE_ROW && (!res || strcmp(res, "ok") != 0))
            st = kvr_error_set(err, KVR_ERR_FORMAT,
                               "%s: the database is damaged (%.200s); left untouched: see "
                               "kvr-db check, or start a new file", path, res ? res : "?");
        else if (rc != SQLITE_ROW)
            st = DB_ERR(db, rc, "verify", err);
        sqlite3_finalize(s);
        if (st != KVR_OK) goto fail;
    }
    if (!p.read_only) {
        if (!memory && (st = db_set_wal(db, p.busy_timeout_ms, err)) != KVR_OK) goto fail;
        if ((st = db_exec(db->h, path, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON",
                          "set pragmas", err)) != KVR_OK)
            goto fail;
        if ((st = db_migrate(db->h, path, latest, err)) != KVR_OK) goto fail;
        if ((st = db_user_version(db->h, path, &v, err)) != KVR_OK) goto fail;
    }
    db->version = v;
    *out = db;
    return KVR_OK;
fail:
    kvr_db_close(db);
    return st;
}

void kvr_db_close(kvr_db *db) {
    if (!db) return;
    kvr_db_rollback(db);
    for (int i = 0; i < DB_STMT_COUNT; i++) sqlite3_finalize(db->stmts[i]);
    sqlite3_close_v2(db->h);
    free(db->path);
    free(db);
}

const char *kvr_db_path(const kvr_db *db) {
    return db->path;
}

int32_t kvr_db_schema_version(const kvr_db *db) {
    return db->version;
}

// ----------------------------------------------------------------------------
// integrity check

static void db_report(char *report, size_t len, int *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void db_report(char *report, size_t len, int *n, const char *fmt, ...) {
    (*n)++;
    if (!report || !len) return;
    size_t used = strlen(report);
    if (used + 1 >= len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(report + used, len - used, fmt, ap);
    va_end(ap);
    used = strlen(report);
    if (used + 1 < len) {
        report[used] = '\n';
        report[used + 1] = 0;
    }
}

kvr_status kvr_db_check(kvr_db *db, bool *ok, char *report, size_t report_len, kvr_error *err) {
    if (report && report_len) report[0] = 0;
    int n_bad = 0;
    sqlite3_stmt *s = NULL;
    KVR_TRY(db_prepare(db, "PRAGMA integrity_check", &s, err));
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        if (t && strcmp(t, "ok") != 0) db_report(report, report_len, &n_bad, "integrity: %s", t);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) return DB_ERR(db, rc, "integrity check", err);

    KVR_TRY(db_prepare(db, "PRAGMA foreign_key_check", &s, err));
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        db_report(report, report_len, &n_bad, "foreign key: table %s row %lld refers to a missing %s",
                  (const char *)sqlite3_column_text(s, 0), (long long)sqlite3_column_int64(s, 1),
                  (const char *)sqlite3_column_text(s, 2));
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) return DB_ERR(db, rc, "foreign key check", err);

    KVR_TRY(db_prepare(db, "SELECT coalesce(max(version), 0), count(*) FROM kvr_schema", &s, err));
    if ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int32_t mx = sqlite3_column_int(s, 0), cnt = sqlite3_column_int(s, 1);
        if (mx != db->version || cnt != db->version)
            db_report(report, report_len, &n_bad,
                      "schema: user_version %d but kvr_schema holds %d steps up to version %d",
                      db->version, cnt, mx);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW) return DB_ERR(db, rc, "schema check", err);

    static const char *const orphan_sql[] = {
        "SELECT count(*) FROM layer_samples WHERE run_id NOT IN (SELECT id FROM runs)",
        "SELECT count(*) FROM transfer_samples WHERE run_id NOT IN (SELECT id FROM runs)",
    };
    for (int i = 0; i < 2; i++) {
        KVR_TRY(db_prepare(db, orphan_sql[i], &s, err));
        if ((rc = sqlite3_step(s)) == SQLITE_ROW && sqlite3_column_int64(s, 0) > 0)
            db_report(report, report_len, &n_bad, "%lld %s samples belong to no run",
                      (long long)sqlite3_column_int64(s, 0), i ? "transfer" : "layer");
        sqlite3_finalize(s);
        if (rc != SQLITE_ROW) return DB_ERR(db, rc, "orphan check", err);
    }
    *ok = n_bad == 0;
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// provenance and process liveness

kvr_db_run kvr_db_run_init(const char *kind) {
    kvr_db_run r;
    memset(&r, 0, sizeof r);
    DB_COPY(r.kind, kind);
    r.status = KVR_RUN_RUNNING;
    DB_COPY(r.kvr_version, kvr_version());
    DB_COPY(r.git_commit, kvr_build_commit());
    DB_COPY(r.build_type, KVR_BUILD_TYPE);
    if (gethostname(r.host, sizeof r.host) != 0) DB_COPY(r.host, "unknown");
    r.host[sizeof r.host - 1] = 0;
    db_now_utc(r.ts_utc, sizeof r.ts_utc);
    r.n_threads = 1;
    r.n_ranks = 1;
    r.time_budget_s = NAN;
    r.rel_tol = NAN;
    r.timer_overhead_us = NAN;
    kvr_db_self_pid(&r.pid, &r.pid_start);
    return r;
}

/* Start time (clock ticks after boot) of a process from /proc/PID/stat; 0 if unknown, -1 if
 * the process is a zombie (dead, not yet reaped). */
static int64_t db_proc_start(int64_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%lld/stat", (long long)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p) return 0;
    p++;
    /* fields after the name: 3 state, 4 ppid, ..., 22 starttime */
    char state = 0;
    long long start = 0;
    int field = 2;
    char *save = NULL;
    for (char *tok = strtok_r(p, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        field++;
        if (field == 3) state = tok[0];
        if (field == 22) {
            start = strtoll(tok, NULL, 10);
            break;
        }
    }
    if (state == 'Z' || state == 'X') return -1;
    return start;
}

void kvr_db_self_pid(int64_t *pid, int64_t *pid_start) {
    *pid = (int64_t)getpid();
    int64_t s = db_proc_start(*pid);
    *pid_start = s > 0 ? s : 0;
}

bool kvr_db_run_owner_alive(const kvr_db_run *run) {
    char host[128];
    if (gethostname(host, sizeof host) != 0) return true;
    host[sizeof host - 1] = 0;
    if (strcmp(host, run->host) != 0 || run->pid <= 0) return true; /* cannot tell */
    if (kill((pid_t)run->pid, 0) != 0 && errno == ESRCH) return false;
    int64_t s = db_proc_start(run->pid);
    if (s < 0) return false;                                    /* zombie */
    if (s > 0 && run->pid_start > 0 && s != run->pid_start) return false; /* pid reused */
    return true;
}
