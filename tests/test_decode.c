/* test_decode.c -- decode after prefill (kvr_decode.h) and sampling (kvr_sample.h):
 *   - the sampler: parameter errors; temperature 0 and top-k 1 are the argmax; a seed gives
 *     the same draws again and another seed others; top-k and top-p keep only their candidates;
 *     the draws follow the softmax at the temperature;
 *   - the UTF-8 hold-back of streamed text;
 *   - greedy decode on the tiny preset equals, token for token, the argmax of a fresh prefill
 *     of the prompt plus the tokens so far (an independent path: no decode step), and decode
 *     after kvr on 2 and 3 ranks, tsp on 2 and ring on 2 gives the single-rank tokens;
 *   - stop ids end generation (the stop token last, no text), so does the callback, the KV
 *     room is checked, seeded
 *     sampling through kvr_generate repeats, and the session runs decode after its last run;
 *   - on the real model (when present): the streamed text is whole UTF-8 characters and equals
 *     the pieces' concatenation, and the chat template's end token stops generation. */
#include "kvr_decode.h"
#include "kvr_runtime.h"
#include "kvr_session.h"
#include "kvr_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int32_t *make_ids(int64_t n, int32_t vocab, uint64_t seed) {
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((seed >> 33) % (uint64_t)vocab);
    }
    return ids;
}

static float *random_logits(int32_t n, uint64_t seed, float scale) {
    float *l = malloc((size_t)n * sizeof *l);
    for (int32_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        l[i] = scale * ((float)((seed >> 40) & 0xffff) / 65536.0f - 0.5f);
    }
    return l;
}

static kvr_sampler *sampler(float temp, int32_t k, float p, uint64_t seed, int32_t V) {
    kvr_sampler_params sp = {temp, k, p, seed};
    kvr_sampler *s = NULL;
    kvr_error e;
    KVR_CHECK_OK(kvr_sampler_create(&sp, V, &s, &e), &e);
    return s;
}

static void test_sampler_params(void) {
    kvr_error e;
    kvr_sampler_params p = kvr_sampler_params_default();
    KVR_CHECK(kvr_sampler_params_greedy(&p));
    KVR_CHECK_OK(kvr_sampler_params_check(&p, &e), &e);
    p.temperature = -0.1f;
    KVR_CHECK(kvr_sampler_params_check(&p, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "--temp") != NULL);
    p.temperature = NAN;
    KVR_CHECK(kvr_sampler_params_check(&p, &e) == KVR_ERR_INVALID_ARG);
    p = kvr_sampler_params_default();
    p.top_k = -1;
    KVR_CHECK(kvr_sampler_params_check(&p, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "--top-k") != NULL);
    p = kvr_sampler_params_default();
    const float bad_p[] = {0.0f, -0.5f, 1.01f, NAN};
    for (int i = 0; i < 4; i++) {
        p.top_p = bad_p[i];
        KVR_CHECK(kvr_sampler_params_check(&p, &e) == KVR_ERR_INVALID_ARG);
        KVR_CHECK(strstr(e.msg, "--top-p") != NULL && strstr(e.msg, "(0, 1]") != NULL);
    }
    kvr_sampler *s = NULL;
    p = kvr_sampler_params_default();
    KVR_CHECK(kvr_sampler_create(&p, 0, &s, &e) == KVR_ERR_INVALID_ARG && s == NULL);
}

