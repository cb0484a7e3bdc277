/* test_model.c -- config validation, presets and load dispatch errors. */
#include "kvr_test.h"
#include "runtime_internal.h"

static void test_presets_load(void) {
    kvr_error e;
    kvr_model_load_params lp = kvr_model_load_params_default();
    for (const char *const *n = kvr_model_preset_names(); *n; n++) {
        if (strncmp(*n, "tiny", 4) != 0) continue; /* 7B-class embeddings take GiBs; see cli tests */
        lp.n_layers_override = 1;
        kvr_model *m = NULL;
        KVR_CHECK_OK(kvr_model_load(*n, &lp, &m, &e), &e);
        if (!m) continue;
        const kvr_model_config *c = kvr_model_get_config(m);
        KVR_CHECK_EQ_INT(c->n_layers, 1);
        KVR_CHECK_EQ_INT(c->n_heads % c->n_kv_heads, 0);
        kvr_model_destroy(m);
    }
}

static void test_preset_seed_determinism(void) {
    kvr_error e;
    kvr_model_load_params lp = kvr_model_load_params_default();
    kvr_model *a, *b, *c;
    KVR_CHECK_OK(kvr_model_create_preset("tiny", &lp, &a, &e), &e);
    KVR_CHECK_OK(kvr_model_create_preset("tiny", &lp, &b, &e), &e);
    lp.seed = 99;
    KVR_CHECK_OK(kvr_model_create_preset("tiny", &lp, &c, &e), &e);
    KVR_CHECK(memcmp(a->arena, b->arena, a->arena_bytes) == 0);
    KVR_CHECK(memcmp(a->arena, c->arena, a->arena_bytes) != 0);
    kvr_model_destroy(a);
    kvr_model_destroy(b);
    kvr_model_destroy(c);
}

static void test_config_validate_rejects(void) {
    kvr_error e;
    kvr_model_config c = {"llama", "x", 2, 64, 4, 2, 16, 128, 100, 0, 10000.f, 1e-5f, true};
    KVR_CHECK_OK(kvr_model_config_validate(&c, &e), &e);
    kvr_model_config bad = c;
    bad.n_kv_heads = 3;
    KVR_CHECK(kvr_model_config_validate(&bad, &e) == KVR_ERR_FORMAT);
    KVR_CHECK(strstr(e.msg, "n_kv_heads") != NULL);
    bad = c;
    bad.d_model = 1 << 30;
    KVR_CHECK(kvr_model_config_validate(&bad, &e) == KVR_ERR_FORMAT);
    KVR_CHECK(strstr(e.msg, "d_model") != NULL);
    bad = c;
    bad.head_dim = 15;
    KVR_CHECK(kvr_model_config_validate(&bad, &e) == KVR_ERR_FORMAT);
    bad = c;
    bad.rope_theta = -1;
    KVR_CHECK(kvr_model_config_validate(&bad, &e) == KVR_ERR_FORMAT);
}

static void test_load_errors(void) {
    kvr_error e;
    kvr_model *m = (kvr_model *)0x1;
    KVR_CHECK(kvr_model_load("no-such-model-xyz", NULL, &m, &e) == KVR_ERR_NOT_FOUND);
    KVR_CHECK(m == NULL);
    KVR_CHECK(strstr(e.msg, "no-such-model-xyz") != NULL);
    KVR_CHECK(kvr_model_load("", NULL, &m, &e) == KVR_ERR_INVALID_ARG);
    kvr_model_load_params lp = kvr_model_load_params_default();
    lp.n_layers_override = -2;
    KVR_CHECK(kvr_model_load("tiny", &lp, &m, &e) == KVR_ERR_INVALID_ARG);
}

/* kvr_model_view_layers: the first n layers of the same weights; destroying the view leaves the
 * model intact (ASan would see a double free); bad counts refused. */
static void test_view_layers(void) {
    kvr_error e;
    kvr_model_load_params lp = kvr_model_load_params_default();
    kvr_model *m = NULL, *v = NULL;
    KVR_CHECK_OK(kvr_model_create_preset("tiny", &lp, &m, &e), &e);
    if (!m) return;
    KVR_CHECK_OK(kvr_model_view_layers(m, 2, &v, &e), &e);
    if (v) {
        KVR_CHECK_EQ_INT(kvr_model_get_config(v)->n_layers, 2);
        KVR_CHECK_EQ_INT(kvr_model_get_config(m)->n_layers, 4);
        KVR_CHECK(v->layers == m->layers && v->tok_embd == m->tok_embd);
        KVR_CHECK_EQ_INT(kvr_model_get_config(v)->d_model, kvr_model_get_config(m)->d_model);
        kvr_model_destroy(v);
    }
    KVR_CHECK_EQ_INT(kvr_model_get_config(m)->n_layers, 4); /* still usable */
    v = (kvr_model *)0x1;
    KVR_CHECK(kvr_model_view_layers(m, 0, &v, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(kvr_model_view_layers(m, 5, &v, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "[1, 4]") != NULL);
    kvr_model_destroy(m);
}

static const kvr_test_case cases[] = {
    {"presets_load", test_presets_load},
    {"preset_seed_determinism", test_preset_seed_determinism},
    {"config_validate_rejects", test_config_validate_rejects},
    {"load_errors", test_load_errors},
    {"view_layers", test_view_layers},
};
KVR_TEST_MAIN(cases)
