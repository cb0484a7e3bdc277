/* transfers.c -- profiling transfers through the runtime's comm layer (kvr_comm.h), so the
 * threads, MPI, same-device and NCCL transports are measured by the same code (the device
 * transports on device buffers of the rank's GPU: device<->device copies on one GPU, NCCL
 * between GPUs):
 *   p2p        one message src -> dst over a log-spaced size sweep, for every ordered pair (so
 *              uneven links show), timed on the sender from post to completion after the
 *              receiver said it is ready (a zero-byte message), as a one-way latency;
 *   chain      the KV-Runahead pattern for a context C split evenly: rank i receives K and V of
 *              [0, P_i) from i-1 and forwards [0, S_i) to i+1 without waiting (as
 *              runtime/prefill.c does); each rank notes when its prefix arrived (from its own
 *              barrier exit), a link's time is the difference of arrival times, the chain's the
 *              last rank's arrival;
 *   chain_compute  the same in the runtime's per-layer order with the layer ops running on every
 *              rank (pre, receive, forward, attn, post), so transfers compete with compute;
 *   allgather  TSP's per-layer all-gather of K for a context C (each rank contributes its even
 *              share).
 * Bandwidth as nccl-tests reports it: algbw = bytes / time; busbw = algbw * factor with factor 1
 * for point-to-point and chain links and (n-1)/n for all-gather (each rank receives (n-1)/n of
 * the data; nccl-tests doc/PERFORMANCE.md).
 * Every measurement is collective: each iteration's per-rank times are all-gathered and every
 * rank takes the same value, so the adaptive harness stops on every rank at the same iteration.
 * Rank 0 chooses the points (skipping those already stored), shares them, stores the samples. */
#include "kvr_device.h"
#include "kvr_profiler.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { PROF_P2P, PROF_CHAIN, PROF_CHAIN_COMPUTE, PROF_ALLGATHER };
static const char *const prof_pattern_names[] = {"p2p", "chain", "chain_compute", "allgather"};

typedef struct prof_xpoint {
    int32_t pattern;
    int32_t src, dst;
    int64_t size;    /* p2p: message bytes */
    int64_t context; /* chain, allgather: tokens */
} prof_xpoint;

typedef struct prof_xctx {
    kvr_comm *comm;
    int32_t me, n;
    kvr_mem_space space;    /* of the buffers: device for the device transports */
    const kvr_model_config *cfg;
    size_t row_bytes;       /* one token's K (or V) of one layer, fp32 */
    const prof_xpoint *pt;
    char *sbuf, *rbuf;      /* p2p / all-gather buffers */
    float *kbuf, *vbuf;     /* chain: K and V of [0, S_i) */
    double *times;          /* (2n) all-gathered per-rank values */
    double *links;          /* (max_iters, 2n) chain: per-iteration (post, arrival) per rank */
    double clock_offset_us; /* this rank's clock minus rank 0's (MPI; 0 for threads) */
    int32_t max_iters;
    int64_t part[KVR_MAX_RANKS], P[KVR_MAX_RANKS];
    /* chain_compute */
    const kvr_model *model;
    kvr_weights *w;
    kvr_workspace *ws;
    int32_t layer;
    int32_t *tokens;
} prof_xctx;

static void prof_xfree(prof_xctx *x) {
    if (x->space == KVR_MEM_DEVICE) {
        kvr_device_free(x->sbuf), kvr_device_free(x->rbuf);
        kvr_device_free(x->kbuf), kvr_device_free(x->vbuf);
    } else {
        free(x->sbuf), free(x->rbuf), free(x->kbuf), free(x->vbuf);
    }
    free(x->times), free(x->links), free(x->tokens);
}

/* All-gather one double per rank into x->times (control channel). */
static kvr_status prof_gather(prof_xctx *x, double mine, kvr_error *err) {
    return kvr_comm_ctrl_allgather(x->comm, &mine, sizeof mine, x->times, err);
}

static double prof_max(const double *v, int32_t n) {
    double m = v[0];
    for (int32_t i = 1; i < n; i++) m = v[i] > m ? v[i] : m;
    return m;
}

