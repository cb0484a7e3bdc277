/* bench_util.h -- what the C benchmarks share: the median of repeated timings (the upper
 * median for an even count, as they have always reported). Benchmarks only; header-only. */
#ifndef KVR_BENCH_UTIL_H
#define KVR_BENCH_UTIL_H

#include <stdlib.h>

static inline int bench_cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v[0..n) in place; n >= 1. */
static inline double bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_d);
    return v[(n - 1) / 2];
}

#endif
