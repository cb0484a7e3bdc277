/* kvrp_fit.c -- KVR-P fitted the way kvr-fit --kvrp does it, end to end: over a stored partition
 * table (scored under the cost model it was searched with) or over a KVR-S table built here from
 * a run's fitted costs (stored with its rows), the held-out gaps per rank count, one predictor
 * row per rank count carrying the cost model; and predictor files from what was fitted or
 * stored. Also the default link run of a cost-model fit. The tool parses options, calls these
 * and prints. */
#include "predictor_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* snprintf into a fixed field, truncating (labels and link texts as kvr-fit always cut them). */
static void kvrp_text(char *dst, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void kvrp_text(char *dst, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
}

kvr_status kvr_predict_fit_links(kvr_db *db, int64_t run_id, int64_t requested,
                                 int64_t *link_run, kvr_error *err) {
    kvr_db_run run;
    KVR_TRY(kvr_db_run_get(db, run_id, &run, err));
    if (requested != 0) {
        *link_run = requested > 0 ? requested : 0;
        return KVR_OK;
    }
    int64_t id = 0;
    kvr_error e;
    const kvr_status st =
        kvr_db_run_latest_with_transfers(db, run.model_id, run.device_id, "p2p", &id, &e);
    if (st != KVR_OK && st != KVR_ERR_NOT_FOUND) return kvr_error_set(err, st, "%s", e.msg);
    *link_run = st == KVR_OK ? id : 0; /* none: ideal links */
    return KVR_OK;
}

kvr_predict_kvrp_params kvr_predict_kvrp_params_default(void) {
    kvr_predict_kvrp_params p;
    memset(&p, 0, sizeof p);
    p.granularity = 16;
    p.store = true;
    return p;
}

void kvr_predict_kvrp_result_free(kvr_predict_kvrp_result *r) {
    if (!r) return;
    kvr_predictor_destroy(r->kp);
    free(r->ranks);
    memset(r, 0, sizeof *r);
}

/* The predictor file's provenance for what rf fitted (run, links, model, threads, band). */
static kvr_predictor_meta kvrp_meta(const kvr_predict_run_fit *rf, int64_t run_id,
                                    int64_t table_id) {
    kvr_predictor_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.run_id = run_id;
    meta.link_run_id = rf->link_run_id;
    meta.table_id = table_id;
    meta.model_id = rf->model_id;
    meta.n_threads = rf->n_threads;
    meta.err_band = rf->costs ? rf->err_band : -1;
    meta.band_e2e = rf->costs && rf->n_e2e > 0 ? rf->band_e2e : -1;
    meta.band_spread = rf->costs && rf->n_e2e > 0 ? rf->band_spread : -1;
    snprintf(meta.model, sizeof meta.model, "%s", rf->model);
    return meta;
}

/* The strategy table (rows, or the search table t) onto the predictor. */
static kvr_status kvrp_set_plan(kvr_predictor *kp, const kvr_strategy_row *rows, int n,
                                const kvr_search_table *t, kvr_error *err) {
    kvr_strategy_table *plan = NULL;
    kvr_error e;
    kvr_status st = t ? kvr_strategy_table_from_search(t, &plan, &e)
                      : kvr_strategy_table_build(rows, n, &plan, &e);
    if (st == KVR_OK) st = kvr_predictor_set_strategy_table(kp, plan, &e);
    kvr_strategy_table_destroy(plan);
    if (st != KVR_OK) return kvr_error_set(err, st, "strategy table: %s", e.msg);
    return KVR_OK;
}

/* A stored table: its search costs (a cost file, the interpolated profile it was searched
 * under through the caller's profile_costs, or its run's fitted costs) and its rows added to a
 * new predictor per rank count. rf gets the run's fitted cost model when there is one. */
static kvr_status kvrp_over_table(kvr_db *db, const kvr_predict_kvrp_params *p,
                                  kvr_predict_run_fit *rf, kvr_search_costs **m,
                                  kvr_predictor_options *popt, char *label, size_t label_len,
                                  kvr_predict_kvrp_result *r, int64_t *table_run,
                                  kvr_error *err) {
    const long long tid = (long long)p->table_id;
    kvr_db_ptable tab;
    kvr_error e;
    kvr_status st = kvr_db_ptable_get(db, p->table_id, &tab, &e);
    if (st == KVR_ERR_NOT_FOUND)
        return kvr_error_set(err, st, "--table %lld: no such partition table in %s (kvr-db tables)",
                             tid, kvr_db_path(db));
    if (st != KVR_OK) return kvr_error_set(err, st, "--table: %s", e.msg);
    kvr_db_free(tab.json);
    const int64_t g = tab.granularity;
    kvrp_text(r->links, sizeof r->links, "%s", tab.links);
    *table_run = tab.run_id;
    if (p->costs_path) {
        if ((st = kvr_search_costs_load_json(p->costs_path, m, &e)) != KVR_OK)
            return kvr_error_set(err, st, "--costs: %s", e.msg);
    } else if (strcmp(tab.cost_kind, "profile") == 0 && tab.run_id > 0) {
        /* kvr-search --db --run: the same interpolated profile it searched under */
        if (!p->profile_costs)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "--table %lld: a profile's table needs the profile's costs",
                                 tid);
        st = p->profile_costs(p->user, db, tab.run_id, tab.link_run_id, m, &e);
        if (st != KVR_OK)
            return kvr_error_set(err, st, "--table %lld: the profile costs of run %lld: %s", tid,
                                 (long long)tab.run_id, e.msg);
        /* the run's fitted cost model, when there is one, rides along for predicted TTFTs */
        if (!rf->costs && kvr_predict_run_fit_load(db, tab.run_id, 0, 0, rf, NULL, &e) != KVR_OK)
            memset(rf, 0, sizeof *rf);
    } else {
        if (tab.run_id <= 0)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "--table %lld came from a cost file: give that file with "
                                 "--costs FILE", tid);
        if (!rf->costs &&
            (st = kvr_predict_run_fit_load(db, tab.run_id, 0, 0, rf, NULL, &e)) != KVR_OK)
            return kvr_error_set(err, st, "--table %lld: %s", tid, e.msg);
        if ((st = kvr_predict_costs_search_at(rf->costs, 0, m, &e)) != KVR_OK)
            return kvr_error_set(err, st, "--table: %s", e.msg);
    }
    kvr_db_ptable_row *rows = NULL;
    int64_t nr = 0;
    if ((st = kvr_db_ptable_rows_get(db, p->table_id, &rows, &nr, &e)) != KVR_OK)
        return kvr_error_set(err, st, "--table: %s", e.msg);
    kvrp_text(label, label_len, "table %lld (%s)", tid, r->links);
    st = kvr_predictor_create(g, label, &r->kp, &e);
    if (st != KVR_OK) kvr_error_set(err, st, "%s", e.msg);
    for (int k = 0; k < p->n_ranks && st == KVR_OK; k++) {
        const int rp = p->ranks[k];
        int64_t *ctx = malloc((size_t)(nr ? nr : 1) * sizeof *ctx);
        int64_t *ch = malloc((size_t)(nr ? nr : 1) * (size_t)rp * sizeof *ch);
        int n = 0;
        if (!ctx || !ch) st = kvr_error_set(err, KVR_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; i < nr && st == KVR_OK; i++) {
            if (rows[i].n_ranks != rp) continue;
            if (kvr_partition_parse(rows[i].partition, rp, rows[i].context,
                                    ch + (size_t)n * (size_t)rp, &e) != KVR_OK) {
                st = kvr_error_set(err, KVR_ERR_FORMAT,
                                   "--table %lld: row (%d ranks, %lld tokens): bad partition "
                                   "\"%s\"",
                                   tid, rp, (long long)rows[i].context, rows[i].partition);
                break;
            }
            ctx[n++] = rows[i].context;
        }
        if (st == KVR_OK && n == 0)
            st = kvr_error_set(err, KVR_ERR_NOT_FOUND, "--table %lld has no %d-rank rows", tid,
                               rp);
        if (st == KVR_OK && (st = kvr_predictor_add(r->kp, *m, rp, n, ctx, ch, popt, &e)) != KVR_OK)
            kvr_error_set(err, st, "KVR-P for %d ranks over table %lld: %s", rp, tid, e.msg);
        free(ctx);
        free(ch);
    }
    /* the strategy table over the same rows, the rank counts fitted (and single) */
    kvr_strategy_row *sr = calloc((size_t)(nr ? nr : 1), sizeof *sr);
    int ns = 0;
    if (st == KVR_OK && !sr) st = kvr_error_set(err, KVR_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; st == KVR_OK && i < nr; i++) {
        bool fitted = false;
        for (int k = 0; k < p->n_ranks; k++) fitted |= rows[i].n_ranks == p->ranks[k];
        if (!fitted) continue;
        sr[ns].n_ranks = rows[i].n_ranks;
        sr[ns].context = rows[i].context;
        for (int k = 0; k < KVR_STRATEGY_COUNT; k++)
            sr[ns].ttft_us[k] = rows[i].ttft_ms[k] >= 0 ? rows[i].ttft_ms[k] * 1e3 : -1;
        ns++;
    }
    kvr_db_free(rows);
    if (st == KVR_OK) st = kvrp_set_plan(r->kp, sr, ns, NULL, err);
    free(sr);
    if (st == KVR_OK) r->table_id = p->table_id;
    return st;
}

