/* cache_tiers.c - the kvlm_cache's tiers (kv/kv_tiers.h): opening them from
 * kvlm_tier_params, writing published blocks below, loading a prefix's blocks
 * back on a RAM miss. Room: engine. May touch: kv, core.
 *
 *   write-through  after each publish, the sequence's newly published blocks of every
 *                  table (kv_seq n_below .. n_published) are encoded (kv_block_io)
 *                  and queued, before kv_seq_slide lets a window's old blocks go; the
 *                  ticket of the last one is what a response waits for (cache_after)
 *   write-evict    the pool's evict hook encodes a block just before its bytes go
 *                  (its link names its table); at the last reference every cached
 *                  block still unwritten goes
 *   loading        after the RAM hits (kv_seq_attach_ram), what the sequence wants
 *                  (kv_seq_next_wants: the chains after the hits, then with layer
 *                  groups the windows before their end) is asked of the tiers in
 *                  order, a round at a time; each image is verified and attached
 *                  (kv_seq_attach_image) until the round's first miss or an image
 *                  that does not verify (rejected: dropped from its tier, counted,
 *                  recomputed), which ends the prefix before that block
 *                  (kv_seq_attach_miss); a full pool ends the loading
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

int64_t cache_spill(kvlm_cache *c, kv_seq *s)
{
    int64_t last = 0;
    for (int32_t t = 0; t < kv_seq_n_tables(s); t++) {
        kv_seq *u = kv_seq_tab(s, t);
        if (u->n_below > u->n_published) u->n_below = u->n_published;
        if (!c->tiers || c->write != KVLM_CACHE_WRITE_THROUGH) {
            u->n_below = u->n_published;
            continue;
        }
        for (int64_t i = u->n_below; i < u->n_published; i++) {   /* blocks[i]: published, or let go */
            const kv_block b = u->blocks[i];
            if (b == KV_BLOCK_NONE || kv_pool_marked(&c->pool, b)) continue;
            kv_block_info info;
            kv_pool_block_info(&c->pool, b, &info);
            const int64_t tk = put_block(c, &c->pool, b, &info.link);
            kv_pool_mark(&c->pool, b);   /* queued, or dropped for good: not retried every step */
            if (tk > last) last = tk;
        }
        u->n_below = u->n_published;
    }
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

/* One sequence's load from the tiers, a round of wants at a time. */
struct cache_load {
    kv_load *load;       /* this round's, NULL between rounds */
    kv_want *wants;      /* [cap] this round's, in the order asked */
    uint64_t *keys;      /* [cap] their keys */
    int64_t cap, n_wants, taken;
    int64_t lo;          /* the lowest block index attached from a tier (INT64_MAX: none) */
};

/* What attaching one fetched image did. */
typedef enum { LOAD_OK, LOAD_MISS, LOAD_STOP } load_step;

/* Attaches the image fetched for w (NULL: no tier had it). A miss, or an image that
 * does not verify (rejected: dropped from its tier), ends the prefix before w's
 * block; a full pool (or no memory) ends the loading. */
static load_step attach_one(kvlm_cache *c, cache_load *L, kv_seq *s, const kvlm_token *tokens, int64_t n,
                            const kv_want *w, void *img, size_t len, int tier)
{
    if (!img) {
        kv_seq_attach_miss(s, w);
        return LOAD_MISS;
    }
    const kvlm_err e = kv_seq_attach_image(s, tokens, n, w, img, len, NULL, 0);
    free(img);
    if (e == KVLM_ERR_FORMAT) kv_tiers_reject(c->tiers, tier, w->key);   /* recomputed, and gone from there */
    if (e != KVLM_OK) {
        kv_seq_attach_miss(s, w);
        return e == KVLM_ERR_BUDGET || e == KVLM_ERR_NOMEM ? LOAD_STOP : LOAD_MISS;
    }
    kv_pool_mark(&c->pool, kv_seq_tab(s, w->tab)->blocks[w->block]);
    atomic_fetch_add(&c->tier_loads, 1);
    if (w->block < L->lo) L->lo = w->block;
    return LOAD_OK;
}

void cache_load_free(cache_load *L)
{
    if (!L) return;
    kv_load_free(L->load);
    free(L->wants);
    free(L->keys);
    free(L);
}

