/* kvr_search.c -- kvr-search: simulate TTFT of KV-Runahead (searched KVR-S and even KVR-E), TSP,
 * ring pass-KV and single-rank prefill from a cost model -- a JSON cost file, or a profile run in
 * the store interpolated (kvr_profile_costs_from_run) -- for a set of rank counts and contexts;
 * print the table with the recommended strategy and degree per context, store it in the
 * database with --db, export it (JSON, CSV, vLLM environment lines) and draw per-rank timelines.
 *
 * Build: cmake -B build && cmake --build build      Run: build/tools/kvr-search --help
 *   build/tools/kvr-search --costs docs/examples/llama7b_a100.json --ranks 2,4,8 \
 *       --context 1K:16K:1K --export table.json
 *   build/tools/kvr-search --costs docs/examples/llama7b_a100.json --ranks 4 --context 8192 \
 *       --strategies kvr-s,tsp --timeline
 *   build/tools/kvr-search --db kvr.db --run 1 --ranks 2,4,8 --context 512,1K,2K,4K
 * Exit codes: 0 ok, 1 runtime failure, 2 usage error (bad option, bad cost/links file).
 */
#include "kvr_profiler.h"
#include "tool_util.h"
#include "kvr_search.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KS_MAX_CONTEXTS 100000

typedef struct kvr_search_opts {
    const char *costs, *db, *run_id, *link_run_id, *links, *export_path;
    int64_t run, link_run;
    bool allow_incomplete;
    const char *ranks_arg, *context_arg, *strategies_arg;
    int ranks[KVR_MAX_RANKS];
    int n_ranks;
    int64_t *contexts;
    int n_contexts;
    int64_t granularity;
    double link_gbps, link_us; /* < 0: not given */
    unsigned strategies;
    bool json, timeline, format_set;
    kvr_search_format format;
    int width;
    const char *backend, *transport; /* what the runtime would run on: the runnable marks */
    bool include_unrunnable;
} kvr_search_opts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: kvr-search --costs FILE.json [options]\n"
            "       kvr-search [--db PATH] --run ID [options]\n"
            "Simulate time-to-first-token of KV-Runahead (kvr-s: searched partition, kvr-e: even),\n"
            "TSP, ring pass-KV and single-rank prefill; print the table and the recommended\n"
            "strategy and degree per context.\n"
            "  -c, --costs FILE        JSON cost model (schema: docs/search.md)\n"
            "  -d, --db PATH           the store (default ./kvr.db with --run): the table is\n"
            "                          stored there on every run (\"# stored as table N\")\n"
            "  -R, --run ID            costs from profile run ID in --db, interpolated\n"
            "  -L, --link-run ID       link costs from the transfer samples of run ID (a\n"
            "                          kvr-profile --comm run; default: --run's own)\n"
            "  -I, --allow-incomplete  use an incomplete or failed --run as it is\n"
            "  -r, --ranks LIST        rank counts, e.g. 2,4,8 (default 2,4,8)\n"
            "  -n, --context SPEC      N or FROM:TO:STEP, comma-separated, K/M/G = 2^10/2^20/2^30\n"
            "                          (default 2K:16K:2K)\n"
            "  -g, --granularity G     KVR-S chunk granularity in tokens, every chunk >= G and\n"
            "                          boundaries on the G grid (default 16)\n"
            "  -B, --link-gbps X       override the bandwidth of every link (decimal GB/s)\n"
            "  -A, --link-us Y         override the latency of every link (us)\n"
            "  -l, --links FILE        JSON per-link list replacing the cost file's links\n"
            "  -s, --strategies LIST   kvr-s,kvr-e,tsp,ring,single (default all)\n"
            "  -j, --json              print the table as JSON instead of text\n"
            "  -o, --export FILE       also write the table to FILE in --format\n"
            "  -f, --format FMT        json | csv | vllm-env | text (default json) for --export;\n"
            "                          with --timeline, csv prints the timelines as CSV\n"
            "  -t, --timeline          per-rank timelines (text Gantt, or CSV with --format csv)\n"
            "  -w, --width N           Gantt width in columns (default 100)\n"
            "  -b, --backend NAME      the backend the runtime would use: cpu | cuda (default\n"
            "                          cpu); a strategy it cannot run is marked (*)\n"
            "  -T, --transport NAME    threads | same-device | nccl | mpi (default threads)\n"
            "  -U, --include-unrunnable  also recommend strategies the runtime cannot run\n"
            "  -h, --help              this help\n"
            "Exit status: 0 ok, 1 runtime failure (also: --db/--run missing, incomplete or\n"
            "without the samples the search needs), 2 usage error or bad input file.\n");
}

