/* partition.c -- partitions of a prompt over ranks: even split, check, parse, format, and the
 * rounding of real-valued chunk sizes onto a granularity grid (kvr_common.h). */
#include "kvr_common.h"

#include <math.h>
#include <string.h>

kvr_status kvr_partition_even(int64_t C, int32_t p, int64_t *out, kvr_error *err) {
    if (p < 1 || p > KVR_MAX_RANKS)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%d ranks (need 1..%d)", p, KVR_MAX_RANKS);
    if (C < p)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "%d ranks for %lld tokens: every rank needs at least one token", p,
                             (long long)C);
    for (int32_t i = 0; i < p; i++) out[i] = kvr_partition_even_chunk(C, p, i);
    return KVR_OK;
}

kvr_status kvr_partition_check(const int64_t *part, int32_t p, int64_t C, kvr_error *err) {
    if (p < 1 || p > KVR_MAX_RANKS)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%d ranks (need 1..%d)", p, KVR_MAX_RANKS);
    int64_t sum = 0;
    for (int32_t i = 0; i < p; i++) {
        if (part[i] < 1)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "partition: chunk %d has %lld tokens; every chunk needs >= 1", i,
                                 (long long)part[i]);
        sum += part[i];
    }
    if (sum != C)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "partition sums to %lld tokens but the context has %lld",
                             (long long)sum, (long long)C);
    return KVR_OK;
}

kvr_status kvr_partition_parse(const char *s, int32_t p, int64_t C, int64_t *out, kvr_error *err) {
    if (strcmp(s, "even") == 0) return kvr_partition_even(C, p, out, err);
    int32_t n = 0;
    const char *q = s;
    while (*q) {
        char tok[32];
        size_t len = strcspn(q, ",");
        if (len == 0 || len >= sizeof tok)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG, "partition '%s': bad chunk size", s);
        memcpy(tok, q, len);
        tok[len] = 0;
        if (n >= p)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "partition '%s' has more than %d chunks (one per rank)", s, p);
        int64_t v;
        if (kvr_parse_i64(tok, 0, INT64_MAX / 2, &v, err) != KVR_OK)
            return kvr_error_prefix(err, "partition '%s'", s);
        out[n++] = v;
        q += len;
        if (*q == ',') {
            q++;
            if (!*q)
                return kvr_error_set(err, KVR_ERR_INVALID_ARG, "partition '%s': trailing comma",
                                     s);
        }
    }
    if (n != p)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "partition '%s' has %d chunks for %d ranks",
                             s, n, p);
    return kvr_partition_check(out, p, C, err);
}

kvr_status kvr_partition_format(const int64_t *part, int32_t p, char *buf, size_t len,
                                kvr_error *err) {
    if (!buf || len == 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "partition text: no buffer");
    size_t off = 0;
    for (int32_t i = 0; i < p; i++) {
        int w = snprintf(buf + off, len - off, "%s%lld", i ? "," : "", (long long)part[i]);
        if (w < 0 || (size_t)w >= len - off) {
            buf[0] = 0;
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "a partition of %d chunks does not fit in %zu bytes of text", p,
                                 len);
        }
        off += (size_t)w;
    }
    if (p < 1) buf[0] = 0;
    return KVR_OK;
}

int64_t kvr_partition_round_bound(double units, int32_t i, int32_t p, int64_t prev,
                                  int64_t n_units) {
    int64_t b = isfinite(units) && units < 9e18 && units > -9e18 ? (int64_t)llround(units)
                                                                  : (n_units * (i + 1)) / p;
    int64_t lo = prev + 1, hi = n_units - (p - 1 - i);
    if (b < lo) b = lo;
    if (b > hi) b = hi;
    return b;
}

#define PARTITION_HIST_BINS 64 /* remainder histogram of the rounding (p > 16) */

/* Bucket of a remainder v in [0, 1) (<= 0 and >= 1 clamp to the end buckets). */
static int partition_bin(double v) {
    return v <= 0 ? 0 : (v >= 1 ? PARTITION_HIST_BINS - 1 : (int)(v * PARTITION_HIST_BINS));
}

