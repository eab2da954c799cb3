/* test_http.c - the HTTP transport over real sockets on 127.0.0.1: whole
 * requests reach the handler (method, path, query, headers, plain and chunked
 * bodies), the body limit answers 413 without calling the handler, streams
 * deliver every byte in order and end the chunked body, a client hang-up or a
 * server stop cancels the writer (write returns false, the cancel callback
 * runs) within a second, a stop still delivers what closed streams hold,
 * malformed HTTP gets a 400 and a taken port a clear
 * error; pushes never block and say when the queue is full, and with a stall
 * time a client that reads nothing is cut off (cancelled, reset, counted) while
 * an idle stream and a reading one are not. The client is a few lines of plain POSIX sockets (no new dependency).
 * Handlers and writers run on server threads: they only record what happened,
 * and the test's own thread asserts. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "server/http.h"

/* a small stream queue, so that writers block on it in every streaming case */
enum { MAX_BODY = 1000, STREAM_QUEUE = 4096, MAX_JOBS = 256, N_EVENTS = 100, N_CONCURRENT = 64,
       STALL_MS = 300 };

/* ---- a tiny HTTP/1.1 client -------------------------------------------------------- */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void sleep_ms(int ms)
{
    struct timespec t = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
    nanosleep(&t, NULL);
}

/* A socket connected to the server, reads time out after 10 s so a bug hangs nothing. */
static int cli_connect_to(int family, const char *addr, int port)
{
    int fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = { .tv_sec = 10 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl;
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        inet_pton(AF_INET6, addr, &a->sin6_addr);
        sl = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, addr, &a->sin_addr);
        sl = sizeof *a;
    }
    if (connect(fd, (struct sockaddr *)&ss, sl) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int cli_connect(int port)
{
    int fd = cli_connect_to(AF_INET, "127.0.0.1", port);
    assert_true(fd >= 0);
    return fd;
}

static void cli_send(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);   /* the server may have closed: no SIGPIPE */
        if (n <= 0) return;
        p += n;
        len -= (size_t)n;
    }
}

static void cli_send_str(int fd, const char *s)
{
    cli_send(fd, s, strlen(s));
}

