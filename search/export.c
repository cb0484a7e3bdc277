/* export.c -- rendering: tables as fixed-width text, self-describing JSON, CSV and vLLM
 * environment lines; timelines as a text Gantt chart or CSV. Everything is built in an append
 * buffer and handed back as one malloc'd string (the library never writes to files or stdout).
 * Schemas: docs/search.md. */
#include "search_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// formats

kvr_status kvr_search_format_parse(const char *name, kvr_search_format *out, kvr_error *err) {
    static const char *const names[KVR_SEARCH_FORMAT_COUNT] = {"text", "json", "csv", "vllm-env"};
    int i = kvr_name_index(names, KVR_SEARCH_FORMAT_COUNT, name);
    if (i >= 0) {
        *out = (kvr_search_format)i;
        return KVR_OK;
    }
    return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                         "unknown format \"%s\" (expected text, json, csv or vllm-env)",
                         name ? name : "(null)");
}

/* ms with ns resolution, so JSON numbers stay short and round-trip */
static double ex_ms(double us) {
    return round(us * 1e3) * 1e-6;
}

static void ex_strategy_list(unsigned mask, char *buf, size_t n) {
    size_t off = 0;
    buf[0] = 0;
    for (int k = 0; k < KVR_STRATEGY_COUNT; k++)
        if (mask & (1u << k)) {
            int w = snprintf(buf + off, n - off, "%s%s", off ? "," : "", kvr_strategy_name(k));
            if (w < 0 || (size_t)w >= n - off) break;
            off += (size_t)w;
        }
}

static void ex_header_lines(const kvr_search_table *t, const char *note, kvr_text *b,
                            const char *lead) {
    char strat[64];
    ex_strategy_list(t->strategies, strat, sizeof strat);
    kvr_text_printf(b, "%s kvr-search %s (commit %s)\n", lead, kvr_version(), kvr_build_commit());
    kvr_text_printf(b, "%s costs: %s%s%s; %d layers, %g KV bytes/token/layer\n", lead, t->source,
                    t->model_name[0] ? "; model " : "", t->model_name, t->n_layers,
                    t->kv_bytes_per_token);
    kvr_text_printf(b, "%s links: %s; TSP all-gather: %s\n", lead, t->links_desc,
                    t->has_allgather ? "alpha-busbw model from the cost source"
                                     : "ring over links");
    if (t->overheads_desc[0])
        kvr_text_printf(b, "%s fixed overheads (us, per run + per layer step): %s\n", lead,
                        t->overheads_desc);
    kvr_text_printf(b,
                    "%s granularity %lld tokens (boundaries on the grid, remainder on the last "
                    "chunk); strategies %s\n",
                    lead, (long long)t->granularity, strat);
    if (note && note[0]) kvr_text_printf(b, "%s %s\n", lead, note);
}

/* The row's partition as kvr_partition_format writes it, "c0,c1,...", with sep between the
 * chunks (the CSV's ';': its fields are separated by ','). Out of memory marks b incomplete. */
static void ex_partition(const kvr_search_row *r, char sep, kvr_text *b) {
    const size_t len = (size_t)r->n_ranks * 21 + 1; /* at most "-9223372036854775808," a chunk */
    char *s = malloc(len);
    if (!s || kvr_partition_format(r->partition, r->n_ranks, s, len, NULL) != KVR_OK) {
        free(s);
        b->nomem = true;
        return;
    }
    for (char *c = s; sep != ',' && *c; c++)
        if (*c == ',') *c = sep;
    kvr_text_append(b, s, strlen(s));
    free(s);
}

// ---------------------------------------------------------------------------- text

/* The strategies marked as not runnable, "ring" or "ring;tsp" (sep between), "" for none. */
static void ex_unrunnable(const kvr_search_table *t, char sep, char *buf, size_t n) {
    ex_strategy_list(t->unrunnable, buf, n);
    for (char *c = buf; *c; c++)
        if (*c == ',') *c = sep;
}

