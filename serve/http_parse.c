/* http_parse.c -- the OpenAI request bodies of kvr-serve --http (JSON -> http_request, through
 * cJSON) and the chat templates' prompt formats (serve_internal.h; docs/serving.md, "The HTTP
 * server"). No I/O, no model: the fuzz target and test_http run it alone. */
#include "serve_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 400 with the field that caused it (OpenAI's "param") */
static kvr_status bad(http_request *r, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static kvr_status bad(http_request *r, const char *param, const char *fmt, ...) {
    snprintf(r->param, sizeof r->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
    return KVR_ERR_INVALID_ARG;
}

static char *dup_str(const char *s) {
    const size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

void http_request_free(http_request *r) {
    if (!r) return;
    free(r->prompt), free(r->prompt_ids), free(r->model);
    for (int32_t i = 0; i < r->n_messages; i++) free(r->messages[i].content);
    free(r->messages);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

/* a whole number in [lo, hi] */
static kvr_status get_int(http_request *r, const cJSON *v, const char *name, int64_t lo,
                          int64_t hi, int64_t *out) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble))
        return bad(r, name, "'%s' must be an integer", name);
    if (v->valuedouble < (double)lo || v->valuedouble > (double)hi)
        return bad(r, name, "'%s' is %.17g: must be in [%lld, %lld]", name, v->valuedouble,
                   (long long)lo, (long long)hi);
    *out = (int64_t)v->valuedouble;
    return KVR_OK;
}

static kvr_status get_num(http_request *r, const cJSON *v, const char *name, double lo, double hi,
                          double *out) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return bad(r, name, "'%s' must be a number", name);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return bad(r, name, "'%s' is %g: must be in [%g, %g]", name, v->valuedouble, lo, hi);
    *out = v->valuedouble;
    return KVR_OK;
}

static kvr_status get_bool(http_request *r, const cJSON *v, const char *name, bool *out) {
    if (!cJSON_IsBool(v)) return bad(r, name, "'%s' must be true or false", name);
    *out = cJSON_IsTrue(v);
    return KVR_OK;
}

static kvr_status nomem(http_request *r) {
    snprintf(r->msg, sizeof r->msg, "out of memory");
    r->param[0] = 0;
    return KVR_ERR_NOMEM;
}

/* prompt: a string, an array of token ids, or an array holding one of those */
static kvr_status get_prompt(http_request *r, const cJSON *v) {
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 1 &&
        (cJSON_IsString(v->child) || cJSON_IsArray(v->child)))
        v = v->child; /* a batch of one */
    if (cJSON_IsString(v)) {
        if (!v->valuestring[0]) return bad(r, "prompt", "'prompt' is empty");
        return (r->prompt = dup_str(v->valuestring)) ? KVR_OK : nomem(r);
    }
    if (!cJSON_IsArray(v))
        return bad(r, "prompt", "'prompt' must be a string or an array of token ids");
    const int n = cJSON_GetArraySize(v);
    if (n == 0) return bad(r, "prompt", "'prompt' is empty");
    if (n > HTTP_MAX_PROMPT_IDS)
        return bad(r, "prompt", "'prompt' has %d token ids (at most %d)", n, HTTP_MAX_PROMPT_IDS);
    if (!cJSON_IsNumber(v->child))
        return bad(r, "prompt", "'prompt': a batch of several prompts is not supported (one "
                                "string, or one array of token ids)");
    r->prompt_ids = malloc((size_t)n * sizeof *r->prompt_ids);
    if (!r->prompt_ids) return nomem(r);
    int i = 0;
    for (const cJSON *x = v->child; x; x = x->next, i++) {
        int64_t id = 0;
        if (get_int(r, x, "prompt", 0, INT32_MAX, &id) != KVR_OK)
            return bad(r, "prompt", "'prompt'[%d] is not a token id (an integer >= 0)", i);
        r->prompt_ids[i] = (int32_t)id;
    }
    r->n_prompt_ids = n;
    return KVR_OK;
}

static const char *const http_roles[] = {"system", "user", "assistant", "developer"};

