/* kvr_report.c -- kvr-report: the regression report of a store as one self-contained HTML page
 * (every plot an inline SVG drawn by gnuplot, run here as a subprocess) plus a Markdown summary:
 * cost-model fits with statistics and residuals, predicted vs measured TTFT with the error band
 * and drift, TTFT vs context per strategy and rank count, partition fractions vs context,
 * per-rank timelines (docs/report.md).
 *
 * Build: cmake -B build && cmake --build build      Run: build/tools/kvr-report --help
 *   build/tools/kvr-report                       # ./kvr.db -> report.html + report.md
 *   build/tools/kvr-report --db runs.db -o out/report.html --title "A100 runs"
 * Exit codes: 0 ok, 1 runtime failure (no store, gnuplot missing or failing, cannot write),
 * 2 usage error.
 */
#include "kvr_report.h"
#include "tool_util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct kvr_report_opts {
    const char *db, *output, *md, *title, *gnuplot, *keep;
    double gnuplot_timeout_s;
    int timeline_ranks;
    int64_t timeline_context;
    bool json, no_md;
} kvr_report_opts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: kvr-report [options]\n"
            "The regression report of a kvr store: one self-contained HTML page with inline SVG\n"
            "plots (gnuplot) and a Markdown summary.\n"
            "  -d, --db PATH             the store (default ./kvr.db)\n"
            "  -o, --output FILE         the HTML page (default report.html)\n"
            "  -m, --md FILE             the Markdown summary (default: FILE with .md)\n"
            "  -M, --no-md               no Markdown summary\n"
            "  -t, --title TEXT          page title (default \"kvr report\")\n"
            "  -r, --timeline-ranks N    timelines for N ranks (default: the largest predictor's)\n"
            "  -c, --timeline-context N  timelines at N tokens (default: the largest measured)\n"
            "  -g, --gnuplot PATH        the gnuplot binary (default gnuplot, from PATH)\n"
            "  -T, --gnuplot-timeout S   seconds one plot may take before gnuplot is killed\n"
            "                            (default 60)\n"
            "  -k, --keep-scripts DIR    also write each plot's gnuplot script and SVG into DIR\n"
            "  -j, --json                print a JSON summary instead of text\n"
            "  -h, --help                this help\n"
            "Exit: 0 ok, 1 runtime failure (store, gnuplot, writing), 2 usage error.\n");
}

#define usage_error(...) tool_usage_error("kvr-report", __VA_ARGS__)

// ----------------------------------------------------------------------------
// gnuplot as a subprocess

typedef struct plotter {
    const char *gnuplot;
    const char *keep;
    double timeout_s; /* each gnuplot run */
    char dir[256];    /* scratch directory */
} plotter;

/* What a signal handler must clean up: the running renderer's process group and the scratch
 * files of the plot in flight (the only ones that exist: each plot removes its own). Static
 * buffers, so the handler needs nothing but async-signal-safe calls. */
static volatile sig_atomic_t g_child_pgid;
static char g_scratch_dir[256], g_scratch[3][600];
static volatile sig_atomic_t g_scratch_n;
static const int g_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

static void scratch_cleanup(void) {
    for (int i = 0; i < g_scratch_n; i++) unlink(g_scratch[i]);
    g_scratch_n = 0;
    if (g_scratch_dir[0]) rmdir(g_scratch_dir);
}

