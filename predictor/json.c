/* json.c -- JSON forms of the predictor's objects, for the store (rows and blobs) and for files
 * the runtime loads: one fit ("kvr-predict-fit/1"), a fitted cost model ("kvr-predict-costs/1")
 * and a KVR-P predictor ("kvr-predictor/1"). Schemas: docs/predictor.md.
 *
 * Numbers are written with 17 significant digits (cJSON's own printer may drop the last bit),
 * so a round trip reproduces every coefficient, knot and slope exactly and a reloaded predictor
 * predicts identically. Readers are strict about what prediction needs (shapes, finiteness,
 * order) and lenient about statistics, which are informative. */
#include "kvrp_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_FILE_BYTES (64u << 20)

// ----------------------------------------------------------------------------
// writing

cJSON *predict_json_num(double v) {
    if (!isfinite(v)) return cJSON_CreateNull();
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", v);
    return cJSON_CreateRaw(buf);
}

void predict_json_add_num(cJSON *obj, const char *key, double v) {
    cJSON *it = predict_json_num(v);
    if (it) cJSON_AddItemToObject(obj, key, it);
}

cJSON *predict_json_nums(const double *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) {
        cJSON *it = predict_json_num(v[i]);
        if (it) cJSON_AddItemToArray(a, it);
    }
    return a;
}

static cJSON *json_ints(const int64_t *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)v[i]);
        cJSON *it = cJSON_CreateRaw(buf);
        if (it) cJSON_AddItemToArray(a, it);
    }
    return a;
}

static void json_add_int(cJSON *obj, const char *key, int64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    cJSON *it = cJSON_CreateRaw(buf);
    if (it) cJSON_AddItemToObject(obj, key, it);
}

kvr_status predict_json_finish(cJSON *root, char **out, kvr_error *err) {
    if (!root) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (JSON)");
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (JSON)");
    /* hand out malloc'd memory whatever allocator cJSON was built with */
    size_t n = strlen(text);
    char *d = malloc(n + 2);
    if (!d) {
        cJSON_free(text);
        return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (JSON)");
    }
    memcpy(d, text, n);
    d[n] = '\n';
    d[n + 1] = 0;
    cJSON_free(text);
    *out = d;
    return KVR_OK;
}

static void json_add_kvr(cJSON *root) {
    cJSON *k = cJSON_AddObjectToObject(root, "kvr");
    if (k) {
        cJSON_AddStringToObject(k, "version", kvr_version());
        cJSON_AddStringToObject(k, "commit", kvr_build_commit());
    }
}

static const char *const weighting_names[] = {"none", "relative", "given"};
_Static_assert(sizeof weighting_names / sizeof weighting_names[0] == KVR_PREDICT_WEIGHT_COUNT,
               "weighting names");

/* Fill o with the fields of a fit. */
static cJSON *fit_json_fill(cJSON *o, const kvr_predict_fit *f) {
    if (!o) return NULL;
    const kvr_predict_lsq *l = &f->lsq;
    cJSON_AddStringToObject(o, "op", kvr_op_name(f->op));
    cJSON_AddStringToObject(o, "form", kvr_predict_form_name(f->form));
    cJSON_AddItemToObject(o, "breaks", predict_json_nums(f->breaks, f->n_breaks));
    cJSON_AddItemToObject(o, "coef", predict_json_nums(f->coef, f->n_coef));
    cJSON_AddItemToObject(o, "se", predict_json_nums(l->se, f->n_coef));
    cJSON_AddStringToObject(o, "weighting", (unsigned)f->weighting < KVR_PREDICT_WEIGHT_COUNT
                                                ? weighting_names[f->weighting]
                                                : "?");
    cJSON_AddBoolToObject(o, "nonneg", f->nonneg);
    cJSON_AddBoolToObject(o, "robust", f->robust);
    cJSON *st = cJSON_AddObjectToObject(o, "stats");
    if (st) {
        cJSON_AddNumberToObject(st, "n_obs", l->n_obs);
        predict_json_add_num(st, "dof", l->dof);
        predict_json_add_num(st, "chi2", l->chi2);
        predict_json_add_num(st, "r2", l->r2);
        predict_json_add_num(st, "sigma", l->sigma);
        predict_json_add_num(st, "rcond", l->rcond);
        cJSON_AddNumberToObject(st, "rank", l->rank);
        cJSON *ab = cJSON_AddArrayToObject(st, "at_bound");
        for (int j = 0; ab && j < f->n_coef; j++)
            cJSON_AddItemToArray(ab, cJSON_CreateBool(l->at_bound[j]));
        cJSON_AddNumberToObject(st, "n_outliers", l->n_outliers);
        cJSON_AddNumberToObject(st, "n_iter", l->n_iter);
    }
    cJSON_AddItemToObject(o, "cov", predict_json_nums(l->cov, f->n_coef * f->n_coef));
    cJSON *cv = cJSON_AddObjectToObject(o, "cv");
    if (cv) {
        cJSON_AddNumberToObject(cv, "k", f->cv.k);
        json_add_int(cv, "seed", (int64_t)(f->cv.seed & 0x7FFFFFFFFFFFFFFFull));
        cJSON_AddNumberToObject(cv, "n_obs", f->cv.n_obs);
        predict_json_add_num(cv, "mape_in", f->cv.mape_in);
        predict_json_add_num(cv, "max_rel_in", f->cv.max_rel_in);
        predict_json_add_num(cv, "mape_out", f->cv.mape_out);
        predict_json_add_num(cv, "max_rel_out", f->cv.max_rel_out);
    }
    cJSON *rg = cJSON_AddObjectToObject(o, "range");
    if (rg) {
        predict_json_add_num(rg, "x_min", f->x_min);
        predict_json_add_num(rg, "x_max", f->x_max);
        predict_json_add_num(rg, "prefix_max", f->prefix_max);
    }
    if (f->n_given > 0) { /* the rows given and what the fit made of them (issue 17) */
        cJSON *dt = cJSON_AddObjectToObject(o, "data");
        if (dt) {
            json_add_int(dt, "given", f->n_given);
            cJSON_AddNumberToObject(dt, "fitted", f->lsq.n_obs);
            cJSON_AddStringToObject(dt, "reduce", f->reduce[0] ? f->reduce : "none");
        }
    }
    return o;
}

