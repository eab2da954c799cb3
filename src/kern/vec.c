/* vec.c - see vec.h: the scalar set (the specification) and the choice. Room: kern. */
#include "kern/vec.h"
#include "kern/cpu.h"
#include "kern/quant.h"

static void qk_f32(float *scores, const float *q, const float *k, size_t stride, int64_t m, int64_t n)
{
    for (int64_t j = 0; j < m; j++) {                 /* k: [m][stride] */
        const float *r = k + (size_t)j * stride;
        float s = 0.0f;
        for (int64_t i = 0; i < n; i++) s += q[i] * r[i];
        scores[j] = s;
    }
}

static void qk_f16(float *scores, const float *q, const uint16_t *k, size_t stride, int64_t m, int64_t n)
{
    for (int64_t j = 0; j < m; j++) {
        const uint16_t *r = k + (size_t)j * stride;
        float s = 0.0f;
        for (int64_t i = 0; i < n; i++) s += q[i] * fp16_to_f32(r[i]);
        scores[j] = s;
    }
}

static void pv_f32(float *acc, const float *p, const float *v, size_t stride, int64_t m, int64_t n)
{
    for (int64_t j = 0; j < m; j++)                   /* v: [m][stride] */
        for (int64_t i = 0; i < n; i++) acc[i] += p[j] * v[(size_t)j * stride + (size_t)i];
}

static void pv_f16(float *acc, const float *p, const uint16_t *v, size_t stride, int64_t m, int64_t n)
{
    for (int64_t j = 0; j < m; j++)
        for (int64_t i = 0; i < n; i++) acc[i] += p[j] * fp16_to_f32(v[(size_t)j * stride + (size_t)i]);
}

static void round_f16(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] = fp16_to_f32(f32_to_fp16(x[i]));
}

static const vec_kernels SCALAR = { "scalar", qk_f32, qk_f16, pv_f32, pv_f16, round_f16 };

const vec_kernels *vec_scalar(void) { return &SCALAR; }

const vec_kernels *vec_for(int64_t n)
{
    const vec_kernels *k = vec_avx2_kernels();
    if (k && n % 8 == 0 && cpu_has_avx2_set(cpu_get())) return k;
    return &SCALAR;
}
