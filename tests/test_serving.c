/* test_serving.c -- the serving scheduler (vllm and chunked policies: admission, watermark, FCFS,
 * preemption by recompute, chunking; layerkv: layer-block accounting, host tier, SLO admission,
 * estimator, reload swap/stream, preemption, faults), the serving simulator against
 * hand-computed times (and layerkv's copy pricing, a generated trace replayed), and the summary. */
#include "kvr_serving.h"
#include "kvr_test.h"

static kvr_sched *mk(kvr_serving_policy pol, int64_t pool_blocks, double watermark,
                     int64_t budget) {
    kvr_sched_params p = kvr_sched_params_default();
    p.policy = pol;
    p.pool_blocks = pool_blocks;
    p.watermark = watermark;
    p.max_batched_tokens = budget;
    if (pol == KVR_POLICY_LAYERKV) { /* 4 layers, a host tier as large as the pool */
        p.n_layers = 4;
        p.host_blocks = pool_blocks;
        p.layerkv.slo_ttft_s = 1, p.layerkv.slo_tpot_s = 0.1;
    }
    kvr_sched *s = NULL;
    kvr_error e;
    KVR_CHECK_OK(kvr_sched_create(&p, &s, &e), &e);
    return s;
}

static int32_t add(kvr_sched *s, int64_t prompt, int64_t out) {
    int32_t id = -1;
    kvr_error e;
    KVR_CHECK_OK(kvr_sched_add(s, prompt, out, &id, &e), &e);
    return id;
}

/* plan and complete one iteration; returns the batch (items valid until the next plan) */
static kvr_sched_batch step(kvr_sched *s) {
    kvr_sched_batch b;
    kvr_error e;
    KVR_CHECK_OK(kvr_sched_next(s, &b, &e), &e);
    if (b.n_items > 0) KVR_CHECK_OK(kvr_sched_complete(s, &b, NULL, &e), &e);
    return b;
}

static void test_vllm_basic(void) {
    kvr_sched *s = mk(KVR_POLICY_VLLM, 100, 0.01, 0);
    if (!s) return;
    for (int i = 0; i < 3; i++) KVR_CHECK_EQ_INT(add(s, 10 + i, 3), i);
    kvr_sched_batch b = step(s); /* all three prompts in one iteration, each samples */
    KVR_CHECK_EQ_INT(b.iter, 0);
    KVR_CHECK_EQ_INT(b.n_items, 3);
    KVR_CHECK_EQ_INT(b.n_prefill, 3);
    KVR_CHECK_EQ_INT(b.n_tokens, 33);
    for (int i = 0; i < 3; i++) {
        KVR_CHECK_EQ_INT(b.items[i].req, i);
        KVR_CHECK(b.items[i].prefill && b.items[i].samples && b.items[i].n_past == 0);
        KVR_CHECK_EQ_INT(kvr_sched_request(s, i)->generated, 1);
        KVR_CHECK_EQ_INT(kvr_sched_request(s, i)->blocks, 1);
    }
    for (int k = 0; k < 2; k++) { /* two decode iterations: 1 token each, past = prompt + k */
        b = step(s);
        KVR_CHECK_EQ_INT(b.n_decode, 3);
        KVR_CHECK_EQ_INT(b.n_prefill, 0);
        for (int i = 0; i < 3; i++) {
            KVR_CHECK_EQ_INT(b.items[i].n_tokens, 1);
            KVR_CHECK_EQ_INT(b.items[i].n_past, 10 + i + k);
        }
    }
    for (int i = 0; i < 3; i++) {
        const kvr_sched_req *r = kvr_sched_request(s, i);
        KVR_CHECK(r->state == KVR_REQ_FINISHED);
        KVR_CHECK_EQ_INT(r->generated, 3);
        KVR_CHECK_EQ_INT(r->computed, 10 + i + 2); /* the last token is never cached */
        KVR_CHECK_EQ_INT(r->blocks, 0);
    }
    KVR_CHECK_EQ_INT(kvr_sched_blocks_used(s), 0);
    KVR_CHECK_EQ_INT(kvr_sched_n_running(s), 0);
    KVR_CHECK_EQ_INT(step(s).n_items, 0);
    kvr_sched_destroy(s);
}

/* Admission keeps the watermark free and never lets a later request overtake; decodes wait
 * while an iteration admits prefills. */
static void test_vllm_watermark_fcfs(void) {
    kvr_sched *s = mk(KVR_POLICY_VLLM, 10, 0.1, 0); /* 10 blocks of 16, watermark 1 block */
    if (!s) return;
    add(s, 100, 2); /* 7 blocks */
    add(s, 40, 2);  /* 3 blocks: 10 - 7 - 3 = 0 < 1 left: waits */
    add(s, 5, 2);   /* 1 block would fit, but it is behind the waiting one */
    kvr_sched_batch b = step(s);
    KVR_CHECK_EQ_INT(b.n_items, 1);
    KVR_CHECK_EQ_INT(b.items[0].req, 0);
    KVR_CHECK_EQ_INT(kvr_sched_n_waiting(s), 2);
    KVR_CHECK_EQ_INT(kvr_sched_blocks_used(s), 7);
    b = step(s); /* request 0 decodes its second token and finishes: nothing else admitted */
    KVR_CHECK_EQ_INT(b.n_decode, 1);
    KVR_CHECK(kvr_sched_request(s, 0)->state == KVR_REQ_FINISHED);
    b = step(s); /* now both fit: 3 + 1 blocks, 6 left */
    KVR_CHECK_EQ_INT(b.n_prefill, 2);
    KVR_CHECK_EQ_INT(b.items[0].req, 1);
    KVR_CHECK_EQ_INT(b.items[1].req, 2);
    /* a new arrival is admitted ahead of the running decodes: that iteration has no decode */
    add(s, 20, 2);
    b = step(s);
    KVR_CHECK_EQ_INT(b.n_prefill, 1);
    KVR_CHECK_EQ_INT(b.n_decode, 0);
    b = step(s);
    KVR_CHECK_EQ_INT(b.n_decode, 3);
    KVR_CHECK_EQ_INT(kvr_sched_blocks_used(s), 0);
    kvr_sched_destroy(s);
}

/* max_batched_tokens and max_seqs bound an iteration's admissions. */
static void test_vllm_budgets(void) {
    kvr_sched_params p = kvr_sched_params_default();
    p.pool_blocks = 1000;
    p.max_batched_tokens = 100;
    p.max_seqs = 2;
    kvr_sched *s = NULL;
    kvr_error e;
    KVR_CHECK_OK(kvr_sched_create(&p, &s, &e), &e);
    if (!s) return;
    add(s, 60, 4);
    add(s, 30, 4);
    add(s, 30, 4);
    kvr_sched_batch b = step(s); /* 60 + 30 = 90; the third would be 120 > 100 */
    KVR_CHECK_EQ_INT(b.n_items, 2);
    b = step(s); /* max_seqs 2: the third waits for a slot, the two decode */
    KVR_CHECK_EQ_INT(b.n_decode, 2);
    KVR_CHECK_EQ_INT(kvr_sched_n_waiting(s), 1);
    kvr_sched_destroy(s);
}

/* A decode that needs a block when none is free preempts the most recently admitted request by
 * recompute; it comes back first, prefilling its prompt and what it had generated. */
