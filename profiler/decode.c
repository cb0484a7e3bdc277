/* decode.c -- batched decode steps (kvr_profile_decode): whole serving decode iterations timed
 * through the batched runner (kvr_batch.h) as the serving engine runs them -- B requests with
 * cached context in a paged KV pool, one new token each, every layer, the LM head over the B
 * rows and one sampler draw per request -- over a grid of batch size B x total context T,
 * stored as layer samples "decode" (c = B, prefix = T). kvr-fit fits the serving simulator's
 * decode step from them (kvr_predict_fit_decode; docs/profiler.md, "Decode steps"). Then the
 * LayerKV host tier's copies over the same pool (op "host_copy": c = layer blocks moved, prefix
 * = bytes of one; the cost model's host-copy rate, kvr_search_costs_host_copy). */
#include "kvr_batch.h"
#include "kvr_profiler.h"
#include "profiler_internal.h"
#include "kvr_sample.h"
#include "kvr_search.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEC_BLOCK_TOKENS 16
#define DEC_MIN_CTX 16

/* The batch size after b: 1, 2, 3, 4, 6, 8, 12, 16, ... -- the powers of two and 1.5 times them,
 * so the fit sees the batch sizes a continuous batch runs at between the powers (a saturated
 * replay's batches of 5-10), not only 10 points on the powers (issue 12 item 7). */
static int32_t dec_next_batch(int32_t b) {
    if (b < 2) return b + 1;
    const bool pow2 = (b & (b - 1)) == 0;
    return pow2 ? b + b / 2 : b / 3 * 4; /* 2^k -> 1.5 * 2^k -> 2^(k+1) */
}

kvr_status kvr_profile_decode_points(const kvr_profile_params *p, int64_t model_max_context,
                                     kvr_prof_decode_point **out, int32_t *n, kvr_error *err) {
    *out = NULL;
    *n = 0;
    if (p->decode_max_batch < 1 || p->decode_max_batch > KVR_PROFILE_DECODE_MAX_BATCH ||
        p->decode_n_ctx < 1 || p->grid.ctx_max < 2)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "decode steps: largest batch %d, %d contexts per batch, largest "
                             "context %lld (need 1..4096, >= 1, >= 2)",
                             p->decode_max_batch, p->decode_n_ctx, (long long)p->grid.ctx_max);
    int32_t cap = 0;
    for (int32_t b = 1; b <= p->decode_max_batch; b = dec_next_batch(b)) cap += p->decode_n_ctx;
    kvr_prof_decode_point *pts = malloc((size_t)cap * sizeof *pts);
    if (!pts) return kvr_error_set(err, KVR_ERR_NOMEM, "decode steps: out of memory");
    int32_t k = 0;
    for (int32_t b = 1; b <= p->decode_max_batch; b = dec_next_batch(b)) {
        int64_t s_max = p->grid.ctx_max / b; /* cached tokens per request, its new one included */
        if (model_max_context > 0) s_max = KVR_MIN(s_max, model_max_context);
        if (s_max < 2) break;
        const int64_t s_min = KVR_MIN((int64_t)DEC_MIN_CTX, s_max);
        int64_t last = 0;
        for (int32_t i = 0; i < p->decode_n_ctx; i++) {
            const double f = p->decode_n_ctx > 1 ? (double)i / (p->decode_n_ctx - 1) : 1.0;
            int64_t s = (int64_t)(s_min * pow((double)s_max / (double)s_min, f) + 0.5);
            s = KVR_MAX(2, KVR_MIN(s, s_max));
            if (s == last) continue;
            pts[k++] = (kvr_prof_decode_point){b, s, (int64_t)b * s};
            last = s;
        }
    }
    *out = pts;
    *n = k;
    return KVR_OK;
}

typedef struct dec_ctx {
    kvr_batch_runner *r;
    kvr_batch_seq *seqs;
    kvr_sampler **samplers;
    int32_t n;
} dec_ctx;

static kvr_status dec_measure(void *user, int32_t i_iter, double *time_us, kvr_error *err) {
    (void)i_iter;
    dec_ctx *x = user;
    const double t0 = kvr_time_us();
    KVR_TRY(kvr_batch_run(x->r, x->seqs, x->n, err));
    for (int32_t i = 0; i < x->n; i++) (void)kvr_sampler_sample(x->samplers[i], kvr_batch_logits(x->r, i));
    *time_us = kvr_time_us() - t0;
    return KVR_OK;
}

typedef struct copy_ctx {
    kvr_kv_pool *pool;
    kvr_kv_copy *out, *in; /* n each */
    int64_t n;
} copy_ctx;

