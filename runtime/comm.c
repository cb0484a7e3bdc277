/* comm.c -- the kvr_comm front end (argument checks, accounting) and the in-process threads
 * transport: one mutex and condition variable per group, a queue of posted sends that
 * receivers match by (src, dst, tag) and copy from (rendezvous; the copy is the transfer), a
 * generation barrier, an all-gather over published pointers, and a group-wide failure flag
 * that wakes every waiter. */
#include "comm_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>


struct kvr_comm_group {
    int32_t n;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    kvr_comm_request *head, *tail; /* posted, not yet taken */
    int32_t bar_count;
    int64_t bar_gen;
    const void **ag_send; /* (n) published all-gather sources */
    bool failed;
    int32_t failed_rank;
    char reason[300];
    kvr_comm *ranks; /* (n) */
};

// ----------------------------------------------------------------------------
// failure

static kvr_status kvr_group_failed_error(kvr_comm_group *g, kvr_comm *c, kvr_error *err) {
    return kvr_error_set(err, KVR_ERR_COMM, "rank %d: peer rank %d failed: %s", c->rank,
                         g->failed_rank, g->reason);
}

static void thr_fail(kvr_comm *c, const char *reason) {
    kvr_comm_group *g = c->impl;
    pthread_mutex_lock(&g->mu);
    if (!g->failed) {
        g->failed = true;
        g->failed_rank = c->rank;
        snprintf(g->reason, sizeof g->reason, "%s", reason ? reason : "unknown error");
    }
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

// ----------------------------------------------------------------------------
// point to point

static kvr_status thr_isend(kvr_comm *c, int32_t dst, int32_t tag, const void *buf, size_t bytes,
                            kvr_comm_request **req, kvr_error *err) {
    kvr_comm_group *g = c->impl;
    kvr_comm_request *r = calloc(1, sizeof *r);
    if (!r) return kvr_error_set(err, KVR_ERR_NOMEM, "isend: out of memory");
    r->src = c->rank, r->dst = dst, r->tag = tag, r->buf = buf, r->bytes = bytes;
    pthread_mutex_lock(&g->mu);
    if (g->failed) {
        pthread_mutex_unlock(&g->mu);
        free(r);
        return kvr_group_failed_error(g, c, err);
    }
    if (g->tail)
        g->tail->next = r;
    else
        g->head = r;
    g->tail = r;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    *req = r;
    return KVR_OK;
}

static kvr_status thr_recv(kvr_comm *c, int32_t src, int32_t tag, void *buf, size_t bytes,
                           kvr_error *err) {
    kvr_comm_group *g = c->impl;
    double t0 = kvr_time_us();
    pthread_mutex_lock(&g->mu);
    kvr_comm_request *r = NULL;
    for (;;) {
        kvr_comm_request *prev = NULL;
        for (r = g->head; r; prev = r, r = r->next)
            if (r->src == src && r->dst == c->rank && r->tag == tag) break;
        if (r) {
            if (prev)
                prev->next = r->next;
            else
                g->head = r->next;
            if (g->tail == r) g->tail = prev;
            r->taken = true;
            break;
        }
        if (g->failed) {
            pthread_mutex_unlock(&g->mu);
            return kvr_group_failed_error(g, c, err);
        }
        pthread_cond_wait(&g->cv, &g->mu);
    }
    pthread_mutex_unlock(&g->mu);
    double t1 = kvr_time_us();
    kvr_status st = KVR_OK;
    if (r->bytes != bytes)
        st = kvr_error_set(err, KVR_ERR_COMM,
                           "rank %d: message from rank %d (tag %d) has %zu bytes, expected %zu",
                           c->rank, src, tag, r->bytes, bytes);
    else if (bytes)
        memcpy(buf, r->buf, bytes);
    double t2 = kvr_time_us();
    pthread_mutex_lock(&g->mu);
    r->done = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    c->stats.wait_us += t1 - t0;
    c->stats.xfer_us += t2 - t1;
    if (st == KVR_OK) {
        c->stats.bytes_recv += (int64_t)bytes;
        c->stats.n_msgs_recv++;
    }
    return st;
}

static kvr_status thr_wait(kvr_comm *c, kvr_comm_request *r, kvr_error *err) {
    kvr_comm_group *g = c->impl;
    pthread_mutex_lock(&g->mu);
    while (!r->done && !g->failed) pthread_cond_wait(&g->cv, &g->mu);
    bool done = r->done, taken = r->taken;
    if (!done && !taken) { /* never matched: unlink it so nobody reads a dead buffer */
        kvr_comm_request *prev = NULL;
        for (kvr_comm_request *q = g->head; q; prev = q, q = q->next)
            if (q == r) {
                if (prev)
                    prev->next = q->next;
                else
                    g->head = q->next;
                if (g->tail == q) g->tail = prev;
                break;
            }
    } else if (!done) { /* a receiver is copying right now: let it finish */
        while (!r->done) pthread_cond_wait(&g->cv, &g->mu);
        done = true;
    }
    pthread_mutex_unlock(&g->mu);
    kvr_status st = done ? KVR_OK : kvr_group_failed_error(g, c, err);
    free(r);
    return st;
}

// ----------------------------------------------------------------------------
// collectives

/* Caller holds g->mu. */
static kvr_status thr_barrier_locked(kvr_comm_group *g, kvr_comm *c, kvr_error *err) {
    int64_t gen = g->bar_gen;
    if (++g->bar_count == g->n) {
        g->bar_count = 0;
        g->bar_gen++;
        pthread_cond_broadcast(&g->cv);
        return KVR_OK;
    }
    while (g->bar_gen == gen && !g->failed) pthread_cond_wait(&g->cv, &g->mu);
    if (g->bar_gen == gen) return kvr_group_failed_error(g, c, err);
    return KVR_OK;
}

static kvr_status thr_barrier(kvr_comm *c, kvr_error *err) {
    kvr_comm_group *g = c->impl;
    double t0 = kvr_time_us();
    pthread_mutex_lock(&g->mu);
    kvr_status st = g->failed ? kvr_group_failed_error(g, c, err) : thr_barrier_locked(g, c, err);
    pthread_mutex_unlock(&g->mu);
    c->stats.wait_us += kvr_time_us() - t0;
    return st;
}

static kvr_status thr_allgatherv(kvr_comm *c, const void *send, void *recv, const size_t *bytes,
                                 kvr_error *err) {
    kvr_comm_group *g = c->impl;
    size_t off_self = 0;
    for (int32_t r = 0; r < c->rank; r++) off_self += bytes[r];
    const void *src = send ? send : (const char *)recv + off_self;
    double t0 = kvr_time_us();
    pthread_mutex_lock(&g->mu);
    g->ag_send[c->rank] = src;
    kvr_status st = g->failed ? kvr_group_failed_error(g, c, err) : thr_barrier_locked(g, c, err);
    pthread_mutex_unlock(&g->mu);
    double t1 = kvr_time_us();
    if (st != KVR_OK) return st;
    size_t off = 0;
    int64_t got = 0;
    for (int32_t r = 0; r < g->n; r++) {
        const void *from = g->ag_send[r];
        char *to = (char *)recv + off;
        if (from != to && bytes[r]) memcpy(to, from, bytes[r]);
        if (r != c->rank) got += (int64_t)bytes[r];
        off += bytes[r];
    }
    double t2 = kvr_time_us();
    /* Second barrier: nobody may reuse its source before every rank has copied it. */
    pthread_mutex_lock(&g->mu);
    st = g->failed ? kvr_group_failed_error(g, c, err) : thr_barrier_locked(g, c, err);
    pthread_mutex_unlock(&g->mu);
    double t3 = kvr_time_us();
    c->stats.wait_us += (t1 - t0) + (t3 - t2);
    c->stats.xfer_us += t2 - t1;
    c->stats.bytes_recv += got;
    c->stats.bytes_sent += (int64_t)bytes[c->rank] * (g->n - 1);
    return st;
}

static const kvr_comm_ops comm_threads_ops = {
    thr_isend, thr_recv, thr_wait, thr_allgatherv, thr_barrier, thr_fail,
};

// ----------------------------------------------------------------------------
// groups

kvr_status kvr_comm_group_create(int32_t n, kvr_comm_group **out, kvr_error *err) {
    *out = NULL;
    if (n < 1 || n > 4096)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "comm: %d ranks (need 1..4096)", n);
    kvr_comm_group *g = calloc(1, sizeof *g);
    if (!g) return kvr_error_set(err, KVR_ERR_NOMEM, "comm: out of memory");
    g->n = n;
    g->ranks = calloc((size_t)n, sizeof *g->ranks);
    g->ag_send = calloc((size_t)n, sizeof *g->ag_send);
    if (!g->ranks || !g->ag_send) {
        free(g->ranks), free(g->ag_send), free(g);
        return kvr_error_set(err, KVR_ERR_NOMEM, "comm: out of memory");
    }
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    for (int32_t i = 0; i < n; i++) {
        g->ranks[i].ops = &comm_threads_ops;
        g->ranks[i].transport = KVR_TRANSPORT_THREADS;
        g->ranks[i].rank = i;
        g->ranks[i].size = n;
        g->ranks[i].impl = g;
    }
    *out = g;
    return KVR_OK;
}