static void test_sampler_greedy(void) {
    const int32_t V = 5000;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        float *l = random_logits(V, seed, 8);
        const int32_t want = kvr_argmax(l, V);
        kvr_sampler *g = sampler(0, 0, 1, seed, V), *t0 = sampler(0, 40, 0.9f, seed, V),
                    *k1 = sampler(1.5f, 1, 1, seed, V), *p0 = sampler(1.0f, 0, 1e-6f, seed, V);
        for (int r = 0; r < 5; r++) {
            KVR_CHECK_EQ_INT(kvr_sampler_sample(g, l), want);
            KVR_CHECK_EQ_INT(kvr_sampler_sample(t0, l), want);
            KVR_CHECK_EQ_INT(kvr_sampler_sample(k1, l), want);
            KVR_CHECK_EQ_INT(kvr_sampler_sample(p0, l), want); /* the top token alone covers p */
        }
        kvr_sampler_destroy(g), kvr_sampler_destroy(t0), kvr_sampler_destroy(k1);
        kvr_sampler_destroy(p0);
        free(l);
    }
    /* ties: the lower id, for greedy and for top-k 1 */
    float tie[4] = {1, 3, 3, 2};
    kvr_sampler *g = sampler(0, 0, 1, 1, 4), *k1 = sampler(2, 1, 1, 1, 4);
    KVR_CHECK_EQ_INT(kvr_sampler_sample(g, tie), 1);
    KVR_CHECK_EQ_INT(kvr_sampler_sample(k1, tie), 1);
    kvr_sampler_destroy(g), kvr_sampler_destroy(k1);
}

static void test_sampler_seeded(void) {
    const int32_t V = 3000, N = 300;
    float *l = random_logits(V, 99, 6);
    const float temps[] = {0.7f, 1.0f, 1.3f};
    for (int c = 0; c < 3; c++) {
        const int32_t k = c == 1 ? 50 : 0;
        const float p = c == 2 ? 0.9f : 1.0f;
        kvr_sampler *a = sampler(temps[c], k, p, 42, V), *b = sampler(temps[c], k, p, 42, V),
                    *o = sampler(temps[c], k, p, 43, V);
        int same_ab = 0, same_ao = 0, distinct = 0;
        int32_t prev = -1;
        for (int32_t i = 0; i < N; i++) {
            const int32_t x = kvr_sampler_sample(a, l), y = kvr_sampler_sample(b, l),
                          z = kvr_sampler_sample(o, l);
            same_ab += x == y;
            same_ao += x == z;
            distinct += x != prev;
            prev = x;
            KVR_CHECK(x >= 0 && x < V);
        }
        KVR_CHECK_EQ_INT(same_ab, N);   /* the same seed: the same draws */
        KVR_CHECK(same_ao < N / 2);     /* another seed: other draws */
        KVR_CHECK(distinct > N / 4);    /* and it is not greedy */
        kvr_sampler_destroy(a), kvr_sampler_destroy(b), kvr_sampler_destroy(o);
    }
    free(l);
}

static void test_sampler_filters(void) {
    const int32_t V = 2000, N = 2000;
    float *l = random_logits(V, 7, 4);
    /* the 5 best ids */
    int32_t best[5];
    float *tmp = malloc((size_t)V * sizeof *tmp);
    memcpy(tmp, l, (size_t)V * sizeof *tmp);
    for (int j = 0; j < 5; j++) {
        best[j] = kvr_argmax(tmp, V);
        tmp[best[j]] = -1e30f;
    }
    free(tmp);
    kvr_sampler *k5 = sampler(5.0f, 5, 1, 3, V); /* hot: all five get drawn */
    int hits[5] = {0};
    for (int32_t i = 0; i < N; i++) {
        const int32_t x = kvr_sampler_sample(k5, l);
        int j = 0;
        while (j < 5 && best[j] != x) j++;
        KVR_CHECK(j < 5);
        if (j < 5) hits[j]++;
    }
    for (int j = 0; j < 5; j++) KVR_CHECK(hits[j] > 0);
    kvr_sampler_destroy(k5);
    /* top-p over three tokens of probabilities 0.5, 0.3, 0.2 (and the rest ~0): p 0.7 keeps
     * two of them, in the ratio 5:3; p 1 all three in 5:3:2 */
    float three[6] = {logf(0.5f), logf(0.3f), logf(0.2f), -80, -80, -80};
    const float ps[2] = {0.7f, 1.0f};
    for (int c = 0; c < 2; c++) {
        kvr_sampler *s = sampler(1.0f, 0, ps[c], 11, 6);
        int n[6] = {0};
        const int M = 20000;
        for (int i = 0; i < M; i++) n[kvr_sampler_sample(s, three)]++;
        const double w0 = c == 0 ? 0.625 : 0.5, w1 = c == 0 ? 0.375 : 0.3, w2 = c == 0 ? 0 : 0.2;
        KVR_CHECK_NEAR((double)n[0] / M, w0, 0.02, 0);
        KVR_CHECK_NEAR((double)n[1] / M, w1, 0.02, 0);
        KVR_CHECK_NEAR((double)n[2] / M, w2, 0.02, 0);
        KVR_CHECK_EQ_INT(n[3] + n[4] + n[5], 0);
        kvr_sampler_destroy(s);
    }
    free(l);
}

