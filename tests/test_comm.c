/* test_comm.c -- the in-process threads transport: ordered point-to-point, size mismatch,
 * all-gather (in place and out of place), barriers, accounting, and failure propagation (a
 * failing rank wakes peers blocked in recv, wait, barrier and all-gather: no hang). */
#include "kvr_comm.h"
#include "kvr_test.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct {
    kvr_comm *c;
    int scenario;
    kvr_status st;
    kvr_error err;
    int payload_ok;
} worker;

static void *run_worker(void *arg) {
    worker *w = arg;
    kvr_comm *c = w->c;
    const int32_t me = kvr_comm_rank(c), n = kvr_comm_size(c);
    w->payload_ok = 1;
    switch (w->scenario) {
        case 0: { /* chain of growing messages, 3 per link, tags reused in order */
            int buf[64];
            for (int l = 0; l < 3; l++) {
                kvr_comm_request *req = NULL;
                int got[64];
                if (me > 0) {
                    w->st = kvr_comm_recv(c, me - 1, 7, got, sizeof(int) * (size_t)(me + l), &w->err);
                    if (w->st) return NULL;
                    for (int i = 0; i < me + l; i++) w->payload_ok &= got[i] == 1000 * l + i;
                }
                for (int i = 0; i < me + 1 + l; i++) buf[i] = 1000 * l + i;
                if (me < n - 1) {
                    w->st = kvr_comm_isend(c, me + 1, 7, buf, sizeof(int) * (size_t)(me + 1 + l),
                                           &req, &w->err);
                    if (w->st) return NULL;
                    w->st = kvr_comm_wait(c, req, &w->err);
                    if (w->st) return NULL;
                }
            }
            break;
        }
        case 1: { /* all-gather of rank-sized pieces, in place */
            size_t bytes[8];
            int all[64] = {0};
            int off = 0, mine_off = 0;
            for (int r = 0; r < n; r++) {
                bytes[r] = sizeof(int) * (size_t)(r + 1);
                if (r == me) mine_off = off;
                off += r + 1;
            }
            for (int i = 0; i <= me; i++) all[mine_off + i] = 100 * me + i;
            w->st = kvr_comm_allgatherv(c, NULL, all, bytes, &w->err);
            off = 0;
            for (int r = 0; r < n; r++)
                for (int i = 0; i <= r; i++) w->payload_ok &= all[off++] == 100 * r + i;
            break;
        }
        case 2: { /* rank 0 fails before sending; everyone else blocks somewhere */
            if (me == 0) {
                kvr_comm_fail(c, "injected failure");
                w->st = KVR_ERR_INTERNAL;
                return NULL;
            }
            int x;
            if (me == 1)
                w->st = kvr_comm_recv(c, 0, 1, &x, sizeof x, &w->err);
            else if (me == 2)
                w->st = kvr_comm_barrier(c, &w->err);
            else {
                size_t b[8] = {4, 4, 4, 4, 4, 4, 4, 4};
                int all[8];
                w->st = kvr_comm_allgatherv(c, &x, all, b, &w->err);
            }
            break;
        }
        case 3: { /* size mismatch is an error, not a short read */
            int x[4] = {1, 2, 3, 4};
            if (me == 0) {
                kvr_comm_request *req;
                w->st = kvr_comm_isend(c, 1, 0, x, sizeof x, &req, &w->err);
                if (!w->st) w->st = kvr_comm_wait(c, req, &w->err);
            } else {
                w->st = kvr_comm_recv(c, 0, 0, x, 2 * sizeof(int), &w->err);
            }
            break;
        }
    }
    return NULL;
}

static void run_group(int n, int scenario, worker *w) {
    kvr_error e;
    kvr_comm_group *g;
    KVR_CHECK_OK(kvr_comm_group_create(n, &g, &e), &e);
    pthread_t th[8];
    for (int i = 0; i < n; i++) {
        w[i] = (worker){kvr_comm_group_rank(g, i), scenario, KVR_OK, {0}, 0};
        pthread_create(&th[i], NULL, run_worker, &w[i]);
    }
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    kvr_comm_group_destroy(g);
}

static void test_chain_ordered(void) {
    worker w[5];
    run_group(5, 0, w);
    for (int i = 0; i < 5; i++) {
        KVR_CHECK_OK(w[i].st, &w[i].err);
        KVR_CHECK(w[i].payload_ok);
    }
}

static void test_allgather_in_place(void) {
    for (int n = 1; n <= 6; n++) {
        worker w[6];
        run_group(n, 1, w);
        for (int i = 0; i < n; i++) {
            KVR_CHECK_OK(w[i].st, &w[i].err);
            KVR_CHECK(w[i].payload_ok);
        }
    }
}

static void test_failure_wakes_peers(void) {
    worker w[4];
    run_group(4, 2, w); /* a hang here is a failure (ctest timeout) */
    for (int i = 1; i < 4; i++) {
        KVR_CHECK_EQ_INT(w[i].st, KVR_ERR_COMM);
        KVR_CHECK(strstr(w[i].err.msg, "peer rank 0 failed: injected failure") != NULL);
    }
}

static void test_size_mismatch(void) {
    worker w[2];
    run_group(2, 3, w);
    KVR_CHECK_EQ_INT(w[1].st, KVR_ERR_COMM);
    KVR_CHECK(strstr(w[1].err.msg, "has 16 bytes, expected 8") != NULL);
}

static void test_bad_peer_and_mpi_stub(void) {
    kvr_error e;
    kvr_comm_group *g;
    KVR_CHECK_OK(kvr_comm_group_create(2, &g, &e), &e);
    int x = 0;
    KVR_CHECK(kvr_comm_recv(kvr_comm_group_rank(g, 0), 0, 0, &x, 4, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(kvr_comm_recv(kvr_comm_group_rank(g, 0), 5, 0, &x, 4, &e) == KVR_ERR_INVALID_ARG);
    kvr_comm_group_destroy(g);
    KVR_CHECK(kvr_comm_group_create(0, &g, &e) == KVR_ERR_INVALID_ARG);
}

static const kvr_test_case cases[] = {
    {"chain_ordered", test_chain_ordered},
    {"allgather_in_place", test_allgather_in_place},
    {"failure_wakes_peers", test_failure_wakes_peers},
    {"size_mismatch", test_size_mismatch},
    {"bad_peer", test_bad_peer_and_mpi_stub},
};
KVR_TEST_MAIN(cases)
