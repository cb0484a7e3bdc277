/* test_batch.c -- the paged KV pool and the batched iteration (kvr_batch.h), on the tiny
 * presets, against the existing single-sequence path (kvr_prefill_run, kvr_generate):
 *   - a batch of sequences with different cached lengths and new-token counts, in shuffled
 *     order over shuffled, non-contiguous block ids, gives each sequence the logits of a
 *     one-shot prefill of its tokens (max |difference| <= 1e-4 x max(1, max |logit|): fp32
 *     rounding; the batched GEMMs may round differently from one-sequence ones);
 *   - a prompt prefilled through the pool in chunks gives the one-shot prefill's logits;
 *   - greedy decode of 3 sequences batched gives each one's tokens decoded alone;
 *   - bad block tables, too many rows, bad arguments: KVR_ERR_INVALID_ARG with a message;
 *   - on the real model (stored-type weights), 10 sequences decoding in one iteration (the LM
 *     head over 10 rows at once) get the one-shot prefill's logits and argmax. */
#include "kvr_batch.h"
#include "kvr_decode.h"
#include "kvr_runtime.h"
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

/* a permutation of [0, n) from a seed */
static void shuffle(int32_t *v, int32_t n, uint64_t seed) {
    for (int32_t i = 0; i < n; i++) v[i] = i;
    for (int32_t i = n - 1; i > 0; i--) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        const int32_t j = (int32_t)((seed >> 33) % (uint64_t)(i + 1)), t = v[i];
        v[i] = v[j], v[j] = t;
    }
}

static kvr_model *load(const char *name) {
    kvr_model *m = NULL;
    kvr_error e;
    kvr_model_load_params lp = kvr_model_load_params_default();
    KVR_CHECK_OK(kvr_model_load(name, &lp, &m, &e), &e);
    return m;
}

/* the logits after a one-shot single-rank prefill of ids[0, n) (malloc'd) */
static float *ref_logits(const kvr_model *m, const int32_t *ids, int64_t n) {
    kvr_prefill_params pp = kvr_prefill_params_default();
    pp.keep_logits = true;
    kvr_prefill_result r;
    kvr_error e;
    KVR_CHECK_OK(kvr_prefill_run(m, ids, n, &pp, &r, &e), &e);
    const size_t V = (size_t)kvr_model_get_config(m)->vocab_size;
    float *out = malloc(V * sizeof *out);
    memcpy(out, r.logits, V * sizeof *out);
    kvr_prefill_result_free(&r);
    return out;
}

/* max |a - b| / max(1, max |b|) over V */
static double rel_diff(const float *a, const float *b, int32_t V) {
    double d = 0, mx = 1;
    for (int32_t i = 0; i < V; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        mx = fmax(mx, fabs((double)b[i]));
    }
    return d / mx;
}

#define TOL 1e-4

typedef struct fixture {
    kvr_model *m;
    kvr_weights *w;
    kvr_kv_pool *pool;
    kvr_batch_runner *r;
    int32_t V;
} fixture;

static bool fixture_open(fixture *f, const char *model, int64_t n_blocks, int32_t bt,
                         int64_t max_rows) {
    kvr_error e;
    const kvr_backend *be;
    memset(f, 0, sizeof *f);
    if (!(f->m = load(model))) return false;
    f->V = kvr_model_get_config(f->m)->vocab_size;
    KVR_CHECK_OK(kvr_backend_get("cpu", &be, &e), &e);
    KVR_CHECK_OK(kvr_weights_upload(be, f->m, &f->w, &e), &e);
    KVR_CHECK_OK(kvr_kv_pool_create(f->w, n_blocks, bt, &f->pool, &e), &e);
    KVR_CHECK_OK(kvr_batch_runner_create(f->w, f->pool, max_rows, 2, &f->r, &e), &e);
    return f->r != NULL;
}

static void fixture_close(fixture *f) {
    kvr_batch_runner_destroy(f->r);
    kvr_kv_pool_destroy(f->pool);
    kvr_weights_free(f->w);
    kvr_model_destroy(f->m);
}

