/* backend_internal.h -- the table of operations behind kvr_backend.h and the structs every
 * backend's objects start with. The front end (backend.c) checks the arguments the contract
 * states (layer index, chunk bounds, row ranges) and keeps the current chunk, so a backend's
 * functions only compute. A backend registers by defining one `const kvr_backend` and adding it
 * to the table in backend.c (under its KVR_USE_* macro). */
#ifndef KVR_BACKEND_INTERNAL_H
#define KVR_BACKEND_INTERNAL_H
#include "kvr_backend.h"
#include "kvr_batch.h"

struct kvr_backend {
    const char *name;
    kvr_mem_space mem_space;
    /* NULL, or whether this machine can run the backend (cuda: a device is present); checked
     * by kvr_backend_get, whose error it returns */
    kvr_status (*available)(kvr_error *err);
    kvr_backend_info (*info)(void);
    /* weights: a struct starting with kvr_weights (its be and m filled by the backend) */
    kvr_status (*weights_upload)(const kvr_backend *b, const kvr_model *m, kvr_weights **out,
                                 kvr_error *err);
    void (*weights_free)(kvr_weights *w);
    /* workspace: a struct starting with kvr_workspace; the front end fills the common fields */
    kvr_status (*ws_create)(const kvr_weights *w, int64_t max_chunk, int64_t max_ctx,
                            int32_t n_threads, kvr_workspace **out, kvr_error *err);
    void (*ws_destroy)(kvr_workspace *ws);
    /* NULL: nothing to ready (kvr_workspace_prepare_thread) */
    kvr_status (*prepare_thread)(kvr_workspace *ws, kvr_error *err);
    /* ops: arguments already checked; ws->c and ws->pos0 hold the chunk */
    kvr_status (*set_chunk)(kvr_workspace *ws, kvr_error *err); /* RoPE angles of the chunk */
    kvr_status (*embed)(kvr_workspace *ws, const int32_t *tokens, kvr_error *err);
    kvr_status (*pre)(kvr_workspace *ws, int32_t layer, kvr_error *err);
    kvr_status (*attn)(kvr_workspace *ws, int32_t layer, float *lse, kvr_error *err);
    /* NULL: the backend has no blockwise attention (KVR_ERR_UNSUPPORTED) */
    kvr_status (*attn_block)(kvr_workspace *ws, const void *k, const void *v, int64_t kpos0,
                             int64_t kn, bool first, kvr_error *err);
    kvr_status (*post)(kvr_workspace *ws, int32_t layer, kvr_error *err);
    kvr_status (*head)(kvr_workspace *ws, int32_t *top, kvr_error *err);
    /* copies: ranges already checked */
    kvr_status (*kv_to_host)(kvr_workspace *ws, int32_t layer, int64_t r0, int64_t n, float *k,
                             float *v, kvr_error *err);
    /* rows of src's cache into dst's (same backend and model); NULL: KVR_ERR_UNSUPPORTED */
    kvr_status (*kv_copy)(kvr_workspace *dst, kvr_workspace *src, int32_t layer, int64_t r0,
                          int64_t n, kvr_error *err);
    kvr_status (*logits_to_host)(kvr_workspace *ws, float *out, kvr_error *err);
    kvr_status (*x_from_host)(kvr_workspace *ws, const float *x, int64_t rows, kvr_error *err);
    kvr_status (*x_to_host)(kvr_workspace *ws, float *x, int64_t rows, kvr_error *err);
    void (*kv_buffers)(kvr_workspace *ws, int32_t layer, void **k, void **v);
    /* events: a struct starting with kvr_event */
    kvr_status (*event_create)(kvr_workspace *ws, kvr_event **out, kvr_error *err);
    void (*event_destroy)(kvr_event *ev);
    kvr_status (*event_record)(kvr_event *ev, kvr_error *err);
    kvr_status (*event_elapsed_us)(const kvr_event *start, const kvr_event *end, double *us,
                                   kvr_error *err);
    kvr_status (*sync)(kvr_workspace *ws, kvr_error *err);
    void *(*stream)(kvr_workspace *ws); /* the ops' stream for transports; NULL entry: none */
    /* the paged KV pool and its ops (kvr_batch.h); NULL: KVR_ERR_UNSUPPORTED. pool: a struct
     * starting with kvr_kv_pool (the front end fills the common fields) */
    kvr_status (*pool_create)(const kvr_weights *w, int64_t n_blocks, int32_t block_tokens,
                              kvr_kv_pool **out, kvr_error *err);
    void (*pool_destroy)(kvr_kv_pool *p);
    /* RoPE angles of rows [0, ws->c) at positions pos (ws->pos0 is 0) */
    kvr_status (*set_rows)(kvr_workspace *ws, const int64_t *pos, kvr_error *err);
    kvr_status (*kv_store)(kvr_workspace *ws, kvr_kv_pool *p, int32_t layer, const int64_t *slots,
                           kvr_error *err);
    kvr_status (*attn_paged)(kvr_workspace *ws, kvr_kv_pool *p, int32_t layer,
                             const kvr_paged_seq *seqs, int32_t n, kvr_error *err);
    /* the host tier (kvr_kv_pool_add_host; counts checked); NULL: KVR_ERR_UNSUPPORTED. The
     * copier runs copies in submission order; fences count up from 1 */
    kvr_status (*host_create)(kvr_kv_pool *p, int64_t host_blocks, int64_t staging_blocks,
                              kvr_error *err);
    kvr_status (*copy_submit)(kvr_kv_pool *p, const kvr_kv_copy *c, int64_t n, uint64_t *fence,
                              kvr_error *err); /* ids checked; n >= 1 */
    kvr_status (*copy_wait)(kvr_kv_pool *p, uint64_t fence, kvr_error *err);
    uint64_t (*copy_done)(kvr_kv_pool *p);
    /* tests: hold (true) the copier before its next copy, or let it go on */
    void (*copy_hold)(kvr_kv_pool *p, bool hold);
    void (*copy_stats)(kvr_kv_pool *p, kvr_kv_pool_stats *st); /* copies and busy time */
    /* final norm + LM head of rows rows[0..n) (checked) into host logits (n, V); NULL: the
     * front end runs head once per row */
    kvr_status (*head_rows)(kvr_workspace *ws, const int64_t *rows, int32_t n, float *logits,
                            kvr_error *err);
};

