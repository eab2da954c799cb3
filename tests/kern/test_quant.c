/* test_quant.c - block formats, fp16/bf16, reference kernels and SIMD kernels.
 *
 * Independent references:
 *   - tests/data/quant/ (tests/ref/gen_quant_golden.py): the `gguf` Python package's
 *     dequantize and quantize on real model blocks, synthetic inputs and random K-quant
 *     blocks. Dequantization and the ggml-mirroring quantizers must match bit for bit.
 *   - fp16/bf16: exhaustive over all 2^16 encodings, and a nearest-value search over a
 *     sorted table of every half (no bit tricks shared with the code under test).
 *   - vec_dot: a double-precision dot of the dequantized rows.
 *   - the fixtures cache's quant/ (gen_quant_golden.py --vectors, run by scripts/gen-fixtures.sh):
 *     gguf's dequantization of Q5_0/Q4_K/Q5_K/Q6_K matrices, matched bit for bit.
 *   - SIMD kernels: the scalar reference, on every ISA set this CPU runs (the vec_dots of
 *     Q5_0 and the K-quants live in the matmul sets: tests/kern/test_matmul.c).
 * Tolerances are named below with the reason for each number. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern/cpu.h"
#include "kern/quant.h"
#include "util/testqvec.h"
#include "util/testutil.h"

/* ---- tolerances ----------------------------------------------------------------------------
 * Round trip (quantize then dequantize), max |x - x'| as a fraction of the block's max |x|
 * (32-element blocks; 256-element super-blocks for K-quants). Derived from the step size:
 *   Q8_0/Q8_1/Q8_K: d = amax/127, error <= d/2 plus fp16 rounding of d (127 * 2^-11 * d)
 *   Q4_0: d = amax/8 and the value opposite the max may clamp a whole step: d
 *   Q5_0: d = amax/16, same clamp: d.   Q4_1: range/15/2 (range <= 2 amax).   Q5_1: range/31/2
 *   K-quants (relative to the 256-element super-block max): half a step of the sub-block
 *   (Q2_K 1/3, Q3_K 1/6, Q4_K 1/15, Q5_K 1/31, Q6_K 1/62) plus the rounding of the
 *   integer sub-block scales, which can cost up to nmax * d_scale / 2 (Q2_K 4-bit: 1/15 +
 *   1/30 for mins; Q3_K 5-bit magnitudes: 1/62; Q4_K/Q5_K 6-bit: 2/126 + 1/126 for mins;
 *   Q6_K 8-bit: 1/254), plus fp16 slop. Measured worst on this seed: Q2_K 0.32, Q3_K 0.167,
 *   Q4_K 0.066, Q5_K 0.031, Q6_K 0.016. */
#define TOL_RT_Q8_0   0.0045
#define TOL_RT_Q4_0   0.126
#define TOL_RT_Q5_0   0.0635
#define TOL_RT_Q4_1   0.0690
#define TOL_RT_Q5_1   0.0340
#define TOL_RT_Q2_K   0.45
#define TOL_RT_Q3_K   0.19
#define TOL_RT_Q4_K   0.095
#define TOL_RT_Q5_K   0.060
#define TOL_RT_Q6_K   0.021
#define TOL_RT_F16    (1.0 / 2048)   /* relative to |x| (RNE half ulp is 2^-11) */
#define TOL_RT_BF16   (1.0 / 256)    /* 2^-8 */
/* vec_dot against sum(double(w_i) * double(x_i)) over the dequantized rows: float
 * accumulation over blocks, relative to sum |w_i x_i| (one float rounding per block,
 * <= 2^-24 each, summed over <= 64 blocks here, with margin). */
#define TOL_DOT_REL   2e-6
/* Q4_1/Q5_1 dots use s = fp16(d * sum q) of Q8_1 instead of the exact d*sum(q):
 * |error| <= |m_w| * 2^-10 * d_x * sum|q_x| per block (fp16 rounding of s and of d). */
#define TOL_DOT_S     (1.0 / 1024)
/* SIMD dot vs scalar dot: same integer sums per block, different float summation order
 * (8 or 16 lanes, FMA); relative to sum |w_i x_i| (+ sum |m_w s_x| for Q4_1), which bounds
 * every partial sum either side forms: a few roundings of 2^-24 each. */
#define TOL_SIMD_REL  1e-6

