/* sim.c -- TTFT simulators for one prompt: the KV-Runahead chain (DESIGN.md section 4), TSP,
 * ring pass-KV with zigzag chunks, and single-rank prefill; and the timeline object they fill.
 *
 * Every simulator is an event recurrence over (rank, layer) with identical layers, so one
 * evaluation costs O(p * L) (ring: O(p^2 * L)); the optimiser in search.c uses the chain kernel
 * from search_internal.h directly, with incremental re-evaluation. */
#include "search_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// timeline

kvr_status kvr_search_timeline_create(kvr_search_timeline **out, kvr_error *err) {
    if (!out) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "timeline: NULL out");
    *out = calloc(1, sizeof **out);
    if (!*out) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (timeline)");
    return KVR_OK;
}

void kvr_search_timeline_destroy(kvr_search_timeline *tl) {
    if (!tl) return;
    free(tl->ev);
    free(tl);
}

size_t kvr_search_timeline_n_events(const kvr_search_timeline *tl) {
    return tl->n;
}

const kvr_event *kvr_search_timeline_event(const kvr_search_timeline *tl, size_t i) {
    return i < tl->n ? &tl->ev[i] : NULL;
}

const char *kvr_event_kind_name(kvr_event_kind k) {
    switch (k) { /* the layer ops by their kvr_op names */
        case KVR_EVENT_EMBED: return kvr_op_name(KVR_OP_EMBED);
        case KVR_EVENT_PRE: return kvr_op_name(KVR_OP_PRE);
        case KVR_EVENT_ATTN: return kvr_op_name(KVR_OP_ATTN);
        case KVR_EVENT_POST: return kvr_op_name(KVR_OP_POST);
        case KVR_EVENT_WAIT: return "wait";
        case KVR_EVENT_SEND: return "send";
        case KVR_EVENT_ALLGATHER: return "allgather";
        case KVR_EVENT_HEAD: return kvr_op_name(KVR_OP_HEAD);
        case KVR_EVENT_MERGE: return "merge";
        case KVR_EVENT_OVERHEAD: return "overhead";
        default: return "?";
    }
}

void search_tl_reset(kvr_search_timeline *tl, const char *strategy, int n_ranks, int n_layers,
                     int64_t context) {
    tl->n = 0;
    tl->context = context;
    tl->oom = false;
    tl->n_ranks = n_ranks;
    tl->n_layers = n_layers;
    tl->ttft_us = 0;
    snprintf(tl->strategy, sizeof tl->strategy, "%s", strategy);
}

void search_tl_add(kvr_search_timeline *tl, int rank, int layer, int peer, kvr_event_kind kind,
                   double start_us, double end_us) {
    if (tl->oom) return;
    if (tl->n == tl->cap) {
        size_t cap = tl->cap ? tl->cap * 2 : 256;
        kvr_event *ev = realloc(tl->ev, cap * sizeof *ev);
        if (!ev) {
            tl->oom = true;
            return;
        }
        tl->ev = ev;
        tl->cap = cap;
    }
    tl->ev[tl->n++] = (kvr_event){rank, layer, peer, kind, start_us, end_us};
}

/* A rank's start: the per-run overhead (when any), then its embedding. */
static void sim_tl_start(kvr_search_timeline *tl, int rank, double run_us, double embed_us) {
    if (run_us > 0) search_tl_add(tl, rank, -1, -1, KVR_EVENT_OVERHEAD, 0, run_us);
    search_tl_add(tl, rank, -1, -1, KVR_EVENT_EMBED, run_us, run_us + embed_us);
}

static kvr_status sim_tl_finish(kvr_search_timeline *tl, double ttft_us, kvr_error *err) {
    if (!tl) return KVR_OK;
    tl->ttft_us = ttft_us;
    if (tl->oom) return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (timeline)");
    return KVR_OK;
}

/* The TTFT out of a simulation: a non-finite one (costs that overflow, a source returning
 * infinity or NaN) is an error, and *ttft_us is then left as it was. */
