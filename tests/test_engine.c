/* test_engine.c -- the serving engine (kvr_engine.h) on the tiny preset:
 *   - every request of a small trace (staggered arrivals on the virtual clock) finishes with its
 *     tokens, under vllm and under chunked with a budget small enough to split prompts, and each
 *     request's greedy tokens equal those of the same prompt decoded alone (kvr_prefill_run +
 *     kvr_generate); records are ordered arrival <= admitted < first token <= finish;
 *   - a pool small enough to force preemptions by recompute still finishes every request with
 *     the tokens it gets alone, and returns every block;
 *   - layerkv (swap and stream reload) in a pool too small for every layer, with a host tier:
 *     every request finishes once with the vllm replay's greedy tokens, layers offloaded;
 *   - a stop id ends a request at its first draw, a callback that returns false ends it, the
 *     callback streams every token; a request the scheduler refuses is an error, not queued. */
#include "kvr_decode.h"
#include "kvr_engine.h"
#include "kvr_runtime.h"
#include "kvr_test.h"

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

/* greedy tokens of the prompt decoded alone through the existing path */
static int32_t *alone(const kvr_model *m, const int32_t *ids, int64_t C, int32_t N) {
    kvr_prefill_params pp = kvr_prefill_params_default();
    pp.decode_reserve = N;
    pp.keep_logits = true;
    kvr_prefill_result pr;
    kvr_error e;
    KVR_CHECK_OK(kvr_prefill_run(m, ids, C, &pp, &pr, &e), &e);
    kvr_generate_params gp = kvr_generate_params_default();
    gp.n_predict = N;
    kvr_generate_result g;
    KVR_CHECK_OK(kvr_generate(pr.decoder, pr.logits, &gp, &g, &e), &e);
    int32_t *out = calloc((size_t)N, sizeof *out);
    for (int32_t i = 0; i < g.n_ids && i < N; i++) out[i] = g.ids[i];
    KVR_CHECK_EQ_INT(g.n_ids, N);
    kvr_generate_result_free(&g);
    kvr_prefill_result_free(&pr);
    return out;
}

typedef struct setup {
    kvr_model *m;
    kvr_weights *w;
    int32_t V;
} setup;

static bool open_setup(setup *s) {
    kvr_error e;
    const kvr_backend *be;
    memset(s, 0, sizeof *s);
    kvr_model_load_params lp = kvr_model_load_params_default();
    KVR_CHECK_OK(kvr_model_load("tiny", &lp, &s->m, &e), &e);
    if (!s->m) return false;
    s->V = kvr_model_get_config(s->m)->vocab_size;
    KVR_CHECK_OK(kvr_backend_get("cpu", &be, &e), &e);
    KVR_CHECK_OK(kvr_weights_upload(be, s->m, &s->w, &e), &e);
    return s->w != NULL;
}

/* two traces: six mixed requests with staggered arrivals; four that arrive together with short
 * prompts and long outputs (in a small pool their decodes outgrow it: preemptions) */
enum { NR = 6 };
static const int64_t prompt_a[NR] = {37, 12, 60, 5, 25, 44}, prompt_b[NR] = {10, 14, 9, 12};
static const int32_t out_a[NR] = {9, 14, 6, 11, 8, 10}, out_b[NR] = {30, 25, 28, 22};
static const double arrive_a[NR] = {0, 0, 0.001, 0.002, 0.5, 0.5}, arrive_b[NR] = {0};
static const int64_t *prompt_len = prompt_a;
static const int32_t *out_len = out_a;
static const double *arrive = arrive_a;
static int32_t n_req = NR;
/* layerkv: the host tier (pool_blocks' unit) and the reload policy */
static int64_t host_blocks = 0;
static kvr_reload_policy reload = KVR_RELOAD_SWAP;
static kvr_engine_stats last_stats;

/* Replay the six requests through an engine with pool_blocks blocks of 8 tokens; check every
 * request finishes with the tokens it gets alone. Returns the preemptions in all. */
