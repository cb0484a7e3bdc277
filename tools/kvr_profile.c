/* kvr_profile.c -- kvr-profile: time the runtime's real per-layer work (embed, pre, attn, post,
 * head on the (c, prefix) grid) and its transfers (p2p, KV-Runahead chain, all-gather through
 * kvr_comm) into the SQLite store, with provenance, resumable after a kill.
 *
 * Build: cmake -B build && cmake --build build      Run: build/tools/kvr-profile --help
 *   build/tools/kvr-profile --grid quick                      # real model, ./kvr.db
 *   build/tools/kvr-profile --model tiny --chunks 8:64 --max-context 128 --db /tmp/t.db
 *   build/tools/kvr-profile --comm --ranks 2 --ops none       # transfers only (threads)
 *   mpirun -np 2 build/tools/kvr-profile --transport mpi      # transfers over MPI
 *   build/tools/kvr-profile --resume 3                        # finish an interrupted run
 * Exit codes: 0 complete, 1 runtime failure, 2 usage error, 130 interrupted (run resumable).
 */
#include "kvr_profiler.h"
#include "kvr_search.h"
#include "tool_util.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

typedef struct kvr_profile_opts {
    const char *backend;
    const char *model;
    const char *db;
    const char *grid;
    const char *chunks, *prefixes;
    int64_t max_context;
    int32_t refine; /* -1 = preset */
    const char *ops;
    bool comm, comm_compute;
    int32_t ranks;
    bool ranks_set, transport_set, bytes_set;
    kvr_transport transport;
    int64_t min_bytes, max_bytes;
    int32_t threads;
    double time_budget; /* < 0 = preset */
    int32_t warmup, iters_min, iters_max; /* < 0 = preset */
    double tol;                           /* < 0 = preset */
    int64_t resume;
    int32_t layers;
    uint64_t seed;
    bool seed_set;
    bool json, quiet;
    bool no_overheads;
    int decode;                    /* -1 default (on for cpu), 0 --no-decode, 1 --decode */
    int32_t decode_batch, decode_ctx; /* 0 = the grid's */
} kvr_profile_opts;

enum { OPT_DECODE = 256, OPT_NO_DECODE, OPT_DECODE_BATCH, OPT_DECODE_CONTEXTS };

static void usage(FILE *f) {
    fprintf(f,
            "usage: kvr-profile [options]\n"
            "  -b, --backend cpu|cuda     backend whose ops are timed (default cpu)\n"
            "  -m, --model PATH|PRESET    GGUF file, HF directory or preset (tiny, llama-2-7b, ...);\n"
            "                             default: the real SmolLM2-135M GGUF (scripts/fetch-model)\n"
            "  -d, --db PATH              SQLite store (default ./kvr.db; created if missing)\n"
            "  -g, --grid NAME            quick | standard | full (default standard; docs/profiler.md)\n"
            "  -c, --chunks LO:HI[:K]|LIST   chunk sizes: log range, K points per octave, or c1,c2,..\n"
            "  -P, --prefixes LO:HI[:K]|LIST attention prefixes: smallest non-zero..largest, or a list\n"
            "  -C, --max-context N        largest context (attention: c + prefix <= N)\n"
            "  -R, --refine N             refinement rounds where curves bend (0 = none)\n"
            "  -o, --ops LIST             all | none | embed,pre,attn,post,head (default all)\n"
            "  -x, --comm                 also profile transfers (p2p, chain, all-gather)\n"
            "  -r, --ranks N              ranks for --comm (default 2)\n"
            "  -T, --transport NAME       threads | mpi | same-device | nccl (mpi: run under\n"
            "                             mpirun; transfers only; same-device: device-to-device\n"
            "                             copies between ranks on GPU 0; nccl: rank i on GPU i)\n"
            "  -X, --comm-compute         also the chain with the layer ops running meanwhile\n"
            "  -O, --no-overheads         skip the schedules' fixed overheads (by default, after\n"
            "                             the layer ops: single, kvr, tsp and ring run end to end\n"
            "                             on tiny chunks at two depths; docs/profiler.md)\n"
            "      --no-decode            skip the batched decode steps (by default, on cpu: whole\n"
            "                             serving decode iterations of B requests over T cached\n"
            "                             tokens, for kvr-fit's decode step; docs/profiler.md)\n"
            "      --decode               profile decode steps (default on cpu; cuda has no\n"
            "                             batched decode path yet: an error)\n"
            "      --decode-batch N       decode steps: batch sizes 1, 2, 3, 4, 6, 8, ... up to N (quick\n"
            "                             16, else 32)\n"
            "      --decode-contexts N    decode steps: contexts per batch size (default 3)\n"
            "  -B, --bytes LO:HI          p2p size sweep, K/M/G = KiB/MiB/GiB (default 4K up to one\n"
            "                             layer's K of the largest context)\n"
            "  -t, --threads N            threads per rank for the ops (default 1, as kvr-run)\n"
            "  -s, --time-budget SECONDS  per point: stop adding repetitions after this much timing\n"
            "  -w, --warmup N             warm-up executions per point\n"
            "  -n, --iters MIN[:MAX]      repetitions per point (more until the median is stable)\n"
            "  -e, --tol FRACTION         median stability target (e.g. 0.01 = +-1%%)\n"
            "  -u, --resume RUN_ID        finish an incomplete run with its own parameters\n"
            "  -L, --layers N             presets only: override the layer count\n"
            "  -S, --seed N               token ids, point order, preset weights (default 1234)\n"
            "  -j, --json                 print one JSON summary instead of the table\n"
            "  -q, --quiet                no progress output\n"
            "  -h, --help                 this help\n"
            "Times are microseconds per execution for one layer; bandwidths are decimal GB/s.\n"
            "Exit: 0 complete, 1 runtime failure, 2 usage error, 130 interrupted (resumable).\n");
}

