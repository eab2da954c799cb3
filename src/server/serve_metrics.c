/* serve_metrics.c - see serve_metrics.h. Room: server. */
#include "server/serve_metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* TTFT spans a cached hit (ms) to a long cold prompt (s); TPOT a lone stream (~3 ms)
 * to a full batch (~100 ms) */
static const double TTFT_BOUNDS[METRICS_BUCKETS] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120 };
static const double TPOT_BOUNDS[METRICS_BUCKETS] = { 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075,
                                                     0.1, 0.25, 0.5, 1, 2.5 };
/* a transcription: a short clip alone (~0.3 s) to minutes of audio behind a full batch */
static const double TRANSCRIPTION_BOUNDS[METRICS_BUCKETS] = { 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 30, 60, 120,
                                                              300 };

void metrics_init(serve_metrics *m)
{
    memset(m, 0, sizeof *m);
    m->ttft.bounds = TTFT_BOUNDS;
    m->tpot.bounds = TPOT_BOUNDS;
    m->transcription.bounds = TRANSCRIPTION_BOUNDS;
}

void metrics_count_status(serve_metrics *m, int st)
{
    m->responses[st >= 100 && st < 600 ? st / 100 : 0]++;
    if (st == 400) m->status_400++;
    if (st == 401) m->status_401++;
    if (st == 404) m->status_404++;
    if (st == 429) m->status_429++;
    if (st == 503) m->status_503++;
}

void metrics_add_usage(serve_metrics *m, const api_usage *u)
{
    m->prompt_tokens += (uint64_t)u->prompt_tokens;
    m->completion_tokens += (uint64_t)u->completion_tokens;
    m->cached_tokens += (uint64_t)u->cached_tokens;
    m->requests_done++;
}

static void observe(metrics_hist *h, double x)
{
    int i = 0;
    while (i < METRICS_BUCKETS && x > h->bounds[i]) i++;
    if (i < METRICS_BUCKETS) h->counts[i]++;
    h->count++;
    h->sum += x;
}

void metrics_observe_ttft(serve_metrics *m, double s) { observe(&m->ttft, s); }
void metrics_observe_tpot(serve_metrics *m, double s) { observe(&m->tpot, s); }

void metrics_observe_transcription(serve_metrics *m, double latency_s, double audio_s)
{
    observe(&m->transcription, latency_s);
    m->transcriptions_done++;
    m->audio_seconds += audio_s;
}

void metrics_set_cache(serve_metrics *m, const kvlm_cache_stats *st, int64_t queue_len, int64_t running_seqs)
{
    m->blocks_in_use = st->n_in_use;
    m->blocks_cached = st->n_cached;
    m->blocks_total = st->n_blocks;
    m->queue_len = queue_len;
    m->running_seqs = running_seqs;
    metrics_set_tiers(m, st);
}

void metrics_set_tiers(serve_metrics *m, const kvlm_cache_stats *st)
{
    m->tier_loads = st->tier_loads;
    m->n_tiers = st->n_tiers;
    memcpy(m->tier, st->tier, sizeof m->tier);
}

typedef struct buf { char *p; size_t len, cap; bool oom; } buf;

static void put(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(buf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) { b->oom = true; return; }
        if ((size_t)n < b->cap - b->len) { b->len += (size_t)n; return; }
        size_t cap = b->cap * 2 + (size_t)n;
        char *p = realloc(b->p, cap);
        if (!p) { b->oom = true; return; }
        b->p = p;
        b->cap = cap;
    }
}

static void counter(buf *b, const char *name, const char *help, uint64_t v)
{
    put(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name, (unsigned long long)v);
}

static void gauge(buf *b, const char *name, const char *help, double v)
{
    put(b, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
}

static void hist(buf *b, const char *name, const char *help, const metrics_hist *h)
{
    put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < METRICS_BUCKETS; i++) {
        cum += h->counts[i];
        put(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], (unsigned long long)cum);
    }
    put(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n", name, (unsigned long long)h->count, name,
        h->sum, name, (unsigned long long)h->count);
}

