/* kvr_batch.h -- a paged KV pool in per-layer blocks, its host tier, and one batched iteration
 * over several sequences (issue 12 item 2, issue 13; docs/serving.md "The KV pool and the
 * batched iteration", "LayerKV in the runtime").
 *
 * The pool holds LAYER blocks: one layer's K and V of block_tokens tokens each, in the backend's
 * memory (host for cpu). kvr_kv_pool_create(w, n_blocks, bt) makes n_blocks x n_layers of them
 * (n_blocks token blocks' worth: the serving scheduler's unit), ids [0, n_blocks x n_layers).
 * A sequence owns one block table per layer (layer block ids, in any order, anywhere in the
 * pool) covering its cached positions; layer l's position p lives in block blocks[l][p / bt]
 * at offset p % bt. Any layer block can hold any layer. Who owns which block is the caller's
 * business (the serving engine's free lists, serve/kvr_engine.h): the pool only stores.
 * Without LayerKV a sequence simply takes one layer block per layer per token block
 * (kvr_kv_layer_tables spreads token-block ids that way).
 *
 * The host tier (kvr_kv_pool_add_host; LayerKV): a second set of layer blocks in host memory (on
 * cpu a separate region) and staging layer blocks in the device pool, with an asynchronous
 * copier (on cpu its own thread) between them. A sequence may keep some layers in the host tier
 * (kvr_batch_seq.offloaded): their tables hold host block ids. In an iteration such a layer's
 * new K/V rows go to staging blocks, attention reads them there, and the copier moves them out
 * to the host blocks while the next layers compute; a staging block is reused only after its
 * copy has completed (a fence). A layer with cached positions in the host tier (n_past > 0: the
 * stream reload of a decode step) is first copied into staging -- for the next offloaded layer
 * while the current layer computes, where staging holds both. A prefill (n_past 0) never reads
 * an offloaded layer back. kvr_kv_pool_copy moves blocks between the tiers synchronously (the
 * swap reload; the profiler's host-copy samples).
 *
 * A batched iteration (kvr_batch_run) takes several sequences, each with n_tokens new tokens (a
 * prompt or a chunk of it, or the one token it sampled last) after n_past tokens already in the
 * pool. It embeds all rows at their positions, and per layer runs pre once over all rows (its
 * GEMMs batched), stores each row's K/V into its sequence's slot of that layer, runs attention
 * per sequence over its paged cache (row r of a sequence sees n_past + r + 1 keys, through the
 * layer's block table) and post once over all rows; then the logits of the last row of every
 * sequence that wants them (one LM-head GEMM over those rows). The layer ops are
 * kvr_backend.h's on a workspace of max_rows rows, plus the ones below.
 *
 * Usage:   kvr_kv_pool *pool;  kvr_batch_runner *r;
 *          kvr_kv_pool_create(w, n_blocks, 16, &pool, &err);
 *          kvr_batch_runner_create(w, pool, 512, n_threads, &r, &err);
 *          int32_t ids_a[L * 3];  const int32_t *tab_a[L];   // token blocks {4, 0, 9}
 *          kvr_kv_layer_tables(L, (int32_t[]){4, 0, 9}, 3, ids_a, tab_a);
 *          kvr_batch_seq s[2] = {{prompt, 40, 0, tab_a, 3, true},
 *                                {&last, 1, 87, tab_b, 6, true}};
 *          kvr_batch_run(r, s, 2, &err);
 *          const float *lg = kvr_batch_logits(r, 0);   // V floats, host
 *          kvr_batch_runner_destroy(r);  kvr_kv_pool_destroy(pool);
 * Ownership: a pool borrows its weights, a runner its weights and pool; arrays passed in are
 *            borrowed for the call. Threads: a runner and its pool belong to one thread at a
 *            time (the copier is the pool's own).
 * Backends: cpu implements the pool and the host tier (host memory; the copier a thread); cuda
 * too (docs/gpu.md: blocks in device memory, the host tier in pinned host memory, the copier a
 * second stream whose fences are events; compiled, not yet run on a GPU). */
#ifndef KVR_BATCH_H
#define KVR_BATCH_H
#include "kvr_backend.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvr_kv_pool kvr_kv_pool;

/* Bytes of one token block in all layers: L x 2 (K, V) x n_kv_heads x head_dim x 4 x
 * block_tokens (fp32); kvr_kv_layer_block_bytes: one layer's, that divided by L. */
KVR_API int64_t kvr_kv_block_bytes(const kvr_model_config *cfg, int32_t block_tokens);
KVR_API int64_t kvr_kv_layer_block_bytes(const kvr_model_config *cfg, int32_t block_tokens);

