/* trace_import.c -- importers for public LLM request traces (kvr_trace.h, docs/serving.md): the
 * Azure LLM inference traces (TIMESTAMP as a date and time, ContextTokens, GeneratedTokens) and
 * BurstGPT (Timestamp in seconds, Model, Request tokens, Response tokens, Log Type). Columns are
 * found by header name; every bad value is an error naming the file, the line and the column.
 * Times are kept as integer nanoseconds until the trace is built, so differences of the Azure
 * files' 7-digit fractions are exact. Fuzzed through tests/fuzz/fuzz_trace.c. */
#include "serve_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const trace_import_names[KVR_TRACE_IMPORT_COUNT] = {"azure", "burstgpt"};

const char *kvr_trace_import_format_name(kvr_trace_import_format f) {
    return (unsigned)f < KVR_TRACE_IMPORT_COUNT ? trace_import_names[f] : "?";
}

kvr_status kvr_trace_import_format_parse(const char *s, kvr_trace_import_format *out,
                                         kvr_error *err) {
    int i = kvr_name_index(trace_import_names, KVR_TRACE_IMPORT_COUNT, s);
    if (i < 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "unknown trace format '%.40s' (azure, burstgpt)", s ? s : "");
    *out = (kvr_trace_import_format)i;
    return KVR_OK;
}

kvr_trace_import_params kvr_trace_import_params_default(void) {
    kvr_trace_import_params p;
    memset(&p, 0, sizeof p);
    p.format = KVR_TRACE_IMPORT_AZURE;
    p.time_scale = 1;
    return p;
}