/* Store a KVR-S table built here (kvr-search's format, the rows in the store's form). */
static kvr_status kvrp_store_table(kvr_db *db, const kvr_search_table *t, const char *label,
                                   const char *source, const kvr_search_costs *m,
                                   const kvr_predict_run_fit *rf, int64_t g, const char *links,
                                   int64_t *table_id, kvr_error *err) {
    char note[320], *json = NULL;
    kvr_error e;
    kvrp_text(note, sizeof note, "kvr-fit --kvrp: KVR-S over %s", label);
    kvr_status st = kvr_search_table_format(t, KVR_SEARCH_FORMAT_JSON, note, &json, &e);
    if (st != KVR_OK) return kvr_error_set(err, st, "table JSON: %s", e.msg);
    const int nr = kvr_search_table_n_rows(t);
    kvr_db_ptable_row *rows = calloc((size_t)(nr > 0 ? nr : 1), sizeof *rows);
    if (!rows) {
        free(json);
        return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < nr && st == KVR_OK; i++) {
        const kvr_search_row *r = kvr_search_table_row(t, i);
        kvr_db_ptable_row *d = &rows[i];
        d->n_ranks = r->n_ranks;
        d->context = r->context;
        if (kvr_partition_format(r->partition, r->n_ranks, d->partition, sizeof d->partition,
                                 &e) != KVR_OK) {
            st = kvr_error_set(err, e.code, "row (%d ranks, %lld tokens): %s", r->n_ranks,
                               (long long)r->context, e.msg);
            break;
        }
        for (int k = 0; k < KVR_STRATEGY_COUNT; k++)
            d->ttft_ms[k] = r->has[k] && !r->error[k] ? r->ttft_us[k] * 1e-3 : -1;
        snprintf(d->best, sizeof d->best, "%s", kvr_strategy_name(r->best));
        d->search_ms = r->search_ms;
    }
    if (st != KVR_OK) {
        free(rows);
        free(json);
        return st;
    }
    kvr_db_ptable tab;
    memset(&tab, 0, sizeof tab);
    tab.run_id = rf->run_id;
    snprintf(tab.source, sizeof tab.source, "%s", source);
    kvrp_text(tab.links, sizeof tab.links, "%s", links);
    snprintf(tab.cost_kind, sizeof tab.cost_kind, "%s", kvr_search_costs_kind(m));
    tab.link_run_id = rf->link_run_id;
    tab.granularity = (int32_t)g;
    tab.json = json;
    st = kvr_db_ptable_put(db, &tab, rows, nr, &e);
    free(rows);
    free(json);
    if (st != KVR_OK) return kvr_error_set(err, st, "store table: %s; no predictor stored", e.msg);
    *table_id = tab.id;
    return KVR_OK;
}

