/* kvr_runtime.h -- the prefill schedules (single, kvr, tsp, ring) over the backend seam.
 *
 * Two levels:
 *   - layer ops (kvr_backend.h): a backend (cpu; cuda when compiled in) runs embed, pre (norm,
 *     QKV, RoPE, K/V into the cache), attn (c queries over the P-token prefix plus the chunk
 *     itself, causal), post (O-proj, residual, norm, SwiGLU MLP, residual) and head (final norm
 *     + LM head, last token) on a workspace whose buffers live in the backend's memory. The
 *     schedules are sequences of exactly these calls, and the profiler times exactly these
 *     calls, so a profile describes what runs.
 *   - schedules: kvr_prefill_run runs one prompt across n ranks as threads of this process;
 *     kvr_prefill_run_rank runs one rank's part over any kvr_comm (threads or MPI). Each rank
 *     creates its workspace on params->backend, hands the workspace's K/V buffers (with their
 *     memory space) to the transport, times compute with the backend's events, and copies only
 *     what the result keeps (logits, KV) to host.
 *
 * Usage:   kvr_prefill_params pp = kvr_prefill_params_default();
 *          pp.mode = KVR_MODE_KVR; pp.n_ranks = 2;            // partition NULL = even
 *          kvr_prefill_result r;
 *          if (kvr_prefill_run(model, ids, n_ids, &pp, &r, &err) == KVR_OK)
 *              printf("%d %.1f ms\n", r.first_token, r.ttft_ms);
 *          kvr_prefill_result_free(&r);
 * Ownership: the model and token arrays are borrowed; a result owns its logits/KV buffers until
 *            kvr_prefill_result_free.
 * Threads:  a model may be shared by all ranks; a workspace belongs to one rank.
 */
