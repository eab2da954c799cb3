/* act.h - activation functions over float arrays: GELU with the exact erf.
 * Room: kern. May touch: kern/cpu only. Raw pointers in, no allocation, no threads.
 *
 *   y[i] = gelu(y[i] + b[i])   (b == NULL: gelu(y[i]))      y, b: [n]
 *   gelu(x) = 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2)
 *
 * The vector sets use erfc(u) = t exp(-u^2 + P(t)), t = 1 / (1 + u/2), u = |x| / sqrt 2, with
 * Numerical Recipes' degree-9 P (erfcc: relative error < 1.2e-7 for every u >= 0) and
 * erfc(-u) = 2 - erfc(u), evaluated in double (8 or 4 lanes; the bias is added in float
 * first) and rounded once to float. Measured by tests/kern/test_gemm.c against double erfc
 * over [-10, 10] every 2^-14 and the tails (|x| to 20, 1e4, 3e38): max |y - y_ref| / |y_ref|
 * = 1.63e-7 for x <= 0 (at x = -6.6, where y is a tiny multiple of erfc), 1.33e-7 for
 * x > 0; max |y - y_ref| = 2.4e-7 (half an ulp of y near 8). The same formula in float had
 * 4.6e-7; the scalar 0.5 x (1 + erff(x / sqrt 2)) it replaces has 4.8e-2 at x = -5 (1 + erf
 * cancels) and gives 0 for x < -5.9. Speed, 9.2M values (a window's), 1 thread: 23 ms vs
 * 70 ms for that erff loop.
 * Same as that formula at the limits: gelu(+inf) = +inf, gelu(-inf) = NaN, NaN -> NaN.
 * Outputs below FLT_MIN in magnitude (x < -13.2: subnormal or smaller) are 0 in every set:
 * a subnormal operand makes the next matmul's FMAs take microcode assists on Intel (the
 * encoder's fc2 ran 1.7x slower on them); the error is below 1.2e-38. */
#ifndef KVLM_KERN_ACT_H
#define KVLM_KERN_ACT_H

#include <stdint.h>

/* The fastest set this CPU runs (avx512, avx2, else the reference). */
void act_gelu(float *y, const float *b, int64_t n);

/* The spec: 0.5 x erfc(-x / sqrt 2) in double, rounded once to float. */
void act_gelu_ref(float *y, const float *b, int64_t n);

typedef void (*act_gelu_fn)(float *y, const float *b, int64_t n);
typedef struct act_isa_kernels {
    const char *name;   /* "avx2", "avx512" */
    act_gelu_fn gelu;
} act_isa_kernels;
/* NULL when the file was built without the ISA flags; calling one on a CPU without the
 * ISA is undefined (act_gelu checks cpu_get()). */
const act_isa_kernels *act_avx2_kernels(void);
const act_isa_kernels *act_avx512_kernels(void);

#endif
