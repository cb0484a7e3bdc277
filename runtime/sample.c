/* sample.c -- kvr_sampler: greedy, temperature, top-k, top-p over one row of logits, with a
 * seeded generator (splitmix64) so that draws are reproducible. */
#include "kvr_backend.h"
#include "kvr_sample.h"

#include <math.h>
#include <stdlib.h>

struct kvr_sampler {
    kvr_sampler_params p;
    int32_t n_vocab;
    uint64_t state;
    int32_t *idx; /* candidate ids, best first once sorted */
    double *prob; /* their weights */
};

kvr_sampler_params kvr_sampler_params_default(void) {
    kvr_sampler_params p = {0.0f, 0, 1.0f, 0};
    return p;
}

kvr_status kvr_sampler_params_check(const kvr_sampler_params *p, kvr_error *err) {
    if (!p) return kvr_error_set(err, KVR_ERR_INVALID_ARG, "sampler: no parameters");
    if (!isfinite(p->temperature) || p->temperature < 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "--temp %g: need a finite temperature >= 0 (0 = greedy)",
                             (double)p->temperature);
    if (p->top_k < 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "--top-k %d: need >= 0 (0 = no limit)",
                             p->top_k);
    if (!(p->top_p > 0 && p->top_p <= 1))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "--top-p %g: need a value in (0, 1]",
                             (double)p->top_p);
    return KVR_OK;
}

bool kvr_sampler_params_greedy(const kvr_sampler_params *p) {
    return p->temperature == 0 || p->top_k == 1;
}

kvr_status kvr_sampler_create(const kvr_sampler_params *p, int32_t n_vocab, kvr_sampler **out,
                              kvr_error *err) {
    *out = NULL;
    KVR_TRY(kvr_sampler_params_check(p, err));
    if (n_vocab < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "sampler: vocabulary of %d tokens",
                             n_vocab);
    kvr_sampler *s = calloc(1, sizeof *s);
    if (s) {
        s->idx = malloc((size_t)n_vocab * sizeof *s->idx);
        s->prob = malloc((size_t)n_vocab * sizeof *s->prob);
    }
    if (!s || !s->idx || !s->prob) {
        kvr_sampler_destroy(s);
        return kvr_error_set(err, KVR_ERR_NOMEM, "sampler: out of memory for %d tokens",
                             n_vocab);
    }
    s->p = *p;
    s->n_vocab = n_vocab;
    s->state = p->seed;
    *out = s;
    return KVR_OK;
}

void kvr_sampler_destroy(kvr_sampler *s) {
    if (!s) return;
    free(s->idx);
    free(s->prob);
    free(s);
}

/* splitmix64: a uniform double in [0, 1) */
static double sampler_uniform(kvr_sampler *s) {
    uint64_t z = (s->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/* a before b: the larger logit, then the lower id */
static bool sampler_before(const float *l, int32_t a, int32_t b) {
    return l[a] > l[b] || (l[a] == l[b] && a < b);
}

/* qsort has no context argument: the logits being sorted, per thread */
static _Thread_local const float *sampler_tls_logits;

static int sampler_cmp(const void *x, const void *y) {
    const int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    const float *l = sampler_tls_logits;
    return sampler_before(l, a, b) ? -1 : sampler_before(l, b, a) ? 1 : 0;
}

/* Sift-down in a min-heap (the worst candidate at the root) of n ids. */
static void sampler_sift(const float *l, int32_t *h, int32_t n, int32_t i) {
    for (;;) {
        int32_t w = i, c = 2 * i + 1;
        if (c < n && sampler_before(l, h[w], h[c])) w = c;
        if (c + 1 < n && sampler_before(l, h[w], h[c + 1])) w = c + 1;
        if (w == i) return;
        const int32_t t = h[i];
        h[i] = h[w], h[w] = t;
        i = w;
    }
}

int32_t kvr_sampler_sample(kvr_sampler *s, const float *l) {
    const int32_t V = s->n_vocab;
    if (kvr_sampler_params_greedy(&s->p)) return kvr_argmax(l, V);
    int32_t n = V;
    const bool need_order = s->p.top_k > 0 || s->p.top_p < 1;
    if (s->p.top_k > 0 && s->p.top_k < V) { /* the k best through a min-heap, then sorted */
        n = s->p.top_k;
        for (int32_t i = 0; i < n; i++) s->idx[i] = i;
        for (int32_t i = n / 2 - 1; i >= 0; i--) sampler_sift(l, s->idx, n, i);
        for (int32_t i = n; i < V; i++)
            if (sampler_before(l, i, s->idx[0])) {
                s->idx[0] = i;
                sampler_sift(l, s->idx, n, 0);
            }
    } else {
        for (int32_t i = 0; i < V; i++) s->idx[i] = i;
    }
    if (need_order) {
        sampler_tls_logits = l;
        qsort(s->idx, (size_t)n, sizeof *s->idx, sampler_cmp);
    }
    float mx = l[s->idx[0]];
    if (!need_order)
        for (int32_t i = 1; i < n; i++) mx = l[i] > mx ? l[i] : mx;
    const double inv_t = 1.0 / s->p.temperature;
    double total = 0;
    for (int32_t i = 0; i < n; i++) {
        s->prob[i] = exp(((double)l[s->idx[i]] - mx) * inv_t);
        total += s->prob[i];
    }
    if (s->p.top_p < 1) { /* the smallest prefix reaching top_p of the mass */
        double cum = 0;
        int32_t keep = n;
        for (int32_t i = 0; i < n; i++) {
            cum += s->prob[i];
            if (cum >= s->p.top_p * total) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        total = cum;
    }
    const double u = sampler_uniform(s) * total;
    double acc = 0;
    for (int32_t i = 0; i < n; i++) {
        acc += s->prob[i];
        if (u < acc) return s->idx[i];
    }
    return s->idx[n - 1]; /* rounding at the top end */
}
