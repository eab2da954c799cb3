/* fuzz_kvblock.c - libFuzzer target for the tier format of one KV block
 * (src/kv/kv_block_io.c), against a small fixed pool: f16 K and V, 2 layers of
 * 1 KV head of 32 channels, layer 1 a window layer of 32 positions, so two
 * block tables of 1 layer (table 0 full, table 1 window; block_bytes 2048; the
 * generator's geometry).
 * For each input, twice: as given, and with its checksum recomputed (so the
 * fuzzer reaches the field checks behind it):
 *   kv_block_io_peek: on success the header is self-consistent (len = header +
 *   payload + 16, key = chain key, table < tables, model layers = layers x
 *   tables); kv_block_decode with the header's own link (its table included):
 *   succeeds exactly when peek did and the header has the pool's geometry and
 *   layout (tables, model layers, the table's window), and then dst holds the
 *   payload and re-encoding gives the input back byte for byte; on failure dst
 *   is untouched (poisoned before).
 * Seeds: fuzz/corpus/kvblock/ (tests/ref/gen_kvblock_corpus.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "kv/kv_block_io.h"
#include "kv/kv_pool.h"

enum { POISON = 0x5a };

static kv_pool pool;
static bool pool_ready;

static void fix_checksum(uint8_t *d, size_t len)
{
    const XXH128_hash_t h = XXH3_128bits(d, len - 16);
    for (int i = 0; i < 8; i++) {
        d[len - 16 + i] = (uint8_t)(h.low64 >> (8 * i));
        d[len - 8 + i] = (uint8_t)(h.high64 >> (8 * i));
    }
}

static void one(const uint8_t *data, size_t size)
{
    char err[256];
    kv_block_hdr h;
    const kvlm_err pe = kv_block_io_peek(data, size, &h, err, sizeof err);
    if (pe != KVLM_OK && pe != KVLM_ERR_FORMAT) __builtin_trap();
    if (pe == KVLM_OK) {
        if (size != KV_BLOCK_IO_HDR_BYTES + h.payload_bytes + KV_BLOCK_IO_SUM_BYTES) __builtin_trap();
        if (h.key != kv_pool_chain_key(h.parent_key, h.tokens, h.fingerprint, h.ns)) __builtin_trap();
        if (h.tab < 0 || h.tab >= h.n_tab || h.n_layer_model != h.n_layer * h.n_tab) __builtin_trap();
    }
    kv_link l;
    memset(&l, 0, sizeof l);
    if (pe == KVLM_OK) {
        l.key = h.key;
        l.parent_key = h.parent_key;
        l.parent = KV_BLOCK_NONE;
        l.fingerprint = h.fingerprint;
        l.ns = h.ns;
        memcpy(l.tokens, h.tokens, sizeof l.tokens);
        l.tab = (int32_t)h.tab;
    }
    kv_block dst;
    if (kv_pool_alloc(&pool, &dst, err, sizeof err) != KVLM_OK) __builtin_trap();
    uint8_t *bytes = kv_pool_k(&pool, dst, 0);   /* [block_bytes] */
    memset(bytes, POISON, pool.block_bytes);
    const kvlm_err de = kv_block_decode(&pool, data, size, &l, dst, err, sizeof err);
    const bool fits = pe == KVLM_OK && h.type_k == pool.type_k && h.type_v == pool.type_v &&
                      h.n_layer == pool.n_layer && h.n_head_kv == pool.n_head_kv && h.head_dim == pool.head_dim &&
                      h.res_tokens == pool.res_tokens && h.n_tab == pool.n_tab &&
                      h.n_layer_model == pool.n_layer_model && h.window == pool.tab_window[h.tab];
    if ((de == KVLM_OK) != fits) __builtin_trap();
    if (de == KVLM_OK) {
        if (memcmp(bytes, data + KV_BLOCK_IO_HDR_BYTES, pool.block_bytes) != 0) __builtin_trap();
        uint8_t *again = malloc(size);
        size_t n = 0;
        if (!again || kv_block_encode(&pool, dst, &l, again, size, &n, err, sizeof err) != KVLM_OK) __builtin_trap();
        if (n != size || memcmp(again, data, size) != 0) __builtin_trap();
        free(again);
    } else {
        if (de != KVLM_ERR_FORMAT) __builtin_trap();
        for (size_t i = 0; i < pool.block_bytes; i++)
            if (bytes[i] != POISON) __builtin_trap();
    }
    kv_pool_unref(&pool, dst);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!pool_ready) {
        char err[256];
        static const bool win[2] = {false, true};
        const kv_pool_params pp = {.n_layer = 2, .n_head_kv = 1, .head_dim = 32, .type_k = KVLM_KV_F16,
                                   .type_v = KVLM_KV_F16, .budget_bytes = 4 * 2048, .layer_window = win,
                                   .window = 32};
        if (kv_pool_init(&pool, &pp, err, sizeof err) != KVLM_OK) __builtin_trap();
        pool_ready = true;
    }
    uint8_t *copy = malloc(size ? size : 1);   /* exactly size bytes: ASan sees any read past them */
    if (!copy) return 0;
    memcpy(copy, data, size);
    one(copy, size);
    if (size >= KV_BLOCK_IO_HDR_BYTES + KV_BLOCK_IO_SUM_BYTES) {
        fix_checksum(copy, size);
        one(copy, size);
    }
    free(copy);
    return 0;
}