static void ex_text(const kvr_search_table *t, const char *note, kvr_text *b) {
    ex_header_lines(t, note, b, "#");
    if (t->unrunnable) {
        char un[64];
        ex_unrunnable(t, ',', un, sizeof un);
        kvr_text_printf(b,
                        "# * %s: %s cannot run it (simulated only); %s\n", un, t->runtime,
                        t->recommend_unrunnable ? "recommended anyway (--include-unrunnable)"
                                                : "never best or recommended "
                                                  "(--include-unrunnable to allow)");
    }
    kvr_text_printf(b, "%5s %9s", "ranks", "context");
    for (int k = 0; k < KVR_STRATEGY_COUNT; k++)
        if (t->strategies & (1u << k)) {
            char col[16];
            snprintf(col, sizeof col, "%s%s", kvr_strategy_name(k),
                     t->unrunnable & (1u << k) ? "*" : "");
            kvr_text_printf(b, " %11s", col);
        }
    kvr_text_printf(b, " %-6s %9s  %s\n", "best", "search", "partition");
    kvr_text_printf(b, "%5s %9s", "(-)", "(tokens)");
    for (int k = 0; k < KVR_STRATEGY_COUNT; k++)
        if (t->strategies & (1u << k)) kvr_text_printf(b, " %11s", "(ms)");
    kvr_text_printf(b, " %-6s %9s  %s\n", "(-)", "(ms)", "(tokens)");
    for (int i = 0; i < t->n_rows; i++) {
        const kvr_search_row *r = &t->rows[i];
        kvr_text_printf(b, "%5d %9lld", r->n_ranks, (long long)r->context);
        for (int k = 0; k < KVR_STRATEGY_COUNT; k++) {
            if (!(t->strategies & (1u << k))) continue;
            if (r->has[k])
                kvr_text_printf(b, " %11.3f", r->ttft_us[k] * 1e-3);
            else
                kvr_text_printf(b, " %11s", "n/a");
        }
        kvr_text_printf(b, " %-6s %9.3f  ",
                        r->best < KVR_STRATEGY_COUNT ? kvr_strategy_name(r->best) : "-",
                        r->search_ms);
        ex_partition(r, ',', b);
        kvr_text_printf(b, "%c", '\n');
    }
    for (int i = 0; i < t->n_rows; i++)
        for (int k = 0; k < KVR_STRATEGY_COUNT; k++)
            if (t->rows[i].error[k])
                kvr_text_printf(b, "# n/a: %s at %d ranks, context %lld: %s\n",
                                kvr_strategy_name(k), t->rows[i].n_ranks,
                                (long long)t->rows[i].context, t->rows[i].error[k]);
    for (int j = 0; j < t->n_recs; j++) {
        const kvr_search_rec *rc = &t->recs[j];
        kvr_text_printf(b, "# recommended for context %lld: %s on %d rank%s, %.3f ms",
                        (long long)rc->context, kvr_strategy_name(rc->strategy), rc->n_ranks,
                        rc->n_ranks == 1 ? "" : "s", rc->ttft_us * 1e-3);
        if (rc->speedup_vs_single > 0)
            kvr_text_printf(b, " (%.2fx vs single)", rc->speedup_vs_single);
        if (t->unrunnable & (1u << rc->strategy)) kvr_text_printf(b, " [not runnable]");
        kvr_text_printf(b, "%c", '\n');
    }
}

// ---------------------------------------------------------------------------- csv

