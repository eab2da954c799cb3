/* test_kv_block_io.c - the tier format of one KV block (src/kv/kv_block_io.c).
 * Room: tests/kv. Touches kv_pool, kv_block_io, xxHash (for the independent encoder).
 *
 *  - round trip on pools of every K/V type (f32, f16, bf16, q8, q4, kivi4 with
 *    its residual, and mixed K/V) with random block bytes: decoded == encoded
 *  - the encoding equals a hand-written LE encoder here, field by field, with the
 *    header's fixed bytes spelled out literally; the chain key equals XXH3_64 of
 *    a hand-built 89-byte LE buffer
 *  - every single-byte corruption of the header and checksum, and of sampled
 *    payload bytes, is refused; so is every truncation and a padded buffer
 *  - a wrong fingerprint / namespace / tokens / parent / key / geometry / type
 *    is refused, each with its own message
 *  - format version 2's table fields (table, tables, layers of the model, window) on a
 *    pool with layer groups: golden bytes, and a block decoded for another table,
 *    window or layout refused; a version 1 image (built here byte by byte) refused
 *  - nothing is written to dst on any failure (dst is poisoned first and compared)
 * Block bytes are random (the format carries them opaquely), so no model is needed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include "kv/kv_block_io.h"
#include "kv/kv_pool.h"

enum { N_LAYER = 2, N_HEAD_KV = 2, HEAD_DIM = 64, POISON = 0xA5 };

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)   /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void pool_make(kv_pool *p, kvlm_kv_type tk, kvlm_kv_type tv, int64_t n_layer, int64_t n_head_kv,
                      int64_t res)
{
    char err[256];
    kv_pool_params pp = {.n_layer = n_layer, .n_head_kv = n_head_kv, .head_dim = HEAD_DIM, .type_k = tk,
                         .type_v = tv, .res_tokens = res};
    pp.budget_bytes = 8 * kv_pool_block_bytes(n_layer, n_head_kv, HEAD_DIM, tk, tv);
    assert_int_equal(kv_pool_init(p, &pp, err, sizeof err), KVLM_OK);
}

static kv_block alloc_block(kv_pool *p)
{
    kv_block b;
    char err[256];
    assert_int_equal(kv_pool_alloc(p, &b, err, sizeof err), KVLM_OK);
    return b;
}

static uint8_t *block_bytes(const kv_pool *p, kv_block b) { return kv_pool_k(p, b, 0); }

static void fill_random(const kv_pool *p, kv_block b)
{
    uint8_t *d = block_bytes(p, b);   /* [block_bytes] */
    for (size_t i = 0; i < p->block_bytes; i++) d[i] = (uint8_t)rnd();
}

static void random_link(kv_link *l, kv_block parent, uint64_t parent_key)
{
    kvlm_token t[KV_BLOCK_TOKENS];
    for (int i = 0; i < KV_BLOCK_TOKENS; i++) t[i] = (kvlm_token)(rnd() % 50000);
    kv_pool_link(l, parent, parent_key, t, rnd(), rnd());
}

static uint8_t *encode(const kv_pool *p, kv_block b, const kv_link *l, size_t *n)
{
    char err[256];
    const size_t cap = kv_block_io_size(p);
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    assert_int_equal(kv_block_encode(p, b, l, buf, cap, n, err, sizeof err), KVLM_OK);
    assert_int_equal(*n, cap);
    return buf;
}

static bool all_poison(const kv_pool *p, kv_block b)
{
    const uint8_t *d = block_bytes(p, b);
    for (size_t i = 0; i < p->block_bytes; i++)
        if (d[i] != POISON) return false;
    return true;
}

/* decode must refuse with KVLM_ERR_FORMAT, leave dst as poisoned, and (if want is
 * not NULL) say want; the message goes to msg if it is not NULL. */
static void expect_reject(const kv_pool *p, const void *data, size_t len, const kv_link *l, kv_block dst,
                          const char *want, char *msg, size_t msglen)
{
    char err[256] = "";
    memset(block_bytes(p, dst), POISON, p->block_bytes);
    const kvlm_err e = kv_block_decode(p, data, len, l, dst, err, sizeof err);
    if (e != KVLM_ERR_FORMAT || !all_poison(p, dst) || (want && !strstr(err, want)))
        fail_msg("len %zu: error %d '%s', wanted FORMAT '%s', dst %s", len, (int)e, err, want ? want : "",
                 all_poison(p, dst) ? "untouched" : "WRITTEN");
    if (msg) snprintf(msg, msglen, "%s", err);
}

