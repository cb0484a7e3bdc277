/* test_runtime.c -- the correctness contract of the prefill schedules (DESIGN.md section 8):
 * for any mode, rank count and partition, the last-token logits equal single-rank prefill
 * within 1e-4 relative, the first token is identical, and the last rank's KV cache equals the
 * single-rank cache. Runs on the tiny GQA and MQA presets and, when present, on the real model
 * (models/SmolLM2-135M-Instruct.Q4_1.gguf or $KVR_MODEL). Ring (zigzag chunks, rank 0 emits
 * and assembles the KV cache) is held to the same contract. Also bad runs (partition parsing is
 * test_common's). */
#define _GNU_SOURCE /* sched_getaffinity, CPU_* for the binding test */
#include "kvr_runtime.h"
#include "kvr_test.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

static int32_t *make_ids(int64_t n, int32_t vocab, uint64_t seed) {
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((seed >> 33) % (uint64_t)vocab);
    }
    return ids;
}

/* max_i |a_i - b_i| / max_i |b_i|: relative to the logit scale */
static double max_rel_diff(const float *a, const float *b, int64_t n) {
    double md = 0, mb = 0;
    for (int64_t i = 0; i < n; i++) {
        md = fmax(md, fabs((double)a[i] - (double)b[i]));
        mb = fmax(mb, fabs((double)b[i]));
    }
    return mb > 0 ? md / mb : md;
}

/* Compare one (mode, p, partition) run against the single-rank reference. */
static void check_against_single(const kvr_model *m, const int32_t *ids, int64_t C,
                                 const kvr_prefill_result *ref, kvr_mode mode, int32_t p,
                                 const int64_t *part, int32_t threads, const char *label) {
    kvr_error e;
    kvr_prefill_params pp = kvr_prefill_params_default();
    pp.mode = mode;
    pp.n_ranks = p;
    pp.partition = part;
    pp.n_threads = threads;
    pp.keep_kv = true;
    kvr_prefill_result r;
    kvr_status st = kvr_prefill_run(m, ids, C, &pp, &r, &e);
    KVR_CHECK_OK(st, &e);
    if (st != KVR_OK) return;
    const kvr_model_config *cfg = kvr_model_get_config(m);
    double dl = max_rel_diff(r.logits, ref->logits, cfg->vocab_size);
    const int64_t nkv = (int64_t)cfg->n_layers * C * cfg->n_kv_heads * cfg->head_dim;
    double dk = max_rel_diff(r.k_cache, ref->k_cache, nkv);
    double dv = max_rel_diff(r.v_cache, ref->v_cache, nkv);
    if (!(dl <= 1e-4 && dk <= 1e-4 && dv <= 1e-4) || r.first_token != ref->first_token)
        fprintf(stderr, "  %s %s p=%d: logits %.2e K %.2e V %.2e token %d vs %d\n", label,
                kvr_mode_name(mode), p, dl, dk, dv, r.first_token, ref->first_token);
    KVR_CHECK(dl <= 1e-4);
    KVR_CHECK(dk <= 1e-4);
    KVR_CHECK(dv <= 1e-4);
    KVR_CHECK_EQ_INT(r.first_token, ref->first_token);
    KVR_CHECK_EQ_INT(r.n_ranks, p);
    int64_t sum = 0;
    for (int32_t i = 0; i < p; i++) {
        /* ring: rank i's first zigzag chunk is chunk i, 2p chunks differing by at most one */
        const int64_t ring_start = C / (2 * p) * i + KVR_MIN(i, C % (2 * p));
        KVR_CHECK_EQ_INT(r.ranks[i].chunk_start, mode == KVR_MODE_RING ? ring_start : sum);
        KVR_CHECK_EQ_INT(r.partition[i], r.ranks[i].chunk_len);
        sum += r.ranks[i].chunk_len;
    }
    KVR_CHECK_EQ_INT(sum, C);
    KVR_CHECK(r.ttft_ms > 0);
    kvr_prefill_result_free(&r);
}

