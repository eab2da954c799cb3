/* ctx.c - kvlm_ctx: one sequence, its block table in a (possibly shared) KV
 * cache, scratch and threads. The public kvlm_ctx_* functions of include/kvlm.h.
 * Room: engine. May touch: everything below it (core, kern, model, tok, kv, nn).
 *
 * Invariants: tokens[0..n_past) is the sequence; with the cache on, the block
 * table holds exactly positions [0, n_past) (seq.n_pos == n_past), and with the
 * prefix cache on, every full block of it is published (after each call). With
 * no_kv_cache every call recomputes positions [0, n_past) from scratch: the
 * naive baseline, by the same code, so both paths give bitwise equal logits.
 * KIVI caches keep fewer positions than asked on a rollback into an earlier
 * residual group (kv_seq.h); kvlm_ctx_truncate recomputes the difference from
 * tokens[], prefill folds it into the tokens it computes anyway.
 *
 * Context shift (params.context_shift, kv/kv_shift.h): a decode that does not fit
 * fills the context, then drops positions [shift_keep, shift_keep + discard) and
 * moves the rest down (tokens[] with them), and goes on. The tokens seen so far are
 * then the stream tokens[0, shift_keep), n_dropped tokens no longer held, then
 * tokens[shift_keep, n_past): prefill matches a prompt against that stream. Once
 * the sequence is cut back to shift_keep positions or fewer it is what it was
 * before any shift (kv_shift keeps them bitwise), and publishes again. */
#include "core/err.h"
#include "core/clock.h"
#include "core/pool.h"
#include "engine/cache.h"
#include "kv/kv_seq.h"
#include "model/model.h"
#include "kv/kv_shift.h"
#include "nn/forward.h"
#include "nn/rope_shift.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { CTX_MAX_BATCH = 512 };   /* tokens per forward_run: bounds the scratch */

struct kvlm_ctx {
    const kvlm_model *m;
    kvlm_ctx_params params;
    int64_t n_ctx;
    kvlm_cache *cache;    /* one reference held */
    kv_seq seq;
    forward_state fs;
    pool *pool;
    kvlm_token *tokens;   /* [n_ctx] */
    size_t n_past;
    float *logits;        /* [n_vocab] */
    bool has_logits;
    kvlm_stats stats;
    rope_shift rs;        /* context shift: K's rotation to a new position */
    kvlm_token bos;       /* the BOS the tokenizer puts first (a shift keeps it too), or -1 */
    size_t shift_keep;    /* positions the shifts keep, when n_dropped > 0 */
    size_t n_dropped;     /* tokens of the stream dropped by shifts since the sequence was unshifted */
};


kvlm_ctx_params kvlm_ctx_default_params(void)
{
    kvlm_ctx_params p = { .n_ctx = 0, .n_threads = 0, .no_kv_cache = false, .kv_type = KVLM_KV_F16,
                          .kv_type_v = KVLM_KV_SAME, .cache = NULL, .kv_mem = 0, .no_prefix_cache = false, .cache_ns = 0 };
    return p;
}

/* The prefix-cache identity of this context's blocks: the weights and the K/V type. */
static uint64_t fingerprint(const kvlm_ctx *c) { return cache_fingerprint(c->cache); }

static bool prefix_on(const kvlm_ctx *c) { return !c->params.no_prefix_cache && !c->params.no_kv_cache; }

static kvlm_err check_params(const kvlm_model *m, kvlm_ctx_params *p, char *err, size_t errlen)
{
    if (p->n_ctx < 0 || p->n_threads < 0)
        return err_set(err, errlen, KVLM_ERR_INVALID, "n_ctx and n_threads must not be negative");
    if (p->n_ctx == 0) p->n_ctx = m->hp.n_ctx_train;
    if (p->n_ctx > (int64_t)1 << 24)
        return err_set(err, errlen, KVLM_ERR_INVALID, "context %lld is too large", (long long)p->n_ctx);
    if (p->n_threads == 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        p->n_threads = nc > 0 ? (int)(nc < 64 ? nc : 64) : 1;
    }
    if (p->cache && p->cache->m != m)
        return err_set(err, errlen, KVLM_ERR_INVALID, "the cache was made for another model");
    if (p->context_shift) {
        if (p->n_keep < 0) return err_set(err, errlen, KVLM_ERR_INVALID, "n_keep must not be negative");
        kvlm_err e = rope_shift_check(m, err, errlen);
        if (e) return e;
    }
    return KVLM_OK;
}

