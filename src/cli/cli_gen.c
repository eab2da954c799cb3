/* cli_gen.c - kvlm run / chat / inspect: model lookup, the generation loop,
 * statistics. Room: cli; uses only include/kvlm.h. */
#include "cli/cli.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ERRLEN 512

kvlm_model *cli_load_model(const cli_opts *o)
{
    return cli_model_open(o->model ? o->model : o->model_pos);
}

/* Tokenizes text into a malloc'd array. */
static kvlm_token *tokenize(const kvlm_model *m, const char *text, bool special, size_t *n)
{
    char err[ERRLEN];
    size_t len = strlen(text), cap = len + 16;
    kvlm_token *toks = malloc(cap * sizeof *toks);
    if (!toks) return NULL;
    if (kvlm_tokenize(m, text, len, true, special, toks, cap, n, err, sizeof err) != KVLM_OK) {
        fprintf(stderr, "kvlm: tokenize: %s\n", err);
        free(toks);
        return NULL;
    }
    return toks;
}

/* Appends to a growing string. */
static int str_append(char **s, size_t *len, size_t *cap, const char *add, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t nc = (*cap ? *cap : 256);
        while (nc < *len + n + 1) nc *= 2;
        char *ns = realloc(*s, nc);
        if (!ns) return -1;
        *s = ns;
        *cap = nc;
    }
    memcpy(*s + *len, add, n);
    *len += n;
    (*s)[*len] = '\0';
    return 0;
}

/* Prefills prompt tokens (reusing the cached prefix), then samples up to
 * n_predict tokens, streaming their text to stdout. The generated text is
 * returned in *reply (malloc'd) when reply is not NULL. Returns 0 or 1. */
/* SIGINT/SIGTERM: the first stops generation (and a chat's input) at the next token,
 * so the normal exit path runs and the cache's pending tier writes are flushed when
 * the context is freed; a second one kills at once. */
static volatile sig_atomic_t g_stop;

static void on_stop(int sig)
{
    if (g_stop) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    g_stop = sig;
}

static void stop_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;   /* no SA_RESTART: a chat's blocking read returns */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* The exit status after a stop: 128 + the signal, as a shell reports it. */
static int stop_status(int rc) { return g_stop ? 128 + (int)g_stop : rc; }

static int gen_loop(kvlm_ctx *ctx, const kvlm_model *m, kvlm_sampler *smp, const cli_opts *o, char **reply)
{
    const long long n_predict = o->n_predict;
    char err[ERRLEN];
    kvlm_detok dt = { 0 };
    char text[1100];
    size_t rlen = 0, rcap = 0;
    if (reply) *reply = NULL;
    for (long long i = 0; (n_predict < 0 || i < n_predict) && !g_stop; i++) {
        kvlm_token t = kvlm_sampler_sample(smp, kvlm_ctx_logits(ctx));
        if (kvlm_token_is_eog(m, t)) break;
        kvlm_sampler_accept(smp, t);
        size_t n = kvlm_detok_push(&dt, m, t, text, sizeof text);
        fwrite(text, 1, n, stdout);
        fflush(stdout);
        if (reply && str_append(reply, &rlen, &rcap, text, n)) return 1;
        if (n_predict >= 0 && i + 1 == n_predict) break;   /* no need to run the last token */
        const kvlm_err e = kvlm_ctx_decode(ctx, &t, 1, err, sizeof err);   /* with --context-shift: shifts */
        if (e == KVLM_ERR_CONTEXT_FULL && kvlm_ctx_n_past(ctx) >= kvlm_ctx_n_ctx(ctx)) {
            fprintf(stderr, "\nkvlm: context full (%zu tokens), stopping%s%s\n", kvlm_ctx_n_ctx(ctx),
                    o->ctx.context_shift ? ": " : "", o->ctx.context_shift ? err : "");   /* why no shift */
            break;
        }
        if (e != KVLM_OK) {
            fprintf(stderr, "\nkvlm: %s\n", err);
            return 1;
        }
    }
    size_t n = kvlm_detok_flush(&dt, text, sizeof text);
    fwrite(text, 1, n, stdout);
    if (reply && n && str_append(reply, &rlen, &rcap, text, n)) return 1;
    fflush(stdout);
    return 0;
}

