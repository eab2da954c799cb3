/* serve_metrics.h - the numbers `kvlm serve` exposes on GET /metrics, in the
 * Prometheus text format (version 0.0.4).
 * Room: server. May touch: libc, the public API's stats types. Not thread-safe:
 * the server holds its mutex around every call. */
#ifndef KVLM_SERVER_SERVE_METRICS_H
#define KVLM_SERVER_SERVE_METRICS_H

#include <stdint.h>
#include "kvlm.h"
#include "server/api_resp.h"

enum { METRICS_BUCKETS = 14 };

typedef struct metrics_hist {
    const double *bounds;              /* [METRICS_BUCKETS] upper bounds, seconds */
    uint64_t counts[METRICS_BUCKETS];  /* per bucket (not cumulative) */
    uint64_t count;                    /* all observations (the +Inf bucket) */
    double sum;
} metrics_hist;

typedef struct serve_metrics {
    uint64_t responses[6];             /* by status class: [0] other, [1] 1xx ... [5] 5xx */
    uint64_t status_429, status_400, status_401, status_404, status_503;
    uint64_t prompt_tokens, completion_tokens, cached_tokens, requests_done;
    int64_t blocks_in_use, blocks_cached, blocks_total, queue_len, running_seqs;
    int64_t tier_loads;                /* blocks loaded from the tiers below the pool */
    uint64_t streams_stalled;          /* streams cut off: their client stopped reading */
    int64_t streams_paused;            /* streams whose sequences wait for their client to read */
    int n_tiers;
    kvlm_tier_stats tier[KVLM_MAX_TIERS];   /* disk, Redis: copied by metrics_set_cache */
    metrics_hist ttft, tpot;           /* time to first token; time per output token */
    uint64_t transcriptions_done;      /* POST /v1/audio/transcriptions answered 200 */
    double audio_seconds;              /* of their audio */
    metrics_hist transcription;        /* their latency: arrival (body read) to answer */
} serve_metrics;

void metrics_init(serve_metrics *m);
void metrics_count_status(serve_metrics *m, int http_status);
void metrics_add_usage(serve_metrics *m, const api_usage *u);
void metrics_observe_ttft(serve_metrics *m, double seconds);
void metrics_observe_tpot(serve_metrics *m, double seconds);
void metrics_observe_transcription(serve_metrics *m, double latency_s, double audio_s);
void metrics_set_cache(serve_metrics *m, const kvlm_cache_stats *st, int64_t queue_len, int64_t running_seqs);
/* Only the tier fields of st (tier_loads, n_tiers, tier[]). */
void metrics_set_tiers(serve_metrics *m, const kvlm_cache_stats *st);
/* The exposition text, malloc'd (NULL when out of memory). */
char *metrics_render(const serve_metrics *m);

#endif
