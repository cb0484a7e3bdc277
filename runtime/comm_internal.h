/* comm_internal.h -- the transport vtable behind kvr_comm and the shared request type. */
#ifndef KVR_COMM_INTERNAL_H
#define KVR_COMM_INTERNAL_H
#include "kvr_comm.h"

typedef struct kvr_comm_ops {
    kvr_status (*isend)(kvr_comm *c, int32_t dst, int32_t tag, const void *buf, size_t bytes,
                        kvr_comm_request **req, kvr_error *err);
    kvr_status (*recv)(kvr_comm *c, int32_t src, int32_t tag, void *buf, size_t bytes,
                       kvr_error *err);
    kvr_status (*wait)(kvr_comm *c, kvr_comm_request *req, kvr_error *err);
    kvr_status (*allgatherv)(kvr_comm *c, const void *send, void *recv, const size_t *bytes,
                             kvr_error *err);
    kvr_status (*barrier)(kvr_comm *c, kvr_error *err);
    void (*fail)(kvr_comm *c, const char *reason);
} kvr_comm_ops;

struct kvr_comm {
    const kvr_comm_ops *ops;
    kvr_transport transport;
    int32_t rank, size;
    kvr_comm_stats stats;
    void *impl; /* transport state: the thread group, or MPI data */
};

/* One posted send (both transports). */
struct kvr_comm_request {
    /* threads transport: the posted message, queued until a receiver takes and copies it */
    int32_t src, dst, tag;
    const void *buf;
    size_t bytes;
    bool taken, done;
    struct kvr_comm_request *next;
    void *mpi; /* MPI transport: its own request storage (comm_mpi.c) */
};

/* MPI transport entry points (comm_mpi.c). */
extern const kvr_comm_ops comm_mpi_ops;

#endif