static void ex_csv(const kvr_search_table *t, kvr_text *b) {
    kvr_text_printf(b, "ranks,context");
    for (int k = 0; k < KVR_STRATEGY_COUNT; k++)
        if (t->strategies & (1u << k)) {
            char col[32];
            snprintf(col, sizeof col, "%s_ms", kvr_strategy_name(k));
            for (char *c = col; *c; c++)
                if (*c == '-') *c = '_';
            kvr_text_printf(b, ",%s", col);
        }
    kvr_text_printf(b, ",best,best_ms,search_ms,partition,recommended,recommended_ranks,"
                       "recommended_ms,unrunnable\n");
    char un[64];
    ex_unrunnable(t, ';', un, sizeof un);
    for (int i = 0; i < t->n_rows; i++) {
        const kvr_search_row *r = &t->rows[i];
        kvr_text_printf(b, "%d,%lld", r->n_ranks, (long long)r->context);
        for (int k = 0; k < KVR_STRATEGY_COUNT; k++) {
            if (!(t->strategies & (1u << k))) continue;
            if (r->has[k])
                kvr_text_printf(b, ",%.6f", r->ttft_us[k] * 1e-3);
            else
                kvr_text_printf(b, ",");
        }
        bool hb = r->best < KVR_STRATEGY_COUNT;
        kvr_text_printf(b, ",%s,", hb ? kvr_strategy_name(r->best) : "");
        if (hb) kvr_text_printf(b, "%.6f", r->ttft_us[r->best] * 1e-3);
        kvr_text_printf(b, ",%.3f,", r->search_ms);
        ex_partition(r, ';', b);
        const kvr_search_rec *rc = NULL; /* the context's recommendation: the strategy table */
        for (int j = 0; j < t->n_recs && !rc; j++)
            if (t->recs[j].context == r->context) rc = &t->recs[j];
        if (rc)
            kvr_text_printf(b, ",%s,%d,%.6f", kvr_strategy_name(rc->strategy), rc->n_ranks,
                            rc->ttft_us * 1e-3);
        else
            kvr_text_printf(b, ",,,");
        kvr_text_printf(b, ",%s\n", un);
    }
}

// ---------------------------------------------------------------------------- vllm-env

/* Weights w_i = c_i / C (rank 0 first), six decimals; the last is 1 - sum(others) so the printed
 * weights sum to exactly 1. */
static void ex_vllm(const kvr_search_table *t, kvr_text *b) {
    kvr_text_printf(b,
                    "# kvr-search %s (commit %s): KVR-S partitions as vLLM run-ahead load "
                    "weights (fraction of the prompt per rank, rank 0 first)\n",
                    kvr_version(), kvr_build_commit());
    bool kvrs = t->strategies & (1u << KVR_STRATEGY_KVR_S);
    for (int i = 0; i < t->n_rows; i++) {
        const kvr_search_row *r = &t->rows[i];
        kvr_strategy k = kvrs ? KVR_STRATEGY_KVR_S : KVR_STRATEGY_KVR_E;
        kvr_text_printf(b, "# ranks=%d context=%lld %s", r->n_ranks, (long long)r->context,
                        kvr_strategy_name(k));
        if (r->has[k]) kvr_text_printf(b, " ttft_ms=%.3f", r->ttft_us[k] * 1e-3);
        kvr_text_printf(b, " partition=");
        ex_partition(r, ',', b);
        kvr_text_printf(b, "\nVLLM_PCP_RUNAHEAD_LOAD_WEIGHTS=");
        long long sum_micro = 0;
        for (int j = 0; j < r->n_ranks; j++) {
            long long w;
            if (j + 1 < r->n_ranks) {
                w = llround((double)r->partition[j] * 1e6 / (double)r->context);
                sum_micro += w;
            } else {
                w = 1000000 - sum_micro;
            }
            kvr_text_printf(b, "%s%lld.%06lld", j ? "," : "", w / 1000000, w % 1000000);
        }
        kvr_text_printf(b, "%c", '\n');
    }
    /* the strategy table: per context the (strategy, degree) to run, as comments */
    for (int j = 0; j < t->n_recs; j++) {
        const kvr_search_rec *rc = &t->recs[j];
        kvr_text_printf(b, "# recommended context=%lld strategy=%s ranks=%d ttft_ms=%.3f\n",
                        (long long)rc->context, kvr_strategy_name(rc->strategy), rc->n_ranks,
                        rc->ttft_us * 1e-3);
    }
    if (t->unrunnable) {
        char un[64];
        ex_unrunnable(t, ',', un, sizeof un);
        kvr_text_printf(b, "# unrunnable=%s (%s cannot run it; simulated only)\n", un,
                        t->runtime);
    }
}

// ---------------------------------------------------------------------------- json

