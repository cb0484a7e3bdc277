/* session.c -- kvr_session_run: partition choice (explicit, even, auto from a predictor file or
 * the store), the repeated prefill, the predicted TTFT and drift, the measured run's record. */
#include "kvr_kvrp.h"
#include "kvr_session.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const session_partition_names[] = {"even", "explicit", "auto"};

const char *kvr_session_partition_name(kvr_session_partition s) {
    return s >= KVR_SESSION_PARTITION_EVEN && s <= KVR_SESSION_PARTITION_AUTO
               ? session_partition_names[s]
               : "unknown";
}

kvr_session_params kvr_session_params_default(void) {
    kvr_session_params p;
    memset(&p, 0, sizeof p);
    p.mode = KVR_MODE_SINGLE;
    p.n_ranks = 1;
    p.n_threads = 1;
    p.repeat = 1;
    p.bind = true;
    p.partition = KVR_SESSION_PARTITION_EVEN;
    p.generate = kvr_generate_params_default();
    return p;
}

void kvr_session_result_free(kvr_session_result *r) {
    if (!r) return;
    for (int32_t i = 0; i < r->n_runs; i++) kvr_prefill_result_free(&r->runs[i]);
    free(r->runs);
    kvr_generate_result_free(&r->gen);
    memset(r, 0, sizeof *r);
}

