/* sched.c -- the serving scheduler (kvr_serving.h): request queue, paged KV pool accounting in
 * layer blocks, and the vllm / chunked / layerkv policies, shared by the engine and the serving
 * simulator. What vLLM's V0 scheduler does and where we differ: docs/serving.md ("The
 * scheduler"); layerkv's rules: docs/serving.md ("LayerKV"). */
#include "kvr_serving.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const policy_names[KVR_POLICY_COUNT] = {"vllm", "chunked", "layerkv"};
static const char *const reload_names[KVR_RELOAD_COUNT] = {"swap", "stream"};

const char *kvr_serving_policy_name(kvr_serving_policy p) {
    return p >= 0 && p < KVR_POLICY_COUNT ? policy_names[p] : "?";
}

kvr_status kvr_serving_policy_parse(const char *s, kvr_serving_policy *out, kvr_error *err) {
    for (int i = 0; s && i < KVR_POLICY_COUNT; i++)
        if (!strcmp(s, policy_names[i])) {
            *out = (kvr_serving_policy)i;
            return KVR_OK;
        }
    return kvr_error_set(err, KVR_ERR_INVALID_ARG, "unknown policy '%s' (vllm, chunked, layerkv)",
                         s ? s : "");
}

const char *kvr_reload_policy_name(kvr_reload_policy r) {
    return r >= 0 && r < KVR_RELOAD_COUNT ? reload_names[r] : "?";
}

kvr_status kvr_reload_policy_parse(const char *s, kvr_reload_policy *out, kvr_error *err) {
    for (int i = 0; s && i < KVR_RELOAD_COUNT; i++)
        if (!strcmp(s, reload_names[i])) {
            *out = (kvr_reload_policy)i;
            return KVR_OK;
        }
    return kvr_error_set(err, KVR_ERR_INVALID_ARG, "unknown reload policy '%s' (swap, stream)",
                         s ? s : "");
}

kvr_sched_params kvr_sched_params_default(void) {
    kvr_sched_params p;
    memset(&p, 0, sizeof p);
    p.policy = KVR_POLICY_VLLM;
    p.block_tokens = 16;
    p.watermark = 0.01;
    p.max_seqs = 256;
    p.layerkv.reload = KVR_RELOAD_SWAP;
    p.layerkv.calib_weight = 0.25;
    p.layerkv.min_history = 8;
    return p;
}

bool kvr_layerkv_resident(int32_t n_layers, int32_t n_resident, int32_t layer) {
    if (n_layers < 1 || n_resident < 0 || n_resident > n_layers || layer < 0 || layer >= n_layers)
        return false;
    const int64_t r = n_resident, L = n_layers, l = layer;
    return (l + 1) * r / L > l * r / L;
}

/* a double-ended queue of request ids (waiting: FCFS, preempted requests go back in front) */
typedef struct idq {
    int32_t *v;
    int32_t cap, head, n;
} idq;

/* room for at least want ids */
static bool idq_reserve(idq *q, int32_t want) {
    if (want <= q->cap) return true;
    const int32_t cap = want > INT32_MAX / 2 ? INT32_MAX : KVR_MAX(2 * want, 64);
    int32_t *v = malloc((size_t)cap * sizeof *v);
    if (!v) return false;
    for (int32_t i = 0; i < q->n; i++) v[i] = q->v[(q->head + i) % q->cap];
    free(q->v);
    q->v = v, q->cap = cap, q->head = 0;
    return true;
}
static int32_t idq_at(const idq *q, int32_t i) {
    return q->v[(q->head + i) % q->cap];
}
static void idq_push_back(idq *q, int32_t id) { /* after idq_reserve: room for it */
    q->v[(q->head + q->n++) % q->cap] = id;
}
static void idq_push_front(idq *q, int32_t id) { /* after idq_reserve */
    q->head = (q->head + q->cap - 1) % q->cap;
    q->v[q->head] = id;
    q->n++;
}
static int32_t idq_pop_front(idq *q) {
    const int32_t id = q->v[q->head];
    q->head = (q->head + 1) % q->cap;
    q->n--;
    return id;
}

