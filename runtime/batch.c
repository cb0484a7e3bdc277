/* batch.c -- the paged KV pool's front end, its seam ops (kvr_batch.h) and the batched
 * iteration: embed all rows, per layer pre / K/V into the pool / paged attention / post, then
 * the logits of the sequences that want them. */
#include "backend_internal.h"
#include "runtime_internal.h"

#include <stdlib.h>
#include <string.h>

int64_t kvr_kv_layer_block_bytes(const kvr_model_config *cfg, int32_t block_tokens) {
    return 2 * (int64_t)cfg->n_kv_heads * cfg->head_dim * (int64_t)sizeof(float) * block_tokens;
}

int64_t kvr_kv_block_bytes(const kvr_model_config *cfg, int32_t block_tokens) {
    return (int64_t)cfg->n_layers * kvr_kv_layer_block_bytes(cfg, block_tokens);
}

void kvr_kv_layer_tables(int32_t n_layers, const int32_t *tb, int64_t n, int32_t *ids,
                         const int32_t **tables) {
    for (int32_t l = 0; l < n_layers; l++) {
        for (int64_t b = 0; b < n; b++) ids[l * n + b] = tb[b] * n_layers + l;
        tables[l] = ids + l * n;
    }
}

static kvr_status pool_unsupported(const kvr_backend *be, kvr_error *err) {
    return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                         "backend %s has no paged KV pool (batched iterations run on cpu and "
                         "cuda)",
                         be->name);
}

kvr_status kvr_kv_pool_create(const kvr_weights *w, int64_t n_blocks, int32_t block_tokens,
                              kvr_kv_pool **out, kvr_error *err) {
    *out = NULL;
    const int32_t L = w->m->cfg.n_layers;
    if (n_blocks < 1 || block_tokens < 1 || n_blocks > INT32_MAX / block_tokens / L)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "KV pool: %lld blocks of %d tokens (need >= 1 each, at most 2^31 "
                             "layer-block slots)",
                             (long long)n_blocks, block_tokens);
    if (!w->be->pool_create) return pool_unsupported(w->be, err);
    kvr_kv_pool *p = NULL;
    KVR_TRY(w->be->pool_create(w, n_blocks, block_tokens, &p, err));
    p->be = w->be;
    p->m = w->m;
    p->n_blocks = n_blocks;
    p->block_tokens = block_tokens;
    p->n_layer_blocks = n_blocks * L;
    p->host_blocks = p->staging_blocks = 0;
    p->stage_fence = NULL;
    p->stage_head = p->stage_tail = p->stage_waits = 0;
    *out = p;
    return KVR_OK;
}

void kvr_kv_pool_destroy(kvr_kv_pool *p) {
    if (!p) return;
    free(p->stage_fence);
    p->be->pool_destroy(p);
}

int64_t kvr_kv_pool_blocks(const kvr_kv_pool *p) { return p->n_blocks; }
int64_t kvr_kv_pool_layer_blocks(const kvr_kv_pool *p) { return p->n_layer_blocks; }
int64_t kvr_kv_pool_host_blocks(const kvr_kv_pool *p) { return p->host_blocks; }
int64_t kvr_kv_pool_staging_blocks(const kvr_kv_pool *p) { return p->staging_blocks; }
int32_t kvr_kv_pool_block_tokens(const kvr_kv_pool *p) { return p->block_tokens; }
const kvr_model_config *kvr_kv_pool_config(const kvr_kv_pool *p) { return &p->m->cfg; }

