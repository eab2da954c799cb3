/* attn.c - see attn.h: the scalar set (the specification), the fold of chunk
 * parts, and the choice of set. Room: kern. */
#include "kern/attn.h"
#include "kern/cpu.h"
#include "kern/quant.h"

#include <math.h>
#include <string.h>

enum { T_F32, T_F16, T_Q8, T_Q4 };

/* K of row j, channel ch (of n_ch), from the channel-major blocks */
static float kelem(const void *const *base, int64_t n_ch, int64_t j, int64_t ch, int t)
{
    const uint8_t *b = base[j / ATTN_BLOCK];
    const size_t slot = (size_t)(j % ATTN_BLOCK), at = (size_t)ch * ATTN_BLOCK + slot;
    if (t == T_F32) return ((const float *)b)[at];
    if (t == T_F16) return fp16_to_f32(((const uint16_t *)b)[at]);
    if (t == T_Q4) {                                  /* nibbles [n_ch][8]: slot s in byte s % 8, high if s >= 8 */
        const uint8_t byte = b[(size_t)ch * (ATTN_BLOCK / 2) + slot % 8];
        const int q = (slot < 8 ? byte & 15 : byte >> 4) - 8;
        const uint16_t *d = (const uint16_t *)(b + (size_t)n_ch * ATTN_BLOCK / 2);
        return fp16_to_f32(d[(size_t)(ch / ATTN_Q8_GROUP) * ATTN_BLOCK + slot]) * (float)q;
    }
    const uint16_t *d = (const uint16_t *)(b + (size_t)n_ch * ATTN_BLOCK);   /* [n_ch / 32][16] */
    return fp16_to_f32(d[(size_t)(ch / ATTN_Q8_GROUP) * ATTN_BLOCK + slot]) * (float)((const int8_t *)b)[at];
}

/* V of row j, channel ch, from the row-major blocks of stride elements (= n_ch for q8) */
static float velem(const void *const *base, size_t stride, int64_t j, int64_t ch, int t)
{
    const uint8_t *b = base[j / ATTN_BLOCK];
    const size_t slot = (size_t)(j % ATTN_BLOCK), at = slot * stride + (size_t)ch;
    if (t == T_F32) return ((const float *)b)[at];
    if (t == T_F16) return fp16_to_f32(((const uint16_t *)b)[at]);
    if (t == T_Q4) {                                  /* stride = n_ch; row: nibbles [n_ch / 2] */
        const size_t g = (size_t)ch / ATTN_Q8_GROUP, i = (size_t)ch % ATTN_Q8_GROUP;
        const uint8_t byte = b[slot * stride / 2 + g * ATTN_Q8_GROUP / 2 + i % 16];
        const int q = (i < 16 ? byte & 15 : byte >> 4) - 8;
        const uint16_t *d = (const uint16_t *)(b + stride * ATTN_BLOCK / 2);
        return fp16_to_f32(d[slot * (stride / ATTN_Q8_GROUP) + g]) * (float)q;
    }
    const uint16_t *d = (const uint16_t *)(b + stride * ATTN_BLOCK);        /* [16][n_ch / 32] */
    return fp16_to_f32(d[slot * (stride / ATTN_Q8_GROUP) + (size_t)(ch / ATTN_Q8_GROUP)]) * (float)((const int8_t *)b)[at];
}

