/* test_transport.c -- the checks every kvr_comm transport must pass (docs/transport.md).
 *
 * Each check is a function that runs on every rank with that rank's endpoint and records its
 * outcome; a driver starts the ranks:
 *   test_transport [case...]                       threads: one world, a thread per rank;
 *   mpirun -np 3 test_transport --mpi [case...]    mpi: this process's rank (77 without MPI;
 *                                                  --mpi-available alone answers 0 or 77);
 *   test_transport --same-device [case...]         same-device: threads on GPU 0, the host table
 *                                                  and the device cases (77 without a GPU);
 *   test_transport --nccl [case...]                nccl: one rank per GPU (up to 4), the device
 *                                                  cases and NCCL's self send/recv (77 without).
 * Device cases move cudaMalloc'd buffers (host <-> device mixes on same-device).
 * Checks: in-order tagless delivery under many outstanding isends, the KV chain, all-gather
 * with uneven and zero sizes (in place and not, with its accounting), the control channel
 * interleaved with data and never mixed with it or accounted, device buffers refused by
 * host-only transports, request handles recycled over thousands of sends, size mismatches,
 * bad arguments, and (transports whose kvr_comm_fail reaches peers: threads) a failed rank
 * waking peers blocked in recv, wait, barrier, all-gather and every control call. */
#include "comm_internal.h" /* on purpose: the request pool's counters */
#include "kvr_comm.h"
#include "kvr_test.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#ifdef KVR_TEST_CUDA
#include <cuda_runtime_api.h>
#endif

/* One rank's outcome: the first failed check, or the first unexpected error. */
typedef struct tt_rank {
    int fails;
    char what[1024];
} tt_rank;

static void tt_fail(tt_rank *r, const char *file, int line, const char *what, const char *msg) {
    if (!r->fails++) snprintf(r->what, sizeof r->what, "%s:%d %s%s%s", file, line, what,
                              msg ? ": " : "", msg ? msg : "");
}
#define TT_CHECK(r, cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) tt_fail(r, __FILE__, __LINE__, #cond, NULL);                                  \
    } while (0)
