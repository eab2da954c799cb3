/* attn_avx512.c - the AVX-512 set of attn.h (F, BW, VL, DQ; 16 lanes). Built with
 * the Makefile's AVX512_FLAGS; called only when cpu_get() allows. Room: kern.
 *
 * One vector holds the 16 rows of a cache block:
 *   scores: K is channel-major, so channel i of the block is one vector; the G
 *           query heads of its K/V head multiply it by their q[i] (broadcast):
 *           scores of 16 rows come out as one vector, no horizontal sums;
 *   softmax: vector max, exp (Cody-Waite reduction, degree-7 polynomial, scalef),
 *           f16 rounding, vector sum; rows past n are masked to p = 0;
 *   p.v:    each V row converted once into registers serves the group's heads,
 *           whose outputs stay in registers; rows added in order.
 * Blocks are prefetched PF_DIST ahead along the chunk's K-then-V stream. Nothing
 * depends on where a row sits in the chunk or how many rows it has, beyond masking. */
#include "kern/attn.h"
#include "kern/attn_impl.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
#include <immintrin.h>
#include <math.h>
#include <string.h>


/* e^x for x <= 0 (x = -inf gives 0). */
INLINE __m512 exp_neg(__m512 x)
{
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);     /* x - n ln2, in two parts */
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

INLINE __m512 round_f16_v(__m512 x)
{
    return _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* 16 elements of an f32, f16 or bf16 array, widened to f32 */
INLINE __m512 load16(const void *p, int t)
{
    if (t == ATTN_F32) return _mm512_loadu_ps(p);
    const __m256i h = _mm256_loadu_si256((const __m256i *)p);
    if (t == ATTN_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));   /* bf16: the high half of an f32 */
}



/* For the GP query heads h0 .. h0+GP-1 (GP <= 4) of one K/V head, the scores of
 * a block's 16 rows at once:
 *   s_h[0..16) = scale * sum_i q_h[i] * kt[i][0..16)        kt: [hd][16] channel-major
 * The sum over i runs in 4 interleaved partial sums (i mod 4), added as
 * (p0 + p1) + (p2 + p3): 4 GP independent FMA chains, no horizontal sums.
 *   s_h = s + h * ATTN_CHUNK (this block's 16 entries) */
INLINE void scores_t(float *s, const float *q, int64_t h0, const int GP, const void *kt, int64_t hd,
                     int t, __m512 vscale)
{
    __m512 a[4][4];
#pragma GCC unroll 4
    for (int h = 0; h < GP; h++)
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) a[h][p] = _mm512_setzero_ps();
    for (int64_t i = 0; i < hd; i += 4) {
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) {
            const __m512 kv = load16((const uint8_t *)kt + (size_t)(i + p) * 16 * elt_size(t), t);
#pragma GCC unroll 4
            for (int h = 0; h < GP; h++)
                a[h][p] = _mm512_fmadd_ps(_mm512_set1_ps(q[(h0 + h) * hd + i + p]), kv, a[h][p]);
        }
    }
#pragma GCC unroll 4
    for (int h = 0; h < GP; h++) {
        const __m512 sum = _mm512_add_ps(_mm512_add_ps(a[h][0], a[h][1]), _mm512_add_ps(a[h][2], a[h][3]));
        _mm512_store_ps(s + (h0 + h) * ATTN_CHUNK, _mm512_mul_ps(sum, vscale));
    }
}


/* For the GP heads h0 .. h0+GP-1 (GP <= 4) and lanes [i0, i0 + 16 NV) (NV <= 4):
 *   o_h[i] += sum over rows r < m of p_h[r] * v_r[i]      (rows in order)
 * Each row is converted once into registers and serves all GP heads; the 4 GP x NV
 * accumulators are independent chains, so FMA latency is hidden.
 *   o_h = part + h * ATTN_PART(hd) + 2, p_h = s + h * ATTN_CHUNK (this block's rows) */
