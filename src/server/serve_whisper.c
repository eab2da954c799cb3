/* serve_whisper.c - see serve_whisper.h. Room: server.
 *
 *   connection thread                         whisper thread
 *   -----------------                         --------------
 *   parse the form, decode the audio          loop:
 *   reserve a queue slot (429 when full)        finish jobs done / failed / cancelled
 *   queue the request, wake the thread          admit queued requests (kvlm_wjob_create)
 *   wait for finished; every 100 ms:            kvlm_wjob_step(all running jobs)
 *     client gone? cancel
 *   render (kvlm_transcript_format), answer
 *
 * A request is owned by the whisper thread from the moment it is queued until it
 * is finished; then the waiting connection thread answers and frees it. Its
 * samples stay alive until then, so a job may keep pointing at them. */
#include "server/serve_whisper.h"
#include "core/clock.h"
#include "server/api.h"
#include "server/api_audio.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { ERRLEN = 512, FORM_SLACK = 64 * 1024 };

typedef struct wreq {
    api_audio_req form;
    float *samples;          /* [n_samples] at 16 kHz */
    int64_t n_samples;
    kvlm_wjob *job;          /* NULL before admission and after finishing */
    kvlm_transcript *t;      /* the result */
    api_error err;           /* err.http_status != 0: failed */
    atomic_bool cancelled;
    bool finished;
    double t_arrive;
    pthread_cond_t done_cv;
    struct wreq *next;       /* queue / running list */
} wreq;

struct serve_whisper {
    serve_whisper_params p;
    kvlm_whisper *model;
    char model_id[128];
    pthread_mutex_t mu;
    pthread_cond_t work_cv;
    wreq *queue_head, *queue_tail, *running;
    int64_t queue_len, n_running;
    bool stopping, th_started;
    pthread_t th;
};


const char *serve_whisper_resolve(const char *name, char *buf, size_t cap)
{
    if (strcmp(name, "whisper")) return name;
    const char *c = getenv("KVLM_CACHE"), *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    if (c && c[0]) snprintf(buf, cap, "%s/whisper-tiny.en", c);
    else if (x && x[0]) snprintf(buf, cap, "%s/kvlm/whisper-tiny.en", x);
    else snprintf(buf, cap, "%s/.cache/kvlm/whisper-tiny.en", h ? h : ".");
    return buf;
}

const char *serve_whisper_model_id(const serve_whisper *w) { return w->model_id; }

size_t serve_whisper_body_limit(const serve_whisper *w) { return w->p.max_upload + FORM_SLACK; }

/* ---- the whisper thread ------------------------------------------------------------ */
static void count_status(serve_whisper *w, int status)
{
    pthread_mutex_lock(w->p.metrics_mu);
    metrics_count_status(w->p.metrics, status);
    pthread_mutex_unlock(w->p.metrics_mu);
}

/* Hands r back to its connection thread. w->mu held. */
static void finish(serve_whisper *w, wreq *r)
{
    if (r->job) {
        if (!r->err.http_status && !atomic_load(&r->cancelled)) {
            char err[ERRLEN] = "";
            if (kvlm_wjob_error(r->job, err, sizeof err) != KVLM_OK)
                api_error_set(&r->err, 500, NULL, NULL, "transcription failed: %s", err);
            else if (!(r->t = kvlm_wjob_take(r->job)))
                api_error_set(&r->err, 500, NULL, NULL, "transcription failed: no transcript");
        }
        kvlm_wjob_free(r->job);   /* its KV blocks go back now */
        r->job = NULL;
    }
    r->finished = true;
    pthread_cond_signal(&r->done_cv);
}

static void unlink_running(serve_whisper *w, wreq *r)
{
    for (wreq **pp = &w->running; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            r->next = NULL;
            w->n_running--;
            return;
        }
}

/* Finishes running requests that are done, failed, cancelled or (stopping) all. */
static void reap(serve_whisper *w)
{
    for (wreq *r = w->running, *next; r; r = next) {
        next = r->next;
        const bool done = !r->job || kvlm_wjob_done(r->job);
        if (!done && !atomic_load(&r->cancelled) && !w->stopping && !r->err.http_status) continue;
        if (w->stopping && !done && !r->err.http_status)
            api_error_set(&r->err, 503, NULL, NULL, "the server is shutting down");
        unlink_running(w, r);
        finish(w, r);
    }
    if (w->stopping)
        while (w->queue_head) {
            wreq *r = w->queue_head;
            w->queue_head = r->next;
            w->queue_len--;
            api_error_set(&r->err, 503, NULL, NULL, "the server is shutting down");
            finish(w, r);
        }
    if (!w->queue_head) w->queue_tail = NULL;
}

