/* quant_avx2.c - AVX2/FMA/F16C versions of the hot kernels of the default model.
 * Room: kern. Built with -mavx2 -mfma -mf16c (Makefile AVX2_FLAGS) and called only
 * when cpu_get() reports that set (quant_get_fast checks). May touch: kern/quant.h.
 *
 * Kernels (each has its scalar spec in quant.c; tests/kern/test_quant.c compares):
 *   quantize_q8_0/q8_1  x: [n] f32 -> [n/32] blocks; bit-identical to the reference,
 *                       including the ties-away rounding of roundf and NaN/Inf handling
 *   quantize_q8_K       x: [n] f32 -> [n/256] blk_q8_K (the K-quants' activations), bit-
 *                       identical too (measured: 512 rows of 2048, 3.95 ms scalar -> 0.45)
 *   vec_dot_q4_0_q8_0   w: [n/32] blk_q4_0, x: [n/32] blk_q8_0
 *   vec_dot_q4_1_q8_1   w: [n/32] blk_q4_1, x: [n/32] blk_q8_1
 *   vec_dot_q8_0_q8_0   w: [n/32] blk_q8_0, x: [n/32] blk_q8_0
 * Dots: the same integer sum per block as the reference, then float FMAs in 8 lanes
 * (a different summation order: equal within TOL_SIMD_REL). They rely on activation
 * codes |q| <= 127 (true for every from_float output): _mm256_sign_epi8 cannot negate
 * -128, and maddubs pairs stay below int16 saturation (2 * 128 * 127).
 * Without the ISA flags this file compiles to a NULL kernel set. */
#include "kern/quant.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#include <string.h>

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }   /* exact, like fp16_to_f32 */

static inline float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hmax_ps(__m256 v)   /* lanes are never NaN here */
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline int hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* roundf() on 8 lanes, exactly: t = trunc(v); t + (|v - t| >= 0.5 ? copysign(1, v) : 0).
 * (v - t is exact for every float, so there is no double rounding.) */
static inline __m256 round_away(__m256 v)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    __m256 ge = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    __m256 one = _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0f));
    return _mm256_add_ps(t, _mm256_and_ps(ge, one));
}

/* One block of 32: d as the reference computes it, codes into qs[32]; returns sum(q). */
static inline int quantize_block(const float *x, int8_t *qs, float *d_out)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        /* second operand wins on NaN: a NaN input is skipped, like fmaxf in the reference */
        amax = _mm256_max_ps(_mm256_andnot_ps(sign, v[k]), amax);
    }
    const float d = hmax_ps(amax) / 127, id = d != 0 ? 1.0f / d : 0.0f;
    const __m256 vid = _mm256_set1_ps(id), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    __m256i q[4];
    __m256 sum = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        /* clampf: max(v, lo) gives lo for NaN (second operand), as the reference does */
        __m256 r = round_away(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v[k], vid), lo), hi));
        sum = _mm256_add_ps(sum, r);                       /* integers <= 32*127: exact */
        q[k] = _mm256_cvtps_epi32(r);
    }
    /* 4 x 8 int32 -> 32 int8 in order: packs interleave 128-bit lanes, permute undoes it */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)qs, p);
    *d_out = d;
    return (int)hsum_ps(sum);
}

static void quantize_q8_0_avx2(const float *x, void *dst, int64_t n)
{
    blk_q8_0 *y = dst;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        float d;
        quantize_block(x + i * QK8_0, y[i].qs, &d);
        y[i].d = f32_to_fp16(d);
    }
}

static void quantize_q8_1_avx2(const float *x, void *dst, int64_t n)
{
    blk_q8_1 *y = dst;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        float d;
        int sum = quantize_block(x + i * QK8_1, y[i].qs, &d);
        y[i].d = f32_to_fp16(d);
        y[i].s = f32_to_fp16((float)sum * d);
    }
}

