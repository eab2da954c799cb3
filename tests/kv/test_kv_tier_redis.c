/* test_kv_tier_redis.c - the Redis tier's blob store (kv_tier_redis): the URL parser,
 * rendezvous placement, and against REAL redis-server processes that the test starts
 * on private unix sockets in mkdtemp directories: round trips, TTL expiry, keys
 * deleted or overwritten behind the tier's back, a key of the wrong type, two nodes,
 * a server killed and restarted (circuit breaker and back-off), a stopped server
 * (timeouts), SELECT, AUTH with requirepass, and a peer that is not Redis at all.
 *
 * The test reads and writes the servers with its own hiredis client, so what the tier
 * stored is checked on the server, not through the tier. Expected blobs come from
 * test_blob(): a pure function of (key, length). Server tests skip when /usr/bin/redis-server
 * is missing. Servers die with the test (PR_SET_PDEATHSIG) if it crashes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <xxhash.h>

#include "testredis.h"
#include "testutil.h"
#include "kv/kv_tier_redis.h"

/* ---- redis-server children (tests/util/testredis.h) --------------------------------- */

/* The servers of the running test, so that a failed assertion (which leaves the test
 * function) still has them killed and their directories removed by teardown(). */
static test_redis g_srv[4];
static bool       g_used[4];

static bool have_redis(void) { return test_redis_available(); }

static redisContext *raw_client(const test_redis *s) { return test_redis_client(s); }

static void srv_start(test_redis *s)
{
    if (!test_redis_restart(s)) fail_msg("redis-server did not answer on %s", s->sock);
}

static void srv_kill(test_redis *s) { test_redis_kill(s); }

static test_redis *srv_new(const char *password)
{
    test_redis *s = NULL;
    for (size_t i = 0; i < sizeof g_srv / sizeof g_srv[0] && !s; i++)
        if (!g_used[i]) { g_used[i] = true; s = &g_srv[i]; }
    assert_non_null(s);
    if (!test_redis_start(s, password)) fail_msg("redis-server did not start");
    return s;
}

static void srv_done(test_redis *s)
{
    test_redis_stop(s);
    g_used[s - g_srv] = false;
}

static int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof g_srv / sizeof g_srv[0]; i++)
        if (g_used[i]) srv_done(&g_srv[i]);
    return 0;
}

static kv_redis *open_ok(const char *urls, const kv_redis_opts *o)
{
    kv_redis *r = NULL;
    char err[512] = "";
    if (kv_redis_open(&r, urls, o, err, sizeof err) != KVLM_OK) fail_msg("open %s: %s", urls, err);
    return r;
}

static void put_ok(kv_redis *r, uint64_t key, size_t len)
{
    char err[512] = "";
    uint8_t *b = test_blob(key, len);
    kvlm_err rc = kv_redis_put(r, key, b, len, err, sizeof err);
    free(b);
    if (rc != KVLM_OK) fail_msg("put %llx: %s", (unsigned long long)key, err);
}

static void get_ok(kv_redis *r, uint64_t key, size_t len)
{
    char err[512] = "";
    void *d;
    size_t got;
    bool miss = true;
    kvlm_err rc = kv_redis_get(r, key, &d, &got, &miss, err, sizeof err);
    if (rc != KVLM_OK) fail_msg("get %llx: %s", (unsigned long long)key, err);
    assert_false(miss);
    assert_int_equal(got, len);
    uint8_t *b = test_blob(key, len);
    if (len) assert_memory_equal(d, b, len);
    free(b);
    free(d);
}

static void get_miss(kv_redis *r, uint64_t key)
{
    char err[512] = "";
    void *d = (void *)1;
    size_t got = 1;
    bool miss = false;
    assert_int_equal(kv_redis_get(r, key, &d, &got, &miss, err, sizeof err), KVLM_ERR_IO);
    assert_true(miss);
    assert_null(d);
    assert_int_equal(got, 0);
    assert_string_equal(err, "miss");
}

/* A get that fails (not a miss); returns its message in err. */
static void get_fails(kv_redis *r, uint64_t key, char *err, size_t errlen)
{
    void *d = (void *)1;
    size_t got = 1;
    bool miss = true;
    assert_int_equal(kv_redis_get(r, key, &d, &got, &miss, err, errlen), KVLM_ERR_IO);
    assert_false(miss);
    assert_null(d);
    assert_int_equal(got, 0);
}

