/* kv_tier_redis.h - the Redis tier's storage: opaque blobs on one or more Redis
 * servers, keyed by a u64 block hash, shared by every kvlm instance that uses them.
 * Room: kv. May touch: kv_tier (the adapter at the end), core (errors), hiredis (Debian's libhiredis-dev 0.14.1: no
 * URL parser, no TLS), libc and POSIX. Knows nothing of the pool, the model or the
 * blob format: the caller serializes a block and verifies what comes back (an image
 * is returned exactly as Redis holds it, garbage included; the caller drops a bad
 * one with kv_redis_remove).
 *
 * URLs (kv_redis_parse_urls; a comma-separated list, one per node):
 *
 *   redis://[user:password@]host[:port][/db]     port 6379, db 0 by default;
 *                                                host a name, IPv4 or [IPv6]
 *   unix://[user:password@]/path.sock[?db=N]     a local socket
 *
 * user and password may be %XX-encoded; ":password@" alone sends AUTH password,
 * "user:password@" sends AUTH user password (a Redis 6+ ACL login); "user@" with no
 * password is refused. rediss:// is KVLM_ERR_UNSUPPORTED ("TLS not supported"); any
 * other form is KVLM_ERR_INVALID saying what is wrong.
 *
 * Keys and values: key "<prefix><16 lowercase hex digits of the hash>" (prefix
 * "kvlm:blk:" by default), value the blob's bytes; SET key value [EX ttl]. A key that
 * expired or that maxmemory evicted is a plain miss.
 *
 * Placement (kv_redis_pick): rendezvous (highest-random-weight) hashing. Each node
 * has an id, XXH3-64 of its canonical name ("tcp:host:port/db" or "unix:path/db";
 * the credentials are not part of it), and a hash's node is the one with the highest
 *
 *     score(node, hash) = XXH3_64bits_withSeed(hash as 8 little-endian bytes, node id)
 *
 * (ties, which need a 64-bit collision, go to the lower index). So placement does not
 * depend on the order of the URLs; adding a node moves only the hashes the new node
 * wins (about 1/n), removing one moves only that node's hashes.
 *
 * Faults cost a miss, never a crash or a hang. Every call is bounded: connect and
 * each read/write by a timeout (redisConnectWithTimeout, redisSetTimeout; 200 ms by
 * default; a peer that trickles bytes can stretch one call to a few timeouts, and name
 * resolution (getaddrinfo, inside hiredis) is not bounded: give an IP address or a
 * socket where DNS may be slow). A node whose connection fails (refused, reset,
 * timeout, protocol error, AUTH or SELECT refused) is closed and its circuit breaker
 * opens for a back-off that doubles with each failure in a row (min .. max, 100 ms .. 30 s by default); while it is open no
 * connect is attempted and calls fail at once ("breaker open", counted as skipped);
 * when it expires the next call is the probe, and a probe that connects closes the
 * breaker. A reply of an unexpected type (an error reply such as WRONGTYPE or NOAUTH)
 * is an error for that call only; the connection stays. SIGPIPE from a peer that went
 * away is blocked and consumed on the calling thread around each call.
 *
 * Threads: not thread-safe; one owner thread per handle. */
#ifndef KVLM_KV_KV_TIER_REDIS_H
#define KVLM_KV_KV_TIER_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"
#include "kv/kv_tier.h"

enum {
    KV_REDIS_MAX_NODES = 64,
    KV_REDIS_HOST_MAX  = 256,     /* bytes with the NUL */
    KV_REDIS_PATH_MAX  = 108,     /* sun_path */
    KV_REDIS_CRED_MAX  = 256,
};

typedef enum kv_redis_kind { KV_REDIS_TCP, KV_REDIS_UNIX } kv_redis_kind;

/* One parsed URL. For TCP, host is without brackets ("::1"); for UNIX, path is set
 * and host/port are unused. has_password false means no AUTH. */
typedef struct kv_redis_url {
    kv_redis_kind kind;
    char host[KV_REDIS_HOST_MAX];
    int  port;
    char path[KV_REDIS_PATH_MAX];
    char user[KV_REDIS_CRED_MAX];        /* "" for password-only AUTH */
    char password[KV_REDIS_CRED_MAX];
    bool has_password;
    int  db;                             /* 0 .. INT32_MAX */
} kv_redis_url;

/* Parses one URL (no commas) into *out. Pure. */
kvlm_err kv_redis_parse_url(const char *url, kv_redis_url *out, char *err, size_t errlen);

/* Parses a comma-separated list into out[0..*n) (at most cap entries, and at most
 * KV_REDIS_MAX_NODES). An empty element, a duplicate node (same canonical name) or
 * too many URLs is KVLM_ERR_INVALID; the message names the bad URL's position. Pure. */
kvlm_err kv_redis_parse_urls(const char *list, kv_redis_url *out, size_t cap, size_t *n,
                             char *err, size_t errlen);

