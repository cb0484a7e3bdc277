/* files.c -- predictor files (a KVR-P predictor with its cost model, what kvr-fit --export
 * writes and kvr-run --predictor reads) and the JSON of a run fit (the store's "costs" fit row):
 * the documents a runtime loads, without the store itself. */
#include "kvrp_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// run fits

void kvr_predict_run_fit_free(kvr_predict_run_fit *f) {
    if (!f) return;
    kvr_predict_costs_destroy(f->costs);
    memset(f, 0, sizeof *f);
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
        m0.err_band = m0.band_e2e = m0.band_spread = -1;
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
        /* the band's terms when measured (a zeroed meta has none) */
        if (m->err_band >= 0 && m->band_e2e >= 0 && m->band_spread >= 0 &&
            m->band_e2e + m->band_spread > 0) {
            predict_json_add_num(kf, "err_band_e2e", m->band_e2e);
            predict_json_add_num(kf, "err_band_spread", m->band_spread);
        }
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
    m.err_band = m.band_e2e = m.band_spread = -1;
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
        const char *bk[2] = {"err_band_e2e", "err_band_spread"};
        double *bv[2] = {&m.band_e2e, &m.band_spread};
        for (int i = 0; s == KVR_OK && i < 2; i++) {
            const cJSON *it = cJSON_GetObjectItemCaseSensitive(kf, bk[i]);
            if (!it || cJSON_IsNull(it)) continue;
            if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || it->valuedouble < 0) {
                char w[64];
                snprintf(w, sizeof w, "\"%s\" must be a number >= 0", bk[i]);
                s = file_fail(err, name, w);
            } else {
                *bv[i] = it->valuedouble;
            }
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
    char *buf = NULL;
    size_t len = 0;
    kvr_status s = kvr_read_file(path, 0, &buf, &len, err);
    if (s == KVR_OK) s = kvr_predictor_file_parse(buf, len, path, kp_out, costs_out, meta, err);
    free(buf);
    return s;
}

