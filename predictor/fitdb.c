/* fitdb.c -- the predictor on top of the store: cost-model fits from a profile run's samples
 * (everything read and validated before anything is fitted; fitting only reads the store), the
 * fit rows written in one transaction and read back, the TTFT those costs predict for a prefill
 * as the runtime runs it (through the search module's simulators), KVR-P's held-out gaps inside
 * and outside its table, and predictor files (a KVR-P predictor with its cost model) for
 * runtimes without a database. */
#include "predictor_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BAND_FLOOR 0.02
#define BAND_MIN_C 256

// ----------------------------------------------------------------------------
// predicted TTFT

kvr_status kvr_predict_costs_search_at(const kvr_predict_costs *c, int64_t chunk,
                                       kvr_search_costs **out, kvr_error *err) {
    if (!c || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "costs: NULL argument");
    /* a shallow copy with another embedding time: to_search only reads the strings */
    kvr_predict_costs tmp = *c;
    if (c->has[KVR_OP_EMBED]) {
        double e = kvr_predict_fit_eval(&c->fit[KVR_OP_EMBED], (double)chunk, 0);
        tmp.embed_us = e > 0 && isfinite(e) ? e : 0;
    }
    bool ideal = !c->has[KVR_OP_LINK] && c->n_links == 0;
    return kvr_predict_costs_to_search(&tmp, ideal, out, err);
}

kvr_status kvr_predict_costs_ttft(const kvr_predict_costs *c, kvr_strategy s, int p, int64_t C,
                                  const int64_t *chunks, kvr_search_timeline *tl,
                                  double *ttft_us, kvr_error *err) {
    if (!c || !ttft_us) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "ttft: NULL argument");
    if (p < 1 || p > KVR_MAX_RANKS || C < p)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "ttft: need 1 <= ranks <= %d and context >= ranks (%d ranks, %lld "
                             "tokens)",
                             KVR_MAX_RANKS, p, (long long)C);
    if (s == KVR_STRATEGY_SINGLE && p != 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "ttft: single runs on one rank, not %d",
                             p);
    int64_t part[KVR_MAX_RANKS];
    KVR_TRY(kvr_partition_even(C, p, part, err));
    if ((s == KVR_STRATEGY_KVR_S || s == KVR_STRATEGY_KVR_E) && chunks) {
        int64_t sum = 0;
        for (int i = 0; i < p; i++) {
            if (chunks[i] < 1)
                return kvr_error_set(err, KVR_ERR_INVALID_ARG, "ttft: chunk %d has %lld tokens",
                                     i, (long long)chunks[i]);
            part[i] = chunks[i];
            sum += chunks[i];
        }
        if (sum != C)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "ttft: the chunks sum to %lld tokens, not %lld", (long long)sum,
                                 (long long)C);
    }
    int64_t biggest = s == KVR_STRATEGY_SINGLE ? C : part[0];
    for (int i = 0; i < p && s != KVR_STRATEGY_SINGLE; i++) biggest = KVR_MAX(biggest, part[i]);
    if (s == KVR_STRATEGY_RING) biggest = (C + p - 1) / p;
    kvr_search_costs *m;
    KVR_TRY(kvr_predict_costs_search_at(c, biggest, &m, err));
    kvr_status st;
    switch (s) {
        case KVR_STRATEGY_SINGLE: st = kvr_search_sim_single(m, C, tl, ttft_us, err); break;
        case KVR_STRATEGY_KVR_S:
        case KVR_STRATEGY_KVR_E: st = kvr_search_sim_kvr(m, p, part, tl, ttft_us, err); break;
        case KVR_STRATEGY_TSP: st = kvr_search_sim_tsp(m, p, C, tl, ttft_us, err); break;
        case KVR_STRATEGY_RING: st = kvr_search_sim_ring(m, p, C, tl, ttft_us, err); break;
        default: st = kvr_error_set(err, KVR_ERR_INVALID_ARG, "ttft: unknown strategy %d", (int)s);
    }
    kvr_search_costs_destroy(m);
    return st;
}

// ----------------------------------------------------------------------------
// fits from a profile run

void kvr_predict_run_fit_free(kvr_predict_run_fit *f) {
    if (!f) return;
    kvr_predict_costs_destroy(f->costs);
    memset(f, 0, sizeof *f);
}

/* Held-out predictions of op's fit for its rows: k-fold (the fit's own fold count and seed),
 * each fold predicted by the fit (with its own break search) on the other folds. pred[i] is
 * set for the rows of op (NaN for rows of other ops or when a fold cannot be fitted). */
