/* layers.c -- profiling the runtime's layer ops on the (c, prefix) grid.
 *
 * One workspace sized for the grid's largest chunk and context. Before timing, one real pass
 * (embed, pre, attn, post of the largest chunk) fills every buffer with model values, and x is
 * saved; ops that read and modify x (pre, post, head) get it restored, untimed, before each
 * execution, so repeated executions see realistic numbers and nothing drifts. Each execution
 * runs the next layer (rotating over all L), so its weights come cold from memory as in a
 * prefill. Points run in a seeded shuffled order (drift in machine load does not line up with
 * the grid, and the count-based ETA is fair), in blocks whose repetitions are interleaved (a
 * burst of load elsewhere costs many points one repetition each, which their medians reject),
 * each written to the db as soon as it is finished; points already in the db for the run are
 * skipped (resume). Then refinement rounds add midpoints where the measured curves bend. */
#include "profiler_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct prof_layer_ctx {
    kvr_weights *w;
    kvr_workspace *ws;
    kvr_event *ev0, *ev1; /* around each timed execution */
    const kvr_model_config *cfg;
    float *x_saved;   /* (c_max, D) hidden state after embedding */
    int32_t *tokens;  /* (c_max) */
    kvr_op op;
    int64_t c, prefix;
    int32_t layer;    /* next layer to run */
} prof_layer_ctx;

static kvr_status prof_layer_measure(void *user, int32_t i_iter, double *time_us,
                                     kvr_error *err) {
    (void)i_iter;
    prof_layer_ctx *x = user;
    const int32_t l = x->layer;
    x->layer = (x->layer + 1) % x->cfg->n_layers;
    /* restore x (untimed) for the ops that read and modify it; the backend finishes the copy
     * before the start event */
    if (x->op == KVR_OP_PRE || x->op == KVR_OP_POST)
        KVR_TRY(kvr_workspace_x_from_host(x->ws, x->x_saved, x->c, err));
    else if (x->op == KVR_OP_HEAD)
        KVR_TRY(kvr_workspace_x_from_host(x->ws, x->x_saved, 1, err));
    KVR_TRY(kvr_event_record(x->ev0, err));
    switch (x->op) {
        case KVR_OP_EMBED: KVR_TRY(kvr_op_embed(x->ws, x->tokens, x->c, 0, err)); break;
        case KVR_OP_PRE: KVR_TRY(kvr_op_pre(x->ws, l, err)); break;
        case KVR_OP_ATTN: KVR_TRY(kvr_op_attn(x->ws, l, NULL, err)); break;
        case KVR_OP_POST: KVR_TRY(kvr_op_post(x->ws, l, err)); break;
        case KVR_OP_HEAD:
        default: KVR_TRY(kvr_op_head(x->ws, NULL, err)); break;
    }
    KVR_TRY(kvr_event_record(x->ev1, err));
    return kvr_event_elapsed_us(x->ev0, x->ev1, time_us, err);
}

