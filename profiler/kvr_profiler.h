/* kvr_profiler.h -- the timing harness and the profiles that feed the search and the fits:
 * per-layer operations of the runtime timed on the (c, prefix) plane, and transfers through the
 * runtime's comm layer, written point by point into the store (kvr_db.h).
 *
 * What is timed is exactly what the runtime runs (DESIGN.md section 8): kvr_op_embed, _pre,
 * _attn, _post and _head on a backend's workspace (kvr_backend.h), timed by the backend's
 * events, rotating the layer index across repetitions so the weights come cold from memory as
 * in a real prefill; and kvr_comm isend/recv/wait/allgatherv in
 * the patterns the schedules use (point-to-point per pair, the KV-Runahead chain, TSP's
 * all-gather). Statistics per point: min, p10, median, p90, mean, stddev, max over repetitions
 * that are added until the median is stable or the point's time budget is spent.
 * docs/profiler.md describes the grid presets, the statistics and the guarantees.
 *
 * Usage:   kvr_profile_params pp = kvr_profile_params_default();
 *          kvr_grid_preset("quick", model_max_context, &pp.grid, &pp.timing, &err);
 *          kvr_db_run run = kvr_db_run_init("profile");   ... provenance, kvr_db_run_insert ...
 *          kvr_profile_result res;
 *          kvr_profile_layers(db, run.id, model, &pp, NULL, &res, &err);
 * Ownership: the db, model and params are borrowed for the call; arrays returned through **out
 *            are malloc'd (free()).
 * Threads:  the profile functions use the calling thread (plus the ops' OpenMP team, plus one
 *           thread per rank for transfers over the threads transport); the db handle must not
 *           be used elsewhere meanwhile. The statistics and grid functions are pure.
 */
#ifndef KVR_PROFILER_H
#define KVR_PROFILER_H
#include "kvr_db.h"
#include "kvr_runtime.h"

#include <signal.h>

