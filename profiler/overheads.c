/* overheads.c -- the schedules' fixed overheads (kvr_profile_overheads): each schedule the
 * runtime has (single; kvr, tsp and ring at the profiled rank count) run end to end on tiny
 * chunks at two depths of the model, its measured TTFT minus what the per-op model of the same
 * run predicts (the run's own layer samples, no overheads) stored as samples "ovh_<mode>"
 * (c = layers run, prefix = ranks). Two depths separate a per-run term from a per-layer-step
 * term (kvr_search_overhead_fit; docs/profiler.md, "Fixed overheads"). Then the end-to-end
 * check: every schedule on the whole model at one or two real prompt lengths, repeated
 * identically, their TTFTs stored as samples "e2e_<mode>" (c = tokens, prefix = ranks): nothing
 * fits them, so kvr-fit judges its predictions on them held out, and their repeats are the
 * run-to-run spread of this machine in this profile (the two terms of the error band;
 * docs/predictor.md). */
#include "kvr_profiler.h"
#include "profiler_internal.h"
#include "kvr_search.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ovh_ctx {
    const kvr_model *m;
    const int32_t *tokens;
    int64_t n_tokens;
    kvr_prefill_params pp;
} ovh_ctx;

static kvr_status ovh_measure(void *user, int32_t i_iter, double *time_us, kvr_error *err) {
    (void)i_iter;
    ovh_ctx *x = user;
    kvr_prefill_result r;
    memset(&r, 0, sizeof r);
    kvr_status s = kvr_prefill_run(x->m, x->tokens, x->n_tokens, &x->pp, &r, err);
    if (s == KVR_OK) *time_us = r.ttft_ms * 1e3;
    kvr_prefill_result_free(&r);
    return s;
}

/* The prefill parameters of a run of mode on np ranks over the threads transport (the
 * overheads step and the end-to-end check alike). */
static kvr_prefill_params ovh_params(const kvr_profile_params *p, kvr_mode mode, int32_t np) {
    kvr_prefill_params pp = kvr_prefill_params_default();
    pp.backend = p->backend;
    pp.mode = mode;
    pp.n_ranks = np;
    pp.n_threads = p->n_threads;
    pp.transport = KVR_TRANSPORT_THREADS;
    return pp;
}

/* What the per-op model of the run predicts for mode at L layers, p ranks, C tokens. */
static kvr_status ovh_predict(const kvr_db_model *mrec, int32_t L, const kvr_db_layer_sample *ls,
                              int64_t nl, const kvr_db_transfer_sample *ts, int64_t nt,
                              kvr_mode mode, int32_t p, int64_t C, double *pred_us,
                              kvr_error *err) {
    kvr_db_model mr = *mrec;
    mr.n_layers = L;
    int64_t part[KVR_MAX_RANKS];
    KVR_TRY(kvr_partition_even(C, p, part, err));
    kvr_profile_costs_params cp = kvr_profile_costs_params_default();
    cp.no_overheads = true;
    /* one embedding of the largest chunk, as kvr_predict_costs_ttft charges it */
    cp.embed_tokens = mode == KVR_MODE_SINGLE ? C : mode == KVR_MODE_RING ? (C + p - 1) / p : part[0];
    kvr_search_costs *m = NULL;
    KVR_TRY(kvr_profile_costs_from_samples(&mr, ls, nl, ts, nt, "overheads step", &cp, &m, NULL,
                                           err));
    kvr_status s;
    switch (mode) {
        case KVR_MODE_SINGLE: s = kvr_search_sim_single(m, C, NULL, pred_us, err); break;
        case KVR_MODE_KVR: s = kvr_search_sim_kvr(m, p, part, NULL, pred_us, err); break;
        case KVR_MODE_TSP: s = kvr_search_sim_tsp(m, p, C, NULL, pred_us, err); break;
        default: s = kvr_search_sim_ring(m, p, C, NULL, pred_us, err); break;
    }
    kvr_search_costs_destroy(m);
    return s;
}

