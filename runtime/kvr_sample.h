/* kvr_sample.h -- choosing the next token from a row of logits: greedy, or temperature with
 * top-k and top-p (nucleus) filtering drawn from a seeded generator, so a run with the same seed
 * and logits draws the same tokens. One sampler per request (it holds the generator's state and
 * scratch for the vocabulary); the decode loop (kvr_decode.h) and the serving engine use it.
 *
 * The order is llama.cpp's: top-k, then softmax at the temperature, then top-p (the smallest set
 * of the most likely tokens whose probabilities sum to at least top_p, the rest dropped), then
 * one draw from what is left, renormalised. Ties are broken by token id (the lower first), so
 * the candidate order never depends on a sort's stability. temperature 0 is greedy (the argmax,
 * first on ties: kvr_argmax), and so is top_k 1; no draw is taken then.
 *
 * Usage:   kvr_sampler_params sp = kvr_sampler_params_default();   // greedy
 *          sp.temperature = 0.8f; sp.top_p = 0.95f; sp.seed = 42;
 *          kvr_sampler *s;
 *          if (kvr_sampler_create(&sp, n_vocab, &s, &err) != KVR_OK) ...;
 *          int32_t id = kvr_sampler_sample(s, logits);
 *          kvr_sampler_destroy(s);
 * Ownership: logits are borrowed for the call. Threads: a sampler belongs to one thread.
 */
#ifndef KVR_SAMPLE_H
#define KVR_SAMPLE_H
#include "kvr_common.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvr_sampler_params {
    float temperature; /* >= 0; 0 = greedy */
    int32_t top_k;     /* >= 0; 0 = no limit */
    float top_p;       /* (0, 1]; 1 = no limit */
    uint64_t seed;     /* the generator's seed */
} kvr_sampler_params;
/* Greedy: temperature 0, top_k 0, top_p 1, seed 0. */
KVR_API kvr_sampler_params kvr_sampler_params_default(void);
/* Errors: KVR_ERR_INVALID_ARG naming the field (kvr-run's flag names: --temp, --top-k, --top-p):
 * a negative or non-finite temperature, a negative top_k, top_p outside (0, 1]. */
KVR_API kvr_status kvr_sampler_params_check(const kvr_sampler_params *p, kvr_error *err);
/* Whether p always picks the argmax (temperature 0 or top_k 1). */
KVR_API bool kvr_sampler_params_greedy(const kvr_sampler_params *p);

typedef struct kvr_sampler kvr_sampler;
/* Errors: those of kvr_sampler_params_check, n_vocab < 1, KVR_ERR_NOMEM. */
KVR_API kvr_status kvr_sampler_create(const kvr_sampler_params *p, int32_t n_vocab,
                                      kvr_sampler **out, kvr_error *err);
KVR_API void kvr_sampler_destroy(kvr_sampler *s); /* NULL is a no-op */
/* The next token for n_vocab host logits (finite). Advances the generator unless greedy. */
KVR_API int32_t kvr_sampler_sample(kvr_sampler *s, const float *logits);

#ifdef __cplusplus
}
#endif
#endif /* KVR_SAMPLE_H */
