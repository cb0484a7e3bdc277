/* test_loaders.c -- GGUF and Hugging Face safetensors loaders.
 *
 * The test writes its own small GGUF and safetensors files (a tiny Llama shape with known weights,
 * every tensor type) into a mkdtemp directory, loads them and checks that every tensor lands where
 * runtime_internal.h says (fused wqkv and w_gate_up rows, the HF q/k RoPE permutation), that the
 * dequantizers give hand-computed answers, and that malformed files (every truncation point, bad
 * magic, offsets past EOF, absurd dims, missing tensors, unsupported types, bad config.json ...)
 * fail with a message that names the file and the cause. The last case loads the real
 * SmolLM2-135M-Instruct Q4_1 GGUF when it is present and compares values with the python `gguf`
 * package (reference numbers from tools/gen_test_models.py smollm2-ref).
 */
#include "kvr_test.h"
#include "quant_internal.h"
#include "runtime_internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

// ----------------------------------------------------------------------------
// temp dir and byte buffers

static char tmp_root[256];

static const char *tmp_dir(void) {
    if (!tmp_root[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(tmp_root, sizeof tmp_root, "%s/kvr_test_loaders_XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmp_root)) {
            perror("mkdtemp");
            abort();
        }
    }
    return tmp_root;
}

static void rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
            rm_rf(sub);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void tmp_path(char *buf, size_t len, const char *name) {
    snprintf(buf, len, "%s/%s", tmp_dir(), name);
}

typedef struct tb {
    uint8_t *p;
    size_t n, cap;
} tb;

static void tb_put(tb *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) abort();
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void tb_u8(tb *b, uint8_t v) { tb_put(b, &v, 1); }
static void tb_u16(tb *b, uint16_t v) { uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)}; tb_put(b, x, 2); }
static void tb_u32(tb *b, uint32_t v) { for (int i = 0; i < 4; i++) tb_u8(b, (uint8_t)(v >> 8 * i)); }
static void tb_u64(tb *b, uint64_t v) { for (int i = 0; i < 8; i++) tb_u8(b, (uint8_t)(v >> 8 * i)); }
static void tb_f32(tb *b, float f) { uint32_t u; memcpy(&u, &f, 4); tb_u32(b, u); }
static void tb_str(tb *b, const char *s) { tb_u64(b, strlen(s)); tb_put(b, s, strlen(s)); }
static void tb_pad(tb *b, size_t align) { while (b->n % align) tb_u8(b, 0); }
static void tb_free(tb *b) { free(b->p); memset(b, 0, sizeof *b); }
/* noinline: keeps GCC's -Warray-bounds from guessing at the buffer behind p */
__attribute__((noinline)) static void patch_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i); }
__attribute__((noinline)) static void patch_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> 8 * i); }

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n)) {
        perror(path);
        abort();
    }
    fclose(f);
}

// ----------------------------------------------------------------------------
// exact fp16 / bf16 encoders (the test only encodes values they represent exactly)

static uint16_t half_exact(float x) {
    if (x == 0) return signbit(x) ? 0x8000 : 0;
    uint32_t u;
    memcpy(&u, &x, 4);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const int e = (int)((u >> 23) & 0xff) - 127;
    KVR_ASSERT(e >= -14 && e <= 15 && (u & 0x1fffu) == 0);
    return (uint16_t)(sign | (uint32_t)(e + 15) << 10 | ((u >> 13) & 0x3ffu));
}
static uint16_t bf16_exact(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    KVR_ASSERT((u & 0xffffu) == 0);
    return (uint16_t)(u >> 16);
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int rng_int(uint64_t *s, int lo, int hi) { /* [lo, hi] */
    return lo + (int)(rng_next(s) % (uint64_t)(hi - lo + 1));
}

enum {
    T_F32 = QUANT_F32, T_F16 = QUANT_F16, T_Q4_0 = QUANT_Q4_0, T_Q4_1 = QUANT_Q4_1,
    T_Q5_0 = QUANT_Q5_0, T_Q5_1 = QUANT_Q5_1, T_Q8_0 = QUANT_Q8_0, T_Q2_K = QUANT_Q2_K,
    T_Q3_K = QUANT_Q3_K, T_Q4_K = QUANT_Q4_K, T_Q5_K = QUANT_Q5_K, T_Q6_K = QUANT_Q6_K,
    T_Q8_K = QUANT_Q8_K, T_IQ4_NL = QUANT_IQ4_NL, T_IQ4_XS = QUANT_IQ4_XS, T_BF16 = QUANT_BF16
};

/* ggml's IQ4_NL grid (a constant of the format, copied from the spec) */
static const int8_t iq4nl_grid[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                      1,    13,   25,  38,  53,  69,  89,  113};

/* Byte offsets of the fp16 scale fields in the 256-element types whose random blocks gen_tensor
 * writes (a random fp16 there could be inf or NaN). */
static void k_half_fields(int type, int *off, int *n) {
    *n = 1;
    switch (type) {
    case T_Q2_K: off[0] = 80, off[1] = 82, *n = 2; break;
    case T_Q3_K: off[0] = 108; break;
    case T_Q4_K: case T_Q5_K: off[0] = 0, off[1] = 2, *n = 2; break;
    case T_Q6_K: off[0] = 208; break;
    case T_IQ4_XS: off[0] = 0; break;
    default: KVR_ABORT("k_half_fields: type %d", type);
    }
}

/* Random values of the given type, exactly representable, as reference floats and GGUF bytes. */
static void gen_tensor(int type, int64_t n, uint64_t *s, float *ref, tb *out) {
    switch (type) {
    case T_F32:
        for (int64_t i = 0; i < n; i++) tb_f32(out, ref[i] = (float)rng_int(s, -1000, 1000) / 256.0f);
        break;
    case T_F16:
        for (int64_t i = 0; i < n; i++) tb_u16(out, half_exact(ref[i] = (float)rng_int(s, -2047, 2047) / 1024.0f));
        break;
    case T_BF16:
        for (int64_t i = 0; i < n; i++) tb_u16(out, bf16_exact(ref[i] = (float)rng_int(s, -255, 255) / 64.0f));
        break;
    case T_Q8_0:
        for (int64_t b = 0; b < n / 32; b++) {
            const float d = (float)rng_int(s, 1, 64) / 1024.0f;
            tb_u16(out, half_exact(d));
            for (int j = 0; j < 32; j++) {
                int q = rng_int(s, -127, 127);
                tb_u8(out, (uint8_t)(int8_t)q);
                ref[32 * b + j] = (float)q * d;
            }
        }
        break;
    case T_Q4_0:
    case T_Q4_1:
        for (int64_t b = 0; b < n / 32; b++) {
            const float d = (float)rng_int(s, 1, 64) / 1024.0f * (rng_int(s, 0, 1) ? 1.0f : -1.0f);
            const float m = type == T_Q4_1 ? (float)rng_int(s, -128, 127) / 256.0f : 0.0f;
            tb_u16(out, half_exact(d));
            if (type == T_Q4_1) tb_u16(out, half_exact(m));
            int q[32];
            for (int j = 0; j < 32; j++) q[j] = rng_int(s, 0, 15);
            for (int j = 0; j < 16; j++) tb_u8(out, (uint8_t)(q[j] | q[j + 16] << 4));
            for (int j = 0; j < 32; j++)
                ref[32 * b + j] = type == T_Q4_0 ? (float)(q[j] - 8) * d : (float)q[j] * d + m;
        }
        break;
    case T_Q5_0:
    case T_Q5_1:
        for (int64_t b = 0; b < n / 32; b++) {
            const float d = (float)rng_int(s, 1, 64) / 1024.0f * (rng_int(s, 0, 1) ? 1.0f : -1.0f);
            const float m = type == T_Q5_1 ? (float)rng_int(s, -128, 127) / 256.0f : 0.0f;
            tb_u16(out, half_exact(d));
            if (type == T_Q5_1) tb_u16(out, half_exact(m));
            int q[32];
            uint32_t qh = 0;
            for (int j = 0; j < 32; j++) q[j] = rng_int(s, 0, 31), qh |= (uint32_t)(q[j] >> 4) << j;
            tb_u32(out, qh);
            for (int j = 0; j < 16; j++) tb_u8(out, (uint8_t)((q[j] & 15) | (q[j + 16] & 15) << 4));
            for (int j = 0; j < 32; j++)
                ref[32 * b + j] = type == T_Q5_0 ? (float)(q[j] - 16) * d : (float)q[j] * d + m;
        }
        break;
    case T_IQ4_NL:
        for (int64_t b = 0; b < n / 32; b++) {
            const float d = (float)rng_int(s, 1, 64) / 4096.0f;
            tb_u16(out, half_exact(d));
            int q[32];
            for (int j = 0; j < 32; j++) q[j] = rng_int(s, 0, 15);
            for (int j = 0; j < 16; j++) tb_u8(out, (uint8_t)(q[j] | q[j + 16] << 4));
            for (int j = 0; j < 32; j++) ref[32 * b + j] = d * (float)iq4nl_grid[q[j]];
        }
        break;
    case T_Q8_K:
        for (int64_t b = 0; b < n / 256; b++) {
            const float d = (float)rng_int(s, 1, 255) / 65536.0f;
            tb_f32(out, d);
            int16_t sums[16] = {0};
            for (int j = 0; j < 256; j++) {
                const int q = rng_int(s, -127, 127);
                tb_u8(out, (uint8_t)(int8_t)q);
                sums[j / 16] = (int16_t)(sums[j / 16] + q);
                ref[256 * b + j] = d * (float)q;
            }
            for (int j = 0; j < 16; j++) tb_u16(out, (uint16_t)sums[j]);
        }
        break;
    case T_Q2_K:
    case T_Q3_K:
    case T_Q4_K:
    case T_Q5_K:
    case T_Q6_K:
    case T_IQ4_XS: {
        /* random bytes with finite fp16 scales; the reference values come from the dequantizer,
         * which test_dequant_k_known and tests/ref/reference_quants.py check independently:
         * these tensors test where the loader puts the values, not the values themselves */
        const quant_type_traits *t = quant_type_get(type);
        int off[2], n_off;
        k_half_fields(type, off, &n_off);
        const size_t at = out->n;
        for (int64_t b = 0; b < n / t->blck; b++) {
            uint8_t blk[256];
            for (int j = 0; j < t->bytes; j++) blk[j] = (uint8_t)rng_int(s, 0, 255);
            for (int k = 0; k < n_off; k++) {
                const uint16_t h = half_exact((float)rng_int(s, -64, 64) / 8192.0f);
                blk[off[k]] = (uint8_t)h, blk[off[k] + 1] = (uint8_t)(h >> 8);
            }
            tb_put(out, blk, (size_t)t->bytes);
        }
        kvr_error e;
        KVR_CHECK_OK(quant_dequant_row(type, out->p + at, ref, n, &e), &e);
        break;
    }
    default: KVR_ABORT("gen_tensor: type %d", type);
    }
}

// ----------------------------------------------------------------------------
// the reference model: a tiny Llama shape (GQA, 2 layers) with known weights in every type

#define T_L   2
#define T_D   32
#define T_NH  4
#define T_NKV 2
#define T_HS  8
#define T_FF  64
#define T_V   265 /* 256 byte tokens + 8 merges + 1 special */
#define T_NT  (3 + 9 * T_L)

typedef struct ref_tensor {
    char name[48];  /* GGUF name */
    int nd;
    int64_t ne[2];  /* GGUF order: ne0 = inputs, ne1 = rows */
    int type;
    float *ref;     /* (ne1, ne0) row-major, the runtime layout */
    tb q;           /* GGUF bytes */
} ref_tensor;

typedef struct ref_model {
    ref_tensor t[T_NT];
    int n;
    bool tied;
    int64_t D, FF; /* T_D, T_FF; the wide model: 256, 512 */
} ref_model;

static const char *const layer_names[9] = {"attn_norm", "attn_q",   "attn_k", "attn_v",  "attn_output",
                                           "ffn_norm",  "ffn_gate", "ffn_up", "ffn_down"};
static const int layer_types[2][9] = {
    {T_F32, T_Q4_0, T_Q4_1, T_BF16, T_F16, T_F32, T_Q5_0, T_Q8_0, T_F32},
    {T_F32, T_BF16, T_IQ4_NL, T_Q8_0, T_Q4_1, T_F32, T_Q4_0, T_Q5_1, T_Q4_0},
};
/* The wide model (D 256, FF 512) holds every 256-element type; attn_output's rows are
 * NH * HS = 32 long, so it takes a 32-element type. */
static const int layer_types_wide[2][9] = {
    {T_F32, T_Q2_K, T_Q3_K, T_Q4_K, T_Q5_0, T_F32, T_Q5_K, T_Q6_K, T_Q8_K},
    {T_F32, T_IQ4_XS, T_Q4_K, T_Q6_K, T_IQ4_NL, T_F32, T_Q3_K, T_Q2_K, T_IQ4_XS},
};

static void ref_add(ref_model *rm, const char *name, int nd, int64_t ne0, int64_t ne1, int type,
                    uint64_t *s) {
    ref_tensor *t = &rm->t[rm->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->nd = nd;
    t->ne[0] = ne0;
    t->ne[1] = nd == 2 ? ne1 : 1;
    t->type = type;
    t->ref = malloc((size_t)(t->ne[0] * t->ne[1]) * sizeof(float));
    memset(&t->q, 0, sizeof t->q);
    gen_tensor(type, t->ne[0] * t->ne[1], s, t->ref, &t->q);
}

static void ref_build_shaped(ref_model *rm, bool tied, uint64_t seed, int64_t D, int64_t FF,
                             const int types[2][9], int embd_type, int out_type) {
    memset(rm, 0, sizeof *rm);
    rm->tied = tied;
    rm->D = D, rm->FF = FF;
    uint64_t s = seed;
    ref_add(rm, "token_embd.weight", 2, D, T_V, embd_type, &s);
    ref_add(rm, "output_norm.weight", 1, D, 1, T_F32, &s);
    if (!tied) ref_add(rm, "output.weight", 2, D, T_V, out_type, &s);
    const int64_t Q = T_NH * T_HS, KV = T_NKV * T_HS;
    const int64_t shapes[9][2] = {{D, 1}, {D, Q}, {D, KV}, {D, KV}, {Q, D},
                                  {D, 1}, {D, FF}, {D, FF}, {FF, D}};
    for (int l = 0; l < T_L; l++)
        for (int k = 0; k < 9; k++) {
            char name[48];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, layer_names[k]);
            ref_add(rm, name, shapes[k][1] == 1 ? 1 : 2, shapes[k][0], shapes[k][1], types[l][k], &s);
        }
}

static void ref_build(ref_model *rm, bool tied, uint64_t seed) {
    ref_build_shaped(rm, tied, seed, T_D, T_FF, layer_types, T_Q8_0, T_F16);
}

/* every 256-element type: token_embd Q4_K, output Q6_K, the layers as layer_types_wide */
static void ref_build_wide(ref_model *rm, uint64_t seed) {
    ref_build_shaped(rm, false, seed, 256, 512, layer_types_wide, T_Q4_K, T_Q6_K);
}

static void ref_free(ref_model *rm) {
    for (int i = 0; i < rm->n; i++) {
        free(rm->t[i].ref);
        tb_free(&rm->t[i].q);
    }
}

/* The slot of a GGUF tensor name, from the slot order documented in runtime_internal.h
 * (written independently of the loaders' own tables); -1 if none. */
static int name_slot(const kvr_model *m, const char *name) {
    if (strcmp(name, "token_embd.weight") == 0) return MODEL_SLOT_TOK_EMBD;
    if (strcmp(name, "output_norm.weight") == 0) return MODEL_SLOT_OUTPUT_NORM;
    if (strcmp(name, "output.weight") == 0) return MODEL_SLOT_OUTPUT;
    static const char *const k[9] = {"attn_norm", "attn_q",   "attn_k", "attn_v",  "attn_output",
                                     "ffn_norm",  "ffn_gate", "ffn_up", "ffn_down"};
    int l;
    char what[32];
    if (sscanf(name, "blk.%d.%31[a-z_]", &l, what) != 2 || l < 0 || l >= m->cfg.n_layers) return -1;
    for (int i = 0; i < 9; i++)
        if (!strcmp(what, k[i])) return MODEL_N_GLOBAL + l * MODEL_N_PER_LAYER + i;
    return -1;
}

/* A GGUF-named tensor of the model as fp32 (malloc'd), dequantized from its stored type. */
static float *model_dst(const kvr_model *m, const char *name) {
    const int s = name_slot(m, name);
    if (s < 0) return NULL;
    const model_tensor *t = model_slot_tensor(m, s);
    float *buf = malloc((size_t)(t->rows * t->cols) * sizeof(float));
    kvr_error e;
    if (buf && model_tensor_rows_f32(t, 0, t->rows, buf, 1, &e) != KVR_OK) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Sum |x| and sum x^2 over every tensor of the model, dequantized (the output once when tied). */
static void model_sums(const kvr_model *m, double *s1, double *s2, size_t *n_out) {
    float *all = NULL;
    size_t n = 0;
    kvr_error e;
    *s1 = *s2 = 0;
    KVR_CHECK_OK(model_dequant_all(m, &all, &n, &e), &e);
    for (size_t i = 0; i < n; i++) {
        const double v = all[i];
        *s1 += fabs(v);
        *s2 += v * v;
    }
    if (n_out) *n_out = n;
    free(all);
}

/* Every reference tensor equals the loaded one bit for bit, and together they cover the model.
 * stored: the loader keeps matrices in their stored type (GGUF; the HF path expands to F32). */
static void check_model_matches_as(const kvr_model *m, const ref_model *rm, bool stored) {
    const kvr_model_config *c = kvr_model_get_config(m);
    KVR_CHECK_EQ_INT(c->n_layers, T_L);
    KVR_CHECK_EQ_INT(c->d_model, rm->D);
    KVR_CHECK_EQ_INT(c->n_heads, T_NH);
    KVR_CHECK_EQ_INT(c->n_kv_heads, T_NKV);
    KVR_CHECK_EQ_INT(c->head_dim, T_HS);
    KVR_CHECK_EQ_INT(c->d_ff, rm->FF);
    KVR_CHECK_EQ_INT(c->vocab_size, T_V);
    KVR_CHECK_EQ_INT(c->tied_embeddings, rm->tied);
    if (rm->tied)
        KVR_CHECK(m->output == m->tok_embd &&
                  m->tensors[MODEL_SLOT_OUTPUT].data == m->tensors[MODEL_SLOT_TOK_EMBD].data);
    size_t covered = 0, stored_bytes = 0;
    for (int i = 0; i < rm->n; i++) {
        const ref_tensor *t = &rm->t[i];
        float *dst = model_dst(m, t->name);
        KVR_CHECK(dst != NULL);
        if (!dst) continue;
        const size_t n = (size_t)(t->ne[0] * t->ne[1]);
        /* matrices keep their stored type and bytes; norms (1-D) become F32 */
        const model_tensor *mt = model_slot_tensor(m, name_slot(m, t->name));
        if (!stored) {
            KVR_CHECK_EQ_INT(mt->type, T_F32);
        } else if (t->ne[1] > 1) {
            KVR_CHECK_EQ_INT(mt->type, t->type);
            KVR_CHECK(t->q.n == (size_t)mt->rows * mt->row_bytes &&
                      memcmp(mt->data, t->q.p, t->q.n) == 0);
        } else {
            KVR_CHECK_EQ_INT(mt->type, T_F32);
        }
        stored_bytes += (size_t)mt->rows * mt->row_bytes;
        size_t bad = 0, first = 0;
        for (size_t j = 0; j < n; j++)
            if (memcmp(&dst[j], &t->ref[j], sizeof(float)) != 0 && !bad++) first = j;
        if (bad)
            fprintf(stderr, "  %s: %zu of %zu values differ (first at %zu: %g vs %g)\n", t->name,
                    bad, n, first, (double)dst[first], (double)t->ref[first]);
        KVR_CHECK_EQ_INT(bad, 0);
        covered += n;
        free(dst);
    }
    size_t n_all = 0;
    double s1, s2;
    model_sums(m, &s1, &s2, &n_all);
    KVR_CHECK_EQ_INT(covered, n_all);
    /* the arena is the stored bytes plus at most 3 bytes of padding per tensor */
    KVR_CHECK(m->arena_bytes >= stored_bytes && m->arena_bytes <= stored_bytes + 3 * (size_t)rm->n);
}
static void check_model_matches(const kvr_model *m, const ref_model *rm) {
    check_model_matches_as(m, rm, true);
}

// ----------------------------------------------------------------------------
// GGUF writer

/* GPT-2 byte-level alphabet: byte b -> its printable code point, as UTF-8. */
static void byte_token(int b, char out[4]) {
    int cp;
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) {
        cp = b;
    } else {
        int n = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) n++;
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp, out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3F)), out[2] = 0;
    }
}