static void test_utf8_hold(void) {
    KVR_CHECK_EQ_INT((int)kvr_utf8_complete_len("abc", 3), 3);
    KVR_CHECK_EQ_INT((int)kvr_utf8_complete_len("", 0), 0);
    KVR_CHECK_EQ_INT((int)kvr_utf8_complete_len("a\xc3", 2), 1);             /* é, 1 of 2 */
    KVR_CHECK_EQ_INT((int)kvr_utf8_complete_len("a\xc3\xa9", 3), 3);
    KVR_CHECK_EQ_INT((int)kvr_utf8_complete_len("\xf0\x9f\x98", 3), 0);      /* 😀, 3 of 4 */
    KVR_CHECK_EQ_INT((int)kvr_utf8_complete_len("x\xf0\x9f\x98\x80", 5), 5);
    KVR_CHECK_EQ_INT((int)kvr_utf8_complete_len("\xe6\x97", 2), 0);          /* 日, 2 of 3 */
    KVR_CHECK_EQ_INT((int)kvr_utf8_complete_len("ab\x80\x80", 4), 4);        /* no lead: pass */
    KVR_CHECK_EQ_INT((int)kvr_utf8_complete_len("a\xff", 2), 2);             /* invalid: pass */
    KVR_CHECK_EQ_INT((int)kvr_utf8_complete_len("\xc3\xa9\xc3", 3), 2);
}

// ----------------------------------------------------------------------------
// decode on the tiny preset

static kvr_model *load(const char *name) {
    kvr_model *m = NULL;
    kvr_error e;
    kvr_model_load_params lp = kvr_model_load_params_default();
    KVR_CHECK_OK(kvr_model_load(name, &lp, &m, &e), &e);
    return m;
}

/* Greedy generation of n tokens after a prefill in mode/p; *out gets the result. */
static kvr_status gen(const kvr_model *m, const int32_t *ids, int64_t C, kvr_mode mode, int32_t p,
                      const int64_t *part, const kvr_generate_params *gp, kvr_generate_result *out,
                      kvr_error *e) {
    kvr_prefill_params pp = kvr_prefill_params_default();
    pp.mode = mode;
    pp.n_ranks = p;
    pp.partition = part;
    pp.decode_reserve = gp->n_predict;
    kvr_prefill_result r;
    memset(out, 0, sizeof *out);
    kvr_status st = kvr_prefill_run(m, ids, C, &pp, &r, e);
    if (st != KVR_OK) return st;
    KVR_CHECK(r.decoder != NULL && r.logits != NULL);
    KVR_CHECK_EQ_INT((int)kvr_decoder_n_past(r.decoder), (int)C);
    KVR_CHECK(kvr_decoder_capacity(r.decoder) >= C + gp->n_predict);
    st = kvr_generate(r.decoder, r.logits, gp, out, e);
    if (st == KVR_OK && kvr_sampler_params_greedy(&gp->sampling))
        KVR_CHECK_EQ_INT(out->ids[0], r.first_token);
    kvr_prefill_result_free(&r);
    return st;
}

