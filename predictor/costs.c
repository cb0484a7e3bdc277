/* costs.c -- the fitted cost model at predict time: op and form names, evaluating a fitted
 * cost function, the cost-model object, and the bridge to the search module -- a
 * kvr_search_costs built from the fits (the coefficient struct when every fit is one piece,
 * else a "fit" source with a link-time hook) and the TTFT it predicts for a prefill as the
 * runtime runs it. No GSL: fitting is costfit.c (kvr_predict). */
#include "kvrp_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// names

const kvr_op kvr_predict_fit_order[KVR_OP_COUNT] = {KVR_OP_PRE,  KVR_OP_ATTN, KVR_OP_POST,
                                                    KVR_OP_HEAD, KVR_OP_LINK, KVR_OP_EMBED};
static const char *const form_names[] = {"attn", "hinge", "segments"};
_Static_assert(sizeof form_names / sizeof form_names[0] == KVR_PREDICT_FORM_COUNT, "form names");

const char *kvr_predict_form_name(kvr_predict_form f) {
    return (unsigned)f < KVR_PREDICT_FORM_COUNT ? form_names[f] : "?";
}

// ----------------------------------------------------------------------------
// design rows and evaluation

int predict_fit_n_coef(kvr_predict_form form, int nb) {
    switch (form) {
    case KVR_PREDICT_FORM_ATTN: return 4;
    case KVR_PREDICT_FORM_HINGE: return 2 + nb;
    case KVR_PREDICT_FORM_SEGMENTS: return 2 * (nb + 1);
    default: return 0;
    }
}

int predict_fit_row(kvr_predict_form form, const double *br, int nb, double x, double P,
                    double *row) {
    switch (form) {
    case KVR_PREDICT_FORM_ATTN:
        row[0] = 1;
        row[1] = x;
        row[2] = P;
        row[3] = x * P + 0.5 * x * x;
        return 4;
    case KVR_PREDICT_FORM_HINGE: {
        row[0] = 1;
        double lo = 0;
        for (int j = 0; j <= nb; j++) {
            double hi = j < nb ? br[j] : INFINITY;
            double v = x - lo;
            row[1 + j] = v <= 0 ? 0 : (v < hi - lo ? v : hi - lo);
            lo = hi;
        }
        return 2 + nb;
    }
    case KVR_PREDICT_FORM_SEGMENTS: {
        int seg = 0;
        while (seg < nb && x >= br[seg]) seg++;
        for (int j = 0; j <= nb; j++) {
            row[2 * j] = j == seg ? 1 : 0;
            row[2 * j + 1] = j == seg ? x : 0;
        }
        return 2 * (nb + 1);
    }
    default: return 0;
    }
}

double kvr_predict_fit_eval(const kvr_predict_fit *f, double x, double prefix) {
    double row[KVR_PREDICT_MAX_PARAMS];
    int q = predict_fit_row(f->form, f->breaks, f->n_breaks, x, prefix, row);
    double v = 0;
    for (int j = 0; j < q && j < f->n_coef; j++) v += f->coef[j] * row[j];
    return v;
}

kvr_status predict_fit_check(const kvr_predict_fit *f, const char *what, kvr_error *err) {
    if ((unsigned)f->op >= KVR_OP_COUNT || (unsigned)f->form >= KVR_PREDICT_FORM_COUNT)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: unknown op or form", what);
    if (f->n_breaks < 0 || f->n_breaks > KVR_PREDICT_MAX_BREAKS ||
        (f->form == KVR_PREDICT_FORM_ATTN && f->n_breaks != 0))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: %d breaks for form %s", what,
                             f->n_breaks, kvr_predict_form_name(f->form));
    if ((f->op == KVR_OP_ATTN) != (f->form == KVR_PREDICT_FORM_ATTN))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "%s: op %s cannot have form %s (attention and only attention "
                             "uses the attention form)",
                             what, kvr_op_name(f->op), kvr_predict_form_name(f->form));
    int nc = predict_fit_n_coef(f->form, f->n_breaks);
    if (f->n_coef != nc || nc > KVR_PREDICT_MAX_PARAMS)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: form %s with %d breaks has %d "
                             "coefficients, not %d", what, kvr_predict_form_name(f->form),
                             f->n_breaks, nc, f->n_coef);
    for (int j = 0; j < f->n_coef; j++)
        if (!isfinite(f->coef[j]))
            return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: coefficient %d is not finite",
                                 what, j);
    for (int j = 0; j < f->n_breaks; j++)
        if (!isfinite(f->breaks[j]) || f->breaks[j] <= 0 ||
            (j > 0 && f->breaks[j] <= f->breaks[j - 1]))
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "%s: breaks must be finite, > 0 and ascending", what);
    return KVR_OK;
}


