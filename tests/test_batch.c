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
#include "backend_internal.h" /* kvr_kv_pool_copier_hold */
#include "kvr_batch.h"
#include "kvr_decode.h"
#include "kvr_runtime.h"
#include "kvr_test.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
#define MAXL 64 /* most layers of the models the tests load */

/* layer tables over one sequence's ids, n per layer: tabs[l] = ids + l x n */
static void tabs_of(const int32_t *ids, int32_t L, int64_t n, const int32_t **tabs) {
    for (int32_t l = 0; l < L; l++) tabs[l] = ids + l * n;
}

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
        const int32_t L = kvr_model_get_config(f.m)->n_layers;
        KVR_CHECK(L <= MAXL);
        int32_t *ids[NS], *perm = malloc((size_t)(NB * L) * sizeof *perm);
        const int32_t *blocks[NS][MAXL];
        /* shuffled layer block ids, each sequence its own: any block holds any layer */
        shuffle(perm, NB * L, 11 + (uint64_t)k);
        int32_t used = 0;
        for (int i = 0; i < NS; i++) {
            ids[i] = make_ids(past[i] + news[i], f.V, 100 + (uint64_t)i);
            const int64_t nb = KVR_CEIL_DIV(past[i] + news[i], bt);
            tabs_of(perm + used * L, L, nb, blocks[i]);
            used += (int32_t)nb;
        }
        KVR_CHECK(used <= NB);
        /* the cached prefixes, one batch of the sequences that have one (no logits) */
        kvr_batch_seq s[NS];
        int32_t n = 0;
        for (int i = 0; i < NS; i++)
            if (past[i] > 0)
                s[n++] = (kvr_batch_seq){ids[i], past[i], 0, blocks[i],
                                         KVR_CEIL_DIV(past[i] + news[i], bt), false, NULL};
        KVR_CHECK_OK(kvr_batch_run(f.r, s, n, &e), &e);
        KVR_CHECK(kvr_batch_logits(f.r, 0) == NULL);
        /* the new tokens of all, in the order 2, 0, 3, 1 */
        const int order[NS] = {2, 0, 3, 1};
        for (int j = 0; j < NS; j++) {
            const int i = order[j];
            s[j] = (kvr_batch_seq){ids[i] + past[i], news[i], past[i], blocks[i],
                                   KVR_CEIL_DIV(past[i] + news[i], bt), true, NULL};
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
        free(perm);
        fixture_close(&f);
    }
}