static bool stop_after_three(void *user, int32_t id, const char *text, size_t len) {
    (void)id, (void)text, (void)len;
    return ++*(int *)user < 3;
}

static void test_decode_matches_prefill(void) {
    kvr_model *m = load("tiny");
    if (!m) return;
    const int32_t V = kvr_model_get_config(m)->vocab_size, N = 12;
    const int64_t C = 37;
    int32_t *ids = make_ids(C + N, V, 5);
    kvr_generate_params gp = kvr_generate_params_default();
    gp.n_predict = N;
    kvr_generate_result g;
    kvr_error e;
    KVR_CHECK_OK(gen(m, ids, C, KVR_MODE_SINGLE, 1, NULL, &gp, &g, &e), &e);
    KVR_CHECK_EQ_INT(g.n_ids, N);
    KVR_CHECK_EQ_INT(g.n_steps, N - 1);
    KVR_CHECK(g.stop == KVR_STOP_MAX);
    KVR_CHECK(g.text == NULL); /* no tokenizer */
    KVR_CHECK(g.tpot_ms > 0 && g.tpot_p50_ms > 0 && g.tpot_p90_ms >= g.tpot_p50_ms);
    /* token i is the argmax of a prefill over the prompt and tokens 0..i-1 */
    int distinct = 0;
    for (int32_t i = 0; i < g.n_ids; i++) {
        if (i > 0) ids[C + i - 1] = g.ids[i - 1];
        kvr_prefill_params pp = kvr_prefill_params_default();
        kvr_prefill_result r;
        KVR_CHECK_OK(kvr_prefill_run(m, ids, C + i, &pp, &r, &e), &e);
        KVR_CHECK_EQ_INT(g.ids[i], r.first_token);
        distinct += i > 0 && g.ids[i] != g.ids[i - 1];
        kvr_prefill_result_free(&r);
    }
    KVR_CHECK(distinct > 0); /* the sequence does not merely repeat one token */

    /* after kvr on 2 and 3 ranks, tsp on 2, ring on 2: the single-rank tokens */
    const int64_t part3[3] = {20, 10, 7};
    struct {
        kvr_mode mode;
        int32_t p;
        const int64_t *part;
    } runs[] = {{KVR_MODE_KVR, 2, NULL},
                {KVR_MODE_KVR, 3, part3},
                {KVR_MODE_TSP, 2, NULL},
                {KVR_MODE_RING, 2, NULL},
                {KVR_MODE_RING, 3, NULL}};
    for (size_t k = 0; k < sizeof runs / sizeof *runs; k++) {
        kvr_generate_result h;
        KVR_CHECK_OK(gen(m, ids, C, runs[k].mode, runs[k].p, runs[k].part, &gp, &h, &e), &e);
        KVR_CHECK_EQ_INT(h.n_ids, g.n_ids);
        for (int32_t i = 0; i < h.n_ids && i < g.n_ids; i++)
            KVR_CHECK_EQ_INT(h.ids[i], g.ids[i]);
        kvr_generate_result_free(&h);
    }

    /* a stop id: generation ends when it is drawn, with it last */
    const int32_t stop = g.ids[4];
    int32_t first = 0;
    while (g.ids[first] != stop) first++;
    gp.stop_ids = &stop;
    gp.n_stop = 1;
    kvr_generate_result s;
    KVR_CHECK_OK(gen(m, ids, C, KVR_MODE_KVR, 2, NULL, &gp, &s, &e), &e);
    KVR_CHECK(s.stop == KVR_STOP_EOS);
    KVR_CHECK_EQ_INT(s.n_ids, first + 1);
    KVR_CHECK_EQ_INT(s.ids[s.n_ids - 1], stop);
    KVR_CHECK_EQ_INT(s.n_steps, first);
    kvr_generate_result_free(&s);
    /* the callback stops it: three calls, three tokens, no more calls */
    int calls = 0;
    gp.n_stop = 0;
    gp.on_token = stop_after_three;
    gp.user = &calls;
    KVR_CHECK_OK(gen(m, ids, C, KVR_MODE_SINGLE, 1, NULL, &gp, &s, &e), &e);
    KVR_CHECK(s.stop == KVR_STOP_CALLER);
    KVR_CHECK_EQ_INT(s.n_ids, 3);
    KVR_CHECK_EQ_INT(calls, 3);
    kvr_generate_result_free(&s);
    kvr_generate_result_free(&g);
    free(ids);
    kvr_model_destroy(m);
}

