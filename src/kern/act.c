/* act.c - see act.h: the reference GELU and the run-time choice of a set.
 * Room: kern. May touch: kern/cpu. */
#include "kern/act.h"
#include "kern/cpu.h"

#include <math.h>
#include <stddef.h>

void act_gelu_ref(float *y, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {           /* y, b: [n] */
        const double x = (double)(b ? y[i] + b[i] : y[i]);
        const double g = 0.5 * x * erfc(-x * 0.70710678118654752440);
        y[i] = fabs(g) < 0x1p-126 ? 0.0f : (float)g;   /* no subnormal outputs (act.h) */
    }
}

void act_gelu(float *y, const float *b, int64_t n)
{
    const cpu_features *c = cpu_get();
    const act_isa_kernels *k = NULL;
    if (act_avx512_kernels() && cpu_has_avx512_set(c)) k = act_avx512_kernels();
    else if (act_avx2_kernels() && cpu_has_avx2_set(c)) k = act_avx2_kernels();
    (k ? k->gelu : act_gelu_ref)(y, b, n);
}
