/* safetensors.c -- placeholder until the HF loader lands (being written now). */
#include "runtime_internal.h"
kvr_status kvr_model_load_hf(const char *dir, kvr_model **out, kvr_error *err) {
    *out = NULL;
    return kvr_error_set(err, KVR_ERR_UNSUPPORTED, "%s: HF loader not built yet", dir);
}
