/* whisper_model.c - see whisper_model.h.
 * Loading is two passes over the same table of tensors: the first checks every
 * shape and sums the arena's bytes, the second copies (and converts) into it. */
#include "model/whisper_model.h"
#include "model/ct2.h"
#include "core/err.h"
#include "kern/quant.h"

#include <cjson/cJSON.h>
#include <xxhash.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct loader {
    const ct2_file *f;
    whisper_model *m;
    uint8_t *arena;        /* NULL in the sizing pass */
    size_t used;
    char *err;
    size_t errlen;
    kvlm_err e;
} loader;

static void *bump(loader *L, size_t n)
{
    size_t at = (L->used + 63) & ~(size_t)63;
    L->used = at + n;
    return L->arena ? L->arena + at : NULL;
}

static float src_elem(const ct2_var *v, int64_t i)
{
    const uint8_t *p = (const uint8_t *)v->data;
    uint16_t h;
    float f;
    switch (v->dtype) {
    case CT2_F16: memcpy(&h, p + 2 * i, 2); return fp16_to_f32(h);
    case CT2_BF16: memcpy(&h, p + 2 * i, 2); return bf16_to_f32(h);
    case CT2_F32: memcpy(&f, p + 4 * i, 4); return f;
    default: return ct2_var_float(v, i);
    }
}

/* The variable `name` with the given rank and dims (dims[i] < 0: any, returned). */
static const ct2_var *want(loader *L, const char *name, uint32_t rank, int64_t *dims)
{
    if (L->e) return NULL;
    const ct2_var *v = ct2_find(L->f, name);
    if (!v) {
        L->e = err_set(L->err, L->errlen, KVLM_ERR_FORMAT, "%s: no variable %s", L->m->dir, name);
        return NULL;
    }
    if (v->dtype != CT2_F16 && v->dtype != CT2_F32 && v->dtype != CT2_BF16) {
        L->e = err_set(L->err, L->errlen, KVLM_ERR_UNSUPPORTED,
                       "%s: %s is %s: only float16/float32 Whisper models are supported (int8: convert with "
                       "--quantization float16)", L->m->dir, name, ct2_dtype_name(v->dtype));
        return NULL;
    }
    bool ok = v->rank == rank;
    for (uint32_t i = 0; ok && i < rank; i++) {
        if (dims[i] < 0) dims[i] = v->dims[i];
        else ok = v->dims[i] == dims[i];
    }
    if (!ok) {
        char got[96] = "", *g = got;
        for (uint32_t i = 0; i < v->rank && i < 4; i++)
            g += snprintf(g, (size_t)(got + sizeof got - g), "%s%lld", i ? "," : "", (long long)v->dims[i]);
        L->e = err_set(L->err, L->errlen, KVLM_ERR_FORMAT, "%s: %s has shape [%s], not the expected rank-%u shape",
                       L->m->dir, name, got, rank);
        return NULL;
    }
    return v;
}

/* An f32 copy of a vector or matrix of n elements. */
static const float *f32_of(loader *L, const char *name, int64_t n0, int64_t n1)
{
    int64_t dims[2] = { n0, n1 };
    const ct2_var *v = want(L, name, n1 ? 2 : 1, dims);
    if (!v) return NULL;
    float *dst = bump(L, (size_t)v->n_elem * sizeof(float));
    if (dst)
        for (int64_t i = 0; i < v->n_elem; i++) dst[i] = src_elem(v, i);
    return dst;
}

/* A weight of n_out rows x n_in (rank 2, or rank 3 [n_out][a][b] with n_in = a*b),
 * stored as type (QT_F16, QT_F32 or QT_Q8_0). */
