/* costs_json.c -- the cost-model object: the linear coefficient source, the custom-source hook
 * (kvr_search_cost_ops), links and the all-gather override, and the JSON cost-file parser.
 *
 * The parser is strict where a typo would silently change results (every coefficient is
 * required, unknown keys inside "pre"/"attn"/"post"/"link"/"links"/"allgather" are errors) and
 * lenient at the top level, where unknown keys are reported through kvr_log and ignored so
 * richer files stay loadable. Schema: docs/search.md. */
#include "search_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define COSTS_MAX_FILE_BYTES (16u << 20)


// ----------------------------------------------------------------------------
// the linear source

static double lin_pre_us(const void *ctx, int64_t c) {
    const kvr_search_coeffs *co = ctx;
    return co->pre_k_us + co->pre_per_token_us * (double)c;
}
static double lin_post_us(const void *ctx, int64_t c) {
    const kvr_search_coeffs *co = ctx;
    return co->post_k_us + co->post_per_token_us * (double)c;
}
static double lin_attn_us(const void *ctx, int64_t c, int64_t prefix) {
    const kvr_search_coeffs *co = ctx;
    double dc = (double)c, dp = (double)prefix;
    return co->attn_k_us + co->attn_per_token_us * dc + co->attn_per_prefix_us * dp +
           co->attn_per_area_us * (dc * dp + 0.5 * dc * dc);
}
static double lin_block_us(const void *ctx, int64_t c, int64_t k) {
    const kvr_search_coeffs *co = ctx;
    double dc = (double)c, dk = (double)k;
    return co->attn_k_us + co->attn_per_token_us * dc + co->attn_per_prefix_us * dk +
           co->attn_per_area_us * dc * dk;
}

static const kvr_search_cost_ops lin_ops = {
    .kind = "json",
    .pre_us = lin_pre_us,
    .attn_us = lin_attn_us,
    .post_us = lin_post_us,
    .attn_block_us = lin_block_us,
    .destroy = NULL,
};

static bool costs_nonneg_finite(double x) {
    return isfinite(x) && x >= 0;
}

/* The largest value any cost number may take (us, bytes per token, GB/s): 1e12 us is 11.6
 * days per token or per prompt, beyond anything measured, and keeps every price the search
 * forms (a coefficient times up to 2^80 token-squared area, summed over layers and ranks)
 * finite. Larger numbers overflow to infinity and leave the search nothing to choose. */
#define COSTS_MAX_VALUE 1e12

static kvr_status costs_check_link(const kvr_search_link *l, const char *what, kvr_error *err) {
    if (!costs_nonneg_finite(l->alpha_us))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: alpha_us must be >= 0, got %g", what,
                             l->alpha_us);
    if (!costs_nonneg_finite(l->gbps))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "%s: gbps must be >= 0 (0 = no bandwidth term), got %g", what,
                             l->gbps);
    return KVR_OK;
}

static kvr_status costs_alloc(kvr_search_costs **out, kvr_error *err) {
    kvr_search_costs *m = calloc(1, sizeof *m);
    if (!m) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (cost model)");
    m->source = kvr_strdup("");
    m->model_name = kvr_strdup("");
    m->device = kvr_strdup("");
    m->dtype = kvr_strdup("");
    if (!m->source || !m->model_name || !m->device || !m->dtype) {
        kvr_search_costs_destroy(m);
        return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (cost model)");
    }
    *out = m;
    return KVR_OK;
}

static kvr_status costs_set_str(char **dst, const char *s, kvr_error *err) {
    char *d = kvr_strdup(s ? s : "");
    if (!d) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (cost model)");
    kvr_utf8_sanitize(d); /* names from a file reach JSON exports: valid UTF-8 only */
    free(*dst);
    *dst = d;
    return KVR_OK;
}

/* Creates a linear model from coefficients; see kvr_search.h. */
kvr_status kvr_search_costs_create_linear(const kvr_search_coeffs *co, const kvr_search_link *link,
                                          kvr_search_costs **out, kvr_error *err) {
    if (!co || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "costs: NULL argument");
    if (co->n_layers < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "costs: layers must be >= 1, got %d",
                             co->n_layers);
    const double vals[] = {co->kv_bytes_per_token, co->embed_us, co->head_us, co->pre_k_us,
                           co->pre_per_token_us, co->attn_k_us, co->attn_per_token_us,
                           co->attn_per_prefix_us, co->attn_per_area_us, co->post_k_us,
                           co->post_per_token_us};
    static const char *const names[] = {
        "kv_bytes_per_token", "embed_us",           "head_us",          "pre.k_us",
        "pre.per_token_us",   "attn.k_us",          "attn.per_token_us", "attn.per_prefix_us",
        "attn.per_area_us",   "post.k_us",          "post.per_token_us"};
    _Static_assert(sizeof vals / sizeof vals[0] == sizeof names / sizeof names[0], "names");
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        if (!costs_nonneg_finite(vals[i]) || vals[i] > COSTS_MAX_VALUE)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "costs: %s must be finite and in [0, %g], got %g", names[i],
                                 COSTS_MAX_VALUE, vals[i]);
    if (link) KVR_TRY(costs_check_link(link, "costs: link", err));
    kvr_search_costs *m;
    KVR_TRY(costs_alloc(&m, err));
    m->co = *co;
    m->is_linear = true;
    m->ops = lin_ops;
    m->ctx = &m->co;
    m->n_layers = co->n_layers;
    m->kv_bytes_per_token = co->kv_bytes_per_token;
    m->embed_us = co->embed_us;
    m->head_us = co->head_us;
    m->has_dflt = true;
    if (link) m->dflt = *link;
    m->dflt.src = m->dflt.dst = -1;
    *out = m;
    return KVR_OK;
}