kvr_status kvr_kv_pool_add_host(kvr_kv_pool *p, int64_t host_blocks, int64_t staging_blocks,
                                kvr_error *err) {
    if (p->host_blocks > 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "KV pool: it has a host tier already");
    if (host_blocks < 1 || staging_blocks < 1 || host_blocks > INT32_MAX / p->block_tokens ||
        staging_blocks > (INT32_MAX - p->n_layer_blocks) / p->block_tokens)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "KV host tier: %lld host and %lld staging layer blocks (need >= 1 "
                             "each, at most 2^31 slots)",
                             (long long)host_blocks, (long long)staging_blocks);
    if (!p->be->host_create)
        return kvr_error_set(err, KVR_ERR_UNSUPPORTED, "backend %s has no KV host tier",
                             p->be->name);
    p->stage_fence = calloc((size_t)staging_blocks, sizeof *p->stage_fence);
    if (!p->stage_fence) return kvr_error_set(err, KVR_ERR_NOMEM, "KV host tier: out of memory");
    kvr_status st = p->be->host_create(p, host_blocks, staging_blocks, err);
    if (st != KVR_OK) {
        free(p->stage_fence);
        p->stage_fence = NULL;
        return st;
    }
    p->host_blocks = host_blocks;
    p->staging_blocks = staging_blocks;
    return KVR_OK;
}

kvr_status kvr_op_kv_copy_submit(kvr_kv_pool *p, const kvr_kv_copy *c, int64_t n, uint64_t *fence,
                                 kvr_error *err) {
    *fence = 0;
    if (p->host_blocks == 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "KV copy: the pool has no host tier");
    const int64_t n_dev = p->n_layer_blocks + p->staging_blocks;
    for (int64_t i = 0; i < n; i++)
        if (c[i].dev < 0 || c[i].dev >= n_dev || c[i].host < 0 || c[i].host >= p->host_blocks)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "KV copy %lld: device block %d (of %lld with staging) or host "
                                 "block %d (of %lld) out of range",
                                 (long long)i, c[i].dev, (long long)n_dev, c[i].host,
                                 (long long)p->host_blocks);
    if (n < 1) {
        *fence = p->be->copy_done(p);
        return KVR_OK;
    }
    return p->be->copy_submit(p, c, n, fence, err);
}

kvr_status kvr_op_kv_copy_wait(kvr_kv_pool *p, uint64_t fence, kvr_error *err) {
    if (p->host_blocks == 0 || fence == 0) return KVR_OK;
    return p->be->copy_wait(p, fence, err);
}

uint64_t kvr_op_kv_copy_done(kvr_kv_pool *p) {
    return p->host_blocks > 0 ? p->be->copy_done(p) : 0;
}

kvr_status kvr_kv_pool_copy(kvr_kv_pool *p, const kvr_kv_copy *c, int64_t n, kvr_error *err) {
    uint64_t f;
    KVR_TRY(kvr_op_kv_copy_submit(p, c, n, &f, err));
    return kvr_op_kv_copy_wait(p, f, err);
}

void kvr_kv_pool_copier_hold(kvr_kv_pool *p, bool hold) {
    if (p->host_blocks > 0 && p->be->copy_hold) p->be->copy_hold(p, hold);
}

kvr_kv_pool_stats kvr_kv_pool_get_stats(kvr_kv_pool *p) {
    kvr_kv_pool_stats st;
    memset(&st, 0, sizeof st);
    if (p->host_blocks > 0 && p->be->copy_stats) p->be->copy_stats(p, &st);
    st.stage_waits = __atomic_load_n(&p->stage_waits, __ATOMIC_RELAXED);
    return st;
}

// ----------------------------------------------------------------------------
// seam ops

kvr_status kvr_op_embed_rows(kvr_workspace *ws, const int32_t *tokens, const int64_t *pos,
                             int64_t c, kvr_error *err) {
    if (!ws->be->set_rows) return pool_unsupported(ws->be, err);
    if (c < 1 || c > ws->max_chunk)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "%lld rows: the workspace holds 1 to %lld", (long long)c,
                             (long long)ws->max_chunk);
    const int32_t V = ws->m->cfg.vocab_size;
    for (int64_t r = 0; r < c; r++) {
        if (tokens[r] < 0 || tokens[r] >= V)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "token id %d of row %lld is outside the vocabulary [0, %d)",
                                 tokens[r], (long long)r, V);
        if (pos[r] < 0)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG, "row %lld at position %lld",
                                 (long long)r, (long long)pos[r]);
    }
    ws->c = c;
    ws->pos0 = 0;
    KVR_TRY(ws->be->set_rows(ws, pos, err));
    return ws->be->embed(ws, tokens, err);
}

