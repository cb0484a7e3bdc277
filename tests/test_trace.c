/* test_trace.c -- the serve module's request traces (serve/kvr_trace.h): the kvr trace CSV format
 * (round trip with awkward prompt texts, every reader error with its line number), statistics
 * against hand-computed figures, the generators against their distributions (sample mean and
 * CV within a few standard errors, and a Kolmogorov-Smirnov test against the exact CDF, with a
 * fixed seed and a large n: a wrong distribution fails them, as the power checks show), the
 * Azure and BurstGPT importers on fixtures written here, and their bad rows.
 * Run: build/tests/test_trace [case...] */
#include "kvr_test.h"
#include "kvr_trace.h"

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_sort.h>

#define H  "arrival_s,prompt_tokens,output_tokens\n"
#define HP "arrival_s,prompt_tokens,output_tokens,prompt\n"

static kvr_trace *parse_ok(const char *text, size_t len) {
    kvr_trace *t = NULL;
    kvr_error err = {0};
    KVR_CHECK_OK(kvr_trace_parse(text, len, "t.csv", &t, &err), &err);
    return t;
}

/* The reader must fail with KVR_ERR_FORMAT and a message containing want. */
static void parse_err_n(const char *text, size_t len, const char *want, int line) {
    kvr_trace *t = (kvr_trace *)1;
    kvr_error err = {0};
    kvr_status st = kvr_trace_parse(text, len, "t.csv", &t, &err);
    kvr_test_checks++;
    if (st != KVR_ERR_FORMAT || t != NULL || !strstr(err.msg, want)) {
        kvr_test_fails++;
        fprintf(stderr, "FAIL %s:%d parse error: got %s \"%s\", want \"%s\"\n", __FILE__, line,
                kvr_status_str(st), err.msg, want);
    }
    if (st == KVR_OK) kvr_trace_destroy(t);
}
#define parse_err(text, want) parse_err_n(text, strlen(text), want, __LINE__)

static void append(kvr_trace *t, double at, int64_t np, int64_t no, const char *prompt) {
    kvr_error err = {0};
    KVR_CHECK_OK(kvr_trace_append(t, at, np, no, prompt, &err), &err);
}

static bool same_trace(const kvr_trace *a, const kvr_trace *b) {
    if (a->n_requests != b->n_requests) return false;
    for (int64_t i = 0; i < a->n_requests; i++) {
        const kvr_trace_request *x = &a->requests[i], *y = &b->requests[i];
        if (x->arrival_s != y->arrival_s || x->prompt_tokens != y->prompt_tokens ||
            x->output_tokens != y->output_tokens)
            return false;
        if ((x->prompt == NULL) != (y->prompt == NULL)) return false;
        if (x->prompt && strcmp(x->prompt, y->prompt)) return false;
    }
    return true;
}

// ----------------------------------------------------------------------------
// the format

static void test_roundtrip(void) {
    static const char *const prompts[] = {
        "plain",         "comma, inside",      "a \"quoted\" word", "line1\nline2\r\nline3",
        "  spaces  ",    "\xc3\xbc" "n" "\xc3\xaf" "c" "\xc3\xb8" "de \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x9a\x80",
        NULL,            "",                   "#not a comment",    "\"", ",,,",
        "trailing\n"};
    static const double at[] = {0, 1e-7, 0.1, 0.1, 1.0 / 3, 2.0 / 3, 12345.678901234567, 1e9,
                                1e9 + 0.5, 1e11, 1e11, 1e12};
    kvr_trace *t = NULL;
    kvr_error err = {0};
    KVR_CHECK_OK(kvr_trace_create(&t, &err), &err);
    for (int i = 0; i < 12; i++) append(t, at[i], 1 + i * 1000, 1 + i, prompts[i]);
    KVR_CHECK(t->requests[7].prompt == NULL); /* "" is no text */
    char *text = NULL;
    KVR_CHECK_OK(kvr_trace_format(t, "made by test_roundtrip\nsecond line", &text, &err), &err);
    const char *head = "# made by test_roundtrip\n# second line\n" HP;
    KVR_CHECK(!strncmp(text, head, strlen(head)));
    kvr_trace *u = parse_ok(text, strlen(text));
    KVR_CHECK(u && same_trace(t, u));
    char *again = NULL;
    KVR_CHECK_OK(kvr_trace_format(u, "made by test_roundtrip\nsecond line", &again, &err), &err);
    KVR_CHECK(again && !strcmp(text, again)); /* byte for byte */
    /* a saved file loads back the same (and the write left no temporary) */
    const char *path = kvr_test_tmp_path("rt.csv");
    KVR_CHECK_OK(kvr_trace_save(t, path, NULL, &err), &err);
    kvr_trace *v = NULL;
    KVR_CHECK_OK(kvr_trace_load(path, &v, &err), &err);
    KVR_CHECK(v && same_trace(t, v));
    free(text);
    free(again);
    kvr_trace_destroy(u);
    kvr_trace_destroy(v);
    /* without any prompt text there is no prompt column */
    kvr_trace *w = NULL;
    KVR_CHECK_OK(kvr_trace_create(&w, &err), &err);
    append(w, 0, 5, 6, NULL);
    append(w, 0.25, 7, 8, "");
    KVR_CHECK_OK(kvr_trace_format(w, NULL, &text, &err), &err);
    KVR_CHECK(!strcmp(text, H "0,5,6\n0.25,7,8\n"));
    free(text);
    kvr_trace_destroy(w);
    kvr_trace_destroy(t);
    /* generated arrival times (random doubles) write and read back exactly */
    kvr_trace_gen_params g = kvr_trace_gen_params_default();
    g.arrival = KVR_TRACE_ARRIVAL_GAMMA;
    g.cv = 3;
    g.rate_per_s = 1000;
    g.n_requests = 20000;
    KVR_CHECK_OK(kvr_trace_generate(&g, &w, &err), &err);
    KVR_CHECK_OK(kvr_trace_format(w, NULL, &text, &err), &err);
    kvr_trace *x = text ? parse_ok(text, strlen(text)) : NULL;
    KVR_CHECK(x && same_trace(w, x));
    kvr_trace_destroy(x);
    kvr_trace_destroy(w);
    free(text);
    /* an empty trace is a header */
    KVR_CHECK_OK(kvr_trace_create(&w, &err), &err);
    KVR_CHECK_OK(kvr_trace_format(w, NULL, &text, &err), &err);
    KVR_CHECK(!strcmp(text, H));
    kvr_trace *e = parse_ok(text, strlen(text));
    KVR_CHECK(e && e->n_requests == 0);
    kvr_trace_destroy(e);
    free(text);
    kvr_trace_destroy(w);
}