/* Moves queued requests to running while there is room (w->mu held; dropped
 * around kvlm_wjob_create, which the whisper thread alone calls). */
static void admit(serve_whisper *w)
{
    while (w->queue_head && w->n_running < w->p.parallel) {
        wreq *r = w->queue_head;
        w->queue_head = r->next;
        if (!w->queue_head) w->queue_tail = NULL;
        w->queue_len--;
        r->next = w->running;
        w->running = r;
        w->n_running++;
        if (atomic_load(&r->cancelled)) continue;   /* reap finishes it */
        kvlm_transcribe_params tp = kvlm_transcribe_default_params();
        tp.temperature = r->form.temperature;
        tp.prompt = r->form.prompt;
        tp.timestamps = true;                        /* segments with times, for every format */
        char err[ERRLEN] = "";
        pthread_mutex_unlock(&w->mu);
        kvlm_wjob *job = NULL;
        kvlm_err rc = kvlm_wjob_create(w->model, r->samples, r->n_samples, &tp, &job, err, sizeof err);
        pthread_mutex_lock(&w->mu);
        if (rc) api_error_set(&r->err, rc == KVLM_ERR_NOMEM || rc == KVLM_ERR_BUDGET ? 503 : 400, NULL,
                              rc == KVLM_ERR_NOMEM || rc == KVLM_ERR_BUDGET ? NULL : "file", "%s", err);
        else r->job = job;
    }
}

static void *whisper_thread(void *arg)
{
    serve_whisper *w = arg;
    kvlm_wjob **jobs = calloc((size_t)w->p.parallel, sizeof *jobs);
    pthread_mutex_lock(&w->mu);
    for (;;) {
        reap(w);
        if (w->stopping) break;
        admit(w);
        reap(w);                                     /* admission errors */
        int n = 0;
        for (wreq *r = w->running; r && jobs; r = r->next)
            if (r->job && n < w->p.parallel) jobs[n++] = r->job;
        if (n == 0) {
            pthread_cond_wait(&w->work_cv, &w->mu);
            continue;
        }
        pthread_mutex_unlock(&w->mu);
        char err[ERRLEN] = "";
        kvlm_err rc = kvlm_wjob_step(w->model, jobs, n, err, sizeof err);
        pthread_mutex_lock(&w->mu);
        if (rc)                                     /* the step failed as a whole: fail its jobs */
            for (wreq *r = w->running; r; r = r->next)
                if (r->job && !r->err.http_status) api_error_set(&r->err, 500, NULL, NULL, "transcription failed: %s", err);
    }
    pthread_mutex_unlock(&w->mu);
    free(jobs);
    return NULL;
}

/* ---- requests (connection threads) ------------------------------------------------ */
static void send_error(serve_whisper *w, http_reply *reply, const api_error *e)
{
    char *j = api_error_json(e);
    if (e->http_status == 429) http_reply_header(reply, "Retry-After", "1");
    if (j) http_reply_send(reply, e->http_status, "application/json", j, strlen(j));
    else http_reply_send(reply, 500, "text/plain", "out of memory\n", 14);
    free(j);
    count_status(w, e->http_status);
}

static void wreq_free(wreq *r)
{
    if (!r) return;
    api_audio_req_free(&r->form);
    free(r->samples);
    kvlm_wjob_free(r->job);
    kvlm_transcript_free(r->t);
    pthread_cond_destroy(&r->done_cv);
    free(r);
}

/* The finished request's answer: the transcript rendered, or its error. */
static void answer(serve_whisper *w, wreq *r, http_reply *reply)
{
    if (r->err.http_status) {
        send_error(w, reply, &r->err);
        return;
    }
    char *out = NULL, err[ERRLEN] = "";
    if (kvlm_transcript_format(r->t, api_audio_format_name(r->form.format), &out, err, sizeof err)) {
        api_error set = { 0 };
        api_error_set(&set, 500, NULL, NULL, "%s", err);
        send_error(w, reply, &set);
        return;
    }
    http_reply_send(reply, 200, api_audio_content_type(r->form.format), out, strlen(out));
    free(out);
    const double audio_s = (double)r->n_samples / KVLM_SAMPLE_RATE;
    pthread_mutex_lock(w->p.metrics_mu);
    metrics_count_status(w->p.metrics, 200);
    metrics_observe_transcription(w->p.metrics, clock_now_s() - r->t_arrive, audio_s);
    pthread_mutex_unlock(w->p.metrics_mu);
}