static kvr_status pool_check(kvr_workspace *ws, kvr_kv_pool *p, int32_t layer, kvr_error *err) {
    if (p->be != ws->be || p->m != ws->m)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "KV pool: it belongs to another backend or model than the workspace");
    if (ws->c < 1 || ws->pos0 != 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "KV pool op before kvr_op_embed_rows");
    if (layer < 0 || layer >= ws->m->cfg.n_layers)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "layer %d outside [0, %d)", layer,
                             ws->m->cfg.n_layers);
    if (!ws->be->kv_store || !ws->be->attn_paged) return pool_unsupported(ws->be, err);
    return KVR_OK;
}

kvr_status kvr_op_kv_store(kvr_workspace *ws, kvr_kv_pool *p, int32_t layer, const int64_t *slots,
                           kvr_error *err) {
    KVR_TRY(pool_check(ws, p, layer, err));
    const int64_t n_slots = (p->n_layer_blocks + p->staging_blocks) * p->block_tokens;
    for (int64_t r = 0; r < ws->c; r++)
        if (slots[r] < -1 || slots[r] >= n_slots)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "KV slot %lld of row %lld outside the pool's %lld",
                                 (long long)slots[r], (long long)r, (long long)n_slots);
    return ws->be->kv_store(ws, p, layer, slots, err);
}

kvr_status kvr_op_attn_paged(kvr_workspace *ws, kvr_kv_pool *p, int32_t layer,
                             const kvr_paged_seq *seqs, int32_t n, kvr_error *err) {
    KVR_TRY(pool_check(ws, p, layer, err));
    for (int32_t i = 0; i < n; i++) {
        const kvr_paged_seq *s = &seqs[i];
        if (s->n_rows < 1 || s->row0 < 0 || s->row0 + s->n_rows > ws->c || s->n_past < 0 ||
            s->n_blocks * p->block_tokens < s->n_past + s->n_rows || !s->blocks)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "paged attention: sequence %d (rows [%lld, %lld) of %lld, %lld "
                                 "cached, %lld blocks of %d tokens)",
                                 i, (long long)s->row0, (long long)(s->row0 + s->n_rows),
                                 (long long)ws->c, (long long)s->n_past, (long long)s->n_blocks,
                                 p->block_tokens);
        const int64_t used = KVR_CEIL_DIV(s->n_past + s->n_rows, (int64_t)p->block_tokens);
        const int64_t nb = p->n_layer_blocks + p->staging_blocks;
        for (int64_t b = 0; b < used; b++)
            if (s->blocks[b] < 0 || s->blocks[b] >= nb)
                return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                     "paged attention: sequence %d's block %lld is %d, outside "
                                     "the pool's %lld (with staging)",
                                     i, (long long)b, s->blocks[b], (long long)nb);
    }
    return ws->be->attn_paged(ws, p, layer, seqs, n, err);
}

kvr_status kvr_op_head_rows(kvr_workspace *ws, const int64_t *rows, int32_t n, float *logits,
                            kvr_error *err) {
    if (n < 1) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "head of %d rows", n);
    for (int32_t i = 0; i < n; i++)
        if (rows[i] < 0 || rows[i] >= ws->c)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG, "head of row %lld: %lld rows",
                                 (long long)rows[i], (long long)ws->c);
    if (ws->be->head_rows) return ws->be->head_rows(ws, rows, n, logits, err);
    /* the head reads the chunk's last row: make it each row in turn */
    const int64_t c = ws->c;
    const size_t V = (size_t)ws->m->cfg.vocab_size;
    kvr_status st = KVR_OK;
    for (int32_t i = 0; st == KVR_OK && i < n; i++) {
        ws->c = rows[i] + 1;
        st = ws->be->head(ws, NULL, err);
        if (st == KVR_OK) st = ws->be->logits_to_host(ws, logits + (size_t)i * V, err);
    }
    ws->c = c;
    return st;
}

