/* http.c - see http.h: libmicrohttpd (MHD) glue, one thread per connection.
 * Room: server. May touch: core (errors), libmicrohttpd, pthreads, sockets.
 *
 * A request's state (http_req_impl) lives from MHD's URI callback, which sees
 * the raw target with its query string, to MHD's completion callback, which
 * MHD calls for every request whose URI callback ran (also on hang-ups and at
 * shutdown). The access handler sees it three ways:
 *   1st call (headers only)  Content-Length > max_body: queue 413 now
 *   calls with data          append to the body, or count and drop it once past max_body
 *   last call (no data)      413 if the body was too large, else run the handler
 *
 * A stream and who holds it:
 *
 *   writer (scheduler) --write/push--> [ buf: off .. len ) --stream_read--> MHD --> client
 *          ^ refs: 1                       mutex mu          refs: 1 (the request,
 *          | until http_stream_close       data_cv: reader waits   dropped at completion)
 *                                          space_cv: writers wait
 *
 *   watchdog thread (cfg.stream_stall_ms > 0): every STALL_TICK_MS or so, a
 *   stream whose client has taken nothing for stream_stall_ms while bytes wait
 *   for it is aborted (below).
 *
 *   registry (shared by the server and its streams, refcounted so a stream may
 *   outlive the server): the list of streams not yet freed, so that stop can
 *   let the closed ones finish and cancel the rest; `stopping` cancels streams
 *   born during stop.
 *
 * Invariants:
 *   - off <= len <= cap; len - off <= max (stream_queue) after a write (push
 *     may go past it: its writer keeps the bound, see http_stream_push); the
 *     reader resets off = len = 0 whenever it drains the queue.
 *   - fd >= 0 until the request completes (on_completed, which MHD calls before
 *     it closes the socket), so an abort never touches a reused descriptor.
 *   - cancelled only goes false -> true, under mu (read lock-free by
 *     http_stream_cancelled); the cancel callback is taken out under mu, so it
 *     runs at most once, and never after close returned.
 *   - finished (the reader returned end-of-stream) implies closed.
 *   - A stream on the registry list has refs > 0 or is about to be unlinked by
 *     the thread that dropped the last reference; stop takes a reference only
 *     on streams with refs > 0, under the registry lock.
 *   - Lock order: registry mu, then stream mu. Callbacks run with no lock held.
 *
 * The reader sleeps on data_cv for at most STREAM_POLL_MS, then looks at the
 * socket: MHD only learns of a hang-up when it next sends, which for a stream
 * waiting on a long prefill may be many seconds away. A client that half-closes
 * its side (shutdown(SHUT_WR)) counts as gone, as in most SSE servers.
 *
 * Stalls. A client that keeps its socket open and reads nothing fills the
 * kernel's buffers, then MHD's, then the queue; MHD stops asking for bytes, so
 * the connection thread sits in MHD's poll and nothing on it can notice. The
 * watchdog does: `progress` is when the reader last took bytes (or a write found
 * the queue empty, or the reader ended the body); a stream with bytes queued, or
 * ended but not yet completed (its last bytes still in MHD's or the kernel's
 * buffers), and no progress for stream_stall_ms is aborted: cancelled (the
 * writer and its cancel callback learn of it as of a hang-up) and its socket shut
 * down with SO_LINGER 0, which wakes MHD's poll and makes its close send a reset,
 * so no kernel buffer is kept for a client that will not read it. An idle stream
 * (nothing queued: the engine is still in a prefill) never counts as stalled.
 * MHD takes bytes a write buffer at a time (32 KB measured), so a client counts as
 * reading while it takes about that much per stream_stall_ms. What a client that
 * reads nothing holds up is bounded: stream_queue here (plus a push past it), MHD's
 * buffer, and the socket's send buffer (stream_sndbuf). */
#include "server/http.h"
#include "core/err.h"

#include <microhttpd.h>

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum {
    STREAM_POLL_MS = 100,        /* how late an idle stream may notice a hang-up */
    STREAM_BLOCK = 16 * 1024,    /* MHD's preferred read size for a stream */
    STREAM_MIN_CAP = 4096,
    STOP_DRAIN_MS = 2000,        /* how long stop lets closed streams send what they hold */
    STALL_TICK_MS = 250,         /* the watchdog looks at most this far apart (and 8 times per stall) */
    DEFAULT_MAX_CONNECTIONS = 256,
    DEFAULT_TIMEOUT_S = 60,
};
#define DEFAULT_MAX_BODY     ((size_t)8 << 20)
#define DEFAULT_STREAM_QUEUE ((size_t)1 << 20)
/* A stream's socket send buffer. Left to the kernel, it grows to tcp_wmem's
 * maximum (4 MiB) for a client that reads nothing, measured on loopback: that
 * much kernel memory per stalled client, and 25,000 tokens of events before the
 * writer learns anything. 64 KiB still carries a stream's events over a 100 ms
 * round trip at hundreds of KB/s. */
