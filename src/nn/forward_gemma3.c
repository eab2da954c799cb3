/* forward_gemma3.c - the gemma3 (Gemma 3) layer loop. See forward.h; the model's
 * facts are in model_gemma3.c and ../shared/GEMMA3.md.
 * Room: nn. May touch: core (pool), kern, model, kv, nn (ops, linear, attend).
 *
 * Per layer, for a batch of n_tok tokens at positions pos0 + t (all RMSNorms with
 * eps norm_eps and the file's weights, which include Gemma's +1):
 *   xb = rmsnorm(x) * attn_norm                                    xb: [n_tok][D]
 *   q = xb Wq^T [n_tok][n_head][hd], k = xb Wk^T, v = xb Wv^T [n_tok][n_head_kv][hd]
 *   q_h = rmsnorm(q_h) * q_norm, k_h = rmsnorm(k_h) * k_norm      (each head of hd)
 *   NeoX RoPE on q, k at the layer's base (10,000 window layers, 1e6 global ones)
 *   cache[il][pos0+t] = (k, v)
 *   att[t][h] = softmax(q_h . K / sqrt(hd)) V over rows [0, pos+1), or on a window
 *               layer [pos+1-n_swa, pos+1)                        (MQA: one K/V head)
 *   x += rmsnorm(att Wo^T) * post_attn_norm
 *   xb = rmsnorm(x) * ffn_norm
 *   x += rmsnorm((gelu_tanh(xb Wgate^T) * (xb Wup^T)) Wdown^T) * post_ffn_norm
 * then logits = rmsnorm(x) * output_norm . E^T (the tied embedding).
 * x starts as the embedding rows times sqrt(D). */
#include "nn/forward.h"
#include "nn/ops.h"

void forward_gemma3_batch(forward_state *fs, pool *p, const forward_seg *segs, int64_t n_seg,
                          const kvlm_token *tokens, const int64_t *out_rows, int64_t n_out, float *logits)
{
    const kvlm_model *m = fs->m;
    const model_hparams *hp = &m->hp;
    const int64_t D = hp->n_embd, hd = hp->head_dim, F = hp->n_ff;
    const int64_t n_q = hp->n_head * hd, n_kv = hp->n_head_kv * hd;
    const float eps = hp->norm_eps;

    const int64_t n_tok = forward_batch_begin(fs, segs, n_seg);
    forward_embed(fs, tokens, n_tok);
    for (int64_t t = 0; t < n_tok; t++) {            /* rope, rope_swa: [n_tok][hd/2][2] */
        ops_rope_table(fs->rope + t * hd, fs->tok_pos[t], hd, hp->rope_theta);
        ops_rope_table(fs->rope_swa + t * hd, fs->tok_pos[t], hd, hp->rope_theta_swa);
    }

    for (int64_t il = 0; il < hp->n_layer; il++) {
        const model_layer *L = &m->layers[il];
        const float *rope = L->swa ? fs->rope_swa : fs->rope;

        /* attention block */
        for (int64_t t = 0; t < n_tok; t++) ops_rmsnorm(fs->xb + t * D, fs->x + t * D, L->attn_norm, D, eps);
        {
            const model_weight *w[3] = { &L->wq, &L->wk, &L->wv };
            float *y[3] = { fs->q, fs->k, fs->v };
            forward_project(fs, p, fs->xb, n_tok, w, y, 3);
        }
        for (int64_t t = 0; t < n_tok; t++) {        /* q: [n_tok][n_head][hd], k: [n_tok][n_head_kv][hd] */
            for (int64_t h = 0; h < hp->n_head; h++) {
                float *qh = fs->q + t * n_q + h * hd;
                ops_rmsnorm(qh, qh, L->q_norm, hd, eps);
            }
            for (int64_t h = 0; h < hp->n_head_kv; h++) {
                float *kh = fs->k + t * n_kv + h * hd;
                ops_rmsnorm(kh, kh, L->k_norm, hd, eps);
            }
            ops_rope_neox(fs->q + t * n_q, rope + t * hd, hp->n_head, hd);
            ops_rope_neox(fs->k + t * n_kv, rope + t * hd, hp->n_head_kv, hd);
        }
        forward_attention(fs, p, segs, n_seg, il, n_tok);
        {
            const model_weight *w[1] = { &L->wo };
            float *y[1] = { fs->xb };                /* xb: [n_tok][D] */
            forward_project(fs, p, fs->att, n_tok, w, y, 1);
        }
        for (int64_t t = 0; t < n_tok; t++) {
            ops_rmsnorm(fs->xb + t * D, fs->xb + t * D, L->post_attn_norm, D, eps);
            for (int64_t i = 0; i < D; i++) fs->x[t * D + i] += fs->xb[t * D + i];
        }

        /* feed-forward block */
        for (int64_t t = 0; t < n_tok; t++) ops_rmsnorm(fs->xb + t * D, fs->x + t * D, L->ffn_norm, D, eps);
        {
            const model_weight *w[2] = { &L->w_gate, &L->w_up };
            float *y[2] = { fs->hg, fs->hu };        /* hg, hu: [n_tok][F] */
            forward_project(fs, p, fs->xb, n_tok, w, y, 2);
        }
        for (int64_t t = 0; t < n_tok; t++) ops_geglu_tanh(fs->hg + t * F, fs->hu + t * F, F);
        {
            const model_weight *w[1] = { &L->w_down };
            float *y[1] = { fs->xb };
            forward_project(fs, p, fs->hg, n_tok, w, y, 1);
        }
        for (int64_t t = 0; t < n_tok; t++) {
            ops_rmsnorm(fs->xb + t * D, fs->xb + t * D, L->post_ffn_norm, D, eps);
            for (int64_t i = 0; i < D; i++) fs->x[t * D + i] += fs->xb[t * D + i];
        }
    }
    forward_batch_end(fs, p, segs, n_seg, out_rows, n_out, logits);
}
