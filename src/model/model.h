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

#include <stdbool.h>
#include <stddef.h>
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

/* The architectures the forward pass knows (general.architecture). */
typedef enum model_arch { MODEL_ARCH_LLAMA = 0, MODEL_ARCH_GEMMA3 } model_arch;

typedef struct model_layer {
    const float *attn_norm;   /* [n_embd] */
    model_weight wq;          /* [n_head*head_dim rows][n_embd] */
    model_weight wk, wv;      /* [n_head_kv*head_dim rows][n_embd] */
    model_weight wo;          /* [n_embd rows][n_head*head_dim] */
    const float *ffn_norm;    /* [n_embd] */
    model_weight w_gate, w_up;/* [n_ff rows][n_embd] */
    model_weight w_down;      /* [n_embd rows][n_ff] */
    /* gemma3 only (NULL for llama): */
    const float *q_norm, *k_norm;           /* [head_dim] per-head RMSNorm of Q and K, before RoPE */
    const float *post_attn_norm, *post_ffn_norm;   /* [n_embd] on each block's output, before the residual add */
    bool swa;                 /* attends only the last n_swa positions (a sliding-window layer) */
    float rope_theta;         /* this layer's RoPE base */
} model_layer;

typedef struct model_hparams {
    int64_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train;
    float rope_theta, norm_eps;
    float rope_theta_swa;     /* RoPE base of the sliding-window layers (gemma3: 10,000) */
    int64_t n_swa;            /* sliding window in positions (a query sees itself and n_swa - 1 before), 0: none */
    int64_t n_layer_swa;      /* layers with swa set */
    float embd_scale;         /* token embeddings are multiplied by it (gemma3: sqrt(n_embd)), else 1 */
    float q_scale;            /* attention scale on q.k: 1/sqrt(head_dim) */
} model_hparams;

struct kvlm_model {
    model_arch arch_id;
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

/* ---- loading, shared by the architectures' files (model.c: llama, model_gemma3.c) ---- */
/* "<arch>.<suffix>" as an integer / float; absent -> def (an integer def < 0: required). */
kvlm_err model_get_int(const gguf_file *f, const char *arch, const char *suffix, int64_t def, int64_t *out,
                       char *err, size_t errlen);
kvlm_err model_get_float(const gguf_file *f, const char *arch, const char *suffix, double def, float *out,
                         char *err, size_t errlen);
/* A 2-D weight checked to be [n_in, n_out] of a type with a vec_dot kernel. */
kvlm_err model_load_matrix(const gguf_file *f, const char *name, int64_t n_in, int64_t n_out, model_weight *w,
                           char *err, size_t errlen);
/* A 1-D F32 vector of n elements. */
kvlm_err model_load_vector(const gguf_file *f, const char *name, int64_t n, const float **out, char *err,
                           size_t errlen);
/* gemma3 (model_gemma3.c): its hyper-parameters, then (after the caller has loaded the
 * tokenizer, n_vocab, the embedding and the output) its layers into m->layers. */
kvlm_err model_gemma3_hparams(const gguf_file *f, model_hparams *hp, char *err, size_t errlen);
kvlm_err model_gemma3_layers(kvlm_model *m, char *err, size_t errlen);
/* Checks the common hyper-parameter ranges (after an architecture filled hp). */
kvlm_err model_check_hparams(const gguf_file *f, const model_hparams *hp, char *err, size_t errlen);

#endif