static void heldout_pred(const kvr_predict_sample *rows, int n, kvr_op op,
                         const kvr_predict_fit_options *o, int k, double *pred) {
    int m = 0;
    for (int i = 0; i < n; i++) m += rows[i].op == op;
    int *idx = malloc((size_t)(m ? m : 1) * sizeof *idx);
    kvr_predict_sample *train = malloc((size_t)(m ? m : 1) * sizeof *train);
    int *fold = malloc((size_t)(m ? m : 1) * sizeof *fold);
    if (!idx || !train || !fold || k < 2 || m < k) goto done;
    m = 0;
    for (int i = 0; i < n; i++)
        if (rows[i].op == op) idx[m++] = i;
    predict_folds(m, k, o->seed, fold);
    for (int j = 0; j < k; j++) {
        int nt = 0;
        for (int i = 0; i < m; i++)
            if (fold[i] != j) train[nt++] = rows[idx[i]];
        kvr_predict_fit f;
        kvr_error e;
        if (kvr_predict_fit_op(train, nt, op, o, &f, &e) != KVR_OK) continue;
        for (int i = 0; i < m; i++)
            if (fold[i] == j)
                pred[idx[i]] = kvr_predict_fit_eval(&f, (double)rows[idx[i]].c,
                                                    (double)rows[idx[i]].prefix);
    }
done:
    free(idx);
    free(train);
    free(fold);
}

/* The error band (see kvr_predict_run_fit): per chunk size c >= min_c profiled for pre, attn
 * at prefix 0 and post, the held-out relative error of one layer's single-rank time
 * pre(c) + attn(c, 0) + post(c) -- the sum a TTFT is made of; the largest over c. Without such
 * a c (ops profiled on different chunks): the largest held-out error of the three ops' rows
 * with c >= min_c. NaN when nothing qualifies. */
static double heldout_band(const kvr_predict_sample *rows, int n, const kvr_predict_costs *c,
                           const kvr_predict_fit_options *o, int64_t min_c) {
    double *pred = malloc((size_t)(n ? n : 1) * sizeof *pred);
    if (!pred) return NAN;
    for (int i = 0; i < n; i++) pred[i] = NAN;
    const kvr_op comp[3] = {KVR_OP_PRE, KVR_OP_ATTN, KVR_OP_POST};
    for (int k = 0; k < 3; k++)
        heldout_pred(rows, n, comp[k], o, kvr_predict_costs_fit(c, comp[k])->cv.k, pred);
    double worst = NAN, worst_row = NAN;
    for (int i = 0; i < n; i++) {
        if (rows[i].op != KVR_OP_PRE || rows[i].c < min_c) continue;
        int ia = -1, ip = -1;
        for (int j = 0; j < n; j++) {
            if (rows[j].c != rows[i].c) continue;
            if (rows[j].op == KVR_OP_ATTN && rows[j].prefix == 0) ia = j;
            if (rows[j].op == KVR_OP_POST) ip = j;
        }
        if (ia < 0 || ip < 0) continue;
        double y = rows[i].time_us + rows[ia].time_us + rows[ip].time_us;
        double yh = pred[i] + pred[ia] + pred[ip];
        double r = fabs(yh - y) / y;
        if (isfinite(r) && !(worst >= r)) worst = r;
    }
    for (int i = 0; i < n && isnan(worst); i++) {
        bool comp_op =
            rows[i].op == KVR_OP_PRE || rows[i].op == KVR_OP_ATTN || rows[i].op == KVR_OP_POST;
        if (!comp_op || rows[i].c < min_c || !isfinite(pred[i])) continue;
        double r = fabs(pred[i] - rows[i].time_us) / rows[i].time_us;
        if (!(worst_row >= r)) worst_row = r;
    }
    free(pred);
    return isnan(worst) ? worst_row : worst;
}

