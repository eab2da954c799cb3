/* matmul_avx2.c - tiled Q4_1 x Q8_1, Q8_0 / Q5_0 x Q8_0, Q4_K / Q5_K / Q6_K x Q8_K, F16 x
 * F32 and F32 x F32 matmuls with AVX2 + FMA + F16C.
 * Room: kern. Built with the Makefile's AVX2_FLAGS and used only when cpu_get() reports
 * that set and not the AVX-512 one (quant_get_fast installs the vec_dots below, then
 * matmul_avx512.c's over them; matmul_rows takes the tiled path only for a table holding
 * them). May touch: kern/quant.h, kern/matmul.h, kern/matmul_impl.h (the tile loops and
 * drivers both ISA files share). The structure is matmul_avx512.c's.
 *
 * The contract (see matmul.h): for every (row r, token t) the float result is one
 * fixed function of W[r] and xq[t]: the same sequence of IEEE operations whatever the
 * tile (R rows x T tokens), the row range [r0, r1), the token chunk or n_tok. The
 * vec_dots of this file ARE that function (a 1 x 1 tile), so
 *     matmul_rows(...)[t][r] == quant_get_fast(type)->vec_dot(W[r], xq[t], n)  bitwise
 * on a CPU where this set is the one installed. Per output the arithmetic is:
 *   Q4_1, Q8_0, Q5_0: groups of 2 blocks (the last may be partial: the missing block reads
 *         as zero). int32 lane l of 8 (block k = l / 4, quarter i = l % 4) holds, exactly,
 *           isum_l = sum_{j=4i..4i+3} w_k[j] * x_k[j] + w_k[16+j] * x_k[16+j]
 *         (Q4_1: w_k[j] = lo(qs_k[j]), w_k[16+j] = hi(qs_k[j]); Q5_0: w = q - 16, summed as
 *         q x plus the prepared -16 * sum x), and per group
 *           acc_l  = fma(dw_k * dx_k, (float)isum_l, acc_l)          (8 lanes)
 *   Q4_1 also: macc_k = fma(mw_k, sx_k, macc_k) per group (k = block of the group), and
 *         at the end tot = acc + [macc_0, macc_1, 0 x 6]. A tile keeps the macc of its
 *         4 rows in one register (lane 2r + k): lanes do not mix, so the value is the same.
 *   Q8_0, Q5_0: tot = acc.
 *   Q4_K, Q5_K, Q6_K: a group is a super-block of 256; int32 lane l holds, exactly, the sum
 *         over the 8 chunks of 32 elements of VPMADDWD(VPMADDUBSW(codes, x), the pairs'
 *         sub-block scales) (Q6_K: codes 0..63, plus its -32 offset, VPMADDWD of -32 *
 *         scales and the 16 bsums, first), and per super-block
 *           Q4_K/Q5_K: acc_l = fma(dx, fmsub(d, isum_l, dmin * msum_l), acc_l),
 *                      msum_l = m_l * (bsums[2l] + bsums[2l+1])
 *           Q6_K:      acc_l = fma(d * dx, isum_l, acc_l);        tot = acc.
 *   F16/F32: the weight is widened exactly to f32 (VCVTPH2PS for F16); lane l of 8
 *         accumulates, for steps s = 0, 1, ..: acc_l = fma(w[8s + l], x[8s + l], acc_l);
 *         the last step of a row whose n is not a multiple of 8 reads lanes past n as 0 in
 *         both w and x (VMASKMOVPS; F16 through a zeroed copy), nothing past the row; tot = acc.
 *   then y = reduce8(tot), a fixed tree: e_i = tot_i + tot_{i+4}, then (e0+e2) + (e1+e3)
 *   (reduce4 forms 4 outputs at once with exactly this pairing for each).
 * Integer parts are exact; only the float order differs from the scalar spec in quant.c
 * (TOL_MATMUL_REL in tests/kern/test_matmul.c; F16/F32: TOL_MATMUL_F_REL, against the
 * spec's double accumulation). F16/F32 take any n_in >= 0: no fallback is needed.
 *
 * Integer products without VNNI: VPMADDUBSW (u8 x s8, pairs summed into saturating int16)
 * then VPMADDWD by 1 (pairs into int32). No pair may saturate:
 *   Q4_1: u8 w = code 0..15, x = |q| <= 127: a pair is <= 2 * 15 * 127, and the lo and hi
 *         halves of a block (two pairs, <= 7620) are added in int16 before VPMADDWD.
 *   Q8_0: |w| as u8 (0..128, -128 included) times x with w's sign (VPSIGNB; |x| <= 127,
 *         quant.h, so negating x is exact): a pair is <= 2 * 128 * 127 = 32512, so the two
 *         halves are widened to int32 apart.
 *   Q5_0: u8 codes 0..31: pairs <= 7874, the two halves (<= 15748) added in int16.
 *   K-quants: codes <= 63 (Q6_K): pairs <= 16002, then VPMADDWD by the int16 scales
 *         (|scale| <= 128): each lane's super-block sum < 2^26, exactly in int32.
 * Lanes 0..3 of the 8 always come from block 0 of the group and 4..7 from block 1 (one
 * 128-bit half per block), so VPMADDUBSW never has to cross halves.
 *
 * Activations are "prepared" once per call (per row block in long batches) into a stack
 * buffer (PREP_BYTES) laid out to match the weight side lane for lane, so the inner loops
 * only do aligned loads of x:
 *   Q4_1 group (128 B): xu[32] = codes 0..15 of block 0, then of block 1; xv[32] = codes
 *        16..31 likewise; dx[8] f32 = d of the lane's block; s2[8] f32 = [s0 s1] 4 times
 *        (lane 2r + k meets row r's m_k).
 *   Q8_0 group (96 B): xu[32], xv[32], dx[8] as for Q4_1.
 *   Q5_0 group (128 B): xu[32], xv[32], dx[8], then nc[8] i32 = -16 * (sum of the lane's 8
 *        codes).
 *   K-quants: nothing is prepared: the Q8_K rows are read in place (codes in element
 *        order, bsums, d).
 *
 * Weights: a Q4_1 group is 40 B (2 x [d m qs[16]]): two 16-byte loads of the codes, one
 * F16C conversion of the two (d, m). A Q8_0 group is 68 B (2 x [d qs[32]]): four 16-byte
 * loads, VPABSB, one F16C conversion of the two d. A Q5_0 group is 44 B: two 16-byte
 * loads of qs, its two qh words spread to bytes (VPSHUFB, a bit per byte, VPCMPEQB).
 * Every load stays inside the group, so the last partial group reads nothing past the
 * row. A K-quant super-block is unpacked into 8 code and 8 scale registers (kgroup).
 *
 * Measured with dev/kernels/bench_matmul.c (modes avx2 / avx2old), 1 thread, on this
 * 2-core AMD EPYC (Zen 4, which runs 256-bit ops at full width: AVX2-only CPUs will
 * differ), while other jobs shared the machine (+-15%): prefill (n_tok = 512) ~120
 * GFLOP/s for Q4_1 n_in = 576, ~107 for 1536, ~80 for the Q8_0 output matrix; the
 * per-output quant_avx2.c dots: 44-51 (so ~2.4x). Decode (n_tok = 1): Q4_1 in L2 20-22
 * GB/s (per output: 14-16); the 96 MB decode sequence 17.7 GB/s, 5.5 ms/token (per
 * output: 12.1, 8.0 ms; matmul_avx512.c: 22.4, 4.3 ms). 4 x 4 tiles measured best even
 * though 16 accumulators fill the 16 YMM registers (some values are spilled to L1):
 * 4 x 2 -20%, 2 x 4 -10%, 3 x 4 -15%, 4 x 6 -11% on Q4_1 (+8% on Q8_0).
 * Gemma 3 270M's shapes (bench_matmul kquant avx2, on the 2-core Intel Xeon with AVX-512,
 * load average 5.6-7.7, best of 15, n_tok = 512): 640 x 1024 / 640 x 2048: Q4_K 56 / 62,
 * Q5_K 39 / 69, Q6_K 72 / 49 GFLOP/s; 2048 x 640 / 640 x 1024 / 640 x 2048: Q5_0 74 / 74 / 61,
 * Q8_0 54 / 53 / 58, Q4_1 60 / 100 / 93. Not tuned on an AVX2-only CPU. */
