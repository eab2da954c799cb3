/* testproc.h - running a program the way a user or a script would, for the
 * tests of the command line (never linked into the library). */
#ifndef KVLM_TESTPROC_H
#define KVLM_TESTPROC_H

#include <stddef.h>

/* Runs `cmd` through the shell; its stdout goes into out (at most cap - 1
 * bytes, NUL-terminated; the rest is read and dropped), or is dropped when out
 * is NULL. Returns the exit code, 128 if it did not exit normally, -1 if it
 * could not be started. */
int test_proc_run(const char *cmd, char *out, size_t cap);

/* Runs argv[0] with arguments argv[1..] (NULL-terminated; no shell, so no quoting),
 * stdin fed from in (NULL: empty). Its stdout goes into out and its stderr into err
 * (each at most cap - 1 bytes, NUL-terminated; NULL: dropped). A run longer than
 * 600 s is killed (SIGALRM). Returns the exit code, 128 + signal, or -1 if it could
 * not be started. */
int test_proc_runv(const char *const *argv, const char *in, char *out, size_t out_cap, char *err,
                   size_t err_cap);

/* The path of a program built next to the test binary: argv0 =
 * BUILD/tests/<module>/<test> gives BUILD/<name>; else "build/<name>". */
void test_proc_sibling(const char *argv0, const char *name, char *buf, size_t cap);

#endif
