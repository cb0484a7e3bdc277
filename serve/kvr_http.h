/* kvr_http.h -- kvr-serve --http: an OpenAI-compatible HTTP server over the serving engine
 * (kvr_engine.h), on libmicrohttpd. docs/serving.md ("The HTTP server") has the endpoints, the
 * request fields, the errors and the metrics.
 *
 * Threads: libmicrohttpd runs one thread per connection; they parse the bodies (http_parse.c),
 * tokenize, and hand each request to the engine thread -- the thread that calls
 * kvr_http_server_run -- through a job shared under one mutex. The engine thread submits jobs to
 * the engine, runs its iterations (continuous batching across all connections, the same engine
 * and scheduler as the trace replay), turns each drawn token into text and wakes the job's
 * connection thread, which writes it out: server-sent events for stream: true (a response whose
 * content-reader callback waits on the job's condition variable), one JSON body otherwise. A
 * connection that goes away (its response is freed before the job finished) marks the job
 * cancelled; the engine thread cancels it in the engine between iterations (its KV blocks
 * freed). Each finished request is stored (kvr_db_serving_requests_add) before its client gets
 * its last bytes, so a request a client saw finish survives a SIGKILL.
 *
 * Usage:   kvr_http_params hp = kvr_http_params_default();  hp.port = 8080;
 *          kvr_http_server *s;  kvr_http_server_create(eng, tok, &hp, &s, &err);  // listening
 *          kvr_http_server_run(s, &stop_flag, &err);   // returns after *stop_flag is set
 *          kvr_http_server_destroy(s);
 * Ownership: the server borrows the engine, the tokenizer and the store for its life.
 * Threads: create, run and destroy on one thread; the engine belongs to that thread meanwhile. */
#ifndef KVR_HTTP_H
#define KVR_HTTP_H
#include <signal.h>

#include "kvr_db.h"
#include "kvr_engine.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvr_http_params {
    const char *host;           /* address to listen on ("127.0.0.1"); IPv4 */
    int32_t port;               /* 0: a free port (kvr_http_server_port) */
    size_t max_body_bytes;      /* larger request bodies get 413, unread beyond it (1 MiB) */
    int32_t max_connections;    /* connections (threads) at once (64) */
    int32_t timeout_s;          /* an idle connection is closed after it (60) */
    const char *model_name;     /* the model id /v1/models lists and responses carry */
    int64_t default_max_tokens; /* chat requests without max_tokens (256; completions: 16) */
    uint64_t seed;              /* a request without a seed samples with seed + its index */
    double shutdown_grace_s;    /* in-flight requests get this long to finish at shutdown (10) */
    const int32_t *stop_ids;    /* end-of-generation ids (kvr_tokenizer_eog), copied */
    int32_t n_stop_ids;
    /* the store (NULL: none): the run's header as the caller fills it (kind measured, policy,
     * the scheduler's parameters, model and device ids, note; an empty trace becomes
     * "http://HOST:PORT"); the server begins it, adds each finished request and ends it with
     * the summary at shutdown */
    kvr_db *db;
    const kvr_db_serving_run *run;
} kvr_http_params;
/* 127.0.0.1, port 0, 1 MiB bodies, 64 connections, 60 s, model "kvr", 256 tokens, seed 0,
 * grace 10 s, no stop ids, no store. */
KVR_API kvr_http_params kvr_http_params_default(void);

typedef struct kvr_http_server kvr_http_server;

/* Start listening (libmicrohttpd's threads accept connections from now on; requests wait for
 * kvr_http_server_run). Errors: KVR_ERR_INVALID_ARG (parameters; a host that is not an IPv4
 * address), KVR_ERR_IO (the port cannot be bound: the message says why), KVR_ERR_UNSUPPORTED
 * (the chat template cannot be formatted: not an error here -- chat requests get a 500 naming
 * it; see kvr_http_server_chat_format), KVR_ERR_DB (the store's header), NOMEM. */
KVR_API kvr_status kvr_http_server_create(kvr_engine *eng, const kvr_tokenizer *tok,
                                          const kvr_http_params *p, kvr_http_server **out,
                                          kvr_error *err);
KVR_API int32_t kvr_http_server_port(const kvr_http_server *s);
/* The chat format in use ("chatml", "llama3", ...) or, when chat requests are refused, the
 * reason (*ok false). */
KVR_API const char *kvr_http_server_chat_format(const kvr_http_server *s, bool *ok);
/* The stored serving run's id (0: no store). */
KVR_API int64_t kvr_http_server_run_id(const kvr_http_server *s);

/* Run the engine until *stop becomes nonzero (a signal handler sets it); then stop accepting
 * connections, let in-flight requests finish for shutdown_grace_s, cancel the rest, write the
 * run's summary, and return. Errors: the engine's (a failed iteration: every request gets a
 * 500) and the store's. */
KVR_API kvr_status kvr_http_server_run(kvr_http_server *s, volatile sig_atomic_t *stop,
                                       kvr_error *err);

typedef struct kvr_http_stats {
    int64_t requests;  /* HTTP requests answered */
    int64_t finished;  /* generation requests finished */
    int64_t cancelled; /* client went away, or shutdown */
    int64_t stored;    /* requests written to the store */
    int64_t prompt_tokens, generated_tokens;
} kvr_http_stats;
KVR_API kvr_http_stats kvr_http_server_stats(kvr_http_server *s);
/* Stop the daemon (if running) and free (NULL is a no-op). */
KVR_API void kvr_http_server_destroy(kvr_http_server *s);

#ifdef __cplusplus
}
#endif
#endif /* KVR_HTTP_H */