// ----------------------------------------------------------------------------
// the batched iteration

/* Staging for one offloaded layer of some sequences: their blocks in ring order. */
typedef struct stage_group {
    bool valid;
    int32_t layer;
    int32_t first, end;  /* the sequences i in [first, end) offloaded at layer */
    int64_t n_blk;       /* staging blocks taken: ids[0, n_blk) */
    int64_t *off;        /* (cap) sequence i's first staging block in ids */
    int32_t *ids;        /* (staging) staging layer block ids (pool ids) */
    uint64_t ready;      /* fence after which they may be written and read */
} stage_group;

struct kvr_batch_runner {
    kvr_kv_pool *pool;
    kvr_workspace *ws;
    int64_t max_rows;
    int32_t *tokens;      /* (max_rows) */
    int64_t *pos, *slots; /* (max_rows) */
    int64_t *row0;        /* (cap) each sequence's first row */
    kvr_paged_seq *pseq;  /* (cap) */
    float *logits;        /* (cap, V): the wanted logits, in sequence order */
    int32_t *slot;        /* (cap) sequence -> its row of logits, -1: none */
    int64_t *rows;        /* (cap) the rows the head runs on */
    int32_t cap, n_last;
    uint32_t *mark_dev, *mark_host; /* duplicate checks: the sequence's stamp per block */
    int64_t n_mark_host;
    uint32_t stamp;
    stage_group g[2];     /* the layer's group, and the next layer's (prefetched) */
    kvr_kv_copy *copies;  /* (staging) */
    uint64_t last_fence;
};

kvr_status kvr_batch_runner_create(const kvr_weights *w, kvr_kv_pool *pool, int64_t max_rows,
                                   int32_t n_threads, kvr_batch_runner **out, kvr_error *err) {
    *out = NULL;
    if (pool->be != w->be || pool->m != w->m)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "batch runner: the pool belongs to another backend or model");
    if (max_rows < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "batch runner: %lld rows (need >= 1)",
                             (long long)max_rows);
    kvr_batch_runner *r = calloc(1, sizeof *r);
    if (!r) return kvr_error_set(err, KVR_ERR_NOMEM, "batch runner: out of memory");
    r->pool = pool;
    r->max_rows = max_rows;
    r->tokens = malloc((size_t)max_rows * sizeof *r->tokens);
    r->pos = malloc((size_t)max_rows * sizeof *r->pos);
    r->slots = malloc((size_t)max_rows * sizeof *r->slots);
    r->mark_dev = calloc((size_t)pool->n_layer_blocks, sizeof *r->mark_dev);
    kvr_status st = KVR_OK;
    if (!r->tokens || !r->pos || !r->slots || !r->mark_dev)
        st = kvr_error_set(err, KVR_ERR_NOMEM, "batch runner: out of memory");
    /* rows [0, max_rows) at pos0 0: the workspace's own cache holds only this iteration's K/V */
    if (st == KVR_OK) st = kvr_workspace_create(w, max_rows, max_rows, n_threads, &r->ws, err);
    if (st != KVR_OK) {
        kvr_batch_runner_destroy(r);
        return st;
    }
    *out = r;
    return KVR_OK;
}

void kvr_batch_runner_destroy(kvr_batch_runner *r) {
    if (!r) return;
    kvr_workspace_destroy(r->ws);
    free(r->tokens), free(r->pos), free(r->slots), free(r->pseq), free(r->logits);
    free(r->slot), free(r->rows), free(r->row0), free(r->mark_dev), free(r->mark_host);
    for (int k = 0; k < 2; k++) free(r->g[k].off), free(r->g[k].ids);
    free(r->copies);
    free(r);
}

int64_t kvr_batch_runner_max_rows(const kvr_batch_runner *r) { return r->max_rows; }

