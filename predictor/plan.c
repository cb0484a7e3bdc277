/* plan.c -- the strategy table: per context of a KVR-S table, every (strategy, degree) it
 * simulated with its TTFT, and the choice for a prompt length within a rank budget and the
 * strategies the runtime can run (kvr-run --mode auto). Predict time: no GSL, no store. */
#include "kvrp_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct plan_entry {
    int64_t context, context_min, context_max;
    int n_options;
    kvr_strategy_option *options; /* by TTFT, ties to fewer ranks */
} plan_entry;

struct kvr_strategy_table {
    int n;
    plan_entry *e;            /* ascending context */
    kvr_strategy_entry *view; /* the public form of e */
};

void kvr_strategy_table_destroy(kvr_strategy_table *st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++) free(st->e[i].options);
    free(st->e);
    free(st->view);
    free(st);
}

int kvr_strategy_table_n_entries(const kvr_strategy_table *st) {
    return st ? st->n : 0;
}

const kvr_strategy_entry *kvr_strategy_table_entry(const kvr_strategy_table *st, int i) {
    return st && i >= 0 && i < st->n ? &st->view[i] : NULL;
}

static int plan_cmp_option(const void *a, const void *b) {
    const kvr_strategy_option *x = a, *y = b;
    if (x->ttft_us != y->ttft_us) return x->ttft_us < y->ttft_us ? -1 : 1;
    if (x->n_ranks != y->n_ranks) return x->n_ranks < y->n_ranks ? -1 : 1;
    return (int)x->strategy - (int)y->strategy;
}

static int plan_cmp_i64(const void *a, const void *b) {
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Ranges, sorting and the public view, once the entries hold their options. */
static kvr_status plan_finish(kvr_strategy_table *st, kvr_error *err) {
    st->view = calloc((size_t)st->n, sizeof *st->view);
    if (!st->view) return kvr_error_set(err, KVR_ERR_NOMEM, "strategy table: out of memory");
    for (int i = 0; i < st->n; i++) {
        plan_entry *e = &st->e[i];
        qsort(e->options, (size_t)e->n_options, sizeof *e->options, plan_cmp_option);
        e->context_min = i == 0 ? 1
                                : (int64_t)floor(sqrt((double)st->e[i - 1].context *
                                                      (double)e->context)) + 1;
        e->context_max = i == st->n - 1
                             ? KVR_MAX(KVR_SEARCH_MAX_CONTEXT, e->context)
                             : (int64_t)floor(sqrt((double)e->context *
                                                   (double)st->e[i + 1].context));
        if (e->context_max < e->context) e->context_max = e->context;
        if (e->context_min > e->context) e->context_min = e->context;
        kvr_strategy_entry *v = &st->view[i];
        v->context = e->context;
        v->context_min = e->context_min;
        v->context_max = e->context_max;
        v->n_options = e->n_options;
        v->options = e->options;
        v->best = e->options[0];
    }
    return KVR_OK;
}

kvr_status kvr_strategy_table_build(const kvr_strategy_row *rows, int n,
                                    kvr_strategy_table **out, kvr_error *err) {
    if (!rows || n < 1 || !out)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "strategy table: no rows");
    int64_t *ctx = malloc((size_t)n * sizeof *ctx);
    kvr_strategy_table *st = calloc(1, sizeof *st);
    if (!ctx || !st) {
        free(ctx);
        free(st);
        return kvr_error_set(err, KVR_ERR_NOMEM, "strategy table: out of memory");
    }
    for (int i = 0; i < n; i++) ctx[i] = rows[i].context;
    qsort(ctx, (size_t)n, sizeof *ctx, plan_cmp_i64);
    int nc = 0;
    for (int i = 0; i < n; i++)
        if (nc == 0 || ctx[nc - 1] != ctx[i]) ctx[nc++] = ctx[i];
    st->e = calloc((size_t)nc, sizeof *st->e);
    kvr_status s = st->e ? KVR_OK : kvr_error_set(err, KVR_ERR_NOMEM, "strategy table: out of memory");
    for (int j = 0; s == KVR_OK && j < nc; j++) {
        plan_entry *e = &st->e[st->n++];
        e->context = ctx[j];
        e->options = calloc((size_t)n * KVR_STRATEGY_COUNT, sizeof *e->options);
        if (!e->options) {
            s = kvr_error_set(err, KVR_ERR_NOMEM, "strategy table: out of memory");
            break;
        }
        bool single = false;
        for (int i = 0; i < n; i++) {
            const kvr_strategy_row *r = &rows[i];
            if (r->context != e->context) continue;
            if (r->n_ranks < 1 || r->context < 1) {
                s = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                  "strategy table: row (%d ranks, %lld tokens) is out of range",
                                  r->n_ranks, (long long)r->context);
                break;
            }
            for (int k = 0; k < KVR_STRATEGY_COUNT; k++) {
                const double v = r->ttft_us[k];
                if (!(v >= 0) || !isfinite(v)) continue;
                const int deg = k == KVR_STRATEGY_SINGLE || r->n_ranks == 1 ? 1 : r->n_ranks;
                const kvr_strategy sk = deg == 1 ? KVR_STRATEGY_SINGLE : (kvr_strategy)k;
                if (deg == 1 && single) continue; /* one single per context */
                single |= deg == 1;
                e->options[e->n_options++] = (kvr_strategy_option){sk, deg, v};
            }
        }
        if (s == KVR_OK && e->n_options == 0)
            s = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                              "strategy table: context %lld has no simulated strategy",
                              (long long)e->context);
    }
    free(ctx);
    if (s == KVR_OK) s = plan_finish(st, err);
    if (s != KVR_OK) {
        kvr_strategy_table_destroy(st);
        return s;
    }
    *out = st;
    return KVR_OK;
}