#define DEFAULT_STREAM_SNDBUF ((size_t)64 << 10)
/* A chunked body that passes max_body is read on and dropped so the client can
 * be told 413 (MHD cannot answer in mid-upload); past this much more, the
 * connection is simply closed, so that a client cannot keep a thread reading. */
#define DISCARD_SLACK        ((size_t)1 << 20)

typedef struct http_header {
    struct http_header *next;
    char *name, *value;          /* in the same allocation as the node */
} http_header;

typedef struct http_registry {
    pthread_mutex_t mu;
    pthread_cond_t gone_cv;      /* a stream left the list (stop's drain waits on it) */
    http_stream *head;           /* streams not yet freed, doubly linked */
    size_t refs;                 /* the server, plus one per stream */
    bool stopping;
    bool watch_stop;             /* the watchdog thread should return */
    pthread_cond_t watch_cv;     /* it sleeps here between looks */
} http_registry;

struct http_server {
    struct MHD_Daemon *daemon;
    http_handler_fn fn;
    void *user;
    http_config cfg;             /* with defaults filled in; host not kept */
    int port;
    http_registry *reg;
    pthread_t watchdog;
    bool watchdog_started;
};

struct http_reply {
    http_server *srv;
    struct MHD_Connection *conn;
    int status;
    bool given;                  /* send or stream succeeded */
    struct MHD_Response *resp;   /* built by send/stream, queued when the handler returns */
    http_header *headers, **tail;/* pending extra headers, in order */
    http_stream *stream;         /* the request's reference, when streaming */
};

struct http_req_impl {
    http_reply reply;
    bool started, too_large;
    size_t max_body;             /* this request's limit (cfg.max_body or body_limit_fn's) */
    char *body;                  /* [body_len] + NUL, at most max_body + 1 bytes */
    size_t body_len, body_cap;
    size_t discarded;            /* bytes dropped after the body passed max_body */
    const char *path, *query;    /* into uri */
    char uri[];                  /* the raw target, '?' replaced by NUL */
};

struct http_stream {
    pthread_mutex_t mu;
    pthread_cond_t data_cv;      /* the reader waits: data, close or cancel */
    pthread_cond_t space_cv;     /* writers wait: room or cancel; close waits for a running cancel fn */
    char *buf;                   /* queued bytes: buf[off .. len) */
    size_t off, len, cap, max;
    int refs;                    /* writer + request */
    bool closed;                 /* the writer called close */
    bool finished;               /* the reader returned end-of-stream */
    bool in_cancel_fn;           /* the cancel fn runs on cancel_thread */
    atomic_bool cancelled;
    http_cancel_fn cancel_fn;
    void *cancel_user;
    pthread_t cancel_thread;
    int fd;                      /* the connection's socket, watched for a hang-up; -1 once
                                    the request completed */
    int64_t progress_ms;         /* monotonic ms of the client's last progress (see Stalls) */
    http_registry *reg;
    http_stream *prev, *next;    /* on reg's list */
    http_stream *sweep_next;     /* stop's private list */
};

/* ---- registry and stream life ------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void deadline_in_ms(struct timespec *t, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, t);
    t->tv_sec += ms / 1000;
    t->tv_nsec += (ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) { t->tv_sec++; t->tv_nsec -= 1000000000L; }
}

/* 0 on success; on failure nothing is left to free but reg itself */
static int registry_init(http_registry *reg)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) return -1;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);   /* deadline_in_ms's clock */
    int rc = pthread_cond_init(&reg->gone_cv, &ca);
    if (rc == 0 && (rc = pthread_cond_init(&reg->watch_cv, &ca)) != 0) pthread_cond_destroy(&reg->gone_cv);
    pthread_condattr_destroy(&ca);
    if (rc != 0) return -1;
    if (pthread_mutex_init(&reg->mu, NULL) != 0) {
        pthread_cond_destroy(&reg->watch_cv);
        pthread_cond_destroy(&reg->gone_cv);
        return -1;
    }
    return 0;
}

static void registry_unref(http_registry *reg)
{
    pthread_mutex_lock(&reg->mu);
    bool last = --reg->refs == 0;
    pthread_mutex_unlock(&reg->mu);
    if (last) {
        pthread_cond_destroy(&reg->watch_cv);
        pthread_cond_destroy(&reg->gone_cv);
        pthread_mutex_destroy(&reg->mu);
        free(reg);
    }
}

