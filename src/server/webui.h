/* webui.h - the chat page `kvlm serve` answers GET / with, and the KV pool figures
 * it polls (GET /v1/kvlm/cache).
 * Room: server. May touch: server/http (replies), the public API's stats types,
 * cJSON. Knows nothing of the scheduler, the model or the server's locks: the
 * caller copies the figures under its own mutex and hands them over.
 *
 * The page is src/server/webui.html: one self-contained document (HTML, CSS and
 * JavaScript inline; no build step, nothing fetched from elsewhere), put into the
 * binary as it is by the assembler (.incbin in webui.c). It talks to the API only:
 *   GET  /v1/models               which models are loaded (401: it asks for the key)
 *   GET  /v1/kvlm/cache           the gauge, once a second and after each reply
 *   POST /v1/chat/completions     the conversation, streamed (include_usage: the
 *                                 prompt and cached tokens of each reply)
 *   POST /v1/audio/transcriptions an audio file's transcript, when whisper_model
 *                                 is set
 * so loading it needs no key, and whatever it shows, a client could get too.
 *
 * GET /v1/kvlm/cache (needs the key, like every /v1 route), one JSON object:
 *   object "kvlm.cache"; model, whisper_model: the ids served (null: none);
 *   block_tokens (positions per block); blocks_total = blocks_in_use (held by
 *   running sequences) + blocks_cached (held by none, kept for prefix hits) +
 *   blocks_free; bytes_total, bytes_per_token (the pool's K/V bytes); lookups,
 *   hits (prefix-index lookups of full blocks, and hits), evictions, tier_loads;
 *   running_seqs, queue_len (now); requests, prompt_tokens, cached_tokens,
 *   completion_tokens (totals of the completions answered since start). */
#ifndef KVLM_SERVER_WEBUI_H
#define KVLM_SERVER_WEBUI_H

#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"
#include "server/http.h"

/* The page: *len bytes (a complete HTML document), then a NUL. Static storage. */
const char *webui_page(size_t *len);

/* Answers with 200 text/html and the page (no-cache; a Content-Security-Policy
 * that lets it reach its own origin only). false as http_reply_send. */
bool webui_send_page(http_reply *reply);

/* What GET /v1/kvlm/cache shows: a copy the caller took under its lock. */
typedef struct webui_cache_info {
    const char *model;           /* the chat model's id; NULL: none (whisper only) */
    const char *whisper_model;   /* NULL: none */
    kvlm_cache_stats st;         /* the pool's last snapshot (zeros without a chat model) */
    int64_t running_seqs, queue_len;
    uint64_t requests, prompt_tokens, cached_tokens, completion_tokens;
} webui_cache_info;

/* The body of GET /v1/kvlm/cache, malloc'd (NULL when out of memory). */
char *webui_cache_json(const webui_cache_info *ci);

#endif
