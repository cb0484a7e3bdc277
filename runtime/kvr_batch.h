/* kvr_batch.h -- a paged KV pool and one batched iteration over several sequences (issue 12
 * item 2; docs/serving.md "The KV pool and the batched iteration").
 *
 * The pool holds n_blocks blocks of block_tokens tokens, every layer's K and V of each token,
 * in the backend's memory (host for cpu): block b's token t of layer l sits in pool slot
 * b * block_tokens + t of that layer. A sequence owns a block table (block ids, in any order,
 * anywhere in the pool) covering its cached positions; position p lives in block
 * blocks[p / block_tokens] at offset p % block_tokens. Who owns which block is the caller's
 * business (the serving engine's free list, serve/kvr_engine.h): the pool only stores.
 *
 * A batched iteration (kvr_batch_run) takes several sequences, each with n_tokens new tokens (a
 * prompt or a chunk of it, or the one token it sampled last) after n_past tokens already in the
 * pool. It embeds all rows at their positions, and per layer runs pre once over all rows (its
 * GEMMs batched), stores each row's K/V into its sequence's slot, runs attention per sequence
 * over its paged cache (row r of a sequence sees n_past + r + 1 keys, through the block table)
 * and post once over all rows; then the logits of the last row of every sequence that wants
 * them (one LM-head GEMM over those rows). The layer ops are kvr_backend.h's on a workspace of max_rows rows, plus the three below.
 *
 * Usage:   kvr_kv_pool *pool;  kvr_batch_runner *r;
 *          kvr_kv_pool_create(w, n_blocks, 16, &pool, &err);
 *          kvr_batch_runner_create(w, pool, 512, n_threads, &r, &err);
 *          kvr_batch_seq s[2] = {{prompt, 40, 0, blocks_a, 3, true},
 *                                {&last, 1, 87, blocks_b, 6, true}};
 *          kvr_batch_run(r, s, 2, &err);
 *          const float *lg = kvr_batch_logits(r, 0);   // V floats, host
 *          kvr_batch_runner_destroy(r);  kvr_kv_pool_destroy(pool);
 * Ownership: a pool borrows its weights, a runner its weights and pool; arrays passed in are
 *            borrowed for the call. Threads: a runner and its pool belong to one thread at a time.
 * Backends: cpu implements the pool; cuda returns KVR_ERR_UNSUPPORTED from kvr_kv_pool_create. */
#ifndef KVR_BATCH_H
#define KVR_BATCH_H
#include "kvr_backend.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvr_kv_pool kvr_kv_pool;

/* Bytes one block of block_tokens tokens takes: L x 2 (K, V) x n_kv_heads x head_dim x 4 x
 * block_tokens (fp32). */
KVR_API int64_t kvr_kv_block_bytes(const kvr_model_config *cfg, int32_t block_tokens);

/* A pool of n_blocks blocks (>= 1) of block_tokens tokens (>= 1) for w's model on w's backend.
 * The blocks start zeroed. Errors: KVR_ERR_INVALID_ARG, KVR_ERR_NOMEM (the message gives the
 * size), KVR_ERR_UNSUPPORTED for a backend without a pool. */
KVR_API kvr_status kvr_kv_pool_create(const kvr_weights *w, int64_t n_blocks, int32_t block_tokens,
                                      kvr_kv_pool **out, kvr_error *err);
KVR_API void kvr_kv_pool_destroy(kvr_kv_pool *p); /* NULL is a no-op */
KVR_API int64_t kvr_kv_pool_blocks(const kvr_kv_pool *p);
KVR_API int32_t kvr_kv_pool_block_tokens(const kvr_kv_pool *p);
KVR_API const kvr_model_config *kvr_kv_pool_config(const kvr_kv_pool *p); /* its model's */

// ----------------------------------------------------------------------------
// the seam ops behind kvr_batch_run (a workspace of rows, not of one chunk)

/* A sequence's rows in a batched workspace: rows [row0, row0 + n_rows) hold its new tokens at
 * positions n_past, n_past + 1, ...; blocks (n_blocks ids) cover positions [0, n_past + n_rows). */
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
 * block * block_tokens + offset). Errors: KVR_ERR_INVALID_ARG (a slot outside the pool, another
 * backend or model), KVR_ERR_UNSUPPORTED. */
KVR_API kvr_status kvr_op_kv_store(kvr_workspace *ws, kvr_kv_pool *p, int32_t layer,
                                   const int64_t *slots, kvr_error *err);
/* Attention of each sequence's rows over its paged cache, causal: row r of a sequence sees
 * positions [0, n_past + r] read through its block table; the output goes to the rows' attention
 * output (post reads it). The sequences' rows must not overlap and lie in [0, c).
 * Errors: KVR_ERR_INVALID_ARG (rows, a block table too short, block ids outside the pool),
 * KVR_ERR_NOMEM, KVR_ERR_UNSUPPORTED. */
KVR_API kvr_status kvr_op_attn_paged(kvr_workspace *ws, kvr_kv_pool *p, int32_t layer,
                                     const kvr_paged_seq *seqs, int32_t n, kvr_error *err);
/* Final norm + LM head of rows rows[0..n) of the current rows, logits to host (n, V floats,
 * row-major): one GEMM over the n rows where the backend has it (cpu), else kvr_op_head per row.
 * Errors: KVR_ERR_INVALID_ARG (a row outside the rows, n < 1), the backend's. */
KVR_API kvr_status kvr_op_head_rows(kvr_workspace *ws, const int64_t *rows, int32_t n,
                                    float *logits, kvr_error *err);

// ----------------------------------------------------------------------------
// the batched iteration

typedef struct kvr_batch_seq {
    const int32_t *tokens; /* n_tokens new token ids */
    int64_t n_tokens;      /* >= 1 */
    int64_t n_past;        /* tokens of the sequence already in the pool (>= 0) */
    const int32_t *blocks; /* block ids covering positions [0, n_past + n_tokens) */
    int64_t n_blocks;      /* >= ceil((n_past + n_tokens) / block_tokens) */
    bool want_logits;      /* the logits of its last row */
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
 * outside the pool, ids outside the vocabulary, the same block twice in one table), NOMEM,
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
