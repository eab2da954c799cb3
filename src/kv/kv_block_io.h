/* kv_block_io.h - the wire/disk form of one published KV block, shared by every
 * tier below the pool (disk files, Redis values).
 * Room: kv. May touch: kv_pool, core (errors), libc, xxHash. Knows nothing of
 * files, sockets, requests or threads: bytes in, bytes out.
 *
 * Encoding, fixed little-endian whatever the host, written field by field:
 *
 *   off  size  field
 *     0     8  magic "KVLMBLK1"
 *     8     4  format version (KV_BLOCK_IO_VERSION = 2)
 *    12     4  header bytes (KV_BLOCK_IO_HDR_BYTES = 158)
 *    16     8  model fingerprint
 *    24     8  namespace (the block's table's: kv_seq.h)
 *    32     1  type_k (kvlm_kv_type)
 *    33     1  type_v
 *    34     4  n_layer: layers per block (the pool's; all the model's without layer groups)
 *    38     4  n_head_kv
 *    42     4  head_dim
 *    46     4  res_tokens (KIVI residual R, 0 otherwise)
 *    50     4  block_tokens (KV_BLOCK_TOKENS)
 *    54     8  payload bytes (= kv_pool_block_bytes of that geometry and types)
 *    62     8  chain key
 *    70     8  parent key (KV_ROOT_KEY for a first block)
 *    78    64  tokens[16] as u32
 *   142     4  table: which block table of the layout (kv_pool.h "Layer groups") the block is of
 *   146     4  n_tab: tables of the layout (1 without layer groups)
 *   150     4  n_layer_model: the model's layers (= n_layer * n_tab)
 *   154     4  window: the table's window in positions (0: a table of full layers)
 *   158     P  payload: the block's raw bytes as kv_pool_k / kv_pool_v lay them out
 *              (all of block_bytes, padding included)
 * 158 + P  16  XXH3_128bits over bytes [0, 158 + P): low 64 bits then high, each LE
 *
 * Version 1 (until layer groups) had bytes [0, 142) of this header and no table
 * fields; such images are refused (a format version error: a miss, dropped by the
 * tiers like any block that does not verify, and computed again).
 *
 * The key is kv_pool_chain_key(parent key, tokens, fingerprint, ns); a reader
 * recomputes it, so a header whose key does not name its contents is refused.
 * Data read back is hostile: every length and field is checked before use. */
#ifndef KVLM_KV_KV_BLOCK_IO_H
#define KVLM_KV_KV_BLOCK_IO_H

#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"
#include "kv/kv_pool.h"

#define KV_BLOCK_IO_MAGIC "KVLMBLK1"
enum { KV_BLOCK_IO_VERSION = 2, KV_BLOCK_IO_HDR_BYTES = 158, KV_BLOCK_IO_SUM_BYTES = 16 };

/* The header fields of one encoded block (kv_block_io_peek). */
typedef struct kv_block_hdr {
    uint32_t version, header_bytes;
    uint64_t fingerprint, ns;
    kvlm_kv_type type_k, type_v;
    int64_t n_layer, n_head_kv, head_dim, res_tokens, block_tokens;
    uint64_t payload_bytes;
    uint64_t key, parent_key;
    kvlm_token tokens[KV_BLOCK_TOKENS];
    int64_t tab, n_tab, n_layer_model, window;   /* the block's table of the layout */
} kv_block_hdr;

/* Bytes of one encoded block of p's geometry: header + block_bytes + checksum. */
size_t kv_block_io_size(const kv_pool *p);

/* Encodes block b (full: its 16 positions written, usually published) with the
 * identity *link into out[0, cap); the table fields come from link->tab and p's
 * layout. *n_out gets kv_block_io_size(p). KVLM_ERR_INVALID if cap is too small,
 * b is out of range, link->tab is not a table of p or link's key is not
 * kv_pool_chain_key of its fields (nothing is promised about out then). */
kvlm_err kv_block_encode(const kv_pool *p, kv_block b, const kv_link *link, void *out, size_t cap,
                         size_t *n_out, char *err, size_t errlen);

/* Parses and verifies data[0, len) (hostile) without a pool: exact length,
 * magic, version, header size, checksum, sane types and geometry, payload size
 * equal to the pool's block size for them, a table inside a layout of
 * n_layer_model = n_layer * n_tab layers, key equal to the chain key of the
 * header's fields. KVLM_ERR_FORMAT with a one-line reason; *out is written
 * only on success. For a tier's start-up index. */
kvlm_err kv_block_io_peek(const void *data, size_t len, kv_block_hdr *out, char *err, size_t errlen);

/* Verifies data as kv_block_io_peek does, then that the header matches p's
 * geometry, K/V types and layout (n_tab, n_layer_model, the table's window) and
 * *expect's table, key, parent key, tokens, fingerprint and namespace exactly;
 * then copies the payload into dst. KVLM_ERR_FORMAT with a
 * one-line reason and dst untouched when anything differs. dst follows
 * kv_pool_copy's rules: IN_USE, refcount 1, unpublished (KVLM_ERR_INVALID
 * otherwise); the caller publishes it afterwards. */
kvlm_err kv_block_decode(const kv_pool *p, const void *data, size_t len, const kv_link *expect, kv_block dst,
                         char *err, size_t errlen);

#endif