static void weight_of(loader *L, model_weight *w, const char *name, int64_t n_out, int64_t n_in, uint32_t type,
                      int64_t k)
{
    int64_t dims[3] = { n_out, k ? n_in / k : n_in, k };
    const ct2_var *v = want(L, name, k ? 3 : 2, dims);
    if (!v) return;
    if (type == QT_Q8_0 && n_in % QK8_0) type = QT_F16;
    const size_t rb = quant_row_size(type, n_in);
    uint8_t *dst = bump(L, rb * (size_t)n_out);
    *w = (model_weight){ dst, type, n_in, n_out, rb };
    if (!dst) return;
    float *row = malloc((size_t)n_in * sizeof(float));
    if (!row) {
        L->e = err_set(L->err, L->errlen, KVLM_ERR_NOMEM, "out of memory converting %s", name);
        return;
    }
    for (int64_t r = 0; r < n_out; r++) {                /* row r: [n_in] */
        uint8_t *d = dst + (size_t)r * rb;
        if (type == QT_F16 && v->dtype == CT2_F16) {
            memcpy(d, (const uint8_t *)v->data + (size_t)r * (size_t)n_in * 2, (size_t)n_in * 2);
            continue;
        }
        for (int64_t i = 0; i < n_in; i++) row[i] = src_elem(v, r * n_in + i);
        if (type == QT_F32) memcpy(d, row, (size_t)n_in * sizeof(float));
        else if (type == QT_F16) for (int64_t i = 0; i < n_in; i++) ((uint16_t *)d)[i] = f32_to_fp16(row[i]);
        else quant_get_fast(type)->from_float(row, d, n_in);   /* bitwise the reference (quant.h) */
    }
    free(row);
}

static void ln_of(loader *L, whisper_ln *ln, const char *prefix, int64_t D)
{
    char name[160];
    snprintf(name, sizeof name, "%s/gamma", prefix);
    ln->g = f32_of(L, name, D, 0);
    snprintf(name, sizeof name, "%s/beta", prefix);
    ln->b = f32_of(L, name, D, 0);
}

/* prefix/weight [n_out][n_in] and prefix/bias [n_out] */
static void linear_of(loader *L, model_weight *w, const float **b, const char *prefix, int64_t n_out, int64_t n_in,
                      uint32_t type)
{
    char name[160];
    snprintf(name, sizeof name, "%s/weight", prefix);
    weight_of(L, w, name, n_out, n_in, type, 0);
    snprintf(name, sizeof name, "%s/bias", prefix);
    *b = f32_of(L, name, n_out, 0);
}