/* ---- deterministic random numbers --------------------------------------------------------- */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd_u64(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rnd_unif(void) { return (double)(rnd_u64() >> 11) * 0x1p-53; }
static float rnd_gauss(void)
{
    double u = rnd_unif(), v = rnd_unif();
    return (float)(sqrt(-2.0 * log(u + 1e-300)) * cos(2 * M_PI * v));
}
/* Gaussian values with a different scale every 32 elements (1e-3 .. 20), so blocks
 * with tiny and large d both occur; a few special blocks at the start. */
static void fill_input(float *x, int64_t n)
{
    for (int64_t b = 0; b < n; b += 32) {
        float s = (float)exp(rnd_unif() * 10 - 7);
        for (int64_t j = b; j < b + 32 && j < n; j++) x[j] = rnd_gauss() * s;
    }
    if (n >= 128) {
        for (int j = 0; j < 32; j++) x[j] = 0.0f;                 /* zero block */
        for (int j = 32; j < 64; j++) x[j] = (float)(j - 48);     /* integer ties */
        x[70] = 100.0f;                                           /* outlier */
    }
}

static float f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t bits_from_f32(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* ---- fp16 / bf16 ----------------------------------------------------------------------------- */
static double half_value(uint16_t h)   /* independent decode: ldexp on the fields */
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

static void test_fp16_exhaustive(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = fp16_to_f32((uint16_t)h);
        int e = (h >> 10) & 31;
        if (e == 31) {
            if (h & 1023) {
                assert_true(isnan(f));
                uint16_t back = f32_to_fp16(f);
                assert_int_equal(back & 0x7c00, 0x7c00);
                assert_true((back & 0x3ff) != 0);
                assert_int_equal(back & 0x8000, h & 0x8000);
            } else {
                assert_true(isinf(f));
                assert_int_equal(f32_to_fp16(f), h);
            }
            continue;
        }
        assert_true((double)f == half_value((uint16_t)h));
        assert_int_equal(signbit(f) != 0, (h & 0x8000) != 0);
        assert_int_equal(f32_to_fp16(f), h);
    }
}

/* Reference f32 -> fp16: nearest of the 31744 finite non-negative halves (sorted, as
 * their encodings are monotonic), ties to the even encoding; >= 65520 -> inf. */
static uint16_t ref_f32_to_fp16(float f)
{
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    double a = fabs((double)f);
    if (isnan(f)) return 0x7e00;
    if (a >= 65520.0) return sign | 0x7c00;
    int lo = 0, hi = 0x7bff;                 /* largest h with half_value(h) <= a */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (half_value((uint16_t)mid) <= a) lo = mid; else hi = mid - 1;
    }
    uint16_t h = (uint16_t)lo;
    if (h < 0x7bff) {
        double d0 = a - half_value(h), d1 = half_value((uint16_t)(h + 1)) - a;
        if (d1 < d0 || (d1 == d0 && (h & 1))) h++;
    }
    return sign | h;
}

static void test_f32_to_fp16_rne(void **state)
{
    (void)state;
    int64_t n = 0;
    /* a stride through all 2^32 patterns (an odd stride hits every exponent and sign) */
    for (uint64_t u = 0; u < (1ull << 32); u += 4099) {
        float f = f32_from_bits((uint32_t)u);
        if (isnan(f)) continue;
        uint16_t got = f32_to_fp16(f), want = ref_f32_to_fp16(f);
        if (got != want) fail_msg("f32_to_fp16(%a) = %04x, expected %04x", (double)f, got, want);
        n++;
    }
    /* every midpoint between neighbouring halves, and the floats just around it */
    for (uint16_t h = 0; h < 0x7bff; h++) {
        double mid = (half_value(h) + half_value((uint16_t)(h + 1))) / 2;
        float m = (float)mid;               /* exact: halves have 11-bit mantissas */
        assert_true((double)m == mid);
        float c[3] = { nextafterf(m, 0), m, nextafterf(m, INFINITY) };
        for (int k = 0; k < 3; k++)
            for (int s = 0; s < 2; s++) {
                float f = s ? -c[k] : c[k];
                uint16_t got = f32_to_fp16(f), want = ref_f32_to_fp16(f);
                if (got != want) fail_msg("f32_to_fp16(%a) = %04x, expected %04x", (double)f, got, want);
                n++;
            }
    }
    assert_int_equal(f32_to_fp16(65504.0f), 0x7bff);
    assert_int_equal(f32_to_fp16(65519.99f), 0x7bff);
    assert_int_equal(f32_to_fp16(65520.0f), 0x7c00);
    assert_int_equal(f32_to_fp16(-INFINITY), 0xfc00);
    assert_int_equal(f32_to_fp16(0x1p-24f), 0x0001);
    assert_int_equal(f32_to_fp16(0x1p-25f), 0x0000);            /* tie -> even (zero) */
    assert_int_equal(f32_to_fp16(0x1.000002p-25f), 0x0001);
    assert_int_equal(f32_to_fp16(0x1.8p-24f), 0x0002);          /* 1.5 units: tie -> even */
    assert_int_equal(f32_to_fp16(-0.0f), 0x8000);
    assert_true(isnan(fp16_to_f32(f32_to_fp16(NAN))));
    assert_true(n > 1000000);
}

static uint16_t ref_f32_to_bf16(float f)
{
    uint32_t u = bits_from_f32(f);
    uint32_t lo = u & 0xffff0000u;
    double a = (double)f, vlo = (double)f32_from_bits(lo);
    if ((lo & 0x7fffffffu) == 0x7f7f0000u && fabs(a) >= 0x1.ffp127) return (uint16_t)((lo >> 16) + 1);
    double vhi = (double)f32_from_bits(lo + 0x10000u);
    double d0 = fabs(a - vlo), d1 = fabs(vhi - a);
    return (uint16_t)((lo >> 16) + ((d1 < d0 || (d1 == d0 && ((lo >> 16) & 1))) ? 1 : 0));
}