/* One predictor row per rank count, each carrying the cost model (file format), in one
 * transaction. */
static kvr_status kvrp_store_predictors(kvr_db *db, kvr_predict_kvrp_result *r,
                                        const kvr_predict_run_fit *rf, int64_t run_id,
                                        int64_t g, const char *label, kvr_error *err) {
    kvr_error e;
    if (kvr_db_begin(db, &e) != KVR_OK)
        return kvr_error_set(err, e.code, "store predictors: %s", e.msg);
    kvr_status st = KVR_OK;
    for (int k = 0; k < r->n_ranks && st == KVR_OK; k++) {
        kvr_predict_kvrp_rank *x = &r->ranks[k];
        kvr_predictor *one = NULL;
        char *json = NULL;
        st = kvr_predictor_create(g, label, &one, &e);
        if (st == KVR_OK) st = kvr_predictor_copy_ranks(one, r->kp, x->p, &e);
        /* every row carries the whole strategy table: kvr-run --mode auto reads any of them */
        if (st == KVR_OK)
            st = kvr_predictor_set_strategy_table(one, kvr_predictor_strategy_table(r->kp), &e);
        const kvr_predictor_meta meta = kvrp_meta(rf, run_id, r->table_id);
        if (st == KVR_OK) st = kvr_predictor_file_format(one, rf->costs, &meta, &json, &e);
        kvr_predictor_destroy(one);
        if (st != KVR_OK) break;
        kvr_db_predictor row;
        memset(&row, 0, sizeof row);
        row.table_id = r->table_id;
        row.run_id = run_id;
        row.n_ranks = x->p;
        kvrp_text(row.links, sizeof row.links, "%s", r->links);
        snprintf(row.form, sizeof row.form, "%s", kvr_predictor_form_name(x->st.form));
        row.gap_mean = x->gaps.in_mean;
        row.gap_max = x->gaps.in_max;
        row.err_band = rf->costs ? rf->err_band : NAN;
        row.json = json;
        st = kvr_db_predictor_put(db, &row, &e);
        free(json);
        x->predictor_id = row.id;
    }
    if (st == KVR_OK) st = kvr_db_commit(db, &e);
    if (st != KVR_OK) {
        kvr_db_rollback(db);
        for (int k = 0; k < r->n_ranks; k++) r->ranks[k].predictor_id = 0;
        return kvr_error_set(err, st, "store predictors: %s; none stored", e.msg);
    }
    return KVR_OK;
}

