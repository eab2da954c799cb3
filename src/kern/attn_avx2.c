/* attn_avx2.c - the AVX2 set of attn.h (FMA, F16C; 8 lanes). Built with
 * AVX2_FLAGS; called only when cpu_get() allows. Room: kern.
 * The structure of attn_avx512.c at half width: a block's 16 rows are two
 * vectors; scores from channel-major K (broadcast q[i] times channel i); exp by
 * Cody-Waite reduction, degree-7 polynomial and an exponent built in integer
 * lanes (inputs below -87 give 0); p.v keeps 16 output lanes of up to 4 heads in
 * registers, rows added in order. Unlike attn_avx512.c, q8/q4 K scores are integer
 * products of 16-bit q and 8-bit K (vpmaddwd; AVX2 has no faster int8 x f32). */
#include "kern/attn.h"
#include "kern/attn_impl.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#include <math.h>
#include <string.h>


/* e^x for x <= 0 (x = -inf gives 0). */
INLINE __m256 exp_neg(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.0f);
    const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

INLINE __m256 round_f16_v(__m256 x)
{
    return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* lanes [0, m) all ones */
INLINE __m256 lane_mask(int64_t m)
{
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32((int)m), iota));
}

/* 8 elements of an f32, f16 or bf16 array, widened to f32 */
INLINE __m256 load8(const void *p, int t)
{
    if (t == ATTN_F32) return _mm256_loadu_ps(p);
    const __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (t == ATTN_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));   /* bf16: the high half of an f32 */
}



enum { PF_AHEAD = 2 };   /* blocks ahead */

/* For the GP query heads h0 .. h0+GP-1 (GP <= 3) of one K/V head, the scores of
 * a block's 16 rows (two vectors of 8):
 *   s_h[0..16) = scale * sum_i q_h[i] * kt[i][0..16)        kt: [hd][16] channel-major
 * The sum over i runs in 2 interleaved partial sums (i mod 2), added at the end. */
INLINE void scores_t(float *s, const float *q, int64_t h0, const int GP, const void *kt, int64_t hd,
                     int t, __m256 vscale)
{
    __m256 a[3][2][2];                                /* [head][half of the rows][partial] */
#pragma GCC unroll 3
    for (int h = 0; h < GP; h++)
#pragma GCC unroll 2
        for (int r = 0; r < 2; r++) a[h][r][0] = a[h][r][1] = _mm256_setzero_ps();
    for (int64_t i = 0; i < hd; i += 2) {
#pragma GCC unroll 2
        for (int p = 0; p < 2; p++) {
            __m256 kv[2];
#pragma GCC unroll 2
            for (int r = 0; r < 2; r++)
                kv[r] = load8((const uint8_t *)kt + (size_t)((i + p) * 16 + 8 * r) * elt_size(t), t);
#pragma GCC unroll 3
            for (int h = 0; h < GP; h++) {
                const __m256 qb = _mm256_set1_ps(q[(h0 + h) * hd + i + p]);
                a[h][0][p] = _mm256_fmadd_ps(qb, kv[0], a[h][0][p]);
                a[h][1][p] = _mm256_fmadd_ps(qb, kv[1], a[h][1][p]);
            }
        }
    }
#pragma GCC unroll 3
    for (int h = 0; h < GP; h++)
#pragma GCC unroll 2
        for (int r = 0; r < 2; r++)
            _mm256_store_ps(s + (h0 + h) * ATTN_CHUNK + 8 * r, _mm256_mul_ps(_mm256_add_ps(a[h][r][0], a[h][r][1]), vscale));
}


/* For the GP heads h0 .. h0+GP-1 (GP <= 4) and lanes [i0, i0 + 8 NV) (NV <= 2):
 *   o_h[i] += sum over rows r < m of p_h[r] * v_r[i]      (rows in order)
 * Each row slice is converted once into registers and serves all GP heads.
 *   o_h = part + h * ATTN_PART(hd) + 2, p_h = s + h * ATTN_CHUNK (this block's rows) */
