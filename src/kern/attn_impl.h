/* attn_impl.h - what the ISA files of the attention kernels share (not a module
 * header: included by attn_avx2.c and attn_avx512.c only). Room: kern.
 * Each file defines scores_phase(s, q, G, hd, scale, c, tmp, t) and
 * pv_phase(part, s, G, hd, c, tmp, t) as always-inline functions; these macros
 * make the per-type entry points of a kernel table from them. */
#ifndef KVLM_KERN_ATTN_IMPL_H
#define KVLM_KERN_ATTN_IMPL_H

/* hd is a literal in the common cases, so the loops over it unroll and the
 * accumulators stay in registers. */
#define DISPATCH_HD(call_64, call_128, call_any) \
    switch (hd) {                                \
    case 64: call_64; break;                     \
    case 128: call_128; break;                   \
    default: call_any; break;                    \
    }
#define SCORES_FN(name, t)                                                                          \
    static void name(float *s, const float *q, int64_t G, int64_t hd, float scale, const attn_chunk *c, \
                     float *tmp)                                                                     \
    {                                                                                                \
        DISPATCH_HD(scores_phase(s, q, G, 64, scale, c, tmp, t), scores_phase(s, q, G, 128, scale, c, tmp, t), \
                    scores_phase(s, q, G, hd, scale, c, tmp, t))                                     \
    }
#define PV_FN(name, t)                                                                                 \
    static void name(float *part, const float *s, int64_t G, int64_t hd, const attn_chunk *c, float *tmp) \
    {                                                                                                  \
        DISPATCH_HD(pv_phase(part, s, G, 64, c, tmp, t), pv_phase(part, s, G, 128, c, tmp, t),         \
                    pv_phase(part, s, G, hd, c, tmp, t))                                               \
    }
#endif