kvr_status kvr_predict_kvrp_fit(kvr_db *db, const kvr_predict_kvrp_params *p,
                                kvr_predict_run_fit *rf, kvr_predict_kvrp_result *out,
                                kvr_error *err) {
    kvr_predict_kvrp_result r;
    memset(&r, 0, sizeof r);
    kvr_error e;
    kvr_search_costs *m = NULL;
    kvr_search_table *t = NULL;
    int64_t g = p->granularity, table_run = 0, costs_id = p->costs_fit_id;
    kvr_predictor_options popt = kvr_predictor_options_default();
    if (p->no_densify) popt.densify_gap = 0;
    char label[256];
    popt.label = label;
    kvr_status st = KVR_OK;
    if (p->n_ranks < 1) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "KVR-P: no rank counts");
    r.ranks = calloc((size_t)p->n_ranks, sizeof *r.ranks);
    if (!r.ranks) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory");

    if (p->table_id > 0) {
        st = kvrp_over_table(db, p, rf, &m, &popt, label, sizeof label, &r, &table_run, err);
        if (st == KVR_OK) g = kvr_predictor_granularity(r.kp);
    } else {
        /* built here: KVR-S over the fitted costs at the given contexts */
        if (!rf->costs) {
            int64_t fid = 0;
            if ((st = kvr_predict_run_fit_load(db, 0, 0, 0, rf, &fid, &e)) != KVR_OK)
                kvr_error_set(err, st, "--kvrp: %s", e.msg);
            costs_id = fid;
        }
        if (st == KVR_OK && (st = kvr_predict_costs_search_at(rf->costs, 0, &m, &e)) != KVR_OK)
            kvr_error_set(err, st, "--kvrp: %s", e.msg);
        if (rf->link_run_id)
            snprintf(r.links, sizeof r.links, "fitted p2p links (run %lld)",
                     (long long)rf->link_run_id);
        else
            snprintf(r.links, sizeof r.links, "ideal links (no transfer profile)");
        kvr_search_table_config cfg = {p->ranks, p->n_ranks, p->contexts, p->n_contexts,
                                       kvr_search_params_default(), 0};
        cfg.params.granularity = g;
        if (st == KVR_OK && (st = kvr_search_table_create(m, &cfg, &t, &e)) != KVR_OK)
            kvr_error_set(err, st, "KVR-S table: %s", e.msg);
        kvrp_text(label, sizeof label, "cost model fit %lld of run %lld (%s)",
                  (long long)costs_id, (long long)rf->run_id, r.links);
        if (st == KVR_OK && (st = kvr_predictor_fit(m, t, g, &popt, &r.kp, &e)) != KVR_OK)
            kvr_error_set(err, st, "KVR-P: %s", e.msg);
        if (st == KVR_OK) st = kvrp_set_plan(r.kp, NULL, 0, t, err);
        /* the table goes into the store too (the report draws it), with the predictors */
        if (st == KVR_OK && p->store) {
            char source[256];
            snprintf(source, sizeof source, "kvr-fit: cost model fit %lld of run %lld",
                     (long long)costs_id, (long long)rf->run_id);
            st = kvrp_store_table(db, t, label, source, m, rf, g, r.links, &r.table_id, err);
        }
    }
    for (int k = 0; k < p->n_ranks && st == KVR_OK; k++) {
        kvr_predict_kvrp_rank *x = &r.ranks[r.n_ranks++];
        x->p = p->ranks[k];
        if ((st = kvr_predictor_stats_get(r.kp, x->p, &x->st, &e)) != KVR_OK ||
            (st = kvr_predictor_gaps_get(r.kp, m, x->p, 24, &x->gaps, &e)) != KVR_OK)
            kvr_error_set(err, st, "KVR-P %d ranks: %s", x->p, e.msg);
    }
    if (st == KVR_OK && p->store)
        st = kvrp_store_predictors(db, &r, rf, rf->run_id ? rf->run_id : table_run, g, label,
                                   err);
    kvr_search_table_destroy(t);
    kvr_search_costs_destroy(m);
    if (st != KVR_OK) {
        kvr_predict_kvrp_result_free(&r);
        return st;
    }
    *out = r;
    return KVR_OK;
}