/* Q8_K (quant_impl.h): 8 lanes, 16 elements in two */
static inline int q8k_q16(const float *x, float iscale, int8_t *qs)
{
    __m256i q[2];
    for (int l = 0; l < 2; l++) {
        const __m256 v = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_set1_ps(iscale), _mm256_loadu_ps(x + 8 * l)),
                                                     _mm256_set1_ps(-128.0f)), _mm256_set1_ps(128.0f));
        q[l] = _mm256_min_epi32(_mm256_cvtps_epi32(v), _mm256_set1_epi32(127));
    }
    const __m128i p0 = _mm_packs_epi32(_mm256_castsi256_si128(q[0]), _mm256_extracti128_si256(q[0], 1));
    const __m128i p1 = _mm_packs_epi32(_mm256_castsi256_si128(q[1]), _mm256_extracti128_si256(q[1], 1));
    _mm_storeu_si128((__m128i *)qs, _mm_packs_epi16(p0, p1));
    return hsum_epi32(_mm256_add_epi32(q[0], q[1]));
}
#define QV __m256
#define QVN 8
#define QV_LOAD(p) _mm256_loadu_ps(p)
#define QV_ZERO _mm256_setzero_ps()
#define QV_HMAX(v) hmax_ps(v)
#define QV_ABSMAX(acc, v) _mm256_max_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), (v)), (acc))
#define QV_EQ_MASK(v, s) \
    (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), (v)), _mm256_set1_ps(s), _CMP_EQ_OQ))
#include "kern/quant_impl.h"

/* 16 bytes of nibbles -> 32 bytes: elements 0-15 (low nibbles), then 16-31 (high). */
static inline __m256i unpack_nibbles(const uint8_t *qs)
{
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m256i b = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

/* 8 int32 partial sums of u8 x s8 products over 32 bytes. */
static inline __m256 dot_u8_s8(__m256i u, __m256i s)
{
    __m256i p16 = _mm256_maddubs_epi16(u, s);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

/* s8 x s8 via |a| x sign(b, a). */
static inline __m256 dot_s8_s8(__m256i a, __m256i b)
{
    return dot_u8_s8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

static inline uint32_t ld32(const void *p) { uint32_t u; memcpy(&u, p, 4); return u; }

/* Two Q4_1/Q8_1 block pairs: one F16C conversion of the four (d, m|s) pairs gives
 * lanes [dw0 mw0 dx0 sx0 | dw1 mw1 dx1 sx1]; times its pair-swap it is
 * [dw0*dx0, mw0*sx0, ., . | dw1*dx1, mw1*sx1, ., .]. Measured on Zen 5 (576 rows of 1536,
 * in L2): 8.5 GB/s of weights with eight scalar fp16 conversions per pair, 15.8 like this;
 * the scalar reference runs 2.7 GB/s. */
static inline __m256 scales_q4_1(const blk_q4_1 *a, const blk_q8_1 *b)
{
    __m256 f = _mm256_cvtph_ps(_mm_setr_epi32((int)ld32(&a[0].d), (int)ld32(&b[0].d),
                                              (int)ld32(&a[1].d), (int)ld32(&b[1].d)));
    return _mm256_mul_ps(f, _mm256_permute_ps(f, _MM_SHUFFLE(1, 0, 3, 2)));
}

/* Scales of two Q4_0/Q8_0-style block pairs (d first): [dw0*dx0, ., dw1*dx1, .]. */
static inline __m128 scales_d2(uint16_t a0, uint16_t b0, uint16_t a1, uint16_t b1)
{
    __m128 f = _mm_cvtph_ps(_mm_setr_epi16((short)a0, (short)b0, (short)a1, (short)b1, 0, 0, 0, 0));
    return _mm_mul_ps(f, _mm_permute_ps(f, _MM_SHUFFLE(2, 3, 0, 1)));
}

static float vec_dot_q4_1_q8_1_avx2(const void *w, const void *xv, int64_t n)
{
    const blk_q4_1 *a = w;
    const blk_q8_1 *b = xv;
    const int64_t nb = n / QK8_1;
    const __m256i lane0 = _mm256_setzero_si256(), lane4 = _mm256_set1_epi32(4);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {   /* two blocks per step: two independent FMA chains */
        __m256 sc = scales_q4_1(&a[i], &b[i]);
        accm = _mm256_add_ps(accm, sc);                      /* lanes 1, 5: m_w * s_x */
        __m256 p0 = dot_u8_s8(unpack_nibbles(a[i].qs), _mm256_loadu_si256((const __m256i *)b[i].qs));
        __m256 p1 = dot_u8_s8(unpack_nibbles(a[i + 1].qs), _mm256_loadu_si256((const __m256i *)b[i + 1].qs));
        acc0 = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(sc, lane0), p0, acc0);
        acc1 = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(sc, lane4), p1, acc1);
    }
    float ms[8];
    _mm256_storeu_ps(ms, accm);
    float summs = ms[1] + ms[5];
    for (; i < nb; i++) {
        summs += h2f(a[i].m) * h2f(b[i].s);
        __m256 p = dot_u8_s8(unpack_nibbles(a[i].qs), _mm256_loadu_si256((const __m256i *)b[i].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(a[i].d) * h2f(b[i].d)), p, acc0);
    }
    return hsum_ps(_mm256_add_ps(acc0, acc1)) + summs;
}

static float vec_dot_q4_0_q8_0_avx2(const void *w, const void *xv, int64_t n)
{
    const blk_q4_0 *a = w;
    const blk_q8_0 *b = xv;
    const int64_t nb = n / QK8_0;
    const __m256i eight = _mm256_set1_epi8(8);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        __m256i q0 = _mm256_sub_epi8(unpack_nibbles(a[i].qs), eight);
        __m256i q1 = _mm256_sub_epi8(unpack_nibbles(a[i + 1].qs), eight);
        __m256 p0 = dot_s8_s8(q0, _mm256_loadu_si256((const __m256i *)b[i].qs));
        __m256 p1 = dot_s8_s8(q1, _mm256_loadu_si256((const __m256i *)b[i + 1].qs));
        __m128 sc = scales_d2(a[i].d, b[i].d, a[i + 1].d, b[i + 1].d);
        acc0 = _mm256_fmadd_ps(_mm256_broadcastss_ps(sc), p0, acc0);
        acc1 = _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehl_ps(sc, sc)), p1, acc1);
    }
    for (; i < nb; i++) {
        __m256i q = _mm256_sub_epi8(unpack_nibbles(a[i].qs), eight);
        __m256 p = dot_s8_s8(q, _mm256_loadu_si256((const __m256i *)b[i].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(a[i].d) * h2f(b[i].d)), p, acc0);
    }
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

