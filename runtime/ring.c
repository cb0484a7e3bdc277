/* ring.c -- the ring pass-KV schedule with zigzag load balancing (kvr_prefill mode ring).
 *
 * The prompt is cut into 2p chunks differing by at most one token, larger first (the chunking
 * of search/sim.c's ring simulator); rank i holds chunks i (A) and 2p-1-i (B) in two
 * workspaces of the same weights, each with a KV cache of all C positions. Per layer each rank
 * computes Q/K/V of both chunks (K/V land in the caches at their global positions), then for
 * s = 0..p-1 it holds the K/V block of rank (i - s) mod p: it posts the block to rank i+1
 * (s < p-1) before attending over it, the query rows of A and B attending over the block's two
 * chunks -- causal where positions overlap, full where the chunk is entirely earlier, skipped
 * where it is entirely later -- merging each partial result by its log-sum-exp
 * (kvr_op_attn_block), and then receives the next block from rank i-1 into workspace A's
 * cache at its global positions. After the p steps every rank's caches hold all C positions
 * (A's cache every chunk but the rank's own B, B's cache that one). O-projection and MLP then
 * run on the rank's own rows. The last token sits in chunk 2p-1, rank 0's chunk B: rank 0
 * emits the first token, keeps the logits and, with keep_kv, assembles the full KV cache from
 * its two workspaces. The backend needs kvr_op_attn_block (cpu, cuda); both workspaces share its
 * memory space and the transport moves K/V rows in place. On a device the two workspaces have
 * their own streams: every timed group ends with both drained (RING_TIMED), and after the
 * receives of a step workspace A's stream (the transport's) is drained before B's attention
 * reads the rows they wrote. On the CPU these syncs are no-ops. */
#include "kvr_device.h"
#include "kvr_runtime.h"
#include "prefill_internal.h"
#include "runtime_internal.h"

#include <stdlib.h>
#include <string.h>

int64_t kvr_ring_chunk_len(int64_t C, int32_t p, int32_t k) {
    return C / (2 * p) + (k < C % (2 * p));
}

int64_t kvr_ring_chunk_pos(int64_t C, int32_t p, int32_t k) {
    const int64_t extra = C % (2 * p);
    return C / (2 * p) * k + (k < extra ? k : extra);
}

typedef struct ring_rank {
    int64_t C;
    int32_t p, me;
    int64_t kvd;
    kvr_workspace *ws[2]; /* chunk A (me), chunk B (2p-1-me) */
    int32_t chunk[2];
} ring_rank;

/* K or V rows of chunk k in layer l: B's own chunk in workspace B, every other in A. */
static void ring_rows(const ring_rank *r, int32_t l, int32_t k, void **K, void **V) {
    kvr_workspace *ws = k == r->chunk[1] ? r->ws[1] : r->ws[0];
    char *k0, *v0;
    kvr_workspace_kv_buffers(ws, l, (void **)&k0, (void **)&v0);
    const size_t off = (size_t)(kvr_ring_chunk_pos(r->C, r->p, k) * r->kvd) * sizeof(float);
    *K = k0 + off;
    *V = v0 + off;
}