INLINE void pv_slice(float *part, const float *s, int64_t h0, const int GP, const void *rows, size_t stride,
                     int64_t m, int64_t hd, int64_t i0, const int NV, int t)
{
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int h = 0; h < GP; h++)
#pragma GCC unroll 2
        for (int k = 0; k < NV; k++) acc[h][k] = _mm256_loadu_ps(part + (h0 + h) * ATTN_PART(hd) + 2 + i0 + 8 * k);
    for (int64_t r = 0; r < m; r++) {
        __m256 v[2];
#pragma GCC unroll 2
        for (int k = 0; k < NV; k++)
            v[k] = load8((const uint8_t *)rows + ((size_t)r * stride + (size_t)(i0 + 8 * k)) * elt_size(t), t);
#pragma GCC unroll 4
        for (int h = 0; h < GP; h++) {
            const __m256 pr = _mm256_set1_ps(s[(h0 + h) * ATTN_CHUNK + r]);
#pragma GCC unroll 2
            for (int k = 0; k < NV; k++) acc[h][k] = _mm256_fmadd_ps(pr, v[k], acc[h][k]);
        }
    }
#pragma GCC unroll 4
    for (int h = 0; h < GP; h++)
#pragma GCC unroll 2
        for (int k = 0; k < NV; k++) _mm256_storeu_ps(part + (h0 + h) * ATTN_PART(hd) + 2 + i0 + 8 * k, acc[h][k]);
}

/* p.v of one block for the G heads of one K/V head (rows: that head's part of
 * the block's V rows; s: the scores of head h0 at this block). */
INLINE void pv_block(float *part, const float *s, int64_t h0, int64_t G, const void *rows, size_t stride,
                     int64_t m, int64_t hd, int t)
{
    for (int64_t g0 = 0; g0 < G; g0 += 4) {
        const int64_t gp = G - g0 < 4 ? G - g0 : 4;
        int64_t i0 = 0;
        for (; i0 + 16 <= hd; i0 += 16) {
            switch (gp) {
            case 1: pv_slice(part, s, h0 + g0, 1, rows, stride, m, hd, i0, 2, t); break;
            case 2: pv_slice(part, s, h0 + g0, 2, rows, stride, m, hd, i0, 2, t); break;
            case 3: pv_slice(part, s, h0 + g0, 3, rows, stride, m, hd, i0, 2, t); break;
            default: pv_slice(part, s, h0 + g0, 4, rows, stride, m, hd, i0, 2, t); break;
            }
        }
        for (; i0 < hd; i0 += 8)                       /* hd % 16 lanes left: one vector, one head at a time */
            for (int64_t h = 0; h < gp; h++) pv_slice(part, s, h0 + g0 + h, 1, rows, stride, m, hd, i0, 1, t);
    }
}

INLINE float hmax(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* q8/q4 K scores run in integers: q is rounded to 16-bit ints once per chunk, so
 * a channel pair of int8 K times a pair of int16 q is one vpmaddwd (16 products
 * summed in pairs) instead of widening every int8 to f32 for an FMA. q's rounding
 * is relative 2^-16 of its group's largest value, against K's 2^-8 (the scalar
 * set keeps q in f32; test_attn bounds the difference).
 *   q: [H][hd] f32 -> qp: [H][hd / 2] int32, each the int16 pair (qi[2j] low, qi[2j+1] high)
 *                     qs: [H][hd / 32] f32, q ~ qs * qi per group of 32 channels
 *   qs = max|q| / 32767, qi = round(q * 32767 / max|q|) (all 0 when max|q| < 2^-100,
 *   where 32767 / max|q| could overflow to inf and 0 * inf give NaN) */
INLINE void quant_q16(int32_t *qp, float *qs, const float *q, int64_t H, int64_t hd)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t g = 0; g < H * hd / 32; g++) {
        const float *x = q + g * 32;
        __m256 mx = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * k)));
        const float amax = hmax(mx), inv = amax >= 0x1p-100f ? 32767.0f / amax : 0.0f;
        qs[g] = inv > 0.0f ? amax / 32767.0f : 0.0f;
        const __m256 vi = _mm256_set1_ps(inv);
        for (int k = 0; k < 4; k += 2) {
            const __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), vi));
            const __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k + 8), vi));
            _mm256_storeu_si256((__m256i *)(qp + g * 16 + 4 * k), _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8));
        }
    }
}