static void key_name(uint64_t key, char out[64])
{
    snprintf(out, 64, "kvlm:blk:%016llx", (unsigned long long)key);
}

/* ---- URL parser --------------------------------------------------------------------- */

typedef struct good_case {
    const char *url;
    kv_redis_kind kind;
    const char *host;
    int port;
    const char *path;
    const char *user, *password;   /* password NULL: no AUTH */
    int db;
} good_case;

static void test_parse_good(void **state)
{
    (void)state;
    static const good_case cases[] = {
        { "redis://127.0.0.1", KV_REDIS_TCP, "127.0.0.1", 6379, "", "", NULL, 0 },
        { "redis://localhost:6380", KV_REDIS_TCP, "localhost", 6380, "", "", NULL, 0 },
        { "redis://cache-1.example.com:1/15", KV_REDIS_TCP, "cache-1.example.com", 1, "", "", NULL, 15 },
        { "redis://h:65535/", KV_REDIS_TCP, "h", 65535, "", "", NULL, 0 },
        { "redis://h/7", KV_REDIS_TCP, "h", 6379, "", "", NULL, 7 },
        { "redis://[::1]", KV_REDIS_TCP, "::1", 6379, "", "", NULL, 0 },
        { "redis://[::1]:7000/2", KV_REDIS_TCP, "::1", 7000, "", "", NULL, 2 },
        { "redis://[::ffff:10.0.0.1]:7000", KV_REDIS_TCP, "::ffff:10.0.0.1", 7000, "", "", NULL, 0 },
        { "redis://:secret@h", KV_REDIS_TCP, "h", 6379, "", "", "secret", 0 },
        { "redis://alice:s3cr3t@h:6390/3", KV_REDIS_TCP, "h", 6390, "", "alice", "s3cr3t", 3 },
        { "redis://al%40ce:p%3Ass%2Cw@[::1]:1", KV_REDIS_TCP, "::1", 1, "", "al@ce", "p:ss,w", 0 },
        { "redis://u:p@ss@h", KV_REDIS_TCP, "h", 6379, "", "u", "p@ss", 0 },
        { "redis://h/2147483647", KV_REDIS_TCP, "h", 6379, "", "", NULL, 2147483647 },
        { "unix:///tmp/r.sock", KV_REDIS_UNIX, "", 0, "/tmp/r.sock", "", NULL, 0 },
        { "unix:///var/run/redis/redis.sock?db=4", KV_REDIS_UNIX, "", 0, "/var/run/redis/redis.sock", "", NULL, 4 },
        { "unix://:pw@/tmp/r.sock", KV_REDIS_UNIX, "", 0, "/tmp/r.sock", "", "pw", 0 },
        { "unix://bob:pw@/tmp/r.sock?db=1", KV_REDIS_UNIX, "", 0, "/tmp/r.sock", "bob", "pw", 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const good_case *c = &cases[i];
        kv_redis_url u;
        char err[256] = "";
        if (kv_redis_parse_url(c->url, &u, err, sizeof err) != KVLM_OK) fail_msg("%s: %s", c->url, err);
        assert_int_equal(u.kind, c->kind);
        if (c->kind == KV_REDIS_TCP) {
            assert_string_equal(u.host, c->host);
            assert_int_equal(u.port, c->port);
        } else {
            assert_string_equal(u.path, c->path);
        }
        assert_int_equal(u.has_password, c->password != NULL);
        if (c->password) {
            assert_string_equal(u.user, c->user);
            assert_string_equal(u.password, c->password);
        }
        assert_int_equal(u.db, c->db);
    }
}

typedef struct bad_case { const char *url; kvlm_err code; const char *says; } bad_case;

static void test_parse_bad(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        { "rediss://h:6380", KVLM_ERR_UNSUPPORTED, "TLS not supported" },
        { "rediss://:pw@h", KVLM_ERR_UNSUPPORTED, "TLS not supported" },
        { "", KVLM_ERR_INVALID, "empty" },
        { "http://h:6379", KVLM_ERR_INVALID, "scheme" },
        { "h:6379", KVLM_ERR_INVALID, "scheme" },
        { "redis:/h", KVLM_ERR_INVALID, "scheme" },
        { "REDIS://h", KVLM_ERR_INVALID, "scheme" },
        { "redis://", KVLM_ERR_INVALID, "empty host" },
        { "redis://:6379", KVLM_ERR_INVALID, "empty host" },
        { "redis://h:", KVLM_ERR_INVALID, "port" },
        { "redis://h:0", KVLM_ERR_INVALID, "port" },
        { "redis://h:65536", KVLM_ERR_INVALID, "port" },
        { "redis://h:63x", KVLM_ERR_INVALID, "port" },
        { "redis://h:-1", KVLM_ERR_INVALID, "port" },
        { "redis://h:99999999999", KVLM_ERR_INVALID, "port" },
        { "redis://h/x", KVLM_ERR_INVALID, "db" },
        { "redis://h/-1", KVLM_ERR_INVALID, "db" },
        { "redis://h/2147483648", KVLM_ERR_INVALID, "db" },
        { "redis://h/1/2", KVLM_ERR_INVALID, "db" },
        { "redis://h?db=1", KVLM_ERR_INVALID, "host" },
        { "redis://h h", KVLM_ERR_INVALID, "space" },
        { "redis://h\n", KVLM_ERR_INVALID, "control" },
        { "redis://user@h", KVLM_ERR_INVALID, "password" },
        { "redis://user:@h", KVLM_ERR_INVALID, "empty password" },
        { "redis://:p%zz@h", KVLM_ERR_INVALID, "encoding" },
        { "redis://:p%4@h", KVLM_ERR_INVALID, "encoding" },
        { "redis://:p%00@h", KVLM_ERR_INVALID, "encoding" },
        { "redis://[::1", KVLM_ERR_INVALID, "IPv6" },
        { "redis://[]:1", KVLM_ERR_INVALID, "IPv6" },
        { "redis://[abc]", KVLM_ERR_INVALID, "IPv6" },
        { "redis://[::1]x", KVLM_ERR_INVALID, "junk" },
        { "redis://[::g]", KVLM_ERR_INVALID, "IPv6" },
        { "redis://::1", KVLM_ERR_INVALID, "" },
        { "unix://tmp/r.sock", KVLM_ERR_INVALID, "absolute" },
        { "unix:///", KVLM_ERR_INVALID, "socket file" },
        { "unix:///tmp/", KVLM_ERR_INVALID, "socket file" },
        { "unix:///tmp/r.sock?db=x", KVLM_ERR_INVALID, "db=N" },
        { "unix:///tmp/r.sock?foo=1", KVLM_ERR_INVALID, "db=N" },
        { "unix:///tmp/r.sock?db=", KVLM_ERR_INVALID, "db=N" },
        { "unix:///tmp/" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock",
          KVLM_ERR_INVALID, "longer" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kv_redis_url u;
        char err[256] = "";
        kvlm_err rc = kv_redis_parse_url(cases[i].url, &u, err, sizeof err);
        if (rc != cases[i].code) fail_msg("'%s': got %d (%s), want %d", cases[i].url, rc, err, cases[i].code);
        if (!strstr(err, cases[i].says)) fail_msg("'%s': message '%s' lacks '%s'", cases[i].url, err, cases[i].says);
    }
    /* a password never appears in a message */
    kv_redis_url u;
    char err[256] = "";
    assert_int_equal(kv_redis_parse_url("redis://user:topsecret@h:0", &u, err, sizeof err), KVLM_ERR_INVALID);
    assert_null(strstr(err, "topsecret"));
}

static void test_parse_list(void **state)
{
    (void)state;
    kv_redis_url u[KV_REDIS_MAX_NODES];
    size_t n = 99;
    char err[256] = "";
    assert_int_equal(kv_redis_parse_urls("redis://a:6379,redis://b:6379,unix:///tmp/c.sock?db=2", u, 64, &n, err, sizeof err), KVLM_OK);
    assert_int_equal(n, 3);
    assert_string_equal(u[0].host, "a");
    assert_string_equal(u[1].host, "b");
    assert_string_equal(u[2].path, "/tmp/c.sock");
    assert_int_equal(u[2].db, 2);
    char name[512];
    kv_redis_node_name(&u[0], name, sizeof name);
    assert_string_equal(name, "tcp:a:6379/0");
    kv_redis_node_name(&u[2], name, sizeof name);
    assert_string_equal(name, "unix:/tmp/c.sock/2");

    assert_int_equal(kv_redis_parse_urls("redis://a,,redis://b", u, 64, &n, err, sizeof err), KVLM_ERR_INVALID);
    assert_non_null(strstr(err, "URL 2 is empty"));
    assert_int_equal(kv_redis_parse_urls("redis://a,", u, 64, &n, err, sizeof err), KVLM_ERR_INVALID);
    assert_int_equal(kv_redis_parse_urls("", u, 64, &n, err, sizeof err), KVLM_ERR_INVALID);
    assert_int_equal(kv_redis_parse_urls("redis://a,rediss://b", u, 64, &n, err, sizeof err), KVLM_ERR_UNSUPPORTED);
    assert_non_null(strstr(err, "URL 2"));
    assert_int_equal(kv_redis_parse_urls("redis://a,redis://b:x", u, 64, &n, err, sizeof err), KVLM_ERR_INVALID);
    assert_non_null(strstr(err, "URL 2"));
    /* the same node twice (default port spelled out, other credentials) */
    assert_int_equal(kv_redis_parse_urls("redis://a,redis://:pw@a:6379/0", u, 64, &n, err, sizeof err), KVLM_ERR_INVALID);
    assert_non_null(strstr(err, "same node"));
    /* other db on one server: another node */
    assert_int_equal(kv_redis_parse_urls("redis://a/1,redis://a/2", u, 64, &n, err, sizeof err), KVLM_OK);
    /* too many */
    char big[64 * 20 + 100] = "";
    for (int i = 0; i < 65; i++) {
        char one[24];
        snprintf(one, sizeof one, "%sredis://h%d", i ? "," : "", i);
        strcat(big, one);
    }
    assert_int_equal(kv_redis_parse_urls(big, u, 64, &n, err, sizeof err), KVLM_ERR_INVALID);
    assert_int_equal(kv_redis_parse_urls("redis://a,redis://b", u, 1, &n, err, sizeof err), KVLM_ERR_INVALID);

    kv_redis *r = NULL;
    assert_int_equal(kv_redis_open(&r, "rediss://x", NULL, err, sizeof err), KVLM_ERR_UNSUPPORTED);
    assert_null(r);
    kv_redis_opts o = { .backoff_min_ms = 500, .backoff_max_ms = 100 };
    assert_int_equal(kv_redis_open(&r, "redis://x", &o, err, sizeof err), KVLM_ERR_INVALID);
    assert_null(r);
}

/* ---- placement ---------------------------------------------------------------------- */

static void test_pick(void **state)
{
    (void)state;
    const char *names[4] = { "tcp:a:6379/0", "tcp:b:6379/0", "tcp:c:6379/0", "tcp:d:6379/0" };
    uint64_t ids[4], rev[3];
    for (int i = 0; i < 4; i++) ids[i] = XXH3_64bits(names[i], strlen(names[i]));
    for (int i = 0; i < 3; i++) rev[i] = ids[2 - i];

    /* the handle's nodes are the same ids, in the order of the URLs */
    kv_redis *r = open_ok("redis://a,redis://b:6379,redis://c/0", NULL);
    assert_int_equal(kv_redis_n_nodes(r), 3);

    enum { N = 30000 };
    int count[3] = { 0 }, moved = 0, moved_wrong = 0;
    for (uint64_t k = 0; k < N; k++) {
        uint64_t key = test_mix64(k + 12345);
        size_t p = kv_redis_pick(key, ids, 3);
        assert_true(p < 3);
        count[p]++;
        assert_int_equal(kv_redis_pick(key, ids, 3), p);            /* stable */
        assert_int_equal(kv_redis_node_of(r, key), p);
        assert_int_equal(2 - kv_redis_pick(key, rev, 3), p);        /* order of URLs does not matter */
        /* the reference: highest XXH3_64bits_withSeed(key as LE bytes, id) */
        uint8_t le[8];
        for (int b = 0; b < 8; b++) le[b] = (uint8_t)(key >> (8 * b));
        uint64_t best = 0;
        size_t want = 0;
        for (size_t i = 0; i < 3; i++) {
            uint64_t s = XXH3_64bits_withSeed(le, 8, ids[i]);
            if (i == 0 || s > best) { best = s; want = i; }
        }
        assert_int_equal(p, want);
        size_t p4 = kv_redis_pick(key, ids, 4);                      /* a fourth node added */
        if (p4 != p) { moved++; if (p4 != 3) moved_wrong++; }
        /* the first node removed: only its keys move */
        size_t p2 = 1 + kv_redis_pick(key, ids + 1, 2);
        if (p != 0) assert_int_equal(p2, p);
    }
    for (int i = 0; i < 3; i++)   /* 1/3 each; the binomial sd is ~82 */
        if (count[i] < N / 3 - 600 || count[i] > N / 3 + 600) fail_msg("node %d holds %d of %d", i, count[i], N);
    assert_int_equal(moved_wrong, 0);
    assert_true(moved > N / 4 - 600 && moved < N / 4 + 600);
    assert_int_equal(kv_redis_pick(42, ids, 1), 0);
    kv_redis_close(r);
}

/* ---- against a real server ---------------------------------------------------------- */

static void test_roundtrip(void **state)
{
    (void)state;
    if (!have_redis()) skip();
    test_redis *s = srv_new(NULL);
    kv_redis *r = open_ok(s->url, NULL);
    char err[512] = "";
    assert_int_equal(kv_redis_check(r, err, sizeof err), KVLM_OK);
    static const size_t lens[] = { 0, 1, 17, 4096, 1 << 20, 3 * 1000 * 1000 + 7 };
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) put_ok(r, 0x1000 + i, lens[i]);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) get_ok(r, 0x1000 + i, lens[i]);
    put_ok(r, 0x1001, 33);   /* overwrite */
    get_ok(r, 0x1001, 33);
    get_miss(r, 0xdeadbeefcafef00dull);
    assert_true(kv_redis_has(r, 0x1002));
    assert_false(kv_redis_has(r, 0x7777));

    /* on the server: the documented key, the exact bytes, no TTL */
    redisContext *c = raw_client(s);
    assert_non_null(c);
    char kn[64];
    key_name(0x1003, kn);
    redisReply *rep = redisCommand(c, "GET %s", kn);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    assert_int_equal(rep->len, 4096);
    uint8_t *b = test_blob(0x1003, 4096);
    assert_memory_equal(rep->str, b, 4096);
    free(b);
    freeReplyObject(rep);
    rep = redisCommand(c, "TTL %s", kn);
    assert_int_equal(rep->integer, -1);
    freeReplyObject(rep);

    kv_redis_remove(r, 0x1003);
    get_miss(r, 0x1003);
    kv_redis_remove(r, 0x1003);   /* not there: fine */

    kv_redis_stats st = kv_redis_get_stats(r);
    assert_int_equal(st.puts, 7);
    assert_int_equal(st.hits, 7);
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.bytes_written, 0 + 1 + 17 + 4096 + (1 << 20) + 3000007 + 33);

    /* a custom prefix */
    kv_redis_opts o = { .prefix = "t1:" };
    kv_redis *r2 = open_ok(s->url, &o);
    put_ok(r2, 5, 10);
    rep = redisCommand(c, "EXISTS t1:0000000000000005");
    assert_int_equal(rep->integer, 1);
    freeReplyObject(rep);
    kv_redis_close(r2);

    redisFree(c);
    kv_redis_close(r);
    srv_done(s);
}