kvlm_err kvlm_ctx_init(const kvlm_model *m, const kvlm_ctx_params *params, kvlm_ctx **out,
                       char *err, size_t errlen)
{
    kvlm_err e;
    *out = NULL;
    if (!m) return err_set(err, errlen, KVLM_ERR_INVALID, "no model");
    kvlm_ctx_params p = params ? *params : kvlm_ctx_default_params();
    if ((e = check_params(m, &p, err, errlen))) return e;
    kvlm_ctx *c = calloc(1, sizeof *c);
    if (!c) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory");
    c->m = m;
    c->n_ctx = p.n_ctx;
    if (p.cache) {
        c->cache = p.cache;
        cache_ref(c->cache);
    } else {
        kvlm_cache_params cp = { .mem_bytes = p.kv_mem, .n_ctx = p.n_ctx, .kv_type = p.kv_type,
                                 .kv_type_v = p.kv_type_v, .kv_residual = p.kv_residual, .tiers = p.tiers };
        if ((e = cache_create(m, &cp, &c->cache, err, errlen))) goto fail;
    }
    p.cache = NULL;   /* held in c->cache; a fork shares it */
    p.tiers = (kvlm_tier_params){ 0 };   /* opened by the cache; its strings are the caller's */
    c->params = p;
    kv_seq_init(&c->seq, &c->cache->pool);
    int64_t nb = c->n_ctx < CTX_MAX_BATCH ? c->n_ctx : CTX_MAX_BATCH;
    if ((e = forward_init(&c->fs, m, nb, c->n_ctx, p.n_threads, &c->cache->pool, 1, err, errlen))) goto fail;
    if ((e = pool_init(&c->pool, p.n_threads, err, errlen))) goto fail;
    c->tokens = malloc((size_t)c->n_ctx * sizeof *c->tokens);
    c->logits = malloc((size_t)m->hp.n_vocab * sizeof *c->logits);
    if (!c->tokens || !c->logits) {
        e = err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    rope_shift_init(&c->rs, m, c->cache->pool.type_k);
    size_t n_bos = 0;                                 /* what an empty text tokenizes to */
    if (kvlm_tokenize(m, "", 0, true, false, &c->bos, 1, &n_bos, NULL, 0) != KVLM_OK || n_bos != 1) c->bos = -1;
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
    kv_seq_free(&c->seq);
    cache_unref(c->cache);
    free(c->tokens);
    free(c->logits);
    free(c);
}

kvlm_err kvlm_ctx_fork(const kvlm_ctx *src, kvlm_ctx **out, char *err, size_t errlen)
{
    *out = NULL;
    kvlm_ctx_params p = src->params;
    p.cache = src->cache;
    kvlm_ctx *c;
    kvlm_err e = kvlm_ctx_init(src->m, &p, &c, err, errlen);
    if (e) return e;
    if (!src->params.no_kv_cache && (e = kv_seq_fork(&c->seq, &src->seq, err, errlen))) {
        kvlm_ctx_free(c);
        return e;
    }
    memcpy(c->tokens, src->tokens, src->n_past * sizeof *c->tokens);
    memcpy(c->logits, src->logits, (size_t)src->m->hp.n_vocab * sizeof *c->logits);
    c->n_past = src->n_past;
    c->has_logits = src->has_logits;
    c->shift_keep = src->shift_keep;
    c->n_dropped = src->n_dropped;
    *out = c;
    return KVLM_OK;
}

/* Runs the model over tokens[0..n) at positions seq.n_pos.. in batches (the
 * positions are reserved). all: NULL (the last token's logits go to c->logits)
 * or [n][n_vocab] for every token's (the last row is copied to c->logits too). */
static void run_batches(kvlm_ctx *c, const kvlm_token *tokens, size_t n, float *all)
{
    const size_t V = (size_t)c->m->hp.n_vocab;
    for (size_t i = 0; i < n; i += (size_t)c->fs.n_batch) {
        size_t nb = n - i < (size_t)c->fs.n_batch ? n - i : (size_t)c->fs.n_batch;
        forward_run(&c->fs, c->pool, &c->seq, tokens + i, (int64_t)nb, all ? all + i * V : c->logits, all != NULL);
    }
    if (all) memcpy(c->logits, all + (n - 1) * V, V * sizeof *all);
    c->stats.n_computed += (int64_t)n;
}

/* Publishes the sequence's full blocks in the prefix index. A failure here only
 * means fewer future hits, never a wrong result, so it is not reported. */
static void publish(kvlm_ctx *c)
{
    if (!prefix_on(c)) {
        kv_seq_slide(&c->seq);                        /* window tables: let the window's past go */
        return;
    }
    kv_seq_publish(&c->seq, c->tokens, (int64_t)c->n_past, fingerprint(c), c->params.cache_ns, NULL, 0);
    cache_spill(c->cache, &c->seq);
    kv_seq_slide(&c->seq);                            /* after the spill: what leaves was written below */
}

static kvlm_err check_tokens(const kvlm_ctx *c, const kvlm_token *tokens, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->m->hp.n_vocab)
            return err_set(err, errlen, KVLM_ERR_INVALID, "token id %d at index %zu is outside [0, %lld)",
                           (int)tokens[i], i, (long long)c->m->hp.n_vocab);
    return KVLM_OK;
}

