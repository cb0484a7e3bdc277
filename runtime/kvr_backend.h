/* kvr_backend.h -- the backend seam: where the layer ops run and where their buffers live.
 *
 * A backend (cpu; cuda when compiled in) is a table of operations behind these functions:
 *   - weights: a model's weights in the backend's format (cpu borrows the model's arena, in the
 *     stored types, and dequantizes per GEMM into its workspace's scratch);
 *   - a workspace for chunks of up to max_chunk tokens over up to max_ctx positions: every
 *     activation, and a KV cache of L x max_ctx rows of NKV*HS floats for K and for V;
 *   - the layer ops on a workspace: embed, pre (norm, QKV, RoPE, K/V into the cache), attn (c
 *     queries over the P-token prefix plus the chunk, causal; optionally the per-row log-sum-exp
 *     of the softmax), attn_block (the same over an external K/V block, merged by log-sum-exp:
 *     ring schedules), post (O-proj, residual, norm, SwiGLU MLP, residual) and head (final norm +
 *     LM head on the last token, optionally its argmax);
 *   - copies between the workspace and host memory (KV rows, logits, the hidden state) and the
 *     raw K/V buffers with their memory space, for a transport to move;
 *   - events that time work the backend may run asynchronously, and synchronisation.
 * The schedules, the profiler and every tool reach the ops only through these functions, so a
 * profile times exactly what a prefill runs on the same backend. docs/backend.md states each
 * op's contract and tests/test_backend_ops.c checks every registered backend against it.
 *
 * Usage:   const kvr_backend *be;  kvr_weights *w;  kvr_workspace *ws;
 *          if (kvr_backend_get("cpu", &be, &err) != KVR_OK) ...;
 *          kvr_weights_upload(be, model, &w, &err);
 *          kvr_workspace_create(w, c, ctx, n_threads, &ws, &err);
 *          kvr_op_embed(ws, ids, c, pos0, &err);
 *          for (l = 0; l < L; l++) { kvr_op_pre(ws, l, &err); kvr_op_attn(ws, l, NULL, &err);
 *                                    kvr_op_post(ws, l, &err); }
 *          int32_t tok;  kvr_op_head(ws, &tok, &err);
 *          kvr_workspace_destroy(ws);  kvr_weights_free(w);
 * Ownership: backends are static (never freed). Weights borrow the model (it must outlive them);
 *            a workspace borrows its weights; events belong to their workspace's lifetime.
 *            Host arrays passed to these functions are borrowed for the call.
 * Threads:  weights may be shared by every rank; a workspace (and its events) belongs to one
 *           thread at a time. Every op returns KVR_OK or an error with a message (bad arguments:
 *           KVR_ERR_INVALID_ARG; device failures: KVR_ERR_CUDA); none prints.
 */
#ifndef KVR_BACKEND_H
#define KVR_BACKEND_H
#include "kvr_model.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvr_backend kvr_backend;     /* one registered backend */
typedef struct kvr_weights kvr_weights;     /* a model's weights on a backend */
typedef struct kvr_workspace kvr_workspace; /* one rank's activations and KV cache */
typedef struct kvr_event kvr_event;         /* a point in a workspace's stream of work */

// ----------------------------------------------------------------------------
// registry

/* The backend called name ("cpu", "cuda").
 * Errors: KVR_ERR_UNSUPPORTED for a known backend this build does not contain ("cuda" without
 * KVR_USE_CUDA: "not available: this kvr was built without the CUDA backend"); KVR_ERR_CUDA for
 * one built in that this machine cannot run ("no CUDA device: <the CUDA runtime's reason>");
 * KVR_ERR_INVALID_ARG for an unknown name (the message lists the known names). */
KVR_API kvr_status kvr_backend_get(const char *name, const kvr_backend **out, kvr_error *err);
/* The backends compiled into this build, in registration order (0 is "cpu"); NULL past the end.
 * A backend listed here may still be unusable on this machine: kvr_backend_get says. */
KVR_API const kvr_backend *kvr_backend_at(int32_t i);
KVR_API int32_t kvr_backend_count(void);
KVR_API const char *kvr_backend_name(const kvr_backend *b);
/* Where its workspaces' buffers live (HOST for cpu). */
KVR_API kvr_mem_space kvr_backend_mem_space(const kvr_backend *b);

