/* quant_avx512.c - AVX-512 (F/BW/VL/DQ + VNNI) versions of the hot kernels.
 * Room: kern. Built with the Makefile's AVX512_FLAGS and called only when cpu_get()
 * reports the whole set (cpu_has_avx512_set; quant_get_fast checks). May touch:
 * kern/quant.h.
 *
 * Same kernels and contracts as quant_avx2.c (scalar specs in quant.c):
 *   quantize_q8_0/q8_1  bit-identical to the reference (incl. ties away and NaN/Inf)
 *   quantize_q8_K       bit-identical to the reference (ggml's RNE rule, NaN/Inf blocks)
 *   vec_dot_q4_0_q8_0, vec_dot_q4_1_q8_1, vec_dot_q8_0_q8_0
 * Dots take two 32-element blocks per 512-bit step: int32 lanes 0-7 belong to block i,
 * lanes 8-15 to block i+1, and VPDPBUSD (u8 x s8, 4-way, no saturation) forms the
 * integer sums. Activation codes must satisfy |q| <= 127 (from_float guarantees it):
 * negating -128 in the sign trick would wrap.
 * Without the ISA flags this file compiles to a NULL kernel set. */
#include "kern/quant.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512DQ__) && defined(__AVX512VNNI__) && defined(__F16C__) && defined(__FMA__)
#include <immintrin.h>
#include <string.h>

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* roundf() on 16 lanes exactly (see quant_avx2.c round_away). */
static inline __m512 round_away(__m512 v)
{
    const __m512 sign = _mm512_set1_ps(-0.0f);
    __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m512 frac = _mm512_andnot_ps(sign, _mm512_sub_ps(v, t));
    __mmask16 ge = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    __m512 one = _mm512_or_ps(_mm512_and_ps(v, sign), _mm512_set1_ps(1.0f));
    return _mm512_mask_add_ps(t, ge, t, one);
}

static inline int quantize_block(const float *x, int8_t *qs, float *d_out)
{
    const __m512 sign = _mm512_set1_ps(-0.0f);
    __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    /* NaN inputs are skipped like fmaxf does: the accumulator is the second operand */
    __m512 amax = _mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_setzero_ps());
    amax = _mm512_max_ps(_mm512_andnot_ps(sign, v1), amax);
    const float d = _mm512_reduce_max_ps(amax) / 127, id = d != 0 ? 1.0f / d : 0.0f;
    const __m512 vid = _mm512_set1_ps(id), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    __m512 r0 = round_away(_mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v0, vid), lo), hi));
    __m512 r1 = round_away(_mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v1, vid), lo), hi));
    _mm_storeu_si128((__m128i *)qs, _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(r0)));
    _mm_storeu_si128((__m128i *)(qs + 16), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(r1)));
    *d_out = d;
    return (int)_mm512_reduce_add_ps(_mm512_add_ps(r0, r1));   /* integers: exact */
}

static void quantize_q8_0_avx512(const float *x, void *dst, int64_t n)
{
    blk_q8_0 *y = dst;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        float d;
        quantize_block(x + i * QK8_0, y[i].qs, &d);
        y[i].d = f32_to_fp16(d);
    }
}

static void quantize_q8_1_avx512(const float *x, void *dst, int64_t n)
{
    blk_q8_1 *y = dst;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        float d;
        int sum = quantize_block(x + i * QK8_1, y[i].qs, &d);
        y[i].d = f32_to_fp16(d);
        y[i].s = f32_to_fp16((float)sum * d);
    }
}

/* Q8_K (quant_impl.h): 16 lanes */
static inline int q8k_q16(const float *x, float iscale, int8_t *qs)
{
    const __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_set1_ps(iscale), _mm512_loadu_ps(x)),
                                                 _mm512_set1_ps(-128.0f)), _mm512_set1_ps(128.0f));
    const __m512i q = _mm512_min_epi32(_mm512_cvtps_epi32(v), _mm512_set1_epi32(127));
    _mm_storeu_si128((__m128i *)qs, _mm512_cvtsepi32_epi8(q));
    return _mm512_reduce_add_epi32(q);
}
#define QV __m512
#define QVN 16
#define QV_LOAD(p) _mm512_loadu_ps(p)
#define QV_ZERO _mm512_setzero_ps()
#define QV_HMAX(v) _mm512_reduce_max_ps(v)
#define QV_ABSMAX(acc, v) _mm512_max_ps(_mm512_andnot_ps(_mm512_set1_ps(-0.0f), (v)), (acc))
#define QV_EQ_MASK(v, s) \
    (unsigned)_mm512_cmp_ps_mask(_mm512_andnot_ps(_mm512_set1_ps(-0.0f), (v)), _mm512_set1_ps(s), _CMP_EQ_OQ)
#include "kern/quant_impl.h"

static inline __m256i unpack_nibbles(const uint8_t *qs)
{
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
}

static inline __m256i ld256(const int8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline uint32_t ld32(const void *p) { uint32_t u; memcpy(&u, p, 4); return u; }

/* s8 x s8 over 32 bytes: |a| x sign(b, a), one VPDPBUSD. */
static inline __m256 dot_s8_s8(__m256i a, __m256i b)
{
    return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(a, a),
                                                  _mm256_sign_epi8(b, a)));
}
static inline __m256 dot_u8_s8(__m256i u, __m256i s)
{
    return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s));
}

static inline float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Scales of two Q4_1/Q8_1 block pairs in one F16C conversion:
 * [dw0*dx0, mw0*sx0, ., . | dw1*dx1, mw1*sx1, ., .]. */
