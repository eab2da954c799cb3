/* gemm_impl.h - the blocking shared by gemm_avx2.c and gemm_avx512.c (not a public header).
 * Room: kern. Each ISA file defines its register tile (MR rows x NR columns) and includes
 * this for the packing and the loop nest around it:
 *
 *   for each K block pc (kc = min(gemm_kc(N, K), K - pc) deep):
 *     pack B[pc .. pc+kc)[0 .. N) into column panels   bp: [N/NR][kc][NR]  (zero-padded)
 *     for each MR-row block i0 of [m0, m1):
 *       for each panel: tile(mr, nw, kc, A + i0 * lda + pc, panel, C + i0 * ldc + p * NR),
 *         which stores the first block's sums and adds the later blocks' to C
 * The B block (kc x N floats, <= 512 KB) stays in L2, the A rows of a row block in L1
 * across the panels. A is read in place, one broadcast per row and k: packing it (a
 * scalar transposing copy into [kc][MR]) gained nothing on S = Q K^T and cost P V (N = 64,
 * 2 panels) 40% (80 vs 140 GFLOP/s). gemm_f32 packs B on every call (each thread for its
 * own rows: < 3% of the multiply-adds at the encoder's shapes over 750 rows); gemm_pack_b
 * packs it once for many calls (gemm_f32_packed), all K blocks one after the other. */
#ifndef KVLM_KERN_GEMM_IMPL_H
#define KVLM_KERN_GEMM_IMPL_H

#include "kern/gemm.h"

#include <string.h>


/* tile(mr, nw, kc, a, lda, bp, c, ldc, accumulate): C[0..mr)[0..nw) (+)= A B, where
 * A[i][k] = a[i * lda + k] and B is one packed panel bp: [kc][NR] */
typedef void (*gemm_tile_fn)(int mr, int nw, int64_t kc, const float *a, int64_t lda, const float *bp, float *c,
                             int64_t ldc, bool accumulate);

/* bp[p][k][c] = B[pc + k][p * NR + c], 0 for columns >= N        bp: [ceil(N/NR)][kc][NR] */
static inline void gemm_impl_pack_b(float *bp, const float *B, int64_t ldb, bool b_trans, int64_t N, int64_t pc,
                               int64_t kc, const int NR)
{
    for (int64_t j0 = 0; j0 < N; j0 += NR) {           /* j0: first column of the panel */
        float *panel = bp + (j0 / NR) * kc * NR;
        const int64_t nw = N - j0 < NR ? N - j0 : NR;
        if (b_trans) {
            if (nw < NR) memset(panel, 0, (size_t)(kc * NR) * sizeof(float));
            for (int64_t c = 0; c < nw; c++) {         /* c: column = row of B^T, read along k */
                const float *bt = B + (j0 + c) * ldb + pc;
                for (int64_t k = 0; k < kc; k++) panel[k * NR + c] = bt[k];
            }
        } else {
            for (int64_t k = 0; k < kc; k++) {         /* k: row of B, nw contiguous floats */
                memcpy(panel + k * NR, B + (pc + k) * ldb + j0, (size_t)nw * sizeof(float));
                if (nw < NR) memset(panel + k * NR + nw, 0, (size_t)(NR - nw) * sizeof(float));
            }
        }
    }
}

/* All of B, block after block: block pc at bp + pc * ceil(N/NR) * NR   bp: [K][N up to NR] */
static inline void gemm_impl_pack_all(const float *B, int64_t ldb, bool b_trans, int64_t N, int64_t K, float *bp,
                                 const int NR)
{
    const int64_t np = (N + NR - 1) / NR, kb = gemm_kc(N, K);
    for (int64_t pc = 0; pc < K; pc += kb)
        gemm_impl_pack_b(bp + pc * np * NR, B, ldb, b_trans, N, pc, K - pc < kb ? K - pc : kb, NR);
}

/* packed: B as gemm_pack_all laid it out (B, ldb, b_trans, pack unused), or NULL */
static inline void gemm_impl_drive(int64_t m0, int64_t m1, int64_t N, int64_t K, const float *A, int64_t lda,
                              const float *B, int64_t ldb, bool b_trans, const float *packed, float *C,
                              int64_t ldc, float *pack, const int MR, const int NR, gemm_tile_fn tile)
{
    if (m0 >= m1 || N <= 0) return;
    if (K <= 0) {
        for (int64_t i = m0; i < m1; i++) memset(C + i * ldc, 0, (size_t)N * sizeof(float));
        return;
    }
    const int64_t np = (N + NR - 1) / NR;
    const int64_t kb = gemm_kc(N, K);
    for (int64_t pc = 0; pc < K; pc += kb) {           /* pc: first k of the block */
        const int64_t kc = K - pc < kb ? K - pc : kb;
        const float *bp = packed ? packed + pc * np * NR : pack;
        if (!packed) gemm_impl_pack_b(pack, B, ldb, b_trans, N, pc, kc, NR);
        for (int64_t i0 = m0; i0 < m1; i0 += MR) {     /* i0: first row of the block */
            const int mr = m1 - i0 < MR ? (int)(m1 - i0) : MR;
            for (int64_t p = 0; p < np; p++) {         /* p: column panel */
                const int nw = N - p * NR < NR ? (int)(N - p * NR) : NR;
                tile(mr, nw, kc, A + i0 * lda + pc, lda, bp + p * kc * NR, C + i0 * ldc + p * NR, ldc, pc > 0);
            }
        }
    }
}

#endif
