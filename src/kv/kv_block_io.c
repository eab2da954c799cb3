/* kv_block_io.c - encode / verify / decode one KV block in the tier format that
 * kv_block_io.h lays out byte by byte.
 * Room: kv. May touch: kv_pool (its public API and inline accessors), core
 * (errors), libc, xxHash.
 *
 * Every field is written and read as explicit little-endian bytes (put_le /
 * get_le), never by copying a struct, so the bytes are the same on every host.
 * Reading goes in three steps, each refusing with its own one-line reason:
 *   1. framing: length, magic, version, header size, payload size vs length
 *   2. checksum over everything before it (XXH3_128bits)
 *   3. meaning: types, geometry, payload size for them, the table in its layout,
 *      key vs chain key
 * and decode adds 4. identity: the pool's geometry and layout, the caller's link
 * (its table included).
 * Only when all pass is anything written to the destination. */
#include "kv/kv_block_io.h"
#include "core/err.h"

#include <string.h>
#include <xxhash.h>

/* Header field offsets (kv_block_io.h's table). */
enum {
    OFF_MAGIC = 0, OFF_VERSION = 8, OFF_HDR_BYTES = 12, OFF_FP = 16, OFF_NS = 24, OFF_TYPE_K = 32,
    OFF_TYPE_V = 33, OFF_N_LAYER = 34, OFF_N_HEAD_KV = 38, OFF_HEAD_DIM = 42, OFF_RES = 46,
    OFF_BLOCK_TOKENS = 50, OFF_PAYLOAD = 54, OFF_KEY = 62, OFF_PARENT = 70, OFF_TOKENS = 78,
    OFF_TAB = OFF_TOKENS + 4 * KV_BLOCK_TOKENS, OFF_N_TAB = OFF_TAB + 4, OFF_N_LAYER_MODEL = OFF_N_TAB + 4,
    OFF_WINDOW = OFF_N_LAYER_MODEL + 4, OFF_END = OFF_WINDOW + 4
};
_Static_assert((int)OFF_END == (int)KV_BLOCK_IO_HDR_BYTES, "the header table and its size agree");
_Static_assert(sizeof KV_BLOCK_IO_MAGIC - 1 == 8, "the magic is 8 bytes");

static void put_le(uint8_t *d, uint64_t x, int n)
{
    for (int i = 0; i < n; i++) d[i] = (uint8_t)(x >> (8 * i));
}

static uint64_t get_le(const uint8_t *s, int n)
{
    uint64_t x = 0;
    for (int i = 0; i < n; i++) x |= (uint64_t)s[i] << (8 * i);
    return x;
}

size_t kv_block_io_size(const kv_pool *p)
{
    return (size_t)KV_BLOCK_IO_HDR_BYTES + p->block_bytes + KV_BLOCK_IO_SUM_BYTES;
}

