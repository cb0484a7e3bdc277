/* engine.c -- the serving engine (kvr_engine.h): the scheduler's iterations run on the model
 * through kvr_batch_run, with real layer block ids from free lists (the device pool's and, under
 * layerkv, the host tier's). */
#include "kvr_engine.h"

#include <stdlib.h>
#include <string.h>

typedef struct eng_req {
    int32_t *tokens;  /* prompt + generated (capacity n_prompt + max_tokens) */
    int64_t n_prompt, n_gen, max_tokens;
    int32_t *blocks;  /* layer block ids held: layer l's, in position order, at l x cap_blocks */
    const int32_t **tabs; /* (n_layers) layer l's table: blocks + l x cap_blocks */
    int64_t n_blocks, cap_blocks; /* token blocks held (each layer n_blocks), most */
    bool *off;        /* (n_layers) layer l's blocks are host-tier ids */
    int32_t resident; /* layers in the device pool (the others: off) */
    int32_t *stop_ids;
    int32_t n_stop;
    kvr_sampler *sampler;
    bool (*on_token)(void *user, int32_t req, int32_t token);
    void *user;
    bool finished, cancelled;
    kvr_serving_record rec;
} eng_req;

struct kvr_engine {
    kvr_kv_pool *pool;
    kvr_batch_runner *runner;
    kvr_sched *sched;
    kvr_engine_params p;
    int32_t V, L;
    int32_t *free_ids; /* the free list (a stack of layer block ids) */
    int64_t n_free;
    int32_t *free_host; /* the host tier's free list (layerkv) */
    int64_t n_free_host;
    kvr_kv_copy *copies; /* swap-ins */
    int64_t cap_copies;
    kvr_serving_prefill_model pm; /* layerkv's predictor over the borrowed costs */
    eng_req *req;
    int32_t n_req, cap_req, n_unfinished;
    kvr_batch_seq *seqs;
    bool *stop;
    int32_t cap_items;
    double t0_us, vnow;
    kvr_engine_stats st;
    double blocks_time; /* sum of blocks held x iteration time */
    bool broken;
};

kvr_engine_params kvr_engine_params_default(void) {
    kvr_engine_params p;
    memset(&p, 0, sizeof p);
    p.sched = kvr_sched_params_default();
    p.n_threads = 1;
    p.clock = KVR_ENGINE_CLOCK_REAL;
    p.costs = NULL;
    p.host_gbps = 0;
    return p;
}

kvr_engine_request kvr_engine_request_default(void) {
    kvr_engine_request r;
    memset(&r, 0, sizeof r);
    r.sampling = kvr_sampler_params_default();
    return r;
}

double kvr_engine_now(const kvr_engine *e) {
    return e->p.clock == KVR_ENGINE_CLOCK_VIRTUAL ? e->vnow : (kvr_time_us() - e->t0_us) * 1e-6;
}

void kvr_engine_advance_to(kvr_engine *e, double t) {
    if (e->p.clock == KVR_ENGINE_CLOCK_VIRTUAL && t > e->vnow) e->vnow = t;
}

