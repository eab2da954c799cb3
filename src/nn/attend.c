/* attend.c - see attend.h. */
#include "nn/attend.h"
#include "nn/ops.h"
#include "core/err.h"

#include <stdlib.h>
#include <string.h>

static int64_t n_chunks(int64_t n_kv) { return (n_kv + ATTN_CHUNK - 1) / ATTN_CHUNK; }
/* the first chunk token t reads */
static int64_t first_chunk(const attend_batch *b, int64_t t) { return b->kv_lo ? b->kv_lo[t] / ATTN_CHUNK : 0; }

kvlm_err attend_init(attend_scratch *as, int64_t n_head, int64_t n_head_kv, int64_t head_dim, int64_t max_kv,
                     int64_t split_tok, int n_threads, char *err, size_t errlen)
{
    memset(as, 0, sizeof *as);
    as->n_head = n_head;
    as->n_head_kv = n_head_kv;
    as->head_dim = head_dim;
    as->split_tok = split_tok;
    as->n_chunk = n_chunks(max_kv);
    const size_t part = (size_t)(n_head * ATTN_PART(head_dim));
    as->tmp_floats = attn_scratch_floats(n_head, head_dim) + 3 * part;
    as->tmp_floats = (as->tmp_floats + 15) & ~(size_t)15;      /* keep each thread's share 64-byte aligned */
    as->tmp = aligned_alloc(64, (size_t)n_threads * as->tmp_floats * sizeof(float));
    as->parts = malloc((size_t)(split_tok > 0 ? split_tok : 1) * (size_t)as->n_chunk * part * sizeof(float));
    if (!as->tmp || !as->parts) {
        attend_free(as);
        return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory for attention scratch");
    }
    return KVLM_OK;
}

void attend_free(attend_scratch *as)
{
    if (!as) return;
    free(as->tmp);
    free(as->parts);
    memset(as, 0, sizeof *as);
}

typedef struct attn_job {
    const attend_scratch *as;
    const attend_batch *b;
    int64_t H;                /* query heads of this call */
} attn_job;

static float *tmp_at(const attend_scratch *as, int ith) { return as->tmp + (size_t)ith * as->tmp_floats; }

/* chunk c of token t into part (tmp: a spare part for a KIVI chunk's second half) */
static void attend_chunk(const attn_job *j, int64_t t, int64_t c, float *part, float *scratch, float *tmp)
{
    const attend_batch *b = j->b;
    const int64_t n_q = j->H * j->as->head_dim;
    ops_attend_chunk(part, b->q + t * n_q, b->seq[t], b->il, c, b->kv_lo ? b->kv_lo[t] : 0, b->n_kv[t], j->H, b->scale, b->ak, scratch,
                     b->stage ? b->stage[t] : NULL, b->stage_pos0 ? b->stage_pos0[t] : 0, tmp);
}

static void attn_tokens_task(void *arg, int ith, int nth)
{
    const attn_job *j = arg;
    const attend_scratch *as = j->as;
    const int64_t H = j->H, hd = as->head_dim, n_q = H * hd;
    float *scratch = tmp_at(as, ith);
    float *acc = scratch + attn_scratch_floats(H, hd), *part = acc + H * ATTN_PART(hd);
    float *tmp = part + H * ATTN_PART(hd);
    for (int64_t t = ith; t < j->b->n_tok; t += nth) {  /* acc, part, tmp: [H][ATTN_PART(hd)] */
        attn_part_init(acc, H, hd);
        for (int64_t c = first_chunk(j->b, t); c < n_chunks(j->b->n_kv[t]); c++) {
            attend_chunk(j, t, c, part, scratch, tmp);
            attn_merge(acc, part, H, hd);
        }
        attn_finish(j->b->out + t * n_q, acc, H, hd);
    }
}

/* parts of token t, chunk c: [H][ATTN_PART(hd)] */
static float *part_at(const attn_job *j, int64_t t, int64_t c)
{
    const attend_scratch *as = j->as;
    return as->parts + ((size_t)t * (size_t)as->n_chunk + (size_t)c) * (size_t)(j->H * ATTN_PART(as->head_dim));
}

static void attn_split_task(void *arg, int ith, int nth)
{
    const attn_job *j = arg;
    const attend_scratch *as = j->as;
    int64_t total = 0;
    for (int64_t t = 0; t < j->b->n_tok; t++) total += n_chunks(j->b->n_kv[t]) - first_chunk(j->b, t);
    int64_t u0, u1, u = 0;
    pool_split(total, ith, nth, &u0, &u1);
    float *scratch = tmp_at(as, ith), *tmp = scratch + attn_scratch_floats(j->H, as->head_dim);
    for (int64_t t = 0; t < j->b->n_tok; t++) {         /* unit u = (t, c), t-major */
        const int64_t nc = n_chunks(j->b->n_kv[t]);
        for (int64_t c = first_chunk(j->b, t); c < nc; c++, u++)
            if (u >= u0 && u < u1) attend_chunk(j, t, c, part_at(j, t, c), scratch, tmp);
    }
}

static void attn_fold_task(void *arg, int ith, int nth)
{
    const attn_job *j = arg;
    const attend_scratch *as = j->as;
    const int64_t hd = as->head_dim, n_q = j->H * hd, G = j->H / as->n_head_kv;
    float *acc = tmp_at(as, ith) + attn_scratch_floats(j->H, hd);   /* acc: [G][ATTN_PART(hd)] */
    int64_t w0, w1;
    pool_split(j->b->n_tok * as->n_head_kv, ith, nth, &w0, &w1);
    for (int64_t w = w0; w < w1; w++) {               /* w = t * n_head_kv + g */
        const int64_t t = w / as->n_head_kv, g = w % as->n_head_kv;
        attn_part_init(acc, G, hd);
        for (int64_t c = first_chunk(j->b, t); c < n_chunks(j->b->n_kv[t]); c++)
            attn_merge(acc, part_at(j, t, c) + g * G * ATTN_PART(hd), G, hd);
        attn_finish(j->b->out + t * n_q + g * G * hd, acc, G, hd);
    }
}

void attend_run(attend_scratch *as, pool *p, const attend_batch *b)
{
    attn_job aj = { as, b, b->n_head ? b->n_head : as->n_head };
    bool multi_chunk = false;
    for (int64_t t = 0; t < b->n_tok; t++) multi_chunk |= n_chunks(b->n_kv[t]) - first_chunk(b, t) > 1;
    if (b->n_tok <= as->split_tok && pool_size(p) > 1 && multi_chunk) {
        pool_run(p, attn_split_task, &aj);
        pool_run(p, attn_fold_task, &aj);
    } else {
        pool_run(p, attn_tokens_task, &aj);
    }
}
