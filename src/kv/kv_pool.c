/* kv_pool.c - see kv_pool.h for the design; this file keeps three structures in
 * step with each block's state:
 *
 *   meta[b]      refcount, state, n_child, link (when published)
 *   free list    FREE blocks, a stack through meta.next        free_head -> b -> b -> NONE
 *   LRU          CACHED blocks, doubly linked, oldest first    lru_head <-> ... <-> lru_tail
 *   hash table   published blocks (IN_USE or CACHED), chained through meta.hash_next
 *                from buckets[key & bucket_mask]
 *
 * Every state change goes through set_free / set_cached / set_in_use so that the
 * counters n_free, n_cached, n_in_use cannot drift from the lists. */
#include "kv/kv_pool.h"
#include "core/err.h"
#include "kern/attn.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

_Static_assert(KV_KIVI_SPAN == ATTN_KIVI_SPAN, "a KIVI K span is the same in kv and kern");

size_t kv_type_bytes(kvlm_kv_type type)
{
    switch (type) {
    case KVLM_KV_F32: return 4;
    case KVLM_KV_F16: return 2;
    case KVLM_KV_Q8: return 1;
    case KVLM_KV_Q4: return 1;   /* V rows: n_ch / 2 bytes, see row_bytes */
    case KVLM_KV_BF16: return 2;
    case KVLM_KV_KIVI4: case KVLM_KV_KIVI2: return 1;   /* packed codes: see attn.h */
    case KVLM_KV_SAME: break;   /* resolved by the caller, never a pool's type */
    }
    return 0;
}

size_t kv_type_part_bytes(kvlm_kv_type type, int64_t n_ch, bool is_v)
{
    /* the layout attention reads (kern/attn.h); its type ids are kvlm_kv_type's (nn/ops.c checks) */
    return type == KVLM_KV_SAME ? 0 : attn_part_bytes((int)type, n_ch, is_v);
}

enum { SLAB_ALIGN = 64 };   /* a cache line: every block and row set starts on one */

struct kv_block_meta {
    int32_t refcount;
    int32_t n_child;        /* published blocks whose link.parent is this block */
    kv_block prev, next;    /* LRU neighbours (CACHED), or next on the free list (FREE) */
    kv_block hash_next;     /* next published block in the same bucket */
    uint8_t state;          /* kv_block_state */
    bool published;
    bool marked;            /* the owner's mark (kv_pool_mark); false when unpublished */
    kv_link link;           /* valid when published */
};

/* ---- sizes and init ------------------------------------------------------------ */

static size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* One layer's K (or V) in a block, rounded up to a cache line; 0 if impossible. */
static size_t part_bytes(int64_t n_head_kv, int64_t head_dim, kvlm_kv_type type, bool is_v)
{
    size_t n_ch;
    if (n_head_kv <= 0 || head_dim <= 0 || __builtin_mul_overflow((size_t)n_head_kv, (size_t)head_dim, &n_ch) ||
        n_ch > ((size_t)1 << 40))
        return 0;
    if ((type == KVLM_KV_Q8 || type == KVLM_KV_Q4) && head_dim % KV_Q8_GROUP) return 0;   /* a group never spans two heads */
    if (kv_type_is_kivi(type) && head_dim % ATTN_KIVI_VGROUP) return 0;
    const size_t pb = kv_type_part_bytes(type, (int64_t)n_ch, is_v);
    return pb ? round_up(pb, SLAB_ALIGN) : 0;
}

size_t kv_pool_block_bytes(int64_t n_layer, int64_t n_head_kv, int64_t head_dim, kvlm_kv_type type_k,
                           kvlm_kv_type type_v)
{
    const size_t pk = part_bytes(n_head_kv, head_dim, type_k, false), pv = part_bytes(n_head_kv, head_dim, type_v, true);
    size_t bytes;
    if (pk == 0 || pv == 0 || n_layer <= 0) return 0;
    if (__builtin_mul_overflow(pk + pv, (size_t)n_layer, &bytes) || bytes > SIZE_MAX - SLAB_ALIGN) return 0;
    return bytes;
}

