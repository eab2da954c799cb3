/* cli_perplexity.c - `kvlm perplexity -f FILE`: perplexity of a text, and how far
 * one K/V cache type's next-token distributions are from another's.
 * Room: cli; uses only include/kvlm.h and cJSON (--json). Parses its own options.
 *
 * Protocol (llama.cpp's perplexity tool, so the numbers compare): the whole text
 * is tokenized once (BOS first if the model asks for one); it is cut into
 * floor(n_tokens / c) windows of c tokens; if the model asks for BOS, every
 * window's first token is replaced by BOS (llama-perplexity does the same: without
 * it, Gemma 3 270M's windows after the first start mid-text and its PPL over the
 * GPL-3 at -c 2048 was 15.86 against llama.cpp's 14.51); each window runs in a fresh
 * sequence and only its second half is scored: for i in [c/2, c-1), the negative log
 * likelihood of token i+1 under the logits at i (so the replaced first token is
 * never a target). PPL = exp(mean NLL), with the standard error of the mean carried
 * through exp (as llama.cpp prints it).
 *
 * With --kl-base T every window runs twice, with the cache type under test and
 * with T, and at each scored position it records KL(P_T || P_test) (natural log)
 * and whether both put the same token first.
 *
 * With --context-shift the text (its first --chunks windows' worth, else all of it)
 * streams through one context of c positions that shifts whenever it is full
 * (kvlm_ctx_params.context_shift: --keep tokens kept, half of the rest dropped, the
 * others' K re-rotated), and every token after the first window is scored: for i
 * in [c - 1, n - 1), token i+1 under the logits at i. Each scored token then sees
 * between about c/2 and c tokens before it, as in the second half of a fresh window,
 * but through K moved by shifts instead of K computed in place. */
#include "cli/cli.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { ERRLEN = 512 };

typedef struct ppl_opts {
    const char *model, *file;
    int64_t n_window, max_chunks, kv_residual;
    int n_threads;
    kvlm_kv_type type, type_v, base_type;
    int n_keep;
    bool kl, json, help, shift;
} ppl_opts;



static void usage(FILE *f)
{
    fprintf(f,
        "usage: kvlm perplexity -f FILE [options]\n\n"
        "Perplexity of a text in windows of -c tokens, scored over the second half of\n"
        "each window (llama.cpp's protocol); with --kl-base, the KL divergence and top-1\n"
        "agreement of this cache type's token distributions against another type's.\n\n"
        "options:\n"
        "  -m, --model PATH       GGUF model, or smollm2 (the default) / gemma3, fetched on first use\n"
        "  -f, --file FILE        the text (for example /usr/share/common-licenses/GPL-3)\n"
        "  -c, --ctx N            tokens per window (default 512, at least 4)\n"
        "      --chunks N         score at most N windows (default: all)\n"
        "  -t, --threads N        threads (default: online cores)\n"
        "      --cache-type T     K/V type under test: f16 (default), f32, bf16, q8, q4, kivi4 or kivi2\n"
        "      --cache-type-v T   V alone (default: as K)\n"
        "      --kv-residual N    KIVI: positions per residual group kept in f32 (16..256 dividing 256; KIVI K: 64, 128, 256; default 128)\n"
        "      --kl-base T        also run every window with cache type T and compare\n"
        "      --context-shift    stream the text through one context of -c tokens that shifts when\n"
        "                         full (keep --keep, drop half of the rest), scoring every token after\n"
        "                         the first window\n"
        "      --keep N           tokens a shift keeps at the start (default 0; a BOS counts extra)\n"
        "      --json             one JSON object on stdout instead of the text report\n"
        "  -h, --help             this help\n");
}