struct kvr_sched {
    kvr_sched_params p;
    int32_t L;               /* layers (n_layers, 0 -> 1) */
    int64_t watermark_blocks; /* token blocks */
    int64_t wm_layer;        /* the watermark in layer blocks: watermark_blocks x L */
    int64_t dev_cap, host_cap, host_free; /* layer blocks */
    kvr_sched_req *req;
    int32_t n_req, cap_req;
    idq waiting;
    int32_t *running; /* in admission order (the priority order: preemption takes the last) */
    int32_t n_running, cap_running;
    kvr_sched_item *items;
    int32_t cap_items;
    int64_t free_blocks; /* device layer blocks free */
    int64_t iter;  /* the next iteration's number */
    bool planned;  /* an iteration is planned and not completed */
    /* time and layerkv's SLO admission */
    double now, iter_start;
    kvr_sched_predictor predict;
    void *predict_user;
    double corr;       /* measured / predicted prefill time, EWMA */
    double decode_s;   /* measured decode iteration time, EWMA (0: none yet) */
    double pred_raw;   /* the planned iteration's prefill prediction before correction */
    bool plan_decode;  /* the planned iteration decodes only */
    int64_t *hist;     /* finished requests' output tokens, ascending */
    double *hist_suf;  /* hist_suf[i] = sum of hist[i..n) */
    int64_t n_hist, cap_hist;
};

kvr_status kvr_sched_create(const kvr_sched_params *p, kvr_sched **out, kvr_error *err) {
    *out = NULL;
    if (p->policy < 0 || p->policy >= KVR_POLICY_COUNT)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "scheduler: unknown policy %d", p->policy);
    if (p->block_tokens < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "scheduler: block_tokens %d (need >= 1)",
                             p->block_tokens);
    if (p->pool_blocks < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "scheduler: pool_blocks %lld (need >= 1)",
                             (long long)p->pool_blocks);
    if (!(p->watermark >= 0 && p->watermark < 1))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "scheduler: watermark %g (need [0, 1))",
                             p->watermark);
    if (p->max_seqs < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "scheduler: max_seqs %d (need >= 1)",
                             p->max_seqs);
    if (p->max_batched_tokens < 0 || p->max_model_len < 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "scheduler: max_batched_tokens %lld, max_model_len %lld (need >= 0)",
                             (long long)p->max_batched_tokens, (long long)p->max_model_len);
    if (p->n_layers < 0 || p->n_layers > 1 << 16 || p->host_blocks < 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "scheduler: n_layers %d (need 0 to 65536), host_blocks %lld (need "
                             ">= 0)",
                             p->n_layers, (long long)p->host_blocks);
    const int32_t L = p->n_layers ? p->n_layers : 1;
    if (p->pool_blocks > INT64_MAX / p->block_tokens / L ||
        p->host_blocks > INT64_MAX / p->block_tokens / L)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "scheduler: pool of %lld blocks (host tier %lld) too large",
                             (long long)p->pool_blocks, (long long)p->host_blocks);
    if (p->policy == KVR_POLICY_LAYERKV) {
        const kvr_layerkv_params *k = &p->layerkv;
        if (!(k->slo_ttft_s > 0) || !isfinite(k->slo_ttft_s))
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "scheduler: layerkv.slo_ttft_s %g (need > 0: layerkv admits "
                                 "against the TTFT target)",
                                 k->slo_ttft_s);
        if (!(k->slo_tpot_s > 0) || !isfinite(k->slo_tpot_s))
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "scheduler: layerkv.slo_tpot_s %g (need > 0: layerkv admits "
                                 "against the decoding requests' TPOT slack)",
                                 k->slo_tpot_s);
        if (k->reload < 0 || k->reload >= KVR_RELOAD_COUNT)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG, "scheduler: layerkv.reload %d unknown",
                                 k->reload);
        if (!(k->calib_weight > 0 && k->calib_weight <= 1))
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "scheduler: layerkv.calib_weight %g (need (0, 1])",
                                 k->calib_weight);
        if (!(k->max_wait_s >= 0) || !isfinite(k->max_wait_s) || k->min_history < 0)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "scheduler: layerkv.max_wait_s %g, layerkv.min_history %d (need "
                                 ">= 0)",
                                 k->max_wait_s, k->min_history);
    }
    kvr_sched *s = calloc(1, sizeof *s);
    if (!s) return kvr_error_set(err, KVR_ERR_NOMEM, "scheduler: out of memory");
    s->p = *p;
    s->p.n_layers = s->L = L;
    if (p->policy == KVR_POLICY_LAYERKV && !p->layerkv.max_wait_s)
        s->p.layerkv.max_wait_s = p->layerkv.slo_ttft_s / 2;
    s->corr = 1;
    /* the default model length: what the pool holds (layerkv with reload stream: a request
     * with one layer resident, the rest on the host) */
    if (!s->p.max_model_len)
        s->p.max_model_len = p->pool_blocks * p->block_tokens *
                             (p->policy == KVR_POLICY_LAYERKV &&
                                      p->layerkv.reload == KVR_RELOAD_STREAM && p->host_blocks > 0
                                  ? L
                                  : 1);
    if (!s->p.max_batched_tokens)
        s->p.max_batched_tokens =
            p->policy == KVR_POLICY_CHUNKED ? 512 : KVR_MAX(s->p.max_model_len, 2048);
    s->watermark_blocks = (int64_t)(p->watermark * (double)p->pool_blocks);
    s->wm_layer = s->watermark_blocks * L;
    s->dev_cap = s->free_blocks = p->pool_blocks * L;
    s->host_cap = s->host_free = p->policy == KVR_POLICY_LAYERKV ? p->host_blocks * L : 0;
    *out = s;
    return KVR_OK;
}

