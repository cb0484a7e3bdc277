/* kvr_run.c -- kvr-run: run one prompt through a Llama-family model with the single, kvr
 * (KV-Runahead), tsp or ring prefill schedule and report the first token and TTFT; with
 * --n-predict N, generate N tokens after it (decode on the rank holding the KV cache: greedy,
 * or --temp/--top-k/--top-p with --seed), streaming their text, and report the TPOT. With a store
 * (--db, or ./kvr.db when it exists) or a predictor file (--predictor), --partition auto takes
 * the KVR-P partition for the prompt's length, the TTFT the fitted cost model predicts is shown
 * beside the measured one (a run further off than the fit's error band is flagged: drift), and
 * every run is recorded in the store.
 *
 * Build: cmake -B build && cmake --build build      Run: build/tools/kvr-run --help
 *   build/tools/kvr-run --prompt "The capital of France is" --ranks 2 --mode kvr
 *   build/tools/kvr-run --context 4096 --ranks 2 --partition auto          # needs kvr-fit --kvrp
 *   build/tools/kvr-run --context 4096 --ranks 2 --partition auto --predictor kvrp.json --no-db
 *   mpirun -np 2 build/tools/kvr-run --transport mpi --mode kvr --context 1024
 */
#include "kvr_profiler.h"
#include "kvr_session.h"
#include "tool_util.h"

#include <math.h>
#include <sys/resource.h>
#include <unistd.h>

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

/* --prompt-file reads at most this much; prompts this long or longer, and contexts this large,
 * get a line on stderr before their step (tokenisation: about 1 s per 100 KB) */
#define KVR_RUN_MAX_PROMPT_BYTES ((size_t)256 << 20)
#define KVR_RUN_LONG_PROMPT_BYTES ((size_t)64 << 10)
#define KVR_RUN_LONG_CONTEXT 16384
/* --n-predict: at most this many tokens (the model's context length bounds it further) */
#define KVR_RUN_MAX_PREDICT (1 << 24)

typedef struct kvr_run_opts {
    const char *model;
    const char *prompt;
    const char *prompt_file; /* --prompt-file FILE ('-': standard input) */
    bool force;              /* --force: run even when the memory estimate exceeds what is free */
    int64_t context;
    int32_t ranks;
    bool ranks_set;
    kvr_mode mode;
    const char *partition;
    int32_t threads;
    bool no_bind; /* --no-bind */
    kvr_transport transport;
    bool json;
    const char *dump_logits;
    uint64_t seed;
    int32_t layers;
    int32_t repeat;
    double online_alpha; /* --online-refit */
    bool special;
    bool auto_partition;
    bool auto_mode; /* --mode auto: the strategy table chooses strategy, degree, partition */
    const char *db;        /* --db, or "kvr.db" when it exists (db_default) */
    bool db_default, no_db;
    const char *predictor; /* --predictor FILE */
    const char *backend;   /* --backend NAME (default cpu) */
    int32_t n_predict;     /* --n-predict N: tokens to generate after the prefill (0: none) */
    kvr_sampler_params sampling; /* --temp, --top-k, --top-p (and --seed) */
    bool sampling_set;
} kvr_run_opts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: kvr-run [options]\n"
            "  -m, --model PATH|PRESET   GGUF file, HF directory, or preset (tiny, tiny-mqa,\n"
            "                            llama-2-7b, llama-3-8b, falcon-7b); default: the real\n"
            "                            SmolLM2-135M GGUF (see scripts/fetch-model)\n"
            "  -p, --prompt TEXT         prompt text (needs a model with a tokenizer)\n"
            "  -F, --prompt-file FILE    the prompt text from FILE ('-': standard input), for\n"
            "                            prompts longer than a command line holds\n"
            "  -c, --context N           N seeded random token ids instead of a prompt\n"
            "  -r, --ranks N             number of ranks (default 1; with mpi: the job size;\n"
            "                            with --mode auto: the most offered)\n"
            "  -M, --mode MODE           single | kvr | tsp | ring | auto (default: single for 1\n"
            "                            rank, else kvr; ring: 2 x ranks zigzag chunks, rank 0\n"
            "                            emits); auto: the predictor's strategy table picks\n"
            "                            strategy, degree (<= --ranks, 1 = single) and partition\n"
            "                            for this context among what the runtime can run\n"
            "  -P, --partition SPEC      kvr chunk sizes: even | auto | c0,c1,... (default even);\n"
            "                            auto: the KVR-P partition for this context (predictor\n"
            "                            from --predictor FILE, else the newest in the store for\n"
            "                            this model and rank count: kvr-fit --kvrp)\n"
            "  -t, --threads N           threads per rank (default 1)\n"
            "      --no-bind             ranks as threads: leave their placement to the OS (by\n"
            "                            default, with 2 ranks or more, rank i runs on CPUs\n"
            "                            i*N .. i*N+N-1 of those allowed, when ranks x N are)\n");
    fprintf(f,
            "  -b, --backend NAME        cpu | cuda: where the layer ops run (default cpu)\n"
            "  -T, --transport NAME      threads | mpi | same-device | nccl (default threads;\n"
            "                            mpi under mpirun; same-device: every rank on one GPU;\n"
            "                            nccl: rank i on GPU i, device K/V: --backend cuda)\n"
            "  -n, --repeat N            run N times, report the median-TTFT run (default 1)\n"
            "      --online-refit A      refit the prediction online over the --repeat runs: an\n"
            "                            exponentially weighted factor of weight A in (0, 1]\n"
            "                            (a long-lived runtime following the machine; off)\n"
            "  -s, --seed N              seed for --context ids, preset weights and sampling\n"
            "                            (default 1234)\n"
            "  -L, --layers N            presets only: override the layer count\n"
            "  -S, --no-special          do not parse special tokens (<|im_start|>) in --prompt\n"
            "  -D, --dump-logits FILE    write last-token logits (float32 LE, vocab entries); with\n"
            "                            --n-predict, those of every generated token in turn\n"
            "  -d, --db PATH             the store: KVR-P predictors, fitted cost models, and\n"
            "                            where every run is recorded (default ./kvr.db when it\n"
            "                            exists; a given PATH is created when missing)\n"
            "  -E, --predictor FILE      predictor file (kvr-fit --export) for --partition auto\n"
            "                            and the predicted TTFT, without a store\n"
            "  -N, --no-db               use no store (not even ./kvr.db): nothing is recorded\n"
            "      --n-predict N         generate N tokens after the prefill (default 0: none) on\n"
            "                            the rank holding the KV cache, print their text as it\n"
            "                            comes, then TTFT and the time per output token (TPOT);\n"
            "                            stops early at the model's end-of-generation tokens\n"
            "      --temp T              sampling temperature (default 0: greedy)\n"
            "      --top-k K             sample among the K most likely tokens (default 0: all)\n"
            "      --top-p P             sample among the most likely tokens holding P of the\n"
            "                            probability, 0 < P <= 1 (default 1: all)\n"
            "      --force               run even when the memory the run needs (weights,\n"
            "                            workspaces, KV cache: estimated first) exceeds what the\n"
            "                            machine has available\n"
            "  -j, --json                print one JSON object instead of the table\n"
            "  -h, --help                this help\n");
}

