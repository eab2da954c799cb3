/* gemm_avx2.c - the AVX2 GEMM (see gemm.h): 6 x 16 register tiles.
 * Room: kern. Built with the Makefile's AVX2_FLAGS; used only when cpu_get() reports the
 * set (gemm_best). May touch: kern/gemm.h, kern/gemm_impl.h.
 *
 * Tile: 6 rows x 16 columns = 12 ymm accumulators, two B loads and 6 broadcasts per k
 * (15 of the 16 registers). Column tails are masked stores (the panel is zero-padded),
 * row tails are the same tile with fewer rows. */
#include "kern/gemm_impl.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

enum { MR = 6, NR = 16 };

/* lanes [0, n) set, n in 0..8 */
static inline __m256i lane_mask(int n)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

/* C[0..mr)[0..8 nv) (+)= sum_k a[i][k] * bp[k][..]   a: [mr][lda]  bp: [kc][16]  c: [mr][ldc] */
static inline __attribute__((always_inline)) void tile_t(const int mr, const int nv, int64_t kc, const float *ap,
                                                         int64_t lda,
                                                         const float *bp, float *c, int64_t ldc, int nw,
                                                         bool accumulate)
{
    __m256 c0[MR], c1[MR];
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) c0[i] = c1[i] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_load_ps(bp + k * NR);
        const __m256 b1 = nv > 1 ? _mm256_load_ps(bp + k * NR + 8) : b0;
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
            const __m256 a = _mm256_broadcast_ss(ap + i * lda + k);
            c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
            if (nv > 1) c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
        }
    }
    const __m256i mlo = lane_mask(nw >= 8 ? 8 : nw), mhi = lane_mask(nw > 8 ? nw - 8 : 0);
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) {
        float *ci = c + i * ldc;
        if (accumulate) c0[i] = _mm256_add_ps(c0[i], _mm256_maskload_ps(ci, mlo));
        _mm256_maskstore_ps(ci, mlo, c0[i]);
        if (nv > 1) {
            if (accumulate) c1[i] = _mm256_add_ps(c1[i], _mm256_maskload_ps(ci + 8, mhi));
            _mm256_maskstore_ps(ci + 8, mhi, c1[i]);
        }
    }
}

#define TILE_NV(R)                                                    \
    if (nw > 8) tile_t(R, 2, kc, ap, lda, bp, c, ldc, nw, accumulate);      \
    else tile_t(R, 1, kc, ap, lda, bp, c, ldc, nw, accumulate);
#define TILE_CASE(R)                                                        \
    case R:                                                                 \
        TILE_NV(R)    \
        break;

static void tile(int mr, int nw, int64_t kc, const float *ap, int64_t lda, const float *bp, float *c, int64_t ldc,
                 bool accumulate)
{
    switch (mr) {
        TILE_CASE(1) TILE_CASE(2) TILE_CASE(3) TILE_CASE(4) TILE_CASE(5) TILE_CASE(6)
    default: break;
    }
}

static void gemm_f32_avx2(int64_t m0, int64_t m1, int64_t N, int64_t K, const float *A, int64_t lda,
                          const float *B, int64_t ldb, bool b_trans, float *C, int64_t ldc, float *pack)
{
    gemm_impl_drive(m0, m1, N, K, A, lda, B, ldb, b_trans, NULL, C, ldc, pack, MR, NR, tile);
}

static void pack_b_avx2(const float *B, int64_t ldb, bool b_trans, int64_t N, int64_t K, float *bp)
{
    gemm_impl_pack_all(B, ldb, b_trans, N, K, bp, NR);
}

static void gemm_f32_packed_avx2(int64_t m0, int64_t m1, int64_t N, int64_t K, const float *A, int64_t lda,
                                   const float *bp, float *C, int64_t ldc)
{
    gemm_impl_drive(m0, m1, N, K, A, lda, NULL, 0, false, bp, C, ldc, NULL, MR, NR, tile);
}

static const gemm_isa_kernels avx2_kernels = { "avx2", gemm_f32_avx2, pack_b_avx2, gemm_f32_packed_avx2 };
const gemm_isa_kernels *gemm_avx2_kernels(void) { return &avx2_kernels; }

#else
const gemm_isa_kernels *gemm_avx2_kernels(void) { return NULL; }
#endif
