/* test_matmul.c - matmul_rows and the tiled kernels (kern/matmul.h).
 *
 * What is proven, for Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K, F16 and F32 weights on every tiled
 * kernel set this CPU runs
 * (a set the CPU lacks is skipped), and through quant_get_fast as forward.c calls it:
 *   - exactness: matmul_rows over n_tok = 1..40, 64 and 512 tokens, whole or cut into
 *     random row ranges [r0, r1) and token sub-batches, and split across real threads
 *     with pool_split, gives outputs memcmp-identical to one vec_dot call per
 *     (row, token) of the same set, and to matmul_rows on one row and one token. Shapes
 *     cross every tile and chunk boundary (4-row and 4-token register tiles, token
 *     chunks of the 32 KB activation buffer, L2 row blocks, partial last block groups
 *     of 4 (avx512 Q4_1) or 2 blocks, rows too long for the buffer in either set; K-quant
 *     rows of 1..113 super-blocks, whose Q8_K rows are read in place);
 *   - accuracy: each output within TOL_MATMUL_REL (the quantized types) or TOL_MATMUL_F_REL
 *     (F16, F32) of the scalar reference vec_dot (quant_get(type)->vec_dot, the spec in
 *     quant.c, which accumulates F16/F32 products in double), and for the matrices of
 *     the fixtures cache's quant/ (gen_quant_golden.py --vectors) within TOL_MATMUL_REL of
 *     a double dot over gguf's dequantization of them (an implementation apart from ours);
 *   - F16/F32: every n_in from 1 to 40 and Whisper's 64, 240, 384, 1152, 1500, 1536 (tails
 *     of 1..15 lanes), the widened-F16 row blocks (batches of >= 8 tokens), rows longer
 *     than the widening buffer and than a token chunk; rows and activations that end
 *     right before a PROT_NONE page, at odd addresses (nothing past the row is read; the
 *     quantized types likewise, their weights at odd addresses);
 *   - only columns [r0, r1) of y are written (guard values around them);
 *   - quant_get_fast holds a set's vec_dots only when cpu_get() allows the set, and the
 *     generic path (tables without a tiled kernel) is one vec_dot per output;
 *   - a table holding the avx2 set's vec_dots (what an AVX2-only CPU gets) takes the avx2
 *     tiled kernels, also on a CPU whose fast table holds the avx512 set.
 * Weights: quantized random rows, raw random bytes (every code, incl. Q8_0 -128; for
 * F16/F32 random finite values over the whole exponent range, subnormals included),
 * the real model rows of tests/data/quant/, and, when the model file is present,
 * rows of blk.0.attn_q / blk.0.ffn_down / token_embd. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/pool.h"
#include "kern/cpu.h"
#include "kern/matmul.h"
#include "kern/quant.h"
#include "model/gguf.h"
#include "util/testqvec.h"
#include "util/testutil.h"

/* Tiled result vs the scalar spec: same integer sums per block, a different float
 * order (16 lanes, FMA, a tree at the end), as for the SIMD dots of test_quant.c:
 * relative to magnitude() (sum |w_i x_i|, plus the parts a format sums apart: Q4_1's
 * m_w s_x, the K-quants' mins and Q6_K's offset), which bounds every partial sum either
 * side forms; a few roundings of 2^-24 each. */
#define TOL_MATMUL_REL 1e-6

/* F16/F32 weights x F32 activations: products rounded to f32 by the FMA, summed in
 * n_in / 8 (AVX2) or n_in / 16 (AVX-512) steps per lane and a 3- or 4-level tree. The
 * classical bound for a float sum of k terms is k * 2^-24 * sum |w_i x_i|; with k = n_in /
 * 8 + 8 it covers both sets (the double-accumulated reference adds nothing visible). */
#define TOL_MATMUL_F_REL(n_in) (((double)(n_in) / 8 + 8) * 0x1p-24)

enum { MAX_TOK = 40 };

/* ---- deterministic random numbers --------------------------------------------------------- */
static uint64_t rng_state = 0x2545f4914f6cdd1dull;
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

/* ---- a weight matrix and a batch of activations ----------------------------------------- */
typedef struct problem {
    uint32_t type;
    int64_t n_in, n_out, n_tok;
    size_t row_bytes, xq_bytes;
    uint8_t *w;      /* [n_out][row_bytes] */
    uint8_t *xq;     /* [n_tok][xq_bytes] */
} problem;

enum { W_QUANT, W_RAW };

/* Random weights: quantized Gaussian rows with a scale per block, or raw bytes with
 * modest fp16 scales (so every code occurs, incl. Q8_0's -128). */
static bool is_float_type(uint32_t type) { return type == QT_F16 || type == QT_F32; }

/* A random finite value of the type: any sign, exponent and mantissa (subnormals too),
 * but never Inf/NaN; F32 exponents are kept within +-60 so products stay normal-ish. */
