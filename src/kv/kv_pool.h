/* kv_pool.h - the KV block pool: fixed-size blocks of K/V carved from one slab,
 * reference-counted, with a prefix index of published blocks and an LRU of
 * cached ones. The only owner of K/V bytes.
 * Room: kv. May touch: core (errors), kern/attn (the byte layout of each K/V type),
 * libc, xxHash. Knows nothing of the model
 * file, the forward pass, requests or threads (not thread-safe: one owner).
 * It knows token ids only as the opaque content a published block is keyed by.
 *
 * A block holds KV_BLOCK_TOKENS positions of every layer's K and V:
 *
 *   block b: [n_layer][K part_k bytes | V part_v bytes]   (n_ch = n_head_kv * head_dim)
 *     K of layer il: [n_ch][KV_BLOCK_TOKENS]  channel-major: the 16 positions of one
 *                    channel are adjacent (kv_pool_k)
 *     V of layer il: [KV_BLOCK_TOKENS][n_ch]  row-major, stride row_bytes (kv_pool_v)
 *   in elements of type_k / type_v (chosen separately); for q8 these are int8, followed by the f16 scales, one
 *   per position and group of 32 channels: [n_ch / 32][16] for K and V alike (the
 *   scales of a group's 16 positions adjacent: attention loads them as a vector).
 *   q4 packs two 4-bit values (q + 8) per byte, then the same scales: K [n_ch][8]
 *   (byte i of a channel: position i low, i + 8 high), V [16][n_ch / 2] (byte i of a
 *   group of 32 channels: channel i low, i + 16 high), as ggml's q4_0 packs.
 *   Attention multiplies q by 16 keys at once (one vector per channel, no
 *   horizontal sums) and adds p-weighted V rows, so each part is stored the way
 *   it is read.
 *
 * Each block is in exactly one state:
 *
 *   FREE    refcount 0, on the free list, bytes meaningless (NaN in poison mode)
 *   IN_USE  refcount > 0 (held by sequences); may also be published
 *   CACHED  refcount 0, published: still findable by kv_pool_lookup, on the LRU
 *
 *        alloc            unref to 0 (unpublished)
 *   FREE ------> IN_USE -------------------------> FREE
 *     ^            |  ^
 *     | evict      |  | lookup (a hit takes a reference)
 *     |            v  |
 *     +-------- CACHED      <- unref to 0 (published)
 *
 * Prefix index (vLLM automatic prefix caching, SGLang's radix cache in a hash):
 * a FULL block may be published under a key chained from its parent block:
 *   key = XXH3_64(version, parent_key, fingerprint, ns, tokens[16])  (LE bytes, kv_pool_chain_key)
 * so one key names a whole token prefix. Exactness does not rest on the hash:
 * a published block stores its kv_link (parent block and key, tokens,
 * fingerprint, namespace) and a lookup hits only if every field matches. The
 * parent is the live block itself, not just its key: a published block pins its
 * parent (n_child), so a parent is never evicted or reused while a published
 * child names it. Two prefixes that collide in the hash therefore cannot be
 * confused even through their descendants. One key has at most one entry: a
 * second block with the same content is refused (the caller adopts the entry).
 *
 * Layer groups (sliding-window models; vLLM's hybrid allocator): a model whose
 * layers attend either everything (full layers) or only the last W positions
 * (window layers: Gemma 3 270M, W = 512 on 15 of 18 layers) keeps each group in
 * block tables of its own, so that a window table can let go of blocks the window
 * has left while the full table keeps them all. Every block still has one size:
 * the pool divides the layers into n_tab tables of L layers each, L the largest
 * count dividing both groups (Gemma 3 270M: L = 3, one full table and five
 * window tables; a model without windows: one table of all its layers, as
 * before). A block of table t holds K/V of table t's L layers for 16 positions,
 * so one budget, one free list and one LRU serve every table, and a position
 * costs the same bytes as before while it is in every table. kv_seq.h keeps one
 * table per group and releases a window table's blocks once they are wholly
 * out of the window; published, they stay cached on the LRU like any block.
 *
 * A block of a window table is published with a loose link: parent KV_BLOCK_NONE
 * but its real parent_key (kv_pool_link_loose). It pins no parent, since the
 * blocks before it leave the sequence as the window moves and must stay
 * evictable; a lookup matches it on key, parent key, tokens, fingerprint and
 * namespace (the parent's identity is only as sure as the 64-bit chain key, the
 * same standard the tiers below RAM are held to). Each table chains its keys in
 * its own namespace (kv_seq.h), so the tables' blocks for one prefix never meet.
 * A link also names its table (link.tab), so what sees only a link (the evict
 * hook, a tier image's header) knows which layers a block holds.
 *
 * Eviction (SQLite's pcache1 model): blocks that drop to refcount 0 while
 * published are kept on an LRU list under the same budget and evicted oldest
 * first, skipping blocks still pinned by a cached child, only when an allocation
 * finds the free list empty. Sequences release their blocks tail first, so a
 * chain's tail is older than its head and is evicted first (a middle block
 * evicted alone would strand its descendants, which lookups reach only through it).
 *
 * Invariants (kv_pool_check verifies them all):
 *   n_free + n_cached + n_in_use == n_blocks
 *   FREE <=> on the free list; CACHED <=> on the LRU; published <=> in the hash table
 *   n_child(b) == number of published blocks whose link.parent is b
 *   a published block's parent is published
 * Ownership: kv_pool_init allocates the slab; kv_pool_free releases it whatever
 * the refcounts (sequences must not be used after it). */
