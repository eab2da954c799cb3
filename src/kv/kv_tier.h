/* kv_tier.h - the tiers below the KV block pool: where published blocks go when they
 * leave RAM, and where a prefix-index miss looks before computing (issue 14).
 * Room: kv. May touch: kv_pool, kv_block_io, core (errors). Knows nothing of the model
 * file, requests or HTTP; a tier is a store of verified block images keyed by chain key.
 *
 * Why tiers. The pool's prefix index (kv_pool.h) lives and dies with the process and
 * its RAM budget: a restart, a second instance or an eviction means computing a shared
 * prefix again. Providers' prompt caching and the systems users pick for it (LMCache,
 * SGLang's HiCache, vLLM's KV connectors, llama.cpp's slot files) keep published
 * blocks in slower, larger, longer-lived or shared stores. kvlm does the same with one
 * mechanism for every store:
 *
 *     RAM pool (kv_pool)  --publish-->  write queue  -->  disk tier  -->  Redis tier
 *          ^                                                 |               |
 *          +------------- load on a prefix-index miss -------+---------------+
 *
 * What travels. A block image (kv_block_io.h): a fixed little-endian header (format
 * version, model fingerprint, namespace, K/V types and geometry, the block's table of
 * the layer layout (a sliding-window model keeps its full and its window layers in
 * tables of their own: kv_pool.h "Layer groups"), the block's chain key, its parent's
 * key and its 16 token ids), the block's bytes exactly as the pool holds
 * them, and a 128-bit checksum over both. The chain key is computed over a fixed
 * little-endian encoding (kv_pool_chain_key), so two processes, or one before and
 * after a restart, agree on it; it covers the namespace (tenant, cache_salt), so tenants
 * stay apart in every tier as they are in RAM.
 *
 * Exactness. A tier is never trusted: an image is used only if it decodes and verifies
 * against what the sequence expects at that position (checksum, fingerprint, types,
 * geometry, table, key, parent key, tokens, namespace) — the same fields a RAM hit compares
 * (kv_link). A block that does not verify is a miss (and is removed from that tier):
 * it is recomputed, never used. A verified image's bytes are the bytes the pool held
 * when it was published, so a hit from any tier gives the same bits as computing it.
 *
 * Writing. Write-through (the default) queues every newly published block for every
 * tier; a writer thread off the scheduler drains the queue, and a request's response
 * completes only after the blocks it published are in every tier (kv_tiers_flush_to).
 * Write-evict queues a block only when the pool evicts it. SIGINT/SIGTERM drain the
 * queue before exit. A tier that fails (disk full, Redis down) counts the error and the
 * block is simply not there: serving goes on.
 *
 * Reading. On a prefix-index miss at block i, the sequence asks the tiers, in order,
 * for the chain key of block i (then i + 1, ...); each image found is verified,
 * copied into a fresh pool block and published, exactly as if it had been computed.
 * A model with layer groups asks in two rounds: the full tables' chains first, then
 * each window table's blocks of the window before the end those reached (only what
 * RAM lacks), and keeps the longest prefix for which it has both (kv_seq.h).
 * A lookup that would block (a slow tier) makes only its own request wait: the
 * scheduler keeps stepping the others.
 *
 * Threads (kv_tiers.h). One writer thread drains the write queue in FIFO order, each
 * image to every tier in lookup order; every queued item has a ticket, tickets
 * complete in order, and a request waits for (or is called back at, kv_tiers_after)
 * the ticket of its last published block. One loader thread runs loads (chains of
 * keys, stopping at the first key no tier has) in FIFO order; the scheduler polls
 * them, so only the request that asked waits, and cancelling one returns at once.
 * Each tier handle has its own mutex, taken around every call by the writer, the
 * loader and synchronous lookups alike, so a slow tier holds up only the calls that
 * reach it: a lookup answered by the disk never waits for a stuck Redis. A hit in a
 * lower tier is queued for the tiers above it (promotion), and an image the caller
 * rejects is dropped from its tier and, after that promotion, from the tiers above.
 * Compression (zstd, optional) happens on the writer thread and is undone on lookup.
 *
 * The interface below is what each tier implements; kv_tiers strings them together. */
#ifndef KVLM_KV_KV_TIER_H
#define KVLM_KV_KV_TIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "kvlm.h"

/* Counters of one tier (kvlm_cache_stats, --stats, /metrics). */
typedef struct kv_tier_stats {
    int64_t hits, misses, puts, evictions, errors, invalid;  /* invalid: failed verification */
    int64_t bytes_read, bytes_written;
    int64_t n_items, bytes_stored;
    double  load_seconds;                                    /* summed latency of gets */
} kv_tier_stats;

/* One store of block images keyed by chain key. get returns a malloc'd image or a
 * miss (KVLM_OK with *data NULL: a key the store does not have is never an error);
 * any other failure is an error (KVLM_ERR_IO, err says why). put stores an image
 * (storing one already there is not an error); drop removes an image the caller
 * found invalid; get_stats reports the store's own counters; close closes the store
 * and frees the kv_tier itself. A tier is used by one thread at a time (kv_tiers
 * takes the tier's own mutex around every call). Adapters: kv_tier_disk_new
 * (kv_tier_disk.h), kv_tier_redis_new (kv_tier_redis.h). */
typedef struct kv_tier kv_tier;
typedef struct kv_tier_ops {
    const char *name;                                        /* "disk", "redis" */
    kvlm_err (*get)(kv_tier *t, uint64_t key, void **data, size_t *len, char *err, size_t errlen);
    kvlm_err (*put)(kv_tier *t, uint64_t key, const void *data, size_t len, char *err, size_t errlen);
    void     (*drop)(kv_tier *t, uint64_t key);
    void     (*get_stats)(const kv_tier *t, kv_tier_stats *out);
    void     (*close)(kv_tier *t);
} kv_tier_ops;

struct kv_tier {
    const kv_tier_ops *ops;
    void *impl;
};

/* For adapters of a store whose get reports a miss as a failure with *miss set:
 * KVLM_OK for a miss (the data stay NULL), else rc with the store's message. */
static inline kvlm_err kv_tier_get_result(kvlm_err rc, bool miss, const char *msg, char *err, size_t errlen)
{
    if (rc == KVLM_OK || miss) return KVLM_OK;
    if (err && errlen) snprintf(err, errlen, "%s", msg);
    return rc;
}

#endif
