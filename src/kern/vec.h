/* vec.h - the row kernels of attention over one block of cache rows.
 * Room: kern. May touch: kern/cpu, kern/quant (f16 conversion). No allocation.
 *
 *   q, acc: [n] f32     rows r_j = base + j * stride (elements), j in [0, m),
 *                       each [n] elements of the cache type (f16 or f32)
 *   qk:  scores[j] = sum_i q[i] * k_j[i]
 *   pv:  acc[i] += p[j] * v_j[i]   for j = 0, 1, ..., m-1 in that order
 *   round_f16: x[i] = the f16 value nearest x[i] (ties to even), as f32
 * Exactness: every output's operations are fixed by the kernel set alone: qk's
 * dot of row j is the same instruction sequence whatever m is or where the row
 * sits, and pv accumulates rows strictly in order, so splitting rows into blocks
 * or calls changes no bit. The scalar set is the specification; the AVX2 set
 * (F16C, FMA, 8 lanes) sums in another fixed order and agrees within rounding.
 * A SIMD set needs n % 8 == 0: vec_for(n) falls back to scalar otherwise. */
#ifndef KVLM_KERN_VEC_H
#define KVLM_KERN_VEC_H

#include <stddef.h>
#include <stdint.h>

typedef struct vec_kernels {
    const char *name;
    void (*qk_f32)(float *scores, const float *q, const float *k, size_t stride, int64_t m, int64_t n);
    void (*qk_f16)(float *scores, const float *q, const uint16_t *k, size_t stride, int64_t m, int64_t n);
    void (*pv_f32)(float *acc, const float *p, const float *v, size_t stride, int64_t m, int64_t n);
    void (*pv_f16)(float *acc, const float *p, const uint16_t *v, size_t stride, int64_t m, int64_t n);
    void (*round_f16)(float *x, int64_t n);
} vec_kernels;

const vec_kernels *vec_scalar(void);
const vec_kernels *vec_avx2_kernels(void);   /* NULL when built without AVX2 */
/* The fastest set this CPU runs for rows of n elements. */
const vec_kernels *vec_for(int64_t n);

#endif
