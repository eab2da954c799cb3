/* serve.c - see serve.h. Room: server.
 *
 *   connection thread                         scheduler thread
 *   -----------------                         ----------------
 *   auth, parse, tokenize, check length       loop:
 *   reserve a queue slot (429 when full)        drop cancelled jobs (sched_remove)
 *   [stream: start the SSE response]            admit queued jobs that fit (sched_add)
 *   queue the job, wake the scheduler           pace: pause the streams that are full
 *   [whole: wait for done, answer;              sched_step -> on_token -> text, events
 *    every 100 ms: client gone? cancel]         finish jobs: close streams / wake waiters
 *
 * The scheduler thread never blocks on a client: stream events are pushed
 * (http_stream_push), and a job whose stream holds stream_queue bytes is paused
 * (sched_pause) until its client has taken some, so a client that stops reading
 * costs the others nothing; the transport's watchdog cuts it off after
 * stream_stall_s (on_cancel, as a hang-up; on_stall counts it).
 *
 * A job is owned by the scheduler thread from the moment it is queued until it
 * finishes; then a streamed job is freed there and a whole one is handed back
 * to the waiting connection thread, which answers and frees it. */
#include "server/serve.h"
#include "core/clock.h"
#include "server/api.h"
#include "server/api_req.h"
#include "server/api_resp.h"
#include "server/http.h"
#include "server/serve_metrics.h"
#include "server/serve_whisper.h"
#include "server/webui.h"
#include "engine/sched.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

enum { ERRLEN = 512 };

typedef struct job job;

typedef struct choice {
    job *job;
    size_t index;
    sched_seq *seq;          /* NULL before admission and once finished */
    char *text;              /* [len] generated text (UTF-8), cap bytes allocated */
    size_t len, cap, sent;   /* sent: bytes already streamed */
    kvlm_detok dt;
    int64_t n_gen;
    api_finish finish;
    bool first_sent;         /* the first chunk (with the role) went out */
    int64_t ticket;          /* tier write of the last block its sequence published (sched_add) */
} choice;

struct job {
    struct server *srv;
    api_req req;
    kvlm_token *prompt;
    size_t n_prompt, cached;
    uint64_t ns;
    choice *ch;              /* [req.n] */
    size_t n_done;
    http_stream *stream;     /* streamed jobs */
    atomic_bool cancelled;
    bool admitted, finished;
    bool paused;             /* its stream is full: its sequences are paused (pace) */
    api_error err;           /* err.http_status != 0: the job failed */
    double t_arrive, t_last;
    bool got_first;
    char id[48];
    int64_t created;
    pthread_cond_t done_cv;  /* whole answers: the waiting thread sleeps on it */
    job *next;               /* queue / running list */
};

typedef struct tenant_key { char *key, *tenant; } tenant_key;

typedef struct server {
    serve_params p;
    kvlm_model *model;
    kvlm_model_info info;
    char model_id[256];
    kvlm_cache *cache;
    sched *S;
    api_limits lim;
    tenant_key *keys;
    size_t n_keys;
    pthread_mutex_t mu;
    pthread_cond_t work_cv;      /* the scheduler waits here when idle */
    job *queue_head, *queue_tail;
    int64_t queue_len;           /* queued jobs plus reserved slots */
    job *running;                /* admitted, unfinished */
    int64_t running_seqs;
    bool stopping;
    atomic_uint_fast64_t next_id;
    serve_metrics metrics;       /* under mu */
    serve_whisper *whisper;      /* NULL: no speech-to-text model */
    kvlm_cache_stats kv_now;     /* under mu: the pool at the last snapshot (GET /v1/kvlm/cache) */
} server;


/* ---- answers -------------------------------------------------------------------- */
static void send_json(http_reply *reply, int status, const char *json)
{
    if (!json) {
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                                  "\"param\":null,\"code\":null}}";
        http_reply_send(reply, 500, "application/json", oom, sizeof oom - 1);
        return;
    }
    http_reply_send(reply, status, "application/json", json, strlen(json));
}

static void send_error(server *s, http_reply *reply, const api_error *e)
{
    char *j = api_error_json(e);
    if (e->http_status == 429) http_reply_header(reply, "Retry-After", "1");
    if (e->http_status == 401) http_reply_header(reply, "WWW-Authenticate", "Bearer");
    send_json(reply, e->http_status, j);
    free(j);
    pthread_mutex_lock(&s->mu);
    metrics_count_status(&s->metrics, e->http_status);
    pthread_mutex_unlock(&s->mu);
}

/* ---- stream events (scheduler thread) ------------------------------------------ */
static void stream_event(job *j, char *json)
{
    if (!json) return;
    size_t n;
    char *ev = api_resp_sse(json, &n);
    free(json);
    if (ev && !atomic_load(&j->cancelled)) http_stream_push(j->stream, ev, n);   /* never blocks: see pace */
    free(ev);
}

static api_resp_head head_of(const job *j)
{
    return (api_resp_head){ j->id, j->created, j->srv->model_id };
}

