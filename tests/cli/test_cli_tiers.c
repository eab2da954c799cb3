/* test_cli_tiers.c - the command line of issue 14 as a user meets it: the cache tier
 * flags of run, chat and serve (--help, bad values), run -f FILE -p TEXT, and
 * chat --session FILE (saved after every turn, resumed, hostile files refused).
 * Runs the kvlm binary built next to this test (BUILD/kvlm) on the real model.
 *
 * Two groups: "cli" needs only the command line; "cli_tiers" needs the engine's
 * disk tier (blocks written under --cache-dir and found again by a later process,
 * as --stats reports): its tests are named test_tiers_*. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cJSON.h>
#include "testproc.h"
#include "testutil.h"

#define OUT_CAP 65536
static char g_kvlm[4096];
static char g_out[OUT_CAP], g_err[OUT_CAP];

/* Runs `kvlm cmd [-m MODEL -t 2] args... NULL` with stdin from in (NULL: empty);
 * stdout into g_out, stderr into g_err; the exit code. with_model: add -m and -t. */
static int kvlm_v(const char *in, bool with_model, const char *cmd, va_list ap)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = g_kvlm;
    argv[n++] = cmd;
    const char *model = test_model_path();
    if (with_model && model) {
        argv[n++] = "-m";
        argv[n++] = model;
        argv[n++] = "-t";
        argv[n++] = "2";
    }
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 63) argv[n++] = a;
    argv[n] = NULL;
    return test_proc_runv(argv, in, g_out, sizeof g_out, g_err, sizeof g_err);
}

static int kvlm(const char *in, const char *cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    int rc = kvlm_v(in, true, cmd, ap);
    va_end(ap);
    return rc;
}

static int kvlm_bare(const char *cmd, ...)   /* no -m, no -t (usage checks) */
{
    va_list ap;
    va_start(ap, cmd);
    int rc = kvlm_v(NULL, false, cmd, ap);
    va_end(ap);
    return rc;
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* "prompt tokens      N" of --stats in g_err, or -1. */
static long stats_prompt_tokens(void)
{
    const char *p = strstr(g_err, "prompt tokens      ");
    long n = -1;
    if (p && sscanf(p, "prompt tokens %ld", &n) != 1) n = -1;
    return n;
}

/* How many entries of dir have names starting with prefix. */
static int count_entries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += !strncmp(e->d_name, prefix, strlen(prefix));
    closedir(d);
    return n;
}

/* ---- flags -------------------------------------------------------------------- */
static const char *const FLAGS[] = { "--cache-dir", "--cache-disk", "--cache-redis", "--cache-redis-ttl",
                                     "--cache-write", "--cache-compress" };
enum { N_FLAGS = sizeof FLAGS / sizeof FLAGS[0] };

/* run --help, chat --help and serve --help each list every tier flag, on one line of
 * its own that starts with it (after the option indent). */
static void test_help_lists_cache_flags(void **state)
{
    (void)state;
    static const char *const cmds[] = { "run", "chat", "serve" };
    for (size_t c = 0; c < 3; c++) {
        assert_int_equal(kvlm_bare(cmds[c], "--help", NULL), 0);
        for (size_t f = 0; f < N_FLAGS; f++) {
            int lines = 0;
            for (const char *l = g_out; l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
                const char *s = l;
                while (*s == ' ') s++;
                size_t n = strlen(FLAGS[f]);
                lines += !strncmp(s, FLAGS[f], n) && (s[n] == ' ' || s[n] == '\n');
            }
            if (lines != 1) fail_msg("kvlm %s --help: %s on %d lines", cmds[c], FLAGS[f], lines);
        }
    }
}

/* Bad values and combinations: exit 2 with a message naming the option, for every
 * command (a serve that took them would not return: the child's alarm would end it). */
