/* forward.c - the llama forward pass. See forward.h.
 *
 * Per layer, for a batch of n_tok tokens at positions pos0 + t:
 *   xb = rmsnorm(x) * attn_norm
 *   q = xb Wq^T, k = xb Wk^T, v = xb Wv^T      (one threaded pass, shared input)
 *   rope(q), rope(k); cache[il][pos0+t] = (k, v)
 *   att[t][h] = softmax(q[t][h] . K[0..pos0+t][h/group]) V[...]   (GQA)
 *   x += att Wo^T
 *   xb = rmsnorm(x) * ffn_norm
 *   hg = xb Wgate^T, hu = xb Wup^T;  hg = silu(hg) * hu
 *   x += hg Wdown^T
 * then logits = rmsnorm(x) * output_norm · Wout^T.
 * Threads split output rows (matmuls) or (token, head) pairs (attention). */
#include "nn/forward.h"
#include "nn/ops.h"
#include "core/err.h"
#include "kern/matmul.h"
#include "kern/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- threaded matmul: up to three weights that share one input ---------------- */
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

/* y_i = x W_i^T for the n_w weights (which must share n_in and vec_dot_type).
 * x: [n_tok][n_in] */
static void matmul_multi(forward_state *fs, pool *p, const float *x, int64_t n_tok,
                         const model_weight *const *w, float *const *y, int n_w)
{
    const uint32_t vt = quant_get(w[0]->type)->vec_dot_type;
    quant_job qj = { quant_get_fast(vt), x, w[0]->n_in, n_tok, fs->xq, quant_row_size(vt, w[0]->n_in) };
    if (n_tok == 1) quant_task(&qj, 0, 1);
    else pool_run(p, quant_task, &qj);
    mm_job j = { .n_w = n_w, .xq = fs->xq, .xq_bytes = qj.xq_bytes, .n_tok = n_tok };
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

/* Runs up to three projections of the same input, grouped when they can share
 * one quantized copy of it. */
static void project(forward_state *fs, pool *p, const float *x, int64_t n_tok,
                    const model_weight *const *w, float *const *y, int n_w)
{
    int start = 0;
    for (int i = 1; i <= n_w; i++) {
        if (i == n_w || !same_input_format(w[start], w[i])) {
            matmul_multi(fs, p, x, n_tok, w + start, y + start, i - start);
            start = i;
        }
    }
}

/* ---- threaded attention over the cache -----------------------------------------
 * Token t (position tok_pos[t] of the sequence of segment tok_seg[t]) attends
 * rows [0, tok_pos[t] + 1) of its sequence in chunks of ATTN_CHUNK rows; every
 * chunk's part is folded in chunk order (kern/attn.h).
 *   whole tokens: thread ith takes tokens ith, ith + nth, ... (costs grow with t,
 *                 so interleaving balances them) and folds parts as they come;
 *   split:        the (token, chunk) pairs are shared out, parts are stored in
 *                 fs->parts, and a second pass folds them per (token, K/V head). */
typedef struct attn_job {
    forward_state *fs;
    const forward_seg *segs;
    int64_t il, n_tok;
} attn_job;

static int64_t n_chunks(int64_t n_kv) { return (n_kv + ATTN_CHUNK - 1) / ATTN_CHUNK; }

static float *attn_tmp(const forward_state *fs, int ith) { return fs->attn_tmp + (size_t)ith * fs->attn_tmp_floats; }

/* chunk c of token t into part (tmp: a spare part for a KIVI chunk's second half) */
static void attend_chunk(const attn_job *j, int64_t t, int64_t c, float *part, float *scratch, float *tmp)
{
    const forward_state *fs = j->fs;
    const model_hparams *hp = &fs->m->hp;
    const int64_t n_q = hp->n_head * hp->head_dim, g = fs->tok_seg[t];
    const kv_seq *s = j->segs[g].s;
    const float scale = 1.0f / sqrtf((float)hp->head_dim);
    /* KIVI: the stage starts at the group of the sequence's first new position (n_pos
       is advanced only after the last layer) */
    const int64_t stage_pos0 = s->pool->res_tokens ? kv_seq_group_start(s->pool, s->n_pos) : 0;
    ops_attend_chunk(part, fs->q + t * n_q, s, j->il, c, fs->tok_pos[t] + 1, hp->n_head, scale, fs->ak, scratch,
                     fs->stage ? fs->stage + fs->seg_stage[g] : NULL, stage_pos0, tmp);
}

static void attn_tokens_task(void *arg, int ith, int nth)
{
    const attn_job *j = arg;
    const forward_state *fs = j->fs;
    const model_hparams *hp = &fs->m->hp;
    const int64_t hd = hp->head_dim, n_q = hp->n_head * hd;
    float *scratch = attn_tmp(fs, ith);
    float *acc = scratch + attn_scratch_floats(hp->n_head, hd), *part = acc + hp->n_head * ATTN_PART(hd);
    float *tmp = part + hp->n_head * ATTN_PART(hd);
    for (int64_t t = ith; t < j->n_tok; t += nth) {  /* acc, part, tmp: [n_head][ATTN_PART(hd)] */
        attn_part_init(acc, hp->n_head, hd);
        for (int64_t c = 0; c < n_chunks(fs->tok_pos[t] + 1); c++) {
            attend_chunk(j, t, c, part, scratch, tmp);
            attn_merge(acc, part, hp->n_head, hd);
        }
        attn_finish(fs->att + t * n_q, acc, hp->n_head, hd);
    }
}

/* parts of token t, chunk c: [n_head][ATTN_PART(hd)] */
static float *part_at(const forward_state *fs, int64_t t, int64_t c)
{
    const model_hparams *hp = &fs->m->hp;
    return fs->parts + ((size_t)t * (size_t)fs->n_chunk + (size_t)c) * (size_t)(hp->n_head * ATTN_PART(hp->head_dim));
}

static void attn_split_task(void *arg, int ith, int nth)
{
    const attn_job *j = arg;
    const forward_state *fs = j->fs;
    const model_hparams *hp = &fs->m->hp;
    int64_t total = 0;
    for (int64_t t = 0; t < j->n_tok; t++) total += n_chunks(fs->tok_pos[t] + 1);
    int64_t u0, u1, u = 0;
    pool_split(total, ith, nth, &u0, &u1);
    float *scratch = attn_tmp(fs, ith), *tmp = scratch + attn_scratch_floats(hp->n_head, hp->head_dim);
    for (int64_t t = 0; t < j->n_tok; t++) {         /* unit u = (t, c), t-major */
        const int64_t nc = n_chunks(fs->tok_pos[t] + 1);
        for (int64_t c = 0; c < nc; c++, u++)
            if (u >= u0 && u < u1) attend_chunk(j, t, c, part_at(fs, t, c), scratch, tmp);
    }
}

static void attn_fold_task(void *arg, int ith, int nth)
{
    const attn_job *j = arg;
    const forward_state *fs = j->fs;
    const model_hparams *hp = &fs->m->hp;
    const int64_t hd = hp->head_dim, n_q = hp->n_head * hd, G = hp->n_head / hp->n_head_kv;
    float *acc = attn_tmp(fs, ith) + attn_scratch_floats(hp->n_head, hd);   /* acc: [G][ATTN_PART(hd)] */
    int64_t w0, w1;
    pool_split(j->n_tok * hp->n_head_kv, ith, nth, &w0, &w1);
    for (int64_t w = w0; w < w1; w++) {               /* w = t * n_head_kv + g */
        const int64_t t = w / hp->n_head_kv, g = w % hp->n_head_kv;
        attn_part_init(acc, G, hd);
        for (int64_t c = 0; c < n_chunks(fs->tok_pos[t] + 1); c++)
            attn_merge(acc, part_at(fs, t, c) + g * G * ATTN_PART(hd), G, hd);
        attn_finish(fs->att + t * n_q + g * G * hd, acc, G, hd);
    }
}

static void attend(forward_state *fs, pool *p, const forward_seg *segs, int64_t il, int64_t n_tok)
{
    attn_job aj = { fs, segs, il, n_tok };
    bool multi_chunk = false;
    for (int64_t t = 0; t < n_tok; t++) multi_chunk |= n_chunks(fs->tok_pos[t] + 1) > 1;
    if (n_tok <= FORWARD_SPLIT_TOK && pool_size(p) > 1 && multi_chunk) {
        pool_run(p, attn_split_task, &aj);
        pool_run(p, attn_fold_task, &aj);
    } else {
        pool_run(p, attn_tokens_task, &aj);
    }
}

/* ---- init / free ------------------------------------------------------------------ */
kvlm_err forward_init(forward_state *fs, const kvlm_model *m, int64_t n_batch, int64_t n_ctx,
                      int n_threads, const kv_pool *kp, int64_t max_seg, char *err, size_t errlen)
{
    memset(fs, 0, sizeof *fs);
    const model_hparams *hp = &m->hp;
    if (n_batch < 1 || n_ctx < 1 || n_threads < 1 || max_seg < 1 || max_seg > n_batch)
        return err_set(err, errlen, KVLM_ERR_INVALID, "forward: batch, context, threads and sequences must be >= 1");
    fs->max_seg = max_seg;
    fs->m = m;
    fs->n_batch = n_batch;
    fs->n_ctx = n_ctx;
    fs->n_threads = n_threads;
    const int64_t n_q = hp->n_head * hp->head_dim, n_kv = hp->n_head_kv * hp->head_dim;
    /* the widest quantized activation row: every matrix's input (n_embd, n_q, n_ff) */
    size_t xqb = quant_row_size(quant_get(m->output.type)->vec_dot_type, m->output.n_in);
    for (int64_t il = 0; il < hp->n_layer; il++) {
        const model_layer *L = &m->layers[il];
        const model_weight *lw[] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down };
        for (size_t i = 0; i < sizeof lw / sizeof lw[0]; i++) {
            size_t b = quant_row_size(quant_get(lw[i]->type)->vec_dot_type, lw[i]->n_in);
            if (b > xqb) xqb = b;
        }
    }
    fs->xq_bytes = xqb;
    const size_t nb = (size_t)n_batch;
    fs->x = malloc(nb * (size_t)hp->n_embd * sizeof(float));
    fs->xb = malloc(nb * (size_t)hp->n_embd * sizeof(float));
    fs->q = malloc(nb * (size_t)n_q * sizeof(float));
    fs->k = malloc(nb * (size_t)n_kv * sizeof(float));
    fs->v = malloc(nb * (size_t)n_kv * sizeof(float));
    fs->att = malloc(nb * (size_t)n_q * sizeof(float));
    fs->hg = malloc(nb * (size_t)hp->n_ff * sizeof(float));
    fs->hu = malloc(nb * (size_t)hp->n_ff * sizeof(float));
    fs->rope = malloc(nb * (size_t)hp->head_dim * sizeof(float));
    fs->ak = attn_for(hp->head_dim);
    fs->n_chunk = (n_ctx + ATTN_CHUNK - 1) / ATTN_CHUNK;
    fs->attn_tmp_floats = attn_scratch_floats(hp->n_head, hp->head_dim) + 3 * (size_t)(hp->n_head * ATTN_PART(hp->head_dim));
    fs->attn_tmp_floats = (fs->attn_tmp_floats + 15) & ~(size_t)15;      /* keep each thread's share 64-byte aligned */
    fs->attn_tmp = aligned_alloc(64, (size_t)n_threads * fs->attn_tmp_floats * sizeof(float));
    fs->parts = malloc((size_t)FORWARD_SPLIT_TOK * (size_t)fs->n_chunk * (size_t)(hp->n_head * ATTN_PART(hp->head_dim)) * sizeof(float));
    fs->xq = malloc(nb * xqb);
    /* KIVI: each segment's stage holds its group's residual and its tokens, so
       max_seg stages of a one-token batch plus the tokens of the longest one */
    const size_t stage_floats = kp->res_tokens ? kv_seq_stage_floats(kp, n_batch) +
                                (size_t)(max_seg - 1) * kv_seq_stage_floats(kp, 1) : 0;
    if (stage_floats && !(fs->stage = malloc(stage_floats * sizeof(float)))) fs->xq = (free(fs->xq), NULL);
    fs->tok_seg = malloc(nb * sizeof *fs->tok_seg);
    fs->tok_pos = malloc(nb * sizeof *fs->tok_pos);
    fs->seg_stage = malloc((size_t)max_seg * sizeof *fs->seg_stage);
    fs->rows = malloc(nb * sizeof *fs->rows);
    if (!fs->tok_seg || !fs->tok_pos || !fs->seg_stage || !fs->rows) fs->xq = (free(fs->xq), NULL);
    else for (size_t i = 0; i < nb; i++) fs->rows[i] = (int64_t)i;
    if (!fs->x || !fs->xb || !fs->q || !fs->k || !fs->v || !fs->att || !fs->hg || !fs->hu ||
        !fs->rope || !fs->attn_tmp || !fs->parts || !fs->xq) {
        forward_free(fs);
        return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory for forward scratch (batch %lld)",
                       (long long)n_batch);
    }
    return KVLM_OK;
}