static kvr_status sim_result(kvr_search_timeline *tl, const char *what, int64_t C, double ttft,
                             double *ttft_us, kvr_error *err) {
    if (!isfinite(ttft))
        return kvr_error_set(err, KVR_ERR_NUMERIC,
                             "%s: the simulated TTFT at context %lld is %s: the cost model "
                             "overflows or is not finite there",
                             what, (long long)C, isnan(ttft) ? "not a number" : "infinite");
    *ttft_us = ttft;
    return sim_tl_finish(tl, ttft, err);
}

// ----------------------------------------------------------------------------
// KVR chain

/* Fills per-rank costs of a chain partition; the link i -> i+1 carries K/V of [0, S_i). */
kvr_status search_chain_costs_fill(const kvr_search_costs *m, int p, const int64_t *chunks,
                                   search_chain_costs *cc, kvr_error *err) {
    int64_t P = 0;
    const double lay = m->ovh[KVR_MODE_KVR].layer_us;
    for (int i = 0; i < p; i++) {
        int64_t c = chunks[i];
        cc[i].pre = m->ops.pre_us(m->ctx, c);
        cc[i].w = m->ops.attn_us(m->ctx, c, P) + m->ops.post_us(m->ctx, c) + lay;
        cc[i].x = 0;
        P += c;
        if (i + 1 < p) {
            kvr_search_link l;
            if (!search_costs_link_find(m, i, i + 1, &l))
                return kvr_error_set(err, KVR_ERR_NOT_FOUND,
                                     "KVR chain with %d ranks needs link %d->%d, which the cost "
                                     "model lacks (links cover %d devices)",
                                     p, i, i + 1, m->n_devices);
            cc[i].x = search_link_time_us(m, &l, m->kv_bytes_per_token * (double)P);
        }
    }
    return KVR_OK;
}

static kvr_status sim_check_ranks(const kvr_search_costs *m, int p, kvr_error *err) {
    if (!m) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "simulate: NULL cost model");
    if (p < 1 || p > SEARCH_MAX_DEVICES)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "ranks must be in [1, %d], got %d",
                             SEARCH_MAX_DEVICES, p);
    return KVR_OK;
}

/* Simulates the KVR chain for a given partition; see kvr_search.h. */
kvr_status kvr_search_sim_kvr(const kvr_search_costs *m, int p, const int64_t *chunks,
                              kvr_search_timeline *tl, double *ttft_us, kvr_error *err) {
    KVR_TRY(sim_check_ranks(m, p, err));
    if (!chunks || !ttft_us) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "simulate: NULL arg");
    int64_t C = 0;
    for (int i = 0; i < p; i++) {
        if (chunks[i] < 1)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG, "chunk %d has %lld tokens (must be >= 1)",
                                 i, (long long)chunks[i]);
        if (chunks[i] > INT64_MAX / 4 - C)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG, "partition sum overflows");
        C += chunks[i];
    }
    const int L = m->n_layers;
    search_chain_costs *cc = malloc((size_t)p * sizeof *cc);
    double *prev = calloc((size_t)L, sizeof *prev), *cur = calloc((size_t)L, sizeof *cur);
    kvr_status s = KVR_OK;
    if (!cc || !prev || !cur) s = kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (simulate)");
    if (s == KVR_OK) s = search_chain_costs_fill(m, p, chunks, cc, err);
    if (s != KVR_OK) goto done;
    if (tl) search_tl_reset(tl, kvr_mode_name(KVR_MODE_KVR), p, L, C);
    const kvr_search_overhead ov = m->ovh[KVR_MODE_KVR];
    for (int i = 0; i < p; i++) {
        double done = ov.run_us + m->embed_us, linkfree = -1e300;
        const double x_in = i > 0 ? cc[i - 1].x : 0;
        const double post = tl ? m->ops.post_us(m->ctx, chunks[i]) : 0;
        if (tl) sim_tl_start(tl, i, ov.run_us, m->embed_us);
        for (int l = 0; l < L; l++) {
            double own = done + cc[i].pre, ready = own;
            if (i > 0) {
                double start = prev[l] > linkfree ? prev[l] : linkfree;
                double arr = start + x_in;
                linkfree = arr;
                if (arr > ready) ready = arr;
                if (tl) search_tl_add(tl, i - 1, l, i, KVR_EVENT_SEND, start, arr);
            }
            cur[l] = ready;
            double next = ready + cc[i].w;
            if (tl) {
                search_tl_add(tl, i, l, -1, KVR_EVENT_PRE, done, own);
                if (ready > own) search_tl_add(tl, i, l, -1, KVR_EVENT_WAIT, own, ready);
                const double pe = next - ov.layer_us; /* post's end; then the layer overhead */
                search_tl_add(tl, i, l, -1, KVR_EVENT_ATTN, ready, pe - post);
                search_tl_add(tl, i, l, -1, KVR_EVENT_POST, pe - post, pe);
                if (ov.layer_us > 0) search_tl_add(tl, i, l, -1, KVR_EVENT_OVERHEAD, pe, next);
            }
            done = next;
        }
        double *t = prev;
        prev = cur;
        cur = t;
    }
    /* prev now holds the last rank's ready times */
    double ttft = prev[L - 1] + cc[p - 1].w + m->head_us;
    if (tl) search_tl_add(tl, p - 1, L, -1, KVR_EVENT_HEAD, ttft - m->head_us, ttft);
    s = sim_result(tl, kvr_mode_name(KVR_MODE_KVR), C, ttft, ttft_us, err);
