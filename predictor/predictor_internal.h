/* predictor_internal.h -- declarations shared by the predictor module's own .c files (and, on
 * purpose, its tests): the cost-model struct, the KVR-P entry struct, fold assignment, exact
 * JSON numbers. Tools and other modules use kvr_predict.h only. */
#ifndef KVR_PREDICTOR_INTERNAL_H
#define KVR_PREDICTOR_INTERNAL_H

#include "kvr_predict.h"

struct cJSON;

// ----------------------------------------------------------------------------
// least squares helpers (lsq.c)

/* The label for messages: opt->label or "fit". */
const char *predict_label(const kvr_predict_lsq_options *opt);
/* Deterministic fold of each of n rows (a seeded Fisher-Yates shuffle dealt round-robin). */
void predict_folds(int n, int k, uint64_t seed, int *fold);
/* splitmix64 step (the project's reproducible generator). */
uint64_t predict_splitmix64(uint64_t *state);

// ----------------------------------------------------------------------------
// fitted cost models (costfit.c)

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
};

/* Check that a fit is usable (op/form/coefficient counts consistent, values finite). */
kvr_status predict_fit_check(const kvr_predict_fit *f, const char *what, kvr_error *err);

// ----------------------------------------------------------------------------
// KVR-P (kvrp.c)

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
/* Fill e->x, e->f, e->d or e->b from e->contexts/e->chunks for e->form (e->x/f/d/b allocated
 * here). */
kvr_status predict_kvrp_build(predict_kvrp_entry *e, kvr_error *err);
void predict_kvrp_entry_free(predict_kvrp_entry *e);
/* Insert (or replace) an entry, taking ownership of its arrays. */
kvr_status predict_kvrp_insert(kvr_predictor *kp, predict_kvrp_entry *e, kvr_error *err);

// ----------------------------------------------------------------------------
// JSON helpers (json.c)

/* A number written with 17 significant digits (exact round trip); NaN/inf as null. */
struct cJSON *predict_json_num(double v);
/* Add that number to obj under key. */
void predict_json_add_num(struct cJSON *obj, const char *key, double v);
/* An array of n numbers. */
struct cJSON *predict_json_nums(const double *v, int n);
/* Render and free root (NULL root = out of memory). */
kvr_status predict_json_finish(struct cJSON *root, char **out, kvr_error *err);
/* Fit <-> cJSON object (the "kvr-predict-fit/1" body). */
struct cJSON *predict_fit_json(const kvr_predict_fit *f);
kvr_status predict_fit_parse(const struct cJSON *o, const char *what, kvr_predict_fit *out,
                             kvr_error *err);
char *predict_strdup(const char *s); /* NULL -> "" */
/* A cost model from a parsed "kvr-predict-costs/1" object (numbers exactly as parsed). */
kvr_status predict_costs_from_obj(const struct cJSON *root, const char *name,
                                  kvr_predict_costs **out, kvr_error *err);

#endif /* KVR_PREDICTOR_INTERNAL_H */
