/* quant.c - scalar reference kernels for the ggml block formats (see quant.h).
 * Room: kern. May touch: libc, kern/cpu and kern/matmul's kernel sets (for quant_get_fast)
 * only.
 *
 * These functions are the spec: written for clarity, in the float evaluation order of
 * ggml's reference code where bit-exact results matter (dequantization and the
 * Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q8_1/Q8_K quantizers, which reproduce ggml and the `gguf`
 * Python package exactly; tests/kern/test_quant.c checks against golden files).
 * The K-quant weight quantizers (Q2_K..Q6_K) are simple min/max encoders, not ggml's
 * iterative search: valid blocks, somewhat larger error. Nothing here allocates.
 *
 * Invariant: the table returned by quant_get() is const and never changes; the fast
 * table (quant_get_fast) is a copy made once, under pthread_once. */
#include "kern/quant.h"
#include "kern/cpu.h"
#include "kern/matmul.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

/* ---- fp16 / bf16 ---------------------------------------------------------------------- */
static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float fp16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) {                             /* zero or subnormal: mant * 2^-24, exact */
        float v = (float)mant * 0x1p-24f;
        return bits_f32(f32_bits(v) | sign);
    }
    if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));   /* inf / NaN */
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t f32_to_fp16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)                        /* NaN: quiet, top payload bits kept */
        return (uint16_t)(sign | 0x7e00 | ((a >> 13) & 0x3ff));
    if (a >= 0x477ff000u) return sign | 0x7c00; /* >= 65520 rounds to inf (and inf) */
    if (a >= 0x38800000u) {                     /* normal half: rebias, round on 13 bits */
        uint32_t r = a - (112u << 23);
        r += 0xfffu + ((r >> 13) & 1);
        return (uint16_t)(sign | (r >> 13));
    }
    if (a <= 0x33000000u) return sign;          /* <= 2^-25: rounds to zero (tie to even) */
    /* subnormal half: q = m * 2^(e-126) in units of 2^-24, rounded to nearest even */
    uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
    uint32_t s = 126 - e;                       /* 14..24 here */
    uint32_t q = m >> s, rem = m & ((1u << s) - 1), half = 1u << (s - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return (uint16_t)(sign | q);                /* q == 0x400 is the smallest normal: fine */
}

