/* kvrp_internal.h -- declarations shared by the predictor's predict-time files (library
 * kvr_kvrp: costs.c, predict.c, json.c, files.c) and its fit-time files (predictor_internal.h
 * adds theirs), and on purpose its tests: the cost-model struct, the KVR-P entry struct, exact
 * JSON numbers. Tools and other modules use kvr_kvrp.h / kvr_predict.h only. No GSL or store
 * types here. */
#ifndef KVR_KVRP_INTERNAL_H
#define KVR_KVRP_INTERNAL_H

#include "kvr_kvrp.h"

#include <math.h>

struct cJSON;

// ----------------------------------------------------------------------------
// fitted cost models (costs.c)

typedef struct predict_link_entry {
    int src, dst;
    kvr_predict_fit fit;
} predict_link_entry;

struct kvr_predict_costs {
    int n_layers;
    double kv_bytes_per_token, embed_us, head_us;
    char *model, *device, *dtype, *source; /* never NULL */
    bool has[KVR_OP_COUNT];
    kvr_predict_fit fit[KVR_OP_COUNT];         /* [LINK]: the default link */
    predict_link_entry *links;                 /* listed links */
    int n_links;
    bool has_ovh;                              /* fixed overheads set (else all 0) */
    kvr_search_overhead ovh[KVR_MODE_COUNT];   /* per schedule: run_us, layer_us */
    bool has_scale;                            /* an end-to-end scale set (else all 1) */
    double scale[KVR_MODE_COUNT];              /* per schedule: kvr_predict_costs_set_scale */
    int64_t scale_upto[KVR_MODE_COUNT];        /* its prompt lengths: <= this (0: all) */
};

/* Check that a fit is usable (op/form/coefficient counts consistent, values finite). */
kvr_status predict_fit_check(const kvr_predict_fit *f, const char *what, kvr_error *err);
/* Coefficients of form with nb breaks; the regressors of one observation at (x, P) in row
 * (returns the column count) -- what fits are made from (costfit.c) and evaluated with. */
int predict_fit_n_coef(kvr_predict_form form, int nb);
int predict_fit_row(kvr_predict_form form, const double *br, int nb, double x, double P,
                    double *row);

// ----------------------------------------------------------------------------
// KVR-P (predict.c; fitting: kvrp.c)

typedef struct predict_kvrp_entry {
    int p;                   /* ranks */
    int n;                   /* contexts (knots) */
    kvr_predictor_form form;
    int64_t *contexts;       /* n, ascending */
    int64_t *chunks;         /* n x p: the KVR-S partitions fitted */
    double *x;               /* n knots: C or log C (interpolants) */
    double *f;               /* (p-1) x n boundary fractions S_i / C at the knots (balanced-resid:
                              * their residuals from the balanced form) */
    double *d;               /* (p-1) x n Hermite slopes df/dx at the knots (Steffen forms) */
    double c0;               /* balanced forms: C0 of k = C / C0 (0: k = 0, the even split) */
    int nb;                  /* regression basis size (0 for interpolants) */
    double c_ref;            /* regression: C is scaled by c_ref */
    double *b;               /* (p-1) x nb regression coefficients */
    kvr_predictor_stats st;
} predict_kvrp_entry;

struct kvr_predictor {
    int64_t g;
    char *label;        /* never NULL */
    char *costs_source; /* the cost model's source at fit time; never NULL */
    char *model;        /* never NULL */
    int n_layers;
    predict_kvrp_entry *e; /* ascending p */
    int n_e;
    kvr_strategy_table *plan; /* the strategy table (NULL: none) */
};

/* Does the form keep knots (x, f) / interpolate in log C / use Steffen slopes / the balanced
 * term; its regression basis size (0: none); the fewest contexts it can be built from. */
bool predict_form_has_knots(kvr_predictor_form f);
bool predict_form_is_log(kvr_predictor_form f);
bool predict_form_is_steffen(kvr_predictor_form f);
bool predict_form_has_balanced(kvr_predictor_form f);
int predict_form_nb(kvr_predictor_form f);
int predict_form_min_knots(kvr_predictor_form f);
/* The balanced boundary fraction for q = (i+1)/p at k = C / C0. */
double predict_balanced(double q, double k);
/* Regression basis at C (scaled by c_ref): 1, 1/s, log s, s. */
static inline void predict_kvrp_basis(double C, double c_ref, double *phi) {
    double s = C / c_ref;
    phi[0] = 1;
    phi[1] = 1 / s;
    phi[2] = log(s);
    phi[3] = s;
}
/* The boundary fractions of e at C rounded into chunks (p entries; see kvr_predictor_predict). */
void predict_kvrp_entry_predict(const predict_kvrp_entry *e, int64_t C, int64_t g,
                                int64_t *chunks);
void predict_kvrp_entry_free(predict_kvrp_entry *e);
/* Insert (or replace) an entry, taking ownership of its arrays. */
kvr_status predict_kvrp_insert(kvr_predictor *kp, predict_kvrp_entry *e, kvr_error *err);
/* An empty predictor for granularity g (kvr_predictor_create). */
kvr_status predict_kvrp_create(int64_t granularity, const char *label, kvr_predictor **out,
                               kvr_error *err);

// ----------------------------------------------------------------------------
// JSON helpers (json.c)

/* A number written with 17 significant digits (exact round trip); NaN/inf as null. */
struct cJSON *predict_json_num(double v);
/* Add that number to obj under key. */
void predict_json_add_num(struct cJSON *obj, const char *key, double v);
/* An array of n numbers. */
struct cJSON *predict_json_nums(const double *v, int n);
/* The fixed overheads of c as the search cost file's "overheads" object (json.c). */
struct cJSON *predict_overheads_json(const kvr_predict_costs *c);
/* Render and free root (NULL root = out of memory). */
kvr_status predict_json_finish(struct cJSON *root, char **out, kvr_error *err);
/* Fit <-> cJSON object (the "kvr-predict-fit/1" body). */
struct cJSON *predict_fit_json(const kvr_predict_fit *f);
kvr_status predict_fit_parse(const struct cJSON *o, const char *what, kvr_predict_fit *out,
                             kvr_error *err);
/* A cost model from a parsed "kvr-predict-costs/1" object (numbers exactly as parsed). */
kvr_status predict_costs_from_obj(const struct cJSON *root, const char *name,
                                  kvr_predict_costs **out, kvr_error *err);

/* The strategy table <-> its cJSON object (plan.c; json.c embeds it in a predictor). */
struct cJSON *predict_plan_json(const kvr_strategy_table *st);
kvr_status predict_plan_parse(const struct cJSON *o, const char *name, kvr_strategy_table **out,
                              kvr_error *err);

#endif /* KVR_KVRP_INTERNAL_H */
