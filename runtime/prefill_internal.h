/* prefill_internal.h -- what prefill.c and ring.c share. */
#ifndef KVR_PREFILL_INTERNAL_H
#define KVR_PREFILL_INTERNAL_H
#include "kvr_runtime.h"

/* prefill.c / ring.c: the ring schedule's zigzag chunks (2p of them, larger first: search/sim.c's
 * chunking), its rank's part, and the end-of-run publication every schedule shares (each
 * rank's stats, with its comm figures, to every rank; the first token and TTFT from emitter). */
int64_t kvr_ring_chunk_len(int64_t C, int32_t p, int32_t k);
int64_t kvr_ring_chunk_pos(int64_t C, int32_t p, int32_t k);
kvr_status prefill_ring_rank(const kvr_model *m, kvr_comm *comm, const int32_t *tokens,
                             int64_t C, const kvr_prefill_params *pp, kvr_prefill_result *out,
                             kvr_error *err);
kvr_status prefill_publish(kvr_comm *comm, const kvr_rank_stats *mine, int32_t first,
                           double ttft_ms, int32_t emitter, kvr_prefill_result *out,
                           kvr_error *err);

#endif
