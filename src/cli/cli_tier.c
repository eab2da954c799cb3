/* cli_tier.c - the cache tier options shared by `run`, `chat` and `serve`
 * (--cache-dir, --cache-disk, --cache-redis, --cache-redis-ttl, --cache-write,
 * --cache-compress) -> kvlm_tier_params, their --help lines, and their --stats lines.
 * Room: cli; uses only include/kvlm.h. One parser for every command, so the flags
 * mean the same everywhere; the library checks what only it can (the directory is
 * usable, the whole Redis URL parses: exit 1 then), this file what a user mistypes
 * (exit 2). */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

enum {
    GIVEN_DIR = 1, GIVEN_DISK = 2, GIVEN_REDIS = 4, GIVEN_TTL = 8, GIVEN_WRITE = 16, GIVEN_COMPRESS = 32,
};

static const struct { const char *opt, *help; } TIER_HELP[] = {
    { "--cache-dir DIR", "disk tier: K/V blocks also go to DIR (created), so a restart finds them" },
    { "--cache-disk SIZE", "disk tier budget, K/M/G as for --kv-mem (default 4G; needs --cache-dir)" },
    { "--cache-redis URL[,URL...]", "Redis tier: redis://[user:pass@]host[:port][/db] or unix:///path.sock; "
                                    "several: spread by hash" },
    { "--cache-redis-ttl SECONDS", "TTL of each Redis key (default: none; needs --cache-redis)" },
    { "--cache-write through|evict", "through (default): every full block goes to the tiers; evict: only what RAM evicts" },
    { "--cache-compress", "zstd-compress blocks in the tiers" },
};

void cli_tier_usage(FILE *f, int col)
{
    for (size_t i = 0; i < sizeof TIER_HELP / sizeof TIER_HELP[0]; i++) {
        int w = 6 + (int)strlen(TIER_HELP[i].opt);
        fprintf(f, "      %s%*s%s\n", TIER_HELP[i].opt, w < col ? col - w : 2, "", TIER_HELP[i].help);
    }
}

/* Every comma-separated URL non-empty, with a scheme kvlm's Redis tier speaks. */
static const char *redis_urls_problem(const char *v)
{
    if (!*v) return "no URL";
    for (const char *u = v; u;) {
        const char *comma = strchr(u, ',');
        size_t n = comma ? (size_t)(comma - u) : strlen(u);
        if (n == 0) return "an empty URL between commas";
        if (n >= 9 && !strncmp(u, "rediss://", 9)) return "rediss:// (TLS) is not supported: hiredis 0.14 has no TLS";
        bool redis = n > 8 && !strncmp(u, "redis://", 8), unix_sock = n > 8 && !strncmp(u, "unix:///", 8);
        if (!redis && !unix_sock) return "each URL is redis://[user:password@]host[:port][/db] or unix:///path.sock";
        u = comma ? comma + 1 : NULL;
    }
    return NULL;
}

int cli_tier_parse(cli_tier_args *t, const char *prog, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    unsigned bit = !strcmp(a, "--cache-dir") ? GIVEN_DIR : !strcmp(a, "--cache-disk") ? GIVEN_DISK
                 : !strcmp(a, "--cache-redis") ? GIVEN_REDIS : !strcmp(a, "--cache-redis-ttl") ? GIVEN_TTL
                 : !strcmp(a, "--cache-write") ? GIVEN_WRITE : !strcmp(a, "--cache-compress") ? GIVEN_COMPRESS : 0;
    if (!bit) return 0;
    t->given |= bit;
    if (bit == GIVEN_COMPRESS) {
        t->p.compress = true;
        return 1;
    }
    if (!v) {
        fprintf(stderr, "%s: option %s needs a value\n", prog, a);
        return -1;
    }
    ++*i;
    const char *why = NULL;
    size_t size;
    int64_t n;
    switch (bit) {
    case GIVEN_DIR:
        if (*v) t->p.dir = v;
        else why = "an empty directory name";
        break;
    case GIVEN_DISK:
        if (cli_parse_size(v, &size) == 0) t->p.disk_bytes = (int64_t)size;
        else why = "a size such as 512M or 4G";
        break;
    case GIVEN_REDIS:
        if (!(why = redis_urls_problem(v))) t->p.redis = v;
        break;
    case GIVEN_TTL:
        if (cli_parse_i64(v, 1, INT32_MAX, &n) == 0) t->p.redis_ttl_s = n;
        else why = "a whole number of seconds, at least 1";
        break;
    default:                                        /* GIVEN_WRITE */
        if (!strcmp(v, "through")) t->p.write = KVLM_CACHE_WRITE_THROUGH;
        else if (!strcmp(v, "evict")) t->p.write = KVLM_CACHE_WRITE_EVICT;
        else why = "through or evict";
    }
    if (why) {
        fprintf(stderr, "%s: bad value for %s: '%s' (%s)\n", prog, a, v, why);
        return -1;
    }
    return 1;
}