kvr_status kvr_predict_kvrp_file_format(const kvr_predict_kvrp_result *r,
                                        const kvr_predict_run_fit *rf, char **out,
                                        kvr_error *err) {
    kvr_predictor_meta meta = kvrp_meta(rf, rf->run_id, r->table_id);
    meta.predictor_id = r->n_ranks == 1 ? r->ranks[0].predictor_id : 0;
    return kvr_predictor_file_format(r->kp, rf->costs, &meta, out, err);
}

kvr_status kvr_predict_kvrp_file_from_store(kvr_db *db, int64_t predictor_id, const int *ranks,
                                            int n_ranks, char **out, kvr_error *err) {
    kvr_error e;
    kvr_db_predictor *preds = NULL;
    int64_t np = 0;
    kvr_predictor *built = NULL;
    kvr_predict_costs *costs = NULL;
    kvr_predictor_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.err_band = meta.band_e2e = meta.band_spread = -1;
    kvr_status st = kvr_db_predictors_list(db, &preds, &np, &e);
    if (st != KVR_OK) return kvr_error_set(err, st, "--export: %s", e.msg);
    const int want = predictor_id ? 1 : n_ranks;
    for (int k = 0; k < want && st == KVR_OK; k++) {
        const kvr_db_predictor *row = NULL;
        for (int64_t i = np - 1; i >= 0 && !row; i--)
            if (predictor_id ? preds[i].id == predictor_id : preds[i].n_ranks == ranks[k])
                row = &preds[i];
        if (!row) {
            if (predictor_id)
                st = kvr_error_set(err, KVR_ERR_NOT_FOUND,
                                   "--predictor %lld: no such predictor in %s (kvr-fit --show)",
                                   (long long)predictor_id, kvr_db_path(db));
            else
                st = kvr_error_set(err, KVR_ERR_NOT_FOUND,
                                   "--export: no %d-rank predictor in %s (kvr-fit --kvrp --ranks "
                                   "%d)",
                                   ranks[k], kvr_db_path(db), ranks[k]);
            break;
        }
        char name[64];
        snprintf(name, sizeof name, "predictor %lld", (long long)row->id);
        kvr_predictor *one = NULL;
        kvr_predict_costs *c1 = NULL;
        kvr_predictor_meta m1;
        st = kvr_predictor_file_parse(row->json, strlen(row->json), name, &one, &c1, &m1, &e);
        if (st == KVR_OK && !built)
            st = kvr_predictor_create(kvr_predictor_granularity(one), kvr_predictor_label(one),
                                      &built, &e);
        if (st == KVR_OK) st = kvr_predictor_copy_ranks(built, one, kvr_predictor_ranks(one, 0), &e);
        if (st == KVR_OK && !kvr_predictor_strategy_table(built)) /* the newest row's */
            st = kvr_predictor_set_strategy_table(built, kvr_predictor_strategy_table(one), &e);
        if (st == KVR_OK && !costs) {
            costs = c1;
            c1 = NULL;
            meta = m1;
            meta.predictor_id = row->id;
        } else if (st == KVR_OK && m1.run_id != meta.run_id) {
            meta.predictor_id = 0; /* several predictors: the first one's costs */
        }
        kvr_predictor_destroy(one);
        kvr_predict_costs_destroy(c1);
        if (st != KVR_OK) kvr_error_set(err, st, "--export: %s", e.msg);
    }
    kvr_db_predictors_free(preds, np);
    if (want > 1) meta.predictor_id = 0;
    if (st == KVR_OK && (st = kvr_predictor_file_format(built, costs, &meta, out, &e)) != KVR_OK)
        kvr_error_set(err, st, "--export: %s", e.msg);
    kvr_predictor_destroy(built);
    kvr_predict_costs_destroy(costs);
    return st;
}
