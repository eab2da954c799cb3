/* kv_seq.h - one sequence's view of the KV cache: a block table over a kv_pool
 * (vLLM's PagedAttention), with copy-on-write sharing, rollback, fork and
 * automatic prefix caching.
 * Room: kv. May touch: kv_pool, kv_block_io, core (errors), kern (f16 conversion). Knows
 * nothing of the model file, the forward pass or threads.
 *
 *   position pos lives in block blocks[pos / 16], slot pos % 16:
 *
 *   blocks: [ b7 | b2 | b9 | b4 ]          n_blocks = 4, 64 slots
 *   pos:     0-15 16-31 32-47 48-63
 *            <-------- n_pos = 40 ----->   [n_pos, 64) reserved, not yet committed
 *            <- n_published = 2 ->         b7, b2 findable by their prefix
 *
 * Invariants:
 *   n_pos <= n_blocks * 16; the seq holds one reference on each of blocks[0, n_blocks)
 *   a block at index > n_pos / 16 is held by this seq alone and unpublished
 *   (only the block holding position n_pos may be shared or published: reserve
 *   copies it before a write, copy-on-write; in a KIVI K pool, whose K is
 *   written a span of kv_pool_span() blocks at a time, so may the earlier
 *   blocks of its span, and reserve copies them too)
 *   blocks[0, n_published) are published under keys[0, n_published), and if
 *   blocks[i] is published, i > 0, its link.parent is blocks[i-1]: a sequence
 *   holding a published block holds its parent, so a cached block has only
 *   cached descendants and kv_pool_available() is exact
 *   keys[0, n_keyed) are the chain keys of the first n_keyed full blocks under
 *   (fingerprint, ns); n_published <= n_keyed <= n_pos / 16 (KIVI K: whole
 *   spans only, and a block's key covers the tokens to its span's end)
 *
 * The write protocol of a forward step over n tokens:
 *   kv_seq_reserve(s, n)  ->  kv_seq_store(s, il, pos, k, v) for every layer and
 *   pos in [n_pos, n_pos+n)  ->  kv_seq_advance(s, n)  ->  optionally kv_seq_publish.
 * Reads of positions < n_pos go through kv_seq_k_elem/kv_seq_v_row, or per block
 * through kv_pool_k(pool, blocks[i], il) (channel-major) and kv_pool_v (rows).
 *
 * KIVI (pool->res_tokens = R > 0): positions are grouped in residual groups of R
 * positions, [g R, (g + 1) R). A query at position p reads the blocks before its
 * group start gs(p) = floor(p / R) R quantized from the pool, and the positions
 * [gs(p), p] in f32. The sequence keeps the f32 K/V of its current group,
 * [gs(n_pos), n_pos), in `res`; a block's KIVI V is quantized into the pool
 * when its 16 positions are known, a span's KIVI K when its 64 are
 * (kv_seq_stage). What a query reads depends only on its position, so batch
 * and single steps give the same bits. The f32 values of a
 * group that has been left cannot be recovered from the pool, so:
 *   truncate into an earlier group keeps only up to that group's start (the
 *   caller recomputes the rest), and a prefix hit stops at a group boundary.
 *
 * Layer groups (a pool with sliding-window layers, kv_pool.h): the sequence keeps
 * one block table per table of the pool's layout, all over the same positions;
 * the functions here take the model's layer il and act on every table. A window
 * table's blocks wholly before the window leave it (kv_seq_slide), so its live
 * memory stays at about window + one block per table whatever n_pos. Its blocks
 * are published under loose links in the table's own namespace, so a prefix hit
 * needs, besides the full tables' chains from the root, only the window tables'
 * blocks of the window before the hit's end (kv_seq_attach_ram .. attach_end, whose
 * steps also take blocks from the tiers below RAM). A truncate
 * into a window already let go keeps nothing (read n_pos).
 *
 * Ownership: kv_seq_init borrows the pool, which must outlive the sequence;
 * kv_seq_free returns every block to the pool. Not thread-safe. */
#ifndef KVLM_KV_KV_SEQ_H
#define KVLM_KV_KV_SEQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"
#include "kv/kv_pool.h"