static const char *const tok_merges[8] = {"Ġ t", "h e", "Ġt he", "i n", "a n", "e r", "o n", "r e"};
static const char *const tok_merged[8] = {"Ġt", "he", "Ġthe", "in", "an", "er", "on", "re"};

typedef struct gguf_opts {
    uint32_t version;        /* 0 -> 3 */
    const char *arch;        /* NULL -> "llama" */
    const char *omit;        /* tensor left out of the file */
    const char *tok_model;   /* NULL -> no tokenizer metadata */
    bool tok_bad_types;      /* token_type array one entry short */
    bool tok_types_as_str;   /* tokens stored as an int32 array */
    bool nested_array;       /* an array of arrays of strings in the metadata */
    uint32_t alignment;      /* 0 -> key absent (32) */
    uint32_t alignment_key;  /* 0 -> same as alignment; written value when different */
    uint32_t block_count;    /* 0 -> T_L */
    bool extra_tensor;       /* a rope_freqs.weight tensor: factors 1 + i / 4 (Llama 3.1 scaling) */
    const char *rope_scaling_type; /* NULL -> key absent */
} gguf_opts;

typedef struct gguf_layout { /* where the writer put things, for patching */
    size_t info_ndims[T_NT + 1], info_type[T_NT + 1], info_offset[T_NT + 1];
    char names[T_NT + 1][48];
    int n;
    size_t data_start, data_end; /* data_end: last tensor byte; only padding follows */
} gguf_layout;

static int layout_find(const gguf_layout *lo, const char *name) {
    for (int i = 0; i < lo->n; i++)
        if (strcmp(lo->names[i], name) == 0) return i;
    KVR_ABORT("no tensor %s in layout", name);
}

static void gguf_build(const ref_model *rm, const gguf_opts *o, tb *out, gguf_layout *lo) {
    tb kv = {0};
    int n_kv = 0;
#define KV_STR(k, v) (tb_str(&kv, k), tb_u32(&kv, 8), tb_str(&kv, v), n_kv++)
#define KV_U32(k, v) (tb_str(&kv, k), tb_u32(&kv, 4), tb_u32(&kv, v), n_kv++)
#define KV_F32(k, v) (tb_str(&kv, k), tb_u32(&kv, 6), tb_f32(&kv, v), n_kv++)
    const char *arch = o->arch ? o->arch : "llama";
    char key[96];
#define AK(suffix) (snprintf(key, sizeof key, "%s.%s", arch, suffix), key)
    KV_STR("general.architecture", arch);
    KV_STR("general.name", "Test Tiny");
    KV_U32(AK("block_count"), o->block_count ? o->block_count : T_L);
    KV_U32(AK("context_length"), 1024);
    KV_U32(AK("embedding_length"), (uint32_t)rm->D);
    KV_U32(AK("feed_forward_length"), (uint32_t)rm->FF);
    KV_U32(AK("attention.head_count"), T_NH);
    KV_U32(AK("attention.head_count_kv"), T_NKV);
    KV_F32(AK("rope.freq_base"), 50000.0f);
    KV_F32(AK("attention.layer_norm_rms_epsilon"), 1e-6f);
    KV_U32(AK("rope.dimension_count"), T_HS);
    KV_U32(AK("attention.key_length"), T_HS); /* D / NH in the tiny model, not in the wide one */
    if (o->rope_scaling_type) KV_STR(AK("rope.scaling.type"), o->rope_scaling_type);
#undef AK
    /* a bool and an int64 that nobody reads */
    tb_str(&kv, "tokenizer.ggml.add_bos_token"), tb_u32(&kv, 7), tb_u8(&kv, 1), n_kv++;
    tb_str(&kv, "general.some_i64"), tb_u32(&kv, 11), tb_u64(&kv, (uint64_t)-5), n_kv++;
    if (o->alignment) KV_U32("general.alignment", o->alignment_key ? o->alignment_key : o->alignment);
    if (o->nested_array) {
        tb_str(&kv, "general.nested"), tb_u32(&kv, 9), tb_u32(&kv, 9), tb_u64(&kv, 2);
        for (int i = 0; i < 2; i++) {
            tb_u32(&kv, 8), tb_u64(&kv, 2);
            tb_str(&kv, "x"), tb_str(&kv, "yz");
        }
        n_kv++;
    }
    if (o->tok_model) {
        KV_STR("tokenizer.ggml.model", o->tok_model);
        KV_STR("tokenizer.ggml.pre", "default");
        tb_str(&kv, "tokenizer.ggml.tokens"), tb_u32(&kv, 9);
        if (o->tok_types_as_str) {
            tb_u32(&kv, 5), tb_u64(&kv, T_V);
            for (int i = 0; i < T_V; i++) tb_u32(&kv, (uint32_t)i);
        } else {
            tb_u32(&kv, 8), tb_u64(&kv, T_V);
            for (int b = 0; b < 256; b++) {
                char s[4];
                byte_token(b, s);
                tb_str(&kv, s);
            }
            for (int i = 0; i < 8; i++) tb_str(&kv, tok_merged[i]);
            tb_str(&kv, "<|endoftext|>");
        }
        n_kv++;
        const int n_types = o->tok_bad_types ? T_V - 1 : T_V;
        tb_str(&kv, "tokenizer.ggml.token_type"), tb_u32(&kv, 9), tb_u32(&kv, 5), tb_u64(&kv, (uint64_t)n_types);
        for (int i = 0; i < n_types; i++) tb_u32(&kv, i == T_V - 1 ? 3 : 1);
        n_kv++;
        tb_str(&kv, "tokenizer.ggml.merges"), tb_u32(&kv, 9), tb_u32(&kv, 8), tb_u64(&kv, 8);
        for (int i = 0; i < 8; i++) tb_str(&kv, tok_merges[i]);
        n_kv++;
        KV_U32("tokenizer.ggml.bos_token_id", T_V - 1);
        KV_U32("tokenizer.ggml.eos_token_id", T_V - 1);
    }
#undef KV_STR
#undef KV_U32
#undef KV_F32
    const size_t align = o->alignment ? o->alignment : 32;
    /* tensors in the file: the reference ones (minus omit) plus the optional unused one */
    const ref_tensor *list[T_NT + 1];
    int n = 0;
    for (int i = 0; i < rm->n; i++)
        if (!o->omit || strcmp(rm->t[i].name, o->omit) != 0) list[n++] = &rm->t[i];
    static ref_tensor extra;
    if (o->extra_tensor) {
        if (!extra.ref) {
            uint64_t s = 7;
            snprintf(extra.name, sizeof extra.name, "rope_freqs.weight");
            extra.nd = 1, extra.ne[0] = T_HS / 2, extra.ne[1] = 1, extra.type = T_F32;
            extra.ref = malloc(T_HS / 2 * sizeof(float));
            (void)s;
            for (int i = 0; i < T_HS / 2; i++) tb_f32(&extra.q, extra.ref[i] = 1.0f + (float)i / 4);
        }
        list[n++] = &extra;
    }
    memset(out, 0, sizeof *out);
    tb_put(out, "GGUF", 4);
    tb_u32(out, o->version ? o->version : 3);
    tb_u64(out, (uint64_t)n);
    tb_u64(out, (uint64_t)n_kv);
    tb_put(out, kv.p, kv.n);
    tb_free(&kv);
    /* write tensors in reverse order so file order differs from slot order */
    uint64_t off = 0;
    uint64_t offs[T_NT + 1];
    for (int i = n - 1; i >= 0; i--) {
        offs[i] = off;
        off += list[i]->q.n;
        off = (off + align - 1) / align * align;
    }
    lo->n = n;
    for (int i = 0; i < n; i++) {
        snprintf(lo->names[i], sizeof lo->names[i], "%s", list[i]->name);
        tb_str(out, list[i]->name);
        lo->info_ndims[i] = out->n;
        tb_u32(out, (uint32_t)list[i]->nd);
        for (int d = 0; d < list[i]->nd; d++) tb_u64(out, (uint64_t)list[i]->ne[d]);
        lo->info_type[i] = out->n;
        tb_u32(out, (uint32_t)list[i]->type);
        lo->info_offset[i] = out->n;
        tb_u64(out, offs[i]);
    }
    tb_pad(out, align);
    lo->data_start = out->n;
    for (int i = n - 1; i >= 0; i--) {
        KVR_ASSERT(out->n - lo->data_start == offs[i]);
        tb_put(out, list[i]->q.p, list[i]->q.n);
        lo->data_end = out->n;
        tb_pad(out, align);
    }
}

