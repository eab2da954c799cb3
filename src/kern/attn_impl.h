/* attn_impl.h - what the ISA files of the attention kernels share (not a module
 * header: included by attn_avx2.c and attn_avx512.c only). Room: kern.
 * Each file defines scores_phase(s, q, G, hd, scale, c, tmp, t) and
 * pv_phase(part, s, G, hd, c, tmp, t) as always-inline functions; these macros
 * make the per-type entry points of a kernel table from them. The helpers below
 * use SSE2 only (every x86-64), so both files share them. */
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