static kvr_status get_messages(http_request *r, const cJSON *v) {
    if (!cJSON_IsArray(v)) return bad(r, "messages", "'messages' must be an array");
    const int n = cJSON_GetArraySize(v);
    if (n == 0) return bad(r, "messages", "'messages' is empty");
    if (n > HTTP_MAX_MESSAGES)
        return bad(r, "messages", "'messages' has %d entries (at most %d)", n, HTTP_MAX_MESSAGES);
    r->messages = calloc((size_t)n, sizeof *r->messages);
    if (!r->messages) return nomem(r);
    int i = 0;
    for (const cJSON *m = v->child; m; m = m->next, i++) {
        char p[48];
        snprintf(p, sizeof p, "messages[%d]", i);
        if (!cJSON_IsObject(m)) return bad(r, p, "'%s' must be an object", p);
        http_message *x = &r->messages[i];
        r->n_messages = i + 1;
        x->role = -1;
        bool has_content = false;
        for (const cJSON *f = m->child; f; f = f->next) {
            for (const cJSON *g = m->child; g != f; g = g->next)
                if (!strcmp(g->string, f->string))
                    return bad(r, p, "'%s.%s' is given twice", p, f->string);
            if (!strcmp(f->string, "role")) {
                for (int k = 0; k < 4 && cJSON_IsString(f); k++)
                    if (!strcmp(f->valuestring, http_roles[k])) x->role = k == 3 ? 0 : k;
                if (x->role < 0)
                    return bad(r, p, "'%s.role' must be system, developer, user or assistant", p);
            } else if (!strcmp(f->string, "content")) {
                has_content = true;
                if (cJSON_IsString(f)) {
                    if (!(x->content = dup_str(f->valuestring))) return nomem(r);
                    continue;
                }
                if (!cJSON_IsArray(f))
                    return bad(r, p, "'%s.content' must be a string or an array of text parts", p);
                /* text parts, joined */
                size_t len = 0;
                for (const cJSON *t = f->child; t; t = t->next) {
                    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(t, "type");
                    const cJSON *tx = cJSON_GetObjectItemCaseSensitive(t, "text");
                    if (!cJSON_IsObject(t) || !cJSON_IsString(ty) || strcmp(ty->valuestring, "text") ||
                        !cJSON_IsString(tx) || cJSON_GetArraySize(t) != 2)
                        return bad(r, p, "'%s.content': only parts {\"type\": \"text\", \"text\": "
                                         "...} are supported",
                                   p);
                    len += strlen(tx->valuestring);
                }
                if (!(x->content = malloc(len + 1))) return nomem(r);
                len = 0;
                for (const cJSON *t = f->child; t; t = t->next) {
                    const char *tx = cJSON_GetObjectItemCaseSensitive(t, "text")->valuestring;
                    memcpy(x->content + len, tx, strlen(tx));
                    len += strlen(tx);
                }
                x->content[len] = 0;
            } else if (!strcmp(f->string, "name")) {
                if (!cJSON_IsString(f)) return bad(r, p, "'%s.name' must be a string", p);
            } else
                return bad(r, p, "'%s' has an unknown field '%s' (role, content, name)", p,
                           f->string);
        }
        if (x->role < 0) return bad(r, p, "'%s' has no role", p);
        if (!has_content) return bad(r, p, "'%s' has no content", p);
    }
    return KVR_OK;
}

static kvr_status get_stop(http_request *r, const cJSON *v) {
    if (cJSON_IsNull(v)) return KVR_OK;
    if (cJSON_IsString(v)) {
        if (!v->valuestring[0]) return bad(r, "stop", "'stop' is an empty string");
        r->n_stop = 1;
        return (r->stop[0] = dup_str(v->valuestring)) ? KVR_OK : nomem(r);
    }
    if (!cJSON_IsArray(v)) return bad(r, "stop", "'stop' must be a string or an array of strings");
    if (cJSON_GetArraySize(v) > HTTP_MAX_STOP)
        return bad(r, "stop", "'stop' has more than %d strings", HTTP_MAX_STOP);
    for (const cJSON *x = v->child; x; x = x->next) {
        if (!cJSON_IsString(x) || !x->valuestring[0])
            return bad(r, "stop", "'stop' must hold non-empty strings");
        if (strlen(x->valuestring) > HTTP_MAX_STOP_BYTES)
            return bad(r, "stop", "a 'stop' string is longer than %d bytes", HTTP_MAX_STOP_BYTES);
        if (!(r->stop[r->n_stop++] = dup_str(x->valuestring))) return nomem(r);
    }
    return KVR_OK;
}