cJSON *predict_fit_json(const kvr_predict_fit *f) {
    return fit_json_fill(cJSON_CreateObject(), f);
}

kvr_status kvr_predict_fit_to_json(const kvr_predict_fit *f, char **out, kvr_error *err) {
    if (!f || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "fit JSON: NULL argument");
    KVR_TRY(predict_fit_check(f, "fit JSON", err));
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "schema", "kvr-predict-fit/1");
        json_add_kvr(o);
        fit_json_fill(o, f);
    }
    return predict_json_finish(o, out, err);
}

// ----------------------------------------------------------------------------
// reading

typedef struct jrd {
    const char *name;
    kvr_error *err;
} jrd;

static kvr_status jrd_fail(const jrd *r, const char *fmt, const char *a, const char *b) {
    char msg[256];
    snprintf(msg, sizeof msg, fmt, a, b);
    return kvr_error_set(r->err, KVR_ERR_FORMAT, "%s: %s", r->name, msg);
}

/* An optional member key = {schedule: number} into out[mode] (has[mode] set; has may be
 * NULL); whole: a whole
 * number of tokens >= 0. Errors name key.schedule. */
static kvr_status jrd_schedule_nums(const jrd *r, const cJSON *root, const char *key, bool whole,
                                    double *out, bool *has) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!o) return KVR_OK;
    if (!cJSON_IsObject(o)) return jrd_fail(r, "\"%s\" must be an object%s", key, "");
    for (const cJSON *it = o->child; it; it = it->next) {
        kvr_mode md;
        if (kvr_mode_parse(it->string, &md, NULL) != KVR_OK)
            return jrd_fail(r, "unknown schedule \"%s.%s\" (single, kvr, tsp, ring)", key,
                            it->string);
        if (!cJSON_IsNumber(it) ||
            (whole && !(it->valuedouble >= 0 && it->valuedouble <= 1e15 &&
                        it->valuedouble == floor(it->valuedouble))))
            return jrd_fail(r, whole ? "\"%s.%s\" must be a whole number of tokens >= 0"
                                     : "\"%s.%s\" must be a number",
                            key, it->string);
        out[md] = it->valuedouble;
        if (has) has[md] = true;
    }
    return KVR_OK;
}

/* A number (null reads as NaN when allow_null). */
static kvr_status jrd_num(const jrd *r, const cJSON *o, const char *key, bool required,
                          bool allow_null, double *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it) return required ? jrd_fail(r, "field \"%s\"%s is missing", key, "") : KVR_OK;
    if (cJSON_IsNull(it) && allow_null) {
        *out = NAN;
        return KVR_OK;
    }
    if (!cJSON_IsNumber(it)) return jrd_fail(r, "field \"%s\" must be a number%s", key, "");
    *out = it->valuedouble;
    return KVR_OK;
}

static kvr_status jrd_int(const jrd *r, const cJSON *o, const char *key, bool required,
                          int64_t lo, int64_t hi, int64_t *out) {
    double v = NAN;
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it && !required) return KVR_OK;
    KVR_TRY(jrd_num(r, o, key, true, false, &v));
    if (v != floor(v) || v < (double)lo || v > (double)hi)
        return jrd_fail(r, "field \"%s\" must be an integer in range%s", key, "");
    *out = (int64_t)v;
    return KVR_OK;
}

static kvr_status jrd_str(const jrd *r, const cJSON *o, const char *key, bool required,
                          const char **out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it) return required ? jrd_fail(r, "field \"%s\"%s is missing", key, "") : KVR_OK;
    if (!cJSON_IsString(it)) return jrd_fail(r, "field \"%s\" must be a string%s", key, "");
    *out = it->valuestring;
    return KVR_OK;
}

/* An array of exactly n numbers (n < 0: any length up to max, returned in *got). */
static kvr_status jrd_nums(const jrd *r, const cJSON *arr, const char *what, int n, int max,
                           bool finite, double *out, int *got) {
    if (!cJSON_IsArray(arr)) return jrd_fail(r, "\"%s\" must be an array%s", what, "");
    int len = cJSON_GetArraySize(arr);
    if ((n >= 0 && len != n) || len > max) {
        char want[32];
        snprintf(want, sizeof want, n >= 0 ? " of %d numbers" : " of at most %d numbers",
                 n >= 0 ? n : max);
        return jrd_fail(r, "\"%s\" must be an array%s", what, want);
    }
    int i = 0;
    for (const cJSON *it = arr->child; it; it = it->next, i++) {
        if (cJSON_IsNull(it) && !finite) {
            out[i] = NAN;
            continue;
        }
        if (!cJSON_IsNumber(it) || (finite && !isfinite(it->valuedouble)))
            return jrd_fail(r, "\"%s\" must hold finite numbers%s", what, "");
        out[i] = it->valuedouble;
    }
    if (got) *got = len;
    return KVR_OK;
}