/* Reads until end-of-file, an error or the time-out; malloc'd, NUL-terminated. */
static char *cli_read_all(int fd, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (n + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
        if (r <= 0) break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Reads until needle has arrived (true) or the connection ends (false). */
static bool cli_read_until(int fd, char *buf, size_t cap, const char *needle)
{
    size_t n = 0;
    buf[0] = '\0';
    while (!strstr(buf, needle)) {
        if (n + 1 >= cap) return false;
        ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
        if (r <= 0) return false;
        n += (size_t)r;
        buf[n] = '\0';
    }
    return true;
}

typedef struct resp {
    int status;
    char head[4096];        /* status line and headers, each line ending in CRLF */
    char *body;             /* malloc'd, de-chunked, NUL-terminated */
    size_t body_len;
    bool chunked;
    bool chunked_end;       /* the zero-size last chunk arrived */
    const char *rest;       /* bytes after this response, in the raw buffer (pipelining) */
} resp;

static void resp_parse(const char *raw, size_t n, resp *r)
{
    memset(r, 0, sizeof *r);
    r->status = -1;
    r->body = calloc(1, n + 1);
    assert_non_null(r->body);
    const char *end = memmem(raw, n, "\r\n\r\n", 4);
    if (!end) return;
    size_t hl = (size_t)(end - raw) + 2;
    if (hl >= sizeof r->head) hl = sizeof r->head - 1;
    memcpy(r->head, raw, hl);
    if (sscanf(raw, "HTTP/1.%*d %d", &r->status) != 1) r->status = -1;
    const char *b = end + 4;
    size_t bl = n - (size_t)(b - raw);
    r->chunked = strcasestr(r->head, "\r\ntransfer-encoding: chunked\r\n") != NULL;
    if (!r->chunked) {
        const char *cl = strcasestr(r->head, "\r\ncontent-length:");
        if (cl) {
            size_t len = strtoul(cl + 17, NULL, 10);
            if (len < bl) bl = len;
        }
        memcpy(r->body, b, bl);
        r->body_len = bl;
        r->rest = b + bl;
        return;
    }
    size_t pos = 0;
    while (pos < bl) {
        char *eol;
        size_t sz = strtoul(b + pos, &eol, 16);
        const char *crlf = memmem(b + pos, bl - pos, "\r\n", 2);
        if (!crlf || eol > crlf) break;
        pos = (size_t)(crlf - b) + 2;
        if (sz == 0) {
            r->chunked_end = bl - pos >= 2 && memcmp(b + pos, "\r\n", 2) == 0;
            r->rest = b + pos + 2;
            break;
        }
        if (pos + sz + 2 > bl) break;
        memcpy(r->body + r->body_len, b + pos, sz);
        r->body_len += sz;
        pos += sz + 2;
    }
}

static const char *resp_header(const resp *r, const char *name, char *val, size_t cap)
{
    char key[128];
    snprintf(key, sizeof key, "\r\n%s:", name);
    const char *h = strcasestr(r->head, key);
    if (!h) return NULL;
    h += strlen(key);
    while (*h == ' ') h++;
    size_t n = strcspn(h, "\r");
    if (n >= cap) n = cap - 1;
    memcpy(val, h, n);
    val[n] = '\0';
    return val;
}

/* One request on a fresh connection (the request should say Connection: close). */
static void cli_request(int port, const char *raw, size_t len, resp *r)
{
    int fd = cli_connect(port);
    cli_send(fd, raw, len);
    size_t n;
    char *buf = cli_read_all(fd, &n);
    close(fd);
    resp_parse(buf, n, r);
    free(buf);
}

/* ---- the server side: a handler with a few routes and writer threads ------------------ */

/* JOB_PUSH pushes n events without a look at the queue, then closes; JOB_PACED
 * pushes until cancelled, waiting while the queue is full (as kvlm serve's
 * scheduler does) */
typedef enum { JOB_COUNT, JOB_FOREVER, JOB_IDLE, JOB_PUSH, JOB_PACED } job_kind;

typedef struct writer_job {
    pthread_t tid;
    http_stream *s;
    job_kind kind;
    int n, delay_ms;
    int written;             /* events written before the end */
    bool write_false;        /* http_stream_write (or push) returned false */
    bool saw_full;           /* http_stream_full was true at some point */
    double full_time;        /* when it first was (JOB_PACED) */
    double false_time, cancel_time;
    atomic_int cancel_calls;
    atomic_int closed;       /* 1 once the writer has called http_stream_close */
} writer_job;

typedef struct fixture {
    http_server *srv;
    int port;
    atomic_int handler_calls;
    atomic_int n_jobs;
    bool bad_headers_refused;   /* /limited: CR/LF and framing headers were refused */
    atomic_int stalls;          /* stall_fn calls */
    writer_job jobs[MAX_JOBS];
} fixture;

static int query_int(const char *query, const char *key, int dflt)
{
    char k[32];
    snprintf(k, sizeof k, "%s=", key);
    const char *p = strstr(query, k);
    return p ? atoi(p + strlen(k)) : dflt;
}

static void on_cancel(void *user)
{
    writer_job *j = user;
    j->cancel_time = now_s();
    atomic_fetch_add(&j->cancel_calls, 1);
}

static void *writer_main(void *arg)
{
    writer_job *j = arg;
    char ev[64];
    if (j->kind == JOB_IDLE) {               /* an engine in a long prefill: polls only */
        while (!http_stream_cancelled(j->s)) sleep_ms(1);
        j->false_time = now_s();
        j->write_false = !http_stream_write(j->s, "x", 1);
    } else {
        const bool push = j->kind == JOB_PUSH || j->kind == JOB_PACED;
        for (int i = 0; j->kind == JOB_FOREVER || j->kind == JOB_PACED || i < j->n; i++) {
            while (j->kind == JOB_PACED && http_stream_full(j->s) && !http_stream_cancelled(j->s)) {
                if (!j->saw_full) j->full_time = now_s();
                j->saw_full = true;
                sleep_ms(1);
            }
            int len = snprintf(ev, sizeof ev, "data: %d\n\n", i);
            if (!(push ? http_stream_push : http_stream_write)(j->s, ev, (size_t)len)) {
                j->false_time = now_s();
                j->write_false = true;
                break;
            }
            j->written++;
            if (j->delay_ms) sleep_ms(j->delay_ms);
        }
        if (push && http_stream_full(j->s)) j->saw_full = true;
    }
    http_stream_close(j->s);
    atomic_store(&j->closed, 1);
    return NULL;
}

static void handler(void *user, const http_request *req, http_reply *reply)
{
    fixture *fx = user;
    atomic_fetch_add(&fx->handler_calls, 1);
    if (strcmp(req->path, "/echo") == 0) {
        const char *xt = http_request_header(req, "x-test");   /* any case */
        size_t cap = req->body_len + 512;
        char *out = malloc(cap);
        if (!out) return;
        int n = snprintf(out, cap, "method=%s\npath=%s\nquery=%s\nx-test=%s\nbody_len=%zu\nbody=",
                         req->method, req->path, req->query, xt ? xt : "(none)", req->body_len);
        memcpy(out + n, req->body, req->body_len);
        http_reply_header(reply, "X-Echo", "yes");
        http_reply_send(reply, 200, "text/plain", out, (size_t)n + req->body_len);
        free(out);
        return;
    }
    if (strcmp(req->path, "/limited") == 0) {                  /* extra headers on an error */
        fx->bad_headers_refused = !http_reply_header(reply, "Bad\r\nName", "1") &&
                                  !http_reply_header(reply, "X-Split", "a\r\nInjected: 1") &&
                                  !http_reply_header(reply, "content-length", "5");
        http_reply_header(reply, "Retry-After", "7");
        http_reply_send(reply, 429, "application/json", "{}", 2);
        return;
    }
    job_kind kind = strcmp(req->path, "/stream") == 0  ? JOB_COUNT
                  : strcmp(req->path, "/forever") == 0 ? JOB_FOREVER
                  : strcmp(req->path, "/idle") == 0    ? JOB_IDLE
                  : strcmp(req->path, "/push") == 0    ? JOB_PUSH
                  : strcmp(req->path, "/paced") == 0   ? JOB_PACED : (job_kind)-1;
    if ((int)kind < 0) return;                                 /* "/silent" and the rest: no reply */
    int idx = atomic_fetch_add(&fx->n_jobs, 1);
    if (idx >= MAX_JOBS) return;
    writer_job *j = &fx->jobs[idx];
    j->kind = kind;
    j->n = query_int(req->query, "n", N_EVENTS);
    j->delay_ms = query_int(req->query, "d", kind == JOB_FOREVER ? 2 : 0);
    http_reply_header(reply, "Cache-Control", "no-cache");
    j->s = http_reply_stream(reply, 200, "text/event-stream");
    if (!j->s) return;
    http_stream_on_cancel(j->s, on_cancel, j);
    if (pthread_create(&j->tid, NULL, writer_main, j) != 0) {   /* the writer's duty falls to us */
        http_stream_close(j->s);
        j->s = NULL;
    }
}

static kvlm_err start(fixture *fx, const char *host, int port, char *err, size_t errlen)
{
    http_config cfg = { .host = host, .port = port, .max_body = MAX_BODY, .timeout_s = 10,
                        .stream_queue = STREAM_QUEUE };
    return http_server_start(&cfg, handler, fx, &fx->srv, err, errlen);
}

static void on_stall(void *user)
{
    fixture *fx = user;
    atomic_fetch_add(&fx->stalls, 1);
}

static int setup_with(void **state, int64_t stall_ms)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx) return -1;
    char err[256];
    http_config cfg = { .host = "127.0.0.1", .max_body = MAX_BODY, .timeout_s = 10, .stream_queue = STREAM_QUEUE,
                        .stream_stall_ms = stall_ms, .stall_fn = on_stall, .stall_user = fx };
    if (http_server_start(&cfg, handler, fx, &fx->srv, err, sizeof err) != KVLM_OK) {
        fprintf(stderr, "start: %s\n", err);
        free(fx);
        return -1;
    }
    fx->port = http_server_port(fx->srv);
    *state = fx;
    return 0;
}