static void run_contract(const kvr_model *m, int64_t C, const char *label) {
    kvr_error e;
    const kvr_model_config *cfg = kvr_model_get_config(m);
    int32_t *ids = make_ids(C, cfg->vocab_size, 42);
    kvr_prefill_params pp = kvr_prefill_params_default();
    pp.keep_kv = true;
    kvr_prefill_result ref;
    KVR_CHECK_OK(kvr_prefill_run(m, ids, C, &pp, &ref, &e), &e);
    /* many rank counts, even and uneven (front-loaded, back-loaded, tiny) chunks */
    for (int32_t p = 1; p <= 5; p++) {
        int64_t part[8];
        check_against_single(m, ids, C, &ref, KVR_MODE_KVR, p, NULL, 1, label);
        check_against_single(m, ids, C, &ref, KVR_MODE_TSP, p, NULL, 1, label);
        if (2 * p <= C) check_against_single(m, ids, C, &ref, KVR_MODE_RING, p, NULL, 1, label);
        /* front-loaded: geometric-ish */
        int64_t left = C;
        for (int32_t i = 0; i < p; i++) {
            part[i] = i == p - 1 ? left : KVR_MAX(1, (left - (p - 1 - i)) / 2);
            left -= part[i];
        }
        check_against_single(m, ids, C, &ref, KVR_MODE_KVR, p, part, 1, label);
        /* one-token chunks everywhere but the last */
        for (int32_t i = 0; i < p; i++) part[i] = i == p - 1 ? C - (p - 1) : 1;
        check_against_single(m, ids, C, &ref, KVR_MODE_KVR, p, part, 1, label);
        /* back-loaded: one token last */
        for (int32_t i = 0; i < p; i++) part[i] = i == 0 ? C - (p - 1) : 1;
        check_against_single(m, ids, C, &ref, KVR_MODE_KVR, p, part, 1, label);
    }
    /* several threads per rank */
    check_against_single(m, ids, C, &ref, KVR_MODE_SINGLE, 1, NULL, 3, label);
    check_against_single(m, ids, C, &ref, KVR_MODE_KVR, 2, NULL, 2, label);
    check_against_single(m, ids, C, &ref, KVR_MODE_TSP, 2, NULL, 2, label);
    if (C >= 6) check_against_single(m, ids, C, &ref, KVR_MODE_RING, 3, NULL, 2, label);
    kvr_prefill_result_free(&ref);
    free(ids);
}

static kvr_model *load(const char *name) {
    kvr_error e;
    kvr_model *m = NULL;
    kvr_model_load_params lp = kvr_model_load_params_default();
    KVR_CHECK_OK(kvr_model_load(name, &lp, &m, &e), &e);
    return m;
}

static void test_contract_tiny_gqa(void) {
    kvr_model *m = load("tiny");
    if (!m) return;
    run_contract(m, 300, "tiny"); /* > one attention block of 128 queries per rank */
    run_contract(m, 7, "tiny");
    run_contract(m, 301, "tiny"); /* odd: zigzag chunks of unequal length */
    kvr_model_destroy(m);
}

static void test_contract_tiny_mqa(void) {
    kvr_model *m = load("tiny-mqa");
    if (!m) return;
    run_contract(m, 200, "tiny-mqa");
    run_contract(m, 11, "tiny-mqa");
    kvr_model_destroy(m);
}

static void test_contract_real_model(void) {
    char path[1024];
    kvr_error e;
    if (kvr_model_default_path(path, sizeof path, &e) != KVR_OK) {
        printf("  (skipped: %s)\n", e.msg);
        KVR_CHECK(getenv("KVR_REQUIRE_MODEL") == NULL); /* CI must not skip it */
        return;
    }
    kvr_model *m = load(path);
    if (!m) return;
    const kvr_model_config *cfg = kvr_model_get_config(m);
    int32_t *ids = make_ids(160, cfg->vocab_size, 7);
    kvr_prefill_params pp = kvr_prefill_params_default();
    pp.keep_kv = true;
    kvr_prefill_result ref;
    KVR_CHECK_OK(kvr_prefill_run(m, ids, 160, &pp, &ref, &e), &e);
    kvr_prefill_result ref159; /* odd context for ring */
    KVR_CHECK_OK(kvr_prefill_run(m, ids, 159, &pp, &ref159, &e), &e);
    int64_t p3[3] = {90, 50, 20}, p4[4] = {1, 100, 40, 19};
    check_against_single(m, ids, 160, &ref, KVR_MODE_KVR, 2, NULL, 1, "real");
    check_against_single(m, ids, 160, &ref, KVR_MODE_KVR, 3, p3, 1, "real");
    check_against_single(m, ids, 160, &ref, KVR_MODE_KVR, 4, p4, 1, "real");
    check_against_single(m, ids, 160, &ref, KVR_MODE_TSP, 3, NULL, 1, "real");
    for (int32_t p = 1; p <= 5; p++)
        check_against_single(m, ids, 159, &ref159, KVR_MODE_RING, p, NULL, 1, "real");
    kvr_prefill_result_free(&ref159);
    kvr_prefill_result_free(&ref);
    free(ids);
    kvr_model_destroy(m);
}