INLINE void pv_slice(float *part, const float *s, int64_t h0, const int GP, const void *rows, size_t stride,
                     int64_t m, int64_t hd, int64_t i0, const int NV, int t)
{
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int h = 0; h < GP; h++)
#pragma GCC unroll 4
        for (int k = 0; k < NV; k++) acc[h][k] = _mm512_loadu_ps(part + (h0 + h) * ATTN_PART(hd) + 2 + i0 + 16 * k);
    for (int64_t r = 0; r < m; r++) {
        __m512 v[4];
#pragma GCC unroll 4
        for (int k = 0; k < NV; k++)
            v[k] = load16((const uint8_t *)rows + ((size_t)r * stride + (size_t)(i0 + 16 * k)) * elt_size(t), t);
#pragma GCC unroll 4
        for (int h = 0; h < GP; h++) {
            const __m512 pr = _mm512_set1_ps(s[(h0 + h) * ATTN_CHUNK + r]);
#pragma GCC unroll 4
            for (int k = 0; k < NV; k++) acc[h][k] = _mm512_fmadd_ps(pr, v[k], acc[h][k]);
        }
    }
#pragma GCC unroll 4
    for (int h = 0; h < GP; h++)
#pragma GCC unroll 4
        for (int k = 0; k < NV; k++) _mm512_storeu_ps(part + (h0 + h) * ATTN_PART(hd) + 2 + i0 + 16 * k, acc[h][k]);
}

/* p.v of one block for the G heads of one K/V head (rows: that head's part of
 * the block's V rows; s: the scores of head h0 at this block). */
INLINE void pv_block(float *part, const float *s, int64_t h0, int64_t G, const void *rows, size_t stride,
                     int64_t m, int64_t hd, int t)
{
    for (int64_t g0 = 0; g0 < G; g0 += 4) {
        const int64_t gp = G - g0 < 4 ? G - g0 : 4;
        int64_t i0 = 0;
        for (; i0 + 64 <= hd; i0 += 64) {
            switch (gp) {
            case 1: pv_slice(part, s, h0 + g0, 1, rows, stride, m, hd, i0, 4, t); break;
            case 2: pv_slice(part, s, h0 + g0, 2, rows, stride, m, hd, i0, 4, t); break;
            case 3: pv_slice(part, s, h0 + g0, 3, rows, stride, m, hd, i0, 4, t); break;
            default: pv_slice(part, s, h0 + g0, 4, rows, stride, m, hd, i0, 4, t); break;
            }
        }
        for (; i0 < hd; i0 += 16)                      /* hd % 64 lanes left: one vector, one head at a time */
            for (int64_t h = 0; h < gp; h++) pv_slice(part, s, h0 + g0 + h, 1, rows, stride, m, hd, i0, 1, t);
    }
}

/* q8: as scores_t, for int8 channels kq [hd][16] with f16 scales kd [hd / 32][16]
 * (one per position and group of 32 channels). Per group the int products are
 * summed in 4 partial sums, then multiplied by the group's scales and added. */
INLINE void scores_q8(float *s, const float *q, int64_t h0, const int GP, const int8_t *kq,
                      const uint16_t *kd, int64_t hd, __m512 vscale)
{
    __m512 acc[4];
#pragma GCC unroll 4
    for (int h = 0; h < GP; h++) acc[h] = _mm512_setzero_ps();
    for (int64_t g = 0; g < hd / ATTN_Q8_GROUP; g++) {
        __m512 a[4][4];
#pragma GCC unroll 4
        for (int h = 0; h < GP; h++)
#pragma GCC unroll 4
            for (int p = 0; p < 4; p++) a[h][p] = _mm512_setzero_ps();
        for (int64_t i = g * ATTN_Q8_GROUP; i < (g + 1) * ATTN_Q8_GROUP; i += 4) {
#pragma GCC unroll 4
            for (int p = 0; p < 4; p++) {
                const __m512 kv = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(kq + (i + p) * 16))));
#pragma GCC unroll 4
                for (int h = 0; h < GP; h++)
                    a[h][p] = _mm512_fmadd_ps(_mm512_set1_ps(q[(h0 + h) * hd + i + p]), kv, a[h][p]);
            }
        }
        const __m512 dv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(kd + g * 16)));