static kvr_status ex_json(const kvr_search_table *t, const char *note, kvr_text *b,
                          kvr_error *err) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (json)");
    cJSON_AddStringToObject(root, "schema", "kvr-search-table/1");
    cJSON *kv = cJSON_AddObjectToObject(root, "kvr");
    if (kv) {
        cJSON_AddStringToObject(kv, "version", kvr_version());
        cJSON_AddStringToObject(kv, "commit", kvr_build_commit());
    }
    if (note && note[0]) cJSON_AddStringToObject(root, "note", note);
    cJSON_AddItemToObject(root, "costs", cJSON_Duplicate(t->costs_json, true));
    cJSON_AddNumberToObject(root, "granularity", (double)t->granularity);
    cJSON_AddStringToObject(root, "remainder", "last-chunk");
    cJSON *sp = cJSON_AddObjectToObject(root, "search");
    if (sp) {
        cJSON_AddBoolToObject(sp, "refine", t->params.refine);
        cJSON_AddBoolToObject(sp, "multi_start", t->params.multi_start);
        cJSON_AddNumberToObject(sp, "max_evals", (double)t->params.max_evals);
    }
    cJSON *sl = cJSON_AddArrayToObject(root, "strategies");
    for (int k = 0; sl && k < KVR_STRATEGY_COUNT; k++)
        if (t->strategies & (1u << k))
            cJSON_AddItemToArray(sl, cJSON_CreateString(kvr_strategy_name(k)));
    cJSON_AddStringToObject(root, "runtime", t->runtime);
    cJSON *ur = cJSON_AddArrayToObject(root, "unrunnable");
    for (int k = 0; ur && k < KVR_STRATEGY_COUNT; k++)
        if (t->unrunnable & (1u << k))
            cJSON_AddItemToArray(ur, cJSON_CreateString(kvr_strategy_name(k)));
    cJSON_AddBoolToObject(root, "include_unrunnable", t->recommend_unrunnable);
    cJSON *un = cJSON_AddObjectToObject(root, "units");
    if (un) {
        cJSON_AddStringToObject(un, "ttft_ms", "milliseconds");
        cJSON_AddStringToObject(un, "search_ms", "milliseconds (wall time of the KVR-S search)");
        cJSON_AddStringToObject(un, "partition", "tokens per rank, rank 0 first");
        cJSON_AddStringToObject(un, "context", "tokens");
    }
    cJSON *res = cJSON_AddArrayToObject(root, "results");
    for (int i = 0; res && i < t->n_rows; i++) {
        const kvr_search_row *r = &t->rows[i];
        cJSON *o = cJSON_CreateObject();
        if (!o) break;
        cJSON_AddItemToArray(res, o);
        cJSON_AddNumberToObject(o, "ranks", r->n_ranks);
        cJSON_AddNumberToObject(o, "context", (double)r->context);
        cJSON *pa = cJSON_AddArrayToObject(o, "partition");
        for (int j = 0; pa && j < r->n_ranks; j++)
            cJSON_AddItemToArray(pa, cJSON_CreateNumber((double)r->partition[j]));
        cJSON_AddStringToObject(o, "partition_of",
                                kvr_strategy_name((t->strategies & (1u << KVR_STRATEGY_KVR_S))
                                                      ? KVR_STRATEGY_KVR_S
                                                      : KVR_STRATEGY_KVR_E));
        cJSON *so = cJSON_AddObjectToObject(o, "strategies");
        for (int k = 0; so && k < KVR_STRATEGY_COUNT; k++) {
            if (!(t->strategies & (1u << k))) continue;
            cJSON *e = cJSON_AddObjectToObject(so, kvr_strategy_name(k));
            if (!e) continue;
            cJSON_AddBoolToObject(e, "runnable", !(t->unrunnable & (1u << k)));
            if (r->has[k]) {
                cJSON_AddNumberToObject(e, "ttft_ms", ex_ms(r->ttft_us[k]));
            } else {
                cJSON_AddNullToObject(e, "ttft_ms");
                if (r->error[k]) cJSON_AddStringToObject(e, "error", r->error[k]);
            }
        }
        if (r->best < KVR_STRATEGY_COUNT) {
            cJSON_AddStringToObject(o, "best", kvr_strategy_name(r->best));
            cJSON_AddNumberToObject(o, "best_ttft_ms", ex_ms(r->ttft_us[r->best]));
        } else {
            cJSON_AddNullToObject(o, "best");
        }
        cJSON_AddNumberToObject(o, "search_ms", round(r->search_ms * 1e3) * 1e-3);
    }
    cJSON *rec = cJSON_AddArrayToObject(root, "recommendations");
    for (int j = 0; rec && j < t->n_recs; j++) {
        const kvr_search_rec *rc = &t->recs[j];
        cJSON *o = cJSON_CreateObject();
        if (!o) break;
        cJSON_AddItemToArray(rec, o);
        cJSON_AddNumberToObject(o, "context", (double)rc->context);
        cJSON_AddStringToObject(o, "strategy", kvr_strategy_name(rc->strategy));
        cJSON_AddNumberToObject(o, "ranks", rc->n_ranks);
        cJSON_AddNumberToObject(o, "ttft_ms", ex_ms(rc->ttft_us));
        cJSON_AddBoolToObject(o, "runnable", !(t->unrunnable & (1u << rc->strategy)));
        if (rc->speedup_vs_single > 0)
            cJSON_AddNumberToObject(o, "speedup_vs_single", round(rc->speedup_vs_single * 1e4) * 1e-4);
    }
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    if (!s) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (json)");
    kvr_text_printf(b, "%s\n", s);
    cJSON_free(s);
    return KVR_OK;
}

