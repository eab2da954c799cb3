/* sched.c - see sched.h. Room: engine.
 *
 * Sequences live in an array in arrival order (seqs[0] is the oldest); a slot
 * is compacted away when its sequence ends. Per sequence:
 *
 *   tokens: [n_ctx + 1] prompt, then sampled tokens (one past n_ctx: a sampled token
 *                     waits there for a context shift)
 *   n_tok             tokens known (prompt + sampled)
 *   kv.n_pos          tokens computed; n_tok - kv.n_pos are pending
 *                     (a prompt tail, or the one token sampled last step)
 */
#include "engine/sched.h"
#include "core/err.h"
#include "core/pool.h"
#include "engine/cache.h"
#include "kv/kv_seq.h"
#include "kv/kv_shift.h"
#include "nn/forward.h"
#include "nn/rope_shift.h"

#include <stdlib.h>
#include <string.h>

struct sched_seq {
    kv_seq kv;
    kvlm_token *tokens;     /* [n_ctx] */
    int64_t n_tok, n_prompt, max_new, n_gen;
    kvlm_sampler *sampler;
    uint64_t ns;
    void *user;
    bool ended;
    bool paused;            /* sched_pause: not stepped */
    size_t *n_cached;       /* the owner's: prompt positions from the cache (RAM + tiers), or NULL */
    int64_t *ticket;        /* the owner's: last tier write of our blocks, or NULL */
    cache_load *load;       /* the tiers' load of the prompt's missing blocks, or NULL */
};

struct sched {
    const kvlm_model *m;
    kvlm_cache *cache;      /* one reference */
    sched_params p;
    sched_token_fn on_token;
    forward_state fs;
    pool *pool;
    sched_seq **seqs;       /* [max_seqs], [0, n_seqs) live, oldest first */
    int64_t n_seqs;
    forward_seg *segs;      /* [max_seqs] this step's segments */
    sched_seq **seg_seq;    /* [max_seqs] their sequences */
    kvlm_token *batch;      /* [step_tokens] this step's tokens */
    int64_t *rows;          /* [max_seqs] rows whose logits are sampled */
    float *logits;          /* [max_seqs][n_vocab] */
    rope_shift rs;          /* context shift: K's rotation */
    kvlm_token bos;         /* the BOS the tokenizer puts first (a shift keeps it), or -1 */
};

kvlm_err sched_init(const kvlm_model *m, kvlm_cache *cache, const sched_params *p, sched_token_fn on_token,
                    sched **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!m || !cache || !on_token || cache->m != m)
        return err_set(err, errlen, KVLM_ERR_INVALID, "sched: needs a model, its cache and a token callback");
    if (p->n_threads < 1 || p->max_seqs < 1 || p->step_tokens < p->max_seqs || p->n_ctx < 1 || p->n_keep < 0)
        return err_set(err, errlen, KVLM_ERR_INVALID,
                       "sched: threads >= 1, sequences >= 1, step tokens >= sequences, context >= 1, keep >= 0");
    if (p->context_shift) {
        kvlm_err e = rope_shift_check(m, err, errlen);
        if (e) return e;
    }
    sched *S = calloc(1, sizeof *S);
    if (!S) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory");
    S->m = m;
    S->cache = cache;
    cache_ref(cache);
    S->p = *p;
    S->on_token = on_token;
    kvlm_err e;
    if ((e = forward_init(&S->fs, m, p->step_tokens, p->n_ctx, p->n_threads, &cache->pool, p->max_seqs, err,
                          errlen)))
        goto fail;
    if ((e = pool_init(&S->pool, p->n_threads, err, errlen))) goto fail;
    const size_t ns = (size_t)p->max_seqs;
    S->seqs = calloc(ns, sizeof *S->seqs);
    S->segs = calloc(ns, sizeof *S->segs);
    S->seg_seq = calloc(ns, sizeof *S->seg_seq);
    S->rows = calloc(ns, sizeof *S->rows);
    S->batch = calloc((size_t)p->step_tokens, sizeof *S->batch);
    S->logits = malloc(ns * (size_t)m->hp.n_vocab * sizeof *S->logits);
    if (!S->seqs || !S->segs || !S->seg_seq || !S->rows || !S->batch || !S->logits) {
        e = err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory for a scheduler of %lld sequences",
                    (long long)p->max_seqs);
        goto fail;
    }
    if (p->wake) cache_set_wake(cache, p->wake, p->wake_user);
    rope_shift_init(&S->rs, m, cache->pool.type_k);
    size_t n_bos = 0;                                 /* what an empty text tokenizes to */
    if (kvlm_tokenize(m, "", 0, true, false, &S->bos, 1, &n_bos, NULL, 0) != KVLM_OK || n_bos != 1) S->bos = -1;
    *out = S;
    return KVLM_OK;