typedef struct kv_seq {
    kv_pool *pool;          /* borrowed */
    kv_block *blocks;       /* [cap] block table; [0, n_blocks) held */
    uint64_t *keys;         /* [cap] chain key of block i, valid for i < n_keyed */
    int64_t n_blocks, cap;
    int64_t n_pos;          /* committed positions */
    int64_t n_keyed;        /* leading full blocks whose chain key is known */
    int64_t n_published;    /* leading blocks known to be published under keys[] */
    uint64_t fingerprint, ns;   /* what keys[] were computed with (when n_keyed > 0) */
    float *res;             /* KIVI: [n_layer][R / 16] f32 blocks (kv_seq_stage_block_floats each)
                               holding positions [gs(n_pos), n_pos); NULL until the first reserve */
    bool no_publish;        /* set by kv_shift: blocks hold K moved to other positions, so
                               kv_seq_publish does nothing (the owner clears it; kv_shift.h) */
    /* layer groups (kv_pool.h): this struct is table 0; the pool's other tables are
       sub[0, n_tab - 1), allocated on first use (NULL before, and always without groups) */
    int32_t tab;            /* which table of the pool's layout this is */
    int64_t window;         /* positions the table keeps for attention (0: all) */
    int64_t n_dropped;      /* a window table's leading blocks let go: blocks[0, n_dropped) are KV_BLOCK_NONE */
    struct kv_seq *sub;
    /* the tiers below RAM (kv_tier.h) */
    int64_t n_below;        /* leading published blocks handed below: the owner's write cursor (cache_spill
                               moves it; truncate keeps it <= n_published, an attach sets it to n_published) */
    int64_t attach_lim;     /* table 0, during an attach (attach_ram .. attach_end): no block at or past it is
                               to be had (a miss there), so the prefix ends before it */
} kv_seq;

/* Table t (< kv_seq_n_tables) of sequence s: s itself for t = 0. */
static inline int32_t kv_seq_n_tables(const kv_seq *s) { return s->sub ? s->pool->n_tab : 1; }
static inline kv_seq *kv_seq_tab(kv_seq *s, int32_t t) { return t == 0 ? s : &s->sub[t - 1]; }

/* The table holding model layer il, and il's layer within its blocks. */
static inline const kv_seq *kv_seq_table(const kv_seq *s, int64_t il)
{
    const int32_t t = s->pool->layer_tab[il];
    return t == 0 ? s : &s->sub[t - 1];
}
static inline int64_t kv_seq_slot(const kv_seq *s, int64_t il) { return s->pool->layer_slot[il]; }

/* Floats of one f32 block of one layer as kv_seq_stage lays it out:
 * K [n_ch][16] channel-major, then V [16][n_ch] rows (n_ch = n_head_kv * head_dim). */
static inline size_t kv_seq_stage_block_floats(const kv_pool *p)
{
    return 2 * (size_t)KV_BLOCK_TOKENS * (size_t)(p->n_head_kv * p->head_dim);
}
/* Start of the residual group of position pos (KIVI only). */
static inline int64_t kv_seq_group_start(const kv_pool *p, int64_t pos) { return pos / p->res_tokens * p->res_tokens; }
/* Floats of a stage for batches of up to n_batch positions (0 without KIVI). */
static inline size_t kv_seq_stage_floats(const kv_pool *p, int64_t n_batch)
{
    if (p->res_tokens == 0) return 0;
    return (size_t)((p->res_tokens + n_batch) / KV_BLOCK_TOKENS + 2) * kv_seq_stage_block_floats(p);
}

/* KIVI's store for layer il of a forward step over positions [pos0, pos0 + n),
 * pos0 = n_pos, reserved:
 *   k, v: [n][n_head_kv * head_dim] f32
 *   stage <- f32 blocks of positions [gs(pos0), pos0 + n): the residual, then k, v
 *            (block i at stage + i * kv_seq_stage_block_floats; what attention
 *            reads for the positions of each query's own group)
 *   every block (KIVI V) and span (KIVI K) completed by these positions is
 *   quantized into the pool, and the residual of layer il becomes
 *   [gs(pos0 + n), pos0 + n).
 * stage: kv_seq_stage_floats(pool, n) floats. */
void kv_seq_stage(kv_seq *s, int64_t il, int64_t pos0, int64_t n, const float *k, const float *v, float *stage);

/* An empty sequence over pool. Allocates nothing. */
void kv_seq_init(kv_seq *s, kv_pool *pool);
/* Releases every block (tail first, so a cached chain is evicted from its end)
 * and the tables; leaves *s zeroed. NULL or zeroed is fine. */
void kv_seq_free(kv_seq *s);