#define usage_error(...) tool_usage_error("kvr-search", __VA_ARGS__)
#define parse_size(...) tool_parse_size("kvr-search", __VA_ARGS__)

static int parse_double(const char *flag, const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || v < 0)
        return usage_error("%s: \"%s\" is not a non-negative number", flag, s);
    *out = v;
    return 0;
}

static int parse_ranks(kvr_search_opts *o) {
    char *dup = strdup(o->ranks_arg), *save = NULL;
    if (!dup) return 1;
    int rc = 0;
    o->n_ranks = 0;
    for (char *t = strtok_r(dup, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save)) {
        int64_t v;
        if ((rc = parse_size("--ranks", t, 1, 65536, &v))) break;
        for (int i = 0; i < o->n_ranks; i++)
            if (o->ranks[i] == v) rc = usage_error("--ranks: %lld is listed twice", (long long)v);
        if (!rc && o->n_ranks == KVR_MAX_RANKS)
            rc = usage_error("--ranks: more than %d rank counts", KVR_MAX_RANKS);
        if (!rc) o->ranks[o->n_ranks++] = (int)v;
    }
    if (!rc && o->n_ranks == 0) rc = usage_error("--ranks: empty list \"%s\"", o->ranks_arg);
    free(dup);
    return rc;
}

/* --context: N or FROM:TO:STEP, comma-separated (kvr_parse_size_list), in the given order. */
static int parse_contexts(kvr_search_opts *o) {
    o->contexts = malloc(KS_MAX_CONTEXTS * sizeof *o->contexts);
    kvr_error e;
    kvr_status st = o->contexts ? kvr_parse_size_list(o->context_arg, 1, KVR_SEARCH_MAX_CONTEXT,
                                                      o->contexts, KS_MAX_CONTEXTS,
                                                      &o->n_contexts, &e)
                                : KVR_ERR_NOMEM;
    if (st == KVR_ERR_NOMEM) {
        fprintf(stderr, "kvr-search: out of memory\n");
        return 1;
    }
    if (st != KVR_OK)
        return usage_error("--context: %s%s", e.msg,
                           strstr(e.msg, "out of range")
                               ? " (16M = 16777216 tokens is the largest context kvr-search "
                                 "plans: its time grows with the context; docs/search.md)"
                               : "");
    return 0;
}

static int parse_strategies(kvr_search_opts *o) {
    char *dup = strdup(o->strategies_arg), *save = NULL;
    if (!dup) return 1;
    int rc = 0;
    o->strategies = 0;
    for (char *t = strtok_r(dup, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save)) {
        kvr_strategy s;
        kvr_error e;
        if (kvr_strategy_parse(t, &s, &e) != KVR_OK)
            rc = usage_error("--strategies: %s", e.msg);
        else
            o->strategies |= 1u << s;
    }
    if (!rc && !o->strategies)
        rc = usage_error("--strategies: empty list \"%s\"", o->strategies_arg);
    free(dup);
    return rc;
}