static kvr_status batch_reserve(kvr_batch_runner *r, int32_t n, kvr_error *err) {
    const int64_t S = r->pool->staging_blocks;
    if (S > 0 && r->n_mark_host != r->pool->host_blocks) { /* the host tier came after us */
        free(r->mark_host), free(r->copies);
        for (int k = 0; k < 2; k++) free(r->g[k].ids), r->g[k].ids = NULL;
        r->mark_host = calloc((size_t)r->pool->host_blocks, sizeof *r->mark_host);
        r->copies = malloc((size_t)S * sizeof *r->copies);
        for (int k = 0; k < 2; k++) r->g[k].ids = malloc((size_t)S * sizeof *r->g[k].ids);
        if (!r->mark_host || !r->copies || !r->g[0].ids || !r->g[1].ids) {
            r->n_mark_host = 0;
            return kvr_error_set(err, KVR_ERR_NOMEM, "batch runner: out of memory");
        }
        r->n_mark_host = r->pool->host_blocks;
    }
    if (n <= r->cap) return KVR_OK;
    const size_t V = (size_t)r->ws->m->cfg.vocab_size;
    kvr_paged_seq *ps = realloc(r->pseq, (size_t)n * sizeof *ps);
    if (ps) r->pseq = ps;
    int32_t *sl = realloc(r->slot, (size_t)n * sizeof *sl);
    if (sl) r->slot = sl;
    int64_t *rw = realloc(r->rows, (size_t)n * sizeof *rw);
    if (rw) r->rows = rw;
    int64_t *r0 = realloc(r->row0, (size_t)n * sizeof *r0);
    if (r0) r->row0 = r0;
    float *lg = realloc(r->logits, (size_t)n * V * sizeof *lg);
    if (lg) r->logits = lg;
    bool ok = ps && sl && rw && r0 && lg;
    for (int k = 0; k < 2 && ok; k++) {
        int64_t *o = realloc(r->g[k].off, (size_t)n * sizeof *o);
        if (o) r->g[k].off = o;
        ok = o != NULL;
    }
    if (!ok)
        return kvr_error_set(err, KVR_ERR_NOMEM, "batch runner: out of memory for %d sequences",
                             n);
    r->cap = n;
    return KVR_OK;
}

static bool seq_off(const kvr_batch_seq *s, int32_t l) { return s->offloaded && s->offloaded[l]; }

/* Sequence i's layer tables: ids inside their tiers, none twice (across its layers). */
static kvr_status batch_check_tables(kvr_batch_runner *r, const kvr_batch_seq *s, int32_t i,
                                     kvr_error *err) {
    const kvr_kv_pool *p = r->pool;
    const int32_t L = p->m->cfg.n_layers;
    const int64_t used = KVR_CEIL_DIV(s->n_past + s->n_tokens, (int64_t)p->block_tokens);
    if (++r->stamp == 0) { /* wrapped: clear the marks */
        memset(r->mark_dev, 0, (size_t)p->n_layer_blocks * sizeof *r->mark_dev);
        if (r->mark_host) memset(r->mark_host, 0, (size_t)r->n_mark_host * sizeof *r->mark_host);
        r->stamp = 1;
    }
    for (int32_t l = 0; l < L; l++) {
        const bool off = seq_off(s, l);
        if (off && p->host_blocks == 0)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "batch: sequence %d offloads layer %d but the pool has no host "
                                 "tier",
                                 i, l);
        if (off && used > p->staging_blocks)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "batch: sequence %d's offloaded layer %d covers %lld blocks, more "
                                 "than the %lld staging blocks",
                                 i, l, (long long)used, (long long)p->staging_blocks);
        const int32_t *t = s->blocks[l];
        const int64_t nb = off ? p->host_blocks : p->n_layer_blocks;
        uint32_t *mark = off ? r->mark_host : r->mark_dev;
        if (!t)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG, "batch: sequence %d has no table for "
                                                           "layer %d",
                                 i, l);
        for (int64_t b = 0; b < used; b++) {
            if (t[b] < 0 || t[b] >= nb)
                return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                     "batch: sequence %d's layer %d block %lld is %d, outside the "
                                     "%s's %lld",
                                     i, l, (long long)b, t[b], off ? "host tier" : "pool",
                                     (long long)nb);
            if (mark[t[b]] == r->stamp)
                return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                     "batch: sequence %d holds %s block %d twice", i,
                                     off ? "host" : "layer", t[b]);
            mark[t[b]] = r->stamp;
        }
    }
    return KVR_OK;
}