static void on_signal(int sig) {
    if (g_child_pgid > 0) kill(-(pid_t)g_child_pgid, SIGKILL);
    scratch_cleanup();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void handlers(bool on) {
    for (size_t i = 0; i < sizeof g_signals / sizeof g_signals[0]; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on ? on_signal : SIG_DFL;
        sigemptyset(&sa.sa_mask);
        sigaction(g_signals[i], &sa, NULL);
    }
}

/* Run argv[0] with stdin /dev/null and stdout/stderr into the files out and errf, in its own
 * process group, killed with this process (PR_SET_PDEATHSIG), its output files capped at
 * KVR_REPORT_MAX_SVG bytes; the whole group is killed after timeout_s seconds. *status is
 * waitpid's; returns 0, or -1 with errno (fork), or -2 on the timeout. */
#define KVR_REPORT_MAX_SVG ((rlim_t)64 << 20)
static int run_child(char *const argv[], const char *out, const char *errf, double timeout_s,
                     int *status) {
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(126); /* the parent died before the line above */
        for (size_t i = 0; i < sizeof g_signals / sizeof g_signals[0]; i++)
            signal(g_signals[i], SIG_DFL);
        struct rlimit rl = {KVR_REPORT_MAX_SVG, KVR_REPORT_MAX_SVG};
        setrlimit(RLIMIT_FSIZE, &rl);
        int in = open("/dev/null", O_RDONLY);
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || o < 0 || e < 0 || dup2(in, STDIN_FILENO) < 0 || dup2(o, STDOUT_FILENO) < 0 ||
            dup2(e, STDERR_FILENO) < 0)
            _exit(127);
        execvp(argv[0], argv);
        _exit(127);
    }
    setpgid(pid, pid); /* also here: no window where the group does not exist yet */
    g_child_pgid = pid;
    const double t0 = kvr_time_us();
    int rc = 0;
    for (;;) {
        pid_t w = waitpid(pid, status, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) break;
        if ((kvr_time_us() - t0) * 1e-6 > timeout_s) {
            kill(-pid, SIGKILL);
            while (waitpid(pid, status, 0) < 0 && errno == EINTR) {}
            rc = -2;
            break;
        }
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(-pid, SIGKILL); /* anything it left behind in its group */
    g_child_pgid = 0;
    return rc;
}

static bool write_all(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    size_t n = strlen(text);
    bool ok = fwrite(text, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static kvr_status run_gnuplot(void *user, const char *name, const char *script, char **svg,
                              kvr_error *err) {
    plotter *P = user;
    char gp[512], out[512], errf[512];
    snprintf(gp, sizeof gp, "%s/%s.gp", P->dir, name);
    snprintf(out, sizeof out, "%s/%s.svg", P->dir, name);
    snprintf(errf, sizeof errf, "%s/%s.err", P->dir, name);
    snprintf(g_scratch[0], sizeof g_scratch[0], "%s", gp);
    snprintf(g_scratch[1], sizeof g_scratch[1], "%s", out);
    snprintf(g_scratch[2], sizeof g_scratch[2], "%s", errf);
    g_scratch_n = 3;
    kvr_status st = KVR_OK;
    char *text = NULL;
    if (!write_all(gp, script)) {
        st = kvr_error_set(err, KVR_ERR_IO, "%s: %s", gp, strerror(errno));
        goto done;
    }
    char prog[512];
    snprintf(prog, sizeof prog, "%s", P->gnuplot);
    char *argv[] = {prog, gp, NULL};
    int status = 0;
    int rc = run_child(argv, out, errf, P->timeout_s, &status);
    if (rc == -1) {
        st = kvr_error_set(err, KVR_ERR_INTERNAL, "cannot start %s: %s", P->gnuplot,
                           strerror(errno));
        goto done;
    }
    if (rc == -2) {
        st = kvr_error_set(err, KVR_ERR_INTERNAL,
                           "%s did not finish %s within %g s (killed; --gnuplot-timeout)",
                           P->gnuplot, gp, P->timeout_s);
        goto done;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char *msg = NULL;
        size_t msg_len;
        kvr_read_file(errf, 0, &msg, &msg_len, NULL);
        char first[200] = "";
        if (msg) {
            /* the last non-empty line says what went wrong */
            char *line = NULL, *save = NULL;
            for (char *t = strtok_r(msg, "\n", &save); t; t = strtok_r(NULL, "\n", &save))
                if (strspn(t, " \t^") != strlen(t)) line = t;
            if (line) snprintf(first, sizeof first, "%s", line);
        }
        free(msg);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
            st = kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                               "cannot run %s (install gnuplot: Debian package gnuplot-nox, "
                               "scripts/deps)",
                               P->gnuplot);
        else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGXFSZ)
            st = kvr_error_set(err, KVR_ERR_INTERNAL,
                               "%s wrote more than %d MiB for %s (killed): not an SVG", P->gnuplot,
                               (int)(KVR_REPORT_MAX_SVG >> 20), gp);
        else if (WIFSIGNALED(status))
            st = kvr_error_set(err, KVR_ERR_INTERNAL, "%s was killed by signal %d on %s",
                               P->gnuplot, WTERMSIG(status), gp);
        else
            st = kvr_error_set(err, KVR_ERR_INTERNAL, "%s failed on %s (exit %d): %s",
                               P->gnuplot, gp, WEXITSTATUS(status), first);
        goto done;
    }
    size_t len = 0;
    if (kvr_read_file(out, 0, &text, &len, NULL) != KVR_OK || len == 0) {
        st = kvr_error_set(err, KVR_ERR_INTERNAL, "%s wrote no SVG for %s", P->gnuplot, gp);
        goto done;
    }
    if (P->keep) {
        char k1[600], k2[600];
        snprintf(k1, sizeof k1, "%s/%s.gp", P->keep, name);
        snprintf(k2, sizeof k2, "%s/%s.svg", P->keep, name);
        if (kvr_write_file_atomic(k1, script, strlen(script), err) != KVR_OK ||
            kvr_write_file_atomic(k2, text, len, err) != KVR_OK) {
            st = kvr_error_prefix(err, "--keep-scripts %s", P->keep);
            goto done;
        }
    }
done:
    unlink(gp);
    unlink(out);
    unlink(errf);
    g_scratch_n = 0;
    if (st == KVR_OK)
        *svg = text;
    else
        free(text);
    return st;
}

