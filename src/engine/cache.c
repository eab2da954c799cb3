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
    size_t block = kv_pool_block_bytes(hp->n_layer, hp->n_head_kv, hp->head_dim, tk, tv);
    if (p.mem_bytes == 0) {
        /* one sequence of n_ctx positions, plus the blocks of a copy-on-write (KIVI K: a span) */
        int64_t n_ctx = p.n_ctx > 0 ? p.n_ctx : hp->n_ctx_train;
        int64_t n_blocks = (n_ctx + KV_BLOCK_TOKENS - 1) / KV_BLOCK_TOKENS + (kv_type_is_kivi(tk) ? KV_KIVI_SPAN : 1);
        p.mem_bytes = (size_t)n_blocks * block;
    }
    kvlm_cache *c = calloc(1, sizeof *c);
    if (!c) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory");
    kv_pool_params pp = { hp->n_layer, hp->n_head_kv, hp->head_dim, tk, tv, p.mem_bytes, p.poison, p.kv_residual };
    kvlm_err e = kv_pool_init(&c->pool, &pp, err, errlen);
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