static int setup(void **state) { return setup_with(state, 0); }
static int setup_stall(void **state) { return setup_with(state, STALL_MS); }

/* Stops the server (which cancels what still streams) and joins every writer. */
static int teardown(void **state)
{
    fixture *fx = *state;
    http_server_stop(fx->srv);
    int n = atomic_load(&fx->n_jobs);
    for (int i = 0; i < n && i < MAX_JOBS; i++)
        if (fx->jobs[i].s) pthread_join(fx->jobs[i].tid, NULL);
    free(fx);
    return 0;
}

static bool wait_for(atomic_int *v, int want, double seconds)
{
    double t_end = now_s() + seconds;
    while (atomic_load(v) < want) {
        if (now_s() > t_end) return false;
        sleep_ms(1);
    }
    return true;
}

/* ---- the cases ---------------------------------------------------------------------- */

static void test_get_and_post_echo(void **state)
{
    fixture *fx = *state;
    resp r;
    const char get[] = "GET /echo?a=1&b=two HTTP/1.1\r\nHost: x\r\nX-Test: hello\r\nConnection: close\r\n\r\n";
    cli_request(fx->port, get, strlen(get), &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "method=GET\npath=/echo\nquery=a=1&b=two\nx-test=hello\nbody_len=0\nbody="));
    char v[64];
    assert_string_equal(resp_header(&r, "X-Echo", v, sizeof v), "yes");
    assert_string_equal(resp_header(&r, "Content-Type", v, sizeof v), "text/plain");
    free(r.body);

    const char post[] = "POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world";
    cli_request(fx->port, post, strlen(post), &r);   /* unknown path: the handler gives no reply */
    assert_int_equal(r.status, 500);
    assert_non_null(strstr(r.body, "\"type\":\"server_error\""));
    free(r.body);

    const char post2[] = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world";
    cli_request(fx->port, post2, strlen(post2), &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "method=POST\npath=/echo\nquery=\nx-test=(none)\nbody_len=11\nbody=hello world"));
    free(r.body);

    /* keep-alive: two requests on one connection, sent back to back */
    const char two[] = "GET /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                       "POST /echo?n=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
    int fd = cli_connect(fx->port);
    cli_send_str(fd, two);
    size_t n;
    char *raw = cli_read_all(fd, &n);
    close(fd);
    resp_parse(raw, n, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "query=n=1\n"));
    resp r2;
    resp_parse(r.rest, n - (size_t)(r.rest - raw), &r2);
    assert_int_equal(r2.status, 200);
    assert_non_null(strstr(r2.body, "query=n=2\n"));
    assert_non_null(strstr(r2.body, "body=abc"));
    free(r.body);
    free(r2.body);
    free(raw);

    const char lim[] = "GET /limited HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";   /* 429 + Retry-After */
    cli_request(fx->port, lim, strlen(lim), &r);
    assert_int_equal(r.status, 429);
    assert_string_equal(resp_header(&r, "Retry-After", v, sizeof v), "7");
    assert_null(resp_header(&r, "Injected", v, sizeof v));
    assert_true(fx->bad_headers_refused);
    free(r.body);
}