const char *kvr_profile_e2e_op(kvr_mode mode) {
    switch (mode) {
        case KVR_MODE_SINGLE: return "e2e_single";
        case KVR_MODE_KVR: return "e2e_kvr";
        case KVR_MODE_TSP: return "e2e_tsp";
        case KVR_MODE_RING: return "e2e_ring";
        default: return NULL;
    }
}

/* The end-to-end check's prompt lengths: the largest P * chunk * 2^k <= half the grid's
 * largest chunk whose single-rank TTFT the op model predicts within KVR_PROFILE_E2E_BUDGET_US,
 * and a quarter of it (when that is still >= 2 P chunk); and how many times each is repeated:
 * KVR_PROFILE_E2E_RUNS, more (up to KVR_PROFILE_E2E_RUNS_MAX) where a run is so short that the
 * budget holds more -- a run of a few milliseconds moves most from run to run, and its median
 * and spread steady with repeats that cost next to nothing. */
static kvr_status e2e_contexts(const kvr_db_model *mrec, const kvr_db_layer_sample *ls, int64_t nl,
                               const kvr_db_transfer_sample *ts, int64_t nt, int32_t P,
                               int64_t chunk, int64_t c_max, int64_t *ctx, int *n_ctx,
                               int32_t *runs, kvr_error *err) {
    int64_t best = P * chunk;
    double best_us = 0;
    for (int64_t C = P * chunk; C <= KVR_MAX(P * chunk, c_max / 2); C *= 2) {
        double us = 0;
        KVR_TRY(ovh_predict(mrec, mrec->n_layers, ls, nl, ts, nt, KVR_MODE_SINGLE, 1, C, &us,
                            err));
        if (C > P * chunk && us > KVR_PROFILE_E2E_BUDGET_US) break;
        best = C;
        best_us = us;
    }
    *n_ctx = 0;
    if (best / 4 >= 2 * P * chunk) ctx[(*n_ctx)++] = best / 4;
    ctx[(*n_ctx)++] = best;
    /* the longer length's single run sets the count for both (the shorter one costs less) */
    const double fit = best_us > 0 ? KVR_PROFILE_E2E_BUDGET_US / best_us : KVR_PROFILE_E2E_RUNS_MAX;
    *runs = fit >= KVR_PROFILE_E2E_RUNS_MAX ? KVR_PROFILE_E2E_RUNS_MAX
            : fit <= KVR_PROFILE_E2E_RUNS   ? KVR_PROFILE_E2E_RUNS
                                            : (int32_t)fit;
    return KVR_OK;
}

void kvr_profile_overheads_plan(const kvr_profile_params *p, int32_t n_layers,
                                kvr_profile_overheads_plan_t *out) {
    memset(out, 0, sizeof *out);
    out->n_ranks = p->n_ranks >= 2 ? p->n_ranks : 2;
    out->chunk = KVR_MAX(2, KVR_MIN(16, p->grid.c_min));
    out->layers[0] = n_layers;
    out->layers[1] = n_layers / 4 >= 1 ? n_layers / 4 : 1;
    out->n_depths = out->layers[1] < out->layers[0] ? 2 : 1;
}