/* n layer blocks out to the host tier and back, through the copier */
static kvr_status copy_measure(void *user, int32_t i_iter, double *time_us, kvr_error *err) {
    (void)i_iter;
    copy_ctx *x = user;
    const double t0 = kvr_time_us();
    KVR_TRY(kvr_kv_pool_copy(x->pool, x->out, x->n, err));
    KVR_TRY(kvr_kv_pool_copy(x->pool, x->in, x->n, err));
    *time_us = kvr_time_us() - t0;
    return KVR_OK;
}

/* The host tier's copies (LayerKV): for n = 1, 4, 16, 64 layer blocks (at most the pool's),
 * n out and n back in, stored as op KVR_SEARCH_HOST_COPY_OP with c = 2n blocks moved and prefix
 * = the bytes of one layer block. */
static kvr_status profile_host_copy(kvr_db *db, int64_t run_id, kvr_kv_pool *pool,
                                    const kvr_db_layer_sample *ls, int64_t nl,
                                    const kvr_timing_params *tp, double *scratch,
                                    const kvr_profile_hooks *hooks, kvr_profile_result *res,
                                    kvr_error *err) {
    const int64_t nmax = KVR_MIN(64, kvr_kv_pool_layer_blocks(pool));
    const int64_t bytes = kvr_kv_layer_block_bytes(kvr_kv_pool_config(pool),
                                                   kvr_kv_pool_block_tokens(pool));
    KVR_TRY(kvr_kv_pool_add_host(pool, nmax, 1, err));
    copy_ctx x = {pool, malloc((size_t)nmax * sizeof(kvr_kv_copy)),
                  malloc((size_t)nmax * sizeof(kvr_kv_copy)), 0};
    kvr_status s = x.out && x.in ? KVR_OK
                                 : kvr_error_set(err, KVR_ERR_NOMEM, "host copies: out of memory");
    for (int64_t i = 0; s == KVR_OK && i < nmax; i++) {
        x.out[i] = (kvr_kv_copy){(int32_t)i, (int32_t)i, true};
        x.in[i] = (kvr_kv_copy){(int32_t)i, (int32_t)i, false};
    }
    for (int64_t n = 1; s == KVR_OK; n = n * 4 > nmax && n < nmax ? nmax : n * 4) {
        if (n > nmax) break;
        res->n_points++;
        char label[96];
        snprintf(label, sizeof label, "host copy %lld blocks of %lld B", (long long)(2 * n),
                 (long long)bytes);
        if (prof_sample_stored(ls, nl, KVR_SEARCH_HOST_COPY_OP, 2 * n, bytes)) {
            prof_point_skipped(res, hooks, label);
            if (n == nmax) break;
            continue;
        }
        if (hooks && hooks->stop && *hooks->stop) {
            res->stopped = true;
            break;
        }
        x.n = n;
        kvr_timing_stats st;
        s = kvr_time_adaptive(copy_measure, &x, tp, scratch, &st, err);
        if (s != KVR_OK) {
            kvr_error_prefix(err, "%s", label);
            break;
        }
        s = prof_point_measured(db, run_id, KVR_SEARCH_HOST_COPY_OP, 2 * n, bytes, &st, res, hooks,
                                label, err);
        if (s != KVR_OK) break;
        if (n == nmax) break;
    }
    free(x.out), free(x.in);
    return s;
}