/* Streams text[sent, upto) of choice c as one chunk (the first carries the role). */
static void stream_text(choice *c, size_t upto)
{
    job *j = c->job;
    if (!j->stream || upto <= c->sent) return;
    char *piece = strndup(c->text + c->sent, upto - c->sent);
    if (!piece) return;
    const api_resp_head h = head_of(j);
    stream_event(j, api_resp_chunk(j->req.endpoint, &h, c->index, !c->first_sent, piece, API_FINISH_NONE,
                                   j->req.include_usage));
    free(piece);
    c->first_sent = true;
    c->sent = upto;
}

/* ---- the end of a job (scheduler thread, mu not held) --------------------------- */
static void job_free(job *j)
{
    if (!j) return;
    for (size_t i = 0; j->ch && i < (size_t)j->req.n; i++) free(j->ch[i].text);
    free(j->ch);
    free(j->prompt);
    api_req_free(&j->req);
    pthread_cond_destroy(&j->done_cv);
    free(j);
}

static void usage_of(const job *j, api_usage *u)
{
    u->prompt_tokens = (int64_t)j->n_prompt;
    u->cached_tokens = (int64_t)j->cached;
    u->completion_tokens = 0;
    for (size_t i = 0; i < (size_t)j->req.n; i++) u->completion_tokens += j->ch[i].n_gen;
}

/* Every choice is done (or the job failed / was cancelled): answer and let go. */
static void job_finish(server *s, job *j)
{
    api_usage u;
    usage_of(j, &u);
    pthread_mutex_lock(&s->mu);
    metrics_count_status(&s->metrics, j->err.http_status ? j->err.http_status : 200);
    if (j->admitted && !j->err.http_status) metrics_add_usage(&s->metrics, &u);
    pthread_mutex_unlock(&s->mu);
    if (j->stream) {
        if (!atomic_load(&j->cancelled)) {
            const api_resp_head h = head_of(j);
            if (j->err.http_status) {
                stream_event(j, api_error_json(&j->err));
            } else if (j->req.include_usage) {
                stream_event(j, api_resp_usage_chunk(j->req.endpoint, &h, &u));
            }
            http_stream_push(j->stream, api_resp_sse_done(), strlen(api_resp_sse_done()));
        }
        http_stream_close(j->stream);   /* waits for a cancel callback still running */
        job_free(j);
        return;
    }
    pthread_mutex_lock(&s->mu);
    j->finished = true;                 /* the connection thread answers and frees */
    pthread_cond_signal(&j->done_cv);
    pthread_mutex_unlock(&s->mu);
}

static void job_finish_cb(void *user)
{
    job *j = user;
    job_finish(j->srv, j);
}

/* Choice c ends with reason f: the rest of its text and a finish chunk go out. */
static void choice_finish(choice *c, api_finish f)
{
    job *j = c->job;
    c->finish = f;
    c->seq = NULL;
    if (j->stream) {
        stream_text(c, c->len);
        const api_resp_head h = head_of(j);
        stream_event(j, api_resp_chunk(j->req.endpoint, &h, c->index, !c->first_sent, NULL, f, j->req.include_usage));
        c->first_sent = true;
    }
    j->n_done++;
}

static bool text_append(choice *c, const char *s, size_t n)
{
    if (c->len + n + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 256;
        while (cap < c->len + n + 1) cap *= 2;
        char *t = realloc(c->text, cap);
        if (!t) return false;
        c->text = t;
        c->cap = cap;
    }
    memcpy(c->text + c->len, s, n);
    c->len += n;
    c->text[c->len] = 0;
    return true;
}

/* sched's callback: one new token of choice `user` (scheduler thread). */
static bool on_token(void *user, sched_seq *q, kvlm_token tok, kvlm_err e)
{
    (void)q;
    choice *c = user;
    job *j = c->job;
    server *s = j->srv;
    const double t = clock_now_s();
    if (e != KVLM_OK) {
        api_error_set(&j->err, 503, NULL, NULL, "the KV cache is full: the request was ended (%s)", kvlm_err_name(e));
        choice_finish(c, API_FINISH_LENGTH);
        return false;
    }
    pthread_mutex_lock(&s->mu);
    if (!j->got_first) metrics_observe_ttft(&s->metrics, t - j->t_arrive);
    else metrics_observe_tpot(&s->metrics, t - j->t_last);
    pthread_mutex_unlock(&s->mu);
    j->got_first = true;
    j->t_last = t;
    c->n_gen++;
    if (atomic_load(&j->cancelled)) return false;
    if (kvlm_token_is_eog(s->model, tok)) {
        choice_finish(c, API_FINISH_STOP);
        return false;
    }
    char piece[512];
    size_t n = kvlm_detok_push(&c->dt, s->model, tok, piece, sizeof piece);
    if (c->n_gen >= j->req.max_tokens) n += kvlm_detok_flush(&c->dt, piece + n, sizeof piece - n);
    if (!text_append(c, piece, n)) {
        api_error_set(&j->err, 500, NULL, NULL, "out of memory");
        choice_finish(c, API_FINISH_LENGTH);
        return false;
    }
    size_t at = 0, hold = 0;
    if (j->req.n_stop > 0 &&
        api_stop_find(c->text, c->len, c->sent, (const char *const *)j->req.stop, j->req.n_stop, &at, &hold)) {
        c->len = at;                          /* the stop string and what follows are dropped */
        c->text[at] = 0;
        choice_finish(c, API_FINISH_STOP);
        return false;
    }
    if (c->n_gen >= j->req.max_tokens) {
        choice_finish(c, API_FINISH_LENGTH);
        return false;
    }
    if (j->stream) stream_text(c, c->len - hold);
    return true;
}

