/* test_gemm.c - the GEMM (kern/gemm.h) and the GELU (kern/act.h).
 *
 * What is proven, for the scalar reference and every ISA set this CPU runs (a set the CPU
 * lacks is skipped):
 *   - gemm_f32 (B as rows and B^T) equals a double-precision triple loop written here
 *     within TOL_GEMM_REL of sum_k |A[i][k] B[k][j]| (+ a tiny absolute floor) for every
 *     M, N and K from 1 to 70 (each swept with the other two random in 1..70), K across
 *     the K-block size (gemm_kc(512, K) = 256: K = 255..257, 513, 700), the two real
 *     shapes of Whisper's encoder attention with qkv's strides, random leading dimensions, sub-ranges [m0, m1) of the rows, and K = 0
 *     (C rows zeroed);
 *   - only C's rows [m0, m1) and columns [0, N) are written: guard values before, after,
 *     between rows (ldc > N) are intact, and so is a guard past the packing buffer;
 *   - the two-step form (gemm_pack_b once, gemm_f32_packed) gives C bitwise equal to
 *     gemm_f32's, writes nothing past gemm_packed_floats(N, K), and the public dispatch
 *     (gemm_f32, gemm_pack_b + gemm_f32_packed) is the set gemm_best() names;
 *   - act_gelu (with and without the fused bias) equals 0.5 x erfc(-x / sqrt 2) in double
 *     within TOL_GELU_REL relative (every 2^-14 over [-10, 10], and the tails to 20, 1e4,
 *     3e38; below FLT_MIN an absolute 1e-37), and the fused bias is bitwise gelu(y + b).
 * The measured errors are printed (act.h quotes them). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern/act.h"
#include "kern/cpu.h"
#include "kern/gemm.h"

/* Float sums of K products in a different order than the double reference: each output
 * within TOL_GEMM_REL * sum_k |a_k b_k|; K <= 1500 gives at most ~K/2 * 2^-24 ~ 4.5e-5
 * in the worst case, ~1e-6 for random signs. */
#define TOL_GEMM_REL 2e-5
/* GELU: erfcc (1.2e-7) plus the final rounding to float (2^-24); measured 1.63e-7 (act.h) */
#define TOL_GELU_REL 2e-7

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return rng;
}
static int64_t rnd_in(int64_t lo, int64_t hi) { return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1)); }
static float rnd_f(void) { return (float)((double)(rnd() >> 11) * 0x1p-53 * 2.0 - 1.0); }

typedef struct gemm_set { const char *name; gemm_fn fn; gemm_pack_b_fn pack_b; gemm_packed_fn packed; } gemm_set;

static int gemm_sets(gemm_set *s)
{
    int n = 0;
    s[n++] = (gemm_set){ "ref", gemm_f32_ref, gemm_pack_b_ref, gemm_f32_packed_ref };
    const cpu_features *c = cpu_get();
    const gemm_isa_kernels *k[2] = { gemm_avx2_kernels(), gemm_avx512_kernels() };
    if (k[0] && cpu_has_avx2_set(c)) s[n++] = (gemm_set){ k[0]->name, k[0]->gemm_f32, k[0]->pack_b, k[0]->gemm_f32_packed };
    if (k[1] && cpu_has_avx512_set(c))
        s[n++] = (gemm_set){ k[1]->name, k[1]->gemm_f32, k[1]->pack_b, k[1]->gemm_f32_packed };
    return n;
}

#define GUARD 12345.678f
enum { PACK_GUARD = 64 };

/* One call of fn on random data of this shape, checked against double. A, B live in
 * buffers of the given leading dimensions; C has G guard rows on each side. */