/* ---- round trip ------------------------------------------------------------------ */

static void round_trip(kvlm_kv_type tk, kvlm_kv_type tv, int64_t res)
{
    kv_pool p;
    char err[256];
    pool_make(&p, tk, tv, N_LAYER, N_HEAD_KV, res);
    const kv_block a = alloc_block(&p), c = alloc_block(&p);
    fill_random(&p, a);
    fill_random(&p, c);
    kv_link la, lc;
    random_link(&la, KV_BLOCK_NONE, 0);
    assert_int_equal(kv_pool_publish(&p, a, &la), a);
    random_link(&lc, a, la.key);   /* a child: parent_key != KV_ROOT_KEY */
    const kv_block blocks[2] = {a, c};
    const kv_link *links[2] = {&la, &lc};
    for (int i = 0; i < 2; i++) {
        size_t n;
        uint8_t *buf = encode(&p, blocks[i], links[i], &n);
        kv_block_hdr h;
        assert_int_equal(kv_block_io_peek(buf, n, &h, err, sizeof err), KVLM_OK);
        assert_true(h.type_k == tk && h.type_v == tv && h.n_layer == N_LAYER && h.n_head_kv == N_HEAD_KV &&
                    h.head_dim == HEAD_DIM && h.res_tokens == p.res_tokens && h.block_tokens == KV_BLOCK_TOKENS);
        assert_true(h.payload_bytes == p.block_bytes && h.key == links[i]->key &&
                    h.parent_key == links[i]->parent_key && h.fingerprint == links[i]->fingerprint &&
                    h.ns == links[i]->ns);
        assert_memory_equal(h.tokens, links[i]->tokens, sizeof h.tokens);
        const kv_block d = alloc_block(&p);
        memset(block_bytes(&p, d), POISON, p.block_bytes);
        if (kv_block_decode(&p, buf, n, links[i], d, err, sizeof err) != KVLM_OK) fail_msg("decode: %s", err);
        assert_memory_equal(block_bytes(&p, d), block_bytes(&p, blocks[i]), p.block_bytes);
        assert_int_equal(kv_pool_refcount(&p, d), 1);
        assert_false(kv_pool_is_published(&p, d));
        kv_pool_unref(&p, d);
        free(buf);
    }
    assert_int_equal(kv_pool_check(&p, err, sizeof err), KVLM_OK);
    kv_pool_free(&p);
}

static void test_round_trip_f32(void **st) { (void)st; round_trip(KVLM_KV_F32, KVLM_KV_F32, 0); }
static void test_round_trip_f16(void **st) { (void)st; round_trip(KVLM_KV_F16, KVLM_KV_F16, 0); }
static void test_round_trip_bf16(void **st) { (void)st; round_trip(KVLM_KV_BF16, KVLM_KV_BF16, 0); }
static void test_round_trip_q8(void **st) { (void)st; round_trip(KVLM_KV_Q8, KVLM_KV_Q8, 0); }
static void test_round_trip_q4(void **st) { (void)st; round_trip(KVLM_KV_Q4, KVLM_KV_Q4, 0); }
static void test_round_trip_kivi4(void **st) { (void)st; round_trip(KVLM_KV_KIVI4, KVLM_KV_KIVI4, 128); }
static void test_round_trip_mixed(void **st)
{
    (void)st;
    round_trip(KVLM_KV_Q8, KVLM_KV_F16, 0);
    round_trip(KVLM_KV_F16, KVLM_KV_KIVI4, 32);   /* KIVI V only: any residual of whole blocks */
}

/* ---- golden bytes: an independent LE encoder --------------------------------------- */

static void le(uint8_t *d, uint64_t x, int n)
{
    for (int i = 0; i < n; i++) d[i] = (uint8_t)(x >> (8 * i));
}