static void test_vllm_preemption(void) {
    kvr_sched *s = mk(KVR_POLICY_VLLM, 4, 0, 0); /* 4 blocks of 16 tokens */
    if (!s) return;
    add(s, 16, 20); /* 1 block now, 3 at the end (16 + 19 cached tokens) */
    add(s, 16, 20);
    add(s, 16, 20);
    add(s, 16, 20);
    kvr_sched_batch b = step(s); /* all four fit: 4 blocks */
    KVR_CHECK_EQ_INT(b.n_prefill, 4);
    KVR_CHECK_EQ_INT(kvr_sched_blocks_used(s), 4);
    /* the first decode (past 16) needs a second block: request 0 preempts 3, 1 preempts 2 */
    b = step(s);
    KVR_CHECK_EQ_INT(b.n_preempted, 2);
    KVR_CHECK_EQ_INT(b.n_decode, 2);
    KVR_CHECK_EQ_INT(b.items[0].req, 0);
    KVR_CHECK_EQ_INT(b.items[1].req, 1);
    const kvr_sched_req *r3 = kvr_sched_request(s, 3), *r2 = kvr_sched_request(s, 2);
    KVR_CHECK(r3->state == KVR_REQ_WAITING && r3->preemptions == 1 && r3->computed == 0);
    KVR_CHECK_EQ_INT(r3->generated, 1);
    KVR_CHECK_EQ_INT(r2->preemptions, 1);
    /* run to the end: every request finishes with all its tokens, the pool never overflows */
    int guard = 0;
    bool recompute_seen = false;
    for (;;) {
        b = step(s);
        if (b.n_items == 0 || ++guard > 1000) break;
        KVR_CHECK(b.blocks_used <= 4);
        for (int32_t i = 0; i < b.n_items; i++)
            if (b.items[i].req == 2 && b.items[i].prefill && b.items[i].n_tokens > 16) {
                recompute_seen = true; /* prompt 16 + what it had generated */
                KVR_CHECK(b.items[i].samples);
            }
    }
    KVR_CHECK(recompute_seen);
    for (int i = 0; i < 4; i++) {
        KVR_CHECK(kvr_sched_request(s, i)->state == KVR_REQ_FINISHED);
        KVR_CHECK_EQ_INT(kvr_sched_request(s, i)->generated, 20);
        KVR_CHECK(kvr_sched_request(s, i)->max_blocks <= 3);
    }
    KVR_CHECK_EQ_INT(kvr_sched_blocks_used(s), 0);
    kvr_sched_destroy(s);
}

static void test_chunked(void) {
    kvr_sched *s = mk(KVR_POLICY_CHUNKED, 100, 0, 8);
    if (!s) return;
    add(s, 3, 4); /* fits in the first iteration with a token to spare... */
    add(s, 20, 2); /* ...which starts this prompt: chunks 5, 7 (after one decode), 8 */
    kvr_sched_batch b = step(s);
    KVR_CHECK_EQ_INT(b.n_items, 2);
    KVR_CHECK(b.items[0].samples && b.items[0].n_tokens == 3);
    KVR_CHECK(b.items[1].prefill && !b.items[1].samples && b.items[1].n_tokens == 5);
    KVR_CHECK_EQ_INT(kvr_sched_request(s, 1)->blocks, 2); /* the whole prompt at admission */
    b = step(s); /* the decode comes first, then the chunk takes what is left */
    KVR_CHECK_EQ_INT(b.n_decode, 1);
    KVR_CHECK_EQ_INT(b.items[0].req, 0);
    KVR_CHECK_EQ_INT(b.items[1].n_past, 5);
    KVR_CHECK_EQ_INT(b.items[1].n_tokens, 7);
    KVR_CHECK_EQ_INT(b.n_tokens, 8);
    b = step(s);
    KVR_CHECK_EQ_INT(b.items[1].n_tokens, 7); /* 20 - 12 = 8 left, 7 of budget after the decode */
    KVR_CHECK(!b.items[1].samples);
    b = step(s); /* request 0's last token, request 1's last prompt token: its first token */
    KVR_CHECK(kvr_sched_request(s, 0)->state == KVR_REQ_FINISHED);
    KVR_CHECK(b.items[1].samples && b.items[1].n_tokens == 1 && b.items[1].prefill);
    KVR_CHECK_EQ_INT(kvr_sched_request(s, 1)->generated, 1);
    b = step(s);
    KVR_CHECK(kvr_sched_request(s, 1)->state == KVR_REQ_FINISHED);
    KVR_CHECK_EQ_INT(kvr_sched_blocks_used(s), 0);
    kvr_sched_destroy(s);
}

/* chunked: the iteration's budget covers the running requests and the admissions together --
 * a waiting request gets only what the running ones left, never a budget of its own. */
static void test_chunked_budget_shared(void) {
    kvr_sched *s = mk(KVR_POLICY_CHUNKED, 100, 0, 8);
    if (!s) return;
    add(s, 20, 2); /* chunks of 8 */
    kvr_sched_batch b = step(s);
    KVR_CHECK_EQ_INT(b.n_tokens, 8);
    add(s, 10, 2); /* arrives while the first still has 12 prompt tokens */
    b = step(s); /* the running prefill takes the whole budget: nothing admitted */
    KVR_CHECK_EQ_INT(b.n_items, 1);
    KVR_CHECK_EQ_INT(b.n_tokens, 8);
    KVR_CHECK_EQ_INT(kvr_sched_n_waiting(s), 1);
    b = step(s); /* 4 left of the first prompt, the second gets the other 4 */
    KVR_CHECK_EQ_INT(b.n_items, 2);
    KVR_CHECK_EQ_INT(b.n_tokens, 8);
    KVR_CHECK_EQ_INT(b.items[1].n_tokens, 4);
    for (int guard = 0; guard < 100 && step(s).n_items > 0; guard++) {
    }
    KVR_CHECK(kvr_sched_request(s, 0)->state == KVR_REQ_FINISHED);
    KVR_CHECK(kvr_sched_request(s, 1)->state == KVR_REQ_FINISHED);
    kvr_sched_destroy(s);
}