static void load_all(loader *L)
{
    whisper_model *m = L->m;
    const whisper_hparams *hp = &m->hp;
    const int64_t D = hp->d_model, F = hp->n_ff;
    /* auto: the encoder's matrices f16 (nn/whisper runs them as f32 GEMMs), the
       decoder's (read once per step: memory-bound) Q8_0 */
    const uint32_t lin = m->wtype == KVLM_WEIGHTS_Q8_0 ? QT_Q8_0 : m->wtype == KVLM_WEIGHTS_F32 ? QT_F32 : QT_F16;
    const uint32_t dlin = m->wtype == KVLM_WEIGHTS_AUTO ? QT_Q8_0 : lin;
    const uint32_t conv = m->wtype == KVLM_WEIGHTS_F32 ? QT_F32 : QT_F16;
    char p[128];
    weight_of(L, &m->conv1, "encoder/conv1/weight", D, hp->n_mels * 3, conv, 3);
    m->conv1_b = f32_of(L, "encoder/conv1/bias", D, 0);
    weight_of(L, &m->conv2, "encoder/conv2/weight", D, D * 3, conv, 3);
    m->conv2_b = f32_of(L, "encoder/conv2/bias", D, 0);
    m->enc_pos = f32_of(L, "encoder/position_encodings/encodings", hp->n_audio_ctx, D);
    for (int64_t il = 0; il < hp->n_enc_layer; il++) {
        whisper_enc_layer *E = &m->enc[il];
        snprintf(p, sizeof p, "encoder/layer_%lld/self_attention/layer_norm", (long long)il);
        ln_of(L, &E->attn_ln, p, D);
        snprintf(p, sizeof p, "encoder/layer_%lld/self_attention/linear_0", (long long)il);
        linear_of(L, &E->attn_qkv, &E->attn_qkv_b, p, 3 * D, D, lin);
        snprintf(p, sizeof p, "encoder/layer_%lld/self_attention/linear_1", (long long)il);
        linear_of(L, &E->attn_out, &E->attn_out_b, p, D, D, lin);
        snprintf(p, sizeof p, "encoder/layer_%lld/ffn/layer_norm", (long long)il);
        ln_of(L, &E->ffn_ln, p, D);
        snprintf(p, sizeof p, "encoder/layer_%lld/ffn/linear_0", (long long)il);
        linear_of(L, &E->fc1, &E->fc1_b, p, F, D, lin);
        snprintf(p, sizeof p, "encoder/layer_%lld/ffn/linear_1", (long long)il);
        linear_of(L, &E->fc2, &E->fc2_b, p, D, F, lin);
    }
    ln_of(L, &m->enc_ln, "encoder/layer_norm", D);
    m->dec_pos = f32_of(L, "decoder/position_encodings/encodings", hp->n_text_ctx, D);
    for (int64_t il = 0; il < hp->n_dec_layer; il++) {
        whisper_dec_layer *Y = &m->dec[il];
        snprintf(p, sizeof p, "decoder/layer_%lld/self_attention/layer_norm", (long long)il);
        ln_of(L, &Y->self_ln, p, D);
        snprintf(p, sizeof p, "decoder/layer_%lld/self_attention/linear_0", (long long)il);
        linear_of(L, &Y->self_qkv, &Y->self_qkv_b, p, 3 * D, D, dlin);
        snprintf(p, sizeof p, "decoder/layer_%lld/self_attention/linear_1", (long long)il);
        linear_of(L, &Y->self_out, &Y->self_out_b, p, D, D, dlin);
        snprintf(p, sizeof p, "decoder/layer_%lld/attention/layer_norm", (long long)il);
        ln_of(L, &Y->cross_ln, p, D);
        snprintf(p, sizeof p, "decoder/layer_%lld/attention/linear_0", (long long)il);
        linear_of(L, &Y->cross_q, &Y->cross_q_b, p, D, D, dlin);
        snprintf(p, sizeof p, "decoder/layer_%lld/attention/linear_1", (long long)il);
        linear_of(L, &Y->cross_kv, &Y->cross_kv_b, p, 2 * D, D, lin);   /* once per window: encoder side */
        snprintf(p, sizeof p, "decoder/layer_%lld/attention/linear_2", (long long)il);
        linear_of(L, &Y->cross_out, &Y->cross_out_b, p, D, D, dlin);
        snprintf(p, sizeof p, "decoder/layer_%lld/ffn/layer_norm", (long long)il);
        ln_of(L, &Y->ffn_ln, p, D);
        snprintf(p, sizeof p, "decoder/layer_%lld/ffn/linear_0", (long long)il);
        linear_of(L, &Y->fc1, &Y->fc1_b, p, F, D, dlin);
        snprintf(p, sizeof p, "decoder/layer_%lld/ffn/linear_1", (long long)il);
        linear_of(L, &Y->fc2, &Y->fc2_b, p, D, F, dlin);
    }
    ln_of(L, &m->dec_ln, "decoder/layer_norm", D);
    weight_of(L, &m->embed, "decoder/embeddings/weight", hp->n_vocab, D, QT_F16, 0);
    weight_of(L, &m->proj, "decoder/projection/weight", hp->n_vocab, D, dlin, 0);
}

/* Scalars that change the graph must have the values this implementation computes. */
static kvlm_err check_scalars(const ct2_file *f, const char *dir, char *err, size_t errlen)
{
    static const struct { const char *name; int64_t want; bool required; } rules[] = {
        { "decoder/activation", 3, false }, { "decoder/pre_norm", 1, false },
        { "decoder/scale_embeddings", 0, false }, { "decoder/alibi", 0, false },
        { "decoder/start_from_zero_embedding", 0, false },
    };
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        int64_t v;
        if (!ct2_get_int(f, rules[i].name, &v)) continue;
        if (v != rules[i].want)
            return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "%s: %s = %lld is not supported (expected %lld)", dir,
                           rules[i].name, (long long)v, (long long)rules[i].want);
    }
    return KVLM_OK;
}

static kvlm_err read_ids(const cJSON *arr, kvlm_token **out, int64_t *n, int64_t n_vocab, const char *path,
                         const char *key, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    if (!arr) return KVLM_OK;
    if (!cJSON_IsArray(arr)) return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: %s is not an array", path, key);
    const int sz = cJSON_GetArraySize(arr);
    if (sz > 0 && !(*out = malloc((size_t)sz * sizeof **out)))
        return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory reading %s", path);
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= (double)n_vocab ||
            it->valuedouble != (double)(int64_t)it->valuedouble) {
            free(*out);
            *out = NULL;
            *n = 0;
            return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: %s holds a value that is not a token id", path, key);
        }
        (*out)[(*n)++] = (kvlm_token)it->valuedouble;
    }
    return KVLM_OK;
}