kvr_status kvr_engine_create(const kvr_weights *w, kvr_kv_pool *pool, const kvr_engine_params *p,
                             kvr_engine **out, kvr_error *err) {
    *out = NULL;
    kvr_sched_params sp = p->sched;
    if (sp.pool_blocks == 0) sp.pool_blocks = kvr_kv_pool_blocks(pool);
    const int32_t L = kvr_kv_pool_config(pool)->n_layers;
    if (sp.n_layers == 0) sp.n_layers = L;
    if (sp.n_layers != L)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "engine: the scheduler's n_layers %d is not the model's %d",
                             sp.n_layers, L);
    if (sp.block_tokens != kvr_kv_pool_block_tokens(pool) ||
        sp.pool_blocks != kvr_kv_pool_blocks(pool))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "engine: the scheduler's pool (%lld blocks of %d tokens) is not the "
                             "KV pool's (%lld of %d)",
                             (long long)sp.pool_blocks, sp.block_tokens,
                             (long long)kvr_kv_pool_blocks(pool), kvr_kv_pool_block_tokens(pool));
    kvr_engine *e = calloc(1, sizeof *e);
    if (!e) return kvr_error_set(err, KVR_ERR_NOMEM, "engine: out of memory");
    e->pool = pool;
    e->p = *p;
    e->p.sched = sp;
    kvr_status st = kvr_sched_create(&sp, &e->sched, err);
    if (st == KVR_OK) {
        const kvr_sched_params *r = kvr_sched_get_params(e->sched);
        /* an iteration runs at most max_batched_tokens prompt tokens or max_seqs decodes, and
         * never more tokens than the pool holds (layerkv: with one layer of each resident) */
        int64_t rows = KVR_MAX(r->max_batched_tokens, (int64_t)r->max_seqs);
        rows = KVR_MIN(rows, r->pool_blocks * r->block_tokens *
                                 (r->policy == KVR_POLICY_LAYERKV && r->host_blocks > 0 ? L : 1));
        st = kvr_batch_runner_create(w, pool, rows, p->n_threads, &e->runner, err);
    }
    if (st == KVR_OK) {
        e->free_ids = malloc((size_t)kvr_kv_pool_layer_blocks(pool) * sizeof *e->free_ids);
        if (!e->free_ids) st = kvr_error_set(err, KVR_ERR_NOMEM, "engine: out of memory");
    }
    const kvr_sched_params *rp = st == KVR_OK ? kvr_sched_get_params(e->sched) : NULL;
    const int64_t host = sp.host_blocks * L; /* layer blocks */
    if (st == KVR_OK && host > 0) {
        /* the host tier: staging for twice the longest request's layer (one being copied out
         * while the next offloaded layer fills) */
        const int64_t staging =
            2 * (KVR_CEIL_DIV(rp->max_model_len, (int64_t)rp->block_tokens) + 1);
        if (kvr_kv_pool_host_blocks(pool) == 0)
            st = kvr_kv_pool_add_host(pool, host, staging, err);
        else if (kvr_kv_pool_host_blocks(pool) < host || kvr_kv_pool_staging_blocks(pool) < staging)
            st = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                               "engine: the pool's host tier (%lld layer blocks, %lld staging) is "
                               "smaller than host_blocks x n_layers = %lld (%lld staging)",
                               (long long)kvr_kv_pool_host_blocks(pool),
                               (long long)kvr_kv_pool_staging_blocks(pool), (long long)host,
                               (long long)staging);
        if (st == KVR_OK) {
            e->free_host = malloc((size_t)host * sizeof *e->free_host);
            if (!e->free_host) st = kvr_error_set(err, KVR_ERR_NOMEM, "engine: out of memory");
        }
    }
    if (st == KVR_OK && p->costs) { /* layerkv's SLO admission: the simulator's prediction */
        e->pm.costs = p->costs;
        e->pm.host_gbps = kvr_serving_host_gbps(p->costs, p->host_gbps);
        kvr_sched_set_predictor(e->sched, kvr_serving_predict_prefill, &e->pm);
    }
    if (st != KVR_OK) {
        kvr_engine_destroy(e);
        return st;
    }
    /* popped from the end: layer block 0 first */
    const int64_t nlb = kvr_kv_pool_layer_blocks(pool);
    for (int64_t i = 0; i < nlb; i++) e->free_ids[i] = (int32_t)(nlb - 1 - i);
    e->n_free = nlb;
    for (int64_t i = 0; i < host; i++) e->free_host[i] = (int32_t)(host - 1 - i);
    e->n_free_host = host;
    e->V = kvr_kv_pool_config(pool)->vocab_size;
    e->L = L;
    e->t0_us = kvr_time_us();
    *out = e;
    return KVR_OK;
}

