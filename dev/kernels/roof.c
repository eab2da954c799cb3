/* roof.c - see roof.h. Each compute loop is one asm statement (the accumulators live in
 * named registers for the whole loop, so the compiler can neither drop, spill nor
 * reorder them), compiled through target attributes and run only after cpu checks.
 * The team: n pinned threads meet at a barrier, each runs `iters` steps of the same
 * work, meet again; thread 0 times the round (start barrier to end barrier: the slowest
 * thread's time) and keeps the best rate. Rounds last ~2 ms: long enough that the timer
 * and barrier are noise, short enough that, with other work on the cores, some rounds
 * still find every thread running (at load 7 on 2 CPUs, 20 ms rounds gave 0.9x the
 * 1-thread figure on 2 threads; 2 ms rounds gave the expected ~2x). A descheduled thread only makes a round slow,
 * so on a shared machine the best round is the figure closest to the quiet one. */
#include "roof.h"
#include "kern/cpu.h"

#include <errno.h>
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

const size_t roof_bw_bytes[ROOF_N_BW] = { 32u << 10, 256u << 10, 1u << 20, 4u << 20, 16u << 20, 64u << 20, 256u << 20, 512u << 20 };

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- compute loops: n steps of the kind's block ---- */

#define L16(ins, tail) ins "0" tail ins "1" tail ins "2" tail ins "3" tail ins "4" tail ins "5" tail \
    ins "6" tail ins "7" tail ins "8" tail ins "9" tail ins "10" tail ins "11" tail ins "12" tail    \
    ins "13" tail ins "14" tail ins "15" tail
#define L12(ins, tail) ins "0" tail ins "1" tail ins "2" tail ins "3" tail ins "4" tail ins "5" tail \
    ins "6" tail ins "7" tail ins "8" tail ins "9" tail ins "10" tail ins "11" tail
/* zero accumulators 0..15 (zmm) / 0..11 (ymm, VEX: clears the upper bits too) */
#define ZMM_ZERO(i) "vpxord %%zmm" i ", %%zmm" i ", %%zmm" i "\n\t"
#define YMM_ZERO(i) "vpxor %%ymm" i ", %%ymm" i ", %%ymm" i "\n\t"
#define EACH12(M) M("0") M("1") M("2") M("3") M("4") M("5") M("6") M("7") M("8") M("9") M("10") M("11")
#define EACH16(M) EACH12(M) M("12") M("13") M("14") M("15")
#define L16_SAME(ins) ins ins ins ins ins ins ins ins ins ins ins ins ins ins ins ins
#define CLOB16 "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", \
    "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"
#define CLOB32 CLOB16, "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", \
    "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31"

/* One asm statement per loop: set up the inputs, then n steps of `body`. */
#define STEPS(n, init, body, inputs, clobbers) \
    __asm__ volatile(init "1:\n\t" body "dec %0\n\tjnz 1b\n\tvzeroupper" : "+r"(n) : inputs : "cc", clobbers)
#define COMMA ,
#define ONES512(r) "vpternlogd $0xff, %%zmm" r ", %%zmm" r ", %%zmm" r "\n\t"

/* 16 x vpdpbusd zmm: zmm0..15 += u8(zmm30) . s8(zmm31) */
__attribute__((target("avx512f,avx512vnni"))) static void loop_vnni512(int64_t n)
{
    STEPS(n, ONES512("30") ONES512("31"), L16("vpdpbusd %%zmm31, %%zmm30, %%zmm", "\n\t"), , CLOB32);
}
/* 16 x vpdpbusd ymm, EVEX (ymm16+ sources force it) */
__attribute__((target("avx512f,avx512vl,avx512vnni"))) static void loop_vnni256(int64_t n)
{
    STEPS(n, ONES512("30") ONES512("31"), L16("vpdpbusd %%ymm31, %%ymm30, %%ymm", "\n\t"), , CLOB32);
}
/* 12 x {vex} vpdpbusd ymm: latency 5 x 2 per cycle < 12 chains */
__attribute__((target("avx2"))) static void loop_avxvnni(int64_t n)
{
    STEPS(n, "vpcmpeqd %%ymm14, %%ymm14, %%ymm14\n\tvpcmpeqd %%ymm15, %%ymm15, %%ymm15\n\t",
          L12("%{vex%} vpdpbusd %%ymm15, %%ymm14, %%ymm", "\n\t"), , CLOB16);
}
/* 12 chains of t = maddubs(u8 zmm29, s8 zmm30); t = maddwd(t, ones zmm31); acc += t:
 * acc zmm0..11, t zmm12..23 (only the add is loop-carried) */
