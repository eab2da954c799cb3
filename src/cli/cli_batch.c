/* cli_batch.c - `kvlm batch -f prompts.jsonl`: many prompts through one shared KV
 * cache, so a prefix they share (a system prompt, a document) is computed once.
 * Room: cli; uses only include/kvlm.h and cJSON. Prints results to stdout (one
 * JSON object per line, in input order) and a summary to stderr.
 *
 * Input, one JSON object per line (blank lines skipped):
 *   {"prompt": "text"}                      rendered with the chat template, like run
 *   {"messages": [{"role":..,"content":..}]}  a whole conversation
 *   optional "system": "text" (with "prompt"), "max_tokens": N
 * Output per line: {"index", "text", "prompt_tokens", "cached_tokens",
 *   "completion_tokens", "ttft_ms"}. Every prompt runs in a fresh context on the
 * shared cache, so its output is what `kvlm run` gives alone (tested). */
#include "cli/cli.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { ERRLEN = 512 };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct batch_totals {
    long long n_prompts, prompt_tokens, cached_tokens, completion_tokens;
    double t_prefill_s, t_total_s;
} batch_totals;

/* The chat messages of one input object into msgs (at most cap), with content
 * borrowed from obj. Returns the count, or -1 with a message in err. */
static int parse_messages(const cJSON *obj, const cli_opts *o, kvlm_chat_msg *msgs, int cap, char *err)
{
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(obj, "prompt");
    const cJSON *system = cJSON_GetObjectItemCaseSensitive(obj, "system");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(obj, "messages"), *m;
    int n = 0;
    if (cJSON_IsString(prompt)) {
        const char *sys = cJSON_IsString(system) ? system->valuestring : o->system;
        if (sys) msgs[n++] = (kvlm_chat_msg){ "system", sys };
        msgs[n++] = (kvlm_chat_msg){ "user", prompt->valuestring };
        return n;
    }
    if (!cJSON_IsArray(list)) {
        snprintf(err, ERRLEN, "needs a \"prompt\" string or a \"messages\" array");
        return -1;
    }
    cJSON_ArrayForEach(m, list) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content)) {
            snprintf(err, ERRLEN, "message %d needs string \"role\" and \"content\"", n);
            return -1;
        }
        if (n == cap) {
            snprintf(err, ERRLEN, "more than %d messages", cap);
            return -1;
        }
        msgs[n++] = (kvlm_chat_msg){ role->valuestring, content->valuestring };
    }
    return n;
}

/* Greedy or sampled generation of up to max_tokens into a malloc'd string. */
static char *generate(kvlm_ctx *ctx, const kvlm_model *m, kvlm_sampler *smp, long long max_tokens,
                      long long *n_gen, char *err)
{
    size_t cap = 256, len = 0;
    char *out = malloc(cap), piece[1100];
    kvlm_detok dt = { 0 };
    *n_gen = 0;
    if (!out) return NULL;
    out[0] = '\0';
    for (long long i = 0; max_tokens < 0 || i < max_tokens; i++) {
        kvlm_token t = kvlm_sampler_sample(smp, kvlm_ctx_logits(ctx));
        if (kvlm_token_is_eog(m, t)) break;
        kvlm_sampler_accept(smp, t);
        ++*n_gen;
        size_t n = kvlm_detok_push(&dt, m, t, piece, sizeof piece);
        if (i + 1 == max_tokens || kvlm_ctx_n_past(ctx) >= kvlm_ctx_n_ctx(ctx)) {
            n += kvlm_detok_flush(&dt, piece + n, sizeof piece - n);
            max_tokens = i + 1;   /* stop after appending */
        } else if (kvlm_ctx_decode(ctx, &t, 1, err, ERRLEN) != KVLM_OK) {
            free(out);
            return NULL;
        }
        if (len + n + 1 > cap) {
            while (len + n + 1 > cap) cap *= 2;
            char *no = realloc(out, cap);
            if (!no) { free(out); return NULL; }
            out = no;
        }
        memcpy(out + len, piece, n);
        out[len += n] = '\0';
    }
    return out;
}

/* Runs one input line; prints its result line. Returns 0, or 1 on an error that
 * is printed (the batch goes on with the next line). */
