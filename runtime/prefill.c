/* prefill.c -- the prefill schedules over the layer ops and kvr_comm:
 *   single: one rank runs every layer over the whole prompt;
 *   kvr:    KV-Runahead (DESIGN.md section 1): rank i computes its chunk's Q/K/V, receives
 *           the layer's K/V for [0, P_i) from rank i-1, forwards [0, S_i) to rank i+1 without
 *           waiting, attends over [0, S_i) and runs the MLP; the last rank emits the token;
 *   tsp:    even split, per-layer all-gather of K/V so every rank holds all C keys, each rank
 *           attends its rows, a global synchronisation per layer;
 *   ring:   ring pass-KV over 2p zigzag chunks (ring.c); rank 0 emits the token.
 * single is kvr with one rank: one code path. kvr_prefill_run starts the ranks as threads;
 * kvr_prefill_run_rank is one rank's part over any transport. */
#include "kvr_device.h"
#include "kvr_runtime.h"
#include "prefill_internal.h"
#include "runtime_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

kvr_prefill_params kvr_prefill_params_default(void) {
    kvr_prefill_params p = {NULL, KVR_MODE_SINGLE, 1, NULL, 1, true, false,
                            KVR_TRANSPORT_THREADS, 0, true, NULL, NULL, 0, NULL};
    return p;
}

int32_t kvr_prefill_emitter(kvr_mode mode, int32_t n_ranks) {
    return mode == KVR_MODE_RING ? 0 : n_ranks - 1;
}

// ----------------------------------------------------------------------------
// one rank

/* What every rank publishes at the end (all-gathered so each rank can report the whole run). */
typedef struct kvr_rank_report {
    kvr_rank_stats stats;
    int32_t first_token;
    double ttft_ms;
} kvr_rank_report;

kvr_status prefill_publish(kvr_comm *comm, const kvr_rank_stats *mine_stats, int32_t first,
                           double ttft_ms, int32_t emitter, kvr_prefill_result *out,
                           kvr_error *err) {
    const int32_t p = kvr_comm_size(comm);
    const kvr_comm_stats *cs = kvr_comm_get_stats(comm);
    kvr_rank_report mine = {0};
    mine.stats = *mine_stats;
    mine.stats.wait_ms = cs->wait_us * 1e-3;
    mine.stats.comm_ms = cs->xfer_us * 1e-3;
    mine.stats.bytes_sent = cs->bytes_sent;
    mine.stats.bytes_recv = cs->bytes_recv;
    mine.first_token = first;
    mine.ttft_ms = ttft_ms;
    /* control channel: host metadata */
    kvr_rank_report *all = calloc((size_t)p, sizeof *all);
    if (!all) return kvr_error_set(err, KVR_ERR_NOMEM, "rank %d: out of memory", kvr_comm_rank(comm));
    kvr_status st = kvr_comm_ctrl_allgather(comm, &mine, sizeof mine, all, err);
    if (st == KVR_OK) {
        for (int32_t i = 0; i < p; i++) out->ranks[i] = all[i].stats;
        out->first_token = all[emitter].first_token;
        out->ttft_ms = all[emitter].ttft_ms;
    }
    free(all);
    return st;
}

