/* api_resp.c - response JSON and SSE frames: see api_resp.h for the shapes.
 * Room: server. May touch: api.h, tok/detok.h (U+FFFD for invalid text), cJSON, libc.
 * Never prints.
 * Each builder makes a cJSON tree and prints it unformatted; cJSON escapes '"',
 * '\' and control bytes, and copies other bytes as they are, which is why texts
 * are made valid UTF-8 first (to_utf8). Any failed allocation frees the tree and
 * gives NULL. */
#include "server/api_resp.h"

#include <cJSON.h>
#include "tok/detok.h"
#include <stdlib.h>
#include <string.h>

/* s if it is valid UTF-8, else a malloc'd copy (*tmp, the caller frees it) with
 * each maximal invalid subpart replaced by U+FFFD: the streaming detokenizer's
 * rule (tok/detok.h), so a text reads the same streamed or whole. NULL when out
 * of memory. */
static const char *to_utf8(const char *s, char **tmp)
{
    *tmp = NULL;
    size_t n = strlen(s);
    if (api_utf8_valid(s, n)) return s;
    size_t cap = 3 * (n + 3) + 1;    /* detok.h: enough for any n bytes */
    char *o = malloc(cap);
    if (!o) return NULL;
    kvlm_detok d = { 0 };
    size_t k = detok_push(&d, s, n, o, cap);
    detok_flush(&d, o + k, cap - k);
    *tmp = o;
    return o;
}

static bool add_str(cJSON *o, const char *key, const char *s)
{
    char *tmp;
    const char *v = to_utf8(s ? s : "", &tmp);
    bool ok = v && cJSON_AddStringToObject(o, key, v);
    free(tmp);
    return ok;
}

static bool add_num(cJSON *o, const char *key, double x)
{
    return cJSON_AddNumberToObject(o, key, x) != NULL;
}

static bool add_finish(cJSON *o, api_finish f)
{
    if (f == API_FINISH_STOP) return cJSON_AddStringToObject(o, "finish_reason", "stop");
    if (f == API_FINISH_LENGTH) return cJSON_AddStringToObject(o, "finish_reason", "length");
    return cJSON_AddNullToObject(o, "finish_reason");
}

/* {"id","object","created","model"} with an empty "choices" array in *choices */
static cJSON *head(const api_resp_head *h, const char *object, cJSON **choices)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    if (add_str(o, "id", h->id) && cJSON_AddStringToObject(o, "object", object) &&
        add_num(o, "created", (double)h->created) && add_str(o, "model", h->model) &&
        (*choices = cJSON_AddArrayToObject(o, "choices")))
        return o;
    cJSON_Delete(o);
    return NULL;
}

static bool add_usage(cJSON *o, const api_usage *u)
{
    cJSON *us = cJSON_AddObjectToObject(o, "usage"), *d = NULL;
    return us && add_num(us, "prompt_tokens", (double)u->prompt_tokens) &&
           add_num(us, "completion_tokens", (double)u->completion_tokens) &&
           add_num(us, "total_tokens", (double)(u->prompt_tokens + u->completion_tokens)) &&
           (d = cJSON_AddObjectToObject(us, "prompt_tokens_details")) &&
           add_num(d, "cached_tokens", (double)u->cached_tokens);
}

/* Prints and frees the tree; NULL in gives NULL out. */
static char *finish_tree(cJSON *root, bool ok)
{
    char *out = ok && root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return out;
}

/* One choice object: chat message/delta or completion text. */
static cJSON *choice(cJSON *choices)
{
    cJSON *c = cJSON_CreateObject();
    if (!c) return NULL;
    if (!cJSON_AddItemToArray(choices, c)) { cJSON_Delete(c); return NULL; }
    return c;
}