void forward_free(forward_state *fs)
{
    if (!fs) return;
    free(fs->x);
    free(fs->xb);
    free(fs->q);
    free(fs->k);
    free(fs->v);
    free(fs->att);
    free(fs->hg);
    free(fs->hu);
    free(fs->rope);
    free(fs->attn_tmp);
    free(fs->parts);
    free(fs->xq);
    free(fs->stage);
    free(fs->tok_seg);
    free(fs->tok_pos);
    free(fs->seg_stage);
    free(fs->rows);
    memset(fs, 0, sizeof *fs);
}

/* Whether the q.k (K type) or p.v (V type) of attention runs in the Hadamard basis
 * (ops_hadamard): quantized types, when head_dim is a power of two. */
static bool forward_rotates(kvlm_kv_type type, int64_t head_dim)
{
    return (type == KVLM_KV_Q8 || type == KVLM_KV_Q4) && head_dim > 0 && (head_dim & (head_dim - 1)) == 0;
}


/* ---- the layer loop -------------------------------------------------------------- */
void forward_run(forward_state *fs, pool *p, kv_seq *s, const kvlm_token *tokens,
                 int64_t n_tok, float *logits, bool all_logits)
{
    const forward_seg seg = { s, n_tok };
    if (all_logits) forward_run_batch(fs, p, &seg, 1, tokens, fs->rows, n_tok, logits);
    else forward_run_batch(fs, p, &seg, 1, tokens, fs->rows + n_tok - 1, 1, logits);
}