kvr_status kvr_strategy_table_from_search(const kvr_search_table *t, kvr_strategy_table **out,
                                          kvr_error *err) {
    const int n = t ? kvr_search_table_n_rows(t) : 0;
    if (n < 1) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "strategy table: empty table");
    kvr_strategy_row *rows = calloc((size_t)n, sizeof *rows);
    if (!rows) return kvr_error_set(err, KVR_ERR_NOMEM, "strategy table: out of memory");
    for (int i = 0; i < n; i++) {
        const kvr_search_row *r = kvr_search_table_row(t, i);
        rows[i].n_ranks = r->n_ranks;
        rows[i].context = r->context;
        for (int k = 0; k < KVR_STRATEGY_COUNT; k++)
            rows[i].ttft_us[k] = r->has[k] && !r->error[k] ? r->ttft_us[k] : -1;
    }
    kvr_status s = kvr_strategy_table_build(rows, n, out, err);
    free(rows);
    return s;
}

kvr_status kvr_strategy_table_copy(const kvr_strategy_table *st, kvr_strategy_table **out,
                                   kvr_error *err) {
    if (!st || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "strategy table: NULL");
    kvr_strategy_table *c = calloc(1, sizeof *c);
    if (c) c->e = calloc((size_t)st->n, sizeof *c->e);
    kvr_status s = c && c->e ? KVR_OK : kvr_error_set(err, KVR_ERR_NOMEM, "out of memory");
    for (int i = 0; s == KVR_OK && i < st->n; i++) {
        plan_entry *d = &c->e[c->n++];
        *d = st->e[i];
        d->options = malloc((size_t)d->n_options * sizeof *d->options);
        if (!d->options) {
            d->n_options = 0;
            s = kvr_error_set(err, KVR_ERR_NOMEM, "out of memory");
        } else {
            memcpy(d->options, st->e[i].options, (size_t)d->n_options * sizeof *d->options);
        }
    }
    if (s == KVR_OK) s = plan_finish(c, err);
    if (s != KVR_OK) {
        kvr_strategy_table_destroy(c);
        return s;
    }
    *out = c;
    return KVR_OK;
}

