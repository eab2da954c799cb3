/* testproc.c - see testproc.h. */
#include "testproc.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

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

void test_proc_sibling(const char *argv0, const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", argv0);
    char *cut = NULL;   /* the last "/tests/": the build tree's, not a parent folder's */
    for (char *f = strstr(buf, "/tests/"); f; f = strstr(f + 1, "/tests/")) cut = f;
    if (cut && (size_t)(cut - buf) + strlen(name) + 2 <= cap) snprintf(cut, cap - (size_t)(cut - buf), "/%s", name);
    else snprintf(buf, cap, "build/%s", name);
}