/* Creates a model over a custom source; see kvr_search.h. */
kvr_status kvr_search_costs_create(const kvr_search_cost_ops *ops, void *ctx,
                                   const kvr_search_cost_info *info, const kvr_search_link *link,
                                   kvr_search_costs **out, kvr_error *err) {
    kvr_status s = KVR_OK;
    if (!ops || !info || !out || !ops->pre_us || !ops->attn_us || !ops->post_us)
        s = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                          "costs: ops, info, out and ops->pre_us/attn_us/post_us are required");
    else if (info->n_layers < 1)
        s = kvr_error_set(err, KVR_ERR_INVALID_ARG, "costs: layers must be >= 1, got %d",
                          info->n_layers);
    else if (!costs_nonneg_finite(info->kv_bytes_per_token) ||
             !costs_nonneg_finite(info->embed_us) || !costs_nonneg_finite(info->head_us))
        s = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                          "costs: kv_bytes_per_token, embed_us and head_us must be >= 0");
    else if (link)
        s = costs_check_link(link, "costs: link", err);
    kvr_search_costs *m = NULL;
    if (s == KVR_OK) s = costs_alloc(&m, err);
    if (s == KVR_OK && info->source) s = costs_set_str(&m->source, info->source, err);
    if (s != KVR_OK) {
        kvr_search_costs_destroy(m);
        if (ops && ops->destroy && ctx) ops->destroy(ctx);
        return s;
    }
    m->ops = *ops;
    if (!m->ops.kind) m->ops.kind = "custom";
    m->ctx = ctx;
    m->owns_ctx = ops->destroy != NULL;
    m->n_layers = info->n_layers;
    m->kv_bytes_per_token = info->kv_bytes_per_token;
    m->embed_us = info->embed_us;
    m->head_us = info->head_us;
    m->has_dflt = true;
    if (link) m->dflt = *link;
    m->dflt.src = m->dflt.dst = -1;
    *out = m;
    return KVR_OK;
}

/* Frees the model (and the source's ctx when it owns it). NULL is a no-op. */
void kvr_search_costs_destroy(kvr_search_costs *m) {
    if (!m) return;
    if (m->owns_ctx && m->ops.destroy) m->ops.destroy(m->ctx);
    free(m->source);
    free(m->model_name);
    free(m->device);
    free(m->dtype);
    free(m->links);
    free(m->links_source);
    search_costs_clear_link_time(m);
    free(m);
}

/* Releases the link-time source, if any. */
void search_costs_clear_link_time(kvr_search_costs *m) {
    if (m->link_destroy && m->link_ctx) m->link_destroy(m->link_ctx);
    free(m->link_name);
    m->link_fn = NULL;
    m->link_ctx = NULL;
    m->link_destroy = NULL;
    m->link_name = NULL;
}

/* Installs (or removes) a custom link-time source; see kvr_search.h. */
kvr_status kvr_search_costs_set_link_time(kvr_search_costs *m, kvr_search_link_time_fn fn,
                                          void *ctx, void (*destroy)(void *ctx), const char *name,
                                          kvr_error *err) {
    if (!m) {
        if (destroy && ctx) destroy(ctx);
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "link time: NULL model");
    }
    char *nm = NULL;
    if (fn && name && !(nm = kvr_strdup(name))) {
        if (destroy && ctx) destroy(ctx);
        return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (link time)");
    }
    search_costs_clear_link_time(m);
    if (!fn) {
        if (destroy && ctx) destroy(ctx);
        return KVR_OK;
    }
    m->link_fn = fn;
    m->link_ctx = ctx;
    m->link_destroy = destroy;
    m->link_name = nm;
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// links

/* Replaces the links after validating them; see kvr_search.h. */
kvr_status kvr_search_costs_set_links(kvr_search_costs *m, const kvr_search_link *dflt,
                                      const kvr_search_link *links, int n, kvr_error *err) {
    if (!m || n < 0 || (n > 0 && !links))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "links: bad arguments");
    if (!dflt && n == 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "links: neither a default link nor any listed link");
    if (dflt) KVR_TRY(costs_check_link(dflt, "link", err));
    int n_dev = 0;
    for (int i = 0; i < n; i++) {
        char what[48];
        snprintf(what, sizeof what, "links[%d]", i);
        const kvr_search_link *l = &links[i];
        if (l->src < 0 || l->dst < 0 || l->src >= SEARCH_MAX_DEVICES ||
            l->dst >= SEARCH_MAX_DEVICES)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "%s: src and dst must be in [0, %d), got %d->%d", what,
                                 SEARCH_MAX_DEVICES, l->src, l->dst);
        if (l->src == l->dst)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: self-link %d->%d", what, l->src,
                                 l->dst);
        KVR_TRY(costs_check_link(l, what, err));
        for (int j = 0; j < i; j++)
            if (links[j].src == l->src && links[j].dst == l->dst)
                return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                     "%s: duplicate link %d->%d (also links[%d])", what, l->src,
                                     l->dst, j);
        n_dev = KVR_MAX(n_dev, KVR_MAX(l->src, l->dst) + 1);
    }
    if (!dflt) {
        /* every chain link i -> i+1 must be there, or rank counts up to n_dev cannot run */
        for (int d = 0; d + 1 < n_dev; d++) {
            bool found = false;
            for (int i = 0; i < n && !found; i++) found = links[i].src == d && links[i].dst == d + 1;
            if (!found)
                return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                     "links: chain link %d->%d is missing (%d devices listed; "
                                     "without a default \"link\" every i->i+1 must be given)",
                                     d, d + 1, n_dev);
        }
    }
    kvr_search_link *copy = NULL;
    if (n > 0) {
        copy = malloc((size_t)n * sizeof *copy);
        if (!copy) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (links)");
        memcpy(copy, links, (size_t)n * sizeof *copy);
    }
    free(m->links);
    search_costs_clear_link_time(m); /* the curves described the old links */
    m->links = copy;
    m->n_links = n;
    m->n_devices = n_dev;
    m->has_dflt = dflt != NULL;
    if (dflt) {
        m->dflt = *dflt;
        m->dflt.src = m->dflt.dst = -1;
    }
    return KVR_OK;
}

/* Overrides alpha and/or gbps of every link; see kvr_search.h. */
kvr_status kvr_search_costs_override_links(kvr_search_costs *m, double alpha_us, double gbps,
                                           kvr_error *err) {
    if (!m) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "links: NULL model");
    if (!isfinite(alpha_us) || !isfinite(gbps))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "links: override must be finite");
    for (int i = -1; i < m->n_links; i++) {
        kvr_search_link *l = i < 0 ? &m->dflt : &m->links[i];
        if (alpha_us >= 0) l->alpha_us = alpha_us;
        if (gbps >= 0) l->gbps = gbps;
    }
    search_costs_clear_link_time(m); /* uniform numbers replace any fitted link curves */
    m->links_overridden = true;
    m->ovr_alpha_us = alpha_us;
    m->ovr_gbps = gbps;
    return KVR_OK;
}

/* Sets or removes the TSP all-gather model; see kvr_search.h. */
kvr_status kvr_search_costs_set_allgather(kvr_search_costs *m, double alpha_us, double busbw_gbps,
                                          kvr_error *err) {
    if (!m) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "allgather: NULL model");
    if (busbw_gbps < 0) {
        m->has_allgather = false;
        return KVR_OK;
    }
    if (!costs_nonneg_finite(alpha_us) || !isfinite(busbw_gbps))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "allgather: alpha_us and busbw_gbps must be finite and >= 0");
    m->has_allgather = true;
    m->ag_alpha_us = alpha_us;
    m->ag_busbw_gbps = busbw_gbps;
    return KVR_OK;
}

