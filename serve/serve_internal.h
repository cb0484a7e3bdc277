/* serve_internal.h -- what the serve module's own files share: the RFC 4180 record reader that
 * the kvr trace reader and the importers parse with (trace_csv.c), and the header-to-column
 * lookup; the HTTP server's request-body parser and chat formats (http_parse.c). Private to
 * serve/ (tests and the fuzz targets may include it). */
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

// ----------------------------------------------------------------------------
// kvr-serve --http: OpenAI request bodies (http_parse.c; docs/serving.md, "The HTTP server")

#define HTTP_MAX_PROMPT_IDS (1 << 20) /* token ids in a prompt array */
#define HTTP_MAX_MESSAGES 4096
#define HTTP_MAX_STOP 4 /* OpenAI's bound */
#define HTTP_MAX_STOP_BYTES 256
#define HTTP_MAX_TOKENS (1 << 24)

typedef enum http_role { HTTP_ROLE_SYSTEM, HTTP_ROLE_USER, HTTP_ROLE_ASSISTANT } http_role;

typedef struct http_message {
    int role;      /* http_role ("developer" is system) */
    char *content; /* text parts joined */
} http_message;

/* A parsed /v1/completions or /v1/chat/completions body. Unset: max_tokens -1, temperature 1,
 * top_p 1 (OpenAI's defaults), no seed, no stop strings. */
typedef struct http_request {
    bool chat;
    char *prompt;          /* completions: the prompt text, or NULL with prompt_ids */
    int32_t *prompt_ids;   /* completions: token ids (range checked later, by the model) */
    int64_t n_prompt_ids;
    http_message *messages; /* chat */
    int32_t n_messages;
    char *model;           /* as given (NULL: not given) */
    int64_t max_tokens;    /* -1: not given */
    double temperature, top_p;
    bool has_seed;
    uint64_t seed;
    char *stop[HTTP_MAX_STOP];
    int n_stop;
    bool stream, include_usage;
    /* on an error: the message and OpenAI's "param" (the field; "" for the body) */
    char msg[320];
    char param[64];
} http_request;

/* Parse a body of len bytes (need not be NUL-terminated). Errors (r->msg, r->param):
 * KVR_ERR_INVALID_ARG -- not JSON, not an object, a field of the wrong type or out of range, a
 * field given twice, an unknown field, an OpenAI field kvr does not implement at other than its
 * no-op value, no prompt / messages -- and KVR_ERR_NOMEM. Free with http_request_free either
 * way. */
kvr_status http_request_parse(const char *body, size_t len, bool chat, http_request *r);
void http_request_free(http_request *r); /* frees and zeroes; NULL ok */

/* Chat templates: the family of a GGUF tokenizer.chat_template, detected from its text as
 * llama.cpp's llm_chat_detect_template does, and that family's prompt (llama.cpp's
 * llm_chat_apply_template with add_generation_prompt). */
typedef enum http_chat_format {
    HTTP_CHAT_CHATML,           /* <|im_start|> (SmolLM2, Qwen2) */
    HTTP_CHAT_LLAMA2,           /* [INST] without a system turn */
    HTTP_CHAT_LLAMA2_SYS,       /* [INST] with <<SYS>> */
    HTTP_CHAT_LLAMA2_SYS_BOS,   /* ... and <s> before each later [INST] */
    HTTP_CHAT_LLAMA2_SYS_STRIP, /* ... content.strip() */
    HTTP_CHAT_LLAMA3,           /* <|start_header_id|> */
    HTTP_CHAT_PHI3,             /* <|assistant|> ... <|end|> */
    HTTP_CHAT_ZEPHYR,           /* <|user|> ... <|endoftext|> */
    HTTP_CHAT_GEMMA,            /* <start_of_turn> */
    HTTP_CHAT_COUNT
} http_chat_format;
const char *http_chat_name(http_chat_format f);
/* Errors: KVR_ERR_UNSUPPORTED -- no template, a family llama.cpp knows that kvr does not format
 * (named), or an unknown template (its first characters quoted). */
kvr_status http_chat_detect(const char *tmpl, http_chat_format *out, kvr_error *err);
/* The prompt for messages m[0..n) followed by the assistant's turn; *out malloc'd, NUL-terminated.
 * Errors: KVR_ERR_NOMEM. */
kvr_status http_chat_prompt(http_chat_format f, const http_message *m, int32_t n, char **out,
                            kvr_error *err);

#endif
