/* kvr_trace.c -- kvr-trace: request traces for serving (serve/kvr_trace.h, docs/serving.md):
 * generate one (Poisson or Gamma arrivals, length distributions), import a public trace (Azure
 * LLM inference, BurstGPT) into the kvr trace CSV format, and summarise one.
 *
 * Build: cmake -B build && cmake --build build      Run: build/tools/kvr-trace --help
 *   build/tools/kvr-trace gen --rate 2 --count 1000 --prompt-tokens lognormal:1024,0.8 \
 *       --output-tokens uniform:16,256 -o trace.csv
 *   build/tools/kvr-trace gen --arrivals gamma --cv 3 --rate 5 --duration 600 -o bursty.csv
 *   build/tools/kvr-trace import --format azure AzureLLMInferenceTrace_conv.csv -o azure.csv
 *   build/tools/kvr-trace import --format burstgpt BurstGPT_1.csv --model GPT-4 --limit 5000 \
 *       --time-scale 0.5 -o burst.csv
 *   build/tools/kvr-trace stats trace.csv [--json]
 * Exit codes: 0 ok, 1 runtime failure or a bad input file, 2 usage error.
 */
#include "kvr_trace.h"
#include "tool_util.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define usage_error(...) tool_usage_error("kvr-trace", __VA_ARGS__)

enum { CMD_GEN, CMD_IMPORT, CMD_STATS, CMD_COUNT };
static const char *const cmd_names[CMD_COUNT] = {"gen", "import", "stats"};

typedef struct kvr_trace_opts {
    int cmd;
    const char *output; /* "-": stdout */
    bool json;
    /* gen */
    kvr_trace_gen_params gen;
    const char *prompt_spec, *output_spec;
    bool cv_set;
    /* import */
    kvr_trace_import_params imp;
    bool format_set;
    const char *input; /* import FILE, stats FILE */
} kvr_trace_opts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: kvr-trace gen --rate R (--count N | --duration S) [options] [-o FILE]\n"
            "       kvr-trace import --format azure|burstgpt FILE [options] [-o FILE]\n"
            "       kvr-trace stats FILE [--json]\n"
            "Request traces for serving: kvr trace CSV (arrival_s,prompt_tokens,output_tokens\n"
            "[,prompt]; docs/serving.md). FILE may be - for standard input.\n"
            "gen options:\n"
            "  -r, --rate R              mean arrival rate, requests per second (required)\n"
            "  -a, --arrivals KIND       poisson (default) or gamma\n"
            "  -c, --cv X                gamma: coefficient of variation of the gaps between\n"
            "                            arrivals, (0, 10]; 1 = Poisson, > 1 bursty (required\n"
            "                            with gamma)\n"
            "  -p, --prompt-tokens SPEC  prompt lengths (default 512): N | fixed:N |\n"
            "                            uniform:A,B | lognormal:MEAN,SIGMA (MEAN tokens, SIGMA\n"
            "                            of ln length) | file:TRACE (resampled from a trace)\n"
            "  -g, --output-tokens SPEC  output lengths, same forms (default 128); file: with\n"
            "                            the same TRACE for both draws prompt and output together\n"
            "  -n, --count N             number of requests\n"
            "  -d, --duration S          requests arriving before S seconds (with --count: the\n"
            "                            first limit reached)\n"
            "  -s, --seed N              random seed (default 1): same seed, same trace\n"
            "import options:\n"
            "  -f, --format F            azure (TIMESTAMP, ContextTokens, GeneratedTokens) or\n"
            "                            burstgpt (Timestamp, Request tokens, Response tokens)\n"
            "  -l, --limit N             keep the first N requests (after filters)\n"
            "  -x, --time-scale X        multiply arrival times by X (0.5: twice the rate)\n"
            "  -M, --model NAME          burstgpt: only rows of this Model (e.g. GPT-4)\n"
            "  -L, --log-type NAME       burstgpt: only this Log Type (e.g. \"Conversation log\")\n"
            "  -k, --keep-failed         keep rows with 0 output tokens (failed requests) as\n"
            "                            1-token outputs; by default they are skipped and counted\n"
            "common options:\n"
            "  -o, --output FILE         gen, import: write the trace to FILE (atomically;\n"
            "                            default - for standard output)\n"
            "  -j, --json                stats: one JSON object\n"
            "  -h, --help                this help\n"
            "Exit: 0 ok, 1 runtime failure or bad input file (message with file:line), 2 usage\n"
            "error.\n");
}