void serve_whisper_handle(serve_whisper *w, const http_request *req, http_reply *reply)
{
    api_error e = { 0 };
    wreq *r = calloc(1, sizeof *r);
    if (!r) {
        api_error_set(&e, 500, NULL, NULL, "out of memory");
        send_error(w, reply, &e);
        return;
    }
    r->t_arrive = clock_now_s();
    pthread_cond_init(&r->done_cv, NULL);
    const api_audio_limits lim = { .model_name = w->model_id, .model_alias = SERVE_WHISPER_ALIAS,
                                   .max_upload = w->p.max_upload };
    if (api_audio_parse(http_request_mhd(req), req->body, req->body_len, &lim, &r->form, &e)) goto fail;
    char err[ERRLEN] = "";
    kvlm_err rc = kvlm_audio_load_memory(r->form.file, r->form.file_len, &r->samples, &r->n_samples, err, sizeof err);
    if (rc) {
        api_error_set(&e, rc == KVLM_ERR_NOMEM ? 500 : 400, NULL, rc == KVLM_ERR_NOMEM ? NULL : "file",
                      "Could not decode the audio file: %s", err);
        goto fail;
    }
    free(r->form.file);                             /* decoded: the bytes are not needed any more */
    r->form.file = NULL;
    if (r->n_samples == 0) {
        api_error_set(&e, 400, NULL, "file", "The audio file holds no samples");
        goto fail;
    }
    pthread_mutex_lock(&w->mu);                     /* a queue slot, or 429 / 503 */
    if (w->stopping || w->queue_len >= w->p.queue_max) {
        const bool stop = w->stopping;
        pthread_mutex_unlock(&w->mu);
        if (stop) api_error_set(&e, 503, NULL, NULL, "the server is shutting down");
        else api_error_set(&e, 429, NULL, NULL, "too many transcriptions are waiting (%lld); retry later",
                           (long long)w->p.queue_max);
        goto fail;
    }
    w->queue_len++;
    if (w->queue_tail) w->queue_tail->next = r;
    else w->queue_head = r;
    w->queue_tail = r;
    pthread_cond_signal(&w->work_cv);
    while (!r->finished) {                          /* a client that hangs up cancels its request */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&r->done_cv, &w->mu, &ts);
        if (!r->finished && !atomic_load(&r->cancelled) && http_request_peer_gone(req)) {
            atomic_store(&r->cancelled, true);
            pthread_cond_signal(&w->work_cv);
        }
    }
    pthread_mutex_unlock(&w->mu);
    if (atomic_load(&r->cancelled) && !r->err.http_status)
        api_error_set(&r->err, 499, NULL, NULL, "the client closed the connection");   /* nginx's code: no one reads it */
    answer(w, r, reply);
    wreq_free(r);
    return;
fail:
    send_error(w, reply, &e);
    wreq_free(r);
}

/* ---- set-up ------------------------------------------------------------------------ */
kvlm_err serve_whisper_start(const serve_whisper_params *p, serve_whisper **out, char *err, size_t errlen)
{
    *out = NULL;
    serve_whisper *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return KVLM_ERR_NOMEM;
    }
    w->p = *p;
    if (w->p.parallel <= 0) w->p.parallel = 16;
    if (w->p.queue_max <= 0) w->p.queue_max = 64;
    if (!w->p.max_upload) w->p.max_upload = (size_t)25 << 20;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->work_cv, NULL);
    char path[4096];
    const char *dir = serve_whisper_resolve(p->path, path, sizeof path);
    kvlm_whisper_params wp = kvlm_whisper_default_params();
    wp.n_threads = p->n_threads;
    wp.n_jobs = (int)w->p.parallel;
    kvlm_err rc = kvlm_whisper_load(dir, &wp, &w->model, err, errlen);
    if (rc) goto fail;
    kvlm_whisper_info info;
    kvlm_whisper_get_info(w->model, &info);
    snprintf(w->model_id, sizeof w->model_id, "%s", info.name && info.name[0] ? info.name : "whisper");
    if (pthread_create(&w->th, NULL, whisper_thread, w)) {
        snprintf(err, errlen, "cannot start the whisper thread");
        rc = KVLM_ERR_NOMEM;
        goto fail;
    }
    w->th_started = true;
    *out = w;
    return KVLM_OK;
fail:
    serve_whisper_free(w);
    return rc;
}

void serve_whisper_stop(serve_whisper *w)
{
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_signal(&w->work_cv);
    pthread_mutex_unlock(&w->mu);
    if (w->th_started) pthread_join(w->th, NULL);   /* every request answered (503) or done */
    w->th_started = false;
}

void serve_whisper_free(serve_whisper *w)
{
    if (!w) return;
    serve_whisper_stop(w);
    kvlm_whisper_free(w->model);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->work_cv);
    free(w);
}