// ----------------------------------------------------------------------------
// run fits as JSON (the store's "costs" fit row)

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
        cJSON *bd = cJSON_AddObjectToObject(o, "band");
        if (bd) { /* the band's terms: err_band = e2e + spread, else op (n_e2e 0) */
            predict_json_add_num(bd, "op", f->band_op);
            cJSON_AddNumberToObject(bd, "n_e2e", f->n_e2e);
            if (f->n_e2e > 0) {
                predict_json_add_num(bd, "e2e", f->band_e2e);
                predict_json_add_num(bd, "spread", f->band_spread);
            }
        }
        if (f->n_decode_samples > 0) {
            cJSON *d = cJSON_AddObjectToObject(o, "decode_step");
            if (d) {
                predict_json_add_num(d, "k_us", f->decode.k_us);
                predict_json_add_num(d, "per_seq_us", f->decode.per_seq_us);
                predict_json_add_num(d, "per_ctx_token_us", f->decode.per_ctx_token_us);
                cJSON_AddNumberToObject(d, "n_samples", f->n_decode_samples);
                predict_json_add_num(d, "mape_in", f->decode_mape_in);
                predict_json_add_num(d, "mape_cv", f->decode_mape_cv);
                predict_json_add_num(d, "max_rel_cv", f->decode_max_rel_cv);
            }
        }
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
        /* the band's terms (absent in fits made before the end-to-end check: the band is the
         * per-op one) */
        r.band_op = r.err_band;
        r.band_e2e = r.band_spread = -1;
        const cJSON *bd = cJSON_GetObjectItemCaseSensitive(root, "band");
        if (bd) {
            const char *keys[4] = {"op", "n_e2e", "e2e", "spread"};
            double v[4] = {r.err_band, 0, -1, -1};
            for (int i = 0; s == KVR_OK && i < 4; i++) {
                const cJSON *it = cJSON_GetObjectItemCaseSensitive(bd, keys[i]);
                if (!it && i >= 2 && v[1] == 0) continue;
                if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || it->valuedouble < 0 ||
                    (i == 1 && it->valuedouble > 1e6))
                    s = kvr_error_set(err, KVR_ERR_FORMAT,
                                      "%s: \"band.%s\" must be a number >= 0", name, keys[i]);
                else
                    v[i] = it->valuedouble;
            }
            if (s == KVR_OK) {
                r.band_op = v[0];
                r.n_e2e = (int)v[1];
                r.band_e2e = v[2];
                r.band_spread = v[3];
            }
        }
        rf_str(root, "model", r.model, sizeof r.model);
        rf_str(root, "device", r.device, sizeof r.device);
        rf_str(root, "dtype", r.dtype, sizeof r.dtype);
        r.head_constant = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "head_constant"));
        const cJSON *ns = cJSON_GetObjectItemCaseSensitive(root, "n_samples");
        for (int op = 0; op < KVR_OP_COUNT; op++) {
            const cJSON *it = cJSON_GetObjectItemCaseSensitive(ns, kvr_op_name((kvr_op)op));
            r.n_samples[op] = cJSON_IsNumber(it) ? (int)it->valuedouble : 0;
        }
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "decode_step");
        if (d) { /* optional: fits made before decode steps were profiled have none */
            const char *keys[3] = {"k_us", "per_seq_us", "per_ctx_token_us"};
            double v[3];
            const cJSON *ns_d = cJSON_GetObjectItemCaseSensitive(d, "n_samples");
            for (int i = 0; s == KVR_OK && i < 3; i++) {
                const cJSON *it = cJSON_GetObjectItemCaseSensitive(d, keys[i]);
                if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || it->valuedouble < 0)
                    s = kvr_error_set(err, KVR_ERR_FORMAT,
                                      "%s: \"decode_step.%s\" must be a number >= 0", name,
                                      keys[i]);
                else
                    v[i] = it->valuedouble;
            }
            if (s == KVR_OK && (!cJSON_IsNumber(ns_d) || ns_d->valuedouble < 1))
                s = kvr_error_set(err, KVR_ERR_FORMAT,
                                  "%s: \"decode_step.n_samples\" must be a number >= 1", name);
            if (s == KVR_OK) {
                r.decode = (kvr_search_decode_step){v[0], v[1], v[2]};
                r.n_decode_samples = (int)KVR_MIN(ns_d->valuedouble, INT32_MAX);
                const cJSON *m;
                m = cJSON_GetObjectItemCaseSensitive(d, "mape_in");
                r.decode_mape_in = cJSON_IsNumber(m) ? m->valuedouble : NAN;
                m = cJSON_GetObjectItemCaseSensitive(d, "mape_cv");
                r.decode_mape_cv = cJSON_IsNumber(m) ? m->valuedouble : NAN;
                m = cJSON_GetObjectItemCaseSensitive(d, "max_rel_cv");
                r.decode_max_rel_cv = cJSON_IsNumber(m) ? m->valuedouble : NAN;
            }
        }
    }
    if (s == KVR_OK) {
        char cname[300];
        snprintf(cname, sizeof cname, "%s: costs", name);
        s = predict_costs_from_obj(cJSON_GetObjectItemCaseSensitive(root, "costs"), cname,
                                   &r.costs, err);
    }
    for (int md = 0; s == KVR_OK && md < KVR_MODE_COUNT; md++) { /* the scales: the costs' */
        r.scale[md] = kvr_predict_costs_scale(r.costs, (kvr_mode)md, 0, &r.scale_upto[md]);
        if (r.scale[md] != 1) r.scale_kept |= 1u << md;
        r.scale_raw_err[md] = r.scale_heldout_err[md] = r.scale_spread[md] = NAN;
    }
    cJSON_Delete(root);
    if (s != KVR_OK) return s;
    *out = r;
    return KVR_OK;
}