kvr_status kvr_predict_fit_run(kvr_db *db, int64_t run_id, int64_t link_run_id,
                               const kvr_predict_fit_options *opt, kvr_predict_run_fit *out,
                               kvr_error *err) {
    if (!db || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "fit: NULL argument");
    kvr_predict_fit_options o = opt ? *opt : kvr_predict_fit_options_default();
    kvr_db_run run;
    kvr_db_model model;
    KVR_TRY(kvr_db_run_get(db, run_id, &run, err));
    if (run.model_id <= 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "run %lld has no model record: the layer count and K/V size are "
                             "unknown",
                             (long long)run_id);
    KVR_TRY(kvr_db_model_get(db, run.model_id, &model, err));
    if (model.n_layers < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "run %lld: model %s has %d layers",
                             (long long)run_id, model.name, model.n_layers);
    kvr_db_device dev;
    memset(&dev, 0, sizeof dev);
    if (run.device_id > 0) KVR_TRY(kvr_db_device_get(db, run.device_id, &dev, err));

    kvr_db_layer_sample *ls = NULL;
    kvr_db_transfer_sample *ts = NULL;
    int64_t nl = 0, nt = 0;
    kvr_predict_sample *rows = NULL;
    kvr_predict_link_sample *links = NULL;
    kvr_predict_costs *c = NULL;
    kvr_predict_run_fit r;
    memset(&r, 0, sizeof r);
    kvr_status s = kvr_db_layer_samples_get(db, run_id, &ls, &nl, err);
    if (s != KVR_OK) goto done;
    if (link_run_id > 0) {
        kvr_db_run lr;
        s = kvr_db_run_get(db, link_run_id, &lr, err);
        if (s == KVR_OK && lr.model_id != run.model_id)
            s = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                              "link run %lld profiled another model (model %lld, not %lld)",
                              (long long)link_run_id, (long long)lr.model_id,
                              (long long)run.model_id);
        if (s == KVR_OK) s = kvr_db_transfer_samples_get(db, link_run_id, &ts, &nt, err);
        if (s != KVR_OK) goto done;
    }

    /* validate every row before fitting anything */
    rows = malloc((size_t)(nl ? nl : 1) * sizeof *rows);
    links = malloc((size_t)(nt ? nt : 1) * sizeof *links);
    if (!rows || !links) {
        s = kvr_error_set(err, KVR_ERR_NOMEM, "fit: out of memory");
        goto done;
    }
    int n = 0, n_links = 0;
    int64_t head_c_min = INT64_MAX, head_c_max = 0;
    for (int64_t i = 0; i < nl; i++) {
        const kvr_db_layer_sample *x = &ls[i];
        kvr_op op;
        if (kvr_op_parse(x->op, &op, NULL) != KVR_OK || op == KVR_OP_LINK) continue;
        double t = x->stats.median_us;
        if (!isfinite(t) || !(t > 0)) {
            s = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                              "run %lld: %s sample c=%lld prefix=%lld has a %s median time "
                              "(%g us): re-profile that point or delete the run",
                              (long long)run_id, x->op, (long long)x->c, (long long)x->prefix,
                              isfinite(t) ? "non-positive" : "non-finite", t);
            goto done;
        }
        if (x->c < 1 || x->prefix < 0) {
            s = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                              "run %lld: %s sample with c=%lld prefix=%lld", (long long)run_id,
                              x->op, (long long)x->c, (long long)x->prefix);
            goto done;
        }
        rows[n++] = (kvr_predict_sample){(kvr_op)op, x->c, x->prefix, t};
        r.n_samples[op]++;
        if (op == KVR_OP_HEAD) {
            head_c_min = KVR_MIN(head_c_min, x->c);
            head_c_max = KVR_MAX(head_c_max, x->c);
        }
    }
    for (int64_t i = 0; i < nt; i++) {
        const kvr_db_transfer_sample *x = &ts[i];
        if (strcmp(x->pattern, "p2p") != 0) continue;
        double t = x->stats.median_us;
        if (!isfinite(t) || !(t > 0)) {
            s = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                              "run %lld: p2p transfer %d->%d of %lld bytes has a %s median time "
                              "(%g us)",
                              (long long)link_run_id, x->src, x->dst, (long long)x->size_bytes,
                              isfinite(t) ? "non-positive" : "non-finite", t);
            goto done;
        }
        links[n_links++] = (kvr_predict_link_sample){(double)x->size_bytes, t};
    }
    r.n_samples[KVR_OP_LINK] = n_links;
    {
        const kvr_op need[] = {KVR_OP_PRE, KVR_OP_ATTN, KVR_OP_POST};
        char missing[64] = "";
        for (int i = 0; i < 3; i++)
            if (r.n_samples[need[i]] == 0)
                snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s",
                         missing[0] ? "," : "", kvr_op_name(need[i]));
        if (missing[0]) {
            s = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                              "run %lld has no %s samples (ops profiled: %s): the cost model "
                              "needs pre, attn and post (kvr-profile --ops all)",
                              (long long)run_id, missing, run.ops[0] ? run.ops : "none");
            goto done;
        }
    }
    if (link_run_id > 0 && n_links == 0 && nt >= 0) {
        s = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                          "run %lld has no p2p transfer samples (kvr-profile --comm)",
                          (long long)link_run_id);
        goto done;
    }

    /* fit: head profiled at one chunk size is a constant (the prompt pays c = 1) */
    kvr_predict_sample *fitrows = rows;
    int nfit = n;
    double head_us = 0;
    if (r.n_samples[KVR_OP_HEAD] > 0 && head_c_min == head_c_max) {
        double sum = 0;
        int k = 0, w = 0;
        for (int i = 0; i < n; i++) {
            if (rows[i].op == KVR_OP_HEAD) {
                sum += rows[i].time_us;
                k++;
            } else {
                rows[w++] = rows[i];
            }
        }
        nfit = w;
        head_us = sum / k;
        r.head_constant = true;
    }
    char src[300];
    snprintf(src, sizeof src, "kvr.db run %lld%s", (long long)run_id, "");
    if (link_run_id > 0 && link_run_id != run_id)
        snprintf(src, sizeof src, "kvr.db runs %lld (layers) and %lld (links)",
                 (long long)run_id, (long long)link_run_id);
    kvr_predict_costs_info info = {model.n_layers,
                                   (double)model.kv_bytes_per_token,
                                   0,
                                   head_us,
                                   model.name,
                                   dev.name[0] ? dev.name : run.device_name,
                                   run.dtype,
                                   src};
    s = kvr_predict_costs_fit_samples(&info, fitrows, nfit, links, n_links, &o, &c, err);
    if (s != KVR_OK) {
        kvr_error_prefix(err, "run %lld", (long long)run_id);
        goto done;
    }
    if (r.head_constant) {
        kvr_predict_fit h;
        memset(&h, 0, sizeof h);
        h.op = KVR_OP_HEAD;
        h.form = KVR_PREDICT_FORM_HINGE;
        h.n_coef = 2;
        h.coef[0] = head_us;
        h.weighting = o.lsq.weighting;
        h.lsq.n_obs = r.n_samples[KVR_OP_HEAD];
        h.lsq.n_params = 1;
        h.lsq.r2 = NAN;
        h.lsq.sigma = NAN;
        h.lsq.rcond = NAN;
        h.lsq.rank = 1;
        h.cv.mape_in = h.cv.max_rel_in = h.cv.mape_out = h.cv.max_rel_out = NAN;
        h.x_min = h.x_max = (double)head_c_min;
        s = kvr_predict_costs_set_fit(c, &h, err);
        if (s != KVR_OK) goto done;
    }

    /* the error band: held-out error of the per-layer time prompts are made of */
    r.band_min_c = BAND_MIN_C;
    double band = heldout_band(fitrows, nfit, c, &o, BAND_MIN_C);
    if (isnan(band)) { /* no large chunk profiled: the fits' own held-out maxima */
        band = 0;
        const kvr_op comp[] = {KVR_OP_PRE, KVR_OP_ATTN, KVR_OP_POST};
        for (int i = 0; i < 3; i++) {
            double h = kvr_predict_costs_fit(c, comp[i])->cv.max_rel_out;
            if (isfinite(h) && h > band) band = h;
        }
    }
    if (!(band >= BAND_FLOOR)) band = BAND_FLOOR;
    r.err_band = band;

    r.run_id = run_id;
    r.link_run_id = n_links > 0 ? link_run_id : 0;
    r.model_id = run.model_id;
    r.device_id = run.device_id;
    r.n_threads = run.n_threads;
    snprintf(r.model, sizeof r.model, "%s", model.name);
    snprintf(r.device, sizeof r.device, "%s", dev.name[0] ? dev.name : run.device_name);
    snprintf(r.dtype, sizeof r.dtype, "%s", run.dtype);
    r.costs = c;
    c = NULL;
    *out = r;
