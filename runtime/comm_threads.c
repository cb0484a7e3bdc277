/* comm_threads.c -- the in-process threads transport: every rank is a thread of one process.
 * Waits spin briefly before they sleep when every rank can have a CPU (thr_block).
 * One mutex and condition variable per world guard
 *   data:     per destination, a queue of posted sends (the sender's pool request holds the
 *             pointer); a receiver takes the first from its source and copies straight out of
 *             the sender's buffer (one memcpy: the transfer), then marks the send done;
 *   control:  per destination, a queue of copied-in messages (a control send never waits), and
 *             the collectives over published pointers between two generation barriers;
 *   failure:  a world-wide flag that wakes every waiter on both channels.
 * Host memory only -- except as the same-device transport (comm_threads_world_create_dev): the
 * same world, whose data messages with a device buffer on either side are copied by the
 * device hooks (cuda/comm_samedev.c: events and a device-to-device copy) instead of memcpy. */
#include "comm_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A posted data send (the sender's pool request) or a control message (payload follows). */
typedef struct thr_msg {
    struct thr_msg *next;
    int32_t src, dst;
    const void *buf;
    size_t bytes;
    bool taken, done;
    kvr_mem_space space; /* of buf */
    void *ready;         /* same-device: the sender's ready point (dev->post), or NULL */
} thr_msg;

typedef struct thr_queue {
    thr_msg *head, *tail;
} thr_queue;

typedef struct thr_world {
    int32_t n;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    thr_queue *data; /* (n) by destination: posted, not yet taken */
    thr_queue *ctrl; /* (n) by destination: control messages, owned by the queue */
    int32_t bar_count;
    int64_t bar_gen;
    const void **pub; /* (n) published control-collective sources */
    bool failed;
    int32_t failed_rank;
    char reason[300];
    const comm_thr_dev_ops *dev; /* same-device: the device copy hooks; NULL for threads */
    /* waits spin this long before they sleep (thr_block); 0: sleep at once */
    double spin_us;
    atomic_uint_fast64_t seq; /* bumped by every notify: what a spinning waiter watches */
} thr_world;

/* How long a wait spins before it sleeps. A peer's notify then costs no futex sleep and no
 * wake-up of a halted CPU: on the 2-vCPU development VM that was about 55 us per TSP layer step
 * (its all-gather waits twice per layer), and tsp at 128 tokens on the tiny preset ran in 0.58 ms
 * with the spin against 0.91 without (bench/bench_bind, bound ranks); 50 and 200 us measured
 * alike, kvr and ring within 5 %. */
#define THR_SPIN_US 50.0

/* Wake every waiter (caller holds g->mu). */
static void thr_notify(thr_world *g) {
    atomic_fetch_add_explicit(&g->seq, 1, memory_order_release);
    pthread_cond_broadcast(&g->cv);
}

static inline void thr_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Wait for the next notify (caller holds g->mu, and holds it again on return; the caller
 * rechecks its condition, as after pthread_cond_wait). With spin_us > 0 it first watches seq
 * with the lock released, for up to spin_us: a peer's wake-up then costs no sleep and no
 * wake-up of a sleeping CPU (tens of microseconds on a VM, once per layer of a schedule). */
static void thr_block(thr_world *g) {
    if (g->spin_us > 0) {
        const uint_fast64_t seen = atomic_load_explicit(&g->seq, memory_order_acquire);
        pthread_mutex_unlock(&g->mu);
        const double t0 = kvr_time_us();
        int k = 0;
        while (atomic_load_explicit(&g->seq, memory_order_acquire) == seen &&
               ((++k & 63) || kvr_time_us() - t0 < g->spin_us))
            thr_cpu_relax();
        pthread_mutex_lock(&g->mu);
        if (atomic_load_explicit(&g->seq, memory_order_acquire) != seen) return;
    }
    pthread_cond_wait(&g->cv, &g->mu);
}

static void thr_queue_push(thr_queue *q, thr_msg *m) {
    m->next = NULL;
    if (q->tail)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
}

/* Unlink and return the first message from src (in posting order), or NULL. */
static thr_msg *thr_queue_take(thr_queue *q, int32_t src) {
    thr_msg *prev = NULL, *m;
    for (m = q->head; m; prev = m, m = m->next)
        if (m->src == src) break;
    if (!m) return NULL;
    if (prev)
        prev->next = m->next;
    else
        q->head = m->next;
    if (q->tail == m) q->tail = prev;
    return m;
}

static void thr_queue_unlink(thr_queue *q, thr_msg *r) {
    thr_msg *prev = NULL;
    for (thr_msg *m = q->head; m; prev = m, m = m->next)
        if (m == r) {
            if (prev)
                prev->next = m->next;
            else
                q->head = m->next;
            if (q->tail == m) q->tail = prev;
            return;
        }
}

