/* comm_nccl.c -- the nccl transport: one GPU per rank, K/V moved by NCCL point-to-point on
 * device buffers (docs/transport.md, docs/gpu.md).
 *   world:   a host world carries the control channel -- threads (ranks are threads of this
 *            process, GPUs device..device+n-1, communicators from ncclCommInitAll) or mpi (one
 *            process per rank; rank 0's ncclGetUniqueId travels by ctrl_bcast, then
 *            ncclCommInitRank). Control calls are the host world's, unchanged.
 *   data:    on a communication stream per rank, ordered after the work issued so far on the
 *            rank's compute stream (kvr_comm_set_stream) by an event. isend = ncclSend + a
 *            "done" event in the pool slot (wait synchronises it); recv = ncclRecv, the compute
 *            stream then waits for it, and the host waits too (the seam's recv is complete on
 *            return); allgatherv = one ncclGroupStart/End of every send and receive.
 *   memory:  DEVICE buffers only; HOST buffers are refused (KVR_ERR_UNSUPPORTED by the front
 *            end: a caller holding host buffers stages them or uses threads/mpi).
 *   sizes:   NCCL does not carry a message's size, so a size mismatch is not detected (both
 *            sides must agree, as the schedules do).
 *   failure: threads: kvr_comm_fail sets the world's flag and the control world's; every host
 *            wait on an NCCL event polls the flag and, once set, aborts this rank's
 *            communicator (ncclCommAbort) and returns KVR_ERR_COMM naming the failed rank.
 *            mpi: as the mpi transport (the tool calls kvr_comm_abort: MPI_Abort).
 * The compute stream must be set (kvr_comm_set_stream) when the backend's stream does not
 * synchronise with the legacy default stream (a cudaStreamNonBlocking stream): without it the
 * transfers are ordered after the default stream only. prefill sets it.
 * NCCL refuses two ranks on one GPU ("Duplicate GPU detected"): several ranks on one GPU use
 * the same-device transport. */
#include "comm_internal.h"

#include <cuda_runtime_api.h>
#include <nccl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct nc_world {
    kvr_comm_world *ctrl; /* the host world: control channel */
    bool over_mpi;
    pthread_mutex_t mu;
    bool failed;
    int32_t failed_rank;
    char reason[300];
} nc_world;

typedef struct nc_endpoint {
    kvr_comm *ctrl; /* this rank's control endpoint */
    ncclComm_t comm;
    int device;
    bool aborted;
    cudaStream_t stream; /* communication stream */
    cudaEvent_t mine;    /* the point on the compute stream before a transfer */
} nc_endpoint;

typedef struct nc_req {
    cudaEvent_t done;
} nc_req;

#define NC_EP(c) ((nc_endpoint *)(c)->dev)

static kvr_status nc_cuda_error(kvr_error *err, const kvr_comm *c, const char *what,
                                cudaError_t e) {
    return kvr_error_set(err, KVR_ERR_CUDA, "nccl: rank %d: %s: %s", c->rank, what,
                         cudaGetErrorString(e));
}
static kvr_status nc_nccl_error(kvr_error *err, const kvr_comm *c, const char *what,
                                ncclResult_t r) {
    return kvr_error_set(err, KVR_ERR_NCCL, "nccl: rank %d: %s: %s", c->rank, what,
                         ncclGetErrorString(r));
}
#define NC_CUDA(c, what, call)                                                                     \
    do {                                                                                           \
        cudaError_t nc_e_ = (call);                                                                \
        if (nc_e_ != cudaSuccess) return nc_cuda_error(err, (c), (what), nc_e_);                  \
    } while (0)
#define NC_NCCL(c, what, call)                                                                     \
    do {                                                                                           \
        ncclResult_t nc_r_ = (call);                                                               \
        if (nc_r_ != ncclSuccess) return nc_nccl_error(err, (c), (what), nc_r_);                  \
    } while (0)

// ----------------------------------------------------------------------------
// failure

