/* search_internal.h -- declarations shared by the search module's own .c files (and, on
 * purpose, its tests): the cost-model struct, the timeline struct, the KVR chain kernels used
 * by both the simulator and the optimiser, and a small append buffer for the exporters. */
#ifndef KVR_SEARCH_INTERNAL_H
#define KVR_SEARCH_INTERNAL_H

#include "kvr_search.h"

#include <stdarg.h>

struct cJSON;

// ----------------------------------------------------------------------------
// cost model

#define SEARCH_MAX_DEVICES 65536

struct kvr_search_costs {
    kvr_search_cost_ops ops;
    void *ctx;           /* the source's state (for the linear source: &co below) */
    bool owns_ctx;       /* call ops.destroy(ctx) on destroy */
    bool is_linear;      /* co holds the coefficients */
    kvr_search_coeffs co;
    int n_layers;
    double kv_bytes_per_token, embed_us, head_us;
    char *source;     /* path or free text; never NULL */
    char *model_name; /* "" if unknown */
    char *device;     /* "" if unknown */
    char *dtype;      /* "" if unknown */
    bool has_dflt;    /* default link for every pair not listed */
    kvr_search_link dflt;
    kvr_search_link *links; /* explicit directed links */
    int n_links;
    int n_devices;       /* 1 + largest index in links (0 if none) */
    bool has_allgather;  /* TSP all-gather override */
    double ag_alpha_us, ag_busbw_gbps;
    bool links_overridden; /* kvr_search_costs_override_links was applied */
    double ovr_alpha_us, ovr_gbps; /* the override (negative = field kept) */
    char *links_source;  /* path of a links file that replaced the links, or NULL */
    kvr_search_link_time_fn link_fn; /* custom link times (kvr_search_costs_set_link_time) */
    void *link_ctx;
    void (*link_destroy)(void *ctx);
    char *link_name; /* description of the link-time source, or NULL */
    double merge_k_us, merge_per_row_us; /* ring's LSE merges (0: not charged) */
    char merge_how[160];                 /* where they came from ("" = not set) */
    kvr_search_overhead ovh[KVR_MODE_COUNT]; /* fixed overheads per schedule (0: none) */
    char ovh_how[160];                       /* where they came from ("" = never set) */
    kvr_search_decode_step decode;           /* serving decode step (decode_how "" = unset) */
    char decode_how[160];
    double host_copy_bpus;                   /* host-tier copy rate, bytes/us (host_copy_how) */
    char host_copy_how[160];                 /* "" = unset */
};

/* Link parameters for src -> dst: listed link first, then the default. false if none. */
bool search_costs_link_find(const kvr_search_costs *m, int src, int dst, kvr_search_link *out);
/* Time of n bytes on link l (gbps 0 = ideal link), or the model's link-time source when set. */
static inline double search_link_time_us(const kvr_search_costs *m, const kvr_search_link *l,
                                         double bytes) {
    if (m->link_fn) return m->link_fn(m->link_ctx, l, bytes);
    return l->alpha_us + (l->gbps > 0 ? bytes / (l->gbps * 1000.0) : 0.0);
}
/* Drop the link-time source (the links it described changed). */
void search_costs_clear_link_time(kvr_search_costs *m);
/* Block cost (ring): c queries against k fully visible keys. */
double search_costs_block_us(const kvr_search_costs *m, int64_t c, int64_t k);
/* A cJSON object describing the model (source, coefficients, links). NULL on out of memory. */
struct cJSON *search_costs_describe_json(const kvr_search_costs *m);
/* One line of text describing the links ("uniform 10 us, 25 GB/s" / "7 listed + default ..."). */
void search_costs_describe_links(const kvr_search_costs *m, char *buf, size_t n);

// ----------------------------------------------------------------------------
// timeline

struct kvr_search_timeline {
    kvr_event *ev;
    size_t n, cap;
    bool oom;       /* an append failed; the simulator reports KVR_ERR_NOMEM */
    int n_ranks, n_layers;
    int64_t context;
    double ttft_us;
    char strategy[16];
};

void search_tl_reset(kvr_search_timeline *tl, const char *strategy, int n_ranks, int n_layers,
                     int64_t context);
void search_tl_add(kvr_search_timeline *tl, int rank, int layer, int peer, kvr_event_kind kind,
                   double start_us, double end_us);

// ----------------------------------------------------------------------------
// KVR chain kernels (sim.c), shared by kvr_search_sim_kvr and the optimiser

/* Per-rank per-layer costs of a chain partition. x[i] is the link i -> i+1 time (i < p-1). */
typedef struct search_chain_costs {
    double pre, w, x; /* w = attn + post */
} search_chain_costs;

/* Forward recurrence for rank i given the send times of rank i-1 (prev_send, NULL for i = 0),
 * the incoming link time x_in, writing send[l] = ready(i, l) for l = 0..L-1. */
static inline void search_chain_forward_rank(const double *prev_send, double x_in, double pre,
                                             double w, double embed_us, int L, double *send) {
    double done = embed_us;
    if (!prev_send) {
        for (int l = 0; l < L; l++) {
            double ready = done + pre;
            send[l] = ready;
            done = ready + w;
        }
        return;
    }
    double linkfree = -1e300;
    for (int l = 0; l < L; l++) {
        double own = done + pre;
        double a = prev_send[l] > linkfree ? prev_send[l] : linkfree;
        double arr = a + x_in;
        linkfree = arr;
        double ready = own > arr ? own : arr;
        send[l] = ready;
        done = ready + w;
    }
}

/* Fill cc[0..p-1] for chunks (tokens). Returns KVR_ERR_NOT_FOUND when a chain link is missing. */
kvr_status search_chain_costs_fill(const kvr_search_costs *m, int p, const int64_t *chunks,
                                   search_chain_costs *cc, kvr_error *err);

// ----------------------------------------------------------------------------
// tables (table.c builds, export.c renders)

struct kvr_search_table {
    kvr_search_row *rows;
    int n_rows;
    kvr_search_rec *recs;
    int n_recs;
    int64_t granularity;
    unsigned strategies; /* mask actually used */
    unsigned unrunnable; /* marked: the runtime cannot run them (kvr_search_table_set_runnable) */
    bool recommend_unrunnable;
    char runtime[64];  /* the mark's legend: "cpu/threads" */
    double *single_us; /* per context (n_recs): the single-rank TTFT */
    kvr_search_params params;
    struct cJSON *costs_json; /* search_costs_describe_json of the model at build time */
    char source[512], model_name[128], links_desc[512];
    int n_layers;
    double kv_bytes_per_token;
    bool has_allgather;
    char overheads_desc[256]; /* "kvr 30 + 20 us; ..." when the model has overheads, else "" */
};

#endif /* KVR_SEARCH_INTERNAL_H */