static void test_bf16(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = bf16_to_f32((uint16_t)h);
        assert_int_equal(bits_from_f32(f), h << 16);
        if (isnan(f)) assert_int_equal(f32_to_bf16(f), h | 0x40);   /* quieted */
        else assert_int_equal(f32_to_bf16(f), h);
    }
    for (uint64_t u = 0; u < (1ull << 32); u += 65537 + 2 * 4099) {
        float f = f32_from_bits((uint32_t)u);
        if (isnan(f) || isinf(f)) continue;
        uint16_t got = f32_to_bf16(f), want = ref_f32_to_bf16(f);
        if (got != want) fail_msg("f32_to_bf16(%a) = %04x, expected %04x", (double)f, got, want);
    }
    assert_int_equal(f32_to_bf16(f32_from_bits(0x3f808000u)), 0x3f80);   /* tie -> even */
    assert_int_equal(f32_to_bf16(f32_from_bits(0x3f818000u)), 0x3f82);
    assert_int_equal(f32_to_bf16(f32_from_bits(0x7fc00001u)) & 0x7fc0, 0x7fc0);
}

/* ---- traits ------------------------------------------------------------------------------------ */
static const uint32_t supported_types[] = {
    QT_F32, QT_F16, QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1, QT_Q8_0, QT_Q8_1,
    QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K, QT_Q8_K,
};
#define N_SUPPORTED (sizeof supported_types / sizeof supported_types[0])

static void test_traits(void **state)
{
    (void)state;
    static const struct { uint32_t t; int64_t bs; size_t ts; } sizes[] = {
        { QT_F32, 1, 4 }, { QT_F16, 1, 2 }, { QT_BF16, 1, 2 }, { QT_Q4_0, 32, sizeof(blk_q4_0) },
        { QT_Q4_1, 32, sizeof(blk_q4_1) }, { QT_Q5_0, 32, sizeof(blk_q5_0) },
        { QT_Q5_1, 32, sizeof(blk_q5_1) }, { QT_Q8_0, 32, sizeof(blk_q8_0) },
        { QT_Q8_1, 32, sizeof(blk_q8_1) }, { QT_Q2_K, 256, sizeof(blk_q2_K) },
        { QT_Q3_K, 256, sizeof(blk_q3_K) }, { QT_Q4_K, 256, sizeof(blk_q4_K) },
        { QT_Q5_K, 256, sizeof(blk_q5_K) }, { QT_Q6_K, 256, sizeof(blk_q6_K) },
        { QT_Q8_K, 256, sizeof(blk_q8_K) },
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const quant_traits *t = quant_get(sizes[i].t);
        assert_non_null(t);
        assert_true(t->supported);
        assert_int_equal(t->blck_size, sizes[i].bs);
        assert_int_equal(t->type_size, sizes[i].ts);
        assert_non_null(t->to_float);
        assert_non_null(t->from_float);
        assert_non_null(t->vec_dot);
        const quant_traits *v = quant_get(t->vec_dot_type);
        assert_non_null(v);
        assert_non_null(v->from_float);
        if (v->blck_size > 1) assert_int_equal(t->blck_size % v->blck_size, 0);
        const quant_traits *fast = quant_get_fast(sizes[i].t);
        assert_non_null(fast);
        assert_ptr_equal(fast->to_float, t->to_float);
        assert_int_equal(fast->vec_dot_type, t->vec_dot_type);
    }
    assert_int_equal(quant_get(QT_Q4_0)->vec_dot_type, QT_Q8_0);
    assert_int_equal(quant_get(QT_Q4_1)->vec_dot_type, QT_Q8_1);
    assert_int_equal(quant_get(QT_Q4_K)->vec_dot_type, QT_Q8_K);
    assert_int_equal(quant_get(QT_F16)->vec_dot_type, QT_F32);
    /* unknown ids */
    uint32_t unknown[] = { 4, 5, 31, 32, 33, 36, 37, 38, QT_COUNT, 1000, 0xffffffffu };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        assert_null(quant_get(unknown[i]));
        assert_null(quant_get_fast(unknown[i]));
        assert_int_equal(quant_row_size(unknown[i], 32), 0);
    }
    /* known but unsupported */
    const quant_traits *iq = quant_get(QT_IQ4_NL);
    assert_non_null(iq);
    assert_false(iq->supported);
    assert_null(iq->vec_dot);
    assert_int_equal(quant_row_size(QT_IQ4_NL, 64), 36);
    /* row sizes */
    assert_int_equal(quant_row_size(QT_Q4_1, 576), 18 * 20);
    assert_int_equal(quant_row_size(QT_Q8_0, 576), 18 * 34);
    assert_int_equal(quant_row_size(QT_F32, 576), 2304);
    assert_int_equal(quant_row_size(QT_Q4_1, 33), 0);
    assert_int_equal(quant_row_size(QT_Q4_K, 576), 0);
    assert_int_equal(quant_row_size(QT_Q4_0, 0), 0);
    assert_int_equal(quant_row_size(QT_Q4_0, -32), 0);
    assert_int_equal(quant_row_size(QT_F32, INT64_MAX), 0);   /* overflow */
}

