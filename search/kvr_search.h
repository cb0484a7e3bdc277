/* kvr_search.h -- cost models, TTFT simulators (KVR chain, TSP, ring pass-KV, single), the KVR-S
 * partition optimiser and partition tables with their exports.
 *
 * The simulators and the optimiser see costs only through kvr_search_costs, an object built
 * either from a JSON cost file (kvr_search_costs_load_json) or from any other source through the
 * function table kvr_search_cost_ops (kvr_search_costs_create). Other sources plug in there:
 * interpolation of a profile run from the database (kvr_profile_costs_from_run in
 * profiler/kvr_profiler.h) and fitted coefficients (kvr_predict_costs_to_search in
 * predictor/kvr_kvrp.h); search itself never depends on where costs came from.
 *
 * Usage:
 *     kvr_search_costs *m; kvr_error err;
 *     if (kvr_search_costs_load_json("llama7b_a100.json", &m, &err) != KVR_OK) {
 *         fprintf(stderr, "%s\n", err.msg); return 2;
 *     }
 *     int64_t chunks[8]; kvr_search_stats st;
 *     kvr_search_params sp = kvr_search_params_default();     // granularity 16
 *     if (kvr_search_partition(m, 8, 16384, &sp, chunks, &st, &err) == KVR_OK)
 *         printf("KVR-S TTFT %.3f ms\n", st.ttft_us * 1e-3);
 *     double tsp_us; kvr_search_sim_tsp(m, 8, 16384, NULL, &tsp_us, &err);
 *     kvr_search_costs_destroy(m);
 *
 * Ownership: kvr_search_costs, kvr_search_timeline and kvr_search_table are opaque handles created
 *   and destroyed by the functions below. Strings and arrays passed in are borrowed for the call
 *   and copied when kept. Strings returned through `char **out` are malloc'd; free() them.
 *   Pointers returned by accessors stay valid until the owning handle is destroyed.
 * Threads: a kvr_search_costs is immutable after creation (the kvr_search_costs_set_* overrides
 *   excepted) and may be shared by any number of threads that simulate or search concurrently,
 *   provided the cost_ops callbacks of a custom source are themselves thread-safe. Timelines and
 *   tables belong to one thread at a time. Nothing here keeps global state.
 * Errors: every fallible function returns a kvr_status and fills the optional trailing kvr_error.
 *   Nothing here prints or exits; warnings (unknown JSON keys) go through kvr_log.
 * Units: times in microseconds (_us) unless the name says _ms; sizes in bytes and tokens;
 *   bandwidth in decimal GB/s (1 GB/s = 1000 bytes/us).
 */
#ifndef KVR_SEARCH_H
#define KVR_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvr_common.h"

