/* attn_impl.h - what the ISA files of the attention kernels share (not a module
 * header: included by attn_avx2.c and attn_avx512.c only). Room: kern.
 * Each file defines scores_phase(s, q, G, hd, scale, c, tmp, t) and
 * pv_phase(part, s, G, hd, c, tmp, t) as always-inline functions; these macros
 * make the per-type entry points of a kernel table from them. The helpers below
 * use SSE2 only (every x86-64), so both files share them; the KIVI score and
 * widening code at the end also needs AVX2, FMA and F16C, which both files are
 * built with. */
#ifndef KVLM_KERN_ATTN_IMPL_H
#define KVLM_KERN_ATTN_IMPL_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

INLINE size_t elt_size(int t) { return t == ATTN_F32 ? 4 : t == ATTN_F16 || t == ATTN_BF16 ? 2 : 1; }

INLINE void prefetch_block(const void *base, size_t block_bytes)
{
    for (size_t o = 0; o < block_bytes; o += 64) _mm_prefetch((const char *)base + o, _MM_HINT_T2);
}

/* The last, partial block's K: channels [n_ch][16] copied with rows m..15 zeroed,
 * so the score vectors never read a slot that holds no position. */
INLINE void pad_k(void *dst, const void *src, int64_t n_ch, int64_t m, size_t elt)
{
    for (int64_t ch = 0; ch < n_ch; ch++) {
        uint8_t *d = (uint8_t *)dst + (size_t)ch * ATTN_BLOCK * elt;
        memcpy(d, (const uint8_t *)src + (size_t)ch * ATTN_BLOCK * elt, (size_t)m * elt);
        memset(d + (size_t)m * elt, 0, (size_t)(ATTN_BLOCK - m) * elt);
    }
}

/* q8: the last, partial block's K part (ints [n_ch][16], scales [n_ch / 32][16])
 * copied with slots m..15 zeroed. */
INLINE void pad_k_q8(void *dst, const void *src, int64_t n_ch, int64_t m)
{
    pad_k(dst, src, n_ch, m, 1);
    pad_k((uint8_t *)dst + n_ch * ATTN_BLOCK, (const uint8_t *)src + n_ch * ATTN_BLOCK, n_ch / ATTN_Q8_GROUP, m, 2);
}

/* q4 -> q8 layout (ints q - 8 as int8, the scales copied), so the q8 code reads it.
 * K: nibbles [n_ch][8] -> int8 [n_ch][16]: low nibbles are slots 0-7, high 8-15. */
INLINE void expand_k_q4(int8_t *dst, const uint8_t *src, int64_t n_ch)
{
    const __m128i lo4 = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
    for (int64_t ch = 0; ch < n_ch; ch++) {
        const __m128i x = _mm_loadl_epi64((const __m128i *)(src + ch * 8));
        const __m128i lo = _mm_and_si128(x, lo4), hi = _mm_and_si128(_mm_srli_epi16(x, 4), lo4);
        _mm_storeu_si128((__m128i *)(dst + ch * 16), _mm_sub_epi8(_mm_unpacklo_epi64(lo, hi), eight));
    }
    memcpy(dst + n_ch * ATTN_BLOCK, src + n_ch * ATTN_BLOCK / 2, (size_t)(n_ch / ATTN_Q8_GROUP) * ATTN_BLOCK * 2);
}

/* V: rows of nibbles [16][n_ch / 2] -> int8 [16][n_ch]: in a group of 32, byte i holds
 * channel i (low) and i + 16 (high). */
INLINE void expand_v_q4(int8_t *dst, const uint8_t *src, int64_t n_ch)
{
    const __m128i lo4 = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
    for (int64_t g = 0; g < ATTN_BLOCK * n_ch / ATTN_Q8_GROUP; g++) {   /* every group of every row */
        const __m128i x = _mm_loadu_si128((const __m128i *)(src + g * 16));
        _mm_storeu_si128((__m128i *)(dst + g * 32), _mm_sub_epi8(_mm_and_si128(x, lo4), eight));
        _mm_storeu_si128((__m128i *)(dst + g * 32 + 16), _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(x, 4), lo4), eight));
    }
    memcpy(dst + n_ch * ATTN_BLOCK, src + n_ch * ATTN_BLOCK / 2, (size_t)(n_ch / ATTN_Q8_GROUP) * ATTN_BLOCK * 2);
}