/* Sets the ring merge cost; see kvr_search.h. */
kvr_status kvr_search_costs_set_merge(kvr_search_costs *m, double k_us, double per_row_us,
                                      const char *how, kvr_error *err) {
    if (!m) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "merge: NULL model");
    if (!costs_nonneg_finite(k_us) || !costs_nonneg_finite(per_row_us))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "merge: k_us and per_row_us must be finite and >= 0");
    m->merge_k_us = k_us;
    m->merge_per_row_us = per_row_us;
    snprintf(m->merge_how, sizeof m->merge_how, "%s", how ? how : "given");
    return KVR_OK;
}

double kvr_search_costs_merge_us(const kvr_search_costs *m, int64_t rows) {
    return rows > 0 ? m->merge_k_us + m->merge_per_row_us * (double)rows : 0;
}

/* Sets a schedule's fixed overheads; see kvr_search.h. */
kvr_status kvr_search_costs_set_overhead(kvr_search_costs *m, kvr_mode mode, double run_us,
                                         double layer_us, const char *how, kvr_error *err) {
    if (!m) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "overheads: NULL model");
    if ((int)mode < 0 || mode >= KVR_MODE_COUNT)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "overheads: unknown schedule %d",
                             (int)mode);
    if (!isfinite(run_us) || run_us < 0 || !isfinite(layer_us) || layer_us < 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "overheads.%s: run_us and layer_us must be finite and >= 0 (got %g, "
                             "%g)",
                             kvr_mode_name(mode), run_us, layer_us);
    m->ovh[mode] = (kvr_search_overhead){run_us, layer_us};
    snprintf(m->ovh_how, sizeof m->ovh_how, "%s", how ? how : "given");
    return KVR_OK;
}

kvr_search_overhead kvr_search_costs_overhead(const kvr_search_costs *m, kvr_mode mode) {
    if (!m || (int)mode < 0 || mode >= KVR_MODE_COUNT) return (kvr_search_overhead){0, 0};
    return m->ovh[mode];
}

/* Sets the serving decode step; see kvr_search.h. */
kvr_status kvr_search_costs_set_decode_step(kvr_search_costs *m, const kvr_search_decode_step *d,
                                            const char *how, kvr_error *err) {
    if (!m || !d) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "decode_step: NULL argument");
    const double v[3] = {d->k_us, d->per_seq_us, d->per_ctx_token_us};
    for (int i = 0; i < 3; i++)
        if (!isfinite(v[i]) || v[i] < 0)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "decode_step: k_us, per_seq_us and per_ctx_token_us must be "
                                 "finite and >= 0 (got %g, %g, %g)",
                                 v[0], v[1], v[2]);
    if (v[0] + v[1] + v[2] <= 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "decode_step: all three terms are 0");
    m->decode = *d;
    snprintf(m->decode_how, sizeof m->decode_how, "%s", how && *how ? how : "given");
    return KVR_OK;
}

bool kvr_search_costs_decode_step(const kvr_search_costs *m, kvr_search_decode_step *out,
                                  const char **how) {
    if (!m || !m->decode_how[0]) return false;
    if (out) *out = m->decode;
    if (how) *how = m->decode_how;
    return true;
}

/* Sets the host tier's copy rate; see kvr_search.h. */
kvr_status kvr_search_costs_set_host_copy(kvr_search_costs *m, double bytes_per_us, const char *how,
                                          kvr_error *err) {
    if (!m) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "host_copy: NULL argument");
    if (!isfinite(bytes_per_us) || bytes_per_us <= 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "host_copy: the rate must be finite and > 0 bytes/us (got %g)",
                             bytes_per_us);
    m->host_copy_bpus = bytes_per_us;
    snprintf(m->host_copy_how, sizeof m->host_copy_how, "%s", how && *how ? how : "given");
    return KVR_OK;
}

bool kvr_search_costs_host_copy(const kvr_search_costs *m, double *bytes_per_us, const char **how) {
    if (!m || !m->host_copy_how[0]) return false;
    if (bytes_per_us) *bytes_per_us = m->host_copy_bpus;
    if (how) *how = m->host_copy_how;
    return true;
}

static const char *const ovh_ops[KVR_MODE_COUNT] = {"ovh_single", "ovh_kvr", "ovh_tsp",
                                                     "ovh_ring"};

const char *kvr_search_overhead_op(kvr_mode mode) {
    return (int)mode >= 0 && mode < KVR_MODE_COUNT ? ovh_ops[mode] : NULL;
}

bool kvr_search_overhead_op_parse(const char *op, kvr_mode *mode) {
    for (int md = 0; op && md < KVR_MODE_COUNT; md++)
        if (!strcmp(op, ovh_ops[md])) {
            if (mode) *mode = (kvr_mode)md;
            return true;
        }
    return false;
}

/* Fits run_us + layer_us * layers; see kvr_search.h. */
kvr_status kvr_search_overhead_fit(const int *n_layers, const double *excess_us, int n,
                                   kvr_search_overhead *out, bool *clamped, kvr_error *err) {
    if (!n_layers || !excess_us || !out || n < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "overheads: need at least one sample");
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int i = 0; i < n; i++) {
        if (n_layers[i] < 1 || !isfinite(excess_us[i]))
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "overheads: sample %d has %d layers and excess %g us (need >= 1 "
                                 "layer and a finite excess)",
                                 i, n_layers[i], excess_us[i]);
        const double x = n_layers[i], y = excess_us[i];
        sx += x;
        sy += y;
        sxx += x * x;
        sxy += x * y;
    }
    const double mx = sx / n, my = sy / n, vxx = sxx / n - mx * mx;
    double layer = 0, run = my;
    if (vxx > 1e-12 * (mx * mx + 1)) { /* two or more layer counts */
        layer = (sxy / n - mx * my) / vxx;
        run = my - layer * mx;
    }
    bool cl = false;
    if (layer < 0) { /* per-layer term over-predicted: a constant only */
        layer = 0;
        run = my;
        cl = true;
    }
    if (run < 0) { /* per-run term over-predicted: through the origin */
        run = 0;
        layer = sxx > 0 ? sxy / sxx : 0;
        cl = true;
        if (layer < 0) layer = 0;
    }
    out->run_us = run;
    out->layer_us = layer;
    if (clamped) *clamped = cl;
    return KVR_OK;
}

/* Looks up src -> dst: an explicit link first, then the default. */
bool search_costs_link_find(const kvr_search_costs *m, int src, int dst, kvr_search_link *out) {
    for (int i = 0; i < m->n_links; i++)
        if (m->links[i].src == src && m->links[i].dst == dst) {
            *out = m->links[i];
            return true;
        }
    if (m->has_dflt) {
        *out = m->dflt;
        out->src = src;
        out->dst = dst;
        return true;
    }
    return false;
}