/* Build, write to tmp/name, return the buffer too (caller frees). */
static void gguf_write(const ref_model *rm, const gguf_opts *o, const char *name, char *path,
                       size_t plen, tb *out, gguf_layout *lo) {
    gguf_layout lo_local;
    tb local = {0};
    gguf_build(rm, o, out ? out : &local, lo ? lo : &lo_local);
    tmp_path(path, plen, name);
    write_file(path, (out ? out : &local)->p, (out ? out : &local)->n);
    tb_free(&local);
}

static kvr_status load_gguf(const char *path, bool tok, kvr_model **m, kvr_error *e) {
    kvr_model_load_params lp = kvr_model_load_params_default();
    lp.load_tokenizer = tok;
    return kvr_model_load_gguf(path, &lp, m, e);
}

/* Load a patched copy of buf; expect status `want` and every needle in the message. */
static void expect_gguf_error(const tb *buf, const char *name, kvr_status want, const char *n1,
                              const char *n2) {
    char path[512];
    tmp_path(path, sizeof path, name);
    write_file(path, buf->p, buf->n);
    kvr_model *m = (kvr_model *)0x1;
    kvr_error e = {0};
    kvr_status st = load_gguf(path, true, &m, &e);
    KVR_CHECK_EQ_INT(st, want);
    KVR_CHECK(m == NULL);
    KVR_CHECK(strstr(e.msg, name) != NULL);
    if (n1) KVR_CHECK(strstr(e.msg, n1) != NULL);
    if (n2) KVR_CHECK(strstr(e.msg, n2) != NULL);
    if (st != want || (n1 && !strstr(e.msg, n1)) || (n2 && !strstr(e.msg, n2)) ||
        getenv("KVR_TEST_VERBOSE"))
        fprintf(stderr, "  %s -> %s: %s\n", name, kvr_status_str(st), e.msg);
    if (st == KVR_OK) kvr_model_destroy(m);
}

// ----------------------------------------------------------------------------
// dequantization known answers (hand-computed blocks)

static void test_dequant_f16_bf16(void) {
    kvr_error e;
    const uint16_t h[] = {0x3c00, 0xc000, 0x7bff, 0x0400, 0x0001, 0x03ff, 0x8000, 0x7c00, 0xfc00, 0x3555};
    const float want[] = {1.0f, -2.0f, 65504.0f, 6.103515625e-05f, 5.9604644775390625e-08f,
                          6.09755516052246094e-05f, -0.0f, INFINITY, -INFINITY, 0.333251953125f};
    float out[10];
    KVR_CHECK_OK(quant_dequantize(T_F16, h, out, 10, &e), &e);
    for (int i = 0; i < 10; i++) KVR_CHECK(memcmp(&out[i], &want[i], 4) == 0 || out[i] == want[i]);
    KVR_CHECK(signbit(out[6]));
    const uint16_t nan16 = 0x7e00;
    KVR_CHECK_OK(quant_dequantize(T_F16, &nan16, out, 1, &e), &e);
    KVR_CHECK(isnan(out[0]));
    const uint16_t bf[] = {0x3f80, 0xc0a0, 0x4049, 0x0000};
    KVR_CHECK_OK(quant_dequantize(T_BF16, bf, out, 4, &e), &e);
    KVR_CHECK(out[0] == 1.0f && out[1] == -5.0f && out[2] == 3.140625f && out[3] == 0.0f);
    const float f[2] = {1.5f, -7.25f};
    KVR_CHECK_OK(quant_dequantize(T_F32, f, out, 2, &e), &e);
    KVR_CHECK(out[0] == 1.5f && out[1] == -7.25f);
}

static void test_dequant_q8_0(void) {
    kvr_error e;
    uint8_t blk[2 * 34];
    /* block 0: d = 0.5 (0x3800), q[j] = j - 16; block 1: d = -0.25 (0xb400), q = -128, 127, 0... */
    blk[0] = 0x00, blk[1] = 0x38;
    for (int j = 0; j < 32; j++) blk[2 + j] = (uint8_t)(int8_t)(j - 16);
    blk[34] = 0x00, blk[35] = 0xb4;
    memset(blk + 36, 0, 32);
    blk[36] = 0x80, blk[37] = 0x7f, blk[67] = 0xff;
    float out[64];
    KVR_CHECK_OK(quant_dequantize(T_Q8_0, blk, out, 64, &e), &e);
    KVR_CHECK(out[0] == -8.0f && out[16] == 0.0f && out[31] == 7.5f);
    KVR_CHECK(out[32] == 32.0f && out[33] == -31.75f && out[34] == 0.0f && out[63] == 0.25f);
}

static void test_dequant_q4_0(void) {
    kvr_error e;
    uint8_t blk[18] = {0x00, 0xbc}; /* d = -1.0 */
    blk[2] = 0x0f;                  /* x0 = (15-8)*-1 = -7, x16 = (0-8)*-1 = 8 */
    blk[3] = 0x80;                  /* x1 = (0-8)*-1 = 8,  x17 = (8-8)*-1 = 0 */
    for (int j = 2; j < 16; j++) blk[2 + j] = 0x9a; /* x = (10-8)*-1 = -2, x+16 = (9-8)*-1 = -1 */
    float out[32];
    KVR_CHECK_OK(quant_dequantize(T_Q4_0, blk, out, 32, &e), &e);
    KVR_CHECK(out[0] == -7.0f && out[16] == 8.0f && out[1] == 8.0f && out[17] == 0.0f);
    KVR_CHECK(out[2] == -2.0f && out[15] == -2.0f && out[18] == -1.0f && out[31] == -1.0f);
}

static void test_dequant_q4_1(void) {
    kvr_error e;
    uint8_t blk[20] = {0x00, 0x34, 0x00, 0xc0}; /* d = 0.25, m = -2.0 */
    blk[4] = 0x3a;                              /* x0 = 10*.25-2 = 0.5, x16 = 3*.25-2 = -1.25 */
    for (int j = 1; j < 16; j++) blk[4 + j] = 0xf0; /* x = -2, x+16 = 15*.25-2 = 1.75 */
    float out[32];
    KVR_CHECK_OK(quant_dequantize(T_Q4_1, blk, out, 32, &e), &e);
    KVR_CHECK(out[0] == 0.5f && out[16] == -1.25f && out[1] == -2.0f && out[17] == 1.75f);
    KVR_CHECK(out[15] == -2.0f && out[31] == 1.75f);
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }

/* The 32-element additions: hand-computed values at the bit-packing edges. */
static void test_dequant_q5_iq4nl(void) {
    kvr_error e;
    float out[32];
    uint8_t q50[22] = {0};
    put16(q50, 0x3800);       /* d = 0.5 */
    patch_u32(q50 + 2, 0x80000001u); /* fifth bits of elements 0 and 31 */
    q50[6 + 0] = 0x3f;        /* x0 = (15 + 16 - 16) * .5 = 7.5, x16 = (3 - 16) * .5 = -6.5 */
    q50[6 + 15] = 0xa0;       /* x15 = (0 - 16) * .5 = -8, x31 = (10 + 16 - 16) * .5 = 5 */
    KVR_CHECK_OK(quant_dequantize(T_Q5_0, q50, out, 32, &e), &e);
    KVR_CHECK(out[0] == 7.5f && out[16] == -6.5f && out[15] == -8.0f && out[31] == 5.0f);
    KVR_CHECK(out[1] == -8.0f && out[30] == -8.0f);
    uint8_t q51[24] = {0};
    put16(q51, 0x3400), put16(q51 + 2, 0xbc00); /* d = 0.25, m = -1 */
    patch_u32(q51 + 4, 0x00010002u);             /* fifth bits of elements 1 and 16 */
    q51[8 + 0] = 0xf0; /* x0 = 0 * .25 - 1 = -1, x16 = (15 + 16) * .25 - 1 = 6.75 */
    q51[8 + 1] = 0x21; /* x1 = (1 + 16) * .25 - 1 = 3.25, x17 = 2 * .25 - 1 = -0.5 */
    KVR_CHECK_OK(quant_dequantize(T_Q5_1, q51, out, 32, &e), &e);
    KVR_CHECK(out[0] == -1.0f && out[16] == 6.75f && out[1] == 3.25f && out[17] == -0.5f);
    uint8_t nl[18] = {0};
    put16(nl, 0x4000); /* d = 2 */
    nl[2 + 0] = 0xf0;  /* x0 = 2 * -127, x16 = 2 * 113 */
    nl[2 + 5] = 0x78;  /* x5 = 2 * 1, x21 = 2 * -10 */
    KVR_CHECK_OK(quant_dequantize(T_IQ4_NL, nl, out, 32, &e), &e);
    KVR_CHECK(out[0] == -254.0f && out[16] == 226.0f && out[5] == 2.0f && out[21] == -20.0f);
    KVR_CHECK(out[1] == -254.0f);
}

/* The 256-element types: one block each, scales and bits placed by hand from the ggml layouts
 * (quant.c's header), expected values worked out in the comments. */
static void test_dequant_k_known(void) {
    kvr_error e;
    float y[256];
    uint8_t b[292];
    /* Q2_K: scales[16] | qs[64] | d | dmin; scales[i] = min << 4 | scale */
    memset(b, 0, sizeof b);
    put16(b + 80, 0x3c00), put16(b + 82, 0x3800); /* d = 1, dmin = 0.5 */
    b[0] = 0x23;       /* sub-block 0: scale 3, min 2 -> 3 q - 1 */
    b[5] = 0x04;       /* sub-block 5: 4 q */
    b[15] = 0xf1;      /* sub-block 15: q - 7.5 */
    b[16 + 0] = 0x03;  /* x0: q 3 -> 8 */
    b[16 + 17] = 0x20; /* x81 = 2-bit group 2 of qs[17]: q 2 -> 8; x17 (sub-block 1) = 0 */
    b[16 + 63] = 0xc0; /* x255 = group 3 of qs[63]: q 3 -> -4.5 */
    KVR_CHECK_OK(quant_dequantize(T_Q2_K, b, y, 256, &e), &e);
    KVR_CHECK(y[0] == 8.0f && y[1] == -1.0f && y[81] == 8.0f && y[17] == 0.0f);
    KVR_CHECK(y[255] == -4.5f && y[240] == -7.5f);
    /* Q3_K: hmask[32] | qs[64] | scales[12] | d; 6-bit scales - 32 */
    memset(b, 0, sizeof b);
    put16(b + 108, 0x3800); /* d = 0.5 */
    b[96 + 0] = 0x05;       /* scale 0: low 5 ... */
    b[96 + 8] = 0x02;       /* ... high 2 -> 37 - 32 = 5 -> 2.5 */
    b[96 + 5] = 0xa0;       /* scale 13: low 10 (high nibble of byte 5) ... */
    b[96 + 9] = 0xc0;       /* ... high 3 (bits 6-7 of byte 9) -> 58 - 32 = 26 -> 13 */
    b[32 + 0] = 0x01, b[0] = 0x01;   /* x0: low 1, hmask set -> q 1 -> 2.5 */
    b[32 + 50] = 0x30, b[18] = 0x40; /* x210 (h 1, group 2, l 18): low 3, hmask bit 6 -> 39 */
    KVR_CHECK_OK(quant_dequantize(T_Q3_K, b, y, 256, &e), &e);
    KVR_CHECK(y[0] == 2.5f && y[1] == -10.0f && y[210] == 39.0f && y[211] == -52.0f);
    KVR_CHECK(y[16] == 64.0f); /* scale 1 = 0 - 32 -> -16, q = 0 - 4 */
    /* Q4_K and Q5_K share the 12-byte 6-bit scale/min packing */
    for (int t5 = 0; t5 < 2; t5++) {
        memset(b, 0, sizeof b);
        put16(b, 0x3c00), put16(b + 2, 0x3400); /* d = 1, dmin = 0.25 */
        uint8_t *sc = b + 4, *qs = b + (t5 ? 48 : 16), *qh = b + 16;
        sc[0] = 0xc3;  /* sub-block 0: scale 3; top bits -> sub-block 4's scale */
        sc[4] = 0x42;  /* sub-block 0: min 2; top bits -> sub-block 4's min */
        sc[8] = 0x25;  /* sub-block 4: scale 5 | 3 << 4 = 53, min 2 | 1 << 4 = 18 */
        sc[11] = 0xf1; /* sub-block 7: scale 1, min 15 */
        qs[0] = 0x09;   /* x0 = 3 * 9 - 0.5 = 26.5 (Q5_K: fifth bit -> 3 * 25 - 0.5 = 74.5) */
        qs[69] = 0x0f;  /* x133 (sub-block 4, low nibble) = 53 * 15 - 4.5 = 790.5 */
        qs[127] = 0xe0; /* x255 (sub-block 7, high nibble) = 14 - 3.75 (Q5_K: 30 - 3.75) */
        if (t5) qh[0] = 0x01, qh[31] = 0x80;
        KVR_CHECK_OK(quant_dequantize(t5 ? T_Q5_K : T_Q4_K, b, y, 256, &e), &e);
        KVR_CHECK(y[0] == (t5 ? 74.5f : 26.5f) && y[1] == -0.5f && y[133] == 790.5f);
        KVR_CHECK(y[255] == (t5 ? 26.25f : 10.25f) && y[224] == -3.75f && y[32] == 0.0f);
    }
    /* Q6_K: ql[128] | qh[64] | int8 scales[16] | d; q = 6 bits - 32 */
    memset(b, 0, sizeof b);
    put16(b + 208, 0x3800); /* d = 0.5 */
    b[192 + 0] = 0xfd, b[192 + 6] = 4, b[192 + 15] = 2; /* scales -3, 4, 2 */
    b[0] = 0x07, b[128 + 0] = 0x02;     /* x0 = 7 | 2 << 4 = 39 - 32 = 7 -> -1.5 * 7 */
    b[127] = 0xf0, b[128 + 63] = 0xc0;  /* x255 = 15 | 3 << 4 = 63 - 32 -> 1.0 * 31 */
    b[36] = 0x50, b[128 + 4] = 0x40;    /* x100 = 5 | 1 << 4 = 21 - 32 -> 2.0 * -11 */
    KVR_CHECK_OK(quant_dequantize(T_Q6_K, b, y, 256, &e), &e);
    KVR_CHECK(y[0] == -10.5f && y[255] == 31.0f && y[100] == -22.0f && y[1] == 48.0f);
    KVR_CHECK(y[4] == 48.0f && y[36] == 0.0f);
    /* Q8_K: f32 d | int8 qs[256] | int16 bsums[16] */
    memset(b, 0, sizeof b);
    const float d8 = 0.125f;
    memcpy(b, &d8, 4);
    b[4] = 0x80, b[4 + 255] = 0x7f;
    KVR_CHECK_OK(quant_dequantize(T_Q8_K, b, y, 256, &e), &e);
    KVR_CHECK(y[0] == -16.0f && y[255] == 15.875f && y[1] == 0.0f);
    /* IQ4_XS: d | u16 scales_h | scales_l[4] | qs[128]; 6-bit scales - 32 */
    memset(b, 0, sizeof b);
    put16(b, 0x3400);     /* d = 0.25 */
    put16(b + 2, 0xc002); /* high bits: sub-block 0 -> 2, sub-block 7 -> 3 */
    b[4] = 0x03;          /* sub-block 0: 3 | 2 << 4 = 35 - 32 -> 0.75; sub-block 1: -32 -> -8 */
    b[7] = 0x90;          /* sub-block 7: 9 | 3 << 4 = 57 - 32 -> 6.25 */
    b[8 + 0] = 0xf0;      /* x0 = 0.75 * -127, x16 = 0.75 * 113 */
    b[8 + 127] = 0x80;    /* x255 = 6.25 * 1, x239 = 6.25 * -127 */
    KVR_CHECK_OK(quant_dequantize(T_IQ4_XS, b, y, 256, &e), &e);
    KVR_CHECK(y[0] == -95.25f && y[16] == 84.75f && y[255] == 6.25f && y[239] == -793.75f);
    KVR_CHECK(y[32] == 1016.0f);
}