kvr_status kvr_profile_decode(kvr_db *db, int64_t run_id, const kvr_model *m,
                              const kvr_profile_params *p, const kvr_profile_hooks *hooks,
                              kvr_profile_result *res, kvr_error *err) {
    if (!db || !m || !p || !res)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "decode steps: NULL argument");
    memset(res, 0, sizeof *res);
    const double t_start = kvr_time_us();
    const kvr_model_config *cfg = kvr_model_get_config(m);
    kvr_prof_decode_point *pts = NULL;
    int32_t np = 0;
    KVR_TRY(kvr_profile_decode_points(p, cfg->max_context, &pts, &np, err));
    res->n_points = np;
    int64_t max_blocks = 1;
    int32_t max_b = 1;
    for (int32_t i = 0; i < np; i++) {
        max_blocks = KVR_MAX(max_blocks, pts[i].batch * KVR_CEIL_DIV(pts[i].ctx_per_seq,
                                                                     (int64_t)DEC_BLOCK_TOKENS));
        max_b = KVR_MAX(max_b, pts[i].batch);
    }
    kvr_weights *w = NULL;
    kvr_kv_pool *pool = NULL;
    dec_ctx x = {NULL, NULL, NULL, 0};
    kvr_db_layer_sample *ls = NULL;
    int64_t nl = 0;
    int32_t *blocks = NULL, *tokens = NULL, *lids = NULL;
    const int32_t **tabs = NULL; /* each request's layer tables (kvr_kv_layer_tables) */
    kvr_timing_params tp = p->timing;
    tp.n_warmup = KVR_MAX(1, tp.n_warmup);
    tp.min_iters = KVR_MAX(3, tp.min_iters);
    tp.max_iters = KVR_MAX(tp.min_iters, KVR_MIN(30, tp.max_iters));
    double *scratch = malloc((size_t)tp.max_iters * sizeof *scratch);
    blocks = malloc((size_t)max_blocks * sizeof *blocks);
    lids = malloc((size_t)max_blocks * (size_t)cfg->n_layers * sizeof *lids);
    tabs = malloc((size_t)max_b * (size_t)cfg->n_layers * sizeof *tabs);
    tokens = malloc((size_t)max_b * sizeof *tokens);
    x.seqs = calloc((size_t)max_b, sizeof *x.seqs);
    x.samplers = calloc((size_t)max_b, sizeof *x.samplers);
    kvr_status s = scratch && blocks && lids && tabs && tokens && x.seqs && x.samplers
                       ? KVR_OK
                       : kvr_error_set(err, KVR_ERR_NOMEM, "decode steps: out of memory");
    const kvr_backend *be = p->backend ? p->backend : kvr_backend_at(0);
    if (s == KVR_OK) s = kvr_weights_upload(be, m, &w, err);
    /* the pool: every block the largest point needs (KVR_ERR_UNSUPPORTED on a backend without
     * one: the message names it) */
    if (s == KVR_OK) s = kvr_kv_pool_create(w, max_blocks, DEC_BLOCK_TOKENS, &pool, err);
    if (s == KVR_OK) s = kvr_batch_runner_create(w, pool, max_b, p->n_threads, &x.r, err);
    kvr_sampler_params sp = kvr_sampler_params_default(); /* greedy, as kvr-serve's default */
    for (int32_t i = 0; s == KVR_OK && i < max_b; i++)
        s = kvr_sampler_create(&sp, cfg->vocab_size, &x.samplers[i], err);
    if (s == KVR_OK) s = kvr_db_layer_samples_get(db, run_id, &ls, &nl, err);
    if (s != KVR_OK) kvr_error_prefix(err, "decode steps");
    for (int64_t i = 0; s == KVR_OK && i < max_blocks; i++) blocks[i] = (int32_t)i;
    uint64_t rng = p->seed ? p->seed : 1;
    for (int32_t i = 0; s == KVR_OK && i < max_b; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = (int32_t)((rng >> 33) % (uint64_t)cfg->vocab_size);
    }
    for (int32_t k = 0; s == KVR_OK && k < np; k++) {
        const kvr_prof_decode_point *pt = &pts[k];
        char label[96];
        snprintf(label, sizeof label, "decode B=%d T=%lld", pt->batch, (long long)pt->ctx);
        if (prof_sample_stored(ls, nl, KVR_SEARCH_DECODE_OP, pt->batch, pt->ctx)) {
            prof_point_skipped(res, hooks, label);
            continue;
        }
        if (hooks && hooks->stop && *hooks->stop) {
            res->stopped = true;
            break;
        }
        /* request i: ctx_per_seq - 1 cached tokens and its new one, in its own blocks */
        const int64_t nb = KVR_CEIL_DIV(pt->ctx_per_seq, (int64_t)DEC_BLOCK_TOKENS);
        const int32_t L = cfg->n_layers;
        for (int32_t i = 0; i < pt->batch; i++) {
            kvr_kv_layer_tables(L, blocks + i * nb, nb, lids + (size_t)i * nb * L, tabs + i * L);
            x.seqs[i] = (kvr_batch_seq){&tokens[i], 1, pt->ctx_per_seq - 1, tabs + i * L, nb,
                                        true, NULL};
        }
        x.n = pt->batch;
        kvr_timing_stats st;
        s = kvr_time_adaptive(dec_measure, &x, &tp, scratch, &st, err);
        if (s != KVR_OK) {
            kvr_error_prefix(err, "%s", label);
            break;
        }
        s = prof_point_measured(db, run_id, KVR_SEARCH_DECODE_OP, pt->batch, pt->ctx, &st, res,
                                hooks, label, err);
        if (s != KVR_OK) break;
    }
    if (s == KVR_OK && !res->stopped)
        s = profile_host_copy(db, run_id, pool, ls, nl, &tp, scratch, hooks, res, err);
    for (int32_t i = 0; x.samplers && i < max_b; i++) kvr_sampler_destroy(x.samplers[i]);
    kvr_batch_runner_destroy(x.r);
    kvr_kv_pool_destroy(pool);
    kvr_weights_free(w);
    kvr_db_free(ls);
    free(x.samplers), free(x.seqs), free(blocks), free(lids), free(tabs), free(tokens);
    free(scratch), free(pts);
    res->elapsed_s = (kvr_time_us() - t_start) * 1e-6;
    return s;
}