static int generate(kvlm_ctx *ctx, const kvlm_model *m, kvlm_sampler *smp, const kvlm_token *prompt,
                    size_t n_prompt, const cli_opts *o, char **reply, size_t *n_reused)
{
    char err[ERRLEN];
    if (kvlm_ctx_prefill(ctx, prompt, n_prompt, n_reused, err, sizeof err) != KVLM_OK) {
        fprintf(stderr, "kvlm: %s\n", err);
        return 1;
    }
    return gen_loop(ctx, m, smp, o, reply);
}

/* --parallel N: one prefill, N - 1 forks sharing its blocks, N samplers seeded
 * seed, seed + 1, ...; the sequences run one after the other. */
static int generate_parallel(kvlm_ctx *ctx, const kvlm_model *m, const cli_opts *o, const kvlm_token *prompt,
                             size_t n_prompt)
{
    char err[ERRLEN];
    if (kvlm_ctx_prefill(ctx, prompt, n_prompt, NULL, err, sizeof err) != KVLM_OK) {
        fprintf(stderr, "kvlm: %s\n", err);
        return 1;
    }
    kvlm_model_info info;
    kvlm_model_get_info(m, &info);
    int rc = 0;
    for (int i = 0; i < o->n_parallel && rc == 0; i++) {
        kvlm_ctx *f = NULL;
        kvlm_sampler *smp = NULL;
        kvlm_sampler_params sp = o->samp;
        sp.seed += (uint64_t)i;
        if ((i + 1 < o->n_parallel && kvlm_ctx_fork(ctx, &f, err, sizeof err) != KVLM_OK) ||
            kvlm_sampler_init(&sp, info.n_vocab, &smp, err, sizeof err) != KVLM_OK) {
            fprintf(stderr, "kvlm: %s\n", err);
            kvlm_ctx_free(f);
            return 1;
        }
        printf("%s--- sequence %d (seed %llu) ---\n", i ? "\n" : "", i, (unsigned long long)sp.seed);
        rc = gen_loop(f ? f : ctx, m, smp, o, NULL);   /* the last one uses ctx itself */
        kvlm_sampler_free(smp);
        kvlm_ctx_free(f);
    }
    return rc;
}

static void print_stats(const kvlm_ctx *ctx, bool no_cache)
{
    kvlm_stats s;
    kvlm_ctx_get_stats(ctx, &s);
    fprintf(stderr, "\n--- stats%s ---\n", no_cache ? " (no KV cache: every step recomputes the sequence)" : "");
    fprintf(stderr, "prompt tokens      %lld (reused from the KV cache: %lld)\n", (long long)s.n_prompt,
            (long long)s.n_reused);
    fprintf(stderr, "prefill            %lld tokens in %.3f s = %.1f tok/s\n", (long long)s.n_prefilled,
            s.t_prefill_s, s.t_prefill_s > 0 ? (double)s.n_prefilled / s.t_prefill_s : 0.0);
    fprintf(stderr, "decode             %lld tokens in %.3f s = %.1f tok/s\n", (long long)s.n_decoded,
            s.t_decode_s, s.t_decode_s > 0 ? (double)s.n_decoded / s.t_decode_s : 0.0);
    fprintf(stderr, "positions computed %lld\n", (long long)s.n_computed);
    if (s.n_shifts > 0)
        fprintf(stderr, "context shifts     %lld, %lld positions dropped (their blocks never published)\n",
                (long long)s.n_shifts, (long long)s.n_dropped);
    fprintf(stderr, "kv cache           %zu tokens x %lld bytes/token (%lld bytes/token/layer) in %lld blocks "
                    "of %lld = %lld bytes\n",
            kvlm_ctx_n_past(ctx), (long long)s.kv_bytes_per_token, (long long)s.kv_bytes_per_token_layer,
            (long long)s.kv_blocks, (long long)s.cache.block_tokens, (long long)s.kv_bytes_used);
    if (s.kv_n_groups > 1)
        fprintf(stderr, "kv groups          full attention: %lld layers, %lld blocks = %lld bytes; "
                        "sliding window %lld: %lld layers, %lld blocks = %lld bytes\n",
                (long long)s.kv_group[0].n_layer, (long long)s.kv_group[0].blocks, (long long)s.kv_group[0].bytes,
                (long long)s.kv_group[1].window, (long long)s.kv_group[1].n_layer, (long long)s.kv_group[1].blocks,
                (long long)s.kv_group[1].bytes);
    fprintf(stderr, "kv pool            %lld blocks (%lld bytes): %lld in use, %lld cached, %lld free; "
                    "prefix hits %lld of %lld lookups, %lld evictions, %lld copy-on-write\n",
            (long long)s.cache.n_blocks, (long long)s.kv_bytes_reserved, (long long)s.cache.n_in_use,
            (long long)s.cache.n_cached, (long long)s.cache.n_free, (long long)s.cache.hits,
            (long long)s.cache.lookups, (long long)s.cache.evictions, (long long)s.cache.copies);
    cli_tier_print_stats(stderr, &s);
}

