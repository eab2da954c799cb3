/* cpu.c - see cpu.h. cpuid leaves used:
 *   1:      ECX bit 12 FMA, 27 OSXSAVE, 28 AVX, 29 F16C
 *   7.0:    EBX bit 5 AVX2, 16 AVX512F, 17 AVX512DQ, 30 AVX512BW, 31 AVX512VL;
 *           ECX bit 11 AVX512_VNNI
 *   7.1:    EAX bit 5 AVX512_BF16
 *   XCR0 (xgetbv 0): bits 1|2 XMM|YMM state; bits 5|6|7 opmask|ZMM_Hi256|Hi16_ZMM. */
#include "kern/cpu.h"

#include <pthread.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static unsigned long long xgetbv0(void)
{
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static void cpu_detect(cpu_features *f)
{
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    const bool osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    const bool fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return;
    const unsigned long long xcr0 = xgetbv0();
    const bool ymm_ok = (xcr0 & 0x6) == 0x6;
    const bool zmm_ok = ymm_ok && (xcr0 & 0xe0) == 0xe0;
    if (!ymm_ok) return;
    f->fma = fma;
    f->f16c = f16c;
    unsigned int max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    const unsigned int max_sub7 = a;
    f->avx2 = (b >> 5) & 1;
    if (zmm_ok) {
        f->avx512f = (b >> 16) & 1;
        f->avx512dq = (b >> 17) & 1;
        f->avx512bw = (b >> 30) & 1;
        f->avx512vl = (b >> 31) & 1;
        f->avx512vnni = (c >> 11) & 1;
        if (max_sub7 >= 1) {
            __cpuid_count(7, 1, a, b, c, d);
            f->avx512bf16 = (a >> 5) & 1;
        }
    }
}
#else
static void cpu_detect(cpu_features *f) { (void)f; }
#endif

static cpu_features cpu_feat;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;

static void cpu_init(void) { cpu_detect(&cpu_feat); }

const cpu_features *cpu_get(void)
{
    pthread_once(&cpu_once, cpu_init);
    return &cpu_feat;
}
