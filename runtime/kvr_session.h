/* kvr_session.h -- an inference session: the end of the data flow (DESIGN.md section 2). For one
 * prompt it chooses the partition (explicit, even, or auto: the KVR-P predictor of a predictor
 * file or the newest in the store for this model and rank count), runs the prefill (repeated,
 * the median-TTFT run kept), compares the measured TTFT with the one the fitted cost model
 * predicts (drift: further off than the fit's error band) and records the run in the store.
 * kvr-run parses its options, loads the model and the tokens, calls kvr_session_run and prints.
 *
 * Usage:   kvr_session_params sp = kvr_session_params_default();
 *          sp.model = model; sp.mode = KVR_MODE_KVR; sp.n_ranks = 2;
 *          sp.partition = KVR_SESSION_PARTITION_AUTO; sp.predictor_path = "kvrp.json";
 *          kvr_session_result res;
 *          if (kvr_session_run(&sp, ids, n_ids, &res, &err) == KVR_OK)
 *              printf("%.1f ms (predicted %.1f)\n", kvr_session_median(&res)->ttft_ms,
 *                     res.predicted_ttft_ms);
 *          kvr_session_result_free(&res);
 * Where it sits: runtime/ (library kvr_session) on top of the runtime, the store (kvr_db.h) and
 * the predict-time predictor (kvr_kvrp.h: no GSL); the model and device records it stores
 * come from the caller (kvr_profile_model_record, kvr_profile_device_cpu).
 * With params.generate.n_predict > 0 the last run's emitting rank then generates tokens
 * (kvr_decode.h) from the KV cache it holds: result.gen.
 * Under MPI every process calls it with its kvr_comm; the printing rank (rank 0) alone holds
 * the store and the predictor: it predicts, sends the partition to the others over the control
 * channel, compares and records.
 * Ownership: params, the model, the store and the token ids are borrowed for the call; the
 *            result owns its prefill results (kvr_session_result_free).
 * Threads:  one call at a time per store handle.
 */
#ifndef KVR_SESSION_H
#define KVR_SESSION_H
#include "kvr_db.h"
#include "kvr_runtime.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef enum kvr_session_partition {
    KVR_SESSION_PARTITION_EVEN,     /* the even split */
    KVR_SESSION_PARTITION_EXPLICIT, /* partition_text: "c0,c1,..." (or "even") */
    KVR_SESSION_PARTITION_AUTO,     /* KVR-P: predictor_path, else the store's newest predictor */
} kvr_session_partition;
/* "even", "explicit", "auto": the partition source a measured run records. */
KVR_API const char *kvr_session_partition_name(kvr_session_partition s);

