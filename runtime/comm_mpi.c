/* comm_mpi.c -- the Open MPI transport: one rank per process, two duplicates of
 * MPI_COMM_WORLD so data and control never match each other's messages:
 *   data:     MPI_Isend / MPI_Probe + MPI_Recv (the probe is the wait, the receive the
 *             transfer) / MPI_Wait, one tag (MPI keeps messages between a pair in order); the
 *             all-gather is the front end's grouped point-to-point; host memory only;
 *   control:  MPI_Send / MPI_Probe + MPI_Recv, MPI_Bcast, MPI_Allgather, MPI_Barrier.
 * Peer failures end the job through MPI_Abort (kvr_comm_abort): MPI cannot deliver them to
 * peers blocked inside it otherwise. Without MPI at build time the world constructor reports
 * KVR_ERR_UNSUPPORTED. */
#include "comm_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#ifdef KVR_USE_MPI
#include <mpi.h>

enum { MPI_KVR_TAG = 0 };

typedef struct mpi_world {
    MPI_Comm data, ctrl;
    bool init_here; /* we called MPI_Init, so destroy finalises */
} mpi_world;

typedef struct mpi_req {
    MPI_Request r;
} mpi_req;

static kvr_status mpi_error(kvr_error *err, int rc, const char *what, int32_t rank) {
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, s, &len);
    return kvr_error_set(err, KVR_ERR_COMM, "rank %d: %s: %s", rank, what, s);
}

static kvr_status mpi_check_size(size_t bytes, int32_t rank, kvr_error *err) {
    if (bytes > (size_t)INT_MAX)
        return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                             "rank %d: MPI message of %zu bytes exceeds the 2 GiB per-message limit",
                             rank, bytes);
    return KVR_OK;
}

/* Probe for the next message from src on comm, check its size, receive it; *t_probe_us is
 * when the probe returned (the end of the wait). A message of the wrong size is consumed and
 * reported. */
static kvr_status mpi_probe_recv(kvr_comm *c, MPI_Comm comm, const char *kind, int32_t src,
                                 void *buf, size_t bytes, double *t_probe_us, kvr_error *err) {
    KVR_TRY(mpi_check_size(bytes, c->rank, err));
    MPI_Status st;
    int rc = MPI_Probe(src, MPI_KVR_TAG, comm, &st);
    if (rc != MPI_SUCCESS) return mpi_error(err, rc, "MPI_Probe", c->rank);
    int count = 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    *t_probe_us = kvr_time_us();
    if ((size_t)count != bytes) { /* consume it (as threads does), so the next one is next */
        void *tmp = malloc(count > 0 ? (size_t)count : 1);
        if (tmp) MPI_Recv(tmp, count, MPI_BYTE, src, MPI_KVR_TAG, comm, MPI_STATUS_IGNORE);
        free(tmp);
        return kvr_error_set(err, KVR_ERR_COMM, "rank %d: %s from rank %d has %d bytes, expected %zu",
                             c->rank, kind, src, count, bytes);
    }
    rc = MPI_Recv(buf, (int)bytes, MPI_BYTE, src, MPI_KVR_TAG, comm, MPI_STATUS_IGNORE);
    return rc == MPI_SUCCESS ? KVR_OK : mpi_error(err, rc, "MPI_Recv", c->rank);
}

// ----------------------------------------------------------------------------
// data channel

static kvr_status mpi_isend(kvr_comm *c, int32_t dst, const void *buf, size_t bytes,
                            kvr_mem_space space, void *req, kvr_error *err) {
    (void)space;
    KVR_TRY(mpi_check_size(bytes, c->rank, err));
    mpi_world *w = c->impl;
    mpi_req *r = req;
    int rc = MPI_Isend(buf, (int)bytes, MPI_BYTE, dst, MPI_KVR_TAG, w->data, &r->r);
    return rc == MPI_SUCCESS ? KVR_OK : mpi_error(err, rc, "MPI_Isend", c->rank);
}

static kvr_status mpi_recv(kvr_comm *c, int32_t src, void *buf, size_t bytes, kvr_mem_space space,
                           kvr_error *err) {
    (void)space;
    mpi_world *w = c->impl;
    double t0 = kvr_time_us(), t1 = t0;
    KVR_TRY(mpi_probe_recv(c, w->data, "message", src, buf, bytes, &t1, err));
    double t2 = kvr_time_us();
    c->stats.wait_us += t1 - t0;
    c->stats.xfer_us += t2 - t1;
    c->stats.bytes_recv += (int64_t)bytes;
    c->stats.n_msgs_recv++;
    return KVR_OK;
}

static kvr_status mpi_wait(kvr_comm *c, void *req, kvr_error *err) {
    mpi_req *r = req;
    int rc = MPI_Wait(&r->r, MPI_STATUS_IGNORE);
    return rc == MPI_SUCCESS ? KVR_OK : mpi_error(err, rc, "MPI_Wait", c->rank);
}

// ----------------------------------------------------------------------------
// control channel

static kvr_status mpi_ctrl_send(kvr_comm *c, int32_t dst, const void *buf, size_t bytes,
                                kvr_error *err) {
    KVR_TRY(mpi_check_size(bytes, c->rank, err));
    mpi_world *w = c->impl;
    int rc = MPI_Send(buf, (int)bytes, MPI_BYTE, dst, MPI_KVR_TAG, w->ctrl);
    return rc == MPI_SUCCESS ? KVR_OK : mpi_error(err, rc, "MPI_Send", c->rank);
}