static kvr_status prof_p2p_measure(void *user, int32_t it, double *time_us, kvr_error *err) {
    (void)it;
    prof_xctx *x = user;
    const prof_xpoint *pt = x->pt;
    double local = 0;
    if (x->me == pt->dst) { /* ready (control channel), then the message */
        KVR_TRY(kvr_comm_ctrl_send(x->comm, pt->src, NULL, 0, err));
        KVR_TRY(kvr_comm_recv(x->comm, pt->src, x->rbuf, (size_t)pt->size, x->space, err));
    } else if (x->me == pt->src) {
        KVR_TRY(kvr_comm_ctrl_recv(x->comm, pt->dst, NULL, 0, err));
        kvr_comm_request *rq = NULL;
        const double t0 = kvr_time_us();
        KVR_TRY(kvr_comm_isend(x->comm, pt->dst, x->sbuf, (size_t)pt->size, x->space, &rq, err));
        KVR_TRY(kvr_comm_wait(x->comm, rq, err));
        local = kvr_time_us() - t0;
    }
    KVR_TRY(prof_gather(x, local, err));
    *time_us = prof_max(x->times, x->n);
    return KVR_OK;
}

static kvr_status prof_chain_measure(void *user, int32_t it, double *time_us, kvr_error *err) {
    prof_xctx *x = user;
    const bool compute = x->pt->pattern == PROF_CHAIN_COMPUTE;
    const int32_t me = x->me, n = x->n;
    const int64_t P = x->P[me], S = P + x->part[me];
    const size_t pre_bytes = (size_t)P * x->row_bytes, all_bytes = (size_t)S * x->row_bytes;
    const int32_t l = x->layer;
    if (compute) x->layer = (x->layer + 1) % x->cfg->n_layers;
    KVR_TRY(kvr_comm_barrier(x->comm, err));
    if (compute) KVR_TRY(kvr_op_pre(x->ws, l, err));
    double arrive = 0, post = 0;
    if (me > 0) {
        KVR_TRY(kvr_comm_recv(x->comm, me - 1, x->kbuf, pre_bytes, x->space, err));
        KVR_TRY(kvr_comm_recv(x->comm, me - 1, x->vbuf, pre_bytes, x->space, err));
        arrive = kvr_time_us() - x->clock_offset_us;
    }
    kvr_comm_request *rk = NULL, *rv = NULL;
    kvr_status st = KVR_OK;
    if (me < n - 1) {
        post = kvr_time_us() - x->clock_offset_us;
        st = kvr_comm_isend(x->comm, me + 1, x->kbuf, all_bytes, x->space, &rk, err);
        if (st == KVR_OK)
            st = kvr_comm_isend(x->comm, me + 1, x->vbuf, all_bytes, x->space, &rv, err);
    }
    if (st == KVR_OK && compute) {
        st = kvr_op_attn(x->ws, l, NULL, err);
        if (st == KVR_OK) st = kvr_op_post(x->ws, l, err);
    }
    kvr_status s1 = kvr_comm_wait(x->comm, rk, st == KVR_OK ? err : NULL);
    kvr_status s2 = kvr_comm_wait(x->comm, rv, st == KVR_OK && s1 == KVR_OK ? err : NULL);
    KVR_TRY(st);
    KVR_TRY(s1);
    KVR_TRY(s2);
    /* (post, arrive) of every rank on rank 0's clock */
    const double mine[2] = {post, arrive};
    KVR_TRY(kvr_comm_ctrl_allgather(x->comm, mine, sizeof mine, x->times, err));
    if (it >= 0 && it < x->max_iters)
        memcpy(x->links + (size_t)it * 2 * (size_t)n, x->times, 2 * (size_t)n * sizeof(double));
    *time_us = x->times[2 * (n - 1) + 1] - x->times[0]; /* last arrival - first post */
    return KVR_OK;
}

/* MPI ranks may sit on machines whose clocks differ: estimate each rank's offset from rank 0's
 * clock by ping-pong on the control channel (the exchange with the shortest round trip;
 * offset = remote time - the midpoint of the local send and receive). Threads share one clock:
 * offset 0. */