static int32_t replay(const setup *s, kvr_serving_policy pol, int64_t budget, int64_t pool_blocks,
                      int32_t *const *want, int32_t *const *prompts) {
    kvr_error e;
    kvr_kv_pool *pool = NULL;
    KVR_CHECK_OK(kvr_kv_pool_create(s->w, pool_blocks, 8, &pool, &e), &e);
    kvr_engine_params ep = kvr_engine_params_default();
    ep.sched.policy = pol;
    ep.sched.block_tokens = 8;
    ep.sched.max_batched_tokens = budget;
    ep.sched.watermark = 0;
    ep.n_threads = 2;
    ep.clock = KVR_ENGINE_CLOCK_VIRTUAL;
    if (pol == KVR_POLICY_LAYERKV) {
        ep.sched.host_blocks = host_blocks;
        ep.sched.layerkv.reload = reload;
        ep.sched.layerkv.slo_ttft_s = 5;
        ep.sched.layerkv.slo_tpot_s = 1;
    }
    kvr_engine *eng = NULL;
    KVR_CHECK_OK(kvr_engine_create(s->w, pool, &ep, &eng, &e), &e);
    if (!eng) return -1;
    int32_t next = 0, guard = 0;
    while ((next < n_req || kvr_engine_n_unfinished(eng) > 0) && guard++ < 10000) {
        for (; next < n_req && arrive[next] <= kvr_engine_now(eng); next++) {
            kvr_engine_request rq = kvr_engine_request_default();
            rq.prompt = prompts[next], rq.n_prompt = prompt_len[next];
            rq.max_tokens = out_len[next];
            int32_t id = -1;
            KVR_CHECK_OK(kvr_engine_submit(eng, &rq, arrive[next], &id, &e), &e);
            KVR_CHECK_EQ_INT(id, next);
        }
        bool ran = false;
        KVR_CHECK_OK(kvr_engine_step(eng, &ran, &e), &e);
        if (!ran && next < n_req) kvr_engine_advance_to(eng, arrive[next]);
    }
    int32_t preempt = 0;
    for (int32_t i = 0; i < n_req; i++) {
        KVR_CHECK(kvr_engine_finished(eng, i));
        int64_t n = 0;
        const int32_t *got = kvr_engine_output(eng, i, &n);
        KVR_CHECK_EQ_INT((int)n, out_len[i]);
        for (int64_t t = 0; t < n && t < out_len[i]; t++) KVR_CHECK_EQ_INT(got[t], want[i][t]);
        const kvr_serving_record *r = kvr_engine_record(eng, i);
        KVR_CHECK(r->arrival_s <= r->admitted_s && r->admitted_s < r->first_token_s &&
                  r->first_token_s <= r->finish_s);
        KVR_CHECK_EQ_INT((int)r->output_tokens, out_len[i]);
        KVR_CHECK(r->max_blocks >= (prompt_len[i] + 7) / 8);
        preempt += r->preemptions;
    }
    const kvr_engine_stats st = kvr_engine_get_stats(eng);
    KVR_CHECK(st.iterations > 0 && st.peak_blocks <= pool_blocks && st.busy_s > 0);
    last_stats = st;
    printf("  %s, budget %lld, pool %lld blocks: %lld iterations, peak %lld blocks, %d "
           "preemptions\n",
           kvr_serving_policy_name(pol), (long long)budget, (long long)pool_blocks,
           (long long)st.iterations, (long long)st.peak_blocks, preempt);
    if (pol == KVR_POLICY_LAYERKV)
        printf("    layerkv %s, host %lld blocks: peak %lld host layer blocks, %lld swap-ins, "
               "%lld layer blocks out, %lld in, %lld staging waits\n",
               kvr_reload_policy_name(reload), (long long)host_blocks,
               (long long)st.peak_host_blocks, (long long)st.swap_ins, (long long)st.copies_out,
               (long long)st.copies_in, (long long)st.stage_waits);
    kvr_engine_destroy(eng);
    kvr_kv_pool_destroy(pool);
    return preempt;
}

