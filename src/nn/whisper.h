/* whisper.h - Whisper's encoder and decoder forward passes, on the kernels and the
 * KV pool the llama forward pass uses (nn/linear, nn/attend, kv/kv_seq).
 * Room: nn. May touch: core (pool), kern, model (whisper_model), kv.
 *
 * Encoder, once per 30 s window:        mel [n_mels][3000] -> enc [1500][D]
 *   GELU(conv1, k 3, stride 1, pad 1) -> [3000][D]; GELU(conv2, k 3, stride 2, pad 1)
 *   -> [1500][D] (both as matmuls over im2col rows); + positional encodings;
 *   n_enc_layer pre-norm blocks (x += SA(LN(x)); x += FFN(LN(x))); final LN.
 * Cross K/V, once per window per decoder layer: enc W_kv^T + b -> K, V of the 1500
 *   positions of a cross sequence (a kv_seq of the decoder's pool: its blocks are
 *   reference-counted and shared read-only by every beam that forks it).
 * Decoder, per step, for a batch of tokens of several (self, cross) sequence pairs:
 *   x = E[tok] + P[pos]; per layer x += SelfAttn(LN(x)) over the self sequence
 *   (causal, K/V appended at pos), x += CrossAttn(LN(x)) over the cross sequence
 *   (all 1500 rows), x += FFN(LN(x)); logits = LN(x) E^T.
 * A token's results depend only on its own sequences and tokens (matmul rows and
 * attention queries are computed alone, nn/linear, nn/attend): the same bits alone,
 * batched or with any thread count. */
#ifndef KVLM_NN_WHISPER_H
#define KVLM_NN_WHISPER_H

#include <stdint.h>
#include "kvlm.h"
#include "core/pool.h"
#include "kv/kv_seq.h"
#include "model/whisper_model.h"
#include "nn/attend.h"

enum { WHISPER_N_FRAMES = 3000 };   /* mel frames of one window */
/* Decoder tokens that read one cross sequence (a window's beams, a prompt's tokens)
 * attend it together, up to this many: each cross K/V row is read once for all of
 * them (as GQA reads a K/V head once for its query heads). */
enum { WHISPER_CROSS_GROUP = 16 };
enum { WHISPER_ENC_ROWS = 42 };     /* encoder attention query rows per block (3 x the 14-row GEMM tile) */

typedef struct whisper_enc {
    const whisper_model *m;
    float *cols;      /* [3000][n_mels*3] conv1 im2col, then [1500][3D] conv2's */
    float *y1;        /* [3000][D] conv1 output */
    float *x, *h;     /* [1500][D] residual stream, normed input */
    float *qkv;       /* [1500][3D] */
    float *att;       /* [1500][D] */
    float *ff;        /* [1500][F] */
    float *scores;    /* [n_threads][WHISPER_ENC_ROWS][1500] a row block's scores, then probabilities */
    float *gemm_pack; /* [n_threads][pack_floats] one head's K_h^T and V_h packed for the GEMM, aligned */
    size_t pack_floats;
    uint8_t *xq;      /* [3000][xq_bytes] */
    size_t xq_bytes;
    float *sm_tmp;            /* [n_threads][ATTN_CHUNK + 16] softmax scratch, 64-byte aligned */
    /* f16/f32 models: every encoder matrix (conv1, conv2, then per layer QKV, out, fc1,
       fc2) widened to f32 and packed once for the GEMM (kern/gemm.h): the encoder's
       projections run as register-blocked GEMMs, faster than the weights' dot products
       at 1500 rows and as exact as CTranslate2's float32. NULL for Q8_0 weights (then
       nn/linear's int8 dot products). */
    float **packed;           /* [2 + 4 n_enc_layer + n_dec_layer]: then each decoder layer's
                                 cross K/V projection (whisper_cross_fill, once per window) */
    const attn_kernels *ak;   /* its vector softmax */
    /* seconds spent, summed over calls: convolutions, QKV + output projections,
       attention (scores, softmax, P V), feed-forward, norms and residual adds */
    double t_conv, t_proj, t_attn, t_ffn;
} whisper_enc;

kvlm_err whisper_enc_init(whisper_enc *e, const whisper_model *m, int n_threads, char *err, size_t errlen);
void     whisper_enc_free(whisper_enc *e);
/* mel: [n_mels][3000]; out: [1500][D] */
kvlm_err whisper_encode(whisper_enc *e, pool *p, const float *mel, float *out, char *err, size_t errlen);
/* (encoder attention runs as matmuls: S = Q K^T, softmax, P V, one head at a time) */

/* Projects enc [1500][D] into the cross K/V of every decoder layer and appends the
 * 1500 positions to cross (empty; KVLM_ERR_BUDGET if the pool is full: nothing kept).
 * xq: scratch of whisper_cross_xq_bytes; kv: [1500][2D] scratch. */
size_t   whisper_cross_xq_bytes(const whisper_model *m);
kvlm_err whisper_cross_fill(const whisper_enc *we, pool *p, const float *enc, kv_seq *cross, void *xq, float *kv,
                            char *err, size_t errlen);

typedef struct whisper_dec {
    const whisper_model *m;
    int64_t n_batch;
    float *x, *h;           /* [n_batch][D] */
    float *qkv;             /* [n_batch][3D] */
    float *q, *att;         /* [n_batch][D] */
    float *ff;              /* [n_batch][F] */
    uint8_t *xq;            /* [n_batch][xq_bytes] */
    size_t xq_bytes;
    attend_scratch as;
    const attn_kernels *ak;
    int32_t *tok_seg;       /* [n_batch] */
    int64_t *tok_pos;       /* [n_batch] */
    const kv_seq **tok_seq; /* [n_batch] */
    int64_t *tok_nkv;       /* [n_batch] */
    float *qg, *og;         /* [n_batch][D] cross queries and outputs regrouped: per group of G
                               tokens, [H][G][hd] (K/V head h's G query heads adjacent) */
    int64_t *grp_t0, *grp_n;/* [n_batch] each group's first token and size */
} whisper_dec;

/* One (self, cross) pair's share of a decoder batch: the next n tokens of self. */
typedef struct whisper_seg {
    kv_seq *self;
    const kv_seq *cross;    /* 1500 positions (whisper_cross_fill) */
    int64_t n;
} whisper_seg;

kvlm_err whisper_dec_init(whisper_dec *d, const whisper_model *m, int64_t n_batch, int n_threads, char *err,
                          size_t errlen);
void     whisper_dec_free(whisper_dec *d);
/* segs: [n_seg] distinct self sequences, each with its n positions reserved
 * (kv_seq_reserve) and self->n_pos + n <= n_text_ctx; tokens: [sum n] in segment
 * order (<= n_batch, ids < n_vocab); out_rows: [n_out] indexes into tokens whose
 * logits are written to logits: [n_out][n_vocab]. Checked by the caller. */
void whisper_decode(whisper_dec *d, pool *p, const whisper_seg *segs, int64_t n_seg, const kvlm_token *tokens,
                    const int64_t *out_rows, int64_t n_out, float *logits);

#endif