static kvr_status prof_clock_offsets(prof_xctx *x, kvr_error *err) {
    x->clock_offset_us = 0;
    if (kvr_comm_transport(x->comm) != KVR_TRANSPORT_MPI) return KVR_OK; /* one clock */
    for (int32_t r = 1; r < x->n; r++) {
        if (x->me != 0 && x->me != r) continue;
        double best_rtt = INFINITY, best_off = 0;
        for (int k = 0; k < 16; k++) {
            if (x->me == 0) {
                double tr = 0;
                KVR_TRY(kvr_comm_ctrl_recv(x->comm, r, NULL, 0, err));
                double t0 = kvr_time_us();
                KVR_TRY(kvr_comm_ctrl_send(x->comm, r, &t0, sizeof t0, err));
                KVR_TRY(kvr_comm_ctrl_recv(x->comm, r, &tr, sizeof tr, err));
                const double t2 = kvr_time_us();
                if (t2 - t0 < best_rtt) best_rtt = t2 - t0, best_off = tr - (t0 + t2) / 2;
            } else {
                double t0 = 0;
                KVR_TRY(kvr_comm_ctrl_send(x->comm, 0, NULL, 0, err));
                KVR_TRY(kvr_comm_ctrl_recv(x->comm, 0, &t0, sizeof t0, err));
                double tr = kvr_time_us();
                KVR_TRY(kvr_comm_ctrl_send(x->comm, 0, &tr, sizeof tr, err));
            }
        }
        if (x->me == 0) /* tell rank r its offset */
            KVR_TRY(kvr_comm_ctrl_send(x->comm, r, &best_off, sizeof best_off, err));
        else
            KVR_TRY(kvr_comm_ctrl_recv(x->comm, 0, &x->clock_offset_us, sizeof x->clock_offset_us,
                                       err));
    }
    return kvr_comm_barrier(x->comm, err);
}