float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64);   /* quiet NaN */
    return (uint16_t)(((uint64_t)u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

/* ---- small helpers ---------------------------------------------------------------------- */
#define H2F(h) fp16_to_f32(h)

/* Round to nearest, ties to even, for |v| < 2^22 (ggml's nearest_int). */
static inline int nearest_int(float v)
{
    float t = v + 12582912.f;
    int32_t i;
    memcpy(&i, &t, 4);
    return (i & 0x007fffff) - 0x00400000;
}

/* Clamp to [lo, hi] before an integer conversion; NaN maps to lo (no UB on hostile input). */
static inline float clampf(float v, float lo, float hi)
{
    return v >= lo ? (v <= hi ? v : hi) : lo;
}

void quant_get_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* 6-bit signed scale i (0..15) of a Q3_K block, bias removed. */
static inline int q3k_scale(const uint8_t *s, int i)
{
    int lo = (s[i % 8] >> (4 * (i / 8))) & 0xF;
    int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* ---- F32 / F16 / BF16 (vec_dot_type F32; accumulate in double like ggml's scalar path) --- */
static void deq_f32(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }
static void quant_f32(const float *src, void *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }
static float dot_f32(const void *w, const void *x, int64_t n)
{
    const float *a = w, *b = x;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return (float)s;
}

static void deq_f16(const void *src, float *dst, int64_t n)
{
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = fp16_to_f32(h[i]);
}
static void quant_f16(const float *src, void *dst, int64_t n)
{
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = f32_to_fp16(src[i]);
}
static float dot_f16(const void *w, const void *x, int64_t n)
{
    const uint16_t *a = w;
    const float *b = x;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)fp16_to_f32(a[i]) * b[i];
    return (float)s;
}

static void deq_bf16(const void *src, float *dst, int64_t n)
{
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(h[i]);
}
static void quant_bf16(const float *src, void *dst, int64_t n)
{
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = f32_to_bf16(src[i]);
}
static float dot_bf16(const void *w, const void *x, int64_t n)
{
    const uint16_t *a = w;
    const float *b = x;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)bf16_to_f32(a[i]) * b[i];
    return (float)s;
}

/* ---- Q4_0 ------------------------------------------------------------------------------- */
static void deq_q4_0(const void *src, float *dst, int64_t n)
{
    const blk_q4_0 *b = src;
    for (int64_t i = 0; i < n / QK4_0; i++, dst += QK4_0) {   /* b: [n/32] blocks */
        const float d = H2F(b[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            dst[j] = (float)((b[i].qs[j] & 0xF) - 8) * d;
            dst[j + QK4_0 / 2] = (float)((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

/* ggml: the signed value of largest magnitude maps to -8; q = min(15, (int)(x/d + 8.5)). */
static void quant_q4_0(const float *x, void *dst, int64_t n)
{
    blk_q4_0 *y = dst;
    for (int64_t i = 0; i < n / QK4_0; i++, x += QK4_0) {
        float amax = 0, max = 0;
        for (int j = 0; j < QK4_0; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / -8, id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            int q0 = (int)clampf(x[j] * id + 8.5f, 0, 15);
            int q1 = (int)clampf(x[j + QK4_0 / 2] * id + 8.5f, 0, 15);
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* sum over blocks of d_w * d_x * sum_j (q_w - 8) * q_x */
static float dot_q4_0_q8_0(const void *w, const void *xv, int64_t n)
{
    const blk_q4_0 *a = w;
    const blk_q8_0 *b = xv;
    float s = 0;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int sumi = 0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            sumi += ((a[i].qs[j] & 0xF) - 8) * b[i].qs[j];
            sumi += ((a[i].qs[j] >> 4) - 8) * b[i].qs[j + QK4_0 / 2];
        }
        s += (float)sumi * (H2F(a[i].d) * H2F(b[i].d));
    }
    return s;
}

/* ---- Q4_1 ------------------------------------------------------------------------------- */
static void deq_q4_1(const void *src, float *dst, int64_t n)
{
    const blk_q4_1 *b = src;
    for (int64_t i = 0; i < n / QK4_1; i++, dst += QK4_1) {
        const float d = H2F(b[i].d), m = H2F(b[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            dst[j] = (float)(b[i].qs[j] & 0xF) * d + m;
            dst[j + QK4_1 / 2] = (float)(b[i].qs[j] >> 4) * d + m;
        }
    }
}

/* ggml: d = (max - min) / 15, q = min(15, (int)((x - min) / d + 0.5)), m = min. */
static void quant_q4_1(const float *x, void *dst, int64_t n)
{
    blk_q4_1 *y = dst;
    for (int64_t i = 0; i < n / QK4_1; i++, x += QK4_1) {
        float min = INFINITY, max = -INFINITY;
        for (int j = 0; j < QK4_1; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 15, id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        y[i].m = f32_to_fp16(min);
        for (int j = 0; j < QK4_1 / 2; j++) {
            int q0 = (int)clampf((x[j] - min) * id + 0.5f, 0, 15);
            int q1 = (int)clampf((x[j + QK4_1 / 2] - min) * id + 0.5f, 0, 15);
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* sum over blocks of d_w * d_x * sum_j q_w * q_x + m_w * s_x */
static float dot_q4_1_q8_1(const void *w, const void *xv, int64_t n)
{
    const blk_q4_1 *a = w;
    const blk_q8_1 *b = xv;
    float s = 0;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        int sumi = 0;
        for (int j = 0; j < QK4_1 / 2; j++) {
            sumi += (a[i].qs[j] & 0xF) * b[i].qs[j];
            sumi += (a[i].qs[j] >> 4) * b[i].qs[j + QK4_1 / 2];
        }
        s += (H2F(a[i].d) * H2F(b[i].d)) * (float)sumi + H2F(a[i].m) * H2F(b[i].s);
    }
    return s;
}

/* ---- Q5_0 / Q5_1 ------------------------------------------------------------------------ */
static inline uint32_t load_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void store_u32le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

/* 5-bit value of element j (0..31) of a Q5 block */
static inline int q5_get(const uint8_t *qs, uint32_t qh, int j)
{
    int lo = j < 16 ? (qs[j] & 0xF) : (qs[j - 16] >> 4);
    return lo | (int)(((qh >> j) & 1) << 4);
}

static void deq_q5_0(const void *src, float *dst, int64_t n)
{
    const blk_q5_0 *b = src;
    for (int64_t i = 0; i < n / QK5_0; i++, dst += QK5_0) {
        const float d = H2F(b[i].d);
        const uint32_t qh = load_u32le(b[i].qh);
        for (int j = 0; j < QK5_0; j++) dst[j] = (float)(q5_get(b[i].qs, qh, j) - 16) * d;
    }
}

static void quant_q5_0(const float *x, void *dst, int64_t n)
{
    blk_q5_0 *y = dst;
    for (int64_t i = 0; i < n / QK5_0; i++, x += QK5_0) {
        float amax = 0, max = 0;
        for (int j = 0; j < QK5_0; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / -16, id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_0 / 2; j++) {
            int q0 = (int)clampf(x[j] * id + 16.5f, 0, 31);
            int q1 = (int)clampf(x[j + QK5_0 / 2] * id + 16.5f, 0, 31);
            y[i].qs[j] = (uint8_t)((q0 & 0xF) | ((q1 & 0xF) << 4));
            qh |= (uint32_t)(q0 >> 4) << j;
            qh |= (uint32_t)(q1 >> 4) << (j + QK5_0 / 2);
        }
        store_u32le(y[i].qh, qh);
    }
}

static float dot_q5_0_q8_0(const void *w, const void *xv, int64_t n)
{
    const blk_q5_0 *a = w;
    const blk_q8_0 *b = xv;
    float s = 0;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const uint32_t qh = load_u32le(a[i].qh);
        int sumi = 0;
        for (int j = 0; j < QK5_0; j++) sumi += (q5_get(a[i].qs, qh, j) - 16) * b[i].qs[j];
        s += (float)sumi * (H2F(a[i].d) * H2F(b[i].d));
    }
    return s;
}

static void deq_q5_1(const void *src, float *dst, int64_t n)
{
    const blk_q5_1 *b = src;
    for (int64_t i = 0; i < n / QK5_1; i++, dst += QK5_1) {
        const float d = H2F(b[i].d), m = H2F(b[i].m);
        const uint32_t qh = load_u32le(b[i].qh);
        for (int j = 0; j < QK5_1; j++) dst[j] = (float)q5_get(b[i].qs, qh, j) * d + m;
    }
}

static void quant_q5_1(const float *x, void *dst, int64_t n)
{
    blk_q5_1 *y = dst;
    for (int64_t i = 0; i < n / QK5_1; i++, x += QK5_1) {
        float min = INFINITY, max = -INFINITY;
        for (int j = 0; j < QK5_1; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 31, id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        y[i].m = f32_to_fp16(min);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_1 / 2; j++) {
            int q0 = (int)clampf((x[j] - min) * id + 0.5f, 0, 31);
            int q1 = (int)clampf((x[j + QK5_1 / 2] - min) * id + 0.5f, 0, 31);
            y[i].qs[j] = (uint8_t)((q0 & 0xF) | ((q1 & 0xF) << 4));
            qh |= (uint32_t)(q0 >> 4) << j;
            qh |= (uint32_t)(q1 >> 4) << (j + QK5_1 / 2);
        }
        store_u32le(y[i].qh, qh);
    }
}

static float dot_q5_1_q8_1(const void *w, const void *xv, int64_t n)
{
    const blk_q5_1 *a = w;
    const blk_q8_1 *b = xv;
    float s = 0;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        const uint32_t qh = load_u32le(a[i].qh);
        int sumi = 0;
        for (int j = 0; j < QK5_1; j++) sumi += q5_get(a[i].qs, qh, j) * b[i].qs[j];
        s += (H2F(a[i].d) * H2F(b[i].d)) * (float)sumi + H2F(a[i].m) * H2F(b[i].s);
    }
    return s;
}

/* ---- Q8_0 / Q8_1 (the activation formats) -------------------------------------------------- */
static void deq_q8_0(const void *src, float *dst, int64_t n)
{
    const blk_q8_0 *b = src;
    for (int64_t i = 0; i < n / QK8_0; i++, dst += QK8_0) {
        const float d = H2F(b[i].d);
        for (int j = 0; j < QK8_0; j++) dst[j] = (float)b[i].qs[j] * d;
    }
}

/* ggml: d = amax / 127, q = roundf(x * (1/d)) (ties away from zero); |q| <= 127. */
static void quant_q8_0(const float *x, void *dst, int64_t n)
{
    blk_q8_0 *y = dst;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        float amax = 0;
        for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127, id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        for (int j = 0; j < QK8_0; j++) y[i].qs[j] = (int8_t)roundf(clampf(x[j] * id, -127, 127));
    }
}

static float dot_q8_0_q8_0(const void *w, const void *xv, int64_t n)
{
    const blk_q8_0 *a = w, *b = xv;
    float s = 0;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int sumi = 0;
        for (int j = 0; j < QK8_0; j++) sumi += a[i].qs[j] * b[i].qs[j];
        s += (float)sumi * (H2F(a[i].d) * H2F(b[i].d));
    }
    return s;
}

static void deq_q8_1(const void *src, float *dst, int64_t n)
{
    const blk_q8_1 *b = src;
    for (int64_t i = 0; i < n / QK8_1; i++, dst += QK8_1) {
        const float d = H2F(b[i].d);
        for (int j = 0; j < QK8_1; j++) dst[j] = (float)b[i].qs[j] * d;
    }
}

/* As Q8_0, plus s = fp16(d * sum(q)) (the integer sum, then one float product). */
static void quant_q8_1(const float *x, void *dst, int64_t n)
{
    blk_q8_1 *y = dst;
    for (int64_t i = 0; i < n / QK8_1; i++, x += QK8_1) {
        float amax = 0;
        for (int j = 0; j < QK8_1; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127, id = d != 0 ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < QK8_1; j++) {
            y[i].qs[j] = (int8_t)roundf(clampf(x[j] * id, -127, 127));
            sum += y[i].qs[j];
        }
        y[i].d = f32_to_fp16(d);
        y[i].s = f32_to_fp16((float)sum * d);
    }
}

static float dot_q8_1_q8_1(const void *w, const void *xv, int64_t n)
{
    const blk_q8_1 *a = w, *b = xv;
    float s = 0;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        int sumi = 0;
        for (int j = 0; j < QK8_1; j++) sumi += a[i].qs[j] * b[i].qs[j];
        s += (float)sumi * (H2F(a[i].d) * H2F(b[i].d));
    }
    return s;
}

/* ---- Q8_K -------------------------------------------------------------------------------- */
static void deq_q8_K(const void *src, float *dst, int64_t n)
{
    const blk_q8_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K)
        for (int j = 0; j < QK_K; j++) dst[j] = b[i].d * (float)b[i].qs[j];
}

/* ggml: the signed value of largest magnitude maps to -127 (iscale = -127/max),
 * q = min(127, nearest_int(iscale * x)), d = 1/iscale; bsums of 16. */
static void quant_q8_K(const float *x, void *dst, int64_t n)
{
    blk_q8_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float amax = 0, max = 0;
        for (int j = 0; j < QK_K; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        memset(&y[i], 0, sizeof y[i]);
        if (amax == 0 || !(amax <= 3.4e38f)) continue;          /* zero (or non-finite) block */
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++) {
            int v = nearest_int(clampf(iscale * x[j], -128, 128));
            y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += y[i].qs[16 * j + l];
            y[i].bsums[j] = (int16_t)s;
        }
        y[i].d = 1 / iscale;
    }
}

static float dot_q8_K_q8_K(const void *w, const void *xv, int64_t n)
{
    const blk_q8_K *a = w, *b = xv;
    float s = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int sumi = 0;
        for (int j = 0; j < QK_K; j++) sumi += a[i].qs[j] * b[i].qs[j];
        s += (a[i].d * b[i].d) * (float)sumi;
    }
    return s;
}

/* ---- K-quant weight quantizers: per sub-block min/max, 4/6/8-bit scales ---------------------
 * Shared shape: sub-block scale s_j (and min m_j >= 0) in float, then super-block scales
 * d = max s_j / smax, dmin = max m_j / smax, integer scales rounded, and q recomputed from
 * the rounded scales so that the stored block decodes as close to x as it can. */
static void quant_q2_K(const float *x, void *dst, int64_t n)
{
    blk_q2_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {     /* x: [256], 16 sub-blocks of 16 */
        float sc[16], mn[16], max_sc = 0, max_mn = 0;
        for (int j = 0; j < 16; j++) {
            float lo = 0, hi = 0;
            for (int l = 0; l < 16; l++) { lo = fminf(lo, x[16 * j + l]); hi = fmaxf(hi, x[16 * j + l]); }
            sc[j] = (hi - lo) / 3; mn[j] = -lo;
            max_sc = fmaxf(max_sc, sc[j]); max_mn = fmaxf(max_mn, mn[j]);
        }
        memset(&y[i], 0, sizeof y[i]);
        y[i].d = f32_to_fp16(max_sc / 15);
        y[i].dmin = f32_to_fp16(max_mn / 15);
        const float d = H2F(y[i].d), dmin = H2F(y[i].dmin);
        for (int j = 0; j < 16; j++) {
            int ls = d > 0 ? nearest_int(clampf(sc[j] / d, 0, 15)) : 0;
            int lm = dmin > 0 ? nearest_int(clampf(mn[j] / dmin, 0, 15)) : 0;
            y[i].scales[j] = (uint8_t)(ls | (lm << 4));
            const float dl = d * (float)ls, ml = dmin * (float)lm;
            for (int l = 0; l < 16; l++) {
                int e = 16 * j + l;            /* e = h*128 + k*32 + l' */
                int q = dl > 0 ? nearest_int(clampf((x[e] + ml) / dl, 0, 3)) : 0;
                y[i].qs[(e / 128) * 32 + e % 32] |= (uint8_t)(q << (2 * ((e % 128) / 32)));
            }
        }
    }
}

static void quant_q3_K(const float *x, void *dst, int64_t n)
{
    blk_q3_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float sc[16], max_sc = 0;
        for (int j = 0; j < 16; j++) {
            float amax = 0;
            for (int l = 0; l < 16; l++) amax = fmaxf(amax, fabsf(x[16 * j + l]));
            sc[j] = amax / 3;                  /* q in [-3, 3] (the -4 level goes unused) */
            max_sc = fmaxf(max_sc, sc[j]);
        }
        memset(&y[i], 0, sizeof y[i]);
        y[i].d = f32_to_fp16(max_sc / 31);
        const float d = H2F(y[i].d);
        for (int j = 0; j < 16; j++) {
            int ls = d > 0 ? nearest_int(clampf(sc[j] / d, 0, 31)) : 0;
            int b = ls + 32;                   /* 6-bit biased */
            y[i].scales[j % 8] |= (uint8_t)((b & 0xF) << (4 * (j / 8)));
            y[i].scales[8 + j % 4] |= (uint8_t)((b >> 4) << (2 * (j / 4)));
            const float dl = d * (float)ls;
            for (int l = 0; l < 16; l++) {
                int e = 16 * j + l;
                int q = dl > 0 ? nearest_int(clampf(x[e] / dl, -4, 3)) : 0;
                int u = q + 4;                 /* 0..7: low 2 bits in qs, bit 2 in hmask */
                y[i].qs[(e / 128) * 32 + e % 32] |= (uint8_t)((u & 3) << (2 * ((e % 128) / 32)));
                if (u & 4) y[i].hmask[e % 32] |= (uint8_t)(1 << (e / 32));
            }
        }
    }
}

/* Q4_K and Q5_K share scales; nmax = 15 or 31. qh may be NULL (Q4_K). */
static void quant_k4_common(const float *x, uint16_t *dd, uint16_t *ddmin, uint8_t *scales,
                            uint8_t *qs, uint8_t *qh, int nmax)
{
    float sc[8], mn[8], max_sc = 0, max_mn = 0;
    for (int j = 0; j < 8; j++) {            /* x: [256], 8 sub-blocks of 32 */
        float lo = 0, hi = 0;
        for (int l = 0; l < 32; l++) { lo = fminf(lo, x[32 * j + l]); hi = fmaxf(hi, x[32 * j + l]); }
        sc[j] = (hi - lo) / (float)nmax; mn[j] = -lo;
        max_sc = fmaxf(max_sc, sc[j]); max_mn = fmaxf(max_mn, mn[j]);
    }
    *dd = f32_to_fp16(max_sc / 63);
    *ddmin = f32_to_fp16(max_mn / 63);
    const float d = H2F(*dd), dmin = H2F(*ddmin);
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        ls[j] = (uint8_t)(d > 0 ? nearest_int(clampf(sc[j] / d, 0, 63)) : 0);
        lm[j] = (uint8_t)(dmin > 0 ? nearest_int(clampf(mn[j] / dmin, 0, 63)) : 0);
    }
    memset(scales, 0, K_SCALE_SIZE);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            scales[j] = ls[j];
            scales[j + 4] = lm[j];
        } else {
            scales[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            scales[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            scales[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
    memset(qs, 0, QK_K / 2);
    if (qh) memset(qh, 0, QK_K / 8);
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        quant_get_scale_min_k4(j, scales, &s, &m);
        const float dl = d * (float)s, ml = dmin * (float)m;
        for (int l = 0; l < 32; l++) {
            int e = 32 * j + l;
            int q = dl > 0 ? nearest_int(clampf((x[e] + ml) / dl, 0, (float)nmax)) : 0;
            qs[(j / 2) * 32 + l] |= (uint8_t)((q & 0xF) << (4 * (j & 1)));
            if (qh && (q & 16)) qh[l] |= (uint8_t)(1 << j);
        }
    }
}

static void quant_q4_K(const float *x, void *dst, int64_t n)
{
    blk_q4_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K)
        quant_k4_common(x, &y[i].d, &y[i].dmin, y[i].scales, y[i].qs, NULL, 15);
}

static void quant_q5_K(const float *x, void *dst, int64_t n)
{
    blk_q5_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K)
        quant_k4_common(x, &y[i].d, &y[i].dmin, y[i].scales, y[i].qs, y[i].qh, 31);
}

static void quant_q6_K(const float *x, void *dst, int64_t n)
{
    blk_q6_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float sc[16], max_sc = 0;
        for (int j = 0; j < 16; j++) {
            float amax = 0;
            for (int l = 0; l < 16; l++) amax = fmaxf(amax, fabsf(x[16 * j + l]));
            sc[j] = amax / 31;                 /* q in [-31, 31] of [-32, 31] */
            max_sc = fmaxf(max_sc, sc[j]);
        }
        memset(&y[i], 0, sizeof y[i]);
        y[i].d = f32_to_fp16(max_sc / 127);
        const float d = H2F(y[i].d);
        for (int j = 0; j < 16; j++) {
            int ls = d > 0 ? nearest_int(clampf(sc[j] / d, 0, 127)) : 0;
            y[i].scales[j] = (int8_t)ls;
            const float dl = d * (float)ls;
            for (int l = 0; l < 16; l++) {
                int e = 16 * j + l, h = e / 128, k = (e % 128) / 32, l32 = e % 32;
                int q = (dl > 0 ? nearest_int(clampf(x[e] / dl, -32, 31)) : 0) + 32;  /* 0..63 */
                y[i].ql[h * 64 + (k & 1) * 32 + l32] |= (uint8_t)((q & 0xF) << (4 * (k >> 1)));
                y[i].qh[h * 32 + l32] |= (uint8_t)((q >> 4) << (2 * k));
            }
        }
    }
}

/* ---- K-quant dequantization ------------------------------------------------------------------ */
static void deq_q2_K(const void *src, float *dst, int64_t n)
{
    const blk_q2_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        const float d = H2F(b[i].d), dmin = H2F(b[i].dmin);
        for (int e = 0; e < QK_K; e++) {
            const uint8_t sc = b[i].scales[e / 16];
            const float dl = d * (float)(sc & 0xF), ml = dmin * (float)(sc >> 4);
            int q = (b[i].qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            dst[e] = dl * (float)q - ml;
        }
    }
}

static inline int q3k_q(const blk_q3_K *b, int e)
{
    int lo = (b->qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3;
    return lo - ((b->hmask[e % 32] >> (e / 32)) & 1 ? 0 : 4);
}

static void deq_q3_K(const void *src, float *dst, int64_t n)
{
    const blk_q3_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        const float d = H2F(b[i].d);
        for (int e = 0; e < QK_K; e++) {
            const float dl = d * (float)q3k_scale(b[i].scales, e / 16);
            dst[e] = dl * (float)q3k_q(&b[i], e);
        }
    }
}

static inline int q4k_q(const uint8_t *qs, int e)
{
    return (qs[(e / 64) * 32 + e % 32] >> (4 * ((e / 32) & 1))) & 0xF;
}

static void deq_q4_K(const void *src, float *dst, int64_t n)
{
    const blk_q4_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        const float d = H2F(b[i].d), dmin = H2F(b[i].dmin);
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            quant_get_scale_min_k4(j, b[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            for (int l = 0; l < 32; l++) dst[32 * j + l] = d1 * (float)q4k_q(b[i].qs, 32 * j + l) - m1;
        }
    }
}

static void deq_q5_K(const void *src, float *dst, int64_t n)
{
    const blk_q5_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        const float d = H2F(b[i].d), dmin = H2F(b[i].dmin);
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            quant_get_scale_min_k4(j, b[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            for (int l = 0; l < 32; l++) {
                int q = q4k_q(b[i].qs, 32 * j + l) | (((b[i].qh[l] >> j) & 1) << 4);
                dst[32 * j + l] = d1 * (float)q - m1;
            }
        }
    }
}

static inline int q6k_q(const blk_q6_K *b, int e)
{
    int h = e / 128, k = (e % 128) / 32, l = e % 32;
    int lo = (b->ql[h * 64 + (k & 1) * 32 + l] >> (4 * (k >> 1))) & 0xF;
    int hi = (b->qh[h * 32 + l] >> (2 * k)) & 3;
    return (lo | (hi << 4)) - 32;
}

static void deq_q6_K(const void *src, float *dst, int64_t n)
{
    const blk_q6_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        const float d = H2F(b[i].d);
        for (int e = 0; e < QK_K; e++)
            dst[e] = d * (float)b[i].scales[e / 16] * (float)q6k_q(&b[i], e);
    }
}

/* ---- K-quant dots with Q8_K: integer sums per sub-block, one float step per block ---------- */
static float dot_q2_K_q8_K(const void *w, const void *xv, int64_t n)
{
    const blk_q2_K *a = w;
    const blk_q8_K *b = xv;
    float s = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int isum = 0, summ = 0;
        for (int j = 0; j < 16; j++) {
            int sumi = 0;
            for (int l = 0; l < 16; l++) {
                int e = 16 * j + l;
                sumi += ((a[i].qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3) * b[i].qs[e];
            }
            isum += (a[i].scales[j] & 0xF) * sumi;
            summ += (a[i].scales[j] >> 4) * b[i].bsums[j];
        }
        s += (b[i].d * H2F(a[i].d)) * (float)isum - (b[i].d * H2F(a[i].dmin)) * (float)summ;
    }
    return s;
}

static float dot_q3_K_q8_K(const void *w, const void *xv, int64_t n)
{
    const blk_q3_K *a = w;
    const blk_q8_K *b = xv;
    float s = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            int sumi = 0;
            for (int l = 0; l < 16; l++) sumi += q3k_q(&a[i], 16 * j + l) * b[i].qs[16 * j + l];
            isum += q3k_scale(a[i].scales, j) * sumi;
        }
        s += (b[i].d * H2F(a[i].d)) * (float)isum;
    }
    return s;
}

