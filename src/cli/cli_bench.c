/* cli_bench.c - `kvlm bench`: how fast prompts are processed and tokens are
 * generated, in the spirit of llama-bench, plus the cached-vs-recomputed
 * latency curve and a one-step mode for callgrind.
 * Room: cli. May touch: include/kvlm.h (always starting from the default
 * params), libc, cJSON for --json, and <valgrind/callgrind.h> when present.
 *
 * The tests, each run -r times after one untimed warm-up; the table shows the
 * median tok/s with min-max and the standard deviation over the repetitions:
 *   ppN        N random token ids decoded as one batch into an empty sequence
 *              (prompt processing); tok/s = N / time of the one decode call.
 *   tgN @ dD   the sequence first holds D random tokens (filled untimed), then
 *              N single-token decode steps are timed; tok/s = N / their time.
 *              The ids fed are random too, so no sampling is timed, but every
 *              step still computes the full next-token logits (as llama.cpp's).
 *              Each repetition truncates back to D, so the fill is paid once.
 * One context serves all tests: n_ctx = max(pp, max depth + tg), so the peak
 * RSS reported is that of the largest test, as it would be for one user.
 *
 *   --no-kv-cache-curve N   feeds one token and greedily generates N-1 more,
 *              once with the cache and once with no_kv_cache (every step
 *              recomputes the whole sequence), timing every step: per token,
 *              O(1) weight work + O(n) attention vs O(n) weight work. Writes
 *              the numbers (CSV) and an SVG plot; checks both paths chose the
 *              same tokens (they must: the logits are bitwise equal).
 *   --callgrind-step D      fills D positions (zero K/V), then runs exactly one decode step
 *              at position D between CALLGRIND_START/STOP_INSTRUMENTATION
 *              (see bench/callgrind). */
#include "cli/cli.h"
#include "cli/cli_bench_plot.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define BENCH_HAVE_CALLGRIND 1
#endif
#endif
#ifndef BENCH_HAVE_CALLGRIND
#define BENCH_HAVE_CALLGRIND 0
#define CALLGRIND_START_INSTRUMENTATION ((void)0)
#define CALLGRIND_STOP_INSTRUMENTATION ((void)0)
#define CALLGRIND_ZERO_STATS ((void)0)
#define CALLGRIND_DUMP_STATS_AT(s) ((void)(s))
#endif

#define ERRLEN 512
enum { BENCH_MAX_DEPTHS = 32 };

typedef struct bench_opts {
    const char *model;
    int n_threads;                     /* 0: online cores */
    int reps;
    int64_t n_prompt, n_gen;           /* 0 skips the test */
    int64_t depths[BENCH_MAX_DEPTHS];
    size_t n_depths;
    kvlm_kv_type kv_type, kv_type_v;
    int64_t kv_residual;
    uint64_t seed;
    bool json, help;
    int64_t curve_n;                   /* > 0: the latency-curve mode */
    const char *plot, *csv;
    int64_t callgrind_depth;           /* >= 0: the callgrind mode */
} bench_opts;

typedef struct bench_result {
    char test[32];                     /* "pp512", "tg128" */
    int64_t n, depth;                  /* tokens timed per repetition; tokens before them */
    double *tps;                       /* [reps] tokens per second */
    double median, min, max, mean, stddev;
} bench_result;