#pragma GCC unroll 4
        for (int h = 0; h < GP; h++)
            acc[h] = _mm512_fmadd_ps(_mm512_add_ps(_mm512_add_ps(a[h][0], a[h][1]), _mm512_add_ps(a[h][2], a[h][3])), dv, acc[h]);
    }
#pragma GCC unroll 4
    for (int h = 0; h < GP; h++) _mm512_store_ps(s + (h0 + h) * ATTN_CHUNK, _mm512_mul_ps(acc[h], vscale));
}


/* q8 p.v for the GP heads h0.. and the 32 channels of one scale group:
 *   o_h[i0 + i] += sum over rows r < m of (p_h[r] * d_r) * q_r[i]     (rows in order)
 * vq: this group's ints of row 0 (rows stride bytes apart); vd: its scales [16]. */
INLINE void pv_q8(float *part, const float *s, int64_t h0, const int GP, const int8_t *vq, size_t stride,
                  const uint16_t *vd, int64_t m, int64_t hd, int64_t i0)
{
    __m512 acc[4][2];
#pragma GCC unroll 4
    for (int h = 0; h < GP; h++)
#pragma GCC unroll 2
        for (int k = 0; k < 2; k++) acc[h][k] = _mm512_loadu_ps(part + (h0 + h) * ATTN_PART(hd) + 2 + i0 + 16 * k);
    for (int64_t r = 0; r < m; r++) {
        const __m256i x = _mm256_loadu_si256((const __m256i *)(vq + (size_t)r * stride));
        const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(x)));
        const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(x, 1)));
        const float d = _cvtsh_ss(vd[r]);
#pragma GCC unroll 4
        for (int h = 0; h < GP; h++) {
            const __m512 pd = _mm512_set1_ps(s[(h0 + h) * ATTN_CHUNK + r] * d);
            acc[h][0] = _mm512_fmadd_ps(pd, lo, acc[h][0]);
            acc[h][1] = _mm512_fmadd_ps(pd, hi, acc[h][1]);
        }
    }
#pragma GCC unroll 4
    for (int h = 0; h < GP; h++)
#pragma GCC unroll 2
        for (int k = 0; k < 2; k++) _mm512_storeu_ps(part + (h0 + h) * ATTN_PART(hd) + 2 + i0 + 16 * k, acc[h][k]);
}

/* q8 p.v of one block for the G heads of K/V head g (v: the block's V part). */
INLINE void pv_block_q8(float *part, const float *s, int64_t g, int64_t G, const void *v, size_t stride,
                        int64_t m, int64_t hd)
{
    const int8_t *vq = (const int8_t *)v + g * hd;
    const uint16_t *vd = (const uint16_t *)((const int8_t *)v + stride * ATTN_BLOCK) + g * hd / ATTN_Q8_GROUP * ATTN_BLOCK;
    for (int64_t h0 = g * G; h0 < (g + 1) * G; h0 += 4) {
        const int64_t gp = (g + 1) * G - h0 < 4 ? (g + 1) * G - h0 : 4;
        for (int64_t i0 = 0; i0 < hd; i0 += ATTN_Q8_GROUP) {
            const int8_t *q0 = vq + i0;
            const uint16_t *d0 = vd + i0 / ATTN_Q8_GROUP * ATTN_BLOCK;
            switch (gp) {
            case 1: pv_q8(part, s, h0, 1, q0, stride, d0, m, hd, i0); break;
            case 2: pv_q8(part, s, h0, 2, q0, stride, d0, m, hd, i0); break;
            case 3: pv_q8(part, s, h0, 3, q0, stride, d0, m, hd, i0); break;
            default: pv_q8(part, s, h0, 4, q0, stride, d0, m, hd, i0); break;
            }
        }
    }
}



/* The scores of GP query heads (from h0) of K/V head g over one block's K part kt
 * (for q4: already widened to the q8 layout). */