static void stream_destroy(http_stream *s)
{
    pthread_cond_destroy(&s->space_cv);
    pthread_cond_destroy(&s->data_cv);
    pthread_mutex_destroy(&s->mu);
    free(s->buf);
    free(s);
}

static http_stream *stream_new(size_t max, int fd)
{
    http_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) { free(s); return NULL; }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    bool ok = pthread_mutex_init(&s->mu, NULL) == 0;
    if (ok && pthread_cond_init(&s->data_cv, &ca) != 0) { pthread_mutex_destroy(&s->mu); ok = false; }
    if (ok && pthread_cond_init(&s->space_cv, &ca) != 0) {
        pthread_cond_destroy(&s->data_cv);
        pthread_mutex_destroy(&s->mu);
        ok = false;
    }
    pthread_condattr_destroy(&ca);
    if (!ok) { free(s); return NULL; }
    s->max = max;
    s->refs = 2;
    s->fd = fd;
    s->progress_ms = now_ms();
    atomic_init(&s->cancelled, false);
    return s;
}

/* Puts s on the registry list; a stream born while the server stops is cancelled at once. */
static void stream_register(http_stream *s, http_registry *reg)
{
    pthread_mutex_lock(&reg->mu);
    s->reg = reg;
    s->next = reg->head;
    if (reg->head) reg->head->prev = s;
    reg->head = s;
    reg->refs++;
    if (reg->stopping) atomic_store(&s->cancelled, true);   /* no fn can be registered yet */
    pthread_mutex_unlock(&reg->mu);
}

static void stream_unref(http_stream *s)
{
    pthread_mutex_lock(&s->mu);
    int left = --s->refs;
    pthread_mutex_unlock(&s->mu);
    if (left > 0) return;
    http_registry *reg = s->reg;
    pthread_mutex_lock(&reg->mu);
    if (s->prev) s->prev->next = s->next; else reg->head = s->next;
    if (s->next) s->next->prev = s->prev;
    pthread_cond_broadcast(&reg->gone_cv);
    pthread_mutex_unlock(&reg->mu);
    stream_destroy(s);
    registry_unref(reg);
}

/* Marks s cancelled (once), wakes its reader and writers, and runs the cancel
 * callback with no lock held. The caller holds a reference. */
static void stream_cancel(http_stream *s)
{
    pthread_mutex_lock(&s->mu);
    if (atomic_load(&s->cancelled)) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    atomic_store(&s->cancelled, true);
    http_cancel_fn fn = s->cancel_fn;
    void *user = s->cancel_user;
    s->cancel_fn = NULL;
    if (fn) {
        s->in_cancel_fn = true;
        s->cancel_thread = pthread_self();
    }
    pthread_cond_broadcast(&s->data_cv);
    pthread_cond_broadcast(&s->space_cv);
    pthread_mutex_unlock(&s->mu);
    if (!fn) return;
    fn(user);
    pthread_mutex_lock(&s->mu);
    s->in_cancel_fn = false;
    pthread_cond_broadcast(&s->space_cv);
    pthread_mutex_unlock(&s->mu);
}

/* Cuts a stalled client off (see Stalls): the socket is shut down with SO_LINGER 0
 * (MHD's poll wakes, its close resets the connection) and the stream cancelled.
 * The caller holds a reference. */
static void stream_abort(http_stream *s)
{
    pthread_mutex_lock(&s->mu);
    if (s->fd >= 0) {
        const struct linger lg = { .l_onoff = 1, .l_linger = 0 };
        setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        shutdown(s->fd, SHUT_RDWR);
    }
    pthread_mutex_unlock(&s->mu);
    stream_cancel(s);
}

/* true if s owes its client bytes (queued, or ended but not completed) and the
 * client has taken none for stall_ms. s->mu held. */
static bool stream_stalled(const http_stream *s, int64_t now, int64_t stall_ms)
{
    if (s->refs == 0 || s->fd < 0 || atomic_load(&s->cancelled)) return false;
    const bool owes = s->len > s->off || s->finished;
    return owes && now - s->progress_ms >= stall_ms;
}

/* The live streams (refs > 0), or with stall_ms > 0 the stalled ones among them,
 * each with a reference taken, on a private list through sweep_next (stop's sweep
 * and the watchdog never run at once). reg->mu held. */
static http_stream *registry_take(http_registry *reg, int64_t stall_ms)
{
    http_stream *list = NULL;
    const int64_t now = now_ms();
    for (http_stream *s = reg->head; s; s = s->next) {
        pthread_mutex_lock(&s->mu);
        if (s->refs > 0 && (stall_ms == 0 || stream_stalled(s, now, stall_ms))) {
            s->refs++;
            s->sweep_next = list;
            list = s;
        }
        pthread_mutex_unlock(&s->mu);
    }
    return list;
}

