/* bench_gemm.c - kernel lab timing of gemm_f32 (kern/gemm.h), 1 thread, on Whisper
 * tiny.en's encoder attention shapes, against matmul_rows' F32 tiled kernels as
 * src/nn/whisper.c called them before the GEMM:
 *   S = Q_h K_h^T   (M, N, K) = (1500, 1500, 64)    Q, K_h: rows of qkv at stride 3 D = 1152
 *   O = P V_h       (M, N, K) = (1500, 64, 1500)    V_h: rows of qkv; matmul_rows: V_h^T [64][1500]
 * and as the encoder runs them (B packed once, then gemm_f32_packed on blocks of 42 rows).
 *   build/bench_gemm [avx512|avx2|ref]    GFLOP/s (2 M N K / time), each with its fraction of
 * the 1-thread FMA peak of the mode's ISA (roof.h: 16 independent vfmadd231ps zmm, 12 ymm;
 * from build/peak.txt, or measured briefly first; ref: the zmm peak when there is one;
 * matmul_rows runs the fast table whatever the mode, and is held to its ISA's peak). */
#include "kern/gemm.h"
#include "kern/matmul.h"
#include "kern/quant.h"
#include "kern/cpu.h"
#include "roof.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;
static float rndf(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((int64_t)(rng % 2001) - 1000) * 1e-3f;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "avx512";
    gemm_fn fn = gemm_f32_ref;
    if (!strcmp(mode, "avx512") && gemm_avx512_kernels() && cpu_has_avx512_set(cpu_get()))
        fn = gemm_avx512_kernels()->gemm_f32;
    else if (!strcmp(mode, "avx2") && gemm_avx2_kernels() && cpu_has_avx2_set(cpu_get()))
        fn = gemm_avx2_kernels()->gemm_f32;
    else if (strcmp(mode, "ref")) {
        fprintf(stderr, "mode %s not available\n", mode);
        return 1;
    }
    const int64_t A = 1500, D = 384, hd = 64, ld = 3 * D;
    float *qkv = aligned_alloc(64, sizeof(float) * (size_t)(A * ld));
    float *S = aligned_alloc(64, sizeof(float) * (size_t)(A * A));
    float *O = aligned_alloc(64, sizeof(float) * (size_t)(A * D));
    float *vt = aligned_alloc(64, sizeof(float) * (size_t)(hd * A));
    float *pack = aligned_alloc(64, sizeof(float) * gemm_pack_floats(A, A));
    for (int64_t i = 0; i < A * ld; i++) qkv[i] = rndf();
    for (int64_t i = 0; i < A * A; i++) S[i] = rndf() * 1e-3f;
    for (int64_t d = 0; d < hd; d++)
        for (int64_t s = 0; s < A; s++) vt[d * A + s] = qkv[s * ld + 2 * D + d];
    const quant_traits *f32 = quant_get_fast(QT_F32);
    const double flop = 2.0 * (double)A * (double)A * (double)hd;
    const int reps = strcmp(mode, "ref") ? 10 : 1;
    float *kp = aligned_alloc(64, sizeof(float) * gemm_packed_floats(A, hd));
    float *vp = aligned_alloc(64, sizeof(float) * gemm_packed_floats(hd, A));
    gemm_pack_b_fn pack_b = gemm_pack_b_ref;
    gemm_packed_fn packed = gemm_f32_packed_ref;
    for (int i = 0; i < 2; i++) {
        const gemm_isa_kernels *k = i ? gemm_avx2_kernels() : gemm_avx512_kernels();
        if (k && fn == k->gemm_f32) { pack_b = k->pack_b; packed = k->gemm_f32_packed; }
    }
    double best[6] = { 1e9, 1e9, 1e9, 1e9, 1e9, 1e9 };
    for (int r = 0; r < reps; r++) {
        double t = now();
        fn(0, A, A, hd, qkv, ld, qkv + D, ld, true, S, A, pack);                      /* S = Q K^T */
        double u = now();
        if (u - t < best[0]) best[0] = u - t;
        t = now();
        matmul_rows(f32, qkv + D, sizeof(float) * (size_t)ld, 0, A, qkv, sizeof(float) * (size_t)ld, A, hd, S, A);
        u = now();
        if (u - t < best[1]) best[1] = u - t;
        t = now();
        fn(0, A, hd, A, S, A, qkv + 2 * D, ld, false, O, D, pack);                    /* O = P V */
        u = now();
        if (u - t < best[2]) best[2] = u - t;
        t = now();
        matmul_rows(f32, vt, sizeof(float) * (size_t)A, 0, hd, S, sizeof(float) * (size_t)A, A, A, O, D);
        u = now();
        if (u - t < best[3]) best[3] = u - t;
        /* the encoder's path: B packed once, then blocks of 42 rows (whisper.c) */
        t = now();
        pack_b(qkv + D, ld, true, A, hd, kp);
        for (int64_t r0 = 0; r0 < A; r0 += 42)
            packed(0, r0 + 42 < A ? 42 : A - r0, A, hd, qkv + r0 * ld, ld, kp, S + r0 * A, A);
        u = now();
        if (u - t < best[4]) best[4] = u - t;
        t = now();
        pack_b(qkv + 2 * D, ld, false, hd, A, vp);
        for (int64_t r0 = 0; r0 < A; r0 += 42)
            packed(0, r0 + 42 < A ? 42 : A - r0, hd, A, S + r0 * A, A, vp, O + r0 * D, D);
        u = now();
        if (u - t < best[5]) best[5] = u - t;
    }
    const roof_peaks *pk = roof_get();
    const int isa = !strcmp(mode, "avx2") || !cpu_has_avx512_set(cpu_get()) ? 256 : 512;
    const double peak = roof_fma(pk, isa, 0);
    const double peak_rows = roof_fma(pk, cpu_has_avx512_set(cpu_get()) ? 512 : 256, 0);  /* matmul_rows: the fast table */
    double gf[6];
    char pc[6][8];
    for (int i = 0; i < 6; i++) {
        gf[i] = flop / best[i] * 1e-9;
        roof_pct(pc[i], gf[i], i == 1 || i == 3 ? peak_rows : peak);
    }
    printf("roofline (1 thread): %s\n  FMA %s %.1f GFLOP/s (zmm %.1f, ymm %.1f; all %d threads: zmm %.1f, ymm %.1f)\n",
           pk->source, isa == 512 ? "zmm" : "ymm", peak, roof_fma(pk, 512, 0), roof_fma(pk, 256, 0), pk->n_cpu,
           roof_fma(pk, 512, 1), roof_fma(pk, 256, 1));
    printf("gemm %-6s  S = Q K^T (1500,1500,64): %6.1f GFLOP/s %4s   matmul_rows F32: %6.1f GFLOP/s %4s   (%.2fx)\n",
           mode, gf[0], pc[0], gf[1], pc[1], best[1] / best[0]);
    printf("gemm %-6s  O = P V   (1500,64,1500): %6.1f GFLOP/s %4s   matmul_rows F32: %6.1f GFLOP/s %4s   (%.2fx)\n",
           mode, gf[2], pc[2], gf[3], pc[3], best[3] / best[2]);
    printf("gemm %-6s  packed once, 42-row blocks: S %6.1f GFLOP/s %4s (%.2fx), P V %6.1f GFLOP/s %4s (%.2fx)\n", mode,
           gf[4], pc[4], best[1] / best[4], gf[5], pc[5], best[3] / best[5]);
    free(qkv); free(S); free(O); free(vt); free(pack); free(kp); free(vp);
    return 0;
}