static kvr_status prof_allgather_measure(void *user, int32_t it, double *time_us, kvr_error *err) {
    (void)it;
    prof_xctx *x = user;
    size_t bytes[KVR_MAX_RANKS];
    for (int32_t r = 0; r < x->n; r++) bytes[r] = (size_t)x->part[r] * x->row_bytes;
    KVR_TRY(kvr_comm_barrier(x->comm, err));
    const double t0 = kvr_time_us();
    KVR_TRY(kvr_comm_allgatherv(x->comm, x->sbuf, x->rbuf, bytes, x->space, err));
    KVR_TRY(prof_gather(x, kvr_time_us() - t0, err));
    *time_us = prof_max(x->times, x->n);
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// points

static bool prof_xdone(const kvr_db_transfer_sample *d, int64_t nd, const char *pattern,
                       int32_t n_ranks, int32_t src, int32_t dst, int64_t size) {
    for (int64_t i = 0; i < nd; i++)
        if (d[i].n_ranks == n_ranks && d[i].src == src && d[i].dst == dst &&
            d[i].size_bytes == size && strcmp(d[i].pattern, pattern) == 0)
            return true;
    return false;
}

/* Bytes a chain at context C moves in total (the whole-chain row's size): sum over links of
 * K and V of [0, S_i). */
static int64_t prof_chain_bytes(int64_t C, int32_t n, size_t row_bytes) {
    int64_t part[KVR_MAX_RANKS], tot = 0, S = 0;
    kvr_partition_even(C, n, part, NULL);
    for (int32_t i = 0; i + 1 < n; i++) {
        S += part[i];
        tot += 2 * S * (int64_t)row_bytes;
    }
    return tot;
}

/* Rank 0: the points still to measure. */
static kvr_status prof_xpoints(kvr_db *db, int64_t run_id, const kvr_profile_params *p, int32_t n,
                               size_t row_bytes, int64_t max_bytes, prof_xpoint **out,
                               int64_t *n_out, int64_t *n_total, kvr_error *err) {
    int64_t *sizes = NULL, *ctxs = NULL;
    int32_t ns = 0, nc = 0;
    KVR_TRY(kvr_grid_values(KVR_MIN(p->comm_min_bytes, max_bytes), max_bytes, p->comm_per_octave,
                            &sizes, &ns, err));
    const int64_t cmax = p->grid.ctx_max, cmin = KVR_MIN(cmax, KVR_MAX(256, 16 * (int64_t)n));
    kvr_status st = kvr_grid_values(cmin, cmax, p->comm_per_octave, &ctxs, &nc, err);
    kvr_db_transfer_sample *done = NULL;
    int64_t nd = 0;
    if (st == KVR_OK && db) st = kvr_db_transfer_samples_get(db, run_id, &done, &nd, err);
    const int64_t cap = (int64_t)ns * n * n + 3 * (int64_t)nc + 8;
    prof_xpoint *v = st == KVR_OK ? malloc((size_t)cap * sizeof *v) : NULL;
    if (st == KVR_OK && !v) st = kvr_error_set(err, KVR_ERR_NOMEM, "transfers: out of memory");
    int64_t k = 0, total = 0;
    if (st == KVR_OK) {
        /* pairs: every ordered pair up to 8 ranks, else the chain links and the ring closure */
        for (int32_t s = 0; s < n; s++)
            for (int32_t d = 0; d < n; d++) {
                if (s == d) continue;
                if (n > 8 && d != (s + 1) % n) continue;
                for (int32_t i = 0; i < ns; i++) {
                    total++;
                    if (!prof_xdone(done, nd, "p2p", n, s, d, sizes[i]))
                        v[k++] = (prof_xpoint){PROF_P2P, s, d, sizes[i], 0};
                }
            }
        for (int pat = PROF_CHAIN; pat <= PROF_ALLGATHER; pat++) {
            if (pat == PROF_CHAIN_COMPUTE && !p->comm_compute) continue;
            for (int32_t i = 0; i < nc; i++) {
                if (ctxs[i] < n) continue;
                const int64_t sz = pat == PROF_ALLGATHER ? ctxs[i] * (int64_t)row_bytes
                                                         : prof_chain_bytes(ctxs[i], n, row_bytes);
                total++;
                if (!prof_xdone(done, nd, prof_pattern_names[pat], n, -1, -1, sz))
                    v[k++] = (prof_xpoint){pat, -1, -1, sz, ctxs[i]};
            }
        }
    }
    free(sizes);
    free(ctxs);
    free(done);
    if (st != KVR_OK) {
        free(v);
        return st;
    }
    *out = v;
    *n_out = k;
    *n_total = total;
    return KVR_OK;
}

/* Rank 0: the rows of one measured point. */
static kvr_status prof_xstore(kvr_db *db, int64_t run_id, prof_xctx *x,
                              const kvr_timing_stats *ts, kvr_error *err) {
    const prof_xpoint *pt = x->pt;
    kvr_db_transfer_sample rows[KVR_MAX_RANKS + 1];
    int32_t nr = 0;
    kvr_db_transfer_sample base;
    memset(&base, 0, sizeof base);
    base.run_id = run_id;
    snprintf(base.pattern, sizeof base.pattern, "%s", prof_pattern_names[pt->pattern]);
    base.n_ranks = x->n;
    base.src = pt->src;
    base.dst = pt->dst;
    base.size_bytes = pt->size;
    base.stats = *ts;
    base.busbw_factor = pt->pattern == PROF_ALLGATHER ? (double)(x->n - 1) / x->n : 1.0;
    rows[nr++] = base;
    if (pt->pattern == PROF_CHAIN || pt->pattern == PROF_CHAIN_COMPUTE) {
        /* per link: arrival-time differences over the same iterations */
        const int32_t it = KVR_MIN(ts->n_iters, x->max_iters);
        double *v = malloc((size_t)KVR_MAX(it, 1) * sizeof *v);
        if (!v) return kvr_error_set(err, KVR_ERR_NOMEM, "transfers: out of memory");
        for (int32_t i = 0; i + 1 < x->n; i++) {
            /* rank i+1's arrival minus rank i's post */
            for (int32_t j = 0; j < it; j++)
                v[j] = x->links[(size_t)j * 2 * x->n + 2 * (i + 1) + 1] -
                       x->links[(size_t)j * 2 * x->n + 2 * i];
            kvr_db_transfer_sample r = base;
            r.src = i;
            r.dst = i + 1;
            r.size_bytes = 2 * (x->P[i] + x->part[i]) * (int64_t)x->row_bytes;
            kvr_stats_compute(v, it, &r.stats);
            r.stats.n_warmup = ts->n_warmup;
            r.stats.is_stable = ts->is_stable;
            rows[nr++] = r;
        }
        free(v);
    }
    for (int32_t i = 0; i < nr; i++) {
        const double med = rows[i].stats.median_us;
        rows[i].algbw_gbps = med > 0 ? (double)rows[i].size_bytes / (med * 1e3) : NAN;
        rows[i].busbw_gbps = rows[i].algbw_gbps * rows[i].busbw_factor;
    }
    return kvr_db_transfer_samples_put(db, rows, nr, err);
}

// ----------------------------------------------------------------------------
// one rank

kvr_status kvr_profile_transfers_rank(kvr_db *db, int64_t run_id, kvr_comm *comm,
                                      const kvr_model *m, const kvr_profile_params *p,
                                      const kvr_profile_hooks *hooks, kvr_profile_result *res,
                                      kvr_error *err) {
    memset(res, 0, sizeof *res);
    const double t_start = kvr_time_us();
    prof_xctx x;
    memset(&x, 0, sizeof x);
    x.comm = comm;
    x.space = kvr_comm_device(comm) >= 0 && kvr_comm_supports_space(comm, KVR_MEM_DEVICE)
                  ? KVR_MEM_DEVICE
                  : KVR_MEM_HOST;
    x.me = kvr_comm_rank(comm);
    x.n = kvr_comm_size(comm);
    x.cfg = kvr_model_get_config(m);
    x.model = m;
    x.row_bytes = (size_t)x.cfg->n_kv_heads * (size_t)x.cfg->head_dim * sizeof(float);
    x.max_iters = KVR_MAX(p->timing.max_iters, 1);
    const bool root = x.me == 0;
    if (x.n < 2 || x.n > KVR_MAX_RANKS)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "transfers need 2..%d ranks, not %d",
                             KVR_MAX_RANKS, x.n);
    if (root && !db) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "transfers: rank 0 needs the db");
    /* the largest message: one layer's K of the largest context, bounded by memory */
    const long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    const double mem = pages > 0 && psz > 0 ? (double)pages * (double)psz : 1e12;
    int64_t max_bytes = p->comm_max_bytes > 0 ? p->comm_max_bytes
                                              : p->grid.ctx_max * (int64_t)x.row_bytes;
    max_bytes = KVR_MIN(max_bytes, (int64_t)(mem / (8.0 * x.n)));
    max_bytes = KVR_MAX(max_bytes, 1);
    const int64_t ctx_max = p->grid.ctx_max;

    prof_xpoint *pts = NULL;
    int64_t npts = 0, total = 0;
    kvr_status st = KVR_OK;
    if (root) st = prof_xpoints(db, run_id, p, x.n, x.row_bytes, max_bytes, &pts, &npts, &total, err);
    /* share the list (control channel): first its length, then the points */
    int64_t hdr[2] = {st == KVR_OK ? npts : -1, total};
    kvr_status cs = kvr_comm_ctrl_bcast(comm, 0, hdr, sizeof hdr, err);
    if (st == KVR_OK) st = cs;
    if (st != KVR_OK) goto fail;
    if (hdr[0] < 0) {
        st = kvr_error_set(err, KVR_ERR_COMM, "rank %d: rank 0 could not list the points", x.me);
        goto fail;
    }
    npts = hdr[0];
    total = hdr[1];
    if (!root && !(pts = malloc((size_t)KVR_MAX(npts, 1) * sizeof *pts))) {
        st = kvr_error_set(err, KVR_ERR_NOMEM, "rank %d: out of memory", x.me);
        goto fail;
    }
    if ((st = kvr_comm_ctrl_bcast(comm, 0, pts, (size_t)npts * sizeof *pts, err)) != KVR_OK)
        goto fail;
    res->n_points = total;
    res->n_skipped = total - npts;

    /* buffers */
    {
        int64_t need_p2p = 0;
        bool any_chain = false, any_compute = false;
        for (int64_t i = 0; i < npts; i++) {
            if (pts[i].pattern == PROF_P2P) need_p2p = KVR_MAX(need_p2p, pts[i].size);
            if (pts[i].pattern != PROF_P2P) any_chain = true;
            if (pts[i].pattern == PROF_CHAIN_COMPUTE) any_compute = true;
        }
        const size_t ctx_bytes = (size_t)ctx_max * x.row_bytes;
        const size_t sb = KVR_MAX((size_t)need_p2p, any_chain ? ctx_bytes : 0);
        if (x.space == KVR_MEM_DEVICE) {
            const int32_t dev = kvr_comm_device(comm);
            void *b[4] = {NULL, NULL, NULL, NULL};
            st = kvr_device_alloc(dev, KVR_MAX(sb, 1), &b[0], err);
            if (st == KVR_OK) st = kvr_device_alloc(dev, KVR_MAX(sb, 1), &b[1], err);
            if (st == KVR_OK && any_chain) st = kvr_device_alloc(dev, KVR_MAX(ctx_bytes, 1), &b[2], err);
            if (st == KVR_OK && any_chain) st = kvr_device_alloc(dev, KVR_MAX(ctx_bytes, 1), &b[3], err);
            x.sbuf = b[0], x.rbuf = b[1], x.kbuf = b[2], x.vbuf = b[3];
            if (st != KVR_OK) goto fail;
        } else {
            x.sbuf = calloc(1, KVR_MAX(sb, 1));
            x.rbuf = calloc(1, KVR_MAX(sb, 1));
            x.kbuf = any_chain ? calloc(1, KVR_MAX(ctx_bytes, 1)) : NULL;
            x.vbuf = any_chain ? calloc(1, KVR_MAX(ctx_bytes, 1)) : NULL;
        }
        x.times = calloc(2 * (size_t)x.n, sizeof *x.times);
        x.links = calloc((size_t)x.max_iters * 2 * (size_t)x.n, sizeof *x.links);
        x.tokens = any_compute ? calloc((size_t)ctx_max, sizeof *x.tokens) : NULL;
        double *scratch = malloc((size_t)x.max_iters * sizeof *scratch);
        if (!x.sbuf || !x.rbuf || (any_chain && (!x.kbuf || !x.vbuf)) || !x.times || !x.links ||
            (any_compute && !x.tokens) || !scratch) {
            free(scratch);
            st = kvr_error_set(err, KVR_ERR_NOMEM, "rank %d: out of memory for %zu-byte transfer buffers",
                               x.me, sb);
            goto fail;
        }
        if ((st = prof_clock_offsets(&x, err)) != KVR_OK) {
            free(scratch);
            goto fail;
        }
        if (any_compute) {
            /* chunk of this rank at the largest context, and the whole context of keys, on the
               rank's GPU under a device transport */
            if (kvr_comm_device(comm) >= 0) st = kvr_device_use(kvr_comm_device(comm), err);
            if (st == KVR_OK) st = kvr_weights_upload(p->backend ? p->backend : kvr_backend_at(0), m, &x.w, err);
            if (st == KVR_OK)
                st = kvr_workspace_create(x.w, KVR_CEIL_DIV(ctx_max, x.n), ctx_max, p->n_threads,
                                          &x.ws, err);
            if (st != KVR_OK) {
                free(scratch);
                goto fail;
            }
        }
        for (int64_t i = 0; i < npts && st == KVR_OK; i++) {
            /* any rank's stop flag stops every rank, between points */
            double stop_mine = hooks && hooks->stop && *hooks->stop ? 1.0 : 0.0;
            x.pt = &pts[i];
            if ((st = prof_gather(&x, stop_mine, err)) != KVR_OK) break;
            if (prof_max(x.times, x.n) > 0) {
                res->stopped = true;
                break;
            }
            kvr_measure_fn fn = prof_p2p_measure;
            if (pts[i].pattern != PROF_P2P) {
                if ((st = kvr_partition_even(pts[i].context, x.n, x.part, err)) != KVR_OK) break;
                x.P[0] = 0;
                for (int32_t r = 1; r < x.n; r++) x.P[r] = x.P[r - 1] + x.part[r - 1];
                fn = pts[i].pattern == PROF_ALLGATHER ? prof_allgather_measure : prof_chain_measure;
            }
            if (pts[i].pattern == PROF_CHAIN_COMPUTE) {
                const int64_t c = x.part[x.me], P = x.P[x.me];
                for (int64_t t = 0; t < c; t++) x.tokens[t] = (int32_t)((P + t) * 7919 % x.cfg->vocab_size);
                if ((st = kvr_op_embed(x.ws, x.tokens, c, P, err)) != KVR_OK) break;
            }
            kvr_timing_stats ts;
            if ((st = kvr_time_adaptive(fn, &x, &p->timing, scratch, &ts, err)) != KVR_OK) break;
            char label[96];
            if (pts[i].pattern == PROF_P2P)
                snprintf(label, sizeof label, "p2p %d->%d %lld B", pts[i].src, pts[i].dst,
                         (long long)pts[i].size);
            else
                snprintf(label, sizeof label, "%s C=%lld", prof_pattern_names[pts[i].pattern],
                         (long long)pts[i].context);
            if (root && (st = prof_xstore(db, run_id, &x, &ts, err)) != KVR_OK) {
                kvr_error_prefix(err, "storing %s", label);
                break;
            }
            res->n_measured++;
            if (root && hooks && hooks->on_point)
                hooks->on_point(hooks->user, label, &ts, res->n_skipped + res->n_measured, total);
        }
        free(scratch);
    }
    if (st != KVR_OK) goto fail;
    free(pts);
    kvr_workspace_destroy(x.ws);
    kvr_weights_free(x.w);
    prof_xfree(&x);
    res->elapsed_s = (kvr_time_us() - t_start) * 1e-6;
    return KVR_OK;