/* A context shift (kv_shift.h): keeps params.n_keep tokens (and a BOS the model put
 * first, as llama.cpp's main counts it), drops half of the rest (in kv_shift's
 * units), moves tokens[] and the sequence down. Without the cache only tokens[]
 * moves, by the same plan: the next decode recomputes the window at its new
 * positions, the reference a shift's rotated K approximates. */
static kvlm_err shift(kvlm_ctx *c, char *err, size_t errlen)
{
    const size_t want = (size_t)c->params.n_keep + (c->bos >= 0 && c->n_past > 0 && c->tokens[0] == c->bos);
    int64_t keep, discard;
    kvlm_err e = kv_shift_plan(&c->cache->pool, (int64_t)c->n_past, (int64_t)want, &keep, &discard, err, errlen);
    if (e) return e;
    if (!c->params.no_kv_cache) {
        if ((e = kv_shift(&c->seq, keep, discard, rope_shift_k, &c->rs, err, errlen))) return e;
        if (c->seq.n_below > c->seq.n_published) c->seq.n_below = c->seq.n_published;
    }
    const size_t k = (size_t)keep, d = (size_t)discard;
    memmove(c->tokens + k, c->tokens + k + d, (c->n_past - k - d) * sizeof *c->tokens);
    c->n_past -= d;
    c->shift_keep = k;
    c->n_dropped += d;
    c->stats.n_shifts++;
    c->stats.n_dropped += discard;
    return KVLM_OK;
}

/* decode of n tokens that fit */
static kvlm_err decode_fit(kvlm_ctx *c, const kvlm_token *tokens, size_t n, float *all, char *err, size_t errlen)
{
    kvlm_err e;
    double t0 = clock_now_s();
    if (c->params.no_kv_cache) {
        /* the baseline: forget every K/V and recompute the whole sequence */
        kv_seq_truncate(&c->seq, 0);
        if ((e = kv_seq_reserve(&c->seq, (int64_t)(c->n_past + n), err, errlen))) return e;
        memcpy(c->tokens + c->n_past, tokens, n * sizeof *tokens);
        run_batches(c, c->tokens, c->n_past + n, NULL);
    } else if (c->seq.pool->n_tab > 1) {
        /* layer groups: a batch at a time, publishing (and so sliding the windows)
           after each, so a window table never holds more than its window and one
           batch; a budget exhausted midway leaves the batches done committed */
        memcpy(c->tokens + c->n_past, tokens, n * sizeof *tokens);
        const size_t V = (size_t)c->m->hp.n_vocab, nb = (size_t)c->fs.n_batch;
        for (size_t i = 0; i < n; i += nb) {
            const size_t m = n - i < nb ? n - i : nb;
            if ((e = kv_seq_reserve(&c->seq, (int64_t)m, err, errlen))) return e;
            forward_run(&c->fs, c->pool, &c->seq, tokens + i, (int64_t)m, all ? all + i * V : c->logits, all != NULL);
            c->n_past += m;
            c->has_logits = true;                     /* those of the last batch done */
            c->stats.n_computed += (int64_t)m;
            if (i + m < n) publish(c);
        }
        if (all) memcpy(c->logits, all + (n - 1) * V, V * sizeof *all);
        c->n_past -= n;                               /* added back below */
    } else {
        /* all blocks first: an exhausted budget fails here, before any work */
        if ((e = kv_seq_reserve(&c->seq, (int64_t)n, err, errlen))) return e;
        memcpy(c->tokens + c->n_past, tokens, n * sizeof *tokens);
        run_batches(c, tokens, n, all);
    }
    c->n_past += n;
    c->has_logits = true;
    publish(c);
    double dt = clock_now_s() - t0;
    if (n > 1) {
        c->stats.t_prefill_s += dt;
        c->stats.n_prefilled += (int64_t)n;
    } else {
        c->stats.t_decode_s += dt;
        c->stats.n_decoded += 1;
    }
    return KVLM_OK;
}

