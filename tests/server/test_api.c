/* test_api.c - the OpenAI-compatible JSON layer of src/server/api*.c: request
 * bodies as the openai Python client writes them parse into the right api_req;
 * every validation rule answers with its status, param and message; UTF-8 is
 * checked strictly (against utf8proc, exhaustively up to 3 bytes); NUL bytes and
 * \u0000 are refused; 100k-deep nesting and bodies ending at a PROT_NONE page are
 * safe; every response builder's JSON parses back field by field; the stop-string
 * holdback never lets a stop string (or part of one) out early.
 * No model needed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <utf8proc.h>

#include "server/api.h"
#include "server/api_req.h"
#include "server/api_resp.h"

#define MODEL "smollm2-135m"

static api_limits limits(void)
{
    api_limits l = api_limits_default();
    l.model_name = MODEL;
    l.n_vocab = 1000;
    l.max_tokens_cap = 512;
    l.default_max_tokens = 128;
    l.max_n = 4;
    l.max_body = 1 << 16;
    l.max_messages = 8;
    l.max_stop = 4;
    return l;
}

static void parse_ok_lim(api_endpoint ep, const char *body, size_t len, const api_limits *l, api_req *r)
{
    api_error e;
    kvlm_err rc = api_req_parse(ep, body, len, l, r, &e);
    if (rc != KVLM_OK) print_error("unexpected error %d: %s (param %s) for %s\n", e.http_status, e.message, e.param, body);
    assert_int_equal(rc, KVLM_OK);
}

static void parse_ok(api_endpoint ep, const char *body, api_req *r)
{
    api_limits l = limits();
    parse_ok_lim(ep, body, strlen(body), &l, r);
}

/* Parses body expecting an error: status, param ("" = null) and a message fragment. */
static void expect_err_len(api_endpoint ep, const char *body, size_t len, int status,
                           const char *param, const char *msg)
{
    api_limits l = limits();
    api_req r;
    api_error e;
    memset(&r, 0x5A, sizeof r);
    kvlm_err rc = api_req_parse(ep, body, len, &l, &r, &e);
    if (rc == KVLM_OK) print_error("accepted: %s\n", body);
    assert_int_equal(rc, status >= 500 ? KVLM_ERR_NOMEM : KVLM_ERR_INVALID);
    if (e.http_status != status || strcmp(e.param, param) != 0 || !strstr(e.message, msg))
        print_error("body %s\n  got %d param '%s' message '%s'\n  want %d param '%s' message ~'%s'\n",
                    body, e.http_status, e.param, e.message, status, param, msg);
    assert_int_equal(e.http_status, status);
    assert_string_equal(e.param, param);
    assert_non_null(strstr(e.message, msg));
    assert_true(api_utf8_valid(e.message, strlen(e.message)));
    assert_true(api_utf8_valid(e.param, strlen(e.param)));
    api_req zero;
    memset(&zero, 0, sizeof zero);
    assert_memory_equal(&r, &zero, sizeof r);   /* nothing left to free */
    api_req_free(&r);
}

static void expect_err(api_endpoint ep, const char *body, int status, const char *param, const char *msg)
{
    expect_err_len(ep, body, strlen(body), status, param, msg);
}

/* ---- valid bodies as the openai Python client sends them ------------------------------------ */
/* openai-python passes the body to httpx: json.dumps with ", " / ": " separators and
 * ensure_ascii (older httpx), or compact with raw UTF-8 (httpx >= 0.28). Keys are in
 * the order of the create() signature, unset ones left out; extra_body merges in. */
static void test_chat_client_body_ascii(void **state)
{
    (void)state;
    const char *body =
        "{\"messages\": [{\"role\": \"system\", \"content\": \"You are terse.\"}, "
        "{\"role\": \"user\", \"content\": \"Caf\\u00e9 \\ud83d\\ude00 \\\"q\\\"\\n\"}], "
        "\"model\": \"" MODEL "\", \"frequency_penalty\": 0.5, \"max_tokens\": 64, \"n\": 2, "
        "\"presence_penalty\": -1.25, \"seed\": 1234567890123, \"stop\": [\"\\n\\n\", \"END\"], "
        "\"stream\": true, \"stream_options\": {\"include_usage\": true}, \"temperature\": 0.7, "
        "\"top_p\": 0.9, \"user\": \"u-1\", \"cache_salt\": \"tenant-a\"}";
    api_req r;
    parse_ok(API_CHAT, body, &r);
    assert_int_equal(r.endpoint, API_CHAT);
    assert_string_equal(r.model, MODEL);
    assert_int_equal(r.n_msgs, 2);
    assert_int_equal(r.msgs[0].role, API_ROLE_SYSTEM);
    assert_string_equal(r.msgs[0].content, "You are terse.");
    assert_int_equal(r.msgs[1].role, API_ROLE_USER);
    assert_string_equal(r.msgs[1].content, "Caf\xC3\xA9 \xF0\x9F\x98\x80 \"q\"\n");
    assert_int_equal(r.msgs[1].len, strlen(r.msgs[1].content));
    assert_true(r.frequency_penalty == 0.5);
    assert_true(r.presence_penalty == -1.25);
    assert_int_equal(r.max_tokens, 64);
    assert_int_equal(r.n, 2);
    assert_true(r.has_seed);
    assert_true(r.seed == 1234567890123LL);
    assert_int_equal(r.n_stop, 2);
    assert_string_equal(r.stop[0], "\n\n");
    assert_string_equal(r.stop[1], "END");
    assert_true(r.stream);
    assert_true(r.include_usage);
    assert_true(r.temperature == 0.7);
    assert_true(r.top_p == 0.9);
    assert_string_equal(r.cache_salt, "tenant-a");
    assert_null(r.prompt);
    assert_null(r.prompt_tokens);
    api_req_free(&r);
    api_req zero = { 0 };
    assert_memory_equal(&r, &zero, sizeof r);
    api_req_free(&r);    /* zeroed: fine again */
    api_req_free(NULL);
}

static void test_chat_client_body_compact(void **state)
{
    (void)state;
    const char *body =
        "{\"messages\":[{\"role\":\"developer\",\"content\":\"Rules.\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hello, \"},"
        "{\"type\":\"text\",\"text\":\"\xE4\xB8\x96\xE7\x95\x8C\"}],\"name\":\"ann\"},"
        "{\"content\":\"Hi!\",\"refusal\":null,\"role\":\"assistant\",\"annotations\":[],"
        "\"audio\":null,\"function_call\":null,\"tool_calls\":null},"
        "{\"role\":\"user\",\"content\":\"\"}],"
        "\"model\":\"" MODEL "\",\"logit_bias\":{},\"logprobs\":false,\"max_completion_tokens\":10,"
        "\"max_tokens\":20,\"response_format\":{\"type\":\"text\"},\"seed\":-5,\"stop\":\"###\","
        "\"store\":false,\"stream\":false,\"tool_choice\":\"none\",\"tools\":[],\"top_logprobs\":0,"
        "\"parallel_tool_calls\":null,\"metadata\":null,\"temperature\":0,\"top_p\":1}";
    api_req r;
    parse_ok(API_CHAT, body, &r);
    assert_int_equal(r.n_msgs, 4);
    assert_int_equal(r.msgs[0].role, API_ROLE_SYSTEM);        /* developer reads as system */
    assert_string_equal(api_req_role_name(r.msgs[0].role), "system");
    assert_string_equal(r.msgs[1].content, "Hello, \xE4\xB8\x96\xE7\x95\x8C");   /* parts joined */
    assert_int_equal(r.msgs[2].role, API_ROLE_ASSISTANT);
    assert_string_equal(api_req_role_name(r.msgs[2].role), "assistant");
    assert_string_equal(api_req_role_name(r.msgs[3].role), "user");
    assert_string_equal(r.msgs[3].content, "");
    assert_int_equal(r.max_tokens, 10);                       /* max_completion_tokens wins */
    assert_true(r.has_seed && r.seed == -5);
    assert_int_equal(r.n_stop, 1);
    assert_string_equal(r.stop[0], "###");
    assert_false(r.stream);
    assert_true(r.temperature == 0.0);
    assert_true(r.top_p == 1.0);
    api_req_free(&r);

    /* the other order: max_completion_tokens still wins */
    parse_ok(API_CHAT, "{\"max_completion_tokens\":7,\"max_tokens\":9,\"model\":\"" MODEL "\","
             "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", &r);
    assert_int_equal(r.max_tokens, 7);
    api_req_free(&r);
}

