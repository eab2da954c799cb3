/* model_gemma3.c - the gemma3 architecture's hyper-parameters and layer weights
 * (Gemma 3; the 270M file is the reference: ../shared/GEMMA3.md). See model.h.
 * Room: model. May touch: core, kern (type traits), model/gguf.
 *
 * What differs from llama, as llama.cpp 0.3.36 reads the same file:
 *   head_dim = attention.key_length (256, not n_embd / n_head = 160), equal to
 *   value_length; RoPE over all of it (NeoX pairs, nn/forward_gemma3.c);
 *   per-head RMSNorm of Q and K (attn_q_norm, attn_k_norm: [head_dim]) and an
 *   RMSNorm on each block's output (post_attention_norm, post_ffw_norm), the norm
 *   weights with Gemma's +1 already added by the converter (used as they are);
 *   sliding-window layers: attention.sliding_window (512) on every layer il with
 *   il % 6 < 5 (llama.cpp's set_swa_pattern(6); the file stores no pattern), RoPE
 *   base 10,000 on them (not stored either) and rope.freq_base (1e6) on the others;
 *   q scaled by 1/sqrt(head_dim) (f_attention_scale); the embedding multiplied by
 *   sqrt(n_embd); the output tied to token_embd. */
#include "model/model.h"
#include "core/err.h"

#include <math.h>
#include <stdio.h>

enum { GEMMA3_SWA_PERIOD = 6 };               /* layers il % 6 < 5 are local */
#define GEMMA3_ROPE_THETA_SWA 10000.0         /* llama.cpp's rope_freq_base_train_swa for GEMMA3 */

kvlm_err model_gemma3_hparams(const gguf_file *f, model_hparams *hp, char *err, size_t errlen)
{
    const char *a = "gemma3";
    int64_t kl, vl;
    kvlm_err e;
    if ((e = model_get_int(f, a, "embedding_length", -1, &hp->n_embd, err, errlen))) return e;
    if ((e = model_get_int(f, a, "block_count", -1, &hp->n_layer, err, errlen))) return e;
    if ((e = model_get_int(f, a, "attention.head_count", -1, &hp->n_head, err, errlen))) return e;
    if ((e = model_get_int(f, a, "attention.head_count_kv", hp->n_head, &hp->n_head_kv, err, errlen))) return e;
    if ((e = model_get_int(f, a, "feed_forward_length", -1, &hp->n_ff, err, errlen))) return e;
    if ((e = model_get_int(f, a, "context_length", 32768, &hp->n_ctx_train, err, errlen))) return e;
    if ((e = model_get_int(f, a, "attention.key_length", -1, &kl, err, errlen))) return e;
    if ((e = model_get_int(f, a, "attention.value_length", kl, &vl, err, errlen))) return e;
    if ((e = model_get_int(f, a, "attention.sliding_window", 0, &hp->n_swa, err, errlen))) return e;
    if ((e = model_get_float(f, a, "rope.freq_base", 1000000.0, &hp->rope_theta, err, errlen))) return e;
    if ((e = model_get_float(f, a, "rope.freq_base_swa", GEMMA3_ROPE_THETA_SWA, &hp->rope_theta_swa, err, errlen)))
        return e;
    if ((e = model_get_float(f, a, "attention.layer_norm_rms_epsilon", 1e-6, &hp->norm_eps, err, errlen))) return e;
    if ((e = model_check_hparams(f, hp, err, errlen))) return e;
    if (kl != vl || kl <= 0 || kl > 512 || kl % 2 != 0)
        return err_set(err, errlen, KVLM_ERR_UNSUPPORTED,
                       "%s: key length %lld and value length %lld must be equal, even and at most 512", f->path,
                       (long long)kl, (long long)vl);
    int64_t rope_dim;
    if ((e = model_get_int(f, a, "rope.dimension_count", kl, &rope_dim, err, errlen))) return e;
    if (rope_dim != kl)
        return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "%s: partial RoPE (%lld of %lld dims) is not supported",
                       f->path, (long long)rope_dim, (long long)kl);
    if (gguf_find_kv(f, "gemma3.attn_logit_softcapping") || gguf_find_kv(f, "gemma3.final_logit_softcapping"))
        return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "%s: logit softcapping is not supported (Gemma 2 style)",
                       f->path);
    if (gguf_find_kv(f, "gemma3.rope.scaling.type") || gguf_find_kv(f, "gemma3.rope.scaling.factor"))
        return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "%s: RoPE scaling is not supported", f->path);
    if (hp->n_swa < 0 || hp->n_swa > (1 << 24) || !(hp->rope_theta > 0) || !(hp->rope_theta_swa > 0) ||
        !(hp->norm_eps > 0))
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: sliding window, rope bases or norm epsilon out of range",
                       f->path);
    hp->head_dim = kl;
    hp->embd_scale = sqrtf((float)hp->n_embd);
    hp->q_scale = 1.0f / sqrtf((float)hp->head_dim);
    hp->n_layer_swa = 0;
    if (hp->n_swa > 0)
        for (int64_t il = 0; il < hp->n_layer; il++) hp->n_layer_swa += il % GEMMA3_SWA_PERIOD < GEMMA3_SWA_PERIOD - 1;
    return KVLM_OK;
}

