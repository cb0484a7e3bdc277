/* test_http.c -- kvr-serve --http's request-body parser (http_request_parse) and chat-template
 * formats (http_chat_detect, http_chat_prompt; serve_internal.h). The formats are checked
 * against llama.cpp's own expectations for its test conversation (tests/test-chat-template.cpp:
 * the same system/user/assistant turns, the same expected prompts); the server itself is
 * driven end to end by tests/ref/test_http_server.py. */
#include "kvr_test.h"
#include "serve_internal.h"

#include <stdlib.h>
#include <string.h>

static kvr_status parse(const char *body, bool chat, http_request *r) {
    return http_request_parse(body, strlen(body), chat, r);
}

static bool parse_ok(const char *body, bool chat, http_request *r) {
    const kvr_status st = parse(body, chat, r);
    if (st != KVR_OK) fprintf(stderr, "  body %s: %s\n", body, r->msg);
    return st == KVR_OK;
}

/* the body must be refused, with param and a message containing want */
static void refused(const char *body, bool chat, const char *param, const char *want) {
    http_request r;
    const kvr_status st = parse(body, chat, &r);
    KVR_CHECK(st == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(r.param, param) == 0);
    KVR_CHECK(strstr(r.msg, want) != NULL);
    if (st != KVR_ERR_INVALID_ARG || strcmp(r.param, param) || !strstr(r.msg, want))
        fprintf(stderr, "  body %s: param '%s', message '%s' (want '%s', '%s')\n", body, r.param,
                r.msg, param, want);
    http_request_free(&r);
}

static void test_parse_completions(void) {
    http_request r;
    KVR_CHECK(parse_ok("{\"model\":\"m\",\"prompt\":\"Hello\",\"max_tokens\":8,\"temperature\":0,"
                       "\"top_p\":0.5,\"seed\":-3,\"stop\":[\"\\n\",\"END\"],\"stream\":true,"
                       "\"stream_options\":{\"include_usage\":true},\"n\":1,\"user\":\"u\","
                       "\"logprobs\":null,\"echo\":false}",
                       false, &r));
    KVR_CHECK(r.prompt && strcmp(r.prompt, "Hello") == 0 && !r.prompt_ids);
    KVR_CHECK(r.model && strcmp(r.model, "m") == 0);
    KVR_CHECK(r.max_tokens == 8 && r.temperature == 0 && r.top_p == 0.5);
    KVR_CHECK(r.has_seed && r.seed == (uint64_t)-3);
    KVR_CHECK(r.n_stop == 2 && strcmp(r.stop[0], "\n") == 0 && strcmp(r.stop[1], "END") == 0);
    KVR_CHECK(r.stream && r.include_usage);
    http_request_free(&r);
    /* defaults; token ids; a batch of one */
    KVR_CHECK(parse_ok("{\"prompt\":[[5,0,7]]}", false, &r));
    KVR_CHECK(r.n_prompt_ids == 3 && r.prompt_ids[0] == 5 && r.prompt_ids[2] == 7);
    KVR_CHECK(r.max_tokens == -1 && r.temperature == 1 && r.top_p == 1 && !r.has_seed);
    KVR_CHECK(!r.stream && r.n_stop == 0);
    http_request_free(&r);
    KVR_CHECK(parse_ok("{\"prompt\":[\"one\"],\"stop\":\"x\",\"max_tokens\":null}", false, &r));
    KVR_CHECK(r.prompt && strcmp(r.prompt, "one") == 0 && r.n_stop == 1 && r.max_tokens == -1);
    http_request_free(&r);

    refused("", false, "", "empty");
    refused("{\"prompt\":\"x\"", false, "", "not valid JSON");
    refused("[1,2]", false, "", "must be a JSON object");
    refused("{\"prompt\":\"x\",\"foo\":1}", false, "foo", "unknown field 'foo'");
    refused("{\"prompt\":\"x\",\"prompt\":\"y\"}", false, "prompt", "given twice");
    refused("{\"max_tokens\":4}", false, "prompt", "'prompt' is required");
    refused("{\"prompt\":\"\"}", false, "prompt", "empty");
    refused("{\"prompt\":5}", false, "prompt", "string or an array of token ids");
    refused("{\"prompt\":[1,-2]}", false, "prompt", "'prompt'[1] is not a token id");
    refused("{\"prompt\":[1,2.5]}", false, "prompt", "'prompt'[1]");
    refused("{\"prompt\":[\"a\",\"b\"]}", false, "prompt", "a batch of several prompts");
    refused("{\"prompt\":\"x\",\"max_tokens\":\"8\"}", false, "max_tokens", "must be an integer");
    refused("{\"prompt\":\"x\",\"max_tokens\":0}", false, "max_tokens", "must be in [1,");
    refused("{\"prompt\":\"x\",\"max_tokens\":1.5}", false, "max_tokens", "must be an integer");
    refused("{\"prompt\":\"x\",\"temperature\":3}", false, "temperature", "must be in [0, 2]");
    refused("{\"prompt\":\"x\",\"temperature\":true}", false, "temperature", "must be a number");
    refused("{\"prompt\":\"x\",\"top_p\":0}", false, "top_p", "must be > 0");
    refused("{\"prompt\":\"x\",\"stream\":1}", false, "stream", "true or false");
    refused("{\"prompt\":\"x\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", false, "stop",
            "more than 4");
    refused("{\"prompt\":\"x\",\"stop\":[\"\"]}", false, "stop", "non-empty");
    refused("{\"prompt\":\"x\",\"n\":2}", false, "n", "not supported");
    refused("{\"prompt\":\"x\",\"logprobs\":3}", false, "logprobs", "not supported");
    refused("{\"prompt\":\"x\",\"stream_options\":{\"x\":1}}", false, "stream_options",
            "unknown field 'x'");
    refused("{\"prompt\":\"x\",\"messages\":[]}", false, "messages", "unknown field");
}

