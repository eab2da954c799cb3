/* model.c - kvlm_model_load: GGUF -> hyper-parameters, checked weight views,
 * tokenizer. See model.h. The llama architecture (and its GQA variants) is
 * here; gemma3's hyper-parameters and layers are in model_gemma3.c; anything
 * else is KVLM_ERR_UNSUPPORTED with its name. */
#include "model/model.h"
#include "core/err.h"
#include "kern/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* Copies a GGUF string view into a NUL-terminated buffer (truncating). */
static void str_copy(char *dst, size_t cap, gguf_str s)
{
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    memcpy(dst, s.ptr, n);
    dst[n] = '\0';
}

kvlm_err model_get_int(const gguf_file *f, const char *arch, const char *suffix,
                             int64_t def, int64_t *out, char *err, size_t errlen)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    kvlm_err e = gguf_get_int(f, key, out, err, errlen);
    if (e == KVLM_ERR_INVALID && def >= 0) {
        *out = def;
        return KVLM_OK;
    }
    if (e != KVLM_OK) return err_prefix(err, errlen, KVLM_ERR_FORMAT, "%s", f->path);
    return KVLM_OK;
}

kvlm_err model_get_float(const gguf_file *f, const char *arch, const char *suffix,
                               double def, float *out, char *err, size_t errlen)
{
    char key[128];
    double v;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    kvlm_err e = gguf_get_float(f, key, &v, err, errlen);
    if (e == KVLM_ERR_INVALID) v = def;
    else if (e != KVLM_OK) return err_prefix(err, errlen, KVLM_ERR_FORMAT, "%s", f->path);
    *out = (float)v;
    return KVLM_OK;
}

kvlm_err model_load_matrix(const gguf_file *f, const char *name, int64_t n_in, int64_t n_out,
                            model_weight *w, char *err, size_t errlen)
{
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: tensor '%s' is missing", f->path, name);
    if (t->n_dims != 2 || t->ne[0] != n_in || t->ne[1] != n_out)
        return err_set(err, errlen, KVLM_ERR_FORMAT,
                       "%s: tensor '%s' has shape [%lld, %lld] (%u dims), expected [%lld, %lld]",
                       f->path, name, (long long)t->ne[0], (long long)t->ne[1], t->n_dims,
                       (long long)n_in, (long long)n_out);
    const quant_traits *qt = quant_get(t->type);
    if (!qt || !qt->supported || !qt->vec_dot)
        return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "%s: tensor '%s' has unsupported type %s (%u)",
                       f->path, name, qt ? qt->name : "unknown", t->type);
    w->data = t->data;
    w->type = t->type;
    w->n_in = n_in;
    w->n_out = n_out;
    w->row_bytes = quant_row_size(t->type, n_in);
    return KVLM_OK;
}

kvlm_err model_load_vector(const gguf_file *f, const char *name, int64_t n, const float **out,
                            char *err, size_t errlen)
{
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: tensor '%s' is missing", f->path, name);
    if (t->n_dims != 1 || t->ne[0] != n || t->type != QT_F32)
        return err_set(err, errlen, KVLM_ERR_UNSUPPORTED,
                       "%s: tensor '%s' must be F32 [%lld] (got type %u, %u dims, ne0 %lld)",
                       f->path, name, (long long)n, t->type, t->n_dims, (long long)t->ne[0]);
    if (((uintptr_t)t->data & 3) != 0)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: tensor '%s' is not 4-byte aligned", f->path, name);
    *out = t->data;
    return KVLM_OK;
}

kvlm_err model_check_hparams(const gguf_file *f, const model_hparams *hp, char *err, size_t errlen)
{
    const int64_t lim = 1 << 20;
    if (hp->n_embd <= 0 || hp->n_embd > lim || hp->n_layer <= 0 || hp->n_layer > 4096 ||
        hp->n_head <= 0 || hp->n_head > 4096 || hp->n_head_kv <= 0 || hp->n_ff <= 0 || hp->n_ff > lim ||
        hp->n_ctx_train <= 0 || hp->n_ctx_train > (1 << 24))
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: hyper-parameters out of range", f->path);
    if (hp->n_head % hp->n_head_kv != 0)
        return err_set(err, errlen, KVLM_ERR_FORMAT,
                       "%s: n_head %lld is not a multiple of n_head_kv %lld", f->path,
                       (long long)hp->n_head, (long long)hp->n_head_kv);
    return KVLM_OK;
}