/* Renders a table; see kvr_search.h. */
kvr_status kvr_search_table_format(const kvr_search_table *t, kvr_search_format fmt,
                                   const char *note, char **out, kvr_error *err) {
    if (!t || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "format: NULL argument");
    kvr_text b = {0};
    switch (fmt) {
        case KVR_SEARCH_FORMAT_TEXT: ex_text(t, note, &b); break;
        case KVR_SEARCH_FORMAT_CSV: ex_csv(t, &b); break;
        case KVR_SEARCH_FORMAT_VLLM_ENV: ex_vllm(t, &b); break;
        case KVR_SEARCH_FORMAT_JSON: {
            kvr_status s = ex_json(t, note, &b, err);
            if (s != KVR_OK) {
                kvr_text_free(&b);
                return s;
            }
            break;
        }
        default: return kvr_error_set(err, KVR_ERR_INVALID_ARG, "format: unknown format %d", (int)fmt);
    }
    return kvr_text_take(&b, out, "export", err);
}

// ----------------------------------------------------------------------------
// timelines

void kvr_search_timeline_set_label(kvr_search_timeline *tl, const char *label) {
    snprintf(tl->strategy, sizeof tl->strategy, "%s", label ? label : "");
}

double kvr_search_timeline_ttft_us(const kvr_search_timeline *tl) {
    return tl->ttft_us;
}

kvr_status kvr_search_timeline_format_csv(const kvr_search_timeline *tl, bool header, char **out,
                                          kvr_error *err) {
    if (!tl || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "timeline: NULL argument");
    kvr_text b = {0};
    if (header)
        kvr_text_printf(&b, "strategy,ranks,context,rank,layer,kind,peer,start_us,end_us\n");
    for (size_t i = 0; i < tl->n; i++) {
        const kvr_event *e = &tl->ev[i];
        kvr_text_printf(&b, "%s,%d,%lld,%d,%d,%s,%d,%.3f,%.3f\n", tl->strategy, tl->n_ranks,
                        (long long)tl->context, e->rank, e->layer, kvr_event_kind_name(e->kind),
                        e->peer, e->start_us, e->end_us);
    }
    return kvr_text_take(&b, out, "export", err);
}

static const char ex_glyph[KVR_EVENT_KIND_COUNT] = {'e', 'p', 'A', 'm', '.', '>',
                                                      'g', 'H', 'M', 'o'};