kvr_status kvr_strategy_table_choose(const kvr_strategy_table *st, int64_t C, int max_ranks,
                                     unsigned runnable, kvr_strategy_choice *out,
                                     kvr_error *err) {
    if (!st || st->n < 1 || !out)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "strategy table: none");
    if (C < 1) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "context %lld < 1", (long long)C);
    int lo = 0, hi = st->n - 1; /* the entry whose range holds C: binary search */
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (C > st->e[mid].context_max)
            lo = mid + 1;
        else
            hi = mid;
    }
    const plan_entry *e = &st->e[lo];
    for (int i = 0; i < e->n_options; i++) { /* ordered by TTFT: the first that qualifies */
        const kvr_strategy_option *o = &e->options[i];
        if (o->n_ranks > max_ranks || o->n_ranks > C) continue;
        if (o->strategy == KVR_STRATEGY_RING && 2 * (int64_t)o->n_ranks > C) continue; /* 2p chunks */
        if (runnable && !(runnable & (1u << o->strategy))) continue;
        out->strategy = o->strategy;
        out->n_ranks = o->n_ranks;
        out->ttft_us = o->ttft_us;
        out->context = e->context;
        out->in_range = C >= st->e[0].context && C <= st->e[st->n - 1].context;
        return KVR_OK;
    }
    return kvr_error_set(err, KVR_ERR_NOT_FOUND,
                         "the strategy table has no runnable option on at most %d rank(s) for "
                         "context %lld",
                         max_ranks, (long long)e->context);
}

// ----------------------------------------------------------------------------
// JSON

cJSON *predict_plan_json(const kvr_strategy_table *st) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "schema", "kvr-strategy-table/1");
    cJSON *ea = cJSON_AddArrayToObject(o, "entries");
    for (int i = 0; ea && i < st->n; i++) {
        const plan_entry *e = &st->e[i];
        cJSON *eo = cJSON_CreateObject();
        if (!eo) break;
        cJSON_AddItemToArray(ea, eo);
        cJSON_AddNumberToObject(eo, "context", (double)e->context);
        cJSON_AddNumberToObject(eo, "context_min", (double)e->context_min);
        cJSON_AddNumberToObject(eo, "context_max", (double)e->context_max);
        cJSON_AddStringToObject(eo, "best", kvr_strategy_name(e->options[0].strategy));
        cJSON_AddNumberToObject(eo, "best_ranks", e->options[0].n_ranks);
        cJSON *oa = cJSON_AddArrayToObject(eo, "options");
        for (int k = 0; oa && k < e->n_options; k++) {
            cJSON *op = cJSON_CreateObject();
            if (!op) break;
            cJSON_AddItemToArray(oa, op);
            cJSON_AddStringToObject(op, "strategy", kvr_strategy_name(e->options[k].strategy));
            cJSON_AddNumberToObject(op, "ranks", e->options[k].n_ranks);
            predict_json_add_num(op, "ttft_us", e->options[k].ttft_us);
        }
    }
    return o;
}

static kvr_status plan_fail(kvr_error *err, const char *name, int i, const char *what) {
    return kvr_error_set(err, KVR_ERR_FORMAT, "%s: strategy_table: entries[%d]: %s", name, i,
                         what);
}