static void test_decode_room_and_sampling(void) {
    kvr_model *m = load("tiny-mqa");
    if (!m) return;
    const int32_t V = kvr_model_get_config(m)->vocab_size;
    const int64_t C = 20;
    int32_t *ids = make_ids(C, V, 9);
    kvr_error e;
    /* room for 4 more positions, 8 asked */
    kvr_prefill_params pp = kvr_prefill_params_default();
    pp.decode_reserve = 4;
    kvr_prefill_result r;
    KVR_CHECK_OK(kvr_prefill_run(m, ids, C, &pp, &r, &e), &e);
    kvr_generate_params gp = kvr_generate_params_default();
    gp.n_predict = 8;
    kvr_generate_result g;
    KVR_CHECK(kvr_generate(r.decoder, r.logits, &gp, &g, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "room for 4 more") != NULL);
    kvr_generate_result_free(&g);
    gp.n_predict = 0;
    KVR_CHECK(kvr_generate(r.decoder, r.logits, &gp, &g, &e) == KVR_ERR_INVALID_ARG);
    kvr_generate_result_free(&g);
    /* a full cache refuses a step */
    for (int i = 0; i < 4; i++) KVR_CHECK_OK(kvr_decoder_step(r.decoder, 1, NULL, NULL, &e), &e);
    KVR_CHECK(kvr_decoder_step(r.decoder, 1, NULL, NULL, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "full") != NULL);
    kvr_prefill_result_free(&r);
    /* no decode: no decoder */
    pp.decode_reserve = 0;
    KVR_CHECK_OK(kvr_prefill_run(m, ids, C, &pp, &r, &e), &e);
    KVR_CHECK(r.decoder == NULL);
    kvr_prefill_result_free(&r);

    /* seeded sampling through generate: the same seed repeats, temperature 0 is greedy */
    free(ids);
    kvr_model_destroy(m);
    m = load("tiny"); /* tiny-mqa's random head puts nearly all the mass on one token */
    if (!m) return;
    ids = make_ids(C, kvr_model_get_config(m)->vocab_size, 9);
    kvr_generate_params sp = kvr_generate_params_default();
    sp.n_predict = 10;
    sp.sampling.temperature = 1.5f;
    sp.sampling.seed = 77;
    kvr_generate_result a, b, greedy, t0;
    KVR_CHECK_OK(gen(m, ids, C, KVR_MODE_SINGLE, 1, NULL, &sp, &a, &e), &e);
    KVR_CHECK_OK(gen(m, ids, C, KVR_MODE_KVR, 2, NULL, &sp, &b, &e), &e);
    KVR_CHECK_EQ_INT(a.n_ids, 10);
    KVR_CHECK_EQ_INT(b.n_ids, 10);
    for (int i = 0; i < 10; i++) KVR_CHECK_EQ_INT(a.ids[i], b.ids[i]);
    sp.sampling.temperature = 0;
    KVR_CHECK_OK(gen(m, ids, C, KVR_MODE_SINGLE, 1, NULL, &sp, &t0, &e), &e);
    sp.sampling = kvr_sampler_params_default();
    KVR_CHECK_OK(gen(m, ids, C, KVR_MODE_SINGLE, 1, NULL, &sp, &greedy, &e), &e);
    for (int i = 0; i < 10; i++) KVR_CHECK_EQ_INT(t0.ids[i], greedy.ids[i]);
    int differ = 0;
    for (int i = 0; i < 10; i++) differ += a.ids[i] != greedy.ids[i];
    KVR_CHECK(differ > 0); /* temperature 1.5 on 10 tokens: not the greedy sequence */
    kvr_generate_result_free(&a), kvr_generate_result_free(&b);
    kvr_generate_result_free(&greedy), kvr_generate_result_free(&t0);
    free(ids);
    kvr_model_destroy(m);
}