static void test_parse_chat(void) {
    http_request r;
    KVR_CHECK(parse_ok("{\"messages\":[{\"role\":\"developer\",\"content\":\"S\"},{\"role\":"
                       "\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":"
                       "\"text\",\"text\":\"b\"}],\"name\":\"n\"},{\"role\":\"assistant\","
                       "\"content\":\"\"}],\"max_completion_tokens\":3}",
                       true, &r));
    KVR_CHECK(r.chat && r.n_messages == 3 && r.max_tokens == 3);
    if (r.n_messages == 3) {
        KVR_CHECK(r.messages[0].role == HTTP_ROLE_SYSTEM && strcmp(r.messages[0].content, "S") == 0);
        KVR_CHECK(r.messages[1].role == HTTP_ROLE_USER && strcmp(r.messages[1].content, "ab") == 0);
        KVR_CHECK(r.messages[2].role == HTTP_ROLE_ASSISTANT && r.messages[2].content[0] == 0);
    }
    http_request_free(&r);
    refused("{\"prompt\":\"x\"}", true, "prompt", "unknown field 'prompt'");
    refused("{\"model\":\"m\"}", true, "messages", "'messages' is required");
    refused("{\"messages\":[]}", true, "messages", "empty");
    refused("{\"messages\":{}}", true, "messages", "must be an array");
    refused("{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", true, "messages[0]",
            "role' must be");
    refused("{\"messages\":[{\"content\":\"x\"}]}", true, "messages[0]", "no role");
    refused("{\"messages\":[{\"role\":\"user\"}]}", true, "messages[0]", "no content");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"content\":\"y\"}]}", true,
            "messages[0]", "'messages[0].content' is given twice"); /* found by fuzz_http: a leak */
    refused("{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"x\":1}]}", true, "messages[0]",
            "unknown field 'x'");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", true,
            "messages[0]", "only parts");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{}]}", true, "tools",
            "not supported");
}

/* llama.cpp's test conversation (tests/test-chat-template.cpp) */
static const http_message conv[] = {
    {HTTP_ROLE_SYSTEM, (char *)"You are a helpful assistant"},
    {HTTP_ROLE_USER, (char *)"Hello"},
    {HTTP_ROLE_ASSISTANT, (char *)"Hi there"},
    {HTTP_ROLE_USER, (char *)"Who are you"},
    {HTTP_ROLE_ASSISTANT, (char *)"   I am an assistant   "},
    {HTTP_ROLE_USER, (char *)"Another question"},
};

static void expect_format(const char *tmpl, const char *name, const char *want) {
    http_chat_format f;
    kvr_error e;
    KVR_CHECK_OK(http_chat_detect(tmpl, &f, &e), &e);
    KVR_CHECK(strcmp(http_chat_name(f), name) == 0);
    char *p = NULL;
    KVR_CHECK_OK(http_chat_prompt(f, conv, 6, &p, &e), &e);
    KVR_CHECK(p && strcmp(p, want) == 0);
    if (p && strcmp(p, want)) fprintf(stderr, "  %s:\n  got  %s\n  want %s\n", name, p, want);
    free(p);
}