kvr_status predict_plan_parse(const cJSON *o, const char *name, kvr_strategy_table **out,
                              kvr_error *err) {
    const cJSON *ea = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, "entries") : NULL;
    if (!cJSON_IsArray(ea) || cJSON_GetArraySize(ea) < 1)
        return kvr_error_set(err, KVR_ERR_FORMAT,
                             "%s: strategy_table: \"entries\" must be a non-empty array", name);
    int n = 0;
    for (const cJSON *it = ea->child; it; it = it->next)
        n += cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(it, "options"));
    kvr_strategy_row *rows = calloc((size_t)(n > 0 ? n : 1), sizeof *rows);
    if (!rows) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory");
    int nr = 0, i = 0;
    kvr_status s = KVR_OK;
    for (const cJSON *it = ea->child; s == KVR_OK && it; it = it->next, i++) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "context");
        const cJSON *oa = cJSON_GetObjectItemCaseSensitive(it, "options");
        if (!cJSON_IsNumber(c) || c->valuedouble < 1 || c->valuedouble > 9e15 ||
            c->valuedouble != floor(c->valuedouble)) {
            s = plan_fail(err, name, i, "\"context\" must be a positive integer");
            break;
        }
        if (!cJSON_IsArray(oa) || cJSON_GetArraySize(oa) < 1) {
            s = plan_fail(err, name, i, "\"options\" must be a non-empty array");
            break;
        }
        for (const cJSON *op = oa->child; op; op = op->next) {
            const cJSON *sn = cJSON_GetObjectItemCaseSensitive(op, "strategy");
            const cJSON *rk = cJSON_GetObjectItemCaseSensitive(op, "ranks");
            const cJSON *tt = cJSON_GetObjectItemCaseSensitive(op, "ttft_us");
            kvr_strategy k;
            if (!cJSON_IsString(sn) || kvr_strategy_parse(sn->valuestring, &k, NULL) != KVR_OK) {
                s = plan_fail(err, name, i, "an option's \"strategy\" is not a strategy name");
                break;
            }
            if (!cJSON_IsNumber(rk) || rk->valuedouble < 1 || rk->valuedouble > KVR_MAX_RANKS ||
                rk->valuedouble != floor(rk->valuedouble)) {
                s = plan_fail(err, name, i, "an option's \"ranks\" must be in [1, 256]");
                break;
            }
            if (!cJSON_IsNumber(tt) || !isfinite(tt->valuedouble) || tt->valuedouble < 0) {
                s = plan_fail(err, name, i, "an option's \"ttft_us\" must be a number >= 0");
                break;
            }
            kvr_strategy_row *r = &rows[nr++];
            r->n_ranks = (int)rk->valuedouble;
            r->context = (int64_t)c->valuedouble;
            for (int j = 0; j < KVR_STRATEGY_COUNT; j++) r->ttft_us[j] = -1;
            r->ttft_us[k] = tt->valuedouble;
        }
    }
    if (s == KVR_OK) {
        kvr_error e;
        s = kvr_strategy_table_build(rows, nr, out, &e);
        if (s != KVR_OK) kvr_error_set(err, KVR_ERR_FORMAT, "%s: %s", name, e.msg);
    }
    free(rows);
    return s;
}

kvr_status kvr_strategy_table_to_json(const kvr_strategy_table *st, char **out,
                                      kvr_error *err) {
    if (!st || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "strategy table: NULL");
    return predict_json_finish(predict_plan_json(st), out, err);
}

kvr_status kvr_strategy_table_from_json(const char *text, size_t len, const char *name,
                                        kvr_strategy_table **out, kvr_error *err) {
    if (!text || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "strategy table: NULL");
    if (!name) name = "strategy table";
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) return kvr_error_set(err, KVR_ERR_FORMAT, "%s: not valid JSON", name);
    kvr_status s = predict_plan_parse(root, name, out, err);
    cJSON_Delete(root);
    return s;
}

kvr_status kvr_predictor_set_strategy_table(kvr_predictor *kp, const kvr_strategy_table *st,
                                            kvr_error *err) {
    if (!kp) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "predictor: NULL");
    kvr_strategy_table *c = NULL;
    if (st) KVR_TRY(kvr_strategy_table_copy(st, &c, err));
    kvr_strategy_table_destroy(kp->plan);
    kp->plan = c;
    return KVR_OK;
}

const kvr_strategy_table *kvr_predictor_strategy_table(const kvr_predictor *kp) {
    return kp ? kp->plan : NULL;
}
