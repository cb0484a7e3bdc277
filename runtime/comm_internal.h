/* comm_internal.h -- what a transport implements behind kvr_comm.h (docs/transport.md): the
 * vtable, the endpoint and world structs the front end (comm.c) shares with the transports, and
 * the request pool. Tests include it on purpose (the pool counters). */
#ifndef KVR_COMM_INTERNAL_H
#define KVR_COMM_INTERNAL_H
#include "kvr_comm.h"

#include <stddef.h>

/* A transport. The front end (comm.c) checks arguments (peers, memory spaces), hands isend a
 * request slot of req_size bytes from the endpoint's pool and returns it after wait, and keeps
 * the send-side accounting; recv accounts its own wait and transfer time, as only the transport
 * knows where one ends and the other begins. Control calls are never accounted. */
typedef struct kvr_comm_ops {
    const char *name;     /* "threads": for messages */
    kvr_transport transport;
    unsigned mem_spaces;  /* bit (1u << space) for every kvr_mem_space the data channel reaches */
    size_t req_size;      /* bytes of the transport's private request (one pool slot) */
    /* data channel: tagless, in order per (src, dst) */
    kvr_status (*isend)(kvr_comm *c, int32_t dst, const void *buf, size_t bytes,
                        kvr_mem_space space, void *req, kvr_error *err);
    kvr_status (*recv)(kvr_comm *c, int32_t src, void *buf, size_t bytes, kvr_mem_space space,
                       kvr_error *err);
    kvr_status (*wait)(kvr_comm *c, void *req, kvr_error *err);
    kvr_status (*allgatherv)(kvr_comm *c, const void *send, void *recv, const size_t *bytes,
                             kvr_mem_space space, kvr_error *err);
    /* copy bytes within this rank's space (the out-of-place all-gather's own piece); NULL:
       memcpy (host) */
    kvr_status (*local_copy)(kvr_comm *c, void *dst, const void *src, size_t bytes,
                             kvr_mem_space space, kvr_error *err);
    /* control channel: host memory */
    kvr_status (*ctrl_send)(kvr_comm *c, int32_t dst, const void *buf, size_t bytes,
                            kvr_error *err);
    kvr_status (*ctrl_recv)(kvr_comm *c, int32_t src, void *buf, size_t bytes, kvr_error *err);
    kvr_status (*ctrl_bcast)(kvr_comm *c, int32_t root, void *buf, size_t bytes, kvr_error *err);
    kvr_status (*ctrl_allgather)(kvr_comm *c, const void *mine, size_t bytes_each, void *all,
                                 kvr_error *err);
    kvr_status (*barrier)(kvr_comm *c, kvr_error *err);
    /* failure and teardown */
    void (*fail)(kvr_comm *c, const char *reason);
    void (*abort)(kvr_comm *c, int code);
    void (*world_destroy)(kvr_comm_world *w); /* the transport's part (w->impl) */
} kvr_comm_ops;

/* One request slot of an endpoint's pool; the public kvr_comm_request * points at it. */
typedef struct comm_slot {
    struct comm_slot *next_free; /* free list */
    struct comm_slot *next_all;  /* every slot of the endpoint, for destroy */
    bool in_use;
    max_align_t data[]; /* the transport's request, ops->req_size bytes */
} comm_slot;

struct kvr_comm {
    const kvr_comm_ops *ops;
    int32_t rank, size;
    kvr_comm_stats stats;
    void *impl;                  /* the transport's shared state (thread group, MPI comms) */
    comm_slot *free_reqs, *all_reqs;
    int32_t n_reqs, n_reqs_out;  /* pool: slots allocated, handles held by the caller */
    kvr_comm_request **ag_reqs;  /* (size) allgatherv's send handles */
    void *stream;                /* kvr_comm_set_stream: the rank's compute stream (or NULL) */
    void *dev;                   /* a device transport's per-endpoint state */
    int32_t device;              /* the rank's GPU (device transports), else -1 */
};