static void test_chat_defaults(void **state)
{
    (void)state;
    api_req r;
    parse_ok(API_CHAT, " \r\n\t{\"model\":\"" MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
             "\"temperature\":null,\"stop\":null,\"seed\":null,\"stream_options\":null,\"n\":1} \n", &r);
    assert_true(r.temperature == 1.0);
    assert_true(r.top_p == 1.0);
    assert_true(r.presence_penalty == 0.0 && r.frequency_penalty == 0.0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.max_tokens, 128);
    assert_false(r.has_seed);
    assert_false(r.stream);
    assert_false(r.include_usage);
    assert_int_equal(r.n_stop, 0);
    assert_null(r.stop);
    assert_null(r.cache_salt);
    api_req_free(&r);

    /* a default above the cap is cut to the cap; the UTF-8 BOM is skipped */
    api_limits l = limits();
    l.default_max_tokens = 100000;
    const char *b = "\xEF\xBB\xBF{\"model\":\"" MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
    parse_ok_lim(API_CHAT, b, strlen(b), &l, &r);
    assert_int_equal(r.max_tokens, 512);
    api_req_free(&r);

    /* no model_name: any model is served */
    l = limits();
    l.model_name = NULL;
    b = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":512,\"n\":4}";
    parse_ok_lim(API_CHAT, b, strlen(b), &l, &r);
    assert_string_equal(r.model, "gpt-4o");
    assert_int_equal(r.max_tokens, 512);
    assert_int_equal(r.n, 4);
    api_req_free(&r);
}

static void test_completion_bodies(void **state)
{
    (void)state;
    api_req r;
    parse_ok(API_COMPLETION, "{\"model\": \"" MODEL "\", \"prompt\": \"Once upon a time\", \"echo\": false, "
             "\"best_of\": 1, \"logprobs\": null, \"suffix\": \"\", \"max_tokens\": 16, \"stream\": true, "
             "\"stop\": [\".\"], \"temperature\": 1.5, \"seed\": 0}", &r);
    assert_int_equal(r.endpoint, API_COMPLETION);
    assert_string_equal(r.prompt, "Once upon a time");
    assert_int_equal(r.prompt_len, 16);
    assert_null(r.prompt_tokens);
    assert_null(r.msgs);
    assert_int_equal(r.max_tokens, 16);
    assert_true(r.stream && !r.include_usage);
    assert_true(r.has_seed && r.seed == 0);
    api_req_free(&r);

    parse_ok(API_COMPLETION, "{\"model\":\"" MODEL "\",\"prompt\":[\"only one\"]}", &r);
    assert_string_equal(r.prompt, "only one");
    api_req_free(&r);

    parse_ok(API_COMPLETION, "{\"model\":\"" MODEL "\",\"prompt\":\"\"}", &r);
    assert_non_null(r.prompt);
    assert_int_equal(r.prompt_len, 0);
    api_req_free(&r);

    parse_ok(API_COMPLETION, "{\"model\":\"" MODEL "\",\"prompt\":[1, 0, 999, 2.0]}", &r);
    assert_null(r.prompt);
    assert_int_equal(r.n_prompt_tokens, 4);
    assert_int_equal(r.prompt_tokens[0], 1);
    assert_int_equal(r.prompt_tokens[1], 0);
    assert_int_equal(r.prompt_tokens[2], 999);
    assert_int_equal(r.prompt_tokens[3], 2);
    api_req_free(&r);

    parse_ok(API_COMPLETION, "{\"model\":\"" MODEL "\",\"prompt\":[[7,8]]}", &r);
    assert_int_equal(r.n_prompt_tokens, 2);
    assert_int_equal(r.prompt_tokens[1], 8);
    api_req_free(&r);
}

/* ---- every rule's error ------------------------------------------------------------------ */
#define CHAT(extra) "{\"model\":\"" MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]" extra "}"
#define COMP(extra) "{\"model\":\"" MODEL "\",\"prompt\":\"hi\"" extra "}"
#define MSG(m) "{\"model\":\"" MODEL "\",\"messages\":[" m "]}"
#define PROMPT(p) "{\"model\":\"" MODEL "\",\"prompt\":" p "}"

typedef struct err_case {
    api_endpoint ep;
    const char *body;
    int status;
    const char *param;
    const char *msg;
} err_case;