static void usage(FILE *o)
{
    fprintf(o,
        "usage: kvlm bench [options]\n"
        "\n"
        "Measures prompt processing (ppN: N tokens as one batch) and generation\n"
        "(tgN @ dD: N single-token steps after D tokens in the cache), like llama-bench.\n"
        "Random token ids (seeded), no sampling in the timing; each test runs REPS times\n"
        "after a warm-up and reports the median tok/s, min-max and stddev, then peak RSS.\n"
        "\n"
        "options:\n"
        "  -m, --model PATH          GGUF model, or smollm2 (the default) / gemma3, fetched on first use\n"
        "  -t, --threads N           threads (default: online cores)\n"
        "  -r, --reps N              repetitions per test (default 3)\n"
        "  -p, --n-prompt N          prompt tokens of the pp test (default 512; 0 = skip)\n"
        "  -n, --n-gen N             generated tokens of each tg test (default 128; 0 = skip)\n"
        "  -d, --depths LIST         comma-separated tokens in the cache before each tg test\n"
        "                            (default 0,1024,4096,8000)\n"
        "      --cache-type T        K/V element type: f16 (default), f32, bf16, q8, q4, kivi4 or kivi2\n"
        "      --kv-residual N       KIVI: positions per residual group read in f32 (16..256 dividing 256; KIVI K: 64, 128, 256; default 128)\n"
        "      --cache-type-k T, --cache-type-v T   the same for K or V alone\n"
        "      --seed N              seed of the random token ids (default 1234)\n"
        "      --json                machine-readable results on stdout instead of the table\n"
        "      --no-kv-cache-curve N instead of the tests: generate N tokens with the cache and\n"
        "                            again without it (no_kv_cache), timing every step; prints\n"
        "                            a summary, writes the CSV (position,ms_cached,ms_nocache)\n"
        "                            and an SVG plot (try N = 256: about a minute on 2 cores)\n"
        "      --plot FILE.svg       where the curve's plot goes; the CSV goes next to it\n"
        "                            (FILE.csv) unless --csv is given\n"
        "      --csv FILE            where the curve's numbers go (default: stdout without --plot)\n"
        "      --callgrind-step D    fill D positions with zero K/V (not computed), then run one\n"
        "                            decode step at position D with\n"
        "                            callgrind instrumentation on (run under valgrind; see\n"
        "                            bench/callgrind)%s\n"
        "  -h, --help                this help\n"
        "\n"
        "exit codes: 0 ok, 1 runtime error, 2 usage error\n"
        "\n"
        "examples:\n"
        "  kvlm bench -t 2                                 pp512, tg128 @ d0, d1024, d4096, d8000\n"
        "  kvlm bench -t 2 -r 5 -d 0,4096 --json\n"
        "  kvlm bench -t 2 --no-kv-cache-curve 256 --plot curve.svg\n"
        "  valgrind --tool=callgrind --instr-atstart=no kvlm bench -t 1 --callgrind-step 4096\n",
        BENCH_HAVE_CALLGRIND ? "" : " [built without valgrind/callgrind.h: a no-op]");
}

/* ---- options ------------------------------------------------------------------------ */

static int parse_depths(const char *s, bench_opts *o)
{
    o->n_depths = 0;
    char buf[1024];
    if (strlen(s) >= sizeof buf) return -1;
    strcpy(buf, s);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (o->n_depths == BENCH_MAX_DEPTHS || cli_parse_i64(tok, 0, 1 << 24, &o->depths[o->n_depths])) return -1;
        o->n_depths++;
    }
    return o->n_depths ? 0 : -1;
}

/* Returns 0, or 2 after printing a usage error. */
static int parse_args(int argc, char **argv, bench_opts *o)
{
    memset(o, 0, sizeof *o);
    o->reps = 3;
    o->n_prompt = 512;
    o->n_gen = 128;
    o->kv_type = kvlm_ctx_default_params().kv_type;
    o->kv_type_v = KVLM_KV_SAME;
    o->seed = 1234;
    o->callgrind_depth = -1;
    parse_depths("0,1024,4096,8000", o);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t n;
#define NEED_VALUE() do { if (!v) { fprintf(stderr, "kvlm bench: option %s needs a value\n", a); return 2; } i++; } while (0)
#define BAD_VALUE() do { fprintf(stderr, "kvlm bench: bad value for %s: '%s'\n", a, v); return 2; } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) o->help = true;
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { NEED_VALUE(); o->model = v; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NEED_VALUE(); if (cli_parse_i64(v, 1, 512, &n)) BAD_VALUE(); o->n_threads = (int)n;
        } else if (!strcmp(a, "-r") || !strcmp(a, "--reps")) {
            NEED_VALUE(); if (cli_parse_i64(v, 1, 10000, &n)) BAD_VALUE(); o->reps = (int)n;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) {
            NEED_VALUE(); if (cli_parse_i64(v, 0, 1 << 20, &o->n_prompt)) BAD_VALUE();
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) {
            NEED_VALUE(); if (cli_parse_i64(v, 0, 1 << 20, &o->n_gen)) BAD_VALUE();
        } else if (!strcmp(a, "-d") || !strcmp(a, "--depths")) {
            NEED_VALUE(); if (parse_depths(v, o)) BAD_VALUE();
        } else if (!strcmp(a, "--cache-type") || !strcmp(a, "--cache-type-k")) {
            NEED_VALUE();
            if (!kvlm_kv_type_from_name(v, &o->kv_type)) BAD_VALUE();
            if (!strcmp(a, "--cache-type")) o->kv_type_v = KVLM_KV_SAME;
        } else if (!strcmp(a, "--cache-type-v")) {
            NEED_VALUE();
            if (!kvlm_kv_type_from_name(v, &o->kv_type_v)) BAD_VALUE();
        } else if (!strcmp(a, "--kv-residual")) {
            NEED_VALUE();
            if (cli_parse_i64(v, 16, 256, &o->kv_residual)) BAD_VALUE();
        } else if (!strcmp(a, "--seed")) {
            NEED_VALUE();
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 0);
            if (errno || end == v || *end) BAD_VALUE();
            o->seed = s;
        } else if (!strcmp(a, "--json")) o->json = true;
        else if (!strcmp(a, "--no-kv-cache-curve")) {
            NEED_VALUE(); if (cli_parse_i64(v, 1, 1 << 16, &o->curve_n)) BAD_VALUE();
        } else if (!strcmp(a, "--plot")) { NEED_VALUE(); o->plot = v; }
        else if (!strcmp(a, "--csv")) { NEED_VALUE(); o->csv = v; }
        else if (!strcmp(a, "--callgrind-step")) {
            NEED_VALUE(); if (cli_parse_i64(v, 0, 1 << 24, &o->callgrind_depth)) BAD_VALUE();
        } else {
            fprintf(stderr, "kvlm bench: unknown argument '%s' (see kvlm bench --help)\n", a);
            return 2;
        }