static void test_cache_flag_values(void **state)
{
    (void)state;
    static const struct { const char *a[5]; const char *named; } bad[] = {
        { { "--cache-dir", NULL }, "--cache-dir" },                               /* missing value */
        { { "--cache-dir", "", NULL }, "--cache-dir" },
        { { "--cache-disk", "1G", NULL }, "--cache-dir" },                        /* without --cache-dir */
        { { "--cache-dir", "/tmp/x", "--cache-disk", "0", NULL }, "--cache-disk" },
        { { "--cache-dir", "/tmp/x", "--cache-disk", "12X", NULL }, "--cache-disk" },
        { { "--cache-dir", "/tmp/x", "--cache-disk", "-4G", NULL }, "--cache-disk" },
        { { "--cache-dir", "/tmp/x", "--cache-disk", "", NULL }, "--cache-disk" },
        { { "--cache-redis", "", NULL }, "--cache-redis" },
        { { "--cache-redis", "http://127.0.0.1:6379", NULL }, "--cache-redis" },
        { { "--cache-redis", "rediss://127.0.0.1:6379", NULL }, "TLS" },         /* not with hiredis 0.14 */
        { { "--cache-redis", "redis://a:1,,redis://b:2", NULL }, "--cache-redis" },
        { { "--cache-redis", "redis://a:1,", NULL }, "--cache-redis" },
        { { "--cache-redis", "redis://a", "--cache-redis-ttl", "0", NULL }, "--cache-redis-ttl" },
        { { "--cache-redis", "redis://a", "--cache-redis-ttl", "-3", NULL }, "--cache-redis-ttl" },
        { { "--cache-redis", "redis://a", "--cache-redis-ttl", "1.5", NULL }, "--cache-redis-ttl" },
        { { "--cache-redis", "redis://a", "--cache-redis-ttl", "99999999999", NULL }, "--cache-redis-ttl" },
        { { "--cache-redis-ttl", "60", NULL }, "--cache-redis URL" },             /* without --cache-redis */
        { { "--cache-dir", "/tmp/x", "--cache-write", "sometimes", NULL }, "--cache-write" },
        { { "--cache-dir", "/tmp/x", "--cache-write", NULL }, "--cache-write" },
        { { "--cache-write", "evict", NULL }, "--cache-write" },                  /* no tier */
        { { "--cache-compress", NULL }, "--cache-compress" },                     /* no tier */
    };
    static const char *const cmds[][3] = { { "run", "-p", "hi" }, { "chat", "-n", "1" }, { "serve", "--port", "0" } };
    for (size_t c = 0; c < 3; c++) {
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            const char *const *a = bad[b].a;
            int rc = kvlm_bare(cmds[c][0], cmds[c][1], cmds[c][2], a[0], a[1], a[2], a[3], a[4]);
            if (rc != 2) fail_msg("kvlm %s, case %zu (%s): exit %d, want 2", cmds[c][0], b, a[0], rc);
            if (!strstr(g_err, bad[b].named)) fail_msg("kvlm %s, case %zu: no \"%s\" in: %s", cmds[c][0], b,
                                                        bad[b].named, g_err);
        }
    }
    /* the tier options are not for batch or inspect, --session only for chat */
    assert_int_equal(kvlm_bare("batch", "-f", "/dev/null", "--cache-dir", "/tmp/x", NULL), 2);
    assert_int_equal(kvlm_bare("inspect", "--cache-dir", "/tmp/x", NULL), 2);
    assert_int_equal(kvlm_bare("run", "-p", "hi", "--session", "/tmp/s.json", NULL), 2);
}

/* Good values are taken: a run with every option given (a Redis that is not there is
 * no error: it costs misses) answers. */
static void test_cache_flags_accepted(void **state)
{
    (void)state;
    if (!test_model_path()) skip();
    char *dir = test_make_tmpdir("kvlm-cli-flags");
    assert_non_null(dir);
    char kv[4200], sock[4200];
    snprintf(kv, sizeof kv, "%s/kv", dir);
    snprintf(sock, sizeof sock, "unix://%s/none.sock", dir);
    assert_int_equal(kvlm(NULL, "run", "--raw", "-p", "The capital of France is", "--temp", "0", "-n", "4",
                          "--cache-dir", kv, "--cache-disk", "64M", "--cache-redis", sock, "--cache-redis-ttl",
                          "3600", "--cache-write", "evict", "--cache-compress", NULL), 0);
    assert_true(strlen(g_out) > 1);
    assert_int_equal(kvlm("Hi!\n", "chat", "--temp", "0", "-n", "4", "--cache-dir", kv, "--cache-disk", "1GiB",
                          "--cache-write", "through", NULL), 0);
    test_rm_tree(dir);
    free(dir);
}