done:
    kvr_predict_costs_destroy(c);
    kvr_db_free(ls);
    kvr_db_free(ts);
    free(rows);
    free(links);
    return s;
}

// ----------------------------------------------------------------------------
// KVR-P held-out gaps

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

kvr_status kvr_predictor_gaps_get(const kvr_predictor *kp, const kvr_search_costs *m, int p,
                                  int n_in, kvr_predictor_gaps *out, kvr_error *err) {
    if (!kp || !m || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "gaps: NULL argument");
    const predict_kvrp_entry *e = NULL;
    for (int i = 0; i < kp->n_e; i++)
        if (kp->e[i].p == p) e = &kp->e[i];
    if (!e)
        return kvr_error_set(err, KVR_ERR_NOT_FOUND, "gaps: the predictor has no %d-rank fit",
                             p);
    if (n_in < 0 || n_in > 10000)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "gaps: %d inside contexts", n_in);
    const int64_t g = kp->g, lo = e->contexts[0], hi = e->contexts[e->n - 1];
    kvr_predictor_gaps r;
    memset(&r, 0, sizeof r);
    r.in_mean = r.in_max = r.out_mean = r.out_max = NAN;
    int64_t *ctx = malloc((size_t)(n_in + 16) * sizeof *ctx);
    double *gaps = malloc((size_t)(n_in + 16) * sizeof *gaps);
    kvr_status s = KVR_OK;
    if (!ctx || !gaps) {
        s = kvr_error_set(err, KVR_ERR_NOMEM, "gaps: out of memory");
        goto done;
    }
    /* inside: geometric spread, each context moved off the table's own contexts */
    int k = 0;
    for (int i = 0; i < n_in && hi > lo; i++) {
        double t = (i + 0.5) / n_in;
        int64_t C = (int64_t)llround(exp(log((double)lo) + t * (log((double)hi) - log((double)lo))));
        for (int tries = 0; tries < 64; tries++) {
            bool in_table = false;
            for (int j = 0; j < e->n && !in_table; j++) in_table = e->contexts[j] == C;
            for (int j = 0; j < k && !in_table; j++) in_table = ctx[j] == C;
            if (!in_table) break;
            C++;
        }
        if (C > lo && C < hi) ctx[k++] = C;
    }
    qsort(ctx, (size_t)k, sizeof *ctx, cmp_i64);
    kvr_predictor_validation v;
    if (k > 0) {
        s = kvr_predictor_validate(kp, m, p, ctx, k, NULL, -1, gaps, &v, err);
        if (s != KVR_OK) goto done;
        r.n_in = v.n;
        r.in_mean = v.mean_gap;
        r.in_max = v.max_gap;
        r.in_worst = v.worst_context;
    }
    /* outside: below the table down to p g, above it up to 2 x the largest context */
    int ko = 0;
    const double fb[] = {0.25, 0.5, 0.75}, fa[] = {1.25, 1.5, 2.0};
    for (int i = 0; i < 3; i++) {
        int64_t C = (int64_t)llround(lo * fb[i]);
        if (C >= (int64_t)p * g && C < lo) ctx[ko++] = C;
    }
    for (int i = 0; i < 3; i++) ctx[ko++] = (int64_t)llround(hi * fa[i]);
    qsort(ctx, (size_t)ko, sizeof *ctx, cmp_i64);
    s = kvr_predictor_validate(kp, m, p, ctx, ko, NULL, -1, gaps, &v, err);
    if (s != KVR_OK) goto done;
    r.n_out = v.n;
    r.out_mean = v.mean_gap;
    r.out_max = v.max_gap;
    r.out_worst = v.worst_context;
    *out = r;
