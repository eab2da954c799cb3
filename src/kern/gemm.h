/* gemm.h - single-precision C = A B, a classic register-blocked GEMM for activations x
 * activations (Whisper's encoder attention: S = Q_h K_h^T and O_h = P V_h).
 * Room: kern. May touch: kern/cpu only. Raw pointers and integers in; no threads (the
 * caller splits the rows [m0, m1) among threads) and no allocation (the caller gives
 * each thread a packing buffer).
 *
 *   A: [M][lda]                          row i at A + i * lda, K floats used
 *   B: [K][ldb]      (b_trans = false)   B[k][j] at B + k * ldb + j      (P V: V_h rows)
 *   B^T: [N][ldb]    (b_trans = true)    B[k][j] at B + j * ldb + k      (Q K^T: K_h rows)
 *   C: [M][ldc]                          rows [m0, m1), columns [0, N) written; nothing
 *                                        else of C (before, after, past N) is touched
 *   C[i][j] = sum_{k < K} A[i][k] * B[k][j]            (K = 0: C rows set to 0)
 *
 * No bitwise contract: the summation order depends on the ISA and on K's blocking (the
 * fast kernels sum in float over K blocks of gemm_kc(N, K)), so results match the scalar
 * reference only within rounding (tests/kern/test_gemm.c: TOL_GEMM_REL of sum |a b|).
 * Use it where a row's result need not equal another path's, e.g. the encoder, which runs
 * once per window through the same code every time.
 *
 * Speed (dev/kernels/bench_gemm, 1 thread, shared 2-core Xeon, peak 222 GFLOP/s): avx512
 * S = Q K^T (1500, 1500, 64) 150 GFLOP/s, P V (1500, 64, 1500) 175, vs matmul_rows' F32
 * tiled dot products 70 and 98 (2.2x, 1.8x); avx2 95 and 100. */
#ifndef KVLM_KERN_GEMM_H
#define KVLM_KERN_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* K is taken in blocks of gemm_kc(N, K) rows of B: as many as keep the packed block
 * (kc x N floats) within 512 KB of L2, at least 256, at most K. One block means C is
 * written once; P V (N = 64, K = 1500: one block) ran at 166 GFLOP/s vs 142 with blocks
 * of 256 (the C tile re-read and re-written per block). */
int64_t gemm_kc(int64_t N, int64_t K);

/* Floats of the packing buffer gemm_f32 needs for (N, K): one block of B (gemm_kc(N, K)
 * rows, columns padded to 32). The buffer must be 64-byte aligned and is the caller's,
 * one per concurrent call. */
size_t gemm_pack_floats(int64_t N, int64_t K);

/* The fastest set this CPU runs (avx512, avx2, else the scalar reference). */
void gemm_f32(int64_t m0, int64_t m1, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
              int64_t ldb, bool b_trans, float *C, int64_t ldc, float *pack);

/* The spec: for each output, a float sum over k = 0 .. K-1 in order (pack unused). */
void gemm_f32_ref(int64_t m0, int64_t m1, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, bool b_trans, float *C, int64_t ldc, float *pack);

/* The same in two steps, for one B multiplied by many row blocks (the encoder computes a
 * head's attention 32 rows at a time, so S and P stay in L2): gemm_pack_b lays all of B
 * out for the kernels, once; gemm_f32_packed then takes bp in place of B and does no
 * packing. bp: gemm_packed_floats(N, K) floats, 64-byte aligned; its layout belongs to
 * the set that packed it (gemm_pack_b and gemm_f32_packed choose the same on one CPU;
 * a set's own pair must be used together). Results equal gemm_f32's bitwise. */
size_t gemm_packed_floats(int64_t N, int64_t K);
void gemm_pack_b(const float *B, int64_t ldb, bool b_trans, int64_t N, int64_t K, float *bp);
void gemm_f32_packed(int64_t m0, int64_t m1, int64_t N, int64_t K, const float *A, int64_t lda, const float *bp,
                     float *C, int64_t ldc);
void gemm_pack_b_ref(const float *B, int64_t ldb, bool b_trans, int64_t N, int64_t K, float *bp);
void gemm_f32_packed_ref(int64_t m0, int64_t m1, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *bp, float *C, int64_t ldc);

/* ---- ISA kernel sets (gemm_avx2.c, gemm_avx512.c) ---------------------------------------
 * NULL when the file was built without the ISA flags; calling one on a CPU without the
 * ISA is undefined (gemm_f32 checks cpu_get()). */
typedef void (*gemm_fn)(int64_t m0, int64_t m1, int64_t N, int64_t K, const float *A, int64_t lda,
                        const float *B, int64_t ldb, bool b_trans, float *C, int64_t ldc, float *pack);
typedef void (*gemm_pack_b_fn)(const float *B, int64_t ldb, bool b_trans, int64_t N, int64_t K, float *bp);
typedef void (*gemm_packed_fn)(int64_t m0, int64_t m1, int64_t N, int64_t K, const float *A, int64_t lda,
                               const float *bp, float *C, int64_t ldc);
typedef struct gemm_isa_kernels {
    const char    *name;   /* "avx2", "avx512" */
    gemm_fn        gemm_f32;
    gemm_pack_b_fn pack_b;
    gemm_packed_fn gemm_f32_packed;
} gemm_isa_kernels;
const gemm_isa_kernels *gemm_avx2_kernels(void);
const gemm_isa_kernels *gemm_avx512_kernels(void);

/* The set gemm_f32 uses on this CPU, or NULL (then the reference). */
const gemm_isa_kernels *gemm_best(void);

#endif