/* Makes positions [n_pos, n_pos + n_new) writable: allocates the blocks that do
 * not exist yet, and copies the block holding position n_pos to a fresh block
 * first if it is shared (refcount > 1) or published. Idempotent. On
 * KVLM_ERR_BUDGET (the pool cannot supply the blocks even by evicting every
 * cached one; nothing is evicted then) or KVLM_ERR_NOMEM, the sequence and the
 * refcounts are unchanged. */
kvlm_err kv_seq_reserve(kv_seq *s, int64_t n_new, char *err, size_t errlen);

/* Stores k, v: [n_head_kv * head_dim] f32, converted to the pool's type, at
 * (il, pos). pos must have been reserved since the last fork/truncate. */
void kv_seq_store(kv_seq *s, int64_t il, int64_t pos, const float *k, const float *v);

/* K alone, for kv_shift (kv_shift.h), which rewrites K in blocks the sequence holds
 * alone, unpublished:
 *   kv_seq_store_k       k: [n_head_kv * head_dim] f32 -> K of (il, pos), pos < n_blocks * 16,
 *                        in the pool's K type, which must not be KIVI
 *   kv_seq_store_k_span  KIVI K: the span of blocks [b0, b0 + KV_KIVI_SPAN) of layer il
 *                        (b0 a multiple of it) from its 64 positions in f32: blk0 the
 *                        first block's K [n_ch][16] channel-major, the next ones bf floats apart */
void kv_seq_store_k(kv_seq *s, int64_t il, int64_t pos, const float *k);
void kv_seq_store_k_span(kv_seq *s, int64_t il, int64_t b0, const float *blk0, size_t bf);

/* Commits n reserved positions: n_pos += n. */
void kv_seq_advance(kv_seq *s, int64_t n);

/* Blocks the sequence holds in its window tables (window true) or its full ones. */
int64_t kv_seq_held(const kv_seq *s, bool window);

/* Window tables: lets go of the blocks wholly before the next query's window
 * (position n_pos sees [n_pos + 1 - window, n_pos]; KIVI K: whole spans), oldest
 * first; published ones go to the LRU as cached blocks, others are freed. The
 * owner calls it after each step, after kv_seq_publish (and after writing the
 * published blocks to the tiers below), so the window's blocks stay findable. */
void kv_seq_slide(kv_seq *s);

/* Rollback: drops positions >= n_keep (n_keep >= n_pos keeps them all) and
 * releases every block past the new end, reserved ones included. A kept partial
 * block that is shared or published is copied by the next reserve. KIVI: if
 * n_keep lies inside a residual group before the current one, only the
 * positions before that group's start are kept; read n_pos for the result. */
void kv_seq_truncate(kv_seq *s, int64_t n_keep);

/* dst (empty: initialised or truncated to 0, same pool) becomes a copy of src's
 * committed positions sharing all of src's blocks (refcount + 1 each, no bytes
 * copied). src's reservation past a shared partial block is void until src
 * reserves again. KVLM_ERR_INVALID if dst is not empty, KVLM_ERR_NOMEM. */
kvlm_err kv_seq_fork(kv_seq *dst, const kv_seq *src, char *err, size_t errlen);

/* Publishes every full block of tokens[0, n_tokens) (the sequence's own tokens,
 * n_tokens <= n_pos) not yet published (none while no_publish is set), each under the key chained from the one
 * before, continuing from the keys of earlier calls. A block whose content is
 * already published by another sequence is replaced by that block (one copy
 * kept) if this sequence holds it alone. Publishing stops quietly there if a
 * fork shares it, and at a hash collision (the key is taken by other content);
 * a later call tries again. KVLM_ERR_INVALID if n_tokens > n_pos, if (fingerprint, ns)
 * differ from an earlier call on this sequence, or if tokens disagree with keys
 * recorded earlier (blocks counted in n_published are trusted, not re-hashed). */
kvlm_err kv_seq_publish(kv_seq *s, const kvlm_token *tokens, int64_t n_tokens,
                        uint64_t fingerprint, uint64_t ns, char *err, size_t errlen);

/* On an empty sequence: looks up the chain of full blocks of tokens[0, n_tokens)
 * and attaches the hits in order, stopping at the first miss. *n_reused gets the
 * positions reused (now committed): a multiple of 16 (KIVI: of its residual group), at most
 * floor((n_tokens - 1) / 16) * 16 so that the caller computes at least one token
 * and has fresh logits. KVLM_ERR_INVALID if the sequence is not empty,
 * KVLM_ERR_NOMEM (nothing attached). */
