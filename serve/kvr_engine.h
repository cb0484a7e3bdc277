/* kvr_engine.h -- the serving engine: continuous batching of requests on a real model, in
 * iterations planned by the serving scheduler (kvr_serving.h: the same policy code the
 * simulator runs, vllm and chunked) and executed as batched iterations over a paged KV pool
 * (kvr_batch.h). docs/serving.md ("The engine").
 *
 * Each kvr_engine_step plans an iteration with kvr_sched_next, maps the scheduler's per-request
 * block counts to real block ids (a free list: blocks taken on admission and decode growth, all
 * of a request's blocks returned when it finishes or is preempted -- after a preemption by
 * recompute the request re-prefills its prompt and the tokens it generated, as the scheduler's
 * items say), runs the items as one kvr_batch_run, draws a token for every item that samples
 * (one kvr_sampler per request), stops a request at a stop id or when its callback says so, and
 * reports back with kvr_sched_complete. Each request gets a kvr_serving_record (arrival,
 * admission, first token, finish, tokens, most blocks held, preemptions) on the engine's clock.
 *
 * LayerKV (policy layerkv): a token block is one layer block per layer, device pool ids for the
 * request's resident layers (kvr_layerkv_resident of item.resident, fixed at admission) and
 * host-tier ids for the others; the engine gives the pool a host tier of sched.host_blocks x
 * n_layers layer blocks. An item with swap_in first copies the request's offloaded layers into
 * fresh device blocks (kvr_kv_pool_copy); under reload stream its decode steps read them through
 * staging (kvr_batch.h). The scheduler gets the engine's clock (kvr_sched_next_at /
 * _complete_at: it measures each iteration to calibrate) and, when costs are given,
 * kvr_serving_predict_prefill as its predictor.
 *
 * The clock: KVR_ENGINE_CLOCK_REAL reads the wall clock (seconds since kvr_engine_create);
 * KVR_ENGINE_CLOCK_VIRTUAL starts at 0 and advances by each iteration's measured wall time, and
 * by kvr_engine_advance_to while idle (a replay without sleeping: arrivals as soon as their time
 * has passed on a clock that follows the real iterations).
 *
 * Usage:   kvr_engine_params ep = kvr_engine_params_default();
 *          ep.sched.pool_blocks = kvr_kv_pool_blocks(pool);
 *          kvr_engine *eng;  kvr_engine_create(w, pool, &ep, &eng, &err);
 *          kvr_engine_request rq = kvr_engine_request_default();
 *          rq.prompt = ids; rq.n_prompt = n; rq.max_tokens = 64;
 *          int32_t id;  kvr_engine_submit(eng, &rq, kvr_engine_now(eng), &id, &err);
 *          while (kvr_engine_n_unfinished(eng) > 0) kvr_engine_step(eng, NULL, &err);
 *          const int32_t *out = kvr_engine_output(eng, id, &n_out);
 *          kvr_engine_destroy(eng);
 * Ownership: an engine borrows its weights and pool (one engine per pool at a time); it copies
 *            the request's prompt and stop ids. Threads: an engine belongs to one thread. */
#ifndef KVR_ENGINE_H
#define KVR_ENGINE_H
#include "kvr_batch.h"
#include "kvr_sample.h"
#include "kvr_serving.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef enum kvr_engine_clock {
    KVR_ENGINE_CLOCK_REAL,    /* wall seconds since kvr_engine_create */
    KVR_ENGINE_CLOCK_VIRTUAL, /* the iterations' wall time, plus kvr_engine_advance_to */
} kvr_engine_clock;

typedef struct kvr_engine_params {
    kvr_sched_params sched; /* pool_blocks 0: the pool's; block_tokens must be the pool's;
                             * n_layers 0: the model's; host_blocks > 0 (layerkv): the engine
                             * gives the pool a host tier of host_blocks x n_layers layer blocks
                             * (kvr_kv_pool_add_host; or uses the one it has if large enough) */
    int32_t n_threads;      /* threads of the ops (1) */
    kvr_engine_clock clock;
    /* layerkv's SLO admission: predicted prefill times from these costs (borrowed; they must
     * outlive the engine), through kvr_serving_predict_prefill -- the simulator's pricing --
     * times the scheduler's online correction. NULL: no predictor (the scheduler predicts 0). */
    const kvr_search_costs *costs;
    double host_gbps; /* the predictor's host copy rate, GB/s (0: the costs' host_copy_gbps) */
} kvr_engine_params;
/* kvr_sched_params_default(), 1 thread, the real clock, no costs. */
KVR_API kvr_engine_params kvr_engine_params_default(void);