typedef struct kvr_backend_info {
    const char *name;        /* "cpu" */
    kvr_mem_space mem_space;
    const char *device;      /* what runs the ops: "host CPU", a GPU's name */
    const char *library;     /* the math library's build: cpu = OpenBLAS's config string */
    const char *dtype;       /* weights and activations: "f32" */
} kvr_backend_info;
/* Static strings; never NULL (empty when unknown). */
KVR_API kvr_backend_info kvr_backend_get_info(const kvr_backend *b);

// ----------------------------------------------------------------------------
// weights and workspaces

/* The model's weights in the backend's format (cpu: borrows the model's arena, no copy).
 * Errors: KVR_ERR_NOMEM, KVR_ERR_CUDA. */
KVR_API kvr_status kvr_weights_upload(const kvr_backend *b, const kvr_model *m, kvr_weights **out,
                                      kvr_error *err);
KVR_API void kvr_weights_free(kvr_weights *w); /* NULL is a no-op */

/* Workspace for chunks of up to max_chunk tokens attending over up to max_ctx positions, with
 * n_threads threads for the ops (cpu). Allocates every activation and the KV cache once; the
 * cache starts zeroed (cpu: every buffer, so all its pages are touched here, not by the first
 * op). Errors: KVR_ERR_INVALID_ARG (1 <= max_chunk <= max_ctx, threads 1..1024),
 * KVR_ERR_NOMEM (the message gives the size). */
KVR_API kvr_status kvr_workspace_create(const kvr_weights *w, int64_t max_chunk, int64_t max_ctx,
                                        int32_t n_threads, kvr_workspace **out, kvr_error *err);
KVR_API void kvr_workspace_destroy(kvr_workspace *ws); /* NULL is a no-op */
KVR_API const kvr_backend *kvr_workspace_backend(const kvr_workspace *ws);
KVR_API const kvr_model_config *kvr_workspace_config(const kvr_workspace *ws);

// ----------------------------------------------------------------------------
// layer ops (D = d_model, NH/NKV heads of HS, c = the current chunk at global positions pos0..)

/* Embed c host token ids sitting at global positions [pos0, pos0 + c) into x (c, D) and set the
 * chunk (with its RoPE angles). Errors: KVR_ERR_INVALID_ARG for ids outside the vocabulary or a
 * chunk that does not fit the workspace. */
KVR_API kvr_status kvr_op_embed(kvr_workspace *ws, const int32_t *tokens, int64_t c, int64_t pos0,
                                kvr_error *err);
/* Set the chunk (c tokens at pos0) without embedding, for timing harnesses: x keeps its data. */
KVR_API kvr_status kvr_op_set_chunk(kvr_workspace *ws, int64_t c, int64_t pos0, kvr_error *err);
/* RMSNorm, QKV, RoPE at the chunk's global positions; K/V -> cache rows [pos0, pos0 + c). */
KVR_API kvr_status kvr_op_pre(kvr_workspace *ws, int32_t layer, kvr_error *err);
/* Each chunk row r attends causally over cache rows [0, pos0 + r]. lse (NULL = not wanted):
 * host array (c, NH) receiving, per row and head, the natural log of the sum of exp of the
 * scaled scores (1/sqrt(HS) Q.K) over the keys the row sees. */
KVR_API kvr_status kvr_op_attn(kvr_workspace *ws, int32_t layer, float *lse, kvr_error *err);
/* Blockwise attention for ring schedules: the chunk's rows attend over kn K/V rows (NKV*HS
 * floats each, row-major, in the backend's memory space -- this or another workspace's
 * kvr_workspace_kv_buffers rows on the same backend) sitting at global positions
 * [kpos0, kpos0 + kn), causally by position (row r sees keys at positions <= pos0 + r), and
 * merge the result into the attention output with the per-row, per-head log-sum-exp the
 * workspace keeps (online softmax). first: start afresh (output 0, no keys seen yet). Rows that
 * see no key of the block are unchanged. After the blocks covering [0, pos0 + r] for every row,
 * the output equals kvr_op_attn's up to rounding (the CPU arithmetic differs in summation
 * order). Errors: KVR_ERR_INVALID_ARG (kn < 0, kpos0 < 0, NULL buffers), KVR_ERR_UNSUPPORTED for
 * a backend without it. */
KVR_API kvr_status kvr_op_attn_block(kvr_workspace *ws, const void *k, const void *v,
                                     int64_t kpos0, int64_t kn, bool first, kvr_error *err);
