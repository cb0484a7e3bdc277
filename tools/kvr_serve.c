/* kvr_serve.c -- kvr-serve: serving under load. --trace FILE without --simulate replays the trace
 * against the serving engine (kvr_engine.h) on a real model (--backend cpu or cuda): arrivals in
 * real time, or with --no-sleep as soon as their time has passed on a virtual clock that follows
 * the real iterations; with --db it is stored as a 'measured' serving run.
 * --simulate replays a request trace through the
 * serving scheduler (vLLM V0, chunked-prefill and LayerKV policies, a paged KV pool) on a virtual clock
 * priced by a cost model -- a JSON cost file or a profile run in the store -- and prints TTFT,
 * TPOT and queue-time percentiles, SLO attainment and throughput per policy, in well under a
 * second for 10,000 requests. With --db every policy's run and each of its requests is stored
 * (a serving run: kvr-db serving, kvr-report's serving section). Replaying against the real engine
 * and the HTTP server come with the engine (docs/serving.md says what is built).
 *
 * Build: cmake -B build && cmake --build build      Run: build/tools/kvr-serve --help
 *   build/tools/kvr-trace gen --rate 2 --count 1000 --prompt lognormal:2048,0.8 -o t.csv
 *   build/tools/kvr-serve --simulate --trace t.csv --costs docs/examples/llama7b_a100.json \
 *       --pool-gb 40 --policy vllm,chunked --slo-ttft 2000 --slo-tpot 100
 * Exit codes: 0 ok, 1 runtime failure, 2 usage error (bad option, bad trace or cost file).
 */
#include "kvr_engine.h"
#include "kvr_http.h"
#include "kvr_predict.h"
#include "kvr_profiler.h"
#include "kvr_serving.h"
#include "tool_util.h"

#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct serve_opts {
    bool simulate, json;
    const char *trace, *costs, *db, *run_id, *records;
    int64_t run;
    bool allow_incomplete, store; /* store: --db given (runs are recorded there) */
    kvr_serving_policy policies[KVR_POLICY_COUNT];
    int n_policies;
    kvr_sched_params sp;
    int64_t pool_tokens;
    double pool_gb;
    kvr_serving_decode_costs decode;
    bool decode_from_ops; /* --decode-from-ops */
    double slo_ttft_ms, slo_tpot_ms;
    double host_gbps;   /* --host-gbps (0: the cost model's) */
    const kvr_search_costs *engine_costs; /* real runs under layerkv: the predictor's costs */
    bool layerkv_opt;   /* a layerkv option was given */
    /* the real replay (without --simulate) */
    const char *model;
    const char *backend; /* --backend (default cpu) */
    int64_t threads, seed;
    bool no_sleep, stop_eos;
    kvr_sampler_params sampling;
    /* the HTTP server (--http) */
    int64_t http_port; /* -1: not serving */
    const char *host;
    int64_t max_body;
    double grace_s;
} serve_opts;

#define usage_error(...) tool_usage_error("kvr-serve", __VA_ARGS__)
#define parse_size(...) tool_parse_size("kvr-serve", __VA_ARGS__)

static void usage(FILE *f) {
    fprintf(f,
            "usage: kvr-serve --simulate --trace FILE (--costs FILE.json | --run ID) [--db PATH]\n"
            "                 (--pool-blocks N | --pool-tokens N | --pool-gb X) [options]\n"
            "       kvr-serve --trace FILE [--model PATH|PRESET] [--no-sleep] [--db PATH]\n"
            "                 (--pool-blocks N | --pool-tokens N | --pool-gb X) [options]\n"
            "       kvr-serve --http PORT [--host ADDR] [--model PATH|PRESET] [--db PATH]\n"
            "                 (--pool-blocks N | --pool-tokens N | --pool-gb X) [options]\n"
            "Replay a request trace through the serving scheduler on a virtual clock priced by\n"
            "a cost model (--simulate), or against the serving engine on the real model (CPU\n"
            "backend, or --backend cuda); print TTFT, TPOT and queue-time percentiles, SLO attainment and\n"
            "throughput per policy; or serve the model over an OpenAI-compatible HTTP API\n"
            "(--http) on the same engine (docs/serving.md).\n"
            "  -S, --simulate            simulate instead of running the model\n"
            "  -t, --trace FILE          the requests: kvr trace CSV (kvr-trace gen/import)\n"
            "  -c, --costs FILE          JSON cost model (schema: docs/search.md)\n"
            "  -d, --db PATH             the store: --run's profile (default ./kvr.db); given,\n"
            "                            every policy's run and its requests are stored there\n"
            "                            (kvr-db serving, kvr-report)\n"
            "  -R, --run ID              costs from profile run ID in --db, interpolated\n"
            "  -I, --allow-incomplete    use an incomplete or failed --run as it is\n"
            "  -p, --policy LIST         vllm, chunked, layerkv, comma-separated (default vllm)\n"
            "  -P, --pool-blocks N       the KV pool: N blocks of --block-tokens tokens\n"
            "      --pool-tokens N       the KV pool in tokens (rounded down to whole blocks)\n"
            "      --pool-gb X           the KV pool in GB of K/V (the cost model's bytes/token;\n"
            "                            real replay: this model's fp32 K/V)\n"
            "  -b, --block-tokens N      tokens per KV block (default 16)\n"
            "  -w, --watermark F         fraction of the pool admission keeps free (0.01)\n"
            "  -m, --max-seqs N          most requests running at once (256)\n"
            "  -B, --max-batched-tokens N  tokens per iteration (vllm: the prompt tokens one\n"
            "                            iteration admits, default max(model length, 2048);\n"
            "                            chunked: the iteration's budget, default 512)\n"
            "  -M, --max-model-len N     most prompt + output tokens per request (default the\n"
            "                            pool's tokens)\n"
            "  -D, --decode-costs K,S,T  a decode iteration of B requests over C cached tokens\n"
            "                            costs K + S*B + T*C us (default: the cost model's decode\n"
            "                            step -- --run: kvr-fit's fit of the run's decode samples;\n"
            "                            --costs: the file's \"decode_step\" --, else derived\n"
            "                            from the prefill ops)\n"
            "      --decode-from-ops     price decode from the prefill ops even when the cost\n"
            "                            model has a decode step (the older, coarser estimate)\n"
            "      --slo-ttft MS         TTFT target for SLO attainment (0: not checked)\n"
            "      --slo-tpot MS         TPOT target (0: not checked)\n");
    fprintf(f,
            "layerkv (docs/serving.md section 13; needs --slo-ttft and --slo-tpot > 0):\n"
            "      --host-blocks N       the host tier: N blocks of every layer (default 0: none,\n"
            "                            nothing is offloaded)\n"
            "      --reload swap|stream  decode's reload of offloaded layers: swap them back\n"
            "                            once blocks free up (default), or stream them per step\n"
            "      --host-gbps X         host copy bandwidth in GB/s: the simulator's copies and\n"
            "                            the admission's prediction (default: the cost model's)\n"
            "      --costs FILE, --run ID  without --simulate: the cost model of the served model\n"
            "                            that layerkv's admission predicts prefill times from\n"
            "                            (required)\n"
            "      --max-wait MS         anti-starvation: the queue's head is admitted past the\n"
            "                            TPOT budget after waiting MS (default --slo-ttft / 2)\n"
            "  -o, --records FILE        every request's times as CSV (one row per request and\n"
            "                            policy)\n"
            "  -j, --json                the summaries as JSON\n"
            );
    fprintf(f,
            "real replay (without --simulate):\n"
            "      --model PATH|PRESET   GGUF file, HF directory or preset (default: the\n"
            "                            SmolLM2-135M GGUF, as kvr-run)\n"
            "      --backend NAME        cpu | cuda: where the model, its KV pool and the layerkv\n"
            "                            host tier live (default cpu; cuda: docs/gpu.md)\n"
            "      --threads N           threads of the ops (default 1)\n"
            "      --no-sleep            arrivals as soon as their time has passed on a virtual\n"
            "                            clock that follows the real iterations (idle time\n"
            "                            skipped); default: arrivals in real time\n"
            "      --stop-eos            end a request at the model's end-of-generation tokens\n"
            "                            (default: each produces the trace's output tokens)\n"
            "      --seed N              prompts: seeded random token ids of the trace's lengths\n"
            "                            (a request with prompt text: the text, tokenized);\n"
            "                            sampling: request i draws with seed N + i (1234)\n"
            "      --temp T, --top-p P   sampling (default greedy)\n"
            "HTTP server (--http; with the model options above, one --policy; requests stop at\n"
            "the model's end-of-generation tokens; sampling comes from each request):\n"
            "      --http PORT           serve POST /v1/completions, /v1/chat/completions, GET\n"
            "                            /v1/models, /health, /metrics on PORT (0: a free one;\n"
            "                            the first line printed names it); SIGINT/SIGTERM stop\n"
            "      --host ADDR           IPv4 address to listen on (default 127.0.0.1)\n"
            "      --max-body BYTES      larger request bodies get 413 (default 1M)\n"
            "      --grace S             at shutdown, in-flight requests get S seconds to finish\n"
            "                            before they are cancelled (default 10)\n"
            "      with --db, the server's requests are stored as one serving run, each request\n"
            "      as it finishes\n"
            "  -h, --help                this text\n"
            "Exit status: 0 ok, 1 runtime failure, 2 usage error.\n");
}