void kvr_sched_destroy(kvr_sched *s) {
    if (!s) return;
    free(s->req), free(s->waiting.v), free(s->running), free(s->items);
    free(s->hist), free(s->hist_suf);
    free(s);
}

const kvr_sched_params *kvr_sched_get_params(const kvr_sched *s) {
    return &s->p;
}

int64_t kvr_sched_blocks_for(const kvr_sched *s, int64_t tokens) {
    return KVR_CEIL_DIV(tokens, (int64_t)s->p.block_tokens);
}

static int64_t req_len(const kvr_sched_req *r) {
    return r->prompt_tokens + r->generated;
}

/* The fewest resident layers a request of `need` token blocks can have with host_layers layer
 * blocks free in the host tier (at least 1; every layer without a host tier). */
static int32_t min_resident(const kvr_sched *s, int64_t need, int64_t host_layers) {
    const int64_t off = need > 0 ? host_layers / need : s->L;
    return (int32_t)KVR_MAX((int64_t)1, (int64_t)s->L - KVR_MIN(off, (int64_t)s->L));
}

kvr_status kvr_sched_add_at(kvr_sched *s, int64_t prompt_tokens, int64_t max_output_tokens,
                            double arrival_s, int32_t *id, kvr_error *err) {
    if (prompt_tokens < 1 || max_output_tokens < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "request of %lld prompt and %lld output tokens (need >= 1 each)",
                             (long long)prompt_tokens, (long long)max_output_tokens);
    if (prompt_tokens > s->p.max_model_len - max_output_tokens)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "request of %lld prompt + %lld output tokens: more than the model "
                             "length %lld",
                             (long long)prompt_tokens, (long long)max_output_tokens,
                             (long long)s->p.max_model_len);
    /* every token but the last sampled one goes into the cache; with preemption by recompute
     * a request may need all of them at once */
    const int64_t need = kvr_sched_blocks_for(s, prompt_tokens + max_output_tokens - 1);
    const bool lkv = s->p.policy == KVR_POLICY_LAYERKV;
    /* the fewest layers it can keep resident: all, but under layerkv with reload stream (swap
     * decodes with every layer resident) what the host tier cannot take */
    const int32_t rmin = lkv && s->p.layerkv.reload == KVR_RELOAD_STREAM
                             ? min_resident(s, need, s->host_cap)
                             : s->L;
    if (need > (s->dev_cap - s->wm_layer) / rmin) {
        if (!lkv || rmin == s->L)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "request of %lld prompt + %lld output tokens needs %lld KV blocks "
                                 "of %d tokens; the pool has %lld above its watermark: it can "
                                 "never run",
                                 (long long)prompt_tokens, (long long)max_output_tokens,
                                 (long long)need, s->p.block_tokens,
                                 (long long)(s->p.pool_blocks - s->watermark_blocks));
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "request of %lld prompt + %lld output tokens needs %lld KV blocks of "
                             "%d tokens per layer; with the host tier (%lld layer blocks) taking "
                             "at most %d of its %d layers, the pool's %lld layer blocks above its "
                             "watermark hold less than its %d resident layers: it can never run",
                             (long long)prompt_tokens, (long long)max_output_tokens,
                             (long long)need, s->p.block_tokens, (long long)s->host_cap,
                             s->L - rmin, s->L, (long long)(s->dev_cap - s->wm_layer), rmin);
    }
    if (s->p.policy != KVR_POLICY_CHUNKED &&
        prompt_tokens + max_output_tokens - 1 > s->p.max_batched_tokens)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "request of %lld prompt + %lld output tokens: policy %s prefills a "
                             "request (after a preemption: with what it generated) in one "
                             "iteration of at most %lld tokens (max_batched_tokens): it could "
                             "stall; raise max_batched_tokens or use policy chunked",
                             (long long)prompt_tokens, (long long)max_output_tokens,
                             kvr_serving_policy_name(s->p.policy),
                             (long long)s->p.max_batched_tokens);
    if (s->n_req == INT32_MAX) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "too many requests");
    if (s->n_req == s->cap_req) {
        const int32_t cap = s->cap_req ? (s->cap_req > INT32_MAX / 2 ? INT32_MAX : 2 * s->cap_req)
                                       : 64;
        kvr_sched_req *r = realloc(s->req, (size_t)cap * sizeof *r);
        if (!r) return kvr_error_set(err, KVR_ERR_NOMEM, "scheduler: out of memory");
        s->req = r, s->cap_req = cap;
    }
    /* the queue holds every request at most once: room for all, so a preemption never fails */
    if (!idq_reserve(&s->waiting, s->n_req + 1)) return kvr_error_set(err, KVR_ERR_NOMEM, "scheduler: out of memory");
    kvr_sched_req *r = &s->req[s->n_req];
    memset(r, 0, sizeof *r);
    r->state = KVR_REQ_WAITING;
    r->prompt_tokens = prompt_tokens;
    r->max_output_tokens = max_output_tokens;
    r->first_iter = -1;
    r->resident = s->L;
    r->arrival_s = arrival_s;
    r->first_token_s = -1;
    idq_push_back(&s->waiting, s->n_req);
    *id = s->n_req++;
    return KVR_OK;
}