/* ---- run -f --------------------------------------------------------------------- */
/* The prompt of -f FILE -p TEXT is the file's text, a blank line, then TEXT: the same
 * greedy tokens, and the same prompt token count, as -p with that text; -f alone is
 * -p with the file's text. With the chat template and without (--raw). */
static void test_run_file_and_prompt(void **state)
{
    (void)state;
    if (!test_model_path()) skip();
    static const char doc[] = "Notes from the trip. We left Lyon on Tuesday, crossed the Alps by train and "
                              "reached Torino at noon. The caf\xc3\xa9 by the station served espresso for one euro.";
    static const char q[] = "Which city did we reach at noon?";
    char path[] = "/tmp/kvlm_runf_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_file(path, doc, strlen(doc));
    char both[1024], a[OUT_CAP];
    snprintf(both, sizeof both, "%s\n\n%s", doc, q);
    const char *n_tok = test_quick() ? "6" : "24";
    for (int raw = 0; raw < 2; raw++) {
        const char *r = raw ? "--raw" : "--stats";   /* (--stats twice is --stats) */
        assert_int_equal(kvlm(NULL, "run", r, "-f", path, "-p", q, "--temp", "0", "-n", n_tok, "--stats", NULL), 0);
        memcpy(a, g_out, sizeof a);
        long pa = stats_prompt_tokens();
        assert_int_equal(kvlm(NULL, "run", r, "-p", both, "--temp", "0", "-n", n_tok, "--stats", NULL), 0);
        assert_string_equal(a, g_out);
        assert_true(strlen(a) > 1);
        assert_int_equal(pa, stats_prompt_tokens());
        /* the file's text is in the prompt: more tokens than the question alone */
        assert_int_equal(kvlm(NULL, "run", r, "-p", q, "-n", "1", "--stats", NULL), 0);
        assert_true(pa > stats_prompt_tokens() + 30);
    }
    /* -f alone: the file's text */
    assert_int_equal(kvlm(NULL, "run", "-f", path, "--temp", "0", "-n", n_tok, NULL), 0);
    memcpy(a, g_out, sizeof a);
    assert_int_equal(kvlm(NULL, "run", "-p", doc, "--temp", "0", "-n", n_tok, NULL), 0);
    assert_string_equal(a, g_out);
    unlink(path);
}

/* A missing or unreadable file, a directory, a NUL byte, invalid UTF-8 (each form the
 * standard names: a stray continuation byte, a truncated sequence, overlong forms, a
 * surrogate, beyond U+10FFFF, bytes never used) are clear errors (exit 1); the valid
 * forms of every length pass; a file too long for the context ends in the context's
 * error, even one that never ends (/dev/zero). */
