/* matmul_avx512.c - tiled Q4_1 x Q8_1, Q8_0 / Q5_0 x Q8_0 and Q4_K / Q5_K / Q6_K x Q8_K
 * matmuls with AVX-512 VNNI, and F16 / F32 weights x F32 activations with AVX-512F FMA
 * (f32 accumulation; no AVX512-FP16 math).
 * Room: kern. Built with the Makefile's AVX512_FLAGS and used only when cpu_get()
 * reports the whole set (quant_get_fast installs the vec_dots below, and matmul_rows
 * takes the tiled path only for a table holding them). May touch: kern/quant.h,
 * kern/matmul.h, kern/matmul_impl.h (the tile loops and drivers both ISA files share).
 *
 * The contract (see matmul.h): for every (row r, token t) the float result is one
 * fixed function of W[r] and xq[t]: the same sequence of IEEE operations whatever the
 * tile (R rows x T tokens), the row range [r0, r1), the token chunk or n_tok. The
 * vec_dots of this file ARE that function (a 1 x 1 tile), so
 *     matmul_rows(...)[t][r] == quant_get_fast(type)->vec_dot(W[r], xq[t], n)  bitwise.
 * Per output the arithmetic is:
 *   Q4_1: groups of 4 blocks (the last may be partial: missing blocks read as zero).
 *         int32 lane l of 16 (block k = l / 4, quarter i = l % 4) holds, exactly,
 *           isum_l = sum_{j=4i..4i+3} lo(qs_k[j]) * x_k[j] + hi(qs_k[j]) * x_k[16+j]
 *         and per group:
 *           acc_l  = fma(dw_k * dx_k, (float)isum_l, acc_l)          (16 lanes)
 *           macc_k = fma(mw_k, sx_k, macc_k)                         (4 lanes, k = block)
 *         at the end tot = acc + [macc_0..3, 0 x 12]. A tile keeps the macc of its 4 rows
 *         in one register (lane 4r + k): lanes do not mix, so the value is the same.
 *   Q8_0, Q5_0: groups of 2 blocks; int32 lane l (block k = l / 8) holds the exact sum of
 *         4 products (Q5_0: of (q - 16) x); per group acc_l = fma(dw_k * dx_k, (float)isum_l,
 *         acc_l); tot = acc.
 *   Q4_K, Q5_K, Q6_K: a group is a super-block of 256; int32 lane l holds, exactly, the
 *         VPDPWSSD sum over the 4 chunks of 64 elements of (VPMADDUBSW pairs of code x
 *         activation) x that pair's sub-block scale (Q6_K: codes 0..63, and its -32 offset
 *         as -32 * scale * bsum of each 16 in lanes 0..7), and per super-block
 *           Q4_K/Q5_K: acc_l = fma(dx, fmsub(d, isum_l, dmin * msum_l), acc_l),
 *                      msum_l = m_l * (bsums[2l] + bsums[2l+1]) for l < 8, else 0
 *           Q6_K:      acc_l = fma(d * dx, isum_l, acc_l);        tot = acc.
 *   F16/F32: the weight is widened exactly to f32 (VCVTPH2PS for F16); lane l of 16
 *         accumulates, for steps s = 0, 1, ..: acc_l = fma(w[16s + l], x[16s + l], acc_l);
 *         the last step of a row whose n is not a multiple of 16 uses masked loads (lanes
 *         past n are 0 in both w and x, nothing past the row is read); tot = acc.
 *   then y = reduce16(tot), a fixed tree: quarters (0+2) and (1+3), then their sum, then
 *   in the quarter (e0+e2) + (e1+e3)  (reduce4 forms 4 outputs at once with exactly this
 *   pairing for each).
 * Integer parts are exact; only the float order differs from the scalar spec in quant.c
 * (TOL_MATMUL_REL in tests/kern/test_matmul.c; F16/F32: TOL_MATMUL_F_REL, against the
 * spec's double accumulation). F16/F32 take any n_in >= 0: no fallback is needed.
 *
 * Activations are "prepared" once per call (per row block in long batches) into a stack
 * buffer (PREP_BYTES) laid out to match the weight side lane for lane, so the inner loops
 * only do aligned loads of x:
 *   Q4_1 group (256 B): xl[64] = codes 0..15 of each of the 4 blocks, xh[64] = codes
 *        16..31, dx[16] f32 = d of the lane's block, s4[16] f32 = s of blocks 0..3, 4 times.
 *   Q8_0 group (192 B): x[64] = the codes of both blocks, ncx[16] i32 = -128 * (sum of
 *        the lane's 4 codes), dx[16] f32. The weights enter VPDPBUSD as u8 w + 128
 *        (w ^ 0x80): sum (w + 128) x - 128 sum x is the exact dot for every weight byte,
 *        -128 included; activation codes are |x| <= 127 (quant.h).
 *   Q5_0 group: Q8_0's with ncx = -16 * (sum of the 4 codes); the weights enter as their
 *        u8 codes 0..31 (q - 16 is the value), so sum q x - 16 sum x is the exact dot.
 *   K-quants: nothing is prepared; the Q8_K rows are read in place (codes in element
 *        order, bsums, d), as the weights are unpacked in element order too.
 *
 * Weights: a Q4_1 group is 80 B (4 x [d m qs[16]]), each block 5 dwords, so two
 * overlapping 64-byte loads and one VPERMT2D gather the 64 code bytes, one VPERMD the
 * 4 (d, m) pairs. A Q8_0 group is 68 B (2 x [d qs[32]]): two 32-byte loads of the codes
 * and one VPERMW of the two d. A Q5_0 group is 44 B (2 x [d qh[4] qs[16]]): each qs
 * broadcast to two 128-bit lanes and shifted by 0 / 4 gives the codes in element order,
 * and the two qh words are a 64-bit byte mask that adds the 16s. Full groups read only
 * their own bytes; the last partial group uses masked loads (nothing past the row is read).
 * A Q4_K/Q5_K super-block: 32 bytes of qs broadcast to both 256-bit halves, shifted by
 * 0 / 4 per half, are sub-blocks 2c and 2c+1; scales and mins unpacked once (ggml's
 * 32-bit shuffles) and spread to int16 lanes by VPSHUFB; Q5_K's qh tested against bit
 * 2c / 2c+1 per half. Q6_K: 64 bytes of ql give two chunks (low / high nibbles), qh
 * shifted per half their top 2 bits, VPERMW the int8 scales widened to int16. Integer
 * bounds: VPMADDUBSW pairs <= 2 * 63 * 127 (no saturation), each lane's super-block sum
 * < 2^26; the K-quant lanes convert to float exactly below 2^24 (real rows: far below).
 *
 * Measured with dev/kernels/bench_matmul.c, 1 thread, on this 2-core AMD EPYC (Zen 4,
 * 512-bit ops double-pumped; dev/kernels/bw.c reads ~21-23 GB/s from DRAM per core):
 * decode streams the 96 MB of weights at 21-25 GB/s, what bw.c reads (the per-output
 * quant_avx512.c dots: 15-17); prefill (n_tok = 512) runs at ~125 GFLOP/s for n_in = 576
 * and ~150 for 1536 (per output: 35-55). 4 x 4 tiles measured best (4 x 2: -13%;
 * 4 x 3 and 2 x 4: -5 to -7%; 3 x 4: equal on Q4_1, -25% on Q8_0).
 * Gemma 3 270M's shapes (bench_matmul kquant, 1 thread, best of 15, on the 2-core Intel
 * Xeon with AVX-512 while other jobs kept its load average at 4.9-5.6, so +-20%): n_tok =
 * 512, 640 x 1024 / 640 x 2048: Q4_K 132 / 114, Q5_K 123 / 79, Q6_K 129 / 111 GFLOP/s;
 * 2048 x 640 / 640 x 1024 / 640 x 2048: Q5_0 76 / 97 / 71 against Q8_0 66 / 97 / 76 and
 * Q4_1 139 / 160 / 157. The K-quant tile shapes were kept at 4 x 4: under that load the
 * runs of 4 x 2, 2 x 4, 3 x 4 and 4 x 6 differed by less than their noise (+-40%). */