static int make_ctx(const cli_opts *o, const kvlm_model *m, kvlm_ctx **ctx, kvlm_sampler **smp)
{
    char err[ERRLEN];
    kvlm_model_info info;
    kvlm_model_get_info(m, &info);
    kvlm_ctx_params cp = o->ctx;
    if (o->shift_default && info.n_swa > 0) cp.context_shift = false;   /* its window layers need none */
    if (kvlm_ctx_init(m, &cp, ctx, err, sizeof err) != KVLM_OK) {
        fprintf(stderr, "kvlm: %s\n", err);
        return 1;
    }
    if (kvlm_sampler_init(&o->samp, info.n_vocab, smp, err, sizeof err) != KVLM_OK) {
        fprintf(stderr, "kvlm: %s\n", err);
        kvlm_ctx_free(*ctx);
        return 1;
    }
    return 0;
}

/* Bytes a text may have and still fit the context: every token stands for at most
 * the longest token's bytes, times 4 for what normalization may fold (a fullwidth
 * letter: 3 bytes in, 1 out). A longer file cannot fit, so it is not read whole. */
static size_t text_bound(const kvlm_model *m, const kvlm_ctx *ctx)
{
    kvlm_model_info in;
    kvlm_model_get_info(m, &in);
    int64_t longest = 1;
    char none[1];
    for (kvlm_token t = 0; t < in.n_vocab; t++) {       /* cap 0: the byte count alone */
        int64_t b = kvlm_token_to_bytes(m, t, true, none, 0);
        if (b > longest) longest = b;
    }
    return kvlm_ctx_n_ctx(ctx) * (size_t)longest * 4 + 4096;
}

/* The prompt of run: -p's text; with -f, the file's text, then, with -p too, a
 * blank line and -p's text. malloc'd; NULL after printing why. */
static char *run_prompt(const cli_opts *o, const kvlm_model *m, const kvlm_ctx *ctx)
{
    if (!o->prompt_file) return strdup(o->prompt);
    size_t n;
    char why[96];
    snprintf(why, sizeof why, "more text than a context of %zu tokens can hold", kvlm_ctx_n_ctx(ctx));
    char *text = cli_file_read_text(o->prompt_file, text_bound(m, ctx), why, &n);
    if (!text || !o->prompt) return text;
    size_t np = strlen(o->prompt);
    char *all = realloc(text, n + 2 + np + 1);
    if (!all) {
        free(text);
        fprintf(stderr, "kvlm: out of memory\n");
        return NULL;
    }
    memcpy(all + n, "\n\n", 2);
    memcpy(all + n + 2, o->prompt, np + 1);
    return all;
}

int cli_run(const cli_opts *o)
{
    if (!o->prompt && !o->prompt_file) {
        fprintf(stderr, "kvlm run: give a prompt with -p TEXT or -f FILE\n");
        return 2;
    }
    int rc = 1;
    kvlm_model *m = cli_load_model(o);
    kvlm_ctx *ctx = NULL;
    kvlm_sampler *smp = NULL;
    char *prompt = NULL, *rendered = NULL;
    kvlm_token *toks = NULL;
    if (!m || make_ctx(o, m, &ctx, &smp) || !(prompt = run_prompt(o, m, ctx))) goto done;
    stop_install();

    const char *text = prompt;
    if (!o->raw) {
        char err[ERRLEN];
        kvlm_chat_msg msgs[2];
        size_t nm = 0;
        if (o->system) msgs[nm++] = (kvlm_chat_msg){ "system", o->system };
        msgs[nm++] = (kvlm_chat_msg){ "user", prompt };
        if (kvlm_chat_render(m, msgs, nm, true, &rendered, err, sizeof err) != KVLM_OK) {
            fprintf(stderr, "kvlm: %s\n", err);
            goto done;
        }
        text = rendered;
    }
    size_t n;
    if (!(toks = tokenize(m, text, !o->raw, &n))) goto done;
    if (n == 0) {
        fprintf(stderr, "kvlm: the prompt is empty\n");
        goto done;
    }
    if (o->n_parallel > 1) rc = generate_parallel(ctx, m, o, toks, n);
    else rc = generate(ctx, m, smp, toks, n, o, NULL, NULL);
    printf("\n");
    if (o->stats) print_stats(ctx, o->ctx.no_kv_cache);
done:
    free(toks);
    free(rendered);
    free(prompt);
    kvlm_sampler_free(smp);
    kvlm_ctx_free(ctx);   /* a private cache: pending tier writes are flushed here */
    kvlm_model_free(m);
    return stop_status(rc);
}