static void test_golden_encoding(void **st)
{
    (void)st;
    kv_pool p;
    pool_make(&p, KVLM_KV_Q8, KVLM_KV_F16, N_LAYER, N_HEAD_KV, 0);
    const kv_block b = alloc_block(&p);
    fill_random(&p, b);
    kvlm_token t[KV_BLOCK_TOKENS];
    for (int i = 0; i < KV_BLOCK_TOKENS; i++) t[i] = (kvlm_token)(0x01020304 * (i + 1));
    const uint64_t fp = 0x1122334455667788ull, ns = 0x0102030405060708ull, parent_key = 0xa1a2a3a4a5a6a7a8ull;

    /* the chain key, by hand: u8 1, parent_key, fp, ns LE, tokens as u32 LE */
    uint8_t kb[89] = {1, 0xa8, 0xa7, 0xa6, 0xa5, 0xa4, 0xa3, 0xa2, 0xa1, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
                      0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01};
    for (int i = 0; i < KV_BLOCK_TOKENS; i++) le(kb + 25 + 4 * i, (uint32_t)t[i], 4);
    assert_int_equal(kb[25], 0x04);   /* token 0 = 0x01020304: low byte first */
    assert_int_equal(kb[28], 0x01);
    const uint64_t key = XXH3_64bits(kb, sizeof kb);
    assert_true(kv_pool_chain_key(parent_key, t, fp, ns) == key);

    kv_link l;
    kv_pool_link(&l, 0, parent_key, t, fp, ns);   /* parent block 0 stands in: only its key is encoded */
    assert_true(l.key == key);

    /* the header, fixed bytes literally */
    const uint8_t fixed[78] = {
        'K', 'V', 'L', 'M', 'B', 'L', 'K', '1',               /* magic */
        2, 0, 0, 0,                                           /* version 2 */
        158, 0, 0, 0,                                         /* header bytes */
        0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,       /* fingerprint */
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,       /* namespace */
        KVLM_KV_Q8, KVLM_KV_F16,                              /* type_k 2, type_v 1 */
        2, 0, 0, 0,   2, 0, 0, 0,   64, 0, 0, 0,              /* n_layer, n_head_kv, head_dim */
        0, 0, 0, 0,   16, 0, 0, 0,                            /* res_tokens, block_tokens */
        0, 0, 0, 0, 0, 0, 0, 0,                               /* payload bytes: below */
        0, 0, 0, 0, 0, 0, 0, 0,                               /* key: below */
        0xa8, 0xa7, 0xa6, 0xa5, 0xa4, 0xa3, 0xa2, 0xa1,       /* parent key */
    };
    const uint8_t table[16] = {
        0, 0, 0, 0,   1, 0, 0, 0,                             /* table 0 of 1 */
        2, 0, 0, 0,   0, 0, 0, 0,                             /* 2 layers in the model, no window */
    };
    const size_t n = 158 + p.block_bytes + 16;
    uint8_t *want = calloc(1, n);
    assert_non_null(want);
    memcpy(want, fixed, sizeof fixed);
    le(want + 54, p.block_bytes, 8);
    le(want + 62, key, 8);
    for (int i = 0; i < KV_BLOCK_TOKENS; i++) le(want + 78 + 4 * i, (uint32_t)t[i], 4);
    memcpy(want + 142, table, sizeof table);
    memcpy(want + 158, block_bytes(&p, b), p.block_bytes);
    const XXH128_hash_t h = XXH3_128bits(want, n - 16);
    le(want + n - 16, h.low64, 8);
    le(want + n - 8, h.high64, 8);
    /* per layer, n_ch = 128: q8 K 128 x 16 int8 + 4 x 16 f16 scales = 2176, f16 V 16 x 128 x 2 = 4096 */
    assert_int_equal(p.block_bytes, 2 * (2176 + 4096));

    size_t got_n;
    uint8_t *got = encode(&p, b, &l, &got_n);
    assert_int_equal(got_n, n);
    assert_int_equal(kv_block_io_size(&p), n);
    assert_memory_equal(got, want, 158);                  /* header */
    assert_memory_equal(got, want, n);                    /* + payload + checksum */
    free(got);
    free(want);
    kv_pool_free(&p);
}

/* ---- hostile input ------------------------------------------------------------------ */