done:
    free(cc);
    free(prev);
    free(cur);
    return s;
}

// ----------------------------------------------------------------------------
// single

kvr_status kvr_search_sim_single(const kvr_search_costs *m, int64_t C, kvr_search_timeline *tl,
                                 double *ttft_us, kvr_error *err) {
    if (!m || !ttft_us) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "simulate: NULL arg");
    if (C < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "context must be >= 1, got %lld",
                             (long long)C);
    const int L = m->n_layers;
    double pre = m->ops.pre_us(m->ctx, C), att = m->ops.attn_us(m->ctx, C, 0),
           post = m->ops.post_us(m->ctx, C);
    const kvr_search_overhead ov = m->ovh[KVR_MODE_SINGLE];
    double t = ov.run_us + m->embed_us;
    if (tl) {
        search_tl_reset(tl, kvr_strategy_name(KVR_STRATEGY_SINGLE), 1, L, C);
        sim_tl_start(tl, 0, ov.run_us, m->embed_us);
    }
    for (int l = 0; l < L; l++) {
        const double pe = t + pre + att + post;
        if (tl) {
            search_tl_add(tl, 0, l, -1, KVR_EVENT_PRE, t, t + pre);
            search_tl_add(tl, 0, l, -1, KVR_EVENT_ATTN, t + pre, t + pre + att);
            search_tl_add(tl, 0, l, -1, KVR_EVENT_POST, t + pre + att, pe);
            if (ov.layer_us > 0)
                search_tl_add(tl, 0, l, -1, KVR_EVENT_OVERHEAD, pe, pe + ov.layer_us);
        }
        t = pe + ov.layer_us;
    }
    if (tl) search_tl_add(tl, 0, L, -1, KVR_EVENT_HEAD, t, t + m->head_us);
    t += m->head_us;
    return sim_result(tl, kvr_strategy_name(KVR_STRATEGY_SINGLE), C, t, ttft_us, err);
}

// ----------------------------------------------------------------------------
// TSP

/* All-gather of total_bytes over p ranks (each contributes its share). */
static kvr_status sim_allgather_us(const kvr_search_costs *m, int p, double total_bytes,
                                   double max_share_bytes, double *out, kvr_error *err) {
    if (p == 1) {
        *out = 0;
        return KVR_OK;
    }
    if (m->has_allgather) {
        double bw = m->ag_busbw_gbps * 1000.0;
        *out = (p - 1) * m->ag_alpha_us + (double)(p - 1) / p * total_bytes / bw;
        return KVR_OK;
    }
    /* ring all-gather: p-1 steps; in each every rank forwards one share to its successor and the
     * step ends when the slowest link is done (NCCL's ring algorithm, no pipelining credit) */
    double step = 0;
    for (int r = 0; r < p; r++) {
        kvr_search_link l;
        int dst = (r + 1) % p;
        if (!search_costs_link_find(m, r, dst, &l))
            return kvr_error_set(err, KVR_ERR_NOT_FOUND,
                                 "TSP ring all-gather with %d ranks needs link %d->%d; list it in "
                                 "\"links\", give a default \"link\" or an \"allgather\" model",
                                 p, r, dst);
        double t = search_link_time_us(m, &l, max_share_bytes);
        if (t > step) step = t;
    }
    *out = (p - 1) * step;
    return KVR_OK;
}

