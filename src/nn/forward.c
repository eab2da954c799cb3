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
 * Threads split output rows (matmuls, nn/linear) or tokens and chunks (attention, nn/attend). */
#include "nn/forward.h"
#include "nn/linear.h"
#include "nn/ops.h"
#include "core/err.h"
#include "kern/matmul.h"
#include "kern/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void forward_project(forward_state *fs, pool *p, const float *x, int64_t n_tok, const model_weight *const *w,
                    float *const *y, int n_w)
{
    linear_project(p, fs->xq, x, n_tok, w, y, n_w);
}

/* Attention of the batch's tokens over their own sequences, rows [0, pos + 1), or
 * for a sliding-window layer [pos + 1 - n_swa, pos + 1). */
static void attend(forward_state *fs, pool *p, const forward_seg *segs, int64_t il, int64_t n_tok)
{
    const model_hparams *hp = &fs->m->hp;
    const bool window = fs->m->layers[il].swa;
    for (int64_t t = 0; t < n_tok; t++) {
        const kv_seq *s = segs[fs->tok_seg[t]].s;
        fs->tok_seq[t] = s;
        fs->tok_nkv[t] = fs->tok_pos[t] + 1;
        fs->tok_kvlo[t] = window && fs->tok_pos[t] + 1 > hp->n_swa ? fs->tok_pos[t] + 1 - hp->n_swa : 0;
        if (fs->stage) {   /* KIVI: the stage starts at the group of the sequence's first new
                              position (n_pos is advanced only after the last layer) */
            fs->tok_stage[t] = fs->stage + fs->seg_stage[fs->tok_seg[t]];
            fs->tok_stage_pos0[t] = kv_seq_group_start(s->pool, s->n_pos);
        }
    }
    const attend_batch b = { .q = fs->q, .out = fs->att, .n_tok = n_tok, .il = il,
                             .scale = hp->q_scale, .ak = fs->ak,
                             .seq = fs->tok_seq, .n_kv = fs->tok_nkv, .kv_lo = window ? fs->tok_kvlo : NULL,
                             .stage = fs->stage ? fs->tok_stage : NULL,
                             .stage_pos0 = fs->stage ? fs->tok_stage_pos0 : NULL };
    attend_run(&fs->as, p, &b);
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
    size_t xqb = linear_xq_bytes(&m->output);
    for (int64_t il = 0; il < hp->n_layer; il++) {
        const model_layer *L = &m->layers[il];
        const model_weight *lw[] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down };
        for (size_t i = 0; i < sizeof lw / sizeof lw[0]; i++) {
            size_t b = linear_xq_bytes(lw[i]);
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
    fs->rope_swa = malloc(nb * (size_t)hp->head_dim * sizeof(float));
    fs->ak = attn_for(hp->head_dim);
    kvlm_err e = attend_init(&fs->as, hp->n_head, hp->n_head_kv, hp->head_dim, n_ctx, FORWARD_SPLIT_TOK, n_threads,
                             err, errlen);
    if (e) {
        forward_free(fs);
        return e;
    }
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
    fs->tok_seq = malloc(nb * sizeof *fs->tok_seq);
    fs->tok_nkv = malloc(nb * sizeof *fs->tok_nkv);
    fs->tok_kvlo = malloc(nb * sizeof *fs->tok_kvlo);
    fs->tok_stage = malloc(nb * sizeof *fs->tok_stage);
    fs->tok_stage_pos0 = malloc(nb * sizeof *fs->tok_stage_pos0);
    if (!fs->tok_seg || !fs->tok_pos || !fs->seg_stage || !fs->rows || !fs->tok_seq || !fs->tok_nkv || !fs->tok_kvlo ||
        !fs->tok_stage || !fs->tok_stage_pos0)
        fs->xq = (free(fs->xq), NULL);
    else for (size_t i = 0; i < nb; i++) fs->rows[i] = (int64_t)i;
    if (!fs->x || !fs->xb || !fs->q || !fs->k || !fs->v || !fs->att || !fs->hg || !fs->hu ||
        !fs->rope || !fs->rope_swa || !fs->xq) {
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
    free(fs->rope_swa);
    attend_free(&fs->as);
    free(fs->xq);
    free(fs->stage);
    free(fs->tok_seg);
    free(fs->tok_pos);
    free(fs->seg_stage);
    free(fs->rows);
    free(fs->tok_seq);
    free(fs->tok_nkv);
    free(fs->tok_kvlo);
    free(fs->tok_stage);
    free(fs->tok_stage_pos0);
    memset(fs, 0, sizeof *fs);
}

bool forward_rotates(kvlm_kv_type type, int64_t head_dim)
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

/* ---- the pieces every architecture's layer loop shares ------------------------ */
int64_t forward_batch_begin(forward_state *fs, const forward_seg *segs, int64_t n_seg)
{
    const kv_pool *kp = segs[0].s->pool;
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
    return n_tok;
}

void forward_embed(forward_state *fs, const kvlm_token *tokens, int64_t n_tok)
{
    const kvlm_model *m = fs->m;
    const int64_t D = m->hp.n_embd;
    const quant_traits *et = quant_get(m->tok_embd.type);
    for (int64_t t = 0; t < n_tok; t++) {              /* x: [n_tok][D] */
        const uint8_t *row = (const uint8_t *)m->tok_embd.data + (size_t)tokens[t] * m->tok_embd.row_bytes;
        et->to_float(row, fs->x + t * D, D);
        if (m->hp.embd_scale != 1.0f)
            for (int64_t i = 0; i < D; i++) fs->x[t * D + i] *= m->hp.embd_scale;
    }
}

void forward_attention(forward_state *fs, pool *p, const forward_seg *segs, int64_t n_seg, int64_t il, int64_t n_tok)
{
    const model_hparams *hp = &fs->m->hp;
    const int64_t hd = hp->head_dim, n_q = hp->n_head * hd, n_kv = hp->n_head_kv * hd;
    const kv_pool *kp = segs[0].s->pool;
    /* q with K, V with the output: each pair rotated when its cache part is quantized */
    const bool rot_k = forward_rotates(kp->type_k, hd), rot_v = forward_rotates(kp->type_v, hd);
    for (int64_t t = 0; t < n_tok; t++) {               /* q: [n_tok][n_head][hd], k, v: [n_tok][n_head_kv][hd] */
        if (rot_k) {                                  /* quantized K: q.k in the Hadamard basis */
            ops_hadamard(fs->q + t * n_q, hp->n_head, hd);
            ops_hadamard(fs->k + t * n_kv, hp->n_head_kv, hd);
        }
        if (rot_v) ops_hadamard(fs->v + t * n_kv, hp->n_head_kv, hd);   /* quantized V: p.v too */
        if (!kp->res_tokens) kv_seq_store(segs[fs->tok_seg[t]].s, il, fs->tok_pos[t], fs->k + t * n_kv, fs->v + t * n_kv);
    }
    if (kp->res_tokens)                               /* KIVI: per segment, its stage */
        for (int64_t g = 0, t0 = 0; g < n_seg; t0 += segs[g].n, g++)
            kv_seq_stage(segs[g].s, il, segs[g].s->n_pos, segs[g].n, fs->k + t0 * n_kv, fs->v + t0 * n_kv,
                         fs->stage + fs->seg_stage[g]);
    if (kp->type_k == KVLM_KV_F16)
        fs->ak->round_f16(fs->q, n_tok * n_q);       /* q.k on f16 operands, as llama.cpp does */
    attend(fs, p, segs, il, n_tok);
    if (rot_v) ops_hadamard(fs->att, n_tok * hp->n_head, hd);   /* back: H is its own inverse */
}

void forward_batch_end(forward_state *fs, pool *p, const forward_seg *segs, int64_t n_seg, const int64_t *out_rows,
                       int64_t n_out, float *logits)
{
    const kvlm_model *m = fs->m;
    const int64_t D = m->hp.n_embd;
    for (int64_t g = 0; g < n_seg; g++) kv_seq_advance(segs[g].s, segs[g].n);
    /* logits = rmsnorm(x) Wout^T for the rows asked for */
    for (int64_t r = 0; r < n_out; r++)
        ops_rmsnorm(fs->xb + r * D, fs->x + out_rows[r] * D, m->output_norm, D, m->hp.norm_eps);
    const model_weight *w[1] = { &m->output };
    float *y[1] = { logits };                         /* logits: [n_out][n_vocab] */
    forward_project(fs, p, fs->xb, n_out, w, y, 1);
}

/* ---- llama's layer loop ---------------------------------------------------------- */
void forward_run_batch(forward_state *fs, pool *p, const forward_seg *segs, int64_t n_seg,
                       const kvlm_token *tokens, const int64_t *out_rows, int64_t n_out, float *logits)
{
    const kvlm_model *m = fs->m;
    if (m->arch_id == MODEL_ARCH_GEMMA3) {
        forward_gemma3_batch(fs, p, segs, n_seg, tokens, out_rows, n_out, logits);
        return;
    }
    const model_hparams *hp = &m->hp;
    const int64_t D = hp->n_embd, hd = hp->head_dim;
    const int64_t n_q = hp->n_head * hd, n_kv = hp->n_head_kv * hd;

    const int64_t n_tok = forward_batch_begin(fs, segs, n_seg);
    forward_embed(fs, tokens, n_tok);
    for (int64_t t = 0; t < n_tok; t++) ops_rope_table(fs->rope + t * hd, fs->tok_pos[t], hd, hp->rope_theta);

    for (int64_t il = 0; il < hp->n_layer; il++) {
        const model_layer *L = &m->layers[il];

        /* attention block */
        for (int64_t t = 0; t < n_tok; t++) ops_rmsnorm(fs->xb + t * D, fs->x + t * D, L->attn_norm, D, hp->norm_eps);
        {
            const model_weight *w[3] = { &L->wq, &L->wk, &L->wv };
            float *y[3] = { fs->q, fs->k, fs->v };
            forward_project(fs, p, fs->xb, n_tok, w, y, 3);
        }
        for (int64_t t = 0; t < n_tok; t++) {       /* q: [n_tok][n_head][hd], k, v: [n_tok][n_head_kv][hd] */
            ops_rope(fs->q + t * n_q, fs->rope + t * hd, hp->n_head, hd);
            ops_rope(fs->k + t * n_kv, fs->rope + t * hd, hp->n_head_kv, hd);
        }
        forward_attention(fs, p, segs, n_seg, il, n_tok);
        {
            const model_weight *w[1] = { &L->wo };
            float *y[1] = { fs->xb };                 /* reuse xb: [n_tok][D] */
            forward_project(fs, p, fs->att, n_tok, w, y, 1);
        }
        for (int64_t i = 0; i < n_tok * D; i++) fs->x[i] += fs->xb[i];

        /* feed-forward block */
        for (int64_t t = 0; t < n_tok; t++) ops_rmsnorm(fs->xb + t * D, fs->x + t * D, L->ffn_norm, D, hp->norm_eps);
        {
            const model_weight *w[2] = { &L->w_gate, &L->w_up };
            float *y[2] = { fs->hg, fs->hu };
            forward_project(fs, p, fs->xb, n_tok, w, y, 2);
        }
        for (int64_t t = 0; t < n_tok; t++) ops_swiglu(fs->hg + t * hp->n_ff, fs->hu + t * hp->n_ff, hp->n_ff);
        {
            const model_weight *w[1] = { &L->w_down };
            float *y[1] = { fs->xb };
            forward_project(fs, p, fs->hg, n_tok, w, y, 1);
        }
        for (int64_t i = 0; i < n_tok * D; i++) fs->x[i] += fs->xb[i];
    }
    forward_batch_end(fs, p, segs, n_seg, out_rows, n_out, logits);
}
