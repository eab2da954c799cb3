/* cache.c - the kvlm_cache functions of include/kvlm.h. Room: engine. */
#include "engine/cache.h"

#include <stdlib.h>
#include <string.h>
#include "core/err.h"
#include "kern/attn.h"

kvlm_cache_params kvlm_cache_default_params(void)
{
    kvlm_cache_params p = { .mem_bytes = 0, .n_ctx = 0, .kv_type = KVLM_KV_F16, .kv_type_v = KVLM_KV_SAME,
                            .poison = false };
    return p;
}

int64_t kvlm_kv_bytes_per_token(const kvlm_model *m, kvlm_kv_type type)
{
    const model_hparams *hp = &m->hp;
    const int64_t n_ch = hp->n_head_kv * hp->head_dim;
    return hp->n_layer * (int64_t)(kv_type_part_bytes(type, n_ch, false) + kv_type_part_bytes(type, n_ch, true)) /
           KV_BLOCK_TOKENS;
}

int64_t kvlm_kv_bytes_sequence(const kvlm_model *m, kvlm_kv_type type, int64_t n_pos, bool window)
{
    const model_hparams *hp = &m->hp;
    const int64_t per_layer = (int64_t)kv_pool_block_bytes(1, hp->n_head_kv, hp->head_dim, type, type);
    if (per_layer <= 0 || n_pos < 0) return -1;
    const int64_t nb = (n_pos + KV_BLOCK_TOKENS - 1) / KV_BLOCK_TOKENS;
    if (!window || hp->n_swa <= 0) return hp->n_layer * nb * per_layer;
    const int64_t span = kv_type_is_kivi(type) ? KV_KIVI_SPAN : 1;   /* as kv_seq_slide lets go */
    const int64_t first = n_pos + 1 > hp->n_swa ? (n_pos + 1 - hp->n_swa) / KV_BLOCK_TOKENS / span * span : 0;
    return ((hp->n_layer - hp->n_layer_swa) * nb + hp->n_layer_swa * (nb - first)) * per_layer;
}

const char *kvlm_kv_type_name(kvlm_kv_type type)
{
    switch (type) {
    case KVLM_KV_F32: return "f32";
    case KVLM_KV_F16: return "f16";
    case KVLM_KV_Q8: return "q8";
    case KVLM_KV_Q4: return "q4";
    case KVLM_KV_BF16: return "bf16";
    case KVLM_KV_KIVI4: return "kivi4";
    case KVLM_KV_KIVI2: return "kivi2";
    case KVLM_KV_SAME: return "same";
    }
    return "?";
}

bool kvlm_kv_type_from_name(const char *name, kvlm_kv_type *out)
{
    static const kvlm_kv_type all[] = { KVLM_KV_F32, KVLM_KV_F16, KVLM_KV_BF16, KVLM_KV_Q8, KVLM_KV_Q4,
                                        KVLM_KV_KIVI4, KVLM_KV_KIVI2 };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (name && !strcmp(name, kvlm_kv_type_name(all[i]))) {
            *out = all[i];
            return true;
        }
    return false;
}