kvr_status kvr_search_sim_tsp(const kvr_search_costs *m, int p, int64_t C, kvr_search_timeline *tl,
                              double *ttft_us, kvr_error *err) {
    KVR_TRY(sim_check_ranks(m, p, err));
    if (!ttft_us) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "simulate: NULL arg");
    if (C < p)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "TSP needs at least one token per rank (context %lld, %d ranks)",
                             (long long)C, p);
    const int L = m->n_layers;
    const kvr_search_overhead ov = m->ovh[KVR_MODE_TSP];
    double *pre = malloc((size_t)p * sizeof *pre), *att = malloc((size_t)p * sizeof *att),
           *post = malloc((size_t)p * sizeof *post), *t = malloc((size_t)p * sizeof *t);
    kvr_status s = KVR_OK;
    if (!pre || !att || !post || !t) {
        s = kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (simulate)");
        goto done;
    }
    int64_t P = 0;
    for (int r = 0; r < p; r++) {
        int64_t c = kvr_partition_even_chunk(C, p, r);
        pre[r] = m->ops.pre_us(m->ctx, c);
        att[r] = m->ops.attn_us(m->ctx, c, P); /* rows [P, P+c) over causal keys [0, row] */
        post[r] = m->ops.post_us(m->ctx, c);
        t[r] = ov.run_us + m->embed_us;
        P += c;
    }
    double ag = 0;
    s = sim_allgather_us(m, p, m->kv_bytes_per_token * (double)C,
                         m->kv_bytes_per_token * (double)kvr_partition_even_chunk(C, p, 0), &ag, err);
    if (s != KVR_OK) goto done;
    if (tl) {
        search_tl_reset(tl, kvr_strategy_name(KVR_STRATEGY_TSP), p, L, C);
        for (int r = 0; r < p; r++) sim_tl_start(tl, r, ov.run_us, m->embed_us);
    }
    for (int l = 0; l < L; l++) {
        double a = 0;
        for (int r = 0; r < p; r++) a = KVR_MAX(a, t[r] + pre[r]);
        double e = a + ag;
        for (int r = 0; r < p; r++) {
            if (tl) {
                search_tl_add(tl, r, l, -1, KVR_EVENT_PRE, t[r], t[r] + pre[r]);
                if (a > t[r] + pre[r]) search_tl_add(tl, r, l, -1, KVR_EVENT_WAIT, t[r] + pre[r], a);
                if (ag > 0) search_tl_add(tl, r, l, -1, KVR_EVENT_ALLGATHER, a, e);
                search_tl_add(tl, r, l, -1, KVR_EVENT_ATTN, e, e + att[r]);
                search_tl_add(tl, r, l, -1, KVR_EVENT_POST, e + att[r], e + att[r] + post[r]);
                if (ov.layer_us > 0)
                    search_tl_add(tl, r, l, -1, KVR_EVENT_OVERHEAD, e + att[r] + post[r],
                                  e + att[r] + post[r] + ov.layer_us);
            }
            t[r] = e + att[r] + post[r] + ov.layer_us;
        }
    }
    double ttft = t[p - 1] + m->head_us;
    if (tl) search_tl_add(tl, p - 1, L, -1, KVR_EVENT_HEAD, t[p - 1], ttft);
    s = sim_result(tl, kvr_strategy_name(KVR_STRATEGY_TSP), C, ttft, ttft_us, err);
done:
    free(pre);
    free(att);
    free(post);
    free(t);
    return s;
}

// ----------------------------------------------------------------------------
// ring pass-KV, zigzag