// ----------------------------------------------------------------------------
// failure

static kvr_status thr_failed_error(thr_world *g, kvr_comm *c, kvr_error *err) {
    return kvr_error_set(err, KVR_ERR_COMM, "rank %d: peer rank %d failed: %s", c->rank,
                         g->failed_rank, g->reason);
}

static void thr_fail(kvr_comm *c, const char *reason) {
    thr_world *g = c->impl;
    pthread_mutex_lock(&g->mu);
    if (!g->failed) {
        g->failed = true;
        g->failed_rank = c->rank;
        snprintf(g->reason, sizeof g->reason, "%s", reason ? reason : "unknown error");
    }
    thr_notify(g);
    pthread_mutex_unlock(&g->mu);
}

static void thr_abort(kvr_comm *c, int code) {
    char reason[64];
    snprintf(reason, sizeof reason, "aborted (exit code %d)", code);
    thr_fail(c, reason);
}

// ----------------------------------------------------------------------------
// data channel

static kvr_status thr_isend(kvr_comm *c, int32_t dst, const void *buf, size_t bytes,
                            kvr_mem_space space, void *req, kvr_error *err) {
    thr_world *g = c->impl;
    thr_msg *r = req;
    r->src = c->rank, r->dst = dst, r->buf = buf, r->bytes = bytes, r->space = space;
    if (g->dev && space == KVR_MEM_DEVICE) KVR_TRY(g->dev->post(c, &r->ready, err));
    pthread_mutex_lock(&g->mu);
    if (g->failed) {
        pthread_mutex_unlock(&g->mu);
        if (r->ready) g->dev->release(c, r->ready);
        r->ready = NULL;
        return thr_failed_error(g, c, err);
    }
    thr_queue_push(&g->data[dst], r);
    thr_notify(g);
    pthread_mutex_unlock(&g->mu);
    return KVR_OK;
}

static kvr_status thr_recv(kvr_comm *c, int32_t src, void *buf, size_t bytes, kvr_mem_space space,
                           kvr_error *err) {
    thr_world *g = c->impl;
    double t0 = kvr_time_us();
    pthread_mutex_lock(&g->mu);
    thr_msg *r;
    while (!(r = thr_queue_take(&g->data[c->rank], src))) {
        if (g->failed) {
            pthread_mutex_unlock(&g->mu);
            return thr_failed_error(g, c, err);
        }
        thr_block(g);
    }
    r->taken = true;
    pthread_mutex_unlock(&g->mu);
    double t1 = kvr_time_us();
    kvr_status st = KVR_OK;
    if (r->bytes != bytes)
        st = kvr_error_set(err, KVR_ERR_COMM,
                           "rank %d: message from rank %d has %zu bytes, expected %zu", c->rank,
                           src, r->bytes, bytes);
    else if (bytes && g->dev && (space == KVR_MEM_DEVICE || r->space == KVR_MEM_DEVICE))
        st = g->dev->copy(c, r->ready, buf, r->buf, bytes, err);
    else if (bytes)
        memcpy(buf, r->buf, bytes);
    double t2 = kvr_time_us();
    pthread_mutex_lock(&g->mu);
    r->done = true;
    thr_notify(g);
    pthread_mutex_unlock(&g->mu);
    c->stats.wait_us += t1 - t0;
    c->stats.xfer_us += t2 - t1;
    if (st == KVR_OK) {
        c->stats.bytes_recv += (int64_t)bytes;
        c->stats.n_msgs_recv++;
    }
    return st;
}

static kvr_status thr_wait(kvr_comm *c, void *req, kvr_error *err) {
    thr_world *g = c->impl;
    thr_msg *r = req;
    pthread_mutex_lock(&g->mu);
    while (!r->done && !g->failed) thr_block(g);
    bool done = r->done;
    if (!done && !r->taken) { /* never matched: unlink it so nobody reads a dead buffer */
        thr_queue_unlink(&g->data[r->dst], r);
    } else if (!done) { /* a receiver is copying right now: let it finish */
        while (!r->done) thr_block(g);
        done = true;
    }
    pthread_mutex_unlock(&g->mu);
    if (r->ready) g->dev->release(c, r->ready); /* the copy has completed, or never will run */
    r->ready = NULL;
    return done ? KVR_OK : thr_failed_error(g, c, err);
}

// ----------------------------------------------------------------------------
// control channel