static void test_dequant_errors(void) {
    kvr_error e;
    uint8_t blk[64] = {0};
    float out[64];
    KVR_CHECK(quant_supported_types_ok());
    KVR_CHECK(quant_dequantize(16, blk, out, 256, &e) == KVR_ERR_UNSUPPORTED);
    KVR_CHECK(strstr(e.msg, "IQ2_XXS (16)") != NULL);
    KVR_CHECK(strstr(e.msg, "supported: " QUANT_SUPPORTED_TYPES) != NULL);
    KVR_CHECK(quant_dequantize(99, blk, out, 1, &e) == KVR_ERR_UNSUPPORTED);
    KVR_CHECK(strstr(e.msg, "unknown (99)") != NULL);
    KVR_CHECK(quant_dequantize(-1, blk, out, 1, &e) == KVR_ERR_UNSUPPORTED);
    KVR_CHECK(quant_dequantize(T_Q8_0, blk, out, 33, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(quant_dequant_row(T_Q4_K, blk, out, 255, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "Q4_K") != NULL && strstr(e.msg, "256") != NULL);
    /* every readable type has a layout; the others none */
    for (int t = -2; t < 64; t++) {
        const quant_type_traits *tt = quant_type_get(t);
        KVR_CHECK(tt != NULL && tt->name != NULL);
        KVR_CHECK((tt->dequant != NULL) == (tt->blck > 0 && tt->bytes > 0));
    }
    KVR_CHECK(quant_type_get(T_IQ4_XS)->bytes == 136 && quant_type_get(T_Q3_K)->bytes == 110);
}

/* The random encoders of gen_tensor against the dequantizer, many blocks of every type. */
static void test_dequant_random_blocks(void) {
    const int types[] = {T_F32, T_F16, T_BF16, T_Q8_0, T_Q4_0, T_Q4_1, T_Q5_0, T_Q5_1, T_IQ4_NL, T_Q8_K};
    uint64_t s = 42;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        const int64_t n = 32 * 1024; /* above the parallel threshold for F16/BF16? no: small */
        float *ref = malloc(n * sizeof(float)), *out = malloc(n * sizeof(float));
        tb q = {0};
        gen_tensor(types[i], n, &s, ref, &q);
        kvr_error e;
        KVR_CHECK_OK(quant_dequantize(types[i], q.p, out, n, &e), &e);
        KVR_CHECK(memcmp(ref, out, n * sizeof(float)) == 0);
        tb_free(&q);
        free(ref);
        free(out);
    }
    /* a large Q4_1 stream takes the multi-threaded path */
    const int64_t n = 1 << 20;
    float *ref = malloc(n * sizeof(float)), *out = malloc(n * sizeof(float));
    tb q = {0};
    gen_tensor(T_Q4_1, n, &s, ref, &q);
    kvr_error e;
    KVR_CHECK_OK(quant_dequantize(T_Q4_1, q.p, out, n, &e), &e);
    KVR_CHECK(memcmp(ref, out, n * sizeof(float)) == 0);
    tb_free(&q);
    free(ref);
    free(out);
}

// ----------------------------------------------------------------------------
// GGUF: good files

static void test_gguf_load_untied(void) {
    ref_model rm;
    ref_build(&rm, false, 1);
    gguf_opts o = {.extra_tensor = true, .nested_array = true};
    char path[512];
    gguf_write(&rm, &o, "untied.gguf", path, sizeof path, NULL, NULL);
    kvr_model *m = NULL;
    kvr_error e;
    KVR_CHECK_OK(load_gguf(path, true, &m, &e), &e);
    if (m) {
        check_model_matches(m, &rm);
        const kvr_model_config *c = kvr_model_get_config(m);
        KVR_CHECK(strcmp(c->name, "Test Tiny") == 0);
        /* rope_freqs: Llama 3.1 RoPE scaling, the factors as stored; no biases */
        KVR_CHECK(m->rope_factors && !m->layers[0].bqkv);
        for (int i = 0; m->rope_factors && i < T_HS / 2; i++)
            KVR_CHECK(m->rope_factors[i] == 1.0f + (float)i / 4);
        KVR_CHECK(strcmp(c->arch, "llama") == 0);
        KVR_CHECK_EQ_INT(c->max_context, 1024);
        KVR_CHECK(c->rope_theta == 50000.0f);
        KVR_CHECK(c->norm_eps == 1e-6f);
        KVR_CHECK(kvr_model_get_tokenizer(m) == NULL); /* no tokenizer metadata */
        kvr_model_destroy(m);
    }
    /* the dispatcher takes the same path */
    KVR_CHECK_OK(kvr_model_load(path, NULL, &m, &e), &e);
    kvr_model_destroy(m);
    ref_free(&rm);
}

static void test_gguf_load_tied_aligned(void) {
    ref_model rm;
    ref_build(&rm, true, 2);
    gguf_opts o = {.alignment = 64};
    char path[512];
    gguf_write(&rm, &o, "tied64.gguf", path, sizeof path, NULL, NULL);
    kvr_model *m = NULL;
    kvr_error e;
    KVR_CHECK_OK(load_gguf(path, false, &m, &e), &e);
    if (m) {
        check_model_matches(m, &rm);
        kvr_model_destroy(m);
    }
    /* version 2 files have the same layout */
    o.version = 2;
    gguf_write(&rm, &o, "tied64_v2.gguf", path, sizeof path, NULL, NULL);
    KVR_CHECK_OK(load_gguf(path, false, &m, &e), &e);
    kvr_model_destroy(m);
    ref_free(&rm);
}

static void test_gguf_tokenizer_metadata(void) {
    ref_model rm;
    ref_build(&rm, true, 3);
    char path[512];
    kvr_model *m = NULL;
    kvr_error e;
    /* an unsupported tokenizer model is skipped with a warning; the model loads */
    gguf_opts o = {.tok_model = "t5"};
    gguf_write(&rm, &o, "tok_t5.gguf", path, sizeof path, NULL, NULL);
    KVR_CHECK_OK(load_gguf(path, true, &m, &e), &e);
    if (m) KVR_CHECK(kvr_model_get_tokenizer(m) == NULL);
    kvr_model_destroy(m);
    /* SentencePiece (llama): a tokenizer of type spm, which asks for BOS */
    o.tok_model = "llama";
    gguf_write(&rm, &o, "tok_llama.gguf", path, sizeof path, NULL, NULL);
    KVR_CHECK_OK(load_gguf(path, true, &m, &e), &e);
    if (m) {
        const kvr_tokenizer *t = kvr_model_get_tokenizer(m);
        KVR_CHECK(t != NULL);
        if (t) {
            KVR_CHECK(strcmp(kvr_tokenizer_type(t), "spm") == 0);
            KVR_CHECK_EQ_INT(kvr_tokenizer_n_vocab(t), T_V);
            KVR_CHECK(kvr_tokenizer_wants_bos(t));
        }
    }
    kvr_model_destroy(m);
    /* gpt2 BPE: loads; the tokenizer is present once tokenizer.c implements it */
    o.tok_model = "gpt2";
    gguf_write(&rm, &o, "tok_gpt2.gguf", path, sizeof path, NULL, NULL);
    KVR_CHECK_OK(load_gguf(path, true, &m, &e), &e);
    if (m) {
        const kvr_tokenizer *t = kvr_model_get_tokenizer(m);
        if (t) {
            KVR_CHECK_EQ_INT(kvr_tokenizer_n_vocab(t), T_V);
            KVR_CHECK_EQ_INT(kvr_tokenizer_bos(t), T_V - 1);
            KVR_CHECK_EQ_INT(kvr_tokenizer_eos(t), T_V - 1);
        } else {
            printf("note: tokenizer_create_bpe not available yet; loaded without a tokenizer\n");
        }
        check_model_matches(m, &rm);
    }
    kvr_model_destroy(m);
    /* load_tokenizer = false never looks at it */
    KVR_CHECK_OK(load_gguf(path, false, &m, &e), &e);
    if (m) KVR_CHECK(kvr_model_get_tokenizer(m) == NULL);
    kvr_model_destroy(m);
    /* malformed tokenizer metadata fails the load */
    o.tok_bad_types = true;
    tb buf;
    gguf_layout lo;
    gguf_build(&rm, &o, &buf, &lo);
    expect_gguf_error(&buf, "tok_badtypes.gguf", KVR_ERR_FORMAT, "token_type", NULL);
    tb_free(&buf);
    o.tok_bad_types = false;
    o.tok_types_as_str = true;
    gguf_build(&rm, &o, &buf, &lo);
    expect_gguf_error(&buf, "tok_ints.gguf", KVR_ERR_FORMAT, "tokenizer.ggml.tokens", "array of string");
    tb_free(&buf);
    ref_free(&rm);
}

// ----------------------------------------------------------------------------
// GGUF: bad files

static void test_gguf_bad_header(void) {
    ref_model rm;
    ref_build(&rm, true, 4);
    gguf_opts o = {0};
    tb good, b = {0};
    gguf_layout lo;
    gguf_build(&rm, &o, &good, &lo);
#define COPY() (b.n = 0, tb_put(&b, good.p, good.n))
    COPY();
    b.p[0] = 'X';
    expect_gguf_error(&b, "magic.gguf", KVR_ERR_FORMAT, "not a GGUF file", "magic");
    COPY();
    patch_u32(b.p + 4, 1);
    expect_gguf_error(&b, "v1.gguf", KVR_ERR_UNSUPPORTED, "version 1", NULL);
    COPY();
    patch_u32(b.p + 4, 7);
    expect_gguf_error(&b, "v7.gguf", KVR_ERR_FORMAT, "version 7", NULL);
    COPY();
    patch_u32(b.p + 4, 0x03000000u);
    expect_gguf_error(&b, "bigendian.gguf", KVR_ERR_UNSUPPORTED, "big-endian", NULL);
    COPY();
    patch_u64(b.p + 8, 1ull << 40);
    expect_gguf_error(&b, "ntensors.gguf", KVR_ERR_FORMAT, "tensor count", NULL);
    COPY();
    patch_u64(b.p + 16, ~0ull);
    expect_gguf_error(&b, "nkv.gguf", KVR_ERR_FORMAT, "metadata count", NULL);
    COPY();
    patch_u64(b.p + 24, 1ull << 62); /* length of the first key */
    expect_gguf_error(&b, "keylen.gguf", KVR_ERR_FORMAT, "metadata key", "past the end");
    COPY();
    patch_u32(b.p + 24 + 8 + strlen("general.architecture"), 77); /* its value type */
    expect_gguf_error(&b, "vtype.gguf", KVR_ERR_FORMAT, "unknown value type 77", NULL);
#undef COPY
    tb_free(&b);
    tb_free(&good);

    o.arch = "gpt2";
    gguf_build(&rm, &o, &b, &lo);
    expect_gguf_error(&b, "arch.gguf", KVR_ERR_UNSUPPORTED, "'gpt2'", "llama");
    tb_free(&b);
    o.arch = NULL;
    o.block_count = 100000;
    gguf_build(&rm, &o, &b, &lo);
    expect_gguf_error(&b, "blocks.gguf", KVR_ERR_FORMAT, "n_layers", NULL);
    tb_free(&b);
    o.block_count = 0;
    o.alignment = 32, o.alignment_key = 48;
    gguf_build(&rm, &o, &b, &lo);
    expect_gguf_error(&b, "align.gguf", KVR_ERR_FORMAT, "alignment", "power of two");
    tb_free(&b);

    /* missing file */
    kvr_model *m = (kvr_model *)0x1;
    kvr_error e;
    KVR_CHECK(load_gguf("/nonexistent/dir/x.gguf", true, &m, &e) == KVR_ERR_NOT_FOUND);
    KVR_CHECK(m == NULL && strstr(e.msg, "/nonexistent/dir/x.gguf") != NULL);
    ref_free(&rm);
}

static void test_gguf_bad_tensors(void) {
    ref_model rm;
    ref_build(&rm, false, 5);
    gguf_opts o = {.extra_tensor = true};
    tb good, b = {0};
    gguf_layout lo;
    gguf_build(&rm, &o, &good, &lo);
#define COPY() (b.n = 0, tb_put(&b, good.p, good.n))
    int i;
    /* offset past EOF, offset overflow, misaligned offset */
    COPY();
    i = layout_find(&lo, "blk.1.ffn_down.weight");
    patch_u64(b.p + lo.info_offset[i], (uint64_t)good.n / 32 * 32);
    expect_gguf_error(&b, "off_eof.gguf", KVR_ERR_FORMAT, "blk.1.ffn_down.weight", "past the end");
    COPY();
    patch_u64(b.p + lo.info_offset[i], ~0ull - 31);
    expect_gguf_error(&b, "off_wrap.gguf", KVR_ERR_FORMAT, "blk.1.ffn_down.weight", "past the end");
    COPY();
    patch_u64(b.p + lo.info_offset[i], 8);
    expect_gguf_error(&b, "off_align.gguf", KVR_ERR_FORMAT, "blk.1.ffn_down.weight", "alignment");
    /* overlapping tensors */
    COPY();
    {
        int a = layout_find(&lo, "blk.0.attn_norm.weight"), f = layout_find(&lo, "blk.0.ffn_norm.weight");
        memcpy(b.p + lo.info_offset[a], b.p + lo.info_offset[f], 8);
        expect_gguf_error(&b, "overlap.gguf", KVR_ERR_FORMAT, "overlap", "blk.0.attn_norm.weight");
    }
    /* absurd dimensions: on a needed tensor and on an unused one */
    COPY();
    i = layout_find(&lo, "blk.0.attn_q.weight");
    patch_u64(b.p + lo.info_ndims[i] + 4, 1ull << 40);
    patch_u64(b.p + lo.info_ndims[i] + 12, 1ull << 40);
    expect_gguf_error(&b, "dims.gguf", KVR_ERR_FORMAT, "blk.0.attn_q.weight", "absurd");
    COPY();
    i = layout_find(&lo, "rope_freqs.weight");
    patch_u64(b.p + lo.info_ndims[i] + 4, ~0ull);
    expect_gguf_error(&b, "dims_unused.gguf", KVR_ERR_FORMAT, "rope_freqs.weight", "absurd");
    COPY();
    i = layout_find(&lo, "blk.0.attn_q.weight");
    patch_u32(b.p + lo.info_ndims[i], 9);
    expect_gguf_error(&b, "ndims.gguf", KVR_ERR_FORMAT, "blk.0.attn_q.weight", "9 dimensions");
    /* wrong shape */
    COPY();
    i = layout_find(&lo, "blk.0.attn_k.weight");
    patch_u64(b.p + lo.info_ndims[i] + 12, 8);
    expect_gguf_error(&b, "shape.gguf", KVR_ERR_FORMAT,
                      "tensor blk.0.attn_k.weight has shape [32, 8], expected [32, 16]", NULL);
    /* unsupported and unknown types */
    COPY();
    patch_u32(b.p + lo.info_type[i], 16);
    expect_gguf_error(&b, "type.gguf", KVR_ERR_UNSUPPORTED, "blk.0.attn_k.weight",
                      "type IQ2_XXS (16) is not supported; supported: " QUANT_SUPPORTED_TYPES);
    COPY();
    patch_u32(b.p + lo.info_type[i], T_Q5_K); /* readable, but not on rows of 32 */
    expect_gguf_error(&b, "type_k.gguf", KVR_ERR_FORMAT, "blk.0.attn_k.weight",
                      "row length 32 is not a multiple of the Q5_K block size 256");
    COPY();
    patch_u32(b.p + lo.info_type[i], 0xdeadbeef);
    expect_gguf_error(&b, "type2.gguf", KVR_ERR_UNSUPPORTED, "unknown", NULL);
#undef COPY
    tb_free(&b);
    tb_free(&good);
    /* missing tensor */
    o.omit = "blk.1.ffn_up.weight";
    gguf_build(&rm, &o, &b, &lo);
    expect_gguf_error(&b, "missing.gguf", KVR_ERR_FORMAT, "missing tensor blk.1.ffn_up.weight", NULL);
    tb_free(&b);
    ref_free(&rm);
}

/* Every prefix of a valid file (tokenizer metadata included) must fail cleanly; prefixes that
 * only drop trailing padding still load. */
static void test_gguf_truncated_everywhere(void) {
    ref_model rm;
    ref_build(&rm, false, 6);
    gguf_opts o = {.tok_model = "gpt2", .nested_array = true, .extra_tensor = true};
    char path[512];
    tb buf;
    gguf_layout lo;
    gguf_write(&rm, &o, "trunc.gguf", path, sizeof path, &buf, &lo);
    int fd = open(path, O_RDWR);
    KVR_CHECK(fd >= 0);
    long bad = 0, first_bad = -1;
    char first_msg[512] = "";
    for (long len = (long)buf.n - 1; fd >= 0 && len >= 0; len--) {
        if (ftruncate(fd, len) != 0) abort();
        kvr_model *m = (kvr_model *)0x1;
        kvr_error e = {0};
        kvr_status st = load_gguf(path, true, &m, &e);
        if ((size_t)len >= lo.data_end) {
            KVR_CHECK_OK(st, &e);
            kvr_model_destroy(m);
            continue;
        }
        if (st != KVR_ERR_FORMAT || m != NULL || !strstr(e.msg, path)) {
            if (!bad++) first_bad = len, snprintf(first_msg, sizeof first_msg, "%s", e.msg);
            if (st == KVR_OK) kvr_model_destroy(m);
        }
    }
    if (bad) fprintf(stderr, "  first bad prefix %ld: %s\n", first_bad, first_msg);
    KVR_CHECK_EQ_INT(bad, 0);
    printf("  %zu prefixes of a %zu-byte GGUF rejected, %zu padding-only cuts load\n", lo.data_end,
           buf.n, buf.n - lo.data_end);
    if (fd >= 0) close(fd);
    tb_free(&buf);
    ref_free(&rm);
}

// ----------------------------------------------------------------------------
// GGUF: the 256-element types (D 256, FF 512: every K-quant, Q8_K and IQ4_XS)

static void test_gguf_load_wide(void) {
    ref_model rm;
    ref_build_wide(&rm, 11);
    gguf_opts o = {.extra_tensor = true};
    char path[512];
    gguf_write(&rm, &o, "wide.gguf", path, sizeof path, NULL, NULL);
    kvr_model *m = NULL;
    kvr_error e;
    KVR_CHECK_OK(load_gguf(path, false, &m, &e), &e);
    if (m) {
        check_model_matches(m, &rm);
        kvr_model_destroy(m);
    }
    ref_free(&rm);
}

static void test_gguf_wide_bad(void) {
    ref_model rm;
    ref_build_wide(&rm, 12);
    gguf_opts o = {0};
    tb good, b = {0};
    gguf_layout lo;
    gguf_build(&rm, &o, &good, &lo);
#define COPY() (b.n = 0, tb_put(&b, good.p, good.n))
    /* a 256-element type on rows of 32: the message names the tensor, the type and both sizes */
    const int k_types[] = {T_Q2_K, T_Q3_K, T_Q4_K, T_Q5_K, T_Q6_K, T_Q8_K, T_IQ4_XS};
    int i = layout_find(&lo, "blk.0.attn_output.weight");
    for (size_t k = 0; k < sizeof k_types / sizeof k_types[0]; k++) {
        char want[128];
        snprintf(want, sizeof want, "row length 32 is not a multiple of the %s block size 256",
                 quant_type_get(k_types[k])->name);
        COPY();
        patch_u32(b.p + lo.info_type[i], (uint32_t)k_types[k]);
        expect_gguf_error(&b, "wide_rowlen.gguf", KVR_ERR_FORMAT, "blk.0.attn_output.weight", want);
    }
    /* a K tensor past the end, one alignment unit past it, misaligned, overlapping */
    i = layout_find(&lo, "blk.1.ffn_down.weight"); /* IQ4_XS */
    COPY();
    patch_u64(b.p + lo.info_offset[i], (uint64_t)(good.n - lo.data_start + 32) / 32 * 32);
    expect_gguf_error(&b, "wide_off_eof.gguf", KVR_ERR_FORMAT, "blk.1.ffn_down.weight", "past the end");
    const int te = layout_find(&lo, "token_embd.weight"); /* Q4_K, stored last in the file */
    COPY();
    uint64_t off = 0;
    for (int j = 0; j < 8; j++) off |= (uint64_t)good.p[lo.info_offset[te] + j] << 8 * j;
    patch_u64(b.p + lo.info_offset[te], off + 32);
    expect_gguf_error(&b, "wide_off_short.gguf", KVR_ERR_FORMAT, "token_embd.weight", "past the end");
    COPY();
    patch_u64(b.p + lo.info_offset[te], off + 16);
    expect_gguf_error(&b, "wide_off_align.gguf", KVR_ERR_FORMAT, "token_embd.weight", "alignment");
    COPY();
    /* blk.0.ffn_gate (Q5_K) moved onto offset 0, where blk.1.ffn_down (IQ4_XS) lies: the tensors
     * are written in reverse order */
    patch_u64(b.p + lo.info_offset[layout_find(&lo, "blk.0.ffn_gate.weight")], 0);
    expect_gguf_error(&b, "wide_overlap.gguf", KVR_ERR_FORMAT, "overlap", "blk.1.ffn_down.weight");
    /* wrong row count on a K tensor */
    COPY();
    i = layout_find(&lo, "blk.0.ffn_up.weight"); /* Q6_K, [256, 512] */
    patch_u64(b.p + lo.info_ndims[i] + 12, 256);
    expect_gguf_error(&b, "wide_shape.gguf", KVR_ERR_FORMAT,
                      "tensor blk.0.ffn_up.weight has shape [256, 256], expected [256, 512]", NULL);
#undef COPY
    tb_free(&b);

    /* truncation: every byte of the header and tensor infos, then every 251st data byte and the
     * bytes around each tensor's end; cuts into the trailing padding still load */
    char path[512];
    tmp_path(path, sizeof path, "wide_trunc.gguf");
    write_file(path, good.p, good.n);
    int fd = open(path, O_RDWR);
    KVR_CHECK(fd >= 0);
    long bad = 0, first_bad = -1, n_cuts = 0;
    char first_msg[512] = "";
    for (long len = (long)good.n - 1; fd >= 0 && len >= 0; len--) {
        bool near_end = false;
        for (int j = 0; j < rm.n; j++) {
            const ref_tensor *t = &rm.t[j];
            int li = layout_find(&lo, t->name);
            uint64_t oj = 0;
            for (int k = 0; k < 8; k++) oj |= (uint64_t)good.p[lo.info_offset[li] + k] << 8 * k;
            const long end = (long)(lo.data_start + oj + t->q.n);
            if (len >= end - 2 && len <= end) near_end = true;
        }
        if ((size_t)len > lo.data_start && len % 251 != 0 && !near_end) continue;
        if (ftruncate(fd, len) != 0) abort();
        n_cuts++;
        kvr_model *m = (kvr_model *)0x1;
        kvr_error e = {0};
        kvr_status st = load_gguf(path, false, &m, &e);
        if ((size_t)len >= lo.data_end) {
            KVR_CHECK_OK(st, &e);
            kvr_model_destroy(m);
            continue;
        }
        if (st != KVR_ERR_FORMAT || m != NULL || !strstr(e.msg, path)) {
            if (!bad++) first_bad = len, snprintf(first_msg, sizeof first_msg, "%s", e.msg);
            if (st == KVR_OK) kvr_model_destroy(m);
        }
    }
    if (bad) fprintf(stderr, "  first bad prefix %ld: %s\n", first_bad, first_msg);
    KVR_CHECK_EQ_INT(bad, 0);
    printf("  %ld cuts of a %zu-byte GGUF with every 256-element type rejected or padding-only\n",
           n_cuts, good.n);
    if (fd >= 0) close(fd);
    tb_free(&good);
    ref_free(&rm);
}

// ----------------------------------------------------------------------------
// HF: config.json + safetensors writer

static const char *const hf_layer_names[9] = {
    "input_layernorm",  "self_attn.q_proj",         "self_attn.k_proj",
    "self_attn.v_proj", "self_attn.o_proj",         "post_attention_layernorm",
    "mlp.gate_proj",    "mlp.up_proj",              "mlp.down_proj"};

static void hf_name(const char *gguf_name, char *out, size_t len) {
    int l;
    char what[32];
    if (!strcmp(gguf_name, "token_embd.weight")) snprintf(out, len, "model.embed_tokens.weight");
    else if (!strcmp(gguf_name, "output_norm.weight")) snprintf(out, len, "model.norm.weight");
    else if (!strcmp(gguf_name, "output.weight")) snprintf(out, len, "lm_head.weight");
    else if (sscanf(gguf_name, "blk.%d.%31[a-z_]", &l, what) == 2) {
        for (int k = 0; k < 9; k++)
            if (!strcmp(what, layer_names[k])) snprintf(out, len, "model.layers.%d.%s.weight", l, hf_layer_names[k]);
    } else
        KVR_ABORT("hf_name %s", gguf_name);
}

typedef struct hf_opts {
    const char *omit;      /* HF tensor name left out */
    const char *dtype_of;  /* HF tensor whose dtype string is replaced */
    const char *dtype;
    int n_shards;          /* 0/1: model.safetensors; 2: two shards */
    bool lm_head_in_tied;  /* write lm_head even though tied */
} hf_opts;

/* The HF tensor for a reference tensor: q/k rows go back to rotate-half order (the inverse of
 * the loader's permutation); dtype F16/BF16 where the GGUF one was, F32 otherwise. */
static void hf_tensor_bytes(const ref_tensor *t, tb *out, const char **dtype) {
    const int64_t rows = t->ne[1], cols = t->ne[0];
    const bool is_q = strstr(t->name, "attn_q") != NULL, is_k = strstr(t->name, "attn_k") != NULL;
    *dtype = t->type == T_F16 ? "F16" : t->type == T_BF16 ? "BF16" : "F32";
    for (int64_t r = 0; r < rows; r++) {
        int64_t src = r; /* HF row r comes from GGUF row src */
        if (is_q || is_k) {
            const int64_t h = r / T_HS, j = r % T_HS;
            src = h * T_HS + (j < T_HS / 2 ? 2 * j : 2 * (j - T_HS / 2) + 1);
        }
        for (int64_t c = 0; c < cols; c++) {
            const float v = t->ref[src * cols + c];
            if (t->type == T_F16) tb_u16(out, half_exact(v));
            else if (t->type == T_BF16) tb_u16(out, bf16_exact(v));
            else tb_f32(out, v);
        }
    }
}

static void hf_write_shard(const ref_model *rm, const hf_opts *o, int lo_i, int hi_i, const char *path,
                           ref_tensor *lm_extra) {
    tb hdr = {0}, data = {0};
    char tmp[512];
    tb_put(&hdr, "{\"__metadata__\":{\"format\":\"pt\"}", strlen("{\"__metadata__\":{\"format\":\"pt\"}"));
    for (int i = lo_i; i <= hi_i; i++) {
        const ref_tensor *t = i < rm->n ? &rm->t[i] : lm_extra;
        if (!t) continue;
        char name[96];
        hf_name(t->name, name, sizeof name);
        if (o->omit && !strcmp(o->omit, name)) continue;
        const char *dtype;
        const size_t at = data.n;
        hf_tensor_bytes(t, &data, &dtype);
        if (o->dtype_of && !strcmp(o->dtype_of, name)) dtype = o->dtype;
        if (t->nd == 1)
            snprintf(tmp, sizeof tmp, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld],\"data_offsets\":[%zu,%zu]}",
                     name, dtype, (long long)t->ne[0], at, data.n);
        else
            snprintf(tmp, sizeof tmp, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],\"data_offsets\":[%zu,%zu]}",
                     name, dtype, (long long)t->ne[1], (long long)t->ne[0], at, data.n);
        tb_put(&hdr, tmp, strlen(tmp));
    }
    tb_put(&hdr, "}", 1);
    while (hdr.n % 8) tb_put(&hdr, " ", 1);
    tb file = {0};
    tb_u64(&file, hdr.n);
    tb_put(&file, hdr.p, hdr.n);
    tb_put(&file, data.p, data.n);
    write_file(path, file.p, file.n);
    tb_free(&hdr);
    tb_free(&data);
    tb_free(&file);
}

