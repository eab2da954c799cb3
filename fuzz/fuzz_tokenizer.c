/* fuzz_tokenizer.c - libFuzzer target: arbitrary bytes through both tokenizer kinds
 * (SmolLM2's byte-level BPE when the model is cached, the SentencePiece fixture
 * always), with and without special-token parsing, then streaming detokenization.
 * Checks: no crash/leak/UB (sanitizers), every id in range, counting calls agree,
 * and for BPE without special parsing decode(encode(x)) == x minus the bytes the
 * vocabulary has no token for.
 * Input: byte 0 = flags (bit 0: parse_special, bit 1: SPM), the rest = text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gguf.h"
#include "tok/detok.h"
#include "tok/tokenizer.h"

static tokenizer *load(const char *path)
{
    gguf_file *f;
    tokenizer *t = NULL;
    char err[256];
    if (gguf_open(path, &f, err, sizeof err) != KVLM_OK) return NULL;
    if (tokenizer_init_gguf(f, &t, err, sizeof err) != KVLM_OK) t = NULL;
    gguf_close(f);
    return t;
}

static tokenizer *bpe, *spm;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *m = getenv("KVLM_MODEL");
    char path[1024];
    if (!m) {
        const char *cache = getenv("KVLM_CACHE"), *home = getenv("HOME");
        if (cache) snprintf(path, sizeof path, "%s/SmolLM2-135M-Instruct.Q4_1.gguf", cache);
        else snprintf(path, sizeof path, "%s/.cache/kvlm/SmolLM2-135M-Instruct.Q4_1.gguf", home ? home : "");
        m = path;
    }
    bpe = load(m);
    /* the SPM fixture, generated into the cache by scripts/gen-fixtures.sh (fuzz.sh exports the dir) */
    const char *fx = getenv("KVLM_FIXTURES");
    char spm_path[1024];
    snprintf(spm_path, sizeof spm_path, "%s/tok/spm-tiny.gguf", fx ? fx : ".");
    spm = load(spm_path);
    if (!bpe && !spm) { fprintf(stderr, "fuzz_tokenizer: no tokenizer could be loaded\n"); abort(); }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096) return 0;
    bool special = data[0] & 1;
    tokenizer *t = (data[0] & 2) ? spm : bpe;
    if (!t) t = bpe ? bpe : spm;
    const char *text = (const char *)data + 1;
    size_t len = size - 1, n = 0, n2 = 0;
    char err[256];
    kvlm_token *ids = malloc((len * 3 + 8) * sizeof *ids);
    if (tokenizer_encode(t, text, len, true, special, NULL, 0, &n, err, sizeof err) == KVLM_ERR_NOMEM) abort();
    if (tokenizer_encode(t, text, len, true, special, ids, len * 3 + 8, &n2, err, sizeof err) != KVLM_OK) abort();
    if (n != n2 && !(n == 0 && n2 == 0)) abort();
    char *dec = malloc(len * 8 + 64), piece[512], out[2048];
    size_t nd = 0;
    kvlm_detok d = { 0 };
    for (size_t i = 0; i < n2; i++) {
        if (ids[i] < 0 || ids[i] >= tokenizer_n_vocab(t)) abort();
        int64_t k = tokenizer_token_bytes(t, ids[i], false, piece, sizeof piece);
        if (k < 0 || k > (int64_t)sizeof piece) abort();
        if (t == bpe && !special) { memcpy(dec + nd, piece, (size_t)k); nd += (size_t)k; }
        detok_push(&d, piece, (size_t)k, out, sizeof out);
    }
    detok_flush(&d, out, sizeof out);
    if (t == bpe && !special) {
        /* every decoded byte appears in order in the input (only drops allowed) */
        size_t j = 0;
        for (size_t i = 0; i < nd; i++) {
            while (j < len && text[j] != dec[i]) j++;
            if (j == len) abort();
            j++;
        }
    }
    free(dec);
    free(ids);
    return 0;
}
