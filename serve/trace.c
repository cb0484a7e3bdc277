/* trace.c -- the trace object, the kvr trace CSV format (reader over memory and files, writer
 * with atomic save) and trace statistics (kvr_trace.h, docs/serving.md). The reader goes through
 * the module's RFC 4180 record reader (trace_csv.c) and is fuzzed (tests/fuzz/fuzz_trace.c);
 * format -> parse gives back the identical trace. */
#include "serve_internal.h"

#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// the trace

kvr_status kvr_trace_create(kvr_trace **out, kvr_error *err) {
    *out = calloc(1, sizeof **out);
    if (!*out) return kvr_error_set(err, KVR_ERR_NOMEM, "trace: out of memory");
    return KVR_OK;
}

void kvr_trace_destroy(kvr_trace *t) {
    if (!t) return;
    for (int64_t i = 0; i < t->n_requests; i++) free(t->requests[i].prompt);
    free(t->requests);
    free(t);
}

/* Whether s[0..n) is well-formed UTF-8 (kvr_utf8_seq_len needs NUL-terminated text: s is). */
static bool trace_utf8_ok(const char *s, size_t n, size_t *bad_at) {
    for (size_t i = 0; i < n;) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        int k = kvr_utf8_seq_len(s + i);
        if (k == 0) {
            *bad_at = i;
            return false;
        }
        i += (size_t)k;
    }
    return true;
}

kvr_status kvr_trace_append(kvr_trace *t, double arrival_s, int64_t prompt_tokens,
                            int64_t output_tokens, const char *prompt, kvr_error *err) {
    if (!(arrival_s >= 0 && arrival_s <= KVR_TRACE_MAX_ARRIVAL_S))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "arrival_s %g: must be in [0, %g] seconds",
                             arrival_s, KVR_TRACE_MAX_ARRIVAL_S);
    if (t->n_requests > 0 && arrival_s < t->requests[t->n_requests - 1].arrival_s)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "arrival_s %.17g is earlier than the previous request's %.17g (a "
                             "trace is in arrival order)",
                             arrival_s, t->requests[t->n_requests - 1].arrival_s);
    if (prompt_tokens < 1 || prompt_tokens > KVR_TRACE_MAX_TOKENS)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "prompt_tokens %lld: must be in [1, %lld]",
                             (long long)prompt_tokens, (long long)KVR_TRACE_MAX_TOKENS);
    if (output_tokens < 1 || output_tokens > KVR_TRACE_MAX_TOKENS)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "output_tokens %lld: must be in [1, %lld]",
                             (long long)output_tokens, (long long)KVR_TRACE_MAX_TOKENS);
    char *text = NULL;
    if (prompt && *prompt) {
        const size_t n = strlen(prompt);
        size_t bad = 0;
        if (n > KVR_TRACE_MAX_PROMPT_BYTES)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG, "prompt: %zu bytes, more than %zu", n,
                                 KVR_TRACE_MAX_PROMPT_BYTES);
        if (!trace_utf8_ok(prompt, n, &bad))
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "prompt: not valid UTF-8 (byte 0x%02x at offset %zu)",
                                 (unsigned char)prompt[bad], bad);
        if (!(text = kvr_strdup(prompt)))
            return kvr_error_set(err, KVR_ERR_NOMEM, "trace: out of memory");
    }
    if (t->n_requests >= KVR_TRACE_MAX_REQUESTS) {
        free(text);
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "more than %lld requests",
                             (long long)KVR_TRACE_MAX_REQUESTS);
    }
    if (t->n_requests >= t->cap_requests) {
        int64_t nc = t->cap_requests ? t->cap_requests * 2 : 256;
        if (nc > KVR_TRACE_MAX_REQUESTS) nc = KVR_TRACE_MAX_REQUESTS;
        kvr_trace_request *p = realloc(t->requests, (size_t)nc * sizeof *p);
        if (!p) {
            free(text);
            return kvr_error_set(err, KVR_ERR_NOMEM, "trace: out of memory (%lld requests)",
                                 (long long)nc);
        }
        t->requests = p;
        t->cap_requests = nc;
    }
    t->requests[t->n_requests++] =
        (kvr_trace_request){arrival_s, prompt_tokens, output_tokens, text};
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// reader

enum { TRACE_COL_ARRIVAL, TRACE_COL_PROMPT_TOKENS, TRACE_COL_OUTPUT_TOKENS, TRACE_COL_PROMPT,
       TRACE_N_COLS };
static const char *const trace_col_names[TRACE_N_COLS] = {"arrival_s", "prompt_tokens",
                                                          "output_tokens", "prompt"};

