/* report.c -- the regression report behind kvr-report: one self-contained HTML page (and a
 * Markdown summary) from the store -- cost-model fit tables with their statistics, residuals,
 * predicted vs measured TTFT with the error band, TTFT vs context per strategy and rank count,
 * KVR-S and KVR-P partition fractions vs context, per-rank timelines from the search
 * module's simulators under the fitted costs, and serving runs (TTFT/TPOT CDFs simulated and
 * measured, queue time vs prompt length, pool occupancy, TTFT vs arrival rate).
 *
 * Plots are gnuplot scripts (data inline as datablocks, SVG terminal) handed to a caller-supplied
 * renderer (kvr-report runs gnuplot as a subprocess); the SVG it returns is embedded inline.
 * This file only builds text: it never prints, spawns or touches files. */
#include "kvr_report.h"
#include "kvr_kvrp.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// ----------------------------------------------------------------------------
// text: the page and the plot scripts grow in kvr_text buffers (kvr_common.h)

static void rb_add(kvr_text *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rb_add(kvr_text *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    kvr_text_vprintf(b, fmt, ap);
    va_end(ap);
}

/* Text with &, <, >, " escaped for HTML. */
static void rb_html(kvr_text *b, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
            case '&': rb_add(b, "&amp;"); break;
            case '<': rb_add(b, "&lt;"); break;
            case '>': rb_add(b, "&gt;"); break;
            case '"': rb_add(b, "&quot;"); break;
            default: rb_add(b, "%c", *s);
        }
    }
}

/* Text for a Markdown table cell (| escaped, newlines as spaces). */
static void rb_md(kvr_text *b, const char *s) {
    for (; s && *s; s++) {
        if (*s == '|')
            rb_add(b, "\\|");
        else if (*s == '\n' || *s == '\r')
            rb_add(b, " ");
        else
            rb_add(b, "%c", *s);
    }
}

/* A gnuplot single-quoted string (quotes doubled). */
static void rb_gp(kvr_text *b, const char *s) {
    rb_add(b, "'");
    for (; s && *s; s++) {
        if (*s == '\'')
            rb_add(b, "''");
        else if ((unsigned char)*s >= 0x20)
            rb_add(b, "%c", *s);
    }
    rb_add(b, "'");
}

// ----------------------------------------------------------------------------
// what the store holds

typedef struct rep_costs {
    int64_t id;          /* the "costs" fit row */
    kvr_predict_run_fit rf;
    char ts[32];
} rep_costs;

typedef struct rep_pred {
    kvr_db_predictor row;
    kvr_predictor *kp; /* parsed */
} rep_pred;

typedef struct rep {
    kvr_db *db;
    kvr_report_options opt;
    kvr_report_plot_fn plot;
    void *user;
    kvr_error *err;
    kvr_db_fit *fits;
    int64_t n_fits;
    rep_costs *costs; /* oldest first */
    int n_costs;
    kvr_db_ptable *tabs;
    int64_t n_tabs;
    kvr_db_ptable_row *rows; /* of the newest table */
    int64_t n_rows;
    const kvr_db_ptable *tab; /* the newest table */
    kvr_db_predictor *preds;
    int64_t n_preds;
    rep_pred latest[16]; /* newest predictor per rank count */
    int n_latest;
    kvr_db_measured_run *meas;
    int64_t n_meas;
    kvr_db_layer_sample *samples; /* of the newest cost model's run */
    int64_t n_samples;
    kvr_db_serving_run *srv; /* serving runs that ended, oldest first */
    int64_t n_srv;
    int64_t n_srv_open; /* runs without an end time (running, or killed): left out */
    kvr_text html, md;
    kvr_report_summary sum;
    int fig;
} rep;

static const rep_costs *rep_newest(const rep *r) {
    return r->n_costs ? &r->costs[r->n_costs - 1] : NULL;
}

/* The band the newest cost model gives (< 0: none). */
static double rep_band(const rep *r) {
    const rep_costs *c = rep_newest(r);
    return c ? c->rf.err_band : -1;
}

/* The categories of measured runs, as the plots list them: a mode, kvr split by where its
 * partition came from (kvr-p: KVR-P, kvr-e: even, kvr: given). */
static const char *const rep_cats[] = {"single", "kvr-e", "kvr-p", "kvr", "tsp", "ring"};
#define REP_N_CATS ((int)(sizeof rep_cats / sizeof rep_cats[0]))

/* The category of a measured run: single, kvr-e, kvr-p, kvr (explicit), tsp, ring. */
static const char *rep_category(const kvr_db_measured_run *m) {
    if (strcmp(m->mode, "kvr") == 0) {
        if (strcmp(m->partition_source, "auto") == 0) return "kvr-p";
        if (strcmp(m->partition_source, "even") == 0) return "kvr-e";
        return "kvr";
    }
    return m->mode;
}

static kvr_status rep_load(rep *r) {
    kvr_error *err = r->err;
    KVR_TRY(kvr_db_fits_list(r->db, 0, &r->fits, &r->n_fits, err));
    r->costs = calloc((size_t)(r->n_fits ? r->n_fits : 1), sizeof *r->costs);
    if (!r->costs) return kvr_error_set(err, KVR_ERR_NOMEM, "report: out of memory");
    for (int64_t i = 0; i < r->n_fits; i++) {
        const kvr_db_fit *f = &r->fits[i];
        if (strcmp(f->target, "costs") != 0 || !f->json) continue;
        rep_costs *c = &r->costs[r->n_costs];
        char name[64];
        snprintf(name, sizeof name, "fit %lld", (long long)f->id);
        if (kvr_predict_run_fit_from_json(f->json, strlen(f->json), name, &c->rf, err) != KVR_OK)
            return err ? err->code : KVR_ERR_FORMAT;
        c->id = f->id;
        snprintf(c->ts, sizeof c->ts, "%s", f->ts_utc);
        r->n_costs++;
    }
    KVR_TRY(kvr_db_ptables_list(r->db, &r->tabs, &r->n_tabs, err));
    if (r->n_tabs > 0) {
        r->tab = &r->tabs[r->n_tabs - 1];
        KVR_TRY(kvr_db_ptable_rows_get(r->db, r->tab->id, &r->rows, &r->n_rows, err));
    }
    KVR_TRY(kvr_db_predictors_list(r->db, &r->preds, &r->n_preds, err));
    for (int64_t i = r->n_preds - 1; i >= 0; i--) {
        const kvr_db_predictor *p = &r->preds[i];
        bool seen = false;
        for (int k = 0; k < r->n_latest; k++) seen = seen || r->latest[k].row.n_ranks == p->n_ranks;
        if (seen || r->n_latest == 16 || !p->json) continue;
        rep_pred *lp = &r->latest[r->n_latest];
        char name[64];
        snprintf(name, sizeof name, "predictor %lld", (long long)p->id);
        if (kvr_predictor_file_parse(p->json, strlen(p->json), name, &lp->kp, NULL, NULL, err) !=
            KVR_OK)
            return err ? err->code : KVR_ERR_FORMAT;
        lp->row = *p;
        lp->row.json = NULL;
        r->n_latest++;
    }
    KVR_TRY(kvr_db_measured_runs_list(r->db, &r->meas, &r->n_meas, err));
    KVR_TRY(kvr_db_serving_runs_list(r->db, &r->srv, &r->n_srv, err));
    if (kvr_db_schema_version(r->db) >= 7) { /* end_utc: a run without one has no summary */
        int64_t k = 0;
        for (int64_t i = 0; i < r->n_srv; i++)
            if (r->srv[i].end_utc[0]) r->srv[k++] = r->srv[i];
        r->n_srv_open = r->n_srv - k;
        r->n_srv = k;
    }
    const rep_costs *c = rep_newest(r);
    if (c && c->rf.run_id > 0) {
        kvr_error e2;
        if (kvr_db_layer_samples_get(r->db, c->rf.run_id, &r->samples, &r->n_samples, &e2) !=
            KVR_OK) {
            r->samples = NULL;
            r->n_samples = 0;
        }
    }
    return KVR_OK;
}

static void rep_free(rep *r) {
    kvr_db_fits_free(r->fits, r->n_fits);
    for (int i = 0; i < r->n_costs; i++) kvr_predict_run_fit_free(&r->costs[i].rf);
    free(r->costs);
    kvr_db_ptables_free(r->tabs, r->n_tabs);
    kvr_db_free(r->rows);
    kvr_db_predictors_free(r->preds, r->n_preds);
    for (int i = 0; i < r->n_latest; i++) kvr_predictor_destroy(r->latest[i].kp);
    kvr_db_free(r->meas);
    kvr_db_free(r->samples);
    kvr_db_free(r->srv);
    kvr_text_free(&r->html);
    kvr_text_free(&r->md);
}

// ----------------------------------------------------------------------------
// plots

static const char *const rep_colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                         "#8c564b", "#e377c2", "#7f7f7f", "#17becf", "#bcbd22"};

static void gp_head(kvr_text *g, const rep *r, int height, const char *title, const char *xlabel,
                    const char *ylabel) {
    rb_add(g, "set terminal svg size %d,%d dynamic enhanced font 'Helvetica,12' "
              "background rgb 'white'\n",
           r->opt.width, height);
    rb_add(g, "set encoding utf8\nset title ");
    rb_gp(g, title);
    rb_add(g, "\nset xlabel ");
    rb_gp(g, xlabel);
    rb_add(g, "\nset ylabel ");
    rb_gp(g, ylabel);
    rb_add(g, "\nset grid lc rgb '#dddddd'\nset key outside right top box opaque\n"
              "set border lc rgb '#555555'\n");
}