static void check_gemm(const gemm_set *s, int64_t M, int64_t N, int64_t K, int64_t m0, int64_t m1, int64_t lda,
                       int64_t ldb, bool trans, int64_t ldc, const float *Abuf, const float *Bbuf)
{
    enum { G = 2 };
    const int64_t brows = trans ? N : K;
    float *A = malloc(sizeof(float) * (size_t)(M * lda + 1)), *B = malloc(sizeof(float) * (size_t)(brows * ldb + 1));
    float *Cb = malloc(sizeof(float) * (size_t)((M + 2 * G) * ldc)), *C = Cb + G * ldc;
    const size_t pf = gemm_pack_floats(N, K);
    float *pack = aligned_alloc(64, (pf + PACK_GUARD + 15) / 16 * 16 * sizeof(float));
    assert_non_null(A); assert_non_null(B); assert_non_null(Cb); assert_non_null(pack);
    for (int64_t i = 0; i < M * lda; i++) A[i] = Abuf ? Abuf[i] : rnd_f();
    for (int64_t i = 0; i < brows * ldb; i++) B[i] = Bbuf ? Bbuf[i] : rnd_f();
    for (int64_t i = 0; i < (M + 2 * G) * ldc; i++) Cb[i] = GUARD;
    for (size_t i = pf; i < pf + PACK_GUARD; i++) pack[i] = GUARD;
    s->fn(m0, m1, N, K, A, lda, B, ldb, trans, C, ldc, pack);
    for (size_t i = pf; i < pf + PACK_GUARD; i++)
        if (pack[i] != GUARD) fail_msg("%s: packing buffer overrun at %zu (M %ld N %ld K %ld)", s->name, i, (long)M, (long)N, (long)K);
    for (int64_t i = -G; i < M + G; i++)           /* i: row of C, guards included */
        for (int64_t j = 0; j < ldc; j++) {
            const float got = C[i * ldc + j];
            if (i < m0 || i >= m1 || j >= N) {
                if (got != GUARD)
                    fail_msg("%s: C[%ld][%ld] written outside rows [%ld, %ld) x N %ld (K %ld)", s->name, (long)i,
                             (long)j, (long)m0, (long)m1, (long)N, (long)K);
                continue;
            }
            double ref = 0, mag = 0;
            for (int64_t k = 0; k < K; k++) {
                const double p = (double)A[i * lda + k] * (double)(trans ? B[j * ldb + k] : B[k * ldb + j]);
                ref += p;
                mag += fabs(p);
            }
            if (fabs((double)got - ref) > TOL_GEMM_REL * mag + 1e-30)
                fail_msg("%s: M %ld N %ld K %ld trans %d rows [%ld,%ld): C[%ld][%ld] = %.9g, want %.9g (sum|ab| %g)",
                         s->name, (long)M, (long)N, (long)K, (int)trans, (long)m0, (long)m1, (long)i, (long)j,
                         (double)got, ref, mag);
        }
    /* the two-step form: B packed once, then the same rows: bitwise the same C */
    const size_t qf = gemm_packed_floats(N, K);
    float *bp = aligned_alloc(64, (qf + PACK_GUARD + 15) / 16 * 16 * sizeof(float));
    float *C2 = malloc(sizeof(float) * (size_t)((M + 2 * G) * ldc));
    assert_non_null(bp); assert_non_null(C2);
    for (size_t i = qf; i < qf + PACK_GUARD; i++) bp[i] = GUARD;
    for (int64_t i = 0; i < (M + 2 * G) * ldc; i++) C2[i] = GUARD;
    s->pack_b(B, ldb, trans, N, K, bp);
    for (size_t i = qf; i < qf + PACK_GUARD; i++)
        if (bp[i] != GUARD) fail_msg("%s: gemm_pack_b overrun at %zu (N %ld K %ld)", s->name, i, (long)N, (long)K);
    s->packed(m0, m1, N, K, A, lda, bp, C2 + G * ldc, ldc);
    if (memcmp(C2, Cb, sizeof(float) * (size_t)((M + 2 * G) * ldc)))
        fail_msg("%s: gemm_f32_packed differs from gemm_f32 (M %ld N %ld K %ld trans %d)", s->name, (long)M, (long)N,
                 (long)K, (int)trans);
    free(bp); free(C2);
    free(A); free(B); free(Cb); free(pack);
}

/* random strides and sub-range for (M, N, K) */
static void check_random(const gemm_set *s, int64_t M, int64_t N, int64_t K)
{
    const bool trans = rnd() & 1;
    const int64_t lda = K + rnd_in(0, 5), ldb = (trans ? K : N) + rnd_in(0, 5), ldc = N + rnd_in(0, 5);
    int64_t m0 = 0, m1 = M;
    if (M > 1 && (rnd() & 1)) {
        m0 = rnd_in(0, M - 1);
        m1 = rnd_in(m0 + 1, M);
    }
    check_gemm(s, M, N, K, m0, m1, lda, ldb, trans, ldc, NULL, NULL);
}