kvr_status kvr_trace_parse(const char *buf, size_t len, const char *name, kvr_trace **out,
                           kvr_error *err) {
    *out = NULL;
    trace_csv c;
    trace_csv_init(&c, buf, len, name, err);
    kvr_trace *t = NULL;
    kvr_status st = kvr_trace_create(&t, err);
    if (st != KVR_OK) return st;
    bool got = false;
    int col[TRACE_N_COLS] = {-1, -1, -1, -1};
    int n_header = 0;
    st = trace_csv_next(&c, &got);
    if (st == KVR_OK && !got)
        st = kvr_error_set(err, KVR_ERR_FORMAT,
                           "%.200s: no header row (arrival_s,prompt_tokens,output_tokens[,prompt])",
                           c.name);
    if (st == KVR_OK) {
        static const bool required[TRACE_N_COLS] = {true, true, true, false};
        st = trace_csv_columns(&c, trace_col_names, required, TRACE_N_COLS, true, col);
        n_header = c.n_fields;
    }
    while (st == KVR_OK) {
        st = trace_csv_next(&c, &got);
        if (st != KVR_OK || !got) break;
        if ((st = trace_csv_check_width(&c, n_header)) != KVR_OK) break;
        double at = 0;
        int64_t np = 0, no = 0;
        if ((st = trace_csv_f64(&c, "arrival_s", trace_csv_field(&c, col[TRACE_COL_ARRIVAL]), 0,
                                KVR_TRACE_MAX_ARRIVAL_S, &at)) != KVR_OK ||
            (st = trace_csv_i64(&c, "prompt_tokens",
                                trace_csv_field(&c, col[TRACE_COL_PROMPT_TOKENS]), 1,
                                KVR_TRACE_MAX_TOKENS, &np)) != KVR_OK ||
            (st = trace_csv_i64(&c, "output_tokens",
                                trace_csv_field(&c, col[TRACE_COL_OUTPUT_TOKENS]), 1,
                                KVR_TRACE_MAX_TOKENS, &no)) != KVR_OK)
            break;
        if (t->n_requests > 0 && at < t->requests[t->n_requests - 1].arrival_s) {
            st = trace_csv_fail(&c,
                                "column 'arrival_s': %.17g is earlier than the previous "
                                "request's %.17g (rows must be in arrival order)",
                                at, t->requests[t->n_requests - 1].arrival_s);
            break;
        }
        const char *text = col[TRACE_COL_PROMPT] >= 0 ? trace_csv_field(&c, col[TRACE_COL_PROMPT])
                                                       : NULL;
        if (text && *text) {
            size_t bad = 0;
            if (!trace_utf8_ok(text, strlen(text), &bad)) {
                st = trace_csv_fail(&c, "column 'prompt': not valid UTF-8 (byte 0x%02x at "
                                        "offset %zu)",
                                    (unsigned char)text[bad], bad);
                break;
            }
        }
        kvr_error e;
        st = kvr_trace_append(t, at, np, no, text, &e);
        if (st == KVR_ERR_NOMEM) {
            kvr_error_set(err, st, "%s", e.msg);
        } else if (st != KVR_OK) { /* only the request limit is left to fail here */
            st = trace_csv_fail(&c, "%s", e.msg);
        }
    }
    trace_csv_free(&c);
    if (st != KVR_OK) {
        kvr_trace_destroy(t);
        return st;
    }
    *out = t;
    return KVR_OK;
}

kvr_status kvr_trace_load(const char *path, kvr_trace **out, kvr_error *err) {
    *out = NULL;
    if (!path) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "trace: NULL path");
    if (!strcmp(path, "-")) {
        char *buf = NULL;
        size_t len = 0;
        KVR_TRY(kvr_read_stream(stdin, "(stdin)", 0, &buf, &len, err));
        kvr_status st = kvr_trace_parse(buf, len, "(stdin)", out, err);
        free(buf);
        return st;
    }
    kvr_file_map f;
    KVR_TRY(kvr_file_map_open(path, false, 0, &f, err));
    kvr_status st = kvr_trace_parse((const char *)f.p, f.len, path, out, err);
    kvr_file_map_close(&f);
    return st;
}

// ----------------------------------------------------------------------------
// writer

/* The shortest %.Ng that reads back as v. %.15g is already the shortest when v has a decimal
 * form of at most 15 digits (%g drops the trailing zeros, and the 15-digit decimals are over
 * four times further apart than v is from its short form); otherwise 16 or 17 digits. */
static void trace_fmt_double(kvr_text *b, double v) {
    char s[40];
    for (int p = 15; p <= 17; p++) {
        snprintf(s, sizeof s, "%.*g", p, v);
        if (strtod(s, NULL) == v) break;
    }
    kvr_text_printf(b, "%s", s);
}