/* Ring block cost through the optional callback or its documented fallback. */
double search_costs_block_us(const kvr_search_costs *m, int64_t c, int64_t k) {
    if (m->ops.attn_block_us) return m->ops.attn_block_us(m->ctx, c, k);
    double v = m->ops.attn_us(m->ctx, c, k) - m->ops.attn_us(m->ctx, c, 0);
    return v > 0 ? v : 0;
}

// ----------------------------------------------------------------------------
// accessors

int kvr_search_costs_n_layers(const kvr_search_costs *m) {
    return m->n_layers;
}
int kvr_search_costs_max_ranks(const kvr_search_costs *m) {
    if (m->has_dflt) return INT32_MAX;
    return m->n_devices > 0 ? m->n_devices : 1;
}
const char *kvr_search_costs_source(const kvr_search_costs *m) {
    return m->source;
}
const char *kvr_search_costs_kind(const kvr_search_costs *m) {
    return m->ops.kind ? m->ops.kind : "custom";
}
const char *kvr_search_costs_model_name(const kvr_search_costs *m) {
    return m->model_name;
}
double kvr_search_costs_kv_bytes_per_token(const kvr_search_costs *m) {
    return m->kv_bytes_per_token;
}
double kvr_search_costs_embed_us(const kvr_search_costs *m) {
    return m->embed_us;
}
double kvr_search_costs_head_us(const kvr_search_costs *m) {
    return m->head_us;
}
double kvr_search_costs_pre_us(const kvr_search_costs *m, int64_t c) {
    return m->ops.pre_us(m->ctx, c);
}
double kvr_search_costs_attn_us(const kvr_search_costs *m, int64_t c, int64_t prefix) {
    return m->ops.attn_us(m->ctx, c, prefix);
}
double kvr_search_costs_post_us(const kvr_search_costs *m, int64_t c) {
    return m->ops.post_us(m->ctx, c);
}
kvr_status kvr_search_costs_link_us(const kvr_search_costs *m, int src, int dst, double bytes,
                                    double *out_us, kvr_error *err) {
    kvr_search_link l;
    if (!search_costs_link_find(m, src, dst, &l))
        return kvr_error_set(err, KVR_ERR_NOT_FOUND, "no link %d->%d in the cost model", src,
                             dst);
    *out_us = search_link_time_us(m, &l, bytes);
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// JSON parsing

typedef struct costs_parse {
    const char *name; /* file name for messages */
    kvr_error *err;
} costs_parse;

/* A required (or optional, when *present is non-NULL) non-negative finite number. */
static kvr_status costs_get_num(costs_parse *cp, const cJSON *obj, const char *prefix,
                                const char *key, double *out, bool *present) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (present) *present = it != NULL;
    if (!it) {
        if (present) return KVR_OK;
        return kvr_error_set(cp->err, KVR_ERR_FORMAT, "%s: field \"%s%s\" is missing", cp->name,
                             prefix, key);
    }
    if (!cJSON_IsNumber(it))
        return kvr_error_set(cp->err, KVR_ERR_FORMAT, "%s: field \"%s%s\" must be a number, got %s",
                             cp->name, prefix, key,
                             cJSON_IsString(it)   ? "a string"
                             : cJSON_IsBool(it)   ? "a boolean"
                             : cJSON_IsNull(it)   ? "null"
                             : cJSON_IsArray(it)  ? "an array"
                             : cJSON_IsObject(it) ? "an object"
                                                  : "something else");
    double v = it->valuedouble;
    if (!isfinite(v))
        return kvr_error_set(cp->err, KVR_ERR_FORMAT, "%s: field \"%s%s\" is not finite", cp->name,
                             prefix, key);
    if (v < 0)
        return kvr_error_set(cp->err, KVR_ERR_FORMAT,
                             "%s: field \"%s%s\" must be >= 0 (costs cannot be negative), got %g",
                             cp->name, prefix, key, v);
    if (v > COSTS_MAX_VALUE)
        return kvr_error_set(cp->err, KVR_ERR_FORMAT,
                             "%s: field \"%s%s\" is %g, larger than %g: a cost that large "
                             "overflows the search (docs/search.md)",
                             cp->name, prefix, key, v, COSTS_MAX_VALUE);
    *out = v;
    return KVR_OK;
}

static kvr_status costs_get_int(costs_parse *cp, const cJSON *obj, const char *prefix,
                                const char *key, int lo, int hi, int *out) {
    double v;
    KVR_TRY(costs_get_num(cp, obj, prefix, key, &v, NULL));
    if (v != floor(v) || v < lo || v > hi)
        return kvr_error_set(cp->err, KVR_ERR_FORMAT,
                             "%s: field \"%s%s\" must be an integer in [%d, %d], got %g", cp->name,
                             prefix, key, lo, hi, v);
    *out = (int)v;
    return KVR_OK;
}

/* Fails on a key that appears twice in obj (JSON allows it; the reader would silently keep the
 * first). */
static kvr_status costs_check_dups(costs_parse *cp, const cJSON *obj, const char *prefix) {
    for (const cJSON *it = obj->child; it; it = it->next)
        for (const cJSON *jt = it->next; jt; jt = jt->next)
            if (it->string && jt->string && !strcmp(it->string, jt->string))
                return kvr_error_set(cp->err, KVR_ERR_FORMAT, "%s: duplicate field \"%s%s\"",
                                     cp->name, prefix, it->string);
    return KVR_OK;
}

/* Fails on keys of obj outside allowed (NULL-terminated) and on duplicate keys. */
static kvr_status costs_check_keys(costs_parse *cp, const cJSON *obj, const char *prefix,
                                   const char *const *allowed) {
    KVR_TRY(costs_check_dups(cp, obj, prefix));
    for (const cJSON *it = obj->child; it; it = it->next) {
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++) ok = strcmp(it->string, *a) == 0;
        if (!ok)
            return kvr_error_set(cp->err, KVR_ERR_FORMAT,
                                 "%s: unknown field \"%s%s\" (expected one of the documented "
                                 "fields; see docs/search.md)",
                                 cp->name, prefix, it->string);
    }
    return KVR_OK;
}