#ifndef KVR_RUNTIME_H
#define KVR_RUNTIME_H
#include "kvr_backend.h"
#include "kvr_comm.h"
#include "kvr_decode.h"
#include "kvr_model.h"
#ifdef __cplusplus
extern "C" {
#endif

/* KVR_MAX_RANKS, the partitions (kvr_partition_even/check/parse/format) and the modes
 * (kvr_mode, kvr_mode_name/parse) are in kvr_common.h. */

// ----------------------------------------------------------------------------
// schedules

typedef struct kvr_prefill_params {
    const kvr_backend *backend; /* where the ops run; NULL = cpu */
    kvr_mode mode;
    int32_t n_ranks;          /* p; single requires 1 */
    const int64_t *partition; /* p chunk sizes (kvr mode), NULL = even (ring: must be NULL) */
    int32_t n_threads;        /* threads per rank for the ops */
    bool keep_logits;         /* copy the last-token logits into the result */
    bool keep_kv;             /* copy the emitting rank's full KV cache into the result */
    /* kvr_prefill_run: the in-process transport between the ranks: threads (host K/V),
       same-device (ranks share GPU `device`) or nccl (rank i on GPU device + i) */
    kvr_transport transport;
    int32_t device;
    /* kvr_prefill_run (default true): with p >= 2 ranks, bind each rank's thread, and the
     * thread team its ops start, to CPUs of its own -- rank i to the allowed CPUs i*t .. i*t +
     * t - 1 (t = n_threads, kvr_rank_thread_bind) -- when the process may use p*t of them;
     * else, or false, the OS places the threads. Ranks as MPI processes are mpirun's to bind. */
    bool bind;
    /* optional: called by the emitting rank (kvr_prefill_emitter) after each of its layers (layer = 1..n_layers), for a
     * progress line on long prompts; it runs on that rank's thread inside the timed prefill, so
     * it must be cheap (kvr_progress_update is) */
    void (*progress)(void *user, int32_t layer, int32_t n_layers);
    void *progress_user;
    /* > 0: decode follows. The emitting rank's workspace gets room for this many positions
     * past the prompt, ends holding the whole KV cache (ring: rank 0 copies its second chunk's
     * rows into its first workspace; host backends only) and is handed over to the result as a
     * kvr_decoder (kvr_decode.h) instead of being freed */
    int64_t decode_reserve;
    /* optional: the session's prepared ranks (kvr_prefill_ready_create). A rank whose chunk and
     * positions fit its prepared workspace runs on it (and on its weights) instead of making
     * its own; decode_reserve > 0 hands the emitting rank's over to the decoder. */
    struct kvr_prefill_ready *ready;
} kvr_prefill_params;
KVR_API kvr_prefill_params kvr_prefill_params_default(void);

typedef struct kvr_rank_stats {
    int32_t rank;
    int64_t chunk_start, chunk_len; /* P_i, c_i */
    double compute_ms;              /* in layer ops */
    double wait_ms;                 /* blocked on a peer (prefix not yet sent, collective) */
    double comm_ms;                 /* moving bytes (receives, all-gathers, send completion) */
    double total_ms;                /* prefill start to this rank's end of work */
    bool ready;                     /* ran on the session's prepared workspace (params.ready) */
    int32_t cpu_first, n_cpus;      /* kvr_prefill_run bound the rank's thread to n_cpus CPUs
                                       from cpu_first on (params.bind); n_cpus 0: not bound */
    int64_t bytes_sent, bytes_recv;
} kvr_rank_stats;

typedef struct kvr_prefill_result {
    kvr_mode mode;
    int32_t n_ranks;
    int64_t n_tokens;
    int64_t partition[KVR_MAX_RANKS];
    kvr_rank_stats ranks[KVR_MAX_RANKS];
    int32_t first_token; /* argmax of the last token's logits */
    double ttft_ms;      /* prefill start (all ranks released) to first token on the last rank */
    /* ring: partition[i] = the tokens of rank i's two zigzag chunks; ranks[i].chunk_start is
     * its first chunk's */
    float *logits;       /* (V) when keep_logits, on the process holding the emitting rank
                            (kvr_prefill_emitter: the last, or 0 for ring); else NULL */
    float *k_cache, *v_cache; /* (L, C, NKV*HS) when keep_kv, emitting rank only; else NULL */
    kvr_decoder *decoder; /* decode_reserve > 0, the emitting rank: its workspace, all C
                             positions cached, room for decode_reserve more (owned) */
} kvr_prefill_result;

/* Run one prompt across params->n_ranks threads of this process.
 * Errors: KVR_ERR_INVALID_ARG (bad partition, more ranks than tokens, bad ids), KVR_ERR_NOMEM,
 * KVR_ERR_COMM. On error every rank stops; none hangs. */
/* The rank that holds the last token and emits the first (logits, keep_kv): p-1, or 0 for
 * ring (chunk 2p-1 is rank 0's second zigzag chunk). */
KVR_API int32_t kvr_prefill_emitter(kvr_mode mode, int32_t n_ranks);
KVR_API kvr_status kvr_prefill_run(const kvr_model *m, const int32_t *tokens, int64_t n_tokens,
                                   const kvr_prefill_params *params, kvr_prefill_result *out,
                                   kvr_error *err);
/* Run this rank's part over comm (size must equal params->n_ranks). Every rank's result gets
 * the per-rank stats, first token and TTFT; logits and KV only on the last rank. */
KVR_API kvr_status kvr_prefill_run_rank(const kvr_model *m, kvr_comm *comm, const int32_t *tokens,
                                        int64_t n_tokens, const kvr_prefill_params *params,
                                        kvr_prefill_result *out, kvr_error *err);
KVR_API void kvr_prefill_result_free(kvr_prefill_result *r);
/* Ranks as threads: bind the calling thread (rank `rank` of n_ranks, n_threads threads each)
 * to the CPUs number rank*n_threads .. + n_threads - 1 of the process's allowed set, in CPU-id
 * order, so ranks never share a CPU (threads the caller starts afterwards, such as its OpenMP
 * team, inherit the set). Returns the first CPU bound to, or -1 when it did not bind: one
 * rank (nothing to keep apart), fewer than n_ranks*n_threads CPUs allowed (then the OS shares
 * them out), bad arguments, or the system refused. kvr_prefill_run calls it in each rank's
 * thread (params.bind). */
KVR_API int32_t kvr_rank_thread_bind(int32_t rank, int32_t n_ranks, int32_t n_threads);

// ----------------------------------------------------------------------------
// a session's prepared ranks

/* What a serving runtime does once, when a session is created and before any prompt arrives,
 * so that a prefill's TTFT holds only what depends on its prompt: per rank, the weights on the
 * backend and a workspace sized for the rank's chunk and positions of a max_context-token prompt
 * under params (mode, n_ranks, partition -- NULL: even --, n_threads, decode_reserve on the
 * emitting rank), every page of it touched (kvr_workspace_create), and the BLAS library's own
 * thread pool settled (the CPU backend). rank < 0: every rank (ranks as threads in this
 * process); else this process's rank (MPI). A prefill given it (params.ready) runs each rank
 * on its prepared workspace when its chunk and positions fit (a shorter prompt, or the same
 * one again), else on one of its own as without it. Host-memory backends only (the CPU
 * backend); for a device backend, and for mode ring (two workspaces per rank), it prepares
 * nothing and kvr_prefill_ready_ranks says 0.
 * Errors: KVR_ERR_INVALID_ARG (as kvr_prefill_run's), KVR_ERR_NOMEM.
 * Threads: one prefill at a time uses it; destroy it after the last (the decoder a prefill
 * handed a workspace to owns that one). */
typedef struct kvr_prefill_ready kvr_prefill_ready;
KVR_API kvr_status kvr_prefill_ready_create(const kvr_model *m, const kvr_prefill_params *params,
                                            int64_t max_context, int32_t rank,
                                            kvr_prefill_ready **out, kvr_error *err);
KVR_API void kvr_prefill_ready_destroy(kvr_prefill_ready *r); /* NULL is a no-op */
/* The ranks it prepared (0: none, see above). */
KVR_API int32_t kvr_prefill_ready_ranks(const kvr_prefill_ready *r);

#ifdef __cplusplus
}
#endif
#endif /* KVR_RUNTIME_H */
