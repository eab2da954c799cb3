/* webui.c - see webui.h. Room: server.
 *
 * The page's bytes come from src/server/webui.html through the assembler's
 * .incbin, so the page is edited as HTML and the binary holds it as it is: no
 * generated C file, no xxd. The path is relative to the directory the compiler
 * runs in (the repository root: the Makefile's), and the Makefile makes webui.o
 * depend on the .html, since -MMD sees only #includes. A NUL follows the bytes. */
#include "server/webui.h"
#include "server/api.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

__asm__(".section .rodata,\"a\",@progbits\n"
        ".balign 16\n"
        ".globl webui_html\n"
        ".hidden webui_html\n"
        ".type webui_html, @object\n"
        "webui_html:\n"
        ".incbin \"src/server/webui.html\"\n"
        ".globl webui_html_end\n"
        ".hidden webui_html_end\n"
        "webui_html_end:\n"
        ".byte 0\n"
        ".size webui_html, . - webui_html\n"
        ".previous\n");

/* hidden: the shared library reaches them PC-relative and exports neither */
extern const char webui_html[] __attribute__((visibility("hidden")));
extern const char webui_html_end[] __attribute__((visibility("hidden")));

const char *webui_page(size_t *len)
{
    *len = (size_t)(webui_html_end - webui_html);
    return webui_html;
}

bool webui_send_page(http_reply *reply)
{
    size_t len;
    const char *page = webui_page(&len);
    /* the page fetches nothing from elsewhere; the policy keeps it so (inline script
       and style are its own, connect-src its own origin: the API) */
    http_reply_header(reply, "Content-Security-Policy",
                      "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                      "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'");
    http_reply_header(reply, "Cache-Control", "no-cache");
    http_reply_header(reply, "X-Content-Type-Options", "nosniff");
    return http_reply_send(reply, 200, "text/html; charset=utf-8", page, len);
}

/* An id as a JSON string, or null when absent (or not UTF-8, which JSON cannot carry) */
static bool add_id(cJSON *o, const char *key, const char *id)
{
    if (!id || !api_utf8_valid(id, strlen(id))) return cJSON_AddNullToObject(o, key) != NULL;
    return cJSON_AddStringToObject(o, key, id) != NULL;
}

char *webui_cache_json(const webui_cache_info *ci)
{
    const kvlm_cache_stats *st = &ci->st;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    const struct { const char *key; double v; } num[] = {
        { "block_tokens", (double)st->block_tokens },
        { "blocks_total", (double)st->n_blocks },
        { "blocks_in_use", (double)st->n_in_use },
        { "blocks_cached", (double)st->n_cached },
        { "blocks_free", (double)st->n_free },
        { "bytes_total", (double)st->bytes_total },
        { "bytes_per_token", (double)st->bytes_per_token },
        { "lookups", (double)st->lookups },
        { "hits", (double)st->hits },
        { "evictions", (double)st->evictions },
        { "tier_loads", (double)st->tier_loads },
        { "running_seqs", (double)ci->running_seqs },
        { "queue_len", (double)ci->queue_len },
        { "requests", (double)ci->requests },
        { "prompt_tokens", (double)ci->prompt_tokens },
        { "cached_tokens", (double)ci->cached_tokens },
        { "completion_tokens", (double)ci->completion_tokens },
    };
    bool ok = cJSON_AddStringToObject(o, "object", "kvlm.cache") && add_id(o, "model", ci->model) &&
              add_id(o, "whisper_model", ci->whisper_model);
    for (size_t i = 0; ok && i < sizeof num / sizeof num[0]; i++)
        ok = cJSON_AddNumberToObject(o, num[i].key, num[i].v) != NULL;
    char *js = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return js;
}