/* Take staging for layer l's offloaded sequences from sequence first on, as many as fit in the
 * free staging (all or nothing when whole), and queue their cached blocks' copies in (the
 * stream reload). false: none taken. */
static kvr_status stage_take(kvr_batch_runner *r, const kvr_batch_seq *seqs, int32_t n, int32_t l,
                             int32_t first, bool whole, stage_group *g, bool *took,
                             kvr_error *err) {
    kvr_kv_pool *p = r->pool;
    const int64_t bt = p->block_tokens, S = p->staging_blocks;
    int64_t free_blk = S - (p->stage_head - p->stage_tail), need = 0;
    int32_t end = first;
    *took = false;
    for (; end < n; end++) {
        if (!seq_off(&seqs[end], l)) continue;
        const int64_t u = KVR_CEIL_DIV(seqs[end].n_past + seqs[end].n_tokens, bt);
        if (need + u > free_blk) break;
        need += u;
    }
    if (need == 0 || (whole && end < n)) return KVR_OK;
    g->valid = true;
    g->layer = l;
    g->first = first;
    g->end = end;
    g->n_blk = need;
    g->ready = 0;
    int64_t k = 0, nc = 0;
    for (int32_t i = first; i < end; i++) {
        if (!seq_off(&seqs[i], l)) continue;
        const kvr_batch_seq *s = &seqs[i];
        g->off[i] = k;
        const int64_t u = KVR_CEIL_DIV(s->n_past + s->n_tokens, bt);
        const int64_t cached = KVR_CEIL_DIV(s->n_past, bt);
        for (int64_t b = 0; b < u; b++, k++) {
            const int64_t slot = (p->stage_head + k) % S;
            g->ids[k] = (int32_t)(p->n_layer_blocks + slot);
            g->ready = KVR_MAX(g->ready, p->stage_fence[slot]);
            if (b < cached) r->copies[nc++] = (kvr_kv_copy){g->ids[k], s->blocks[l][b], false};
        }
    }
    p->stage_head += need;
    if (nc > 0) { /* behind the staging blocks' earlier copies out: the copier keeps order */
        uint64_t f;
        KVR_TRY(kvr_op_kv_copy_submit(p, r->copies, nc, &f, err));
        g->ready = KVR_MAX(g->ready, f);
        r->last_fence = KVR_MAX(r->last_fence, f);
    }
    *took = true;
    return KVR_OK;
}

/* Run layer l's offloaded sequences of group g (their K/V rows already in the workspace): wait
 * for the staging, store the rows there, attend, queue the blocks the rows touched out to the
 * host tier, hand the staging back with that copy's fence. */