static void test_every_corruption_rejected(void **st)
{
    (void)st;
    kv_pool p;
    char err[256];
    pool_make(&p, KVLM_KV_F16, KVLM_KV_Q4, N_LAYER, N_HEAD_KV, 0);
    const kv_block b = alloc_block(&p), dst = alloc_block(&p);
    fill_random(&p, b);
    kv_link l;
    random_link(&l, KV_BLOCK_NONE, 0);
    size_t n;
    uint8_t *buf = encode(&p, b, &l, &n);
    int64_t n_tried = 0;
    for (size_t i = 0; i < n; i++) {
        const bool sampled = i < KV_BLOCK_IO_HDR_BYTES || i >= n - 16 || i % 61 == 0 ||
                             i == KV_BLOCK_IO_HDR_BYTES + p.block_bytes - 1;
        if (!sampled) continue;
        static const uint8_t flips[] = {0x01, 0x80, 0xff};
        for (size_t f = 0; f < sizeof flips; f++) {
            buf[i] ^= flips[f];
            kv_block_hdr h;
            if (kv_block_io_peek(buf, n, &h, err, sizeof err) != KVLM_ERR_FORMAT)
                fail_msg("peek accepted byte %zu ^ 0x%02x", i, flips[f]);
            expect_reject(&p, buf, n, &l, dst, NULL, NULL, 0);
            buf[i] ^= flips[f];
            n_tried++;
        }
    }
    print_message("    %lld single-byte corruptions of %zu bytes refused\n", (long long)n_tried, n);
    memset(block_bytes(&p, dst), POISON, p.block_bytes);
    assert_int_equal(kv_block_decode(&p, buf, n, &l, dst, err, sizeof err), KVLM_OK);   /* restored: accepted */
    free(buf);
    kv_pool_free(&p);
}

static void test_every_truncation_rejected(void **st)
{
    (void)st;
    kv_pool p;
    pool_make(&p, KVLM_KV_KIVI4, KVLM_KV_KIVI4, N_LAYER, N_HEAD_KV, 64);
    const kv_block b = alloc_block(&p), dst = alloc_block(&p);
    fill_random(&p, b);
    kv_link l;
    random_link(&l, KV_BLOCK_NONE, 0);
    size_t n;
    uint8_t *buf = encode(&p, b, &l, &n);
    uint8_t *big = malloc(n + 1);
    assert_non_null(big);
    for (size_t len = 0; len < n; len++) {
        uint8_t *tail = malloc(len ? len : 1);   /* exactly len bytes: ASan sees any read past them */
        assert_non_null(tail);
        memcpy(tail, buf, len);
        expect_reject(&p, tail, len, &l, dst, NULL, NULL, 0);
        free(tail);
    }
    memcpy(big, buf, n);
    big[n] = 0;
    expect_reject(&p, big, n + 1, &l, dst, "payload", NULL, 0);   /* one byte too many */
    expect_reject(&p, buf, n - 1, &l, dst, "payload", NULL, 0);
    expect_reject(&p, buf, 10, &l, dst, "shorter", NULL, 0);
    free(big);
    free(buf);
    kv_pool_free(&p);
}

