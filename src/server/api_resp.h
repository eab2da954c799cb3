/* api_resp.h - OpenAI response bodies and SSE frames, built from plain values.
 * Room: server. May touch: api.h, cJSON, libc. Knows nothing of HTTP or the model:
 * the caller gives ids, times, texts and token counts.
 *
 * Every builder returns a malloc'd NUL-terminated string the caller frees, or
 * NULL when out of memory. JSON comes out on one line (no '\n'), ready for
 * api_resp_sse. Texts must be NUL-terminated UTF-8; a byte sequence that is not
 * UTF-8 is sent as U+FFFD, so a client's JSON decoder never sees invalid text.
 *
 * Shapes (OpenAI's; "usage" is always the full object below, never null, except
 * the "usage": null that OpenAI puts in every chunk when include_usage is set):
 *   chat        {"id","object":"chat.completion","created","model",
 *                "choices":[{"index","message":{"role":"assistant","content"},
 *                            "logprobs":null,"finish_reason"}],"usage"}
 *   completion  {"id","object":"text_completion","created","model",
 *                "choices":[{"text","index","logprobs":null,"finish_reason"}],"usage"}
 *   usage       {"prompt_tokens","completion_tokens","total_tokens",
 *                "prompt_tokens_details":{"cached_tokens"}}
 *   chat chunk  {"id","object":"chat.completion.chunk","created","model",
 *                "choices":[{"index","delta":{..},"logprobs":null,"finish_reason"}]}
 *               delta: {"role":"assistant","content":""} first, then {"content":".."},
 *               and {} beside the finish_reason at the end
 *   text chunk  {"id","object":"text_completion","created","model",
 *                "choices":[{"text","index","logprobs":null,"finish_reason"}]}
 *   usage chunk either of the two with "choices":[] and "usage":{..}: sent last,
 *               before [DONE], when stream_options.include_usage is set
 *   models      {"object":"list","data":[{"id","object":"model","created","owned_by":"kvlm"}]}
 *
 * A stream, per choice i (n > 1: the choices' chunks may interleave):
 *   chunk(first=true, text="")  chunk(text=piece)...  chunk(finish=STOP|LENGTH)
 * then, with include_usage, usage_chunk; then api_resp_sse_done(). */
#ifndef KVLM_SERVER_API_RESP_H
#define KVLM_SERVER_API_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "server/api.h"

typedef enum api_finish {
    API_FINISH_NONE = 0,    /* still running: finish_reason null */
    API_FINISH_STOP,        /* "stop": end-of-generation token or a stop string */
    API_FINISH_LENGTH,      /* "length": max_tokens or the context ran out */
} api_finish;

/* What every object of one response repeats. */
typedef struct api_resp_head {
    const char *id;         /* e.g. "chatcmpl-..." / "cmpl-...": the same in every chunk */
    int64_t     created;    /* unix seconds: the same in every chunk */
    const char *model;      /* the served model's id */
} api_resp_head;

typedef struct api_resp_choice {
    const char *text;       /* the generated text; NULL = "" */
    api_finish  finish;
} api_resp_choice;

typedef struct api_usage {
    int64_t prompt_tokens;      /* tokens the prompt had */
    int64_t completion_tokens;  /* tokens generated, all choices */
    int64_t cached_tokens;      /* prompt tokens served from the prefix cache */
} api_usage;                    /* total_tokens = prompt + completion */

/* The whole (non-streamed) answer: "chat.completion" for API_CHAT, else
 * "text_completion". choices[i] gets index i. */
char *api_resp_completion(api_endpoint ep, const api_resp_head *h,
                          const api_resp_choice *choices, size_t n_choices, const api_usage *u);

/* One streamed chunk for choice `index`. Chat: first adds "role":"assistant" to
 * the delta; text (NULL = none) becomes "content". Completions: text (NULL = "")
 * becomes "text", first is ignored. finish NONE gives "finish_reason": null.
 * usage_null adds "usage": null, as OpenAI does in each chunk when the request
 * set stream_options.include_usage. */
char *api_resp_chunk(api_endpoint ep, const api_resp_head *h, size_t index, bool first,
                     const char *text, api_finish finish, bool usage_null);

/* The usage-only chunk: "choices": [] and the usage object. */
char *api_resp_usage_chunk(api_endpoint ep, const api_resp_head *h, const api_usage *u);

/* GET /v1/models: ids[0..n) each owned by "kvlm", created at `created`. */
char *api_resp_models(const char *const *ids, size_t n, int64_t created);
/* GET /v1/models/{id}: one model object. */
char *api_resp_model(const char *id, int64_t created);

/* One server-sent event carrying data: "data: <data>\n\n". A data line break
 * starts another "data: " line (the SSE rule), so any text frames safely. *len
 * (may be NULL) gets the length. */
char *api_resp_sse(const char *data, size_t *len);
/* The stream's last event, "data: [DONE]\n\n" (static storage). */
const char *api_resp_sse_done(void);

#endif