/* Stop's sweep: a reference on every live stream under the registry lock,
 * then cancel and release each with no lock held. */
static void registry_cancel_all(http_registry *reg)
{
    pthread_mutex_lock(&reg->mu);
    reg->stopping = true;
    http_stream *list = registry_take(reg, 0);
    pthread_mutex_unlock(&reg->mu);
    while (list) {
        http_stream *s = list;
        list = s->sweep_next;
        stream_cancel(s);
        stream_unref(s);
    }
}

/* The watchdog thread: looks at every stream each tick, aborts the stalled ones
 * (with no lock held, a reference each, as registry_cancel_all). */
static void *watchdog_main(void *arg)
{
    http_server *srv = arg;
    http_registry *reg = srv->reg;
    const int64_t stall_ms = srv->cfg.stream_stall_ms;
    const long tick = stall_ms / 8 < 1 ? 1 : stall_ms / 8 > STALL_TICK_MS ? STALL_TICK_MS : (long)(stall_ms / 8);
    pthread_mutex_lock(&reg->mu);
    while (!reg->watch_stop) {
        struct timespec t;
        deadline_in_ms(&t, tick);
        pthread_cond_timedwait(&reg->watch_cv, &reg->mu, &t);
        if (reg->watch_stop) break;
        http_stream *list = registry_take(reg, stall_ms);
        pthread_mutex_unlock(&reg->mu);
        while (list) {
            http_stream *s = list;
            list = s->sweep_next;
            if (srv->cfg.stall_fn) srv->cfg.stall_fn(srv->cfg.stall_user);   /* before the client can tell */
            stream_abort(s);
            stream_unref(s);
        }
        pthread_mutex_lock(&reg->mu);
    }
    pthread_mutex_unlock(&reg->mu);
    return NULL;
}

/* ---- the stream's two sides ---------------------------------------------------- */

/* Stop's first step: a stream its writer has closed (a last event and the end of
 * the body, say) is let end on its own, for up to ms: cancelling it would drop
 * the bytes still queued, and the client would see a body cut short. Streams
 * whose writer is still on are left to registry_cancel_all. Returns at once
 * when no closed stream is left. */