// ----------------------------------------------------------------------------
// the fitted cost model

kvr_status kvr_predict_costs_create(const kvr_predict_costs_info *info, kvr_predict_costs **out,
                                    kvr_error *err) {
    if (!info || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "costs: NULL argument");
    if (info->n_layers < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "costs: layers must be >= 1, got %d",
                             info->n_layers);
    const double v[] = {info->kv_bytes_per_token, info->embed_us, info->head_us};
    for (int i = 0; i < 3; i++)
        if (!isfinite(v[i]) || v[i] < 0)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "costs: kv_bytes_per_token, embed_us and head_us must be finite "
                                 "and >= 0");
    kvr_predict_costs *c = calloc(1, sizeof *c);
    if (!c) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (costs)");
    c->n_layers = info->n_layers;
    c->kv_bytes_per_token = info->kv_bytes_per_token;
    c->embed_us = info->embed_us;
    c->head_us = info->head_us;
    c->model = kvr_strdup(info->model);
    c->device = kvr_strdup(info->device);
    c->dtype = kvr_strdup(info->dtype);
    c->source = kvr_strdup(info->source);
    if (!c->model || !c->device || !c->dtype || !c->source) {
        kvr_predict_costs_destroy(c);
        return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (costs)");
    }
    *out = c;
    return KVR_OK;
}

void kvr_predict_costs_destroy(kvr_predict_costs *c) {
    if (!c) return;
    free(c->model);
    free(c->device);
    free(c->dtype);
    free(c->source);
    free(c->links);
    free(c);
}

kvr_status kvr_predict_costs_set_fit(kvr_predict_costs *c, const kvr_predict_fit *f,
                                     kvr_error *err) {
    if (!c || !f) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "costs: NULL argument");
    KVR_TRY(predict_fit_check(f, "costs: fit", err));
    c->fit[f->op] = *f;
    c->has[f->op] = true;
    return KVR_OK;
}

kvr_status kvr_predict_costs_set_overhead(kvr_predict_costs *c, kvr_mode mode, double run_us,
                                          double layer_us, kvr_error *err) {
    if (!c) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "costs: NULL argument");
    if ((int)mode < 0 || mode >= KVR_MODE_COUNT)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "costs: unknown schedule %d", (int)mode);
    if (!isfinite(run_us) || run_us < 0 || !isfinite(layer_us) || layer_us < 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "costs: overheads.%s: run_us and layer_us must be finite and >= 0 "
                             "(got %g, %g)",
                             kvr_mode_name(mode), run_us, layer_us);
    c->ovh[mode] = (kvr_search_overhead){run_us, layer_us};
    c->has_ovh = true;
    return KVR_OK;
}

kvr_search_overhead kvr_predict_costs_overhead(const kvr_predict_costs *c, kvr_mode mode) {
    if (!c || (int)mode < 0 || mode >= KVR_MODE_COUNT) return (kvr_search_overhead){0, 0};
    return c->ovh[mode];
}

bool kvr_predict_costs_has_overheads(const kvr_predict_costs *c) {
    return c && c->has_ovh;
}

kvr_status kvr_predict_costs_set_scale(kvr_predict_costs *c, kvr_mode mode, double scale,
                                       int64_t upto_tokens, kvr_error *err) {
    if (!c) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "costs: NULL argument");
    if ((int)mode < 0 || mode >= KVR_MODE_COUNT)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "costs: unknown schedule %d", (int)mode);
    if (!isfinite(scale) || scale < KVR_PREDICT_SCALE_MIN || scale > KVR_PREDICT_SCALE_MAX)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "costs: scale.%s must be a number in [%g, %g] (got %g)",
                             kvr_mode_name(mode), KVR_PREDICT_SCALE_MIN, KVR_PREDICT_SCALE_MAX,
                             scale);
    if (upto_tokens < 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "costs: scale_upto.%s must be >= 0 tokens (got %lld)",
                             kvr_mode_name(mode), (long long)upto_tokens);
    if (!c->has_scale)
        for (int md = 0; md < KVR_MODE_COUNT; md++) c->scale[md] = 1, c->scale_upto[md] = 0;
    c->scale[mode] = scale;
    c->scale_upto[mode] = upto_tokens;
    c->has_scale = true;
    return KVR_OK;
}