static float dot_q4_K_q8_K(const void *w, const void *xv, int64_t n)
{
    const blk_q4_K *a = w;
    const blk_q8_K *b = xv;
    float s = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int isum = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            quant_get_scale_min_k4(j, a[i].scales, &sc, &m);
            int sumi = 0;
            for (int l = 0; l < 32; l++) sumi += q4k_q(a[i].qs, 32 * j + l) * b[i].qs[32 * j + l];
            isum += sc * sumi;
            summ += m * (b[i].bsums[2 * j] + b[i].bsums[2 * j + 1]);
        }
        s += (b[i].d * H2F(a[i].d)) * (float)isum - (b[i].d * H2F(a[i].dmin)) * (float)summ;
    }
    return s;
}

static float dot_q5_K_q8_K(const void *w, const void *xv, int64_t n)
{
    const blk_q5_K *a = w;
    const blk_q8_K *b = xv;
    float s = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int isum = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            quant_get_scale_min_k4(j, a[i].scales, &sc, &m);
            int sumi = 0;
            for (int l = 0; l < 32; l++) {
                int q = q4k_q(a[i].qs, 32 * j + l) | (((a[i].qh[l] >> j) & 1) << 4);
                sumi += q * b[i].qs[32 * j + l];
            }
            isum += sc * sumi;
            summ += m * (b[i].bsums[2 * j] + b[i].bsums[2 * j + 1]);
        }
        s += (b[i].d * H2F(a[i].d)) * (float)isum - (b[i].d * H2F(a[i].dmin)) * (float)summ;
    }
    return s;
}