static void registry_drain(http_registry *reg, long ms)
{
    struct timespec t;
    deadline_in_ms(&t, ms);
    pthread_mutex_lock(&reg->mu);
    for (;;) {
        bool closing = false;
        for (http_stream *s = reg->head; s && !closing; s = s->next) {
            pthread_mutex_lock(&s->mu);
            closing = s->closed && s->refs > 0 && !atomic_load(&s->cancelled);
            pthread_mutex_unlock(&s->mu);
        }
        if (!closing || pthread_cond_timedwait(&reg->gone_cv, &reg->mu, &t) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&reg->mu);
}

/* true if the client closed or reset its end. Pipelined bytes waiting to be
 * read do not count: only end-of-file or an error does. */
static bool peer_gone(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLERR | POLLHUP | POLLRDHUP | POLLNVAL)) return true;
    char c;
    ssize_t r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* MHD's content reader, on the connection thread: hands over what is queued,
 * sleeping while nothing is, and never returns 0 (that would make MHD spin). */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    http_stream *s = cls;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (atomic_load(&s->cancelled)) break;
        size_t queued = s->len - s->off;
        if (queued > 0) {
            size_t n = queued < max ? queued : max;
            memcpy(buf, s->buf + s->off, n);
            s->off += n;
            if (s->off == s->len) s->off = s->len = 0;
            s->progress_ms = now_ms();
            pthread_cond_broadcast(&s->space_cv);
            pthread_mutex_unlock(&s->mu);
            return (ssize_t)n;
        }
        if (s->closed) {
            s->finished = true;
            s->progress_ms = now_ms();        /* MHD still holds the last bytes: see Stalls */
            pthread_mutex_unlock(&s->mu);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        struct timespec t;
        deadline_in_ms(&t, STREAM_POLL_MS);
        if (pthread_cond_timedwait(&s->data_cv, &s->mu, &t) == ETIMEDOUT && peer_gone(s->fd)) {
            pthread_mutex_unlock(&s->mu);
            stream_cancel(s);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

/* Queues data[0..len): a writer (block) waits while max bytes are queued, a push
 * queues it all at once. */
static bool stream_put(http_stream *s, const void *data, size_t len, bool block)
{
    const char *p = data;
    bool oom = false;
    pthread_mutex_lock(&s->mu);
    assert(!s->closed);
    while (len > 0) {
        if (atomic_load(&s->cancelled)) break;
        size_t queued = s->len - s->off;
        if (block && queued >= s->max) {
            pthread_cond_wait(&s->space_cv, &s->mu);
            continue;
        }
        size_t n = !block ? len : len < s->max - queued ? len : s->max - queued;
        if (s->len + n > s->cap && s->off > 0) {        /* compact first */
            memmove(s->buf, s->buf + s->off, queued);
            s->off = 0;
            s->len = queued;
        }
        if (s->len + n > s->cap) {                       /* then grow, up to max (a push: what it needs) */
            size_t cap = s->cap ? s->cap * 2 : STREAM_MIN_CAP;
            if (cap > s->max && s->len + n <= s->max) cap = s->max;
            if (cap < s->len + n) cap = s->len + n;
            char *nb = realloc(s->buf, cap);
            if (!nb) { oom = true; break; }
            s->buf = nb;
            s->cap = cap;
        }
        if (queued == 0) s->progress_ms = now_ms();     /* the client owes nothing until now */
        memcpy(s->buf + s->len, p, n);
        s->len += n;
        p += n;
        len -= n;
        pthread_cond_signal(&s->data_cv);
    }
    pthread_mutex_unlock(&s->mu);
    if (oom) stream_cancel(s);     /* a response with a hole in it is worse than none */
    return len == 0 && !atomic_load(&s->cancelled);
}

bool http_stream_write(http_stream *s, const void *data, size_t len)
{
    return stream_put(s, data, len, true);
}

bool http_stream_push(http_stream *s, const void *data, size_t len)
{
    return stream_put(s, data, len, false);
}

bool http_stream_full(http_stream *s)
{
    pthread_mutex_lock(&s->mu);
    const bool full = s->len - s->off >= s->max;
    pthread_mutex_unlock(&s->mu);
    return full;
}

bool http_stream_cancelled(const http_stream *s)
{
    return atomic_load(&s->cancelled);
}

void http_stream_on_cancel(http_stream *s, http_cancel_fn fn, void *user)
{
    pthread_mutex_lock(&s->mu);
    bool now = atomic_load(&s->cancelled);
    if (!now) {
        s->cancel_fn = fn;
        s->cancel_user = user;
    }
    pthread_mutex_unlock(&s->mu);
    if (now && fn) fn(user);
}

void http_stream_close(http_stream *s)
{
    pthread_mutex_lock(&s->mu);
    s->closed = true;
    s->cancel_fn = NULL;
    /* a cancel fn already running elsewhere may still use its user pointer;
     * from inside that fn (same thread) there is nothing to wait for */
    while (s->in_cancel_fn && !pthread_equal(s->cancel_thread, pthread_self()))
        pthread_cond_wait(&s->space_cv, &s->mu);
    pthread_cond_broadcast(&s->data_cv);
    pthread_mutex_unlock(&s->mu);
    stream_unref(s);
}

/* ---- replies ---------------------------------------------------------------------- */

static void reply_drop_headers(http_reply *r)
{
    while (r->headers) {
        http_header *h = r->headers;
        r->headers = h->next;
        free(h);
    }
    r->tail = &r->headers;
}

static bool header_ok(const char *s, bool is_name)
{
    if (!s || (is_name && !*s)) return false;
    for (; *s; s++)
        if (*s == '\r' || *s == '\n' || (is_name && (*s == ':' || *s == ' ' || *s == '\t')))
            return false;
    return true;
}

bool http_reply_header(http_reply *r, const char *name, const char *value)
{
    if (r->given || !header_ok(name, true) || !header_ok(value, false)) return false;
    /* the framing is MHD's: it would refuse these when the reply is sent */
    if (strcasecmp(name, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0 ||
        strcasecmp(name, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0)
        return false;
    size_t nl = strlen(name) + 1, vl = strlen(value) + 1;
    http_header *h = malloc(sizeof *h + nl + vl);
    if (!h) return false;
    h->next = NULL;
    h->name = (char *)(h + 1);
    h->value = h->name + nl;
    memcpy(h->name, name, nl);
    memcpy(h->value, value, vl);
    *r->tail = h;
    r->tail = &h->next;
    return true;
}

/* Puts the content type and pending headers on resp and makes it the reply.
 * On failure the caller still owns resp. */
static bool reply_attach(http_reply *r, struct MHD_Response *resp, int status, const char *content_type)
{
    if (content_type && (!header_ok(content_type, false) ||
                         MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES))
        return false;
    for (http_header *h = r->headers; h; h = h->next)
        if (MHD_add_response_header(resp, h->name, h->value) != MHD_YES) return false;
    reply_drop_headers(r);
    r->resp = resp;
    r->status = status;
    r->given = true;
    return true;
}

bool http_reply_send(http_reply *r, int status, const char *content_type, const void *body, size_t len)
{
    if (r->given || status < 100 || status > 599) return false;
    struct MHD_Response *resp = len == 0
        ? MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT)
        : MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return false;
    if (!reply_attach(r, resp, status, content_type)) {
        MHD_destroy_response(resp);
        return false;
    }
    return true;
}

http_stream *http_reply_stream(http_reply *r, int status, const char *content_type)
{
    if (r->given || status < 100 || status > 599) return NULL;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return NULL;
    http_stream *s = stream_new(r->srv->cfg.stream_queue, ci->connect_fd);
    if (!s) return NULL;
    const int sndbuf = (int)r->srv->cfg.stream_sndbuf;   /* see DEFAULT_STREAM_SNDBUF; best effort */
    setsockopt(ci->connect_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK,
                                                                  stream_read, s, NULL);
    if (!resp || !reply_attach(r, resp, status, content_type)) {
        if (resp) MHD_destroy_response(resp);
        stream_destroy(s);
        return NULL;
    }
    stream_register(s, r->srv->reg);
    r->stream = s;
    return s;
}

/* The transport's own errors: the caller's format if it gave one, else a
 * minimal OpenAI-style JSON error (message is a constant: no escaping needed). */
static void reply_error(http_server *srv, http_reply *r, int status, const char *message)
{
    reply_drop_headers(r);
    if (srv->cfg.error_fn) srv->cfg.error_fn(srv->cfg.error_user, status, message, r);
    if (r->given) return;
    char body[256];
    int n = snprintf(body, sizeof body,
                     "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":null,\"code\":null}}",
                     message, status >= 500 ? "server_error" : "invalid_request_error");
    http_reply_send(r, status, "application/json", body, (size_t)n);
}

static enum MHD_Result reply_queue(http_reply *r)
{
    if (!r->resp) return MHD_NO;                  /* could not even build an error */
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)r->status, r->resp);
    MHD_destroy_response(r->resp);                /* the connection holds its own reference */
    r->resp = NULL;
    if (ret != MHD_YES && r->stream) stream_cancel(r->stream);
    return ret;
}

/* ---- MHD callbacks ------------------------------------------------------------------ */

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    http_server *srv = cls;
    size_t n = strlen(uri);
    http_req_impl *rq = calloc(1, sizeof *rq + n + 1);
    if (!rq) return NULL;                         /* on_request then closes the connection */
    memcpy(rq->uri, uri, n + 1);
    char *q = strchr(rq->uri, '?');
    if (q) *q = '\0';
    rq->path = rq->uri;
    rq->query = q ? q + 1 : "";
    rq->reply.srv = srv;
    rq->reply.conn = conn;
    rq->reply.tail = &rq->reply.headers;
    return rq;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls; (void)conn; (void)toe;
    http_req_impl *rq = *con_cls;
    if (!rq) return;
    *con_cls = NULL;
    http_stream *s = rq->reply.stream;
    if (s) {
        /* anything but a reader that reached end-of-stream (a hang-up, an error,
         * shutdown, a HEAD request that never reads) cancels the writer */
        pthread_mutex_lock(&s->mu);
        bool finished = s->finished;
        s->fd = -1;                               /* MHD closes it after this call */
        pthread_mutex_unlock(&s->mu);
        if (!finished) stream_cancel(s);
        stream_unref(s);
    }
    if (rq->reply.resp) MHD_destroy_response(rq->reply.resp);
    reply_drop_headers(&rq->reply);
    free(rq->body);
    free(rq);
}