/* The object root[key], named `whole` in messages ("overheads.kvr"), with only allowed keys. */
static kvr_status costs_get_obj_in(costs_parse *cp, const cJSON *root, const char *key,
                                   const char *whole, const char *const *allowed,
                                   const cJSON **out) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!o)
        return kvr_error_set(cp->err, KVR_ERR_FORMAT, "%s: object \"%s\" is missing", cp->name,
                             whole);
    if (!cJSON_IsObject(o))
        return kvr_error_set(cp->err, KVR_ERR_FORMAT, "%s: \"%s\" must be an object", cp->name,
                             whole);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s.", whole);
    KVR_TRY(costs_check_keys(cp, o, prefix, allowed));
    *out = o;
    return KVR_OK;
}

static kvr_status costs_get_obj(costs_parse *cp, const cJSON *root, const char *key,
                                const char *const *allowed, const cJSON **out) {
    return costs_get_obj_in(cp, root, key, key, allowed, out);
}

static kvr_status costs_parse_link(costs_parse *cp, const cJSON *o, const char *what,
                                   bool with_ends, kvr_search_link *l) {
    static const char *const k_plain[] = {"alpha_us", "gbps", NULL};
    static const char *const k_ends[] = {"src", "dst", "alpha_us", "gbps", NULL};
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s.", what);
    if (!cJSON_IsObject(o))
        return kvr_error_set(cp->err, KVR_ERR_FORMAT, "%s: \"%s\" must be an object", cp->name,
                             what);
    KVR_TRY(costs_check_keys(cp, o, prefix, with_ends ? k_ends : k_plain));
    memset(l, 0, sizeof *l);
    l->src = l->dst = -1;
    if (with_ends) {
        KVR_TRY(costs_get_int(cp, o, prefix, "src", 0, SEARCH_MAX_DEVICES - 1, &l->src));
        KVR_TRY(costs_get_int(cp, o, prefix, "dst", 0, SEARCH_MAX_DEVICES - 1, &l->dst));
    }
    KVR_TRY(costs_get_num(cp, o, prefix, "alpha_us", &l->alpha_us, NULL));
    KVR_TRY(costs_get_num(cp, o, prefix, "gbps", &l->gbps, NULL));
    return KVR_OK;
}

/* Parse "link" and/or "links" of obj and install them into m (model unchanged on failure). */
static kvr_status costs_parse_links(costs_parse *cp, const cJSON *link_o, const cJSON *links_a,
                                    kvr_search_costs *m) {
    if (!link_o && !links_a)
        return kvr_error_set(cp->err, KVR_ERR_FORMAT,
                             "%s: neither \"link\" (uniform) nor \"links\" (per link) is given",
                             cp->name);
    kvr_search_link dflt;
    if (link_o) KVR_TRY(costs_parse_link(cp, link_o, "link", false, &dflt));
    int n = 0;
    kvr_search_link *ls = NULL;
    if (links_a) {
        if (!cJSON_IsArray(links_a))
            return kvr_error_set(cp->err, KVR_ERR_FORMAT, "%s: \"links\" must be an array",
                                 cp->name);
        n = cJSON_GetArraySize(links_a);
        if (n == 0 && !link_o)
            return kvr_error_set(cp->err, KVR_ERR_FORMAT,
                                 "%s: \"links\" is empty and there is no default \"link\"",
                                 cp->name);
        if (n > SEARCH_MAX_DEVICES * 4)
            return kvr_error_set(cp->err, KVR_ERR_FORMAT, "%s: \"links\" has too many entries (%d)",
                                 cp->name, n);
        if (n > 0) {
            ls = calloc((size_t)n, sizeof *ls);
            if (!ls) return kvr_error_set(cp->err, KVR_ERR_NOMEM, "out of memory (links)");
        }
        int i = 0;
        for (const cJSON *it = links_a->child; it; it = it->next, i++) {
            char what[32];
            snprintf(what, sizeof what, "links[%d]", i);
            kvr_status s = costs_parse_link(cp, it, what, true, &ls[i]);
            if (s != KVR_OK) {
                free(ls);
                return s;
            }
        }
    }
    kvr_status s = kvr_search_costs_set_links(m, link_o ? &dflt : NULL, ls, n, cp->err);
    free(ls);
    if (s != KVR_OK) {
        /* set_links speaks of "links[i]"; name the file too */
        kvr_error_prefix(cp->err, "%s", cp->name);
        cp->err->code = KVR_ERR_FORMAT;
        return KVR_ERR_FORMAT;
    }
    return KVR_OK;
}

