/* kvr_run.c -- kvr-run: run one prompt through a Llama-family model with the single, kvr
 * (KV-Runahead) or tsp prefill schedule and report the first token and TTFT. With a store
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
#include "kvr_kvrp.h"
#include "kvr_profiler.h"
#include "kvr_runtime.h"

#include <math.h>
#include <unistd.h>

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

typedef struct kvr_run_opts {
    const char *model;
    const char *prompt;
    int64_t context;
    int32_t ranks;
    bool ranks_set;
    kvr_mode mode;
    const char *partition;
    int32_t threads;
    kvr_transport transport;
    bool json;
    const char *dump_logits;
    uint64_t seed;
    int32_t layers;
    int32_t repeat;
    bool special;
    bool auto_partition;
    const char *db;        /* --db, or "kvr.db" when it exists (db_default) */
    bool db_default, no_db;
    const char *predictor; /* --predictor FILE */
    const char *backend;   /* --backend NAME (default cpu) */
} kvr_run_opts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: kvr-run [options]\n"
            "  -m, --model PATH|PRESET   GGUF file, HF directory, or preset (tiny, tiny-mqa,\n"
            "                            llama-2-7b, llama-3-8b, falcon-7b); default: the real\n"
            "                            SmolLM2-135M GGUF (see scripts/fetch-model)\n"
            "  -p, --prompt TEXT         prompt text (needs a model with a tokenizer)\n"
            "  -c, --context N           N seeded random token ids instead of a prompt\n"
            "  -r, --ranks N             number of ranks (default 1; with mpi: the job size)\n"
            "  -M, --mode MODE           single | kvr | tsp (default: single for 1 rank, else kvr)\n"
            "  -P, --partition SPEC      kvr chunk sizes: even | auto | c0,c1,... (default even);\n"
            "                            auto: the KVR-P partition for this context (predictor\n"
            "                            from --predictor FILE, else the newest in the store for\n"
            "                            this model and rank count: kvr-fit --kvrp)\n"
            "  -t, --threads N           threads per rank (default 1)\n"
            "  -b, --backend NAME        cpu | cuda: where the layer ops run (default cpu)\n"
            "  -T, --transport NAME      threads | mpi (default threads; mpi under mpirun)\n"
            "  -n, --repeat N            run N times, report the median-TTFT run (default 1)\n"
            "  -s, --seed N              seed for --context ids and preset weights (default 1234)\n"
            "  -L, --layers N            presets only: override the layer count\n"
            "  -S, --no-special          do not parse special tokens (<|im_start|>) in --prompt\n"
            "  -D, --dump-logits FILE    write last-token logits (float32 LE, vocab entries)\n"
            "  -d, --db PATH             the store: KVR-P predictors, fitted cost models, and\n"
            "                            where every run is recorded (default ./kvr.db when it\n"
            "                            exists; a given PATH is created when missing)\n"
            "  -E, --predictor FILE      predictor file (kvr-fit --export) for --partition auto\n"
            "                            and the predicted TTFT, without a store\n"
            "  -N, --no-db               use no store (not even ./kvr.db): nothing is recorded\n"
            "  -j, --json                print one JSON object instead of the table\n"
            "  -h, --help                this help\n");
}

