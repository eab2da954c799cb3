/* cli_gen.c - kvlm run / chat / inspect: model lookup, the generation loop,
 * statistics. Room: cli; uses only include/kvlm.h. */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ERRLEN 512

kvlm_model *cli_load_model(const cli_opts *o)
{
    return cli_model_open(o->model ? o->model : o->model_pos);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    return buf;
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
static int gen_loop(kvlm_ctx *ctx, const kvlm_model *m, kvlm_sampler *smp, long long n_predict, char **reply)
{
    char err[ERRLEN];
    kvlm_detok dt = { 0 };
    char text[1100];
    size_t rlen = 0, rcap = 0;
    if (reply) *reply = NULL;
    for (long long i = 0; n_predict < 0 || i < n_predict; i++) {
        kvlm_token t = kvlm_sampler_sample(smp, kvlm_ctx_logits(ctx));
        if (kvlm_token_is_eog(m, t)) break;
        kvlm_sampler_accept(smp, t);
        size_t n = kvlm_detok_push(&dt, m, t, text, sizeof text);
        fwrite(text, 1, n, stdout);
        fflush(stdout);
        if (reply && str_append(reply, &rlen, &rcap, text, n)) return 1;
        if (n_predict >= 0 && i + 1 == n_predict) break;   /* no need to run the last token */
        if (kvlm_ctx_n_past(ctx) >= kvlm_ctx_n_ctx(ctx)) {
            fprintf(stderr, "\nkvlm: context full (%zu tokens), stopping\n", kvlm_ctx_n_ctx(ctx));
            break;
        }
        if (kvlm_ctx_decode(ctx, &t, 1, err, sizeof err) != KVLM_OK) {
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
                    size_t n_prompt, long long n_predict, char **reply, size_t *n_reused)
{
    char err[ERRLEN];
    if (kvlm_ctx_prefill(ctx, prompt, n_prompt, n_reused, err, sizeof err) != KVLM_OK) {
        fprintf(stderr, "kvlm: %s\n", err);
        return 1;
    }
    return gen_loop(ctx, m, smp, n_predict, reply);
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
        rc = gen_loop(f ? f : ctx, m, smp, o->n_predict, NULL);   /* the last one uses ctx itself */
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
    fprintf(stderr, "kv cache           %zu tokens x %lld bytes/token (%lld bytes/token/layer) in %lld blocks "
                    "of %lld = %lld bytes\n",
            kvlm_ctx_n_past(ctx), (long long)s.kv_bytes_per_token, (long long)s.kv_bytes_per_token_layer,
            (long long)s.kv_blocks, (long long)s.cache.block_tokens, (long long)s.kv_bytes_used);
    fprintf(stderr, "kv pool            %lld blocks (%lld bytes): %lld in use, %lld cached, %lld free; "
                    "prefix hits %lld of %lld lookups, %lld evictions, %lld copy-on-write\n",
            (long long)s.cache.n_blocks, (long long)s.kv_bytes_reserved, (long long)s.cache.n_in_use,
            (long long)s.cache.n_cached, (long long)s.cache.n_free, (long long)s.cache.hits,
            (long long)s.cache.lookups, (long long)s.cache.evictions, (long long)s.cache.copies);
}

static int make_ctx(const cli_opts *o, const kvlm_model *m, kvlm_ctx **ctx, kvlm_sampler **smp)
{
    char err[ERRLEN];
    kvlm_model_info info;
    kvlm_model_get_info(m, &info);
    if (kvlm_ctx_init(m, &o->ctx, ctx, err, sizeof err) != KVLM_OK) {
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

int cli_run(const cli_opts *o)
{
    if (!o->prompt && !o->prompt_file) {
        fprintf(stderr, "kvlm run: give a prompt with -p TEXT or -f FILE\n");
        return 2;
    }
    char *file_text = NULL;
    if (o->prompt_file && !(file_text = read_file(o->prompt_file))) {
        fprintf(stderr, "kvlm: cannot read %s\n", o->prompt_file);
        return 1;
    }
    const char *prompt = file_text ? file_text : o->prompt;
    int rc = 1;
    kvlm_model *m = cli_load_model(o);
    kvlm_ctx *ctx = NULL;
    kvlm_sampler *smp = NULL;
    char *rendered = NULL;
    kvlm_token *toks = NULL;
    if (!m || make_ctx(o, m, &ctx, &smp)) goto done;

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
    else rc = generate(ctx, m, smp, toks, n, o->n_predict, NULL, NULL);
    printf("\n");
    if (o->stats) print_stats(ctx, o->ctx.no_kv_cache);
done:
    free(toks);
    free(rendered);
    free(file_text);
    kvlm_sampler_free(smp);
    kvlm_ctx_free(ctx);
    kvlm_model_free(m);
    return rc;
}

int cli_chat(const cli_opts *o)
{
    int rc = 1;
    kvlm_model *m = cli_load_model(o);
    kvlm_ctx *ctx = NULL;
    kvlm_sampler *smp = NULL;
    kvlm_chat_msg *msgs = NULL;
    size_t n_msgs = 0, cap_msgs = 0;
    char *line = NULL;
    size_t line_cap = 0;
    if (!m || make_ctx(o, m, &ctx, &smp)) goto done;
    bool tty = isatty(0);
    if (o->system) {
        msgs = malloc(sizeof *msgs * 8);
        if (!msgs) goto done;
        cap_msgs = 8;
        msgs[n_msgs++] = (kvlm_chat_msg){ "system", strdup(o->system) };
    }
    if (tty) fprintf(stderr, "kvlm chat: type a message, Ctrl-D to quit.\n");
    for (;;) {
        if (tty) fprintf(stderr, "> ");
        ssize_t len = getline(&line, &line_cap, stdin);
        if (len < 0) break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) continue;
        if (n_msgs + 2 > cap_msgs) {
            size_t nc = cap_msgs ? cap_msgs * 2 : 8;
            kvlm_chat_msg *nm = realloc(msgs, nc * sizeof *nm);
            if (!nm) goto done;
            msgs = nm;
            cap_msgs = nc;
        }
        msgs[n_msgs++] = (kvlm_chat_msg){ "user", strdup(line) };
        char err[ERRLEN], *rendered = NULL;
        if (kvlm_chat_render(m, msgs, n_msgs, true, &rendered, err, sizeof err) != KVLM_OK) {
            fprintf(stderr, "kvlm: %s\n", err);
            goto done;
        }
        size_t n, reused = 0;
        kvlm_token *toks = tokenize(m, rendered, true, &n);
        free(rendered);
        if (!toks) goto done;
        char *reply = NULL;
        kvlm_stats before;
        kvlm_ctx_get_stats(ctx, &before);
        int g = generate(ctx, m, smp, toks, n, o->n_predict, &reply, &reused);
        free(toks);
        printf("\n");
        fflush(stdout);
        if (g) { free(reply); goto done; }
        msgs[n_msgs++] = (kvlm_chat_msg){ "assistant", reply ? reply : strdup("") };
        if (o->stats) {
            kvlm_stats s;
            kvlm_ctx_get_stats(ctx, &s);
            fprintf(stderr, "[turn: %zu prompt tokens, %zu reused from the KV cache, %zu new; "
                            "prefill %.1f ms, %lld tokens generated]\n",
                    n, reused, n - reused, 1e3 * (s.t_prefill_s - before.t_prefill_s +
                    (s.n_prefilled == before.n_prefilled ? s.t_decode_s - before.t_decode_s : 0)),
                    (long long)(s.n_decoded - before.n_decoded));
        }
    }
    rc = 0;
    if (o->stats) print_stats(ctx, o->ctx.no_kv_cache);
done:
    for (size_t i = 0; i < n_msgs; i++) free((char *)msgs[i].content);
    free(msgs);
    free(line);
    kvlm_sampler_free(smp);
    kvlm_ctx_free(ctx);
    kvlm_model_free(m);
    return rc;
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
    kvlm_model_free(m);
    return 0;
}