#include "kern/matmul.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512DQ__) && defined(__AVX512VNNI__) && defined(__F16C__) && defined(__FMA__)
#include <immintrin.h>
#include <stdalign.h>

#define INLINE static inline __attribute__((always_inline))

/* Prepared activations live on the stack: 32 KB keeps them in L1 while a row tile passes
 * over them. Rows longer than fits for one token (n_in > 16384 here) take the
 * per-output path, which prepares in chunks: the same arithmetic. */
enum { PREP_BYTES = 32768, Q41_GROUP = 256, Q80_GROUP = 192 };

/* Register tiles: MM_R rows x MM_T tokens, with MM_R x 1 (decode) and 1 x MM_T, 1 x 1 at
 * the edges. Every shape gives the same per-output result; they only set speed (the
 * #ifndef lets the kernel lab time other shapes: -DMM_T=2). */
#ifndef MM_R
#define MM_R 4
#endif
#ifndef MM_T
#define MM_T 4
#endif

/* Software prefetch: bytes ahead in this call's weight rows (PREFETCHT1: into L2).
 * Measured on bench_matmul's decode sequence (96 MB, 1 thread, while another process
 * loaded DRAM): none 8.7 GB/s, 2048 B ahead 10, 8192 B 15.5, 16384 B 15.5. */
#ifndef MATMUL_PF_DIST
#define MATMUL_PF_DIST 8192
#endif
#ifndef MATMUL_PF_HINT
#define MATMUL_PF_HINT _MM_HINT_T1
#endif

#include "kern/matmul_impl.h"

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

INLINE __mmask64 mask_bytes(int64_t n)   /* the first n (0..64) bytes */
{
    return n >= 64 ? ~(__mmask64)0 : n <= 0 ? 0 : (((__mmask64)1 << n) - 1);
}

/* The first MATMUL_PF_DIST bytes of this call's rows (the loops prefetch that far
 * ahead, so without this the start of a call would wait on memory). */
