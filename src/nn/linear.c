/* linear.c - see linear.h. */
#include "nn/linear.h"
#include "kern/matmul.h"
#include "kern/quant.h"

size_t linear_xq_bytes(const model_weight *w)
{
    return quant_row_size(quant_get(w->type)->vec_dot_type, w->n_in);
}

typedef struct mm_job {
    const model_weight *w[3];
    float *y[3];              /* y[i]: [n_tok][w[i]->n_out] */
    int n_w;
    const void *xq;
    size_t xq_bytes;
    int64_t n_tok;
} mm_job;

static void mm_task(void *arg, int ith, int nth)
{
    const mm_job *j = arg;
    for (int i = 0; i < j->n_w; i++) {
        const model_weight *w = j->w[i];
        int64_t r0, r1;
        pool_split(w->n_out, ith, nth, &r0, &r1);
        matmul_rows(quant_get_fast(w->type), w->data, w->row_bytes, r0, r1, j->xq, j->xq_bytes,
                    j->n_tok, w->n_in, j->y[i], w->n_out);
    }
}

typedef struct quant_job {
    const quant_traits *vdt;
    const float *x;
    int64_t n_in, n_tok;
    void *xq;
    size_t xq_bytes;
} quant_job;

static void quant_task(void *arg, int ith, int nth)
{
    const quant_job *j = arg;
    int64_t t0, t1;
    pool_split(j->n_tok, ith, nth, &t0, &t1);
    matmul_quantize_rows(j->vdt, j->x, j->n_in, t0, t1, j->xq, j->xq_bytes);
}

/* y_i = x W_i^T for n_w weights sharing n_in and vec_dot_type.  x: [n_tok][n_in] */
static void matmul_multi(pool *p, void *xq, const float *x, int64_t n_tok, const model_weight *const *w,
                         float *const *y, int n_w)
{
    const uint32_t vt = quant_get(w[0]->type)->vec_dot_type;
    quant_job qj = { quant_get_fast(vt), x, w[0]->n_in, n_tok, xq, quant_row_size(vt, w[0]->n_in) };
    if (n_tok == 1) quant_task(&qj, 0, 1);
    else pool_run(p, quant_task, &qj);
    mm_job j = { .n_w = n_w, .xq = xq, .xq_bytes = qj.xq_bytes, .n_tok = n_tok };
    for (int i = 0; i < n_w; i++) {
        j.w[i] = w[i];
        j.y[i] = y[i];
    }
    pool_run(p, mm_task, &j);
}

static bool same_input_format(const model_weight *a, const model_weight *b)
{
    return a->n_in == b->n_in && quant_get(a->type)->vec_dot_type == quant_get(b->type)->vec_dot_type;
}

void linear_project(pool *p, void *xq, const float *x, int64_t n_tok, const model_weight *const *w,
                    float *const *y, int n_w)
{
    int start = 0;
    for (int i = 1; i <= n_w; i++) {
        if (i == n_w || !same_input_format(w[start], w[i])) {
            matmul_multi(p, xq, x, n_tok, w + start, y + start, i - start);
            start = i;
        }
    }
}

void linear_add_bias(float *y, const float *b, int64_t n_tok, int64_t n)
{
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t r = 0; r < n; r++) y[t * n + r] += b[r];
}
