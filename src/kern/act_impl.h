/* act_impl.h - the GELU of act.h written once over a vector type (not a public header).
 * Room: kern. The ISA file defines, then includes this:
 *   F (VN floats), D (VN doubles), FLOAD/FSTORE, FLOAD_N/FSTORE_N(p, n) (n < VN lanes),
 *   FADD, TO_D(F) / TO_F(D), and over D: DSET(c) DADD DSUB DMUL DDIV DFMA(a,b,c)=a*b+c
 *   DFNMA(a,b,c)=c-a*b DABS DMIN DMAX DROUND (nearest integer) DSCALE(p, n) = p * 2^n
 *   (n integral in [-300, 0]) DLEQ0_BLEND(x, a, b) = x <= 0 ? a : b per lane.
 * The bias is added in float (so gelu(y + b) is bitwise gelu of the float sum); the
 * function itself runs in double, so its only error is the erfc approximation's (NR's
 * erfcc: < 1.2e-7 relative) and the final rounding to float (<= 2^-24). In float the same
 * formula measured 4.6e-7: the Horner sum's last steps and exp's argument (~1.3 in
 * magnitude, an absolute 6e-8 per rounding) are relative errors of erfc. */
#ifndef KVLM_KERN_ACT_IMPL_H
#define KVLM_KERN_ACT_IMPL_H

/* exp(a) for a in [-300, 0], relative error < 1e-8 (Taylor to r^8 on |r| <= ln2 / 2) */
static inline D act_exp_d(D a)
{
    const D n = DROUND(DMUL(a, DSET(1.4426950408889634)));
    D r = DFNMA(n, DSET(0.693145751953125), a);               /* a - n ln2, in two parts */
    r = DFNMA(n, DSET(1.4286068202862268e-06), r);
    D p = DSET(1.0 / 40320.0);
    p = DFMA(p, r, DSET(1.0 / 5040.0));
    p = DFMA(p, r, DSET(1.0 / 720.0));
    p = DFMA(p, r, DSET(1.0 / 120.0));
    p = DFMA(p, r, DSET(1.0 / 24.0));
    p = DFMA(p, r, DSET(1.0 / 6.0));
    p = DFMA(p, r, DSET(0.5));
    p = DFMA(p, r, DSET(1.0));
    p = DFMA(p, r, DSET(1.0));
    return DSCALE(p, n);
}

/* gelu(x) = 0.5 x erfc(-x / sqrt 2) per lane (see act.h) */
static inline D act_gelu_d(D x)
{
    const D xc = DMAX(DMIN(x, DSET(20.0)), DSET(-20.0));       /* erfc(20 / sqrt 2) < 1e-88 */
    const D u = DMUL(DABS(xc), DSET(0.70710678118654752440));
    const D t = DDIV(DSET(1.0), DFMA(u, DSET(0.5), DSET(1.0)));
    D p = DSET(0.17087277);                                     /* Numerical Recipes erfcc */
    p = DFMA(p, t, DSET(-0.82215223));
    p = DFMA(p, t, DSET(1.48851587));
    p = DFMA(p, t, DSET(-1.13520398));
    p = DFMA(p, t, DSET(0.27886807));
    p = DFMA(p, t, DSET(-0.18628806));
    p = DFMA(p, t, DSET(0.09678418));
    p = DFMA(p, t, DSET(0.37409196));
    p = DFMA(p, t, DSET(1.00002368));
    p = DFMA(p, t, DSET(-1.26551223));
    const D e = DMUL(t, act_exp_d(DFNMA(u, u, p)));             /* erfc(|x| / sqrt 2) */
    const D ec = DLEQ0_BLEND(x, e, DSUB(DSET(2.0), e));         /* erfc(-x / sqrt 2) */
    return DFLUSH(DMUL(DMUL(DSET(0.5), x), ec));              /* no subnormal outputs (act.h) */
}

static inline void act_gelu_loop(float *y, const float *b, int64_t n)
{
    int64_t i = 0;
    for (; i + VN <= n; i += VN) {                     /* y, b: [n], VN lanes at a time */
        F x = FLOAD(y + i);
        if (b) x = FADD(x, FLOAD(b + i));
        FSTORE(y + i, TO_F(act_gelu_d(TO_D(x))));
    }
    if (i < n) {
        F x = FLOAD_N(y + i, n - i);
        if (b) x = FADD(x, FLOAD_N(b + i, n - i));
        FSTORE_N(y + i, n - i, TO_F(act_gelu_d(TO_D(x))));
    }
}

#endif