static kvr_status kvr_check_params(const kvr_model *m, const kvr_prefill_params *pp,
                                   int64_t C, int64_t *part, kvr_error *err) {
    (void)m;
    if (pp->n_ranks < 1 || pp->n_ranks > KVR_MAX_RANKS)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "--ranks %d: need 1..%d", pp->n_ranks,
                             KVR_MAX_RANKS);
    if (pp->decode_reserve < 0 || pp->decode_reserve > ((int64_t)1 << 40))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "decode_reserve %lld: out of range",
                             (long long)pp->decode_reserve);
    if (pp->n_threads < 1 || pp->n_threads > 1024)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "--threads %d: need 1..1024",
                             pp->n_threads);
    if (C < 1) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "empty prompt (0 tokens)");
    if (pp->mode == KVR_MODE_SINGLE && pp->n_ranks != 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "mode single runs on 1 rank, not %d (use kvr or tsp)", pp->n_ranks);
    if (C < pp->n_ranks)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "%d ranks for a %lld-token prompt: more ranks than tokens",
                             pp->n_ranks, (long long)C);
    if (pp->partition && pp->mode == KVR_MODE_TSP)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "mode tsp always splits evenly; a partition applies to kvr only");
    if (pp->mode == KVR_MODE_RING) {
        if (pp->partition)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "mode ring takes no partition: it cuts the prompt into 2 x %d "
                                 "zigzag chunks (rank i holds chunks i and %d-i), which balances "
                                 "the causal attention by itself; a partition applies to kvr only",
                                 pp->n_ranks, 2 * pp->n_ranks - 1);
        if (C < 2 * (int64_t)pp->n_ranks)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "mode ring on %d ranks needs at least %d tokens (2 zigzag chunks "
                                 "per rank), the prompt has %lld: use at most %lld ranks",
                                 pp->n_ranks, 2 * pp->n_ranks, (long long)C, (long long)(C / 2));
        for (int32_t i = 0; i < pp->n_ranks; i++)
            part[i] = kvr_ring_chunk_len(C, pp->n_ranks, i) +
                      kvr_ring_chunk_len(C, pp->n_ranks, 2 * pp->n_ranks - 1 - i);
        return KVR_OK;
    }
    if (pp->partition) {
        KVR_TRY(kvr_partition_check(pp->partition, pp->n_ranks, C, err));
        memcpy(part, pp->partition, (size_t)pp->n_ranks * sizeof *part);
        return KVR_OK;
    }
    return kvr_partition_even(C, pp->n_ranks, part, err);
}

// ----------------------------------------------------------------------------
// a session's prepared ranks

struct kvr_prefill_ready {
    int32_t n_ranks, n_prepared;
    kvr_weights **wts;     /* (n_ranks) NULL: not prepared (another process's, or handed over) */
    kvr_workspace **ws;    /* (n_ranks) */
    int64_t *chunk, *ctx;  /* (n_ranks) what each prepared workspace holds */
    const kvr_model *m;
    const kvr_backend *be;
    int32_t n_threads;
};

void kvr_prefill_ready_destroy(kvr_prefill_ready *r) {
    if (!r) return;
    for (int32_t i = 0; r->ws && i < r->n_ranks; i++) {
        kvr_workspace_destroy(r->ws[i]);
        kvr_weights_free(r->wts[i]);
    }
    free(r->wts), free(r->ws), free(r->chunk), free(r->ctx);
    free(r);
}

int32_t kvr_prefill_ready_ranks(const kvr_prefill_ready *r) {
    return r ? r->n_prepared : 0;
}

/* A rank's positions: kvr ranks hold [0, S); tsp ranks all C keys after each all-gather; the
 * last rank all C and, when decode follows, room for the tokens it will append. */
static int64_t prefill_rank_ctx(const kvr_prefill_params *pp, int64_t C, int64_t S, bool last) {
    return (pp->mode == KVR_MODE_TSP ? C : S) + (last ? pp->decode_reserve : 0);
}

kvr_status kvr_prefill_ready_create(const kvr_model *m, const kvr_prefill_params *pp,
                                    int64_t max_context, int32_t rank, kvr_prefill_ready **out,
                                    kvr_error *err) {
    *out = NULL;
    int64_t part[KVR_MAX_RANKS];
    KVR_TRY(kvr_check_params(m, pp, max_context, part, err));
    const int32_t p = pp->n_ranks;
    if (rank >= p)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "prepared ranks: rank %d of %d", rank, p);
    const kvr_backend *be = pp->backend ? pp->backend : kvr_backend_at(0);
    kvr_prefill_ready *r = calloc(1, sizeof *r);
    if (r) {
        r->wts = calloc((size_t)p, sizeof *r->wts);
        r->ws = calloc((size_t)p, sizeof *r->ws);
        r->chunk = calloc((size_t)p, sizeof *r->chunk);
        r->ctx = calloc((size_t)p, sizeof *r->ctx);
    }
    if (!r || !r->wts || !r->ws || !r->chunk || !r->ctx) {
        kvr_prefill_ready_destroy(r);
        return kvr_error_set(err, KVR_ERR_NOMEM, "prepared ranks: out of memory");
    }
    r->n_ranks = p;
    r->m = m;
    r->be = be;
    r->n_threads = pp->n_threads;
    kvr_status st = KVR_OK;
    if (pp->mode != KVR_MODE_RING && kvr_backend_mem_space(be) == KVR_MEM_HOST) {
        int64_t P = 0;
        for (int32_t i = 0; st == KVR_OK && i < p; P += part[i], i++) {
            if (rank >= 0 && i != rank) continue;
            const int64_t ctx = prefill_rank_ctx(pp, max_context, P + part[i], i == p - 1);
            st = kvr_weights_upload(be, m, &r->wts[i], err);
            if (st == KVR_OK)
                st = kvr_workspace_create(r->wts[i], part[i], ctx, pp->n_threads, &r->ws[i], err);
            r->chunk[i] = part[i];
            r->ctx[i] = ctx;
            if (st == KVR_OK) r->n_prepared++;
        }
    }
    if (st != KVR_OK) {
        kvr_prefill_ready_destroy(r);
        return st;
    }
    *out = r;
    return KVR_OK;
}

