/* serve.h - `kvlm serve`: the OpenAI-compatible server. HTTP requests become
 * jobs for one scheduler thread (engine/sched.h) that steps every running
 * sequence together; answers go back whole or as server-sent events.
 * Room: server. May touch: server/http, server/api*, engine/sched, the public
 * API (include/kvlm.h). Knows nothing of blocks, kernels or the forward pass.
 *
 * Threads:
 *   HTTP connection threads   parse, authenticate, tokenize, queue a job; a
 *                             non-streamed request then waits for its job
 *   the scheduler thread      admits queued jobs, runs sched_step, turns tokens
 *                             into text, writes stream events, finishes jobs
 * They share the job queue, the metrics and the shutdown flag under one mutex.
 *
 * Back-pressure: at most queue_max jobs wait for admission (429 beyond); a job
 * is admitted when its n sequences fit under max_seqs. A client that goes away
 * mid-stream cancels its job at once: the scheduler removes its sequences and
 * their blocks return to the pool before the next step. A client that stops
 * reading (socket open, nothing read) holds up nothing but its own job: its
 * events are pushed without blocking into a queue of stream_queue bytes, and
 * while that is full its sequences are paused (sched_pause: kept, not stepped);
 * once it has taken nothing for stream_stall_s while events wait, the transport
 * cuts it off (http.h) and its job is cancelled like a hang-up, its published
 * blocks staying cached (/metrics: kvlm_streams_stalled_total).
 *
 * With whisper_path, POST /v1/audio/transcriptions is answered by a second
 * scheduler thread of its own (serve_whisper.h); either model may be absent. */
#ifndef KVLM_SERVER_SERVE_H
#define KVLM_SERVER_SERVE_H

#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"

typedef struct serve_params {
    const char *model_path;     /* GGUF file; NULL: no chat model (whisper_path alone) */
    const char *model_id;       /* the id clients name; NULL: the file's base name */
    const char *host;           /* default 127.0.0.1 */
    int port;                   /* 0: ephemeral (printed on start) */
    int n_threads;              /* forward threads; 0 = online cores */
    int64_t n_ctx;              /* positions per sequence; 0 = 4096 (capped at training) */
    size_t kv_mem;              /* KV pool bytes; 0 = 256 MiB */
    kvlm_kv_type kv_type, kv_type_v;
    int64_t max_seqs;           /* sequences stepped together (default 16) */
    int64_t step_tokens;        /* tokens per step: decodes + prompt chunks (default 256) */
    int64_t queue_max;          /* jobs waiting for admission before 429 (default 64) */
    size_t max_body;            /* request body bytes (default 1 MiB) */
    const char *api_key;        /* single key (tenant "default"), or NULL */
    const char *api_keys_file;  /* lines "KEY TENANT", or NULL */
    const char *port_file;      /* if set, the bound port is written there once listening */
    const char *whisper_path;   /* a Whisper model beside (or instead of) the chat model:
                                   a CT2 directory or "whisper" (serve_whisper.h); NULL: none */
    size_t max_upload;          /* audio file bytes of a transcription (default 25 MiB) */
    size_t stream_queue;        /* event bytes a stream holds for its client before its
                                   sequences pause (default 256 KiB) */
    int stream_stall_s;         /* a stream whose client takes nothing this long while
                                   events wait is cut off (default 30; 0: never, though the
                                   connection's 600 s idle time-out still ends it) */
    kvlm_tier_params tiers;     /* disk / Redis tiers below the KV pool; zero: none */
    bool context_shift;         /* a generation at n_ctx shifts (sched.h) instead of stopping */
    int n_keep;                 /* tokens a shift keeps */
} serve_params;

serve_params serve_default_params(void);

/* Runs until SIGINT or SIGTERM, then finishes: new requests get 503, running
 * ones are ended (streams get an error event and [DONE]), connections close.
 * Returns 0, or 1 after printing why it could not start. */
int serve_run(const serve_params *p);

#endif