static bool nc_failed(nc_world *g, int32_t *rank, char *reason, size_t len) {
    pthread_mutex_lock(&g->mu);
    bool f = g->failed;
    if (f) *rank = g->failed_rank, snprintf(reason, len, "%s", g->reason);
    pthread_mutex_unlock(&g->mu);
    return f;
}

static void nc_fail(kvr_comm *c, const char *reason) {
    nc_world *g = c->impl;
    pthread_mutex_lock(&g->mu);
    if (!g->failed) {
        g->failed = true;
        g->failed_rank = c->rank;
        snprintf(g->reason, sizeof g->reason, "%s", reason ? reason : "unknown error");
    }
    pthread_mutex_unlock(&g->mu);
    kvr_comm_fail(NC_EP(c)->ctrl, reason); /* wakes control waiters (threads) or logs (mpi) */
}

static void nc_abort(kvr_comm *c, int code) {
    char reason[64];
    snprintf(reason, sizeof reason, "aborted (exit code %d)", code);
    nc_world *g = c->impl;
    if (g->over_mpi) kvr_comm_abort(NC_EP(c)->ctrl, code); /* MPI_Abort: does not return */
    nc_fail(c, reason);
}

/* Wait on the host for ev; under threads, a peer's failure aborts this rank's communicator
 * (releasing its pending NCCL work) and is KVR_ERR_COMM. */