/* ---- the scheduler thread --------------------------------------------------------- */
/* Admits queued jobs while their sequences fit (mu held on entry and exit). */
static void admit(server *s)
{
    while (s->queue_head && s->running_seqs + s->queue_head->req.n <= s->p.max_seqs) {
        job *j = s->queue_head;
        s->queue_head = j->next;
        if (!s->queue_head) s->queue_tail = NULL;
        s->queue_len--;
        j->next = s->running;
        s->running = j;
        j->admitted = true;
        s->running_seqs += j->req.n;
        pthread_mutex_unlock(&s->mu);
        for (size_t i = 0; i < (size_t)j->req.n && !j->err.http_status; i++) {
            kvlm_sampler_params sp = kvlm_sampler_default_params();
            sp.temp = (float)j->req.temperature;
            sp.top_p = (float)j->req.top_p;
            sp.top_k = 0;
            sp.min_p = 0;
            sp.repeat_penalty = 1;
            sp.seed = j->req.has_seed ? (uint64_t)j->req.seed + i : XXH3_64bits(j->id, strlen(j->id)) + i;
            char err[ERRLEN];
            /* j->cached: RAM hits now, the tiers' when their load is over (before the first token) */
            kvlm_err e = sched_add(s->S, j->prompt, j->n_prompt, j->req.max_tokens, &sp, j->ns, &j->ch[i],
                                   &j->ch[i].seq, i == 0 ? &j->cached : NULL, &j->ch[i].ticket, err, sizeof err);
            if (e) api_error_set(&j->err, e == KVLM_ERR_NOMEM ? 500 : 400, NULL, NULL, "%s", err);
        }
        pthread_mutex_lock(&s->mu);
    }
}

/* Pauses the sequences of every streamed job whose stream is full (its client is
 * not keeping up) and resumes those whose client has taken some: a paused job
 * keeps its blocks, the others step on. So a stream's queue holds at most
 * stream_queue plus one step's events (a chunk per choice, and at the end the
 * finish, usage and [DONE] events). Returns how many jobs are paused (scheduler
 * thread, mu held). */
static int64_t pace(server *s)
{
    int64_t n_paused = 0;
    for (job *j = s->running; j; j = j->next) {
        if (!j->stream) continue;
        const bool full = http_stream_full(j->stream);
        if (full != j->paused) {
            j->paused = full;
            for (size_t i = 0; i < (size_t)j->req.n; i++)
                if (j->ch[i].seq) sched_pause(s->S, j->ch[i].seq, full);
        }
        n_paused += j->paused;
    }
    s->metrics.streams_paused = n_paused;
    return n_paused;
}

/* Removes a finished job from the running list (mu held). */
static void unlink_running(server *s, job *j)
{
    for (job **pp = &s->running; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            s->running_seqs -= j->req.n;
            return;
        }
}

/* The pool and queue figures /metrics shows (scheduler thread, mu held). */
static void snapshot(server *s)
{
    kvlm_cache_stats st;
    sched_cache_stats(s->S, &st);
    metrics_set_cache(&s->metrics, &st, s->queue_len, s->running_seqs);
    s->kv_now = st;
}

/* Ends running jobs that are done, failed, cancelled, or (stopping) all of them.
 * mu held on entry and exit. */
static void reap(server *s)
{
    for (job *j = s->running, *next; j; j = next) {
        next = j->next;
        const bool cancel = atomic_load(&j->cancelled) || s->stopping || j->err.http_status;
        if (!cancel && j->n_done < (size_t)j->req.n) continue;
        unlink_running(s, j);
        if (s->stopping && !j->err.http_status && j->n_done < (size_t)j->req.n)
            api_error_set(&j->err, 503, NULL, NULL, "the server is shutting down");
        pthread_mutex_unlock(&s->mu);
        int64_t ticket = 0;
        for (size_t i = 0; i < (size_t)j->req.n; i++) {
            if (j->ch[i].seq) {
                sched_remove(s->S, j->ch[i].seq);   /* its blocks go back now */
                j->ch[i].seq = NULL;
            }
            if (j->ch[i].ticket > ticket) ticket = j->ch[i].ticket;
        }
        /* the response ends once the blocks it published are in every tier: now, or on
           the tiers' writer thread, never holding up this one */
        if (sched_after(s->S, ticket, job_finish_cb, j) != KVLM_OK) job_finish(s, j);
        pthread_mutex_lock(&s->mu);
    }
    if (s->stopping)                             /* queued ones never started */
        while (s->queue_head) {
            job *j = s->queue_head;
            s->queue_head = j->next;
            s->queue_len--;
            api_error_set(&j->err, 503, NULL, NULL, "the server is shutting down");
            pthread_mutex_unlock(&s->mu);
            job_finish(s, j);
            pthread_mutex_lock(&s->mu);
        }
    if (!s->queue_head) s->queue_tail = NULL;
    snapshot(s);
}

