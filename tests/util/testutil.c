/* testutil.c - see testutil.h. */
#include "testutil.h"
#include "kvlm.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* path of name in the model cache ($KVLM_CACHE, else $XDG_CACHE_HOME/kvlm, else ~/.cache/kvlm) */
static void cache_file(const char *name, char *buf, size_t cap)
{
    const char *cache = getenv("KVLM_CACHE");
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    if (cache && *cache) snprintf(buf, cap, "%s/%s", cache, name);
    else if (xdg && *xdg) snprintf(buf, cap, "%s/kvlm/%s", xdg, name);
    else snprintf(buf, cap, "%s/.cache/kvlm/%s", home ? home : ".", name);
}

const char *test_model_path(void)
{
    static char buf[4096];
    const char *env = getenv("KVLM_MODEL");
    if (env && *env) return access(env, R_OK) == 0 ? env : NULL;
    cache_file("SmolLM2-135M-Instruct.Q4_1.gguf", buf, sizeof buf);
    return access(buf, R_OK) == 0 ? buf : NULL;
}

const char *test_gemma3_path(void)
{
    static char buf[4096];
    const char *env = getenv("KVLM_GEMMA3");
    if (env && *env) return access(env, R_OK) == 0 ? env : NULL;
    cache_file("gemma-3-270m-q4_k_m.gguf", buf, sizeof buf);
    return access(buf, R_OK) == 0 ? buf : NULL;
}

const char *test_data_path(const char *rel)
{
    static char buf[4096];
    const char *dir = getenv("KVLM_TEST_DATA");
    snprintf(buf, sizeof buf, "%s/%s", (dir && *dir) ? dir : "tests/data", rel);
    return buf;
}

const char *test_fixture_path(const char *rel)
{
    static char buf[4096];
    const char *env = getenv("KVLM_FIXTURES"), *cache = getenv("KVLM_CACHE");
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (env && *env) snprintf(buf, sizeof buf, "%s/%s", env, rel);
    else if (cache && *cache) snprintf(buf, sizeof buf, "%s/fixtures/%s", cache, rel);
    else if (xdg && *xdg) snprintf(buf, sizeof buf, "%s/kvlm/fixtures/%s", xdg, rel);
    else snprintf(buf, sizeof buf, "%s/.cache/kvlm/fixtures/%s", home ? home : ".", rel);
    return buf;
}

char *test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) != 0) goto fail;
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) goto fail;
    buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) goto fail;
    buf[n] = '\0';
    if (len) *len = (size_t)n;
    fclose(f);
    return buf;
fail:
    free(buf);
    fclose(f);
    return NULL;
}

bool test_quick(void)
{
    return getenv("KVLM_TEST_QUICK") != NULL;
}

int test_model_load(kvlm_model **m, int64_t *n_vocab)
{
    return test_model_load_path(test_model_path(), m, n_vocab);
}

int test_model_load_path(const char *path, kvlm_model **m, int64_t *n_vocab)
{
    *m = NULL;
    if (!path) return 0;
    char err[256];
    if (kvlm_model_load(path, m, err, sizeof err) != KVLM_OK) {
        fprintf(stderr, "load: %s\n", err);
        return -1;
    }
    kvlm_model_info in;
    kvlm_model_get_info(*m, &in);
    *n_vocab = in.n_vocab;
    return 0;
}

uint64_t test_mix64(uint64_t x)
{
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27; x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint8_t *test_blob(uint64_t key, size_t len)
{
    uint8_t *b = malloc(len ? len : 1);
    if (!b) return NULL;
    for (size_t i = 0; i < len; i++)   /* b: [len] */
        b[i] = (uint8_t)(test_mix64(key * 0x100000001b3ull + i / 8) >> (8 * (i % 8)));
    return b;
}

double test_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void test_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}

char *test_make_tmpdir(const char *prefix)
{
    const char *t = getenv("TMPDIR");
    size_t n = strlen(t && *t ? t : "/tmp") + strlen(prefix) + 16;
    char *p = malloc(n);
    if (!p) return NULL;
    snprintf(p, n, "%s/%s-XXXXXX", t && *t ? t : "/tmp", prefix);
    if (!mkdtemp(p)) { free(p); return NULL; }
    return p;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

int test_rm_tree(const char *dir)
{
    return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}