#undef NEED_VALUE
#undef BAD_VALUE
    }
    if ((o->plot || o->csv) && o->curve_n == 0) {
        fprintf(stderr, "kvlm bench: --plot and --csv go with --no-kv-cache-curve N\n");
        return 2;
    }
    if (o->curve_n > 0 && o->callgrind_depth >= 0) {
        fprintf(stderr, "kvlm bench: --no-kv-cache-curve and --callgrind-step are separate modes\n");
        return 2;
    }
    if (o->curve_n == 0 && o->callgrind_depth < 0 && o->n_prompt == 0 && o->n_gen == 0) {
        fprintf(stderr, "kvlm bench: -p 0 and -n 0 leave nothing to measure\n");
        return 2;
    }
    if (o->n_threads == 0) {
        /* chosen here rather than by the library, so the number reported is the one used */
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        o->n_threads = nc > 0 ? (int)(nc < 64 ? nc : 64) : 1;
    }
    return 0;
}

/* ---- helpers ---------------------------------------------------------------------------- */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* n uniformly drawn valid ids in [0, n_vocab), malloc'd (llama-bench does the same). */
static kvlm_token *random_tokens(uint64_t *state, size_t n, int64_t n_vocab)
{
    kvlm_token *t = malloc((n ? n : 1) * sizeof *t);
    for (size_t i = 0; t && i < n; i++) t[i] = (kvlm_token)(splitmix64(state) % (uint64_t)n_vocab);
    return t;
}

static int64_t peak_rss_bytes(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
    return (int64_t)ru.ru_maxrss * 1024;   /* Linux: KiB */
}

/* A progress line on stderr, only for a person watching. */
static bool show_progress(const bench_opts *o) { return !o->json && isatty(2); }


static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void summarize(bench_result *r, int reps)
{
    double *s = malloc((size_t)reps * sizeof *s), sum = 0, sq = 0;
    if (!s) return;
    memcpy(s, r->tps, (size_t)reps * sizeof *s);
    qsort(s, (size_t)reps, sizeof *s, cmp_double);
    r->min = s[0];
    r->max = s[reps - 1];
    r->median = reps % 2 ? s[reps / 2] : 0.5 * (s[reps / 2 - 1] + s[reps / 2]);
    for (int i = 0; i < reps; i++) sum += s[i];
    r->mean = sum / reps;
    for (int i = 0; i < reps; i++) sq += (s[i] - r->mean) * (s[i] - r->mean);
    r->stddev = reps > 1 ? sqrt(sq / (reps - 1)) : 0;
    free(s);
}

static int ctx_open(const kvlm_model *m, const bench_opts *o, int64_t n_ctx, bool no_kv_cache, kvlm_ctx **ctx)
{
    char err[ERRLEN];
    kvlm_ctx_params cp = kvlm_ctx_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = o->n_threads;
    cp.kv_type = o->kv_type;
    cp.kv_type_v = o->kv_type_v;
    cp.kv_residual = o->kv_residual;
    cp.no_kv_cache = no_kv_cache;
    if (kvlm_ctx_init(m, &cp, ctx, err, sizeof err) != KVLM_OK) {
        fprintf(stderr, "kvlm bench: %s\n", err);
        return 1;
    }
    return 0;
}