#define usage_error(...) tool_usage_error("kvr-profile", __VA_ARGS__)

/* "4096", "4K", "3M", "1G" (binary). */
static bool parse_size(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0) return false;
    double mul = 1;
    if (*end == 'K' || *end == 'k') mul = 1024, end++;
    else if (*end == 'M' || *end == 'm') mul = 1024.0 * 1024, end++;
    else if (*end == 'G' || *end == 'g') mul = 1024.0 * 1024 * 1024, end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end || v * mul > 1e15) return false;
    *out = (int64_t)(v * mul);
    return true;
}

/* LO:HI[:K] into a range, or a comma list. */
static int parse_axis(const char *what, const char *s, int64_t *lo, int64_t *hi, double *per_oct,
                      int64_t *list, int32_t *n_list) {
    if (strchr(s, ',') || !strchr(s, ':')) {
        *n_list = 0;
        const char *q = s;
        while (*q) {
            if (*n_list >= 64) return usage_error("%s: more than 64 values", what);
            char *end;
            errno = 0;
            long long v = strtoll(q, &end, 10);
            if (end == q || errno || v < 0 || (*end && *end != ','))
                return usage_error("%s: '%s' is not LO:HI[:K] or a list of integers", what, s);
            list[(*n_list)++] = v;
            q = *end ? end + 1 : end;
        }
        for (int32_t i = 1; i < *n_list; i++)
            if (list[i] <= list[i - 1])
                return usage_error("%s: list values must increase", what);
        return 0;
    }
    long long a, b;
    double k = *per_oct;
    int n = sscanf(s, "%lld:%lld:%lf", &a, &b, &k);
    char tail[2];
    if (n < 2 || a < 0 || b < a || !(k > 0) || k > 64 ||
        (n == 2 && sscanf(s, "%*d:%*d%1s", tail) == 1))
        return usage_error("%s: '%s' is not LO:HI[:K] with 0 <= LO <= HI and 0 < K <= 64", what,
                           s);
    *lo = a, *hi = b, *per_oct = k;
    *n_list = 0;
    return 0;
}