static kvr_status jrd_schema(const jrd *r, const cJSON *root, const char *want) {
    const char *s = NULL;
    KVR_TRY(jrd_str(r, root, "schema", true, &s));
    if (strcmp(s, want) != 0)
        return jrd_fail(r, "schema \"%s\" is not \"%s\"", s, want);
    return KVR_OK;
}

static kvr_status jrd_parse(const char *text, size_t len, const jrd *r, cJSON **out) {
    if (!text) return kvr_error_set(r->err, KVR_ERR_INVALID_ARG, "%s: NULL text", r->name);
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) return kvr_error_set(r->err, KVR_ERR_FORMAT, "%s: not valid JSON", r->name);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return kvr_error_set(r->err, KVR_ERR_FORMAT, "%s: expected a JSON object", r->name);
    }
    *out = root;
    return KVR_OK;
}

kvr_status predict_fit_parse(const cJSON *o, const char *what, kvr_predict_fit *out,
                             kvr_error *err) {
    jrd r = {what, err};
    if (!cJSON_IsObject(o)) return jrd_fail(&r, "a fit must be an object%s%s", "", "");
    kvr_predict_fit f;
    memset(&f, 0, sizeof f);
    const char *op = NULL, *form = NULL, *w = NULL;
    KVR_TRY(jrd_str(&r, o, "op", true, &op));
    KVR_TRY(jrd_str(&r, o, "form", true, &form));
    kvr_error tmp;
    if (kvr_op_parse(op, &f.op, &tmp) != KVR_OK) return jrd_fail(&r, "unknown op \"%s\"%s", op, "");
    int fi = -1;
    for (int i = 0; i < KVR_PREDICT_FORM_COUNT; i++)
        if (strcmp(form, kvr_predict_form_name((kvr_predict_form)i)) == 0) fi = i;
    if (fi < 0) return jrd_fail(&r, "unknown form \"%s\"%s", form, "");
    f.form = (kvr_predict_form)fi;
    KVR_TRY(jrd_nums(&r, cJSON_GetObjectItemCaseSensitive(o, "breaks"), "breaks", -1,
                     KVR_PREDICT_MAX_BREAKS, true, f.breaks, &f.n_breaks));
    KVR_TRY(jrd_nums(&r, cJSON_GetObjectItemCaseSensitive(o, "coef"), "coef", -1,
                     KVR_PREDICT_MAX_PARAMS, true, f.coef, &f.n_coef));
    f.lsq.n_params = f.n_coef;
    memcpy(f.lsq.coef, f.coef, sizeof f.coef);
    const cJSON *se = cJSON_GetObjectItemCaseSensitive(o, "se");
    if (se) KVR_TRY(jrd_nums(&r, se, "se", f.n_coef, KVR_PREDICT_MAX_PARAMS, false, f.lsq.se, NULL));
    const cJSON *cov = cJSON_GetObjectItemCaseSensitive(o, "cov");
    if (cov)
        KVR_TRY(jrd_nums(&r, cov, "cov", f.n_coef * f.n_coef,
                         KVR_PREDICT_MAX_PARAMS * KVR_PREDICT_MAX_PARAMS, false, f.lsq.cov, NULL));
    KVR_TRY(jrd_str(&r, o, "weighting", false, &w));
    if (w) {
        int wi = -1;
        for (int i = 0; i < KVR_PREDICT_WEIGHT_COUNT; i++)
            if (strcmp(w, weighting_names[i]) == 0) wi = i;
        if (wi < 0) return jrd_fail(&r, "unknown weighting \"%s\"%s", w, "");
        f.weighting = (kvr_predict_weighting)wi;
    }
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "nonneg");
    f.nonneg = cJSON_IsTrue(b);
    b = cJSON_GetObjectItemCaseSensitive(o, "robust");
    f.robust = cJSON_IsTrue(b);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "stats");
    if (cJSON_IsObject(st)) {
        int64_t v = 0;
        KVR_TRY(jrd_int(&r, st, "n_obs", false, 0, INT32_MAX, &v));
        f.lsq.n_obs = (int)v;
        KVR_TRY(jrd_num(&r, st, "dof", false, true, &f.lsq.dof));
        KVR_TRY(jrd_num(&r, st, "chi2", false, true, &f.lsq.chi2));
        KVR_TRY(jrd_num(&r, st, "r2", false, true, &f.lsq.r2));
        KVR_TRY(jrd_num(&r, st, "sigma", false, true, &f.lsq.sigma));
        KVR_TRY(jrd_num(&r, st, "rcond", false, true, &f.lsq.rcond));
        v = 0;
        KVR_TRY(jrd_int(&r, st, "rank", false, 0, KVR_PREDICT_MAX_PARAMS, &v));
        f.lsq.rank = (int)v;
        const cJSON *ab = cJSON_GetObjectItemCaseSensitive(st, "at_bound");
        int j = 0;
        for (const cJSON *it = cJSON_IsArray(ab) ? ab->child : NULL;
             it && j < KVR_PREDICT_MAX_PARAMS; it = it->next, j++) {
            f.lsq.at_bound[j] = cJSON_IsTrue(it);
            f.lsq.n_at_bound += f.lsq.at_bound[j];
        }
        v = 0;
        KVR_TRY(jrd_int(&r, st, "n_outliers", false, 0, INT32_MAX, &v));
        f.lsq.n_outliers = (int)v;
        v = 0;
        KVR_TRY(jrd_int(&r, st, "n_iter", false, 0, INT32_MAX, &v));
        f.lsq.n_iter = (int)v;
    }
    const cJSON *cv = cJSON_GetObjectItemCaseSensitive(o, "cv");
    if (cJSON_IsObject(cv)) {
        int64_t v = 0;
        KVR_TRY(jrd_int(&r, cv, "k", false, 0, INT32_MAX, &v));
        f.cv.k = (int)v;
        v = 0;
        KVR_TRY(jrd_int(&r, cv, "seed", false, 0, INT64_MAX, &v));
        f.cv.seed = (uint64_t)v;
        v = 0;
        KVR_TRY(jrd_int(&r, cv, "n_obs", false, 0, INT32_MAX, &v));
        f.cv.n_obs = (int)v;
        KVR_TRY(jrd_num(&r, cv, "mape_in", false, true, &f.cv.mape_in));
        KVR_TRY(jrd_num(&r, cv, "max_rel_in", false, true, &f.cv.max_rel_in));
        KVR_TRY(jrd_num(&r, cv, "mape_out", false, true, &f.cv.mape_out));
        KVR_TRY(jrd_num(&r, cv, "max_rel_out", false, true, &f.cv.max_rel_out));
    }
    const cJSON *rg = cJSON_GetObjectItemCaseSensitive(o, "range");
    if (cJSON_IsObject(rg)) {
        KVR_TRY(jrd_num(&r, rg, "x_min", false, true, &f.x_min));
        KVR_TRY(jrd_num(&r, rg, "x_max", false, true, &f.x_max));
        KVR_TRY(jrd_num(&r, rg, "prefix_max", false, true, &f.prefix_max));
    }
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(o, "data");
    if (cJSON_IsObject(dt)) {
        KVR_TRY(jrd_int(&r, dt, "given", false, 0, INT64_MAX, &f.n_given));
        const char *rd = NULL;
        KVR_TRY(jrd_str(&r, dt, "reduce", false, &rd));
        if (rd && strcmp(rd, "none") != 0) snprintf(f.reduce, sizeof f.reduce, "%s", rd);
    }
    kvr_status s = predict_fit_check(&f, what, err);
    if (s != KVR_OK) {
        if (err) err->code = KVR_ERR_FORMAT;
        return KVR_ERR_FORMAT;
    }
    *out = f;
    return KVR_OK;
}

