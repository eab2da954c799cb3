/* http.h - the HTTP transport of `kvlm serve`: libmicrohttpd underneath, one
 * handler above, and streamed responses written from any thread.
 * Room: server. May touch: core (errors), libmicrohttpd, pthreads, sockets.
 * Knows nothing of models, JSON APIs or routes: it delivers whole requests
 * (method, path, query, headers, body) and sends what the handler answers.
 * Nothing here prints (MHD's own messages go to cfg->log_fn when one is given).
 *
 * Threads. One thread per connection (MHD_USE_THREAD_PER_CONNECTION), chosen
 * over a polling pool because
 *   - a handler may block (a non-streaming completion waits for the whole
 *     generation); with a pool of N threads, N such requests would stall every
 *     other connection, health checks included;
 *   - a stream's reader can sleep on a condition variable inside MHD's content
 *     callback (no busy-spin, no suspend/resume bookkeeping) and still notice a
 *     client hang-up within 100 ms (STREAM_POLL_MS in http.c); a suspended MHD
 *     connection notices no disconnect at all, and prompt disconnects are what
 *     let the scheduler free a sequence's KV blocks early;
 *   - LLM serving has few, long connections (bounded by KV memory, not by the
 *     network): a thread each costs little next to the seconds a generation takes.
 * max_connections bounds the thread count.
 *
 * Life of a request:
 *   connection thread: headers -> body (<= max_body, else 413 and no handler call)
 *     -> fn(user, req, reply) -> http_reply_send(...)         whole response, done
 *                             -> http_reply_stream(...) -> s  chunked response
 *   any thread (the writer):  http_stream_write(s, ...)* ; http_stream_close(s)
 *   connection thread:        sends queued bytes as they arrive, ends the chunked
 *                             body after close, or cancels s on a hang-up
 *
 * A client that stops reading (socket open, nothing read): with stream_stall_ms,
 * a watchdog thread cuts it off once it has taken nothing for that long while
 * bytes wait for it, queued or in MHD's and the kernel's buffers (an idle stream,
 * nothing to send yet, never counts): its stream is cancelled as on a hang-up and
 * its connection reset. A writer that must not block (one thread serving many
 * streams) pushes instead of writing and stops producing while the stream is full.
 *
 * Stream ownership: a stream has two owners, the writer (from http_reply_stream
 * until http_stream_close) and the connection (until the request ends). The
 * last one to let go frees it, so the writer's pointer stays valid until it
 * calls close, whatever the client or http_server_stop did meanwhile.
 */
#ifndef KVLM_SERVER_HTTP_H
#define KVLM_SERVER_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"

typedef struct http_server http_server;
typedef struct http_reply http_reply;
typedef struct http_stream http_stream;
typedef struct http_req_impl http_req_impl;

/* A complete request, valid only during the handler call (copy what you keep). */
typedef struct http_request {
    const char *method;   /* "GET", "POST", ... as sent */
    const char *path;     /* the request target before '?', as sent (not percent-decoded) */
    const char *query;    /* what follows '?', as sent; "" when there is none */
    const char *body;     /* body_len bytes (chunked bodies arrive de-chunked), then a NUL
                           * not counted in body_len; "" when there is no body */
    size_t body_len;
    http_req_impl *impl;  /* private */
} http_request;

/* Runs on the connection's thread, once per request. It must answer through
 * exactly one of http_reply_send / http_reply_stream (otherwise the client gets
 * a 500). It may block (see Threads above); http_server_stop waits for it. */
typedef void (*http_handler_fn)(void *user, const http_request *req, http_reply *reply);

/* Builds the transport's own error replies (413 body too large, 500 no reply)
 * so they match the API's error format: call http_reply_send (and optionally
 * http_reply_header) on reply. message is a constant English phrase such as
 * "request body too large". Runs on a connection thread. */
typedef void (*http_error_fn)(void *user, int status, const char *message, http_reply *reply);

/* Receives libmicrohttpd's diagnostics (one line, no newline), from any thread. */
typedef void (*http_log_fn)(void *user, const char *msg);

/* Called at most once, when the stream is cancelled (client gone or stalled,
 * server stopping) before the writer closed it. See http_stream_on_cancel. */
typedef void (*http_cancel_fn)(void *user);

/* Zero means "the default" for every numeric field. */
typedef struct http_config {
    const char *host;        /* numeric address or name to listen on: "127.0.0.1" (NULL),
                              * "0.0.0.0", "::1", "::" (IPv6 and, dual-stack, IPv4) */
    int port;                /* 0 = an ephemeral port: see http_server_port */
    size_t max_body;         /* request body limit in bytes (default 8 MiB); a larger
                              * body gets 413 and is never buffered */
    size_t max_connections;  /* open connections = threads (default 256) */
    int timeout_s;           /* a connection with no traffic this long is closed
                              * (default 60); not applied while a handler runs or a
                              * stream waits for its writer */
    size_t stream_queue;     /* bytes a stream buffers before writers block and
                              * http_stream_full says so (default 1 MiB) */
    size_t stream_sndbuf;    /* SO_SNDBUF of a streaming connection (default 64 KiB; the kernel
                              * doubles it): with stream_queue, what a client that stops
                              * reading can hold up */
    int64_t stream_stall_ms; /* a client that takes no byte of its stream this long while
                              * bytes wait for it is cut off (0: never) */
    void (*stall_fn)(void *user);   /* optional: called (watchdog thread, no lock held) once
                                     * per stream cut off so, just before it is (so before
                                     * its cancel callback and the client's reset) */
    void *stall_user;
    http_error_fn error_fn;  /* optional; NULL: a minimal OpenAI-style JSON error */
    void *error_user;
    /* optional: the body limit of one request (0: max_body), e.g. a larger one for
     * uploads; called with the handler's user on the connection thread, headers read */
    size_t (*body_limit_fn)(void *user, const char *method, const char *path);
    http_log_fn log_fn;      /* optional; NULL: MHD's messages are dropped */
    void *log_user;
} http_config;