static kvlm_err decode(kvlm_ctx *c, const kvlm_token *tokens, size_t n, float *all, char *err, size_t errlen)
{
    if (n == 0) return err_set(err, errlen, KVLM_ERR_INVALID, "decode needs at least one token");
    if (n > (size_t)c->n_ctx - c->n_past && !c->params.context_shift)
        return err_set(err, errlen, KVLM_ERR_CONTEXT_FULL,
                       "%zu tokens do not fit: %zu of %lld context positions are used", n, c->n_past,
                       (long long)c->n_ctx);
    kvlm_err e = check_tokens(c, tokens, n, err, errlen);
    if (e) return e;
    const size_t V = (size_t)c->m->hp.n_vocab;
    for (size_t i = 0; i < n;) {                      /* context shift: fill, shift, fill ... */
        if (c->n_past == (size_t)c->n_ctx && (e = shift(c, err, errlen))) return e;
        const size_t room = (size_t)c->n_ctx - c->n_past, m = n - i < room ? n - i : room;
        if ((e = decode_fit(c, tokens + i, m, all ? all + i * V : NULL, err, errlen))) return e;
        i += m;
    }
    return KVLM_OK;
}

kvlm_err kvlm_ctx_decode(kvlm_ctx *c, const kvlm_token *tokens, size_t n, char *err, size_t errlen)
{
    return decode(c, tokens, n, NULL, err, errlen);
}

kvlm_err kvlm_ctx_decode_all(kvlm_ctx *c, const kvlm_token *tokens, size_t n, float *logits,
                             char *err, size_t errlen)
{
    if (c->params.no_kv_cache)
        return err_set(err, errlen, KVLM_ERR_INVALID, "decode_all needs the KV cache (no_kv_cache is set)");
    if (!logits) return err_set(err, errlen, KVLM_ERR_INVALID, "decode_all needs an output buffer");
    return decode(c, tokens, n, logits, err, errlen);
}

kvlm_err kvlm_ctx_fill_zero(kvlm_ctx *c, size_t n, char *err, size_t errlen)
{
    if (c->params.no_kv_cache)
        return err_set(err, errlen, KVLM_ERR_INVALID, "fill_zero needs the KV cache (no_kv_cache is set)");
    if (n > (size_t)c->n_ctx - c->n_past)
        return err_set(err, errlen, KVLM_ERR_CONTEXT_FULL,
                       "%zu positions do not fit: %zu of %lld context positions are used", n, c->n_past,
                       (long long)c->n_ctx);
    /* layer groups: a batch at a time, the windows sliding after each (below) */
    const bool groups = c->seq.pool->n_tab > 1;
    kvlm_err e = groups ? KVLM_OK : kv_seq_reserve(&c->seq, (int64_t)n, err, errlen);
    if (e) return e;
    const model_hparams *hp = &c->m->hp;
    const size_t nb = (size_t)c->fs.n_batch, n_ch = (size_t)(hp->n_head_kv * hp->head_dim);
    float *zero = calloc(nb * n_ch, sizeof *zero);
    if (!zero) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i += nb) {              /* zero: [n_batch][n_head_kv * head_dim] */
        const size_t m = n - i < nb ? n - i : nb;
        if (groups && (e = kv_seq_reserve(&c->seq, (int64_t)m, err, errlen))) break;
        for (int64_t il = 0; il < hp->n_layer; il++) {
            if (c->seq.pool->res_tokens)
                kv_seq_stage(&c->seq, il, (int64_t)(c->n_past + i), (int64_t)m, zero, zero, c->fs.stage);
            else
                for (size_t t = 0; t < m; t++) kv_seq_store(&c->seq, il, (int64_t)(c->n_past + i + t), zero, zero);
        }
        kv_seq_advance(&c->seq, (int64_t)m);
        kv_seq_slide(&c->seq);                        /* never published: let go means freed */
    }
    free(zero);
    if (e) {                                          /* layer groups, budget gone midway */
        kv_seq_truncate(&c->seq, (int64_t)c->n_past);
        c->n_past = (size_t)c->seq.n_pos;
        c->has_logits = false;
        return e;
    }
    for (size_t i = 0; i < n; i++) c->tokens[c->n_past + i] = 0;
    c->n_past += n;
    c->has_logits = false;
    c->params.no_prefix_cache = true;                 /* these blocks must never be found by their tokens */
    return KVLM_OK;
}