kvr_status kvr_partition_round(const double *units, int32_t p, int64_t C, int64_t g, int64_t *out,
                               kvr_error *err) {
    if (g < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "granularity must be >= 1, got %lld",
                             (long long)g);
    if (p < 1 || C / p < g)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "context %lld is smaller than ranks x granularity (%d x %lld)",
                             (long long)C, p, (long long)g);
    const int64_t n_units = C / g;
    /* the remainder C mod g is not part of any unit: it stays on the last chunk */
    const double r_units = (double)(C - n_units * g) / (double)g;
#define TGT(i) (units[i] - ((i) + 1 == p ? r_units : 0))
    int64_t used = 0;
    for (int32_t i = 0; i < p; i++) {
        double c = TGT(i);
        /* floor, at least one unit, at most all of them (a target past the int64 range, from
         * a malformed predictor, is not converted) */
        int64_t u = !(c >= 1) ? 1 : c >= (double)n_units ? n_units : (int64_t)c;
        out[i] = u;
        used += u;
    }
    /* hand out the units the floors left to the chunks with the largest remainders: a
     * histogram of the remainders (in [0, 1); chunks raised to one unit count as 0) finds the
     * cut in O(p), ties inside the cut bucket go to the largest remainders first */
    if (used < n_units && p > 16) {
        int hist[PARTITION_HIST_BINS] = {0};
        for (int32_t i = 0; i < p; i++) hist[partition_bin(TGT(i) - (double)out[i])]++;
        int64_t need = n_units - used;
        int cut = PARTITION_HIST_BINS - 1;
        for (; cut > 0 && need > hist[cut]; cut--) need -= hist[cut];
        /* every chunk above the cut bucket gets a unit; the rest come from the cut bucket */
        for (int32_t i = 0; i < p; i++)
            if (partition_bin(TGT(i) - (double)out[i]) > cut) {
                out[i]++;
                used++;
            }
    }
    /* the rest one at a time, largest remainder first (all of it for p <= 16: cheaper than the
     * histogram; for more ranks the members of the cut bucket) */
    /* one unit at a time to the largest remainder -- or, when it leads the next by more than a
     * unit (targets far from the floors: a malformed predictor), as many units at once as keep
     * it ahead, which ends in the same place without a step per unit */
    while (used < n_units) {
        int32_t best = 0;
        double bv = -INFINITY, second = -INFINITY;
        for (int32_t i = 0; i < p; i++) {
            double v = TGT(i) - (double)out[i];
            if (v > bv) {
                second = bv;
                bv = v;
                best = i;
            } else if (v > second) {
                second = v;
            }
        }
        const double gap = bv - second; /* +inf: no other chunk */
        int64_t d = !(gap < 9e18) ? n_units : gap > 2 ? (int64_t)gap : 1;
        if (d > n_units - used) d = n_units - used;
        out[best] += d;
        used += d;
    }
    while (used > n_units) {
        int32_t best = -1;
        double bv = INFINITY, second = INFINITY;
        for (int32_t i = 0; i < p; i++) {
            double v = TGT(i) - (double)out[i];
            if (out[i] <= 1) continue;
            if (v < bv) {
                second = bv;
                bv = v;
                best = i;
            } else if (v < second) {
                second = v;
            }
        }
        if (best < 0) break; /* cannot happen: n_units >= p */
        const double gap = second - bv; /* +inf: no other chunk above one unit */
        int64_t d = !(gap < 9e18) ? used : gap > 2 ? (int64_t)gap : 1;
        if (d > used - n_units) d = used - n_units;
        if (d > out[best] - 1) d = out[best] - 1;
        out[best] -= d;
        used -= d;
    }
#undef TGT
    for (int32_t i = 0; i < p; i++) out[i] *= g;
    out[p - 1] += C - n_units * g;
    return KVR_OK;
}
