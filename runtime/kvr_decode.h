/* kvr_decode.h -- decode after prefill: one request's decode state and its generation loop.
 *
 * A kvr_decoder takes over a workspace whose KV cache holds the request's first n_past positions
 * (the prefill's emitting rank hands its own over: kvr_prefill_params.decode_reserve) and runs
 * one token per step through the backend seam -- embed at position n_past, pre (its K/V row
 * appended to every layer's cache), attn over the n_past + 1 cached rows, post, head -- the same
 * ops as the prefill, on a chunk of one token. kvr_generate drives it: it draws the first token
 * from the prefill's logits, then steps until a stop token (the model's end-of-generation ids,
 * kvr_tokenizer_eog) or n_predict tokens, and streams each token's text through a callback
 * holding back the bytes of a UTF-8 character a token left unfinished.
 *
 * The contiguous cache is one request's: a paged KV pool with batched decode (issue 12) will
 * replace the workspace behind kvr_decoder; kvr_generate's callers do not see it.
 *
 * Usage:   kvr_prefill_params pp = kvr_prefill_params_default();
 *          pp.decode_reserve = n_predict;  pp.keep_logits = true;
 *          kvr_prefill_run(model, ids, n, &pp, &pr, &err);        // pr.decoder, pr.logits
 *          kvr_generate_params gp = kvr_generate_params_default();
 *          gp.n_predict = n_predict; gp.tok = tok; gp.on_token = print_piece;
 *          kvr_generate_result gr;
 *          kvr_generate(pr.decoder, pr.logits, &gp, &gr, &err);   // gr.ids, gr.tpot_ms
 *          kvr_generate_result_free(&gr); kvr_prefill_result_free(&pr);
 * Ownership: a decoder owns the workspace (and the weights, when given) it was created with.
 * Threads:  a decoder belongs to one thread at a time.
 */
#ifndef KVR_DECODE_H
#define KVR_DECODE_H
#include "kvr_backend.h"
#include "kvr_sample.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvr_decoder kvr_decoder;

/* Take over ws, whose cache holds positions [0, n_past), and w (NULL: the caller keeps the
 * weights alive). device >= 0: the GPU the workspace lives on, made current before each step
 * (kvr_device_use); -1 for host backends. On error nothing is taken over.
 * Errors: KVR_ERR_INVALID_ARG (n_past outside [1, the workspace's positions]), KVR_ERR_NOMEM. */
KVR_API kvr_status kvr_decoder_create(kvr_weights *w, kvr_workspace *ws, int64_t n_past,
                                      int32_t device, kvr_decoder **out, kvr_error *err);
KVR_API void kvr_decoder_destroy(kvr_decoder *d); /* NULL is a no-op */
KVR_API int64_t kvr_decoder_n_past(const kvr_decoder *d);
/* Positions the cache holds in all (n_past can grow to it). */
KVR_API int64_t kvr_decoder_capacity(const kvr_decoder *d);
/* Feed token at position n_past (n_past grows by one) and compute the next token's logits: top
 * (NULL = not wanted) gets their argmax on the backend, logits (NULL = not wanted) the V logits
 * on the host. Errors: KVR_ERR_INVALID_ARG (the cache is full, a token outside the vocabulary),
 * the backend's. */
KVR_API kvr_status kvr_decoder_step(kvr_decoder *d, int32_t token, int32_t *top, float *logits,
                                    kvr_error *err);

typedef enum kvr_stop_reason {
    KVR_STOP_NONE,   /* not generated */
    KVR_STOP_EOS,    /* a stop token was drawn (it is the last of the ids; no text) */
    KVR_STOP_MAX,    /* n_predict tokens */
    KVR_STOP_CALLER, /* the callback returned false */
} kvr_stop_reason;
/* "none", "eos", "max", "caller" */
KVR_API const char *kvr_stop_reason_name(kvr_stop_reason r);

typedef struct kvr_generate_params {
    int32_t n_predict;            /* tokens to generate (>= 1), the first from the prefill */
    kvr_sampler_params sampling;  /* default greedy */
    const int32_t *stop_ids;      /* end generation when drawn (e.g. kvr_tokenizer_eog) */
    int32_t n_stop;
    const kvr_tokenizer *tok;     /* the text of each token; NULL: ids only */
    /* optional, called after each token: id and the text it completes (UTF-8 characters
     * whole; the bytes of an unfinished one wait for the next token). A stop token brings no
     * text. Once more at the end with id -1 and the bytes still held, if any. Return false to
     * stop (KVR_STOP_CALLER). */
    bool (*on_token)(void *user, int32_t id, const char *text, size_t len);
    void *user;
    /* optional (NULL: not kept): n_predict x V host floats receiving, row i, the logits token i
     * was drawn from (row 0: the prefill's); rows past n_ids are left alone */
    float *logits_out;
} kvr_generate_params;
/* n_predict 0 (set it), greedy, no stop ids, no tokenizer, no callback. */
KVR_API kvr_generate_params kvr_generate_params_default(void);

typedef struct kvr_generate_result {
    int32_t *ids;         /* the generated tokens, stop token included (owned) */
    int32_t n_ids;
    char *text;           /* their text without the stop token, NUL-terminated (owned; NULL
                             without a tokenizer) */
    size_t text_len;
    double *step_ms;      /* each decode step (n_ids - 1 of them): step and draw (owned) */
    int32_t n_steps;
    double decode_ms;     /* the sum of step_ms */
    double tpot_ms;       /* time per output token: the mean of step_ms (0 without steps) */
    double tpot_p50_ms, tpot_p90_ms; /* their percentiles (linear interpolation) */
    kvr_stop_reason stop;
} kvr_generate_result;

/* Generate from d, whose last fed position's logits (V host floats: the prefill's) are given.
 * The cache must have room for the n_predict - 1 tokens fed back. *out is filled as far as it
 * got either way (free it with kvr_generate_result_free).
 * Errors: KVR_ERR_INVALID_ARG (n_predict < 1, bad sampling, no room), the decoder's. */
KVR_API kvr_status kvr_generate(kvr_decoder *d, const float *logits,
                                const kvr_generate_params *p, kvr_generate_result *out,
                                kvr_error *err);
KVR_API void kvr_generate_result_free(kvr_generate_result *r); /* NULL-safe; zeroes it */

/* The text of n ids without a last stop token (what kvr_generate's text holds): for a rank
 * that received the ids from another. *text is malloc'd and NUL-terminated. */
KVR_API kvr_status kvr_generate_text(const kvr_tokenizer *tok, const int32_t *ids, int32_t n,
                                     kvr_stop_reason stop, char **text, size_t *len,
                                     kvr_error *err);
/* Time-per-output-token figures of n step times into r (decode_ms, tpot_ms, p50, p90). */
KVR_API void kvr_generate_stats(const double *step_ms, int32_t n, kvr_generate_result *r);

/* The length of the longest prefix of s[0, n) that does not end inside a UTF-8 character:
 * n, less the lead byte and continuation bytes of a last character still missing bytes. Bytes
 * that are not valid UTF-8 are never held. */
KVR_API size_t kvr_utf8_complete_len(const char *s, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* KVR_DECODE_H */