kvlm_err kv_block_encode(const kv_pool *p, kv_block b, const kv_link *link, void *out, size_t cap,
                         size_t *n_out, char *err, size_t errlen)
{
    const size_t n = kv_block_io_size(p);
    if (b < 0 || b >= p->n_blocks)
        return err_set(err, errlen, KVLM_ERR_INVALID, "kv block %d out of range [0, %d)", (int)b, (int)p->n_blocks);
    kv_block_info info;
    kv_pool_block_info(p, b, &info);
    if (info.state == KV_BLOCK_FREE)
        return err_set(err, errlen, KVLM_ERR_INVALID, "kv block %d is free: nothing to encode", (int)b);
    if (link->tab < 0 || link->tab >= p->n_tab)
        return err_set(err, errlen, KVLM_ERR_INVALID, "kv block %d: table %d of a layout of %d", (int)b,
                       (int)link->tab, (int)p->n_tab);
    if (link->key != kv_pool_chain_key(link->parent_key, link->tokens, link->fingerprint, link->ns))
        return err_set(err, errlen, KVLM_ERR_INVALID, "kv block %d: its link's key is not the chain key of its fields",
                       (int)b);
    if (cap < n)
        return err_set(err, errlen, KVLM_ERR_INVALID, "kv block encoding needs %zu bytes, buffer has %zu", n, cap);
    uint8_t *o = out;
    memcpy(o + OFF_MAGIC, KV_BLOCK_IO_MAGIC, 8);
    put_le(o + OFF_VERSION, KV_BLOCK_IO_VERSION, 4);
    put_le(o + OFF_HDR_BYTES, KV_BLOCK_IO_HDR_BYTES, 4);
    put_le(o + OFF_FP, link->fingerprint, 8);
    put_le(o + OFF_NS, link->ns, 8);
    o[OFF_TYPE_K] = (uint8_t)p->type_k;
    o[OFF_TYPE_V] = (uint8_t)p->type_v;
    put_le(o + OFF_N_LAYER, (uint64_t)p->n_layer, 4);
    put_le(o + OFF_N_HEAD_KV, (uint64_t)p->n_head_kv, 4);
    put_le(o + OFF_HEAD_DIM, (uint64_t)p->head_dim, 4);
    put_le(o + OFF_RES, (uint64_t)p->res_tokens, 4);
    put_le(o + OFF_BLOCK_TOKENS, KV_BLOCK_TOKENS, 4);
    put_le(o + OFF_PAYLOAD, p->block_bytes, 8);
    put_le(o + OFF_KEY, link->key, 8);
    put_le(o + OFF_PARENT, link->parent_key, 8);
    for (int t = 0; t < KV_BLOCK_TOKENS; t++) put_le(o + OFF_TOKENS + 4 * t, (uint32_t)link->tokens[t], 4);
    put_le(o + OFF_TAB, (uint64_t)link->tab, 4);
    put_le(o + OFF_N_TAB, (uint64_t)p->n_tab, 4);
    put_le(o + OFF_N_LAYER_MODEL, (uint64_t)p->n_layer_model, 4);
    put_le(o + OFF_WINDOW, (uint64_t)p->tab_window[link->tab], 4);
    /* payload: [n_layer][K part_k | V part_v], the block's bytes exactly */
    memcpy(o + KV_BLOCK_IO_HDR_BYTES, kv_pool_k(p, b, 0), p->block_bytes);
    const XXH128_hash_t h = XXH3_128bits(o, KV_BLOCK_IO_HDR_BYTES + p->block_bytes);
    put_le(o + n - 16, h.low64, 8);
    put_le(o + n - 8, h.high64, 8);
    *n_out = n;
    return KVLM_OK;
}

/* A K/V type id a block may carry (kvlm_kv_type, KVLM_KV_SAME excluded). */
static bool type_known(unsigned t) { return t <= (unsigned)KVLM_KV_KIVI2 && kv_type_bytes((kvlm_kv_type)t) != 0; }

