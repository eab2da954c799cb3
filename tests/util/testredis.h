/* testredis.h - real redis-server processes for the tests (never linked into the
 * library): each on a private unix socket in its own mkdtemp directory, no TCP port,
 * no persistence, killed with the test (PR_SET_PDEATHSIG) if the test dies. Used by
 * the Redis tier's tests and by the engine's tier tests. No cmocka here: failures are
 * returned. */
#ifndef KVLM_TESTREDIS_H
#define KVLM_TESTREDIS_H

#include <stdbool.h>
#include <sys/types.h>

#define TEST_REDIS_SERVER "/usr/bin/redis-server"

typedef struct test_redis {
    char  dir[256];          /* its directory (the socket and redis' own files) */
    char  sock[300];         /* DIR/r.sock */
    char  url[400];          /* "unix://DIR/r.sock", without credentials */
    char  password[128];     /* requirepass; "" for none */
    pid_t pid;               /* 0 when not running */
} test_redis;

/* Whether TEST_REDIS_SERVER is there (tests skip without it). */
bool test_redis_available(void);

/* Fills *s (a new directory under $TMPDIR, else /tmp), starts a server on its socket
 * (with requirepass password unless it is NULL or "") and waits up to 10 s until it
 * answers PING. On failure nothing is left running or on disk and *s is zeroed. */
bool test_redis_start(test_redis *s, const char *password);

/* Starts s's server again (after test_redis_kill) on the same socket; its values are
 * gone. false if it does not answer within 10 s. */
bool test_redis_restart(test_redis *s);

/* SIGKILLs the server and reaps it; the directory stays (for a restart). */
void test_redis_kill(test_redis *s);

/* Kills the server and removes its directory; *s is zeroed. Fine on a zeroed s. */
void test_redis_stop(test_redis *s);

/* A hiredis client of the test's own (1 s timeouts), authenticated when s has a
 * password; NULL if it cannot connect. The caller redisFree()s it. */
struct redisContext *test_redis_client(const test_redis *s);

#endif
