/* kv_tier_redis.c - the Redis tier's blob store (the design is in kv_tier_redis.h).
 * Room: kv. May touch: core (errors), hiredis (blocking contexts with timeouts),
 * xxhash (placement), libc and POSIX (the calling thread's signal mask, for SIGPIPE).
 * Knows nothing of the pool or the model.
 *
 * Per node:
 *
 *   node[i] = { url, id, ctx (NULL: not connected), fails (failures in a row),
 *               open_until (CLOCK_MONOTONIC ns; breaker open while now < it) }
 *
 * A call on node i: breaker open -> fail at once (skipped). No ctx -> connect, AUTH,
 * SELECT (one attempt: this is the probe after a back-off). Then one command. A
 * connection-level failure (ctx->err set, or the connect steps failing) frees ctx and
 * opens the breaker for min(backoff_min << (fails - 1), backoff_max); a successful
 * connect resets fails. An error reply or a reply of the wrong type fails only that
 * call (the stream is still in sync).
 *
 * Invariants: ctx != NULL implies the node is authenticated and on its db, and
 * ctx->err == 0. */
#include "kv/kv_tier_redis.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <xxhash.h>

#include "core/err.h"

#define DEFAULT_PREFIX "kvlm:blk:"
enum { PREFIX_MAX = 64, KEY_MAX = PREFIX_MAX + 17, NAME_MAX_ = KV_REDIS_HOST_MAX + KV_REDIS_PATH_MAX + 32 };

typedef struct node {
    kv_redis_url  url;
    char          name[NAME_MAX_];
    uint64_t      id;
    redisContext *ctx;
    int64_t       fails;
    int64_t       open_until;
} node;

struct kv_redis {
    node          *nodes;      /* [n_node] */
    uint64_t      *ids;        /* [n_node], for kv_redis_pick */
    size_t         n_node;
    kv_redis_opts  o;
    char           prefix[PREFIX_MAX + 1];
    kv_redis_stats st;
};

/* ---- URL parsing -------------------------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into out[0..cap). False on a bad escape, a NUL or overflow. */
static bool pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n) return false;
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            if (h < 0 || l < 0 || (h == 0 && l == 0)) return false;
            c = (char)(h * 16 + l);
            i += 2;
        }
        if (o + 1 >= cap) return false;
        out[o++] = c;
    }
    out[o] = 0;
    return true;
}

/* A decimal integer in [lo, hi] spanning all of s[0..n). */
static bool parse_int(const char *s, size_t n, long lo, long hi, int *out)
{
    if (n == 0 || n > 10) return false;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi) return false;
    *out = (int)v;
    return true;
}

/* Userinfo "user:password" or ":password" (s[0..n)) into u. */
static kvlm_err parse_userinfo(const char *s, size_t n, kv_redis_url *u, const char *url,
                               char *err, size_t errlen)
{
    const char *colon = memchr(s, ':', n);
    if (!colon)
        return err_set(err, errlen, KVLM_ERR_INVALID,
                       "redis URL %s: a user needs a password (user:password@, or :password@)", url);
    size_t nu = (size_t)(colon - s), np = n - nu - 1;
    if (!pct_decode(s, nu, u->user, sizeof u->user) ||
        !pct_decode(colon + 1, np, u->password, sizeof u->password))
        return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL: bad or too long user/password encoding");
    if (np == 0)
        return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL %s: empty password", url);
    u->has_password = true;
    return KVLM_OK;
}

static bool has_bad_char(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f) return true;
    return false;
}

