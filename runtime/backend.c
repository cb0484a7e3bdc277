/* backend.c -- the backend registry and the front end of kvr_backend.h: each public function
 * checks what the contract states, then makes one indirect call into the backend's table. */
#include "backend_internal.h"
#include "runtime_internal.h"

#include <string.h>

/* Every backend compiled in; "cpu" first. A CUDA backend adds its table under KVR_USE_CUDA. */
static const kvr_backend *const kvr_backends[] = {
    &backend_cpu,
#ifdef KVR_USE_CUDA
    &backend_cuda,
#endif
};
#define KVR_N_BACKENDS ((int32_t)(sizeof kvr_backends / sizeof kvr_backends[0]))

int32_t kvr_backend_count(void) {
    return KVR_N_BACKENDS;
}

const kvr_backend *kvr_backend_at(int32_t i) {
    return i >= 0 && i < KVR_N_BACKENDS ? kvr_backends[i] : NULL;
}

kvr_status kvr_backend_get(const char *name, const kvr_backend **out, kvr_error *err) {
    *out = NULL;
    for (int32_t i = 0; i < KVR_N_BACKENDS; i++)
        if (strcmp(name, kvr_backends[i]->name) == 0) {
            if (kvr_backends[i]->available) KVR_TRY(kvr_backends[i]->available(err));
            *out = kvr_backends[i];
            return KVR_OK;
        }
    if (strcmp(name, "cuda") == 0)
        return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                             "not available: this kvr was built without the CUDA backend");
    return kvr_error_set(err, KVR_ERR_INVALID_ARG, "unknown backend '%s' (cpu, cuda)", name);
}

const char *kvr_backend_name(const kvr_backend *b) {
    return b->name;
}

kvr_mem_space kvr_backend_mem_space(const kvr_backend *b) {
    return b->mem_space;
}

kvr_backend_info kvr_backend_get_info(const kvr_backend *b) {
    return b->info();
}

// ----------------------------------------------------------------------------
// weights and workspaces

kvr_status kvr_weights_upload(const kvr_backend *b, const kvr_model *m, kvr_weights **out,
                              kvr_error *err) {
    *out = NULL;
    return b->weights_upload(b, m, out, err);
}

void kvr_weights_free(kvr_weights *w) {
    if (w) w->be->weights_free(w);
}

kvr_status kvr_workspace_create(const kvr_weights *w, int64_t max_chunk, int64_t max_ctx,
                                int32_t n_threads, kvr_workspace **out, kvr_error *err) {
    *out = NULL;
    if (max_chunk < 1 || max_ctx < max_chunk)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "workspace: need 1 <= max_chunk (%lld) <= max_ctx (%lld)",
                             (long long)max_chunk, (long long)max_ctx);
    if (n_threads < 1 || n_threads > 1024)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "workspace: %d threads", n_threads);
    kvr_workspace *ws = NULL;
    KVR_TRY(w->be->ws_create(w, max_chunk, max_ctx, n_threads, &ws, err));
    ws->be = w->be;
    ws->w = w;
    ws->m = w->m;
    ws->max_chunk = max_chunk;
    ws->max_ctx = max_ctx;
    ws->n_threads = n_threads;
    ws->c = ws->pos0 = 0;
    *out = ws;
    return KVR_OK;
}

void kvr_workspace_destroy(kvr_workspace *ws) {
    if (ws) ws->be->ws_destroy(ws);
}

const kvr_backend *kvr_workspace_backend(const kvr_workspace *ws) {
    return ws->be;
}

const kvr_model_config *kvr_workspace_config(const kvr_workspace *ws) {
    return kvr_model_get_config(ws->m);
}

// ----------------------------------------------------------------------------
// ops

static kvr_status kvr_ws_check_chunk(const kvr_workspace *ws, int64_t c, int64_t pos0,
                                     kvr_error *err) {
    if (c < 1 || c > ws->max_chunk || pos0 < 0 || pos0 + c > ws->max_ctx)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "chunk of %lld tokens at %lld does not fit the workspace "
                             "(max chunk %lld, max context %lld)",
                             (long long)c, (long long)pos0, (long long)ws->max_chunk,
                             (long long)ws->max_ctx);
    return KVR_OK;
}

