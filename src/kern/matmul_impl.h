/* matmul_impl.h - what matmul_avx2.c and matmul_avx512.c share (not a public header).
 * Room: kern. May touch: kern/quant.h, kern/matmul.h.
 *
 * Included twice by each ISA file:
 *   1. after INLINE, PREP_BYTES, MM_R, MM_T, MATMUL_PF_DIST and MATMUL_PF_HINT: the kinds,
 *      the K-quant scale helpers and the MATMUL_IMPL_* macros;
 *   2. with MATMUL_IMPL_TILES defined, once the file has the ISA's pieces:
 *        acc_vec, tile_acc          a float vector; acc: [R][T] of them, macc: [T] (Q4_1)
 *        kgroup                     one unpacked K-quant super-block of one weight row
 *        reduce4, store_n, q41_total, prefetch_start, tile_zero, tile_groups, x_prep
 *        group_bytes, group_prep, blk_per_group, last_group_bytes   (per kind)
 *        k4_unpack(kind, p), k6_unpack(p), kq_step(kind, acc, kgroup *, x)   (K-quants)
 *      then this part defines kq_groups, tile_out, tile, dot_one, rows_batch and
 *      matmul_kind: the tile loops and drivers of every quantized kind, and
 *      MATMUL_IMPL_ALL_KINDS / MATMUL_IMPL_QUANT_SET are expanded after it.
 *
 * The K-quant scheme is the same in both files: the Q8_K activation rows are read in
 * place (no prepared copy), and a weight row's super-block is unpacked once and met by
 * the T tokens of the tile one after the other, each (row, token) summing its
 * super-block exactly in integers before one float step (kq_step). */
#ifndef KVLM_KERN_MATMUL_IMPL_H
#define KVLM_KERN_MATMUL_IMPL_H

#include <immintrin.h>
#include <stdalign.h>
#include <string.h>

#include "kern/matmul.h"

/* kind selects the format; it is a constant after inlining, as are R and T. */
enum { KIND_Q41, KIND_Q80, KIND_Q50, KIND_Q4K, KIND_Q5K, KIND_Q6K, KIND_F32, KIND_F16 };

/* K-quants: a group is one super-block of 256 elements (QK_K) */
INLINE int is_kq(const int kind) { return kind == KIND_Q4K || kind == KIND_Q5K || kind == KIND_Q6K; }
INLINE int64_t blk_elems(const int kind) { return is_kq(kind) ? QK_K : 32; }

static inline uint32_t mm_ld16(const uint8_t *p) { uint16_t u; memcpy(&u, p, 2); return u; }
static inline uint32_t mm_ld32(const uint8_t *p) { uint32_t u; memcpy(&u, p, 4); return u; }

/* The 12 packed Q4_K/Q5_K scale bytes -> [sc0..sc7 m0..m7] (quant_get_scale_min_k4). */
INLINE __m128i k4_scales(const uint8_t *s)
{
    const uint32_t u0 = mm_ld32(s), u1 = mm_ld32(s + 4), u2 = mm_ld32(s + 8);
    const uint32_t m6 = 0x3f3f3f3f, m4 = 0x0f0f0f0f, m2 = 0x03030303;
    return _mm_setr_epi32((int)(u0 & m6), (int)((u2 & m4) | ((u0 >> 6) & m2) << 4),
                          (int)(u1 & m6), (int)(((u2 >> 4) & m4) | ((u1 >> 6) & m2) << 4));
}

/* [m0 m0 m1 m1 .. m7 m7] int16 from [sc0..sc7 m0..m7] in both 128-bit lanes: paired with
 * Q8_K's 16 bsums, VPMADDWD gives m_j * (bsums[2j] + bsums[2j+1]) in int32 lane j. */
INLINE __m256i k4_mins(__m128i sm)
{
    const __m256i idx = _mm256_setr_epi8(8, -128, 8, -128, 9, -128, 9, -128, 10, -128, 10, -128, 11, -128, 11, -128,
                                         12, -128, 12, -128, 13, -128, 13, -128, 14, -128, 14, -128, 15, -128, 15, -128);
    return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(sm), idx);
}