struct kvr_kv_pool {
    const kvr_backend *be;
    const kvr_model *m;
    int64_t n_blocks;       /* token blocks */
    int32_t block_tokens;
    int64_t n_layer_blocks; /* n_blocks x n_layers: ids [0, n_layer_blocks) */
    int64_t host_blocks, staging_blocks; /* the host tier (0: none); staging ids after the pool's */
    /* the staging ring (batch.c): blocks handed out in order [tail, head) (counters; block
     * head % staging_blocks next), each with the fence its last copy completes at */
    uint64_t *stage_fence;
    int64_t stage_head, stage_tail;
    int64_t stage_waits; /* __atomic: a test thread reads it while a run waits */
};

struct kvr_weights {
    const kvr_backend *be;
    const kvr_model *m;
};

struct kvr_workspace {
    const kvr_backend *be;
    const kvr_weights *w;
    const kvr_model *m;
    int64_t max_chunk, max_ctx;
    int32_t n_threads;
    int64_t c, pos0; /* current chunk; c = 0 before the first embed / set_chunk */
    double dequant_us; /* cpu: time spent dequantizing weights for GEMMs, summed (benches) */
};

struct kvr_event {
    kvr_workspace *ws;
    bool recorded;
};

#ifdef __cplusplus
extern "C" {
#endif
/* Tests: hold the pool's copier before its next copy (true) or release it (batch.c). */
void kvr_kv_pool_copier_hold(kvr_kv_pool *p, bool hold);

/* The CPU backend (backend_cpu.c). */
extern const kvr_backend backend_cpu;
#ifdef KVR_USE_CUDA
extern const kvr_backend backend_cuda; /* runtime/cuda/backend_cuda.cu */
#endif
#ifdef __cplusplus
}
#endif

#endif