/* ---- golden files ------------------------------------------------------------------------------ */
static void *read_data(const char *rel, size_t *len)
{
    char *buf = test_read_file(test_data_path(rel), len);
    if (!buf) fail_msg("cannot read %s (run from the repo root)", test_data_path(rel));
    return buf;
}

static void test_golden(void **state)
{
    (void)state;
    size_t mlen;
    char *manifest = read_data("quant/MANIFEST", &mlen);
    int n_cases = 0, n_quant = 0;
    char *save = NULL;
    for (char *line = strtok_r(manifest, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[64], rel[96];
        unsigned type;
        long long n;
        int has_input;
        assert_int_equal(sscanf(line, "%63s %u %lld %d", name, &type, &n, &has_input), 4);
        const quant_traits *t = quant_get(type);
        if (!t) fail_msg("%s: unknown type %u", name, type);
        size_t qlen, flen;
        snprintf(rel, sizeof rel, "quant/%s.q", name);
        uint8_t *q = read_data(rel, &qlen);
        snprintf(rel, sizeof rel, "quant/%s.f32", name);
        float *want = read_data(rel, &flen);
        assert_int_equal(qlen, quant_row_size(type, n));
        assert_int_equal(flen, (size_t)n * sizeof(float));
        float *got = malloc((size_t)n * sizeof(float));
        assert_non_null(got);
        t->to_float(q, got, n);
        for (long long i = 0; i < n; i++)     /* bitwise: dequantization is exact */
            if (bits_from_f32(got[i]) != bits_from_f32(want[i]))
                fail_msg("%s: element %lld: got %a, expected %a", name, i, (double)got[i], (double)want[i]);
        if (has_input) {
            size_t ilen;
            snprintf(rel, sizeof rel, "quant/%s.in.f32", name);
            float *in = read_data(rel, &ilen);
            assert_int_equal(ilen, (size_t)n * sizeof(float));
            uint8_t *mine = malloc(qlen);
            assert_non_null(mine);
            t->from_float(in, mine, n);
            for (size_t i = 0; i < qlen; i++)
                if (mine[i] != q[i])
                    fail_msg("%s: quantized byte %zu (block %zu): got %02x, expected %02x",
                             name, i, i / t->type_size, mine[i], q[i]);
            n_quant++;
            free(mine);
            free(in);
        }
        free(got);
        free(q);
        free(want);
        n_cases++;
    }
    free(manifest);
    assert_true(n_cases >= 15);
    assert_true(n_quant >= 7);
}

/* gguf's dequantization of the Gemma 3 weight types' matrices (fixtures cache, quant/): our
 * reference to_float, and the fast table's (the same function), bit for bit. */
static void test_gguf_vectors(void **state)
{
    (void)state;
    int n_cases, seen[QT_COUNT] = { 0 };
    test_qmatrix *m = test_qmatrices(&n_cases);
    if (!m) fail_msg("no quantization vectors in the fixtures cache");
    for (int c = 0; c < n_cases; c++) {
        const quant_traits *t = quant_get(m[c].type);
        if (!t || !t->supported) fail_msg("%s: type %u", m[c].name, (unsigned)m[c].type);
        const int64_t n = m[c].rows * m[c].n_in;
        assert_int_equal(m[c].q_len, quant_row_size(m[c].type, n));
        assert_int_equal(m[c].deq_len, (size_t)n * sizeof(float));
        float *got = malloc((size_t)n * sizeof(float));
        assert_non_null(got);
        for (int fast = 0; fast < 2; fast++) {
            (fast ? quant_get_fast(m[c].type) : t)->to_float(m[c].q, got, n);
            for (int64_t i = 0; i < n; i++)
                if (bits_from_f32(got[i]) != bits_from_f32(m[c].deq[i]))
                    fail_msg("%s: element %lld: got %a, gguf %a", m[c].name, (long long)i, (double)got[i],
                             (double)m[c].deq[i]);
        }
        free(got);
        seen[m[c].type]++;
    }
    test_qmatrices_free(m, n_cases);
    assert_true(n_cases >= 5);
    assert_true(seen[QT_Q5_0] && seen[QT_Q4_K] && seen[QT_Q5_K] && seen[QT_Q6_K]);
}

/* ---- round trips ----------------------------------------------------------------------------- */
static double rt_tol(uint32_t type)
{
    switch (type) {
    case QT_Q8_0: case QT_Q8_1: case QT_Q8_K: return TOL_RT_Q8_0;
    case QT_Q4_0: return TOL_RT_Q4_0;
    case QT_Q4_1: return TOL_RT_Q4_1;
    case QT_Q5_0: return TOL_RT_Q5_0;
    case QT_Q5_1: return TOL_RT_Q5_1;
    case QT_Q2_K: return TOL_RT_Q2_K;
    case QT_Q3_K: return TOL_RT_Q3_K;
    case QT_Q4_K: return TOL_RT_Q4_K;
    case QT_Q5_K: return TOL_RT_Q5_K;
    case QT_Q6_K: return TOL_RT_Q6_K;
    default: return 0;
    }
}

static void test_round_trip(void **state)
{
    (void)state;
    enum { N = 4096 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    void *q = malloc(N * 8);
    assert_non_null(x); assert_non_null(y); assert_non_null(q);
    for (size_t k = 0; k < N_SUPPORTED; k++) {
        uint32_t type = supported_types[k];
        const quant_traits *t = quant_get(type);
        fill_input(x, N);
        memset(q, 0xa5, N * 8);
        t->from_float(x, q, N);
        t->to_float(q, y, N);
        double worst = 0;
        for (int64_t i = 0; i < N; i++) {
            double err = fabs((double)x[i] - y[i]);
            if (type == QT_F32) assert_true(err == 0);
            else if (type == QT_F16 || type == QT_BF16) {
                double tol = (type == QT_F16 ? TOL_RT_F16 : TOL_RT_BF16) * fabs(x[i]) + 0x1p-25;
                if (err > tol) fail_msg("%s: element %lld: %g -> %g", t->name, (long long)i, x[i], y[i]);
            } else {
                int64_t bs = t->blck_size, b0 = i / bs * bs;
                double amax = 0;
                for (int64_t j = b0; j < b0 + bs; j++) amax = fmax(amax, fabs(x[j]));
                double rel = amax > 0 ? err / amax : err;
                worst = fmax(worst, rel);
                if (rel > rt_tol(type))
                    fail_msg("%s: element %lld: %g -> %g (error %.4g of block max %g, tolerance %g)",
                             t->name, (long long)i, x[i], y[i], rel, amax, rt_tol(type));
            }
        }
        (void)worst;
    }
    free(x); free(y); free(q);
}

/* ---- vec_dot against a double dot ------------------------------------------------------------- */
/* Checks t->vec_dot(w, xq, n) where w holds n elements of t and xq the quantized
 * activations (vec_dot_type); returns the kernel's value. */
static float check_dot(uint32_t type, quant_vec_dot_fn dot, const void *w, const void *xq,
                       int64_t n, const char *what)
{
    const quant_traits *t = quant_get(type);
    const quant_traits *v = quant_get(t->vec_dot_type);
    float *wf = malloc((size_t)n * sizeof(float)), *xf = malloc((size_t)n * sizeof(float));
    assert_non_null(wf); assert_non_null(xf);
    t->to_float(w, wf, n);
    v->to_float(xq, xf, n);
    double ref = 0, mag = 0, extra = 0;
    for (int64_t i = 0; i < n; i++) { ref += (double)wf[i] * xf[i]; mag += fabs((double)wf[i] * xf[i]); }
    if (type == QT_Q4_1 || type == QT_Q5_1) {
        /* Q4_1/Q5_1: m_w * s_x term; both formats start with d, m */
        const uint8_t *wb = w;
        const blk_q8_1 *xb = xq;
        for (int64_t b = 0; b < n / 32; b++) {
            uint16_t m;
            memcpy(&m, wb + b * t->type_size + 2, 2);
            double sq = 0;
            for (int j = 0; j < 32; j++) sq += fabs((double)xb[b].qs[j]);
            extra += fabs(fp16_to_f32(m)) * TOL_DOT_S * fp16_to_f32(xb[b].d) * sq;
        }
    }
    float got = dot(w, xq, n);
    double tol = TOL_DOT_REL * mag + extra + 1e-30;
    if (fabs(got - ref) > tol)
        fail_msg("%s %s n=%lld: vec_dot %.9g, double dot %.9g (|diff| %.3g > %.3g)", t->name, what,
                 (long long)n, (double)got, ref, fabs(got - ref), tol);
    free(wf); free(xf);
    return got;
}

static void test_vec_dot(void **state)
{
    (void)state;
    enum { N = 2048 };
    float *x = malloc(N * sizeof(float)), *w = malloc(N * sizeof(float));
    void *wq = malloc(N * 8), *xq = malloc(N * 8);
    assert_non_null(x); assert_non_null(w); assert_non_null(wq); assert_non_null(xq);
    for (size_t k = 0; k < N_SUPPORTED; k++) {
        const quant_traits *t = quant_get(supported_types[k]);
        const quant_traits *v = quant_get(t->vec_dot_type);
        for (int rep = 0; rep < 4; rep++) {
            int64_t n = rep == 0 ? 256 : rep == 1 ? 512 : rep == 2 ? 1536 : N;
            fill_input(w, n);
            for (int64_t i = 0; i < n; i++) x[i] = rnd_gauss();
            t->from_float(w, wq, n);
            v->from_float(x, xq, n);
            check_dot(supported_types[k], t->vec_dot, wq, xq, n, "quantized");
        }
        /* random bytes as weights (sane fp16 scales are not guaranteed: skip float types) */
        if (t->blck_size > 1 && supported_types[k] != QT_Q8_K) {
            int64_t n = 1024;
            size_t bytes = quant_row_size(supported_types[k], n);
            uint8_t *r = wq;
            for (size_t i = 0; i < bytes; i++) r[i] = (uint8_t)rnd_u64();
            /* overwrite every fp16 field with a modest scale: for these formats the
             * fp16 fields are d/m (first 2 or 4 bytes) or d/dmin (K-quants) */
            for (int64_t b = 0; b < n / t->blck_size; b++) {
                uint8_t *blk = r + (size_t)b * t->type_size;
                uint16_t h1 = f32_to_fp16((float)(rnd_unif() * 0.01)), h2 = f32_to_fp16((float)(rnd_unif() * 0.01 - 0.005));
                switch (supported_types[k]) {
                case QT_Q2_K: memcpy(blk + 80, &h1, 2); memcpy(blk + 82, &h2, 2); break;
                case QT_Q3_K: memcpy(blk + 108, &h2, 2); break;
                case QT_Q6_K: memcpy(blk + 208, &h2, 2); break;
                case QT_Q4_K: case QT_Q5_K: case QT_Q4_1: case QT_Q5_1: case QT_Q8_1:
                    memcpy(blk, &h1, 2); memcpy(blk + 2, &h2, 2); break;
                default: memcpy(blk, &h2, 2); break;
                }
            }
            for (int64_t i = 0; i < n; i++) x[i] = rnd_gauss();
            v->from_float(x, xq, n);
            check_dot(supported_types[k], t->vec_dot, wq, xq, n, "random bytes");
        }
    }
    free(x); free(w); free(wq); free(xq);
}

/* Real Q4_1 rows from the model (golden file) against random activations. */
static void test_vec_dot_real_rows(void **state)
{
    (void)state;
    size_t len;
    uint8_t *q = read_data("quant/real_q4_1.q", &len);
    const quant_traits *t = quant_get(QT_Q4_1), *v = quant_get(QT_Q8_1);
    int64_t n = 576;
    assert_int_equal(len, 4 * quant_row_size(QT_Q4_1, n));
    float x[576];
    blk_q8_1 xq[576 / 32];
    for (int r = 0; r < 4; r++) {
        for (int64_t i = 0; i < n; i++) x[i] = rnd_gauss();
        v->from_float(x, xq, n);
        check_dot(QT_Q4_1, t->vec_dot, q + r * quant_row_size(QT_Q4_1, n), xq, n, "model row");
    }
    free(q);
}

/* Q8_1's s field: fp16(d * sum(q)) exactly as specified. */
static void test_q8_1_sum(void **state)
{
    (void)state;
    float x[256];
    blk_q8_1 b[8];
    fill_input(x, 256);
    quant_get(QT_Q8_1)->from_float(x, b, 256);
    blk_q8_0 c[8];
    quant_get(QT_Q8_0)->from_float(x, c, 256);
    for (int i = 0; i < 8; i++) {
        int sum = 0;
        for (int j = 0; j < 32; j++) sum += b[i].qs[j];
        float d = fp16_to_f32(b[i].d);
        assert_int_equal(b[i].d, c[i].d);                   /* same d and qs as Q8_0 */
        assert_memory_equal(b[i].qs, c[i].qs, 32);
        double expect = (double)sum * d;
        assert_true(fabs(fp16_to_f32(b[i].s) - expect) <= fabs(expect) * (1.0 / 1024) + 1e-7);
    }
}

/* ---- SIMD kernels against the reference --------------------------------------------------------- */
/* blk: elements per block (32, or 256 for Q8_K). Inputs: varied scales, integer and exact
 * .5 ties, NaN, +-Inf and finite values above 3.4e38 in some blocks, and blocks whose
 * largest magnitude occurs with both signs (the first one sets Q8_K's sign). */
static void compare_quantizer(const char *isa, const char *nm, quant_quantize_fn fast, quant_quantize_fn ref,
                              size_t blk_bytes, int64_t blk)
{
    enum { N = 32 * 72 };
    float x[N];
    static uint8_t a[N / 32 * 40], b[N / 32 * 40];
    for (int rep = 0; rep < 20; rep++) {
        fill_input(x, N);
        if (rep == 1) for (int i = 0; i < N; i++) x[i] = (float)((int)(rnd_u64() % 255) - 127); /* ties */
        if (rep == 2) for (int i = 0; i < N; i++) x[i] = (float)(i % 64) * 0.5f - 16.0f;
        if (rep == 3)                  /* exact ties: amax 127 gives d = 1, so k + 0.5 stays */
            for (int i = 0; i < N; i++)
                x[i] = i % 32 == 5 ? 127.0f : (float)((int)(rnd_u64() % 253) - 126) + (i & 1 ? 0.5f : -0.5f);
        if (rep == 4) for (int i = 0; i < N; i += 37) x[i] = NAN;
        if (rep == 5) { x[300] = INFINITY; x[1000] = -INFINITY; x[1700] = 3.40282e38f; x[2200] = -3.401e38f; }
        if (rep == 6)
            for (int i = 0; i < N; i += 32) { x[i + 3] = -9.0f; x[i + 20] = 9.0f; x[i + 31] = (i / 32) & 1 ? 9.0f : -9.0f; }
        for (int64_t n = blk; n <= N; n += (rep < 4 ? N / blk * blk - blk : blk * 7)) {
            memset(a, 0, sizeof a); memset(b, 0, sizeof b);
            ref(x, a, n);
            fast(x, b, n);
            for (size_t i = 0; i < (size_t)(n / blk) * blk_bytes; i++)
                if (a[i] != b[i]) fail_msg("%s %s n=%lld: byte %zu differs (ref %02x, simd %02x)",
                                           isa, nm, (long long)n, i, a[i], b[i]);
        }
    }
}

static void compare_dot(const char *isa, uint32_t wtype, quant_vec_dot_fn fast)
{
    const quant_traits *t = quant_get(wtype), *v = quant_get(t->vec_dot_type);
    enum { N = 32 * 97 };
    static float w[N], x[N];
    static uint8_t wq[N / 32 * 40], xq[N / 32 * 40];
    for (int rep = 0; rep < 30; rep++) {
        int64_t n = 32 * (int64_t)(1 + rnd_u64() % (N / 32));
        if (rep == 0) n = 32;
        if (rep == 1) n = N;
        if (rep == 2) n = 576;
        fill_input(w, n);
        for (int64_t i = 0; i < n; i++) x[i] = rnd_gauss() * (float)(1 + rep);
        if (rep % 3 == 0) {          /* raw random weight bytes, incl. q = -128 for Q8_0 */
            size_t bytes = quant_row_size(wtype, n);
            for (size_t i = 0; i < bytes; i++) wq[i] = (uint8_t)rnd_u64();
            for (int64_t b = 0; b < n / 32; b++) {   /* fp16 scale(s) first in these blocks */
                uint16_t h = f32_to_fp16((float)(rnd_unif() * 0.02 - 0.01));
                memcpy(wq + (size_t)b * t->type_size, &h, 2);
                if (wtype == QT_Q4_1) memcpy(wq + (size_t)b * t->type_size + 2, &h, 2);
            }
        } else {
            t->from_float(w, wq, n);
        }
        v->from_float(x, xq, n);
        float r = t->vec_dot(wq, xq, n), s = fast(wq, xq, n);
        /* magnitude: sum |w_i x_i| over the dequantized rows (bounds every lane's partial sum) */
        float wf[N], xf[N];
        t->to_float(wq, wf, n);
        v->to_float(xq, xf, n);
        double mag = 0;
        for (int64_t i = 0; i < n; i++) mag += fabs((double)wf[i] * xf[i]);
        if (wtype == QT_Q4_1)          /* the m * s term per block, rounded once either way */
            for (int64_t b = 0; b < n / 32; b++)
                mag += fabs(fp16_to_f32(((const blk_q4_1 *)wq)[b].m) * fp16_to_f32(((const blk_q8_1 *)xq)[b].s));
        double tol = TOL_SIMD_REL * mag + 1e-30;
        if (fabs((double)r - s) > tol)
            fail_msg("%s vec_dot %s n=%lld: ref %.9g simd %.9g (|diff| %.3g > %.3g)", isa, t->name,
                     (long long)n, (double)r, (double)s, fabs((double)r - s), tol);
        check_dot(wtype, fast, wq, xq, n, isa);
    }
}

static void check_isa(const char *isa, const quant_isa_kernels *k)
{
    assert_non_null(k);
    if (k->quantize_q8_0)
        compare_quantizer(isa, "quantize_q8_0", k->quantize_q8_0, quant_get(QT_Q8_0)->from_float, sizeof(blk_q8_0), 32);
    if (k->quantize_q8_1)
        compare_quantizer(isa, "quantize_q8_1", k->quantize_q8_1, quant_get(QT_Q8_1)->from_float, sizeof(blk_q8_1), 32);
    assert_non_null(k->quantize_q8_K);
    compare_quantizer(isa, "quantize_q8_K", k->quantize_q8_K, quant_get(QT_Q8_K)->from_float, sizeof(blk_q8_K), QK_K);
    if (k->vec_dot_q4_0_q8_0) compare_dot(isa, QT_Q4_0, k->vec_dot_q4_0_q8_0);
    if (k->vec_dot_q4_1_q8_1) compare_dot(isa, QT_Q4_1, k->vec_dot_q4_1_q8_1);
    if (k->vec_dot_q8_0_q8_0) compare_dot(isa, QT_Q8_0, k->vec_dot_q8_0_q8_0);
}

static void test_simd_avx2(void **state)
{
    (void)state;
    if (!cpu_has_avx2_set(cpu_get())) skip();
    if (!quant_avx2_kernels()) skip();
    check_isa("avx2", quant_avx2_kernels());
}

static void test_simd_avx512(void **state)
{
    (void)state;
    if (!cpu_has_avx512_set(cpu_get())) skip();
    if (!quant_avx512_kernels()) skip();
    check_isa("avx512", quant_avx512_kernels());
}

/* quant_get_fast: same results as the reference within tolerance; quantizers identical;
 * the reference table is untouched by dispatch. */
static void test_fast_table(void **state)
{
    (void)state;
    quant_vec_dot_fn ref_dot = quant_get(QT_Q4_1)->vec_dot;
    const quant_traits *f = quant_get_fast(QT_Q4_1);
    assert_non_null(f);
    assert_ptr_equal(quant_get(QT_Q4_1)->vec_dot, ref_dot);
    const cpu_features *c = cpu_get();
    if (cpu_has_avx2_set(c) && quant_avx2_kernels())
        assert_ptr_not_equal(f->vec_dot, ref_dot);
    compare_dot("fast", QT_Q4_1, f->vec_dot);
    compare_dot("fast", QT_Q8_0, quant_get_fast(QT_Q8_0)->vec_dot);
    compare_quantizer("fast", "q8_1", quant_get_fast(QT_Q8_1)->from_float,
                      quant_get(QT_Q8_1)->from_float, sizeof(blk_q8_1), 32);
    compare_quantizer("fast", "q8_0", quant_get_fast(QT_Q8_0)->from_float,
                      quant_get(QT_Q8_0)->from_float, sizeof(blk_q8_0), 32);
    compare_quantizer("fast", "q8_K", quant_get_fast(QT_Q8_K)->from_float,
                      quant_get(QT_Q8_K)->from_float, sizeof(blk_q8_K), QK_K);
    /* Gemma 3's weight types get SIMD vec_dots (and the tiled kernels) when the CPU runs a set */
    const uint32_t gemma_types[4] = { QT_Q5_0, QT_Q4_K, QT_Q5_K, QT_Q6_K };
    for (int i = 0; i < 4; i++) {
        const quant_traits *ft = quant_get_fast(gemma_types[i]), *rt = quant_get(gemma_types[i]);
        if (cpu_has_avx2_set(c) && quant_avx2_kernels()) assert_ptr_not_equal(ft->vec_dot, rt->vec_dot);
        else assert_ptr_equal(ft->vec_dot, rt->vec_dot);
    }
    if (cpu_has_avx2_set(c) && quant_avx2_kernels())
        assert_ptr_not_equal(quant_get_fast(QT_Q8_K)->from_float, quant_get(QT_Q8_K)->from_float);
    /* every supported type has a working fast entry */
    for (size_t k = 0; k < N_SUPPORTED; k++) {
        const quant_traits *ft = quant_get_fast(supported_types[k]);
        assert_non_null(ft->vec_dot);
        assert_non_null(ft->from_float);
    }
}

static void test_cpu(void **state)
{
    (void)state;
    const cpu_features *c = cpu_get();
    assert_non_null(c);
    assert_ptr_equal(c, cpu_get());
    if (c->avx512vnni) assert_true(c->avx512f);
    if (c->avx512f) assert_true(c->avx2);
#if defined(__x86_64__)
    /* agree with the compiler's own detection */
    __builtin_cpu_init();
    assert_int_equal(c->avx2, __builtin_cpu_supports("avx2") != 0);
    assert_int_equal(c->fma, __builtin_cpu_supports("fma") != 0);
    assert_int_equal(c->avx512f, __builtin_cpu_supports("avx512f") != 0);
    assert_int_equal(c->avx512bw, __builtin_cpu_supports("avx512bw") != 0);
    assert_int_equal(c->avx512vl, __builtin_cpu_supports("avx512vl") != 0);
    assert_int_equal(c->avx512vnni, __builtin_cpu_supports("avx512vnni") != 0);
#endif
    printf("# cpu: avx2=%d fma=%d f16c=%d avx512f=%d bw=%d vl=%d dq=%d vnni=%d bf16=%d\n",
           c->avx2, c->fma, c->f16c, c->avx512f, c->avx512bw, c->avx512vl, c->avx512dq,
           c->avx512vnni, c->avx512bf16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp16_exhaustive),
        cmocka_unit_test(test_f32_to_fp16_rne),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_traits),
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_gguf_vectors),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_vec_dot),
        cmocka_unit_test(test_vec_dot_real_rows),
        cmocka_unit_test(test_q8_1_sum),
        cmocka_unit_test(test_cpu),
        cmocka_unit_test(test_simd_avx2),
        cmocka_unit_test(test_simd_avx512),
        cmocka_unit_test(test_fast_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