static int run_one(const cli_opts *o, const kvlm_model *m, kvlm_cache *cache, const char *line, long long index,
                   batch_totals *tot)
{
    char err[ERRLEN] = "";
    cJSON *obj = cJSON_Parse(line);
    kvlm_chat_msg msgs[64];
    char *rendered = NULL, *text = NULL;
    kvlm_token *toks = NULL;
    kvlm_ctx *ctx = NULL;
    kvlm_sampler *smp = NULL;
    int rc = 1, nm;
    if (!cJSON_IsObject(obj)) { snprintf(err, sizeof err, "not a JSON object"); goto out; }
    if ((nm = parse_messages(obj, o, msgs, 64, err)) < 0) goto out;
    if (kvlm_chat_render(m, msgs, (size_t)nm, true, &rendered, err, sizeof err)) goto out;
    size_t len = strlen(rendered), n = 0, reused = 0;
    if (!(toks = malloc((len + 16) * sizeof *toks))) goto out;
    if (kvlm_tokenize(m, rendered, len, true, true, toks, len + 16, &n, err, sizeof err)) goto out;
    kvlm_ctx_params cp = o->ctx;
    cp.cache = cache;
    kvlm_sampler_params sp = o->samp;
    sp.seed += (uint64_t)index;
    if (kvlm_ctx_init(m, &cp, &ctx, err, sizeof err)) goto out;
    kvlm_model_info info;
    kvlm_model_get_info(m, &info);
    if (kvlm_sampler_init(&sp, info.n_vocab, &smp, err, sizeof err)) goto out;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(obj, "max_tokens");
    long long max_tokens = cJSON_IsNumber(mt) ? (long long)mt->valuedouble : o->n_predict, n_gen;
    double t0 = now_s();
    if (kvlm_ctx_prefill(ctx, toks, n, &reused, err, sizeof err)) goto out;
    double ttft = now_s() - t0;
    if (!(text = generate(ctx, m, smp, max_tokens, &n_gen, err))) goto out;
    tot->t_total_s += now_s() - t0;
    tot->t_prefill_s += ttft;
    tot->n_prompts++;
    tot->prompt_tokens += (long long)n;
    tot->cached_tokens += (long long)reused;
    tot->completion_tokens += n_gen;
    cJSON *res = cJSON_CreateObject();
    cJSON_AddNumberToObject(res, "index", (double)index);
    cJSON_AddStringToObject(res, "text", text);
    cJSON_AddNumberToObject(res, "prompt_tokens", (double)n);
    cJSON_AddNumberToObject(res, "cached_tokens", (double)reused);
    cJSON_AddNumberToObject(res, "completion_tokens", (double)n_gen);
    cJSON_AddNumberToObject(res, "ttft_ms", 1e3 * ttft);
    char *s = cJSON_PrintUnformatted(res);
    if (s) printf("%s\n", s);
    fflush(stdout);
    free(s);
    cJSON_Delete(res);
    rc = 0;
out:
    if (rc) {
        fprintf(stderr, "kvlm batch: line %lld: %s\n", index + 1, err[0] ? err : "out of memory");
        printf("{\"index\":%lld,\"error\":\"see stderr\"}\n", index);
    }
    free(text);
    free(toks);
    free(rendered);
    kvlm_sampler_free(smp);
    kvlm_ctx_free(ctx);
    cJSON_Delete(obj);
    return rc;
}

static void print_summary(const batch_totals *t, const kvlm_cache *cache)
{
    kvlm_cache_stats s;
    kvlm_cache_get_stats(cache, &s);
    double hit = t->prompt_tokens ? 100.0 * (double)t->cached_tokens / (double)t->prompt_tokens : 0.0;
    long long computed = t->prompt_tokens - t->cached_tokens;
    double rate = t->t_prefill_s > 0 ? (double)computed / t->t_prefill_s : 0.0;
    fprintf(stderr, "\n--- batch ---\n");
    fprintf(stderr, "prompts            %lld (%lld prompt tokens, %lld generated)\n", t->n_prompts,
            t->prompt_tokens, t->completion_tokens);
    fprintf(stderr, "prefix cache       %lld prompt tokens from the cache (%.1f%%), %lld computed\n",
            t->cached_tokens, hit, computed);
    fprintf(stderr, "prefill            %.3f s in all (%.1f tok/s computed); mean time to first token %.1f ms\n",
            t->t_prefill_s, rate, t->n_prompts ? 1e3 * t->t_prefill_s / (double)t->n_prompts : 0.0);
    if (rate > 0)
        fprintf(stderr, "time saved         ~%.3f s of prefill (cached tokens at the measured rate)\n",
                (double)t->cached_tokens / rate);
    fprintf(stderr, "kv pool            %lld blocks x %lld tokens (%.1f MiB): %lld in use, %lld cached, %lld free; "
                    "%lld hits of %lld lookups, %lld evictions\n",
            (long long)s.n_blocks, (long long)s.block_tokens, (double)s.bytes_total / 1048576.0,
            (long long)s.n_in_use, (long long)s.n_cached, (long long)s.n_free, (long long)s.hits,
            (long long)s.lookups, (long long)s.evictions);
    fprintf(stderr, "total              %.3f s\n", t->t_total_s);
}

int cli_batch(const cli_opts *o)
{
    if (!o->prompt_file) {
        fprintf(stderr, "kvlm batch: give the prompts with -f FILE.jsonl (one JSON object per line)\n");
        return 2;
    }
    FILE *f = fopen(o->prompt_file, "r");
    if (!f) {
        fprintf(stderr, "kvlm batch: cannot open %s\n", o->prompt_file);
        return 1;
    }
    kvlm_model *m = cli_load_model(o);
    kvlm_cache *cache = NULL;
    int rc = 1;
    char err[ERRLEN], *line = NULL;
    size_t line_cap = 0;
    if (!m) goto done;
    kvlm_cache_params cp = kvlm_cache_default_params();
    cp.kv_type = o->ctx.kv_type;
    cp.kv_type_v = o->ctx.kv_type_v;
    cp.kv_residual = o->ctx.kv_residual;
    cp.mem_bytes = o->ctx.kv_mem ? o->ctx.kv_mem : (size_t)256 << 20;
    if (kvlm_cache_init(m, &cp, &cache, err, sizeof err)) {
        fprintf(stderr, "kvlm batch: %s\n", err);
        goto done;
    }
    batch_totals tot = { 0 };
    long long index = 0, failed = 0;
    ssize_t len;
    while ((len = getline(&line, &line_cap, f)) >= 0) {
        bool blank = true;
        for (ssize_t i = 0; i < len && blank; i++) blank = line[i] == ' ' || line[i] == '\t' || line[i] == '\n' || line[i] == '\r';
        if (blank) continue;
        failed += run_one(o, m, cache, line, index++, &tot);
    }
    print_summary(&tot, cache);
    rc = failed ? 1 : 0;
done:
    free(line);
    fclose(f);
    kvlm_cache_free(cache);
    kvlm_model_free(m);
    return rc;
}