#define MADD512(i, t) "vpmaddubsw %%zmm30, %%zmm29, %%zmm" t "\n\tvpmaddwd %%zmm31, %%zmm" t ", %%zmm" t \
    "\n\tvpaddd %%zmm" t ", %%zmm" i ", %%zmm" i "\n\t"
__attribute__((target("avx512f,avx512bw"))) static void loop_i8_512(int64_t n)
{
    STEPS(n, ONES512("29") ONES512("30") ONES512("31"),
          MADD512("0", "12") MADD512("1", "13") MADD512("2", "14") MADD512("3", "15") MADD512("4", "16")
          MADD512("5", "17") MADD512("6", "18") MADD512("7", "19") MADD512("8", "20") MADD512("9", "21")
          MADD512("10", "22") MADD512("11", "23"), , CLOB32);
}
/* the same in ymm with VEX (16 registers): acc ymm0..5, t ymm6..11, inputs ymm13..15 */
#define MADD256(i, t) "vpmaddubsw %%ymm14, %%ymm13, %%ymm" t "\n\tvpmaddwd %%ymm15, %%ymm" t ", %%ymm" t \
    "\n\tvpaddd %%ymm" t ", %%ymm" i ", %%ymm" i "\n\t"
__attribute__((target("avx2"))) static void loop_i8_256(int64_t n)
{
    STEPS(n, "vpcmpeqd %%ymm13, %%ymm13, %%ymm13\n\tvpcmpeqd %%ymm14, %%ymm14, %%ymm14\n\t"
             "vpcmpeqd %%ymm15, %%ymm15, %%ymm15\n\t",
          MADD256("0", "6") MADD256("1", "7") MADD256("2", "8") MADD256("3", "9") MADD256("4", "10")
          MADD256("5", "11"), , CLOB16);
}
/* acc += a * b with a = 1, b = 2^-20 (no subnormals, no overflow in any run length);
 * for vdpbf16ps, pairs of bf16 2^-7 */
static const float fma_ab[2] = { 1.0f, 9.5367431640625e-7f };
static const uint32_t bf16_ab = 0x3c003c00u;
__attribute__((target("avx512f"))) static void loop_fma512(int64_t n)
{
    STEPS(n, "vbroadcastss %1, %%zmm30\n\tvbroadcastss %2, %%zmm31\n\t" EACH16(ZMM_ZERO),
          L16("vfmadd231ps %%zmm31, %%zmm30, %%zmm", "\n\t"), "m"(fma_ab[0]) COMMA "m"(fma_ab[1]), CLOB32);
}
__attribute__((target("avx2,fma"))) static void loop_fma256(int64_t n)
{
    STEPS(n, "vbroadcastss %1, %%ymm14\n\tvbroadcastss %2, %%ymm15\n\t" EACH12(YMM_ZERO),
          L12("vfmadd231ps %%ymm15, %%ymm14, %%ymm", "\n\t"), "m"(fma_ab[0]) COMMA "m"(fma_ab[1]), CLOB16);
}
__attribute__((target("avx512f,avx512bf16"))) static void loop_bf16_512(int64_t n)
{
    STEPS(n, "vpbroadcastd %1, %%zmm30\n\tvmovdqa64 %%zmm30, %%zmm31\n\t" EACH16(ZMM_ZERO),
          L16("vdpbf16ps %%zmm31, %%zmm30, %%zmm", "\n\t"), "m"(bf16_ab), CLOB32);
}
/* 16 dependent register adds per step: 16 cycles (the loop counter runs beside them).
 * Not `add $1`: Golden Cove's renamer folds add-immediate chains (measured 14 "GHz"). */
