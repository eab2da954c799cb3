/* matmul.h - weight x activation products over quantized rows.
 * Room: kern. May touch: kern/quant only. Raw pointers and integers in, no
 * allocation, no threads: the caller splits rows with ith/nth.
 *
 *   W:  [n_out rows][n_in]  in the weight's type (row_bytes per row)
 *   xq: [n_tok][n_in]       activations already quantized to the weight's
 *                           vec_dot_type (xq_bytes per row)
 *   y:  [n_tok][ldy]        f32; this call writes columns [r0, r1)
 *
 * Exactness: y[t][r] is always one vec_dot(W[r], xq[t]) call, whatever n_tok
 * and the tiling are, so a token gives bitwise the same output in a batch of
 * 512 as alone. That is what lets the cached and recomputed paths agree. */
#ifndef KVLM_KERN_MATMUL_H
#define KVLM_KERN_MATMUL_H

#include <stddef.h>
#include <stdint.h>
#include "kern/quant.h"

void matmul_rows(const quant_traits *qt, const void *W, size_t row_bytes,
                 int64_t r0, int64_t r1, const void *xq, size_t xq_bytes,
                 int64_t n_tok, int64_t n_in, float *y, int64_t ldy);

/* x: [n_tok][n_in] f32 -> xq: [n_tok][xq_bytes] in vdt (the weight's
 * vec_dot_type); rows [t0, t1) only. F32 activations are copied. */
void matmul_quantize_rows(const quant_traits *vdt, const float *x, int64_t n_in,
                          int64_t t0, int64_t t1, void *xq, size_t xq_bytes);

#endif
