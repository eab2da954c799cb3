/* cache_tiers.c - the kvlm_cache's tiers (kv/kv_tiers.h): opening them from
 * kvlm_tier_params, writing published blocks below, loading a prefix's blocks
 * back on a RAM miss. Room: engine. May touch: kv, core.
 *
 *   write-through  after each publish, the sequence's newly published blocks are
 *                  encoded (kv_block_io) and queued; the ticket of the last one is
 *                  what a response waits for (cache_after)
 *   write-evict    the pool's evict hook encodes a block just before its bytes go;
 *                  at the last reference every cached block still unwritten goes
 *   loading        after the RAM hits (kv_seq_attach_ram), the chain keys of the
 *                  blocks after them are asked of the tiers in order; each image is
 *                  verified and attached (kv_seq_attach_image) until the first miss,
 *                  an image that does not verify (rejected: dropped from its tier,
 *                  counted, recomputed), or a full pool
 * A block written below or loaded from below is marked in the pool
 * (kv_pool_mark), so it is not written again while it stays published. */
#include "engine/cache.h"

#include <stdlib.h>
#include <string.h>
#include "core/err.h"
#include "kv/kv_block_io.h"
#include "kv/kv_tier_disk.h"
#include "kv/kv_tier_redis.h"

/* The loader's progress callback: wakes whoever waits for loads (the server). */
static void on_load(void *user)
{
    kvlm_cache *c = user;
    void (*fn)(void *) = atomic_load(&c->wake_fn);
    if (fn) fn(atomic_load(&c->wake_user));
}

/* Encodes published block b under *link and queues it; marks it. Returns its ticket (0: not queued). */
static int64_t put_block(kvlm_cache *c, const kv_pool *p, kv_block b, const kv_link *link)
{
    void *img = malloc(c->image_bytes);
    size_t n = 0;
    if (!img) return 0;
    if (kv_block_encode(p, b, link, img, c->image_bytes, &n, NULL, 0) != KVLM_OK) {
        free(img);
        return 0;
    }
    return kv_tiers_put(c->tiers, link->key, img, n);
}

static void on_evict(void *user, const kv_pool *p, kv_block b, const kv_link *link)
{
    kvlm_cache *c = user;
    if (!kv_pool_marked(p, b)) put_block(c, p, b, link);
}

kvlm_err cache_tiers_open(kvlm_cache *c, const kvlm_tier_params *tp, char *err, size_t errlen)
{
    const bool disk = tp->dir && *tp->dir, redis = tp->redis && *tp->redis;
    if (!disk && !redis) return KVLM_OK;
    if (tp->disk_bytes < 0 || tp->redis_ttl_s < 0)
        return err_set(err, errlen, KVLM_ERR_INVALID, "tier budget and TTL must not be negative");
    if (tp->write != KVLM_CACHE_WRITE_THROUGH && tp->write != KVLM_CACHE_WRITE_EVICT)
        return err_set(err, errlen, KVLM_ERR_INVALID, "unknown cache write mode %d", (int)tp->write);
    c->image_bytes = kv_block_io_size(&c->pool);
    c->write = tp->write;
    kv_tiers_params pp = { .mode = tp->write == KVLM_CACHE_WRITE_EVICT ? KV_WRITE_EVICT : KV_WRITE_THROUGH,
                           .compress = tp->compress, .max_image_bytes = c->image_bytes,
                           .on_load = on_load, .user = c };
    kvlm_err e = kv_tiers_create(&pp, &c->tiers, err, errlen);
    if (e) return e;
    kv_tier *t = NULL;
    if (disk) {
        const uint64_t budget = (uint64_t)(tp->disk_bytes > 0 ? tp->disk_bytes : KVLM_TIER_DISK_DEFAULT);
        if ((e = kv_tier_disk_new(&t, tp->dir, budget, err, errlen)) ||
            (e = kv_tiers_add(c->tiers, t, err, errlen)))
            goto fail;
    }
    if (redis) {
        kv_redis_opts ro = { .ttl_sec = tp->redis_ttl_s };
        if ((e = kv_tier_redis_new(&t, tp->redis, &ro, err, errlen)) ||
            (e = kv_tiers_add(c->tiers, t, err, errlen)))
            goto fail;
    }
    if (c->write == KVLM_CACHE_WRITE_EVICT) kv_pool_set_evict_hook(&c->pool, on_evict, c);
    return KVLM_OK;
fail:
    kv_tiers_free(c->tiers);
    c->tiers = NULL;
    return e;
}

void cache_tiers_close(kvlm_cache *c)
{
    if (!c->tiers) return;
    if (c->write == KVLM_CACHE_WRITE_EVICT) {   /* the process lets go of RAM: everything cached goes below */
        kv_pool_set_evict_hook(&c->pool, NULL, NULL);
        for (kv_block b = 0; b < c->pool.n_blocks; b++) {
            kv_block_info info;
            kv_pool_block_info(&c->pool, b, &info);
            if (info.published && !kv_pool_marked(&c->pool, b)) put_block(c, &c->pool, b, &info.link);
        }
    }
    kv_tiers_free(c->tiers);   /* drains the queue */
    c->tiers = NULL;
}

