/* upload_conn.h - real MHD connections for the upload parser (src/server/api_audio.c)
 * without a port, for tests/server/test_api_audio.c and fuzz/fuzz_upload.c.
 * Test support only: never linked into the library.
 *
 * MHD_create_post_processor needs a connection to read the Content-Type from, so:
 *
 *   test thread                         MHD's polling thread (daemon with no listening socket)
 *   -----------                         ---------------------------------------------------
 *   socketpair(a, b); MHD_add_connection(b)
 *   write(a, "POST / ... Content-Type: CT, Content-Length: 0")
 *                                        access handler: api_audio_parse(conn, body...) with
 *                                        the body held in memory (uc->body), result into uc
 *   read(a, response) <------------------ an empty 200
 *
 * The connection is kept alive between requests; if MHD closes it (a Content-Type
 * it refuses), the next call makes a new one. Each request parses the body twice,
 * whole and fed in pieces of uc->chunk bytes (0: whole only), so callers can check
 * that splitting changes nothing. Header-only (static functions) so that the
 * single-file fuzz target can include it. */
#ifndef KVLM_TESTS_UPLOAD_CONN_H
#define KVLM_TESTS_UPLOAD_CONN_H

#include <microhttpd.h>

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/api_audio.h"

typedef struct upload_result {
    kvlm_err rc;
    api_error err;
    api_audio_req req;
} upload_result;

typedef struct upload_conn {
    struct MHD_Daemon *d;
    int fd;                      /* our end of the socketpair; -1: none */
    pthread_mutex_t mu;
    /* the request being run (set before the write, read after the response) */
    const char *body;
    size_t len, chunk;
    api_audio_limits lim;
    bool ran;
    upload_result whole, split;  /* split: only when chunk > 0 */
} upload_conn;

static void upload_run_split(upload_conn *uc, struct MHD_Connection *conn, upload_result *r)
{
    memset(r, 0, sizeof *r);
    api_audio_parser *p;
    r->rc = api_audio_parser_init(conn, &uc->lim, &p, &r->err);
    if (r->rc) return;
    for (size_t off = 0; off < uc->len && !r->rc; off += uc->chunk) {
        size_t n = uc->len - off < uc->chunk ? uc->len - off : uc->chunk;
        r->rc = api_audio_parser_feed(p, uc->body + off, n, &r->err);
    }
    if (!r->rc) r->rc = api_audio_parser_finish(p, &r->req, &r->err);
    api_audio_parser_free(p);
}

static enum MHD_Result upload_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                         const char *method, const char *version, const char *data,
                                         size_t *data_size, void **con_cls)
{
    (void)url; (void)method; (void)version; (void)data;
    static int started;
    upload_conn *uc = cls;
    if (!*con_cls) {                 /* headers only */
        *con_cls = &started;
        return MHD_YES;
    }
    *data_size = 0;                  /* Content-Length: 0: nothing comes */
    pthread_mutex_lock(&uc->mu);
    uc->whole.rc = api_audio_parse(conn, uc->body, uc->len, &uc->lim, &uc->whole.req, &uc->whole.err);
    if (uc->chunk) upload_run_split(uc, conn, &uc->split);
    uc->ran = true;
    pthread_mutex_unlock(&uc->mu);
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ok = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ok;
}

static int upload_connect(upload_conn *uc)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return -1;
    struct sockaddr_storage addr = { .ss_family = AF_UNIX };
    if (MHD_add_connection(uc->d, sv[1], (struct sockaddr *)&addr, sizeof(sa_family_t)) != MHD_YES) {
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    uc->fd = sv[0];
    return 0;
}

static int upload_conn_init(upload_conn *uc)
{
    memset(uc, 0, sizeof *uc);
    uc->fd = -1;
    pthread_mutex_init(&uc->mu, NULL);
    uc->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC, 0, NULL,
                             NULL, upload_on_request, uc, MHD_OPTION_END);
    return uc->d ? 0 : -1;
}

static void upload_result_free(upload_result *r) { api_audio_req_free(&r->req); }

static void upload_conn_free(upload_conn *uc)
{
    if (uc->fd >= 0) close(uc->fd);
    if (uc->d) MHD_stop_daemon(uc->d);
    upload_result_free(&uc->whole);
    upload_result_free(&uc->split);
    pthread_mutex_destroy(&uc->mu);
}

/* Parses body[0..len) sent with Content-Type ct (bytes below 0x20 and 0x7F become
 * 'x': a header cannot hold them). 0 when the parser ran (results in uc->whole and,
 * with chunk > 0, uc->split; freed by the next call), -1 when MHD refused the
 * request itself (the parser never saw it) or the connection broke. */
static int upload_conn_parse(upload_conn *uc, const char *ct, const char *body, size_t len, size_t chunk)
{
    upload_result_free(&uc->whole);
    upload_result_free(&uc->split);
    memset(&uc->whole, 0, sizeof uc->whole);
    memset(&uc->split, 0, sizeof uc->split);
    if (uc->fd < 0 && upload_connect(uc)) return -1;
    size_t nct = strlen(ct), cap = nct + 128;
    char *rq = malloc(cap);
    if (!rq) return -1;
    int n = snprintf(rq, cap, "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: t\r\nContent-Type: ");
    for (size_t i = 0; i < nct; i++) rq[n++] = (unsigned char)ct[i] < 0x20 || ct[i] == 0x7F ? 'x' : ct[i];
    n += snprintf(rq + n, cap - (size_t)n, "\r\nContent-Length: 0\r\n\r\n");
    pthread_mutex_lock(&uc->mu);
    uc->body = body;
    uc->len = len;
    uc->chunk = chunk;
    uc->ran = false;
    pthread_mutex_unlock(&uc->mu);
    bool ok = send(uc->fd, rq, (size_t)n, MSG_NOSIGNAL) == n;
    free(rq);
    /* the response: headers up to the blank line (its body is empty) */
    char buf[4096];
    size_t got = 0;
    while (ok) {
        struct pollfd pf = { .fd = uc->fd, .events = POLLIN };
        if (poll(&pf, 1, 20000) != 1) { ok = false; break; }
        ssize_t k = recv(uc->fd, buf + got, sizeof buf - 1 - got, 0);
        if (k <= 0) { ok = false; break; }
        got += (size_t)k;
        buf[got] = '\0';
        if (strstr(buf, "\r\n\r\n")) break;
        if (got == sizeof buf - 1) { ok = false; break; }
    }
    pthread_mutex_lock(&uc->mu);
    const bool ran = uc->ran;
    pthread_mutex_unlock(&uc->mu);
    if (!ok || !ran || strncmp(buf, "HTTP/1.1 200", 12)) {   /* MHD answered (400) or hung up: reconnect */
        close(uc->fd);
        uc->fd = -1;
    }
    return ran ? 0 : -1;
}

#endif
