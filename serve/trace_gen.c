/* trace_gen.c -- synthetic traces (kvr_trace.h): Poisson or Gamma arrivals at a rate and
 * burstiness, prompt and output lengths fixed, uniform, lognormal or resampled from a trace.
 * All randomness is GSL's (MT19937 generators, gsl_ran_* distributions); each of the three
 * streams (gaps, prompt lengths, output lengths) has its own generator seeded from the seed, so
 * a trace is reproducible and the arrivals do not depend on the length distributions. */
#include "serve_internal.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// names and specs

static const char *const trace_arrival_names[KVR_TRACE_ARRIVAL_COUNT] = {"poisson", "gamma"};

const char *kvr_trace_arrival_name(kvr_trace_arrival a) {
    return (unsigned)a < KVR_TRACE_ARRIVAL_COUNT ? trace_arrival_names[a] : "?";
}

kvr_status kvr_trace_arrival_parse(const char *s, kvr_trace_arrival *out, kvr_error *err) {
    int i = kvr_name_index(trace_arrival_names, KVR_TRACE_ARRIVAL_COUNT, s);
    if (i < 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "unknown arrival process '%.40s' (poisson, gamma)", s ? s : "");
    *out = (kvr_trace_arrival)i;
    return KVR_OK;
}

/* A number from the start of s up to stop (',' or the end): whole when whole is set. */
static bool trace_spec_num(const char *s, const char **rest, bool whole, double *out) {
    char *end;
    if (!*s || strchr(" \t+", *s) || strpbrk(s, "xX")) return false;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v)) return false;
    if (whole && v != floor(v)) return false;
    *out = v;
    *rest = end;
    return true;
}

kvr_status kvr_trace_length_parse(const char *spec, kvr_trace_length *out, kvr_error *err) {
    kvr_trace_length l = {KVR_TRACE_LENGTH_FIXED, 0, 0, NULL, NULL};
    if (!spec) spec = "";
    const double max = (double)KVR_TRACE_MAX_TOKENS;
    const char *p = spec, *r = NULL;
    if (!strncmp(spec, "file:", 5)) {
        if (!spec[5])
            return kvr_error_set(err, KVR_ERR_INVALID_ARG, "length 'file:': no file named");
        l.kind = KVR_TRACE_LENGTH_RESAMPLE;
        l.path = spec + 5;
        *out = l;
        return KVR_OK;
    }
    if (!strncmp(spec, "fixed:", 6)) p = spec + 6;
    if (p == spec + 6 || (*spec >= '0' && *spec <= '9')) {
        if (!trace_spec_num(p, &r, true, &l.a) || *r || l.a < 1 || l.a > max)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "length '%.60s': a fixed length is a whole number of tokens in "
                                 "[1, %lld]",
                                 spec, (long long)KVR_TRACE_MAX_TOKENS);
        *out = l;
        return KVR_OK;
    }
    if (!strncmp(spec, "uniform:", 8)) {
        l.kind = KVR_TRACE_LENGTH_UNIFORM;
        p = spec + 8;
        if (!trace_spec_num(p, &r, true, &l.a) || *r != ',' ||
            !trace_spec_num(r + 1, &r, true, &l.b) || *r || l.a < 1 || l.b > max || l.a > l.b)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "length '%.60s': uniform:A,B takes whole numbers 1 <= A <= B <= "
                                 "%lld",
                                 spec, (long long)KVR_TRACE_MAX_TOKENS);
        *out = l;
        return KVR_OK;
    }
    if (!strncmp(spec, "lognormal:", 10)) {
        l.kind = KVR_TRACE_LENGTH_LOGNORMAL;
        p = spec + 10;
        if (!trace_spec_num(p, &r, false, &l.a) || *r != ',' ||
            !trace_spec_num(r + 1, &r, false, &l.b) || *r || l.a < 1 || l.a > max || l.b < 0 ||
            l.b > 4)
            return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                 "length '%.60s': lognormal:MEAN,SIGMA takes a mean in [1, %lld] "
                                 "tokens and a sigma of ln(length) in [0, 4]",
                                 spec, (long long)KVR_TRACE_MAX_TOKENS);
        *out = l;
        return KVR_OK;
    }
    return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                         "length '%.60s': not N, fixed:N, uniform:A,B, lognormal:MEAN,SIGMA or "
                         "file:PATH",
                         spec);
}