#include "kern/matmul.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#include <stdalign.h>
#include <stddef.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

/* Prepared activations live on the stack: 32 KB keeps them in L1 while a row tile passes
 * over them. Rows longer than fits for one token (n_in > 16384 for Q4_1, > 21824 for
 * Q8_0) take the per-output path, which prepares in chunks: the same arithmetic. */
enum { PREP_BYTES = 32768, Q41_GROUP = 128, Q80_GROUP = 96, Q50_GROUP = 128 };

/* Register tiles: MM_R rows x MM_T tokens, with MM_R x 1 (decode) and 1 x MM_T, 1 x 1 at
 * the edges. Every shape gives the same per-output result; they only set speed (the
 * #ifndef lets the kernel lab time other shapes: the file comment has the numbers). */
#ifndef MM_R
#define MM_R 4
#endif
#ifndef MM_T
#define MM_T 4
#endif

/* Software prefetch, as in matmul_avx512.c: bytes ahead in this call's weight rows. */
#ifndef MATMUL_PF_DIST
#define MATMUL_PF_DIST 8192
#endif
#ifndef MATMUL_PF_HINT
#define MATMUL_PF_HINT _MM_HINT_T1
#endif

#include "kern/matmul_impl.h"

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }
static inline uint32_t ld16(const uint8_t *p) { uint16_t u; memcpy(&u, p, 2); return u; }
static inline int ld32(const uint8_t *p) { uint32_t u; memcpy(&u, p, 4); return (int)u; }
INLINE __m128i load16(const uint8_t *p) { return _mm_loadu_si128((const __m128i *)p); }

/* The first MATMUL_PF_DIST bytes of this call's rows (the loops prefetch that far
 * ahead, so without this the start of a call would wait on memory). */
static void prefetch_start(const uint8_t *p, const uint8_t *end)
{
    const uint8_t *stop = p + MATMUL_PF_DIST < end ? p + MATMUL_PF_DIST : end;
    for (; p < stop; p += 64) _mm_prefetch((const char *)p, MATMUL_PF_HINT);
}

/* The lines of the group at p + MATMUL_PF_DIST, unless that is past this call's rows.
 * A 40-byte Q4_1 group needs one line per group (the next group starts in the line
 * where this one ends). A 68-byte Q8_0 group needs two: with one, a line in 17 is never
 * asked for, and each is a demand miss (measured: 30 MB Q8_0 at n_tok = 1, ~10 GB/s with
 * one line, 23-25 with two; quant_avx2.c's per-output dot: 20-22). */
INLINE void prefetch_ahead(const uint8_t *p, const uint8_t *end, const int two)
{
    if (p + MATMUL_PF_DIST < end) {
        _mm_prefetch((const char *)p + MATMUL_PF_DIST, MATMUL_PF_HINT);
        if (two) _mm_prefetch((const char *)p + MATMUL_PF_DIST + 64, MATMUL_PF_HINT);
    }
}