/* A load with room for the largest round of s over n tokens (every table's blocks). */
static cache_load *load_new(const kv_seq *s, int64_t n)
{
    cache_load *L = calloc(1, sizeof *L);
    if (!L) return NULL;
    L->cap = (n + KV_BLOCK_TOKENS - 1) / KV_BLOCK_TOKENS * s->pool->n_tab;
    L->wants = malloc((size_t)(L->cap > 0 ? L->cap : 1) * sizeof *L->wants);
    L->keys = malloc((size_t)(L->cap > 0 ? L->cap : 1) * sizeof *L->keys);
    L->lo = INT64_MAX;
    if (!L->wants || !L->keys) {
        cache_load_free(L);
        return NULL;
    }
    return L;
}

int64_t cache_load_sync(kvlm_cache *c, kv_seq *s, const kvlm_token *tokens, int64_t n)
{
    if (!c->tiers) return INT64_MAX;
    cache_load *L = load_new(s, n);
    if (!L) return INT64_MAX;
    for (load_step st = LOAD_OK; st != LOAD_STOP;) {   /* rounds */
        const int64_t nw = kv_seq_next_wants(s, tokens, n, L->wants, L->cap);
        if (nw == 0) break;
        st = LOAD_OK;
        for (int64_t i = 0; i < nw && st == LOAD_OK; i++) {
            void *img = NULL;
            size_t len = 0;
            int tier = -1;
            if (kv_tiers_get(c->tiers, L->wants[i].key, &img, &len, &tier, NULL, 0) != KVLM_OK) {
                free(img);
                img = NULL;
            }
            st = attach_one(c, L, s, tokens, n, &L->wants[i], img, len, tier);
        }
    }
    const int64_t lo = L->lo;
    cache_load_free(L);
    return lo;
}

/* Starts L's next round; false when there is nothing more to ask (or no memory). */
static bool round_start(kvlm_cache *c, cache_load *L, kv_seq *s, const kvlm_token *tokens, int64_t n)
{
    kv_load_free(L->load);
    L->load = NULL;
    L->taken = 0;
    L->n_wants = kv_seq_next_wants(s, tokens, n, L->wants, L->cap);
    for (int64_t i = 0; i < L->n_wants; i++) L->keys[i] = L->wants[i].key;
    if (L->n_wants > 0) L->load = kv_tiers_load(c->tiers, L->keys, L->n_wants);
    return L->load != NULL;
}

cache_load *cache_load_start(kvlm_cache *c, kv_seq *s, const kvlm_token *tokens, int64_t n)
{
    if (!c->tiers) return NULL;
    cache_load *L = load_new(s, n);
    if (L && !round_start(c, L, s, tokens, n)) {
        cache_load_free(L);
        L = NULL;
    }
    return L;
}

bool cache_load_poll(kvlm_cache *c, cache_load *L, kv_seq *s, const kvlm_token *tokens, int64_t n)
{
    bool done = false;
    const int64_t avail = kv_load_poll(L->load, &done);
    load_step st = LOAD_OK;
    while (L->taken < avail && st == LOAD_OK) {
        size_t len = 0;
        int tier = -1;
        void *img = kv_load_take(L->load, L->taken, &len, &tier);
        st = attach_one(c, L, s, tokens, n, &L->wants[L->taken], img, len, tier);
        L->taken++;
    }
    if (st == LOAD_STOP) return true;
    if (st == LOAD_OK && !done) return false;        /* more of this round to come */
    if (st == LOAD_OK && L->taken < L->n_wants)       /* the load stopped at a key no tier has */
        attach_one(c, L, s, tokens, n, &L->wants[L->taken], NULL, 0, -1);
    return !round_start(c, L, s, tokens, n);
}

void cache_tier_stats(const kvlm_cache *c, kvlm_cache_stats *out)
{
    out->tier_loads = atomic_load(&c->tier_loads);
    out->n_tiers = c->tiers ? kv_tiers_n(c->tiers) : 0;
    for (int i = 0; i < out->n_tiers && i < KVLM_MAX_TIERS; i++) kv_tiers_get_stats(c->tiers, i, &out->tier[i]);
}
