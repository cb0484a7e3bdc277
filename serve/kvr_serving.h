/* kvr_serving.h -- serving: the scheduler that the engine and the serving simulator share, the
 * discrete-event serving simulator, and the per-request records and summary both produce
 * (docs/serving.md; DESIGN.md section 9).
 *
 * The scheduler is the policy, nothing else: it owns the request queue, the paged KV pool's
 * accounting (blocks of block_tokens tokens) and the choice of what runs in each iteration;
 * the caller executes the iteration (the engine on the model, the simulator on a clock and the
 * fitted costs) and reports back which requests finished. One vocabulary for both: a request
 * knows len tokens (prompt + generated so far) of which computed are in the KV cache; its next
 * work is len - computed tokens: more than one is a prefill (the prompt; after a preemption by
 * recompute, the prompt and what it had generated), exactly one a decode step. An item that
 * brings computed up to len samples a token (len grows by one) unless the request is done.
 *
 * Policies (kvr_serving_policy):
 *   vllm     vLLM's V0 scheduler with chunked prefill off. Waiting requests are admitted in FCFS
 *            order while their whole prompt's blocks fit with the watermark (a fraction of the
 *            pool) left free, within max_seqs running and max_batched_tokens prompt tokens per
 *            iteration; the first that does not fit stops admission (no overtaking). An
 *            iteration that admits prefills runs only those; otherwise every running request
 *            decodes one token. A decode that needs a new block when none is free preempts the
 *            most recently admitted running request (recompute: its blocks are freed and it goes
 *            back to the front of the queue), itself last.
 *   chunked  vLLM's V0 chunked-prefill scheduler: each iteration has a budget of
 *            max_batched_tokens tokens; running requests come first (decodes, one token each,
 *            and the next chunk of unfinished prefills), then waiting requests are admitted in
 *            FCFS order (whole-prompt blocks above the watermark, as vllm) with a chunk of what
 *            is left of the budget. Decodes and prefill chunks share an iteration.
 *   layerkv  LayerKV (arXiv 2410.00428; docs/serving.md "LayerKV"): vllm's iterations (one
 *            that admits prefills runs only those), with the pool accounted in LAYER blocks (a
 *            block of block_tokens tokens of one layer's K and V): a request keeps `resident`
 *            of its n_layers layers in the device pool (spread evenly: kvr_layerkv_resident)
 *            and the others in a host tier of host_blocks x n_layers layer blocks. A prefill is
 *            admitted with the fewest resident layers whose offload copy the predictor says
 *            its prefill hides (more when the pool has room, fewer never), so a long prompt
 *            waits for a fraction of the blocks vllm demands; admission walks the queue in
 *            FCFS order and stops where the predicted prefill time (the predictor times an
 *            online correction factor) exceeds the decoding requests' tightest TPOT slack
 *            (SLO-aware admission; no bound while nothing decodes); the head of the queue,
 *            after waiting layerkv.max_wait_s, is admitted past it when all its layers fit, as
 *            vllm would admit it (anti-starvation). Decoding
 *            requests reload their offloaded layers by layerkv.reload: swap (once, when device
 *            blocks free up: item.swap_in) or stream (every step copies them in).
 * Accounting: kvr_sched_req.blocks counts token blocks (ceil(tokens / block_tokens), the
 * tokens it holds room for); the device pool holds pool_blocks x n_layers layer blocks, of which
 * a request takes blocks x resident and the host tier blocks x (n_layers - resident).
 * vllm/chunked keep every layer resident (resident == n_layers): the same decisions as counting
 * token blocks.
 * A request that can never finish (prompt + output above max_model_len; its cache -- prompt and
 * output but the last token, all of it after a preemption by recompute -- needing more blocks
 * than the pool minus the watermark; under vllm, more than max_batched_tokens to prefill in one
 * iteration) is refused by kvr_sched_add with a message; nothing is queued. Under layerkv the
 * cache must fit the pool (above the watermark) with the fewest resident layers the host tier
 * allows (at least one; reload swap: all of them, as it decodes fully resident).
 *
 * Time: the _at calls (kvr_sched_add_at, kvr_sched_next_at, kvr_sched_complete_at) give the
 * caller's clock in seconds (the engine's clock, the simulator's virtual one); the plain calls
 * use the last time given (0 at first). layerkv's SLO admission reads the requests' times and
 * measures each iteration (next_at's now to complete_at's now) to calibrate its prediction;
 * vllm and chunked ignore time.
 *
 * Usage (what the engine and the simulator both do):
 *          kvr_sched_params sp = kvr_sched_params_default();  sp.pool_blocks = 4096;
 *          kvr_sched *s;  kvr_sched_create(&sp, &s, &err);
 *          kvr_sched_add(s, prompt_tokens, max_output_tokens, &id, &err);   // on each arrival
 *          kvr_sched_batch b;
 *          while (kvr_sched_next(s, &b, &err) == KVR_OK && b.n_items > 0) {
 *              ... run b.items (the engine) or advance the clock (the simulator) ...
 *              kvr_sched_complete(s, &b, stop, &err);   // stop[i]: item i's request hit EOS
 *          }
 * Ownership: a kvr_sched owns its requests; a batch's items stay valid until the next
 *            kvr_sched_next or kvr_sched_destroy.
 * Threads:  a kvr_sched belongs to one thread at a time. */