double kvr_predict_costs_scale(const kvr_predict_costs *c, kvr_mode mode, int64_t n_tokens,
                               int64_t *upto) {
    if (upto) *upto = 0;
    if (!c || !c->has_scale || (int)mode < 0 || mode >= KVR_MODE_COUNT) return 1;
    if (upto) *upto = c->scale_upto[mode];
    if (n_tokens > 0 && c->scale_upto[mode] > 0 && n_tokens > c->scale_upto[mode]) return 1;
    return c->scale[mode];
}

kvr_status kvr_predict_costs_set_link_fit(kvr_predict_costs *c, int src, int dst,
                                          const kvr_predict_fit *f, kvr_error *err) {
    if (!c || !f) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "costs: NULL argument");
    KVR_TRY(predict_fit_check(f, "costs: link fit", err));
    if (f->op != KVR_OP_LINK)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "costs: link %d->%d: fit is for op %s",
                             src, dst, kvr_op_name(f->op));
    if (src < 0 || dst < 0 || src == dst || src >= 65536 || dst >= 65536)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "costs: bad link %d->%d", src, dst);
    for (int i = 0; i < c->n_links; i++)
        if (c->links[i].src == src && c->links[i].dst == dst) {
            c->links[i].fit = *f;
            return KVR_OK;
        }
    predict_link_entry *nl = realloc(c->links, (size_t)(c->n_links + 1) * sizeof *nl);
    if (!nl) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (costs)");
    c->links = nl;
    c->links[c->n_links].src = src;
    c->links[c->n_links].dst = dst;
    c->links[c->n_links].fit = *f;
    c->n_links++;
    return KVR_OK;
}

const kvr_predict_fit *kvr_predict_costs_fit(const kvr_predict_costs *c, kvr_op op) {
    if (!c || (unsigned)op >= KVR_OP_COUNT || !c->has[op]) return NULL;
    return &c->fit[op];
}

// ----------------------------------------------------------------------------
// to the search module

typedef struct fit_src {
    kvr_predict_fit pre, attn, post;
} fit_src;

static double fit_pre_us(const void *ctx, int64_t c) {
    double v = kvr_predict_fit_eval(&((const fit_src *)ctx)->pre, (double)c, 0);
    return v > 0 ? v : 0;
}
static double fit_post_us(const void *ctx, int64_t c) {
    double v = kvr_predict_fit_eval(&((const fit_src *)ctx)->post, (double)c, 0);
    return v > 0 ? v : 0;
}
static double fit_attn_us(const void *ctx, int64_t c, int64_t prefix) {
    double v = kvr_predict_fit_eval(&((const fit_src *)ctx)->attn, (double)c, (double)prefix);
    return v > 0 ? v : 0;
}
/* c queries against k fully visible keys: the attention form without the causal c^2/2 */
static double fit_attn_block_us(const void *ctx, int64_t c, int64_t k) {
    const double *a = ((const fit_src *)ctx)->attn.coef;
    double dc = (double)c, dk = (double)k;
    double v = a[0] + a[1] * dc + a[2] * dk + a[3] * dc * dk;
    return v > 0 ? v : 0;
}

typedef struct link_src {
    bool has_dflt;
    kvr_predict_fit dflt;
    int n;
    predict_link_entry *links; /* owned */
} link_src;

static void link_src_free(void *ctx) {
    link_src *L = ctx;
    if (!L) return;
    free(L->links);
    free(L);
}