static kvr_status costs_parse_error(costs_parse *cp, const char *text, size_t len,
                                    const char *end) {
    size_t pos = end && end >= text ? (size_t)(end - text) : 0;
    if (pos > len) pos = len;
    int line = 1, col = 1;
    for (size_t i = 0; i < pos; i++) {
        if (text[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    return kvr_error_set(cp->err, KVR_ERR_FORMAT, "%s: not valid JSON (error near line %d, column %d)",
                         cp->name, line, col);
}

static kvr_status costs_from_json(costs_parse *cp, const cJSON *root, kvr_search_costs **out) {
    static const char *const k_pre[] = {"k_us", "per_token_us", NULL};
    static const char *const k_attn[] = {"k_us", "per_token_us", "per_prefix_us", "per_area_us",
                                         NULL};
    static const char *const k_ag[] = {"alpha_us", "busbw_gbps", NULL};
    static const char *const k_merge[] = {"k_us", "per_row_us", NULL};
    static const char *const k_top[] = {"layers", "kv_bytes_per_token", "embed_us", "head_us",
                                        "pre", "attn", "post", "link", "links", "allgather",
                                        "merge", "overheads", "decode_step", "host_copy_gbps", "host_copy_notes",
                                        "model",
                                        "device", "dtype",
                                        "source", "notes", "decode_notes",
                                        "comment", NULL};
    if (!cJSON_IsObject(root))
        return kvr_error_set(cp->err, KVR_ERR_FORMAT, "%s: the top level must be a JSON object",
                             cp->name);
    for (const cJSON *it = root->child; it; it = it->next) {
        bool ok = false;
        for (const char *const *a = k_top; *a && !ok; a++) ok = strcmp(it->string, *a) == 0;
        if (!ok) kvr_log(KVR_LOG_WARN, "%s: ignoring unknown field \"%s\"", cp->name, it->string);
    }
    KVR_TRY(costs_check_dups(cp, root, ""));
    kvr_search_coeffs co;
    memset(&co, 0, sizeof co);
    KVR_TRY(costs_get_int(cp, root, "", "layers", 1, 100000, &co.n_layers));
    KVR_TRY(costs_get_num(cp, root, "", "kv_bytes_per_token", &co.kv_bytes_per_token, NULL));
    KVR_TRY(costs_get_num(cp, root, "", "embed_us", &co.embed_us, NULL));
    KVR_TRY(costs_get_num(cp, root, "", "head_us", &co.head_us, NULL));
    const cJSON *o;
    KVR_TRY(costs_get_obj(cp, root, "pre", k_pre, &o));
    KVR_TRY(costs_get_num(cp, o, "pre.", "k_us", &co.pre_k_us, NULL));
    KVR_TRY(costs_get_num(cp, o, "pre.", "per_token_us", &co.pre_per_token_us, NULL));
    KVR_TRY(costs_get_obj(cp, root, "attn", k_attn, &o));
    KVR_TRY(costs_get_num(cp, o, "attn.", "k_us", &co.attn_k_us, NULL));
    KVR_TRY(costs_get_num(cp, o, "attn.", "per_token_us", &co.attn_per_token_us, NULL));
    KVR_TRY(costs_get_num(cp, o, "attn.", "per_prefix_us", &co.attn_per_prefix_us, NULL));
    KVR_TRY(costs_get_num(cp, o, "attn.", "per_area_us", &co.attn_per_area_us, NULL));
    KVR_TRY(costs_get_obj(cp, root, "post", k_pre, &o));
    KVR_TRY(costs_get_num(cp, o, "post.", "k_us", &co.post_k_us, NULL));
    KVR_TRY(costs_get_num(cp, o, "post.", "per_token_us", &co.post_per_token_us, NULL));

    bool has_ag = false;
    double ag_alpha = 0, ag_bw = 0;
    const cJSON *ag = cJSON_GetObjectItemCaseSensitive(root, "allgather");
    if (ag) {
        KVR_TRY(costs_get_obj(cp, root, "allgather", k_ag, &o));
        KVR_TRY(costs_get_num(cp, o, "allgather.", "alpha_us", &ag_alpha, NULL));
        KVR_TRY(costs_get_num(cp, o, "allgather.", "busbw_gbps", &ag_bw, NULL));
        if (ag_bw <= 0)
            return kvr_error_set(cp->err, KVR_ERR_FORMAT,
                                 "%s: field \"allgather.busbw_gbps\" must be > 0", cp->name);
        has_ag = true;
    }
    double mg_k = 0, mg_row = 0;
    const bool has_mg = cJSON_GetObjectItemCaseSensitive(root, "merge") != NULL;
    if (has_mg) {
        KVR_TRY(costs_get_obj(cp, root, "merge", k_merge, &o));
        KVR_TRY(costs_get_num(cp, o, "merge.", "k_us", &mg_k, NULL));
        KVR_TRY(costs_get_num(cp, o, "merge.", "per_row_us", &mg_row, NULL));
    }
    kvr_search_overhead ovh[KVR_MODE_COUNT];
    memset(ovh, 0, sizeof ovh);
    const bool has_ovh = cJSON_GetObjectItemCaseSensitive(root, "overheads") != NULL;
    if (has_ovh) {
        static const char *const k_modes[] = {"single", "kvr", "tsp", "ring", NULL};
        static const char *const k_ovh[] = {"run_us", "layer_us", NULL};
        const cJSON *ov;
        KVR_TRY(costs_get_obj(cp, root, "overheads", k_modes, &ov));
        for (int md = 0; md < KVR_MODE_COUNT; md++) {
            const char *name = kvr_mode_name((kvr_mode)md);
            if (!cJSON_GetObjectItemCaseSensitive(ov, name)) continue;
            char pfx[32];
            snprintf(pfx, sizeof pfx, "overheads.%s.", name);
            const cJSON *one;
            char whole[32];
            snprintf(whole, sizeof whole, "overheads.%s", name);
            KVR_TRY(costs_get_obj_in(cp, ov, name, whole, k_ovh, &one));
            bool there; /* each term optional: absent = 0 */
            KVR_TRY(costs_get_num(cp, one, pfx, "run_us", &ovh[md].run_us, &there));
            KVR_TRY(costs_get_num(cp, one, pfx, "layer_us", &ovh[md].layer_us, &there));
        }
    }
    kvr_search_decode_step dstep = {0, 0, 0};
    const bool has_dstep = cJSON_GetObjectItemCaseSensitive(root, "decode_step") != NULL;
    if (has_dstep) {
        static const char *const k_ds[] = {"k_us", "per_seq_us", "per_ctx_token_us", NULL};
        KVR_TRY(costs_get_obj(cp, root, "decode_step", k_ds, &o));
        KVR_TRY(costs_get_num(cp, o, "decode_step.", "k_us", &dstep.k_us, NULL));
        KVR_TRY(costs_get_num(cp, o, "decode_step.", "per_seq_us", &dstep.per_seq_us, NULL));
        KVR_TRY(costs_get_num(cp, o, "decode_step.", "per_ctx_token_us", &dstep.per_ctx_token_us,
                              NULL));
        if (dstep.k_us + dstep.per_seq_us + dstep.per_ctx_token_us <= 0)
            return kvr_error_set(cp->err, KVR_ERR_FORMAT,
                                 "%s: \"decode_step\" has all three terms 0", cp->name);
    }
    double host_gbps = 0;
    bool has_host = false;
    KVR_TRY(costs_get_num(cp, root, "", "host_copy_gbps", &host_gbps, &has_host));
    if (has_host && host_gbps <= 0)
        return kvr_error_set(cp->err, KVR_ERR_FORMAT, "%s: field \"host_copy_gbps\" must be > 0",
                             cp->name);
    const char *strs[4] = {NULL, NULL, NULL, NULL};
    static const char *const str_keys[4] = {"model", "device", "dtype", "source"};
    for (int i = 0; i < 4; i++) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, str_keys[i]);
        if (!s) continue;
        if (!cJSON_IsString(s))
            return kvr_error_set(cp->err, KVR_ERR_FORMAT, "%s: field \"%s\" must be a string",
                                 cp->name, str_keys[i]);
        strs[i] = s->valuestring;
    }

    kvr_search_costs *m;
    KVR_TRY(kvr_search_costs_create_linear(&co, NULL, &m, cp->err));
    kvr_status s = costs_parse_links(cp, cJSON_GetObjectItemCaseSensitive(root, "link"),
                                     cJSON_GetObjectItemCaseSensitive(root, "links"), m);
    if (s == KVR_OK && has_ag) s = kvr_search_costs_set_allgather(m, ag_alpha, ag_bw, cp->err);
    if (s == KVR_OK && has_mg)
        s = kvr_search_costs_set_merge(m, mg_k, mg_row, "cost file", cp->err);
    for (int md = 0; has_ovh && s == KVR_OK && md < KVR_MODE_COUNT; md++)
        s = kvr_search_costs_set_overhead(m, (kvr_mode)md, ovh[md].run_us, ovh[md].layer_us,
                                          "cost file", cp->err);
    if (s == KVR_OK && has_dstep) {
        char how[160];
        snprintf(how, sizeof how, "cost file %s", cp->name);
        s = kvr_search_costs_set_decode_step(m, &dstep, how, cp->err);
    }
    if (s == KVR_OK && has_host) {
        char how[160];
        snprintf(how, sizeof how, "cost file %s", cp->name);
        s = kvr_search_costs_set_host_copy(m, host_gbps * 1000.0, how, cp->err);
    }
    if (s == KVR_OK) s = costs_set_str(&m->source, strs[3] ? strs[3] : cp->name, cp->err);
    if (s == KVR_OK && strs[0]) s = costs_set_str(&m->model_name, strs[0], cp->err);
    if (s == KVR_OK && strs[1]) s = costs_set_str(&m->device, strs[1], cp->err);
    if (s == KVR_OK && strs[2]) s = costs_set_str(&m->dtype, strs[2], cp->err);
    if (s != KVR_OK) {
        kvr_search_costs_destroy(m);
        return s;
    }
    *out = m;
    return KVR_OK;
}

/* Parses a cost file held in memory; see kvr_search.h. */
kvr_status kvr_search_costs_parse_json(const char *text, size_t len, const char *name,
                                       kvr_search_costs **out, kvr_error *err) {
    if (!out || (!text && len))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "costs: NULL argument");
    kvr_error local;
    costs_parse cp = {name ? name : "costs", err ? err : &local};
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text ? text : "", len, &end, false);
    if (!root) return costs_parse_error(&cp, text, len, end);
    /* trailing garbage after the object is an error too */
    size_t pos = (size_t)(end - text);
    while (pos < len && (text[pos] == ' ' || text[pos] == '\n' || text[pos] == '\r' ||
                         text[pos] == '\t' || text[pos] == '\0'))
        pos++;
    kvr_status s;
    if (pos < len)
        s = costs_parse_error(&cp, text, len, text + pos);
    else
        s = costs_from_json(&cp, root, out);
    cJSON_Delete(root);
    return s;
}