/* NaN over every value of one part (a scale is NaN for q8/q4, so every value is). */
static void poison_part(uint8_t *p, size_t bytes, kvlm_kv_type t)
{
    if (t == KVLM_KV_F32) {
        const uint32_t nan32 = 0x7fc00000u;   /* quiet NaN */
        for (size_t i = 0; i + 4 <= bytes; i += 4) memcpy(p + i, &nan32, 4);
    } else {
        const uint16_t nan16 = t == KVLM_KV_BF16 ? 0x7fc0u : 0x7e00u;   /* quiet NaN in bf16 / fp16 */
        for (size_t i = 0; i + 2 <= bytes; i += 2) memcpy(p + i, &nan16, 2);
    }
}

/* NaN over every element of block b: a stale read then poisons whatever uses it. */
static void poison_block(kv_pool *p, kv_block b)
{
    for (int64_t il = 0; il < p->n_layer; il++) {
        poison_part(kv_pool_k(p, b, il), p->part_k, p->type_k);
        poison_part((uint8_t *)kv_pool_k(p, b, il) + p->part_k, p->part_v, p->type_v);
    }
}

static int64_t gcd64(int64_t a, int64_t b)
{
    while (b) {
        const int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

int64_t kv_pool_layers_per_block(int64_t n_layer, const bool *layer_window)
{
    if (n_layer <= 0) return 0;
    int64_t n_win = 0;
    if (layer_window)
        for (int64_t il = 0; il < n_layer; il++) n_win += layer_window[il];
    const int64_t L = n_win == 0 || n_win == n_layer ? n_layer : gcd64(n_win, n_layer - n_win);
    return n_layer / L > KV_MAX_TABLES ? 0 : L;
}

/* Layer il -> (table, slot): tables of the full layers first (table 0 is full
 * whenever the model has full layers), then the window layers', each in layer
 * order. */
static kvlm_err set_layout(kv_pool *p, const kv_pool_params *pp, char *err, size_t errlen)
{
    const int64_t L = kv_pool_layers_per_block(pp->n_layer, pp->window > 0 ? pp->layer_window : NULL);
    if (L == 0)
        return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "KV pool: %lld layers need more than %d block tables",
                       (long long)pp->n_layer, KV_MAX_TABLES);
    p->n_layer_model = pp->n_layer;
    p->n_tab = (int32_t)(pp->n_layer / L);
    p->layer_tab = malloc((size_t)pp->n_layer * sizeof *p->layer_tab);
    p->layer_slot = malloc((size_t)pp->n_layer * sizeof *p->layer_slot);
    if (!p->layer_tab || !p->layer_slot) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory for a layer map");
    int64_t k = 0;   /* layers placed so far: full ones, then window ones */
    for (int pass = 0; pass < 2; pass++)
        for (int64_t il = 0; il < pp->n_layer; il++) {
            const bool win = pp->window > 0 && pp->layer_window && pp->layer_window[il];
            if (win != (pass == 1)) continue;
            p->layer_tab[il] = (int32_t)(k / L);
            p->layer_slot[il] = (int32_t)(k % L);
            p->tab_window[k / L] = win ? pp->window : 0;
            k++;
        }
    return KVLM_OK;
}

static void set_dims(kv_pool *p, const kv_pool_params *pp)
{
    const int64_t L = kv_pool_layers_per_block(pp->n_layer, pp->window > 0 ? pp->layer_window : NULL);
    p->n_layer = L;
    p->n_head_kv = pp->n_head_kv;
    p->head_dim = pp->head_dim;
    p->type_k = pp->type_k;
    p->type_v = pp->type_v;
    p->poison = pp->poison;
    p->elt_k = kv_type_bytes(pp->type_k);
    p->row_bytes = (size_t)pp->n_head_kv * (size_t)pp->head_dim * kv_type_bytes(pp->type_v) /
                   (pp->type_v == KVLM_KV_Q4 ? 2 : 1);
    if (kv_type_is_kivi(pp->type_v))
        p->row_bytes = (size_t)pp->n_head_kv * (size_t)pp->head_dim * (size_t)attn_kivi_bits((int)pp->type_v) / 8;
    p->res_tokens = kv_type_is_kivi(pp->type_k) || kv_type_is_kivi(pp->type_v) ? pp->res_tokens : 0;
    p->part_k = part_bytes(pp->n_head_kv, pp->head_dim, pp->type_k, false);
    p->part_v = part_bytes(pp->n_head_kv, pp->head_dim, pp->type_v, true);
    p->block_bytes = kv_pool_block_bytes(L, pp->n_head_kv, pp->head_dim, pp->type_k, pp->type_v);
}

/* All blocks start FREE; the free list hands out low ids first. */
static void reset_blocks(kv_pool *p)
{
    for (kv_block b = 0; b < p->n_blocks; b++) {
        struct kv_block_meta *m = &p->meta[b];
        memset(m, 0, sizeof *m);
        m->prev = KV_BLOCK_NONE;
        m->next = b + 1 < p->n_blocks ? b + 1 : KV_BLOCK_NONE;
        m->hash_next = KV_BLOCK_NONE;
        m->state = KV_BLOCK_FREE;
        if (p->poison) poison_block(p, b);
    }
    for (uint64_t i = 0; i <= p->bucket_mask; i++) p->buckets[i] = KV_BLOCK_NONE;
    p->free_head = 0;
    p->lru_head = p->lru_tail = KV_BLOCK_NONE;
}

static void init_stats(kv_pool *p)
{
    memset(&p->stats, 0, sizeof p->stats);
    p->stats.n_blocks = p->n_blocks;
    p->stats.n_free = p->n_blocks;
    p->stats.block_bytes = (int64_t)p->block_bytes;
    const int64_t n_ch = p->n_head_kv * p->head_dim;
    const int64_t per_layer = (int64_t)(kv_type_part_bytes(p->type_k, n_ch, false) + kv_type_part_bytes(p->type_v, n_ch, true)) /
                              KV_BLOCK_TOKENS;
    p->stats.bytes_per_token_per_layer = per_layer;
    p->stats.bytes_per_token = per_layer * p->n_layer_model;
}

/* The slab, on 2 MiB pages where the kernel allows (THP in madvise mode): attention
 * walks blocks scattered over the whole slab, and with 4 KiB pages every block of
 * every layer costs TLB misses. Pages are still committed only when touched. */
static void *slab_alloc(size_t bytes)
{
    const size_t huge = (size_t)2 << 20;
    if (bytes < huge) return aligned_alloc(SLAB_ALIGN, bytes);   /* bytes: a multiple of SLAB_ALIGN */
    const size_t rounded = (bytes + huge - 1) / huge * huge;
    void *p = aligned_alloc(huge, rounded);
#ifdef MADV_HUGEPAGE
    if (p) (void)madvise(p, rounded, MADV_HUGEPAGE);   /* advice only: failure is harmless */
#endif
    return p;
}

kvlm_err kv_pool_init(kv_pool *pool, const kv_pool_params *pp, char *err, size_t errlen)
{
    memset(pool, 0, sizeof *pool);
    if (kv_type_bytes(pp->type_k) == 0 || kv_type_bytes(pp->type_v) == 0)
        return err_set(err, errlen, KVLM_ERR_INVALID, "unknown KV cache type %d / %d", (int)pp->type_k,
                       (int)pp->type_v);
    const bool *lw = pp->window > 0 ? pp->layer_window : NULL;
    const int64_t L = kv_pool_layers_per_block(pp->n_layer, lw);
    const size_t bb = L ? kv_pool_block_bytes(L, pp->n_head_kv, pp->head_dim, pp->type_k, pp->type_v) : 0;
    if (bb == 0)
        return err_set(err, errlen, KVLM_ERR_INVALID, "KV pool dimensions must be positive and small enough");
    if ((kv_type_is_kivi(pp->type_k) || kv_type_is_kivi(pp->type_v)) && !kv_res_tokens_valid(pp->res_tokens))
        return err_set(err, errlen, KVLM_ERR_INVALID,
                       "KIVI residual of %lld positions: it must be 16, 32, 64, 128 or 256", (long long)pp->res_tokens);
    if (kv_type_is_kivi(pp->type_k) && pp->res_tokens % (KV_KIVI_SPAN * KV_BLOCK_TOKENS))
        return err_set(err, errlen, KVLM_ERR_INVALID,
                       "KIVI K quantizes spans of %d positions: its residual must be 64, 128 or 256 (it is %lld)",
                       KV_KIVI_SPAN * KV_BLOCK_TOKENS, (long long)pp->res_tokens);
    if (pp->budget_bytes < bb)
        return err_set(err, errlen, KVLM_ERR_BUDGET,
                       "KV budget of %zu bytes is below one block of %zu bytes (%d tokens x %lld layers x K,V)",
                       pp->budget_bytes, bb, KV_BLOCK_TOKENS, (long long)L);
    size_t n = pp->budget_bytes / bb;
    if (n > INT32_MAX / 2) n = INT32_MAX / 2;   /* block ids are int32; a bigger slab is not useful */
    set_dims(pool, pp);
    kvlm_err le = set_layout(pool, pp, err, errlen);
    if (le != KVLM_OK) {
        kv_pool_free(pool);
        return le;
    }
    pool->n_blocks = (int32_t)n;
    size_t n_buckets = 1;
    while (n_buckets < n) n_buckets *= 2;
    pool->bucket_mask = n_buckets - 1;
    pool->slab = slab_alloc(n * bb);
    pool->meta = calloc(n, sizeof *pool->meta);
    pool->buckets = malloc(n_buckets * sizeof *pool->buckets);
    if (!pool->slab || !pool->meta || !pool->buckets) {
        kv_pool_free(pool);
        return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory for a KV pool of %zu blocks x %zu bytes", n, bb);
    }
    reset_blocks(pool);
    init_stats(pool);
    return KVLM_OK;
}

void kv_pool_free(kv_pool *pool)
{
    if (!pool) return;
    free(pool->slab);
    free(pool->meta);
    free(pool->buckets);
    free(pool->layer_tab);
    free(pool->layer_slot);
    memset(pool, 0, sizeof *pool);
}

/* ---- lists and state changes ------------------------------------------------------ */

static void lru_remove(kv_pool *p, kv_block b)
{
    struct kv_block_meta *m = &p->meta[b];
    if (m->prev != KV_BLOCK_NONE) p->meta[m->prev].next = m->next; else p->lru_head = m->next;
    if (m->next != KV_BLOCK_NONE) p->meta[m->next].prev = m->prev; else p->lru_tail = m->prev;
    m->prev = m->next = KV_BLOCK_NONE;
}

static void lru_push_newest(kv_pool *p, kv_block b)
{
    struct kv_block_meta *m = &p->meta[b];
    m->prev = p->lru_tail;
    m->next = KV_BLOCK_NONE;
    if (p->lru_tail != KV_BLOCK_NONE) p->meta[p->lru_tail].next = b; else p->lru_head = b;
    p->lru_tail = b;
}

static int64_t *state_counter(kv_pool *p, uint8_t state)
{
    switch (state) {
    case KV_BLOCK_FREE: return &p->stats.n_free;
    case KV_BLOCK_CACHED: return &p->stats.n_cached;
    default: return &p->stats.n_in_use;
    }
}

static void set_state(kv_pool *p, kv_block b, uint8_t state)
{
    (*state_counter(p, p->meta[b].state))--;
    (*state_counter(p, state))++;
    p->meta[b].state = state;
}

/* IN_USE (refcount just reached 0, unpublished) or evicted CACHED -> FREE */
static void set_free(kv_pool *p, kv_block b)
{
    if (p->poison) poison_block(p, b);
    set_state(p, b, KV_BLOCK_FREE);
    p->meta[b].prev = KV_BLOCK_NONE;
    p->meta[b].next = p->free_head;
    p->free_head = b;
}

/* ---- hash table ---------------------------------------------------------------------- */

static kv_block *bucket_of(kv_pool *p, uint64_t key) { return &p->buckets[key & p->bucket_mask]; }

static kv_block hash_find(const kv_pool *p, uint64_t key)
{
    kv_block b = p->buckets[key & p->bucket_mask];
    while (b != KV_BLOCK_NONE && p->meta[b].link.key != key) b = p->meta[b].hash_next;
    return b;
}

static void hash_remove(kv_pool *p, kv_block b)
{
    kv_block *at = bucket_of(p, p->meta[b].link.key);
    while (*at != b) at = &p->meta[*at].hash_next;
    *at = p->meta[b].hash_next;
    p->meta[b].hash_next = KV_BLOCK_NONE;
}

static bool link_equal(const kv_link *a, const kv_link *b)
{
    return a->key == b->key && a->parent_key == b->parent_key && a->parent == b->parent &&
           a->fingerprint == b->fingerprint && a->ns == b->ns && a->tab == b->tab &&
           memcmp(a->tokens, b->tokens, sizeof a->tokens) == 0;
}

/* Takes CACHED block b out of the index for good: it stops pinning its parent. */
static void unpublish(kv_pool *p, kv_block b)
{
    struct kv_block_meta *m = &p->meta[b];
    assert(m->published && m->n_child == 0);
    hash_remove(p, b);
    if (m->link.parent != KV_BLOCK_NONE) p->meta[m->link.parent].n_child--;
    m->published = false;
    m->marked = false;
}

/* ---- allocation ------------------------------------------------------------------------ */

/* The oldest cached block that no cached child pins; NONE if every one is pinned. */
static kv_block oldest_evictable(const kv_pool *p)
{
    kv_block b = p->lru_head;
    while (b != KV_BLOCK_NONE && p->meta[b].n_child > 0) b = p->meta[b].next;
    return b;
}

/* CACHED b -> FREE, its index entry dropped. */
static void evict(kv_pool *p, kv_block b)
{
    if (p->evict_fn) p->evict_fn(p->evict_user, p, b, &p->meta[b].link);   /* bytes still intact */
    lru_remove(p, b);
    unpublish(p, b);
    set_free(p, b);
    p->stats.evictions++;
}

kvlm_err kv_pool_alloc(kv_pool *pool, kv_block *out, char *err, size_t errlen)
{
    *out = KV_BLOCK_NONE;
    if (pool->free_head == KV_BLOCK_NONE) {
        kv_block victim = oldest_evictable(pool);
        if (victim == KV_BLOCK_NONE)
            return err_set(err, errlen, KVLM_ERR_BUDGET,
                           "KV budget exhausted: all %d blocks (%d tokens each) are in use",
                           pool->n_blocks, KV_BLOCK_TOKENS);
        evict(pool, victim);
    }
    kv_block b = pool->free_head;
    struct kv_block_meta *m = &pool->meta[b];
    pool->free_head = m->next;
    m->next = KV_BLOCK_NONE;
    m->refcount = 1;
    set_state(pool, b, KV_BLOCK_IN_USE);
    *out = b;
    return KVLM_OK;
}

int64_t kv_pool_available(const kv_pool *pool) { return pool->stats.n_free + pool->stats.n_cached; }

void kv_pool_ref(kv_pool *pool, kv_block b)
{
    assert(b >= 0 && b < pool->n_blocks && pool->meta[b].state == KV_BLOCK_IN_USE);
    pool->meta[b].refcount++;
}

void kv_pool_unref(kv_pool *pool, kv_block b)
{
    assert(b >= 0 && b < pool->n_blocks && pool->meta[b].state == KV_BLOCK_IN_USE);
    struct kv_block_meta *m = &pool->meta[b];
    if (--m->refcount > 0) return;
    if (m->published) {
        set_state(pool, b, KV_BLOCK_CACHED);
        lru_push_newest(pool, b);
    } else {
        set_free(pool, b);
    }
}

void kv_pool_copy(kv_pool *pool, kv_block dst, kv_block src)
{
    assert(pool->meta[dst].state == KV_BLOCK_IN_USE && pool->meta[dst].refcount == 1 &&
           !pool->meta[dst].published && dst != src);
    memcpy(pool->slab + (size_t)dst * pool->block_bytes,
           pool->slab + (size_t)src * pool->block_bytes, pool->block_bytes);
    pool->stats.copies++;
}

/* ---- prefix index ------------------------------------------------------------------------ */

static void put_le64(uint8_t *d, uint64_t x)
{
    for (int i = 0; i < 8; i++) d[i] = (uint8_t)(x >> (8 * i));
}

uint64_t kv_pool_chain_key(uint64_t parent_key, const kvlm_token *tokens,
                           uint64_t fingerprint, uint64_t ns)
{
    /* fixed little-endian bytes whatever the host: keys leave the process (disk, Redis)
     *   [0] KV_CHAIN_KEY_VERSION  [1,9) parent_key  [9,17) fingerprint  [17,25) ns
     *   [25, 89) tokens[16] as u32 */
    uint8_t buf[1 + 3 * 8 + KV_BLOCK_TOKENS * 4];
    buf[0] = KV_CHAIN_KEY_VERSION;
    put_le64(buf + 1, parent_key);
    put_le64(buf + 9, fingerprint);
    put_le64(buf + 17, ns);
    for (int t = 0; t < KV_BLOCK_TOKENS; t++) {
        const uint32_t u = (uint32_t)tokens[t];
        for (int i = 0; i < 4; i++) buf[25 + 4 * t + i] = (uint8_t)(u >> (8 * i));
    }
    return XXH3_64bits(buf, sizeof buf);
}

void kv_pool_link(kv_link *link, kv_block parent, uint64_t parent_key,
                  const kvlm_token *tokens, uint64_t fingerprint, uint64_t ns)
{
    memset(link, 0, sizeof *link);
    link->parent = parent;
    link->parent_key = parent == KV_BLOCK_NONE ? KV_ROOT_KEY : parent_key;
    link->fingerprint = fingerprint;
    link->ns = ns;
    memcpy(link->tokens, tokens, sizeof link->tokens);
    link->key = kv_pool_chain_key(link->parent_key, tokens, fingerprint, ns);
}

void kv_pool_link_loose(kv_link *link, uint64_t parent_key, const kvlm_token *tokens, uint64_t fingerprint,
                        uint64_t ns)
{
    memset(link, 0, sizeof *link);
    link->parent = KV_BLOCK_NONE;
    link->parent_key = parent_key;
    link->fingerprint = fingerprint;
    link->ns = ns;
    memcpy(link->tokens, tokens, sizeof link->tokens);
    link->key = kv_pool_chain_key(parent_key, tokens, fingerprint, ns);
}

/* Takes a reference on a published block, pulling it off the LRU if cached. */
static void ref_published(kv_pool *p, kv_block b)
{
    struct kv_block_meta *m = &p->meta[b];
    if (m->state == KV_BLOCK_CACHED) {
        lru_remove(p, b);
        set_state(p, b, KV_BLOCK_IN_USE);
    }
    m->refcount++;
}

kv_block kv_pool_publish(kv_pool *pool, kv_block b, const kv_link *link)
{
    struct kv_block_meta *m = &pool->meta[b];
    assert(m->state == KV_BLOCK_IN_USE && !m->published);
    assert(link->parent == KV_BLOCK_NONE || pool->meta[link->parent].published);
    kv_block e = hash_find(pool, link->key);
    if (e != KV_BLOCK_NONE) {
        if (!link_equal(&pool->meta[e].link, link)) return KV_BLOCK_NONE;   /* collision */
        ref_published(pool, e);
        return e;
    }
    m->link = *link;
    m->published = true;
    kv_block *head = bucket_of(pool, link->key);
    m->hash_next = *head;
    *head = b;
    if (link->parent != KV_BLOCK_NONE) pool->meta[link->parent].n_child++;
    return b;
}

kv_block kv_pool_lookup(kv_pool *pool, const kv_link *link)
{
    pool->stats.lookups++;
    kv_block e = hash_find(pool, link->key);
    if (e == KV_BLOCK_NONE || !link_equal(&pool->meta[e].link, link)) return KV_BLOCK_NONE;
    ref_published(pool, e);
    pool->stats.hits++;
    return e;
}

/* ---- inspection ------------------------------------------------------------------------ */

void kv_pool_get_stats(const kv_pool *pool, kv_pool_stats *out) { *out = pool->stats; }

void kv_pool_block_info(const kv_pool *pool, kv_block b, kv_block_info *out)
{
    const struct kv_block_meta *m = &pool->meta[b];
    memset(out, 0, sizeof *out);
    out->state = (kv_block_state)m->state;
    out->refcount = m->refcount;
    out->n_child = m->n_child;
    out->published = m->published;
    if (m->published) out->link = m->link;
}

int32_t kv_pool_refcount(const kv_pool *pool, kv_block b) { return pool->meta[b].refcount; }
bool kv_pool_is_published(const kv_pool *pool, kv_block b) { return pool->meta[b].published; }

/* Free list: only FREE blocks, refcount 0, unpublished; no cycle. Counts into *n. */
static kvlm_err check_free_list(const kv_pool *p, int64_t *n, char *err, size_t errlen)
{
    *n = 0;
    for (kv_block b = p->free_head; b != KV_BLOCK_NONE; b = p->meta[b].next) {
        const struct kv_block_meta *m = &p->meta[b];
        if (++*n > p->n_blocks) return err_set(err, errlen, KVLM_ERR_INVALID, "free list has a cycle");
        if (m->state != KV_BLOCK_FREE || m->refcount != 0 || m->published)
            return err_set(err, errlen, KVLM_ERR_INVALID, "block %d on the free list is not free", b);
    }
    return KVLM_OK;
}

/* LRU: only CACHED blocks, published, refcount 0, consistent back links. */
static kvlm_err check_lru(const kv_pool *p, int64_t *n, char *err, size_t errlen)
{
    *n = 0;
    kv_block prev = KV_BLOCK_NONE;
    for (kv_block b = p->lru_head; b != KV_BLOCK_NONE; prev = b, b = p->meta[b].next) {
        const struct kv_block_meta *m = &p->meta[b];
        if (++*n > p->n_blocks) return err_set(err, errlen, KVLM_ERR_INVALID, "LRU has a cycle");
        if (m->state != KV_BLOCK_CACHED || m->refcount != 0 || !m->published || m->prev != prev)
            return err_set(err, errlen, KVLM_ERR_INVALID, "block %d on the LRU is not cached or badly linked", b);
    }
    if (p->lru_tail != prev) return err_set(err, errlen, KVLM_ERR_INVALID, "LRU tail is not its last block");
    return KVLM_OK;
}

/* Hash: every published block reachable from its bucket exactly once; counts into *n. */
static kvlm_err check_hash(const kv_pool *p, int64_t *n, char *err, size_t errlen)
{
    *n = 0;
    for (uint64_t i = 0; i <= p->bucket_mask; i++)
        for (kv_block b = p->buckets[i]; b != KV_BLOCK_NONE; b = p->meta[b].hash_next) {
            const struct kv_block_meta *m = &p->meta[b];
            if (++*n > p->n_blocks) return err_set(err, errlen, KVLM_ERR_INVALID, "hash chain has a cycle");
            if (!m->published || (m->link.key & p->bucket_mask) != i)
                return err_set(err, errlen, KVLM_ERR_INVALID, "block %d is in the wrong hash bucket", b);
            if (hash_find(p, m->link.key) != b)
                return err_set(err, errlen, KVLM_ERR_INVALID, "key of block %d is published twice", b);
        }
    return KVLM_OK;
}

/* Per block: state agrees with refcount, parents are published, n_child is exact. */
static kvlm_err check_blocks(const kv_pool *p, int64_t count[3], int64_t *n_published,
                             char *err, size_t errlen)
{
    int32_t *children = calloc((size_t)p->n_blocks, sizeof *children);
    if (!children) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory in kv_pool_check");
    kvlm_err rc = KVLM_OK;
    for (kv_block b = 0; b < p->n_blocks && rc == KVLM_OK; b++) {
        const struct kv_block_meta *m = &p->meta[b];
        count[m->state]++;
        if ((m->state == KV_BLOCK_IN_USE) != (m->refcount > 0) || m->refcount < 0 ||
            (m->state == KV_BLOCK_CACHED && !m->published))
            rc = err_set(err, errlen, KVLM_ERR_INVALID, "block %d: state %d with refcount %d",
                         b, m->state, m->refcount);
        if (!m->published) continue;
        (*n_published)++;
        kv_block par = m->link.parent;
        if (par != KV_BLOCK_NONE && (par < 0 || par >= p->n_blocks || !p->meta[par].published))
            rc = err_set(err, errlen, KVLM_ERR_INVALID, "block %d: parent %d is not published", b, par);
        else if (par != KV_BLOCK_NONE)
            children[par]++;
    }
    for (kv_block b = 0; b < p->n_blocks && rc == KVLM_OK; b++)
        if (children[b] != p->meta[b].n_child)
            rc = err_set(err, errlen, KVLM_ERR_INVALID, "block %d: n_child %d, counted %d",
                         b, p->meta[b].n_child, children[b]);
    free(children);
    return rc;
}

kvlm_err kv_pool_check(const kv_pool *pool, char *err, size_t errlen)
{
    int64_t n_free_list, n_lru, n_hashed, n_published = 0, count[3] = { 0, 0, 0 };
    kvlm_err rc;
    if ((rc = check_free_list(pool, &n_free_list, err, errlen)) != KVLM_OK) return rc;
    if ((rc = check_lru(pool, &n_lru, err, errlen)) != KVLM_OK) return rc;
    if ((rc = check_hash(pool, &n_hashed, err, errlen)) != KVLM_OK) return rc;
    if ((rc = check_blocks(pool, count, &n_published, err, errlen)) != KVLM_OK) return rc;
    const kv_pool_stats *s = &pool->stats;
    if (count[KV_BLOCK_FREE] != s->n_free || n_free_list != s->n_free ||
        count[KV_BLOCK_CACHED] != s->n_cached || n_lru != s->n_cached ||
        count[KV_BLOCK_IN_USE] != s->n_in_use || n_hashed != n_published ||
        s->n_free + s->n_cached + s->n_in_use != s->n_blocks)
        return err_set(err, errlen, KVLM_ERR_INVALID,
                       "counters free %lld cached %lld in use %lld, counted %lld/%lld %lld/%lld %lld, "
                       "published %lld hashed %lld",
                       (long long)s->n_free, (long long)s->n_cached, (long long)s->n_in_use,
                       (long long)count[KV_BLOCK_FREE], (long long)n_free_list,
                       (long long)count[KV_BLOCK_CACHED], (long long)n_lru,
                       (long long)count[KV_BLOCK_IN_USE], (long long)n_published, (long long)n_hashed);
    return KVLM_OK;
}

void kv_pool_set_evict_hook(kv_pool *pool, kv_pool_evict_fn fn, void *user)
{
    pool->evict_fn = fn;
    pool->evict_user = user;
}

void kv_pool_mark(kv_pool *pool, kv_block b)
{
    assert(b >= 0 && b < pool->n_blocks && pool->meta[b].published);
    pool->meta[b].marked = true;
}

bool kv_pool_marked(const kv_pool *pool, kv_block b)
{
    assert(b >= 0 && b < pool->n_blocks);
    return pool->meta[b].marked;
}