fail:
    /* threads: wake the peers blocked on us; MPI: the tool reports and aborts the job */
    if (kvr_comm_transport(comm) != KVR_TRANSPORT_MPI) kvr_comm_fail(comm, err ? err->msg : "error");
    free(pts);
    kvr_workspace_destroy(x.ws);
    kvr_weights_free(x.w);
    prof_xfree(&x);
    res->elapsed_s = (kvr_time_us() - t_start) * 1e-6;
    return st;
}

// ----------------------------------------------------------------------------
// ranks as threads

typedef struct prof_xthread {
    kvr_db *db;
    int64_t run_id;
    kvr_comm *comm;
    const kvr_model *m;
    const kvr_profile_params *p;
    const kvr_profile_hooks *hooks;
    kvr_profile_result res;
    kvr_error err;
    kvr_status st;
} prof_xthread;

static void *prof_xthread_main(void *arg) {
    prof_xthread *t = arg;
    /* bound as kvr_prefill_run binds its ranks (params.bind), so the transfers are timed
     * between the CPUs a prefill's ranks run on */
    (void)kvr_rank_thread_bind(kvr_comm_rank(t->comm), t->p->n_ranks, t->p->n_threads);
    t->st = kvr_profile_transfers_rank(t->db, t->run_id, t->comm, t->m, t->p, t->hooks, &t->res,
                                       &t->err);
    return NULL;
}