static void test_ttl(void **state)
{
    (void)state;
    if (!have_redis()) skip();
    test_redis *s = srv_new(NULL);
    kv_redis_opts o = { .ttl_sec = 1 };
    kv_redis *r = open_ok(s->url, &o);
    put_ok(r, 11, 100);
    redisContext *c = raw_client(s);
    char kn[64];
    key_name(11, kn);
    redisReply *rep = redisCommand(c, "PTTL %s", kn);
    assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
    assert_true(rep->integer > 0 && rep->integer <= 1000);
    freeReplyObject(rep);
    get_ok(r, 11, 100);
    test_sleep_ms(1200);
    get_miss(r, 11);
    kv_redis_stats st = kv_redis_get_stats(r);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.misses, 1);
    redisFree(c);
    kv_redis_close(r);
    srv_done(s);
}

/* Keys changed behind the tier's back: deleted (a miss), overwritten with other bytes
 * (returned as they are: the caller verifies), made a list (an error, not a crash). */
static void test_behind_back(void **state)
{
    (void)state;
    if (!have_redis()) skip();
    test_redis *s = srv_new(NULL);
    kv_redis *r = open_ok(s->url, NULL);
    redisContext *c = raw_client(s);
    char kn[64], err[512];
    put_ok(r, 21, 500);
    key_name(21, kn);
    freeReplyObject(redisCommand(c, "DEL %s", kn));
    get_miss(r, 21);

    put_ok(r, 22, 500);
    key_name(22, kn);
    static const char garbage[] = "not a block\0\xff\x01 at all";
    freeReplyObject(redisCommand(c, "SET %s %b", kn, garbage, sizeof garbage));
    void *d;
    size_t len;
    bool miss = true;
    assert_int_equal(kv_redis_get(r, 22, &d, &len, &miss, err, sizeof err), KVLM_OK);
    assert_false(miss);
    assert_int_equal(len, sizeof garbage);
    assert_memory_equal(d, garbage, sizeof garbage);
    free(d);

    key_name(23, kn);
    freeReplyObject(redisCommand(c, "RPUSH %s x y", kn));
    get_fails(r, 23, err, sizeof err);
    assert_non_null(strstr(err, "WRONGTYPE"));
    assert_false(kv_redis_has(r, 0x5555));
    kv_redis_stats st = kv_redis_get_stats(r);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.nodes_down, 0);
    /* the connection is still good: no reconnect */
    put_ok(r, 24, 50);
    get_ok(r, 24, 50);
    assert_int_equal(kv_redis_get_stats(r).connects, 1);
    redisFree(c);
    kv_redis_close(r);
    srv_done(s);
}