/* The scores of GP (<= 3) heads from h0 over one block's int8 K channels kq [hd][16]
 * with f16 scales kd [hd / 32][16]: per group of 32 channels, for rows r,
 *   a_h[r] = sum_i qi_h[i] * kq[i][r]              (int32, exact: |a| < 2^28)
 *   s_h[r] += (qs_h * kd[r]) * a_h[r]               (f32), times scale at the end
 * Channels i, i+1 are interleaved (unpack) and widened to int16 once for all GP
 * heads; the rows' partial scores live in s between groups. */
INLINE void scores_q8(float *s, const int32_t *qp, const float *qs, int64_t h0, const int GP, const int8_t *kq,
                      const uint16_t *kd, int64_t hd, __m256 vscale)
{
    const int64_t ng = hd / ATTN_Q8_GROUP;
    for (int64_t g = 0; g < ng; g++) {
        __m256i a[3][2];                              /* [head][half of the rows] */
#pragma GCC unroll 3
        for (int h = 0; h < GP; h++) a[h][0] = a[h][1] = _mm256_setzero_si256();
        for (int64_t i = g * ATTN_Q8_GROUP; i < (g + 1) * ATTN_Q8_GROUP; i += 2) {
            const __m128i x0 = _mm_loadu_si128((const __m128i *)(kq + i * 16));
            const __m128i x1 = _mm_loadu_si128((const __m128i *)(kq + i * 16 + 16));
            const __m256i k0 = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(x0, x1));   /* rows 0-7: (k_i, k_i+1) */
            const __m256i k1 = _mm256_cvtepi8_epi16(_mm_unpackhi_epi8(x0, x1));   /* rows 8-15 */
#pragma GCC unroll 3
            for (int h = 0; h < GP; h++) {
                const __m256i qb = _mm256_set1_epi32(qp[(h0 + h) * hd / 2 + i / 2]);
                a[h][0] = _mm256_add_epi32(a[h][0], _mm256_madd_epi16(k0, qb));
                a[h][1] = _mm256_add_epi32(a[h][1], _mm256_madd_epi16(k1, qb));
            }
        }
#pragma GCC unroll 2
        for (int r = 0; r < 2; r++) {
            const __m256 dv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kd + g * 16 + 8 * r)));
#pragma GCC unroll 3
            for (int h = 0; h < GP; h++) {
                float *o = s + (h0 + h) * ATTN_CHUNK + 8 * r;
                const __m256 prev = g ? _mm256_load_ps(o) : _mm256_setzero_ps();
                const __m256 dq = _mm256_mul_ps(dv, _mm256_set1_ps(qs[(h0 + h) * ng + g]));
                _mm256_store_ps(o, _mm256_fmadd_ps(_mm256_cvtepi32_ps(a[h][r]), dq, prev));
            }
        }
    }
#pragma GCC unroll 3
    for (int h = 0; h < GP; h++)
#pragma GCC unroll 2
        for (int r = 0; r < 2; r++) {
            float *o = s + (h0 + h) * ATTN_CHUNK + 8 * r;
            _mm256_store_ps(o, _mm256_mul_ps(_mm256_load_ps(o), vscale));
        }
}

/* q8 p.v for GP (<= 4) heads and the 16 channels [i0, i0 + 16) of one scale group:
 *   o_h[i0 + i] += sum over rows r < m of w_h[r] * q_r[i]     (rows in order)
 * with w_h[r] = p_h[r] * d_r precomputed (w: this group's [GP][16], wstride apart).
 * Each row slice is widened once for all GP heads. */
INLINE void pv_q8(float *part, const float *w, size_t wstride, int64_t h0, const int GP, const int8_t *vq,
                  size_t stride, int64_t m, int64_t hd, int64_t i0)
{
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int h = 0; h < GP; h++)
#pragma GCC unroll 2
        for (int k = 0; k < 2; k++) acc[h][k] = _mm256_loadu_ps(part + (h0 + h) * ATTN_PART(hd) + 2 + i0 + 8 * k);
    for (int64_t r = 0; r < m; r++) {
        const __m128i x = _mm_loadu_si128((const __m128i *)(vq + (size_t)r * stride));
        const __m256 v0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(x));
        const __m256 v1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(x, 8)));