kvr_status kvr_sched_add(kvr_sched *s, int64_t prompt_tokens, int64_t max_output_tokens,
                         int32_t *id, kvr_error *err) {
    return kvr_sched_add_at(s, prompt_tokens, max_output_tokens, s->now, id, err);
}

/* n more token blocks for r: n x resident device layer blocks, the rest in the host tier */
static void blocks_take(kvr_sched *s, kvr_sched_req *r, int64_t n) {
    s->free_blocks -= n * r->resident;
    s->host_free -= n * (s->L - r->resident);
    r->blocks += n;
    if (r->blocks > r->max_blocks) r->max_blocks = r->blocks;
}

static void blocks_release(kvr_sched *s, kvr_sched_req *r) {
    s->free_blocks += r->blocks * r->resident;
    s->host_free += r->blocks * (s->L - r->resident);
    r->blocks = 0;
}

/* Preempt the lowest-priority running request (the last admitted) by recompute: its device and
 * host blocks are freed. */
static int32_t preempt_last(kvr_sched *s) {
    const int32_t id = s->running[--s->n_running];
    kvr_sched_req *r = &s->req[id];
    blocks_release(s, r);
    r->resident = s->L;
    r->computed = 0;
    r->state = KVR_REQ_WAITING;
    r->preemptions++;
    idq_push_front(&s->waiting, id); /* reserved in kvr_sched_add: room for every request */
    return id;
}

static kvr_sched_item *item_add(kvr_sched *s, kvr_sched_batch *b, int32_t id, int64_t n) {
    kvr_sched_req *r = &s->req[id];
    kvr_sched_item *it = &s->items[b->n_items++];
    it->req = id;
    it->n_past = r->computed;
    it->n_tokens = n;
    it->samples = r->computed + n == req_len(r);
    it->prefill = n > 1 || !it->samples || r->generated == 0;
    it->resident = r->resident;
    it->swap_in = false;
    b->n_tokens += n;
    if (it->prefill) b->n_prefill++;
    else b->n_decode++;
    if (r->first_iter < 0) r->first_iter = s->iter;
    return it;
}

/* A running request's next decode needs room for one more token: a new block at a block
 * boundary (its resident layers in the pool, the others in the host tier). Preempts from the
 * back until it fits; false when the request itself was preempted. */