/* Rank me's prepared weights and workspace when they fit a chunk of c over ctx positions. */
static bool prefill_ready_take(kvr_prefill_ready *r, const kvr_model *m,
                               const kvr_prefill_params *pp, int32_t me, int64_t c, int64_t ctx,
                               kvr_weights **wts, kvr_workspace **ws) {
    if (!r || me >= r->n_ranks || !r->ws[me] || r->m != m || r->n_threads != pp->n_threads ||
        r->be != (pp->backend ? pp->backend : kvr_backend_at(0)) || c > r->chunk[me] ||
        ctx > r->ctx[me])
        return false;
    *wts = r->wts[me];
    *ws = r->ws[me];
    return true;
}

// ----------------------------------------------------------------------------
// one rank's run

kvr_status kvr_prefill_run_rank(const kvr_model *m, kvr_comm *comm, const int32_t *tokens,
                                int64_t C, const kvr_prefill_params *pp, kvr_prefill_result *out,
                                kvr_error *err) {
    memset(out, 0, sizeof *out);
    const int32_t p = pp->n_ranks, me = kvr_comm_rank(comm);
    if (kvr_comm_size(comm) != p)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "communicator has %d ranks, params ask %d",
                             kvr_comm_size(comm), p);
    KVR_TRY(kvr_check_params(m, pp, C, out->partition, err));
    out->mode = pp->mode;
    out->n_ranks = p;
    out->n_tokens = C;
    if (pp->mode == KVR_MODE_RING) return prefill_ring_rank(m, comm, tokens, C, pp, out, err);
    const kvr_model_config *cfg = &m->cfg;
    const int64_t kvd = (int64_t)cfg->n_kv_heads * cfg->head_dim;
    const int32_t L = cfg->n_layers;
    int64_t P = 0;
    for (int32_t i = 0; i < me; i++) P += out->partition[i];
    const int64_t c = out->partition[me], S = P + c;
    const bool tsp = pp->mode == KVR_MODE_TSP, last = me == p - 1;
    const int64_t ctx = prefill_rank_ctx(pp, C, S, last);

    kvr_weights *wts = NULL;
    kvr_workspace *ws = NULL;
    kvr_event *ev_t0 = NULL, *ev_a = NULL, *ev_b = NULL;
    kvr_comm_request **reqs = NULL;
    size_t *ag_bytes = NULL;
    kvr_status st = KVR_OK;
    /* the session's prepared workspace (the ready's until a decoder takes it), else our own */
    const bool ready = prefill_ready_take(pp->ready, m, pp, me, c, ctx, &wts, &ws);
    /* a device transport's rank works on its GPU (nccl: rank i's; same-device: the shared one) */
    if (kvr_comm_device(comm) >= 0) st = kvr_device_use(kvr_comm_device(comm), err);
    if (st == KVR_OK && !ready)
        st = kvr_weights_upload(pp->backend ? pp->backend : kvr_backend_at(0), m, &wts, err);
    if (st == KVR_OK && !ready) st = kvr_workspace_create(wts, c, ctx, pp->n_threads, &ws, err);
    if (st == KVR_OK) st = kvr_workspace_prepare_thread(ws, err);
    if (st == KVR_OK) kvr_comm_set_stream(comm, kvr_workspace_stream(ws)); /* device transports */
    if (st == KVR_OK) st = kvr_event_create(ws, &ev_t0, err);
    if (st == KVR_OK) st = kvr_event_create(ws, &ev_a, err);
    if (st == KVR_OK) st = kvr_event_create(ws, &ev_b, err);
    if (st == KVR_OK && !tsp && !last) {
        reqs = calloc((size_t)2 * (size_t)L, sizeof *reqs);
        if (!reqs) st = kvr_error_set(err, KVR_ERR_NOMEM, "rank %d: out of memory", me);
    }
    if (st == KVR_OK && tsp) {
        ag_bytes = malloc((size_t)p * sizeof *ag_bytes);
        if (!ag_bytes) st = kvr_error_set(err, KVR_ERR_NOMEM, "rank %d: out of memory", me);
        for (int32_t i = 0; ag_bytes && i < p; i++)
            ag_bytes[i] = (size_t)(out->partition[i] * kvd) * sizeof(float);
    }
    if (st != KVR_OK) goto fail;

    /* Start together: the clock runs from the barrier's release to the first token. */
    st = kvr_comm_barrier(comm, err);
    if (st != KVR_OK) goto fail;
    kvr_comm_reset_stats(comm);
    const double t0 = kvr_time_us();
    double compute_us = 0, t;
    int32_t first = -1;
    if ((st = kvr_event_record(ev_t0, err)) != KVR_OK) goto fail;

    if ((st = kvr_event_record(ev_a, err)) != KVR_OK) goto fail;
    if ((st = kvr_op_embed(ws, tokens + P, c, P, err)) != KVR_OK) goto fail;
    if ((st = kvr_event_record(ev_b, err)) != KVR_OK) goto fail;
    if ((st = kvr_event_elapsed_us(ev_a, ev_b, &t, err)) != KVR_OK) goto fail;
    compute_us += t;
    for (int32_t l = 0; l < L; l++) {
        void *K, *V; /* the transport moves them in place, in the backend's memory */
        const kvr_mem_space kv_mem = kvr_workspace_kv_buffers(ws, l, &K, &V);
        if ((st = kvr_event_record(ev_a, err)) != KVR_OK) goto fail;
        if ((st = kvr_op_pre(ws, l, err)) != KVR_OK) goto fail;
        if ((st = kvr_event_record(ev_b, err)) != KVR_OK) goto fail;
        if ((st = kvr_event_elapsed_us(ev_a, ev_b, &t, err)) != KVR_OK) goto fail;
        compute_us += t;
        if (tsp) {
            if ((st = kvr_comm_allgatherv(comm, NULL, K, ag_bytes, kv_mem, err))) goto fail;
            if ((st = kvr_comm_allgatherv(comm, NULL, V, ag_bytes, kv_mem, err))) goto fail;
        } else {
            const size_t pre_bytes = (size_t)(P * kvd) * sizeof(float);
            const size_t all_bytes = (size_t)(S * kvd) * sizeof(float);
            if (me > 0) {
                if ((st = kvr_comm_recv(comm, me - 1, K, pre_bytes, kv_mem, err)))
                    goto fail;
                if ((st = kvr_comm_recv(comm, me - 1, V, pre_bytes, kv_mem, err)))
                    goto fail;
            }
            if (!last) { /* run ahead: forward [0, S) now, complete at the end */
                if ((st = kvr_comm_isend(comm, me + 1, K, all_bytes, kv_mem, &reqs[2 * l],
                                         err)))
                    goto fail;
                if ((st = kvr_comm_isend(comm, me + 1, V, all_bytes, kv_mem,
                                         &reqs[2 * l + 1], err)))
                    goto fail;
            }
        }
        if ((st = kvr_event_record(ev_a, err)) != KVR_OK) goto fail;
        if ((st = kvr_op_attn(ws, l, NULL, err)) != KVR_OK) goto fail;
        if ((st = kvr_op_post(ws, l, err)) != KVR_OK) goto fail;
        if ((st = kvr_event_record(ev_b, err)) != KVR_OK) goto fail;
        if ((st = kvr_event_elapsed_us(ev_a, ev_b, &t, err)) != KVR_OK) goto fail;
        compute_us += t;
        if (last && pp->progress) pp->progress(pp->progress_user, l + 1, L);
    }
    double ttft_us = 0;
    if (last) {
        /* the first token: head and its argmax on the backend, timed by its events */
        if ((st = kvr_event_record(ev_a, err)) != KVR_OK) goto fail;
        if ((st = kvr_op_head(ws, &first, err)) != KVR_OK) goto fail;
        if ((st = kvr_event_record(ev_b, err)) != KVR_OK) goto fail;
        if ((st = kvr_event_elapsed_us(ev_a, ev_b, &t, err)) != KVR_OK) goto fail;
        compute_us += t;
        if ((st = kvr_event_elapsed_us(ev_t0, ev_b, &ttft_us, err)) != KVR_OK) goto fail;
        if (pp->keep_logits) {
            out->logits = malloc((size_t)cfg->vocab_size * sizeof(float));
            if (!out->logits) {
                st = kvr_error_set(err, KVR_ERR_NOMEM, "rank %d: out of memory", me);
                goto fail;
            }
            if ((st = kvr_workspace_logits_to_host(ws, out->logits, err)) != KVR_OK) goto fail;
        }
    }
    if (reqs && (st = kvr_comm_waitall(comm, 2 * L, reqs, err)) != KVR_OK) goto fail;
    const double t_end = kvr_time_us();

    kvr_rank_stats mine = {0};
    mine.rank = me;
    mine.chunk_start = P;
    mine.chunk_len = c;
    mine.compute_ms = compute_us * 1e-3;
    mine.total_ms = (t_end - t0) * 1e-3;
    mine.ready = ready;
    if ((st = prefill_publish(comm, &mine, first, last ? ttft_us * 1e-3 : 0, p - 1, out, err)))
        goto fail;

    if (last && pp->keep_kv) {
        const size_t n = (size_t)L * (size_t)C * (size_t)kvd;
        out->k_cache = malloc(n * sizeof(float));
        out->v_cache = malloc(n * sizeof(float));
        if (!out->k_cache || !out->v_cache) {
            st = kvr_error_set(err, KVR_ERR_NOMEM, "rank %d: out of memory for the KV copy", me);
            goto fail;
        }
        for (int32_t l = 0; l < L; l++)
            if ((st = kvr_workspace_kv_to_host(ws, l, 0, C, out->k_cache + (size_t)l * C * kvd,
                                               out->v_cache + (size_t)l * C * kvd, err)))
                goto fail;
    }
    kvr_event_destroy(ev_t0), kvr_event_destroy(ev_a), kvr_event_destroy(ev_b);
    ev_t0 = ev_a = ev_b = NULL;
    if (last && pp->decode_reserve > 0) { /* hand the workspace over: it holds [0, C) */
        if ((st = kvr_decoder_create(wts, ws, C, kvr_comm_device(comm), &out->decoder, err)))
            goto fail;
        if (ready) pp->ready->ws[me] = NULL, pp->ready->wts[me] = NULL; /* the decoder's now */
        ws = NULL;
        wts = NULL;
    }
    free(reqs);
    free(ag_bytes);
    if (!ready) kvr_workspace_destroy(ws), kvr_weights_free(wts);
    return KVR_OK;