void forward_run_batch(forward_state *fs, pool *p, const forward_seg *segs, int64_t n_seg,
                       const kvlm_token *tokens, const int64_t *out_rows, int64_t n_out, float *logits)
{
    const kvlm_model *m = fs->m;
    const model_hparams *hp = &m->hp;
    const int64_t D = hp->n_embd, hd = hp->head_dim;
    const int64_t n_q = hp->n_head * hd, n_kv = hp->n_head_kv * hd;
    const kv_pool *kp = segs[0].s->pool;
    const quant_traits *et = quant_get(m->tok_embd.type);
    /* q with K, V with the output: each pair rotated when its cache part is quantized */
    const bool rot_k = forward_rotates(kp->type_k, hd), rot_v = forward_rotates(kp->type_v, hd);

    /* the batch's tokens: segment, position, and each segment's KIVI stage */
    int64_t n_tok = 0, stage_off = 0;
    for (int64_t g = 0; g < n_seg; g++) {
        const kv_seq *s = segs[g].s;
        for (int64_t i = 0; i < segs[g].n; i++, n_tok++) {
            fs->tok_seg[n_tok] = (int32_t)g;
            fs->tok_pos[n_tok] = s->n_pos + i;
        }
        fs->seg_stage[g] = stage_off;
        if (kp->res_tokens) stage_off += (int64_t)kv_seq_stage_floats(kp, segs[g].n);
    }

    /* x[t] = embedding row of tokens[t]                          x: [n_tok][D] */
    for (int64_t t = 0; t < n_tok; t++) {
        const uint8_t *row = (const uint8_t *)m->tok_embd.data + (size_t)tokens[t] * m->tok_embd.row_bytes;
        et->to_float(row, fs->x + t * D, D);
        ops_rope_table(fs->rope + t * hd, fs->tok_pos[t], hd, hp->rope_theta);
    }

    for (int64_t il = 0; il < hp->n_layer; il++) {
        const model_layer *L = &m->layers[il];

        /* attention block */
        for (int64_t t = 0; t < n_tok; t++) ops_rmsnorm(fs->xb + t * D, fs->x + t * D, L->attn_norm, D, hp->norm_eps);
        {
            const model_weight *w[3] = { &L->wq, &L->wk, &L->wv };
            float *y[3] = { fs->q, fs->k, fs->v };
            project(fs, p, fs->xb, n_tok, w, y, 3);
        }
        for (int64_t t = 0; t < n_tok; t++) {       /* q: [n_tok][n_head][hd], k, v: [n_tok][n_head_kv][hd] */
            ops_rope(fs->q + t * n_q, fs->rope + t * hd, hp->n_head, hd);
            ops_rope(fs->k + t * n_kv, fs->rope + t * hd, hp->n_head_kv, hd);
            if (rot_k) {                              /* quantized K: q.k in the Hadamard basis */
                ops_hadamard(fs->q + t * n_q, hp->n_head, hd);
                ops_hadamard(fs->k + t * n_kv, hp->n_head_kv, hd);
            }
            if (rot_v) ops_hadamard(fs->v + t * n_kv, hp->n_head_kv, hd);   /* quantized V: p.v too */
            if (!kp->res_tokens) kv_seq_store(segs[fs->tok_seg[t]].s, il, fs->tok_pos[t], fs->k + t * n_kv, fs->v + t * n_kv);
        }
        if (kp->res_tokens)                           /* KIVI: per segment, its stage */
            for (int64_t g = 0, t0 = 0; g < n_seg; t0 += segs[g].n, g++)
                kv_seq_stage(segs[g].s, il, segs[g].s->n_pos, segs[g].n, fs->k + t0 * n_kv, fs->v + t0 * n_kv,
                             fs->stage + fs->seg_stage[g]);
        if (kp->type_k == KVLM_KV_F16)
            fs->ak->round_f16(fs->q, n_tok * n_q);   /* q.k on f16 operands, as llama.cpp does */
        attend(fs, p, segs, il, n_tok);
        if (rot_v) ops_hadamard(fs->att, n_tok * hp->n_head, hd);   /* back: H is its own inverse */
        {
            const model_weight *w[1] = { &L->wo };
            float *y[1] = { fs->xb };                 /* reuse xb: [n_tok][D] */
            project(fs, p, fs->att, n_tok, w, y, 1);
        }
        for (int64_t i = 0; i < n_tok * D; i++) fs->x[i] += fs->xb[i];

        /* feed-forward block */
        for (int64_t t = 0; t < n_tok; t++) ops_rmsnorm(fs->xb + t * D, fs->x + t * D, L->ffn_norm, D, hp->norm_eps);
        {
            const model_weight *w[2] = { &L->w_gate, &L->w_up };
            float *y[2] = { fs->hg, fs->hu };
            project(fs, p, fs->xb, n_tok, w, y, 2);
        }
        for (int64_t t = 0; t < n_tok; t++) ops_swiglu(fs->hg + t * hp->n_ff, fs->hu + t * hp->n_ff, hp->n_ff);
        {
            const model_weight *w[1] = { &L->w_down };
            float *y[1] = { fs->xb };
            project(fs, p, fs->hg, n_tok, w, y, 1);
        }
        for (int64_t i = 0; i < n_tok * D; i++) fs->x[i] += fs->xb[i];
    }
    for (int64_t g = 0; g < n_seg; g++) kv_seq_advance(segs[g].s, segs[g].n);

    /* logits = rmsnorm(x) Wout^T for the rows asked for */
    for (int64_t r = 0; r < n_out; r++)
        ops_rmsnorm(fs->xb + r * D, fs->x + out_rows[r] * D, m->output_norm, D, hp->norm_eps);
    const model_weight *w[1] = { &m->output };
    float *y[1] = { logits };                         /* logits: [n_out][n_vocab] */
    project(fs, p, fs->xb, n_out, w, y, 1);
}