/* KIVI K: the codes of two adjacent channels (2b bytes each) in slot order, one
 * per byte: *lo = slots 0-7 of channel 0, then of channel 1; *hi = slots 8-15 of
 * each. b = 4: byte i of a channel holds slot i (low nibble) and i + 8 (high);
 * b = 2: byte i holds slots i, i+4, i+8, i+12 at bits 0, 2, 4, 6. */
INLINE void kivi_k_codes2(const uint8_t *p, int bits, __m128i *lo, __m128i *hi)
{
    if (bits == 4) {
        const __m128i x = _mm_loadu_si128((const __m128i *)p), lo4 = _mm_set1_epi8(15);
        *lo = _mm_and_si128(x, lo4);
        *hi = _mm_and_si128(_mm_srli_epi16(x, 4), lo4);   /* 16-bit shifts: the mask keeps each byte's own bits */
        return;
    }
    const __m128i x = _mm_loadl_epi64((const __m128i *)p), three = _mm_set1_epi8(3);
    /* x >> 2k & 3: slots 4k..4k+3 of channel 0 in bytes 0-3, of channel 1 in bytes 4-7 */
    *lo = _mm_and_si128(_mm_unpacklo_epi32(x, _mm_srli_epi16(x, 2)), three);
    *hi = _mm_and_si128(_mm_unpacklo_epi32(_mm_srli_epi16(x, 4), _mm_srli_epi16(x, 6)), three);
}

/* KIVI V: the 32 codes of one group of 32 channels (4b bytes) in channel order:
 * channels 0-15 in *lo, 16-31 in *hi. b = 4: byte i holds channel i (low) and
 * i + 16 (high); b = 2: byte i holds channels i, i+8, i+16, i+24 at bits 0, 2, 4, 6. */
INLINE void kivi_v_codes(const uint8_t *p, int bits, __m128i *lo, __m128i *hi)
{
    if (bits == 4) {
        const __m128i x = _mm_loadu_si128((const __m128i *)p), lo4 = _mm_set1_epi8(15);
        *lo = _mm_and_si128(x, lo4);
        *hi = _mm_and_si128(_mm_srli_epi16(x, 4), lo4);
        return;
    }
    const __m128i x = _mm_loadl_epi64((const __m128i *)p), three = _mm_set1_epi8(3);
    *lo = _mm_and_si128(_mm_unpacklo_epi64(x, _mm_srli_epi16(x, 2)), three);
    *hi = _mm_and_si128(_mm_unpacklo_epi64(_mm_srli_epi16(x, 4), _mm_srli_epi16(x, 6)), three);
}

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
INLINE float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 8 codes (the low 8 bytes of c) -> f32 */
INLINE __m256 kivi_f32(__m128i c) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(c)); }

/* 8 codes -> f32 m + d * code. d * code is exact in f32 (an f16 times a code
 * below 16), so the FMA gives the scalar set's value bit for bit. */
INLINE __m256 kivi_deq8(__m128i c, __m256 d, __m256 m) { return _mm256_fmadd_ps(d, kivi_f32(c), m); }

/* KIVI K: the scores of GP (<= 3) query heads from h0 over one block's channels
 * of their K/V head, read from the codes (no widened copy): with k_ij = m_i + d_i c_ij,
 *   s_h[j] = scale * (sum_i q_h[i] m_i + sum_i (q_h[i] d_i) c_ij)      j in [0, 16)
 *   codes: [hd][2b bytes], kd, km: [hd] f16; w: room for [GP][hd] floats
 * The code sum runs in 2 partial sums per half of the rows (channel parity), as
 * the AVX2 f32 score code does. Rows past a partial block's end get finite
 * scores from whatever codes sit there; softmax drops them. Against widening K
 * to f32 first and running the f32 score code on it (dev/kernels/bench_attn avx2,
 * hot, one thread, 4096 rows x 30 layers): 8.6 vs 9.7 ms for KIVI4 K and V, 8.9
 * vs 10.5 ms for KIVI2. Both ISA files use this 8-lane version: the same tested
 * code, as there was no AVX-512 machine to tune a 16-lane one on. */
