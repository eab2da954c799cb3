/* vec_avx2.c - the AVX2 set of vec.h (F16C, FMA). Built with -mavx2 -mfma -mf16c;
 * called only when cpu_get() allows. Room: kern.
 *   qk: one 8-lane accumulator per row (fma over i ascending, then a fixed
 *       horizontal sum), four rows interleaved to hide FMA latency: a row's
 *       operations are the same whether it runs in a group of four or alone
 *   pv: the output kept in registers, 32 lanes at a time, rows added in order */
#include "kern/vec.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

static inline float hsum(__m256 v)   /* ((0+4)+(2+6)) + ((1+5)+(3+7)) */
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256 ld16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

static void qk_f32(float *scores, const float *q, const float *k, size_t stride, int64_t m, int64_t n)
{
    int64_t j = 0;
    for (; j + 4 <= m; j += 4) {                      /* rows j..j+3 */
        const float *r0 = k + (size_t)j * stride, *r1 = r0 + stride, *r2 = r1 + stride, *r3 = r2 + stride;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t i = 0; i < n; i += 8) {
            __m256 qv = _mm256_loadu_ps(q + i);
            a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r0 + i), a0);
            a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r1 + i), a1);
            a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r2 + i), a2);
            a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r3 + i), a3);
        }
        scores[j] = hsum(a0); scores[j + 1] = hsum(a1); scores[j + 2] = hsum(a2); scores[j + 3] = hsum(a3);
    }
    for (; j < m; j++) {
        const float *r = k + (size_t)j * stride;
        __m256 a = _mm256_setzero_ps();
        for (int64_t i = 0; i < n; i += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(r + i), a);
        scores[j] = hsum(a);
    }
}

static void qk_f16(float *scores, const float *q, const uint16_t *k, size_t stride, int64_t m, int64_t n)
{
    int64_t j = 0;
    for (; j + 4 <= m; j += 4) {
        const uint16_t *r0 = k + (size_t)j * stride, *r1 = r0 + stride, *r2 = r1 + stride, *r3 = r2 + stride;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t i = 0; i < n; i += 8) {
            __m256 qv = _mm256_loadu_ps(q + i);
            a0 = _mm256_fmadd_ps(qv, ld16(r0 + i), a0);
            a1 = _mm256_fmadd_ps(qv, ld16(r1 + i), a1);
            a2 = _mm256_fmadd_ps(qv, ld16(r2 + i), a2);
            a3 = _mm256_fmadd_ps(qv, ld16(r3 + i), a3);
        }
        scores[j] = hsum(a0); scores[j + 1] = hsum(a1); scores[j + 2] = hsum(a2); scores[j + 3] = hsum(a3);
    }
    for (; j < m; j++) {
        const uint16_t *r = k + (size_t)j * stride;
        __m256 a = _mm256_setzero_ps();
        for (int64_t i = 0; i < n; i += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), ld16(r + i), a);
        scores[j] = hsum(a);
    }
}

static void pv_f32(float *acc, const float *p, const float *v, size_t stride, int64_t m, int64_t n)
{
    for (int64_t i = 0; i < n; i += 8) {              /* acc lanes [i, i+8) over all rows */
        __m256 a = _mm256_loadu_ps(acc + i);
        for (int64_t j = 0; j < m; j++)
            a = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_loadu_ps(v + (size_t)j * stride + (size_t)i), a);
        _mm256_storeu_ps(acc + i, a);
    }
}

static void pv_f16(float *acc, const float *p, const uint16_t *v, size_t stride, int64_t m, int64_t n)
{
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {                    /* 32 lanes in four registers */
        __m256 a0 = _mm256_loadu_ps(acc + i), a1 = _mm256_loadu_ps(acc + i + 8);
        __m256 a2 = _mm256_loadu_ps(acc + i + 16), a3 = _mm256_loadu_ps(acc + i + 24);
        for (int64_t j = 0; j < m; j++) {
            const uint16_t *r = v + (size_t)j * stride + (size_t)i;
            __m256 pj = _mm256_set1_ps(p[j]);
            a0 = _mm256_fmadd_ps(pj, ld16(r), a0);
            a1 = _mm256_fmadd_ps(pj, ld16(r + 8), a1);
            a2 = _mm256_fmadd_ps(pj, ld16(r + 16), a2);
            a3 = _mm256_fmadd_ps(pj, ld16(r + 24), a3);
        }
        _mm256_storeu_ps(acc + i, a0); _mm256_storeu_ps(acc + i + 8, a1);
        _mm256_storeu_ps(acc + i + 16, a2); _mm256_storeu_ps(acc + i + 24, a3);
    }
    for (; i < n; i += 8) {
        __m256 a = _mm256_loadu_ps(acc + i);
        for (int64_t j = 0; j < m; j++)
            a = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), ld16(v + (size_t)j * stride + (size_t)i), a);
        _mm256_storeu_ps(acc + i, a);
    }
}

static void round_f16(float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT)));
    for (; i < n; i++) x[i] = _cvtsh_ss(_cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT));
}

static const vec_kernels AVX2 = { "avx2", qk_f32, qk_f16, pv_f32, pv_f16, round_f16 };
const vec_kernels *vec_avx2_kernels(void) { return &AVX2; }
#else
const vec_kernels *vec_avx2_kernels(void) { return 0; }
#endif
