/* gemm.c - see gemm.h: the scalar reference and the run-time choice of a kernel set.
 * Room: kern. May touch: kern/cpu. */
#include "kern/gemm.h"
#include "kern/cpu.h"

int64_t gemm_kc(int64_t N, int64_t K)
{
    const int64_t np = N > 0 ? (N + 31) / 32 * 32 : 32;
    int64_t kc = (512 * 1024 / (int64_t)sizeof(float)) / np;
    if (kc < 256) kc = 256;
    return kc < K ? kc : (K > 0 ? K : 1);
}

size_t gemm_pack_floats(int64_t N, int64_t K)
{
    return (size_t)(gemm_kc(N, K) * ((N > 0 ? N : 1) + 31) / 32 * 32);   /* B block: [kc][N up to 32] */
}

void gemm_f32_ref(int64_t m0, int64_t m1, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, bool b_trans, float *C, int64_t ldc, float *pack)
{
    (void)pack;
    for (int64_t i = m0; i < m1; i++)            /* i: row of A and C */
        for (int64_t j = 0; j < N; j++) {        /* j: column of B and C */
            float s = 0.0f;
            for (int64_t k = 0; k < K; k++)       /* k: inner */
                s += A[i * lda + k] * (b_trans ? B[j * ldb + k] : B[k * ldb + j]);
            C[i * ldc + j] = s;
        }
}

size_t gemm_packed_floats(int64_t N, int64_t K)
{
    return (size_t)((K > 0 ? K : 1) * (((N > 0 ? N : 1) + 31) / 32 * 32));   /* [K][N up to 32] */
}

/* The reference's packed B is B itself, dense: bp[k][j] = B[k][j]        bp: [K][N] */
void gemm_pack_b_ref(const float *B, int64_t ldb, bool b_trans, int64_t N, int64_t K, float *bp)
{
    for (int64_t k = 0; k < K; k++)
        for (int64_t j = 0; j < N; j++) bp[k * N + j] = b_trans ? B[j * ldb + k] : B[k * ldb + j];
}

void gemm_f32_packed_ref(int64_t m0, int64_t m1, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *bp, float *C, int64_t ldc)
{
    gemm_f32_ref(m0, m1, N, K, A, lda, bp, N, false, C, ldc, NULL);
}

const gemm_isa_kernels *gemm_best(void)
{
    const cpu_features *c = cpu_get();
    if (gemm_avx512_kernels() && cpu_has_avx512_set(c)) return gemm_avx512_kernels();
    if (gemm_avx2_kernels() && cpu_has_avx2_set(c)) return gemm_avx2_kernels();
    return NULL;
}

void gemm_f32(int64_t m0, int64_t m1, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
              int64_t ldb, bool b_trans, float *C, int64_t ldc, float *pack)
{
    const gemm_isa_kernels *k = gemm_best();
    (k ? k->gemm_f32 : gemm_f32_ref)(m0, m1, N, K, A, lda, B, ldb, b_trans, C, ldc, pack);
}

void gemm_pack_b(const float *B, int64_t ldb, bool b_trans, int64_t N, int64_t K, float *bp)
{
    const gemm_isa_kernels *k = gemm_best();
    (k ? k->pack_b : gemm_pack_b_ref)(B, ldb, b_trans, N, K, bp);
}

void gemm_f32_packed(int64_t m0, int64_t m1, int64_t N, int64_t K, const float *A, int64_t lda, const float *bp,
                     float *C, int64_t ldc)
{
    const gemm_isa_kernels *k = gemm_best();
    (k ? k->gemm_f32_packed : gemm_f32_packed_ref)(m0, m1, N, K, A, lda, bp, C, ldc);
}