kvr_status kvr_predict_fit_from_json(const char *text, size_t len, kvr_predict_fit *out,
                                     kvr_error *err) {
    jrd r = {"fit JSON", err};
    if (!out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "fit JSON: NULL argument");
    cJSON *root = NULL;
    KVR_TRY(jrd_parse(text, len, &r, &root));
    kvr_status s = jrd_schema(&r, root, "kvr-predict-fit/1");
    if (s == KVR_OK) s = predict_fit_parse(root, "fit JSON", out, err);
    cJSON_Delete(root);
    return s;
}

// ----------------------------------------------------------------------------
// cost models

/* {"single": {"run_us", "layer_us"}, "kvr": ..., "tsp": ..., "ring": ...}: the search cost
 * file's "overheads" (docs/search.md), also in kvr-predict-costs/1. */
cJSON *predict_overheads_json(const kvr_predict_costs *c) {
    cJSON *ov = cJSON_CreateObject();
    for (int md = 0; ov && md < KVR_MODE_COUNT; md++) {
        cJSON *one = cJSON_AddObjectToObject(ov, kvr_mode_name((kvr_mode)md));
        if (!one) continue;
        predict_json_add_num(one, "run_us", c->ovh[md].run_us);
        predict_json_add_num(one, "layer_us", c->ovh[md].layer_us);
    }
    return ov;
}

kvr_status kvr_predict_costs_to_json(const kvr_predict_costs *c, char **out, kvr_error *err) {
    if (!c || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "costs JSON: NULL argument");
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "schema", "kvr-predict-costs/1");
        json_add_kvr(o);
        cJSON_AddStringToObject(o, "model", c->model);
        cJSON_AddStringToObject(o, "device", c->device);
        cJSON_AddStringToObject(o, "dtype", c->dtype);
        cJSON_AddStringToObject(o, "source", c->source);
        cJSON_AddNumberToObject(o, "layers", c->n_layers);
        predict_json_add_num(o, "kv_bytes_per_token", c->kv_bytes_per_token);
        predict_json_add_num(o, "embed_us", c->embed_us);
        predict_json_add_num(o, "head_us", c->head_us);
        cJSON *fits = cJSON_AddObjectToObject(o, "fits");
        for (int k = 0; fits && k < KVR_OP_COUNT; k++) {
            const kvr_op op = kvr_predict_fit_order[k];
            if (c->has[op])
                cJSON_AddItemToObject(fits, kvr_op_name(op), predict_fit_json(&c->fit[op]));
        }
        if (c->has_ovh) cJSON_AddItemToObject(o, "overheads", predict_overheads_json(c));
        if (c->has_scale) { /* the end-to-end scale per schedule (absent: all 1) */
            cJSON *sc = cJSON_AddObjectToObject(o, "scale");
            for (int md = 0; sc && md < KVR_MODE_COUNT; md++)
                predict_json_add_num(sc, kvr_mode_name((kvr_mode)md), c->scale[md]);
            cJSON *up = cJSON_AddObjectToObject(o, "scale_upto"); /* 0: every length */
            for (int md = 0; up && md < KVR_MODE_COUNT; md++)
                cJSON_AddNumberToObject(up, kvr_mode_name((kvr_mode)md),
                                        (double)c->scale_upto[md]);
        }
        cJSON *ls = cJSON_AddArrayToObject(o, "links");
        for (int i = 0; ls && i < c->n_links; i++) {
            cJSON *l = cJSON_CreateObject();
            if (!l) continue;
            cJSON_AddNumberToObject(l, "src", c->links[i].src);
            cJSON_AddNumberToObject(l, "dst", c->links[i].dst);
            cJSON_AddItemToObject(l, "fit", predict_fit_json(&c->links[i].fit));
            cJSON_AddItemToArray(ls, l);
        }
    }
    return predict_json_finish(o, out, err);
}