/* A finite number in (lo, hi]. */
static int parse_num(const char *flag, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || strpbrk(s, "xX"))
        return usage_error("%s: '%s' is not a number", flag, s);
    if (!(v > lo && v <= hi)) return usage_error("%s: %s is not in (%g, %g]", flag, s, lo, hi);
    *out = v;
    return 0;
}

static int parse_whole(const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    kvr_error e;
    if (kvr_parse_i64(s, lo, hi, out, &e) != KVR_OK) return usage_error("%s: %s", flag, e.msg);
    return 0;
}

static void print_summary_line(FILE *f, const char *what, const kvr_trace *t) {
    kvr_trace_stats s;
    kvr_error e;
    if (kvr_trace_stats_compute(t, &s, &e) != KVR_OK) return;
    fprintf(f, "%s %lld requests over %.6g s", what, (long long)s.n_requests,
            isfinite(s.duration_s) ? s.duration_s : 0.0);
    if (isfinite(s.rate_per_s)) fprintf(f, ", %.4g requests/s", s.rate_per_s);
    if (isfinite(s.gap_cv)) fprintf(f, ", gap CV %.3g", s.gap_cv);
    if (s.n_requests)
        fprintf(f, "; prompt mean %.1f tokens, output mean %.1f tokens", s.prompt_tokens.mean,
                s.output_tokens.mean);
}

/* Write t to o->output (stdout for "-"); the message stream is stderr when the trace goes to
 * stdout. */
