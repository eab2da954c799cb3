/* ops.c - see ops.h. */
#include "nn/ops.h"
#include "kern/quant.h"

#include <math.h>
#include <pthread.h>
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

void ops_rope_neox(float *x, const float *cs, int64_t n_heads, int64_t head_dim)
{
    const int64_t half = head_dim / 2;
    for (int64_t h = 0; h < n_heads; h++) {          /* x: [n_heads][head_dim] */
        float *xh = x + h * head_dim;
        for (int64_t i = 0; i < half; i++) {
            const float c = cs[2 * i], s = cs[2 * i + 1];
            const float a = xh[i], b = xh[i + half];
            xh[i] = a * c - b * s;
            xh[i + half] = a * s + b * c;
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

/* gelu_tanh of every f16 value, rounded to f16: built once (pthread_once), 128 KiB */
static uint16_t g_gelu_f16[1 << 16];
static pthread_once_t g_gelu_once = PTHREAD_ONCE_INIT;

static void gelu_table_init(void)
{
    const float c = 0.79788456080286535588f, a = 0.044715f;   /* sqrt(2/pi) */
    for (uint32_t i = 0; i < (1u << 16); i++) {
        const float x = fp16_to_f32((uint16_t)i);
        g_gelu_f16[i] = f32_to_fp16(0.5f * x * (1.0f + tanhf(c * x * (1.0f + a * x * x))));
    }
}

void ops_geglu_tanh(float *g, const float *u, int64_t n)
{
    pthread_once(&g_gelu_once, gelu_table_init);
    for (int64_t i = 0; i < n; i++) {                 /* g, u: [n] */
        const float x = g[i];
        g[i] = x <= -10.0f ? 0.0f : x >= 10.0f ? x * u[i] : fp16_to_f32(g_gelu_f16[f32_to_fp16(x)]) * u[i];
    }
}

_Static_assert(ATTN_BLOCK == KV_BLOCK_TOKENS, "attention blocks are cache blocks");
_Static_assert((int)ATTN_F32 == (int)KVLM_KV_F32 && (int)ATTN_F16 == (int)KVLM_KV_F16 &&
               (int)ATTN_BF16 == (int)KVLM_KV_BF16 && (int)ATTN_Q8 == (int)KVLM_KV_Q8 && (int)ATTN_Q4 == (int)KVLM_KV_Q4 &&
               (int)ATTN_KIVI4 == (int)KVLM_KV_KIVI4 && (int)ATTN_KIVI2 == (int)KVLM_KV_KIVI2,
               "kern's type ids are the API's");

void ops_attend_chunk(float *part, const float *q, const kv_seq *s, int64_t il, int64_t c,
                      int64_t kv_lo, int64_t n_kv, int64_t n_head, float scale, const attn_kernels *ak, float *scratch,
                      const float *stage, int64_t stage_pos0, float *tmp)
{
    const kv_pool *kp = s->pool;
    const kv_seq *ts = kv_seq_table(s, il);           /* the table of layer il (layer groups) */
    const int64_t slot = kv_seq_slot(s, il);
    const int64_t BT = KV_BLOCK_TOKENS, n_ch = kp->n_head_kv * kp->head_dim, G = n_head / kp->n_head_kv;
    const int64_t c0 = c * ATTN_CHUNK, j1 = n_kv - c0 < ATTN_CHUNK ? n_kv : c0 + ATTN_CHUNK;
    /* a window's first block (KIVI K: its span's, whose blocks hold the span's
       scales): read from there, its rows before kv_lo masked */
    const int64_t align = BT * kv_pool_span(kp);
    const int64_t j0 = kv_lo > c0 ? kv_lo / align * align : c0, skip = kv_lo > c0 ? kv_lo - j0 : 0;
    /* rows [j0, jr) from the pool, [jr, j1) in f32 from the stage (KIVI only) */
    const int64_t jr = kp->res_tokens > 0 && kv_seq_group_start(kp, n_kv - 1) < j1 ?
                       (kv_seq_group_start(kp, n_kv - 1) > j0 ? kv_seq_group_start(kp, n_kv - 1) : j0) : j1;
    const void *kb[ATTN_CHUNK / ATTN_BLOCK], *vb[ATTN_CHUNK / ATTN_BLOCK];
    if (jr > j0) {
        const int64_t b0 = j0 / BT, nb = (jr - j0 + BT - 1) / BT;
        for (int64_t b = 0; b < nb; b++) {            /* K [channels][16], V rows [16][channels] of each block */
            kb[b] = kv_pool_k(kp, ts->blocks[b0 + b], slot);
            vb[b] = kv_pool_v(kp, ts->blocks[b0 + b], slot, 0);
        }
        const attn_chunk ch = { kb, vb, (size_t)n_ch, jr - j0, kp->n_head_kv, (int)kp->type_k,
                                (int)kp->type_v, skip };   /* stride: V elements per row */
        attn_chunk_run(ak, part, q, G, kp->head_dim, scale, &ch, scratch);
    }
    if (jr < j1) {                                    /* jr is a group start: a multiple of 16 */
        const size_t bf = kv_seq_stage_block_floats(kp);
        const int64_t nb = (j1 - jr + BT - 1) / BT;
        for (int64_t b = 0; b < nb; b++) {
            const float *blk = stage + (size_t)((jr - stage_pos0) / BT + b) * bf;   /* K [n_ch][16], V [16][n_ch] */
            kb[b] = blk;
            vb[b] = blk + n_ch * BT;
        }
        const attn_chunk ch = { kb, vb, (size_t)n_ch, j1 - jr, kp->n_head_kv, ATTN_F32, ATTN_F32, 0 };
        float *out = jr > j0 ? tmp : part;
        attn_chunk_run(ak, out, q, G, kp->head_dim, scale, &ch, scratch);
        if (out == tmp) attn_merge(part, tmp, n_head, kp->head_dim);
    }
}