kvlm_err kv_redis_parse_url(const char *url, kv_redis_url *out, char *err, size_t errlen)
{
    kv_redis_url u;
    memset(&u, 0, sizeof u);
    if (!url || !*url) return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL: empty");
    /* the message quotes the URL only up to its userinfo, never a password */
    if (has_bad_char(url)) return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL: contains a space or control character");
    if (strncmp(url, "rediss://", 9) == 0)
        return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "redis URL: rediss:// needs TLS: TLS not supported (hiredis 0.14 is built without it)");

    bool is_unix = strncmp(url, "unix://", 7) == 0;
    if (!is_unix && strncmp(url, "redis://", 8) != 0)
        return err_set(err, errlen, KVLM_ERR_INVALID,
                       "redis URL: unknown scheme (want redis://host[:port][/db] or unix:///path.sock)");
    const char *p = url + (is_unix ? 7 : 8);
    const char *scheme = is_unix ? "unix://" : "redis://";

    /* userinfo: up to the last '@' before the path (a password may hold '@' if encoded) */
    const char *end = p + strlen(p);
    const char *auth_end = NULL;
    for (const char *q = p; q < end && *q != '/' ; q++)
        if (*q == '@') auth_end = q;
    if (auth_end) {
        kvlm_err rc = parse_userinfo(p, (size_t)(auth_end - p), &u, scheme, err, errlen);
        if (rc != KVLM_OK) return rc;
        p = auth_end + 1;
    }

    if (is_unix) {
        u.kind = KV_REDIS_UNIX;
        if (*p != '/') return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL: unix:// wants an absolute path (unix:///path.sock)");
        const char *q = strchr(p, '?');
        size_t np = q ? (size_t)(q - p) : strlen(p);
        if (np < 2 || p[np - 1] == '/') return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL: unix:// wants a socket file path");
        if (np >= sizeof u.path) return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL: unix socket path longer than %d bytes", (int)sizeof u.path - 1);
        memcpy(u.path, p, np);
        u.path[np] = 0;
        if (q) {
            q++;
            if (strncmp(q, "db=", 3) != 0 || !parse_int(q + 3, strlen(q + 3), 0, INT32_MAX, &u.db))
                return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL: unix:// takes only ?db=N (N a number from 0)");
        }
        *out = u;
        return KVLM_OK;
    }

    u.kind = KV_REDIS_TCP;
    u.port = 6379;
    const char *host_end;
    if (*p == '[') {
        const char *rb = strchr(p, ']');
        if (!rb) return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL: '[' of an IPv6 host without ']'");
        size_t nh = (size_t)(rb - p - 1);
        if (nh == 0) return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL: empty IPv6 host");
        for (size_t i = 0; i < nh; i++) {
            char c = p[1 + i];
            if (!(hexval(c) >= 0 || c == ':' || c == '.'))
                return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL: bad character in IPv6 host");
        }
        if (!memchr(p + 1, ':', nh)) return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL: [..] holds no IPv6 address");
        if (nh >= sizeof u.host) return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL: host too long");
        memcpy(u.host, p + 1, nh);
        u.host[nh] = 0;
        host_end = rb + 1;
        if (*host_end && *host_end != ':' && *host_end != '/')
            return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL: junk after the IPv6 host");
    } else {
        host_end = p;
        while (*host_end && *host_end != ':' && *host_end != '/') host_end++;
        size_t nh = (size_t)(host_end - p);
        if (nh == 0) return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL: empty host");
        if (nh >= sizeof u.host) return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL: host too long");
        for (size_t i = 0; i < nh; i++) {
            char c = p[i];
            bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_';
            if (!ok) return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL: bad character '%c' in host", c);
        }
        memcpy(u.host, p, nh);
        u.host[nh] = 0;
    }
    p = host_end;
    if (*p == ':') {
        const char *pe = p + 1;
        while (*pe && *pe != '/') pe++;
        if (!parse_int(p + 1, (size_t)(pe - p - 1), 1, 65535, &u.port))
            return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL: port must be a number from 1 to 65535");
        p = pe;
    }
    if (*p == '/') {
        p++;
        if (*p && !parse_int(p, strlen(p), 0, INT32_MAX, &u.db))
            return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL: db must be a number from 0 (redis://host:port/db)");
    } else if (*p) {
        return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL: junk after the host");
    }
    *out = u;
    return KVLM_OK;
}