static void test_two_nodes(void **state)
{
    (void)state;
    if (!have_redis()) skip();
    test_redis *a = srv_new(NULL), *b = srv_new(NULL);
    char urls[1000];
    snprintf(urls, sizeof urls, "%s,%s", a->url, b->url);
    kv_redis *r = open_ok(urls, NULL);
    assert_int_equal(kv_redis_n_nodes(r), 2);
    redisContext *ca = raw_client(a), *cb = raw_client(b);
    int on[2] = { 0, 0 };
    enum { N = 200 };
    for (uint64_t k = 0; k < N; k++) put_ok(r, test_mix64(k), 64);
    for (uint64_t k = 0; k < N; k++) {
        uint64_t key = test_mix64(k);
        size_t node = kv_redis_node_of(r, key);
        char kn[64];
        key_name(key, kn);
        redisReply *ra = redisCommand(ca, "EXISTS %s", kn), *rb = redisCommand(cb, "EXISTS %s", kn);
        assert_int_equal(ra->integer, node == 0);
        assert_int_equal(rb->integer, node == 1);
        freeReplyObject(ra);
        freeReplyObject(rb);
        on[node]++;
        get_ok(r, key, 64);
    }
    assert_true(on[0] > N / 2 - 40 && on[1] > N / 2 - 40);
    assert_int_equal(kv_redis_get_stats(r).connects, 2);

    /* one node down: its keys fail fast, the other node's keys still hit */
    srv_kill(b);
    int ok = 0, failed = 0;
    for (uint64_t k = 0; k < N; k++) {
        uint64_t key = test_mix64(k);
        void *d;
        size_t len;
        bool miss;
        char err[512];
        kvlm_err rc = kv_redis_get(r, key, &d, &len, &miss, err, sizeof err);
        if (kv_redis_node_of(r, key) == 0) { assert_int_equal(rc, KVLM_OK); free(d); ok++; }
        else { assert_int_equal(rc, KVLM_ERR_IO); assert_false(miss); failed++; }
    }
    assert_int_equal(ok, on[0]);
    assert_int_equal(failed, on[1]);
    kv_redis_stats st = kv_redis_get_stats(r);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.skipped, on[1] - 1);
    assert_int_equal(st.nodes_down, 1);
    redisFree(ca);
    redisFree(cb);
    kv_redis_close(r);
    srv_done(a);
    srv_done(b);
}