static void test_batch_matches_single(void) {
    const char *models[] = {"tiny", "tiny-mqa"};
    for (int k = 0; k < 2; k++) {
        fixture f;
        const int32_t bt = k == 0 ? 16 : 5, NB = 64;
        if (!fixture_open(&f, models[k], NB, bt, 256)) return;
        kvr_error e;
        enum { NS = 4 };
        const int64_t past[NS] = {30, 0, 64, 19}, news[NS] = {7, 5, 6, 1};
        int32_t *ids[NS], perm[NB], *blocks[NS];
        shuffle(perm, NB, 11 + (uint64_t)k);
        int32_t used = 0;
        for (int i = 0; i < NS; i++) {
            ids[i] = make_ids(past[i] + news[i], f.V, 100 + (uint64_t)i);
            blocks[i] = perm + used; /* shuffled ids, each sequence its own */
            used += (int32_t)KVR_CEIL_DIV(past[i] + news[i], bt);
        }
        KVR_CHECK(used <= NB);
        /* the cached prefixes, one batch of the sequences that have one (no logits) */
        kvr_batch_seq s[NS];
        int32_t n = 0;
        for (int i = 0; i < NS; i++)
            if (past[i] > 0)
                s[n++] = (kvr_batch_seq){ids[i], past[i], 0, blocks[i],
                                         KVR_CEIL_DIV(past[i] + news[i], bt), false};
        KVR_CHECK_OK(kvr_batch_run(f.r, s, n, &e), &e);
        KVR_CHECK(kvr_batch_logits(f.r, 0) == NULL);
        /* the new tokens of all, in the order 2, 0, 3, 1 */
        const int order[NS] = {2, 0, 3, 1};
        for (int j = 0; j < NS; j++) {
            const int i = order[j];
            s[j] = (kvr_batch_seq){ids[i] + past[i], news[i], past[i], blocks[i],
                                   KVR_CEIL_DIV(past[i] + news[i], bt), true};
        }
        KVR_CHECK_OK(kvr_batch_run(f.r, s, NS, &e), &e);
        for (int j = 0; j < NS; j++) {
            const int i = order[j];
            float *want = ref_logits(f.m, ids[i], past[i] + news[i]);
            const float *got = kvr_batch_logits(f.r, j);
            KVR_CHECK(got != NULL);
            if (got) {
                const double d = rel_diff(got, want, f.V);
                printf("  %s, blocks of %d: sequence %d (%lld cached + %lld): max rel diff "
                       "%.2e\n",
                       models[k], bt, i, (long long)past[i], (long long)news[i], d);
                KVR_CHECK(d <= TOL);
                KVR_CHECK_EQ_INT(kvr_argmax(got, f.V), kvr_argmax(want, f.V));
            }
            free(want);
        }
        for (int i = 0; i < NS; i++) free(ids[i]);
        fixture_close(&f);
    }
}

static void test_chunked_prefill(void) {
    fixture f;
    if (!fixture_open(&f, "tiny", 12, 8, 64)) return;
    kvr_error e;
    const int64_t C = 50, chunks[] = {16, 13, 21};
    int32_t *ids = make_ids(C, f.V, 7), blocks[7] = {11, 3, 8, 0, 5, 9, 2};
    int64_t at = 0;
    for (int c = 0; c < 3; c++) {
        kvr_batch_seq s = {ids + at, chunks[c], at, blocks, 7, c == 2};
        KVR_CHECK_OK(kvr_batch_run(f.r, &s, 1, &e), &e);
        at += chunks[c];
    }
    KVR_CHECK_EQ_INT((int)at, (int)C);
    float *want = ref_logits(f.m, ids, C);
    const float *got = kvr_batch_logits(f.r, 0);
    KVR_CHECK(got != NULL);
    if (got) {
        const double d = rel_diff(got, want, f.V);
        printf("  chunks 16 + 13 + 21 vs one-shot 50: max rel diff %.2e\n", d);
        KVR_CHECK(d <= TOL);
    }
    free(want);
    free(ids);
    fixture_close(&f);
}

static void test_batched_greedy_decode(void) {
    fixture f;
    if (!fixture_open(&f, "tiny", 48, 16, 128)) return;
    kvr_error e;
    enum { NS = 3, N = 10 };
    const int64_t C[NS] = {23, 41, 9};
    int32_t *ids[NS], alone[NS][N], batched[NS][N], perm[48];
    shuffle(perm, 48, 3);
    for (int i = 0; i < NS; i++) {
        ids[i] = make_ids(C[i] + N, f.V, 40 + (uint64_t)i);
        /* alone: the existing path (prefill, then kvr_generate's decode steps) */
        kvr_prefill_params pp = kvr_prefill_params_default();
        pp.decode_reserve = N;
        pp.keep_logits = true;
        kvr_prefill_result pr;
        KVR_CHECK_OK(kvr_prefill_run(f.m, ids[i], C[i], &pp, &pr, &e), &e);
        kvr_generate_params gp = kvr_generate_params_default();
        gp.n_predict = N;
        kvr_generate_result g;
        KVR_CHECK_OK(kvr_generate(pr.decoder, pr.logits, &gp, &g, &e), &e);
        KVR_CHECK_EQ_INT(g.n_ids, N);
        for (int t = 0; t < N && t < g.n_ids; t++) alone[i][t] = g.ids[t];
        kvr_generate_result_free(&g);
        kvr_prefill_result_free(&pr);
    }
    /* batched: the three prompts in one iteration, then one iteration per token */
    kvr_batch_seq s[NS];
    int64_t len[NS];
    for (int i = 0; i < NS; i++) {
        s[i] = (kvr_batch_seq){ids[i], C[i], 0, perm + 16 * i, 16, true};
        len[i] = C[i];
    }
    for (int t = 0; t < N; t++) {
        KVR_CHECK_OK(kvr_batch_run(f.r, s, NS, &e), &e);
        for (int i = 0; i < NS; i++) {
            const float *lg = kvr_batch_logits(f.r, i);
            KVR_CHECK(lg != NULL);
            batched[i][t] = lg ? kvr_argmax(lg, f.V) : -1;
            ids[i][len[i]] = batched[i][t];
            s[i].tokens = ids[i] + len[i];
            s[i].n_past = len[i];
            s[i].n_tokens = 1;
            len[i]++;
        }
    }
    int distinct = 0;
    for (int i = 0; i < NS; i++)
        for (int t = 0; t < N; t++) {
            KVR_CHECK_EQ_INT(batched[i][t], alone[i][t]);
            distinct += t > 0 && alone[i][t] != alone[i][t - 1];
        }
    KVR_CHECK(distinct > 0);
    for (int i = 0; i < NS; i++) free(ids[i]);
    fixture_close(&f);
}

