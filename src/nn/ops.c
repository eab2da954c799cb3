/* ops.c - see ops.h. */
#include "nn/ops.h"
#include "kern/quant.h"

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

/* dot of q: [n] f32 with a cache row segment of the cache type */
static float dot_q_row(const float *q, const void *row, kvlm_kv_type type, int64_t n)
{
    float s = 0.0f;
    if (type == KVLM_KV_F32) {
        const float *k = row;
        for (int64_t i = 0; i < n; i++) s += q[i] * k[i];
    } else {
        const uint16_t *k = row;
        for (int64_t i = 0; i < n; i++) s += q[i] * fp16_to_f32(k[i]);
    }
    return s;
}

/* out[i] += p * v[i] for a cache row segment */
static void axpy_row(float *out, float p, const void *row, kvlm_kv_type type, int64_t n)
{
    if (type == KVLM_KV_F32) {
        const float *v = row;
        for (int64_t i = 0; i < n; i++) out[i] += p * v[i];
    } else {
        const uint16_t *v = row;
        for (int64_t i = 0; i < n; i++) out[i] += p * fp16_to_f32(v[i]);
    }
}

void ops_attend(float *out, const float *q, const kv_seq *s, int64_t il, int64_t kvh,
                int64_t n_kv, float scale, float *scores)
{
    const kv_pool *kp = s->pool;
    const int64_t hd = kp->head_dim;
    const size_t off = (size_t)kvh * (size_t)hd * kp->elt_bytes;
    const bool f16 = kp->type == KVLM_KV_F16;
    /* With an f16 cache both products run on f16 operands, as llama.cpp's f16
     * matmuls do: q is rounded to f16 for q.k, the probabilities for p.v. */
    float qr[512];                                    /* qr: [hd], hd <= 512 (model.c checks) */
    for (int64_t i = 0; i < hd; i++) qr[i] = f16 ? fp16_to_f32(f32_to_fp16(q[i])) : q[i];
    float mx = -INFINITY;
    for (int64_t j = 0; j < n_kv; j++) {              /* scores: [n_kv] */
        const uint8_t *k = (const uint8_t *)kv_seq_k_row(s, il, j) + off;
        scores[j] = dot_q_row(qr, k, kp->type, hd) * scale;
        if (scores[j] > mx) mx = scores[j];
    }
    double sum = 0.0;
    for (int64_t j = 0; j < n_kv; j++) {
        scores[j] = expf(scores[j] - mx);
        sum += scores[j];
    }
    const float inv = (float)(1.0 / sum);
    memset(out, 0, (size_t)hd * sizeof(float));
    for (int64_t j = 0; j < n_kv; j++) {
        const uint8_t *v = (const uint8_t *)kv_seq_v_row(s, il, j) + off;
        float p = scores[j] * inv;
        if (f16) p = fp16_to_f32(f32_to_fp16(p));
        axpy_row(out, p, v, kp->type, hd);
    }
}