static double link_src_time(const void *ctx, const kvr_search_link *l, double bytes) {
    const link_src *L = ctx;
    const kvr_predict_fit *f = L->has_dflt ? &L->dflt : NULL;
    for (int i = 0; i < L->n; i++)
        if (L->links[i].src == l->src && L->links[i].dst == l->dst) {
            f = &L->links[i].fit;
            break;
        }
    double v = f ? kvr_predict_fit_eval(f, bytes, 0)
                 : l->alpha_us + (l->gbps > 0 ? bytes / (l->gbps * 1000.0) : 0.0);
    return v > 0 ? v : 0;
}

static bool fit_is_line(const kvr_predict_fit *f) {
    return f->n_breaks == 0 && f->form != KVR_PREDICT_FORM_ATTN && f->coef[0] >= 0 &&
           f->coef[1] >= 0;
}

/* Nominal alpha/bandwidth of a link fit: its last (largest-message) piece. */
static kvr_search_link link_nominal(const kvr_predict_fit *f, int src, int dst) {
    kvr_search_link l = {src, dst, 0, 0};
    double s, a;
    if (f->form == KVR_PREDICT_FORM_SEGMENTS) {
        a = f->coef[2 * f->n_breaks];
        s = f->coef[2 * f->n_breaks + 1];
    } else {
        s = f->coef[1 + f->n_breaks];
        double x0 = f->n_breaks ? f->breaks[f->n_breaks - 1] : 0;
        a = kvr_predict_fit_eval(f, x0, 0) - s * x0;
    }
    l.alpha_us = a > 0 ? a : 0;
    l.gbps = s > 0 ? 1.0 / (s * 1000.0) : 0;
    return l;
}

/* Classifies the fits: compute linear (one piece, coefficients >= 0) and links plain. */
static kvr_status costs_classify(const kvr_predict_costs *c, bool ideal_links, bool *linear,
                                 bool *links_plain, double *head, kvr_error *err) {
    const kvr_op need[] = {KVR_OP_PRE, KVR_OP_ATTN, KVR_OP_POST};
    for (int i = 0; i < 3; i++)
        if (!c->has[need[i]])
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "costs: no %s fit (pre, attn and post are required)",
                                 kvr_op_name(need[i]));
    if (!c->has[KVR_OP_LINK] && c->n_links == 0 && !ideal_links)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "costs: no link fit (fit the transfers, or ask for ideal links)");
    const kvr_predict_fit *att = &c->fit[KVR_OP_ATTN];
    *head = c->head_us;
    if (c->has[KVR_OP_HEAD]) {
        *head = kvr_predict_fit_eval(&c->fit[KVR_OP_HEAD], 1, 0);
        if (!(*head > 0)) *head = 0;
    }
    bool lp = !c->has[KVR_OP_LINK] || fit_is_line(&c->fit[KVR_OP_LINK]);
    for (int i = 0; i < c->n_links; i++) lp = lp && fit_is_line(&c->links[i].fit);
    bool an = true;
    for (int j = 0; j < 4; j++) an = an && att->coef[j] >= 0;
    *linear = fit_is_line(&c->fit[KVR_OP_PRE]) &&
              fit_is_line(&c->fit[KVR_OP_POST]) && an;
    *links_plain = lp;
    return KVR_OK;
}

static cJSON *costs_link_obj(const kvr_search_link *l, bool ends) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    if (ends) {
        cJSON_AddNumberToObject(o, "src", l->src);
        cJSON_AddNumberToObject(o, "dst", l->dst);
    }
    predict_json_add_num(o, "alpha_us", l->alpha_us);
    predict_json_add_num(o, "gbps", l->gbps);
    return o;
}