kvlm_err cache_create(const kvlm_model *m, const kvlm_cache_params *params, kvlm_cache **out, char *err,
                      size_t errlen)
{
    *out = NULL;
    kvlm_cache_params p = params ? *params : kvlm_cache_default_params();
    const model_hparams *hp = &m->hp;
    const kvlm_kv_type tk = p.kv_type, tv = p.kv_type_v == KVLM_KV_SAME ? p.kv_type : p.kv_type_v;
    const kvlm_kv_type both[2] = { tk, tv };
    for (int i = 0; i < 2; i++) {
        if (kv_type_bytes(both[i]) == 0)
            return err_set(err, errlen, KVLM_ERR_INVALID, "unknown %s type %d", i ? "V" : "K", (int)both[i]);
        if ((both[i] == KVLM_KV_Q8 || both[i] == KVLM_KV_Q4) && hp->head_dim % KV_Q8_GROUP)
            return err_set(err, errlen, KVLM_ERR_INVALID, "%s %s needs head_dim to be a multiple of %d (it is %lld)",
                           kvlm_kv_type_name(both[i]), i ? "V" : "K", KV_Q8_GROUP, (long long)hp->head_dim);
        if (kv_type_is_kivi(both[i]) && hp->head_dim % ATTN_KIVI_VGROUP)
            return err_set(err, errlen, KVLM_ERR_INVALID, "%s %s needs head_dim to be a multiple of %d (it is %lld)",
                           kvlm_kv_type_name(both[i]), i ? "V" : "K", ATTN_KIVI_VGROUP, (long long)hp->head_dim);
    }
    if (p.kv_residual == 0) p.kv_residual = KVLM_KV_RESIDUAL_DEFAULT;
    if (!kv_res_tokens_valid(p.kv_residual))
        return err_set(err, errlen, KVLM_ERR_INVALID, "KIVI residual of %lld positions: it must be 16, 32, 64, 128 or 256",
                       (long long)p.kv_residual);
    /* sliding-window layers: their own block tables (kv_pool.h, layer groups) */
    bool *win = hp->n_swa > 0 ? calloc((size_t)hp->n_layer, sizeof *win) : NULL;
    if (hp->n_swa > 0 && !win) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory");
    int64_t n_win = 0;
    for (int64_t il = 0; win && il < hp->n_layer; il++) n_win += win[il] = m->layers[il].swa;
    const int64_t L = kv_pool_layers_per_block(hp->n_layer, win);
    size_t block = L ? kv_pool_block_bytes(L, hp->n_head_kv, hp->head_dim, tk, tv) : 0;
    if (p.mem_bytes == 0 && L) {
        /* one sequence of n_ctx positions, plus the blocks of a copy-on-write (KIVI K: a
           span); a window table holds at most its window and one batch of 512 positions
           (the engine's largest step), as llama.cpp sizes its SWA cache */
        int64_t n_ctx = p.n_ctx > 0 ? p.n_ctx : hp->n_ctx_train;
        const int64_t per_tab = (n_ctx + KV_BLOCK_TOKENS - 1) / KV_BLOCK_TOKENS + (kv_type_is_kivi(tk) ? KV_KIVI_SPAN : 1);
        const int64_t per_win = (hp->n_swa + 512) / KV_BLOCK_TOKENS + 2 + (kv_type_is_kivi(tk) ? KV_KIVI_SPAN : 0);
        const int64_t n_tab_win = n_win / L, n_tab_full = hp->n_layer / L - n_tab_win;
        const int64_t n_blocks = n_tab_full * per_tab + n_tab_win * (per_win < per_tab ? per_win : per_tab);
        p.mem_bytes = (size_t)n_blocks * block;
    }
    kvlm_cache *c = calloc(1, sizeof *c);
    if (!c) {
        free(win);
        return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory");
    }
    kv_pool_params pp = { hp->n_layer, hp->n_head_kv, hp->head_dim, tk, tv, p.mem_bytes, p.poison, p.kv_residual,
                          win, hp->n_swa };
    kvlm_err e = kv_pool_init(&c->pool, &pp, err, errlen);
    free(win);
    if (e) {
        free(c);
        return e;
    }
    c->m = m;
    c->refs = 1;
    if ((e = cache_tiers_open(c, &p.tiers, err, errlen))) {
        kv_pool_free(&c->pool);
        free(c);
        return e;
    }
    *out = c;
    return KVLM_OK;
}

uint64_t cache_fingerprint(const kvlm_cache *c)
{
    const kv_pool *kp = &c->pool;
    /* KIVI: the residual group decides which positions were read in f32, so it changes K/V too */
    return c->m->fingerprint ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(kp->type_k * 8 + kp->type_v + 1)) ^
           ((uint64_t)kp->res_tokens << 40);
}

void cache_ref(kvlm_cache *c) { c->refs++; }

void cache_unref(kvlm_cache *c)
{
    if (!c || --c->refs > 0) return;
    cache_tiers_close(c);
    kv_pool_free(&c->pool);
    free(c);
}

kvlm_err kvlm_cache_init(const kvlm_model *m, const kvlm_cache_params *params, kvlm_cache **out, char *err,
                         size_t errlen)
{
    if (!m) return err_set(err, errlen, KVLM_ERR_INVALID, "no model");
    return cache_create(m, params, out, err, errlen);
}

void kvlm_cache_free(kvlm_cache *c) { cache_unref(c); }

void kvlm_cache_get_stats(const kvlm_cache *c, kvlm_cache_stats *out)
{
    kv_pool_stats s;
    kv_pool_get_stats(&c->pool, &s);
    *out = (kvlm_cache_stats){
        .block_tokens = KV_BLOCK_TOKENS, .n_blocks = s.n_blocks, .n_in_use = s.n_in_use,
        .n_cached = s.n_cached, .n_free = s.n_free, .lookups = s.lookups, .hits = s.hits,
        .evictions = s.evictions, .copies = s.copies, .bytes_total = s.n_blocks * s.block_bytes,
        .bytes_per_token = s.bytes_per_token, .bytes_per_token_layer = s.bytes_per_token_per_layer,
    };
    cache_tier_stats(c, out);
}