/* Makes the sequence fill[0..d) (untimed; the longest common prefix is kept). */
static int fill_to(kvlm_ctx *ctx, const kvlm_token *fill, int64_t d)
{
    char err[ERRLEN];
    if (d == 0) {
        kvlm_ctx_truncate(ctx, 0);
        return 0;
    }
    if (kvlm_ctx_prefill(ctx, fill, (size_t)d, NULL, err, sizeof err) != KVLM_OK) {
        fprintf(stderr, "kvlm bench: fill to depth %lld: %s\n", (long long)d, err);
        return 1;
    }
    return 0;
}

/* ---- the pp / tg tests --------------------------------------------------------------- */
/* Times one repetition of r (pp: one batch decode; tg: n single-token steps at
 * depth), the sequence being fill[0..depth) on entry for tg. Returns seconds, or
 * < 0 after printing the error. */
static double time_rep(kvlm_ctx *ctx, const bench_result *r, bool pp, const kvlm_token *fill,
                       const kvlm_token *gen)
{
    char err[ERRLEN];
    kvlm_ctx_truncate(ctx, pp ? 0 : (size_t)r->depth);
    double t0 = now_s();
    if (pp) {
        if (kvlm_ctx_decode(ctx, fill, (size_t)r->n, err, sizeof err) != KVLM_OK) goto fail;
    } else {
        for (int64_t i = 0; i < r->n; i++)
            if (kvlm_ctx_decode(ctx, &gen[i], 1, err, sizeof err) != KVLM_OK) goto fail;
    }
    return now_s() - t0;
fail:
    fprintf(stderr, "kvlm bench: %s: %s\n", r->test, err);
    return -1;
}

static int run_tests(const kvlm_model *m, const bench_opts *o, bench_result *res, size_t *n_res, int64_t *n_ctx_out)
{
    kvlm_model_info info;
    kvlm_model_get_info(m, &info);
    int64_t max_depth = 0;
    for (size_t i = 0; i < o->n_depths; i++) max_depth = o->depths[i] > max_depth ? o->depths[i] : max_depth;
    int64_t n_fill = o->n_prompt > max_depth ? o->n_prompt : max_depth;
    int64_t n_ctx = o->n_gen ? max_depth + o->n_gen : 0;
    n_ctx = o->n_prompt > n_ctx ? o->n_prompt : n_ctx;
    *n_ctx_out = n_ctx;

    int rc = 1;
    uint64_t rng = o->seed;
    kvlm_ctx *ctx = NULL;
    /* the pp tokens are the first of the fill, so filling reuses what pp left */
    kvlm_token *fill = random_tokens(&rng, (size_t)n_fill, info.n_vocab);
    kvlm_token *gen = random_tokens(&rng, (size_t)o->n_gen, info.n_vocab);
    if (!fill || !gen) {
        fprintf(stderr, "kvlm bench: out of memory\n");
        goto done;
    }
    if (ctx_open(m, o, n_ctx, false, &ctx)) goto done;

    *n_res = 0;
    if (o->n_prompt > 0) {
        bench_result *r = &res[(*n_res)++];
        snprintf(r->test, sizeof r->test, "pp%lld", (long long)o->n_prompt);
        r->n = o->n_prompt;
    }
    for (size_t i = 0; o->n_gen > 0 && i < o->n_depths; i++) {
        bench_result *r = &res[(*n_res)++];
        snprintf(r->test, sizeof r->test, "tg%lld", (long long)o->n_gen);
        r->n = o->n_gen;
        r->depth = o->depths[i];
    }
    for (size_t k = 0; k < *n_res; k++) {
        bench_result *r = &res[k];
        bool pp = r->test[0] == 'p';
        if (!(r->tps = calloc((size_t)o->reps, sizeof *r->tps))) {
            fprintf(stderr, "kvlm bench: out of memory\n");
            goto done;
        }
        if (show_progress(o)) {
            fprintf(stderr, "  running %s @ d%lld ...\r", r->test, (long long)r->depth);
            fflush(stderr);
        }
        if (!pp && fill_to(ctx, fill, r->depth)) goto done;
        /* warm-up: pages of scratch and cache touched, threads awake */
        bench_result warm = *r;
        warm.n = pp ? r->n : 1;
        if (time_rep(ctx, &warm, pp, fill, gen) < 0) goto done;
        for (int i = 0; i < o->reps; i++) {
            double t = time_rep(ctx, r, pp, fill, gen);
            if (t < 0) goto done;
            r->tps[i] = (double)r->n / t;
        }
        summarize(r, o->reps);
    }
    rc = 0;
done:
    if (show_progress(o)) fprintf(stderr, "%60s\r", "");
    kvlm_ctx_free(ctx);
    free(fill);
    free(gen);
    return rc;
}