/* The search module's JSON cost file for linear compute fits (links: nominal numbers). */
static cJSON *costs_search_doc(const kvr_predict_costs *c, bool ideal_links, double head) {
    const kvr_predict_fit *pre = &c->fit[KVR_OP_PRE], *att = &c->fit[KVR_OP_ATTN],
                          *post = &c->fit[KVR_OP_POST];
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    if (c->model[0]) cJSON_AddStringToObject(o, "model", c->model);
    if (c->device[0]) cJSON_AddStringToObject(o, "device", c->device);
    if (c->dtype[0]) cJSON_AddStringToObject(o, "dtype", c->dtype);
    char src[600];
    snprintf(src, sizeof src, "%s%sfitted costs (kvr predictor)", c->source,
             c->source[0] ? ": " : "");
    cJSON_AddStringToObject(o, "source", src);
    cJSON_AddNumberToObject(o, "layers", c->n_layers);
    predict_json_add_num(o, "kv_bytes_per_token", c->kv_bytes_per_token);
    predict_json_add_num(o, "embed_us", c->embed_us);
    predict_json_add_num(o, "head_us", head);
    cJSON *p = cJSON_AddObjectToObject(o, "pre");
    if (p) {
        predict_json_add_num(p, "k_us", pre->coef[0]);
        predict_json_add_num(p, "per_token_us", pre->coef[1]);
    }
    cJSON *a = cJSON_AddObjectToObject(o, "attn");
    if (a) {
        predict_json_add_num(a, "k_us", att->coef[0]);
        predict_json_add_num(a, "per_token_us", att->coef[1]);
        predict_json_add_num(a, "per_prefix_us", att->coef[2]);
        predict_json_add_num(a, "per_area_us", att->coef[3]);
    }
    cJSON *q = cJSON_AddObjectToObject(o, "post");
    if (q) {
        predict_json_add_num(q, "k_us", post->coef[0]);
        predict_json_add_num(q, "per_token_us", post->coef[1]);
    }
    if (c->has[KVR_OP_LINK]) {
        kvr_search_link d = link_nominal(&c->fit[KVR_OP_LINK], -1, -1);
        cJSON_AddItemToObject(o, "link", costs_link_obj(&d, false));
    } else if (ideal_links && c->n_links == 0) {
        kvr_search_link d = {-1, -1, 0, 0};
        cJSON_AddItemToObject(o, "link", costs_link_obj(&d, false));
    }
    if (c->n_links > 0) {
        cJSON *ls = cJSON_AddArrayToObject(o, "links");
        for (int i = 0; ls && i < c->n_links; i++) {
            kvr_search_link l = link_nominal(&c->links[i].fit, c->links[i].src, c->links[i].dst);
            cJSON_AddItemToArray(ls, costs_link_obj(&l, true));
        }
    }
    if (c->has_ovh) cJSON_AddItemToObject(o, "overheads", predict_overheads_json(c));
    return o;
}

/* Writes a search cost file; see kvr_predict.h. */
kvr_status kvr_predict_costs_to_search_json(const kvr_predict_costs *c, bool ideal_links,
                                            char **out, kvr_error *err) {
    if (!c || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "costs: NULL argument");
    bool linear, links_plain;
    double head;
    KVR_TRY(costs_classify(c, ideal_links, &linear, &links_plain, &head, err));
    if (!linear || !links_plain)
        return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                             "costs: %s piecewise (or has a negative coefficient): the search "
                             "cost-file format holds single lines only; use "
                             "kvr_predict_costs_to_search",
                             !linear ? "a compute fit is" : "a link fit is");
    return predict_json_finish(costs_search_doc(c, ideal_links, head), out, err);
}

