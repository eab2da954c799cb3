/* stream.c - kvlm through its installed library: load a GGUF model, answer one chat
 * message with the reply streamed to stdout as it is generated, then ask a second
 * question in the same conversation and print what the KV cache held.
 *
 *   cc stream.c $(pkg-config --cflags --libs kvlm) -o stream
 *   ./stream MODEL.gguf "first question" ["second question"] [N_PREDICT]
 *
 * Greedy decoding (temperature 0), so the reply is the one `kvlm chat --temp 0` gives.
 * The second turn re-sends the whole conversation: kvlm_ctx_prefill finds the first
 * turn's tokens in the context and decodes only what is new, and the line
 * "turn 2: N prompt tokens, M from the cache" shows it. Exit status 0 on success, 1 on
 * any kvlm error (its message on stderr). */
#include <kvlm.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENS 8192
#define MAX_REPLY  16384

typedef struct chat {
    kvlm_model *model;
    kvlm_ctx *ctx;
    kvlm_sampler *sampler;
    kvlm_token *tokens;     /* [MAX_TOKENS] the rendered conversation */
    char err[512];
} chat;

static int fail(const chat *c, const char *what, kvlm_err e)
{
    fprintf(stderr, "stream: %s: %s: %s\n", what, kvlm_err_name(e), c->err);
    return 1;
}

/* Renders msgs, prefills the context with them and streams the reply into reply.
 * Prints "turn T: P prompt tokens, R from the cache, G generated". */
static int turn(chat *c, int t, const kvlm_chat_msg *msgs, size_t n_msgs, int n_predict, char *reply)
{
    char *text = NULL;
    size_t n_tok = 0, n_reused = 0;
    kvlm_err e = kvlm_chat_render(c->model, msgs, n_msgs, true, &text, c->err, sizeof c->err);
    if (e != KVLM_OK) return fail(c, "chat_render", e);
    e = kvlm_tokenize(c->model, text, strlen(text), true, true, c->tokens, MAX_TOKENS, &n_tok, c->err, sizeof c->err);
    free(text);
    if (e != KVLM_OK) return fail(c, "tokenize", e);
    e = kvlm_ctx_prefill(c->ctx, c->tokens, n_tok, &n_reused, c->err, sizeof c->err);
    if (e != KVLM_OK) return fail(c, "prefill", e);

    kvlm_detok dt = {0};
    char piece[64];
    size_t used = 0;
    int n_gen = 0;
    reply[0] = '\0';
    kvlm_sampler_reset(c->sampler);
    while (n_gen < n_predict) {
        const kvlm_token tok = kvlm_sampler_sample(c->sampler, kvlm_ctx_logits(c->ctx));
        if (kvlm_token_is_eog(c->model, tok)) break;
        kvlm_sampler_accept(c->sampler, tok);
        n_gen++;
        const size_t m = kvlm_detok_push(&dt, c->model, tok, piece, sizeof piece);
        fwrite(piece, 1, m, stdout);
        fflush(stdout);                                  /* streamed: one piece at a time */
        if (used + m < MAX_REPLY) { memcpy(reply + used, piece, m); used += m; reply[used] = '\0'; }
        e = kvlm_ctx_decode(c->ctx, &tok, 1, c->err, sizeof c->err);
        if (e != KVLM_OK) return fail(c, "decode", e);
    }
    const size_t m = kvlm_detok_flush(&dt, piece, sizeof piece);
    fwrite(piece, 1, m, stdout);
    if (used + m < MAX_REPLY) { memcpy(reply + used, piece, m); used += m; reply[used] = '\0'; }
    printf("\n");
    fprintf(stderr, "turn %d: %zu prompt tokens, %zu from the cache, %d generated\n", t, n_tok, n_reused, n_gen);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf \"question\" [\"second question\"] [N_PREDICT]\n", argv[0]);
        return 2;
    }
    const int n_predict = argc > 4 ? atoi(argv[4]) : 64;
    chat c = {0};
    static char reply[MAX_REPLY];
    int rc = 1;
    kvlm_err e = kvlm_model_load(argv[1], &c.model, c.err, sizeof c.err);
    if (e != KVLM_OK) return fail(&c, "model_load", e);
    kvlm_model_info info;
    kvlm_model_get_info(c.model, &info);
    fprintf(stderr, "model: %s (%s), %lld layers, %lld parameters\n", info.name, info.arch,
            (long long)info.n_layer, (long long)info.n_params);

    kvlm_ctx_params cp = kvlm_ctx_default_params();
    cp.n_ctx = 2048;
    cp.n_threads = 2;
    kvlm_sampler_params sp = kvlm_sampler_default_params();
    sp.temp = 0;
    c.tokens = malloc(MAX_TOKENS * sizeof *c.tokens);
    if (!c.tokens) { fprintf(stderr, "stream: out of memory\n"); goto out; }
    if ((e = kvlm_ctx_init(c.model, &cp, &c.ctx, c.err, sizeof c.err)) != KVLM_OK) { rc = fail(&c, "ctx_init", e); goto out; }
    if ((e = kvlm_sampler_init(&sp, info.n_vocab, &c.sampler, c.err, sizeof c.err)) != KVLM_OK) {
        rc = fail(&c, "sampler_init", e);
        goto out;
    }

    kvlm_chat_msg msgs[3] = { { "user", argv[2] }, { "assistant", reply }, { "user", argc > 3 ? argv[3] : "Say it again, shorter." } };
    if (turn(&c, 1, msgs, 1, n_predict, reply) != 0) goto out;
    if (turn(&c, 2, msgs, 3, n_predict, reply) != 0) goto out;

    kvlm_stats st;
    kvlm_ctx_get_stats(c.ctx, &st);
    fprintf(stderr, "kv cache: %lld bytes per token, %lld blocks in use, %lld cached, %lld free; "
            "%lld of %lld prompt tokens reused\n",
            (long long)st.kv_bytes_per_token, (long long)st.cache.n_in_use, (long long)st.cache.n_cached,
            (long long)st.cache.n_free, (long long)st.n_reused, (long long)st.n_prompt);
    rc = 0;
out:
    kvlm_sampler_free(c.sampler);
    kvlm_ctx_free(c.ctx);
    kvlm_model_free(c.model);
    free(c.tokens);
    return rc;
}