kvr_status kvr_predict_costs_from_json(const char *text, size_t len, const char *name,
                                       kvr_predict_costs **out, kvr_error *err) {
    jrd r = {name ? name : "costs JSON", err};
    if (!out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: NULL argument", r.name);
    cJSON *root = NULL;
    KVR_TRY(jrd_parse(text, len, &r, &root));
    kvr_status s = predict_costs_from_obj(root, r.name, out, err);
    cJSON_Delete(root);
    return s;
}

kvr_status predict_costs_from_obj(const cJSON *root, const char *name, kvr_predict_costs **out,
                                  kvr_error *err) {
    jrd r = {name ? name : "costs JSON", err};
    if (!cJSON_IsObject(root))
        return kvr_error_set(err, KVR_ERR_FORMAT, "%s: expected a JSON object", r.name);
    kvr_predict_costs *c = NULL;
    kvr_predict_costs_info info;
    memset(&info, 0, sizeof info);
    int64_t layers = 0;
    kvr_status s = jrd_schema(&r, root, "kvr-predict-costs/1");
    if (s == KVR_OK) s = jrd_int(&r, root, "layers", true, 1, 1 << 20, &layers);
    if (s == KVR_OK) s = jrd_num(&r, root, "kv_bytes_per_token", true, false, &info.kv_bytes_per_token);
    if (s == KVR_OK) s = jrd_num(&r, root, "embed_us", true, false, &info.embed_us);
    if (s == KVR_OK) s = jrd_num(&r, root, "head_us", true, false, &info.head_us);
    if (s == KVR_OK) s = jrd_str(&r, root, "model", false, &info.model);
    if (s == KVR_OK) s = jrd_str(&r, root, "device", false, &info.device);
    if (s == KVR_OK) s = jrd_str(&r, root, "dtype", false, &info.dtype);
    if (s == KVR_OK) s = jrd_str(&r, root, "source", false, &info.source);
    info.n_layers = (int)layers;
    if (s == KVR_OK) {
        s = kvr_predict_costs_create(&info, &c, err);
        if (s != KVR_OK) kvr_error_prefix(err, "%s", r.name);
    }
    const cJSON *fits = cJSON_GetObjectItemCaseSensitive(root, "fits");
    if (s == KVR_OK && fits && !cJSON_IsObject(fits))
        s = jrd_fail(&r, "\"fits\" must be an object%s%s", "", "");
    for (const cJSON *it = fits ? fits->child : NULL; s == KVR_OK && it; it = it->next) {
        char what[300];
        snprintf(what, sizeof what, "%s: fits.%s", r.name, it->string);
        kvr_predict_fit f;
        s = predict_fit_parse(it, what, &f, err);
        if (s == KVR_OK && strcmp(it->string, kvr_op_name(f.op)) != 0)
            s = jrd_fail(&r, "fits.%s holds a fit for op %s", it->string, kvr_op_name(f.op));
        if (s == KVR_OK) s = kvr_predict_costs_set_fit(c, &f, err);
    }
    const cJSON *ov = cJSON_GetObjectItemCaseSensitive(root, "overheads");
    if (s == KVR_OK && ov && !cJSON_IsObject(ov))
        s = jrd_fail(&r, "\"overheads\" must be an object%s%s", "", "");
    for (const cJSON *it = ov ? ov->child : NULL; s == KVR_OK && it; it = it->next) {
        kvr_mode md;
        if (kvr_mode_parse(it->string, &md, NULL) != KVR_OK) {
            s = jrd_fail(&r, "unknown schedule \"overheads.%s\"%s (single, kvr, tsp, ring)",
                         it->string, "");
            break;
        }
        char what[300];
        snprintf(what, sizeof what, "%s: overheads.%s", r.name, it->string);
        jrd orr = {what, err};
        double run = 0, lay = 0;
        if (!cJSON_IsObject(it)) s = jrd_fail(&orr, "must be an object%s%s", "", "");
        if (s == KVR_OK) s = jrd_num(&orr, it, "run_us", false, false, &run);
        if (s == KVR_OK) s = jrd_num(&orr, it, "layer_us", false, false, &lay);
        if (s == KVR_OK) s = kvr_predict_costs_set_overhead(c, md, run, lay, err);
        if (s != KVR_OK && s != KVR_ERR_FORMAT) s = kvr_error_prefix(err, "%s", r.name);
    }
    /* "scale": {schedule: factor}, "scale_upto": {schedule: tokens} (absent: 0, every length) */
    double scale[KVR_MODE_COUNT], upto[KVR_MODE_COUNT];
    bool has_sc[KVR_MODE_COUNT] = {false};
    for (int md = 0; md < KVR_MODE_COUNT; md++) scale[md] = 1, upto[md] = 0;
    if (s == KVR_OK) s = jrd_schedule_nums(&r, root, "scale", false, scale, has_sc);
    if (s == KVR_OK) s = jrd_schedule_nums(&r, root, "scale_upto", true, upto, NULL);
    for (int md = 0; s == KVR_OK && md < KVR_MODE_COUNT; md++) {
        if (!has_sc[md] && upto[md] == 0) continue;
        s = kvr_predict_costs_set_scale(c, (kvr_mode)md, scale[md], (int64_t)upto[md], err);
        if (s != KVR_OK) s = kvr_error_prefix(err, "%s", r.name);
    }
    const cJSON *ls = cJSON_GetObjectItemCaseSensitive(root, "links");
    if (s == KVR_OK && ls && !cJSON_IsArray(ls))
        s = jrd_fail(&r, "\"links\" must be an array%s%s", "", "");
    int i = 0;
    for (const cJSON *it = ls ? ls->child : NULL; s == KVR_OK && it; it = it->next, i++) {
        char what[300];
        snprintf(what, sizeof what, "%s: links[%d]", r.name, i);
        jrd lr = {what, err};
        int64_t src = -1, dst = -1;
        kvr_predict_fit f;
        s = jrd_int(&lr, it, "src", true, 0, 65535, &src);
        if (s == KVR_OK) s = jrd_int(&lr, it, "dst", true, 0, 65535, &dst);
        if (s == KVR_OK)
            s = predict_fit_parse(cJSON_GetObjectItemCaseSensitive(it, "fit"), what, &f, err);
        if (s == KVR_OK) s = kvr_predict_costs_set_link_fit(c, (int)src, (int)dst, &f, err);
    }
    if (s != KVR_OK) {
        kvr_predict_costs_destroy(c);
        return s;
    }
    *out = c;
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// predictors

static cJSON *json_rows(const double *v, int rows, int cols) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < rows; i++) cJSON_AddItemToArray(a, predict_json_nums(v + (size_t)i * cols, cols));
    return a;
}

