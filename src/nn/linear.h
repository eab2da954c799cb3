/* linear.h - y = x W^T for the weights of a layer, threaded: the activation rows
 * are converted once to the weights' vec_dot_type, then the threads split each
 * weight's output rows (ith/nth). Shared by every model's forward pass.
 * Room: nn. May touch: core (pool), kern (matmul, quant), model (model_weight).
 *
 *   x:  [n_tok][n_in] f32     xq: [n_tok][xq_bytes] scratch, xq_bytes >= the
 *                             widest linear_xq_bytes of the weights used
 *   y_i: [n_tok][w_i->n_out]  f32
 * Exactness is kern/matmul.h's: y[t][r] depends only on W[r] and x[t], not on
 * n_tok or the thread count. */
#ifndef KVLM_NN_LINEAR_H
#define KVLM_NN_LINEAR_H

#include <stddef.h>
#include <stdint.h>
#include "core/pool.h"
#include "model/model.h"

/* Bytes of one activation row of w's vec_dot_type. */
size_t linear_xq_bytes(const model_weight *w);

/* y_i = x W_i^T for up to three weights of the same n_in; weights that share a
 * vec_dot_type share one converted copy of x. */
void linear_project(pool *p, void *xq, const float *x, int64_t n_tok, const model_weight *const *w,
                    float *const *y, int n_w);

/* y[t][r] += b[r] for t < n_tok, r < n        y: [n_tok][n], b: [n] */
void linear_add_bias(float *y, const float *b, int64_t n_tok, int64_t n);

#endif
