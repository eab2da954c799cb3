/* fuzz_api.c - libFuzzer target: arbitrary bytes as the body of POST
 * /v1/chat/completions or /v1/completions (src/server/api_req.c), then the
 * response builders and the stop-string scan over what was parsed.
 * Checks: no crash/leak/UB (sanitizers); a success gives a request whose strings
 * are UTF-8 without NUL and within the limits; a failure gives a 4xx/5xx error
 * whose JSON parses back; every builder's output is UTF-8 JSON, even for
 * arbitrary text; api_stop_find agrees with a direct search.
 * Input: the whole input is the body; its first byte picks the endpoint: odd =
 * completions, even = chat. So the seeds in fuzz/corpus/api are plain JSON files:
 * "{..." (0x7B, odd) is a completions body, " {..." (space, 0x20) a chat body.
 * The served model is "smollm2"; other names get 404. */
#include <cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/api.h"
#include "server/api_req.h"
#include "server/api_resp.h"

static void check_json(char *s)
{
    if (!s) abort();
    if (!api_utf8_valid(s, strlen(s))) abort();
    cJSON *j = cJSON_Parse(s);
    if (!j) abort();
    cJSON_Delete(j);
    free(s);
}

static void check_str(const char *s, size_t len)
{
    if (!s || strlen(s) != len || !api_utf8_valid(s, len)) abort();
}

/* api_stop_find on text against a direct search: the earliest match, or the hold. */
static void check_stop(const char *text, size_t len, char *const *stops, size_t n_stops)
{
    size_t at, hold, best = len + 1;
    bool found = api_stop_find(text, len, 0, (const char *const *)stops, n_stops, &at, &hold);
    for (size_t i = 0; i < n_stops; i++) {
        const char *m = memmem(text, len, stops[i], strlen(stops[i]));
        if (m && (size_t)(m - text) < best) best = (size_t)(m - text);
    }
    if (found != (best <= len) || (found && at != best)) abort();
    if (!found) {
        if (hold > len) abort();
        for (size_t i = 0; i < n_stops; i++)      /* no longer tail is a stop's head */
            for (size_t k = hold + 1; k <= len && k < strlen(stops[i]); k++)
                if (memcmp(text + len - k, stops[i], k) == 0) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 16) return 0;
    api_endpoint ep = (data[0] & 1) ? API_COMPLETION : API_CHAT;
    api_limits lim = api_limits_default();
    lim.model_name = "smollm2";
    lim.n_vocab = 1000;
    lim.max_tokens_cap = 512;
    lim.max_messages = 16;
    const char *body = (const char *)data;
    size_t len = size;

    api_req r;
    api_error e;
    kvlm_err rc = api_req_parse(ep, body, len, &lim, &r, &e);
    if (rc != KVLM_OK) {
        if (rc != KVLM_ERR_INVALID && rc != KVLM_ERR_NOMEM) abort();
        if (e.http_status < 400 || e.http_status > 599 || !e.message[0]) abort();
        check_json(api_error_json(&e));
        api_req_free(&r);
    } else {
        if (!r.model || r.endpoint != ep) abort();
        check_str(r.model, strlen(r.model));
        if (r.max_tokens < 1 || r.max_tokens > lim.max_tokens_cap) abort();
        if (r.n < 1 || r.n > lim.max_n || r.n_stop > lim.max_stop) abort();
        if (!(r.temperature >= 0 && r.temperature <= 2 && r.top_p > 0 && r.top_p <= 1)) abort();
        for (size_t i = 0; i < r.n_stop; i++) {
            check_str(r.stop[i], strlen(r.stop[i]));
            if (!r.stop[i][0]) abort();
        }
        const char *text = "";
        size_t text_len = 0;
        if (ep == API_CHAT) {
            if (r.n_msgs < 1 || r.n_msgs > lim.max_messages || r.prompt || r.prompt_tokens) abort();
            for (size_t i = 0; i < r.n_msgs; i++) {
                check_str(r.msgs[i].content, r.msgs[i].len);
                if (r.msgs[i].role > API_ROLE_ASSISTANT) abort();
            }
            text = r.msgs[r.n_msgs - 1].content;
            text_len = r.msgs[r.n_msgs - 1].len;
        } else {
            if (r.msgs || !!r.prompt == !!r.prompt_tokens) abort();
            if (r.prompt) {
                check_str(r.prompt, r.prompt_len);
                text = r.prompt;
                text_len = r.prompt_len;
            }
            for (size_t i = 0; i < r.n_prompt_tokens; i++)
                if (r.prompt_tokens[i] < 0 || r.prompt_tokens[i] >= lim.n_vocab) abort();
        }
        check_stop(text, text_len, r.stop, r.n_stop);
        api_resp_head h = { "id-1", 1, r.model };
        api_resp_choice c = { text, API_FINISH_STOP };
        api_usage u = { (int64_t)text_len, 1, 0 };
        check_json(api_resp_completion(ep, &h, &c, 1, &u));
        check_json(api_resp_chunk(ep, &h, 0, true, text, API_FINISH_NONE, r.include_usage));
        api_req_free(&r);
    }

    /* the raw bytes as generated text: the builders must make them UTF-8 */
    char *raw = malloc(len + 1);
    if (!raw) return 0;
    memcpy(raw, body, len);
    raw[len] = '\0';
    api_resp_head h = { raw, 2, raw };
    check_json(api_resp_chunk(API_CHAT, &h, 1, false, raw, API_FINISH_LENGTH, true));
    const char *ids[1] = { raw };
    check_json(api_resp_models(ids, 1, 3));
    char *sse = api_resp_sse(raw, NULL);
    if (!sse || strncmp(sse, "data: ", 6) != 0) abort();
    free(sse);
    free(raw);
    return 0;
}