static void loop_clock(int64_t n)
{
    uint64_t x = 0, one = 1;
    __asm__ volatile("1:\n\t" L16_SAME("add %2, %1\n\t") "dec %0\n\tjnz 1b" : "+r"(n), "+r"(x) : "r"(one) : "cc");
}

typedef struct kind_info {
    const char *name, *unit, *insn;
    double per_step;             /* MAC, FLOP or cycles per loop step */
    void (*fn)(int64_t n);
} kind_info;

static const kind_info kinds[ROOF_N_KIND] = {
    [ROOF_VNNI512] = { "int8 VNNI zmm", "GMAC/s", "vpdpbusd zmm x16", 16 * 64, loop_vnni512 },
    [ROOF_VNNI256] = { "int8 VNNI ymm (EVEX)", "GMAC/s", "vpdpbusd ymm x16", 16 * 32, loop_vnni256 },
    [ROOF_AVXVNNI] = { "int8 AVX-VNNI ymm", "GMAC/s", "{vex} vpdpbusd ymm x12", 12 * 32, loop_avxvnni },
    [ROOF_I8_512] = { "int8 maddubs zmm", "GMAC/s", "vpmaddubsw+vpmaddwd+vpaddd zmm x12", 12 * 64, loop_i8_512 },
    [ROOF_I8_256] = { "int8 maddubs ymm", "GMAC/s", "vpmaddubsw+vpmaddwd+vpaddd ymm x6", 6 * 32, loop_i8_256 },
    [ROOF_FMA512] = { "f32 FMA zmm", "GFLOP/s", "vfmadd231ps zmm x16", 16 * 32, loop_fma512 },
    [ROOF_FMA256] = { "f32 FMA ymm", "GFLOP/s", "vfmadd231ps ymm x12", 12 * 16, loop_fma256 },
    [ROOF_BF16_512] = { "bf16 dot zmm", "GFLOP/s", "vdpbf16ps zmm x16", 16 * 64, loop_bf16_512 },
    [ROOF_CLOCK] = { "clock (add chain)", "GHz", "add r64 x16, dependent", 16, loop_clock },
};

const char *roof_kind_name(int k) { return kinds[k].name; }
const char *roof_kind_unit(int k) { return kinds[k].unit; }
const char *roof_kind_insn(int k) { return kinds[k].insn; }

/* cpuid 7.1 EAX bit 4; kern/cpu.h has the rest (with the OS's register state checked) */
static int have_avxvnni(void)
{
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!cpu_get()->avx2 || __get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    if (a < 1) return 0;
    __cpuid_count(7, 1, a, b, c, d);
    return (a >> 4) & 1;
#else
    return 0;
#endif
}

static int kind_ok(int k)
{
    const cpu_features *c = cpu_get();
    switch (k) {
    case ROOF_VNNI512: return c->avx512f && c->avx512vnni;
    case ROOF_VNNI256: return c->avx512f && c->avx512vl && c->avx512vnni;
    case ROOF_AVXVNNI: return have_avxvnni();
    case ROOF_I8_512: return c->avx512f && c->avx512bw;
    case ROOF_I8_256: return c->avx2;
    case ROOF_FMA512: return c->avx512f;
    case ROOF_FMA256: return c->avx2 && c->fma;
    case ROOF_BF16_512: return c->avx512f && c->avx512bf16;
    case ROOF_CLOCK: return 1;
    }
    return 0;
}

/* ---- read loops: a step is one unit (64 KiB, or the whole buffer when smaller) read
 * where the thread's last step ended, so a round of any length streams through the
 * whole buffer as one pass would, and rounds stay short on big buffers too ---- */

enum { BW_UNIT = 64 << 10 };
typedef struct bw_ctx {
    char **buf;
    size_t n, unit;
    int isa;
    size_t pos[256];
    volatile unsigned long long sink[256];
} bw_ctx;