static void prefetch_start(const uint8_t *p, const uint8_t *end)
{
    const uint8_t *stop = p + MATMUL_PF_DIST < end ? p + MATMUL_PF_DIST : end;
    for (; p < stop; p += 64) _mm_prefetch((const char *)p, MATMUL_PF_HINT);
}

/* Two lines at p + MATMUL_PF_DIST, unless that is past this call's rows. */
INLINE void prefetch_ahead(const uint8_t *p, const uint8_t *end)
{
    if (p + MATMUL_PF_DIST < end) {
        _mm_prefetch((const char *)p + MATMUL_PF_DIST, MATMUL_PF_HINT);
        _mm_prefetch((const char *)p + MATMUL_PF_DIST + 64, MATMUL_PF_HINT);
    }
}

/* Four 16-lane totals -> [y(a), y(b), y(c), y(d)], each with the tree of the file
 * comment; the pairing for one output does not depend on the other three. */
INLINE __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d)
{
    __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                              _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(1, 0, 1, 0)),
                              _mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(3, 2, 3, 2)));
    /* ab = [a0+a2, a1+a3, b0+b2, b1+b3] (quarters); now (q0+q2) + (q1+q3) per row */
    __m512 v = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(3, 1, 3, 1)));
    /* quarter k of v holds row k's e0..e3 -> (e0+e2) + (e1+e3) in lane 4k */
    __m512 w = _mm512_add_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(1, 0, 3, 2)));
    __m512 z = _mm512_add_ps(w, _mm512_permute_ps(w, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0,
                                                                          0, 0, 0, 0, 0, 0, 0, 0), z));
}

/* Stores the n (1..4) first lanes of v at y. */
INLINE void store_n(float *y, __m128 v, int n)
{
    if (n == 4) _mm_storeu_ps(y, v);
    else _mm_mask_storeu_ps(y, (__mmask8)((1u << n) - 1), v);
}

/* One group of one weight row, unpacked: the codes as u8 (Q4_1: lo/hi nibbles; Q8_0: lo =
 * code + 128, hi unused), dw = d of each lane's block, f = Q4_1's [d0 m0 .. d3 m3]. */
typedef struct wgroup { __m512i lo, hi; __m512 dw; __m256 f; } wgroup;

/* ================================ Q4_1 x Q8_1 ==================================== */

/* Prepares tokens [0, n) of xq (blk_q8_1 rows, xq_bytes apart) for groups [g0, g0 + ng)
 * into prep (per token ng * Q41_GROUP bytes). Blocks past nb are zero. */
static void q41_prep(const uint8_t *xq, size_t xq_bytes, int64_t n, int64_t nb, int64_t g0,
                     int64_t ng, uint8_t *prep)
{
    for (int64_t t = 0; t < n; t++) {
        const blk_q8_1 *x = (const blk_q8_1 *)(xq + (size_t)t * xq_bytes);
        uint8_t *p = prep + (size_t)(t * ng) * Q41_GROUP;
        for (int64_t g = g0; g < g0 + ng; g++, p += Q41_GROUP) {
            float *dx = (float *)(p + 128), *s4 = (float *)(p + 192);
            for (int k = 0; k < 4; k++) {                      /* k: block of the group */
                const int64_t b = 4 * g + k;
                __m256i q = b < nb ? _mm256_loadu_si256((const __m256i *)x[b].qs) : _mm256_setzero_si256();
                const float d = b < nb ? h2f(x[b].d) : 0.0f, sx = b < nb ? h2f(x[b].s) : 0.0f;
                _mm_store_si128((__m128i *)(p + 16 * k), _mm256_castsi256_si128(q));
                _mm_store_si128((__m128i *)(p + 64 + 16 * k), _mm256_extracti128_si256(q, 1));
                _mm_store_ps(dx + 4 * k, _mm_set1_ps(d));
                for (int r = 0; r < 4; r++) s4[4 * r + k] = sx;   /* lane 4r + k meets row r's m_k */
            }
        }
    }
}

/* Dword indices into a group (A = bytes 0..63 as 0..15, B = bytes 16..79 as 16..31):
 * codes of block k = dwords 5k+1 .. 5k+4; block 3's sit 4 lower in B. */
static const int32_t Q41_QIDX[16] __attribute__((aligned(64))) = {
    1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14, 28, 29, 30, 31 };

/* One group of one weight row at p; nbytes = 80, or less for a partial last group. */
INLINE wgroup q41_unpack(const uint8_t *p, int64_t nbytes)
{
    __m512i a, b;
    if (nbytes == 80) {
        a = _mm512_loadu_si512(p);
        b = _mm512_loadu_si512(p + 16);
    } else {
        a = _mm512_maskz_loadu_epi8(mask_bytes(nbytes), p);
        b = _mm512_maskz_loadu_epi8(mask_bytes(nbytes - 16), p + 16);
    }
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512i q = _mm512_permutex2var_epi32(a, _mm512_load_si512(Q41_QIDX), b);
    wgroup w;
    w.lo = _mm512_and_si512(q, m4);
    w.hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
    /* (d, m) of the 4 blocks = dwords 0, 5, 10, 15 -> f = [d0 m0 d1 m1 d2 m2 d3 m3] */
    __m512i dm = _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 5, 10, 15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), a);
    w.f = _mm256_cvtph_ps(_mm512_castsi512_si128(dm));
    w.dw = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4, 6, 6, 6, 6),
                                 _mm512_zextps256_ps512(w.f));
    return w;
}