// ----------------------------------------------------------------------------

int main(int argc, char **argv) {
    kvr_report_opts o;
    memset(&o, 0, sizeof o);
    o.db = "kvr.db";
    o.output = "report.html";
    o.title = "kvr report";
    o.gnuplot = "gnuplot";
    o.gnuplot_timeout_s = 60;
    static const struct option lo[] = {
        {"db", required_argument, 0, 'd'},       {"output", required_argument, 0, 'o'},
        {"md", required_argument, 0, 'm'},       {"no-md", no_argument, 0, 'M'},
        {"title", required_argument, 0, 't'},    {"timeline-ranks", required_argument, 0, 'r'},
        {"timeline-context", required_argument, 0, 'c'},
        {"gnuplot", required_argument, 0, 'g'},  {"keep-scripts", required_argument, 0, 'k'},
        {"gnuplot-timeout", required_argument, 0, 'T'},
        {"json", no_argument, 0, 'j'},           {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":d:o:m:Mt:r:c:g:T:k:jh", lo, NULL)) != -1) {
        int64_t v;
        kvr_error e;
        switch (ch) {
            case 'd': o.db = optarg; break;
            case 'o': o.output = optarg; break;
            case 'm': o.md = optarg; break;
            case 'M': o.no_md = true; break;
            case 't': o.title = optarg; break;
            case 'r':
                if (kvr_parse_i64(optarg, 2, KVR_MAX_RANKS, &v, &e) != KVR_OK)
                    return usage_error("--timeline-ranks: %s", e.msg);
                o.timeline_ranks = (int)v;
                break;
            case 'c':
                if (kvr_parse_i64(optarg, 1, (int64_t)1 << 30, &v, &e) != KVR_OK)
                    return usage_error("--timeline-context: %s", e.msg);
                o.timeline_context = v;
                break;
            case 'g': o.gnuplot = optarg; break;
            case 'T':
                if (kvr_parse_i64(optarg, 1, 86400, &v, &e) != KVR_OK)
                    return usage_error("--gnuplot-timeout: %s", e.msg);
                o.gnuplot_timeout_s = (double)v;
                break;
            case 'k': o.keep = optarg; break;
            case 'j': o.json = true; break;
            case 'h': usage(stdout); return 0;
            case ':': return usage_error("%s needs a value", argv[optind - 1]);
            default: return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
    if (o.md && o.no_md) return usage_error("give --md or --no-md, not both");
    char mdpath[1024];
    if (!o.no_md && !o.md) {
        size_t n = strlen(o.output);
        const char *dot = strrchr(o.output, '.');
        const char *slash = strrchr(o.output, '/');
        if (dot && (!slash || dot > slash)) n = (size_t)(dot - o.output);
        snprintf(mdpath, sizeof mdpath, "%.*s.md", (int)n, o.output);
        o.md = mdpath;
    }
    { /* no output may overwrite the store (kvr_output_check: device + inode) */
        const kvr_path_role in[] = {{"--db", o.db}};
        kvr_error e;
        if (kvr_output_check("--output", o.output, in, 1, &e) != KVR_OK ||
            (o.md && kvr_output_check("--md", o.md, in, 1, &e) != KVR_OK))
            return usage_error("%s", e.msg);
        if (o.md && (!strcmp(o.md, o.output) || kvr_path_same_file(o.md, o.output)))
            return usage_error("--md %s is the same file as --output", o.md);
    }
    if (o.keep && mkdir(o.keep, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "kvr-report: --keep-scripts %s: %s\n", o.keep, strerror(errno));
        return 1;
    }

    kvr_error err;
    kvr_db *db = NULL;
    kvr_db_open_params p = kvr_db_open_params_default();
    p.read_only = true;
    if (kvr_db_open(o.db, &p, &db, &err) != KVR_OK) {
        fprintf(stderr, "kvr-report: --db %s: %s\n", o.db, err.msg);
        return 1;
    }
    plotter P = {o.gnuplot, o.keep, o.gnuplot_timeout_s, ""};
    const char *tmp = getenv("TMPDIR");
    snprintf(P.dir, sizeof P.dir, "%s/kvr-report-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(P.dir)) {
        fprintf(stderr, "kvr-report: cannot create a scratch directory %s: %s\n", P.dir,
                strerror(errno));
        kvr_db_close(db);
        return 1;
    }
    snprintf(g_scratch_dir, sizeof g_scratch_dir, "%s", P.dir);
    handlers(true); /* a signal kills the renderer's group and removes the scratch files */
    kvr_report_options ro = kvr_report_options_default();
    ro.title = o.title;
    ro.timeline_ranks = o.timeline_ranks;
    ro.timeline_context = o.timeline_context;
    char *html = NULL, *md = NULL;
    kvr_report_summary sum;
    double t0 = kvr_time_us();
    kvr_status st = kvr_report_build(db, &ro, run_gnuplot, &P, &html, o.no_md ? NULL : &md, &sum,
                                     &err);
    kvr_db_close(db);
    scratch_cleanup(); /* the directory goes, whatever happened */
    handlers(false);   /* the output writer's own clean-up takes over */
    if (st != KVR_OK) {
        fprintf(stderr, "kvr-report: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    if (kvr_write_file_atomic(o.output, html, strlen(html), &err) != KVR_OK) {
        fprintf(stderr, "kvr-report: --output %s: %s\n", o.output, err.msg);
        rc = 1;
    }
    if (!rc && md && kvr_write_file_atomic(o.md, md, strlen(md), &err) != KVR_OK) {
        fprintf(stderr, "kvr-report: --md %s: %s\n", o.md, err.msg);
        rc = 1;
    }
    const double secs = (kvr_time_us() - t0) * 1e-6;
    if (!rc && o.json) {
        printf("{\"html\":"); /* paths escaped: any bytes stay valid JSON and UTF-8 */
        kvr_json_write_str(stdout, o.output);
        printf(",\"md\":");
        if (md)
            kvr_json_write_str(stdout, o.md);
        else
            printf("null");
        printf(",\"plots\":%d,\"fit_rows\":%d,\"cost_models\":%d,\"tables\":%d,"
               "\"predictors\":%d,\"measured\":%d,\"predicted\":%d,\"drift\":%d,"
               "\"serving_runs\":%d,\"serving_traces\":%d,\"seconds\":%.2f}\n",
               sum.n_plots, sum.n_fits, sum.n_cost_models, sum.n_tables, sum.n_predictors,
               sum.n_measured, sum.n_predicted, sum.n_drift, sum.n_serving_runs,
               sum.n_serving_traces, secs);
    } else if (!rc) {
        printf("# kvr-report %s (%s): %s%s%s: %d plots; %d cost model(s), %d partition table(s), "
               "%d predictor(s), %d measured run(s) (%d with a prediction, %d drift), %d serving "
               "run(s) of %d trace(s) in %.1f s\n",
               kvr_version(), kvr_build_commit(), o.output, md ? " + " : "", md ? o.md : "",
               sum.n_plots, sum.n_cost_models, sum.n_tables, sum.n_predictors, sum.n_measured,
               sum.n_predicted, sum.n_drift, sum.n_serving_runs, sum.n_serving_traces, secs);
    }
    free(html);
    free(md);
    return rc;
}
