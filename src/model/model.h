/* model.h - a loaded model: hyper-parameters and per-layer weight views.
 * Room: model. May touch: core, kern (type traits), model/gguf, tok (the
 * tokenizer is built from the same file).
 * Weights are borrowed views into the mmap'd GGUF: valid while the model lives.
 * Every view is checked at load time (type supported, shape as the
 * hyper-parameters say), so the forward pass never validates again.
 *
 * Shape legend (as the forward pass uses them):
 *   n_embd   width of the residual stream (576 for SmolLM2-135M)
 *   n_head, n_head_kv, head_dim   query heads, K/V heads (GQA groups), per-head width
 *   n_ff     SwiGLU hidden width
 *   A weight of ne = [n_in, n_out] is stored as n_out rows of n_in elements. */
#ifndef KVLM_MODEL_MODEL_H
#define KVLM_MODEL_MODEL_H

#include <stdint.h>
#include "kvlm.h"
#include "model/gguf.h"
#include "tok/tokenizer.h"

typedef struct model_weight {
    const void *data;      /* n_rows rows of row_bytes each */
    uint32_t type;         /* ggml type id */
    int64_t n_in;          /* elements per row (ne[0]) */
    int64_t n_out;         /* rows (ne[1]) */
    size_t row_bytes;
} model_weight;

typedef struct model_layer {
    const float *attn_norm;   /* [n_embd] */
    model_weight wq;          /* [n_head*head_dim rows][n_embd] */
    model_weight wk, wv;      /* [n_head_kv*head_dim rows][n_embd] */
    model_weight wo;          /* [n_embd rows][n_head*head_dim] */
    const float *ffn_norm;    /* [n_embd] */
    model_weight w_gate, w_up;/* [n_ff rows][n_embd] */
    model_weight w_down;      /* [n_embd rows][n_ff] */
} model_layer;

typedef struct model_hparams {
    int64_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train;
    float rope_theta, norm_eps;
} model_hparams;

struct kvlm_model {
    gguf_file *gguf;
    tokenizer *tok;
    model_hparams hp;
    model_weight tok_embd;    /* [n_vocab rows][n_embd] */
    const float *output_norm; /* [n_embd] */
    model_weight output;      /* [n_vocab rows][n_embd]; = tok_embd when tied */
    model_layer *layers;      /* [n_layer] */
    char *chat_template;      /* NUL-terminated copy, or NULL */
    char arch[32];
    char name[128];
    int64_t n_params;
    uint64_t fingerprint;     /* XXH3 of the whole file: names these weights in prefix-cache keys */
};

#endif
