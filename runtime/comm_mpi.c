/* comm_mpi.c -- the Open MPI transport: MPI_Isend / MPI_Probe + MPI_Recv (the probe is the
 * wait, the receive the transfer) / MPI_Wait, MPI_Allgatherv, MPI_Barrier. Peer failures end
 * the job through MPI_Abort (MPI cannot deliver them to blocked peers otherwise); without MPI
 * at build time every entry point reports KVR_ERR_UNSUPPORTED. */
#include "comm_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#ifdef KVR_USE_MPI
#include <mpi.h>

static kvr_status kvr_mpi_error(kvr_error *err, int rc, const char *what, int32_t rank) {
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, s, &len);
    return kvr_error_set(err, KVR_ERR_COMM, "rank %d: %s: %s", rank, what, s);
}

static kvr_status kvr_mpi_check_size(size_t bytes, int32_t rank, kvr_error *err) {
    if (bytes > (size_t)INT_MAX)
        return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                             "rank %d: MPI message of %zu bytes exceeds the 2 GiB per-message limit",
                             rank, bytes);
    return KVR_OK;
}

static kvr_status mpi_isend(kvr_comm *c, int32_t dst, int32_t tag, const void *buf, size_t bytes,
                            kvr_comm_request **req, kvr_error *err) {
    KVR_TRY(kvr_mpi_check_size(bytes, c->rank, err));
    kvr_comm_request *r = calloc(1, sizeof *r);
    MPI_Request *mr = malloc(sizeof *mr);
    if (!r || !mr) {
        free(r), free(mr);
        return kvr_error_set(err, KVR_ERR_NOMEM, "isend: out of memory");
    }
    int rc = MPI_Isend(buf, (int)bytes, MPI_BYTE, dst, tag, MPI_COMM_WORLD, mr);
    if (rc != MPI_SUCCESS) {
        free(r), free(mr);
        return kvr_mpi_error(err, rc, "MPI_Isend", c->rank);
    }
    r->src = c->rank, r->dst = dst, r->tag = tag, r->buf = buf, r->bytes = bytes, r->mpi = mr;
    *req = r;
    return KVR_OK;
}

