/* matmul.c - see matmul.h. The generic path (any table, any type) and the choice of
 * a tiled kernel. Room: kern. */
#include "kern/matmul.h"

#include <string.h>

matmul_tiled_fn matmul_tiled_for(const quant_traits *qt)
{
    /* A tiled kernel is used only when the table's vec_dot is its 1 x 1 instance:
     * then both give bitwise the same outputs, and the table was filled only
     * because this CPU runs the ISA (quant_get_fast checks cpu_get()). */
    const matmul_isa_kernels *sets[2] = { matmul_avx512_kernels(), matmul_avx2_kernels() };
    for (int i = 0; i < 2; i++) {
        const matmul_isa_kernels *k = sets[i];
        if (!k) continue;
        if (qt->vec_dot == k->vec_dot_q4_1_q8_1) return k->matmul_q4_1_q8_1;
        if (qt->vec_dot == k->vec_dot_q8_0_q8_0) return k->matmul_q8_0_q8_0;
        if (qt->vec_dot == k->vec_dot_q5_0_q8_0) return k->matmul_q5_0_q8_0;
        if (qt->vec_dot == k->vec_dot_q4_K_q8_K) return k->matmul_q4_K_q8_K;
        if (qt->vec_dot == k->vec_dot_q5_K_q8_K) return k->matmul_q5_K_q8_K;
        if (qt->vec_dot == k->vec_dot_q6_K_q8_K) return k->matmul_q6_K_q8_K;
        if (qt->vec_dot == k->vec_dot_f16_f32) return k->matmul_f16_f32;
        if (qt->vec_dot == k->vec_dot_f32_f32) return k->matmul_f32_f32;
    }
    return NULL;
}

/* Rows of W are visited in tiles so a tile stays in L1/L2 while every token
 * of the batch passes over it: in prefill each weight byte is read once per
 * MATMUL_TILE_ROWS x n_tok products instead of once per product. */
enum { MATMUL_TILE_ROWS = 16 };

void matmul_rows(const quant_traits *qt, const void *W, size_t row_bytes,
                 int64_t r0, int64_t r1, const void *xq, size_t xq_bytes,
                 int64_t n_tok, int64_t n_in, float *y, int64_t ldy)
{
    if (r0 >= r1 || n_tok <= 0) return;
    matmul_tiled_fn tiled = matmul_tiled_for(qt);
    if (tiled) {
        tiled(W, row_bytes, r0, r1, xq, xq_bytes, n_tok, n_in, y, ldy);
        return;
    }
    const uint8_t *w8 = W;
    const uint8_t *x8 = xq;
    for (int64_t rt = r0; rt < r1; rt += MATMUL_TILE_ROWS) {
        int64_t re = rt + MATMUL_TILE_ROWS < r1 ? rt + MATMUL_TILE_ROWS : r1;
        for (int64_t t = 0; t < n_tok; t++) {          /* t: token of the batch */
            const void *xt = x8 + (size_t)t * xq_bytes;
            float *yt = y + t * ldy;
            for (int64_t r = rt; r < re; r++)           /* r: output row */
                yt[r] = qt->vec_dot(w8 + (size_t)r * row_bytes, xt, n_in);
        }
    }
}

void matmul_quantize_rows(const quant_traits *vdt, const float *x, int64_t n_in,
                          int64_t t0, int64_t t1, void *xq, size_t xq_bytes)
{
    uint8_t *q8 = xq;
    for (int64_t t = t0; t < t1; t++) {
        if (vdt->from_float)
            vdt->from_float(x + t * n_in, q8 + (size_t)t * xq_bytes, n_in);
        else
            memcpy(q8 + (size_t)t * xq_bytes, x + t * n_in, (size_t)n_in * sizeof(float));
    }
}
