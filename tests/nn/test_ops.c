/* test_ops.c - element-wise and per-head operations of nn/ops.h that the
 * real-model tests do not pin down on their own.
 *  - ops_hadamard against the explicit Sylvester matrix H[i][j] =
 *    (-1)^popcount(i & j) / sqrt(n), per head, and its own inverse (H H x = x),
 *    so attention in the rotated basis returns to the original one.
 *  - ops_geglu_tanh (gemma3's GeGLU) against 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3))) u
 *    in double, within the two f16 roundings ggml's table makes, over [-12, 12]
 *  - ops_rope_neox against rotating (x[i], x[i + d/2]) by pos * theta^(-2i/d) in double
 *  - a sliding window's first rows masked (attn_chunk.skip): the chunk over rows
 *    [skip, n) equals the chunk over those rows alone
 * Room: tests/nn. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <cmocka.h>

#include "nn/ops.h"
#include "kern/attn.h"
#include <string.h>

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

static void test_geglu_tanh(void **state)
{
    (void)state;
    for (int i = -12 * 256; i <= 12 * 256; i++) {
        const float x = (float)i / 256.0f + 1.0f / 1024.0f;   /* [n] = 1 element at a time */
        float g = x, u = 1.5f;
        ops_geglu_tanh(&g, &u, 1);
        const double xd = x, want = 0.5 * xd * (1.0 + tanh(0.7978845608028654 * (xd + 0.044715 * xd * xd * xd))) * 1.5;
        /* x rounded to f16 (relative 2^-11, times |gelu'| <= 1.13) and the table's value to f16 */
        const double tol = x <= -10.0f || x >= 10.0f ? 1e-6 : 1.13 * fabs(xd) * 1.5 / 2048.0 + fabs(want) / 2048.0 + 1e-7;
        if (fabs(g - want) > tol) fail_msg("geglu(%g): %g vs %g", (double)x, (double)g, want);
    }
    float g = -11.0f, u = 3.0f;
    ops_geglu_tanh(&g, &u, 1);
    assert_true(g == 0.0f);
}

static void test_rope_neox(void **state)
{
    (void)state;
    enum { HD = 256, HEADS = 2 };
    float cs[HD], x[HEADS * HD], y[HEADS * HD];
    const int64_t pos = 1234;
    ops_rope_table(cs, pos, HD, 10000.0f);
    for (int i = 0; i < HEADS * HD; i++) x[i] = y[i] = frand();
    ops_rope_neox(y, cs, HEADS, HD);
    for (int h = 0; h < HEADS; h++)
        for (int i = 0; i < HD / 2; i++) {
            const double ang = (double)pos * pow(10000.0, -2.0 * i / HD), a = x[h * HD + i], b = x[h * HD + i + HD / 2];
            const double w0 = a * cos(ang) - b * sin(ang), w1 = a * sin(ang) + b * cos(ang);
            /* the table builds angles by repeated products in float: ~i ulps of an angle up to 1234 */
            if (fabs(y[h * HD + i] - w0) > 2e-3 || fabs(y[h * HD + i + HD / 2] - w1) > 2e-3)
                fail_msg("head %d pair %d: %g %g vs %g %g", h, i, (double)y[h * HD + i], (double)y[h * HD + i + HD / 2], w0, w1);
        }
}

static void test_window_skip(void **state)
{
    (void)state;
    enum { HD = 64, NB = 3, N = NB * ATTN_BLOCK, SKIP = 7 };
    static float k[NB][HD * ATTN_BLOCK], v[NB][ATTN_BLOCK * HD], k2[NB][HD * ATTN_BLOCK], v2[NB][ATTN_BLOCK * HD];
    float q[HD];
    for (int b = 0; b < NB; b++)
        for (int i = 0; i < HD * ATTN_BLOCK; i++) k[b][i] = frand(), v[b][i] = frand();
    for (int i = 0; i < HD; i++) q[i] = frand();
    /* the same rows shifted so that row SKIP comes first, the tail padded with copies */
    memset(k2, 0, sizeof k2);
    memset(v2, 0, sizeof v2);
    for (int j = SKIP; j < N; j++)
        for (int c = 0; c < HD; c++) {
            const int d = j - SKIP;
            k2[d / ATTN_BLOCK][c * ATTN_BLOCK + d % ATTN_BLOCK] = k[j / ATTN_BLOCK][c * ATTN_BLOCK + j % ATTN_BLOCK];
            v2[d / ATTN_BLOCK][(d % ATTN_BLOCK) * HD + c] = v[j / ATTN_BLOCK][(j % ATTN_BLOCK) * HD + c];
        }
    const void *kb[NB] = { k[0], k[1], k[2] }, *vb[NB] = { v[0], v[1], v[2] };
    const void *kb2[NB] = { k2[0], k2[1], k2[2] }, *vb2[NB] = { v2[0], v2[1], v2[2] };
    const attn_chunk masked = { kb, vb, HD, N, 1, ATTN_F32, ATTN_F32, SKIP };
    const attn_chunk alone = { kb2, vb2, HD, N - SKIP, 1, ATTN_F32, ATTN_F32, 0 };
    static float scratch[ATTN_CHUNK + 3 * HD * ATTN_BLOCK + 64] __attribute__((aligned(64)));   /* attn_scratch_floats(1, HD) */
    float p1[ATTN_PART(HD)], p2[ATTN_PART(HD)], o1[HD], o2[HD];
    const attn_kernels *sets[] = { attn_scalar(), attn_for(HD) };
    for (int s = 0; s < 2; s++) {
        attn_chunk_run(sets[s], p1, q, 1, HD, 0.125f, &masked, scratch);
        attn_chunk_run(sets[s], p2, q, 1, HD, 0.125f, &alone, scratch);
        attn_finish(o1, p1, 1, HD);
        attn_finish(o2, p2, 1, HD);
        for (int i = 0; i < HD; i++)
            if (fabsf(o1[i] - o2[i]) > 1e-5f * (1.0f + fabsf(o2[i]))) fail_msg("%s [%d]: %g vs %g", sets[s]->name, i,
                                                                            (double)o1[i], (double)o2[i]);
    }
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_hadamard),
        cmocka_unit_test(test_geglu_tanh),
        cmocka_unit_test(test_rope_neox),
        cmocka_unit_test(test_window_skip),
    };
    return cmocka_run_group_tests_name("ops", t, NULL, NULL);
}