kvr_status kvr_trace_format(const kvr_trace *t, const char *comment, char **out,
                            kvr_error *err) {
    *out = NULL;
    kvr_text b = {0};
    for (const char *p = comment; p && *p;) {
        const char *nl = strchr(p, '\n');
        const size_t n = nl ? (size_t)(nl - p) : strlen(p);
        kvr_text_printf(&b, "# %.*s\n", (int)n, p);
        p += n + (nl ? 1 : 0);
    }
    bool any_text = false;
    for (int64_t i = 0; i < t->n_requests && !any_text; i++)
        any_text = t->requests[i].prompt != NULL;
    kvr_text_printf(&b, "arrival_s,prompt_tokens,output_tokens%s\n", any_text ? ",prompt" : "");
    for (int64_t i = 0; i < t->n_requests; i++) {
        const kvr_trace_request *r = &t->requests[i];
        trace_fmt_double(&b, r->arrival_s);
        kvr_text_printf(&b, ",%lld,%lld", (long long)r->prompt_tokens,
                        (long long)r->output_tokens);
        if (any_text) {
            kvr_text_append(&b, ",", 1);
            if (r->prompt) { /* always quoted: commas, quotes and line breaks stay text */
                kvr_text_append(&b, "\"", 1);
                for (const char *p = r->prompt; *p;) {
                    const char *q = strchr(p, '"');
                    const size_t n = q ? (size_t)(q - p) : strlen(p);
                    kvr_text_append(&b, p, n);
                    if (!q) break;
                    kvr_text_append(&b, "\"\"", 2);
                    p = q + 1;
                }
                kvr_text_append(&b, "\"", 1);
            }
        }
        kvr_text_append(&b, "\n", 1);
    }
    return kvr_text_take(&b, out, "trace text", err);
}

kvr_status kvr_trace_save(const kvr_trace *t, const char *path, const char *comment,
                          kvr_error *err) {
    char *text = NULL;
    KVR_TRY(kvr_trace_format(t, comment, &text, err));
    kvr_status st = kvr_write_file_atomic(path, text, strlen(text), err);
    free(text);
    return st;
}

// ----------------------------------------------------------------------------
// statistics

static void trace_summary(double *v, size_t n, kvr_trace_summary *s) {
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) total += (int64_t)v[i];
    gsl_sort(v, 1, n);
    s->mean = gsl_stats_mean(v, 1, n);
    s->min = v[0];
    s->max = v[n - 1];
    s->p50 = gsl_stats_quantile_from_sorted_data(v, 1, n, 0.50);
    s->p90 = gsl_stats_quantile_from_sorted_data(v, 1, n, 0.90);
    s->p99 = gsl_stats_quantile_from_sorted_data(v, 1, n, 0.99);
    s->total = total;
}

kvr_status kvr_trace_stats_compute(const kvr_trace *t, kvr_trace_stats *out, kvr_error *err) {
    const double nan = NAN;
    const kvr_trace_summary none = {nan, nan, nan, nan, nan, nan, 0};
    kvr_trace_stats s = {0, 0, nan, nan, nan, nan, nan, nan, none, none};
    const int64_t n = t->n_requests;
    s.n_requests = n;
    if (n == 0) {
        *out = s;
        return KVR_OK;
    }
    double *v = malloc((size_t)n * sizeof *v);
    if (!v) return kvr_error_set(err, KVR_ERR_NOMEM, "trace stats: out of memory");
    for (int64_t i = 0; i < n; i++) s.n_with_prompt += t->requests[i].prompt != NULL;
    s.first_s = t->requests[0].arrival_s;
    s.last_s = t->requests[n - 1].arrival_s;
    s.duration_s = s.last_s - s.first_s;
    if (n >= 2) {
        for (int64_t i = 1; i < n; i++)
            v[i - 1] = t->requests[i].arrival_s - t->requests[i - 1].arrival_s;
        s.gap_mean_s = gsl_stats_mean(v, 1, (size_t)n - 1);
        if (s.duration_s > 0) {
            s.rate_per_s = (double)(n - 1) / s.duration_s;
            if (n >= 3) s.gap_cv = gsl_stats_sd_m(v, 1, (size_t)n - 1, s.gap_mean_s) / s.gap_mean_s;
        }
    }
    for (int64_t i = 0; i < n; i++) v[i] = (double)t->requests[i].prompt_tokens;
    trace_summary(v, (size_t)n, &s.prompt_tokens);
    for (int64_t i = 0; i < n; i++) v[i] = (double)t->requests[i].output_tokens;
    trace_summary(v, (size_t)n, &s.output_tokens);
    free(v);
    *out = s;
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// content hash

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

void kvr_trace_content_hash(const kvr_trace *t, char *buf, size_t len) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int64_t i = 0; t && i < t->n_requests; i++) {
        const kvr_trace_request *q = &t->requests[i];
        uint64_t bits;
        memcpy(&bits, &q->arrival_s, sizeof bits);
        h = fnv1a(h, &bits, sizeof bits);
        h = fnv1a(h, &q->prompt_tokens, sizeof q->prompt_tokens);
        h = fnv1a(h, &q->output_tokens, sizeof q->output_tokens);
        if (q->prompt) h = fnv1a(h, q->prompt, strlen(q->prompt) + 1);
        else h = fnv1a(h, "", 1);
    }
    if (len) snprintf(buf, len, "%016llx", (unsigned long long)h);
}