typedef struct kvr_engine_request {
    const int32_t *prompt;       /* n_prompt token ids (copied) */
    int64_t n_prompt;
    int64_t max_tokens;          /* tokens to generate at most (>= 1) */
    kvr_sampler_params sampling; /* default greedy */
    const int32_t *stop_ids;     /* a drawn stop id ends the request (it is its last token) */
    int32_t n_stop;
    /* optional, after each token the request draws (streaming): its engine id and the token;
     * return false to end the request there */
    bool (*on_token)(void *user, int32_t req, int32_t token);
    void *user;
} kvr_engine_request;
KVR_API kvr_engine_request kvr_engine_request_default(void); /* greedy, the rest 0 */

typedef struct kvr_engine kvr_engine;

/* Errors: KVR_ERR_INVALID_ARG (the scheduler's parameters, block_tokens or pool_blocks other
 * than the pool's), NOMEM, the batch runner's. */
KVR_API kvr_status kvr_engine_create(const kvr_weights *w, kvr_kv_pool *pool,
                                     const kvr_engine_params *p, kvr_engine **out,
                                     kvr_error *err);
KVR_API void kvr_engine_destroy(kvr_engine *e); /* NULL is a no-op */

/* Queue a request that arrived at arrival_s on the engine's clock; *id: 0, 1, 2, ... Errors:
 * KVR_ERR_INVALID_ARG for bad ids, sampling or counts, or a request the scheduler refuses (it
 * can never run: the message says why; nothing is queued and no id is taken), NOMEM. */
KVR_API kvr_status kvr_engine_submit(kvr_engine *e, const kvr_engine_request *rq,
                                     double arrival_s, int32_t *id, kvr_error *err);

/* Plan and run one iteration. *ran (NULL: not wanted): whether anything ran (false: no request
 * can run now). Errors: the scheduler's and the batch runner's (the engine is then unusable). */
KVR_API kvr_status kvr_engine_step(kvr_engine *e, bool *ran, kvr_error *err);

KVR_API double kvr_engine_now(const kvr_engine *e); /* seconds on the engine's clock */
/* The virtual clock jumps to t if later (the real clock: no effect). */
KVR_API void kvr_engine_advance_to(kvr_engine *e, double t);
KVR_API int32_t kvr_engine_n_requests(const kvr_engine *e);
KVR_API int32_t kvr_engine_n_unfinished(const kvr_engine *e);
/* Request id's record (NULL for an unknown id): times on the engine's clock, -1 until they
 * happen. */
KVR_API const kvr_serving_record *kvr_engine_record(const kvr_engine *e, int32_t id);
/* The tokens request id generated so far (*n of them; NULL and 0 once released). */
KVR_API const int32_t *kvr_engine_output(const kvr_engine *e, int32_t id, int64_t *n);
KVR_API bool kvr_engine_finished(const kvr_engine *e, int32_t id);
/* Free a finished (or cancelled) request's tokens, block table and sampler: a long-lived server
 * keeps only its record (kvr_engine_record, a few hundred bytes) after it has taken the output.
 * Its output is gone (kvr_engine_output: NULL, 0); an unfinished request or an unknown id: no
 * effect. */
KVR_API void kvr_engine_release(kvr_engine *e, int32_t id);
/* End request id between steps (its client went away): it leaves the queue or frees its KV
 * blocks at once and counts as finished (its record keeps finish_s -1; kvr_engine_cancelled
 * says so). A finished request: no effect. Errors: KVR_ERR_INVALID_ARG (unknown id). */
KVR_API kvr_status kvr_engine_cancel(kvr_engine *e, int32_t id, kvr_error *err);
KVR_API bool kvr_engine_cancelled(const kvr_engine *e, int32_t id);
/* The scheduler's queue: requests waiting (new or preempted), running; pool blocks held. */
KVR_API int32_t kvr_engine_n_waiting(const kvr_engine *e);
KVR_API int32_t kvr_engine_n_running(const kvr_engine *e);
KVR_API int64_t kvr_engine_blocks_used(const kvr_engine *e);

typedef struct kvr_engine_stats {
    int64_t iterations;
    double busy_s;       /* time with an iteration running */
    int64_t peak_blocks; /* most pool blocks held after planning an iteration */
    double mean_blocks;  /* blocks held, averaged over busy time */
    int64_t rows;        /* rows run in all (prefill and decode tokens) */
    /* layerkv */
    int64_t peak_host_blocks;      /* most host-tier layer blocks held after planning */
    int64_t swap_ins;              /* requests whose offloaded layers were copied back */
    int64_t copies_out, copies_in; /* layer blocks the pool's copier moved (kvr_kv_pool_stats) */
    int64_t stage_waits;           /* times an iteration waited for a staging block's copy */
    double correction;             /* the scheduler's prefill correction factor */
} kvr_engine_stats;
KVR_API kvr_engine_stats kvr_engine_get_stats(const kvr_engine *e);
/* The scheduler's parameters with defaults resolved. */
KVR_API const kvr_sched_params *kvr_engine_sched_params(const kvr_engine *e);

#ifdef __cplusplus
}
#endif
#endif /* KVR_ENGINE_H */
