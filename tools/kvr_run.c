/* kvr_run.c -- kvr-run: run one prompt through a Llama-family model with the single, kvr
 * (KV-Runahead) or tsp prefill schedule and report the first token and TTFT.
 *
 * Build: cmake -B build && cmake --build build      Run: build/tools/kvr-run --help
 *   build/tools/kvr-run --prompt "The capital of France is" --ranks 2 --mode kvr
 *   mpirun -np 2 build/tools/kvr-run --transport mpi --mode kvr --context 1024
 */
#include "kvr_runtime.h"

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
            "  -P, --partition SPEC      kvr chunk sizes: even | c0,c1,... (default even)\n"
            "  -t, --threads N           threads per rank (default 1)\n"
            "  -T, --transport NAME      threads | mpi (default threads; mpi under mpirun)\n"
            "  -n, --repeat N            run N times, report the median-TTFT run (default 1)\n"
            "  -s, --seed N              seed for --context ids and preset weights (default 1234)\n"
            "  -L, --layers N            presets only: override the layer count\n"
            "  -S, --no-special          do not parse special tokens (<|im_start|>) in --prompt\n"
            "  -D, --dump-logits FILE    write last-token logits (float32 LE, vocab entries)\n"
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
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};
    bool mode_set = false;
    kvr_error e;
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":m:p:c:r:M:P:t:T:n:s:L:SD:jh", lo, NULL)) != -1) {
        int64_t v;
        switch (ch) {
            case 'm': o->model = optarg; break;
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

int main(int argc, char **argv) {
    kvr_run_opts o = {.ranks = 1, .threads = 1, .transport = KVR_TRANSPORT_THREADS, .seed = 1234,
                      .repeat = 1, .special = true};
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc;
    kvr_error err = {0};
    kvr_comm *mpi = NULL;
    if (o.transport == KVR_TRANSPORT_MPI) {
        if (kvr_comm_mpi_init(&argc, &argv, &mpi, &err) != KVR_OK) {
            fprintf(stderr, "kvr-run: --transport mpi: %s\n", err.msg);
            return 1;
        }
        int32_t size = kvr_comm_size(mpi);
        if (o.ranks_set && o.ranks != size) {
            fprintf(stderr, "kvr-run: --ranks %d but the MPI job has %d processes\n", o.ranks, size);
            kvr_comm_mpi_finalize(mpi);
            return 2;
        }
        o.ranks = size;
        if (o.mode == KVR_MODE_SINGLE && size != 1) o.mode = KVR_MODE_KVR;
    }
    const bool printer = !mpi || kvr_comm_rank(mpi) == 0;
    const bool holds_last = !mpi || kvr_comm_rank(mpi) == kvr_comm_size(mpi) - 1;

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
    pp.mode = o.mode;
    pp.n_ranks = o.ranks;
    pp.n_threads = o.threads;
    pp.keep_logits = o.dump_logits != NULL;
    if (o.partition) {
        if (kvr_partition_parse(o.partition, o.ranks, n_ids, part, &err) != KVR_OK) {
            fprintf(stderr, "kvr-run: --partition: %s\n", err.msg);
            free(ids);
            kvr_model_destroy(model);
            if (mpi) kvr_comm_mpi_finalize(mpi);
            return 2;
        }
        pp.partition = part;
    }
    if (o.ranks > n_ids) {
        fprintf(stderr, "kvr-run: --ranks %d: more ranks than the %lld prompt tokens\n", o.ranks,
                (long long)n_ids);
        free(ids);
        kvr_model_destroy(model);
        if (mpi) kvr_comm_mpi_finalize(mpi);
        return 2;
    }

    kvr_prefill_result *runs = calloc((size_t)o.repeat, sizeof *runs);
    double *ttfts = calloc((size_t)o.repeat, sizeof *ttfts);
    if (!runs || !ttfts) {
        fprintf(stderr, "kvr-run: out of memory\n");
        goto fail_ids;
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
            kvr_model_destroy(model);
            if (mpi) kvr_comm_mpi_abort(mpi, 1);
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
        printf("],\"kvr_version\":\"%s\",\"git_commit\":\"%s\"}\n", kvr_version(),
               kvr_build_commit());
    } else if (printer) {
        printf("# kvr-run %s (%s)  model %s: %d layers, d %d, %d/%d heads, vocab %d (load %.0f ms)\n",
               kvr_version(), kvr_build_commit(), cfg->name, cfg->n_layers, cfg->d_model,
               cfg->n_heads, cfg->n_kv_heads, cfg->vocab_size, load_ms);
        printf("# transport %s, %d thread(s) per rank, %d run(s), median shown\n",
               mpi ? "mpi" : "threads", o.threads, o.repeat);
        char pstr[1024] = "";
        for (int32_t i = 0; i < r->n_ranks; i++) {
            char b[32];
            snprintf(b, sizeof b, "%s%lld", i ? "," : "", (long long)r->partition[i]);
            strncat(pstr, b, sizeof pstr - strlen(pstr) - 1);
        }
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
    }
    for (int32_t i = 0; i < o.repeat; i++) kvr_prefill_result_free(&runs[i]);
    free(runs), free(ttfts), free(ids);
    kvr_model_destroy(model);
    if (mpi) kvr_comm_mpi_finalize(mpi);
    return rc_out;

fail_ids:
    free(ids);
fail_model:
    kvr_model_destroy(model);
fail_early:
    if (mpi) kvr_comm_mpi_abort(mpi, 1);
    return 1;
}