kvlm_err model_gemma3_layers(kvlm_model *m, char *err, size_t errlen)
{
    const gguf_file *f = m->gguf;
    const model_hparams *hp = &m->hp;
    const int64_t D = hp->n_embd, hd = hp->head_dim, n_q = hp->n_head * hd, n_kv = hp->n_head_kv * hd;
    kvlm_err e;
    for (int64_t il = 0; il < hp->n_layer; il++) {
        model_layer *L = &m->layers[il];
        char name[96];
        L->swa = hp->n_swa > 0 && il % GEMMA3_SWA_PERIOD < GEMMA3_SWA_PERIOD - 1;
        L->rope_theta = L->swa ? hp->rope_theta_swa : hp->rope_theta;
#define T(suffix) (snprintf(name, sizeof name, "blk.%lld." suffix, (long long)il), name)
        if ((e = model_load_vector(f, T("attn_norm.weight"), D, &L->attn_norm, err, errlen))) return e;
        if ((e = model_load_matrix(f, T("attn_q.weight"), D, n_q, &L->wq, err, errlen))) return e;
        if ((e = model_load_matrix(f, T("attn_k.weight"), D, n_kv, &L->wk, err, errlen))) return e;
        if ((e = model_load_matrix(f, T("attn_v.weight"), D, n_kv, &L->wv, err, errlen))) return e;
        if ((e = model_load_vector(f, T("attn_q_norm.weight"), hd, &L->q_norm, err, errlen))) return e;
        if ((e = model_load_vector(f, T("attn_k_norm.weight"), hd, &L->k_norm, err, errlen))) return e;
        if ((e = model_load_matrix(f, T("attn_output.weight"), n_q, D, &L->wo, err, errlen))) return e;
        if ((e = model_load_vector(f, T("post_attention_norm.weight"), D, &L->post_attn_norm, err, errlen))) return e;
        if ((e = model_load_vector(f, T("ffn_norm.weight"), D, &L->ffn_norm, err, errlen))) return e;
        if ((e = model_load_matrix(f, T("ffn_gate.weight"), D, hp->n_ff, &L->w_gate, err, errlen))) return e;
        if ((e = model_load_matrix(f, T("ffn_up.weight"), D, hp->n_ff, &L->w_up, err, errlen))) return e;
        if ((e = model_load_matrix(f, T("ffn_down.weight"), hp->n_ff, D, &L->w_down, err, errlen))) return e;
        if ((e = model_load_vector(f, T("post_ffw_norm.weight"), D, &L->post_ffn_norm, err, errlen))) return e;
#undef T
    }
    return KVLM_OK;
}
