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

void ops_hadamard(float *x, int64_t n_heads, int64_t head_dim)
{
    const float norm = 1.0f / sqrtf((float)head_dim);
    for (int64_t h = 0; h < n_heads; h++) {          /* x: [n_heads][head_dim] */
        float *xh = x + h * head_dim;
        for (int64_t len = 1; len < head_dim; len *= 2)
            for (int64_t i = 0; i < head_dim; i += 2 * len)
                for (int64_t j = i; j < i + len; j++) {
                    const float a = xh[j], b = xh[j + len];
                    xh[j] = a + b;
                    xh[j + len] = a - b;
                }
        for (int64_t i = 0; i < head_dim; i++) xh[i] *= norm;
    }
}

void ops_swiglu(float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

_Static_assert(ATTN_BLOCK == KV_BLOCK_TOKENS, "attention blocks are cache blocks");
_Static_assert((int)ATTN_F32 == (int)KVLM_KV_F32 && (int)ATTN_F16 == (int)KVLM_KV_F16 &&
               (int)ATTN_BF16 == (int)KVLM_KV_BF16 && (int)ATTN_Q8 == (int)KVLM_KV_Q8 && (int)ATTN_Q4 == (int)KVLM_KV_Q4,
               "kern's type ids are the API's");

void ops_attend_chunk(float *part, const float *q, const kv_seq *s, int64_t il, int64_t c,
                      int64_t n_kv, int64_t n_head, float scale, const attn_kernels *ak, float *scratch)
{
    const kv_pool *kp = s->pool;
    const int64_t j0 = c * ATTN_CHUNK, n = n_kv - j0 < ATTN_CHUNK ? n_kv - j0 : ATTN_CHUNK;
    const int64_t b0 = j0 / KV_BLOCK_TOKENS, nb = (n + KV_BLOCK_TOKENS - 1) / KV_BLOCK_TOKENS;
    const void *kb[ATTN_CHUNK / ATTN_BLOCK], *vb[ATTN_CHUNK / ATTN_BLOCK];
    for (int64_t b = 0; b < nb; b++) {               /* K [channels][16], V rows [16][channels] of each block */
        kb[b] = kv_pool_k(kp, s->blocks[b0 + b], il);
        vb[b] = kv_pool_v(kp, s->blocks[b0 + b], il, 0);
    }
    const attn_chunk ch = { kb, vb, (size_t)(kp->n_head_kv * kp->head_dim), n, kp->n_head_kv, (int)kp->type_k,
                            (int)kp->type_v };   /* stride: V elements per row */
    attn_chunk_run(ak, part, q, n_head / kp->n_head_kv, kp->head_dim, scale, &ch, scratch);
}