static void test_session_decode(void) {
    kvr_model *m = load("tiny");
    if (!m) return;
    const int64_t C = 30;
    int32_t *ids = make_ids(C, kvr_model_get_config(m)->vocab_size, 21);
    kvr_error e;
    kvr_session_result ra, rb;
    kvr_session_params sp = kvr_session_params_default();
    sp.model = m;
    sp.repeat = 2;
    sp.generate.n_predict = 6;
    KVR_CHECK_OK(kvr_session_run(&sp, ids, C, &ra, &e), &e);
    KVR_CHECK_EQ_INT(ra.gen.n_ids, 6);
    KVR_CHECK(ra.runs[ra.n_runs - 1].decoder == NULL); /* freed after decode */
    sp.mode = KVR_MODE_KVR;
    sp.n_ranks = 3;
    sp.repeat = 1;
    KVR_CHECK_OK(kvr_session_run(&sp, ids, C, &rb, &e), &e);
    KVR_CHECK_EQ_INT(rb.gen.n_ids, 6);
    for (int i = 0; i < 6 && i < rb.gen.n_ids; i++) KVR_CHECK_EQ_INT(ra.gen.ids[i], rb.gen.ids[i]);
    KVR_CHECK_EQ_INT(ra.gen.ids[0], kvr_session_median(&ra)->first_token);
    kvr_session_result_free(&ra), kvr_session_result_free(&rb);
    /* bad input: a usage error before any prefill */
    sp.generate.n_predict = -1;
    KVR_CHECK(kvr_session_run(&sp, ids, C, &ra, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(ra.stage == KVR_SESSION_STAGE_INPUT && ra.n_runs == 0);
    kvr_session_result_free(&ra);
    sp.generate.n_predict = 3;
    sp.generate.sampling.top_p = 0;
    KVR_CHECK(kvr_session_run(&sp, ids, C, &ra, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(ra.stage == KVR_SESSION_STAGE_INPUT && strstr(e.msg, "--top-p") != NULL);
    kvr_session_result_free(&ra);
    free(ids);
    kvr_model_destroy(m);
}

// ----------------------------------------------------------------------------
// the real model: streamed text, the chat template's end token

typedef struct stream_log {
    char text[8192];
    size_t n;
    int calls, bad_utf8, after_stop;
    bool stopped;
} stream_log;

/* whole UTF-8 characters only */
static bool utf8_whole(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        const unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (k == 0 || i + k > n) return false;
        for (size_t j = 1; j < k; j++)
            if (((unsigned char)s[i + j] & 0xc0) != 0x80) return false;
        i += k;
    }
    return true;
}

static bool on_token(void *user, int32_t id, const char *text, size_t len) {
    stream_log *l = user;
    l->calls++;
    if (l->stopped && len > 0) l->after_stop++;
    if (len > 0 && id >= 0 && !utf8_whole(text, len)) l->bad_utf8++;
    if (l->n + len < sizeof l->text) memcpy(l->text + l->n, text, len), l->n += len;
    return true;
}

static void test_real_model(void) {
    char path[1024];
    kvr_error e;
    if (kvr_model_default_path(path, sizeof path, &e) != KVR_OK) {
        printf("  (skipped: %s)\n", e.msg);
        KVR_CHECK(getenv("KVR_REQUIRE_MODEL") == NULL); /* CI must not skip it */
        return;
    }
    kvr_model *m = load(path);
    if (!m) return;
    const kvr_tokenizer *tok = kvr_model_get_tokenizer(m);
    int32_t eog[16];
    const int32_t n_eog = kvr_tokenizer_eog(tok, eog, 16);
    /* SmolLM2: EOS is <|im_end|> (2); <|endoftext|> (0) ends generation too */
    KVR_CHECK_EQ_INT(n_eog, 2);
    KVR_CHECK_EQ_INT(eog[0], kvr_tokenizer_eos(tok));
    KVR_CHECK_EQ_INT(eog[0], 2);
    KVR_CHECK_EQ_INT(eog[1], 0);
    /* a chat turn the model ends with <|im_end|>; non-ASCII text on the way */
    const char *chat = "<|im_start|>user\nHow do you say coffee in French? Answer with the word "
                       "only.<|im_end|>\n<|im_start|>assistant\n";
    int32_t *ids = NULL;
    int64_t n = 0;
    KVR_CHECK_OK(kvr_tokenizer_encode(tok, chat, strlen(chat), false, true, &ids, &n, &e), &e);
    kvr_generate_params gp = kvr_generate_params_default();
    gp.n_predict = 48;
    gp.tok = tok;
    gp.stop_ids = eog;
    gp.n_stop = n_eog;
    stream_log lg;
    memset(&lg, 0, sizeof lg);
    gp.on_token = on_token;
    gp.user = &lg;
    kvr_generate_result g;
    KVR_CHECK_OK(gen(m, ids, n, KVR_MODE_SINGLE, 1, NULL, &gp, &g, &e), &e);
    printf("  chat reply (%d tokens, stop %s): %s\n", g.n_ids, kvr_stop_reason_name(g.stop),
           g.text ? g.text : "");
    KVR_CHECK(g.stop == KVR_STOP_EOS);
    KVR_CHECK_EQ_INT(g.ids[g.n_ids - 1], 2);
    KVR_CHECK_EQ_INT(lg.bad_utf8, 0);
    KVR_CHECK(lg.n == g.text_len && memcmp(lg.text, g.text, lg.n) == 0);
    KVR_CHECK(strstr(g.text, "<|im_end|>") == NULL);
    KVR_CHECK(strstr(g.text, "caf\xc3\xa9") != NULL); /* "Je suis café au chocolat." */
    /* the text equals the pieces of every token but the stop token */
    char *t2 = NULL;
    size_t n2 = 0;
    KVR_CHECK_OK(kvr_generate_text(tok, g.ids, g.n_ids, g.stop, &t2, &n2, &e), &e);
    KVR_CHECK(n2 == g.text_len && memcmp(t2, g.text, n2) == 0);
    free(t2);
    kvr_generate_result_free(&g);
    free(ids);

    /* a multi-byte character split across byte tokens: the stream holds the first bytes back */
    const char *emoji = "\xf0\x9f\x98\x80";
    KVR_CHECK_OK(kvr_tokenizer_encode(tok, emoji, 4, false, false, &ids, &n, &e), &e);
    char piece[16];
    const int64_t k0 = n > 1 ? kvr_tokenizer_decode_token(tok, ids[0], piece, sizeof piece) : 0;
    printf("  %s: %lld token(s), the first %lld byte(s)\n", "U+1F600", (long long)n,
           (long long)k0);
    KVR_CHECK(n > 1 && k0 < 4); /* it takes several tokens, the first a part of it */
    if (n > 1) KVR_CHECK_EQ_INT((int)kvr_utf8_complete_len(piece, (size_t)k0), 0);
    free(ids);
    kvr_model_destroy(m);
}

static const kvr_test_case cases[] = {
    {"sampler_params", test_sampler_params},
    {"sampler_greedy", test_sampler_greedy},
    {"sampler_seeded", test_sampler_seeded},
    {"sampler_filters", test_sampler_filters},
    {"utf8_hold", test_utf8_hold},
    {"decode_matches_prefill", test_decode_matches_prefill},
    {"decode_room_and_sampling", test_decode_room_and_sampling},
    {"session_decode", test_session_decode},
    {"real_model", test_real_model},
};
KVR_TEST_MAIN(cases)