#ifndef KVLM_KV_KV_POOL_H
#define KVLM_KV_KV_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"

enum { KV_BLOCK_TOKENS = 16 };
enum { KV_Q8_GROUP = 32 };          /* q8: channels of one position sharing a scale */      /* positions per block (vLLM's default block size) */
#define KV_BLOCK_NONE  ((kv_block)-1)
#define KV_ROOT_KEY    ((uint64_t)0) /* parent_key of a sequence's first block */

typedef int32_t kv_block;           /* block id in [0, n_blocks) */

typedef enum kv_block_state { KV_BLOCK_FREE = 0, KV_BLOCK_IN_USE, KV_BLOCK_CACHED } kv_block_state;

/* What a published block was computed from; the key alone is only a hint. */
typedef struct kv_link {
    uint64_t key;          /* kv_pool_chain_key(parent_key, tokens, fingerprint, ns) */
    uint64_t parent_key;   /* key of the block before, KV_ROOT_KEY for the first */
    kv_block parent;       /* that block (published), KV_BLOCK_NONE for the first */
    uint64_t fingerprint;  /* identity of the model (weights, K/V types) */
    uint64_t ns;           /* namespace: tenant or cache salt; different ns never share */
    kvlm_token tokens[KV_BLOCK_TOKENS];
    int32_t tab;           /* the block table of the layout it belongs to ("Layer groups"; 0 without
                              groups): compared by lookups, written in tier images, not hashed (each
                              table's keys are chained in a namespace of its own already) */
} kv_link;

typedef struct kv_pool_params {
    int64_t n_layer, n_head_kv, head_dim;   /* n_layer: the model's layers */
    kvlm_kv_type type_k, type_v;
    size_t budget_bytes;   /* n_blocks = budget_bytes / block_bytes, at least 1 */
    bool poison;           /* fill a block with NaN when it is freed or evicted */
    int64_t res_tokens;    /* KIVI types: the residual group R (kv_seq.h); ignored otherwise */
    /* sliding-window layers (NULL: none): layer_window[il] says layer il attends only
       the last `window` positions (the layout below, "Layer groups") */
    const bool *layer_window;   /* [n_layer] */
    int64_t window;
} kv_pool_params;

typedef struct kv_pool_stats {
    int64_t n_blocks, n_free, n_cached, n_in_use;
    int64_t lookups, hits;       /* kv_pool_lookup calls, and those that found a block */
    int64_t evictions;           /* cached blocks reclaimed by kv_pool_alloc */
    int64_t copies;              /* kv_pool_copy calls (copy-on-write) */
    int64_t block_bytes;         /* bytes of one block, padded to the slab alignment */
    int64_t bytes_per_token;     /* K and V of one position, all layers */
    int64_t bytes_per_token_per_layer;
} kv_pool_stats;

/* One block's bookkeeping, for tests and debugging. */
typedef struct kv_block_info {
    kv_block_state state;
    int32_t refcount;
    int32_t n_child;       /* published blocks whose parent this is */
    bool published;
    kv_link link;          /* valid when published */
} kv_block_info;

struct kv_block_meta;      /* private to kv_pool.c */
struct kv_pool;
/* Called when a cached block is evicted, before its bytes are reused: b still
 * holds what *link names (what write-evict tiers save). Must not call the pool. */
typedef void (*kv_pool_evict_fn)(void *user, const struct kv_pool *pool, kv_block b, const kv_link *link);

/* Fields are read-only outside kv_pool.c; the inline accessors below need them. */
enum { KV_MAX_TABLES = 64 };   /* block tables per sequence (kv_pool_layout) */