static void test_engine_trace(void) {
    setup s;
    if (!open_setup(&s)) return;
    int32_t *prompts[NR], *want[NR];
    for (int i = 0; i < NR; i++) {
        prompts[i] = make_ids(prompt_len[i], s.V, 300 + (uint64_t)i);
        want[i] = alone(s.m, prompts[i], prompt_len[i], out_len[i]);
    }
    KVR_CHECK_EQ_INT(replay(&s, KVR_POLICY_VLLM, 0, 64, want, prompts), 0);
    replay(&s, KVR_POLICY_CHUNKED, 16, 64, want, prompts); /* prompts in chunks of <= 16 */
    replay(&s, KVR_POLICY_VLLM, 0, 9, want, prompts);     /* 9 blocks: the longest fits alone */
    for (int i = 0; i < NR; i++) free(prompts[i]), free(want[i]);
    /* four requests growing to 5 blocks each in a pool of 9: preemptions by recompute */
    prompt_len = prompt_b, out_len = out_b, arrive = arrive_b, n_req = 4;
    for (int i = 0; i < n_req; i++) {
        prompts[i] = make_ids(prompt_len[i], s.V, 400 + (uint64_t)i);
        want[i] = alone(s.m, prompts[i], prompt_len[i], out_len[i]);
    }
    KVR_CHECK(replay(&s, KVR_POLICY_VLLM, 0, 9, want, prompts) > 0);
    KVR_CHECK(replay(&s, KVR_POLICY_CHUNKED, 16, 9, want, prompts) > 0);
    for (int i = 0; i < n_req; i++) free(prompts[i]), free(want[i]);
    prompt_len = prompt_a, out_len = out_a, arrive = arrive_a, n_req = NR;
    kvr_weights_free(s.w);
    kvr_model_destroy(s.m);
}

/* layerkv in the engine: the six requests through a pool too small for all their layers, with
 * a host tier, reload swap and stream: every request finishes once with its token count and
 * the greedy tokens the vllm replay gets (= each one decoded alone: test_engine_trace), after
 * layers really went to the host tier and came back */
static void test_engine_layerkv(void) {
    setup s;
    if (!open_setup(&s)) return;
    int32_t *prompts[NR], *want[NR];
    for (int i = 0; i < NR; i++) {
        prompts[i] = make_ids(prompt_len[i], s.V, 300 + (uint64_t)i);
        want[i] = alone(s.m, prompts[i], prompt_len[i], out_len[i]);
    }
    arrive = arrive_b; /* all at once: the first iteration admits with nothing decoding */
    replay(&s, KVR_POLICY_VLLM, 0, 9, want, prompts); /* the baseline, as test_engine_trace */
    host_blocks = 64;
    for (int k = 0; k < 2; k++) {
        reload = k == 0 ? KVR_RELOAD_SWAP : KVR_RELOAD_STREAM;
        replay(&s, KVR_POLICY_LAYERKV, 0, 9, want, prompts);
        KVR_CHECK(last_stats.copies_out > 0 && last_stats.peak_host_blocks > 0);
        if (k == 0) KVR_CHECK(last_stats.swap_ins > 0);
        else KVR_CHECK(last_stats.swap_ins == 0 && last_stats.copies_in > 0);
    }
    host_blocks = 0, reload = KVR_RELOAD_SWAP, arrive = arrive_a;
    for (int i = 0; i < NR; i++) free(prompts[i]), free(want[i]);
    kvr_weights_free(s.w);
    kvr_model_destroy(s.m);
}

typedef struct stream {
    int32_t n, stop_after;
    int32_t ids[32];
} stream;

