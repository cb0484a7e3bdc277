/* quant_dump.c -- test helper for tests/ref/reference_quants.py: kvr's dequantized values as raw
 * little-endian fp32, so the script can compare them element for element with gguf-py's (and
 * ggml's) dequantizers.
 *
 *   quant_dump blocks TYPE_ID N IN.bin OUT.f32
 *       dequantize N elements of GGML type TYPE_ID stored in IN.bin (quant_dequantize).
 *   quant_dump model FILE.gguf OUT.f32
 *       load FILE.gguf with kvr_model_load_gguf (no tokenizer) and write every tensor the model
 *       holds in slot order (token_embd, output_norm, output unless tied, then per layer
 *       attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down),
 *       each in GGUF element order; stdout gets one "SLOT N_ELEMENTS" line per tensor written.
 *
 * Exit: 0 ok, 1 error (message on stderr), 2 usage. Not installed; built with the tests. */
#include "quant_internal.h"
#include "runtime_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void) {
    fprintf(stderr, "usage: quant_dump blocks TYPE_ID N IN.bin OUT.f32\n"
                    "       quant_dump model FILE.gguf OUT.f32\n");
    return 2;
}

static int write_all(FILE *f, const char *path, const float *p, size_t n) {
    if (fwrite(p, sizeof(float), n, f) != n) {
        fprintf(stderr, "quant_dump: %s: write failed\n", path);
        return 1;
    }
    return 0;
}

static int dump_blocks(const char *type_s, const char *n_s, const char *in, const char *out) {
    char *end;
    const long type = strtol(type_s, &end, 10);
    if (*end) return usage();
    const long long n = strtoll(n_s, &end, 10);
    if (*end || n < 0) return usage();
    FILE *f = fopen(in, "rb");
    if (!f) {
        perror(in);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    const long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *src = malloc(len > 0 ? (size_t)len : 1);
    float *dst = malloc(n > 0 ? (size_t)n * sizeof(float) : 1);
    if (!src || !dst || (len > 0 && fread(src, 1, (size_t)len, f) != (size_t)len)) {
        fprintf(stderr, "quant_dump: %s: read failed\n", in);
        return 1;
    }
    fclose(f);
    const quant_type_traits *t = quant_type_get(type);
    if (t->blck > 0 && (long long)len != n / t->blck * t->bytes) {
        fprintf(stderr, "quant_dump: %s: %ld bytes, but %lld %s elements take %lld\n", in, len, n,
                t->name, n / t->blck * t->bytes);
        return 1;
    }
    kvr_error e;
    if (quant_dequantize((int32_t)type, src, dst, n, &e) != KVR_OK) {
        fprintf(stderr, "quant_dump: %s\n", e.msg);
        return 1;
    }
    FILE *o = fopen(out, "wb");
    if (!o) {
        perror(out);
        return 1;
    }
    int rc = write_all(o, out, dst, (size_t)n);
    if (fclose(o) != 0) rc = 1;
    free(src);
    free(dst);
    return rc;
}

static int dump_model(const char *path, const char *out) {
    kvr_model_load_params lp = kvr_model_load_params_default();
    lp.load_tokenizer = false;
    kvr_model *m = NULL;
    kvr_error e;
    if (kvr_model_load_gguf(path, &lp, &m, &e) != KVR_OK) {
        fprintf(stderr, "quant_dump: %s\n", e.msg);
        return 1;
    }
    FILE *o = fopen(out, "wb");
    if (!o) {
        perror(out);
        kvr_model_destroy(m);
        return 1;
    }
    int rc = 0;
    const int n_slots = MODEL_N_GLOBAL + MODEL_N_PER_LAYER * m->cfg.n_layers;
    for (int s = 0; s < n_slots && rc == 0; s++) {
        if (s == MODEL_SLOT_OUTPUT && m->cfg.tied_embeddings) continue;
        int64_t sh[2];
        const int nd = model_slot_shape(&m->cfg, s, sh);
        const size_t n = (size_t)(nd == 2 ? sh[0] * sh[1] : sh[0]);
        printf("%d %zu\n", s, n);
        float *buf = malloc(n * sizeof(float));
        kvr_error de;
        if (!buf || model_tensor_rows_f32(model_slot_tensor(m, s), 0,
                                          model_slot_tensor(m, s)->rows, buf, 1, &de) != KVR_OK) {
            fprintf(stderr, "quant_dump: cannot dequantize slot %d\n", s);
            free(buf);
            rc = 1;
            break;
        }
        rc = write_all(o, out, buf, n);
        free(buf);
    }
    if (fclose(o) != 0) rc = 1;
    kvr_model_destroy(m);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 6 && strcmp(argv[1], "blocks") == 0) return dump_blocks(argv[2], argv[3], argv[4], argv[5]);
    if (argc == 4 && strcmp(argv[1], "model") == 0) return dump_model(argv[2], argv[3]);
    return usage();
}