kvlm_err kv_seq_attach_prefix(kv_seq *s, const kvlm_token *tokens, int64_t n_tokens,
                              uint64_t fingerprint, uint64_t ns, int64_t *n_reused,
                              char *err, size_t errlen);

/* kv_seq_attach_prefix in steps, for a prefix found partly in RAM and partly in
 * the tiers below (kv_tier.h):
 *   kv_seq_attach_ram    the RAM hits: the full tables' chains from the root, nothing
 *                        settled yet (with layer groups the windows are looked up by
 *                        attach_end; KIVI: not yet trimmed to a residual group)
 *   kv_seq_next_wants    what to ask the tiers for next, in the order to ask (a
 *                        chain load stops at its first miss), up to cap: the full
 *                        tables' chain blocks after those attached (block by block,
 *                        every full table), and once no more of those can come, each
 *                        window table's blocks of the window before the end the full
 *                        tables reached that RAM does not have (looked up in RAM here,
 *                        a hit is kept); 0: nothing more to ask
 *   kv_seq_attach_image  attaches want w from a block image (kv_block_io.h): verified
 *                        against the link that table and position expect (checksum,
 *                        geometry, layout, table, types, key, parent key, tokens,
 *                        fingerprint, ns), copied into a fresh block and published; a
 *                        block already in RAM under that link is taken instead.
 *                        KVLM_ERR_FORMAT: the image does not verify; KVLM_ERR_BUDGET:
 *                        no block free; KVLM_ERR_INVALID: w is not wanted (any more)
 *                        or a collision. On any error the sequence is unchanged.
 *   kv_seq_attach_miss   w is not to be had (no tier has it, or its image failed):
 *                        the prefix ends before w's block
 *   kv_seq_attach_end    settles on the largest end k (a multiple of 16; KIVI: of its
 *                        residual group) for which the full tables hold [0, k) and
 *                        every window table the window before position k (the blocks
 *                        still unprobed are looked up in RAM, from k down; k only
 *                        falls), releases the rest and returns n_pos = k, the
 *                        positions reused
 * Rounds: next_wants, then attach what the tiers had in order and report the first
 * want they lacked, then next_wants again until it gives 0 (two rounds at most for a
 * model with layer groups when nothing fails: the chains, then the windows; one
 * without). Without tiers: attach_ram then attach_end. */
typedef struct kv_want {
    uint64_t key;           /* the chain key to ask for */
    int32_t tab;            /* the block's table */
    int64_t block;          /* its index in that table */
} kv_want;
kvlm_err kv_seq_attach_ram(kv_seq *s, const kvlm_token *tokens, int64_t n_tokens, uint64_t fingerprint,
                           uint64_t ns, char *err, size_t errlen);
int64_t  kv_seq_next_wants(kv_seq *s, const kvlm_token *tokens, int64_t n_tokens, kv_want *out, int64_t cap);
kvlm_err kv_seq_attach_image(kv_seq *s, const kvlm_token *tokens, int64_t n_tokens, const kv_want *w,
                             const void *image, size_t len, char *err, size_t errlen);
void     kv_seq_attach_miss(kv_seq *s, const kv_want *w);
int64_t  kv_seq_attach_end(kv_seq *s, const kvlm_token *tokens);   /* attach_ram's tokens */

/* One position of one layer, pos < n_blocks * 16. K: channel c (of n_head_kv *
 * head_dim) alone, since K is stored channel-major; V: the row [n_head_kv][head_dim].
 * Elements of pool->type_k / type_v, valid until the next reserve/truncate/free. */
static inline const void *kv_seq_k_elem(const kv_seq *s, int64_t il, int64_t pos, int64_t c)
{
    const kv_seq *u = kv_seq_table(s, il);
    return (const uint8_t *)kv_pool_k(s->pool, u->blocks[pos / KV_BLOCK_TOKENS], kv_seq_slot(s, il)) +
           ((size_t)c * KV_BLOCK_TOKENS + (size_t)(pos % KV_BLOCK_TOKENS)) * s->pool->elt_k;
}
static inline const void *kv_seq_v_row(const kv_seq *s, int64_t il, int64_t pos)
{
    return kv_pool_v(s->pool, kv_seq_table(s, il)->blocks[pos / KV_BLOCK_TOKENS], kv_seq_slot(s, il),
                     pos % KV_BLOCK_TOKENS);
}

#endif