INLINE void scores_kivi(float *s, const float *q, int64_t h0, const int GP, const uint8_t *codes, const uint16_t *kd,
                        const uint16_t *km, int64_t hd, int bits, float scale, float *w)
{
    __m256 qm[3];                                     /* [head] partial sums of q_h[i] m_i */
#pragma GCC unroll 3
    for (int h = 0; h < GP; h++) qm[h] = _mm256_setzero_ps();
    for (int64_t i = 0; i < hd; i += 8) {             /* w_h[i] = q_h[i] d_i */
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kd + i)));
        const __m256 m = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(km + i)));
#pragma GCC unroll 3
        for (int h = 0; h < GP; h++) {
            const __m256 qv = _mm256_loadu_ps(q + (h0 + h) * hd + i);
            _mm256_storeu_ps(w + h * hd + i, _mm256_mul_ps(qv, d));
            qm[h] = _mm256_fmadd_ps(qv, m, qm[h]);
        }
    }
    __m256 a[3][2][2];                                /* [head][half of the rows][partial] */
#pragma GCC unroll 3
    for (int h = 0; h < GP; h++)
#pragma GCC unroll 2
        for (int r = 0; r < 2; r++) a[h][r][0] = a[h][r][1] = _mm256_setzero_ps();
    for (int64_t i = 0; i < hd; i += 2) {             /* channels i, i + 1 */
        __m128i lo, hi;
        kivi_k_codes2(codes + i * 2 * bits, bits, &lo, &hi);
#pragma GCC unroll 2
        for (int p = 0; p < 2; p++) {
            const __m256 k0 = kivi_f32(p ? _mm_srli_si128(lo, 8) : lo), k1 = kivi_f32(p ? _mm_srli_si128(hi, 8) : hi);
#pragma GCC unroll 3
            for (int h = 0; h < GP; h++) {
                const __m256 wb = _mm256_set1_ps(w[h * hd + i + p]);
                a[h][0][p] = _mm256_fmadd_ps(wb, k0, a[h][0][p]);
                a[h][1][p] = _mm256_fmadd_ps(wb, k1, a[h][1][p]);
            }
        }
    }
    const __m256 vscale = _mm256_set1_ps(scale);
#pragma GCC unroll 3
    for (int h = 0; h < GP; h++) {
        const __m256 base = _mm256_set1_ps(hsum(qm[h]));
#pragma GCC unroll 2
        for (int r = 0; r < 2; r++)
            _mm256_store_ps(s + (h0 + h) * ATTN_CHUNK + 8 * r,
                            _mm256_mul_ps(_mm256_add_ps(base, _mm256_add_ps(a[h][r][0], a[h][r][1])), vscale));
    }
}

/* KIVI K: the scales of a span gathered from its blocks' quarters (attn.h):
 *   kd, km: [n_ch] f16, channel order; span: the span's ATTN_KIVI_SPAN K parts */
INLINE void gather_kivi_scales(uint16_t *kd, uint16_t *km, const void *const *span, int64_t n_ch, int bits)
{
    const int64_t nq = n_ch / ATTN_KIVI_SPAN;
    for (int r = 0; r < ATTN_KIVI_SPAN; r++) {
        const uint16_t *src = (const uint16_t *)((const uint8_t *)span[r] + (size_t)n_ch * 2 * (size_t)bits);
        memcpy(kd + r * nq, src, (size_t)nq * 2);
        memcpy(km + r * nq, src + nq, (size_t)nq * 2);
    }
}

/* The KIVI scores of one block for every query head (G per K/V head, Hk K/V
 * heads of hd channels): scores_kivi for up to 3 heads at a time.
 *   sb: this block's column of s [H][ATTN_CHUNK]; kt: the block's K codes;
 *   kd, km: its span's scales [Hk * hd] (gather_kivi_scales); w: [3][hd] */