/* Drops positions >= n_keep; a KIVI sequence may keep fewer (n_past says). */
static void truncate_seq(kvlm_ctx *c, size_t n_keep)
{
    if (n_keep >= c->n_past) return;
    kv_seq_truncate(&c->seq, (int64_t)n_keep);
    c->n_past = c->params.no_kv_cache ? n_keep : (size_t)c->seq.n_pos;
    c->has_logits = false;
    if (c->n_dropped > 0 && c->n_past <= c->shift_keep) {   /* back to unshifted positions */
        c->n_dropped = 0;
        c->seq.no_publish = false;
    }
}

/* Tries the prefix index for more than `keep` leading tokens of tokens[0..n):
 * on a longer hit the sequence is replaced by the hit blocks. Returns the tokens
 * now reused. */
static size_t attach_from_index(kvlm_ctx *c, const kvlm_token *tokens, size_t n, size_t keep)
{
    if (!prefix_on(c) || n <= keep + KV_BLOCK_TOKENS) return keep;
    kv_seq hit;
    int64_t got = 0;
    kv_seq_init(&hit, &c->cache->pool);
    if (kv_seq_attach_ram(&hit, tokens, (int64_t)n, fingerprint(c), c->params.cache_ns, NULL, 0)) {
        kv_seq_free(&hit);
        return keep;
    }
    /* n_reused_tier: the positions past what RAM alone would have given. That ends
       at most where the full tables' RAM hits end, and at the first block a tier
       supplied (RAM lacked it); with layer groups RAM's own end may lie earlier still
       (its windows), so the count is a lower bound there */
    int64_t ram = hit.n_pos;
    const int64_t lo = cache_load_sync(c->cache, &hit, tokens, (int64_t)n);   /* the tiers, after the RAM hits */
    if (lo < ram / KV_BLOCK_TOKENS) ram = lo * KV_BLOCK_TOKENS;
    got = kv_seq_attach_end(&hit, tokens);
    if ((size_t)got <= keep) {
        kv_seq_free(&hit);
        return keep;
    }
    if (got > ram) c->stats.n_reused_tier += got - (ram > (int64_t)keep ? ram : (int64_t)keep);
    kv_seq_free(&c->seq);   /* our full blocks are published: they stay cached */
    c->seq = hit;           /* found in RAM or loaded: below already (n_below) */
    c->n_dropped = 0;       /* the index holds unshifted blocks only */
    memcpy(c->tokens, tokens, (size_t)got * sizeof *tokens);
    c->n_past = (size_t)got;
    c->has_logits = false;
    return (size_t)got;
}

/* After a shift: if tokens[0, n) continues the stream the sequence has seen (the
 * kept tokens, n_dropped others, then the rest of tokens[]: at least one of those),
 * truncates the sequence to what matches and returns the index in tokens of the
 * first token to decode; 0 when it does not (or nothing of it would be reused). */
static size_t continue_stream(kvlm_ctx *c, const kvlm_token *tokens, size_t n)
{
    const size_t k = c->shift_keep, d = c->n_dropped;
    if (c->params.no_kv_cache || n <= k + d || memcmp(tokens, c->tokens, k * sizeof *tokens) != 0) return 0;
    size_t m = 0;                                     /* stream positions after the kept ones that match */
    while (k + m < c->n_past && k + d + m < n && tokens[k + d + m] == c->tokens[k + m]) m++;
    if (k + d + m == n) m--;                          /* the last token is recomputed for fresh logits */
    if (m == 0) return 0;
    truncate_seq(c, k + m);
    if (c->n_dropped == 0) return 0;                  /* KIVI cut back below the kept ones: start over */
    return c->n_past + d;
}

