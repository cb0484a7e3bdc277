/* table.c -- partition tables: for each rank count and context, the KVR-S partition and the
 * simulated TTFT of every selected strategy, and per context the recommended (strategy, degree),
 * "single" included. Rendering lives in export.c. */
#include "search_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Rows expose const pointers to callers; the table owns and frees them. */
static void table_free_owned(const void *p) {
    union {
        const void *c;
        void *m;
    } u = {p};
    free(u.m);
}

void kvr_search_table_destroy(kvr_search_table *t) {
    if (!t) return;
    for (int i = 0; i < t->n_rows; i++) {
        table_free_owned(t->rows[i].partition);
        for (int k = 0; k < KVR_STRATEGY_COUNT; k++) table_free_owned(t->rows[i].error[k]);
    }
    free(t->rows);
    free(t->recs);
    free(t->single_us);
    cJSON_Delete(t->costs_json);
    free(t);
}

int kvr_search_table_n_rows(const kvr_search_table *t) {
    return t->n_rows;
}
const kvr_search_row *kvr_search_table_row(const kvr_search_table *t, int i) {
    return i >= 0 && i < t->n_rows ? &t->rows[i] : NULL;
}
int kvr_search_table_n_recs(const kvr_search_table *t) {
    return t->n_recs;
}
const kvr_search_rec *kvr_search_table_rec(const kvr_search_table *t, int i) {
    return i >= 0 && i < t->n_recs ? &t->recs[i] : NULL;
}

/* Run one strategy; a missing link becomes a per-row note, anything else fails the table. */
static kvr_status table_sim(const kvr_search_costs *m, kvr_search_row *row, kvr_strategy k,
                            kvr_status s, double ttft, kvr_error *e, kvr_error *err) {
    if (s == KVR_OK) {
        row->has[k] = true;
        row->ttft_us[k] = ttft;
        return KVR_OK;
    }
    (void)m;
    if (s == KVR_ERR_NOT_FOUND) {
        row->error[k] = kvr_strdup(e->msg);
        if (!row->error[k]) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (table)");
        return KVR_OK;
    }
    if (err) *err = *e;
    return kvr_error_prefix(err, "%s, %d ranks, context %lld", kvr_strategy_name(k), row->n_ranks,
                            (long long)row->context);
}

/* The row's fastest strategy outside skip; near-ties (1e-9 relative, e.g. every strategy at
 * p = 1) go to the simplest. KVR_STRATEGY_COUNT when none. */
static kvr_strategy table_best(const kvr_search_row *row, unsigned skip) {
    static const kvr_strategy pref[KVR_STRATEGY_COUNT] = {KVR_STRATEGY_SINGLE, KVR_STRATEGY_KVR_E,
                                                          KVR_STRATEGY_KVR_S, KVR_STRATEGY_TSP,
                                                          KVR_STRATEGY_RING};
    kvr_strategy best = KVR_STRATEGY_COUNT;
    for (int i = 0; i < KVR_STRATEGY_COUNT; i++) {
        kvr_strategy k = pref[i];
        if (skip & (1u << k)) continue;
        if (row->has[k] &&
            (best == KVR_STRATEGY_COUNT || row->ttft_us[k] < row->ttft_us[best] * (1 - 1e-9)))
            best = k;
    }
    return best;
}

static kvr_status table_row(const kvr_search_costs *m, const kvr_search_table_config *cfg,
                            unsigned mask, kvr_search_row *row, const double *single_us,
                            kvr_error *err) {
    const int p = row->n_ranks;
    const int64_t C = row->context, g = cfg->params.granularity;
    int64_t *part = malloc((size_t)p * sizeof *part);
    if (!part) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (table)");
    row->partition = part;
    kvr_error e;
    double t = 0;
    kvr_status s;
    if (mask & (1u << KVR_STRATEGY_KVR_E)) {
        s = kvr_search_partition_start(m, KVR_SEARCH_START_EVEN, p, C, g, part, &e);
        if (s == KVR_OK) s = kvr_search_sim_kvr(m, p, part, NULL, &t, &e);
        KVR_TRY(table_sim(m, row, KVR_STRATEGY_KVR_E, s, t, &e, err));
    }
    if (mask & (1u << KVR_STRATEGY_KVR_S)) {
        kvr_search_stats st;
        double t0 = kvr_time_us();
        s = kvr_search_partition(m, p, C, &cfg->params, part, &st, &e);
        row->search_ms = (kvr_time_us() - t0) * 1e-3;
        KVR_TRY(table_sim(m, row, KVR_STRATEGY_KVR_S, s, st.ttft_us, &e, err));
    } else if (!(mask & (1u << KVR_STRATEGY_KVR_E))) {
        /* neither KVR strategy: still report the even partition for reference */
        KVR_TRY(kvr_search_partition_start(m, KVR_SEARCH_START_EVEN, p, C, g, part, err));
    }
    if (mask & (1u << KVR_STRATEGY_TSP)) {
        s = kvr_search_sim_tsp(m, p, C, NULL, &t, &e);
        KVR_TRY(table_sim(m, row, KVR_STRATEGY_TSP, s, t, &e, err));
    }
    if (mask & (1u << KVR_STRATEGY_RING)) {
        s = kvr_search_sim_ring(m, p, C, NULL, &t, &e);
        KVR_TRY(table_sim(m, row, KVR_STRATEGY_RING, s, t, &e, err));
    }
    if (mask & (1u << KVR_STRATEGY_SINGLE)) {
        row->has[KVR_STRATEGY_SINGLE] = true;
        row->ttft_us[KVR_STRATEGY_SINGLE] = *single_us;
    }
    row->best = table_best(row, 0);
    return KVR_OK;
}

