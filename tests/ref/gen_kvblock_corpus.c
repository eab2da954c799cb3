/* gen_kvblock_corpus.c - writes the seed corpus of fuzz/fuzz_kvblock.c: a few valid
 * encodings of KV blocks (src/kv/kv_block_io.h), random bytes under fixed seeds.
 * Room: tests/ref. May touch: kv_pool, kv_block_io, libc.
 *   first.bin   f16/f16, 1 x 1 x 32 (the fuzz target's pool), a first block
 *   child.bin   the same pool, a child of first.bin
 *   q8.bin      q8/q8, 1 x 1 x 32: peeks fine, the fuzz pool refuses its types
 *   kivi.bin    kivi4 K, f16 V, 1 x 1 x 64, residual 64
 * Built with the tests (make: build/gen_kvblock_corpus); scripts/fuzz.sh runs it into
 * the fuzzer's temporary corpus dir (no block image is tracked). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static int pool_case(const char *dir, kvlm_kv_type tk, kvlm_kv_type tv, int64_t head_dim, int64_t res,
                     const char *name, const char *child_name)
{
    char err[256];
    kv_pool p;
    const kv_pool_params pp = {.n_layer = 1, .n_head_kv = 1, .head_dim = head_dim, .type_k = tk, .type_v = tv,
                               .res_tokens = res, .budget_bytes = 1 << 16};
    if (kv_pool_init(&p, &pp, err, sizeof err) != KVLM_OK) return fprintf(stderr, "%s\n", err), 1;
    kv_block b[2];
    kv_link l[2];
    for (int i = 0; i < 2; i++) {
        if (kv_pool_alloc(&p, &b[i], err, sizeof err) != KVLM_OK) return fprintf(stderr, "%s\n", err), 1;
        uint8_t *d = kv_pool_k(&p, b[i], 0);   /* [block_bytes] */
        for (size_t k = 0; k < p.block_bytes; k++) d[k] = (uint8_t)rnd();
        kvlm_token t[KV_BLOCK_TOKENS];
        for (int k = 0; k < KV_BLOCK_TOKENS; k++) t[k] = (kvlm_token)(rnd() % 49152);
        kv_pool_link(&l[i], i ? b[0] : KV_BLOCK_NONE, i ? l[0].key : 0, t, 0x6b766c6d66707231ull, 0);
        if (i == 0 && kv_pool_publish(&p, b[0], &l[0]) != b[0]) return fprintf(stderr, "publish\n"), 1;
    }
    int rc = write_block(dir, name, &p, b[0], &l[0]);
    if (!rc && child_name) rc = write_block(dir, child_name, &p, b[1], &l[1]);
    kv_pool_free(&p);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 2) return fprintf(stderr, "usage: %s DIR\n", argv[0]), 2;
    return pool_case(argv[1], KVLM_KV_F16, KVLM_KV_F16, 32, 0, "first.bin", "child.bin") ||
           pool_case(argv[1], KVLM_KV_Q8, KVLM_KV_Q8, 32, 0, "q8.bin", NULL) ||
           pool_case(argv[1], KVLM_KV_KIVI4, KVLM_KV_F16, 64, 64, "kivi.bin", NULL);
}