static const err_case ERR_CASES[] = {
    /* unknown and misplaced fields */
    { API_CHAT, CHAT(",\"foo\":1"), 400, "foo", "Unrecognized request argument supplied: foo" },
    { API_CHAT, CHAT(",\"Model\":\"x\""), 400, "Model", "Unrecognized request argument supplied: Model" },
    { API_CHAT, CHAT(",\"foo\":null"), 400, "foo", "Unrecognized request argument supplied: foo" },
    { API_CHAT, CHAT(",\"prompt\":\"x\""), 400, "prompt", "Unrecognized request argument supplied: prompt" },
    { API_CHAT, CHAT(",\"echo\":false"), 400, "echo", "Unrecognized request argument supplied: echo" },
    { API_COMPLETION, COMP(",\"messages\":[]"), 400, "messages", "Unrecognized request argument supplied: messages" },
    { API_COMPLETION, COMP(",\"max_completion_tokens\":5"), 400, "max_completion_tokens", "Unrecognized" },
    { API_COMPLETION, COMP(",\"tools\":[]"), 400, "tools", "Unrecognized" },
    { API_CHAT, CHAT(",\"stream\":true,\"stream_options\":{\"x\":true}"), 400, "stream_options.x",
      "Unrecognized request argument supplied: stream_options.x" },
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":\"a\",\"weight\":1}"), 400, "messages[0].weight", "Unrecognized" },
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\",\"cache_control\":{}}]}"),
      400, "messages[0].content[0].cache_control", "Unrecognized" },
    { API_CHAT, CHAT(",\"response_format\":{\"type\":\"text\",\"x\":1}"), 400, "response_format.x", "Unrecognized" },
    /* repeated fields */
    { API_CHAT, CHAT(",\"temperature\":1,\"temperature\":0"), 400, "temperature", "appears twice" },
    { API_CHAT, "{\"model\":\"" MODEL "\",\"model\":\"" MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
      400, "model", "appears twice" },
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":\"a\",\"content\":\"b\"}"), 400, "messages[0].content", "appears twice" },
    { API_CHAT, CHAT(",\"stream\":true,\"stream_options\":{\"include_usage\":true,\"include_usage\":false}"), 400,
      "stream_options.include_usage", "appears twice" },
    /* wrong JSON types */
    { API_CHAT, CHAT(",\"temperature\":\"hot\""), 400, "temperature", "'temperature' must be a number" },
    { API_CHAT, CHAT(",\"top_p\":true"), 400, "top_p", "'top_p' must be a number" },
    { API_CHAT, CHAT(",\"presence_penalty\":[]"), 400, "presence_penalty", "must be a number" },
    { API_CHAT, CHAT(",\"frequency_penalty\":{}"), 400, "frequency_penalty", "must be a number" },
    { API_CHAT, CHAT(",\"stream\":1"), 400, "stream", "'stream' must be a boolean" },
    { API_CHAT, CHAT(",\"stream\":\"true\""), 400, "stream", "'stream' must be a boolean" },
    { API_CHAT, CHAT(",\"stream\":true,\"stream_options\":{\"include_usage\":1}"), 400,
      "stream_options.include_usage", "must be a boolean" },
    { API_CHAT, CHAT(",\"stream\":true,\"stream_options\":true"), 400, "stream_options", "must be an object" },
    { API_CHAT, CHAT(",\"max_tokens\":\"5\""), 400, "max_tokens", "'max_tokens' must be an integer" },
    { API_CHAT, CHAT(",\"max_tokens\":1.5"), 400, "max_tokens", "'max_tokens' must be an integer" },
    { API_CHAT, CHAT(",\"max_completion_tokens\":false"), 400, "max_completion_tokens", "must be an integer" },
    { API_CHAT, CHAT(",\"seed\":1.5"), 400, "seed", "'seed' must be an integer" },
    { API_CHAT, CHAT(",\"seed\":\"7\""), 400, "seed", "'seed' must be an integer" },
    { API_CHAT, CHAT(",\"n\":\"2\""), 400, "n", "'n' must be an integer" },
    { API_CHAT, CHAT(",\"stop\":5"), 400, "stop", "'stop' must be a string or an array of strings" },
    { API_CHAT, CHAT(",\"stop\":[\"a\",1]"), 400, "stop[1]", "'stop[1]' must be a string" },
    { API_CHAT, CHAT(",\"cache_salt\":5"), 400, "cache_salt", "'cache_salt' must be a string" },
    { API_CHAT, CHAT(",\"user\":5"), 400, "user", "'user' must be a string" },
    { API_CHAT, "{\"model\":5,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 400, "model", "'model' must be a string" },
    { API_CHAT, "{\"model\":\"" MODEL "\",\"messages\":{}}", 400, "messages", "'messages' must be an array" },
    { API_CHAT, "{\"model\":\"" MODEL "\",\"messages\":\"hi\"}", 400, "messages", "'messages' must be an array" },
    { API_CHAT, MSG("1"), 400, "messages[0]", "'messages[0]' must be an object" },
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":\"a\"},[]"), 400, "messages[1]", "must be an object" },
    { API_CHAT, MSG("{\"role\":5,\"content\":\"a\"}"), 400, "messages[0].role", "'messages[0].role' must be a string" },
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":5}"), 400, "messages[0].content",
      "'messages[0].content' must be a string or an array of content parts" },
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":{\"type\":\"text\"}}"), 400, "messages[0].content", "must be a string or an array" },
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":[\"a\"]}"), 400, "messages[0].content[0]", "must be an object" },
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":1}]}"), 400,
      "messages[0].content[0].text", "'messages[0].content[0].text' must be a string" },
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":[{\"type\":7,\"text\":\"a\"}]}"), 400,
      "messages[0].content[0].type", "must be a string" },
    { API_CHAT, MSG("{\"role\":\"user\",\"name\":3,\"content\":\"a\"}"), 400, "messages[0].name", "must be a string" },
    { API_CHAT, CHAT(",\"logprobs\":\"no\""), 400, "logprobs", "'logprobs' must be a boolean" },
    { API_COMPLETION, COMP(",\"logprobs\":true"), 400, "logprobs", "'logprobs' must be an integer" },
    { API_CHAT, CHAT(",\"logit_bias\":[]"), 400, "logit_bias", "'logit_bias' must be an object" },
    { API_CHAT, CHAT(",\"response_format\":\"text\""), 400, "response_format", "must be an object" },
    { API_CHAT, CHAT(",\"response_format\":{}"), 400, "response_format.type", "Missing required parameter" },
    { API_CHAT, CHAT(",\"tools\":{}"), 400, "tools", "'tools' must be an array" },
    { API_COMPLETION, COMP(",\"echo\":1"), 400, "echo", "'echo' must be a boolean" },
    { API_COMPLETION, COMP(",\"suffix\":1"), 400, "suffix", "'suffix' must be a string" },
    { API_COMPLETION, COMP(",\"best_of\":1.5"), 400, "best_of", "'best_of' must be an integer" },
    { API_CHAT, CHAT(",\"store\":\"yes\""), 400, "store", "'store' must be a boolean" },
    /* ranges */
    { API_CHAT, CHAT(",\"temperature\":-0.01"), 400, "temperature", "'temperature' must be between 0 and 2" },
    { API_CHAT, CHAT(",\"temperature\":2.001"), 400, "temperature", "between 0 and 2" },
    { API_CHAT, CHAT(",\"temperature\":1e999"), 400, "temperature", "between 0 and 2" },
    { API_CHAT, CHAT(",\"top_p\":0"), 400, "top_p", "'top_p' must be greater than 0 and at most 1" },
    { API_CHAT, CHAT(",\"top_p\":1.0001"), 400, "top_p", "greater than 0 and at most 1" },
    { API_CHAT, CHAT(",\"presence_penalty\":2.5"), 400, "presence_penalty", "between -2 and 2" },
    { API_CHAT, CHAT(",\"frequency_penalty\":-2.5"), 400, "frequency_penalty", "between -2 and 2" },
    { API_CHAT, CHAT(",\"max_tokens\":0"), 400, "max_tokens", "'max_tokens' must be an integer between 1 and 512" },
    { API_CHAT, CHAT(",\"max_tokens\":513"), 400, "max_tokens", "between 1 and 512" },
    { API_CHAT, CHAT(",\"max_tokens\":-1e300"), 400, "max_tokens", "between 1 and 512" },
    { API_CHAT, CHAT(",\"max_completion_tokens\":0"), 400, "max_completion_tokens", "between 1 and 512" },
    { API_CHAT, CHAT(",\"n\":0"), 400, "n", "'n' must be an integer between 1 and 4" },
    { API_CHAT, CHAT(",\"n\":5"), 400, "n", "between 1 and 4" },
    { API_CHAT, CHAT(",\"seed\":1e30"), 400, "seed", "'seed' must be an integer between" },
    { API_CHAT, CHAT(",\"seed\":9223372036854775808"), 400, "seed", "must be an integer between" },
    { API_CHAT, CHAT(",\"top_logprobs\":21"), 400, "top_logprobs", "between 0 and 20" },
    /* required fields */
    { API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 400, "model", "you must provide a model parameter" },
    { API_CHAT, "{\"model\":null,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 400, "model", "you must provide a model parameter" },
    { API_CHAT, "{\"model\":\"\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 400, "model", "you must provide a model parameter" },
    { API_COMPLETION, "{\"prompt\":\"x\"}", 400, "model", "you must provide a model parameter" },
    { API_CHAT, "{\"model\":\"" MODEL "\"}", 400, "messages", "Missing required parameter: 'messages'." },
    { API_CHAT, "{\"model\":\"" MODEL "\",\"messages\":null}", 400, "messages", "Missing required parameter: 'messages'." },
    { API_CHAT, "{\"model\":\"" MODEL "\",\"messages\":[]}", 400, "messages", "'messages' must not be empty" },
    { API_CHAT, MSG("{\"content\":\"a\"}"), 400, "messages[0].role", "Missing required parameter: 'messages[0].role'." },
    { API_CHAT, MSG("{\"role\":\"user\"}"), 400, "messages[0].content", "Missing required parameter: 'messages[0].content'." },
    { API_CHAT, MSG("{\"role\":\"assistant\",\"content\":null}"), 400, "messages[0].content", "Missing required parameter" },
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":[]}"), 400, "messages[0].content", "must not be an empty array" },
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":[{\"text\":\"a\"}]}"), 400, "messages[0].content[0].type", "Missing required parameter" },
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}"), 400, "messages[0].content[0].text", "Missing required parameter" },
    { API_COMPLETION, "{\"model\":\"" MODEL "\"}", 400, "prompt", "Missing required parameter: 'prompt'." },
    { API_COMPLETION, PROMPT("null"), 400, "prompt", "Missing required parameter: 'prompt'." },
    { API_CHAT, CHAT(",\"stream_options\":{\"include_usage\":true}"), 400, "stream_options",
      "The 'stream_options' parameter is only allowed when 'stream' is enabled." },
    { API_CHAT, CHAT(",\"stream\":false,\"stream_options\":{}"), 400, "stream_options", "only allowed when 'stream' is enabled" },
    /* roles */
    { API_CHAT, MSG("{\"role\":\"tool\",\"content\":\"42\",\"tool_call_id\":null}"), 400, "messages[0].role",
      "role 'tool' is not supported" },
    { API_CHAT, MSG("{\"role\":\"function\",\"content\":\"42\"}"), 400, "messages[0].role", "role 'function' is not supported" },
    { API_CHAT, MSG("{\"role\":\"robot\",\"content\":\"a\"}"), 400, "messages[0].role",
      "'messages[0].role' is 'robot'; it must be one of 'system', 'developer', 'user', 'assistant'" },
    { API_CHAT, MSG("{\"role\":\"User\",\"content\":\"a\"}"), 400, "messages[0].role", "it must be one of" },
    { API_CHAT, MSG("{\"role\":\"assistant\",\"content\":\"a\",\"tool_calls\":[{\"id\":\"c\"}]}"), 400,
      "messages[0].tool_calls", "no tool calling" },
    { API_CHAT, MSG("{\"role\":\"assistant\",\"content\":\"a\",\"refusal\":\"no\"}"), 400, "messages[0].refusal", "not supported" },
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}"), 400,
      "messages[0].content[0].type", "content part type 'image_url' is not supported (only 'text')" },
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"input_audio\"}]}"), 400,
      "messages[0].content[1].type", "'input_audio' is not supported" },
    /* limits on counts */
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":\"1\"},{\"role\":\"user\",\"content\":\"2\"},{\"role\":\"user\",\"content\":\"3\"},"
                    "{\"role\":\"user\",\"content\":\"4\"},{\"role\":\"user\",\"content\":\"5\"},{\"role\":\"user\",\"content\":\"6\"},"
                    "{\"role\":\"user\",\"content\":\"7\"},{\"role\":\"user\",\"content\":\"8\"},{\"role\":\"user\",\"content\":\"9\"}"),
      400, "messages", "'messages' has 9 entries; this server accepts at most 8" },
    { API_CHAT, CHAT(",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]"), 400, "stop", "'stop' has 5 strings; at most 4 are allowed" },
    { API_CHAT, CHAT(",\"stop\":\"\""), 400, "stop", "'stop' must not be an empty string" },
    { API_CHAT, CHAT(",\"stop\":[\"a\",\"\"]"), 400, "stop[1]", "'stop[1]' must not be an empty string" },
    { API_CHAT, CHAT(",\"cache_salt\":\"\""), 400, "cache_salt", "'cache_salt' must be a non-empty string of at most 256 bytes" },
    /* prompts */
    { API_COMPLETION, PROMPT("[]"), 400, "prompt", "'prompt' must not be an empty array" },
    { API_COMPLETION, PROMPT("[\"a\",\"b\"]"), 400, "prompt", "batch prompts are not supported" },
    { API_COMPLETION, PROMPT("[[1],[2]]"), 400, "prompt", "batch prompts are not supported: 'prompt' holds 2 prompts" },
    { API_COMPLETION, PROMPT("[[]]"), 400, "prompt[0]", "'prompt[0]' must not be empty" },
    { API_COMPLETION, PROMPT("[1,\"a\"]"), 400, "prompt[1]", "'prompt[1]' must be a token id (an integer)" },
    { API_COMPLETION, PROMPT("[1,2.5]"), 400, "prompt[1]", "must be a token id" },
    { API_COMPLETION, PROMPT("[[1,null]]"), 400, "prompt[0][1]", "must be a token id" },
    { API_COMPLETION, PROMPT("[1000]"), 400, "prompt[0]", "'prompt[0]' is 1000, not a token id in [0, 1000)" },
    { API_COMPLETION, PROMPT("[5,-1]"), 400, "prompt[1]", "is -1, not a token id" },
    { API_COMPLETION, PROMPT("[1e300]"), 400, "prompt[0]", "not a token id" },
    { API_COMPLETION, PROMPT("{}"), 400, "prompt", "'prompt' must be a string, an array of token ids" },
    { API_COMPLETION, PROMPT("[true]"), 400, "prompt", "must be a string, an array of token ids" },
    { API_COMPLETION, PROMPT("5"), 400, "prompt", "must be a string" },
    /* features kvlm lacks */
    { API_CHAT, CHAT(",\"logprobs\":true"), 400, "logprobs", "'logprobs' is not supported" },
    { API_COMPLETION, COMP(",\"logprobs\":0"), 400, "logprobs", "'logprobs' is not supported" },
    { API_CHAT, CHAT(",\"top_logprobs\":3"), 400, "top_logprobs", "not supported" },
    { API_CHAT, CHAT(",\"logit_bias\":{\"50256\":-100}"), 400, "logit_bias", "'logit_bias' is not supported" },
    { API_CHAT, CHAT(",\"response_format\":{\"type\":\"json_object\"}"), 400, "response_format.type",
      "response_format of type 'json_object' is not supported" },
    { API_CHAT, CHAT(",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]"), 400, "tools", "'tools' is not supported" },
    { API_CHAT, CHAT(",\"tool_choice\":\"auto\""), 400, "tool_choice", "not supported" },
    { API_CHAT, CHAT(",\"tool_choice\":{\"type\":\"function\"}"), 400, "tool_choice", "not supported" },
    { API_CHAT, CHAT(",\"parallel_tool_calls\":true"), 400, "parallel_tool_calls", "not supported" },
    { API_CHAT, CHAT(",\"functions\":[]"), 400, "functions", "not supported" },
    { API_CHAT, CHAT(",\"reasoning_effort\":\"low\""), 400, "reasoning_effort", "'reasoning_effort' is not supported" },
    { API_CHAT, CHAT(",\"store\":true"), 400, "store", "not supported" },
    { API_COMPLETION, COMP(",\"echo\":true"), 400, "echo", "'echo' is not supported" },
    { API_COMPLETION, COMP(",\"suffix\":\"}\""), 400, "suffix", "'suffix' is not supported" },
    { API_COMPLETION, COMP(",\"best_of\":2"), 400, "best_of", "'best_of' is not supported" },
    /* the model */
    { API_CHAT, "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 404, "model",
      "The model `gpt-4o` does not exist or you do not have access to it." },
    { API_COMPLETION, "{\"model\":\"" MODEL "-x\",\"prompt\":\"x\"}", 404, "model", "does not exist" },
    /* not JSON, not an object */
    { API_CHAT, "", 400, "", "the request body is empty" },
    { API_CHAT, "{", 400, "", "could not parse the JSON body" },
    { API_CHAT, "   ", 400, "", "could not parse the JSON body" },
    { API_CHAT, "{\"model\": }", 400, "", "could not parse the JSON body" },
    { API_CHAT, "{\"model\":\"m\",}", 400, "", "could not parse the JSON body" },
    { API_CHAT, CHAT("") " x", 400, "", "could not parse the JSON body" },
    { API_CHAT, CHAT("") "{}", 400, "", "could not parse the JSON body" },
    { API_CHAT, "{\"a\":\"\\ud800\"}", 400, "", "could not parse" },           /* lone surrogate escape */
    { API_CHAT, "{\"a\":\"\\udc00\\ud800\"}", 400, "", "could not parse" },
    { API_CHAT, "{\"a\":\"\\u12G4\"}", 400, "", "could not parse" },
    /* cJSON decodes a malformed \u escape to NUL: {"model\uZZZZx":..} would read as "model" */
    { API_CHAT, "{\"model\\uZZZZx\":\"" MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}", 400, "",
      "a \\u escape without four hex digits at byte 7" },
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":\"x\\u12G4y\"}"), 400, "", "without four hex digits" },
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":\"x\\u-123\"}"), 400, "", "without four hex digits" },
    { API_CHAT, "[]", 400, "", "the request body must be a JSON object" },
    { API_CHAT, "\"str\"", 400, "", "must be a JSON object" },
    { API_CHAT, "null", 400, "", "must be a JSON object" },
    { API_CHAT, "42", 400, "", "must be a JSON object" },
    /* \u0000 anywhere, keys included (cJSON would read "model\u0000x" as "model") */
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":\"a\\u0000b\"}"), 400, "", "\\u0000" },
    { API_CHAT, "{\"model\\u0000x\":\"" MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}", 400, "", "NUL characters" },
    { API_CHAT, CHAT(",\"stop\":[\"\\u0000\"]"), 400, "", "\\u0000" },
    /* invalid UTF-8 in each kind of string */
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":\"\xC0\xAF\"}"), 400, "messages[0].content",
      "invalid UTF-8 in 'messages[0].content'" },                                  /* overlong '/' */
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":\"\xE0\x80\xAF\"}"), 400, "messages[0].content", "invalid UTF-8" },
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":\"\xF0\x80\x80\xAF\"}"), 400, "messages[0].content", "invalid UTF-8" },
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":\"\xED\xA0\x80\"}"), 400, "messages[0].content", "invalid UTF-8" },  /* U+D800 */
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":\"\xED\xBF\xBF\"}"), 400, "messages[0].content", "invalid UTF-8" },  /* U+DFFF */
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":\"ab\xE2\x82\"}"), 400, "messages[0].content", "invalid UTF-8" },   /* truncated */
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":\"\xF4\x90\x80\x80\"}"), 400, "messages[0].content", "invalid UTF-8" }, /* > U+10FFFF */
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":\"\xFF\"}"), 400, "messages[0].content", "invalid UTF-8" },
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":\"\x80\"}"), 400, "messages[0].content", "invalid UTF-8" },
    { API_CHAT, MSG("{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"ok\"},{\"type\":\"text\",\"text\":\"\xC1\xBF\"}]}"),
      400, "messages[0].content[1].text", "invalid UTF-8 in 'messages[0].content[1].text'" },
    { API_CHAT, CHAT(",\"stop\":[\"ok\",\"\xE2\x28\xA1\"]"), 400, "stop[1]", "invalid UTF-8 in 'stop[1]'" },
    { API_CHAT, CHAT(",\"stop\":\"\xC3\""), 400, "stop", "invalid UTF-8 in 'stop'" },
    { API_CHAT, "{\"model\":\"\xC3\x28\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 400, "model", "invalid UTF-8 in 'model'" },
    { API_CHAT, CHAT(",\"cache_salt\":\"\xED\xAF\xBF\""), 400, "cache_salt", "invalid UTF-8 in 'cache_salt'" },
    { API_CHAT, CHAT(",\"user\":\"\xF8\x88\x80\x80\x80\""), 400, "user", "invalid UTF-8 in 'user'" },
    { API_COMPLETION, PROMPT("\"\xE0\x9F\xBF\""), 400, "prompt", "invalid UTF-8 in 'prompt'" },
    { API_COMPLETION, PROMPT("[\"\xF0\x8F\xBF\xBF\"]"), 400, "prompt[0]", "invalid UTF-8 in 'prompt[0]'" },
    { API_CHAT, MSG("{\"role\":\"user\",\"name\":\"\xC0\x80\",\"content\":\"a\"}"), 400, "messages[0].name", "invalid UTF-8" },
    { API_CHAT, MSG("{\"role\":\"us\xC0\x80r\",\"content\":\"a\"}"), 400, "messages[0].role", "invalid UTF-8" },
    /* a quoted name is sanitized: invalid bytes and controls become '?' */
    { API_CHAT, CHAT(",\"b\xC0\xAF\\n\":1"), 400, "b???", "Unrecognized request argument supplied: b???" },
};