static bool decode_room(kvr_sched *s, kvr_sched_batch *b, int32_t id) {
    kvr_sched_req *r = &s->req[id];
    const int64_t extra = kvr_sched_blocks_for(s, r->computed + 1) - r->blocks;
    while (extra * r->resident > s->free_blocks || extra * (s->L - r->resident) > s->host_free) {
        const int32_t victim = preempt_last(s);
        b->n_preempted++;
        if (victim == id) return false;
    }
    if (extra > 0) blocks_take(s, r, extra);
    return true;
}

/* Admit waiting requests in FCFS order while their whole prompt's blocks fit above the
 * watermark and max_seqs allows; each gets min(its tokens, budget left) tokens this iteration
 * (vllm: the whole prompt or nothing). budget: the tokens this iteration still has. Returns the
 * tokens used. */
static int64_t admit(kvr_sched *s, kvr_sched_batch *b, int64_t budget, bool chunk) {
    int64_t used = 0;
    while (s->waiting.n > 0 && used < budget && s->n_running < s->p.max_seqs) {
        const int32_t id = idq_at(&s->waiting, 0);
        kvr_sched_req *r = &s->req[id];
        const int64_t n = req_len(r), need = kvr_sched_blocks_for(s, n);
        if (s->free_blocks - need * s->L < s->wm_layer) break;
        if (!chunk && used + n > budget) break;
        idq_pop_front(&s->waiting);
        r->state = KVR_REQ_RUNNING;
        blocks_take(s, r, need);
        s->running[s->n_running++] = id;
        const int64_t take = KVR_MIN(n, budget - used);
        item_add(s, b, id, take);
        used += take;
    }
    return used;
}

// ----------------------------------------------------------------------------
// layerkv

static double predict(const kvr_sched *s, int64_t n, int64_t past, int32_t resident) {
    if (!s->predict) return 0;
    const double t = s->predict(s->predict_user, n, past, resident);
    return t > 0 && isfinite(t) ? t : 0;
}

/* The output-length estimator: the predicted tokens a request that generated g of at most max
 * still produces. With min_history finished requests: the mean output of the finished requests
 * longer than g, minus g; the fallback (less history, or none longer than g): max - g. Within
 * [1, max - g]. */
static int64_t remaining_tokens(const kvr_sched *s, const kvr_sched_req *r) {
    const int64_t g = r->generated, hi = r->max_output_tokens - g;
    if (hi <= 1) return 1;
    if (s->n_hist < s->p.layerkv.min_history || s->n_hist == 0) return hi;
    int64_t lo = 0, up = s->n_hist; /* first index with hist > g */
    while (lo < up) {
        const int64_t mid = lo + (up - lo) / 2;
        if (s->hist[mid] > g) up = mid;
        else lo = mid + 1;
    }
    if (lo == s->n_hist) return hi;
    const double mean = s->hist_suf[lo] / (double)(s->n_hist - lo);
    const int64_t est = (int64_t)llround(mean) - g;
    return KVR_MAX((int64_t)1, KVR_MIN(est, hi));
}

/* A finished request's output length into the history (kept sorted, with suffix sums). */
static bool hist_add(kvr_sched *s, int64_t out) {
    if (s->n_hist == s->cap_hist) {
        const int64_t cap = s->cap_hist ? 2 * s->cap_hist : 256;
        int64_t *h = realloc(s->hist, (size_t)cap * sizeof *h);
        if (!h) return false;
        s->hist = h;
        double *sf = realloc(s->hist_suf, (size_t)(cap + 1) * sizeof *sf);
        if (!sf) return false;
        s->hist_suf = sf;
        s->cap_hist = cap;
    }
    int64_t i = s->n_hist;
    while (i > 0 && s->hist[i - 1] > out) {
        s->hist[i] = s->hist[i - 1];
        s->hist_suf[i] = s->hist_suf[i - 1]; /* the same elements, one place on */
        i--;
    }
    s->hist[i] = out;
    s->hist_suf[i] = (double)out + (i + 1 <= s->n_hist ? s->hist_suf[i + 1] : 0);
    for (int64_t k = i - 1; k >= 0; k--) s->hist_suf[k] += (double)out;
    s->n_hist++;
    s->hist_suf[s->n_hist] = 0;
    return true;
}

/* The allowable prefill time: the tightest TPOT slack over the decoding requests (INFINITY when
 * none decodes). A decoding request that generated g tokens, first one at f, with e predicted
 * still to come: slo_tpot x (g - 1 + e) - (now - f) - e x decode_s. */
