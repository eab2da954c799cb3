/* sched.h - continuous batching: many sequences over one shared KV cache,
 * stepped together so one pass over the weights serves all of them.
 * Room: engine. May touch: core, kv, nn, model (through engine/cache.h). Knows
 * nothing of HTTP or JSON, and runs no threads of its own beyond the forward
 * pass's pool: one caller thread drives sched_add / sched_step / sched_remove.
 *
 * A step (vLLM's scheduler, Sarathi's chunked prefill):
 *
 *   budget = step_tokens
 *   every sequence that is generating      -> 1 token (its last sampled one)
 *   sequences still in their prompt, oldest first
 *                                           -> a chunk of up to the budget left
 *   forward_run_batch over all of them (the weights are read once)
 *   a sequence whose prompt is now complete, or that decoded, samples a token
 *   and reports it through on_token; on_token returning false ends it.
 *
 * A paused sequence (sched_pause) is skipped until it is resumed.
 *
 * So a new request joins at the next step, and a long prompt is prefilled a
 * chunk per step while the running streams keep getting a token every step.
 * A sequence's tokens are bitwise those it would get alone (forward.h), so
 * greedy output does not depend on what else runs.
 *
 * Prefix cache: sched_add attaches the longest cached prefix of the prompt
 * (under the request's namespace: tenant, salt) found in RAM, and asks the cache's
 * tiers (disk, Redis) for the blocks after it on their loader thread; the
 * sequence steps once that load is over, the others step meanwhile. Each step
 * publishes the full blocks computed so far (and queues them for the tiers). When the pool cannot supply a step's blocks, the
 * sequence waits; if no sequence can progress, the newest is ended with
 * KVLM_ERR_BUDGET so the others can (preemption by abort, not by swap).
 * With context_shift, a generating sequence whose next token does not fit is
 * shifted first, as kvlm_ctx does (the same plan, so the same bits); a shift the
 * pool cannot supply waits like a reserve, and a shifted sequence publishes no more. */
#ifndef KVLM_ENGINE_SCHED_H
#define KVLM_ENGINE_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"

typedef struct sched sched;
typedef struct sched_seq sched_seq;

typedef struct sched_params {
    int     n_threads;      /* forward pass threads (>= 1) */
    int64_t n_ctx;          /* positions per sequence, prompt and generated */
    int64_t step_tokens;    /* tokens per step, at least max_seqs */
    int64_t max_seqs;       /* sequences at once */
    void  (*wake)(void *user);  /* called from another thread when a tier load progresses:
                                   the caller's loop should call sched_step again; NULL: poll */
    void   *wake_user;
    bool    context_shift;  /* a generating sequence at n_ctx is shifted (kv/kv_shift.h: n_keep
                               tokens and a BOS kept, half of the rest dropped) instead of
                               ending: max_new may exceed n_ctx - n (the prompt still fits) */
    int     n_keep;
} sched_params;

/* Reports the token a sequence just sampled (or, with e != KVLM_OK, that it was
 * ended: tok is -1 then). Returns whether it should go on; false (or e) ends it
 * and frees its blocks before the next step. */
typedef bool (*sched_token_fn)(void *user, sched_seq *q, kvlm_token tok, kvlm_err e);

/* The cache is borrowed (one reference taken), and must be of model m. */
kvlm_err sched_init(const kvlm_model *m, kvlm_cache *cache, const sched_params *p, sched_token_fn on_token,
                    sched **out, char *err, size_t errlen);
/* Frees every sequence still there (without reporting them) and the scheduler. */
void sched_free(sched *S);

/* A new sequence for prompt[0..n) (copied), to generate up to max_new tokens
 * with sampler params sp; ns scopes its prefix-cache hits. *n_cached (may be
 * NULL) gets the prompt positions taken from RAM now, and is updated (by
 * sched_step, before the first token is reported) when the cache's tiers have
 * added theirs: the pointer must stay valid while the sequence lives. Likewise
 * *ticket (may be NULL) is kept at the cache's write ticket of the last block
 * this sequence had written to the tiers (sched_after). KVLM_ERR_CONTEXT_FULL if
 * n + max_new exceeds n_ctx (without context_shift; with it, if n does), KVLM_ERR_BUDGET if max_seqs are running,
 * KVLM_ERR_INVALID for a bad id or n == 0. user is passed to on_token. */
kvlm_err sched_add(sched *S, const kvlm_token *prompt, size_t n, int64_t max_new, const kvlm_sampler_params *sp,
                   uint64_t ns, void *user, sched_seq **out, size_t *n_cached, int64_t *ticket, char *err,
                   size_t errlen);
/* Ends q now (a cancelled request): its blocks go back to the pool (full ones
 * stay cached for later hits, and go to the tiers). q is invalid afterwards. */
void sched_remove(sched *S, sched_seq *q);
/* Holds q back (paused) or lets it go on: a paused sequence keeps its blocks,
 * tokens and sampler but is not stepped, so its owner can stop a generation whose
 * output nobody takes yet (a stream's client that is not reading) without ending
 * it or holding up the others. Resumed, it goes on with the tokens it would have
 * had. Any time on the caller's thread, from on_token too (it applies from the
 * next step). */
void sched_pause(sched *S, sched_seq *q, bool paused);
/* Sequences waiting for their blocks from the tiers (they do not step meanwhile). */
int64_t sched_n_loading(const sched *S);
/* fn(user) once every tier write up to ticket is done: at once on this thread, or
 * later on the tiers' writer thread. What a response waits for before it ends. */
kvlm_err sched_after(sched *S, int64_t ticket, void (*fn)(void *user), void *user);

/* One step. Returns the number of sequences that ran (0: nothing to do). */
int64_t sched_step(sched *S);

int64_t sched_n_seqs(const sched *S);
/* Blocks held by sequences now (all of them, shared blocks once). */
void sched_cache_stats(const sched *S, kvlm_cache_stats *out);
/* Only the tier fields of *out (tier_loads, n_tiers, tier[]); unlike sched_cache_stats,
 * safe from any thread. */
void sched_tier_stats(const sched *S, kvlm_cache_stats *out);

#endif