/* The m of the group's 4 blocks for rows 0..R-1 (R <= 4) -> lane 4r + k. Lanes of rows
 * past R copy row 0 or 2 (never read). */
INLINE __m512 q41_mrows(const wgroup *w, const int R)
{
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 17, 19, 21, 23, 0, 0, 0, 0, 0, 0, 0, 0);
    __m512 f0 = _mm512_zextps256_ps512(w[0].f);
    __m512 lo = _mm512_permutex2var_ps(f0, odd, R > 1 ? _mm512_zextps256_ps512(w[1].f) : f0);
    if (R <= 2) return lo;
    __m512 f2 = _mm512_zextps256_ps512(w[2].f);
    __m512 hi = _mm512_permutex2var_ps(f2, odd, R > 3 ? _mm512_zextps256_ps512(w[3].f) : f2);
    return _mm512_insertf32x8(lo, _mm512_castps512_ps256(hi), 1);
}

/* The group's integer part for one (row, token); xp: the token's prepared group. */
INLINE void q41_step(__m512 *acc, const wgroup *w, const uint8_t *xp)
{
    __m512i isum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w->lo, _mm512_load_si512(xp));
    isum = _mm512_dpbusd_epi32(isum, w->hi, _mm512_load_si512(xp + 64));
    __m512 s = _mm512_mul_ps(w->dw, _mm512_load_ps((const float *)(xp + 128)));
    *acc = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(isum), *acc);
}

/* The group's m * s terms for up to 4 rows and one token: lane 4r + k. */
INLINE void q41_mstep(__m512 *macc, __m512 mrows, const uint8_t *xp)
{
    *macc = _mm512_fmadd_ps(mrows, _mm512_load_ps((const float *)(xp + 192)), *macc);
}

/* Row r's total: acc + its 4 lanes of macc (in lanes 0..3, zeros elsewhere). */
INLINE __m512 q41_total(__m512 acc, __m512 macc, int r)
{
    const __m512i idx = _mm512_add_epi32(_mm512_set1_epi32(4 * r), _mm512_setr_epi32(0, 1, 2, 3, 0, 0, 0, 0,
                                                                                     0, 0, 0, 0, 0, 0, 0, 0));
    return _mm512_add_ps(acc, _mm512_maskz_permutexvar_ps(0x000F, idx, macc));
}

/* ================================ Q8_0 x Q8_0 ==================================== */

/* bias: what the weight codes are offset by as they enter VPDPBUSD (128 for Q8_0, 16 for
 * Q5_0): ncx = -bias * (sum of the lane's 4 codes). */
static void q80_prep(const uint8_t *xq, size_t xq_bytes, int64_t n, int64_t nb, int64_t g0,
                     int64_t ng, uint8_t *prep, const int bias)
{
    for (int64_t t = 0; t < n; t++) {
        const blk_q8_0 *x = (const blk_q8_0 *)(xq + (size_t)t * xq_bytes);
        uint8_t *p = prep + (size_t)(t * ng) * Q80_GROUP;
        for (int64_t g = g0; g < g0 + ng; g++, p += Q80_GROUP) {
            for (int k = 0; k < 2; k++) {
                const int64_t b = 2 * g + k;
                __m256i q = b < nb ? _mm256_loadu_si256((const __m256i *)x[b].qs) : _mm256_setzero_si256();
                const float d = b < nb ? h2f(x[b].d) : 0.0f;
                /* -bias * (sum of each 4 codes) = dpbusd of bias bytes with the codes, negated */
                __m256i c = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8((char)bias), q);
                _mm256_store_si256((__m256i *)(p + 32 * k), q);
                _mm256_store_si256((__m256i *)(p + 64 + 32 * k), _mm256_sub_epi32(_mm256_setzero_si256(), c));
                _mm256_store_ps((float *)(p + 128 + 32 * k), _mm256_set1_ps(d));
            }
        }
    }
}

/* d of block 0 (word 0) in lanes 0..7, of block 1 (word 17) in lanes 8..15 */
static const uint16_t Q80_SIDX[32] __attribute__((aligned(64))) = {
    0, 0, 0, 0, 0, 0, 0, 0, 17, 17, 17, 17, 17, 17, 17, 17 };

INLINE wgroup q80_unpack(const uint8_t *p, int64_t nbytes)
{
    __m512i a, q;
    if (nbytes == 68) {
        a = _mm512_loadu_si512(p);
        q = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p + 2))),
                               _mm256_loadu_si256((const __m256i *)(p + 36)), 1);
    } else {   /* one block: the second half reads as zero */
        a = _mm512_maskz_loadu_epi8(mask_bytes(nbytes), p);
        q = _mm512_maskz_loadu_epi8(mask_bytes(nbytes - 2 > 32 ? 32 : nbytes - 2), p + 2);
    }
    wgroup w;
    w.lo = _mm512_xor_si512(q, _mm512_set1_epi8((char)0x80));    /* w + 128 as u8 */
    w.hi = _mm512_setzero_si512();
    w.f = _mm256_setzero_ps();
    w.dw = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(_mm512_load_si512(Q80_SIDX), a)));
    return w;
}