static void test_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof ERR_CASES / sizeof ERR_CASES[0]; i++) {
        const err_case *c = &ERR_CASES[i];
        expect_err(c->ep, c->body, c->status, c->param, c->msg);
    }
}

/* A 256-byte salt is fine, 257 is not; long unknown names are cut in the message. */
static void test_lengths(void **state)
{
    (void)state;
    char salt[300], body[2048];
    memset(salt, 'x', sizeof salt);
    salt[256] = '\0';
    snprintf(body, sizeof body, CHAT(",\"cache_salt\":\"%s\""), salt);
    api_req r;
    parse_ok(API_CHAT, body, &r);
    assert_int_equal(strlen(r.cache_salt), 256);
    api_req_free(&r);
    salt[256] = 'x';
    salt[257] = '\0';
    snprintf(body, sizeof body, CHAT(",\"cache_salt\":\"%s\""), salt);
    expect_err(API_CHAT, body, 400, "cache_salt", "at most 256 bytes");

    /* a 200-byte unknown name of 2-byte characters: quoted cut at a character */
    char name[401] = "";
    for (int i = 0; i < 200; i++) strcat(name, "\xC3\xA9");
    snprintf(body, sizeof body, CHAT(",\"%s\":1"), name);
    api_limits l = limits();
    api_error e;
    assert_int_equal(api_req_parse(API_CHAT, body, strlen(body), &l, &r, &e), KVLM_ERR_INVALID);
    assert_non_null(strstr(e.message, "Unrecognized request argument supplied: \xC3\xA9"));
    assert_non_null(strstr(e.message, "..."));
    assert_true(strlen(e.param) <= 72);
    assert_true(api_utf8_valid(e.message, strlen(e.message)));
    assert_true(api_utf8_valid(e.param, strlen(e.param)));
}