static void req_free(eng_req *r) {
    free(r->tokens), free(r->blocks), free(r->tabs), free(r->off), free(r->stop_ids);
    kvr_sampler_destroy(r->sampler);
}

void kvr_engine_destroy(kvr_engine *e) {
    if (!e) return;
    for (int32_t i = 0; i < e->n_req; i++) req_free(&e->req[i]);
    free(e->req), free(e->free_ids), free(e->free_host), free(e->copies), free(e->seqs);
    free(e->stop);
    kvr_batch_runner_destroy(e->runner);
    kvr_sched_destroy(e->sched);
    free(e);
}

kvr_status kvr_engine_submit(kvr_engine *e, const kvr_engine_request *rq, double arrival_s,
                             int32_t *id, kvr_error *err) {
    if (e->broken) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "engine: a step failed");
    if (!rq->prompt || rq->n_prompt < 1 || rq->max_tokens < 1 || (rq->n_stop > 0 && !rq->stop_ids))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "request of %lld prompt tokens for %lld output tokens (need >= 1 "
                             "each)",
                             (long long)rq->n_prompt, (long long)rq->max_tokens);
    for (int64_t i = 0; i < rq->n_prompt; i++)
        if (rq->prompt[i] < 0 || rq->prompt[i] >= e->V)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "request: prompt token %lld is %d, outside the vocabulary [0, %d)",
                                 (long long)i, rq->prompt[i], e->V);
    if (rq->max_tokens > INT64_MAX / 2 - rq->n_prompt)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "request: too many tokens");
    if (e->n_req == e->cap_req) {
        const int32_t cap = e->cap_req ? 2 * e->cap_req : 16;
        eng_req *r = realloc(e->req, (size_t)cap * sizeof *r);
        if (!r) return kvr_error_set(err, KVR_ERR_NOMEM, "engine: out of memory");
        e->req = r, e->cap_req = cap;
    }
    eng_req *r = &e->req[e->n_req];
    memset(r, 0, sizeof *r);
    KVR_TRY(kvr_sampler_create(&rq->sampling, e->V, &r->sampler, err));
    const int64_t bt = kvr_kv_pool_block_tokens(e->pool);
    r->n_prompt = rq->n_prompt;
    r->max_tokens = rq->max_tokens;
    r->cap_blocks = KVR_CEIL_DIV(rq->n_prompt + rq->max_tokens, bt);
    r->tokens = malloc((size_t)(rq->n_prompt + rq->max_tokens) * sizeof *r->tokens);
    r->blocks = malloc((size_t)r->cap_blocks * (size_t)e->L * sizeof *r->blocks);
    r->tabs = malloc((size_t)e->L * sizeof *r->tabs);
    r->off = calloc((size_t)e->L, sizeof *r->off);
    r->resident = e->L;
    r->stop_ids = malloc((size_t)(rq->n_stop > 0 ? rq->n_stop : 1) * sizeof *r->stop_ids);
    kvr_status st = KVR_OK;
    if (!r->tokens || !r->blocks || !r->tabs || !r->off || !r->stop_ids)
        st = kvr_error_set(err, KVR_ERR_NOMEM, "engine: out of memory for a request of %lld "
                                               "tokens",
                           (long long)(rq->n_prompt + rq->max_tokens));
    int32_t sid = -1;
    if (st == KVR_OK)
        st = kvr_sched_add_at(e->sched, rq->n_prompt, rq->max_tokens, arrival_s, &sid, err);
    if (st != KVR_OK) {
        req_free(r);
        return st;
    }
    KVR_ASSERT(sid == e->n_req); /* the scheduler's ids are ours */
    for (int32_t l = 0; l < e->L; l++) r->tabs[l] = r->blocks + l * r->cap_blocks;
    memcpy(r->tokens, rq->prompt, (size_t)rq->n_prompt * sizeof *r->tokens);
    if (rq->n_stop > 0) memcpy(r->stop_ids, rq->stop_ids, (size_t)rq->n_stop * sizeof *r->stop_ids);
    r->n_stop = rq->n_stop;
    r->on_token = rq->on_token;
    r->user = rq->user;
    r->rec = (kvr_serving_record){arrival_s, -1, -1, -1, rq->n_prompt, 0, 0, 0, false};
    *id = e->n_req++;
    e->n_unfinished++;
    return KVR_OK;
}