/* The tiers' loader made progress (its thread): the scheduler steps again. */
static void wake_sched(void *user)
{
    server *s = user;
    pthread_mutex_lock(&s->mu);
    pthread_cond_signal(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
}

static void *sched_thread(void *arg)
{
    server *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        reap(s);
        if (s->stopping) break;
        admit(s);
        reap(s);                                 /* admission errors */
        const int64_t paused = pace(s);
        if (!s->running) {
            pthread_cond_wait(&s->work_cv, &s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        const int64_t ran = sched_step(s->S);
        pthread_mutex_lock(&s->mu);
        /* waiting for the tiers (woken by wake_sched) or for paused streams' clients
           to read (polled: pace looks again after the wait) */
        if (ran == 0 && (sched_n_loading(s->S) > 0 || paused > 0)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 20 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
            pthread_cond_timedwait(&s->work_cv, &s->mu, &ts);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- requests (connection threads) ------------------------------------------------ */
static void on_cancel(void *user)
{
    job *j = user;
    atomic_store(&j->cancelled, true);
    pthread_mutex_lock(&j->srv->mu);
    pthread_cond_signal(&j->srv->work_cv);
    pthread_mutex_unlock(&j->srv->mu);
}

/* The tenant of the request's key; NULL (and *e filled) when keys are set and it
 * has none of them. "" when the server has no keys. */
static const char *authenticate(server *s, const http_request *req, api_error *e)
{
    if (s->n_keys == 0) return "";
    const char *h = http_request_header(req, "Authorization");
    if (h && !strncasecmp(h, "Bearer ", 7)) {
        const char *k = h + 7;
        for (size_t i = 0; i < s->n_keys; i++)
            if (!strcmp(k, s->keys[i].key)) return s->keys[i].tenant;
    }
    api_error_set(e, 401, "invalid_api_key", NULL,
                  h ? "Incorrect API key provided." : "You didn't provide an API key (Authorization: Bearer KEY).");
    return NULL;
}

/* The prompt's tokens: the chat template applied to the messages, the text, or
 * the ids as given. 0 with *e filled on failure. */
static kvlm_err tokenize_prompt(server *s, job *j, api_error *e)
{
    char err[ERRLEN];
    char *text = NULL;
    const char *src = j->req.prompt;
    size_t len = j->req.prompt_len;
    kvlm_err rc;
    if (j->req.endpoint == API_CHAT) {
        kvlm_chat_msg *m = calloc(j->req.n_msgs, sizeof *m);
        if (!m) goto oom;
        for (size_t i = 0; i < j->req.n_msgs; i++)
            m[i] = (kvlm_chat_msg){ api_req_role_name(j->req.msgs[i].role), j->req.msgs[i].content };
        rc = kvlm_chat_render(s->model, m, j->req.n_msgs, true, &text, err, sizeof err);
        free(m);
        if (rc) {
            api_error_set(e, rc == KVLM_ERR_NOMEM ? 500 : 400, NULL, "messages", "%s", err);
            return rc;
        }
        src = text;
        len = strlen(text);
    } else if (j->req.prompt_tokens) {
        j->n_prompt = j->req.n_prompt_tokens;
        if (!(j->prompt = malloc((j->n_prompt ? j->n_prompt : 1) * sizeof *j->prompt))) goto oom;
        memcpy(j->prompt, j->req.prompt_tokens, j->n_prompt * sizeof *j->prompt);
        return KVLM_OK;
    }
    /* tokens never outnumber bytes + 1 (BOS), so this buffer is always large enough */
    if (!(j->prompt = malloc((len + 2) * sizeof *j->prompt))) goto oom;
    rc = kvlm_tokenize(s->model, src, len, true, true, j->prompt, len + 2, &j->n_prompt, err, sizeof err);
    free(text);
    if (rc) {
        api_error_set(e, 400, NULL, j->req.endpoint == API_CHAT ? "messages" : "prompt", "%s", err);
        return rc;
    }
    return KVLM_OK;
oom:
    free(text);
    api_error_set(e, 500, NULL, NULL, "out of memory");
    return KVLM_ERR_NOMEM;
}

static void handle_completion(server *s, api_endpoint ep, const http_request *req, http_reply *reply)
{
    api_error e = { 0 };
    const char *tenant = authenticate(s, req, &e);
    if (!tenant) {
        send_error(s, reply, &e);
        return;
    }
    job *j = calloc(1, sizeof *j);
    if (!j) {
        api_error_set(&e, 500, NULL, NULL, "out of memory");
        send_error(s, reply, &e);
        return;
    }
    j->srv = s;
    j->t_arrive = clock_now_s();
    pthread_cond_init(&j->done_cv, NULL);
    if (api_req_parse(ep, req->body, req->body_len, &s->lim, &j->req, &e) != KVLM_OK) goto fail;
    if (j->req.presence_penalty != 0 || j->req.frequency_penalty != 0) {
        api_error_set(&e, 400, NULL, j->req.presence_penalty != 0 ? "presence_penalty" : "frequency_penalty",
                      "presence_penalty and frequency_penalty are not supported (only 0)");
        goto fail;
    }
    if (tokenize_prompt(s, j, &e) != KVLM_OK) goto fail;
    if (j->n_prompt == 0) {
        api_error_set(&e, 400, NULL, "prompt", "the prompt has no tokens");
        goto fail;
    }
    const int64_t n_ctx = s->p.n_ctx;
    if ((int64_t)j->n_prompt >= n_ctx) {
        /* OpenAI's wording, so clients that parse it keep working */
        api_error_set(&e, 400, "context_length_exceeded", ep == API_CHAT ? "messages" : "prompt",
                      "This model's maximum context length is %lld tokens. However, your %s resulted in %zu "
                      "tokens. Please reduce the length of the %s.", (long long)n_ctx,
                      ep == API_CHAT ? "messages" : "prompt", j->n_prompt, ep == API_CHAT ? "messages" : "prompt");
        goto fail;
    }
    if (j->req.max_tokens > n_ctx - (int64_t)j->n_prompt && !s->p.context_shift)   /* as llama.cpp: stop */
        j->req.max_tokens = n_ctx - (int64_t)j->n_prompt;    /* at the context's end (finish_reason "length") */
    if (!(j->ch = calloc((size_t)j->req.n, sizeof *j->ch))) {
        api_error_set(&e, 500, NULL, NULL, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < (size_t)j->req.n; i++) j->ch[i] = (choice){ .job = j, .index = i };
    if (tenant[0] || j->req.cache_salt) {            /* the prefix-cache namespace */
        char key[1024 + API_CACHE_SALT_MAX];          /* "tenant\0salt": the tenant part is bounded by load_keys */
        const size_t nt = strlen(tenant) + 1, nsalt = j->req.cache_salt ? strlen(j->req.cache_salt) : 0;
        memcpy(key, tenant, nt);
        memcpy(key + nt, j->req.cache_salt ? j->req.cache_salt : "", nsalt);
        j->ns = XXH3_64bits(key, nt + nsalt) | 1;
    }
    snprintf(j->id, sizeof j->id, "%s-%016llx", ep == API_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)atomic_fetch_add(&s->next_id, 1));
    j->created = (int64_t)time(NULL);

    pthread_mutex_lock(&s->mu);                       /* a queue slot, or 429 / 503 */
    if (s->stopping || s->queue_len >= s->p.queue_max) {
        const bool stop = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stop) api_error_set(&e, 503, NULL, NULL, "the server is shutting down");
        else api_error_set(&e, 429, NULL, NULL, "too many requests are waiting (%lld); retry later",
                           (long long)s->p.queue_max);
        goto fail;
    }
    s->queue_len++;
    pthread_mutex_unlock(&s->mu);
    if (j->req.stream) {
        http_reply_header(reply, "Cache-Control", "no-cache");
        if (!(j->stream = http_reply_stream(reply, 200, "text/event-stream"))) {
            pthread_mutex_lock(&s->mu);
            s->queue_len--;
            pthread_mutex_unlock(&s->mu);
            job_free(j);
            return;
        }
        http_stream_on_cancel(j->stream, on_cancel, j);
    }
    pthread_mutex_lock(&s->mu);
    if (s->queue_tail) s->queue_tail->next = j;
    else s->queue_head = j;
    s->queue_tail = j;
    pthread_cond_signal(&s->work_cv);
    if (j->stream) {                                  /* the scheduler thread owns it now */
        pthread_mutex_unlock(&s->mu);
        return;
    }
    while (!j->finished) {                           /* a client that hangs up cancels its job */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&j->done_cv, &s->mu, &ts);
        if (!j->finished && !atomic_load(&j->cancelled) && http_request_peer_gone(req)) {
            atomic_store(&j->cancelled, true);
            pthread_cond_signal(&s->work_cv);
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (j->err.http_status) {
        e = j->err;
        char *js = api_error_json(&e);                /* counted by job_finish already */
        send_json(reply, e.http_status, js);
        free(js);
    } else {
        api_resp_choice *rc = calloc((size_t)j->req.n, sizeof *rc);
        api_usage u;
        usage_of(j, &u);
        const api_resp_head h = head_of(j);
        for (size_t i = 0; rc && i < (size_t)j->req.n; i++) rc[i] = (api_resp_choice){ j->ch[i].text, j->ch[i].finish };
        char *js = rc ? api_resp_completion(ep, &h, rc, (size_t)j->req.n, &u) : NULL;
        send_json(reply, 200, js);
        free(js);
        free(rc);
    }
    job_free(j);
    return;
fail:
    send_error(s, reply, &e);
    job_free(j);
}

static void handle(void *user, const http_request *req, http_reply *reply)
{
    server *s = user;
    const bool get = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD"),
               post = !strcmp(req->method, "POST");
    api_error e = { 0 };
    const char *path = req->path;
    if (!strcmp(path, "/health")) {
        if (!get) goto not_allowed;
        pthread_mutex_lock(&s->mu);
        const bool stopping = s->stopping;
        metrics_count_status(&s->metrics, stopping ? 503 : 200);
        pthread_mutex_unlock(&s->mu);
        send_json(reply, stopping ? 503 : 200, stopping ? "{\"status\":\"shutting down\"}" : "{\"status\":\"ok\"}");
        return;
    }
    if (!strcmp(path, "/")) {                       /* the chat page (webui.h): no key to load it */
        if (!get) goto not_allowed;
        const int st = webui_send_page(reply) ? 200 : 500;
        pthread_mutex_lock(&s->mu);
        metrics_count_status(&s->metrics, st);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    if (!strcmp(path, "/v1/kvlm/cache")) {          /* the page's gauge (fields: webui.h) */
        if (!get) goto not_allowed;
        if (!authenticate(s, req, &e)) {
            send_error(s, reply, &e);
            return;
        }
        webui_cache_info ci = { .model = s->model ? s->model_id : NULL,
                                .whisper_model = s->whisper ? serve_whisper_model_id(s->whisper) : NULL };
        pthread_mutex_lock(&s->mu);
        ci.st = s->kv_now;
        ci.running_seqs = s->running_seqs;
        ci.queue_len = s->queue_len;
        ci.requests = s->metrics.requests_done;
        ci.prompt_tokens = s->metrics.prompt_tokens;
        ci.cached_tokens = s->metrics.cached_tokens;
        ci.completion_tokens = s->metrics.completion_tokens;
        pthread_mutex_unlock(&s->mu);
        char *js = webui_cache_json(&ci);
        send_json(reply, 200, js);
        pthread_mutex_lock(&s->mu);
        metrics_count_status(&s->metrics, js ? 200 : 500);
        pthread_mutex_unlock(&s->mu);
        free(js);
        return;
    }
    if (!strcmp(path, "/metrics")) {
        if (!get) goto not_allowed;
        kvlm_cache_stats tiers = { 0 };
        if (s->S) sched_tier_stats(s->S, &tiers);   /* live: the writer thread moves them while idle */
        pthread_mutex_lock(&s->mu);
        metrics_count_status(&s->metrics, 200);
        if (s->S) metrics_set_tiers(&s->metrics, &tiers);
        char *txt = metrics_render(&s->metrics);
        pthread_mutex_unlock(&s->mu);
        if (txt) http_reply_send(reply, 200, "text/plain; version=0.0.4", txt, strlen(txt));
        else http_reply_send(reply, 500, "text/plain", "out of memory\n", 14);
        free(txt);
        return;
    }
    if (!strcmp(path, "/v1/audio/transcriptions")) {
        if (!post) goto not_allowed;
        if (!authenticate(s, req, &e)) {
            send_error(s, reply, &e);
            return;
        }
        if (!s->whisper) {
            api_error_set(&e, 404, "model_not_found", "model", "No speech-to-text model is loaded (kvlm serve --whisper)");
            send_error(s, reply, &e);
            return;
        }
        serve_whisper_handle(s->whisper, req, reply);
        return;
    }
    if (!strcmp(path, "/v1/chat/completions") || !strcmp(path, "/v1/completions")) {
        if (!post) goto not_allowed;
        if (!s->model) {
            api_error_set(&e, 404, "model_not_found", "model", "No chat model is loaded (this server runs %s only)",
                          s->whisper ? serve_whisper_model_id(s->whisper) : "nothing");
            send_error(s, reply, &e);
            return;
        }
        handle_completion(s, path[4] == 'c' && path[5] == 'h' ? API_CHAT : API_COMPLETION, req, reply);
        return;
    }
    if (!strcmp(path, "/v1/models") || !strncmp(path, "/v1/models/", 11)) {
        if (!get) goto not_allowed;
        if (!authenticate(s, req, &e)) {
            send_error(s, reply, &e);
            return;
        }
        const char *ids[2];
        size_t n_ids = 0;
        if (s->model) ids[n_ids++] = s->model_id;
        if (s->whisper) ids[n_ids++] = serve_whisper_model_id(s->whisper);
        char *js;
        if (path[10] == '/') {
            const char *id = path + 11;
            bool known = s->whisper && !strcmp(id, SERVE_WHISPER_ALIAS);
            for (size_t i = 0; i < n_ids; i++) known = known || !strcmp(id, ids[i]);
            if (!known) {
                api_error_set(&e, 404, "model_not_found", "model", "The model '%s' does not exist", id);
                send_error(s, reply, &e);
                return;
            }
            js = api_resp_model(id, 0);
        } else {
            js = api_resp_models(ids, n_ids, 0);
        }
        send_json(reply, 200, js);
        free(js);
        pthread_mutex_lock(&s->mu);
        metrics_count_status(&s->metrics, 200);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    api_error_set(&e, 404, NULL, NULL, "Unknown path %s %s", req->method, path);
    send_error(s, reply, &e);
    return;
not_allowed:
    api_error_set(&e, 405, NULL, NULL, "Method %s is not allowed on %s", req->method, path);
    http_reply_header(reply, "Allow", !strcmp(path, "/v1/chat/completions") || !strcmp(path, "/v1/completions") ||
                                      !strcmp(path, "/v1/audio/transcriptions") ? "POST" : "GET, HEAD");
    send_error(s, reply, &e);
}

/* ---- set-up ------------------------------------------------------------------------ */
serve_params serve_default_params(void)
{
    return (serve_params){ .host = "127.0.0.1", .port = 8080, .n_ctx = 4096, .kv_mem = (size_t)256 << 20,
                           .kv_type = KVLM_KV_F16, .kv_type_v = KVLM_KV_SAME, .max_seqs = 16,
                           .step_tokens = 256, .queue_max = 64, .max_body = (size_t)1 << 20,
                           .max_upload = (size_t)25 << 20, .stream_queue = (size_t)256 << 10,
                           .stream_stall_s = 30 };
}

/* The transport cuts a stalled stream off (its watchdog thread; the job's on_cancel runs next). */
static void on_stall(void *user)
{
    server *s = user;
    pthread_mutex_lock(&s->mu);
    s->metrics.streams_stalled++;
    pthread_mutex_unlock(&s->mu);
}

/* The transcription route takes uploads up to --max-upload (plus the form's other
 * fields); every other request stays under --max-body. */
static size_t body_limit(void *user, const char *method, const char *path)
{
    const server *s = user;
    return s->whisper && !strcmp(path, "/v1/audio/transcriptions") ? serve_whisper_body_limit(s->whisper) : 0;
}

/* "KEY TENANT" lines ('#' comments); one --api-key gives tenant "default". */
static int load_keys(server *s)
{
    if (s->p.api_key) {
        if (!(s->keys = calloc(1, sizeof *s->keys))) return -1;
        s->keys[0].key = strdup(s->p.api_key);
        s->keys[0].tenant = strdup("default");
        s->n_keys = 1;
        if (!s->keys[0].key || !s->keys[0].tenant) return -1;
    }
    if (!s->p.api_keys_file) return 0;
    FILE *f = fopen(s->p.api_keys_file, "r");
    if (!f) {
        fprintf(stderr, "kvlm serve: %s: %s\n", s->p.api_keys_file, strerror(errno));
        return -1;
    }
    char line[1024], key[512], tenant[512];
    int rc = 0, ln = 0;
    while (fgets(line, sizeof line, f)) {
        ln++;
        if (line[0] == '#' || strspn(line, " \t\r\n") == strlen(line)) continue;
        if (sscanf(line, "%511s %511s", key, tenant) != 2) {
            fprintf(stderr, "kvlm serve: %s:%d: expected \"KEY TENANT\"\n", s->p.api_keys_file, ln);
            rc = -1;
            break;
        }
        tenant_key *k = realloc(s->keys, (s->n_keys + 1) * sizeof *k);
        if (!k) { rc = -1; break; }
        s->keys = k;
        s->keys[s->n_keys] = (tenant_key){ strdup(key), strdup(tenant) };
        if (!s->keys[s->n_keys].key || !s->keys[s->n_keys].tenant) { rc = -1; break; }
        s->n_keys++;
    }
    fclose(f);
    if (rc == 0 && s->n_keys == 0) {
        fprintf(stderr, "kvlm serve: %s holds no keys\n", s->p.api_keys_file);
        rc = -1;
    }
    return rc;
}

static void server_free(server *s)
{
    serve_whisper_free(s->whisper);
    sched_free(s->S);
    kvlm_cache_free(s->cache);
    kvlm_model_free(s->model);
    for (size_t i = 0; i < s->n_keys; i++) {
        free(s->keys[i].key);
        free(s->keys[i].tenant);
    }
    free(s->keys);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work_cv);
}

/* Loads the chat model, its KV cache and scheduler, and the API limits. -1 after
 * printing why. */
static int start_chat(server *s, char *err)
{
    if (kvlm_model_load(s->p.model_path, &s->model, err, ERRLEN)) {
        fprintf(stderr, "kvlm serve: %s\n", err);
        return -1;
    }
    kvlm_model_get_info(s->model, &s->info);
    if (s->p.model_id) {
        snprintf(s->model_id, sizeof s->model_id, "%s", s->p.model_id);
    } else {                                          /* the file's base name without .gguf */
        const char *b = strrchr(s->p.model_path, '/');
        snprintf(s->model_id, sizeof s->model_id, "%s", b ? b + 1 : s->p.model_path);
        char *dot = strstr(s->model_id, ".gguf");
        if (dot && dot[5] == 0) *dot = 0;
    }
    if (s->p.n_ctx <= 0 || s->p.n_ctx > s->info.n_ctx_train) s->p.n_ctx = s->p.n_ctx <= 0 && s->info.n_ctx_train > 4096 ? 4096 : s->info.n_ctx_train;
    if (s->p.step_tokens < s->p.max_seqs) s->p.step_tokens = s->p.max_seqs;
    kvlm_cache_params cp = kvlm_cache_default_params();
    cp.mem_bytes = s->p.kv_mem;
    cp.kv_type = s->p.kv_type;
    cp.kv_type_v = s->p.kv_type_v;
    cp.tiers = s->p.tiers;
    if (kvlm_cache_init(s->model, &cp, &s->cache, err, ERRLEN)) {
        fprintf(stderr, "kvlm serve: %s\n", err);
        return -1;
    }
    sched_params sp = { .n_threads = s->p.n_threads, .n_ctx = s->p.n_ctx, .step_tokens = s->p.step_tokens,
                        .max_seqs = s->p.max_seqs, .wake = wake_sched, .wake_user = s,
                        .context_shift = s->p.context_shift, .n_keep = s->p.n_keep };
    if (sched_init(s->model, s->cache, &sp, on_token, &s->S, err, ERRLEN)) {
        fprintf(stderr, "kvlm serve: %s\n", err);
        return -1;
    }
    s->lim = api_limits_default();
    s->lim.model_name = s->model_id;
    s->lim.n_vocab = s->info.n_vocab;
    s->lim.max_tokens_cap = s->p.context_shift ? (int64_t)1 << 20 : s->p.n_ctx;   /* a shift goes past n_ctx */
    s->lim.default_max_tokens = s->p.n_ctx / 4 < 1024 ? s->p.n_ctx / 4 : 1024;
    s->lim.max_n = s->p.max_seqs < 8 ? s->p.max_seqs : 8;
    s->lim.max_body = s->p.max_body;
    return 0;
}

int serve_run(const serve_params *p)
{
    server s = { .p = *p };
    char err[ERRLEN];
    /* SIGINT/SIGTERM are blocked in every thread (the ones started below inherit
       the mask), so no HTTP or scheduler call is ever interrupted; the main thread
       takes them with sigwait. */
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_set, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.work_cv, NULL);
    metrics_init(&s.metrics);
    int rc = 1;
    http_server *http = NULL;
    pthread_t th;
    bool th_started = false;
    if (load_keys(&s)) goto done;
    if (s.p.n_threads <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        s.p.n_threads = nc > 0 ? (int)(nc < 64 ? nc : 64) : 1;
    }
    if (!p->model_path && !p->whisper_path) {
        fprintf(stderr, "kvlm serve: no model to serve\n");
        goto done;
    }
    if (p->model_path && start_chat(&s, err)) goto done;
    if (p->whisper_path) {
        serve_whisper_params wp = { .path = p->whisper_path, .n_threads = s.p.n_threads, .parallel = s.p.max_seqs,
                                    .queue_max = s.p.queue_max, .max_upload = s.p.max_upload,
                                    .metrics = &s.metrics, .metrics_mu = &s.mu };
        if (serve_whisper_start(&wp, &s.whisper, err, sizeof err)) {
            fprintf(stderr, "kvlm serve: --whisper %s: %s\n", p->whisper_path, err);
            goto done;
        }
    }
    if (s.model) {
        if (pthread_create(&th, NULL, sched_thread, &s)) {
            fprintf(stderr, "kvlm serve: cannot start the scheduler thread\n");
            goto done;
        }
        th_started = true;
    }
    http_config hc = { .host = p->host, .port = p->port, .max_body = s.p.max_body, .max_connections = 256,
                       .timeout_s = 600, .body_limit_fn = body_limit, .stream_queue = s.p.stream_queue,
                       .stream_stall_ms = (int64_t)s.p.stream_stall_s * 1000, .stall_fn = on_stall,
                       .stall_user = &s };
    if (http_server_start(&hc, handle, &s, &http, err, sizeof err)) {
        fprintf(stderr, "kvlm serve: %s\n", err);
        goto done;
    }
    if (s.model) {
        kvlm_cache_stats cst;
        kvlm_cache_get_stats(s.cache, &cst);
        fprintf(stderr, "kvlm serve: %s on http://%s:%d/v1 (model id \"%s\", %d threads, context %lld, %lld KV blocks, "
                "%lld sequences at once, %zu API keys)\n", p->model_path, p->host ? p->host : "127.0.0.1",
                http_server_port(http), s.model_id, s.p.n_threads, (long long)s.p.n_ctx, (long long)cst.n_blocks,
                (long long)s.p.max_seqs, s.n_keys);
    }
    if (s.whisper)
        fprintf(stderr, "kvlm serve: %s on http://%s:%d/v1/audio/transcriptions (model id \"%s\", alias \"%s\", "
                "uploads up to %zu bytes)\n", p->whisper_path, p->host ? p->host : "127.0.0.1",
                http_server_port(http), serve_whisper_model_id(s.whisper), SERVE_WHISPER_ALIAS, s.p.max_upload);
    fprintf(stderr, "kvlm serve: the chat page on http://%s:%d/\n", p->host ? p->host : "127.0.0.1",
            http_server_port(http));
    if (p->port_file) {
        FILE *f = fopen(p->port_file, "w");
        if (f) {
            fprintf(f, "%d\n", http_server_port(http));
            fclose(f);
        }
    }
    int sig = 0;
    while (sigwait(&stop_set, &sig) != 0) {}
    fprintf(stderr, "kvlm serve: %s: shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    rc = 0;
done:
    pthread_mutex_lock(&s.mu);
    s.stopping = true;
    pthread_cond_signal(&s.work_cv);
    pthread_mutex_unlock(&s.mu);
    if (th_started) pthread_join(th, NULL);   /* every job answered (503) or closed */
    kvlm_cache_flush(s.cache);                /* pending tier writes, and the responses waiting on them */
    serve_whisper_stop(s.whisper);           /* likewise every transcription */
    http_server_stop(http);
    server_free(&s);
    return rc;
}