/* OpenAI fields kvr does not implement: accepted only at their no-op value */
static bool http_noop_value(const char *name, const cJSON *v) {
    if (cJSON_IsNull(v)) return true;
    if (!strcmp(name, "n") || !strcmp(name, "best_of"))
        return cJSON_IsNumber(v) && v->valuedouble == 1;
    if (!strcmp(name, "presence_penalty") || !strcmp(name, "frequency_penalty"))
        return cJSON_IsNumber(v) && v->valuedouble == 0;
    if (!strcmp(name, "echo") || !strcmp(name, "logprobs") || !strcmp(name, "parallel_tool_calls"))
        return cJSON_IsFalse(v);
    if (!strcmp(name, "logit_bias") || !strcmp(name, "metadata"))
        return cJSON_IsObject(v) && !v->child;
    if (!strcmp(name, "user")) return cJSON_IsString(v);
    if (!strcmp(name, "response_format")) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "type");
        return cJSON_IsString(t) && !strcmp(t->valuestring, "text") && cJSON_GetArraySize(v) == 1;
    }
    if (!strcmp(name, "tools")) return cJSON_IsArray(v) && !v->child;
    return false; /* suffix, top_logprobs, tool_choice, ...: only null */
}

static const char *const http_noop_completions[] = {
    "n", "best_of", "presence_penalty", "frequency_penalty", "echo", "logprobs", "logit_bias",
    "user", "suffix", NULL};
static const char *const http_noop_chat[] = {
    "n", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "logit_bias",
    "user", "response_format", "tools", "tool_choice", "parallel_tool_calls", "metadata", NULL};

static bool in_list(const char *const *l, const char *s) {
    for (; *l; l++)
        if (!strcmp(*l, s)) return true;
    return false;
}

kvr_status http_request_parse(const char *body, size_t len, bool chat, http_request *r) {
    memset(r, 0, sizeof *r);
    r->chat = chat;
    r->max_tokens = -1;
    r->temperature = 1;
    r->top_p = 1;
    if (len == 0) return bad(r, NULL, "the request body is empty (a JSON object is expected)");
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(body, len, &end, false);
    if (!j) {
        const size_t at = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
        return bad(r, NULL, "the request body is not valid JSON (near byte %zu)", at);
    }
    kvr_status st = KVR_OK;
    if (!cJSON_IsObject(j)) st = bad(r, NULL, "the request body must be a JSON object");
    bool has_input = false;
    for (const cJSON *f = j->child; st == KVR_OK && f; f = f->next) {
        const char *k = f->string;
        for (const cJSON *g = j->child; g != f; g = g->next)
            if (!strcmp(g->string, k)) {
                st = bad(r, k, "'%s' is given twice", k);
                break;
            }
        if (st != KVR_OK) break;
        int64_t i64 = 0;
        if (!chat && !strcmp(k, "prompt")) {
            st = get_prompt(r, f), has_input = true;
        } else if (chat && !strcmp(k, "messages")) {
            st = get_messages(r, f), has_input = true;
        } else if (!strcmp(k, "model")) {
            if (!cJSON_IsString(f)) st = bad(r, k, "'model' must be a string");
            else if (!(r->model = dup_str(f->valuestring))) st = nomem(r);
        } else if (!strcmp(k, "max_tokens") || (chat && !strcmp(k, "max_completion_tokens"))) {
            if (!cJSON_IsNull(f) && (st = get_int(r, f, k, 1, HTTP_MAX_TOKENS, &i64)) == KVR_OK)
                r->max_tokens = i64;
        } else if (!strcmp(k, "temperature")) {
            if (!cJSON_IsNull(f)) st = get_num(r, f, k, 0, 2, &r->temperature);
        } else if (!strcmp(k, "top_p")) {
            if (!cJSON_IsNull(f)) st = get_num(r, f, k, 0, 1, &r->top_p);
            if (st == KVR_OK && !(r->top_p > 0)) st = bad(r, k, "'top_p' must be > 0");
        } else if (!strcmp(k, "seed")) {
            if (!cJSON_IsNull(f) && (st = get_int(r, f, k, INT64_MIN / 2, INT64_MAX / 2, &i64)) == KVR_OK)
                r->has_seed = true, r->seed = (uint64_t)i64;
        } else if (!strcmp(k, "stop")) {
            st = get_stop(r, f);
        } else if (!strcmp(k, "stream")) {
            if (!cJSON_IsNull(f)) st = get_bool(r, f, k, &r->stream);
        } else if (!strcmp(k, "stream_options")) {
            if (cJSON_IsNull(f)) continue;
            if (!cJSON_IsObject(f)) {
                st = bad(r, k, "'stream_options' must be an object");
                continue;
            }
            for (const cJSON *o = f->child; st == KVR_OK && o; o = o->next) {
                if (!strcmp(o->string, "include_usage"))
                    st = get_bool(r, o, "stream_options.include_usage", &r->include_usage);
                else
                    st = bad(r, "stream_options", "'stream_options' has an unknown field '%s' "
                                                  "(include_usage)",
                             o->string);
            }
        } else if (in_list(chat ? http_noop_chat : http_noop_completions, k)) {
            if (!http_noop_value(k, f))
                st = bad(r, k, "'%s' is not supported by kvr-serve (only its default value)", k);
        } else
            st = bad(r, k, "unknown field '%s'", k);
    }
    if (st == KVR_OK && !has_input)
        st = bad(r, chat ? "messages" : "prompt", "'%s' is required", chat ? "messages" : "prompt");
    cJSON_Delete(j);
    return st;
}