/* Per context, the fastest (strategy, degree) over the rows among those not in skip; ties go to
 * fewer ranks. KVR_ERR_NOT_FOUND when a context has none. */
static kvr_status table_recs(const kvr_search_table *t, unsigned skip, kvr_search_rec *recs,
                             kvr_error *err) {
    for (int j = 0; j < t->n_recs; j++) {
        kvr_search_rec *rc = &recs[j];
        rc->context = t->recs[j].context;
        rc->strategy = KVR_STRATEGY_COUNT;
        rc->n_ranks = 0;
        rc->ttft_us = INFINITY;
        for (int r = 0; r < t->n_rows; r++) {
            const kvr_search_row *row = &t->rows[r];
            if (row->context != rc->context) continue;
            for (int k = 0; k < KVR_STRATEGY_COUNT; k++) {
                if (!row->has[k] || (skip & (1u << k))) continue;
                int deg = k == KVR_STRATEGY_SINGLE ? 1 : row->n_ranks;
                double v = row->ttft_us[k];
                bool better = v < rc->ttft_us * (1 - 1e-9) ||
                              (v <= rc->ttft_us * (1 + 1e-9) && deg < rc->n_ranks);
                if (rc->strategy == KVR_STRATEGY_COUNT || better) {
                    rc->strategy = (kvr_strategy)k;
                    rc->n_ranks = deg;
                    rc->ttft_us = v;
                }
            }
        }
        if (rc->n_ranks == 1) rc->strategy = KVR_STRATEGY_SINGLE; /* p = 1 of any kind */
        rc->speedup_vs_single = (t->strategies & (1u << KVR_STRATEGY_SINGLE)) && rc->ttft_us > 0
                                    ? t->single_us[j] / rc->ttft_us
                                    : 0;
        if (rc->strategy == KVR_STRATEGY_COUNT) {
            const char *why = skip & t->strategies ? "no runnable strategy selected (the others: "
                                                     "--include-unrunnable)"
                                                   : "no strategy selected";
            for (int r = 0; r < t->n_rows; r++)
                for (int k = 0; k < KVR_STRATEGY_COUNT; k++)
                    if (t->rows[r].context == rc->context && t->rows[r].error[k])
                        why = t->rows[r].error[k];
            return kvr_error_set(err, KVR_ERR_NOT_FOUND,
                                 "context %lld: no selected strategy could be simulated: %s",
                                 (long long)rc->context, why);
        }
    }
    return KVR_OK;
}

kvr_status kvr_search_table_set_runnable(kvr_search_table *t, unsigned unrunnable,
                                         bool recommend_unrunnable, const char *runtime,
                                         kvr_error *err) {
    if (!t) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "table: NULL argument");
    const unsigned skip = recommend_unrunnable ? 0 : unrunnable & t->strategies;
    kvr_search_rec *recs = calloc((size_t)(t->n_recs ? t->n_recs : 1), sizeof *recs);
    if (!recs) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (table)");
    kvr_status s = table_recs(t, skip, recs, err);
    if (s != KVR_OK) {
        free(recs);
        return s;
    }
    memcpy(t->recs, recs, (size_t)t->n_recs * sizeof *recs);
    free(recs);
    for (int i = 0; i < t->n_rows; i++) t->rows[i].best = table_best(&t->rows[i], skip);
    t->unrunnable = unrunnable & t->strategies;
    t->recommend_unrunnable = recommend_unrunnable;
    snprintf(t->runtime, sizeof t->runtime, "%s", runtime ? runtime : "the runtime");
    return KVR_OK;
}

unsigned kvr_search_table_unrunnable(const kvr_search_table *t) {
    return t ? t->unrunnable : 0;
}

/* Builds the table; see kvr_search.h. */
kvr_status kvr_search_table_create(const kvr_search_costs *m, const kvr_search_table_config *cfg,
                                   kvr_search_table **out, kvr_error *err) {
    return kvr_search_table_create_progress(m, cfg, NULL, NULL, out, err);
}