static float rnd_finite(uint32_t type)
{
    if (type == QT_F16) {
        uint16_t h = (uint16_t)rnd_u64();
        if ((h & 0x7C00) == 0x7C00) h &= 0xBFFF;             /* exponent 31 -> 15 */
        return fp16_to_f32(h);
    }
    uint32_t u = (uint32_t)rnd_u64();
    uint32_t e = (uint32_t)(rnd_u64() % 121) + 127 - 60;   /* 2^-60 .. 2^60 */
    if (rnd_u64() % 16 == 0) e = 0;                          /* a subnormal */
    u = (u & 0x807FFFFFu) | (e << 23);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void fill_weights(problem *p, int how)
{
    const quant_traits *t = quant_get(p->type);
    float *row = malloc(sizeof(float) * (size_t)p->n_in);
    assert_non_null(row);
    for (int64_t r = 0; r < p->n_out; r++) {
        uint8_t *wr = p->w + (size_t)r * p->row_bytes;
        if (is_float_type(p->type)) {
            for (int64_t i = 0; i < p->n_in; i++)
                row[i] = how == W_QUANT ? rnd_gauss() * (float)(0.001 + 0.1 * (double)((i / 32 + r) % 7))
                                        : rnd_finite(p->type);
            t->from_float(row, wr, p->n_in);
        } else if (how == W_QUANT) {
            for (int64_t i = 0; i < p->n_in; i++) {
                if (i % 32 == 0) row[i] = 0;
                row[i] = rnd_gauss() * (float)(0.001 + 0.1 * (double)((i / 32 + r) % 7));
            }
            t->from_float(row, wr, p->n_in);
        } else {
            for (size_t i = 0; i < p->row_bytes; i++) wr[i] = (uint8_t)rnd_u64();
            for (int64_t b = 0; b < p->n_in / t->blck_size; b++) {   /* fp16 d (and m / dmin) */
                uint8_t *blk = wr + (size_t)b * t->type_size;
                uint16_t d = f32_to_fp16((float)(rnd_unif() * 0.02 - 0.01));
                uint16_t m = f32_to_fp16((float)(rnd_unif() * 0.02 - 0.01));
                memcpy(blk + (p->type == QT_Q6_K ? offsetof(blk_q6_K, d) : 0), &d, 2);
                if (p->type == QT_Q4_1 || p->type == QT_Q4_K || p->type == QT_Q5_K) memcpy(blk + 2, &m, 2);
            }
        }
    }
    free(row);
}

/* Activations as the forward pass makes them: the fast quantizer (bit-identical to the
 * reference), varied scales; every 5th token is all zeros but one element. */
static void fill_acts(problem *p)
{
    const quant_traits *vt = quant_get_fast(quant_get(p->type)->vec_dot_type);
    float *x = malloc(sizeof(float) * (size_t)(p->n_in * p->n_tok));
    assert_non_null(x);
    for (int64_t t = 0; t < p->n_tok; t++)
        for (int64_t i = 0; i < p->n_in; i++) {
            float v = rnd_gauss() * (float)(1 + t % 5);
            if (t % 5 == 4) v = i == t ? 3.0f : 0.0f;
            x[t * p->n_in + i] = v;
        }
    matmul_quantize_rows(vt, x, p->n_in, 0, p->n_tok, p->xq, p->xq_bytes);
    free(x);
}

static problem make_problem(uint32_t type, int64_t n_in, int64_t n_out, int64_t n_tok)
{
    problem p = { .type = type, .n_in = n_in, .n_out = n_out, .n_tok = n_tok };
    p.row_bytes = quant_row_size(type, n_in);
    p.xq_bytes = quant_row_size(quant_get(type)->vec_dot_type, n_in);
    p.w = malloc(p.row_bytes * (size_t)n_out);
    p.xq = malloc(p.xq_bytes * (size_t)n_tok);
    assert_non_null(p.w);
    assert_non_null(p.xq);
    return p;
}

static void free_problem(problem *p) { free(p->w); free(p->xq); }

/* ---- checks ------------------------------------------------------------------------------ */
#define GUARD 12345.5f

/* y for all tokens and rows via one vec_dot per output */
static void per_output(const problem *p, quant_vec_dot_fn dot, float *y, int64_t ldy)
{
    for (int64_t t = 0; t < p->n_tok; t++)
        for (int64_t r = 0; r < p->n_out; r++)
            y[t * ldy + r] = dot(p->w + (size_t)r * p->row_bytes, p->xq + (size_t)t * p->xq_bytes, p->n_in);
}

static void expect_same(const problem *p, const float *want, const float *got, int64_t ldy, const char *what)
{
    for (int64_t t = 0; t < p->n_tok; t++)
        for (int64_t c = 0; c < ldy; c++) {
            float a = want[t * ldy + c], b = got[t * ldy + c];
            if (memcmp(&a, &b, sizeof a) != 0)
                fail_msg("%s %s n_in=%lld n_out=%lld n_tok=%lld: y[%lld][%lld] %.9g != %.9g (bitwise)",
                         quant_get(p->type)->name, what, (long long)p->n_in, (long long)p->n_out,
                         (long long)p->n_tok, (long long)t, (long long)c, (double)a, (double)b);
        }
}

/* sum |w_i x_i| over one row and token (wf, xf: dequantized), plus what bounds the partial
 * sums the kernels form beyond those products: Q4_1's m_w s_x apart from the codes' part;
 * Q4_K/Q5_K's codes and mins apart (|d sc q x| + |dmin m x| <= |w x| + 2 |dmin m x|); Q6_K's
 * unsigned codes and its -32 offset apart (|d sc q x| + 32 |d sc x| <= |w x| + 64 |d sc x|). */
static double magnitude(uint32_t type, const uint8_t *wr, const uint8_t *xr, const float *wf, const float *xf,
                        int64_t n)
{
    double mag = 0;
    if (type == QT_Q4_1) {                /* to_float folds m into each element: the parts apart */
        for (int64_t b = 0; b < n / 32; b++) {
            const blk_q4_1 *wb = (const blk_q4_1 *)wr + b;
            const blk_q8_1 *xb = (const blk_q8_1 *)xr + b;
            for (int j = 0; j < 16; j++) {
                mag += fabs((wb->qs[j] & 15) * (double)fp16_to_f32(wb->d) * xf[32 * b + j]);
                mag += fabs((wb->qs[j] >> 4) * (double)fp16_to_f32(wb->d) * xf[32 * b + 16 + j]);
            }
            mag += fabs((double)fp16_to_f32(wb->m) * fp16_to_f32(xb->s));
        }
        return mag;
    }
    for (int64_t i = 0; i < n; i++) {
        mag += fabs((double)wf[i] * xf[i]);
        const uint8_t *blk = wr + (size_t)(i / QK_K) * quant_get(type)->type_size;
        if (type == QT_Q4_K || type == QT_Q5_K) {
            uint8_t sc, m;
            uint16_t dmin;
            memcpy(&dmin, blk + 2, 2);
            quant_get_scale_min_k4((int)(i % QK_K) / 32, blk + 4, &sc, &m);
            mag += 2 * fabs((double)fp16_to_f32(dmin) * m * xf[i]);
        } else if (type == QT_Q6_K) {
            const blk_q6_K *b6 = (const blk_q6_K *)blk;
            mag += 64 * fabs((double)fp16_to_f32(b6->d) * b6->scales[(i % QK_K) / 16] * xf[i]);
        }
    }
    return mag;
}

/* |y - reference| <= TOL_MATMUL_REL * magnitude, per output */
static void expect_close_to_ref(const problem *p, const float *y, int64_t ldy, const char *what)
{
    const quant_traits *t = quant_get(p->type), *v = quant_get(t->vec_dot_type);
    float *wf = malloc(sizeof(float) * (size_t)p->n_in), *xf = malloc(sizeof(float) * (size_t)p->n_in);
    assert_non_null(wf);
    assert_non_null(xf);
    for (int64_t tk = 0; tk < p->n_tok; tk++) {
        const uint8_t *xr = p->xq + (size_t)tk * p->xq_bytes;
        v->to_float(xr, xf, p->n_in);
        for (int64_t r = 0; r < p->n_out; r++) {
            const uint8_t *wr = p->w + (size_t)r * p->row_bytes;
            t->to_float(wr, wf, p->n_in);
            const double mag = magnitude(p->type, wr, xr, wf, xf, p->n_in);
            double ref = t->vec_dot(wr, xr, p->n_in), got = y[tk * ldy + r];
            double tol = (is_float_type(p->type) ? TOL_MATMUL_F_REL(p->n_in) : TOL_MATMUL_REL) * mag + 1e-30;
            if (!(fabs(got - ref) <= tol))
                fail_msg("%s %s n_in=%lld: y[%lld][%lld] %.9g vs reference %.9g (|diff| %.3g > %.3g)",
                         t->name, what, (long long)p->n_in, (long long)tk, (long long)r, got, ref,
                         fabs(got - ref), tol);
        }
    }
    free(wf);
    free(xf);
}

/* Runs the tiled kernel (or matmul_rows with qt when tiled is NULL) over the whole
 * problem, cut into random row ranges and token sub-batches. */
static void run_split(const problem *p, const quant_traits *qt, matmul_tiled_fn tiled, float *y,
                      int64_t ldy, int cuts)
{
    int64_t r0 = 0;
    while (r0 < p->n_out) {
        int64_t r1 = cuts ? r0 + 1 + (int64_t)(rnd_u64() % (uint64_t)(p->n_out / cuts + 1)) : p->n_out;
        if (r1 > p->n_out) r1 = p->n_out;
        int64_t t0 = 0;
        while (t0 < p->n_tok) {
            int64_t t1 = cuts ? t0 + 1 + (int64_t)(rnd_u64() % (uint64_t)(p->n_tok / cuts + 2)) : p->n_tok;
            if (t1 > p->n_tok) t1 = p->n_tok;
            const uint8_t *x = p->xq + (size_t)t0 * p->xq_bytes;
            float *yt = y + t0 * ldy;
            if (tiled) tiled(p->w, p->row_bytes, r0, r1, x, p->xq_bytes, t1 - t0, p->n_in, yt, ldy);
            else matmul_rows(qt, p->w, p->row_bytes, r0, r1, x, p->xq_bytes, t1 - t0, p->n_in, yt, ldy);
            t0 = t1;
        }
        r0 = r1;
    }
}

static float *new_y(const problem *p, int64_t ldy)
{
    float *y = malloc(sizeof(float) * (size_t)(ldy * p->n_tok));
    assert_non_null(y);
    for (int64_t i = 0; i < ldy * p->n_tok; i++) y[i] = GUARD;
    return y;
}

/* The whole exactness + accuracy story for one problem and one kernel set:
 * per-output vec_dot == one tiled call == split calls == 1 x 1 calls. */
static void check_problem(const problem *p, quant_vec_dot_fn dot, matmul_tiled_fn tiled, const char *isa,
                          bool check_ref)
{
    const int64_t ldy = p->n_out + 3;   /* columns n_out .. n_out+2 must keep GUARD */
    float *want = new_y(p, ldy), *got = new_y(p, ldy);
    per_output(p, dot, want, ldy);
    run_split(p, NULL, tiled, got, ldy, 0);
    expect_same(p, want, got, ldy, isa);
    for (int rep = 0; rep < 3; rep++) {
        float *y2 = new_y(p, ldy);
        run_split(p, NULL, tiled, y2, ldy, 2 + rep * 3);
        expect_same(p, want, y2, ldy, isa);
        free(y2);
    }
    /* one row, one token at a time: the decode call of each output */
    float *y1 = new_y(p, ldy);
    for (int64_t t = 0; t < p->n_tok; t++)
        for (int64_t r = 0; r < p->n_out; r++)
            tiled(p->w, p->row_bytes, r, r + 1, p->xq + (size_t)t * p->xq_bytes, p->xq_bytes, 1, p->n_in,
                  y1 + t * ldy, ldy);
    expect_same(p, want, y1, ldy, isa);
    free(y1);
    if (check_ref) expect_close_to_ref(p, got, ldy, isa);
    free(want);
    free(got);
}

/* Every kernel set this CPU runs: {name, set}. A set the CPU lacks, or a file built
 * without its ISA, is skipped, not failed. */
static int isa_sets(const matmul_isa_kernels **out, const char **names)
{
    int n = 0;
    const cpu_features *c = cpu_get();
    if (cpu_has_avx512_set(c) && matmul_avx512_kernels()) { out[n] = matmul_avx512_kernels(); names[n++] = "avx512"; }
    if (cpu_has_avx2_set(c) && matmul_avx2_kernels()) { out[n] = matmul_avx2_kernels(); names[n++] = "avx2"; }
    return n;
}

static void kernel_of(const matmul_isa_kernels *k, uint32_t type, quant_vec_dot_fn *dot, matmul_tiled_fn *tiled)
{
    switch (type) {
    case QT_Q4_1: *dot = k->vec_dot_q4_1_q8_1; *tiled = k->matmul_q4_1_q8_1; break;
    case QT_Q8_0: *dot = k->vec_dot_q8_0_q8_0; *tiled = k->matmul_q8_0_q8_0; break;
    case QT_Q5_0: *dot = k->vec_dot_q5_0_q8_0; *tiled = k->matmul_q5_0_q8_0; break;
    case QT_Q4_K: *dot = k->vec_dot_q4_K_q8_K; *tiled = k->matmul_q4_K_q8_K; break;
    case QT_Q5_K: *dot = k->vec_dot_q5_K_q8_K; *tiled = k->matmul_q5_K_q8_K; break;
    case QT_Q6_K: *dot = k->vec_dot_q6_K_q8_K; *tiled = k->matmul_q6_K_q8_K; break;
    case QT_F16: *dot = k->vec_dot_f16_f32; *tiled = k->matmul_f16_f32; break;
    case QT_F32: *dot = k->vec_dot_f32_f32; *tiled = k->matmul_f32_f32; break;
    default: fail_msg("no kernel for type %u", (unsigned)type);
    }
}

/* ---- tests ------------------------------------------------------------------------------- */

/* The quantized types with a tiled kernel, and the row lengths tried for each: 1..5 blocks
 * (partial groups), the models' 576 / 640 / 1536, odd block counts; K-quants 1..8 and 11
 * super-blocks (Gemma 3's 1024 and 2048). */
static const uint32_t quant_types[] = { QT_Q4_1, QT_Q8_0, QT_Q5_0, QT_Q4_K, QT_Q5_K, QT_Q6_K };
enum { N_QUANT_TYPES = sizeof quant_types / sizeof quant_types[0] };
static bool is_kquant(uint32_t type) { return quant_get(type)->blck_size == QK_K; }

/* Random weights, every n_tok 1..MAX_TOK on a few shapes; partial groups; rows long
 * enough to leave the tiled path (n_in > 16384; avx2 Q8_0: > 21824), and K-quant rows
 * whose Q8_K rows fill the 32 KB chunk budget with fewer than 4 tokens (113 super-blocks:
 * the chunk then takes 4 tokens anyway). */
static void test_random_exact(void **state)
{
    (void)state;
    const matmul_isa_kernels *ks[2];
    const char *names[2];
    int nk = isa_sets(ks, names);
    if (nk == 0) skip();
    const int64_t n_ins[] = { 32, 64, 96, 128, 160, 576, 640, 1536, 32 * 37 };
    const int64_t k_ins[] = { 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 256 * 11 };
    int checks = 0;
    for (int ki = 0; ki < nk; ki++)
        for (int ti = 0; ti < N_QUANT_TYPES; ti++) {
            quant_vec_dot_fn dot;
            matmul_tiled_fn tiled;
            kernel_of(ks[ki], quant_types[ti], &dot, &tiled);
            assert_non_null(dot);
            assert_non_null(tiled);
            const bool kq = is_kquant(quant_types[ti]);
            const int64_t *ins = kq ? k_ins : n_ins, every_tok = kq ? 1024 : 576;
            for (size_t ni = 0; ni < sizeof n_ins / sizeof n_ins[0]; ni++) {
                /* every n_tok 1..MAX_TOK on one shape per n_in; rows not a multiple of 4 */
                for (int64_t n_tok = 1; n_tok <= MAX_TOK; n_tok += (ins[ni] == every_tok ? 1 : 7)) {
                    problem p = make_problem(quant_types[ti], ins[ni], 13 + (int64_t)(rnd_u64() % 12), n_tok);
                    fill_weights(&p, (n_tok + (int64_t)ni) % 3 == 0 ? W_RAW : W_QUANT);
                    fill_acts(&p);
                    check_problem(&p, dot, tiled, names[ki], n_tok <= 8 || n_tok == MAX_TOK);
                    free_problem(&p);
                    checks++;
                }
            }
            /* long rows: past the 32 KB activation buffer (per-output path, chunked prep),
             * except avx2 Q8_0 at 530 blocks (96 B per 2 blocks: still one token's fit);
             * K-quants: 70 and 113 super-blocks, 9 tokens */
            for (int64_t nbl = 530; nbl <= 700; nbl += 170) {
                problem p = kq ? make_problem(quant_types[ti], QK_K * (nbl == 530 ? 70 : 113), 6, 9)
                               : make_problem(quant_types[ti], 32 * nbl, 6, 3);
                fill_weights(&p, W_QUANT);
                fill_acts(&p);
                check_problem(&p, dot, tiled, names[ki], true);
                free_problem(&p);
                checks++;
            }
        }
    printf("# %d exactness problems\n", checks);
}

/* The real rows of tests/data/quant/ (blk.0 attn_q / ffn_down Q4_1, token_embd Q8_0),
 * against every n_tok 1..MAX_TOK. */
static void test_real_rows_exact(void **state)
{
    (void)state;
    const matmul_isa_kernels *ks[2];
    const char *names[2];
    int nk = isa_sets(ks, names);
    if (nk == 0) skip();
    struct { const char *file; uint32_t type; int64_t n_in; } files[3] = {
        { "quant/real_q4_1.q", QT_Q4_1, 576 },
        { "quant/real_q4_1_ffn_down.q", QT_Q4_1, 1536 },
        { "quant/real_q8_0.q", QT_Q8_0, 576 },
    };
    for (int f = 0; f < 3; f++) {
        size_t len;
        uint8_t *q = (uint8_t *)test_read_file(test_data_path(files[f].file), &len);
        assert_non_null(q);
        const size_t rb = quant_row_size(files[f].type, files[f].n_in);
        assert_int_equal(len % rb, 0);
        /* 9 rows: the file's rows repeated, so the 4-row tiles see real rows everywhere */
        for (int ki = 0; ki < nk; ki++) {
            quant_vec_dot_fn dot;
            matmul_tiled_fn tiled;
            kernel_of(ks[ki], files[f].type, &dot, &tiled);
            for (int64_t n_tok = 1; n_tok <= MAX_TOK; n_tok++) {
                problem p = make_problem(files[f].type, files[f].n_in, 9, n_tok);
                for (int64_t r = 0; r < p.n_out; r++)
                    memcpy(p.w + (size_t)r * rb, q + (size_t)r % (len / rb) * rb, rb);
                fill_acts(&p);
                check_problem(&p, dot, tiled, names[ki], true);
                free_problem(&p);
            }
        }
        free(q);
    }
}

/* Rows of the real model, when the file is here: 64 rows of blk.0.attn_q, blk.0.ffn_down
 * and token_embd (from the end of the vocabulary too), 1..MAX_TOK tokens. */
static void test_model_rows_exact(void **state)
{
    (void)state;
    const matmul_isa_kernels *ks[2];
    const char *names[2];
    int nk = isa_sets(ks, names);
    const char *path = test_model_path();
    if (nk == 0 || !path) skip();
    char err[256];
    gguf_file *f;
    assert_int_equal(gguf_open(path, &f, err, sizeof err), KVLM_OK);
    const char *tn[3] = { "blk.0.attn_q.weight", "blk.0.ffn_down.weight", "token_embd.weight" };
    for (int i = 0; i < 3; i++) {
        const gguf_tensor *t = gguf_find_tensor(f, tn[i]);
        assert_non_null(t);
        if (t->type != QT_Q4_1 && t->type != QT_Q8_0) continue;
        const size_t rb = quant_row_size(t->type, t->ne[0]);
        for (int ki = 0; ki < nk; ki++) {
            quant_vec_dot_fn dot;
            matmul_tiled_fn tiled;
            kernel_of(ks[ki], t->type, &dot, &tiled);
            for (int64_t n_tok = 1; n_tok <= MAX_TOK; n_tok += 13) {
                problem p = make_problem(t->type, t->ne[0], 64, n_tok);
                int64_t base = (int64_t)(rnd_u64() % (uint64_t)(t->ne[1] - 64));
                if (n_tok == 1) base = t->ne[1] - 64;       /* the last rows of the tensor */
                memcpy(p.w, (const uint8_t *)t->data + (size_t)base * rb, rb * 64);
                fill_acts(&p);
                check_problem(&p, dot, tiled, names[ki], true);
                free_problem(&p);
            }
        }
    }
    gguf_close(f);
}

/* matmul_rows as forward.c calls it (quant_get_fast tables) and with the reference
 * tables: bitwise one vec_dot of that table per output, under row/token splits. */
static void test_matmul_rows_tables(void **state)
{
    (void)state;
    const uint32_t types[] = { QT_Q4_1, QT_Q8_0, QT_Q4_0, QT_F32, QT_F16, QT_Q6_K, QT_Q3_K, QT_Q5_0, QT_Q4_K };
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        for (int fast = 0; fast < 2; fast++) {
            const quant_traits *qt = fast ? quant_get_fast(types[ti]) : quant_get(types[ti]);
            const int64_t n_in = quant_get(types[ti])->blck_size == QK_K ? 512 : is_float_type(types[ti]) ? 1500 : 576;
            problem p = make_problem(types[ti], n_in, 11, 9);
            fill_weights(&p, W_QUANT);
            fill_acts(&p);
            const int64_t ldy = p.n_out + 2;
            float *want = new_y(&p, ldy), *got = new_y(&p, ldy);
            per_output(&p, qt->vec_dot, want, ldy);
            run_split(&p, qt, NULL, got, ldy, 3);
            expect_same(&p, want, got, ldy, fast ? "matmul_rows fast" : "matmul_rows ref");
            free(want);
            free(got);
            free_problem(&p);
        }
    }
    /* the fast tables use a tiled kernel exactly when the CPU runs one */
    const matmul_isa_kernels *ks[2];
    const char *names[2];
    if (isa_sets(ks, names) > 0) {
        assert_ptr_equal(quant_get_fast(QT_Q4_1)->vec_dot, ks[0]->vec_dot_q4_1_q8_1);
        assert_ptr_equal(quant_get_fast(QT_Q8_0)->vec_dot, ks[0]->vec_dot_q8_0_q8_0);
        assert_ptr_equal(matmul_tiled_for(quant_get_fast(QT_Q4_1)), ks[0]->matmul_q4_1_q8_1);
        assert_ptr_equal(matmul_tiled_for(quant_get_fast(QT_Q8_0)), ks[0]->matmul_q8_0_q8_0);
        assert_ptr_equal(quant_get_fast(QT_F16)->vec_dot, ks[0]->vec_dot_f16_f32);
        assert_ptr_equal(quant_get_fast(QT_F32)->vec_dot, ks[0]->vec_dot_f32_f32);
        assert_ptr_equal(matmul_tiled_for(quant_get_fast(QT_F16)), ks[0]->matmul_f16_f32);
        assert_ptr_equal(matmul_tiled_for(quant_get_fast(QT_F32)), ks[0]->matmul_f32_f32);
        for (int ti = 2; ti < N_QUANT_TYPES; ti++) {           /* Q5_0 and the K-quants */
            quant_vec_dot_fn dot;
            matmul_tiled_fn tiled;
            kernel_of(ks[0], quant_types[ti], &dot, &tiled);
            assert_ptr_equal(quant_get_fast(quant_types[ti])->vec_dot, dot);
            assert_ptr_equal(matmul_tiled_for(quant_get_fast(quant_types[ti])), tiled);
            assert_null(matmul_tiled_for(quant_get(quant_types[ti])));
        }
    }
    /* a set the CPU lacks is never in the fast table */
    const cpu_features *c = cpu_get();
    const matmul_isa_kernels *k512 = matmul_avx512_kernels(), *k2 = matmul_avx2_kernels();
    for (int ti = 0; ti < N_QUANT_TYPES; ti++)
        for (int s = 0; s < 2; s++) {
            const matmul_isa_kernels *k = s ? k2 : k512;
            if (!k || (s ? cpu_has_avx2_set(c) : cpu_has_avx512_set(c))) continue;
            quant_vec_dot_fn dot;
            matmul_tiled_fn tiled;
            kernel_of(k, quant_types[ti], &dot, &tiled);
            assert_ptr_not_equal(quant_get_fast(quant_types[ti])->vec_dot, dot);
        }
    if (k512 && !cpu_has_avx512_set(c)) {
        assert_ptr_not_equal(quant_get_fast(QT_Q4_1)->vec_dot, k512->vec_dot_q4_1_q8_1);
        assert_ptr_not_equal(quant_get_fast(QT_Q8_0)->vec_dot, k512->vec_dot_q8_0_q8_0);
        assert_ptr_not_equal(quant_get_fast(QT_F16)->vec_dot, k512->vec_dot_f16_f32);
        assert_ptr_not_equal(quant_get_fast(QT_F32)->vec_dot, k512->vec_dot_f32_f32);
    }
    if (k2 && !cpu_has_avx2_set(c)) {
        assert_ptr_not_equal(quant_get_fast(QT_Q4_1)->vec_dot, k2->vec_dot_q4_1_q8_1);
        assert_ptr_not_equal(quant_get_fast(QT_Q8_0)->vec_dot, k2->vec_dot_q8_0_q8_0);
        assert_ptr_not_equal(quant_get_fast(QT_F16)->vec_dot, k2->vec_dot_f16_f32);
        assert_ptr_not_equal(quant_get_fast(QT_F32)->vec_dot, k2->vec_dot_f32_f32);
    }
    /* what an AVX2-only CPU gets: quant.c's fast_init installs quant_avx2.c's dots, then
     * the avx2 set's over them; matmul_rows must then take the avx2 tiled kernels */
    if (k2 && cpu_has_avx2_set(c)) {
        const uint32_t t2[] = { QT_Q4_1, QT_Q8_0, QT_F16, QT_F32, QT_Q5_0, QT_Q4_K, QT_Q5_K, QT_Q6_K };
        for (size_t ti = 0; ti < sizeof t2 / sizeof t2[0]; ti++) {
            quant_traits avx2_table = *quant_get_fast(t2[ti]);
            matmul_tiled_fn tiled;
            kernel_of(k2, t2[ti], &avx2_table.vec_dot, &tiled);
            assert_ptr_equal(matmul_tiled_for(&avx2_table), tiled);
            problem p = make_problem(t2[ti], is_float_type(t2[ti]) ? 1500 : is_kquant(t2[ti]) ? 1024 : 576, 11, 9);
            fill_weights(&p, W_QUANT);
            fill_acts(&p);
            const int64_t ldy = p.n_out + 2;
            float *want = new_y(&p, ldy), *got = new_y(&p, ldy);
            per_output(&p, avx2_table.vec_dot, want, ldy);
            run_split(&p, &avx2_table, NULL, got, ldy, 3);
            expect_same(&p, want, got, ldy, "matmul_rows avx2 table");
            expect_close_to_ref(&p, got, ldy, "matmul_rows avx2 table");
            free(want);
            free(got);
            free_problem(&p);
        }
    }
    assert_null(matmul_tiled_for(quant_get(QT_Q4_1)));
    assert_null(matmul_tiled_for(quant_get(QT_Q8_0)));
    assert_null(matmul_tiled_for(quant_get_fast(QT_Q4_0)));
    assert_null(matmul_tiled_for(quant_get(QT_F16)));
    assert_null(matmul_tiled_for(quant_get(QT_F32)));
    assert_null(matmul_tiled_for(quant_get_fast(QT_BF16)));
}