kvr_status kvr_predictor_to_json(const kvr_predictor *kp, char **out, kvr_error *err) {
    if (!kp || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "predictor JSON: NULL argument");
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "schema", "kvr-predictor/1");
        json_add_kvr(o);
        cJSON_AddStringToObject(o, "label", kp->label);
        cJSON *c = cJSON_AddObjectToObject(o, "costs");
        if (c) {
            cJSON_AddStringToObject(c, "source", kp->costs_source);
            cJSON_AddStringToObject(c, "model", kp->model);
            cJSON_AddNumberToObject(c, "layers", kp->n_layers);
        }
        json_add_int(o, "granularity", kp->g);
        cJSON_AddStringToObject(o, "remainder", "last-chunk");
        cJSON *ra = cJSON_AddArrayToObject(o, "ranks");
        for (int k = 0; ra && k < kp->n_e; k++) {
            const predict_kvrp_entry *e = &kp->e[k];
            cJSON *r = cJSON_CreateObject();
            if (!r) continue;
            cJSON_AddNumberToObject(r, "ranks", e->p);
            cJSON_AddStringToObject(r, "form", kvr_predictor_form_name(e->form));
            cJSON_AddItemToObject(r, "contexts", json_ints(e->contexts, e->n));
            cJSON *parts = cJSON_AddArrayToObject(r, "partitions");
            for (int j = 0; parts && j < e->n; j++)
                cJSON_AddItemToArray(parts, json_ints(e->chunks + (size_t)j * e->p, e->p));
            if (predict_form_has_balanced(e->form)) predict_json_add_num(r, "c0", e->c0);
            if (e->x) {
                cJSON_AddItemToObject(r, "x", predict_json_nums(e->x, e->n));
                cJSON_AddItemToObject(r, e->form == KVR_PREDICTOR_FORM_BALANCED_RESID
                                             ? "residuals"
                                             : "fractions",
                                      json_rows(e->f, e->p - 1, e->n));
                if (e->d) cJSON_AddItemToObject(r, "slopes", json_rows(e->d, e->p - 1, e->n));
            }
            if (e->b) {
                predict_json_add_num(r, "c_ref", e->c_ref);
                cJSON_AddItemToObject(r, "coef", json_rows(e->b, e->p - 1, e->nb));
            }
            const kvr_predictor_stats *st = &e->st;
            cJSON *s = cJSON_AddObjectToObject(r, "stats");
            if (s) {
                cJSON_AddNumberToObject(s, "n_contexts", st->n_contexts);
                cJSON_AddNumberToObject(s, "n_added", st->n_added);
                json_add_int(s, "context_min", st->context_min);
                json_add_int(s, "context_max", st->context_max);
                predict_json_add_num(s, "loo_mean_gap", st->loo_mean_gap);
                predict_json_add_num(s, "loo_max_gap", st->loo_max_gap);
                predict_json_add_num(s, "fit_max_gap", st->fit_max_gap);
                cJSON *cand = cJSON_AddObjectToObject(s, "candidates");
                for (int f = 0; cand && f < KVR_PREDICTOR_FORM_COUNT; f++) {
                    if (isnan(st->cand_max_gap[f])) continue;
                    cJSON *cf = cJSON_AddObjectToObject(cand, kvr_predictor_form_name((kvr_predictor_form)f));
                    if (!cf) continue;
                    predict_json_add_num(cf, "loo_mean_gap", st->cand_mean_gap[f]);
                    predict_json_add_num(cf, "loo_max_gap", st->cand_max_gap[f]);
                }
            }
            cJSON_AddItemToArray(ra, r);
        }
        if (kp->plan) cJSON_AddItemToObject(o, "strategy_table", predict_plan_json(kp->plan));
    }
    return predict_json_finish(o, out, err);
}

