/* decode.c -- kvr_decoder (one token per step through the layer ops on a workspace that holds
 * the request's KV cache) and kvr_generate (draw, stop, stream the text, time each step). */
#include "backend_internal.h"
#include "kvr_decode.h"
#include "kvr_device.h"

#include <stdlib.h>
#include <string.h>

struct kvr_decoder {
    kvr_weights *w; /* owned when given */
    kvr_workspace *ws;
    int64_t n_past;
    int32_t device;
};

kvr_status kvr_decoder_create(kvr_weights *w, kvr_workspace *ws, int64_t n_past, int32_t device,
                              kvr_decoder **out, kvr_error *err) {
    *out = NULL;
    if (!ws) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "decoder: no workspace");
    if (n_past < 1 || n_past > ws->max_ctx)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "decoder: %lld cached positions in a workspace of %lld",
                             (long long)n_past, (long long)ws->max_ctx);
    kvr_decoder *d = calloc(1, sizeof *d);
    if (!d) return kvr_error_set(err, KVR_ERR_NOMEM, "decoder: out of memory");
    d->w = w;
    d->ws = ws;
    d->n_past = n_past;
    d->device = device;
    *out = d;
    return KVR_OK;
}

void kvr_decoder_destroy(kvr_decoder *d) {
    if (!d) return;
    kvr_workspace_destroy(d->ws);
    kvr_weights_free(d->w);
    free(d);
}

int64_t kvr_decoder_n_past(const kvr_decoder *d) { return d->n_past; }
int64_t kvr_decoder_capacity(const kvr_decoder *d) { return d->ws->max_ctx; }

kvr_status kvr_decoder_step(kvr_decoder *d, int32_t token, int32_t *top, float *logits,
                            kvr_error *err) {
    if (d->n_past >= d->ws->max_ctx)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "decode: the KV cache is full (%lld positions)",
                             (long long)d->ws->max_ctx);
    /* embed checks the id; pre appends row n_past of K and V to each layer's cache, attn reads
     * rows [0, n_past] */
    KVR_TRY(kvr_op_embed(d->ws, &token, 1, d->n_past, err));
    for (int32_t l = 0; l < kvr_workspace_config(d->ws)->n_layers; l++) {
        KVR_TRY(kvr_op_pre(d->ws, l, err));
        KVR_TRY(kvr_op_attn(d->ws, l, NULL, err));
        KVR_TRY(kvr_op_post(d->ws, l, err));
    }
    KVR_TRY(kvr_op_head(d->ws, top, err));
    if (logits) KVR_TRY(kvr_workspace_logits_to_host(d->ws, logits, err));
    d->n_past++;
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// generation

static const char *const stop_names[] = {"none", "eos", "max", "caller"};

const char *kvr_stop_reason_name(kvr_stop_reason r) {
    return r >= KVR_STOP_NONE && r <= KVR_STOP_CALLER ? stop_names[r] : "unknown";
}

kvr_generate_params kvr_generate_params_default(void) {
    kvr_generate_params p;
    memset(&p, 0, sizeof p);
    p.sampling = kvr_sampler_params_default();
    return p;
}

void kvr_generate_result_free(kvr_generate_result *r) {
    if (!r) return;
    free(r->ids);
    free(r->text);
    free(r->step_ms);
    memset(r, 0, sizeof *r);
}

size_t kvr_utf8_complete_len(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = n, cont = 0;
    while (i > 0 && cont < 3 && (u[i - 1] & 0xc0) == 0x80) i--, cont++;
    if (i == 0) return n;
    const unsigned char lead = u[i - 1];
    const size_t need = (lead & 0xe0) == 0xc0   ? 2
                        : (lead & 0xf0) == 0xe0 ? 3
                        : (lead & 0xf8) == 0xf0 ? 4
                                                : 0; /* ASCII, or not a lead byte */
    return need > 0 && cont + 1 < need ? i - 1 : n;
}

static int generate_cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* linear interpolation between the closest ranks (numpy's default) of sorted v */
static double generate_pct(const double *v, int32_t n, double q) {
    const double x = q * (n - 1);
    const int32_t i = (int32_t)x;
    return i + 1 < n ? v[i] + (x - i) * (v[i + 1] - v[i]) : v[n - 1];
}

void kvr_generate_stats(const double *step_ms, int32_t n, kvr_generate_result *r) {
    r->decode_ms = r->tpot_ms = r->tpot_p50_ms = r->tpot_p90_ms = 0;
    if (n < 1) return;
    double *v = malloc((size_t)n * sizeof *v);
    for (int32_t i = 0; i < n; i++) r->decode_ms += step_ms[i];
    r->tpot_ms = r->decode_ms / n;
    if (!v) return; /* the percentiles stay 0 */
    memcpy(v, step_ms, (size_t)n * sizeof *v);
    qsort(v, (size_t)n, sizeof *v, generate_cmp);
    r->tpot_p50_ms = generate_pct(v, n, 0.5);
    r->tpot_p90_ms = generate_pct(v, n, 0.9);
    free(v);
}

/* A growing byte buffer. */
typedef struct gen_buf {
    char *p;
    size_t n, cap;
} gen_buf;

static kvr_status gen_buf_reserve(gen_buf *b, size_t more, kvr_error *err) {
    if (b->n + more + 1 <= b->cap) return KVR_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return kvr_error_set(err, KVR_ERR_NOMEM, "decode: out of memory for the text");
    b->p = p;
    b->cap = cap;
    return KVR_OK;
}

/* Append id's piece to b (NUL-terminated). */
static kvr_status gen_buf_piece(gen_buf *b, const kvr_tokenizer *tok, int32_t id,
                                kvr_error *err) {
    KVR_TRY(gen_buf_reserve(b, 64, err));
    int64_t k = kvr_tokenizer_decode_token(tok, id, b->p + b->n, b->cap - b->n);
    if (k < 0) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "decode: token %d has no text", id);
    if ((size_t)k + 1 > b->cap - b->n) { /* longer than the room: again with enough */
        KVR_TRY(gen_buf_reserve(b, (size_t)k, err));
        kvr_tokenizer_decode_token(tok, id, b->p + b->n, b->cap - b->n);
    }
    b->n += (size_t)k;
    b->p[b->n] = 0;
    return KVR_OK;
}

