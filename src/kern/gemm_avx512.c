/* gemm_avx512.c - the AVX-512 GEMM (see gemm.h): 14 x 32 register tiles.
 * Room: kern. Built with the Makefile's AVX512_FLAGS; used only when cpu_get() reports
 * the set (gemm_best). May touch: kern/gemm.h, kern/gemm_impl.h.
 *
 * Tile: 14 rows x 32 columns = 28 zmm accumulators; per k, two loads of the B panel and
 * 14 broadcasts of A (embedded-broadcast FMA operands), 28 FMAs: 30 of the 32 registers,
 * no horizontal sum anywhere. Column tails are masked stores (the panel is zero-padded),
 * row tails are the same tile with fewer rows (each mr is its own instance). */
#include "kern/gemm_impl.h"

#if defined(__AVX512F__) && defined(__FMA__)
#include <immintrin.h>

#ifndef GEMM_MR512
#define GEMM_MR512 14
#endif
enum { MR = GEMM_MR512, NR = 32 };

/* C[0..mr)[0..32) (+)= sum_k ap[k][i] * bp[k][..]   a: [mr][lda]  bp: [kc][32]  c: [mr][ldc] */
static inline __attribute__((always_inline)) void tile_t(const int mr, const int nv, int64_t kc, const float *ap,
                                                         int64_t lda,
                                                         const float *bp, float *c, int64_t ldc, __mmask16 mlo,
                                                         __mmask16 mhi, bool accumulate)
{
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 16
    for (int i = 0; i < mr; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(bp + k * NR);
        const __m512 b1 = nv > 1 ? _mm512_load_ps(bp + k * NR + 16) : b0;
#pragma GCC unroll 16
        for (int i = 0; i < mr; i++) {
            const __m512 a = _mm512_set1_ps(ap[i * lda + k]);
            c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
            if (nv > 1) c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < mr; i++) {
        float *ci = c + i * ldc;
        if (accumulate) c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(mlo, ci));
        _mm512_mask_storeu_ps(ci, mlo, c0[i]);
        if (nv > 1) {
            if (accumulate) c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(mhi, ci + 16));
            _mm512_mask_storeu_ps(ci + 16, mhi, c1[i]);
        }
    }
}

#define TILE_NV(R)                                                            \
    if (nw > 16) tile_t(R, 2, kc, ap, lda, bp, c, ldc, mlo, mhi, accumulate);       \
    else tile_t(R, 1, kc, ap, lda, bp, c, ldc, mlo, mhi, accumulate);
#define TILE_CASE(R)                                                                \
    case R:                                                                         \
        TILE_NV(R)            \
        break;

static void tile(int mr, int nw, int64_t kc, const float *ap, int64_t lda, const float *bp, float *c, int64_t ldc,
                 bool accumulate)
{
    const __mmask16 mlo = nw >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nw) - 1);
    const __mmask16 mhi = nw >= 32 ? (__mmask16)0xffff : nw > 16 ? (__mmask16)((1u << (nw - 16)) - 1) : 0;
    switch (mr) {
        TILE_CASE(1) TILE_CASE(2) TILE_CASE(3) TILE_CASE(4) TILE_CASE(5) TILE_CASE(6) TILE_CASE(7)
        TILE_CASE(8)
#if GEMM_MR512 > 8
        TILE_CASE(9) TILE_CASE(10) TILE_CASE(11) TILE_CASE(12)
#endif
#if GEMM_MR512 > 12
        TILE_CASE(13) TILE_CASE(14)
#endif
#if GEMM_MR512 > 14
        TILE_CASE(15) TILE_CASE(16)
#endif
    default: break;
    }
}

static void gemm_f32_avx512(int64_t m0, int64_t m1, int64_t N, int64_t K, const float *A, int64_t lda,
                            const float *B, int64_t ldb, bool b_trans, float *C, int64_t ldc, float *pack)
{
    gemm_impl_drive(m0, m1, N, K, A, lda, B, ldb, b_trans, NULL, C, ldc, pack, MR, NR, tile);
}

static void pack_b_avx512(const float *B, int64_t ldb, bool b_trans, int64_t N, int64_t K, float *bp)
{
    gemm_impl_pack_all(B, ldb, b_trans, N, K, bp, NR);
}

static void gemm_f32_packed_avx512(int64_t m0, int64_t m1, int64_t N, int64_t K, const float *A, int64_t lda,
                                   const float *bp, float *C, int64_t ldc)
{
    gemm_impl_drive(m0, m1, N, K, A, lda, NULL, 0, false, bp, C, ldc, NULL, MR, NR, tile);
}

static const gemm_isa_kernels avx512_kernels = { "avx512", gemm_f32_avx512, pack_b_avx512, gemm_f32_packed_avx512 };
const gemm_isa_kernels *gemm_avx512_kernels(void) { return &avx512_kernels; }

#else
const gemm_isa_kernels *gemm_avx512_kernels(void) { return NULL; }
#endif