static void test_body_limit(void **state)
{
    fixture *fx = *state;
    char *req = malloc(MAX_BODY + 256);
    assert_non_null(req);
    resp r;

    int hl = sprintf(req, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", MAX_BODY);
    memset(req + hl, 'a', MAX_BODY);
    cli_request(fx->port, req, (size_t)hl + MAX_BODY, &r);
    assert_int_equal(r.status, 200);
    char want[64];
    snprintf(want, sizeof want, "body_len=%d\n", MAX_BODY);
    assert_non_null(strstr(r.body, want));
    free(r.body);

    int calls = atomic_load(&fx->handler_calls);
    hl = sprintf(req, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", MAX_BODY + 1);
    memset(req + hl, 'a', MAX_BODY + 1);
    cli_request(fx->port, req, (size_t)hl + MAX_BODY + 1, &r);
    assert_int_equal(r.status, 413);
    assert_string_equal(r.body, "{\"error\":{\"message\":\"request body too large\","
                                "\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}");
    char v[64];
    assert_string_equal(resp_header(&r, "Content-Type", v, sizeof v), "application/json");
    free(r.body);

    /* a chunked body has no length up front: it is counted as it arrives */
    hl = sprintf(req, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                      "%x\r\n", MAX_BODY + 1);
    memset(req + hl, 'b', MAX_BODY + 1);
    hl += MAX_BODY + 1;
    hl += sprintf(req + hl, "\r\n0\r\n\r\n");
    cli_request(fx->port, req, (size_t)hl, &r);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(r.body, "request body too large"));
    free(r.body);
    assert_int_equal(atomic_load(&fx->handler_calls), calls);   /* the handler never saw them */
    free(req);
}

static void test_chunked_request_body(void **state)
{
    fixture *fx = *state;
    const char req[] = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                       "5\r\nhello\r\n6\r\n world\r\n1;ext=1\r\n!\r\n0\r\n\r\n";
    resp r;
    cli_request(fx->port, req, strlen(req), &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "body_len=12\nbody=hello world!"));
    free(r.body);
}