/* rows x cols numbers from an array of arrays. */
static kvr_status jrd_rows(const jrd *r, const cJSON *arr, const char *what, int rows, int cols,
                           double *out) {
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != rows) {
        char w[48];
        snprintf(w, sizeof w, " of %d arrays", rows);
        return jrd_fail(r, "\"%s\" must be an array%s", what, w);
    }
    int i = 0;
    for (const cJSON *it = arr->child; it; it = it->next, i++)
        KVR_TRY(jrd_nums(r, it, what, cols, cols, true, out + (size_t)i * cols, NULL));
    return KVR_OK;
}

static kvr_status jrd_ints(const jrd *r, const cJSON *arr, const char *what, int n, int64_t *out) {
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != n) {
        char w[48];
        snprintf(w, sizeof w, " of %d integers", n);
        return jrd_fail(r, "\"%s\" must be an array%s", what, w);
    }
    int i = 0;
    for (const cJSON *it = arr->child; it; it = it->next, i++) {
        if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
            fabs(it->valuedouble) > 9e15)
            return jrd_fail(r, "\"%s\" must hold integers%s", what, "");
        out[i] = (int64_t)it->valuedouble;
    }
    return KVR_OK;
}

static kvr_status jrd_entry(const jrd *r, const cJSON *o, int64_t g, predict_kvrp_entry *e) {
    memset(e, 0, sizeof *e);
    int64_t p = 0;
    const char *form = NULL;
    KVR_TRY(jrd_int(r, o, "ranks", true, 1, 65536, &p));
    KVR_TRY(jrd_str(r, o, "form", true, &form));
    kvr_error tmp;
    if (kvr_predictor_form_parse(form, &e->form, &tmp) != KVR_OK)
        return jrd_fail(r, "unknown form \"%s\"%s", form, "");
    e->p = (int)p;
    const cJSON *ctx = cJSON_GetObjectItemCaseSensitive(o, "contexts");
    if (!cJSON_IsArray(ctx) || cJSON_GetArraySize(ctx) < 1)
        return jrd_fail(r, "\"contexts\" must be a non-empty array%s%s", "", "");
    e->n = cJSON_GetArraySize(ctx);
    const int n = e->n, nbd = e->p - 1;
    e->contexts = malloc((size_t)n * sizeof *e->contexts);
    e->chunks = malloc((size_t)n * (size_t)e->p * sizeof *e->chunks);
    if (!e->contexts || !e->chunks)
        return kvr_error_set(r->err, KVR_ERR_NOMEM, "out of memory (predictor)");
    KVR_TRY(jrd_ints(r, ctx, "contexts", n, e->contexts));
    for (int j = 0; j < n; j++)
        if (e->contexts[j] < e->p * g || (j > 0 && e->contexts[j] <= e->contexts[j - 1]))
            return jrd_fail(r, "\"contexts\" must ascend, each >= ranks x granularity%s%s", "",
                            "");
    const cJSON *parts = cJSON_GetObjectItemCaseSensitive(o, "partitions");
    if (!cJSON_IsArray(parts) || cJSON_GetArraySize(parts) != n)
        return jrd_fail(r, "\"partitions\" must hold one partition per context%s%s", "", "");
    int j = 0;
    for (const cJSON *it = parts->child; it; it = it->next, j++)
        KVR_TRY(jrd_ints(r, it, "partitions[]", e->p, e->chunks + (size_t)j * e->p));
    if (predict_form_has_balanced(e->form)) {
        KVR_TRY(jrd_num(r, o, "c0", true, false, &e->c0));
        if (!(e->c0 >= 0) || !isfinite(e->c0))
            return jrd_fail(r, "\"c0\" must be finite and >= 0%s%s", "", "");
    }
    if (predict_form_has_knots(e->form)) {
        const char *fk = e->form == KVR_PREDICTOR_FORM_BALANCED_RESID ? "residuals" : "fractions";
        e->x = malloc((size_t)n * sizeof *e->x);
        e->f = malloc((size_t)(nbd > 0 ? nbd : 1) * (size_t)n * sizeof *e->f);
        if (!e->x || !e->f) return kvr_error_set(r->err, KVR_ERR_NOMEM, "out of memory (predictor)");
        KVR_TRY(jrd_nums(r, cJSON_GetObjectItemCaseSensitive(o, "x"), "x", n, n, true, e->x, NULL));
        for (int k = 1; k < n; k++)
            if (!(e->x[k] > e->x[k - 1])) return jrd_fail(r, "\"x\" must ascend%s%s", "", "");
        KVR_TRY(jrd_rows(r, cJSON_GetObjectItemCaseSensitive(o, fk), fk, nbd, n, e->f));
        if (predict_form_is_steffen(e->form)) {
            if (n < 3) return jrd_fail(r, "a Steffen form needs at least 3 contexts%s%s", "", "");
            if (nbd > 0) {
                e->d = malloc((size_t)nbd * (size_t)n * sizeof *e->d);
                if (!e->d) return kvr_error_set(r->err, KVR_ERR_NOMEM, "out of memory (predictor)");
                KVR_TRY(jrd_rows(r, cJSON_GetObjectItemCaseSensitive(o, "slopes"), "slopes", nbd,
                                 n, e->d));
            }
        }
    } else if (predict_form_nb(e->form) > 0) {
        e->nb = predict_form_nb(e->form);
        KVR_TRY(jrd_num(r, o, "c_ref", true, false, &e->c_ref));
        if (!(e->c_ref > 0) || !isfinite(e->c_ref))
            return jrd_fail(r, "\"c_ref\" must be finite and > 0%s%s", "", "");
        e->b = malloc((size_t)(nbd > 0 ? nbd : 1) * (size_t)e->nb * sizeof *e->b);
        if (!e->b) return kvr_error_set(r->err, KVR_ERR_NOMEM, "out of memory (predictor)");
        KVR_TRY(jrd_rows(r, cJSON_GetObjectItemCaseSensitive(o, "coef"), "coef", nbd, e->nb,
                         e->b));
    }
    kvr_predictor_stats *st = &e->st;
    st->n_ranks = e->p;
    st->n_contexts = n;
    st->context_min = e->contexts[0];
    st->context_max = e->contexts[n - 1];
    st->form = e->form;
    st->loo_mean_gap = st->loo_max_gap = st->fit_max_gap = NAN;
    for (int f = 0; f < KVR_PREDICTOR_FORM_COUNT; f++)
        st->cand_mean_gap[f] = st->cand_max_gap[f] = NAN;
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "stats");
    if (cJSON_IsObject(s)) {
        int64_t na = 0;
        KVR_TRY(jrd_int(r, s, "n_added", false, 0, n, &na));
        st->n_added = (int)na;
        KVR_TRY(jrd_num(r, s, "loo_mean_gap", false, true, &st->loo_mean_gap));
        KVR_TRY(jrd_num(r, s, "loo_max_gap", false, true, &st->loo_max_gap));
        KVR_TRY(jrd_num(r, s, "fit_max_gap", false, true, &st->fit_max_gap));
        const cJSON *cand = cJSON_GetObjectItemCaseSensitive(s, "candidates");
        for (int f = 0; cJSON_IsObject(cand) && f < KVR_PREDICTOR_FORM_COUNT; f++) {
            const cJSON *cf =
                cJSON_GetObjectItemCaseSensitive(cand, kvr_predictor_form_name((kvr_predictor_form)f));
            if (!cJSON_IsObject(cf)) continue;
            KVR_TRY(jrd_num(r, cf, "loo_mean_gap", false, true, &st->cand_mean_gap[f]));
            KVR_TRY(jrd_num(r, cf, "loo_max_gap", false, true, &st->cand_max_gap[f]));
        }
    }
    return KVR_OK;
}