static kvr_status thr_ctrl_send(kvr_comm *c, int32_t dst, const void *buf, size_t bytes,
                                kvr_error *err) {
    thr_world *g = c->impl;
    thr_msg *m = malloc(sizeof *m + bytes);
    if (!m) return kvr_error_set(err, KVR_ERR_NOMEM, "ctrl_send: rank %d: out of memory", c->rank);
    memset(m, 0, sizeof *m);
    m->src = c->rank, m->dst = dst, m->buf = m + 1, m->bytes = bytes;
    if (bytes) memcpy(m + 1, buf, bytes);
    pthread_mutex_lock(&g->mu);
    if (g->failed) {
        pthread_mutex_unlock(&g->mu);
        free(m);
        return thr_failed_error(g, c, err);
    }
    thr_queue_push(&g->ctrl[dst], m);
    thr_notify(g);
    pthread_mutex_unlock(&g->mu);
    return KVR_OK;
}

static kvr_status thr_ctrl_recv(kvr_comm *c, int32_t src, void *buf, size_t bytes,
                                kvr_error *err) {
    thr_world *g = c->impl;
    pthread_mutex_lock(&g->mu);
    thr_msg *m;
    while (!(m = thr_queue_take(&g->ctrl[c->rank], src))) {
        if (g->failed) {
            pthread_mutex_unlock(&g->mu);
            return thr_failed_error(g, c, err);
        }
        thr_block(g);
    }
    pthread_mutex_unlock(&g->mu);
    kvr_status st = KVR_OK;
    if (m->bytes != bytes)
        st = kvr_error_set(err, KVR_ERR_COMM,
                           "rank %d: control message from rank %d has %zu bytes, expected %zu",
                           c->rank, src, m->bytes, bytes);
    else if (bytes)
        memcpy(buf, m->buf, bytes);
    free(m);
    return st;
}

/* Caller holds g->mu. */
static kvr_status thr_barrier_locked(thr_world *g, kvr_comm *c, kvr_error *err) {
    if (g->failed) return thr_failed_error(g, c, err);
    int64_t gen = g->bar_gen;
    if (++g->bar_count == g->n) {
        g->bar_count = 0;
        g->bar_gen++;
        thr_notify(g);
        return KVR_OK;
    }
    while (g->bar_gen == gen && !g->failed) thr_block(g);
    if (g->bar_gen == gen) return thr_failed_error(g, c, err);
    return KVR_OK;
}

static kvr_status thr_barrier(kvr_comm *c, kvr_error *err) {
    thr_world *g = c->impl;
    pthread_mutex_lock(&g->mu);
    kvr_status st = thr_barrier_locked(g, c, err);
    pthread_mutex_unlock(&g->mu);
    return st;
}

/* Publish src as this rank's source, wait for every rank, let copy() read the published
 * pointers, and wait again: nobody may reuse its source before every rank has read it. */
static kvr_status thr_exchange(kvr_comm *c, const void *src,
                               void (*copy)(thr_world *g, kvr_comm *c, void *arg), void *arg,
                               kvr_error *err) {
    thr_world *g = c->impl;
    pthread_mutex_lock(&g->mu);
    g->pub[c->rank] = src;
    kvr_status st = thr_barrier_locked(g, c, err);
    pthread_mutex_unlock(&g->mu);
    if (st != KVR_OK) return st;
    copy(g, c, arg);
    pthread_mutex_lock(&g->mu);
    st = thr_barrier_locked(g, c, err);
    pthread_mutex_unlock(&g->mu);
    return st;
}

typedef struct thr_coll {
    int32_t root;
    void *dst;
    size_t bytes;
} thr_coll;

static void thr_copy_bcast(thr_world *g, kvr_comm *c, void *arg) {
    thr_coll *a = arg;
    if (c->rank != a->root && a->bytes) memcpy(a->dst, g->pub[a->root], a->bytes);
}

static void thr_copy_allgather(thr_world *g, kvr_comm *c, void *arg) {
    thr_coll *a = arg;
    (void)c;
    for (int32_t r = 0; r < g->n; r++) {
        char *to = (char *)a->dst + (size_t)r * a->bytes;
        if (g->pub[r] != to && a->bytes) memcpy(to, g->pub[r], a->bytes);
    }
}

static kvr_status thr_ctrl_bcast(kvr_comm *c, int32_t root, void *buf, size_t bytes,
                                 kvr_error *err) {
    thr_coll a = {root, buf, bytes};
    return thr_exchange(c, buf, thr_copy_bcast, &a, err);
}

static kvr_status thr_ctrl_allgather(kvr_comm *c, const void *mine, size_t bytes_each, void *all,
                                     kvr_error *err) {
    thr_coll a = {0, all, bytes_each};
    const void *src = mine ? mine : (const char *)all + (size_t)c->rank * bytes_each;
    return thr_exchange(c, src, thr_copy_allgather, &a, err);
}

// ----------------------------------------------------------------------------
// the world