static float dot_q6_K_q8_K(const void *w, const void *xv, int64_t n)
{
    const blk_q6_K *a = w;
    const blk_q8_K *b = xv;
    float s = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            int sumi = 0;
            for (int l = 0; l < 16; l++) sumi += q6k_q(&a[i], 16 * j + l) * b[i].qs[16 * j + l];
            isum += a[i].scales[j] * sumi;
        }
        s += (b[i].d * H2F(a[i].d)) * (float)isum;
    }
    return s;
}

/* ---- the tables -------------------------------------------------------------------------- */
#define SUP(id, nm, bs, ts, vdt, deq, qnt, dot) \
    [id] = { .name = nm, .blck_size = bs, .type_size = ts, .supported = true, \
             .vec_dot_type = vdt, .to_float = deq, .from_float = qnt, .vec_dot = dot }
#define UNS(id, nm, bs, ts) \
    [id] = { .name = nm, .blck_size = bs, .type_size = ts, .supported = false, .vec_dot_type = id }

static const quant_traits quant_ref_table[QT_COUNT] = {
    SUP(QT_F32,  "F32",  1,  4,  QT_F32,  deq_f32,  quant_f32,  dot_f32),
    SUP(QT_F16,  "F16",  1,  2,  QT_F32,  deq_f16,  quant_f16,  dot_f16),
    SUP(QT_Q4_0, "Q4_0", 32, 18, QT_Q8_0, deq_q4_0, quant_q4_0, dot_q4_0_q8_0),
    SUP(QT_Q4_1, "Q4_1", 32, 20, QT_Q8_1, deq_q4_1, quant_q4_1, dot_q4_1_q8_1),
    SUP(QT_Q5_0, "Q5_0", 32, 22, QT_Q8_0, deq_q5_0, quant_q5_0, dot_q5_0_q8_0),
    SUP(QT_Q5_1, "Q5_1", 32, 24, QT_Q8_1, deq_q5_1, quant_q5_1, dot_q5_1_q8_1),
    SUP(QT_Q8_0, "Q8_0", 32, 34, QT_Q8_0, deq_q8_0, quant_q8_0, dot_q8_0_q8_0),
    SUP(QT_Q8_1, "Q8_1", 32, 36, QT_Q8_1, deq_q8_1, quant_q8_1, dot_q8_1_q8_1),
    SUP(QT_Q2_K, "Q2_K", QK_K, 84,  QT_Q8_K, deq_q2_K, quant_q2_K, dot_q2_K_q8_K),
    SUP(QT_Q3_K, "Q3_K", QK_K, 110, QT_Q8_K, deq_q3_K, quant_q3_K, dot_q3_K_q8_K),
    SUP(QT_Q4_K, "Q4_K", QK_K, 144, QT_Q8_K, deq_q4_K, quant_q4_K, dot_q4_K_q8_K),
    SUP(QT_Q5_K, "Q5_K", QK_K, 176, QT_Q8_K, deq_q5_K, quant_q5_K, dot_q5_K_q8_K),
    SUP(QT_Q6_K, "Q6_K", QK_K, 210, QT_Q8_K, deq_q6_K, quant_q6_K, dot_q6_K_q8_K),
    SUP(QT_Q8_K, "Q8_K", QK_K, 292, QT_Q8_K, deq_q8_K, quant_q8_K, dot_q8_K_q8_K),
    SUP(QT_BF16, "BF16", 1,  2,  QT_F32,  deq_bf16, quant_bf16, dot_bf16),
    UNS(QT_IQ2_XXS, "IQ2_XXS", 256, 66),  UNS(QT_IQ2_XS, "IQ2_XS", 256, 74),
    UNS(QT_IQ3_XXS, "IQ3_XXS", 256, 98),  UNS(QT_IQ1_S, "IQ1_S", 256, 50),
    UNS(QT_IQ4_NL, "IQ4_NL", 32, 18),     UNS(QT_IQ3_S, "IQ3_S", 256, 110),
    UNS(QT_IQ2_S, "IQ2_S", 256, 82),      UNS(QT_IQ4_XS, "IQ4_XS", 256, 136),
    UNS(QT_I8, "I8", 1, 1),   UNS(QT_I16, "I16", 1, 2),   UNS(QT_I32, "I32", 1, 4),
    UNS(QT_I64, "I64", 1, 8), UNS(QT_F64, "F64", 1, 8),   UNS(QT_IQ1_M, "IQ1_M", 256, 56),
    UNS(QT_TQ1_0, "TQ1_0", 256, 54),      UNS(QT_TQ2_0, "TQ2_0", 256, 66),
    UNS(QT_MXFP4, "MXFP4", 32, 17),
};