#ifdef __cplusplus
extern "C" {
#endif

// ----------------------------------------------------------------------------
// cost model

/* One point-to-point link: a transfer of n bytes costs alpha_us + n / (gbps * 1000) us.
 * gbps == 0 means an ideal link without a bandwidth term (only alpha_us is paid). */
typedef struct kvr_search_link {
    int src, dst;    /* device indexes; ignored for the default link */
    double alpha_us; /* latency per message */
    double gbps;     /* decimal GB/s; 0 = infinite */
} kvr_search_link;

/* The per-layer coefficients of the JSON source (and of any fitted linear source).
 *   pre(c)     = pre_k_us  + pre_per_token_us  * c                  norm, QKV, RoPE
 *   attn(c, P) = attn_k_us + attn_per_token_us * c + attn_per_prefix_us * P
 *                          + attn_per_area_us  * (c*P + c*c/2)      c queries after prefix P
 *   post(c)    = post_k_us + post_per_token_us * c                  O-proj, residual, norm, MLP */
typedef struct kvr_search_coeffs {
    int n_layers;
    double kv_bytes_per_token; /* K and V of one token in one layer */
    double embed_us, head_us;  /* once per prompt: embedding lookup; final norm + LM head */
    double pre_k_us, pre_per_token_us;
    double attn_k_us, attn_per_token_us, attn_per_prefix_us, attn_per_area_us;
    double post_k_us, post_per_token_us;
} kvr_search_coeffs;

/* The interface a cost source implements (the hook for profile interpolation and fits).
 * Every callback must be pure (same answer for the same arguments), non-negative, and must not
 * fail; ctx is the source's private state. Callbacks marked optional may be NULL. */
typedef struct kvr_search_cost_ops {
    const char *kind;                                        /* "json", "profile", "fit", ... */
    double (*pre_us)(const void *ctx, int64_t c);            /* per layer */
    double (*attn_us)(const void *ctx, int64_t c, int64_t prefix); /* causal, per layer */
    double (*post_us)(const void *ctx, int64_t c);           /* per layer */
    /* optional: c queries against k fully visible keys, no causal part (ring pass-KV blocks).
     * NULL: attn_us(c, k) - attn_us(c, 0) (the prefix increment; drops per-call overhead). */
    double (*attn_block_us)(const void *ctx, int64_t c, int64_t k);
    void (*destroy)(void *ctx); /* optional: called by kvr_search_costs_destroy */
} kvr_search_cost_ops;

/* The scalar part of a custom source (layers, KV size, embed/head times). */
typedef struct kvr_search_cost_info {
    int n_layers;
    double kv_bytes_per_token, embed_us, head_us;
    const char *source; /* free text naming where costs came from; copied; may be NULL */
} kvr_search_cost_info;

typedef struct kvr_search_costs kvr_search_costs;

/* Load a JSON cost file (schema in docs/search.md). Errors: KVR_ERR_IO (unreadable file),
 * KVR_ERR_FORMAT (not JSON, missing/non-numeric/negative field, bad links); the message names
 * the file and the field. */
KVR_API kvr_status kvr_search_costs_load_json(const char *path, kvr_search_costs **out,
                                              kvr_error *err);
/* Same from a buffer (len bytes, need not be NUL-terminated); name is used in messages. */
KVR_API kvr_status kvr_search_costs_parse_json(const char *text, size_t len, const char *name,
                                               kvr_search_costs **out, kvr_error *err);
/* A linear model from coefficients and a default link (link may be NULL: an ideal link). */
KVR_API kvr_status kvr_search_costs_create_linear(const kvr_search_coeffs *co,
                                                  const kvr_search_link *link,
                                                  kvr_search_costs **out, kvr_error *err);
/* A model over a custom source. ops is copied; ctx is owned by the model from now on when
 * ops->destroy is set (also on failure), borrowed otherwise. */
KVR_API kvr_status kvr_search_costs_create(const kvr_search_cost_ops *ops, void *ctx,
                                           const kvr_search_cost_info *info,
                                           const kvr_search_link *link, kvr_search_costs **out,
                                           kvr_error *err);
KVR_API void kvr_search_costs_destroy(kvr_search_costs *m);
/* Name the model, device and dtype the costs describe (shown in exports, as a cost file's
 * "model", "device", "dtype"); NULL keeps a field. Copied. */
KVR_API kvr_status kvr_search_costs_set_names(kvr_search_costs *m, const char *model,
                                              const char *device, const char *dtype,
                                              kvr_error *err);

/* Replace the links: an optional default link (used for every pair not listed; NULL = none)
 * and n explicit directed links (copied). Without a default, the chain links i -> i+1 must all
 * be listed for i < n_devices - 1, where n_devices = 1 + the largest index. Duplicates,
 * self-links, negative values and gaps are KVR_ERR_INVALID_ARG. */
KVR_API kvr_status kvr_search_costs_set_links(kvr_search_costs *m, const kvr_search_link *dflt,
                                              const kvr_search_link *links, int n,
                                              kvr_error *err);
/* Replace the links from a JSON links file: either a bare array of {"src","dst","alpha_us",
 * "gbps"} objects or an object with "links" (that array) and/or "link" (the default). Errors
 * as for kvr_search_costs_load_json; on failure the model is unchanged. */
KVR_API kvr_status kvr_search_costs_load_links_json(kvr_search_costs *m, const char *path,
                                                    kvr_error *err);
/* Uniform override of every link (default and listed): a negative argument keeps that field. */
KVR_API kvr_status kvr_search_costs_override_links(kvr_search_costs *m, double alpha_us,
                                                   double gbps, kvr_error *err);
/* Link times from a custom source (fitted piecewise link curves, predictor/): once set, a
 * transfer of n bytes over a link src -> dst that the model has (listed or default) costs
 * fn(ctx, link, n) us instead of link->alpha_us + n / (link->gbps * 1000); link holds that pair's
 * listed or default parameters with src and dst filled in, so a source may fall back to them.
 * Which pairs exist is still decided by the links. fn must be pure, finite, non-negative,
 * non-decreasing in bytes and thread-safe. ctx is owned by the model when destroy is set (also
 * on failure) and released by kvr_search_costs_destroy or when the source is replaced; name
 * (copied, may be NULL) is shown in exports. fn = NULL removes the source. A later change of the
 * links (kvr_search_costs_set_links, _load_links_json, _override_links) removes it too: the
 * curves described the links they replace. Backward compatible: without it nothing changes. */
typedef double (*kvr_search_link_time_fn)(const void *ctx, const kvr_search_link *link,
                                          double bytes);
KVR_API kvr_status kvr_search_costs_set_link_time(kvr_search_costs *m, kvr_search_link_time_fn fn,
                                                  void *ctx, void (*destroy)(void *ctx),
                                                  const char *name, kvr_error *err);
/* Optional TSP all-gather model: time = (p-1) * alpha_us + (p-1)/p * total_bytes / busbw, the
 * nccl-tests busbw convention. Without it (the default) TSP uses a ring all-gather over the
 * links: (p-1) steps, each the slowest link's alpha + (total_bytes/p) / bw. busbw_gbps < 0
 * removes the override. */
KVR_API kvr_status kvr_search_costs_set_allgather(kvr_search_costs *m, double alpha_us,
                                                  double busbw_gbps, kvr_error *err);

/* Ring pass-KV's partial-softmax merges: folding one block's partial attention of n rows into
 * the running result by log-sum-exp costs k_us + per_row_us * n per layer and merge (a JSON cost
 * file's optional "merge": {"k_us", "per_row_us"}; the profile source derives per_row_us from
 * the measured embedding rate, docs/search.md). how (copied, may be NULL) says where the numbers
 * came from, for exports. Without it merges cost 0. Errors: KVR_ERR_INVALID_ARG (negative or
 * non-finite numbers). */
KVR_API kvr_status kvr_search_costs_set_merge(kvr_search_costs *m, double k_us,
                                              double per_row_us, const char *how,
                                              kvr_error *err);
/* The merge cost of n rows (0 for n <= 0). */
KVR_API double kvr_search_costs_merge_us(const kvr_search_costs *m, int64_t rows);

/* Fixed overheads of one schedule (kvr_mode: single, kvr, tsp, ring), what a per-op model
 * summed over layers misses: run_us once per prefill (rank start, thread-team wake-ups, the
 * final barrier) and layer_us once per layer step on every rank (per-layer syncs, the fixed part
 * of a transfer or collective beyond the link model). Where each enters the simulated timeline
 * (docs/search.md, "Fixed overheads"): run_us before the embedding on every rank (all ranks
 * start at run_us), layer_us after each layer's post on every rank (the next layer, and in the
 * KVR chain the K/V it forwards, waits for it). KVR-S, KVR-E and KVR-P all use the kvr terms.
 * A JSON cost file's optional "overheads": {"single": {"run_us", "layer_us"}, "kvr": ..., "tsp":
 * ..., "ring": ...}; absent = 0 (nothing changes). how (copied, may be NULL) says where they came
 * from, for exports. Errors: KVR_ERR_INVALID_ARG (mode out of range, negative or non-finite). */
typedef struct kvr_search_overhead {
    double run_us;   /* once per prefill */
    double layer_us; /* once per layer step, every rank */
} kvr_search_overhead;
KVR_API kvr_status kvr_search_costs_set_overhead(kvr_search_costs *m, kvr_mode mode,
                                                 double run_us, double layer_us, const char *how,
                                                 kvr_error *err);
/* The overheads of a schedule ({0, 0} when unset or mode is out of range). */
KVR_API kvr_search_overhead kvr_search_costs_overhead(const kvr_search_costs *m, kvr_mode mode);
/* The name under which a profile stores a schedule's overhead samples (layer_samples.op):
 * "ovh_single", "ovh_kvr", "ovh_tsp", "ovh_ring" (c = the layers run, prefix = the ranks; the
 * statistics are of the signed excess, docs/profiler.md); NULL for an out-of-range mode. */
KVR_API const char *kvr_search_overhead_op(kvr_mode mode);
/* Whether op is such a name; *mode receives the schedule. */
KVR_API bool kvr_search_overhead_op_parse(const char *op, kvr_mode *mode);
/* A schedule's overheads from n measured excesses (us, signed: a run's measured TTFT minus the
 * per-op model's prediction of the same run, overheads left out) of runs at n_layers[i]
 * layers: least squares of excess = run_us + layer_us * layers (with one distinct layer count
 * layer_us = 0 and run_us is their mean). A term the fit makes negative (the per-op model
 * over-predicts) is clamped at 0 and the other refitted alone; *clamped (may be NULL) says so.
 * Errors: KVR_ERR_INVALID_ARG (n < 1, a layer count < 1, a non-finite excess). */
KVR_API kvr_status kvr_search_overhead_fit(const int *n_layers, const double *excess_us, int n,
                                           kvr_search_overhead *out, bool *clamped,
                                           kvr_error *err);

/* The decode step of a serving iteration (kvr_serving.h's simulator): B requests decoding one
 * token each over T cached tokens in all (each request's cache plus its new token) take
 * k_us + per_seq_us * B + per_ctx_token_us * T microseconds, the whole model (embedding, every
 * layer, the head, sampling). Fitted by kvr-fit from a profile's "decode" samples
 * (kvr_search_decode_op; docs/serving.md, "Decode-step costs"), or a JSON cost file's optional
 * "decode_step": {"k_us", "per_seq_us", "per_ctx_token_us"}. how (copied, may be NULL) says where
 * the numbers came from. Errors: KVR_ERR_INVALID_ARG (negative or non-finite, all zero). */
typedef struct kvr_search_decode_step {
    double k_us, per_seq_us, per_ctx_token_us;
} kvr_search_decode_step;
KVR_API kvr_status kvr_search_costs_set_decode_step(kvr_search_costs *m,
                                                    const kvr_search_decode_step *d,
                                                    const char *how, kvr_error *err);
/* Whether m has a decode step; *out (may be NULL) receives it, *how (may be NULL) its source. */
KVR_API bool kvr_search_costs_decode_step(const kvr_search_costs *m, kvr_search_decode_step *out,
                                          const char **how);
/* The layer_samples.op of a profile's decode-step samples: "decode" (c = batch size B, prefix =
 * total cached context T; docs/profiler.md, "Decode steps"). */
#define KVR_SEARCH_DECODE_OP "decode"

/* The host tier's copy rate (LayerKV, docs/serving.md "LayerKV in the runtime"): moving one
 * layer block's K/V between the device pool and the host tier (either direction; kvr_batch.h's
 * kvr_kv_pool_add_host) takes bytes / bytes_per_us microseconds (GB/s x 1000). Derived by
 * kvr-fit from a profile's host-copy samples (KVR_SEARCH_HOST_COPY_OP), or a JSON cost file's
 * optional "host_copy_gbps". how (copied, may be NULL) says where it came from.
 * Errors: KVR_ERR_INVALID_ARG (not finite or <= 0). */
KVR_API kvr_status kvr_search_costs_set_host_copy(kvr_search_costs *m, double bytes_per_us,
                                                  const char *how, kvr_error *err);
/* Whether m has a host-copy rate; *bytes_per_us and *how (each may be NULL) receive it. */
KVR_API bool kvr_search_costs_host_copy(const kvr_search_costs *m, double *bytes_per_us,
                                        const char **how);
/* The layer_samples.op of a profile's host-tier copy samples: "host_copy" (c = layer blocks per
 * copy batch, prefix = bytes of one layer block; docs/profiler.md, "Host-tier copies"). */
#define KVR_SEARCH_HOST_COPY_OP "host_copy"

KVR_API int kvr_search_costs_n_layers(const kvr_search_costs *m);
/* Largest rank count the links support (INT32_MAX when a default link covers every pair). */
KVR_API int kvr_search_costs_max_ranks(const kvr_search_costs *m);
KVR_API const char *kvr_search_costs_source(const kvr_search_costs *m); /* e.g. a path */
/* The cost source's kind (kvr_search_cost_ops.kind): "json", "profile", "fit", "custom", ... */
KVR_API const char *kvr_search_costs_kind(const kvr_search_costs *m);
/* One line describing the links as the text header shows it ("default 8 us + 250 GB/s; ..."). */
KVR_API void kvr_search_costs_links_text(const kvr_search_costs *m, char *buf, size_t len);
KVR_API const char *kvr_search_costs_model_name(const kvr_search_costs *m); /* "" if unknown */
/* The scalar part of the model: K/V bytes per token per layer, embedding and head times. */
KVR_API double kvr_search_costs_kv_bytes_per_token(const kvr_search_costs *m);
KVR_API double kvr_search_costs_embed_us(const kvr_search_costs *m);
KVR_API double kvr_search_costs_head_us(const kvr_search_costs *m);
/* Per-layer costs of the model (for tools and tests). */
KVR_API double kvr_search_costs_pre_us(const kvr_search_costs *m, int64_t c);
KVR_API double kvr_search_costs_attn_us(const kvr_search_costs *m, int64_t c, int64_t prefix);
KVR_API double kvr_search_costs_post_us(const kvr_search_costs *m, int64_t c);
/* Transfer time of n bytes from device src to dst; KVR_ERR_NOT_FOUND when no link covers it. */
KVR_API kvr_status kvr_search_costs_link_us(const kvr_search_costs *m, int src, int dst,
                                            double bytes, double *out_us, kvr_error *err);

// ----------------------------------------------------------------------------
// strategies and timelines

/* The strategies (kvr_strategy, kvr_strategy_name/parse) are in kvr_common.h. */

typedef enum kvr_event_kind {
    KVR_EVENT_EMBED,     /* embedding lookup */
    KVR_EVENT_PRE,       /* norm, QKV, RoPE */
    KVR_EVENT_ATTN,      /* attention (ring: one block per ring step) */
    KVR_EVENT_POST,      /* O-proj, residual, norm, MLP */
    KVR_EVENT_WAIT,      /* compute idle, waiting for K/V or a collective */
    KVR_EVENT_SEND,      /* a transfer on link rank -> peer (occupies the link) */
    KVR_EVENT_ALLGATHER, /* TSP all-gather (every rank) */
    KVR_EVENT_HEAD,      /* final norm + LM head on the rank holding the last token */
    KVR_EVENT_MERGE,     /* ring: merging a block's partial attention by log-sum-exp */
    KVR_EVENT_OVERHEAD,  /* a fixed overhead (kvr_search_costs_set_overhead): layer -1 the
                            per-run term before the embedding, layer l the per-layer-step term */
    KVR_EVENT_KIND_COUNT
} kvr_event_kind;

typedef struct kvr_event {
    int rank;  /* who spends the time (SEND: the sender) */
    int layer; /* 0-based; -1 for EMBED, n_layers for HEAD */
    int peer;  /* SEND: receiving rank; otherwise -1 */
    kvr_event_kind kind;
    double start_us, end_us;
} kvr_event;

typedef struct kvr_search_timeline kvr_search_timeline;

KVR_API kvr_status kvr_search_timeline_create(kvr_search_timeline **out, kvr_error *err);
KVR_API void kvr_search_timeline_destroy(kvr_search_timeline *tl);
KVR_API size_t kvr_search_timeline_n_events(const kvr_search_timeline *tl);
KVR_API const kvr_event *kvr_search_timeline_event(const kvr_search_timeline *tl, size_t i);
KVR_API const char *kvr_event_kind_name(kvr_event_kind k); /* "pre", "attn", "send", ... */
/* The strategy label printed by the formatters: the simulator sets "kvr", "tsp", "ring" or
 * "single"; callers may relabel (e.g. "kvr-s"), at most 15 characters. */
KVR_API void kvr_search_timeline_set_label(kvr_search_timeline *tl, const char *label);
KVR_API double kvr_search_timeline_ttft_us(const kvr_search_timeline *tl);
/* Text Gantt chart (width columns of time per rank, a compute row and a link row per rank, a
 * legend and per-rank compute/wait/transfer totals), or CSV with the header
 * strategy,ranks,context,rank,layer,kind,peer,start_us,end_us (header optional, so several
 * timelines can be concatenated). */
KVR_API kvr_status kvr_search_timeline_format_text(const kvr_search_timeline *tl, int width,
                                                   char **out, kvr_error *err);
KVR_API kvr_status kvr_search_timeline_format_csv(const kvr_search_timeline *tl, bool header,
                                                  char **out, kvr_error *err);

// ----------------------------------------------------------------------------
// simulators: each returns TTFT in *ttft_us and, when tl != NULL, replaces tl's events with
// the per-rank timeline. Errors: KVR_ERR_INVALID_ARG (bad p, C or chunks), KVR_ERR_NOT_FOUND
// (a link the strategy needs is not in the model). Thread-safe on a shared model.

/* KVR chain, DESIGN.md section 4: rank i holds chunks[i] tokens (all >= 1, p entries). */
KVR_API kvr_status kvr_search_sim_kvr(const kvr_search_costs *m, int p, const int64_t *chunks,
                                      kvr_search_timeline *tl, double *ttft_us, kvr_error *err);
/* TSP: even split of C (sizes differ by at most one token, larger first), per layer: pre on the
 * rank's rows, all-gather of K/V (a global sync), causal attention of its rows, post. */
KVR_API kvr_status kvr_search_sim_tsp(const kvr_search_costs *m, int p, int64_t C,
                                      kvr_search_timeline *tl, double *ttft_us, kvr_error *err);
/* Ring pass-KV as kvr-run --mode ring runs it: C in 2p zigzag chunks (rank i holds chunks i
 * and 2p-1-i), per layer p-1 ring steps passing K/V blocks i -> i+1 mod p; each step's block
 * attention (full or skipped per chunk pair) is followed by its log-sum-exp merge
 * (kvr_search_costs_set_merge); one block in flight per link (docs/search.md). p = 1: single. */
KVR_API kvr_status kvr_search_sim_ring(const kvr_search_costs *m, int p, int64_t C,
                                       kvr_search_timeline *tl, double *ttft_us, kvr_error *err);
/* One rank does everything. */
KVR_API kvr_status kvr_search_sim_single(const kvr_search_costs *m, int64_t C,
                                         kvr_search_timeline *tl, double *ttft_us,
                                         kvr_error *err);

// ----------------------------------------------------------------------------
// KVR-S partition search

/* Partitions are in tokens: chunk boundaries S_0..S_{p-2} are multiples of the granularity g,
 * every chunk >= g, and when g does not divide C the remainder C mod g goes to the last chunk
 * (so only the end of the prompt is off the page grid). Needs C >= p * g. */
typedef struct kvr_search_params {
    int64_t granularity;  /* g tokens, >= 1 (default 16) */
    bool refine;          /* local refinement after the starting points (default true) */
    bool multi_start;     /* refine from every starting point, not only the best (default true) */
    int64_t max_evals;    /* 0 = unlimited; a safety valve for huge instances */
} kvr_search_params;

KVR_API kvr_search_params kvr_search_params_default(void);

/* The largest context the search plans, 2^24 = 16M tokens: beyond the longest context any model
 * serves today, and the search's time grows with C / g (one rank count of the example costs:
 * about 0.1 s per million tokens per strategy on one core), so a larger C only buys a long wait.
 * The partition searches, the simulators' callers (tables) and KVR-P's polish refuse more. */
#define KVR_SEARCH_MAX_CONTEXT ((int64_t)1 << 24)

typedef enum kvr_search_start {
    KVR_SEARCH_START_EVEN,     /* KVR-E */
    KVR_SEARCH_START_BALANCED, /* c_i * S_i equal (attention area balanced) */
    KVR_SEARCH_START_MINMAX,   /* min-max per-layer time by bisection on the target */
    KVR_SEARCH_START_COUNT
} kvr_search_start;

typedef struct kvr_search_stats {
    double ttft_us;                               /* of the returned partition */
    double start_ttft_us[KVR_SEARCH_START_COUNT]; /* of each starting point */
    int best_start;                               /* kvr_search_start the winner refined from */
    int64_t n_evals;                              /* recurrence evaluations (full or partial) */
    int64_t n_moves;                              /* accepted improving moves */
    double elapsed_us;
} kvr_search_stats;

/* Search the KVR-S partition: chunks_out (p entries, tokens). The result is never worse than
 * any starting point (in simulated TTFT). stats may be NULL. Errors: KVR_ERR_INVALID_ARG (p < 1,
 * C < p*g, g < 1), KVR_ERR_NOT_FOUND (a chain link missing), KVR_ERR_NOMEM. */
KVR_API kvr_status kvr_search_partition(const kvr_search_costs *m, int p, int64_t C,
                                        const kvr_search_params *params, int64_t *chunks_out,
                                        kvr_search_stats *stats, kvr_error *err);
/* The starting points on their own (same constraints and remainder rule as above). */
KVR_API kvr_status kvr_search_partition_start(const kvr_search_costs *m, kvr_search_start which,
                                              int p, int64_t C, int64_t g, int64_t *chunks_out,
                                              kvr_error *err);
/* Polish a given KVR chain partition in place (tokens: every chunk a multiple of g except the
 * last, which carries C mod g; summing to C) with the optimiser's exact O(p) evaluation: each
 * step takes the best move of one granularity unit across one boundary or, when none helps and
 * p <= 16, between any two ranks, while the TTFT drops (relative 1e-12); at most max_moves
 * moves (0: 16). Never worse than the given partition. A step costs O(p^2) cost-model calls
 * (O(p^3) with the pair moves). ttft_us (may be NULL) receives the TTFT, equal to
 * kvr_search_sim_kvr's. No allocation for p <= 128. This is KVR-P's refinement
 * (kvr_predictor_predict_refined). Errors: KVR_ERR_INVALID_ARG (as kvr_search_partition, a
 * partition off the grid or not summing to C, max_moves < 0), KVR_ERR_NOT_FOUND (a chain link
 * missing), KVR_ERR_NOMEM. */
KVR_API kvr_status kvr_search_polish(const kvr_search_costs *m, int p, int64_t C, int64_t g,
                                     int max_moves, int64_t *chunks, double *ttft_us,
                                     kvr_error *err);

// ----------------------------------------------------------------------------
// tables: for each rank count and context, the KVR-S partition and the TTFT of each strategy

typedef struct kvr_search_table_config {
    const int *ranks; /* n_ranks rank counts, each >= 1 */
    int n_ranks;
    const int64_t *contexts; /* n_contexts prompt lengths, each >= max(ranks) * g */
    int n_contexts;
    kvr_search_params params;
    unsigned strategies; /* bit mask of 1u << kvr_strategy; 0 = all */
} kvr_search_table_config;

typedef struct kvr_search_row {
    int n_ranks;
    int64_t context;
    const int64_t *partition; /* KVR-S chunks (KVR-E when kvr-s is not selected); n_ranks */
    bool has[KVR_STRATEGY_COUNT];     /* selected and simulated */
    double ttft_us[KVR_STRATEGY_COUNT];
    const char *error[KVR_STRATEGY_COUNT]; /* selected but not simulable (e.g. missing link) */
    kvr_strategy best; /* fastest of the simulated strategies (runnable: set_runnable) */
    double search_ms;                      /* wall time of the KVR-S search */
} kvr_search_row;

/* Per context: the fastest (strategy, degree) over all rows, "single" included when selected. */
typedef struct kvr_search_rec {
    int64_t context;
    kvr_strategy strategy;
    int n_ranks; /* 1 for single */
    double ttft_us;
    double speedup_vs_single; /* 0 when single was not simulated */
} kvr_search_rec;

typedef struct kvr_search_table kvr_search_table;

/* Build the table (rows ordered by rank count, then context, as given). Errors as for
 * kvr_search_partition; nothing is returned on failure. */
KVR_API kvr_status kvr_search_table_create(const kvr_search_costs *m,
                                           const kvr_search_table_config *cfg,
                                           kvr_search_table **out, kvr_error *err);
/* The same, calling progress(user, rows done, rows in all) after each (rank count, context)
 * row (a large table takes seconds; kvr-search draws a progress bar). */
KVR_API kvr_status kvr_search_table_create_progress(const kvr_search_costs *m,
                                                    const kvr_search_table_config *cfg,
                                                    void (*progress)(void *user, int done,
                                                                     int total),
                                                    void *user, kvr_search_table **out,
                                                    kvr_error *err);
KVR_API void kvr_search_table_destroy(kvr_search_table *t);
KVR_API int kvr_search_table_n_rows(const kvr_search_table *t);
KVR_API const kvr_search_row *kvr_search_table_row(const kvr_search_table *t, int i);
KVR_API int kvr_search_table_n_recs(const kvr_search_table *t);
KVR_API const kvr_search_rec *kvr_search_table_rec(const kvr_search_table *t, int i);
/* Mark the strategies the runtime cannot run (unrunnable: a mask of 1u << kvr_strategy, the
 * complement of kvr_strategy_runnable_mask; 0 = none, what a new table has): they stay
 * simulated and every format marks them, but unless recommend_unrunnable (kvr-search
 * --include-unrunnable) they are never a row's best nor a recommendation -- both are chosen
 * again among the others. runtime names the backend and transport in the formats ("cpu/threads";
 * NULL: "the runtime"). KVR_ERR_NOT_FOUND when a context is left without any strategy to
 * recommend (the table is then unchanged). */
KVR_API kvr_status kvr_search_table_set_runnable(kvr_search_table *t, unsigned unrunnable,
                                                 bool recommend_unrunnable, const char *runtime,
                                                 kvr_error *err);
KVR_API unsigned kvr_search_table_unrunnable(const kvr_search_table *t);

typedef enum kvr_search_format {
    KVR_SEARCH_FORMAT_TEXT,     /* fixed-width table with '#' header lines and a units row */
    KVR_SEARCH_FORMAT_JSON,     /* self-describing, schema "kvr-search-table/1" */
    KVR_SEARCH_FORMAT_CSV,      /* one row per (ranks, context) */
    KVR_SEARCH_FORMAT_VLLM_ENV, /* VLLM_PCP_RUNAHEAD_LOAD_WEIGHTS=w0,... per row */
    KVR_SEARCH_FORMAT_COUNT
} kvr_search_format;

/* Parse "text", "json", "csv" or "vllm-env". */
KVR_API kvr_status kvr_search_format_parse(const char *name, kvr_search_format *out,
                                           kvr_error *err);
/* Render the table; *out is malloc'd text. The JSON and text forms record the cost source,
 * links, granularity, strategies and kvr_version()/kvr_build_commit(). note (may be NULL) is
 * stored as "note" in JSON and as a '#' line in text (e.g. the resolved CLI options). */
KVR_API kvr_status kvr_search_table_format(const kvr_search_table *t, kvr_search_format fmt,
                                           const char *note, char **out, kvr_error *err);

#ifdef __cplusplus
}
#endif
#endif /* KVR_SEARCH_H */