/* r is a complete event stream of n events: 200, chunked, terminated, and
 * "data: 0\n\n" ... "data: n-1\n\n" in order. */
static void assert_events(const resp *r, int n)
{
    assert_int_equal(r->status, 200);
    assert_true(r->chunked);
    assert_true(r->chunked_end);
    char *want = malloc((size_t)n * 16 + 1);
    assert_non_null(want);
    size_t len = 0;
    for (int i = 0; i < n; i++) len += (size_t)sprintf(want + len, "data: %d\n\n", i);
    assert_int_equal(r->body_len, len);
    assert_memory_equal(r->body, want, len);
    free(want);
}

static void get_stream(fixture *fx, int n, resp *r)
{
    char req[128];
    snprintf(req, sizeof req, "GET /stream?n=%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", n);
    cli_request(fx->port, req, strlen(req), r);
}

static void test_stream_events_in_order(void **state)
{
    fixture *fx = *state;
    resp r;
    get_stream(fx, N_EVENTS, &r);
    assert_events(&r, N_EVENTS);
    char v[64];
    assert_string_equal(resp_header(&r, "Content-Type", v, sizeof v), "text/event-stream");
    assert_string_equal(resp_header(&r, "Cache-Control", v, sizeof v), "no-cache");
    free(r.body);
    assert_int_equal(atomic_load(&fx->n_jobs), 1);
    pthread_join(fx->jobs[0].tid, NULL);
    fx->jobs[0].s = NULL;
    assert_int_equal(fx->jobs[0].written, N_EVENTS);
    assert_false(fx->jobs[0].write_false);
    assert_int_equal(atomic_load(&fx->jobs[0].cancel_calls), 0);   /* closed normally */
}

/* ~1.4 MB through the fixture's 4 KiB queue: the writer outruns the connection
 * and blocks again and again until the reader drains; every byte arrives in order. */
static void test_stream_larger_than_queue(void **state)
{
    fixture *fx = *state;
    resp r;
    get_stream(fx, 150000, &r);
    assert_events(&r, 150000);
    free(r.body);
}

/* Hang up mid-stream: the writer learns of it through write (a busy writer) or
 * http_stream_cancelled (an idle one), and the cancel callback runs, within 1 s. */
static void check_disconnect(fixture *fx, const char *path, bool wait_first_event)
{
    int before = atomic_load(&fx->n_jobs);
    int fd = cli_connect(fx->port);
    char req[128];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    cli_send_str(fd, req);
    char buf[4096];
    if (wait_first_event) assert_true(cli_read_until(fd, buf, sizeof buf, "data: 3\n\n"));
    else assert_true(cli_read_until(fd, buf, sizeof buf, "\r\n\r\n"));
    writer_job *j = &fx->jobs[before];
    double t0 = now_s();
    close(fd);
    assert_true(wait_for(&j->cancel_calls, 1, 2.0));
    pthread_join(j->tid, NULL);
    j->s = NULL;
    assert_true(j->write_false);
    assert_true(j->false_time - t0 < 1.0);
    assert_true(j->cancel_time - t0 < 1.0);
    assert_int_equal(atomic_load(&j->cancel_calls), 1);
}

static void test_client_disconnect_cancels(void **state)
{
    fixture *fx = *state;
    check_disconnect(fx, "/forever", true);
    check_disconnect(fx, "/idle", false);
}

