/* session_mem.c -- what a session's prefill needs in memory, before it allocates anything
 * (kvr-run compares it with the machine's available memory: issue 17). Mirrors the CPU
 * backend's workspace (backend_cpu.c: cpu_ws_create, its weight scratch included) and prefill.c's
 * sizes per rank. */
#include "kvr_session.h"
#include "runtime_internal.h"

#include <string.h>

/* The CPU workspace for a chunk of c tokens over ctx positions, in floats: activations and
 * attention scratch (act) and the K/V cache (kv). */
static void ws_floats(const kvr_model_config *cfg, double c, double ctx, int32_t n_threads,
                      double *act, double *kv) {
    const double D = cfg->d_model, HS = cfg->head_dim, NH = cfg->n_heads, NKV = cfg->n_kv_heads;
    const double FF = cfg->d_ff, L = cfg->n_layers;
    *act = c * D * 2 + c * (NH + 2 * NKV) * HS + c * NH * HS + c * 3 * FF + c * HS +
           (double)n_threads * 128 * ctx + D + cfg->vocab_size;
    *kv = 2 * L * ctx * NKV * HS;
}

kvr_status kvr_session_memory_estimate(const kvr_session_params *sp, int64_t n_tokens,
                                       kvr_session_memory *out, kvr_error *err) {
    if (!sp || !sp->model || !out || n_tokens < 1)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "memory estimate: bad arguments");
    memset(out, 0, sizeof *out);
    const kvr_model_config *cfg = kvr_model_get_config(sp->model);
    const int32_t p = sp->n_ranks > 0 ? sp->n_ranks : 1;
    int64_t part[KVR_MAX_RANKS];
    if (p > KVR_MAX_RANKS || n_tokens < p)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "memory estimate: %d ranks for %lld tokens",
                             p, (long long)n_tokens);
    if (!(sp->partition == KVR_SESSION_PARTITION_EXPLICIT && sp->partition_text &&
          kvr_partition_parse(sp->partition_text, p, n_tokens, part, NULL) == KVR_OK))
        KVR_TRY(kvr_partition_even(n_tokens, p, part, err));
    const int32_t me = sp->comm ? kvr_comm_rank(sp->comm) : -1;
    const int32_t n_threads = sp->n_threads > 0 ? sp->n_threads : 1;
    int64_t S = 0;
    for (int32_t i = 0; i < p; i++) {
        S += part[i];
        if (me >= 0 && i != me) continue;
        /* ring: two workspaces (its zigzag chunks, about half the rank's even share each), both
         * caches over all positions */
        const bool ring = sp->mode == KVR_MODE_RING;
        /* the emitting rank's (ring: its first workspace's) cache also holds what decode
         * appends */
        const double gen = i == kvr_prefill_emitter(sp->mode, p) && sp->generate.n_predict > 0
                               ? (double)sp->generate.n_predict
                               : 0;
        const double ctx = sp->mode == KVR_MODE_TSP || ring ? (double)n_tokens : (double)S;
        double act2, kv2; /* ring: the second workspace, without decode's room */
        ws_floats(cfg, ring ? (double)part[i] / 2 + 1 : (double)part[i], ctx, n_threads, &act2,
                  &kv2);
        double act, kv;
        ws_floats(cfg, ring ? (double)part[i] / 2 + 1 : (double)part[i], ctx + gen, n_threads,
                  &act, &kv);
        /* the weight scratch (non-F32 weights: the largest matrix dequantized; 4096 rows of
         * the LM head, KVR_HEAD_BLOCK in backend_cpu.c) and one weight row per thread */
        const double s0 = (double)model_scratch_floats(sp->model, 4096);
        const double scratch =
            s0 > 0 ? s0 + (double)n_threads * (cfg->d_ff > cfg->d_model ? cfg->d_ff : cfg->d_model)
                   : 0;
        out->workspaces += (act + scratch + (ring ? act2 + scratch : 0)) * sizeof(float);
        out->kv_cache += (kv + (ring ? kv2 : 0)) * sizeof(float);
        out->n_ranks_here++;
    }
    out->weights = (double)kvr_model_weight_bytes(sp->model);
    return KVR_OK;
}