INLINE void scores_any(float *sb, const float *q, int64_t h0, const int GP, const void *kt, int64_t Hk, int64_t g,
                       int64_t hd, int t, __m512 vscale)
{
    if (t == ATTN_Q8 || t == ATTN_Q4) {
        const uint16_t *kd = (const uint16_t *)((const int8_t *)kt + Hk * hd * ATTN_BLOCK);   /* [Hk*hd/32][16] */
        scores_q8(sb, q, h0, GP, (const int8_t *)kt + g * hd * ATTN_BLOCK, kd + g * hd / ATTN_Q8_GROUP * ATTN_BLOCK,
                  hd, vscale);
    } else {
        scores_t(sb, q, h0, GP, (const uint8_t *)kt + (size_t)(g * hd) * ATTN_BLOCK * elt_size(t), hd, t, vscale);
    }
}


enum { PF_AHEAD = 2 };   /* blocks ahead: 1 to 6 measured the same on Zen 4 */

/* scores phase: tmp holds a padded K block (pad) and a widened q4 one (xk); KIVI
 * scores from the codes and uses tmp for its q * d (scores_block_kivi). */
INLINE void scores_phase(float *s, const float *q, int64_t G, int64_t hd, float scale, const attn_chunk *c,
                         float *tmp, int t)
{
    const int64_t Hk = c->n_head_kv, n_ch = Hk * hd, nb = (c->n + ATTN_BLOCK - 1) / ATTN_BLOCK;
    const int64_t q8_part = (17 * n_ch + 63) / 64 * 64;
    int8_t *pad = (int8_t *)tmp, *xk = pad + (t == ATTN_F32 ? 4 * n_ch * ATTN_BLOCK : q8_part);
    const size_t kb = attn_part_bytes(t, n_ch, 0), vb = attn_part_bytes(c->type_v, (int64_t)c->stride, 1);
    const int tq = t == ATTN_Q4 ? ATTN_Q8 : t, kivi = attn_kivi_bits(t);   /* the layout the kernels below read */
    const __m512 vscale = _mm512_set1_ps(scale);
    uint16_t *skd = (uint16_t *)(tmp + 3 * hd), *skm = skd + n_ch;   /* KIVI: the span's scales, after w */
    for (int64_t d = 0; d < PF_AHEAD && d < nb; d++) prefetch_block(c->k[d], kb);
    for (int64_t b = 0; b < nb; b++) {
        const int64_t m = b == nb - 1 ? c->n - b * ATTN_BLOCK : ATTN_BLOCK;
        if (b + PF_AHEAD < nb) prefetch_block(c->k[b + PF_AHEAD], kb);
        else if (b + PF_AHEAD - nb < nb) prefetch_block(c->v[b + PF_AHEAD - nb], vb);   /* the pv phase's first blocks */
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
        for (int64_t g = 0; g < Hk; g++)
            for (int64_t h0 = g * G; h0 < (g + 1) * G; h0 += 4) {
                float *sb = s + b * ATTN_BLOCK;
                switch ((g + 1) * G - h0 < 4 ? (g + 1) * G - h0 : 4) {
                case 1: scores_any(sb, q, h0, 1, kt, Hk, g, hd, tq, vscale); break;
                case 2: scores_any(sb, q, h0, 2, kt, Hk, g, hd, tq, vscale); break;
                case 3: scores_any(sb, q, h0, 3, kt, Hk, g, hd, tq, vscale); break;
                default: scores_any(sb, q, h0, 4, kt, Hk, g, hd, tq, vscale); break;
                }
            }
    }
}