__attribute__((target("avx512f"))) static unsigned long long read512(const char *b, size_t n, int64_t passes)
{
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t r = 0; r < passes; r++)
        for (size_t i = 0; i < n; i += 256) {
            a0 = _mm512_add_epi64(a0, _mm512_load_si512(b + i));
            a1 = _mm512_add_epi64(a1, _mm512_load_si512(b + i + 64));
            a2 = _mm512_add_epi64(a2, _mm512_load_si512(b + i + 128));
            a3 = _mm512_add_epi64(a3, _mm512_load_si512(b + i + 192));
        }
    return _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
}
__attribute__((target("avx2"))) static unsigned long long read256(const char *b, size_t n, int64_t passes)
{
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t r = 0; r < passes; r++)
        for (size_t i = 0; i < n; i += 128) {
            a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(b + i)));
            a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(b + i + 32)));
            a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(b + i + 64)));
            a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(b + i + 96)));
        }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    unsigned long long out[4];
    _mm256_storeu_si256((__m256i *)out, s);
    return out[0] + out[1] + out[2] + out[3];
}
static unsigned long long read64(const char *b, size_t n, int64_t passes)
{
    unsigned long long s = 0;
    for (int64_t r = 0; r < passes; r++)
        for (size_t i = 0; i < n; i += 64) s += *(const volatile unsigned long long *)(b + i);
    return s;
}

/* ---- the team ---- */

typedef struct team {
    int n;
    const int *cpus;
    pthread_mutex_t gate_mu;         /* the gate: nobody starts before every thread exists */
    pthread_cond_t gate_cv;
    int go;
    _Atomic unsigned arrived, gen;   /* the round barrier: spins (the rounds are ~2 ms) */
    int quit;
    int64_t iters;
    void (*loop)(int64_t n);     /* a compute kind, or NULL: read bw */
    bw_ctx *bw;
    double t0, seconds, begin, best;   /* best: steps per second per thread */
    int rounds;
} team;

typedef struct member { team *t; int ith; } member;

/* Every thread of the team waits here for the others. Spinning, not a futex: a futex
 * wake-up (tens of microseconds) would be counted in a 2 ms round; after ~1,000 pauses
 * the waiter yields, so a descheduled partner gets its core back. */
static void team_barrier(team *t)
{
    const unsigned gen = atomic_load(&t->gen);
    if (atomic_fetch_add(&t->arrived, 1) == (unsigned)t->n - 1) {
        atomic_store(&t->arrived, 0);
        atomic_fetch_add(&t->gen, 1);
        return;
    }
    for (int spins = 0; atomic_load(&t->gen) == gen;)
        if (++spins < 1000) __builtin_ia32_pause();
        else { sched_yield(); spins = 0; }
}

static void work(team *t, int ith, int64_t iters)
{
    if (t->loop) {
        t->loop(iters);
        return;
    }
    bw_ctx *b = t->bw;
    unsigned long long s = 0;
    size_t pos = b->pos[ith];
    for (int64_t i = 0; i < iters; i++) {
        const char *p = b->buf[ith] + pos;
        s += b->isa == 512 ? read512(p, b->unit, 1) : b->isa == 256 ? read256(p, b->unit, 1) : read64(p, b->unit, 1);
        pos = pos + b->unit < b->n ? pos + b->unit : 0;
    }
    b->pos[ith] = pos;
    b->sink[ith] += s;   /* only keeps the loads */
}

/* thread 0, between rounds: keep the best, size the next round to ~target seconds */
static void round_end(team *t)
{
    const double dt = now() - t->t0, target = t->seconds / 5 < 0.002 ? t->seconds / 5 : 0.002;
    const double rate = (double)t->iters / (dt > 1e-9 ? dt : 1e-9);
    if (rate > t->best) t->best = rate;
    t->rounds++;
    if (t->rounds >= 3 && now() - t->begin >= t->seconds) {
        t->quit = 1;
        return;
    }
    double next = rate * (target > 5e-4 ? target : 5e-4);
    t->iters = next < 1 ? 1 : next > 4e12 ? (int64_t)4e12 : (int64_t)next;
}