/* A server killed mid-test: calls fail fast and are counted, the breaker stops
 * connecting until its back-off expires, then one probe per back-off (doubling), and
 * the tier works again once the server is back on the same socket. */
static void test_kill_restart(void **state)
{
    (void)state;
    if (!have_redis()) skip();
    test_redis *s = srv_new(NULL);
    kv_redis_opts o = { .connect_timeout_ms = 200, .command_timeout_ms = 200,
                        .backoff_min_ms = 300, .backoff_max_ms = 1000 };
    kv_redis *r = open_ok(s->url, &o);
    put_ok(r, 31, 1000);
    get_ok(r, 31, 1000);
    srv_kill(s);

    char err[512] = "";
    uint8_t *b = test_blob(32, 1000);
    double t0 = test_now_s();
    assert_int_equal(kv_redis_put(r, 32, b, 1000, err, sizeof err), KVLM_ERR_IO);
    double t_first = test_now_s() - t0;
    assert_non_null(strstr(err, "retry in 300 ms"));
    kv_redis_stats st = kv_redis_get_stats(r);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.nodes_down, 1);
    int64_t connects = st.connects;

    t0 = test_now_s();
    for (int i = 0; i < 50; i++) {
        assert_int_equal(kv_redis_put(r, 32, b, 1000, err, sizeof err), KVLM_ERR_IO);
        get_fails(r, 31, err, sizeof err);
        assert_non_null(strstr(err, "breaker open"));
    }
    double t_open = test_now_s() - t0;
    st = kv_redis_get_stats(r);
    assert_int_equal(st.connects, connects);   /* no connect attempts while open */
    assert_int_equal(st.skipped, 100);
    assert_int_equal(st.errors, 1);
    print_message("first failure %.2f ms, 100 calls with the breaker open %.2f ms\n",
                  t_first * 1e3, t_open * 1e3);
    assert_true(t_first < 0.2);
    assert_true(t_open < 0.05);

    /* back-off expired, server still down: one probe, which fails; back-off doubles */
    test_sleep_ms(350);
    get_fails(r, 31, err, sizeof err);
    assert_non_null(strstr(err, "retry in 600 ms"));
    st = kv_redis_get_stats(r);
    assert_int_equal(st.connects, connects + 1);
    assert_int_equal(st.errors, 2);
    get_fails(r, 31, err, sizeof err);
    assert_non_null(strstr(err, "breaker open"));

    /* back on the same socket (the values are gone: no persistence) */
    srv_start(s);
    get_fails(r, 31, err, sizeof err);         /* still within the back-off */
    assert_non_null(strstr(err, "breaker open"));
    test_sleep_ms(650);
    get_miss(r, 31);
    put_ok(r, 32, 1000);
    get_ok(r, 32, 1000);
    st = kv_redis_get_stats(r);
    assert_int_equal(st.connects, connects + 2);
    assert_int_equal(st.nodes_down, 0);
    free(b);
    kv_redis_close(r);
    srv_done(s);
}

