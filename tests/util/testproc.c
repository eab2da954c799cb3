/* testproc.c - see testproc.h. */
#include "testproc.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int test_proc_run(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = 0, r;
    char sink[4096];
    for (;;) {
        bool keep = out && n + 1 < cap;
        r = fread(keep ? out + n : sink, 1, keep ? cap - 1 - n : sizeof sink, p);
        if (r == 0) break;
        if (keep) n += r;
    }
    if (out && cap) out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* The first cap - 1 bytes of f from its start into buf (NUL-terminated). */
static void slurp(FILE *f, char *buf, size_t cap)
{
    if (!buf || !cap) return;
    rewind(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
}

int test_proc_runv(const char *const *argv, const char *in, char *out, size_t out_cap, char *err,
                   size_t err_cap)
{
    /* files, not pipes: a child that fills both stdout and stderr cannot block */
    FILE *fi = tmpfile(), *fo = tmpfile(), *fe = tmpfile();
    int rc = -1;
    if (!fi || !fo || !fe) goto out;
    if (in) fputs(in, fi);
    fflush(fi);
    rewind(fi);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) goto out;
    if (pid == 0) {
        dup2(fileno(fi), 0);
        dup2(fileno(fo), 1);
        dup2(fileno(fe), 2);
        alarm(600);                         /* a hung child ends the test, not the suite */
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) goto out;
    rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    slurp(fo, out, out_cap);
    slurp(fe, err, err_cap);
out:
    if (fi) fclose(fi);
    if (fo) fclose(fo);
    if (fe) fclose(fe);
    return rc;
}

void test_proc_sibling(const char *argv0, const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", argv0);
    char *cut = NULL;   /* the last "/tests/": the build tree's, not a parent folder's */
    for (char *f = strstr(buf, "/tests/"); f; f = strstr(f + 1, "/tests/")) cut = f;
    if (cut && (size_t)(cut - buf) + strlen(name) + 2 <= cap) snprintf(cut, cap - (size_t)(cut - buf), "/%s", name);
    else snprintf(buf, cap, "build/%s", name);
}
