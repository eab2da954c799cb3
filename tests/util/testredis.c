/* testredis.c - see testredis.h. */
#include "testredis.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "testutil.h"

bool test_redis_available(void) { return access(TEST_REDIS_SERVER, X_OK) == 0; }

redisContext *test_redis_client(const test_redis *s)
{
    struct timeval tv = { 1, 0 };
    redisContext *c = redisConnectUnixWithTimeout(s->sock, tv);
    if (!c || c->err) { if (c) redisFree(c); return NULL; }
    redisSetTimeout(c, tv);
    if (s->password[0]) {
        redisReply *r = redisCommand(c, "AUTH %s", s->password);
        if (r) freeReplyObject(r);
    }
    return c;
}

static bool answers(const test_redis *s)
{
    redisContext *c = test_redis_client(s);
    if (!c) return false;
    redisReply *r = redisCommand(c, "PING");
    bool ok = r && r->type == REDIS_REPLY_STATUS;
    if (r) freeReplyObject(r);
    redisFree(c);
    return ok;
}

bool test_redis_restart(test_redis *s)
{
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open("/dev/null", O_RDWR);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); }
        const char *argv[20];
        int n = 0;
        argv[n++] = TEST_REDIS_SERVER;
        argv[n++] = "--port"; argv[n++] = "0";
        argv[n++] = "--unixsocket"; argv[n++] = s->sock;
        argv[n++] = "--unixsocketperm"; argv[n++] = "700";
        argv[n++] = "--save"; argv[n++] = "";
        argv[n++] = "--appendonly"; argv[n++] = "no";
        argv[n++] = "--daemonize"; argv[n++] = "no";
        argv[n++] = "--dir"; argv[n++] = s->dir;
        if (s->password[0]) { argv[n++] = "--requirepass"; argv[n++] = s->password; }
        argv[n] = NULL;
        execv(TEST_REDIS_SERVER, (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    for (int i = 0; i < 1000; i++) {
        if (answers(s)) return true;
        if (waitpid(pid, NULL, WNOHANG) == pid) { s->pid = 0; return false; }   /* exited at start */
        test_sleep_ms(10);
    }
    test_redis_kill(s);
    return false;
}

bool test_redis_start(test_redis *s, const char *password)
{
    memset(s, 0, sizeof *s);
    if (password && strlen(password) >= sizeof s->password) return false;
    const char *t = getenv("TMPDIR");
    snprintf(s->dir, sizeof s->dir, "%s/kvredis-XXXXXX", t && *t && strlen(t) < 60 ? t : "/tmp");
    if (!mkdtemp(s->dir)) { memset(s, 0, sizeof *s); return false; }
    snprintf(s->sock, sizeof s->sock, "%s/r.sock", s->dir);
    snprintf(s->url, sizeof s->url, "unix://%s", s->sock);
    snprintf(s->password, sizeof s->password, "%s", password ? password : "");
    if (test_redis_restart(s)) return true;
    test_redis_stop(s);
    return false;
}

void test_redis_kill(test_redis *s)
{
    if (s->pid <= 0) return;
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

void test_redis_stop(test_redis *s)
{
    test_redis_kill(s);
    if (s->dir[0]) test_rm_tree(s->dir);
    memset(s, 0, sizeof *s);
}