static kvlm_err load_hparams(const gguf_file *f, const char *arch, model_hparams *hp,
                             char *err, size_t errlen)
{
    kvlm_err e;
    if ((e = model_get_int(f, arch, "embedding_length", -1, &hp->n_embd, err, errlen))) return e;
    if ((e = model_get_int(f, arch, "block_count", -1, &hp->n_layer, err, errlen))) return e;
    if ((e = model_get_int(f, arch, "attention.head_count", -1, &hp->n_head, err, errlen))) return e;
    if ((e = model_get_int(f, arch, "attention.head_count_kv", hp->n_head, &hp->n_head_kv, err, errlen))) return e;
    if ((e = model_get_int(f, arch, "feed_forward_length", -1, &hp->n_ff, err, errlen))) return e;
    if ((e = model_get_int(f, arch, "context_length", 2048, &hp->n_ctx_train, err, errlen))) return e;
    if ((e = model_get_float(f, arch, "rope.freq_base", 10000.0, &hp->rope_theta, err, errlen))) return e;
    if ((e = model_get_float(f, arch, "attention.layer_norm_rms_epsilon", 1e-5, &hp->norm_eps, err, errlen)))
        return e;

    if ((e = model_check_hparams(f, hp, err, errlen))) return e;
    if (hp->n_embd % hp->n_head != 0)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: n_embd %lld is not a multiple of n_head %lld", f->path,
                       (long long)hp->n_embd, (long long)hp->n_head);
    hp->head_dim = hp->n_embd / hp->n_head;
    int64_t rope_dim;
    if ((e = model_get_int(f, arch, "rope.dimension_count", hp->head_dim, &rope_dim, err, errlen))) return e;
    if (hp->head_dim > 512)
        return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "%s: head dimension %lld > 512 is not supported",
                       f->path, (long long)hp->head_dim);
    if (rope_dim != hp->head_dim || hp->head_dim % 2 != 0)
        return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "%s: partial RoPE (%lld of %lld dims) is not supported",
                       f->path, (long long)rope_dim, (long long)hp->head_dim);
    if (!(hp->rope_theta > 0) || !(hp->norm_eps > 0))
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: rope theta and norm epsilon must be positive", f->path);
    hp->rope_theta_swa = hp->rope_theta;
    hp->embd_scale = 1.0f;
    hp->q_scale = 1.0f / sqrtf((float)hp->head_dim);
    return KVLM_OK;
}

static kvlm_err load_layers_llama(kvlm_model *m, char *err, size_t errlen)
{
    const gguf_file *f = m->gguf;
    const model_hparams *hp = &m->hp;
    const int64_t n_q = hp->n_head * hp->head_dim, n_kv = hp->n_head_kv * hp->head_dim;
    kvlm_err e;
    for (int64_t il = 0; il < hp->n_layer; il++) {
        model_layer *L = &m->layers[il];
        char name[96];
        L->rope_theta = hp->rope_theta;
#define T(suffix) (snprintf(name, sizeof name, "blk.%lld." suffix, (long long)il), name)
        if ((e = model_load_vector(f, T("attn_norm.weight"), hp->n_embd, &L->attn_norm, err, errlen))) return e;
        if ((e = model_load_matrix(f, T("attn_q.weight"), hp->n_embd, n_q, &L->wq, err, errlen))) return e;
        if ((e = model_load_matrix(f, T("attn_k.weight"), hp->n_embd, n_kv, &L->wk, err, errlen))) return e;
        if ((e = model_load_matrix(f, T("attn_v.weight"), hp->n_embd, n_kv, &L->wv, err, errlen))) return e;
        if ((e = model_load_matrix(f, T("attn_output.weight"), n_q, hp->n_embd, &L->wo, err, errlen))) return e;
        if ((e = model_load_vector(f, T("ffn_norm.weight"), hp->n_embd, &L->ffn_norm, err, errlen))) return e;
        if ((e = model_load_matrix(f, T("ffn_gate.weight"), hp->n_embd, hp->n_ff, &L->w_gate, err, errlen))) return e;
        if ((e = model_load_matrix(f, T("ffn_up.weight"), hp->n_embd, hp->n_ff, &L->w_up, err, errlen))) return e;
        if ((e = model_load_matrix(f, T("ffn_down.weight"), hp->n_ff, hp->n_embd, &L->w_down, err, errlen))) return e;
#undef T
    }
    return KVLM_OK;
}