static void load_averages(double la[3])
{
    la[0] = la[1] = la[2] = -1;
    if (getloadavg(la, 3) != 3) la[0] = la[1] = la[2] = -1;
}

static void print_table(const kvlm_model *m, const char *path, const bench_opts *o, const bench_result *res,
                        size_t n_res)
{
    char kvl[16];
    kvlm_model_info in;
    kvlm_model_get_info(m, &in);
    double la[3];
    load_averages(la);
    printf("model    %s (%s, %.1f M params, %.1f MiB)\n", path, in.name, (double)in.n_params / 1e6,
           (double)in.file_bytes / (1024.0 * 1024.0));
    printf("threads  %d, K/V %s, %d repetitions, seed %llu, load average %.2f %.2f %.2f\n\n", o->n_threads,
           cli_kv_label(o->kv_type, o->kv_type_v, kvl, sizeof kvl), o->reps, (unsigned long long)o->seed, la[0], la[1], la[2]);
    printf("| %-14s | %10s | %-21s | %8s |\n", "test", "tok/s", "min - max", "stddev");
    printf("| %-14s | %10s | %-21s | %8s |\n", "--------------", "---------:", "---------------------",
           "-------:");
    for (size_t k = 0; k < n_res; k++) {
        const bench_result *r = &res[k];
        int w = r->test[0] == 't' ? printf("| %s @ d%lld", r->test, (long long)r->depth) : printf("| %s", r->test);
        printf("%*s | %10.2f | %9.2f - %-9.2f | %8.2f |\n", w < 16 ? 16 - w : 0, "", r->median, r->min, r->max,
               r->stddev);
    }
    printf("\npeak RSS %.1f MiB\n", (double)peak_rss_bytes() / (1024.0 * 1024.0));
}

/* The common header of every JSON report. */
static cJSON *json_header(const kvlm_model *m, const char *path, const bench_opts *o)
{
    char kvl[16];
    kvlm_model_info in;
    kvlm_model_get_info(m, &in);
    double la[3];
    load_averages(la);
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "engine", "kvlm");
    cJSON_AddStringToObject(j, "model", path);
    cJSON_AddStringToObject(j, "model_name", in.name);
    cJSON_AddNumberToObject(j, "model_bytes", (double)in.file_bytes);
    cJSON_AddNumberToObject(j, "n_params", (double)in.n_params);
    cJSON_AddNumberToObject(j, "threads", o->n_threads);
    cJSON_AddStringToObject(j, "kv_type", cli_kv_label(o->kv_type, o->kv_type_v, kvl, sizeof kvl));
    cJSON_AddNumberToObject(j, "reps", o->reps);
    cJSON_AddNumberToObject(j, "seed", (double)o->seed);
    cJSON *l = cJSON_AddArrayToObject(j, "loadavg");
    for (int i = 0; l && i < 3; i++) cJSON_AddItemToArray(l, cJSON_CreateNumber(la[i]));
    return j;
}

static int print_json(cJSON *j)
{
    cJSON_AddNumberToObject(j, "peak_rss_bytes", (double)peak_rss_bytes());
    char *s = cJSON_Print(j);
    if (!s) {
        fprintf(stderr, "kvlm bench: out of memory\n");
        return 1;
    }
    printf("%s\n", s);
    free(s);
    return 0;
}

