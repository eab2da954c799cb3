/* api.c - errors, limits, UTF-8 and stop strings of the API layer: see api.h.
 * Room: server. May touch: cJSON, libc. Nothing here prints or allocates except
 * api_error_json, whose result the caller frees. */
#include "server/api.h"

#include <cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ------------------------------------------------------------------ */
static const char *status_type(int status)
{
    if (status == 429) return "requests";
    if (status >= 500) return "server_error";
    return "invalid_request_error";
}

static const char *status_code(int status)
{
    if (status == 401) return "invalid_api_key";
    if (status == 429) return "rate_limit_exceeded";
    return "";
}

/* Copies src into dst[cap], cutting at a character boundary when it does not fit. */
static void copy_utf8(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    n = api_utf8_valid_prefix(src, n);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void api_error_set(api_error *e, int http_status, const char *code, const char *param,
                   const char *fmt, ...)
{
    if (!e) return;
    e->http_status = http_status;
    copy_utf8(e->type, sizeof e->type, status_type(http_status));
    copy_utf8(e->code, sizeof e->code, code ? code : status_code(http_status));
    copy_utf8(e->param, sizeof e->param, param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    /* vsnprintf may have cut a multi-byte character in two: drop its head */
    e->message[api_utf8_valid_prefix(e->message, strlen(e->message))] = '\0';
}

char *api_error_json(const api_error *e)
{
    cJSON *root = cJSON_CreateObject(), *o = cJSON_CreateObject();
    char *out = NULL;
    if (!root || !o) { cJSON_Delete(o); goto done; }
    cJSON_AddItemToObject(root, "error", o);
    if (!cJSON_AddStringToObject(o, "message", e->message) ||
        !cJSON_AddStringToObject(o, "type", e->type) ||
        !(e->param[0] ? cJSON_AddStringToObject(o, "param", e->param) : cJSON_AddNullToObject(o, "param")) ||
        !(e->code[0] ? cJSON_AddStringToObject(o, "code", e->code) : cJSON_AddNullToObject(o, "code")))
        goto done;
    out = cJSON_PrintUnformatted(root);
done:
    cJSON_Delete(root);
    return out;
}

/* ---- limits -------------------------------------------------------------------- */
api_limits api_limits_default(void)
{
    return (api_limits){
        .model_name = NULL, .n_vocab = 0, .max_tokens_cap = 4096, .default_max_tokens = 256,
        .max_n = 4, .max_body = (size_t)1 << 20, .max_messages = 512, .max_stop = 4,
    };
}

/* ---- UTF-8 ---------------------------------------------------------------------- */
/* Unicode 15, table 3-7, well-formed byte sequences:
 *   U+0000..007F      00..7F
 *   U+0080..07FF      C2..DF  80..BF
 *   U+0800..0FFF      E0      A0..BF  80..BF      (E0 80..9F would be overlong)
 *   U+1000..CFFF      E1..EC  80..BF  80..BF
 *   U+D000..D7FF      ED      80..9F  80..BF      (ED A0..BF would be surrogates)
 *   U+E000..FFFF      EE..EF  80..BF  80..BF
 *   U+10000..3FFFF    F0      90..BF  80..BF 80..BF
 *   U+40000..FFFFF    F1..F3  80..BF  80..BF 80..BF
 *   U+100000..10FFFF  F4      80..8F  80..BF 80..BF
 * C0, C1 and F5..FF never occur. */
size_t api_utf8_valid_prefix(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t len;
        unsigned lo = 0x80, hi = 0xBF;   /* range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else return i;
        if (n - i < len) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return i;
        i += len;
    }
    return n;
}

bool api_utf8_valid(const char *s, size_t n)
{
    return api_utf8_valid_prefix(s, n) == n;
}

/* ---- stop strings ------------------------------------------------------------------ */
bool api_stop_find(const char *text, size_t len, size_t from,
                   const char *const *stops, size_t n_stops, size_t *at, size_t *hold)
{
    *at = 0;
    *hold = 0;
    if (from > len) from = len;
    bool found = false;
    size_t best = len;
    for (size_t i = 0; i < n_stops; i++) {
        if (!stops[i] || !stops[i][0]) continue;
        const char *m = memmem(text + from, len - from, stops[i], strlen(stops[i]));
        if (m && (size_t)(m - text) < best) { best = (size_t)(m - text); found = true; }
    }
    if (found) { *at = best; return true; }
    /* no match: the longest tail of text[from..len) that begins some stop string */
    size_t h = 0;
    for (size_t i = 0; i < n_stops; i++) {
        if (!stops[i]) continue;
        size_t m = strlen(stops[i]);
        size_t k = m > 0 ? m - 1 : 0;          /* proper prefixes only: a full one matched */
        if (k > len - from) k = len - from;
        for (; k > h; k--)
            if (memcmp(text + len - k, stops[i], k) == 0) { h = k; break; }
    }
    *hold = h;
    return false;
}