#define usage_error(...) tool_usage_error("kvr-run", __VA_ARGS__)

/* --dump-logits must not overwrite an input: the model, the store, the predictor or prompt file
 * (device + inode, after links: kvr_output_check). Exit 2 with both paths named. */
static int check_outputs(const kvr_run_opts *o) {
    const kvr_path_role in[] = {{"--model", o->model},
                                {"--db", o->db},
                                {"--predictor", o->predictor},
                                {"--prompt-file", o->prompt_file}};
    kvr_error e;
    if (kvr_output_check("--dump-logits", o->dump_logits, in, 4, &e) != KVR_OK)
        return usage_error("%s", e.msg);
    return 0;
}

static int parse_opts(int argc, char **argv, kvr_run_opts *o) {
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'},     {"prompt", required_argument, 0, 'p'},
        {"context", required_argument, 0, 'c'},   {"ranks", required_argument, 0, 'r'},
        {"mode", required_argument, 0, 'M'},      {"partition", required_argument, 0, 'P'},
        {"threads", required_argument, 0, 't'},   {"transport", required_argument, 0, 'T'},
        {"repeat", required_argument, 0, 'n'},    {"seed", required_argument, 0, 's'},
        {"layers", required_argument, 0, 'L'},    {"no-special", no_argument, 0, 'S'},
        {"dump-logits", required_argument, 0, 'D'}, {"json", no_argument, 0, 'j'},
        {"db", required_argument, 0, 'd'},        {"predictor", required_argument, 0, 'E'},
        {"no-db", no_argument, 0, 'N'},           {"help", no_argument, 0, 'h'},
        {"backend", required_argument, 0, 'b'},   {"prompt-file", required_argument, 0, 'F'},
        {"force", no_argument, 0, 1001},   {"n-predict", required_argument, 0, 1002},
        {"temp", required_argument, 0, 1003}, {"top-k", required_argument, 0, 1004},
        {"top-p", required_argument, 0, 1005}, {"online-refit", required_argument, 0, 1006},
        {"no-bind", no_argument, 0, 1007},
        {0, 0, 0, 0}};
    bool mode_set = false;
    kvr_error e;
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":m:p:F:c:r:M:P:t:b:T:n:s:L:SD:jd:E:Nh", lo, NULL)) != -1) {
        int64_t v;
        switch (ch) {
            case 'm':
                if (!*optarg) return usage_error("--model: empty path");
                o->model = optarg;
                break;
            case 'F':
                if (!*optarg) return usage_error("--prompt-file: empty path");
                o->prompt_file = optarg;
                break;
            case 1001: o->force = true; break;
            case 1002:
                if (kvr_parse_i64(optarg, INT32_MIN, INT32_MAX, &v, &e))
                    return usage_error("--n-predict: %s", e.msg);
                if (v < 0 || v > KVR_RUN_MAX_PREDICT)
                    return usage_error("--n-predict %lld: need 0..%d (tokens to generate; 0: "
                                       "prefill only)", (long long)v, KVR_RUN_MAX_PREDICT);
                o->n_predict = (int32_t)v;
                break;
            case 1006: {
                char *end;
                const double d = strtod(optarg, &end);
                if (!*optarg || *end || !(d > 0 && d <= 1))
                    return usage_error("--online-refit: '%s' is not a weight in (0, 1]", optarg);
                o->online_alpha = d;
                break;
            }
            case 1003:
            case 1005: {
                char *end;
                const double d = strtod(optarg, &end);
                if (!*optarg || *end)
                    return usage_error("%s: '%s' is not a number", ch == 1003 ? "--temp" : "--top-p",
                                       optarg);
                if (ch == 1003)
                    o->sampling.temperature = (float)d;
                else
                    o->sampling.top_p = (float)d;
                o->sampling_set = true;
                break;
            }
            case 1004:
                if (kvr_parse_i64(optarg, INT32_MIN, INT32_MAX, &v, &e))
                    return usage_error("--top-k: %s", e.msg);
                o->sampling.top_k = (int32_t)v;
                o->sampling_set = true;
                break;
            case 'b': {
                const kvr_backend *be; /* known but not built in: reported (exit 1) by main */
                if (kvr_backend_get(optarg, &be, &e) == KVR_ERR_INVALID_ARG)
                    return usage_error("--backend: %s", e.msg);
                o->backend = optarg;
                break;
            }
            case 'p':
                if (!*optarg)
                    return usage_error("--prompt: empty text (give the prompt, or --prompt-file "
                                       "FILE)");
                o->prompt = optarg;
                break;
            case 'c':
                if (kvr_parse_i64(optarg, 1, (int64_t)1 << 26, &v, &e))
                    return usage_error("--context: %s", e.msg);
                o->context = v;
                break;
            case 'r':
                if (kvr_parse_i64(optarg, 1, KVR_MAX_RANKS, &v, &e))
                    return usage_error("--ranks: %s", e.msg);
                o->ranks = (int32_t)v;
                o->ranks_set = true;
                break;
            case 'M':
                o->auto_mode = strcmp(optarg, "auto") == 0;
                if (o->auto_mode)
                    o->mode = KVR_MODE_KVR; /* until the strategy table chooses */
                else if (kvr_mode_parse(optarg, &o->mode, &e))
                    return usage_error("--mode: %s", e.msg);
                mode_set = true;
                break;
            case 'P': o->partition = optarg; break;
            case 't':
                if (kvr_parse_i64(optarg, 1, 1024, &v, &e))
                    return usage_error("--threads: %s", e.msg);
                o->threads = (int32_t)v;
                break;
            case 'T':
                if (kvr_comm_transport_parse(optarg, &o->transport, &e))
                    return usage_error("--transport: %s", e.msg);
                break;
            case 'n':
                if (kvr_parse_i64(optarg, 1, 1000, &v, &e))
                    return usage_error("--repeat: %s", e.msg);
                o->repeat = (int32_t)v;
                break;
            case 's':
                if (kvr_parse_i64(optarg, 0, INT64_MAX, &v, &e))
                    return usage_error("--seed: %s", e.msg);
                o->seed = (uint64_t)v;
                break;
            case 'L':
                if (kvr_parse_i64(optarg, 1, 1024, &v, &e))
                    return usage_error("--layers: %s", e.msg);
                o->layers = (int32_t)v;
                break;
            case 'S': o->special = false; break;
            case 'D': o->dump_logits = optarg; break;
            case 'j': o->json = true; break;
            case 'd': o->db = optarg; break;
            case 'E': o->predictor = optarg; break;
            case 'N': o->no_db = true; break;
            case 1007: o->no_bind = true; break;
            case 'h': usage(stdout); exit(0);
            case ':': return usage_error("option %s needs a value", argv[optind - 1]);
            default: return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
    if (kvr_sampler_params_check(&o->sampling, &e) != KVR_OK) return usage_error("%s", e.msg);
    if (o->sampling_set && o->n_predict == 0)
        return usage_error("--temp, --top-k and --top-p apply to decode: give --n-predict N");
    if (o->prompt && o->context) return usage_error("give --prompt or --context, not both");
    if (o->prompt_file && (o->prompt || o->context))
        return usage_error("give one of --prompt-file, --prompt and --context");
    if (!mode_set) o->mode = (o->ranks > 1 || o->transport == KVR_TRANSPORT_MPI) ? KVR_MODE_KVR : KVR_MODE_SINGLE;
    if (o->partition && o->mode == KVR_MODE_RING)
        return usage_error("--partition does not apply to --mode ring: ring cuts the prompt into "
                           "2 x ranks zigzag chunks (rank i holds chunks i and 2 x ranks - 1 - i), "
                           "which balances the causal attention by itself");
    if (o->partition && o->mode != KVR_MODE_KVR)
        return usage_error("--partition applies to --mode kvr, not %s", kvr_mode_name(o->mode));
    if (o->mode == KVR_MODE_SINGLE && o->ranks != 1)
        return usage_error("--mode single runs on one rank; use --mode kvr or tsp for %s ranks",
                           "several");
    if (o->db && o->no_db) return usage_error("give --db or --no-db, not both");
    if (o->auto_mode && o->partition)
        return usage_error("--mode auto chooses the partition too (from the strategy table and "
                           "KVR-P): drop --partition");
    if (o->auto_mode && o->transport == KVR_TRANSPORT_MPI)
        return usage_error("--mode auto runs ranks as threads (an MPI job's size is fixed): give "
                           "--mode with --transport mpi");
    if (o->auto_mode && o->no_db && !o->predictor)
        return usage_error("--mode auto needs a predictor: --predictor FILE, or a store (drop "
                           "--no-db)");
    o->auto_partition = o->partition && strcmp(o->partition, "auto") == 0;
    if (o->auto_partition && o->no_db && !o->predictor)
        return usage_error("--partition auto needs a predictor: --predictor FILE, or a store "
                           "(drop --no-db)");
    if (!o->db && !o->no_db && access("kvr.db", F_OK) == 0) {
        o->db = "kvr.db";
        o->db_default = true;
    }
    if (o->auto_mode && !o->db && !o->predictor)
        return usage_error("--mode auto needs a predictor: --predictor FILE or --db PATH (no "
                           "./kvr.db here)");
    if (o->auto_partition && !o->db && !o->predictor)
        return usage_error("--partition auto needs a predictor: --predictor FILE or --db PATH "
                           "(no ./kvr.db here)");
    return check_outputs(o);
}

/* Progress of long prefills: the last rank's layers over every run (--repeat). */
typedef struct run_progress {
    kvr_progress bar;
    int32_t run, last_layer;
} run_progress;

static void prefill_progress(void *user, int32_t layer, int32_t n_layers) {
    run_progress *rp = user;
    if (layer <= rp->last_layer) rp->run++;
    rp->last_layer = layer;
    kvr_progress_update(&rp->bar, (int64_t)rp->run * n_layers + layer);
}

/* Decode's streaming: each token's text as it comes (whole UTF-8 characters), on the printing
 * rank when it is the one that generates. */
typedef struct run_stream {
    bool printed; /* some text went out */
} run_stream;

static bool stream_token(void *user, int32_t id, const char *text, size_t len) {
    (void)id;
    run_stream *rs = user;
    if (len > 0) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
        rs->printed = true;
    }
    return true;
}