static int parse_opts(int argc, char **argv, kvr_profile_opts *o) {
    static const struct option lo[] = {
        {"backend", required_argument, 0, 'b'},    {"model", required_argument, 0, 'm'},
        {"db", required_argument, 0, 'd'},         {"grid", required_argument, 0, 'g'},
        {"chunks", required_argument, 0, 'c'},     {"prefixes", required_argument, 0, 'P'},
        {"max-context", required_argument, 0, 'C'}, {"refine", required_argument, 0, 'R'},
        {"ops", required_argument, 0, 'o'},        {"comm", no_argument, 0, 'x'},
        {"ranks", required_argument, 0, 'r'},      {"transport", required_argument, 0, 'T'},
        {"comm-compute", no_argument, 0, 'X'},     {"bytes", required_argument, 0, 'B'},
        {"threads", required_argument, 0, 't'},    {"time-budget", required_argument, 0, 's'},
        {"warmup", required_argument, 0, 'w'},     {"iters", required_argument, 0, 'n'},
        {"tol", required_argument, 0, 'e'},        {"resume", required_argument, 0, 'u'},
        {"layers", required_argument, 0, 'L'},     {"seed", required_argument, 0, 'S'},
        {"json", no_argument, 0, 'j'},             {"quiet", no_argument, 0, 'q'},
        {"no-overheads", no_argument, 0, 'O'},     {"help", no_argument, 0, 'h'},
        {"decode", no_argument, 0, OPT_DECODE},    {"no-decode", no_argument, 0, OPT_NO_DECODE},
        {"decode-batch", required_argument, 0, OPT_DECODE_BATCH},
        {"decode-contexts", required_argument, 0, OPT_DECODE_CONTEXTS},
        {0, 0, 0, 0}};
    kvr_error e;
    int ch;
    opterr = 0;
    int n_run_opts = 0; /* options that --resume does not combine with */
    while ((ch = getopt_long(argc, argv, ":b:m:d:g:c:P:C:R:o:xr:T:XOB:t:s:w:n:e:u:L:S:jqh", lo,
                             NULL)) != -1) {
        int64_t v;
        if (strchr("gcPCRoxrXOBtswneLS", ch)) n_run_opts++; /* --transport mpi may resume */
        switch (ch) {
            case 'b':
            {
                const kvr_backend *be; /* known but not built in: reported (exit 1) by main */
                if (kvr_backend_get(optarg, &be, &e) == KVR_ERR_INVALID_ARG)
                    return usage_error("--backend: %s", e.msg);
                o->backend = optarg;
            }
                break;
            case 'm': o->model = optarg; break;
            case 'd': o->db = optarg; break;
            case 'g':
                if (strcmp(optarg, "quick") && strcmp(optarg, "standard") && strcmp(optarg, "full"))
                    return usage_error("--grid: unknown grid '%s' (quick, standard, full)", optarg);
                o->grid = optarg;
                break;
            case 'c': o->chunks = optarg; break;
            case 'P': o->prefixes = optarg; break;
            case 'C':
                if (kvr_parse_i64(optarg, 1, (int64_t)1 << 24, &v, &e))
                    return usage_error("--max-context: %s", e.msg);
                o->max_context = v;
                break;
            case 'R':
                if (kvr_parse_i64(optarg, 0, 8, &v, &e)) return usage_error("--refine: %s", e.msg);
                o->refine = (int32_t)v;
                break;
            case 'o': {
                uint32_t mask;
                if (kvr_prof_ops_parse(optarg, &mask, &e)) return usage_error("--ops: %s", e.msg);
                o->ops = optarg;
                break;
            }
            case 'x': o->comm = true; break;
            case 'O': o->no_overheads = true; break;
            case OPT_DECODE:
            case OPT_NO_DECODE:
                if (o->decode >= 0 && o->decode != (ch == OPT_DECODE))
                    return usage_error("%s", "--decode and --no-decode: give one");
                o->decode = ch == OPT_DECODE;
                n_run_opts++;
                break;
            case OPT_DECODE_BATCH:
                if (kvr_parse_i64(optarg, 1, 256, &v, &e)) return usage_error("--decode-batch: %s", e.msg);
                o->decode_batch = (int32_t)v;
                n_run_opts++;
                break;
            case OPT_DECODE_CONTEXTS:
                if (kvr_parse_i64(optarg, 1, 16, &v, &e))
                    return usage_error("--decode-contexts: %s", e.msg);
                o->decode_ctx = (int32_t)v;
                n_run_opts++;
                break;
            case 'r':
                if (kvr_parse_i64(optarg, 2, KVR_MAX_RANKS, &v, &e))
                    return usage_error("--ranks: %s", e.msg);
                o->ranks = (int32_t)v;
                o->ranks_set = true;
                break;
            case 'T':
                if (kvr_comm_transport_parse(optarg, &o->transport, &e))
                    return usage_error("--transport: %s", e.msg);
                o->transport_set = true;
                break;
            case 'X': o->comm_compute = true; break;
            case 'B': {
                char a[64], b[64];
                const char *colon = strchr(optarg, ':');
                if (!colon || (size_t)(colon - optarg) >= sizeof a || strlen(colon + 1) >= sizeof b)
                    return usage_error("--bytes: '%s' is not LO:HI (e.g. 4K:64M)", optarg);
                memcpy(a, optarg, (size_t)(colon - optarg));
                a[colon - optarg] = 0;
                snprintf(b, sizeof b, "%s", colon + 1);
                if (!parse_size(a, &o->min_bytes) || !parse_size(b, &o->max_bytes) ||
                    o->min_bytes < 1 || o->max_bytes < o->min_bytes)
                    return usage_error("--bytes: '%s' is not LO:HI with 1 <= LO <= HI", optarg);
                o->bytes_set = true;
                break;
            }
            case 't':
                if (kvr_parse_i64(optarg, 1, 1024, &v, &e)) return usage_error("--threads: %s", e.msg);
                o->threads = (int32_t)v;
                break;
            case 's': {
                char *end;
                errno = 0;
                double d = strtod(optarg, &end);
                if (end == optarg || *end || errno || !(d > 0) || d > 86400)
                    return usage_error("--time-budget: '%s' is not a number of seconds in (0, 86400]",
                                       optarg);
                o->time_budget = d;
                break;
            }
            case 'w':
                if (kvr_parse_i64(optarg, 0, 1000, &v, &e)) return usage_error("--warmup: %s", e.msg);
                o->warmup = (int32_t)v;
                break;
            case 'n': {
                long long a, b = -1;
                int k = sscanf(optarg, "%lld:%lld", &a, &b);
                char tail[2];
                if (k < 1 || a < 1 || a > 100000 || (k == 2 && (b < a || b > 100000)) ||
                    (k == 1 && sscanf(optarg, "%*d%1s", tail) == 1))
                    return usage_error("--iters: '%s' is not MIN or MIN:MAX (1..100000)", optarg);
                o->iters_min = (int32_t)a;
                o->iters_max = k == 2 ? (int32_t)b : -1;
                break;
            }
            case 'e': {
                char *end;
                errno = 0;
                double d = strtod(optarg, &end);
                if (end == optarg || *end || errno || !(d > 0) || d >= 1)
                    return usage_error("--tol: '%s' is not a fraction in (0, 1)", optarg);
                o->tol = d;
                break;
            }
            case 'u':
                if (kvr_parse_i64(optarg, 1, INT64_MAX, &v, &e)) return usage_error("--resume: %s", e.msg);
                o->resume = v;
                break;
            case 'L':
                if (kvr_parse_i64(optarg, 1, 1024, &v, &e)) return usage_error("--layers: %s", e.msg);
                o->layers = (int32_t)v;
                break;
            case 'S':
                if (kvr_parse_i64(optarg, 0, INT64_MAX, &v, &e)) return usage_error("--seed: %s", e.msg);
                o->seed = (uint64_t)v;
                o->seed_set = true;
                break;
            case 'j': o->json = true; break;
            case 'q': o->quiet = true; break;
            case 'h': usage(stdout); exit(0);
            case ':': return usage_error("option %s needs a value", argv[optind - 1]);
            default: return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
    if (o->resume && n_run_opts)
        return usage_error("--resume runs with the run's own parameters: give only --db, --model, "
                           "--transport, --json, --quiet with it");
    if (o->transport == KVR_TRANSPORT_MPI) {
        if (o->ops && strcmp(o->ops, "none"))
            return usage_error("--transport mpi profiles transfers only; profile the layer ops "
                               "in one process (without --transport mpi)");
        o->comm = true;
        o->ops = "none";
    }
    if (!o->comm && (o->ranks_set || o->transport_set || o->comm_compute || o->bytes_set))
        return usage_error("--ranks, --transport, --comm-compute and --bytes apply to --comm");
    if (o->iters_max >= 0 && o->iters_max < o->iters_min)
        return usage_error("--iters: MAX below MIN");
    return 0;
}

// ----------------------------------------------------------------------------
// progress and signals

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

typedef struct progress_ctx {
    kvr_progress bar;
    bool on;
} progress_ctx;

static void on_point(void *user, const char *label, const kvr_timing_stats *st, int64_t done,
                     int64_t total) {
    (void)label, (void)st;
    progress_ctx *pc = user;
    if (!pc->on) return;
    pc->bar.total = total > 0 ? total : 1;
    kvr_progress_update(&pc->bar, done);
}

// ----------------------------------------------------------------------------
// summary

static void print_num(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, "%.6g", v);
    else
        fprintf(f, "null");
}

typedef struct op_summary {
    int64_t points, c_lo, c_hi, p_hi, n_stable, iters;
    double t_lo, t_hi;
} op_summary;

static void summarize_ops(const kvr_db_layer_sample *s, int64_t n, op_summary *os) {
    for (int op = 0; op < KVR_OP_LAYER_COUNT; op++) {
        op_summary *o = &os[op];
        memset(o, 0, sizeof *o);
        o->c_lo = INT64_MAX;
        for (int64_t i = 0; i < n; i++) {
            if (strcmp(s[i].op, kvr_op_name((kvr_op)op))) continue;
            o->points++;
            o->iters += s[i].stats.n_iters;
            o->n_stable += s[i].stats.is_stable;
            o->p_hi = KVR_MAX(o->p_hi, s[i].prefix);
            if (s[i].prefix == 0 && s[i].c < o->c_lo) o->c_lo = s[i].c, o->t_lo = s[i].stats.median_us;
            if (s[i].prefix == 0 && s[i].c >= o->c_hi) o->c_hi = s[i].c, o->t_hi = s[i].stats.median_us;
        }
    }
}

typedef struct xfer_summary {
    int64_t points, size_lo, size_hi, n_pairs;
    double lat_us, algbw, busbw;
} xfer_summary;

static const char *const pattern_names[] = {"p2p", "chain", "chain_compute", "allgather"};

static void summarize_xfers(const kvr_db_transfer_sample *s, int64_t n, xfer_summary *xs) {
    for (int p = 0; p < 4; p++) {
        xfer_summary *x = &xs[p];
        memset(x, 0, sizeof *x);
        x->size_lo = INT64_MAX;
        x->lat_us = NAN;
        int32_t pairs[64][2];
        for (int64_t i = 0; i < n; i++) {
            if (strcmp(s[i].pattern, pattern_names[p])) continue;
            x->points++;
            if (s[i].size_bytes < x->size_lo) x->size_lo = s[i].size_bytes, x->lat_us = s[i].stats.median_us;
            x->size_hi = KVR_MAX(x->size_hi, s[i].size_bytes);
            if (isfinite(s[i].algbw_gbps) && s[i].algbw_gbps > x->algbw) x->algbw = s[i].algbw_gbps;
            if (isfinite(s[i].busbw_gbps) && s[i].busbw_gbps > x->busbw) x->busbw = s[i].busbw_gbps;
            bool seen = false;
            for (int64_t j = 0; j < x->n_pairs && j < 64; j++)
                seen |= pairs[j][0] == s[i].src && pairs[j][1] == s[i].dst;
            if (!seen && x->n_pairs < 64) {
                pairs[x->n_pairs][0] = s[i].src;
                pairs[x->n_pairs][1] = s[i].dst;
                x->n_pairs++;
            }
        }
    }
}

/* The decode-step samples of a run (op "decode": c = B, prefix = T), as text or JSON. */
static void print_decode(const kvr_db_layer_sample *ls, int64_t nl, bool json) {
    bool any = false;
    for (int64_t i = 0; i < nl; i++) {
        if (strcmp(ls[i].op, KVR_SEARCH_DECODE_OP)) continue;
        const kvr_timing_stats *t = &ls[i].stats;
        if (json) {
            printf("%s{\"batch\":%lld,\"ctx\":%lld,\"median_us\":%.3f,\"p10_us\":%.3f,"
                   "\"p90_us\":%.3f,\"iters\":%d}",
                   any ? "," : "", (long long)ls[i].c, (long long)ls[i].prefix, t->median_us,
                   t->p10_us, t->p90_us, t->n_iters);
        } else {
            if (!any) {
                printf("\n%-6s %5s %7s %11s %11s %11s %7s\n", "decode", "B", "T", "p10",
                       "median", "p90", "iters");
                printf("%-6s %5s %7s %11s %11s %11s %7s\n", "", "(-)", "(tokens)", "(us)", "(us)",
                       "(us)", "(-)");
            }
            printf("%-6s %5lld %7lld %11.1f %11.1f %11.1f %7d\n", "", (long long)ls[i].c,
                   (long long)ls[i].prefix, t->p10_us, t->median_us, t->p90_us, t->n_iters);
        }
        any = true;
    }
    if (any && !json)
        printf("# decode: whole serving decode iterations (B requests, T cached tokens in all, "
               "head and sampling); kvr-fit fits the decode step from them\n");
}

/* The overhead samples of a run (ovh_*) and each schedule's fitted terms, as text or JSON. */
static void print_overheads(const kvr_db_layer_sample *ls, int64_t nl, bool json) {
    bool any = false;
    for (int md = 0; md < KVR_MODE_COUNT; md++) {
        int L[64], n = 0;
        double y[64];
        for (int64_t i = 0; i < nl && n < 64; i++) {
            kvr_mode m;
            if (!kvr_search_overhead_op_parse(ls[i].op, &m) || m != (kvr_mode)md) continue;
            if (!any && !json) {
                printf("\n%-8s %6s %5s %11s %11s %11s %7s\n", "overhead", "layers", "ranks",
                       "excess p10", "median", "p90", "iters");
                printf("%-8s %6s %5s %11s %11s %11s %7s\n", "", "(-)", "(-)", "(us)", "(us)",
                       "(us)", "(-)");
            }
            if (json)
                printf("%s{\"schedule\":\"%s\",\"layers\":%lld,\"ranks\":%lld,"
                       "\"excess_median_us\":%.3f,\"excess_p10_us\":%.3f,\"excess_p90_us\":%.3f}",
                       any ? "," : "", kvr_mode_name((kvr_mode)md), (long long)ls[i].c,
                       (long long)ls[i].prefix, ls[i].stats.median_us, ls[i].stats.p10_us,
                       ls[i].stats.p90_us);
            else
                printf("%-8s %6lld %5lld %11.1f %11.1f %11.1f %7d\n", kvr_mode_name((kvr_mode)md),
                       (long long)ls[i].c, (long long)ls[i].prefix, ls[i].stats.p10_us,
                       ls[i].stats.median_us, ls[i].stats.p90_us, ls[i].stats.n_iters);
            any = true;
            if (isfinite(ls[i].stats.median_us) && ls[i].c >= 1 && ls[i].c <= INT32_MAX) {
                L[n] = (int)ls[i].c;
                y[n++] = ls[i].stats.median_us;
            }
        }
        kvr_search_overhead o;
        bool clamped = false;
        if (!json && n > 0 && kvr_search_overhead_fit(L, y, n, &o, &clamped, NULL) == KVR_OK)
            printf("# %s: run %.1f us + %.2f us per layer step%s\n", kvr_mode_name((kvr_mode)md),
                   o.run_us, o.layer_us,
                   clamped ? " (a term fitted negative -- the op model over-predicts it -- "
                             "clamped at 0)"
                           : "");
    }
}

/* The end-to-end check's samples of a run (e2e_*: c = tokens, prefix = ranks, TTFTs of
 * identical repeats), as text or JSON. */
static void print_e2e(const kvr_db_layer_sample *ls, int64_t nl, bool json) {
    bool any = false;
    for (int64_t i = 0; i < nl; i++) {
        if (strncmp(ls[i].op, "e2e_", 4)) continue;
        const kvr_timing_stats *t = &ls[i].stats;
        const double spread = t->median_us > 0 ? (t->p90_us - t->p10_us) / t->median_us : NAN;
        if (json) {
            printf("%s{\"schedule\":\"%s\",\"tokens\":%lld,\"ranks\":%lld,\"median_us\":%.3f,"
                   "\"min_us\":%.3f,\"p10_us\":%.3f,\"p90_us\":%.3f,\"max_us\":%.3f,"
                   "\"runs\":%d,\"spread\":",
                   any ? "," : "", ls[i].op + 4, (long long)ls[i].c, (long long)ls[i].prefix,
                   t->median_us, t->min_us, t->p10_us, t->p90_us, t->max_us, t->n_iters);
            print_num(stdout, spread);
            printf("}");
        } else {
            if (!any) {
                printf("\n%-8s %6s %5s %11s %11s %11s %11s %11s %7s %5s\n", "e2e", "tokens",
                       "ranks", "TTFT min", "p10", "median", "p90", "max", "spread", "runs");
                printf("%-8s %6s %5s %11s %11s %11s %11s %11s %7s %5s\n", "", "(-)", "(-)", "(ms)",
                       "(ms)", "(ms)", "(ms)", "(ms)", "(%)", "(-)");
            }
            printf("%-8s %6lld %5lld %11.3f %11.3f %11.3f %11.3f %11.3f %7.2f %5d\n",
                   ls[i].op + 4, (long long)ls[i].c, (long long)ls[i].prefix, 1e-3 * t->min_us,
                   1e-3 * t->p10_us, 1e-3 * t->median_us, 1e-3 * t->p90_us, 1e-3 * t->max_us,
                   100 * spread, t->n_iters);
        }
        any = true;
    }
    if (any && !json)
        printf("# e2e: the end-to-end check -- identical runs of the whole model, fitted by nothing; "
               "kvr-fit's error band is their held-out prediction error + their run-to-run "
               "spread ((p90 - p10) / median)\n");
}

static int print_summary(kvr_db *db, const kvr_db_run *run, const kvr_db_model *mrec,
                         const kvr_profile_result *lr, const kvr_profile_result *xr,
                         const kvr_profile_result *orr, const kvr_profile_result *dr, bool json,
                         const char *status, double elapsed_s) {
    kvr_error err;
    kvr_db_layer_sample *ls = NULL;
    kvr_db_transfer_sample *ts = NULL;
    int64_t nl = 0, nt = 0;
    if (kvr_db_layer_samples_get(db, run->id, &ls, &nl, &err) != KVR_OK ||
        kvr_db_transfer_samples_get(db, run->id, &ts, &nt, &err) != KVR_OK) {
        fprintf(stderr, "kvr-profile: reading the run back: %s\n", err.msg);
        kvr_db_free(ls);
        return 1;
    }
    op_summary os[KVR_OP_LAYER_COUNT];
    xfer_summary xs[4];
    summarize_ops(ls, nl, os);
    summarize_xfers(ts, nt, xs);
    /* predicted single-rank TTFT at the largest chunk of the P = 0 rows and 1/2, 1/4, 1/8 of it */
    int64_t ctxs[4];
    double ttft[4];
    int nc = 0;
    kvr_profile_predict_single_series(ls, nl, mrec->n_layers, ctxs, ttft, &nc);
    const int64_t points = lr->n_points + xr->n_points + orr->n_points + dr->n_points;
    const int64_t measured = lr->n_measured + xr->n_measured + orr->n_measured + dr->n_measured,
                  skipped = lr->n_skipped + xr->n_skipped + orr->n_skipped + dr->n_skipped;
    if (json) {
        printf("{\"run_id\":%lld,\"status\":\"%s\",\"db\":", (long long)run->id, status);
        kvr_json_write_str(stdout, kvr_db_path(db));
        printf(",\"model\":");
        kvr_json_write_str(stdout, mrec->name);
        printf(",\"n_layers\":%d,\"grid\":", mrec->n_layers);
        kvr_json_write_str(stdout, run->grid);
        printf(",\"points\":%lld,\"measured\":%lld,\"skipped\":%lld,\"elapsed_s\":%.3f,"
               "\"layer_samples\":%lld,\"transfer_samples\":%lld,\"timer_overhead_us\":",
               (long long)points, (long long)measured, (long long)skipped, elapsed_s,
               (long long)nl, (long long)nt);
        print_num(stdout, run->timer_overhead_us);
        printf(",\"ops\":[");
        bool first = true;
        for (int op = 0; op < KVR_OP_LAYER_COUNT; op++) {
            const op_summary *o = &os[op];
            if (!o->points) continue;
            printf("%s{\"op\":\"%s\",\"points\":%lld,\"c_min\":%lld,\"c_max\":%lld,\"prefix_max\":%"
                   "lld,"
                   "\"median_us_c_min\":",
                   first ? "" : ",", kvr_op_name((kvr_op)op), (long long)o->points,
                   (long long)(o->c_lo == INT64_MAX ? 0 : o->c_lo), (long long)o->c_hi,
                   (long long)o->p_hi);
            print_num(stdout, o->t_lo);
            printf(",\"median_us_c_max\":");
            print_num(stdout, o->t_hi);
            printf(",\"stable_frac\":%.3f,\"iters\":%lld}", (double)o->n_stable / (double)o->points,
                   (long long)o->iters);
            first = false;
        }
        printf("],\"transfers\":[");
        first = true;
        for (int p = 0; p < 4; p++) {
            const xfer_summary *x = &xs[p];
            if (!x->points) continue;
            printf("%s{\"pattern\":\"%s\",\"samples\":%lld,\"size_min\":%lld,\"size_max\":%lld,"
                   "\"median_us_size_min\":",
                   first ? "" : ",", pattern_names[p], (long long)x->points, (long long)x->size_lo,
                   (long long)x->size_hi);
            print_num(stdout, x->lat_us);
            printf(",\"algbw_gbps_max\":");
            print_num(stdout, x->algbw);
            printf(",\"busbw_gbps_max\":");
            print_num(stdout, x->busbw);
            printf("}");
            first = false;
        }
        printf("],\"overheads\":[");
        print_overheads(ls, nl, true);
        printf("],\"e2e\":[");
        print_e2e(ls, nl, true);
        printf("],\"decode\":[");
        print_decode(ls, nl, true);
        printf("],\"predicted_single_ttft_ms\":{");
        for (int i = 0; i < nc; i++) printf("%s\"%lld\":%.3f", i ? "," : "", (long long)ctxs[i], ttft[i]);
        printf("}}\n");
    } else {
        if (nl) {
            printf("%-6s %6s %13s %11s %12s %12s %7s %7s\n", "op", "points", "c", "prefix",
                   "t(c min)", "t(c max)", "stable", "iters");
            printf("%-6s %6s %13s %11s %12s %12s %7s %7s\n", "", "", "(tokens)", "(max)", "(us)",
                   "(us)", "(%)", "(-)");
            for (int op = 0; op < KVR_OP_LAYER_COUNT; op++) {
                const op_summary *o = &os[op];
                if (!o->points) continue;
                char cr[32];
                snprintf(cr, sizeof cr, "%lld..%lld", (long long)(o->c_lo == INT64_MAX ? 0 : o->c_lo),
                         (long long)o->c_hi);
                printf("%-6s %6lld %13s %11lld %12.2f %12.2f %7.0f %7lld\n",
                       kvr_op_name((kvr_op)op), (long long)o->points, cr, (long long)o->p_hi,
                       o->t_lo, o->t_hi, 100.0 * (double)o->n_stable / (double)o->points,
                       (long long)o->iters);
            }
        }
        if (nt) {
            printf("%s%-13s %7s %19s %12s %10s %10s\n", nl ? "\n" : "", "pattern", "samples",
                   "bytes", "t(min size)", "algbw", "busbw");
            printf("%-13s %7s %19s %12s %10s %10s\n", "", "", "(min..max)", "(us)", "(GB/s max)",
                   "(GB/s max)");
            for (int p = 0; p < 4; p++) {
                const xfer_summary *x = &xs[p];
                if (!x->points) continue;
                char br[40];
                snprintf(br, sizeof br, "%lld..%lld", (long long)x->size_lo, (long long)x->size_hi);
                printf("%-13s %7lld %19s %12.2f %10.3f %10.3f\n", pattern_names[p],
                       (long long)x->points, br, x->lat_us, x->algbw, x->busbw);
            }
            printf("# busbw = algbw x factor: 1 for p2p and chain links, (n-1)/n for all-gather "
                   "(nccl-tests)\n");
        }
        print_overheads(ls, nl, false);
        print_e2e(ls, nl, false);
        print_decode(ls, nl, false);
        if (nc) {
            printf("# predicted single-rank TTFT (embed + %d x (pre + attn + post) + head):",
                   mrec->n_layers);
            for (int i = 0; i < nc; i++) printf(" %lld tok %.1f ms%s", (long long)ctxs[i], ttft[i], i + 1 < nc ? "," : "");
            printf("\n");
        }
        printf("# run %lld %s: %lld points (%lld measured, %lld already stored) in %.1f s; db %s\n",
               (long long)run->id, status, (long long)points, (long long)measured,
               (long long)skipped, elapsed_s, kvr_db_path(db));
    }
    kvr_db_free(ls);
    kvr_db_free(ts);
    return 0;
}

// ----------------------------------------------------------------------------
// main

/* Apply the options to profile parameters for a new run. */
static int build_params(const kvr_profile_opts *o, const kvr_model_config *cfg, const char *model,
                        kvr_profile_params *p) {
    kvr_error e;
    *p = kvr_profile_params_default();
    const int64_t cap = o->max_context ? o->max_context : cfg->max_context;
    if (kvr_grid_preset(o->grid ? o->grid : "standard", cap, &p->grid, &p->timing, &e) != KVR_OK)
        return usage_error("--grid: %s", e.msg);
    if (o->max_context) {
        p->grid.ctx_max = o->max_context;
        p->grid.c_max = KVR_MIN(p->grid.c_max, o->max_context);
    }
    if (o->chunks) {
        int rc = parse_axis("--chunks", o->chunks, &p->grid.c_min, &p->grid.c_max,
                            &p->grid.c_per_octave, p->grid.c_list, &p->grid.n_c_list);
        if (rc) return rc;
        if (!p->grid.n_c_list && p->grid.c_min < 1) return usage_error("--chunks: chunks start at 1");
        if (p->grid.n_c_list && p->grid.c_list[0] < 1) return usage_error("--chunks: chunks start at 1");
        const int64_t cm = p->grid.n_c_list ? p->grid.c_list[p->grid.n_c_list - 1] : p->grid.c_max;
        if (!o->max_context) p->grid.ctx_max = KVR_MAX(p->grid.ctx_max, cm);
        if (cm > p->grid.ctx_max)
            return usage_error("--chunks: largest chunk %lld exceeds --max-context %lld",
                               (long long)cm, (long long)p->grid.ctx_max);
        p->grid.p_min = KVR_MIN(p->grid.p_min, p->grid.ctx_max);
    }
    if (o->prefixes) {
        int64_t hi = 0;
        int rc = parse_axis("--prefixes", o->prefixes, &p->grid.p_min, &hi, &p->grid.p_per_octave,
                            p->grid.p_list, &p->grid.n_p_list);
        if (rc) return rc;
        if (!p->grid.n_p_list) {
            if (p->grid.p_min < 1) p->grid.p_min = 1;
            if (!o->max_context && hi > p->grid.ctx_max) p->grid.ctx_max = hi;
        }
    }
    if (o->chunks || o->prefixes || o->max_context) snprintf(p->grid.name, sizeof p->grid.name, "custom");
    if (o->refine >= 0) p->grid.refine_levels = o->refine;
    if (o->time_budget > 0) p->timing.budget_s = o->time_budget;
    if (o->warmup >= 0) p->timing.n_warmup = o->warmup;
    if (o->iters_min > 0) {
        p->timing.min_iters = o->iters_min;
        p->timing.max_iters = o->iters_max > 0 ? o->iters_max : KVR_MAX(p->timing.max_iters, o->iters_min);
    }
    if (o->tol > 0) p->timing.rel_tol = o->tol;
    if (o->ops && kvr_prof_ops_parse(o->ops, &p->ops, &e) != KVR_OK) return usage_error("--ops: %s", e.msg);
    p->n_threads = o->threads;
    p->comm = o->comm;
    p->n_ranks = o->ranks;
    p->transport = o->transport;
    p->comm_compute = o->comm_compute;
    if (o->bytes_set) {
        p->comm_min_bytes = o->min_bytes;
        p->comm_max_bytes = o->max_bytes;
    }
    if (o->seed_set) p->seed = o->seed;
    p->model_layers = o->layers;
    p->overheads = !o->no_overheads;
    /* decode steps: the paged runner exists on cpu only (kvr_kv_pool_create: unsupported else) */
    const bool cpu = !strcmp(o->backend, "cpu");
    if (o->decode == 1 && !cpu)
        return usage_error("--decode: backend %s has no batched decode path (paged KV pool) yet; "
                           "profile decode steps with --backend cpu", o->backend);
    p->decode = o->decode == 1 || (o->decode < 0 && cpu);
    const bool quick = o->grid && !strcmp(o->grid, "quick");
    p->decode_max_batch = o->decode_batch ? o->decode_batch : quick ? 16 : 32;
    p->decode_n_ctx = o->decode_ctx ? o->decode_ctx : 3;
    if (p->decode && p->grid.ctx_max < 2)
        return usage_error("%s", "decode steps need --max-context >= 2 (or --no-decode)");
    snprintf(p->model, sizeof p->model, "%.511s", model);
    if (!p->ops && !p->comm) return usage_error("--ops none without --comm: nothing to profile");
    return 0;
}

/* The tool's side of kvr_profile_run: its options, the progress bar, a usage error's exit code. */
typedef struct profile_tool {
    const kvr_profile_opts *o;
    progress_ctx pc;
    int usage_rc;
} profile_tool;

static kvr_status make_params(void *user, const kvr_model_config *cfg, const char *model,
                              kvr_profile_params *p, kvr_error *err) {
    profile_tool *t = user;
    t->usage_rc = build_params(t->o, cfg, model, p);
    return t->usage_rc ? kvr_error_set(err, KVR_ERR_INVALID_ARG, "usage error") : KVR_OK;
}

static void on_start(void *user, const kvr_profile_run_info *in) {
    const profile_tool *t = user;
    const kvr_profile_params *pp = &in->params;
    if (!t->o->quiet && !t->o->json)
        printf("# kvr-profile %s (%s): run %lld%s, model %s (%d layers), %s, %d thread(s), grid "
               "%s, ops %s%s%s, db %s\n",
               kvr_version(), kvr_build_commit(), (long long)in->run.id,
               in->resumed ? " (resumed)" : "", in->model.name, in->model.n_layers,
               in->run.device_name, pp->n_threads, pp->grid.name,
               in->run.ops[0] ? in->run.ops : "none",
               pp->comm ? ", transfers over " : "",
               pp->comm ? kvr_comm_transport_name(pp->transport) : "",
               t->o->db);
    fflush(stdout);
}

static void on_phase(void *user, const char *phase, bool begin) {
    profile_tool *t = user;
    if (!t->pc.on) return;
    if (!begin) {
        kvr_progress_finish(&t->pc.bar);
        return;
    }
    kvr_progress_start(&t->pc.bar, stderr,
                       !strcmp(phase, "ops")         ? "kvr-profile ops"
                       : !strcmp(phase, "overheads") ? "kvr-profile overheads"
                       : !strcmp(phase, "decode")    ? "kvr-profile decode"
                                                     : "kvr-profile transfers",
                       1);
}

static void on_point_tool(void *user, const char *label, const kvr_timing_stats *st,
                          int64_t done, int64_t total) {
    on_point(&((profile_tool *)user)->pc, label, st, done, total);
}

int main(int argc, char **argv) {
    kvr_profile_opts o = {.backend = "cpu", .db = "kvr.db", .refine = -1, .ranks = 2, .decode = -1,
                          .transport = KVR_TRANSPORT_THREADS, .threads = 1, .time_budget = -1,
                          .warmup = -1, .iters_min = -1, .iters_max = -1, .tol = -1, .seed = 1234};
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc;
    kvr_error err = {0};
    const kvr_backend *backend;
    if (kvr_backend_get(o.backend, &backend, &err) != KVR_OK) {
        fprintf(stderr, "kvr-profile: --backend %s: %s; profile with --backend cpu\n", o.backend,
                err.msg);
        return 1;
    }
    if (o.comm && (o.transport == KVR_TRANSPORT_SAME_DEVICE || o.transport == KVR_TRANSPORT_NCCL)) {
        /* a device transport: say now, before any run is made, if it cannot run here */
        kvr_comm_params cp = kvr_comm_params_default();
        cp.transport = o.transport;
        cp.n_ranks = o.ranks;
        kvr_comm_world *probe;
        if (kvr_comm_world_create(&cp, &probe, &err) != KVR_OK) {
            fprintf(stderr, "kvr-profile: --transport %s: %s\n", kvr_comm_transport_name(o.transport),
                    err.msg);
            return 1;
        }
        kvr_comm_world_destroy(probe);
    }
    kvr_comm_world *world = NULL; /* MPI: this process's rank in the job */
    kvr_comm *mpi = NULL;
    if (o.transport == KVR_TRANSPORT_MPI) {
        rc = tool_mpi_join("kvr-profile", &argc, &argv, o.ranks_set, &o.ranks, &world, &mpi);
        if (rc) return rc;
        if (o.ranks < 2) {
            fprintf(stderr, "kvr-profile: --transport mpi needs at least 2 processes (mpirun -np 2)\n");
            kvr_comm_world_destroy(world);
            return 2;
        }
    }
    const bool root = !mpi || kvr_comm_rank(mpi) == 0;
    const double t_start = kvr_time_us();

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART | SA_RESETHAND; /* a second Ctrl-C ends the process at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int exit_code = 1;
    kvr_db *db = NULL;
    if (root) { /* rank 0 keeps the store */
        kvr_db_open_params dp = kvr_db_open_params_default();
        if (o.resume) dp.create = false;
        dp.verify = true; /* never add to a damaged file */
        if (kvr_db_open(o.db, &dp, &db, &err) != KVR_OK) {
            fprintf(stderr, "kvr-profile: --db %s: %s\n", o.db, err.msg);
            goto done;
        }
    }
    profile_tool tool = {.o = &o, .pc = {.on = root && !o.quiet}};
    kvr_profile_run_params rp = kvr_profile_run_params_default();
    rp.db = db;
    rp.comm = mpi;
    rp.resume = o.resume;
    rp.model = o.model;
    rp.seed = o.seed;
    rp.layers = o.layers;
    rp.transport = o.transport;
    rp.backend = backend;
    rp.make_params = make_params;
    rp.on_start = on_start;
    rp.on_phase = on_phase;
    rp.stop = &g_stop;
    rp.on_point = on_point_tool;
    rp.user = &tool;
    kvr_profile_run_info info;
    const kvr_status st = kvr_profile_run(&rp, &info, &err);
    const double elapsed = (kvr_time_us() - t_start) * 1e-6;
    const long long id = (long long)info.run.id;
    if (st != KVR_OK) {
        switch (info.stage) {
            case KVR_PROFILE_STAGE_PARAMS: exit_code = tool.usage_rc ? tool.usage_rc : 2; break;
            case KVR_PROFILE_STAGE_MODEL_DEFAULT:
                fprintf(stderr, "kvr-profile: --model not given and %s\n", err.msg);
                break;
            case KVR_PROFILE_STAGE_MODEL:
                fprintf(stderr, "kvr-profile: --model %s: %s\n", info.model_source, err.msg);
                break;
            case KVR_PROFILE_STAGE_RESUME:
                fprintf(stderr, "kvr-profile: --resume %lld: %s\n", (long long)o.resume, err.msg);
                break;
            case KVR_PROFILE_STAGE_STORE:
                fprintf(stderr, "kvr-profile: --db %s: %s\n", o.db, err.msg);
                break;
            case KVR_PROFILE_STAGE_PROFILE:
                if (!root) break;
                fprintf(stderr, "kvr-profile: run %lld: %s\n", id, err.msg);
                if (info.resumable)
                    fprintf(stderr, "kvr-profile: run %lld left incomplete; the points stored so "
                            "far are kept: finish it with --resume %lld\n", id, id);
                break;
            case KVR_PROFILE_STAGE_FINISH:
                fprintf(stderr, "kvr-profile: run %lld: %s\n", id, err.msg);
                break;
            default: break; /* COMM: rank 0's failure, reported there */
        }
        goto done;
    }
    if (root) {
        if (print_summary(db, &info.run, &info.model, &info.layers, &info.transfers, &info.overheads,
                          &info.decode, o.json,
                          info.stopped ? "incomplete" : "complete", elapsed))
            goto done;
        if (info.stopped && mpi)
            fprintf(stderr, "kvr-profile: interrupted: run %lld is incomplete; finish it with "
                    "mpirun -np %d kvr-profile --transport mpi --db %s --resume %lld\n",
                    id, kvr_comm_size(mpi), o.db, id);
        else if (info.stopped)
            fprintf(stderr, "kvr-profile: interrupted: run %lld is incomplete; finish it with "
                    "kvr-profile --db %s --resume %lld\n", id, o.db, id);
    }
    exit_code = info.stopped ? 130 : 0;

done:
    kvr_db_close(db);
    if (mpi && exit_code == 1) kvr_comm_abort(mpi, 1);
    kvr_comm_world_destroy(world);
    return exit_code;
}
