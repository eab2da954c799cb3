/* quant_impl.h - ggml's Q8_K activation quantizer written once over a vector type (not a
 * public header). Room: kern. May touch: kern/quant.h.
 * The ISA file defines, then includes this:
 *   QV (a vector of QVN floats), QV_LOAD(p), QV_ZERO, QV_HMAX(v) (largest lane),
 *   QV_ABSMAX(acc, v) = max(|v|, acc) per lane, acc the second operand (a NaN is skipped),
 *   QV_EQ_MASK(v, s)  = a bit per lane: |v| == s,
 *   q8k_q16(x, iscale, qs): x[0..16) -> qs[0..16) = min(127, RNE(clamp(iscale * x, -128,
 *                      128))) with the bound as the result for NaN (clampf), returns their sum
 * and gets quant_impl_q8_K, bit-identical to quant.c's quant_q8_K: the same amax, the first
 * element of that magnitude as max, iscale = -127 / max, d = 1 / iscale, a zero block for
 * amax 0 or above 3.4e38. (VCVTPS2DQ under the default rounding is nearest_int's RNE on
 * [-128, 128].) */
#ifndef KVLM_KERN_QUANT_IMPL_H
#define KVLM_KERN_QUANT_IMPL_H

#include <string.h>

static void quant_impl_q8_K(const float *x, void *dst, int64_t n)
{
    blk_q8_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {        /* x: [256] per block */
        QV amax = QV_ZERO;
        for (int k = 0; k < QK_K / QVN; k++) amax = QV_ABSMAX(amax, QV_LOAD(x + QVN * k));
        const float am = QV_HMAX(amax);
        memset(&y[i], 0, sizeof y[i]);
        if (am == 0 || !(am <= 3.4e38f)) continue;             /* zero (or non-finite) block */
        int jmax = 0;                                           /* the first element with |x| = amax */
        for (int k = 0; k < QK_K / QVN; k++) {
            const unsigned m = QV_EQ_MASK(QV_LOAD(x + QVN * k), am);
            if (m) { jmax = QVN * k + __builtin_ctz(m); break; }
        }
        const float iscale = -127.f / x[jmax];
        for (int k = 0; k < QK_K / 16; k++)                     /* k: 16 elements, one bsum */
            y[i].bsums[k] = (int16_t)q8k_q16(x + 16 * k, iscale, y[i].qs + 16 * k);
        y[i].d = 1 / iscale;
    }
}

#endif