/* A pool of n_blocks x n_layers layer blocks (n_blocks >= 1) of block_tokens tokens (>= 1) for
 * w's model on w's backend. The blocks start zeroed. Errors: KVR_ERR_INVALID_ARG, KVR_ERR_NOMEM
 * (the message gives the size), KVR_ERR_UNSUPPORTED for a backend without a pool. */
KVR_API kvr_status kvr_kv_pool_create(const kvr_weights *w, int64_t n_blocks, int32_t block_tokens,
                                      kvr_kv_pool **out, kvr_error *err);
KVR_API void kvr_kv_pool_destroy(kvr_kv_pool *p); /* NULL is a no-op; stops the copier */
KVR_API int64_t kvr_kv_pool_blocks(const kvr_kv_pool *p);       /* n_blocks (token blocks) */
KVR_API int64_t kvr_kv_pool_layer_blocks(const kvr_kv_pool *p); /* n_blocks x n_layers */
KVR_API int32_t kvr_kv_pool_block_tokens(const kvr_kv_pool *p);
KVR_API const kvr_model_config *kvr_kv_pool_config(const kvr_kv_pool *p); /* its model's */

/* Per-layer tables for token blocks: layer l of token block tb[b] is layer block
 * tb[b] x n_layers + l; ids (n_layers x n) receives them, tables[l] = ids + l x n. */
KVR_API void kvr_kv_layer_tables(int32_t n_layers, const int32_t *tb, int64_t n, int32_t *ids,
                                 const int32_t **tables);

/* The host tier: host_blocks layer blocks in host memory (ids [0, host_blocks)) and
 * staging_blocks layer blocks of staging in the device's memory (at least the most blocks one
 * offloaded layer of one sequence covers in an iteration; twice what a layer of an iteration's
 * offloaded sequences covers lets the copy of a layer overlap the next layer's compute), and
 * the copier (cpu: a thread). Once per pool. Errors: KVR_ERR_INVALID_ARG (counts < 1, a second
 * tier), NOMEM (the size), KVR_ERR_UNSUPPORTED (a backend without one). */
KVR_API kvr_status kvr_kv_pool_add_host(kvr_kv_pool *p, int64_t host_blocks,
                                        int64_t staging_blocks, kvr_error *err);
KVR_API int64_t kvr_kv_pool_host_blocks(const kvr_kv_pool *p);    /* 0: no host tier */
KVR_API int64_t kvr_kv_pool_staging_blocks(const kvr_kv_pool *p); /* 0: no host tier */

/* One layer block's copy between the tiers: device pool block dev (or a staging block, ids
 * from kvr_kv_pool_layer_blocks() on) and host block host, out to the host tier or back in. */
typedef struct kvr_kv_copy {
    int32_t dev, host;
    bool to_host;
} kvr_kv_copy;
/* n copies through the copier, waiting for them (swap reload: host -> fresh device blocks).
 * Errors: KVR_ERR_INVALID_ARG (no host tier, an id outside its tier), the backend's. */
KVR_API kvr_status kvr_kv_pool_copy(kvr_kv_pool *p, const kvr_kv_copy *c, int64_t n,
                                    kvr_error *err);

typedef struct kvr_kv_pool_stats {
    int64_t copies_out, copies_in; /* layer blocks the copier has moved, each way */
    int64_t stage_waits;  /* times the iteration waited for a staging block's copy to complete */
    double copy_busy_us;  /* the copier's time copying */
} kvr_kv_pool_stats;
KVR_API kvr_kv_pool_stats kvr_kv_pool_get_stats(kvr_kv_pool *p);

// ----------------------------------------------------------------------------
// the seam ops behind kvr_batch_run (a workspace of rows, not of one chunk)

/* A sequence's rows in a batched workspace: rows [row0, row0 + n_rows) hold its new tokens at
 * positions n_past, n_past + 1, ...; blocks (n_blocks layer block ids, of the device pool or its
 * staging) cover one layer's positions [0, n_past + n_rows). */
typedef struct kvr_paged_seq {
    int64_t row0, n_rows, n_past;
    const int32_t *blocks;
    int64_t n_blocks;
} kvr_paged_seq;

/* Embed c tokens as rows [0, c) of ws, row r at position pos[r] (RoPE angles per row); the
 * workspace's chunk becomes c rows at pos0 0, so pre writes their K/V to cache rows [0, c).
 * Errors: KVR_ERR_INVALID_ARG (ids outside the vocabulary, c outside [1, max_chunk], a negative
 * position), KVR_ERR_UNSUPPORTED. */
KVR_API kvr_status kvr_op_embed_rows(kvr_workspace *ws, const int32_t *tokens, const int64_t *pos,
                                     int64_t c, kvr_error *err);
/* Layer's K/V cache rows [0, c) of ws (what pre wrote) into pool slots slots[0..c) (slot =
 * layer block * block_tokens + offset; layer blocks from kvr_kv_pool_layer_blocks() on are the
 * host tier's staging blocks; slot -1: the row is not stored by this call). Errors:
 * KVR_ERR_INVALID_ARG (a slot outside the pool, another backend or model), UNSUPPORTED. */
