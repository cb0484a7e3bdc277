/* kvr_fit.c -- kvr-fit: fit the cost model of a profile run (GSL regressions per op, k-fold
 * validated) and store it; fit KVR-P (the partition predictor) over a KVR-S table -- one from the
 * store, or one built here from the fitted costs over a range of contexts -- and store it with
 * its held-out TTFT gaps; show what is stored; export a predictor file for kvr-run --predictor.
 *
 * Build: cmake -B build && cmake --build build      Run: build/tools/kvr-fit --help
 *   build/tools/kvr-fit --run 1                                   # cost model of profile run 1
 *   build/tools/kvr-fit --run 1 --kvrp --ranks 2,4 --context 512:8192:256 --export kvrp.json
 *   build/tools/kvr-fit --kvrp --table 3 --ranks 2                # KVR-P over stored table 3
 *   build/tools/kvr-fit --show                                    # stored fits and predictors
 *   build/tools/kvr-fit --calibrate                               # from kvr-run's recorded runs
 * Exit codes: 0 ok, 1 runtime failure (bad or missing data, db errors), 2 usage error.
 */
#include "kvr_predict.h"
#include "tool_util.h"
#include "kvr_profiler.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KF_MAX_CONTEXTS 4096

typedef struct kvr_fit_opts {
    const char *db;
    int64_t run, link_run, table, predictor;
    bool run_set, link_run_set, link_run_none;
    bool kvrp, show, json, dry_run, calibrate;
    int64_t min_runs;
    const char *ranks_arg, *context_arg, *export_path, *costs_path;
    int ranks[KVR_MAX_RANKS];
    int n_ranks;
    int64_t contexts[KF_MAX_CONTEXTS];
    int n_contexts;
    int64_t granularity;
    bool no_densify;
} kvr_fit_opts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: kvr-fit [options]\n"
            "Fit the cost model of a profile run and store it; fit KVR-P over a KVR-S table;\n"
            "show what is stored; export a predictor file for kvr-run --predictor.\n"
            "  -d, --db PATH           the store (default ./kvr.db)\n"
            "  -r, --run ID|latest     fit the cost model on profile run ID (layer samples;\n"
            "                          latest: the newest run with pre, attn and post samples)\n"
            "  -l, --link-run ID|none  transfer samples for the links (default: the run itself,\n"
            "                          else the newest run with p2p samples of the same model\n"
            "                          and device; none: ideal links)\n"
            "  -k, --kvrp              fit KVR-P: from --table, else over a KVR-S table built\n"
            "                          from the fitted costs (of --run, or the newest stored)\n"
            "  -R, --ranks LIST        KVR-P rank counts, e.g. 2,4 (default 2)\n"
            "  -n, --context SPEC      KVR-P table contexts: N or FROM:TO:STEP, comma-separated,\n"
            "                          K = 1024 (default 512:8192:256)\n"
            "  -t, --table ID          KVR-P over stored partition table ID (kvr-search --db:\n"
            "                          scored under the same interpolated profile; kvr-fit's:\n"
            "                          under the fitted costs of its run)\n"
            "  -c, --costs FILE        with --table: score under this cost file instead\n"
            "  -g, --granularity G     KVR-P granularity in tokens (default 16; --table: its own)\n"
            "  -N, --no-densify        KVR-P: fit the table's contexts only\n"
            "  -C, --calibrate         calibrate end-to-end predictions from kvr-run's recorded\n"
            "                          runs: per model, profile run, strategy, ranks, threads\n"
            "                          and transport, measured = a * predicted + b (a, b >= 0),\n"
            "                          held-out error and run-to-run spread; stored for kvr-run\n"
            "  -m, --min-runs N        --calibrate: runs a group needs (default 5, at least 3)\n"
            "  -s, --show              list stored fits and predictors (of --run, or all)\n"
            "  -e, --export FILE       write a predictor file (the one fitted now, else the\n"
            "                          newest stored for each of --ranks, or --predictor ID)\n"
            "  -p, --predictor ID      --export this stored predictor\n"
            "  -D, --dry-run           fit and print, store nothing\n"
            "  -j, --json              one JSON object instead of tables\n"
            "  -h, --help              this help\n"
            "Exit: 0 ok, 1 runtime failure (bad or missing data, db error), 2 usage error.\n");
}

#define usage_error(...) tool_usage_error("kvr-fit", __VA_ARGS__)
#define parse_size(...) tool_parse_size("kvr-fit", __VA_ARGS__)

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kvr-fit: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    return 1;
}