typedef struct kv_pool {
    int64_t n_layer;       /* layers in one block (all of the model's, unless it has layer groups) */
    int64_t n_head_kv, head_dim;
    /* layer groups: the model's n_layer_model layers are spread over n_tab block
       tables of n_layer layers each; layer il lives in table layer_tab[il], at
       layer layer_slot[il] of that table's blocks; table t keeps the last
       tab_window[t] positions (0: all of them) */
    int64_t n_layer_model;
    int32_t n_tab;
    int32_t *layer_tab, *layer_slot;   /* [n_layer_model] */
    int64_t tab_window[KV_MAX_TABLES];
    kvlm_kv_type type_k, type_v;
    size_t elt_k;          /* bytes per K element (q8/q4: see kv_type_bytes) */
    size_t row_bytes;      /* one V row (q8: its int8 part, q4: n_ch / 2) */
    size_t part_k, part_v; /* one layer's K, V in a block, each rounded up to 64 */
    size_t block_bytes;    /* n_layer * (part_k + part_v) */
    int64_t res_tokens;    /* R > 0 when K or V is a KIVI type (kv_seq.h), else 0 */
    int32_t n_blocks;
    bool poison;
    uint8_t *slab;         /* [n_blocks][block_bytes], 64-byte aligned */
    struct kv_block_meta *meta;   /* [n_blocks] */
    kv_block *buckets;     /* [n_buckets] heads of the hash chains of published blocks */
    uint64_t bucket_mask;  /* n_buckets - 1 (a power of two >= n_blocks) */
    kv_block free_head;    /* free list (singly linked through meta.next) */
    kv_block lru_head, lru_tail;  /* oldest, newest cached block */
    kv_pool_stats stats;   /* counters kept up to date; block sizes filled at init */
    kv_pool_evict_fn evict_fn;   /* kv_pool_set_evict_hook, or NULL */
    void *evict_user;
} kv_pool;

static inline bool kv_type_is_kivi(kvlm_kv_type t) { return t == KVLM_KV_KIVI4 || t == KVLM_KV_KIVI2; }
/* The residual groups KIVI allows: R a multiple of 16 that divides attention's
 * 256-row chunks, so a group never straddles a chunk. */
static inline bool kv_res_tokens_valid(int64_t r) { return r >= 16 && r <= 256 && 256 % r == 0; }
/* KIVI K quantizes each channel over a span of KV_KIVI_SPAN blocks (kern/attn.h),
 * so a KIVI K pool writes, keys and publishes blocks a span at a time, and its
 * residual group R must hold whole spans (R >= 64). */
#define KV_KIVI_SPAN 4
/* Blocks per span: KV_KIVI_SPAN for a KIVI K pool, else 1. */
static inline int64_t kv_pool_span(const kv_pool *p) { return kv_type_is_kivi(p->type_k) ? KV_KIVI_SPAN : 1; }

/* Bytes of one element of a K/V type; 0 for an unknown type. */
size_t kv_type_bytes(kvlm_kv_type type);
/* Bytes of one layer's K (is_v false) or V in one block of n_ch = n_head_kv *
 * head_dim channels, unpadded; 0 for an unknown type or an n_ch the type cannot
 * group (q8/q4: a multiple of 32, KIVI: of 64). */
size_t kv_type_part_bytes(kvlm_kv_type type, int64_t n_ch, bool is_v);

/* Carves budget_bytes into blocks (one aligned allocation). KVLM_ERR_BUDGET if
 * the budget is below one block, KVLM_ERR_INVALID for bad dimensions or type,
 * KVLM_ERR_NOMEM. On failure *pool is zeroed. */
kvlm_err kv_pool_init(kv_pool *pool, const kv_pool_params *params, char *err, size_t errlen);
void     kv_pool_free(kv_pool *pool);   /* leaves *pool zeroed; NULL or zeroed is fine */

/* Layers per block for a model of n_layer layers, of which those with
 * layer_window[il] (NULL: none) are sliding-window layers: the largest count that
 * divides both groups (all n_layer without windows); 0 when it would need more
 * than KV_MAX_TABLES tables. */
int64_t kv_pool_layers_per_block(int64_t n_layer, const bool *layer_window);

/* Bytes of one block for these dimensions (padded as the pool pads it); 0 if invalid. */
size_t kv_pool_block_bytes(int64_t n_layer, int64_t n_head_kv, int64_t head_dim, kvlm_kv_type type_k,
                           kvlm_kv_type type_v);

/* A block with refcount 1, unpublished, contents undefined (NaN in poison mode).
 * Takes the free list head, else evicts the oldest unpinned cached block.
 * KVLM_ERR_BUDGET when neither exists; nothing changes then. */
kvlm_err kv_pool_alloc(kv_pool *pool, kv_block *out, char *err, size_t errlen);
/* Blocks an allocation can still get: n_free + n_cached. Exact as long as every
 * cached block has only cached descendants, which kv_seq guarantees (a sequence
 * holding a published block holds its parent). */
int64_t  kv_pool_available(const kv_pool *pool);

void kv_pool_ref(kv_pool *pool, kv_block b);     /* b must be IN_USE */
/* Drops one reference. The last one sends an unpublished block to the free list
 * (poisoned) and a published one to the newest end of the LRU. */
