/* api_req.c - request bodies -> api_req: see api_req.h for the rules.
 * Room: server. May touch: api.h, cJSON, libc. Never prints.
 *
 * How it reads:
 *   body --size, NUL check--> NUL-terminated copy --cJSON--> tree --\u escape scan-->
 *   one pass over the top-level members in body order: each known name maps to a
 *   row of FIELDS (which endpoints know it); read_field reads its value, and
 *   messages, content parts, prompt and stop have readers of their own.
 * Nothing here recurses: the tree is at most 1000 deep (cJSON's nesting limit,
 * checked while parsing) and the readers walk a fixed shape.
 * Each field is set at most once (a repeated name is an error), so no reader ever
 * overwrites a string it would leak; on any error api_req_free undoes the rest. */
#include "server/api_req.h"

#include <cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct reader {
    const api_limits *lim;
    api_error *err;
    api_req *req;
} reader;

/* ---- errors --------------------------------------------------------------------- */
static kvlm_err bad(reader *r, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static kvlm_err bad(reader *r, const char *param, const char *fmt, ...)
{
    char msg[sizeof r->err->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    api_error_set(r->err, 400, NULL, param, "%s", msg);
    return KVLM_ERR_INVALID;
}

static kvlm_err oom(reader *r)
{
    api_error_set(r->err, 500, NULL, NULL, "out of memory while reading the request");
    return KVLM_ERR_NOMEM;
}

/* A client-supplied name made fit to quote: at most 64 bytes, invalid UTF-8 and
 * control bytes replaced by '?', "..." when cut. buf must hold 72 bytes. */
static const char *quote(char *buf, const char *s)
{
    size_t n = strlen(s), o = 0, i = 0;
    while (i < n && o < 64) {
        size_t ok = api_utf8_valid_prefix(s + i, n - i);
        if (ok == 0) { buf[o++] = '?'; i++; continue; }
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (o + len > 64) break;
        if (c < 0x20 || c == 0x7F) buf[o++] = '?';
        else { memcpy(buf + o, s + i, len); o += len; }
        i += len;
    }
    if (i < n) { memcpy(buf + o, "...", 3); o += 3; }
    buf[o] = '\0';
    return buf;
}

static kvlm_err unknown(reader *r, const char *path, const char *key)
{
    char q[72], param[400];   /* api_error_set cuts it to fit, at a character boundary */
    if (path) snprintf(param, sizeof param, "%s.%s", path, quote(q, key));
    else snprintf(param, sizeof param, "%s", quote(q, key));
    return bad(r, param, "Unrecognized request argument supplied: %s", param);
}

static kvlm_err unsupported(reader *r, const char *name)
{
    return bad(r, name, "'%s' is not supported by this server", name);
}

/* ---- typed values ------------------------------------------------------------------ */
static kvlm_err read_bool(reader *r, const cJSON *v, const char *name, bool *out)
{
    if (!cJSON_IsBool(v)) return bad(r, name, "'%s' must be a boolean", name);
    *out = cJSON_IsTrue(v);
    return KVLM_OK;
}

/* A finite number in [lo, hi], or (lo, hi] when lo_open. */
static kvlm_err read_num(reader *r, const cJSON *v, const char *name, double lo, double hi,
                         bool lo_open, double *out)
{
    if (!cJSON_IsNumber(v)) return bad(r, name, "'%s' must be a number", name);
    double x = v->valuedouble;
    if (!isfinite(x) || x > hi || x < lo || (lo_open && x == lo)) {
        if (lo_open) return bad(r, name, "'%s' must be greater than %g and at most %g", name, lo, hi);
        return bad(r, name, "'%s' must be between %g and %g", name, lo, hi);
    }
    *out = x;
    return KVLM_OK;
}

/* An integral number in [lo, hi]. JSON numbers arrive as doubles: integers are
 * exact up to 2^53, and 10.0 counts as the integer 10. */
static kvlm_err read_int(reader *r, const cJSON *v, const char *name, int64_t lo, int64_t hi,
                         int64_t *out)
{
    if (!cJSON_IsNumber(v)) return bad(r, name, "'%s' must be an integer", name);
    double x = v->valuedouble;
    if (!isfinite(x) || x != floor(x)) return bad(r, name, "'%s' must be an integer", name);
    /* [-2^63, 2^63) converts to int64_t without overflow */
    if (x < -9223372036854775808.0 || x >= 9223372036854775808.0 ||
        (int64_t)x < lo || (int64_t)x > hi)
        return bad(r, name, "'%s' must be an integer between %lld and %lld", name,
                   (long long)lo, (long long)hi);
    *out = (int64_t)x;
    return KVLM_OK;
}

/* A copy of a JSON string, checked to be UTF-8. NUL bytes cannot occur: the raw
 * body has none, and \u0000 and malformed \u escapes were refused before the walk. */
static kvlm_err read_str(reader *r, const cJSON *v, const char *name, char **out, size_t *len)
{
    if (!cJSON_IsString(v) || !v->valuestring) return bad(r, name, "'%s' must be a string", name);
    size_t n = strlen(v->valuestring);
    if (!api_utf8_valid(v->valuestring, n)) return bad(r, name, "invalid UTF-8 in '%s'", name);
    if (out) {
        *out = malloc(n + 1);
        if (!*out) return oom(r);
        memcpy(*out, v->valuestring, n + 1);
    }
    if (len) *len = n;
    return KVLM_OK;
}

static size_t count(const cJSON *arr)
{
    size_t n = 0;
    for (const cJSON *c = arr->child; c; c = c->next) n++;
    return n;
}

/* ---- messages ------------------------------------------------------------------------ */
/* content: a string, or [{"type":"text","text":...}, ...] joined with nothing between */
static kvlm_err read_content(reader *r, const cJSON *v, const char *path, char **out, size_t *len)
{
    if (cJSON_IsString(v)) return read_str(r, v, path, out, len);
    if (!cJSON_IsArray(v))
        return bad(r, path, "'%s' must be a string or an array of content parts", path);
    if (!v->child) return bad(r, path, "'%s' must not be an empty array", path);
    char p[256], q[72];
    size_t total = 0, i = 0;
    kvlm_err e;
    for (const cJSON *part = v->child; part; part = part->next, i++) {
        snprintf(p, sizeof p, "%s[%zu]", path, i);
        if (!cJSON_IsObject(part)) return bad(r, p, "'%s' must be an object", p);
        /* the type first: an image part is "not supported", not "unrecognized" */
        const cJSON *type = NULL, *text = NULL, *other = NULL;
        for (const cJSON *k = part->child; k; k = k->next) {
            const cJSON **slot = !strcmp(k->string, "type") ? &type : !strcmp(k->string, "text") ? &text : &other;
            if (*slot && slot != &other) return bad(r, p, "'%s' has the key '%s' twice", p, k->string);
            if (!*slot) *slot = k;
        }
        char pt[256];
        snprintf(pt, sizeof pt, "%s[%zu].type", path, i);
        if (!type) return bad(r, pt, "Missing required parameter: '%s'.", pt);
        if ((e = read_str(r, type, pt, NULL, NULL))) return e;
        if (strcmp(type->valuestring, "text") != 0)
            return bad(r, pt, "content part type '%s' is not supported (only 'text')",
                       quote(q, type->valuestring));
        if (other) return unknown(r, p, other->string);
        snprintf(p, sizeof p, "%s[%zu].text", path, i);
        size_t n;
        if (!text) return bad(r, p, "Missing required parameter: '%s'.", p);
        if ((e = read_str(r, text, p, NULL, &n))) return e;
        total += n;
    }
    char *s = malloc(total + 1);
    if (!s) return oom(r);
    size_t o = 0;
    for (const cJSON *part = v->child; part; part = part->next) {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        size_t n = strlen(text->valuestring);
        memcpy(s + o, text->valuestring, n);
        o += n;
    }
    s[o] = '\0';
    *out = s;
    *len = o;
    return KVLM_OK;
}

/* Message keys kvlm reads or tolerates. Those after "name" appear when a client
 * sends back a message object from an earlier response: null (or []) is fine,
 * anything else is a feature kvlm lacks. */
enum { MK_ROLE, MK_CONTENT, MK_NAME, MK_REFUSAL, MK_TOOL_CALLS, MK_FUNCTION_CALL, MK_AUDIO,
       MK_ANNOTATIONS, MK_TOOL_CALL_ID, MK_N };
static const char *const MSG_KEYS[MK_N] = {
    "role", "content", "name", "refusal", "tool_calls", "function_call", "audio",
    "annotations", "tool_call_id",
};

static kvlm_err read_message(reader *r, const cJSON *m, size_t i, api_msg *out)
{
    char path[48], p[sizeof r->err->param], q[72];
    snprintf(path, sizeof path, "messages[%zu]", i);
    if (!cJSON_IsObject(m)) return bad(r, path, "'%s' must be an object", path);
    const cJSON *val[MK_N] = { 0 };
    for (const cJSON *k = m->child; k; k = k->next) {
        int id = 0;
        while (id < MK_N && strcmp(k->string, MSG_KEYS[id]) != 0) id++;
        if (id == MK_N) return unknown(r, path, k->string);
        snprintf(p, sizeof p, "%s.%s", path, MSG_KEYS[id]);
        if (val[id]) return bad(r, p, "'%s' appears twice", p);
        val[id] = k;
        if (id >= MK_REFUSAL && !cJSON_IsNull(k)) {
            bool empty_list = (id == MK_TOOL_CALLS || id == MK_ANNOTATIONS) && cJSON_IsArray(k) && !k->child;
            if (!empty_list) {
                if (id == MK_TOOL_CALLS || id == MK_FUNCTION_CALL || id == MK_TOOL_CALL_ID)
                    return bad(r, p, "'%s' is not supported: this server has no tool calling", p);
                return unsupported(r, p);
            }
        }
    }
    kvlm_err e;
    snprintf(p, sizeof p, "%s.role", path);
    const cJSON *role = val[MK_ROLE];
    if (!role || cJSON_IsNull(role)) return bad(r, p, "Missing required parameter: '%s'.", p);
    if ((e = read_str(r, role, p, NULL, NULL))) return e;
    const char *rs = role->valuestring;
    if (!strcmp(rs, "system") || !strcmp(rs, "developer")) out->role = API_ROLE_SYSTEM;
    else if (!strcmp(rs, "user")) out->role = API_ROLE_USER;
    else if (!strcmp(rs, "assistant")) out->role = API_ROLE_ASSISTANT;
    else if (!strcmp(rs, "tool") || !strcmp(rs, "function"))
        return bad(r, p, "role '%s' is not supported: this server has no tool calling", rs);
    else
        return bad(r, p, "'%s' is '%s'; it must be one of 'system', 'developer', 'user', 'assistant'",
                   p, quote(q, rs));
    if (val[MK_NAME] && !cJSON_IsNull(val[MK_NAME])) {
        snprintf(p, sizeof p, "%s.name", path);
        if ((e = read_str(r, val[MK_NAME], p, NULL, NULL))) return e;   /* checked, unused */
    }
    snprintf(p, sizeof p, "%s.content", path);
    if (!val[MK_CONTENT] || cJSON_IsNull(val[MK_CONTENT]))
        return bad(r, p, "Missing required parameter: '%s'.", p);
    return read_content(r, val[MK_CONTENT], p, &out->content, &out->len);
}

static kvlm_err read_messages(reader *r, const cJSON *v)
{
    if (!cJSON_IsArray(v)) return bad(r, "messages", "'messages' must be an array");
    size_t n = count(v);
    if (n == 0) return bad(r, "messages", "'messages' must not be empty");
    if (n > r->lim->max_messages)
        return bad(r, "messages", "'messages' has %zu entries; this server accepts at most %zu",
                   n, r->lim->max_messages);
    r->req->msgs = calloc(n, sizeof *r->req->msgs);
    if (!r->req->msgs) return oom(r);
    size_t i = 0;
    for (const cJSON *m = v->child; m; m = m->next, i++) {
        kvlm_err e = read_message(r, m, i, &r->req->msgs[i]);
        r->req->n_msgs = i + 1;       /* api_req_free frees what is set so far */
        if (e) return e;
    }
    return KVLM_OK;
}

/* ---- prompt ------------------------------------------------------------------------ */
static kvlm_err read_tokens(reader *r, const cJSON *arr, const char *path)
{
    size_t n = count(arr);
    if (n == 0) return bad(r, path, "'%s' must not be empty", path);
    r->req->prompt_tokens = malloc(n * sizeof *r->req->prompt_tokens);
    if (!r->req->prompt_tokens) return oom(r);
    char p[sizeof r->err->param];
    size_t i = 0;
    for (const cJSON *t = arr->child; t; t = t->next, i++) {
        double x = cJSON_IsNumber(t) ? t->valuedouble : NAN;
        if (!isfinite(x) || x != floor(x) || x < 0 || x >= (double)r->lim->n_vocab) {
            snprintf(p, sizeof p, "%s[%zu]", path, i);
            if (!isfinite(x) || x != floor(x)) return bad(r, p, "'%s' must be a token id (an integer)", p);
            return bad(r, p, "'%s' is %.0f, not a token id in [0, %lld)", p, x, (long long)r->lim->n_vocab);
        }
        r->req->prompt_tokens[i] = (kvlm_token)x;
    }
    r->req->n_prompt_tokens = n;
    return KVLM_OK;
}

static kvlm_err read_prompt(reader *r, const cJSON *v)
{
    if (cJSON_IsString(v)) return read_str(r, v, "prompt", &r->req->prompt, &r->req->prompt_len);
    if (cJSON_IsArray(v) && v->child) {
        size_t n = count(v);
        const cJSON *first = v->child;
        if ((cJSON_IsString(first) || cJSON_IsArray(first)) && n > 1)
            return bad(r, "prompt", "batch prompts are not supported: 'prompt' holds %zu prompts; "
                       "send one prompt per request", n);
        if (cJSON_IsString(first)) return read_str(r, first, "prompt[0]", &r->req->prompt, &r->req->prompt_len);
        if (cJSON_IsArray(first)) return read_tokens(r, first, "prompt[0]");
        if (cJSON_IsNumber(first)) return read_tokens(r, v, "prompt");
    }
    if (cJSON_IsArray(v) && !v->child) return bad(r, "prompt", "'prompt' must not be an empty array");
    return bad(r, "prompt", "'prompt' must be a string, an array of token ids, or an array "
               "holding one string");
}

/* ---- stop ---------------------------------------------------------------------------- */
static kvlm_err read_stop(reader *r, const cJSON *v)
{
    api_req *q = r->req;
    if (!cJSON_IsString(v) && !cJSON_IsArray(v))
        return bad(r, "stop", "'stop' must be a string or an array of strings");
    size_t n = cJSON_IsString(v) ? 1 : count(v);
    if (n > r->lim->max_stop)
        return bad(r, "stop", "'stop' has %zu strings; at most %zu are allowed", n, r->lim->max_stop);
    if (n == 0) return KVLM_OK;
    q->stop = calloc(n, sizeof *q->stop);
    if (!q->stop) return oom(r);
    char p[32];
    size_t i = 0;
    for (const cJSON *s = cJSON_IsString(v) ? v : v->child; s && i < n; s = s->next, i++) {
        if (cJSON_IsString(v)) snprintf(p, sizeof p, "stop");
        else snprintf(p, sizeof p, "stop[%zu]", i);
        size_t len;
        kvlm_err e = read_str(r, s, p, &q->stop[i], &len);
        if (e) return e;
        q->n_stop = i + 1;
        if (len == 0) return bad(r, p, "'%s' must not be an empty string", p);
    }
    return KVLM_OK;
}

/* ---- top-level fields ------------------------------------------------------------------ */
enum field_id {
    F_MODEL, F_MESSAGES, F_PROMPT, F_STREAM, F_STREAM_OPTIONS, F_MAX_TOKENS,
    F_MAX_COMPLETION_TOKENS, F_TEMPERATURE, F_TOP_P, F_SEED, F_N, F_STOP, F_CACHE_SALT,
    F_USER, F_PRESENCE_PENALTY, F_FREQUENCY_PENALTY, F_LOGPROBS, F_TOP_LOGPROBS,
    F_LOGIT_BIAS, F_RESPONSE_FORMAT, F_TOOLS, F_TOOL_CHOICE, F_STORE, F_ECHO, F_SUFFIX,
    F_BEST_OF, F_NULL_ONLY,
};
enum { EP_CHAT = 1 << API_CHAT, EP_COMP = 1 << API_COMPLETION, EP_BOTH = EP_CHAT | EP_COMP };

static const struct field { const char *name; enum field_id id; unsigned eps; } FIELDS[] = {
    { "model", F_MODEL, EP_BOTH },
    { "messages", F_MESSAGES, EP_CHAT },
    { "prompt", F_PROMPT, EP_COMP },
    { "stream", F_STREAM, EP_BOTH },
    { "stream_options", F_STREAM_OPTIONS, EP_BOTH },
    { "max_tokens", F_MAX_TOKENS, EP_BOTH },
    { "max_completion_tokens", F_MAX_COMPLETION_TOKENS, EP_CHAT },
    { "temperature", F_TEMPERATURE, EP_BOTH },
    { "top_p", F_TOP_P, EP_BOTH },
    { "seed", F_SEED, EP_BOTH },
    { "n", F_N, EP_BOTH },
    { "stop", F_STOP, EP_BOTH },
    { "cache_salt", F_CACHE_SALT, EP_BOTH },
    { "user", F_USER, EP_BOTH },
    { "presence_penalty", F_PRESENCE_PENALTY, EP_BOTH },
    { "frequency_penalty", F_FREQUENCY_PENALTY, EP_BOTH },
    { "logprobs", F_LOGPROBS, EP_BOTH },
    { "top_logprobs", F_TOP_LOGPROBS, EP_CHAT },
    { "logit_bias", F_LOGIT_BIAS, EP_BOTH },
    { "response_format", F_RESPONSE_FORMAT, EP_CHAT },
    { "tools", F_TOOLS, EP_CHAT },
    { "tool_choice", F_TOOL_CHOICE, EP_CHAT },
    { "store", F_STORE, EP_CHAT },
    { "echo", F_ECHO, EP_COMP },
    { "suffix", F_SUFFIX, EP_COMP },
    { "best_of", F_BEST_OF, EP_COMP },
    { "parallel_tool_calls", F_NULL_ONLY, EP_CHAT },
    { "functions", F_NULL_ONLY, EP_CHAT },
    { "function_call", F_NULL_ONLY, EP_CHAT },
    { "audio", F_NULL_ONLY, EP_CHAT },
    { "modalities", F_NULL_ONLY, EP_CHAT },
    { "prediction", F_NULL_ONLY, EP_CHAT },
    { "reasoning_effort", F_NULL_ONLY, EP_CHAT },
    { "service_tier", F_NULL_ONLY, EP_CHAT },
    { "web_search_options", F_NULL_ONLY, EP_CHAT },
    { "metadata", F_NULL_ONLY, EP_CHAT },
};
enum { N_FIELDS = sizeof FIELDS / sizeof FIELDS[0] };

/* What the walk saw, for the checks that span fields. */
typedef struct seen {
    bool field[N_FIELDS];
    bool stream_options;                       /* present and not null */
    bool has_max_tokens, has_max_completion;
    int64_t max_tokens, max_completion;
} seen;

static kvlm_err read_stream_options(reader *r, const cJSON *v)
{
    if (!cJSON_IsObject(v)) return bad(r, "stream_options", "'stream_options' must be an object");
    bool got = false;
    for (const cJSON *k = v->child; k; k = k->next) {
        if (strcmp(k->string, "include_usage") != 0) return unknown(r, "stream_options", k->string);
        if (got) return bad(r, "stream_options.include_usage", "'stream_options.include_usage' appears twice");
        got = true;
        if (cJSON_IsNull(k)) continue;
        kvlm_err e = read_bool(r, k, "stream_options.include_usage", &r->req->include_usage);
        if (e) return e;
    }
    return KVLM_OK;
}

static kvlm_err read_field(reader *r, const struct field *f, const cJSON *v, api_endpoint ep, seen *s)
{
    api_req *q = r->req;
    const api_limits *lim = r->lim;
    const char *nm = f->name;
    kvlm_err e;
    int64_t k = 0;
    bool b = false;
    switch (f->id) {
    case F_MODEL: return read_str(r, v, nm, &q->model, NULL);
    case F_MESSAGES: return read_messages(r, v);
    case F_PROMPT: return read_prompt(r, v);
    case F_STREAM: return read_bool(r, v, nm, &q->stream);
    case F_STREAM_OPTIONS:
        s->stream_options = true;
        return read_stream_options(r, v);
    case F_MAX_TOKENS:
        s->has_max_tokens = true;
        return read_int(r, v, nm, 1, lim->max_tokens_cap, &s->max_tokens);
    case F_MAX_COMPLETION_TOKENS:
        s->has_max_completion = true;
        return read_int(r, v, nm, 1, lim->max_tokens_cap, &s->max_completion);
    case F_TEMPERATURE: return read_num(r, v, nm, 0, 2, false, &q->temperature);
    case F_TOP_P: return read_num(r, v, nm, 0, 1, true, &q->top_p);
    case F_SEED:
        if ((e = read_int(r, v, nm, INT64_MIN, INT64_MAX, &q->seed))) return e;
        q->has_seed = true;
        return KVLM_OK;
    case F_N: return read_int(r, v, nm, 1, lim->max_n, &q->n);
    case F_STOP: return read_stop(r, v);
    case F_CACHE_SALT: {
        size_t n;
        if ((e = read_str(r, v, nm, &q->cache_salt, &n))) return e;
        if (n == 0 || n > API_CACHE_SALT_MAX)
            return bad(r, nm, "'cache_salt' must be a non-empty string of at most %d bytes", API_CACHE_SALT_MAX);
        return KVLM_OK;
    }
    case F_USER: return read_str(r, v, nm, NULL, NULL);
    case F_PRESENCE_PENALTY: return read_num(r, v, nm, -2, 2, false, &q->presence_penalty);
    case F_FREQUENCY_PENALTY: return read_num(r, v, nm, -2, 2, false, &q->frequency_penalty);
    case F_LOGPROBS:
        if (ep == API_CHAT) {
            if ((e = read_bool(r, v, nm, &b))) return e;
            return b ? unsupported(r, nm) : KVLM_OK;
        }
        if ((e = read_int(r, v, nm, 0, 5, &k))) return e;   /* completions: an integer, 0..5 */
        return unsupported(r, nm);
    case F_TOP_LOGPROBS:
        if ((e = read_int(r, v, nm, 0, 20, &k))) return e;
        return k ? unsupported(r, nm) : KVLM_OK;
    case F_LOGIT_BIAS:
        if (!cJSON_IsObject(v)) return bad(r, nm, "'logit_bias' must be an object");
        return v->child ? unsupported(r, nm) : KVLM_OK;
    case F_RESPONSE_FORMAT: {
        if (!cJSON_IsObject(v)) return bad(r, nm, "'response_format' must be an object");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "type");
        if (!t) return bad(r, "response_format.type", "Missing required parameter: 'response_format.type'.");
        if ((e = read_str(r, t, "response_format.type", NULL, NULL))) return e;
        char qb[72];
        if (strcmp(t->valuestring, "text") != 0)
            return bad(r, "response_format.type", "response_format of type '%s' is not supported "
                       "(only 'text')", quote(qb, t->valuestring));
        for (const cJSON *c = v->child; c; c = c->next)
            if (c != t) return unknown(r, "response_format", c->string);
        return KVLM_OK;
    }
    case F_TOOLS:
        if (!cJSON_IsArray(v)) return bad(r, nm, "'tools' must be an array");
        return v->child ? bad(r, nm, "'tools' is not supported: this server has no tool calling") : KVLM_OK;
    case F_TOOL_CHOICE:
        if (cJSON_IsString(v) && !strcmp(v->valuestring, "none")) return KVLM_OK;
        return bad(r, nm, "'tool_choice' is not supported: this server has no tool calling");
    case F_STORE:
        if ((e = read_bool(r, v, nm, &b))) return e;
        return b ? unsupported(r, nm) : KVLM_OK;
    case F_ECHO:
        if ((e = read_bool(r, v, nm, &b))) return e;
        return b ? unsupported(r, nm) : KVLM_OK;
    case F_SUFFIX: {
        size_t n;
        if ((e = read_str(r, v, nm, NULL, &n))) return e;
        return n ? unsupported(r, nm) : KVLM_OK;
    }
    case F_BEST_OF:
        if ((e = read_int(r, v, nm, 1, INT64_MAX, &k))) return e;
        return k > 1 ? unsupported(r, nm) : KVLM_OK;
    case F_NULL_ONLY:
        return unsupported(r, nm);   /* null never gets here */
    }
    return unsupported(r, nm);
}

static kvlm_err read_top(reader *r, api_endpoint ep, const cJSON *root)
{
    api_req *q = r->req;
    const api_limits *lim = r->lim;
    seen s = { 0 };
    q->endpoint = ep;
    q->temperature = 1.0;
    q->top_p = 1.0;
    q->n = 1;
    for (const cJSON *v = root->child; v; v = v->next) {
        size_t i = 0;
        while (i < N_FIELDS && !(((FIELDS[i].eps >> ep) & 1) && !strcmp(FIELDS[i].name, v->string))) i++;
        if (i == N_FIELDS) return unknown(r, NULL, v->string);
        if (s.field[i]) return bad(r, FIELDS[i].name, "'%s' appears twice in the request", FIELDS[i].name);
        s.field[i] = true;
        if (cJSON_IsNull(v)) continue;
        kvlm_err e = read_field(r, &FIELDS[i], v, ep, &s);
        if (e) return e;
    }
    if (!q->model || !q->model[0]) return bad(r, "model", "you must provide a model parameter");
    if (ep == API_CHAT && !q->msgs) return bad(r, "messages", "Missing required parameter: 'messages'.");
    if (ep == API_COMPLETION && !q->prompt && !q->prompt_tokens)
        return bad(r, "prompt", "Missing required parameter: 'prompt'.");
    if (s.stream_options && !q->stream)
        return bad(r, "stream_options", "The 'stream_options' parameter is only allowed when 'stream' is enabled.");
    q->max_tokens = s.has_max_completion ? s.max_completion
                  : s.has_max_tokens ? s.max_tokens
                  : lim->default_max_tokens < lim->max_tokens_cap ? lim->default_max_tokens
                  : lim->max_tokens_cap;
    if (lim->model_name && strcmp(q->model, lim->model_name) != 0) {
        char qb[72];
        api_error_set(r->err, 404, "model_not_found", "model",
                      "The model `%s` does not exist or you do not have access to it.", quote(qb, q->model));
        return KVLM_ERR_INVALID;
    }
    return KVLM_OK;
}

/* Checks the \u escapes cJSON does not: it decodes "\u0000" to a NUL byte and,
 * worse, a malformed escape such as "\uZZZZ" to one too, and a NUL ends its C
 * string: {"model\uZZZZx":..} would read as "model". Returns 0 when every \u has
 * four hex digits and is not \u0000, 1 for \u0000, 2 for a malformed one (its
 * offset in *at). A lexer of just enough JSON: outside strings '"' opens one;
 * inside, '\' takes the next byte and '"' closes. Exact for the JSON cJSON
 * accepted: its string scan skips the byte after each '\' the same way. */
static int check_u_escapes(const char *s, size_t n, size_t *at)
{
    bool in = false;
    for (size_t i = 0; i < n; i++) {
        if (!in) { in = s[i] == '"'; continue; }
        if (s[i] == '"') in = false;
        else if (s[i] == '\\') {
            if (i + 1 < n && s[i + 1] == 'u') {
                *at = i;
                if (i + 5 >= n) return 2;
                for (size_t k = 2; k < 6; k++)
                    if (!((s[i + k] >= '0' && s[i + k] <= '9') || ((s[i + k] | 0x20) >= 'a' && (s[i + k] | 0x20) <= 'f')))
                        return 2;
                if (memcmp(s + i + 2, "0000", 4) == 0) return 1;
            }
            i++;
        }
    }
    return 0;
}

kvlm_err api_req_parse(api_endpoint ep, const char *body, size_t len, const api_limits *lim,
                       api_req *out, api_error *err)
{
    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);
    reader r = { lim, err, out };
    char *copy = NULL;
    cJSON *root = NULL;
    kvlm_err e = KVLM_ERR_INVALID;
    if (ep != API_CHAT && ep != API_COMPLETION) {
        api_error_set(err, 500, NULL, NULL, "internal error: unknown endpoint %d", (int)ep);
        goto fail;
    }
    if (len > lim->max_body) {
        api_error_set(err, 413, "request_too_large", NULL,
                      "the request body is %zu bytes; this server accepts at most %zu", len, lim->max_body);
        goto fail;
    }
    if (len == 0) { bad(&r, NULL, "the request body is empty; expected a JSON object"); goto fail; }
    const char *nul = memchr(body, 0, len);
    if (nul) {
        bad(&r, NULL, "the request body holds a NUL byte (at byte %zu)", (size_t)(nul - body));
        goto fail;
    }
    /* cJSON is written for NUL-terminated text: a private copy keeps every read it
     * makes inside our buffer, whatever the caller's body sits next to. */
    copy = malloc(len + 1);
    if (!copy) { e = oom(&r); goto fail; }
    memcpy(copy, body, len);
    copy[len] = '\0';
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(copy, len + 1, &end, 1);
    if (!root) {
        size_t at = end && end >= copy && end <= copy + len ? (size_t)(end - copy) : 0;
        bad(&r, NULL, "could not parse the JSON body of the request (error near byte %zu)", at);
        goto fail;
    }
    if (!cJSON_IsObject(root)) { bad(&r, NULL, "the request body must be a JSON object"); goto fail; }
    size_t at = 0;
    int esc = check_u_escapes(copy, len, &at);
    if (esc == 1) {
        bad(&r, NULL, "a string in the request holds \\u0000 (at byte %zu): NUL characters are not supported", at);
        goto fail;
    }
    if (esc == 2) {
        bad(&r, NULL, "could not parse the JSON body of the request (a \\u escape without four hex "
            "digits at byte %zu)", at);
        goto fail;
    }
    free(copy);
    copy = NULL;
    if ((e = read_top(&r, ep, root))) goto fail;
    cJSON_Delete(root);
    return KVLM_OK;
fail:
    cJSON_Delete(root);
    free(copy);
    api_req_free(out);
    return e;
}

void api_req_free(api_req *r)
{
    if (!r) return;
    free(r->model);
    for (size_t i = 0; i < r->n_msgs; i++) free(r->msgs[i].content);
    free(r->msgs);
    free(r->prompt);
    free(r->prompt_tokens);
    for (size_t i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop);
    free(r->cache_salt);
    memset(r, 0, sizeof *r);
}

const char *api_req_role_name(api_role role)
{
    switch (role) {
    case API_ROLE_SYSTEM: return "system";
    case API_ROLE_USER: return "user";
    case API_ROLE_ASSISTANT: return "assistant";
    }
    return "user";
}