static int usage_error(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "kvr-run: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n(see kvr-run --help)\n");
    return 2;
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
        {"backend", required_argument, 0, 'b'},
        {0, 0, 0, 0}};
    bool mode_set = false;
    kvr_error e;
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":m:p:c:r:M:P:t:b:T:n:s:L:SD:jd:E:Nh", lo, NULL)) != -1) {
        int64_t v;
        switch (ch) {
            case 'm': o->model = optarg; break;
            case 'b': {
                const kvr_backend *be; /* known but not built in: reported (exit 1) by main */
                if (kvr_backend_get(optarg, &be, &e) == KVR_ERR_INVALID_ARG)
                    return usage_error("--backend: %s%s", e.msg, "");
                o->backend = optarg;
                break;
            }
            case 'p': o->prompt = optarg; break;
            case 'c':
                if (kvr_parse_i64(optarg, 1, (int64_t)1 << 26, &v, &e))
                    return usage_error("--context: %s%s", e.msg, "");
                o->context = v;
                break;
            case 'r':
                if (kvr_parse_i64(optarg, 1, KVR_MAX_RANKS, &v, &e))
                    return usage_error("--ranks: %s%s", e.msg, "");
                o->ranks = (int32_t)v;
                o->ranks_set = true;
                break;
            case 'M':
                if (kvr_mode_parse(optarg, &o->mode, &e)) return usage_error("--mode: %s%s", e.msg, "");
                mode_set = true;
                break;
            case 'P': o->partition = optarg; break;
            case 't':
                if (kvr_parse_i64(optarg, 1, 1024, &v, &e))
                    return usage_error("--threads: %s%s", e.msg, "");
                o->threads = (int32_t)v;
                break;
            case 'T':
                if (strcmp(optarg, "threads") == 0)
                    o->transport = KVR_TRANSPORT_THREADS;
                else if (strcmp(optarg, "mpi") == 0)
                    o->transport = KVR_TRANSPORT_MPI;
                else
                    return usage_error("--transport: unknown transport '%s'%s (threads, mpi)",
                                       optarg, "");
                break;
            case 'n':
                if (kvr_parse_i64(optarg, 1, 1000, &v, &e))
                    return usage_error("--repeat: %s%s", e.msg, "");
                o->repeat = (int32_t)v;
                break;
            case 's':
                if (kvr_parse_i64(optarg, 0, INT64_MAX, &v, &e))
                    return usage_error("--seed: %s%s", e.msg, "");
                o->seed = (uint64_t)v;
                break;
            case 'L':
                if (kvr_parse_i64(optarg, 1, 1024, &v, &e))
                    return usage_error("--layers: %s%s", e.msg, "");
                o->layers = (int32_t)v;
                break;
            case 'S': o->special = false; break;
            case 'D': o->dump_logits = optarg; break;
            case 'j': o->json = true; break;
            case 'd': o->db = optarg; break;
            case 'E': o->predictor = optarg; break;
            case 'N': o->no_db = true; break;
            case 'h': usage(stdout); exit(0);
            case ':': return usage_error("option %s needs a value%s", argv[optind - 1], "");
            default: return usage_error("unknown option '%s'%s", argv[optind - 1], "");
        }
    }
    if (optind < argc) return usage_error("unexpected argument '%s'%s", argv[optind], "");
    if (o->prompt && o->context) return usage_error("give --prompt or --context, not both%s%s", "", "");
    if (!mode_set) o->mode = (o->ranks > 1 || o->transport == KVR_TRANSPORT_MPI) ? KVR_MODE_KVR : KVR_MODE_SINGLE;
    if (o->partition && o->mode != KVR_MODE_KVR)
        return usage_error("--partition applies to --mode kvr, not %s%s", kvr_mode_name(o->mode), "");
    if (o->mode == KVR_MODE_SINGLE && o->ranks != 1)
        return usage_error("--mode single runs on one rank; use --mode kvr or tsp for %s ranks%s",
                           "several", "");
    if (o->db && o->no_db) return usage_error("give --db or --no-db, not both%s%s", "", "");
    o->auto_partition = o->partition && strcmp(o->partition, "auto") == 0;
    if (o->auto_partition && o->no_db && !o->predictor)
        return usage_error("--partition auto needs a predictor: --predictor FILE, or a store "
                           "(drop --no-db)%s%s", "", "");
    if (!o->db && !o->no_db && access("kvr.db", F_OK) == 0) {
        o->db = "kvr.db";
        o->db_default = true;
    }
    if (o->auto_partition && !o->db && !o->predictor)
        return usage_error("--partition auto needs a predictor: --predictor FILE or --db PATH "
                           "(no ./kvr.db here)%s%s", "", "");
    return 0;
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

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// ----------------------------------------------------------------------------
// the store, the predictor and the predicted TTFT (the printing rank only)

typedef struct run_pred {
    kvr_db *db;                /* NULL: no store */
    bool db_writable;
    kvr_db_model mrec;         /* this model's record (content hash) */
    int64_t model_id, device_id;
    kvr_predictor *kp;         /* --partition auto */
    int64_t predictor_id;
    char kp_from[600];
    double predict_us, predict_warm_us, load_ms;
    kvr_predict_costs *costs;  /* the cost model behind the predicted TTFT (NULL: none) */
    int64_t fit_id, profile_run_id;
    int32_t costs_threads;
    double err_band;           /* < 0: unknown */
    char costs_from[700];
    char no_pred[1024];        /* why there is no predicted TTFT */
    char db_note[1100];        /* why the run was not recorded */
} run_pred;

static void run_pred_free(run_pred *rp) {
    kvr_predictor_destroy(rp->kp);
    kvr_predict_costs_destroy(rp->costs);
    kvr_db_close(rp->db);
}

/* Open the store (the printing rank): read-write, or read-only where the file or its directory
 * cannot be written (then nothing is recorded). Returns 0, or 1 after a message. */
