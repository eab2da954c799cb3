/* cache.h - the kvlm_cache handle: a kv_pool shared by contexts, with a reference
 * count and the model it was sized for. Private to src/engine/.
 * Room: engine. May touch: kv, model. The tiers' glue is cache_tiers.c. */
#ifndef KVLM_ENGINE_CACHE_H
#define KVLM_ENGINE_CACHE_H

#include <stdatomic.h>
#include "kv/kv_pool.h"
#include "kv/kv_seq.h"
#include "kv/kv_tiers.h"
#include "model/model.h"

struct kvlm_cache {
    kv_pool pool;
    const kvlm_model *m;
    int refs;              /* kvlm_cache_init's caller + one per context */
    kv_tiers *tiers;       /* disk / Redis below the pool (cache_tiers.c), or NULL */
    kvlm_cache_write write;
    size_t image_bytes;    /* kv_block_io_size(&pool) */
    atomic_int_fast64_t tier_loads;          /* blocks attached from a tier */
    _Atomic(void (*)(void *)) wake_fn;       /* cache_set_wake */
    _Atomic(void *) wake_user;
};

/* Creates a cache with one reference (the caller's). */
kvlm_err cache_create(const kvlm_model *m, const kvlm_cache_params *p, kvlm_cache **out, char *err,
                      size_t errlen);
void cache_ref(kvlm_cache *c);
/* The prefix-cache identity of the cache's blocks: the weights, the K/V types
 * and (KIVI) the residual group. */
uint64_t cache_fingerprint(const kvlm_cache *c);
void cache_unref(kvlm_cache *c);   /* frees at zero; NULL is fine */

/* ---- tiers (cache_tiers.c) ----------------------------------------------------------- */
/* Opens the tiers tp names (none: nothing happens). On failure none stays open. */
kvlm_err cache_tiers_open(kvlm_cache *c, const kvlm_tier_params *tp, char *err, size_t errlen);
/* Write-evict: writes every cached block still unwritten; then drains and closes. */
void cache_tiers_close(kvlm_cache *c);
/* fn(user) is called (on the tiers' loader thread) whenever a load progresses. */
void cache_set_wake(kvlm_cache *c, void (*fn)(void *user), void *user);
/* Write-through: queues s's published blocks [*from, n_published) not yet below,
 * and sets *from = n_published. Returns the ticket of the last one queued (0: none). */
int64_t cache_spill(kvlm_cache *c, const kv_seq *s, int64_t *from);
/* fn(user) once every write up to ticket is done: now, or later on the writer thread. */
kvlm_err cache_after(kvlm_cache *c, int64_t ticket, void (*fn)(void *user), void *user);
/* After kv_seq_attach_ram: attaches the following blocks of tokens[0, n) that the
 * tiers hold, asking synchronously. Returns the blocks attached. */
int64_t cache_load_sync(kvlm_cache *c, kv_seq *s, const kvlm_token *tokens, int64_t n);
/* The same, asynchronously: starts a load of the chain keys after s's blocks
 * (*keys: malloc'd [*n_keys], the caller frees them with the load). NULL: nothing
 * to ask (no tiers, no blocks left, no memory). */
kv_load *cache_load_start(kvlm_cache *c, const kv_seq *s, const kvlm_token *tokens, int64_t n, uint64_t **keys,
                          int64_t *n_keys);
/* Attaches what the load has fetched beyond *taken. Returns true when loading is
 * over for s (all fetched, a miss, a rejected image, a full pool): free the load. */
bool cache_load_poll(kvlm_cache *c, kv_load *l, const uint64_t *keys, int64_t *taken, kv_seq *s,
                     const kvlm_token *tokens, int64_t n);
/* Fills the tier fields of *out. */
void cache_tier_stats(const kvlm_cache *c, kvlm_cache_stats *out);

#endif
