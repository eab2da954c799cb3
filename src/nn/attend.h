/* attend.h - threaded attention of a batch of query tokens over the KV cache:
 * each token reads rows [kv_lo[t], n_kv[t]) of its own sequence's layer il, in chunks of
 * ATTN_CHUNK rows folded in chunk order (kern/attn.h). Shared by every model's
 * forward pass: llama's self-attention and Whisper's self- and cross-attention.
 * Room: nn. May touch: core (pool), kern (attn), kv (sequences), nn/ops.
 *
 *   q:   [n_tok][n_head][head_dim]  f32 (rounded to f16 by the caller for an f16 K)
 *   out: [n_tok][n_head][head_dim]
 *   seq[t], n_kv[t]: the sequence token t reads and how many of its rows
 *
 * Two schedules, the same bits (each (token, chunk) part is computed alone and the
 * parts are folded in chunk order either way):
 *   whole tokens: thread ith takes tokens ith, ith + nth, ... and folds as it goes;
 *   split:        batches of at most split_tok tokens with some token over more
 *                 than one chunk share out the (token, chunk) pairs, keep the parts
 *                 and fold them per (token, K/V head) in a second pass. */
#ifndef KVLM_NN_ATTEND_H
#define KVLM_NN_ATTEND_H

#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"
#include "core/pool.h"
#include "kern/attn.h"
#include "kv/kv_seq.h"

typedef struct attend_scratch {
    int64_t n_head, head_dim, n_head_kv;
    int64_t split_tok;        /* largest batch run by the split schedule */
    int64_t n_chunk;          /* chunks of the longest n_kv */
    size_t tmp_floats;        /* per thread: kernel scratch, a running, a chunk and a spare part */
    float *tmp;               /* [n_threads][tmp_floats], 64-byte aligned */
    float *parts;             /* [split_tok][n_chunk][n_head][ATTN_PART(head_dim)] */
} attend_scratch;

kvlm_err attend_init(attend_scratch *as, int64_t n_head, int64_t n_head_kv, int64_t head_dim, int64_t max_kv,
                     int64_t split_tok, int n_threads, char *err, size_t errlen);
void     attend_free(attend_scratch *as);

typedef struct attend_batch {
    const float *q;
    float *out;
    int64_t n_tok, il;
    int64_t n_head;                /* query heads per token, a multiple of n_head_kv and at most
                                      the scratch's (0: the scratch's): attention reads each K/V
                                      head's rows once for its n_head / n_head_kv query heads,
                                      so queries that share a sequence can share the reads */
    float scale;
    const attn_kernels *ak;
    const kv_seq *const *seq;      /* [n_tok] */
    const int64_t *n_kv;           /* [n_tok], 1 <= n_kv[t] <= max_kv */
    const int64_t *kv_lo;          /* [n_tok] first row token t reads, < n_kv[t] (a sliding
                                      window's start), or NULL: row 0 for every token. The
                                      chunk grid stays the absolute one: chunks before
                                      kv_lo / ATTN_CHUNK are not run */
    /* KIVI pools only (else NULL): token t's f32 stage (kv_seq_stage) and the
       position of its first block */
    const float *const *stage;     /* [n_tok] */
    const int64_t *stage_pos0;     /* [n_tok] */
} attend_batch;

/* out = softmax(scale q K^T) V for every token and query head. Cannot fail. */
void attend_run(attend_scratch *as, pool *p, const attend_batch *b);

#endif
