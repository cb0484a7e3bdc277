/* comm.c -- the kvr_comm front end: transport choice, worlds, argument and memory-space checks,
 * the per-endpoint request pool, the data-channel accounting on the send side, and the
 * all-gather as grouped point-to-point that host transports share. The transports live in
 * comm_threads.c, comm_mpi.c and, with CUDA, cuda/comm_samedev.c and cuda/comm_nccl.c
 * (docs/transport.md). */
#include "comm_internal.h"
#include "kvr_device.h"

#include <stdlib.h>
#include <string.h>

static const char *const comm_transport_names[] = {"threads", "mpi", "nccl", "same-device"};
_Static_assert(sizeof comm_transport_names / sizeof comm_transport_names[0] ==
                   KVR_TRANSPORT_COUNT,
               "transport names");

static const char *const comm_space_names[] = {"host", "device"};

const char *kvr_comm_transport_name(kvr_transport t) {
    return (t >= 0 && t < KVR_TRANSPORT_COUNT) ? comm_transport_names[t] : "unknown";
}

kvr_status kvr_comm_transport_parse(const char *s, kvr_transport *out, kvr_error *err) {
    for (int t = 0; t < KVR_TRANSPORT_COUNT; t++)
        if (strcmp(s, comm_transport_names[t]) == 0) {
            *out = (kvr_transport)t;
            return KVR_OK;
        }
    return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                         "unknown transport '%s' (threads, mpi, nccl, same-device)", s);
}

bool kvr_comm_transport_available(kvr_transport t) {
    switch (t) {
        case KVR_TRANSPORT_THREADS: return true;
        case KVR_TRANSPORT_MPI: return comm_mpi_available();
        case KVR_TRANSPORT_SAME_DEVICE: return comm_samedev_available();
        case KVR_TRANSPORT_NCCL: return comm_nccl_available();
        default: return false;
    }
}

kvr_comm_params kvr_comm_params_default(void) {
    kvr_comm_params p = {KVR_TRANSPORT_THREADS, 1, NULL, NULL, 0, false};
    return p;
}

#ifndef KVR_COMM_SAME_DEVICE
bool comm_samedev_available(void) {
    return false;
}
kvr_status comm_samedev_world_create(const kvr_comm_params *p, kvr_comm_world **out,
                                     kvr_error *err) {
    (void)p, (void)out;
    return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                         "the same-device transport is not available: this kvr was built "
                         "without CUDA (configure with nvcc on the PATH and -DKVR_CUDA=ON)");
}
#endif
#ifndef KVR_HAVE_CUDART /* no CUDA: kvr_device.h sees no devices (cuda/device_props.c) */
int32_t kvr_device_count(void) {
    return 0;
}
kvr_status kvr_device_alloc(int32_t device, size_t bytes, void **out, kvr_error *err) {
    *out = NULL;
    return kvr_error_set(err, KVR_ERR_UNSUPPORTED, "device %d: %zu bytes: this kvr was built "
                         "without CUDA", device, bytes);
}
void kvr_device_free(void *p) {
    (void)p;
}
kvr_status kvr_device_use(int32_t device, kvr_error *err) {
    return kvr_error_set(err, KVR_ERR_UNSUPPORTED, "device %d: this kvr was built without CUDA",
                         device);
}
kvr_status kvr_device_props_get(int32_t device, kvr_device_props *out, kvr_error *err) {
    memset(out, 0, sizeof *out);
    return kvr_error_set(err, KVR_ERR_UNSUPPORTED, "device %d: this kvr was built without CUDA",
                         device);
}
#endif
#ifndef KVR_USE_NCCL
bool comm_nccl_available(void) {
    return false;
}
kvr_status comm_nccl_world_create(const kvr_comm_params *p, kvr_comm_world **out,
                                  kvr_error *err) {
    (void)p, (void)out;
    return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                         "the nccl transport is not available: this kvr was built without NCCL "
                         "(needs CUDA and nccl.h/libnccl; -DKVR_NCCL=ON)");
}
#endif