/* Four 8-lane totals -> [y(a), y(b), y(c), y(d)], each with the tree of the file
 * comment; the pairing for one output does not depend on the other three. */
INLINE __m128 reduce4(__m256 a, __m256 b, __m256 c, __m256 d)
{
    /* halves added: ab = [ea | eb], ea_i = a_i + a_{i+4} */
    __m256 ab = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
    __m256 cd = _mm256_add_ps(_mm256_permute2f128_ps(c, d, 0x20), _mm256_permute2f128_ps(c, d, 0x31));
    /* v = [ea0+ea2, ea1+ea3, ec0+ec2, ec1+ec3 | the same for b, d] */
    __m256 v = _mm256_add_ps(_mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
    /* lane 0: a, 2: c, 4: b, 6: d */
    __m256 z = _mm256_add_ps(v, _mm256_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm256_castps256_ps128(_mm256_permutevar8x32_ps(z, _mm256_setr_epi32(0, 4, 2, 6, 0, 0, 0, 0)));
}

/* Stores the n (1..4) first lanes of v at y. */
INLINE void store_n(float *y, __m128 v, int n)
{
    if (n == 4) { _mm_storeu_ps(y, v); return; }
    const __m128i mask = _mm_cmpgt_epi32(_mm_set1_epi32(n), _mm_setr_epi32(0, 1, 2, 3));
    _mm_maskstore_ps(y, mask, v);
}

/* One group of one weight row, unpacked. Q4_1: u, v = lo / hi nibbles as u8 ([block 0 |
 * block 1] each), f = [d0 m0 d1 m1]. Q8_0: u, v = |codes 0..15|, |codes 16..31| as u8, su,
 * sv = the codes (for their signs). dw = d of each lane's block. */
typedef struct wgroup { __m256i u, v, su, sv; __m256 dw; __m128 f; } wgroup;

/* Two 16-byte halves -> one register [lo | hi]. */
INLINE __m256i join(__m128i lo, __m128i hi)
{
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}

/* [f0 f1 f2 f3] -> [f0 x4 | fi x4] (i = 1 or 2: where block 1's d sits) */
INLINE __m256 spread_d(__m128 f, int i)
{
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(f), _mm256_setr_epi32(0, 0, 0, 0, i, i, i, i));
}

/* ============================ prepared activations =============================== */

/* Prepares tokens [0, n) of xq (rows xq_bytes apart: blk_q8_1 for Q4_1 weights, blk_q8_0
 * for Q8_0 and Q5_0) for groups [g0, g0 + ng) into prep (per token ng * Q41_GROUP,
 * Q80_GROUP or Q50_GROUP bytes, laid out as the file comment says). Blocks past nb are zero. */
static void x_prep(const int kind, const uint8_t *xq, size_t xq_bytes, int64_t n, int64_t nb,
                   int64_t g0, int64_t ng, uint8_t *prep)
{
    const int q41 = kind == KIND_Q41;
    const size_t blk = q41 ? sizeof(blk_q8_1) : sizeof(blk_q8_0);
    const size_t qs = q41 ? offsetof(blk_q8_1, qs) : offsetof(blk_q8_0, qs);
    const size_t gsz = q41 ? Q41_GROUP : kind == KIND_Q50 ? Q50_GROUP : Q80_GROUP;
    for (int64_t t = 0; t < n; t++) {                          /* t: token */
        const uint8_t *x = xq + (size_t)t * xq_bytes;
        uint8_t *p = prep + (size_t)(t * ng) * gsz;
        for (int64_t g = g0; g < g0 + ng; g++, p += gsz) {     /* g: group of 2 blocks */
            for (int k = 0; k < 2; k++) {                      /* k: block of the group */
                const int64_t b = 2 * g + k;
                const uint8_t *xb = x + (size_t)b * blk;
                __m256i q = b < nb ? _mm256_loadu_si256((const __m256i *)(xb + qs)) : _mm256_setzero_si256();
                const float d = b < nb ? h2f((uint16_t)ld16(xb)) : 0.0f;
                _mm_store_si128((__m128i *)(p + 16 * k), _mm256_castsi256_si128(q));
                _mm_store_si128((__m128i *)(p + 32 + 16 * k), _mm256_extracti128_si256(q, 1));
                _mm_store_ps((float *)(p + 64) + 4 * k, _mm_set1_ps(d));
                if (q41) {                                     /* s of blk_q8_1 */
                    const float sx = b < nb ? h2f((uint16_t)ld16(xb + 2)) : 0.0f;
                    for (int r = 0; r < 4; r++) ((float *)(p + 96))[2 * r + k] = sx;   /* lane 2r + k: row r's m_k */
                }
            }
            if (kind == KIND_Q50) {   /* nc lane l = -16 * (sum of xu[4l..4l+3] and xv[4l..4l+3]) */
                const __m256i one8 = _mm256_set1_epi8(1);
                const __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(one8, _mm256_load_si256((const __m256i *)p)),
                                                     _mm256_maddubs_epi16(one8, _mm256_load_si256((const __m256i *)(p + 32))));
                const __m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
                _mm256_store_si256((__m256i *)(p + 96), _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(s32, 4)));
            }
        }
    }
}

/* ================================ Q4_1 x Q8_1 ==================================== */

/* One group of one weight row at p; nbytes = 40, or 20 for a partial last group. */
INLINE wgroup q41_unpack(const uint8_t *p, int64_t nbytes)
{
    const int full = nbytes == 40;
    const __m256i q = join(load16(p + 4), full ? load16(p + 24) : _mm_setzero_si128());
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    wgroup w;
    w.u = _mm256_and_si256(q, m4);
    w.v = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
    w.su = w.sv = _mm256_setzero_si256();
    w.f = _mm_cvtph_ps(_mm_setr_epi32(ld32(p), full ? ld32(p + 20) : 0, 0, 0));
    w.dw = spread_d(w.f, 2);
    return w;
}

