/* ops.h - the element-wise and per-head operations of the transformer.
 * Room: nn. May touch: kern, kv (rows of the cache). No allocation, no threads.
 * Each op is the scalar spec; where a faster version appears it must be
 * checked against these. */
#ifndef KVLM_NN_OPS_H
#define KVLM_NN_OPS_H

#include <stdint.h>
#include "kern/attn.h"
#include "kv/kv_seq.h"

/* y[i] = x[i] / sqrt(mean(x^2) + eps) * w[i]      x, y, w: [n]  (y may alias x) */
void ops_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps);

/* cs: [head_dim/2][2] (cos, sin) of pos * theta^(-2i/head_dim), i in [0, head_dim/2) */
void ops_rope_table(float *cs, int64_t pos, int64_t head_dim, float theta);

/* Rotates adjacent pairs (x[2i], x[2i+1]) of each of n_heads heads by cs, the
 * llama layout as GGUF stores it.   x: [n_heads][head_dim] */
void ops_rope(float *x, const float *cs, int64_t n_heads, int64_t head_dim);

/* Rotates the pairs (x[i], x[i + head_dim/2]) of each head by cs: NeoX's layout
 * (gemma3; the converter leaves Q/K unpermuted).   x: [n_heads][head_dim] */
void ops_rope_neox(float *x, const float *cs, int64_t n_heads, int64_t head_dim);
/* x_h <- H x_h / sqrt(head_dim) for each head h, H the Sylvester-Hadamard matrix
 * (fast Walsh-Hadamard transform; head_dim a power of two). Orthonormal and its
 * own inverse, so (Hq).(Hk) = q.k and H(sum p Hv) = sum p v: attention can run on
 * rotated q, K and V and rotate its output back. Quantized caches store rotated
 * K and V, whose values are spread evenly over the channels (an outlier channel
 * no longer sets the scale of its whole group).   x: [n_heads][head_dim] */
void ops_hadamard(float *x, int64_t n_heads, int64_t head_dim);

/* g[i] = silu(g[i]) * u[i]      g, u: [n] */
void ops_swiglu(float *g, const float *u, int64_t n);
/* g[i] = gelu_tanh(g[i]) * u[i], gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))),
 * as ggml's CPU GeGLU computes it: x rounded to f16 indexes a table of gelu_tanh of
 * every f16 value, rounded to f16 (x >= 10 gives x, x <= -10 gives 0). Within an f16
 * rounding of the exact value, and llama.cpp's bits for the same x.      g, u: [n] */
void ops_geglu_tanh(float *g, const float *u, int64_t n);

/* One chunk of attention for every query head of one token (kern/attn.h):
 *   q:    [n_head][head_dim]  f32, rounded to f16 by the caller for an f16 cache
 *   part: [n_head][ATTN_PART(head_dim)]  the chunk's {m, l, o} per query head
 * Chunk c covers rows [c * ATTN_CHUNK, min(n_kv, (c + 1) * ATTN_CHUNK)) of layer il
 * of sequence s, read through its block table, less the rows before kv_lo (a
 * sliding window's start: the chunk must end past it; blocks wholly before it are
 * not read, so they may have left the sequence); query head h reads K/V head
 * h / (n_head / n_head_kv), and each K/V head's rows are read once for its whole
 * group. scratch: attn_scratch_floats(group, head_dim) floats, 64-byte aligned.
 * KIVI (s->pool->res_tokens > 0): the rows of the query's own residual group,
 * [gs(n_kv - 1), n_kv), come in f32 from stage (kv_seq_stage's blocks, the first
 * holding position stage_pos0); the rows before it from the pool. A chunk holding
 * both runs them as two parts, the pool's first, and folds the second into the
 * first through tmp: [n_head][ATTN_PART(head_dim)]. */
void ops_attend_chunk(float *part, const float *q, const kv_seq *s, int64_t il, int64_t c,
                      int64_t kv_lo, int64_t n_kv, int64_t n_head, float scale, const attn_kernels *ak, float *scratch,
                      const float *stage, int64_t stage_pos0, float *tmp);

#endif
