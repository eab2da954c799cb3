/* cache.h - the kvlm_cache handle: a kv_pool shared by contexts, with a reference
 * count and the model it was sized for. Private to src/engine/.
 * Room: engine. May touch: kv, model. */
#ifndef KVLM_ENGINE_CACHE_H
#define KVLM_ENGINE_CACHE_H

#include "kv/kv_pool.h"
#include "model/model.h"

struct kvlm_cache {
    kv_pool pool;
    const kvlm_model *m;
    int refs;              /* kvlm_cache_init's caller + one per context */
};

/* Creates a cache with one reference (the caller's). */
kvlm_err cache_create(const kvlm_model *m, const kvlm_cache_params *p, kvlm_cache **out, char *err,
                      size_t errlen);
void cache_ref(kvlm_cache *c);
/* The prefix-cache identity of the cache's blocks: the weights, the K/V types
 * and (KIVI) the residual group. */
uint64_t cache_fingerprint(const kvlm_cache *c);
void cache_unref(kvlm_cache *c);   /* frees at zero; NULL is fine */

#endif