INLINE void scores_block_kivi(float *sb, const float *q, int64_t G, int64_t Hk, int64_t hd, float scale,
                              const uint8_t *kt, const uint16_t *kd, const uint16_t *km, int bits, float *w)
{
    for (int64_t g = 0; g < Hk; g++) {
        const uint8_t *cg = kt + (size_t)(g * hd) * 2 * (size_t)bits;
        for (int64_t h0 = g * G; h0 < (g + 1) * G; h0 += 3) {
            switch ((g + 1) * G - h0 < 3 ? (g + 1) * G - h0 : 3) {
            case 1: scores_kivi(sb, q, h0, 1, cg, kd + g * hd, km + g * hd, hd, bits, scale, w); break;
            case 2: scores_kivi(sb, q, h0, 2, cg, kd + g * hd, km + g * hd, hd, bits, scale, w); break;
            default: scores_kivi(sb, q, h0, 3, cg, kd + g * hd, km + g * hd, hd, bits, scale, w); break;
            }
        }
    }
}

/* KIVI V of one block, rows 0..m-1 -> f32 rows dst: [m][n_ch], the layout the f32
 * p.v code reads. src: codes [16][n_ch * b / 8], d [16][n_ch / 64], m [16][n_ch / 64]. */
INLINE void widen_v_kivi(float *dst, const uint8_t *src, int64_t n_ch, int64_t m, int bits)
{
    const size_t row = (size_t)n_ch * (size_t)bits / 8, ng = (size_t)n_ch / ATTN_KIVI_VGROUP;
    const uint16_t *vd = (const uint16_t *)(src + ATTN_BLOCK * row), *vm = vd + ATTN_BLOCK * ng;
    for (int64_t r = 0; r < m; r++)                   /* row r, groups of 32 channels */
        for (int64_t g = 0; g < n_ch / 32; g++) {
            const size_t gi = (size_t)r * ng + (size_t)g / 2;   /* two groups of 32 share a d, m */
            const __m256 d = _mm256_set1_ps(_cvtsh_ss(vd[gi])), mn = _mm256_set1_ps(_cvtsh_ss(vm[gi]));
            __m128i lo, hi;
            kivi_v_codes(src + (size_t)r * row + (size_t)g * 4 * (size_t)bits, bits, &lo, &hi);
            float *o = dst + r * n_ch + g * 32;
            _mm256_storeu_ps(o, kivi_deq8(lo, d, mn));
            _mm256_storeu_ps(o + 8, kivi_deq8(_mm_srli_si128(lo, 8), d, mn));
            _mm256_storeu_ps(o + 16, kivi_deq8(hi, d, mn));
            _mm256_storeu_ps(o + 24, kivi_deq8(_mm_srli_si128(hi, 8), d, mn));
        }
}
#endif

/* hd is a literal in the common cases, so the loops over it unroll and the
 * accumulators stay in registers. */
#define DISPATCH_HD(call_64, call_128, call_any) \
    switch (hd) {                                \
    case 64: call_64; break;                     \
    case 128: call_128; break;                   \
    default: call_any; break;                    \
    }
#define SCORES_FN(name, t)                                                                          \
    static void name(float *s, const float *q, int64_t G, int64_t hd, float scale, const attn_chunk *c, \
                     float *tmp)                                                                     \
    {                                                                                                \
        DISPATCH_HD(scores_phase(s, q, G, 64, scale, c, tmp, t), scores_phase(s, q, G, 128, scale, c, tmp, t), \
                    scores_phase(s, q, G, hd, scale, c, tmp, t))                                     \
    }
#define PV_FN(name, t)                                                                                 \
    static void name(float *part, const float *s, int64_t G, int64_t hd, const attn_chunk *c, float *tmp) \
    {                                                                                                  \
        DISPATCH_HD(pv_phase(part, s, G, 64, c, tmp, t), pv_phase(part, s, G, 128, c, tmp, t),         \
                    pv_phase(part, s, G, hd, c, tmp, t))                                               \
    }
#endif