static kvr_status costs_read_file(const char *path, char **text, size_t *len, kvr_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return kvr_error_set(err, KVR_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fclose(f);
        return kvr_error_set(err, KVR_ERR_IO, "%s: is a directory, not a cost file", path);
    }
    kvr_status s = kvr_read_stream(f, path, COSTS_MAX_FILE_BYTES, text, len, err);
    fclose(f);
    if (s == KVR_ERR_FORMAT)
        return kvr_error_set(err, s, "%s: larger than %u MiB, not a cost file", path,
                             COSTS_MAX_FILE_BYTES >> 20);
    return s;
}

/* Loads a cost file; see kvr_search.h. */
kvr_status kvr_search_costs_load_json(const char *path, kvr_search_costs **out, kvr_error *err) {
    if (!path || !out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "costs: NULL argument");
    char *text;
    size_t len;
    KVR_TRY(costs_read_file(path, &text, &len, err));
    kvr_status s = kvr_search_costs_parse_json(text, len, path, out, err);
    free(text);
    if (s == KVR_OK) {
        /* the source is the path, unless the file names its own provenance */
        if (strcmp((*out)->source, path) != 0) {
            char buf[1024];
            snprintf(buf, sizeof buf, "%s (%s)", path, (*out)->source);
            s = costs_set_str(&(*out)->source, buf, err);
        }
        if (s != KVR_OK) kvr_search_costs_destroy(*out);
    }
    return s;
}

/* Replaces the links from a links file; see kvr_search.h. */
kvr_status kvr_search_costs_load_links_json(kvr_search_costs *m, const char *path,
                                            kvr_error *err) {
    if (!m || !path) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "links: NULL argument");
    char *text;
    size_t len;
    KVR_TRY(costs_read_file(path, &text, &len, err));
    kvr_error local;
    costs_parse cp = {path, err ? err : &local};
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    kvr_status s;
    if (!root) {
        s = costs_parse_error(&cp, text, len, end);
    } else if (cJSON_IsArray(root)) {
        s = costs_parse_links(&cp, NULL, root, m);
    } else if (cJSON_IsObject(root)) {
        static const char *const k_lf[] = {"link", "links", "comment", "notes", NULL};
        s = costs_check_keys(&cp, root, "", k_lf);
        if (s == KVR_OK)
            s = costs_parse_links(&cp, cJSON_GetObjectItemCaseSensitive(root, "link"),
                                  cJSON_GetObjectItemCaseSensitive(root, "links"), m);
    } else {
        s = kvr_error_set(cp.err, KVR_ERR_FORMAT,
                          "%s: expected an array of links or an object with \"links\"", path);
    }
    cJSON_Delete(root);
    free(text);
    if (s == KVR_OK) {
        char *d = kvr_strdup(path);
        if (!d) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory");
        free(m->links_source);
        m->links_source = d;
    }
    return s;
}

// ----------------------------------------------------------------------------
// description for exports

static cJSON *costs_link_json(const kvr_search_link *l, bool with_ends) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    if (with_ends) {
        cJSON_AddNumberToObject(o, "src", l->src);
        cJSON_AddNumberToObject(o, "dst", l->dst);
    }
    cJSON_AddNumberToObject(o, "alpha_us", l->alpha_us);
    cJSON_AddNumberToObject(o, "gbps", l->gbps);
    return o;
}