static void test_run_file_errors(void **state)
{
    (void)state;
    if (!test_model_path()) skip();
    char *dir = test_make_tmpdir("kvlm-cli-runf");
    assert_non_null(dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/t.txt", dir);
    assert_int_equal(kvlm(NULL, "run", "-f", "/nonexistent/t.txt", "-n", "1", NULL), 1);
    assert_non_null(strstr(g_err, "/nonexistent/t.txt"));
    assert_int_equal(kvlm(NULL, "run", "-f", dir, "-n", "1", NULL), 1);
    static const struct { const char *bytes; size_t len; bool ok; } cases[] = {
        { "a\0b", 3, false },
        { "a\x80" "b", 3, false },             /* continuation byte alone */
        { "a\xe2\x82", 3, false },             /* truncated 3-byte form */
        { "\xc0\xaf", 2, false },              /* overlong '/' */
        { "\xe0\x80\xaf", 3, false },          /* overlong '/' */
        { "\xf0\x80\x80\xaf", 4, false },      /* overlong '/' */
        { "\xed\xa0\x80", 3, false },          /* U+D800, a surrogate */
        { "\xf4\x90\x80\x80", 4, false },      /* U+110000 */
        { "\xfe\xff", 2, false },
        { "caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e \xf4\x8f\xbf\xbf", 19, true },   /* é € 𝄞 U+10FFFF */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(path, cases[i].bytes, cases[i].len);
        int rc = kvlm(NULL, "run", "--raw", "-f", path, "-n", "1", NULL);
        if (rc != (cases[i].ok ? 0 : 1)) fail_msg("case %zu: exit %d", i, rc);
        if (!cases[i].ok && !strstr(g_err, cases[i].len == 3 && cases[i].bytes[1] == 0 ? "NUL" : "UTF-8"))
            fail_msg("case %zu: %s", i, g_err);
    }
    chmod(path, 0);
    if (access(path, R_OK) != 0) assert_int_equal(kvlm(NULL, "run", "-f", path, "-n", "1", NULL), 1);
    chmod(path, 0600);
    /* longer than a context of 64 tokens: the usual error, or the reader's bound */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 400; i++) fprintf(f, "word%d ", i);
    fclose(f);
    assert_int_equal(kvlm(NULL, "run", "-c", "64", "-f", path, "-n", "1", NULL), 1);
    assert_non_null(strstr(g_err, "context"));
    assert_int_equal(kvlm(NULL, "run", "-c", "64", "-f", "/dev/zero", "-n", "1", NULL), 1);
    assert_non_null(strstr(g_err, "context"));
    test_rm_tree(dir);
    free(dir);
}

/* ---- chat --session ------------------------------------------------------------- */
static const char *model_base_name(void)
{
    const char *m = test_model_path(), *s = strrchr(m, '/');
    return s ? s + 1 : m;
}

/* The session file at path, parsed and checked against the format; NULL if it is not
 * there. */
static cJSON *load_session(const char *path)
{
    char *t = test_read_file(path, NULL);
    if (!t) return NULL;
    cJSON *j = cJSON_Parse(t);
    free(t);
    assert_non_null(j);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(j, "version")->valueint, 1);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "model")), model_base_name());
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
    assert_true(cJSON_IsArray(msgs));
    int i = 0;
    for (const cJSON *m = msgs->child; m; m = m->next, i++) {
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "role")),
                            i % 2 ? "assistant" : "user");
        assert_non_null(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "content")));
    }
    return j;
}

static const char *msg_content(const cJSON *j, int i)
{
    const cJSON *m = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "messages"), i);
    assert_non_null(m);
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "content"));
}

/* A two-turn chat with --session writes both turns (what it printed is what it saved);
 * a chat of the first turn alone, then a second chat resuming its file with the second
 * line, gives the same file and the same greedy second reply, and says it resumed one
 * turn. No temporary file stays behind. */
static void test_chat_session_resume(void **state)
{
    (void)state;
    if (!test_model_path()) skip();
    char *dir = test_make_tmpdir("kvlm-cli-session");
    assert_non_null(dir);
    char one[4200], two[4200];
    snprintf(one, sizeof one, "%s/one.json", dir);
    snprintf(two, sizeof two, "%s/two.json", dir);
    const char *n = test_quick() ? "6" : "16";
    assert_int_equal(kvlm("Hi!\nWhat is 2+2?\n", "chat", "--session", one, "--temp", "0", "-n", n, NULL), 0);
    assert_null(strstr(g_err, "resumed"));
    cJSON *a = load_session(one);
    assert_non_null(a);
    assert_null(cJSON_GetObjectItemCaseSensitive(a, "system"));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(a, "messages")), 4);
    assert_string_equal(msg_content(a, 0), "Hi!");
    assert_string_equal(msg_content(a, 2), "What is 2+2?");
    char printed[OUT_CAP];
    snprintf(printed, sizeof printed, "%s\n%s\n", msg_content(a, 1), msg_content(a, 3));
    assert_string_equal(g_out, printed);
    assert_true(strlen(msg_content(a, 3)) > 0);

    assert_int_equal(kvlm("Hi!\n", "chat", "--session", two, "--temp", "0", "-n", n, NULL), 0);
    cJSON *b = load_session(two);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(b, "messages")), 2);
    cJSON_Delete(b);
    assert_int_equal(kvlm("What is 2+2?\n", "chat", "--session", two, "--temp", "0", "-n", n, NULL), 0);
    assert_non_null(strstr(g_err, "resumed 1 turn from"));
    snprintf(printed, sizeof printed, "%s\n", msg_content(a, 3));
    assert_string_equal(g_out, printed);
    b = load_session(two);
    assert_true(cJSON_Compare(a, b, true));
    cJSON_Delete(b);
    /* an empty stdin resumes and saves nothing new */
    assert_int_equal(kvlm(NULL, "chat", "--session", two, "-n", n, NULL), 0);
    b = load_session(two);
    assert_true(cJSON_Compare(a, b, true));
    cJSON_Delete(b);
    assert_int_equal(count_entries(dir, "two.json.") + count_entries(dir, "one.json."), 0);
    cJSON_Delete(a);
    test_rm_tree(dir);
    free(dir);
}

