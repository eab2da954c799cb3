/* serve_whisper.h - the speech-to-text side of `kvlm serve`: POST
 * /v1/audio/transcriptions answered by one Whisper scheduler thread that steps
 * every running transcription together (kvlm_wjob_step: continuous batching).
 * Room: server. May touch: server/http, server/api*, server/serve_metrics, the
 * public API (include/kvlm.h). Knows nothing of blocks, kernels or the forward pass.
 *
 * Threads:
 *   HTTP connection thread   parse the form (api_audio.h), decode the audio
 *                            (kvlm_audio_load_memory), queue a request (429 when
 *                            the queue is full), wait for it (polling every 100 ms
 *                            for a client that hung up), render and answer
 *   the whisper thread       admit queued requests up to `parallel` jobs
 *                            (kvlm_wjob_create), kvlm_wjob_step over all of them,
 *                            finish the done, failed and cancelled ones (their
 *                            jobs and KV blocks are freed there) and wake their
 *                            connection threads
 * The queue and the requests' state are under the module's own mutex; the
 * metrics under the server's (metrics_mu), never both at once. */
#ifndef KVLM_SERVER_SERVE_WHISPER_H
#define KVLM_SERVER_SERVE_WHISPER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"
#include "server/http.h"
#include "server/serve_metrics.h"

typedef struct serve_whisper serve_whisper;

typedef struct serve_whisper_params {
    const char *path;           /* a CT2 Whisper directory, or "whisper" (the cache's tiny.en) */
    int n_threads;              /* 0 = online cores */
    int64_t parallel;           /* jobs stepped together (default 16) */
    int64_t queue_max;          /* requests waiting before 429 (default 64) */
    size_t max_upload;          /* file bytes (default 25 MiB) */
    serve_metrics *metrics;     /* the server's, under metrics_mu */
    pthread_mutex_t *metrics_mu;
} serve_whisper_params;

/* "whisper" -> $KVLM_CACHE, else $XDG_CACHE_HOME/kvlm, else ~/.cache/kvlm, plus
 * /whisper-tiny.en; anything else is returned as it is. buf: cap bytes. */
const char *serve_whisper_resolve(const char *name, char *buf, size_t cap);

/* Loads the model and starts the whisper thread. KVLM_ERR_* with err filled. */
kvlm_err serve_whisper_start(const serve_whisper_params *p, serve_whisper **out, char *err, size_t errlen);

/* The model's id ("whisper-tiny.en"); "whisper-1" is accepted as an alias. */
const char *serve_whisper_model_id(const serve_whisper *w);
#define SERVE_WHISPER_ALIAS "whisper-1"

/* The body limit of the transcription route: max_upload plus room for the other
 * fields and the multipart framing. */
size_t serve_whisper_body_limit(const serve_whisper *w);

/* Answers one POST /v1/audio/transcriptions (already authenticated). Blocks
 * until the transcription is done, fails, or the client hangs up. */
void serve_whisper_handle(serve_whisper *w, const http_request *req, http_reply *reply);

/* Ends running and queued requests (their clients get 503) and joins the thread;
 * later requests get 503. Call before http_server_stop (which waits for the
 * handlers), and serve_whisper_free after it. NULL is fine. */
void serve_whisper_stop(serve_whisper *w);
void serve_whisper_free(serve_whisper *w);

#endif