/* A call that must succeed; on failure record it and leave the rank function. */
#define TT_OK(r, expr, e)                                                                          \
    do {                                                                                           \
        if ((expr) != KVR_OK) {                                                                    \
            tt_fail(r, __FILE__, __LINE__, #expr, (e)->msg);                                       \
            return;                                                                                \
        }                                                                                          \
    } while (0)

typedef struct tt_case {
    const char *name;
    void (*fn)(kvr_comm *c, tt_rank *r, int arg);
    int arg;
    int32_t n_threads;     /* ranks under the threads driver */
    int32_t min_ranks;     /* drivers with fewer ranks skip the case */
    bool needs_fail_wakes; /* only transports whose kvr_comm_fail wakes peers (threads) */
    int device;            /* 0: host buffers (threads, mpi, same-device); 1: device buffers
                              (same-device, nccl); 2: host and device mixed (same-device) */
} tt_case;

// ----------------------------------------------------------------------------
// data channel

/* Many outstanding isends of varying sizes around a ring, received in order: a message out of
 * order would have the wrong size (an error) or the wrong payload. */
enum { TT_ORDER_MSGS = 1024, TT_ORDER_BATCH = 128, TT_ORDER_MAXW = 16 };
static void tt_order(kvr_comm *c, tt_rank *r, int arg) {
    (void)arg;
    const int32_t me = kvr_comm_rank(c), n = kvr_comm_size(c);
    const int32_t to = (me + 1) % n, from = (me - 1 + n) % n;
    int64_t out[TT_ORDER_BATCH][TT_ORDER_MAXW]; /* 16 KiB: each send's own buffer */
    int64_t in[TT_ORDER_MAXW];
    kvr_comm_request *rq[TT_ORDER_BATCH];
    kvr_error e;
    for (int b = 0; b < TT_ORDER_MSGS / TT_ORDER_BATCH; b++) {
        for (int k = 0; k < TT_ORDER_BATCH; k++) {
            const int64_t seq = b * TT_ORDER_BATCH + k, len = 1 + seq % TT_ORDER_MAXW;
            for (int64_t i = 0; i < len; i++) out[k][i] = me * 1000000 + seq * 100 + i;
            TT_OK(r, kvr_comm_isend(c, to, out[k], (size_t)len * 8, KVR_MEM_HOST, &rq[k], &e), &e);
        }
        for (int k = 0; k < TT_ORDER_BATCH; k++) {
            const int64_t seq = b * TT_ORDER_BATCH + k, len = 1 + seq % TT_ORDER_MAXW;
            TT_OK(r, kvr_comm_recv(c, from, in, (size_t)len * 8, KVR_MEM_HOST, &e), &e);
            for (int64_t i = 0; i < len; i++) TT_CHECK(r, in[i] == from * 1000000 + seq * 100 + i);
        }
        TT_OK(r, kvr_comm_waitall(c, TT_ORDER_BATCH, rq, &e), &e);
        for (int k = 0; k < TT_ORDER_BATCH; k++) TT_CHECK(r, rq[k] == NULL);
    }
    TT_CHECK(r, c->n_reqs <= TT_ORDER_BATCH);
}

/* The KV-Runahead chain: per layer, rank i receives K and V of [0, P_i) from i-1 and forwards
 * [0, S_i) to i+1 without waiting; the sends complete at the end. */
enum { TT_CHAIN_LAYERS = 6, TT_CHAIN_ROWS = 3 };
static void tt_chain(kvr_comm *c, tt_rank *r, int arg) {
    (void)arg;
    const int32_t me = kvr_comm_rank(c), n = kvr_comm_size(c);
    const int64_t P = (int64_t)me * TT_CHAIN_ROWS, S = P + TT_CHAIN_ROWS;
    float *kv = calloc((size_t)(2 * TT_CHAIN_LAYERS * S), sizeof *kv);
    kvr_comm_request *rq[2 * TT_CHAIN_LAYERS] = {0};
    kvr_error e;
    if (!kv) {
        tt_fail(r, __FILE__, __LINE__, "out of memory", NULL);
        return;
    }
    kvr_comm_reset_stats(c);
    for (int l = 0; l < TT_CHAIN_LAYERS; l++) {
        float *K = kv + (size_t)(2 * l) * S, *V = K + S;
        for (int64_t t = P; t < S; t++) K[t] = (float)(1000 * l + t), V[t] = -(float)(1000 * l + t);
        if (me > 0) {
            if (kvr_comm_recv(c, me - 1, K, (size_t)P * sizeof *K, KVR_MEM_HOST, &e) ||
                kvr_comm_recv(c, me - 1, V, (size_t)P * sizeof *V, KVR_MEM_HOST, &e)) {
                tt_fail(r, __FILE__, __LINE__, "chain recv", e.msg);
                break;
            }
            for (int64_t t = 0; t < P; t++)
                TT_CHECK(r, K[t] == (float)(1000 * l + t) && V[t] == -(float)(1000 * l + t));
        }
        if (me < n - 1 &&
            (kvr_comm_isend(c, me + 1, K, (size_t)S * sizeof *K, KVR_MEM_HOST, &rq[2 * l], &e) ||
             kvr_comm_isend(c, me + 1, V, (size_t)S * sizeof *V, KVR_MEM_HOST, &rq[2 * l + 1], &e))) {
            tt_fail(r, __FILE__, __LINE__, "chain isend", e.msg);
            break;
        }
    }
    if (kvr_comm_waitall(c, 2 * TT_CHAIN_LAYERS, rq, &e) != KVR_OK)
        tt_fail(r, __FILE__, __LINE__, "chain waitall", e.msg);
    const kvr_comm_stats *s = kvr_comm_get_stats(c);
    if (!r->fails) {
        TT_CHECK(r, s->bytes_recv == (int64_t)(2 * TT_CHAIN_LAYERS * P * sizeof(float)));
        TT_CHECK(r, s->bytes_sent == (me < n - 1 ? (int64_t)(2 * TT_CHAIN_LAYERS * S * sizeof(float)) : 0));
    }
    free(kv);
}

/* All-gather with per-rank sizes (zeros included), in place and not, and its accounting. */
static void tt_allgatherv(kvr_comm *c, tt_rank *r, int arg) {
    (void)arg;
    const int32_t me = kvr_comm_rank(c), n = kvr_comm_size(c);
    size_t *bytes = calloc((size_t)n, sizeof *bytes);
    int32_t *cnt = calloc((size_t)n, sizeof *cnt);
    int32_t *all = NULL, *mine = NULL;
    kvr_error e;
    for (int pat = 0; pat < 5 && bytes && cnt; pat++) {
        int64_t total = 0, off_me = 0;
        for (int32_t q = 0; q < n; q++) {
            cnt[q] = pat == 0   ? (q * 3 + 1) % 4          /* uneven, some zero */
                     : pat == 1 ? (q == n - 1 ? 5 : 0)     /* only the last has data */
                     : pat == 2 ? 0                        /* nothing at all */
                     : pat == 3 ? (q == 0 ? 0 : 1000 + 37 * q) /* large, rank 0 empty */
                                : 1 + q;                   /* all non-empty */
            bytes[q] = (size_t)cnt[q] * sizeof(int32_t);
            if (q < me) off_me += cnt[q];
            total += cnt[q];
        }
        all = realloc(all, (size_t)(total + 1) * sizeof *all);
        mine = realloc(mine, (size_t)(cnt[me] + 1) * sizeof *mine);
        if (!all || !mine) break;
        for (int in_place = 0; in_place < 2; in_place++) {
            for (int64_t i = 0; i < total; i++) all[i] = -1;
            for (int32_t i = 0; i < cnt[me]; i++) {
                mine[i] = 100000 * me + 10 * pat + i;
                if (in_place) all[off_me + i] = mine[i];
            }
            kvr_comm_reset_stats(c);
            TT_OK(r, kvr_comm_allgatherv(c, in_place ? NULL : mine, all, bytes, KVR_MEM_HOST, &e), &e);
            int64_t k = 0, others = 0;
            for (int32_t q = 0; q < n; q++) {
                for (int32_t i = 0; i < cnt[q]; i++, k++) TT_CHECK(r, all[k] == 100000 * q + 10 * pat + i);
                if (q != me) others += (int64_t)bytes[q];
            }
            const kvr_comm_stats *s = kvr_comm_get_stats(c);
            TT_CHECK(r, s->bytes_recv == others);
            TT_CHECK(r, s->bytes_sent == (int64_t)bytes[me] * (n - 1));
            TT_CHECK(r, s->n_msgs_sent == (bytes[me] ? n - 1 : 0));
        }
    }
    TT_CHECK(r, bytes && cnt && all && mine);
    free(bytes), free(cnt), free(all), free(mine);
}

/* Messages of the wrong size are an error naming both sizes, and are consumed. */
static void tt_size_mismatch(kvr_comm *c, tt_rank *r, int arg) {
    (void)arg;
    const int32_t me = kvr_comm_rank(c);
    int32_t x[4] = {1, 2, 3, 4}, y[4] = {0};
    kvr_error e;
    if (me == 0) {
        kvr_comm_request *rq;
        TT_OK(r, kvr_comm_isend(c, 1, x, sizeof x, KVR_MEM_HOST, &rq, &e), &e);
        TT_OK(r, kvr_comm_wait(c, rq, &e), &e);
        TT_OK(r, kvr_comm_ctrl_send(c, 1, x, sizeof x, &e), &e);
        x[0] = 9;
        TT_OK(r, kvr_comm_isend(c, 1, x, sizeof x, KVR_MEM_HOST, &rq, &e), &e);
        TT_OK(r, kvr_comm_wait(c, rq, &e), &e);
    } else if (me == 1) {
        TT_CHECK(r, kvr_comm_recv(c, 0, y, 2 * sizeof(int32_t), KVR_MEM_HOST, &e) == KVR_ERR_COMM);
        TT_CHECK(r, strstr(e.msg, "message from rank 0 has 16 bytes, expected 8") != NULL);
        TT_CHECK(r, kvr_comm_ctrl_recv(c, 0, y, 2 * sizeof(int32_t), &e) == KVR_ERR_COMM);
        TT_CHECK(r, strstr(e.msg, "control message from rank 0 has 16 bytes, expected 8") != NULL);
        TT_OK(r, kvr_comm_recv(c, 0, y, sizeof y, KVR_MEM_HOST, &e), &e); /* the next one */
        TT_CHECK(r, y[0] == 9 && y[3] == 4);
    }
    TT_OK(r, kvr_comm_barrier(c, &e), &e);
}

/* Peers out of range or self, and bad roots, are argument errors; no handle is taken. */
static void tt_bad_args(kvr_comm *c, tt_rank *r, int arg) {
    (void)arg;
    const int32_t me = kvr_comm_rank(c), n = kvr_comm_size(c);
    int32_t x = 0;
    kvr_comm_request *rq = (kvr_comm_request *)&x;
    kvr_error e;
    TT_CHECK(r, kvr_comm_recv(c, me, &x, 4, KVR_MEM_HOST, &e) == KVR_ERR_INVALID_ARG);
    TT_CHECK(r, kvr_comm_recv(c, n + 3, &x, 4, KVR_MEM_HOST, &e) == KVR_ERR_INVALID_ARG);
    TT_CHECK(r, kvr_comm_isend(c, -1, &x, 4, KVR_MEM_HOST, &rq, &e) == KVR_ERR_INVALID_ARG);
    TT_CHECK(r, rq == NULL);
    TT_CHECK(r, kvr_comm_ctrl_send(c, me, &x, 4, &e) == KVR_ERR_INVALID_ARG);
    TT_CHECK(r, kvr_comm_ctrl_bcast(c, n, &x, 4, &e) == KVR_ERR_INVALID_ARG);
    TT_CHECK(r, kvr_comm_recv(c, (me + 1) % n, &x, 4, (kvr_mem_space)7, &e) == KVR_ERR_INVALID_ARG);
    TT_CHECK(r, kvr_comm_wait(c, NULL, &e) == KVR_OK);
    TT_CHECK(r, c->n_reqs_out == 0);
}

/* Host-only transports refuse device buffers with a message naming the transport; nothing is
 * sent and no handle is taken. (A device transport checks device moves in its own driver.) */
static void tt_device_refused(kvr_comm *c, tt_rank *r, int arg) {
    (void)arg;
    const int32_t me = kvr_comm_rank(c), n = kvr_comm_size(c);
    TT_CHECK(r, kvr_comm_supports_space(c, KVR_MEM_HOST));
    if (kvr_comm_supports_space(c, KVR_MEM_DEVICE)) return;
    char want[64];
    snprintf(want, sizeof want, "the %s transport cannot move device buffers",
             kvr_comm_transport_name(kvr_comm_transport(c)));
    int32_t x[2] = {0};
    size_t bytes[64];
    for (int32_t q = 0; q < n && q < 64; q++) bytes[q] = 4;
    kvr_comm_request *rq = NULL;
    kvr_error e;
    kvr_comm_reset_stats(c);
    TT_CHECK(r, kvr_comm_isend(c, (me + 1) % n, x, 4, KVR_MEM_DEVICE, &rq, &e) == KVR_ERR_UNSUPPORTED);
    TT_CHECK(r, rq == NULL && strstr(e.msg, want) != NULL);
    TT_CHECK(r, kvr_comm_recv(c, (me + 1) % n, x, 4, KVR_MEM_DEVICE, &e) == KVR_ERR_UNSUPPORTED);
    TT_CHECK(r, strstr(e.msg, want) != NULL);
    if (n <= 64) {
        TT_CHECK(r, kvr_comm_allgatherv(c, NULL, x, bytes, KVR_MEM_DEVICE, &e) == KVR_ERR_UNSUPPORTED);
        TT_CHECK(r, strstr(e.msg, want) != NULL);
    }
    TT_CHECK(r, c->n_reqs_out == 0 && kvr_comm_get_stats(c)->n_msgs_sent == 0);
    TT_OK(r, kvr_comm_barrier(c, &e), &e); /* nothing stray is left on either channel */
}

/* Handles come from the endpoint's pool and go back on wait: thousands of sends with at most
 * 8 outstanding use 8 slots. */
enum { TT_RECYCLE_MSGS = 4096, TT_RECYCLE_OUT = 8 };
static void tt_requests_recycled(kvr_comm *c, tt_rank *r, int arg) {
    (void)arg;
    const int32_t me = kvr_comm_rank(c), n = kvr_comm_size(c);
    const int32_t to = (me + 1) % n, from = (me - 1 + n) % n;
    int32_t out[TT_RECYCLE_OUT], in = 0;
    kvr_comm_request *rq[TT_RECYCLE_OUT];
    kvr_error e;
    const int32_t before = c->n_reqs;
    for (int32_t i = 0; i < TT_RECYCLE_MSGS; i++) {
        const int k = i % TT_RECYCLE_OUT;
        out[k] = i;
        TT_OK(r, kvr_comm_isend(c, to, &out[k], sizeof out[k], KVR_MEM_HOST, &rq[k], &e), &e);
        if (k == TT_RECYCLE_OUT - 1) {
            for (int j = 0; j < TT_RECYCLE_OUT; j++) {
                TT_OK(r, kvr_comm_recv(c, from, &in, sizeof in, KVR_MEM_HOST, &e), &e);
                TT_CHECK(r, in == i - (TT_RECYCLE_OUT - 1) + j);
            }
            TT_OK(r, kvr_comm_waitall(c, TT_RECYCLE_OUT, rq, &e), &e);
        }
    }
    TT_CHECK(r, c->n_reqs_out == 0);
    TT_CHECK(r, c->n_reqs <= KVR_MAX(before, TT_RECYCLE_OUT));
}

// ----------------------------------------------------------------------------
// control channel

/* Control messages and collectives interleaved with pending data sends of the same size:
 * neither channel sees the other's messages, and control traffic is not accounted. */
static void tt_ctrl_separate(kvr_comm *c, tt_rank *r, int arg) {
    (void)arg;
    const int32_t me = kvr_comm_rank(c), n = kvr_comm_size(c);
    const int32_t to = (me + 1) % n, from = (me - 1 + n) % n;
    int64_t d1[2] = {1000 + me, 1}, d2[2] = {1000 + me, 2}, cm[2] = {2000 + me, 1}, got[2];
    int64_t *all = calloc((size_t)n * 2, sizeof *all);
    kvr_comm_request *rq[2] = {NULL, NULL};
    kvr_error e;
    if (!all) {
        tt_fail(r, __FILE__, __LINE__, "out of memory", NULL);
        return;
    }
    kvr_comm_reset_stats(c);
    if (kvr_comm_isend(c, to, d1, sizeof d1, KVR_MEM_HOST, &rq[0], &e)) goto fail;
    /* ring of control messages; even ranks send first so a blocking send cannot deadlock */
    for (int step = 0; step < 2; step++) {
        if ((me % 2 == 0) == (step == 0)) {
            if (kvr_comm_ctrl_send(c, to, cm, sizeof cm, &e)) goto fail;
        } else {
            if (kvr_comm_ctrl_recv(c, from, got, sizeof got, &e)) goto fail;
            TT_CHECK(r, got[0] == 2000 + from && got[1] == 1);
        }
    }
    if (kvr_comm_isend(c, to, d2, sizeof d2, KVR_MEM_HOST, &rq[1], &e)) goto fail;
    const int64_t mine[2] = {3000 + me, me};
    if (kvr_comm_ctrl_allgather(c, mine, sizeof mine, all, &e)) goto fail;
    for (int32_t q = 0; q < n; q++) TT_CHECK(r, all[2 * q] == 3000 + q && all[2 * q + 1] == q);
    int64_t b[2] = {me == n - 1 ? 4000 : -1, me == n - 1 ? 7 : -1};
    if (kvr_comm_ctrl_bcast(c, n - 1, b, sizeof b, &e)) goto fail;
    TT_CHECK(r, b[0] == 4000 && b[1] == 7);
    if (kvr_comm_recv(c, from, got, sizeof got, KVR_MEM_HOST, &e)) goto fail;
    TT_CHECK(r, got[0] == 1000 + from && got[1] == 1);
    /* in place: this rank's entry already sits in all */
    all[2 * me] = 5000 + me, all[2 * me + 1] = -me;
    if (kvr_comm_ctrl_allgather(c, NULL, 2 * sizeof(int64_t), all, &e)) goto fail;
    for (int32_t q = 0; q < n; q++) TT_CHECK(r, all[2 * q] == 5000 + q && all[2 * q + 1] == -q);
    if (kvr_comm_recv(c, from, got, sizeof got, KVR_MEM_HOST, &e)) goto fail;
    TT_CHECK(r, got[0] == 1000 + from && got[1] == 2);
    if (kvr_comm_barrier(c, &e)) goto fail;
    if (kvr_comm_waitall(c, 2, rq, &e)) goto fail;
    const kvr_comm_stats *s = kvr_comm_get_stats(c);
    TT_CHECK(r, s->bytes_sent == 32 && s->bytes_recv == 32);
    TT_CHECK(r, s->n_msgs_sent == 2 && s->n_msgs_recv == 2);
    free(all);
    return;
fail:
    tt_fail(r, __FILE__, __LINE__, "ctrl_separate", e.msg);
    kvr_comm_waitall(c, 2, rq, NULL);
    free(all);
}

// ----------------------------------------------------------------------------
// failure (threads: kvr_comm_fail reaches every peer)

enum { TT_F_RECV, TT_F_WAIT, TT_F_BARRIER, TT_F_ALLGATHERV, TT_F_CTRL_RECV, TT_F_CTRL_BCAST,
       TT_F_CTRL_ALLGATHER, TT_F_COUNT };

static kvr_status tt_blocking_call(kvr_comm *c, int kind, kvr_error *e) {
    int64_t x[4] = {0}, all[64] = {0};
    size_t bytes[8] = {8, 8, 8, 8, 8, 8, 8, 8};
    switch (kind) {
        case TT_F_RECV: return kvr_comm_recv(c, 0, x, 8, KVR_MEM_HOST, e);
        case TT_F_WAIT: { /* rank 0 never receives this */
            kvr_comm_request *rq;
            KVR_TRY(kvr_comm_isend(c, 0, x, 8, KVR_MEM_HOST, &rq, e));
            return kvr_comm_wait(c, rq, e);
        }
        case TT_F_BARRIER: return kvr_comm_barrier(c, e);
        case TT_F_ALLGATHERV: return kvr_comm_allgatherv(c, x, all, bytes, KVR_MEM_HOST, e);
        case TT_F_CTRL_RECV: return kvr_comm_ctrl_recv(c, 0, x, 8, e);
        case TT_F_CTRL_BCAST: return kvr_comm_ctrl_bcast(c, 0, x, 8, e);
        default: return kvr_comm_ctrl_allgather(c, x, 8, all, e);
    }
}

/* Rank 0 fails after its peers are blocked in call `kind`: each wakes with KVR_ERR_COMM naming
 * rank 0 and the reason, and every later call fails the same way at once. */
static void tt_failure_wakes(kvr_comm *c, tt_rank *r, int kind) {
    kvr_error e = {0};
    if (kvr_comm_rank(c) == 0) {
        struct timespec ts = {0, 30 * 1000 * 1000};
        nanosleep(&ts, NULL);
        kvr_comm_fail(c, "injected failure");
        return;
    }
    TT_CHECK(r, tt_blocking_call(c, kind, &e) == KVR_ERR_COMM); /* a hang is a ctest timeout */
    TT_CHECK(r, strstr(e.msg, "peer rank 0 failed: injected failure") != NULL);
    for (int k = 0; k < TT_F_COUNT; k++) {
        e.msg[0] = 0;
        TT_CHECK(r, tt_blocking_call(c, k, &e) == KVR_ERR_COMM);
        TT_CHECK(r, strstr(e.msg, "peer rank 0 failed: injected failure") != NULL);
    }
    TT_CHECK(r, c->n_reqs_out == 0);
}

// ----------------------------------------------------------------------------
// device buffers (drivers --same-device, --nccl)

#ifdef KVR_TEST_CUDA
#define TT_CUDA(r, call)                                                                           \
    do {                                                                                           \
        cudaError_t tt_e_ = (call);                                                                \
        if (tt_e_ != cudaSuccess) {                                                                \
            tt_fail(r, __FILE__, __LINE__, #call, cudaGetErrorString(tt_e_));                      \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)
static int tt_device = 0; /* this thread's GPU: rank i of an nccl threads world uses GPU i */
static bool tt_nccl_driver = false;

/* The KV chain on device buffers: host rows are uploaded, the prefix comes over the
 * transport into device memory and is checked after a download. */
static void tt_dev_chain(kvr_comm *c, tt_rank *r, int arg) {
    (void)arg;
    const int32_t me = kvr_comm_rank(c), n = kvr_comm_size(c);
    const int64_t rows = 3 + 1000 * (int64_t)arg, P = me * rows, S = P + rows;
    const size_t bytes = (size_t)S * sizeof(float);
    float *h = malloc(bytes), *d = NULL;
    kvr_comm_request *rq[2 * TT_CHAIN_LAYERS] = {0};
    kvr_error e;
    if (!h) {
        tt_fail(r, __FILE__, __LINE__, "out of memory", NULL);
        return;
    }
    TT_CUDA(r, cudaSetDevice(tt_nccl_driver ? me : tt_device));
    TT_CUDA(r, cudaMalloc((void **)&d, 2 * TT_CHAIN_LAYERS * bytes));
    kvr_comm_reset_stats(c);
    for (int l = 0; l < TT_CHAIN_LAYERS; l++) {
        float *K = d + (size_t)(2 * l) * S, *V = K + S;
        for (int64_t t = P; t < S; t++) h[t] = (float)(1000 * l + t);
        TT_CUDA(r, cudaMemcpy(K + P, h + P, (size_t)rows * sizeof(float), cudaMemcpyHostToDevice));
        for (int64_t t = P; t < S; t++) h[t] = -(float)(1000 * l + t);
        TT_CUDA(r, cudaMemcpy(V + P, h + P, (size_t)rows * sizeof(float), cudaMemcpyHostToDevice));
        if (me > 0) {
            if (kvr_comm_recv(c, me - 1, K, (size_t)P * sizeof *K, KVR_MEM_DEVICE, &e) ||
                kvr_comm_recv(c, me - 1, V, (size_t)P * sizeof *V, KVR_MEM_DEVICE, &e)) {
                tt_fail(r, __FILE__, __LINE__, "device chain recv", e.msg);
                break;
            }
            TT_CUDA(r, cudaMemcpy(h, K, (size_t)P * sizeof *K, cudaMemcpyDeviceToHost));
            for (int64_t t = 0; t < P; t++) TT_CHECK(r, h[t] == (float)(1000 * l + t));
            TT_CUDA(r, cudaMemcpy(h, V, (size_t)P * sizeof *V, cudaMemcpyDeviceToHost));
            for (int64_t t = 0; t < P; t++) TT_CHECK(r, h[t] == -(float)(1000 * l + t));
        }
        if (me < n - 1 &&
            (kvr_comm_isend(c, me + 1, K, bytes, KVR_MEM_DEVICE, &rq[2 * l], &e) ||
             kvr_comm_isend(c, me + 1, V, bytes, KVR_MEM_DEVICE, &rq[2 * l + 1], &e))) {
            tt_fail(r, __FILE__, __LINE__, "device chain isend", e.msg);
            break;
        }
    }
out:
    if (kvr_comm_waitall(c, 2 * TT_CHAIN_LAYERS, rq, &e) != KVR_OK)
        tt_fail(r, __FILE__, __LINE__, "device chain waitall", e.msg);
    if (!r->fails) {
        const kvr_comm_stats *s = kvr_comm_get_stats(c);
        TT_CHECK(r, s->bytes_recv == (int64_t)(2 * TT_CHAIN_LAYERS * P * sizeof(float)));
        TT_CHECK(r, s->bytes_sent == (me < n - 1 ? (int64_t)(2 * TT_CHAIN_LAYERS * bytes) : 0));
    }
    cudaFree(d);
    free(h);
}

/* All-gather with per-rank sizes (zeros included) on device buffers, in place and not. */
static void tt_dev_allgatherv(kvr_comm *c, tt_rank *r, int arg) {
    (void)arg;
    const int32_t me = kvr_comm_rank(c), n = kvr_comm_size(c);
    size_t bytes[64];
    int32_t cnt[64], h[4096];
    int32_t *d_all = NULL, *d_mine = NULL;
    kvr_error e;
    if (n > 64) return;
    TT_CUDA(r, cudaSetDevice(tt_nccl_driver ? me : tt_device));
    TT_CUDA(r, cudaMalloc((void **)&d_all, sizeof h));
    TT_CUDA(r, cudaMalloc((void **)&d_mine, sizeof h));
    for (int pat = 0; pat < 3; pat++) {
        int64_t total = 0, off_me = 0;
        for (int32_t q = 0; q < n; q++) {
            cnt[q] = pat == 0 ? (q * 3 + 1) % 4 : pat == 1 ? (q == 0 ? 0 : 700 + q) : 1 + q;
            bytes[q] = (size_t)cnt[q] * sizeof(int32_t);
            if (q < me) off_me += cnt[q];
            total += cnt[q];
        }
        if (total > 4096) return;
        for (int in_place = 0; in_place < 2; in_place++) {
            for (int64_t i = 0; i < total; i++) h[i] = -1;
            for (int32_t i = 0; i < cnt[me]; i++) h[off_me + i] = 100000 * me + 10 * pat + i;
            TT_CUDA(r, cudaMemcpy(d_mine, h + off_me, bytes[me] + 4, cudaMemcpyHostToDevice));
            if (!in_place)
                for (int32_t i = 0; i < cnt[me]; i++) h[off_me + i] = -1;
            TT_CUDA(r, cudaMemcpy(d_all, h, (size_t)(total + 1) * 4, cudaMemcpyHostToDevice));
            kvr_comm_reset_stats(c);
            TT_OK(r, kvr_comm_allgatherv(c, in_place ? NULL : d_mine, d_all, bytes,
                                         KVR_MEM_DEVICE, &e), &e);
            TT_CUDA(r, cudaMemcpy(h, d_all, (size_t)(total + 1) * 4, cudaMemcpyDeviceToHost));
            int64_t k = 0, others = 0;
            for (int32_t q = 0; q < n; q++) {
                for (int32_t i = 0; i < cnt[q]; i++, k++) TT_CHECK(r, h[k] == 100000 * q + 10 * pat + i);
                if (q != me) others += (int64_t)bytes[q];
            }
            TT_CHECK(r, kvr_comm_get_stats(c)->bytes_recv == others);
        }
    }
out:
    cudaFree(d_all);
    cudaFree(d_mine);
}

/* same-device: either side of a message may be host memory (staging for a host caller). */
static void tt_dev_mixed(kvr_comm *c, tt_rank *r, int arg) {
    (void)arg;
    const int32_t me = kvr_comm_rank(c);
    int32_t h[256], *d = NULL;
    kvr_comm_request *rq = NULL;
    kvr_error e;
    TT_CUDA(r, cudaSetDevice(tt_device));
    TT_CUDA(r, cudaMalloc((void **)&d, sizeof h));
    if (me == 0) { /* device -> host, then host -> device */
        for (int i = 0; i < 256; i++) h[i] = 7 * i;
        TT_CUDA(r, cudaMemcpy(d, h, sizeof h, cudaMemcpyHostToDevice));
        TT_OK(r, kvr_comm_isend(c, 1, d, sizeof h, KVR_MEM_DEVICE, &rq, &e), &e);
        TT_OK(r, kvr_comm_wait(c, rq, &e), &e);
        TT_OK(r, kvr_comm_recv(c, 1, d, sizeof h, KVR_MEM_DEVICE, &e), &e);
        TT_CUDA(r, cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
        for (int i = 0; i < 256; i++) TT_CHECK(r, h[i] == 7 * i + 1);
    } else if (me == 1) {
        TT_OK(r, kvr_comm_recv(c, 0, h, sizeof h, KVR_MEM_HOST, &e), &e);
        for (int i = 0; i < 256; i++) {
            TT_CHECK(r, h[i] == 7 * i);
            h[i] += 1;
        }
        TT_OK(r, kvr_comm_isend(c, 0, h, sizeof h, KVR_MEM_HOST, &rq, &e), &e);
        TT_OK(r, kvr_comm_wait(c, rq, &e), &e);
    }
out:
    cudaFree(d);
}
#endif

// ----------------------------------------------------------------------------
// the table

static const tt_case tt_cases[] = {
    {"order", tt_order, 0, 4, 2, false, 0},
    {"chain", tt_chain, 0, 5, 1, false, 0},
    {"allgatherv", tt_allgatherv, 0, 5, 1, false, 0},
    {"allgatherv_one", tt_allgatherv, 0, 1, 1, false, 0},
    {"size_mismatch", tt_size_mismatch, 0, 2, 2, false, 0},
    {"bad_args", tt_bad_args, 0, 2, 2, false, 0},
    {"device_refused", tt_device_refused, 0, 2, 2, false, 0},
    {"requests_recycled", tt_requests_recycled, 0, 2, 2, false, 0},
    {"ctrl_separate", tt_ctrl_separate, 0, 3, 2, false, 0},
    {"fail_recv", tt_failure_wakes, TT_F_RECV, 3, 2, true, 0},
    {"fail_wait", tt_failure_wakes, TT_F_WAIT, 3, 2, true, 0},
    {"fail_barrier", tt_failure_wakes, TT_F_BARRIER, 3, 2, true, 0},
    {"fail_allgatherv", tt_failure_wakes, TT_F_ALLGATHERV, 3, 2, true, 0},
    {"fail_ctrl_recv", tt_failure_wakes, TT_F_CTRL_RECV, 3, 2, true, 0},
    {"fail_ctrl_bcast", tt_failure_wakes, TT_F_CTRL_BCAST, 3, 2, true, 0},
    {"fail_ctrl_allgather", tt_failure_wakes, TT_F_CTRL_ALLGATHER, 3, 2, true, 0},
#ifdef KVR_TEST_CUDA
    {"dev_chain", tt_dev_chain, 0, 4, 1, false, 1},
    {"dev_chain_large", tt_dev_chain, 64, 2, 1, false, 1}, /* 256 KiB per rank and layer */
    {"dev_allgatherv", tt_dev_allgatherv, 0, 4, 1, false, 1},
    {"dev_mixed", tt_dev_mixed, 0, 2, 2, false, 2},
#endif
};
enum { TT_N_CASES = (int)(sizeof tt_cases / sizeof tt_cases[0]) };

// ----------------------------------------------------------------------------
// threads driver

typedef struct tt_thread {
    kvr_comm *c;
    const tt_case *tc;
    tt_rank out;
} tt_thread;

static void *tt_thread_main(void *arg) {
    tt_thread *t = arg;
#ifdef KVR_TEST_CUDA
    if (t->tc->device) cudaSetDevice(tt_nccl_driver ? kvr_comm_rank(t->c) : tt_device);
#endif
    t->tc->fn(t->c, &t->out, t->tc->arg);
    if (t->out.fails) kvr_comm_fail(t->c, "a check failed"); /* never leave peers hanging */
    return NULL;
}

/* One world of transport t with n local ranks, a thread each. */
static void tt_run_local(const tt_case *tc, kvr_transport tp, int32_t n_ranks) {
    kvr_comm_params cp = kvr_comm_params_default();
    cp.transport = tp;
    cp.n_ranks = n_ranks;
    kvr_comm_world *w;
    kvr_error e;
    KVR_CHECK_OK(kvr_comm_world_create(&cp, &w, &e), &e);
    if (kvr_test_fails) return;
    const int32_t n = kvr_comm_world_n_local(w);
    KVR_CHECK_EQ_INT(n, n_ranks);
    tt_thread t[8];
    pthread_t th[8];
    for (int32_t i = 0; i < n; i++) {
        t[i] = (tt_thread){kvr_comm_world_local(w, i), tc, {0, ""}};
        pthread_create(&th[i], NULL, tt_thread_main, &t[i]);
    }
    for (int32_t i = 0; i < n; i++) pthread_join(th[i], NULL);
    for (int32_t i = 0; i < n; i++) {
        if (t[i].out.fails) fprintf(stderr, "  %s: rank %d: %s\n", tc->name, i, t[i].out.what);
        KVR_CHECK_EQ_INT(t[i].out.fails, 0);
        KVR_CHECK_EQ_INT(t[i].c->n_reqs_out, 0); /* every handle went back */
    }
    kvr_comm_world_destroy(w);
}

/* Worlds, names, unsupported transports, and abort under threads. */
static void tt_world_api(void) {
    kvr_error e;
    kvr_comm_world *w = (kvr_comm_world *)&e;
    kvr_comm_params cp = kvr_comm_params_default();
    KVR_CHECK(cp.transport == KVR_TRANSPORT_THREADS && cp.n_ranks == 1);
    cp.n_ranks = 0;
    KVR_CHECK(kvr_comm_world_create(&cp, &w, &e) == KVR_ERR_INVALID_ARG && w == NULL);
    KVR_CHECK(strstr(e.msg, "0 ranks (need 1..4096)") != NULL);
    KVR_CHECK(kvr_comm_transport_available(KVR_TRANSPORT_THREADS));
    KVR_CHECK(strcmp(kvr_comm_transport_name(KVR_TRANSPORT_MPI), "mpi") == 0);
    KVR_CHECK(strcmp(kvr_comm_transport_name(KVR_TRANSPORT_SAME_DEVICE), "same-device") == 0);
    kvr_transport tp = KVR_TRANSPORT_THREADS;
    KVR_CHECK(kvr_comm_transport_parse("same-device", &tp, &e) == KVR_OK &&
              tp == KVR_TRANSPORT_SAME_DEVICE);
    KVR_CHECK(kvr_comm_transport_parse("tcp", &tp, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "unknown transport 'tcp' (threads, mpi, nccl, same-device)") != NULL);
    /* device transports: not built (UNSUPPORTED, saying why), or built: no device here is
       KVR_ERR_CUDA naming the transport; a GPU machine makes the world (nccl: 2 GPUs) */
    for (int t = KVR_TRANSPORT_NCCL; t <= KVR_TRANSPORT_SAME_DEVICE; t++) {
        cp = kvr_comm_params_default();
        cp.transport = (kvr_transport)t;
        cp.n_ranks = 2;
        w = (kvr_comm_world *)&e;
        kvr_status st = kvr_comm_world_create(&cp, &w, &e);
        if (!kvr_comm_transport_available((kvr_transport)t)) {
            KVR_CHECK(st == KVR_ERR_UNSUPPORTED && w == NULL);
            KVR_CHECK(strstr(e.msg, "was built without") != NULL);
        } else if (st != KVR_OK) {
            KVR_CHECK((st == KVR_ERR_CUDA || st == KVR_ERR_NCCL) && w == NULL);
            KVR_CHECK(strstr(e.msg, kvr_comm_transport_name((kvr_transport)t)) != NULL);
        } else {
            KVR_CHECK(kvr_comm_world_size(w) == 2 && kvr_comm_transport(kvr_comm_world_local(w, 0)) == (kvr_transport)t);
            kvr_comm_world_destroy(w);
        }
    }
    cp = kvr_comm_params_default();
    cp.n_ranks = 2;
    if (!kvr_comm_transport_available(KVR_TRANSPORT_MPI)) {
        cp.transport = KVR_TRANSPORT_MPI;
        KVR_CHECK(kvr_comm_world_create(&cp, &w, &e) == KVR_ERR_UNSUPPORTED);
        KVR_CHECK(strstr(e.msg, "built without MPI") != NULL);
    }
    /* threads: 4 local endpoints, ranks in order; abort marks the rank failed and returns */
    cp = kvr_comm_params_default();
    cp.n_ranks = 4;
    KVR_CHECK_OK(kvr_comm_world_create(&cp, &w, &e), &e);
    if (kvr_test_fails) return;
    KVR_CHECK(kvr_comm_world_size(w) == 4 && kvr_comm_world_n_local(w) == 4);
    for (int32_t i = 0; i < 4; i++) {
        kvr_comm *c = kvr_comm_world_local(w, i);
        KVR_CHECK(kvr_comm_rank(c) == i && kvr_comm_size(c) == 4);
        KVR_CHECK(kvr_comm_transport(c) == KVR_TRANSPORT_THREADS);
    }
    kvr_comm_abort(kvr_comm_world_local(w, 2), 3);
    int x;
    KVR_CHECK(kvr_comm_recv(kvr_comm_world_local(w, 0), 2, &x, 4, KVR_MEM_HOST, &e) == KVR_ERR_COMM);
    KVR_CHECK(strstr(e.msg, "peer rank 2 failed: aborted (exit code 3)") != NULL);
    kvr_comm_world_destroy(w);
    kvr_comm_world_destroy(NULL);
}

// ----------------------------------------------------------------------------
// mpi driver: every process runs the table on its own rank; rank 0 reports

static int tt_run_mpi(int argc, char **argv, int first_case) {
    if (!kvr_comm_transport_available(KVR_TRANSPORT_MPI)) {
        printf("skipped: this kvr was built without MPI\n");
        return 77;
    }
    kvr_comm_params cp = kvr_comm_params_default();
    cp.transport = KVR_TRANSPORT_MPI;
    cp.n_ranks = 0;
    cp.argc = &argc;
    cp.argv = &argv;
    kvr_comm_world *w;
    kvr_error e;
    if (kvr_comm_world_create(&cp, &w, &e) != KVR_OK) {
        fprintf(stderr, "mpi: %s\n", e.msg);
        return 1;
    }
    kvr_comm *c = kvr_comm_world_local(w, 0);
    const int32_t me = kvr_comm_rank(c), n = kvr_comm_size(c);
    int failed = 0, ran = 0;
    for (int i = 0; i < TT_N_CASES; i++) {
        const tt_case *tc = &tt_cases[i];
        int want = first_case >= argc;
        for (int a = first_case; a < argc; a++) want |= strcmp(argv[a], tc->name) == 0;
        if (!want || tc->device) continue;
        if (tc->needs_fail_wakes || n < tc->min_ranks) {
            if (me == 0) printf("skip %s (%s)\n", tc->name,
                                tc->needs_fail_wakes ? "mpi aborts the job on a failure"
                                                     : "too few ranks");
            continue;
        }
        tt_rank out = {0, ""};
        tc->fn(c, &out, tc->arg);
        if (c->n_reqs_out != 0) tt_fail(&out, __FILE__, __LINE__, "a request was not released", NULL);
        if (out.fails) fprintf(stderr, "  %s: rank %d: %s\n", tc->name, me, out.what);
        int32_t *fails = calloc((size_t)n, sizeof *fails), mine = out.fails, sum = 0;
        if (!fails || kvr_comm_ctrl_allgather(c, &mine, sizeof mine, fails, &e) != KVR_OK) {
            fprintf(stderr, "mpi: %s\n", fails ? e.msg : "out of memory");
            kvr_comm_abort(c, 1);
        }
        for (int32_t q = 0; q < n; q++) sum += fails[q];
        free(fails);
        ran++;
        failed += sum != 0;
        if (me == 0) printf("%s %s (%d ranks)\n", sum ? "FAIL" : "ok  ", tc->name, n);
    }
    if (me == 0) printf("%d cases over mpi, %d failed\n", ran, failed);
    kvr_comm_world_destroy(w);
    return failed || ran == 0 ? 1 : 0;
}

// ----------------------------------------------------------------------------
// device drivers: same-device (every rank a thread on GPU 0) and nccl (a thread per GPU)

static int tt_run_device(int argc, char **argv, int first_case, kvr_transport t) {
    const char *tn = kvr_comm_transport_name(t);
    if (!kvr_comm_transport_available(t)) {
        printf("skipped: this kvr was built without the %s transport\n", tn);
        return 77;
    }
#ifndef KVR_TEST_CUDA
    (void)argc, (void)argv, (void)first_case;
    printf("skipped: this test was built without CUDA\n");
    return 77;
#else
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        printf("skipped: no CUDA device (%s needs one)\n", tn);
        return 77;
    }
    const bool nccl = t == KVR_TRANSPORT_NCCL;
    tt_nccl_driver = nccl;
    int ran = 0;
    for (int i = 0; i <= TT_N_CASES; i++) {
        const char *name = i < TT_N_CASES ? tt_cases[i].name : "nccl_self";
        int want = first_case >= argc;
        for (int a = first_case; a < argc; a++) want |= strcmp(argv[a], name) == 0;
        if (!want) continue;
        const int before = kvr_test_fails;
        const int32_t n_gpu = n_dev < 4 ? n_dev : 4;
        if (i == TT_N_CASES) { /* NCCL self send/recv on every rank's communicator */
            if (!nccl) continue;
            kvr_comm_params cp = kvr_comm_params_default();
            cp.transport = t;
            cp.n_ranks = n_gpu;
            kvr_comm_world *w;
            kvr_error e;
            KVR_CHECK_OK(kvr_comm_world_create(&cp, &w, &e), &e);
            if (kvr_test_fails != before) break;
            for (int32_t q = 0; q < n_gpu; q++)
                KVR_CHECK_OK(comm_nccl_self_check(kvr_comm_world_local(w, q), (size_t)3 << 20, &e), &e);
            kvr_comm_world_destroy(w);
        } else {
            const tt_case *tc = &tt_cases[i];
            const int32_t n = nccl ? n_gpu : tc->n_threads;
            if (nccl && (tc->device != 1)) {
                printf("skip %s (nccl moves device buffers only)\n", name);
                continue;
            }
            if (n < tc->min_ranks) {
                printf("skip %s (%d GPU%s)\n", name, n, n == 1 ? "" : "s");
                continue;
            }
            tt_run_local(tc, t, n);
        }
        ran++;
        printf("%s %s (%s)\n", kvr_test_fails == before ? "ok  " : "FAIL", name, tn);
    }
    printf("%d cases over %s, %d checks, %d failed\n", ran, tn, kvr_test_checks, kvr_test_fails);
    return kvr_test_fails || ran == 0 ? 1 : 0;
#endif
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--mpi-available") == 0)
        return kvr_comm_transport_available(KVR_TRANSPORT_MPI) ? 0 : 77;
    if (argc > 1 && strcmp(argv[1], "--mpi") == 0) return tt_run_mpi(argc, argv, 2);
    if (argc > 1 && strcmp(argv[1], "--same-device") == 0)
        return tt_run_device(argc, argv, 2, KVR_TRANSPORT_SAME_DEVICE);
    if (argc > 1 && strcmp(argv[1], "--nccl") == 0)
        return tt_run_device(argc, argv, 2, KVR_TRANSPORT_NCCL);
    int ran = 0;
    for (int i = -1; i < TT_N_CASES; i++) {
        const char *name = i < 0 ? "world_api" : tt_cases[i].name;
        int want = argc <= 1;
        for (int a = 1; a < argc; a++) want |= strcmp(argv[a], name) == 0;
        if (!want || (i >= 0 && tt_cases[i].device)) continue; /* device cases: own drivers */
        const int before = kvr_test_fails;
        if (i < 0)
            tt_world_api();
        else
            tt_run_local(&tt_cases[i], KVR_TRANSPORT_THREADS, tt_cases[i].n_threads);
        ran++;
        printf("%s %s\n", kvr_test_fails == before ? "ok  " : "FAIL", name);
    }
    printf("%d cases, %d checks, %d failed\n", ran, kvr_test_checks, kvr_test_fails);
    if (ran == 0) {
        fprintf(stderr, "no test case matched\n");
        return 1;
    }
    return kvr_test_fails ? 1 : 0;
}