static int pred_open_db(const kvr_run_opts *o, const kvr_model *model, run_pred *rp) {
    kvr_error err;
    kvr_db_open_params p = kvr_db_open_params_default();
    p.create = !o->db_default;
    kvr_status st = kvr_db_open(o->db, &p, &rp->db, &err);
    rp->db_writable = st == KVR_OK;
    if (st == KVR_ERR_IO) {
        snprintf(rp->db_note, sizeof rp->db_note, "%s is not writable: %s", o->db, err.msg);
        p.read_only = true;
        st = kvr_db_open(o->db, &p, &rp->db, &err);
    }
    if (st != KVR_OK) {
        fprintf(stderr, "kvr-run: --db %s: %s\n", o->db, err.msg);
        return 1;
    }
    if (kvr_profile_model_record(model, o->model, o->seed, o->layers, &rp->mrec, &err) != KVR_OK) {
        fprintf(stderr, "kvr-run: --model %s: %s\n", o->model, err.msg);
        return 1;
    }
    if (rp->db_writable) {
        kvr_db_device dev;
        kvr_profile_device_cpu(&dev);
        if (kvr_db_model_put(rp->db, &rp->mrec, &rp->model_id, &err) != KVR_OK ||
            kvr_db_device_put(rp->db, &dev, &rp->device_id, &err) != KVR_OK) {
            fprintf(stderr, "kvr-run: --db %s: %s\n", o->db, err.msg);
            return 1;
        }
    }
    return 0;
}

/* The predictor for --partition auto: the file, or the newest stored for p ranks and this
 * model. Its cost model (and error band) also serve the predicted TTFT. Returns 0 or 1. */
static int pred_load_predictor(const kvr_run_opts *o, int32_t p, run_pred *rp) {
    kvr_error err;
    double t0 = kvr_time_us();
    kvr_predict_costs *costs = NULL;
    kvr_predictor_meta meta;
    if (o->predictor) {
        if (kvr_predictor_file_load(o->predictor, &rp->kp, &costs, &meta, &err) != KVR_OK) {
            fprintf(stderr, "kvr-run: --predictor: %s\n", err.msg);
            return 1;
        }
        rp->predictor_id = meta.predictor_id;
        snprintf(rp->kp_from, sizeof rp->kp_from, "predictor file %s", o->predictor);
    } else {
        kvr_db_predictor row;
        kvr_status st = kvr_db_predictor_latest_for_model(rp->db, p, &rp->mrec, &row, &err);
        if (st == KVR_ERR_NOT_FOUND) {
            fprintf(stderr,
                    "kvr-run: --partition auto: no %d-rank KVR-P predictor for model %s in %s; "
                    "make one with kvr-fit --db %s --run RUN --kvrp --ranks %d\n",
                    p, rp->mrec.name, o->db, o->db, p);
            return 1;
        }
        if (st != KVR_OK) {
            fprintf(stderr, "kvr-run: --partition auto: %s\n", err.msg);
            return 1;
        }
        char name[64];
        snprintf(name, sizeof name, "%s: predictor %lld", o->db, (long long)row.id);
        st = kvr_predictor_file_parse(row.json, strlen(row.json), name, &rp->kp, &costs, &meta,
                                      &err);
        rp->predictor_id = row.id;
        snprintf(rp->kp_from, sizeof rp->kp_from, "predictor %lld in %s", (long long)row.id,
                 o->db);
        kvr_db_free(row.json);
        if (st != KVR_OK) {
            fprintf(stderr, "kvr-run: --partition auto: %s\n", err.msg);
            return 1;
        }
    }
    rp->load_ms = (kvr_time_us() - t0) * 1e-3;
    if (costs) {
        rp->costs = costs;
        rp->err_band = meta.err_band;
        rp->costs_threads = meta.n_threads;
        rp->profile_run_id = meta.run_id;
        snprintf(rp->costs_from, sizeof rp->costs_from, "the cost model of %s", rp->kp_from);
    }
    return 0;
}