kvr_status kvr_profile_overheads(kvr_db *db, int64_t run_id, const kvr_model *m,
                                 const kvr_db_model *mrec, const kvr_profile_params *p,
                                 const kvr_profile_hooks *hooks, kvr_profile_result *res,
                                 kvr_error *err) {
    if (!db || !m || !mrec || !p || !res)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "overheads: NULL argument");
    memset(res, 0, sizeof *res);
    const double t_start = kvr_time_us();
    const kvr_model_config *cfg = kvr_model_get_config(m);
    kvr_profile_overheads_plan_t plan;
    kvr_profile_overheads_plan(p, cfg->n_layers, &plan);
    const int32_t P = plan.n_ranks;
    const int64_t C = plan.chunk * P;
    if (P > KVR_MAX_RANKS)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "overheads: %d ranks (at most %d)", P,
                             KVR_MAX_RANKS);
    kvr_db_layer_sample *ls = NULL;
    kvr_db_transfer_sample *ts = NULL;
    int64_t nl = 0, nt = 0;
    /* the end-to-end check's prompts are at most half the grid's largest chunk */
    const int64_t n_tok = KVR_MAX(C, p->grid.c_max / 2);
    int32_t *tokens = malloc((size_t)n_tok * sizeof *tokens);
    kvr_timing_params tp = p->timing;
    tp.n_warmup = KVR_MAX(1, tp.n_warmup);
    tp.min_iters = KVR_MAX(5, tp.min_iters);
    tp.max_iters = KVR_MAX(tp.min_iters, KVR_MIN(20, tp.max_iters));
    double *scratch =
        malloc((size_t)tp.max_iters * sizeof *scratch);
    kvr_status s = tokens && scratch ? KVR_OK
                                     : kvr_error_set(err, KVR_ERR_NOMEM, "overheads: out of memory");
    if (s == KVR_OK) s = kvr_db_layer_samples_get(db, run_id, &ls, &nl, err);
    if (s == KVR_OK) s = kvr_db_transfer_samples_get(db, run_id, &ts, &nt, err);
    uint64_t rng = p->seed ? p->seed : 1;
    for (int64_t i = 0; s == KVR_OK && i < n_tok; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = (int32_t)((rng >> 33) % (uint64_t)cfg->vocab_size);
    }
    static const kvr_mode modes[] = {KVR_MODE_SINGLE, KVR_MODE_KVR, KVR_MODE_TSP, KVR_MODE_RING};
    const int n_modes = (int)(sizeof modes / sizeof modes[0]);
    int64_t e2e_ctx[2];
    int32_t e2e_runs = KVR_PROFILE_E2E_RUNS;
    int n_e2e = 0;
    if (s == KVR_OK)
        s = e2e_contexts(mrec, ls, nl, ts, nt, P, plan.chunk, p->grid.c_max, e2e_ctx, &n_e2e,
                         &e2e_runs, err);
    if (s != KVR_OK) kvr_error_prefix(err, "overheads: end-to-end check");
    res->n_points = (int64_t)n_modes * (plan.n_depths + n_e2e);
    for (int d = 0; s == KVR_OK && d < plan.n_depths; d++) {
        const int32_t L = plan.layers[d];
        kvr_model *view = NULL;
        s = kvr_model_view_layers(m, L, &view, err);
        for (int k = 0; s == KVR_OK && k < n_modes; k++) {
            const kvr_mode mode = modes[k];
            const int32_t np = mode == KVR_MODE_SINGLE ? 1 : P;
            const char *op = kvr_search_overhead_op(mode);
            char label[96];
            snprintf(label, sizeof label, "overheads %s L=%d p=%d C=%lld", kvr_mode_name(mode), L,
                     np, (long long)C);
            if (prof_sample_stored(ls, nl, op, L, np)) {
                prof_point_skipped(res, hooks, label);
                continue;
            }
            if (hooks && hooks->stop && *hooks->stop) {
                res->stopped = true;
                break;
            }
            double pred_us = 0;
            s = ovh_predict(mrec, L, ls, nl, ts, nt, mode, np, C, &pred_us, err);
            if (s != KVR_OK) {
                kvr_error_prefix(err, "overheads: %s", label);
                break;
            }
            ovh_ctx x = {view, tokens, C, ovh_params(p, mode, np)};
            kvr_timing_stats ttft;
            s = kvr_time_adaptive(ovh_measure, &x, &tp, scratch, &ttft, err);
            if (s != KVR_OK) {
                kvr_error_prefix(err, "overheads: %s", label);
                break;
            }
            /* the samples are the signed excess over the prediction (not clamped here: the
             * fit clamps a term at 0, kvr_search_overhead_fit) */
            for (int32_t i = 0; i < ttft.n_iters; i++) scratch[i] -= pred_us;
            kvr_timing_stats excess;
            kvr_stats_compute(scratch, ttft.n_iters, &excess);
            excess.n_warmup = ttft.n_warmup;
            excess.is_stable = ttft.is_stable;
            s = prof_point_measured(db, run_id, op, L, np, &excess, res, hooks, label, err);
            if (s != KVR_OK) break;
        }
        kvr_model_destroy(view);
    }
    /* the end-to-end check: whole model, every schedule (kvr with the even partition),
     * identical repeats, interleaved: each pass runs every point not yet stored once (the first
     * passes are the warm-ups), so a slow stretch of the machine -- a few hundred ms on this
     * shared VM -- falls on one repeat of every point, not on all the repeats of one (which set
     * a held-out error of 49 % when kvr's 15 back-to-back runs at 1024 tokens met one). Each
     * point runs on prepared ranks (kvr_prefill_ready: workspaces made and touched before the
     * first run), as kvr-run's session does: the check times what kvr-run times */
    enum { E2E_MAX = 2 * 4 };
    struct {
        int64_t C;
        char label[96];
        kvr_prefill_params pp; /* mode, ranks; on its prepared ranks (pp.ready) */
        prof_timer t;
        double s[KVR_PROFILE_E2E_RUNS_MAX];
    } e2e[E2E_MAX];
    kvr_timing_params te = tp;
    te.min_iters = te.max_iters = e2e_runs;
    int n_pts = 0;
    for (int j = 0; s == KVR_OK && !res->stopped && j < n_e2e; j++)
        for (int k = 0; k < n_modes && n_pts < E2E_MAX; k++) {
            const kvr_mode mode = modes[k];
            const int32_t np = mode == KVR_MODE_SINGLE ? 1 : P;
            char label[96];
            snprintf(label, sizeof label, "end-to-end %s p=%d C=%lld", kvr_mode_name(mode), np,
                     (long long)e2e_ctx[j]);
            if (prof_sample_stored(ls, nl, kvr_profile_e2e_op(mode), e2e_ctx[j], np)) {
                prof_point_skipped(res, hooks, label);
                continue;
            }
            e2e[n_pts].C = e2e_ctx[j];
            memcpy(e2e[n_pts].label, label, sizeof label);
            e2e[n_pts].pp = ovh_params(p, mode, np);
            prof_timer_init(&e2e[n_pts].t, &te, e2e[n_pts].s);
            kvr_prefill_ready *ready = NULL;
            s = kvr_prefill_ready_create(m, &e2e[n_pts].pp, e2e_ctx[j], -1, &ready, err);
            e2e[n_pts].pp.ready = ready;
            if (s != KVR_OK) {
                kvr_error_prefix(err, "overheads: %s", label);
                break;
            }
            n_pts++;
        }
    for (bool left = n_pts > 0; s == KVR_OK && !res->stopped && left;) {
        left = false;
        for (int i = 0; s == KVR_OK && i < n_pts; i++) {
            if (e2e[i].t.done) continue;
            if (hooks && hooks->stop && *hooks->stop) {
                res->stopped = true;
                break;
            }
            ovh_ctx x = {m, tokens, e2e[i].C, e2e[i].pp};
            double us = 0;
            s = ovh_measure(&x, 0, &us, err);
            if (s != KVR_OK) {
                kvr_error_prefix(err, "overheads: %s", e2e[i].label);
                break;
            }
            prof_timer_add(&e2e[i].t, us);
            if (!e2e[i].t.done) left = true;
        }
    }
    for (int i = 0; s == KVR_OK && !res->stopped && i < n_pts; i++) {
        kvr_timing_stats ttft;
        prof_timer_stats(&e2e[i].t, &ttft);
        s = prof_point_measured(db, run_id, kvr_profile_e2e_op(e2e[i].pp.mode), e2e[i].C,
                                e2e[i].pp.n_ranks, &ttft, res, hooks, e2e[i].label, err);
    }
    for (int i = 0; i < n_pts; i++) kvr_prefill_ready_destroy(e2e[i].pp.ready);
    kvr_db_free(ls);
    kvr_db_free(ts);
    free(tokens);
    free(scratch);
    res->elapsed_s = (kvr_time_us() - t_start) * 1e-6;
    return s;
}
