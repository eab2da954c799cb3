/* gen_kvblock_corpus.c - writes the seed corpus of fuzz/fuzz_kvblock.c: a few valid
 * encodings of KV blocks (src/kv/kv_block_io.h), random bytes under fixed seeds.
 * Room: tests/ref. May touch: kv_pool, kv_block_io, libc.
 *   first.bin   f16/f16, 2 layers (layer 1 a window layer of 32 positions: two tables
 *               of 1 layer) x 1 x 32 (the fuzz target's pool), table 0's first block
 *   child.bin   the same pool, a child of first.bin
 *   window.bin  the same pool, table 1's (the window layer's) first block
 *   flat.bin    f16/f16, 1 layer x 1 x 32, no groups: peeks fine, the fuzz pool
 *               refuses its layout
 *   q8.bin      q8/q8, 1 x 1 x 32: peeks fine, the fuzz pool refuses its types
 *   kivi.bin    kivi4 K, f16 V, 1 x 1 x 64, residual 64
 *   v1.bin      first.bin's block in format version 1 (142-byte header, written here
 *               byte by byte): refused by version
 * Built with the tests (make: build/gen_kvblock_corpus); scripts/fuzz.sh runs it into
 * the fuzzer's temporary corpus dir (no block image is tracked). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include "kv/kv_block_io.h"
#include "kv/kv_pool.h"

static uint64_t state = 1;
static uint64_t rnd(void)
{
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 33;
}

static int write_block(const char *dir, const char *name, kv_pool *p, kv_block b, const kv_link *l)
{
    char err[256], path[1024];
    const size_t cap = kv_block_io_size(p);
    uint8_t *buf = malloc(cap);
    size_t n;
    if (!buf || kv_block_encode(p, b, l, buf, cap, &n, err, sizeof err) != KVLM_OK) return fprintf(stderr, "%s\n", err), 1;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, n, f) != n || fclose(f) != 0) return perror(path), 1;
    free(buf);
    return 0;
}

/* The version-1 form of the image buf[0, n) (version 2): the first 142 header bytes
 * with version 1 and header size 142, the payload, a fresh checksum. */
static int write_v1(const char *dir, const uint8_t *buf, size_t n)
{
    char path[1024];
    const size_t pay = n - KV_BLOCK_IO_HDR_BYTES - KV_BLOCK_IO_SUM_BYTES, m = 142 + pay + 16;
    uint8_t *v1 = malloc(m);
    if (!v1) return 1;
    memcpy(v1, buf, 142);
    v1[8] = 1, v1[9] = v1[10] = v1[11] = 0;
    v1[12] = 142, v1[13] = v1[14] = v1[15] = 0;
    memcpy(v1 + 142, buf + KV_BLOCK_IO_HDR_BYTES, pay);
    const XXH128_hash_t h = XXH3_128bits(v1, m - 16);
    for (int i = 0; i < 8; i++) {
        v1[m - 16 + i] = (uint8_t)(h.low64 >> (8 * i));
        v1[m - 8 + i] = (uint8_t)(h.high64 >> (8 * i));
    }
    snprintf(path, sizeof path, "%s/v1.bin", dir);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(v1, 1, m, f) != m || fclose(f) != 0) return perror(path), 1;
    free(v1);
    return 0;
}

/* Blocks of a pool of n_layer layers (2: layer 1 a window layer of 32 positions):
 * name = table 0's first block, child_name its child, window_name table 1's first
 * block (each NULL: not written); with v1, first's block also in version 1. */
static int pool_case(const char *dir, kvlm_kv_type tk, kvlm_kv_type tv, int64_t n_layer, int64_t head_dim,
                     int64_t res, const char *name, const char *child_name, const char *window_name, bool v1)
{
    char err[256];
    kv_pool p;
    static const bool win[2] = {false, true};
    const kv_pool_params pp = {.n_layer = n_layer, .n_head_kv = 1, .head_dim = head_dim, .type_k = tk,
                               .type_v = tv, .res_tokens = res, .budget_bytes = 1 << 16,
                               .layer_window = n_layer == 2 ? win : NULL, .window = n_layer == 2 ? 32 : 0};
    if (kv_pool_init(&p, &pp, err, sizeof err) != KVLM_OK) return fprintf(stderr, "%s\n", err), 1;
    kv_block b[3];
    kv_link l[3];
    for (int i = 0; i < 3; i++) {
        if (kv_pool_alloc(&p, &b[i], err, sizeof err) != KVLM_OK) return fprintf(stderr, "%s\n", err), 1;
        uint8_t *d = kv_pool_k(&p, b[i], 0);   /* [block_bytes] */
        for (size_t k = 0; k < p.block_bytes; k++) d[k] = (uint8_t)rnd();
        kvlm_token t[KV_BLOCK_TOKENS];
        for (int k = 0; k < KV_BLOCK_TOKENS; k++) t[k] = (kvlm_token)(rnd() % 49152);
        if (i < 2) {
            kv_pool_link(&l[i], i ? b[0] : KV_BLOCK_NONE, i ? l[0].key : 0, t, 0x6b766c6d66707231ull, 0);
        } else {   /* a window table's block: loose, in the table's own namespace (any here) */
            kv_pool_link_loose(&l[i], KV_ROOT_KEY, t, 0x6b766c6d66707231ull, 0x74616231ull);
            l[i].tab = 1;
        }
        if (i == 0 && kv_pool_publish(&p, b[0], &l[0]) != b[0]) return fprintf(stderr, "publish\n"), 1;
    }
    int rc = write_block(dir, name, &p, b[0], &l[0]);
    if (!rc && child_name) rc = write_block(dir, child_name, &p, b[1], &l[1]);
    if (!rc && window_name) rc = write_block(dir, window_name, &p, b[2], &l[2]);
    if (!rc && v1) {
        const size_t cap = kv_block_io_size(&p);
        uint8_t *buf = malloc(cap);
        size_t n;
        rc = !buf || kv_block_encode(&p, b[0], &l[0], buf, cap, &n, err, sizeof err) != KVLM_OK ||
             write_v1(dir, buf, n);
        free(buf);
    }
    kv_pool_free(&p);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 2) return fprintf(stderr, "usage: %s DIR\n", argv[0]), 2;
    return pool_case(argv[1], KVLM_KV_F16, KVLM_KV_F16, 2, 32, 0, "first.bin", "child.bin", "window.bin", true) ||
           pool_case(argv[1], KVLM_KV_F16, KVLM_KV_F16, 1, 32, 0, "flat.bin", NULL, NULL, false) ||
           pool_case(argv[1], KVLM_KV_Q8, KVLM_KV_Q8, 1, 32, 0, "q8.bin", NULL, NULL, false) ||
           pool_case(argv[1], KVLM_KV_KIVI4, KVLM_KV_F16, 1, 64, 64, "kivi.bin", NULL, NULL, false);
}