static int report_json(const kvlm_model *m, const char *path, const bench_opts *o, const bench_result *res,
                       size_t n_res, int64_t n_ctx)
{
    cJSON *j = json_header(m, path, o);
    if (j) cJSON_AddNumberToObject(j, "n_ctx", (double)n_ctx);
    cJSON *arr = j ? cJSON_AddArrayToObject(j, "results") : NULL;
    for (size_t k = 0; arr && k < n_res; k++) {
        const bench_result *r = &res[k];
        cJSON *t = cJSON_CreateObject();
        if (!t) break;
        cJSON_AddItemToArray(arr, t);
        cJSON_AddStringToObject(t, "test", r->test);
        cJSON_AddNumberToObject(t, "n_prompt", r->test[0] == 'p' ? (double)r->n : 0);
        cJSON_AddNumberToObject(t, "n_gen", r->test[0] == 't' ? (double)r->n : 0);
        cJSON_AddNumberToObject(t, "depth", (double)r->depth);
        cJSON_AddNumberToObject(t, "n", (double)r->n);
        cJSON_AddNumberToObject(t, "reps", o->reps);
        cJSON_AddNumberToObject(t, "median_tps", r->median);
        cJSON_AddNumberToObject(t, "min_tps", r->min);
        cJSON_AddNumberToObject(t, "max_tps", r->max);
        cJSON_AddNumberToObject(t, "mean_tps", r->mean);
        cJSON_AddNumberToObject(t, "stddev_tps", r->stddev);
        cJSON *s = cJSON_AddArrayToObject(t, "samples_tps");
        for (int i = 0; s && i < o->reps; i++) cJSON_AddItemToArray(s, cJSON_CreateNumber(r->tps[i]));
    }
    int rc = arr ? print_json(j) : 1;
    if (!arr) fprintf(stderr, "kvlm bench: out of memory\n");
    cJSON_Delete(j);
    return rc;
}

/* ---- the latency curve --------------------------------------------------------------------- */
static kvlm_token argmax(const float *x, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (kvlm_token)best;
}

/* Feeds tok[0] and then greedily generated tokens, timing each step:
 * ms[i] = the decode of tok[i] at position i. tok: [n] (tok[0] given). */
static int curve_path(const kvlm_model *m, const bench_opts *o, bool no_kv_cache, double *ms, kvlm_token *tok)
{
    char err[ERRLEN];
    kvlm_model_info in;
    kvlm_model_get_info(m, &in);
    kvlm_ctx *ctx;
    if (ctx_open(m, o, o->curve_n, no_kv_cache, &ctx)) return 1;
    /* warm-up (weights paged in, threads awake), or the first point measures the disk */
    if (kvlm_ctx_decode(ctx, &tok[0], 1, err, sizeof err) != KVLM_OK) {
        fprintf(stderr, "kvlm bench: %s\n", err);
        kvlm_ctx_free(ctx);
        return 1;
    }
    kvlm_ctx_truncate(ctx, 0);
    for (int64_t i = 0; i < o->curve_n; i++) {
        double t0 = now_s();
        if (kvlm_ctx_decode(ctx, &tok[i], 1, err, sizeof err) != KVLM_OK) {
            fprintf(stderr, "kvlm bench: position %lld: %s\n", (long long)i, err);
            kvlm_ctx_free(ctx);
            return 1;
        }
        ms[i] = 1e3 * (now_s() - t0);
        if (i + 1 < o->curve_n) tok[i + 1] = argmax(kvlm_ctx_logits(ctx), in.n_vocab);
        if (show_progress(o) && (i % 16 == 15 || i + 1 == o->curve_n)) {
            fprintf(stderr, "  %s: %lld/%lld\r", no_kv_cache ? "no KV cache" : "KV cache", (long long)i + 1,
                    (long long)o->curve_n);
            fflush(stderr);
        }
    }
    kvlm_ctx_free(ctx);
    if (show_progress(o)) fprintf(stderr, "%60s\r", "");
    return 0;
}

/* Least-squares line ms = a + b * position. */
static void fit_line(const double *y, int64_t n, double *a, double *b)
{
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int64_t i = 0; i < n; i++) {
        sx += (double)i;
        sy += y[i];
        sxx += (double)i * (double)i;
        sxy += (double)i * y[i];
    }
    double d = (double)n * sxx - sx * sx;
    *b = d != 0 ? ((double)n * sxy - sx * sy) / d : 0;
    *a = (sy - *b * sx) / (double)n;
}