INLINE void q80_step(__m512 *acc, const wgroup *w, const uint8_t *xp)
{
    __m512i isum = _mm512_dpbusd_epi32(_mm512_load_si512(xp + 64), w->lo, _mm512_load_si512(xp));
    __m512 s = _mm512_mul_ps(w->dw, _mm512_load_ps((const float *)(xp + 128)));
    *acc = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(isum), *acc);
}

/* ================================ Q5_0 x Q8_0 ==================================== */

/* 16-bit lanes: a in the low 256 bits, b in the high ones (srlv counts) */
INLINE __m512i halves16(int a, int b)
{
    return _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16((short)a), _mm512_set1_epi16((short)b));
}

/* One group of one weight row at p (2 x [d qh[4] qs[16]]); nbytes = 44, or 22 for a partial
 * last group. The codes as u8 0..31 in element order ([block 0 | block 1]), which the
 * Q8_0 step meets with a prepared ncx of bias 16; dw as for Q8_0. */
INLINE wgroup q50_unpack(const uint8_t *p, int64_t nbytes)
{
    const int full = nbytes == 44;
    /* [qs0 qs0 qs1 qs1] (128-bit lanes), shifted by 0 / 4: lo and hi nibbles in order */
    const __m512i cnt = _mm512_setr_epi64(0, 0, 0x0004000400040004ll, 0x0004000400040004ll,
                                          0, 0, 0x0004000400040004ll, 0x0004000400040004ll);
    __m512i q = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(p + 6)));
    q = full ? _mm512_mask_broadcast_i32x4(q, 0xFF00, _mm_loadu_si128((const __m128i *)(p + 28)))
             : _mm512_maskz_mov_epi32(0x00FF, q);
    q = _mm512_and_si512(_mm512_srlv_epi16(q, cnt), _mm512_set1_epi8(0x0F));
    /* bit j of the two qh words is bit 4 of byte j: one byte mask */
    const __mmask64 hb = (__mmask64)mm_ld32(p + 2) | (full ? (__mmask64)mm_ld32(p + 24) << 32 : 0);
    wgroup w;
    w.lo = _mm512_mask_add_epi8(q, hb, q, _mm512_set1_epi8(16));
    w.hi = _mm512_setzero_si512();
    w.f = _mm256_setzero_ps();
    const __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)(mm_ld16(p) | (full ? mm_ld16(p + 22) : 0u) << 16)));
    w.dw = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                                 _mm512_castps128_ps512(f));
    return w;
}

/* ============================ tiles, either format ================================ */

#define TILE_RMAX 4
_Static_assert(MM_R >= 1 && MM_R <= TILE_RMAX && MM_T >= 1, "tile shapes");

INLINE int64_t blk_per_group(const int kind) { return kind == KIND_Q41 ? 4 : is_kq(kind) ? 1 : 2; }
INLINE int64_t group_bytes(const int kind)
{
    return kind == KIND_Q41 ? 80 : kind == KIND_Q80 ? 68 : kind == KIND_Q50 ? 44
         : kind == KIND_Q4K ? 144 : kind == KIND_Q5K ? 176 : 210;
}
INLINE size_t group_prep(const int kind)
{
    return kind == KIND_Q41 ? Q41_GROUP : is_kq(kind) ? sizeof(blk_q8_K) : Q80_GROUP;
}
/* Bytes of the last group of a row of nb blocks (ng groups) */
INLINE int64_t last_group_bytes(const int kind, int64_t nb, int64_t ng)
{
    return (nb - blk_per_group(kind) * (ng - 1)) * (group_bytes(kind) / blk_per_group(kind));
}

/* Accumulators of an R x T tile (see the file comment): acc: [R][T], macc: [T] (Q4_1). */
typedef __m512 acc_vec;
typedef struct tile_acc { acc_vec acc[TILE_RMAX][MM_T], macc[MM_T]; } tile_acc;