/* The m of the group's 2 blocks for rows 0..R-1 (R <= 4) -> lane 2r + k. Lanes of rows
 * past R copy row 0 or 2 (never read). */
INLINE __m256 q41_mrows(const wgroup *w, const int R)
{
    __m128 lo = _mm_shuffle_ps(w[0].f, R > 1 ? w[1].f : w[0].f, _MM_SHUFFLE(3, 1, 3, 1));
    if (R <= 2) return _mm256_set_m128(lo, lo);
    __m128 hi = _mm_shuffle_ps(w[2].f, R > 3 ? w[3].f : w[2].f, _MM_SHUFFLE(3, 1, 3, 1));
    return _mm256_set_m128(hi, lo);
}

/* The group's integer part for one (row, token); xp: the token's prepared group. Q5_0
 * (nc = 1) uses it too, adding the prepared -16 * sum x of each lane. */
INLINE void q41_step(__m256 *acc, const wgroup *w, const uint8_t *xp, const int nc)
{
    __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(w->u, _mm256_load_si256((const __m256i *)xp)),
                                 _mm256_maddubs_epi16(w->v, _mm256_load_si256((const __m256i *)(xp + 32))));
    __m256i isum = _mm256_madd_epi16(p, _mm256_set1_epi16(1));
    if (nc) isum = _mm256_add_epi32(isum, _mm256_load_si256((const __m256i *)(xp + 96)));
    __m256 s = _mm256_mul_ps(w->dw, _mm256_load_ps((const float *)(xp + 64)));
    *acc = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(isum), *acc);
}

/* The group's m * s terms for up to 4 rows and one token: lane 2r + k. */
INLINE void q41_mstep(__m256 *macc, __m256 mrows, const uint8_t *xp)
{
    *macc = _mm256_fmadd_ps(mrows, _mm256_load_ps((const float *)(xp + 96)), *macc);
}

/* Row r's total: acc + its 2 lanes of macc (in lanes 0, 1, zeros elsewhere). */
INLINE __m256 q41_total(__m256 acc, __m256 macc, int r)
{
    __m256 m = _mm256_permutevar8x32_ps(macc, _mm256_setr_epi32(2 * r, 2 * r + 1, 0, 0, 0, 0, 0, 0));
    return _mm256_add_ps(acc, _mm256_blend_ps(_mm256_setzero_ps(), m, 0x03));
}

/* ================================ Q8_0 x Q8_0 ==================================== */

/* One group of one weight row at p; nbytes = 68, or 34 for a partial last group. */
INLINE wgroup q80_unpack(const uint8_t *p, int64_t nbytes)
{
    const int full = nbytes == 68;
    wgroup w;
    w.su = join(load16(p + 2), full ? load16(p + 36) : _mm_setzero_si128());
    w.sv = join(load16(p + 18), full ? load16(p + 52) : _mm_setzero_si128());
    w.u = _mm256_abs_epi8(w.su);              /* -128 -> 0x80 = 128 as u8: exact */
    w.v = _mm256_abs_epi8(w.sv);
    w.f = _mm_cvtph_ps(_mm_setr_epi32((int)(ld16(p) | (full ? ld16(p + 34) : 0u) << 16), 0, 0, 0));
    w.dw = spread_d(w.f, 1);
    return w;
}

INLINE void q80_step(__m256 *acc, const wgroup *w, const uint8_t *xp)
{
    const __m256i one = _mm256_set1_epi16(1);
    __m256i xu = _mm256_sign_epi8(_mm256_load_si256((const __m256i *)xp), w->su);
    __m256i xv = _mm256_sign_epi8(_mm256_load_si256((const __m256i *)(xp + 32)), w->sv);
    __m256i isum = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(w->u, xu), one),
                                    _mm256_madd_epi16(_mm256_maddubs_epi16(w->v, xv), one));
    __m256 s = _mm256_mul_ps(w->dw, _mm256_load_ps((const float *)(xp + 64)));
    *acc = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(isum), *acc);
}

/* ================================ Q5_0 x Q8_0 ==================================== */

/* One group of one weight row at p (2 x [d qh[4] qs[16]]); nbytes = 44, or 22 for a partial
 * last group. u, v = codes 0..15 / 16..31 as u8 0..31 ([block 0 | block 1] each, as for
 * Q4_1); bit 4 of byte i comes from bit i % 16 (u) or 16 + i % 16 (v) of its block's qh. */
INLINE wgroup q50_unpack(const uint8_t *p, int64_t nbytes)
{
    const int full = nbytes == 44;
    const __m256i q = join(load16(p + 6), full ? load16(p + 28) : _mm_setzero_si128());
    const __m256i m4 = _mm256_set1_epi8(0x0F), bit = _mm256_set1_epi64x(0x8040201008040201ll);
    const int h0 = ld32(p + 2), h1 = full ? ld32(p + 24) : 0;
    const __m256i hb = _mm256_setr_epi32(h0, h0, h0, h0, h1, h1, h1, h1);
    const __m256i sel_u = _mm256_setr_epi64x(0, 0x0101010101010101ll, 0, 0x0101010101010101ll);
    const __m256i sel_v = _mm256_add_epi8(sel_u, _mm256_set1_epi8(2));
    const __m256i hu = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(hb, sel_u), bit), bit);
    const __m256i hv = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(hb, sel_v), bit), bit);
    const __m256i b4 = _mm256_set1_epi8(0x10);
    wgroup w;
    w.u = _mm256_or_si256(_mm256_and_si256(q, m4), _mm256_and_si256(hu, b4));
    w.v = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), _mm256_and_si256(hv, b4));
    w.su = w.sv = _mm256_setzero_si256();
    w.f = _mm_cvtph_ps(_mm_setr_epi32((int)(ld16(p) | (full ? ld16(p + 22) : 0u) << 16), 0, 0, 0));
    w.dw = spread_d(w.f, 1);
    return w;
}