#ifdef __cplusplus
extern "C" {
#endif

// ----------------------------------------------------------------------------
// operations: the layer ops of kvr_common.h (kvr_op, KVR_OP_EMBED..KVR_OP_HEAD) as bit masks

#define KVR_PROF_OPS_ALL ((1u << KVR_OP_LAYER_COUNT) - 1u)

/* "all", "none" or a comma list ("pre,attn,post") into a bit mask (1 << op). */
KVR_API kvr_status kvr_prof_ops_parse(const char *list, uint32_t *mask, kvr_error *err);
KVR_API void kvr_prof_ops_format(uint32_t mask, char *buf, size_t len);

// ----------------------------------------------------------------------------
// statistics and the adaptive timing harness

/* Sort samples (us) in place and fill min, p10, median, p90 (linear interpolation between
 * order statistics), mean, stddev (n - 1), max and n_iters = n. n_warmup and is_stable are left
 * as they were. n = 0 gives NaNs. */
KVR_API void kvr_stats_compute(double *samples_us, int32_t n, kvr_timing_stats *out);
/* Quantile q in [0, 1] of sorted data, linearly interpolated (R type 7). */
KVR_API double kvr_stats_quantile(const double *sorted, int32_t n, double q);
/* Whether the median of sorted data is known to within +-rel_tol: the distribution-free 95%
 * confidence interval of the median (order statistics n/2 -+ 0.98 sqrt(n)) is no wider than
 * 2 rel_tol median. Needs n >= 3. */
KVR_API bool kvr_stats_median_stable(const double *sorted, int32_t n, double rel_tol);

typedef struct kvr_timing_params {
    int32_t n_warmup;  /* executions before measuring (not in the statistics) */
    int32_t min_iters; /* always measured, even past the budget */
    int32_t max_iters; /* never more */
    double budget_s;   /* per point: stop adding repetitions once measured time exceeds it */
    double rel_tol;    /* per point: stop once the median is stable to +-rel_tol */
} kvr_timing_params;

/* One execution: i_iter < 0 for warm-ups (-n_warmup .. -1), 0.. for measured ones. Writes the
 * execution's time. Collective measurements (transfers) return the same value on every rank,
 * which keeps every rank's stopping decision identical. */
typedef kvr_status (*kvr_measure_fn)(void *user, int32_t i_iter, double *time_us,
                                     kvr_error *err);

/* Warm up, then measure until (n >= min_iters and (median stable or measured time > budget))
 * or n == max_iters. scratch holds max_iters doubles and receives the samples (sorted).
 * The budget counts measured execution time, not the harness's own work. */
KVR_API kvr_status kvr_time_adaptive(kvr_measure_fn fn, void *user, const kvr_timing_params *tp,
                                     double *scratch, kvr_timing_stats *out, kvr_error *err);
/* The timer's overhead: the median gap between two back-to-back kvr_time_us() calls, from 20000
 * pairs (stored with each run; samples are not corrected for it). */
KVR_API double kvr_timer_overhead_us(void);

// ----------------------------------------------------------------------------
// the (c, prefix) grid

typedef struct kvr_grid_params {
    char name[16];          /* "quick", "standard", "full", "custom" */
    int64_t c_min, c_max;   /* chunk sizes, log-spaced */
    double c_per_octave;    /* points per doubling of c */
    int64_t ctx_max;        /* largest context: attention points satisfy c + prefix <= ctx_max */
    int64_t p_min;          /* smallest non-zero prefix (0 is always profiled) */
    double p_per_octave;    /* prefix points per doubling; each c also gets prefix = ctx_max - c */
    int32_t refine_levels;  /* rounds of adding midpoints where the curve bends */
    double refine_tol;      /* bend: a point off the line through its neighbours by > tol */
    int32_t n_c_list, n_p_list; /* explicit lists instead of ranges (0 = use the range) */
    int64_t c_list[64], p_list[64];
} kvr_grid_params;

/* A preset scaled to a model: "quick", "standard" or "full" (docs/profiler.md), with c_max and
 * ctx_max capped at model_max_context (0 = no cap). Also fills the preset's timing params. */
KVR_API kvr_status kvr_grid_preset(const char *name, int64_t model_max_context,
                                   kvr_grid_params *grid, kvr_timing_params *timing,
                                   kvr_error *err);
/* Log-spaced integers from lo to hi inclusive, per_octave per doubling (lo = 0 gives 0 then
 * from 1). *out is malloc'd. */
KVR_API kvr_status kvr_grid_values(int64_t lo, int64_t hi, double per_octave, int64_t **out,
                                   int32_t *n, kvr_error *err);

typedef struct kvr_prof_point {
    kvr_op op;
    int64_t c, prefix;
} kvr_prof_point;

/* The base grid for the ops in mask: embed/pre/post over c (prefix 0), attn over every
 * (c, prefix) with c + prefix <= ctx_max, head once (c = 1). *out is malloc'd. */
KVR_API kvr_status kvr_grid_points(const kvr_grid_params *g, uint32_t ops, kvr_prof_point **out,
                                   int64_t *n, kvr_error *err);
/* One refinement round over measured samples: along c (per op, and per prefix row for attn),
 * where a point lies more than refine_tol off the straight line through its neighbours, the
 * geometric midpoints of its two intervals. Only points not in samples are returned. */
KVR_API kvr_status kvr_grid_refine(const kvr_grid_params *g, uint32_t ops,
                                   const kvr_db_layer_sample *samples, int64_t n_samples,
                                   kvr_prof_point **out, int64_t *n, kvr_error *err);

// ----------------------------------------------------------------------------
// profile parameters (stored with the run so --resume repeats them)

typedef struct kvr_profile_params {
    const kvr_backend *backend; /* whose ops are timed; NULL = cpu (not in the params text: the
                                   run's backend column holds it) */
    kvr_grid_params grid;
    kvr_timing_params timing;
    uint32_t ops;          /* mask of kvr_op to profile */
    int32_t n_threads;     /* threads per rank for the ops */
    bool comm;             /* profile transfers */
    int32_t n_ranks;       /* ranks for transfers */
    kvr_transport transport;
    bool comm_compute;     /* also the chain with compute running (chain_compute) */
    int64_t comm_min_bytes, comm_max_bytes; /* p2p sweep; max 0 = largest K/V message */
    double comm_per_octave;
    uint64_t seed;         /* token ids, point order and preset weights */
    int32_t model_layers;  /* presets: layer override (0 = preset's) */
    bool overheads;        /* the schedules' fixed overheads after the layer ops (default true;
                              kvr_profile_overheads; needs the layer ops and a host backend) */
    bool decode;           /* batched decode steps (default true; kvr_profile_decode; a backend
                              with a paged KV pool: cpu, cuda) */
    int32_t decode_max_batch; /* decode steps: batch sizes 1, 2, 4, ... up to this */
    int32_t decode_n_ctx;     /* decode steps: contexts per batch size, log-spaced */
    char model[512];       /* path or preset name */
} kvr_profile_params;

/* The "standard" preset without a model cap, all ops, 1 thread, no transfers. */
KVR_API kvr_profile_params kvr_profile_params_default(void);
/* Serialize as "key=value;..." (model last) / parse it back. */
KVR_API kvr_status kvr_profile_params_format(const kvr_profile_params *p, char *buf, size_t len,
                                             kvr_error *err);
KVR_API kvr_status kvr_profile_params_parse(const char *s, kvr_profile_params *out,
                                            kvr_error *err);

// ----------------------------------------------------------------------------
// provenance

/* This machine's CPU as a device: model name, logical CPUs, memory, max clock, host, BLAS. */
KVR_API void kvr_profile_device_cpu(kvr_db_device *out);
/* The device backend be runs on: the CPU (kvr_profile_device_cpu) for a host backend (or NULL);
 * for a device backend the GPU it uses (device 0, kvr_device.h): kind "cuda", its name, SMs,
 * peak clock, memory, driver, CUDA runtime and NCCL versions, the host, and as blas the
 * backend's library string (CUDA runtime, cuBLAS, FlashInfer). */
KVR_API void kvr_profile_device(kvr_db_device *out, const kvr_backend *be);
/* A model record: configuration, kv bytes per token (fp32), source, and a content hash of the
 * file (GGUF), the config + safetensors files (HF directory) or "preset:NAME:seed:layers". */
KVR_API kvr_status kvr_profile_model_record(const kvr_model *m, const char *source,
                                            uint64_t seed, int32_t layers, kvr_db_model *out,
                                            kvr_error *err);
/* Fill a run's provenance columns from a device and the parameters (the backend's name and dtype,
 * thread/rank counts, transport, BLAS and, with MPI transfers, the MPI library version). */
KVR_API void kvr_profile_run_provenance(kvr_db_run *run, const kvr_db_device *dev,
                                        const kvr_profile_params *p);

// ----------------------------------------------------------------------------
// running a profile

typedef struct kvr_profile_hooks {
    /* Checked between executions (layer ops; the unfinished points of the current interleaved
     * block are dropped, to be measured on resume) and between points (transfers): when *stop
     * becomes nonzero the profile ends there (SIGINT). May be NULL. */
    volatile sig_atomic_t *stop;
    /* After every point (measured or skipped as already done): label such as "attn c=256
     * p=1024", and the counts (total grows when refinement adds points). May be NULL. */
    void (*on_point)(void *user, const char *label, const kvr_timing_stats *stats,
                     int64_t done, int64_t total);
    void *user;
} kvr_profile_hooks;

typedef struct kvr_profile_result {
    int64_t n_points;   /* in the grid (after refinement) */
    int64_t n_skipped;  /* already in the db (resume) */
    int64_t n_measured; /* measured now */
    bool stopped;       /* *stop ended it early */
    double elapsed_s;
} kvr_profile_result;

/* Profile the layer ops of p->ops on p->grid for run_id, writing each point as it finishes
 * (points already stored for the run are skipped). Errors: KVR_ERR_NOMEM (workspace; the
 * message gives the size and suggests a smaller --max-context), db errors (full disk: the
 * points stored so far stay). */
KVR_API kvr_status kvr_profile_layers(kvr_db *db, int64_t run_id, const kvr_model *m,
                                      const kvr_profile_params *p, const kvr_profile_hooks *hooks,
                                      kvr_profile_result *res, kvr_error *err);
/* Transfers over p->n_ranks threads of this process (threads transport). */
KVR_API kvr_status kvr_profile_transfers_threads(kvr_db *db, int64_t run_id, const kvr_model *m,
                                                 const kvr_profile_params *p,
                                                 const kvr_profile_hooks *hooks,
                                                 kvr_profile_result *res, kvr_error *err);
/* This rank's part of the transfer profile over any comm (MPI: every process calls it; db is
 * used on rank 0 only and may be NULL elsewhere). hooks apply on every rank (any rank's stop
 * flag stops all); results are reported on rank 0. */
KVR_API kvr_status kvr_profile_transfers_rank(kvr_db *db, int64_t run_id, kvr_comm *comm,
                                              const kvr_model *m, const kvr_profile_params *p,
                                              const kvr_profile_hooks *hooks,
                                              kvr_profile_result *res, kvr_error *err);

// ----------------------------------------------------------------------------
// fixed overheads of the schedules (overheads.c; docs/profiler.md, "Fixed overheads")

/* What the overheads step runs: every schedule on n_ranks ranks (single on one) over a prompt of
 * chunk * n_ranks tokens (chunk: the grid's c_min clamped to [2, 16], so the op model is inside
 * its grid and ring has a token per zigzag chunk), at n_depths layer counts: the model's and a
 * quarter of it (at least 1; one depth for a 1- to 3-layer model). */
typedef struct kvr_profile_overheads_plan_t {
    int32_t n_ranks;   /* max(2, params' n_ranks) */
    int64_t chunk;     /* tokens per rank */
    int32_t layers[2]; /* the model's, then the truncated count */
    int32_t n_depths;  /* 1 or 2 */
} kvr_profile_overheads_plan_t;
KVR_API void kvr_profile_overheads_plan(const kvr_profile_params *p, int32_t n_layers,
                                        kvr_profile_overheads_plan_t *out);

/* The overheads step: for each schedule (single, kvr, tsp, ring) and depth of the plan, run the
 * prefill end to end (kvr_prefill_run over threads on p->backend, p->n_threads per rank;
 * kvr_model_view_layers for the truncated depth) with the timing harness (p->timing with at
 * least 1 warm-up and 5, at most 20 measured runs) and store the signed excess of each run's
 * TTFT over what the run's per-op model (kvr_profile_costs_from_samples of run_id's own layer
 * and transfer samples, no overheads) predicts for it: a layer sample op "ovh_<mode>"
 * (kvr_search_overhead_op), c = the layers run, prefix = the ranks, statistics over the runs.
 * The excess is kept signed (negative where the op model over-predicts); the fits clamp each
 * term at 0 (kvr_search_overhead_fit). Rows already stored are skipped (resume); *hooks->stop
 * ends it between rows. mrec: the model's record (layers, K/V bytes). Errors: the op model's
 * (no pre/attn/post/head samples yet), the prefill's, db errors. */
/* ... and after them, the end-to-end check (docs/predictor.md, "Error band"): the whole model
 * run by every schedule (single on 1 rank; kvr with the even partition, tsp and ring on
 * n_ranks) at one or two prompt lengths -- the largest n_ranks * chunk * 2^k up to half the
 * grid's largest chunk whose single-rank TTFT the op model predicts within
 * KVR_PROFILE_E2E_BUDGET_US, and a quarter of it when that is >= 2 n_ranks chunk -- each
 * repeated identically after the warm-up(s), the points interleaved (each pass runs every point
 * once): KVR_PROFILE_E2E_RUNS times, or as many as the
 * budget holds of the longer length's predicted single run, at most KVR_PROFILE_E2E_RUNS_MAX
 * (short runs move most from run to run and cost least). The TTFTs are stored as a layer
 * sample "e2e_<mode>" (kvr_profile_e2e_op), c = tokens, prefix = ranks. Nothing is fitted on
 * them: kvr-fit's error band is their held-out prediction error plus their run-to-run spread,
 * and each schedule's end-to-end scale comes from them. */
#define KVR_PROFILE_E2E_BUDGET_US 1e6
#define KVR_PROFILE_E2E_RUNS 5
#define KVR_PROFILE_E2E_RUNS_MAX 15
/* "e2e_single", "e2e_kvr", "e2e_tsp", "e2e_ring"; NULL for another mode. */
KVR_API const char *kvr_profile_e2e_op(kvr_mode mode);
KVR_API kvr_status kvr_profile_overheads(kvr_db *db, int64_t run_id, const kvr_model *m,
                                         const kvr_db_model *mrec, const kvr_profile_params *p,
                                         const kvr_profile_hooks *hooks, kvr_profile_result *res,
                                         kvr_error *err);

// ----------------------------------------------------------------------------
// batched decode steps (decode.c; docs/profiler.md, "Decode steps")

typedef struct kvr_prof_decode_point {
    int32_t batch;       /* B requests, one new token each */
    int64_t ctx_per_seq; /* tokens of each request's cache after the step (its new one included) */
    int64_t ctx;         /* T = batch * ctx_per_seq: the context the step reads in all */
} kvr_prof_decode_point;

#define KVR_PROFILE_DECODE_MAX_BATCH 4096
/* The decode grid: B = 1, 2, 3, 4, 6, 8, 12, ... (the powers of two and 1.5 times them)
 * <= p->decode_max_batch; for each, p->decode_n_ctx per-request
 * contexts log-spaced from 16 to min(p->grid.ctx_max / B, model_max_context (0: no cap)),
 * distinct (a B whose largest context is below 2 is left out). *out is malloc'd.
 * Errors: KVR_ERR_INVALID_ARG (decode_max_batch outside 1..KVR_PROFILE_DECODE_MAX_BATCH,
 * decode_n_ctx < 1, ctx_max < 2), NOMEM. */
KVR_API kvr_status kvr_profile_decode_points(const kvr_profile_params *p,
                                             int64_t model_max_context,
                                             kvr_prof_decode_point **out, int32_t *n,
                                             kvr_error *err);
/* Time whole batched decode iterations as the serving engine runs them: for each point of the
 * grid, kvr_batch_run over B requests (each with ctx_per_seq - 1 tokens cached in its own blocks
 * of a paged pool sized for the largest point, one new token, logits wanted) followed by one
 * greedy sampler draw per request, with the timing harness (p->timing with at least 1 warm-up
 * and 3, at most 30 measured runs); stored as layer samples op "decode" (KVR_SEARCH_DECODE_OP),
 * c = B, prefix = T. Then the LayerKV host tier's copies on the same pool (a host tier added to
 * it, its copier thread): n = 1, 4, 16, 64 layer blocks (at most the pool's) copied out and
 * back, op "host_copy" (KVR_SEARCH_HOST_COPY_OP), c = 2n, prefix = bytes of one layer block;
 * kvr_profile_costs_from_run turns them into the host-copy rate. Points already stored are
 * skipped (resume); *hooks->stop ends it between points. Errors: KVR_ERR_UNSUPPORTED for a
 * backend without a paged KV pool (none now: cpu and cuda have one), NOMEM (the pool), the
 * runner's, db errors. */
KVR_API kvr_status kvr_profile_decode(kvr_db *db, int64_t run_id, const kvr_model *m,
                                      const kvr_profile_params *p, const kvr_profile_hooks *hooks,
                                      kvr_profile_result *res, kvr_error *err);

// ----------------------------------------------------------------------------
// a profile run's lifecycle (run.c): what kvr-profile does between parsing and printing

/* Where kvr_profile_run stopped with an error (the message says why; tools prefix it). */
typedef enum kvr_profile_stage {
    KVR_PROFILE_STAGE_NONE,
    KVR_PROFILE_STAGE_STORE,         /* reaping dead writers, or inserting the new run */
    KVR_PROFILE_STAGE_RESUME,        /* the run to resume: missing, not a profile, complete,
                                        other transport, other model, owned by a live writer */
    KVR_PROFILE_STAGE_MODEL_DEFAULT, /* no model given and the default model is missing */
    KVR_PROFILE_STAGE_MODEL,         /* loading the model (info.model_source names it) */
    KVR_PROFILE_STAGE_PARAMS,        /* the caller's make_params refused (a usage error) */
    KVR_PROFILE_STAGE_COMM,          /* sharing rank 0's choices with the other MPI ranks */
    KVR_PROFILE_STAGE_PROFILE,       /* measuring: the run is left incomplete (resumable) or
                                        failed (info.resumable) with the message as its note */
    KVR_PROFILE_STAGE_FINISH,        /* recording the final status */
} kvr_profile_stage;

typedef struct kvr_profile_run_info kvr_profile_run_info;

typedef struct kvr_profile_run_params {
    kvr_db *db;             /* the open store; rank 0 only (NULL elsewhere) */
    kvr_comm *comm;         /* this process's MPI endpoint (transfers over mpi); NULL = one
                               process (layer ops, transfers over threads) */
    int64_t resume;         /* > 0: finish this incomplete run with its own parameters */
    const char *model;      /* path or preset; NULL = the resumed run's, else the default model
                               (kvr_model_default_path) */
    uint64_t seed;          /* new run: token ids, point order, preset weights (default 1234) */
    int32_t layers;         /* new run: presets' layer override (0 = the preset's) */
    kvr_transport transport; /* this process's transport: a resumed run that profiles
                                transfers must use the one it was started with */
    const kvr_backend *backend; /* whose ops are timed (params.backend); NULL = cpu */
    /* New run, rank 0: fill the parameters (p arrives as kvr_profile_params_default()) once the
     * model's configuration is known; an error ends the run at KVR_PROFILE_STAGE_PARAMS. */
    kvr_status (*make_params)(void *user, const kvr_model_config *cfg, const char *model,
                              kvr_profile_params *p, kvr_error *err);
    /* Rank 0, once the run is created or claimed (info: run, model, params, resumed). */
    void (*on_start)(void *user, const kvr_profile_run_info *info);
    /* Rank 0, around each profile: phase "ops" or "transfers", begin true then false. */
    void (*on_phase)(void *user, const char *phase, bool begin);
    /* Checked between executions and points: nonzero ends the profile there (SIGINT); the run
     * is left incomplete and resumable. May be NULL. */
    volatile sig_atomic_t *stop;
    /* After every point, as kvr_profile_hooks.on_point. May be NULL. */
    void (*on_point)(void *user, const char *label, const kvr_timing_stats *stats,
                     int64_t done, int64_t total);
    void *user; /* passed to the callbacks */
} kvr_profile_run_params;
/* No store, no comm, a new run of the default model, seed 1234, threads, no callbacks. */
KVR_API kvr_profile_run_params kvr_profile_run_params_default(void);

struct kvr_profile_run_info {
    kvr_db_run run;              /* rank 0: as stored at the end (status, ts_end_utc, note) */
    kvr_db_model model;          /* rank 0: the model's record */
    kvr_profile_params params;   /* every rank: what was profiled */
    char model_source[1024];     /* the model as loaded (path or preset) */
    kvr_profile_result layers, transfers, overheads, decode;
    bool resumed;
    bool stopped;                /* interrupted by *stop: the run is incomplete, resumable */
    bool resumable;              /* STAGE_PROFILE errors: the run was left incomplete (I/O, db,
                                    comm errors) rather than failed */
    kvr_profile_stage stage;     /* where an error happened (NONE on success) */
    double elapsed_s;
};

/* Run a profile: on rank 0 reap runs whose writer died, then resume p->resume (checks, then
 * claim) or create a new run (device and model records, provenance, p->make_params' parameters
 * stored with it); load the model on every rank; under MPI share rank 0's model and parameters
 * over the control channel; profile the layer ops (one process) and the transfers (threads, or
 * this rank's part over p->comm); set the status complete, or incomplete when *stop ended it.
 * On an error after the run was created or claimed, the run is left incomplete (or failed,
 * for measuring errors resuming would not fix) with the message as its note. Every MPI rank
 * calls it. *info is filled as far as the run got; info->stage says where an error happened. */
KVR_API kvr_status kvr_profile_run(const kvr_profile_run_params *p, kvr_profile_run_info *info,
                                   kvr_error *err);

// ----------------------------------------------------------------------------
// reading a profile back (costs.c: the interpolation of the profile cost model below, one op
// at a time; fitted models are the predictor's job)

/* Time (us) of op at (c, prefix) from a run's layer samples, by the profile cost model's
 * monotone interpolation (docs/search.md, "Cost source: a profile run"): the prefix-0 medians
 * made non-decreasing in c, Steffen's monotone cubic in log c / log t between points, constant
 * below the first, linear (attn: in c^2/2) beyond the last; attn at prefix > 0 adds the
 * prefix increment interpolated over the profiled columns; head is the median of its samples.
 * Errors: KVR_ERR_NOT_FOUND when the op has no samples (or none at prefix 0),
 * KVR_ERR_INVALID_ARG for attn at prefix > 0 without prefix > 0 samples. */
KVR_API kvr_status kvr_profile_interp(const kvr_db_layer_sample *s, int64_t n, kvr_op op, int64_t c,
                                      int64_t prefix, double *time_us, kvr_error *err);
/* Single-rank TTFT (ms) the profile predicts for a C-token prompt on an L-layer model:
 * embed(C) + L (pre(C) + attn(C, 0) + post(C)) + head. */
KVR_API kvr_status kvr_profile_predict_single_ms(const kvr_db_layer_sample *s, int64_t n,
                                                 int32_t n_layers, int64_t C, double *ttft_ms,
                                                 kvr_error *err);
/* The same at up to four contexts, ascending: the largest chunk of the prefix-0 attention
 * samples and 1/2, 1/4, 1/8 of it (distinct, >= 1), stopping at the first the samples cannot
 * predict (kvr-profile's summary, kvr-db show). *n_out = how many (0: none). */
KVR_API void kvr_profile_predict_single_series(const kvr_db_layer_sample *s, int64_t n,
                                               int32_t n_layers, int64_t ctx[4],
                                               double ttft_ms[4], int *n_out);

// ----------------------------------------------------------------------------
// a profile as a search cost model (costs.c; the scheme and its behaviour outside the grid:
// docs/search.md, "Cost source: a profile run")

typedef struct kvr_search_costs kvr_search_costs; /* search/kvr_search.h */

typedef struct kvr_profile_costs_params {
    int64_t link_run_id;   /* take the transfer samples from this run (0 = the same run) */
    bool allow_incomplete; /* use a run that is incomplete or failed (default: refuse) */
    int64_t embed_tokens;  /* the search charges one embedding per prompt: embed(this many
                              tokens); default 1024 */
    int32_t n_msgs;        /* messages per KVR link transfer (kvr-run sends K and V: 2) */
    bool no_overheads;     /* leave the schedules' fixed overheads out (the overheads step's own
                              prediction); default false: fitted from the ovh_* samples */
} kvr_profile_costs_params;
KVR_API kvr_profile_costs_params kvr_profile_costs_params_default(void);

/* What a cost model was built from, for headers and checks. */
typedef struct kvr_profile_costs_info {
    int64_t n_samples[KVR_OP_LAYER_COUNT]; /* layer samples per op */
    int64_t c_min, c_max;                 /* profiled chunk range (pre/post) */
    int64_t ctx_max;                      /* largest c + prefix of the attention samples */
    int32_t n_attn_columns;               /* chunk sizes with prefix > 0 samples */
    int32_t n_link_pairs;                 /* (src, dst) pairs with p2p samples; 0 = no links */
    int64_t n_p2p_samples;
    bool has_allgather; /* TSP's all-gather fitted from all-gather samples */
    double embed_us, head_us;
    char links[256]; /* how the links were made, one line */
    int32_t n_overhead_samples; /* ovh_* samples behind the overheads (0: none, all 0) */
    unsigned overheads_clamped; /* 1 << kvr_mode: a term fitted negative, clamped at 0 */
} kvr_profile_costs_info;

/* A search cost model (kind "profile") interpolating a profile's samples: layer samples for
 * pre, attn (at prefix 0 and > 0), post and head are required, embed is optional (0 without),
 * p2p transfer samples make the links (ideal links without; the all-gather samples, when
 * present, TSP's all-gather). model gives the layer count and the K/V bytes per token; source
 * names the profile in messages and exports. *info (may be NULL) is filled on success.
 * Errors: KVR_ERR_INVALID_ARG naming what is missing and how to profile it. */
KVR_API kvr_status kvr_profile_costs_from_samples(const kvr_db_model *model,
                                                  const kvr_db_layer_sample *ls, int64_t n_ls,
                                                  const kvr_db_transfer_sample *ts, int64_t n_ts,
                                                  const char *source,
                                                  const kvr_profile_costs_params *p,
                                                  kvr_search_costs **out,
                                                  kvr_profile_costs_info *info, kvr_error *err);
/* The same for a run in the store (p NULL = defaults). Errors: KVR_ERR_NOT_FOUND (no such run),
 * KVR_ERR_INVALID_ARG (the run is still being written, incomplete or failed without
 * allow_incomplete -- the message says how to finish it --, has no model record or lacks
 * samples), db errors. */
KVR_API kvr_status kvr_profile_costs_from_run(kvr_db *db, int64_t run_id,
                                              const kvr_profile_costs_params *p,
                                              kvr_search_costs **out,
                                              kvr_profile_costs_info *info, kvr_error *err);

#ifdef __cplusplus
}
#endif
#endif /* KVR_PROFILER_H */