static void *member_main(void *arg)
{
    member *m = arg;
    team *t = m->t;
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(t->cpus[m->ith], &set);
    (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set);   /* best effort */
#endif
    pthread_mutex_lock(&t->gate_mu);
    while (!t->go) pthread_cond_wait(&t->gate_cv, &t->gate_mu);
    pthread_mutex_unlock(&t->gate_mu);
    if (t->quit) return NULL;
    for (;;) {
        team_barrier(t);
        if (t->quit) break;
        if (m->ith == 0) t->t0 = now();
        work(t, m->ith, t->iters);
        team_barrier(t);
        if (m->ith == 0) round_end(t);
    }
    return NULL;
}

/* Best steps per second per thread of `loop` (or a read of bw) on n pinned threads;
 * -1 when threads could not be made. */
static double team_run(int n, const int *cpus, void (*loop)(int64_t), bw_ctx *bw, double seconds)
{
    team t = { .n = n, .cpus = cpus, .loop = loop, .bw = bw, .iters = 1, .seconds = seconds,
               .gate_mu = PTHREAD_MUTEX_INITIALIZER, .gate_cv = PTHREAD_COND_INITIALIZER };
    pthread_t th[256];
    member mem[256];
    if (n < 1 || n > 256) return -1;
    t.begin = now();
    int made = 0;
    for (; made < n; made++) {
        mem[made] = (member){ &t, made };
        if (pthread_create(&th[made], NULL, member_main, &mem[made])) break;
    }
    pthread_mutex_lock(&t.gate_mu);
    t.go = 1;
    t.quit = made < n;   /* the made ones leave at the gate */
    pthread_cond_broadcast(&t.gate_cv);
    pthread_mutex_unlock(&t.gate_mu);
    for (int i = 0; i < made; i++) pthread_join(th[i], NULL);
    return made < n ? -1 : t.best;
}

/* ---- measuring, saving, loading ---- */

static void cpu_brand(char *out, size_t cap)
{
    snprintf(out, cap, "unknown");
#if defined(__x86_64__)
    unsigned r[12];
    if (__get_cpuid_max(0x80000000, NULL) < 0x80000004) return;
    for (unsigned i = 0; i < 3; i++) __cpuid(0x80000002 + i, r[4 * i], r[4 * i + 1], r[4 * i + 2], r[4 * i + 3]);
    char s[49];
    memcpy(s, r, 48);
    s[48] = 0;
    const char *b = s;
    while (*b == ' ') b++;
    snprintf(out, cap, "%s", b);
    for (size_t n = strlen(out); n > 0 && out[n - 1] == ' '; n--) out[n - 1] = 0;
#endif
}

/* the CPUs of the affinity mask, at most cap; their count */
static int cpu_list(int *cpus, int cap)
{
    int n = 0;
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        for (int c = 0; c < CPU_SETSIZE && n < cap; c++)
            if (CPU_ISSET(c, &set)) cpus[n++] = c;
#endif
    if (n == 0) cpus[n++] = 0;
    return n;
}

static void fill_stamp(roof_peaks *p, double seconds)
{
    int cpus[256];
    memset(p, 0, sizeof *p);
    cpu_brand(p->cpu, sizeof p->cpu);
    p->n_cpu = cpu_list(cpus, 256);
    p->seconds = seconds;
    p->loadavg = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &p->loadavg) != 1) p->loadavg = -1;
        fclose(f);
    }
    const time_t t = time(NULL);
    struct tm tm;
    strftime(p->date, sizeof p->date, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
}

