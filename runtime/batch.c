/* batch.c -- the paged KV pool's front end, its seam ops (kvr_batch.h) and the batched
 * iteration: embed all rows, per layer pre / K/V into the pool / paged attention / post, then
 * the logits of the sequences that want them. */
#include "backend_internal.h"
#include "runtime_internal.h"

#include <stdlib.h>
#include <string.h>

int64_t kvr_kv_block_bytes(const kvr_model_config *cfg, int32_t block_tokens) {
    return (int64_t)cfg->n_layers * 2 * cfg->n_kv_heads * cfg->head_dim * (int64_t)sizeof(float) *
           block_tokens;
}

static kvr_status pool_unsupported(const kvr_backend *be, kvr_error *err) {
    return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                         "backend %s has no paged KV pool (batched iterations run on cpu)",
                         be->name);
}

kvr_status kvr_kv_pool_create(const kvr_weights *w, int64_t n_blocks, int32_t block_tokens,
                              kvr_kv_pool **out, kvr_error *err) {
    *out = NULL;
    if (n_blocks < 1 || block_tokens < 1 || n_blocks > INT32_MAX / block_tokens)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "KV pool: %lld blocks of %d tokens (need >= 1 each, at most 2^31 "
                             "tokens)",
                             (long long)n_blocks, block_tokens);
    if (!w->be->pool_create) return pool_unsupported(w->be, err);
    kvr_kv_pool *p = NULL;
    KVR_TRY(w->be->pool_create(w, n_blocks, block_tokens, &p, err));
    p->be = w->be;
    p->m = w->m;
    p->n_blocks = n_blocks;
    p->block_tokens = block_tokens;
    *out = p;
    return KVR_OK;
}

void kvr_kv_pool_destroy(kvr_kv_pool *p) {
    if (p) p->be->pool_destroy(p);
}

int64_t kvr_kv_pool_blocks(const kvr_kv_pool *p) { return p->n_blocks; }
int32_t kvr_kv_pool_block_tokens(const kvr_kv_pool *p) { return p->block_tokens; }
const kvr_model_config *kvr_kv_pool_config(const kvr_kv_pool *p) { return &p->m->cfg; }

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
    const int64_t n_slots = p->n_blocks * p->block_tokens;
    for (int64_t r = 0; r < ws->c; r++)
        if (slots[r] < 0 || slots[r] >= n_slots)
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
        for (int64_t b = 0; b < used; b++)
            if (s->blocks[b] < 0 || s->blocks[b] >= p->n_blocks)
                return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                     "paged attention: sequence %d's block %lld is %d, outside "
                                     "the pool's %lld",
                                     i, (long long)b, s->blocks[b], (long long)p->n_blocks);
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

struct kvr_batch_runner {
    kvr_kv_pool *pool;
    kvr_workspace *ws;
    int64_t max_rows;
    int32_t *tokens;      /* (max_rows) */
    int64_t *pos, *slots; /* (max_rows) */
    kvr_paged_seq *pseq;  /* (cap) */
    float *logits;        /* (cap, V): the wanted logits, in sequence order */
    int32_t *slot;        /* (cap) sequence -> its row of logits, -1: none */
    int64_t *rows;        /* (cap) the rows the head runs on */
    int32_t cap, n_last;
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
    kvr_status st = KVR_OK;
    if (!r->tokens || !r->pos || !r->slots)
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
    free(r->slot), free(r->rows);
    free(r);
}

int64_t kvr_batch_runner_max_rows(const kvr_batch_runner *r) { return r->max_rows; }

static kvr_status batch_reserve(kvr_batch_runner *r, int32_t n, kvr_error *err) {
    if (n <= r->cap) return KVR_OK;
    const size_t V = (size_t)r->ws->m->cfg.vocab_size;
    kvr_paged_seq *ps = realloc(r->pseq, (size_t)n * sizeof *ps);
    if (ps) r->pseq = ps;
    int32_t *sl = realloc(r->slot, (size_t)n * sizeof *sl);
    if (sl) r->slot = sl;
    int64_t *rw = realloc(r->rows, (size_t)n * sizeof *rw);
    if (rw) r->rows = rw;
    float *lg = realloc(r->logits, (size_t)n * V * sizeof *lg);
    if (lg) r->logits = lg;
    if (!ps || !sl || !rw || !lg)
        return kvr_error_set(err, KVR_ERR_NOMEM, "batch runner: out of memory for %d sequences",
                             n);
    r->cap = n;
    return KVR_OK;
}

kvr_status kvr_batch_run(kvr_batch_runner *r, const kvr_batch_seq *seqs, int32_t n,
                         kvr_error *err) {
    r->n_last = 0;
    if (n < 1) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "batch: no sequences");
    const int64_t bt = r->pool->block_tokens, nb = r->pool->n_blocks;
    int64_t rows = 0;
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
        for (int64_t b = 0; b < used; b++) {
            if (s->blocks[b] < 0 || s->blocks[b] >= nb)
                return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                     "batch: sequence %d's block %lld is %d, outside the pool's "
                                     "%lld",
                                     i, (long long)b, s->blocks[b], (long long)nb);
            for (int64_t b2 = 0; b2 < b; b2++)
                if (s->blocks[b2] == s->blocks[b])
                    return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                         "batch: sequence %d holds block %d twice", i,
                                         s->blocks[b]);
        }
        rows += s->n_tokens;
    }
    KVR_TRY(batch_reserve(r, n, err));
    rows = 0;
    for (int32_t i = 0; i < n; i++) {
        const kvr_batch_seq *s = &seqs[i];
        memcpy(r->tokens + rows, s->tokens, (size_t)s->n_tokens * sizeof *r->tokens);
        for (int64_t j = 0; j < s->n_tokens; j++) {
            const int64_t p = s->n_past + j;
            r->pos[rows + j] = p;
            r->slots[rows + j] = (int64_t)s->blocks[p / bt] * bt + p % bt;
        }
        r->pseq[i] = (kvr_paged_seq){rows, s->n_tokens, s->n_past, s->blocks, s->n_blocks};
        rows += s->n_tokens;
    }
    kvr_workspace *ws = r->ws;
    KVR_TRY(kvr_op_embed_rows(ws, r->tokens, r->pos, rows, err));
    for (int32_t l = 0; l < ws->m->cfg.n_layers; l++) {
        KVR_TRY(kvr_op_pre(ws, l, err));
        KVR_TRY(kvr_op_kv_store(ws, r->pool, l, r->slots, err));
        KVR_TRY(kvr_op_attn_paged(ws, r->pool, l, r->pseq, n, err));
        KVR_TRY(kvr_op_post(ws, l, err));
    }
    int32_t k = 0; /* the sequences wanting logits: their last rows, in order */
    for (int32_t i = 0; i < n; i++) {
        r->slot[i] = seqs[i].want_logits ? k : -1;
        if (seqs[i].want_logits) r->rows[k++] = r->pseq[i].row0 + r->pseq[i].n_rows - 1;
    }
    if (k > 0) KVR_TRY(kvr_op_head_rows(ws, r->rows, k, r->logits, err));
    r->n_last = n;
    return KVR_OK;
}

const float *kvr_batch_logits(const kvr_batch_runner *r, int32_t i) {
    if (i < 0 || i >= r->n_last || r->slot[i] < 0) return NULL;
    return r->logits + (size_t)r->slot[i] * (size_t)r->ws->m->cfg.vocab_size;
}