void kv_redis_node_name(const kv_redis_url *u, char *name, size_t cap)
{
    if (u->kind == KV_REDIS_UNIX) snprintf(name, cap, "unix:%s/%d", u->path, u->db);
    else snprintf(name, cap, "tcp:%s:%d/%d", u->host, u->port, u->db);
}

kvlm_err kv_redis_parse_urls(const char *list, kv_redis_url *out, size_t cap, size_t *n,
                             char *err, size_t errlen)
{
    *n = 0;
    if (!list || !*list) return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL list: empty");
    size_t lim = cap < KV_REDIS_MAX_NODES ? cap : KV_REDIS_MAX_NODES;
    char one[2048];
    char na[NAME_MAX_], nb[NAME_MAX_];
    size_t k = 0;
    for (const char *p = list;; k++) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == 0) return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL list: URL %zu is empty", k + 1);
        if (len >= sizeof one) return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL list: URL %zu too long", k + 1);
        if (k >= lim) return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL list: more than %zu URLs", lim);
        memcpy(one, p, len);
        one[len] = 0;
        kvlm_err rc = kv_redis_parse_url(one, &out[k], err, errlen);
        if (rc != KVLM_OK) return err_prefix(err, errlen, rc, "URL %zu", k + 1);
        kv_redis_node_name(&out[k], na, sizeof na);
        for (size_t j = 0; j < k; j++) {
            kv_redis_node_name(&out[j], nb, sizeof nb);
            if (strcmp(na, nb) == 0)
                return err_set(err, errlen, KVLM_ERR_INVALID, "redis URL list: URLs %zu and %zu name the same node (%s)", j + 1, k + 1, na);
        }
        if (!c) break;
        p = c + 1;
    }
    *n = k + 1;
    return KVLM_OK;
}

/* ---- placement ---------------------------------------------------------------------- */

size_t kv_redis_pick(uint64_t hash, const uint64_t *node_ids, size_t n)
{
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(hash >> (8 * i));
    size_t best = 0;
    uint64_t best_score = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t s = XXH3_64bits_withSeed(le, sizeof le, node_ids[i]);
        if (i == 0 || s > best_score) { best = i; best_score = s; }
    }
    return best;
}

/* ---- time, SIGPIPE ------------------------------------------------------------------ */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct timeval ms_tv(int64_t ms)
{
    struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
    return tv;
}

/* hiredis writes with write(2): a peer that went away raises SIGPIPE, whose default
 * action kills the process. The library installs no handler; it blocks SIGPIPE on the
 * calling thread around a call and consumes one it raised. */
typedef struct pipe_guard { sigset_t old; bool was_pending; } pipe_guard;