/* The body limit (413), and bodies that must be read by length: NUL bytes inside,
 * no NUL after. */
static void test_body_bytes(void **state)
{
    (void)state;
    api_limits l = limits();
    l.max_body = 64;
    char big[65];
    memset(big, ' ', sizeof big);
    api_req r;
    api_error e;
    assert_int_equal(api_req_parse(API_CHAT, big, sizeof big, &l, &r, &e), KVLM_ERR_INVALID);
    assert_int_equal(e.http_status, 413);
    assert_string_equal(e.type, "invalid_request_error");
    assert_string_equal(e.code, "request_too_large");
    assert_non_null(strstr(e.message, "65 bytes"));

    /* exactly max_body is read */
    const char *ok = CHAT("");
    l.max_body = strlen(ok);
    parse_ok_lim(API_CHAT, ok, strlen(ok), &l, &r);
    api_req_free(&r);

    /* a NUL byte: inside a string, after the object, or as the whole body */
    char buf[256];
    size_t n = strlen(ok);
    memcpy(buf, ok, n);
    buf[n] = '\0';
    expect_err_len(API_CHAT, buf, n + 1, 400, "", "NUL byte (at byte");
    const char *inside = MSG("{\"role\":\"user\",\"content\":\"a\0b\"}");
    expect_err_len(API_CHAT, inside, strlen(inside) + 4, 400, "", "NUL byte");
    expect_err_len(API_CHAT, "\0", 1, 400, "", "NUL byte (at byte 0)");

    /* only len bytes count: what follows is never read */
    memcpy(buf, ok, n);
    memcpy(buf + n, "garbage", 8);
    parse_ok(API_CHAT, ok, &r);
    api_req_free(&r);
    l = limits();
    parse_ok_lim(API_CHAT, buf, n, &l, &r);
    api_req_free(&r);

    /* an escaped backslash before u0000 is the text "\u0000", not a NUL */
    parse_ok(API_CHAT, MSG("{\"role\":\"user\",\"content\":\"a\\\\u0000b\"}"), &r);
    assert_string_equal(r.msgs[0].content, "a\\u0000b");
    api_req_free(&r);
    /* a raw control byte or DEL in a string is passed through (it is UTF-8) */
    parse_ok(API_CHAT, MSG("{\"role\":\"user\",\"content\":\"\x01\x7F\"}"), &r);
    assert_string_equal(r.msgs[0].content, "\x01\x7F");
    api_req_free(&r);
}

/* ---- UTF-8 ------------------------------------------------------------------------------ */
/* Our validator agrees with utf8proc on every sequence of 1 to 3 bytes, and on 4-byte
 * sequences over every lead byte and the boundary values of the rest. */
static bool ref_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) return false;
        i += (size_t)k;
    }
    return true;
}

static void test_utf8_vs_utf8proc(void **state)
{
    (void)state;
    unsigned char s[4];
    for (unsigned a = 0; a < 256; a++) {
        s[0] = (unsigned char)a;
        assert_int_equal(api_utf8_valid((char *)s, 1), ref_valid(s, 1));
        for (unsigned b = 0; b < 256; b++) {
            s[1] = (unsigned char)b;
            assert_int_equal(api_utf8_valid((char *)s, 2), ref_valid(s, 2));
        }
    }
    /* 3 bytes: every lead that can start a 3-byte char, all second and third bytes;
     * other leads are decided by their first two bytes (checked above) */
    for (unsigned a = 0xE0; a <= 0xEF; a++)
        for (unsigned b = 0; b < 256; b++)
            for (unsigned c = 0; c < 256; c++) {
                s[0] = (unsigned char)a, s[1] = (unsigned char)b, s[2] = (unsigned char)c;
                if (api_utf8_valid((char *)s, 3) != ref_valid(s, 3))
                    fail_msg("3-byte %02X %02X %02X: ours %d", a, b, c, api_utf8_valid((char *)s, 3));
            }
    static const unsigned char edge[] = { 0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF };
    for (unsigned a = 0xF0; a <= 0xFF; a++)
        for (unsigned b = 0; b < 256; b++)
            for (size_t c = 0; c < sizeof edge; c++)
                for (size_t d = 0; d < sizeof edge; d++) {
                    s[0] = (unsigned char)a, s[1] = (unsigned char)b, s[2] = edge[c], s[3] = edge[d];
                    if (api_utf8_valid((char *)s, 4) != ref_valid(s, 4))
                        fail_msg("4-byte %02X %02X %02X %02X", a, b, edge[c], edge[d]);
                }
}

static void test_utf8_cases(void **state)
{
    (void)state;
    static const struct { const char *s; bool ok; size_t prefix; } T[] = {
        { "", true, 0 },
        { "plain ascii", true, 11 },
        { "\xC2\x80", true, 2 },                 /* U+0080 */
        { "\xDF\xBF", true, 2 },                 /* U+07FF */
        { "\xE0\xA0\x80", true, 3 },             /* U+0800 */
        { "\xED\x9F\xBF", true, 3 },             /* U+D7FF */
        { "\xEE\x80\x80", true, 3 },             /* U+E000 */
        { "\xEF\xBF\xBF", true, 3 },             /* U+FFFF (a noncharacter, still UTF-8) */
        { "\xF0\x90\x80\x80", true, 4 },         /* U+10000 */
        { "\xF0\x9F\x98\x80", true, 4 },         /* U+1F600 */
        { "\xF4\x8F\xBF\xBF", true, 4 },         /* U+10FFFF */
        { "a\xC0\x80", false, 1 },               /* overlong NUL */
        { "ab\xC1\xBF", false, 2 },              /* overlong U+007F */
        { "\xE0\x9F\xBF", false, 0 },            /* overlong U+07FF */
        { "\xF0\x8F\xBF\xBF", false, 0 },        /* overlong U+FFFF */
        { "x\xED\xA0\x80", false, 1 },           /* high surrogate */
        { "\xED\xB0\x80", false, 0 },            /* low surrogate */
        { "\xED\xA0\xBD\xED\xB8\x80", false, 0 }, /* CESU-8 pair */
        { "\xF4\x90\x80\x80", false, 0 },        /* U+110000 */
        { "\xF5\x80\x80\x80", false, 0 },
        { "\xE2\x82", false, 0 },                /* truncated 3-byte */
        { "\xF0\x9F\x98", false, 0 },            /* truncated 4-byte */
        { "ok\xC3", false, 2 },                  /* truncated at the end */
        { "\xBF", false, 0 },                    /* lone continuation */
        { "\xE2\x28\xA1", false, 0 },            /* bad second byte */
        { "\xE2\x82\x28", false, 0 },            /* bad third byte */
        { "\xFE\xFF", false, 0 },
    };
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        size_t n = strlen(T[i].s);
        if (api_utf8_valid(T[i].s, n) != T[i].ok) fail_msg("case %zu", i);
        assert_int_equal(api_utf8_valid_prefix(T[i].s, n), T[i].prefix);
    }
    /* a NUL byte is UTF-8 (U+0000): the parser refuses it on its own */
    assert_true(api_utf8_valid("a\0b", 3));

    /* a valid 4-byte character in each kind of string */
    api_req r;
    parse_ok(API_CHAT, "{\"model\":\"" MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"\xF0\x9F\x98\x80\"}],"
             "\"stop\":[\"\xF0\x9F\x98\x80\"],\"cache_salt\":\"\xF0\x9F\x98\x80\",\"user\":\"\xF4\x8F\xBF\xBF\"}", &r);
    assert_string_equal(r.msgs[0].content, "\xF0\x9F\x98\x80");
    assert_string_equal(r.stop[0], "\xF0\x9F\x98\x80");
    assert_string_equal(r.cache_salt, "\xF0\x9F\x98\x80");
    api_req_free(&r);
    /* the same character as an escaped surrogate pair */
    parse_ok(API_COMPLETION, PROMPT("\"\\uD83D\\uDE00\\u00e9\""), &r);
    assert_string_equal(r.prompt, "\xF0\x9F\x98\x80\xC3\xA9");
    api_req_free(&r);
}