static const char *hf_config_good(bool tied) {
    static char buf[1024];
    snprintf(buf, sizeof buf,
             "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
             "  \"hidden_size\": %d,\n  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n"
             "  \"num_key_value_heads\": %d,\n  \"intermediate_size\": %d,\n  \"vocab_size\": %d,\n"
             "  \"rope_theta\": 50000.0,\n  \"rms_norm_eps\": 1e-06,\n  \"tie_word_embeddings\": %s,\n"
             "  \"max_position_embeddings\": 1024,\n  \"head_dim\": %d,\n  \"torch_dtype\": \"float32\"\n}\n",
             T_D, T_L, T_NH, T_NKV, T_FF, T_V, tied ? "true" : "false", T_HS);
    return buf;
}

/* Write an HF directory tmp/<name>/ from the reference model; path receives the directory. */
static void hf_write_dir(const ref_model *rm, const hf_opts *o, const char *config, const char *name,
                         char *dir, size_t dlen) {
    tmp_path(dir, dlen, name);
    rm_rf(dir);
    mkdir(dir, 0755);
    char p[600];
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_file(p, config, strlen(config));
    ref_tensor lm = {0};
    ref_tensor *extra = NULL;
    if (rm->tied && o->lm_head_in_tied) { /* an lm_head the loader must ignore */
        uint64_t s = 9;
        snprintf(lm.name, sizeof lm.name, "output.weight");
        lm.nd = 2, lm.ne[0] = T_D, lm.ne[1] = T_V, lm.type = T_F32;
        lm.ref = malloc(T_D * T_V * sizeof(float));
        gen_tensor(T_F32, T_D * T_V, &s, lm.ref, &lm.q);
        extra = &lm;
    }
    const int last = rm->n - 1 + (extra ? 1 : 0);
    if (o->n_shards == 2) {
        snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
        hf_write_shard(rm, o, 0, rm->n / 2, p, extra);
        snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
        hf_write_shard(rm, o, rm->n / 2 + 1, last, p, extra);
    } else {
        snprintf(p, sizeof p, "%s/model.safetensors", dir);
        hf_write_shard(rm, o, 0, last, p, extra);
    }
    free(lm.ref);
    tb_free(&lm.q);
}