static kvr_status stage_run(kvr_batch_runner *r, const kvr_batch_seq *seqs, stage_group *g,
                            kvr_error *err) {
    kvr_kv_pool *p = r->pool;
    kvr_workspace *ws = r->ws;
    const int64_t bt = p->block_tokens, S = p->staging_blocks;
    const int32_t l = g->layer;
    if (kvr_op_kv_copy_done(p) < g->ready) {
        __atomic_fetch_add(&p->stage_waits, 1, __ATOMIC_RELAXED);
        KVR_TRY(kvr_op_kv_copy_wait(p, g->ready, err));
    }
    for (int64_t row = 0; row < ws->c; row++) r->slots[row] = -1;
    int32_t k = 0;
    int64_t nc = 0;
    for (int32_t i = g->first; i < g->end; i++) {
        const kvr_batch_seq *s = &seqs[i];
        if (!seq_off(s, l)) continue;
        const int32_t *ids = g->ids + g->off[i];
        for (int64_t j = 0; j < s->n_tokens; j++) {
            const int64_t pp = s->n_past + j;
            r->slots[r->row0[i] + j] = (int64_t)ids[pp / bt] * bt + pp % bt;
        }
        const int64_t u = KVR_CEIL_DIV(s->n_past + s->n_tokens, bt);
        r->pseq[k++] = (kvr_paged_seq){r->row0[i], s->n_tokens, s->n_past, ids, u};
        for (int64_t b = s->n_past / bt; b < u; b++)
            r->copies[nc++] = (kvr_kv_copy){ids[b], s->blocks[l][b], true};
    }
    KVR_TRY(kvr_op_kv_store(ws, p, l, r->slots, err));
    KVR_TRY(kvr_op_attn_paged(ws, p, l, r->pseq, k, err));
    uint64_t f;
    KVR_TRY(kvr_op_kv_copy_submit(p, r->copies, nc, &f, err));
    r->last_fence = KVR_MAX(r->last_fence, f);
    /* the group is the oldest staging handed out: back in order */
    KVR_ASSERT(p->stage_tail + g->n_blk <= p->stage_head);
    for (int64_t b = 0; b < g->n_blk; b++) p->stage_fence[(p->stage_tail + b) % S] = f;
    p->stage_tail += g->n_blk;
    g->valid = false;
    return KVR_OK;
}

/* The layers of an iteration whose sequences are all resident run exactly as without a host
 * tier: one store and one attention over all. */
static kvr_status batch_layers(kvr_batch_runner *r, const kvr_batch_seq *seqs, int32_t n,
                               bool any_off, kvr_error *err) {
    kvr_kv_pool *p = r->pool;
    kvr_workspace *ws = r->ws;
    const int64_t bt = p->block_tokens;
    const int32_t L = ws->m->cfg.n_layers;
    stage_group *cur = &r->g[0], *next = &r->g[1];
    cur->valid = next->valid = false;
    for (int32_t l = 0; l < L; l++) {
        bool has_off = false;
        for (int32_t i = 0; any_off && i < n && !has_off; i++) has_off = seq_off(&seqs[i], l);
        bool took = false;
        if (has_off && next->valid) { /* prefetched while the layer before computed */
            stage_group *t = cur;
            cur = next, next = t;
        } else if (has_off) {
            KVR_TRY(stage_take(r, seqs, n, l, 0, false, cur, &took, err));
            KVR_ASSERT(took); /* the staging is free and holds any one sequence's layer */
        }
        /* the next layer's staging and its copies in, now, while this layer computes -- when
         * this layer is one group and both fit */
        bool next_off = false;
        for (int32_t i = 0; any_off && l + 1 < L && i < n && !next_off; i++)
            next_off = seq_off(&seqs[i], l + 1);
        if (next_off && (!has_off || cur->end == n))
            KVR_TRY(stage_take(r, seqs, n, l + 1, 0, true, next, &took, err));
        KVR_TRY(kvr_op_pre(ws, l, err));
        int32_t k = 0;
        for (int32_t i = 0; i < n; i++) {
            const kvr_batch_seq *s = &seqs[i];
            const bool off = seq_off(s, l);
            for (int64_t j = 0; j < s->n_tokens; j++) {
                const int64_t pp = s->n_past + j;
                r->slots[r->row0[i] + j] = off ? -1 : (int64_t)s->blocks[l][pp / bt] * bt + pp % bt;
            }
            if (!off)
                r->pseq[k++] = (kvr_paged_seq){r->row0[i], s->n_tokens, s->n_past, s->blocks[l],
                                               s->n_blocks};
        }
        if (k > 0) {
            KVR_TRY(kvr_op_kv_store(ws, p, l, r->slots, err));
            KVR_TRY(kvr_op_attn_paged(ws, p, l, r->pseq, k, err));
        }
        while (has_off) {
            const int32_t end = cur->end;
            KVR_TRY(stage_run(r, seqs, cur, err));
            has_off = false;
            for (int32_t i = end; i < n && !has_off; i++) has_off = seq_off(&seqs[i], l);
            if (has_off) { /* the rest of the layer's sequences, in the staging freed */
                KVR_ASSERT(!next->valid);
                KVR_TRY(stage_take(r, seqs, n, l, end, false, cur, &took, err));
                KVR_ASSERT(took);
            }
        }
        KVR_TRY(kvr_op_post(ws, l, err));
    }
    return KVR_OK;
}