done:
    free(ctx);
    free(gaps);
    return s;
}

// ----------------------------------------------------------------------------
// predictor files

kvr_status kvr_predictor_file_format(const kvr_predictor *kp, const kvr_predict_costs *costs,
                                     const kvr_predictor_meta *meta, char **out,
                                     kvr_error *err) {
    if (!kp || !out)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "predictor file: NULL argument");
    char *pj = NULL, *cj = NULL;
    KVR_TRY(kvr_predictor_to_json(kp, &pj, err));
    kvr_status s = costs ? kvr_predict_costs_to_json(costs, &cj, err) : KVR_OK;
    if (s != KVR_OK) {
        free(pj);
        return s;
    }
    /* kvr_fit is built apart and spliced in as text: re-printing the predictor or the costs
     * through cJSON could drop the last bit of a number (they are written with %.17g) */
    cJSON *kf = cJSON_CreateObject();
    if (kf) {
        kvr_predictor_meta m0;
        memset(&m0, 0, sizeof m0);
        m0.err_band = -1;
        const kvr_predictor_meta *m = meta ? meta : &m0;
        cJSON_AddNumberToObject(kf, "predictor_id", (double)m->predictor_id);
        cJSON_AddNumberToObject(kf, "run_id", (double)m->run_id);
        cJSON_AddNumberToObject(kf, "link_run_id", (double)m->link_run_id);
        cJSON_AddNumberToObject(kf, "table_id", (double)m->table_id);
        cJSON_AddNumberToObject(kf, "model_id", (double)m->model_id);
        cJSON_AddNumberToObject(kf, "n_threads", m->n_threads);
        if (m->err_band >= 0)
            predict_json_add_num(kf, "err_band", m->err_band);
        else
            cJSON_AddNullToObject(kf, "err_band");
        cJSON_AddStringToObject(kf, "model", m->model);
        if (cj)
            cJSON_AddRawToObject(kf, "costs", cj);
        else
            cJSON_AddNullToObject(kf, "costs");
    }
    char *kt = kf ? cJSON_Print(kf) : NULL;
    cJSON_Delete(kf);
    free(cj);
    char *end = pj ? strrchr(pj, '}') : NULL;
    if (!kt || !end) {
        free(pj);
        free(kt);
        return kvr_error_set(err, KVR_ERR_NOMEM, "predictor file: out of memory");
    }
    size_t head = (size_t)(end - pj), n = head + strlen(kt) + 32;
    char *res = malloc(n);
    if (res) snprintf(res, n, "%.*s,\n\"kvr_fit\": %s}\n", (int)head, pj, kt);
    free(pj);
    free(kt);
    if (!res) return kvr_error_set(err, KVR_ERR_NOMEM, "predictor file: out of memory");
    *out = res;
    return KVR_OK;
}

static kvr_status file_fail(kvr_error *err, const char *name, const char *what) {
    return kvr_error_set(err, KVR_ERR_FORMAT, "%s: kvr_fit: %s", name, what);
}

kvr_status kvr_predictor_file_parse(const char *text, size_t len, const char *name,
                                    kvr_predictor **kp_out, kvr_predict_costs **costs_out,
                                    kvr_predictor_meta *meta, kvr_error *err) {
    if (!text || !kp_out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "predictor file: NULL argument");
    if (!name) name = "predictor file";
    kvr_predictor *kp = NULL;
    kvr_predict_costs *costs = NULL;
    kvr_predictor_meta m;
    memset(&m, 0, sizeof m);
    m.err_band = -1;
    KVR_TRY(kvr_predictor_from_json(text, len, name, &kp, err));
    cJSON *root = cJSON_ParseWithLength(text, len);
    kvr_status s = KVR_OK;
    const cJSON *kf = root ? cJSON_GetObjectItemCaseSensitive(root, "kvr_fit") : NULL;
    if (kf && !cJSON_IsObject(kf)) s = file_fail(err, name, "must be an object");
    if (s == KVR_OK && kf) {
        const char *ids[] = {"predictor_id", "run_id", "link_run_id", "table_id", "model_id",
                             "n_threads"};
        int64_t thr = 0;
        int64_t *dst[] = {&m.predictor_id, &m.run_id, &m.link_run_id, &m.table_id, &m.model_id,
                          &thr};
        for (int i = 0; i < 6 && s == KVR_OK; i++) {
            const cJSON *it = cJSON_GetObjectItemCaseSensitive(kf, ids[i]);
            if (!it) continue;
            if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 9e15) {
                char w[64];
                snprintf(w, sizeof w, "\"%s\" must be a non-negative integer", ids[i]);
                s = file_fail(err, name, w);
            } else {
                *dst[i] = (int64_t)it->valuedouble;
            }
        }
        m.n_threads = (int32_t)KVR_MIN(thr, 1 << 20);
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(kf, "err_band");
        if (s == KVR_OK && b && !cJSON_IsNull(b)) {
            if (!cJSON_IsNumber(b) || !isfinite(b->valuedouble) || b->valuedouble < 0)
                s = file_fail(err, name, "\"err_band\" must be a number >= 0");
            else
                m.err_band = b->valuedouble;
        }
        const cJSON *mo = cJSON_GetObjectItemCaseSensitive(kf, "model");
        if (s == KVR_OK && mo && cJSON_IsString(mo))
            snprintf(m.model, sizeof m.model, "%s", mo->valuestring);
        const cJSON *co = cJSON_GetObjectItemCaseSensitive(kf, "costs");
        if (s == KVR_OK && co && !cJSON_IsNull(co) && costs_out) {
            char cname[300];
            snprintf(cname, sizeof cname, "%s: kvr_fit.costs", name);
            s = predict_costs_from_obj(co, cname, &costs, err);
        }
    }
    cJSON_Delete(root);
    if (s != KVR_OK) {
        kvr_predictor_destroy(kp);
        kvr_predict_costs_destroy(costs);
        return s;
    }
    *kp_out = kp;
    if (costs_out)
        *costs_out = costs;
    else
        kvr_predict_costs_destroy(costs);
    if (meta) *meta = m;
    return KVR_OK;
}