static double slo_budget(const kvr_sched *s) {
    double budget = INFINITY;
    const double tpot = s->p.layerkv.slo_tpot_s;
    for (int32_t i = 0; i < s->n_running; i++) {
        const kvr_sched_req *r = &s->req[s->running[i]];
        if (r->generated < 1 || r->first_token_s < 0) continue;
        const double e = (double)remaining_tokens(s, r);
        const double slack = tpot * ((double)r->generated - 1 + e) - (s->now - r->first_token_s) -
                             e * s->decode_s;
        budget = KVR_MIN(budget, slack);
    }
    return budget;
}

/* The resident layers for a prefill of n tokens (need token blocks) with avail device layer
 * blocks free above the watermark: every layer when they all fit; else the fewest, from what
 * the host tier allows, whose offload copy the predictor says the prefill hides; -1: wait (not
 * even that fits, or the host tier is too full). With nothing running the pool cannot get
 * freer: then as many layers as fit, the copy partly exposed. */
static int32_t choose_resident(const kvr_sched *s, int64_t n, int64_t need, int64_t avail) {
    if (avail < need) return -1;               /* not even one layer fits now */
    if (need * s->L <= avail) return s->L;     /* room for every layer: none offloaded */
    const int32_t fit = (int32_t)KVR_MIN(avail / need, (int64_t)s->L);
    const int32_t lo = min_resident(s, need, s->host_free);
    if (lo > fit) return -1; /* the host tier is too full to offload enough: wait */
    const double full = predict(s, n, 0, s->L);
    int32_t res = s->L;
    for (int32_t k = lo; k < s->L; k++)
        if (predict(s, n, 0, k) <= full * (1 + 1e-9)) {
            res = k;
            break;
        }
    if (res <= fit) return res;
    return s->n_running > 0 ? -1 : fit;
}

/* Admission under layerkv: FCFS, the whole prompt in one iteration (as vllm), each request with
 * the resident layers choose_resident gives, stopping at the first that does not fit or would
 * exceed the SLO budget (nothing decodes: no bound). Anti-starvation: the head of the queue,
 * once it has waited max_wait_s, is admitted past the budget -- but only as vllm would admit it,
 * every layer resident (offloading past the budget fills the pool with requests that cannot
 * decode and collapses throughput under overload: docs/serving.md). */
static void admit_layerkv(kvr_sched *s, kvr_sched_batch *b) {
    const double budget = slo_budget(s);
    const int64_t tok_budget = s->p.max_batched_tokens;
    double sum = 0, raw = 0;
    int64_t used = 0;
    while (s->waiting.n > 0 && s->n_running < s->p.max_seqs) {
        const int32_t id = idq_at(&s->waiting, 0);
        kvr_sched_req *r = &s->req[id];
        const int64_t n = req_len(r), need = kvr_sched_blocks_for(s, n);
        if (used + n > tok_budget) break;
        const int64_t avail = s->free_blocks - s->wm_layer;
        int32_t res = choose_resident(s, n, need, avail);
        if (res < 0) break;
        double t = predict(s, n, 0, res);
        if (sum + t * s->corr > budget) {
            const bool starving = s->now - r->arrival_s >= s->p.layerkv.max_wait_s;
            if (b->n_items > 0 || !starving) break;
            if (need * s->L > avail) break; /* past the budget only as vllm: all resident */
            res = s->L;
            t = predict(s, n, 0, res);
        }
        idq_pop_front(&s->waiting);
        r->state = KVR_REQ_RUNNING;
        r->resident = res;
        blocks_take(s, r, need);
        s->running[s->n_running++] = id;
        item_add(s, b, id, n);
        used += n;
        sum += t * s->corr;
        raw += t;
    }
    b->predicted_s = sum;
    s->pred_raw = raw;
}

/* layerkv decode iteration: every running request decodes; reload swap brings a request's
 * offloaded layers back first when they fit above the watermark (else it skips this iteration;
 * when nothing at all can decode, requests are preempted from the back until the first fits). */