kvr_status kvr_batch_run(kvr_batch_runner *r, const kvr_batch_seq *seqs, int32_t n,
                         kvr_error *err) {
    r->n_last = 0;
    if (n < 1) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "batch: no sequences");
    const int64_t bt = r->pool->block_tokens;
    KVR_TRY(batch_reserve(r, n, err));
    int64_t rows = 0;
    bool any_off = false;
    for (int32_t i = 0; i < n; i++) {
        const kvr_batch_seq *s = &seqs[i];
        if (s->n_tokens < 1 || !s->tokens || s->n_past < 0)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "batch: sequence %d has %lld new tokens after %lld (need >= 1 "
                                 "after >= 0)",
                                 i, (long long)s->n_tokens, (long long)s->n_past);
        if (s->n_tokens > r->max_rows - rows)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "batch: more than the runner's %lld rows (at sequence %d)",
                                 (long long)r->max_rows, i);
        const int64_t used = KVR_CEIL_DIV(s->n_past + s->n_tokens, bt);
        if (!s->blocks || s->n_blocks < used)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "batch: sequence %d covers %lld tokens with %lld blocks of %lld "
                                 "(needs %lld)",
                                 i, (long long)(s->n_past + s->n_tokens), (long long)s->n_blocks,
                                 (long long)bt, (long long)used);
        KVR_TRY(batch_check_tables(r, s, i, err));
        for (int32_t l = 0; l < r->pool->m->cfg.n_layers && !any_off; l++)
            any_off = seq_off(s, l);
        rows += s->n_tokens;
    }
    rows = 0;
    for (int32_t i = 0; i < n; i++) {
        const kvr_batch_seq *s = &seqs[i];
        memcpy(r->tokens + rows, s->tokens, (size_t)s->n_tokens * sizeof *r->tokens);
        for (int64_t j = 0; j < s->n_tokens; j++) r->pos[rows + j] = s->n_past + j;
        r->row0[i] = rows;
        rows += s->n_tokens;
    }
    kvr_workspace *ws = r->ws;
    KVR_TRY(kvr_op_embed_rows(ws, r->tokens, r->pos, rows, err));
    kvr_status st = batch_layers(r, seqs, n, any_off, err);
    if (st != KVR_OK) { /* staging handed out stays busy until every copy queued is done */
        kvr_kv_pool *p = r->pool;
        for (int64_t b = p->stage_tail; b < p->stage_head; b++)
            p->stage_fence[b % p->staging_blocks] = r->last_fence;
        p->stage_tail = p->stage_head;
        return st;
    }
    int32_t k = 0; /* the sequences wanting logits: their last rows, in order */
    for (int32_t i = 0; i < n; i++) {
        r->slot[i] = seqs[i].want_logits ? k : -1;
        if (seqs[i].want_logits) r->rows[k++] = r->row0[i] + seqs[i].n_tokens - 1;
    }
    if (k > 0) KVR_TRY(kvr_op_head_rows(ws, r->rows, k, r->logits, err));
    r->n_last = n;
    return KVR_OK;
}

const float *kvr_batch_logits(const kvr_batch_runner *r, int32_t i) {
    if (i < 0 || i >= r->n_last || r->slot[i] < 0) return NULL;
    return r->logits + (size_t)r->slot[i] * (size_t)r->ws->m->cfg.vocab_size;
}