kvlm_err kvlm_ctx_prefill(kvlm_ctx *c, const kvlm_token *tokens, size_t n, size_t *n_reused,
                          char *err, size_t errlen)
{
    if (n_reused) *n_reused = 0;
    if (n == 0) return err_set(err, errlen, KVLM_ERR_INVALID, "prefill needs at least one token");
    if (n > (size_t)c->n_ctx && !c->params.context_shift)
        return err_set(err, errlen, KVLM_ERR_CONTEXT_FULL, "prompt of %zu tokens exceeds the context of %lld",
                       n, (long long)c->n_ctx);
    kvlm_err e = check_tokens(c, tokens, n, err, errlen);
    if (e) return e;
    size_t next;
    if (c->n_dropped > 0 && (next = continue_stream(c, tokens, n)) > 0) {
        const size_t reused = c->n_past;
        if ((e = kvlm_ctx_decode(c, tokens + next, n - next, err, errlen)) != KVLM_OK) return e;
        c->stats.n_prompt += (int64_t)n;
        c->stats.n_reused += (int64_t)reused;
        if (n_reused) *n_reused = reused;
        return KVLM_OK;
    }
    size_t keep = 0;
    if (!c->params.no_kv_cache)
        while (keep < c->n_past && keep < n && c->tokens[keep] == tokens[keep]) keep++;
    if (keep == n) keep = n - 1;   /* the last token is recomputed for fresh logits */
    truncate_seq(c, keep);
    keep = attach_from_index(c, tokens, n < (size_t)c->n_ctx ? n : (size_t)c->n_ctx, c->n_past);
    if ((e = kvlm_ctx_decode(c, tokens + keep, n - keep, err, errlen)) != KVLM_OK) return e;
    c->stats.n_prompt += (int64_t)n;
    c->stats.n_reused += (int64_t)keep;
    if (n_reused) *n_reused = keep;
    return KVLM_OK;
}

void kvlm_ctx_truncate(kvlm_ctx *c, size_t n_keep)
{
    if (n_keep >= c->n_past) return;
    truncate_seq(c, n_keep);
    if (c->n_past < n_keep) {                          /* KIVI: recompute [n_past, n_keep) */
        const size_t from = c->n_past;
        if (kv_seq_reserve(&c->seq, (int64_t)(n_keep - from), NULL, 0) == KVLM_OK) {
            run_batches(c, c->tokens + from, n_keep - from, NULL);
            c->n_past = n_keep;
        }   /* else (the budget is gone): the sequence stays at the group start, still exact */
    }
    c->has_logits = false;
}

const float *kvlm_ctx_logits(const kvlm_ctx *c) { return c->has_logits ? c->logits : NULL; }
size_t kvlm_ctx_n_past(const kvlm_ctx *c) { return c->n_past; }
size_t kvlm_ctx_n_ctx(const kvlm_ctx *c) { return (size_t)c->n_ctx; }
const kvlm_token *kvlm_ctx_tokens(const kvlm_ctx *c) { return c->tokens; }

void kvlm_ctx_get_stats(const kvlm_ctx *c, kvlm_stats *out)
{
    *out = c->stats;
    kvlm_cache_get_stats(c->cache, &out->cache);
    out->kv_bytes_per_token = out->cache.bytes_per_token;
    out->kv_bytes_per_token_layer = out->cache.bytes_per_token_layer;
    const int64_t block = out->cache.n_blocks ? out->cache.bytes_total / out->cache.n_blocks : 0;
    const model_hparams *hp = &c->m->hp;
    out->kv_n_groups = hp->n_layer_swa > 0 ? 2 : 1;
    for (int g = 0; g < out->kv_n_groups; g++) {      /* [0] full layers, [1] window layers */
        out->kv_group[g].n_layer = g ? hp->n_layer_swa : hp->n_layer - hp->n_layer_swa;
        out->kv_group[g].window = g ? hp->n_swa : 0;
        out->kv_group[g].blocks = kv_seq_held(&c->seq, g == 1);
        out->kv_group[g].bytes = out->kv_group[g].blocks * block;
    }
    out->kv_blocks = out->kv_group[0].blocks + (out->kv_n_groups > 1 ? out->kv_group[1].blocks : 0);
    out->kv_bytes_used = out->kv_blocks * block;
    out->kv_bytes_reserved = out->cache.bytes_total;
}

void kvlm_ctx_reset_stats(kvlm_ctx *c) { memset(&c->stats, 0, sizeof c->stats); }