/* Render a script through the caller and embed the SVG as a figure. */
static kvr_status rep_figure(rep *r, const char *name, const char *caption, kvr_text *script) {
    if (script->nomem) return kvr_error_set(r->err, KVR_ERR_NOMEM, "report: out of memory");
    char *svg = NULL;
    kvr_status st = r->plot(r->user, name, script->s, &svg, r->err);
    if (st != KVR_OK) return kvr_error_prefix(r->err, "plot %s", name);
    /* drop the XML prologue and doctype: the <svg> element goes inline */
    const char *start = svg ? strstr(svg, "<svg") : NULL;
    if (!start) {
        free(svg);
        return kvr_error_set(r->err, KVR_ERR_FORMAT, "plot %s: the renderer returned no <svg>",
                             name);
    }
    r->fig++;
    rb_add(&r->html, "<figure id=\"plot-%s\" class=\"plot\">\n%s\n<figcaption>Figure %d. ", name,
           start, r->fig);
    rb_html(&r->html, caption);
    rb_add(&r->html, "</figcaption>\n</figure>\n");
    free(svg);
    r->sum.n_plots++;
    return KVR_OK;
}

static void rep_note(rep *r, const char *text) {
    rb_add(&r->html, "<p class=\"note\">");
    rb_html(&r->html, text);
    rb_add(&r->html, "</p>\n");
    rb_add(&r->md, "_%s_\n\n", text);
}

// ----------------------------------------------------------------------------
// 1. fits

static const kvr_op rep_ops[] = {KVR_OP_PRE,  KVR_OP_ATTN,  KVR_OP_POST,
                                 KVR_OP_HEAD, KVR_OP_EMBED, KVR_OP_LINK};

static void fmt_pct(char *b, size_t n, double v) {
    if (isfinite(v) && v >= 0)
        snprintf(b, n, "%.2f", 100 * v);
    else
        snprintf(b, n, "–");
}

static void rep_fit_table(rep *r, const rep_costs *c) {
    kvr_text *h = &r->html, *m = &r->md;
    rb_add(h, "<h3>Cost model fit %lld — profile run %lld", (long long)c->id,
           (long long)c->rf.run_id);
    if (c->rf.link_run_id) rb_add(h, ", links from run %lld", (long long)c->rf.link_run_id);
    rb_add(h, "</h3>\n<p>");
    rb_html(h, c->rf.model);
    rb_add(h, " on ");
    rb_html(h, c->rf.device);
    rb_add(h, ", %d thread(s) per rank; stored %s. Relative-error WLS, non-negative "
              "coefficients, 5-fold cross-validation. <b>TTFT error band: %.2f %%</b> ",
           c->rf.n_threads, c->ts, 100 * c->rf.err_band);
    if (c->rf.n_e2e > 0)
        rb_add(h, "(held-out end-to-end error %.2f %% + run-to-run spread %.2f %%, from the "
                  "profile's end-to-end check of %d prompt(s)).</p>\n",
               100 * c->rf.band_e2e, 100 * c->rf.band_spread, c->rf.n_e2e);
    else
        rb_add(h, "(the largest held-out error of one layer's pre + attn + post at the profiled "
                  "chunks ≥ %lld; the profile has no end-to-end check, so no run-to-run "
                  "spread).</p>\n",
               (long long)c->rf.band_min_c);
    rb_add(h, "<table><tr><th>target</th><th>form</th><th>samples</th><th>R²</th>"
              "<th>MAPE in (%%)</th><th>MAPE CV (%%)</th><th>max CV (%%)</th>"
              "<th>coefficients ± standard error</th></tr>\n");
    rb_add(m, "### Cost model fit %lld (profile run %lld%s)\n\n", (long long)c->id,
           (long long)c->rf.run_id, c->rf.link_run_id ? ", with links" : "");
    if (c->rf.n_e2e > 0)
        rb_add(m, "TTFT error band %.2f %% = held-out end-to-end error %.2f %% + run-to-run "
                  "spread %.2f %%; %d thread(s) per rank.\n\n",
               100 * c->rf.err_band, 100 * c->rf.band_e2e, 100 * c->rf.band_spread,
               c->rf.n_threads);
    else
        rb_add(m, "TTFT error band %.2f %% (per-op held-out error only); %d thread(s) per "
                  "rank.\n\n",
               100 * c->rf.err_band, c->rf.n_threads);
    rb_add(m, "| target | form | samples | R² | MAPE in (%%) | MAPE CV (%%) | max CV (%%) | "
              "coefficients |\n|---|---|---:|---:|---:|---:|---:|---|\n");
    for (size_t k = 0; k < sizeof rep_ops / sizeof rep_ops[0]; k++) {
        const kvr_op op = rep_ops[k];
        const kvr_predict_fit *f = kvr_predict_costs_fit(c->rf.costs, op);
        if (!f) continue;
        const char *form =
            op == KVR_OP_HEAD && c->rf.head_constant ? "constant" : kvr_predict_form_name(f->form);
        char r2[32], a[16], b[16], d[16], coef[512] = "";
        if (isfinite(f->lsq.r2))
            snprintf(r2, sizeof r2, "%.5f", f->lsq.r2);
        else
            snprintf(r2, sizeof r2, "–");
        fmt_pct(a, sizeof a, f->cv.mape_in);
        fmt_pct(b, sizeof b, f->cv.k ? f->cv.mape_out : NAN);
        fmt_pct(d, sizeof d, f->cv.k ? f->cv.max_rel_out : NAN);
        size_t len = 0;
        for (int j = 0; j < f->n_coef && len < sizeof coef; j++) {
            len += (size_t)snprintf(coef + len, sizeof coef - len, "%s%.4g", j ? ", " : "",
                                    f->coef[j]);
            if (f->lsq.se[j] > 0 && len < sizeof coef)
                len += (size_t)snprintf(coef + len, sizeof coef - len, " ± %.2g", f->lsq.se[j]);
        }
        for (int j = 0; j < f->n_breaks; j++) {
            len = strlen(coef);
            if (len < sizeof coef)
                snprintf(coef + len, sizeof coef - len, "; break at %.0f", f->breaks[j]);
        }
        rb_add(h,
               "<tr><td>%s</td><td>%s</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td>"
               "<td>%s</td><td class=\"coef\">",
               kvr_op_name(op), form, c->rf.n_samples[op], r2, a, b, d);
        rb_html(h, coef);
        rb_add(h, "</td></tr>\n");
        rb_add(m, "| %s | %s | %d | %s | %s | %s | %s | %s |\n", kvr_op_name(op), form,
               c->rf.n_samples[op], r2, a, b, d, coef);
    }
    rb_add(h, "</table>\n");
    rb_add(m, "\n");
    r->sum.n_cost_models++;
}

static int op_index(const char *name) {
    for (size_t k = 0; k < sizeof rep_ops / sizeof rep_ops[0]; k++)
        if (strcmp(name, kvr_op_name(rep_ops[k])) == 0) return (int)rep_ops[k];
    return -1;
}

/* Fitted curves over the measured medians, and the relative residuals. */
static kvr_status rep_fit_plots(rep *r) {
    const rep_costs *c = rep_newest(r);
    if (!c || r->n_samples == 0) {
        rep_note(r, "No profile samples for the newest cost model (its run was deleted?): no "
                    "residual plots.");
        return KVR_OK;
    }
    kvr_text g = {0};
    gp_head(&g, r, 460, "Per-layer op time: profile medians (points) and fits (lines)",
            "chunk c (tokens)", "time per layer (us)");
    rb_add(&g, "set logscale x 2\nset logscale y 10\nset format y '10^{%%L}'\n");
    const kvr_op show[] = {KVR_OP_PRE, KVR_OP_ATTN, KVR_OP_POST, KVR_OP_EMBED};
    int64_t cmax = 1;
    for (int64_t i = 0; i < r->n_samples; i++) cmax = KVR_MAX(cmax, r->samples[i].c);
    bool any[4] = {false};
    for (int k = 0; k < 4; k++) {
        rb_add(&g, "$m%d << EOD\n", k);
        for (int64_t i = 0; i < r->n_samples; i++) {
            const kvr_db_layer_sample *s = &r->samples[i];
            if (op_index(s->op) != (int)show[k] || !(s->stats.median_us > 0)) continue;
            if (show[k] == KVR_OP_ATTN && s->prefix != 0) continue;
            rb_add(&g, "%lld %.6g\n", (long long)s->c, s->stats.median_us);
            any[k] = true;
        }
        rb_add(&g, "EOD\n$f%d << EOD\n", k);
        const kvr_predict_fit *f = kvr_predict_costs_fit(c->rf.costs, show[k]);
        for (int j = 0; f && j <= 64; j++) {
            double x = exp(log(1.0) + j / 64.0 * log((double)cmax * 2));
            double y = kvr_predict_fit_eval(f, x, 0);
            if (y > 0) rb_add(&g, "%.6g %.6g\n", x, y);
        }
        rb_add(&g, "EOD\n");
    }
    rb_add(&g, "plot ");
    bool first = true;
    for (int k = 0; k < 4; k++) {
        if (!any[k] || !kvr_predict_costs_fit(c->rf.costs, show[k])) continue;
        const char *nm = kvr_op_name(show[k]);
        rb_add(&g,
               "%s$m%d using 1:2 with points pt 7 ps 0.6 lc rgb '%s' title '%s%s', "
               "$f%d using 1:2 with lines lw 2 lc rgb '%s' title '%s fit'",
               first ? "" : ", ", k, rep_colors[k], nm, show[k] == KVR_OP_ATTN ? " (prefix 0)" : "",
               k, rep_colors[k], nm);
        first = false;
    }
    rb_add(&g, "\n");
    kvr_status st = KVR_OK;
    if (!first) {
        char cap[300];
        snprintf(cap, sizeof cap,
                 "Profile run %lld: median time of one execution of each op for one layer, and "
                 "the fitted cost model %lld (attention shown at prefix 0).",
                 (long long)c->rf.run_id, (long long)c->id);
        st = rep_figure(r, "fits", cap, &g);
    }
    kvr_text_free(&g);
    if (st != KVR_OK) return st;

    /* residuals: fit / measured - 1 over every sample */
    gp_head(&g, r, 460, "Relative residuals of the fits (fit / measured - 1)", "chunk c (tokens)",
            "residual (%)");
    rb_add(&g, "set logscale x 2\n");
    const double band = c->rf.err_band;
    rb_add(&g, "set arrow from graph 0, first %.4g to graph 1, first %.4g nohead dt 2 lc rgb "
               "'#888888'\n",
           100 * band, 100 * band);
    rb_add(&g, "set arrow from graph 0, first %.4g to graph 1, first %.4g nohead dt 2 lc rgb "
               "'#888888'\n",
           -100 * band, -100 * band);
    bool anyr[6] = {false};
    for (size_t k = 0; k < sizeof rep_ops / sizeof rep_ops[0]; k++) {
        const kvr_predict_fit *f = kvr_predict_costs_fit(c->rf.costs, rep_ops[k]);
        rb_add(&g, "$r%d << EOD\n", (int)k);
        for (int64_t i = 0; f && i < r->n_samples; i++) {
            const kvr_db_layer_sample *s = &r->samples[i];
            if (op_index(s->op) != (int)rep_ops[k] || !(s->stats.median_us > 0)) continue;
            double y = kvr_predict_fit_eval(f, (double)s->c, (double)s->prefix);
            rb_add(&g, "%lld %.6g\n", (long long)s->c, 100 * (y / s->stats.median_us - 1));
            anyr[k] = true;
        }
        rb_add(&g, "EOD\n");
    }
    rb_add(&g, "plot ");
    first = true;
    for (size_t k = 0; k < sizeof rep_ops / sizeof rep_ops[0]; k++) {
        if (!anyr[k]) continue;
        rb_add(&g, "%s$r%d using 1:2 with points pt %d ps 0.7 lc rgb '%s' title '%s'",
               first ? "" : ", ", (int)k, 5 + (int)k, rep_colors[k], kvr_op_name(rep_ops[k]));
        first = false;
    }
    rb_add(&g, "\n");
    if (!first) {
        char cap[300];
        snprintf(cap, sizeof cap,
                 "Residual of every profile sample under cost model %lld (attention at every "
                 "prefix); dashed: the TTFT error band ±%.2f %%.",
                 (long long)c->id, 100 * band);
        st = rep_figure(r, "residuals", cap, &g);
    }
    kvr_text_free(&g);
    return st;
}

