/* matmul_avx512.c - tiled Q4_1 x Q8_1 and Q8_0 x Q8_0 matmuls with AVX-512 VNNI, and F16 /
 * F32 weights x F32 activations with AVX-512F FMA (f32 accumulation; no AVX512-FP16 math).
 * Room: kern. Built with the Makefile's AVX512_FLAGS and used only when cpu_get()
 * reports the whole set (quant_get_fast installs the vec_dots below, and matmul_rows
 * takes the tiled path only for a table holding them). May touch: kern/quant.h,
 * kern/matmul.h.
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
 *   Q8_0: groups of 2 blocks; int32 lane l (block k = l / 8) holds the exact sum of 4
 *         products; per group acc_l = fma(dw_k * dx_k, (float)isum_l, acc_l); tot = acc.
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
 *
 * Weights: a Q4_1 group is 80 B (4 x [d m qs[16]]), each block 5 dwords, so two
 * overlapping 64-byte loads and one VPERMT2D gather the 64 code bytes, one VPERMD the
 * 4 (d, m) pairs. A Q8_0 group is 68 B (2 x [d qs[32]]): two 32-byte loads of the codes
 * and one VPERMW of the two d. Full groups read only their own bytes; the last partial
 * group uses masked loads (nothing past the row is read).
 *
 * Measured with dev/kernels/bench_matmul.c, 1 thread, on this 2-core AMD EPYC (Zen 4,
 * 512-bit ops double-pumped; dev/kernels/bw.c reads ~21-23 GB/s from DRAM per core):
 * decode streams the 96 MB of weights at 21-25 GB/s, what bw.c reads (the per-output
 * quant_avx512.c dots: 15-17); prefill (n_tok = 512) runs at ~125 GFLOP/s for n_in = 576
 * and ~150 for 1536 (per output: 35-55). 4 x 4 tiles measured best (4 x 2: -13%;
 * 4 x 3 and 2 x 4: -5 to -7%; 3 x 4: equal on Q4_1, -25% on Q8_0). */
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