static void thr_world_destroy(kvr_comm_world *w) {
    thr_world *g = w->impl;
    for (int32_t i = 0; g->dev && w->local && i < w->n_local; i++)
        if (w->local[i].dev) g->dev->endpoint_destroy(&w->local[i]);
    for (int32_t i = 0; i < g->n; i++)
        for (thr_msg *m = g->ctrl[i].head, *nx; m; m = nx) {
            nx = m->next;
            free(m);
        }
    /* data messages are pool requests: the front end frees them */
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g->data);
    free(g->ctrl);
    free(g->pub);
    free(g);
    w->impl = NULL;
}

static const kvr_comm_ops comm_threads_ops = {
    .name = "threads",
    .transport = KVR_TRANSPORT_THREADS,
    .mem_spaces = 1u << KVR_MEM_HOST,
    .req_size = sizeof(thr_msg),
    .isend = thr_isend,
    .recv = thr_recv,
    .wait = thr_wait,
    .allgatherv = comm_allgatherv_p2p,
    .ctrl_send = thr_ctrl_send,
    .ctrl_recv = thr_ctrl_recv,
    .ctrl_bcast = thr_ctrl_bcast,
    .ctrl_allgather = thr_ctrl_allgather,
    .barrier = thr_barrier,
    .fail = thr_fail,
    .abort = thr_abort,
    .world_destroy = thr_world_destroy,
};

/* Same-device: the same functions, reaching device memory through the world's hooks. */
static kvr_status thr_local_copy(kvr_comm *c, void *dst, const void *src, size_t bytes,
                                 kvr_mem_space space, kvr_error *err) {
    thr_world *g = c->impl;
    if (space == KVR_MEM_DEVICE) return g->dev->local_copy(c, dst, src, bytes, space, err);
    memcpy(dst, src, bytes);
    return KVR_OK;
}

static const kvr_comm_ops comm_samedev_ops = {
    .name = "same-device",
    .transport = KVR_TRANSPORT_SAME_DEVICE,
    .mem_spaces = (1u << KVR_MEM_HOST) | (1u << KVR_MEM_DEVICE),
    .req_size = sizeof(thr_msg),
    .isend = thr_isend,
    .recv = thr_recv,
    .wait = thr_wait,
    .allgatherv = comm_allgatherv_p2p,
    .local_copy = thr_local_copy,
    .ctrl_send = thr_ctrl_send,
    .ctrl_recv = thr_ctrl_recv,
    .ctrl_bcast = thr_ctrl_bcast,
    .ctrl_allgather = thr_ctrl_allgather,
    .barrier = thr_barrier,
    .fail = thr_fail,
    .abort = thr_abort,
    .world_destroy = thr_world_destroy,
};

static kvr_status thr_world_create(const kvr_comm_params *p, const comm_thr_dev_ops *dev,
                                   kvr_comm_world **out, kvr_error *err) {
    *out = NULL;
    const int32_t n = p->n_ranks;
    if (n < 1 || n > 4096)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "comm: %d ranks (need 1..4096)", n);
    thr_world *g = calloc(1, sizeof *g);
    if (!g) return kvr_error_set(err, KVR_ERR_NOMEM, "comm: out of memory");
    g->n = n;
    g->data = calloc((size_t)n, sizeof *g->data);
    g->ctrl = calloc((size_t)n, sizeof *g->ctrl);
    g->pub = calloc((size_t)n, sizeof *g->pub);
    if (!g->data || !g->ctrl || !g->pub) {
        free(g->data), free(g->ctrl), free(g->pub), free(g);
        return kvr_error_set(err, KVR_ERR_NOMEM, "comm: out of memory");
    }
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->dev = dev;
    atomic_init(&g->seq, 0);
    /* spin only when every rank can have a CPU of its own: a spinning waiter must not hold the
     * CPU the rank it waits for needs (docs/transport.md) */
    g->spin_us = n <= comm_cpus_allowed() ? THR_SPIN_US : 0;
    kvr_comm_world *w;
    kvr_status st =
        comm_world_alloc(dev ? &comm_samedev_ops : &comm_threads_ops, n, n, 0, g, &w, err);
    if (st != KVR_OK) {
        kvr_comm_world tmp = {.impl = g};
        thr_world_destroy(&tmp);
        return st;
    }
    *out = w;
    return KVR_OK;
}

kvr_status comm_threads_world_create(const kvr_comm_params *p, kvr_comm_world **out,
                                     kvr_error *err) {
    return thr_world_create(p, NULL, out, err);
}

kvr_status comm_threads_world_create_dev(const kvr_comm_params *p, const comm_thr_dev_ops *dev,
                                         kvr_comm_world **out, kvr_error *err) {
    return thr_world_create(p, dev, out, err);
}