/* The canonical name of a node (see Placement) into name[0..cap). */
void kv_redis_node_name(const kv_redis_url *u, char *name, size_t cap);

/* Rendezvous placement: the index in [0, n) of the node whose id (XXH3-64 of its
 * canonical name) scores highest for hash. n >= 1. Pure. */
size_t kv_redis_pick(uint64_t hash, const uint64_t *node_ids, size_t n);

typedef struct kv_redis_opts {
    int64_t     connect_timeout_ms;   /* 0: 200 */
    int64_t     command_timeout_ms;   /* 0: 200 (each read and write) */
    int64_t     backoff_min_ms;       /* 0: 100 */
    int64_t     backoff_max_ms;       /* 0: 30000 */
    int64_t     ttl_sec;              /* 0: no TTL (--cache-redis-ttl) */
    const char *prefix;               /* NULL: "kvlm:blk:" (at most 64 bytes) */
} kv_redis_opts;

typedef struct kv_redis_stats {
    int64_t hits;           /* gets that returned a value */
    int64_t misses;         /* gets of a key not there (never stored, expired, evicted) */
    int64_t puts;           /* values stored */
    int64_t errors;         /* calls that failed talking to a node (timeouts included) */
    int64_t timeouts;       /* of which: connect or command timeouts */
    int64_t skipped;        /* calls refused at once by an open breaker */
    int64_t connects;       /* connect attempts (probes included) */
    int64_t bytes_read;
    int64_t bytes_written;
    int64_t nodes_down;     /* nodes whose breaker is open now */
} kv_redis_stats;

typedef struct kv_redis kv_redis;

/* Parses urls and sets up the nodes; connects lazily (a Redis that is down at start
 * costs misses, not a failed start: kv_redis_check reports it). opts may be NULL.
 * KVLM_ERR_INVALID / KVLM_ERR_UNSUPPORTED from the parser or for a bad option,
 * KVLM_ERR_NOMEM. *out is set only on success; close it with kv_redis_close. */
kvlm_err kv_redis_open(kv_redis **out, const char *urls, const kv_redis_opts *opts,
                       char *err, size_t errlen);

/* Closes the connections; the values stay on the servers. NULL is fine. */
void kv_redis_close(kv_redis *r);

/* Connects every node whose breaker allows it and PINGs it; KVLM_ERR_IO with the
 * first failing node and why (for a start-up warning). */
kvlm_err kv_redis_check(kv_redis *r, char *err, size_t errlen);

/* Stores len bytes under key on its node (copied; the caller keeps them), with the
 * TTL if one is set. A failure (node down, breaker open, timeout, error reply) is
 * KVLM_ERR_IO, counted; nothing is known to be stored then. */
kvlm_err kv_redis_put(kv_redis *r, uint64_t key, const void *data, size_t len, char *err, size_t errlen);

/* Reads key's value into *data (malloc'd, the caller frees; at least 1 byte allocated
 * even for an empty value) and *len. A key not there is a miss: KVLM_ERR_IO with
 * *miss = true and "miss" in err. Any other failure is KVLM_ERR_IO (KVLM_ERR_NOMEM)
 * with *miss = false. On failure *data = NULL, *len = 0. miss may be NULL. */
kvlm_err kv_redis_get(kv_redis *r, uint64_t key, void **data, size_t *len, bool *miss,
                      char *err, size_t errlen);

/* Whether key is on its node now (EXISTS); false on any failure. */
bool kv_redis_has(kv_redis *r, uint64_t key);

/* Deletes key from its node, if there (the caller found it invalid); failures are
 * counted and otherwise ignored. */
void kv_redis_remove(kv_redis *r, uint64_t key);

kv_redis_stats kv_redis_get_stats(const kv_redis *r);

/* The number of nodes, and the index of key's node (kv_redis_pick over their ids). */
size_t kv_redis_n_nodes(const kv_redis *r);
size_t kv_redis_node_of(const kv_redis *r, uint64_t key);

/* Writes key's Redis key ("<prefix><16 hex>") into name[0..cap). */
void kv_redis_key_name(const kv_redis *r, uint64_t key, char *name, size_t cap);

/* ---- the Redis tier (kv_tier_ops "redis") ------------------------------------------- */

/* Opens a kv_redis on urls with opts (as kv_redis_open, same errors; no connection
 * yet) and wraps it as a kv_tier: get is kv_redis_get with a key not there a miss
 * (KVLM_OK, *data NULL) and every other failure, an open breaker included, an error;
 * put is kv_redis_put, drop kv_redis_remove; get_stats maps kv_redis_stats (errors
 * = errors + skipped; n_items, bytes_stored = what this handle wrote: puts,
 * bytes_written); close closes the store and frees the tier. *out is set only on
 * success. The handle it wraps is reachable as (kv_redis *)(*out)->impl. */
kvlm_err kv_tier_redis_new(kv_tier **out, const char *urls, const kv_redis_opts *opts, char *err, size_t errlen);

#endif