/* The lines of the super-block at p + MATMUL_PF_DIST, unless that is past this call's rows. */
INLINE void kq_prefetch(const uint8_t *p, const uint8_t *end, const int64_t bytes)
{
    if (p + MATMUL_PF_DIST < end)
        for (int64_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)p + MATMUL_PF_DIST + o, MATMUL_PF_HINT);
}

/* The table's vec_dot (the 1 x 1 tile) and the tiled matmul of one kind: sfx##_dot_one,
 * sfx##_matmul. */
#define MATMUL_IMPL_KIND(sfx, kind)                                                                   \
    static float sfx##_dot_one(const void *w, const void *x, int64_t n) { return dot_one(kind, w, x, n); } \
    static void sfx##_matmul(const void *W, size_t row_bytes, int64_t r0, int64_t r1, const void *xq, \
                             size_t xq_bytes, int64_t n_tok, int64_t n_in, float *y, int64_t ldy)      \
    {                                                                                                 \
        matmul_kind(kind, W, row_bytes, r0, r1, xq, xq_bytes, n_tok, n_in, y, ldy);                   \
    }

/* Every quantized kind's two functions, and the quantized entries of a matmul_isa_kernels
 * initializer that names them. */
#define MATMUL_IMPL_ALL_KINDS                                                             \
    MATMUL_IMPL_KIND(q41, KIND_Q41) MATMUL_IMPL_KIND(q80, KIND_Q80) MATMUL_IMPL_KIND(q50, KIND_Q50) \
    MATMUL_IMPL_KIND(q4k, KIND_Q4K) MATMUL_IMPL_KIND(q5k, KIND_Q5K) MATMUL_IMPL_KIND(q6k, KIND_Q6K)

/* The quantized entries of a matmul_isa_kernels initializer, from MATMUL_IMPL_KIND's names. */
#define MATMUL_IMPL_QUANT_SET                                                             \
    .vec_dot_q4_1_q8_1 = q41_dot_one, .matmul_q4_1_q8_1 = q41_matmul,                     \
    .vec_dot_q8_0_q8_0 = q80_dot_one, .matmul_q8_0_q8_0 = q80_matmul,                     \
    .vec_dot_q5_0_q8_0 = q50_dot_one, .matmul_q5_0_q8_0 = q50_matmul,                     \
    .vec_dot_q4_K_q8_K = q4k_dot_one, .matmul_q4_K_q8_K = q4k_matmul,                     \
    .vec_dot_q5_K_q8_K = q5k_dot_one, .matmul_q5_K_q8_K = q5k_matmul,                     \
    .vec_dot_q6_K_q8_K = q6k_dot_one, .matmul_q6_K_q8_K = q6k_matmul

#endif

#if defined(MATMUL_IMPL_TILES) && !defined(KVLM_KERN_MATMUL_IMPL_TILES)
#define KVLM_KERN_MATMUL_IMPL_TILES
/* Token t's outputs for rows 0..R-1 (lanes 0..R-1). */
INLINE __m128 tile_out(const int kind, const tile_acc *a, const int R, int t)
{
    acc_vec tot[TILE_RMAX];
    _Pragma("GCC unroll 4")
    for (int r = 0; r < R; r++)
        tot[r] = kind == KIND_Q41 ? q41_total(a->acc[r][t], a->macc[t], r) : a->acc[r][t];
    return reduce4(tot[0], tot[R > 1 ? 1 : 0], tot[R > 2 ? 2 : 0], tot[R > 3 ? 3 : 0]);
}

/* Super-blocks [g0, g1) into an R x T tile: rows w0 + r * row_bytes, the tokens' Q8_K rows
 * x0 + t * xq_bytes. Row r is unpacked once per super-block and met by the T tokens before
 * row r + 1 is unpacked, so one kgroup and the R x T accumulators are live at a time. */
