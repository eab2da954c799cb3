/* kv_tiers.h - the tiers below the block pool strung together: one write queue
 * drained by a writer thread into every tier, lookups in tier order (disk, then
 * Redis), promotion of what a lower tier had into the tiers above it, chains of
 * keys loaded by a loader thread, optional zstd compression, per-tier counters.
 * Room: kv. May touch: kv_tier (the interface), core (errors, clock), libc,
 * pthreads, zstd. Knows nothing of the pool, models, requests or HTTP: an image is
 * opaque bytes keyed by a u64 (the caller encodes and verifies block images).
 *
 *   put(key, image) --> [write queue, FIFO, tickets 1, 2, 3, ...] --> writer thread
 *                                                        | for each item, tier 0, 1, ..
 *   get(key) -----------> tier 0 ? --miss--> tier 1 ? --hit--> image (+ promotion:
 *                           (per-tier mutex)                  queued for tiers < 1)
 *   load(k0..kn) --> [load queue, FIFO] --> loader thread: get(k0), get(k1), ...
 *                                           until the first key no tier has
 *
 * Threads. Each tier handle is used by one thread at a time: the writer, the loader
 * and synchronous kv_tiers_get callers take that tier's mutex around each call, and
 * only that one, so a slow tier never blocks a lookup that a faster tier above it
 * answers. Counters live under one separate stats mutex (kv_tiers_get_stats never
 * waits for a tier). Lock order: a tier's mutex, then the stats mutex; the queue
 * mutexes are never held around a tier call.
 *
 * Tickets. Every item of the write queue (a put, a promotion, the drop that follows
 * a rejected promoted image) gets the next ticket; the writer completes them in
 * order, so "ticket T written" means every item <= T was attempted on every tier it
 * was queued for. A put dropped for a full queue gets no ticket (0).
 *
 * Stored form. With compress, the writer stores
 *
 *   "KVLMZST1" | u64 LE raw size | one zstd frame (level 1)
 *
 * unless that is not smaller than the image (then the image as it is). Lookups undo
 * it whatever compress says (a directory written with compression reads without),
 * bounded by max_image_bytes: a frame that lies about its size, is truncated, has
 * trailing bytes or would decode past the bound is invalid, and never allocates more
 * than the bound. An image that itself starts with the magic is always wrapped, so
 * an uncompressed image is never mistaken for a compressed one.
 *
 * Counting (kvlm_tier_stats per tier): each lookup in a tier is one hit or one miss;
 * a miss also covers a tier that failed (errors + 1) and a stored value that did not
 * decode (invalid + 1, dropped from that tier). An image handed to the caller is a
 * hit, and kv_tiers_reject counts it invalid as well. puts and bytes_written count
 * successful writes (bytes as stored), bytes_read the bytes a tier returned; dropped
 * counts writes given up (queue full, out of memory); evictions, n_items and
 * bytes_stored are the tier's own (kv_tier_stats, refreshed after each call). The
 * histogram holds each lookup's latency (tier call plus decoding). */
#ifndef KVLM_KV_KV_TIERS_H
#define KVLM_KV_KV_TIERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"
#include "kv/kv_tier.h"

typedef enum kv_write_mode { KV_WRITE_THROUGH = 0, KV_WRITE_EVICT = 1 } kv_write_mode;

typedef struct kv_tiers_params {
    kv_write_mode mode;          /* only recorded for callers (kv_tiers_mode); kv_tiers writes whatever is put */
    bool compress;               /* zstd level 1 on put, undone on get */
    size_t max_image_bytes;      /* largest image a get may return (decompressed or not); larger = invalid;
                                    0 = KV_TIERS_MAX_IMAGE_DEFAULT */
    size_t max_queue_bytes;      /* pending write bytes beyond which a put is dropped; 0 = 1 GiB */
    void (*on_load)(void *user); /* called on the loader thread each time a load makes progress or
                                    finishes (also for loads kv_tiers_free cancels); may be NULL */
    void *user;
} kv_tiers_params;
#define KV_TIERS_MAX_IMAGE_DEFAULT ((size_t)256 << 20)
#define KV_TIERS_MAX_QUEUE_DEFAULT ((size_t)1 << 30)

typedef struct kv_tiers kv_tiers;

/* Starts the writer and the loader thread. KVLM_ERR_NOMEM, or KVLM_ERR_IO when a
 * thread cannot be started. *out is set only on success. */
kvlm_err kv_tiers_create(const kv_tiers_params *p, kv_tiers **out, char *err, size_t errlen);

/* Appends tier (lookup order = add order, at most KVLM_MAX_TIERS) and takes ownership
 * of it: it is closed on failure too. Only before the first put, get or load
 * (KVLM_ERR_INVALID after, or when full). */
kvlm_err kv_tiers_add(kv_tiers *t, kv_tier *tier, char *err, size_t errlen);
int      kv_tiers_n(const kv_tiers *t);
kv_write_mode kv_tiers_mode(const kv_tiers *t);

/* Drains the write queue (every pending item is attempted; every kv_tiers_after
 * callback is called), cancels loads (the loader finishes the key in flight; the
 * caller still frees its kv_load handles, before or after), joins the threads,
 * closes the tiers. NULL is fine. */