static void test_parse_variants(void) {
    /* BOM, comments, blank lines, CRLF, columns in another order, spaces, quoted numbers */
    const char *s = "\xEF\xBB\xBF# a comment\r\n\r\noutput_tokens , prompt,arrival_s,PROMPT_TOKENS\r\n"
                    "# between rows\r\n"
                    "  3 ,\"hi, there\", 0.5 ,10\r\n"
                    "\r\n"
                    "\"4\",,1.5,\"20\"\r\n"
                    "5,\"two\r\nlines\",1.5,30";
    kvr_trace *t = parse_ok(s, strlen(s));
    KVR_CHECK(t && t->n_requests == 3);
    if (t && t->n_requests == 3) {
        KVR_CHECK(t->requests[0].arrival_s == 0.5 && t->requests[0].prompt_tokens == 10 &&
                  t->requests[0].output_tokens == 3);
        KVR_CHECK(t->requests[0].prompt && !strcmp(t->requests[0].prompt, "hi, there"));
        KVR_CHECK(t->requests[1].prompt == NULL && t->requests[1].prompt_tokens == 20 &&
                  t->requests[1].output_tokens == 4);
        KVR_CHECK(t->requests[2].prompt && !strcmp(t->requests[2].prompt, "two\r\nlines"));
    }
    kvr_trace_destroy(t);
    /* the length bounds the parse: the same bytes cut short hold only the header and a row */
    const char *cut = H "0,1,2\n1,3,4\n";
    t = parse_ok(cut, strlen(H) + 6);
    KVR_CHECK(t && t->n_requests == 1);
    kvr_trace_destroy(t);
}

static void test_parse_errors(void) {
    parse_err("", "t.csv: no header row");
    parse_err("# only a comment\n\n", "t.csv: no header row");
    parse_err("arrival_s,prompt_tokens\n0,1\n",
              "t.csv:1: no column 'output_tokens' in the header (found 'arrival_s', "
              "'prompt_tokens')");
    parse_err("arrival_s,prompt_tokens,output_tokens,extra\n",
              "t.csv:1: unknown column 'extra' in the header");
    parse_err("arrival_s,prompt_tokens,output_tokens,Arrival_S\n",
              "t.csv:1: column 'arrival_s' named twice");
    parse_err(H "0,1,1\nabc,1,1\n", "t.csv:3: column 'arrival_s': 'abc' is not a finite number");
    parse_err(H "-1,1,1\n", "t.csv:2: column 'arrival_s': -1 is out of range");
    parse_err(H "nan,1,1\n", "t.csv:2: column 'arrival_s': 'nan' is not a finite number");
    parse_err(H "inf,1,1\n", "t.csv:2: column 'arrival_s': 'inf' is not a finite number");
    parse_err(H "0x10,1,1\n", "t.csv:2: column 'arrival_s': '0x10' is not a finite number");
    parse_err(H "2e12,1,1\n", "t.csv:2: column 'arrival_s': 2000000000000 is out of range");
    parse_err(H ",1,1\n", "t.csv:2: column 'arrival_s': '' is not a finite number");
    parse_err(H "1,1,1\n0.5,1,1\n",
              "t.csv:3: column 'arrival_s': 0.5 is earlier than the previous request's 1 (rows "
              "must be in arrival order)");
    parse_err(H "0,0,1\n", "t.csv:2: column 'prompt_tokens': 0 is out of range [1, 1073741824]");
    parse_err(H "0,1.5,1\n", "t.csv:2: column 'prompt_tokens': '1.5' is not a whole number");
    parse_err(H "0,1,x\n", "t.csv:2: column 'output_tokens': 'x' is not a whole number");
    parse_err(H "0,1,99999999999\n", "t.csv:2: column 'output_tokens': 99999999999 is out of range");
    parse_err(H "0,1\n", "t.csv:2: 2 fields, the header has 3");
    parse_err(H "0,1,1,2\n", "t.csv:2: 4 fields, the header has 3");
    parse_err(HP "0,1,1,\"abc\n\ndef\n",
              "t.csv:2: field 4: the quote opened on line 2 is never closed");
    parse_err(HP "0,1,1,\"ok\"\n1,1,1,\"a\"b\n", "t.csv:3: field 4: text after the closing quote");
    parse_err(HP "0,1,1,a\"b\n", "t.csv:2: field 4: quote inside an unquoted field");
    /* records spanning lines: the next record's line number counts the embedded breaks */
    parse_err(HP "0,1,1,\"multi\nline\"\n0.5,1,1,x\n0.25,1,1,y\n",
              "t.csv:5: column 'arrival_s': 0.25 is earlier");
    parse_err(HP "0,1,1,\"\xff\"\n", "t.csv:2: column 'prompt': not valid UTF-8 (byte 0xff at offset 0)");
    parse_err(HP "0,1,1,\"ab\xc3\"\n", "t.csv:2: column 'prompt': not valid UTF-8 (byte 0xc3 at offset 2)");
    parse_err(HP "0,1,1,\"\xed\xa0\x80\"\n", "t.csv:2: column 'prompt': not valid UTF-8"); /* surrogate */
    parse_err_n(H "0,1,1\n1,1\0,1\n", sizeof(H "0,1,1\n1,1\0,1\n") - 1, "t.csv:3: NUL byte",
                __LINE__);
    parse_err("# c\n\n" H "# mid\n0,1,1\n\nbad,1,1\n", "t.csv:7: column 'arrival_s': 'bad'");
    char many[300] = H "0,1,1";
    for (int i = 0; i < 70; i++) strcat(many, ",");
    parse_err(many, "t.csv:2: more than 64 fields");
    /* a prompt longer than the limit */
    const size_t big = KVR_TRACE_MAX_PROMPT_BYTES + 10;
    char *b = malloc(big + 64);
    if (b) {
        int n = snprintf(b, 64, HP "0,1,1,");
        memset(b + n, 'a', big);
        b[n + big] = 0;
        parse_err(b, "t.csv:2: field 4 longer than 1048576 bytes");
        free(b);
    }
}