static int write_file(const char *path, const cli_bench_curve *c, int (*emit)(FILE *, const cli_bench_curve *))
{
    FILE *f = fopen(path, "w");
    if (!f || emit(f, c) != 0) {
        fprintf(stderr, "kvlm bench: cannot write %s: %s\n", path, strerror(errno));
        if (f) fclose(f);
        return 1;
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "kvlm bench: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

static int run_curve(const kvlm_model *m, const char *path, const bench_opts *o)
{
    char kvl[16];
    int rc = 1;
    int64_t n = o->curve_n;
    kvlm_model_info in;
    kvlm_model_get_info(m, &in);
    double *ms_c = calloc((size_t)n, sizeof *ms_c), *ms_n = calloc((size_t)n, sizeof *ms_n);
    kvlm_token *tok_c = calloc((size_t)n, sizeof *tok_c), *tok_n = calloc((size_t)n, sizeof *tok_n);
    char *csv_path = NULL;
    cJSON *j = NULL;
    if (!ms_c || !ms_n || !tok_c || !tok_n) {
        fprintf(stderr, "kvlm bench: out of memory\n");
        goto done;
    }
    tok_c[0] = tok_n[0] = in.bos >= 0 ? in.bos : 0;
    if (curve_path(m, o, false, ms_c, tok_c) || curve_path(m, o, true, ms_n, tok_n)) goto done;
    int64_t first_diff = -1;
    for (int64_t i = 0; i < n && first_diff < 0; i++)
        if (tok_c[i] != tok_n[i]) first_diff = i;
    double sum_c = 0, sum_n = 0, a_c, b_c, a_n, b_n;
    for (int64_t i = 0; i < n; i++) {
        sum_c += ms_c[i];
        sum_n += ms_n[i];
    }
    fit_line(ms_c, n, &a_c, &b_c);
    fit_line(ms_n, n, &a_n, &b_n);

    char subtitle[1024];
    snprintf(subtitle, sizeof subtitle, "%s, %d threads, K/V %s, %lld greedy tokens; total %.2f s cached vs %.2f s recomputed",
             in.name, o->n_threads, cli_kv_label(o->kv_type, o->kv_type_v, kvl, sizeof kvl), (long long)n, sum_c / 1e3, sum_n / 1e3);
    cli_bench_curve c = { .n = n, .ms_cached = ms_c, .ms_nocache = ms_n, .subtitle = subtitle };
    if (o->plot && write_file(o->plot, &c, cli_bench_plot_svg)) goto done;
    const char *csv = o->csv;
    if (!csv && o->plot) {   /* FILE.svg -> FILE.csv */
        size_t len = strlen(o->plot);
        if (!(csv_path = malloc(len + 5))) goto done;
        strcpy(csv_path, o->plot);
        if (len > 4 && !strcmp(csv_path + len - 4, ".svg")) csv_path[len - 4] = '\0';
        strcat(csv_path, ".csv");
        csv = csv_path;
    }
    if (csv && write_file(csv, &c, cli_bench_plot_csv)) goto done;

    if (o->json) {
        if (!(j = json_header(m, path, o))) goto done;
        cJSON_AddStringToObject(j, "test", "no_kv_cache_curve");
        cJSON_AddNumberToObject(j, "n", (double)n);
        cJSON_AddBoolToObject(j, "identical_tokens", first_diff < 0);
        cJSON_AddNumberToObject(j, "total_ms_cached", sum_c);
        cJSON_AddNumberToObject(j, "total_ms_nocache", sum_n);
        cJSON_AddNumberToObject(j, "slope_ms_per_pos_cached", b_c);
        cJSON_AddNumberToObject(j, "slope_ms_per_pos_nocache", b_n);
        cJSON_AddItemToObject(j, "ms_cached", cJSON_CreateDoubleArray(ms_c, (int)n));
        cJSON_AddItemToObject(j, "ms_nocache", cJSON_CreateDoubleArray(ms_n, (int)n));
        rc = print_json(j);
        goto done;
    }
    FILE *out = csv ? stdout : stderr;   /* without a CSV file, stdout carries the CSV */
    fprintf(out, "model    %s (%s), %d threads, K/V %s\n", path, in.name, o->n_threads, cli_kv_label(o->kv_type, o->kv_type_v, kvl, sizeof kvl));
    fprintf(out, "%8s %12s %14s %8s\n", "position", "ms cached", "ms no-cache", "ratio");
    int64_t step = n >= 16 ? n / 16 : 1;
    for (int64_t i = 0; i < n; i += step)
        fprintf(out, "%8lld %12.3f %14.3f %8.1f\n", (long long)i, ms_c[i], ms_n[i], ms_c[i] > 0 ? ms_n[i] / ms_c[i] : 0);
    fprintf(out, "total    %.3f s with the cache (%.1f tok/s), %.3f s without (%.1f tok/s): %.1fx\n", sum_c / 1e3,
            1e3 * (double)n / sum_c, sum_n / 1e3, 1e3 * (double)n / sum_n, sum_n / sum_c);
    fprintf(out, "fit      ms = %.3f + %.5f * pos with the cache; %.3f + %.5f * pos without\n", a_c, b_c, a_n, b_n);
    if (first_diff < 0) fprintf(out, "tokens   identical on both paths (%lld)\n", (long long)n);
    else fprintf(out, "tokens   DIFFER from position %lld: the paths should be bitwise equal\n", (long long)first_diff);
    fprintf(out, "peak RSS %.1f MiB\n", (double)peak_rss_bytes() / (1024.0 * 1024.0));
    if (o->plot) fprintf(out, "wrote    %s and %s\n", o->plot, csv);
    else if (csv) fprintf(out, "wrote    %s\n", csv);
    else cli_bench_plot_csv(stdout, &c);
    rc = 0;
done:
    cJSON_Delete(j);
    free(csv_path);
    free(ms_c);
    free(ms_n);
    free(tok_c);
    free(tok_n);
    return rc;
}

/* ---- callgrind: exactly one decode step ------------------------------------------------ */
static int run_callgrind_step(const kvlm_model *m, const bench_opts *o)
{
    char err[ERRLEN];
    kvlm_model_info in;
    kvlm_model_get_info(m, &in);
    int64_t d = o->callgrind_depth;
    uint64_t rng = o->seed;
    kvlm_token *fill = random_tokens(&rng, (size_t)d + 1, in.n_vocab);
    kvlm_ctx *ctx = NULL;
    int rc = 1;
    if (!fill) goto done;
    if (ctx_open(m, o, d + 1, false, &ctx)) goto done;
    /* the cache is filled with zero K/V, not computed: the step's instructions do not
     * depend on the values, and a real fill of 4,096 tokens takes hours under valgrind */
    if (d > 0 && kvlm_ctx_fill_zero(ctx, (size_t)d, err, sizeof err) != KVLM_OK) goto fail;
    /* one uninstrumented step first, so the measured one finds warm state */
    if (kvlm_ctx_decode(ctx, &fill[d], 1, err, sizeof err) != KVLM_OK) goto fail;
    kvlm_ctx_truncate(ctx, (size_t)d);
    CALLGRIND_START_INSTRUMENTATION;
    CALLGRIND_ZERO_STATS;
    kvlm_err e = kvlm_ctx_decode(ctx, &fill[d], 1, err, sizeof err);
    CALLGRIND_DUMP_STATS_AT("kvlm bench: one decode step");
    CALLGRIND_STOP_INSTRUMENTATION;
    if (e != KVLM_OK) goto fail;
    fprintf(stderr, "kvlm bench: one decode step at position %lld (%d threads) ran with callgrind %s\n",
            (long long)d, o->n_threads,
            BENCH_HAVE_CALLGRIND ? "instrumentation on (its counts are in the dump)" : "macros compiled out");
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "kvlm bench: %s\n", err);
done:
    kvlm_ctx_free(ctx);
    free(fill);
    return rc;
}

int cli_bench(int argc, char **argv)
{
    bench_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc;
    if (o.help) {
        usage(stdout);
        return 0;
    }
    kvlm_model *m = cli_model_open(o.model);
    if (!m) return 1;
    const char *path = cli_model_resolve(o.model, "smollm2");   /* cached already: the file's path */
    if (!path) path = o.model ? o.model : cli_model_default_path();
    bench_result res[1 + BENCH_MAX_DEPTHS];
    size_t n_res = 0;
    int64_t n_ctx = 0;
    memset(res, 0, sizeof res);
    if (o.callgrind_depth >= 0) rc = run_callgrind_step(m, &o);
    else if (o.curve_n > 0) rc = run_curve(m, path, &o);
    else if (!(rc = run_tests(m, &o, res, &n_res, &n_ctx))) {
        if (o.json) rc = report_json(m, path, &o, res, n_res, n_ctx);
        else print_table(m, path, &o, res, n_res);
    }
    for (size_t k = 0; k < n_res; k++) free(res[k].tps);
    kvlm_model_free(m);
    return rc;
}