fail:
    sched_free(S);
    return e;
}

static void seq_free(sched_seq *q)
{
    cache_load_free(q->load);
    kv_seq_free(&q->kv);
    kvlm_sampler_free(q->sampler);
    free(q->tokens);
    free(q);
}

void sched_free(sched *S)
{
    if (!S) return;
    for (int64_t i = 0; i < S->n_seqs; i++) seq_free(S->seqs[i]);
    pool_free(S->pool);
    forward_free(&S->fs);
    if (S->p.wake) cache_set_wake(S->cache, NULL, NULL);
    cache_unref(S->cache);
    free(S->seqs);
    free(S->segs);
    free(S->seg_seq);
    free(S->rows);
    free(S->batch);
    free(S->logits);
    free(S);
}

kvlm_err sched_add(sched *S, const kvlm_token *prompt, size_t n, int64_t max_new, const kvlm_sampler_params *sp,
                   uint64_t ns, void *user, sched_seq **out, size_t *n_cached, int64_t *ticket, char *err,
                   size_t errlen)
{
    *out = NULL;
    if (n_cached) *n_cached = 0;
    if (ticket) *ticket = 0;
    if (n == 0) return err_set(err, errlen, KVLM_ERR_INVALID, "the prompt is empty");
    if (max_new < 1) return err_set(err, errlen, KVLM_ERR_INVALID, "max_new must be >= 1");
    if ((int64_t)n > S->p.n_ctx || (max_new > S->p.n_ctx - (int64_t)n && !S->p.context_shift))
        return err_set(err, errlen, KVLM_ERR_CONTEXT_FULL,
                       "%zu prompt tokens plus %lld to generate exceed the context of %lld", n, (long long)max_new,
                       (long long)S->p.n_ctx);
    for (size_t i = 0; i < n; i++)
        if (prompt[i] < 0 || prompt[i] >= S->m->hp.n_vocab)
            return err_set(err, errlen, KVLM_ERR_INVALID, "token id %d at index %zu is outside [0, %lld)",
                           (int)prompt[i], i, (long long)S->m->hp.n_vocab);
    if (S->n_seqs >= S->p.max_seqs)
        return err_set(err, errlen, KVLM_ERR_BUDGET, "%lld sequences are running already", (long long)S->n_seqs);
    sched_seq *q = calloc(1, sizeof *q);
    kvlm_err e = KVLM_ERR_NOMEM;
    if (!q || !(q->tokens = malloc((size_t)(S->p.n_ctx + 1) * sizeof *q->tokens))) {
        e = err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((e = kvlm_sampler_init(sp, S->m->hp.n_vocab, &q->sampler, err, errlen))) goto fail;
    memcpy(q->tokens, prompt, n * sizeof *prompt);
    q->n_tok = q->n_prompt = (int64_t)n;
    q->max_new = max_new;
    q->ns = ns;
    q->user = user;
    q->n_cached = n_cached;
    q->ticket = ticket;
    kv_seq_init(&q->kv, &S->cache->pool);
    /* at most (n - 1) rounded down: the last prompt token is always computed */
    if ((e = kv_seq_attach_ram(&q->kv, prompt, (int64_t)n, cache_fingerprint(S->cache), ns, err, errlen)))
        goto fail;
    /* the tiers are asked for the rest on their loader thread; until it is done the
     * sequence waits, the others step */
    q->load = cache_load_start(S->cache, &q->kv, prompt, (int64_t)n);
    if (!q->load) kv_seq_attach_end(&q->kv, prompt);
    for (size_t i = 0; i < n; i++) kvlm_sampler_accept(q->sampler, prompt[i]);   /* the penalty's history */
    if (n_cached) *n_cached = (size_t)q->kv.n_pos;
    S->seqs[S->n_seqs++] = q;
    *out = q;
    return KVLM_OK;
fail:
    if (q) {
        kvlm_sampler_free(q->sampler);
        kv_seq_free(&q->kv);
        free(q->tokens);
        free(q);
    }
    return e;
}

/* Publishes q's full blocks, so later requests can hit them. A failure only
 * costs future hits, so it is not reported. */
static void publish(sched *S, sched_seq *q)
{
    if (q->load) return;                              /* attached blocks are published already */
    kv_seq_publish(&q->kv, q->tokens, q->kv.n_pos, cache_fingerprint(S->cache), q->ns, NULL, 0);
    const int64_t t = cache_spill(S->cache, &q->kv);
    if (q->ticket && t > *q->ticket) *q->ticket = t;
    kv_seq_slide(&q->kv);                             /* window tables: after the spill */
}

/* Attaches what q's tier load has fetched; when it is over, q can step. */
static void poll_load(sched *S, sched_seq *q)
{
    if (!cache_load_poll(S->cache, q->load, &q->kv, q->tokens, q->n_prompt)) return;
    cache_load_free(q->load);
    q->load = NULL;
    kv_seq_attach_end(&q->kv, q->tokens);            /* found in RAM or loaded: below already */
    if (q->n_cached) *q->n_cached = (size_t)q->kv.n_pos;
}

void sched_remove(sched *S, sched_seq *q)
{
    int64_t i = 0;
    while (i < S->n_seqs && S->seqs[i] != q) i++;
    if (i == S->n_seqs) return;
    memmove(S->seqs + i, S->seqs + i + 1, (size_t)(S->n_seqs - i - 1) * sizeof *S->seqs);
    S->n_seqs--;
    publish(S, q);
    seq_free(q);
}

/* Ends the sequences marked ended during a step. */
static void sweep(sched *S)
{
    int64_t w = 0;
    for (int64_t i = 0; i < S->n_seqs; i++) {
        sched_seq *q = S->seqs[i];
        if (q->ended) {
            publish(S, q);
            seq_free(q);
        } else {
            S->seqs[w++] = q;
        }
    }
    S->n_seqs = w;
}

/* Reports tok (or e) to the owner; marks q ended when it says stop. */
static void report(sched *S, sched_seq *q, kvlm_token tok, kvlm_err e)
{
    if (!S->on_token(q->user, q, tok, e) || e != KVLM_OK) q->ended = true;
}

/* A generating q whose pending token does not fit: kvlm_ctx's shift (ctx.c), the
 * same plan. KVLM_ERR_BUDGET leaves q unchanged (it waits). */
static kvlm_err shift(sched *S, sched_seq *q)
{
    const int64_t want = S->p.n_keep + (S->bos >= 0 && q->tokens[0] == S->bos);
    int64_t keep, discard;
    kvlm_err e = kv_shift_plan(q->kv.pool, q->kv.n_pos, want, &keep, &discard, NULL, 0);
    if (e || (e = kv_shift(&q->kv, keep, discard, rope_shift_k, &S->rs, NULL, 0))) return e;
    memmove(q->tokens + keep, q->tokens + keep + discard, (size_t)(q->n_tok - keep - discard) * sizeof *q->tokens);
    q->n_tok -= discard;
    q->n_prompt = q->n_prompt - discard > keep ? q->n_prompt - discard : keep;   /* still generating */
    if (q->kv.n_below > q->kv.n_published) q->kv.n_below = q->kv.n_published;
    return KVLM_OK;
}

int64_t sched_step(sched *S)
{
    int64_t budget = S->p.step_tokens, n_seg = 0, n_tok = 0, blocked = 0, loading = 0;
    for (int64_t i = 0; i < S->n_seqs; i++) {
        sched_seq *q = S->seqs[i];
        if (q->load && !q->ended) poll_load(S, q);
        loading += q->load != NULL;
    }
    /* generating sequences first (one token each), then prompt chunks, oldest first */
    for (int pass = 0; pass < 2; pass++) {
        for (int64_t i = 0; i < S->n_seqs && budget > 0; i++) {
            sched_seq *q = S->seqs[i];
            const bool generating = q->n_tok > q->n_prompt;
            if (q->ended || q->load || q->paused || generating != (pass == 0)) continue;
            int64_t n = q->n_tok - q->kv.n_pos;
            if (n > budget) n = budget;
            if (n <= 0) continue;
            if (q->kv.n_pos + n > S->p.n_ctx) {   /* generating at n_ctx: context_shift (sched_add) */
                const kvlm_err e = shift(S, q);
                if (e == KVLM_ERR_BUDGET) {
                    blocked++;
                    continue;
                }
                if (e) {
                    report(S, q, -1, e);
                    q->ended = true;
                    continue;
                }
            }
            if (kv_seq_reserve(&q->kv, n, NULL, 0) != KVLM_OK) {   /* the pool is full: wait */
                blocked++;
                continue;
            }
            memcpy(S->batch + n_tok, q->tokens + q->kv.n_pos, (size_t)n * sizeof *S->batch);
            S->segs[n_seg] = (forward_seg){ &q->kv, n };
            S->seg_seq[n_seg++] = q;
            n_tok += n;
            budget -= n;
        }
    }
    if (n_seg == 0) {
        if (blocked > 0 && loading == 0) {
            /* nothing fits: end the newest waiting sequence so the others can go on */
            for (int64_t i = S->n_seqs - 1; i >= 0; i--)
                if (!S->seqs[i]->ended) {
                    report(S, S->seqs[i], -1, KVLM_ERR_BUDGET);
                    S->seqs[i]->ended = true;
                    break;
                }
            sweep(S);
        }
        return 0;
    }
    /* logits for the sequences whose pending tokens all ran: their next token */
    int64_t n_out = 0, t0 = 0;
    for (int64_t g = 0; g < n_seg; g++) {
        const sched_seq *q = S->seg_seq[g];
        t0 += S->segs[g].n;
        if (q->kv.n_pos + S->segs[g].n == q->n_tok) S->rows[n_out++] = t0 - 1;
    }
    forward_run_batch(&S->fs, S->pool, S->segs, n_seg, S->batch, S->rows, n_out, S->logits);
    const int64_t V = S->m->hp.n_vocab;
    for (int64_t g = 0, r = 0; g < n_seg; g++) {
        sched_seq *q = S->seg_seq[g];
        publish(S, q);
        if (q->kv.n_pos != q->n_tok) continue;         /* more prompt to go */
        const kvlm_token tok = kvlm_sampler_sample(q->sampler, S->logits + (size_t)r++ * (size_t)V);
        kvlm_sampler_accept(q->sampler, tok);
        q->tokens[q->n_tok++] = tok;
        q->n_gen++;
        report(S, q, tok, KVLM_OK);
        if (q->n_gen >= q->max_new) q->ended = true;   /* the owner has seen the last token */
    }
    sweep(S);
    return n_seg;
}

void sched_pause(sched *S, sched_seq *q, bool paused)
{
    (void)S;
    q->paused = paused;
}

int64_t sched_n_seqs(const sched *S) { return S->n_seqs; }

int64_t sched_n_loading(const sched *S)
{
    int64_t n = 0;
    for (int64_t i = 0; i < S->n_seqs; i++) n += S->seqs[i]->load != NULL;
    return n;
}

kvlm_err sched_after(sched *S, int64_t ticket, void (*fn)(void *user), void *user)
{
    return cache_after(S->cache, ticket, fn, user);
}

void sched_cache_stats(const sched *S, kvlm_cache_stats *out) { kvlm_cache_get_stats(S->cache, out); }

void sched_tier_stats(const sched *S, kvlm_cache_stats *out) { cache_tier_stats(S->cache, out); }