static float vec_dot_q8_0_q8_0_avx2(const void *w, const void *xv, int64_t n)
{
    const blk_q8_0 *a = w;
    const blk_q8_0 *b = xv;
    const int64_t nb = n / QK8_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        __m256 p0 = dot_s8_s8(_mm256_loadu_si256((const __m256i *)a[i].qs), _mm256_loadu_si256((const __m256i *)b[i].qs));
        __m256 p1 = dot_s8_s8(_mm256_loadu_si256((const __m256i *)a[i + 1].qs), _mm256_loadu_si256((const __m256i *)b[i + 1].qs));
        __m128 sc = scales_d2(a[i].d, b[i].d, a[i + 1].d, b[i + 1].d);
        acc0 = _mm256_fmadd_ps(_mm256_broadcastss_ps(sc), p0, acc0);
        acc1 = _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehl_ps(sc, sc)), p1, acc1);
    }
    for (; i < nb; i++) {
        __m256 p = dot_s8_s8(_mm256_loadu_si256((const __m256i *)a[i].qs), _mm256_loadu_si256((const __m256i *)b[i].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(a[i].d) * h2f(b[i].d)), p, acc0);
    }
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

static const quant_isa_kernels avx2_kernels = {
    .name = "avx2",
    .quantize_q8_0 = quantize_q8_0_avx2,
    .quantize_q8_1 = quantize_q8_1_avx2,
    .quantize_q8_K = quant_impl_q8_K,
    .vec_dot_q4_0_q8_0 = vec_dot_q4_0_q8_0_avx2,
    .vec_dot_q4_1_q8_1 = vec_dot_q4_1_q8_1_avx2,
    .vec_dot_q8_0_q8_0 = vec_dot_q8_0_q8_0_avx2,
};

const quant_isa_kernels *quant_avx2_kernels(void) { return &avx2_kernels; }

#else
const quant_isa_kernels *quant_avx2_kernels(void) { return NULL; }
#endif
