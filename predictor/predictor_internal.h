/* predictor_internal.h -- declarations shared by the predictor's fit-time files (library
 * kvr_predict: lsq.c, costfit.c, kvrp.c, fitdb.c) and, on purpose, its tests: the least-squares
 * helpers, on top of the predict-time internals (kvrp_internal.h). Tools and other modules use
 * kvr_predict.h only. */
#ifndef KVR_PREDICTOR_INTERNAL_H
#define KVR_PREDICTOR_INTERNAL_H

#include "kvr_predict.h"
#include "kvrp_internal.h"

// ----------------------------------------------------------------------------
// least squares helpers (lsq.c)

/* The label for messages: opt->label or "fit". */
const char *predict_label(const kvr_predict_lsq_options *opt);
/* Deterministic fold of each of n rows (a seeded Fisher-Yates shuffle dealt round-robin). */
void predict_folds(int n, int k, uint64_t seed, int *fold);
/* splitmix64 step (the project's reproducible generator). */
uint64_t predict_splitmix64(uint64_t *state);

// ----------------------------------------------------------------------------
// KVR-P fitting (kvrp.c)

/* Fill e->x, e->f, e->d or e->b from e->contexts/e->chunks for e->form (e->x/f/d/b allocated
 * here; GSL's Steffen slopes). */
kvr_status predict_kvrp_build(predict_kvrp_entry *e, kvr_error *err);

#endif /* KVR_PREDICTOR_INTERNAL_H */
