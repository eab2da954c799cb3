/* api_req.h - the body of POST /v1/chat/completions or /v1/completions, parsed
 * and validated into an api_req that owns its strings.
 * Room: server. May touch: api.h, cJSON, libc. Knows nothing of HTTP, the model
 * or the tokenizer: the caller turns the request into tokens and sampler params.
 *
 * The body is hostile input: any bytes, not NUL-terminated, read only inside
 * body[0..len). Checks, in order:
 *   len > limits.max_body                 413 request_too_large
 *   a NUL byte in the body                400
 *   not JSON, trailing bytes after it     400 (cJSON stops at nesting depth 1000)
 *   not an object                         400
 *   a \u escape without 4 hex digits      400 (cJSON decodes it, and \u0000, to a NUL
 *   a string holding \u0000               400  byte that would cut the string there)
 *   then each top-level field in body order:
 *     unknown field                       400 "Unrecognized request argument supplied: NAME"
 *     the same field twice                400 (JSON parsers disagree on which wins)
 *     wrong JSON type                     400 "'NAME' must be a number" ...
 *     out of range                        400
 *     invalid UTF-8 in a string           400 "invalid UTF-8 in 'NAME'"
 *     a feature kvlm lacks                400 "... is not supported"
 *   required fields (model, messages / prompt), stream_options without stream: 400
 *   model other than limits.model_name    404 model_not_found
 * (cJSON running out of memory while parsing also reads as a 400: it cannot tell.)
 * Memory: the cJSON tree of a body of B bytes can take ~40 B (an array of
 * one-digit numbers: ~80 bytes of node per 2 bytes of input): size max_body with
 * the number of requests parsed at once in mind.
 * Threads: api_req_parse keeps no state of its own, but cJSON's parser resets and
 * sets a global error record on every call: a data race (harmless in practice,
 * reported by TSan) if two threads parse at once. Parse on one thread, or hold a
 * lock around it, if the server runs TSan-clean.
 * The error's param names the field, with its path below the top level:
 * "messages[2].content[0].text", "prompt[5]". JSON null counts as absent for
 * every optional field (the openai clients send null for an explicit None).
 *
 * Accepted fields (C = chat only, T = completions only):
 *   model        string, required
 *   messages  C  [{role, content, name?}], 1..max_messages; role system|developer
 *                (read as system)|user|assistant; content a string or an array of
 *                {"type":"text","text":..} parts, concatenated with nothing between.
 *                refusal/tool_calls/function_call/audio/annotations: null only
 *                (what a client echoes back from an earlier response)
 *   prompt    T  a string | [one string] | [token ids] | [[token ids]];
 *                ids in [0, n_vocab); several prompts (a batch) are refused
 *   stream, stream_options.include_usage (stream_options only with stream: true)
 *   max_tokens, max_completion_tokens (C)   [1, max_tokens_cap]; the latter wins
 *   temperature [0, 2] (1)   top_p (0, 1] (1)   presence/frequency_penalty [-2, 2] (0)
 *   seed         integer in int64; exact up to 2^53 (JSON numbers are doubles here)
 *   n [1, max_n] (1)   stop: a string or up to max_stop strings, none empty
 *   cache_salt   non-empty string of at most 256 bytes (vLLM's prefix-cache salt)
 *   user         string, ignored
 * Accepted only in their "off" form, otherwise "not supported":
 *   logprobs (C: false, T: null), top_logprobs (C: 0), logit_bias ({}),
 *   response_format ({"type":"text"}), tools ([]), tool_choice ("none"),
 *   parallel_tool_calls, functions, function_call, audio, modalities, prediction,
 *   reasoning_effort, service_tier, web_search_options, metadata (null only),
 *   store (false), echo (T: false), suffix (T: ""), best_of (T: 1). */
#ifndef KVLM_SERVER_API_REQ_H
#define KVLM_SERVER_API_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"
#include "server/api.h"

typedef enum api_role { API_ROLE_SYSTEM = 0, API_ROLE_USER, API_ROLE_ASSISTANT } api_role;

#define API_CACHE_SALT_MAX 256   /* bytes */

typedef struct api_msg {
    api_role role;
    char    *content;     /* valid UTF-8 without NUL bytes, NUL-terminated; owned */
    size_t   len;         /* strlen(content) */
} api_msg;

/* Every string is valid UTF-8 without NUL bytes, NUL-terminated, owned by the
 * request and freed by api_req_free. */
typedef struct api_req {
    api_endpoint endpoint;
    char   *model;

    api_msg *msgs;                /* [n_msgs] chat; NULL for completions */
    size_t   n_msgs;

    char   *prompt;               /* completions with a text prompt ("" allowed), else NULL */
    size_t  prompt_len;
    kvlm_token *prompt_tokens;    /* [n_prompt_tokens] completions with token ids, else NULL */
    size_t  n_prompt_tokens;

    bool    stream;
    bool    include_usage;        /* stream_options.include_usage */
    int64_t max_tokens;           /* the limit on generated tokens, per choice */
    double  temperature, top_p;
    double  presence_penalty, frequency_penalty;
    bool    has_seed;
    int64_t seed;
    int64_t n;                    /* choices to generate */
    char  **stop;                 /* [n_stop] non-empty stop strings */
    size_t  n_stop;
    char   *cache_salt;           /* NULL when absent */
} api_req;

/* Parses body[0..len) (any bytes; never read past len) for endpoint ep under
 * *lim into *out. On success *out owns everything; free it with api_req_free.
 * On failure *out is zeroed (nothing to free), *err says what to answer, and the
 * return is KVLM_ERR_INVALID (4xx) or KVLM_ERR_NOMEM (500). err may not be NULL. */
kvlm_err api_req_parse(api_endpoint ep, const char *body, size_t len, const api_limits *lim,
                       api_req *out, api_error *err);

/* Frees what the request owns and zeroes it. NULL or zeroed is fine. */
void api_req_free(api_req *r);

/* "system", "user", "assistant": the names kvlm_chat_render expects. */
const char *api_req_role_name(api_role role);

#endif