/* --system is saved; a resumed chat keeps it (the same reply as one chat of both
 * turns), and a different --system is refused rather than mixed in. */
static void test_chat_session_system(void **state)
{
    (void)state;
    if (!test_model_path()) skip();
    char *dir = test_make_tmpdir("kvlm-cli-session");
    assert_non_null(dir);
    char s1[4200], s2[4200];
    snprintf(s1, sizeof s1, "%s/s1.json", dir);
    snprintf(s2, sizeof s2, "%s/s2.json", dir);
    static const char sys[] = "You are a pirate. Answer in one short sentence.";
    const char *n = test_quick() ? "6" : "16";
    assert_int_equal(kvlm("Hello.\nWhere is the treasure?\n", "chat", "--system", sys, "--session", s1, "--temp",
                          "0", "-n", n, NULL), 0);
    cJSON *a = load_session(s1);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "system")), sys);
    assert_int_equal(kvlm("Hello.\n", "chat", "--system", sys, "--session", s2, "--temp", "0", "-n", n, NULL), 0);
    assert_int_equal(kvlm("Where is the treasure?\n", "chat", "--session", s2, "--temp", "0", "-n", n, NULL), 0);
    cJSON *b = load_session(s2);
    assert_true(cJSON_Compare(a, b, true));
    cJSON_Delete(b);
    char *before = test_read_file(s2, NULL);
    assert_int_equal(kvlm("Again?\n", "chat", "--system", "Another system.", "--session", s2, "-n", n, NULL), 2);
    assert_non_null(strstr(g_err, "--system"));
    char *after = test_read_file(s2, NULL);
    assert_string_equal(before, after);
    free(before);
    free(after);
    cJSON_Delete(a);
    test_rm_tree(dir);
    free(dir);
}

/* A session file that is not one is refused (exit 1, the reason on stderr) before
 * anything is generated, and left byte for byte as it was. */