/* The tiers below the pool (disk, Redis): one series per tier of each family. */
static void tiers(buf *b, const serve_metrics *m)
{
    if (m->n_tiers == 0) return;
    counter(b, "kvlm_tier_blocks_loaded_total", "KV blocks loaded from a tier instead of computed.",
            (uint64_t)m->tier_loads);
    static const struct { const char *name, *help; size_t off; } fam[] = {
        { "kvlm_tier_hits_total", "Block lookups a tier answered with an image.", offsetof(kvlm_tier_stats, hits) },
        { "kvlm_tier_misses_total", "Block lookups a tier did not hold.", offsetof(kvlm_tier_stats, misses) },
        { "kvlm_tier_invalid_total", "Images that failed verification (discarded, recomputed).",
          offsetof(kvlm_tier_stats, invalid) },
        { "kvlm_tier_errors_total", "Failed tier calls (I/O errors, Redis down or timing out).",
          offsetof(kvlm_tier_stats, errors) },
        { "kvlm_tier_puts_total", "Block images written to a tier.", offsetof(kvlm_tier_stats, puts) },
        { "kvlm_tier_dropped_total", "Block writes given up (queue full).", offsetof(kvlm_tier_stats, dropped) },
        { "kvlm_tier_evictions_total", "Images a tier removed for its budget.", offsetof(kvlm_tier_stats, evictions) },
        { "kvlm_tier_read_bytes_total", "Bytes read from a tier.", offsetof(kvlm_tier_stats, bytes_read) },
        { "kvlm_tier_written_bytes_total", "Bytes written to a tier.", offsetof(kvlm_tier_stats, bytes_written) },
    };
    for (size_t f = 0; f < sizeof fam / sizeof fam[0]; f++) {
        put(b, "# HELP %s %s\n# TYPE %s counter\n", fam[f].name, fam[f].help, fam[f].name);
        for (int i = 0; i < m->n_tiers; i++) {
            int64_t v;
            memcpy(&v, (const char *)&m->tier[i] + fam[f].off, sizeof v);
            put(b, "%s{tier=\"%s\"} %lld\n", fam[f].name, m->tier[i].name, (long long)v);
        }
    }
    put(b, "# HELP kvlm_tier_items Block images a tier holds.\n# TYPE kvlm_tier_items gauge\n");
    for (int i = 0; i < m->n_tiers; i++)
        put(b, "kvlm_tier_items{tier=\"%s\"} %lld\n", m->tier[i].name, (long long)m->tier[i].n_items);
    put(b, "# HELP kvlm_tier_stored_bytes Bytes a tier holds.\n# TYPE kvlm_tier_stored_bytes gauge\n");
    for (int i = 0; i < m->n_tiers; i++)
        put(b, "kvlm_tier_stored_bytes{tier=\"%s\"} %lld\n", m->tier[i].name, (long long)m->tier[i].bytes_stored);
    static const double bounds_ms[KVLM_TIER_HIST_BUCKETS - 1] = KVLM_TIER_HIST_BOUNDS_MS;
    put(b, "# HELP kvlm_tier_load_seconds Latency of block lookups in a tier.\n"
           "# TYPE kvlm_tier_load_seconds histogram\n");
    for (int i = 0; i < m->n_tiers; i++) {   /* load_hist: [KVLM_TIER_HIST_BUCKETS], the last +Inf */
        const kvlm_tier_stats *t = &m->tier[i];
        int64_t cum = 0;
        for (int k = 0; k < KVLM_TIER_HIST_BUCKETS - 1; k++) {
            cum += t->load_hist[k];
            put(b, "kvlm_tier_load_seconds_bucket{tier=\"%s\",le=\"%g\"} %lld\n", t->name, bounds_ms[k] / 1000,
                (long long)cum);
        }
        cum += t->load_hist[KVLM_TIER_HIST_BUCKETS - 1];
        put(b, "kvlm_tier_load_seconds_bucket{tier=\"%s\",le=\"+Inf\"} %lld\n"
               "kvlm_tier_load_seconds_sum{tier=\"%s\"} %.9g\nkvlm_tier_load_seconds_count{tier=\"%s\"} %lld\n",
            t->name, (long long)cum, t->name, t->load_seconds, t->name, (long long)cum);
    }
}

