/* kvr_comm.h -- the transport seam: moving K/V between prefill ranks, and their small metadata.
 *
 * A world is the set of ranks of one job; this process holds some of its endpoints (kvr_comm):
 *   threads:     every rank is a thread of this process (all n endpoints are local);
 *   mpi:         every rank is an MPI process (mpirun -np N ...), one endpoint per process;
 *   same-device: every rank is a thread of this process and all share one GPU: the threads
 *                transport whose data channel also moves device buffers (device-to-device
 *                copies ordered with events; built with CUDA);
 *   nccl:        one GPU per rank: NCCL send/recv on device buffers, control over threads (ranks
 *                as threads, GPUs 0..n-1) or MPI (one process per rank; built with NCCL).
 *                NCCL refuses two ranks on one GPU: that is what same-device is for.
 * Device transports order their copies against the rank's compute through kvr_comm_set_stream.
 * Every endpoint has two channels (docs/transport.md):
 *   data     kvr_comm_isend, kvr_comm_recv, kvr_comm_allgatherv move buffers that live in a
 *            memory space (kvr_mem_space); a transport refuses a space it cannot reach with
 *            KVR_ERR_UNSUPPORTED (threads and mpi: host only). There are no tags: messages from
 *            one rank to another arrive in the order they were sent, so both sides issue their
 *            matching calls in the same order. Accounted in kvr_comm_stats.
 *   control  kvr_comm_ctrl_*, kvr_comm_barrier: small host metadata (partitions, rank reports,
 *            a device transport's unique id) on a channel of its own that never mixes with data
 *            and is not accounted.
 * Failure: a rank that fails calls kvr_comm_fail. Under threads every peer blocked in (or
 * later entering) any call on either channel returns KVR_ERR_COMM naming the failed rank and
 * the reason. Under MPI a failure cannot reach peers blocked inside MPI, so the failing
 * process's tool calls kvr_comm_abort, which ends every process of the job.
 *
 * Usage:     kvr_comm_params cp = kvr_comm_params_default();
 *            cp.transport = KVR_TRANSPORT_THREADS; cp.n_ranks = 4;
 *            kvr_comm_world *w; if (kvr_comm_world_create(&cp, &w, &err) != KVR_OK) ...;
 *            // thread i of kvr_comm_world_n_local(w): kvr_comm *c = kvr_comm_world_local(w, i);
 *            kvr_comm_request *rq;
 *            kvr_comm_isend(c, 1, buf, n, KVR_MEM_HOST, &rq, &err); ...; kvr_comm_wait(c, rq, &err);
 *            kvr_comm_world_destroy(w);
 * Ownership: the world owns its endpoints, an endpoint its requests: kvr_comm_isend hands out a
 *            handle from the endpoint's pool and kvr_comm_wait / kvr_comm_waitall give it back
 *            (the caller never allocates or frees one). A send buffer is borrowed until that
 *            wait returns; every other buffer for the duration of the call.
 * Threads:   an endpoint (and its requests) is used by one thread at a time; different
 *            endpoints of one world may be used concurrently.
 */
#ifndef KVR_COMM_H
#define KVR_COMM_H
#include "kvr_common.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef enum kvr_transport {
    KVR_TRANSPORT_THREADS,     /* ranks are threads of one process (always built) */
    KVR_TRANSPORT_MPI,         /* ranks are MPI processes (built when MPI is found) */
    KVR_TRANSPORT_NCCL,        /* one GPU per rank, NCCL send/recv (built with NCCL) */
    KVR_TRANSPORT_SAME_DEVICE, /* several ranks on one GPU, device copies (built with CUDA) */
    KVR_TRANSPORT_COUNT
} kvr_transport;

typedef struct kvr_comm kvr_comm;                 /* one rank's endpoint */
typedef struct kvr_comm_world kvr_comm_world;     /* the job's ranks; owns the local endpoints */
typedef struct kvr_comm_request kvr_comm_request; /* a pending isend (opaque handle) */

