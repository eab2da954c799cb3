/* ops.h - the element-wise and per-head operations of the transformer.
 * Room: nn. May touch: kern, kv (rows of the cache). No allocation, no threads.
 * Each op is the scalar spec; where a faster version appears it must be
 * checked against these. */
#ifndef KVLM_NN_OPS_H
#define KVLM_NN_OPS_H

#include <stdint.h>
#include "kv/kv_seq.h"

/* y[i] = x[i] / sqrt(mean(x^2) + eps) * w[i]      x, y, w: [n]  (y may alias x) */
void ops_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps);

/* cs: [head_dim/2][2] (cos, sin) of pos * theta^(-2i/head_dim), i in [0, head_dim/2) */
void ops_rope_table(float *cs, int64_t pos, int64_t head_dim, float theta);

/* Rotates adjacent pairs (x[2i], x[2i+1]) of each of n_heads heads by cs, the
 * llama layout as GGUF stores it.   x: [n_heads][head_dim] */
void ops_rope(float *x, const float *cs, int64_t n_heads, int64_t head_dim);

/* g[i] = silu(g[i]) * u[i]      g, u: [n] */
void ops_swiglu(float *g, const float *u, int64_t n);

/* Attention of one query head over positions [0, n_kv) of sequence s, layer il,
 * K/V head kvh, read through the block table:
 *   q:   [head_dim] f32         (already scaled by nothing; scale applied here)
 *   out: [head_dim] f32 = sum_j softmax_j(q.k_j * scale) v_j
 *   scores: scratch [n_kv]
 * The reduction runs over j in increasing order, independent of how many
 * queries are processed together and of which blocks hold the rows, so a
 * prefix taken from the cache gives the same bits as one computed now. */
void ops_attend(float *out, const float *q, const kv_seq *s, int64_t il, int64_t kvh,
                int64_t n_kv, float scale, float *scores);

#endif