static uint64_t prof_rng(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

/* Make the workspace ready for a point: the chunk (and its RoPE tables) and the op. */
static kvr_status prof_prepare(prof_layer_ctx *x, const kvr_prof_point *pt, kvr_error *err) {
    x->op = pt->op;
    x->c = pt->c;
    x->prefix = pt->prefix;
    if (pt->op == KVR_OP_PRE || pt->op == KVR_OP_POST)
        return kvr_op_set_chunk(x->ws, pt->c, 0, err);
    if (pt->op == KVR_OP_ATTN) return kvr_op_set_chunk(x->ws, pt->c, pt->prefix, err);
    if (pt->op == KVR_OP_HEAD) return kvr_op_set_chunk(x->ws, 1, 0, err);
    return KVR_OK; /* embed sets its own chunk */
}

/* Points measured together: their repetitions are interleaved round-robin, so a burst of load
 * from elsewhere lands on one repetition of many points (which the medians reject) instead of
 * on every repetition of one point. */
#define PROF_BLOCK 16

/* Measure pts[0..n) that are not in done[0..n_done): blocks of PROF_BLOCK points, each point's
 * warm-ups right before its first measured execution, then one execution per point per pass
 * until every point of the block is finished; a point is stored as soon as it finishes. A stop
 * request ends after the current execution; the block's unfinished points are not stored. */
static kvr_status prof_run_points(kvr_db *db, int64_t run_id, prof_layer_ctx *x,
                                  const kvr_profile_params *p, const kvr_profile_hooks *hooks,
                                  const kvr_prof_point *pts, int64_t n,
                                  const kvr_db_layer_sample *done, int64_t n_done, double *scratch,
                                  kvr_profile_result *res, kvr_error *err) {
    const int32_t max_it = KVR_MAX(p->timing.max_iters, 1);
    int64_t next = 0;
    while (next < n) {
        int64_t blk[PROF_BLOCK];
        prof_timer tm[PROF_BLOCK];
        int nb = 0;
        for (; next < n && nb < PROF_BLOCK; next++) {
            if (prof_sample_stored(done, n_done, kvr_op_name(pts[next].op), pts[next].c,
                                   pts[next].prefix)) {
                prof_point_skipped(res, hooks, kvr_op_name(pts[next].op));
                continue;
            }
            prof_timer_init(&tm[nb], &p->timing, scratch + (size_t)nb * (size_t)max_it);
            blk[nb++] = next;
        }
        for (int left = nb; left > 0;) {
            for (int j = 0; j < nb; j++) {
                if (tm[j].done) continue;
                if (hooks && hooks->stop && *hooks->stop) {
                    res->stopped = true;
                    return KVR_OK;
                }
                const kvr_prof_point *pt = &pts[blk[j]];
                KVR_TRY(prof_prepare(x, pt, err));
                do { /* warm-ups (first visit only), then one measured execution */
                    double us = 0;
                    KVR_TRY(prof_layer_measure(x, tm[j].n, &us, err));
                    prof_timer_add(&tm[j], us);
                } while (!tm[j].warm_done || tm[j].n == 0);
                if (!tm[j].done) continue;
                left--;
                kvr_db_layer_sample s;
                memset(&s, 0, sizeof s);
                s.run_id = run_id;
                snprintf(s.op, sizeof s.op, "%s", kvr_op_name(pt->op));
                s.c = pt->c;
                s.prefix = pt->prefix;
                prof_timer_stats(&tm[j], &s.stats);
                if (kvr_db_layer_sample_put(db, &s, err) != KVR_OK)
                    return kvr_error_prefix(err, "storing %s c=%lld p=%lld", s.op, (long long)s.c,
                                            (long long)s.prefix);
                res->n_measured++;
                if (hooks && hooks->on_point) {
                    char label[96];
                    snprintf(label, sizeof label, "%s c=%lld p=%lld", s.op, (long long)s.c,
                             (long long)s.prefix);
                    hooks->on_point(hooks->user, label, &s.stats, res->n_skipped + res->n_measured,
                                    res->n_points);
                }
            }
        }
    }
    return KVR_OK;
}

kvr_status kvr_profile_layers(kvr_db *db, int64_t run_id, const kvr_model *m,
                              const kvr_profile_params *p, const kvr_profile_hooks *hooks,
                              kvr_profile_result *res, kvr_error *err) {
    memset(res, 0, sizeof *res);
    const double t_start = kvr_time_us();
    if (!p->ops) return KVR_OK;
    const kvr_model_config *cfg = kvr_model_get_config(m);
    kvr_prof_point *pts = NULL, *more = NULL;
    int64_t n_pts = 0, n_more = 0;
    KVR_TRY(kvr_grid_points(&p->grid, p->ops, &pts, &n_pts, err));
    int64_t c_max = 1, ctx_max = 1;
    for (int64_t i = 0; i < n_pts; i++) {
        c_max = KVR_MAX(c_max, pts[i].c);
        ctx_max = KVR_MAX(ctx_max, pts[i].c + pts[i].prefix);
    }
    /* refinement adds midpoints between measured points of a row: inside these bounds */
    res->n_points = n_pts;

    /* the workspace: KV cache of L x ctx_max, activations of c_max; refuse what cannot fit */
    const double kv_bytes = 2.0 * cfg->n_layers * (double)ctx_max * cfg->n_kv_heads *
                            cfg->head_dim * sizeof(float);
    const long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    const double mem = pages > 0 && psz > 0 ? (double)pages * (double)psz : 0;
    if (mem > 0 && kv_bytes > 0.6 * mem) {
        free(pts);
        return kvr_error_set(err, KVR_ERR_NOMEM,
                             "profiling contexts up to %lld tokens needs a %.1f GiB KV cache "
                             "(%d layers) but the machine has %.1f GiB: use a smaller "
                             "--max-context",
                             (long long)ctx_max, kv_bytes / (1 << 30), cfg->n_layers,
                             mem / (1 << 30));
    }
    prof_layer_ctx x = {0};
    x.cfg = cfg;
    double *scratch = malloc((size_t)PROF_BLOCK * (size_t)KVR_MAX(p->timing.max_iters, 1) * sizeof *scratch);
    x.x_saved = malloc((size_t)c_max * (size_t)cfg->d_model * sizeof(float));
    x.tokens = malloc((size_t)c_max * sizeof *x.tokens);
    kvr_db_layer_sample *done = NULL;
    int64_t n_done = 0;
    kvr_status st = KVR_OK;
    if (!scratch || !x.x_saved || !x.tokens) {
        st = kvr_error_set(err, KVR_ERR_NOMEM, "profile: out of memory");
        goto out;
    }
    if ((st = kvr_weights_upload(p->backend ? p->backend : kvr_backend_at(0), m, &x.w, err)) ||
        (st = kvr_workspace_create(x.w, c_max, ctx_max, p->n_threads, &x.ws, err)) ||
        (st = kvr_event_create(x.ws, &x.ev0, err)) || (st = kvr_event_create(x.ws, &x.ev1, err)))
        goto out;
    uint64_t rng = p->seed ? p->seed : 1;
    for (int64_t i = 0; i < c_max; i++)
        x.tokens[i] = (int32_t)(prof_rng(&rng) % (uint64_t)cfg->vocab_size);
    /* prime every buffer with real values (and fault in the workspace) */
    if ((st = kvr_op_embed(x.ws, x.tokens, c_max, 0, err)) ||
        (st = kvr_workspace_x_to_host(x.ws, x.x_saved, c_max, err)) ||
        (st = kvr_op_pre(x.ws, 0, err)) || (st = kvr_op_attn(x.ws, 0, NULL, err)) ||
        (st = kvr_op_post(x.ws, 0, err)) ||
        (st = kvr_workspace_x_from_host(x.ws, x.x_saved, c_max, err)))
        goto out;

    if ((st = kvr_db_layer_samples_get(db, run_id, &done, &n_done, err)) != KVR_OK) goto out;
    /* seeded shuffle of the base points */
    for (int64_t i = n_pts - 1; i > 0; i--) {
        int64_t j = (int64_t)(prof_rng(&rng) % (uint64_t)(i + 1));
        kvr_prof_point t = pts[i];
        pts[i] = pts[j];
        pts[j] = t;
    }
    st = prof_run_points(db, run_id, &x, p, hooks, pts, n_pts, done, n_done, scratch, res, err);
    /* Refinement rounds. Round k looks only at the samples of the base grid and of rounds < k,
     * so the points it adds depend on stored values only: a resumed run proposes exactly the
     * points an uninterrupted one would have, and nothing once it is complete. */
    for (int32_t lvl = 0; st == KVR_OK && !res->stopped && lvl < p->grid.refine_levels; lvl++) {
        free(done);
        done = NULL;
        if ((st = kvr_db_layer_samples_get(db, run_id, &done, &n_done, err)) != KVR_OK) break;
        kvr_db_layer_sample *known = malloc((size_t)KVR_MAX(n_done, 1) * sizeof *known);
        if (!known) {
            st = kvr_error_set(err, KVR_ERR_NOMEM, "profile: out of memory");
            break;
        }
        int64_t n_known = 0;
        for (int64_t i = 0; i < n_done; i++)
            for (int64_t j = 0; j < n_pts; j++)
                if (pts[j].c == done[i].c && pts[j].prefix == done[i].prefix &&
                    strcmp(kvr_op_name(pts[j].op), done[i].op) == 0) {
                    known[n_known++] = done[i];
                    break;
                }
        free(more);
        more = NULL;
        st = kvr_grid_refine(&p->grid, p->ops, known, n_known, &more, &n_more, err);
        free(known);
        if (st != KVR_OK || n_more == 0) break;
        res->n_points += n_more;
        st = prof_run_points(db, run_id, &x, p, hooks, more, n_more, done, n_done, scratch, res,
                             err);
        /* the round's points join the known set */
        kvr_prof_point *grown = realloc(pts, (size_t)(n_pts + n_more) * sizeof *pts);
        if (!grown) {
            if (st == KVR_OK) st = kvr_error_set(err, KVR_ERR_NOMEM, "profile: out of memory");
            break;
        }
        pts = grown;
        memcpy(pts + n_pts, more, (size_t)n_more * sizeof *more);
        n_pts += n_more;
    }
out:
    kvr_event_destroy(x.ev0), kvr_event_destroy(x.ev1);
    kvr_workspace_destroy(x.ws);
    kvr_weights_free(x.w);
    free(scratch);
    free(x.x_saved);
    free(x.tokens);
    free(done);
    free(pts);
    free(more);
    res->elapsed_s = (kvr_time_us() - t_start) * 1e-6;
    return st;
}