kvlm_err kvlm_model_load(const char *path, kvlm_model **out, char *err, size_t errlen)
{
    kvlm_err e;
    *out = NULL;
    kvlm_model *m = calloc(1, sizeof *m);
    if (!m) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory");
    if ((e = gguf_open(path, &m->gguf, err, errlen))) goto fail;
    const gguf_file *f = m->gguf;

    gguf_str s;
    if ((e = gguf_get_str(f, "general.architecture", &s, err, errlen))) {
        e = err_prefix(err, errlen, KVLM_ERR_FORMAT, "%s", path);
        goto fail;
    }
    str_copy(m->arch, sizeof m->arch, s);
    if (strcmp(m->arch, "llama") == 0) m->arch_id = MODEL_ARCH_LLAMA;
    else if (strcmp(m->arch, "gemma3") == 0) m->arch_id = MODEL_ARCH_GEMMA3;
    else {
        e = err_set(err, errlen, KVLM_ERR_UNSUPPORTED,
                    "%s: architecture '%s' is not supported (llama and gemma3 are)", path, m->arch);
        goto fail;
    }
    if (gguf_get_str(f, "general.name", &s, NULL, 0) == KVLM_OK) str_copy(m->name, sizeof m->name, s);
    if (gguf_get_str(f, "tokenizer.chat_template", &s, NULL, 0) == KVLM_OK) {
        m->chat_template = malloc((size_t)s.len + 1);
        if (!m->chat_template) { e = err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory"); goto fail; }
        memcpy(m->chat_template, s.ptr, (size_t)s.len);
        m->chat_template[s.len] = '\0';
    }

    model_hparams *hp = &m->hp;
    if ((e = m->arch_id == MODEL_ARCH_GEMMA3 ? model_gemma3_hparams(f, hp, err, errlen)
                                             : load_hparams(f, m->arch, hp, err, errlen)))
        goto fail;
    if ((e = tokenizer_init_gguf(f, &m->tok, err, errlen))) goto fail;
    hp->n_vocab = tokenizer_n_vocab(m->tok);

    if ((e = model_load_matrix(f, "token_embd.weight", hp->n_embd, hp->n_vocab, &m->tok_embd, err, errlen))) goto fail;
    if ((e = model_load_vector(f, "output_norm.weight", hp->n_embd, &m->output_norm, err, errlen))) goto fail;
    if (gguf_find_tensor(f, "output.weight")) {
        if ((e = model_load_matrix(f, "output.weight", hp->n_embd, hp->n_vocab, &m->output, err, errlen))) goto fail;
    } else {
        m->output = m->tok_embd;   /* tied embeddings */
    }
    if (quant_get(m->tok_embd.type)->to_float == NULL) {
        e = err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "%s: token_embd.weight type cannot be dequantized", path);
        goto fail;
    }

    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) { e = err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory"); goto fail; }
    if ((e = m->arch_id == MODEL_ARCH_GEMMA3 ? model_gemma3_layers(m, err, errlen)
                                             : load_layers_llama(m, err, errlen)))
        goto fail;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        int64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) n *= t->ne[d];
        m->n_params += n;
    }
    /* ~5 ms for the default model (one read at memory speed); the weights are
     * read by the first forward pass anyway */
    m->fingerprint = XXH3_64bits(f->base, (size_t)f->size);
    *out = m;
    return KVLM_OK;
fail:
    kvlm_model_free(m);
    return e;
}

void kvlm_model_free(kvlm_model *m)
{
    if (!m) return;
    tokenizer_free(m->tok);
    gguf_close(m->gguf);
    free(m->layers);
    free(m->chat_template);
    free(m);
}

void kvlm_model_get_info(const kvlm_model *m, kvlm_model_info *out)
{
    const model_hparams *hp = &m->hp;
    memset(out, 0, sizeof *out);
    out->arch = m->arch;
    out->name = m->name;
    out->n_vocab = hp->n_vocab;
    out->n_embd = hp->n_embd;
    out->n_layer = hp->n_layer;
    out->n_head = hp->n_head;
    out->n_head_kv = hp->n_head_kv;
    out->head_dim = hp->head_dim;
    out->n_ff = hp->n_ff;
    out->n_ctx_train = hp->n_ctx_train;
    out->rope_theta = hp->rope_theta;
    out->norm_eps = hp->norm_eps;
    out->n_params = m->n_params;
    out->file_bytes = (int64_t)m->gguf->size;
    out->bos = tokenizer_bos(m->tok);
    out->eos = tokenizer_eos(m->tok);
    out->eot = tokenizer_eot(m->tok);
    out->n_swa = hp->n_swa;
    out->n_layer_swa = hp->n_layer_swa;
}