/* ---- hostile shapes ---------------------------------------------------------------------- */
static char *repeat(const char *head, const char *unit, size_t n, const char *tail)
{
    size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
    char *s = malloc(hl + ul * n + tl + 1);
    assert_non_null(s);
    memcpy(s, head, hl);
    for (size_t i = 0; i < n; i++) memcpy(s + hl + i * ul, unit, ul);
    memcpy(s + hl + n * ul, tail, tl + 1);
    return s;
}

static void test_deep_nesting(void **state)
{
    (void)state;
    api_limits l = limits();
    l.max_body = 1 << 22;
    api_req r;
    api_error e;
    const char *shapes[][3] = {
        { "", "[", "" },                                /* [[[[... never closed */
        { "", "{\"a\":", "" },                          /* {"a":{"a":... */
        { "{\"model\":", "[", "" },
        { "{\"model\":\"" MODEL "\",\"messages\":", "[", "" },
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        char *b = repeat(shapes[i][0], shapes[i][1], 100000, shapes[i][2]);
        assert_int_equal(api_req_parse(API_CHAT, b, strlen(b), &l, &r, &e), KVLM_ERR_INVALID);
        assert_int_equal(e.http_status, 400);
        assert_non_null(strstr(e.message, "could not parse"));
        free(b);
    }
    /* 100k levels, all closed: still past cJSON's limit of 1000 */
    char *open = repeat("", "[", 100000, ""), *b = repeat(open, "]", 100000, "");
    assert_int_equal(api_req_parse(API_CHAT, b, strlen(b), &l, &r, &e), KVLM_ERR_INVALID);
    assert_non_null(strstr(e.message, "could not parse"));
    free(open);
    free(b);
    /* 900 levels (within the limit), closed, as a field's value: parsed, refused, freed */
    open = repeat(CHAT(""), "", 0, "");
    open[strlen(open) - 1] = '\0';     /* CHAT("") without its closing brace */
    char *m1 = repeat(open, "", 0, ",\"metadata\":"), *m2 = repeat(m1, "[", 900, "");
    char *m3 = repeat(m2, "]", 900, "}");
    expect_err(API_CHAT, m3, 400, "metadata", "'metadata' is not supported");
    char *c1 = repeat(open, "", 0, ",\"messages\":"), *c2 = repeat(c1, "[", 900, "");
    char *c3 = repeat(c2, "]", 900, "}");
    expect_err(API_CHAT, c3, 400, "messages", "appears twice");
    free(open); free(m1); free(m2); free(m3); free(c1); free(c2); free(c3);

    /* many small values: a long array of token ids */
    char *p = repeat("{\"model\":\"" MODEL "\",\"prompt\":[1", ",2", 20000, "]}");
    parse_ok_lim(API_COMPLETION, p, strlen(p), &l, &r);
    assert_int_equal(r.n_prompt_tokens, 20001);
    assert_int_equal(r.prompt_tokens[20000], 2);
    api_req_free(&r);
    free(p);
}

/* Every prefix of a valid body, placed right before a PROT_NONE page: a read past
 * the body's end faults. The full body parses; the prefixes fail cleanly. */
static void guard_run(api_endpoint ep, const char *body)
{
    size_t n = strlen(body);
    long page = sysconf(_SC_PAGESIZE);
    size_t readable = ((n + (size_t)page - 1) / (size_t)page + 1) * (size_t)page;
    char *region = mmap(NULL, readable + (size_t)page, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(region != MAP_FAILED);
    assert_int_equal(mprotect(region + readable, (size_t)page, PROT_NONE), 0);
    api_limits l = limits();
    for (size_t k = 0; k <= n; k++) {
        char *start = region + readable - k;
        memcpy(start, body, k);
        api_req r;
        api_error e;
        kvlm_err rc = api_req_parse(ep, start, k, &l, &r, &e);
        if (k == n) assert_int_equal(rc, KVLM_OK);
        else assert_int_equal(rc, KVLM_ERR_INVALID);
        api_req_free(&r);
    }
    munmap(region, readable + (size_t)page);
}

static void test_guard_page(void **state)
{
    (void)state;
    guard_run(API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"h\\u00e9\\\\\"}]}], "
                        "\"model\": \"" MODEL "\", \"stop\": [\"\\n\"], \"seed\": 7, \"stream\": true, "
                        "\"stream_options\": {\"include_usage\": true}, \"temperature\": 0.5}");
    guard_run(API_COMPLETION, "{\"model\":\"" MODEL "\",\"prompt\":[[1,2,3]],\"max_tokens\":9}");
    guard_run(API_COMPLETION, "{\"model\":\"" MODEL "\",\"prompt\":\"\xF0\x9F\x98\x80\\\"\"}");
}

/* ---- errors as JSON ------------------------------------------------------------------------- */
static cJSON *parse_json(const char *s)
{
    assert_non_null(s);
    cJSON *j = cJSON_Parse(s);
    if (!j) fail_msg("not JSON: %s", s);
    return j;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(v)) fail_msg("'%s' is not a string", k);
    return v->valuestring;
}

static double jnum(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v)) fail_msg("'%s' is not a number", k);
    return v->valuedouble;
}

static bool jnull(const cJSON *o, const char *k)
{
    return cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, k));
}

static const cJSON *jget(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v) fail_msg("no '%s'", k);
    return v;
}

static size_t jkeys(const cJSON *o)
{
    size_t n = 0;
    for (const cJSON *c = o->child; c; c = c->next) n++;
    return n;
}

static void check_error_json(const api_error *e, const char *type, const char *param, const char *code)
{
    char *s = api_error_json(e);
    assert_null(strchr(s, '\n'));
    cJSON *j = parse_json(s);
    assert_int_equal(jkeys(j), 1);
    const cJSON *o = jget(j, "error");
    assert_int_equal(jkeys(o), 4);
    assert_string_equal(jstr(o, "message"), e->message);
    assert_string_equal(jstr(o, "type"), type);
    if (param) assert_string_equal(jstr(o, "param"), param);
    else assert_true(jnull(o, "param"));
    if (code) assert_string_equal(jstr(o, "code"), code);
    else assert_true(jnull(o, "code"));
    cJSON_Delete(j);
    free(s);
}

static void test_error_json(void **state)
{
    (void)state;
    api_error e;
    api_error_set(&e, 400, NULL, "temperature", "'temperature' must be a number");
    assert_int_equal(e.http_status, 400);
    check_error_json(&e, "invalid_request_error", "temperature", NULL);
    api_error_set(&e, 401, NULL, NULL, "Incorrect API key provided.");
    check_error_json(&e, "invalid_request_error", NULL, "invalid_api_key");
    api_error_set(&e, 404, "model_not_found", "model", "The model `x` does not exist");
    check_error_json(&e, "invalid_request_error", "model", "model_not_found");
    api_error_set(&e, 404, NULL, NULL, "Invalid URL (GET /v2/x)");
    check_error_json(&e, "invalid_request_error", NULL, NULL);
    api_error_set(&e, 405, NULL, NULL, "Invalid method for URL (GET /v1/completions)");
    check_error_json(&e, "invalid_request_error", NULL, NULL);
    api_error_set(&e, 413, "request_too_large", NULL, "too large");
    check_error_json(&e, "invalid_request_error", NULL, "request_too_large");
    api_error_set(&e, 429, NULL, NULL, "the queue is full; retry later");
    check_error_json(&e, "requests", NULL, "rate_limit_exceeded");
    api_error_set(&e, 500, NULL, NULL, "out of memory");
    check_error_json(&e, "server_error", NULL, NULL);
    api_error_set(&e, 503, "server_shutting_down", NULL, "the server is shutting down");
    check_error_json(&e, "server_error", NULL, "server_shutting_down");
    api_error_set(NULL, 400, NULL, NULL, "nothing");    /* no-op */

    /* quotes, backslashes and control bytes are escaped */
    api_error_set(&e, 400, NULL, "a\"b", "say \"hi\"\\ \n\t\x01");
    check_error_json(&e, "invalid_request_error", "a\"b", NULL);

    /* a message longer than the buffer is cut at a character boundary */
    char big[1000] = "";
    for (int i = 0; i < 300; i++) strcat(big, "\xE2\x82\xAC");   /* 900 bytes of euro signs */
    for (int shift = 0; shift < 3; shift++) {
        api_error_set(&e, 400, NULL, NULL, "%.*s%s", shift, "xx", big);
        size_t n = strlen(e.message);
        assert_true(n < sizeof e.message && n >= sizeof e.message - 4);
        assert_true(api_utf8_valid(e.message, n));
    }
    /* the parser's errors round-trip too */
    api_limits l = limits();
    api_req r;
    const char *b = CHAT(",\"\xC3\xA9t\xC3\xA9\":1");
    assert_int_equal(api_req_parse(API_CHAT, b, strlen(b), &l, &r, &e), KVLM_ERR_INVALID);
    check_error_json(&e, "invalid_request_error", "\xC3\xA9t\xC3\xA9", NULL);
}