/* chat --session: the model file's base name (what the session records) into buf;
 * NULL after printing why the model cannot be found. */
static const char *model_base_name(const cli_opts *o, char *buf, size_t cap)
{
    const char *path = cli_model_resolve(o->model ? o->model : o->model_pos, "smollm2");
    if (!path) return NULL;
    const char *slash = strrchr(path, '/');
    snprintf(buf, cap, "%s", slash && slash[1] ? slash + 1 : path);
    return buf;
}

/* The conversation a chat starts from: the session file's (resumed) or --system's.
 * 0, 1 (a runtime error, printed) or 2 (a usage error). */
static int chat_start(const cli_opts *o, const char *model_name, cli_session *c)
{
    int got = o->session ? cli_file_session_load(o->session, model_name, c) : 0;
    if (got < 0) return 1;
    if (got > 0) {
        bool same = o->system ? c->has_system && !strcmp(c->msgs[0].content, o->system) : true;
        if (!same) {
            fprintf(stderr, "kvlm chat: --system differs from the system prompt of %s; leave --system out to "
                            "resume it, or start another session\n", o->session);
            cli_file_session_free(c);
            return 2;
        }
        fprintf(stderr, "kvlm chat: resumed %zu turn%s from %s\n", c->n_turns, c->n_turns == 1 ? "" : "s",
                o->session);
        return 0;
    }
    if (o->system && cli_file_session_add(c, "system", o->system)) return 1;
    c->has_system = o->system != NULL;
    return 0;
}

/* One turn: the whole conversation c (ending with the user's message) is the prompt;
 * the reply is appended to c. 0 or 1. */
static int chat_turn(const cli_opts *o, const kvlm_model *m, kvlm_ctx *ctx, kvlm_sampler *smp, cli_session *c)
{
    char err[ERRLEN], *rendered = NULL;
    if (kvlm_chat_render(m, c->msgs, c->n_msgs, true, &rendered, err, sizeof err) != KVLM_OK) {
        fprintf(stderr, "kvlm: %s\n", err);
        return 1;
    }
    size_t n, reused = 0;
    kvlm_token *toks = tokenize(m, rendered, true, &n);
    free(rendered);
    if (!toks) return 1;
    char *reply = NULL;
    kvlm_stats before, s;
    kvlm_ctx_get_stats(ctx, &before);
    int g = generate(ctx, m, smp, toks, n, o, &reply, &reused);
    free(toks);
    printf("\n");
    fflush(stdout);
    if (!g && cli_file_session_add(c, "assistant", reply ? reply : "")) g = 1;
    free(reply);
    if (g) return 1;
    c->n_turns++;
    if (o->stats) {
        kvlm_ctx_get_stats(ctx, &s);
        char tiers[64] = "";
        if (s.cache.n_tiers > 0)
            snprintf(tiers, sizeof tiers, " (%lld from tiers)", (long long)(s.n_reused_tier - before.n_reused_tier));
        fprintf(stderr, "[turn: %zu prompt tokens, %zu reused from the KV cache%s, %zu new; "
                        "prefill %.1f ms, %lld tokens generated]\n",
                n, reused, tiers, n - reused, 1e3 * (s.t_prefill_s - before.t_prefill_s +
                (s.n_prefilled == before.n_prefilled ? s.t_decode_s - before.t_decode_s : 0)),
                (long long)(s.n_decoded - before.n_decoded));
    }
    return 0;
}