/* Real blocks follow the scheduler's counts: it frees all of a request's blocks at once
 * (finish, preemption) and grows them one admission or decode at a time; a token block is one
 * layer block per layer, in the device pool for the resident layers and in the host tier for
 * the others (layerkv; which ones: kvr_layerkv_resident, fixed at admission). A request whose
 * resident count went up (a swap-in item) first gets its offloaded layers copied into fresh
 * device blocks and gives the host blocks back. */
static kvr_status sync_blocks(kvr_engine *e, int32_t id, kvr_error *err) {
    eng_req *r = &e->req[id];
    const kvr_sched_req *q = kvr_sched_request(e->sched, id);
    const int64_t want = q->blocks, cap = r->cap_blocks;
    if (want < r->n_blocks) {
        KVR_ASSERT(want == 0);
        for (; r->n_blocks > 0; r->n_blocks--)
            for (int32_t l = e->L - 1; l >= 0; l--) {
                const int32_t b = r->blocks[l * cap + r->n_blocks - 1];
                if (r->off[l]) e->free_host[e->n_free_host++] = b;
                else e->free_ids[e->n_free++] = b;
            }
    }
    if (r->n_blocks == 0) { /* (re)admission: the layout of its resident layers */
        r->resident = q->resident;
        for (int32_t l = 0; l < e->L; l++) r->off[l] = !kvr_layerkv_resident(e->L, q->resident, l);
    } else if (q->resident > r->resident) { /* swap-in: every offloaded layer back */
        KVR_ASSERT(q->resident == e->L);
        const int64_t n = (int64_t)(e->L - r->resident) * r->n_blocks;
        if (n > e->cap_copies) {
            kvr_kv_copy *c = realloc(e->copies, (size_t)n * sizeof *c);
            if (!c) return kvr_error_set(err, KVR_ERR_NOMEM, "engine: out of memory");
            e->copies = c, e->cap_copies = n;
        }
        int64_t k = 0;
        for (int32_t l = 0; l < e->L; l++) {
            if (!r->off[l]) continue;
            for (int64_t b = 0; b < r->n_blocks; b++) {
                KVR_ASSERT(e->n_free > 0);
                const int32_t d = e->free_ids[--e->n_free];
                e->copies[k++] = (kvr_kv_copy){d, r->blocks[l * cap + b], false};
                e->free_host[e->n_free_host++] = r->blocks[l * cap + b];
                r->blocks[l * cap + b] = d;
            }
            r->off[l] = false;
        }
        KVR_TRY(kvr_kv_pool_copy(e->pool, e->copies, k, err));
        r->resident = e->L;
        e->st.swap_ins++;
    }
    KVR_ASSERT(q->resident == r->resident); /* the scheduler offloads only at admission */
    for (; r->n_blocks < want; r->n_blocks++) {
        KVR_ASSERT(r->n_blocks < cap);
        for (int32_t l = 0; l < e->L; l++) {
            if (r->off[l]) KVR_ASSERT(e->n_free_host > 0);
            else KVR_ASSERT(e->n_free > 0);
            r->blocks[l * cap + r->n_blocks] =
                r->off[l] ? e->free_host[--e->n_free_host] : e->free_ids[--e->n_free];
        }
    }
    return KVR_OK;
}

static bool is_stop(const eng_req *r, int32_t tok) {
    for (int32_t i = 0; i < r->n_stop; i++)
        if (r->stop_ids[i] == tok) return true;
    return false;
}