static void test_batch_errors(void) {
    fixture f;
    if (!fixture_open(&f, "tiny", 8, 4, 16)) return;
    kvr_error e;
    int32_t ids[20] = {0}, blocks[5] = {0, 1, 2, 3, 4}, bad[2] = {0, 8}, dup[2] = {3, 3};
    kvr_batch_seq s = {ids, 20, 0, blocks, 5, true};
    KVR_CHECK(kvr_batch_run(f.r, &s, 1, &e) == KVR_ERR_INVALID_ARG); /* 20 rows > 16 */
    KVR_CHECK(strstr(e.msg, "16 rows") != NULL);
    s = (kvr_batch_seq){ids, 9, 0, blocks, 2, true}; /* 9 tokens need 3 blocks of 4 */
    KVR_CHECK(kvr_batch_run(f.r, &s, 1, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "needs 3") != NULL);
    s = (kvr_batch_seq){ids, 6, 0, bad, 2, true};
    KVR_CHECK(kvr_batch_run(f.r, &s, 1, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "outside the pool") != NULL);
    s = (kvr_batch_seq){ids, 6, 0, dup, 2, true};
    KVR_CHECK(kvr_batch_run(f.r, &s, 1, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "twice") != NULL);
    ids[1] = f.V;
    s = (kvr_batch_seq){ids, 2, 0, blocks, 1, true};
    KVR_CHECK(kvr_batch_run(f.r, &s, 1, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "vocabulary") != NULL);
    KVR_CHECK(kvr_batch_run(f.r, &s, 0, &e) == KVR_ERR_INVALID_ARG);
    kvr_kv_pool *p = NULL;
    KVR_CHECK(kvr_kv_pool_create(f.w, 0, 16, &p, &e) == KVR_ERR_INVALID_ARG && p == NULL);
    const kvr_model_config *cfg = kvr_model_get_config(f.m);
    KVR_CHECK_EQ_INT((int)kvr_kv_block_bytes(cfg, 16),
                     cfg->n_layers * 2 * cfg->n_kv_heads * cfg->head_dim * 4 * 16);
    fixture_close(&f);
}

/* the real model (weights in their stored types): 10 sequences decoding in one iteration -- the
 * LM head over more rows than the row-by-row limit -- against one-shot prefills */
static void test_real_model(void) {
    char path[1024];
    kvr_error e;
    if (kvr_model_default_path(path, sizeof path, &e) != KVR_OK) {
        printf("  (skipped: %s)\n", e.msg);
        KVR_CHECK(getenv("KVR_REQUIRE_MODEL") == NULL); /* CI must not skip it */
        return;
    }
    fixture f;
    if (!fixture_open(&f, path, 40, 16, 192)) return; /* the prompts: 175 rows */
    enum { NS = 10 };
    int32_t *ids[NS], perm[40];
    shuffle(perm, 40, 5);
    kvr_batch_seq s[NS];
    for (int i = 0; i < NS; i++) {
        ids[i] = make_ids(14 + i, f.V, 700 + (uint64_t)i);
        s[i] = (kvr_batch_seq){ids[i], 13 + i, 0, perm + 4 * i, 4, false};
    }
    KVR_CHECK_OK(kvr_batch_run(f.r, s, NS, &e), &e); /* the prompts, no logits */
    for (int i = 0; i < NS; i++)
        s[i] = (kvr_batch_seq){ids[i] + 13 + i, 1, 13 + i, perm + 4 * i, 4, true};
    KVR_CHECK_OK(kvr_batch_run(f.r, s, NS, &e), &e); /* one decode row each */
    double worst = 0;
    for (int i = 0; i < NS; i++) {
        float *want = ref_logits(f.m, ids[i], 14 + i);
        const float *got = kvr_batch_logits(f.r, i);
        KVR_CHECK(got != NULL);
        if (got) {
            worst = fmax(worst, rel_diff(got, want, f.V));
            KVR_CHECK_EQ_INT(kvr_argmax(got, f.V), kvr_argmax(want, f.V));
        }
        free(want);
        free(ids[i]);
    }
    printf("  real model, 10 sequences decoding at once: max rel diff %.2e\n", worst);
    KVR_CHECK(worst <= TOL);
    fixture_close(&f);
}

static const kvr_test_case cases[] = {
    {"batch_matches_single", test_batch_matches_single},
    {"chunked_prefill", test_chunked_prefill},
    {"batched_greedy_decode", test_batched_greedy_decode},
    {"batch_errors", test_batch_errors},
    {"real_model", test_real_model},
};
KVR_TEST_MAIN(cases)