static int parse_ranks(kvr_fit_opts *o) {
    char *dup = strdup(o->ranks_arg), *save = NULL;
    if (!dup) return fail("out of memory");
    int rc = 0;
    o->n_ranks = 0;
    for (char *t = strtok_r(dup, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save)) {
        int64_t v;
        if ((rc = parse_size("--ranks", t, 2, KVR_MAX_RANKS, &v))) break;
        for (int i = 0; i < o->n_ranks; i++)
            if (o->ranks[i] == v) rc = usage_error("--ranks: %lld is listed twice", (long long)v);
        if (!rc && o->n_ranks == KVR_MAX_RANKS) rc = usage_error("--ranks: too many rank counts");
        if (!rc) o->ranks[o->n_ranks++] = (int)v;
    }
    if (!rc && o->n_ranks == 0) rc = usage_error("--ranks: empty list");
    free(dup);
    return rc;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* --context: N or FROM:TO:STEP, comma-separated (kvr_parse_size_list), sorted, unique. */
static int parse_contexts(kvr_fit_opts *o) {
    kvr_error e;
    if (kvr_parse_size_list(o->context_arg, 1, (int64_t)1 << 30, o->contexts, KF_MAX_CONTEXTS,
                            &o->n_contexts, &e) != KVR_OK) {
        if (e.code == KVR_ERR_NOMEM) return fail("out of memory");
        return usage_error("--context: %s", e.msg);
    }
    qsort(o->contexts, (size_t)o->n_contexts, sizeof *o->contexts, cmp_i64);
    int w = 0;
    for (int i = 0; i < o->n_contexts; i++)
        if (w == 0 || o->contexts[w - 1] != o->contexts[i]) o->contexts[w++] = o->contexts[i];
    o->n_contexts = w;
    return 0;
}

/* Returns 0 to continue, 2 on a usage error, -1 after --help. */
static int parse_opts(int argc, char **argv, kvr_fit_opts *o) {
    static const struct option lo[] = {
        {"db", required_argument, 0, 'd'},        {"run", required_argument, 0, 'r'},
        {"link-run", required_argument, 0, 'l'},  {"kvrp", no_argument, 0, 'k'},
        {"ranks", required_argument, 0, 'R'},     {"context", required_argument, 0, 'n'},
        {"table", required_argument, 0, 't'},     {"costs", required_argument, 0, 'c'},
        {"granularity", required_argument, 0, 'g'}, {"no-densify", no_argument, 0, 'N'},
        {"show", no_argument, 0, 's'},            {"export", required_argument, 0, 'e'},
        {"predictor", required_argument, 0, 'p'}, {"dry-run", no_argument, 0, 'D'},
        {"json", no_argument, 0, 'j'},            {"help", no_argument, 0, 'h'},
        {"calibrate", no_argument, 0, 'C'},       {"min-runs", required_argument, 0, 'm'},
        {0, 0, 0, 0}};
    int ch, rc;
    bool ranks_set = false, ctx_set = false, g_set = false;
    opterr = 0;
    bool min_set = false;
    while ((ch = getopt_long(argc, argv, ":d:r:l:kR:n:t:c:g:Nse:p:DjhCm:", lo, NULL)) != -1) {
        int64_t v;
        switch (ch) {
            case 'd': o->db = optarg; break;
            case 'r':
                if (strcmp(optarg, "latest") == 0) {
                    o->run = 0; /* resolved once the store is open */
                } else {
                    if ((rc = parse_size("--run", optarg, 1, INT64_MAX / 2048, &v))) return rc;
                    o->run = v;
                }
                o->run_set = true;
                break;
            case 'l':
                if (strcmp(optarg, "none") == 0) {
                    o->link_run_none = true;
                } else {
                    if ((rc = parse_size("--link-run", optarg, 1, INT64_MAX / 2048, &v))) return rc;
                    o->link_run = v;
                }
                o->link_run_set = true;
                break;
            case 'k': o->kvrp = true; break;
            case 'R': o->ranks_arg = optarg; ranks_set = true; break;
            case 'n': o->context_arg = optarg; ctx_set = true; break;
            case 't':
                if ((rc = parse_size("--table", optarg, 1, INT64_MAX / 2048, &v))) return rc;
                o->table = v;
                break;
            case 'c': o->costs_path = optarg; break;
            case 'g':
                if ((rc = parse_size("--granularity", optarg, 1, 1 << 20, &v))) return rc;
                o->granularity = v;
                g_set = true;
                break;
            case 'N': o->no_densify = true; break;
            case 's': o->show = true; break;
            case 'e': o->export_path = optarg; break;
            case 'p':
                if ((rc = parse_size("--predictor", optarg, 1, INT64_MAX / 2048, &v))) return rc;
                o->predictor = v;
                break;
            case 'D': o->dry_run = true; break;
            case 'C': o->calibrate = true; break;
            case 'm': {
                kvr_error e;
                if (kvr_parse_i64(optarg, 3, 1000000, &o->min_runs, &e) != KVR_OK)
                    return usage_error("--min-runs: %s", e.msg);
                min_set = true;
                break;
            }
            case 'j': o->json = true; break;
            case 'h': usage(stdout); return -1;
            case ':': return usage_error("%s needs a value", argv[optind - 1]);
            default: return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
    if ((rc = parse_ranks(o))) return rc;
    if ((rc = parse_contexts(o))) return rc;
    if (min_set && !o->calibrate) return usage_error("--min-runs needs --calibrate");
    if (!o->run_set && !o->kvrp && !o->show && !o->export_path && !o->calibrate)
        return usage_error("nothing to do: give --run ID, --kvrp, --calibrate, --show or "
                           "--export FILE");
    if (o->link_run_set && !o->run_set) return usage_error("--link-run needs --run");
    if (o->table && !o->kvrp) return usage_error("--table needs --kvrp");
    if (o->costs_path && !o->table) return usage_error("--costs needs --table");
    if (o->table && ctx_set) return usage_error("--table uses the table's contexts; drop --context");
    if (o->table && g_set) return usage_error("--table uses the table's granularity; drop --granularity");
    if (!o->kvrp && (ctx_set || g_set || o->no_densify))
        return usage_error("--context, --granularity and --no-densify need --kvrp");
    if (o->predictor && !o->export_path) return usage_error("--predictor needs --export");
    if (o->export_path) { /* never overwrite an input (issue 17): the store, the cost file */
        const kvr_path_role in[] = {{"--db", o->db}, {"--costs", o->costs_path}};
        kvr_error e;
        if (kvr_output_check("--export", o->export_path, in, 2, &e) != KVR_OK)
            return usage_error("%s", e.msg);
    }
    if (o->predictor && (o->kvrp || ranks_set))
        return usage_error("--predictor exports one stored predictor: drop --kvrp and --ranks");
    if (o->show && (o->run_set && !o->kvrp) && o->dry_run)
        return usage_error("--dry-run with --show stores nothing anyway");
    if (o->kvrp && !o->table) {
        for (int i = 0; i < o->n_ranks; i++)
            if (o->contexts[0] < (int64_t)o->ranks[i] * o->granularity)
                return usage_error("--context %lld is smaller than ranks x granularity (%d x "
                                   "%lld): every chunk needs at least --granularity tokens",
                                   (long long)o->contexts[0], o->ranks[i],
                                   (long long)o->granularity);
        if (o->n_contexts < 2)
            return usage_error("--context: KVR-P needs at least 2 contexts (a range)");
    }
    return 0;
}

// ----------------------------------------------------------------------------
// output helpers

static void json_num(FILE *f, double v, const char *fmt) {
    if (isfinite(v))
        fprintf(f, fmt, v);
    else
        fputs("null", f);
}

/* "12.3" or "-" for a fraction shown in percent. */
static const char *pct(char *buf, size_t n, double v) {
    if (isfinite(v) && v >= 0)
        snprintf(buf, n, "%.2f", 100 * v);
    else
        snprintf(buf, n, "-");
    return buf;
}

static const char *coef_names(const kvr_predict_fit *f, int j) {
    static const char *const attn[] = {"k", "b", "g", "a"};
    if (f->form == KVR_PREDICT_FORM_ATTN) return j < 4 ? attn[j] : "?";
    if (f->form == KVR_PREDICT_FORM_HINGE) return j == 0 ? "k" : "s";
    return (j % 2) == 0 ? "k" : "s";
}

static void print_fit_row(const char *target, const char *form, int64_t n,
                          const kvr_predict_fit *f) {
    char a[16], b[16], c[16], d[16];
    printf("%-7s %-9s %7lld %8s %8s %8s %8s  ", target, form, (long long)n,
           isfinite(f->lsq.r2) ? (snprintf(a, sizeof a, "%.5f", f->lsq.r2), a) : "-",
           pct(b, sizeof b, f->cv.mape_in), pct(c, sizeof c, f->cv.k ? f->cv.mape_out : NAN),
           f->cv.k ? pct(d, sizeof d, f->cv.max_rel_out) : "-");
    for (int j = 0; j < f->n_coef; j++) {
        printf("%s%s=%.4g", j ? " " : "", coef_names(f, j), f->coef[j]);
        if (f->lsq.se[j] > 0) printf("±%.2g", f->lsq.se[j]);
    }
    for (int j = 0; j < f->n_breaks; j++) printf(" break@%.0f", f->breaks[j]);
    printf("\n");
}

static void json_fit(FILE *o, const char *target, const char *form, int64_t n,
                     const kvr_predict_fit *f) {
    fprintf(o, "{\"target\":");
    kvr_json_write_str(o, target);
    fprintf(o, ",\"form\":");
    kvr_json_write_str(o, form);
    fprintf(o, ",\"n_samples\":%lld,\"r2\":", (long long)n);
    json_num(o, f->lsq.r2, "%.9g");
    fprintf(o, ",\"mape_in\":");
    json_num(o, f->cv.mape_in, "%.9g");
    fprintf(o, ",\"mape_cv\":");
    json_num(o, f->cv.k ? f->cv.mape_out : NAN, "%.9g");
    fprintf(o, ",\"max_err_cv\":");
    json_num(o, f->cv.k ? f->cv.max_rel_out : NAN, "%.9g");
    fprintf(o, ",\"breaks\":[");
    for (int j = 0; j < f->n_breaks; j++) fprintf(o, "%s%.17g", j ? "," : "", f->breaks[j]);
    fprintf(o, "],\"coef\":[");
    for (int j = 0; j < f->n_coef; j++) fprintf(o, "%s%.17g", j ? "," : "", f->coef[j]);
    fprintf(o, "],\"se\":[");
    for (int j = 0; j < f->n_coef; j++) fprintf(o, "%s%.9g", j ? "," : "", f->lsq.se[j]);
    fprintf(o, "]}");
}

// ----------------------------------------------------------------------------
// the store

static kvr_status open_db(const char *path, bool write, kvr_db **db, kvr_error *err) {
    kvr_db_open_params p = kvr_db_open_params_default();
    p.create = false;
    p.read_only = !write;
    return kvr_db_open(path, &p, db, err);
}

// ----------------------------------------------------------------------------
// 1. the cost model of a profile run

static int do_fit_run(kvr_db *db, const kvr_fit_opts *o, kvr_predict_run_fit *rf,
                      int64_t *costs_id, bool *printed_json) {
    kvr_error err;
    int64_t link_run = 0;
    if (kvr_predict_fit_links(db, o->run, o->link_run_none ? -1 : o->link_run, &link_run, &err) !=
        KVR_OK)
        return fail("--run: %s", err.msg);
    if (kvr_predict_fit_run(db, o->run, link_run, NULL, rf, &err) != KVR_OK)
        return fail("fit: %s; nothing was stored", err.msg);
    if (!o->dry_run && kvr_predict_run_fit_store(db, rf, costs_id, &err) != KVR_OK)
        return fail("store: %s; nothing was stored", err.msg);

    if (o->json) {
        printf("{\"db\":");
        kvr_json_write_str(stdout, kvr_db_path(db));
        printf(",\"run_id\":%lld,\"link_run_id\":%lld,\"model\":", (long long)rf->run_id,
               (long long)rf->link_run_id);
        kvr_json_write_str(stdout, rf->model);
        printf(",\"device\":");
        kvr_json_write_str(stdout, rf->device);
        printf(",\"n_threads\":%d,\"stored\":%s,\"costs_fit_id\":", rf->n_threads,
               o->dry_run ? "false" : "true");
        if (o->dry_run)
            printf("null");
        else
            printf("%lld", (long long)*costs_id);
        printf(",\"err_band\":%.9g,\"band_min_c\":%lld,\"band\":{\"op\":%.9g,\"n_e2e\":%d,"
               "\"e2e\":", rf->err_band, (long long)rf->band_min_c, rf->band_op, rf->n_e2e);
        json_num(stdout, rf->n_e2e > 0 ? rf->band_e2e : NAN, "%.9g");
        printf(",\"spread\":");
        json_num(stdout, rf->n_e2e > 0 ? rf->band_spread : NAN, "%.9g");
        printf(",\"scale\":{");
        for (int md = 0; md < KVR_MODE_COUNT; md++) {
            printf("%s\"%s\":{\"scale\":%.9g,\"kept\":%s,\"raw_err\":", md ? "," : "",
                   kvr_mode_name((kvr_mode)md), rf->scale[md],
                   rf->scale_kept >> md & 1 ? "true" : "false");
            json_num(stdout, rf->scale_raw_err[md], "%.9g");
            printf(",\"heldout_err\":");
            json_num(stdout, rf->scale_heldout_err[md], "%.9g");
            printf(",\"spread\":");
            json_num(stdout, rf->scale_spread[md], "%.9g");
            printf(",\"upto\":%lld}", (long long)rf->scale_upto[md]);
        }
        printf("}},\"fits\":[");
        bool first = true;
        for (int k = 0; k < KVR_OP_COUNT; k++) {
            const kvr_op op = kvr_predict_fit_order[k];
            const kvr_predict_fit *f = kvr_predict_costs_fit(rf->costs, op);
            if (!f) continue;
            printf("%s", first ? "" : ",");
            first = false;
            json_fit(stdout, kvr_op_name(op),
                     op == KVR_OP_HEAD && rf->head_constant ? "constant"
                                                            : kvr_predict_form_name(f->form),
                     rf->n_samples[op], f);
        }
        printf("],\"overheads\":{");
        for (int md = 0; md < KVR_MODE_COUNT; md++) {
            const kvr_search_overhead ov = kvr_predict_costs_overhead(rf->costs, (kvr_mode)md);
            printf("%s\"%s\":{\"run_us\":%.9g,\"layer_us\":%.9g,\"clamped\":%s}", md ? "," : "",
                   kvr_mode_name((kvr_mode)md), ov.run_us, ov.layer_us,
                   rf->overheads_clamped >> md & 1u ? "true" : "false");
        }
        printf("},\"overhead_samples\":%d", rf->n_overhead_samples);
        if (rf->n_decode_samples > 0)
            printf(",\"decode_step\":{\"k_us\":%.9g,\"per_seq_us\":%.9g,\"per_ctx_token_us\":%.9g,"
                   "\"n_samples\":%d,\"mape_in\":%.9g,\"mape_cv\":%s%.9g%s}",
                   rf->decode.k_us, rf->decode.per_seq_us, rf->decode.per_ctx_token_us,
                   rf->n_decode_samples, rf->decode_mape_in,
                   isfinite(rf->decode_mape_cv) ? "" : "\"", rf->decode_mape_cv,
                   isfinite(rf->decode_mape_cv) ? "" : "\"");
        else
            printf(",\"decode_step\":null");
        *printed_json = true;
        return 0;
    }
    printf("# kvr-fit %s (%s): db %s, run %lld (layers)", kvr_version(), kvr_build_commit(),
           kvr_db_path(db), (long long)rf->run_id);
    if (rf->link_run_id)
        printf(" + run %lld (links)", (long long)rf->link_run_id);
    else
        printf(", no transfer profile: links ideal");
    printf("\n# model %s; device %s; %d thread(s) per rank; relative-error WLS, non-negative, "
           "5-fold CV\n",
           rf->model, rf->device[0] ? rf->device : "?", rf->n_threads);
    printf("%-7s %-9s %7s %8s %8s %8s %8s  %s\n", "target", "form", "samples", "r2", "mape_in",
           "mape_cv", "max_cv", "coefficients ± se");
    printf("%-7s %-9s %7s %8s %8s %8s %8s  %s\n", "(-)", "(-)", "(-)", "(-)", "(%)", "(%)", "(%)",
           "(us; per token, per byte)");
    for (int k = 0; k < KVR_OP_COUNT; k++) {
        const kvr_op op = kvr_predict_fit_order[k];
        const kvr_predict_fit *f = kvr_predict_costs_fit(rf->costs, op);
        if (!f) continue;
        print_fit_row(kvr_op_name(op),
                      op == KVR_OP_HEAD && rf->head_constant ? "constant"
                                                             : kvr_predict_form_name(f->form),
                      rf->n_samples[op], f);
    }
    if (rf->n_overhead_samples > 0) {
        printf("# fixed overheads from %d overhead samples (per run + per layer step, us):",
               rf->n_overhead_samples);
        for (int md = 0; md < KVR_MODE_COUNT; md++) {
            const kvr_search_overhead ov = kvr_predict_costs_overhead(rf->costs, (kvr_mode)md);
            printf("%s %s %.1f + %.2f%s", md ? ";" : "", kvr_mode_name((kvr_mode)md), ov.run_us,
                   ov.layer_us, rf->overheads_clamped >> md & 1u ? " (clamped at 0)" : "");
        }
        printf("\n");
    } else {
        printf("# fixed overheads: none (the run has no overheads step: kvr-profile without "
               "--no-overheads adds it)\n");
    }
    if (rf->n_decode_samples > 0) {
        printf("# decode step (serving) from %d decode samples: %.1f + %.2f x B + %.4f x T us "
               "(B requests, T cached tokens in all); mape_in %.1f %%",
               rf->n_decode_samples, rf->decode.k_us, rf->decode.per_seq_us,
               rf->decode.per_ctx_token_us, 100 * rf->decode_mape_in);
        if (isfinite(rf->decode_mape_cv))
            printf(", held-out mape %.1f %%, max %.1f %%\n", 100 * rf->decode_mape_cv,
                   100 * rf->decode_max_rel_cv);
        else
            printf(", no held-out error (too few samples per fold)\n");
    } else {
        printf("# decode step: none (the run has no decode samples: kvr-profile --decode adds "
               "them)\n");
    }
    if (rf->n_e2e > 0) {
        printf("# end-to-end scale (measured / predicted at the check's prompt lengths, kept when "
               "it cuts the error on a held-out length by 20 %% against the op model alone and is "
               "at least twice its points' run-to-run spread):");
        bool any = false;
        for (int md = 0; md < KVR_MODE_COUNT; md++) {
            if (!isfinite(rf->scale_raw_err[md])) continue;
            const bool kept = rf->scale_kept >> md & 1;
            printf("%s %s %.4f (held out %.2f %%, op model %.2f %%, spread %.2f %%: %s",
                   any ? ";" : "", kvr_mode_name((kvr_mode)md), kept ? rf->scale[md] : 1.0,
                   100 * rf->scale_heldout_err[md], 100 * rf->scale_raw_err[md],
                   100 * rf->scale_spread[md], kept ? "kept" : "not kept");
            if (kept && rf->scale_upto[md] > 0)
                printf(", for prompts up to %lld tokens", (long long)rf->scale_upto[md]);
            printf(")");
            any = true;
        }
        printf("%s\n", any ? "" : " none (one prompt length per schedule: nothing to hold out)");
    }
    if (rf->n_e2e > 0)
        printf("# TTFT error band (drift threshold): %.2f %% = held-out end-to-end error %.2f %% "
               "+ run-to-run spread %.2f %% (the profile's end-to-end check: %d prompt(s) run "
               "identically; the per-op held-out error of one layer is %.2f %%)\n",
               100 * rf->err_band, 100 * rf->band_e2e, 100 * rf->band_spread, rf->n_e2e,
               100 * rf->band_op);
    else
        printf("# TTFT error band (drift threshold): %.2f %% = the largest held-out error of one "
               "layer's pre + attn + post at the profiled chunks >= %lld (the run has no "
               "end-to-end check: no run-to-run spread in it; re-profile to add it)\n",
               100 * rf->err_band, (long long)rf->band_min_c);
    if (o->dry_run)
        printf("# dry run: nothing stored\n");
    else
        printf("# stored in %s: cost model fit %lld (kvr-db fits %lld)\n", kvr_db_path(db),
               (long long)*costs_id, (long long)rf->run_id);
    return 0;
}

// ----------------------------------------------------------------------------
// 2. KVR-P

/* kvr_predict_kvrp_params.profile_costs: a kvr-search table's interpolated profile. */
static kvr_status profile_costs(void *user, kvr_db *db, int64_t run_id, int64_t link_run_id,
                                kvr_search_costs **out, kvr_error *err) {
    (void)user;
    kvr_profile_costs_params cp = kvr_profile_costs_params_default();
    cp.link_run_id = link_run_id;
    cp.allow_incomplete = true;
    return kvr_profile_costs_from_run(db, run_id, &cp, out, NULL, err);
}

static int do_kvrp(kvr_db *db, const kvr_fit_opts *o, kvr_predict_run_fit *rf, int64_t costs_id,
                   kvr_predict_kvrp_result *res) {
    kvr_predict_kvrp_params kp = kvr_predict_kvrp_params_default();
    kp.table_id = o->table;
    kp.costs_path = o->costs_path;
    kp.ranks = o->ranks;
    kp.n_ranks = o->n_ranks;
    kp.contexts = o->contexts;
    kp.n_contexts = o->n_contexts;
    kp.granularity = o->granularity;
    kp.no_densify = o->no_densify;
    kp.costs_fit_id = costs_id;
    kp.store = !o->dry_run;
    kp.profile_costs = profile_costs;
    kvr_error err;
    if (kvr_predict_kvrp_fit(db, &kp, rf, res, &err) != KVR_OK) return fail("%s", err.msg);
    return 0;
}

static void print_kvrp(const kvr_fit_opts *o, const kvr_predict_kvrp_result *kr, bool json,
                       bool *printed_json) {
    const kvr_predict_kvrp_rank *res = kr->ranks;
    const int n = kr->n_ranks;
    const int64_t table_id = kr->table_id;
    const char *links = kr->links;
    if (json) {
        printf("%s\"kvrp\":{\"table_id\":", *printed_json ? "," : "{");
        if (table_id)
            printf("%lld", (long long)table_id);
        else
            printf("null");
        printf(",\"links\":");
        kvr_json_write_str(stdout, links);
        printf(",\"predictors\":[");
        for (int i = 0; i < n; i++) {
            const kvr_predict_kvrp_rank *r = &res[i];
            printf("%s{\"ranks\":%d,\"id\":", i ? "," : "", r->p);
            if (r->predictor_id)
                printf("%lld", (long long)r->predictor_id);
            else
                printf("null");
            printf(",\"form\":\"%s\",\"contexts\":%d,\"added\":%d,\"context_min\":%lld,"
                   "\"context_max\":%lld,\"loo_mean_gap\":",
                   kvr_predictor_form_name(r->st.form), r->st.n_contexts, r->st.n_added,
                   (long long)r->st.context_min, (long long)r->st.context_max);
            json_num(stdout, r->st.loo_mean_gap, "%.9g");
            printf(",\"loo_max_gap\":");
            json_num(stdout, r->st.loo_max_gap, "%.9g");
            printf(",\"gap_in_mean\":");
            json_num(stdout, r->gaps.in_mean, "%.9g");
            printf(",\"gap_in_max\":");
            json_num(stdout, r->gaps.in_max, "%.9g");
            printf(",\"gap_out_mean\":");
            json_num(stdout, r->gaps.out_mean, "%.9g");
            printf(",\"gap_out_max\":");
            json_num(stdout, r->gaps.out_max, "%.9g");
            printf(",\"n_in\":%d,\"n_out\":%d}", r->gaps.n_in, r->gaps.n_out);
        }
        printf("]}");
        *printed_json = true;
        return;
    }
    if (o->table)
        printf("# KVR-P over stored partition table %lld; %s\n", (long long)table_id, links);
    else if (table_id)
        printf("# KVR-P over a KVR-S table of the fitted costs (stored as table %lld); %s\n",
               (long long)table_id, links);
    else
        printf("# KVR-P over a KVR-S table of the fitted costs (dry run: not stored); %s\n",
               links);
    printf("%5s %-15s %9s %15s %17s %17s %9s\n", "ranks", "form", "contexts", "range",
           "in-range gap", "outside gap", "predictor");
    printf("%5s %-15s %9s %15s %17s %17s %9s\n", "(-)", "(-)", "(fit)", "(tokens)",
           "mean/max (%)", "mean/max (%)", "(id)");
    for (int i = 0; i < n; i++) {
        const kvr_predict_kvrp_rank *r = &res[i];
        char rng[40], gi[40], go[40], id[24];
        snprintf(rng, sizeof rng, "%lld..%lld", (long long)r->st.context_min,
                 (long long)r->st.context_max);
        snprintf(gi, sizeof gi, "%.3f/%.3f", 100 * r->gaps.in_mean, 100 * r->gaps.in_max);
        snprintf(go, sizeof go, "%.3f/%.3f", 100 * r->gaps.out_mean, 100 * r->gaps.out_max);
        snprintf(id, sizeof id, "%lld", (long long)r->predictor_id);
        printf("%5d %-15s %9d %15s %17s %17s %9s\n", r->p, kvr_predictor_form_name(r->st.form),
               r->st.n_contexts, rng, gi, go, r->predictor_id ? id : "-");
    }
    printf("# gaps: TTFT(KVR-P partition) / TTFT(KVR-S) - 1 under the cost model, at %d contexts "
           "inside the range (none in the table) and %d outside (below, and up to 2x above)\n",
           n ? res[0].gaps.n_in : 0, n ? res[0].gaps.n_out : 0);
}

// ----------------------------------------------------------------------------
// 3. show and export

static int do_show(kvr_db *db, const kvr_fit_opts *o, bool *printed_json) {
    kvr_error err;
    kvr_db_fit *fits = NULL;
    kvr_db_predictor *preds = NULL;
    int64_t nf = 0, np = 0;
    if (kvr_db_fits_list(db, o->run_set ? o->run : 0, &fits, &nf, &err) != KVR_OK ||
        kvr_db_predictors_list(db, &preds, &np, &err) != KVR_OK) {
        kvr_db_fits_free(fits, nf);
        return fail("--show: %s", err.msg);
    }
    if (o->json) {
        printf("%s\"stored_fits\":[", *printed_json ? "," : "{");
        for (int64_t i = 0; i < nf; i++) {
            const kvr_db_fit *f = &fits[i];
            printf("%s{\"id\":%lld,\"run_id\":%lld,\"target\":", i ? "," : "", (long long)f->id,
                   (long long)f->run_id);
            kvr_json_write_str(stdout, f->target);
            printf(",\"form\":");
            kvr_json_write_str(stdout, f->form);
            printf(",\"n_samples\":%lld,\"r2\":", (long long)f->n_samples);
            json_num(stdout, f->r2, "%.9g");
            printf(",\"mape_in\":");
            json_num(stdout, f->mape_in >= 0 ? f->mape_in : NAN, "%.9g");
            printf(",\"mape_cv\":");
            json_num(stdout, f->mape_cv >= 0 ? f->mape_cv : NAN, "%.9g");
            printf(",\"max_err_cv\":");
            json_num(stdout, f->max_err_cv >= 0 ? f->max_err_cv : NAN, "%.9g");
            printf(",\"ts_utc\":");
            kvr_json_write_str(stdout, f->ts_utc);
            printf("}");
        }
        printf("],\"stored_predictors\":[");
        int k = 0;
        for (int64_t i = 0; i < np; i++) {
            const kvr_db_predictor *p = &preds[i];
            if (o->run_set && p->run_id != o->run) continue;
            printf("%s{\"id\":%lld,\"table_id\":%lld,\"run_id\":%lld,\"ranks\":%d,\"form\":",
                   k++ ? "," : "", (long long)p->id, (long long)p->table_id,
                   (long long)p->run_id, p->n_ranks);
            kvr_json_write_str(stdout, p->form);
            printf(",\"links\":");
            kvr_json_write_str(stdout, p->links);
            printf(",\"gap_mean\":");
            json_num(stdout, p->gap_mean, "%.9g");
            printf(",\"gap_max\":");
            json_num(stdout, p->gap_max, "%.9g");
            printf(",\"err_band\":");
            json_num(stdout, p->err_band, "%.9g");
            printf(",\"ts_utc\":");
            kvr_json_write_str(stdout, p->ts_utc);
            printf("}");
        }
        printf("]");
        *printed_json = true;
    } else {
        printf("# fits in %s%s\n", kvr_db_path(db), o->run_set ? " (of --run)" : "");
        printf("%5s %5s %-9s %-13s %7s %8s %8s %8s %8s  %s\n", "id", "run", "target", "form",
               "samples", "r2", "mape_in", "mape_cv", "max_cv", "stored (UTC)");
        printf("%5s %5s %-9s %-13s %7s %8s %8s %8s %8s  %s\n", "", "", "", "", "", "(-)", "(%)",
               "(%)", "(%)", "");
        for (int64_t i = 0; i < nf; i++) {
            const kvr_db_fit *f = &fits[i];
            char a[16], b[16], c[16], d[16];
            printf("%5lld %5lld %-9s %-13s %7lld %8s %8s %8s %8s  %s\n", (long long)f->id,
                   (long long)f->run_id, f->target, f->form, (long long)f->n_samples,
                   isfinite(f->r2) ? (snprintf(a, sizeof a, "%.5f", f->r2), a) : "-",
                   pct(b, sizeof b, f->mape_in), pct(c, sizeof c, f->mape_cv),
                   pct(d, sizeof d, f->max_err_cv), f->ts_utc);
        }
        printf("# KVR-P predictors\n%5s %5s %5s %5s %-15s %9s %9s %9s  %s\n", "id", "table",
               "run", "ranks", "form", "gap_mean", "gap_max", "err_band", "links");
        printf("%5s %5s %5s %5s %-15s %9s %9s %9s\n", "", "", "", "", "", "(%)", "(%)", "(%)");
        for (int64_t i = 0; i < np; i++) {
            const kvr_db_predictor *p = &preds[i];
            if (o->run_set && p->run_id != o->run) continue;
            char a[16], b[16], c[16];
            printf("%5lld %5lld %5lld %5d %-15s %9s %9s %9s  %s\n", (long long)p->id,
                   (long long)p->table_id, (long long)p->run_id, p->n_ranks, p->form,
                   isfinite(p->gap_mean) ? (snprintf(a, sizeof a, "%.3f", 100 * p->gap_mean), a) : "-",
                   isfinite(p->gap_max) ? (snprintf(b, sizeof b, "%.3f", 100 * p->gap_max), b) : "-",
                   pct(c, sizeof c, p->err_band), p->links);
        }
    }
    kvr_db_fits_free(fits, nf);
    kvr_db_predictors_free(preds, np);
    return 0;
}

static int write_file(const char *path, const char *text) {
    kvr_error e; /* a temporary beside it, renamed into place: never half a file */
    if (kvr_write_file_atomic(path, text, strlen(text), &e) != KVR_OK)
        return fail("--export %s: %s", path, e.msg);
    return 0;
}

/* Export: the predictor fitted now, a stored one (--predictor), or the newest stored for each
 * of --ranks. */
static int do_export(kvr_db *db, const kvr_fit_opts *o, const kvr_predict_kvrp_result *kr,
                     const kvr_predict_run_fit *rf, bool *printed_json) {
    kvr_error err;
    char *text = NULL;
    kvr_status st = kr->kp ? kvr_predict_kvrp_file_format(kr, rf, &text, &err)
                           : kvr_predict_kvrp_file_from_store(db, o->predictor, o->ranks,
                                                              o->n_ranks, &text, &err);
    if (st != KVR_OK) {
        fail("%s%s", kr->kp ? "--export: " : "", err.msg);
        return 1;
    }
    int rc = write_file(o->export_path, text);
    free(text);
    if (rc) return rc;
    if (o->json) {
        printf("%s\"export\":", *printed_json ? "," : "{");
        kvr_json_write_str(stdout, o->export_path);
        *printed_json = true;
    } else {
        printf("# predictor file %s written (kvr-run --partition auto --predictor %s)\n",
               o->export_path, o->export_path);
    }
    return 0;
}

/* --calibrate: fit every group of recorded runs, store (unless --dry-run), print. */
static int do_calibrate(kvr_db *db, const kvr_fit_opts *o, bool *printed_json) {
    kvr_error e;
    kvr_db_calibration *c = NULL;
    int64_t n = 0, n_small = 0;
    if (kvr_calib_from_store(db, (int)o->min_runs, &c, &n, &n_small, &e) != KVR_OK)
        return fail("--calibrate: %s", e.msg);
    for (int64_t i = 0; i < n && !o->dry_run; i++)
        if (kvr_db_calibration_put(db, &c[i], &e) != KVR_OK) {
            kvr_db_free(c);
            return fail("--calibrate: %s", e.msg);
        }
    if (o->json) {
        printf("%s\"calibrations\":[", *printed_json ? "," : "{");
        for (int64_t i = 0; i < n; i++) {
            const kvr_db_calibration *x = &c[i];
            printf("%s{\"id\":%lld,\"model_id\":%lld,\"profile_run_id\":%lld,\"strategy\":",
                   i ? "," : "", (long long)x->id, (long long)x->model_id,
                   (long long)x->profile_run_id);
            kvr_json_write_str(stdout, x->strategy);
            printf(",\"n_ranks\":%d,\"n_threads\":%d,\"transport\":", x->n_ranks, x->n_threads);
            kvr_json_write_str(stdout, x->transport);
            printf(",\"a\":%.9g,\"b_ms\":%.9g,\"n_runs\":%d,\"raw_med_err\":%.6g,"
                   "\"raw_max_err\":%.6g,\"cv_med_err\":%.6g,\"cv_max_err\":%.6g,"
                   "\"cv_q90_err\":%.6g,\"spread\":%.6g,\"repeat_sets\":%d,\"band\":%.6g}",
                   x->a, x->b, x->n_runs, x->raw_med_err, x->raw_max_err, x->cv_med_err,
                   x->cv_max_err, x->cv_q90_err, x->spread, x->n_repeat_sets, x->band);
        }
        printf("],\"calibration_groups_too_small\":%lld", (long long)n_small);
        *printed_json = true;
    } else {
        printf("# calibration of end-to-end TTFT predictions from %s's recorded runs: measured = "
               "a x predicted + b;\n# errors |predicted/measured - 1|: raw (the cost model alone) "
               "and calibrated held out (leave-one-out);\n# band = calibrated q90 + run-to-run "
               "spread: kvr-run flags a run outside it as drift%s\n",
               kvr_db_path(db), o->dry_run ? " (dry run: nothing stored)" : "");
        printf("%4s %-7s %5s %7s %-8s %6s %5s %9s %8s %8s %8s %8s %8s %7s %7s\n", "id", "strat",
               "ranks", "threads", "transp", "prof", "runs", "a", "b_ms", "raw_med", "raw_max",
               "cal_med", "cal_max", "spread", "band");
        for (int64_t i = 0; i < n; i++) {
            const kvr_db_calibration *x = &c[i];
            printf("%4lld %-7s %5d %7d %-8s %6lld %5d %9.4f %8.3f %7.2f%% %7.2f%% %7.2f%% %7.2f%% "
                   "%6.2f%% %6.2f%%\n",
                   (long long)x->id, x->strategy, x->n_ranks, x->n_threads, x->transport,
                   (long long)x->profile_run_id, x->n_runs, x->a, x->b, 100 * x->raw_med_err,
                   100 * x->raw_max_err, 100 * x->cv_med_err, 100 * x->cv_max_err,
                   100 * x->spread, 100 * x->band);
        }
        if (n == 0)
            printf("# no group of recorded runs has %lld runs with a prediction (kvr-run --db "
                   "with a fitted cost model records them)\n",
                   (long long)o->min_runs);
        if (n_small)
            printf("# %lld group(s) with fewer than %lld runs left out (--min-runs)\n",
                   (long long)n_small, (long long)o->min_runs);
    }
    kvr_db_free(c);
    return 0;
}

int main(int argc, char **argv) {
    kvr_fit_opts o;
    memset(&o, 0, sizeof o);
    o.db = "kvr.db";
    o.ranks_arg = "2";
    o.context_arg = "512:8192:256";
    o.granularity = 16;
    o.min_runs = 5;
    int rc = parse_opts(argc, argv, &o);
    if (rc == -1) return 0;
    if (rc) return rc;

    kvr_error err;
    kvr_db *db = NULL;
    const bool write = !o.dry_run && (o.run_set || o.kvrp || o.calibrate);
    if (open_db(o.db, write, &db, &err) != KVR_OK) return fail("--db %s: %s", o.db, err.msg);

    kvr_predict_run_fit rf;
    memset(&rf, 0, sizeof rf);
    kvr_predict_kvrp_result kr;
    memset(&kr, 0, sizeof kr);
    int64_t costs_id = 0;
    bool printed_json = false;
    rc = 0;
    const char *const fit_ops[] = {kvr_op_name(KVR_OP_PRE), kvr_op_name(KVR_OP_ATTN),
                                   kvr_op_name(KVR_OP_POST)};
    if (o.run_set && o.run == 0 &&
        kvr_db_run_latest_with_ops(db, fit_ops, 3, &o.run, &err) != KVR_OK) {
        fprintf(stderr, "kvr-fit: --run latest: no profile run with pre, attn and post samples in "
                        "%s (kvr-profile)\n", o.db);
        rc = 1;
    }
    if (!rc && o.run_set) rc = do_fit_run(db, &o, &rf, &costs_id, &printed_json);
    if (!rc && o.kvrp) {
        rc = do_kvrp(db, &o, &rf, costs_id, &kr);
        if (!rc) print_kvrp(&o, &kr, o.json, &printed_json);
    }
    if (!rc && o.calibrate) rc = do_calibrate(db, &o, &printed_json);
    if (!rc && o.show) rc = do_show(db, &o, &printed_json);
    if (!rc && o.export_path) rc = do_export(db, &o, &kr, &rf, &printed_json);
    if (o.json && printed_json) printf("}\n");
    kvr_predict_kvrp_result_free(&kr);
    kvr_predict_run_fit_free(&rf);
    kvr_db_close(db);
    return rc;
}
