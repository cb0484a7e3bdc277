/* kvr_db.c -- kvr-db: look into and maintain the SQLite store: list and show runs, export a
 * run's samples as CSV or JSON, import samples measured elsewhere (CSV, docs/db.md), delete a
 * run, check integrity, the single-rank TTFT a profile predicts, and list the partition tables
 * (kvr-search), fits and predictors (kvr-fit), measured runs (kvr-run) and serving runs
 * (kvr-serve --db) stored with them.
 *
 * Build: cmake -B build && cmake --build build      Run: build/tools/kvr-db --help
 *   build/tools/kvr-db list
 *   build/tools/kvr-db show 3
 *   build/tools/kvr-db export 3 --format csv -o run3.csv
 *   build/tools/kvr-db import vllm_timings.csv --set model.name=Llama-2-7b --set model.n_layers=32
 *   build/tools/kvr-db ttft 3 512 2048 4096
 *   build/tools/kvr-db check
 *   build/tools/kvr-db tables; build/tools/kvr-db table 1; build/tools/kvr-db fits; ... predictors
 * Exit codes: 0 ok, 1 runtime failure (or check found problems), 2 usage error.
 */
#include "kvr_profiler.h"
#include "tool_util.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SETS 64

typedef struct kvr_db_opts {
    const char *db;
    const char *format; /* csv | json */
    const char *output;
    bool json;
    const char *sets[MAX_SETS];
    int n_sets;
} kvr_db_opts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: kvr-db [options] COMMAND [ARGS]\n"
            "commands:\n"
            "  list                      runs: id, kind, status, start, model, device, samples\n"
            "  show RUN                  a run's provenance, parameters and sample summary\n"
            "  export RUN                a run's samples (--format csv|json, -o FILE)\n"
            "  import FILE|-             samples measured elsewhere (CSV, docs/db.md) as a new run\n"
            "  delete RUN                a run and its samples\n"
            "  check                     integrity (exit 1 on any problem)\n"
            "  ttft RUN C [C...]         single-rank TTFT the profile predicts for C tokens\n"
            "  tables                    KVR-S partition tables (kvr-search --db)\n"
            "  table ID                  a table's rows (--json: its full JSON export)\n"
            "  fits [RUN]                fitted cost-model terms (kvr-fit), of one run or all\n"
            "  predictors                KVR-P predictors (kvr-fit --kvrp)\n"
            "  measured                  measured TTFTs (kvr-run --db)\n"
            "  serving [ID]              serving runs (kvr-serve --db); with ID, that run's\n"
            "                            requests (CSV, or --json)\n"
            "options:\n"
            "  -d, --db PATH             the store (default ./kvr.db)\n"
            "  -f, --format csv|json     export format (default csv)\n"
            "  -o, --output FILE         export to FILE instead of stdout\n"
            "  -s, --set KEY=VALUE       import: provenance override, e.g. model.name=Llama-2-7b,\n"
            "                            model.n_layers=32, device.name=A100, run.backend=cuda\n"
            "  -j, --json                list, show, ttft, tables, table, fits, predictors,\n"
            "                            measured, serving: JSON output\n"
            "  -h, --help                this help\n"
            "Exit: 0 ok, 1 runtime failure or check problems, 2 usage error.\n");
}

#define usage_error(...) tool_usage_error("kvr-db", __VA_ARGS__)

/* Open for writing when possible (so stale runs are marked and old schemas upgraded), else
 * read-only (a read-only file or location can still be listed and exported). */
static kvr_status open_db(const char *path, bool need_write, bool create, kvr_db **db,
                          kvr_error *err) {
    kvr_db_open_params p = kvr_db_open_params_default();
    p.create = create;
    p.verify = need_write;
    kvr_status st = kvr_db_open(path, &p, db, err);
    if (st == KVR_ERR_IO && !need_write) {
        p.read_only = true;
        st = kvr_db_open(path, &p, db, err);
    }
    if (st == KVR_OK && !need_write) kvr_db_runs_reap(*db, NULL, NULL);
    if (st == KVR_OK && need_write) st = kvr_db_runs_reap(*db, NULL, err);
    return st;
}

static const char *shown_status(const kvr_db_run *r) {
    if (r->status == KVR_RUN_RUNNING && !kvr_db_run_owner_alive(r)) return "incomplete";
    return kvr_run_status_name(r->status);
}

static int parse_run_id(const char *s, int64_t *id) {
    kvr_error e;
    if (kvr_parse_i64(s, 1, INT64_MAX, id, &e) != KVR_OK) return usage_error("RUN: %s", e.msg);
    return 0;
}

// ----------------------------------------------------------------------------
// commands

