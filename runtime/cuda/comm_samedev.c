/* comm_samedev.c -- the same-device transport: several ranks, threads of one process, on one
 * GPU. It is the threads transport (comm_threads.c: queues, control channel, barriers, failure)
 * with a device copy engine for its data messages (docs/transport.md, docs/gpu.md):
 *   isend of a device buffer records a "ready" event on the sender's compute stream (the work
 *     that produced the buffer) and queues (pointer, event) for the receiver;
 *   recv makes the receiver's copy stream wait for that event and for the work issued so far on
 *     its own compute stream, issues one cudaMemcpyAsync (cudaMemcpyDefault: device to device,
 *     or to/from host when one side holds host memory), and synchronises the copy stream before
 *     marking the message done -- the analogue of threads' one memcpy, complete on return, so
 *     the sender's wait (the done flag) means its buffer may be reused;
 *   wait releases the event.
 * Failure behaviour is the threads transport's: every blocked peer wakes with KVR_ERR_COMM.
 * Without a stream (kvr_comm_set_stream never called, or NULL) the transport cannot know where
 * the rank's compute runs, so it synchronises the device instead of recording an event: correct
 * for any stream, slower. */
#include "comm_internal.h"

#include <cuda_runtime_api.h>
#include <stdlib.h>

typedef struct sd_endpoint {
    int device;
    cudaStream_t copy; /* this rank's copy stream */
    cudaEvent_t mine;  /* the point on the rank's compute stream before a copy */
} sd_endpoint;

static kvr_status sd_error(kvr_error *err, const kvr_comm *c, const char *what, cudaError_t e) {
    return kvr_error_set(err, KVR_ERR_CUDA, "same-device: rank %d: %s: %s", c->rank, what,
                         cudaGetErrorString(e));
}

#define SD_TRY(c, what, call)                                                                      \
    do {                                                                                           \
        cudaError_t sd_e_ = (call);                                                                \
        if (sd_e_ != cudaSuccess) return sd_error(err, (c), (what), sd_e_);                       \
    } while (0)

static kvr_status sd_post(kvr_comm *c, void **ready, kvr_error *err) {
    sd_endpoint *ep = c->dev;
    cudaEvent_t ev;
    SD_TRY(c, "cudaSetDevice", cudaSetDevice(ep->device));
    if (!c->stream) SD_TRY(c, "cudaDeviceSynchronize", cudaDeviceSynchronize());
    SD_TRY(c, "cudaEventCreate", cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    cudaError_t e = cudaEventRecord(ev, (cudaStream_t)c->stream);
    if (e != cudaSuccess) {
        cudaEventDestroy(ev);
        return sd_error(err, c, "cudaEventRecord", e);
    }
    *ready = ev;
    return KVR_OK;
}

/* Order the copy stream after the rank's own compute so far (and the sender's ready point). */
static kvr_status sd_copy_sync(kvr_comm *c, void *ready, void *dst, const void *src, size_t bytes,
                               kvr_error *err) {
    sd_endpoint *ep = c->dev;
    SD_TRY(c, "cudaSetDevice", cudaSetDevice(ep->device));
    if (!c->stream) SD_TRY(c, "cudaDeviceSynchronize", cudaDeviceSynchronize());
    SD_TRY(c, "cudaEventRecord", cudaEventRecord(ep->mine, (cudaStream_t)c->stream));
    SD_TRY(c, "cudaStreamWaitEvent", cudaStreamWaitEvent(ep->copy, ep->mine, 0));
    if (ready)
        SD_TRY(c, "cudaStreamWaitEvent", cudaStreamWaitEvent(ep->copy, (cudaEvent_t)ready, 0));
    SD_TRY(c, "cudaMemcpyAsync", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, ep->copy));
    SD_TRY(c, "cudaStreamSynchronize", cudaStreamSynchronize(ep->copy));
    return KVR_OK;
}

static kvr_status sd_copy(kvr_comm *c, void *ready, void *dst, const void *src, size_t bytes,
                          kvr_error *err) {
    return sd_copy_sync(c, ready, dst, src, bytes, err);
}

static kvr_status sd_local_copy(kvr_comm *c, void *dst, const void *src, size_t bytes,
                                kvr_mem_space space, kvr_error *err) {
    (void)space;
    return sd_copy_sync(c, NULL, dst, src, bytes, err);
}

static void sd_release(kvr_comm *c, void *ready) {
    (void)c;
    cudaEventDestroy((cudaEvent_t)ready);
}

static void sd_endpoint_destroy(kvr_comm *c) {
    sd_endpoint *ep = c->dev;
    cudaSetDevice(ep->device);
    if (ep->copy) cudaStreamDestroy(ep->copy);
    if (ep->mine) cudaEventDestroy(ep->mine);
    free(ep);
    c->dev = NULL;
}

static const comm_thr_dev_ops sd_ops = {
    .post = sd_post,
    .copy = sd_copy,
    .release = sd_release,
    .local_copy = sd_local_copy,
    .endpoint_destroy = sd_endpoint_destroy,
};

bool comm_samedev_available(void) {
    return true;
}

kvr_status comm_samedev_world_create(const kvr_comm_params *p, kvr_comm_world **out,
                                     kvr_error *err) {
    *out = NULL;
    int n_dev = 0;
    cudaError_t e = cudaGetDeviceCount(&n_dev);
    if (e != cudaSuccess || n_dev == 0)
        return kvr_error_set(err, KVR_ERR_CUDA,
                             "same-device: no CUDA device on this machine (%s); the same-device "
                             "transport runs several ranks on one GPU",
                             e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    if (p->device < 0 || p->device >= n_dev)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "same-device: device %d does not exist (%d device%s: 0..%d)",
                             p->device, n_dev, n_dev == 1 ? "" : "s", n_dev - 1);
    kvr_comm_world *w;
    KVR_TRY(comm_threads_world_create_dev(p, &sd_ops, &w, err));
    kvr_status st = KVR_OK;
    if ((e = cudaSetDevice(p->device)) != cudaSuccess)
        st = kvr_error_set(err, KVR_ERR_CUDA, "same-device: cudaSetDevice(%d): %s", p->device,
                           cudaGetErrorString(e));
    for (int32_t i = 0; st == KVR_OK && i < w->n_local; i++) {
        kvr_comm *c = &w->local[i];
        sd_endpoint *ep = calloc(1, sizeof *ep);
        if (!ep) {
            st = kvr_error_set(err, KVR_ERR_NOMEM, "same-device: out of memory");
            break;
        }
        ep->device = p->device;
        c->dev = ep;
        c->device = p->device;
        if ((e = cudaStreamCreateWithFlags(&ep->copy, cudaStreamNonBlocking)) != cudaSuccess ||
            (e = cudaEventCreateWithFlags(&ep->mine, cudaEventDisableTiming)) != cudaSuccess)
            st = sd_error(err, c, "creating its copy stream", e);
    }
    if (st != KVR_OK) {
        kvr_comm_world_destroy(w);
        return st;
    }
    *out = w;
    return KVR_OK;
}