INLINE void tile_zero(tile_acc *a, const int R, const int T)
{
    _Pragma("GCC unroll 4")
    for (int t = 0; t < T; t++) {
        a->macc[t] = _mm512_setzero_ps();
        _Pragma("GCC unroll 4")
        for (int r = 0; r < R; r++) a->acc[r][t] = _mm512_setzero_ps();
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
        wgroup w[TILE_RMAX];
        _Pragma("GCC unroll 4")
        for (int r = 0; r < R; r++) {
            const uint8_t *p = w0 + (size_t)r * row_bytes + (size_t)g * (size_t)group_bytes(kind);
            prefetch_ahead(p, pf_end);
            w[r] = kind == KIND_Q41 ? q41_unpack(p, nbytes) : kind == KIND_Q50 ? q50_unpack(p, nbytes)
                                    : q80_unpack(p, nbytes);
        }
        const __m512 mrows = kind == KIND_Q41 ? q41_mrows(w, R) : _mm512_setzero_ps();
        _Pragma("GCC unroll 4")
        for (int t = 0; t < T; t++) {
            const uint8_t *xp = xp0 + (size_t)t * tok_stride + (size_t)(g - g0) * group_prep(kind);
            if (kind == KIND_Q41) q41_mstep(&a->macc[t], mrows, xp);
            _Pragma("GCC unroll 4")
            for (int r = 0; r < R; r++) {
                if (kind == KIND_Q41) q41_step(&a->acc[r][t], &w[r], xp);
                else q80_step(&a->acc[r][t], &w[r], xp);
            }
        }
    }
}

/* ============================ K-quants x Q8_K ==================================== */

/* One super-block of one weight row, unpacked (all in element order):
 *   q[c]   elements 64c .. 64c+63 as u8 codes (Q4_K 0..15, Q5_K 0..31, Q6_K 0..63: before
 *          Q6_K's -32)
 *   sc[c]  the int16 scale of each VPMADDUBSW lane of q[c] (lane i: elements 64c + 2i, 2i+1)
 *   m      Q4_K/Q5_K: [m0 m0 m1 m1 .. m7 m7] int16, beside Q8_K's 16 bsums; Q6_K: -32 *
 *          scales[0..15] int16
 *   d, dmin the super-block's scales (dmin: Q4_K/Q5_K) */
typedef struct kgroup { __m512i q[4], sc[4]; __m256i m; __m512 d; __m256 dmin; } kgroup;

/* pshufb indices into [sc0..sc7 m0..m7] (each 128-bit lane): int16 lanes 0-15 = sc[2c],
 * lanes 16-31 = sc[2c+1] */
#define KSC8(a) a, 0x80, a, 0x80, a, 0x80, a, 0x80, a, 0x80, a, 0x80, a, 0x80, a, 0x80
static const uint8_t K4_SCIDX[4][64] __attribute__((aligned(64))) = {
    { KSC8(0), KSC8(0), KSC8(1), KSC8(1) }, { KSC8(2), KSC8(2), KSC8(3), KSC8(3) },
    { KSC8(4), KSC8(4), KSC8(5), KSC8(5) }, { KSC8(6), KSC8(6), KSC8(7), KSC8(7) } };
/* Q6_K: int16 lane i of chunk c takes scale 4c + i / 8 */
#define K6S8(a) a, a, a, a, a, a, a, a
static const uint16_t K6_SIDX[4][32] __attribute__((aligned(64))) = {
    { K6S8(0), K6S8(1), K6S8(2), K6S8(3) }, { K6S8(4), K6S8(5), K6S8(6), K6S8(7) },
    { K6S8(8), K6S8(9), K6S8(10), K6S8(11) }, { K6S8(12), K6S8(13), K6S8(14), K6S8(15) } };

/* Bytes: a in the low 256 bits, b in the high ones */
INLINE __m512i halves8(int a, int b)
{
    return _mm512_mask_blend_epi8(0xFFFFFFFF00000000ull, _mm512_set1_epi8((char)a), _mm512_set1_epi8((char)b));
}

/* Q4_K [d dmin scales[12] qs[128]] or Q5_K [d dmin scales[12] qh[32] qs[128]] at p. Chunk c
 * is qs[32c .. 32c+31] twice, shifted by 0 / 4 (sub-blocks 2c and 2c+1); Q5_K adds 16
 * where bit 2c / 2c+1 of qh[l] is set. */
INLINE kgroup k4_unpack(const int kind, const uint8_t *p)
{
    const int q5 = kind == KIND_Q5K;
    const uint8_t *qs = p + (q5 ? 48 : 16);
    const __m128i sm = k4_scales(p + 4);
    const __m512i smz = _mm512_broadcast_i32x4(sm), m4 = _mm512_set1_epi8(0x0F), cnt = halves16(0, 4);
    const __m512i qh = q5 ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(p + 16)))
                          : _mm512_setzero_si512();
    kgroup w;
    _Pragma("GCC unroll 4")
    for (int c = 0; c < 4; c++) {                              /* c: 64 elements */
        const __m512i y = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * c)));
        w.q[c] = _mm512_and_si512(_mm512_srlv_epi16(y, cnt), m4);
        if (q5) w.q[c] = _mm512_mask_add_epi8(w.q[c], _mm512_test_epi8_mask(qh, halves8(1 << (2 * c), 2 << (2 * c))),
                                              w.q[c], _mm512_set1_epi8(16));
        w.sc[c] = _mm512_shuffle_epi8(smz, _mm512_load_si512(K4_SCIDX[c]));
    }
    w.m = k4_mins(sm);
    const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128((int)mm_ld32(p)));    /* [d dmin 0 0] */
    w.d = _mm512_broadcastss_ps(dd);
    w.dmin = _mm256_broadcastss_ps(_mm_movehdup_ps(dd));
    return w;
}

