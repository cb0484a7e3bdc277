/* kvr_comm.h -- point-to-point and collective communication between prefill ranks.
 *
 * Two transports behind one handle:
 *   - threads: every rank is a thread of one process; a send hands the receiver a pointer and
 *     the receiver copies (one memcpy, the in-process equivalent of a link transfer);
 *   - mpi: every rank is an MPI process (mpirun -np N ...), also across machines.
 * A rank that fails calls kvr_comm_fail: under threads every peer blocked in (or later
 * entering) a receive, wait, barrier or all-gather returns KVR_ERR_COMM instead of hanging.
 * Under MPI a failure cannot be delivered to blocked peers from inside a library, so the
 * failing process's tool calls kvr_comm_mpi_abort, which ends every rank with an error exit.
 *
 * Usage (threads):  kvr_comm_group *g; kvr_comm_group_create(4, &g, &err);
 *                   // thread i: kvr_comm *c = kvr_comm_group_rank(g, i); ... kvr_comm_send(c, ...)
 *                   kvr_comm_group_destroy(g);
 * Usage (mpi):      kvr_comm *c; kvr_comm_mpi_init(&argc, &argv, &c, &err); ...; kvr_comm_mpi_finalize(c);
 * Ownership: send buffers are borrowed until the matching kvr_comm_wait returns; handles belong
 *            to their group (threads) or to the caller (mpi).
 * Threads:  one kvr_comm per rank, used by that rank's thread only; groups are thread-safe.
 */
#ifndef KVR_COMM_H
#define KVR_COMM_H
#include "kvr_common.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef enum kvr_transport { KVR_TRANSPORT_THREADS, KVR_TRANSPORT_MPI } kvr_transport;

typedef struct kvr_comm kvr_comm;
typedef struct kvr_comm_group kvr_comm_group;
typedef struct kvr_comm_request kvr_comm_request;

/* Time and traffic accounting of one rank, accumulated by every call. wait_us: blocked until a
 * peer's message or a collective's last member arrived; xfer_us: moving bytes. */
typedef struct kvr_comm_stats {
    double wait_us, xfer_us;
    int64_t bytes_sent, bytes_recv;
    int64_t n_msgs_sent, n_msgs_recv;
} kvr_comm_stats;

KVR_API kvr_status kvr_comm_group_create(int32_t n_ranks, kvr_comm_group **out, kvr_error *err);
KVR_API kvr_comm *kvr_comm_group_rank(kvr_comm_group *g, int32_t rank);
KVR_API void kvr_comm_group_destroy(kvr_comm_group *g); /* NULL is a no-op */

/* MPI: initialise MPI (if needed) and return this process's endpoint on MPI_COMM_WORLD.
 * Errors: KVR_ERR_UNSUPPORTED when kvr was built without MPI. */
KVR_API kvr_status kvr_comm_mpi_init(int *argc, char ***argv, kvr_comm **out, kvr_error *err);
KVR_API void kvr_comm_mpi_finalize(kvr_comm *c);
KVR_API bool kvr_comm_mpi_available(void);
/* End the whole MPI job with exit code `code` (MPI_Abort). For tools, after a failure. */
KVR_API void kvr_comm_mpi_abort(kvr_comm *c, int code);

KVR_API int32_t kvr_comm_rank(const kvr_comm *c);
KVR_API int32_t kvr_comm_size(const kvr_comm *c);
KVR_API kvr_transport kvr_comm_transport(const kvr_comm *c);
KVR_API const kvr_comm_stats *kvr_comm_get_stats(const kvr_comm *c);
KVR_API void kvr_comm_reset_stats(kvr_comm *c);

/* Asynchronous send of bytes to dst with a tag; returns at once with *req. buf must stay
 * unchanged until kvr_comm_wait(req). Messages between a pair with one tag arrive in order. */
KVR_API kvr_status kvr_comm_isend(kvr_comm *c, int32_t dst, int32_t tag, const void *buf,
                                  size_t bytes, kvr_comm_request **req, kvr_error *err);
/* Blocking receive of exactly bytes from src with tag. Errors: KVR_ERR_COMM (peer failed, or a
 * size mismatch, named in the message). */
KVR_API kvr_status kvr_comm_recv(kvr_comm *c, int32_t src, int32_t tag, void *buf, size_t bytes,
                                 kvr_error *err);
/* Wait for an isend to complete and release req. */
KVR_API kvr_status kvr_comm_wait(kvr_comm *c, kvr_comm_request *req, kvr_error *err);
/* All-gather with per-rank sizes: rank r contributes bytes[r] from send; recv receives all
 * contributions concatenated in rank order. bytes has kvr_comm_size entries. */
KVR_API kvr_status kvr_comm_allgatherv(kvr_comm *c, const void *send, void *recv,
                                       const size_t *bytes, kvr_error *err);
KVR_API kvr_status kvr_comm_barrier(kvr_comm *c, kvr_error *err);
/* Mark this rank failed with a reason: peers' pending and future calls return KVR_ERR_COMM
 * naming this rank and the reason (threads); MPI aborts the job. */
KVR_API void kvr_comm_fail(kvr_comm *c, const char *reason);

#ifdef __cplusplus
}
#endif
#endif /* KVR_COMM_H */