kvr_status kvr_engine_step(kvr_engine *e, bool *ran, kvr_error *err) {
    if (ran) *ran = false;
    if (e->broken) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "engine: a step failed");
    kvr_sched_batch b;
    const double t_start = kvr_engine_now(e);
    KVR_TRY(kvr_sched_next_at(e->sched, t_start, &b, err));
    if (b.n_items == 0) return KVR_OK;
    const double w0 = kvr_time_us();
    if (b.n_items > e->cap_items) {
        kvr_batch_seq *s = realloc(e->seqs, (size_t)b.n_items * sizeof *s);
        if (s) e->seqs = s;
        bool *stop = realloc(e->stop, (size_t)b.n_items * sizeof *stop);
        if (stop) e->stop = stop;
        if (!s || !stop) {
            e->broken = true;
            return kvr_error_set(err, KVR_ERR_NOMEM, "engine: out of memory");
        }
        e->cap_items = b.n_items;
    }
    /* preemptions while planning freed blocks: return them before any request grows */
    kvr_status st = KVR_OK;
    for (int32_t i = 0; st == KVR_OK && i < e->n_req; i++)
        if (!e->req[i].finished && kvr_sched_request(e->sched, i)->blocks < e->req[i].n_blocks)
            st = sync_blocks(e, i, err);
    for (int32_t i = 0; st == KVR_OK && i < b.n_items; i++) {
        const kvr_sched_item *it = &b.items[i];
        eng_req *r = &e->req[it->req];
        st = sync_blocks(e, it->req, err);
        KVR_ASSERT(st != KVR_OK || it->resident == r->resident);
        if (r->rec.admitted_s < 0) r->rec.admitted_s = t_start;
        e->seqs[i] = (kvr_batch_seq){r->tokens + it->n_past, it->n_tokens, it->n_past, r->tabs,
                                     r->n_blocks, it->samples,
                                     r->resident < e->L ? r->off : NULL};
        e->st.rows += it->n_tokens;
    }
    if (st == KVR_OK) st = kvr_batch_run(e->runner, e->seqs, b.n_items, err);
    if (st != KVR_OK) {
        e->broken = true;
        return st;
    }
    const double wall_s = (kvr_time_us() - w0) * 1e-6;
    if (e->p.clock == KVR_ENGINE_CLOCK_VIRTUAL) e->vnow += wall_s;
    const double t_end = kvr_engine_now(e);
    for (int32_t i = 0; i < b.n_items; i++) {
        const kvr_sched_item *it = &b.items[i];
        eng_req *r = &e->req[it->req];
        e->stop[i] = false;
        if (!it->samples) continue;
        const int32_t tok = kvr_sampler_sample(r->sampler, kvr_batch_logits(e->runner, i));
        r->tokens[r->n_prompt + r->n_gen++] = tok;
        if (r->rec.first_token_s < 0) r->rec.first_token_s = t_end;
        e->stop[i] = is_stop(r, tok);
        if (r->on_token && !r->on_token(r->user, it->req, tok)) e->stop[i] = true;
        if (e->stop[i] || r->n_gen >= r->max_tokens) {
            r->finished = true;
            r->rec.finish_s = t_end;
            e->n_unfinished--;
        }
    }
    st = kvr_sched_complete_at(e->sched, &b, e->stop, t_end, err);
    for (int32_t i = 0; st == KVR_OK && i < b.n_items; i++) {
        const int32_t id = b.items[i].req;
        const kvr_sched_req *q = kvr_sched_request(e->sched, id);
        eng_req *r = &e->req[id];
        KVR_ASSERT(r->finished == (q->state == KVR_REQ_FINISHED));
        st = sync_blocks(e, id, err);
        r->rec.output_tokens = r->n_gen;
        r->rec.max_blocks = q->max_blocks;
        r->rec.preemptions = q->preemptions;
    }
    if (st != KVR_OK) {
        e->broken = true;
        return st;
    }
    e->st.iterations++;
    e->st.peak_host_blocks = KVR_MAX(e->st.peak_host_blocks, b.host_layer_blocks_used);
    e->st.busy_s += t_end - t_start;
    e->st.peak_blocks = KVR_MAX(e->st.peak_blocks, b.blocks_used);
    e->blocks_time += (double)b.blocks_used * (t_end - t_start);
    e->st.mean_blocks = e->st.busy_s > 0 ? e->blocks_time / e->st.busy_s : 0;
    if (ran) *ran = true;
    return KVR_OK;
}