/* config.json: suppress_ids and suppress_ids_begin (absent: none, and [220, eot]). */
static kvlm_err load_config(whisper_model *m, char *err, size_t errlen)
{
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", m->dir);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        m->cfg.suppress_ids_begin = malloc(2 * sizeof(kvlm_token));
        if (!m->cfg.suppress_ids_begin) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory");
        m->cfg.suppress_ids_begin[0] = 220;
        m->cfg.suppress_ids_begin[1] = m->sp->eot;
        m->cfg.n_suppress_begin = 2;
        return KVLM_OK;
    }
    char *buf = NULL;
    long len = -1;
    if (fseek(fp, 0, SEEK_END) == 0 && (len = ftell(fp)) >= 0 && len < (1 << 24) && fseek(fp, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)len + 1)) && fread(buf, 1, (size_t)len, fp) == (size_t)len)
        buf[len] = 0;
    else
        len = -1;
    fclose(fp);
    if (len < 0) {
        free(buf);
        return err_set(err, errlen, KVLM_ERR_IO, "%s: cannot read (or larger than 16 MB)", path);
    }
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: not a JSON object", path);
    }
    kvlm_err e = read_ids(cJSON_GetObjectItemCaseSensitive(j, "suppress_ids"), &m->cfg.suppress_ids,
                          &m->cfg.n_suppress, m->hp.n_vocab, path, "suppress_ids", err, errlen);
    if (!e)
        e = read_ids(cJSON_GetObjectItemCaseSensitive(j, "suppress_ids_begin"), &m->cfg.suppress_ids_begin,
                     &m->cfg.n_suppress_begin, m->hp.n_vocab, path, "suppress_ids_begin", err, errlen);
    cJSON_Delete(j);
    return e;
}

static int64_t count_layers(const ct2_file *f, const char *side)
{
    char name[128];
    int64_t n = 0;
    for (;; n++) {
        snprintf(name, sizeof name, "%s/layer_%lld/ffn/linear_0/weight", side, (long long)n);
        if (!ct2_find(f, name) || n > 256) return n;
    }
}

static kvlm_err read_hparams(whisper_model *m, const ct2_file *f, char *err, size_t errlen)
{
    whisper_hparams *hp = &m->hp;
    const ct2_var *emb = ct2_find(f, "decoder/embeddings/weight"), *c1 = ct2_find(f, "encoder/conv1/weight");
    const ct2_var *ep = ct2_find(f, "encoder/position_encodings/encodings");
    const ct2_var *dp = ct2_find(f, "decoder/position_encodings/encodings");
    const ct2_var *fc = ct2_find(f, "encoder/layer_0/ffn/linear_0/weight");
    if (!emb || !c1 || !ep || !dp || !fc || emb->rank != 2 || c1->rank != 3 || ep->rank != 2 || dp->rank != 2 ||
        fc->rank != 2)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: model.bin lacks Whisper's tensors (embeddings, conv1, "
                       "position encodings, ffn)", m->dir);
    hp->n_vocab = emb->dims[0];
    hp->d_model = emb->dims[1];
    hp->n_mels = c1->dims[1];
    hp->n_audio_ctx = ep->dims[0];
    hp->n_text_ctx = dp->dims[0];
    hp->n_ff = fc->dims[0];
    hp->n_enc_layer = count_layers(f, "encoder");
    hp->n_dec_layer = count_layers(f, "decoder");
    hp->ln_eps = 1e-5f;
    int64_t he = 0, hd = 0;
    if (!ct2_get_int(f, "encoder/num_heads", &he) || !ct2_get_int(f, "decoder/num_heads", &hd) || he != hd || he < 1 ||
        hp->d_model % he)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: encoder/num_heads and decoder/num_heads must be equal and "
                       "divide d_model %lld", m->dir, (long long)hp->d_model);
    hp->n_head = he;
    hp->head_dim = hp->d_model / he;
    if (hp->n_vocab >= 51865)
        return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "%s: a multilingual Whisper model (vocabulary %lld) is not "
                       "supported: only English-only (.en) models", m->dir, (long long)hp->n_vocab);
    if (hp->d_model < 1 || hp->d_model > 8192 || hp->n_ff < 1 || hp->n_ff > 65536 || hp->n_mels < 1 ||
        hp->n_mels > 512 || hp->n_audio_ctx != 1500 || hp->n_text_ctx < 8 || hp->n_text_ctx > 4096 ||
        hp->n_enc_layer < 1 || hp->n_dec_layer < 1 || hp->head_dim % 16 || hp->head_dim > 256)
        return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "%s: unsupported geometry (d_model %lld, heads %lld, ff %lld, "
                       "mels %lld, audio ctx %lld, text ctx %lld)", m->dir, (long long)hp->d_model,
                       (long long)hp->n_head, (long long)hp->n_ff, (long long)hp->n_mels, (long long)hp->n_audio_ctx,
                       (long long)hp->n_text_ctx);
    return KVLM_OK;
}