// ----------------------------------------------------------------------------
// worlds

kvr_status kvr_comm_world_create(const kvr_comm_params *p, kvr_comm_world **out, kvr_error *err) {
    *out = NULL;
    switch (p->transport) {
        case KVR_TRANSPORT_THREADS: return comm_threads_world_create(p, out, err);
        case KVR_TRANSPORT_MPI: return comm_mpi_world_create(p, out, err);
        case KVR_TRANSPORT_SAME_DEVICE: return comm_samedev_world_create(p, out, err);
        case KVR_TRANSPORT_NCCL: return comm_nccl_world_create(p, out, err);
        default:
            return kvr_error_set(err, KVR_ERR_INVALID_ARG, "comm: unknown transport %d",
                                 (int)p->transport);
    }
}

kvr_status comm_world_alloc(const kvr_comm_ops *ops, int32_t size, int32_t n_local,
                            int32_t first_rank, void *impl, kvr_comm_world **out,
                            kvr_error *err) {
    *out = NULL;
    kvr_comm_world *w = calloc(1, sizeof *w);
    if (!w) return kvr_error_set(err, KVR_ERR_NOMEM, "comm: out of memory");
    w->ops = ops;
    w->size = size;
    w->n_local = n_local;
    w->impl = impl;
    w->local = calloc((size_t)n_local, sizeof *w->local);
    bool ok = w->local != NULL;
    for (int32_t i = 0; ok && i < n_local; i++) {
        kvr_comm *c = &w->local[i];
        c->ops = ops;
        c->rank = first_rank + i;
        c->size = size;
        c->impl = impl;
        c->device = -1;
        ok = (c->ag_reqs = calloc((size_t)size, sizeof *c->ag_reqs)) != NULL;
    }
    if (!ok) {
        w->impl = NULL; /* the caller still owns impl */
        kvr_comm_world_destroy(w);
        return kvr_error_set(err, KVR_ERR_NOMEM, "comm: out of memory");
    }
    *out = w;
    return KVR_OK;
}

void kvr_comm_world_destroy(kvr_comm_world *w) {
    if (!w) return;
    if (w->impl && w->ops->world_destroy) w->ops->world_destroy(w);
    for (int32_t i = 0; w->local && i < w->n_local; i++) {
        kvr_comm *c = &w->local[i];
        for (comm_slot *s = c->all_reqs, *nx; s; s = nx) {
            nx = s->next_all;
            free(s);
        }
        free(c->ag_reqs);
    }
    free(w->local);
    free(w);
}

int32_t kvr_comm_world_size(const kvr_comm_world *w) {
    return w->size;
}
int32_t kvr_comm_world_n_local(const kvr_comm_world *w) {
    return w->n_local;
}
kvr_comm *kvr_comm_world_local(kvr_comm_world *w, int32_t i) {
    KVR_ASSERT(i >= 0 && i < w->n_local);
    return &w->local[i];
}

// ----------------------------------------------------------------------------
// an endpoint

int32_t kvr_comm_rank(const kvr_comm *c) {
    return c->rank;
}
int32_t kvr_comm_size(const kvr_comm *c) {
    return c->size;
}
kvr_transport kvr_comm_transport(const kvr_comm *c) {
    return c->ops->transport;
}
bool kvr_comm_supports_space(const kvr_comm *c, kvr_mem_space space) {
    return (space == KVR_MEM_HOST || space == KVR_MEM_DEVICE) &&
           (c->ops->mem_spaces & (1u << space)) != 0;
}
const kvr_comm_stats *kvr_comm_get_stats(const kvr_comm *c) {
    return &c->stats;
}
void kvr_comm_set_stream(kvr_comm *c, void *stream) {
    c->stream = stream;
}
int32_t kvr_comm_device(const kvr_comm *c) {
    return c->device;
}
void kvr_comm_reset_stats(kvr_comm *c) {
    memset(&c->stats, 0, sizeof c->stats);
}

