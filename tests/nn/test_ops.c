/* test_ops.c - element-wise and per-head operations of nn/ops.h that the
 * real-model tests do not pin down on their own.
 *  - ops_hadamard against the explicit Sylvester matrix H[i][j] =
 *    (-1)^popcount(i & j) / sqrt(n), per head, and its own inverse (H H x = x),
 *    so attention in the rotated basis returns to the original one.
 * Room: tests/nn. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <cmocka.h>

#include "nn/ops.h"

static uint32_t rng = 4242;
static float frand(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static void test_hadamard(void **state)
{
    (void)state;
    static const int64_t dims[] = { 1, 2, 8, 64, 128 };
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        enum { HEADS = 3 };
        const int64_t n = dims[di];
        float x[HEADS * 128], y[HEADS * 128];
        for (int64_t i = 0; i < HEADS * n; i++) x[i] = y[i] = frand();
        ops_hadamard(y, HEADS, n);
        for (int64_t h = 0; h < HEADS; h++)
            for (int64_t i = 0; i < n; i++) {
                double want = 0.0;
                for (int64_t j = 0; j < n; j++)
                    want += (__builtin_popcountll((unsigned long long)(i & j)) & 1 ? -1.0 : 1.0) * x[h * n + j];
                want /= sqrt((double)n);
                if (fabs(y[h * n + i] - want) > 1e-5) fail_msg("n %lld head %lld [%lld]: %g vs %g", (long long)n,
                                                               (long long)h, (long long)i, (double)y[h * n + i], want);
            }
        ops_hadamard(y, HEADS, n);                    /* H H = I */
        for (int64_t i = 0; i < HEADS * n; i++) assert_true(fabsf(y[i] - x[i]) <= 1e-5f);
    }
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_hadamard),
    };
    return cmocka_run_group_tests_name("ops", t, NULL, NULL);
}