static void expect_hf_error(const char *path, kvr_status want, const char *n1, const char *n2) {
    kvr_model *m = (kvr_model *)0x1;
    kvr_error e = {0};
    kvr_status st = kvr_model_load_hf(path, &m, &e);
    KVR_CHECK_EQ_INT(st, want);
    KVR_CHECK(m == NULL);
    if (n1) KVR_CHECK(strstr(e.msg, n1) != NULL);
    if (n2) KVR_CHECK(strstr(e.msg, n2) != NULL);
    if (st != want || (n1 && !strstr(e.msg, n1)) || (n2 && !strstr(e.msg, n2)) ||
        getenv("KVR_TEST_VERBOSE"))
        fprintf(stderr, "  %s -> %s: %s\n", path, kvr_status_str(st), e.msg);
    if (st == KVR_OK) kvr_model_destroy(m);
}

// ----------------------------------------------------------------------------
// HF: good directories

static void test_hf_load_matches_gguf(void) {
    ref_model rm;
    ref_build(&rm, false, 10);
    char dir[512], path[600], gpath[512];
    hf_opts o = {0};
    hf_write_dir(&rm, &o, hf_config_good(false), "hf_untied", dir, sizeof dir);
    kvr_model *m = NULL, *g = NULL;
    kvr_error e;
    KVR_CHECK_OK(kvr_model_load_hf(dir, &m, &e), &e);
    gguf_opts go = {0};
    gguf_write(&rm, &go, "hf_twin.gguf", gpath, sizeof gpath, NULL, NULL);
    KVR_CHECK_OK(load_gguf(gpath, false, &g, &e), &e);
    if (m && g) {
        check_model_matches_as(m, &rm, false); /* q/k permuted back into GGUF order */
        float *ma = NULL, *ga = NULL;
        size_t mn = 0, gn = 0;
        KVR_CHECK_OK(model_dequant_all(m, &ma, &mn, &e), &e);
        KVR_CHECK_OK(model_dequant_all(g, &ga, &gn, &e), &e);
        KVR_CHECK_EQ_INT(mn, gn);
        KVR_CHECK(ma && ga && mn == gn && memcmp(ma, ga, mn * sizeof(float)) == 0);
        free(ma);
        free(ga);
        const kvr_model_config *c = kvr_model_get_config(m);
        KVR_CHECK(strcmp(c->name, "hf_untied") == 0);
        KVR_CHECK(c->rope_theta == 50000.0f && c->norm_eps == 1e-6f);
        KVR_CHECK_EQ_INT(c->max_context, 1024);
        KVR_CHECK(kvr_model_get_tokenizer(m) == NULL);
    }
    kvr_model_destroy(m);
    kvr_model_destroy(g);
    /* through config.json and through the dispatcher */
    snprintf(path, sizeof path, "%s/config.json", dir);
    KVR_CHECK_OK(kvr_model_load_hf(path, &m, &e), &e);
    kvr_model_destroy(m);
    KVR_CHECK_OK(kvr_model_load(dir, NULL, &m, &e), &e);
    kvr_model_destroy(m);
    ref_free(&rm);
}

static void test_hf_load_sharded_tied(void) {
    ref_model rm;
    ref_build(&rm, true, 11);
    char dir[512];
    hf_opts o = {.n_shards = 2, .lm_head_in_tied = true};
    hf_write_dir(&rm, &o, hf_config_good(true), "hf_sharded", dir, sizeof dir);
    kvr_model *m = NULL;
    kvr_error e;
    KVR_CHECK_OK(kvr_model_load_hf(dir, &m, &e), &e);
    if (m) check_model_matches_as(m, &rm, false);
    kvr_model_destroy(m);
    /* minimal config: architectures only, defaults for kv heads, theta, head_dim, context */
    char cfg[512];
    snprintf(cfg, sizeof cfg,
             "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":%d,\"num_hidden_layers\":%d,"
             "\"num_attention_heads\":%d,\"num_key_value_heads\":%d,\"intermediate_size\":%d,"
             "\"vocab_size\":%d,\"rms_norm_eps\":1e-5,\"tie_word_embeddings\":true,\"head_dim\":null}",
             T_D, T_L, T_NH, T_NKV, T_FF, T_V);
    hf_write_dir(&rm, &o, cfg, "hf_minimal", dir, sizeof dir);
    KVR_CHECK_OK(kvr_model_load_hf(dir, &m, &e), &e);
    if (m) {
        check_model_matches_as(m, &rm, false);
        KVR_CHECK(m->cfg.rope_theta == 10000.0f);
    }
    kvr_model_destroy(m);
    ref_free(&rm);
}

// ----------------------------------------------------------------------------
// HF: bad inputs

static void test_hf_bad_config(void) {
    ref_model rm;
    ref_build(&rm, true, 12);
    char dir[512];
    hf_opts o = {0};
    struct {
        const char *name, *json;
        kvr_status want;
        const char *n1, *n2;
    } cases[] = {
        {"cfg_badjson", "{ \"hidden_size\": 32, ", KVR_ERR_FORMAT, "config.json", "invalid JSON"},
        {"cfg_empty", "", KVR_ERR_FORMAT, "config.json", "invalid JSON"},
        {"cfg_array", "[1, 2]", KVR_ERR_FORMAT, "config.json", "not an object"},
        {"cfg_missing",
         "{\"model_type\":\"llama\",\"num_hidden_layers\":2,\"num_attention_heads\":4,"
         "\"intermediate_size\":64,\"vocab_size\":265,\"rms_norm_eps\":1e-5}",
         KVR_ERR_FORMAT, "config.json", "missing field hidden_size"},
        {"cfg_type",
         "{\"model_type\":\"llama\",\"hidden_size\":\"32\",\"num_hidden_layers\":2,"
         "\"num_attention_heads\":4,\"intermediate_size\":64,\"vocab_size\":265,\"rms_norm_eps\":1e-5}",
         KVR_ERR_FORMAT, "config.json", "field hidden_size must be an integer, not a string"},
        {"cfg_frac",
         "{\"model_type\":\"llama\",\"hidden_size\":32.5,\"num_hidden_layers\":2,"
         "\"num_attention_heads\":4,\"intermediate_size\":64,\"vocab_size\":265,\"rms_norm_eps\":1e-5}",
         KVR_ERR_FORMAT, "config.json", "hidden_size = 32.5"},
        {"cfg_tie",
         "{\"model_type\":\"llama\",\"hidden_size\":32,\"num_hidden_layers\":2,"
         "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"intermediate_size\":64,"
         "\"vocab_size\":265,\"rms_norm_eps\":1e-5,\"tie_word_embeddings\":1}",
         KVR_ERR_FORMAT, "config.json", "tie_word_embeddings must be a boolean"},
        {"cfg_arch", "{\"model_type\":\"gpt2\",\"hidden_size\":32}", KVR_ERR_UNSUPPORTED,
         "config.json", "model_type 'gpt2' is not supported"},
        {"cfg_arch2", "{\"architectures\":[\"MistralForCausalLM\"]}", KVR_ERR_UNSUPPORTED,
         "config.json", "MistralForCausalLM"},
        {"cfg_noarch", "{\"hidden_size\":32}", KVR_ERR_FORMAT, "config.json", "model_type"},
        {"cfg_gqa",
         "{\"model_type\":\"llama\",\"hidden_size\":32,\"num_hidden_layers\":2,"
         "\"num_attention_heads\":4,\"num_key_value_heads\":3,\"intermediate_size\":64,"
         "\"vocab_size\":265,\"rms_norm_eps\":1e-5}",
         KVR_ERR_FORMAT, "config.json", "n_kv_heads"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hf_write_dir(&rm, &o, cases[i].json, cases[i].name, dir, sizeof dir);
        expect_hf_error(dir, cases[i].want, cases[i].n1, cases[i].n2);
    }
    /* no config.json at all, no directory at all, no weights */
    char p[600];
    hf_write_dir(&rm, &o, hf_config_good(true), "cfg_none", dir, sizeof dir);
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    expect_hf_error(dir, KVR_ERR_NOT_FOUND, "config.json", NULL);
    expect_hf_error("/nonexistent/hf/dir", KVR_ERR_NOT_FOUND, "/nonexistent/hf/dir", NULL);
    hf_write_dir(&rm, &o, hf_config_good(true), "cfg_noweights", dir, sizeof dir);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    expect_hf_error(dir, KVR_ERR_NOT_FOUND, "no *.safetensors", NULL);
    ref_free(&rm);
}

static void read_all(const char *path, tb *out) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    KVR_ASSERT(f);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) tb_put(out, buf, n);
    fclose(f);
}