static kvr_status nc_sync(kvr_comm *c, cudaEvent_t ev, kvr_error *err) {
    nc_world *g = c->impl;
    nc_endpoint *ep = NC_EP(c);
    for (int spin = 0;; spin++) {
        cudaError_t e = cudaEventQuery(ev);
        if (e == cudaSuccess) return KVR_OK;
        if (e != cudaErrorNotReady) return nc_cuda_error(err, c, "waiting for NCCL", e);
        ncclResult_t async = ncclSuccess;
        if (ncclCommGetAsyncError(ep->comm, &async) == ncclSuccess && async != ncclSuccess &&
            async != ncclInProgress)
            return nc_nccl_error(err, c, "asynchronous NCCL error", async);
        int32_t fr;
        char reason[300];
        if (!g->over_mpi && nc_failed(g, &fr, reason, sizeof reason)) {
            if (!ep->aborted) ncclCommAbort(ep->comm);
            ep->aborted = true;
            return kvr_error_set(err, KVR_ERR_COMM, "rank %d: peer rank %d failed: %s", c->rank,
                                 fr, reason);
        }
        if (spin > 64) {
            struct timespec ts = {0, 20 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

static kvr_status nc_check_alive(kvr_comm *c, kvr_error *err) {
    nc_world *g = c->impl;
    int32_t fr;
    char reason[300];
    if (NC_EP(c)->aborted || (!g->over_mpi && nc_failed(g, &fr, reason, sizeof reason))) {
        if (!nc_failed(g, &fr, reason, sizeof reason)) fr = c->rank, snprintf(reason, sizeof reason, "aborted");
        return kvr_error_set(err, KVR_ERR_COMM, "rank %d: peer rank %d failed: %s", c->rank, fr,
                             reason);
    }
    return KVR_OK;
}

/* The communication stream waits for the work issued so far on the compute stream. */
static kvr_status nc_after_compute(kvr_comm *c, kvr_error *err) {
    nc_endpoint *ep = NC_EP(c);
    NC_CUDA(c, "cudaSetDevice", cudaSetDevice(ep->device));
    NC_CUDA(c, "cudaEventRecord", cudaEventRecord(ep->mine, (cudaStream_t)c->stream));
    NC_CUDA(c, "cudaStreamWaitEvent", cudaStreamWaitEvent(ep->stream, ep->mine, 0));
    return KVR_OK;
}

/* Record done on the communication stream and make the compute stream wait for it. */
static kvr_status nc_record_done(kvr_comm *c, cudaEvent_t done, kvr_error *err) {
    nc_endpoint *ep = NC_EP(c);
    NC_CUDA(c, "cudaEventRecord", cudaEventRecord(done, ep->stream));
    NC_CUDA(c, "cudaStreamWaitEvent", cudaStreamWaitEvent((cudaStream_t)c->stream, done, 0));
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// data channel

static kvr_status nc_isend(kvr_comm *c, int32_t dst, const void *buf, size_t bytes,
                           kvr_mem_space space, void *req, kvr_error *err) {
    (void)space;
    nc_endpoint *ep = NC_EP(c);
    nc_req *r = req;
    KVR_TRY(nc_check_alive(c, err));
    KVR_TRY(nc_after_compute(c, err));
    NC_NCCL(c, "ncclSend", ncclSend(buf, bytes, ncclInt8, dst, ep->comm, ep->stream));
    NC_CUDA(c, "cudaEventCreate", cudaEventCreateWithFlags(&r->done, cudaEventDisableTiming));
    NC_CUDA(c, "cudaEventRecord", cudaEventRecord(r->done, ep->stream));
    return KVR_OK;
}

static kvr_status nc_wait(kvr_comm *c, void *req, kvr_error *err) {
    nc_req *r = req;
    if (!r->done) return KVR_OK;
    kvr_status st = nc_sync(c, r->done, err);
    cudaEventDestroy(r->done);
    r->done = NULL;
    return st;
}

static kvr_status nc_recv(kvr_comm *c, int32_t src, void *buf, size_t bytes, kvr_mem_space space,
                          kvr_error *err) {
    (void)space;
    nc_endpoint *ep = NC_EP(c);
    KVR_TRY(nc_check_alive(c, err));
    const double t0 = kvr_time_us();
    KVR_TRY(nc_after_compute(c, err));
    NC_NCCL(c, "ncclRecv", ncclRecv(buf, bytes, ncclInt8, src, ep->comm, ep->stream));
    cudaEvent_t done;
    NC_CUDA(c, "cudaEventCreate", cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    kvr_status st = nc_record_done(c, done, err);
    if (st == KVR_OK) st = nc_sync(c, done, err);
    cudaEventDestroy(done);
    c->stats.xfer_us += kvr_time_us() - t0; /* NCCL does not tell waiting from moving */
    if (st == KVR_OK) {
        c->stats.bytes_recv += (int64_t)bytes;
        c->stats.n_msgs_recv++;
    }
    return st;
}

/* One group of every send and receive: NCCL p2p outside a group could deadlock here. */
static kvr_status nc_allgatherv(kvr_comm *c, const void *send, void *recv, const size_t *bytes,
                                kvr_mem_space space, kvr_error *err) {
    (void)space;
    nc_endpoint *ep = NC_EP(c);
    const int32_t n = c->size, me = c->rank;
    KVR_TRY(nc_check_alive(c, err));
    const double t0 = kvr_time_us();
    KVR_TRY(nc_after_compute(c, err));
    size_t off_self = 0;
    for (int32_t r = 0; r < me; r++) off_self += bytes[r];
    char *to = recv;
    const char *mine = send ? send : to + off_self;
    if (send && bytes[me] && mine != to + off_self)
        NC_CUDA(c, "cudaMemcpyAsync",
                cudaMemcpyAsync(to + off_self, mine, bytes[me], cudaMemcpyDefault, ep->stream));
    NC_NCCL(c, "ncclGroupStart", ncclGroupStart());
    ncclResult_t r = ncclSuccess;
    int64_t others = 0, n_sent = 0, n_recv = 0;
    size_t off = 0;
    for (int32_t q = 0; q < n; off += bytes[q], q++) {
        if (q == me) continue;
        if (bytes[me] && r == ncclSuccess) {
            r = ncclSend(mine, bytes[me], ncclInt8, q, ep->comm, ep->stream);
            n_sent++;
        }
        if (bytes[q] && r == ncclSuccess) {
            r = ncclRecv(to + off, bytes[q], ncclInt8, q, ep->comm, ep->stream);
            others += (int64_t)bytes[q], n_recv++;
        }
    }
    ncclResult_t r_end = ncclGroupEnd();
    if (r != ncclSuccess) return nc_nccl_error(err, c, "all-gather", r);
    if (r_end != ncclSuccess) return nc_nccl_error(err, c, "ncclGroupEnd", r_end);
    cudaEvent_t done;
    NC_CUDA(c, "cudaEventCreate", cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    kvr_status st = nc_record_done(c, done, err);
    if (st == KVR_OK) st = nc_sync(c, done, err);
    cudaEventDestroy(done);
    c->stats.xfer_us += kvr_time_us() - t0;
    if (st == KVR_OK) {
        c->stats.bytes_sent += (int64_t)bytes[me] * n_sent;
        c->stats.n_msgs_sent += n_sent;
        c->stats.bytes_recv += others;
        c->stats.n_msgs_recv += n_recv;
    }
    return st;
}

// ----------------------------------------------------------------------------
// control channel: the host world's

static kvr_status nc_ctrl_send(kvr_comm *c, int32_t dst, const void *buf, size_t bytes,
                               kvr_error *err) {
    return kvr_comm_ctrl_send(NC_EP(c)->ctrl, dst, buf, bytes, err);
}
static kvr_status nc_ctrl_recv(kvr_comm *c, int32_t src, void *buf, size_t bytes,
                               kvr_error *err) {
    return kvr_comm_ctrl_recv(NC_EP(c)->ctrl, src, buf, bytes, err);
}
static kvr_status nc_ctrl_bcast(kvr_comm *c, int32_t root, void *buf, size_t bytes,
                                kvr_error *err) {
    return kvr_comm_ctrl_bcast(NC_EP(c)->ctrl, root, buf, bytes, err);
}
static kvr_status nc_ctrl_allgather(kvr_comm *c, const void *mine, size_t bytes_each, void *all,
                                    kvr_error *err) {
    return kvr_comm_ctrl_allgather(NC_EP(c)->ctrl, mine, bytes_each, all, err);
}
static kvr_status nc_barrier(kvr_comm *c, kvr_error *err) {
    return kvr_comm_barrier(NC_EP(c)->ctrl, err);
}

// ----------------------------------------------------------------------------
// the world

static void nc_world_destroy(kvr_comm_world *w) {
    nc_world *g = w->impl;
    /* several communicators managed by this one thread: finalize them in one group (an
       intra-node collective), then destroy each; after a failure, abort instead */
    if (!g->failed && w->local) {
        ncclGroupStart();
        for (int32_t i = 0; i < w->n_local; i++) {
            nc_endpoint *ep = w->local[i].dev;
            if (ep && ep->comm && !ep->aborted) ncclCommFinalize(ep->comm);
        }
        ncclGroupEnd();
    }
    for (int32_t i = 0; w->local && i < w->n_local; i++) {
        nc_endpoint *ep = w->local[i].dev;
        if (!ep) continue;
        cudaSetDevice(ep->device);
        if (ep->comm) {
            if (ep->aborted || g->failed)
                ncclCommAbort(ep->comm);
            else
                ncclCommDestroy(ep->comm);
        }
        if (ep->stream) cudaStreamDestroy(ep->stream);
        if (ep->mine) cudaEventDestroy(ep->mine);
        free(ep);
        w->local[i].dev = NULL;
    }
    kvr_comm_world_destroy(g->ctrl);
    pthread_mutex_destroy(&g->mu);
    free(g);
    w->impl = NULL;
}

static const kvr_comm_ops comm_nccl_ops = {
    .name = "nccl",
    .transport = KVR_TRANSPORT_NCCL,
    .mem_spaces = 1u << KVR_MEM_DEVICE,
    .req_size = sizeof(nc_req),
    .isend = nc_isend,
    .recv = nc_recv,
    .wait = nc_wait,
    .allgatherv = nc_allgatherv,
    .ctrl_send = nc_ctrl_send,
    .ctrl_recv = nc_ctrl_recv,
    .ctrl_bcast = nc_ctrl_bcast,
    .ctrl_allgather = nc_ctrl_allgather,
    .barrier = nc_barrier,
    .fail = nc_fail,
    .abort = nc_abort,
    .world_destroy = nc_world_destroy,
};

bool comm_nccl_available(void) {
    return true;
}

static const char nc_one_gpu_each[] =
    "NCCL needs one GPU per rank and refuses two ranks on one GPU (\"Duplicate GPU detected\"); "
    "for several ranks on one GPU use the same-device transport";

kvr_status comm_nccl_world_create(const kvr_comm_params *p, kvr_comm_world **out,
                                  kvr_error *err) {
    *out = NULL;
    int n_dev = 0;
    cudaError_t e = cudaGetDeviceCount(&n_dev);
    if (e != cudaSuccess || n_dev == 0)
        return kvr_error_set(err, KVR_ERR_CUDA, "nccl: no CUDA device on this machine (%s)",
                             e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    if (p->device < 0 || p->device >= n_dev)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "nccl: device %d does not exist (%d "
                             "device%s)", p->device, n_dev, n_dev == 1 ? "" : "s");
    if (!p->over_mpi && (p->n_ranks < 1 || p->n_ranks > n_dev - p->device))
        return kvr_error_set(err, KVR_ERR_CUDA,
                             "nccl: %d ranks need %d GPUs from device %d, this machine has %d: %s",
                             p->n_ranks, p->n_ranks, p->device, n_dev, nc_one_gpu_each);
    nc_world *g = calloc(1, sizeof *g);
    if (!g) return kvr_error_set(err, KVR_ERR_NOMEM, "nccl: out of memory");
    pthread_mutex_init(&g->mu, NULL);
    g->over_mpi = p->over_mpi;
    kvr_comm_params cp = *p;
    cp.transport = p->over_mpi ? KVR_TRANSPORT_MPI : KVR_TRANSPORT_THREADS;
    kvr_comm_world *w = NULL;
    kvr_status st = kvr_comm_world_create(&cp, &g->ctrl, err);
    if (st == KVR_OK) {
        const int32_t size = kvr_comm_world_size(g->ctrl), n_local = kvr_comm_world_n_local(g->ctrl);
        const int32_t first = kvr_comm_rank(kvr_comm_world_local(g->ctrl, 0));
        st = comm_world_alloc(&comm_nccl_ops, size, n_local, first, g, &w, err);
    }
    if (st != KVR_OK) {
        kvr_comm_world_destroy(g->ctrl);
        pthread_mutex_destroy(&g->mu);
        free(g);
        return st;
    }
    for (int32_t i = 0; st == KVR_OK && i < w->n_local; i++) {
        nc_endpoint *ep = calloc(1, sizeof *ep);
        if (!ep) {
            st = kvr_error_set(err, KVR_ERR_NOMEM, "nccl: out of memory");
            break;
        }
        w->local[i].dev = ep;
        ep->ctrl = kvr_comm_world_local(g->ctrl, i);
        ep->device = p->over_mpi ? p->device + (w->local[i].rank % (n_dev - p->device))
                                 : p->device + i;
        w->local[i].device = ep->device;
        if ((e = cudaSetDevice(ep->device)) != cudaSuccess ||
            (e = cudaStreamCreateWithFlags(&ep->stream, cudaStreamNonBlocking)) != cudaSuccess ||
            (e = cudaEventCreateWithFlags(&ep->mine, cudaEventDisableTiming)) != cudaSuccess)
            st = nc_cuda_error(err, &w->local[i], "setting up its device", e);
    }
    ncclResult_t r = ncclSuccess;
    if (st == KVR_OK && !p->over_mpi) {
        ncclComm_t *comms = calloc((size_t)w->n_local, sizeof *comms);
        int *devs = calloc((size_t)w->n_local, sizeof *devs);
        if (!comms || !devs) st = kvr_error_set(err, KVR_ERR_NOMEM, "nccl: out of memory");
        for (int32_t i = 0; st == KVR_OK && i < w->n_local; i++) devs[i] = NC_EP(&w->local[i])->device;
        if (st == KVR_OK && (r = ncclCommInitAll(comms, w->n_local, devs)) != ncclSuccess)
            st = kvr_error_set(err, KVR_ERR_NCCL, "nccl: ncclCommInitAll over %d GPUs: %s (%s)",
                               w->n_local, ncclGetErrorString(r), nc_one_gpu_each);
        for (int32_t i = 0; st == KVR_OK && i < w->n_local; i++) NC_EP(&w->local[i])->comm = comms[i];
        free(comms), free(devs);
    } else if (st == KVR_OK) {
        kvr_comm *c = &w->local[0];
        ncclUniqueId id;
        memset(&id, 0, sizeof id);
        if (c->rank == 0 && (r = ncclGetUniqueId(&id)) != ncclSuccess)
            st = nc_nccl_error(err, c, "ncclGetUniqueId", r);
        /* every rank takes part in the broadcast, even after rank 0 failed (zero id) */
        kvr_status sb = kvr_comm_ctrl_bcast(NC_EP(c)->ctrl, 0, &id, sizeof id, err);
        if (st == KVR_OK) st = sb;
        static const ncclUniqueId zero;
        if (st == KVR_OK && memcmp(&id, &zero, sizeof id) == 0)
            st = kvr_error_set(err, KVR_ERR_NCCL, "nccl: rank 0 could not make a unique id");
        if (st == KVR_OK &&
            (r = ncclCommInitRank(&NC_EP(c)->comm, c->size, id, c->rank)) != ncclSuccess)
            st = kvr_error_set(err, KVR_ERR_NCCL, "nccl: rank %d: ncclCommInitRank on GPU %d: %s "
                               "(%s)", c->rank, NC_EP(c)->device, ncclGetErrorString(r),
                               nc_one_gpu_each);
    }
    if (st != KVR_OK) {
        kvr_comm_world_destroy(w);
        return st;
    }
    *out = w;
    return KVR_OK;
}

kvr_status comm_nccl_self_check(kvr_comm *c, size_t bytes, kvr_error *err) {
    nc_endpoint *ep = NC_EP(c);
    void *a = NULL, *b = NULL;
    unsigned char *h = malloc(bytes ? bytes : 1);
    if (!h) return kvr_error_set(err, KVR_ERR_NOMEM, "nccl: out of memory");
    kvr_status st = KVR_OK;
    cudaError_t e = cudaSetDevice(ep->device);
    if (e == cudaSuccess) e = cudaMalloc(&a, bytes);
    if (e == cudaSuccess) e = cudaMalloc(&b, bytes);
    for (size_t i = 0; i < bytes; i++) h[i] = (unsigned char)(i * 7 + 3);
    if (e == cudaSuccess) e = cudaMemcpy(a, h, bytes, cudaMemcpyHostToDevice);
    if (e == cudaSuccess) e = cudaMemset(b, 0, bytes);
    if (e != cudaSuccess) st = nc_cuda_error(err, c, "self check set-up", e);
    ncclResult_t r = ncclSuccess;
    if (st == KVR_OK) {
        ncclGroupStart();
        r = ncclSend(a, bytes, ncclInt8, c->rank, ep->comm, ep->stream);
        if (r == ncclSuccess) r = ncclRecv(b, bytes, ncclInt8, c->rank, ep->comm, ep->stream);
        ncclResult_t r2 = ncclGroupEnd();
        if (r == ncclSuccess) r = r2;
        if (r != ncclSuccess) st = nc_nccl_error(err, c, "self send/recv", r);
    }
    if (st == KVR_OK && (e = cudaStreamSynchronize(ep->stream)) != cudaSuccess)
        st = nc_cuda_error(err, c, "self send/recv", e);
    if (st == KVR_OK) {
        memset(h, 0, bytes);
        if ((e = cudaMemcpy(h, b, bytes, cudaMemcpyDeviceToHost)) != cudaSuccess)
            st = nc_cuda_error(err, c, "self check read-back", e);
        for (size_t i = 0; st == KVR_OK && i < bytes; i++)
            if (h[i] != (unsigned char)(i * 7 + 3))
                st = kvr_error_set(err, KVR_ERR_NCCL, "nccl: self send/recv: byte %zu differs", i);
    }
    cudaFree(a), cudaFree(b);
    free(h);
    return st;
}