#pragma GCC unroll 4
        for (int h = 0; h < GP; h++) {
            const __m256 pd = _mm256_broadcast_ss(w + h * wstride + r);
            acc[h][0] = _mm256_fmadd_ps(pd, v0, acc[h][0]);
            acc[h][1] = _mm256_fmadd_ps(pd, v1, acc[h][1]);
        }
    }
#pragma GCC unroll 4
    for (int h = 0; h < GP; h++)
#pragma GCC unroll 2
        for (int k = 0; k < 2; k++) _mm256_storeu_ps(part + (h0 + h) * ATTN_PART(hd) + 2 + i0 + 8 * k, acc[h][k]);
}

/* q8 p.v of one block for the G heads of K/V head g (v: the block's V part, ints
 * then scales [hd / 32][16]). w: scratch for [G][hd / 32][16] products p_h[r] * d_r[group]
 * (rows past m: p is 0 there). */
INLINE void pv_block_q8(float *part, const float *s, int64_t g, int64_t G, const void *v, size_t stride,
                        int64_t m, int64_t hd, float *w)
{
    const int8_t *vq = (const int8_t *)v + g * hd;
    const uint16_t *vd = (const uint16_t *)((const int8_t *)v + stride * ATTN_BLOCK) + g * hd / ATTN_Q8_GROUP * ATTN_BLOCK;
    const size_t ng = (size_t)(hd / ATTN_Q8_GROUP), wstride = ng * ATTN_BLOCK;
    for (size_t gr = 0; gr < ng; gr++) {
        const __m256 d0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vd + gr * ATTN_BLOCK)));
        const __m256 d1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vd + gr * ATTN_BLOCK + 8)));
        for (int64_t h = 0; h < G; h++) {
            const float *sh = s + (g * G + h) * ATTN_CHUNK;
            float *wo = w + (size_t)h * wstride + gr * ATTN_BLOCK;
            _mm256_storeu_ps(wo, _mm256_mul_ps(_mm256_loadu_ps(sh), d0));
            _mm256_storeu_ps(wo + 8, _mm256_mul_ps(_mm256_loadu_ps(sh + 8), d1));
        }
    }
    for (int64_t hh = 0; hh < G; hh += 4) {
        const int64_t gp = G - hh < 4 ? G - hh : 4, h0 = g * G + hh;
        const float *wh = w + (size_t)hh * wstride;
        for (int64_t i0 = 0; i0 < hd; i0 += 16) {
            const float *wg = wh + (size_t)(i0 / ATTN_Q8_GROUP) * ATTN_BLOCK;
            switch (gp) {
            case 1: pv_q8(part, wg, wstride, h0, 1, vq + i0, stride, m, hd, i0); break;
            case 2: pv_q8(part, wg, wstride, h0, 2, vq + i0, stride, m, hd, i0); break;
            case 3: pv_q8(part, wg, wstride, h0, 3, vq + i0, stride, m, hd, i0); break;
            default: pv_q8(part, wg, wstride, h0, 4, vq + i0, stride, m, hd, i0); break;
            }
        }
    }
}




/* scores phase: tmp holds a padded partial block (pad) and a widened q4 one (xk);
 * KIVI scores from the codes and uses tmp for its q * d (scores_block_kivi) */