struct kvr_comm_world {
    const kvr_comm_ops *ops;
    int32_t size, n_local;
    kvr_comm *local; /* (n_local) */
    void *impl;
};

/* Front end (comm.c): allocate a world with n_local endpoints of ranks first..first+n_local,
 * each with impl set; the transport fills w->impl. */
kvr_status comm_world_alloc(const kvr_comm_ops *ops, int32_t size, int32_t n_local,
                            int32_t first_rank, void *impl, kvr_comm_world **out,
                            kvr_error *err);
/* The all-gather as grouped point-to-point over ops->isend/recv/wait, for transports whose
 * isend does not block: post this rank's piece to ranks me+1, me+2, ... (mod n), receive from
 * me-1, me-2, ... into place, wait for the sends. Zero-byte pieces send nothing. */
kvr_status comm_allgatherv_p2p(kvr_comm *c, const void *send, void *recv, const size_t *bytes,
                               kvr_mem_space space, kvr_error *err);

/* Transports (threads in comm_threads.c, mpi in comm_mpi.c, same-device and nccl in cuda/). */
kvr_status comm_threads_world_create(const kvr_comm_params *p, kvr_comm_world **out,
                                     kvr_error *err);
kvr_status comm_mpi_world_create(const kvr_comm_params *p, kvr_comm_world **out,
                                 kvr_error *err);
bool comm_mpi_available(void);

/* The threads transport with a device copy engine: same-device is the threads world (queues,
 * control channel, barriers, failure) whose data messages, when either side's buffer is in
 * device memory, go through these hooks instead of memcpy (cuda/comm_samedev.c implements
 * them; comm_threads.c stays free of CUDA). Every hook runs on the calling rank's thread. */
typedef struct comm_thr_dev_ops {
    /* sender, in isend of a device buffer: mark the point after the work issued so far on the
       rank's stream (*ready, NULL when nothing needs marking) */
    kvr_status (*post)(kvr_comm *c, void **ready, kvr_error *err);
    /* receiver: copy bytes from the sender's src into dst once the sender's ready point is
       reached; complete (visible to the host and to work issued later on the receiver's
       stream) when it returns */
    kvr_status (*copy)(kvr_comm *c, void *ready, void *dst, const void *src, size_t bytes,
                       kvr_error *err);
    void (*release)(kvr_comm *c, void *ready); /* sender: after wait, or on teardown */
    kvr_status (*local_copy)(kvr_comm *c, void *dst, const void *src, size_t bytes,
                             kvr_mem_space space, kvr_error *err);
    void (*endpoint_destroy)(kvr_comm *c); /* c->dev; at world destroy */
} comm_thr_dev_ops;
/* A threads world of p->n_ranks whose data channel also reaches device memory through dev
 * (transport same-device). */
kvr_status comm_threads_world_create_dev(const kvr_comm_params *p, const comm_thr_dev_ops *dev,
                                         kvr_comm_world **out, kvr_error *err);
/* Built with CUDA: the same-device transport (cuda/comm_samedev.c); else answers false /
 * KVR_ERR_UNSUPPORTED. */
bool comm_samedev_available(void);
kvr_status comm_samedev_world_create(const kvr_comm_params *p, kvr_comm_world **out,
                                     kvr_error *err);
/* Built with NCCL: the nccl transport (cuda/comm_nccl.c). */
bool comm_nccl_available(void);
kvr_status comm_nccl_world_create(const kvr_comm_params *p, kvr_comm_world **out,
                                  kvr_error *err);
/* nccl: a matched send to and receive from this rank itself in one group (what a one-GPU
 * machine can check of NCCL's point-to-point), bytes compared. */
kvr_status comm_nccl_self_check(kvr_comm *c, size_t bytes, kvr_error *err);

/* How many CPUs this process may run on (sched_getaffinity; 1 when it cannot tell): the
 * threads transport spins in its waits only when every rank can have one (runtime/bind.c). */
int32_t comm_cpus_allowed(void);

#endif
