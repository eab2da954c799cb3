/* test_vec.c - the attention row kernels: the AVX2 set against the scalar
 * specification (within float rounding), f16 rounding bit-exact against
 * f32_to_fp16, and the exactness contract: splitting rows into blocks or calls
 * changes no bit. Room: tests/kern. Skips the AVX2 checks on a CPU without it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>

#include "kern/cpu.h"
#include "kern/quant.h"
#include "kern/vec.h"

enum { N = 64, M = 37, STRIDE = 3 * N };

static uint32_t rng = 12345;
static float frand(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static float q[N], kf[M * STRIDE], p[M];
static uint16_t kh[M * STRIDE];

static void fill(void)
{
    for (int i = 0; i < N; i++) q[i] = frand();
    for (int i = 0; i < M * STRIDE; i++) { kf[i] = frand(); kh[i] = f32_to_fp16(kf[i]); }
    for (int j = 0; j < M; j++) p[j] = fabsf(frand()) / M;
}

static void close_enough(const float *a, const float *b, int n)
{
    for (int i = 0; i < n; i++) {
        float tol = 1e-5f * (1.0f + fabsf(b[i]));
        if (fabsf(a[i] - b[i]) > tol) fail_msg("element %d: %.9g vs %.9g", i, (double)a[i], (double)b[i]);
    }
}

/* one kernel set: qk and pv over M rows in one call vs blocks of 16 vs one row per call */
static void check_split(const vec_kernels *k)
{
    float s_all[M], s_blk[M], s_one[M];
    k->qk_f16(s_all, q, kh, STRIDE, M, N);
    for (int j0 = 0; j0 < M; j0 += 16) k->qk_f16(s_blk + j0, q, kh + (size_t)j0 * STRIDE, STRIDE, M - j0 < 16 ? M - j0 : 16, N);
    for (int j = 0; j < M; j++) k->qk_f16(s_one + j, q, kh + (size_t)j * STRIDE, STRIDE, 1, N);
    assert_memory_equal(s_all, s_blk, sizeof s_all);
    assert_memory_equal(s_all, s_one, sizeof s_all);
    float a_all[N] = { 0 }, a_blk[N] = { 0 };
    k->pv_f16(a_all, p, kh, STRIDE, M, N);
    for (int j0 = 0; j0 < M; j0 += 16) k->pv_f16(a_blk, p + j0, kh + (size_t)j0 * STRIDE, STRIDE, M - j0 < 16 ? M - j0 : 16, N);
    assert_memory_equal(a_all, a_blk, sizeof a_all);
}

static void test_scalar_split(void **state)
{
    (void)state;
    fill();
    check_split(vec_scalar());
}

static void test_avx2_vs_scalar(void **state)
{
    (void)state;
    const vec_kernels *a = vec_avx2_kernels(), *s = vec_scalar();
    if (!a || !cpu_has_avx2_set(cpu_get())) skip();
    fill();
    check_split(a);
    float sa[M], ss[M];
    a->qk_f16(sa, q, kh, STRIDE, M, N);
    s->qk_f16(ss, q, kh, STRIDE, M, N);
    close_enough(sa, ss, M);
    a->qk_f32(sa, q, kf, STRIDE, M, N);
    s->qk_f32(ss, q, kf, STRIDE, M, N);
    close_enough(sa, ss, M);
    float oa[N] = { 0 }, os[N] = { 0 };
    a->pv_f16(oa, p, kh, STRIDE, M, N);
    s->pv_f16(os, p, kh, STRIDE, M, N);
    close_enough(oa, os, N);
    memset(oa, 0, sizeof oa);
    memset(os, 0, sizeof os);
    a->pv_f32(oa, p, kf, STRIDE, M, N);
    s->pv_f32(os, p, kf, STRIDE, M, N);
    close_enough(oa, os, N);
    /* rounding to f16 is exact: the same bits as the scalar converter, ties and
     * subnormals and overflow included */
    float x[37], y[37];
    for (int i = 0; i < 37; i++) x[i] = y[i] = frand() * (i % 3 == 0 ? 1e-5f : i % 3 == 1 ? 7e4f : 1.0f);
    x[0] = y[0] = 1.0f + 1.0f / 2048.0f;   /* a tie: rounds to even */
    a->round_f16(x, 37);
    s->round_f16(y, 37);
    assert_memory_equal(x, y, sizeof x);
    assert_ptr_equal(vec_for(64), a);
    assert_ptr_equal(vec_for(60), s);   /* not a multiple of 8: scalar */
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_scalar_split),
        cmocka_unit_test(test_avx2_vs_scalar),
    };
    return cmocka_run_group_tests_name("vec", t, NULL, NULL);
}