void kvr_trace_length_format(const kvr_trace_length *l, char *buf, size_t len) {
    if (!len) return;
    switch (l->kind) {
        case KVR_TRACE_LENGTH_FIXED: snprintf(buf, len, "fixed:%.0f", l->a); break;
        case KVR_TRACE_LENGTH_UNIFORM: snprintf(buf, len, "uniform:%.0f,%.0f", l->a, l->b); break;
        case KVR_TRACE_LENGTH_LOGNORMAL: snprintf(buf, len, "lognormal:%g,%g", l->a, l->b); break;
        case KVR_TRACE_LENGTH_RESAMPLE:
            snprintf(buf, len, "file:%s", l->path ? l->path : "(a trace)");
            break;
        default: snprintf(buf, len, "?"); break;
    }
}

// ----------------------------------------------------------------------------
// generation

kvr_trace_gen_params kvr_trace_gen_params_default(void) {
    kvr_trace_gen_params p;
    memset(&p, 0, sizeof p);
    p.arrival = KVR_TRACE_ARRIVAL_POISSON;
    p.rate_per_s = 1;
    p.cv = 1;
    p.prompt = (kvr_trace_length){KVR_TRACE_LENGTH_FIXED, 512, 0, NULL, NULL};
    p.output = (kvr_trace_length){KVR_TRACE_LENGTH_FIXED, 128, 0, NULL, NULL};
    p.seed = 1;
    return p;
}

static kvr_status trace_length_check(const kvr_trace_length *l, const char *what,
                                     kvr_error *err) {
    const double max = (double)KVR_TRACE_MAX_TOKENS;
    bool ok = true;
    switch (l->kind) {
        case KVR_TRACE_LENGTH_FIXED: ok = l->a >= 1 && l->a <= max && l->a == floor(l->a); break;
        case KVR_TRACE_LENGTH_UNIFORM:
            ok = l->a >= 1 && l->b <= max && l->a <= l->b && l->a == floor(l->a) &&
                 l->b == floor(l->b);
            break;
        case KVR_TRACE_LENGTH_LOGNORMAL: ok = l->a >= 1 && l->a <= max && l->b >= 0 && l->b <= 4; break;
        case KVR_TRACE_LENGTH_RESAMPLE:
            if (!l->source || l->source->n_requests == 0)
                return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                                     "%s lengths: resampling needs a trace with requests%s%s%s",
                                     what, l->path ? " (" : "", l->path ? l->path : "",
                                     l->path ? ")" : "");
            break;
        default: ok = false; break;
    }
    if (!ok) {
        char spec[96];
        kvr_trace_length_format(l, spec, sizeof spec);
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "%s lengths: '%s' is out of range", what,
                             spec);
    }
    return KVR_OK;
}

/* One length; i_joint >= 0 is the request index drawn for a joint resample. */
static int64_t trace_length_draw(const kvr_trace_length *l, gsl_rng *r, bool prompt,
                                 int64_t i_joint) {
    switch (l->kind) {
        case KVR_TRACE_LENGTH_UNIFORM: {
            const unsigned long span = (unsigned long)(l->b - l->a) + 1;
            return (int64_t)l->a + (int64_t)gsl_rng_uniform_int(r, span);
        }
        case KVR_TRACE_LENGTH_LOGNORMAL: {
            const double zeta = log(l->a) - 0.5 * l->b * l->b;
            double v = nearbyint(gsl_ran_lognormal(r, zeta, l->b));
            if (!(v >= 1)) v = 1;
            if (v > (double)KVR_TRACE_MAX_TOKENS) v = (double)KVR_TRACE_MAX_TOKENS;
            return (int64_t)v;
        }
        case KVR_TRACE_LENGTH_RESAMPLE: {
            const int64_t i = i_joint >= 0 ? i_joint
                                           : (int64_t)gsl_rng_uniform_int(
                                                 r, (unsigned long)l->source->n_requests);
            const kvr_trace_request *q = &l->source->requests[i];
            return prompt ? q->prompt_tokens : q->output_tokens;
        }
        default: return (int64_t)l->a;
    }
}

