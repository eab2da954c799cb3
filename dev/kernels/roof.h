/* roof.h - the kernel lab's roofline: this machine's own peaks, measured, so a kernel's
 * rate can be printed as a fraction of what the cores and memory can do.
 * Room: dev/kernels (a dev tool, not the library). May touch: libc, pthreads, kern/cpu.h.
 *
 * Figures, each on 1 thread and on all CPUs of the affinity mask at once (one pinned
 * thread per CPU, every thread the same work, the best of rounds of about 20 ms):
 *   compute  loops of independent instructions (12 to 16 accumulators, more than
 *            latency x issue width), no loads: int8 in GMAC/s (u8 x s8 products),
 *            floating point in GFLOP/s (an FMA is 2 FLOP)
 *   clock    a chain of dependent adds, 1 per cycle: the cores' clock in GHz (estimate)
 *   read     GB/s of a loop of 64-byte loads over one buffer per thread, of each size of
 *            roof_bw_bytes (per thread)
 * An instruction the CPU or OS lacks (kern/cpu.h, and cpuid 7.1 EAX bit 4 for AVX-VNNI)
 * is never executed and its figure is 0. AMX is never executed (this room has none).
 * build/peak measures them for longer and writes build/peak.txt beside itself; the
 * benches call roof_get(), which reads that file and measures briefly in-process when it
 * is missing or was written on another CPU. Not thread-safe (the benches' main thread). */
#ifndef KVLM_DEV_ROOF_H
#define KVLM_DEV_ROOF_H

#include <stddef.h>
#include <stdio.h>

enum roof_kind {
    ROOF_VNNI512,     /* vpdpbusd zmm, AVX512_VNNI: 64 MAC */
    ROOF_VNNI256,     /* vpdpbusd ymm (EVEX, AVX512_VNNI + VL): 32 MAC */
    ROOF_AVXVNNI,     /* {vex} vpdpbusd ymm, AVX-VNNI: 32 MAC */
    ROOF_I8_512,      /* vpmaddubsw + vpmaddwd + vpaddd zmm, AVX512BW: 64 MAC */
    ROOF_I8_256,      /* vpmaddubsw + vpmaddwd + vpaddd ymm, AVX2: 32 MAC */
    ROOF_FMA512,      /* vfmadd231ps zmm: 32 FLOP */
    ROOF_FMA256,      /* vfmadd231ps ymm: 16 FLOP */
    ROOF_BF16_512,    /* vdpbf16ps zmm, AVX512_BF16: 64 FLOP */
    ROOF_CLOCK,       /* dependent add chain: Gcycle/s */
    ROOF_N_KIND
};
enum { ROOF_N_BW = 8 };
extern const size_t roof_bw_bytes[ROOF_N_BW];   /* 32, 256 KiB, 1, 4, 16, 64, 256, 512 MiB per thread */

typedef struct roof_peaks {
    char cpu[64];                  /* cpuid brand string */
    int n_cpu;                     /* threads of the "all" column */
    double seconds;                /* measuring time per figure */
    double loadavg;                /* 1-minute load average when measured (-1 unknown) */
    char date[32];                 /* when measured, UTC */
    double op[ROOF_N_KIND][2];     /* [kind][0: 1 thread, 1: n_cpu threads], 0 = not run */
    double bw[ROOF_N_BW][2];       /* GB/s, all threads summed in [1] */
    char source[200];              /* where these figures came from, for the benches' header */
} roof_peaks;

const char *roof_kind_name(int kind);   /* "int8 VNNI zmm", ... */
const char *roof_kind_unit(int kind);   /* "GMAC/s", "GFLOP/s", "GHz" */
const char *roof_kind_insn(int kind);   /* the instruction(s) of one step */

/* Measures every figure of `what` the CPU can run for about `seconds` each (the others
 * stay 0). Returns 0, or -1 when threads or buffers could not be made (p then holds what
 * was measured). */
enum { ROOF_OPS = 1, ROOF_BW = 2 };
int roof_measure(roof_peaks *p, double seconds, int what);
int roof_save(const roof_peaks *p, const char *path);   /* 0 or -1 (errno) */
/* 0, or -1 when the file is missing, malformed, or from another CPU / CPU count. */
int roof_load(roof_peaks *p, const char *path);
/* `name` beside this executable (/proc/self/exe), into buf; buf on success, else NULL. */
char *roof_path(char *buf, size_t cap, const char *name);
/* build/peak.txt beside the executable, or a 0.05 s-per-figure measurement now (said in
 * ->source); the same pointer on every call. */
const roof_peaks *roof_get(void);

/* The int8 (GMAC/s) or FMA (GFLOP/s) peak, 1 thread or all, of the ISA a kernel set was
 * written in: isa 512 (AVX-512: VNNI zmm, else maddubs zmm) or 256 (AVX2: maddubs ymm,
 * what kvlm's AVX2 kernels use; AVX-VNNI is printed by build/peak apart). */
double roof_int8(const roof_peaks *p, int isa, int all);
double roof_fma(const roof_peaks *p, int isa, int all);
/* Read GB/s for a working set of `bytes` per thread: that of the largest measured buffer
 * not above it (the smallest when all are). Bandwidth only falls as a buffer grows, so
 * this is an upper bound on what the working set can get: a fraction of it never
 * flatters (a 1.4 MB matrix that sits in a 2 MiB L2 is held to the 1 MiB figure). */
double roof_bw_at(const roof_peaks *p, size_t bytes, int all);
/* "17%" of rate / peak into buf (at least 8 bytes), "-" when the peak is 0. */
const char *roof_pct(char *buf, double rate, double peak);
void roof_print(FILE *f, const roof_peaks *p);          /* the table build/peak prints */

#endif