/* HEAD never reads the body: the stream is cancelled when the request ends. */
static void test_head_cancels_stream(void **state)
{
    fixture *fx = *state;
    const char req[] = "HEAD /forever HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    resp r;
    cli_request(fx->port, req, strlen(req), &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    free(r.body);
    writer_job *j = &fx->jobs[0];
    assert_true(wait_for(&j->cancel_calls, 1, 2.0));
    pthread_join(j->tid, NULL);
    j->s = NULL;
    assert_true(j->write_false);
}

/* n connections, each sending GET /stream?n=events&d=delay_ms&c=i */
static void open_streams(const fixture *fx, int *fds, int n, int events, int delay_ms)
{
    for (int i = 0; i < n; i++) {
        fds[i] = cli_connect(fx->port);
        char req[160];
        snprintf(req, sizeof req, "GET /stream?n=%d&d=%d&c=%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                 events, delay_ms, i);
        cli_send_str(fds[i], req);
    }
}

/* Reads each connection to its end (and closes it): every one got all events and the terminator. */
static void read_streams(int *fds, int n, int events)
{
    for (int i = 0; i < n; i++) {
        size_t len;
        char *raw = cli_read_all(fds[i], &len);
        close(fds[i]);
        resp r;
        resp_parse(raw, len, &r);
        assert_events(&r, events);
        free(r.body);
        free(raw);
    }
}

static void test_concurrent_streams(void **state)
{
    fixture *fx = *state;
    int fds[N_CONCURRENT];
    open_streams(fx, fds, N_CONCURRENT, 50, 1);
    read_streams(fds, N_CONCURRENT, 50);
    assert_int_equal(atomic_load(&fx->n_jobs), N_CONCURRENT);
}

/* Stop with streams open: every writer sees cancellation, stop returns promptly,
 * the clients see their connections end without the chunked terminator. */
static void test_stop_with_open_streams(void **state)
{
    fixture *fx = *state;
    enum { N_BUSY = 4, N_IDLE = 2 };
    int fds[N_BUSY + N_IDLE];
    char buf[4096];
    for (int i = 0; i < N_BUSY + N_IDLE; i++) {
        fds[i] = cli_connect(fx->port);
        cli_send_str(fds[i], i < N_BUSY ? "GET /forever HTTP/1.1\r\nHost: x\r\n\r\n"
                                        : "GET /idle HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_true(cli_read_until(fds[i], buf, sizeof buf, i < N_BUSY ? "data: 0\n\n" : "\r\n\r\n"));
    }
    double t0 = now_s();
    http_server_stop(fx->srv);
    fx->srv = NULL;
    assert_true(now_s() - t0 < 2.0);
    for (int i = 0; i < N_BUSY + N_IDLE; i++) {
        writer_job *j = &fx->jobs[i];
        pthread_join(j->tid, NULL);   /* writers end by themselves: they saw the cancellation */
        j->s = NULL;
        assert_true(j->write_false);
        assert_int_equal(atomic_load(&j->cancel_calls), 1);
    }
    for (int i = 0; i < N_BUSY + N_IDLE; i++) {
        size_t n;
        char *raw = cli_read_all(fds[i], &n);   /* returns: the server closed the connection */
        assert_null(strstr(raw, "\r\n0\r\n\r\n"));
        free(raw);
        close(fds[i]);
    }
}

/* Stop right after the writers closed their streams, each with up to a queue of
 * bytes not yet sent: every client still gets all events and the chunked
 * terminator (as kvlm serve's last error event and [DONE] at shutdown must
 * reach its client). Stop cancels only streams whose writer is still on. */
static void test_stop_after_close_delivers_all(void **state)
{
    fixture *fx = *state;
    enum { N = 8, EVENTS = 2000 };   /* ~22 KB each: past the 4 KB queue, within the socket buffers */
    int fds[N];
    open_streams(fx, fds, N, EVENTS, 0);
    assert_true(wait_for(&fx->n_jobs, N, 10.0));
    /* no sleep between looks: stop must come while the last bytes are still queued */
    double t0 = now_s();
    for (int i = 0; i < N; i++)
        while (!atomic_load(&fx->jobs[i].closed)) assert_true(now_s() - t0 < 10.0);
    t0 = now_s();
    http_server_stop(fx->srv);
    fx->srv = NULL;
    assert_true(now_s() - t0 < 2.0);
    read_streams(fds, N, EVENTS);
    for (int i = 0; i < N; i++) assert_int_equal(atomic_load(&fx->jobs[i].cancel_calls), 0);
}

/* ~1.4 MB pushed at once into the 4 KiB queue: no push blocks (the writer is done
 * long before the client has it all), the queue says it is full, and every byte
 * still arrives in order. */
static void test_push_past_queue(void **state)
{
    fixture *fx = *state;
    enum { EVENTS = 150000 };
    int fd = cli_connect(fx->port);
    char req[128];
    snprintf(req, sizeof req, "GET /push?n=%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", EVENTS);
    cli_send_str(fd, req);
    assert_true(wait_for(&fx->n_jobs, 1, 10.0));
    writer_job *j = &fx->jobs[0];
    assert_true(wait_for(&j->closed, 1, 10.0));   /* without a byte read */
    assert_int_equal(j->written, EVENTS);
    assert_true(j->saw_full);
    size_t n;
    char *raw = cli_read_all(fd, &n);
    close(fd);
    resp r;
    resp_parse(raw, n, &r);
    assert_events(&r, EVENTS);
    free(r.body);
    free(raw);
}

/* A client with a small receive buffer that reads nothing. */
static int cli_connect_deaf(int port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    int rcv = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);   /* before connect: the window */
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[128];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    cli_send_str(fd, req);
    return fd;
}

/* The client's end of a connection the server reset: reading what arrived ends
 * in an error or end-of-file within a second, and never in the chunked terminator. */
static void assert_cut_off(int fd)
{
    struct timeval tv = { .tv_sec = 1 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[65536], tail[8] = "";
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET)) break;
        assert_true(r > 0);   /* a time-out (EAGAIN) means the connection is still open */
        size_t k = (size_t)r < sizeof tail - 1 ? (size_t)r : sizeof tail - 1;
        memcpy(tail, buf + r - (ssize_t)k, k);
        tail[k] = '\0';
    }
    assert_null(strstr(tail, "0\r\n\r\n"));
    close(fd);
}