static void test_append_checks(void) {
    kvr_trace *t = NULL;
    kvr_error err = {0};
    KVR_CHECK_OK(kvr_trace_create(&t, &err), &err);
    append(t, 1, 1, 1, NULL);
    KVR_CHECK(kvr_trace_append(t, 0.5, 1, 1, NULL, &err) == KVR_ERR_INVALID_ARG &&
              strstr(err.msg, "earlier than the previous request's 1"));
    KVR_CHECK(kvr_trace_append(t, NAN, 1, 1, NULL, &err) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(kvr_trace_append(t, 2, 0, 1, NULL, &err) == KVR_ERR_INVALID_ARG &&
              strstr(err.msg, "prompt_tokens 0"));
    KVR_CHECK(kvr_trace_append(t, 2, 1, KVR_TRACE_MAX_TOKENS + 1, NULL, &err) ==
                  KVR_ERR_INVALID_ARG &&
              strstr(err.msg, "output_tokens"));
    KVR_CHECK(kvr_trace_append(t, 2, 1, 1, "ok\x80", &err) == KVR_ERR_INVALID_ARG &&
              strstr(err.msg, "not valid UTF-8 (byte 0x80 at offset 2)"));
    KVR_CHECK_EQ_INT(t->n_requests, 1); /* failed appends changed nothing */
    kvr_trace_destroy(t);
}

// ----------------------------------------------------------------------------
// statistics

static void test_stats(void) {
    kvr_trace *t = NULL;
    kvr_error err = {0};
    kvr_trace_stats s;
    KVR_CHECK_OK(kvr_trace_create(&t, &err), &err);
    KVR_CHECK_OK(kvr_trace_stats_compute(t, &s, &err), &err);
    KVR_CHECK(s.n_requests == 0 && isnan(s.duration_s) && isnan(s.prompt_tokens.mean));
    append(t, 0, 10, 1, "x");
    KVR_CHECK_OK(kvr_trace_stats_compute(t, &s, &err), &err);
    KVR_CHECK(s.duration_s == 0 && isnan(s.rate_per_s) && isnan(s.gap_mean_s) &&
              s.prompt_tokens.p99 == 10);
    append(t, 1, 20, 1, NULL);
    append(t, 3, 30, 1, NULL);
    append(t, 6, 40, 5, NULL);
    KVR_CHECK_OK(kvr_trace_stats_compute(t, &s, &err), &err);
    KVR_CHECK_EQ_INT(s.n_requests, 4);
    KVR_CHECK_EQ_INT(s.n_with_prompt, 1);
    KVR_CHECK_NEAR(s.duration_s, 6, 0, 1e-15);
    KVR_CHECK_NEAR(s.rate_per_s, 0.5, 0, 1e-15);  /* 3 gaps over 6 s */
    KVR_CHECK_NEAR(s.gap_mean_s, 2, 0, 1e-15);    /* gaps 1, 2, 3 */
    KVR_CHECK_NEAR(s.gap_cv, 0.5, 0, 1e-15);      /* sample sd 1 */
    KVR_CHECK_NEAR(s.prompt_tokens.mean, 25, 0, 1e-15);
    KVR_CHECK_NEAR(s.prompt_tokens.p50, 25, 0, 1e-15); /* between 20 and 30 */
    KVR_CHECK_NEAR(s.prompt_tokens.p90, 37, 0, 1e-12); /* 30 + 0.7 x 10 */
    KVR_CHECK_NEAR(s.prompt_tokens.p99, 39.7, 0, 1e-12);
    KVR_CHECK(s.prompt_tokens.min == 10 && s.prompt_tokens.max == 40);
    KVR_CHECK_EQ_INT(s.prompt_tokens.total, 100);
    KVR_CHECK_NEAR(s.output_tokens.p50, 1, 0, 1e-15);
    KVR_CHECK_NEAR(s.output_tokens.p90, 3.8, 0, 1e-12); /* 1 + 0.7 x 4 */
    KVR_CHECK_EQ_INT(s.output_tokens.total, 8);
    kvr_trace_destroy(t);
}

// ----------------------------------------------------------------------------
// generators

static kvr_trace *gen_ok(const kvr_trace_gen_params *p) {
    kvr_trace *t = NULL;
    kvr_error err = {0};
    KVR_CHECK_OK(kvr_trace_generate(p, &t, &err), &err);
    return t;
}

/* The gaps between arrivals, sorted, in a malloc'd array of t->n_requests - 1. */
static double *sorted_gaps(const kvr_trace *t) {
    const int64_t n = t->n_requests - 1;
    double *g = malloc((size_t)n * sizeof *g);
    if (!g) abort();
    for (int64_t i = 0; i < n; i++) g[i] = t->requests[i + 1].arrival_s - t->requests[i].arrival_s;
    gsl_sort(g, 1, (size_t)n);
    return g;
}

/* Kolmogorov-Smirnov statistic of sorted x[0..n) against cdf(x, a, b), taken over x >= x_min.
 * Gaps are differences of arrival times (doubles up to n x the mean gap), so a gap is known to
 * about n x 2^-52 of the mean gap: the bursty Gamma's many near-zero gaps (cv 2.5: 2 % of them
 * below 1e-12 of the mean) are quantised. Above x_min = 1e-6 of the mean gap the quantisation
 * moves the CDF by under 1e-4; the supremum over a part of the line is bounded by the full KS
 * statistic's distribution, so the critical value stays valid. */
static double ks_stat(const double *x, size_t n, double (*cdf)(double, double, double), double a,
                      double b, double x_min) {
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        if (x[i] < x_min) continue;
        const double f = cdf(x[i], a, b);
        const double lo = f - (double)i / n, hi = (double)(i + 1) / n - f;
        if (lo > d) d = lo;
        if (hi > d) d = hi;
    }
    return d;
}
static double cdf_exp(double x, double mu, double unused) {
    (void)unused;
    return gsl_cdf_exponential_P(x, mu);
}
static double cdf_gamma(double x, double k, double theta) {
    return gsl_cdf_gamma_P(x, k, theta);
}

static void mean_cv(const double *x, size_t n, double *mean, double *cv) {
    double s = 0, ss = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (size_t i = 0; i < n; i++) ss += (x[i] - *mean) * (x[i] - *mean);
    *cv = sqrt(ss / (n - 1)) / *mean;
}