static void test_hf_bad_safetensors(void) {
    ref_model rm;
    ref_build(&rm, false, 13);
    char dir[512], st_path[600];
    hf_opts o = {0};
    const char *cfg = hf_config_good(false);
    /* missing tensor, bad dtypes, tied=false without lm_head */
    o.omit = "model.layers.1.mlp.up_proj.weight";
    hf_write_dir(&rm, &o, cfg, "st_missing", dir, sizeof dir);
    expect_hf_error(dir, KVR_ERR_FORMAT, "missing tensor model.layers.1.mlp.up_proj.weight", NULL);
    o.omit = "lm_head.weight";
    hf_write_dir(&rm, &o, cfg, "st_nolmhead", dir, sizeof dir);
    expect_hf_error(dir, KVR_ERR_FORMAT, "missing tensor lm_head.weight", "tie_word_embeddings");
    o.omit = NULL;
    o.dtype_of = "model.layers.0.self_attn.k_proj.weight";
    o.dtype = "I32"; /* same 4-byte size as the F32 data */
    hf_write_dir(&rm, &o, cfg, "st_dtype", dir, sizeof dir);
    expect_hf_error(dir, KVR_ERR_UNSUPPORTED, "model.safetensors", "dtype I32 is not supported");
    o.dtype = "Q9_Z";
    hf_write_dir(&rm, &o, cfg, "st_dtype2", dir, sizeof dir);
    expect_hf_error(dir, KVR_ERR_FORMAT, "model.safetensors", "unknown dtype 'Q9_Z'");
    o.dtype = "F16"; /* half the bytes data_offsets cover */
    hf_write_dir(&rm, &o, cfg, "st_dtype3", dir, sizeof dir);
    expect_hf_error(dir, KVR_ERR_FORMAT, "model.safetensors", "data_offsets span");
    o.dtype_of = NULL;

    /* patched copies of a good file */
    hf_write_dir(&rm, &o, cfg, "st_patch", dir, sizeof dir);
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", dir);
    tb good, b = {0};
    read_all(st_path, &good);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | good.p[i];
#define COPY() (b.n = 0, tb_put(&b, good.p, good.n))
#define REWRITE() write_file(st_path, b.p, b.n)
    COPY();
    patch_u64(b.p, good.n); /* header length past EOF */
    REWRITE();
    expect_hf_error(dir, KVR_ERR_FORMAT, "model.safetensors", "header length");
    COPY();
    patch_u64(b.p, ~0ull);
    REWRITE();
    expect_hf_error(dir, KVR_ERR_FORMAT, "model.safetensors", "header length");
    COPY();
    b.p[8] = '[';
    REWRITE();
    expect_hf_error(dir, KVR_ERR_FORMAT, "model.safetensors", "not valid JSON");
    /* the shape and data_offsets of the first real tensor: rewrite numbers in place */
    {
        COPY();
        char *h = (char *)b.p + 8;
        char *q = strstr(h, "\"model.embed_tokens.weight\"");
        KVR_ASSERT(q && (size_t)(q - h) < hlen);
        char *sh = strstr(q, "\"shape\":[");
        sh += strlen("\"shape\":[");
        sh[0] = '9', sh[1] = '9', sh[2] = '9'; /* 265 -> 999: shape mismatch + span mismatch */
        REWRITE();
        expect_hf_error(dir, KVR_ERR_FORMAT, "model.embed_tokens.weight", NULL);
        COPY();
        h = (char *)b.p + 8;
        q = strstr(h, "\"model.norm.weight\"");
        char *dof = strstr(q, "\"data_offsets\":[");
        dof += strlen("\"data_offsets\":[");
        KVR_ASSERT(dof[0] >= '1' && dof[0] <= '9' && dof[1] >= '0' && dof[1] <= '9');
        dof[0] = '-'; /* negative offset */
        REWRITE();
        expect_hf_error(dir, KVR_ERR_FORMAT, "model.norm.weight", "data_offsets");
    }
    /* data past EOF: cut the file inside the data section */
    COPY();
    b.n = 8 + hlen + 100;
    REWRITE();
    expect_hf_error(dir, KVR_ERR_FORMAT, "model.safetensors", "past the end");

    /* truncation at every byte of the header region and every 61st byte of the data */
    long bad = 0, tried = 0, first_bad = -1;
    char first_msg[512] = "";
    for (size_t len = 0; len < good.n; len += (len < 8 + hlen + 256 ? 1 : 61)) {
        write_file(st_path, good.p, len);
        kvr_model *m = (kvr_model *)0x1;
        kvr_error e = {0};
        kvr_status st = kvr_model_load_hf(dir, &m, &e);
        tried++;
        if (st != KVR_ERR_FORMAT || m != NULL || !strstr(e.msg, "model.safetensors")) {
            if (!bad++) first_bad = (long)len, snprintf(first_msg, sizeof first_msg, "%s", e.msg);
            if (st == KVR_OK) kvr_model_destroy(m);
        }
    }
    if (bad) fprintf(stderr, "  first bad safetensors prefix %ld: %s\n", first_bad, first_msg);
    KVR_CHECK_EQ_INT(bad, 0);
    printf("  %ld truncations of a %zu-byte safetensors file rejected\n", tried, good.n);
#undef COPY
#undef REWRITE
    tb_free(&b);
    tb_free(&good);
    ref_free(&rm);
}

// ----------------------------------------------------------------------------
// the real model: SmolLM2-135M-Instruct Q4_1 (skipped with a note when absent)

#ifndef KVR_SOURCE_DIR
#define KVR_SOURCE_DIR "."
#endif

/* Reference values from the python `gguf` package (gguf.quants.dequantize), produced by
 * `python3 tools/gen_test_models.py smollm2-ref models/SmolLM2-135M-Instruct.Q4_1.gguf`.
 * Index = row * ne0 + col in the GGUF tensor, which is the runtime layout. */
typedef struct smol_ref {
    const char *tensor;
    int64_t index;
    float value;
} smol_ref;
/* generated by: python3 tools/gen_test_models.py smollm2-ref SmolLM2-135M-Instruct.Q4_1.gguf */
static const smol_ref smol_refs[] = {
    {"token_embd.weight", 0, -0x1.b468000000000p-4f}, /* -0.10654449462890625 */
    {"token_embd.weight", 17, 0x1.56e4000000000p-4f}, /* 0.08371353149414062 */
    {"token_embd.weight", 32, -0x1.7eec000000000p-4f}, /* -0.09348678588867188 */
    {"token_embd.weight", 28311551, -0x1.55a0000000000p-5f}, /* -0.0417022705078125 */
    {"token_embd.weight", 8825848, -0x1.23c0000000000p-6f}, /* -0.0178070068359375 */
    {"token_embd.weight", 3679543, -0x1.0e90000000000p-6f}, /* -0.016513824462890625 */
    {"output_norm.weight", 0, 0x1.c200000000000p+0f}, /* 1.7578125 */
    {"output_norm.weight", 17, -0x1.4200000000000p+0f}, /* -1.2578125 */
    {"output_norm.weight", 32, 0x1.e000000000000p+0f}, /* 1.875 */
    {"output_norm.weight", 575, 0x1.fc00000000000p+0f}, /* 1.984375 */
    {"output_norm.weight", 322, 0x1.3800000000000p+1f}, /* 2.4375 */
    {"output_norm.weight", 517, 0x1.b400000000000p+0f}, /* 1.703125 */
    {"blk.0.attn_norm.weight", 0, 0x1.ca00000000000p-7f}, /* 0.01397705078125 */
    {"blk.0.attn_norm.weight", 17, 0x1.6400000000000p-3f}, /* 0.173828125 */
    {"blk.0.attn_norm.weight", 32, 0x1.f200000000000p-6f}, /* 0.0303955078125 */
    {"blk.0.attn_norm.weight", 575, -0x1.3a00000000000p-5f}, /* -0.038330078125 */
    {"blk.0.attn_norm.weight", 340, -0x1.2a00000000000p-5f}, /* -0.036376953125 */
    {"blk.0.attn_norm.weight", 534, -0x1.a800000000000p-6f}, /* -0.02587890625 */
    {"blk.0.attn_q.weight", 0, -0x1.8a80000000000p-4f}, /* -0.0963134765625 */
    {"blk.0.attn_q.weight", 17, 0x1.2300000000000p-2f}, /* 0.2841796875 */
    {"blk.0.attn_q.weight", 32, -0x1.6280000000000p-2f}, /* -0.34619140625 */
    {"blk.0.attn_q.weight", 331775, -0x1.0600000000000p-2f}, /* -0.255859375 */
    {"blk.0.attn_q.weight", 154395, -0x1.9600000000000p-6f}, /* -0.0247802734375 */
    {"blk.0.attn_q.weight", 6310, -0x1.0820000000000p-3f}, /* -0.12896728515625 */
    {"blk.0.attn_k.weight", 0, -0x1.3e00000000000p-3f}, /* -0.1552734375 */
    {"blk.0.attn_k.weight", 17, 0x1.5750000000000p-1f}, /* 0.6705322265625 */
    {"blk.0.attn_k.weight", 32, 0x1.5e00000000000p-7f}, /* 0.01068115234375 */
    {"blk.0.attn_k.weight", 110591, 0x1.7460000000000p-2f}, /* 0.3636474609375 */
    {"blk.0.attn_k.weight", 23570, 0x1.4280000000000p-4f}, /* 0.0787353515625 */
    {"blk.0.attn_k.weight", 96277, 0x1.b800000000000p-6f}, /* 0.02685546875 */
    {"blk.0.attn_v.weight", 0, 0x1.b008000000000p-4f}, /* 0.10547637939453125 */
    {"blk.0.attn_v.weight", 17, 0x1.1200000000000p-10f}, /* 0.00104522705078125 */
    {"blk.0.attn_v.weight", 32, -0x1.b640000000000p-5f}, /* -0.053497314453125 */
    {"blk.0.attn_v.weight", 110591, -0x1.acc0000000000p-5f}, /* -0.052337646484375 */
    {"blk.0.attn_v.weight", 88343, 0x1.d000000000000p-7f}, /* 0.01416015625 */
    {"blk.0.attn_v.weight", 8369, -0x1.ffc0000000000p-7f}, /* -0.01561737060546875 */
    {"blk.0.attn_output.weight", 0, 0x1.6fd8000000000p-4f}, /* 0.08980560302734375 */
    {"blk.0.attn_output.weight", 17, 0x1.5240000000000p-6f}, /* 0.0206451416015625 */
    {"blk.0.attn_output.weight", 32, 0x1.7480000000000p-7f}, /* 0.0113677978515625 */
    {"blk.0.attn_output.weight", 331775, -0x1.1180000000000p-6f}, /* -0.016693115234375 */
    {"blk.0.attn_output.weight", 87653, 0x1.c600000000000p-6f}, /* 0.0277099609375 */
    {"blk.0.attn_output.weight", 51728, 0x1.f100000000000p-5f}, /* 0.0606689453125 */
    {"blk.7.ffn_norm.weight", 0, 0x1.8200000000000p-4f}, /* 0.09423828125 */
    {"blk.7.ffn_norm.weight", 17, 0x1.ea00000000000p-3f}, /* 0.2392578125 */
    {"blk.7.ffn_norm.weight", 32, 0x1.e600000000000p-3f}, /* 0.2373046875 */
    {"blk.7.ffn_norm.weight", 575, 0x1.0200000000000p-2f}, /* 0.251953125 */
    {"blk.7.ffn_norm.weight", 469, 0x1.8200000000000p-4f}, /* 0.09423828125 */
    {"blk.7.ffn_norm.weight", 460, 0x1.ca00000000000p-3f}, /* 0.2236328125 */
    {"blk.7.ffn_gate.weight", 0, 0x1.1590000000000p-3f}, /* 0.135528564453125 */
    {"blk.7.ffn_gate.weight", 17, -0x1.7d60000000000p-4f}, /* -0.093109130859375 */
    {"blk.7.ffn_gate.weight", 32, 0x1.2360000000000p-4f}, /* 0.071136474609375 */
    {"blk.7.ffn_gate.weight", 884735, 0x1.ce00000000000p-5f}, /* 0.056396484375 */
    {"blk.7.ffn_gate.weight", 83799, 0x1.5480000000000p-4f}, /* 0.0831298828125 */
    {"blk.7.ffn_gate.weight", 181743, 0x1.5be0000000000p-3f}, /* 0.16986083984375 */
    {"blk.7.ffn_up.weight", 0, -0x1.5400000000000p-4f}, /* -0.0830078125 */
    {"blk.7.ffn_up.weight", 17, -0x1.2c00000000000p-6f}, /* -0.018310546875 */
    {"blk.7.ffn_up.weight", 32, 0x1.b7c0000000000p-3f}, /* 0.2147216796875 */
    {"blk.7.ffn_up.weight", 884735, -0x1.7f80000000000p-5f}, /* -0.04681396484375 */
    {"blk.7.ffn_up.weight", 827172, -0x1.7860000000000p-4f}, /* -0.091888427734375 */
    {"blk.7.ffn_up.weight", 44125, -0x1.92e0000000000p-4f}, /* -0.098358154296875 */
    {"blk.29.ffn_down.weight", 0, -0x1.17e0000000000p-2f}, /* -0.2733154296875 */
    {"blk.29.ffn_down.weight", 17, 0x1.8c80000000000p-5f}, /* 0.04840087890625 */
    {"blk.29.ffn_down.weight", 32, 0x1.b400000000000p-6f}, /* 0.026611328125 */
    {"blk.29.ffn_down.weight", 884735, 0x1.d000000000000p-5f}, /* 0.056640625 */
    {"blk.29.ffn_down.weight", 540410, -0x1.5280000000000p-3f}, /* -0.165283203125 */
    {"blk.29.ffn_down.weight", 105204, 0x1.0ca0000000000p-3f}, /* 0.13116455078125 */
    {"blk.29.attn_k.weight", 0, 0x1.ff40000000000p-5f}, /* 0.062408447265625 */
    {"blk.29.attn_k.weight", 17, 0x1.8850000000000p-5f}, /* 0.04788970947265625 */
    {"blk.29.attn_k.weight", 32, 0x1.3c00000000000p-6f}, /* 0.019287109375 */
    {"blk.29.attn_k.weight", 110591, 0x1.4fa0000000000p-4f}, /* 0.081939697265625 */
    {"blk.29.attn_k.weight", 108051, 0x1.6080000000000p-3f}, /* 0.172119140625 */
    {"blk.29.attn_k.weight", 54811, -0x1.42e0000000000p-4f}, /* -0.078826904296875 */
};
static const double smol_sum_abs = 18618625.800991118, smol_sum_sq = 4495476.364860779; /* over all 272 tensors */