static void chunk_ref(float *part, const float *q, int64_t G, int64_t hd, float scale,
                      const attn_chunk *c, float *scratch, int t)
{
    const int64_t n_ch = c->n_head_kv * hd;
    for (int64_t h = 0; h < c->n_head_kv * G; h++) {  /* part: [n_head][hd + 2], q: [n_head][hd] */
        const float *qh = q + h * hd;
        const int64_t hk = (h / G) * hd;              /* K/V head h / G inside a row */
        float *s = scratch;                           /* s: [n] */
        float m = -INFINITY;
        for (int64_t j = 0; j < c->n; j++) {
            float d = 0.0f;
            for (int64_t i = 0; i < hd; i++) d += qh[i] * kelem(c->k, n_ch, j, hk + i, t);
            s[j] = d * scale;
            if (s[j] > m) m = s[j];
        }
        float *ph = part + h * ATTN_PART(hd), *o = ph + 2;
        float l = 0.0f;
        memset(o, 0, (size_t)hd * sizeof *o);
        for (int64_t j = 0; j < c->n; j++) {
            float p = expf(s[j] - m);
            if (t == T_F16) p = fp16_to_f32(f32_to_fp16(p));
            l += p;
            for (int64_t i = 0; i < hd; i++) o[i] += p * velem(c->v, c->stride, j, hk + i, t);
        }
        ph[0] = m;
        ph[1] = l;
    }
}

static void chunk_f32(float *part, const float *q, int64_t G, int64_t hd, float scale,
                      const attn_chunk *c, float *scratch)
{
    chunk_ref(part, q, G, hd, scale, c, scratch, T_F32);
}

static void chunk_f16(float *part, const float *q, int64_t G, int64_t hd, float scale,
                      const attn_chunk *c, float *scratch)
{
    chunk_ref(part, q, G, hd, scale, c, scratch, T_F16);
}

static void chunk_q8(float *part, const float *q, int64_t G, int64_t hd, float scale,
                     const attn_chunk *c, float *scratch)
{
    chunk_ref(part, q, G, hd, scale, c, scratch, T_Q8);
}

static void chunk_q4(float *part, const float *q, int64_t G, int64_t hd, float scale,
                     const attn_chunk *c, float *scratch)
{
    chunk_ref(part, q, G, hd, scale, c, scratch, T_Q4);
}

static void round_f16(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] = fp16_to_f32(f32_to_fp16(x[i]));
}

static const attn_kernels SCALAR = { "scalar", chunk_f32, chunk_f16, chunk_q8, chunk_q4, round_f16 };

const attn_kernels *attn_scalar(void) { return &SCALAR; }

const attn_kernels *attn_for(int64_t hd)
{
    const cpu_features *c = cpu_get();
    const attn_kernels *k = attn_avx512_kernels();
    if (k && hd % 16 == 0 && cpu_has_avx512_set(c)) return k;
    k = attn_avx2_kernels();
    if (k && hd % 8 == 0 && cpu_has_avx2_set(c)) return k;
    return &SCALAR;
}

/* ---- the fold ---------------------------------------------------------------------- */
void attn_part_init(float *acc, int64_t G, int64_t hd)
{
    for (int64_t h = 0; h < G; h++) {
        float *a = acc + h * ATTN_PART(hd);
        a[0] = -INFINITY;
        a[1] = 0.0f;
        memset(a + 2, 0, (size_t)hd * sizeof *a);
    }
}

void attn_merge(float *acc, const float *part, int64_t G, int64_t hd)
{
    for (int64_t h = 0; h < G; h++) {                 /* acc, part: [G][hd + 2] */
        float *a = acc + h * ATTN_PART(hd);
        const float *b = part + h * ATTN_PART(hd);
        const float mx = a[0] > b[0] ? a[0] : b[0];
        const float ea = expf(a[0] - mx), eb = expf(b[0] - mx);   /* e^(-inf) = 0 */
        a[0] = mx;
        a[1] = a[1] * ea + b[1] * eb;
        for (int64_t i = 0; i < hd; i++) a[2 + i] = a[2 + i] * ea + b[2 + i] * eb;
    }
}

void attn_finish(float *out, const float *acc, int64_t G, int64_t hd)
{
    for (int64_t h = 0; h < G; h++) {                 /* out: [G][hd] */
        const float *a = acc + h * ATTN_PART(hd);
        const float inv = 1.0f / a[1];
        for (int64_t i = 0; i < hd; i++) out[h * hd + i] = a[2 + i] * inv;
    }
}