/* Appends data to the body, or drops it once the body is past max_body.
 * false: close the connection (out of memory, or a client that goes on sending). */
static bool body_append(http_req_impl *rq, size_t max_body, const char *data, size_t n)
{
    if (!rq->too_large && n > max_body - rq->body_len) {
        rq->too_large = true;
        free(rq->body);
        rq->body = NULL;
        rq->body_len = rq->body_cap = 0;
    }
    if (rq->too_large) {
        rq->discarded += n;
        return rq->discarded <= max_body + DISCARD_SLACK;
    }
    if (rq->body_len + n + 1 > rq->body_cap) {
        size_t cap = rq->body_cap ? rq->body_cap * 2 : 4096;
        if (cap < rq->body_len + n + 1) cap = rq->body_len + n + 1;
        if (cap > max_body + 1) cap = max_body + 1;
        char *nb = realloc(rq->body, cap);
        if (!nb) return false;
        rq->body = nb;
        rq->body_cap = cap;
    }
    memcpy(rq->body + rq->body_len, data, n);
    rq->body_len += n;
    rq->body[rq->body_len] = '\0';
    return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *data, size_t *data_size, void **con_cls)
{
    (void)url; (void)version;
    http_server *srv = cls;
    http_req_impl *rq = *con_cls;
    if (!rq) return MHD_NO;
    if (!rq->started) {                           /* headers only */
        rq->started = true;
        rq->max_body = srv->cfg.max_body;
        if (srv->cfg.body_limit_fn) {
            size_t m = srv->cfg.body_limit_fn(srv->user, method, rq->path);
            if (m) rq->max_body = m < SIZE_MAX / 2 ? m : SIZE_MAX / 2;
        }
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {                                 /* MHD has checked that it is a number */
            const size_t max_body = rq->max_body;
            unsigned long long n = strtoull(cl, NULL, 10);
            if (n > max_body) {                   /* answer before reading it (no 100 Continue) */
                reply_error(srv, &rq->reply, 413, "request body too large");
                return reply_queue(&rq->reply);
            }
            if (n > 0) {
                rq->body = malloc((size_t)n + 1);
                if (!rq->body) return MHD_NO;
                rq->body_cap = (size_t)n + 1;
            }
        }
        return MHD_YES;
    }
    if (*data_size > 0) {
        bool ok = body_append(rq, rq->max_body, data, *data_size);
        *data_size = 0;
        return ok ? MHD_YES : MHD_NO;
    }
    if (rq->too_large) {
        reply_error(srv, &rq->reply, 413, "request body too large");
        return reply_queue(&rq->reply);
    }

    http_request req = {
        .method = method,
        .path = rq->path,
        .query = rq->query,
        .body = rq->body ? rq->body : "",
        .body_len = rq->body_len,
        .impl = rq,
    };
    srv->fn(srv->user, &req, &rq->reply);
    free(rq->body);                               /* a stream may last minutes: let go now */
    rq->body = NULL;
    rq->body_len = rq->body_cap = 0;
    if (!rq->reply.given) reply_error(srv, &rq->reply, 500, "the server sent no response");
    return reply_queue(&rq->reply);
}