/* Binds, listens and starts serving; fn(user, ...) handles every request.
 * KVLM_ERR_IO when the address cannot be bound ("address in use" when the port
 * is taken), KVLM_ERR_INVALID for a bad config, KVLM_ERR_NOMEM. *out is NULL on
 * failure. cfg is copied. */
kvlm_err http_server_start(const http_config *cfg, http_handler_fn fn, void *user,
                           http_server **out, char *err, size_t errlen);

/* The bound port (the ephemeral one when cfg->port was 0). */
int http_server_port(const http_server *srv);

/* Graceful stop: stops accepting, lets the streams their writers have closed
 * send what they hold (for up to 2 s: a last event and the end of the body
 * reach the client), cancels every other open stream (writers see
 * http_stream_write return false, cancel callbacks run), closes connections,
 * waits for handlers still running, and frees the server. Streams not yet
 * closed by their writers stay valid until they are. NULL is fine.
 * Not async-signal-safe: a signal handler only sets a flag (volatile
 * sig_atomic_t) and the main loop calls this once it sees the flag. Must not be
 * called from a handler or a cancel callback (it waits for them). A handler
 * that waits for the engine needs the engine running until this returns. */
void http_server_stop(http_server *srv);

/* ---- in the handler (connection thread only, before the handler returns) ---- */

/* A request header (case-insensitive name), or NULL. Valid during the call. */
const char *http_request_header(const http_request *req, const char *name);

/* The request's libmicrohttpd connection, for MHD_create_post_processor (which
 * reads the Content-Type from it). Valid during the handler call. */
struct MHD_Connection;
struct MHD_Connection *http_request_mhd(const http_request *req);

/* true when the client has closed its side of the connection (or it broke): a
 * handler that waits long for a whole answer polls this to stop working for no
 * one. A client that half-closes after sending its request counts as gone. */
bool http_request_peer_gone(const http_request *req);

/* Adds a response header (e.g. Retry-After, WWW-Authenticate) to the reply sent
 * next; name and value are copied. false if name or value holds CR/LF (or name
 * ':' or blanks), for Content-Length and Transfer-Encoding (the framing is the
 * module's), after the reply was given, or out of memory. */
bool http_reply_header(http_reply *reply, const char *name, const char *value);

/* Answers with status and a copy of body[0..len) (content_type may be NULL).
 * false if a reply was already given, status is outside 100..599, or out of
 * memory (the client then gets a 500). */
bool http_reply_send(http_reply *reply, int status, const char *content_type,
                     const void *body, size_t len);

/* Answers with status and a chunked body written later through the returned
 * stream, from any thread; the writer owns one reference until http_stream_close.
 * NULL under the same conditions as http_reply_send. If the server is stopping,
 * the stream comes back already cancelled (the writer just closes it). */
http_stream *http_reply_stream(http_reply *reply, int status, const char *content_type);

/* ---- the writer's side (any one thread at a time per stream, except where noted) ---- */

/* Queues a copy of data[0..len) for the client and wakes its connection. Blocks
 * while the queue holds stream_queue bytes, until the client drains it or the
 * stream is cancelled. false once the stream is cancelled (the client hung up,
 * the server is stopping, or a queue allocation failed): stop producing and call
 * http_stream_close. len 0 only reports that. Not after http_stream_close. */
bool http_stream_write(http_stream *s, const void *data, size_t len);

/* As http_stream_write, but never blocks: the whole copy is queued even past
 * stream_queue bytes. The writer keeps the queue bounded: it stops producing
 * while http_stream_full, so the queue holds at most stream_queue plus what it
 * pushed after its last look. */
bool http_stream_push(http_stream *s, const void *data, size_t len);

/* true while stream_queue bytes or more wait in the queue (the client is not
 * keeping up). Any thread. */
bool http_stream_full(http_stream *s);

/* true once the stream is cancelled; cheap (one atomic load), for polling
 * between engine steps. Any thread. */
bool http_stream_cancelled(const http_stream *s);

/* Registers fn(user) to run once if the stream gets cancelled, so the scheduler
 * can free the sequence's KV blocks at once instead of at its next poll. It runs
 * on an HTTP connection thread (or on the thread calling http_server_stop) and
 * must be quick and must not block on the writer; it may call
 * http_stream_cancelled, and (when it is the writer) http_stream_close. If the
 * stream is already cancelled, fn runs now, on the caller's thread. A later call
 * replaces an earlier one; after http_stream_close, fn is never called, and close
 * waits for an fn already running on another thread, so user may be freed once
 * close returns. */
void http_stream_on_cancel(http_stream *s, http_cancel_fn fn, void *user);

/* Ends the response (the client sees the end of the chunked body after the
 * queued bytes, unless it was cancelled) and drops the writer's reference:
 * s must not be used afterwards. */
void http_stream_close(http_stream *s);

#endif