static kvr_status kvr_ws_check_layer(const kvr_workspace *ws, int32_t layer, kvr_error *err) {
    if (ws->c < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "layer op before any chunk was set");
    if (layer < 0 || layer >= ws->m->cfg.n_layers)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "layer %d outside [0, %d)", layer,
                             ws->m->cfg.n_layers);
    return KVR_OK;
}

kvr_status kvr_op_set_chunk(kvr_workspace *ws, int64_t c, int64_t pos0, kvr_error *err) {
    KVR_TRY(kvr_ws_check_chunk(ws, c, pos0, err));
    ws->c = c;
    ws->pos0 = pos0;
    return ws->be->set_chunk(ws, err);
}

kvr_status kvr_op_embed(kvr_workspace *ws, const int32_t *tokens, int64_t c, int64_t pos0,
                        kvr_error *err) {
    const int32_t V = ws->m->cfg.vocab_size;
    for (int64_t r = 0; r < c; r++)
        if (tokens[r] < 0 || tokens[r] >= V)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "token id %d at position %lld is outside the vocabulary [0, %d)",
                                 tokens[r], (long long)(pos0 + r), V);
    KVR_TRY(kvr_op_set_chunk(ws, c, pos0, err));
    return ws->be->embed(ws, tokens, err);
}

kvr_status kvr_op_pre(kvr_workspace *ws, int32_t layer, kvr_error *err) {
    KVR_TRY(kvr_ws_check_layer(ws, layer, err));
    return ws->be->pre(ws, layer, err);
}

kvr_status kvr_op_attn(kvr_workspace *ws, int32_t layer, float *lse, kvr_error *err) {
    KVR_TRY(kvr_ws_check_layer(ws, layer, err));
    return ws->be->attn(ws, layer, lse, err);
}

kvr_status kvr_op_attn_block(kvr_workspace *ws, const void *k, const void *v, int64_t kpos0,
                             int64_t kn, bool first, kvr_error *err) {
    if (ws->c < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "attn_block before any chunk was set");
    if (!k || !v || kpos0 < 0 || kn < 0 || kn > ws->max_ctx)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "attn_block: %lld keys at %lld (need buffers, 0 <= keys <= %lld)",
                             (long long)kn, (long long)kpos0, (long long)ws->max_ctx);
    if (!ws->be->attn_block)
        return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                             "backend %s has no blockwise attention (needed by mode ring)",
                             ws->be->name);
    return ws->be->attn_block(ws, k, v, kpos0, kn, first, err);
}

kvr_status kvr_op_post(kvr_workspace *ws, int32_t layer, kvr_error *err) {
    KVR_TRY(kvr_ws_check_layer(ws, layer, err));
    return ws->be->post(ws, layer, err);
}

kvr_status kvr_op_head(kvr_workspace *ws, int32_t *top, kvr_error *err) {
    if (ws->c < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "head before any chunk was set");
    return ws->be->head(ws, top, err);
}

int32_t kvr_argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

// ----------------------------------------------------------------------------
// copies and raw buffers

kvr_status kvr_workspace_kv_to_host(kvr_workspace *ws, int32_t layer, int64_t r0, int64_t n,
                                    float *k, float *v, kvr_error *err) {
    if (layer < 0 || layer >= ws->m->cfg.n_layers || r0 < 0 || n < 0 || r0 + n > ws->max_ctx)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "KV rows [%lld, %lld) of layer %d: outside the workspace's %d "
                             "layers x %lld rows",
                             (long long)r0, (long long)(r0 + n), layer, ws->m->cfg.n_layers,
                             (long long)ws->max_ctx);
    if (n == 0 || (!k && !v)) return KVR_OK;
    return ws->be->kv_to_host(ws, layer, r0, n, k, v, err);
}