/* Returns 0 to continue, 2 on a usage error, -1 after --help. */
static int parse_opts(int argc, char **argv, kvr_search_opts *o) {
    static const struct option lo[] = {
        {"costs", required_argument, 0, 'c'},      {"db", required_argument, 0, 'd'},
        {"run", required_argument, 0, 'R'},        {"ranks", required_argument, 0, 'r'},
        {"context", required_argument, 0, 'n'},    {"granularity", required_argument, 0, 'g'},
        {"link-gbps", required_argument, 0, 'B'},  {"link-us", required_argument, 0, 'A'},
        {"links", required_argument, 0, 'l'},      {"strategies", required_argument, 0, 's'},
        {"json", no_argument, 0, 'j'},             {"export", required_argument, 0, 'o'},
        {"format", required_argument, 0, 'f'},     {"timeline", no_argument, 0, 't'},
        {"width", required_argument, 0, 'w'},      {"help", no_argument, 0, 'h'},
        {"link-run", required_argument, 0, 'L'},   {"allow-incomplete", no_argument, 0, 'I'},
        {"backend", required_argument, 0, 'b'},    {"transport", required_argument, 0, 'T'},
        {"include-unrunnable", no_argument, 0, 'U'},
        {0, 0, 0, 0}};
    int ch, rc;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":c:d:R:r:n:g:B:A:l:s:jo:f:tw:hL:Ib:T:U", lo, NULL)) != -1) {
        int64_t v;
        kvr_error e;
        switch (ch) {
            case 'c': o->costs = optarg; break;
            case 'd': o->db = optarg; break;
            case 'R': o->run_id = optarg; break;
            case 'L': o->link_run_id = optarg; break;
            case 'I': o->allow_incomplete = true; break;
            case 'r': o->ranks_arg = optarg; break;
            case 'n': o->context_arg = optarg; break;
            case 'g':
                if ((rc = parse_size("--granularity", optarg, 1, (int64_t)1 << 30, &v))) return rc;
                o->granularity = v;
                break;
            case 'B':
                if ((rc = parse_double("--link-gbps", optarg, &o->link_gbps))) return rc;
                break;
            case 'A':
                if ((rc = parse_double("--link-us", optarg, &o->link_us))) return rc;
                break;
            case 'l': o->links = optarg; break;
            case 's': o->strategies_arg = optarg; break;
            case 'j': o->json = true; break;
            case 'o': o->export_path = optarg; break;
            case 'f':
                if (kvr_search_format_parse(optarg, &o->format, &e) != KVR_OK)
                    return usage_error("--format: %s", e.msg);
                o->format_set = true;
                break;
            case 't': o->timeline = true; break;
            case 'w':
                if ((rc = parse_size("--width", optarg, 10, 1000, &v))) return rc;
                o->width = (int)v;
                break;
            case 'b':
                if (kvr_name_index((const char *const[]){"cpu", "cuda"}, 2, optarg) < 0)
                    return usage_error("--backend: unknown backend \"%s\" (cpu or cuda)", optarg);
                o->backend = optarg;
                break;
            case 'T':
                if (kvr_name_index((const char *const[]){"threads", "same-device", "nccl", "mpi"},
                                   4, optarg) < 0)
                    return usage_error("--transport: unknown transport \"%s\" (threads, "
                                       "same-device, nccl or mpi)",
                                       optarg);
                o->transport = optarg;
                break;
            case 'U': o->include_unrunnable = true; break;
            case 'h': usage(stdout); return -1;
            case ':': return usage_error("%s needs a value", argv[optind - 1]);
            default:
                return usage_error("unknown option %s",
                                   optopt ? (char[]){'-', (char)optopt, 0} : argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error("unexpected argument \"%s\"", argv[optind]);
    /* cross-option rules */
    if (o->costs && o->run_id)
        return usage_error("--costs and --run are two cost sources: give one");
    if (!o->costs && !o->run_id)
        return usage_error("a cost source is required: --costs FILE.json, or --run ID (a profile "
                           "run in --db, default ./kvr.db)");
    if (o->run_id) {
        kvr_error e;
        if (kvr_parse_i64(o->run_id, 1, INT64_MAX, &o->run, &e) != KVR_OK)
            return usage_error("--run: %s", e.msg);
        if (!o->db) o->db = "kvr.db";
    }
    if (o->link_run_id) {
        kvr_error e;
        if (!o->run_id) return usage_error("--link-run applies to --run (a profile run)");
        if (kvr_parse_i64(o->link_run_id, 1, INT64_MAX, &o->link_run, &e) != KVR_OK)
            return usage_error("--link-run: %s", e.msg);
        if (o->links || o->link_gbps >= 0 || o->link_us >= 0)
            return usage_error("--link-run gives the links; do not combine it with --links, "
                               "--link-gbps or --link-us");
    }
    if (o->allow_incomplete && !o->run_id)
        return usage_error("--allow-incomplete applies to --run");
    if (o->links && (o->link_gbps >= 0 || o->link_us >= 0))
        return usage_error("--links replaces every link; do not combine it with --link-gbps or "
                           "--link-us");
    if (o->export_path) { /* never overwrite an input: the store, the cost or links file */
        const kvr_path_role in[] = {{"--db", o->db}, {"--costs", o->costs}, {"--links", o->links}};
        kvr_error e;
        if (kvr_output_check("--export", o->export_path, in, 3, &e) != KVR_OK)
            return usage_error("%s", e.msg);
    }
    if (o->format_set && !o->export_path && !o->timeline)
        return usage_error("--format applies to --export FILE or --timeline; neither is given");
    if (o->timeline && o->json)
        return usage_error("--timeline cannot be combined with --json (use --timeline --format "
                           "csv for machine-readable timelines)");
    if (o->timeline && o->format_set && o->format != KVR_SEARCH_FORMAT_CSV &&
        o->format != KVR_SEARCH_FORMAT_TEXT && !o->export_path)
        return usage_error("--timeline prints text or csv, not %s",
                           o->format == KVR_SEARCH_FORMAT_JSON ? "json" : "vllm-env");
    if ((rc = parse_ranks(o))) return rc;
    if ((rc = parse_strategies(o))) return rc;
    if ((rc = parse_contexts(o))) return rc;
    int pmax = 0;
    for (int i = 0; i < o->n_ranks; i++) pmax = KVR_MAX(pmax, o->ranks[i]);
    for (int j = 0; j < o->n_contexts; j++)
        if (o->contexts[j] / pmax < o->granularity)
            return usage_error("--context %lld is smaller than ranks x granularity (%d x %lld = "
                               "%lld): every chunk needs at least --granularity tokens",
                               (long long)o->contexts[j], pmax, (long long)o->granularity,
                               (long long)(pmax * o->granularity));
    return 0;
}

static int write_file(const char *path, const char *text) {
    kvr_error e; /* a temporary beside it, renamed into place: never half a file */
    if (kvr_write_file_atomic(path, text, strlen(text), &e) != KVR_OK) {
        fprintf(stderr, "kvr-search: --export %s: %s\n", path, e.msg);
        return 1;
    }
    return 0;
}

static void table_progress(void *user, int done, int total) {
    (void)total;
    kvr_progress_update(user, done);
}

/* Timelines of every selected strategy for every row (single once per context). */
static int print_timelines(const kvr_search_costs *m, const kvr_search_table *t,
                           const kvr_search_opts *o) {
    bool csv = o->format_set && o->format == KVR_SEARCH_FORMAT_CSV;
    kvr_search_timeline *tl;
    kvr_error e;
    if (kvr_search_timeline_create(&tl, &e) != KVR_OK) {
        fprintf(stderr, "kvr-search: %s\n", e.msg);
        return 1;
    }
    int64_t *even = malloc(65536 * sizeof *even);
    if (!even) {
        kvr_search_timeline_destroy(tl);
        fprintf(stderr, "kvr-search: out of memory\n");
        return 1;
    }
    int rc = 0;
    bool header = true;
    for (int i = 0; i < kvr_search_table_n_rows(t) && !rc; i++) {
        const kvr_search_row *r = kvr_search_table_row(t, i);
        for (int k = 0; k < KVR_STRATEGY_COUNT && !rc; k++) {
            if (!r->has[k]) continue;
            kvr_status s = KVR_OK;
            double ttft;
            switch ((kvr_strategy)k) {
                case KVR_STRATEGY_KVR_S:
                    s = kvr_search_sim_kvr(m, r->n_ranks, r->partition, tl, &ttft, &e);
                    break;
                case KVR_STRATEGY_KVR_E:
                    s = kvr_search_partition_start(m, KVR_SEARCH_START_EVEN, r->n_ranks,
                                                   r->context, o->granularity, even, &e);
                    if (s == KVR_OK) s = kvr_search_sim_kvr(m, r->n_ranks, even, tl, &ttft, &e);
                    break;
                case KVR_STRATEGY_TSP:
                    s = kvr_search_sim_tsp(m, r->n_ranks, r->context, tl, &ttft, &e);
                    break;
                case KVR_STRATEGY_RING:
                    s = kvr_search_sim_ring(m, r->n_ranks, r->context, tl, &ttft, &e);
                    break;
                case KVR_STRATEGY_SINGLE: {
                    bool first = true; /* once per context */
                    for (int j = 0; j < i; j++)
                        first = first && kvr_search_table_row(t, j)->context != r->context;
                    if (!first) continue;
                    s = kvr_search_sim_single(m, r->context, tl, &ttft, &e);
                    break;
                }
                default: continue;
            }
            if (s != KVR_OK) {
                fprintf(stderr, "kvr-search: timeline %s: %s\n", kvr_strategy_name(k), e.msg);
                rc = 1;
                break;
            }
            kvr_search_timeline_set_label(tl, kvr_strategy_name(k));
            char *txt = NULL;
            s = csv ? kvr_search_timeline_format_csv(tl, header, &txt, &e)
                    : kvr_search_timeline_format_text(tl, o->width, &txt, &e);
            if (s != KVR_OK) {
                fprintf(stderr, "kvr-search: timeline: %s\n", e.msg);
                rc = 1;
                break;
            }
            header = false;
            fputs(txt, stdout);
            if (!csv) fputc('\n', stdout);
            free(txt);
        }
    }
    free(even);
    kvr_search_timeline_destroy(tl);
    return rc;
}

/* '#' lines after the table: what the profile held, and where the contexts leave it. */
static void print_profile_notes(const kvr_search_opts *o, const kvr_profile_costs_info *pi) {
    printf("# profile: %s run %lld: %lld pre, %lld attn (%d chunk columns with a prefix), %lld "
           "post, %lld head, %lld embed samples; chunks %lld..%lld, attention up to %lld tokens "
           "of context; head %.3f ms, embed %.3f ms per prompt\n",
           o->db, (long long)o->run, (long long)pi->n_samples[KVR_OP_PRE],
           (long long)pi->n_samples[KVR_OP_ATTN], pi->n_attn_columns,
           (long long)pi->n_samples[KVR_OP_POST], (long long)pi->n_samples[KVR_OP_HEAD],
           (long long)pi->n_samples[KVR_OP_EMBED], (long long)pi->c_min, (long long)pi->c_max,
           (long long)pi->ctx_max, pi->head_us * 1e-3, pi->embed_us * 1e-3);
    printf("# profile links: %s%s\n", pi->links,
           (o->links || o->link_gbps >= 0 || o->link_us >= 0) ? " (replaced by the options)" : "");
    int64_t cmax = 0;
    for (int j = 0; j < o->n_contexts; j++) cmax = KVR_MAX(cmax, o->contexts[j]);
    if (cmax > pi->ctx_max)
        printf("# note: contexts above %lld tokens lie beyond the profiled grid: their costs are "
               "extrapolated (docs/search.md); profile with --max-context %lld to measure them\n",
               (long long)pi->ctx_max, (long long)cmax);
}

/* Store the table (its JSON export and one row per (ranks, context)) in the database. */
static int store_table(kvr_db *db, const kvr_search_table *t, const kvr_search_opts *o,
                       const char *note, const kvr_profile_costs_info *pi,
                       const kvr_search_costs *m, bool say) {
    kvr_error e;
    char *json = NULL;
    if (kvr_search_table_format(t, KVR_SEARCH_FORMAT_JSON, note, &json, &e) != KVR_OK) {
        fprintf(stderr, "kvr-search: %s\n", e.msg);
        return 1;
    }
    const int n = kvr_search_table_n_rows(t);
    kvr_db_ptable_row *rows = calloc((size_t)(n > 0 ? n : 1), sizeof *rows);
    if (!rows) {
        free(json);
        fprintf(stderr, "kvr-search: out of memory\n");
        return 1;
    }
    for (int i = 0; i < n; i++) {
        const kvr_search_row *r = kvr_search_table_row(t, i);
        kvr_db_ptable_row *x = &rows[i];
        x->n_ranks = r->n_ranks;
        x->context = r->context;
        kvr_error fe;
        if (kvr_partition_format(r->partition, r->n_ranks, x->partition, sizeof x->partition,
                                 &fe) != KVR_OK) {
            free(rows);
            free(json);
            fprintf(stderr, "kvr-search: row (%d ranks, %lld tokens): %s\n", r->n_ranks,
                    (long long)r->context, fe.msg);
            return 1;
        }
        for (int k = 0; k < KVR_STRATEGY_COUNT; k++)
            x->ttft_ms[k] = r->has[k] && !r->error[k] ? r->ttft_us[k] * 1e-3 : -1;
        snprintf(x->best, sizeof x->best, "%s", kvr_strategy_name(r->best));
        x->search_ms = r->search_ms;
    }
    kvr_db_ptable pt;
    memset(&pt, 0, sizeof pt);
    pt.run_id = o->run;
    snprintf(pt.source, sizeof pt.source, "%s", kvr_search_costs_source(m));
    snprintf(pt.cost_kind, sizeof pt.cost_kind, "%s", kvr_search_costs_kind(m));
    pt.link_run_id = o->link_run;
    if (o->run_id && !(o->links || o->link_gbps >= 0 || o->link_us >= 0)) {
        char lr[32] = "";
        if (o->link_run) snprintf(lr, sizeof lr, "run %lld: ", (long long)o->link_run);
        snprintf(pt.links, sizeof pt.links, "%s%.200s", lr, pi->links);
    } else {
        kvr_search_costs_links_text(m, pt.links, sizeof pt.links);
    }
    pt.granularity = (int32_t)o->granularity;
    pt.json = json;
    int rc = 0;
    if (kvr_db_ptable_put(db, &pt, rows, n, &e) != KVR_OK) {
        fprintf(stderr, "kvr-search: --db %s: storing the table: %s\n", o->db, e.msg);
        rc = 1;
    } else { /* stdout holds only JSON or CSV when say is false: the note goes to stderr */
        fprintf(say ? stdout : stderr, "# stored as table %lld in %s (kvr-db --db %s table %lld)\n",
                (long long)pt.id, o->db, o->db, (long long)pt.id);
    }
    free(rows);
    free(json);
    return rc;
}

int main(int argc, char **argv) {
    kvr_search_opts o;
    memset(&o, 0, sizeof o);
    o.ranks_arg = "2,4,8";
    o.context_arg = "2K:16K:2K";
    o.strategies_arg = "kvr-s,kvr-e,tsp,ring,single";
    o.granularity = 16;
    o.link_gbps = o.link_us = -1;
    o.format = KVR_SEARCH_FORMAT_JSON;
    o.width = 100;
    o.backend = "cpu";
    o.transport = "threads";
    int rc = parse_opts(argc, argv, &o);
    if (rc) {
        free(o.contexts);
        return rc < 0 ? 0 : rc;
    }
    kvr_error e;
    kvr_search_costs *m = NULL;
    kvr_search_table *t = NULL;
    kvr_db *db = NULL;
    char *text = NULL;
    kvr_profile_costs_info pinfo;
    memset(&pinfo, 0, sizeof pinfo);
    if (o.db) { /* the table is stored there: open for writing before any work */
        kvr_db_open_params dp = kvr_db_open_params_default();
        dp.create = !o.run_id;
        if (kvr_db_open(o.db, &dp, &db, &e) != KVR_OK) {
            fprintf(stderr, "kvr-search: --db %s: %s%s\n", o.db, e.msg,
                    e.code == KVR_ERR_IO ? " (kvr-search stores its table there)" : "");
            rc = 1;
            goto out;
        }
        kvr_db_runs_reap(db, NULL, NULL);
    }
    if (o.run_id) {
        kvr_profile_costs_params cp = kvr_profile_costs_params_default();
        cp.link_run_id = o.link_run;
        cp.allow_incomplete = o.allow_incomplete;
        if (kvr_profile_costs_from_run(db, o.run, &cp, &m, &pinfo, &e) != KVR_OK) {
            fprintf(stderr, "kvr-search: --run %lld: %s\n", (long long)o.run, e.msg);
            rc = 1;
            goto out;
        }
        if (pinfo.n_link_pairs == 0 && !o.links && o.link_gbps < 0 && o.link_us < 0) {
            fprintf(stderr,
                    "kvr-search: --run %lld: run %lld has no transfer samples, so the links are "
                    "unknown: give --link-run RUN (a kvr-profile --comm run, e.g. kvr-profile "
                    "--comm --ranks 2 --ops none), or --link-gbps/--link-us, or --links FILE\n",
                    (long long)o.run, (long long)(o.link_run ? o.link_run : o.run));
            rc = 1;
            goto out;
        }
    } else if (kvr_search_costs_load_json(o.costs, &m, &e) != KVR_OK) {
        rc = usage_error("--costs: %s", e.msg);
        goto out;
    }
    if (o.links && kvr_search_costs_load_links_json(m, o.links, &e) != KVR_OK) {
        rc = usage_error("--links: %s", e.msg);
        goto out;
    }
    if ((o.link_gbps >= 0 || o.link_us >= 0) &&
        kvr_search_costs_override_links(m, o.link_us, o.link_gbps, &e) != KVR_OK) {
        rc = usage_error("--link-gbps/--link-us: %s", e.msg);
        goto out;
    }
    for (int i = 0; i < o.n_ranks; i++)
        if (o.ranks[i] > kvr_search_costs_max_ranks(m)) {
            rc = usage_error("--ranks %d: the links of %s cover only %d devices", o.ranks[i],
                             o.links ? o.links : o.costs ? o.costs : "the profile",
                             kvr_search_costs_max_ranks(m));
            goto out;
        }
    kvr_search_table_config cfg = {o.ranks, o.n_ranks, o.contexts, o.n_contexts,
                                   kvr_search_params_default(), o.strategies};
    cfg.params.granularity = o.granularity;
    /* progress on stderr when the table is big enough to take seconds: the search costs about
     * C / g per strategy and rank count (KVR_SEARCH_MAX_CONTEXT) */
    kvr_progress prog;
    double work = 0;
    for (int j = 0; j < o.n_contexts; j++) work += (double)o.contexts[j] * o.n_ranks;
    const bool show = work >= (double)(1 << 23);
    if (show) kvr_progress_start(&prog, stderr, "kvr-search", (int64_t)o.n_ranks * o.n_contexts);
    const kvr_status ts = kvr_search_table_create_progress(m, &cfg, show ? table_progress : NULL,
                                                           &prog, &t, &e);
    if (show && ts == KVR_OK) kvr_progress_finish(&prog);
    if (ts != KVR_OK) {
        fprintf(stderr, "kvr-search: %s\n", e.msg);
        rc = e.code == KVR_ERR_INVALID_ARG ? 2 : 1;
        goto out;
    }
    char runtime[64];
    snprintf(runtime, sizeof runtime, "%s/%s", o.backend, o.transport);
    if (kvr_search_table_set_runnable(t, ~kvr_strategy_runnable_mask(o.backend, o.transport),
                                      o.include_unrunnable, runtime, &e) != KVR_OK) {
        fprintf(stderr, "kvr-search: %s\n", e.msg);
        rc = 1;
        goto out;
    }
    char note[1024];
    snprintf(note, sizeof note, "ranks %s; contexts %s (%d values); granularity %lld",
             o.ranks_arg, o.context_arg, o.n_contexts, (long long)o.granularity);
    if (o.run_id) {
        size_t l = strlen(note);
        snprintf(note + l, sizeof note - l, "; profile %s run %lld", o.db, (long long)o.run);
        if (o.link_run) {
            l = strlen(note);
            snprintf(note + l, sizeof note - l, ", links from run %lld", (long long)o.link_run);
        }
    }
    bool timeline_csv = o.timeline && o.format_set && o.format == KVR_SEARCH_FORMAT_CSV;
    if (!timeline_csv) {
        if (kvr_search_table_format(t, o.json ? KVR_SEARCH_FORMAT_JSON : KVR_SEARCH_FORMAT_TEXT,
                                    note, &text, &e) != KVR_OK) {
            fprintf(stderr, "kvr-search: %s\n", e.msg);
            rc = 1;
            goto out;
        }
        fputs(text, stdout);
        free(text);
        text = NULL;
        if (o.run_id && !o.json) print_profile_notes(&o, &pinfo);
    }
    if (db && (rc = store_table(db, t, &o, note, &pinfo, m, !o.json && !timeline_csv)))
        goto out;
    if (o.export_path) {
        if (kvr_search_table_format(t, o.format, note, &text, &e) != KVR_OK) {
            fprintf(stderr, "kvr-search: %s\n", e.msg);
            rc = 1;
            goto out;
        }
        if ((rc = write_file(o.export_path, text))) goto out;
        if (!o.json && !timeline_csv)
            printf("# exported %s to %s\n",
                   (const char *[]){"text", "json", "csv", "vllm-env"}[o.format], o.export_path);
    }
    if (o.timeline) {
        if (!timeline_csv) fputc('\n', stdout);
        rc = print_timelines(m, t, &o);
    }
out:
    if (fflush(stdout) != 0 && !rc) rc = 1;
    free(text);
    kvr_search_table_destroy(t);
    kvr_search_costs_destroy(m);
    kvr_db_close(db);
    free(o.contexts);
    return rc;
}