/* What kvr-run --mode ring does per layer on rank r (runtime/ring.c), step by step. Rank r holds
 * chunks A = r and B = 2p-1-r (a and b tokens) in two workspaces, so pre and post run once per
 * chunk: pre(a) + pre(b), post(a) + post(b). Every attention piece is one kvr_op_attn_block call
 * of one own chunk's rows over one chunk of the block held -- causal on the diagonal (the same
 * chunk: attn(c, 0)), full when the block's chunk is entirely earlier (block(c, k), the prefix
 * increment of attn), skipped when it is entirely later -- and each call ends by merging its
 * partial result into the running one by log-sum-exp (kvr_search_costs_merge_us of its rows):
 *   step 0 (its own K/V):  A x A causal, B x A full, B x B causal;
 *   step s = 1..p-1, the block of rank o = (r - s) mod p (chunks o and 2p-1-o):
 *     o < r: A x o_A, B x o_A full (o's chunk B is later than both of r's chunks);
 *     o > r: B x o_A, B x o_B full (both later than r's chunk A, earlier than its chunk B).
 * Transfers: r posts the block it holds to r+1 before computing on it and receives the next one
 * from r-1 after (a blocking receive into its cache): the block of step s moves over link
 * (r-1) -> r once the sender holds it (its step s-1 began) and r has consumed the previous one
 * (finished step s-1) -- one block in flight per link, nothing queued -- and r computes on it
 * when it has arrived. */
typedef struct ring_rank {
    int64_t a, b;   /* zigzag chunk sizes */
    double pre, post, own_attn, own_merge;
    double cs, ce;  /* current step: compute start (= block usable), end (attention + merges) */
    double nav;     /* next step's arrival */
} ring_rank;

