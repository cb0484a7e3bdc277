/* gguf.c -- placeholder until the GGUF loader lands (being written now). */
#include "runtime_internal.h"
kvr_status kvr_model_load_gguf(const char *path, const kvr_model_load_params *params,
                               kvr_model **out, kvr_error *err) {
    (void)params;
    *out = NULL;
    return kvr_error_set(err, KVR_ERR_UNSUPPORTED, "%s: GGUF loader not built yet", path);
}
kvr_status gguf_dequantize(int32_t type, const void *src, float *dst, int64_t n, kvr_error *err) {
    (void)src, (void)dst, (void)n;
    return kvr_error_set(err, KVR_ERR_UNSUPPORTED, "type %d", type);
}