kvr_status kvr_search_timeline_format_text(const kvr_search_timeline *tl, int width, char **out,
                                           kvr_error *err) {
    if (!tl || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "timeline: NULL argument");
    if (width < 10 || width > 1000)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "timeline: width must be in [10, 1000]");
    const int p = tl->n_ranks > 0 ? tl->n_ranks : 1, W = width;
    double T = tl->ttft_us;
    for (size_t i = 0; i < tl->n; i++) T = KVR_MAX(T, tl->ev[i].end_us);
    if (!(T > 0)) T = 1;
    const double col_us = T / W;
    /* acc[rank][row][col][kind]: time of each kind in each column; row 0 compute, row 1 link */
    size_t nacc = (size_t)p * 2 * (size_t)W * KVR_EVENT_KIND_COUNT;
    double *acc = calloc(nacc, sizeof *acc);
    double *tot = calloc((size_t)p * KVR_EVENT_KIND_COUNT, sizeof *tot);
    if (!acc || !tot) {
        free(acc);
        free(tot);
        return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (timeline)");
    }
    for (size_t i = 0; i < tl->n; i++) {
        const kvr_event *e = &tl->ev[i];
        if (e->rank < 0 || e->rank >= p || !(e->end_us > e->start_us)) continue;
        tot[(size_t)e->rank * KVR_EVENT_KIND_COUNT + e->kind] += e->end_us - e->start_us;
        int row = e->kind == KVR_EVENT_SEND ? 1 : 0;
        int c0 = (int)(e->start_us / col_us), c1 = (int)(e->end_us / col_us);
        if (c0 < 0) c0 = 0;
        if (c1 >= W) c1 = W - 1;
        for (int c = c0; c <= c1; c++) {
            double lo = KVR_MAX(e->start_us, c * col_us), hi = KVR_MIN(e->end_us, (c + 1) * col_us);
            if (hi > lo)
                acc[(((size_t)e->rank * 2 + row) * W + c) * KVR_EVENT_KIND_COUNT + e->kind] += hi - lo;
        }
    }
    kvr_text b = {0};
    kvr_text_printf(&b,
                    "# timeline %s: %d rank%s, context %lld, %d layers, TTFT %.3f ms; one column "
                    "= %.3f ms\n",
                    tl->strategy, p, p == 1 ? "" : "s", (long long)tl->context, tl->n_layers,
                    tl->ttft_us * 1e-3, col_us * 1e-3);
    kvr_text_printf(&b,
                    "# legend: e embed, p pre (norm+QKV+RoPE), A attention, m post (O-proj+MLP), "
                    ". wait, g all-gather, M merge (ring), H head, o fixed overhead; link rows: > K/V transfer to "
                    "the next rank\n");
    for (int r = 0; r < p; r++) {
        for (int row = 0; row < 2; row++) {
            bool any = false;
            for (int c = 0; c < W && !any; c++)
                for (int k = 0; k < KVR_EVENT_KIND_COUNT && !any; k++)
                    any = acc[(((size_t)r * 2 + row) * W + c) * KVR_EVENT_KIND_COUNT + k] > 0;
            if (row == 1 && !any) continue;
            kvr_text_printf(&b, "r%-4d %-4s |", r, row ? "link" : "cmp");
            for (int c = 0; c < W; c++) {
                const double *a = &acc[(((size_t)r * 2 + row) * W + c) * KVR_EVENT_KIND_COUNT];
                int bk = -1;
                double bv = 0.05 * col_us; /* under 5% of a column reads as idle */
                for (int k = 0; k < KVR_EVENT_KIND_COUNT; k++)
                    if (a[k] > bv) {
                        bv = a[k];
                        bk = k;
                    }
                kvr_text_printf(&b, "%c", bk < 0 ? ' ' : ex_glyph[bk]);
            }
            kvr_text_printf(&b, "|\n");
        }
    }
    kvr_text_printf(&b, "%-5s %10s %10s %10s %10s\n", "rank", "compute", "wait", "link", "idle");
    kvr_text_printf(&b, "%-5s %10s %10s %10s %10s\n", "(-)", "(ms)", "(ms)", "(ms)", "(ms)");
    for (int r = 0; r < p; r++) {
        const double *t = &tot[(size_t)r * KVR_EVENT_KIND_COUNT];
        double comp = t[KVR_EVENT_EMBED] + t[KVR_EVENT_PRE] + t[KVR_EVENT_ATTN] + t[KVR_EVENT_POST] +
                      t[KVR_EVENT_HEAD] + t[KVR_EVENT_MERGE] + t[KVR_EVENT_OVERHEAD];
        double wait = t[KVR_EVENT_WAIT] + t[KVR_EVENT_ALLGATHER];
        double idle = tl->ttft_us - comp - wait;
        kvr_text_printf(&b, "r%-4d %10.3f %10.3f %10.3f %10.3f\n", r, comp * 1e-3, wait * 1e-3,
                        t[KVR_EVENT_SEND] * 1e-3, (idle > 0 ? idle : 0) * 1e-3);
    }
    free(acc);
    free(tot);
    return kvr_text_take(&b, out, "export", err);
}
