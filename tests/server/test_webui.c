/* test_webui.c - the chat page and the cache endpoint's body (src/server/webui.c):
 * the embedded page is src/server/webui.html byte for byte, a complete UTF-8
 * document (<!DOCTYPE html>, <html> ... </html>, one inline script and style)
 * that names no other origin, with the element ids the browser test drives; the
 * JSON of GET /v1/kvlm/cache parses back to the figures given, field by field,
 * with null for an absent model (and for an id that is not UTF-8).
 * Over HTTP (GET / without a key, the /v1 routes with one) and in a browser:
 * tests/server/webui_test.sh. No model needed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/api.h"
#include "server/webui.h"
#include "testutil.h"

static size_t count(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

static void test_page_is_the_file(void **state)
{
    size_t len, flen;
    const char *page = webui_page(&len);
    char *file = test_read_file("src/server/webui.html", &flen);
    assert_non_null(file);
    assert_int_equal(len, flen);
    assert_memory_equal(page, file, len);
    assert_int_equal(page[len], 0);            /* NUL-terminated, and no NUL inside */
    assert_int_equal(strlen(page), len);
    free(file);
}

static void test_page_is_a_document(void **state)
{
    size_t len;
    const char *page = webui_page(&len);
    assert_true(len > 1000);
    assert_true(api_utf8_valid(page, len));
    assert_int_equal(strncmp(page, "<!DOCTYPE html>\n", 16), 0);
    assert_int_equal(strcmp(page + len - 8, "</html>\n"), 0);
    const char *tags[] = { "<html lang=\"en\">", "</html>", "<head>", "</head>", "<body>", "</body>",
                           "<meta charset=\"utf-8\">", "<title>", "<style>", "</style>", "<script>", "</script>" };
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++)
        if (count(page, tags[i]) != 1) fail_msg("%s appears %zu times", tags[i], count(page, tags[i]));
    /* in order: head before body, the script inside the body */
    assert_true(strstr(page, "</head>") < strstr(page, "<body>"));
    assert_true(strstr(page, "<body>") < strstr(page, "<script>"));
    assert_true(strstr(page, "</script>") < strstr(page, "</body>"));
}

/* nothing fetched from elsewhere: no scheme, no protocol-relative URL, no external
   script, style sheet or font */
static void test_page_stays_home(void **state)
{
    size_t len;
    const char *page = webui_page(&len);
    const char *banned[] = { "http:", "https:", "ws:", "wss:", "src=\"//", "href=\"//", "<script src",
                             "<link rel=\"stylesheet\"", "@import", "url(" };
    for (size_t i = 0; i < sizeof banned / sizeof banned[0]; i++)
        if (strstr(page, banned[i])) fail_msg("the page holds \"%s\"", banned[i]);
    /* the API routes it uses, all relative */
    const char *routes[] = { "\"/v1/models\"", "\"/v1/kvlm/cache\"", "\"/v1/chat/completions\"",
                             "\"/v1/audio/transcriptions\"" };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strstr(page, routes[i])) fail_msg("the page never calls %s", routes[i]);
}

/* the ids tests/server/webui_test.py finds elements by */
static void test_page_ids(void **state)
{
    size_t len;
    const char *page = webui_page(&len);
    const char *ids[] = { "model", "messages", "input", "send", "stop", "new-chat", "system", "temperature",
                          "top-p", "max-tokens", "seed", "kv-in-use", "kv-cached", "kv-free", "kv-total",
                          "kv-hits", "key-panel", "api-key", "key-submit", "key-error", "audio-panel",
                          "audio-file", "transcribe", "transcript", "error" };
    char want[64];
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        snprintf(want, sizeof want, "id=\"%s\"", ids[i]);
        if (count(page, want) != 1) fail_msg("%s appears %zu times", want, count(page, want));
    }
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) fail_msg("%s is not a number", key);
    return v->valuedouble;
}

static void test_cache_json(void **state)
{
    webui_cache_info ci = {
        .model = "SmolLM2-135M-Instruct.Q4_1", .whisper_model = "whisper-tiny.en",
        .st = { .block_tokens = 16, .n_blocks = 728, .n_in_use = 3, .n_cached = 11, .n_free = 714,
                .bytes_total = 268369920, .bytes_per_token = 23040, .lookups = 40, .hits = 25, .evictions = 2,
                .tier_loads = 7 },
        .running_seqs = 1, .queue_len = 4, .requests = 9, .prompt_tokens = 1000, .cached_tokens = 640,
        .completion_tokens = 333,
    };
    char *js = webui_cache_json(&ci);
    assert_non_null(js);
    assert_null(strchr(js, '\n'));
    cJSON *o = cJSON_Parse(js);
    assert_non_null(o);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(o, "object")->valuestring, "kvlm.cache");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(o, "model")->valuestring, "SmolLM2-135M-Instruct.Q4_1");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(o, "whisper_model")->valuestring, "whisper-tiny.en");
    const struct { const char *key; double want; } f[] = {
        { "block_tokens", 16 }, { "blocks_total", 728 }, { "blocks_in_use", 3 }, { "blocks_cached", 11 },
        { "blocks_free", 714 }, { "bytes_total", 268369920 }, { "bytes_per_token", 23040 }, { "lookups", 40 },
        { "hits", 25 }, { "evictions", 2 }, { "tier_loads", 7 }, { "running_seqs", 1 }, { "queue_len", 4 },
        { "requests", 9 }, { "prompt_tokens", 1000 }, { "cached_tokens", 640 }, { "completion_tokens", 333 },
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (num(o, f[i].key) != f[i].want) fail_msg("%s = %g, want %g", f[i].key, num(o, f[i].key), f[i].want);
    assert_int_equal(cJSON_GetArraySize(o), 3 + (int)(sizeof f / sizeof f[0]));   /* nothing else */
    cJSON_Delete(o);
    free(js);
}

static void test_cache_json_no_model(void **state)
{
    webui_cache_info ci = { .model = NULL, .whisper_model = "bad \xff id" };
    char *js = webui_cache_json(&ci);
    assert_non_null(js);
    cJSON *o = cJSON_Parse(js);
    assert_non_null(o);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "model")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "whisper_model")));
    assert_true(num(o, "blocks_total") == 0);
    cJSON_Delete(o);
    free(js);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_page_is_the_file),
        cmocka_unit_test(test_page_is_a_document),
        cmocka_unit_test(test_page_stays_home),
        cmocka_unit_test(test_page_ids),
        cmocka_unit_test(test_cache_json),
        cmocka_unit_test(test_cache_json_no_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