typedef struct kvr_comm_params {
    kvr_transport transport;
    int32_t n_ranks; /* threads: the number of ranks (1..4096); mpi: 0 (the job's size) or
                        exactly the job's size */
    int *argc;       /* mpi (and nccl over mpi): main's arguments, for MPI_Init_thread (may be
                        NULL) */
    char ***argv;
    int32_t device;  /* same-device: the GPU every rank uses; nccl: the first GPU (rank i of a
                        threads world uses device + i; over mpi, device + rank % GPUs) */
    bool over_mpi;   /* nccl: ranks are MPI processes (control over MPI) instead of threads */
} kvr_comm_params;

/* Time and traffic accounting of one endpoint's data channel, accumulated by every data call.
 * wait_us: blocked until a peer's message arrived or a send completed; xfer_us: moving bytes. */
typedef struct kvr_comm_stats {
    double wait_us, xfer_us;
    int64_t bytes_sent, bytes_recv;
    int64_t n_msgs_sent, n_msgs_recv;
} kvr_comm_stats;

// ----------------------------------------------------------------------------
// transports and worlds

KVR_API kvr_comm_params kvr_comm_params_default(void); /* threads, 1 rank, device 0 */
/* Whether this kvr was built with transport t. */
KVR_API bool kvr_comm_transport_available(kvr_transport t);
KVR_API const char *kvr_comm_transport_name(kvr_transport t); /* "threads", "mpi", ... */
/* The transport named s; KVR_ERR_INVALID_ARG "unknown transport 's' (threads, mpi, nccl,
 * same-device)" (built or not: kvr_comm_transport_available tells). */
KVR_API kvr_status kvr_comm_transport_parse(const char *s, kvr_transport *out, kvr_error *err);

/* Create the world of params->transport. mpi initialises MPI if nobody has (and then finalises
 * it in kvr_comm_world_destroy). Errors: KVR_ERR_UNSUPPORTED for a transport this kvr was built
 * without (the message says how to get it), KVR_ERR_CUDA (same-device, nccl: no usable GPU, or
 * fewer GPUs than nccl ranks: the message says so), KVR_ERR_NCCL (NCCL's bootstrap failed),
 * KVR_ERR_INVALID_ARG, KVR_ERR_COMM, KVR_ERR_NOMEM. */
KVR_API kvr_status kvr_comm_world_create(const kvr_comm_params *params, kvr_comm_world **out,
                                         kvr_error *err);
KVR_API void kvr_comm_world_destroy(kvr_comm_world *w); /* NULL is a no-op */
KVR_API int32_t kvr_comm_world_size(const kvr_comm_world *w);    /* ranks in the job */
KVR_API int32_t kvr_comm_world_n_local(const kvr_comm_world *w); /* endpoints in this process */
/* The i-th endpoint of this process, 0 <= i < n_local: rank i under threads, this process's
 * rank under mpi (i = 0). */
KVR_API kvr_comm *kvr_comm_world_local(kvr_comm_world *w, int32_t i);

// ----------------------------------------------------------------------------
// an endpoint

KVR_API int32_t kvr_comm_rank(const kvr_comm *c);
KVR_API int32_t kvr_comm_size(const kvr_comm *c);
KVR_API kvr_transport kvr_comm_transport(const kvr_comm *c);
/* Whether the data channel moves buffers in space (threads, mpi: host only; same-device: host
 * and device, either side of a message in either; nccl: device only). A caller holding
 * device buffers and a host-only transport stages through host memory. */
KVR_API bool kvr_comm_supports_space(const kvr_comm *c, kvr_mem_space space);
/* The stream the rank's compute runs on (a cudaStream_t as void *: kvr_workspace_stream; NULL
 * = the device's default stream). Device transports start a send after the work issued on it
 * so far and finish a receive before work issued on it afterwards; host transports ignore it.
 * Call it before the first data call on the endpoint, from the rank's thread. */
KVR_API void kvr_comm_set_stream(kvr_comm *c, void *stream);
/* The GPU this rank's device buffers live on (same-device: the shared one; nccl: the rank's);
 * -1 for host transports. */
KVR_API int32_t kvr_comm_device(const kvr_comm *c);
KVR_API const kvr_comm_stats *kvr_comm_get_stats(const kvr_comm *c);
KVR_API void kvr_comm_reset_stats(kvr_comm *c);