/* splitmix64: distinct, well-mixed seeds for the three streams from one seed */
static unsigned long trace_seed(uint64_t seed, uint64_t stream) {
    uint64_t z = seed + 0x9E3779B97F4A7C15ull * (stream + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (unsigned long)(z & 0xFFFFFFFFul); /* MT19937 takes 32 bits of seed */
}

kvr_status kvr_trace_generate(const kvr_trace_gen_params *p, kvr_trace **out, kvr_error *err) {
    *out = NULL;
    gsl_set_error_handler_off(); /* GSL reports through return values, never aborts */
    if ((unsigned)p->arrival >= KVR_TRACE_ARRIVAL_COUNT)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "unknown arrival process %d",
                             (int)p->arrival);
    if (!(isfinite(p->rate_per_s) && p->rate_per_s > 0 && p->rate_per_s <= 1e9))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "rate_per_s %g: must be > 0 (and at most 1e9) requests per second",
                             p->rate_per_s);
    if (p->arrival == KVR_TRACE_ARRIVAL_GAMMA && !(p->cv > 0 && p->cv <= 10))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "cv %g: the gaps' coefficient of variation must be in (0, 10] "
                             "(1 = Poisson)",
                             p->cv);
    if (p->n_requests < 0 || p->n_requests > KVR_TRACE_MAX_REQUESTS)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "n_requests %lld: must be in [0, %lld]",
                             (long long)p->n_requests, (long long)KVR_TRACE_MAX_REQUESTS);
    if (!(isfinite(p->duration_s) && p->duration_s >= 0))
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "duration_s %g: must be >= 0 seconds",
                             p->duration_s);
    if (p->n_requests == 0 && p->duration_s == 0)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "set a number of requests or a duration (or both)");
    if (p->n_requests == 0 && p->rate_per_s * p->duration_s > 0.9 * KVR_TRACE_MAX_REQUESTS)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG,
                             "rate %g/s over %g s is about %.3g requests, more than %lld",
                             p->rate_per_s, p->duration_s, p->rate_per_s * p->duration_s,
                             (long long)KVR_TRACE_MAX_REQUESTS);
    KVR_TRY(trace_length_check(&p->prompt, "prompt", err));
    KVR_TRY(trace_length_check(&p->output, "output", err));
    const bool joint = p->prompt.kind == KVR_TRACE_LENGTH_RESAMPLE &&
                       p->output.kind == KVR_TRACE_LENGTH_RESAMPLE &&
                       p->prompt.source == p->output.source;

    gsl_rng *rg = gsl_rng_alloc(gsl_rng_mt19937), *rp = gsl_rng_alloc(gsl_rng_mt19937),
            *ro = gsl_rng_alloc(gsl_rng_mt19937);
    kvr_trace *t = NULL;
    kvr_status st = KVR_OK;
    if (!rg || !rp || !ro) {
        st = kvr_error_set(err, KVR_ERR_NOMEM, "trace generator: out of memory");
        goto done;
    }
    gsl_rng_set(rg, trace_seed(p->seed, 0));
    gsl_rng_set(rp, trace_seed(p->seed, 1));
    gsl_rng_set(ro, trace_seed(p->seed, 2));
    if ((st = kvr_trace_create(&t, err)) != KVR_OK) goto done;
    const double mean_gap = 1.0 / p->rate_per_s;
    const double shape = 1.0 / (p->cv * p->cv), scale = mean_gap / shape;
    double at = 0;
    for (int64_t i = 0; p->n_requests == 0 || i < p->n_requests; i++) {
        if (i > 0) {
            const double gap = p->arrival == KVR_TRACE_ARRIVAL_GAMMA
                                   ? gsl_ran_gamma(rg, shape, scale)
                                   : gsl_ran_exponential(rg, mean_gap);
            at += gap;
        }
        if (p->duration_s > 0 && at >= p->duration_s) break;
        const int64_t ij = joint ? (int64_t)gsl_rng_uniform_int(
                                       rp, (unsigned long)p->prompt.source->n_requests)
                                 : -1;
        const int64_t np = trace_length_draw(&p->prompt, rp, true, ij);
        const int64_t no = trace_length_draw(&p->output, ro, false, ij);
        if ((st = kvr_trace_append(t, at, np, no, NULL, err)) != KVR_OK) goto done;
    }
done:
    gsl_rng_free(rg);
    gsl_rng_free(rp);
    gsl_rng_free(ro);
    if (st != KVR_OK) {
        kvr_trace_destroy(t);
        return st;
    }
    *out = t;
    return KVR_OK;
}