/* n = 200000 gaps: the mean's standard error is 1/sqrt(n) = 0.22 % of the mean for exponential
 * gaps (cv x 0.22 % in general); the sample CV's is about sqrt((kurtosis - 1) / 4n) relative,
 * 0.32 % for exponential gaps, 0.57 % at cv 2.5. The tolerances are about 4-5 standard errors;
 * the KS bound is the 0.1 % critical value 1.95 / sqrt(n). */
#define N_GAPS 200000

static void test_gen_poisson(void) {
    kvr_trace_gen_params p = kvr_trace_gen_params_default();
    p.rate_per_s = 4;
    p.n_requests = N_GAPS + 1;
    p.seed = 7;
    kvr_trace *t = gen_ok(&p);
    if (!t) return;
    KVR_CHECK_EQ_INT(t->n_requests, N_GAPS + 1);
    KVR_CHECK(t->requests[0].arrival_s == 0);
    double *g = sorted_gaps(t);
    double mean, cv;
    mean_cv(g, N_GAPS, &mean, &cv);
    KVR_CHECK_NEAR(mean, 0.25, 0, 0.01);
    KVR_CHECK_NEAR(cv, 1, 0, 0.016);
    const double crit = 1.95 / sqrt(N_GAPS);
    const double d = ks_stat(g, N_GAPS, cdf_exp, 0.25, 0, 0.25e-6);
    KVR_CHECK(d < crit);
    /* power: the same gaps are far from a rate 10 % off, and from Gamma with cv 1.1 */
    KVR_CHECK(ks_stat(g, N_GAPS, cdf_exp, 0.275, 0, 0.25e-6) > 5 * crit);
    KVR_CHECK(ks_stat(g, N_GAPS, cdf_gamma, 1 / 1.21, 0.25 * 1.21, 0.25e-6) > 3 * crit);
    free(g);
    kvr_trace_destroy(t);
}

static void check_gamma(double rate, double cv, uint64_t seed) {
    kvr_trace_gen_params p = kvr_trace_gen_params_default();
    p.arrival = KVR_TRACE_ARRIVAL_GAMMA;
    p.rate_per_s = rate;
    p.cv = cv;
    p.n_requests = N_GAPS + 1;
    p.seed = seed;
    kvr_trace *t = gen_ok(&p);
    if (!t) return;
    double *g = sorted_gaps(t);
    double mean, scv;
    mean_cv(g, N_GAPS, &mean, &scv);
    KVR_CHECK_NEAR(mean, 1 / rate, 0, 0.007 * cv + 0.003);
    KVR_CHECK_NEAR(scv, cv, 0, 0.015 * cv + 0.004);
    const double k = 1 / (cv * cv), theta = 1 / (rate * k);
    const double crit = 1.95 / sqrt(N_GAPS);
    const double d = ks_stat(g, N_GAPS, cdf_gamma, k, theta, 1e-6 / rate);
    if (!(d < crit)) fprintf(stderr, "  gamma cv %g: KS %g >= %g\n", cv, d, crit);
    KVR_CHECK(d < crit);
    if (cv != 1) KVR_CHECK(ks_stat(g, N_GAPS, cdf_exp, 1 / rate, 0, 1e-6 / rate) > 5 * crit); /* not Poisson */
    free(g);
    kvr_trace_destroy(t);
}

static void test_gen_gamma(void) {
    check_gamma(10, 2.5, 11); /* bursty */
    check_gamma(10, 0.5, 12); /* smoother than Poisson */
    check_gamma(0.5, 1, 13);  /* cv 1 is Poisson */
}

static void test_gen_lengths(void) {
    const int64_t n = 100000;
    kvr_trace_gen_params p = kvr_trace_gen_params_default();
    p.rate_per_s = 100;
    p.n_requests = n;
    p.seed = 3;
    p.prompt = (kvr_trace_length){KVR_TRACE_LENGTH_LOGNORMAL, 1000, 0.6, NULL, NULL};
    p.output = (kvr_trace_length){KVR_TRACE_LENGTH_UNIFORM, 16, 256, NULL, NULL};
    kvr_trace *t = gen_ok(&p);
    if (!t) return;
    double *x = malloc((size_t)n * sizeof *x), *lx = malloc((size_t)n * sizeof *lx);
    if (!x || !lx) abort();
    int64_t omin = INT64_MAX, omax = 0;
    static int64_t seen[257];
    memset(seen, 0, sizeof seen);
    for (int64_t i = 0; i < n; i++) {
        x[i] = (double)t->requests[i].prompt_tokens;
        lx[i] = log(x[i]);
        const int64_t o = t->requests[i].output_tokens;
        omin = KVR_MIN(omin, o);
        omax = KVR_MAX(omax, o);
        if (o >= 0 && o <= 256) seen[o]++;
    }
    /* lognormal: the length's mean is MEAN (sd 665: standard error 0.21 %), ln L has sd SIGMA
     * (standard error 0.22 %) and mean ln(MEAN) - SIGMA^2 / 2 */
    double mean, cv, lmean, lcv;
    mean_cv(x, (size_t)n, &mean, &cv);
    mean_cv(lx, (size_t)n, &lmean, &lcv);
    KVR_CHECK_NEAR(mean, 1000, 0, 0.01);
    KVR_CHECK_NEAR(lmean, log(1000) - 0.18, 0.008, 0);
    KVR_CHECK_NEAR(lcv * lmean, 0.6, 0, 0.015);
    KVR_CHECK_NEAR(cv, sqrt(exp(0.36) - 1), 0, 0.03);
    /* uniform 16..256: both ends drawn, every value drawn, mean 136, variance (241^2 - 1) / 12 */
    KVR_CHECK_EQ_INT(omin, 16);
    KVR_CHECK_EQ_INT(omax, 256);
    bool all = true;
    for (int v = 16; v <= 256; v++) all = all && seen[v] > 0;
    KVR_CHECK(all);
    for (int64_t i = 0; i < n; i++) x[i] = (double)t->requests[i].output_tokens;
    mean_cv(x, (size_t)n, &mean, &cv);
    KVR_CHECK_NEAR(mean, 136, 0, 0.007);
    KVR_CHECK_NEAR(cv * mean * cv * mean, (241.0 * 241 - 1) / 12, 0, 0.02);
    free(x);
    free(lx);
    kvr_trace_destroy(t);
    /* fixed */
    p.n_requests = 100;
    p.prompt = (kvr_trace_length){KVR_TRACE_LENGTH_FIXED, 77, 0, NULL, NULL};
    t = gen_ok(&p);
    bool fixed = t != NULL;
    for (int64_t i = 0; t && i < t->n_requests; i++) fixed = fixed && t->requests[i].prompt_tokens == 77;
    KVR_CHECK(fixed);
    kvr_trace_destroy(t);
}