static void softmax(float *part, float *s, int64_t H, int64_t n, int64_t hd, int round_p)
{
    const int64_t nb = (n + ATTN_BLOCK - 1) / ATTN_BLOCK;
    const __mmask16 tail = (__mmask16)((1u << (n - (nb - 1) * ATTN_BLOCK)) - 1u);   /* 16 rows -> 0xffff */
    for (int64_t h = 0; h < H; h++) {
        float *sh = s + h * ATTN_CHUNK, *ph = part + h * ATTN_PART(hd);
        __m512 mx = _mm512_set1_ps(-INFINITY);
        for (int64_t b = 0; b < nb; b++)
            mx = _mm512_mask_max_ps(mx, b == nb - 1 ? tail : (__mmask16)0xffff, mx, _mm512_load_ps(sh + b * ATTN_BLOCK));
        const float m = _mm512_reduce_max_ps(mx);
        const __m512 vm = _mm512_set1_ps(m);
        __m512 l = _mm512_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            __m512 p = exp_neg(_mm512_sub_ps(_mm512_load_ps(sh + b * ATTN_BLOCK), vm));
            if (round_p) p = round_f16_v(p);
            p = _mm512_maskz_mov_ps(b == nb - 1 ? tail : (__mmask16)0xffff, p);
            _mm512_store_ps(sh + b * ATTN_BLOCK, p);
            l = _mm512_add_ps(l, p);
        }
        ph[0] = m;
        ph[1] = _mm512_reduce_add_ps(l);
        memset(ph + 2, 0, (size_t)hd * sizeof *ph);
    }
}

/* pv phase: tmp holds a widened q4 V block (xv), or a KIVI one in f32 rows [m][stride]. */
INLINE void pv_phase(float *part, const float *s, int64_t G, int64_t hd, const attn_chunk *c, float *tmp, int t)
{
    const int64_t Hk = c->n_head_kv, nb = (c->n + ATTN_BLOCK - 1) / ATTN_BLOCK;
    int8_t *xv = (int8_t *)tmp;
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
            if (t == ATTN_Q8 || t == ATTN_Q4) pv_block_q8(part, s + b * ATTN_BLOCK, g, G, vt, c->stride, m, hd);
            else pv_block(part, s + b * ATTN_BLOCK, g * G, G, (const uint8_t *)vt + (size_t)(g * hd) * elt_size(tv),
                          c->stride, m, hd, tv);
        }
    }
}

SCORES_FN(scores_f32, ATTN_F32)
SCORES_FN(scores_f16, ATTN_F16)
SCORES_FN(scores_bf16, ATTN_BF16)
SCORES_FN(scores_q8_fn, ATTN_Q8)
SCORES_FN(scores_q4_fn, ATTN_Q4)
PV_FN(pv_f32, ATTN_F32)
PV_FN(pv_f16, ATTN_F16)
PV_FN(pv_bf16, ATTN_BF16)
PV_FN(pv_q8_fn, ATTN_Q8)
PV_FN(pv_q4_fn, ATTN_Q4)
SCORES_FN(scores_kivi4, ATTN_KIVI4)
SCORES_FN(scores_kivi2, ATTN_KIVI2)
PV_FN(pv_kivi4, ATTN_KIVI4)
PV_FN(pv_kivi2, ATTN_KIVI2)

static void round_f16(float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, round_f16_v(_mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(x + i, k, round_f16_v(_mm512_maskz_loadu_ps(k, x + i)));
    }
}

static const attn_kernels AVX512 = {
    "avx512",
    { [ATTN_F32] = scores_f32, [ATTN_F16] = scores_f16, [ATTN_Q8] = scores_q8_fn, [ATTN_Q4] = scores_q4_fn,
      [ATTN_BF16] = scores_bf16, [ATTN_KIVI4] = scores_kivi4, [ATTN_KIVI2] = scores_kivi2 },
    softmax,
    { [ATTN_F32] = pv_f32, [ATTN_F16] = pv_f16, [ATTN_Q8] = pv_q8_fn, [ATTN_Q4] = pv_q4_fn, [ATTN_BF16] = pv_bf16,
      [ATTN_KIVI4] = pv_kivi4, [ATTN_KIVI2] = pv_kivi2 },
    round_f16,
};
const attn_kernels *attn_avx512_kernels(void) { return &AVX512; }
#else
const attn_kernels *attn_avx512_kernels(void) { return 0; }
#endif