const char *http_request_header(const http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->impl->reply.conn, MHD_HEADER_KIND, name);
}

struct MHD_Connection *http_request_mhd(const http_request *req)
{
    return req->impl->reply.conn;
}

bool http_request_peer_gone(const http_request *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->impl->reply.conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    struct pollfd p = { .fd = ci->connect_fd, .events = POLLRDHUP };
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static void on_log(void *cls, const char *fmt, va_list ap)
{
    http_server *srv = cls;
    if (!srv->cfg.log_fn) return;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    srv->cfg.log_fn(srv->cfg.log_user, msg);
}

/* ---- start and stop ------------------------------------------------------------------ */

/* Binds our own listening socket (rather than letting MHD do it) so that a
 * taken port gives a clear message, port 0 works, and IPv6 is dual-stack. */
static kvlm_err listen_socket(const char *host, int port, int *fd_out, int *port_out,
                              char *err, size_t errlen)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
    };
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(host, service, &hints, &ai);
    if (rc != 0)
        return err_set(err, errlen, KVLM_ERR_IO, "listen on %s port %d: %s", host, port, gai_strerror(rc));
    int first_errno = 0;
    const char *first_step = "bind";
    for (struct addrinfo *p = ai; p; p = p->ai_next) {
        const char *step = "socket";
        int fd = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, p->ai_protocol);
        if (fd >= 0) {
            int one = 1, zero = 0;
            /* restart while old connections sit in TIME_WAIT; does not let two servers share a port */
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            if (p->ai_family == AF_INET6)
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
            struct sockaddr_storage ss;
            socklen_t sl = sizeof ss;
            step = "bind";
            if (bind(fd, p->ai_addr, p->ai_addrlen) == 0) {
                step = "listen";
                if (listen(fd, SOMAXCONN) == 0) {
                    step = "getsockname";
                    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
                        *port_out = ss.ss_family == AF_INET6
                            ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                            : ntohs(((struct sockaddr_in *)&ss)->sin_port);
                        *fd_out = fd;
                        freeaddrinfo(ai);
                        return KVLM_OK;
                    }
                }
            }
        }
        if (!first_errno) { first_errno = errno; first_step = step; }
        if (fd >= 0) close(fd);
    }
    freeaddrinfo(ai);
    if (first_errno == EADDRINUSE)
        return err_set(err, errlen, KVLM_ERR_IO,
                       "listen on %s port %d: address in use (is another server running?)", host, port);
    return err_set(err, errlen, KVLM_ERR_IO, "listen on %s port %d: %s: %s",
                   host, port, first_step, strerror(first_errno));
}