static void test_refusals_and_stop(void) {
    kvr_sched *s = mk(KVR_POLICY_VLLM, 10, 0.1, 64);
    if (!s) return;
    int32_t id;
    kvr_error e;
    KVR_CHECK(kvr_sched_add(s, 0, 5, &id, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(kvr_sched_add(s, 150, 20, &id, &e) == KVR_ERR_INVALID_ARG); /* > 160 tokens */
    KVR_CHECK(strstr(e.msg, "model length 160") != NULL);
    KVR_CHECK(kvr_sched_add(s, 140, 10, &id, &e) == KVR_ERR_INVALID_ARG); /* 10 blocks > 9 */
    KVR_CHECK(strstr(e.msg, "can never run") != NULL);
    KVR_CHECK(kvr_sched_add(s, 60, 10, &id, &e) == KVR_ERR_INVALID_ARG); /* 69 > 64 budget */
    KVR_CHECK(strstr(e.msg, "max_batched_tokens") != NULL);
    KVR_CHECK_EQ_INT(kvr_sched_n_requests(s), 0);
    KVR_CHECK_EQ_INT(add(s, 10, 50), 0); /* fits: refused ones took no id */
    kvr_sched_batch b;
    KVR_CHECK_OK(kvr_sched_next(s, &b, &e), &e);
    const bool stop[1] = {true}; /* the engine's EOS */
    KVR_CHECK_OK(kvr_sched_complete(s, &b, stop, &e), &e);
    KVR_CHECK(kvr_sched_request(s, 0)->state == KVR_REQ_FINISHED);
    KVR_CHECK_EQ_INT(kvr_sched_request(s, 0)->generated, 1);
    KVR_CHECK(kvr_sched_complete(s, &b, NULL, &e) == KVR_ERR_INVALID_ARG); /* twice */
    kvr_sched_destroy(s);
    kvr_sched_params p = kvr_sched_params_default();
    kvr_sched *bad = NULL;
    KVR_CHECK(kvr_sched_create(&p, &bad, &e) == KVR_ERR_INVALID_ARG && !bad); /* pool 0 */
    KVR_CHECK(strstr(e.msg, "pool_blocks") != NULL);
    p.pool_blocks = 10;
    p.watermark = 1;
    KVR_CHECK(kvr_sched_create(&p, &bad, &e) == KVR_ERR_INVALID_ARG);
    kvr_serving_policy pol;
    KVR_CHECK_OK(kvr_serving_policy_parse("chunked", &pol, &e), &e);
    KVR_CHECK(pol == KVR_POLICY_CHUNKED);
    KVR_CHECK(kvr_serving_policy_parse("sjf", &pol, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "vllm, chunked") != NULL);
}

/* Random traces through both policies with a tight pool: every request finishes with all its
 * tokens and the pool is never over-committed. */
static void test_sched_random(void) {
    unsigned seed = 12345;
    for (int pol = 0; pol < KVR_POLICY_COUNT; pol++) {
        kvr_sched *s = mk((kvr_serving_policy)pol, 40, 0.05, pol == KVR_POLICY_CHUNKED ? 48 : 0);
        if (!s) return;
        int64_t want[200];
        int n = 0, guard = 0;
        for (;;) {
            if (n < 200 && (seed = seed * 1103515245u + 12345u) % 3 == 0) {
                const int64_t prompt = 1 + (seed >> 8) % 200, out = 1 + (seed >> 16) % 60;
                want[n] = out;
                KVR_CHECK_EQ_INT(add(s, prompt, out), n);
                n++;
            }
            kvr_sched_batch b = step(s);
            KVR_CHECK(b.blocks_used <= 40);
            if (pol == KVR_POLICY_CHUNKED) KVR_CHECK(b.n_tokens <= 48); /* the budget */
            const int32_t L = kvr_sched_get_params(s)->n_layers ? kvr_sched_get_params(s)->n_layers : 1;
            int64_t held = 0, dev = 0, host = 0;
            for (int32_t i = 0; i < kvr_sched_n_requests(s); i++) {
                const kvr_sched_req *r = kvr_sched_request(s, i);
                held += r->blocks, dev += r->blocks * r->resident;
                host += r->blocks * (L - r->resident);
                KVR_CHECK(r->resident >= 1 && r->resident <= L);
                if (pol != KVR_POLICY_LAYERKV) KVR_CHECK_EQ_INT(r->resident, L);
            }
            if (pol != KVR_POLICY_LAYERKV) KVR_CHECK_EQ_INT(held, kvr_sched_blocks_used(s));
            KVR_CHECK_EQ_INT(dev, kvr_sched_layer_blocks_used(s));
            KVR_CHECK_EQ_INT(host, kvr_sched_host_layer_blocks_used(s));
            KVR_CHECK(host <= 40 * L);
            if (b.n_items == 0 && n == 200) break;
            if (++guard > 100000) break;
        }
        KVR_CHECK(guard <= 100000);
        for (int i = 0; i < n; i++) {
            KVR_CHECK(kvr_sched_request(s, i)->state == KVR_REQ_FINISHED);
            KVR_CHECK_EQ_INT(kvr_sched_request(s, i)->generated, want[i]);
        }
        kvr_sched_destroy(s);
    }
}

// ----------------------------------------------------------------------------
// simulator

static kvr_search_costs *linear_costs(void) {
    kvr_search_coeffs co;
    memset(&co, 0, sizeof co);
    co.n_layers = 2;
    co.kv_bytes_per_token = 1024;
    co.embed_us = 5, co.head_us = 50;
    co.pre_k_us = 10, co.pre_per_token_us = 1;
    co.attn_k_us = 4, co.attn_per_token_us = 0.5, co.attn_per_area_us = 0.01;
    co.post_k_us = 20, co.post_per_token_us = 2;
    kvr_search_costs *m = NULL;
    kvr_error e;
    KVR_CHECK_OK(kvr_search_costs_create_linear(&co, NULL, &m, &e), &e);
    return m;
}
/* the same formulas, by hand */
static double pre(double c) { return 10 + c; }
static double post(double c) { return 20 + 2 * c; }
static double attn(double c, double P) { return 4 + 0.5 * c + 0.01 * (c * P + c * c / 2); }

static kvr_trace *trace_of(int n, const double *arr, const int64_t *prompt, const int64_t *out) {
    kvr_trace *t = NULL;
    kvr_error e;
    KVR_CHECK_OK(kvr_trace_create(&t, &e), &e);
    for (int i = 0; t && i < n; i++)
        KVR_CHECK_OK(kvr_trace_append(t, arr[i], prompt[i], out[i], NULL, &e), &e);
    return t;
}

static void test_sim_one_request(void) {
    kvr_search_costs *m = linear_costs();
    const double arr[] = {1.5};
    const int64_t prompt[] = {100}, out[] = {3};
    kvr_trace *t = trace_of(1, arr, prompt, out);
    if (!m || !t) return;
    kvr_serving_sim_params p = {kvr_sched_params_default(), m, {0, 0, 0}, NULL, false, 0};
    p.sched.pool_blocks = 64;
    kvr_serving_record r;
    kvr_serving_sim_stats st;
    kvr_error e;
    KVR_CHECK_OK(kvr_serving_simulate(t, &p, &r, &st, &e), &e);
    const double prefill = 5 + 2 * (pre(100) + attn(100, 0) + post(100)) + 50;
    const double dec1 = 2 * (pre(1) + post(1) + attn(1, 100)) + 50; /* from the ops */
    const double dec2 = 2 * (pre(1) + post(1) + attn(1, 101)) + 50;
    KVR_CHECK(st.decode_from_ops);
    KVR_CHECK_EQ_INT(st.iterations, 3);
    KVR_CHECK_NEAR(r.admitted_s, 1.5, 1e-12, 0);
    KVR_CHECK_NEAR(r.first_token_s - r.arrival_s, prefill * 1e-6, 1e-12, 1e-9);
    KVR_CHECK_NEAR(r.finish_s - r.first_token_s, (dec1 + dec2) * 1e-6, 1e-12, 1e-9);
    KVR_CHECK_EQ_INT(r.output_tokens, 3);
    KVR_CHECK_EQ_INT(r.max_blocks, 7); /* 102 cached tokens */
    /* fitted decode costs instead: k + per_seq * B + per_ctx * T */
    p.decode = (kvr_serving_decode_costs){100, 10, 0.5};
    KVR_CHECK_OK(kvr_serving_simulate(t, &p, &r, &st, &e), &e);
    KVR_CHECK(!st.decode_from_ops);
    KVR_CHECK_NEAR(r.finish_s - r.first_token_s, (110 + 0.5 * 101 + 110 + 0.5 * 102) * 1e-6,
                   1e-12, 1e-9);
    KVR_CHECK(!st.decode_from_costs);
    /* the cost model's decode step (kvr-fit's, or a cost file's) when no --decode-costs */
    p.decode = (kvr_serving_decode_costs){0, 0, 0};
    const kvr_search_decode_step ds = {200, 20, 0.25};
    KVR_CHECK_OK(kvr_search_costs_set_decode_step(m, &ds, "test fit", &e), &e);
    KVR_CHECK_OK(kvr_serving_simulate(t, &p, &r, &st, &e), &e);
    KVR_CHECK(!st.decode_from_ops && st.decode_from_costs && st.decode.k_us == 200);
    KVR_CHECK_NEAR(r.finish_s - r.first_token_s, (220 + 0.25 * 101 + 220 + 0.25 * 102) * 1e-6,
                   1e-12, 1e-9);
    /* --decode-costs still wins over it */
    p.decode = (kvr_serving_decode_costs){100, 10, 0.5};
    KVR_CHECK_OK(kvr_serving_simulate(t, &p, &r, &st, &e), &e);
    KVR_CHECK(!st.decode_from_costs);
    KVR_CHECK_NEAR(r.finish_s - r.first_token_s, (110 + 0.5 * 101 + 110 + 0.5 * 102) * 1e-6,
                   1e-12, 1e-9);
    /* and decode_from_ops forces the derivation from the ops */
    p.decode = (kvr_serving_decode_costs){0, 0, 0};
    p.decode_from_ops = true;
    KVR_CHECK_OK(kvr_serving_simulate(t, &p, &r, &st, &e), &e);
    KVR_CHECK(st.decode_from_ops && !st.decode_from_costs);
    KVR_CHECK_NEAR(r.finish_s - r.first_token_s, (dec1 + dec2) * 1e-6, 1e-12, 1e-9);
    p.decode_from_ops = false;
    kvr_search_costs_destroy(m);
    m = linear_costs();
    if (!m) return;
    p.costs = m;
    kvr_trace_destroy(t);
    /* two at once: one prefill iteration (GEMMs over 200 tokens, a head), then batched decodes:
     * pre/post over 2 rows, one attention call plus each request's cache increment */
    const double arr2[] = {0, 0};
    const int64_t prompt2[] = {100, 100}, out2[] = {2, 2};
    t = trace_of(2, arr2, prompt2, out2);
    if (!t) return;
    p.decode = (kvr_serving_decode_costs){0, 0, 0};
    kvr_serving_record r2[2];
    KVR_CHECK_OK(kvr_serving_simulate(t, &p, r2, &st, &e), &e);
    const double pf2 = 2 * 5 + 2 * (pre(200) + post(200) + 2 * attn(100, 0)) + 50;
    const double dc2 = 2 * (pre(2) + post(2) + attn(1, 0) + 2 * (attn(1, 100) - attn(1, 0))) + 50;
    KVR_CHECK_EQ_INT(st.iterations, 2);
    KVR_CHECK_NEAR(r2[1].first_token_s, pf2 * 1e-6, 1e-12, 1e-9);
    KVR_CHECK_NEAR(r2[1].finish_s, (pf2 + dc2) * 1e-6, 1e-12, 1e-9);
    kvr_trace_destroy(t);
    /* chunked, a mixed iteration: request 1 arrives while request 0's prefill runs; the next
     * iteration runs request 0's decode row in request 1's prefill GEMMs (pre/post over 101
     * rows), its attention over 101 cached tokens at the decode step's per-token cost, and one
     * head -- not the step's K on top */
    const kvr_search_decode_step ds2 = {200, 20, 0.25};
    KVR_CHECK_OK(kvr_search_costs_set_decode_step(m, &ds2, "test fit", &e), &e);
    const double arr3[] = {0, 1e-7};
    const int64_t prompt3[] = {100, 100}, out3[] = {2, 1};
    t = trace_of(2, arr3, prompt3, out3);
    if (!t) return;
    p.sched.policy = KVR_POLICY_CHUNKED;
    p.sched.max_batched_tokens = 512;
    KVR_CHECK_OK(kvr_serving_simulate(t, &p, r2, &st, &e), &e);
    const double it1 = 5 + 2 * (pre(100) + attn(100, 0) + post(100)) + 50;
    const double it2 = 5 + 2 * (pre(101) + post(101) + attn(100, 0)) + 0.25 * 101 + 50;
    KVR_CHECK_EQ_INT(st.iterations, 2);
    KVR_CHECK_NEAR(r2[0].first_token_s, it1 * 1e-6, 1e-12, 1e-9);
    KVR_CHECK_NEAR(r2[0].finish_s, (it1 + it2) * 1e-6, 1e-12, 1e-9);
    KVR_CHECK_NEAR(r2[1].first_token_s, (it1 + it2) * 1e-6, 1e-12, 1e-9);
    kvr_trace_destroy(t);
    kvr_search_costs_destroy(m);
}

/* Two long prompts at once and a pool that holds one: the second queues until the first ends;
 * a prompt that can never fit is refused and counted. */
static void test_sim_queueing(void) {
    kvr_search_costs *m = linear_costs();
    const double arr[] = {0, 0, 0.001};
    const int64_t prompt[] = {300, 300, 5000}, out[] = {4, 4, 2};
    kvr_trace *t = trace_of(3, arr, prompt, out);
    if (!m || !t) return;
    kvr_serving_sim_params p = {kvr_sched_params_default(), m, {0, 0, 0}, NULL, false, 0};
    p.sched.pool_blocks = 25; /* 400 tokens: one request of 303 cached tokens at a time */
    p.sched.watermark = 0;
    kvr_serving_record r[3];
    kvr_serving_sim_stats st;
    kvr_error e;
    KVR_CHECK_OK(kvr_serving_simulate(t, &p, r, &st, &e), &e);
    KVR_CHECK(r[2].refused);
    KVR_CHECK(!r[0].refused && !r[1].refused);
    KVR_CHECK_NEAR(r[1].admitted_s, r[0].finish_s, 1e-12, 0);
    KVR_CHECK(r[1].first_token_s > r[0].finish_s);
    KVR_CHECK(st.peak_blocks <= 25);
    KVR_CHECK_NEAR(st.end_s, r[1].finish_s, 1e-12, 0);
    kvr_serving_summary sum;
    KVR_CHECK_OK(kvr_serving_summarize(r, 3, 0, 0, &sum, &e), &e);
    KVR_CHECK_EQ_INT(sum.n_finished, 2);
    KVR_CHECK_EQ_INT(sum.n_refused, 1);
    KVR_CHECK_NEAR(sum.slo_attainment, 2.0 / 3.0, 1e-12, 0);
    /* chunked prefill on the same trace: the same two finish, the refused one still refused */
    p.sched.policy = KVR_POLICY_CHUNKED;
    KVR_CHECK_OK(kvr_serving_simulate(t, &p, r, &st, &e), &e);
    KVR_CHECK(r[2].refused && r[0].output_tokens == 4 && r[1].output_tokens == 4);
    kvr_trace_destroy(t);
    kvr_search_costs_destroy(m);
}

/* The optional occupancy output: asking for it changes no record; it is a step function whose
 * integral is the blocks x busy time the stats average, whose peak is the stats' peak, that
 * falls to 0 while the engine idles and at the end; binned, it keeps the integral and peak. */
static void test_sim_occupancy(void) {
    kvr_search_costs *m = linear_costs();
    const double arr[] = {0, 0, 0.001, 50};
    const int64_t prompt[] = {300, 300, 5000, 100}, out[] = {4, 4, 2, 30};
    kvr_trace *t = trace_of(4, arr, prompt, out);
    if (!m || !t) return;
    kvr_serving_sim_params p = {kvr_sched_params_default(), m, {0, 0, 0}, NULL, false, 0};
    p.sched.pool_blocks = 25;
    p.sched.watermark = 0;
    kvr_serving_record r0[4], r1[4];
    kvr_serving_sim_stats s0, s1;
    kvr_error e;
    KVR_CHECK_OK(kvr_serving_simulate(t, &p, r0, &s0, &e), &e);
    kvr_serving_occupancy occ = {0};
    p.occupancy = &occ;
    KVR_CHECK_OK(kvr_serving_simulate(t, &p, r1, &s1, &e), &e);
    KVR_CHECK(memcmp(r0, r1, sizeof r0) == 0); /* the simulator clears each record */
    KVR_CHECK(s0.iterations == s1.iterations && s0.busy_s == s1.busy_s && s0.end_s == s1.end_s &&
              s0.peak_blocks == s1.peak_blocks && s0.mean_blocks == s1.mean_blocks);
    KVR_CHECK(occ.n >= 4);
    double area = 0;
    int64_t peak = 0;
    bool idle = false, increasing = true;
    for (int64_t i = 0; i < occ.n; i++) {
        const double t1 = i + 1 < occ.n ? occ.t_s[i + 1] : s1.end_s;
        increasing = increasing && t1 >= occ.t_s[i] && (i + 1 == occ.n || t1 > occ.t_s[i]);
        area += (double)occ.blocks[i] * (t1 - occ.t_s[i]);
        peak = KVR_MAX(peak, occ.blocks[i]);
        idle = idle || (occ.blocks[i] == 0 && occ.t_s[i] < 50 && t1 >= 50);
    }
    KVR_CHECK(increasing && idle);
    KVR_CHECK_EQ_INT(occ.blocks[occ.n - 1], 0);
    KVR_CHECK_EQ_INT(peak, s1.peak_blocks);
    KVR_CHECK_NEAR(area, s1.mean_blocks * s1.busy_s, 1e-12, 1e-9);
    enum { NB = 37 };
    double t0[NB], mean[NB];
    int64_t mx[NB];
    KVR_CHECK_OK(kvr_serving_occupancy_bins(&occ, s1.end_s, NB, t0, mean, mx, &e), &e);
    double barea = 0;
    int64_t bpeak = 0;
    for (int k = 0; k < NB; k++) barea += mean[k] * s1.end_s / NB, bpeak = KVR_MAX(bpeak, mx[k]);
    KVR_CHECK_NEAR(barea, area, 1e-12, 1e-9);
    KVR_CHECK_EQ_INT(bpeak, peak);
    KVR_CHECK(t0[0] == 0 && t0[NB - 1] < s1.end_s);
    KVR_CHECK(kvr_serving_occupancy_bins(&occ, 0, NB, t0, mean, mx, &e) == KVR_ERR_INVALID_ARG);
    /* a second run reuses (empties) the series */
    const int64_t n1 = occ.n;
    KVR_CHECK_OK(kvr_serving_simulate(t, &p, r1, &s1, &e), &e);
    KVR_CHECK_EQ_INT(occ.n, n1);
    kvr_serving_occupancy_free(&occ);
    KVR_CHECK(occ.n == 0 && !occ.t_s);
    kvr_trace_destroy(t);
    kvr_search_costs_destroy(m);
}

static void test_summary(void) {
    kvr_serving_record r[5];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 5; i++) {
        r[i].arrival_s = i;
        r[i].admitted_s = i + 0.5 * i;              /* queue 0, .5, 1, 1.5, 2 */
        r[i].first_token_s = r[i].admitted_s + 1;   /* ttft 1, 1.5, ..., 3 */
        r[i].output_tokens = 11;
        r[i].finish_s = r[i].first_token_s + 0.1 * (i + 1) * 10; /* tpot .1 .. .5 */
    }
    kvr_serving_summary s;
    kvr_error e;
    KVR_CHECK_OK(kvr_serving_summarize(r, 5, 2.0, 0.35, &s, &e), &e);
    KVR_CHECK_EQ_INT(s.n_finished, 5);
    KVR_CHECK_NEAR(s.ttft_s[0], 2.0, 1e-12, 0);
    KVR_CHECK_NEAR(s.ttft_s[1], 2.8, 1e-12, 0); /* 2.5 + 0.6 * 0.5 */
    KVR_CHECK_NEAR(s.queue_s[0], 1.0, 1e-12, 0);
    KVR_CHECK_NEAR(s.tpot_s[0], 0.3, 1e-12, 0);
    KVR_CHECK_NEAR(s.tpot_mean_s, 0.3, 1e-12, 0);
    KVR_CHECK_NEAR(s.slo_attainment, 3.0 / 5.0, 1e-12, 0); /* ttft <= 2 and tpot <= .35 */
    KVR_CHECK_NEAR(s.duration_s, r[4].finish_s, 1e-12, 0);
    KVR_CHECK_NEAR(s.output_tok_per_s, 55 / r[4].finish_s, 1e-12, 1e-12);
    KVR_CHECK(kvr_serving_summarize(r, -1, 0, 0, &s, &e) == KVR_ERR_INVALID_ARG);
}

// ----------------------------------------------------------------------------
// layerkv

static kvr_sched *mk_lkv(int32_t L, int64_t pool, double wm, int64_t host, int32_t block_tokens,
                         kvr_reload_policy reload) {
    kvr_sched_params p = kvr_sched_params_default();
    p.policy = KVR_POLICY_LAYERKV;
    p.n_layers = L;
    p.pool_blocks = pool;
    p.watermark = wm;
    p.host_blocks = host;
    p.block_tokens = block_tokens;
    p.layerkv.slo_ttft_s = 1;
    p.layerkv.slo_tpot_s = 0.1;
    p.layerkv.reload = reload;
    kvr_sched *s = NULL;
    kvr_error e;
    KVR_CHECK_OK(kvr_sched_create(&p, &s, &e), &e);
    return s;
}

/* a predictor whose copy is hidden with at least *user resident layers: 1 s per 1000 tokens,
 * plus 1 s of exposed copy below that */
static double pred_hide_at(void *user, int64_t n, int64_t past, int32_t resident) {
    (void)past;
    return (double)n * 1e-3 + (resident < *(const int32_t *)user ? 1.0 : 0.0);
}

static void test_layerkv_resident(void) {
    for (int32_t L = 1; L <= 9; L++)
        for (int32_t r = 0; r <= L; r++) {
            int32_t n = 0, run = 0;
            for (int32_t l = 0; l < L; l++) {
                const bool in = kvr_layerkv_resident(L, r, l);
                n += in;
                /* evenly: runs of offloaded layers at most ceil(L / r) - 1 long (r >= L/2: every
                 * offloaded layer is followed by a resident one) */
                run = in ? 0 : run + 1;
                if (r > 0) KVR_CHECK(run <= (L + r - 1) / r - 1);
            }
            KVR_CHECK_EQ_INT(n, r);
            if (r > 0) KVR_CHECK(kvr_layerkv_resident(L, r, L - 1));
        }
    for (int32_t l = 0; l < 8; l++) KVR_CHECK(kvr_layerkv_resident(8, 4, l) == (l % 2 == 1));
    /* evenly: with 2 of 6 resident, layers 2 and 5 */
    for (int32_t l = 0; l < 6; l++) KVR_CHECK(kvr_layerkv_resident(6, 2, l) == (l == 2 || l == 5));
    KVR_CHECK(!kvr_layerkv_resident(4, 5, 0) && !kvr_layerkv_resident(4, 2, 4) &&
              !kvr_layerkv_resident(0, 0, 0) && !kvr_layerkv_resident(4, 2, -1));
    kvr_reload_policy rp;
    kvr_error e;
    KVR_CHECK_OK(kvr_reload_policy_parse("stream", &rp, &e), &e);
    KVR_CHECK(rp == KVR_RELOAD_STREAM && !strcmp(kvr_reload_policy_name(KVR_RELOAD_SWAP), "swap"));
    KVR_CHECK(kvr_reload_policy_parse("paging", &rp, &e) == KVR_ERR_INVALID_ARG &&
              strstr(e.msg, "'paging' (swap, stream)"));
    kvr_serving_policy sp;
    KVR_CHECK_OK(kvr_serving_policy_parse("layerkv", &sp, &e), &e);
    KVR_CHECK(sp == KVR_POLICY_LAYERKV && !strcmp(kvr_serving_policy_name(sp), "layerkv"));
}

/* Layer-block accounting: a request that does not fit whole keeps the fewest resident layers
 * whose copy is hidden, where vllm would make it wait; the watermark counts per layer; the host
 * tier bounds what is offloaded. */
static void test_layerkv_accounting(void) {
    int32_t hide = 2;
    /* 4 layers; 20 blocks = 80 layer blocks, watermark 2 blocks = 8 layer blocks; host 20 */
    kvr_sched *s = mk_lkv(4, 20, 0.1, 20, 16, KVR_RELOAD_SWAP);
    if (!s) return;
    kvr_sched_set_predictor(s, pred_hide_at, &hide);
    add(s, 160, 4); /* 10 blocks: 40 layer blocks, fits whole */
    add(s, 160, 4); /* 40 more do not fit above the watermark (32 free): 2 layers resident */
    add(s, 160, 4); /* 12 free above the watermark: 1 layer fits, 2 hide the copy: waits */
    kvr_sched_batch b = step(s);
    KVR_CHECK_EQ_INT(b.n_prefill, 2);
    KVR_CHECK_EQ_INT(b.items[0].resident, 4);
    KVR_CHECK_EQ_INT(b.items[1].resident, 2);
    KVR_CHECK_EQ_INT(b.layer_blocks_used, 60);
    KVR_CHECK_EQ_INT(b.host_layer_blocks_used, 20);
    KVR_CHECK_EQ_INT(b.blocks_used, 15);
    KVR_CHECK_EQ_INT(kvr_sched_n_waiting(s), 1);
    KVR_CHECK_EQ_INT(kvr_sched_request(s, 1)->resident, 2);
    kvr_sched_destroy(s);
    /* vllm, the same pool: the second waits for its 10 blocks */
    kvr_sched *v = mk(KVR_POLICY_VLLM, 20, 0.1, 0);
    if (!v) return;
    add(v, 160, 4), add(v, 160, 4);
    KVR_CHECK_EQ_INT(step(v).n_prefill, 1);
    kvr_sched_destroy(v);
    /* the watermark is per layer: with 16 free above it, 2 layers of 10 blocks do not fit */
    s = mk_lkv(4, 20, 0.1, 20, 16, KVR_RELOAD_SWAP);
    if (!s) return;
    kvr_sched_set_predictor(s, pred_hide_at, &hide);
    add(s, 160 + 16 * 4, 4); /* 14 blocks: 56 layer blocks, 16 left above the watermark */
    add(s, 160, 4);          /* 2 layers = 20 layer blocks > 16: waits */
    b = step(s);
    KVR_CHECK_EQ_INT(b.n_prefill, 1);
    KVR_CHECK_EQ_INT(kvr_sched_n_waiting(s), 1);
    kvr_sched_destroy(s);
    /* a host tier of 5 blocks (20 layer blocks) takes 2 of the second request's 4 layers: with
     * a predictor that hides any copy it still keeps 2 resident */
    hide = 1;
    s = mk_lkv(4, 20, 0.1, 5, 16, KVR_RELOAD_SWAP);
    if (!s) return;
    kvr_sched_set_predictor(s, pred_hide_at, &hide);
    add(s, 160, 4), add(s, 160, 4);
    b = step(s);
    KVR_CHECK_EQ_INT(b.n_prefill, 2);
    KVR_CHECK_EQ_INT(b.items[1].resident, 2);
    KVR_CHECK_EQ_INT(b.host_layer_blocks_used, 20);
    kvr_sched_destroy(s);
    /* no host tier: nothing can be offloaded, the second waits as under vllm */
    s = mk_lkv(4, 20, 0.1, 0, 16, KVR_RELOAD_SWAP);
    if (!s) return;
    kvr_sched_set_predictor(s, pred_hide_at, &hide);
    add(s, 160, 4), add(s, 160, 4);
    KVR_CHECK_EQ_INT(step(s).n_prefill, 1);
    KVR_CHECK_EQ_INT(kvr_sched_host_layer_blocks_used(s), 0);
    kvr_sched_destroy(s);
}

/* plan at t0, complete at t1 */
static kvr_sched_batch step_at(kvr_sched *s, double t0, double t1) {
    kvr_sched_batch b;
    kvr_error e;
    KVR_CHECK_OK(kvr_sched_next_at(s, t0, &b, &e), &e);
    if (b.n_items > 0) KVR_CHECK_OK(kvr_sched_complete_at(s, &b, NULL, t1, &e), &e);
    return b;
}

static int32_t add_at(kvr_sched *s, int64_t prompt, int64_t out, double t) {
    int32_t id = -1;
    kvr_error e;
    KVR_CHECK_OK(kvr_sched_add_at(s, prompt, out, t, &id, &e), &e);
    return id;
}

/* SLO-aware admission: the budget (the tightest TPOT slack) stops admission in FCFS order; the
 * head is admitted anyway when nothing decodes or after max_wait_s (slo_ttft_s / 2 = 0.5 s);
 * the correction factor follows measured / predicted. */
static void test_layerkv_slo_admission(void) {
    int32_t hide = 1;
    kvr_sched *s = mk_lkv(2, 1000, 0.01, 0, 16, KVR_RELOAD_SWAP);
    if (!s) return;
    kvr_sched_set_predictor(s, pred_hide_at, &hide);
    /* times in binary fractions, so the comparisons are exact */
    add_at(s, 125, 11, 0); /* predicted 0.125 s; nothing decodes: admitted */
    kvr_sched_batch b = step_at(s, 0, 0.25);
    KVR_CHECK_EQ_INT(b.n_prefill, 1);
    KVR_CHECK_NEAR(b.predicted_s, 0.125, 1e-12, 0);
    KVR_CHECK_NEAR(kvr_sched_correction(s), 0.75 + 0.25 * 2, 1e-12, 0); /* measured 0.25 */
    /* A decodes from 0.25 with 10 tokens to come (no history: the fallback max - generated);
     * slack at 0.25 = 0.1 x 10 - 0 - 10 x 0 (no decode measured yet) = 1 s */
    add_at(s, 1000, 2, 0.25); /* predicted 1 s x 1.25: over the budget */
    add_at(s, 10, 2, 0.25);   /* would fit, but waits behind it (FCFS) */
    b = step_at(s, 0.25, 0.375);
    KVR_CHECK_EQ_INT(b.n_prefill, 0);
    KVR_CHECK_EQ_INT(b.n_decode, 1);
    KVR_CHECK_EQ_INT(kvr_sched_n_waiting(s), 2);
    /* decoding at 0.125 s a step the slack stays below 1 s; at 0.75 the head has waited
     * max_wait_s = slo_ttft_s / 2 = 0.5 s */
    for (double t = 0.375; t < 0.75; t += 0.125) {
        b = step_at(s, t, t + 0.125);
        KVR_CHECK_EQ_INT(b.n_prefill, 0);
    }
    b = step_at(s, 0.75, 2);
    KVR_CHECK_EQ_INT(b.n_prefill, 1); /* the starving head alone: the next is over budget */
    KVR_CHECK_EQ_INT(b.items[0].req, 1);
    KVR_CHECK_EQ_INT(b.items[0].resident, 2);
    KVR_CHECK_EQ_INT(kvr_sched_n_waiting(s), 1);
    kvr_sched_destroy(s);
    /* past the budget a starving head is admitted only with every layer resident: in a pool of
     * 50 blocks (100 layer blocks; reload stream) the 63-block prompt needs offloading, so it
     * waits until nothing decodes -- then it runs with one layer resident */
    s = mk_lkv(2, 50, 0, 100, 16, KVR_RELOAD_STREAM);
    if (!s) return;
    kvr_sched_set_predictor(s, pred_hide_at, &hide);
    add_at(s, 125, 11, 0);
    step_at(s, 0, 0.25);
    add_at(s, 1000, 2, 0.25);
    double t = 0.25;
    for (int k = 0; k < 10; k++, t += 0.125) { /* A's ten decodes, B starving from 0.75 */
        b = step_at(s, t, t + 0.125);
        KVR_CHECK_EQ_INT(b.n_prefill, 0);
    }
    KVR_CHECK(kvr_sched_request(s, 0)->state == KVR_REQ_FINISHED);
    b = step_at(s, t, t + 1);
    KVR_CHECK_EQ_INT(b.n_prefill, 1);
    KVR_CHECK_EQ_INT(b.items[0].resident, 1);
    kvr_sched_destroy(s);
}

/* The output-length estimator: with history, the mean output of longer finished requests;
 * without (fewer than min_history), the fallback max_output_tokens - generated. */
static void test_layerkv_estimator(void) {
    int32_t hide = 1;
    for (int with_history = 0; with_history < 2; with_history++) {
        kvr_sched_params p = kvr_sched_params_default();
        p.policy = KVR_POLICY_LAYERKV;
        p.n_layers = 2, p.pool_blocks = 1000, p.host_blocks = 0;
        p.layerkv.slo_ttft_s = 100, p.layerkv.slo_tpot_s = 0.1;
        p.layerkv.min_history = with_history ? 1 : 100;
        kvr_sched *s = NULL;
        kvr_error e;
        KVR_CHECK_OK(kvr_sched_create(&p, &s, &e), &e);
        if (!s) return;
        kvr_sched_set_predictor(s, pred_hide_at, &hide);
        add_at(s, 10, 3, 0); /* finishes with 3 tokens: the history */
        for (int k = 0; k < 3; k++) step_at(s, 0, 0); /* no time passes: nothing calibrated */
        KVR_CHECK(kvr_sched_request(s, 0)->state == KVR_REQ_FINISHED);
        add_at(s, 10, 100, 0);
        step_at(s, 0, 0); /* its first token at 0 */
        /* slack: history -> 0.1 x (0 + 2); fallback -> 0.1 x 99: a 1 s prefill fits only the
         * fallback's */
        add_at(s, 1000, 2, 0);
        const kvr_sched_batch b = step_at(s, 0, 0);
        KVR_CHECK_EQ_INT(b.n_prefill, with_history ? 0 : 1);
        kvr_sched_destroy(s);
    }
}

/* Reload: swap brings the offloaded layers back once when blocks free up (the request does not
 * decode until then); stream decodes with them on the host. */
static void test_layerkv_reload(void) {
    int32_t hide = 2;
    for (int stream = 0; stream < 2; stream++) {
        kvr_sched *s = mk_lkv(4, 20, 0.1, 20, 16,
                              stream ? KVR_RELOAD_STREAM : KVR_RELOAD_SWAP);
        if (!s) return;
        kvr_sched_set_predictor(s, pred_hide_at, &hide);
        add(s, 160, 2), add(s, 160, 3); /* resident 4 and 2, as in test_layerkv_accounting */
        kvr_sched_batch b = step(s);
        KVR_CHECK_EQ_INT(b.items[1].resident, 2);
        b = step(s); /* A's last token; B: stream decodes, swap has no room (12 < 20) */
        KVR_CHECK_EQ_INT(b.n_decode, stream ? 2 : 1);
        KVR_CHECK_EQ_INT(b.n_swap_in, 0);
        if (stream) KVR_CHECK_EQ_INT(b.items[1].resident, 2);
        b = step(s); /* A finished: swap brings B's 2 layers back */
        KVR_CHECK_EQ_INT(b.n_decode, 1);
        KVR_CHECK_EQ_INT(b.items[0].req, 1);
        KVR_CHECK(b.items[0].swap_in == !stream);
        KVR_CHECK_EQ_INT(b.items[0].resident, stream ? 2 : 4);
        KVR_CHECK_EQ_INT(b.n_swap_in, stream ? 0 : 1);
        KVR_CHECK_EQ_INT(b.host_layer_blocks_used, stream ? 22 : 0); /* stream: its new block */
        KVR_CHECK_EQ_INT(kvr_sched_request(s, 1)->swaps, stream ? 0 : 1);
        b = step(s); /* swap: its third token; stream: it was its third, nothing runs */
        KVR_CHECK_EQ_INT(b.n_items, stream ? 0 : 1);
        KVR_CHECK(kvr_sched_request(s, 1)->state == KVR_REQ_FINISHED);
        KVR_CHECK_EQ_INT(kvr_sched_layer_blocks_used(s), 0);
        KVR_CHECK_EQ_INT(kvr_sched_host_layer_blocks_used(s), 0);
        kvr_sched_destroy(s);
    }
}

/* A decode that runs out of blocks preempts the last admitted request by recompute, and that
 * frees its host blocks too; every request still finishes once with its tokens. */
static void test_layerkv_preempt(void) {
    int32_t hide = 1;
    /* 4 layers, 12 blocks of 4 tokens (48 layer blocks), no watermark, host 12 blocks */
    kvr_sched *s = mk_lkv(4, 12, 0, 12, 4, KVR_RELOAD_STREAM);
    if (!s) return;
    kvr_sched_set_predictor(s, pred_hide_at, &hide);
    add(s, 32, 12); /* 8 blocks, whole: 32 layer blocks */
    add(s, 24, 12); /* 6 blocks, 16 free: 1 layer resident, 18 host layer blocks */
    kvr_sched_batch b = step(s);
    KVR_CHECK_EQ_INT(b.items[1].resident, 1);
    KVR_CHECK_EQ_INT(b.host_layer_blocks_used, 18);
    int guard = 0;
    while (kvr_sched_request(s, 1)->preemptions == 0 && ++guard < 100) step(s);
    KVR_CHECK(guard < 100);
    const kvr_sched_req *r = kvr_sched_request(s, 1);
    KVR_CHECK(r->state == KVR_REQ_WAITING && r->blocks == 0 && r->resident == 4);
    KVR_CHECK_EQ_INT(kvr_sched_host_layer_blocks_used(s), 0);
    while (step(s).n_items > 0 && ++guard < 1000) {
    }
    for (int i = 0; i < 2; i++) {
        KVR_CHECK(kvr_sched_request(s, i)->state == KVR_REQ_FINISHED);
        KVR_CHECK_EQ_INT(kvr_sched_request(s, i)->generated, 12);
    }
    KVR_CHECK_EQ_INT(kvr_sched_layer_blocks_used(s), 0);
    KVR_CHECK_EQ_INT(kvr_sched_host_layer_blocks_used(s), 0);
    kvr_sched_destroy(s);
}

/* Bad parameters and requests that can never run. */
static void test_layerkv_faults(void) {
    kvr_sched_params p = kvr_sched_params_default();
    p.policy = KVR_POLICY_LAYERKV;
    p.pool_blocks = 10, p.n_layers = 4, p.host_blocks = 10;
    kvr_sched *s = NULL;
    kvr_error e;
    KVR_CHECK(kvr_sched_create(&p, &s, &e) == KVR_ERR_INVALID_ARG &&
              strstr(e.msg, "layerkv.slo_ttft_s 0"));
    p.layerkv.slo_ttft_s = 1, p.layerkv.slo_tpot_s = -0.1;
    KVR_CHECK(kvr_sched_create(&p, &s, &e) == KVR_ERR_INVALID_ARG &&
              strstr(e.msg, "layerkv.slo_tpot_s -0.1"));
    p.layerkv.slo_tpot_s = 0.1, p.layerkv.calib_weight = 0;
    KVR_CHECK(kvr_sched_create(&p, &s, &e) == KVR_ERR_INVALID_ARG &&
              strstr(e.msg, "layerkv.calib_weight"));
    p.layerkv.calib_weight = 0.5, p.host_blocks = -1;
    KVR_CHECK(kvr_sched_create(&p, &s, &e) == KVR_ERR_INVALID_ARG && strstr(e.msg, "host_blocks"));
    KVR_CHECK(s == NULL);
    /* vllm does not look at the layerkv fields */
    p.policy = KVR_POLICY_VLLM, p.host_blocks = 0, p.layerkv.slo_ttft_s = 0;
    KVR_CHECK_OK(kvr_sched_create(&p, &s, &e), &e);
    kvr_sched_destroy(s);
    /* stream: 4 blocks x 4 layers = 16 layer blocks; a 10-block request fits with 1 resident
     * layer (vllm would refuse it), a 20-block one not even with one */
    p = kvr_sched_params_default();
    p.policy = KVR_POLICY_LAYERKV, p.layerkv.reload = KVR_RELOAD_STREAM;
    p.pool_blocks = 4, p.n_layers = 4, p.host_blocks = 40, p.watermark = 0;
    p.layerkv.slo_ttft_s = 1, p.layerkv.slo_tpot_s = 0.1;
    p.max_model_len = 100000;
    KVR_CHECK_OK(kvr_sched_create(&p, &s, &e), &e);
    if (!s) return;
    int32_t id;
    KVR_CHECK(kvr_sched_add(s, 310, 11, &id, &e) == KVR_ERR_INVALID_ARG &&
              strstr(e.msg, "hold less than its 1 resident layers: it can never run"));
    KVR_CHECK_EQ_INT(add(s, 150, 11), 0);
    int guard = 0;
    while (step(s).n_items > 0 && ++guard < 100) {
    }
    KVR_CHECK_EQ_INT(kvr_sched_request(s, 0)->generated, 11);
    KVR_CHECK_EQ_INT(kvr_sched_request(s, 0)->resident, 1);
    kvr_sched_destroy(s);
    /* a small host tier (2 blocks = 8 layer blocks) takes none of a 10-block request's layers:
     * it needs all 4 resident, more than the pool */
    s = mk_lkv(4, 4, 0, 2, 16, KVR_RELOAD_STREAM);
    if (!s) return;
    KVR_CHECK(kvr_sched_add(s, 150, 11, &id, &e) == KVR_ERR_INVALID_ARG &&
              strstr(e.msg, "can never run"));
    kvr_sched_destroy(s);
    /* swap decodes every layer resident: the pool must hold them all */
    s = mk_lkv(4, 4, 0, 40, 16, KVR_RELOAD_SWAP);
    if (!s) return;
    KVR_CHECK(kvr_sched_add(s, 150, 11, &id, &e) == KVR_ERR_INVALID_ARG);
    kvr_sched_destroy(s);
}

/* The prefill predictor: compute, and the offload copy pipelined behind the next layers. */
static void test_layerkv_predict(void) {
    kvr_search_costs *m = linear_costs(); /* 2 layers, 1024 K/V bytes per token per layer */
    if (!m) return;
    const double c = pre(100) + attn(100, 0) + post(100), compute = 5 + 2 * c + 50;
    kvr_serving_prefill_model pm = {m, 0.01}; /* 10 MB/s: 102.4 us per token-layer */
    KVR_CHECK_NEAR(kvr_serving_predict_prefill(&pm, 100, 0, 2), compute * 1e-6, 1e-12, 1e-9);
    /* one resident of 2: layer 0 offloaded, its copy (100 x 102.4 us) after its compute */
    const double copy = 100 * 1024 / (0.01 * 1e3);
    KVR_CHECK_NEAR(kvr_serving_predict_prefill(&pm, 100, 0, 1),
                   KVR_MAX(compute, 5 + c + copy) * 1e-6, 1e-12, 1e-9);
    pm.host_gbps = 1000; /* fast: hidden */
    KVR_CHECK_NEAR(kvr_serving_predict_prefill(&pm, 100, 0, 1), compute * 1e-6, 1e-12, 1e-9);
    /* none resident: both copies, the second after the first */
    pm.host_gbps = 0.01;
    KVR_CHECK_NEAR(kvr_serving_predict_prefill(&pm, 100, 0, 0),
                   KVR_MAX(compute, 5 + c + 2 * copy) * 1e-6, 1e-12, 1e-9);
    KVR_CHECK(kvr_serving_host_gbps(m, 3) == 3);
    kvr_search_costs_destroy(m);
}

/* A generated trace through the simulator under layerkv (both reloads): every request finishes
 * exactly once with its tokens; long prompts contend for a small pool, so layers are offloaded
 * and some requests swap or stream. Missing bandwidth or SLO: errors naming them. */
static void test_layerkv_sim_replay(void) {
    kvr_search_costs *m = linear_costs();
    kvr_trace_gen_params gp = kvr_trace_gen_params_default();
    gp.rate_per_s = 200;
    gp.n_requests = 300;
    kvr_error e;
    KVR_CHECK_OK(kvr_trace_length_parse("uniform:16,900", &gp.prompt, &e), &e);
    KVR_CHECK_OK(kvr_trace_length_parse("uniform:1,40", &gp.output, &e), &e);
    kvr_trace *t = NULL;
    KVR_CHECK_OK(kvr_trace_generate(&gp, &t, &e), &e);
    if (!m || !t) return;
    kvr_serving_sim_params p = {kvr_sched_params_default(), m, {0, 0, 0}, NULL, false, 0};
    p.sched.policy = KVR_POLICY_LAYERKV;
    p.sched.pool_blocks = 64; /* 1024 tokens */
    p.sched.host_blocks = 256;
    kvr_serving_record *r = calloc((size_t)t->n_requests, sizeof *r);
    kvr_serving_sim_stats st;
    if (!r) return;
    p.host_gbps = 0.5;
    KVR_CHECK(kvr_serving_simulate(t, &p, r, &st, &e) == KVR_ERR_INVALID_ARG &&
              strstr(e.msg, "layerkv.slo_ttft_s"));
    p.sched.layerkv.slo_ttft_s = 0.05, p.sched.layerkv.slo_tpot_s = 0.005;
    p.host_gbps = 0; /* the linear costs have no copy rate */
    KVR_CHECK(kvr_serving_simulate(t, &p, r, &st, &e) == KVR_ERR_INVALID_ARG &&
              strstr(e.msg, "host copy bandwidth"));
    p.host_gbps = 0.5;
    for (int rl = 0; rl < KVR_RELOAD_COUNT; rl++) {
        p.sched.layerkv.reload = (kvr_reload_policy)rl;
        KVR_CHECK_OK(kvr_serving_simulate(t, &p, r, &st, &e), &e);
        int64_t refused = 0;
        for (int64_t i = 0; i < t->n_requests; i++) {
            if (r[i].refused) {
                refused++;
                continue;
            }
            KVR_CHECK(r[i].finish_s >= r[i].first_token_s && r[i].first_token_s > r[i].arrival_s);
            KVR_CHECK_EQ_INT(r[i].output_tokens, t->requests[i].output_tokens);
        }
        KVR_CHECK_EQ_INT(refused, 0);
        KVR_CHECK(st.peak_host_blocks > 0); /* something was offloaded */
        if (rl == KVR_RELOAD_SWAP) KVR_CHECK(st.swap_ins > 0);
        KVR_CHECK(st.host_gbps == 0.5 && st.correction > 0);
        kvr_serving_summary sum;
        KVR_CHECK_OK(kvr_serving_summarize(r, t->n_requests, 0, 0, &sum, &e), &e);
        KVR_CHECK_EQ_INT(sum.n_finished, t->n_requests);
    }
    free(r);
    kvr_trace_destroy(t);
    kvr_search_costs_destroy(m);
}

static const kvr_test_case cases[] = {
    {"vllm_basic", test_vllm_basic},
    {"vllm_watermark_fcfs", test_vllm_watermark_fcfs},
    {"vllm_budgets", test_vllm_budgets},
    {"vllm_preemption", test_vllm_preemption},
    {"chunked", test_chunked},
    {"chunked_budget_shared", test_chunked_budget_shared},
    {"refusals_and_stop", test_refusals_and_stop},
    {"sched_random", test_sched_random},
    {"sim_one_request", test_sim_one_request},
    {"sim_queueing", test_sim_queueing},
    {"sim_occupancy", test_sim_occupancy},
    {"summary", test_summary},
    {"layerkv_resident", test_layerkv_resident},
    {"layerkv_accounting", test_layerkv_accounting},
    {"layerkv_slo_admission", test_layerkv_slo_admission},
    {"layerkv_estimator", test_layerkv_estimator},
    {"layerkv_reload", test_layerkv_reload},
    {"layerkv_preempt", test_layerkv_preempt},
    {"layerkv_faults", test_layerkv_faults},
    {"layerkv_predict", test_layerkv_predict},
    {"layerkv_sim_replay", test_layerkv_sim_replay},
};
KVR_TEST_MAIN(cases)
