/* fuzz_ctdir.c - libFuzzer target for the text files of a CTranslate2 Whisper directory:
 * vocabulary.txt and tokenizer.json, read by tok_whisper_load (src/tok/tok_whisper.c).
 * The input is split at the first "\n\0\0\n" into the two files (no separator: all of
 * it is vocabulary.txt and tokenizer.json is empty), written into a directory made once
 * per process, and loaded; a tokenizer that loads encodes and decodes a few strings and
 * renders every token. Checks: no crash, leak or UB (sanitizers); an error has a message.
 * Seeds: fuzz/corpus/ctdir/ (a tiny valid pair as tests/tok/test_tok_whisper.c builds). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tok/tok_whisper.h"

static char dir[64];

static int put(const char *name, const uint8_t *p, size_t n)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    const size_t w = n ? fwrite(p, 1, n, f) : 0;
    fclose(f);
    return w == n ? 0 : -1;
}

static void cleanup(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/vocabulary.txt", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    unlink(path);
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/fuzz_ctdir.XXXXXX");
        if (!mkdtemp(dir)) __builtin_trap();
        atexit(cleanup);
    }
    static const uint8_t sep[4] = { '\n', 0, 0, '\n' };
    size_t nv = size;
    for (size_t i = 0; i + 4 <= size; i++)
        if (!memcmp(data + i, sep, 4)) {
            nv = i + 1;                       /* the vocabulary keeps its last newline */
            break;
        }
    const size_t js = nv < size ? nv + 3 : size;
    if (put("vocabulary.txt", data, nv) || put("tokenizer.json", data + js, size - js)) __builtin_trap();
    tok_whisper *t = NULL;
    char err[512] = "";
    if (tok_whisper_load(dir, &t, err, sizeof err) != KVLM_OK) {
        if (t || !err[0]) __builtin_trap();
        return 0;
    }
    static const char *texts[] = { "", " And so my fellow Americans.", "a b ab", "\xf0\x9f\x98\x80 x\n\ny", "'s 12 ok" };
    kvlm_token ids[256];
    for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
        size_t n = 0;
        if (tok_whisper_encode(t, texts[k], strlen(texts[k]), ids, 256, &n, err, sizeof err) == KVLM_OK) {
            char *out = NULL;
            if (tok_whisper_decode(t, ids, n, &out, err, sizeof err) == KVLM_OK) free(out);
        }
    }
    char buf[256];
    const int64_t nvoc = tok_whisper_n_vocab(t);
    for (int64_t id = 0; id < nvoc && id < 4096; id++) {
        (void)tok_whisper_token_bytes(t, (kvlm_token)id, id & 1, buf, sizeof buf);
        kvlm_token one = (kvlm_token)id;
        char *out = NULL;
        if (tok_whisper_decode(t, &one, 1, &out, err, sizeof err) == KVLM_OK) free(out);
    }
    tok_whisper_free(t);
    return 0;
}
