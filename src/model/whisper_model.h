/* whisper_model.h - a loaded Whisper model (CTranslate2 WhisperSpec directory):
 * hyper-parameters, per-layer weights, decoding configuration and tokenizer.
 * Room: model. May touch: core, kern (type traits, conversion), model/ct2, tok
 * (tok_whisper), cJSON (config.json).
 *
 * Weights are copied at load out of the file (whose tensors are not aligned) into
 * one 64-byte-aligned arena, as model_weight rows of the chosen type:
 *   f16   as stored (a float32 file is rounded to f16);
 *   q8_0  every linear weight and the output projection converted to Q8_0
 *         (convolutions stay f16, as CTranslate2's int8 keeps them in float);
 *   f32   widened;
 *   auto  the encoder's f16 (run as f32 GEMMs by nn/whisper), the decoder's and the
 *         output projection Q8_0: the encoder is compute-bound and loses words when
 *         quantized, the decoder is memory-bound (README: Whisper weights).
 * Biases, norms and positional encodings are f32. The token embedding used for
 * lookups stays f16 in every mode (one row per token).
 *
 * Shapes (tiny.en: D 384, H 6, hd 64, F 1536, 4 + 4 layers, V 51864):
 *   conv1 [D][n_mels * 3]  conv2 [D][D * 3]   element (i, k) of a row at i * 3 + k
 *   enc_pos [n_audio_ctx][D]   dec_pos [n_text_ctx][D]
 *   encoder layer: attn_qkv [3D][D] (rows Q, K, V), attn_out [D][D], fc1 [F][D], fc2 [D][F]
 *   decoder layer: self_qkv [3D][D], self_out [D][D], cross_q [D][D], cross_kv [2D][D]
 *                  (rows K, V, projected from the encoder output), cross_out [D][D], fc1, fc2
 *   embed [V][D] (f16), proj [V][D] (tied: the same values) */
#ifndef KVLM_MODEL_WHISPER_MODEL_H
#define KVLM_MODEL_WHISPER_MODEL_H

#include <stdbool.h>
#include <stdint.h>
#include "kvlm.h"
#include "model/model.h"
#include "tok/tok_whisper.h"

typedef struct whisper_hparams {
    int64_t n_mels, n_audio_ctx, n_text_ctx, n_vocab, d_model, n_head, head_dim, n_ff;
    int64_t n_enc_layer, n_dec_layer;
    float ln_eps;
} whisper_hparams;

typedef struct whisper_ln { const float *g, *b; } whisper_ln;   /* [D] each */

typedef struct whisper_enc_layer {
    whisper_ln attn_ln;
    model_weight attn_qkv; const float *attn_qkv_b;   /* [3D] */
    model_weight attn_out; const float *attn_out_b;   /* [D] */
    whisper_ln ffn_ln;
    model_weight fc1; const float *fc1_b;             /* [F] */
    model_weight fc2; const float *fc2_b;             /* [D] */
} whisper_enc_layer;

typedef struct whisper_dec_layer {
    whisper_ln self_ln;
    model_weight self_qkv; const float *self_qkv_b;
    model_weight self_out; const float *self_out_b;
    whisper_ln cross_ln;
    model_weight cross_q; const float *cross_q_b;
    model_weight cross_kv; const float *cross_kv_b;   /* [2D] */
    model_weight cross_out; const float *cross_out_b;
    whisper_ln ffn_ln;
    model_weight fc1; const float *fc1_b;
    model_weight fc2; const float *fc2_b;
} whisper_dec_layer;

/* Decoding configuration from config.json. */
typedef struct whisper_config {
    kvlm_token *suppress_ids;        /* [n_suppress] disabled at every step */
    int64_t n_suppress;
    kvlm_token *suppress_ids_begin;  /* [n_suppress_begin] disabled at the first step */
    int64_t n_suppress_begin;
} whisper_config;

typedef struct whisper_model {
    whisper_hparams hp;
    kvlm_weight_type wtype;
    model_weight conv1, conv2; const float *conv1_b, *conv2_b;
    const float *enc_pos, *dec_pos;
    whisper_enc_layer *enc;           /* [n_enc_layer] */
    whisper_ln enc_ln;
    whisper_dec_layer *dec;           /* [n_dec_layer] */
    whisper_ln dec_ln;
    model_weight embed, proj;
    whisper_config cfg;
    tok_whisper *tok;
    const tok_whisper_specials *sp;
    void *arena;
    size_t arena_bytes;
    int64_t n_params;
    uint64_t fingerprint;             /* XXH3 of model.bin and the weight type */
    char name[64];
    char dir[512];
} whisper_model;

/* dir: a CTranslate2 Whisper directory. KVLM_ERR_UNSUPPORTED for an int8 or
 * multilingual model or another spec; KVLM_ERR_FORMAT for a missing or bad file. */
kvlm_err whisper_model_load(whisper_model **out, const char *dir, kvlm_weight_type wtype, char *err, size_t errlen);
void     whisper_model_free(whisper_model *m);   /* NULL is fine */

#endif
