/* profiler_internal.h -- declarations shared by the profiler's .c files (and its tests): the
 * adaptive harness as a per-point state machine, so the layer profile can interleave the
 * repetitions of several points (kvr_time_adaptive is the same machine run point by point). */
#ifndef KVR_PROFILER_INTERNAL_H
#define KVR_PROFILER_INTERNAL_H
#include "kvr_profiler.h"

typedef struct prof_timer {
    const kvr_timing_params *tp;
    double *s;       /* (max_iters) measured samples, kept sorted */
    int32_t n;       /* measured so far */
    int32_t n_warm;  /* warm-ups run so far */
    double sum_us;   /* measured time so far (the budget's clock) */
    double warm_us;  /* warm-up time so far */
    bool warm_done;  /* no more warm-ups */
    bool stable;     /* the median meets the stability target */
    bool done;       /* stop measuring: see kvr_time_adaptive */
} prof_timer;

void prof_timer_init(prof_timer *t, const kvr_timing_params *tp, double *scratch);
/* Whether the next execution is a warm-up (then pass its time to prof_timer_add too). */
bool prof_timer_wants_warmup(const prof_timer *t);
/* Record one execution (a warm-up while prof_timer_wants_warmup, else a measurement). */
void prof_timer_add(prof_timer *t, double time_us);
/* Statistics of the measured samples (n_warmup, n_iters, is_stable included). */
void prof_timer_stats(prof_timer *t, kvr_timing_stats *out);

/* Resuming a run: whether s[0..n) (the run's stored layer samples) holds op at (c, prefix). */
bool prof_sample_stored(const kvr_db_layer_sample *s, int64_t n, const char *op, int64_t c,
                        int64_t prefix);
/* A point found stored: counted as skipped and reported to hooks->on_point (no stats). */
void prof_point_skipped(kvr_profile_result *res, const kvr_profile_hooks *hooks,
                        const char *label);
/* A point measured: stored as run_id's layer sample op at (c, prefix) with stats st, counted as
 * measured and reported to hooks->on_point. Errors: the store's. */
kvr_status prof_point_measured(kvr_db *db, int64_t run_id, const char *op, int64_t c,
                               int64_t prefix, const kvr_timing_stats *st,
                               kvr_profile_result *res, const kvr_profile_hooks *hooks,
                               const char *label, kvr_error *err);

#endif /* KVR_PROFILER_INTERNAL_H */