/* snprintf into a fixed field, truncating. */
static void session_text(char *dst, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void session_text(char *dst, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
}

/* The band a prediction is judged by and its two terms (< 0: not known). */
static void session_band(kvr_session_result *r, double band, double heldout, double spread) {
    r->err_band = band;
    const bool terms = band >= 0 && heldout >= 0 && spread >= 0;
    r->band_heldout = terms ? heldout : -1;
    r->band_spread = terms ? spread : -1;
}

static kvr_status session_fail(kvr_session_result *r, kvr_session_stage stage, kvr_status st) {
    r->stage = stage;
    return st;
}

/* What the printing rank holds between the steps. */
typedef struct session_pred {
    kvr_predictor *kp;
    kvr_predictor *kp_deg;    /* --mode auto: the store's KVR-P of the chosen degree */
    kvr_predict_costs *costs; /* the cost model behind the predicted TTFT (NULL: none) */
    int32_t costs_threads;
    int64_t profile_run_id;
} session_pred;

/* AUTO's predictor: the file, or the newest stored for p ranks and this model. Its cost model
 * (and error band) also serve the predicted TTFT. */
static kvr_status session_load_predictor(const kvr_session_params *p, session_pred *sp,
                                         kvr_session_result *r, kvr_error *err) {
    kvr_error e;
    const double t0 = kvr_time_us();
    kvr_predict_costs *costs = NULL;
    kvr_predictor_meta meta;
    kvr_status st;
    if (p->predictor_path) {
        if ((st = kvr_predictor_file_load(p->predictor_path, &sp->kp, &costs, &meta, &e)) != KVR_OK)
            return kvr_error_set(err, st, "--predictor: %s", e.msg);
        r->predictor_id = meta.predictor_id;
        session_text(r->predictor_from, sizeof r->predictor_from, "predictor file %s",
                     p->predictor_path);
    } else {
        const char *path = kvr_db_path(p->db);
        kvr_db_predictor row;
        st = kvr_db_predictor_latest_for_model(p->db, p->n_ranks, p->model_record, &row, &e);
        if (st == KVR_ERR_NOT_FOUND)
            return kvr_error_set(err, st,
                                 "--partition auto: no %d-rank KVR-P predictor for model %s in "
                                 "%s; make one with kvr-fit --db %s --run RUN --kvrp --ranks %d",
                                 p->n_ranks, p->model_record->name, path, path, p->n_ranks);
        if (st != KVR_OK) return kvr_error_set(err, st, "--partition auto: %s", e.msg);
        char name[64];
        session_text(name, sizeof name, "%s: predictor %lld", path, (long long)row.id);
        st = kvr_predictor_file_parse(row.json, strlen(row.json), name, &sp->kp, &costs, &meta,
                                      &e);
        r->predictor_id = row.id;
        session_text(r->predictor_from, sizeof r->predictor_from, "predictor %lld in %s",
                     (long long)row.id, path);
        kvr_db_free(row.json);
        if (st != KVR_OK) return kvr_error_set(err, st, "--partition auto: %s", e.msg);
    }
    r->has_predictor = true;
    r->predictor_load_ms = (kvr_time_us() - t0) * 1e-3;
    if (costs) {
        sp->costs = costs;
        session_band(r, meta.err_band, meta.band_e2e, meta.band_spread);
        sp->costs_threads = meta.n_threads;
        sp->profile_run_id = meta.run_id;
        session_text(r->cost_model_from, sizeof r->cost_model_from, "the cost model of %s",
                     r->predictor_from);
    }
    return KVR_OK;
}

/* The newest stored predictor of n ranks for this model (its file form: predictor, cost model,
 * meta). KVR_ERR_NOT_FOUND when there is none. */
static kvr_status session_store_row(const kvr_session_params *p, int32_t n, kvr_predictor **kp,
                                    kvr_predict_costs **costs, kvr_predictor_meta *meta,
                                    int64_t *id, kvr_error *err) {
    kvr_db_predictor row;
    KVR_TRY(kvr_db_predictor_latest_for_model(p->db, n, p->model_record, &row, err));
    char name[64];
    session_text(name, sizeof name, "%s: predictor %lld", kvr_db_path(p->db), (long long)row.id);
    kvr_status st = kvr_predictor_file_parse(row.json, strlen(row.json), name, kp, costs, meta, err);
    *id = row.id;
    kvr_db_free(row.json);
    return st;
}

/* --mode auto's predictor from the store: the newest of the most ranks offered (n_ranks down to
 * 2) that carries a strategy table (else the first found, to say it has none). */
static kvr_status session_load_store_any(const kvr_session_params *p, session_pred *sp,
                                         kvr_session_result *r, kvr_error *err) {
    kvr_error e;
    const char *path = kvr_db_path(p->db);
    for (int32_t n = p->n_ranks; n >= 2 && !kvr_predictor_strategy_table(sp->kp); n--) {
        kvr_predictor *kp = NULL;
        kvr_predict_costs *costs = NULL;
        kvr_predictor_meta meta;
        int64_t id = 0;
        kvr_status st = session_store_row(p, n, &kp, &costs, &meta, &id, &e);
        if (st == KVR_ERR_NOT_FOUND) continue;
        if (st != KVR_OK) return kvr_error_set(err, st, "--mode auto: %s", e.msg);
        if (sp->kp && !kvr_predictor_strategy_table(kp)) { /* keep the first found */
            kvr_predictor_destroy(kp);
            kvr_predict_costs_destroy(costs);
            continue;
        }
        kvr_predictor_destroy(sp->kp);
        kvr_predict_costs_destroy(sp->costs);
        sp->kp = kp;
        sp->costs = costs;
        session_band(r, meta.err_band, meta.band_e2e, meta.band_spread);
        sp->costs_threads = meta.n_threads;
        sp->profile_run_id = meta.run_id;
        r->predictor_id = id;
        session_text(r->predictor_from, sizeof r->predictor_from, "predictor %lld in %s",
                     (long long)id, path);
    }
    if (!sp->kp)
        return kvr_error_set(err, KVR_ERR_NOT_FOUND,
                             "--mode auto: no KVR-P predictor of 2..%d ranks for model %s in %s; "
                             "make one with kvr-fit --db %s --run RUN --kvrp --ranks 2,4,8",
                             p->n_ranks, p->model_record->name, path, path);
    r->has_predictor = true;
    if (sp->costs)
        session_text(r->cost_model_from, sizeof r->cost_model_from, "the cost model of %s",
                     r->predictor_from);
    return KVR_OK;
}

/* --mode auto: the strategy table's choice for this prompt within n_ranks ranks among the
 * strategies the runtime runs here, and its partition; q becomes the run's parameters. */
static kvr_status session_auto_mode(const kvr_session_params *p, int64_t n_tokens,
                                    session_pred *sp, kvr_session_result *r,
                                    kvr_session_params *q, kvr_error *err) {
    kvr_error e;
    const double t_load = kvr_time_us();
    kvr_status st;
    if (p->n_ranks == 1) { /* nothing to choose: one rank runs single */
        session_text(r->predictor_from, sizeof r->predictor_from, "one rank offered (single)");
        r->strategy = KVR_STRATEGY_SINGLE;
        r->mode = KVR_MODE_SINGLE;
        r->n_ranks = 1;
        r->plan_in_range = true;
        r->plan_ttft_ms = -1;
        *q = *p;
        q->mode = KVR_MODE_SINGLE;
        q->auto_mode = false;
        q->partition = KVR_SESSION_PARTITION_EVEN;
        q->partition_text = NULL;
        r->partition_source = q->partition;
        return KVR_OK;
    }
    if (p->predictor_path) {
        st = session_load_predictor(p, sp, r, &e);
        if (st != KVR_OK) {
            kvr_error_set(err, st, "%s", e.msg);
            return session_fail(r, KVR_SESSION_STAGE_PREDICTOR, st);
        }
    } else if (!p->db) {
        kvr_error_set(err, KVR_ERR_INVALID_ARG,
                      "--mode auto needs a predictor: --predictor FILE or --db PATH");
        return session_fail(r, KVR_SESSION_STAGE_INPUT, KVR_ERR_INVALID_ARG);
    } else if ((st = session_load_store_any(p, sp, r, err)) != KVR_OK) {
        return session_fail(r, KVR_SESSION_STAGE_PREDICTOR, st);
    }
    r->predictor_load_ms = (kvr_time_us() - t_load) * 1e-3;
    const kvr_strategy_table *plan = kvr_predictor_strategy_table(sp->kp);
    if (!plan) {
        kvr_error_set(err, KVR_ERR_NOT_FOUND,
                      "--mode auto: %s has no strategy table (it was made before kvr-fit built "
                      "one): fit again with kvr-fit --kvrp --ranks 2,4,8 (and --export FILE), or "
                      "choose the mode yourself (--mode kvr --partition auto)",
                      r->predictor_from);
        return session_fail(r, KVR_SESSION_STAGE_PREDICTOR, KVR_ERR_NOT_FOUND);
    }
    const unsigned runnable = kvr_strategy_runnable_mask(
        p->backend ? kvr_backend_name(p->backend) : "cpu", kvr_comm_transport_name(p->transport));
    kvr_strategy_choice ch;
    int64_t chunks[KVR_MAX_RANKS];
    const double t0 = kvr_time_us();
    st = kvr_strategy_table_choose(plan, n_tokens, p->n_ranks, runnable, &ch, &e);
    bool kvrs = st == KVR_OK && ch.strategy == KVR_STRATEGY_KVR_S;
    const kvr_predictor *kp = sp->kp;
    if (kvrs && kvr_predictor_predict(kp, ch.n_ranks, n_tokens, chunks, NULL) != KVR_OK) {
        kvrs = false; /* KVR-P has no fit for that degree here: the store's, else even */
        kvr_predict_costs *c2 = NULL;
        kvr_predictor_meta m2;
        int64_t id2 = 0;
        if (p->db && !p->predictor_path &&
            session_store_row(p, ch.n_ranks, &sp->kp_deg, &c2, &m2, &id2, NULL) == KVR_OK) {
            kp = sp->kp_deg;
            kvrs = kvr_predictor_predict(kp, ch.n_ranks, n_tokens, chunks, NULL) == KVR_OK;
        }
        kvr_predict_costs_destroy(c2);
    }
    r->plan_us = kvr_time_us() - t0;
    if (st != KVR_OK) {
        kvr_error_set(err, st, "--mode auto (%s): %s", r->predictor_from, e.msg);
        return session_fail(r, KVR_SESSION_STAGE_PREDICTOR, st);
    }
    /* the same call warm: the mean of 1000 (what a server pays per request) */
    const double t1 = kvr_time_us();
    for (int k = 0; k < 1000; k++) {
        kvr_strategy_choice c2;
        int64_t tmp[KVR_MAX_RANKS];
        if (kvr_strategy_table_choose(plan, n_tokens - (k & 1), p->n_ranks, runnable, &c2,
                                      NULL) == KVR_OK &&
            c2.strategy == KVR_STRATEGY_KVR_S)
            kvr_predictor_predict(kp, c2.n_ranks, n_tokens - (k & 1), tmp, NULL);
    }
    r->plan_warm_us = (kvr_time_us() - t1) / 1000;
    if (ch.strategy == KVR_STRATEGY_KVR_S && !kvrs) {
        ch.strategy = KVR_STRATEGY_KVR_E;
        session_text(r->plan_note, sizeof r->plan_note,
                     "KVR-P has no %d-rank fit: kvr-s ran with the even split", ch.n_ranks);
    }
    r->strategy = ch.strategy;
    r->mode = kvr_strategy_mode(ch.strategy);
    r->n_ranks = ch.n_ranks;
    r->plan_context = ch.context;
    r->plan_in_range = ch.in_range;
    r->plan_ttft_ms = ch.ttft_us * 1e-3;
    *q = *p;
    q->mode = r->mode;
    q->n_ranks = ch.n_ranks;
    q->auto_mode = false;
    q->partition = kvrs ? KVR_SESSION_PARTITION_AUTO : KVR_SESSION_PARTITION_EVEN;
    q->partition_text = NULL;
    if (kvrs) memcpy(r->partition, chunks, (size_t)ch.n_ranks * sizeof *chunks);
    r->partition_source = q->partition;
    return KVR_OK;
}

/* AUTO: the printing rank predicts; every rank gets its answer (a failure ends all). */
static kvr_status session_auto_partition(const kvr_session_params *p, int64_t n_tokens,
                                         bool printer, session_pred *sp, kvr_session_result *r,
                                         kvr_error *err) {
    struct {
        int32_t ok;
        int64_t chunks[KVR_MAX_RANKS];
    } mine;
    memset(&mine, 0, sizeof mine);
    kvr_error e = {0};
    kvr_status why = KVR_OK; /* the printing rank's failure */
    if (printer) {
        if (p->n_ranks == 1) {
            mine.chunks[0] = n_tokens;
            mine.ok = 1;
            session_text(r->predictor_from, sizeof r->predictor_from,
                         "one rank (the whole prompt)");
        } else if ((why = session_load_predictor(p, sp, r, &e)) == KVR_OK) {
            double t0 = kvr_time_us();
            why = kvr_predictor_predict(sp->kp, p->n_ranks, n_tokens, mine.chunks, &e);
            r->predict_us = kvr_time_us() - t0;
            if (why != KVR_OK) {
                char msg[sizeof e.msg];
                memcpy(msg, e.msg, sizeof msg);
                kvr_error_set(&e, why, "--partition auto (%s): %s", r->predictor_from, msg);
            } else {
                mine.ok = 1;
                /* the same call warm: the mean of 1000 (what a server pays per request) */
                int64_t tmp[KVR_MAX_RANKS];
                t0 = kvr_time_us();
                for (int k = 0; k < 1000; k++)
                    kvr_predictor_predict(sp->kp, p->n_ranks, n_tokens - (k & 1), tmp, NULL);
                r->predict_warm_us = (kvr_time_us() - t0) / 1000;
            }
        }
    }
    if (p->comm) {
        kvr_error ce;
        kvr_status st = kvr_comm_ctrl_bcast(p->comm, 0, &mine, sizeof mine, &ce);
        if (st != KVR_OK) {
            kvr_error_set(err, st, "--partition auto: %s", ce.msg);
            return session_fail(r, KVR_SESSION_STAGE_COMM, st);
        }
    }
    if (!mine.ok) {
        if (printer)
            kvr_error_set(err, why != KVR_OK ? why : KVR_ERR_INTERNAL, "%s", e.msg);
        else
            kvr_error_set(err, KVR_ERR_NOT_FOUND, "--partition auto: rank 0 found no partition");
        return session_fail(r, KVR_SESSION_STAGE_PREDICTOR, why != KVR_OK ? why : KVR_ERR_NOT_FOUND);
    }
    memcpy(r->partition, mine.chunks, (size_t)p->n_ranks * sizeof *r->partition);
    return KVR_OK;
}

/* The newest stored cost model of this model profiled with n_threads threads per rank. */
static void session_store_costs(const kvr_session_params *p, session_pred *sp,
                                 kvr_session_result *r) {
    kvr_error e;
    kvr_db_fit *fits = NULL;
    int64_t n = 0;
    if (kvr_db_fits_list_for_model(p->db, "costs", p->model_record, &fits, &n, &e) != KVR_OK) {
        session_text(r->no_prediction, sizeof r->no_prediction, "%s", e.msg);
        return;
    }
    bool other_threads = false;
    for (int64_t i = 0; i < n && !sp->costs; i++) { /* newest first */
        const kvr_db_fit *f = &fits[i];
        kvr_predict_run_fit rf;
        if (kvr_predict_run_fit_from_json(f->json, strlen(f->json), "fit", &rf, &e) != KVR_OK)
            continue;
        if (rf.n_threads != p->n_threads) {
            other_threads = true;
            kvr_predict_run_fit_free(&rf);
            continue;
        }
        sp->costs = rf.costs;
        rf.costs = NULL;
        session_band(r, rf.err_band, rf.n_e2e > 0 ? rf.band_e2e : -1,
                     rf.n_e2e > 0 ? rf.band_spread : -1);
        sp->costs_threads = rf.n_threads;
        r->cost_model_fit_id = f->id;
        sp->profile_run_id = rf.run_id;
        session_text(r->cost_model_from, sizeof r->cost_model_from,
                     "cost model fit %lld (profile run %lld)", (long long)f->id,
                     (long long)rf.run_id);
        kvr_predict_run_fit_free(&rf);
    }
    kvr_db_fits_free(fits, n);
    if (!sp->costs && other_threads)
        session_text(r->no_prediction, sizeof r->no_prediction,
                     "no cost model of this model profiled with %d thread(s) per rank "
                     "(kvr-profile --threads %d, then kvr-fit --run RUN)",
                     p->n_threads, p->n_threads);
    else if (!sp->costs)
        session_text(r->no_prediction, sizeof r->no_prediction,
                     "no cost model of this model in the store (kvr-profile, then kvr-fit --run "
                     "RUN)");
}

/* The cost model: the predictor's (auto), else a predictor file's, else the store's; none when
 * it was profiled with another thread count. */
static kvr_status session_costs(const kvr_session_params *p, session_pred *sp,
                                kvr_session_result *r, kvr_error *err) {
    if (!sp->costs && p->predictor_path && p->partition != KVR_SESSION_PARTITION_AUTO) {
        kvr_predictor *kp = NULL;
        kvr_predictor_meta meta;
        kvr_error e;
        kvr_status st = kvr_predictor_file_load(p->predictor_path, &kp, &sp->costs, &meta, &e);
        if (st != KVR_OK) {
            kvr_error_set(err, st, "--predictor: %s", e.msg);
            return session_fail(r, KVR_SESSION_STAGE_COSTS, st);
        }
        kvr_predictor_destroy(kp);
        session_band(r, meta.err_band, meta.band_e2e, meta.band_spread);
        sp->costs_threads = meta.n_threads;
        sp->profile_run_id = meta.run_id;
        session_text(r->cost_model_from, sizeof r->cost_model_from,
                     "the cost model of predictor file %s", p->predictor_path);
        if (!sp->costs)
            session_text(r->no_prediction, sizeof r->no_prediction,
                         "predictor file %s has no cost model", p->predictor_path);
    }
    if (p->db && !sp->costs && !r->no_prediction[0]) session_store_costs(p, sp, r);
    if (!sp->costs && !r->no_prediction[0])
        session_text(r->no_prediction, sizeof r->no_prediction,
                     "no store or predictor file (--db, --predictor)");
    if (sp->costs && sp->costs_threads > 0 && sp->costs_threads != p->n_threads) {
        session_text(r->no_prediction, sizeof r->no_prediction,
                     "%s was profiled with %d thread(s) per rank, this run uses %d",
                     r->cost_model_from, sp->costs_threads, p->n_threads);
        kvr_predict_costs_destroy(sp->costs);
        sp->costs = NULL;
    }
    return KVR_OK;
}

static int session_cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The prefill, repeat times; the median run by TTFT. */
static kvr_status session_prefill(const kvr_session_params *p, const int32_t *tokens,
                                  int64_t n_tokens, const int64_t *partition,
                                  kvr_session_result *r, kvr_error *err) {
    const int32_t n = p->repeat > 0 ? p->repeat : 1;
    double *ttfts = calloc((size_t)n, sizeof *ttfts);
    r->runs = calloc((size_t)n, sizeof *r->runs);
    if (!r->runs || !ttfts) {
        free(ttfts);
        kvr_error_set(err, KVR_ERR_NOMEM, "out of memory");
        return session_fail(r, KVR_SESSION_STAGE_PREFILL, KVR_ERR_NOMEM);
    }
    kvr_prefill_params pp = kvr_prefill_params_default();
    pp.backend = p->backend;
    pp.mode = p->mode;
    pp.n_ranks = p->n_ranks;
    pp.n_threads = p->n_threads;
    pp.bind = p->bind;
    pp.partition = partition;
    pp.progress = p->progress;
    pp.progress_user = p->progress_user;
    if (!p->comm) pp.transport = p->transport;
    const int32_t n_predict = p->generate.n_predict;
    /* the session, before the prompt: every rank's weights and workspace (sized for this
     * prompt's chunk and positions, and decode's room on the emitting rank), touched; the
     * BLAS pool settled. Each run's TTFT then holds what depends on its prompt. */
    const double t_ready = kvr_time_us();
    kvr_prefill_ready *ready = NULL;
    {
        kvr_prefill_params rp = pp;
        rp.decode_reserve = n_predict > 0 ? n_predict : 0;
        kvr_error e;
        kvr_status st = kvr_prefill_ready_create(p->model, &rp, n_tokens,
                                                 p->comm ? kvr_comm_rank(p->comm) : -1, &ready, &e);
        if (st != KVR_OK) {
            free(ttfts);
            kvr_error_set(err, st, "session (%s, %d ranks, %lld tokens): %s",
                          kvr_mode_name(p->mode), p->n_ranks, (long long)n_tokens, e.msg);
            return session_fail(r, KVR_SESSION_STAGE_PREFILL, st);
        }
    }
    pp.ready = ready;
    { /* and a warm-up, as a server's before its first request: one prefill of a short synthetic
       * prompt on the prepared ranks (even split; its first token dropped), so the first timed
       * run does not meet the BLAS kernels' buffers, the lazily bound library calls and the
       * code paths for the first time either */
        const int64_t w = KVR_MIN(n_tokens, (int64_t)64 * p->n_ranks);
        const int32_t vocab = kvr_model_get_config(p->model)->vocab_size;
        int32_t *ids = malloc((size_t)w * sizeof *ids);
        kvr_prefill_params wp = pp;
        wp.partition = NULL;
        wp.progress = NULL;
        wp.keep_logits = false;
        kvr_prefill_result wr;
        kvr_error e;
        kvr_status st = ids ? KVR_OK : kvr_error_set(&e, KVR_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; ids && i < w; i++) ids[i] = (int32_t)(i % vocab);
        if (st == KVR_OK)
            st = p->comm ? kvr_prefill_run_rank(p->model, p->comm, ids, w, &wp, &wr, &e)
                         : kvr_prefill_run(p->model, ids, w, &wp, &wr, &e);
        if (st == KVR_OK) kvr_prefill_result_free(&wr);
        free(ids);
        if (st != KVR_OK) {
            free(ttfts);
            kvr_prefill_ready_destroy(ready);
            kvr_error_set(err, st, "session warm-up (%s, %d ranks, %lld tokens): %s",
                          kvr_mode_name(p->mode), p->n_ranks, (long long)w, e.msg);
            return session_fail(r, KVR_SESSION_STAGE_PREFILL, st);
        }
        r->session_warmup_tokens = w;
    }
    r->session_ms = (kvr_time_us() - t_ready) * 1e-3;
    r->session_ranks = kvr_prefill_ready_ranks(ready);
    for (int32_t i = 0; i < n; i++) {
        /* decode follows the last run: its emitting rank keeps the logits and its workspace */
        pp.keep_logits = (p->keep_logits || n_predict > 0) && i == n - 1;
        pp.decode_reserve = n_predict > 0 && i == n - 1 ? n_predict : 0;
        kvr_error e;
        kvr_status st = p->comm ? kvr_prefill_run_rank(p->model, p->comm, tokens, n_tokens, &pp,
                                                       &r->runs[i], &e)
                                : kvr_prefill_run(p->model, tokens, n_tokens, &pp, &r->runs[i], &e);
        if (st != KVR_OK) {
            free(ttfts);
            kvr_prefill_ready_destroy(ready);
            kvr_error_set(err, st, "prefill (%s, %d ranks, %lld tokens): %s",
                          kvr_mode_name(p->mode), p->n_ranks, (long long)n_tokens, e.msg);
            return session_fail(r, KVR_SESSION_STAGE_PREFILL, st);
        }
        r->n_runs++;
        ttfts[i] = r->runs[i].ttft_ms;
    }
    kvr_prefill_ready_destroy(ready); /* a decoder keeps the workspace it was handed */
    qsort(ttfts, (size_t)n, sizeof *ttfts, session_cmp_double);
    const double med = ttfts[(n - 1) / 2];
    for (int32_t i = 0; i < n; i++)
        if (r->runs[i].ttft_ms == med) r->median = i;
    r->ttft_min_ms = ttfts[0];
    r->ttft_max_ms = ttfts[n - 1];
    free(ttfts);
    return KVR_OK;
}

/* Decode after the last run: its emitting rank generates; under MPI it then sends the tokens
 * and step times (or its error) to every rank. */
static kvr_status session_decode(const kvr_session_params *p, kvr_session_result *r,
                                 kvr_error *err) {
    kvr_prefill_result *last = &r->runs[r->n_runs - 1];
    const int32_t n_predict = p->generate.n_predict;
    kvr_error e = {0};
    kvr_status st = KVR_OK;
    if (last->decoder) {
        st = kvr_generate(last->decoder, last->logits, &p->generate, &r->gen, &e);
        kvr_decoder_destroy(last->decoder); /* the cache is not needed any more */
        last->decoder = NULL;
    } else if (!p->comm) {
        st = kvr_error_set(&e, KVR_ERR_INTERNAL, "the emitting rank kept no decoder");
    }
    if (p->comm) {
        struct {
            int32_t st, n_ids, n_steps, stop;
            char msg[sizeof e.msg];
        } h;
        memset(&h, 0, sizeof h);
        const int32_t root = kvr_prefill_emitter(p->mode, p->n_ranks);
        const bool mine = kvr_comm_rank(p->comm) == root;
        if (mine) {
            h.st = st, h.n_ids = r->gen.n_ids, h.n_steps = r->gen.n_steps, h.stop = r->gen.stop;
            memcpy(h.msg, e.msg, sizeof h.msg);
        }
        const size_t body = (size_t)n_predict * (sizeof(int32_t) + sizeof(double));
        char *buf = malloc(body);
        kvr_error ce;
        kvr_status cs = buf ? kvr_comm_ctrl_bcast(p->comm, root, &h, sizeof h, &ce)
                            : kvr_error_set(&ce, KVR_ERR_NOMEM, "out of memory");
        if (cs == KVR_OK && mine && h.st == KVR_OK) {
            memcpy(buf, r->gen.ids, (size_t)h.n_ids * sizeof(int32_t));
            memcpy(buf + (size_t)n_predict * sizeof(int32_t), r->gen.step_ms,
                   (size_t)h.n_steps * sizeof(double));
        }
        if (cs == KVR_OK && h.st == KVR_OK) cs = kvr_comm_ctrl_bcast(p->comm, root, buf, body, &ce);
        if (cs == KVR_OK && !mine && h.st == KVR_OK) {
            kvr_generate_result *g = &r->gen;
            g->ids = malloc((size_t)n_predict * sizeof *g->ids);
            g->step_ms = malloc((size_t)n_predict * sizeof *g->step_ms);
            if (!g->ids || !g->step_ms) {
                cs = kvr_error_set(&ce, KVR_ERR_NOMEM, "out of memory");
            } else {
                memcpy(g->ids, buf, (size_t)h.n_ids * sizeof(int32_t));
                memcpy(g->step_ms, buf + (size_t)n_predict * sizeof(int32_t),
                       (size_t)h.n_steps * sizeof(double));
                g->n_ids = h.n_ids, g->n_steps = h.n_steps, g->stop = (kvr_stop_reason)h.stop;
                kvr_generate_stats(g->step_ms, g->n_steps, g);
                if (p->generate.tok)
                    cs = kvr_generate_text(p->generate.tok, g->ids, g->n_ids, g->stop, &g->text,
                                           &g->text_len, &ce);
            }
        }
        free(buf);
        if (cs != KVR_OK) {
            kvr_error_set(err, cs, "decode: %s", ce.msg);
            return session_fail(r, KVR_SESSION_STAGE_DECODE, cs);
        }
        if (!mine && h.st != KVR_OK) {
            st = (kvr_status)h.st;
            kvr_error_set(&e, st, "rank %d: %s", root, h.msg);
        }
    }
    if (st != KVR_OK) {
        kvr_error_set(err, st, "decode: %s", e.msg);
        return session_fail(r, KVR_SESSION_STAGE_DECODE, st);
    }
    return KVR_OK;
}

/* The store's newest calibration for this model, profile run, strategy, ranks, threads and
 * transport (kvr-fit --calibrate): the prediction becomes a * raw + b, the band the
 * calibration's. None found: the raw prediction and the cost model's band stay. */
static void session_calibrate(const kvr_session_params *p, const session_pred *sp,
                              kvr_strategy strat, kvr_session_result *r) {
    if (!p->db) return;
    kvr_db_calibration key, c;
    memset(&key, 0, sizeof key);
    key.model_id = p->model_id;
    key.profile_run_id = sp->profile_run_id;
    session_text(key.strategy, sizeof key.strategy, "%s", kvr_strategy_name(strat));
    key.n_ranks = p->n_ranks;
    key.n_threads = p->n_threads;
    session_text(key.transport, sizeof key.transport, "%s",
                 p->comm ? "mpi" : kvr_comm_transport_name(p->transport));
    if (kvr_db_calibration_latest(p->db, &key, &c, NULL) != KVR_OK) return;
    r->calibration_id = c.id;
    r->calib_a = c.a;
    r->calib_b = c.b;
    r->predicted_ttft_ms = kvr_calib_apply(c.a, c.b, r->predicted_raw_ms);
    session_band(r, c.band, c.cv_q90_err, c.spread);
}

/* Record the median run in the store. */
static void session_record(const kvr_session_params *p, const session_pred *sp,
                           kvr_session_result *r) {
    if (!p->db || !p->db_writable) return;
    const kvr_prefill_result *run = kvr_session_median(r);
    kvr_db_measured_run m;
    memset(&m, 0, sizeof m);
    m.model_id = p->model_id;
    m.device_id = p->device_id;
    m.profile_run_id = sp->profile_run_id;
    session_text(m.mode, sizeof m.mode, "%s", kvr_mode_name(p->mode));
    m.n_ranks = p->n_ranks;
    m.n_threads = p->n_threads;
    m.n_tokens = run->n_tokens;
    char pstr[4096]; /* fits: at most KVR_MAX_RANKS chunks of a prompt's token count each */
    if (kvr_partition_format(run->partition, run->n_ranks, pstr, sizeof pstr, NULL) != KVR_OK)
        pstr[0] = 0;
    session_text(m.partition, sizeof m.partition, "%s", pstr); /* truncated past 1023 bytes */
    session_text(m.transport, sizeof m.transport, "%s",
                 p->comm ? "mpi" : kvr_comm_transport_name(p->transport));
    m.ttft_ms = run->ttft_ms;
    m.predicted_ttft_ms = r->predicted_raw_ms; /* raw: what the next calibration fits */
    m.calibrated_ttft_ms = r->calibration_id ? r->predicted_ttft_ms : -1;
    m.calibration_id = r->calibration_id;
    session_text(m.kvr_version, sizeof m.kvr_version, "%s", kvr_version());
    session_text(m.git_commit, sizeof m.git_commit, "%s", kvr_build_commit());
    if (gethostname(m.host, sizeof m.host) != 0) m.host[0] = 0;
    m.host[sizeof m.host - 1] = 0;
    int k = snprintf(m.note, sizeof m.note, "kvr-run: median of %d run(s)", r->n_runs);
    if (r->gen.n_ids > 0 && k > 0 && (size_t)k < sizeof m.note) /* the schema has no columns
                                                                   for decode: the note */
        k += snprintf(m.note + k, sizeof m.note - (size_t)k,
                      "; decoded %d token(s) after the last run, stop %s, TPOT %.3f ms",
                      r->gen.n_ids, kvr_stop_reason_name(r->gen.stop), r->gen.tpot_ms);
    if (sp->costs && k > 0 && (size_t)k < sizeof m.note)
        snprintf(m.note + k, sizeof m.note - (size_t)k, "; predicted by %.180s",
                 r->cost_model_from);
    session_text(m.partition_source, sizeof m.partition_source, "%s",
                 kvr_session_partition_name(r->partition_source));
    m.predictor_id = r->predictor_id;
    m.drift = r->drift;
    kvr_error e;
    if (kvr_db_measured_run_put(p->db, &m, &e) != KVR_OK) {
        session_text(r->db_note, sizeof r->db_note, "not recorded: %s", e.msg);
        return;
    }
    r->measured_run_id = m.id;
}

kvr_status kvr_session_run(const kvr_session_params *p, const int32_t *tokens, int64_t n_tokens,
                           kvr_session_result *out, kvr_error *err) {
    kvr_session_result *r = out;
    memset(r, 0, sizeof *r);
    r->err_band = r->band_heldout = r->band_spread = -1;
    r->predicted_ttft_ms = r->predicted_raw_ms = -1;
    r->predicted_scale = 1;
    r->prediction_error = r->online_error = NAN;
    r->online_predicted_ms = -1;
    const bool printer = !p->comm || kvr_comm_rank(p->comm) == 0;
    bool auto_part = p->partition == KVR_SESSION_PARTITION_AUTO;
    r->partition_source = p->partition;
    if (p->partition == KVR_SESSION_PARTITION_EXPLICIT && p->partition_text &&
        strcmp(p->partition_text, "even") == 0)
        r->partition_source = KVR_SESSION_PARTITION_EVEN;
    if (!(p->online_alpha >= 0 && p->online_alpha <= 1)) {
        kvr_error_set(err, KVR_ERR_INVALID_ARG, "--online-refit %g: need a weight in (0, 1]",
                      p->online_alpha);
        return session_fail(r, KVR_SESSION_STAGE_INPUT, KVR_ERR_INVALID_ARG);
    }
    if (p->n_ranks < 1 || p->n_ranks > KVR_MAX_RANKS) {
        kvr_error_set(err, KVR_ERR_INVALID_ARG, "--ranks %d: out of range", p->n_ranks);
        return session_fail(r, KVR_SESSION_STAGE_INPUT, KVR_ERR_INVALID_ARG);
    }
    session_pred sp;
    memset(&sp, 0, sizeof sp);
    kvr_status st = KVR_OK;
    const int64_t *partition = NULL;
    r->mode = p->mode;
    r->n_ranks = p->n_ranks;
    r->strategy = KVR_STRATEGY_COUNT;
    kvr_session_params q;
    if (p->auto_mode) {
        if (p->comm) {
            kvr_error_set(err, KVR_ERR_INVALID_ARG,
                          "--mode auto runs ranks as threads (an MPI job's size is fixed): give "
                          "--mode with --transport mpi");
            return session_fail(r, KVR_SESSION_STAGE_INPUT, KVR_ERR_INVALID_ARG);
        }
        if ((st = session_auto_mode(p, n_tokens, &sp, r, &q, err)) != KVR_OK) goto done;
        p = &q;
        auto_part = false; /* chosen above */
        if (p->partition == KVR_SESSION_PARTITION_AUTO) partition = r->partition;
    } else if (auto_part && p->n_ranks > n_tokens) {
        kvr_error_set(err, KVR_ERR_INVALID_ARG,
                      "--ranks %d: more ranks than the %lld prompt tokens", p->n_ranks,
                      (long long)n_tokens);
        return session_fail(r, KVR_SESSION_STAGE_INPUT, KVR_ERR_INVALID_ARG);
    }
    if (auto_part) {
        if ((st = session_auto_partition(p, n_tokens, printer, &sp, r, err)) != KVR_OK) goto done;
        partition = r->partition;
    }
    if (printer && (st = session_costs(p, &sp, r, err)) != KVR_OK) goto done;
    if (p->partition == KVR_SESSION_PARTITION_EXPLICIT) {
        kvr_error e;
        st = kvr_partition_parse(p->partition_text ? p->partition_text : "even", p->n_ranks,
                                 n_tokens, r->partition, &e);
        if (st != KVR_OK) {
            kvr_error_set(err, st, "--partition: %s", e.msg);
            r->stage = KVR_SESSION_STAGE_INPUT;
            goto done;
        }
        partition = r->partition;
    }
    if (p->n_ranks > n_tokens) {
        st = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                           "--ranks %d: more ranks than the %lld prompt tokens", p->n_ranks,
                           (long long)n_tokens);
        r->stage = KVR_SESSION_STAGE_INPUT;
        goto done;
    }
    if (p->generate.n_predict < 0 ||
        (p->generate.n_predict > 0 &&
         kvr_sampler_params_check(&p->generate.sampling, err) != KVR_OK)) {
        if (p->generate.n_predict < 0)
            kvr_error_set(err, KVR_ERR_INVALID_ARG, "--n-predict %d: need >= 0",
                          p->generate.n_predict);
        st = KVR_ERR_INVALID_ARG;
        r->stage = KVR_SESSION_STAGE_INPUT;
        goto done;
    }
    const int32_t max_ctx = kvr_model_get_config(p->model)->max_context;
    if (p->generate.n_predict > 0 && max_ctx > 0 &&
        n_tokens + p->generate.n_predict > max_ctx) {
        st = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                           "--n-predict %d: the prompt's %lld tokens and %d generated ones make "
                           "%lld, more than the model's context length of %d tokens: generate "
                           "at most %lld",
                           p->generate.n_predict, (long long)n_tokens, p->generate.n_predict,
                           (long long)(n_tokens + p->generate.n_predict), max_ctx,
                           (long long)(max_ctx > n_tokens ? max_ctx - n_tokens : 0));
        r->stage = KVR_SESSION_STAGE_INPUT;
        goto done;
    }
    if (p->mode == KVR_MODE_RING && 2 * (int64_t)p->n_ranks > n_tokens) {
        st = kvr_error_set(err, KVR_ERR_INVALID_ARG,
                           "--mode ring on %d ranks needs at least %d prompt tokens (2 zigzag "
                           "chunks per rank), the prompt has %lld: use at most %lld ranks",
                           p->n_ranks, 2 * p->n_ranks, (long long)n_tokens,
                           (long long)(n_tokens / 2));
        r->stage = KVR_SESSION_STAGE_INPUT;
        goto done;
    }
    if ((st = session_prefill(p, tokens, n_tokens, partition, r, err)) != KVR_OK) goto done;
    if (p->generate.n_predict > 0 && (st = session_decode(p, r, err)) != KVR_OK) goto done;
    const kvr_prefill_result *run = kvr_session_median(r);
    if (!partition) memcpy(r->partition, run->partition, (size_t)run->n_ranks * sizeof *r->partition);

    /* the prediction for this run, drift, and the record in the store */
    if (printer && sp.costs) {
        const kvr_strategy strat =
            kvr_mode_strategy(p->mode, r->partition_source == KVR_SESSION_PARTITION_EVEN);
        double us;
        kvr_error e;
        if (kvr_predict_costs_ttft(sp.costs, strat, p->n_ranks, n_tokens, run->partition, NULL,
                                   &us, &e) == KVR_OK) {
            r->predicted_raw_ms = r->predicted_ttft_ms = us * 1e-3;
            r->predicted_scale = kvr_predict_costs_scale(
                sp.costs,
                strat == KVR_STRATEGY_SINGLE ? KVR_MODE_SINGLE
                : strat == KVR_STRATEGY_TSP  ? KVR_MODE_TSP
                : strat == KVR_STRATEGY_RING ? KVR_MODE_RING
                                             : KVR_MODE_KVR,
                n_tokens, NULL);
            session_calibrate(p, &sp, strat, r);
            if (p->online_alpha > 0) { /* the runs in order, each predicted before it counts */
                kvr_calib_online on = kvr_calib_online_init(p->online_alpha);
                for (int32_t i = 0; i < r->n_runs; i++) {
                    r->online_predicted_ms = kvr_calib_online_predict(&on, r->predicted_ttft_ms);
                    r->online_error = r->runs[i].ttft_ms / r->online_predicted_ms - 1;
                    kvr_calib_online_update(&on, r->predicted_ttft_ms, r->runs[i].ttft_ms);
                }
                r->online_factor = on.factor;
            }
            r->prediction_error = run->ttft_ms / r->predicted_ttft_ms - 1;
            r->drift = r->err_band >= 0 && fabs(r->prediction_error) > r->err_band;
        } else {
            session_text(r->no_prediction, sizeof r->no_prediction, "%s", e.msg);
        }
    }
    if (r->predicted_ttft_ms < 0) r->cost_model_fit_id = 0;
    if (printer) session_record(p, &sp, r);
done:
    kvr_predictor_destroy(sp.kp);
    kvr_predictor_destroy(sp.kp_deg);
    kvr_predict_costs_destroy(sp.costs);
    return st;
}