static int parse_args(int argc, char **argv, ppl_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n_window = 512;
    o->max_chunks = -1;
    o->type = KVLM_KV_F16;
    o->type_v = KVLM_KV_SAME;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t n;
#define NEED_VALUE() do { if (!v) { fprintf(stderr, "kvlm perplexity: option %s needs a value\n", a); return 2; } i++; } while (0)
#define BAD_VALUE() do { fprintf(stderr, "kvlm perplexity: bad value for %s: '%s'\n", a, v); return 2; } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) o->help = true;
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { NEED_VALUE(); o->model = v; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { NEED_VALUE(); o->file = v; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            NEED_VALUE(); if (cli_parse_i64(v, 4, 1 << 20, &o->n_window)) BAD_VALUE();
        } else if (!strcmp(a, "--chunks")) {
            NEED_VALUE(); if (cli_parse_i64(v, 1, INT64_MAX, &o->max_chunks)) BAD_VALUE();
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NEED_VALUE(); if (cli_parse_i64(v, 1, 512, &n)) BAD_VALUE(); o->n_threads = (int)n;
        } else if (!strcmp(a, "--cache-type") || !strcmp(a, "--cache-type-k")) {
            NEED_VALUE(); if (!kvlm_kv_type_from_name(v, &o->type)) BAD_VALUE();
        } else if (!strcmp(a, "--cache-type-v")) {
            NEED_VALUE(); if (!kvlm_kv_type_from_name(v, &o->type_v)) BAD_VALUE();
        } else if (!strcmp(a, "--kv-residual")) {
            NEED_VALUE(); if (cli_parse_i64(v, 16, 256, &o->kv_residual)) BAD_VALUE();
        } else if (!strcmp(a, "--kl-base")) {
            NEED_VALUE(); if (!kvlm_kv_type_from_name(v, &o->base_type)) BAD_VALUE(); o->kl = true;
        } else if (!strcmp(a, "--context-shift")) o->shift = true;
        else if (!strcmp(a, "--keep")) {
            NEED_VALUE(); if (cli_parse_i64(v, 0, 1 << 20, &n)) BAD_VALUE(); o->n_keep = (int)n;
        } else if (!strcmp(a, "--json")) o->json = true;
        else {
            fprintf(stderr, "kvlm perplexity: unknown option '%s' (see kvlm perplexity --help)\n", a);
            return 2;
        }
#undef NEED_VALUE
#undef BAD_VALUE
    }
    if (!o->help && !o->file) {
        fprintf(stderr, "kvlm perplexity: -f FILE is required (see kvlm perplexity --help)\n");
        return 2;
    }
    if (o->shift && o->kl) {
        fprintf(stderr, "kvlm perplexity: --kl-base compares windows; it does not go with --context-shift\n");
        return 2;
    }
    return 0;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "kvlm perplexity: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        fprintf(stderr, "kvlm perplexity: %s: %s\n", path, buf ? "read error" : "out of memory");
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* log-softmax of logits[0..V) into lp (double) */
static void log_softmax(double *lp, const float *logits, int64_t V)
{
    double mx = -INFINITY, sum = 0.0;
    for (int64_t i = 0; i < V; i++) if (logits[i] > mx) mx = logits[i];
    for (int64_t i = 0; i < V; i++) sum += exp((double)logits[i] - mx);
    const double lse = mx + log(sum);
    for (int64_t i = 0; i < V; i++) lp[i] = (double)logits[i] - lse;
}

static int64_t argmax(const float *x, int64_t V)
{
    int64_t best = 0;
    for (int64_t i = 1; i < V; i++) if (x[i] > x[best]) best = i;
    return best;
}

static kvlm_ctx *open_ctx(const kvlm_model *m, const ppl_opts *o, kvlm_kv_type t, kvlm_kv_type tv)
{
    kvlm_ctx_params p = kvlm_ctx_default_params();
    p.n_ctx = o->n_window;
    p.n_threads = o->n_threads;
    p.kv_type = t;
    p.kv_type_v = tv;
    p.kv_residual = o->kv_residual;
    p.no_prefix_cache = true;                      /* every window is a fresh, cold sequence */
    p.context_shift = o->shift;
    p.n_keep = o->n_keep;
    kvlm_ctx *c = NULL;
    char err[ERRLEN];
    if (kvlm_ctx_init(m, &p, &c, err, sizeof err) != KVLM_OK) {
        fprintf(stderr, "kvlm perplexity: %s\n", err);
        return NULL;
    }
    return c;
}

typedef struct ppl_sums {
    double nll, nll2, kl, kl2;
    int64_t count, top1_same;
} ppl_sums;

/* One window: scores positions [c/2, c-1) into s. */
static int run_window(kvlm_ctx *ct, kvlm_ctx *cb, const kvlm_token *tok, int64_t c, int64_t V,
                      float *lt, float *lb, double *lpt, double *lpb, ppl_sums *s)
{
    char err[ERRLEN];
    kvlm_ctx_truncate(ct, 0);
    if (kvlm_ctx_decode_all(ct, tok, (size_t)c, lt, err, sizeof err) != KVLM_OK) goto fail;
    if (cb) {
        kvlm_ctx_truncate(cb, 0);
        if (kvlm_ctx_decode_all(cb, tok, (size_t)c, lb, err, sizeof err) != KVLM_OK) goto fail;
    }
    for (int64_t i = c / 2; i < c - 1; i++) {      /* lt, lb: [c][V]; predicts tok[i + 1] */
        const float *rt = lt + i * V;
        log_softmax(lpt, rt, V);
        const double nll = -lpt[tok[i + 1]];
        s->nll += nll;
        s->nll2 += nll * nll;
        s->count++;
        if (cb) {
            const float *rb = lb + i * V;
            log_softmax(lpb, rb, V);
            double kl = 0.0;
            for (int64_t v = 0; v < V; v++) kl += exp(lpb[v]) * (lpb[v] - lpt[v]);
            s->kl += kl;
            s->kl2 += kl * kl;
            s->top1_same += argmax(rt, V) == argmax(rb, V);
        }
    }
    return 0;
fail:
    fprintf(stderr, "kvlm perplexity: %s\n", err);
    return -1;
}

/* --context-shift: tok[0, n) through one shifting context in pieces of at most c
 * (lt: [c][V]); scores tokens [c, n) into s. */
static int run_stream(kvlm_ctx *ct, const kvlm_token *tok, int64_t n, int64_t c, int64_t V, float *lt, double *lpt,
                      ppl_sums *s)
{
    char err[ERRLEN];
    for (int64_t i0 = 0; i0 < n - 1; i0 += c) {
        const int64_t m = n - 1 - i0 < c ? n - 1 - i0 : c;   /* the last token is only predicted */
        if (kvlm_ctx_decode_all(ct, tok + i0, (size_t)m, lt, err, sizeof err) != KVLM_OK) {
            fprintf(stderr, "kvlm perplexity: %s\n", err);
            return -1;
        }
        for (int64_t r = 0; r < m; r++) {              /* row r predicts tok[i0 + r + 1] */
            if (i0 + r < c - 1) continue;
            log_softmax(lpt, lt + r * V, V);
            const double nll = -lpt[tok[i0 + r + 1]];
            s->nll += nll;
            s->nll2 += nll * nll;
            s->count++;
        }
    }
    return 0;
}

static double ppl_of(const ppl_sums *s) { return exp(s->nll / (double)s->count); }

/* standard error of the mean of x given its sum and sum of squares over n */
static double sem(double sum, double sum2, int64_t n)
{
    if (n < 2) return 0.0;
    const double mean = sum / (double)n, var = sum2 / (double)n - mean * mean;
    return var > 0 ? sqrt(var / (double)(n - 1)) : 0.0;
}

int cli_perplexity(int argc, char **argv)
{
    ppl_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc;
    if (o.help) {
        usage(stdout);
        return 0;
    }
    size_t len = 0;
    char *text = read_file(o.file, &len);
    if (!text) return 1;
    kvlm_model *m = cli_model_open(o.model);
    kvlm_ctx *ct = NULL, *cb = NULL;
    kvlm_token *tok = NULL;
    float *lt = NULL, *lb = NULL;
    double *lpt = NULL, *lpb = NULL;
    rc = 1;
    if (!m) goto done;
    kvlm_model_info in;
    kvlm_model_get_info(m, &in);
    char err[ERRLEN], kvl[16];
    size_t n_tok = 0;
    kvlm_tokenize(m, text, len, true, false, NULL, 0, &n_tok, NULL, 0);   /* the count */
    tok = malloc((n_tok ? n_tok : 1) * sizeof *tok);
    if (!tok || kvlm_tokenize(m, text, len, true, false, tok, n_tok, &n_tok, err, sizeof err) != KVLM_OK) {
        fprintf(stderr, "kvlm perplexity: tokenizing %s: %s\n", o.file, tok ? err : "out of memory");
        goto done;
    }
    const int64_t c = o.n_window, V = in.n_vocab;
    int64_t n_chunks = (int64_t)n_tok / c;
    if (o.max_chunks > 0 && n_chunks > o.max_chunks) n_chunks = o.max_chunks;
    if (n_chunks < 1) {
        fprintf(stderr, "kvlm perplexity: %s has %zu tokens, fewer than one window of %lld (-c)\n", o.file,
                n_tok, (long long)c);
        goto done;
    }
    size_t n_bos = 0;                              /* 1 if the model asks for BOS */
    kvlm_tokenize(m, "", 0, true, false, NULL, 0, &n_bos, NULL, 0);
    if (n_bos == 1)
        for (int64_t k = 1; k < n_chunks; k++) tok[k * c] = in.bos;   /* window k's first token */
    lt = malloc((size_t)c * (size_t)V * sizeof *lt);
    lpt = malloc((size_t)V * sizeof *lpt);
    if (o.kl) {
        lb = malloc((size_t)c * (size_t)V * sizeof *lb);
        lpb = malloc((size_t)V * sizeof *lpb);
    }
    if (!lt || !lpt || (o.kl && (!lb || !lpb))) {
        fprintf(stderr, "kvlm perplexity: out of memory for %lld x %lld logits\n", (long long)c, (long long)V);
        goto done;
    }
    if (!(ct = open_ctx(m, &o, o.type, o.type_v)) || (o.kl && !(cb = open_ctx(m, &o, o.base_type, KVLM_KV_SAME)))) goto done;
    /* --context-shift: the first n_chunks windows' tokens (--chunks), else the whole text */
    const int64_t n_stream = o.max_chunks > 0 ? n_chunks * c : (int64_t)n_tok;
    if (o.shift && n_stream <= c) {
        fprintf(stderr, "kvlm perplexity: --context-shift scores the tokens after the first window: %lld tokens "
                "are too few for -c %lld\n", (long long)n_stream, (long long)c);
        goto done;
    }
    if (!o.json && !o.shift)
        fprintf(stderr, "perplexity: %zu tokens of %s, %lld windows of %lld (scored: the last %lld of each), "
                "K/V %s%s%s\n", n_tok, o.file, (long long)n_chunks, (long long)c, (long long)(c - 1 - c / 2),
                cli_kv_label(o.type, o.type_v, kvl, sizeof kvl), o.kl ? ", KL base " : "", o.kl ? kvlm_kv_type_name(o.base_type) : "");
    if (!o.json && o.shift)
        fprintf(stderr, "perplexity: %lld of %zu tokens of %s through one context of %lld with context shift "
                "(keep %d; scored: all after the first window), K/V %s\n", (long long)n_stream, n_tok, o.file,
                (long long)c, o.n_keep, cli_kv_label(o.type, o.type_v, kvl, sizeof kvl));
    ppl_sums s = { 0 };
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (o.shift && run_stream(ct, tok, n_stream, c, V, lt, lpt, &s)) goto done;
    for (int64_t k = 0; k < n_chunks && !o.shift; k++) {
        if (run_window(ct, cb, tok + k * c, c, V, lt, lb, lpt, lpb, &s)) goto done;
        if (!o.json) fprintf(stderr, "[%lld]%.4f%s", (long long)(k + 1), ppl_of(&s), k + 1 < n_chunks ? "," : "\n");
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    kvlm_stats st;
    kvlm_ctx_get_stats(ct, &st);
    const double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    const double ppl = ppl_of(&s), ppl_err = ppl * sem(s.nll, s.nll2, s.count);
    if (o.json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "file", o.file);
        cJSON_AddNumberToObject(j, "n_tokens", (double)n_tok);
        cJSON_AddNumberToObject(j, "ctx", (double)c);
        cJSON_AddNumberToObject(j, "chunks", (double)n_chunks);
        cJSON_AddNumberToObject(j, "scored", (double)s.count);
        cJSON_AddStringToObject(j, "cache_type", cli_kv_label(o.type, o.type_v, kvl, sizeof kvl));
        cJSON_AddNumberToObject(j, "ppl", ppl);
        cJSON_AddNumberToObject(j, "ppl_err", ppl_err);
        cJSON_AddNumberToObject(j, "mean_nll", s.nll / (double)s.count);
        cJSON_AddBoolToObject(j, "context_shift", o.shift);
        if (o.shift) {
            cJSON_AddNumberToObject(j, "keep", o.n_keep);
            cJSON_AddNumberToObject(j, "streamed", (double)n_stream);
            cJSON_AddNumberToObject(j, "shifts", (double)st.n_shifts);
        }
        if (o.kl) {
            cJSON_AddStringToObject(j, "kl_base", kvlm_kv_type_name(o.base_type));
            cJSON_AddNumberToObject(j, "kl_mean", s.kl / (double)s.count);
            cJSON_AddNumberToObject(j, "kl_err", sem(s.kl, s.kl2, s.count));
            cJSON_AddNumberToObject(j, "top1_agreement", (double)s.top1_same / (double)s.count);
        }
        cJSON_AddNumberToObject(j, "seconds", secs);
        char *str = cJSON_PrintUnformatted(j);
        if (str) printf("%s\n", str);
        free(str);
        cJSON_Delete(j);
    } else {
        printf("PPL = %.4f +/- %.4f   (%lld tokens scored, K/V %s, %.1f s)\n", ppl, ppl_err, (long long)s.count,
               cli_kv_label(o.type, o.type_v, kvl, sizeof kvl), secs);
        if (o.shift) printf("context shifts: %lld, %lld positions dropped\n", (long long)st.n_shifts, (long long)st.n_dropped);
        if (o.kl)
            printf("KL(%s || %s) = %.6f +/- %.6f nats per token, top-1 agreement %.2f%%\n", kvlm_kv_type_name(o.base_type),
                   cli_kv_label(o.type, o.type_v, kvl, sizeof kvl), s.kl / (double)s.count, sem(s.kl, s.kl2, s.count),
                   100.0 * (double)s.top1_same / (double)s.count);
    }
    rc = 0;
done:
    kvlm_ctx_free(ct);
    kvlm_ctx_free(cb);
    kvlm_model_free(m);
    free(tok);
    free(lt);
    free(lb);
    free(lpt);
    free(lpb);
    free(text);
    return rc;
}