kvr_comm *kvr_comm_group_rank(kvr_comm_group *g, int32_t rank) {
    KVR_ASSERT(rank >= 0 && rank < g->n);
    return &g->ranks[rank];
}

void kvr_comm_group_destroy(kvr_comm_group *g) {
    if (!g) return;
    for (kvr_comm_request *r = g->head, *nx; r; r = nx) {
        nx = r->next;
        free(r);
    }
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g->ranks);
    free(g->ag_send);
    free(g);
}

// ----------------------------------------------------------------------------
// front end

int32_t kvr_comm_rank(const kvr_comm *c) {
    return c->rank;
}
int32_t kvr_comm_size(const kvr_comm *c) {
    return c->size;
}
kvr_transport kvr_comm_transport(const kvr_comm *c) {
    return c->transport;
}
const kvr_comm_stats *kvr_comm_get_stats(const kvr_comm *c) {
    return &c->stats;
}
void kvr_comm_reset_stats(kvr_comm *c) {
    memset(&c->stats, 0, sizeof c->stats);
}

static kvr_status kvr_comm_check_peer(const kvr_comm *c, int32_t peer, const char *what,
                                      kvr_error *err) {
    if (peer < 0 || peer >= c->size || peer == c->rank)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s: rank %d has no peer %d (size %d)",
                             what, c->rank, peer, c->size);
    return KVR_OK;
}

