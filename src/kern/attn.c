/* attn.c - see attn.h: the scalar set (the specification), the fold of chunk
 * parts, and the choice of set. Room: kern. */
#include "kern/attn.h"
#include "kern/cpu.h"
#include "kern/quant.h"

#include <math.h>
#include <string.h>

size_t attn_part_bytes(int type, int64_t n_ch, int is_v)
{
    if (n_ch <= 0 || n_ch > ((int64_t)1 << 40)) return 0;
    const size_t n = (size_t)n_ch * ATTN_BLOCK, scales = (size_t)(n_ch / ATTN_Q8_GROUP) * ATTN_BLOCK * 2;
    switch (type) {
    case ATTN_F32: return 4 * n;
    case ATTN_F16: case ATTN_BF16: return 2 * n;
    case ATTN_Q8: return n_ch % ATTN_Q8_GROUP ? 0 : n + scales;
    case ATTN_Q4: return n_ch % ATTN_Q8_GROUP ? 0 : n / 2 + scales;
    case ATTN_KIVI4: case ATTN_KIVI2:
        if (n_ch % ATTN_KIVI_VGROUP) return 0;
        /* codes, then d and m: K a quarter of its span's channels, V per position and group of 64 */
        return n * (size_t)attn_kivi_bits(type) / 8 + (is_v ? ATTN_BLOCK * (size_t)(n_ch / ATTN_KIVI_VGROUP) * 4
                                                            : (size_t)(n_ch / ATTN_KIVI_SPAN) * 4);
    }
    return 0;
}

static float half(const void *b, size_t at, int t)
{
    const uint16_t h = ((const uint16_t *)b)[at];
    return t == ATTN_BF16 ? bf16_to_f32(h) : fp16_to_f32(h);
}

/* unsigned b-bit code k of a packed run (attn.h's KIVI packing: with per = 8 / b
 * codes per byte and span = run / per, code k sits in byte k % span at bits
 * b * (k / span)); run = 16 for a K channel, 32 for a V group */
static int kivi_code(const uint8_t *p, int bits, int run, int k)
{
    const int span = run * bits / 8;
    return (p[k % span] >> (bits * (k / span))) & ((1 << bits) - 1);
}

/* K of row j, channel ch (of n_ch), from the channel-major blocks */
static float kelem(const void *const *base, int64_t n_ch, int64_t j, int64_t ch, int t)
{
    const uint8_t *b = base[j / ATTN_BLOCK];
    const size_t slot = (size_t)(j % ATTN_BLOCK), at = (size_t)ch * ATTN_BLOCK + slot;
    if (t == ATTN_F32) return ((const float *)b)[at];
    if (t == ATTN_KIVI4 || t == ATTN_KIVI2) {         /* codes [n_ch][2 bits]; d, m of channel ch in block */
        const int bits = attn_kivi_bits(t);           /* ch / (n_ch / 4) of the span */
        const int64_t nq = n_ch / ATTN_KIVI_SPAN;
        const uint8_t *h = base[j / ATTN_BLOCK / ATTN_KIVI_SPAN * ATTN_KIVI_SPAN + ch / nq];
        const uint16_t *d = (const uint16_t *)(h + (size_t)n_ch * 2 * (size_t)bits), *m = d + nq;
        const int q = kivi_code(b + (size_t)ch * 2 * (size_t)bits, bits, ATTN_BLOCK, (int)slot);
        return fp16_to_f32(m[ch % nq]) + fp16_to_f32(d[ch % nq]) * (float)q;
    }
    if (t == ATTN_F16 || t == ATTN_BF16) return half(b, at, t);
    if (t == ATTN_Q4) {                               /* nibbles [n_ch][8]: slot s in byte s % 8, high if s >= 8 */
        const uint8_t byte = b[(size_t)ch * (ATTN_BLOCK / 2) + slot % 8];
        const int q = (slot < 8 ? byte & 15 : byte >> 4) - 8;
        const uint16_t *d = (const uint16_t *)(b + (size_t)n_ch * ATTN_BLOCK / 2);
        return fp16_to_f32(d[(size_t)(ch / ATTN_Q8_GROUP) * ATTN_BLOCK + slot]) * (float)q;
    }
    const uint16_t *d = (const uint16_t *)(b + (size_t)n_ch * ATTN_BLOCK);   /* [n_ch / 32][16] */
    return fp16_to_f32(d[(size_t)(ch / ATTN_Q8_GROUP) * ATTN_BLOCK + slot]) * (float)((const int8_t *)b)[at];
}

float attn_k_value(const void *const *k, int64_t n_ch, int64_t j, int64_t ch, int type)
{
    return kelem(k, n_ch, j, ch, type);
}