/* The batch sizes of the engine: decode (1), small batches and prefill chunks (64, 512:
 * several 32 KB activation chunks, so also the L2 row blocks). The sanitizer build
 * (KVLM_TEST_QUICK) takes 160 in place of 512, still a batch of several chunks for the
 * shorter rows (512 was 87% of the products the scalar reference computes, ~30 s under
 * ASan); the release build keeps 512. */
static void test_batch_sizes_exact(void **state)
{
    (void)state;
    const matmul_isa_kernels *ks[2];
    const char *names[2];
    int nk = isa_sets(ks, names);
    if (nk == 0) skip();
    const int64_t n_toks[] = { 1, 2, 7, 64, test_quick() ? 160 : 512 };
    struct { uint32_t type; int64_t n_in, n_out; } shapes[] = {
        { QT_Q4_1, 576, 37 }, { QT_Q4_1, 1536, 13 }, { QT_Q8_0, 576, 37 },
        { QT_Q8_0, 32 * 9, 450 },      /* 450 rows x 9 blocks: more than one L2 row block */
        { QT_Q5_0, 640, 37 }, { QT_Q5_0, 32 * 9, 600 },         /* 600 x 198 B: 2 row blocks */
        { QT_Q4_K, 2048, 13 }, { QT_Q5_K, 1024, 37 }, { QT_Q6_K, 2048, 21 },
        { QT_Q4_K, 512, 1000 },        /* 1000 x 288 B: more than one L2 row block */
    };
    for (int ki = 0; ki < nk; ki++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
            for (size_t ni = 0; ni < sizeof n_toks / sizeof n_toks[0]; ni++) {
                quant_vec_dot_fn dot;
                matmul_tiled_fn tiled;
                kernel_of(ks[ki], shapes[si].type, &dot, &tiled);
                problem p = make_problem(shapes[si].type, shapes[si].n_in, shapes[si].n_out, n_toks[ni]);
                fill_weights(&p, ni % 2 ? W_RAW : W_QUANT);
                fill_acts(&p);
                check_problem(&p, dot, tiled, names[ki], true);
                free_problem(&p);
            }
}

/* matmul_rows from real threads, rows split as forward.c splits them (pool_split). */
typedef struct split_job { const problem *p; const quant_traits *qt; float *y; } split_job;

static void split_task(void *arg, int ith, int nth)
{
    const split_job *j = arg;
    int64_t r0, r1;
    pool_split(j->p->n_out, ith, nth, &r0, &r1);
    matmul_rows(j->qt, j->p->w, j->p->row_bytes, r0, r1, j->p->xq, j->p->xq_bytes, j->p->n_tok,
                j->p->n_in, j->y, j->p->n_out);
}

static void test_thread_splits_exact(void **state)
{
    (void)state;
    char err[128];
    pool *pl[3] = { NULL, NULL, NULL };
    for (int i = 0; i < 3; i++) assert_int_equal(pool_init(&pl[i], i + 1, err, sizeof err), KVLM_OK);
    const uint32_t types[] = { QT_Q4_1, QT_Q8_0, QT_F16, QT_F32, QT_Q5_0, QT_Q4_K, QT_Q5_K, QT_Q6_K };
    const int64_t n_toks[3] = { 1, 7, 64 };
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (int ni = 0; ni < 3; ni++) {
            const quant_traits *qt = quant_get_fast(types[ti]);
            const int64_t n_in = types[ti] == QT_F16 ? 384 : types[ti] == QT_F32 ? 1500
                               : is_kquant(types[ti]) ? 1024 : types[ti] == QT_Q5_0 ? 640 : 576;
            problem p = make_problem(types[ti], n_in, 103, n_toks[ni]);
            fill_weights(&p, W_QUANT);
            fill_acts(&p);
            float *want = new_y(&p, p.n_out);
            per_output(&p, qt->vec_dot, want, p.n_out);
            for (int i = 0; i < 3; i++) {                 /* 1, 2, 3 threads */
                float *got = new_y(&p, p.n_out);
                split_job j = { &p, qt, got };
                pool_run(pl[i], split_task, &j);
                expect_same(&p, want, got, p.n_out, "threads");
                free(got);
            }
            free(want);
            free_problem(&p);
        }
    for (int i = 0; i < 3; i++) pool_free(pl[i]);
}

/* ---- F16 / F32 weights ---------------------------------------------------------------------- */

static const uint32_t float_types[2] = { QT_F16, QT_F32 };

static void check_float(uint32_t type, int64_t n_in, int64_t n_out, int64_t n_tok, int how,
                        const matmul_isa_kernels *k, const char *isa)
{
    quant_vec_dot_fn dot;
    matmul_tiled_fn tiled;
    kernel_of(k, type, &dot, &tiled);
    assert_non_null(dot);
    assert_non_null(tiled);
    problem p = make_problem(type, n_in, n_out, n_tok);
    fill_weights(&p, how);
    fill_acts(&p);
    check_problem(&p, dot, tiled, isa, true);
    free_problem(&p);
}

/* Every n_in 1..40 (each tail of either set), Whisper's n_in, 45 rows (more than one
 * 40-row widening block at n_in 384), rows past the 64 KB widening buffer (n_in 16385)
 * and past a 256 KB token chunk (n_in 70001, one token per chunk). */
static void test_float_exact(void **state)
{
    (void)state;
    const matmul_isa_kernels *ks[2];
    const char *names[2];
    int nk = isa_sets(ks, names);
    if (nk == 0) skip();
    static const int64_t whisper_n_in[] = { 64, 240, 384, 1152, 1500, 1536 };
    int checks = 0;
    for (int ki = 0; ki < nk; ki++)
        for (int ti = 0; ti < 2; ti++) {
            for (int64_t n_in = 1; n_in <= 40; n_in++, checks++)
                check_float(float_types[ti], n_in, 13 + (int64_t)(rnd_u64() % 12), 1 + n_in % 13,
                            n_in % 3 == 0 ? W_RAW : W_QUANT, ks[ki], names[ki]);
            for (size_t ni = 0; ni < sizeof whisper_n_in / sizeof whisper_n_in[0]; ni++)
                for (int64_t n_tok = 1; n_tok <= MAX_TOK; n_tok += 3, checks++)
                    check_float(float_types[ti], whisper_n_in[ni], n_tok == 13 ? 45 : 13 + (int64_t)(rnd_u64() % 12),
                                n_tok, (n_tok + (int64_t)ni) % 3 == 0 ? W_RAW : W_QUANT, ks[ki], names[ki]);
            check_float(float_types[ti], 16385, 6, 9, W_QUANT, ks[ki], names[ki]);
            check_float(float_types[ti], 70001, 5, 9, W_RAW, ks[ki], names[ki]);
            checks += 2;
        }
    printf("# %d float exactness problems\n", checks);
}

/* Whisper's batch sizes: decode (1), beams (5), prompts (64), the encoder's 512 and 1500
 * (several token chunks, widened row blocks of F16). */
static void test_float_batch_sizes(void **state)
{
    (void)state;
    const matmul_isa_kernels *ks[2];
    const char *names[2];
    int nk = isa_sets(ks, names);
    if (nk == 0) skip();
    static const int64_t n_toks[] = { 1, 5, 64, 512, 1500 };
    static const struct { uint32_t type; int64_t n_in, n_out; } shapes[] = {
        { QT_F16, 384, 45 }, { QT_F16, 1536, 13 }, { QT_F16, 1500, 11 },
        { QT_F32, 64, 45 }, { QT_F32, 1500, 11 },
        /* 109 and 65 tokens per 256 KB chunk: chunks that end inside a token tile */
        { QT_F16, 600, 13 }, { QT_F32, 1000, 7 },
    };
    for (int ki = 0; ki < nk; ki++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
            for (size_t ni = 0; ni < sizeof n_toks / sizeof n_toks[0]; ni++)
                check_float(shapes[si].type, shapes[si].n_in, shapes[si].n_out, n_toks[ni],
                            ni % 2 ? W_RAW : W_QUANT, ks[ki], names[ki]);
}

/* bytes at the end of a mapping whose next page is PROT_NONE, minus `slack`: the
 * returned p has p + bytes + slack == the guard page. *base / *len: for munmap. */
static uint8_t *guarded(size_t bytes, size_t slack, void **base, size_t *len)
{
    const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    const size_t body = (bytes + slack + pg - 1) / pg * pg;
    *len = body + pg;
    uint8_t *m = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    assert_int_equal(mprotect(m + body, pg, PROT_NONE), 0);
    *base = m;
    return m + body - bytes - slack;
}

/* The problem copied so that its rows end w_slack bytes and its activations x_slack bytes
 * before a PROT_NONE page: the tiled kernel (one call over everything) and one vec_dot
 * per output give the bits they give on the malloc'd copies. */
static void check_guarded(const problem *p, quant_vec_dot_fn dot, matmul_tiled_fn tiled, size_t w_slack,
                          size_t x_slack)
{
    const int64_t ldy = p->n_out;
    float *want = new_y(p, ldy), *got = new_y(p, ldy);
    per_output(p, dot, want, ldy);
    void *wb, *xb;
    size_t wl, xl;
    problem g = *p;
    g.w = guarded(p->row_bytes * (size_t)p->n_out, w_slack, &wb, &wl);
    g.xq = guarded(p->xq_bytes * (size_t)p->n_tok, x_slack, &xb, &xl);
    memcpy(g.w, p->w, p->row_bytes * (size_t)p->n_out);
    memcpy(g.xq, p->xq, p->xq_bytes * (size_t)p->n_tok);
    run_split(&g, NULL, tiled, got, ldy, 0);
    expect_same(p, want, got, ldy, "guard page tiled");
    for (int64_t t = 0; t < p->n_tok; t++)
        for (int64_t r = 0; r < p->n_out; r++)
            got[t * ldy + r] = dot(g.w + (size_t)r * p->row_bytes, g.xq + (size_t)t * p->xq_bytes, p->n_in);
    expect_same(p, want, got, ldy, "guard page vec_dot");
    munmap(wb, wl);
    munmap(xb, xl);
    free(want);
    free(got);
}

/* Weights and activations that end right before a PROT_NONE page (slack 0), or one byte
 * before it with every row at an odd address (slack 1: model.bin's f16 tensors are not
 * aligned): the tiled kernels and vec_dots read nothing past a row, and give the same
 * bits as on malloc'd copies. The quantized types likewise (weights at odd addresses with
 * slack 1; Q8_K's float d keeps their activations aligned), with odd block counts (Q5_0's
 * partial last group) and 1..3 super-blocks. */
static void test_guard_pages(void **state)
{
    (void)state;
    const matmul_isa_kernels *ks[2];
    const char *names[2];
    int nk = isa_sets(ks, names);
    if (nk == 0) skip();
    static const int64_t n_ins[] = { 1, 7, 15, 17, 33, 240, 1500 };
    for (int ki = 0; ki < nk; ki++)
        for (size_t slack = 0; slack < 2; slack++) {
            quant_vec_dot_fn dot;
            matmul_tiled_fn tiled;
            for (int ti = 0; ti < 2; ti++)
                for (size_t ni = 0; ni < sizeof n_ins / sizeof n_ins[0]; ni++) {
                    kernel_of(ks[ki], float_types[ti], &dot, &tiled);
                    problem p = make_problem(float_types[ti], n_ins[ni], 9, 10);   /* 10 tokens: widened F16 */
                    fill_weights(&p, W_RAW);
                    fill_acts(&p);
                    check_guarded(&p, dot, tiled, slack, slack * 4);   /* f32 activations stay aligned */
                    free_problem(&p);
                }
            for (int ti = 0; ti < N_QUANT_TYPES; ti++)
                for (int64_t nb = 1; nb <= 5; nb += 2) {
                    kernel_of(ks[ki], quant_types[ti], &dot, &tiled);
                    const int64_t n_in = is_kquant(quant_types[ti]) ? QK_K * (nb + 1) / 2 : 32 * nb;
                    problem p = make_problem(quant_types[ti], n_in, 9, 6);
                    fill_weights(&p, W_RAW);
                    fill_acts(&p);
                    check_guarded(&p, dot, tiled, slack, 0);
                    free_problem(&p);
                }
        }
}

/* The matrices of the fixtures cache's quant/ (gguf-made Q5_0 rows, K-quant rows of random
 * bytes and edge blocks), repeated to 13 rows, for n_tok 1..MAX_TOK: every kernel set and
 * the fast table give bitwise their vec_dot (check_problem), each output within
 * TOL_MATMUL_REL of a double dot over gguf's dequantized weights and the activations. */
static void test_gguf_rows_exact(void **state)
{
    (void)state;
    const matmul_isa_kernels *ks[2];
    const char *names[2];
    int nk = isa_sets(ks, names), n_cases;
    test_qmatrix *m = test_qmatrices(&n_cases);
    if (!m) fail_msg("no quantization vectors in the fixtures cache");
    for (int c = 0; c < n_cases; c++) {
        const uint32_t type = m[c].type;
        const int64_t n_in = m[c].n_in, rows = m[c].rows;
        const size_t rb = quant_row_size(type, n_in);
        assert_int_equal(m[c].q_len, rb * (size_t)rows);
        assert_int_equal(m[c].deq_len, sizeof(float) * (size_t)(rows * n_in));
        const quant_traits *vt = quant_get(quant_get(type)->vec_dot_type);
        float *xf = malloc(sizeof(float) * (size_t)n_in);
        assert_non_null(xf);
        for (int64_t n_tok = 1; n_tok <= MAX_TOK; n_tok += 3) {
            problem p = make_problem(type, n_in, 13, n_tok);
            for (int64_t r = 0; r < p.n_out; r++) memcpy(p.w + (size_t)r * rb, m[c].q + (size_t)(r % rows) * rb, rb);
            fill_acts(&p);
            for (int ki = 0; ki <= nk; ki++) {                 /* the sets, then the fast table */
                quant_vec_dot_fn dot = quant_get_fast(type)->vec_dot;
                matmul_tiled_fn tiled = matmul_tiled_for(quant_get_fast(type));
                if (ki < nk) kernel_of(ks[ki], type, &dot, &tiled);
                if (!tiled) continue;                          /* no set on this CPU */
                const char *isa = ki < nk ? names[ki] : "fast";
                check_problem(&p, dot, tiled, isa, true);
                for (int64_t t = 0; t < n_tok; t++) {
                    const uint8_t *xr = p.xq + (size_t)t * p.xq_bytes;
                    vt->to_float(xr, xf, n_in);
                    for (int64_t r = 0; r < p.n_out; r++) {
                        const float *wf = m[c].deq + (size_t)(r % rows) * (size_t)n_in;
                        double ref = 0;
                        for (int64_t i = 0; i < n_in; i++) ref += (double)wf[i] * xf[i];
                        const double tol = TOL_MATMUL_REL * magnitude(type, p.w + (size_t)r * rb, xr, wf, xf, n_in) + 1e-30;
                        const double got = dot(p.w + (size_t)r * rb, xr, n_in);
                        if (!(fabs(got - ref) <= tol))
                            fail_msg("%s %s row %lld token %lld: %.9g vs gguf double dot %.9g (|diff| %.3g > %.3g)",
                                     m[c].name, isa, (long long)r, (long long)t, got, ref, fabs(got - ref), tol);
                    }
                }
            }
            free_problem(&p);
        }
        free(xf);
    }
    test_qmatrices_free(m, n_cases);
    assert_true(n_cases >= 5);
}

/* Empty ranges write nothing. */
static void test_empty(void **state)
{
    (void)state;
    problem p = make_problem(QT_Q4_1, 64, 4, 1);
    fill_weights(&p, W_QUANT);
    fill_acts(&p);
    float y[4] = { GUARD, GUARD, GUARD, GUARD };
    matmul_rows(quant_get_fast(QT_Q4_1), p.w, p.row_bytes, 2, 2, p.xq, p.xq_bytes, 1, p.n_in, y, 4);
    matmul_rows(quant_get_fast(QT_Q4_1), p.w, p.row_bytes, 0, 4, p.xq, p.xq_bytes, 0, p.n_in, y, 4);
    for (int i = 0; i < 4; i++) assert_true(y[i] == GUARD);
    free_problem(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_exact),
        cmocka_unit_test(test_real_rows_exact),
        cmocka_unit_test(test_model_rows_exact),
        cmocka_unit_test(test_matmul_rows_tables),
        cmocka_unit_test(test_batch_sizes_exact),
        cmocka_unit_test(test_thread_splits_exact),
        cmocka_unit_test(test_float_exact),
        cmocka_unit_test(test_float_batch_sizes),
        cmocka_unit_test(test_guard_pages),
        cmocka_unit_test(test_gguf_rows_exact),
        cmocka_unit_test(test_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