static int write_trace(const kvr_trace_opts *o, const kvr_trace *t, const char *comment) {
    kvr_error err;
    if (!strcmp(o->output, "-")) {
        char *text = NULL;
        if (kvr_trace_format(t, comment, &text, &err) != KVR_OK) {
            fprintf(stderr, "kvr-trace: %s\n", err.msg);
            return 1;
        }
        fputs(text, stdout);
        free(text);
        if (fflush(stdout) != 0) {
            fprintf(stderr, "kvr-trace: cannot write standard output: %s\n", strerror(errno));
            return 1;
        }
        return 0;
    }
    if (kvr_trace_save(t, o->output, comment, &err) != KVR_OK) {
        fprintf(stderr, "kvr-trace: %s\n", err.msg);
        return 1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// commands

static int cmd_gen(kvr_trace_opts *o) {
    kvr_error err;
    kvr_trace *sp = NULL, *so = NULL;
    int rc = 1;
    kvr_trace *t = NULL;
    /* resampled lengths: load each named trace once (the same file for both: joint draws) */
    if (o->gen.prompt.kind == KVR_TRACE_LENGTH_RESAMPLE) {
        if (kvr_trace_load(o->gen.prompt.path, &sp, &err) != KVR_OK) {
            fprintf(stderr, "kvr-trace: --prompt-tokens: %s\n", err.msg);
            goto done;
        }
        o->gen.prompt.source = sp;
    }
    if (o->gen.output.kind == KVR_TRACE_LENGTH_RESAMPLE) {
        if (sp && (!strcmp(o->gen.output.path, o->gen.prompt.path) ||
                   kvr_path_same_file(o->gen.output.path, o->gen.prompt.path))) {
            o->gen.output.source = sp;
        } else {
            if (kvr_trace_load(o->gen.output.path, &so, &err) != KVR_OK) {
                fprintf(stderr, "kvr-trace: --output-tokens: %s\n", err.msg);
                goto done;
            }
            o->gen.output.source = so;
        }
    }
    if (kvr_trace_generate(&o->gen, &t, &err) != KVR_OK) {
        fprintf(stderr, "kvr-trace: gen: %s\n", err.msg);
        goto done;
    }
    char ps[300], os[300], comment[900];
    kvr_trace_length_format(&o->gen.prompt, ps, sizeof ps);
    kvr_trace_length_format(&o->gen.output, os, sizeof os);
    int w = snprintf(comment, sizeof comment,
                     "kvr-trace gen --arrivals %s --rate %.17g", kvr_trace_arrival_name(o->gen.arrival),
                     o->gen.rate_per_s);
    if (o->gen.arrival == KVR_TRACE_ARRIVAL_GAMMA && w > 0 && (size_t)w < sizeof comment)
        w += snprintf(comment + w, sizeof comment - (size_t)w, " --cv %.17g", o->gen.cv);
    if (w > 0 && (size_t)w < sizeof comment)
        w += snprintf(comment + w, sizeof comment - (size_t)w,
                      " --prompt-tokens %s --output-tokens %s", ps, os);
    if (o->gen.n_requests && w > 0 && (size_t)w < sizeof comment)
        w += snprintf(comment + w, sizeof comment - (size_t)w, " --count %lld",
                      (long long)o->gen.n_requests);
    if (o->gen.duration_s > 0 && w > 0 && (size_t)w < sizeof comment)
        w += snprintf(comment + w, sizeof comment - (size_t)w, " --duration %.17g",
                      o->gen.duration_s);
    if (w > 0 && (size_t)w < sizeof comment)
        snprintf(comment + w, sizeof comment - (size_t)w, " --seed %llu\nkvr %s (%s)",
                 (unsigned long long)o->gen.seed, kvr_version(), kvr_build_commit());
    if ((rc = write_trace(o, t, comment)) == 0) {
        FILE *f = strcmp(o->output, "-") ? stdout : stderr;
        print_summary_line(f, "# generated", t);
        fprintf(f, " -> %s\n", strcmp(o->output, "-") ? o->output : "(stdout)");
    }
done:
    kvr_trace_destroy(t);
    kvr_trace_destroy(sp);
    kvr_trace_destroy(so);
    return rc;
}

static int cmd_import(const kvr_trace_opts *o) {
    kvr_error err;
    kvr_trace *t = NULL;
    kvr_trace_import_stats s;
    if (kvr_trace_import_load(o->input, &o->imp, &t, &s, &err) != KVR_OK) {
        fprintf(stderr, "kvr-trace: import: %s\n", err.msg);
        return 1;
    }
    char counts[300];
    snprintf(counts, sizeof counts,
             "%lld rows read: %lld kept, %lld filtered out, %lld failed (0 output tokens; %s), "
             "%lld with 0 prompt tokens skipped, %lld out of time order (sorted)",
             (long long)s.n_rows, (long long)s.n_kept, (long long)s.n_filtered,
             (long long)s.n_failed, o->imp.keep_failed ? "kept as 1 token" : "skipped",
             (long long)s.n_empty, (long long)s.n_out_of_order);
    if (t->n_requests == 0) {
        fprintf(stderr, "kvr-trace: import: %s: no requests kept (%s)\n", o->input, counts);
        kvr_trace_destroy(t);
        return 1;
    }
    char comment[1200];
    snprintf(comment, sizeof comment,
             "kvr-trace import --format %s %s%s%s%s%s%s%s --time-scale %.17g%s\n%s\nkvr %s (%s)",
             kvr_trace_import_format_name(o->imp.format), o->input,
             o->imp.model ? " --model '" : "", o->imp.model ? o->imp.model : "",
             o->imp.model ? "'" : "", o->imp.log_type ? " --log-type '" : "",
             o->imp.log_type ? o->imp.log_type : "", o->imp.log_type ? "'" : "",
             o->imp.time_scale, o->imp.keep_failed ? " --keep-failed" : "", counts, kvr_version(),
             kvr_build_commit());
    int rc = write_trace(o, t, comment);
    if (rc == 0) {
        FILE *f = strcmp(o->output, "-") ? stdout : stderr;
        fprintf(f, "# %s: %s\n", o->input, counts);
        print_summary_line(f, "# imported", t);
        fprintf(f, " -> %s\n", strcmp(o->output, "-") ? o->output : "(stdout)");
    }
    kvr_trace_destroy(t);
    return rc;
}

static void json_num(const char *key, double v, bool comma) {
    printf("%s\"%s\":", comma ? "," : "", key);
    if (isfinite(v))
        printf("%.10g", v);
    else
        printf("null");
}

static void json_summary(const char *key, const kvr_trace_summary *s) {
    printf(",\"%s\":{", key);
    json_num("mean", s->mean, false);
    json_num("min", s->min, true);
    json_num("p50", s->p50, true);
    json_num("p90", s->p90, true);
    json_num("p99", s->p99, true);
    json_num("max", s->max, true);
    printf(",\"total\":%lld}", (long long)s->total);
}

static void text_num(const char *key, double v, const char *unit) {
    if (isfinite(v))
        printf("%-18s %.6g%s\n", key, v, unit);
    else
        printf("%-18s -\n", key);
}

static int cmd_stats(const kvr_trace_opts *o) {
    kvr_error err;
    kvr_trace *t = NULL;
    kvr_trace_stats s;
    if (kvr_trace_load(o->input, &t, &err) != KVR_OK) {
        fprintf(stderr, "kvr-trace: stats: %s\n", err.msg);
        return 1;
    }
    if (kvr_trace_stats_compute(t, &s, &err) != KVR_OK) {
        fprintf(stderr, "kvr-trace: stats: %s\n", err.msg);
        kvr_trace_destroy(t);
        return 1;
    }
    kvr_trace_destroy(t);
    if (o->json) {
        printf("{\"file\":");
        kvr_json_write_str(stdout, o->input);
        printf(",\"n_requests\":%lld,\"n_with_prompt\":%lld", (long long)s.n_requests,
               (long long)s.n_with_prompt);
        json_num("first_s", s.first_s, true);
        json_num("last_s", s.last_s, true);
        json_num("duration_s", s.duration_s, true);
        json_num("rate_per_s", s.rate_per_s, true);
        json_num("gap_mean_s", s.gap_mean_s, true);
        json_num("gap_cv", s.gap_cv, true);
        json_summary("prompt_tokens", &s.prompt_tokens);
        json_summary("output_tokens", &s.output_tokens);
        printf("}\n");
        return 0;
    }
    printf("# %s\n", o->input);
    printf("%-18s %lld\n", "requests", (long long)s.n_requests);
    printf("%-18s %lld\n", "with prompt text", (long long)s.n_with_prompt);
    text_num("first arrival", s.first_s, " s");
    text_num("duration", s.duration_s, " s");
    text_num("mean rate", s.rate_per_s, " requests/s");
    text_num("mean gap", s.gap_mean_s, " s");
    text_num("gap CV", s.gap_cv, "");
    printf("%-14s %10s %8s %8s %8s %8s %8s %12s\n", "(tokens)", "mean", "min", "p50", "p90",
           "p99", "max", "total");
    const kvr_trace_summary *sum[2] = {&s.prompt_tokens, &s.output_tokens};
    const char *names[2] = {"prompt", "output"};
    for (int i = 0; i < 2; i++) {
        if (s.n_requests == 0) {
            printf("%-14s %10s %8s %8s %8s %8s %8s %12s\n", names[i], "-", "-", "-", "-", "-",
                   "-", "0");
            continue;
        }
        printf("%-14s %10.1f %8.0f %8.1f %8.1f %8.1f %8.0f %12lld\n", names[i], sum[i]->mean,
               sum[i]->min, sum[i]->p50, sum[i]->p90, sum[i]->p99, sum[i]->max,
               (long long)sum[i]->total);
    }
    return 0;
}

// ----------------------------------------------------------------------------

int main(int argc, char **argv) {
    kvr_trace_opts o;
    memset(&o, 0, sizeof o);
    o.cmd = -1;
    o.output = "-";
    o.gen = kvr_trace_gen_params_default();
    o.imp = kvr_trace_import_params_default();
    o.prompt_spec = "512";
    o.output_spec = "128";
    static const struct option lo[] = {
        {"rate", required_argument, 0, 'r'},        {"arrivals", required_argument, 0, 'a'},
        {"cv", required_argument, 0, 'c'},          {"prompt-tokens", required_argument, 0, 'p'},
        {"output-tokens", required_argument, 0, 'g'}, {"count", required_argument, 0, 'n'},
        {"duration", required_argument, 0, 'd'},    {"seed", required_argument, 0, 's'},
        {"format", required_argument, 0, 'f'},      {"limit", required_argument, 0, 'l'},
        {"time-scale", required_argument, 0, 'x'},  {"model", required_argument, 0, 'M'},
        {"log-type", required_argument, 0, 'L'},    {"keep-failed", no_argument, 0, 'k'},
        {"output", required_argument, 0, 'o'},      {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0}};
    /* which command each option belongs to (-1: any) */
    static const struct {
        int ch, cmd;
        const char *name;
    } owner[] = {{'r', CMD_GEN, "--rate"},          {'a', CMD_GEN, "--arrivals"},
                 {'c', CMD_GEN, "--cv"},            {'p', CMD_GEN, "--prompt-tokens"},
                 {'g', CMD_GEN, "--output-tokens"}, {'n', CMD_GEN, "--count"},
                 {'d', CMD_GEN, "--duration"},      {'s', CMD_GEN, "--seed"},
                 {'f', CMD_IMPORT, "--format"},     {'l', CMD_IMPORT, "--limit"},
                 {'x', CMD_IMPORT, "--time-scale"}, {'M', CMD_IMPORT, "--model"},
                 {'L', CMD_IMPORT, "--log-type"},   {'k', CMD_IMPORT, "--keep-failed"},
                 {'j', CMD_STATS, "--json"}};
    bool seen[128] = {false};
    int ch, rc = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":r:a:c:p:g:n:d:s:f:l:x:M:L:ko:jh", lo, NULL)) != -1) {
        kvr_error e;
        if (ch > 0 && ch < 128) seen[ch] = true;
        switch (ch) {
            case 'r': rc = parse_num("--rate", optarg, 0, 1e9, &o.gen.rate_per_s); break;
            case 'a':
                if (kvr_trace_arrival_parse(optarg, &o.gen.arrival, &e) != KVR_OK)
                    return usage_error("--arrivals: %s", e.msg);
                break;
            case 'c':
                rc = parse_num("--cv", optarg, 0, 10, &o.gen.cv);
                o.cv_set = true;
                break;
            case 'p': o.prompt_spec = optarg; break;
            case 'g': o.output_spec = optarg; break;
            case 'n': rc = parse_whole("--count", optarg, 1, KVR_TRACE_MAX_REQUESTS, &o.gen.n_requests); break;
            case 'd': rc = parse_num("--duration", optarg, 0, 1e9, &o.gen.duration_s); break;
            case 's': {
                int64_t v = 0;
                rc = parse_whole("--seed", optarg, 0, INT64_MAX, &v);
                o.gen.seed = (uint64_t)v;
                break;
            }
            case 'f':
                if (kvr_trace_import_format_parse(optarg, &o.imp.format, &e) != KVR_OK)
                    return usage_error("--format: %s", e.msg);
                o.format_set = true;
                break;
            case 'l': rc = parse_whole("--limit", optarg, 1, KVR_TRACE_MAX_REQUESTS, &o.imp.limit); break;
            case 'x': rc = parse_num("--time-scale", optarg, 0, 1e6, &o.imp.time_scale); break;
            case 'M': o.imp.model = optarg; break;
            case 'L': o.imp.log_type = optarg; break;
            case 'k': o.imp.keep_failed = true; break;
            case 'o': o.output = optarg; break;
            case 'j': o.json = true; break;
            case 'h': usage(stdout); return 0;
            case ':': return usage_error("option %s needs a value", argv[optind - 1]);
            default: return usage_error("unknown option '%s'", argv[optind - 1]);
        }
        if (rc) return rc;
    }
    if (optind >= argc) return usage_error("no command (gen, import, stats)");
    o.cmd = kvr_name_index(cmd_names, CMD_COUNT, argv[optind]);
    if (o.cmd < 0) return usage_error("unknown command '%s' (gen, import, stats)", argv[optind]);
    const int n_args = argc - optind - 1;
    if (o.cmd == CMD_GEN && n_args > 0)
        return usage_error("gen: unexpected argument '%s'", argv[optind + 1]);
    if (o.cmd != CMD_GEN && n_args != 1)
        return usage_error("%s: needs one FILE (or - for standard input)", cmd_names[o.cmd]);
    if (o.cmd != CMD_GEN) o.input = argv[optind + 1];
    for (size_t i = 0; i < sizeof owner / sizeof owner[0]; i++)
        if (seen[owner[i].ch] && owner[i].cmd != o.cmd)
            return usage_error("%s applies to %s", owner[i].name, cmd_names[owner[i].cmd]);
    if (seen['o'] && o.cmd == CMD_STATS) return usage_error("--output applies to gen and import");

    if (o.cmd == CMD_GEN) {
        kvr_error e;
        if (!seen['r']) return usage_error("gen: --rate is required");
        if (!seen['n'] && !seen['d']) return usage_error("gen: give --count N or --duration S");
        if (o.gen.arrival == KVR_TRACE_ARRIVAL_GAMMA && !o.cv_set)
            return usage_error("gen: --arrivals gamma needs --cv (1 = Poisson, > 1 bursty)");
        if (o.gen.arrival != KVR_TRACE_ARRIVAL_GAMMA && o.cv_set)
            return usage_error("--cv applies to --arrivals gamma");
        if (kvr_trace_length_parse(o.prompt_spec, &o.gen.prompt, &e) != KVR_OK)
            return usage_error("--prompt-tokens: %s", e.msg);
        if (kvr_trace_length_parse(o.output_spec, &o.gen.output, &e) != KVR_OK)
            return usage_error("--output-tokens: %s", e.msg);
        const kvr_path_role in[] = {{"--prompt-tokens file:", o.gen.prompt.path},
                                    {"--output-tokens file:", o.gen.output.path}};
        if (kvr_output_check("--output", o.output, in, 2, &e) != KVR_OK)
            return usage_error("gen: %s", e.msg);
        return cmd_gen(&o);
    }
    if (o.cmd == CMD_IMPORT) {
        kvr_error e;
        if (!o.format_set) return usage_error("import: --format azure|burstgpt is required");
        if ((o.imp.model || o.imp.log_type) && o.imp.format != KVR_TRACE_IMPORT_BURSTGPT)
            return usage_error("--model and --log-type apply to --format burstgpt");
        const kvr_path_role in[] = {{"import FILE", o.input}};
        if (kvr_output_check("--output", o.output, in, 1, &e) != KVR_OK)
            return usage_error("import: %s", e.msg);
        return cmd_import(&o);
    }
    return cmd_stats(&o);
}