/* The newest stored cost model of this model profiled with n_threads threads per rank. */
static void pred_load_costs(const kvr_run_opts *o, run_pred *rp) {
    kvr_error err;
    kvr_db_fit *fits = NULL;
    int64_t n = 0;
    if (kvr_db_fits_list_for_model(rp->db, "costs", &rp->mrec, &fits, &n, &err) != KVR_OK) {
        snprintf(rp->no_pred, sizeof rp->no_pred, "%s", err.msg);
        return;
    }
    bool other_threads = false;
    for (int64_t i = 0; i < n && !rp->costs; i++) { /* newest first */
        const kvr_db_fit *f = &fits[i];
        kvr_predict_run_fit rf;
        if (kvr_predict_run_fit_from_json(f->json, strlen(f->json), "fit", &rf, &err) != KVR_OK)
            continue;
        if (rf.n_threads != o->threads) {
            other_threads = true;
            kvr_predict_run_fit_free(&rf);
            continue;
        }
        rp->costs = rf.costs;
        rf.costs = NULL;
        rp->err_band = rf.err_band;
        rp->costs_threads = rf.n_threads;
        rp->fit_id = f->id;
        rp->profile_run_id = rf.run_id;
        snprintf(rp->costs_from, sizeof rp->costs_from, "cost model fit %lld (profile run %lld)",
                 (long long)f->id, (long long)rf.run_id);
        kvr_predict_run_fit_free(&rf);
    }
    kvr_db_fits_free(fits, n);
    if (!rp->costs && other_threads)
        snprintf(rp->no_pred, sizeof rp->no_pred,
                 "no cost model of this model profiled with %d thread(s) per rank (kvr-profile "
                 "--threads %d, then kvr-fit --run RUN)",
                 o->threads, o->threads);
    else if (!rp->costs)
        snprintf(rp->no_pred, sizeof rp->no_pred,
                 "no cost model of this model in the store (kvr-profile, then kvr-fit --run RUN)");
}

/* Record the run in the store. Returns the measured run's id (0: not recorded). */
static int64_t pred_record(const kvr_run_opts *o, run_pred *rp, const kvr_prefill_result *r,
                           const char *transport, const char *source, double predicted_ms,
                           bool drift, const char *pstr) {
    if (!rp->db || !rp->db_writable) return 0;
    kvr_db_measured_run m;
    memset(&m, 0, sizeof m);
    m.model_id = rp->model_id;
    m.device_id = rp->device_id;
    m.profile_run_id = rp->profile_run_id;
    snprintf(m.mode, sizeof m.mode, "%s", kvr_mode_name(o->mode));
    m.n_ranks = o->ranks;
    m.n_threads = o->threads;
    m.n_tokens = r->n_tokens;
    snprintf(m.partition, sizeof m.partition, "%.*s", (int)sizeof m.partition - 1, pstr);
    snprintf(m.transport, sizeof m.transport, "%s", transport);
    m.ttft_ms = r->ttft_ms;
    m.predicted_ttft_ms = predicted_ms;
    snprintf(m.kvr_version, sizeof m.kvr_version, "%s", kvr_version());
    snprintf(m.git_commit, sizeof m.git_commit, "%s", kvr_build_commit());
    if (gethostname(m.host, sizeof m.host) != 0) m.host[0] = 0;
    m.host[sizeof m.host - 1] = 0;
    int k = snprintf(m.note, sizeof m.note, "kvr-run: median of %d run(s)", o->repeat);
    if (rp->costs && k > 0 && (size_t)k < sizeof m.note)
        snprintf(m.note + k, sizeof m.note - (size_t)k, "; predicted by %.180s", rp->costs_from);
    snprintf(m.partition_source, sizeof m.partition_source, "%s", source);
    m.predictor_id = rp->predictor_id;
    m.drift = drift;
    kvr_error err;
    if (kvr_db_measured_run_put(rp->db, &m, &err) != KVR_OK) {
        snprintf(rp->db_note, sizeof rp->db_note, "not recorded: %s", err.msg);
        return 0;
    }
    return m.id;
}