static int cmd_list(kvr_db *db, const kvr_db_opts *o) {
    kvr_error err;
    kvr_db_run *runs = NULL;
    int64_t n = 0;
    if (kvr_db_runs_list(db, &runs, &n, &err) != KVR_OK) {
        fprintf(stderr, "kvr-db: list: %s\n", err.msg);
        return 1;
    }
    if (o->json) printf("[");
    else {
        printf("%5s %-8s %-10s %-20s %-28s %-24s %-9s %7s %7s %s\n", "id", "kind", "status",
               "started (UTC)", "model", "device", "grid", "layer", "xfer", "commit");
    }
    int rc = 0;
    for (int64_t i = 0; i < n; i++) {
        const kvr_db_run *r = &runs[i];
        kvr_db_model m;
        memset(&m, 0, sizeof m);
        if (r->model_id > 0 && kvr_db_model_get(db, r->model_id, &m, &err) != KVR_OK) m.name[0] = 0;
        int64_t nl = 0, nt = 0;
        if (kvr_db_run_counts(db, r->id, &nl, &nt, &err) != KVR_OK) {
            fprintf(stderr, "kvr-db: list: %s\n", err.msg);
            rc = 1;
            break;
        }
        if (o->json) {
            printf("%s{\"id\":%lld,\"kind\":", i ? "," : "", (long long)r->id);
            kvr_json_write_str(stdout, r->kind);
            printf(",\"status\":\"%s\",\"ts_utc\":", shown_status(r));
            kvr_json_write_str(stdout, r->ts_utc);
            printf(",\"model\":");
            kvr_json_write_str(stdout, m.name);
            printf(",\"device\":");
            kvr_json_write_str(stdout, r->device_name);
            printf(",\"grid\":");
            kvr_json_write_str(stdout, r->grid);
            printf(",\"layer_samples\":%lld,\"transfer_samples\":%lld,\"git_commit\":",
                   (long long)nl, (long long)nt);
            kvr_json_write_str(stdout, r->git_commit);
            printf("}");
        } else {
            printf("%5lld %-8.8s %-10s %-20.20s %-28.28s %-24.24s %-9.9s %7lld %7lld %s\n",
                   (long long)r->id, r->kind, shown_status(r), r->ts_utc, m.name, r->device_name,
                   r->grid, (long long)nl, (long long)nt, r->git_commit);
        }
    }
    if (o->json) printf("]\n");
    kvr_db_free(runs);
    return rc;
}

static int cmd_show(kvr_db *db, int64_t id, const kvr_db_opts *o) {
    kvr_error err;
    kvr_db_run r;
    if (kvr_db_run_get(db, id, &r, &err) != KVR_OK) {
        fprintf(stderr, "kvr-db: show: %s\n", err.msg);
        return 1;
    }
    if (o->json) { /* the export without samples would do; the full export is one command away */
        char *js = NULL;
        if (kvr_db_export_json(db, id, &js, &err) != KVR_OK) {
            fprintf(stderr, "kvr-db: show: %s\n", err.msg);
            return 1;
        }
        fputs(js, stdout);
        kvr_db_free(js);
        return 0;
    }
    kvr_db_model m;
    kvr_db_device d;
    memset(&m, 0, sizeof m);
    memset(&d, 0, sizeof d);
    if ((r.model_id > 0 && kvr_db_model_get(db, r.model_id, &m, &err) != KVR_OK) ||
        (r.device_id > 0 && kvr_db_device_get(db, r.device_id, &d, &err) != KVR_OK)) {
        fprintf(stderr, "kvr-db: show: %s\n", err.msg);
        return 1;
    }
    int64_t nl = 0, nt = 0;
    if (kvr_db_run_counts(db, id, &nl, &nt, &err) != KVR_OK) {
        fprintf(stderr, "kvr-db: show: %s\n", err.msg);
        return 1;
    }
    printf("run %lld (%s): %s\n", (long long)r.id, r.kind, shown_status(&r));
    printf("  started        %s%s%s\n", r.ts_utc, r.ts_end_utc[0] ? ", ended " : "", r.ts_end_utc);
    if (r.note[0]) printf("  note           %s\n", r.note);
    printf("  kvr            %s (commit %s, %s build)\n", r.kvr_version[0] ? r.kvr_version : "?",
           r.git_commit[0] ? r.git_commit : "?", r.build_type[0] ? r.build_type : "?");
    printf("  host           %s (pid %lld)\n", r.host, (long long)r.pid);
    printf("  model          %s: %d layers, d %d, %d/%d heads x %d, ffn %d, vocab %d; %lld KV bytes/token/layer\n",
           m.name, m.n_layers, m.d_model, m.n_heads, m.n_kv_heads, m.head_dim, m.d_ff,
           m.vocab_size, (long long)m.kv_bytes_per_token);
    printf("  model source   %s (hash %s)\n", m.source, m.content_hash);
    printf("  device         %s %s, %d cpus, %.0f MHz, %.1f GiB\n", d.kind, d.name, d.n_cores,
           isfinite(d.clock_mhz) ? d.clock_mhz : 0.0, (double)d.mem_bytes / (1 << 30));
    printf("  backend        %s, dtype %s, %d thread(s)/rank, %d rank(s)%s%s\n", r.backend, r.dtype,
           r.n_threads, r.n_ranks, r.transport[0] ? ", transport " : "", r.transport);
    if (r.blas[0]) printf("  blas           %s\n", r.blas);
    if (r.mpi_version[0]) printf("  mpi            %s\n", r.mpi_version);
    if (r.cuda_version[0] || r.nccl_version[0])
        printf("  cuda / nccl    %s / %s\n", r.cuda_version, r.nccl_version);
    printf("  grid           %s; ops %s\n", r.grid, r.ops[0] ? r.ops : "none");
    printf("  timing         %d warm-up, %d..%d iterations, budget %g s/point, median to +-%g%%, "
           "timer overhead %.3f us\n",
           r.n_warmup, r.n_iters_min, r.n_iters_max, r.time_budget_s, 100 * r.rel_tol,
           r.timer_overhead_us);
    printf("  source         %s\n", r.source);
    if (r.params[0]) printf("  parameters     %s\n", r.params);
    printf("  samples        %lld layer, %lld transfer\n", (long long)nl, (long long)nt);
    { /* what later stages made from this run (schema v3) */
        int64_t nf = 0, mine_t = 0, mine_p = 0;
        if (kvr_db_run_made_from(db, id, &nf, &mine_t, &mine_p, &err) == KVR_OK &&
            (nf || mine_t || mine_p))
            printf("  made from it   %lld fits, %lld partition tables, %lld predictors "
                   "(kvr-db fits %lld; tables; predictors)\n",
                   (long long)nf, (long long)mine_t, (long long)mine_p, (long long)id);
    }
    kvr_db_layer_sample *ls = NULL;
    int64_t n = 0;
    if (kvr_db_layer_samples_get(db, id, &ls, &n, &err) == KVR_OK && n > 0 && m.n_layers > 0) {
        /* at the largest chunk of the P = 0 attention row and 1/2, 1/4, 1/8 of it */
        int64_t ctx[4];
        double ms[4];
        int nc = 0;
        kvr_profile_predict_single_series(ls, n, m.n_layers, ctx, ms, &nc);
        printf("  predicted single-rank TTFT:");
        for (int k = 0; k < nc; k++) printf(" %lld tok %.1f ms;", (long long)ctx[k], ms[k]);
        const bool any = nc > 0;
        printf("%s\n", any ? "" : " (needs embed, pre, attn (P = 0), post and head samples)");
    }
    kvr_db_free(ls);
    return 0;
}