/* ============================ tiles, either format ================================ */

#define TILE_RMAX 4
_Static_assert(MM_R >= 1 && MM_R <= TILE_RMAX && MM_T >= 1, "tile shapes");

enum { BLK_PER_GROUP = 2 };
INLINE int64_t group_bytes(const int kind)
{
    return kind == KIND_Q41 ? 40 : kind == KIND_Q80 ? 68 : kind == KIND_Q50 ? 44
         : kind == KIND_Q4K ? 144 : kind == KIND_Q5K ? 176 : 210;
}
/* Prepared bytes per group; the K-quants' Q8_K rows are read in place, a block per group */
INLINE size_t group_prep(const int kind)
{
    return kind == KIND_Q41 ? Q41_GROUP : kind == KIND_Q80 ? Q80_GROUP : kind == KIND_Q50 ? Q50_GROUP
         : sizeof(blk_q8_K);
}
INLINE int64_t blk_per_group(const int kind) { return is_kq(kind) ? 1 : BLK_PER_GROUP; }
/* Bytes of the last group of a row of nb blocks (ng groups) */
INLINE int64_t last_group_bytes(const int kind, int64_t nb, int64_t ng)
{
    return (nb - blk_per_group(kind) * (ng - 1)) * (group_bytes(kind) / blk_per_group(kind));
}

/* Accumulators of an R x T tile (see the file comment): acc: [R][T], macc: [T] (Q4_1). */
typedef __m256 acc_vec;
typedef struct tile_acc { acc_vec acc[TILE_RMAX][MM_T], macc[MM_T]; } tile_acc;

INLINE void tile_zero(tile_acc *a, const int R, const int T)
{
    _Pragma("GCC unroll 4")
    for (int t = 0; t < T; t++) {
        a->macc[t] = _mm256_setzero_ps();
        _Pragma("GCC unroll 4")
        for (int r = 0; r < R; r++) a->acc[r][t] = _mm256_setzero_ps();
    }
}

/* Groups [g0, g1) of a row's ng into a tile: rows w0 + r * row_bytes (group g at byte
 * g * group_bytes), tokens xp0 + t * tok_stride (group g prepared at (g - g0) * group_prep). */
INLINE void tile_groups(const int kind, const int R, const int T, tile_acc *a, const uint8_t *w0,
                        size_t row_bytes, const uint8_t *xp0, size_t tok_stride, int64_t g0,
                        int64_t g1, int64_t ng, int64_t last_bytes, const uint8_t *pf_end)
{
    for (int64_t g = g0; g < g1; g++) {                        /* g: group of blocks */
        const int64_t nbytes = g + 1 < ng ? group_bytes(kind) : last_bytes;
        const uint8_t *xg = xp0 + (size_t)(g - g0) * group_prep(kind);
        wgroup w[TILE_RMAX];
        _Pragma("GCC unroll 4")
        for (int r = 0; r < R; r++) {
            const uint8_t *p = w0 + (size_t)r * row_bytes + (size_t)g * (size_t)group_bytes(kind);
            prefetch_ahead(p, pf_end, kind == KIND_Q80);
            w[r] = kind == KIND_Q41 ? q41_unpack(p, nbytes) : kind == KIND_Q50 ? q50_unpack(p, nbytes)
                                    : q80_unpack(p, nbytes);
        }
        if (kind == KIND_Q41) {
            const __m256 mrows = q41_mrows(w, R);
            _Pragma("GCC unroll 4")
            for (int t = 0; t < T; t++) q41_mstep(&a->macc[t], mrows, xg + (size_t)t * tok_stride);
        }
        _Pragma("GCC unroll 4")
        for (int r = 0; r < R; r++) {
            _Pragma("GCC unroll 4")
            for (int t = 0; t < T; t++) {
                const uint8_t *xp = xg + (size_t)t * tok_stride;
                if (kind == KIND_Q80) q80_step(&a->acc[r][t], &w[r], xp);
                else q41_step(&a->acc[r][t], &w[r], xp, kind == KIND_Q50);
            }
        }
    }
}

/* ============================ K-quants x Q8_K ==================================== */

/* One super-block of one weight row, unpacked (all in element order):
 *   q[j]   elements 32j .. 32j+31 as u8 codes (Q4_K 0..15, Q5_K 0..31, Q6_K 0..63: before
 *          Q6_K's -32)
 *   sc[j]  the int16 scale of each VPMADDUBSW lane of q[j] (lane i: elements 32j + 2i, 2i+1)
 *   m      Q4_K/Q5_K: [m0 m0 m1 m1 .. m7 m7] int16, beside Q8_K's 16 bsums; Q6_K: -32 *
 *          scales[0..15] int16
 *   d, dmin the super-block's scales (dmin: Q4_K/Q5_K)
 * 19 registers: more than the 16 YMM, so the compiler keeps some in L1 (measured: dev/kernels). */
typedef struct kgroup { __m256i q[8], sc[8]; __m256i m; __m256 d, dmin; } kgroup;

/* v has only bit j of each byte (maybe) set -> that bit moved to bit 4 */
INLINE __m256i bit_to_4(__m256i v, const int j)
{
    return j < 4 ? _mm256_slli_epi16(v, 4 - j) : j > 4 ? _mm256_srli_epi16(v, j - 4) : v;
}