/* A server that stops answering (SIGSTOP): a call is bounded by the command timeout
 * and counted as a timeout; after SIGCONT and the back-off the tier works again. */
static void test_timeout(void **state)
{
    (void)state;
    if (!have_redis()) skip();
    test_redis *s = srv_new(NULL);
    kv_redis_opts o = { .command_timeout_ms = 150, .backoff_min_ms = 100 };
    kv_redis *r = open_ok(s->url, &o);
    put_ok(r, 41, 100);
    kill(s->pid, SIGSTOP);
    char err[512] = "";
    double t0 = test_now_s();
    get_fails(r, 41, err, sizeof err);
    double t = test_now_s() - t0;
    print_message("get on a stopped server failed after %.1f ms (timeout 150 ms): %s\n", t * 1e3, err);
    assert_true(t >= 0.10 && t < 0.6);
    assert_non_null(strstr(err, "timeout"));
    kv_redis_stats st = kv_redis_get_stats(r);
    assert_int_equal(st.timeouts, 1);
    assert_int_equal(st.errors, 1);
    kill(s->pid, SIGCONT);
    test_sleep_ms(150);
    get_ok(r, 41, 100);
    kv_redis_close(r);
    srv_done(s);
}

static void test_select_db(void **state)
{
    (void)state;
    if (!have_redis()) skip();
    test_redis *s = srv_new(NULL);
    char url[512];
    snprintf(url, sizeof url, "%s?db=3", s->url);
    kv_redis *r = open_ok(url, NULL);
    put_ok(r, 51, 10);
    get_ok(r, 51, 10);
    redisContext *c = raw_client(s);
    char kn[64];
    key_name(51, kn);
    redisReply *rep = redisCommand(c, "EXISTS %s", kn);
    assert_int_equal(rep->integer, 0);          /* not in db 0 */
    freeReplyObject(rep);
    freeReplyObject(redisCommand(c, "SELECT 3"));
    rep = redisCommand(c, "EXISTS %s", kn);
    assert_int_equal(rep->integer, 1);
    freeReplyObject(rep);
    redisFree(c);
    kv_redis_close(r);
    srv_done(s);
}