static void decode_layerkv(kvr_sched *s, kvr_sched_batch *b) {
    const bool swap = s->p.layerkv.reload == KVR_RELOAD_SWAP;
    int32_t first_skipped = -1;
    for (int32_t i = 0; i < s->n_running; i++) {
        const int32_t id = s->running[i];
        kvr_sched_req *r = &s->req[id];
        bool swapped = false;
        if (swap && r->resident < s->L) {
            const int64_t move = r->blocks * (s->L - r->resident);
            if (s->free_blocks - move < s->wm_layer) {
                if (first_skipped < 0) first_skipped = id;
                continue;
            }
            s->free_blocks -= move, s->host_free += move;
            r->resident = s->L, r->swaps++;
            swapped = true;
        }
        if (!decode_room(s, b, id)) break; /* it was the last running request */
        kvr_sched_item *it = item_add(s, b, id, 1);
        if (swapped) it->swap_in = true, b->n_swap_in++;
    }
    if (b->n_items > 0 || first_skipped < 0) return;
    /* every running request waits for a swap-in: make room for the first */
    kvr_sched_req *r = &s->req[first_skipped];
    while (s->n_running > 1 && s->running[s->n_running - 1] != first_skipped &&
           s->free_blocks < r->blocks * (s->L - r->resident)) {
        preempt_last(s);
        b->n_preempted++;
    }
    const int64_t move = r->blocks * (s->L - r->resident);
    if (s->free_blocks < move) { /* it is the last running request: recompute it */
        preempt_last(s);
        b->n_preempted++;
        return;
    }
    s->free_blocks -= move, s->host_free += move;
    r->resident = s->L, r->swaps++;
    if (!decode_room(s, b, first_skipped)) return;
    kvr_sched_item *it = item_add(s, b, first_skipped, 1);
    it->swap_in = true, b->n_swap_in++;
}

void kvr_sched_set_predictor(kvr_sched *s, kvr_sched_predictor fn, void *user) {
    s->predict = fn, s->predict_user = user;
}

double kvr_sched_correction(const kvr_sched *s) {
    return s->corr;
}

// ----------------------------------------------------------------------------

kvr_status kvr_sched_next_at(kvr_sched *s, double now_s, kvr_sched_batch *out, kvr_error *err) {
    if (s->cap_running < s->n_req) { /* running and items: at most one entry per request */
        int32_t *run = realloc(s->running, (size_t)s->n_req * sizeof *run);
        if (run) s->running = run;
        kvr_sched_item *it = realloc(s->items, (size_t)s->n_req * sizeof *it);
        if (it) s->items = it;
        if (!run || !it) return kvr_error_set(err, KVR_ERR_NOMEM, "scheduler: out of memory");
        s->cap_running = s->cap_items = s->n_req;
    }
    if (isfinite(now_s) && now_s > s->now) s->now = now_s;
    s->iter_start = s->now;
    s->pred_raw = 0;
    kvr_sched_batch b;
    memset(&b, 0, sizeof b);
    b.iter = s->iter;
    b.items = s->items;
    const int64_t budget = s->p.max_batched_tokens;
    if (s->p.policy == KVR_POLICY_VLLM) {
        /* prefills first; an iteration that admits any runs only those */
        admit(s, &b, budget, false);
        if (b.n_items == 0)
            for (int32_t i = 0; i < s->n_running; i++) {
                const int32_t id = s->running[i];
                if (!decode_room(s, &b, id)) break; /* it was the last running request */
                item_add(s, &b, id, 1);
            }
    } else if (s->p.policy == KVR_POLICY_LAYERKV) {
        admit_layerkv(s, &b);
        if (b.n_items == 0) decode_layerkv(s, &b);
        if (b.n_items == 0 && b.n_preempted > 0) admit_layerkv(s, &b); /* what it freed */
    } else { /* chunked: running requests first (decodes, prefill chunks), then admissions */
        int64_t used = 0;
        for (int32_t i = 0; i < s->n_running && used < budget; i++) {
            const int32_t id = s->running[i];
            kvr_sched_req *r = &s->req[id];
            const int64_t left = req_len(r) - r->computed;
            if (left == 1 && !decode_room(s, &b, id)) break;
            const int64_t take = KVR_MIN(left, budget - used);
            item_add(s, &b, id, take);
            used += take;
        }
        admit(s, &b, budget - used, true); /* what the running requests left of the budget */
    }
    b.layer_blocks_used = s->dev_cap - s->free_blocks;
    b.host_layer_blocks_used = s->host_cap - s->host_free;
    b.blocks_used = KVR_CEIL_DIV(b.layer_blocks_used, (int64_t)s->L);
    s->plan_decode = b.n_prefill == 0 && b.n_decode > 0;
    s->planned = b.n_items > 0;
    if (s->planned) s->iter++;
    *out = b;
    return KVR_OK;
}

