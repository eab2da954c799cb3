/* testutil.c - see testutil.h. */
#include "testutil.h"
#include "kvlm.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

const char *test_model_path(void)
{
    static char buf[4096];
    const char *env = getenv("KVLM_MODEL");
    if (env && *env) return access(env, R_OK) == 0 ? env : NULL;
    const char *cache = getenv("KVLM_CACHE");
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    if (cache && *cache)
        snprintf(buf, sizeof buf, "%s/SmolLM2-135M-Instruct.Q4_1.gguf", cache);
    else if (xdg && *xdg)
        snprintf(buf, sizeof buf, "%s/kvlm/SmolLM2-135M-Instruct.Q4_1.gguf", xdg);
    else
        snprintf(buf, sizeof buf, "%s/.cache/kvlm/SmolLM2-135M-Instruct.Q4_1.gguf",
                 home ? home : ".");
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
    *m = NULL;
    const char *path = test_model_path();
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