void     kv_tiers_free(kv_tiers *t);

/* ---- writing (any thread) ----------------------------------------------------------- */

/* Takes ownership of the malloc'd image (len bytes; the caller must not touch it
 * after) and queues it for every tier. Returns its ticket (> 0, increasing), or 0
 * when it was dropped (queue full or out of memory: the image is freed and the drop
 * counted in every tier). */
int64_t  kv_tiers_put(kv_tiers *t, uint64_t key, void *image, size_t len);
int64_t  kv_tiers_last_ticket(const kv_tiers *t);

/* Whether every item with a ticket <= ticket has been attempted on every tier
 * (true for ticket <= 0). */
bool     kv_tiers_written(kv_tiers *t, int64_t ticket);

/* Blocks until kv_tiers_written(ticket) and the kv_tiers_after callbacks of every
 * ticket up to it have returned; a ticket beyond the last handed out waits for the
 * last one. Never from a kv_tiers_after callback (the writer would wait for
 * itself). */
void     kv_tiers_flush_to(kv_tiers *t, int64_t ticket);
void     kv_tiers_flush(kv_tiers *t);   /* flush_to(last ticket) */

/* fn(user) is called exactly once, when everything <= ticket is written: at once on
 * the caller's thread if it already is, else on the writer thread, right after the
 * writer completes that ticket (callbacks of one ticket in the order they were
 * registered, tickets in order). A ticket beyond the last handed out means the last.
 * fn may call any kv_tiers function but kv_tiers_flush*, kv_tiers_free.
 * KVLM_ERR_NOMEM (fn is not called) only. */
kvlm_err kv_tiers_after(kv_tiers *t, int64_t ticket, void (*fn)(void *user), void *user);

/* ---- reading, synchronous (any thread) ---------------------------------------------- */

/* The image of key from the first tier holding one that decodes. Always KVLM_OK:
 * *image (malloc'd, the caller frees) and *len, or *image NULL and *len 0 for a miss
 * in every tier; a tier that fails counts an error and is a miss, and its message is
 * left in err (for a log) even though the result is KVLM_OK. *tier = the index of
 * the tier it came from (-1 on a miss); tier may be NULL. On a hit in tier i > 0 the
 * stored bytes are also queued for tiers 0 .. i-1 (promotion). */
kvlm_err kv_tiers_get(kv_tiers *t, uint64_t key, void **image, size_t *len, int *tier,
                      char *err, size_t errlen);

/* The image of key from tier failed the caller's verification: counted invalid in
 * that tier (now) and dropped from it and from the tiers above it (a write-queue
 * item, behind the promotion the get queued there), so the caller never waits on a
 * slow tier. */
void     kv_tiers_reject(kv_tiers *t, int tier, uint64_t key);

/* ---- reading, asynchronous ---------------------------------------------------------- */

/* A chain of keys fetched in order by the loader thread (loads run one after the
 * other, FIFO), stopping at the first key no tier has. Each fetch is a
 * kv_tiers_get (promotion included). */
typedef struct kv_load kv_load;

/* Copies keys[0..n). NULL on out of memory. n <= 0: a load that is done at once. */
kv_load *kv_tiers_load(kv_tiers *t, const uint64_t *keys, int64_t n);

/* The number of images fetched so far (they are of keys[0..count), a prefix), and
 * *done when it will not grow (a miss, all keys, cancelled). Any thread. */
int64_t  kv_load_poll(kv_load *l, bool *done);

/* Moves ownership of image i (i < kv_load_poll's count) to the caller, with its
 * length and the tier it came from (tier may be NULL). NULL if already taken or
 * out of range. */
void    *kv_load_take(kv_load *l, int64_t i, size_t *len, int *tier);

/* Cancels the load if it is still running (the loader stops after the key in flight,
 * without waiting here: returns at once), frees the images not taken and the
 * handle. Any thread; valid after kv_tiers_free too. NULL is fine. */
void     kv_load_free(kv_load *l);

/* ---- counters ----------------------------------------------------------------------- */

/* The counters of tier i (name included); all zero for an i out of range. Any thread,
 * while the threads run. */
void     kv_tiers_get_stats(const kv_tiers *t, int i, kvlm_tier_stats *out);

/* ---- the stored form (pure; used by the threads, exposed for tests and fuzzing) ---- */

/* The stored form of image[0..len) (see Stored form; compress false: only an image
 * starting with the magic is wrapped) into *out (malloc'd) and *out_len.
 * KVLM_ERR_NOMEM (zstd's own failures included). */
kvlm_err kv_tiers_encode(const void *image, size_t len, bool compress, void **out, size_t *out_len,
                         char *err, size_t errlen);

/* The image of a stored form: a malloc'd copy of stored (no magic, at most max_image
 * bytes) or its decompression. KVLM_ERR_FORMAT for anything that does not decode
 * exactly to at most max_image bytes (hostile input: the declared size is checked
 * before anything is allocated, and zstd writes only into that buffer), KVLM_ERR_NOMEM. On failure *image = NULL, *image_len = 0. */
kvlm_err kv_tiers_decode(const void *stored, size_t len, size_t max_image, void **image, size_t *image_len,
                         char *err, size_t errlen);

#endif