/* Q4_K [d dmin scales[12] qs[128]] or Q5_K [d dmin scales[12] qh[32] qs[128]] at p: the low
 * nibbles of qs[32c .. 32c+31] are sub-block 2c, the high ones 2c+1; Q5_K's bit 4 of
 * element 32j + l is bit j of qh[l]. */
INLINE kgroup k4_unpack(const int kind, const uint8_t *p)
{
    const int q5 = kind == KIND_Q5K;
    const uint8_t *qs = p + (q5 ? 48 : 16);
    const __m128i sm = k4_scales(p + 4);
    const __m256i smy = _mm256_broadcastsi128_si256(sm), m4 = _mm256_set1_epi8(0x0F);
    const __m256i qh = q5 ? _mm256_loadu_si256((const __m256i *)(p + 16)) : _mm256_setzero_si256();
    const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128(ld32(p)));     /* [d dmin 0 0] */
    kgroup w;
    w.m = k4_mins(sm);
    w.d = _mm256_broadcastss_ps(dd);
    w.dmin = _mm256_broadcastss_ps(_mm_movehdup_ps(dd));
    _Pragma("GCC unroll 4")
    for (int c = 0; c < 4; c++) {                              /* c: 64 elements */
        const __m256i y = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
        w.q[2 * c] = _mm256_and_si256(y, m4);
        w.q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(y, 4), m4);
    }
    _Pragma("GCC unroll 8")
    for (int j = 0; j < 8; j++) {                              /* j: sub-block of 32 */
        if (q5) w.q[j] = _mm256_or_si256(w.q[j], bit_to_4(_mm256_and_si256(qh, _mm256_set1_epi8((char)(1 << j))), j));
        w.sc[j] = _mm256_shuffle_epi8(smy, _mm256_set1_epi16((short)(0x8000 | j)));   /* [sc_j, 0] pairs */
    }
    return w;
}

/* Q6_K [ql[128] qh[64] scales[16] d] at p: element 128h + 32k + l has low bits
 * (ql[64h + 32(k & 1) + l] >> 4 (k >> 1)) & 15 and high bits (qh[32h + l] >> 2k) & 3. */
INLINE kgroup k6_unpack(const uint8_t *p)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x03);
    kgroup w;
    _Pragma("GCC unroll 2")
    for (int h = 0; h < 2; h++) {
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(p + 128 + 32 * h));
        _Pragma("GCC unroll 4")
        for (int k = 0; k < 4; k++) {
            const __m256i ql = _mm256_loadu_si256((const __m256i *)(p + 64 * h + 32 * (k & 1)));
            const __m256i lo = _mm256_and_si256(k >> 1 ? _mm256_srli_epi16(ql, 4) : ql, m4);
            const __m256i hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), m2), 4);
            w.q[4 * h + k] = _mm256_or_si256(lo, hi);
        }
    }
    const __m128i s8 = _mm_loadu_si128((const __m128i *)(p + 192));
    _Pragma("GCC unroll 8")
    for (int j = 0; j < 8; j++)   /* int16 lanes 0-7: scale 2j, 8-15: 2j+1 */
        w.sc[j] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s8, _mm_set_epi64x((2 * j + 1) * 0x0101010101010101ll,
                                                                           2 * j * 0x0101010101010101ll)));
    w.m = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(_mm256_cvtepi8_epi16(s8), 5));
    w.d = _mm256_set1_ps(h2f((uint16_t)ld16(p + 208)));
    w.dmin = _mm256_setzero_ps();
    return w;
}

/* One super-block of one (row, token); x: the token's block. The integer parts are exact:
 *   isum_l = sum_j [VPMADDWD lane l of (VPMADDUBSW(q[j], x[32j..]), sc[j])]  (+ Q6_K: the
 *            -32 * scale * bsum terms, VPMADDWD of m and bsums, first)
 *   msum_l = m_l * (bsums[2l] + bsums[2l+1])   (Q4_K/Q5_K)
 * then Q4_K/Q5_K: acc_l = fma(dx, fmsub(d, isum_l, dmin * msum_l), acc_l);
 *      Q6_K:      acc_l = fma(d * dx, isum_l, acc_l). */
INLINE void kq_step(const int kind, __m256 *acc, const kgroup *w, const blk_q8_K *x)
{
    const __m256i bs = _mm256_loadu_si256((const __m256i *)x->bsums);
    __m256i isum = kind == KIND_Q6K ? _mm256_madd_epi16(w->m, bs) : _mm256_setzero_si256();
    _Pragma("GCC unroll 8")
    for (int j = 0; j < 8; j++) {
        const __m256i p16 = _mm256_maddubs_epi16(w->q[j], _mm256_loadu_si256((const __m256i *)(x->qs + 32 * j)));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p16, w->sc[j]));
    }
    if (kind == KIND_Q6K) {
        *acc = _mm256_fmadd_ps(_mm256_mul_ps(w->d, _mm256_set1_ps(x->d)), _mm256_cvtepi32_ps(isum), *acc);
        return;
    }
    const __m256 mterm = _mm256_mul_ps(w->dmin, _mm256_cvtepi32_ps(_mm256_madd_epi16(w->m, bs)));
    const __m256 inner = _mm256_fmsub_ps(w->d, _mm256_cvtepi32_ps(isum), mterm);
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(x->d), inner, *acc);
}

#define MATMUL_IMPL_TILES
#include "kern/matmul_impl.h"

MATMUL_IMPL_ALL_KINDS

/* ======================= F32 / F16 weights x F32 activations ====================== */