static void test_chat_session_refused(void **state)
{
    (void)state;
    if (!test_model_path()) skip();
    char *dir = test_make_tmpdir("kvlm-cli-session");
    assert_non_null(dir);
    char path[4200], head[512], deep[200016];
    snprintf(path, sizeof path, "%s/bad.json", dir);
    snprintf(head, sizeof head, "{\"version\":1,\"model\":\"%s\",\"messages\":", model_base_name());
    for (int i = 0; i < 100000; i++) deep[i] = '[', deep[200000 - 1 - i] = ']';
    deep[200000] = '\0';
    static const char *const tails[] = {
        "[]}",                                            /* (the valid base: checked below) */
        "",                                               /* truncated */
        "[{\"role\":\"user\",\"content\":\"Hi\"},",       /* truncated in the array */
        "{}}",                                            /* messages not an array */
        "[{\"role\":\"assistant\",\"content\":\"Hi\"},{\"role\":\"user\",\"content\":\"Hi\"}]}",
        "[{\"role\":\"user\",\"content\":\"Hi\"}]}",     /* a user turn with no reply */
        "[{\"role\":\"user\",\"content\":5},{\"role\":\"assistant\",\"content\":\"x\"}]}",
        "[{\"role\":\"user\"},{\"role\":\"assistant\",\"content\":\"x\"}]}",
        "[{\"role\":\"system\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":\"x\"}]}",
        "[\"Hi\",\"Hello\"]}",
        "[{\"role\":\"user\",\"content\":\"\xc3(\"},{\"role\":\"assistant\",\"content\":\"x\"}]}",   /* not UTF-8 */
        "[]} trailing",
    };
    char doc[256 * 1024];
    for (size_t i = 0; i < sizeof tails / sizeof tails[0] + 9; i++) {
        size_t len;
        if (i < sizeof tails / sizeof tails[0]) {
            len = (size_t)snprintf(doc, sizeof doc, "%s%s", head, tails[i]);
        } else {
            static const char *const whole[] = {
                "", "not json", "[]", "null",
                "{\"version\":2,\"model\":\"m\",\"messages\":[]}",
                "{\"version\":\"1\",\"model\":\"m\",\"messages\":[]}",
                "{\"version\":1,\"messages\":[]}",
                "{\"version\":1,\"model\":\"m\",\"system\":7,\"messages\":[]}",
                NULL,                                     /* deep nesting */
            };
            const char *w = whole[i - sizeof tails / sizeof tails[0]];
            len = (size_t)snprintf(doc, sizeof doc, "%s", w ? w : deep);
        }
        write_file(path, doc, len);
        int rc = kvlm("Hi!\n", "chat", "--session", path, "-n", "2", NULL);
        char *after = test_read_file(path, NULL);
        assert_non_null(after);
        if (i == 0) {                 /* the base is valid: resumed with 0 turns, then saved */
            assert_int_equal(rc, 0);
            assert_non_null(strstr(g_err, "resumed 0 turns"));
            free(after);
            continue;
        }
        if (rc != 1) fail_msg("case %zu: exit %d, want 1 (%.80s)", i, rc, doc);
        if (!strstr(g_err, "cannot resume")) fail_msg("case %zu: %s", i, g_err);
        if (strlen(g_out) != 0) fail_msg("case %zu: generated %s", i, g_out);
        if (strcmp(after, doc)) fail_msg("case %zu: the file was changed", i);
        free(after);
    }
    /* a NUL byte inside, and a file over the 64 MiB bound (sparse: no disk) */
    write_file(path, "{\"version\":1,\0\"model\":\"m\",\"messages\":[]}", 40);
    assert_int_equal(kvlm("Hi!\n", "chat", "--session", path, "-n", "2", NULL), 1);
    int fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)65 << 20), 0);
    close(fd);
    assert_int_equal(kvlm("Hi!\n", "chat", "--session", path, "-n", "2", NULL), 1);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, (off_t)65 << 20);
    /* a directory, and a file that cannot be read */
    assert_int_equal(kvlm("Hi!\n", "chat", "--session", dir, "-n", "2", NULL), 1);
    write_file(path, "{}", 2);
    chmod(path, 0);
    if (access(path, R_OK) != 0) assert_int_equal(kvlm("Hi!\n", "chat", "--session", path, "-n", "2", NULL), 1);
    chmod(path, 0600);
    assert_int_equal(count_entries(dir, "bad.json."), 0);
    test_rm_tree(dir);
    free(dir);
}

/* A session made with another model: a warning, then the chat goes on and saves
 * under this model's name. */
static void test_chat_session_other_model(void **state)
{
    (void)state;
    if (!test_model_path()) skip();
    char *dir = test_make_tmpdir("kvlm-cli-session");
    assert_non_null(dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/other.json", dir);
    static const char doc[] = "{\"version\":1,\"model\":\"other-model.gguf\",\"messages\":["
                              "{\"role\":\"user\",\"content\":\"Hi!\"},"
                              "{\"role\":\"assistant\",\"content\":\"Hello! How can I help?\"}]}";
    write_file(path, doc, strlen(doc));
    assert_int_equal(kvlm("Thanks.\n", "chat", "--session", path, "--temp", "0", "-n", "4", NULL), 0);
    assert_non_null(strstr(g_err, "warning"));
    assert_non_null(strstr(g_err, "other-model.gguf"));
    assert_non_null(strstr(g_err, "resumed 1 turn from"));
    cJSON *j = load_session(path);   /* checks "model" is this one's now */
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "messages")), 4);
    assert_string_equal(msg_content(j, 1), "Hello! How can I help?");
    assert_string_equal(msg_content(j, 2), "Thanks.");
    cJSON_Delete(j);
    test_rm_tree(dir);
    free(dir);
}