static void test_identity_mismatches(void **st)
{
    (void)st;
    kv_pool p, p_geom, p_type, p_res;
    char err[256];
    pool_make(&p, KVLM_KV_KIVI4, KVLM_KV_KIVI4, N_LAYER, N_HEAD_KV, 64);
    pool_make(&p_geom, KVLM_KV_KIVI4, KVLM_KV_KIVI4, N_LAYER + 1, N_HEAD_KV, 64);   /* another n_layer */
    pool_make(&p_type, KVLM_KV_Q8, KVLM_KV_KIVI4, N_LAYER, N_HEAD_KV, 64);          /* another type_k */
    pool_make(&p_res, KVLM_KV_KIVI4, KVLM_KV_KIVI4, N_LAYER, N_HEAD_KV, 128);       /* another residual */
    const kv_block b = alloc_block(&p), dst = alloc_block(&p);
    fill_random(&p, b);
    kv_link l;
    random_link(&l, 0, 0x5555aaaa5555aaaaull);
    size_t n;
    uint8_t *buf = encode(&p, b, &l, &n);

    enum { N_CASE = 9 };
    char msg[N_CASE][256];
    kv_link w;
    w = l; w.fingerprint ^= 1; w.key = kv_pool_chain_key(w.parent_key, w.tokens, w.fingerprint, w.ns);
    expect_reject(&p, buf, n, &w, dst, "fingerprint", msg[0], sizeof msg[0]);
    w = l; w.ns ^= 1u << 20; w.key = kv_pool_chain_key(w.parent_key, w.tokens, w.fingerprint, w.ns);
    expect_reject(&p, buf, n, &w, dst, "namespace", msg[1], sizeof msg[1]);
    w = l; w.tokens[15]++; w.key = kv_pool_chain_key(w.parent_key, w.tokens, w.fingerprint, w.ns);
    expect_reject(&p, buf, n, &w, dst, "tokens", msg[2], sizeof msg[2]);
    w = l; w.parent_key ^= 2; w.key = kv_pool_chain_key(w.parent_key, w.tokens, w.fingerprint, w.ns);
    expect_reject(&p, buf, n, &w, dst, "parent", msg[3], sizeof msg[3]);
    w = l; w.key ^= 4;   /* the same fields under another key */
    expect_reject(&p, buf, n, &w, dst, "chain key", msg[4], sizeof msg[4]);

    /* a block of another pool, decoded into this one */
    const kv_pool *others[3] = {&p_geom, &p_type, &p_res};
    const char *want[3] = {"geometry", "types", "residual 128"};
    for (int i = 0; i < 3; i++) {
        kv_pool *o = (kv_pool *)others[i];
        const kv_block ob = alloc_block(o);
        fill_random(o, ob);
        size_t on;
        uint8_t *obuf = encode(o, ob, &l, &on);
        expect_reject(&p, obuf, on, &l, dst, want[i], msg[5 + i], sizeof msg[5 + i]);
        free(obuf);
    }
    /* a header whose key does not name its fields, with a valid checksum */
    uint8_t *forged = malloc(n);
    assert_non_null(forged);
    memcpy(forged, buf, n);
    forged[62] ^= 1;
    const XXH128_hash_t h = XXH3_128bits(forged, n - 16);
    le(forged + n - 16, h.low64, 8);
    le(forged + n - 8, h.high64, 8);
    w = l; w.key ^= 1;
    expect_reject(&p, forged, n, &w, dst, "not the chain key", msg[8], sizeof msg[8]);
    free(forged);

    for (int i = 0; i < N_CASE; i++)
        for (int j = i + 1; j < N_CASE; j++)
            if (!strcmp(msg[i], msg[j])) fail_msg("cases %d and %d say the same: %s", i, j, msg[i]);
    for (int i = 0; i < N_CASE; i++) print_message("    %s\n", msg[i]);

    /* the right link still loads */
    assert_int_equal(kv_block_decode(&p, buf, n, &l, dst, err, sizeof err), KVLM_OK);
    assert_memory_equal(block_bytes(&p, dst), block_bytes(&p, b), p.block_bytes);
    free(buf);
    kv_pool_free(&p);
    kv_pool_free(&p_geom);
    kv_pool_free(&p_type);
    kv_pool_free(&p_res);
}

/* ---- layer groups (format version 2) ------------------------------------------------ */

/* A pool of 6 layers, 2 full and 4 window layers of `window` positions: 2 layers per
 * block, table 0 full, tables 1 and 2 window tables (kv_pool.h "Layer groups"). */
static void pool_groups(kv_pool *p, int64_t window)
{
    static const bool win[6] = {1, 1, 0, 1, 1, 0};
    char err[256];
    kv_pool_params pp = {.n_layer = 6, .n_head_kv = N_HEAD_KV, .head_dim = HEAD_DIM, .type_k = KVLM_KV_F16,
                         .type_v = KVLM_KV_F16, .layer_window = win, .window = window};
    pp.budget_bytes = 8 * kv_pool_block_bytes(2, N_HEAD_KV, HEAD_DIM, KVLM_KV_F16, KVLM_KV_F16);
    assert_int_equal(kv_pool_init(p, &pp, err, sizeof err), KVLM_OK);
    assert_int_equal(p->n_tab, 3);
    assert_int_equal(p->n_layer, 2);
}