int main(int argc, char **argv) {
    kvr_run_opts o = {.ranks = 1, .threads = 1, .transport = KVR_TRANSPORT_THREADS, .seed = 1234,
                      .repeat = 1, .special = true, .backend = "cpu"};
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc;
    kvr_error err = {0};
    const kvr_backend *backend;
    if (kvr_backend_get(o.backend, &backend, &err) != KVR_OK) {
        fprintf(stderr, "kvr-run: --backend %s: %s\n", o.backend, err.msg);
        return 1;
    }
    kvr_comm_world *world = NULL; /* MPI: this process's rank in the job */
    kvr_comm *mpi = NULL;
    if (o.transport == KVR_TRANSPORT_MPI) {
        kvr_comm_params cp = kvr_comm_params_default();
        cp.transport = KVR_TRANSPORT_MPI;
        cp.n_ranks = 0;
        cp.argc = &argc;
        cp.argv = &argv;
        if (kvr_comm_world_create(&cp, &world, &err) != KVR_OK) {
            fprintf(stderr, "kvr-run: --transport mpi: %s\n", err.msg);
            return 1;
        }
        mpi = kvr_comm_world_local(world, 0);
        int32_t size = kvr_comm_size(mpi);
        if (o.ranks_set && o.ranks != size) {
            fprintf(stderr, "kvr-run: --ranks %d but the MPI job has %d processes\n", o.ranks, size);
            kvr_comm_world_destroy(world);
            return 2;
        }
        o.ranks = size;
        if (o.mode == KVR_MODE_SINGLE && size != 1) o.mode = KVR_MODE_KVR;
    }
    const bool printer = !mpi || kvr_comm_rank(mpi) == 0;
    const bool holds_last = !mpi || kvr_comm_rank(mpi) == kvr_comm_size(mpi) - 1;
    run_pred rp;
    memset(&rp, 0, sizeof rp);
    rp.err_band = -1;

    char defpath[1024];
    if (!o.model) {
        if (kvr_model_default_path(defpath, sizeof defpath, &err) != KVR_OK) {
            fprintf(stderr, "kvr-run: --model not given and %s\n", err.msg);
            goto fail_early;
        }
        o.model = defpath;
    }
    kvr_model_load_params lp = kvr_model_load_params_default();
    lp.seed = o.seed;
    lp.n_layers_override = o.layers;
    kvr_model *model = NULL;
    double tl = kvr_time_us();
    if (kvr_model_load(o.model, &lp, &model, &err) != KVR_OK) {
        fprintf(stderr, "kvr-run: --model %s: %s\n", o.model, err.msg);
        goto fail_early;
    }
    double load_ms = (kvr_time_us() - tl) * 1e-3;
    const kvr_model_config *cfg = kvr_model_get_config(model);
    const kvr_tokenizer *tok = kvr_model_get_tokenizer(model);

    int32_t *ids = NULL;
    int64_t n_ids = 0;
    if (o.prompt) {
        if (!tok) {
            fprintf(stderr, "kvr-run: --prompt: model %s has no tokenizer; use --context N\n",
                    o.model);
            goto fail_model;
        }
        if (kvr_tokenizer_encode(tok, o.prompt, strlen(o.prompt), false, o.special, &ids, &n_ids,
                                 &err) != KVR_OK) {
            fprintf(stderr, "kvr-run: --prompt: %s\n", err.msg);
            goto fail_model;
        }
    } else {
        n_ids = o.context ? o.context : 512;
        ids = malloc((size_t)n_ids * sizeof *ids);
        if (!ids) {
            fprintf(stderr, "kvr-run: out of memory for %lld token ids\n", (long long)n_ids);
            goto fail_model;
        }
        uint64_t s = o.seed;
        for (int64_t i = 0; i < n_ids; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            ids[i] = (int32_t)((s >> 33) % (uint64_t)cfg->vocab_size);
        }
    }
    if (n_ids == 0) {
        fprintf(stderr, "kvr-run: --prompt: the prompt encodes to 0 tokens\n");
        goto fail_ids;
    }

    /* Fault injection for the MPI failure test (tests/cli/test_mpi.sh): KVR_FAULT_RANK=r gives
     * process r invalid token ids, so that one rank fails inside the prefill. */
    const char *fault = getenv("KVR_FAULT_RANK");
    if (mpi && fault && atoi(fault) == kvr_comm_rank(mpi))
        for (int64_t i = 0; i < n_ids; i++) ids[i] = -1;

    int64_t part[KVR_MAX_RANKS];
    kvr_prefill_params pp = kvr_prefill_params_default();
    pp.backend = backend;
    pp.mode = o.mode;
    pp.n_ranks = o.ranks;
    pp.n_threads = o.threads;
    pp.keep_logits = o.dump_logits != NULL;
    const char *psource = o.auto_partition                                  ? "auto"
                          : o.partition && strcmp(o.partition, "even") != 0 ? "explicit"
                                                                            : "even";

    /* the store, the predictor and the cost model: on the printing rank */
    if (printer && o.db && pred_open_db(&o, model, &rp)) {
        /* a named store must work; the implicit ./kvr.db only when auto needs it */
        if (!o.db_default || (o.auto_partition && !o.predictor)) goto fail_pred;
        fprintf(stderr, "kvr-run: not using ./kvr.db (see above); this run is not recorded\n");
        kvr_db_close(rp.db);
        rp.db = NULL;
    }
    if (o.auto_partition && o.ranks > n_ids) {
        fprintf(stderr, "kvr-run: --ranks %d: more ranks than the %lld prompt tokens\n", o.ranks,
                (long long)n_ids);
        run_pred_free(&rp);
        free(ids);
        kvr_model_destroy(model);
        kvr_comm_world_destroy(world);
        return 2;
    }
    if (o.auto_partition) {
        /* the printing rank predicts; every rank gets its answer (a failure ends all) */
        struct {
            int32_t ok;
            int64_t chunks[KVR_MAX_RANKS];
        } mine;
        memset(&mine, 0, sizeof mine);
        if (printer) {
            if (o.ranks == 1) {
                mine.chunks[0] = n_ids;
                mine.ok = 1;
                snprintf(rp.kp_from, sizeof rp.kp_from, "one rank (the whole prompt)");
            } else if (!pred_load_predictor(&o, o.ranks, &rp)) {
                double t0 = kvr_time_us();
                kvr_status st = kvr_predictor_predict(rp.kp, o.ranks, n_ids, mine.chunks, &err);
                rp.predict_us = kvr_time_us() - t0;
                if (st != KVR_OK) {
                    fprintf(stderr, "kvr-run: --partition auto (%s): %s\n", rp.kp_from, err.msg);
                } else {
                    mine.ok = 1;
                    /* the same call warm: the mean of 1000 (what a server pays per request) */
                    int64_t tmp[KVR_MAX_RANKS];
                    t0 = kvr_time_us();
                    for (int k = 0; k < 1000; k++)
                        kvr_predictor_predict(rp.kp, o.ranks, n_ids - (k & 1), tmp, NULL);
                    rp.predict_warm_us = (kvr_time_us() - t0) / 1000;
                }
            }
        }
        if (mpi && kvr_comm_ctrl_bcast(mpi, 0, &mine, sizeof mine, &err) != KVR_OK) {
            fprintf(stderr, "kvr-run: --partition auto: %s\n", err.msg);
            goto fail_pred;
        }
        if (!mine.ok) {
            run_pred_free(&rp);
            free(ids);
            kvr_model_destroy(model);
            kvr_comm_world_destroy(world);
            return 1;
        }
        memcpy(part, mine.chunks, (size_t)o.ranks * sizeof *part);
        pp.partition = part;
    }
    /* the cost model: the predictor's (auto), else a --predictor file's, else the store's */
    if (printer && !rp.costs && o.predictor && !o.auto_partition) {
        kvr_predictor *kp = NULL;
        kvr_predictor_meta meta;
        if (kvr_predictor_file_load(o.predictor, &kp, &rp.costs, &meta, &err) != KVR_OK) {
            fprintf(stderr, "kvr-run: --predictor: %s\n", err.msg);
            goto fail_pred;
        }
        kvr_predictor_destroy(kp);
        rp.err_band = meta.err_band;
        rp.costs_threads = meta.n_threads;
        rp.profile_run_id = meta.run_id;
        snprintf(rp.costs_from, sizeof rp.costs_from, "the cost model of predictor file %s",
                 o.predictor);
        if (!rp.costs)
            snprintf(rp.no_pred, sizeof rp.no_pred, "predictor file %s has no cost model",
                     o.predictor);
    }
    if (printer && rp.db && !rp.costs && !rp.no_pred[0]) pred_load_costs(&o, &rp);
    if (printer && !rp.costs && !rp.no_pred[0])
        snprintf(rp.no_pred, sizeof rp.no_pred, "no store or predictor file (--db, --predictor)");
    if (printer && rp.costs && rp.costs_threads > 0 && rp.costs_threads != o.threads) {
        snprintf(rp.no_pred, sizeof rp.no_pred,
                 "%s was profiled with %d thread(s) per rank, this run uses %d", rp.costs_from,
                 rp.costs_threads, o.threads);
        kvr_predict_costs_destroy(rp.costs);
        rp.costs = NULL;
    }
    if (o.partition && !o.auto_partition) {
        if (kvr_partition_parse(o.partition, o.ranks, n_ids, part, &err) != KVR_OK) {
            fprintf(stderr, "kvr-run: --partition: %s\n", err.msg);
            run_pred_free(&rp);
            free(ids);
            kvr_model_destroy(model);
            kvr_comm_world_destroy(world);
            return 2;
        }
        pp.partition = part;
    }
    if (o.ranks > n_ids) {
        fprintf(stderr, "kvr-run: --ranks %d: more ranks than the %lld prompt tokens\n", o.ranks,
                (long long)n_ids);
        run_pred_free(&rp);
        free(ids);
        kvr_model_destroy(model);
        kvr_comm_world_destroy(world);
        return 2;
    }

    kvr_prefill_result *runs = calloc((size_t)o.repeat, sizeof *runs);
    double *ttfts = calloc((size_t)o.repeat, sizeof *ttfts);
    if (!runs || !ttfts) {
        fprintf(stderr, "kvr-run: out of memory\n");
        goto fail_pred;
    }
    for (int32_t i = 0; i < o.repeat; i++) {
        pp.keep_logits = o.dump_logits != NULL && i == o.repeat - 1;
        kvr_status st = mpi ? kvr_prefill_run_rank(model, mpi, ids, n_ids, &pp, &runs[i], &err)
                            : kvr_prefill_run(model, ids, n_ids, &pp, &runs[i], &err);
        if (st != KVR_OK) {
            fprintf(stderr, "kvr-run: prefill (%s, %d ranks, %lld tokens): %s\n",
                    kvr_mode_name(o.mode), o.ranks, (long long)n_ids, err.msg);
            for (int32_t j = 0; j < i; j++) kvr_prefill_result_free(&runs[j]);
            free(runs), free(ttfts), free(ids);
            run_pred_free(&rp);
            kvr_model_destroy(model);
            if (mpi) kvr_comm_abort(mpi, 1);
            return 1;
        }
        ttfts[i] = runs[i].ttft_ms;
    }
    /* the median run by TTFT */
    qsort(ttfts, (size_t)o.repeat, sizeof *ttfts, cmp_double);
    const double med = ttfts[(o.repeat - 1) / 2];
    int32_t pick = 0;
    for (int32_t i = 0; i < o.repeat; i++)
        if (runs[i].ttft_ms == med) pick = i;
    const kvr_prefill_result *r = &runs[pick];

    int rc_out = 0;
    if (o.dump_logits && holds_last) {
        const kvr_prefill_result *lr = &runs[o.repeat - 1];
        FILE *f = fopen(o.dump_logits, "wb");
        if (!f || fwrite(lr->logits, sizeof(float), (size_t)cfg->vocab_size, f) !=
                      (size_t)cfg->vocab_size) {
            fprintf(stderr, "kvr-run: --dump-logits %s: cannot write\n", o.dump_logits);
            rc_out = 1;
        }
        if (f && fclose(f) != 0) rc_out = 1;
    }

    /* the prediction for this run, drift, and the record in the store */
    char pstr[4096]; /* fits: at most KVR_MAX_RANKS chunks of a prompt's token count each */
    kvr_partition_format(r->partition, r->n_ranks, pstr, sizeof pstr, NULL);
    double predicted_ms = -1, dev = NAN;
    bool drift = false;
    int64_t measured_id = 0;
    if (printer && rp.costs) {
        kvr_strategy strat = kvr_mode_strategy(o.mode, strcmp(psource, "even") == 0);
        double us;
        if (kvr_predict_costs_ttft(rp.costs, strat, o.ranks, n_ids, r->partition, NULL, &us,
                                   &err) == KVR_OK) {
            predicted_ms = us * 1e-3;
            dev = r->ttft_ms / predicted_ms - 1;
            drift = rp.err_band >= 0 && fabs(dev) > rp.err_band;
        } else {
            snprintf(rp.no_pred, sizeof rp.no_pred, "%s", err.msg);
        }
    }
    if (printer) measured_id = pred_record(&o, &rp, r, mpi ? "mpi" : "threads", psource,
                                           predicted_ms, drift, pstr);

    char piece[256] = "";
    if (tok) kvr_tokenizer_decode_token(tok, r->first_token, piece, sizeof piece);
    if (printer && o.json) {
        printf("{\"model\":\"");
        print_escaped(stdout, cfg->name);
        printf("\",\"mode\":\"%s\",\"ranks\":%d,\"threads\":%d,\"transport\":\"%s\","
               "\"context\":%lld,\"partition\":[",
               kvr_mode_name(o.mode), o.ranks, o.threads, mpi ? "mpi" : "threads",
               (long long)n_ids);
        for (int32_t i = 0; i < r->n_ranks; i++)
            printf("%s%lld", i ? "," : "", (long long)r->partition[i]);
        printf("],\"first_token\":%d,\"first_token_text\":", r->first_token);
        if (tok) {
            printf("\"");
            print_escaped(stdout, piece);
            printf("\"");
        } else {
            printf("null");
        }
        printf(",\"ttft_ms\":%.3f,\"repeat\":%d,\"ttft_ms_min\":%.3f,\"ttft_ms_max\":%.3f,"
               "\"load_ms\":%.1f,\"per_rank\":[",
               r->ttft_ms, o.repeat, ttfts[0], ttfts[o.repeat - 1], load_ms);
        for (int32_t i = 0; i < r->n_ranks; i++) {
            const kvr_rank_stats *s = &r->ranks[i];
            printf("%s{\"rank\":%d,\"chunk_start\":%lld,\"chunk\":%lld,\"compute_ms\":%.3f,"
                   "\"wait_ms\":%.3f,\"comm_ms\":%.3f,\"total_ms\":%.3f,\"bytes_sent\":%lld,"
                   "\"bytes_recv\":%lld}",
                   i ? "," : "", s->rank, (long long)s->chunk_start, (long long)s->chunk_len,
                   s->compute_ms, s->wait_ms, s->comm_ms, s->total_ms, (long long)s->bytes_sent,
                   (long long)s->bytes_recv);
        }
        printf("],\"partition_source\":\"%s\",\"predicted_ttft_ms\":", psource);
        if (predicted_ms >= 0)
            printf("%.3f", predicted_ms);
        else
            printf("null");
        printf(",\"prediction_error\":");
        if (isfinite(dev)) printf("%.6f", dev); else printf("null");
        printf(",\"err_band\":");
        if (predicted_ms >= 0 && rp.err_band >= 0) printf("%.6f", rp.err_band); else printf("null");
        printf(",\"drift\":%s", predicted_ms >= 0 && rp.err_band >= 0 ? (drift ? "true" : "false") : "null");
        printf(",\"predictor_id\":");
        if (rp.predictor_id) printf("%lld", (long long)rp.predictor_id); else printf("null");
        printf(",\"predict_us\":");
        if (o.auto_partition && rp.kp) printf("%.3f", rp.predict_us); else printf("null");
        printf(",\"predict_us_warm\":");
        if (o.auto_partition && rp.kp) printf("%.4f", rp.predict_warm_us); else printf("null");
        printf(",\"cost_model_fit_id\":");
        if (predicted_ms >= 0 && rp.fit_id) printf("%lld", (long long)rp.fit_id); else printf("null");
        printf(",\"db\":");
        if (rp.db) {
            printf("\"");
            print_escaped(stdout, o.db);
            printf("\"");
        } else {
            printf("null");
        }
        printf(",\"measured_run_id\":");
        if (measured_id) printf("%lld", (long long)measured_id); else printf("null");
        printf(",\"kvr_version\":\"%s\",\"git_commit\":\"%s\"}\n", kvr_version(),
               kvr_build_commit());
    } else if (printer) {
        printf("# kvr-run %s (%s)  model %s: %d layers, d %d, %d/%d heads, vocab %d (load %.0f ms)\n",
               kvr_version(), kvr_build_commit(), cfg->name, cfg->n_layers, cfg->d_model,
               cfg->n_heads, cfg->n_kv_heads, cfg->vocab_size, load_ms);
        printf("# transport %s, %d thread(s) per rank, %d run(s), median shown\n",
               mpi ? "mpi" : "threads", o.threads, o.repeat);
        if (o.auto_partition && rp.kp)
            printf("# partition auto from %s in %.2f us (warm: %.3f us per call; predictor "
                   "loaded in %.1f ms)\n",
                   rp.kp_from, rp.predict_us, rp.predict_warm_us, rp.load_ms);
        else if (o.auto_partition)
            printf("# partition auto: %s\n", rp.kp_from);
        printf("%-7s %5s %8s  %-24s %11s  %s\n", "mode", "ranks", "context", "partition",
               "ttft", "first token");
        printf("%-7s %5s %8s  %-24s %11s  %s\n", "", "", "(tok)", "(tokens)", "(ms)", "");
        printf("%-7s %5d %8lld  %-24s %11.2f  %d", kvr_mode_name(o.mode), o.ranks,
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
            printf("\n# predicted TTFT %.2f ms (%s), measured %.2f ms: %+.2f %%", predicted_ms,
                   rp.costs_from, r->ttft_ms, 100 * dev);
            if (rp.err_band >= 0)
                printf(" %s the error band of %.2f %%%s\n", drift ? "outside" : "within",
                       100 * rp.err_band, drift ? ": DRIFT (the machine or the run changed since "
                                                  "the profile; re-profile and re-fit)" : "");
            else
                printf(" (no error band)\n");
        } else {
            printf("\n# predicted TTFT: none (%s)\n", rp.no_pred);
        }
        if (measured_id)
            printf("# recorded as measured run %lld in %s (partition %s)\n", (long long)measured_id,
                   o.db, psource);
        else if (rp.db)
            printf("# not recorded: %s\n", rp.db_note[0] ? rp.db_note : "read-only store");
    }
    for (int32_t i = 0; i < o.repeat; i++) kvr_prefill_result_free(&runs[i]);
    free(runs), free(ttfts), free(ids);
    run_pred_free(&rp);
    kvr_model_destroy(model);
    kvr_comm_world_destroy(world);
    return rc_out;

fail_pred:
    run_pred_free(&rp);
fail_ids:
    free(ids);
fail_model:
    kvr_model_destroy(model);
fail_early:
    if (mpi) kvr_comm_abort(mpi, 1);
    return 1;
}