typedef struct kvr_session_params {
    const kvr_model *model;
    const kvr_backend *backend; /* NULL = cpu */
    kvr_comm *comm;             /* this process's MPI endpoint; NULL = ranks as threads here */
    kvr_transport transport;    /* ranks as threads: threads (default), same-device or nccl */
    kvr_mode mode;
    int32_t n_ranks, n_threads; /* n_ranks: the job size under MPI */
    int32_t repeat;             /* prefills run; the median-TTFT one is reported (default 1) */
    bool bind;                  /* ranks as threads on CPUs of their own when they fit
                                   (kvr_prefill_params.bind; default true) */
    /* online refit of the (calibrated) prediction over the runs, in order: an exponentially
     * weighted factor with this weight, (0, 1]; 0 = off (default). kvr_calib_online. */
    double online_alpha;
    bool keep_logits;           /* the last run keeps the last token's logits (last rank) */
    kvr_session_partition partition;
    const char *partition_text; /* EXPLICIT */
    /* kvr-run --mode auto: the strategy table of the predictor (predictor_path, else the
     * store's newest for this model) picks the strategy, the degree (<= n_ranks, the most the
     * caller offers; 1 = single: do not parallelise) and the partition (kvr-s: KVR-P; the
     * others: the runtime's own split) among the strategies the runtime can run on this
     * backend and transport (kvr_strategy_runnable); mode and partition are then ignored.
     * Ranks as threads only (an MPI job's size is fixed). */
    bool auto_mode;
    const char *predictor_path; /* a predictor file (kvr-fit --export): AUTO's predictor, and its
                                   cost model predicts the TTFT; NULL = the store's */
    /* The printing rank's store (NULL: none): predictors and cost models by the model's content
     * hash, and where the run is recorded when writable. */
    kvr_db *db;
    bool db_writable;
    const kvr_db_model *model_record; /* the model's record (content hash, layers); with db */
    /* optional: kvr_prefill_params.progress for every run (the last rank, after each layer) */
    void (*progress)(void *user, int32_t layer, int32_t n_layers);
    void *progress_user;
    int64_t model_id, device_id;      /* their rows, recorded with the run (writable db) */
    /* decode after the prefill (generate.n_predict > 0; 0: prefill only): the last run's
     * emitting rank (kvr_prefill_emitter: the last rank; rank 0 for ring) keeps its workspace,
     * which holds the whole KV cache, and generates (kvr_generate: sampling, stop ids, the
     * streaming callback, which runs on that rank's process). Under MPI the tokens and step
     * times then go to every rank (result.gen). The prompt plus n_predict must fit the model's
     * context length (max_context, when the source states one). */
    kvr_generate_params generate;
} kvr_session_params;
/* cpu, one rank, one thread, one run, the even split, no store, no predictor. */
KVR_API kvr_session_params kvr_session_params_default(void);

/* Where kvr_session_run stopped with an error; the message says why (with kvr-run's option
 * names where the user chose the thing at fault). */
typedef enum kvr_session_stage {
    KVR_SESSION_STAGE_NONE,
    KVR_SESSION_STAGE_INPUT,     /* the request cannot run: more ranks than tokens, a bad
                                    explicit partition (a usage error) */
    KVR_SESSION_STAGE_PREDICTOR, /* AUTO, auto_mode: no predictor (auto_mode: or no strategy
                                    table), or it could not predict; every rank
                                    stops, the printing rank has the message */
    KVR_SESSION_STAGE_COMM,      /* sending the partition to the other ranks */
    KVR_SESSION_STAGE_COSTS,     /* the predictor file's cost model could not be read */
    KVR_SESSION_STAGE_PREFILL,   /* the prefill failed (every rank stops; none hangs) */
    KVR_SESSION_STAGE_DECODE,    /* the decode after it failed */
} kvr_session_stage;