INLINE void scores_phase(float *s, const float *q, int64_t G, int64_t hd, float scale, const attn_chunk *c,
                         float *tmp, int t)
{
    const int64_t Hk = c->n_head_kv, n_ch = Hk * hd, nb = (c->n + ATTN_BLOCK - 1) / ATTN_BLOCK;
    const int64_t q8_part = (17 * n_ch + 63) / 64 * 64;
    int8_t *pad = (int8_t *)tmp, *xk = pad + (t == ATTN_F32 ? 4 * n_ch * ATTN_BLOCK : q8_part);
    const size_t kb = attn_part_bytes(t, n_ch, 0), vb = attn_part_bytes(c->type_v, (int64_t)c->stride, 1);
    const int tq = t == ATTN_Q4 ? ATTN_Q8 : t, kivi = attn_kivi_bits(t);   /* the layout read below */
    const __m256 vscale = _mm256_set1_ps(scale);
    uint16_t *skd = (uint16_t *)(tmp + 3 * hd), *skm = skd + n_ch;   /* KIVI: the span's scales, after w */
    int32_t *qp = (int32_t *)(xk + q8_part);          /* q8/q4: q as 16-bit ints, after xk */
    float *qs = (float *)(qp + G * Hk * hd / 2);
    if (tq == ATTN_Q8) quant_q16(qp, qs, q, G * Hk, hd);
    for (int64_t d = 0; d < PF_AHEAD && d < nb; d++) prefetch_block(c->k[d], kb);
    for (int64_t b = 0; b < nb; b++) {
        const int64_t m = b == nb - 1 ? c->n - b * ATTN_BLOCK : ATTN_BLOCK;
        if (b + PF_AHEAD < nb) prefetch_block(c->k[b + PF_AHEAD], kb);
        else if (b + PF_AHEAD - nb < nb) prefetch_block(c->v[b + PF_AHEAD - nb], vb);
        const void *kt = c->k[b];
        if (t == ATTN_Q4) {
            expand_k_q4(xk, kt, n_ch);
            kt = xk;
        }
        if (kivi) {                                   /* straight from the codes; tmp: its q * d */
            if (b % ATTN_KIVI_SPAN == 0) gather_kivi_scales(skd, skm, c->k + b, n_ch, kivi);
            scores_block_kivi(s + b * ATTN_BLOCK, q, G, Hk, hd, scale, kt, skd, skm, kivi, tmp);
            continue;
        }
        if (m < ATTN_BLOCK) {
            if (tq == ATTN_Q8) pad_k_q8(pad, kt, n_ch, m);
            else pad_k(pad, kt, n_ch, m, elt_size(t));
            kt = pad;
        }
        float *sb = s + b * ATTN_BLOCK;
        for (int64_t g = 0; g < Hk; g++) {
            if (tq == ATTN_Q8) {
                const int8_t *kq = (const int8_t *)kt + g * hd * ATTN_BLOCK;
                const uint16_t *kd = (const uint16_t *)((const int8_t *)kt + n_ch * ATTN_BLOCK) + g * hd / ATTN_Q8_GROUP * ATTN_BLOCK;
                for (int64_t h0 = g * G; h0 < (g + 1) * G; h0 += 3) {
                    switch ((g + 1) * G - h0 < 3 ? (g + 1) * G - h0 : 3) {
                    case 1: scores_q8(sb, qp, qs, h0, 1, kq, kd, hd, vscale); break;
                    case 2: scores_q8(sb, qp, qs, h0, 2, kq, kd, hd, vscale); break;
                    default: scores_q8(sb, qp, qs, h0, 3, kq, kd, hd, vscale); break;
                    }
                }
                continue;
            }
            const void *kg = (const uint8_t *)kt + (size_t)(g * hd) * ATTN_BLOCK * elt_size(t);
            for (int64_t h0 = g * G; h0 < (g + 1) * G; h0 += 3) {
                switch ((g + 1) * G - h0 < 3 ? (g + 1) * G - h0 : 3) {
                case 1: scores_t(sb, q, h0, 1, kg, hd, t, vscale); break;
                case 2: scores_t(sb, q, h0, 2, kg, hd, t, vscale); break;
                default: scores_t(sb, q, h0, 3, kg, hd, t, vscale); break;
                }
            }
        }
    }
}

static void softmax(float *part, float *s, int64_t H, int64_t n, int64_t hd, int round_p)
{
    const int64_t n8 = (n + 7) / 8;                    /* groups of 8 rows */
    const __m256 tail = lane_mask(n - (n8 - 1) * 8), all = lane_mask(8);
    for (int64_t h = 0; h < H; h++) {
        float *sh = s + h * ATTN_CHUNK, *ph = part + h * ATTN_PART(hd);
        __m256 mx = _mm256_set1_ps(-INFINITY);
        for (int64_t g = 0; g < n8; g++) {
            const __m256 x = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_load_ps(sh + g * 8),
                                              g == n8 - 1 ? tail : all);
            mx = _mm256_max_ps(mx, x);
        }
        const float m = hmax(mx);
        const __m256 vm = _mm256_set1_ps(m);
        __m256 l = _mm256_setzero_ps();
        for (int64_t g = 0; g < n8; g++) {
            __m256 p = exp_neg(_mm256_sub_ps(_mm256_load_ps(sh + g * 8), vm));
            if (round_p) p = round_f16_v(p);
            p = _mm256_and_ps(p, g == n8 - 1 ? tail : all);
            _mm256_store_ps(sh + g * 8, p);
            l = _mm256_add_ps(l, p);
        }
        ph[0] = m;
        ph[1] = hsum(l);
        memset(ph + 2, 0, (size_t)hd * sizeof *ph);
    }
}