int cli_chat(const cli_opts *o)
{
    char model_name[256];
    cli_session c = { 0 };
    if (!model_base_name(o, model_name, sizeof model_name)) return 1;
    int rc = chat_start(o, model_name, &c);   /* a bad session file: before the model loads */
    if (rc) return rc;
    rc = 1;
    kvlm_model *m = cli_load_model(o);
    kvlm_ctx *ctx = NULL;
    kvlm_sampler *smp = NULL;
    char *line = NULL;
    size_t line_cap = 0;
    if (!m || make_ctx(o, m, &ctx, &smp)) goto done;
    bool tty = isatty(0);
    if (tty) fprintf(stderr, "kvlm chat: type a message, Ctrl-D to quit.\n");
    stop_install();
    while (!g_stop) {
        if (tty) fprintf(stderr, "> ");
        ssize_t len = getline(&line, &line_cap, stdin);
        if (len < 0) break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) continue;
        if (o->session && (memchr(line, 0, (size_t)len) || !cli_file_utf8_valid(line, (size_t)len))) {
            fprintf(stderr, "kvlm chat: that line is not UTF-8 text (a session file holds text); ignored\n");
            continue;
        }
        if (cli_file_session_add(&c, "user", line) || chat_turn(o, m, ctx, smp, &c)) goto done;
        if (o->session && cli_file_session_save(o->session, model_name, &c)) goto done;
    }
    rc = 0;
    if (o->stats) print_stats(ctx, o->ctx.no_kv_cache);
done:
    cli_file_session_free(&c);
    free(line);
    kvlm_sampler_free(smp);
    kvlm_ctx_free(ctx);   /* a private cache: pending tier writes are flushed here */
    kvlm_model_free(m);
    return stop_status(rc);
}

int cli_inspect(const cli_opts *o)
{
    kvlm_model *m = cli_load_model(o);
    if (!m) return 1;
    kvlm_model_info in;
    kvlm_model_get_info(m, &in);
    printf("model          %s (%s)\n", in.name, in.arch);
    printf("file           %lld bytes, %.1f M parameters\n", (long long)in.file_bytes, (double)in.n_params / 1e6);
    printf("layers         %lld\n", (long long)in.n_layer);
    printf("embedding      %lld, ffn %lld, vocab %lld\n", (long long)in.n_embd, (long long)in.n_ff,
           (long long)in.n_vocab);
    printf("heads          %lld query, %lld K/V (groups of %lld), head dim %lld\n", (long long)in.n_head,
           (long long)in.n_head_kv, (long long)(in.n_head / in.n_head_kv), (long long)in.head_dim);
    printf("context        %lld (training)\n", (long long)in.n_ctx_train);
    printf("KV cache       %lld layers x %lld K/V heads x %lld dims, K and V; blocks of 16 tokens\n",
           (long long)in.n_layer, (long long)in.n_head_kv, (long long)in.head_dim);
    const kvlm_kv_type types[] = { KVLM_KV_F32, KVLM_KV_F16, KVLM_KV_Q8 };
    const long long ctxs[] = { 4096, 8192, 32768, 131072 };
    printf("  %-5s %12s %12s %12s %12s %12s %12s\n", "type", "bytes/token", "per layer", "4K", "8K", "32K", "128K");
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        double per_tok = (double)kvlm_kv_bytes_per_token(m, types[t]);
        if (per_tok <= 0) continue;                   /* q8 with a head_dim that is not a multiple of 32 */
        printf("  %-5s %12.0f %12.0f", kvlm_kv_type_name(types[t]), per_tok, per_tok / (double)in.n_layer);
        for (size_t c = 0; c < 4; c++) printf(" %8.1f MiB", per_tok * (double)ctxs[c] / (1024.0 * 1024.0));
        printf("\n");
    }
    printf("  (grouped-query attention: %lld query heads share %lld K/V heads, %lldx less than one K/V per head;"
           " the weights are %.1f MiB)\n", (long long)in.n_head, (long long)in.n_head_kv,
           (long long)(in.n_head / in.n_head_kv), (double)in.file_bytes / (1024.0 * 1024.0));
    if (in.n_swa > 0) {
        /* the pool's own accounting (kvlm_kv_bytes_sequence): whole blocks of 16 */
        printf("sliding window %lld on %lld of %lld layers: one sequence's K/V in use, f16 (the window layers keep "
               "only their last %lld positions)\n", (long long)in.n_swa, (long long)in.n_layer_swa,
               (long long)in.n_layer, (long long)in.n_swa);
        const long long at[] = { 4096, 8192, 32768 };
        printf("  %-22s %12s %12s %12s\n", "", "4K", "8K", "32768");
        for (int w = 1; w >= 0; w--) {
            printf("  %-22s", w ? "with the window" : "without (every layer)");
            for (size_t c = 0; c < 3; c++)
                printf(" %8.1f MiB", (double)kvlm_kv_bytes_sequence(m, KVLM_KV_F16, at[c], w) / (1024.0 * 1024.0));
            printf("\n");
        }
    }
    kvlm_model_free(m);
    return 0;
}
