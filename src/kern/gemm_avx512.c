/* gemm_avx512.c - the AVX-512 GEMM (see gemm.h): 14 x 32 register tiles.
 * Room: kern. Built with the Makefile's AVX512_FLAGS; used only when cpu_get() reports
 * the set (gemm_best). May touch: kern/gemm.h, kern/gemm_impl.h.
 *
 * Tile: 14 rows x 32 columns = 28 zmm accumulators; per k, two loads of the B panel and
 * 14 broadcasts of A (vbroadcastss from the 14 rows in place), 28 FMAs: 31 of the 32
 * registers, no horizontal sum anywhere. Column tails are masked stores (the panel is zero-padded),
 * row tails are the same tile with fewer rows (each mr is its own instance).
 * Other tiles: make -C dev/kernels KFLAGS="-DGEMM_MR512=6 -DGEMM_NV512=4" (6 x 64). On the
 * shared 2-core Xeon (peak 222-226 GFLOP/s per core, 2 zmm FMAs a cycle), GFLOP/s of
 * S = Q K^T / P V: 14x32 152 / 177-185, 6x64 151 / 176, 7x64 158 / 178, 8x48 153 / 174:
 * within the noise, so the classic 14x32 stays. */
#include "kern/gemm_impl.h"

#if defined(__AVX512F__) && defined(__FMA__)
#include <immintrin.h>

#ifndef GEMM_MR512
#define GEMM_MR512 14
#endif
#ifndef GEMM_NV512
#define GEMM_NV512 2
#endif
enum { MR = GEMM_MR512, NV = GEMM_NV512, NR = 16 * NV };

/* C[0..mr)[0..16 nv) (+)= sum_k a[i][k] * bp[k][..]   a: [mr][lda]  bp: [kc][NR]  c: [mr][ldc]
 * m[v]: the lanes of column vector v that exist (the last one may be partial) */
static inline __attribute__((always_inline)) void tile_t(const int mr, const int nv, int64_t kc, const float *ap,
                                                         int64_t lda, const float *bp, float *c, int64_t ldc,
                                                         const __mmask16 *m, bool accumulate)
{
    __m512 acc[MR][NV];
#pragma GCC unroll 16
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) acc[i][v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m512 b[NV];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) b[v] = _mm512_load_ps(bp + k * NR + 16 * v);
#pragma GCC unroll 16
        for (int i = 0; i < mr; i++) {
            const __m512 a = _mm512_set1_ps(ap[i * lda + k]);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) acc[i][v] = _mm512_fmadd_ps(a, b[v], acc[i][v]);
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            float *ci = c + i * ldc + 16 * v;
            if (accumulate) acc[i][v] = _mm512_add_ps(acc[i][v], _mm512_maskz_loadu_ps(m[v], ci));
            _mm512_mask_storeu_ps(ci, m[v], acc[i][v]);
        }
}

#if GEMM_NV512 == 2
#define TILE_NV(R)                                                               \
    if (nv == 2) tile_t(R, 2, kc, ap, lda, bp, c, ldc, m, accumulate);           \
    else tile_t(R, 1, kc, ap, lda, bp, c, ldc, m, accumulate);
#else
#define TILE_NV(R)                                                               \
    switch (nv) {                                                                \
    case 4: tile_t(R, 4, kc, ap, lda, bp, c, ldc, m, accumulate); break;         \
    case 3: tile_t(R, 3, kc, ap, lda, bp, c, ldc, m, accumulate); break;         \
    case 2: tile_t(R, 2, kc, ap, lda, bp, c, ldc, m, accumulate); break;         \
    default: tile_t(R, 1, kc, ap, lda, bp, c, ldc, m, accumulate); break;        \
    }
#endif
#define TILE_CASE(R) \
    case R: TILE_NV(R) break;

static void tile(int mr, int nw, int64_t kc, const float *ap, int64_t lda, const float *bp, float *c, int64_t ldc,
                 bool accumulate)
{
    const int nv = (nw + 15) / 16;
    __mmask16 m[NV];
    for (int v = 0; v < NV; v++) {
        const int l = nw - 16 * v;
        m[v] = l >= 16 ? (__mmask16)0xffff : l > 0 ? (__mmask16)((1u << l) - 1) : 0;
    }
    switch (mr) {
        TILE_CASE(1) TILE_CASE(2) TILE_CASE(3) TILE_CASE(4) TILE_CASE(5) TILE_CASE(6)
#if GEMM_MR512 > 6
        TILE_CASE(7) TILE_CASE(8)
#endif
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
