/* db_io.c -- export of a run as CSV or JSON, and the CSV import parser (docs/db.md): '#' lines
 * carry provenance as "# key: value" (model.*, device.*, run.*), one header row names the
 * columns (any order), then one row per sample, kind "layer" or "transfer". The parser takes a
 * length-delimited buffer, never reads past it, bounds every size, rejects unknown columns and
 * keys, malformed numbers, inconsistent statistics and duplicate samples with "name:line: cause",
 * and is fuzzed (tests/fuzz/fuzz_db_csv.c). Export writes the same format, so export, import
 * round-trips. */
#include "db_internal.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// export text

void db_buf_json_str(kvr_text *b, const char *s) {
    kvr_text_printf(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            kvr_text_printf(b, "\\%c", *p);
        } else if (*p < 0x20 || *p == 0x7F) {
            kvr_text_printf(b, "\\u%04x", *p);
        } else if (*p < 0x80) {
            kvr_text_printf(b, "%c", *p);
        } else { /* UTF-8 as it is; any other byte (a store written before import checked) as
                  * the replacement character, so the JSON stays valid UTF-8 */
            const int n = kvr_utf8_seq_len((const char *)p);
            if (n == 0)
                kvr_text_printf(b, "\\ufffd");
            else
                kvr_text_printf(b, "%.*s", n, (const char *)p);
            if (n > 1) p += n - 1;
        }
    }
    kvr_text_printf(b, "\"");
}

void db_buf_json_num(kvr_text *b, double v) {
    if (isfinite(v))
        kvr_text_printf(b, "%.9g", v);
    else
        kvr_text_printf(b, "null");
}

void db_buf_csv_str(kvr_text *b, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) {
        kvr_text_printf(b, "%s", s);
        return;
    }
    kvr_text_printf(b, "\"");
    for (const char *p = s; *p; p++) {
        if (*p == '\r' || *p == '\n') continue; /* the format keeps one record per line */
        kvr_text_printf(b, *p == '"' ? "\"\"" : "%c", *p);
    }
    kvr_text_printf(b, "\"");
}

static void db_buf_csv_num(kvr_text *b, double v) {
    if (isfinite(v)) kvr_text_printf(b, "%.9g", v);
}