static void pipe_block(pipe_guard *g)
{
    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigpending(&pend);
    g->was_pending = sigismember(&pend, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

static void pipe_unblock(pipe_guard *g)
{
    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    if (!g->was_pending && sigpending(&pend) == 0 && sigismember(&pend, SIGPIPE) == 1) {
        struct timespec zero = { 0, 0 };
        while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR) {}
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* ---- nodes -------------------------------------------------------------------------- */

static bool is_timeout_errno(int e)
{
    return e == EAGAIN || e == EWOULDBLOCK || e == ETIMEDOUT || e == EINPROGRESS;
}

/* A connection-level failure on nd: close it, open its breaker, count it. */
static kvlm_err node_fail(kv_redis *r, node *nd, bool timeout, const char *what, char *err, size_t errlen)
{
    if (nd->ctx) { redisFree(nd->ctx); nd->ctx = NULL; }
    nd->fails++;
    int64_t back = r->o.backoff_min_ms;
    for (int64_t i = 1; i < nd->fails && back < r->o.backoff_max_ms; i++) back *= 2;
    if (back > r->o.backoff_max_ms) back = r->o.backoff_max_ms;
    nd->open_until = mono_ns() + back * 1000000;
    r->st.errors++;
    if (timeout) r->st.timeouts++;
    return err_set(err, errlen, KVLM_ERR_IO, "redis %s: %s%s (retry in %lld ms)", nd->name, what,
                   timeout ? " (timeout)" : "", (long long)back);
}

/* The failure of a command on a live context: connection-level if ctx->err is set. */
static kvlm_err ctx_fail(kv_redis *r, node *nd, int saved_errno, const char *cmd, char *err, size_t errlen)
{
    char what[256];
    bool timeout = nd->ctx->err == REDIS_ERR_IO && is_timeout_errno(saved_errno);
    snprintf(what, sizeof what, "%s: %s", cmd, nd->ctx->errstr[0] ? nd->ctx->errstr : "connection lost");
    return node_fail(r, nd, timeout, what, err, errlen);
}

/* Sends one command on a connected node; NULL after a connection-level failure
 * (already handled: ctx freed, breaker open, counted). */
static redisReply *node_cmd(kv_redis *r, node *nd, int argc, const char **argv, const size_t *argl,
                            const char *cmd, char *err, size_t errlen)
{
    errno = 0;
    redisReply *rep = redisCommandArgv(nd->ctx, argc, argv, argl);
    int e = errno;
    if (!rep || nd->ctx->err) {
        if (rep) freeReplyObject(rep);
        ctx_fail(r, nd, e, cmd, err, errlen);
        return NULL;
    }
    return rep;
}

/* Ensures nd is connected (connect, AUTH, SELECT): the probe when its breaker has
 * expired. KVLM_ERR_IO (counted as skipped or as an error) when it cannot be. */
static kvlm_err node_ready(kv_redis *r, node *nd, char *err, size_t errlen)
{
    if (nd->ctx) return KVLM_OK;
    if (nd->fails > 0 && mono_ns() < nd->open_until) {
        r->st.skipped++;
        return err_set(err, errlen, KVLM_ERR_IO, "redis %s: breaker open (after %lld failures)",
                       nd->name, (long long)nd->fails);
    }
    r->st.connects++;
    struct timeval ctv = ms_tv(r->o.connect_timeout_ms);
    errno = 0;
    nd->ctx = nd->url.kind == KV_REDIS_UNIX ? redisConnectUnixWithTimeout(nd->url.path, ctv)
                                            : redisConnectWithTimeout(nd->url.host, nd->url.port, ctv);
    int e = errno;
    if (!nd->ctx) return node_fail(r, nd, false, "connect: out of memory", err, errlen);
    if (nd->ctx->err) {
        char what[256];
        snprintf(what, sizeof what, "connect: %s", nd->ctx->errstr);
        return node_fail(r, nd, nd->ctx->err == REDIS_ERR_IO && is_timeout_errno(e), what, err, errlen);
    }
    if (redisSetTimeout(nd->ctx, ms_tv(r->o.command_timeout_ms)) != REDIS_OK)
        return node_fail(r, nd, false, "cannot set the socket timeout", err, errlen);

    char dbs[16];
    const char *argv[3];
    size_t argl[3];
    for (int step = 0; step < 2; step++) {
        int argc = 0;
        if (step == 0) {
            if (!nd->url.has_password) continue;
            argv[argc++] = "AUTH";
            if (nd->url.user[0]) argv[argc++] = nd->url.user;
            argv[argc++] = nd->url.password;
        } else {
            if (nd->url.db == 0) continue;
            snprintf(dbs, sizeof dbs, "%d", nd->url.db);
            argv[argc++] = "SELECT";
            argv[argc++] = dbs;
        }
        for (int i = 0; i < argc; i++) argl[i] = strlen(argv[i]);
        redisReply *rep = node_cmd(r, nd, argc, argv, argl, argv[0], err, errlen);
        if (!rep) return KVLM_ERR_IO;
        bool ok = rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "OK") == 0;
        char what[256];
        if (!ok) snprintf(what, sizeof what, "%s refused: %.200s", argv[0],
                          rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        freeReplyObject(rep);
        if (!ok) return node_fail(r, nd, false, what, err, errlen);
    }
    nd->fails = 0;
    nd->open_until = 0;
    return KVLM_OK;
}

/* ---- the handle --------------------------------------------------------------------- */

kvlm_err kv_redis_open(kv_redis **out, const char *urls, const kv_redis_opts *opts,
                       char *err, size_t errlen)
{
    kv_redis *r = calloc(1, sizeof *r);
    kv_redis_url *u = calloc(KV_REDIS_MAX_NODES, sizeof *u);
    kvlm_err rc = KVLM_ERR_NOMEM;
    if (!r || !u) { err_set(err, errlen, rc, "redis tier: out of memory"); goto fail; }
    if (opts) r->o = *opts;
    if (r->o.connect_timeout_ms == 0) r->o.connect_timeout_ms = 200;
    if (r->o.command_timeout_ms == 0) r->o.command_timeout_ms = 200;
    if (r->o.backoff_min_ms == 0) r->o.backoff_min_ms = 100;
    if (r->o.backoff_max_ms == 0) r->o.backoff_max_ms = 30000;
    const char *prefix = r->o.prefix ? r->o.prefix : DEFAULT_PREFIX;
    r->o.prefix = NULL;
    if (r->o.connect_timeout_ms < 0 || r->o.command_timeout_ms < 0 || r->o.backoff_min_ms < 0 ||
        r->o.backoff_max_ms < r->o.backoff_min_ms || r->o.ttl_sec < 0 || strlen(prefix) > PREFIX_MAX ||
        r->o.connect_timeout_ms > 3600000 || r->o.command_timeout_ms > 3600000) {
        rc = err_set(err, errlen, KVLM_ERR_INVALID, "redis tier: bad option (negative timeout or TTL, "
                     "backoff_max < backoff_min, or a prefix over %d bytes)", PREFIX_MAX);
        goto fail;
    }
    snprintf(r->prefix, sizeof r->prefix, "%s", prefix);
    size_t n;
    rc = kv_redis_parse_urls(urls, u, KV_REDIS_MAX_NODES, &n, err, errlen);
    if (rc != KVLM_OK) goto fail;
    r->nodes = calloc(n, sizeof *r->nodes);
    r->ids = calloc(n, sizeof *r->ids);
    if (!r->nodes || !r->ids) { rc = err_set(err, errlen, KVLM_ERR_NOMEM, "redis tier: out of memory"); goto fail; }
    r->n_node = n;
    for (size_t i = 0; i < n; i++) {
        node *nd = &r->nodes[i];
        nd->url = u[i];
        kv_redis_node_name(&u[i], nd->name, sizeof nd->name);
        nd->id = r->ids[i] = XXH3_64bits(nd->name, strlen(nd->name));
    }
    free(u);
    *out = r;
    return KVLM_OK;
fail:
    free(u);
    kv_redis_close(r);
    return rc;
}

void kv_redis_close(kv_redis *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n_node; i++)
        if (r->nodes[i].ctx) redisFree(r->nodes[i].ctx);
    free(r->nodes);
    free(r->ids);
    free(r);
}

size_t kv_redis_n_nodes(const kv_redis *r) { return r->n_node; }

size_t kv_redis_node_of(const kv_redis *r, uint64_t key) { return kv_redis_pick(key, r->ids, r->n_node); }

void kv_redis_key_name(const kv_redis *r, uint64_t key, char *name, size_t cap)
{
    snprintf(name, cap, "%s%016llx", r->prefix, (unsigned long long)key);
}

kvlm_err kv_redis_check(kv_redis *r, char *err, size_t errlen)
{
    pipe_guard g;
    pipe_block(&g);
    kvlm_err rc = KVLM_OK;
    for (size_t i = 0; i < r->n_node && rc == KVLM_OK; i++) {
        node *nd = &r->nodes[i];
        rc = node_ready(r, nd, err, errlen);
        if (rc != KVLM_OK) break;
        const char *argv[1] = { "PING" };
        size_t argl[1] = { 4 };
        redisReply *rep = node_cmd(r, nd, 1, argv, argl, "PING", err, errlen);
        if (!rep) { rc = KVLM_ERR_IO; break; }
        if (rep->type != REDIS_REPLY_STATUS) {
            r->st.errors++;
            rc = err_set(err, errlen, KVLM_ERR_IO, "redis %s: PING: %.200s", nd->name,
                         rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        }
        freeReplyObject(rep);
    }
    pipe_unblock(&g);
    return rc;
}

/* One keyed command on key's node: argv[1] is the Redis key. Returns the reply (the
 * caller frees) or NULL with err set and the failure counted. */
static redisReply *keyed_cmd(kv_redis *r, uint64_t key, int argc, const char **argv, size_t *argl,
                             char *err, size_t errlen)
{
    char kname[KEY_MAX];
    kv_redis_key_name(r, key, kname, sizeof kname);
    argv[1] = kname;
    argl[1] = strlen(kname);
    for (int i = 0; i < argc; i++)
        if (i != 1 && argl[i] == SIZE_MAX) argl[i] = strlen(argv[i]);
    node *nd = &r->nodes[kv_redis_node_of(r, key)];
    pipe_guard g;
    pipe_block(&g);
    redisReply *rep = NULL;
    if (node_ready(r, nd, err, errlen) == KVLM_OK)
        rep = node_cmd(r, nd, argc, argv, argl, argv[0], err, errlen);
    pipe_unblock(&g);
    return rep;
}

static kvlm_err bad_reply(kv_redis *r, redisReply *rep, const char *cmd, char *err, size_t errlen)
{
    r->st.errors++;
    kvlm_err rc = err_set(err, errlen, KVLM_ERR_IO, "redis %s: %.200s", cmd,
                          rep->type == REDIS_REPLY_ERROR ? rep->str : "reply of an unexpected type");
    freeReplyObject(rep);
    return rc;
}

kvlm_err kv_redis_put(kv_redis *r, uint64_t key, const void *data, size_t len, char *err, size_t errlen)
{
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%lld", (long long)r->o.ttl_sec);
    const char *argv[5] = { "SET", NULL, len ? data : "", "EX", ttl };
    size_t argl[5] = { SIZE_MAX, 0, len, SIZE_MAX, SIZE_MAX };
    redisReply *rep = keyed_cmd(r, key, r->o.ttl_sec > 0 ? 5 : 3, argv, argl, err, errlen);
    if (!rep) return KVLM_ERR_IO;
    if (rep->type != REDIS_REPLY_STATUS || strcmp(rep->str, "OK") != 0) return bad_reply(r, rep, "SET", err, errlen);
    freeReplyObject(rep);
    r->st.puts++;
    r->st.bytes_written += (int64_t)len;
    return KVLM_OK;
}

kvlm_err kv_redis_get(kv_redis *r, uint64_t key, void **data, size_t *len, bool *miss,
                      char *err, size_t errlen)
{
    *data = NULL;
    *len = 0;
    if (miss) *miss = false;
    const char *argv[2] = { "GET", NULL };
    size_t argl[2] = { SIZE_MAX, 0 };
    redisReply *rep = keyed_cmd(r, key, 2, argv, argl, err, errlen);
    if (!rep) return KVLM_ERR_IO;
    if (rep->type == REDIS_REPLY_NIL) {
        freeReplyObject(rep);
        r->st.misses++;
        if (miss) *miss = true;
        return err_set(err, errlen, KVLM_ERR_IO, "miss");
    }
    if (rep->type != REDIS_REPLY_STRING) return bad_reply(r, rep, "GET", err, errlen);
    void *b = malloc(rep->len ? rep->len : 1);
    if (!b) {
        freeReplyObject(rep);
        return err_set(err, errlen, KVLM_ERR_NOMEM, "redis GET: out of memory for %zu bytes", rep->len);
    }
    memcpy(b, rep->str, rep->len);
    *data = b;
    *len = rep->len;
    freeReplyObject(rep);
    r->st.hits++;
    r->st.bytes_read += (int64_t)*len;
    return KVLM_OK;
}

bool kv_redis_has(kv_redis *r, uint64_t key)
{
    const char *argv[2] = { "EXISTS", NULL };
    size_t argl[2] = { SIZE_MAX, 0 };
    redisReply *rep = keyed_cmd(r, key, 2, argv, argl, NULL, 0);
    if (!rep) return false;
    if (rep->type != REDIS_REPLY_INTEGER) { bad_reply(r, rep, "EXISTS", NULL, 0); return false; }
    bool has = rep->integer > 0;
    freeReplyObject(rep);
    return has;
}

void kv_redis_remove(kv_redis *r, uint64_t key)
{
    const char *argv[2] = { "DEL", NULL };
    size_t argl[2] = { SIZE_MAX, 0 };
    redisReply *rep = keyed_cmd(r, key, 2, argv, argl, NULL, 0);
    if (!rep) return;
    if (rep->type != REDIS_REPLY_INTEGER) { bad_reply(r, rep, "DEL", NULL, 0); return; }
    freeReplyObject(rep);
}

kv_redis_stats kv_redis_get_stats(const kv_redis *r)
{
    kv_redis_stats s = r->st;
    int64_t now = mono_ns();
    s.nodes_down = 0;
    for (size_t i = 0; i < r->n_node; i++)
        if (!r->nodes[i].ctx && r->nodes[i].fails > 0 && now < r->nodes[i].open_until) s.nodes_down++;
    return s;
}

/* ---- the Redis tier (kv_tier_ops) --------------------------------------------------- */

static kvlm_err tier_get(kv_tier *t, uint64_t key, void **data, size_t *len, char *err, size_t errlen)
{
    bool miss = false;
    char msg[512] = "";
    kvlm_err rc = kv_redis_get(t->impl, key, data, len, &miss, msg, sizeof msg);   /* before miss is read */
    return kv_tier_get_result(rc, miss, msg, err, errlen);
}

static kvlm_err tier_put(kv_tier *t, uint64_t key, const void *data, size_t len, char *err, size_t errlen)
{
    return kv_redis_put(t->impl, key, data, len, err, errlen);
}

static void tier_drop(kv_tier *t, uint64_t key) { kv_redis_remove(t->impl, key); }

static void tier_stats(const kv_tier *t, kv_tier_stats *out)
{
    kv_redis_stats s = kv_redis_get_stats(t->impl);
    *out = (kv_tier_stats){ .hits = s.hits, .misses = s.misses, .puts = s.puts, .errors = s.errors + s.skipped,
                            .bytes_read = s.bytes_read, .bytes_written = s.bytes_written,
                            .n_items = s.puts, .bytes_stored = s.bytes_written };
}

static void tier_close(kv_tier *t)
{
    kv_redis_close(t->impl);
    free(t);
}

static const kv_tier_ops redis_ops = { "redis", tier_get, tier_put, tier_drop, tier_stats, tier_close };

kvlm_err kv_tier_redis_new(kv_tier **out, const char *urls, const kv_redis_opts *opts, char *err, size_t errlen)
{
    kv_tier *t = malloc(sizeof *t);
    if (!t) return err_set(err, errlen, KVLM_ERR_NOMEM, "redis tier: out of memory");
    kv_redis *r;
    kvlm_err rc = kv_redis_open(&r, urls, opts, err, errlen);
    if (rc != KVLM_OK) { free(t); return rc; }
    *t = (kv_tier){ &redis_ops, r };
    *out = t;
    return KVLM_OK;
}