// ----------------------------------------------------------------------------
// chat templates: the family from the template text, as llama.cpp's llm_chat_detect_template

static const char *const chat_names[HTTP_CHAT_COUNT] = {
    "chatml", "llama2", "llama2-sys", "llama2-sys-bos", "llama2-sys-strip",
    "llama3", "phi3",   "zephyr",     "gemma"};

const char *http_chat_name(http_chat_format f) {
    return f >= 0 && f < HTTP_CHAT_COUNT ? chat_names[f] : "?";
}

kvr_status http_chat_detect(const char *t, http_chat_format *out, kvr_error *err) {
    if (!t || !*t)
        return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                             "the model has no chat template (tokenizer.chat_template): use "
                             "/v1/completions");
#define HAS(s) (strstr(t, (s)) != NULL)
    const char *family = NULL; /* a family llama.cpp knows and kvr does not format */
    if (HAS("<|im_start|>")) {
        if (HAS("<|im_sep|>")) family = "phi4";
        else if (HAS("<end_of_utterance>")) family = "smolvlm";
        else return *out = HTTP_CHAT_CHATML, KVR_OK;
    } else if (strncmp(t, "mistral", 7) == 0 || HAS("[INST]")) {
        if (HAS("[SYSTEM_PROMPT]")) family = "mistral-v7";
        else if (HAS("' [INST] ' + system_message") || HAS("[AVAILABLE_TOOLS]"))
            family = "mistral-v1/v3";
        else if (HAS("content.strip()")) return *out = HTTP_CHAT_LLAMA2_SYS_STRIP, KVR_OK;
        else if (HAS("bos_token + '[INST]")) return *out = HTTP_CHAT_LLAMA2_SYS_BOS, KVR_OK;
        else if (HAS("<<SYS>>")) return *out = HTTP_CHAT_LLAMA2_SYS, KVR_OK;
        else return *out = HTTP_CHAT_LLAMA2, KVR_OK;
    } else if (HAS("<|assistant|>") && HAS("<|end|>")) {
        return *out = HTTP_CHAT_PHI3, KVR_OK;
    } else if (HAS("<|assistant|>") && HAS("<|user|>")) {
        family = HAS("</s>") ? "falcon3" : "glmedge";
    } else if (HAS("<|user|>") && HAS("<|endoftext|>")) {
        return *out = HTTP_CHAT_ZEPHYR, KVR_OK;
    } else if (HAS("<start_of_turn>")) {
        return *out = HTTP_CHAT_GEMMA, KVR_OK;
    } else if (HAS("<|start_header_id|>") && HAS("<|end_header_id|>")) {
        return *out = HTTP_CHAT_LLAMA3, KVR_OK;
    }
#undef HAS
    if (family)
        return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                             "the model's chat template is of the %s family, which kvr-serve does "
                             "not format (it formats chatml, llama2, llama3, phi3, zephyr, "
                             "gemma): use /v1/completions",
                             family);
    char head[61];
    size_t n = 0;
    for (; t[n] && n < sizeof head - 1; n++) head[n] = (t[n] == '\n' || t[n] == '"') ? ' ' : t[n];
    head[n] = 0;
    return kvr_error_set(err, KVR_ERR_UNSUPPORTED,
                         "the model's chat template is not one kvr-serve recognises (it formats "
                         "chatml, llama2, llama3, phi3, zephyr, gemma; the template starts '%s'): "
                         "use /v1/completions",
                         head);
}

static void trim_span(const char *s, const char **b, size_t *n) {
    const char *e = s + strlen(s);
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r')) e--;
    *b = s, *n = (size_t)(e - s);
}