static kvr_status mpi_recv(kvr_comm *c, int32_t src, int32_t tag, void *buf, size_t bytes,
                           kvr_error *err) {
    KVR_TRY(kvr_mpi_check_size(bytes, c->rank, err));
    MPI_Status st;
    double t0 = kvr_time_us();
    int rc = MPI_Probe(src, tag, MPI_COMM_WORLD, &st);
    if (rc != MPI_SUCCESS) return kvr_mpi_error(err, rc, "MPI_Probe", c->rank);
    int count = 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    double t1 = kvr_time_us();
    if ((size_t)count != bytes)
        return kvr_error_set(err, KVR_ERR_COMM,
                             "rank %d: message from rank %d (tag %d) has %d bytes, expected %zu",
                             c->rank, src, tag, count, bytes);
    rc = MPI_Recv(buf, (int)bytes, MPI_BYTE, src, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return kvr_mpi_error(err, rc, "MPI_Recv", c->rank);
    double t2 = kvr_time_us();
    c->stats.wait_us += t1 - t0;
    c->stats.xfer_us += t2 - t1;
    c->stats.bytes_recv += (int64_t)bytes;
    c->stats.n_msgs_recv++;
    return KVR_OK;
}

static kvr_status mpi_wait(kvr_comm *c, kvr_comm_request *r, kvr_error *err) {
    int rc = MPI_Wait((MPI_Request *)r->mpi, MPI_STATUS_IGNORE);
    free(r->mpi);
    free(r);
    return rc == MPI_SUCCESS ? KVR_OK : kvr_mpi_error(err, rc, "MPI_Wait", c->rank);
}

static kvr_status mpi_barrier(kvr_comm *c, kvr_error *err) {
    double t0 = kvr_time_us();
    int rc = MPI_Barrier(MPI_COMM_WORLD);
    c->stats.wait_us += kvr_time_us() - t0;
    return rc == MPI_SUCCESS ? KVR_OK : kvr_mpi_error(err, rc, "MPI_Barrier", c->rank);
}

static kvr_status mpi_allgatherv(kvr_comm *c, const void *send, void *recv, const size_t *bytes,
                                 kvr_error *err) {
    int *counts = malloc((size_t)c->size * sizeof *counts);
    int *displs = malloc((size_t)c->size * sizeof *displs);
    if (!counts || !displs) {
        free(counts), free(displs);
        return kvr_error_set(err, KVR_ERR_NOMEM, "allgatherv: out of memory");
    }
    size_t off = 0;
    kvr_status st = KVR_OK;
    for (int32_t r = 0; r < c->size; r++) {
        if (bytes[r] > (size_t)INT_MAX || off > (size_t)INT_MAX) {
            st = kvr_mpi_check_size(KVR_MAX(bytes[r], off), c->rank, err);
            break;
        }
        counts[r] = (int)bytes[r];
        displs[r] = (int)off;
        off += bytes[r];
    }
    if (st == KVR_OK) {
        /* Barrier first so the accounting separates waiting for peers from moving bytes. */
        st = mpi_barrier(c, err);
    }
    if (st == KVR_OK) {
        double t0 = kvr_time_us();
        int rc = MPI_Allgatherv(send ? send : MPI_IN_PLACE, counts[c->rank], MPI_BYTE, recv,
                                counts, displs, MPI_BYTE, MPI_COMM_WORLD);
        c->stats.xfer_us += kvr_time_us() - t0;
        if (rc != MPI_SUCCESS) st = kvr_mpi_error(err, rc, "MPI_Allgatherv", c->rank);
        c->stats.bytes_recv += (int64_t)(off - bytes[c->rank]);
        c->stats.bytes_sent += (int64_t)bytes[c->rank] * (c->size - 1);
    }
    free(counts), free(displs);
    return st;
}

/* MPI cannot wake a peer blocked in MPI_Recv from inside the library; the failing rank's
 * caller ends the job with kvr_comm_mpi_abort (tools do), which is what makes peers fail. */
static void mpi_fail(kvr_comm *c, const char *reason) {
    kvr_log(KVR_LOG_ERROR, "rank %d failed: %s", c->rank, reason ? reason : "unknown error");
}

void kvr_comm_mpi_abort(kvr_comm *c, int code) {
    (void)c;
    MPI_Abort(MPI_COMM_WORLD, code);
}

const kvr_comm_ops comm_mpi_ops = {
    mpi_isend, mpi_recv, mpi_wait, mpi_allgatherv, mpi_barrier, mpi_fail,
};

bool kvr_comm_mpi_available(void) {
    return true;
}

kvr_status kvr_comm_mpi_init(int *argc, char ***argv, kvr_comm **out, kvr_error *err) {
    *out = NULL;
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int provided = 0;
        int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) return kvr_mpi_error(err, rc, "MPI_Init_thread", -1);
    }
    /* Errors come back as codes (we turn them into kvr_error) instead of aborting. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    kvr_comm *c = calloc(1, sizeof *c);
    if (!c) return kvr_error_set(err, KVR_ERR_NOMEM, "comm: out of memory");
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    c->ops = &comm_mpi_ops;
    c->transport = KVR_TRANSPORT_MPI;
    c->rank = rank;
    c->size = size;
    *out = c;
    return KVR_OK;
}

void kvr_comm_mpi_finalize(kvr_comm *c) {
    free(c);
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
}

#else /* !KVR_USE_MPI */

bool kvr_comm_mpi_available(void) {
    return false;
}
kvr_status kvr_comm_mpi_init(int *argc, char ***argv, kvr_comm **out, kvr_error *err) {
    (void)argc, (void)argv;
    *out = NULL;
    return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                         "this kvr was built without MPI (install libopenmpi-dev and rebuild)");
}
void kvr_comm_mpi_finalize(kvr_comm *c) {
    (void)c;
}
void kvr_comm_mpi_abort(kvr_comm *c, int code) {
    (void)c, (void)code;
}
#endif