static kvr_status mpi_ctrl_recv(kvr_comm *c, int32_t src, void *buf, size_t bytes,
                                kvr_error *err) {
    mpi_world *w = c->impl;
    double t;
    return mpi_probe_recv(c, w->ctrl, "control message", src, buf, bytes, &t, err);
}

static kvr_status mpi_ctrl_bcast(kvr_comm *c, int32_t root, void *buf, size_t bytes,
                                 kvr_error *err) {
    KVR_TRY(mpi_check_size(bytes, c->rank, err));
    mpi_world *w = c->impl;
    int rc = MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, w->ctrl);
    return rc == MPI_SUCCESS ? KVR_OK : mpi_error(err, rc, "MPI_Bcast", c->rank);
}

static kvr_status mpi_ctrl_allgather(kvr_comm *c, const void *mine, size_t bytes_each, void *all,
                                     kvr_error *err) {
    KVR_TRY(mpi_check_size(bytes_each * (size_t)c->size, c->rank, err));
    mpi_world *w = c->impl;
    int rc = MPI_Allgather(mine ? mine : MPI_IN_PLACE, (int)bytes_each, MPI_BYTE, all,
                           (int)bytes_each, MPI_BYTE, w->ctrl);
    return rc == MPI_SUCCESS ? KVR_OK : mpi_error(err, rc, "MPI_Allgather", c->rank);
}

static kvr_status mpi_barrier(kvr_comm *c, kvr_error *err) {
    mpi_world *w = c->impl;
    int rc = MPI_Barrier(w->ctrl);
    return rc == MPI_SUCCESS ? KVR_OK : mpi_error(err, rc, "MPI_Barrier", c->rank);
}

// ----------------------------------------------------------------------------
// failure and the world

/* MPI cannot wake a peer blocked in MPI_Recv from inside the library; the failing rank's
 * caller ends the job with kvr_comm_abort (tools do), which is what makes peers fail. */
static void mpi_fail(kvr_comm *c, const char *reason) {
    kvr_log(KVR_LOG_ERROR, "rank %d failed: %s", c->rank, reason ? reason : "unknown error");
}

static void mpi_abort(kvr_comm *c, int code) {
    (void)c;
    MPI_Abort(MPI_COMM_WORLD, code);
}

static void mpi_world_destroy(kvr_comm_world *kw) {
    mpi_world *w = kw->impl;
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) {
        if (w->data != MPI_COMM_NULL) MPI_Comm_free(&w->data);
        if (w->ctrl != MPI_COMM_NULL) MPI_Comm_free(&w->ctrl);
        if (w->init_here) MPI_Finalize();
    }
    free(w);
    kw->impl = NULL;
}

static const kvr_comm_ops comm_mpi_ops = {
    .name = "mpi",
    .transport = KVR_TRANSPORT_MPI,
    .mem_spaces = 1u << KVR_MEM_HOST,
    .req_size = sizeof(mpi_req),
    .isend = mpi_isend,
    .recv = mpi_recv,
    .wait = mpi_wait,
    .allgatherv = comm_allgatherv_p2p,
    .ctrl_send = mpi_ctrl_send,
    .ctrl_recv = mpi_ctrl_recv,
    .ctrl_bcast = mpi_ctrl_bcast,
    .ctrl_allgather = mpi_ctrl_allgather,
    .barrier = mpi_barrier,
    .fail = mpi_fail,
    .abort = mpi_abort,
    .world_destroy = mpi_world_destroy,
};

bool comm_mpi_available(void) {
    return true;
}

kvr_status comm_mpi_world_create(const kvr_comm_params *p, kvr_comm_world **out,
                                 kvr_error *err) {
    *out = NULL;
    mpi_world *w = calloc(1, sizeof *w);
    if (!w) return kvr_error_set(err, KVR_ERR_NOMEM, "comm: out of memory");
    w->data = w->ctrl = MPI_COMM_NULL;
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int provided = 0;
        int rc = MPI_Init_thread(p->argc, p->argv, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) {
            free(w);
            return mpi_error(err, rc, "MPI_Init_thread", -1);
        }
        w->init_here = true;
    }
    /* Errors come back as codes (we turn them into kvr_error) instead of aborting; the
     * duplicates inherit the handler. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    kvr_comm_world tmp = {.impl = w};
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &w->data);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_dup(MPI_COMM_WORLD, &w->ctrl);
    if (rc != MPI_SUCCESS) {
        kvr_status st = mpi_error(err, rc, "MPI_Comm_dup", rank);
        mpi_world_destroy(&tmp);
        return st;
    }
    if (p->n_ranks != 0 && p->n_ranks != size) {
        kvr_status st = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                      "mpi: %d ranks asked but the MPI job has %d processes",
                                      p->n_ranks, size);
        mpi_world_destroy(&tmp);
        return st;
    }
    kvr_comm_world *kw;
    kvr_status st = comm_world_alloc(&comm_mpi_ops, size, 1, rank, w, &kw, err);
    if (st != KVR_OK) {
        mpi_world_destroy(&tmp);
        return st;
    }
    *out = kw;
    return KVR_OK;
}

#else /* !KVR_USE_MPI */

bool comm_mpi_available(void) {
    return false;
}
kvr_status comm_mpi_world_create(const kvr_comm_params *p, kvr_comm_world **out,
                                 kvr_error *err) {
    (void)p;
    *out = NULL;
    return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                         "this kvr was built without MPI (install libopenmpi-dev and rebuild)");
}
#endif