kvr_status kvr_search_table_create_progress(const kvr_search_costs *m,
                                            const kvr_search_table_config *cfg,
                                            void (*progress)(void *user, int done, int total),
                                            void *user, kvr_search_table **out, kvr_error *err) {
    if (!m || !cfg || !out || cfg->n_ranks < 1 || cfg->n_contexts < 1 || !cfg->ranks ||
        !cfg->contexts)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "table: need a cost model, at least one rank count and one context");
    unsigned mask = cfg->strategies ? cfg->strategies : (1u << KVR_STRATEGY_COUNT) - 1;
    if (mask >> KVR_STRATEGY_COUNT)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "table: unknown strategy bits 0x%x", mask);
    const int64_t g = cfg->params.granularity;
    if (g < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "granularity must be >= 1, got %lld",
                             (long long)g);
    for (int i = 0; i < cfg->n_ranks; i++) {
        int p = cfg->ranks[i];
        if (p < 1 || p > SEARCH_MAX_DEVICES)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG, "ranks must be in [1, %d], got %d",
                                 SEARCH_MAX_DEVICES, p);
        if (p > kvr_search_costs_max_ranks(m))
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "%d ranks requested but the links of %s cover only %d devices",
                                 p, m->links_source ? m->links_source : m->source,
                                 kvr_search_costs_max_ranks(m));
        for (int j = 0; j < cfg->n_contexts; j++) {
            int64_t C = cfg->contexts[j];
            if (C > KVR_SEARCH_MAX_CONTEXT)
                return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                     "context %lld is larger than %lld (16M tokens, the largest "
                                     "the search plans)",
                                     (long long)C, (long long)KVR_SEARCH_MAX_CONTEXT);
            if (C < 1 || C / p < g)
                return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                     "context %lld is smaller than ranks x granularity (%d x %lld "
                                     "= %lld)",
                                     (long long)C, p, (long long)g, (long long)(p * g));
        }
    }
    kvr_search_table *t = calloc(1, sizeof *t);
    if (!t) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (table)");
    size_t nrows = (size_t)cfg->n_ranks * (size_t)cfg->n_contexts;
    t->rows = calloc(nrows, sizeof *t->rows);
    t->recs = calloc((size_t)cfg->n_contexts, sizeof *t->recs);
    double *single = calloc((size_t)cfg->n_contexts, sizeof *single);
    t->costs_json = search_costs_describe_json(m);
    kvr_status s = KVR_OK;
    if (!t->rows || !t->recs || !single || !t->costs_json)
        s = kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (table)");
    t->granularity = g;
    t->strategies = mask;
    snprintf(t->runtime, sizeof t->runtime, "the runtime");
    t->params = cfg->params;
    snprintf(t->source, sizeof t->source, "%s", m->source);
    snprintf(t->model_name, sizeof t->model_name, "%s", m->model_name);
    search_costs_describe_links(m, t->links_desc, sizeof t->links_desc);
    t->n_layers = m->n_layers;
    t->kv_bytes_per_token = m->kv_bytes_per_token;
    t->has_allgather = m->has_allgather;
    t->overheads_desc[0] = 0;
    for (int md = 0; m->ovh_how[0] && md < KVR_MODE_COUNT; md++) {
        size_t off = strlen(t->overheads_desc);
        snprintf(t->overheads_desc + off, sizeof t->overheads_desc - off, "%s%s %.4g + %.4g",
                 md ? "; " : "", kvr_mode_name((kvr_mode)md), m->ovh[md].run_us,
                 m->ovh[md].layer_us);
    }
    for (int j = 0; s == KVR_OK && j < cfg->n_contexts; j++) {
        kvr_error e;
        s = kvr_search_sim_single(m, cfg->contexts[j], NULL, &single[j], &e);
        if (s != KVR_OK && err) *err = e;
    }
    for (int i = 0; s == KVR_OK && i < cfg->n_ranks; i++)
        for (int j = 0; s == KVR_OK && j < cfg->n_contexts; j++) {
            kvr_search_row *row = &t->rows[t->n_rows++];
            row->n_ranks = cfg->ranks[i];
            row->context = cfg->contexts[j];
            s = table_row(m, cfg, mask, row, &single[j], err);
            if (s == KVR_OK && progress) progress(user, t->n_rows, (int)nrows);
        }
    /* recommendations: per context, the fastest (strategy, degree); ties go to fewer ranks */
    for (int j = 0; s == KVR_OK && j < cfg->n_contexts; j++)
        t->recs[t->n_recs++].context = cfg->contexts[j];
    t->single_us = single;
    single = NULL;
    if (s == KVR_OK) s = table_recs(t, 0, t->recs, err);
    free(single);
    if (s != KVR_OK) {
        kvr_search_table_destroy(t);
        return s;
    }
    *out = t;
    return KVR_OK;
}