// ----------------------------------------------------------------------------
// 2. predicted vs measured

typedef struct acc_cat {
    char cat[16], transport[16];
    int ranks;
    double *err; /* |error| fractions */
    int n, cap, n_drift;
} acc_cat;

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static kvr_status rep_measured(rep *r) {
    kvr_text *h = &r->html, *m = &r->md;
    int n_pred = 0;
    for (int64_t i = 0; i < r->n_meas; i++) n_pred += r->meas[i].predicted_ttft_ms > 0;
    r->sum.n_measured = (int)r->n_meas;
    r->sum.n_predicted = n_pred;
    if (r->n_meas == 0) {
        rep_note(r, "No measured runs yet (kvr-run records every run when a store is in use: "
                    "--db, or ./kvr.db).");
        return KVR_OK;
    }
    /* accuracy per (category, transport, ranks) */
    acc_cat cats[64];
    int nc = 0;
    for (int64_t i = 0; i < r->n_meas; i++) {
        const kvr_db_measured_run *x = &r->meas[i];
        if (!(x->predicted_ttft_ms > 0)) continue;
        const char *cat = rep_category(x);
        int k = 0;
        while (k < nc && !(strcmp(cats[k].cat, cat) == 0 &&
                           strcmp(cats[k].transport, x->transport) == 0 &&
                           cats[k].ranks == x->n_ranks))
            k++;
        if (k == nc) {
            if (nc == 64) continue;
            memset(&cats[nc], 0, sizeof cats[nc]);
            snprintf(cats[nc].cat, sizeof cats[nc].cat, "%s", cat);
            snprintf(cats[nc].transport, sizeof cats[nc].transport, "%s", x->transport);
            cats[nc].ranks = x->n_ranks;
            nc++;
        }
        acc_cat *a = &cats[k];
        if (a->n == a->cap) {
            int ncap = a->cap ? 2 * a->cap : 16;
            double *ne = realloc(a->err, (size_t)ncap * sizeof *ne);
            if (!ne) {
                for (int j = 0; j < nc; j++) free(cats[j].err);
                return kvr_error_set(r->err, KVR_ERR_NOMEM, "report: out of memory");
            }
            a->err = ne;
            a->cap = ncap;
        }
        a->err[a->n++] = fabs(x->ttft_ms / x->predicted_ttft_ms - 1);
        a->n_drift += x->drift;
        r->sum.n_drift += x->drift;
    }
    if (nc > 0) {
        rb_add(h, "<h3>Accuracy: |measured / predicted − 1| per strategy</h3>\n<table><tr>"
                  "<th>strategy</th><th>transport</th><th>ranks</th><th>runs</th>"
                  "<th>median |error| (%%)</th><th>max |error| (%%)</th><th>drift</th></tr>\n");
        rb_add(m, "### Accuracy (|measured / predicted - 1|)\n\n| strategy | transport | ranks | "
                  "runs | median (%%) | max (%%) | drift |\n|---|---|---:|---:|---:|---:|---:|\n");
        for (int k = 0; k < nc; k++) {
            acc_cat *a = &cats[k];
            qsort(a->err, (size_t)a->n, sizeof *a->err, cmp_dbl);
            double med = a->n % 2 ? a->err[a->n / 2]
                                  : 0.5 * (a->err[a->n / 2 - 1] + a->err[a->n / 2]);
            rb_add(h, "<tr><td>%s</td><td>%s</td><td>%d</td><td>%d</td><td>%.2f</td>"
                      "<td>%.2f</td><td>%d</td></tr>\n",
                   a->cat, a->transport, a->ranks, a->n, 100 * med, 100 * a->err[a->n - 1],
                   a->n_drift);
            rb_add(m, "| %s | %s | %d | %d | %.2f | %.2f | %d |\n", a->cat, a->transport,
                   a->ranks, a->n, 100 * med, 100 * a->err[a->n - 1], a->n_drift);
            free(a->err);
        }
        rb_add(h, "</table>\n");
        rb_add(m, "\n");
    }

    /* the scatter */
    kvr_status st = KVR_OK;
    if (n_pred > 0) {
        kvr_text g = {0};
        gp_head(&g, r, 520, "Predicted vs measured TTFT", "predicted TTFT (ms)",
                "measured TTFT (ms)");
        rb_add(&g, "set logscale xy 10\nset size ratio -1\n");
        double lo = INFINITY, hi = 0;
        for (int64_t i = 0; i < r->n_meas; i++) {
            const kvr_db_measured_run *x = &r->meas[i];
            if (!(x->predicted_ttft_ms > 0)) continue;
            lo = fmin(lo, fmin(x->predicted_ttft_ms, x->ttft_ms));
            hi = fmax(hi, fmax(x->predicted_ttft_ms, x->ttft_ms));
        }
        lo *= 0.8;
        hi *= 1.25;
        rb_add(&g, "set xrange [%.6g:%.6g]\nset yrange [%.6g:%.6g]\n", lo, hi, lo, hi);
        const char *const *catn = rep_cats;
        for (int k = 0; k < REP_N_CATS; k++) {
            rb_add(&g, "$s%d << EOD\n", k);
            for (int64_t i = 0; i < r->n_meas; i++) {
                const kvr_db_measured_run *x = &r->meas[i];
                if (!(x->predicted_ttft_ms > 0) || strcmp(rep_category(x), catn[k]) != 0)
                    continue;
                rb_add(&g, "%.6g %.6g\n", x->predicted_ttft_ms, x->ttft_ms);
            }
            rb_add(&g, "EOD\n$d%d << EOD\n", k);
            for (int64_t i = 0; i < r->n_meas; i++) {
                const kvr_db_measured_run *x = &r->meas[i];
                if (!(x->predicted_ttft_ms > 0) || !x->drift ||
                    strcmp(rep_category(x), catn[k]) != 0)
                    continue;
                rb_add(&g, "%.6g %.6g\n", x->predicted_ttft_ms, x->ttft_ms);
            }
            rb_add(&g, "EOD\n");
        }
        const double band = rep_band(r);
        rb_add(&g, "plot x with lines lw 1.5 lc rgb '#333333' title 'measured = predicted'");
        if (band >= 0)
            rb_add(&g, ", x*%.6g with lines dt 2 lc rgb '#888888' title 'error band ±%.2f %%', "
                       "x*%.6g with lines dt 2 lc rgb '#888888' notitle",
                   1 + band, 100 * band, 1 - band > 0.01 ? 1 - band : 0.01);
        for (int k = 0; k < REP_N_CATS; k++) {
            bool has = false, drift = false;
            for (int64_t i = 0; i < r->n_meas; i++) {
                const kvr_db_measured_run *x = &r->meas[i];
                if (x->predicted_ttft_ms > 0 && strcmp(rep_category(x), catn[k]) == 0) {
                    has = true;
                    drift = drift || x->drift;
                }
            }
            if (has)
                rb_add(&g, ", $s%d using 1:2 with points pt 7 ps 0.9 lc rgb '%s' title '%s'", k,
                       rep_colors[k], catn[k]);
            if (drift)
                rb_add(&g, ", $d%d using 1:2 with points pt 6 ps 2 lw 2 lc rgb '#d62728' "
                           "title '%s: drift'",
                       k, catn[k]);
        }
        rb_add(&g, "\n");
        char cap[300];
        snprintf(cap, sizeof cap,
                 "Every measured run with a prediction (%d of %d); dashed: the newest cost "
                 "model's TTFT error band; red rings: runs flagged as drift.",
                 n_pred, (int)r->n_meas);
        st = rep_figure(r, "pred_vs_measured", cap, &g);
        kvr_text_free(&g);
    } else {
        rep_note(r, "No measured run has a predicted TTFT yet (fit a cost model with kvr-fit "
                    "--run RUN, then run kvr-run with the store).");
    }
    if (st != KVR_OK) return st;

    /* the newest runs as a table */
    const int64_t first = r->n_meas > 40 ? r->n_meas - 40 : 0;
    rb_add(h, "<h3>Measured runs%s</h3>\n<table><tr><th>id</th><th>time (UTC)</th><th>mode</th>"
              "<th>source</th><th>transport</th><th>ranks</th><th>context</th><th>partition</th>"
              "<th>measured (ms)</th><th>predicted (ms)</th><th>error (%%)</th><th>drift</th>"
              "</tr>\n",
           first ? " (the newest 40)" : "");
    rb_add(m, "### Measured runs%s\n\n| id | mode | source | transport | ranks | context | "
              "partition | measured (ms) | predicted (ms) | error (%%) | drift |\n"
              "|---:|---|---|---|---:|---:|---|---:|---:|---:|---|\n",
           first ? " (the newest 40)" : "");
    for (int64_t i = first; i < r->n_meas; i++) {
        const kvr_db_measured_run *x = &r->meas[i];
        char pred[32] = "–", e[32] = "–";
        if (x->predicted_ttft_ms > 0) {
            snprintf(pred, sizeof pred, "%.1f", x->predicted_ttft_ms);
            snprintf(e, sizeof e, "%+.2f", 100 * (x->ttft_ms / x->predicted_ttft_ms - 1));
        }
        rb_add(h, "<tr%s><td>%lld</td><td>", x->drift ? " class=\"drift\"" : "", (long long)x->id);
        rb_html(h, x->ts_utc);
        rb_add(h, "</td><td>%s</td><td>", x->mode);
        rb_html(h, x->partition_source);
        rb_add(h, "</td><td>");
        rb_html(h, x->transport);
        rb_add(h, "</td><td>%d</td><td>%lld</td><td>", x->n_ranks, (long long)x->n_tokens);
        rb_html(h, x->partition);
        rb_add(h, "</td><td>%.1f</td><td>%s</td><td>%s</td><td>%s</td></tr>\n", x->ttft_ms, pred,
               e, x->drift ? "DRIFT" : "");
        rb_add(m, "| %lld | %s | %s | %s | %d | %lld | ", (long long)x->id, x->mode,
               x->partition_source, x->transport, x->n_ranks, (long long)x->n_tokens);
        rb_md(m, x->partition);
        rb_add(m, " | %.1f | %s | %s | %s |\n", x->ttft_ms, pred, e, x->drift ? "DRIFT" : "");
    }
    rb_add(h, "</table>\n");
    rb_add(m, "\n");
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// 3. TTFT vs context, partition fractions

static kvr_status rep_table_plots(rep *r) {
    if (!r->tab || r->n_rows == 0) {
        rep_note(r, "No KVR-S partition table in the store (kvr-search --db, or kvr-fit --kvrp): "
                    "no TTFT-vs-context or partition plots.");
        return KVR_OK;
    }
    int ranks[32], nr = 0;
    for (int64_t i = 0; i < r->n_rows; i++) {
        bool seen = false;
        for (int k = 0; k < nr; k++) seen = seen || ranks[k] == r->rows[i].n_ranks;
        if (!seen && nr < 32) ranks[nr++] = r->rows[i].n_ranks;
    }
    kvr_text g = {0};
    gp_head(&g, r, 520, "TTFT vs context per strategy and rank count", "context (tokens)",
            "TTFT (ms)");
    rb_add(&g, "set logscale x 2\nset logscale y 10\nset format y '%%g'\n");
    for (int k = 0; k < nr; k++)
        for (int s = 0; s < KVR_STRATEGY_COUNT; s++) {
            rb_add(&g, "$t%d_%d << EOD\n", k, s);
            for (int64_t i = 0; i < r->n_rows; i++)
                if (r->rows[i].n_ranks == ranks[k] && r->rows[i].ttft_ms[s] > 0)
                    rb_add(&g, "%lld %.6g\n", (long long)r->rows[i].context,
                           r->rows[i].ttft_ms[s]);
            rb_add(&g, "EOD\n");
        }
    const char *const *catn = rep_cats;
    bool has_meas[REP_N_CATS];
    memset(has_meas, 0, sizeof has_meas);
    for (int k = 0; k < REP_N_CATS; k++) {
        rb_add(&g, "$me%d << EOD\n", k);
        for (int64_t i = 0; i < r->n_meas; i++) {
            const kvr_db_measured_run *x = &r->meas[i];
            if (strcmp(rep_category(x), catn[k]) != 0) continue;
            rb_add(&g, "%lld %.6g\n", (long long)x->n_tokens, x->ttft_ms);
            has_meas[k] = true;
        }
        rb_add(&g, "EOD\n");
    }
    rb_add(&g, "plot ");
    bool first = true, single_done = false;
    for (int k = 0; k < nr; k++)
        for (int s = 0; s < KVR_STRATEGY_COUNT; s++) {
            bool any = false;
            for (int64_t i = 0; i < r->n_rows; i++)
                any = any || (r->rows[i].n_ranks == ranks[k] && r->rows[i].ttft_ms[s] > 0);
            if (!any || (s == KVR_STRATEGY_SINGLE && single_done)) continue;
            if (s == KVR_STRATEGY_SINGLE) single_done = true;
            char title[64];
            if (s == KVR_STRATEGY_SINGLE)
                snprintf(title, sizeof title, "single (simulated)");
            else
                snprintf(title, sizeof title, "%s, %d ranks (simulated)", kvr_strategy_name(s),
                         ranks[k]);
            rb_add(&g, "%s$t%d_%d using 1:2 with lines lw 2 dt %d lc rgb '%s' title '%s'",
                   first ? "" : ", ", k, s, 1 + k % 4, rep_colors[s], title);
            first = false;
        }
    for (int k = 0; k < REP_N_CATS; k++)
        if (has_meas[k]) {
            /* ring's points in the colour of ring's simulated curves */
            const char *col = !strcmp(catn[k], "ring") ? rep_colors[KVR_STRATEGY_RING]
                                                       : rep_colors[(k + 5) % 10];
            rb_add(&g, "%s$me%d using 1:2 with points pt %d ps 1.1 lc rgb '%s' title '%s "
                       "(measured)'",
                   first ? "" : ", ", k, 5 + 2 * k, col, catn[k]);
            first = false;
        }
    rb_add(&g, "\n");
    kvr_status st = KVR_OK;
    if (!first) {
        char cap[800];
        snprintf(cap, sizeof cap,
                 "Partition table %lld (%s; %s): simulated TTFT of every strategy per rank "
                 "count, with the measured runs of the store as points.",
                 (long long)r->tab->id, r->tab->source, r->tab->links);
        st = rep_figure(r, "ttft_vs_context", cap, &g);
    }
    kvr_text_free(&g);
    r->sum.n_tables = (int)r->n_tabs;
    if (st != KVR_OK) return st;

    /* partition fractions: KVR-S boundaries S_i / C (points), KVR-P (lines) */
    gp_head(&g, r, 480, "Partition boundaries S_i / C vs context: KVR-S (points), KVR-P (lines)",
            "context (tokens)", "boundary S_i / C");
    rb_add(&g, "set logscale x 2\nset yrange [0:1]\n");
    int series = 0;
    kvr_text plot = {0};
    for (int k = 0; k < nr; k++) {
        const int p = ranks[k];
        if (p < 2) continue;
        for (int b = 0; b < p - 1; b++) {
            rb_add(&g, "$fs%d_%d << EOD\n", k, b);
            for (int64_t i = 0; i < r->n_rows; i++) {
                if (r->rows[i].n_ranks != p) continue;
                int64_t S = 0, c = 0;
                const char *q = r->rows[i].partition;
                for (int j = 0; j <= b && q && *q; j++) {
                    c = strtoll(q, NULL, 10);
                    S += c;
                    q = strchr(q, ',');
                    if (q) q++;
                }
                rb_add(&g, "%lld %.6g\n", (long long)r->rows[i].context,
                       (double)S / (double)r->rows[i].context);
            }
            rb_add(&g, "EOD\n");
            rb_add(&plot, "%s$fs%d_%d using 1:2 with points pt 7 ps 0.6 lc rgb '%s' title "
                          "'S_%d/C, %d ranks (KVR-S)'",
                   series ? ", " : "", k, b, rep_colors[(k * 3 + b) % 10], b, p);
            series++;
        }
        const rep_pred *lp = NULL;
        for (int j = 0; j < r->n_latest; j++)
            if (r->latest[j].row.n_ranks == p) lp = &r->latest[j];
        if (!lp) continue;
        kvr_predictor_stats ps;
        kvr_error e2;
        if (kvr_predictor_stats_get(lp->kp, p, &ps, &e2) != KVR_OK) continue;
        int64_t lo = KVR_MAX((int64_t)p * kvr_predictor_granularity(lp->kp), ps.context_min / 2);
        int64_t hi = ps.context_max * 2;
        int64_t chunks[KVR_MAX_RANKS];
        for (int b = 0; b < p - 1 && p <= KVR_MAX_RANKS; b++) {
            rb_add(&g, "$fp%d_%d << EOD\n", k, b);
            for (int j = 0; j <= 96; j++) {
                int64_t C = (int64_t)llround(exp(log((double)lo) +
                                                  j / 96.0 * (log((double)hi) - log((double)lo))));
                if (kvr_predictor_predict(lp->kp, p, C, chunks, &e2) != KVR_OK) continue;
                int64_t S = 0;
                for (int q = 0; q <= b; q++) S += chunks[q];
                rb_add(&g, "%lld %.6g\n", (long long)C, (double)S / (double)C);
            }
            rb_add(&g, "EOD\n");
            rb_add(&plot, "%s$fp%d_%d using 1:2 with lines lw 2 lc rgb '%s' title 'S_%d/C, %d "
                          "ranks (KVR-P %lld, %s)'",
                   series ? ", " : "", k, b, rep_colors[(k * 3 + b) % 10], b, p,
                   (long long)lp->row.id, lp->row.form);
            series++;
        }
    }
    if (series > 0) {
        rb_add(&g, "set arrow from graph 0, first 0.5 to graph 1, first 0.5 nohead dt 3 lc rgb "
                   "'#aaaaaa'\nplot %s\n",
               plot.s);
        char cap[300];
        snprintf(cap, sizeof cap,
                 "Chunk boundaries as fractions of the context: the KVR-S partitions of table "
                 "%lld and the newest KVR-P predictor per rank count, drawn from half its "
                 "smallest to twice its largest fitted context.",
                 (long long)r->tab->id);
        st = rep_figure(r, "fractions", cap, &g);
    }
    kvr_text_free(&g);
    kvr_text_free(&plot);
    return st;
}

// ----------------------------------------------------------------------------
// 4. timelines

static const char *const ev_color[KVR_EVENT_KIND_COUNT] = {
    "#7f7f7f", "#1f77b4", "#d62728", "#2ca02c", "#eeeeee", "#ff7f0e", "#9467bd", "#000000",
    "#e377c2", "#bcbd22"};

/* The measured runs of category cat on p ranks at C tokens drawn into a timeline: a dashed
 * vertical line at each one's TTFT. Returns how many. */
static int rep_timeline_measured(const rep *r, kvr_text *g, const char *cat, int p, int64_t C) {
    int n = 0;
    rb_add(g, "$meas << EOD\n");
    for (int64_t i = 0; i < r->n_meas; i++) {
        const kvr_db_measured_run *x = &r->meas[i];
        if (x->n_ranks != p || x->n_tokens != C || strcmp(rep_category(x), cat) != 0) continue;
        rb_add(g, "%.6g %g\n%.6g %g\n\n", x->ttft_ms, -0.7, x->ttft_ms, p - 0.3);
        n++;
    }
    rb_add(g, "EOD\n");
    return n;
}

static kvr_status rep_timeline(rep *r, const kvr_predict_costs *costs, kvr_strategy s, int p,
                               int64_t C, const int64_t *chunks, const char *cat,
                               const char *label, const char *name) {
    kvr_search_timeline *tl = NULL;
    KVR_TRY(kvr_search_timeline_create(&tl, r->err));
    double ttft;
    kvr_status st = kvr_predict_costs_ttft(costs, s, p, C, chunks, tl, &ttft, r->err);
    if (st != KVR_OK) {
        kvr_search_timeline_destroy(tl);
        return kvr_error_prefix(r->err, "timeline %s", label);
    }
    kvr_text g = {0};
    char title[200];
    snprintf(title, sizeof title, "%s: %d ranks, %lld tokens, simulated TTFT %.1f ms", label, p,
             (long long)C, ttft * 1e-3);
    gp_head(&g, r, 120 + 70 * p, title, "time (ms)", "");
    rb_add(&g, "set yrange [%g:%g] reverse\nset ytics (", -0.7, p - 0.3);
    for (int i = 0; i < p; i++) rb_add(&g, "%s'rank %d' %d", i ? ", " : "", i, i);
    rb_add(&g, ")\nset style fill solid 1.0 noborder\nset grid noytics\n");
    const size_t n = kvr_search_timeline_n_events(tl);
    bool has[KVR_EVENT_KIND_COUNT] = {false};
    for (int k = 0; k < KVR_EVENT_KIND_COUNT; k++) {
        rb_add(&g, "$e%d << EOD\n", k);
        for (size_t i = 0; i < n; i++) {
            const kvr_event *e = kvr_search_timeline_event(tl, i);
            if ((int)e->kind != k || !(e->end_us > e->start_us)) continue;
            double y0 = e->rank - 0.3, y1 = e->rank + 0.3;
            if (e->kind == KVR_EVENT_SEND) y0 = e->rank + 0.34, y1 = e->rank + 0.46;
            rb_add(&g, "%.6g %.4g %.6g %.6g %.4g %.4g\n", 0.5e-3 * (e->start_us + e->end_us),
                   0.5 * (y0 + y1), e->start_us * 1e-3, e->end_us * 1e-3, y0, y1);
            has[k] = true;
        }
        rb_add(&g, "EOD\n");
    }
    const int n_meas = rep_timeline_measured(r, &g, cat, p, C);
    rb_add(&g, "plot ");
    bool first = true;
    for (int k = 0; k < KVR_EVENT_KIND_COUNT; k++) {
        if (!has[k]) continue;
        rb_add(&g, "%s$e%d using 1:2:3:4:5:6 with boxxyerror lc rgb '%s' title '%s'",
               first ? "" : ", ", k, ev_color[k], kvr_event_kind_name((kvr_event_kind)k));
        first = false;
    }
    if (!first && n_meas > 0)
        rb_add(&g, ", $meas using 1:2 with lines lw 2 dt 2 lc rgb '#000000' title 'measured "
                   "TTFT (%d run%s)'",
               n_meas, n_meas > 1 ? "s" : "");
    rb_add(&g, "\n");
    kvr_search_timeline_destroy(tl);
    if (first) {
        kvr_text_free(&g);
        return KVR_OK;
    }
    char cap[400];
    snprintf(cap, sizeof cap,
             "Per-rank timeline of %s from the search module's simulator under the newest "
             "fitted cost model (compute per rank; thin bars below a rank: its K/V sends)%s.",
             label,
             n_meas > 0 ? "; dashed: the measured TTFT of the store's runs of this strategy at "
                          "this rank count and context"
                        : "");
    st = rep_figure(r, name, cap, &g);
    kvr_text_free(&g);
    return st;
}

static kvr_status rep_timelines(rep *r) {
    const rep_costs *c = rep_newest(r);
    if (!c) {
        rep_note(r, "No fitted cost model (kvr-fit --run RUN): no timelines.");
        return KVR_OK;
    }
    int p = r->opt.timeline_ranks;
    if (p <= 0) {
        p = 2;
        for (int j = 0; j < r->n_latest; j++) p = KVR_MAX(p, r->latest[j].row.n_ranks);
    }
    int64_t C = r->opt.timeline_context;
    if (C <= 0) {
        C = 0;
        for (int64_t i = 0; i < r->n_meas; i++)
            if (r->meas[i].n_ranks == p) C = KVR_MAX(C, r->meas[i].n_tokens);
        if (C == 0) C = 4096;
    }
    if (C < 16 * p) C = 16 * p;
    const rep_pred *lp = NULL;
    for (int j = 0; j < r->n_latest; j++)
        if (r->latest[j].row.n_ranks == p) lp = &r->latest[j];
    int64_t chunks[256];
    kvr_error e2;
    char label[96];
    if (lp && p <= 256 && kvr_predictor_predict(lp->kp, p, C, chunks, &e2) == KVR_OK) {
        snprintf(label, sizeof label, "KVR-P (predictor %lld)", (long long)lp->row.id);
        KVR_TRY(rep_timeline(r, c->rf.costs, KVR_STRATEGY_KVR_S, p, C, chunks, "kvr-p", label,
                             "timeline_kvrp"));
    }
    KVR_TRY(rep_timeline(r, c->rf.costs, KVR_STRATEGY_KVR_E, p, C, NULL, "kvr-e",
                         "KVR-E (even)", "timeline_kvre"));
    KVR_TRY(rep_timeline(r, c->rf.costs, KVR_STRATEGY_TSP, p, C, NULL, "tsp", "TSP",
                         "timeline_tsp"));
    /* ring (kvr-run --mode ring): drawn when the store has measured ring runs on p ranks */
    bool ring = false;
    for (int64_t i = 0; i < r->n_meas && !ring; i++)
        ring = r->meas[i].n_ranks == p && !strcmp(rep_category(&r->meas[i]), "ring");
    if (ring && C >= 2 * (int64_t)p)
        KVR_TRY(rep_timeline(r, c->rf.costs, KVR_STRATEGY_RING, p, C, NULL, "ring",
                             "Ring pass-KV (zigzag)", "timeline_ring"));
    return KVR_OK;
}

// ----------------------------------------------------------------------------
// 5. serving: runs of kvr-serve (simulated) and of the engine (measured) from the store

#define SRV_MAX_TRACES 3  /* traces drawn (the newest) */
#define SRV_MAX_CURVES 8  /* runs drawn per trace: the newest of each (kind, policy) */
#define SRV_CDF_POINTS 300
#define SRV_SCATTER_POINTS 1500

/* A run's curve: its requests (and occupancy) loaded for the plots. */
typedef struct srv_curve {
    const kvr_db_serving_run *run;
    kvr_db_serving_request *req;
    int64_t n_req;
    kvr_db_serving_occupancy *occ;
    int64_t n_occ;
} srv_curve;

static int srv_policy_color(const char *policy) {
    if (strcmp(policy, "vllm") == 0) return 0;
    if (strcmp(policy, "chunked") == 0) return 2;
    if (strcmp(policy, "layerkv") == 0) return 4;
    return 6; /* a policy this report does not know: its own colour pair */
}

static bool srv_measured(const kvr_db_serving_run *x) {
    return strcmp(x->kind, "measured") == 0;
}

/* A legend title for a run: "vllm, simulated (run 3)". */
static void srv_title(kvr_text *g, const kvr_db_serving_run *x) {
    char t[128];
    snprintf(t, sizeof t, "%s, %s (run %lld)", x->policy, x->kind, (long long)x->id);
    rb_gp(g, t);
    rb_add(g, " noenhanced");
}

/* gp_head with a title shown as it is (trace names hold '_', which enhanced text subscripts). */
static void srv_head(kvr_text *g, const rep *r, const char *title, const char *xlabel,
                     const char *ylabel) {
    gp_head(g, r, 420, title, xlabel, ylabel);
    rb_add(g, "set title ");
    rb_gp(g, title);
    rb_add(g, " noenhanced\n");
}

static void srv_style(kvr_text *g, const kvr_db_serving_run *x) {
    rb_add(g, " lw 2 lc rgb '%s' dt %d", rep_colors[srv_policy_color(x->policy) + srv_measured(x)],
           srv_measured(x) ? 2 : 1);
}

/* The trace's key: its content hash, else its path. */
static const char *srv_key(const kvr_db_serving_run *x) {
    return x->trace_hash[0] ? x->trace_hash : x->trace;
}

/* A CDF datablock of v[0..n) (sorted here) in at most SRV_CDF_POINTS points; false: empty. */
static bool srv_cdf(kvr_text *g, int k, double *v, int64_t n) {
    rb_add(g, "$c%d << EOD\n", k);
    if (n > 0) {
        qsort(v, (size_t)n, sizeof *v, cmp_dbl);
        const int64_t m = n < SRV_CDF_POINTS ? n : SRV_CDF_POINTS;
        for (int64_t j = 0; j < m; j++) {
            const int64_t i = m == 1 ? n - 1 : j * (n - 1) / (m - 1);
            rb_add(g, "%.6g %.6g\n", v[i], (double)(i + 1) / (double)n);
        }
    }
    rb_add(g, "EOD\n");
    return n > 0;
}

/* TTFT (which 0) or TPOT (1) CDFs of the curves, in ms. */
static kvr_status srv_cdf_plot(rep *r, int t, const char *tn, int64_t n_req, const srv_curve *c,
                               int nc, int which) {
    kvr_text g = {0};
    const char *what = which ? "TPOT" : "TTFT";
    char title[600], name[48], cap[1024];
    snprintf(title, sizeof title, "%s CDF: %s", what, tn);
    srv_head(&g, r, title, which ? "time per output token (ms)" : "time to first token (ms)",
             "fraction of finished requests");
    rb_add(&g, "set yrange [0:1]\n");
    double *v = malloc((size_t)(c[0].n_req > 0 ? c[0].n_req : 1) * sizeof *v);
    int64_t cap_v = c[0].n_req > 0 ? c[0].n_req : 1;
    bool drawn[SRV_MAX_CURVES] = {false}, any = false;
    double lo = INFINITY, hi = 0;
    for (int k = 0; k < nc && v; k++) {
        if (c[k].n_req > cap_v) {
            double *nv = realloc(v, (size_t)c[k].n_req * sizeof *nv);
            if (!nv) free(v);
            v = nv, cap_v = c[k].n_req;
            if (!v) break;
        }
        int64_t n = 0;
        for (int64_t i = 0; i < c[k].n_req; i++) {
            const kvr_db_serving_request *q = &c[k].req[i];
            if (q->refused || q->finish_s < 0 || q->first_token_s < 0) continue;
            if (which == 0) v[n++] = 1e3 * (q->first_token_s - q->arrival_s);
            else if (q->output_tokens > 1)
                v[n++] = 1e3 * (q->finish_s - q->first_token_s) / (double)(q->output_tokens - 1);
        }
        for (int64_t i = 0; i < n; i++)
            if (v[i] > 0) lo = fmin(lo, v[i]), hi = fmax(hi, v[i]);
        drawn[k] = srv_cdf(&g, k, v, n);
        any = any || drawn[k];
    }
    if (!v) {
        kvr_text_free(&g);
        return kvr_error_set(r->err, KVR_ERR_NOMEM, "report: out of memory");
    }
    free(v);
    kvr_status st = KVR_OK;
    if (any) {
        if (hi > 0 && hi / lo > 100) rb_add(&g, "set logscale x 10\n");
        rb_add(&g, "plot");
        bool first = true;
        for (int k = 0; k < nc; k++) {
            if (!drawn[k]) continue;
            rb_add(&g, "%s $c%d using 1:2 with lines", first ? "" : ",", k);
            srv_style(&g, c[k].run);
            rb_add(&g, " title ");
            srv_title(&g, c[k].run);
            first = false;
        }
        rb_add(&g, "\n");
        snprintf(name, sizeof name, "serving_%s_cdf_%d", which ? "tpot" : "ttft", t + 1);
        snprintf(cap, sizeof cap,
                 "%s of every finished request of trace %s (%lld requests): the newest run of "
                 "each policy and kind; solid: simulated (kvr-serve --simulate), dashed: "
                 "measured (the engine).%s",
                 what, tn, (long long)n_req,
                 which ? " TPOT = (finish − first token) / (output tokens − 1), requests with "
                         "two or more output tokens."
                       : "");
        st = rep_figure(r, name, cap, &g);
    }
    kvr_text_free(&g);
    return st;
}

/* Queue time (admitted − arrival) against prompt length, every request (at most
 * SRV_SCATTER_POINTS per run, evenly by index). */
static kvr_status srv_queue_plot(rep *r, int t, const char *tn, const srv_curve *c, int nc) {
    kvr_text g = {0};
    char title[600], name[48], cap[1024];
    snprintf(title, sizeof title, "Queue time vs prompt length: %s", tn);
    srv_head(&g, r, title, "prompt tokens", "queue time (ms)");
    bool drawn[SRV_MAX_CURVES] = {false}, any = false;
    for (int k = 0; k < nc; k++) {
        rb_add(&g, "$q%d << EOD\n", k);
        const int64_t step = c[k].n_req > SRV_SCATTER_POINTS ? c[k].n_req / SRV_SCATTER_POINTS + 1 : 1;
        for (int64_t i = 0; i < c[k].n_req; i += step) {
            const kvr_db_serving_request *q = &c[k].req[i];
            if (q->refused || q->admitted_s < 0) continue;
            rb_add(&g, "%lld %.6g\n", (long long)q->prompt_tokens,
                   1e3 * (q->admitted_s - q->arrival_s));
            drawn[k] = any = true;
        }
        rb_add(&g, "EOD\n");
    }
    kvr_status st = KVR_OK;
    if (any) {
        rb_add(&g, "plot");
        bool first = true;
        for (int k = 0; k < nc; k++) {
            if (!drawn[k]) continue;
            rb_add(&g, "%s $q%d using 1:2 with points pt %d ps 0.5 lc rgb '%s' title ",
                   first ? "" : ",", k, srv_measured(c[k].run) ? 6 : 7,
                   rep_colors[srv_policy_color(c[k].run->policy) + srv_measured(c[k].run)]);
            srv_title(&g, c[k].run);
            first = false;
        }
        rb_add(&g, "\n");
        snprintf(name, sizeof name, "serving_queue_%d", t + 1);
        snprintf(cap, sizeof cap,
                 "Time from arrival to admission (the first iteration that scheduled the "
                 "request) against its prompt length, trace %s; filled: simulated, rings: "
                 "measured.",
                 tn);
        st = rep_figure(r, name, cap, &g);
    }
    kvr_text_free(&g);
    return st;
}

typedef struct srv_ev {
    double t;
    int64_t d;
} srv_ev;

static int cmp_ev(const void *a, const void *b) {
    const srv_ev *x = a, *y = b;
    return (x->t > y->t) - (x->t < y->t);
}

/* Pool occupancy over time: the stored series (blocks_mean per interval), or, for a run stored
 * without one, an upper bound from the requests: max_blocks held from admission to finish. */
static kvr_status srv_occupancy_plot(rep *r, int t, const char *tn, const srv_curve *c,
                                     int nc) {
    kvr_text g = {0};
    char title[600], name[48], cap[1280];
    snprintf(title, sizeof title, "KV pool occupancy: %s", tn);
    srv_head(&g, r, title, "time from the trace's start (s)", "KV blocks held");
    bool drawn[SRV_MAX_CURVES] = {false}, any = false, approx = false;
    int64_t pool = 0;
    kvr_status st = KVR_OK;
    for (int k = 0; k < nc && st == KVR_OK; k++) {
        rb_add(&g, "$o%d << EOD\n", k);
        pool = KVR_MAX(pool, c[k].run->pool_blocks);
        if (c[k].n_occ > 0) {
            for (int64_t i = 0; i < c[k].n_occ; i++)
                rb_add(&g, "%.6g %.6g\n", c[k].occ[i].t_s, c[k].occ[i].blocks_mean);
            drawn[k] = true;
        } else if (c[k].n_req > 0) {
            srv_ev *ev = malloc(2 * (size_t)c[k].n_req * sizeof *ev);
            if (!ev) {
                st = kvr_error_set(r->err, KVR_ERR_NOMEM, "report: out of memory");
                break;
            }
            int64_t ne = 0;
            for (int64_t i = 0; i < c[k].n_req; i++) {
                const kvr_db_serving_request *q = &c[k].req[i];
                if (q->refused || q->admitted_s < 0 || q->finish_s < 0) continue;
                ev[ne++] = (srv_ev){q->admitted_s, q->max_blocks};
                ev[ne++] = (srv_ev){q->finish_s, -q->max_blocks};
            }
            qsort(ev, (size_t)ne, sizeof *ev, cmp_ev);
            int64_t held = 0;
            const int64_t step = ne > 4000 ? ne / 4000 + 1 : 1;
            for (int64_t i = 0; i < ne; i++) {
                held += ev[i].d;
                if (i % step == 0 || i == ne - 1) rb_add(&g, "%.6g %lld\n", ev[i].t, (long long)held);
            }
            free(ev);
            drawn[k] = ne > 0;
            approx = approx || ne > 0;
        }
        any = any || drawn[k];
        rb_add(&g, "EOD\n");
    }
    if (st == KVR_OK && any) {
        rb_add(&g, "set yrange [0:%lld]\nplot %lld with lines lw 1 lc rgb '#333333' dt 3 "
                   "title 'pool'",
               (long long)(pool + pool / 10 + 1), (long long)pool);
        for (int k = 0; k < nc; k++) {
            if (!drawn[k]) continue;
            rb_add(&g, ", $o%d using 1:2 with steps", k);
            srv_style(&g, c[k].run);
            rb_add(&g, " title ");
            srv_title(&g, c[k].run);
        }
        rb_add(&g, "\n");
        snprintf(name, sizeof name, "serving_occupancy_%d", t + 1);
        snprintf(cap, sizeof cap,
                 "KV-cache blocks held over time, trace %s: the stored occupancy series (the "
                 "time-weighted mean over each of its intervals)%s; dotted: the largest pool.",
                 tn,
                 approx ? "; runs stored without one are approximated from their requests (each "
                          "holding its most blocks from admission to finish: an upper bound)"
                        : "");
        st = rep_figure(r, name, cap, &g);
    }
    kvr_text_free(&g);
    return st;
}

/* A trace's family: its file name with every number replaced by '#' ("light_r2.csv" and
 * "light_r0.5.csv" are both "light_r#.csv"). */
static void srv_family(const char *trace, char *out, size_t cap) {
    const char *b = strrchr(trace, '/');
    b = b ? b + 1 : trace;
    size_t n = 0;
    for (const char *p = b; *p && n + 1 < cap;) {
        if (*p >= '0' && *p <= '9') {
            while ((*p >= '0' && *p <= '9') || (*p == '.' && p[1] >= '0' && p[1] <= '9')) p++;
            out[n++] = '#';
        } else
            out[n++] = *p++;
    }
    out[n] = 0;
}

/* Two runs are points of one rate curve: one family, kind, policy, pool and cost source. */
static bool srv_same_family(const kvr_db_serving_run *a, const kvr_db_serving_run *b) {
    char fa[256], fb[256];
    srv_family(a->trace, fa, sizeof fa);
    srv_family(b->trace, fb, sizeof fb);
    return strcmp(fa, fb) == 0 && strcmp(a->kind, b->kind) == 0 &&
           strcmp(a->policy, b->policy) == 0 && a->pool_blocks == b->pool_blocks &&
           a->block_tokens == b->block_tokens && strcmp(a->cost_source, b->cost_source) == 0;
}

typedef struct srv_pt {
    double rate, p50, p90;
} srv_pt;

static int cmp_pt(const void *a, const void *b) {
    const srv_pt *x = a, *y = b;
    return (x->rate > y->rate) - (x->rate < y->rate);
}

/* TTFT p50 and p90 against the arrival rate, per family with runs at two or more rates. */
static kvr_status srv_rate_plot(rep *r) {
    const int64_t n = r->n_srv;
    int *fam = malloc((size_t)(n ? n : 1) * sizeof *fam);
    srv_pt *pt = malloc((size_t)(n ? n : 1) * sizeof *pt);
    if (!fam || !pt) {
        free(fam), free(pt);
        return kvr_error_set(r->err, KVR_ERR_NOMEM, "report: out of memory");
    }
    int nf = 0;
    for (int64_t i = 0; i < n; i++) {
        fam[i] = -1;
        for (int64_t j = 0; j < i && fam[i] < 0; j++)
            if (srv_same_family(&r->srv[i], &r->srv[j])) fam[i] = fam[j];
        if (fam[i] < 0) fam[i] = nf++;
    }
    kvr_text g = {0};
    gp_head(&g, r, 460, "TTFT vs arrival rate", "arrival rate (requests/s)", "TTFT (ms)");
    int drawn[10], nd = 0;
    for (int f = 0; f < nf && nd < 10; f++) {
        /* the newest run at each rate */
        int np = 0;
        for (int64_t i = n - 1; i >= 0; i--) {
            const kvr_db_serving_run *x = &r->srv[i];
            if (fam[i] != f || !(x->rate_per_s > 0) || x->n_finished == 0) continue;
            bool seen = false;
            for (int k = 0; k < np; k++) seen = seen || pt[k].rate == x->rate_per_s;
            if (!seen) pt[np++] = (srv_pt){x->rate_per_s, x->ttft_p50_ms, x->ttft_p90_ms};
        }
        if (np < 2) continue;
        qsort(pt, (size_t)np, sizeof *pt, cmp_pt);
        rb_add(&g, "$r%d << EOD\n", nd);
        for (int k = 0; k < np; k++) rb_add(&g, "%.6g %.6g %.6g\n", pt[k].rate, pt[k].p50, pt[k].p90);
        rb_add(&g, "EOD\n");
        drawn[nd++] = f;
    }
    kvr_status st = KVR_OK;
    if (nd > 0) {
        rb_add(&g, "set logscale y 10\nplot");
        for (int k = 0; k < nd; k++) {
            const kvr_db_serving_run *x = NULL;
            for (int64_t i = n - 1; i >= 0 && !x; i--)
                if (fam[i] == drawn[k]) x = &r->srv[i];
            char fname[256], t[400];
            srv_family(x->trace, fname, sizeof fname);
            snprintf(t, sizeof t, "%s, %s, %s: p50", fname, x->policy, x->kind);
            rb_add(&g, "%s $r%d using 1:2 with linespoints pt 7 lw 2 lc rgb '%s' title ",
                   k ? "," : "", k, rep_colors[k % 10]);
            rb_gp(&g, t);
            t[strlen(t) - 3] = 0;
            strcat(t, "p90");
            rb_add(&g, " noenhanced, $r%d using 1:3 with linespoints pt 6 lw 2 dt 2 lc rgb '%s' "
                       "title ",
                   k, rep_colors[k % 10]);
            rb_gp(&g, t);
            rb_add(&g, " noenhanced");
        }
        rb_add(&g, "\n");
        st = rep_figure(r, "serving_ttft_vs_rate",
                        "TTFT p50 (solid) and p90 (dashed) against the trace's mean arrival rate, "
                        "for each family of runs at two or more rates: traces whose file names "
                        "differ only in their numbers (light_r1.csv, light_r2.csv), under one "
                        "kind, policy, pool and cost source; the newest run at each rate.",
                        &g);
    } else
        rep_note(r, "TTFT vs arrival rate: no family of runs at two or more rates yet (replay "
                    "traces whose names differ only in a number, e.g. kvr-trace gen --rate R -o "
                    "light_rR.csv for a few R, with the same pool and costs).");
    kvr_text_free(&g);
    free(fam);
    free(pt);
    return st;
}

static kvr_status rep_serving(rep *r) {
    kvr_text *h = &r->html, *m = &r->md;
    r->sum.n_serving_runs = (int)r->n_srv;
    if (r->n_srv_open > 0) {
        char note[192];
        snprintf(note, sizeof note, "%lld serving run(s) without an end time (still running, or "
                 "killed: kvr-db serving lists them with the requests they stored) are left out.",
                 (long long)r->n_srv_open);
        rep_note(r, note);
    }
    if (r->n_srv == 0) {
        rep_note(r, "No serving runs yet (kvr-serve --simulate ... --db PATH stores every "
                    "policy's run and its requests).");
        return KVR_OK;
    }
    /* the newest 40 runs as a table */
    const int64_t first = r->n_srv > 40 ? r->n_srv - 40 : 0;
    rb_add(h, "<h3>Serving runs%s</h3>\n<table><tr><th>id</th><th>kind</th><th>trace</th>"
              "<th>policy</th><th>requests</th><th>rate (req/s)</th><th>pool (blocks)</th>"
              "<th>refused</th><th>preempted</th><th>TTFT p50 / p90 / p99 (ms)</th>"
              "<th>TPOT p50 (ms)</th><th>queue p50 (ms)</th><th>SLO</th><th>tok/s</th>"
              "<th>costs / model</th></tr>\n",
           first ? " (the newest 40)" : "");
    rb_add(m, "### Serving runs%s\n\n| id | kind | trace | policy | requests | rate (req/s) | "
              "pool | refused | TTFT p50 (ms) | TTFT p90 (ms) | TPOT p50 (ms) | queue p50 (ms) | "
              "SLO |\n|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
           first ? " (the newest 40)" : "");
    for (int64_t i = first; i < r->n_srv; i++) {
        const kvr_db_serving_run *x = &r->srv[i];
        char rate[32] = "–";
        if (x->rate_per_s > 0) snprintf(rate, sizeof rate, "%.3g", x->rate_per_s);
        rb_add(h, "<tr><td>%lld</td><td>%s</td><td>", (long long)x->id, x->kind);
        rb_html(h, x->trace);
        rb_add(h, "</td><td>");
        rb_html(h, x->policy);
        rb_add(h, "</td><td>%lld</td><td>%s</td><td>%lld</td><td>%lld</td><td>%lld</td>"
                  "<td>%.1f / %.1f / %.1f</td><td>%.2f</td><td>%.1f</td><td>%.3f</td>"
                  "<td>%.1f</td><td>",
               (long long)x->n_requests, rate, (long long)x->pool_blocks, (long long)x->n_refused,
               (long long)x->n_preemptions, x->ttft_p50_ms, x->ttft_p90_ms, x->ttft_p99_ms,
               x->tpot_p50_ms, x->queue_p50_ms, x->slo_attainment, x->output_tok_per_s);
        rb_html(h, srv_measured(x) ? x->backend : x->cost_source);
        rb_add(h, "</td></tr>\n");
        rb_add(m, "| %lld | %s | ", (long long)x->id, x->kind);
        rb_md(m, x->trace);
        rb_add(m, " | ");
        rb_md(m, x->policy);
        rb_add(m, " | %lld | %s | %lld | %lld | %.1f | %.1f | %.2f | %.1f | %.3f |\n",
               (long long)x->n_requests, rate, (long long)x->pool_blocks, (long long)x->n_refused,
               x->ttft_p50_ms, x->ttft_p90_ms, x->tpot_p50_ms, x->queue_p50_ms,
               x->slo_attainment);
    }
    rb_add(h, "</table>\n");
    rb_add(m, "\n");

    /* the newest traces, each with the newest run of every (kind, policy) */
    const kvr_db_serving_run *traces[SRV_MAX_TRACES];
    int nt = 0, n_more = 0;
    for (int64_t i = r->n_srv - 1; i >= 0; i--) {
        bool seen = false;
        for (int k = 0; k < nt; k++) seen = seen || strcmp(srv_key(traces[k]), srv_key(&r->srv[i])) == 0;
        if (seen) continue;
        if (nt < SRV_MAX_TRACES) traces[nt++] = &r->srv[i];
        else {
            bool counted = false; /* a trace beyond the drawn ones, counted once */
            for (int64_t j = r->n_srv - 1; j > i && !counted; j--)
                counted = strcmp(srv_key(&r->srv[j]), srv_key(&r->srv[i])) == 0;
            n_more += !counted;
        }
    }
    kvr_status st = KVR_OK;
    r->sum.n_serving_traces = nt + n_more;
    for (int t = 0; t < nt && st == KVR_OK; t++) {
        srv_curve c[SRV_MAX_CURVES];
        int nc = 0;
        memset(c, 0, sizeof c);
        for (int64_t i = r->n_srv - 1; i >= 0 && nc < SRV_MAX_CURVES; i--) {
            const kvr_db_serving_run *x = &r->srv[i];
            if (strcmp(srv_key(x), srv_key(traces[t])) != 0) continue;
            bool seen = false;
            for (int k = 0; k < nc; k++)
                seen = seen || (strcmp(c[k].run->kind, x->kind) == 0 &&
                                strcmp(c[k].run->policy, x->policy) == 0);
            if (seen) continue;
            c[nc].run = x;
            st = kvr_db_serving_requests_get(r->db, x->id, &c[nc].req, &c[nc].n_req, r->err);
            if (st == KVR_OK)
                st = kvr_db_serving_occupancy_get(r->db, x->id, &c[nc].occ, &c[nc].n_occ, r->err);
            nc++;
            if (st != KVR_OK) break;
        }
        if (st == KVR_OK) {
            /* simulated before measured, then by policy: the legend reads the same everywhere */
            for (int a = 1; a < nc; a++)
                for (int b = a; b > 0; b--) {
                    const kvr_db_serving_run *p = c[b - 1].run, *q = c[b].run;
                    const int cmp = srv_measured(p) != srv_measured(q)
                                        ? srv_measured(p) - srv_measured(q)
                                        : strcmp(p->policy, q->policy);
                    if (cmp <= 0) break;
                    const srv_curve tmp = c[b - 1];
                    c[b - 1] = c[b], c[b] = tmp;
                }
            rb_add(h, "<h3>Trace ");
            rb_html(h, traces[t]->trace);
            rb_add(h, "</h3>\n");
            const char *tn = traces[t]->trace;
            const int64_t nq = traces[t]->n_requests;
            st = srv_cdf_plot(r, t, tn, nq, c, nc, 0);
            if (st == KVR_OK) st = srv_cdf_plot(r, t, tn, nq, c, nc, 1);
            if (st == KVR_OK) st = srv_queue_plot(r, t, tn, c, nc);
            if (st == KVR_OK) st = srv_occupancy_plot(r, t, tn, c, nc);
        }
        for (int k = 0; k < nc; k++) kvr_db_free(c[k].req), kvr_db_free(c[k].occ);
    }
    if (st == KVR_OK && n_more > 0) {
        char note[160];
        snprintf(note, sizeof note, "%d older trace(s) not drawn (kvr-db serving lists their runs).",
                 n_more);
        rep_note(r, note);
    }
    if (st == KVR_OK) {
        rb_add(h, "<h3>TTFT vs arrival rate</h3>\n");
        st = srv_rate_plot(r);
    }
    return st;
}

// ----------------------------------------------------------------------------
// the page

static void rep_predictors(rep *r) {
    kvr_text *h = &r->html, *m = &r->md;
    r->sum.n_predictors = (int)r->n_preds;
    if (r->n_preds == 0) {
        rep_note(r, "No KVR-P predictors yet (kvr-fit --kvrp --ranks LIST).");
        return;
    }
    rb_add(h, "<table><tr><th>id</th><th>ranks</th><th>form</th><th>table</th><th>run</th>"
              "<th>links</th><th>held-out gap mean (%%)</th><th>gap max (%%)</th>"
              "<th>error band (%%)</th><th>stored (UTC)</th></tr>\n");
    rb_add(m, "| id | ranks | form | table | run | links | gap mean (%%) | gap max (%%) | "
              "band (%%) |\n|---:|---:|---|---:|---:|---|---:|---:|---:|\n");
    for (int64_t i = 0; i < r->n_preds; i++) {
        const kvr_db_predictor *p = &r->preds[i];
        char a[16], b[16], c[16];
        snprintf(a, sizeof a, isfinite(p->gap_mean) ? "%.3f" : "–", 100 * p->gap_mean);
        snprintf(b, sizeof b, isfinite(p->gap_max) ? "%.3f" : "–", 100 * p->gap_max);
        fmt_pct(c, sizeof c, p->err_band);
        rb_add(h, "<tr><td>%lld</td><td>%d</td><td>", (long long)p->id, p->n_ranks);
        rb_html(h, p->form);
        rb_add(h, "</td><td>%lld</td><td>%lld</td><td>", (long long)p->table_id,
               (long long)p->run_id);
        rb_html(h, p->links);
        rb_add(h, "</td><td>%s</td><td>%s</td><td>%s</td><td>", a, b, c);
        rb_html(h, p->ts_utc);
        rb_add(h, "</td></tr>\n");
        rb_add(m, "| %lld | %d | ", (long long)p->id, p->n_ranks);
        rb_md(m, p->form);
        rb_add(m, " | %lld | %lld | ", (long long)p->table_id, (long long)p->run_id);
        rb_md(m, p->links);
        rb_add(m, " | %s | %s | %s |\n", a, b, c);
    }
    rb_add(h, "</table>\n");
    rb_add(m, "\n");
}

kvr_report_options kvr_report_options_default(void) {
    kvr_report_options o;
    memset(&o, 0, sizeof o);
    o.title = "kvr report";
    o.width = 960;
    return o;
}

kvr_status kvr_report_build(kvr_db *db, const kvr_report_options *opt, kvr_report_plot_fn plot,
                            void *user, char **html, char **md, kvr_report_summary *sum,
                            kvr_error *err) {
    if (!db || !plot || !html)
        return kvr_error_set(err, KVR_ERR_INVALID_ARG, "report: NULL argument");
    rep r;
    memset(&r, 0, sizeof r);
    r.db = db;
    r.opt = opt ? *opt : kvr_report_options_default();
    if (!r.opt.title) r.opt.title = "kvr report";
    if (r.opt.width < 300) r.opt.width = 960;
    r.plot = plot;
    r.user = user;
    kvr_error local;
    r.err = err ? err : &local;
    kvr_status st = rep_load(&r);
    if (st != KVR_OK) {
        rep_free(&r);
        return st;
    }
    char now[32];
    time_t t = time(NULL);
    struct tm tmv;
    gmtime_r(&t, &tmv);
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &tmv);

    kvr_text *h = &r.html, *m = &r.md;
    rb_add(h, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>");
    rb_html(h, r.opt.title);
    rb_add(h,
           "</title>\n<style>\n"
           "body{font-family:Helvetica,Arial,sans-serif;margin:24px auto;max-width:1040px;"
           "color:#222;background:#fff}\n"
           "h1{font-size:26px;border-bottom:2px solid #1f77b4;padding-bottom:6px}\n"
           "h2{font-size:20px;margin-top:36px;border-bottom:1px solid #ccc}\n"
           "h3{font-size:16px;margin-top:22px}\n"
           "table{border-collapse:collapse;margin:10px 0;font-size:13px}\n"
           "th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}\n"
           "th{background:#eef3f8}td:first-child,th:first-child{text-align:left}\n"
           "td.coef{text-align:left;font-family:monospace;font-size:12px}\n"
           "tr.drift td{background:#fde2e2}\n"
           "figure{margin:16px 0;border:1px solid #ddd;padding:8px}\n"
           "figure svg{max-width:100%%;height:auto}\n"
           "figcaption{font-size:13px;color:#555;margin-top:6px}\n"
           ".note{color:#7a5d00;background:#fff8dc;padding:6px 10px;border-left:3px solid #e0b000}\n"
           ".meta{color:#555;font-size:13px}\n"
           "</style>\n</head>\n<body>\n<h1>");
    rb_html(h, r.opt.title);
    rb_add(h, "</h1>\n<p class=\"meta\">Store <code>");
    rb_html(h, kvr_db_path(db));
    rb_add(h, "</code>; generated %s by kvr %s (%s). %lld fit rows, %d cost model(s), %lld "
              "partition table(s), %lld KVR-P predictor(s), %lld measured run(s), %lld serving "
              "run(s).</p>\n",
           now, kvr_version(), kvr_build_commit(), (long long)r.n_fits, r.n_costs,
           (long long)r.n_tabs, (long long)r.n_preds, (long long)r.n_meas, (long long)r.n_srv);
    rb_add(m, "# %s\n\nStore `%s`; generated %s by kvr %s (%s). Plots: the HTML report.\n\n",
           r.opt.title, kvr_db_path(db), now, kvr_version(), kvr_build_commit());

    rb_add(h, "<h2>1. Cost-model fits</h2>\n");
    rb_add(m, "## 1. Cost-model fits\n\n");
    if (r.n_costs == 0) rep_note(&r, "No fitted cost model yet (kvr-fit --run RUN).");
    for (int i = r.n_costs > 3 ? r.n_costs - 3 : 0; i < r.n_costs; i++)
        rep_fit_table(&r, &r.costs[i]);
    r.sum.n_fits = (int)r.n_fits;
    if (r.n_costs > 3) {
        char note[128];
        snprintf(note, sizeof note, "%d older cost models not shown (kvr-db fits).",
                 r.n_costs - 3);
        rep_note(&r, note);
    }
    if (st == KVR_OK && r.n_costs) st = rep_fit_plots(&r);

    if (st == KVR_OK) {
        rb_add(h, "<h2>2. Predicted vs measured TTFT</h2>\n");
        rb_add(m, "## 2. Predicted vs measured TTFT\n\n");
        st = rep_measured(&r);
    }
    if (st == KVR_OK) {
        rb_add(h, "<h2>3. KVR-S tables and KVR-P predictors</h2>\n");
        rb_add(m, "## 3. KVR-P predictors\n\n");
        rep_predictors(&r);
        st = rep_table_plots(&r);
    }
    if (st == KVR_OK) {
        rb_add(h, "<h2>4. Per-rank timelines</h2>\n");
        rb_add(m, "## 4. Per-rank timelines\n\nIn the HTML report.\n\n");
        st = rep_timelines(&r);
    }
    if (st == KVR_OK) {
        rb_add(h, "<h2>5. Serving</h2>\n");
        rb_add(m, "## 5. Serving\n\n");
        st = rep_serving(&r);
    }
    rb_add(h, "</body>\n</html>\n");
    if (st == KVR_OK && (h->nomem || m->nomem))
        st = kvr_error_set(r.err, KVR_ERR_NOMEM, "report: out of memory");
    if (st == KVR_OK) {
        *html = h->s;
        h->s = NULL;
        if (md) {
            *md = m->s;
            m->s = NULL;
        }
        if (sum) *sum = r.sum;
    }
    rep_free(&r);
    return st;
}