kvr_status kvr_predictor_file_load(const char *path, kvr_predictor **kp_out,
                                   kvr_predict_costs **costs_out, kvr_predictor_meta *meta,
                                   kvr_error *err) {
    if (!path) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "predictor file: NULL path");
    FILE *f = fopen(path, "rb");
    if (!f) return kvr_error_set(err, KVR_ERR_IO, "%s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    kvr_status s = KVR_OK;
    for (;;) {
        if (len + 65536 > cap) {
            if (cap > ((size_t)1 << 30)) {
                s = kvr_error_set(err, KVR_ERR_FORMAT, "%s: larger than 1 GiB", path);
                break;
            }
            cap = cap ? 2 * cap : 65536 * 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                s = kvr_error_set(err, KVR_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) s = kvr_error_set(err, KVR_ERR_IO, "%s: read error", path);
            break;
        }
    }
    fclose(f);
    if (s == KVR_OK) s = kvr_predictor_file_parse(buf, len, path, kp_out, costs_out, meta, err);
    free(buf);
    return s;
}

// ----------------------------------------------------------------------------
// copying one rank count between predictors

static void *dup_mem(const void *p, size_t n) {
    if (!p || n == 0) return NULL;
    void *d = malloc(n);
    if (d) memcpy(d, p, n);
    return d;
}

kvr_status kvr_predictor_copy_ranks(kvr_predictor *dst, const kvr_predictor *src, int p,
                                    kvr_error *err) {
    if (!dst || !src) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "predictor: NULL argument");
    if (dst->g != src->g)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "predictor: granularity %lld cannot take a %d-rank fit made at "
                             "granularity %lld",
                             (long long)dst->g, p, (long long)src->g);
    const predict_kvrp_entry *s = NULL;
    for (int i = 0; i < src->n_e; i++)
        if (src->e[i].p == p) s = &src->e[i];
    if (!s) return kvr_error_set(err, KVR_ERR_NOT_FOUND, "predictor: no %d-rank fit", p);
    predict_kvrp_entry e = *s;
    const size_t n = (size_t)s->n, b = (size_t)(s->p - 1);
    e.contexts = dup_mem(s->contexts, n * sizeof *s->contexts);
    e.chunks = dup_mem(s->chunks, n * (size_t)s->p * sizeof *s->chunks);
    e.x = dup_mem(s->x, n * sizeof *s->x);
    e.f = dup_mem(s->f, b * n * sizeof *s->f);
    e.d = dup_mem(s->d, b * n * sizeof *s->d);
    e.b = dup_mem(s->b, b * (size_t)s->nb * sizeof *s->b);
    if (!e.contexts || !e.chunks || (s->x && !e.x) || (s->f && !e.f) || (s->d && !e.d) ||
        (s->b && s->nb > 0 && !e.b)) {
        predict_kvrp_entry_free(&e);
        return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (predictor)");
    }
    if (dst->n_e == 0) { /* an empty predictor takes the source's provenance */
        char *cs = predict_strdup(src->costs_source), *mo = predict_strdup(src->model);
        if (!cs || !mo) {
            free(cs);
            free(mo);
            predict_kvrp_entry_free(&e);
            return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (predictor)");
        }
        free(dst->costs_source);
        free(dst->model);
        dst->costs_source = cs;
        dst->model = mo;
        dst->n_layers = src->n_layers;
    }
    kvr_status st = predict_kvrp_insert(dst, &e, err);
    if (st != KVR_OK) predict_kvrp_entry_free(&e);
    return st;
}

// ----------------------------------------------------------------------------
// run fits in the store