static inline __m256 scales_dm2(const void *a0, const void *b0, const void *a1, const void *b1)
{
    __m256 f = _mm256_cvtph_ps(_mm_setr_epi32((int)ld32(a0), (int)ld32(b0), (int)ld32(a1), (int)ld32(b1)));
    return _mm256_mul_ps(f, _mm256_permute_ps(f, _MM_SHUFFLE(1, 0, 3, 2)));
}

/* Scales of two Q8_0-style block pairs (d first): [dw0*dx0, ., dw1*dx1, .]. */
static inline __m128 scales_d2(uint16_t a0, uint16_t b0, uint16_t a1, uint16_t b1)
{
    __m128 f = _mm_cvtph_ps(_mm_setr_epi16((short)a0, (short)b0, (short)a1, (short)b1, 0, 0, 0, 0));
    return _mm_mul_ps(f, _mm_permute_ps(f, _MM_SHUFFLE(2, 3, 0, 1)));
}

/* Measured on Zen 5 (576 rows of 1536 in L2, GB/s of weights): a first zmm form, two
 * blocks per VPDPBUSD with lane inserts/blends and per-block fp16 conversions, gave
 * q4_1 6.3 / q8_0 18; this ymm form with batched scale conversions 16.4 / 25.2 (AVX2
 * file: 15.8 / 23.5). So the dots use VNNI on ymm and the quantizers zmm (1.67 vs 1.35
 * Gelem/s). */
static float vec_dot_q4_1_q8_1_avx512(const void *w, const void *xv, int64_t n)
{
    const blk_q4_1 *a = w;
    const blk_q8_1 *b = xv;
    const int64_t nb = n / QK8_1;
    const __m256i lane0 = _mm256_setzero_si256(), lane4 = _mm256_set1_epi32(4);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        __m256 sc = scales_dm2(&a[i].d, &b[i].d, &a[i + 1].d, &b[i + 1].d);
        accm = _mm256_add_ps(accm, sc);                      /* lanes 1, 5: m_w * s_x */
        __m256 p0 = dot_u8_s8(unpack_nibbles(a[i].qs), ld256(b[i].qs));
        __m256 p1 = dot_u8_s8(unpack_nibbles(a[i + 1].qs), ld256(b[i + 1].qs));
        acc0 = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(sc, lane0), p0, acc0);
        acc1 = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(sc, lane4), p1, acc1);
    }
    float ms[8];
    _mm256_storeu_ps(ms, accm);
    float summs = ms[1] + ms[5];
    for (; i < nb; i++) {
        summs += h2f(a[i].m) * h2f(b[i].s);
        __m256 p = dot_u8_s8(unpack_nibbles(a[i].qs), ld256(b[i].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(a[i].d) * h2f(b[i].d)), p, acc0);
    }
    return hsum256(_mm256_add_ps(acc0, acc1)) + summs;
}

static float vec_dot_q4_0_q8_0_avx512(const void *w, const void *xv, int64_t n)
{
    const blk_q4_0 *a = w;
    const blk_q8_0 *b = xv;
    const int64_t nb = n / QK8_0;
    const __m256i eight = _mm256_set1_epi8(8);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        __m128 sc = scales_d2(a[i].d, b[i].d, a[i + 1].d, b[i + 1].d);
        __m256 p0 = dot_s8_s8(_mm256_sub_epi8(unpack_nibbles(a[i].qs), eight), ld256(b[i].qs));
        __m256 p1 = dot_s8_s8(_mm256_sub_epi8(unpack_nibbles(a[i + 1].qs), eight), ld256(b[i + 1].qs));
        acc0 = _mm256_fmadd_ps(_mm256_broadcastss_ps(sc), p0, acc0);
        acc1 = _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehl_ps(sc, sc)), p1, acc1);
    }
    for (; i < nb; i++) {
        __m256 p = dot_s8_s8(_mm256_sub_epi8(unpack_nibbles(a[i].qs), eight), ld256(b[i].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(a[i].d) * h2f(b[i].d)), p, acc0);
    }
    return hsum256(_mm256_add_ps(acc0, acc1));
}

static float vec_dot_q8_0_q8_0_avx512(const void *w, const void *xv, int64_t n)
{
    const blk_q8_0 *a = w;
    const blk_q8_0 *b = xv;
    const int64_t nb = n / QK8_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        __m128 sc = scales_d2(a[i].d, b[i].d, a[i + 1].d, b[i + 1].d);
        __m256 p0 = dot_s8_s8(ld256(a[i].qs), ld256(b[i].qs));
        __m256 p1 = dot_s8_s8(ld256(a[i + 1].qs), ld256(b[i + 1].qs));
        acc0 = _mm256_fmadd_ps(_mm256_broadcastss_ps(sc), p0, acc0);
        acc1 = _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehl_ps(sc, sc)), p1, acc1);
    }
    for (; i < nb; i++) {
        __m256 p = dot_s8_s8(ld256(a[i].qs), ld256(b[i].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(a[i].d) * h2f(b[i].d)), p, acc0);
    }
    return hsum256(_mm256_add_ps(acc0, acc1));
}

static const quant_isa_kernels avx512_kernels = {
    .name = "avx512",
    .quantize_q8_0 = quantize_q8_0_avx512,
    .quantize_q8_1 = quantize_q8_1_avx512,
    .quantize_q8_K = quant_impl_q8_K,
    .vec_dot_q4_0_q8_0 = vec_dot_q4_0_q8_0_avx512,
    .vec_dot_q4_1_q8_1 = vec_dot_q4_1_q8_1_avx512,
    .vec_dot_q8_0_q8_0 = vec_dot_q8_0_q8_0_avx512,
};

const quant_isa_kernels *quant_avx512_kernels(void) { return &avx512_kernels; }

#else
const quant_isa_kernels *quant_avx512_kernels(void) { return NULL; }
#endif
