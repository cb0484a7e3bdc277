/* serve_internal.h -- what the serve module's own files share: the RFC 4180 record reader that
 * the kvr trace reader and the importers parse with (trace_csv.c), and the header-to-column
 * lookup. Private to serve/ (tests and the fuzz target may include it). */
#ifndef KVR_SERVE_INTERNAL_H
#define KVR_SERVE_INTERNAL_H

#include "kvr_trace.h"

#define TRACE_CSV_MAX_FIELDS 64
#define TRACE_CSV_MAX_FIELD  (KVR_TRACE_MAX_PROMPT_BYTES + 1) /* bytes per field */

/* A CSV reader over a length-delimited buffer: records are separated by LF or CRLF; a field in
 * double quotes may hold commas, line breaks and "" (a quote); spaces and tabs around a field
 * are dropped (inside quotes they are kept); a UTF-8 byte order mark at the start, blank lines
 * and lines starting with '#' between records are skipped; a NUL byte is an error. */
typedef struct trace_csv {
    const char *buf;
    size_t len, pos;
    const char *name;
    int64_t line;     /* the physical line the reader is on (1-based) */
    int64_t rec_line; /* the line the current record started on */
    char *data;       /* the current record's fields, each NUL-terminated */
    size_t data_len, data_cap;
    size_t off[TRACE_CSV_MAX_FIELDS];
    int n_fields;
    kvr_error *err;
} trace_csv;

void trace_csv_init(trace_csv *c, const char *buf, size_t len, const char *name, kvr_error *err);
void trace_csv_free(trace_csv *c);
/* Read the next record into the fields: *got false at the end of the input. Errors:
 * KVR_ERR_FORMAT "NAME:LINE: cause" (an unterminated quote names the line it opened on),
 * KVR_ERR_NOMEM. */
kvr_status trace_csv_next(trace_csv *c, bool *got);
static inline const char *trace_csv_field(const trace_csv *c, int i) {
    return c->data + c->off[i];
}
/* KVR_ERR_FORMAT "NAME:REC_LINE: msg" (msg printf-style). Returns KVR_ERR_FORMAT. */
kvr_status trace_csv_fail(const trace_csv *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Map the header record's fields to columns: col[i] = the field index of names[i] (matched
 * case-insensitively), -1 when absent. Errors (KVR_ERR_FORMAT, at the header's line): a column
 * named twice; a required column (required[i]) missing, naming the columns found; with
 * strict, a column not in names. */
kvr_status trace_csv_columns(const trace_csv *c, const char *const *names, const bool *required,
                             int n_names, bool strict, int *col);

/* The row must have as many fields as the header: "N fields, the header has M". */
kvr_status trace_csv_check_width(const trace_csv *c, int n_header);

/* A whole number in [lo, hi] from field text v of column what: "column 'WHAT': 'V' is not a
 * whole number" / "is out of range [LO, HI]". */
kvr_status trace_csv_i64(const trace_csv *c, const char *what, const char *v, int64_t lo,
                         int64_t hi, int64_t *out);
/* A finite number in [lo, hi]: "column 'WHAT': 'V' is not a finite number" / out of range. */
kvr_status trace_csv_f64(const trace_csv *c, const char *what, const char *v, double lo,
                         double hi, double *out);

#endif