int roof_measure(roof_peaks *p, double seconds, int what)
{
    int cpus[256];
    fill_stamp(p, seconds);
    (void)cpu_list(cpus, 256);
    snprintf(p->source, sizeof p->source, "measured now, %.2f s per figure", seconds);
    for (int k = 0; k < ROOF_N_KIND; k++) {
        if (!(what & ROOF_OPS) || !kind_ok(k)) continue;
        for (int all = 0; all < 2; all++) {
            const int n = all ? p->n_cpu : 1;
            const double steps = team_run(n, cpus, kinds[k].fn, NULL, seconds);
            if (steps < 0) return -1;
            p->op[k][all] = steps * kinds[k].per_step * (k == ROOF_CLOCK ? 1 : n) / 1e9;
        }
    }
    if (!(what & ROOF_BW)) return 0;
    const cpu_features *c = cpu_get();
    bw_ctx bw = { .isa = c->avx512f ? 512 : c->avx2 ? 256 : 64 };
    bw.buf = calloc((size_t)p->n_cpu, sizeof(char *));
    if (!bw.buf) return -1;
    int rc = 0;
    for (int s = 0; s < ROOF_N_BW && rc == 0; s++) {
        bw.n = roof_bw_bytes[s];
        bw.unit = bw.n < BW_UNIT ? bw.n : BW_UNIT;
        for (int i = 0; i < p->n_cpu; i++) {
            bw.buf[i] = aligned_alloc(64, bw.n);
            if (!bw.buf[i]) { rc = -1; break; }
            memset(bw.buf[i], i + 1, bw.n);
        }
        for (int all = 0; all < 2 && rc == 0; all++) {
            const int n = all ? p->n_cpu : 1;
            memset(bw.pos, 0, sizeof bw.pos);
            const double units = team_run(n, cpus, NULL, &bw, seconds);
            if (units < 0) rc = -1;
            p->bw[s][all] = units * (double)bw.unit * n / 1e9;
        }
        for (int i = 0; i < p->n_cpu; i++) { free(bw.buf[i]); bw.buf[i] = NULL; }
    }
    free(bw.buf);
    return rc;
}

static const char *kind_key[ROOF_N_KIND] = {
    [ROOF_VNNI512] = "vnni512", [ROOF_VNNI256] = "vnni256", [ROOF_AVXVNNI] = "avxvnni",
    [ROOF_I8_512] = "i8_512",   [ROOF_I8_256] = "i8_256",   [ROOF_FMA512] = "fma512",
    [ROOF_FMA256] = "fma256",   [ROOF_BF16_512] = "bf16_512", [ROOF_CLOCK] = "clock",
};

int roof_save(const roof_peaks *p, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "# dev/kernels/build/peak: this machine's peaks (roof.h). One figure a line:\n"
               "# op KIND <1 thread> <all threads>; bw BYTES_PER_THREAD <1 thread GB/s> <all, summed>\n");
    fprintf(f, "cpu %s\nn_cpu %d\nseconds %g\nloadavg %.2f\ndate %s\n", p->cpu, p->n_cpu, p->seconds, p->loadavg,
            p->date);
    for (int k = 0; k < ROOF_N_KIND; k++) fprintf(f, "op %s %.6g %.6g\n", kind_key[k], p->op[k][0], p->op[k][1]);
    for (int s = 0; s < ROOF_N_BW; s++) fprintf(f, "bw %zu %.6g %.6g\n", roof_bw_bytes[s], p->bw[s][0], p->bw[s][1]);
    return fclose(f) ? -1 : 0;
}

int roof_load(roof_peaks *p, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    roof_peaks cur;
    fill_stamp(&cur, 0);
    memset(p, 0, sizeof *p);
    char line[256];
    int seen = 0;   /* bits: cpu, n_cpu, every op, every bw */
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char key[32];
        double a, b;
        size_t bytes;
        if (!strncmp(line, "cpu ", 4)) { snprintf(p->cpu, sizeof p->cpu, "%.63s", line + 4); seen |= 1; }
        else if (sscanf(line, "n_cpu %d", &p->n_cpu) == 1) seen |= 2;
        else if (sscanf(line, "seconds %lf", &p->seconds) == 1) {}
        else if (sscanf(line, "loadavg %lf", &p->loadavg) == 1) {}
        else if (sscanf(line, "date %31s", p->date) == 1) {}
        else if (sscanf(line, "op %31s %lf %lf", key, &a, &b) == 3) {
            for (int k = 0; k < ROOF_N_KIND; k++)
                if (!strcmp(key, kind_key[k])) { p->op[k][0] = a; p->op[k][1] = b; seen |= 4 << k; }
        } else if (sscanf(line, "bw %zu %lf %lf", &bytes, &a, &b) == 3) {
            for (int s = 0; s < ROOF_N_BW; s++)
                if (bytes == roof_bw_bytes[s]) { p->bw[s][0] = a; p->bw[s][1] = b; seen |= 4 << (ROOF_N_KIND + s); }
        }
    }
    fclose(f);
    const int all = (4 << (ROOF_N_KIND + ROOF_N_BW)) - 1;
    if (seen != all || strcmp(p->cpu, cur.cpu) || p->n_cpu != cur.n_cpu) return -1;
    snprintf(p->source, sizeof p->source, "%.100s (%s, load average %.2f, %.2f s per figure)", path, p->date,
             p->loadavg, p->seconds);
    return 0;
}