kvlm_err http_server_start(const http_config *cfg, http_handler_fn fn, void *user,
                           http_server **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg || !fn) return err_set(err, errlen, KVLM_ERR_INVALID, "http: a config and a handler are required");
    http_config c = *cfg;
    const char *host = c.host ? c.host : "127.0.0.1";
    c.host = NULL;
    if (c.port < 0 || c.port > 65535)
        return err_set(err, errlen, KVLM_ERR_INVALID, "http: port %d out of range [0, 65535]", c.port);
    if (c.timeout_s < 0)
        return err_set(err, errlen, KVLM_ERR_INVALID, "http: timeout %d s is negative", c.timeout_s);
    if (c.stream_stall_ms < 0)
        return err_set(err, errlen, KVLM_ERR_INVALID, "http: stream stall time %lld ms is negative",
                       (long long)c.stream_stall_ms);
    if (c.max_connections > UINT_MAX)
        return err_set(err, errlen, KVLM_ERR_INVALID, "http: max_connections %zu too large", c.max_connections);
    if (c.max_body > SIZE_MAX / 2)
        return err_set(err, errlen, KVLM_ERR_INVALID, "http: max_body %zu too large", c.max_body);
    if (!c.max_body) c.max_body = DEFAULT_MAX_BODY;
    if (!c.max_connections) c.max_connections = DEFAULT_MAX_CONNECTIONS;
    if (!c.timeout_s) c.timeout_s = DEFAULT_TIMEOUT_S;
    if (!c.stream_queue) c.stream_queue = DEFAULT_STREAM_QUEUE;
    if (!c.stream_sndbuf) c.stream_sndbuf = DEFAULT_STREAM_SNDBUF;
    if (c.stream_sndbuf > INT_MAX / 2)
        return err_set(err, errlen, KVLM_ERR_INVALID, "http: stream_sndbuf %zu too large", c.stream_sndbuf);

    kvlm_err e = KVLM_OK;
    int fd = -1;
    http_server *srv = calloc(1, sizeof *srv);
    http_registry *reg = calloc(1, sizeof *reg);
    if (!srv || !reg || registry_init(reg) != 0) {
        free(reg);
        reg = NULL;
        e = err_set(err, errlen, KVLM_ERR_NOMEM, "http: out of memory");
        goto fail;
    }
    reg->refs = 1;
    srv->reg = reg;
    srv->fn = fn;
    srv->user = user;
    srv->cfg = c;
    e = listen_socket(host, c.port, &fd, &srv->port, err, errlen);
    if (e != KVLM_OK) goto fail;
    struct stat st0;
    fstat(fd, &st0);

    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ITC | (c.log_fn ? MHD_USE_ERROR_LOG : 0);
    srv->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv,
                                   MHD_OPTION_EXTERNAL_LOGGER, on_log, srv,   /* first, per MHD */
                                   MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
                                   MHD_OPTION_CONNECTION_LIMIT, (unsigned)c.max_connections,
                                   MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c.timeout_s,
                                   MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv,
                                   MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
                                   MHD_OPTION_END);
    if (!srv->daemon) {
        /* MHD closes a given listening socket on some failure paths and not on
         * others; close it only if this descriptor still is our socket */
        struct stat st;
        if (fstat(fd, &st) == 0 && st.st_dev == st0.st_dev && st.st_ino == st0.st_ino) close(fd);
        e = err_set(err, errlen, KVLM_ERR_IO, "http: libmicrohttpd failed to start on %s port %d",
                    host, srv->port);
        goto fail;
    }
    if (c.stream_stall_ms > 0) {
        if (pthread_create(&srv->watchdog, NULL, watchdog_main, srv) != 0) {
            MHD_stop_daemon(srv->daemon);
            e = err_set(err, errlen, KVLM_ERR_NOMEM, "http: cannot start the stall watchdog thread");
            goto fail;
        }
        srv->watchdog_started = true;
    }
    *out = srv;
    return KVLM_OK;

fail:
    if (srv && srv->reg) registry_unref(srv->reg);
    free(srv);
    return e;
}

int http_server_port(const http_server *srv)
{
    return srv->port;
}

void http_server_stop(http_server *srv)
{
    if (!srv) return;
    if (srv->watchdog_started) {                        /* before stop's own sweeps (sweep_next) */
        pthread_mutex_lock(&srv->reg->mu);
        srv->reg->watch_stop = true;
        pthread_cond_signal(&srv->reg->watch_cv);
        pthread_mutex_unlock(&srv->reg->mu);
        pthread_join(srv->watchdog, NULL);
    }
    MHD_socket lfd = MHD_quiesce_daemon(srv->daemon);   /* no new connections */
    registry_drain(srv->reg, STOP_DRAIN_MS);            /* closed streams send what is queued */
    registry_cancel_all(srv->reg);                      /* readers return, writers see false */
    MHD_stop_daemon(srv->daemon);                       /* closes connections, joins their threads */
    if (lfd != MHD_INVALID_SOCKET) close(lfd);          /* quiesced: MHD left it to us */
    registry_unref(srv->reg);                           /* streams still open keep it alive */
    free(srv);
}