kvlm_err whisper_model_load(whisper_model **out, const char *dir, kvlm_weight_type wtype, char *err, size_t errlen)
{
    *out = NULL;
    whisper_model *m = calloc(1, sizeof *m);
    if (!m) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory");
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    m->wtype = wtype;
    char path[600];
    snprintf(path, sizeof path, "%s/model.bin", dir);
    ct2_file *f = NULL;
    kvlm_err e = ct2_open(path, &f, err, errlen);
    if (e) goto fail;
    if (f->version >= 2 && strcmp(f->spec_name, "WhisperSpec") != 0) {
        e = err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "%s: spec %s is not WhisperSpec", path, f->spec_name);
        goto fail;
    }
    for (int64_t i = 0; i < f->n_vars; i++) {
        const size_t ln = strlen(f->vars[i].name);
        if (ln > 6 && strcmp(f->vars[i].name + ln - 6, "_scale") == 0) {
            e = err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "%s: %s: an int8-quantized model is not supported (use a "
                        "float16 or float32 conversion)", path, f->vars[i].name);
            goto fail;
        }
        if (f->vars[i].rank > 0) m->n_params += f->vars[i].n_elem;
    }
    if ((e = check_scalars(f, path, err, errlen)) || (e = read_hparams(m, f, err, errlen))) goto fail;
    if ((e = tok_whisper_load(dir, &m->tok, err, errlen))) goto fail;
    m->sp = tok_whisper_get_specials(m->tok);
    if (tok_whisper_n_vocab(m->tok) != m->hp.n_vocab || m->sp->eot < 0 || m->sp->sot < 0 ||
        m->sp->notimestamps < 0 || m->sp->timestamp_begin < 0 || m->sp->nocaptions < 0 || m->sp->startofprev < 0) {
        e = err_set(err, errlen, KVLM_ERR_FORMAT, "%s/vocabulary.txt: %lld tokens for a model of %lld, or Whisper's "
                    "special tokens missing", dir, (long long)tok_whisper_n_vocab(m->tok), (long long)m->hp.n_vocab);
        goto fail;
    }
    if ((e = load_config(m, err, errlen))) goto fail;
    m->enc = calloc((size_t)m->hp.n_enc_layer, sizeof *m->enc);
    m->dec = calloc((size_t)m->hp.n_dec_layer, sizeof *m->dec);
    if (!m->enc || !m->dec) {
        e = err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    loader L = { .f = f, .m = m, .err = err, .errlen = errlen };
    load_all(&L);                                  /* pass 1: shapes and sizes */
    if ((e = L.e)) goto fail;
    m->arena_bytes = (L.used + 63) & ~(size_t)63;
    if (!(m->arena = aligned_alloc(64, m->arena_bytes))) {
        e = err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory for %zu bytes of weights", m->arena_bytes);
        goto fail;
    }
    L = (loader){ .f = f, .m = m, .arena = m->arena, .err = err, .errlen = errlen };
    load_all(&L);                                  /* pass 2: copy and convert */
    if ((e = L.e)) goto fail;
    m->fingerprint = XXH3_64bits_withSeed(f->base, (size_t)f->size, (uint64_t)m->wtype);
    const char *base = strrchr(dir, '/');
    base = base && base[1] ? base + 1 : dir;
    snprintf(m->name, sizeof m->name, "%s", base);
    ct2_close(f);
    *out = m;
    return KVLM_OK;
fail:
    ct2_close(f);
    whisper_model_free(m);
    return e;
}

void whisper_model_free(whisper_model *m)
{
    if (!m) return;
    free(m->arena);
    free(m->enc);
    free(m->dec);
    free(m->cfg.suppress_ids);
    free(m->cfg.suppress_ids_begin);
    tok_whisper_free(m->tok);
    free(m);
}