/* Builds the search cost model; see kvr_predict.h. */
kvr_status kvr_predict_costs_to_search(const kvr_predict_costs *c, bool ideal_links,
                                       kvr_search_costs **out, kvr_error *err) {
    if (!c || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "costs: NULL argument");
    bool linear, links_plain;
    double head;
    KVR_TRY(costs_classify(c, ideal_links, &linear, &links_plain, &head, err));
    kvr_search_costs *m = NULL;
    kvr_status s;
    if (linear) {
        /* the search module's own linear model, through its cost-file parser: coefficients,
         * links and provenance exactly as a hand-written cost file would give them */
        char *text;
        KVR_TRY(predict_json_finish(costs_search_doc(c, ideal_links, head), &text, err));
        s = kvr_search_costs_parse_json(text, strlen(text), "fitted costs", &m, err);
        free(text);
        if (s != KVR_OK) return kvr_error_prefix(err, "costs");
    } else {
        fit_src *fs = malloc(sizeof *fs);
        if (!fs) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (costs)");
        fs->pre = c->fit[KVR_OP_PRE];
        fs->attn = c->fit[KVR_OP_ATTN];
        fs->post = c->fit[KVR_OP_POST];
        kvr_search_cost_ops ops;
        memset(&ops, 0, sizeof ops);
        ops.kind = "fit";
        ops.pre_us = fit_pre_us;
        ops.attn_us = fit_attn_us;
        ops.post_us = fit_post_us;
        ops.attn_block_us = fit_attn_block_us;
        ops.destroy = free;
        char src[600];
        snprintf(src, sizeof src, "%s%sfitted costs (kvr predictor, piecewise)", c->source,
                 c->source[0] ? ": " : "");
        kvr_search_cost_info info;
        memset(&info, 0, sizeof info);
        info.n_layers = c->n_layers;
        info.kv_bytes_per_token = c->kv_bytes_per_token;
        info.embed_us = c->embed_us;
        info.head_us = head;
        info.source = src;
        bool has_dflt = c->has[KVR_OP_LINK] || c->n_links == 0;
        kvr_search_link dflt = {-1, -1, 0, 0};
        if (c->has[KVR_OP_LINK]) dflt = link_nominal(&c->fit[KVR_OP_LINK], -1, -1);
        s = kvr_search_costs_create(&ops, fs, &info, &dflt, &m, err); /* fs owned from here */
        if (s != KVR_OK) return s;
        if (c->n_links > 0) {
            kvr_search_link *ls = malloc((size_t)c->n_links * sizeof *ls);
            if (!ls) {
                kvr_search_costs_destroy(m);
                return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (costs)");
            }
            for (int i = 0; i < c->n_links; i++)
                ls[i] = link_nominal(&c->links[i].fit, c->links[i].src, c->links[i].dst);
            s = kvr_search_costs_set_links(m, has_dflt ? &dflt : NULL, ls, c->n_links, err);
            free(ls);
            if (s != KVR_OK) {
                kvr_search_costs_destroy(m);
                return kvr_error_prefix(err, "costs: fitted links");
            }
        }
    }
    for (int md = 0; !linear && c->has_ovh && md < KVR_MODE_COUNT; md++) {
        s = kvr_search_costs_set_overhead(m, (kvr_mode)md, c->ovh[md].run_us,
                                          c->ovh[md].layer_us, "fitted costs", err);
        if (s != KVR_OK) {
            kvr_search_costs_destroy(m);
            return s;
        }
    }
    if (!links_plain) {
        link_src *L = calloc(1, sizeof *L);
        if (L && c->n_links > 0) {
            L->links = malloc((size_t)c->n_links * sizeof *L->links);
            if (!L->links) {
                free(L);
                L = NULL;
            }
        }
        if (!L) {
            kvr_search_costs_destroy(m);
            return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (costs)");
        }
        L->has_dflt = c->has[KVR_OP_LINK];
        if (L->has_dflt) L->dflt = c->fit[KVR_OP_LINK];
        L->n = c->n_links;
        if (c->n_links) memcpy(L->links, c->links, (size_t)c->n_links * sizeof *L->links);
        s = kvr_search_costs_set_link_time(m, link_src_time, L, link_src_free,
                                           "fitted piecewise link curves", err);
        if (s != KVR_OK) {
            kvr_search_costs_destroy(m);
            return s;
        }
    }
    *out = m;
    return KVR_OK;
}

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
    KVR_TRY(kvr_predict_costs_to_search(&tmp, ideal, out, err));
    /* ring's merges: the embedding rate per row, as the profile source models them
     * (docs/search.md) */
    if (c->has[KVR_OP_EMBED]) {
        double e = kvr_predict_fit_eval(&c->fit[KVR_OP_EMBED], 1024.0, 0) / 1024.0;
        kvr_status s = kvr_search_costs_set_merge(*out, 0, e > 0 && isfinite(e) ? e : 0,
                                                  "modelled: the fitted embedding rate per row",
                                                  err);
        if (s != KVR_OK) {
            kvr_search_costs_destroy(*out);
            *out = NULL;
            return s;
        }
    }
    return KVR_OK;
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
    /* the schedule's end-to-end scale (kvr_predict_costs_set_scale; 1 when none) */
    if (st == KVR_OK) {
        const kvr_mode md = s == KVR_STRATEGY_SINGLE ? KVR_MODE_SINGLE
                            : s == KVR_STRATEGY_TSP  ? KVR_MODE_TSP
                            : s == KVR_STRATEGY_RING ? KVR_MODE_RING
                                                     : KVR_MODE_KVR;
        *ttft_us *= kvr_predict_costs_scale(c, md, C, NULL);
    }
    return st;
}