static void test_auth(void **state)
{
    (void)state;
    if (!have_redis()) skip();
    test_redis *s = srv_new("s3cret-pw");
    char url[512], err[512] = "";

    snprintf(url, sizeof url, "unix://:s3cret-pw@%s", s->sock);          /* AUTH pass */
    kv_redis *r = open_ok(url, NULL);
    assert_int_equal(kv_redis_check(r, err, sizeof err), KVLM_OK);
    put_ok(r, 61, 100);
    get_ok(r, 61, 100);
    kv_redis_close(r);

    snprintf(url, sizeof url, "unix://default:s3cret-pw@%s", s->sock);   /* AUTH user pass (ACL) */
    r = open_ok(url, NULL);
    get_ok(r, 61, 100);
    kv_redis_close(r);

    snprintf(url, sizeof url, "unix://:wrong-pw@%s", s->sock);
    r = open_ok(url, NULL);
    assert_int_equal(kv_redis_check(r, err, sizeof err), KVLM_ERR_IO);
    assert_non_null(strstr(err, "AUTH refused"));
    assert_null(strstr(err, "wrong-pw"));
    kv_redis_close(r);
    r = open_ok(url, NULL);
    get_fails(r, 61, err, sizeof err);
    assert_non_null(strstr(err, "AUTH refused"));
    assert_int_equal(kv_redis_get_stats(r).errors, 1);
    assert_int_equal(kv_redis_get_stats(r).nodes_down, 1);
    kv_redis_close(r);

    snprintf(url, sizeof url, "unix://nobody:s3cret-pw@%s", s->sock);    /* no such ACL user */
    r = open_ok(url, NULL);
    get_fails(r, 61, err, sizeof err);
    assert_non_null(strstr(err, "AUTH refused"));
    kv_redis_close(r);

    r = open_ok(s->url, NULL);                                           /* no password */
    get_fails(r, 61, err, sizeof err);
    assert_non_null(strstr(err, "NOAUTH"));
    kv_redis_close(r);
    srv_done(s);
}