fail:
    /* Tell the peers first so none waits on us, then drain our own sends (they may still be
     * read by a peer that has already matched them) before freeing the buffers they point to. */
    kvr_comm_fail(comm, err ? err->msg : "error");
    if (reqs) kvr_comm_waitall(comm, 2 * L, reqs, NULL);
    free(reqs);
    free(ag_bytes);
    kvr_event_destroy(ev_t0), kvr_event_destroy(ev_a), kvr_event_destroy(ev_b);
    if (!ready) kvr_workspace_destroy(ws), kvr_weights_free(wts);
    kvr_prefill_result_free(out);
    return st;
}

void kvr_prefill_result_free(kvr_prefill_result *r) {
    if (!r) return;
    free(r->logits);
    free(r->k_cache);
    free(r->v_cache);
    r->logits = r->k_cache = r->v_cache = NULL;
    kvr_decoder_destroy(r->decoder);
    r->decoder = NULL;
}

// ----------------------------------------------------------------------------
// ranks as threads

typedef struct kvr_rank_thread {
    const kvr_model *m;
    kvr_comm *comm;
    const int32_t *tokens;
    int64_t C;
    const kvr_prefill_params *pp;
    kvr_prefill_result res;
    kvr_error err;
    kvr_status st;
    int32_t cpu; /* kvr_rank_thread_bind's answer; -1: not bound */
} kvr_rank_thread;