kvr_status http_chat_prompt(http_chat_format f, const http_message *m, int32_t n, char **out,
                            kvr_error *err) {
    static const char *const role[3] = {"system", "user", "assistant"};
    kvr_text t = {0};
    const char *c;
    size_t cn;
    switch (f) {
        case HTTP_CHAT_CHATML:
            for (int32_t i = 0; i < n; i++)
                kvr_text_printf(&t, "<|im_start|>%s\n%s<|im_end|>\n", role[m[i].role], m[i].content);
            kvr_text_printf(&t, "<|im_start|>assistant\n");
            break;
        case HTTP_CHAT_LLAMA2:
        case HTTP_CHAT_LLAMA2_SYS:
        case HTTP_CHAT_LLAMA2_SYS_BOS:
        case HTTP_CHAT_LLAMA2_SYS_STRIP: {
            bool inside = true; /* llama.cpp: no BOS at the start */
            kvr_text_printf(&t, "[INST] ");
            for (int32_t i = 0; i < n; i++) {
                if (f == HTTP_CHAT_LLAMA2_SYS_STRIP) trim_span(m[i].content, &c, &cn);
                else c = m[i].content, cn = strlen(c);
                if (!inside) {
                    inside = true;
                    kvr_text_printf(&t, f == HTTP_CHAT_LLAMA2_SYS_BOS ? "<s>[INST] " : "[INST] ");
                }
                if (m[i].role == HTTP_ROLE_SYSTEM) {
                    if (f != HTTP_CHAT_LLAMA2)
                        kvr_text_printf(&t, "<<SYS>>\n%.*s\n<</SYS>>\n\n", (int)cn, c);
                    else
                        kvr_text_printf(&t, "%.*s\n", (int)cn, c);
                } else if (m[i].role == HTTP_ROLE_USER) {
                    kvr_text_printf(&t, "%.*s [/INST]", (int)cn, c);
                } else {
                    kvr_text_printf(&t, "%.*s</s>", (int)cn, c);
                    inside = false;
                }
            }
            break;
        }
        case HTTP_CHAT_LLAMA3:
            for (int32_t i = 0; i < n; i++) {
                trim_span(m[i].content, &c, &cn);
                kvr_text_printf(&t, "<|start_header_id|>%s<|end_header_id|>\n\n%.*s<|eot_id|>",
                                role[m[i].role], (int)cn, c);
            }
            kvr_text_printf(&t, "<|start_header_id|>assistant<|end_header_id|>\n\n");
            break;
        case HTTP_CHAT_PHI3:
            for (int32_t i = 0; i < n; i++)
                kvr_text_printf(&t, "<|%s|>\n%s<|end|>\n", role[m[i].role], m[i].content);
            kvr_text_printf(&t, "<|assistant|>\n");
            break;
        case HTTP_CHAT_ZEPHYR:
            for (int32_t i = 0; i < n; i++)
                kvr_text_printf(&t, "<|%s|>\n%s<|endoftext|>\n", role[m[i].role], m[i].content);
            kvr_text_printf(&t, "<|assistant|>\n");
            break;
        case HTTP_CHAT_GEMMA: {
            /* no system role: system text goes before the next user turn */
            kvr_text sys = {0};
            for (int32_t i = 0; i < n; i++) {
                trim_span(m[i].content, &c, &cn);
                if (m[i].role == HTTP_ROLE_SYSTEM) {
                    kvr_text_printf(&sys, "%.*s", (int)cn, c);
                    continue;
                }
                const bool model = m[i].role == HTTP_ROLE_ASSISTANT;
                kvr_text_printf(&t, "<start_of_turn>%s\n", model ? "model" : "user");
                if (sys.len && !model) {
                    kvr_text_printf(&t, "%s\n\n", sys.s);
                    sys.len = 0;
                    sys.s[0] = 0;
                }
                kvr_text_printf(&t, "%.*s<end_of_turn>\n", (int)cn, c);
            }
            kvr_text_printf(&t, "<start_of_turn>model\n");
            t.nomem = t.nomem || sys.nomem;
            kvr_text_free(&sys);
            break;
        }
        default:
            return kvr_error_set(err, KVR_ERR_INVALID_ARG, "chat format %d", (int)f);
    }
    if (t.nomem || !t.s) {
        kvr_text_free(&t);
        return kvr_error_set(err, KVR_ERR_NOMEM, "out of memory formatting a chat prompt");
    }
    *out = t.s;
    return KVR_OK;
}
