/* attn.c - see attn.h: the scalar set (the specification), the fold of chunk
 * parts, and the choice of set. Room: kern. */
#include "kern/attn.h"
#include "kern/cpu.h"
#include "kern/quant.h"

#include <math.h>
#include <string.h>

/* V row j of a chunk: block j / ATTN_BLOCK, slot j % ATTN_BLOCK. */
static const void *row(const void *const *base, size_t stride, size_t elt, int64_t j)
{
    return (const uint8_t *)base[j / ATTN_BLOCK] + (size_t)(j % ATTN_BLOCK) * stride * elt;
}

/* K of row j, channel ch (of n_head_kv * hd), from the channel-major blocks */
static float kelem(const void *const *base, int64_t j, int64_t ch, int f16)
{
    const size_t at = (size_t)ch * ATTN_BLOCK + (size_t)(j % ATTN_BLOCK);
    return f16 ? fp16_to_f32(((const uint16_t *)base[j / ATTN_BLOCK])[at]) : ((const float *)base[j / ATTN_BLOCK])[at];
}

static float elem(const void *r, int64_t i, int f16)
{
    return f16 ? fp16_to_f32(((const uint16_t *)r)[i]) : ((const float *)r)[i];
}

static void chunk_ref(float *part, const float *q, int64_t G, int64_t hd, float scale,
                      const attn_chunk *c, float *scratch, int f16)
{
    const size_t elt = f16 ? 2 : 4;
    for (int64_t h = 0; h < c->n_head_kv * G; h++) {  /* part: [n_head][hd + 2], q: [n_head][hd] */
        const float *qh = q + h * hd;
        const int64_t hk = (h / G) * hd;              /* K/V head h / G inside a row */
        float *s = scratch;                           /* s: [n] */
        float m = -INFINITY;
        for (int64_t j = 0; j < c->n; j++) {
            float d = 0.0f;
            for (int64_t i = 0; i < hd; i++) d += qh[i] * kelem(c->k, j, hk + i, f16);
            s[j] = d * scale;
            if (s[j] > m) m = s[j];
        }
        float *ph = part + h * ATTN_PART(hd), *o = ph + 2;
        float l = 0.0f;
        memset(o, 0, (size_t)hd * sizeof *o);
        for (int64_t j = 0; j < c->n; j++) {
            float p = expf(s[j] - m);
            if (f16) p = fp16_to_f32(f32_to_fp16(p));
            l += p;
            const void *v = row(c->v, c->stride, elt, j);
            for (int64_t i = 0; i < hd; i++) o[i] += p * elem(v, hk + i, f16);
        }
        ph[0] = m;
        ph[1] = l;
    }
}

static void chunk_f32(float *part, const float *q, int64_t G, int64_t hd, float scale,
                      const attn_chunk *c, float *scratch)
{
    chunk_ref(part, q, G, hd, scale, c, scratch, 0);
}

static void chunk_f16(float *part, const float *q, int64_t G, int64_t hd, float scale,
                      const attn_chunk *c, float *scratch)
{
    chunk_ref(part, q, G, hd, scale, c, scratch, 1);
}

static void round_f16(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] = fp16_to_f32(f32_to_fp16(x[i]));
}

static const attn_kernels SCALAR = { "scalar", chunk_f32, chunk_f16, round_f16 };

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