/* Where the ranks as threads ran: "; ranks bound to CPUs 0 | 1" (kvr_prefill_params.bind). */
static void print_bind_note(FILE *f, const kvr_prefill_result *r, const kvr_run_opts *o) {
    if (o->transport == KVR_TRANSPORT_MPI || r->n_ranks < 2) return; /* mpirun's; one rank: none */
    if (o->no_bind) {
        fprintf(f, "; ranks placed by the OS (--no-bind)");
        return;
    }
    for (int32_t i = 0; i < r->n_ranks; i++)
        if (r->ranks[i].n_cpus <= 0) {
            fprintf(f, "; ranks placed by the OS (%d rank(s) x %d thread(s) do not fit the CPUs "
                       "this process may use)", r->n_ranks, o->threads);
            return;
        }
    fprintf(f, "; ranks bound to CPUs");
    for (int32_t i = 0; i < r->n_ranks; i++) {
        const kvr_rank_stats *s = &r->ranks[i];
        fprintf(f, "%s %d", i ? " |" : "", s->cpu_first);
        if (s->n_cpus > 1) fprintf(f, "+%d", s->n_cpus - 1);
    }
}

/* Print a token's text as a JSON/terminal-safe string (escapes quotes, control bytes). */
static void print_escaped(FILE *f, const char *s) {
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
}

// ----------------------------------------------------------------------------
// the store (the printing rank)