char *api_resp_completion(api_endpoint ep, const api_resp_head *h,
                          const api_resp_choice *choices, size_t n_choices, const api_usage *u)
{
    cJSON *arr = NULL;
    cJSON *root = head(h, ep == API_CHAT ? "chat.completion" : "text_completion", &arr);
    bool ok = root != NULL;
    for (size_t i = 0; ok && i < n_choices; i++) {
        cJSON *c = choice(arr), *m = NULL;
        if (ep == API_CHAT)
            ok = c && add_num(c, "index", (double)i) && (m = cJSON_AddObjectToObject(c, "message")) &&
                 cJSON_AddStringToObject(m, "role", "assistant") && add_str(m, "content", choices[i].text);
        else
            ok = c && add_str(c, "text", choices[i].text) && add_num(c, "index", (double)i);
        ok = ok && cJSON_AddNullToObject(c, "logprobs") && add_finish(c, choices[i].finish);
    }
    ok = ok && add_usage(root, u);
    return finish_tree(root, ok);
}

char *api_resp_chunk(api_endpoint ep, const api_resp_head *h, size_t index, bool first,
                     const char *text, api_finish finish, bool usage_null)
{
    cJSON *arr = NULL;
    cJSON *root = head(h, ep == API_CHAT ? "chat.completion.chunk" : "text_completion", &arr);
    cJSON *c = root ? choice(arr) : NULL, *d = NULL;
    bool ok = c != NULL;
    if (ep == API_CHAT) {
        ok = ok && add_num(c, "index", (double)index) && (d = cJSON_AddObjectToObject(c, "delta")) &&
             (!first || cJSON_AddStringToObject(d, "role", "assistant")) &&
             (!(text || first) || add_str(d, "content", text));
    } else {
        ok = ok && add_str(c, "text", text) && add_num(c, "index", (double)index);
    }
    ok = ok && cJSON_AddNullToObject(c, "logprobs") && add_finish(c, finish);
    ok = ok && (!usage_null || cJSON_AddNullToObject(root, "usage"));
    return finish_tree(root, ok);
}

char *api_resp_usage_chunk(api_endpoint ep, const api_resp_head *h, const api_usage *u)
{
    cJSON *arr = NULL;
    cJSON *root = head(h, ep == API_CHAT ? "chat.completion.chunk" : "text_completion", &arr);
    return finish_tree(root, root && add_usage(root, u));
}

static cJSON *model_obj(const char *id, int64_t created)
{
    cJSON *m = cJSON_CreateObject();
    if (m && add_str(m, "id", id) && cJSON_AddStringToObject(m, "object", "model") &&
        add_num(m, "created", (double)created) && cJSON_AddStringToObject(m, "owned_by", "kvlm"))
        return m;
    cJSON_Delete(m);
    return NULL;
}

char *api_resp_models(const char *const *ids, size_t n, int64_t created)
{
    cJSON *root = cJSON_CreateObject(), *data = NULL;
    bool ok = root && cJSON_AddStringToObject(root, "object", "list") &&
              (data = cJSON_AddArrayToObject(root, "data"));
    for (size_t i = 0; ok && i < n; i++) {
        cJSON *m = model_obj(ids[i], created);
        ok = m && cJSON_AddItemToArray(data, m);
        if (!ok) cJSON_Delete(m);
    }
    return finish_tree(root, ok);
}

char *api_resp_model(const char *id, int64_t created)
{
    cJSON *m = model_obj(id, created);
    return finish_tree(m, m != NULL);
}

char *api_resp_sse(const char *data, size_t *len)
{
    /* SSE ends a line at "\r\n", "\r" or "\n": each line of data gets "data: "
     * before it and "\n" after it, and one more "\n" ends the event */
    size_t n = strlen(data), lines = 1;
    for (size_t i = 0; i < n; i++) lines += data[i] == '\n' || data[i] == '\r';
    char *o = malloc(n + lines * 7 + 2);
    if (!o) return NULL;
    size_t k = 0;
    memcpy(o + k, "data: ", 6);
    k += 6;
    for (size_t i = 0; i < n; i++) {
        if (data[i] != '\r' && data[i] != '\n') { o[k++] = data[i]; continue; }
        if (data[i] == '\r' && data[i + 1] == '\n') i++;
        memcpy(o + k, "\ndata: ", 7);
        k += 7;
    }
    o[k++] = '\n';
    o[k++] = '\n';
    o[k] = '\0';
    if (len) *len = k;
    return o;
}

const char *api_resp_sse_done(void)
{
    return "data: [DONE]\n\n";
}