/* Describes the model as JSON (what a reader needs to reproduce the table). */
cJSON *search_costs_describe_json(const kvr_search_costs *m) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "kind", m->ops.kind ? m->ops.kind : "custom");
    cJSON_AddStringToObject(o, "source", m->source);
    if (m->model_name[0]) cJSON_AddStringToObject(o, "model", m->model_name);
    if (m->device[0]) cJSON_AddStringToObject(o, "device", m->device);
    if (m->dtype[0]) cJSON_AddStringToObject(o, "dtype", m->dtype);
    cJSON_AddNumberToObject(o, "layers", m->n_layers);
    cJSON_AddNumberToObject(o, "kv_bytes_per_token", m->kv_bytes_per_token);
    cJSON_AddNumberToObject(o, "embed_us", m->embed_us);
    cJSON_AddNumberToObject(o, "head_us", m->head_us);
    if (m->is_linear) {
        cJSON *p = cJSON_AddObjectToObject(o, "pre");
        if (p) {
            cJSON_AddNumberToObject(p, "k_us", m->co.pre_k_us);
            cJSON_AddNumberToObject(p, "per_token_us", m->co.pre_per_token_us);
        }
        cJSON *a = cJSON_AddObjectToObject(o, "attn");
        if (a) {
            cJSON_AddNumberToObject(a, "k_us", m->co.attn_k_us);
            cJSON_AddNumberToObject(a, "per_token_us", m->co.attn_per_token_us);
            cJSON_AddNumberToObject(a, "per_prefix_us", m->co.attn_per_prefix_us);
            cJSON_AddNumberToObject(a, "per_area_us", m->co.attn_per_area_us);
        }
        cJSON *q = cJSON_AddObjectToObject(o, "post");
        if (q) {
            cJSON_AddNumberToObject(q, "k_us", m->co.post_k_us);
            cJSON_AddNumberToObject(q, "per_token_us", m->co.post_per_token_us);
        }
    }
    if (m->has_dflt) {
        cJSON_AddItemToObject(o, "link", costs_link_json(&m->dflt, false));
    } else {
        cJSON_AddNullToObject(o, "link");
    }
    cJSON *ls = cJSON_AddArrayToObject(o, "links");
    for (int i = 0; ls && i < m->n_links; i++)
        cJSON_AddItemToArray(ls, costs_link_json(&m->links[i], true));
    if (m->links_source) cJSON_AddStringToObject(o, "links_source", m->links_source);
    if (m->link_fn)
        cJSON_AddStringToObject(o, "link_time", m->link_name ? m->link_name : "custom");
    if (m->links_overridden) {
        cJSON *ov = cJSON_AddObjectToObject(o, "link_override");
        if (ov) {
            if (m->ovr_alpha_us >= 0) cJSON_AddNumberToObject(ov, "alpha_us", m->ovr_alpha_us);
            if (m->ovr_gbps >= 0) cJSON_AddNumberToObject(ov, "gbps", m->ovr_gbps);
        }
    } else {
        cJSON_AddNullToObject(o, "link_override");
    }
    if (m->has_allgather) {
        cJSON *ag = cJSON_AddObjectToObject(o, "allgather");
        if (ag) {
            cJSON_AddStringToObject(ag, "model", "alpha-busbw");
            cJSON_AddNumberToObject(ag, "alpha_us", m->ag_alpha_us);
            cJSON_AddNumberToObject(ag, "busbw_gbps", m->ag_busbw_gbps);
        }
    } else {
        cJSON *ag = cJSON_AddObjectToObject(o, "allgather");
        if (ag) cJSON_AddStringToObject(ag, "model", "ring-over-links");
    }
    if (m->merge_how[0]) {
        cJSON *mg = cJSON_AddObjectToObject(o, "merge");
        if (mg) {
            cJSON_AddNumberToObject(mg, "k_us", m->merge_k_us);
            cJSON_AddNumberToObject(mg, "per_row_us", m->merge_per_row_us);
            cJSON_AddStringToObject(mg, "source", m->merge_how);
        }
    } else {
        cJSON_AddNullToObject(o, "merge");
    }
    if (m->ovh_how[0]) {
        cJSON *ov = cJSON_AddObjectToObject(o, "overheads");
        for (int md = 0; ov && md < KVR_MODE_COUNT; md++) {
            cJSON *one = cJSON_AddObjectToObject(ov, kvr_mode_name((kvr_mode)md));
            if (!one) continue;
            cJSON_AddNumberToObject(one, "run_us", m->ovh[md].run_us);
            cJSON_AddNumberToObject(one, "layer_us", m->ovh[md].layer_us);
        }
        if (ov) cJSON_AddStringToObject(ov, "source", m->ovh_how);
    } else {
        cJSON_AddNullToObject(o, "overheads");
    }
    if (m->decode_how[0]) {
        cJSON *ds = cJSON_AddObjectToObject(o, "decode_step");
        if (ds) {
            cJSON_AddNumberToObject(ds, "k_us", m->decode.k_us);
            cJSON_AddNumberToObject(ds, "per_seq_us", m->decode.per_seq_us);
            cJSON_AddNumberToObject(ds, "per_ctx_token_us", m->decode.per_ctx_token_us);
            cJSON_AddStringToObject(ds, "source", m->decode_how);
        }
    } else {
        cJSON_AddNullToObject(o, "decode_step");
    }
    if (m->host_copy_how[0]) {
        cJSON *hc = cJSON_AddObjectToObject(o, "host_copy");
        if (hc) {
            cJSON_AddNumberToObject(hc, "gbps", m->host_copy_bpus / 1000.0);
            cJSON_AddStringToObject(hc, "source", m->host_copy_how);
        }
    } else {
        cJSON_AddNullToObject(o, "host_copy");
    }
    return o;
}

/* One line describing the links, for '#' headers. */
void search_costs_describe_links(const kvr_search_costs *m, char *buf, size_t n) {
    int off = 0;
    if (n == 0) return;
    buf[0] = 0;
    if (m->has_dflt)
        off = snprintf(buf, n, "default %g us + %g GB/s", m->dflt.alpha_us, m->dflt.gbps);
    if (m->n_links > 0 && off >= 0 && (size_t)off < n) {
        double bw_lo = m->links[0].gbps, bw_hi = bw_lo;
        for (int i = 1; i < m->n_links; i++) {
            bw_lo = KVR_MIN(bw_lo, m->links[i].gbps);
            bw_hi = KVR_MAX(bw_hi, m->links[i].gbps);
        }
        snprintf(buf + off, n - (size_t)off, "%s%d listed links (%g..%g GB/s)%s%s",
                 off ? "; " : "", m->n_links, bw_lo, bw_hi, m->links_source ? " from " : "",
                 m->links_source ? m->links_source : "");
    }
    if (m->link_fn) {
        size_t l = strlen(buf);
        if (l < n)
            snprintf(buf + l, n - l, "; link times: %s", m->link_name ? m->link_name : "custom");
    }
    if (m->links_overridden) {
        size_t l = strlen(buf);
        char a[40] = "", g[40] = "";
        if (m->ovr_alpha_us >= 0) snprintf(a, sizeof a, " alpha %g us", m->ovr_alpha_us);
        if (m->ovr_gbps >= 0) snprintf(g, sizeof g, " %g GB/s", m->ovr_gbps);
        if (l < n) snprintf(buf + l, n - l, " (override:%s%s)", a, g);
    }
}

void kvr_search_costs_links_text(const kvr_search_costs *m, char *buf, size_t len) {
    search_costs_describe_links(m, buf, len);
}

kvr_status kvr_search_costs_set_names(kvr_search_costs *m, const char *model, const char *device,
                                      const char *dtype, kvr_error *err) {
    if (!m) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "costs: NULL model");
    if (model) KVR_TRY(costs_set_str(&m->model_name, model, err));
    if (device) KVR_TRY(costs_set_str(&m->device, device, err));
    if (dtype) KVR_TRY(costs_set_str(&m->dtype, dtype, err));
    return KVR_OK;
}