kvr_status kvr_predictor_from_json(const char *text, size_t len, const char *name,
                                   kvr_predictor **out, kvr_error *err) {
    jrd r = {name ? name : "predictor JSON", err};
    if (!out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: NULL argument", r.name);
    cJSON *root = NULL;
    KVR_TRY(jrd_parse(text, len, &r, &root));
    kvr_predictor *kp = NULL;
    int64_t g = 0;
    const char *label = NULL;
    kvr_status s = jrd_schema(&r, root, "kvr-predictor/1");
    if (s == KVR_OK) s = jrd_int(&r, root, "granularity", true, 1, INT64_C(1) << 40, &g);
    if (s == KVR_OK) s = jrd_str(&r, root, "label", false, &label);
    if (s == KVR_OK) s = predict_kvrp_create(g, label, &kp, err);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(root, "costs");
    if (s == KVR_OK && cJSON_IsObject(c)) {
        const char *src = NULL, *model = NULL;
        int64_t layers = 0;
        s = jrd_str(&r, c, "source", false, &src);
        if (s == KVR_OK) s = jrd_str(&r, c, "model", false, &model);
        if (s == KVR_OK) s = jrd_int(&r, c, "layers", false, 0, 1 << 20, &layers);
        char *a = kvr_strdup(src), *b = kvr_strdup(model);
        if (s == KVR_OK && (!a || !b)) s = kvr_error_set(err, KVR_ERR_NOMEM, "out of memory");
        if (s == KVR_OK) {
            free(kp->costs_source);
            free(kp->model);
            kp->costs_source = a;
            kp->model = b;
            kp->n_layers = (int)layers;
        } else {
            free(a);
            free(b);
        }
    }
    const cJSON *ra = cJSON_GetObjectItemCaseSensitive(root, "ranks");
    if (s == KVR_OK && !cJSON_IsArray(ra))
        s = jrd_fail(&r, "\"ranks\" must be an array%s%s", "", "");
    int i = 0;
    for (const cJSON *it = s == KVR_OK ? ra->child : NULL; s == KVR_OK && it; it = it->next, i++) {
        char what[300];
        snprintf(what, sizeof what, "%s: ranks[%d]", r.name, i);
        jrd er = {what, err};
        predict_kvrp_entry e;
        s = jrd_entry(&er, it, g, &e);
        if (s == KVR_OK && kvr_predictor_stats_get(kp, e.p, &(kvr_predictor_stats){0}, NULL) == KVR_OK)
            s = jrd_fail(&er, "rank count %s%s listed twice", "", "");
        if (s == KVR_OK) s = predict_kvrp_insert(kp, &e, err);
        if (s != KVR_OK) predict_kvrp_entry_free(&e);
    }
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "strategy_table");
    if (s == KVR_OK && pt && !cJSON_IsNull(pt)) s = predict_plan_parse(pt, r.name, &kp->plan, err);
    cJSON_Delete(root);
    if (s != KVR_OK) {
        kvr_predictor_destroy(kp);
        return s;
    }
    *out = kp;
    return KVR_OK;
}

kvr_status kvr_predictor_load(const char *path, kvr_predictor **out, kvr_error *err) {
    if (!path || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "predictor: NULL argument");
    FILE *fp = fopen(path, "rb");
    if (!fp) return kvr_error_set(err, KVR_ERR_IO, "open %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0;
    kvr_status s = kvr_read_stream(fp, path, JSON_MAX_FILE_BYTES, &buf, &n, err);
    fclose(fp);
    if (s == KVR_OK) s = kvr_predictor_from_json(buf, n, path, out, err);
    free(buf);
    return s;
}