int cli_tier_check(const cli_tier_args *t, const char *prog)
{
    const char *lone = (t->given & GIVEN_DISK) && !(t->given & GIVEN_DIR) ? "--cache-disk sets the disk tier's budget: "
                                                                            "give --cache-dir DIR too"
                     : (t->given & GIVEN_TTL) && !(t->given & GIVEN_REDIS) ? "--cache-redis-ttl sets the TTL of Redis "
                                                                            "keys: give --cache-redis URL too"
                     : NULL;
    if (!lone && (t->given & (GIVEN_WRITE | GIVEN_COMPRESS)) && !(t->given & (GIVEN_DIR | GIVEN_REDIS)))
        lone = (t->given & GIVEN_WRITE) ? "--cache-write applies to the tiers: give --cache-dir or --cache-redis too"
                                        : "--cache-compress applies to the tiers: give --cache-dir or --cache-redis too";
    if (!lone) return 0;
    fprintf(stderr, "%s: %s\n", prog, lone);
    return -1;
}

/* 1536 -> "1.5 KiB": buf holds at least 16 bytes. */
static const char *human_bytes(int64_t b, char *buf, size_t cap)
{
    static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    double x = (double)b;
    size_t u = 0;
    while (x >= 1024 && u + 1 < sizeof unit / sizeof unit[0]) x /= 1024, u++;
    if (u == 0) snprintf(buf, cap, "%lld B", (long long)b);
    else snprintf(buf, cap, "%.1f %s", x, unit[u]);
    return buf;
}

void cli_tier_print_stats(FILE *f, const kvlm_stats *s)
{
    if (s->cache.n_tiers <= 0) return;
    for (int i = 0; i < s->cache.n_tiers && i < KVLM_MAX_TIERS; i++) {
        const kvlm_tier_stats *t = &s->cache.tier[i];
        int64_t timed = 0;   /* lookups in the latency histogram */
        for (int b = 0; b < KVLM_TIER_HIST_BUCKETS; b++) timed += t->load_hist[b];
        char label[32], rd[16], wr[16], st[16], mean[32];
        snprintf(label, sizeof label, "tier %.*s", (int)sizeof t->name, t->name);
        if (timed > 0) snprintf(mean, sizeof mean, "%.3f ms", 1e3 * t->load_seconds / (double)timed);
        else snprintf(mean, sizeof mean, "-");
        fprintf(f, "%-18s hits %lld, misses %lld, invalid %lld, errors %lld; puts %lld, dropped %lld, "
                   "evicted %lld; read %s, written %s; stored %lld items (%s); mean load %s\n",
                label, (long long)t->hits, (long long)t->misses, (long long)t->invalid, (long long)t->errors,
                (long long)t->puts, (long long)t->dropped, (long long)t->evictions,
                human_bytes(t->bytes_read, rd, sizeof rd), human_bytes(t->bytes_written, wr, sizeof wr),
                (long long)t->n_items, human_bytes(t->bytes_stored, st, sizeof st), mean);
        if (timed == 0) continue;
        static const double bounds[KVLM_TIER_HIST_BUCKETS - 1] = KVLM_TIER_HIST_BOUNDS_MS;
        fprintf(f, "%-18s load latency:", "");         /* the non-empty buckets of load_hist */
        for (int b = 0; b < KVLM_TIER_HIST_BUCKETS; b++) {
            if (!t->load_hist[b]) continue;
            if (b < KVLM_TIER_HIST_BUCKETS - 1) fprintf(f, " <=%gms %lld", bounds[b], (long long)t->load_hist[b]);
            else fprintf(f, " >%gms %lld", bounds[b - 1], (long long)t->load_hist[b]);
        }
        fputc('\n', f);
    }
    fprintf(f, "prompt tokens from tiers: %lld\n", (long long)s->n_reused_tier);
}