static void test_table_fields(void **st)
{
    (void)st;
    kv_pool p, p_win, p_flat;
    char err[256];
    pool_groups(&p, 512);
    pool_groups(&p_win, 1024);                                  /* the same layout, another window */
    pool_make(&p_flat, KVLM_KV_F16, KVLM_KV_F16, 2, N_HEAD_KV, 0); /* 2 layers, no groups: same block size */
    assert_int_equal(p_flat.block_bytes, p.block_bytes);
    const kv_block b = alloc_block(&p), dst = alloc_block(&p);
    fill_random(&p, b);
    kv_link l;
    random_link(&l, KV_BLOCK_NONE, 0);
    l.tab = 2;
    size_t n;
    uint8_t *buf = encode(&p, b, &l, &n);
    const uint8_t table[16] = {2, 0, 0, 0, 3, 0, 0, 0, 6, 0, 0, 0, 0x00, 0x02, 0, 0};   /* 2 of 3, 6 layers, 512 */
    assert_memory_equal(buf + 142, table, sizeof table);
    assert_int_equal(buf[34], 2);                               /* n_layer: layers per block */
    kv_block_hdr h;
    assert_int_equal(kv_block_io_peek(buf, n, &h, err, sizeof err), KVLM_OK);
    assert_true(h.version == 2 && h.tab == 2 && h.n_tab == 3 && h.n_layer_model == 6 && h.window == 512 &&
                h.n_layer == 2);
    memset(block_bytes(&p, dst), POISON, p.block_bytes);
    if (kv_block_decode(&p, buf, n, &l, dst, err, sizeof err) != KVLM_OK) fail_msg("decode: %s", err);
    assert_memory_equal(block_bytes(&p, dst), block_bytes(&p, b), p.block_bytes);

    enum { N_CASE = 4 };
    char msg[N_CASE][256];
    kv_link w = l;
    w.tab = 1;                                                  /* another window table */
    expect_reject(&p, buf, n, &w, dst, "table", msg[0], sizeof msg[0]);
    w.tab = 0;                                                  /* the full table */
    expect_reject(&p, buf, n, &w, dst, "table", msg[1], sizeof msg[1]);
    expect_reject(&p_win, buf, n, &l, alloc_block(&p_win), "window 512", msg[2], sizeof msg[2]);
    kv_link l0 = l;
    l0.tab = 0;
    expect_reject(&p_flat, buf, n, &l0, alloc_block(&p_flat), "layout", msg[3], sizeof msg[3]);
    for (int i = 0; i < N_CASE; i++)
        for (int j = i + 1; j < N_CASE; j++)
            if (!strcmp(msg[i], msg[j])) fail_msg("cases %d and %d say the same: %s", i, j, msg[i]);
    for (int i = 0; i < N_CASE; i++) print_message("    %s\n", msg[i]);

    /* a header naming a table outside its layout, checksum valid */
    const uint32_t bad[3][3] = {{3, 3, 6}, {0, 0, 6}, {1, 3, 7}};   /* table, tables, model layers */
    for (int i = 0; i < 3; i++) {
        uint8_t *forged = malloc(n);
        assert_non_null(forged);
        memcpy(forged, buf, n);
        le(forged + 142, bad[i][0], 4);
        le(forged + 146, bad[i][1], 4);
        le(forged + 150, bad[i][2], 4);
        const XXH128_hash_t hh = XXH3_128bits(forged, n - 16);
        le(forged + n - 16, hh.low64, 8);
        le(forged + n - 8, hh.high64, 8);
        assert_int_equal(kv_block_io_peek(forged, n, &h, err, sizeof err), KVLM_ERR_FORMAT);
        assert_non_null(strstr(err, "table"));
        expect_reject(&p, forged, n, &l, dst, "table", NULL, 0);
        free(forged);
    }
    /* the encoder refuses a link naming a table the pool does not have */
    kv_link out = l;
    out.tab = 3;
    size_t n_out = 0;
    assert_int_equal(kv_block_encode(&p, b, &out, buf, n, &n_out, err, sizeof err), KVLM_ERR_INVALID);
    out.tab = -1;
    assert_int_equal(kv_block_encode(&p, b, &out, buf, n, &n_out, err, sizeof err), KVLM_ERR_INVALID);
    free(buf);
    kv_pool_free(&p);
    kv_pool_free(&p_win);
    kv_pool_free(&p_flat);
}

/* An image of format version 1 (the 142-byte header before layer groups, built
 * here field by field with a valid checksum) is refused as a version mismatch. */
