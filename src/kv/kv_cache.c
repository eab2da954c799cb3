/* kv_cache.c - see kv_cache.h. */
#include "kv/kv_cache.h"
#include "core/err.h"
#include "kern/quant.h"

#include <stdlib.h>
#include <string.h>

size_t kv_cache_type_bytes(kvlm_kv_type type)
{
    switch (type) {
    case KVLM_KV_F32: return 4;
    case KVLM_KV_F16: return 2;
    }
    return 0;
}

kvlm_err kv_cache_init(kv_cache *c, int64_t n_layer, int64_t n_head_kv, int64_t head_dim,
                       int64_t n_ctx, kvlm_kv_type type, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    size_t eb = kv_cache_type_bytes(type);
    if (eb == 0) return err_set(err, errlen, KVLM_ERR_INVALID, "unknown KV cache type %d", (int)type);
    if (n_layer <= 0 || n_head_kv <= 0 || head_dim <= 0 || n_ctx <= 0)
        return err_set(err, errlen, KVLM_ERR_INVALID, "KV cache dimensions must be positive");
    size_t row, rows, total;
    if (__builtin_mul_overflow((size_t)n_head_kv, (size_t)head_dim * eb, &row) ||
        __builtin_mul_overflow((size_t)n_layer, (size_t)n_ctx, &rows) ||
        __builtin_mul_overflow(row, rows, &total))
        return err_set(err, errlen, KVLM_ERR_INVALID, "KV cache size overflows");
    c->k = malloc(total);
    c->v = malloc(total);
    if (!c->k || !c->v) {
        free(c->k);
        free(c->v);
        memset(c, 0, sizeof *c);
        return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory for the KV cache (2 x %zu bytes)", total);
    }
    c->n_layer = n_layer;
    c->n_head_kv = n_head_kv;
    c->head_dim = head_dim;
    c->n_ctx = n_ctx;
    c->type = type;
    c->elt_bytes = eb;
    c->row_bytes = row;
    return KVLM_OK;
}

void kv_cache_free(kv_cache *c)
{
    if (!c) return;
    free(c->k);
    free(c->v);
    memset(c, 0, sizeof *c);
}

int64_t kv_cache_bytes_per_token(const kv_cache *c) { return 2 * (int64_t)c->row_bytes * c->n_layer; }
int64_t kv_cache_bytes_reserved(const kv_cache *c) { return kv_cache_bytes_per_token(c) * c->n_ctx; }

/* row: [n_head_kv*head_dim] f32 -> dst in the cache type */
static void store_row(const kv_cache *c, uint8_t *dst, const float *row)
{
    const int64_t n = c->n_head_kv * c->head_dim;
    if (c->type == KVLM_KV_F32) {
        memcpy(dst, row, (size_t)n * sizeof(float));
    } else {
        uint16_t *d = (uint16_t *)dst;
        for (int64_t i = 0; i < n; i++) d[i] = f32_to_fp16(row[i]);
    }
}

void kv_cache_store(kv_cache *c, int64_t il, int64_t pos, const float *k, const float *v)
{
    size_t off = ((size_t)il * (size_t)c->n_ctx + (size_t)pos) * c->row_bytes;
    store_row(c, c->k + off, k);
    store_row(c, c->v + off, v);
}

void kv_cache_truncate(kv_cache *c, int64_t n_keep)
{
    if (n_keep < 0) n_keep = 0;
    if (n_keep < c->n_pos) c->n_pos = n_keep;
}