int32_t kvr_engine_n_requests(const kvr_engine *e) { return e->n_req; }
int32_t kvr_engine_n_unfinished(const kvr_engine *e) { return e->n_unfinished; }

const kvr_serving_record *kvr_engine_record(const kvr_engine *e, int32_t id) {
    if (id < 0 || id >= e->n_req) return NULL;
    /* preemptions and blocks may have changed since the request's last item */
    eng_req *r = &e->req[id];
    const kvr_sched_req *q = kvr_sched_request(e->sched, id);
    r->rec.max_blocks = q->max_blocks;
    r->rec.preemptions = q->preemptions;
    return &r->rec;
}

const int32_t *kvr_engine_output(const kvr_engine *e, int32_t id, int64_t *n) {
    if (id < 0 || id >= e->n_req) {
        *n = 0;
        return NULL;
    }
    *n = e->req[id].n_gen;
    return e->req[id].tokens ? e->req[id].tokens + e->req[id].n_prompt : NULL;
}

bool kvr_engine_finished(const kvr_engine *e, int32_t id) {
    return id >= 0 && id < e->n_req && e->req[id].finished;
}

kvr_status kvr_engine_cancel(kvr_engine *e, int32_t id, kvr_error *err) {
    if (id < 0 || id >= e->n_req)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "engine: cancel of unknown request %d", id);
    eng_req *r = &e->req[id];
    if (r->finished) return KVR_OK;
    KVR_TRY(kvr_sched_cancel(e->sched, id, err));
    KVR_TRY(sync_blocks(e, id, err)); /* all its blocks back to the free lists */
    const kvr_sched_req *q = kvr_sched_request(e->sched, id);
    r->rec.output_tokens = r->n_gen;
    r->rec.max_blocks = q->max_blocks;
    r->rec.preemptions = q->preemptions;
    r->finished = r->cancelled = true;
    e->n_unfinished--;
    return KVR_OK;
}

void kvr_engine_release(kvr_engine *e, int32_t id) {
    if (id < 0 || id >= e->n_req) return;
    eng_req *r = &e->req[id];
    if (!r->finished || r->n_blocks > 0) return;
    req_free(r);
    r->tokens = NULL, r->blocks = NULL, r->tabs = NULL, r->off = NULL, r->stop_ids = NULL;
    r->sampler = NULL;
    r->n_prompt = r->n_gen = r->cap_blocks = 0;
    r->n_stop = 0;
}

bool kvr_engine_cancelled(const kvr_engine *e, int32_t id) {
    return id >= 0 && id < e->n_req && e->req[id].cancelled;
}

int32_t kvr_engine_n_waiting(const kvr_engine *e) { return kvr_sched_n_waiting(e->sched); }
int32_t kvr_engine_n_running(const kvr_engine *e) { return kvr_sched_n_running(e->sched); }
int64_t kvr_engine_blocks_used(const kvr_engine *e) { return kvr_sched_blocks_used(e->sched); }

kvr_engine_stats kvr_engine_get_stats(const kvr_engine *e) {
    kvr_engine_stats st = e->st;
    st.correction = kvr_sched_correction(e->sched);
    if (kvr_kv_pool_host_blocks(e->pool) > 0) {
        const kvr_kv_pool_stats ps = kvr_kv_pool_get_stats(e->pool);
        st.copies_out = ps.copies_out;
        st.copies_in = ps.copies_in;
        st.stage_waits = ps.stage_waits;
    }
    return st;
}

const kvr_sched_params *kvr_engine_sched_params(const kvr_engine *e) {
    return kvr_sched_get_params(e->sched);
}