INLINE void kq_groups(const int kind, const int R, const int T, tile_acc *a, const uint8_t *w0,
                      size_t row_bytes, const uint8_t *x0, size_t xq_bytes, int64_t g0, int64_t g1,
                      const uint8_t *pf_end)
{
    for (int64_t g = g0; g < g1; g++) {                        /* g: super-block */
        _Pragma("GCC unroll 4")
        for (int r = 0; r < R; r++) {
            const uint8_t *p = w0 + (size_t)r * row_bytes + (size_t)g * (size_t)group_bytes(kind);
            kq_prefetch(p, pf_end, group_bytes(kind));
            const kgroup w = kind == KIND_Q6K ? k6_unpack(p) : k4_unpack(kind, p);
            _Pragma("GCC unroll 4")
            for (int t = 0; t < T; t++)
                kq_step(kind, &a->acc[r][t], &w, (const blk_q8_K *)(x0 + (size_t)t * xq_bytes) + g);
        }
    }
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
    if (is_kq(kind))
        kq_groups(kind, R, T, &a, c->w8 + (size_t)r * c->row_bytes, c->row_bytes,
                  c->prep + (size_t)t * c->tok_stride, c->tok_stride, 0, c->ng, c->pf_end);
    else
        tile_groups(kind, R, T, &a, c->w8 + (size_t)r * c->row_bytes, c->row_bytes,
                    c->prep + (size_t)t * c->tok_stride, c->tok_stride, 0, c->ng, c->ng, c->last_bytes, c->pf_end);
    _Pragma("GCC unroll 4")
    for (int tt = 0; tt < T; tt++) store_n(y + tt * ldy, tile_out(kind, &a, R, tt), R);
}

/* One (row, token) for any n: the 1 x 1 tile, with x prepared in chunks of groups and
 * the accumulators carried across them (K-quants: x read in place). These are the
 * table's vec_dots. */
INLINE float dot_one(const int kind, const void *w, const void *x, int64_t n)
{
    const int64_t nb = n / blk_elems(kind), ng = (nb + blk_per_group(kind) - 1) / blk_per_group(kind);
    const uint8_t *w8 = w, *end = w8 + nb * (group_bytes(kind) / blk_per_group(kind));
    tile_acc a;
    tile_zero(&a, 1, 1);
    if (is_kq(kind)) {
        kq_groups(kind, 1, 1, &a, w8, 0, x, 0, 0, ng, end);
        return _mm_cvtss_f32(tile_out(kind, &a, 1, 0));
    }
    alignas(64) uint8_t prep[PREP_BYTES];
    const int64_t chunk = (int64_t)(PREP_BYTES / group_prep(kind));
    for (int64_t g0 = 0; g0 < ng; g0 += chunk) {               /* groups [g0, g0 + gn) */
        const int64_t gn = ng - g0 < chunk ? ng - g0 : chunk;
        x_prep(kind, x, 0, 1, nb, g0, gn, prep);
        tile_groups(kind, 1, 1, &a, w8, 0, prep, 0, g0, g0 + gn, ng, last_group_bytes(kind, nb, ng), end);
    }
    return _mm_cvtss_f32(tile_out(kind, &a, 1, 0));
}

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
    const int64_t nb = n_in / blk_elems(kind), ng = (nb + blk_per_group(kind) - 1) / blk_per_group(kind);
    const size_t tok_stride = is_kq(kind) ? xq_bytes : (size_t)ng * group_prep(kind);
    if (ng == 0 || (!is_kq(kind) && tok_stride > PREP_BYTES)) {   /* n_in 0 or very long rows: per output */
        for (int64_t t = 0; t < n_tok; t++)         /* t: token */
            for (int64_t r = r0; r < r1; r++)       /* r: output row */
                y[t * ldy + r] = dot_one(kind, w8 + (size_t)r * row_bytes, x8 + (size_t)t * xq_bytes, n_in);
        return;
    }
    alignas(64) uint8_t prep[PREP_BYTES];
    mm_call c = { w8, row_bytes, prep, tok_stride, ng, last_group_bytes(kind, nb, ng),
                  w8 + (size_t)r1 * row_bytes };
    /* tokens per chunk: what the buffer holds; K-quant rows, read in place, in chunks of
     * about as many bytes but at least MM_T tokens */
    int64_t tc = (int64_t)(PREP_BYTES / tok_stride);
    if (is_kq(kind) && tc < MM_T) tc = MM_T;
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
            if (is_kq(kind)) c.prep = x8 + (size_t)t0 * xq_bytes;
            else x_prep(kind, x8 + (size_t)t0 * xq_bytes, xq_bytes, tn, nb, 0, ng, prep);
            rows_batch(kind, &c, ra, rb, tn, y + t0 * ldy, ldy);
        }
    }
}
#endif