kvr_status kvr_sched_next(kvr_sched *s, kvr_sched_batch *out, kvr_error *err) {
    return kvr_sched_next_at(s, s->now, out, err);
}

kvr_status kvr_sched_complete_at(kvr_sched *s, const kvr_sched_batch *b, const bool *stop,
                                 double now_s, kvr_error *err) {
    if (!s->planned || b->items != s->items || b->iter != s->iter - 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "scheduler: iteration %lld is not the one planned last",
                             (long long)b->iter);
    s->planned = false;
    if (isfinite(now_s) && now_s > s->now) s->now = now_s;
    const double dt = s->now - s->iter_start, w = s->p.layerkv.calib_weight;
    if (s->p.policy == KVR_POLICY_LAYERKV && dt > 0) { /* calibrate on the measured time */
        if (s->pred_raw > 0) s->corr = (1 - w) * s->corr + w * dt / s->pred_raw;
        else if (s->plan_decode) s->decode_s = s->decode_s > 0 ? (1 - w) * s->decode_s + w * dt : dt;
    }
    bool any_done = false;
    for (int32_t i = 0; i < b->n_items; i++) {
        const kvr_sched_item *it = &b->items[i];
        kvr_sched_req *r = &s->req[it->req];
        r->computed += it->n_tokens;
        if (!it->samples) continue;
        r->generated++;
        if (r->first_token_s < 0) r->first_token_s = s->now;
        if (r->generated >= r->max_output_tokens || (stop && stop[i])) {
            r->state = KVR_REQ_FINISHED;
            blocks_release(s, r);
            any_done = true;
            if (!hist_add(s, r->generated))
                return kvr_error_set(err, KVR_ERR_NOMEM, "scheduler: out of memory");
        }
    }
    if (any_done) { /* drop finished requests from the running list, keeping its order */
        int32_t k = 0;
        for (int32_t i = 0; i < s->n_running; i++)
            if (s->req[s->running[i]].state == KVR_REQ_RUNNING) s->running[k++] = s->running[i];
        s->n_running = k;
    }
    return KVR_OK;
}

kvr_status kvr_sched_complete(kvr_sched *s, const kvr_sched_batch *b, const bool *stop,
                              kvr_error *err) {
    return kvr_sched_complete_at(s, b, stop, s->now, err);
}

kvr_status kvr_sched_cancel(kvr_sched *s, int32_t id, kvr_error *err) {
    if (id < 0 || id >= s->n_req || s->planned)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             s->planned ? "scheduler: cancel of request %d inside an iteration"
                                        : "scheduler: cancel of unknown request %d",
                             id);
    kvr_sched_req *r = &s->req[id];
    if (r->state == KVR_REQ_WAITING) { /* the queue without it, in order */
        const int32_t n = s->waiting.n;
        for (int32_t i = 0; i < n; i++) {
            const int32_t x = idq_pop_front(&s->waiting);
            if (x != id) idq_push_back(&s->waiting, x);
        }
    } else if (r->state == KVR_REQ_RUNNING) {
        blocks_release(s, r);
        int32_t k = 0;
        for (int32_t i = 0; i < s->n_running; i++)
            if (s->running[i] != id) s->running[k++] = s->running[i];
        s->n_running = k;
    }
    r->state = KVR_REQ_FINISHED;
    return KVR_OK;
}

int32_t kvr_sched_n_requests(const kvr_sched *s) {
    return s->n_req;
}
const kvr_sched_req *kvr_sched_request(const kvr_sched *s, int32_t id) {
    return id >= 0 && id < s->n_req ? &s->req[id] : NULL;
}
int32_t kvr_sched_n_waiting(const kvr_sched *s) {
    return s->waiting.n;
}
int32_t kvr_sched_n_running(const kvr_sched *s) {
    return s->n_running;
}
int64_t kvr_sched_blocks_used(const kvr_sched *s) {
    return KVR_CEIL_DIV(s->dev_cap - s->free_blocks, (int64_t)s->L);
}
int64_t kvr_sched_layer_blocks_used(const kvr_sched *s) {
    return s->dev_cap - s->free_blocks;
}
int64_t kvr_sched_host_layer_blocks_used(const kvr_sched *s) {
    return s->host_cap - s->host_free;
}