void cache_set_wake(kvlm_cache *c, void (*fn)(void *user), void *user)
{
    atomic_store(&c->wake_user, user);
    atomic_store(&c->wake_fn, fn);
}

int64_t cache_spill(kvlm_cache *c, const kv_seq *s, int64_t *from)
{
    int64_t last = 0;
    if (*from > s->n_published) *from = s->n_published;   /* truncated meanwhile */
    if (!c->tiers || c->write != KVLM_CACHE_WRITE_THROUGH) {
        *from = s->n_published;
        return 0;
    }
    for (int64_t i = *from; i < s->n_published; i++) {   /* blocks[i]: published */
        const kv_block b = s->blocks[i];
        if (kv_pool_marked(&c->pool, b)) continue;
        kv_block_info info;
        kv_pool_block_info(&c->pool, b, &info);
        const int64_t t = put_block(c, &c->pool, b, &info.link);
        kv_pool_mark(&c->pool, b);   /* queued, or dropped for good: not retried every step */
        if (t > last) last = t;
    }
    *from = s->n_published;
    return last;
}

kvlm_err cache_after(kvlm_cache *c, int64_t ticket, void (*fn)(void *user), void *user)
{
    if (!c->tiers || ticket <= 0) {
        fn(user);
        return KVLM_OK;
    }
    return kv_tiers_after(c->tiers, ticket, fn, user);
}

void kvlm_cache_flush(kvlm_cache *c)
{
    if (c && c->tiers) kv_tiers_flush(c->tiers);
}

/* Attaches one fetched image as the sequence's next block. Returns false when
 * loading must stop here (the image is rejected, or the pool is full). */
static bool attach_one(kvlm_cache *c, kv_seq *s, const kvlm_token *tokens, int64_t n, uint64_t key,
                       void *img, size_t len, int tier)
{
    const kvlm_err e = kv_seq_attach_image(s, tokens, n, img, len, NULL, 0);
    free(img);
    if (e == KVLM_ERR_FORMAT) kv_tiers_reject(c->tiers, tier, key);   /* recomputed, and gone from there */
    if (e != KVLM_OK) return false;
    kv_pool_mark(&c->pool, s->blocks[s->n_blocks - 1]);
    atomic_fetch_add(&c->tier_loads, 1);
    return true;
}

int64_t cache_load_sync(kvlm_cache *c, kv_seq *s, const kvlm_token *tokens, int64_t n)
{
    if (!c->tiers) return 0;
    int64_t loaded = 0;
    for (;;) {
        uint64_t key;
        if (kv_seq_next_keys(s, tokens, n, &key, 1) != 1) break;
        void *img = NULL;
        size_t len = 0;
        int tier = -1;
        if (kv_tiers_get(c->tiers, key, &img, &len, &tier, NULL, 0) != KVLM_OK || !img) {
            free(img);
            break;
        }
        if (!attach_one(c, s, tokens, n, key, img, len, tier)) break;
        loaded++;
    }
    return loaded;
}

kv_load *cache_load_start(kvlm_cache *c, const kv_seq *s, const kvlm_token *tokens, int64_t n, uint64_t **keys,
                          int64_t *n_keys)
{
    *keys = NULL;
    *n_keys = 0;
    if (!c->tiers) return NULL;
    const int64_t cap = (n + KV_BLOCK_TOKENS - 1) / KV_BLOCK_TOKENS;
    uint64_t *k = cap > 0 ? malloc((size_t)cap * sizeof *k) : NULL;
    if (!k) return NULL;
    const int64_t nk = kv_seq_next_keys(s, tokens, n, k, cap);
    kv_load *l = nk > 0 ? kv_tiers_load(c->tiers, k, nk) : NULL;
    if (!l) {
        free(k);
        return NULL;
    }
    *keys = k;
    *n_keys = nk;
    return l;
}

bool cache_load_poll(kvlm_cache *c, kv_load *l, const uint64_t *keys, int64_t *taken, kv_seq *s,
                     const kvlm_token *tokens, int64_t n)
{
    bool done = false;
    const int64_t avail = kv_load_poll(l, &done);
    while (*taken < avail) {
        size_t len = 0;
        int tier = -1;
        void *img = kv_load_take(l, *taken, &len, &tier);
        if (!img || !attach_one(c, s, tokens, n, keys[*taken], img, len, tier)) return true;
        (*taken)++;
    }
    return done;
}

void cache_tier_stats(const kvlm_cache *c, kvlm_cache_stats *out)
{
    out->tier_loads = atomic_load(&c->tier_loads);
    out->n_tiers = c->tiers ? kv_tiers_n(c->tiers) : 0;
    for (int i = 0; i < out->n_tiers && i < KVLM_MAX_TIERS; i++) kv_tiers_get_stats(c->tiers, i, &out->tier[i]);
}