/* Q6_K [ql[128] qh[64] scales[16] d] at p. For h = 0, 1: ql[64h .. 64h+63] low nibbles are
 * elements 128h + 0..63, high nibbles 128h + 64..127; their top 2 bits are qh[32h + l]
 * shifted by 0 / 2 (low) and 4 / 6 (high) in the two halves. */
INLINE kgroup k6_unpack(const uint8_t *p)
{
    kgroup w;
    const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(p + 192)));
    _Pragma("GCC unroll 4")
    for (int c = 0; c < 4; c++)
        w.sc[c] = _mm512_permutexvar_epi16(_mm512_load_si512(K6_SIDX[c]), _mm512_castsi256_si512(s16));
    w.m = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(s16, 5));
    w.d = _mm512_set1_ps(h2f((uint16_t)mm_ld16(p + 208)));
    w.dmin = _mm256_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x03);
    _Pragma("GCC unroll 2")
    for (int h = 0; h < 2; h++) {
        const __m512i z = _mm512_loadu_si512(p + 64 * h);
        const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(p + 128 + 32 * h)));
        const __m512i hi0 = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, halves16(0, 2)), m2), 4);
        const __m512i hi1 = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, halves16(4, 6)), m2), 4);
        w.q[2 * h] = _mm512_or_si512(_mm512_and_si512(z, m4), hi0);
        w.q[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(z, 4), m4), hi1);
    }
    return w;
}

/* One super-block of one (row, token); x: the token's block. The integer parts are exact:
 *   isum_l = sum_c [VPDPWSSD lane l of (VPMADDUBSW(q[c], x[64c..]), sc[c])]  (+ Q6_K: the
 *            -32 * scale * bsum terms in lanes 0..7)
 *   msum_l = m_l * (bsums[2l] + bsums[2l+1])   (Q4_K/Q5_K, l < 8)
 * then Q4_K/Q5_K: acc_l = fma(dx, fmsub(d, isum_l, dmin * msum_l), acc_l);
 *      Q6_K:      acc_l = fma(d * dx, isum_l, acc_l). */
INLINE void kq_step(const int kind, __m512 *acc, const kgroup *w, const blk_q8_K *x)
{
    const __m256i bs = _mm256_loadu_si256((const __m256i *)x->bsums);
    __m512i isum = kind == KIND_Q6K ? _mm512_zextsi256_si512(_mm256_madd_epi16(w->m, bs)) : _mm512_setzero_si512();
    _Pragma("GCC unroll 4")
    for (int c = 0; c < 4; c++)
        isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(w->q[c], _mm512_loadu_si512(x->qs + 64 * c)), w->sc[c]);
    if (kind == KIND_Q6K) {
        *acc = _mm512_fmadd_ps(_mm512_mul_ps(w->d, _mm512_set1_ps(x->d)), _mm512_cvtepi32_ps(isum), *acc);
        return;
    }
    const __m256 mterm = _mm256_mul_ps(w->dmin, _mm256_cvtepi32_ps(_mm256_madd_epi16(w->m, bs)));
    const __m512 inner = _mm512_fmsub_ps(w->d, _mm512_cvtepi32_ps(isum), _mm512_zextps256_ps512(mterm));
    *acc = _mm512_fmadd_ps(_mm512_set1_ps(x->d), inner, *acc);
}

/* Tokens [0, n) of xq for groups [g0, g0 + ng) into prep, as the kind's step reads them. */
INLINE void x_prep(const int kind, const uint8_t *xq, size_t xq_bytes, int64_t n, int64_t nb, int64_t g0,
                   int64_t ng, uint8_t *prep)
{
    if (kind == KIND_Q41) q41_prep(xq, xq_bytes, n, nb, g0, ng, prep);
    else q80_prep(xq, xq_bytes, n, nb, g0, ng, prep, kind == KIND_Q50 ? 16 : 0x80);
}

#define MATMUL_IMPL_TILES
#include "kern/matmul_impl.h"

MATMUL_IMPL_ALL_KINDS

/* ======================= F32 / F16 weights x F32 activations ====================== */

/* Lanes along n_in: one 16-lane accumulator per output (file comment). MM_FR x MM_FT is
 * the main tile; tokens left over after the full MM_FT tiles take MM_FR1 x 1 tiles (the
 * decode shape), rows left over take 1 x MM_FT and 1 x 1.
 * Measured (dev/kernels/bench_matmul whisper, 1 thread, this 2-core Intel Xeon with
 * AVX-512, other jobs sharing it; best of 3; its FMA peak is ~220 GFLOP/s): at n_tok =
 * 512 / 1500, 1152x384 F16 128-131, F32 146; 1536x384 F16 144, F32 128; 384x1536 F16
 * 106-109, F32 108-113 (Q8_0 beside them: 130, 130, 101-105). n_tok = 16: 110-146;
 * n_tok = 1: F16 69-72 GB/s of weights (in L2), F32 1.8-2.4 MB matrices 57-116 GB/s. The
 * scalar double reference: 1-4 GFLOP/s. Tiles at n_tok = 512 (+-5% noise): 6 x 4 ~
 * 5 x 5 >= 4 x 6 ~ 4 x 4 > 3 x 8 (-30%) > 2 x 12 (-60%). Cutting rows of 1536 into
 * 512-lane blocks kept in L1 (accumulators stored between blocks) did not help
 * 384x1536 and cost ~10% at n_in 384. */