/* ---- responses -------------------------------------------------------------------------------- */
static const api_resp_head HEAD = { "chatcmpl-abc123", 1735689600, MODEL };
static const api_usage USAGE = { 17, 9, 16 };

static void check_usage(const cJSON *root, int64_t p, int64_t c, int64_t cached)
{
    const cJSON *u = jget(root, "usage");
    assert_true(cJSON_IsObject(u));
    assert_true(jnum(u, "prompt_tokens") == (double)p);
    assert_true(jnum(u, "completion_tokens") == (double)c);
    assert_true(jnum(u, "total_tokens") == (double)(p + c));
    const cJSON *d = jget(u, "prompt_tokens_details");
    assert_true(cJSON_IsObject(d));
    assert_true(jnum(d, "cached_tokens") == (double)cached);
}

static void check_head(const cJSON *root, const char *object)
{
    assert_string_equal(jstr(root, "id"), HEAD.id);
    assert_string_equal(jstr(root, "object"), object);
    assert_true(jnum(root, "created") == 1735689600.0);
    assert_string_equal(jstr(root, "model"), MODEL);
    assert_true(cJSON_IsArray(jget(root, "choices")));
}

static void test_resp_chat(void **state)
{
    (void)state;
    const api_resp_choice ch[2] = {
        { "Hello \"world\"\n\t\\ \xC3\xA9\xF0\x9F\x98\x80", API_FINISH_STOP },
        { "cut", API_FINISH_LENGTH },
    };
    char *s = api_resp_completion(API_CHAT, &HEAD, ch, 2, &USAGE);
    assert_null(strchr(s, '\n'));
    cJSON *j = parse_json(s);
    check_head(j, "chat.completion");
    const cJSON *arr = jget(j, "choices");
    assert_int_equal(cJSON_GetArraySize(arr), 2);
    for (int i = 0; i < 2; i++) {
        const cJSON *c = cJSON_GetArrayItem(arr, i);
        assert_true(jnum(c, "index") == i);
        const cJSON *m = jget(c, "message");
        assert_string_equal(jstr(m, "role"), "assistant");
        assert_string_equal(jstr(m, "content"), ch[i].text);
        assert_true(jnull(c, "logprobs"));
        assert_string_equal(jstr(c, "finish_reason"), i == 0 ? "stop" : "length");
    }
    check_usage(j, 17, 9, 16);
    cJSON_Delete(j);
    free(s);

    /* no choices, zero usage: cached_tokens is 0, never null */
    const api_usage zero = { 0, 0, 0 };
    s = api_resp_completion(API_CHAT, &HEAD, NULL, 0, &zero);
    j = parse_json(s);
    assert_int_equal(cJSON_GetArraySize(jget(j, "choices")), 0);
    check_usage(j, 0, 0, 0);
    cJSON_Delete(j);
    free(s);
}

static void test_resp_completion(void **state)
{
    (void)state;
    const api_resp_choice ch[1] = { { NULL, API_FINISH_LENGTH } };
    api_resp_head h = { "cmpl-xyz", 5, "m\xC3\xA9" };
    char *s = api_resp_completion(API_COMPLETION, &h, ch, 1, &USAGE);
    cJSON *j = parse_json(s);
    assert_string_equal(jstr(j, "object"), "text_completion");
    assert_string_equal(jstr(j, "id"), "cmpl-xyz");
    assert_string_equal(jstr(j, "model"), "m\xC3\xA9");
    const cJSON *c = cJSON_GetArrayItem(jget(j, "choices"), 0);
    assert_string_equal(jstr(c, "text"), "");
    assert_true(jnum(c, "index") == 0);
    assert_true(jnull(c, "logprobs"));
    assert_string_equal(jstr(c, "finish_reason"), "length");
    check_usage(j, 17, 9, 16);
    cJSON_Delete(j);
    free(s);

    /* invalid UTF-8 in a text goes out as U+FFFD (one per maximal invalid subpart) */
    const api_resp_choice bad[1] = { { "a\xE2\x82" "b\xC0\xAF" "c\xF0\x9F\x98", API_FINISH_NONE } };
    s = api_resp_completion(API_COMPLETION, &h, bad, 1, &USAGE);
    assert_true(api_utf8_valid(s, strlen(s)));
    j = parse_json(s);
    c = cJSON_GetArrayItem(jget(j, "choices"), 0);
    assert_string_equal(jstr(c, "text"), "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD" "c\xEF\xBF\xBD");
    assert_true(jnull(c, "finish_reason"));
    cJSON_Delete(j);
    free(s);
}

static const cJSON *only_choice(const cJSON *j)
{
    const cJSON *arr = jget(j, "choices");
    assert_int_equal(cJSON_GetArraySize(arr), 1);
    return arr->child;
}

static void test_resp_chat_chunks(void **state)
{
    (void)state;
    /* first: role and empty content */
    char *s = api_resp_chunk(API_CHAT, &HEAD, 0, true, NULL, API_FINISH_NONE, false);
    cJSON *j = parse_json(s);
    check_head(j, "chat.completion.chunk");
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "usage"));
    const cJSON *c = only_choice(j), *d = jget(c, "delta");
    assert_true(jnum(c, "index") == 0);
    assert_int_equal(jkeys(d), 2);
    assert_string_equal(jstr(d, "role"), "assistant");
    assert_string_equal(jstr(d, "content"), "");
    assert_true(jnull(c, "logprobs"));
    assert_true(jnull(c, "finish_reason"));
    cJSON_Delete(j);
    free(s);

    /* a piece of content, for choice 1, with usage: null (include_usage) */
    s = api_resp_chunk(API_CHAT, &HEAD, 1, false, "Hel\"lo\n", API_FINISH_NONE, true);
    j = parse_json(s);
    assert_true(jnull(j, "usage"));
    c = only_choice(j);
    d = jget(c, "delta");
    assert_true(jnum(c, "index") == 1);
    assert_int_equal(jkeys(d), 1);
    assert_string_equal(jstr(d, "content"), "Hel\"lo\n");
    assert_true(jnull(c, "finish_reason"));
    cJSON_Delete(j);
    free(s);

    /* the end: empty delta and the reason */
    s = api_resp_chunk(API_CHAT, &HEAD, 0, false, NULL, API_FINISH_STOP, false);
    j = parse_json(s);
    c = only_choice(j);
    assert_int_equal(jkeys(jget(c, "delta")), 0);
    assert_string_equal(jstr(c, "finish_reason"), "stop");
    cJSON_Delete(j);
    free(s);

    /* the usage chunk: no choices */
    s = api_resp_usage_chunk(API_CHAT, &HEAD, &USAGE);
    j = parse_json(s);
    check_head(j, "chat.completion.chunk");
    assert_int_equal(cJSON_GetArraySize(jget(j, "choices")), 0);
    check_usage(j, 17, 9, 16);
    cJSON_Delete(j);
    free(s);
}

static void test_resp_text_chunks(void **state)
{
    (void)state;
    api_resp_head h = { "cmpl-1", 7, MODEL };
    char *s = api_resp_chunk(API_COMPLETION, &h, 2, true, "piece", API_FINISH_NONE, false);
    cJSON *j = parse_json(s);
    assert_string_equal(jstr(j, "object"), "text_completion");
    const cJSON *c = only_choice(j);
    assert_string_equal(jstr(c, "text"), "piece");
    assert_true(jnum(c, "index") == 2);
    assert_true(jnull(c, "logprobs"));
    assert_true(jnull(c, "finish_reason"));
    assert_null(cJSON_GetObjectItemCaseSensitive(c, "delta"));
    cJSON_Delete(j);
    free(s);

    s = api_resp_chunk(API_COMPLETION, &h, 0, false, NULL, API_FINISH_LENGTH, true);
    j = parse_json(s);
    c = only_choice(j);
    assert_string_equal(jstr(c, "text"), "");
    assert_string_equal(jstr(c, "finish_reason"), "length");
    assert_true(jnull(j, "usage"));
    cJSON_Delete(j);
    free(s);

    s = api_resp_usage_chunk(API_COMPLETION, &h, &USAGE);
    j = parse_json(s);
    assert_string_equal(jstr(j, "object"), "text_completion");
    assert_int_equal(cJSON_GetArraySize(jget(j, "choices")), 0);
    check_usage(j, 17, 9, 16);
    cJSON_Delete(j);
    free(s);
}

