/* ops.c - see ops.h. */
#include "nn/ops.h"
#include "kern/quant.h"
#include "kern/vec.h"

#include <math.h>
#include <string.h>

void ops_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps)
{
    double ss = 0.0;   /* double: the sum of 576+ squares loses bits in float */
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const float scale = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

void ops_rope_table(float *cs, int64_t pos, int64_t head_dim, float theta)
{
    /* theta_i = pos * base^(-2i/d), built by repeated multiplication as
     * llama.cpp does, so both engines rotate by the same float angles. */
    const float step = powf(theta, -2.0f / (float)head_dim);
    float ang = (float)pos;
    for (int64_t i = 0; i < head_dim / 2; i++) {
        cs[2 * i] = cosf(ang);
        cs[2 * i + 1] = sinf(ang);
        ang *= step;
    }
}

void ops_rope(float *x, const float *cs, int64_t n_heads, int64_t head_dim)
{
    for (int64_t h = 0; h < n_heads; h++) {          /* x: [n_heads][head_dim] */
        float *xh = x + h * head_dim;
        for (int64_t i = 0; i < head_dim / 2; i++) {
            const float c = cs[2 * i], s = cs[2 * i + 1];
            const float a = xh[2 * i], b = xh[2 * i + 1];
            xh[2 * i] = a * c - b * s;
            xh[2 * i + 1] = a * s + b * c;
        }
    }
}

void ops_swiglu(float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void ops_attend(float *out, const float *q, const kv_seq *s, int64_t il, int64_t kvh,
                int64_t n_kv, float scale, float *scores)
{
    const kv_pool *kp = s->pool;
    const int64_t hd = kp->head_dim, B = KV_BLOCK_TOKENS;
    const size_t off = (size_t)kvh * (size_t)hd * kp->elt_bytes;   /* this head inside a row */
    const size_t stride = kp->row_bytes / kp->elt_bytes;            /* rows of a block, in elements */
    const bool f16 = kp->type == KVLM_KV_F16;
    const vec_kernels *vk = vec_for(hd);
    /* With an f16 cache both products run on f16 operands, as llama.cpp's f16
     * matmuls do: q is rounded to f16 for q.k, the probabilities for p.v. */
    float qr[512];                                    /* qr: [hd], hd <= 512 (model.c checks) */
    memcpy(qr, q, (size_t)hd * sizeof *qr);
    if (f16) vk->round_f16(qr, hd);
    for (int64_t j0 = 0; j0 < n_kv; j0 += B) {       /* scores: [n_kv], one block of rows at a time */
        const int64_t m = n_kv - j0 < B ? n_kv - j0 : B;
        const uint8_t *k = (const uint8_t *)kv_pool_k(kp, s->blocks[j0 / B], il, 0) + off;
        if (f16) vk->qk_f16(scores + j0, qr, (const uint16_t *)k, stride, m, hd);
        else vk->qk_f32(scores + j0, qr, (const float *)k, stride, m, hd);
    }
    float mx = -INFINITY;
    for (int64_t j = 0; j < n_kv; j++) {
        scores[j] *= scale;
        if (scores[j] > mx) mx = scores[j];
    }
    double sum = 0.0;
    for (int64_t j = 0; j < n_kv; j++) {
        scores[j] = expf(scores[j] - mx);
        sum += scores[j];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t j = 0; j < n_kv; j++) scores[j] *= inv;   /* probabilities */
    if (f16) vk->round_f16(scores, n_kv);
    memset(out, 0, (size_t)hd * sizeof(float));
    for (int64_t j0 = 0; j0 < n_kv; j0 += B) {
        const int64_t m = n_kv - j0 < B ? n_kv - j0 : B;
        const uint8_t *v = (const uint8_t *)kv_pool_v(kp, s->blocks[j0 / B], il, 0) + off;
        if (f16) vk->pv_f16(out, scores + j0, (const uint16_t *)v, stride, m, hd);
        else vk->pv_f32(out, scores + j0, (const float *)v, stride, m, hd);
    }
}