/* Softmax stability: huge activations must not overflow (logits stay finite). */
static void test_logits_finite(void) {
    kvr_model *m = load("tiny");
    if (!m) return;
    kvr_error e;
    int32_t *ids = make_ids(64, 256, 3);
    kvr_prefill_params pp = kvr_prefill_params_default();
    kvr_prefill_result r;
    KVR_CHECK_OK(kvr_prefill_run(m, ids, 64, &pp, &r, &e), &e);
    int finite = 1;
    for (int i = 0; r.logits && i < 256; i++) finite &= isfinite(r.logits[i]) != 0;
    KVR_CHECK(finite);
    KVR_CHECK_EQ_INT(r.first_token, kvr_argmax(r.logits, 256));
    kvr_prefill_result_free(&r);
    free(ids);
    kvr_model_destroy(m);
}

static void test_bad_runs(void) {
    kvr_model *m = load("tiny");
    if (!m) return;
    kvr_error e;
    int32_t ids[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    kvr_prefill_params pp = kvr_prefill_params_default();
    kvr_prefill_result r;
    pp.mode = KVR_MODE_KVR;
    pp.n_ranks = 9; /* more ranks than tokens */
    KVR_CHECK(kvr_prefill_run(m, ids, 8, &pp, &r, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "more ranks than tokens") != NULL);
    pp.n_ranks = 2;
    int64_t bad[2] = {8, 0};
    pp.partition = bad;
    KVR_CHECK(kvr_prefill_run(m, ids, 8, &pp, &r, &e) == KVR_ERR_INVALID_ARG);
    pp.partition = NULL;
    pp.mode = KVR_MODE_SINGLE;
    KVR_CHECK(kvr_prefill_run(m, ids, 8, &pp, &r, &e) == KVR_ERR_INVALID_ARG);
    /* an out-of-vocabulary id in rank 1's chunk: rank 1 fails, rank 0 must not hang, and
     * the error reported is the root cause, not the peer's echo */
    pp.mode = KVR_MODE_KVR;
    ids[6] = 100000;
    KVR_CHECK(kvr_prefill_run(m, ids, 8, &pp, &r, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "outside the vocabulary") != NULL);
    pp.mode = KVR_MODE_TSP;
    KVR_CHECK(kvr_prefill_run(m, ids, 8, &pp, &r, &e) == KVR_ERR_INVALID_ARG);
    /* in rank 0's chunk: rank 1 blocks in recv and must be woken */
    ids[6] = 7;
    ids[0] = -5;
    pp.mode = KVR_MODE_KVR;
    pp.n_ranks = 4;
    KVR_CHECK(kvr_prefill_run(m, ids, 8, &pp, &r, &e) == KVR_ERR_INVALID_ARG);
    /* ring: more ranks than half the tokens; any partition (zigzag fixes it) */
    ids[0] = 1;
    pp.mode = KVR_MODE_RING;
    pp.n_ranks = 5;
    KVR_CHECK(kvr_prefill_run(m, ids, 8, &pp, &r, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "needs at least 10 tokens") != NULL);
    pp.n_ranks = 2;
    int64_t even[2] = {4, 4};
    pp.partition = even;
    KVR_CHECK(kvr_prefill_run(m, ids, 8, &pp, &r, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "zigzag") != NULL);
    pp.partition = NULL;
    /* a bad id in rank 1's second chunk (chunk 2 of 4): the ring must not hang */
    ids[4] = 100000;
    KVR_CHECK(kvr_prefill_run(m, ids, 8, &pp, &r, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "outside the vocabulary") != NULL);
    kvr_model_destroy(m);
}

/* One prefill with params pp (ready or not) into r; its logits kept. */
static kvr_status ready_run(kvr_model *m, const int32_t *ids, int64_t C, kvr_prefill_params pp,
                            kvr_prefill_result *r, kvr_error *e) {
    pp.keep_logits = true;
    return kvr_prefill_run(m, ids, C, &pp, r, e);
}

static bool all_ready(const kvr_prefill_result *r, bool want) {
    bool ok = true;
    for (int32_t i = 0; i < r->n_ranks; i++) ok &= r->ranks[i].ready == want;
    return ok;
}

/* A session's prepared ranks (kvr_prefill_ready): made before the first prefill, used by every
 * run that fits them (the same prompt again, a shorter one), not by one that does not; the
 * results byte-identical to a prefill that makes its own workspaces. */
static void test_ready(void) {
    kvr_model *m = load("tiny");
    if (!m) return;
    kvr_error e;
    const int64_t C = 300;
    int32_t *ids = make_ids(C, 256, 11);
    static const kvr_mode modes[] = {KVR_MODE_SINGLE, KVR_MODE_KVR, KVR_MODE_TSP};
    for (size_t k = 0; k < sizeof modes / sizeof modes[0]; k++) {
        for (int32_t nt = 1; nt <= 2; nt++) {
            kvr_prefill_params pp = kvr_prefill_params_default();
            pp.mode = modes[k];
            pp.n_ranks = modes[k] == KVR_MODE_SINGLE ? 1 : 2;
            pp.n_threads = nt;
            int64_t part[2] = {200, 100};
            if (modes[k] == KVR_MODE_KVR) pp.partition = part;
            kvr_prefill_result fresh, a, b;
            KVR_CHECK_OK(ready_run(m, ids, C, pp, &fresh, &e), &e);
            KVR_CHECK(all_ready(&fresh, false));
            kvr_prefill_ready *rd = NULL;
            KVR_CHECK_OK(kvr_prefill_ready_create(m, &pp, C, -1, &rd, &e), &e);
            if (!rd) continue;
            KVR_CHECK_EQ_INT(kvr_prefill_ready_ranks(rd), pp.n_ranks);
            pp.ready = rd;
            KVR_CHECK_OK(ready_run(m, ids, C, pp, &a, &e), &e);
            KVR_CHECK_OK(ready_run(m, ids, C, pp, &b, &e), &e); /* the same workspaces again */
            KVR_CHECK(all_ready(&a, true) && all_ready(&b, true));
            KVR_CHECK_EQ_INT(a.first_token, fresh.first_token);
            KVR_CHECK(fresh.logits && a.logits && b.logits &&
                      !memcmp(a.logits, fresh.logits, 256 * sizeof(float)) &&
                      !memcmp(b.logits, fresh.logits, 256 * sizeof(float)));
            /* a shorter prompt fits the prepared workspaces: the same result as without */
            kvr_prefill_result s0, s1;
            int64_t spart[2] = {150, 50};
            pp.partition = modes[k] == KVR_MODE_KVR ? spart : NULL;
            pp.ready = NULL;
            KVR_CHECK_OK(ready_run(m, ids, 200, pp, &s0, &e), &e);
            pp.ready = rd;
            KVR_CHECK_OK(ready_run(m, ids, 200, pp, &s1, &e), &e);
            KVR_CHECK(all_ready(&s1, true));
            KVR_CHECK(s0.logits && s1.logits && !memcmp(s0.logits, s1.logits, 256 * sizeof(float)));
            kvr_prefill_result_free(&s0), kvr_prefill_result_free(&s1);
            /* a longer one does not: its ranks make their own (its first rank's chunk is
             * larger than prepared) */
            int32_t *ids2 = make_ids(C + 50, 256, 12);
            int64_t lpart[2] = {250, 100};
            pp.partition = modes[k] == KVR_MODE_KVR ? lpart : NULL;
            KVR_CHECK_OK(ready_run(m, ids2, C + 50, pp, &s1, &e), &e);
            KVR_CHECK(!s1.ranks[0].ready);
            kvr_prefill_result_free(&s1);
            free(ids2);
            kvr_prefill_ready_destroy(rd);
            kvr_prefill_result_free(&fresh), kvr_prefill_result_free(&a), kvr_prefill_result_free(&b);
        }
    }
    /* decode after the run: the emitting rank's prepared workspace goes to the decoder (the
     * ready no longer frees it); the other rank's stays prepared */
    {
        kvr_prefill_params pp = kvr_prefill_params_default();
        pp.mode = KVR_MODE_KVR;
        pp.n_ranks = 2;
        pp.decode_reserve = 4;
        kvr_prefill_ready *rd = NULL;
        KVR_CHECK_OK(kvr_prefill_ready_create(m, &pp, C, -1, &rd, &e), &e);
        pp.ready = rd;
        kvr_prefill_result r;
        KVR_CHECK_OK(ready_run(m, ids, C, pp, &r, &e), &e);
        KVR_CHECK(all_ready(&r, true));
        KVR_CHECK(r.decoder != NULL);
        kvr_prefill_ready_destroy(rd);
        kvr_prefill_result_free(&r); /* frees the decoder and with it the workspace */
    }
    /* one MPI process's rank; ring and a bad rank */
    {
        kvr_prefill_params pp = kvr_prefill_params_default();
        pp.mode = KVR_MODE_KVR;
        pp.n_ranks = 2;
        kvr_prefill_ready *rd = NULL;
        KVR_CHECK_OK(kvr_prefill_ready_create(m, &pp, C, 1, &rd, &e), &e);
        KVR_CHECK_EQ_INT(kvr_prefill_ready_ranks(rd), 1);
        kvr_prefill_ready_destroy(rd);
        KVR_CHECK(kvr_prefill_ready_create(m, &pp, C, 2, &rd, &e) == KVR_ERR_INVALID_ARG);
        pp.mode = KVR_MODE_RING;
        KVR_CHECK_OK(kvr_prefill_ready_create(m, &pp, C, -1, &rd, &e), &e);
        KVR_CHECK_EQ_INT(kvr_prefill_ready_ranks(rd), 0);
        pp.ready = rd;
        kvr_prefill_result r;
        KVR_CHECK_OK(ready_run(m, ids, C, pp, &r, &e), &e);
        KVR_CHECK(all_ready(&r, false));
        kvr_prefill_result_free(&r);
        kvr_prefill_ready_destroy(rd);
        kvr_prefill_ready_destroy(NULL);
        KVR_CHECK_EQ_INT(kvr_prefill_ready_ranks(NULL), 0);
    }
    free(ids);
    kvr_model_destroy(m);
}

/* kvr_rank_thread_bind in a thread of its own (it binds its caller): rank r of n with t
 * threads each; out[0] = its answer, out[1] = the CPUs the thread may use afterwards, out[2] =
 * 1 when the CPU returned is among them */
typedef struct bind_try {
    int32_t rank, n_ranks, n_threads;
    int out[3];
} bind_try;
static void *bind_main(void *arg) {
    bind_try *b = arg;
    b->out[0] = kvr_rank_thread_bind(b->rank, b->n_ranks, b->n_threads);
    cpu_set_t cs;
    sched_getaffinity(0, sizeof cs, &cs);
    b->out[1] = CPU_COUNT(&cs);
    b->out[2] = b->out[0] >= 0 && CPU_ISSET(b->out[0], &cs);
    return NULL;
}
static bind_try bind_in_thread(int32_t rank, int32_t n_ranks, int32_t n_threads) {
    bind_try b = {rank, n_ranks, n_threads, {-2, -2, -2}};
    pthread_t th;
    if (pthread_create(&th, NULL, bind_main, &b) == 0) pthread_join(th, NULL);
    return b;
}

/* Ranks as threads on CPUs of their own (params.bind): rank i on the allowed CPUs i*t ..
 * i*t + t - 1 when p*t fit, else not bound; the numbers do not change. */
static void test_bind(void) {
    cpu_set_t cs;
    KVR_CHECK(sched_getaffinity(0, sizeof cs, &cs) == 0);
    const int n = CPU_COUNT(&cs);
    int first = -1, second = -1; /* the first two allowed CPUs */
    for (int c = 0; c < CPU_SETSIZE && second < 0; c++)
        if (CPU_ISSET(c, &cs)) *(first < 0 ? &first : &second) = c;
    bind_try b = bind_in_thread(0, 1, 1); /* one rank: nothing to keep apart, not bound */
    KVR_CHECK_EQ_INT(b.out[0], -1);
    KVR_CHECK_EQ_INT(b.out[1], n);
    b = bind_in_thread(0, n + 1, 1); /* more ranks than CPUs: not bound, mask kept */
    KVR_CHECK_EQ_INT(b.out[0], -1);
    KVR_CHECK_EQ_INT(b.out[1], n);
    b = bind_in_thread(0, 2, n); /* teams larger than the CPUs: likewise */
    KVR_CHECK_EQ_INT(b.out[0], -1);
    KVR_CHECK_EQ_INT(b.out[1], n);
    static const int32_t bad[][3] = {{2, 2, 1}, {-1, 2, 1}, {0, 0, 1}, {0, 1, 0}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        b = bind_in_thread(bad[i][0], bad[i][1], bad[i][2]);
        KVR_CHECK_EQ_INT(b.out[0], -1);
        KVR_CHECK_EQ_INT(b.out[1], n);
    }
    if (n >= 2) {
        b = bind_in_thread(0, 2, 1);
        KVR_CHECK_EQ_INT(b.out[0], first);
        KVR_CHECK_EQ_INT(b.out[1], 1);
        KVR_CHECK_EQ_INT(b.out[2], 1);
        b = bind_in_thread(1, 2, 1);
        KVR_CHECK_EQ_INT(b.out[0], second);
        KVR_CHECK_EQ_INT(b.out[1], 1);
        KVR_CHECK_EQ_INT(b.out[2], 1);
    }
    if (n >= 4) { /* two ranks, teams of two: rank 1 on the third and fourth CPUs */
        b = bind_in_thread(1, 2, 2);
        KVR_CHECK(b.out[0] > second);
        KVR_CHECK_EQ_INT(b.out[1], 2);
    }

    kvr_model *m = load("tiny");
    if (!m) return;
    kvr_error e;
    const int64_t C = 200;
    int32_t *ids = make_ids(C, 256, 5);
    kvr_prefill_result r[2];
    for (int k = 0; k < 2; k++) {
        kvr_prefill_params pp = kvr_prefill_params_default();
        KVR_CHECK(pp.bind); /* the default */
        pp.mode = KVR_MODE_KVR;
        pp.n_ranks = 2;
        pp.keep_logits = true;
        pp.bind = k == 0;
        KVR_CHECK_OK(kvr_prefill_run(m, ids, C, &pp, &r[k], &e), &e);
    }
    if (n >= 2) {
        KVR_CHECK_EQ_INT(r[0].ranks[0].n_cpus, 1);
        KVR_CHECK_EQ_INT(r[0].ranks[1].n_cpus, 1);
        KVR_CHECK_EQ_INT(r[0].ranks[0].cpu_first, first);
        KVR_CHECK_EQ_INT(r[0].ranks[1].cpu_first, second);
    } else {
        KVR_CHECK_EQ_INT(r[0].ranks[0].n_cpus, 0);
    }
    KVR_CHECK_EQ_INT(r[1].ranks[0].n_cpus, 0);
    KVR_CHECK_EQ_INT(r[1].ranks[1].n_cpus, 0);
    KVR_CHECK_EQ_INT(r[0].first_token, r[1].first_token);
    if (r[0].logits && r[1].logits)
        KVR_CHECK(max_rel_diff(r[0].logits, r[1].logits, 256) == 0);
    for (int k = 0; k < 2; k++) kvr_prefill_result_free(&r[k]);
    free(ids);
    kvr_model_destroy(m);
}

static const kvr_test_case cases[] = {
    {"bind", test_bind},
    {"ready", test_ready},
    {"contract_tiny_gqa", test_contract_tiny_gqa},
    {"contract_tiny_mqa", test_contract_tiny_mqa},
    {"contract_real_model", test_contract_real_model},
    {"logits_finite", test_logits_finite},
    {"bad_runs", test_bad_runs},
};
KVR_TEST_MAIN(cases)
