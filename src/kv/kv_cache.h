/* kv_cache.h - the KV cache of one sequence: for every layer, K and V of every
 * past position.
 * Room: kv. May touch: core, kern (f16 conversion). Knows nothing of the model
 * file, tokens or threads.
 *
 *   layer il:  k[il]: [n_ctx][n_head_kv][head_dim]   (element type `type`)
 *              v[il]: [n_ctx][n_head_kv][head_dim]
 *   positions [0, n_pos) hold valid K/V; the rest is reserved, not yet written.
 *
 * Callers reach rows only through kv_cache_k_row()/kv_cache_v_row(), so the
 * storage behind them (one slab today, paged blocks later) can change without
 * touching the forward pass. Memory is allocated once at init for n_ctx
 * positions: a full context is KVLM_ERR_CONTEXT_FULL, never a reallocation. */
#ifndef KVLM_KV_KV_CACHE_H
#define KVLM_KV_KV_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"

typedef struct kv_cache {
    int64_t n_layer, n_head_kv, head_dim, n_ctx;
    kvlm_kv_type type;
    size_t elt_bytes;     /* bytes per element of `type` */
    size_t row_bytes;     /* n_head_kv * head_dim * elt_bytes: one position of one layer, K or V */
    int64_t n_pos;        /* valid positions */
    uint8_t *k, *v;       /* [n_layer][n_ctx][row_bytes] */
} kv_cache;

kvlm_err kv_cache_init(kv_cache *c, int64_t n_layer, int64_t n_head_kv, int64_t head_dim,
                       int64_t n_ctx, kvlm_kv_type type, char *err, size_t errlen);
void     kv_cache_free(kv_cache *c);   /* leaves *c zeroed; a zeroed cache is fine */

size_t kv_cache_type_bytes(kvlm_kv_type type);   /* 0 for an unknown type */
/* K and V of one position, all layers. */
int64_t kv_cache_bytes_per_token(const kv_cache *c);
int64_t kv_cache_bytes_reserved(const kv_cache *c);

/* Stores k, v: [n_head_kv*head_dim] f32 (converted to the cache type) at (il, pos).
 * pos < n_ctx; does not move n_pos. */
void kv_cache_store(kv_cache *c, int64_t il, int64_t pos, const float *k, const float *v);

/* One position of one layer: [n_head_kv][head_dim] elements of c->type. */
static inline const void *kv_cache_k_row(const kv_cache *c, int64_t il, int64_t pos)
{
    return c->k + ((size_t)il * (size_t)c->n_ctx + (size_t)pos) * c->row_bytes;
}
static inline const void *kv_cache_v_row(const kv_cache *c, int64_t il, int64_t pos)
{
    return c->v + ((size_t)il * (size_t)c->n_ctx + (size_t)pos) * c->row_bytes;
}

/* Drops positions >= n_keep (rollback). n_keep > n_pos is a no-op. */
void kv_cache_truncate(kv_cache *c, int64_t n_keep);

#endif