static void test_chunked_prefill(void) {
    fixture f;
    if (!fixture_open(&f, "tiny", 12, 8, 64)) return;
    kvr_error e;
    const int64_t C = 50, chunks[] = {16, 13, 21};
    int32_t *ids = make_ids(C, f.V, 7), blocks[7] = {11, 3, 8, 0, 5, 9, 2}, lids[7 * MAXL];
    const int32_t *tabs[MAXL];
    KVR_CHECK(kvr_model_get_config(f.m)->n_layers <= MAXL);
    kvr_kv_layer_tables(kvr_model_get_config(f.m)->n_layers, blocks, 7, lids, tabs);
    int64_t at = 0;
    for (int c = 0; c < 3; c++) {
        kvr_batch_seq s = {ids + at, chunks[c], at, tabs, 7, c == 2, NULL};
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
    const int32_t L = kvr_model_get_config(f.m)->n_layers;
    KVR_CHECK(L <= MAXL);
    int32_t *ids[NS], alone[NS][N], batched[NS][N], *perm = malloc((size_t)(48 * L) * sizeof *perm);
    const int32_t *tabs[NS][MAXL];
    shuffle(perm, 48 * L, 3); /* layer blocks */
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
        tabs_of(perm + 16 * L * i, L, 16, tabs[i]);
        s[i] = (kvr_batch_seq){ids[i], C[i], 0, tabs[i], 16, true, NULL};
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
    free(perm);
    fixture_close(&f);
}

static void test_batch_errors(void) {
    fixture f;
    if (!fixture_open(&f, "tiny", 8, 4, 16)) return;
    kvr_error e;
    const int32_t L = kvr_model_get_config(f.m)->n_layers;
    KVR_CHECK(L >= 2 && L <= MAXL);
    int32_t ids[20] = {0}, tb[5] = {0, 1, 2, 3, 4}, lids[5 * MAXL], bad[2 * MAXL], dup[2 * MAXL];
    const int32_t *blocks[MAXL], *tbad[MAXL], *tdup[MAXL];
    kvr_kv_layer_tables(L, tb, 5, lids, blocks);
    kvr_batch_seq s = {ids, 20, 0, blocks, 5, true, NULL};
    KVR_CHECK(kvr_batch_run(f.r, &s, 1, &e) == KVR_ERR_INVALID_ARG); /* 20 rows > 16 */
    KVR_CHECK(strstr(e.msg, "16 rows") != NULL);
    s = (kvr_batch_seq){ids, 9, 0, blocks, 2, true, NULL}; /* 9 tokens need 3 blocks of 4 */
    KVR_CHECK(kvr_batch_run(f.r, &s, 1, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "needs 3") != NULL);
    kvr_kv_layer_tables(L, tb, 2, bad, tbad);
    bad[2 * (L - 1) + 1] = 8 * L; /* the last layer's second block: one past the pool */
    s = (kvr_batch_seq){ids, 6, 0, tbad, 2, true, NULL};
    KVR_CHECK(kvr_batch_run(f.r, &s, 1, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "outside the pool") != NULL);
    kvr_kv_layer_tables(L, tb + 3, 2, dup, tdup);
    dup[1] = dup[0]; /* twice in layer 0's table */
    s = (kvr_batch_seq){ids, 6, 0, tdup, 2, true, NULL};
    KVR_CHECK(kvr_batch_run(f.r, &s, 1, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "twice") != NULL);
    kvr_kv_layer_tables(L, tb + 3, 2, dup, tdup);
    dup[2 + 1] = dup[0]; /* layer 1's second block is layer 0's first */
    KVR_CHECK(kvr_batch_run(f.r, &s, 1, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "twice") != NULL);
    bool off[MAXL] = {false, true}; /* an offloaded layer and no host tier */
    s = (kvr_batch_seq){ids, 6, 0, blocks, 5, true, off};
    KVR_CHECK(kvr_batch_run(f.r, &s, 1, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "no host tier") != NULL);
    ids[1] = f.V;
    s = (kvr_batch_seq){ids, 2, 0, blocks, 1, true, NULL};
    KVR_CHECK(kvr_batch_run(f.r, &s, 1, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "vocabulary") != NULL);
    KVR_CHECK(kvr_batch_run(f.r, &s, 0, &e) == KVR_ERR_INVALID_ARG);
    kvr_kv_pool *p = NULL;
    KVR_CHECK(kvr_kv_pool_create(f.w, 0, 16, &p, &e) == KVR_ERR_INVALID_ARG && p == NULL);
    const kvr_model_config *cfg = kvr_model_get_config(f.m);
    KVR_CHECK_EQ_INT((int)kvr_kv_block_bytes(cfg, 16),
                     cfg->n_layers * 2 * cfg->n_kv_heads * cfg->head_dim * 4 * 16);
    KVR_CHECK_EQ_INT((int)kvr_kv_layer_block_bytes(cfg, 16),
                     2 * cfg->n_kv_heads * cfg->head_dim * 4 * 16);
    KVR_CHECK_EQ_INT((int)kvr_kv_pool_layer_blocks(f.pool), 8 * L);
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
    const int32_t L = kvr_model_get_config(f.m)->n_layers;
    KVR_CHECK(L <= MAXL);
    int32_t *ids[NS], perm[40], lids[NS][4 * MAXL];
    const int32_t *tabs[NS][MAXL];
    shuffle(perm, 40, 5);
    kvr_batch_seq s[NS];
    for (int i = 0; i < NS; i++) {
        ids[i] = make_ids(14 + i, f.V, 700 + (uint64_t)i);
        kvr_kv_layer_tables(L, perm + 4 * i, 4, lids[i], tabs[i]);
        s[i] = (kvr_batch_seq){ids[i], 13 + i, 0, tabs[i], 4, false, NULL};
    }
    KVR_CHECK_OK(kvr_batch_run(f.r, s, NS, &e), &e); /* the prompts, no logits */
    for (int i = 0; i < NS; i++)
        s[i] = (kvr_batch_seq){ids[i] + 13 + i, 1, 13 + i, tabs[i], 4, true, NULL};
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

// ----------------------------------------------------------------------------
// the host tier (LayerKV): offloaded layers give the all-resident logits, bit for bit

/* LayerKV's spread (kvr_layerkv_resident's rule): layer l of L is resident with r resident iff
 * floor((l + 1) r / L) > floor(l r / L) -- with r = L / 2, the odd layers */
static bool resident_of(int32_t L, int32_t r, int32_t l) {
    return (int64_t)(l + 1) * r / L > (int64_t)l * r / L;
}

/* a sequence's layer tables: nb blocks per layer, resident layers from the pool's ids
 * *dev.., offloaded ones from the host tier's *host.. */
typedef struct lseq {
    int32_t ids[MAXL * 16];
    const int32_t *tabs[MAXL];
    bool off[MAXL];
} lseq;

static void lseq_make(lseq *q, int32_t L, int64_t nb, int32_t r, int32_t *dev, int32_t *host) {
    for (int32_t l = 0; l < L; l++) {
        q->off[l] = !resident_of(L, r, l);
        for (int64_t b = 0; b < nb; b++) q->ids[l * nb + b] = q->off[l] ? (*host)++ : (*dev)++;
        q->tabs[l] = q->ids + l * nb;
    }
}

/* swap reload: the offloaded layers' host blocks copied into fresh pool blocks */
static void lseq_swap_in(kvr_kv_pool *p, lseq *q, int32_t L, int64_t nb, int32_t *dev) {
    kvr_kv_copy c[MAXL * 16];
    int64_t n = 0;
    for (int32_t l = 0; l < L; l++) {
        if (!q->off[l]) continue;
        for (int64_t b = 0; b < nb; b++) {
            c[n++] = (kvr_kv_copy){*dev, q->ids[l * nb + b], false};
            q->ids[l * nb + b] = (*dev)++;
        }
        q->off[l] = false;
    }
    kvr_error e;
    KVR_CHECK_OK(kvr_kv_pool_copy(p, c, n, &e), &e);
}

enum { HP = 37, HN = 6, HBT = 8, HNB = 6 }; /* prompt, decode steps, block tokens, blocks */

/* two sequences, A (half its layers offloaded) and B (none, or all offloaded), prefilled
 * together and decoded HN steps: their logits at every step must equal an all-resident run of
 * the same batch (same rows, so the same GEMMs) bit for bit, with swap and with stream reload,
 * and with staging of one sequence's layer (no prefetch, one group at a time) or of plenty */
static void test_host_tier_offload(void) {
    const int64_t stagings[2] = {HNB, 64};
    for (int k = 0; k < 4; k++) {
        const bool stream = k % 2 == 1;
        const int64_t S = stagings[k / 2];
        fixture f;
        if (!fixture_open(&f, "tiny", 64, HBT, 2 * HP)) return;
        kvr_error e;
        const int32_t L = kvr_model_get_config(f.m)->n_layers;
        KVR_CHECK(L >= 2 && L <= MAXL);
        KVR_CHECK_OK(kvr_kv_pool_add_host(f.pool, 32 * L, S, &e), &e);
        KVR_CHECK(kvr_kv_pool_add_host(f.pool, 8, 8, &e) == KVR_ERR_INVALID_ARG);
        int32_t *ids[2] = {make_ids(HP + HN, f.V, 900), make_ids(HP + HN, f.V, 901)};
        /* the all-resident reference, each step's logits kept */
        float *want = malloc((size_t)2 * (HN + 1) * (size_t)f.V * sizeof *want);
        int32_t dev = 0, host = 0;
        lseq ref[2], q[2];
        for (int i = 0; i < 2; i++) lseq_make(&ref[i], L, HNB, L, &dev, &host);
        for (int i = 0; i < 2; i++) /* B: all offloaded with little staging, else resident */
            lseq_make(&q[i], L, HNB, i == 0 ? L / 2 : (k < 2 ? 0 : L), &dev, &host);
        KVR_CHECK(q[0].off[0] && !q[0].off[L - 1]);
        lseq *runs[2] = {ref, q};
        for (int run = 0; run < 2; run++) {
            lseq *x = runs[run];
            for (int t = 0; t <= HN; t++) {
                if (run == 1 && t == 1 && !stream)
                    for (int i = 0; i < 2; i++) lseq_swap_in(f.pool, &x[i], L, HNB, &dev);
                kvr_batch_seq s[2];
                for (int i = 0; i < 2; i++)
                    s[i] = (kvr_batch_seq){t == 0 ? ids[i] : ids[i] + HP + t - 1,
                                           t == 0 ? HP : 1, t == 0 ? 0 : HP + t - 1, x[i].tabs,
                                           HNB, true, x[i].off};
                KVR_CHECK_OK(kvr_batch_run(f.r, s, 2, &e), &e);
                for (int i = 0; i < 2; i++) {
                    const float *lg = kvr_batch_logits(f.r, i);
                    float *w = want + ((size_t)t * 2 + (size_t)i) * (size_t)f.V;
                    if (!lg) {
                        KVR_CHECK(lg != NULL);
                        continue;
                    }
                    if (run == 0) {
                        memcpy(w, lg, (size_t)f.V * sizeof *w);
                        if (t < HN) ids[i][HP + t] = kvr_argmax(lg, f.V); /* greedy */
                    } else if (memcmp(w, lg, (size_t)f.V * sizeof *w) != 0) {
                        printf("  %s, staging %lld: sequence %d step %d differs (max rel %.2e)\n",
                               stream ? "stream" : "swap", (long long)S, i, t,
                               rel_diff(lg, w, f.V));
                        KVR_CHECK(!"offloaded logits equal the resident ones");
                    }
                }
            }
        }
        kvr_kv_pool_stats st = kvr_kv_pool_get_stats(f.pool);
        printf("  %s reload, staging %lld: %lld blocks out, %lld in, %lld staging waits\n",
               stream ? "stream" : "swap", (long long)S, (long long)st.copies_out,
               (long long)st.copies_in, (long long)st.stage_waits);
        KVR_CHECK(st.copies_out > 0 && st.copies_in > 0);
        free(want), free(ids[0]), free(ids[1]);
        fixture_close(&f);
    }
}

typedef struct run_arg {
    kvr_batch_runner *r;
    kvr_batch_seq s;
    kvr_status st;
    int done; /* __atomic */
} run_arg;

static void *run_thread(void *a) {
    run_arg *x = a;
    kvr_error e;
    x->st = kvr_batch_run(x->r, &x->s, 1, &e);
    __atomic_store_n(&x->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Staging of exactly one layer of the prompt and the copier held: the prefill's second
 * offloaded layer must wait for the first one's copy out (the run blocks, nothing has been
 * copied) and, once the copier goes on, the host tier holds each layer's own K/V -- decode
 * after a swap-in gives the all-resident logits. Reusing the staging before its copy completed
 * would put the later layer's K/V into the earlier layer's host blocks. */
static void test_host_staging_fence(void) {
    fixture f;
    if (!fixture_open(&f, "tiny", 32, HBT, HP)) return;
    kvr_error e;
    const int32_t L = kvr_model_get_config(f.m)->n_layers;
    const int64_t nb = KVR_CEIL_DIV(HP, HBT); /* the prompt's blocks: all the staging */
    KVR_CHECK_OK(kvr_kv_pool_add_host(f.pool, 8 * L, nb, &e), &e);
    int32_t *ids = make_ids(HP + 1, f.V, 77);
    int32_t dev = 0, host = 0;
    lseq ref, q;
    lseq_make(&ref, L, HNB, L, &dev, &host);
    lseq_make(&q, L, HNB, L / 2, &dev, &host);
    kvr_batch_seq s = {ids, HP, 0, ref.tabs, HNB, true, NULL};
    KVR_CHECK_OK(kvr_batch_run(f.r, &s, 1, &e), &e);
    ids[HP] = kvr_argmax(kvr_batch_logits(f.r, 0), f.V);
    s = (kvr_batch_seq){ids + HP, 1, HP, ref.tabs, HNB, true, NULL};
    KVR_CHECK_OK(kvr_batch_run(f.r, &s, 1, &e), &e);
    float *want = malloc((size_t)f.V * sizeof *want);
    memcpy(want, kvr_batch_logits(f.r, 0), (size_t)f.V * sizeof *want);

    kvr_kv_pool_copier_hold(f.pool, true);
    run_arg x = {f.r, {ids, HP, 0, q.tabs, HNB, false, q.off}, KVR_OK, 0};
    pthread_t th;
    KVR_CHECK(pthread_create(&th, NULL, run_thread, &x) == 0);
    int waited = 0;
    for (int i = 0; i < 20000 && kvr_kv_pool_get_stats(f.pool).stage_waits == 0; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        waited = i;
    }
    kvr_kv_pool_stats st = kvr_kv_pool_get_stats(f.pool);
    printf("  copier held: the prefill waits for the staging after %d ms; %lld blocks out\n",
           waited, (long long)st.copies_out);
    KVR_CHECK_EQ_INT((int)st.stage_waits, 1);
    KVR_CHECK_EQ_INT((int)st.copies_out, 0);
    KVR_CHECK(__atomic_load_n(&x.done, __ATOMIC_ACQUIRE) == 0);
    kvr_kv_pool_copier_hold(f.pool, false);
    pthread_join(th, NULL);
    KVR_CHECK_OK(x.st, &e);
    lseq_swap_in(f.pool, &q, L, HNB, &dev); /* its copies come after the ones out: all done */
    st = kvr_kv_pool_get_stats(f.pool);
    KVR_CHECK(st.stage_waits == 1 && st.copies_out == (L - L / 2) * nb);
    s = (kvr_batch_seq){ids + HP, 1, HP, q.tabs, HNB, true, NULL};
    KVR_CHECK_OK(kvr_batch_run(f.r, &s, 1, &e), &e);
    const float *got = kvr_batch_logits(f.r, 0);
    KVR_CHECK(got && memcmp(got, want, (size_t)f.V * sizeof *want) == 0);
    /* a layer longer than the staging is refused by name */
    int32_t dev2 = dev, host2 = host;
    lseq big;
    lseq_make(&big, L, HNB, 0, &dev2, &host2);
    s = (kvr_batch_seq){ids, 1, HP + 3, big.tabs, HNB, true, big.off}; /* 41 tokens: 6 blocks */
    KVR_CHECK(kvr_batch_run(f.r, &s, 1, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "staging") != NULL);
    free(want), free(ids);
    fixture_close(&f);
}

static const kvr_test_case cases[] = {
    {"batch_matches_single", test_batch_matches_single},
    {"chunked_prefill", test_chunked_prefill},
    {"batched_greedy_decode", test_batched_greedy_decode},
    {"batch_errors", test_batch_errors},
    {"real_model", test_real_model},
    {"host_tier_offload", test_host_tier_offload},
    {"host_staging_fence", test_host_staging_fence},
};
KVR_TEST_MAIN(cases)
