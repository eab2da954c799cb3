/* matmul.h - weight x activation products over quantized rows.
 * Room: kern. May touch: kern/quant, kern/cpu only. Raw pointers and integers in, no
 * allocation, no threads: the caller splits rows with ith/nth.
 *
 *   W:  [n_out rows][n_in]  in the weight's type (row_bytes per row)
 *   xq: [n_tok][n_in]       activations already quantized to the weight's
 *                           vec_dot_type (xq_bytes per row)
 *   y:  [n_tok][ldy]        f32; this call writes columns [r0, r1)
 *
 * Exactness: y[t][r] is bitwise qt->vec_dot(W[r], xq[t], n_in), whatever n_tok, the
 * tiling and [r0, r1) are, so a token gives the same output in a batch of 512 as
 * alone, and with any thread count. That is what lets the cached and recomputed
 * paths agree. For most tables matmul_rows literally calls vec_dot per output. For
 * the fast Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K, F16 and F32 tables (quant_get_fast) it
 * runs a tiled kernel of matmul_avx2.c / matmul_avx512.c (R rows x T tokens per register
 * tile; Q4_1/Q5_0/Q8_0 activations re-laid out once per call, the K-quants' Q8_K rows
 * read in place) whose per-output float operations are exactly those
 * of the table's vec_dot: that vec_dot is the same kernel on a 1 x 1 tile. F16 and F32
 * weights take f32 activations (xq is [n_tok][n_in] f32, xq_bytes apart) and accumulate
 * in f32 (the reference vec_dot in quant.c accumulates in double), for any n_in. K-quant
 * rows (Q8_K activations) have n_in a multiple of 256, as quant_row_size requires. */
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

/* ---- ISA kernel sets (matmul_avx2.c, matmul_avx512.c) -------------------------------
 * A tiled matmul with matmul_rows' arguments (minus qt) and, for each, the vec_dot
 * that computes bitwise the same value for one output. Each set is NULL when its file
 * was built without the ISA flags; calling a kernel on a CPU without the ISA is
 * undefined: quant_get_fast installs the vec_dots only when cpu_get() allows, and
 * matmul_rows uses a tiled kernel only for a table holding its vec_dot. */
typedef void (*matmul_tiled_fn)(const void *W, size_t row_bytes, int64_t r0, int64_t r1,
                                const void *xq, size_t xq_bytes, int64_t n_tok, int64_t n_in,
                                float *y, int64_t ldy);
typedef struct matmul_isa_kernels {
    const char      *name;                /* "avx2", "avx512" */
    quant_vec_dot_fn vec_dot_q4_1_q8_1;   /* w: blk_q4_1, x: blk_q8_1 */
    matmul_tiled_fn  matmul_q4_1_q8_1;
    quant_vec_dot_fn vec_dot_q8_0_q8_0;   /* w: blk_q8_0, x: blk_q8_0 */
    matmul_tiled_fn  matmul_q8_0_q8_0;
    quant_vec_dot_fn vec_dot_q5_0_q8_0;   /* w: blk_q5_0, x: blk_q8_0 */
    matmul_tiled_fn  matmul_q5_0_q8_0;
    quant_vec_dot_fn vec_dot_q4_K_q8_K;   /* w: blk_q4_K, x: blk_q8_K (n_in: multiples of 256) */
    matmul_tiled_fn  matmul_q4_K_q8_K;
    quant_vec_dot_fn vec_dot_q5_K_q8_K;   /* w: blk_q5_K, x: blk_q8_K */
    matmul_tiled_fn  matmul_q5_K_q8_K;
    quant_vec_dot_fn vec_dot_q6_K_q8_K;   /* w: blk_q6_K, x: blk_q8_K */
    matmul_tiled_fn  matmul_q6_K_q8_K;
    quant_vec_dot_fn vec_dot_f16_f32;     /* w: f16, x: f32 */
    matmul_tiled_fn  matmul_f16_f32;
    quant_vec_dot_fn vec_dot_f32_f32;     /* w: f32, x: f32 */
    matmul_tiled_fn  matmul_f32_f32;
} matmul_isa_kernels;
const matmul_isa_kernels *matmul_avx2_kernels(void);
const matmul_isa_kernels *matmul_avx512_kernels(void);

/* The tiled kernel matching qt->vec_dot, or NULL (then matmul_rows calls vec_dot). */
matmul_tiled_fn matmul_tiled_for(const quant_traits *qt);

#endif