static void *kvr_rank_main(void *arg) {
    kvr_rank_thread *rt = arg;
    rt->cpu = rt->pp->bind ? kvr_rank_thread_bind(kvr_comm_rank(rt->comm), rt->pp->n_ranks,
                                                  rt->pp->n_threads)
                           : -1;
    rt->st = kvr_prefill_run_rank(rt->m, rt->comm, rt->tokens, rt->C, rt->pp, &rt->res, &rt->err);
    return NULL;
}

kvr_status kvr_prefill_run(const kvr_model *m, const int32_t *tokens, int64_t C,
                           const kvr_prefill_params *pp, kvr_prefill_result *out, kvr_error *err) {
    memset(out, 0, sizeof *out);
    int64_t part[KVR_MAX_RANKS];
    KVR_TRY(kvr_check_params(m, pp, C, part, err)); /* fail fast before starting threads */
    const int32_t p = pp->n_ranks;
    if (pp->transport == KVR_TRANSPORT_MPI)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "prefill: ranks as threads cannot use the mpi transport (use "
                             "kvr_prefill_run_rank in each MPI process)");
    kvr_comm_params cp = kvr_comm_params_default();
    cp.transport = pp->transport;
    cp.n_ranks = p;
    cp.device = pp->device;
    kvr_comm_world *w;
    KVR_TRY(kvr_comm_world_create(&cp, &w, err));
    kvr_rank_thread *rt = calloc((size_t)p, sizeof *rt);
    pthread_t *th = calloc((size_t)p, sizeof *th);
    bool *started = calloc((size_t)p, sizeof *started);
    if (!rt || !th || !started) {
        free(rt), free(th), free(started);
        kvr_comm_world_destroy(w);
        return kvr_error_set(err, KVR_ERR_NOMEM, "prefill: out of memory");
    }
    kvr_status st = KVR_OK;
    for (int32_t i = 0; i < p; i++) {
        rt[i] = (kvr_rank_thread){m, kvr_comm_world_local(w, i), tokens, C, pp, {0}, {0}, KVR_OK,
                                  -1};
        if (pthread_create(&th[i], NULL, kvr_rank_main, &rt[i]) != 0) {
            kvr_comm_fail(kvr_comm_world_local(w, i), "could not start the rank's thread");
            st = kvr_error_set(err, KVR_ERR_NOMEM, "prefill: cannot start thread for rank %d", i);
            break;
        }
        started[i] = true;
    }
    for (int32_t i = 0; i < p; i++)
        if (started[i]) pthread_join(th[i], NULL);
    /* Report the root cause: the first error that is not a peer's echo of another failure. */
    if (st == KVR_OK) {
        int32_t bad = -1;
        for (int32_t i = 0; i < p && bad < 0; i++)
            if (rt[i].st != KVR_OK && rt[i].st != KVR_ERR_COMM) bad = i;
        for (int32_t i = 0; i < p && bad < 0; i++)
            if (rt[i].st != KVR_OK) bad = i;
        if (bad >= 0) {
            st = rt[bad].st;
            if (err) *err = rt[bad].err;
        }
    }
    if (st == KVR_OK) {
        const int32_t e = kvr_prefill_emitter(pp->mode, p); /* it holds logits and KV */
        *out = rt[e].res;
        for (int32_t i = 0; i < p; i++) {
            out->ranks[i].cpu_first = rt[i].cpu;
            out->ranks[i].n_cpus = rt[i].cpu >= 0 ? pp->n_threads : 0;
        }
        rt[e].res.logits = rt[e].res.k_cache = rt[e].res.v_cache = NULL;
        rt[e].res.decoder = NULL;
    }
    for (int32_t i = 0; i < p; i++) kvr_prefill_result_free(&rt[i].res);
    free(rt), free(th), free(started);
    kvr_comm_world_destroy(w);
    return st;
}