#ifndef MM_FR
#define MM_FR 6
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

/* A token chunk's activations stay in L2 (F_X_CHUNK_BYTES) while the rows pass over
 * them; F16 weights of a batch of at least F16_WIDEN_MIN_TOK tokens are first widened
 * to f32, a row block at a time, into a stack buffer (F_WBUF_BYTES, in L1/L2), since
 * VCVTPH2PS shares ports 0 and 5 with the FMAs: widening is exact, so the outputs are
 * the same bits. */
enum { F_X_CHUNK_BYTES = 256 * 1024, F_WBUF_BYTES = 64 * 1024,
       F16_WIDEN_MIN_TOK = 8 };

INLINE __mmask16 mask_lanes(int64_t n) { return (__mmask16)((1u << n) - 1); }   /* n: 1..15 */

/* Weight lanes [i, i + 16) of a row as f32. */
INLINE __m512 fw_load(const int kind, const uint8_t *row, int64_t i)
{
    if (kind == KIND_F32) return _mm512_loadu_ps(row + 4 * i);
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 2 * i)));   /* any address */
}

/* The same with lanes outside m reading as zero (and not read). */
INLINE __m512 fw_load_mask(const int kind, const uint8_t *row, int64_t i, __mmask16 m)
{
    if (kind == KIND_F32) return _mm512_maskz_loadu_ps(m, row + 4 * i);
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 2 * i));
}

/* An R x T tile: rows w0 + r * row_bytes, tokens x0 + t * xq_bytes (f32), n elements;
 * y[t * ldy + r] for r < R, t < T. */
INLINE void f_tile(const int kind, const int R, const int T, const uint8_t *w0, size_t row_bytes,
                   const uint8_t *x0, size_t xq_bytes, int64_t n, float *y, int64_t ldy)
{
    __m512 acc[FTILE_RMAX][MM_FT > 1 ? MM_FT : 1];            /* acc: [R][T], 16 lanes each */
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; r++) {
        _Pragma("GCC unroll 8")
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    }
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {                             /* i: first lane of the step */
        __m512 w[FTILE_RMAX];
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; r++) w[r] = fw_load(kind, w0 + (size_t)r * row_bytes, i);
        _Pragma("GCC unroll 8")
        for (int t = 0; t < T; t++) {
            const __m512 x = _mm512_loadu_ps((const float *)(x0 + (size_t)t * xq_bytes) + i);
            _Pragma("GCC unroll 8")
            for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(w[r], x, acc[r][t]);
        }
    }
    if (i < n) {                                               /* the last n % 16 lanes */
        const __mmask16 m = mask_lanes(n - i);
        __m512 w[FTILE_RMAX];
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; r++) w[r] = fw_load_mask(kind, w0 + (size_t)r * row_bytes, i, m);
        _Pragma("GCC unroll 8")
        for (int t = 0; t < T; t++) {
            const __m512 x = _mm512_maskz_loadu_ps(m, (const float *)(x0 + (size_t)t * xq_bytes) + i);
            _Pragma("GCC unroll 8")
            for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(w[r], x, acc[r][t]);
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
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, fw_load(KIND_F16, row, i));
        if (i < n) _mm512_mask_storeu_ps(dst + i, mask_lanes(n - i), fw_load_mask(KIND_F16, row, i, mask_lanes(n - i)));
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
    alignas(64) float wbuf[F_WBUF_BYTES / sizeof(float)];
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

static void matmul_f32_avx512(const void *W, size_t row_bytes, int64_t r0, int64_t r1,
                              const void *xq, size_t xq_bytes, int64_t n_tok, int64_t n_in,
                              float *y, int64_t ldy)
{
    f_matmul(KIND_F32, W, row_bytes, r0, r1, xq, xq_bytes, n_tok, n_in, y, ldy);
}

static void matmul_f16_avx512(const void *W, size_t row_bytes, int64_t r0, int64_t r1,
                              const void *xq, size_t xq_bytes, int64_t n_tok, int64_t n_in,
                              float *y, int64_t ldy)
{
    f_matmul(KIND_F16, W, row_bytes, r0, r1, xq, xq_bytes, n_tok, n_in, y, ldy);
}

static const matmul_isa_kernels avx512_kernels = {
    .name = "avx512",
    MATMUL_IMPL_QUANT_SET,
    .vec_dot_f16_f32 = f16_dot_one,
    .matmul_f16_f32 = matmul_f16_avx512,
    .vec_dot_f32_f32 = f32_dot_one,
    .matmul_f32_f32 = matmul_f32_avx512,
};

const matmul_isa_kernels *matmul_avx512_kernels(void) { return &avx512_kernels; }

#else
const matmul_isa_kernels *matmul_avx512_kernels(void) { return NULL; }
#endif
