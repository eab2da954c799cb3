/* act_impl.h - the GELU of act.h written once over a vector type (not a public header).
 * Room: kern. The ISA file defines V (the float vector), VN (its lanes) and the macros
 * below, then includes this: the same formula and constants for avx2 and avx512.
 *   VSET(c) VADD VSUB VMUL VDIV VFMA(a,b,c)=a*b+c VFNMA(a,b,c)=c-a*b VABS VMIN VMAX
 *   VROUND(x) nearest integer   VLEQ0_BLEND(x, a, b): x <= 0 ? a : b per lane
 *   VSCALE(p, n) p * 2^n (n integral in [-300, 0])
 *   VLOAD/VSTORE and VLOAD_N/VSTORE_N(p, n) for a tail of n < VN lanes */
#ifndef KVLM_KERN_ACT_IMPL_H
#define KVLM_KERN_ACT_IMPL_H

/* exp(hi + lo) for hi + lo in [-300, 0]: hi exact (a float), |lo| < 2. The reduction
 * r = hi - n ln2 is exact in its first part (ln2's high part has 9 bits), so the one rounding
 * of the argument is that of adding lo: exp's relative error stays ~1e-7 even at hi = -200. */
static inline V act_exp2parts(V hi, V lo)
{
    const V n = VROUND(VMUL(VADD(hi, lo), VSET(1.44269504088896341f)));
    V r = VFNMA(n, VSET(0.693359375f), hi);
    r = VFNMA(n, VSET(-2.12194440e-4f), r);
    r = VADD(r, lo);
    V p = VSET(1.0f / 5040.0f);                       /* Taylor to r^7 on |r| <= ~0.35 */
    p = VFMA(p, r, VSET(1.0f / 720.0f));
    p = VFMA(p, r, VSET(1.0f / 120.0f));
    p = VFMA(p, r, VSET(1.0f / 24.0f));
    p = VFMA(p, r, VSET(1.0f / 6.0f));
    p = VFMA(p, r, VSET(0.5f));
    p = VFMA(p, r, VSET(1.0f));
    p = VFMA(p, r, VSET(1.0f));
    return VSCALE(p, n);
}

/* gelu(x) = 0.5 x erfc(-x / sqrt 2) per lane (see act.h) */
static inline V act_gelu_v(V x)
{
    const V xc = VMAX(VMIN(x, VSET(20.0f)), VSET(-20.0f));   /* erfc(20 / sqrt 2) < 1e-88 */
    const V u = VMUL(VABS(xc), VSET(0.70710678118654752f));
    const V t = VDIV(VSET(1.0f), VFMA(u, VSET(0.5f), VSET(1.0f)));
    V p = VSET(0.17087277f);                           /* Numerical Recipes erfcc */
    p = VFMA(p, t, VSET(-0.82215223f));
    p = VFMA(p, t, VSET(1.48851587f));
    p = VFMA(p, t, VSET(-1.13520398f));
    p = VFMA(p, t, VSET(0.27886807f));
    p = VFMA(p, t, VSET(-0.18628806f));
    p = VFMA(p, t, VSET(0.09678418f));
    p = VFMA(p, t, VSET(0.37409196f));
    p = VFMA(p, t, VSET(1.00002368f));
    p = VFMA(p, t, VSET(-1.26551223f));
    const V x2 = VMUL(xc, xc), x2lo = VFMA(xc, xc, VSUB(VSET(0.0f), x2));   /* xc^2 = x2 + x2lo exactly */
    const V hi = VMUL(x2, VSET(-0.5f));                                       /* exact */
    const V lo = VFMA(x2lo, VSET(-0.5f), p);
    const V e = VMUL(t, act_exp2parts(hi, lo));        /* erfc(|x| / sqrt 2) */
    const V ec = VLEQ0_BLEND(x, e, VSUB(VSET(2.0f), e));   /* erfc(-x / sqrt 2) */
    return VMUL(VMUL(VSET(0.5f), x), ec);
}

static inline void act_gelu_loop(float *y, const float *b, int64_t n)
{
    int64_t i = 0;
    for (; i + VN <= n; i += VN) {                     /* y, b: [n], VN lanes at a time */
        V x = VLOAD(y + i);
        if (b) x = VADD(x, VLOAD(b + i));
        VSTORE(y + i, act_gelu_v(x));
    }
    if (i < n) {
        V x = VLOAD_N(y + i, n - i);
        if (b) x = VADD(x, VLOAD_N(b + i, n - i));
        VSTORE_N(y + i, n - i, act_gelu_v(x));
    }
}

#endif