static void test_v1_rejected(void **st)
{
    (void)st;
    kv_pool p;
    char err[256];
    pool_make(&p, KVLM_KV_F16, KVLM_KV_F16, N_LAYER, N_HEAD_KV, 0);
    const kv_block b = alloc_block(&p), dst = alloc_block(&p);
    fill_random(&p, b);
    kv_link l;
    random_link(&l, KV_BLOCK_NONE, 0);
    const size_t n = 142 + p.block_bytes + 16;
    uint8_t *v1 = calloc(1, n);
    assert_non_null(v1);
    memcpy(v1, "KVLMBLK1", 8);
    le(v1 + 8, 1, 4);
    le(v1 + 12, 142, 4);
    le(v1 + 16, l.fingerprint, 8);
    le(v1 + 24, l.ns, 8);
    v1[32] = KVLM_KV_F16;
    v1[33] = KVLM_KV_F16;
    le(v1 + 34, N_LAYER, 4);
    le(v1 + 38, N_HEAD_KV, 4);
    le(v1 + 42, HEAD_DIM, 4);
    le(v1 + 50, 16, 4);
    le(v1 + 54, p.block_bytes, 8);
    le(v1 + 62, l.key, 8);
    le(v1 + 70, l.parent_key, 8);
    for (int i = 0; i < KV_BLOCK_TOKENS; i++) le(v1 + 78 + 4 * i, (uint32_t)l.tokens[i], 4);
    memcpy(v1 + 142, block_bytes(&p, b), p.block_bytes);
    const XXH128_hash_t h = XXH3_128bits(v1, n - 16);
    le(v1 + n - 16, h.low64, 8);
    le(v1 + n - 8, h.high64, 8);
    kv_block_hdr hdr;
    assert_int_equal(kv_block_io_peek(v1, n, &hdr, err, sizeof err), KVLM_ERR_FORMAT);
    if (!strstr(err, "version 1")) fail_msg("peek of a v1 image: %s", err);
    char msg[256];
    expect_reject(&p, v1, n, &l, dst, "version 1", msg, sizeof msg);
    print_message("    %s\n", msg);
    free(v1);
    kv_pool_free(&p);
}

/* Bad arguments (not hostile data): KVLM_ERR_INVALID, nothing written. */
static void test_bad_arguments(void **st)
{
    (void)st;
    kv_pool p;
    char err[256];
    pool_make(&p, KVLM_KV_F16, KVLM_KV_F16, N_LAYER, N_HEAD_KV, 0);
    const kv_block b = alloc_block(&p);
    fill_random(&p, b);
    kv_link l;
    random_link(&l, KV_BLOCK_NONE, 0);
    size_t n, n_out = 0;
    uint8_t *buf = encode(&p, b, &l, &n);
    assert_int_equal(kv_block_encode(&p, b, &l, buf, n - 1, &n_out, err, sizeof err), KVLM_ERR_INVALID);
    kv_link bad = l;
    bad.key ^= 1;
    assert_int_equal(kv_block_encode(&p, b, &bad, buf, n, &n_out, err, sizeof err), KVLM_ERR_INVALID);
    assert_int_equal(kv_block_encode(&p, p.n_blocks, &l, buf, n, &n_out, err, sizeof err), KVLM_ERR_INVALID);
    assert_int_equal(kv_block_encode(&p, 5, &l, buf, n, &n_out, err, sizeof err), KVLM_ERR_INVALID);   /* free */
    assert_int_equal(n_out, 0);

    /* dst shared, published or free */
    const kv_block d = alloc_block(&p);
    kv_pool_ref(&p, d);
    assert_int_equal(kv_block_decode(&p, buf, n, &l, d, err, sizeof err), KVLM_ERR_INVALID);
    kv_pool_unref(&p, d);
    assert_int_equal(kv_pool_publish(&p, b, &l), b);
    assert_int_equal(kv_block_decode(&p, buf, n, &l, b, err, sizeof err), KVLM_ERR_INVALID);
    assert_int_equal(kv_block_decode(&p, buf, n, &l, 6, err, sizeof err), KVLM_ERR_INVALID);
    assert_int_equal(kv_block_decode(&p, buf, n, &l, -1, err, sizeof err), KVLM_ERR_INVALID);
    assert_int_equal(kv_block_decode(&p, buf, n, &l, d, err, sizeof err), KVLM_OK);
    free(buf);
    kv_pool_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_f32),  cmocka_unit_test(test_round_trip_f16),
        cmocka_unit_test(test_round_trip_bf16), cmocka_unit_test(test_round_trip_q8),
        cmocka_unit_test(test_round_trip_q4),   cmocka_unit_test(test_round_trip_kivi4),
        cmocka_unit_test(test_round_trip_mixed), cmocka_unit_test(test_golden_encoding),
        cmocka_unit_test(test_every_corruption_rejected), cmocka_unit_test(test_every_truncation_rejected),
        cmocka_unit_test(test_identity_mismatches), cmocka_unit_test(test_table_fields),
        cmocka_unit_test(test_v1_rejected),         cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