static bool on_tok(void *user, int32_t req, int32_t tok) {
    stream *st = user;
    (void)req;
    if (st->n < 32) st->ids[st->n] = tok;
    st->n++;
    return st->stop_after == 0 || st->n < st->stop_after;
}

static void test_engine_stops(void) {
    setup s;
    if (!open_setup(&s)) return;
    kvr_error e;
    int32_t *p = make_ids(300, s.V, 9), *want = alone(s.m, p, 20, 12);
    kvr_kv_pool *pool = NULL;
    KVR_CHECK_OK(kvr_kv_pool_create(s.w, 16, 16, &pool, &e), &e);
    kvr_engine_params ep = kvr_engine_params_default();
    kvr_engine *eng = NULL;
    KVR_CHECK_OK(kvr_engine_create(s.w, pool, &ep, &eng, &e), &e);
    if (!eng) return;
    int32_t first = 0; /* the first draw of want[5]'s token */
    while (want[first] != want[5]) first++;
    stream a = {0, 0, {0}}, b = {0, 4, {0}};
    kvr_engine_request rq = kvr_engine_request_default();
    rq.prompt = p, rq.n_prompt = 20, rq.max_tokens = 12;
    rq.stop_ids = &want[5], rq.n_stop = 1;
    rq.on_token = on_tok, rq.user = &a;
    int32_t id0, id1, id2;
    KVR_CHECK_OK(kvr_engine_submit(eng, &rq, 0, &id0, &e), &e);
    rq.n_stop = 0, rq.user = &b;
    KVR_CHECK_OK(kvr_engine_submit(eng, &rq, 0, &id1, &e), &e);
    rq.n_prompt = 250; /* 250 + 12 tokens: more than the pool's 256 */
    KVR_CHECK(kvr_engine_submit(eng, &rq, 0, &id2, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "request of 250 prompt + 12 output tokens") != NULL);
    KVR_CHECK_EQ_INT(kvr_engine_n_requests(eng), 2);
    for (int guard = 0; kvr_engine_n_unfinished(eng) > 0 && guard < 100; guard++)
        KVR_CHECK_OK(kvr_engine_step(eng, NULL, &e), &e);
    int64_t n0, n1;
    const int32_t *o0 = kvr_engine_output(eng, id0, &n0), *o1 = kvr_engine_output(eng, id1, &n1);
    KVR_CHECK_EQ_INT((int)n0, first + 1);
    KVR_CHECK_EQ_INT(o0[n0 - 1], want[5]);
    KVR_CHECK_EQ_INT(a.n, first + 1);
    KVR_CHECK_EQ_INT((int)n1, 4);
    KVR_CHECK_EQ_INT(b.n, 4);
    for (int i = 0; i < 4; i++) {
        KVR_CHECK_EQ_INT(o1[i], want[i]);
        KVR_CHECK_EQ_INT(b.ids[i], want[i]);
    }
    kvr_engine_destroy(eng);
    kvr_kv_pool_destroy(pool);
    free(p), free(want);
    kvr_weights_free(s.w);
    kvr_model_destroy(s.m);
}

/* cancel (a client that went away): a waiting request leaves the queue, a running one frees
 * its blocks at once; the others finish with the tokens they get alone */