static void test_gemm_shapes(void **state)
{
    (void)state;
    gemm_set sets[3];
    const int ns = gemm_sets(sets);
    for (int si = 0; si < ns; si++) {
        const gemm_set *s = &sets[si];
        for (int64_t v = 1; v <= 70; v++) {
            check_random(s, v, rnd_in(1, 70), rnd_in(1, 70));
            check_random(s, rnd_in(1, 70), v, rnd_in(1, 70));
            check_random(s, rnd_in(1, 70), rnd_in(1, 70), v);
        }
        /* K blocks: gemm_kc(512, K) = 256 */
        const int64_t ks[] = { 255, 256, 257, 513, 700 };
        for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
            assert_int_equal(gemm_kc(512, ks[i]), ks[i] < 256 ? ks[i] : 256);
            for (int tr = 0; tr < 2; tr++)
                check_gemm(s, 17, 512, ks[i], 3, 16, ks[i] + 1, (tr ? ks[i] : 512) + 3, tr, 515, NULL, NULL);
        }
        check_gemm(s, 5, 33, 300, 0, 5, 300, 33, false, 40, NULL, NULL);
        check_gemm(s, 9, 7, 0, 2, 8, 1, 7, false, 7, NULL, NULL);   /* K = 0: rows zeroed */
        check_gemm(s, 9, 7, 0, 2, 8, 1, 1, true, 9, NULL, NULL);
        printf("gemm %s: shapes 1..70, K blocks, K = 0: ok\n", s->name);
    }
}

/* Whisper's two shapes with qkv's layout: S = Q K^T (B^T = K_h rows) and O = P V (B = V_h rows) */
static void test_gemm_whisper(void **state)
{
    (void)state;
    const int64_t A = 1500, hd = 64, ld = 1152;
    gemm_set sets[3];
    const int ns = gemm_sets(sets);
    for (int si = 0; si < ns; si++) {
        /* rows [m0, m1) of each (the double reference of all 1500 would be 2 x 144M products) */
        check_gemm(&sets[si], A, A, hd, 31, 31 + 97, ld, ld, true, A, NULL, NULL);
        check_gemm(&sets[si], A, hd, A, 1403, A, A, ld, false, 3 * 384, NULL, NULL);
        printf("gemm %s: (1500,1500,64) B^T and (1500,64,1500) B: ok\n", sets[si].name);
    }
}

static void test_gemm_dispatch(void **state)
{
    (void)state;
    const int64_t M = 23, N = 37, K = 300;
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N);
    float *C1 = malloc(sizeof(float) * M * N), *C2 = malloc(sizeof(float) * M * N), *C3 = malloc(sizeof(float) * M * N);
    float *pack = aligned_alloc(64, gemm_pack_floats(N, K) * sizeof(float) + 64);
    float *bp = aligned_alloc(64, gemm_packed_floats(N, K) * sizeof(float) + 64);
    assert_true(A && B && C1 && C2 && C3 && pack && bp);
    for (int64_t i = 0; i < M * K; i++) A[i] = rnd_f();
    for (int64_t i = 0; i < K * N; i++) B[i] = rnd_f();
    const gemm_isa_kernels *k = gemm_best();
    const cpu_features *c = cpu_get();
    if (cpu_has_avx512_set(c) && gemm_avx512_kernels()) assert_ptr_equal(k, gemm_avx512_kernels());
    else if (cpu_has_avx2_set(c) && gemm_avx2_kernels()) assert_ptr_equal(k, gemm_avx2_kernels());
    else assert_null(k);
    gemm_f32(0, M, N, K, A, K, B, N, false, C1, N, pack);
    (k ? k->gemm_f32 : gemm_f32_ref)(0, M, N, K, A, K, B, N, false, C2, N, pack);
    gemm_pack_b(B, N, false, N, K, bp);
    gemm_f32_packed(0, M, N, K, A, K, bp, C3, N);
    assert_memory_equal(C1, C2, sizeof(float) * M * N);
    assert_memory_equal(C1, C3, sizeof(float) * M * N);
    free(A); free(B); free(C1); free(C2); free(C3); free(pack); free(bp);
}

/* ---- GELU ------------------------------------------------------------------------------- */
typedef struct gelu_set { const char *name; act_gelu_fn fn; } gelu_set;

static double gelu_d(double x) { return 0.5 * x * erfc(-x * 0.70710678118654752440); }