static void test_gen_resample(void) {
    kvr_trace *src = NULL, *src2 = NULL;
    kvr_error err = {0};
    KVR_CHECK_OK(kvr_trace_create(&src, &err), &err);
    KVR_CHECK_OK(kvr_trace_create(&src2, &err), &err);
    for (int i = 1; i <= 3; i++) {
        append(src, i, 10 * i, i, NULL);
        append(src2, i, 10 * i, i, NULL);
    }
    const int64_t n = 30000;
    kvr_trace_gen_params p = kvr_trace_gen_params_default();
    p.n_requests = n;
    p.prompt = (kvr_trace_length){KVR_TRACE_LENGTH_RESAMPLE, 0, 0, src, NULL};
    p.output = (kvr_trace_length){KVR_TRACE_LENGTH_RESAMPLE, 0, 0, src, NULL};
    kvr_trace *t = gen_ok(&p);
    if (!t) return;
    /* the same source: pairs drawn together, each with probability 1/3 (sd 0.27 %) */
    int64_t cnt[4] = {0}, unpaired = 0;
    for (int64_t i = 0; i < n; i++) {
        const kvr_trace_request *r = &t->requests[i];
        if (r->prompt_tokens != 10 * r->output_tokens) unpaired++;
        if (r->output_tokens >= 1 && r->output_tokens <= 3) cnt[r->output_tokens]++;
    }
    KVR_CHECK_EQ_INT(unpaired, 0);
    for (int k = 1; k <= 3; k++) KVR_CHECK_NEAR((double)cnt[k] / n, 1.0 / 3, 0.012, 0);
    kvr_trace_destroy(t);
    /* two sources: independent draws, each of the 9 pairs with probability 1/9 */
    p.output.source = src2;
    t = gen_ok(&p);
    if (t) {
        int64_t pair[4][4];
        memset(pair, 0, sizeof pair);
        for (int64_t i = 0; i < n; i++) {
            const kvr_trace_request *r = &t->requests[i];
            if (r->prompt_tokens % 10 == 0 && r->prompt_tokens <= 30 && r->output_tokens <= 3)
                pair[r->prompt_tokens / 10][r->output_tokens]++;
        }
        for (int a = 1; a <= 3; a++)
            for (int b = 1; b <= 3; b++) KVR_CHECK_NEAR((double)pair[a][b] / n, 1.0 / 9, 0.009, 0);
    }
    kvr_trace_destroy(t);
    kvr_trace_destroy(src);
    kvr_trace_destroy(src2);
}

static void test_gen_limits(void) {
    kvr_trace_gen_params p = kvr_trace_gen_params_default();
    p.rate_per_s = 50;
    p.duration_s = 100;
    kvr_trace *t = gen_ok(&p);
    if (!t) return;
    /* Poisson count over 100 s at 50/s: 1 + Poisson(5000), sd 71 */
    KVR_CHECK(llabs(t->n_requests - 5001) < 360);
    KVR_CHECK(t->requests[t->n_requests - 1].arrival_s < 100);
    kvr_trace_destroy(t);
    p.n_requests = 10; /* the count comes first */
    t = gen_ok(&p);
    KVR_CHECK(t && t->n_requests == 10);
    kvr_trace_destroy(t);
    p.n_requests = 100000; /* the duration comes first */
    p.duration_s = 1;
    t = gen_ok(&p);
    KVR_CHECK(t && t->n_requests < 200 && t->requests[t->n_requests - 1].arrival_s < 1);
    kvr_trace_destroy(t);
}

static void test_gen_reproducible(void) {
    kvr_trace_gen_params p = kvr_trace_gen_params_default();
    p.arrival = KVR_TRACE_ARRIVAL_GAMMA;
    p.cv = 2;
    p.n_requests = 1000;
    p.seed = 42;
    p.prompt = (kvr_trace_length){KVR_TRACE_LENGTH_LOGNORMAL, 500, 1, NULL, NULL};
    kvr_trace *a = gen_ok(&p), *b = gen_ok(&p);
    KVR_CHECK(a && b && same_trace(a, b));
    p.seed = 43;
    kvr_trace *c = gen_ok(&p);
    KVR_CHECK(c && !same_trace(a, c));
    /* another length distribution, the same seed: the same arrivals */
    p.seed = 42;
    p.prompt = (kvr_trace_length){KVR_TRACE_LENGTH_UNIFORM, 1, 9, NULL, NULL};
    kvr_trace *d = gen_ok(&p);
    bool same_at = a && d && a->n_requests == d->n_requests;
    for (int64_t i = 0; same_at && i < a->n_requests; i++)
        same_at = a->requests[i].arrival_s == d->requests[i].arrival_s &&
                  a->requests[i].output_tokens == d->requests[i].output_tokens;
    KVR_CHECK(same_at);
    kvr_trace_destroy(a);
    kvr_trace_destroy(b);
    kvr_trace_destroy(c);
    kvr_trace_destroy(d);
}

static void gen_err(const kvr_trace_gen_params *p, const char *want, int line) {
    kvr_trace *t = (kvr_trace *)1;
    kvr_error err = {0};
    kvr_status st = kvr_trace_generate(p, &t, &err);
    kvr_test_checks++;
    if (st != KVR_ERR_INVALID_ARG || t != NULL || !strstr(err.msg, want)) {
        kvr_test_fails++;
        fprintf(stderr, "FAIL %s:%d generate: got %s \"%s\", want \"%s\"\n", __FILE__, line,
                kvr_status_str(st), err.msg, want);
    }
}

