/* kv_tier_disk.h - the disk tier's storage: opaque blobs in one directory, one
 * file per blob, keyed by a u64 block hash, kept within a byte budget by LRU.
 * Room: kv. May touch: kv_tier (the adapter at the end), core (errors), libc and
 * POSIX. Knows nothing of the pool,
 * the model or the blob format: the caller serializes a block (header, payload,
 * checksum) and verifies what comes back; a file is returned as it is on disk,
 * truncated or garbage included, and the caller drops a bad one with kv_disk_remove.
 *
 * Layout of the directory:
 *
 *   DIR/0123456789abcdef.kvb          a final blob: 16 lowercase hex digits of the key
 *   DIR/.tmp-<pid>-<n>-<rand>.kvb     a blob being written (never read)
 *   DIR/anything else                 left alone, not counted
 *
 * Writing (kv_disk_put): temporary name (O_CREAT|O_EXCL), write, fsync, set the
 * file's times to its LRU age, rename to the final name without replacing,
 * fsync the directory. A final name therefore only ever names a complete file:
 * a crash or kill -9 leaves at most a temporary file, which kv_disk_open removes
 * when its writer is dead (its pid is gone) or it is older than a minute.
 *
 * LRU age: a file's mtime, in ns. Every put and get sets it to a fresh time
 * (strictly increasing within a handle), so the order survives a restart and is
 * shared with other processes using the directory.
 *
 * Sharing: two processes (or two handles) may use one directory. Readers never
 * see partial files (rename is atomic); an already-stored key is not rewritten;
 * each handle's index is a cache of the directory: a get or has that finds the
 * file gone drops it (a miss, not an error), and before evicting a handle recounts
 * the directory (at most once a second), so files the other process added count
 * against the budget and files it removed do not. Budgets are per handle: two
 * handles with different budgets on one directory converge to the smaller.
 *
 * Threads: not thread-safe; one owner thread per handle. */
#ifndef KVLM_KV_KV_TIER_DISK_H
#define KVLM_KV_KV_TIER_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"
#include "kv/kv_tier.h"

typedef struct kv_disk kv_disk;

typedef struct kv_disk_stats {
    int64_t files;          /* final files in the index */
    int64_t bytes;          /* their total size */
    int64_t hits;           /* gets that returned a file */
    int64_t misses;         /* gets that found no file */
    int64_t puts;           /* blobs written (already-stored keys not counted) */
    int64_t evictions;      /* files this handle removed for the budget */
    int64_t errors;         /* I/O errors returned (put, get) */
    int64_t bytes_read;
    int64_t bytes_written;
} kv_disk_stats;

/* Opens (creating it and its parents, mode 0700, when missing) the directory dir
 * and indexes its final files; removes stale temporary files (see above). If the
 * files found exceed budget_bytes, the oldest are evicted. KVLM_ERR_INVALID for an
 * empty dir or a zero budget, KVLM_ERR_IO when dir cannot be created or read,
 * KVLM_ERR_NOMEM. *out is set only on success; close it with kv_disk_close. */
kvlm_err kv_disk_open(kv_disk **out, const char *dir, uint64_t budget_bytes, char *err, size_t errlen);

/* Closes the handle; the files stay. NULL is fine. */
void kv_disk_close(kv_disk *d);

/* Stores len bytes under key (the data are copied to disk; the caller keeps them).
 * A key already stored (by this or another process) is not rewritten: its age is
 * refreshed and KVLM_OK returned. On a write failure (ENOSPC, EIO, ...) the
 * temporary file is removed, no final file appears and KVLM_ERR_IO says why.
 * KVLM_ERR_BUDGET (nothing written) when len exceeds the whole budget. After a
 * write, least-recently-used files are evicted until the total fits the budget
 * (the new file is the newest, so it stays). */
kvlm_err kv_disk_put(kv_disk *d, uint64_t key, const void *data, size_t len, char *err, size_t errlen);

/* Reads the file of key into *data (malloc'd, the caller frees; at least 1 byte
 * allocated even for an empty file) and *len, and refreshes its age.
 * A missing file (never stored, evicted, or removed by another process) is a miss:
 * KVLM_ERR_IO with *miss = true and "miss" in err. Any other failure is KVLM_ERR_IO
 * (or KVLM_ERR_NOMEM) with *miss = false. On failure *data = NULL, *len = 0.
 * miss may be NULL. The contents are not checked: the caller verifies them. */
kvlm_err kv_disk_get(kv_disk *d, uint64_t key, void **data, size_t *len, bool *miss,
                     char *err, size_t errlen);

/* Whether a final file of key exists now (asks the file system, updates the index). */
bool kv_disk_has(kv_disk *d, uint64_t key);

/* Deletes the file of key, if any (the caller found its contents invalid). */
void kv_disk_remove(kv_disk *d, uint64_t key);

kv_disk_stats kv_disk_get_stats(const kv_disk *d);

/* Writes the final file name of key ("<16 hex>.kvb", 21 bytes with the NUL) into name. */
void kv_disk_file_name(uint64_t key, char name[static 21]);

/* ---- the disk tier (kv_tier_ops "disk") --------------------------------------------- */

/* Opens a kv_disk on dir with budget_bytes (as kv_disk_open, same errors) and wraps it
 * as a kv_tier: get is kv_disk_get with a missing file a miss (KVLM_OK, *data NULL),
 * put is kv_disk_put, drop is kv_disk_remove, get_stats maps kv_disk_stats (files,
 * bytes -> n_items, bytes_stored), close closes the store and frees the tier. *out is
 * set only on success. The handle it wraps is reachable as (kv_disk *)(*out)->impl. */
kvlm_err kv_tier_disk_new(kv_tier **out, const char *dir, uint64_t budget_bytes, char *err, size_t errlen);

/* ---- test hooks (never used outside tests) ----------------------------------------- */

/* After n_bytes more bytes of blob data have been written, the next write fails
 * with ENOSPC (as a full disk would), once; then the hook is off. n_bytes < 0 turns
 * it off. */
void kv_disk_set_fail_after(kv_disk *d, int64_t n_bytes);

/* Writes blobs in chunks of chunk_bytes (0: the default, 1 MiB) and calls
 * after_chunk(ctx, key, bytes_done) after each chunk is written to the temporary
 * file (before fsync and rename). after_chunk may be NULL. */
void kv_disk_set_write_hook(kv_disk *d, size_t chunk_bytes,
                            void (*after_chunk)(void *ctx, uint64_t key, size_t bytes_done), void *ctx);

#endif