static kvr_status db_buf_finish(kvr_text *b, const char *path, char **out, kvr_error *err) {
    if (kvr_text_take(b, out, NULL, NULL) != KVR_OK)
        return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory exporting", path);
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// provenance keys ("# key: value" lines), shared by export and import

typedef enum db_key_type { DB_KEY_STR, DB_KEY_I32, DB_KEY_I64, DB_KEY_F64, DB_KEY_BOOL } db_key_type;
typedef struct db_key {
    const char *name;
    db_key_type type;
    size_t off, size; /* within kvr_db_csv */
} db_key;

#define DBK(name, type, member)                                                                    \
    { name, type, offsetof(kvr_db_csv, member), sizeof(((kvr_db_csv *)0)->member) }
static const db_key db_keys[] = {
    DBK("model.name", DB_KEY_STR, model.name),
    DBK("model.arch", DB_KEY_STR, model.arch),
    DBK("model.source", DB_KEY_STR, model.source),
    DBK("model.n_layers", DB_KEY_I32, model.n_layers),
    DBK("model.d_model", DB_KEY_I32, model.d_model),
    DBK("model.n_heads", DB_KEY_I32, model.n_heads),
    DBK("model.n_kv_heads", DB_KEY_I32, model.n_kv_heads),
    DBK("model.head_dim", DB_KEY_I32, model.head_dim),
    DBK("model.d_ff", DB_KEY_I32, model.d_ff),
    DBK("model.vocab_size", DB_KEY_I32, model.vocab_size),
    DBK("model.max_context", DB_KEY_I32, model.max_context),
    DBK("model.rope_theta", DB_KEY_F64, model.rope_theta),
    DBK("model.tied_embeddings", DB_KEY_BOOL, model.tied_embeddings),
    DBK("model.kv_bytes_per_token", DB_KEY_I64, model.kv_bytes_per_token),
    DBK("model.content_hash", DB_KEY_STR, model.content_hash),
    DBK("device.kind", DB_KEY_STR, device.kind),
    DBK("device.name", DB_KEY_STR, device.name),
    DBK("device.host", DB_KEY_STR, device.host),
    DBK("device.n_cores", DB_KEY_I32, device.n_cores),
    DBK("device.n_sms", DB_KEY_I32, device.n_sms),
    DBK("device.clock_mhz", DB_KEY_F64, device.clock_mhz),
    DBK("device.mem_bytes", DB_KEY_I64, device.mem_bytes),
    DBK("device.driver_version", DB_KEY_STR, device.driver_version),
    DBK("device.cuda_version", DB_KEY_STR, device.cuda_version),
    DBK("device.nccl_version", DB_KEY_STR, device.nccl_version),
    DBK("device.blas", DB_KEY_STR, device.blas),
    DBK("device.mpi_version", DB_KEY_STR, device.mpi_version),
    DBK("run.backend", DB_KEY_STR, run.backend),
    DBK("run.dtype", DB_KEY_STR, run.dtype),
    DBK("run.transport", DB_KEY_STR, run.transport),
    DBK("run.n_threads", DB_KEY_I32, run.n_threads),
    DBK("run.n_ranks", DB_KEY_I32, run.n_ranks),
    DBK("run.kvr_version", DB_KEY_STR, run.kvr_version),
    DBK("run.git_commit", DB_KEY_STR, run.git_commit),
    DBK("run.build_type", DB_KEY_STR, run.build_type),
    DBK("run.host", DB_KEY_STR, run.host),
    DBK("run.device_name", DB_KEY_STR, run.device_name),
    DBK("run.blas", DB_KEY_STR, run.blas),
    DBK("run.mpi_version", DB_KEY_STR, run.mpi_version),
    DBK("run.cuda_version", DB_KEY_STR, run.cuda_version),
    DBK("run.nccl_version", DB_KEY_STR, run.nccl_version),
    DBK("run.ts_utc", DB_KEY_STR, run.ts_utc),
    DBK("run.n_warmup", DB_KEY_I32, run.n_warmup),
    DBK("run.n_iters_min", DB_KEY_I32, run.n_iters_min),
    DBK("run.n_iters_max", DB_KEY_I32, run.n_iters_max),
    DBK("run.time_budget_s", DB_KEY_F64, run.time_budget_s),
    DBK("run.rel_tol", DB_KEY_F64, run.rel_tol),
    DBK("run.timer_overhead_us", DB_KEY_F64, run.timer_overhead_us),
    DBK("run.grid", DB_KEY_STR, run.grid),
    DBK("run.ops", DB_KEY_STR, run.ops),
    DBK("run.source", DB_KEY_STR, run.source),
    DBK("run.note", DB_KEY_STR, run.note),
};
#define DB_N_KEYS (sizeof db_keys / sizeof db_keys[0])

static void db_key_write(kvr_text *b, const kvr_db_csv *c, const db_key *k) {
    const char *base = (const char *)c + k->off;
    switch (k->type) {
        case DB_KEY_STR:
            if (*base) kvr_text_printf(b, "# %s: %s\n", k->name, base);
            break;
        case DB_KEY_I32: {
            int32_t v;
            memcpy(&v, base, sizeof v);
            if (v) kvr_text_printf(b, "# %s: %d\n", k->name, v);
            break;
        }
        case DB_KEY_I64: {
            int64_t v;
            memcpy(&v, base, sizeof v);
            if (v) kvr_text_printf(b, "# %s: %lld\n", k->name, (long long)v);
            break;
        }
        case DB_KEY_F64: {
            double v;
            memcpy(&v, base, sizeof v);
            if (isfinite(v) && v != 0) kvr_text_printf(b, "# %s: %.9g\n", k->name, v);
            break;
        }
        case DB_KEY_BOOL: {
            bool v;
            memcpy(&v, base, sizeof v);
            kvr_text_printf(b, "# %s: %d\n", k->name, v ? 1 : 0);
            break;
        }
    }
}

// ----------------------------------------------------------------------------
// export

static const char db_csv_header[] =
    "kind,op,c,prefix,pattern,src,dst,n_ranks,size_bytes,n_warmup,n_iters,min_us,p10_us,"
    "median_us,p90_us,mean_us,stddev_us,max_us,is_stable,algbw_gbps,busbw_gbps,busbw_factor";

static kvr_status db_export_load(kvr_db *db, int64_t run_id, kvr_db_csv *c, kvr_error *err) {
    memset(c, 0, sizeof *c);
    KVR_TRY(kvr_db_run_get(db, run_id, &c->run, err));
    if (c->run.model_id > 0) KVR_TRY(kvr_db_model_get(db, c->run.model_id, &c->model, err));
    if (c->run.device_id > 0) KVR_TRY(kvr_db_device_get(db, c->run.device_id, &c->device, err));
    KVR_TRY(kvr_db_layer_samples_get(db, run_id, &c->layers, &c->n_layers, err));
    kvr_status st = kvr_db_transfer_samples_get(db, run_id, &c->transfers, &c->n_transfers, err);
    if (st != KVR_OK) free(c->layers);
    return st;
}

static void db_csv_stats(kvr_text *b, const kvr_timing_stats *t) {
    kvr_text_printf(b, "%d,%d,", t->n_warmup, t->n_iters);
    const double v[7] = {t->min_us,  t->p10_us,    t->median_us, t->p90_us,
                         t->mean_us, t->stddev_us, t->max_us};
    for (int i = 0; i < 7; i++) {
        db_buf_csv_num(b, v[i]);
        kvr_text_printf(b, ",");
    }
    kvr_text_printf(b, "%d", t->is_stable ? 1 : 0);
}

kvr_status kvr_db_export_csv(kvr_db *db, int64_t run_id, char **out, kvr_error *err) {
    *out = NULL;
    kvr_db_csv c;
    KVR_TRY(db_export_load(db, run_id, &c, err));
    kvr_text b = {0};
    kvr_text_printf(&b, "# kvr-csv 1\n# exported from %s run %lld (%s, %s)\n", db->path,
                    (long long)run_id, c.run.kind, kvr_run_status_name(c.run.status));
    for (size_t i = 0; i < DB_N_KEYS; i++) {
        if (strncmp(db_keys[i].name, "model.", 6) == 0 && c.run.model_id <= 0) continue;
        if (strncmp(db_keys[i].name, "device.", 7) == 0 && c.run.device_id <= 0) continue;
        db_key_write(&b, &c, &db_keys[i]);
    }
    kvr_text_printf(&b, "%s\n", db_csv_header);
    for (int64_t i = 0; i < c.n_layers; i++) {
        const kvr_db_layer_sample *x = &c.layers[i];
        kvr_text_printf(&b, "layer,");
        db_buf_csv_str(&b, x->op);
        kvr_text_printf(&b, ",%lld,%lld,,,,,,", (long long)x->c, (long long)x->prefix);
        db_csv_stats(&b, &x->stats);
        kvr_text_printf(&b, ",,,\n");
    }
    for (int64_t i = 0; i < c.n_transfers; i++) {
        const kvr_db_transfer_sample *x = &c.transfers[i];
        kvr_text_printf(&b, "transfer,,,,");
        db_buf_csv_str(&b, x->pattern);
        kvr_text_printf(&b, ",%d,%d,%d,%lld,", x->src, x->dst, x->n_ranks,
                        (long long)x->size_bytes);
        db_csv_stats(&b, &x->stats);
        kvr_text_printf(&b, ",");
        db_buf_csv_num(&b, x->algbw_gbps);
        kvr_text_printf(&b, ",");
        db_buf_csv_num(&b, x->busbw_gbps);
        kvr_text_printf(&b, ",");
        db_buf_csv_num(&b, x->busbw_factor);
        kvr_text_printf(&b, "\n");
    }
    free(c.layers);
    free(c.transfers);
    return db_buf_finish(&b, db->path, out, err);
}

static void db_json_stats(kvr_text *b, const kvr_timing_stats *t) {
    kvr_text_printf(b, "\"n_warmup\":%d,\"n_iters\":%d", t->n_warmup, t->n_iters);
    const char *names[7] = {"min_us", "p10_us", "median_us", "p90_us", "mean_us", "stddev_us",
                            "max_us"};
    const double v[7] = {t->min_us,  t->p10_us,    t->median_us, t->p90_us,
                         t->mean_us, t->stddev_us, t->max_us};
    for (int i = 0; i < 7; i++) {
        kvr_text_printf(b, ",\"%s\":", names[i]);
        db_buf_json_num(b, v[i]);
    }
    kvr_text_printf(b, ",\"is_stable\":%s", t->is_stable ? "true" : "false");
}

static void db_json_section(kvr_text *b, const kvr_db_csv *c, const char *prefix) {
    size_t plen = strlen(prefix);
    bool first = true;
    kvr_text_printf(b, "{");
    for (size_t i = 0; i < DB_N_KEYS; i++) {
        const db_key *k = &db_keys[i];
        if (strncmp(k->name, prefix, plen) != 0) continue;
        const char *base = (const char *)c + k->off;
        kvr_text_printf(b, "%s\"%s\":", first ? "" : ",", k->name + plen);
        first = false;
        switch (k->type) {
            case DB_KEY_STR: db_buf_json_str(b, base); break;
            case DB_KEY_I32: {
                int32_t v;
                memcpy(&v, base, sizeof v);
                kvr_text_printf(b, "%d", v);
                break;
            }
            case DB_KEY_I64: {
                int64_t v;
                memcpy(&v, base, sizeof v);
                kvr_text_printf(b, "%lld", (long long)v);
                break;
            }
            case DB_KEY_F64: {
                double v;
                memcpy(&v, base, sizeof v);
                db_buf_json_num(b, v);
                break;
            }
            case DB_KEY_BOOL: {
                bool v;
                memcpy(&v, base, sizeof v);
                kvr_text_printf(b, "%s", v ? "true" : "false");
                break;
            }
        }
    }
}

kvr_status kvr_db_export_json(kvr_db *db, int64_t run_id, char **out, kvr_error *err) {
    *out = NULL;
    kvr_db_csv c;
    KVR_TRY(db_export_load(db, run_id, &c, err));
    kvr_text b = {0};
    kvr_text_printf(&b, "{\"kvr_db_export\":1,\"run\":");
    db_json_section(&b, &c, "run.");
    kvr_text_printf(&b, ",\"id\":%lld,\"kind\":", (long long)c.run.id);
    db_buf_json_str(&b, c.run.kind);
    kvr_text_printf(&b, ",\"status\":\"%s\",\"ts_end_utc\":", kvr_run_status_name(c.run.status));
    db_buf_json_str(&b, c.run.ts_end_utc);
    kvr_text_printf(&b, ",\"params\":");
    db_buf_json_str(&b, c.run.params);
    kvr_text_printf(&b, ",\"pid\":%lld}", (long long)c.run.pid);
    kvr_text_printf(&b, ",\"model\":");
    if (c.run.model_id > 0) {
        db_json_section(&b, &c, "model.");
        kvr_text_printf(&b, ",\"id\":%lld}", (long long)c.model.id);
    } else {
        kvr_text_printf(&b, "null");
    }
    kvr_text_printf(&b, ",\"device\":");
    if (c.run.device_id > 0) {
        db_json_section(&b, &c, "device.");
        kvr_text_printf(&b, ",\"id\":%lld}", (long long)c.device.id);
    } else {
        kvr_text_printf(&b, "null");
    }
    kvr_text_printf(&b, ",\"layer_samples\":[");
    for (int64_t i = 0; i < c.n_layers; i++) {
        const kvr_db_layer_sample *x = &c.layers[i];
        kvr_text_printf(&b, "%s{\"op\":", i ? "," : "");
        db_buf_json_str(&b, x->op);
        kvr_text_printf(&b, ",\"c\":%lld,\"prefix\":%lld,", (long long)x->c, (long long)x->prefix);
        db_json_stats(&b, &x->stats);
        kvr_text_printf(&b, "}");
    }
    kvr_text_printf(&b, "],\"transfer_samples\":[");
    for (int64_t i = 0; i < c.n_transfers; i++) {
        const kvr_db_transfer_sample *x = &c.transfers[i];
        kvr_text_printf(&b, "%s{\"pattern\":", i ? "," : "");
        db_buf_json_str(&b, x->pattern);
        kvr_text_printf(&b, ",\"src\":%d,\"dst\":%d,\"n_ranks\":%d,\"size_bytes\":%lld,", x->src,
                        x->dst, x->n_ranks, (long long)x->size_bytes);
        db_json_stats(&b, &x->stats);
        kvr_text_printf(&b, ",\"algbw_gbps\":");
        db_buf_json_num(&b, x->algbw_gbps);
        kvr_text_printf(&b, ",\"busbw_gbps\":");
        db_buf_json_num(&b, x->busbw_gbps);
        kvr_text_printf(&b, ",\"busbw_factor\":");
        db_buf_json_num(&b, x->busbw_factor);
        kvr_text_printf(&b, "}");
    }
    kvr_text_printf(&b, "]}\n");
    free(c.layers);
    free(c.transfers);
    return db_buf_finish(&b, db->path, out, err);
}

// ----------------------------------------------------------------------------
// import: parser

#define DB_CSV_MAX_LINE   65536
#define DB_CSV_MAX_FIELDS 64
#define DB_CSV_MAX_FIELD  256
#define DB_CSV_MAX_ROWS   4000000

enum {
    DB_COL_KIND, DB_COL_OP, DB_COL_C, DB_COL_PREFIX, DB_COL_PATTERN, DB_COL_SRC, DB_COL_DST,
    DB_COL_N_RANKS, DB_COL_SIZE, DB_COL_N_WARMUP, DB_COL_N_ITERS, DB_COL_MIN, DB_COL_P10,
    DB_COL_MEDIAN, DB_COL_P90, DB_COL_MEAN, DB_COL_STDDEV, DB_COL_MAX, DB_COL_STABLE,
    DB_COL_ALGBW, DB_COL_BUSBW, DB_COL_FACTOR, DB_N_COLS
};
static const char *const db_col_names[DB_N_COLS] = {
    "kind",   "op",      "c",      "prefix",    "pattern",    "src",        "dst",    "n_ranks",
    "size_bytes", "n_warmup", "n_iters", "min_us", "p10_us", "median_us", "p90_us", "mean_us",
    "stddev_us",  "max_us",   "is_stable", "algbw_gbps", "busbw_gbps", "busbw_factor"};

static const char *const db_patterns[] = {"p2p", "chain", "chain_compute", "allgather"};

typedef struct db_csv_ctx {
    const char *name;
    int64_t line;
    kvr_error *err;
} db_csv_ctx;

static kvr_status db_csv_fail(db_csv_ctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static kvr_status db_csv_fail(db_csv_ctx *x, const char *fmt, ...) {
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kvr_error_set(x->err, KVR_ERR_FORMAT, "%.200s:%lld: %s", x->name, (long long)x->line,
                         msg);
}

/* Split one line (no newline) into fields; quotes per RFC 4180 ("" is a quote). Each field is
 * copied NUL-terminated into f[i] (DB_CSV_MAX_FIELD bytes each). */
static kvr_status db_csv_split(db_csv_ctx *x, const char *s, size_t n, char (*f)[DB_CSV_MAX_FIELD],
                               int *nf) {
    int k = 0;
    size_t i = 0;
    for (;;) {
        if (k >= DB_CSV_MAX_FIELDS) return db_csv_fail(x, "more than %d fields", DB_CSV_MAX_FIELDS);
        size_t len = 0;
        if (i < n && s[i] == '"') {
            i++;
            for (;;) {
                if (i >= n) /* lines are records: a quoted line break ends up here */
                    return db_csv_fail(x, "field %d: unterminated quote (a quoted field cannot "
                                          "hold a line break: one record per line)",
                                       k + 1);
                if (s[i] == '"') {
                    if (i + 1 < n && s[i + 1] == '"') {
                        i += 2;
                        if (len + 1 >= DB_CSV_MAX_FIELD) goto too_long;
                        f[k][len++] = '"';
                        continue;
                    }
                    i++;
                    break;
                }
                if (len + 1 >= DB_CSV_MAX_FIELD) goto too_long;
                f[k][len++] = s[i++];
            }
            if (i < n && s[i] != ',')
                return db_csv_fail(x, "field %d: text after the closing quote", k + 1);
        } else {
            while (i < n && s[i] != ',') {
                if (s[i] == '"') return db_csv_fail(x, "field %d: quote inside an unquoted field", k + 1);
                if (len + 1 >= DB_CSV_MAX_FIELD) goto too_long;
                f[k][len++] = s[i++];
            }
        }
        /* trim spaces around unquoted-style values */
        while (len > 0 && (f[k][len - 1] == ' ' || f[k][len - 1] == '\t')) len--;
        f[k][len] = 0;
        size_t lead = strspn(f[k], " \t");
        if (lead) memmove(f[k], f[k] + lead, len - lead + 1);
        k++;
        if (i >= n) break;
        i++; /* the comma */
    }
    *nf = k;
    return KVR_OK;
too_long:
    return db_csv_fail(x, "field %d longer than %d bytes", k + 1, DB_CSV_MAX_FIELD - 1);
}

static kvr_status db_csv_i64(db_csv_ctx *x, const char *what, const char *v, int64_t lo,
                             int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long r = strtoll(v, &end, 10);
    if (!*v || *end || errno)
        return db_csv_fail(x, "%s: '%.40s' is not an integer", what, v);
    if (r < lo || r > hi)
        return db_csv_fail(x, "%s: %lld is out of range [%lld, %lld]", what, r, (long long)lo,
                           (long long)hi);
    *out = r;
    return KVR_OK;
}

static kvr_status db_csv_f64(db_csv_ctx *x, const char *what, const char *v, double lo, double hi,
                             double *out) {
    char *end;
    errno = 0;
    double r = strtod(v, &end);
    if (!*v || *end || errno == ERANGE || !isfinite(r))
        return db_csv_fail(x, "%s: '%.40s' is not a finite number", what, v);
    if (r < lo || r > hi) return db_csv_fail(x, "%s: %g is out of range [%g, %g]", what, r, lo, hi);
    *out = r;
    return KVR_OK;
}

static kvr_status db_csv_meta(db_csv_ctx *x, kvr_db_csv *c, const char *line, size_t n,
                              bool *seen) {
    /* "# key: value" with key a.b; anything else after '#' is a comment */
    size_t i = 1;
    while (i < n && (line[i] == ' ' || line[i] == '\t')) i++;
    size_t k0 = i;
    while (i < n && (line[i] == '_' || line[i] == '.' || (line[i] >= 'a' && line[i] <= 'z') ||
                     (line[i] >= '0' && line[i] <= '9')))
        i++;
    size_t k1 = i;
    if (k1 == k0 || i >= n || line[i] != ':' || !memchr(line + k0, '.', k1 - k0)) return KVR_OK;
    char key[64];
    if (k1 - k0 >= sizeof key) return db_csv_fail(x, "provenance key too long");
    memcpy(key, line + k0, k1 - k0);
    key[k1 - k0] = 0;
    if (strncmp(key, "model.", 6) && strncmp(key, "device.", 7) && strncmp(key, "run.", 4))
        return KVR_OK; /* somebody else's "a.b:" comment */
    i++;
    while (i < n && (line[i] == ' ' || line[i] == '\t')) i++;
    size_t v1 = n;
    while (v1 > i && (line[v1 - 1] == ' ' || line[v1 - 1] == '\t')) v1--;
    char val[DB_CSV_MAX_FIELD];
    if (v1 - i >= sizeof val) return db_csv_fail(x, "%s: value longer than %d bytes", key, (int)sizeof val - 1);
    memcpy(val, line + i, v1 - i);
    val[v1 - i] = 0;
    for (size_t j = 0; j < DB_N_KEYS; j++) {
        const db_key *k = &db_keys[j];
        if (strcmp(k->name, key) != 0) continue;
        if (seen[j]) return db_csv_fail(x, "%s given twice", key);
        seen[j] = true;
        char *base = (char *)c + k->off;
        int64_t iv = 0;
        double dv = 0;
        switch (k->type) {
            case DB_KEY_STR: db_copy(base, k->size, val); break;
            case DB_KEY_I32: {
                KVR_TRY(db_csv_i64(x, key, val, 0, INT32_MAX, &iv));
                int32_t v32 = (int32_t)iv;
                memcpy(base, &v32, sizeof v32);
                break;
            }
            case DB_KEY_I64:
                KVR_TRY(db_csv_i64(x, key, val, 0, INT64_MAX, &iv));
                memcpy(base, &iv, sizeof iv);
                break;
            case DB_KEY_F64:
                KVR_TRY(db_csv_f64(x, key, val, 0, 1e300, &dv));
                memcpy(base, &dv, sizeof dv);
                break;
            case DB_KEY_BOOL: {
                KVR_TRY(db_csv_i64(x, key, val, 0, 1, &iv));
                bool bv = iv != 0;
                memcpy(base, &bv, sizeof bv);
                break;
            }
        }
        return KVR_OK;
    }
    return db_csv_fail(x, "unknown provenance key '%s' (see docs/db.md)", key);
}

/* a > b beyond the rounding of exported numbers (relative to the larger magnitude: the
 * statistics of overhead rows may be negative) */
static bool db_csv_above(double a, double b) {
    return a - b > 1e-9 * fmax(fabs(a), fabs(b));
}

/* Statistics columns shared by both kinds (allow_negative: overhead rows hold signed excesses;
 * stddev stays >= 0). */
static kvr_status db_csv_row_stats(db_csv_ctx *x, char (*f)[DB_CSV_MAX_FIELD], const int *col,
                                   bool allow_negative, kvr_timing_stats *t) {
    int64_t iv = 0;
    t->n_warmup = 0;
    t->n_iters = 1;
    if (col[DB_COL_N_WARMUP] >= 0 && f[col[DB_COL_N_WARMUP]][0]) {
        KVR_TRY(db_csv_i64(x, "n_warmup", f[col[DB_COL_N_WARMUP]], 0, 1000000000, &iv));
        t->n_warmup = (int32_t)iv;
    }
    if (col[DB_COL_N_ITERS] >= 0 && f[col[DB_COL_N_ITERS]][0]) {
        KVR_TRY(db_csv_i64(x, "n_iters", f[col[DB_COL_N_ITERS]], 1, 1000000000, &iv));
        t->n_iters = (int32_t)iv;
    }
    double *dst[7] = {&t->min_us,  &t->p10_us,    &t->median_us, &t->p90_us,
                      &t->mean_us, &t->stddev_us, &t->max_us};
    for (int i = 0; i < 7; i++) {
        const int ci = col[DB_COL_MIN + i];
        *dst[i] = NAN;
        if (ci >= 0 && f[ci][0])
            KVR_TRY(db_csv_f64(x, db_col_names[DB_COL_MIN + i], f[ci],
                               allow_negative && i != 5 ? -1e15 : 0, 1e15, dst[i]));
    }
    if (!isfinite(t->median_us)) return db_csv_fail(x, "median_us is empty");
    /* order: min <= p10 <= median <= p90 <= max, mean within [min, max]; a relative slack for
     * the rounding of the exported text, on magnitudes (overhead rows are signed) */
    const double ord[5] = {t->min_us, t->p10_us, t->median_us, t->p90_us, t->max_us};
    const char *on[5] = {"min_us", "p10_us", "median_us", "p90_us", "max_us"};
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            if (isfinite(ord[i]) && isfinite(ord[j]) && db_csv_above(ord[i], ord[j]))
                return db_csv_fail(x, "%s (%g) > %s (%g)", on[i], ord[i], on[j], ord[j]);
    if (isfinite(t->mean_us) &&
        ((isfinite(t->min_us) && db_csv_above(t->min_us, t->mean_us)) ||
         (isfinite(t->max_us) && db_csv_above(t->mean_us, t->max_us))))
        return db_csv_fail(x, "mean_us (%g) outside [min_us, max_us]", t->mean_us);
    t->is_stable = true;
    if (col[DB_COL_STABLE] >= 0 && f[col[DB_COL_STABLE]][0]) {
        KVR_TRY(db_csv_i64(x, "is_stable", f[col[DB_COL_STABLE]], 0, 1, &iv));
        t->is_stable = iv != 0;
    }
    return KVR_OK;
}

/* Ordering of samples by their unique key, for the duplicate check. */
typedef struct db_key_ref {
    const kvr_db_csv *c;
    int64_t i;
    bool transfer;
    int64_t line;
} db_key_ref;

static int db_key_cmp(const void *pa, const void *pb) {
    const db_key_ref *a = pa, *b = pb;
    if (a->transfer != b->transfer) return a->transfer ? 1 : -1;
    if (!a->transfer) {
        const kvr_db_layer_sample *x = &a->c->layers[a->i], *y = &b->c->layers[b->i];
        int s = strcmp(x->op, y->op);
        if (s) return s;
        if (x->c != y->c) return x->c < y->c ? -1 : 1;
        if (x->prefix != y->prefix) return x->prefix < y->prefix ? -1 : 1;
        return 0;
    }
    const kvr_db_transfer_sample *x = &a->c->transfers[a->i], *y = &b->c->transfers[b->i];
    int s = strcmp(x->pattern, y->pattern);
    if (s) return s;
    if (x->n_ranks != y->n_ranks) return x->n_ranks < y->n_ranks ? -1 : 1;
    if (x->src != y->src) return x->src < y->src ? -1 : 1;
    if (x->dst != y->dst) return x->dst < y->dst ? -1 : 1;
    if (x->size_bytes != y->size_bytes) return x->size_bytes < y->size_bytes ? -1 : 1;
    return 0;
}

void kvr_db_csv_free(kvr_db_csv *c) {
    if (!c) return;
    free(c->layers);
    free(c->transfers);
    free(c);
}

static kvr_status db_csv_parse_row(db_csv_ctx *x, kvr_db_csv *c, char (*f)[DB_CSV_MAX_FIELD],
                                   const int *col, int64_t *cap_l, int64_t *cap_t,
                                   int64_t **lines_l, int64_t **lines_t) {
    const char *kind = f[col[DB_COL_KIND]];
    int64_t iv = 0;
#define FIELD(id) (col[id] >= 0 ? f[col[id]] : "")
    if (strcmp(kind, "layer") == 0) {
        if (c->n_layers >= *cap_l) {
            int64_t nc = *cap_l ? *cap_l * 2 : 64;
            void *p = realloc(c->layers, (size_t)nc * sizeof *c->layers);
            void *q = realloc(*lines_l, (size_t)nc * sizeof **lines_l);
            if (p) c->layers = p;
            if (q) *lines_l = q;
            if (!p || !q) return kvr_error_set(x->err, KVR_ERR_NOMEM, "%s: out of memory", x->name);
            *cap_l = nc;
        }
        kvr_db_layer_sample *s = &c->layers[c->n_layers];
        memset(s, 0, sizeof *s);
        const char *op = FIELD(DB_COL_OP);
        kvr_op k = KVR_OP_COUNT;
        kvr_mode md;
        /* ovh_<schedule>: a profile's fixed-overhead rows (c = layers, prefix = ranks; signed
         * excess times, docs/profiler.md) */
        const bool ovh = !strncmp(op, "ovh_", 4) && kvr_mode_parse(op + 4, &md, NULL) == KVR_OK;
        /* decode: a profile's batched decode steps (c = batch, prefix = total context) */
        const bool dec = !strcmp(op, "decode");
        /* host_copy: a profile's LayerKV host-tier copies (c = layer blocks, prefix = bytes) */
        const bool hcp = !strcmp(op, "host_copy");
        /* e2e_<schedule>: a profile's end-to-end check (c = tokens, prefix = ranks; TTFTs) */
        const bool e2e = !strncmp(op, "e2e_", 4) && kvr_mode_parse(op + 4, &md, NULL) == KVR_OK;
        if (!ovh && !dec && !hcp && !e2e &&
            (kvr_op_parse(op, &k, NULL) != KVR_OK || k >= KVR_OP_LAYER_COUNT))
            return db_csv_fail(x,
                               "op '%.40s' is not one of embed, pre, attn, post, head, "
                               "ovh_single, ovh_kvr, ovh_tsp, ovh_ring, decode, host_copy, "
                               "e2e_single, e2e_kvr, e2e_tsp, e2e_ring",
                               op);
        db_copy(s->op, sizeof s->op, op);
        const char *cv = FIELD(DB_COL_C);
        if (!*cv && k == KVR_OP_HEAD) {
            s->c = 1;
        } else {
            KVR_TRY(db_csv_i64(x, "c", cv, 1, (int64_t)1 << 31, &iv));
            s->c = iv;
        }
        s->prefix = 0;
        if (*FIELD(DB_COL_PREFIX)) {
            KVR_TRY(db_csv_i64(x, "prefix", FIELD(DB_COL_PREFIX), 0, (int64_t)1 << 40, &iv));
            s->prefix = iv;
        }
        KVR_TRY(db_csv_row_stats(x, f, col, ovh, &s->stats));
        (*lines_l)[c->n_layers] = x->line;
        c->n_layers++;
        return KVR_OK;
    }
    if (strcmp(kind, "transfer") == 0) {
        if (c->n_transfers >= *cap_t) {
            int64_t nc = *cap_t ? *cap_t * 2 : 64;
            void *p = realloc(c->transfers, (size_t)nc * sizeof *c->transfers);
            void *q = realloc(*lines_t, (size_t)nc * sizeof **lines_t);
            if (p) c->transfers = p;
            if (q) *lines_t = q;
            if (!p || !q) return kvr_error_set(x->err, KVR_ERR_NOMEM, "%s: out of memory", x->name);
            *cap_t = nc;
        }
        kvr_db_transfer_sample *s = &c->transfers[c->n_transfers];
        memset(s, 0, sizeof *s);
        const char *pat = FIELD(DB_COL_PATTERN);
        int pi = kvr_name_index(db_patterns, 4, pat);
        if (pi < 0)
            return db_csv_fail(x, "pattern '%.40s' is not one of p2p, chain, chain_compute, allgather",
                               pat);
        db_copy(s->pattern, sizeof s->pattern, pat);
        const bool collective = pi == 3;
        s->src = s->dst = -1;
        if (*FIELD(DB_COL_SRC)) {
            KVR_TRY(db_csv_i64(x, "src", FIELD(DB_COL_SRC), -1, 4095, &iv));
            s->src = (int32_t)iv;
        }
        if (*FIELD(DB_COL_DST)) {
            KVR_TRY(db_csv_i64(x, "dst", FIELD(DB_COL_DST), -1, 4095, &iv));
            s->dst = (int32_t)iv;
        }
        if (!collective && pi == 0 && (s->src < 0 || s->dst < 0))
            return db_csv_fail(x, "p2p needs src and dst ranks");
        if (pi == 0 && s->src == s->dst) return db_csv_fail(x, "p2p from rank %d to itself", s->src);
        if (*FIELD(DB_COL_N_RANKS)) {
            KVR_TRY(db_csv_i64(x, "n_ranks", FIELD(DB_COL_N_RANKS), 1, 4096, &iv));
            s->n_ranks = (int32_t)iv;
        } else {
            s->n_ranks = KVR_MAX(2, KVR_MAX(s->src, s->dst) + 1);
        }
        if (s->src >= s->n_ranks || s->dst >= s->n_ranks)
            return db_csv_fail(x, "rank %d is outside n_ranks %d", KVR_MAX(s->src, s->dst),
                               s->n_ranks);
        KVR_TRY(db_csv_i64(x, "size_bytes", FIELD(DB_COL_SIZE), 0, (int64_t)1 << 50, &iv));
        s->size_bytes = iv;
        KVR_TRY(db_csv_row_stats(x, f, col, false, &s->stats));
        s->busbw_factor = collective ? (double)(s->n_ranks - 1) / s->n_ranks : 1.0;
        if (*FIELD(DB_COL_FACTOR))
            KVR_TRY(db_csv_f64(x, "busbw_factor", FIELD(DB_COL_FACTOR), 0, 1e6, &s->busbw_factor));
        s->algbw_gbps = s->stats.median_us > 0 ? (double)s->size_bytes / (s->stats.median_us * 1e3)
                                               : NAN;
        if (*FIELD(DB_COL_ALGBW))
            KVR_TRY(db_csv_f64(x, "algbw_gbps", FIELD(DB_COL_ALGBW), 0, 1e15, &s->algbw_gbps));
        s->busbw_gbps = s->algbw_gbps * s->busbw_factor;
        if (*FIELD(DB_COL_BUSBW))
            KVR_TRY(db_csv_f64(x, "busbw_gbps", FIELD(DB_COL_BUSBW), 0, 1e15, &s->busbw_gbps));
        (*lines_t)[c->n_transfers] = x->line;
        c->n_transfers++;
        return KVR_OK;
    }
#undef FIELD
    return db_csv_fail(x, "kind '%.40s' is not layer or transfer", kind);
}

kvr_status kvr_db_csv_parse(const char *buf, size_t len, const char *name, kvr_db_csv **out,
                            kvr_error *err) {
    *out = NULL;
    db_csv_ctx x = {name ? name : "csv", 0, err};
    kvr_db_csv *c = calloc(1, sizeof *c);
    char(*f)[DB_CSV_MAX_FIELD] = malloc(sizeof(char[DB_CSV_MAX_FIELDS][DB_CSV_MAX_FIELD]));
    if (!c || !f) {
        free(c), free(f);
        return kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", x.name);
    }
    c->run = kvr_db_run_init("import");
    c->run.status = KVR_RUN_COMPLETE;
    /* provenance of the measurement comes from the file; unknown stays empty */
    c->run.kvr_version[0] = c->run.git_commit[0] = c->run.build_type[0] = c->run.host[0] = 0;
    c->run.ts_utc[0] = 0;
    c->run.pid = c->run.pid_start = 0;
    c->model.rope_theta = NAN;
    c->device.clock_mhz = NAN;
    bool seen[DB_N_KEYS] = {false};
    int col[DB_N_COLS];
    for (int i = 0; i < DB_N_COLS; i++) col[i] = -1;
    int n_header = 0;
    int64_t cap_l = 0, cap_t = 0, *lines_l = NULL, *lines_t = NULL;
    kvr_status st = KVR_OK;
    size_t pos = 0;
    if (len >= 3 && (unsigned char)buf[0] == 0xEF && (unsigned char)buf[1] == 0xBB &&
        (unsigned char)buf[2] == 0xBF)
        pos = 3; /* UTF-8 byte order mark */
    while (pos < len && st == KVR_OK) {
        x.line++;
        const char *ls = buf + pos;
        const char *nl = memchr(ls, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - ls) : len - pos;
        pos += n + (nl ? 1 : 0);
        if (n > 0 && ls[n - 1] == '\r') n--;
        if (n > DB_CSV_MAX_LINE) {
            st = db_csv_fail(&x, "line longer than %d bytes", DB_CSV_MAX_LINE);
            break;
        }
        if (memchr(ls, 0, n)) {
            st = db_csv_fail(&x, "NUL byte (not a text file?)");
            break;
        }
        size_t lead = 0;
        while (lead < n && (ls[lead] == ' ' || ls[lead] == '\t')) lead++;
        if (lead == n) continue;
        if (ls[lead] == '#') {
            st = db_csv_meta(&x, c, ls + lead, n - lead, seen);
            continue;
        }
        int nf = 0;
        if ((st = db_csv_split(&x, ls, n, f, &nf)) != KVR_OK) break;
        if (!n_header) {
            for (int i = 0; i < nf && st == KVR_OK; i++) {
                int id = kvr_name_index(db_col_names, DB_N_COLS, f[i]);
                if (id < 0)
                    st = db_csv_fail(&x, "unknown column '%.40s' (columns: kind, op, c, prefix, "
                                         "pattern, src, dst, n_ranks, size_bytes, n_warmup, "
                                         "n_iters, min_us .. max_us, is_stable, algbw_gbps, "
                                         "busbw_gbps, busbw_factor)", f[i]);
                else if (col[id] >= 0)
                    st = db_csv_fail(&x, "column '%s' appears twice", f[i]);
                else
                    col[id] = i;
            }
            if (st == KVR_OK && (col[DB_COL_KIND] < 0 || col[DB_COL_MEDIAN] < 0))
                st = db_csv_fail(&x, "the header needs at least the columns kind and median_us");
            n_header = nf;
            continue;
        }
        if (nf != n_header) {
            st = db_csv_fail(&x, "%d fields, the header has %d", nf, n_header);
            break;
        }
        if (c->n_layers + c->n_transfers >= DB_CSV_MAX_ROWS) {
            st = db_csv_fail(&x, "more than %d samples", DB_CSV_MAX_ROWS);
            break;
        }
        st = db_csv_parse_row(&x, c, f, col, &cap_l, &cap_t, &lines_l, &lines_t);
    }
    if (st == KVR_OK && !n_header)
        st = kvr_error_set(err, KVR_ERR_FORMAT, "%s: no header row (kind,...,median_us,...)", x.name);
    if (st == KVR_OK && c->n_layers + c->n_transfers == 0)
        st = kvr_error_set(err, KVR_ERR_FORMAT, "%s: no samples", x.name);
    if (st == KVR_OK && !c->model.name[0])
        st = kvr_error_set(err, KVR_ERR_FORMAT,
                           "%s: no model name: add a line '# model.name: NAME' (or kvr-db import "
                           "--set model.name=NAME)", x.name);
    if (st == KVR_OK && c->model.n_layers < 1)
        st = kvr_error_set(err, KVR_ERR_FORMAT,
                           "%s: no layer count: add a line '# model.n_layers: N' (or kvr-db "
                           "import --set model.n_layers=N)", x.name);
    if (st == KVR_OK) { /* duplicates */
        int64_t n = c->n_layers + c->n_transfers;
        db_key_ref *r = malloc((size_t)n * sizeof *r);
        if (!r) {
            st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", x.name);
        } else {
            for (int64_t i = 0; i < c->n_layers; i++) r[i] = (db_key_ref){c, i, false, lines_l[i]};
            for (int64_t i = 0; i < c->n_transfers; i++)
                r[c->n_layers + i] = (db_key_ref){c, i, true, lines_t[i]};
            qsort(r, (size_t)n, sizeof *r, db_key_cmp);
            for (int64_t i = 1; i < n && st == KVR_OK; i++)
                if (db_key_cmp(&r[i - 1], &r[i]) == 0) {
                    int64_t a = KVR_MIN(r[i - 1].line, r[i].line), b = KVR_MAX(r[i - 1].line, r[i].line);
                    x.line = b;
                    st = db_csv_fail(&x, "duplicates the sample on line %lld", (long long)a);
                }
            free(r);
        }
    }
    free(lines_l);
    free(lines_t);
    free(f);
    if (st != KVR_OK) {
        kvr_db_csv_free(c);
        return st;
    }
    /* text from the file reaches JSON output: bytes that are not UTF-8 become '?' */
    for (size_t j = 0; j < DB_N_KEYS; j++)
        if (db_keys[j].type == DB_KEY_STR) kvr_utf8_sanitize((char *)c + db_keys[j].off);
    /* defaults that make an import usable downstream */
    if (!c->model.arch[0]) db_copy(c->model.arch, sizeof c->model.arch, "llama");
    if (!c->device.name[0]) db_copy(c->device.name, sizeof c->device.name, "unknown");
    if (!c->device.kind[0])
        db_copy(c->device.kind, sizeof c->device.kind, c->run.backend[0] ? c->run.backend : "unknown");
    if (!c->run.device_name[0]) db_copy(c->run.device_name, sizeof c->run.device_name, c->device.name);
    if (!c->run.source[0]) snprintf(c->run.source, sizeof c->run.source, "import:%.240s", x.name);
    if (!c->run.ts_utc[0]) db_now_utc(c->run.ts_utc, sizeof c->run.ts_utc);
    if (!c->run.grid[0]) db_copy(c->run.grid, sizeof c->run.grid, "imported");
    if (!c->run.n_threads) c->run.n_threads = 1;
    if (!c->run.n_ranks) c->run.n_ranks = 1;
    if (!c->model.kv_bytes_per_token && c->model.n_kv_heads > 0 && c->model.head_dim > 0) {
        int bytes = 4;
        if (!strcmp(c->run.dtype, "f16") || !strcmp(c->run.dtype, "bf16") ||
            !strcmp(c->run.dtype, "fp16"))
            bytes = 2;
        else if (!strcmp(c->run.dtype, "fp8") || !strcmp(c->run.dtype, "int8"))
            bytes = 1;
        c->model.kv_bytes_per_token = 2LL * c->model.n_kv_heads * c->model.head_dim * bytes;
    }
    if (!c->run.note[0])
        snprintf(c->run.note, sizeof c->run.note, "imported by kvr %s (%s) from %.180s",
                 kvr_version(), kvr_build_commit(), x.name);
    *out = c;
    return KVR_OK;
}

kvr_status kvr_db_csv_store(kvr_db *db, kvr_db_csv *c, int64_t *run_id, kvr_error *err) {
    bool own;
    KVR_TRY(db_tx_begin(db, &own, err));
    kvr_status st = kvr_db_model_put(db, &c->model, &c->run.model_id, err);
    if (st == KVR_OK) st = kvr_db_device_put(db, &c->device, &c->run.device_id, err);
    if (st == KVR_OK) {
        c->run.status = KVR_RUN_COMPLETE;
        db_now_utc(c->run.ts_end_utc, sizeof c->run.ts_end_utc);
        st = kvr_db_run_insert(db, &c->run, err);
    }
    if (st == KVR_OK) {
        for (int64_t i = 0; i < c->n_layers; i++) c->layers[i].run_id = c->run.id;
        for (int64_t i = 0; i < c->n_transfers; i++) c->transfers[i].run_id = c->run.id;
        st = kvr_db_layer_samples_put(db, c->layers, c->n_layers, err);
    }
    if (st == KVR_OK) st = kvr_db_transfer_samples_put(db, c->transfers, c->n_transfers, err);
    st = db_tx_end(db, own, st, err);
    if (st == KVR_OK && run_id) *run_id = c->run.id;
    return st;
}