enum {
    OPT_POOL_TOKENS = 256, OPT_POOL_GB, OPT_SLO_TTFT, OPT_SLO_TPOT, OPT_MODEL, OPT_THREADS,
    OPT_NO_SLEEP, OPT_STOP_EOS, OPT_SEED, OPT_TEMP, OPT_TOP_P, OPT_HTTP, OPT_HOST, OPT_MAX_BODY,
    OPT_GRACE, OPT_DECODE_FROM_OPS, OPT_HOST_BLOCKS, OPT_RELOAD, OPT_HOST_GBPS, OPT_MAX_WAIT,
    OPT_BACKEND
};

static int parse_num(const char *flag, const char *s, double lo, double *out) {
    char *end;
    const double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo) || v > 1e15)
        return usage_error("%s: '%s' is not a number >= %g", flag, s, lo);
    *out = v;
    return 0;
}

/* Returns 0 to continue, 2 on a usage error, -1 after --help. */
static int parse_opts(int argc, char **argv, serve_opts *o) {
    static const struct option lo[] = {
        {"simulate", no_argument, 0, 'S'},          {"trace", required_argument, 0, 't'},
        {"costs", required_argument, 0, 'c'},       {"db", required_argument, 0, 'd'},
        {"run", required_argument, 0, 'R'},         {"allow-incomplete", no_argument, 0, 'I'},
        {"policy", required_argument, 0, 'p'},      {"pool-blocks", required_argument, 0, 'P'},
        {"pool-tokens", required_argument, 0, OPT_POOL_TOKENS},
        {"pool-gb", required_argument, 0, OPT_POOL_GB},
        {"block-tokens", required_argument, 0, 'b'}, {"watermark", required_argument, 0, 'w'},
        {"max-seqs", required_argument, 0, 'm'},    {"max-batched-tokens", required_argument, 0, 'B'},
        {"max-model-len", required_argument, 0, 'M'}, {"decode-costs", required_argument, 0, 'D'},
        {"slo-ttft", required_argument, 0, OPT_SLO_TTFT},
        {"slo-tpot", required_argument, 0, OPT_SLO_TPOT},
        {"records", required_argument, 0, 'o'},     {"json", no_argument, 0, 'j'},
        {"model", required_argument, 0, OPT_MODEL}, {"threads", required_argument, 0, OPT_THREADS},
        {"no-sleep", no_argument, 0, OPT_NO_SLEEP}, {"stop-eos", no_argument, 0, OPT_STOP_EOS},
        {"seed", required_argument, 0, OPT_SEED},   {"temp", required_argument, 0, OPT_TEMP},
        {"top-p", required_argument, 0, OPT_TOP_P},
        {"http", required_argument, 0, OPT_HTTP},   {"host", required_argument, 0, OPT_HOST},
        {"max-body", required_argument, 0, OPT_MAX_BODY},
        {"grace", required_argument, 0, OPT_GRACE},
        {"decode-from-ops", no_argument, 0, OPT_DECODE_FROM_OPS},
        {"host-blocks", required_argument, 0, OPT_HOST_BLOCKS},
        {"reload", required_argument, 0, OPT_RELOAD},
        {"host-gbps", required_argument, 0, OPT_HOST_GBPS},
        {"max-wait", required_argument, 0, OPT_MAX_WAIT},
        {"backend", required_argument, 0, OPT_BACKEND},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0}};
    bool replay_opt = false; /* an option of the real replay */
    double num;
    const char *policy = "vllm";
    int ch, rc;
    int64_t v;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":St:c:d:R:Ip:P:b:w:m:B:M:D:o:jh", lo, NULL)) != -1) {
        switch (ch) {
            case 'S': o->simulate = true; break;
            case 't': o->trace = optarg; break;
            case 'c': o->costs = optarg; break;
            case 'd': o->db = optarg, o->store = true; break;
            case 'R': o->run_id = optarg; break;
            case 'I': o->allow_incomplete = true; break;
            case 'p': policy = optarg; break;
            case 'P':
                if ((rc = parse_size("--pool-blocks", optarg, 1, (int64_t)1 << 40, &o->sp.pool_blocks)))
                    return rc;
                break;
            case OPT_POOL_TOKENS:
                if ((rc = parse_size("--pool-tokens", optarg, 1, (int64_t)1 << 44, &o->pool_tokens)))
                    return rc;
                break;
            case OPT_POOL_GB:
                if ((rc = parse_num("--pool-gb", optarg, 1e-9, &o->pool_gb))) return rc;
                break;
            case 'b':
                if ((rc = parse_size("--block-tokens", optarg, 1, 1 << 20, &v))) return rc;
                o->sp.block_tokens = (int32_t)v;
                break;
            case 'w':
                if ((rc = parse_num("--watermark", optarg, 0, &o->sp.watermark))) return rc;
                if (o->sp.watermark >= 1) return usage_error("--watermark %s: need a fraction in [0, 1)", optarg);
                break;
            case 'm':
                if ((rc = parse_size("--max-seqs", optarg, 1, 1 << 24, &v))) return rc;
                o->sp.max_seqs = (int32_t)v;
                break;
            case 'B':
                if ((rc = parse_size("--max-batched-tokens", optarg, 1, (int64_t)1 << 40,
                                    &o->sp.max_batched_tokens)))
                    return rc;
                break;
            case 'M':
                if ((rc = parse_size("--max-model-len", optarg, 1, (int64_t)1 << 40, &o->sp.max_model_len)))
                    return rc;
                break;
            case 'D': {
                double k, s, t;
                char tail;
                if (sscanf(optarg, "%lf,%lf,%lf%c", &k, &s, &t, &tail) != 3 || !(k >= 0) ||
                    !(s >= 0) || !(t >= 0) || k + s + t > 1e15)
                    return usage_error("--decode-costs '%s': need K,S,T (microseconds, >= 0)", optarg);
                o->decode = (kvr_serving_decode_costs){k, s, t};
                break;
            }
            case OPT_DECODE_FROM_OPS: o->decode_from_ops = true; break;
            case OPT_HOST_BLOCKS:
                if ((rc = parse_size("--host-blocks", optarg, 0, (int64_t)1 << 40, &o->sp.host_blocks)))
                    return rc;
                o->layerkv_opt = true;
                break;
            case OPT_RELOAD: {
                kvr_error e;
                if (kvr_reload_policy_parse(optarg, &o->sp.layerkv.reload, &e) != KVR_OK)
                    return usage_error("--reload: %s", e.msg);
                o->layerkv_opt = true;
                break;
            }
            case OPT_HOST_GBPS:
                if ((rc = parse_num("--host-gbps", optarg, 1e-9, &o->host_gbps))) return rc;
                o->layerkv_opt = true;
                break;
            case OPT_MAX_WAIT:
                if ((rc = parse_num("--max-wait", optarg, 0, &num))) return rc;
                o->sp.layerkv.max_wait_s = num * 1e-3, o->layerkv_opt = true;
                break;
            case OPT_SLO_TTFT:
                if ((rc = parse_num("--slo-ttft", optarg, 0, &o->slo_ttft_ms))) return rc;
                break;
            case OPT_SLO_TPOT:
                if ((rc = parse_num("--slo-tpot", optarg, 0, &o->slo_tpot_ms))) return rc;
                break;
            case 'o': o->records = optarg; break;
            case 'j': o->json = true; break;
            case OPT_MODEL:
                if (!*optarg) return usage_error("%s", "--model: empty path");
                o->model = optarg, replay_opt = true;
                break;
            case OPT_THREADS:
                if ((rc = parse_size("--threads", optarg, 1, 1024, &o->threads))) return rc;
                replay_opt = true;
                break;
            case OPT_BACKEND: {
                kvr_error be_err;
                const kvr_backend *be; /* known but not built in or no device: exit 1 at open */
                if (kvr_backend_get(optarg, &be, &be_err) == KVR_ERR_INVALID_ARG)
                    return usage_error("--backend: %s", be_err.msg);
                o->backend = optarg, replay_opt = true;
                break;
            }
            case OPT_NO_SLEEP: o->no_sleep = replay_opt = true; break;
            case OPT_STOP_EOS: o->stop_eos = replay_opt = true; break;
            case OPT_SEED:
                if ((rc = parse_size("--seed", optarg, 0, INT64_MAX / 2, &o->seed))) return rc;
                replay_opt = true;
                break;
            case OPT_TEMP:
                if ((rc = parse_num("--temp", optarg, 0, &num))) return rc;
                o->sampling.temperature = (float)num, replay_opt = true;
                break;
            case OPT_TOP_P:
                if ((rc = parse_num("--top-p", optarg, 0, &num))) return rc;
                o->sampling.top_p = (float)num, replay_opt = true;
                break;
            case OPT_HTTP:
                if ((rc = parse_size("--http", optarg, 0, 65535, &o->http_port))) return rc;
                break;
            case OPT_HOST: o->host = optarg; break;
            case OPT_MAX_BODY:
                if ((rc = parse_size("--max-body", optarg, 1, (int64_t)1 << 30, &o->max_body)))
                    return rc;
                break;
            case OPT_GRACE:
                if ((rc = parse_num("--grace", optarg, 0, &o->grace_s))) return rc;
                if (o->grace_s > 3600) return usage_error("--grace %s: at most 3600 s", optarg);
                break;
            case 'h': usage(stdout); return -1;
            case ':': return usage_error("%s needs a value", argv[optind - 1]);
            default:
                return usage_error("unknown option %s",
                                   optopt ? (char[]){'-', (char)optopt, 0} : argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error("unexpected argument \"%s\"", argv[optind]);
    char *list = kvr_strdup(policy);
    if (!list) return usage_error("%s", "out of memory");
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        kvr_error e;
        kvr_serving_policy p;
        if (kvr_serving_policy_parse(tok, &p, &e) != KVR_OK) {
            free(list);
            return usage_error("--policy: %s", e.msg);
        }
        for (int i = 0; i < o->n_policies; i++)
            if (o->policies[i] == p) {
                free(list);
                return usage_error("--policy: '%s' given twice", kvr_serving_policy_name(p));
            }
        o->policies[o->n_policies++] = p;
    }
    free(list);
    if (o->n_policies == 0) return usage_error("--policy '%s': no policy named", policy);
    bool lkv = false;
    for (int i = 0; i < o->n_policies; i++) lkv |= o->policies[i] == KVR_POLICY_LAYERKV;
    if (o->layerkv_opt && !lkv)
        return usage_error("%s", "--host-blocks, --reload, --host-gbps and --max-wait apply to "
                                 "--policy layerkv");
    if (lkv && !(o->slo_ttft_ms > 0 && o->slo_tpot_ms > 0))
        return usage_error("--policy layerkv admits against the SLO: give --slo-ttft MS and "
                           "--slo-tpot MS (> 0; now %g and %g)",
                           o->slo_ttft_ms, o->slo_tpot_ms);
    o->sp.layerkv.slo_ttft_s = o->slo_ttft_ms * 1e-3;
    o->sp.layerkv.slo_tpot_s = o->slo_tpot_ms * 1e-3;
    if (o->http_port >= 0 && o->n_policies > 1)
        return usage_error("--policy '%s': the server runs one policy", policy);
    if (o->http_port >= 0) {
        if (o->trace || o->simulate || (!lkv && (o->costs || o->run_id)) || o->records || o->json ||
            o->no_sleep || o->stop_eos || o->sampling.temperature > 0 || o->sampling.top_p != 1)
            return usage_error("%s", "--http serves requests: --trace, --simulate, --costs, --run "
                                     "(but for --policy layerkv's predictor), --records, --json, "
                                     "--no-sleep, --stop-eos, --temp and --top-p do not apply "
                                     "(sampling comes from each request)");
    } else if (o->host || o->max_body || o->grace_s >= 0)
        return usage_error("%s", "--host, --max-body and --grace apply to --http");
    if (!o->trace && o->http_port < 0)
        return usage_error("%s", "--trace FILE is required (kvr-trace gen or import), or --http PORT");
    if (o->simulate && replay_opt)
        return usage_error("%s", "--model, --backend, --threads, --no-sleep, --stop-eos, --seed, "
                                 "--temp and --top-p apply to the real replay (without "
                                 "--simulate)");
    if (!o->simulate && (o->decode_from_ops ||
                         o->decode.k_us + o->decode.per_seq_us + o->decode.per_ctx_token_us > 0 ||
                         (!lkv && (o->costs || o->run_id || o->allow_incomplete))))
        return usage_error("%s", "--costs, --run, --allow-incomplete, --decode-costs and "
                                 "--decode-from-ops price the simulator: add --simulate, or drop "
                                 "them to replay the trace on the real model (--costs and --run "
                                 "also give --policy layerkv's predictor)");
    if (!o->simulate && lkv && !o->costs && !o->run_id)
        return usage_error("%s", "--policy layerkv on the real model predicts prefill times from "
                                 "a cost model of that model: give --costs FILE.json or --run ID "
                                 "(a profile of it in --db)");
    if (o->decode_from_ops && o->decode.k_us + o->decode.per_seq_us + o->decode.per_ctx_token_us > 0)
        return usage_error("%s", "--decode-costs and --decode-from-ops are two decode prices: "
                                 "give one");
    if (!o->simulate) {
        kvr_error e;
        if (kvr_sampler_params_check(&o->sampling, &e) != KVR_OK) return usage_error("%s", e.msg);
    }
    if (o->costs && o->run_id) return usage_error("%s", "--costs and --run are two cost sources: give one");
    if (o->simulate && !o->costs && !o->run_id)
        return usage_error("%s", "a cost source is required: --costs FILE.json, or --run ID (a "
                                 "profile run in --db, default ./kvr.db)");
    if (o->run_id) {
        kvr_error e;
        if (kvr_parse_i64(o->run_id, 1, INT64_MAX, &o->run, &e) != KVR_OK)
            return usage_error("--run: %s", e.msg);
        if (!o->db) o->db = "kvr.db";
    } else if (o->allow_incomplete)
        return usage_error("%s", "--allow-incomplete applies to --run");
    const int n_pool = (o->sp.pool_blocks > 0) + (o->pool_tokens > 0) + (o->pool_gb > 0);
    if (n_pool != 1)
        return usage_error("%s", n_pool ? "give the KV pool once: --pool-blocks, --pool-tokens or "
                                          "--pool-gb"
                                        : "the KV pool is required: --pool-blocks N, --pool-tokens "
                                          "N or --pool-gb X");
    if (o->records) {
        const kvr_path_role in[] = {{"--trace", o->trace}, {"--costs", o->costs}, {"--db", o->db},
                                    {"--model", o->model}};
        kvr_error e;
        if (kvr_output_check("--records", o->records, in, 4, &e) != KVR_OK)
            return usage_error("%s", e.msg);
    }
    return 0;
}

static void print_summary_text(const char *pol, const kvr_serving_summary *s,
                               const kvr_serving_sim_stats *st, double sim_ms) {
    printf("%-8s %8lld %7lld %7lld %9.1f %9.1f %9.1f %8.2f %8.2f %9.1f %9.1f %6.3f %9.1f %6lld "
           "%7.1f\n",
           pol, (long long)s->n_finished, (long long)s->n_refused, (long long)s->n_preemptions,
           s->ttft_s[0] * 1e3, s->ttft_s[1] * 1e3, s->ttft_s[2] * 1e3, s->tpot_s[0] * 1e3,
           s->tpot_s[1] * 1e3, s->queue_s[0] * 1e3, s->queue_s[1] * 1e3, s->slo_attainment,
           s->output_tok_per_s, (long long)st->peak_blocks, sim_ms);
}

static void json_summary(kvr_text *t, const char *pol, const kvr_serving_summary *s,
                         const kvr_serving_sim_stats *st, double sim_ms, int64_t stored,
                         bool last) {
    kvr_text_printf(t,
                     "    {\"policy\": \"%s\", \"requests\": %lld, \"finished\": %lld, "
                     "\"refused\": %lld, \"preemptions\": %lld,\n"
                     "     \"ttft_ms\": {\"p50\": %.6g, \"p90\": %.6g, \"p99\": %.6g, \"mean\": %.6g},\n"
                     "     \"tpot_ms\": {\"p50\": %.6g, \"p90\": %.6g, \"p99\": %.6g, \"mean\": %.6g},\n"
                     "     \"queue_ms\": {\"p50\": %.6g, \"p90\": %.6g, \"p99\": %.6g, \"mean\": %.6g},\n"
                     "     \"slo_attainment\": %.6g, \"output_tok_per_s\": %.6g, \"req_per_s\": %.6g, "
                     "\"duration_s\": %.6g,\n"
                     "     \"iterations\": %lld, \"peak_blocks\": %lld, \"mean_blocks\": %.6g, "
                     "\"busy_s\": %.6g, \"sim_ms\": %.6g",
                     pol, (long long)s->n, (long long)s->n_finished, (long long)s->n_refused,
                     (long long)s->n_preemptions, s->ttft_s[0] * 1e3, s->ttft_s[1] * 1e3,
                     s->ttft_s[2] * 1e3, s->ttft_mean_s * 1e3, s->tpot_s[0] * 1e3,
                     s->tpot_s[1] * 1e3, s->tpot_s[2] * 1e3, s->tpot_mean_s * 1e3,
                     s->queue_s[0] * 1e3, s->queue_s[1] * 1e3, s->queue_s[2] * 1e3,
                     s->queue_mean_s * 1e3, s->slo_attainment, s->output_tok_per_s, s->req_per_s,
                     s->duration_s, (long long)st->iterations, (long long)st->peak_blocks,
                     st->mean_blocks, st->busy_s, sim_ms);
    if (stored > 0) kvr_text_printf(t, ", \"serving_run\": %lld", (long long)stored);
    if (st->host_gbps > 0)
        kvr_text_printf(t, ",\n     \"layerkv\": {\"host_gbps\": %.6g, \"peak_host_layer_blocks\": %lld, "
                           "\"swap_ins\": %lld, \"copy_exposed_s\": %.6g, \"correction\": %.6g}",
                        st->host_gbps, (long long)st->peak_host_blocks, (long long)st->swap_ins,
                        st->copy_exposed_s, st->correction);
    kvr_text_printf(t, "}%s\n", last ? "" : ",");
}

// ----------------------------------------------------------------------------
// the store: a policy's run as a serving run (docs/serving.md section 8)

#define OCC_BINS 400 /* occupancy points stored per run */

typedef struct store_ctx {
    kvr_db *db;
    const char *path;
    const kvr_trace *tr;
    const char *trace_path;
    char trace_hash[40];
    const kvr_search_costs *m;   /* simulated runs: the costs; NULL: a measured run */
    int64_t model_id, device_id; /* measured runs */
    const char *note;            /* measured runs */
    kvr_db_serving_request *req; /* [n], reused per policy */
    double occ_t[OCC_BINS], occ_mean[OCC_BINS];
    int64_t occ_max[OCC_BINS];
    kvr_db_serving_occupancy occ[OCC_BINS];
} store_ctx;

/* A run's header: the trace, the policy's parameters (defaults resolved), cost source or model. */
static kvr_status run_header(const store_ctx *c, const serve_opts *o,
                             const kvr_serving_sim_params *p, const char *note,
                             kvr_db_serving_run *r, kvr_error *e) {
    const int64_t n = c->tr->n_requests;
    memset(r, 0, sizeof *r);
    snprintf(r->kind, sizeof r->kind, "%s", c->m ? "simulated" : "measured");
    snprintf(r->trace, sizeof r->trace, "%s", c->trace_path);
    snprintf(r->trace_hash, sizeof r->trace_hash, "%s", c->trace_hash);
    r->n_requests = n;
    r->trace_duration_s = n ? c->tr->requests[n - 1].arrival_s : 0;
    r->rate_per_s = r->trace_duration_s > 0 ? (double)n / r->trace_duration_s : -1;
    snprintf(r->policy, sizeof r->policy, "%s", kvr_serving_policy_name(p->sched.policy));
    kvr_sched *sc = NULL; /* the parameters with their defaults resolved, as the run used them */
    kvr_sched_params sp0 = p->sched;
    if (!sp0.n_layers && c->m) sp0.n_layers = kvr_search_costs_n_layers(c->m); /* as simulated */
    KVR_TRY(kvr_sched_create(&sp0, &sc, e));
    const kvr_sched_params *sp = kvr_sched_get_params(sc);
    r->block_tokens = sp->block_tokens;
    r->pool_blocks = sp->pool_blocks;
    r->watermark = sp->watermark;
    r->max_seqs = sp->max_seqs;
    r->max_batched_tokens = sp->max_batched_tokens;
    r->max_model_len = sp->max_model_len;
    kvr_sched_destroy(sc);
    if (c->m) {
        snprintf(r->cost_source, sizeof r->cost_source, "%s", kvr_search_costs_source(c->m));
        snprintf(r->cost_kind, sizeof r->cost_kind, "%s", kvr_search_costs_kind(c->m));
    } else {
        r->model_id = c->model_id, r->device_id = c->device_id;
        snprintf(r->backend, sizeof r->backend, "%s", o->backend);
    }
    r->decode_k_us = p->decode.k_us;
    r->decode_per_seq_us = p->decode.per_seq_us;
    r->decode_per_ctx_token_us = p->decode.per_ctx_token_us;
    r->slo_ttft_ms = o->slo_ttft_ms;
    r->slo_tpot_ms = o->slo_tpot_ms;
    snprintf(r->note, sizeof r->note, "%s", note);
    return KVR_OK;
}

static void run_summary(kvr_db_serving_run *r, const kvr_serving_summary *s,
                        const kvr_serving_sim_stats *st, double sim_ms) {
    r->n_finished = s->n_finished, r->n_refused = s->n_refused, r->n_preemptions = s->n_preemptions;
    r->ttft_p50_ms = s->ttft_s[0] * 1e3, r->ttft_p90_ms = s->ttft_s[1] * 1e3;
    r->ttft_p99_ms = s->ttft_s[2] * 1e3, r->ttft_mean_ms = s->ttft_mean_s * 1e3;
    r->tpot_p50_ms = s->tpot_s[0] * 1e3, r->tpot_p90_ms = s->tpot_s[1] * 1e3;
    r->tpot_p99_ms = s->tpot_s[2] * 1e3, r->tpot_mean_ms = s->tpot_mean_s * 1e3;
    r->queue_p50_ms = s->queue_s[0] * 1e3, r->queue_p90_ms = s->queue_s[1] * 1e3;
    r->queue_p99_ms = s->queue_s[2] * 1e3, r->queue_mean_ms = s->queue_mean_s * 1e3;
    r->slo_attainment = s->slo_attainment;
    r->output_tok_per_s = s->output_tok_per_s;
    r->req_per_s = s->req_per_s;
    r->duration_s = s->duration_s;
    r->iterations = st->iterations;
    r->peak_blocks = st->peak_blocks;
    r->mean_blocks = st->mean_blocks;
    r->busy_s = st->busy_s;
    r->wall_s = sim_ms * 1e-3;
}

static kvr_db_serving_request db_request(int64_t i, const kvr_serving_record *x) {
    return (kvr_db_serving_request){0,
                                    i,
                                    x->arrival_s,
                                    x->admitted_s,
                                    x->first_token_s,
                                    x->finish_s,
                                    x->prompt_tokens,
                                    x->output_tokens,
                                    x->max_blocks,
                                    x->preemptions,
                                    x->refused};
}

/* A simulated policy's run, whole, in one transaction. */
static kvr_status store_run(store_ctx *c, const serve_opts *o, const kvr_serving_sim_params *p,
                            const kvr_serving_record *rec, const kvr_serving_summary *s,
                            const kvr_serving_sim_stats *st, double sim_ms, int64_t *id,
                            kvr_error *e) {
    const int64_t n = c->tr->n_requests;
    kvr_db_serving_run r;
    char note[256], lkv[160] = "";
    if (p->sched.policy == KVR_POLICY_LAYERKV)
        snprintf(lkv, sizeof lkv, "; layerkv: host %lld blocks, reload %s, copy %.3g GB/s, "
                 "%lld swap-ins, %.3g s copy exposed",
                 (long long)p->sched.host_blocks, kvr_reload_policy_name(p->sched.layerkv.reload),
                 st->host_gbps, (long long)st->swap_ins, st->copy_exposed_s);
    snprintf(note, sizeof note, "kvr-serve --simulate%s%s",
             st->decode_from_ops     ? ", decode costs from the prefill ops"
             : st->decode_from_costs ? ", decode step of the cost model"
                                     : ", --decode-costs", lkv);
    KVR_TRY(run_header(c, o, p, note, &r, e));
    /* the decode step the simulation used (--decode-costs, or the cost model's; 0: the ops) */
    r.decode_k_us = st->decode.k_us;
    r.decode_per_seq_us = st->decode.per_seq_us;
    r.decode_per_ctx_token_us = st->decode.per_ctx_token_us;
    run_summary(&r, s, st, sim_ms);
    for (int64_t i = 0; i < n; i++) c->req[i] = db_request(i, &rec[i]);
    int64_t n_occ = 0;
    if (st->end_s > 0 && p->occupancy && p->occupancy->n > 0) {
        KVR_TRY(kvr_serving_occupancy_bins(p->occupancy, st->end_s, OCC_BINS, c->occ_t,
                                           c->occ_mean, c->occ_max, e));
        for (; n_occ < OCC_BINS; n_occ++)
            c->occ[n_occ] = (kvr_db_serving_occupancy){0, c->occ_t[n_occ], c->occ_mean[n_occ],
                                                        c->occ_max[n_occ]};
    }
    KVR_TRY(kvr_db_serving_run_put(c->db, &r, c->req, n, c->occ, n_occ, e));
    *id = r.id;
    return KVR_OK;
}

static void records_csv(kvr_text *t, const char *pol, const kvr_serving_record *r, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        kvr_text_printf(t, "%s,%lld,%.9g,%lld,%lld,%d,%.9g,%.9g,%.9g,%lld,%d\n", pol,
                         (long long)i, r[i].arrival_s, (long long)r[i].prompt_tokens,
                         (long long)r[i].output_tokens, r[i].refused ? 1 : 0, r[i].admitted_s,
                         r[i].first_token_s, r[i].finish_s, (long long)r[i].max_blocks,
                         r[i].preemptions);
}

/* The cost model of --run (with kvr-fit's decode step when stored) or of --costs into *m (the
 * caller frees it, also after an error); no_fit (n_no_fit bytes) says why no decode step was
 * found. Returns 0, or the exit code after a message. */
static int load_costs(const serve_opts *o, kvr_db *db, kvr_search_costs **m, char *no_fit,
                      size_t n_no_fit) {
    kvr_error e;
    if (o->run_id) {
        kvr_profile_costs_params cp = kvr_profile_costs_params_default();
        cp.allow_incomplete = o->allow_incomplete;
        kvr_profile_costs_info pinfo;
        if (kvr_profile_costs_from_run(db, o->run, &cp, m, &pinfo, &e) != KVR_OK) {
            fprintf(stderr, "kvr-serve: --run %lld in %s: %s\n", (long long)o->run, o->db, e.msg);
            return 1;
        }
        /* the decode step: kvr-fit's fit of the run's decode samples, when stored */
        kvr_predict_run_fit rf;
        int64_t fit_id = 0;
        const kvr_status fs = kvr_predict_run_fit_load(db, o->run, 0, 0, &rf, &fit_id, &e);
        if (fs == KVR_OK && rf.n_decode_samples > 0) {
            char how[160];
            snprintf(how, sizeof how, "kvr-fit of run %lld (fit %lld, %d decode samples)",
                     (long long)o->run, (long long)fit_id, rf.n_decode_samples);
            kvr_status ss = kvr_search_costs_set_decode_step(*m, &rf.decode, how, &e);
            kvr_predict_run_fit_free(&rf);
            if (ss != KVR_OK) {
                fprintf(stderr, "kvr-serve: --run %lld: stored decode step: %s\n",
                        (long long)o->run, e.msg);
                return 1;
            }
        } else if (fs == KVR_OK) {
            kvr_predict_run_fit_free(&rf);
            snprintf(no_fit, n_no_fit, "run %lld's fit has no decode step (kvr-profile "
                     "--decode, then kvr-fit --run ID)", (long long)o->run);
        } else if (fs == KVR_ERR_NOT_FOUND) {
            snprintf(no_fit, n_no_fit, "no kvr-fit cost model of run %lld (kvr-fit --run "
                     "%lld fits its decode samples)", (long long)o->run, (long long)o->run);
        } else {
            fprintf(stderr, "kvr-serve: --run %lld: the stored cost model: %s\n", (long long)o->run,
                    e.msg);
            return 1;
        }
    } else if (kvr_search_costs_load_json(o->costs, m, &e) != KVR_OK) {
        fprintf(stderr, "kvr-serve: --costs: %s\n(see kvr-serve --help)\n", e.msg);
        return 2;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// the real replay: the trace against the serving engine on the model

/* request i's prompt: the trace's text tokenized (with a tokenizer), else prompt_tokens seeded
 * random ids; *ids malloc'd */
static kvr_status replay_prompt(const kvr_trace_request *q, int64_t i, uint64_t seed,
                                const kvr_tokenizer *tok, int32_t V, int32_t **ids, int64_t *n,
                                kvr_error *e) {
    if (q->prompt && tok)
        return kvr_tokenizer_encode(tok, q->prompt, strlen(q->prompt), kvr_tokenizer_wants_bos(tok),
                                    false, ids, n, e);
    *ids = malloc((size_t)q->prompt_tokens * sizeof **ids);
    if (!*ids) return kvr_error_set(e, KVR_ERR_NOMEM, "out of memory for a prompt");
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + (uint64_t)i * 0xbf58476d1ce4e5b9ull + 1;
    for (int64_t k = 0; k < q->prompt_tokens; k++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        (*ids)[k] = (int32_t)((x >> 33) % (uint64_t)V);
    }
    *n = q->prompt_tokens;
    return KVR_OK;
}

static void sleep_s(double s) {
    if (!(s > 0)) return;
    if (s > 1) s = 1; /* wake up now and then; the caller loops */
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* One policy's replay into rec (one record per trace request). */
/* Finished requests go to the store as they finish (sc->req is the batch waiting to be
 * written): at most a second after they finish, and whenever the engine is idle, so a replay
 * killed (SIGKILL) keeps them; the run's header was written at its start (kvr_db.h). */
typedef struct replay_store {
    store_ctx *sc;      /* NULL: no store */
    int64_t run_id;
    int64_t n_pending;
    double last_us;     /* the last write */
    bool *stored;       /* [n]: the request is stored or pending */
} replay_store;

static kvr_status replay_flush(replay_store *rs, bool now, kvr_error *e) {
    if (!rs->sc || rs->n_pending == 0 || (!now && kvr_time_us() - rs->last_us < 1e6))
        return KVR_OK;
    KVR_TRY(kvr_db_serving_requests_add(rs->sc->db, rs->run_id, rs->sc->req, rs->n_pending, e));
    rs->n_pending = 0;
    rs->last_us = kvr_time_us();
    return KVR_OK;
}

static void replay_pending(replay_store *rs, int64_t i, const kvr_serving_record *x) {
    if (!rs->sc || rs->stored[i]) return;
    rs->stored[i] = true;
    rs->sc->req[rs->n_pending++] = db_request(i, x);
}

static kvr_status replay_policy(const serve_opts *o, const kvr_trace *tr, const kvr_weights *w,
                                kvr_kv_pool *pool, const kvr_tokenizer *tok,
                                kvr_serving_policy pol, kvr_serving_record *rec,
                                kvr_serving_sim_stats *stats, kvr_sched_params *used,
                                replay_store *rs, kvr_error *e) {
    const kvr_model_config *cfg = kvr_kv_pool_config(pool);
    kvr_engine_params ep = kvr_engine_params_default();
    ep.sched = o->sp;
    ep.sched.policy = pol;
    ep.n_threads = (int32_t)o->threads;
    ep.clock = o->no_sleep ? KVR_ENGINE_CLOCK_VIRTUAL : KVR_ENGINE_CLOCK_REAL;
    if (pol == KVR_POLICY_LAYERKV) ep.costs = o->engine_costs, ep.host_gbps = o->host_gbps;
    else ep.sched.host_blocks = 0; /* the pool's host tier is layerkv's (one per pool) */
    int32_t eog[16];
    const int32_t n_eog = o->stop_eos && tok ? kvr_tokenizer_eog(tok, eog, 16) : 0;
    kvr_engine *eng = NULL;
    KVR_TRY(kvr_engine_create(w, pool, &ep, &eng, e));
    *used = *kvr_engine_sched_params(eng);
    const int64_t n = tr->n_requests;
    int32_t *eid = malloc((size_t)(n ? n : 1) * sizeof *eid);
    kvr_status st = eid ? KVR_OK : kvr_error_set(e, KVR_ERR_NOMEM, "out of memory");
    if (st == KVR_OK && rs->sc) {
        rs->stored = calloc((size_t)(n ? n : 1), sizeof *rs->stored);
        if (!rs->stored) st = kvr_error_set(e, KVR_ERR_NOMEM, "out of memory");
        kvr_serving_sim_params p = {*used, NULL, {0, 0, 0}, NULL, false, 0};
        kvr_db_serving_run r;
        if (st == KVR_OK) st = run_header(rs->sc, o, &p, rs->sc->note, &r, e);
        if (st == KVR_OK) st = kvr_db_serving_run_begin(rs->sc->db, &r, e);
        rs->run_id = r.id, rs->n_pending = 0, rs->last_us = kvr_time_us();
    }
    int64_t next = 0, scan = 0; /* scan: requests before it are finished or refused */
    while (st == KVR_OK && (next < n || kvr_engine_n_unfinished(eng) > 0)) {
        for (; st == KVR_OK && next < n && tr->requests[next].arrival_s <= kvr_engine_now(eng);
             next++) {
            const kvr_trace_request *q = &tr->requests[next];
            int32_t *ids = NULL;
            int64_t n_ids = 0;
            st = replay_prompt(q, next, (uint64_t)o->seed, tok, cfg->vocab_size, &ids, &n_ids, e);
            if (st != KVR_OK) break;
            kvr_engine_request rq = kvr_engine_request_default();
            rq.prompt = ids, rq.n_prompt = n_ids, rq.max_tokens = q->output_tokens;
            rq.sampling = o->sampling;
            rq.sampling.seed = (uint64_t)o->seed + (uint64_t)next;
            rq.stop_ids = eog, rq.n_stop = n_eog;
            kvr_error re;
            eid[next] = -1;
            const kvr_status sub = n_ids > 0 ? kvr_engine_submit(eng, &rq, q->arrival_s,
                                                                 &eid[next], &re)
                                             : KVR_ERR_INVALID_ARG;
            free(ids);
            if (sub == KVR_ERR_INVALID_ARG) { /* the scheduler refuses it: it can never run */
                rec[next] = (kvr_serving_record){q->arrival_s, -1, -1, -1, n_ids, 0, 0, 0, true};
                replay_pending(rs, next, &rec[next]);
            } else if (sub != KVR_OK)
                st = kvr_error_set(e, sub, "request %lld: %s", (long long)next, re.msg);
        }
        bool ran = false;
        if (st == KVR_OK) st = kvr_engine_step(eng, &ran, e);
        if (st == KVR_OK && rs->sc) { /* what finished goes to the store */
            for (int64_t i = scan; i < next; i++)
                if (eid[i] >= 0 && kvr_engine_finished(eng, eid[i]))
                    replay_pending(rs, i, kvr_engine_record(eng, eid[i]));
            while (scan < next && (eid[scan] < 0 || kvr_engine_finished(eng, eid[scan]))) scan++;
            st = replay_flush(rs, !ran, e);
        }
        if (st != KVR_OK || ran) continue;
        if (next < n) {
            const double wait = tr->requests[next].arrival_s - kvr_engine_now(eng);
            if (o->no_sleep) kvr_engine_advance_to(eng, tr->requests[next].arrival_s);
            else sleep_s(wait);
        } else if (kvr_engine_n_unfinished(eng) > 0)
            st = kvr_error_set(e, KVR_ERR_INVALID_ARG, "the engine stalled with %d requests "
                               "unfinished", kvr_engine_n_unfinished(eng));
    }
    double end = 0;
    for (int64_t i = 0; st == KVR_OK && i < n; i++)
        if (eid[i] >= 0) {
            rec[i] = *kvr_engine_record(eng, eid[i]);
            end = KVR_MAX(end, rec[i].finish_s);
        }
    if (st == KVR_OK) st = replay_flush(rs, true, e);
    free(rs->stored);
    rs->stored = NULL;
    const kvr_engine_stats es = kvr_engine_get_stats(eng);
    memset(stats, 0, sizeof *stats);
    stats->iterations = es.iterations, stats->busy_s = es.busy_s, stats->end_s = end;
    stats->peak_blocks = es.peak_blocks, stats->mean_blocks = es.mean_blocks;
    if (pol == KVR_POLICY_LAYERKV) {
        stats->peak_host_blocks = es.peak_host_blocks, stats->swap_ins = es.swap_ins;
        stats->correction = es.correction;
        stats->host_gbps = kvr_serving_host_gbps(o->engine_costs, o->host_gbps);
    }
    free(eid);
    kvr_engine_destroy(eng);
    return st;
}

/* The real model on --backend (cpu) and its KV pool (the replay's and the server's). */
typedef struct real_model {
    char defpath[1024];
    kvr_model *model;
    const kvr_backend *be;
    kvr_weights *w;
    kvr_kv_pool *pool;
    int64_t bb; /* bytes per KV block */
} real_model;

static void real_model_close(real_model *m) {
    kvr_kv_pool_destroy(m->pool);
    kvr_weights_free(m->w);
    kvr_model_destroy(m->model);
}

/* Returns 0, or the exit code after a message. */
static int real_model_open(serve_opts *o, real_model *m) {
    kvr_error e;
    memset(m, 0, sizeof *m);
    if (!o->model) {
        if (kvr_model_default_path(m->defpath, sizeof m->defpath, &e) != KVR_OK) {
            fprintf(stderr, "kvr-serve: --model not given and %s\n", e.msg);
            return 1;
        }
        o->model = m->defpath;
    }
    kvr_model_load_params lp = kvr_model_load_params_default();
    lp.seed = (uint64_t)o->seed;
    if (kvr_model_load(o->model, &lp, &m->model, &e) != KVR_OK) {
        fprintf(stderr, "kvr-serve: --model %s: %s\n", o->model, e.msg);
        return 1;
    }
    const kvr_model_config *cfg = kvr_model_get_config(m->model);
    if (o->engine_costs && kvr_search_costs_n_layers(o->engine_costs) != cfg->n_layers) {
        fprintf(stderr, "kvr-serve: %s %s: the cost model has %d layers, --model %s has %d: "
                        "layerkv's admission needs the served model's costs\n(see kvr-serve "
                        "--help)\n",
                o->costs ? "--costs" : "--run", o->costs ? o->costs : o->run_id,
                kvr_search_costs_n_layers(o->engine_costs), o->model, cfg->n_layers);
        return 2;
    }
    m->bb = kvr_kv_block_bytes(cfg, o->sp.block_tokens);
    if (o->pool_tokens) o->sp.pool_blocks = o->pool_tokens / o->sp.block_tokens;
    if (o->pool_gb > 0) o->sp.pool_blocks = (int64_t)(o->pool_gb * 1e9 / (double)m->bb);
    if (o->sp.pool_blocks < 1 || o->sp.pool_blocks > INT32_MAX / o->sp.block_tokens) {
        fprintf(stderr, "kvr-serve: the KV pool holds %lld blocks of %d tokens (need 1 to %d "
                        "tokens)\n(see kvr-serve --help)\n",
                (long long)o->sp.pool_blocks, o->sp.block_tokens, INT32_MAX);
        return 2;
    }
    if (kvr_backend_get(o->backend, &m->be, &e) != KVR_OK) {
        fprintf(stderr, "kvr-serve: --backend %s: %s\n", o->backend, e.msg);
        return 1;
    }
    if (kvr_weights_upload(m->be, m->model, &m->w, &e) != KVR_OK ||
        kvr_kv_pool_create(m->w, o->sp.pool_blocks, o->sp.block_tokens, &m->pool, &e) != KVR_OK) {
        fprintf(stderr, "kvr-serve: %s\n", e.msg);
        return 1;
    }
    return 0;
}

static int replay_main(serve_opts *o, const kvr_trace *tr, kvr_db *db) {
    kvr_error e;
    int rc = 1;
    real_model rm;
    kvr_serving_record *rec = NULL;
    store_ctx *sc = NULL;
    kvr_text out = {0}, csv = {0}, stored = {0};
    char note[256];
    rc = real_model_open(o, &rm);
    if (rc) {
        real_model_close(&rm);
        return rc;
    }
    rc = 1;
    kvr_model *model = rm.model;
    kvr_weights *w = rm.w;
    kvr_kv_pool *pool = rm.pool;
    const kvr_backend *be = rm.be;
    const int64_t bb = rm.bb;
    const kvr_tokenizer *tok = kvr_model_get_tokenizer(model);
    const int64_t n = tr->n_requests;
    rec = malloc((size_t)(n ? n : 1) * sizeof *rec);
    if (!rec) {
        fprintf(stderr, "kvr-serve: out of memory for %lld records\n", (long long)n);
        goto done;
    }
    int64_t n_text = 0;
    for (int64_t i = 0; i < n; i++) n_text += tr->requests[i].prompt != NULL;
    snprintf(note, sizeof note, "kvr-serve --trace: %s, %lld threads, arrivals %s, prompts %s, "
             "%s", o->model, (long long)o->threads, o->no_sleep ? "on a virtual clock (--no-sleep)"
             : "in real time", n_text && tok ? "tokenized text or seeded ids" : "seeded ids",
             o->stop_eos ? "stop at EOS" : "EOS ignored");
    if (o->store) {
        sc = calloc(1, sizeof *sc);
        if (sc) sc->req = malloc((size_t)(n ? n : 1) * sizeof *sc->req);
        if (!sc || !sc->req) {
            fprintf(stderr, "kvr-serve: out of memory for %lld records\n", (long long)n);
            goto done;
        }
        sc->db = db, sc->path = o->db, sc->tr = tr, sc->trace_path = o->trace, sc->note = note;
        kvr_trace_content_hash(tr, sc->trace_hash, sizeof sc->trace_hash);
        kvr_db_model mrec;
        kvr_db_device dev;
        kvr_profile_device(&dev, be);
        if (kvr_profile_model_record(model, o->model, (uint64_t)o->seed, 0, &mrec, &e) != KVR_OK ||
            kvr_db_model_put(db, &mrec, &sc->model_id, &e) != KVR_OK ||
            kvr_db_device_put(db, &dev, &sc->device_id, &e) != KVR_OK) {
            fprintf(stderr, "kvr-serve: --db %s: %s\n", o->db, e.msg);
            goto done;
        }
    }
    const double dur = n ? tr->requests[n - 1].arrival_s : 0;
    const double kv_gb = (double)bb * (double)o->sp.pool_blocks * 1e-9;
    if (!o->json) {
        printf("# kvr-serve: %s, %lld requests over %.1f s, replayed on %s (cpu, %lld threads); "
               "arrivals %s\n",
               o->trace, (long long)n, dur, o->model, (long long)o->threads,
               o->no_sleep ? "as soon as due on a virtual clock that follows the real iterations "
                             "(--no-sleep)"
                           : "in real time");
        printf("# pool %lld blocks x %d tokens (%lld tokens, %.3f GB of fp32 K/V), watermark %g, "
               "max_seqs %d\n",
               (long long)o->sp.pool_blocks, o->sp.block_tokens,
               (long long)(o->sp.pool_blocks * o->sp.block_tokens), kv_gb, o->sp.watermark,
               o->sp.max_seqs);
        printf("# prompts: %s (seed %lld); outputs: the trace's lengths, %s; sampling %s\n",
               n_text && tok ? "the trace's text tokenized, else seeded random ids"
                             : "seeded random ids of the trace's lengths",
               (long long)o->seed, o->stop_eos ? "ending early at EOS" : "EOS ignored",
               kvr_sampler_params_greedy(&o->sampling) ? "greedy" : "seeded");
        printf("# SLO: TTFT <= %g ms, TPOT <= %g ms (0: not checked)\n", o->slo_ttft_ms, o->slo_tpot_ms);
        for (int i = 0; i < o->n_policies; i++)
            if (o->policies[i] == KVR_POLICY_LAYERKV)
                printf("# layerkv: host tier %lld blocks, reload %s\n", (long long)o->sp.host_blocks,
                       kvr_reload_policy_name(o->sp.layerkv.reload));
        printf("%-8s %8s %7s %7s %9s %9s %9s %8s %8s %9s %9s %6s %9s %6s %7s\n", "policy",
               "finished", "refused", "preempt", "ttft_p50", "ttft_p90", "ttft_p99", "tpot_p50",
               "tpot_p90", "queue_p50", "queue_p90", "slo", "tok/s", "peak", "wall_s");
        printf("%-8s %8s %7s %7s %9s %9s %9s %8s %8s %9s %9s %6s %9s %6s %7s\n", "", "", "", "",
               "(ms)", "(ms)", "(ms)", "(ms)", "(ms)", "(ms)", "(ms)", "", "", "blocks", "");
    } else
        kvr_text_printf(&out, "{\n  \"schema\": \"kvr-serve-replay/1\",\n  \"requests\": %lld,\n"
                               "  \"model\": \"%s\", \"no_sleep\": %s,\n"
                               "  \"pool_blocks\": %lld, \"block_tokens\": %d,\n  \"policies\": [\n",
                         (long long)n, o->model, o->no_sleep ? "true" : "false",
                         (long long)o->sp.pool_blocks, o->sp.block_tokens);
    if (o->records)
        kvr_text_printf(&csv, "policy,request,arrival_s,prompt_tokens,output_tokens,refused,"
                               "admitted_s,first_token_s,finish_s,max_blocks,preemptions\n");
    for (int i = 0; i < o->n_policies; i++) {
        kvr_serving_sim_stats st;
        kvr_serving_summary s;
        kvr_serving_sim_params p = {o->sp, NULL, {0, 0, 0}, NULL, false, 0};
        const double t0 = kvr_time_us();
        replay_store rs = {sc, 0, 0, 0, NULL};
        if (replay_policy(o, tr, w, pool, tok, o->policies[i], rec, &st, &p.sched, &rs, &e) !=
            KVR_OK) {
            fprintf(stderr, "kvr-serve: %s\n", e.msg);
            goto done;
        }
        const double wall_ms = (kvr_time_us() - t0) * 1e-3;
        if (kvr_serving_summarize(rec, n, o->slo_ttft_ms * 1e-3, o->slo_tpot_ms * 1e-3, &s, &e)) {
            fprintf(stderr, "kvr-serve: %s\n", e.msg);
            goto done;
        }
        const char *pol = kvr_serving_policy_name(o->policies[i]);
        int64_t run_id = 0;
        if (sc) { /* the requests are stored: the summary and the end time */
            kvr_db_serving_run r;
            kvr_status hs = run_header(sc, o, &p, sc->note, &r, &e);
            if (hs == KVR_OK) {
                run_summary(&r, &s, &st, wall_ms);
                r.id = run_id = rs.run_id;
                hs = kvr_db_serving_run_end(db, &r, NULL, 0, &e);
            }
            if (hs != KVR_OK) {
                fprintf(stderr, "kvr-serve: --db %s: %s\n", o->db, e.msg);
                goto done;
            }
            kvr_text_printf(&stored, "# stored as serving run %lld (measured, %s, %lld requests) "
                                     "in %s\n",
                            (long long)run_id, pol, (long long)n, o->db);
        }
        if (o->json) json_summary(&out, pol, &s, &st, wall_ms, run_id, i == o->n_policies - 1);
        else print_summary_text(pol, &s, &st, wall_ms * 1e-3);
        if (!o->json && o->policies[i] == KVR_POLICY_LAYERKV)
            kvr_text_printf(&stored, "# layerkv: host %lld blocks, reload %s, predicted with copy "
                                     "%g GB/s: peak %lld host layer blocks, %lld swap-ins, "
                                     "correction %.3f\n",
                            (long long)o->sp.host_blocks,
                            kvr_reload_policy_name(o->sp.layerkv.reload), st.host_gbps,
                            (long long)st.peak_host_blocks, (long long)st.swap_ins, st.correction);
        if (o->records) records_csv(&csv, pol, rec, n);
        fflush(stdout);
    }
    if (out.nomem || csv.nomem || stored.nomem) {
        fprintf(stderr, "kvr-serve: out of memory\n");
        goto done;
    }
    if (o->json) {
        kvr_text_printf(&out, "  ]\n}\n");
        fputs(out.s ? out.s : "", stdout);
    } else if (stored.s)
        fputs(stored.s, stdout);
    rc = 0;
    if (o->records && kvr_write_file_atomic(o->records, csv.s, csv.len, &e) != KVR_OK) {
        fprintf(stderr, "kvr-serve: --records %s: %s\n", o->records, e.msg);
        rc = 1;
    }
done:
    kvr_text_free(&out), kvr_text_free(&csv), kvr_text_free(&stored);
    if (sc) free(sc->req);
    free(sc);
    free(rec);
    real_model_close(&rm);
    return rc;
}

// ----------------------------------------------------------------------------
// the HTTP server (serve/kvr_http.h does the work)

static volatile sig_atomic_t http_stop = 0;
static void http_on_signal(int sig) {
    (void)sig;
    http_stop = 1;
}

static int http_main(serve_opts *o) {
    kvr_error e;
    kvr_db *db = NULL;
    kvr_engine *eng = NULL;
    kvr_http_server *srv = NULL;
    kvr_search_costs *m = NULL;
    char no_fit[200];
    real_model rm;
    memset(&rm, 0, sizeof rm);
    int rc = 1;
    if (o->store || o->run_id) {
        kvr_db_open_params dp = kvr_db_open_params_default();
        if (kvr_db_open(o->db, &dp, &db, &e) != KVR_OK) {
            fprintf(stderr, "kvr-serve: --db %s: %s\n", o->db, e.msg);
            goto done;
        }
    }
    /* layerkv's predictor: the costs of the served model */
    if ((o->costs || o->run_id) && (rc = load_costs(o, db, &m, no_fit, sizeof no_fit))) goto done;
    o->engine_costs = m;
    rc = real_model_open(o, &rm);
    if (rc) goto done;
    rc = 1;
    kvr_engine_params ep = kvr_engine_params_default();
    ep.sched = o->sp;
    ep.sched.policy = o->policies[0];
    ep.n_threads = (int32_t)o->threads;
    if (ep.sched.policy == KVR_POLICY_LAYERKV) ep.costs = m, ep.host_gbps = o->host_gbps;
    if (kvr_engine_create(rm.w, rm.pool, &ep, &eng, &e) != KVR_OK) {
        fprintf(stderr, "kvr-serve: %s\n", e.msg);
        rc = e.code == KVR_ERR_INVALID_ARG ? 2 : 1;
        goto done;
    }
    const kvr_tokenizer *tok = kvr_model_get_tokenizer(rm.model);
    const kvr_model_config *cfg = kvr_model_get_config(rm.model);
    int32_t eog[16];
    kvr_http_params hp = kvr_http_params_default();
    hp.port = (int32_t)o->http_port;
    if (o->host) hp.host = o->host;
    if (o->max_body) hp.max_body_bytes = (size_t)o->max_body;
    if (o->grace_s >= 0) hp.shutdown_grace_s = o->grace_s;
    hp.model_name = cfg->name[0] ? cfg->name : "kvr";
    hp.seed = (uint64_t)o->seed;
    hp.n_stop_ids = tok ? kvr_tokenizer_eog(tok, eog, 16) : 0;
    hp.stop_ids = eog;
    kvr_db_serving_run run;
    memset(&run, 0, sizeof run);
    if (db && o->store) { /* the run's header; the server stores the requests and the summary */
        kvr_db_model mrec;
        kvr_db_device dev;
        kvr_profile_device(&dev, rm.be);
        if (kvr_profile_model_record(rm.model, o->model, (uint64_t)o->seed, 0, &mrec, &e) != KVR_OK ||
            kvr_db_model_put(db, &mrec, &run.model_id, &e) != KVR_OK ||
            kvr_db_device_put(db, &dev, &run.device_id, &e) != KVR_OK) {
            fprintf(stderr, "kvr-serve: --db %s: %s\n", o->db, e.msg);
            goto done;
        }
        const kvr_sched_params *sp = kvr_engine_sched_params(eng);
        snprintf(run.kind, sizeof run.kind, "measured");
        run.trace_duration_s = run.rate_per_s = -1;
        snprintf(run.policy, sizeof run.policy, "%s", kvr_serving_policy_name(sp->policy));
        run.block_tokens = sp->block_tokens, run.pool_blocks = sp->pool_blocks;
        run.watermark = sp->watermark, run.max_seqs = sp->max_seqs;
        run.max_batched_tokens = sp->max_batched_tokens, run.max_model_len = sp->max_model_len;
        snprintf(run.backend, sizeof run.backend, "%s", o->backend);
        run.slo_ttft_ms = o->slo_ttft_ms, run.slo_tpot_ms = o->slo_tpot_ms;
        snprintf(run.note, sizeof run.note, "kvr-serve --http: %s, %lld threads", o->model,
                 (long long)o->threads);
        hp.db = db, hp.run = &run;
    }
    if (kvr_http_server_create(eng, tok, &hp, &srv, &e) != KVR_OK) {
        fprintf(stderr, "kvr-serve: --http %lld: %s\n", (long long)o->http_port, e.msg);
        goto done;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = http_on_signal; /* no SA_RESTART: the engine thread polls the flag */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    bool chat_ok;
    const char *chat = kvr_http_server_chat_format(srv, &chat_ok);
    printf("# kvr-serve: listening on http://%s:%d (model %s, pool %lld blocks x %d tokens, "
           "policy %s, chat %s%s)\n",
           hp.host, kvr_http_server_port(srv), hp.model_name, (long long)o->sp.pool_blocks,
           o->sp.block_tokens, kvr_serving_policy_name(o->policies[0]),
           chat_ok ? "format " : "refused: ", chat);
    if (db && o->store) printf("# stored as serving run %lld in %s\n", (long long)kvr_http_server_run_id(srv), o->db);
    fflush(stdout);
    if (kvr_http_server_run(srv, &http_stop, &e) != KVR_OK) {
        fprintf(stderr, "kvr-serve: %s\n", e.msg);
        goto done;
    }
    const kvr_http_stats st = kvr_http_server_stats(srv);
    printf("# kvr-serve: stopped: %lld HTTP requests, %lld generations finished, %lld cancelled, "
           "%lld stored; %lld prompt and %lld generated tokens\n",
           (long long)st.requests, (long long)st.finished, (long long)st.cancelled,
           (long long)st.stored, (long long)st.prompt_tokens, (long long)st.generated_tokens);
    rc = 0;
done:
    kvr_http_server_destroy(srv);
    kvr_engine_destroy(eng);
    kvr_search_costs_destroy(m);
    kvr_db_close(db);
    real_model_close(&rm);
    return rc;
}

int main(int argc, char **argv) {
    serve_opts o;
    memset(&o, 0, sizeof o);
    o.sp = kvr_sched_params_default();
    o.sampling = kvr_sampler_params_default();
    o.seed = 1234;
    o.threads = 1;
    o.backend = "cpu";
    o.http_port = -1;
    o.grace_s = -1;
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    if (o.http_port >= 0) return http_main(&o);
    kvr_error e;
    kvr_trace *tr = NULL;
    kvr_search_costs *m = NULL;
    kvr_db *db = NULL;
    kvr_serving_record *rec = NULL;
    kvr_text out = {0}, csv = {0}, stored = {0};
    kvr_serving_occupancy occ = {0};
    store_ctx *sc = NULL;
    char no_fit[200] = "the cost file has no \"decode_step\"";
    if (kvr_trace_load(o.trace, &tr, &e) != KVR_OK) {
        fprintf(stderr, "kvr-serve: --trace: %s\n", e.msg);
        rc = e.code == KVR_ERR_FORMAT ? 2 : 1;
        goto done;
    }
    if (o.run_id || o.store) {
        kvr_db_open_params dp = kvr_db_open_params_default();
        if (kvr_db_open(o.db, &dp, &db, &e) != KVR_OK) {
            fprintf(stderr, "kvr-serve: --db %s: %s\n", o.db, e.msg);
            rc = 1;
            goto done;
        }
    }
    if (!o.simulate) { /* layerkv's predictor: the costs of the served model */
        if ((o.costs || o.run_id) && (rc = load_costs(&o, db, &m, no_fit, sizeof no_fit)))
            goto done;
        o.engine_costs = m;
        rc = replay_main(&o, tr, db);
        goto done;
    }
    if ((rc = load_costs(&o, db, &m, no_fit, sizeof no_fit))) goto done;
    const double kvb = kvr_search_costs_kv_bytes_per_token(m) * kvr_search_costs_n_layers(m);
    if (o.pool_tokens) o.sp.pool_blocks = o.pool_tokens / o.sp.block_tokens;
    if (o.pool_gb > 0) {
        if (!(kvb > 0)) {
            fprintf(stderr, "kvr-serve: --pool-gb: the cost model gives no K/V bytes per token; "
                            "use --pool-blocks or --pool-tokens\n(see kvr-serve --help)\n");
            rc = 2;
            goto done;
        }
        o.sp.pool_blocks = (int64_t)(o.pool_gb * 1e9 / (kvb * o.sp.block_tokens));
    }
    if (o.sp.pool_blocks < 1) {
        fprintf(stderr, "kvr-serve: the KV pool holds less than one block of %d tokens\n(see "
                        "kvr-serve --help)\n",
                o.sp.block_tokens);
        rc = 2;
        goto done;
    }
    const int64_t n = tr->n_requests;
    rec = malloc((size_t)(n ? n : 1) * sizeof *rec);
    if (!rec) {
        fprintf(stderr, "kvr-serve: out of memory for %lld records\n", (long long)n);
        rc = 1;
        goto done;
    }
    if (o.store) {
        sc = calloc(1, sizeof *sc);
        if (sc) sc->req = malloc((size_t)(n ? n : 1) * sizeof *sc->req);
        if (!sc || !sc->req) {
            fprintf(stderr, "kvr-serve: out of memory for %lld records\n", (long long)n);
            rc = 1;
            goto done;
        }
        sc->db = db, sc->path = o.db, sc->tr = tr, sc->trace_path = o.trace, sc->m = m;
        kvr_trace_content_hash(tr, sc->trace_hash, sizeof sc->trace_hash);
    }
    const double dur = n ? tr->requests[n - 1].arrival_s : 0;
    if (!o.json) {
        printf("# kvr-serve --simulate: %s, %lld requests over %.1f s; costs %s (%s)\n", o.trace,
               (long long)n, dur, kvr_search_costs_source(m), kvr_search_costs_kind(m));
        printf("# pool %lld blocks x %d tokens (%lld tokens%s%.2f GB of K/V), watermark %g, "
               "max_seqs %d\n",
               (long long)o.sp.pool_blocks, o.sp.block_tokens,
               (long long)(o.sp.pool_blocks * o.sp.block_tokens), kvb > 0 ? ", " : "",
               kvb > 0 ? kvb * (double)(o.sp.pool_blocks * o.sp.block_tokens) * 1e-9 : 0.0,
               o.sp.watermark, o.sp.max_seqs);
        kvr_search_decode_step ds;
        const char *how = NULL;
        if (o.decode.k_us + o.decode.per_seq_us + o.decode.per_ctx_token_us > 0)
            printf("# decode iterations: %g + %g x requests + %g x cached tokens us (--decode-costs)\n",
                   o.decode.k_us, o.decode.per_seq_us, o.decode.per_ctx_token_us);
        else if (!o.decode_from_ops && kvr_search_costs_decode_step(m, &ds, &how))
            printf("# decode iterations: %.6g + %.6g x requests + %.6g x cached tokens us (decode "
                   "step: %s)\n",
                   ds.k_us, ds.per_seq_us, ds.per_ctx_token_us, how);
        else
            printf("# decode iterations: from the prefill ops (pre/post over the batch, one "
                   "attention call over every request's cache, one head); %s\n",
                   o.decode_from_ops ? "--decode-from-ops" : no_fit);
        printf("# SLO: TTFT <= %g ms, TPOT <= %g ms (0: not checked)\n", o.slo_ttft_ms, o.slo_tpot_ms);
        printf("%-8s %8s %7s %7s %9s %9s %9s %8s %8s %9s %9s %6s %9s %6s %7s\n", "policy",
               "finished", "refused", "preempt", "ttft_p50", "ttft_p90", "ttft_p99", "tpot_p50",
               "tpot_p90", "queue_p50", "queue_p90", "slo", "tok/s", "peak", "sim_ms");
        printf("%-8s %8s %7s %7s %9s %9s %9s %8s %8s %9s %9s %6s %9s %6s %7s\n", "", "", "", "",
               "(ms)", "(ms)", "(ms)", "(ms)", "(ms)", "(ms)", "(ms)", "", "", "blocks", "");
    } else
        kvr_text_printf(&out, "{\n  \"schema\": \"kvr-serve-sim/1\",\n  \"requests\": %lld,\n"
                               "  \"pool_blocks\": %lld, \"block_tokens\": %d,\n"
                               "  \"decode_source\": \"%s\",\n  \"policies\": [\n",
                         (long long)n, (long long)o.sp.pool_blocks, o.sp.block_tokens,
                         o.decode.k_us + o.decode.per_seq_us + o.decode.per_ctx_token_us > 0
                             ? "decode-costs"
                         : !o.decode_from_ops && kvr_search_costs_decode_step(m, NULL, NULL)
                             ? "decode-step"
                             : "ops");
    if (o.records)
        kvr_text_printf(&csv, "policy,request,arrival_s,prompt_tokens,output_tokens,refused,"
                               "admitted_s,first_token_s,finish_s,max_blocks,preemptions\n");
    for (int i = 0; i < o.n_policies; i++) {
        kvr_serving_sim_params p = {o.sp, m, o.decode, sc ? &occ : NULL, o.decode_from_ops,
                                    o.host_gbps};
        p.sched.policy = o.policies[i];
        kvr_serving_sim_stats st;
        kvr_serving_summary s;
        const double t0 = kvr_time_us();
        if (kvr_serving_simulate(tr, &p, rec, &st, &e) != KVR_OK) {
            fprintf(stderr, "kvr-serve: %s\n", e.msg);
            rc = e.code == KVR_ERR_INVALID_ARG ? 2 : 1;
            goto done;
        }
        const double sim_ms = (kvr_time_us() - t0) * 1e-3;
        if (kvr_serving_summarize(rec, n, o.slo_ttft_ms * 1e-3, o.slo_tpot_ms * 1e-3, &s, &e)) {
            fprintf(stderr, "kvr-serve: %s\n", e.msg);
            rc = 1;
            goto done;
        }
        const char *pol = kvr_serving_policy_name(o.policies[i]);
        int64_t run_id = 0;
        if (sc) {
            const double t1 = kvr_time_us();
            if (store_run(sc, &o, &p, rec, &s, &st, sim_ms, &run_id, &e) != KVR_OK) {
                fprintf(stderr, "kvr-serve: --db %s: %s\n", o.db, e.msg);
                rc = 1;
                goto done;
            }
            kvr_text_printf(&stored, "# stored as serving run %lld (%s, %lld requests, %.0f ms) "
                                     "in %s\n",
                            (long long)run_id, pol, (long long)n, (kvr_time_us() - t1) * 1e-3,
                            o.db);
        }
        if (o.json) json_summary(&out, pol, &s, &st, sim_ms, run_id, i == o.n_policies - 1);
        else print_summary_text(pol, &s, &st, sim_ms);
        if (!o.json && st.host_gbps > 0)
            kvr_text_printf(&stored, "# layerkv: host %lld blocks, reload %s, copy %g GB/s: peak "
                                     "%lld host layer blocks, %lld swap-ins, %.3f s of copy "
                                     "exposed, correction %.3f\n",
                            (long long)o.sp.host_blocks, kvr_reload_policy_name(o.sp.layerkv.reload),
                            st.host_gbps, (long long)st.peak_host_blocks, (long long)st.swap_ins,
                            st.copy_exposed_s, st.correction);
        if (o.records) records_csv(&csv, pol, rec, n);
    }
    if (out.nomem || csv.nomem || stored.nomem) {
        fprintf(stderr, "kvr-serve: out of memory\n");
        rc = 1;
        goto done;
    }
    if (o.json) {
        kvr_text_printf(&out, "  ]\n}\n");
        fputs(out.s ? out.s : "", stdout);
    } else if (stored.s)
        fputs(stored.s, stdout);
    if (o.records && kvr_write_file_atomic(o.records, csv.s, csv.len, &e) != KVR_OK) {
        fprintf(stderr, "kvr-serve: --records %s: %s\n", o.records, e.msg);
        rc = 1;
    }
done:
    kvr_text_free(&out), kvr_text_free(&csv), kvr_text_free(&stored);
    kvr_serving_occupancy_free(&occ);
    if (sc) free(sc->req);
    free(sc);
    free(rec);
    kvr_search_costs_destroy(m);
    kvr_db_close(db);
    kvr_trace_destroy(tr);
    return rc;
}