kvr_status kvr_predict_run_fit_to_json(const kvr_predict_run_fit *f, char **out,
                                       kvr_error *err) {
    if (!f || !f->costs || !out)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "run fit JSON: NULL argument");
    char *cj;
    KVR_TRY(kvr_predict_costs_to_json(f->costs, &cj, err));
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "schema", "kvr-fit-costs/1");
        cJSON *k = cJSON_AddObjectToObject(o, "kvr");
        if (k) {
            cJSON_AddStringToObject(k, "version", kvr_version());
            cJSON_AddStringToObject(k, "commit", kvr_build_commit());
        }
        cJSON_AddNumberToObject(o, "run_id", (double)f->run_id);
        cJSON_AddNumberToObject(o, "link_run_id", (double)f->link_run_id);
        cJSON_AddNumberToObject(o, "model_id", (double)f->model_id);
        cJSON_AddNumberToObject(o, "device_id", (double)f->device_id);
        cJSON_AddNumberToObject(o, "n_threads", f->n_threads);
        cJSON_AddStringToObject(o, "model", f->model);
        cJSON_AddStringToObject(o, "device", f->device);
        cJSON_AddStringToObject(o, "dtype", f->dtype);
        cJSON *ns = cJSON_AddObjectToObject(o, "n_samples");
        for (int i = 0; ns && i < KVR_OP_COUNT; i++)
            cJSON_AddNumberToObject(ns, kvr_op_name(kvr_predict_fit_order[i]),
                                    f->n_samples[kvr_predict_fit_order[i]]);
        cJSON_AddBoolToObject(o, "head_constant", f->head_constant);
        predict_json_add_num(o, "err_band", f->err_band);
        cJSON_AddNumberToObject(o, "band_min_c", (double)f->band_min_c);
        cJSON_AddRawToObject(o, "costs", cj);
    }
    free(cj);
    return predict_json_finish(o, out, err);
}

static kvr_status rf_int(const cJSON *o, const char *key, const char *name, int64_t *v,
                         kvr_error *err) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 9e15 ||
        it->valuedouble != floor(it->valuedouble))
        return kvr_error_set(err, KVR_ERR_FORMAT, "%s: \"%s\" must be a non-negative integer",
                             name, key);
    *v = (int64_t)it->valuedouble;
    return KVR_OK;
}

static void rf_str(const cJSON *o, const char *key, char *dst, size_t n) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    snprintf(dst, n, "%s", cJSON_IsString(it) ? it->valuestring : "");
}

kvr_status kvr_predict_run_fit_from_json(const char *text, size_t len, const char *name,
                                         kvr_predict_run_fit *out, kvr_error *err) {
    if (!text || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "run fit JSON: NULL argument");
    if (!name) name = "run fit JSON";
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return kvr_error_set(err, KVR_ERR_FORMAT, "%s: not a JSON object", name);
    }
    kvr_predict_run_fit r;
    memset(&r, 0, sizeof r);
    kvr_status s = KVR_OK;
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(root, "schema");
    if (!cJSON_IsString(sc) || strcmp(sc->valuestring, "kvr-fit-costs/1") != 0)
        s = kvr_error_set(err, KVR_ERR_FORMAT, "%s: schema is not \"kvr-fit-costs/1\"", name);
    int64_t thr = 0, bmc = 0;
    if (s == KVR_OK) s = rf_int(root, "run_id", name, &r.run_id, err);
    if (s == KVR_OK) s = rf_int(root, "link_run_id", name, &r.link_run_id, err);
    if (s == KVR_OK) s = rf_int(root, "model_id", name, &r.model_id, err);
    if (s == KVR_OK) s = rf_int(root, "device_id", name, &r.device_id, err);
    if (s == KVR_OK) s = rf_int(root, "n_threads", name, &thr, err);
    if (s == KVR_OK) s = rf_int(root, "band_min_c", name, &bmc, err);
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(root, "err_band");
    if (s == KVR_OK && (!cJSON_IsNumber(b) || !isfinite(b->valuedouble) || b->valuedouble < 0))
        s = kvr_error_set(err, KVR_ERR_FORMAT, "%s: \"err_band\" must be a number >= 0", name);
    if (s == KVR_OK) {
        r.err_band = b->valuedouble;
        r.n_threads = (int32_t)KVR_MIN(thr, INT32_MAX);
        r.band_min_c = bmc;
        rf_str(root, "model", r.model, sizeof r.model);
        rf_str(root, "device", r.device, sizeof r.device);
        rf_str(root, "dtype", r.dtype, sizeof r.dtype);
        r.head_constant = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "head_constant"));
        const cJSON *ns = cJSON_GetObjectItemCaseSensitive(root, "n_samples");
        for (int op = 0; op < KVR_OP_COUNT; op++) {
            const cJSON *it = cJSON_GetObjectItemCaseSensitive(ns, kvr_op_name((kvr_op)op));
            r.n_samples[op] = cJSON_IsNumber(it) ? (int)it->valuedouble : 0;
        }
        char cname[300];
        snprintf(cname, sizeof cname, "%s: costs", name);
        s = predict_costs_from_obj(cJSON_GetObjectItemCaseSensitive(root, "costs"), cname,
                                   &r.costs, err);
    }
    cJSON_Delete(root);
    if (s != KVR_OK) return s;
    *out = r;
    return KVR_OK;
}