typedef struct run_store {
    kvr_db *db; /* NULL: no store */
    bool writable;
    kvr_db_model mrec; /* this model's record (content hash) */
    int64_t model_id, device_id;
    char note[1100]; /* why runs are not recorded */
} run_store;

/* Open the store (the printing rank): read-write, or read-only where the file or its directory
 * cannot be written (then nothing is recorded); this model's and device's rows. Returns 0, or
 * 1 after a message. */
/* This process's peak resident set so far (getrusage's ru_maxrss: KiB on Linux), in MiB. */
static double peak_rss_mb(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
    return (double)ru.ru_maxrss / 1024.0;
}

static int store_open(const kvr_run_opts *o, const kvr_model *model, run_store *rs) {
    kvr_error err;
    kvr_db_open_params p = kvr_db_open_params_default();
    p.create = !o->db_default;
    kvr_status st = kvr_db_open(o->db, &p, &rs->db, &err);
    rs->writable = st == KVR_OK;
    if (st == KVR_ERR_IO) {
        snprintf(rs->note, sizeof rs->note, "%s is not writable: %s", o->db, err.msg);
        p.read_only = true;
        st = kvr_db_open(o->db, &p, &rs->db, &err);
    }
    if (st != KVR_OK) {
        fprintf(stderr, "kvr-run: --db %s: %s\n", o->db, err.msg);
        return 1;
    }
    if (kvr_profile_model_record(model, o->model, o->seed, o->layers, &rs->mrec, &err) != KVR_OK) {
        fprintf(stderr, "kvr-run: --model %s: %s\n", o->model, err.msg);
        return 1;
    }
    if (rs->writable) {
        kvr_db_device dev; /* what the ops run on: the CPU, or the GPU of --backend cuda */
        const kvr_backend *be = NULL;
        kvr_error be_err;
        kvr_profile_device(&dev, kvr_backend_get(o->backend, &be, &be_err) == KVR_OK ? be : NULL);
        if (kvr_db_model_put(rs->db, &rs->mrec, &rs->model_id, &err) != KVR_OK ||
            kvr_db_device_put(rs->db, &dev, &rs->device_id, &err) != KVR_OK) {
            fprintf(stderr, "kvr-run: --db %s: %s\n", o->db, err.msg);
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    kvr_run_opts o = {.ranks = 1, .threads = 1, .transport = KVR_TRANSPORT_THREADS, .seed = 1234,
                      .repeat = 1, .special = true, .backend = "cpu",
                      .sampling = {0.0f, 0, 1.0f, 0}};
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc;
    kvr_error err = {0};
    const kvr_backend *backend;
    if (kvr_backend_get(o.backend, &backend, &err) != KVR_OK) {
        fprintf(stderr, "kvr-run: --backend %s: %s\n", o.backend, err.msg);
        return 1;
    }
    if (o.transport == KVR_TRANSPORT_SAME_DEVICE || o.transport == KVR_TRANSPORT_NCCL) {
        /* a device transport: say now, before loading anything, if it cannot run here */
        const char *tn = kvr_comm_transport_name(o.transport);
        if (o.transport == KVR_TRANSPORT_NCCL && kvr_backend_mem_space(backend) != KVR_MEM_DEVICE) {
            fprintf(stderr, "kvr-run: --transport nccl moves device buffers; --backend %s keeps "
                            "K/V in host memory (use --backend cuda)\n", o.backend);
            return 1;
        }
        kvr_comm_params cp = kvr_comm_params_default();
        cp.transport = o.transport;
        cp.n_ranks = o.ranks;
        kvr_comm_world *probe;
        if (kvr_comm_world_create(&cp, &probe, &err) != KVR_OK) {
            fprintf(stderr, "kvr-run: --transport %s: %s\n", tn, err.msg);
            return 1;
        }
        kvr_comm_world_destroy(probe);
    }
    kvr_comm_world *world = NULL; /* MPI: this process's rank in the job */
    kvr_comm *mpi = NULL;
    if (o.transport == KVR_TRANSPORT_MPI) {
        rc = tool_mpi_join("kvr-run", &argc, &argv, o.ranks_set, &o.ranks, &world, &mpi);
        if (rc) return rc;
        if (o.mode == KVR_MODE_SINGLE && o.ranks != 1) o.mode = KVR_MODE_KVR;
    }
    const bool printer = !mpi || kvr_comm_rank(mpi) == 0;
    /* the rank holding the last token (ring: rank 0) */
    const bool holds_last =
        !mpi || kvr_comm_rank(mpi) == kvr_prefill_emitter(o.mode, kvr_comm_size(mpi));
    run_store rs;
    memset(&rs, 0, sizeof rs);
    kvr_session_result res;
    memset(&res, 0, sizeof res);
    int exit_code = 1;
    bool abort_job = true;
    kvr_model *model = NULL;
    int32_t *ids = NULL;
    char *prompt_buf = NULL; /* --prompt-file */
    float *gen_logits = NULL; /* --dump-logits with --n-predict: each token's logits */

    char defpath[1024];
    if (!o.model) {
        if (kvr_model_default_path(defpath, sizeof defpath, &err) != KVR_OK) {
            fprintf(stderr, "kvr-run: --model not given and %s\n", err.msg);
            goto done;
        }
        o.model = defpath;
        if (check_outputs(&o)) { /* the default model is an input too */
            exit_code = 2;
            abort_job = false;
            goto done;
        }
    }
    size_t prompt_len = 0;
    if (o.prompt_file) { /* read before the model: a bad file fails fast */
        if (kvr_read_file(o.prompt_file, KVR_RUN_MAX_PROMPT_BYTES, &prompt_buf, &prompt_len,
                          &err) != KVR_OK) {
            fprintf(stderr, "kvr-run: --prompt-file %s\n", err.msg);
            goto done;
        }
        if (prompt_len == 0) {
            fprintf(stderr, "kvr-run: --prompt-file %s: empty file\n", o.prompt_file);
            exit_code = 2;
            abort_job = false;
            goto done;
        }
    }
    kvr_model_load_params lp = kvr_model_load_params_default();
    lp.seed = o.seed;
    lp.n_layers_override = o.layers;
    double tl = kvr_time_us();
    if (kvr_model_load(o.model, &lp, &model, &err) != KVR_OK) {
        fprintf(stderr, "kvr-run: --model %s: %s\n", o.model, err.msg);
        goto done;
    }
    double load_ms = (kvr_time_us() - tl) * 1e-3;
    const kvr_model_config *cfg = kvr_model_get_config(model);
    const kvr_tokenizer *tok = kvr_model_get_tokenizer(model);

    int64_t n_ids = 0;
    if (o.prompt || o.prompt_file) {
        const char *what = o.prompt ? "--prompt" : "--prompt-file";
        if (!tok) {
            fprintf(stderr,
                    "kvr-run: %s: model %s has no supported tokenizer (GGUF: tokenizer.ggml.* "
                    "metadata; HF directory: tokenizer.json); use --context N\n",
                    what,
                    o.model);
            goto done;
        }
        const size_t len = o.prompt ? strlen(o.prompt) : prompt_len;
        const double t_tok = kvr_time_us();
        const bool long_prompt = len >= KVR_RUN_LONG_PROMPT_BYTES && printer;
        if (long_prompt)
            fprintf(stderr, "# kvr-run: tokenizing %zu bytes of prompt ...\n", len);
        /* BOS only where the vocabulary asks for it (SentencePiece vocabularies, llama3) */
        if (kvr_tokenizer_encode(tok, o.prompt ? o.prompt : prompt_buf, len,
                                 kvr_tokenizer_wants_bos(tok), o.special,
                                 &ids, &n_ids, &err) != KVR_OK) {
            fprintf(stderr, "kvr-run: %s: %s\n", what, err.msg);
            goto done;
        }
        if (long_prompt)
            fprintf(stderr, "# kvr-run: %lld tokens in %.1f s\n", (long long)n_ids,
                    (kvr_time_us() - t_tok) * 1e-6);
    } else {
        n_ids = o.context ? o.context : 512;
        ids = malloc((size_t)n_ids * sizeof *ids);
        if (!ids) {
            fprintf(stderr, "kvr-run: out of memory for %lld token ids\n", (long long)n_ids);
            goto done;
        }
        uint64_t s = o.seed;
        for (int64_t i = 0; i < n_ids; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            ids[i] = (int32_t)((s >> 33) % (uint64_t)cfg->vocab_size);
        }
    }
    if (n_ids == 0) {
        fprintf(stderr, "kvr-run: %s: the prompt encodes to 0 tokens\n",
                o.prompt_file ? "--prompt-file" : "--prompt");
        goto done;
    }

    /* Fault injection for the MPI failure test (tests/cli/test_mpi.sh): KVR_FAULT_RANK=r gives
     * process r invalid token ids, so that one rank fails inside the prefill. */
    const char *fault = getenv("KVR_FAULT_RANK");
    if (mpi && fault && atoi(fault) == kvr_comm_rank(mpi))
        for (int64_t i = 0; i < n_ids; i++) ids[i] = -1;

    /* the store: on the printing rank */
    if (printer && o.db && store_open(&o, model, &rs)) {
        /* a named store must work; the implicit ./kvr.db only when auto needs it */
        if (!o.db_default || ((o.auto_partition || o.auto_mode) && !o.predictor)) goto done;
        fprintf(stderr, "kvr-run: not using ./kvr.db (see above); this run is not recorded\n");
        kvr_db_close(rs.db);
        rs.db = NULL;
    }

    kvr_session_params sp = kvr_session_params_default();
    sp.model = model;
    sp.backend = backend;
    sp.comm = mpi;
    sp.transport = o.transport;
    sp.mode = o.mode;
    sp.n_ranks = o.ranks;
    sp.n_threads = o.threads;
    sp.bind = !o.no_bind;
    sp.repeat = o.repeat;
    sp.online_alpha = o.online_alpha;
    sp.keep_logits = o.dump_logits != NULL;
    sp.partition = o.auto_partition ? KVR_SESSION_PARTITION_AUTO
                   : o.partition    ? KVR_SESSION_PARTITION_EXPLICIT
                                    : KVR_SESSION_PARTITION_EVEN;
    sp.partition_text = o.partition;
    sp.predictor_path = o.predictor;
    sp.auto_mode = o.auto_mode;
    sp.db = rs.db;
    sp.db_writable = rs.writable;
    sp.model_record = &rs.mrec;
    sp.model_id = rs.model_id;
    sp.device_id = rs.device_id;
    int32_t eog[16];
    run_stream stream = {false};
    if (o.n_predict > 0) {
        sp.generate.n_predict = o.n_predict;
        sp.generate.sampling = o.sampling;
        sp.generate.sampling.seed = o.seed;
        sp.generate.tok = tok;
        sp.generate.n_stop = tok ? kvr_tokenizer_eog(tok, eog, 16) : 0;
        sp.generate.stop_ids = eog;
        if (o.dump_logits && holds_last) {
            gen_logits = malloc((size_t)o.n_predict * (size_t)cfg->vocab_size * sizeof(float));
            if (!gen_logits) {
                fprintf(stderr, "kvr-run: --dump-logits: out of memory for %d x %d logits\n",
                        o.n_predict, cfg->vocab_size);
                goto done;
            }
            sp.generate.logits_out = gen_logits;
        }
        if (printer && holds_last && !o.json && tok) { /* the text as it comes */
            sp.generate.on_token = stream_token;
            sp.generate.user = &stream;
        }
    }
    if (printer && n_ids >= KVR_RUN_LONG_CONTEXT)
        fprintf(stderr, "# kvr-run: prefill of %lld tokens on %d rank(s), mode %s ...\n",
                (long long)n_ids, o.ranks, kvr_mode_name(o.mode));
    run_progress prog; /* the rank holding the last chunk reports its layers */
    memset(&prog, 0, sizeof prog);
    if (holds_last && n_ids >= KVR_RUN_LONG_CONTEXT) {
        kvr_progress_start(&prog.bar, stderr, "kvr-run: prefill, layers of the last rank",
                           (int64_t)cfg->n_layers * o.repeat);
        sp.progress = prefill_progress;
        sp.progress_user = &prog;
    }
    { /* the memory the run needs, before it allocates: refuse what the machine cannot hold */
        kvr_session_memory mem;
        /* KVR_MEM_AVAILABLE=BYTES stands in for /proc/meminfo (tests/cli/test_kvr_run.sh) */
        const char *fake = getenv("KVR_MEM_AVAILABLE");
        const int64_t avail = fake && *fake ? strtoll(fake, NULL, 10) : kvr_mem_available_bytes();
        if (kvr_session_memory_estimate(&sp, n_ids, &mem, NULL) == KVR_OK && avail >= 0) {
            const double need = mem.workspaces + mem.kv_cache, gib = 1024.0 * 1024 * 1024;
            if (need > (double)avail) {
                fprintf(stderr,
                        "kvr-run: %s: %lld tokens on %d rank(s) here need about %.2f GiB "
                        "(workspaces %.2f GiB, KV cache %.2f GiB; the weights, %.2f GiB, are "
                        "loaded) but %.2f GiB are available (MemAvailable, /proc/meminfo); "
                        "use fewer tokens or more machines, or --force to try anyway\n",
                        o.force ? "warning" : "not enough memory", (long long)n_ids,
                        mem.n_ranks_here, need / gib, mem.workspaces / gib, mem.kv_cache / gib,
                        mem.weights / gib, (double)avail / gib);
                if (!o.force) goto done;
            }
        }
    }
    if (kvr_session_run(&sp, ids, n_ids, &res, &err) != KVR_OK) {
        switch (res.stage) {
            case KVR_SESSION_STAGE_INPUT: /* a usage error, on every rank */
                fprintf(stderr, "kvr-run: %s\n", err.msg);
                exit_code = 2;
                abort_job = false;
                break;
            case KVR_SESSION_STAGE_PREDICTOR: /* the printing rank says why; all ranks stop */
                if (printer) fprintf(stderr, "kvr-run: %s\n", err.msg);
                abort_job = false;
                break;
            default: fprintf(stderr, "kvr-run: %s\n", err.msg); break;
        }
        goto done;
    }
    const kvr_prefill_result *r = kvr_session_median(&res);

    int rc_out = 0;
    if (o.dump_logits && holds_last) {
        const kvr_prefill_result *lr = &res.runs[res.n_runs - 1];
        /* a temporary beside it, renamed into place: an interrupted write leaves no half file */
        const float *rows = gen_logits ? gen_logits : lr->logits;
        const size_t n_rows = gen_logits ? (size_t)res.gen.n_ids : 1;
        if (kvr_write_file_atomic(o.dump_logits, rows,
                                  n_rows * (size_t)cfg->vocab_size * sizeof(float), &err) != KVR_OK) {
            fprintf(stderr, "kvr-run: --dump-logits %s: %s\n", o.dump_logits, err.msg);
            rc_out = 1;
        }
    }

    char pstr[4096]; /* fits: at most KVR_MAX_RANKS chunks of a prompt's token count each */
    kvr_partition_format(r->partition, r->n_ranks, pstr, sizeof pstr, NULL);
    const char *psource = kvr_session_partition_name(res.partition_source);
    const double predicted_ms = res.predicted_ttft_ms, dev = res.prediction_error;
    const bool drift = res.drift;
    const int64_t measured_id = res.measured_run_id;
    const char *mname = kvr_mode_name(res.mode); /* --mode auto: what the table chose */
    const int32_t n_ranks = res.n_ranks;
    const char *db_note = res.db_note[0] ? res.db_note : rs.note;

    char piece[256] = "";
    if (tok) kvr_tokenizer_decode_token(tok, r->first_token, piece, sizeof piece);
    if (printer && o.json) {
        printf("{\"model\":"); /* strings: valid JSON and UTF-8 whatever the bytes */
        kvr_json_write_str(stdout, cfg->name);
        printf(",\"mode\":\"%s\",\"ranks\":%d,\"threads\":%d,\"transport\":\"%s\","
               "\"context\":%lld,\"partition\":[%s],\"first_token\":%d,\"first_token_text\":",
               mname, n_ranks, o.threads, kvr_comm_transport_name(o.transport),
               (long long)n_ids, pstr, r->first_token);
        if (tok)
            kvr_json_write_str(stdout, piece); /* a piece may be part of a UTF-8 character */
        else
            printf("null");
        printf(",\"ttft_ms\":%.3f,\"repeat\":%d,\"ttft_ms_min\":%.3f,\"ttft_ms_max\":%.3f,"
               "\"ttft_ms_runs\":[",
               r->ttft_ms, o.repeat, res.ttft_min_ms, res.ttft_max_ms);
        for (int32_t i = 0; i < res.n_runs; i++)
            printf("%s%.3f", i ? "," : "", res.runs[i].ttft_ms);
        printf("],\"load_ms\":%.1f,\"session_ms\":%.1f,\"session_ranks\":%d,\"per_rank\":[",
               load_ms, res.session_ms, res.session_ranks);
        for (int32_t i = 0; i < r->n_ranks; i++) {
            const kvr_rank_stats *s = &r->ranks[i];
            printf("%s{\"rank\":%d,\"chunk_start\":%lld,\"chunk\":%lld,\"compute_ms\":%.3f,"
                   "\"wait_ms\":%.3f,\"comm_ms\":%.3f,\"total_ms\":%.3f,\"bytes_sent\":%lld,"
                   "\"bytes_recv\":%lld,\"cpus\":",
                   i ? "," : "", s->rank, (long long)s->chunk_start, (long long)s->chunk_len,
                   s->compute_ms, s->wait_ms, s->comm_ms, s->total_ms, (long long)s->bytes_sent,
                   (long long)s->bytes_recv);
            if (s->n_cpus > 0)
                printf("[%d,%d]}", s->cpu_first, s->n_cpus);
            else
                printf("null}");
        }
        printf("],\"partition_source\":\"%s\",\"predicted_ttft_ms\":", psource);
        if (predicted_ms >= 0)
            printf("%.3f", predicted_ms);
        else
            printf("null");
        printf(",\"predicted_raw_ms\":");
        if (res.predicted_raw_ms >= 0) printf("%.3f", res.predicted_raw_ms); else printf("null");
        printf(",\"calibration\":");
        if (res.calibration_id)
            printf("{\"id\":%lld,\"a\":%.9g,\"b_ms\":%.9g}", (long long)res.calibration_id,
                   res.calib_a, res.calib_b);
        else
            printf("null");
        printf(",\"online\":");
        if (o.online_alpha > 0 && res.online_predicted_ms > 0)
            printf("{\"alpha\":%g,\"factor\":%.6f,\"last_predicted_ms\":%.3f,\"last_error\":%.6f}",
                   o.online_alpha, res.online_factor, res.online_predicted_ms, res.online_error);
        else
            printf("null");
        printf(",\"prediction_error\":");
        if (isfinite(dev)) printf("%.6f", dev); else printf("null");
        printf(",\"err_band\":");
        if (predicted_ms >= 0 && res.err_band >= 0) printf("%.6f", res.err_band); else printf("null");
        /* the band's two terms (null: not known, a per-op band) */
        const bool terms = predicted_ms >= 0 && res.err_band >= 0 && res.band_heldout >= 0;
        printf(",\"e2e_scale\":");
        if (predicted_ms >= 0) printf("%.6f", res.predicted_scale); else printf("null");
        printf(",\"band_heldout\":");
        if (terms) printf("%.6f", res.band_heldout); else printf("null");
        printf(",\"band_spread\":");
        if (terms) printf("%.6f", res.band_spread); else printf("null");
        printf(",\"drift\":%s", predicted_ms >= 0 && res.err_band >= 0 ? (drift ? "true" : "false") : "null");
        printf(",\"predictor_id\":");
        if (res.predictor_id) printf("%lld", (long long)res.predictor_id); else printf("null");
        printf(",\"predict_us\":");
        if (o.auto_partition && res.has_predictor) printf("%.3f", res.predict_us); else printf("null");
        printf(",\"predict_us_warm\":");
        if (o.auto_partition && res.has_predictor) printf("%.4f", res.predict_warm_us); else printf("null");
        printf(",\"cost_model_fit_id\":");
        if (predicted_ms >= 0 && res.cost_model_fit_id) printf("%lld", (long long)res.cost_model_fit_id); else printf("null");
        printf(",\"db\":");
        if (rs.db) {
            kvr_json_write_str(stdout, o.db);
        } else {
            printf("null");
        }
        printf(",\"measured_run_id\":");
        if (measured_id) printf("%lld", (long long)measured_id); else printf("null");
        printf(",\"auto\":");
        if (o.auto_mode) {
            printf("{\"strategy\":\"%s\",\"ranks\":%d,\"max_ranks\":%d,\"table_context\":",
                   kvr_strategy_name(res.strategy), n_ranks, o.ranks);
            if (res.plan_context) printf("%lld", (long long)res.plan_context); else printf("null");
            printf(",\"in_range\":%s,\"table_ttft_ms\":", res.plan_in_range ? "true" : "false");
            if (res.plan_ttft_ms >= 0) printf("%.3f", res.plan_ttft_ms); else printf("null");
            printf(",\"plan_us\":%.3f,\"plan_us_warm\":%.4f,\"predictor\":", res.plan_us,
                   res.plan_warm_us);
            kvr_json_write_str(stdout, res.predictor_from);
            printf(",\"note\":");
            if (res.plan_note[0]) kvr_json_write_str(stdout, res.plan_note); else printf("null");
            printf("}");
        } else {
            printf("null");
        }
        if (o.n_predict > 0) {
            const kvr_generate_result *g = &res.gen;
            printf(",\"n_predict\":%d,\"generated\":[", o.n_predict);
            for (int32_t i = 0; i < g->n_ids; i++) printf("%s%d", i ? "," : "", g->ids[i]);
            printf("],\"generated_text\":");
            if (g->text)
                kvr_json_write_str(stdout, g->text);
            else
                printf("null");
            printf(",\"stop\":\"%s\",\"decode_steps\":%d,\"decode_ms\":%.3f,\"tpot_ms\":",
                   kvr_stop_reason_name(g->stop), g->n_steps, g->decode_ms);
            if (g->n_steps > 0)
                printf("%.3f,\"tpot_ms_p50\":%.3f,\"tpot_ms_p90\":%.3f", g->tpot_ms,
                       g->tpot_p50_ms, g->tpot_p90_ms);
            else
                printf("null,\"tpot_ms_p50\":null,\"tpot_ms_p90\":null");
            printf(",\"sampling\":{\"temp\":%g,\"top_k\":%d,\"top_p\":%g,\"seed\":%llu}",
                   (double)o.sampling.temperature, o.sampling.top_k, (double)o.sampling.top_p,
                   (unsigned long long)o.seed);
        }
        printf(",\"weights_mb\":%.1f,\"peak_rss_mb\":%.1f",
               (double)kvr_model_weight_bytes(model) / (1 << 20), peak_rss_mb());
        printf(",\"kvr_version\":\"%s\",\"git_commit\":\"%s\"}\n", kvr_version(),
               kvr_build_commit());
    } else if (printer) {
        if (o.n_predict > 0) { /* the text streamed during the run, or here when another rank
                                  generated it (MPI) */
            if (!stream.printed && res.gen.text) fwrite(res.gen.text, 1, res.gen.text_len, stdout);
            printf("\n\n");
        }
        printf("# kvr-run %s (%s)  model %s: %d layers, d %d, %d/%d heads, vocab %d (load %.0f ms)\n",
               kvr_version(), kvr_build_commit(), cfg->name, cfg->n_layers, cfg->d_model,
               cfg->n_heads, cfg->n_kv_heads, cfg->vocab_size, load_ms);
        printf("# weights %.1f MiB in their stored types; peak RSS %.1f MiB\n",
               (double)kvr_model_weight_bytes(model) / (1 << 20), peak_rss_mb());
        printf("# transport %s, %d thread(s) per rank", kvr_comm_transport_name(o.transport),
               o.threads);
        print_bind_note(stdout, r, &o);
        printf(", %d run(s), median shown\n", o.repeat);
        if (res.session_ranks > 0)
            printf("# session ready in %.1f ms before the prompt: %d rank(s) here with their "
                   "weights and workspaces, touched, warmed up by a %lld-token prefill; TTFT "
                   "runs from the ranks' start on the prompt\n",
                   res.session_ms, res.session_ranks, (long long)res.session_warmup_tokens);
        else
            printf("# session: no prepared ranks (%s): each run makes its workspaces before its "
                   "TTFT starts (warmed up by a %lld-token prefill)\n",
                   res.mode == KVR_MODE_RING ? "mode ring" : "a device backend",
                   (long long)res.session_warmup_tokens);
        if (res.n_runs > 1) {
            printf("# TTFT of each run (ms):");
            for (int32_t i = 0; i < res.n_runs; i++) printf(" %.2f", res.runs[i].ttft_ms);
            printf(" (the first: the session's first prompt)\n");
        }
        if (o.auto_partition && res.has_predictor)
            printf("# partition auto from %s in %.2f us (warm: %.3f us per call; predictor "
                   "loaded in %.1f ms)\n",
                   res.predictor_from, res.predict_us, res.predict_warm_us, res.predictor_load_ms);
        else if (o.auto_partition)
            printf("# partition auto: %s\n", res.predictor_from);
        if (o.auto_mode && !res.plan_context)
            printf("# mode auto: single on 1 rank (%s)\n", res.predictor_from);
        else if (o.auto_mode)
            printf("# mode auto: %s on %d rank%s (at most %d offered) from %s in %.2f us (warm: "
                   "%.3f us per call; predictor loaded in %.1f ms); the strategy table at %lld "
                   "tokens predicts %.2f ms%s%s%s\n",
                   kvr_strategy_name(res.strategy), n_ranks, n_ranks == 1 ? "" : "s", o.ranks,
                   res.predictor_from, res.plan_us, res.plan_warm_us, res.predictor_load_ms,
                   (long long)res.plan_context, res.plan_ttft_ms,
                   res.plan_in_range ? "" : " (this prompt lies outside its contexts)",
                   res.plan_note[0] ? "; " : "", res.plan_note);
        printf("%-7s %5s %8s  %-24s %11s  %s\n", "mode", "ranks", "context", "partition",
               "ttft", "first token");
        printf("%-7s %5s %8s  %-24s %11s  %s\n", "", "", "(tok)", "(tokens)", "(ms)", "");
        printf("%-7s %5d %8lld  %-24s %11.2f  %d", mname, n_ranks,
               (long long)n_ids, pstr, r->ttft_ms, r->first_token);
        if (tok) {
            printf(" \"");
            print_escaped(stdout, piece);
            printf("\"");
        }
        printf("\n\n%-5s %8s %8s %11s %11s %11s %11s\n", "rank", "start", "chunk", "compute",
               "wait", "comm", "total");
        printf("%-5s %8s %8s %11s %11s %11s %11s\n", "", "(tok)", "(tok)", "(ms)", "(ms)", "(ms)",
               "(ms)");
        for (int32_t i = 0; i < r->n_ranks; i++) {
            const kvr_rank_stats *s = &r->ranks[i];
            printf("%-5d %8lld %8lld %11.2f %11.2f %11.2f %11.2f\n", s->rank,
                   (long long)s->chunk_start, (long long)s->chunk_len, s->compute_ms, s->wait_ms,
                   s->comm_ms, s->total_ms);
        }
        if (predicted_ms >= 0) {
            char scale_note[96] = "";
            if (res.predicted_scale != 1)
                snprintf(scale_note, sizeof scale_note,
                         "; end-to-end scale %.4f of the profile's check included",
                         res.predicted_scale);
            if (res.calibration_id)
                printf("\n# predicted TTFT %.2f ms raw (%s%s) -> %.2f ms calibrated (calibration "
                       "%lld: %.4f x raw + %.3f ms), measured %.2f ms: %+.2f %%",
                       res.predicted_raw_ms, res.cost_model_from, scale_note, predicted_ms,
                       (long long)res.calibration_id, res.calib_a, res.calib_b, r->ttft_ms,
                       100 * dev);
            else
                printf("\n# predicted TTFT %.2f ms (%s%s), measured %.2f ms: %+.2f %%",
                       predicted_ms, res.cost_model_from, scale_note, r->ttft_ms, 100 * dev);
            if (res.err_band >= 0 && res.band_heldout >= 0)
                printf(" %s the error band of %.2f %% (held-out %s error %.2f %% + run-to-run "
                       "spread %.2f %%, %s)%s\n",
                       drift ? "outside" : "within", 100 * res.err_band,
                       res.calibration_id ? "calibrated" : "end-to-end", 100 * res.band_heldout,
                       100 * res.band_spread,
                       res.calibration_id ? "of the calibration's recorded runs"
                                          : "of the profile's end-to-end check",
                       drift ? ": DRIFT (the machine or the run changed since the profile; "
                               "re-profile and re-fit)" : "");
            else if (res.err_band >= 0)
                printf(" %s the error band of %.2f %% (the per-op held-out error alone: the "
                       "profile has no end-to-end check, re-profile to add it)%s\n",
                       drift ? "outside" : "within", 100 * res.err_band,
                       drift ? ": DRIFT (the machine or the run changed since the profile; "
                               "re-profile and re-fit)" : "");
            else
                printf(" (no error band)\n");
            if (o.online_alpha > 0 && res.online_predicted_ms > 0)
                printf("# online refit (weight %g) over %d run(s): factor %.4f; the last run "
                       "predicted %.2f ms, measured %.2f ms: %+.2f %%\n",
                       o.online_alpha, res.n_runs, res.online_factor, res.online_predicted_ms,
                       res.runs[res.n_runs - 1].ttft_ms, 100 * res.online_error);
        } else {
            printf("\n# predicted TTFT: none (%s)\n", res.no_prediction);
        }
        if (o.n_predict > 0) {
            const kvr_generate_result *g = &res.gen;
            printf("# decode: %d token(s) on rank %d, stop %s; TTFT %.2f ms, ", g->n_ids,
                   kvr_prefill_emitter(res.mode, n_ranks), kvr_stop_reason_name(g->stop),
                   r->ttft_ms);
            if (g->n_steps > 0)
                printf("TPOT %.2f ms (mean of %d step(s); p50 %.2f, p90 %.2f), decode %.1f ms\n",
                       g->tpot_ms, g->n_steps, g->tpot_p50_ms, g->tpot_p90_ms, g->decode_ms);
            else
                printf("no decode step\n");
        }
        if (measured_id)
            printf("# recorded as measured run %lld in %s (partition %s)\n", (long long)measured_id,
                   o.db, psource);
        else if (rs.db)
            printf("# not recorded: %s\n", db_note[0] ? db_note : "read-only store");
    }
    exit_code = rc_out;
    abort_job = false;

done:
    free(gen_logits);
    free(prompt_buf);
    kvr_session_result_free(&res);
    kvr_db_close(rs.db);
    free(ids);
    kvr_model_destroy(model);
    if (mpi && abort_job) kvr_comm_abort(mpi, 1);
    kvr_comm_world_destroy(world);
    return exit_code;
}