kvr_status kvr_search_sim_ring(const kvr_search_costs *m, int p, int64_t C, kvr_search_timeline *tl,
                               double *ttft_us, kvr_error *err) {
    KVR_TRY(sim_check_ranks(m, p, err));
    if (!ttft_us) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "simulate: NULL arg");
    if (p == 1) {
        /* one rank: no ring; identical to single (kept so tables can list ring at p = 1) */
        kvr_status s = kvr_search_sim_single(m, C, tl, ttft_us, err);
        if (s == KVR_OK && tl)
            snprintf(tl->strategy, sizeof tl->strategy, "%s", kvr_strategy_name(KVR_STRATEGY_RING));
        return s;
    }
    if (C < 2 * (int64_t)p)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "ring needs at least one token per zigzag chunk (context %lld < 2 * "
                             "%d ranks)",
                             (long long)C, p);
    const int L = m->n_layers;
    const kvr_search_overhead ov = m->ovh[KVR_MODE_RING];
    size_t np = (size_t)p;
    ring_rank *rk = calloc(np, sizeof *rk);
    double *done = calloc(np, sizeof *done);
    kvr_search_link *lk = malloc(np * sizeof *lk); /* lk[r]: link (r-1) -> r */
    kvr_status s = KVR_OK;
    if (!rk || !done || !lk) {
        s = kvr_error_set(err, KVR_ERR_NOMEM, "out of memory (simulate)");
        goto out;
    }
    /* 2p chunks differing by at most one token, larger first; rank i: chunks i and 2p-1-i */
    int64_t base = C / (2 * p), extra = C % (2 * p);
    for (int i = 0; i < p; i++) {
        rk[i].a = base + (i < extra);
        rk[i].b = base + (2 * p - 1 - i < extra);
        rk[i].pre = m->ops.pre_us(m->ctx, rk[i].a) + m->ops.pre_us(m->ctx, rk[i].b);
        rk[i].post = m->ops.post_us(m->ctx, rk[i].a) + m->ops.post_us(m->ctx, rk[i].b);
        rk[i].own_attn = m->ops.attn_us(m->ctx, rk[i].a, 0) +
                         search_costs_block_us(m, rk[i].b, rk[i].a) +
                         m->ops.attn_us(m->ctx, rk[i].b, 0);
        rk[i].own_merge = kvr_search_costs_merge_us(m, rk[i].a) +
                          2 * kvr_search_costs_merge_us(m, rk[i].b);
        done[i] = ov.run_us + m->embed_us;
        int src = (i - 1 + p) % p;
        if (!search_costs_link_find(m, src, i, &lk[i])) {
            s = kvr_error_set(err, KVR_ERR_NOT_FOUND,
                              "ring with %d ranks needs link %d->%d; list it in \"links\" or give "
                              "a default \"link\"",
                              p, src, i);
            goto out;
        }
    }
    if (tl) {
        search_tl_reset(tl, kvr_strategy_name(KVR_STRATEGY_RING), p, L, C);
        for (int r = 0; r < p; r++) sim_tl_start(tl, r, ov.run_us, m->embed_us);
    }
    for (int l = 0; l < L; l++) {
        for (int r = 0; r < p; r++) {
            rk[r].cs = done[r] + rk[r].pre;
            const double ae = rk[r].cs + rk[r].own_attn;
            rk[r].ce = ae + rk[r].own_merge;
            if (tl) {
                search_tl_add(tl, r, l, -1, KVR_EVENT_PRE, done[r], rk[r].cs);
                search_tl_add(tl, r, l, -1, KVR_EVENT_ATTN, rk[r].cs, ae);
                if (rk[r].own_merge > 0) search_tl_add(tl, r, l, -1, KVR_EVENT_MERGE, ae, rk[r].ce);
            }
        }
        for (int st = 1; st < p; st++) {
            /* transfers of step st: sender (r-1) holds its step st-1 block since that step began;
             * the receiver takes it once it has consumed its own step st-1 block */
            for (int r = 0; r < p; r++) {
                const int from = (r - 1 + p) % p, owner = ((r - st) % p + p) % p;
                const double start = KVR_MAX(rk[from].cs, rk[r].ce);
                const double bytes = m->kv_bytes_per_token * (double)(rk[owner].a + rk[owner].b);
                rk[r].nav = start + search_link_time_us(m, &lk[r], bytes);
                if (tl) search_tl_add(tl, from, l, r, KVR_EVENT_SEND, start, rk[r].nav);
            }
            for (int r = 0; r < p; r++) {
                const ring_rank *o = &rk[((r - st) % p + p) % p];
                double blk, mg;
                if (o < &rk[r]) { /* both of r's chunks see o's chunk A */
                    blk = search_costs_block_us(m, rk[r].a, o->a) +
                          search_costs_block_us(m, rk[r].b, o->a);
                    mg = kvr_search_costs_merge_us(m, rk[r].a) +
                         kvr_search_costs_merge_us(m, rk[r].b);
                } else { /* r's chunk B sees both of o's chunks */
                    blk = search_costs_block_us(m, rk[r].b, o->a) +
                          search_costs_block_us(m, rk[r].b, o->b);
                    mg = 2 * kvr_search_costs_merge_us(m, rk[r].b);
                }
                if (tl) {
                    if (rk[r].nav > rk[r].ce)
                        search_tl_add(tl, r, l, -1, KVR_EVENT_WAIT, rk[r].ce, rk[r].nav);
                    search_tl_add(tl, r, l, -1, KVR_EVENT_ATTN, rk[r].nav, rk[r].nav + blk);
                    if (mg > 0)
                        search_tl_add(tl, r, l, -1, KVR_EVENT_MERGE, rk[r].nav + blk,
                                      rk[r].nav + blk + mg);
                }
                rk[r].cs = KVR_MAX(rk[r].nav, rk[r].ce);
                rk[r].ce = rk[r].cs + blk + mg;
            }
        }
        for (int r = 0; r < p; r++) {
            const double pe = rk[r].ce + rk[r].post;
            done[r] = pe + ov.layer_us;
            if (tl) {
                search_tl_add(tl, r, l, -1, KVR_EVENT_POST, rk[r].ce, pe);
                if (ov.layer_us > 0) search_tl_add(tl, r, l, -1, KVR_EVENT_OVERHEAD, pe, done[r]);
            }
        }
    }
    /* the last token is in chunk 2p-1, which rank 0 holds */
    double ttft = done[0] + m->head_us;
    if (tl) search_tl_add(tl, 0, L, -1, KVR_EVENT_HEAD, done[0], ttft);
    s = sim_result(tl, kvr_strategy_name(KVR_STRATEGY_RING), C, ttft, ttft_us, err);
out:
    free(rk);
    free(done);
    free(lk);
    return s;
}