/* Lanes along n_in: one 8-lane accumulator per output (file comment). MM_FR x MM_FT is
 * the main tile (3 x 4: 12 accumulators + 3 weights + 1 activation = the 16 YMM
 * registers); tokens left over after the full MM_FT tiles take MM_FR1 x 1 tiles (the
 * decode shape), rows left over take 1 x MM_FT and 1 x 1.
 * Measured on the AVX-512 Xeon (bench_matmul whisper avx2, 1 thread; not tuned on an
 * AVX2-only CPU): n_tok = 512 / 1500, 1152x384 F16 87, F32 100; 1536x384 F16 102, F32
 * 86; 384x1536 F16 81, F32 82 GFLOP/s (Q8_0: 73-80). */
#ifndef MM_FR
#define MM_FR 3
#endif
#ifndef MM_FT
#define MM_FT 4
#endif
#ifndef MM_FR1
#define MM_FR1 8
#endif
#define FTILE_RMAX 8
_Static_assert(MM_FR >= 1 && MM_FR <= FTILE_RMAX && MM_FR1 >= 1 && MM_FR1 <= FTILE_RMAX && MM_FT >= 1,
               "F tile shapes");

/* As in matmul_avx512.c: token chunks of F_X_CHUNK_BYTES stay in L2; F16 weights of a
 * batch of at least F16_WIDEN_MIN_TOK tokens are widened to f32 first (exact). */
enum { F_X_CHUNK_BYTES = 256 * 1024, F_WBUF_BYTES = 64 * 1024, F16_WIDEN_MIN_TOK = 8 };

/* Lanes [0, n) set (n: 1..7), for VMASKMOVPS */
INLINE __m256i mask_lanes(int64_t n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Weight lanes [i, i + 8) of a row as f32. */
INLINE __m256 fw_load(const int kind, const uint8_t *row, int64_t i)
{
    if (kind == KIND_F32) return _mm256_loadu_ps((const float *)(row + 4 * i));
    return _mm256_cvtph_ps(load16(row + 2 * i));
}

/* Lanes [i, i + k) (k: 1..7), the rest reading as zero; nothing past them is read. */
INLINE __m256 fw_load_tail(const int kind, const uint8_t *row, int64_t i, int64_t k)
{
    if (kind == KIND_F32) return _mm256_maskload_ps((const float *)(row + 4 * i), mask_lanes(k));
    uint16_t h[8] = { 0 };
    memcpy(h, row + 2 * i, (size_t)k * 2);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
}

/* An R x T tile: rows w0 + r * row_bytes, tokens x0 + t * xq_bytes (f32), n elements;
 * y[t * ldy + r] for r < R, t < T. */
INLINE void f_tile(const int kind, const int R, const int T, const uint8_t *w0, size_t row_bytes,
                   const uint8_t *x0, size_t xq_bytes, int64_t n, float *y, int64_t ldy)
{
    __m256 acc[FTILE_RMAX][MM_FT];                             /* acc: [R][T], 8 lanes each */
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; r++) {
        _Pragma("GCC unroll 8")
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    }
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {                               /* i: first lane of the step */
        __m256 w[FTILE_RMAX];
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; r++) w[r] = fw_load(kind, w0 + (size_t)r * row_bytes, i);
        _Pragma("GCC unroll 8")
        for (int t = 0; t < T; t++) {
            const __m256 x = _mm256_loadu_ps((const float *)(x0 + (size_t)t * xq_bytes) + i);
            _Pragma("GCC unroll 8")
            for (int r = 0; r < R; r++) acc[r][t] = _mm256_fmadd_ps(w[r], x, acc[r][t]);
        }
    }
    if (i < n) {                                               /* the last n % 8 lanes */
        __m256 w[FTILE_RMAX];
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; r++) w[r] = fw_load_tail(kind, w0 + (size_t)r * row_bytes, i, n - i);
        _Pragma("GCC unroll 8")
        for (int t = 0; t < T; t++) {
            const __m256 x = _mm256_maskload_ps((const float *)(x0 + (size_t)t * xq_bytes) + i, mask_lanes(n - i));
            _Pragma("GCC unroll 8")
            for (int r = 0; r < R; r++) acc[r][t] = _mm256_fmadd_ps(w[r], x, acc[r][t]);
        }
    }
    _Pragma("GCC unroll 8")
    for (int t = 0; t < T; t++) {
        _Pragma("GCC unroll 2")
        for (int r = 0; r < R; r += 4) {                       /* rows r .. r+3 */
            const int k = R - r < 4 ? R - r : 4;
            store_n(y + t * ldy + r, reduce4(acc[r][t], acc[r + (k > 1)][t], acc[r + 2 * (k > 2)][t],
                                             acc[r + 3 * (k > 3)][t]), k);
        }
    }
}

/* The table's vec_dots: the 1 x 1 tile. */
static float f32_dot_one(const void *w, const void *x, int64_t n)
{
    float y;
    f_tile(KIND_F32, 1, 1, w, 0, x, 0, n, &y, 1);
    return y;
}
static float f16_dot_one(const void *w, const void *x, int64_t n)
{
    float y;
    f_tile(KIND_F16, 1, 1, w, 0, x, 0, n, &y, 1);
    return y;
}