static void *read_one(void *arg)
{
    read_streams(arg, 1, 1500);
    return NULL;
}

/* With a stall time of STALL_MS: a client that reads nothing is cut off while its
 * writer waits on the full queue (paced), and so is one whose writer has pushed
 * all and closed (its bytes stuck in the buffers); each is counted once. Meanwhile
 * an idle stream (nothing queued, for 5x the stall time) stays, and a client that
 * reads gets every event. */
static void test_stall_cuts_off(void **state)
{
    fixture *fx = *state;
    int paced = cli_connect_deaf(fx->port, "/paced");
    assert_true(wait_for(&fx->n_jobs, 1, 10.0));
    int pushed = cli_connect_deaf(fx->port, "/push?n=200000");   /* ~2.2 MB: past any socket buffer */
    assert_true(wait_for(&fx->n_jobs, 2, 10.0));
    int idle = cli_connect(fx->port);
    cli_send_str(idle, "GET /idle HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(wait_for(&fx->n_jobs, 3, 10.0));
    int reader = cli_connect(fx->port);
    cli_send_str(reader, "GET /stream?n=1500&d=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    pthread_t rt;
    assert_int_equal(pthread_create(&rt, NULL, read_one, &reader), 0);   /* reads all, at once */
    const double t0 = now_s();
    writer_job *jp = &fx->jobs[0], *jq = &fx->jobs[1], *ji = &fx->jobs[2];
    assert_true(wait_for(&jp->cancel_calls, 1, 10.0));
    assert_true(wait_for(&jq->closed, 1, 10.0));
    assert_true(wait_for(&fx->stalls, 2, 10.0));
    pthread_join(jp->tid, NULL);
    jp->s = NULL;
    assert_true(jp->saw_full);
    assert_true(jp->write_false);
    /* no progress since the queue filled: cut off a stall time later, plus the watchdog's tick */
    assert_true(jp->cancel_time - jp->full_time >= 0.9 * STALL_MS / 1000);
    assert_true(jp->cancel_time - jp->full_time < STALL_MS / 1000.0 + 2.0);
    assert_int_equal(jq->written, 200000);
    assert_cut_off(paced);
    assert_cut_off(pushed);
    pthread_join(rt, NULL);
    while (now_s() - t0 < 5.0 * STALL_MS / 1000) sleep_ms(10);
    assert_int_equal(atomic_load(&ji->cancel_calls), 0);   /* idle is not stalled */
    assert_int_equal(atomic_load(&fx->stalls), 2);
    close(idle);
    assert_true(wait_for(&ji->cancel_calls, 1, 2.0));      /* a hang-up, as always */
    assert_int_equal(atomic_load(&fx->stalls), 2);
}

static void test_port_in_use(void **state)
{
    fixture *fx = *state;
    fixture other;
    memset(&other, 0, sizeof other);
    other.srv = (http_server *)1;
    char err[256] = "";
    assert_int_equal(start(&other, "127.0.0.1", fx->port, err, sizeof err), KVLM_ERR_IO);
    assert_null(other.srv);
    assert_non_null(strstr(err, "address in use"));

    http_config bad = { .port = 70000 };
    http_server *srv = (http_server *)1;
    assert_int_equal(http_server_start(&bad, handler, fx, &srv, err, sizeof err), KVLM_ERR_INVALID);
    assert_null(srv);
    http_server_stop(NULL);

    /* the first server still serves */
    const char get[] = "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    resp r;
    cli_request(fx->port, get, strlen(get), &r);
    assert_int_equal(r.status, 200);
    free(r.body);
}

static void test_malformed_request(void **state)
{
    fixture *fx = *state;
    static const struct { const char *req; int status; } bad[] = {
        { "GET /echo FOO/1.1\r\nHost: x\r\n\r\n", 400 },                       /* bad version */
        { "GET /echo HTTP/1.1\r\nHost: x\r\nthis line has no colon\r\n\r\n", 400 },
        { "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: banana\r\n\r\n", 400 },
        /* a request line without spaces: MHD 0.9.75 closes without a reply, later ones say 400 */
        { "GARBAGE\r\n\r\n", -1 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        resp r;
        cli_request(fx->port, bad[i].req, strlen(bad[i].req), &r);
        if (bad[i].status < 0) assert_true(r.status == -1 || r.status == 400);
        else assert_int_equal(r.status, bad[i].status);
        free(r.body);
    }
    assert_int_equal(atomic_load(&fx->handler_calls), 0);
    const char get[] = "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";   /* still serving */
    resp r;
    cli_request(fx->port, get, strlen(get), &r);
    assert_int_equal(r.status, 200);
    free(r.body);
}

static void custom_error(void *user, int status, const char *message, http_reply *reply)
{
    char body[128];
    int n = snprintf(body, sizeof body, "custom %d %s", status, message);
    http_reply_header(reply, "X-Error", "1");
    http_reply_send(reply, status, "text/plain", body, (size_t)n);
}

static void test_custom_error_and_ipv6(void **state)
{
    fixture *fx = *state;
    fixture other;
    memset(&other, 0, sizeof other);
    http_config cfg = { .host = "::", .max_body = 10, .error_fn = custom_error };
    char err[256];
    kvlm_err e = http_server_start(&cfg, handler, &other, &other.srv, err, sizeof err);
    if (e != KVLM_OK) {   /* a machine without IPv6: the rest still holds on IPv4 */
        cfg.host = "127.0.0.1";
        assert_int_equal(http_server_start(&cfg, handler, &other, &other.srv, err, sizeof err), KVLM_OK);
    }
    int port = http_server_port(other.srv);
    assert_true(port > 0 && port != fx->port);
    const char req[] = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world";
    resp r;
    cli_request(port, req, strlen(req), &r);   /* "::" is dual-stack: IPv4 reaches it too */
    assert_int_equal(r.status, 413);
    assert_string_equal(r.body, "custom 413 request body too large");
    char v[16];
    assert_string_equal(resp_header(&r, "X-Error", v, sizeof v), "1");
    free(r.body);
    int fd6 = e == KVLM_OK ? cli_connect_to(AF_INET6, "::1", port) : -1;
    if (fd6 >= 0) {
        cli_send_str(fd6, "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        size_t n;
        char *raw = cli_read_all(fd6, &n);
        close(fd6);
        resp_parse(raw, n, &r);
        assert_int_equal(r.status, 200);
        free(r.body);
        free(raw);
    }
    http_server_stop(other.srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_and_post_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_request_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_events_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_larger_than_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_disconnect_cancels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_cancels_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_with_open_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_after_close_delivers_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_past_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stall_cuts_off, setup_stall, teardown),
        cmocka_unit_test_setup_teardown(test_port_in_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_custom_error_and_ipv6, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
