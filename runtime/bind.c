/* bind.c -- ranks as threads on disjoint CPUs (kvr_rank_thread_bind, kvr_runtime.h), and the
 * count of CPUs the process may use (comm_cpus_allowed: the threads transport's spin rule).
 *
 * Why: kvr_prefill_run starts one thread per rank for each prompt and lets them run. Left to
 * the OS, two new rank threads are often placed on one CPU -- the scheduler balances by recent
 * load, so after a single-rank run one CPU still looks busy -- and a recently run thread is
 * "cache hot", so the idle CPU does not take it over for a scheduler tick or more. On the 2-vCPU
 * development VM a 2-rank tiny-preset prefill at 512 tokens then took 5.1 ms instead of 3.4 (tsp)
 * and 5.0 instead of 2.7 (ring) in half the runs of kvr-profile's end-to-end check, whose
 * schedules alternate; bound, every run took the fast time (docs/runtime.md, "Ranks as threads").
 * MPI does the same for processes (mpirun binds each rank to a core by default). */
#define _GNU_SOURCE /* sched_getaffinity, pthread_setaffinity_np, CPU_* (glibc) */
#include "comm_internal.h"
#include "kvr_runtime.h"

#include <pthread.h>
#include <sched.h>

int32_t comm_cpus_allowed(void) {
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return 1;
    return CPU_COUNT(&allowed);
}

int32_t kvr_rank_thread_bind(int32_t rank, int32_t n_ranks, int32_t n_threads) {
    if (rank < 0 || n_ranks < 1 || rank >= n_ranks || n_threads < 1) return -1;
    /* one rank has no other to keep apart from: binding it would only take CPUs from other
     * processes (two single-rank processes bound alike would share one CPU) */
    if (n_ranks < 2) return -1;
    cpu_set_t allowed, mine;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return -1;
    const int64_t need = (int64_t)n_ranks * n_threads;
    if (CPU_COUNT(&allowed) < need) return -1; /* oversubscribed: the OS shares them out */
    /* rank r takes the allowed CPUs number r*t .. r*t + t - 1, in CPU-id order */
    CPU_ZERO(&mine);
    int32_t first = -1, k = 0;
    const int64_t lo = (int64_t)rank * n_threads, hi = lo + n_threads;
    for (int cpu = 0; cpu < CPU_SETSIZE && k < hi; cpu++) {
        if (!CPU_ISSET(cpu, &allowed)) continue;
        if (k >= lo) {
            CPU_SET(cpu, &mine);
            if (first < 0) first = cpu;
        }
        k++;
    }
    if (first < 0 || pthread_setaffinity_np(pthread_self(), sizeof mine, &mine) != 0) return -1;
    return first;
}