/* Rows [ra, rb) x tokens [0, tn) of x8 in the tile shapes above; y: [tn][ldy]. */
INLINE void f_rows_batch(const int kind, const uint8_t *w8, size_t row_bytes, int64_t ra, int64_t rb,
                         const uint8_t *x8, size_t xq_bytes, int64_t tn, int64_t n, float *y, int64_t ldy)
{
    const int64_t tfull = tn / MM_FT * MM_FT;
    if (tfull > 0) {
        int64_t r = ra;
        for (; r + MM_FR <= rb; r += MM_FR)                    /* r: first row of the tile */
            for (int64_t t = 0; t < tfull; t += MM_FT)         /* t: first token of the tile */
                f_tile(kind, MM_FR, MM_FT, w8 + (size_t)r * row_bytes, row_bytes, x8 + (size_t)t * xq_bytes,
                       xq_bytes, n, y + t * ldy + r, ldy);
        for (; r < rb; r++)
            for (int64_t t = 0; t < tfull; t += MM_FT)
                f_tile(kind, 1, MM_FT, w8 + (size_t)r * row_bytes, row_bytes, x8 + (size_t)t * xq_bytes,
                       xq_bytes, n, y + t * ldy + r, ldy);
    }
    for (int64_t t = tfull; t < tn; t++) {                     /* the last tn % MM_FT tokens */
        const uint8_t *xt = x8 + (size_t)t * xq_bytes;
        int64_t r = ra;
        for (; r + MM_FR1 <= rb; r += MM_FR1)
            f_tile(kind, MM_FR1, 1, w8 + (size_t)r * row_bytes, row_bytes, xt, 0, n, y + t * ldy + r, ldy);
        for (; r < rb; r++)
            f_tile(kind, 1, 1, w8 + (size_t)r * row_bytes, row_bytes, xt, 0, n, y + t * ldy + r, ldy);
    }
}

/* Rows [r0, r1) of W (f16) widened to f32 into dst: [r1 - r0][n]. */
static void f16_widen(const uint8_t *w8, size_t row_bytes, int64_t r0, int64_t r1, int64_t n, float *dst)
{
    for (int64_t r = r0; r < r1; r++, dst += n) {              /* r: row */
        const uint8_t *row = w8 + (size_t)r * row_bytes;
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, fw_load(KIND_F16, row, i));
        if (i < n) _mm256_maskstore_ps(dst + i, mask_lanes(n - i), fw_load_tail(KIND_F16, row, i, n - i));
    }
}

INLINE void f_matmul(const int kind, const void *W, size_t row_bytes, int64_t r0, int64_t r1,
                     const void *xq, size_t xq_bytes, int64_t n_tok, int64_t n_in, float *y, int64_t ldy)
{
    const uint8_t *w8 = W, *x8 = xq;
    const size_t xrow = (size_t)n_in * sizeof(float);          /* activation bytes per token */
    const int64_t tc = xrow && xrow < F_X_CHUNK_BYTES ? (int64_t)(F_X_CHUNK_BYTES / xrow) : 1;
    const int widen = kind == KIND_F16 && xrow > 0 && xrow <= F_WBUF_BYTES;
    /* rows [ra, rb) per block: F_WBUF_BYTES of f32 weights (widened or in place) */
    int64_t rows_per_block = (int64_t)(F_WBUF_BYTES / (xrow ? xrow : 1));
    if (rows_per_block >= MM_FR) rows_per_block = rows_per_block / MM_FR * MM_FR;
    if (rows_per_block < 1) rows_per_block = 1;
    alignas(32) float wbuf[F_WBUF_BYTES / sizeof(float)];
    for (int64_t t0 = 0; t0 < n_tok; t0 += tc) {               /* tokens [t0, t0 + tn): a chunk */
        const int64_t tn = n_tok - t0 < tc ? n_tok - t0 : tc;
        const uint8_t *xc = x8 + (size_t)t0 * xq_bytes;
        float *yc = y + t0 * ldy;
        if (tn < MM_FT) {                                      /* decode: one pass over the rows */
            f_rows_batch(kind, w8, row_bytes, r0, r1, xc, xq_bytes, tn, n_in, yc, ldy);
            continue;
        }
        for (int64_t ra = r0; ra < r1; ra += rows_per_block) { /* rows [ra, rb): one block */
            const int64_t rb = r1 - ra < rows_per_block ? r1 : ra + rows_per_block;
            if (widen && tn >= F16_WIDEN_MIN_TOK) {
                f16_widen(w8, row_bytes, ra, rb, n_in, wbuf);
                f_rows_batch(KIND_F32, (const uint8_t *)wbuf, xrow, 0, rb - ra, xc, xq_bytes, tn, n_in,
                             yc + ra, ldy);
            } else {
                f_rows_batch(kind, w8, row_bytes, ra, rb, xc, xq_bytes, tn, n_in, yc, ldy);
            }
        }
    }
}

static void matmul_f32_avx2(const void *W, size_t row_bytes, int64_t r0, int64_t r1,
                            const void *xq, size_t xq_bytes, int64_t n_tok, int64_t n_in,
                            float *y, int64_t ldy)
{
    f_matmul(KIND_F32, W, row_bytes, r0, r1, xq, xq_bytes, n_tok, n_in, y, ldy);
}

static void matmul_f16_avx2(const void *W, size_t row_bytes, int64_t r0, int64_t r1,
                            const void *xq, size_t xq_bytes, int64_t n_tok, int64_t n_in,
                            float *y, int64_t ldy)
{
    f_matmul(KIND_F16, W, row_bytes, r0, r1, xq, xq_bytes, n_tok, n_in, y, ldy);
}

static const matmul_isa_kernels avx2_kernels = {
    .name = "avx2",
    MATMUL_IMPL_QUANT_SET,
    .vec_dot_f16_f32 = f16_dot_one,
    .matmul_f16_f32 = matmul_f16_avx2,
    .vec_dot_f32_f32 = f32_dot_one,
    .matmul_f32_f32 = matmul_f32_avx2,
};

const matmul_isa_kernels *matmul_avx2_kernels(void) { return &avx2_kernels; }

#else
const matmul_isa_kernels *matmul_avx2_kernels(void) { return NULL; }
#endif