typedef struct kvr_session_result {
    kvr_session_stage stage;        /* where an error happened (NONE on success) */
    /* the session's creation before the first prompt (kvr_prefill_ready_create, then a warm-up
     * prefill of session_warmup_tokens synthetic tokens on it): its time and the ranks it
     * prepared in this process (0: none -- ring, a device backend) */
    double session_ms;
    int32_t session_ranks;
    int64_t session_warmup_tokens;
    kvr_prefill_result *runs;       /* every run, in order (owned) */
    int32_t n_runs, median;         /* runs[median]: the median-TTFT run */
    double ttft_min_ms, ttft_max_ms;
    int64_t partition[KVR_MAX_RANKS]; /* the chosen partition (KVR; even: all equal) */
    kvr_session_partition partition_source;
    /* AUTO (the printing rank) */
    bool has_predictor;
    int64_t predictor_id;           /* the store's row, or the file's (0: none) */
    char predictor_from[600];       /* "predictor file F", "predictor N in DB", "one rank ..." */
    double predict_us, predict_warm_us; /* the call, and the mean of 1000 warm calls */
    double predictor_load_ms;
    /* auto_mode: what the strategy table chose (the run used mode and n_ranks) */
    kvr_strategy strategy;
    kvr_mode mode;
    int32_t n_ranks;
    int64_t plan_context;           /* the table's context whose entry answered */
    bool plan_in_range;             /* the prompt lies within the table's contexts */
    double plan_ttft_ms;            /* the table's TTFT of the choice at plan_context */
    double plan_us, plan_warm_us;   /* the choice with its partition, once and warm (mean) */
    char plan_note[256];            /* e.g. a kvr-s degree KVR-P has no fit for: even split */
    /* the prediction (the printing rank) */
    double predicted_ttft_ms;       /* < 0: none (no_prediction says why); calibrated when a
                                     * calibration applies, else the cost model's */
    double predicted_raw_ms;        /* the cost model's alone (< 0: none) */
    double predicted_scale;         /* the cost model's end-to-end scale for this schedule, in
                                     * predicted_raw_ms (kvr_predict_costs_scale; 1: none) */
    int64_t calibration_id;         /* the store's calibration applied (0: none) */
    double calib_a, calib_b;        /* its measured = a * predicted + b */
    double prediction_error;        /* measured / predicted - 1; NaN without a prediction */
    double err_band;                /* the calibration's band (held-out error + run-to-run
                                     * spread), else the cost model's error band (< 0: unknown) */
    /* its two terms (< 0: not known -- a cost model whose profile had no end-to-end check,
     * whose band is the per-op held-out error alone): the held-out error of end-to-end
     * predictions (the calibration's leave-one-out q90, or the profile's end-to-end check)
     * and the run-to-run spread (of the calibration's repeat sets, or of the check's repeats) */
    double band_heldout, band_spread;
    /* online refit (params online_alpha > 0): the factor after every run, the last run's
     * online prediction and its error */
    double online_factor, online_predicted_ms, online_error;
    bool drift;                     /* |prediction_error| > err_band */
    int64_t cost_model_fit_id;      /* the store's fit row behind the prediction (0: other) */
    char cost_model_from[700];
    char no_prediction[1024];
    /* the record (the printing rank) */
    int64_t measured_run_id;        /* 0: not recorded (db_note says why when it failed) */
    char db_note[1100];
    /* decode (generate.n_predict > 0): the generated tokens, their text and the time per
     * output token, on every rank */
    kvr_generate_result gen;
} kvr_session_result;

/* Choose the partition, run the prefill params->repeat times, predict the median run's TTFT,
 * compare, record. Every MPI rank calls it. *out is filled as far as it got (free it with
 * kvr_session_result_free either way); out->stage says where an error happened. */
KVR_API kvr_status kvr_session_run(const kvr_session_params *params, const int32_t *tokens,
                                   int64_t n_tokens, kvr_session_result *out, kvr_error *err);
KVR_API void kvr_session_result_free(kvr_session_result *r); /* NULL-safe; zeroes it */

/* What a session's prefill of n_tokens needs in this process (session_mem.c): the weights (the
 * model's arena in its stored types, loaded before) and, for every rank this process runs (all
 * of them with ranks as threads, its own under MPI), a workspace for its chunk and its positions
 * (kvr: the tokens up to the end of its chunk; tsp and single: all of them) -- activations,
 * attention and weight scratch, and the K/V cache of every layer -- in the CPU backend's layout. The partition is
 * the explicit one when it parses, else the even split (auto's is chosen later; KVR-P's
 * partitions are front-loaded, so the even split's last rank is what every kvr partition's
 * last rank holds: all positions). Bytes. */
typedef struct kvr_session_memory {
    double weights, workspaces, kv_cache;
    int32_t n_ranks_here;
} kvr_session_memory;
KVR_API kvr_status kvr_session_memory_estimate(const kvr_session_params *params,
                                               int64_t n_tokens, kvr_session_memory *out,
                                               kvr_error *err);
static inline const kvr_prefill_result *kvr_session_median(const kvr_session_result *r) {
    return &r->runs[r->median];
}

#ifdef __cplusplus
}
#endif
#endif /* KVR_SESSION_H */