kvr_status kvr_profile_transfers_threads(kvr_db *db, int64_t run_id, const kvr_model *m,
                                         const kvr_profile_params *p,
                                         const kvr_profile_hooks *hooks, kvr_profile_result *res,
                                         kvr_error *err) {
    memset(res, 0, sizeof *res);
    const int32_t n = p->n_ranks;
    if (n < 2 || n > KVR_MAX_RANKS)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "transfers need 2..%d ranks, not %d",
                             KVR_MAX_RANKS, n);
    kvr_comm_params cp = kvr_comm_params_default();
    cp.n_ranks = n;
    if (p->transport == KVR_TRANSPORT_SAME_DEVICE || p->transport == KVR_TRANSPORT_NCCL)
        cp.transport = p->transport; /* ranks as threads on device buffers */
    kvr_comm_world *w;
    KVR_TRY(kvr_comm_world_create(&cp, &w, err));
    prof_xthread *t = calloc((size_t)n, sizeof *t);
    pthread_t *th = calloc((size_t)n, sizeof *th);
    bool *started = calloc((size_t)n, sizeof *started);
    if (!t || !th || !started) {
        free(t), free(th), free(started);
        kvr_comm_world_destroy(w);
        return kvr_error_set(err, KVR_ERR_NOMEM, "transfers: out of memory");
    }
    kvr_status st = KVR_OK;
    for (int32_t i = 0; i < n; i++) {
        t[i] = (prof_xthread){i == 0 ? db : NULL, run_id, kvr_comm_world_local(w, i), m, p, hooks,
                              {0}, {0}, KVR_OK};
        if (pthread_create(&th[i], NULL, prof_xthread_main, &t[i]) != 0) {
            kvr_comm_fail(kvr_comm_world_local(w, i), "could not start the rank's thread");
            st = kvr_error_set(err, KVR_ERR_NOMEM, "transfers: cannot start thread for rank %d", i);
            break;
        }
        started[i] = true;
    }
    for (int32_t i = 0; i < n; i++)
        if (started[i]) pthread_join(th[i], NULL);
    if (st == KVR_OK) {
        int32_t bad = -1; /* the root cause, not a peer's echo of it */
        for (int32_t i = 0; i < n && bad < 0; i++)
            if (t[i].st != KVR_OK && t[i].st != KVR_ERR_COMM) bad = i;
        for (int32_t i = 0; i < n && bad < 0; i++)
            if (t[i].st != KVR_OK) bad = i;
        if (bad >= 0) {
            st = t[bad].st;
            if (err) *err = t[bad].err;
        }
    }
    *res = t[0].res;
    free(t), free(th), free(started);
    kvr_comm_world_destroy(w);
    return st;
}