KVR_API kvr_status kvr_op_kv_store(kvr_workspace *ws, kvr_kv_pool *p, int32_t layer,
                                   const int64_t *slots, kvr_error *err);
/* Attention of each sequence's rows over its paged cache, causal: row r of a sequence sees
 * positions [0, n_past + r] read through its block table; the output goes to the rows' attention
 * output (post reads it). The sequences' rows must not overlap and lie in [0, c).
 * Errors: KVR_ERR_INVALID_ARG (rows, a block table too short, block ids outside the pool),
 * KVR_ERR_NOMEM, KVR_ERR_UNSUPPORTED. */
KVR_API kvr_status kvr_op_attn_paged(kvr_workspace *ws, kvr_kv_pool *p, int32_t layer,
                                     const kvr_paged_seq *seqs, int32_t n, kvr_error *err);
/* The copier, asynchronously: n copies queued in order behind the earlier ones; *fence
 * completes when they have (kvr_op_kv_copy_wait). Copies run in submission order. Errors: as
 * kvr_kv_pool_copy. */
KVR_API kvr_status kvr_op_kv_copy_submit(kvr_kv_pool *p, const kvr_kv_copy *c, int64_t n,
                                         uint64_t *fence, kvr_error *err);
/* Wait until fence has completed (a fence of 0 or one already passed returns at once). */
KVR_API kvr_status kvr_op_kv_copy_wait(kvr_kv_pool *p, uint64_t fence, kvr_error *err);
/* The latest fence that has completed. */
KVR_API uint64_t kvr_op_kv_copy_done(kvr_kv_pool *p);
/* Final norm + LM head of rows rows[0..n) of the current rows, logits to host (n, V floats,
 * row-major): one GEMM over the n rows where the backend has it (cpu, cuda), else kvr_op_head
 * per row. Errors: KVR_ERR_INVALID_ARG (a row outside the rows, n < 1), the backend's. */
KVR_API kvr_status kvr_op_head_rows(kvr_workspace *ws, const int64_t *rows, int32_t n,
                                    float *logits, kvr_error *err);

// ----------------------------------------------------------------------------
// the batched iteration

typedef struct kvr_batch_seq {
    const int32_t *tokens; /* n_tokens new token ids */
    int64_t n_tokens;      /* >= 1 */
    int64_t n_past;        /* tokens of the sequence already cached (>= 0) */
    /* blocks[l], l < n_layers: layer l's block table, n_blocks layer block ids covering
     * positions [0, n_past + n_tokens): device pool blocks, host-tier blocks where offloaded */
    const int32_t *const *blocks;
    int64_t n_blocks;      /* >= ceil((n_past + n_tokens) / block_tokens) */
    bool want_logits;      /* the logits of its last row */
    const bool *offloaded; /* NULL: every layer in the device pool; else offloaded[l]: layer l's
                            * table is of the host tier (kvr_kv_pool_add_host) */
} kvr_batch_seq;

typedef struct kvr_batch_runner kvr_batch_runner;

/* A runner for iterations of up to max_rows rows in all (the sum of n_tokens), with n_threads
 * threads (cpu). Allocates a workspace of max_rows rows and V floats of logits per sequence on
 * demand. Errors: KVR_ERR_INVALID_ARG (another backend or model than the pool's, max_rows < 1),
 * KVR_ERR_NOMEM, the workspace's. */
KVR_API kvr_status kvr_batch_runner_create(const kvr_weights *w, kvr_kv_pool *pool,
                                           int64_t max_rows, int32_t n_threads,
                                           kvr_batch_runner **out, kvr_error *err);
KVR_API void kvr_batch_runner_destroy(kvr_batch_runner *r); /* NULL is a no-op */
KVR_API int64_t kvr_batch_runner_max_rows(const kvr_batch_runner *r);

/* One iteration over n sequences (>= 1, in any order). Errors: KVR_ERR_INVALID_ARG naming the
 * sequence (no tokens, more rows than max_rows in all, a block table too short or with ids
 * outside its tier, ids outside the vocabulary, the same block twice in a sequence's tables, an
 * offloaded layer without a host tier or covering more blocks than the staging holds), NOMEM,
 * the backend's. */
KVR_API kvr_status kvr_batch_run(kvr_batch_runner *r, const kvr_batch_seq *seqs, int32_t n,
                                 kvr_error *err);
/* The logits (V host floats) of sequence i of the last kvr_batch_run; NULL when it did not want
 * them or i is out of range. Valid until the next run. */
KVR_API const float *kvr_batch_logits(const kvr_batch_runner *r, int32_t i);

#ifdef __cplusplus
}
#endif
#endif /* KVR_BATCH_H */