char *roof_path(char *buf, size_t cap, const char *name)
{
    char exe[4096];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return NULL;
    *slash = 0;
    const int w = snprintf(buf, cap, "%s/%s", exe, name);
    return w > 0 && (size_t)w < cap ? buf : NULL;
}

const roof_peaks *roof_get(void)
{
    static roof_peaks p;
    static int done;
    if (done) return &p;
    done = 1;
    char path[4200];
    if (roof_path(path, sizeof path, "peak.txt") && roof_load(&p, path) == 0) return &p;
    if (roof_measure(&p, 0.05, ROOF_OPS | ROOF_BW) != 0) fprintf(stderr, "roof: measuring failed; fractions are partial\n");
    snprintf(p.source, sizeof p.source, "measured in-process, 0.05 s per figure (no peak.txt for this CPU "
             "beside the binary: run build/peak)");
    return &p;
}

double roof_int8(const roof_peaks *p, int isa, int all)
{
    if (isa == 512) return p->op[ROOF_VNNI512][all] > 0 ? p->op[ROOF_VNNI512][all] : p->op[ROOF_I8_512][all];
    return p->op[ROOF_I8_256][all];
}

double roof_fma(const roof_peaks *p, int isa, int all)
{
    return p->op[isa == 512 ? ROOF_FMA512 : ROOF_FMA256][all];
}

double roof_bw_at(const roof_peaks *p, size_t bytes, int all)
{
    int s = 0;
    while (s + 1 < ROOF_N_BW && roof_bw_bytes[s + 1] <= bytes) s++;
    return p->bw[s][all];
}

const char *roof_pct(char *buf, double rate, double peak)
{
    if (peak > 0) snprintf(buf, 8, "%.0f%%", 100 * rate / peak);
    else snprintf(buf, 8, "-");
    return buf;
}

void roof_print(FILE *f, const roof_peaks *p)
{
    const double ghz = p->op[ROOF_CLOCK][0];
    fprintf(f, "CPU: %s, %d CPUs in the affinity mask; %s\n", p->cpu, p->n_cpu, p->source);
    fprintf(f, "%-21s %-35s %9s %11s %-7s %7s %15s\n", "peak", "one step", "1 thread", "all threads", "unit",
            "scaling", "1 thread/cycle");
    for (int k = 0; k < ROOF_N_KIND; k++) {
        if (p->op[k][0] <= 0) {
            fprintf(f, "%-21s %-35s %9s %11s (not on this CPU or not measured)\n", kinds[k].name, kinds[k].insn, "-", "-");
            continue;
        }
        char pc[32] = "";
        if (k != ROOF_CLOCK && ghz > 0)
            snprintf(pc, sizeof pc, "%6.1f %s", p->op[k][0] / ghz, kinds[k].unit[1] == 'M' ? "MAC" : "FLOP");
        fprintf(f, "%-21s %-35s %9.1f %11.1f %-7s %6.2fx %15s\n", kinds[k].name, kinds[k].insn, p->op[k][0],
                p->op[k][1], kinds[k].unit, p->op[k][1] / p->op[k][0], pc);
    }
    for (int s = 0; s < ROOF_N_BW; s++) {
        if (p->bw[s][0] <= 0) continue;
        const size_t b = roof_bw_bytes[s];
        char sz[48];
        if (b < (1u << 20)) snprintf(sz, sizeof sz, "%zu KiB per thread", b >> 10);
        else snprintf(sz, sizeof sz, "%zu MiB per thread", b >> 20);
        fprintf(f, "%-21s %-35s %9.1f %11.1f %-7s %6.2fx\n", "read", sz, p->bw[s][0], p->bw[s][1], "GB/s",
                p->bw[s][1] / p->bw[s][0]);
    }
}