static void test_gen_errors(void) {
    kvr_trace_gen_params p = kvr_trace_gen_params_default();
    gen_err(&p, "set a number of requests or a duration", __LINE__);
    p.n_requests = 10;
    p.rate_per_s = 0;
    gen_err(&p, "rate_per_s 0: must be > 0", __LINE__);
    p.rate_per_s = 1;
    p.arrival = KVR_TRACE_ARRIVAL_GAMMA;
    p.cv = 0;
    gen_err(&p, "cv 0: the gaps' coefficient of variation must be in (0, 10]", __LINE__);
    p.cv = 11;
    gen_err(&p, "cv 11", __LINE__);
    p.cv = 1;
    p.prompt = (kvr_trace_length){KVR_TRACE_LENGTH_RESAMPLE, 0, 0, NULL, "x.csv"};
    gen_err(&p, "prompt lengths: resampling needs a trace with requests (x.csv", __LINE__);
    kvr_trace *empty = NULL;
    kvr_error err = {0};
    KVR_CHECK_OK(kvr_trace_create(&empty, &err), &err);
    p.prompt.source = empty;
    gen_err(&p, "resampling needs a trace with requests", __LINE__);
    kvr_trace_destroy(empty);
    p.prompt = (kvr_trace_length){KVR_TRACE_LENGTH_UNIFORM, 9, 3, NULL, NULL};
    gen_err(&p, "prompt lengths: 'uniform:9,3' is out of range", __LINE__);
    p.prompt = (kvr_trace_length){KVR_TRACE_LENGTH_FIXED, 512, 0, NULL, NULL};
    p.output = (kvr_trace_length){KVR_TRACE_LENGTH_LOGNORMAL, 0.5, 1, NULL, NULL};
    gen_err(&p, "output lengths: 'lognormal:0.5,1' is out of range", __LINE__);
    p.output = (kvr_trace_length){KVR_TRACE_LENGTH_FIXED, 1, 0, NULL, NULL};
    p.n_requests = 0;
    p.duration_s = 1e9;
    p.rate_per_s = 1;
    gen_err(&p, "requests, more than", __LINE__);
}

static void test_length_parse(void) {
    static const struct {
        const char *spec, *back;
    } ok[] = {{"512", "fixed:512"},
              {"fixed:7", "fixed:7"},
              {"uniform:16,256", "uniform:16,256"},
              {"uniform:5,5", "uniform:5,5"},
              {"lognormal:1024,0.8", "lognormal:1024,0.8"},
              {"lognormal:1.5,0", "lognormal:1.5,0"},
              {"file:some/trace.csv", "file:some/trace.csv"}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        kvr_trace_length l;
        kvr_error err = {0};
        KVR_CHECK_OK(kvr_trace_length_parse(ok[i].spec, &l, &err), &err);
        char buf[100];
        kvr_trace_length_format(&l, buf, sizeof buf);
        KVR_CHECK(!strcmp(buf, ok[i].back));
    }
    static const char *const bad[] = {"0", "abc", "-3", "fixed:1.5", "uniform:5", "uniform:5,3",
                                      "uniform:1.5,4", "uniform:0,4", "lognormal:100",
                                      "lognormal:100,5", "lognormal:0.5,1", "lognormal:100,-1",
                                      "file:", "", "1073741825", "0x10", " 5", "5 ",
                                      "normal:5,1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kvr_trace_length l;
        kvr_error err = {0};
        kvr_status st = kvr_trace_length_parse(bad[i], &l, &err);
        KVR_CHECK(st == KVR_ERR_INVALID_ARG && strstr(err.msg, "length '"));
        if (st == KVR_OK) fprintf(stderr, "  accepted '%s'\n", bad[i]);
    }
}

// ----------------------------------------------------------------------------
// importers

static kvr_trace *import_ok(const char *text, const kvr_trace_import_params *p,
                            kvr_trace_import_stats *s) {
    kvr_trace *t = NULL;
    kvr_error err = {0};
    KVR_CHECK_OK(kvr_trace_import_parse(text, strlen(text), "pub.csv", p, &t, s, &err), &err);
    return t;
}

static void import_err_n(const char *text, const kvr_trace_import_params *p, const char *want,
                         int line) {
    kvr_trace *t = (kvr_trace *)1;
    kvr_error err = {0};
    kvr_status st = kvr_trace_import_parse(text, strlen(text), "pub.csv", p, &t, NULL, &err);
    kvr_test_checks++;
    if (st == KVR_OK || t != NULL || !strstr(err.msg, want)) {
        kvr_test_fails++;
        fprintf(stderr, "FAIL %s:%d import error: got %s \"%s\", want \"%s\"\n", __FILE__, line,
                kvr_status_str(st), err.msg, want);
    }
    if (st == KVR_OK) kvr_trace_destroy(t);
}
#define import_err(text, p, want) import_err_n(text, p, want, __LINE__)

#define AZ "TIMESTAMP,ContextTokens,GeneratedTokens\n"

static void test_import_azure(void) {
    const char *f = AZ "2023-11-16 18:15:46.6805900,4808,10\n"
                       "2023-11-16 18:15:46.7325900,3180,8\n"
                       "2023-11-16 18:15:47.0000000,110,0\n"      /* failed */
                       "2023-11-16 18:16:00.1,0,5\n"              /* no prompt */
                       "2023-11-16 18:15:50.6805901,7433,14\n"    /* 7-digit difference */
                       "2023-11-16 18:15:49.5,34,12\n";           /* out of order */
    kvr_trace_import_params p = kvr_trace_import_params_default();
    kvr_trace_import_stats s;
    kvr_trace *t = import_ok(f, &p, &s);
    if (!t) return;
    KVR_CHECK_EQ_INT(s.n_rows, 6);
    KVR_CHECK_EQ_INT(s.n_kept, 4);
    KVR_CHECK_EQ_INT(s.n_failed, 1);
    KVR_CHECK_EQ_INT(s.n_empty, 1);
    KVR_CHECK_EQ_INT(s.n_out_of_order, 1);
    KVR_CHECK_EQ_INT(t->n_requests, 4);
    if (t->n_requests == 4) {
        KVR_CHECK(t->requests[0].arrival_s == 0 && t->requests[0].prompt_tokens == 4808 &&
                  t->requests[0].output_tokens == 10);
        KVR_CHECK(t->requests[1].arrival_s == 0.052 && t->requests[1].prompt_tokens == 3180);
        KVR_CHECK(t->requests[2].arrival_s == 2.81941 && t->requests[2].prompt_tokens == 34);
        KVR_CHECK(t->requests[3].arrival_s == 4.0000001 && t->requests[3].output_tokens == 14);
    }
    kvr_trace_destroy(t);
    /* keep the failed row as a 1-token output; limit; time scale */
    p.keep_failed = true;
    t = import_ok(f, &p, &s);
    KVR_CHECK(t && t->n_requests == 5 && s.n_failed == 1 && t->requests[2].output_tokens == 1 &&
              t->requests[2].arrival_s == 0.31941);
    kvr_trace_destroy(t);
    p.keep_failed = false;
    p.limit = 2;
    p.time_scale = 0.5;
    t = import_ok(f, &p, &s);
    KVR_CHECK(t && t->n_requests == 2 && s.n_rows == 2 && t->requests[1].arrival_s == 0.026);
    kvr_trace_destroy(t);
    /* columns in another order, in another case, with one more; CRLF; calendar boundaries;
     * time zones */
    p = kvr_trace_import_params_default();
    const char *g = "GeneratedTokens,extra,timestamp,contexttokens\r\n"
                    "5,x,2023-12-31 23:59:59.9999999,100\r\n"
                    "6,y,2024-01-01T00:00:00.0000001,200\r\n"
                    "7,z,2024-02-28 23:59:59.5Z,300\r\n"
                    "8,w,2024-03-01 00:00:00.25,400\r\n"
                    "9,v,2024-03-01 02:00:00.75+02:00,500\r\n"
                    "10,u,2024-02-29 19:00:01-05:00,600\r\n";
    t = import_ok(g, &p, &s);
    KVR_CHECK(t && t->n_requests == 6 && s.n_out_of_order == 0);
    if (t && t->n_requests == 6) {
        KVR_CHECK(t->requests[1].arrival_s == 2e-7 && t->requests[1].prompt_tokens == 200 &&
                  t->requests[1].output_tokens == 6);
        const double d = 59 * 86400.0 - 0.5 + 1e-7; /* to 2024-02-28 23:59:59.5 */
        KVR_CHECK_NEAR(t->requests[2].arrival_s, d, 1e-6, 0);
        KVR_CHECK_NEAR(t->requests[3].arrival_s - t->requests[2].arrival_s, 86400.75, 1e-6, 0);
        KVR_CHECK_NEAR(t->requests[4].arrival_s - t->requests[3].arrival_s, 0.5, 1e-6, 0);
        KVR_CHECK_NEAR(t->requests[5].arrival_s - t->requests[4].arrival_s, 0.25, 1e-6, 0);
    }
    kvr_trace_destroy(t);
}

