/* sched.c -- the serving scheduler (kvr_serving.h): request queue, paged KV pool accounting and
 * the vllm / chunked policies, shared by the engine and the serving simulator. What vLLM's V0
 * scheduler does and where we differ: docs/serving.md ("The scheduler"). */
#include "kvr_serving.h"

#include <stdlib.h>
#include <string.h>

static const char *const policy_names[KVR_POLICY_COUNT] = {"vllm", "chunked"};

const char *kvr_serving_policy_name(kvr_serving_policy p) {
    return p >= 0 && p < KVR_POLICY_COUNT ? policy_names[p] : "?";
}

kvr_status kvr_serving_policy_parse(const char *s, kvr_serving_policy *out, kvr_error *err) {
    for (int i = 0; s && i < KVR_POLICY_COUNT; i++)
        if (!strcmp(s, policy_names[i])) {
            *out = (kvr_serving_policy)i;
            return KVR_OK;
        }
    return kvr_error_set(err, KVR_ERR_INVALID_ARG, "unknown policy '%s' (vllm, chunked)",
                         s ? s : "");
}

kvr_sched_params kvr_sched_params_default(void) {
    kvr_sched_params p = {KVR_POLICY_VLLM, 16, 0, 0.01, 256, 0, 0};
    return p;
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
    int64_t watermark_blocks;
    kvr_sched_req *req;
    int32_t n_req, cap_req;
    idq waiting;
    int32_t *running; /* in admission order (the priority order: preemption takes the last) */
    int32_t n_running, cap_running;
    kvr_sched_item *items;
    int32_t cap_items;
    int64_t free_blocks;
    int64_t iter;  /* the next iteration's number */
    bool planned;  /* an iteration is planned and not completed */
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
    if (p->pool_blocks > INT64_MAX / p->block_tokens)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "scheduler: pool of %lld blocks too large",
                             (long long)p->pool_blocks);
    kvr_sched *s = calloc(1, sizeof *s);
    if (!s) return kvr_error_set(err, KVR_ERR_NOMEM, "scheduler: out of memory");
    s->p = *p;
    if (!s->p.max_model_len) s->p.max_model_len = p->pool_blocks * p->block_tokens;
    if (!s->p.max_batched_tokens)
        s->p.max_batched_tokens =
            p->policy == KVR_POLICY_CHUNKED ? 512 : KVR_MAX(s->p.max_model_len, 2048);
    s->watermark_blocks = (int64_t)(p->watermark * (double)p->pool_blocks);
    s->free_blocks = p->pool_blocks;
    *out = s;
    return KVR_OK;
}

void kvr_sched_destroy(kvr_sched *s) {
    if (!s) return;
    free(s->req), free(s->waiting.v), free(s->running), free(s->items);
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

kvr_status kvr_sched_add(kvr_sched *s, int64_t prompt_tokens, int64_t max_output_tokens,
                         int32_t *id, kvr_error *err) {
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
    if (need > s->p.pool_blocks - s->watermark_blocks)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "request of %lld prompt + %lld output tokens needs %lld KV blocks of "
                             "%d tokens; the pool has %lld above its watermark: it can never run",
                             (long long)prompt_tokens, (long long)max_output_tokens,
                             (long long)need, s->p.block_tokens,
                             (long long)(s->p.pool_blocks - s->watermark_blocks));
    if (s->p.policy == KVR_POLICY_VLLM && prompt_tokens + max_output_tokens - 1 > s->p.max_batched_tokens)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "request of %lld prompt + %lld output tokens: policy vllm prefills a "
                             "request (after a preemption: with what it generated) in one "
                             "iteration of at most %lld tokens (max_batched_tokens): it could "
                             "stall; raise max_batched_tokens or use policy chunked",
                             (long long)prompt_tokens, (long long)max_output_tokens,
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
    idq_push_back(&s->waiting, s->n_req);
    *id = s->n_req++;
    return KVR_OK;
}

static void blocks_take(kvr_sched *s, kvr_sched_req *r, int64_t n) {
    s->free_blocks -= n;
    r->blocks += n;
    if (r->blocks > r->max_blocks) r->max_blocks = r->blocks;
}

static void blocks_release(kvr_sched *s, kvr_sched_req *r) {
    s->free_blocks += r->blocks;
    r->blocks = 0;
}

/* Preempt the lowest-priority running request (the last admitted) by recompute. */
static int32_t preempt_last(kvr_sched *s) {
    const int32_t id = s->running[--s->n_running];
    kvr_sched_req *r = &s->req[id];
    blocks_release(s, r);
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
    b->n_tokens += n;
    if (it->prefill) b->n_prefill++;
    else b->n_decode++;
    if (r->first_iter < 0) r->first_iter = s->iter;
    return it;
}

/* A running request's next decode needs room for one more token: a new block at a block
 * boundary. Preempts from the back until it fits; false when the request itself was preempted. */
static bool decode_room(kvr_sched *s, kvr_sched_batch *b, int32_t id) {
    kvr_sched_req *r = &s->req[id];
    const int64_t extra = kvr_sched_blocks_for(s, r->computed + 1) - r->blocks;
    while (extra > s->free_blocks) {
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
        if (s->free_blocks - need < s->watermark_blocks) break;
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

kvr_status kvr_sched_next(kvr_sched *s, kvr_sched_batch *out, kvr_error *err) {
    if (s->cap_running < s->n_req) { /* running and items: at most one entry per request */
        int32_t *run = realloc(s->running, (size_t)s->n_req * sizeof *run);
        if (run) s->running = run;
        kvr_sched_item *it = realloc(s->items, (size_t)s->n_req * sizeof *it);
        if (it) s->items = it;
        if (!run || !it) return kvr_error_set(err, KVR_ERR_NOMEM, "scheduler: out of memory");
        s->cap_running = s->cap_items = s->n_req;
    }
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
    b.blocks_used = s->p.pool_blocks - s->free_blocks;
    s->planned = b.n_items > 0;
    if (s->planned) s->iter++;
    *out = b;
    return KVR_OK;
}

kvr_status kvr_sched_complete(kvr_sched *s, const kvr_sched_batch *b, const bool *stop,
                              kvr_error *err) {
    if (!s->planned || b->items != s->items || b->iter != s->iter - 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "scheduler: iteration %lld is not the one planned last",
                             (long long)b->iter);
    s->planned = false;
    bool any_done = false;
    for (int32_t i = 0; i < b->n_items; i++) {
        const kvr_sched_item *it = &b->items[i];
        kvr_sched_req *r = &s->req[it->req];
        r->computed += it->n_tokens;
        if (!it->samples) continue;
        r->generated++;
        if (r->generated >= r->max_output_tokens || (stop && stop[i])) {
            r->state = KVR_REQ_FINISHED;
            blocks_release(s, r);
            any_done = true;
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
    return s->p.pool_blocks - s->free_blocks;
}