kvr_status kvr_workspace_kv_copy(kvr_workspace *dst, kvr_workspace *src, int32_t layer,
                                 int64_t r0, int64_t n, kvr_error *err) {
    if (dst->be != src->be || dst->m != src->m)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "KV copy: the workspaces belong to other backends or models");
    if (layer < 0 || layer >= dst->m->cfg.n_layers || r0 < 0 || n < 0 ||
        r0 + n > dst->max_ctx || r0 + n > src->max_ctx)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "KV copy of rows [%lld, %lld) of layer %d: outside %d layers x %lld "
                             "rows (destination) or %lld rows (source)",
                             (long long)r0, (long long)(r0 + n), layer, dst->m->cfg.n_layers,
                             (long long)dst->max_ctx, (long long)src->max_ctx);
    if (!dst->be->kv_copy)
        return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                             "backend %s cannot copy K/V rows between workspaces",
                             dst->be->name);
    if (n == 0 || dst == src) return KVR_OK;
    return dst->be->kv_copy(dst, src, layer, r0, n, err);
}

kvr_status kvr_workspace_logits_to_host(kvr_workspace *ws, float *out, kvr_error *err) {
    return ws->be->logits_to_host(ws, out, err);
}

static kvr_status kvr_ws_check_rows(const kvr_workspace *ws, int64_t rows, kvr_error *err) {
    if (rows < 0 || rows > ws->max_chunk)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "%lld rows of x: the workspace holds %lld", (long long)rows,
                             (long long)ws->max_chunk);
    return KVR_OK;
}

kvr_status kvr_workspace_x_from_host(kvr_workspace *ws, const float *x, int64_t rows,
                                     kvr_error *err) {
    KVR_TRY(kvr_ws_check_rows(ws, rows, err));
    return rows ? ws->be->x_from_host(ws, x, rows, err) : KVR_OK;
}

kvr_status kvr_workspace_x_to_host(kvr_workspace *ws, float *x, int64_t rows, kvr_error *err) {
    KVR_TRY(kvr_ws_check_rows(ws, rows, err));
    return rows ? ws->be->x_to_host(ws, x, rows, err) : KVR_OK;
}

kvr_mem_space kvr_workspace_kv_buffers(kvr_workspace *ws, int32_t layer, void **k, void **v) {
    KVR_ASSERT(layer >= 0 && layer < ws->m->cfg.n_layers);
    ws->be->kv_buffers(ws, layer, k, v);
    return ws->be->mem_space;
}

// ----------------------------------------------------------------------------
// events and synchronisation

kvr_status kvr_event_create(kvr_workspace *ws, kvr_event **out, kvr_error *err) {
    *out = NULL;
    KVR_TRY(ws->be->event_create(ws, out, err));
    (*out)->ws = ws;
    (*out)->recorded = false;
    return KVR_OK;
}

void kvr_event_destroy(kvr_event *ev) {
    if (ev) ev->ws->be->event_destroy(ev);
}

kvr_status kvr_event_record(kvr_event *ev, kvr_error *err) {
    KVR_TRY(ev->ws->be->event_record(ev, err));
    ev->recorded = true;
    return KVR_OK;
}

kvr_status kvr_event_elapsed_us(const kvr_event *start, const kvr_event *end, double *us,
                                kvr_error *err) {
    if (!start->recorded || !end->recorded || start->ws->be != end->ws->be)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "elapsed time: both events must be recorded on one backend");
    return end->ws->be->event_elapsed_us(start, end, us, err);
}

void *kvr_workspace_stream(kvr_workspace *ws) {
    return ws->be->stream ? ws->be->stream(ws) : NULL;
}

kvr_status kvr_workspace_sync(kvr_workspace *ws, kvr_error *err) {
    return ws->be->sync(ws, err);
}

kvr_status kvr_workspace_prepare_thread(kvr_workspace *ws, kvr_error *err) {
    return ws->be->prepare_thread ? ws->be->prepare_thread(ws, err) : KVR_OK;
}
