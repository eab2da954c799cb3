/* cpu.h - which x86 SIMD extensions this CPU and OS can run (run-time dispatch).
 * Room: kern. May touch: libc and compiler builtins only.
 * A feature is reported only when the CPU has it (cpuid) AND the OS saves the
 * register state it needs (xgetbv: YMM for AVX*, opmask/ZMM for AVX-512). On a
 * non-x86 build everything is false. The answer is computed once (thread-safe)
 * and never changes; no environment knobs. */
#ifndef KVLM_KERN_CPU_H
#define KVLM_KERN_CPU_H

#include <stdbool.h>

typedef struct cpu_features {
    bool avx2, fma, f16c;
    bool avx512f, avx512bw, avx512vl, avx512vnni, avx512bf16;
    bool avx512dq;           /* added: quant_avx512.c is built with -mavx512dq */
} cpu_features;

const cpu_features *cpu_get(void);   /* static storage, never NULL */

/* What each ISA file was compiled for (see the Makefile's AVX2_FLAGS/AVX512_FLAGS). */
static inline bool cpu_has_avx2_set(const cpu_features *c)
{
    return c->avx2 && c->fma && c->f16c;
}
static inline bool cpu_has_avx512_set(const cpu_features *c)
{
    return cpu_has_avx2_set(c) && c->avx512f && c->avx512bw && c->avx512vl &&
           c->avx512dq && c->avx512vnni;
}

#endif