const quant_traits *quant_get(uint32_t type)
{
    if (type >= QT_COUNT || quant_ref_table[type].name == NULL) return NULL;
    return &quant_ref_table[type];
}

size_t quant_row_size(uint32_t type, int64_t n)
{
    const quant_traits *t = quant_get(type);
    if (!t || n <= 0 || n % t->blck_size != 0) return 0;
    size_t bytes;
    if (__builtin_mul_overflow((uint64_t)(n / t->blck_size), (uint64_t)t->type_size, &bytes)) return 0;
    return bytes;
}

/* ---- run-time dispatch --------------------------------------------------------------------- */
static quant_traits quant_fast_table[QT_COUNT];
static pthread_once_t quant_fast_once = PTHREAD_ONCE_INIT;

/* Applies one kernel set over the table; NULL entries keep what is there. */
static void fast_apply(const quant_isa_kernels *k)
{
    if (!k) return;
    if (k->quantize_q8_0) quant_fast_table[QT_Q8_0].from_float = k->quantize_q8_0;
    if (k->quantize_q8_1) quant_fast_table[QT_Q8_1].from_float = k->quantize_q8_1;
    if (k->quantize_q8_K) quant_fast_table[QT_Q8_K].from_float = k->quantize_q8_K;
    if (k->vec_dot_q4_0_q8_0) quant_fast_table[QT_Q4_0].vec_dot = k->vec_dot_q4_0_q8_0;
    if (k->vec_dot_q4_1_q8_1) quant_fast_table[QT_Q4_1].vec_dot = k->vec_dot_q4_1_q8_1;
    if (k->vec_dot_q8_0_q8_0) quant_fast_table[QT_Q8_0].vec_dot = k->vec_dot_q8_0_q8_0;
}