static int cmd_export(kvr_db *db, int64_t id, const kvr_db_opts *o) {
    kvr_error err;
    char *text = NULL;
    kvr_status st = !strcmp(o->format, "json") ? kvr_db_export_json(db, id, &text, &err)
                                               : kvr_db_export_csv(db, id, &text, &err);
    if (st != KVR_OK) {
        fprintf(stderr, "kvr-db: export: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    if (o->output) { /* a temporary beside it, renamed into place: never half a file */
        if (kvr_write_file_atomic(o->output, text, strlen(text), &err) != KVR_OK) {
            fprintf(stderr, "kvr-db: export: %s\n", err.msg);
            rc = 1;
        }
    } else {
        fputs(text, stdout);
    }
    kvr_db_free(text);
    return rc;
}

/* --set KEY=VALUE: drop the file's "# KEY:" lines, prepend "# KEY: VALUE". */
static char *apply_sets(const char *buf, size_t len, const kvr_db_opts *o, size_t *out_len) {
    size_t extra = 0;
    for (int i = 0; i < o->n_sets; i++) extra += strlen(o->sets[i]) + 8;
    char *out = malloc(len + extra + 1);
    if (!out) return NULL;
    size_t k = 0;
    for (int i = 0; i < o->n_sets; i++) {
        const char *eq = strchr(o->sets[i], '=');
        k += (size_t)sprintf(out + k, "# %.*s: %s\n", (int)(eq - o->sets[i]), o->sets[i], eq + 1);
    }
    size_t pos = 0;
    while (pos < len) {
        const char *ls = buf + pos, *nl = memchr(ls, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - ls) + 1 : len - pos;
        bool drop = false;
        for (int i = 0; i < o->n_sets && !drop; i++) {
            const size_t kl = (size_t)(strchr(o->sets[i], '=') - o->sets[i]);
            size_t j = 0;
            while (j < n && (ls[j] == ' ' || ls[j] == '\t')) j++;
            if (j < n && ls[j] == '#') {
                j++;
                while (j < n && (ls[j] == ' ' || ls[j] == '\t')) j++;
                drop = j + kl < n && !memcmp(ls + j, o->sets[i], kl) && ls[j + kl] == ':';
            }
        }
        if (!drop) {
            memcpy(out + k, ls, n);
            k += n;
        }
        pos += n;
    }
    *out_len = k;
    return out;
}

static int cmd_import(kvr_db *db, const char *path, const kvr_db_opts *o) {
    kvr_error err = {0};
    size_t len = 0;
    char *buf = NULL;
    if (kvr_read_file(path, 0, &buf, &len, &err) != KVR_OK) {
        fprintf(stderr, "kvr-db: import: %s\n", err.msg);
        return 1;
    }
    if (o->n_sets) {
        size_t l2;
        char *b2 = apply_sets(buf, len, o, &l2);
        free(buf);
        if (!b2) {
            fprintf(stderr, "kvr-db: import: out of memory\n");
            return 1;
        }
        buf = b2;
        len = l2;
    }
    kvr_db_csv *csv = NULL;
    if (kvr_db_csv_parse(buf, len, strcmp(path, "-") ? path : "stdin", &csv, &err) != KVR_OK) {
        free(buf);
        fprintf(stderr, "kvr-db: import: %s\n", err.msg);
        return 1;
    }
    free(buf);
    int64_t id = 0;
    if (kvr_db_csv_store(db, csv, &id, &err) != KVR_OK) {
        fprintf(stderr, "kvr-db: import: %s\n", err.msg);
        kvr_db_csv_free(csv);
        return 1;
    }
    printf("imported run %lld: %lld layer and %lld transfer samples of %s from %s\n",
           (long long)id, (long long)csv->n_layers, (long long)csv->n_transfers, csv->model.name,
           path);
    kvr_db_csv_free(csv);
    return 0;
}

static int cmd_delete(kvr_db *db, int64_t id) {
    kvr_error err;
    kvr_db_run r;
    if (kvr_db_run_get(db, id, &r, &err) != KVR_OK) {
        fprintf(stderr, "kvr-db: delete: %s\n", err.msg);
        return 1;
    }
    if (r.status == KVR_RUN_RUNNING && kvr_db_run_owner_alive(&r)) {
        fprintf(stderr, "kvr-db: delete: run %lld is being written by process %lld; stop it first\n",
                (long long)id, (long long)r.pid);
        return 1;
    }
    if (kvr_db_run_delete(db, id, &err) != KVR_OK) {
        fprintf(stderr, "kvr-db: delete: %s\n", err.msg);
        return 1;
    }
    printf("deleted run %lld\n", (long long)id);
    return 0;
}

static int cmd_check(kvr_db *db) {
    kvr_error err;
    bool ok = false;
    char report[4096];
    if (kvr_db_check(db, &ok, report, sizeof report, &err) != KVR_OK) {
        fprintf(stderr, "kvr-db: check: %s\n", err.msg);
        return 1;
    }
    kvr_db_run *runs = NULL;
    int64_t n = 0, n_inc = 0;
    if (kvr_db_runs_list(db, &runs, &n, &err) != KVR_OK) {
        fprintf(stderr, "kvr-db: check: %s\n", err.msg);
        return 1;
    }
    for (int64_t i = 0; i < n; i++) n_inc += strcmp(shown_status(&runs[i]), "incomplete") == 0;
    kvr_db_free(runs);
    if (!ok) {
        fprintf(stderr, "kvr-db: check: %s: problems found:\n%s", kvr_db_path(db), report);
        return 1;
    }
    printf("%s: ok (schema version %d, %lld runs, %lld incomplete)\n", kvr_db_path(db),
           kvr_db_schema_version(db), (long long)n, (long long)n_inc);
    return 0;
}

static int cmd_ttft(kvr_db *db, int64_t id, char **ctx, int n_ctx, const kvr_db_opts *o) {
    kvr_error err;
    kvr_db_run r;
    kvr_db_model m;
    if (kvr_db_run_get(db, id, &r, &err) != KVR_OK ||
        kvr_db_model_get(db, r.model_id, &m, &err) != KVR_OK) {
        fprintf(stderr, "kvr-db: ttft: %s\n", err.msg);
        return 1;
    }
    kvr_db_layer_sample *ls = NULL;
    int64_t n = 0;
    if (kvr_db_layer_samples_get(db, id, &ls, &n, &err) != KVR_OK) {
        fprintf(stderr, "kvr-db: ttft: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    if (o->json) printf("{\"run_id\":%lld,\"n_layers\":%d,\"ttft_ms\":{", (long long)id, m.n_layers);
    else printf("%8s %12s\n%8s %12s\n", "context", "ttft", "(tokens)", "(ms)");
    for (int i = 0; i < n_ctx; i++) {
        int64_t C;
        double ms;
        if (kvr_parse_i64(ctx[i], 1, (int64_t)1 << 30, &C, &err) != KVR_OK) {
            fprintf(stderr, "kvr-db: ttft: context '%s': %s\n", ctx[i], err.msg);
            rc = 2;
            break;
        }
        if (kvr_profile_predict_single_ms(ls, n, m.n_layers, C, &ms, &err) != KVR_OK) {
            fprintf(stderr, "kvr-db: ttft: run %lld: %s\n", (long long)id, err.msg);
            rc = 1;
            break;
        }
        if (o->json) printf("%s\"%lld\":%.3f", i ? "," : "", (long long)C, ms);
        else printf("%8lld %12.2f\n", (long long)C, ms);
    }
    if (o->json) printf("}}\n");
    kvr_db_free(ls);
    return rc;
}

static void opt_num(double v, int width, int prec) {
    if (v < 0 || !isfinite(v))
        printf(" %*s", width, "-");
    else
        printf(" %*.*f", width, prec, v);
}

static void json_opt(const char *key, double v) {
    if (v < 0 || !isfinite(v))
        printf(",\"%s\":null", key);
    else
        printf(",\"%s\":%.9g", key, v);
}

static int cmd_tables(kvr_db *db, const kvr_db_opts *o) {
    kvr_error err;
    kvr_db_ptable *t = NULL;
    int64_t n = 0;
    if (kvr_db_ptables_list(db, &t, &n, &err) != KVR_OK) {
        fprintf(stderr, "kvr-db: tables: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    if (o->json) printf("[");
    else
        printf("%5s %5s %-20s %5s %5s %-28s %-36s %s\n", "id", "run", "created (UTC)", "gran",
               "rows", "links", "source", "commit");
    for (int64_t i = 0; i < n; i++) {
        kvr_db_ptable_row *rows = NULL;
        int64_t nr = 0;
        if (kvr_db_ptable_rows_get(db, t[i].id, &rows, &nr, &err) != KVR_OK) {
            fprintf(stderr, "kvr-db: tables: %s\n", err.msg);
            rc = 1;
            break;
        }
        kvr_db_free(rows);
        if (o->json) {
            printf("%s{\"id\":%lld,\"run_id\":%lld,\"ts_utc\":", i ? "," : "", (long long)t[i].id,
                   (long long)t[i].run_id);
            kvr_json_write_str(stdout, t[i].ts_utc);
            printf(",\"granularity\":%d,\"rows\":%lld,\"links\":", t[i].granularity,
                   (long long)nr);
            kvr_json_write_str(stdout, t[i].links);
            printf(",\"source\":");
            kvr_json_write_str(stdout, t[i].source);
            printf(",\"git_commit\":");
            kvr_json_write_str(stdout, t[i].git_commit);
            printf("}");
        } else {
            printf("%5lld %5lld %-20.20s %5d %5lld %-28.28s %-36.36s %s\n", (long long)t[i].id,
                   (long long)t[i].run_id, t[i].ts_utc, t[i].granularity, (long long)nr,
                   t[i].links, t[i].source, t[i].git_commit);
        }
    }
    if (o->json) printf("]\n");
    kvr_db_ptables_free(t, n);
    return rc;
}

static int cmd_table(kvr_db *db, int64_t id, const kvr_db_opts *o) {
    kvr_error err;
    kvr_db_ptable_row *rows = NULL;
    int64_t n = 0;
    if (kvr_db_ptable_rows_get(db, id, &rows, &n, &err) != KVR_OK) {
        fprintf(stderr, "kvr-db: table: %s\n", err.msg);
        return 1;
    }
    kvr_db_ptable t;
    const kvr_db_ptable *me = &t;
    kvr_status st = kvr_db_ptable_get(db, id, &t, &err);
    if (st == KVR_ERR_NOT_FOUND) {
        me = NULL;
    } else if (st != KVR_OK) {
        fprintf(stderr, "kvr-db: table: %s\n", err.msg);
        kvr_db_free(rows);
        return 1;
    }
    if (o->json) {
        fputs(me && me->json[0] ? me->json : "{}", stdout);
        if (me && me->json[0] && me->json[strlen(me->json) - 1] != '\n') fputc('\n', stdout);
    } else {
        if (me)
            printf("# table %lld: run %lld, %s; links %s; granularity %d; %s (kvr %s, %s)\n",
                   (long long)id, (long long)me->run_id, me->source, me->links, me->granularity,
                   me->ts_utc, me->kvr_version, me->git_commit);
        printf("%5s %8s", "ranks", "context");
        for (int k = 0; k < KVR_STRATEGY_COUNT; k++) printf(" %10s", kvr_strategy_name(k));
        printf(" %-7s %9s %s\n", "best", "search", "partition");
        printf("%5s %8s %10s %10s %10s %10s %10s %-7s %9s %s\n", "", "(tokens)", "(ms)", "(ms)",
               "(ms)", "(ms)", "(ms)", "", "(ms)", "(tokens per rank)");
        for (int64_t i = 0; i < n; i++) {
            const kvr_db_ptable_row *r = &rows[i];
            printf("%5d %8lld", r->n_ranks, (long long)r->context);
            for (int k = 0; k < KVR_STRATEGY_COUNT; k++) opt_num(r->ttft_ms[k], 10, 2);
            printf(" %-7s", r->best);
            opt_num(r->search_ms, 9, 3);
            printf(" %s\n", r->partition);
        }
    }
    if (me) kvr_db_free(t.json);
    kvr_db_free(rows);
    return 0;
}

static int cmd_fits(kvr_db *db, int64_t run_id, const kvr_db_opts *o) {
    kvr_error err;
    kvr_db_fit *f = NULL;
    int64_t n = 0;
    if (kvr_db_fits_list(db, run_id, &f, &n, &err) != KVR_OK) {
        fprintf(stderr, "kvr-db: fits: %s\n", err.msg);
        return 1;
    }
    if (o->json) printf("[");
    else
        printf("%5s %5s %-12s %-16s %7s %8s %8s %8s %8s %-20s %s\n", "id", "run", "target",
               "form", "samples", "r2", "mape_in", "mape_cv", "max_cv", "created (UTC)",
               "commit");
    for (int64_t i = 0; i < n; i++) {
        if (o->json) {
            printf("%s{\"id\":%lld,\"run_id\":%lld,\"target\":", i ? "," : "", (long long)f[i].id,
                   (long long)f[i].run_id);
            kvr_json_write_str(stdout, f[i].target);
            printf(",\"form\":");
            kvr_json_write_str(stdout, f[i].form);
            printf(",\"n_samples\":%lld", (long long)f[i].n_samples);
            if (isfinite(f[i].r2)) printf(",\"r2\":%.9g", f[i].r2);
            else printf(",\"r2\":null");
            json_opt("mape_in", f[i].mape_in);
            json_opt("mape_cv", f[i].mape_cv);
            json_opt("max_err_cv", f[i].max_err_cv);
            printf(",\"ts_utc\":");
            kvr_json_write_str(stdout, f[i].ts_utc);
            printf(",\"git_commit\":");
            kvr_json_write_str(stdout, f[i].git_commit);
            printf(",\"fit\":%s}", f[i].json[0] ? f[i].json : "null");
        } else {
            printf("%5lld %5lld %-12.12s %-16.16s %7lld %8.4f", (long long)f[i].id,
                   (long long)f[i].run_id, f[i].target, f[i].form, (long long)f[i].n_samples,
                   f[i].r2);
            opt_num(f[i].mape_in, 8, 4);
            opt_num(f[i].mape_cv, 8, 4);
            opt_num(f[i].max_err_cv, 8, 4);
            printf(" %-20.20s %s\n", f[i].ts_utc, f[i].git_commit);
        }
    }
    if (o->json) printf("]\n");
    kvr_db_fits_free(f, n);
    return 0;
}

static int cmd_predictors(kvr_db *db, const kvr_db_opts *o) {
    kvr_error err;
    kvr_db_predictor *p = NULL;
    int64_t n = 0;
    if (kvr_db_predictors_list(db, &p, &n, &err) != KVR_OK) {
        fprintf(stderr, "kvr-db: predictors: %s\n", err.msg);
        return 1;
    }
    if (o->json) printf("[");
    else
        printf("%5s %5s %5s %5s %-12s %9s %9s %9s %-24s %-20s %s\n", "id", "table", "run",
               "ranks", "form", "gap_mean", "gap_max", "err_band", "links", "created (UTC)",
               "commit");
    for (int64_t i = 0; i < n; i++) {
        if (o->json) {
            printf("%s{\"id\":%lld,\"table_id\":%lld,\"run_id\":%lld,\"n_ranks\":%d,\"form\":",
                   i ? "," : "", (long long)p[i].id, (long long)p[i].table_id,
                   (long long)p[i].run_id, p[i].n_ranks);
            kvr_json_write_str(stdout, p[i].form);
            printf(",\"links\":");
            kvr_json_write_str(stdout, p[i].links);
            json_opt("gap_mean", p[i].gap_mean);
            json_opt("gap_max", p[i].gap_max);
            json_opt("err_band", p[i].err_band);
            printf(",\"ts_utc\":");
            kvr_json_write_str(stdout, p[i].ts_utc);
            printf(",\"git_commit\":");
            kvr_json_write_str(stdout, p[i].git_commit);
            printf(",\"predictor\":%s}", p[i].json[0] ? p[i].json : "null");
        } else {
            printf("%5lld %5lld %5lld %5d %-12.12s", (long long)p[i].id, (long long)p[i].table_id,
                   (long long)p[i].run_id, p[i].n_ranks, p[i].form);
            opt_num(p[i].gap_mean, 9, 5);
            opt_num(p[i].gap_max, 9, 5);
            opt_num(p[i].err_band, 9, 5);
            printf(" %-24.24s %-20.20s %s\n", p[i].links, p[i].ts_utc, p[i].git_commit);
        }
    }
    if (o->json) printf("]\n");
    kvr_db_predictors_free(p, n);
    return 0;
}

static int cmd_measured(kvr_db *db, const kvr_db_opts *o) {
    kvr_error err;
    kvr_db_measured_run *m = NULL;
    int64_t n = 0;
    if (kvr_db_measured_runs_list(db, &m, &n, &err) != KVR_OK) {
        fprintf(stderr, "kvr-db: measured: %s\n", err.msg);
        return 1;
    }
    if (o->json) printf("[");
    else
        printf("%5s %-20s %-6s %5s %7s %8s %10s %10s %-8s %5s %5s %s\n", "id", "time (UTC)",
               "mode", "ranks", "threads", "tokens", "ttft", "predicted", "source", "pred",
               "drift", "partition");
    for (int64_t i = 0; i < n; i++) {
        const kvr_db_measured_run *x = &m[i];
        if (o->json) {
            printf("%s{\"id\":%lld,\"ts_utc\":", i ? "," : "", (long long)x->id);
            kvr_json_write_str(stdout, x->ts_utc);
            printf(",\"mode\":");
            kvr_json_write_str(stdout, x->mode);
            printf(",\"n_ranks\":%d,\"n_threads\":%d,\"n_tokens\":%lld,\"partition\":", x->n_ranks,
                   x->n_threads, (long long)x->n_tokens);
            kvr_json_write_str(stdout, x->partition);
            printf(",\"ttft_ms\":%.6g", x->ttft_ms);
            json_opt("predicted_ttft_ms", x->predicted_ttft_ms);
            printf(",\"partition_source\":");
            kvr_json_write_str(stdout, x->partition_source);
            printf(",\"predictor_id\":%lld,\"drift\":%s,\"profile_run_id\":%lld}",
                   (long long)x->predictor_id, x->drift ? "true" : "false",
                   (long long)x->profile_run_id);
        } else {
            printf("%5lld %-20.20s %-6.6s %5d %7d %8lld %10.2f", (long long)x->id, x->ts_utc,
                   x->mode, x->n_ranks, x->n_threads, (long long)x->n_tokens, x->ttft_ms);
            opt_num(x->predicted_ttft_ms, 10, 2);
            printf(" %-8.8s %5lld %5s %s\n", x->partition_source[0] ? x->partition_source : "-",
                   (long long)x->predictor_id, x->drift ? "yes" : "no", x->partition);
        }
    }
    if (o->json) printf("]\n");
    kvr_db_free(m);
    return 0;
}

// serving runs (kvr-serve --db): the list, or one run's requests

static int cmd_serving_list(kvr_db *db, const kvr_db_opts *o) {
    kvr_error err;
    kvr_db_serving_run *r = NULL;
    int64_t n = 0;
    if (kvr_db_serving_runs_list(db, &r, &n, &err) != KVR_OK) {
        fprintf(stderr, "kvr-db: serving: %s\n", err.msg);
        return 1;
    }
    const bool v7 = kvr_db_schema_version(db) >= 7; /* runs stored as they go: an end time */
    if (o->json) printf("[");
    else
        printf("%5s %-20s %-9s %-8s %8s %7s %8s %8s %9s %9s %8s %6s %8s %s\n", "id", "time (UTC)",
               "kind", "policy", "requests", "req/s", "finished", "refused", "ttft_p50",
               "ttft_p90", "tpot_p50", "slo", "pool", "trace");
    for (int64_t i = 0; i < n; i++) {
        const kvr_db_serving_run *x = &r[i];
        if (o->json) {
            printf("%s{\"id\":%lld,\"ts_utc\":", i ? "," : "", (long long)x->id);
            kvr_json_write_str(stdout, x->ts_utc);
            printf(",\"kind\":");
            kvr_json_write_str(stdout, x->kind);
            printf(",\"policy\":");
            kvr_json_write_str(stdout, x->policy);
            printf(",\"trace\":");
            kvr_json_write_str(stdout, x->trace);
            printf(",\"trace_hash\":");
            kvr_json_write_str(stdout, x->trace_hash);
            printf(",\"n_requests\":%lld", (long long)x->n_requests);
            json_opt("rate_per_s", x->rate_per_s);
            printf(",\"pool_blocks\":%lld,\"block_tokens\":%d,\"cost_source\":",
                   (long long)x->pool_blocks, x->block_tokens);
            kvr_json_write_str(stdout, x->cost_source);
            printf(",\"n_finished\":%lld,\"n_refused\":%lld,\"n_preemptions\":%lld",
                   (long long)x->n_finished, (long long)x->n_refused, (long long)x->n_preemptions);
            json_opt("ttft_p50_ms", x->ttft_p50_ms);
            json_opt("ttft_p90_ms", x->ttft_p90_ms);
            json_opt("ttft_p99_ms", x->ttft_p99_ms);
            json_opt("tpot_p50_ms", x->tpot_p50_ms);
            json_opt("queue_p50_ms", x->queue_p50_ms);
            json_opt("slo_attainment", x->slo_attainment);
            json_opt("output_tok_per_s", x->output_tok_per_s);
            printf(",\"git_commit\":");
            kvr_json_write_str(stdout, x->git_commit);
            printf(",\"end_utc\":");
            if (x->end_utc[0] || !v7) kvr_json_write_str(stdout, v7 ? x->end_utc : x->ts_utc);
            else printf("null");
            printf("}");
        } else {
            printf("%5lld %-20.20s %-9.9s %-8.8s %8lld", (long long)x->id, x->ts_utc,
                   x->end_utc[0] || !v7 ? x->kind : "unended", x->policy,
                   (long long)x->n_requests);
            opt_num(x->rate_per_s, 7, 2);
            printf(" %8lld %8lld %9.1f %9.1f %8.2f %6.3f %8lld %s\n", (long long)x->n_finished,
                   (long long)x->n_refused, x->ttft_p50_ms, x->ttft_p90_ms, x->tpot_p50_ms,
                   x->slo_attainment, (long long)x->pool_blocks, x->trace);
        }
    }
    if (o->json) printf("]\n");
    kvr_db_free(r);
    return 0;
}

static void csv_time(double v) {
    if (v < 0) printf(",");
    else printf(",%.9g", v);
}

static int cmd_serving_run(kvr_db *db, int64_t id, const kvr_db_opts *o) {
    kvr_error err;
    kvr_db_serving_run r;
    kvr_db_serving_request *q = NULL;
    int64_t n = 0;
    if (kvr_db_serving_run_get(db, id, &r, &err) != KVR_OK ||
        kvr_db_serving_requests_get(db, id, &q, &n, &err) != KVR_OK) {
        fprintf(stderr, "kvr-db: serving %lld: %s%s\n", (long long)id, err.msg,
                err.code == KVR_ERR_NOT_FOUND ? " (kvr-db serving lists them)" : "");
        return 1;
    }
    if (o->json) {
        printf("{\"id\":%lld,\"kind\":", (long long)r.id);
        kvr_json_write_str(stdout, r.kind);
        printf(",\"policy\":");
        kvr_json_write_str(stdout, r.policy);
        printf(",\"trace\":");
        kvr_json_write_str(stdout, r.trace);
        printf(",\"ended\":%s", kvr_db_schema_version(db) < 7 || r.end_utc[0] ? "true" : "false");
        printf(",\"n_requests\":%lld,\"requests\":[", (long long)r.n_requests);
        for (int64_t i = 0; i < n; i++) {
            const kvr_db_serving_request *x = &q[i];
            printf("%s{\"index\":%lld,\"arrival_s\":%.9g", i ? "," : "", (long long)x->idx,
                   x->arrival_s);
            json_opt("admitted_s", x->admitted_s);
            json_opt("first_token_s", x->first_token_s);
            json_opt("finish_s", x->finish_s);
            printf(",\"prompt_tokens\":%lld,\"output_tokens\":%lld,\"max_blocks\":%lld,"
                   "\"preemptions\":%d,\"refused\":%s}",
                   (long long)x->prompt_tokens, (long long)x->output_tokens,
                   (long long)x->max_blocks, x->preemptions, x->refused ? "true" : "false");
        }
        printf("]}\n");
    } else {
        const bool open = kvr_db_schema_version(db) >= 7 && !r.end_utc[0];
        printf("# serving run %lld: %s, policy %s, trace %s%s\n", (long long)r.id, r.kind, r.policy,
               r.trace, open ? "; no end time (still running, or killed): the requests it stored "
                               "as they finished, no summary" : "");
        printf("request,arrival_s,prompt_tokens,output_tokens,refused,admitted_s,first_token_s,"
               "finish_s,max_blocks,preemptions\n");
        for (int64_t i = 0; i < n; i++) {
            const kvr_db_serving_request *x = &q[i];
            printf("%lld,%.9g,%lld,%lld,%d", (long long)x->idx, x->arrival_s,
                   (long long)x->prompt_tokens, (long long)x->output_tokens, x->refused ? 1 : 0);
            csv_time(x->admitted_s);
            csv_time(x->first_token_s);
            csv_time(x->finish_s);
            printf(",%lld,%d\n", (long long)x->max_blocks, x->preemptions);
        }
    }
    kvr_db_free(q);
    return 0;
}

// ----------------------------------------------------------------------------

int main(int argc, char **argv) {
    kvr_db_opts o = {.db = "kvr.db", .format = "csv"};
    static const struct option lo[] = {
        {"db", required_argument, 0, 'd'},     {"format", required_argument, 0, 'f'},
        {"output", required_argument, 0, 'o'}, {"set", required_argument, 0, 's'},
        {"json", no_argument, 0, 'j'},         {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":d:f:o:s:jh", lo, NULL)) != -1) {
        switch (ch) {
            case 'd': o.db = optarg; break;
            case 'f':
                if (strcmp(optarg, "csv") && strcmp(optarg, "json"))
                    return usage_error("--format: unknown format '%s' (csv, json)", optarg);
                o.format = optarg;
                break;
            case 'o': o.output = optarg; break;
            case 's': {
                const char *eq = strchr(optarg, '=');
                if (!eq || eq == optarg || strchr(optarg, '\n'))
                    return usage_error("--set: '%s' is not KEY=VALUE", optarg);
                if (o.n_sets >= MAX_SETS) return usage_error("--set: more than %d", MAX_SETS);
                o.sets[o.n_sets++] = optarg;
                break;
            }
            case 'j': o.json = true; break;
            case 'h': usage(stdout); return 0;
            case ':': return usage_error("option %s needs a value", argv[optind - 1]);
            default: return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
#define KVR_DB_COMMANDS "list, show, export, import, delete, check, ttft, tables, table, fits, predictors, measured, serving"
    if (optind >= argc) return usage_error("no command (" KVR_DB_COMMANDS ")");
    const char *cmd = argv[optind];
    char **args = argv + optind + 1;
    const int n_args = argc - optind - 1;
    struct {
        const char *name;
        int min_args, max_args;
        bool write;
    } const cmds[] = {{"list", 0, 0, false},   {"show", 1, 1, false},   {"export", 1, 1, false},
                      {"import", 1, 1, true},  {"delete", 1, 1, true},  {"check", 0, 0, false},
                      {"ttft", 2, 1000, false}, {"tables", 0, 0, false}, {"table", 1, 1, false},
                      {"fits", 0, 1, false},    {"predictors", 0, 0, false},
                      {"measured", 0, 0, false}, {"serving", 0, 1, false}};
    int which = -1;
    for (int i = 0; i < (int)(sizeof cmds / sizeof cmds[0]); i++)
        if (!strcmp(cmd, cmds[i].name)) which = i;
    if (which < 0)
        return usage_error("unknown command '%s' (" KVR_DB_COMMANDS ")", cmd);
    if (n_args < cmds[which].min_args || n_args > cmds[which].max_args)
        return usage_error("%s: %s", cmd, which == 9 ? "takes at most one RUN id"
                                          : which == 12 ? "takes at most one serving run id"
                                          : which == 8 ? "needs one table ID"
                                          : cmds[which].min_args == 0 ? "takes no arguments"
                                          : which == 6 ? "needs RUN and at least one context"
                                          : which == 3 ? "needs one FILE (or - for stdin)"
                                                       : "needs one RUN id");
    if (o.n_sets && which != 3) return usage_error("--set applies to import");
    for (int i = 0; i < o.n_sets; i++) { /* the import would take "zz.yy:" for a comment */
        const char *kv = o.sets[i];
        if (strncmp(kv, "model.", 6) && strncmp(kv, "device.", 7) && strncmp(kv, "run.", 4))
            return usage_error("--set: unknown key '%.*s' (model.*, device.* or run.*; see "
                               "docs/db.md)",
                               (int)(strchr(kv, '=') - kv), kv);
    }
    if (o.output && which != 2) return usage_error("--output applies to export");
    if (o.output) { /* before the store is opened: never overwrite it */
        const kvr_path_role in[] = {{"--db", o.db}};
        kvr_error e;
        if (kvr_output_check("--output", o.output, in, 1, &e) != KVR_OK)
            return usage_error("export: %s", e.msg);
    }
    int64_t id = 0;
    if (n_args > 0 && which != 3) {
        int rc = parse_run_id(args[0], &id);
        if (rc) return rc;
    }
    kvr_db *db = NULL;
    kvr_error err;
    if (open_db(o.db, cmds[which].write, which == 3, &db, &err) != KVR_OK) {
        fprintf(stderr, "kvr-db: --db %s: %s\n", o.db, err.msg);
        return 1;
    }
    int rc = 0;
    switch (which) {
        case 0: rc = cmd_list(db, &o); break;
        case 1: rc = cmd_show(db, id, &o); break;
        case 2: rc = cmd_export(db, id, &o); break;
        case 3: rc = cmd_import(db, args[0], &o); break;
        case 4: rc = cmd_delete(db, id); break;
        case 5: rc = cmd_check(db); break;
        case 6: rc = cmd_ttft(db, id, args + 1, n_args - 1, &o); break;
        case 7: rc = cmd_tables(db, &o); break;
        case 8: rc = cmd_table(db, id, &o); break;
        case 9: rc = cmd_fits(db, id, &o); break;
        case 10: rc = cmd_predictors(db, &o); break;
        case 11: rc = cmd_measured(db, &o); break;
        default: rc = id ? cmd_serving_run(db, id, &o) : cmd_serving_list(db, &o); break;
    }
    kvr_db_close(db);
    return rc;
}
