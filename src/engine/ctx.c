/* ctx.c - kvlm_ctx: one sequence, its KV cache, scratch and threads. The
 * public kvlm_ctx_* functions of include/kvlm.h.
 * Room: engine. May touch: everything below it (core, kern, model, tok, kv, nn).
 *
 * Invariant: tokens[0..n_past) is the sequence, and with the cache on the KV
 * cache holds exactly positions [0, n_past) (kv.n_pos == n_past). With
 * no_kv_cache every call recomputes positions [0, n_past) from scratch: the
 * naive baseline, by the same code, so both paths give bitwise equal logits. */
#include "core/err.h"
#include "core/pool.h"
#include "kv/kv_cache.h"
#include "model/model.h"
#include "nn/forward.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { CTX_MAX_BATCH = 512 };   /* tokens per forward_run: bounds the scratch */

struct kvlm_ctx {
    const kvlm_model *m;
    kvlm_ctx_params params;
    int64_t n_ctx;
    kv_cache kv;
    forward_state fs;
    pool *pool;
    kvlm_token *tokens;   /* [n_ctx] */
    size_t n_past;
    float *logits;        /* [n_vocab] */
    bool has_logits;
    kvlm_stats stats;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

kvlm_ctx_params kvlm_ctx_default_params(void)
{
    kvlm_ctx_params p = { .n_ctx = 0, .n_threads = 0, .no_kv_cache = false, .kv_type = KVLM_KV_F16 };
    return p;
}

kvlm_err kvlm_ctx_init(const kvlm_model *m, const kvlm_ctx_params *params, kvlm_ctx **out,
                       char *err, size_t errlen)
{
    kvlm_err e;
    *out = NULL;
    if (!m) return err_set(err, errlen, KVLM_ERR_INVALID, "no model");
    kvlm_ctx_params p = params ? *params : kvlm_ctx_default_params();
    if (p.n_ctx < 0 || p.n_threads < 0)
        return err_set(err, errlen, KVLM_ERR_INVALID, "n_ctx and n_threads must not be negative");
    if (p.n_ctx == 0) p.n_ctx = m->hp.n_ctx_train;
    if (p.n_ctx > (int64_t)1 << 24)
        return err_set(err, errlen, KVLM_ERR_INVALID, "context %lld is too large", (long long)p.n_ctx);
    if (p.n_threads == 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        p.n_threads = nc > 0 ? (int)(nc < 64 ? nc : 64) : 1;
    }
    kvlm_ctx *c = calloc(1, sizeof *c);
    if (!c) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory");
    c->m = m;
    c->params = p;
    c->n_ctx = p.n_ctx;
    const model_hparams *hp = &m->hp;
    if ((e = kv_cache_init(&c->kv, hp->n_layer, hp->n_head_kv, hp->head_dim, c->n_ctx, p.kv_type, err, errlen)))
        goto fail;
    int64_t nb = c->n_ctx < CTX_MAX_BATCH ? c->n_ctx : CTX_MAX_BATCH;
    if ((e = forward_init(&c->fs, m, nb, c->n_ctx, p.n_threads, err, errlen))) goto fail;
    if ((e = pool_init(&c->pool, p.n_threads, err, errlen))) goto fail;
    c->tokens = malloc((size_t)c->n_ctx * sizeof *c->tokens);
    c->logits = malloc((size_t)hp->n_vocab * sizeof *c->logits);
    if (!c->tokens || !c->logits) {
        e = err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    kvlm_ctx_reset_stats(c);
    *out = c;
    return KVLM_OK;
fail:
    kvlm_ctx_free(c);
    return e;
}

void kvlm_ctx_free(kvlm_ctx *c)
{
    if (!c) return;
    pool_free(c->pool);
    forward_free(&c->fs);
    kv_cache_free(&c->kv);
    free(c->tokens);
    free(c->logits);
    free(c);
}

/* Runs the model over tokens[0..n) at positions kv.n_pos.. in batches. */
static void run_batches(kvlm_ctx *c, const kvlm_token *tokens, size_t n)
{
    for (size_t i = 0; i < n; i += (size_t)c->fs.n_batch) {
        size_t nb = n - i < (size_t)c->fs.n_batch ? n - i : (size_t)c->fs.n_batch;
        forward_run(&c->fs, c->pool, &c->kv, tokens + i, (int64_t)nb, c->logits, false);
    }
    c->stats.n_computed += (int64_t)n;
}

kvlm_err kvlm_ctx_decode(kvlm_ctx *c, const kvlm_token *tokens, size_t n, char *err, size_t errlen)
{
    if (n == 0) return err_set(err, errlen, KVLM_ERR_INVALID, "decode needs at least one token");
    if (n > (size_t)c->n_ctx - c->n_past)
        return err_set(err, errlen, KVLM_ERR_CONTEXT_FULL,
                       "%zu tokens do not fit: %zu of %lld context positions are used", n, c->n_past,
                       (long long)c->n_ctx);
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->m->hp.n_vocab)
            return err_set(err, errlen, KVLM_ERR_INVALID, "token id %d at index %zu is outside [0, %lld)",
                           (int)tokens[i], i, (long long)c->m->hp.n_vocab);

    double t0 = now_s();
    memcpy(c->tokens + c->n_past, tokens, n * sizeof *tokens);
    if (c->params.no_kv_cache) {
        /* the baseline: forget every K/V and recompute the whole sequence */
        kv_cache_truncate(&c->kv, 0);
        run_batches(c, c->tokens, c->n_past + n);
    } else {
        run_batches(c, tokens, n);
    }
    c->n_past += n;
    c->has_logits = true;
    double dt = now_s() - t0;
    if (n > 1) {
        c->stats.t_prefill_s += dt;
        c->stats.n_prefilled += (int64_t)n;
    } else {
        c->stats.t_decode_s += dt;
        c->stats.n_decoded += 1;
    }
    return KVLM_OK;
}

kvlm_err kvlm_ctx_prefill(kvlm_ctx *c, const kvlm_token *tokens, size_t n, size_t *n_reused,
                          char *err, size_t errlen)
{
    if (n_reused) *n_reused = 0;
    if (n == 0) return err_set(err, errlen, KVLM_ERR_INVALID, "prefill needs at least one token");
    if (n > (size_t)c->n_ctx)
        return err_set(err, errlen, KVLM_ERR_CONTEXT_FULL, "prompt of %zu tokens exceeds the context of %lld",
                       n, (long long)c->n_ctx);
    size_t keep = 0;
    if (!c->params.no_kv_cache)
        while (keep < c->n_past && keep < n && c->tokens[keep] == tokens[keep]) keep++;
    if (keep == n) keep = n - 1;   /* the last token is recomputed for fresh logits */
    kvlm_ctx_truncate(c, keep);
    kvlm_err e = kvlm_ctx_decode(c, tokens + keep, n - keep, err, errlen);
    if (e != KVLM_OK) return e;
    c->stats.n_prompt += (int64_t)n;
    c->stats.n_reused += (int64_t)keep;
    if (n_reused) *n_reused = keep;
    return KVLM_OK;
}

void kvlm_ctx_truncate(kvlm_ctx *c, size_t n_keep)
{
    if (n_keep >= c->n_past) return;
    c->n_past = n_keep;
    kv_cache_truncate(&c->kv, (int64_t)n_keep);
    c->has_logits = false;
}

const float *kvlm_ctx_logits(const kvlm_ctx *c) { return c->has_logits ? c->logits : NULL; }
size_t kvlm_ctx_n_past(const kvlm_ctx *c) { return c->n_past; }
size_t kvlm_ctx_n_ctx(const kvlm_ctx *c) { return (size_t)c->n_ctx; }
const kvlm_token *kvlm_ctx_tokens(const kvlm_ctx *c) { return c->tokens; }

void kvlm_ctx_get_stats(const kvlm_ctx *c, kvlm_stats *out)
{
    *out = c->stats;
    out->kv_bytes_per_token = kv_cache_bytes_per_token(&c->kv);
    out->kv_bytes_per_token_layer = out->kv_bytes_per_token / c->kv.n_layer;
    out->kv_bytes_used = (int64_t)c->n_past * out->kv_bytes_per_token;
    out->kv_bytes_reserved = kv_cache_bytes_reserved(&c->kv);
}

void kvlm_ctx_reset_stats(kvlm_ctx *c) { memset(&c->stats, 0, sizeof c->stats); }
