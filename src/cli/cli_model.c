/* cli_model.c - finding and opening the model a subcommand runs on.
 * Room: cli; uses only include/kvlm.h. Prints its errors to stderr (the CLI
 * is the layer that may print). */
#include "cli/cli.h"

#include <errno.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

const char *cli_model_default_path(void)
{
    static char buf[4096];
    const char *cache = getenv("KVLM_CACHE"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    const char *dir = cache && *cache ? cache : xdg && *xdg ? xdg : home ? home : ".";
    const char *sub = cache && *cache ? "" : xdg && *xdg ? "/kvlm" : "/.cache/kvlm";
    snprintf(buf, sizeof buf, "%s%s/SmolLM2-135M-Instruct.Q4_1.gguf", dir, sub);
    return buf;
}

kvlm_model *cli_model_open(const char *path)
{
    if (!path) {
        path = cli_model_default_path();
        if (access(path, R_OK) != 0) {
            fprintf(stderr, "kvlm: no model given and none cached at %s\n"
                            "kvlm: fetch it with `make model` (scripts/fetch-model.sh) or pass -m PATH\n", path);
            return NULL;
        }
    }
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

const char *cli_kv_label(kvlm_kv_type k, kvlm_kv_type v, char *buf, size_t cap)
{
    if (v == KVLM_KV_SAME || v == k) snprintf(buf, cap, "%s", kvlm_kv_type_name(k));
    else snprintf(buf, cap, "%s/%s", kvlm_kv_type_name(k), kvlm_kv_type_name(v));
    return buf;
}