/* pv phase: tmp holds a widened q4 V block (xv), or a KIVI one in f32 rows [m][stride] */
INLINE void pv_phase(float *part, const float *s, int64_t G, int64_t hd, const attn_chunk *c, float *tmp, int t)
{
    const int64_t Hk = c->n_head_kv, nb = (c->n + ATTN_BLOCK - 1) / ATTN_BLOCK;
    int8_t *xv = (int8_t *)tmp;
    float *w = (float *)(xv + (17 * (int64_t)c->stride + 63) / 64 * 64);   /* q8/q4: after a widened q4 block */
    const size_t vb = attn_part_bytes(t, (int64_t)c->stride, 1);
    const int kivi = attn_kivi_bits(t), tv = kivi ? ATTN_F32 : t;   /* the layout read below */
    for (int64_t b = 0; b < nb; b++) {
        const int64_t m = b == nb - 1 ? c->n - b * ATTN_BLOCK : ATTN_BLOCK;
        if (b + PF_AHEAD < nb) prefetch_block(c->v[b + PF_AHEAD], vb);
        const void *vt = c->v[b];
        if (t == ATTN_Q4) {
            expand_v_q4(xv, vt, (int64_t)c->stride);
            vt = xv;
        }
        if (kivi) {
            widen_v_kivi(tmp, vt, (int64_t)c->stride, m, kivi);
            vt = tmp;
        }
        for (int64_t g = 0; g < Hk; g++) {
            if (t == ATTN_Q8 || t == ATTN_Q4) pv_block_q8(part, s + b * ATTN_BLOCK, g, G, vt, c->stride, m, hd, w);
            else pv_block(part, s + b * ATTN_BLOCK, g * G, G, (const uint8_t *)vt + (size_t)(g * hd) * elt_size(tv),
                          c->stride, m, hd, tv);
        }
    }
}

SCORES_FN(scores_f32, ATTN_F32)
SCORES_FN(scores_f16, ATTN_F16)
SCORES_FN(scores_bf16, ATTN_BF16)
PV_FN(pv_f32, ATTN_F32)
PV_FN(pv_f16, ATTN_F16)
PV_FN(pv_bf16, ATTN_BF16)
SCORES_FN(scores_q8_fn, ATTN_Q8)
SCORES_FN(scores_q4_fn, ATTN_Q4)
PV_FN(pv_q8_fn, ATTN_Q8)
PV_FN(pv_q4_fn, ATTN_Q4)
SCORES_FN(scores_kivi4, ATTN_KIVI4)
SCORES_FN(scores_kivi2, ATTN_KIVI2)
PV_FN(pv_kivi4, ATTN_KIVI4)
PV_FN(pv_kivi2, ATTN_KIVI2)

static void round_f16(float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, round_f16_v(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) x[i] = _cvtsh_ss(_cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT));
}

static const attn_kernels AVX2 = {
    "avx2",
    { [ATTN_F32] = scores_f32, [ATTN_F16] = scores_f16, [ATTN_Q8] = scores_q8_fn, [ATTN_Q4] = scores_q4_fn,
      [ATTN_BF16] = scores_bf16, [ATTN_KIVI4] = scores_kivi4, [ATTN_KIVI2] = scores_kivi2 },
    softmax,
    { [ATTN_F32] = pv_f32, [ATTN_F16] = pv_f16, [ATTN_Q8] = pv_q8_fn, [ATTN_Q4] = pv_q4_fn, [ATTN_BF16] = pv_bf16,
      [ATTN_KIVI4] = pv_kivi4, [ATTN_KIVI2] = pv_kivi2 },
    round_f16,
};
const attn_kernels *attn_avx2_kernels(void) { return &AVX2; }
#else
const attn_kernels *attn_avx2_kernels(void) { return 0; }
#endif