static void test_real_smollm2(void) {
    char path[1024];
    const char *fname = "SmolLM2-135M-Instruct.Q4_1.gguf";
    const char *env = getenv("KVR_MODEL");
    struct stat st;
    kvr_error e;
    if (env && *env && stat(env, &st) == 0) {
        snprintf(path, sizeof path, "%s", env);
    } else {
        snprintf(path, sizeof path, "%s/models/%s", KVR_SOURCE_DIR, fname);
        if (stat(path, &st) != 0 && kvr_model_default_path(path, sizeof path, &e) != KVR_OK) {
            printf("note: %s not found (models/ or $KVR_MODEL); skipping the real-model case. "
                   "Fetch it with scripts/fetch-model.\n", fname);
            KVR_CHECK(getenv("KVR_REQUIRE_MODEL") == NULL); /* CI must not skip it */
            return;
        }
    }
    kvr_model *m = NULL;
    kvr_model_load_params lp = kvr_model_load_params_default();
    const double t0 = kvr_time_us();
    KVR_CHECK_OK(kvr_model_load_gguf(path, &lp, &m, &e), &e);
    const double ms = (kvr_time_us() - t0) / 1e3;
    if (!m) return;
    printf("  loaded %s in %.0f ms (%zu bytes of weights in their stored types)\n", path, ms,
           m->arena_bytes);
    const kvr_model_config *c = kvr_model_get_config(m);
    KVR_CHECK_EQ_INT(c->n_layers, 30);
    KVR_CHECK_EQ_INT(c->d_model, 576);
    KVR_CHECK_EQ_INT(c->n_heads, 9);
    KVR_CHECK_EQ_INT(c->n_kv_heads, 3);
    KVR_CHECK_EQ_INT(c->head_dim, 64);
    KVR_CHECK_EQ_INT(c->d_ff, 1536);
    KVR_CHECK_EQ_INT(c->vocab_size, 49152);
    KVR_CHECK_EQ_INT(c->max_context, 8192);
    KVR_CHECK(c->tied_embeddings && m->output == m->tok_embd);
    KVR_CHECK(c->rope_theta == 100000.0f);
    KVR_CHECK_NEAR(c->norm_eps, 1e-5, 1e-12, 0);
    KVR_CHECK(strcmp(c->arch, "llama") == 0 && c->name[0] != '\0');
    const kvr_tokenizer *t = kvr_model_get_tokenizer(m);
    if (t) {
        KVR_CHECK_EQ_INT(kvr_tokenizer_n_vocab(t), 49152);
        KVR_CHECK_EQ_INT(kvr_tokenizer_bos(t), 1);
        KVR_CHECK_EQ_INT(kvr_tokenizer_eos(t), 2);
    }
    /* point values */
    int bad = 0;
    for (size_t i = 0; i < sizeof smol_refs / sizeof smol_refs[0]; i++) {
        const smol_ref *r = &smol_refs[i];
        float *base = model_dst(m, r->tensor);
        KVR_CHECK(base != NULL);
        if (!base) continue;
        if (base[r->index] != r->value) {
            if (bad++ < 5)
                fprintf(stderr, "  %s[%lld] = %.9g, gguf says %.9g\n", r->tensor,
                        (long long)r->index, (double)base[r->index], (double)r->value);
        }
        free(base);
    }
    KVR_CHECK_EQ_INT(bad, 0);
    /* whole-arena checksums against the same package: sum |x| and sum x^2 over every tensor */
    double s1 = 0, s2 = 0;
    model_sums(m, &s1, &s2, NULL);
    KVR_CHECK_NEAR(s1, smol_sum_abs, 0, 1e-9);
    KVR_CHECK_NEAR(s2, smol_sum_sq, 0, 1e-9);
    kvr_model_destroy(m);
}


/* The fuzz seeds (written by the python `gguf` package: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, F16, BF16,
 * F32, and random blocks of IQ4_NL and every 256-element type) load to the same values
 * gguf.quants.dequantize gives (Q8_K: ggml's dequantize_row_q8_K): whole-model checksums. */
/* generated by: python3 tools/gen_test_models.py seeds-ref tests/fuzz/corpus_gguf */
static const struct { const char *file; double sum_abs, sum_sq; } seed_refs[] = {
    {"tiny_f32_tok.gguf", 2682.148703048646, 1674.6474752536994},
    {"tiny_q4_0_q8_0_tied.gguf", 2579.1410643979907, 1619.1022577197275},
    {"tiny_q4_1_f16_bf16.gguf", 2729.9803138086572, 1715.4236925108112},
    {"tiny_q5_0_q5_1_iq4_nl.gguf", 2860.5761550329626, 2231.6890259401075},
    {"wide_k_quants.gguf", 131837.65938749298, 2092714.574802238},
};

static void test_gguf_seeds_match_python(void) {
    for (size_t i = 0; i < sizeof seed_refs / sizeof seed_refs[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/tests/fuzz/corpus_gguf/%s", KVR_SOURCE_DIR, seed_refs[i].file);
        kvr_model *m = NULL;
        kvr_error e;
        KVR_CHECK_OK(load_gguf(path, true, &m, &e), &e);
        if (!m) continue;
        double s1 = 0, s2 = 0;
        model_sums(m, &s1, &s2, NULL);
        KVR_CHECK_NEAR(s1, seed_refs[i].sum_abs, 0, 1e-12);
        KVR_CHECK_NEAR(s2, seed_refs[i].sum_sq, 0, 1e-12);
        kvr_model_destroy(m);
    }
}

// ----------------------------------------------------------------------------
// architectures: qwen2, RoPE scaling

static void test_gguf_arch_errors(void) {
    ref_model rm;
    ref_build(&rm, false, 21);
    gguf_opts o = {0};
    tb b = {0};
    gguf_layout lo;
    /* qwen2 needs its Q/K/V biases */
    o.arch = "qwen2";
    gguf_build(&rm, &o, &b, &lo);
    expect_gguf_error(&b, "qwen2_nobias.gguf", KVR_ERR_FORMAT, "blk.0.attn_q.bias", "qwen2");
    tb_free(&b);
    /* unknown architecture and RoPE scaling type: the key and the value */
    o.arch = "mamba";
    gguf_build(&rm, &o, &b, &lo);
    expect_gguf_error(&b, "mamba.gguf", KVR_ERR_UNSUPPORTED, "general.architecture = 'mamba'", "qwen2");
    tb_free(&b);
    o.arch = NULL;
    o.rope_scaling_type = "yarn";
    gguf_build(&rm, &o, &b, &lo);
    expect_gguf_error(&b, "yarn.gguf", KVR_ERR_UNSUPPORTED, "llama.rope.scaling.type", "'yarn'");
    tb_free(&b);
    /* a RoPE factor that is not positive */
    o.rope_scaling_type = "llama3";
    o.extra_tensor = true;
    gguf_build(&rm, &o, &b, &lo);
    const int i = layout_find(&lo, "rope_freqs.weight");
    uint64_t off;
    memcpy(&off, b.p + lo.info_offset[i], 8);
    const float neg = -2.0f;
    memcpy(b.p + lo.data_start + off + 4 * 3, &neg, 4);
    expect_gguf_error(&b, "rope_neg.gguf", KVR_ERR_FORMAT, "rope_freqs.weight[3]", "positive");
    tb_free(&b);
    ref_free(&rm);
}

/* Llama 3.1's factors for theta 500000, head_dim 128, factor 8, low 1, high 4, original 8192:
 * llama.cpp's converter formula (convert_hf_to_gguf.py, LlamaModel), evaluated in Python. */
static const struct { int i; float f; } llama31_factors[] = {
    {0, 1.0f},         {20, 1.0f},         {28, 1.0f},         {29, 1.20748387f},
    {30, 1.55341463f}, {31, 2.02631321f}, {32, 2.69452969f}, {33, 3.68425253f},
    {34, 5.25732659f}, {35, 8.0f},         {40, 8.0f},         {63, 8.0f}};

static void test_rope_scaling(void) {
    float f[64];
    model_llama3_rope_factors(f, 128, 500000.0, 8.0, 1.0, 4.0, 8192.0);
    for (size_t k = 0; k < sizeof llama31_factors / sizeof llama31_factors[0]; k++)
        KVR_CHECK_NEAR(f[llama31_factors[k].i], llama31_factors[k].f, 0, 1e-6);
    /* HF config.json rope_scaling: factors from the function above; bad types named */
    ref_model rm;
    ref_build(&rm, true, 22);
    hf_opts o = {0};
    char dir[512], cfg[1400];
    snprintf(cfg, sizeof cfg, "%.*s,\n  \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, "
             "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
             "\"original_max_position_embeddings\": 64}\n}\n",
             (int)(strrchr(hf_config_good(true), '}') - hf_config_good(true) - 1), hf_config_good(true));
    hf_write_dir(&rm, &o, cfg, "hf_rope", dir, sizeof dir);
    kvr_model *m = NULL;
    kvr_error e;
    KVR_CHECK_OK(kvr_model_load_hf(dir, &m, &e), &e);
    if (m) {
        float want[T_HS / 2];
        model_llama3_rope_factors(want, T_HS, 50000.0, 8.0, 1.0, 4.0, 64.0);
        KVR_CHECK(m->rope_factors != NULL);
        for (int i = 0; m->rope_factors && i < T_HS / 2; i++) KVR_CHECK(m->rope_factors[i] == want[i]);
        KVR_CHECK(want[0] == 1.0f && want[T_HS / 2 - 1] == 8.0f);
        kvr_model_destroy(m);
    }
    snprintf(cfg, sizeof cfg, "%.*s,\n  \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}\n}\n",
             (int)(strrchr(hf_config_good(true), '}') - hf_config_good(true) - 1), hf_config_good(true));
    hf_write_dir(&rm, &o, cfg, "hf_yarn", dir, sizeof dir);
    expect_hf_error(dir, KVR_ERR_UNSUPPORTED, "rope_scaling.rope_type", "yarn");
    snprintf(cfg, sizeof cfg, "%.*s,\n  \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": -1}\n}\n",
             (int)(strrchr(hf_config_good(true), '}') - hf_config_good(true) - 1), hf_config_good(true));
    hf_write_dir(&rm, &o, cfg, "hf_rope_bad", dir, sizeof dir);
    expect_hf_error(dir, KVR_ERR_FORMAT, "rope_scaling", "factor");
    ref_free(&rm);
}

static const kvr_test_case cases[] = {
    {"dequant_f16_bf16", test_dequant_f16_bf16},
    {"dequant_q8_0", test_dequant_q8_0},
    {"dequant_q4_0", test_dequant_q4_0},
    {"dequant_q4_1", test_dequant_q4_1},
    {"dequant_q5_iq4nl", test_dequant_q5_iq4nl},
    {"dequant_k_known", test_dequant_k_known},
    {"dequant_errors", test_dequant_errors},
    {"dequant_random_blocks", test_dequant_random_blocks},
    {"gguf_load_untied", test_gguf_load_untied},
    {"gguf_load_tied_aligned", test_gguf_load_tied_aligned},
    {"gguf_tokenizer_metadata", test_gguf_tokenizer_metadata},
    {"gguf_bad_header", test_gguf_bad_header},
    {"gguf_bad_tensors", test_gguf_bad_tensors},
    {"gguf_truncated_everywhere", test_gguf_truncated_everywhere},
    {"gguf_load_wide", test_gguf_load_wide},
    {"gguf_wide_bad", test_gguf_wide_bad},
    {"hf_load_matches_gguf", test_hf_load_matches_gguf},
    {"hf_load_sharded_tied", test_hf_load_sharded_tied},
    {"hf_bad_config", test_hf_bad_config},
    {"gguf_arch_errors", test_gguf_arch_errors},
    {"rope_scaling", test_rope_scaling},
    {"hf_bad_safetensors", test_hf_bad_safetensors},
    {"gguf_seeds_match_python", test_gguf_seeds_match_python},
    {"real_smollm2", test_real_smollm2},
};

static void quiet_log(kvr_log_level level, const char *msg, void *user) {
    (void)user;
    if (level >= KVR_LOG_ERROR) fprintf(stderr, "kvr: %s\n", msg);
}

int main(int argc, char **argv) {
    if (!getenv("KVR_TEST_VERBOSE")) kvr_log_set(quiet_log, NULL); /* expected warnings */
    int rc = kvr_test_main(cases, (int)(sizeof cases / sizeof cases[0]), argc, argv);
    if (tmp_root[0]) rm_rf(tmp_root);
    return rc;
}
