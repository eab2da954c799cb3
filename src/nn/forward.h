/* forward.h - the transformer forward pass over a batch of new tokens, reading
 * and extending a KV cache.
 * Room: nn. May touch: core (pool), kern, model, kv.
 * forward_run(tokens t_0..t_{n-1}) computes positions [s->n_pos, s->n_pos + n),
 * stores their K/V in the sequence's blocks, attends each token over every
 * position up to and including its own, commits the n positions
 * (kv_seq_advance) and leaves logits for the last token (or all).
 * forward_run_batch does the same for several sequences of one pool in one pass
 * (continuous batching): the weights are read once for every token of every
 * sequence, and each token attends only its own sequence. A token's results do
 * not depend on the other tokens of the batch (each matmul row and each
 * attention query is computed alone, in a fixed order), so a sequence gets the
 * same bits alone or batched.
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
#include "nn/attend.h"

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
    float *rope_swa;      /* [n_batch][head_dim]  the same at the sliding-window layers' base */
    const attn_kernels *ak;   /* attention kernel set for this CPU and head_dim */
    attend_scratch as;    /* attention's per-thread scratch and split parts */
    float *stage;         /* KIVI: one layer's f32 blocks of the current groups (kv_seq_stage), else NULL */
    uint8_t *xq;          /* [n_batch][xq_bytes]  quantized activations */
    size_t xq_bytes;
    int64_t max_seg;      /* sequences per forward_run_batch */
    int32_t *tok_seg;     /* [n_batch] the segment of each token of the running batch */
    int64_t *tok_pos;     /* [n_batch] its position */
    int64_t *seg_stage;   /* [max_seg] KIVI: float offset of each segment's stage in `stage` */
    int64_t *rows;        /* [n_batch] rows[i] = i: forward_run's row lists */
    const kv_seq **tok_seq;       /* [n_batch] attend_batch's per-token views */
    int64_t *tok_nkv, *tok_stage_pos0;
    int64_t *tok_kvlo;    /* [n_batch] a window layer's first row for each token */
    const float **tok_stage;
} forward_state;

/* One sequence's share of a batch: the next n tokens of s (n >= 1). */
typedef struct forward_seg {
    kv_seq *s;
    int64_t n;
} forward_seg;

/* Scratch for batches of n_batch tokens from up to max_seg sequences of pool kp. */
kvlm_err forward_init(forward_state *fs, const kvlm_model *m, int64_t n_batch, int64_t n_ctx,
                      int n_threads, const kv_pool *kp, int64_t max_seg, char *err, size_t errlen);
void     forward_free(forward_state *fs);

/* tokens: [n_tok], 1 <= n_tok <= n_batch, s->n_pos + n_tok <= n_ctx, the n_tok
 * positions reserved (kv_seq_reserve), every id in [0, n_vocab): all checked by
 * the caller, so this cannot fail.
 * logits: [n_vocab] for the last token, or [n_tok][n_vocab] if all_logits. */
void forward_run(forward_state *fs, pool *p, kv_seq *s, const kvlm_token *tokens,
                 int64_t n_tok, float *logits, bool all_logits);

/* segs: [n_seg], 1 <= n_seg <= max_seg, distinct sequences of one pool, each with
 * its n positions reserved; tokens: [sum n] the segments' tokens in order (total
 * <= n_batch); out_rows: [n_out] indices into tokens whose logits are wanted,
 * written to logits: [n_out][n_vocab]. Checked by the caller: cannot fail. */
void forward_run_batch(forward_state *fs, pool *p, const forward_seg *segs, int64_t n_seg,
                       const kvlm_token *tokens, const int64_t *out_rows, int64_t n_out, float *logits);

/* ---- shared by the architectures' layer loops (forward.c: llama, forward_gemma3.c) ---- */
/* Fills tok_seg, tok_pos and seg_stage for the batch; returns its token count. */
int64_t forward_batch_begin(forward_state *fs, const forward_seg *segs, int64_t n_seg);
/* x[t] = embedding row of tokens[t] * embd_scale        x: [n_tok][n_embd] */
void forward_embed(forward_state *fs, const kvlm_token *tokens, int64_t n_tok);
/* y[i] = x W_i^T for n_w weights sharing the input x: [n_tok][n_in] (threaded over rows). */
void forward_project(forward_state *fs, pool *p, const float *x, int64_t n_tok, const model_weight *const *w,
                     float *const *y, int n_w);
/* Layer il's attention from q, k, v (RoPE applied): the Hadamard basis for quantized
 * K/V, the store (or KIVI stage), att = softmax(q_scale q K^T) V over each token's
 * rows (a window layer's last n_swa), back out of the basis. att: [n_tok][n_head*head_dim] */
void forward_attention(forward_state *fs, pool *p, const forward_seg *segs, int64_t n_seg, int64_t il, int64_t n_tok);
/* Commits the segments' positions and writes the logits of out_rows. */
void forward_batch_end(forward_state *fs, pool *p, const forward_seg *segs, int64_t n_seg, const int64_t *out_rows,
                       int64_t n_out, float *logits);
/* Whether the q.k (K type) or p.v (V type) of attention runs in the Hadamard basis
 * (ops_hadamard): quantized types, when head_dim is a power of two. The cache then
 * stores that part rotated (nn/rope_shift.h un-rotates K to move it). */
bool forward_rotates(kvlm_kv_type type, int64_t head_dim);
/* gemma3's forward_run_batch (forward_gemma3.c); forward_run_batch calls it. */
void forward_gemma3_batch(forward_state *fs, pool *p, const forward_seg *segs, int64_t n_seg,
                          const kvlm_token *tokens, const int64_t *out_rows, int64_t n_out, float *logits);

#endif