/* Not Redis at all: a peer that answers every connection with an HTTP line. The
 * protocol error is a failed call (never a hit), the breaker opens. No redis-server
 * needed: the peer is a forked child of the test. */
static void test_garbage_server(void **state)
{
    (void)state;
    char dir[] = "/tmp/kvredis-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/g.sock", dir);
    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(ls >= 0);
    assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(ls, 8), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;) {
            int c = accept(ls, NULL, NULL);
            if (c < 0) continue;
            static const char http[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
            if (write(c, http, sizeof http - 1) < 0) {}
            test_sleep_ms(50);
            close(c);
        }
    }
    close(ls);
    char url[200], err[512] = "";
    snprintf(url, sizeof url, "unix://%s", sa.sun_path);
    kv_redis_opts o = { .backoff_min_ms = 50 };
    kv_redis *r = open_ok(url, &o);
    get_fails(r, 1, err, sizeof err);
    assert_non_null(strstr(err, "Protocol error"));
    uint8_t b[16] = { 0 };
    assert_int_equal(kv_redis_put(r, 1, b, sizeof b, err, sizeof err), KVLM_ERR_IO);   /* breaker open */
    test_sleep_ms(60);
    assert_int_equal(kv_redis_put(r, 1, b, sizeof b, err, sizeof err), KVLM_ERR_IO);   /* the probe */
    kv_redis_stats st = kv_redis_get_stats(r);
    assert_int_equal(st.hits + st.puts + st.misses, 0);
    assert_int_equal(st.errors, 2);
    assert_int_equal(st.skipped, 1);
    kv_redis_close(r);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    unlink(sa.sun_path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_parse_list),
        cmocka_unit_test(test_pick),
        cmocka_unit_test_teardown(test_roundtrip, teardown),
        cmocka_unit_test_teardown(test_ttl, teardown),
        cmocka_unit_test_teardown(test_behind_back, teardown),
        cmocka_unit_test_teardown(test_two_nodes, teardown),
        cmocka_unit_test_teardown(test_kill_restart, teardown),
        cmocka_unit_test_teardown(test_timeout, teardown),
        cmocka_unit_test_teardown(test_select_db, teardown),
        cmocka_unit_test_teardown(test_auth, teardown),
        cmocka_unit_test(test_garbage_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