void kv_pool_unref(kv_pool *pool, kv_block b);

/* Copies all of src's bytes (every layer, K and V, all 16 positions) into dst.
 * dst must be IN_USE with refcount 1 and unpublished: the copy half of copy-on-write. */
void kv_pool_copy(kv_pool *pool, kv_block dst, kv_block src);

/* ---- prefix index ------------------------------------------------------------ */
/* The chained key of a block: XXH3_64 (seed 0) of 89 bytes, fixed little-endian
 * whatever the host, since keys leave the process (disk and Redis tiers):
 *   u8 KV_CHAIN_KEY_VERSION, u64 parent_key, u64 fingerprint, u64 ns, u32 tokens[16]
 * A change to this encoding bumps the version (and kv_block_io's format version). */
#define KV_CHAIN_KEY_VERSION 1
uint64_t kv_pool_chain_key(uint64_t parent_key, const kvlm_token *tokens,
                           uint64_t fingerprint, uint64_t ns);
/* Fills *link for the block after `parent` (KV_BLOCK_NONE: the first block,
 * parent_key ignored and set to KV_ROOT_KEY), computing its key; tab 0 (a caller
 * keying another table sets link->tab after). */
void kv_pool_link(kv_link *link, kv_block parent, uint64_t parent_key,
                  const kvlm_token *tokens, uint64_t fingerprint, uint64_t ns);
/* The same with no parent block but parent_key kept (KV_ROOT_KEY for the first):
 * a window table's block, which pins nothing ("Layer groups" above). */
void kv_pool_link_loose(kv_link *link, uint64_t parent_key, const kvlm_token *tokens, uint64_t fingerprint,
                        uint64_t ns);

/* Publishes full block b (IN_USE, unpublished, its 16 positions written) under
 * link, whose parent must be published. Returns:
 *   b              published; b now pins link->parent
 *   another block  an entry with the same key and identical link exists: it is
 *                  returned with a reference taken (the caller should adopt it
 *                  and unref b, so one copy of the prefix is kept)
 *   KV_BLOCK_NONE  the key is taken by a different link (a hash collision): b
 *                  stays unpublished */
kv_block kv_pool_publish(kv_pool *pool, kv_block b, const kv_link *link);
/* The published block whose link equals *link (key, parent, parent_key, tokens,
 * fingerprint, ns), with a reference taken; KV_BLOCK_NONE if none. A cached hit
 * leaves the LRU. Counts lookups and hits. */
kv_block kv_pool_lookup(kv_pool *pool, const kv_link *link);

/* The owner's hook on evictions (NULL: none). */
void kv_pool_set_evict_hook(kv_pool *pool, kv_pool_evict_fn fn, void *user);
/* A mark the owner may set on a published block (the tiers: "already written
 * below"); it goes when the block is unpublished (evicted), so a reused block id
 * never carries it. */
void kv_pool_mark(kv_pool *pool, kv_block b);
bool kv_pool_marked(const kv_pool *pool, kv_block b);

/* ---- inspection -------------------------------------------------------------- */
void kv_pool_get_stats(const kv_pool *pool, kv_pool_stats *out);
void kv_pool_block_info(const kv_pool *pool, kv_block b, kv_block_info *out);
int32_t kv_pool_refcount(const kv_pool *pool, kv_block b);
bool    kv_pool_is_published(const kv_pool *pool, kv_block b);
/* Walks every list and the hash table and recounts everything; KVLM_ERR_INVALID
 * with the first broken invariant in err. O(n_blocks): for tests. */
kvlm_err kv_pool_check(const kv_pool *pool, char *err, size_t errlen);

/* ---- rows ---------------------------------------------------------------------- */
/* K of layer il in block b: [n_head_kv * head_dim][KV_BLOCK_TOKENS] elements of
 * pool->type_k; element (slot, channel c) at index c * KV_BLOCK_TOKENS + slot.
 * V of position slot (0..15) of layer il: [n_head_kv * head_dim] elements; the 16
 * rows of a layer are contiguous, kv_pool_v(p, b, il, 0) is their base, stride
 * row_bytes. Writing is allowed only into a block the writer holds alone,
 * unpublished. */
static inline void *kv_pool_k(const kv_pool *kp, kv_block b, int64_t il)
{
    return kp->slab + (size_t)b * kp->block_bytes + (size_t)il * (kp->part_k + kp->part_v);
}
static inline void *kv_pool_v(const kv_pool *kp, kv_block b, int64_t il, int64_t slot)
{
    return kp->slab + (size_t)b * kp->block_bytes + (size_t)il * (kp->part_k + kp->part_v) + kp->part_k +
           (size_t)slot * kp->row_bytes;
}
/* Distance in bytes between consecutive positions of one layer inside a block. */
static inline size_t kv_pool_row_stride(const kv_pool *kp) { return kp->row_bytes; }

#endif