// ----------------------------------------------------------------------------
// data channel (accounted; buffers in a memory space; in order per pair of ranks, no tags)

/* Asynchronous send of bytes from buf (in space) to rank dst; returns at once with a handle in
 * *req, which kvr_comm_wait or kvr_comm_waitall completes and releases. buf must stay unchanged
 * until then. Errors: KVR_ERR_UNSUPPORTED (space not reachable by this transport),
 * KVR_ERR_COMM (a peer failed), KVR_ERR_INVALID_ARG (no such peer). */
KVR_API kvr_status kvr_comm_isend(kvr_comm *c, int32_t dst, const void *buf, size_t bytes,
                                  kvr_mem_space space, kvr_comm_request **req, kvr_error *err);
/* Blocking receive of the next message from rank src, which must have exactly bytes.
 * Errors: KVR_ERR_COMM (peer failed, or a size mismatch, named in the message), as isend. */
KVR_API kvr_status kvr_comm_recv(kvr_comm *c, int32_t src, void *buf, size_t bytes,
                                 kvr_mem_space space, kvr_error *err);
/* Wait until the send behind req completed and release req; NULL is a no-op. A failed wait
 * releases req too. */
KVR_API kvr_status kvr_comm_wait(kvr_comm *c, kvr_comm_request *req, kvr_error *err);
/* Wait for and release every non-NULL reqs[0..n), setting each to NULL, even after an error;
 * returns the first error (err describes it; pass NULL to drain quietly). */
KVR_API kvr_status kvr_comm_waitall(kvr_comm *c, int32_t n, kvr_comm_request **reqs,
                                    kvr_error *err);
/* All-gather with per-rank sizes: rank r contributes bytes[r] (zero allowed) from send, and
 * recv receives every contribution concatenated in rank order. bytes has kvr_comm_size entries,
 * the same on every rank. send NULL: in place (this rank's piece already sits at its offset in
 * recv). Expressed as grouped point-to-point (each rank sends its piece to every other and
 * receives every other's, in a fixed order), so it shares the pairwise order of isend/recv. */
KVR_API kvr_status kvr_comm_allgatherv(kvr_comm *c, const void *send, void *recv,
                                       const size_t *bytes, kvr_mem_space space, kvr_error *err);

// ----------------------------------------------------------------------------
// control channel (host memory, small messages, not accounted, never mixed with data)

/* Blocking send of bytes to dst (returns once buf may be reused) and receive of the next
 * control message from src (exactly bytes). In order per pair of ranks. */
KVR_API kvr_status kvr_comm_ctrl_send(kvr_comm *c, int32_t dst, const void *buf, size_t bytes,
                                      kvr_error *err);
KVR_API kvr_status kvr_comm_ctrl_recv(kvr_comm *c, int32_t src, void *buf, size_t bytes,
                                      kvr_error *err);
/* Every rank's buf receives root's bytes. */
KVR_API kvr_status kvr_comm_ctrl_bcast(kvr_comm *c, int32_t root, void *buf, size_t bytes,
                                       kvr_error *err);
/* all[r * bytes_each ..] receives rank r's mine (mine NULL: in place, already in all). */
KVR_API kvr_status kvr_comm_ctrl_allgather(kvr_comm *c, const void *mine, size_t bytes_each,
                                           void *all, kvr_error *err);
KVR_API kvr_status kvr_comm_barrier(kvr_comm *c, kvr_error *err);

// ----------------------------------------------------------------------------
// failure

/* Mark this rank failed with a reason: under threads, peers' pending and future calls on both
 * channels return KVR_ERR_COMM naming this rank and the reason; under mpi the reason is logged
 * (the tool then calls kvr_comm_abort). */
KVR_API void kvr_comm_fail(kvr_comm *c, const char *reason);
/* For tools, after a failure: end the job with exit status code. mpi: MPI_Abort on every
 * process (does not return); threads: marks this rank failed (as kvr_comm_fail) and returns,
 * leaving the exit to the caller. */
KVR_API void kvr_comm_abort(kvr_comm *c, int code);

#ifdef __cplusplus
}
#endif
#endif /* KVR_COMM_H */