static void test_chat_formats(void) {
    /* the shipped SmolLM2 model's template, verbatim */
    expect_format("{% for message in messages %}{% if loop.first and messages[0]['role'] != "
                  "'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant named "
                  "SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + "
                  "message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor "
                  "%}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
                  "chatml",
                  "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\n"
                  "Hello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\n"
                  "Who are you<|im_end|>\n<|im_start|>assistant\n   I am an assistant   "
                  "<|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n<|im_start|>"
                  "assistant\n");
    expect_format("{% if messages[0]['role'] == 'system' %}... '[INST] ' + content.strip() + ' "
                  "[/INST]' ... '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n'",
                  "llama2-sys-strip",
                  "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi "
                  "there</s>[INST] Who are you [/INST]I am an assistant</s>[INST] Another "
                  "question [/INST]");
    expect_format("{{ bos_token }}{% for message in messages %}{{ bos_token + '[INST] ' + "
                  "message['content'] + ' [/INST]' }}<<SYS>>",
                  "llama2-sys-bos",
                  "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi "
                  "there</s><s>[INST] Who are you [/INST]   I am an assistant   </s><s>[INST] "
                  "Another question [/INST]");
    expect_format("{{ '[INST] ' + message['content'] + ' [/INST]' }}", "llama2",
                  "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>[INST] Who are "
                  "you [/INST]   I am an assistant   </s>[INST] Another question [/INST]");
    expect_format("{% set content = '<|start_header_id|>' + message['role'] + "
                  "'<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}",
                  "llama3",
                  "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful "
                  "assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_"
                  "header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|><|start_header_id|>"
                  "assistant<|end_header_id|>\n\nI am an assistant<|eot_id|><|start_header_id|>"
                  "user<|end_header_id|>\n\nAnother question<|eot_id|><|start_header_id|>"
                  "assistant<|end_header_id|>\n\n");
    expect_format("{{'<start_of_turn>' + role + '\\n' + message['content'] | trim + "
                  "'<end_of_turn>\\n'}}",
                  "gemma",
                  "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n"
                  "<start_of_turn>model\nHi there<end_of_turn>\n<start_of_turn>user\nWho are "
                  "you<end_of_turn>\n<start_of_turn>model\nI am an assistant<end_of_turn>\n"
                  "<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n");
    expect_format("{{ '<|user|>\\n' + message['content'] + eos_token }}... <|endoftext|>",
                  "zephyr",
                  "<|system|>\nYou are a helpful assistant<|endoftext|>\n<|user|>\nHello"
                  "<|endoftext|>\n<|assistant|>\nHi there<|endoftext|>\n<|user|>\nWho are you"
                  "<|endoftext|>\n<|assistant|>\n   I am an assistant   <|endoftext|>\n<|user|>\n"
                  "Another question<|endoftext|>\n<|assistant|>\n");
    expect_format("{{'<|' + message['role'] + '|>' + '\\n' + message['content'] + '<|end|>\\n'}}"
                  "{{ '<|assistant|>\\n' }}",
                  "phi3",
                  "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n"
                  "<|assistant|>\nHi there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n"
                  "   I am an assistant   <|end|>\n<|user|>\nAnother question<|end|>\n"
                  "<|assistant|>\n");
    /* refused: none, a family llama.cpp knows that kvr does not format, an unknown one */
    http_chat_format f;
    kvr_error e;
    KVR_CHECK(http_chat_detect(NULL, &f, &e) == KVR_ERR_UNSUPPORTED);
    KVR_CHECK(strstr(e.msg, "no chat template") != NULL);
    KVR_CHECK(http_chat_detect("<|im_start|>x<|im_sep|>", &f, &e) == KVR_ERR_UNSUPPORTED);
    KVR_CHECK(strstr(e.msg, "phi4 family") != NULL);
    KVR_CHECK(http_chat_detect("[SYSTEM_PROMPT] [INST]", &f, &e) == KVR_ERR_UNSUPPORTED);
    KVR_CHECK(strstr(e.msg, "mistral-v7") != NULL);
    KVR_CHECK(http_chat_detect("{{ message.text }}\n<turn>", &f, &e) == KVR_ERR_UNSUPPORTED);
    KVR_CHECK(strstr(e.msg, "not one kvr-serve recognises") != NULL);
    KVR_CHECK(strstr(e.msg, "{{ message.text }} <turn>") != NULL);
}

static const kvr_test_case cases[] = {
    {"parse_completions", test_parse_completions},
    {"parse_chat", test_parse_chat},
    {"chat_formats", test_chat_formats},
};
KVR_TEST_MAIN(cases)
