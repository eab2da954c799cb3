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
/* Write-through: queues the published blocks of every table of s not yet below
 * ([n_below, n_published) of each, those not marked) and moves n_below to
 * n_published (every mode). Returns the ticket of the last one queued (0: none).
 * Called after kv_seq_publish and before kv_seq_slide. */
int64_t cache_spill(kvlm_cache *c, kv_seq *s);
/* fn(user) once every write up to ticket is done: now, or later on the writer thread. */
kvlm_err cache_after(kvlm_cache *c, int64_t ticket, void (*fn)(void *user), void *user);
/* After kv_seq_attach_ram, before kv_seq_attach_end: attaches what the tiers hold of
 * what s still wants for tokens[0, n) (kv_seq_next_wants), asking synchronously,
 * round after round. Returns the lowest block index attached from a tier
 * (INT64_MAX: none), so that the caller can tell what RAM alone gave. */
int64_t cache_load_sync(kvlm_cache *c, kv_seq *s, const kvlm_token *tokens, int64_t n);
/* The same, asynchronously, on the tiers' loader thread. cache_load_start starts the
 * first round (NULL: nothing to ask: no tiers, nothing wanted, no memory);
 * cache_load_poll attaches what has come and starts the next round when one is over.
 * It returns true when loading is over for s: free the load, then kv_seq_attach_end.
 * cache_load_free cancels a load still running; NULL is fine. */
typedef struct cache_load cache_load;
cache_load *cache_load_start(kvlm_cache *c, kv_seq *s, const kvlm_token *tokens, int64_t n);
bool cache_load_poll(kvlm_cache *c, cache_load *l, kv_seq *s, const kvlm_token *tokens, int64_t n);
void cache_load_free(cache_load *l);
/* Fills the tier fields of *out. */
void cache_tier_stats(const kvlm_cache *c, kvlm_cache_stats *out);

#endif