static void test_gelu(void **state)
{
    (void)state;
    gelu_set sets[3];
    int ns = 0;
    sets[ns++] = (gelu_set){ "ref", act_gelu_ref };
    const cpu_features *c = cpu_get();
    if (act_avx2_kernels() && cpu_has_avx2_set(c)) sets[ns++] = (gelu_set){ "avx2", act_avx2_kernels()->gelu };
    if (act_avx512_kernels() && cpu_has_avx512_set(c)) sets[ns++] = (gelu_set){ "avx512", act_avx512_kernels()->gelu };
    /* x: every 2^-14 of [-10, 10], then tails */
    const int64_t nd = 20 * 16384 + 1;
    const float tails[] = { -20.0f, -17.5f, -15.0f, -13.5f, -13.0f, -12.0f, -11.0f, -10.5f, 10.5f, 12.0f, 15.0f,
                            20.0f,  1e4f,   -1e4f,  3e38f,  -3e38f, 1e-30f, -1e-30f, 0.0f,   -0.0f, 1e-40f };
    const int64_t nt = (int64_t)(sizeof tails / sizeof *tails), n = nd + nt;
    float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
    float *b = malloc(sizeof(float) * (size_t)n), *y2 = malloc(sizeof(float) * (size_t)n);
    assert_non_null(x); assert_non_null(y); assert_non_null(b); assert_non_null(y2);
    for (int64_t i = 0; i < nd; i++) x[i] = -10.0f + (float)i * 0x1p-14f;
    for (int64_t i = 0; i < nt; i++) x[nd + i] = tails[i];
    for (int si = 0; si < ns; si++) {
        const gelu_set *s = &sets[si];
        memcpy(y, x, sizeof(float) * (size_t)n);
        s->fn(y, NULL, n);
        double worst_neg = 0, worst_pos = 0, worst_abs = 0;
        float xw = 0;
        for (int64_t i = 0; i < n; i++) {
            const double ref = gelu_d((double)x[i]), e = fabs((double)y[i] - ref);
            if (!isfinite(ref)) continue;
            if (fabs(ref) < FLT_MIN) {
                if (e > 1e-37) fail_msg("%s: gelu(%g) = %g, want %g", s->name, (double)x[i], (double)y[i], ref);
                continue;
            }
            const double rel = e / fabs(ref);
            if (rel > TOL_GELU_REL)
                fail_msg("%s: gelu(%.9g) = %.9g, want %.9g (rel %.3g)", s->name, (double)x[i], (double)y[i], ref, rel);
            if (x[i] <= 0 && rel > worst_neg) { worst_neg = rel; xw = x[i]; }
            if (x[i] > 0 && rel > worst_pos) worst_pos = rel;
            if (e > worst_abs) worst_abs = e;
        }
        /* the fused bias: gelu(y + b) bitwise, at every length 0..40 (tails) */
        for (int64_t i = 0; i < n; i++) {
            b[i] = rnd_f();
            y2[i] = x[i] + b[i];
        }
        memcpy(y, x, sizeof(float) * (size_t)n);
        s->fn(y, b, n);
        s->fn(y2, NULL, n);
        assert_memory_equal(y, y2, sizeof(float) * (size_t)n);
        for (int64_t len = 0; len <= 40; len++) {
            float a[48], r[48];
            for (int i = 0; i < 48; i++) a[i] = r[i] = rnd_f() * 4.0f;
            s->fn(a, NULL, len);
            act_gelu_ref(r, NULL, len);
            for (int i = 0; i < 48; i++) {
                if (i >= len) assert_true(a[i] == r[i]);    /* untouched past n */
                else assert_true(fabs((double)a[i] - (double)r[i]) <= TOL_GELU_REL * fabs((double)r[i]) + 1e-37);
            }
        }
        printf("gelu %s: max rel error %.3g for x <= 0 (at %g), %.3g for x > 0; max abs %.3g\n", s->name,
               worst_neg, (double)xw, worst_pos, worst_abs);
    }
    /* the formula this replaces, for the record */
    double worst = 0;
    for (int64_t i = 0; i < nd; i++) {
        const float g = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
        const double ref = gelu_d((double)x[i]);
        if (x[i] > -5.0f && fabs(ref) >= FLT_MIN && fabs(g - ref) / fabs(ref) > worst) worst = fabs(g - ref) / fabs(ref);
    }
    printf("gelu 0.5x(1+erff): max rel error %.3g over [-5, 10]\n", worst);
    free(x); free(y); free(b); free(y2);
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_gemm_shapes),
        cmocka_unit_test(test_gemm_whisper),
        cmocka_unit_test(test_gemm_dispatch),
        cmocka_unit_test(test_gelu),
    };
    return cmocka_run_group_tests_name("gemm", t, NULL, NULL);
}