/* V of row j, channel ch, from the row-major blocks of stride elements (= n_ch for q8/q4) */
static float velem(const void *const *base, size_t stride, int64_t j, int64_t ch, int t)
{
    const uint8_t *b = base[j / ATTN_BLOCK];
    const size_t slot = (size_t)(j % ATTN_BLOCK), at = slot * stride + (size_t)ch;
    if (t == ATTN_F32) return ((const float *)b)[at];
    if (t == ATTN_F16 || t == ATTN_BF16) return half(b, at, t);
    if (t == ATTN_KIVI4 || t == ATTN_KIVI2) {         /* rows of codes [16][stride * bits / 8], d, m [16][stride / 64] */
        const int bits = attn_kivi_bits(t);
        const size_t row = stride * (size_t)bits / 8, ng = stride / ATTN_KIVI_VGROUP;
        const uint8_t *g32 = b + slot * row + (size_t)(ch / 32) * 4 * (size_t)bits;
        const uint16_t *d = (const uint16_t *)(b + ATTN_BLOCK * row), *m = d + ATTN_BLOCK * ng;
        const size_t gi = slot * ng + (size_t)ch / ATTN_KIVI_VGROUP;
        return fp16_to_f32(m[gi]) + fp16_to_f32(d[gi]) * (float)kivi_code(g32, bits, 32, (int)(ch % 32));
    }
    if (t == ATTN_Q4) {                               /* row: nibbles [n_ch / 2] */
        const size_t g = (size_t)ch / ATTN_Q8_GROUP, i = (size_t)ch % ATTN_Q8_GROUP;
        const uint8_t byte = b[slot * stride / 2 + g * ATTN_Q8_GROUP / 2 + i % 16];
        const int q = (i < 16 ? byte & 15 : byte >> 4) - 8;
        const uint16_t *d = (const uint16_t *)(b + stride * ATTN_BLOCK / 2);
        return fp16_to_f32(d[g * ATTN_BLOCK + slot]) * (float)q;
    }
    const uint16_t *d = (const uint16_t *)(b + stride * ATTN_BLOCK);        /* [n_ch / 32][16] */
    return fp16_to_f32(d[(size_t)(ch / ATTN_Q8_GROUP) * ATTN_BLOCK + slot]) * (float)((const int8_t *)b)[at];
}

/* ---- the scalar set: the specification -------------------------------------------- */
static void scores_ref(float *s, const float *q, int64_t G, int64_t hd, float scale, const attn_chunk *c, float *tmp)
{
    const int64_t n_ch = c->n_head_kv * hd;
    for (int64_t h = 0; h < c->n_head_kv * G; h++) {  /* s: [H][ATTN_CHUNK], q: [H][hd] */
        const int64_t off = (h / G) * hd;             /* K/V head h / G inside a row */
        for (int64_t j = 0; j < c->n; j++) {
            float d = 0.0f;
            for (int64_t i = 0; i < hd; i++) d += q[h * hd + i] * kelem(c->k, n_ch, j, off + i, c->type_k);
            s[h * ATTN_CHUNK + j] = d * scale;
        }
    }
}

static void softmax_ref(float *part, float *s, int64_t H, int64_t n, int64_t hd, int round_p)
{
    for (int64_t h = 0; h < H; h++) {                 /* part: [H][hd + 2] */
        float *sh = s + h * ATTN_CHUNK, *ph = part + h * ATTN_PART(hd);
        float m = -INFINITY, l = 0.0f;
        for (int64_t j = 0; j < n; j++) if (sh[j] > m) m = sh[j];
        for (int64_t j = 0; j < n; j++) {
            float p = expf(sh[j] - m);
            if (round_p) p = fp16_to_f32(f32_to_fp16(p));
            sh[j] = p;
            l += p;
        }
        ph[0] = m;
        ph[1] = l;
        memset(ph + 2, 0, (size_t)hd * sizeof *ph);
    }
}

static void pv_ref(float *part, const float *s, int64_t G, int64_t hd, const attn_chunk *c, float *tmp)
{
    for (int64_t h = 0; h < c->n_head_kv * G; h++) {
        const int64_t off = (h / G) * hd;
        float *o = part + h * ATTN_PART(hd) + 2;
        for (int64_t j = 0; j < c->n; j++)
            for (int64_t i = 0; i < hd; i++) o[i] += s[h * ATTN_CHUNK + j] * velem(c->v, c->stride, j, off + i, c->type_v);
    }
}

void attn_chunk_run(const attn_kernels *ak, float *part, const float *q, int64_t G, int64_t hd, float scale,
                    const attn_chunk *c, float *scratch)
{
    const attn_kernels *sc = attn_scalar();
    const int64_t H = c->n_head_kv * G;
    float *tmp = scratch + H * ATTN_CHUNK;            /* scratch: s [H][ATTN_CHUNK], then the kernels' room */
    attn_scores_fn scores = ak->scores[c->type_k] ? ak->scores[c->type_k] : sc->scores[c->type_k];
    attn_pv_fn pv = ak->pv[c->type_v] ? ak->pv[c->type_v] : sc->pv[c->type_v];
    scores(scratch, q, G, hd, scale, c, tmp);
    for (int64_t h = 0; h < H; h++)                   /* s: [H][ATTN_CHUNK] */
        for (int64_t j = 0; j < c->skip; j++) scratch[h * ATTN_CHUNK + j] = -INFINITY;
    ak->softmax(part, scratch, H, c->n, hd, c->type_v == ATTN_F16);
    pv(part, scratch, G, hd, c, tmp);
}

static void round_f16(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] = fp16_to_f32(f32_to_fp16(x[i]));
}

static const attn_kernels SCALAR = {
    "scalar",
    { scores_ref, scores_ref, scores_ref, scores_ref, scores_ref, scores_ref, scores_ref },
    softmax_ref,
    { pv_ref, pv_ref, pv_ref, pv_ref, pv_ref, pv_ref, pv_ref },
    round_f16,
};

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