kvr_status kvr_predict_run_fit_store(kvr_db *db, const kvr_predict_run_fit *f, int64_t *costs_id,
                                     kvr_error *err) {
    if (!db || !f || !f->costs) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "store fit: NULL argument");
    /* serialise everything first: nothing is written unless every row is ready */
    kvr_db_fit rows[KVR_OP_COUNT + 1];
    int n = 0;
    kvr_status s = KVR_OK;
    memset(rows, 0, sizeof rows);
    for (int k = 0; k < KVR_OP_COUNT && s == KVR_OK; k++) {
        const kvr_op op = kvr_predict_fit_order[k];
        const kvr_predict_fit *fit = kvr_predict_costs_fit(f->costs, (kvr_op)op);
        if (!fit) continue;
        kvr_db_fit *r = &rows[n++];
        r->run_id = op == KVR_OP_LINK ? f->link_run_id : f->run_id;
        snprintf(r->target, sizeof r->target, "%s", kvr_op_name((kvr_op)op));
        snprintf(r->form, sizeof r->form, "%s", kvr_predict_form_name(fit->form));
        if (op == KVR_OP_HEAD && f->head_constant) snprintf(r->form, sizeof r->form, "constant");
        r->n_samples = f->n_samples[op];
        r->r2 = fit->lsq.r2;
        r->mape_in = isfinite(fit->cv.mape_in) ? fit->cv.mape_in : -1;
        r->mape_cv = isfinite(fit->cv.mape_out) && fit->cv.k > 0 ? fit->cv.mape_out : -1;
        r->max_err_cv = isfinite(fit->cv.max_rel_out) && fit->cv.k > 0 ? fit->cv.max_rel_out : -1;
        s = kvr_predict_fit_to_json(fit, &r->json, err);
    }
    if (s == KVR_OK) {
        kvr_db_fit *r = &rows[n++];
        r->run_id = f->run_id;
        snprintf(r->target, sizeof r->target, "costs");
        snprintf(r->form, sizeof r->form, "kvr-fit-costs");
        int tot = 0;
        for (int op = 0; op < KVR_OP_COUNT; op++)
            tot += f->n_samples[op];
        r->n_samples = tot;
        r->r2 = NAN;
        r->mape_in = r->mape_cv = -1;
        r->max_err_cv = f->err_band;
        s = kvr_predict_run_fit_to_json(f, &r->json, err);
    }
    if (s == KVR_OK) s = kvr_db_begin(db, err);
    if (s == KVR_OK) {
        for (int i = 0; i < n && s == KVR_OK; i++) s = kvr_db_fit_put(db, &rows[i], err);
        if (s == KVR_OK) s = kvr_db_commit(db, err);
        if (s != KVR_OK) kvr_db_rollback(db);
    }
    if (s == KVR_OK && costs_id) *costs_id = rows[n - 1].id;
    for (int i = 0; i < n; i++) free(rows[i].json);
    return s;
}

kvr_status kvr_predict_run_fit_load(kvr_db *db, int64_t run_id, int64_t model_id,
                                    int32_t n_threads, kvr_predict_run_fit *out, int64_t *fit_id,
                                    kvr_error *err) {
    if (!db || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "load fit: NULL argument");
    kvr_db_fit *fits = NULL;
    int64_t n = 0;
    KVR_TRY(kvr_db_fits_list(db, run_id > 0 ? run_id : 0, &fits, &n, err));
    kvr_status s = KVR_ERR_NOT_FOUND;
    for (int64_t i = n - 1; i >= 0; i--) {
        const kvr_db_fit *f = &fits[i];
        if (strcmp(f->target, "costs") != 0 || !f->json) continue;
        char name[64];
        snprintf(name, sizeof name, "fit %lld", (long long)f->id);
        kvr_predict_run_fit r;
        s = kvr_predict_run_fit_from_json(f->json, strlen(f->json), name, &r, err);
        if (s != KVR_OK) break;
        if ((run_id <= 0 && model_id > 0 && r.model_id != model_id) ||
            (run_id <= 0 && n_threads > 0 && r.n_threads != n_threads)) {
            kvr_predict_run_fit_free(&r);
            s = KVR_ERR_NOT_FOUND;
            continue;
        }
        *out = r;
        if (fit_id) *fit_id = f->id;
        break;
    }
    kvr_db_fits_free(fits, n);
    if (s == KVR_ERR_NOT_FOUND) {
        if (run_id > 0)
            return kvr_error_set(err, KVR_ERR_NOT_FOUND,
                                 "no cost model fitted on run %lld in %s (kvr-fit --run %lld)",
                                 (long long)run_id, kvr_db_path(db), (long long)run_id);
        return kvr_error_set(err, KVR_ERR_NOT_FOUND,
                             "no cost model in %s for model %lld with %d thread(s) per rank "
                             "(kvr-profile --threads N, then kvr-fit --run RUN)",
                             kvr_db_path(db), (long long)model_id, (int)n_threads);
    }
    return s;
}