char *metrics_render(const serve_metrics *m)
{
    buf b = { malloc(4096), 0, 4096, false };
    if (!b.p) return NULL;
    put(&b, "# HELP kvlm_http_responses_total HTTP responses by status class.\n"
            "# TYPE kvlm_http_responses_total counter\n");
    static const char *cls[6] = { "other", "1xx", "2xx", "3xx", "4xx", "5xx" };
    for (int i = 0; i < 6; i++)
        put(&b, "kvlm_http_responses_total{class=\"%s\"} %llu\n", cls[i], (unsigned long long)m->responses[i]);
    put(&b, "# HELP kvlm_http_errors_total Error responses by status.\n# TYPE kvlm_http_errors_total counter\n");
    const struct { int code; uint64_t v; } errs[] = { { 400, m->status_400 }, { 401, m->status_401 },
                                                      { 404, m->status_404 }, { 429, m->status_429 },
                                                      { 503, m->status_503 } };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++)
        put(&b, "kvlm_http_errors_total{code=\"%d\"} %llu\n", errs[i].code, (unsigned long long)errs[i].v);
    counter(&b, "kvlm_requests_completed_total", "Completion requests answered successfully.", m->requests_done);
    counter(&b, "kvlm_prompt_tokens_total", "Prompt tokens of completed requests.", m->prompt_tokens);
    counter(&b, "kvlm_prompt_tokens_cached_total", "Prompt tokens served from the prefix cache.", m->cached_tokens);
    counter(&b, "kvlm_generation_tokens_total", "Tokens generated.", m->completion_tokens);
    gauge(&b, "kvlm_prefix_cache_hit_ratio", "Cached prompt tokens / prompt tokens, since start.",
          m->prompt_tokens ? (double)m->cached_tokens / (double)m->prompt_tokens : 0.0);
    gauge(&b, "kvlm_kv_blocks_in_use", "KV blocks held by running sequences.", (double)m->blocks_in_use);
    gauge(&b, "kvlm_kv_blocks_cached", "KV blocks kept only for prefix hits (evictable).", (double)m->blocks_cached);
    gauge(&b, "kvlm_kv_blocks_total", "KV blocks in the pool.", (double)m->blocks_total);
    gauge(&b, "kvlm_queue_length", "Requests waiting for admission.", (double)m->queue_len);
    gauge(&b, "kvlm_running_sequences", "Sequences being stepped.", (double)m->running_seqs);
    gauge(&b, "kvlm_streams_paused", "Streams whose sequences wait for their client to read (queue full).",
          (double)m->streams_paused);
    counter(&b, "kvlm_streams_stalled_total", "Streams cut off because their client read nothing for "
            "--stream-stall-timeout.", m->streams_stalled);
    tiers(&b, m);
    hist(&b, "kvlm_time_to_first_token_seconds", "From request arrival to its first token.", &m->ttft);
    hist(&b, "kvlm_time_per_output_token_seconds", "Between consecutive tokens of a request.", &m->tpot);
    counter(&b, "kvlm_transcriptions_completed_total", "Transcription requests answered successfully.",
            m->transcriptions_done);
    put(&b, "# HELP kvlm_audio_seconds_total Seconds of audio transcribed.\n# TYPE kvlm_audio_seconds_total counter\n"
            "kvlm_audio_seconds_total %.17g\n", m->audio_seconds);
    hist(&b, "kvlm_transcription_latency_seconds", "From a transcription request's arrival to its answer.",
         &m->transcription);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