static void test_import_azure_errors(void) {
    kvr_trace_import_params p = kvr_trace_import_params_default();
    import_err("", &p, "pub.csv: no header row (TIMESTAMP,ContextTokens,GeneratedTokens)");
    import_err("TIMESTAMP,GeneratedTokens\n", &p,
               "pub.csv:1: no column 'ContextTokens' in the header (found 'TIMESTAMP', "
               "'GeneratedTokens')");
    static const struct {
        const char *row, *want;
    } bad[] = {
        {"2023-13-16 18:15:46.1,5,5", "has a month outside 1..12"},
        {"2023-02-29 00:00:00,5,5", "has a day that is not in its month"},
        {"2023-04-31 00:00:00,5,5", "has a day that is not in its month"},
        {"2023-11-16 18:15:46.,5,5", "has a '.' with no fraction digits after it"},
        {"2023-11-16 18:15:46.1234567890,5,5", "has more than 9 fraction digits"},
        {"2023-11-16 25:00:00,5,5", "has an hour, minute or second out of range"},
        {"2023-11-16 18:60:00,5,5", "has an hour, minute or second out of range"},
        {"2023-11-16,5,5", "is not a date and time YYYY-MM-DD HH:MM:SS[.fraction]"},
        {"16/11/2023 18:15:46,5,5", "is not a date and time"},
        {"1700000000,5,5", "is not a date and time"},
        {"2023-11-16 18:15:46 pm,5,5", "has text after the time"},
        {"2023-11-16 18:15:46+2:00,5,5", "has a time zone offset that is not +HH:MM or -HH:MM"},
        {"1969-12-31 23:59:59,5,5", "has a year outside 1970..2200"},
        {",5,5", "is not a date and time"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[300], want[300];
        snprintf(text, sizeof text, AZ "2023-11-16 18:15:46.6805900,1,1\n%s\n", bad[i].row);
        snprintf(want, sizeof want, "pub.csv:3: column 'TIMESTAMP': '%.*s' %s",
                 (int)strcspn(bad[i].row, ","), bad[i].row, bad[i].want);
        import_err_n(text, &p, want, __LINE__);
    }
    import_err(AZ "2023-11-16 18:15:46,-5,5\n", &p,
               "pub.csv:2: column 'ContextTokens': -5 is out of range [0, 1073741824]");
    import_err(AZ "2023-11-16 18:15:46,5,ten\n", &p,
               "pub.csv:2: column 'GeneratedTokens': 'ten' is not a whole number");
    import_err(AZ "\n# c\n2023-11-16 18:15:46,5\n", &p, "pub.csv:4: 2 fields, the header has 3");
    p.model = "GPT-4";
    import_err(AZ, &p, "the model and log type filters apply to burstgpt traces");
    p.model = NULL;
    p.time_scale = 0;
    import_err(AZ, &p, "time_scale 0: must be in (0, 1e6]");
}

#define BG "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"

static void test_import_burstgpt(void) {
    const char *f = BG "5,ChatGPT,472,18,490,Conversation log\n"
                       "45,ChatGPT,1087,0,1087,Conversation log\n" /* failed */
                       "118,GPT-4,417,276,693,Conversation log\n"
                       "130,ChatGPT,1360,64,1424,API log\n"
                       "120.5,GPT-4,100,50,150,API log\n"; /* out of order */
    kvr_trace_import_params p = kvr_trace_import_params_default();
    p.format = KVR_TRACE_IMPORT_BURSTGPT;
    kvr_trace_import_stats s;
    kvr_trace *t = import_ok(f, &p, &s);
    if (!t) return;
    KVR_CHECK(s.n_rows == 5 && s.n_kept == 4 && s.n_failed == 1 && s.n_out_of_order == 1 &&
              s.n_filtered == 0);
    KVR_CHECK_EQ_INT(t->n_requests, 4);
    if (t->n_requests == 4) {
        KVR_CHECK(t->requests[0].arrival_s == 0 && t->requests[0].prompt_tokens == 472 &&
                  t->requests[0].output_tokens == 18);
        KVR_CHECK(t->requests[1].arrival_s == 113 && t->requests[1].prompt_tokens == 417);
        KVR_CHECK(t->requests[2].arrival_s == 115.5 && t->requests[2].prompt_tokens == 100);
        KVR_CHECK(t->requests[3].arrival_s == 125 && t->requests[3].output_tokens == 64);
    }
    kvr_trace_destroy(t);
    p.model = "gpt-4"; /* case-insensitive */
    t = import_ok(f, &p, &s);
    KVR_CHECK(t && t->n_requests == 2 && s.n_filtered == 3 && t->requests[1].arrival_s == 2.5);
    kvr_trace_destroy(t);
    p.model = NULL;
    p.log_type = "Conversation log";
    t = import_ok(f, &p, &s);
    KVR_CHECK(t && t->n_requests == 2 && s.n_filtered == 2 && s.n_failed == 1 &&
              t->requests[1].arrival_s == 113);
    kvr_trace_destroy(t);
    /* only the three columns the import reads are needed without filters */
    p.log_type = NULL;
    t = import_ok("Response tokens,Timestamp,Request tokens\n7,0.5,3\n8,1.75,4\n", &p, &s);
    KVR_CHECK(t && t->n_requests == 2 && t->requests[1].arrival_s == 1.25 &&
              t->requests[1].output_tokens == 8);
    kvr_trace_destroy(t);
    /* every row filtered out: an empty trace, counted */
    p.model = "Llama";
    t = import_ok(f, &p, &s);
    KVR_CHECK(t && t->n_requests == 0 && s.n_filtered == 5);
    kvr_trace_destroy(t);
}

static void test_import_burstgpt_errors(void) {
    kvr_trace_import_params p = kvr_trace_import_params_default();
    p.format = KVR_TRACE_IMPORT_BURSTGPT;
    import_err(BG "abc,ChatGPT,1,1,2,API log\n", &p,
               "pub.csv:2: column 'Timestamp': 'abc' is not a finite number");
    import_err(BG "1,ChatGPT,1,1,2,API log\n-1,ChatGPT,1,1,2,API log\n", &p,
               "pub.csv:3: column 'Timestamp': -1 is out of range");
    import_err(BG "1,ChatGPT,1.5,1,2,API log\n", &p,
               "pub.csv:2: column 'Request tokens': '1.5' is not a whole number");
    import_err(BG "1,ChatGPT,1,-1,2,API log\n", &p,
               "pub.csv:2: column 'Response tokens': -1 is out of range");
    import_err(BG "1,ChatGPT,1,1,2\n", &p, "pub.csv:2: 5 fields, the header has 6");
    import_err(BG "1,\"Chat\"GPT,1,1,2,API log\n", &p,
               "pub.csv:2: field 2: text after the closing quote");
    p.model = "GPT-4";
    import_err("Timestamp,Request tokens,Response tokens\n1,1,1\n", &p,
               "pub.csv:1: no column 'Model' in the header");
    p.model = NULL;
    p.log_type = "API log";
    import_err("Timestamp,Request tokens,Response tokens\n1,1,1\n", &p,
               "pub.csv:1: no column 'Log Type' in the header");
}

static void test_import_load(void) {
    const char *path = kvr_test_tmp_path("azure.csv");
    FILE *f = fopen(path, "wb");
    KVR_CHECK(f != NULL);
    if (!f) return;
    fputs(AZ "2023-11-16 18:15:46.6805900,4808,10\n2023-11-16 18:15:47.6805900,3180,8\n", f);
    fclose(f);
    kvr_trace_import_params p = kvr_trace_import_params_default();
    kvr_trace *t = NULL;
    kvr_error err = {0};
    KVR_CHECK_OK(kvr_trace_import_load(path, &p, &t, NULL, &err), &err);
    KVR_CHECK(t && t->n_requests == 2 && t->requests[1].arrival_s == 1);
    kvr_trace_destroy(t);
    t = (kvr_trace *)1;
    KVR_CHECK(kvr_trace_import_load(kvr_test_tmp_path("none.csv"), &p, &t, NULL, &err) ==
                  KVR_ERR_NOT_FOUND &&
              t == NULL && strstr(err.msg, "none.csv: No such file"));
    KVR_CHECK(kvr_trace_load(kvr_test_tmp_path("none.csv"), &t, &err) == KVR_ERR_NOT_FOUND);
}

/* The content hash names the schedule, not the file: formatting and comments do not change it,
 * any arrival, length or prompt text does. */
static void test_content_hash(void) {
    static const char *const texts[] = {
        "arrival_s,prompt_tokens,output_tokens\n0,10,5\n1.5,20,6\n",
        "# a comment\nprompt_tokens , output_tokens, arrival_s\n10,5,0.0\n20,6,1.50\n",
        "arrival_s,prompt_tokens,output_tokens\n0,10,5\n1.5,21,6\n",
        "arrival_s,prompt_tokens,output_tokens\n0,10,5\n1.5000001,20,6\n",
        "arrival_s,prompt_tokens,output_tokens,prompt\n0,10,5,\n1.5,20,6,hi\n",
    };
    char h[5][24];
    for (int i = 0; i < 5; i++) {
        kvr_trace *t = parse_ok(texts[i], strlen(texts[i]));
        kvr_trace_content_hash(t, h[i], sizeof h[i]);
        KVR_CHECK(strlen(h[i]) == 16);
        kvr_trace_destroy(t);
    }
    KVR_CHECK(strcmp(h[0], h[1]) == 0);
    for (int i = 2; i < 5; i++) KVR_CHECK(strcmp(h[0], h[i]) != 0);
}

static const kvr_test_case cases[] = {
    {"roundtrip", test_roundtrip},
    {"parse_variants", test_parse_variants},
    {"parse_errors", test_parse_errors},
    {"append_checks", test_append_checks},
    {"stats", test_stats},
    {"gen_poisson", test_gen_poisson},
    {"gen_gamma", test_gen_gamma},
    {"gen_lengths", test_gen_lengths},
    {"gen_resample", test_gen_resample},
    {"gen_limits", test_gen_limits},
    {"gen_reproducible", test_gen_reproducible},
    {"gen_errors", test_gen_errors},
    {"length_parse", test_length_parse},
    {"import_azure", test_import_azure},
    {"import_azure_errors", test_import_azure_errors},
    {"import_burstgpt", test_import_burstgpt},
    {"import_burstgpt_errors", test_import_burstgpt_errors},
    {"import_load", test_import_load},
    {"content_hash", test_content_hash},
};

int main(int argc, char **argv) {
    return kvr_test_tmp_cleanup(kvr_test_main(cases, (int)(sizeof cases / sizeof cases[0]), argc,
                                              argv));
}
