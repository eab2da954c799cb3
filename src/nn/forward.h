/* forward.h - the transformer forward pass over a batch of new tokens, reading
 * and extending a KV cache.
 * Room: nn. May touch: core (pool), kern, model, kv.
 * forward_run(tokens t_0..t_{n-1}) computes positions [s->n_pos, s->n_pos + n),
 * stores their K/V in the sequence's blocks, attends each token over every
 * position up to and including its own, commits the n positions
 * (kv_seq_advance) and leaves logits for the last token (or all).
 * Scratch for n_batch tokens is allocated once at init: the decode loop never
 * allocates. */
#ifndef KVLM_NN_FORWARD_H
#define KVLM_NN_FORWARD_H

#include <stdint.h>
#include "kvlm.h"
#include "core/pool.h"
#include "kern/attn.h"
#include "kv/kv_seq.h"
#include "model/model.h"

/* Batches of at most this many tokens split each token's attention by chunks
 * among threads (decode); larger ones give whole tokens to threads (prefill).
 * Both give the same bits (kern/attn.h). */
enum { FORWARD_SPLIT_TOK = 4 };

typedef struct forward_state {
    const kvlm_model *m;
    int64_t n_batch;      /* max tokens per forward_run */
    int64_t n_ctx;        /* max positions attended */
    int n_threads;
    /* scratch, shapes for n_tok <= n_batch tokens: */
    float *x;             /* [n_batch][n_embd]  residual stream */
    float *xb;            /* [n_batch][n_embd]  normed input of a block */
    float *q;             /* [n_batch][n_head*head_dim] */
    float *k, *v;         /* [n_batch][n_head_kv*head_dim] */
    float *att;           /* [n_batch][n_head*head_dim]  attention output */
    float *hg, *hu;       /* [n_batch][n_ff]  gate and up projections */
    float *rope;          /* [n_batch][head_dim]  (cos, sin) pairs per position */
    const attn_kernels *ak;   /* attention kernel set for this CPU and head_dim */
    float *attn_tmp;      /* [n_threads][attn_tmp_floats]: kernel scratch, a running, a chunk and a spare part */
    float *stage;         /* KIVI: one layer's f32 blocks of the current groups (kv_seq_stage), else NULL */
    size_t attn_tmp_floats;
    float *parts;         /* [FORWARD_SPLIT_TOK][n_chunk][n_head][ATTN_PART(head_dim)] */
    int64_t n_chunk;      /* chunks of the longest context: ceil(n_ctx / ATTN_CHUNK) */
    uint8_t *xq;          /* [n_batch][xq_bytes]  quantized activations */
    size_t xq_bytes;
} forward_state;

kvlm_err forward_init(forward_state *fs, const kvlm_model *m, int64_t n_batch, int64_t n_ctx,
                      int n_threads, const kv_pool *kp, char *err, size_t errlen);
void     forward_free(forward_state *fs);

/* tokens: [n_tok], 1 <= n_tok <= n_batch, s->n_pos + n_tok <= n_ctx, the n_tok
 * positions reserved (kv_seq_reserve), every id in [0, n_vocab): all checked by
 * the caller, so this cannot fail.
 * logits: [n_vocab] for the last token, or [n_tok][n_vocab] if all_logits. */
void forward_run(forward_state *fs, pool *p, kv_seq *s, const kvlm_token *tokens,
                 int64_t n_tok, float *logits, bool all_logits);

#endif