/* x += att.Wo^T; x += MLP(RMSNorm(x)) (SwiGLU). */
KVR_API kvr_status kvr_op_post(kvr_workspace *ws, int32_t layer, kvr_error *err);
/* Final RMSNorm + LM head on the chunk's last row: logits (V) stay in the workspace. top (NULL
 * = not wanted) receives the index of the largest logit (first on ties); it synchronises. */
KVR_API kvr_status kvr_op_head(kvr_workspace *ws, int32_t *top, kvr_error *err);

/* Index of the largest of n host floats (first on ties). */
KVR_API int32_t kvr_argmax(const float *x, int64_t n);

// ----------------------------------------------------------------------------
// copies and raw buffers

/* Rows [r0, r0 + n) of layer's K and V cache (each row NKV*HS floats) into host arrays k and v
 * (either may be NULL). Synchronises. Errors: KVR_ERR_INVALID_ARG for rows outside max_ctx. */
KVR_API kvr_status kvr_workspace_kv_to_host(kvr_workspace *ws, int32_t layer, int64_t r0,
                                            int64_t n, float *k, float *v, kvr_error *err);
/* Rows [r0, r0 + n) of layer's K and V cache from src into the same rows of dst, two
 * workspaces of the same backend and model (ring's decode assembles rank 0's cache with it),
 * after the work issued on src; dst's later ops see them. Errors: KVR_ERR_INVALID_ARG (another
 * backend or model, a bad layer, rows outside either cache), KVR_ERR_UNSUPPORTED for a backend
 * without it. */
KVR_API kvr_status kvr_workspace_kv_copy(kvr_workspace *dst, kvr_workspace *src, int32_t layer,
                                         int64_t r0, int64_t n, kvr_error *err);
/* The head's logits (V floats) into a host array. Synchronises. */
KVR_API kvr_status kvr_workspace_logits_to_host(kvr_workspace *ws, float *out, kvr_error *err);
/* The first rows rows of the hidden state x (rows, D) from / to host (timing harnesses). */
KVR_API kvr_status kvr_workspace_x_from_host(kvr_workspace *ws, const float *x, int64_t rows,
                                             kvr_error *err);
KVR_API kvr_status kvr_workspace_x_to_host(kvr_workspace *ws, float *x, int64_t rows,
                                           kvr_error *err);
/* Layer's (0 <= layer < L) K and V cache, (max_ctx, NKV*HS) fp32 row-major each, in the
 * backend's memory space (returned): what a transport sends and receives in place. Rows [0, S)
 * are contiguous. Either of k, v may be NULL. */
KVR_API kvr_mem_space kvr_workspace_kv_buffers(kvr_workspace *ws, int32_t layer, void **k,
                                               void **v);

// ----------------------------------------------------------------------------
// events and synchronisation

/* An event of ws's stream. Errors: KVR_ERR_NOMEM, KVR_ERR_CUDA. */
KVR_API kvr_status kvr_event_create(kvr_workspace *ws, kvr_event **out, kvr_error *err);
KVR_API void kvr_event_destroy(kvr_event *ev); /* NULL is a no-op */
/* Mark the point after all work issued so far on the workspace (cpu: the host clock now). */
KVR_API kvr_status kvr_event_record(kvr_event *ev, kvr_error *err);
/* Microseconds from start to end (both recorded); waits for end's work to finish. */
KVR_API kvr_status kvr_event_elapsed_us(const kvr_event *start, const kvr_event *end, double *us,
                                        kvr_error *err);
/* The stream ws's ops run on, for a device transport to order its copies against
 * (kvr_comm_set_stream): a cudaStream_t as void * for cuda; NULL for host backends. */
KVR_API void *kvr_workspace_stream(kvr_workspace *ws);
/* Wait until every op issued on ws has finished (cpu: nothing to wait for). */
KVR_API kvr_status kvr_workspace_sync(kvr_workspace *ws, kvr_error *err);
/* Ready the calling thread to run ops on ws, before the ops it will time: the CPU backend
 * starts the thread's OpenMP team of ws's n_threads (the first parallel region of a thread
 * creates it) and has each member touch its slice of the attention scratch; nothing for a
 * backend that needs nothing. */
KVR_API kvr_status kvr_workspace_prepare_thread(kvr_workspace *ws, kvr_error *err);

#ifdef __cplusplus
}
#endif
#endif /* KVR_BACKEND_H */