static void test_resp_models(void **state)
{
    (void)state;
    const char *ids[2] = { MODEL, "other" };
    char *s = api_resp_models(ids, 2, 1700000000);
    cJSON *j = parse_json(s);
    assert_string_equal(jstr(j, "object"), "list");
    const cJSON *data = jget(j, "data");
    assert_int_equal(cJSON_GetArraySize(data), 2);
    for (int i = 0; i < 2; i++) {
        const cJSON *m = cJSON_GetArrayItem(data, i);
        assert_int_equal(jkeys(m), 4);
        assert_string_equal(jstr(m, "id"), ids[i]);
        assert_string_equal(jstr(m, "object"), "model");
        assert_true(jnum(m, "created") == 1700000000.0);
        assert_string_equal(jstr(m, "owned_by"), "kvlm");
    }
    cJSON_Delete(j);
    free(s);

    s = api_resp_models(NULL, 0, 0);
    j = parse_json(s);
    assert_int_equal(cJSON_GetArraySize(jget(j, "data")), 0);
    cJSON_Delete(j);
    free(s);

    s = api_resp_model(MODEL, 42);
    j = parse_json(s);
    assert_string_equal(jstr(j, "id"), MODEL);
    assert_string_equal(jstr(j, "object"), "model");
    assert_string_equal(jstr(j, "owned_by"), "kvlm");
    cJSON_Delete(j);
    free(s);
}

static void test_sse(void **state)
{
    (void)state;
    size_t n = 0;
    char *s = api_resp_sse("{\"a\":1}", &n);
    assert_string_equal(s, "data: {\"a\":1}\n\n");
    assert_int_equal(n, strlen(s));
    free(s);
    s = api_resp_sse("", NULL);
    assert_string_equal(s, "data: \n\n");
    free(s);
    s = api_resp_sse("one\ntwo\r\nthree\rfour", &n);
    assert_string_equal(s, "data: one\ndata: two\ndata: three\ndata: four\n\n");
    assert_int_equal(n, strlen(s));
    free(s);
    s = api_resp_sse("\n\r\r\n", &n);
    assert_string_equal(s, "data: \ndata: \ndata: \ndata: \n\n");
    free(s);
    assert_string_equal(api_resp_sse_done(), "data: [DONE]\n\n");

    /* a real chunk, framed: one data line */
    char *chunk = api_resp_chunk(API_CHAT, &HEAD, 0, false, "a\nb", API_FINISH_NONE, false);
    s = api_resp_sse(chunk, &n);
    assert_int_equal(n, strlen(chunk) + 8);
    assert_memory_equal(s, "data: ", 6);
    assert_string_equal(s + 6 + strlen(chunk), "\n\n");
    free(chunk);
    free(s);
}

/* ---- stop strings ---------------------------------------------------------------------------- */
static void stop_case(const char *text, size_t from, const char *const *stops, size_t n_stops,
                      bool found, size_t at, size_t hold)
{
    size_t a = 99, h = 99;
    bool f = api_stop_find(text, strlen(text), from, stops, n_stops, &a, &h);
    if (f != found || (found && a != at) || h != hold)
        fail_msg("'%s' from %zu: found %d at %zu hold %zu; want %d at %zu hold %zu",
                 text, from, f, a, h, found, at, hold);
}

static void test_stop_find(void **state)
{
    (void)state;
    const char *s1[] = { "world" };
    stop_case("hello world!", 0, s1, 1, true, 6, 0);
    stop_case("hello wor", 0, s1, 1, false, 0, 3);
    stop_case("hello w", 0, s1, 1, false, 0, 1);
    stop_case("hello", 0, s1, 1, false, 0, 0);
    stop_case("", 0, s1, 1, false, 0, 0);
    stop_case("worl", 0, s1, 1, false, 0, 4);          /* the whole text could be a stop */
    stop_case("hello wo", 6, s1, 1, false, 0, 2);
    stop_case("hello wor", 7, s1, 1, false, 0, 0);      /* the tail starts at from at the earliest */
    stop_case("world", 1, s1, 1, false, 0, 0);          /* matches before from are not seen */
    stop_case("hello world", 20, s1, 1, false, 0, 0);   /* from past the end */
    stop_case("anything", 0, NULL, 0, false, 0, 0);
    const char *s2[] = { "BB", "AB", "", NULL };        /* empty and NULL stops are skipped */
    stop_case("xxABBB", 0, s2, 4, true, 2, 0);          /* the earliest start wins */
    stop_case("xxBAB", 0, s2, 4, true, 3, 0);
    stop_case("xxA", 0, s2, 4, false, 0, 1);
    stop_case("xxB", 0, s2, 4, false, 0, 1);
    const char *s3[] = { "\n\n", "</s>", "abcab" };
    stop_case("line\n", 0, s3, 3, false, 0, 1);
    stop_case("x</", 0, s3, 3, false, 0, 2);
    stop_case("zabca", 0, s3, 3, false, 0, 4);          /* longest tail among the stops */
    stop_case("zabcab", 0, s3, 3, true, 1, 0);
    stop_case("zabcabcab", 2, s3, 3, true, 4, 0);
    const char *s4[] = { "\xE4\xB8\x96\xE7\x95\x8C" };   /* a 2-character CJK stop */
    stop_case("hi \xE4\xB8\x96", 0, s4, 1, false, 0, 3);
    stop_case("hi \xE4\xB8\x96\xE7\x95\x8C!", 0, s4, 1, true, 3, 0);
}

/* The streaming loop the engine will run: append a piece, scan from what was
 * streamed, stream all but the held tail, stop at a match. Against a direct
 * answer (the text before the first occurrence of any stop), over random texts
 * from a small alphabet so stops, overlaps and partial matches are frequent. */
static void test_stop_streaming(void **state)
{
    (void)state;
    uint64_t st = 12345;
    const char *stops[3] = { "aba", "bb", "cab" };
    for (int iter = 0; iter < 3000; iter++) {
        char text[64], streamed[64];
        size_t len = 0, out = 0;
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        size_t total = (size_t)(st >> 33) % 40;
        /* the direct answer */
        char full[64];
        for (size_t i = 0; i < total; i++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            full[i] = "abc"[(st >> 33) % 3];
        }
        full[total] = '\0';
        size_t cut = total;
        for (int k = 0; k < 3; k++) {
            char *m = strstr(full, stops[k]);
            if (m && (size_t)(m - full) < cut) cut = (size_t)(m - full);
        }
        /* streamed in pieces of 1-3 bytes */
        bool stopped = false;
        while (len < total && !stopped) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            size_t piece = 1 + (st >> 33) % 3;
            if (piece > total - len) piece = total - len;
            memcpy(text + len, full + len, piece);
            len += piece;
            size_t at, hold;
            if (api_stop_find(text, len, out, stops, 3, &at, &hold)) {
                assert_true(at >= out);
                memcpy(streamed + out, text + out, at - out);
                out = at;
                stopped = true;
            } else {
                assert_true(hold <= len - out);
                memcpy(streamed + out, text + out, len - hold - out);
                out = len - hold;
            }
            for (int k = 0; k < 3; k++) {   /* no stop, and no stop's head that became one, went out */
                streamed[out] = '\0';
                assert_null(strstr(streamed, stops[k]));
            }
        }
        if (!stopped) {   /* the generation ended (length): the held tail goes out */
            memcpy(streamed + out, text + out, len - out);
            out = len;
        }
        assert_int_equal(out, cut);
        assert_memory_equal(streamed, full, cut);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_client_body_ascii),
        cmocka_unit_test(test_chat_client_body_compact),
        cmocka_unit_test(test_chat_defaults),
        cmocka_unit_test(test_completion_bodies),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_body_bytes),
        cmocka_unit_test(test_utf8_vs_utf8proc),
        cmocka_unit_test(test_utf8_cases),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_guard_page),
        cmocka_unit_test(test_error_json),
        cmocka_unit_test(test_resp_chat),
        cmocka_unit_test(test_resp_completion),
        cmocka_unit_test(test_resp_chat_chunks),
        cmocka_unit_test(test_resp_text_chunks),
        cmocka_unit_test(test_resp_models),
        cmocka_unit_test(test_sse),
        cmocka_unit_test(test_stop_find),
        cmocka_unit_test(test_stop_streaming),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