static kvr_status comm_check_peer(const kvr_comm *c, int32_t peer, const char *what,
                                  kvr_error *err) {
    if (peer < 0 || peer >= c->size || peer == c->rank)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: rank %d has no peer %d (size %d)",
                             what, c->rank, peer, c->size);
    return KVR_OK;
}

static kvr_status comm_check_space(const kvr_comm *c, kvr_mem_space space, const char *what,
                                   kvr_error *err) {
    if (space != KVR_MEM_HOST && space != KVR_MEM_DEVICE)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: rank %d: unknown memory space %d",
                             what, c->rank, (int)space);
    if (!(c->ops->mem_spaces & (1u << space)))
        return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                             "%s: rank %d: the %s transport cannot move %s buffers (it reaches "
                             "host memory only; device buffers need a device transport: nccl "
                             "or same-device)",
                             what, c->rank, c->ops->name, comm_space_names[space]);
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// the request pool: slots are recycled through a free list, so a steady stream of sends
// allocates only as many slots as are outstanding at once

static comm_slot *comm_slot_get(kvr_comm *c) {
    comm_slot *s = c->free_reqs;
    if (s) {
        c->free_reqs = s->next_free;
    } else {
        s = malloc(sizeof *s + c->ops->req_size);
        if (!s) return NULL;
        s->next_all = c->all_reqs;
        c->all_reqs = s;
        c->n_reqs++;
    }
    s->next_free = NULL;
    s->in_use = true;
    c->n_reqs_out++;
    memset(s->data, 0, c->ops->req_size);
    return s;
}

static void comm_slot_put(kvr_comm *c, comm_slot *s) {
    s->in_use = false;
    s->next_free = c->free_reqs;
    c->free_reqs = s;
    c->n_reqs_out--;
}

// ----------------------------------------------------------------------------
// data channel

kvr_status kvr_comm_isend(kvr_comm *c, int32_t dst, const void *buf, size_t bytes,
                          kvr_mem_space space, kvr_comm_request **req, kvr_error *err) {
    *req = NULL;
    KVR_TRY(comm_check_peer(c, dst, "isend", err));
    KVR_TRY(comm_check_space(c, space, "isend", err));
    comm_slot *s = comm_slot_get(c);
    if (!s) return kvr_error_set(err, KVR_ERR_NOMEM, "isend: rank %d: out of memory", c->rank);
    double t0 = kvr_time_us();
    kvr_status st = c->ops->isend(c, dst, buf, bytes, space, s->data, err);
    c->stats.xfer_us += kvr_time_us() - t0;
    if (st != KVR_OK) {
        comm_slot_put(c, s);
        return st;
    }
    c->stats.bytes_sent += (int64_t)bytes;
    c->stats.n_msgs_sent++;
    *req = (kvr_comm_request *)s;
    return KVR_OK;
}

kvr_status kvr_comm_recv(kvr_comm *c, int32_t src, void *buf, size_t bytes, kvr_mem_space space,
                         kvr_error *err) {
    KVR_TRY(comm_check_peer(c, src, "recv", err));
    KVR_TRY(comm_check_space(c, space, "recv", err));
    return c->ops->recv(c, src, buf, bytes, space, err);
}

kvr_status kvr_comm_wait(kvr_comm *c, kvr_comm_request *req, kvr_error *err) {
    if (!req) return KVR_OK;
    comm_slot *s = (comm_slot *)req;
    KVR_ASSERT(s->in_use); /* waited twice, or not a handle of this endpoint */
    double t0 = kvr_time_us();
    kvr_status st = c->ops->wait(c, s->data, err);
    c->stats.wait_us += kvr_time_us() - t0;
    comm_slot_put(c, s);
    return st;
}

kvr_status kvr_comm_waitall(kvr_comm *c, int32_t n, kvr_comm_request **reqs, kvr_error *err) {
    kvr_status first = KVR_OK;
    for (int32_t i = 0; i < n; i++) {
        kvr_status st = kvr_comm_wait(c, reqs[i], first == KVR_OK ? err : NULL);
        reqs[i] = NULL;
        if (first == KVR_OK) first = st;
    }
    return first;
}