kvlm_err kv_block_io_peek(const void *data, size_t len, kv_block_hdr *out, char *err, size_t errlen)
{
    const uint8_t *d = data;
    kv_block_hdr h;
    /* 1. framing */
    if (len < (size_t)KV_BLOCK_IO_HDR_BYTES + KV_BLOCK_IO_SUM_BYTES)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "kv block: %zu bytes, shorter than header and checksum", len);
    if (memcmp(d + OFF_MAGIC, KV_BLOCK_IO_MAGIC, 8) != 0)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "kv block: bad magic (not a KVLMBLK1 block)");
    h.version = (uint32_t)get_le(d + OFF_VERSION, 4);
    if (h.version != KV_BLOCK_IO_VERSION)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "kv block: format version %u, expected %d", (unsigned)h.version,
                       KV_BLOCK_IO_VERSION);
    h.header_bytes = (uint32_t)get_le(d + OFF_HDR_BYTES, 4);
    if (h.header_bytes != KV_BLOCK_IO_HDR_BYTES)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "kv block: header of %u bytes, expected %d",
                       (unsigned)h.header_bytes, KV_BLOCK_IO_HDR_BYTES);
    h.payload_bytes = get_le(d + OFF_PAYLOAD, 8);
    if (h.payload_bytes != len - KV_BLOCK_IO_HDR_BYTES - KV_BLOCK_IO_SUM_BYTES)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "kv block: payload of %llu bytes in %zu bytes (truncated or padded)",
                       (unsigned long long)h.payload_bytes, len);
    /* 2. checksum */
    const XXH128_hash_t sum = XXH3_128bits(d, len - KV_BLOCK_IO_SUM_BYTES);
    if (sum.low64 != get_le(d + len - 16, 8) || sum.high64 != get_le(d + len - 8, 8))
        return err_set(err, errlen, KVLM_ERR_FORMAT, "kv block: checksum mismatch (corrupt)");
    /* 3. meaning */
    const unsigned tk = d[OFF_TYPE_K], tv = d[OFF_TYPE_V];
    if (!type_known(tk) || !type_known(tv))
        return err_set(err, errlen, KVLM_ERR_FORMAT, "kv block: unknown K/V type %u / %u", tk, tv);
    h.type_k = (kvlm_kv_type)tk;
    h.type_v = (kvlm_kv_type)tv;
    h.n_layer = (int64_t)get_le(d + OFF_N_LAYER, 4);
    h.n_head_kv = (int64_t)get_le(d + OFF_N_HEAD_KV, 4);
    h.head_dim = (int64_t)get_le(d + OFF_HEAD_DIM, 4);
    h.res_tokens = (int64_t)get_le(d + OFF_RES, 4);
    h.block_tokens = (int64_t)get_le(d + OFF_BLOCK_TOKENS, 4);
    if (h.block_tokens != KV_BLOCK_TOKENS)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "kv block: %lld tokens per block, expected %d",
                       (long long)h.block_tokens, KV_BLOCK_TOKENS);
    const bool kivi = kv_type_is_kivi(h.type_k) || kv_type_is_kivi(h.type_v);
    if (kivi ? !kv_res_tokens_valid(h.res_tokens) ||
                   (kv_type_is_kivi(h.type_k) && h.res_tokens % (KV_KIVI_SPAN * KV_BLOCK_TOKENS))
             : h.res_tokens != 0)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "kv block: residual of %lld positions invalid for types %u / %u",
                       (long long)h.res_tokens, tk, tv);
    const size_t bb = kv_pool_block_bytes(h.n_layer, h.n_head_kv, h.head_dim, h.type_k, h.type_v);
    if (bb == 0 || bb != h.payload_bytes)
        return err_set(err, errlen, KVLM_ERR_FORMAT,
                       "kv block: payload of %llu bytes, geometry %lld x %lld x %lld of types %u / %u needs %zu",
                       (unsigned long long)h.payload_bytes, (long long)h.n_layer, (long long)h.n_head_kv,
                       (long long)h.head_dim, tk, tv, bb);
    h.tab = (int64_t)get_le(d + OFF_TAB, 4);
    h.n_tab = (int64_t)get_le(d + OFF_N_TAB, 4);
    h.n_layer_model = (int64_t)get_le(d + OFF_N_LAYER_MODEL, 4);
    h.window = (int64_t)get_le(d + OFF_WINDOW, 4);
    if (h.n_tab < 1 || h.n_tab > KV_MAX_TABLES || h.tab >= h.n_tab || h.n_layer_model != h.n_layer * h.n_tab)
        return err_set(err, errlen, KVLM_ERR_FORMAT,
                       "kv block: table %lld of %lld tables of %lld layers in a model of %lld layers",
                       (long long)h.tab, (long long)h.n_tab, (long long)h.n_layer, (long long)h.n_layer_model);
    h.fingerprint = get_le(d + OFF_FP, 8);
    h.ns = get_le(d + OFF_NS, 8);
    h.key = get_le(d + OFF_KEY, 8);
    h.parent_key = get_le(d + OFF_PARENT, 8);
    for (int t = 0; t < KV_BLOCK_TOKENS; t++) h.tokens[t] = (kvlm_token)(uint32_t)get_le(d + OFF_TOKENS + 4 * t, 4);
    if (h.key != kv_pool_chain_key(h.parent_key, h.tokens, h.fingerprint, h.ns))
        return err_set(err, errlen, KVLM_ERR_FORMAT, "kv block: key is not the chain key of its parent, tokens and ids");
    *out = h;
    return KVLM_OK;
}

