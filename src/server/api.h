/* api.h - what the OpenAI-compatible API layer shares: the error a request gets
 * back (and its JSON), the limits the server imposes, strict UTF-8 validation,
 * and the stop-string scan the generation loop runs on its output.
 * Room: server. May touch: core/ (kvlm.h types), cJSON, libc. Knows nothing of
 * HTTP sockets, the model or the KV cache: pure bytes in, structs and JSON out.
 *
 * The layer is three files, one prefix each:
 *   api.c       api_*       errors, limits, UTF-8, stop strings (this header)
 *   api_req.c   api_req_*   request body -> api_req (api_req.h)
 *   api_resp.c  api_resp_*  plain values -> response JSON and SSE frames (api_resp.h)
 *
 * Errors follow OpenAI's shape, {"error":{"message","type","param","code"}}.
 * Status -> type (and the code used when the caller passes none):
 *   400, 404, 405, 413, other 4xx   invalid_request_error
 *   401                             invalid_request_error, code invalid_api_key
 *                                   (what api.openai.com sends for a bad key)
 *   429                             requests, code rate_limit_exceeded (OpenAI's
 *                                   request-rate error; kvlm sends it when its
 *                                   queue is full: clients back off and retry)
 *   500, 503, other 5xx             server_error
 * Messages and params are always valid UTF-8: names copied from a request are
 * sanitized and a truncated message never ends inside a character. */
#ifndef KVLM_SERVER_API_H
#define KVLM_SERVER_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"

typedef enum api_endpoint {
    API_CHAT = 0,         /* POST /v1/chat/completions */
    API_COMPLETION = 1,   /* POST /v1/completions */
} api_endpoint;

/* ---- errors ------------------------------------------------------------------ */
typedef struct api_error {
    int  http_status;   /* 400, 401, 404, 405, 413, 429, 500, 503 ... */
    char type[32];      /* "invalid_request_error", "server_error" ... */
    char message[384];  /* one line for the client */
    char param[128];    /* the offending parameter, e.g. "messages[2].content"; "" = null */
    char code[48];      /* e.g. "model_not_found"; "" = null */
} api_error;

/* Fills *e: status, the type of that status (table above), code (NULL: the
 * status's default, usually null), param (NULL = null) and the formatted message.
 * e may be NULL (nothing happens). */
void api_error_set(api_error *e, int http_status, const char *code, const char *param,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* The error as OpenAI sends it: {"error":{"message":..,"type":..,"param":..|null,
 * "code":..|null}}. malloc'd, NUL-terminated; the caller frees. NULL when out of
 * memory. Use with e->http_status as the HTTP status; mid-stream, frame it with
 * api_resp_sse (the openai clients raise on an "error" event). */
char *api_error_json(const api_error *e);

/* ---- limits -------------------------------------------------------------------- */
/* What the serving process allows; the parser checks every request against it. */
typedef struct api_limits {
    const char *model_name;     /* the served model's id; a request naming another gets
                                   404 model_not_found. NULL accepts any name */
    int64_t n_vocab;            /* token-id prompts must be in [0, n_vocab) */
    int64_t max_tokens_cap;     /* max_tokens / max_completion_tokens in [1, cap] */
    int64_t default_max_tokens; /* when the request gives neither */
    int64_t max_n;              /* n in [1, max_n] */
    size_t  max_body;           /* longer bodies: 413 */
    size_t  max_messages;       /* chat: at most this many messages */
    size_t  max_stop;           /* at most this many stop strings (OpenAI: 4) */
} api_limits;

/* model_name NULL, n_vocab 0 (token prompts rejected until set), max_tokens_cap
 * 4096, default_max_tokens 256, max_n 4, max_body 1 MiB, max_messages 512,
 * max_stop 4. The server overrides what it knows (model, vocabulary, context). */
api_limits api_limits_default(void);

/* ---- UTF-8 ---------------------------------------------------------------------- */
/* True when s[0..n) is well-formed UTF-8 (Unicode table 3-7): no overlong forms,
 * no surrogates (U+D800..DFFF), nothing above U+10FFFF, no truncated sequence.
 * NUL bytes are well-formed UTF-8; callers that forbid them check separately. */
bool api_utf8_valid(const char *s, size_t n);

/* The length of the longest prefix of s[0..n) that is well-formed UTF-8. */
size_t api_utf8_valid_prefix(const char *s, size_t n);

/* ---- stop strings ------------------------------------------------------------------ */
/* Scans generated text[0..len) for the stop strings stops[0..n_stops) (empty
 * ones are skipped), considering only matches that start at or after `from`.
 *   found:     returns true, *at = the start of the earliest match. The client
 *              gets text[0..*at); the stop string itself is never sent. *hold = 0.
 *   not found: returns false, *hold = the length of the longest tail of
 *              text[from..len) that is a proper prefix of a stop string: those
 *              bytes may yet become a stop, so only text[0..len - *hold) may be
 *              streamed now.
 * Incremental use: pass from = the number of bytes already streamed. Everything
 * streamed was checked to start no stop (it was not held back), so a match can
 * only start at or after it, and each call costs O((len - from) * total stop
 * bytes) instead of rescanning the whole text.
 * A stop match in valid UTF-8 text always starts at a character boundary, and so
 * does the held-back tail: streaming text[0..len - hold) never splits a character
 * that the text itself did not split. at and hold may not be NULL. */
bool api_stop_find(const char *text, size_t len, size_t from,
                   const char *const *stops, size_t n_stops, size_t *at, size_t *hold);

#endif