static void test_engine_cancel(void) {
    setup s;
    if (!open_setup(&s)) return;
    kvr_error e;
    int32_t *p = make_ids(40, s.V, 11), *want = alone(s.m, p, 20, 6);
    kvr_kv_pool *pool = NULL;
    KVR_CHECK_OK(kvr_kv_pool_create(s.w, 16, 16, &pool, &e), &e);
    kvr_engine_params ep = kvr_engine_params_default();
    ep.sched.max_seqs = 2; /* the third request waits */
    kvr_engine *eng = NULL;
    KVR_CHECK_OK(kvr_engine_create(s.w, pool, &ep, &eng, &e), &e);
    if (!eng) return;
    kvr_engine_request rq = kvr_engine_request_default();
    rq.prompt = p, rq.n_prompt = 20, rq.max_tokens = 6;
    int32_t id[3];
    for (int i = 0; i < 3; i++) KVR_CHECK_OK(kvr_engine_submit(eng, &rq, 0, &id[i], &e), &e);
    KVR_CHECK_OK(kvr_engine_step(eng, NULL, &e), &e); /* two prefills */
    KVR_CHECK_EQ_INT(kvr_engine_n_waiting(eng), 1);
    KVR_CHECK_EQ_INT(kvr_engine_n_running(eng), 2);
    const int64_t held = kvr_engine_blocks_used(eng);
    KVR_CHECK_OK(kvr_engine_cancel(eng, id[2], &e), &e); /* waiting */
    KVR_CHECK_EQ_INT(kvr_engine_n_waiting(eng), 0);
    KVR_CHECK_OK(kvr_engine_cancel(eng, id[1], &e), &e); /* running */
    KVR_CHECK_EQ_INT(kvr_engine_n_running(eng), 1);
    KVR_CHECK((int)kvr_engine_blocks_used(eng) == (int)held / 2);
    KVR_CHECK(kvr_engine_cancelled(eng, id[1]) && kvr_engine_cancelled(eng, id[2]));
    KVR_CHECK(!kvr_engine_cancelled(eng, id[0]));
    KVR_CHECK_OK(kvr_engine_cancel(eng, id[1], &e), &e); /* again: no effect */
    KVR_CHECK(kvr_engine_cancel(eng, 7, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK_EQ_INT(kvr_engine_n_unfinished(eng), 1);
    for (int guard = 0; kvr_engine_n_unfinished(eng) > 0 && guard < 100; guard++)
        KVR_CHECK_OK(kvr_engine_step(eng, NULL, &e), &e);
    int64_t n0;
    const int32_t *o0 = kvr_engine_output(eng, id[0], &n0);
    KVR_CHECK_EQ_INT((int)n0, 6);
    for (int i = 0; i < 6 && i < n0; i++) KVR_CHECK_EQ_INT(o0[i], want[i]);
    KVR_CHECK_EQ_INT((int)kvr_engine_blocks_used(eng), 0);
    KVR_CHECK(kvr_engine_record(eng, id[1])->finish_s < 0);
    /* released: the output is gone, the record stays; an unknown id is ignored */
    kvr_engine_release(eng, id[0]);
    kvr_engine_release(eng, id[1]);
    kvr_engine_release(eng, 99);
    KVR_CHECK(kvr_engine_output(eng, id[0], &n0) == NULL && n0 == 0);
    KVR_CHECK_EQ_INT((int)kvr_engine_record(eng, id[0])->output_tokens, 6);
    /* the engine serves on: a new request after the releases gives the same tokens */
    int32_t id3;
    KVR_CHECK_OK(kvr_engine_submit(eng, &rq, kvr_engine_now(eng), &id3, &e), &e);
    kvr_engine_release(eng, id3); /* unfinished: no effect */
    for (int guard = 0; kvr_engine_n_unfinished(eng) > 0 && guard < 100; guard++)
        KVR_CHECK_OK(kvr_engine_step(eng, NULL, &e), &e);
    const int32_t *o3 = kvr_engine_output(eng, id3, &n0);
    KVR_CHECK_EQ_INT((int)n0, 6);
    for (int i = 0; i < 6 && i < n0 && o3; i++) KVR_CHECK_EQ_INT(o3[i], want[i]);
    kvr_engine_destroy(eng);
    kvr_kv_pool_destroy(pool);
    free(p), free(want);
    kvr_weights_free(s.w);
    kvr_model_destroy(s.m);
}

static const kvr_test_case cases[] = {
    {"engine_cancel", test_engine_cancel},
    {"engine_trace", test_engine_trace},
    {"engine_stops", test_engine_stops},
    {"engine_layerkv", test_engine_layerkv},
};
KVR_TEST_MAIN(cases)