kvlm_err kv_block_decode(const kv_pool *p, const void *data, size_t len, const kv_link *expect, kv_block dst,
                         char *err, size_t errlen)
{
    if (dst < 0 || dst >= p->n_blocks)
        return err_set(err, errlen, KVLM_ERR_INVALID, "kv block %d out of range [0, %d)", (int)dst, (int)p->n_blocks);
    kv_block_info info;
    kv_pool_block_info(p, dst, &info);
    if (info.state != KV_BLOCK_IN_USE || info.refcount != 1 || info.published)
        return err_set(err, errlen, KVLM_ERR_INVALID, "kv block %d must be held once and unpublished to load into",
                       (int)dst);
    kv_block_hdr h;
    kvlm_err e = kv_block_io_peek(data, len, &h, err, errlen);
    if (e != KVLM_OK) return e;
    /* 4. identity: this pool's layout, the caller's link */
    if (h.type_k != p->type_k || h.type_v != p->type_v)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "kv block: K/V types %d / %d, pool has %d / %d", (int)h.type_k,
                       (int)h.type_v, (int)p->type_k, (int)p->type_v);
    if (h.n_layer != p->n_layer || h.n_head_kv != p->n_head_kv || h.head_dim != p->head_dim ||
        h.res_tokens != p->res_tokens || h.payload_bytes != p->block_bytes)
        return err_set(err, errlen, KVLM_ERR_FORMAT,
                       "kv block: geometry %lld x %lld x %lld (residual %lld), pool has %lld x %lld x %lld (%lld)",
                       (long long)h.n_layer, (long long)h.n_head_kv, (long long)h.head_dim, (long long)h.res_tokens,
                       (long long)p->n_layer, (long long)p->n_head_kv, (long long)p->head_dim,
                       (long long)p->res_tokens);
    if (h.n_tab != p->n_tab || h.n_layer_model != p->n_layer_model)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "kv block: a layout of %lld tables of %lld layers, pool has %d of %lld",
                       (long long)h.n_tab, (long long)h.n_layer_model, (int)p->n_tab, (long long)p->n_layer_model);
    if (h.tab != expect->tab || h.window != p->tab_window[h.tab])
        return err_set(err, errlen, KVLM_ERR_FORMAT,
                       "kv block: of table %lld (window %lld), expected table %d (window %lld)", (long long)h.tab,
                       (long long)h.window, (int)expect->tab,
                       (long long)(expect->tab >= 0 && expect->tab < p->n_tab ? p->tab_window[expect->tab] : -1));
    if (h.fingerprint != expect->fingerprint)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "kv block: model fingerprint differs");
    if (h.ns != expect->ns) return err_set(err, errlen, KVLM_ERR_FORMAT, "kv block: namespace differs");
    if (h.parent_key != expect->parent_key)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "kv block: parent key differs");
    if (memcmp(h.tokens, expect->tokens, sizeof h.tokens) != 0)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "kv block: tokens differ");
    if (h.key != expect->key) return err_set(err, errlen, KVLM_ERR_FORMAT, "kv block: chain key differs");
    memcpy(kv_pool_k(p, dst, 0), (const uint8_t *)data + KV_BLOCK_IO_HDR_BYTES, p->block_bytes);
    return KVLM_OK;
}