static void q80_prep(const uint8_t *xq, size_t xq_bytes, int64_t n, int64_t nb, int64_t g0,
                     int64_t ng, uint8_t *prep)
{
    for (int64_t t = 0; t < n; t++) {
        const blk_q8_0 *x = (const blk_q8_0 *)(xq + (size_t)t * xq_bytes);
        uint8_t *p = prep + (size_t)(t * ng) * Q80_GROUP;
        for (int64_t g = g0; g < g0 + ng; g++, p += Q80_GROUP) {
            for (int k = 0; k < 2; k++) {
                const int64_t b = 2 * g + k;
                __m256i q = b < nb ? _mm256_loadu_si256((const __m256i *)x[b].qs) : _mm256_setzero_si256();
                const float d = b < nb ? h2f(x[b].d) : 0.0f;
                /* -128 * (sum of each 4 codes) = dpbusd of 0x80 bytes with the codes, negated */
                __m256i c = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8((char)0x80), q);
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

/* ============================ tiles, either format ================================ */

/* kind selects the format; it is a constant after inlining, as are R and T. */
enum { KIND_Q41, KIND_Q80, KIND_F32, KIND_F16 };
#define TILE_RMAX 4
_Static_assert(MM_R >= 1 && MM_R <= TILE_RMAX && MM_T >= 1, "tile shapes");

INLINE int64_t blk_per_group(const int kind) { return kind == KIND_Q41 ? 4 : 2; }
INLINE int64_t group_bytes(const int kind) { return kind == KIND_Q41 ? 80 : 68; }
INLINE size_t group_prep(const int kind) { return kind == KIND_Q41 ? Q41_GROUP : Q80_GROUP; }
/* Bytes of the last group of a row of nb blocks (ng groups) */
INLINE int64_t last_group_bytes(const int kind, int64_t nb, int64_t ng)
{
    return (nb - blk_per_group(kind) * (ng - 1)) * (group_bytes(kind) / blk_per_group(kind));
}

/* Accumulators of an R x T tile (see the file comment): acc: [R][T], macc: [T] (Q4_1). */
typedef struct tile_acc { __m512 acc[TILE_RMAX][MM_T], macc[MM_T]; } tile_acc;

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
            w[r] = kind == KIND_Q41 ? q41_unpack(p, nbytes) : q80_unpack(p, nbytes);
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

/* Token t's outputs for rows 0..R-1 (lanes 0..R-1). */
INLINE __m128 tile_out(const int kind, const tile_acc *a, const int R, int t)
{
    __m512 tot[TILE_RMAX];
    _Pragma("GCC unroll 4")
    for (int r = 0; r < R; r++)
        tot[r] = kind == KIND_Q41 ? q41_total(a->acc[r][t], a->macc[t], r) : a->acc[r][t];
    return reduce4(tot[0], tot[R > 1 ? 1 : 0], tot[R > 2 ? 2 : 0], tot[R > 3 ? 3 : 0]);
}

/* Shared by every tile of one call. */
typedef struct mm_call {
    const uint8_t *w8;          /* W: [n_out][row_bytes] */
    size_t row_bytes;
    const uint8_t *prep;        /* [tn][tok_stride] prepared activations of the chunk */
    size_t tok_stride;
    int64_t ng, last_bytes;     /* groups per row; bytes of the last (maybe partial) one */
    const uint8_t *pf_end;      /* end of this call's rows (prefetch limit) */
} mm_call;

/* An R x T tile from row r and token t of the chunk: y[t' * ldy + r'] for r' < R, t' < T. */
INLINE void tile(const int kind, const int R, const int T, const mm_call *c, int64_t r, int64_t t,
                 float *y, int64_t ldy)
{
    tile_acc a;
    tile_zero(&a, R, T);
    tile_groups(kind, R, T, &a, c->w8 + (size_t)r * c->row_bytes, c->row_bytes,
                c->prep + (size_t)t * c->tok_stride, c->tok_stride, 0, c->ng, c->ng, c->last_bytes, c->pf_end);
    _Pragma("GCC unroll 4")
    for (int tt = 0; tt < T; tt++) store_n(y + tt * ldy, tile_out(kind, &a, R, tt), R);
}

/* One (row, token) for any n: the 1 x 1 tile, with x prepared in chunks of groups and
 * the accumulators carried across them. These are the table's vec_dots. */
INLINE float dot_one(const int kind, const void *w, const void *x, int64_t n)
{
    alignas(64) uint8_t prep[PREP_BYTES];
    const int64_t nb = n / 32, ng = (nb + blk_per_group(kind) - 1) / blk_per_group(kind);
    const int64_t chunk = (int64_t)(PREP_BYTES / group_prep(kind));
    const uint8_t *w8 = w, *end = w8 + nb * (group_bytes(kind) / blk_per_group(kind));
    tile_acc a;
    tile_zero(&a, 1, 1);
    for (int64_t g0 = 0; g0 < ng; g0 += chunk) {               /* groups [g0, g0 + gn) */
        const int64_t gn = ng - g0 < chunk ? ng - g0 : chunk;
        if (kind == KIND_Q41) q41_prep(x, 0, 1, nb, g0, gn, prep);
        else q80_prep(x, 0, 1, nb, g0, gn, prep);
        tile_groups(kind, 1, 1, &a, w8, 0, prep, 0, g0, g0 + gn, ng, last_group_bytes(kind, nb, ng), end);
    }
    return _mm_cvtss_f32(tile_out(kind, &a, 1, 0));
}

static float q41_dot_one(const void *w, const void *x, int64_t n) { return dot_one(KIND_Q41, w, x, n); }
static float q80_dot_one(const void *w, const void *x, int64_t n) { return dot_one(KIND_Q80, w, x, n); }

/* ================================ drivers ======================================== */

/* When a batch needs several token chunks, rows are taken in blocks of about
 * ROW_BLOCK_BYTES that stay in L2 while every chunk passes over them, so a matrix larger
 * than L2 (the 30 MB Q8_0 output) is read from DRAM once, not once per chunk (29 times
 * at n_tok = 512). The activations are prepared again per block: ~2% of the work. */
enum { ROW_BLOCK_BYTES = 256 * 1024 };

/* Tokens [0, tn) of the chunk x rows [ra, rb) in MM_R x MM_T tiles; y: [tn][ldy]. The
 * edges take R x 1 and 1 x T tiles: four shapes per format keep the file quick to
 * compile (each shape is a fully unrolled copy; 16 shapes took 80 s under clang -O1
 * with sanitizers), at a small cost for batches that are not multiples of 4. */
INLINE void rows_batch(const int kind, const mm_call *c, int64_t ra, int64_t rb, int64_t tn,
                       float *y, int64_t ldy)
{
    int64_t r = ra;
    for (; r + MM_R <= rb; r += MM_R) {                        /* r: first row of the tile */
        int64_t t = 0;
        for (; t + MM_T <= tn; t += MM_T) tile(kind, MM_R, MM_T, c, r, t, y + t * ldy + r, ldy);
        for (; t < tn; t++) tile(kind, MM_R, 1, c, r, t, y + t * ldy + r, ldy);
    }
    for (; r < rb; r++) {                                      /* the last (rb - ra) % MM_R rows */
        int64_t t = 0;
        for (; t + MM_T <= tn; t += MM_T) tile(kind, 1, MM_T, c, r, t, y + t * ldy + r, ldy);
        for (; t < tn; t++) tile(kind, 1, 1, c, r, t, y + t * ldy + r, ldy);
    }
}

INLINE void matmul_kind(const int kind, const void *W, size_t row_bytes, int64_t r0, int64_t r1,
                        const void *xq, size_t xq_bytes, int64_t n_tok, int64_t n_in,
                        float *y, int64_t ldy)
{
    const uint8_t *w8 = W, *x8 = xq;
    const int64_t nb = n_in / 32, ng = (nb + blk_per_group(kind) - 1) / blk_per_group(kind);
    const size_t tok_stride = (size_t)ng * group_prep(kind);
    if (ng == 0 || tok_stride > PREP_BYTES) {       /* n_in 0 or very long rows: per output */
        for (int64_t t = 0; t < n_tok; t++)         /* t: token */
            for (int64_t r = r0; r < r1; r++)       /* r: output row */
                y[t * ldy + r] = dot_one(kind, w8 + (size_t)r * row_bytes, x8 + (size_t)t * xq_bytes, n_in);
        return;
    }
    alignas(64) uint8_t prep[PREP_BYTES];
    const mm_call c = { w8, row_bytes, prep, tok_stride, ng, last_group_bytes(kind, nb, ng),
                        w8 + (size_t)r1 * row_bytes };
    const int64_t tc = (int64_t)(PREP_BYTES / tok_stride);     /* tokens per chunk */
    int64_t rows_per_block = r1 - r0;
    if (n_tok > tc) {
        rows_per_block = (int64_t)(ROW_BLOCK_BYTES / row_bytes) / MM_R * MM_R;
        if (rows_per_block < MM_R) rows_per_block = MM_R;
    }
    prefetch_start(w8 + (size_t)r0 * row_bytes, c.pf_end);
    for (int64_t ra = r0; ra < r1; ra += rows_per_block) {    /* rows [ra, rb): one block */
        const int64_t rb = r1 - ra < rows_per_block ? r1 : ra + rows_per_block;
        for (int64_t t0 = 0; t0 < n_tok; t0 += tc) {           /* tokens [t0, t0 + tn): a chunk */
            const int64_t tn = n_tok - t0 < tc ? n_tok - t0 : tc;
            if (kind == KIND_Q41) q41_prep(x8 + (size_t)t0 * xq_bytes, xq_bytes, tn, nb, 0, ng, prep);
            else q80_prep(x8 + (size_t)t0 * xq_bytes, xq_bytes, tn, nb, 0, ng, prep);
            rows_batch(kind, &c, ra, rb, tn, y + t0 * ldy, ldy);
        }
    }
}

static void matmul_q4_1_avx512(const void *W, size_t row_bytes, int64_t r0, int64_t r1,
                               const void *xq, size_t xq_bytes, int64_t n_tok, int64_t n_in,
                               float *y, int64_t ldy)
{
    matmul_kind(KIND_Q41, W, row_bytes, r0, r1, xq, xq_bytes, n_tok, n_in, y, ldy);
}

static void matmul_q8_0_avx512(const void *W, size_t row_bytes, int64_t r0, int64_t r1,
                               const void *xq, size_t xq_bytes, int64_t n_tok, int64_t n_in,
                               float *y, int64_t ldy)
{
    matmul_kind(KIND_Q80, W, row_bytes, r0, r1, xq, xq_bytes, n_tok, n_in, y, ldy);
}

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
    .vec_dot_q4_1_q8_1 = q41_dot_one,
    .matmul_q4_1_q8_1 = matmul_q4_1_avx512,
    .vec_dot_q8_0_q8_0 = q80_dot_one,
    .matmul_q8_0_q8_0 = matmul_q8_0_avx512,
    .vec_dot_f16_f32 = f16_dot_one,
    .matmul_f16_f32 = matmul_f16_avx512,
    .vec_dot_f32_f32 = f32_dot_one,
    .matmul_f32_f32 = matmul_f32_avx512,
};

const matmul_isa_kernels *matmul_avx512_kernels(void) { return &avx512_kernels; }

#else
const matmul_isa_kernels *matmul_avx512_kernels(void) { return NULL; }
#endif