kvr_status prefill_ring_rank(const kvr_model *m, kvr_comm *comm, const int32_t *tokens,
                             int64_t C, const kvr_prefill_params *pp, kvr_prefill_result *out,
                             kvr_error *err) {
    const kvr_model_config *cfg = &m->cfg;
    const int32_t p = pp->n_ranks, me = kvr_comm_rank(comm), L = cfg->n_layers;
    ring_rank r = {C, p, me, (int64_t)cfg->n_kv_heads * cfg->head_dim, {NULL, NULL},
                   {me, 2 * p - 1 - me}};
    const int32_t next = (me + 1) % p, prev = (me + p - 1) % p;
    const bool emitter = me == 0;
    int64_t pos[2], len[2];
    for (int j = 0; j < 2; j++) {
        pos[j] = kvr_ring_chunk_pos(C, p, r.chunk[j]);
        len[j] = kvr_ring_chunk_len(C, p, r.chunk[j]);
    }

    kvr_weights *wts = NULL;
    kvr_event *ev_t0 = NULL, *ev_a = NULL, *ev_b = NULL;
    kvr_comm_request **reqs = NULL;
    const int32_t n_reqs = 4 * (p - 1) * L;
    int32_t nq = 0; /* sends posted, not yet completed */
    kvr_status st = KVR_OK;
    if (kvr_comm_device(comm) >= 0) st = kvr_device_use(kvr_comm_device(comm), err);
    if (st == KVR_OK)
        st = kvr_weights_upload(pp->backend ? pp->backend : kvr_backend_at(0), m, &wts, err);
    /* decode follows: workspace A gets the room for the tokens decode appends */
    for (int j = 0; st == KVR_OK && j < 2; j++)
        st = kvr_workspace_create(wts, len[j], C + (emitter && j == 0 ? pp->decode_reserve : 0),
                                  pp->n_threads, &r.ws[j], err);
    if (st == KVR_OK) kvr_comm_set_stream(comm, kvr_workspace_stream(r.ws[0]));
    if (st == KVR_OK) st = kvr_event_create(r.ws[0], &ev_t0, err);
    if (st == KVR_OK) st = kvr_event_create(r.ws[0], &ev_a, err);
    if (st == KVR_OK) st = kvr_event_create(r.ws[0], &ev_b, err);
    if (st == KVR_OK && n_reqs > 0) {
        reqs = calloc((size_t)n_reqs, sizeof *reqs);
        if (!reqs) st = kvr_error_set(err, KVR_ERR_NOMEM, "rank %d: out of memory", me);
    }
    if (st != KVR_OK) goto fail;

    st = kvr_comm_barrier(comm, err);
    if (st != KVR_OK) goto fail;
    kvr_comm_reset_stats(comm);
    const double t0 = kvr_time_us();
    double compute_us = 0, t, ttft_us = 0;
    int32_t first = -1;
    /* time the ops between the two events (on the host clock for cpu; a device backend's
     * second workspace would need its stream ordered after the first's) */
#define RING_TIMED(...)                                                                           \
    do {                                                                                           \
        if ((st = kvr_event_record(ev_a, err)) != KVR_OK) goto fail;                               \
        __VA_ARGS__;                                                                               \
        if ((st = kvr_workspace_sync(r.ws[1], err)) != KVR_OK) goto fail;                          \
        if ((st = kvr_event_record(ev_b, err)) != KVR_OK) goto fail;                               \
        if ((st = kvr_event_elapsed_us(ev_a, ev_b, &t, err)) != KVR_OK) goto fail;                 \
        compute_us += t;                                                                           \
    } while (0)
    if ((st = kvr_event_record(ev_t0, err)) != KVR_OK) goto fail;
    RING_TIMED(for (int j = 0; j < 2; j++) if ((st = kvr_op_embed(r.ws[j], tokens + pos[j],
                                                                   len[j], pos[j], err)))
                   goto fail);
    for (int32_t l = 0; l < L; l++) {
        void *KA, *VA;
        const kvr_mem_space mem = kvr_workspace_kv_buffers(r.ws[0], l, &KA, &VA);
        RING_TIMED(for (int j = 0; j < 2; j++) if ((st = kvr_op_pre(r.ws[j], l, err))) goto fail);
        for (int32_t s = 0; s < p; s++) {
            const int32_t o = (me - s + p) % p, blk[2] = {o, 2 * p - 1 - o};
            if (s < p - 1) /* pass the block on before computing on it */
                for (int b = 0; b < 2; b++) {
                    void *K, *V;
                    ring_rows(&r, l, blk[b], &K, &V);
                    const size_t bytes =
                        (size_t)(kvr_ring_chunk_len(C, p, blk[b]) * r.kvd) * sizeof(float);
                    if ((st = kvr_comm_isend(comm, next, K, bytes, mem, &reqs[nq++], err)))
                        goto fail;
                    if ((st = kvr_comm_isend(comm, next, V, bytes, mem, &reqs[nq++], err)))
                        goto fail;
                }
            RING_TIMED(for (int j = 0; j < 2; j++) for (int b = 0; b < 2; b++) {
                const int64_t kp = kvr_ring_chunk_pos(C, p, blk[b]);
                if (kp > pos[j] + len[j] - 1) continue; /* entirely later: nothing to see */
                void *K, *V;
                ring_rows(&r, l, blk[b], &K, &V);
                /* the first block of the layer for both: the rank's own chunk A at s = 0 */
                if ((st = kvr_op_attn_block(r.ws[j], K, V, kp,
                                            kvr_ring_chunk_len(C, p, blk[b]),
                                            s == 0 && blk[b] == me, err)))
                    goto fail;
            });
            if (s < p - 1) {
                const int32_t o2 = (me - s - 1 + p) % p, nb[2] = {o2, 2 * p - 1 - o2};
                for (int b = 0; b < 2; b++) {
                    void *K, *V;
                    ring_rows(&r, l, nb[b], &K, &V); /* never our own: lands in A's cache */
                    const size_t bytes =
                        (size_t)(kvr_ring_chunk_len(C, p, nb[b]) * r.kvd) * sizeof(float);
                    if ((st = kvr_comm_recv(comm, prev, K, bytes, mem, err))) goto fail;
                    if ((st = kvr_comm_recv(comm, prev, V, bytes, mem, err))) goto fail;
                }
                if ((st = kvr_workspace_sync(r.ws[0], err)) != KVR_OK) goto fail;
            }
        }
        RING_TIMED(for (int j = 0; j < 2; j++) if ((st = kvr_op_post(r.ws[j], l, err))) goto fail);
        if (emitter && pp->progress) pp->progress(pp->progress_user, l + 1, L);
    }
    if (emitter) { /* the last token: chunk 2p-1, this rank's chunk B */
        RING_TIMED(if ((st = kvr_op_head(r.ws[1], &first, err))) goto fail);
        if ((st = kvr_event_elapsed_us(ev_t0, ev_b, &ttft_us, err)) != KVR_OK) goto fail;
        if (pp->keep_logits) {
            out->logits = malloc((size_t)cfg->vocab_size * sizeof(float));
            if (!out->logits) {
                st = kvr_error_set(err, KVR_ERR_NOMEM, "rank %d: out of memory", me);
                goto fail;
            }
            if ((st = kvr_workspace_logits_to_host(r.ws[1], out->logits, err))) goto fail;
        }
    }
#undef RING_TIMED
    if (reqs && (st = kvr_comm_waitall(comm, nq, reqs, err)) != KVR_OK) goto fail;
    nq = 0;
    const double t_end = kvr_time_us();

    kvr_rank_stats mine = {0};
    mine.rank = me;
    mine.chunk_start = pos[0];
    mine.chunk_len = len[0] + len[1];
    mine.compute_ms = compute_us * 1e-3;
    mine.total_ms = (t_end - t0) * 1e-3;
    if ((st = prefill_publish(comm, &mine, first, emitter ? ttft_us * 1e-3 : 0, 0, out, err)))
        goto fail;

    if (emitter && pp->keep_kv) { /* A's cache: [0, C) but chunk 2p-1, which is B's */
        const size_t n = (size_t)L * (size_t)C * (size_t)r.kvd;
        out->k_cache = malloc(n * sizeof(float));
        out->v_cache = malloc(n * sizeof(float));
        if (!out->k_cache || !out->v_cache) {
            st = kvr_error_set(err, KVR_ERR_NOMEM, "rank %d: out of memory for the KV copy", me);
            goto fail;
        }
        for (int32_t l = 0; l < L; l++) {
            float *k = out->k_cache + (size_t)l * C * r.kvd, *v = out->v_cache + (size_t)l * C * r.kvd;
            if ((st = kvr_workspace_kv_to_host(r.ws[0], l, 0, pos[1], k, v, err))) goto fail;
            if ((st = kvr_workspace_kv_to_host(r.ws[1], l, pos[1], len[1], k + pos[1] * r.kvd,
                                               v + pos[1] * r.kvd, err)))
                goto fail;
        }
    }
    if (emitter && pp->decode_reserve > 0) {
        /* the whole cache in workspace A for decode: chunk 2p-1's rows from B */
        for (int32_t l = 0; l < L; l++)
            if ((st = kvr_workspace_kv_copy(r.ws[0], r.ws[1], l, pos[1], len[1], err)))
                goto fail;
        if ((st = kvr_decoder_create(wts, r.ws[0], C, kvr_comm_device(comm), &out->decoder,
                                     err)))
            goto fail;
        r.ws[0] = NULL;
        wts = NULL;
    }
    free(reqs);
    kvr_event_destroy(ev_t0), kvr_event_destroy(ev_a), kvr_event_destroy(ev_b);
    kvr_workspace_destroy(r.ws[0]), kvr_workspace_destroy(r.ws[1]);
    kvr_weights_free(wts);
    return KVR_OK;

fail:
    kvr_comm_fail(comm, err ? err->msg : "error");
    if (reqs && nq) kvr_comm_waitall(comm, nq, reqs, NULL);
    free(reqs);
    kvr_event_destroy(ev_t0), kvr_event_destroy(ev_a), kvr_event_destroy(ev_b);
    kvr_workspace_destroy(r.ws[0]), kvr_workspace_destroy(r.ws[1]);
    kvr_weights_free(wts);
    kvr_prefill_result_free(out);
    return st;
}