// ----------------------------------------------------------------------------
// date and time

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (H. Hinnant's
 * days_from_civil, http://howardhinnant.github.io/date_algorithms.html). */
static int64_t trace_days_from_civil(int64_t y, int64_t m, int64_t d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool trace_digits(const char **s, int n, int64_t *out) {
    int64_t v = 0;
    for (int i = 0; i < n; i++) {
        const char c = (*s)[i];
        if (c < '0' || c > '9') return false;
        v = v * 10 + (c - '0');
    }
    *s += n;
    *out = v;
    return true;
}

/* "YYYY-MM-DD[ T]HH:MM:SS[.f{1,9}][Z|+HH:MM|-HH:MM]" as nanoseconds since 1970-01-01 UTC, or a
 * static message saying what is wrong. Years 1970..2200 (int64 nanoseconds reach 2262 and differences must fit). */
static const char *trace_parse_datetime(const char *s, int64_t *ns) {
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int64_t y, mo, d, h, mi, se, frac = 0;
    const char *p = s;
    if (!trace_digits(&p, 4, &y) || *p++ != '-' || !trace_digits(&p, 2, &mo) || *p++ != '-' ||
        !trace_digits(&p, 2, &d) || (*p != ' ' && *p != 'T'))
        return "is not a date and time YYYY-MM-DD HH:MM:SS[.fraction]";
    p++;
    if (!trace_digits(&p, 2, &h) || *p++ != ':' || !trace_digits(&p, 2, &mi) || *p++ != ':' ||
        !trace_digits(&p, 2, &se))
        return "is not a date and time YYYY-MM-DD HH:MM:SS[.fraction]";
    if (*p == '.') {
        p++;
        int nd = 0;
        while (p[nd] >= '0' && p[nd] <= '9') nd++;
        if (nd == 0) return "has a '.' with no fraction digits after it";
        if (nd > 9) return "has more than 9 fraction digits";
        trace_digits(&p, nd, &frac);
        for (int i = nd; i < 9; i++) frac *= 10;
    }
    int64_t off_min = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        const int sign = *p++ == '-' ? -1 : 1;
        int64_t oh, om;
        if (!trace_digits(&p, 2, &oh) || *p++ != ':' || !trace_digits(&p, 2, &om) || oh > 23 ||
            om > 59)
            return "has a time zone offset that is not +HH:MM or -HH:MM";
        off_min = sign * (oh * 60 + om);
    }
    if (*p) return "has text after the time";
    if (y < 1970 || y > 2200) return "has a year outside 1970..2200";
    if (mo < 1 || mo > 12) return "has a month outside 1..12";
    const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    const int64_t dim = mdays[mo - 1] + (mo == 2 && leap);
    if (d < 1 || d > dim) return "has a day that is not in its month";
    if (h > 23 || mi > 59 || se > 59) return "has an hour, minute or second out of range";
    const int64_t secs =
        trace_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off_min * 60;
    *ns = secs * 1000000000 + frac;
    return NULL;
}

// ----------------------------------------------------------------------------
// the importers

typedef struct trace_import_row {
    int64_t t_ns;
    int64_t prompt_tokens, output_tokens;
    int64_t order; /* file order: sorting is stable */
} trace_import_row;

static int trace_import_row_cmp(const void *pa, const void *pb) {
    const trace_import_row *a = pa, *b = pb;
    if (a->t_ns != b->t_ns) return a->t_ns < b->t_ns ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

enum { AZ_TIME, AZ_CONTEXT, AZ_GENERATED, AZ_N };
static const char *const az_cols[AZ_N] = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"};
enum { BG_TIME, BG_MODEL, BG_REQUEST, BG_RESPONSE, BG_LOG_TYPE, BG_N };
static const char *const bg_cols[BG_N] = {"Timestamp", "Model", "Request tokens",
                                          "Response tokens", "Log Type"};

kvr_status kvr_trace_import_parse(const char *buf, size_t len, const char *name,
                                  const kvr_trace_import_params *p, kvr_trace **out,
                                  kvr_trace_import_stats *stats, kvr_error *err) {
    *out = NULL;
    if ((unsigned)p->format >= KVR_TRACE_IMPORT_COUNT)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "unknown trace format %d", (int)p->format);
    if (!(isfinite(p->time_scale) && p->time_scale > 0 && p->time_scale <= 1e6))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "time_scale %g: must be in (0, 1e6]",
                             p->time_scale);
    if (p->limit < 0) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "limit must be >= 0");
    if (p->format != KVR_TRACE_IMPORT_BURSTGPT && (p->model || p->log_type))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "the model and log type filters apply to burstgpt traces");
    const bool azure = p->format == KVR_TRACE_IMPORT_AZURE;
    kvr_trace_import_stats s;
    memset(&s, 0, sizeof s);
    trace_csv c;
    trace_csv_init(&c, buf, len, name, err);
    trace_import_row *rows = NULL;
    int64_t cap = 0;
    kvr_trace *t = NULL;
    bool got = false;
    int col[BG_N] = {-1, -1, -1, -1, -1};
    int n_header = 0;
    kvr_status st = trace_csv_next(&c, &got);
    if (st == KVR_OK && !got)
        st = kvr_error_set(err, KVR_ERR_FORMAT, "%.200s: no header row (%s)", c.name,
                           azure ? "TIMESTAMP,ContextTokens,GeneratedTokens"
                                 : "Timestamp,Model,Request tokens,Response tokens,...");
    if (st == KVR_OK) {
        if (azure) {
            static const bool req[AZ_N] = {true, true, true};
            st = trace_csv_columns(&c, az_cols, req, AZ_N, false, col);
        } else {
            const bool req[BG_N] = {true, p->model != NULL, true, true, p->log_type != NULL};
            st = trace_csv_columns(&c, bg_cols, req, BG_N, false, col);
        }
        n_header = c.n_fields;
    }
    const char *c_time = azure ? az_cols[AZ_TIME] : bg_cols[BG_TIME];
    const char *c_prompt = azure ? az_cols[AZ_CONTEXT] : bg_cols[BG_REQUEST];
    const char *c_output = azure ? az_cols[AZ_GENERATED] : bg_cols[BG_RESPONSE];
    const int i_time = azure ? col[AZ_TIME] : col[BG_TIME];
    const int i_prompt = azure ? col[AZ_CONTEXT] : col[BG_REQUEST];
    const int i_output = azure ? col[AZ_GENERATED] : col[BG_RESPONSE];
    int64_t t_prev = INT64_MIN;
    while (st == KVR_OK && (p->limit == 0 || s.n_kept < p->limit)) {
        if ((st = trace_csv_next(&c, &got)) != KVR_OK || !got) break;
        s.n_rows++;
        if ((st = trace_csv_check_width(&c, n_header)) != KVR_OK) break;
        trace_import_row r = {0, 0, 0, s.n_rows};
        const char *tv = trace_csv_field(&c, i_time);
        if (azure) {
            const char *why = trace_parse_datetime(tv, &r.t_ns);
            if (why) {
                st = trace_csv_fail(&c, "column '%s': '%.40s' %s", c_time, tv, why);
                break;
            }
        } else {
            double sec = 0;
            if ((st = trace_csv_f64(&c, c_time, tv, 0, 9e9, &sec)) != KVR_OK) break;
            r.t_ns = llround(sec * 1e9);
        }
        if ((st = trace_csv_i64(&c, c_prompt, trace_csv_field(&c, i_prompt), 0,
                                KVR_TRACE_MAX_TOKENS, &r.prompt_tokens)) != KVR_OK ||
            (st = trace_csv_i64(&c, c_output, trace_csv_field(&c, i_output), 0,
                                KVR_TRACE_MAX_TOKENS, &r.output_tokens)) != KVR_OK)
            break;
        if (!azure && ((p->model && strcasecmp(trace_csv_field(&c, col[BG_MODEL]), p->model)) ||
                       (p->log_type &&
                        strcasecmp(trace_csv_field(&c, col[BG_LOG_TYPE]), p->log_type)))) {
            s.n_filtered++;
            continue;
        }
        if (r.prompt_tokens == 0) {
            s.n_empty++;
            continue;
        }
        if (r.output_tokens == 0) {
            s.n_failed++;
            if (!p->keep_failed) continue;
            r.output_tokens = 1;
        }
        if (s.n_kept >= KVR_TRACE_MAX_REQUESTS) {
            st = trace_csv_fail(&c, "more than %lld requests", (long long)KVR_TRACE_MAX_REQUESTS);
            break;
        }
        if (s.n_kept >= cap) {
            int64_t nc = cap ? cap * 2 : 1024;
            trace_import_row *q = realloc(rows, (size_t)nc * sizeof *q);
            if (!q) {
                st = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory (%lld rows)", c.name,
                                   (long long)nc);
                break;
            }
            rows = q;
            cap = nc;
        }
        if (r.t_ns < t_prev) s.n_out_of_order++;
        t_prev = r.t_ns;
        rows[s.n_kept++] = r;
    }
    trace_csv_free(&c);
    if (st == KVR_OK) st = kvr_trace_create(&t, err);
    if (st == KVR_OK && s.n_kept > 0) {
        if (s.n_out_of_order) qsort(rows, (size_t)s.n_kept, sizeof *rows, trace_import_row_cmp);
        const int64_t t0 = rows[0].t_ns;
        for (int64_t i = 0; i < s.n_kept && st == KVR_OK; i++) {
            const double at = (double)(rows[i].t_ns - t0) / 1e9 * p->time_scale;
            st = kvr_trace_append(t, at, rows[i].prompt_tokens, rows[i].output_tokens, NULL, err);
        }
    }
    free(rows);
    if (st != KVR_OK) {
        kvr_trace_destroy(t);
        return st;
    }
    if (stats) *stats = s;
    *out = t;
    return KVR_OK;
}

kvr_status kvr_trace_import_load(const char *path, const kvr_trace_import_params *p,
                                 kvr_trace **out, kvr_trace_import_stats *stats,
                                 kvr_error *err) {
    *out = NULL;
    if (!path) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "import: NULL path");
    if (!strcmp(path, "-")) {
        char *buf = NULL;
        size_t len = 0;
        KVR_TRY(kvr_read_stream(stdin, "(stdin)", 0, &buf, &len, err));
        kvr_status st = kvr_trace_import_parse(buf, len, "(stdin)", p, out, stats, err);
        free(buf);
        return st;
    }
    kvr_file_map f;
    KVR_TRY(kvr_file_map_open(path, false, 0, &f, err));
    kvr_status st = kvr_trace_import_parse((const char *)f.p, f.len, path, p, out, stats, err);
    kvr_file_map_close(&f);
    return st;
}