kvr_status kvr_comm_isend(kvr_comm *c, int32_t dst, int32_t tag, const void *buf, size_t bytes,
                          kvr_comm_request **req, kvr_error *err) {
    *req = NULL;
    KVR_TRY(kvr_comm_check_peer(c, dst, "isend", err));
    double t0 = kvr_time_us();
    kvr_status st = c->ops->isend(c, dst, tag, buf, bytes, req, err);
    c->stats.xfer_us += kvr_time_us() - t0;
    if (st == KVR_OK) {
        c->stats.bytes_sent += (int64_t)bytes;
        c->stats.n_msgs_sent++;
    }
    return st;
}

kvr_status kvr_comm_recv(kvr_comm *c, int32_t src, int32_t tag, void *buf, size_t bytes,
                         kvr_error *err) {
    KVR_TRY(kvr_comm_check_peer(c, src, "recv", err));
    return c->ops->recv(c, src, tag, buf, bytes, err);
}

kvr_status kvr_comm_wait(kvr_comm *c, kvr_comm_request *req, kvr_error *err) {
    if (!req) return KVR_OK;
    double t0 = kvr_time_us();
    kvr_status st = c->ops->wait(c, req, err);
    c->stats.wait_us += kvr_time_us() - t0;
    return st;
}

kvr_status kvr_comm_allgatherv(kvr_comm *c, const void *send, void *recv, const size_t *bytes,
                               kvr_error *err) {
    return c->ops->allgatherv(c, send, recv, bytes, err);
}

kvr_status kvr_comm_barrier(kvr_comm *c, kvr_error *err) {
    return c->ops->barrier(c, err);
}

void kvr_comm_fail(kvr_comm *c, const char *reason) {
    c->ops->fail(c, reason);
}
