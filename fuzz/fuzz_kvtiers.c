/* fuzz_kvtiers.c - libFuzzer target for the tiers' stored form (src/kv/kv_tiers.c):
 * what a disk file or a Redis value holds, so hostile.
 *   kv_tiers_decode(input, max 1 MiB): KVLM_OK or KVLM_ERR_FORMAT only; on success
 *   the image is at most 1 MiB; without the "KVLMZST1" magic it is the input itself;
 *   with it, the input's declared raw size and libzstd's own one-shot decompression
 *   of the frame give the same bytes.
 *   The input as an image: kv_tiers_encode (compress on and off) then decode gives it
 *   back byte for byte.
 *   A valid compressed stored form of the input's bytes after the first 4, damaged
 *   where those 4 say (one byte XORed, the end cut): decode gives KVLM_OK or
 *   KVLM_ERR_FORMAT, never a crash (libFuzzer cannot build zstd frames by itself:
 *   zstd is not instrumented).
 * No seeds needed: libFuzzer's comparison tracing finds the magic. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "kv/kv_tiers.h"

enum { MAX = 1 << 20 };

static void roundtrip(const uint8_t *data, size_t size, bool compress)
{
    void *enc, *dec;
    size_t elen, dlen;
    if (kv_tiers_encode(data, size, compress, &enc, &elen, NULL, 0) != KVLM_OK) __builtin_trap();
    if (kv_tiers_decode(enc, elen, MAX, &dec, &dlen, NULL, 0) != KVLM_OK) __builtin_trap();
    if (dlen != size || (size && memcmp(dec, data, size) != 0)) __builtin_trap();
    free(enc);
    free(dec);
}

static void damaged(const uint8_t *data, size_t size)
{
    void *enc, *dec;
    size_t elen, dlen;
    if (kv_tiers_encode(data + 4, size - 4, true, &enc, &elen, NULL, 0) != KVLM_OK) __builtin_trap();
    uint8_t *e = enc;
    if (elen < 16 || memcmp(e, "KVLMZST1", 8) != 0) { free(enc); return; }   /* did not pay: stored raw */
    size_t pos = ((size_t)data[0] | (size_t)data[1] << 8) % elen, cut = data[3] % 16;
    e[pos] ^= data[2];
    elen -= cut < elen ? cut : elen;
    kvlm_err rc = kv_tiers_decode(enc, elen, MAX, &dec, &dlen, NULL, 0);
    if (rc != KVLM_OK && rc != KVLM_ERR_FORMAT) __builtin_trap();
    if (rc == KVLM_OK) free(dec);
    free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    void *img = (void *)1;
    size_t len = 1;
    kvlm_err rc = kv_tiers_decode(data, size, MAX, &img, &len, NULL, 0);
    if (rc != KVLM_OK && rc != KVLM_ERR_FORMAT) __builtin_trap();
    if (rc != KVLM_OK && (img || len)) __builtin_trap();
    if (rc == KVLM_OK) {
        if (len > MAX) __builtin_trap();
        if (size < 8 || memcmp(data, "KVLMZST1", 8) != 0) {
            if (len != size || (size && memcmp(img, data, size) != 0)) __builtin_trap();
        } else {
            uint64_t raw = 0;
            for (int i = 0; i < 8; i++) raw |= (uint64_t)data[8 + i] << (8 * i);
            uint8_t *ref = malloc(raw ? raw : 1);
            size_t got = ZSTD_decompress(ref, raw, data + 16, size - 16);
            if (raw != len || ZSTD_isError(got) || got != raw || (raw && memcmp(ref, img, raw) != 0)) __builtin_trap();
            free(ref);
        }
        free(img);
    }
    if (size <= MAX) {
        roundtrip(data, size, true);
        roundtrip(data, size, false);
        if (size >= 4) damaged(data, size);
    }
    return 0;
}