/* ---- needs the engine's tiers ------------------------------------------------------ */
/* "prompt tokens from tiers: N" of --stats in g_err, or -1 (no tiers reported). */
static long stats_tier_tokens(void)
{
    const char *p = strstr(g_err, "prompt tokens from tiers: ");
    return p ? strtol(p + strlen("prompt tokens from tiers: "), NULL, 10) : -1;
}

/* A long document (14 short paragraphs), written to dir/doc.txt; its path in buf. */
static void write_doc(const char *dir, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/doc.txt", dir);
    FILE *f = fopen(buf, "w");
    assert_non_null(f);
    for (int i = 0; i < 14; i++)
        fprintf(f, "Section %d. The committee met on day %d and agreed on item %d of the budget, "
                   "with %d votes for and %d against.\n", i + 1, 3 * i + 2, i * 7 + 1, 10 + i, i % 4);
    fclose(f);
}

/* run -f DOC -p Q --cache-dir DIR, twice, as separate processes: the second finds the
 * first's blocks on disk (--stats: a "tier disk" line with hits, and prompt tokens from
 * tiers for all but the last block or so), and prints the same greedy tokens. The same
 * with --cache-write evict (blocks go down when RAM evicts them or at exit). The
 * directory is created. */
static void test_tiers_run_reuses_disk(void **state)
{
    (void)state;
    if (!test_model_path()) skip();
    char *dir = test_make_tmpdir("kvlm-cli-tiers");
    assert_non_null(dir);
    char doc[4200], kv[4200], first[OUT_CAP];
    write_doc(dir, doc, sizeof doc);
    static const char *const modes[] = { "through", "evict" };
    for (int m = 0; m < 2; m++) {
        snprintf(kv, sizeof kv, "%s/kv-%s/sub", dir, modes[m]);
        assert_int_equal(kvlm(NULL, "run", "-f", doc, "-p", "What was agreed in section 3?", "--temp", "0", "-n",
                              "8", "--cache-dir", kv, "--cache-write", modes[m], "--stats", NULL), 0);
        struct stat st;
        assert_int_equal(stat(kv, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_non_null(strstr(g_err, "tier disk"));
        assert_int_equal(stats_tier_tokens(), 0);
        memcpy(first, g_out, sizeof first);
        long prompt = stats_prompt_tokens();
        assert_true(prompt > 200);
        assert_int_equal(kvlm(NULL, "run", "-f", doc, "-p", "What was agreed in section 3?", "--temp", "0", "-n",
                              "8", "--cache-dir", kv, "--cache-write", modes[m], "--stats", NULL), 0);
        assert_string_equal(first, g_out);
        long from_tiers = stats_tier_tokens();
        if (from_tiers < prompt - 32) fail_msg("%s: %ld of %ld prompt tokens from tiers", modes[m], from_tiers, prompt);
        long hits = 0;
        const char *t = strstr(g_err, "tier disk");
        assert_true(t && sscanf(t, "tier disk hits %ld", &hits) == 1);
        assert_true(hits >= from_tiers / 16);
    }
    test_rm_tree(dir);
    free(dir);
}

/* chat --session with --cache-dir, restarted: the resumed turn's prompt (the whole
 * conversation) takes the earlier turns' K/V from disk, and the reply is the one a
 * single chat gives. */
static void test_tiers_chat_session_from_disk(void **state)
{
    (void)state;
    if (!test_model_path()) skip();
    char *dir = test_make_tmpdir("kvlm-cli-tiers");
    assert_non_null(dir);
    char kv[4200], s[4200], all[4200], want[OUT_CAP];
    snprintf(kv, sizeof kv, "%s/kv", dir);
    snprintf(s, sizeof s, "%s/talk.json", dir);
    snprintf(all, sizeof all, "%s/all.json", dir);
    assert_int_equal(kvlm("Hi! Tell me about the Moon.\nHow far away is it?\n", "chat", "--session", all, "--temp",
                          "0", "-n", "16", NULL), 0);
    cJSON *a = load_session(all);
    snprintf(want, sizeof want, "%s\n", msg_content(a, 3));
    assert_int_equal(kvlm("Hi! Tell me about the Moon.\n", "chat", "--session", s, "--temp", "0", "-n", "16",
                          "--cache-dir", kv, NULL), 0);
    assert_int_equal(kvlm("How far away is it?\n", "chat", "--session", s, "--temp", "0", "-n", "16", "--cache-dir",
                          kv, "--stats", NULL), 0);
    assert_string_equal(g_out, want);
    assert_true(stats_tier_tokens() >= 32);
    assert_non_null(strstr(g_err, "from tiers)"));
    cJSON_Delete(a);
    test_rm_tree(dir);
    free(dir);
}

/* SIGINT while run generates: it stops at the next token, exits 130, and the blocks
 * it published are on disk (the exit path flushed the tier's queue): a second run
 * takes its prompt from there. */
static void test_tiers_sigint_flushes(void **state)
{
    (void)state;
    const char *model = test_model_path();
    if (!model) skip();
    char *dir = test_make_tmpdir("kvlm-cli-tiers");
    assert_non_null(dir);
    char doc[4200], kv[4200];
    write_doc(dir, doc, sizeof doc);
    snprintf(kv, sizeof kv, "%s/kv", dir);
    int out[2];
    assert_int_equal(pipe(out), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) dup2(null, 2);
        execl(g_kvlm, g_kvlm, "run", "-m", model, "-t", "2", "-f", doc, "-p", "Section 15. The committee met on day", "--temp",
              "0", "-n", "100000", "--raw", "--cache-dir", kv, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char c;
    assert_int_equal(read(out[0], &c, 1), 1);          /* generating: the prompt is prefilled */
    kill(pid, SIGINT);
    char sink[4096];
    while (read(out[0], sink, sizeof sink) > 0) {}
    close(out[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 130);
    assert_int_equal(kvlm(NULL, "run", "-f", doc, "-p", "Section 15. The committee met on day", "--temp", "0", "-n", "4", "--raw",
                          "--cache-dir", kv, "--stats", NULL), 0);
    const long prompt = stats_prompt_tokens(), from_tiers = stats_tier_tokens();
    if (from_tiers < prompt - 32) fail_msg("%ld of %ld prompt tokens from the tier after SIGINT", from_tiers, prompt);
    test_rm_tree(dir);
    free(dir);
}

int main(int argc, char **argv)
{
    (void)argc;
    test_proc_sibling(argv[0], "kvlm", g_kvlm, sizeof g_kvlm);
    const struct CMUnitTest cli[] = {
        cmocka_unit_test(test_help_lists_cache_flags),
        cmocka_unit_test(test_cache_flag_values),
        cmocka_unit_test(test_cache_flags_accepted),
        cmocka_unit_test(test_run_file_and_prompt),
        cmocka_unit_test(test_run_file_errors),
        cmocka_unit_test(test_chat_session_resume),
        cmocka_unit_test(test_chat_session_system),
        cmocka_unit_test(test_chat_session_refused),
        cmocka_unit_test(test_chat_session_other_model),
    };
    const struct CMUnitTest tiers[] = {   /* need the engine's disk tier */
        cmocka_unit_test(test_tiers_run_reuses_disk),
        cmocka_unit_test(test_tiers_chat_session_from_disk),
        cmocka_unit_test(test_tiers_sigint_flushes),
    };
    int failed = cmocka_run_group_tests_name("cli", cli, NULL, NULL);
    failed += cmocka_run_group_tests_name("cli_tiers", tiers, NULL, NULL);
    return failed ? 1 : 0;
}