#ifndef KVR_SERVING_H
#define KVR_SERVING_H

#include "kvr_common.h"
#include "kvr_search.h"
#include "kvr_trace.h"

#ifdef __cplusplus
extern "C" {
#endif

// ----------------------------------------------------------------------------
// policies and parameters

typedef enum kvr_serving_policy {
    KVR_POLICY_VLLM,    /* vLLM V0, chunked prefill off */
    KVR_POLICY_CHUNKED, /* vLLM V0 chunked prefill */
    KVR_POLICY_LAYERKV, /* LayerKV: layer-wise blocks, host offload, SLO-aware admission */
    KVR_POLICY_COUNT
} kvr_serving_policy;
/* "vllm", "chunked", "layerkv"; "?" */
KVR_API const char *kvr_serving_policy_name(kvr_serving_policy p);
/* KVR_ERR_INVALID_ARG "unknown policy 'S' (vllm, chunked, layerkv)". */
KVR_API kvr_status kvr_serving_policy_parse(const char *s, kvr_serving_policy *out,
                                            kvr_error *err);

/* How a decoding layerkv request gets its offloaded layers' K/V. */
typedef enum kvr_reload_policy {
    KVR_RELOAD_SWAP,   /* copy them back into the device pool once, when device blocks free up
                        * (item.swap_in); until then the request does not decode */
    KVR_RELOAD_STREAM, /* keep them on the host; each decode step copies them in, layer l+1's
                        * copy overlapped with layer l's compute */
    KVR_RELOAD_COUNT
} kvr_reload_policy;
KVR_API const char *kvr_reload_policy_name(kvr_reload_policy r); /* "swap", "stream"; "?" */
/* KVR_ERR_INVALID_ARG "unknown reload policy 'S' (swap, stream)". */
KVR_API kvr_status kvr_reload_policy_parse(const char *s, kvr_reload_policy *out, kvr_error *err);

/* layerkv's knobs (docs/serving.md "LayerKV" states every rule). */
typedef struct kvr_layerkv_params {
    double slo_ttft_s;      /* the TTFT target (> 0; 0 by default: the caller must give it) */
    double slo_tpot_s;      /* the TPOT target (> 0; idem): a decoding request's slack is
                             * slo_tpot_s x (its tokens so far - 1 + predicted remaining)
                             * - its time since its first token - predicted remaining x the
                             * measured decode iteration time (EWMA) */
    kvr_reload_policy reload; /* swap (default) or stream */
    double calib_weight;    /* weight of the newest measured / predicted prefill ratio in the
                             * correction factor's EWMA, (0, 1] (0.25); the factor starts at 1 */
    double max_wait_s;      /* anti-starvation: the head of the queue is admitted past the
                             * slack once it waited this long, if all its layers fit (as vllm
                             * would admit it) (0: slo_ttft_s / 2) */
    int32_t min_history;    /* finished requests the output-length estimator needs before it
                             * is used (8); before: the fallback, max_output_tokens - generated */
} kvr_layerkv_params;

typedef struct kvr_sched_params {
    kvr_serving_policy policy;
    int32_t block_tokens;       /* tokens per KV block (16) */
    int64_t pool_blocks;        /* the pool's capacity in blocks (>= 1) */
    double watermark;           /* fraction of the pool admission keeps free, [0, 1) (0.01) */
    int32_t max_seqs;           /* most requests running at once (256) */
    int64_t max_batched_tokens; /* tokens per iteration: vllm, the prompt tokens admitted in one
                                 * iteration (0: max(max_model_len, 2048), so any prompt fits);
                                 * chunked, the iteration's budget (0: 512) */
    int64_t max_model_len;      /* most tokens (prompt + output) per request (0: the pool's) */
    int32_t n_layers;           /* the model's layers (0: 1); the pool holds pool_blocks x
                                 * n_layers layer blocks */
    int64_t host_blocks;        /* layerkv: the host tier, in pool_blocks' unit (host_blocks x
                                 * n_layers layer blocks; 0: none -- every layer resident) */
    kvr_layerkv_params layerkv; /* layerkv only */
} kvr_sched_params;

/* block_tokens 16, watermark 0.01, max_seqs 256, layerkv's defaults (kvr_layerkv_params), the
 * rest 0 (pool_blocks must be set; layerkv needs its SLO targets). */
KVR_API kvr_sched_params kvr_sched_params_default(void);

// ----------------------------------------------------------------------------
// the scheduler

typedef enum kvr_req_state {
    KVR_REQ_WAITING,  /* queued: new, or preempted */
    KVR_REQ_RUNNING,  /* holds blocks; prefilling or decoding */
    KVR_REQ_FINISHED, /* produced its tokens or was stopped; blocks freed */
    KVR_REQ_STATE_COUNT
} kvr_req_state;

typedef struct kvr_sched_req {
    kvr_req_state state;
    int64_t prompt_tokens, max_output_tokens;
    int64_t generated;  /* tokens sampled so far */
    int64_t computed;   /* tokens in the KV cache */
    int64_t blocks;     /* blocks held now */
    int64_t max_blocks; /* most blocks held at once */
    int32_t preemptions;
    int64_t first_iter; /* iteration it was first scheduled in (-1: not yet) */
    int32_t resident;   /* layers in the device pool (n_layers but under layerkv); the other
                         * layers' blocks are in the host tier */
    int32_t swaps;      /* layerkv swap-ins */
    double arrival_s, first_token_s; /* on the caller's clock (-1: no token yet) */
} kvr_sched_req;

typedef struct kvr_sched_item {
    int32_t req;      /* request id (kvr_sched_add's) */
    int64_t n_past;   /* tokens of the request in the KV cache before this item */
    int64_t n_tokens; /* tokens computed by this item: a prefill (chunk) or 1 for a decode */
    bool prefill;     /* a prompt (chunk) or a recompute: more than one token, not sampling, or
                       * before the first token; else a decode step */
    bool samples;     /* the item ends with a sampled token (computed reaches len) */
    int32_t resident; /* the request's layers in the device pool while the item runs (the
                       * others: host tier; kvr_layerkv_resident says which) */
    bool swap_in;     /* reload swap: before the item, copy the request's offloaded layers back
                       * into the device pool (resident is then n_layers) */
} kvr_sched_item;

typedef struct kvr_sched_batch {
    int64_t iter;            /* iteration number, from 0 */
    int32_t n_items;         /* 0: nothing can run now (no request, or all waiting for blocks) */
    const kvr_sched_item *items;
    int64_t n_tokens;        /* sum of the items' n_tokens */
    int32_t n_prefill, n_decode;
    int32_t n_preempted;     /* requests preempted while planning this iteration */
    int64_t blocks_used;     /* pool blocks held after planning (layer blocks / n_layers, rounded
                              * up) */
    int64_t layer_blocks_used, host_layer_blocks_used; /* device and host layer blocks held */
    int32_t n_swap_in;       /* items with swap_in */
    double predicted_s;      /* layerkv: the prefill items' predicted time, corrected (0: none) */
} kvr_sched_batch;

typedef struct kvr_sched kvr_sched;

/* Errors: KVR_ERR_INVALID_ARG naming the bad field (block_tokens >= 1, pool_blocks >= 1,
 * watermark in [0, 1), max_seqs >= 1, max_batched_tokens and max_model_len >= 0, n_layers and
 * host_blocks >= 0; layerkv: layerkv.slo_ttft_s and layerkv.slo_tpot_s > 0, calib_weight in
 * (0, 1], max_wait_s and min_history >= 0, a known reload), NOMEM. */
KVR_API kvr_status kvr_sched_create(const kvr_sched_params *p, kvr_sched **out, kvr_error *err);
KVR_API void kvr_sched_destroy(kvr_sched *s); /* NULL is a no-op */
KVR_API const kvr_sched_params *kvr_sched_get_params(const kvr_sched *s); /* defaults resolved */

/* Queue a request (it arrives now, in the caller's time). *id: its index, 0, 1, 2, ...
 * Errors: KVR_ERR_INVALID_ARG for token counts < 1, or a request that can never run: prompt +
 * output above max_model_len, or a prompt needing more blocks than the pool minus the
 * watermark (the message gives both numbers); the request is not queued. NOMEM. */
KVR_API kvr_status kvr_sched_add(kvr_sched *s, int64_t prompt_tokens, int64_t max_output_tokens,
                                 int32_t *id, kvr_error *err);

/* kvr_sched_add with the arrival time on the caller's clock (kvr_sched_add: the last time given). */
KVR_API kvr_status kvr_sched_add_at(kvr_sched *s, int64_t prompt_tokens, int64_t max_output_tokens,
                                    double arrival_s, int32_t *id, kvr_error *err);

/* Plan the next iteration by the policy: admissions, block allocation, preemptions (and under
 * layerkv resident layers, swap-ins, the SLO budget). kvr_sched_next_at: the iteration starts
 * at now_s. */
KVR_API kvr_status kvr_sched_next(kvr_sched *s, kvr_sched_batch *out, kvr_error *err);
KVR_API kvr_status kvr_sched_next_at(kvr_sched *s, double now_s, kvr_sched_batch *out,
                                     kvr_error *err);

/* layerkv's prefill-time predictor: the seconds a prefill item of n_tokens after n_past takes
 * with `resident` of the layers resident (the others offloaded while it runs): compute plus the
 * part of the offload copy it does not hide. kvr_serving_predict_prefill (below) is the one the
 * simulator prices with. Without a predictor layerkv predicts 0 (every layer offloadable, no
 * SLO budget) -- set one. */
typedef double (*kvr_sched_predictor)(void *user, int64_t n_tokens, int64_t n_past,
                                      int32_t resident);
KVR_API void kvr_sched_set_predictor(kvr_sched *s, kvr_sched_predictor fn, void *user);
/* layerkv's online correction factor (measured / predicted prefill time, EWMA; 1 at first). */
KVR_API double kvr_sched_correction(const kvr_sched *s);

/* The planned iteration ran: every item's tokens are now in the cache, sampling items produced
 * a token. A request finishes when it has max_output_tokens tokens, or when stop (NULL: none)
 * is true at its item (the engine's EOS); a finished request's blocks are freed.
 * Errors: KVR_ERR_INVALID_ARG for a batch that is not the last one planned. */
KVR_API kvr_status kvr_sched_complete(kvr_sched *s, const kvr_sched_batch *b, const bool *stop,
                                      kvr_error *err);
/* The same, the iteration ended at now_s: layerkv measures it (now_s - next_at's now) and
 * calibrates (a prefill iteration: the correction factor; a decode one: the decode time). */
KVR_API kvr_status kvr_sched_complete_at(kvr_sched *s, const kvr_sched_batch *b,
                                         const bool *stop, double now_s, kvr_error *err);

/* End request id now (a client went away): a waiting request leaves the queue, a running one
 * frees its blocks; it is FINISHED with what it generated. A finished request: no effect.
 * Errors: KVR_ERR_INVALID_ARG (an unknown id; an iteration planned and not completed). */
KVR_API kvr_status kvr_sched_cancel(kvr_sched *s, int32_t id, kvr_error *err);

KVR_API int32_t kvr_sched_n_requests(const kvr_sched *s);
KVR_API const kvr_sched_req *kvr_sched_request(const kvr_sched *s, int32_t id); /* NULL past */
KVR_API int32_t kvr_sched_n_waiting(const kvr_sched *s);
KVR_API int32_t kvr_sched_n_running(const kvr_sched *s);
KVR_API int64_t kvr_sched_blocks_used(const kvr_sched *s);
/* Blocks a request with n tokens in the cache holds: ceil(n / block_tokens). */
KVR_API int64_t kvr_sched_blocks_for(const kvr_sched *s, int64_t tokens);
/* Layer blocks held in the device pool and in the host tier. */
KVR_API int64_t kvr_sched_layer_blocks_used(const kvr_sched *s);
KVR_API int64_t kvr_sched_host_layer_blocks_used(const kvr_sched *s);

/* Whether layer `layer` (0-based) of n_layers is in the device pool when n_resident are:
 * floor((layer + 1) r / L) > floor(layer r / L) -- spread evenly (runs of offloaded layers at
 * most ceil(L / r) - 1 long), the last layer resident whenever r >= 1 (r = L/2: the odd
 * layers), so every run of offloaded layers is followed by resident ones whose compute hides
 * its copies. Out-of-range arguments: false. */
KVR_API bool kvr_layerkv_resident(int32_t n_layers, int32_t n_resident, int32_t layer);

// ----------------------------------------------------------------------------
// per-request records and their summary (the engine and the simulator both produce them)

typedef struct kvr_serving_record {
    double arrival_s;       /* seconds from the trace's start */
    double admitted_s;      /* start of the first iteration that scheduled it (-1: never) */
    double first_token_s;   /* end of the iteration that sampled its first token (-1: none) */
    double finish_s;        /* end of the iteration that sampled its last token (-1: none) */
    int64_t prompt_tokens;
    int64_t output_tokens;  /* produced */
    int64_t max_blocks;     /* most KV blocks held at once */
    int32_t preemptions;
    bool refused;           /* kvr_sched_add refused it: it can never run (no times) */
} kvr_serving_record;

/* Over the finished requests: TTFT = first_token - arrival, queue time = admitted - arrival,
 * TPOT = (finish - first_token) / (output - 1) over requests with output > 1; percentiles by
 * linear interpolation between order statistics (GSL). SLO attainment: the fraction of all
 * requests (refused ones count as misses) with TTFT <= slo_ttft_s and TPOT <= slo_tpot_s (a
 * target <= 0 is not checked). Throughput: output tokens per second between the first arrival
 * and the last finish. */
typedef struct kvr_serving_summary {
    int64_t n, n_finished, n_refused, n_preemptions;
    double ttft_s[3], tpot_s[3], queue_s[3]; /* p50, p90, p99 */
    double ttft_mean_s, tpot_mean_s, queue_mean_s;
    double slo_ttft_s, slo_tpot_s, slo_attainment;
    double duration_s, output_tok_per_s, req_per_s;
} kvr_serving_summary;

/* Errors: KVR_ERR_INVALID_ARG (n < 0), NOMEM. */
KVR_API kvr_status kvr_serving_summarize(const kvr_serving_record *r, int64_t n,
                                         double slo_ttft_s, double slo_tpot_s,
                                         kvr_serving_summary *out, kvr_error *err);

// ----------------------------------------------------------------------------
// the serving simulator: the trace through the same scheduler, each iteration's time from the
// fitted costs

/* One decode iteration of B requests with T tokens of context in all (each decoding request's
 * cache plus its new token): k_us + per_seq_us * B + per_ctx_token_us * T microseconds, the
 * whole model (layers, head, sampling) -- the form fitted from profiled batched decode steps
 * (kvr_search_decode_step). The simulator prices decode items, in this order of precedence:
 * kvr_serving_sim_params.decode when not all zero (kvr-serve --decode-costs); else the cost
 * model's decode step when it has one (kvr_search_costs_decode_step: kvr-fit's fit of a
 * profile's decode samples, or a cost file's "decode_step"); else derived from the prefill ops:
 * per layer pre(B) + post(B) and one batched attention call, attn(1, 0) plus each request's
 * increment attn(1, its cache) - attn(1, 0); the head once (one GEMM over the sampled rows)
 * (docs/serving.md). */
typedef struct kvr_serving_decode_costs {
    double k_us, per_seq_us, per_ctx_token_us;
} kvr_serving_decode_costs;

/* The KV pool's occupancy over a replay as a step function: blocks[i] pool blocks are held from
 * t_s[i] until t_s[i + 1] (the last point: until the replay's end); a point is added only where
 * the value changes. Zero-initialise; the producer grows the arrays (malloc'd). */
typedef struct kvr_serving_occupancy {
    double *t_s;
    int64_t *blocks;
    int64_t n, cap;
} kvr_serving_occupancy;
KVR_API void kvr_serving_occupancy_free(kvr_serving_occupancy *o); /* frees and zeroes; NULL ok */
/* The step function over [0, end_s] in n_bins equal intervals: t0_s[i] the start of bin i, mean[i]
 * the time-weighted mean of blocks held, max[i] the most held. Arrays of n_bins, the caller's.
 * Errors: KVR_ERR_INVALID_ARG (n_bins < 1, end_s not > 0). */
KVR_API kvr_status kvr_serving_occupancy_bins(const kvr_serving_occupancy *o, double end_s,
                                              int64_t n_bins, double *t0_s, double *mean,
                                              int64_t *max, kvr_error *err);

typedef struct kvr_serving_sim_params {
    kvr_sched_params sched;
    const kvr_search_costs *costs;   /* the prefill ops (search/), borrowed */
    kvr_serving_decode_costs decode; /* all zero: the costs' decode step, else the prefill ops */
    kvr_serving_occupancy *occupancy; /* optional output (NULL: none): emptied, then filled with
                                       * the blocks held in each iteration (idle time: 0) */
    bool decode_from_ops; /* price decode from the prefill ops even when costs has a decode step */
    double host_gbps;     /* layerkv: the host tier's copy bandwidth in GB/s (1e9 bytes/s) both
                           * ways; 0: the cost model's (kvr_serving_host_gbps) */
} kvr_serving_sim_params;

typedef struct kvr_serving_sim_stats {
    int64_t iterations;
    double busy_s;           /* time with an iteration running */
    double end_s;            /* the last iteration's end */
    int64_t peak_blocks;     /* most pool blocks in use after planning an iteration */
    double mean_blocks;      /* pool blocks in use, averaged over busy time */
    bool decode_from_ops;    /* decode costs derived from the prefill ops */
    bool decode_from_costs;  /* decode costs: the cost model's decode step */
    kvr_serving_decode_costs decode; /* the coefficients used (all zero: from the ops) */
    /* layerkv */
    int64_t peak_host_blocks; /* most host-tier layer blocks in use after planning */
    int64_t swap_ins;         /* items with swap_in */
    double copy_exposed_s;    /* iteration time the host copies added beyond the compute */
    double host_gbps;         /* the bandwidth used (0: not layerkv) */
    double correction;        /* the scheduler's correction factor at the end */
} kvr_serving_sim_stats;

/* layerkv's prefill predictor and pricing, shared by the simulator and the engine's SLO
 * admission (set with kvr_sched_set_predictor(s, kvr_serving_predict_prefill, &model)).
 * Prefill of n tokens after n_past: per layer c = attn(n, n_past) + pre(n) + post(n); the
 * layers run in order after the embedding; the offloaded layers' K/V (n x kv_bytes_per_token
 * each) go to the host one at a time, layer l's copy starting when both layer l's compute and
 * the previous copy are done; the item takes max(embed + L c + head, the last copy's end).
 * host_gbps <= 0: the copy is free. */
typedef struct kvr_serving_prefill_model {
    const kvr_search_costs *costs; /* borrowed */
    double host_gbps;
} kvr_serving_prefill_model;
KVR_API double kvr_serving_predict_prefill(void *model, int64_t n_tokens, int64_t n_past,
                                           int32_t resident);
/* The host copy bandwidth the simulator uses: override when > 0, else the cost model's; 0 when
 * neither gives one. */
KVR_API double kvr_serving_host_gbps(const kvr_search_costs *m, double override_gbps);

/* Replay the trace (arrival times as they are, no sleeping) through a kvr_sched with the
 * parameters, each iteration taking the costs' time: a prefill item of n tokens after n_past
 * costs per layer attn(n, n_past) plus its share of pre(Tp) + post(Tp) (Tp: the iteration's
 * prefill tokens, their GEMMs batched), embed once per prompt item; the head once per
 * iteration that samples; decode items as kvr_serving_decode_costs says (fitted costs include
 * the head); an iteration with both (chunked) runs its decode rows in the prefill's GEMMs:
 * pre/post over Tp + B rows, the decode attention (the step's per-token term, or the ops'
 * increments) and the head, without the step's fixed K. out has one
 * record per trace request, in trace order (refused requests marked). stats may be NULL.
 * Errors: KVR_ERR_INVALID_ARG (parameters, as kvr_sched_create), NOMEM. */
KVR_API kvr_status kvr_serving_simulate(const kvr_trace *t, const kvr_serving_sim_params *p,
                                        kvr_serving_record *out, kvr_serving_sim_stats *stats,
                                        kvr_error *err);

#ifdef __cplusplus
}
#endif
#endif