kvr_status kvr_comm_allgatherv(kvr_comm *c, const void *send, void *recv, const size_t *bytes,
                               kvr_mem_space space, kvr_error *err) {
    KVR_TRY(comm_check_space(c, space, "allgatherv", err));
    return c->ops->allgatherv(c, send, recv, bytes, space, err);
}

kvr_status comm_allgatherv_p2p(kvr_comm *c, const void *send, void *recv, const size_t *bytes,
                               kvr_mem_space space, kvr_error *err) {
    const int32_t n = c->size, me = c->rank;
    size_t off_self = 0;
    for (int32_t r = 0; r < me; r++) off_self += bytes[r];
    char *to = recv;
    const char *mine = send ? send : to + off_self;
    if (send && bytes[me] && mine != to + off_self) {
        double t0 = kvr_time_us();
        if (c->ops->local_copy)
            KVR_TRY(c->ops->local_copy(c, to + off_self, mine, bytes[me], space, err));
        else
            memcpy(to + off_self, mine, bytes[me]);
        c->stats.xfer_us += kvr_time_us() - t0;
    }
    kvr_comm_request **rq = c->ag_reqs; /* rq[k]: the send to me + k */
    for (int32_t k = 0; k < n; k++) rq[k] = NULL;
    kvr_status st = KVR_OK;
    for (int32_t k = 1; k < n && st == KVR_OK; k++)
        if (bytes[me]) st = kvr_comm_isend(c, (me + k) % n, mine, bytes[me], space, &rq[k], err);
    for (int32_t k = 1; k < n && st == KVR_OK; k++) {
        const int32_t src = (me - k + n) % n;
        size_t off = 0;
        for (int32_t r = 0; r < src; r++) off += bytes[r];
        if (bytes[src]) st = c->ops->recv(c, src, to + off, bytes[src], space, err);
    }
    /* complete every posted send, even after an error: the buffer is the caller's */
    kvr_status sw = kvr_comm_waitall(c, n, rq, st == KVR_OK ? err : NULL);
    return st != KVR_OK ? st : sw;
}

// ----------------------------------------------------------------------------
// control channel

kvr_status kvr_comm_ctrl_send(kvr_comm *c, int32_t dst, const void *buf, size_t bytes,
                              kvr_error *err) {
    KVR_TRY(comm_check_peer(c, dst, "ctrl_send", err));
    return c->ops->ctrl_send(c, dst, buf, bytes, err);
}

kvr_status kvr_comm_ctrl_recv(kvr_comm *c, int32_t src, void *buf, size_t bytes,
                              kvr_error *err) {
    KVR_TRY(comm_check_peer(c, src, "ctrl_recv", err));
    return c->ops->ctrl_recv(c, src, buf, bytes, err);
}

kvr_status kvr_comm_ctrl_bcast(kvr_comm *c, int32_t root, void *buf, size_t bytes,
                               kvr_error *err) {
    if (root < 0 || root >= c->size)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "ctrl_bcast: root %d of %d ranks", root,
                             c->size);
    return c->ops->ctrl_bcast(c, root, buf, bytes, err);
}

kvr_status kvr_comm_ctrl_allgather(kvr_comm *c, const void *mine, size_t bytes_each, void *all,
                                   kvr_error *err) {
    return c->ops->ctrl_allgather(c, mine, bytes_each, all, err);
}

kvr_status kvr_comm_barrier(kvr_comm *c, kvr_error *err) {
    return c->ops->barrier(c, err);
}

// ----------------------------------------------------------------------------
// failure

void kvr_comm_fail(kvr_comm *c, const char *reason) {
    c->ops->fail(c, reason);
}

void kvr_comm_abort(kvr_comm *c, int code) {
    c->ops->abort(c, code);
}