kvr_status kvr_generate_text(const kvr_tokenizer *tok, const int32_t *ids, int32_t n,
                             kvr_stop_reason stop, char **text, size_t *len, kvr_error *err) {
    gen_buf b = {0};
    kvr_status st = gen_buf_reserve(&b, 0, err);
    const int32_t m = stop == KVR_STOP_EOS && n > 0 ? n - 1 : n;
    for (int32_t i = 0; st == KVR_OK && i < m; i++) st = gen_buf_piece(&b, tok, ids[i], err);
    if (st != KVR_OK) {
        free(b.p);
        return st;
    }
    *text = b.p;
    *len = b.n;
    return KVR_OK;
}

static bool generate_is_stop(const kvr_generate_params *p, int32_t id) {
    for (int32_t i = 0; i < p->n_stop; i++)
        if (p->stop_ids[i] == id) return true;
    return false;
}

kvr_status kvr_generate(kvr_decoder *d, const float *logits, const kvr_generate_params *p,
                        kvr_generate_result *out, kvr_error *err) {
    memset(out, 0, sizeof *out);
    if (!d || !logits || !p)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "generate: no decoder, logits or params");
    if (p->n_predict < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "--n-predict %d: need >= 1 to generate",
                             p->n_predict);
    const int64_t room = kvr_decoder_capacity(d) - kvr_decoder_n_past(d);
    if (p->n_predict - 1 > room)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "--n-predict %d: the KV cache has room for %lld more positions "
                             "after the %lld cached",
                             p->n_predict, (long long)room, (long long)kvr_decoder_n_past(d));
    if (d->device >= 0) KVR_TRY(kvr_device_use(d->device, err));
    const int32_t V = kvr_workspace_config(d->ws)->vocab_size;
    const bool greedy = kvr_sampler_params_greedy(&p->sampling);
    kvr_sampler *s = NULL;
    KVR_TRY(kvr_sampler_create(&p->sampling, V, &s, err));
    float *lg = greedy && !p->logits_out ? NULL : malloc((size_t)V * sizeof *lg);
    out->ids = malloc((size_t)p->n_predict * sizeof *out->ids);
    out->step_ms = malloc((size_t)p->n_predict * sizeof *out->step_ms);
    gen_buf text = {0}; /* every piece but a stop token's */
    size_t sent = 0;    /* bytes of text passed to the callback */
    kvr_status st = KVR_OK;
    if ((!greedy && !lg) || (p->logits_out && !lg) || !out->ids || !out->step_ms)
        st = kvr_error_set(err, KVR_ERR_NOMEM, "generate: out of memory for %d tokens",
                           p->n_predict);
    if (st == KVR_OK && p->tok) st = gen_buf_reserve(&text, 0, err);
    int32_t id = st == KVR_OK ? kvr_sampler_sample(s, logits) : -1;
    if (st == KVR_OK && p->logits_out) memcpy(p->logits_out, logits, (size_t)V * sizeof *lg);
    while (st == KVR_OK) {
        out->ids[out->n_ids++] = id;
        const bool stop = generate_is_stop(p, id);
        if (!stop && p->tok && (st = gen_buf_piece(&text, p->tok, id, err)) != KVR_OK) break;
        if (p->on_token) {
            const char *rest = text.p ? text.p + sent : ""; /* no tokenizer: no text */
            const size_t upto = stop ? sent : sent + kvr_utf8_complete_len(rest, text.n - sent);
            const bool go = p->on_token(p->user, id, rest, upto - sent);
            sent = upto;
            if (!go) {
                out->stop = KVR_STOP_CALLER;
                break;
            }
        }
        if (stop) {
            out->stop = KVR_STOP_EOS;
            break;
        }
        if (out->n_ids == p->n_predict) {
            out->stop = KVR_STOP_MAX;
            break;
        }
        const double t0 = kvr_time_us();
        int32_t top = -1;
        if ((st = kvr_decoder_step(d, id, greedy ? &top : NULL, lg, err)) != KVR_OK) break;
        id = greedy ? top : kvr_sampler_sample(s, lg);
        out->step_ms[out->n_steps++] = (kvr_time_us() - t0) * 1e-3;
        if (p->logits_out) /* outside the timed step */
            memcpy(p->logits_out + (size_t)out->n_ids * (size_t)V, lg, (size_t)V * sizeof *lg);
    }
    if (st == KVR_OK && p->on_token && out->stop != KVR_STOP_CALLER && text.n > sent)
        p->on_token(p->user, -1, text.p + sent, text.n - sent); /* the bytes still held */
    kvr_generate_stats(out->step_ms, out->n_steps, out);
    out->text = text.p;
    out->text_len = text.n;
    kvr_sampler_destroy(s);
    free(lg);
    return st;
}