/* The dots of a tiled matmul set (kern/matmul.h): with them in the table, matmul_rows
 * runs the tiled kernel, which gives bitwise the same outputs as these vec_dots. */
static void fast_apply_matmul(const matmul_isa_kernels *k)
{
    if (!k) return;
    if (k->vec_dot_q4_1_q8_1) quant_fast_table[QT_Q4_1].vec_dot = k->vec_dot_q4_1_q8_1;
    if (k->vec_dot_q8_0_q8_0) quant_fast_table[QT_Q8_0].vec_dot = k->vec_dot_q8_0_q8_0;
    if (k->vec_dot_q5_0_q8_0) quant_fast_table[QT_Q5_0].vec_dot = k->vec_dot_q5_0_q8_0;
    if (k->vec_dot_q4_K_q8_K) quant_fast_table[QT_Q4_K].vec_dot = k->vec_dot_q4_K_q8_K;
    if (k->vec_dot_q5_K_q8_K) quant_fast_table[QT_Q5_K].vec_dot = k->vec_dot_q5_K_q8_K;
    if (k->vec_dot_q6_K_q8_K) quant_fast_table[QT_Q6_K].vec_dot = k->vec_dot_q6_K_q8_K;
    if (k->vec_dot_f16_f32) quant_fast_table[QT_F16].vec_dot = k->vec_dot_f16_f32;
    if (k->vec_dot_f32_f32) quant_fast_table[QT_F32].vec_dot = k->vec_dot_f32_f32;
}

/* A set is applied only when cpu_get() reports everything its file was compiled for
 * (cpu.h: AVX2+FMA+F16C; AVX-512 F+BW+VL+DQ+VNNI on top), later sets winning. */
static void fast_init(void)
{
    memcpy(quant_fast_table, quant_ref_table, sizeof quant_fast_table);
    const cpu_features *c = cpu_get();
    if (cpu_has_avx2_set(c)) {
        fast_apply(quant_avx2_kernels());
        fast_apply_matmul(matmul_avx2_kernels());
    }
    if (cpu_has_avx512_set(c)) {
        fast_apply(quant_avx512_kernels());
        fast_apply_matmul(matmul_avx512_kernels());
    }
}

const quant_traits *quant_get_fast(uint32_t type)
{
    if (!quant_get(type)) return NULL;
    pthread_once(&quant_fast_once, fast_init);
    return &quant_fast_table[type];
}
