/* fuzz_tokenizer.c - libFuzzer target: arbitrary bytes through both tokenizer kinds
 * (SmolLM2's byte-level BPE when the model is cached, the SentencePiece fixture
 * always, Gemma 3's SentencePiece with its 165 user-defined tokens when cached), with
 * and without special-token parsing, then streaming detokenization.
 * Checks: no crash/leak/UB (sanitizers), every id in range, counting calls agree,
 * for BPE without special parsing decode(encode(x)) == x minus the bytes the
 * vocabulary has no token for, and for Gemma without special parsing
 * decode(encode(x)) == x exactly (byte fallback covers every byte, no space prefix)
 * when x is valid UTF-8 without U+2581, SentencePiece's space mark. (Invalid UTF-8 does
 * not round-trip, in llama.cpp either: spaces become U+2581 before a lead byte's length
 * splits the text, so "\xe6 " falls back to the bytes of "\xe6" + U+2581.)
 * Input: byte 0 = flags (bit 0: parse_special, bit 1: SPM, bit 2: Gemma), the rest = text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

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

static tokenizer *bpe, *spm, *gemma;

/* the model at $env, else name in the model cache (KVLM_CACHE, else ~/.cache/kvlm) */
static tokenizer *load_model(const char *env, const char *name)
{
    const char *m = getenv(env), *cache = getenv("KVLM_CACHE"), *home = getenv("HOME");
    char path[1024];
    if (m) snprintf(path, sizeof path, "%s", m);
    else if (cache) snprintf(path, sizeof path, "%s/%s", cache, name);
    else snprintf(path, sizeof path, "%s/.cache/kvlm/%s", home ? home : "", name);
    return load(path);
}

static bool utf8_valid(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) return false;
        i += (size_t)k;
    }
    return true;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    bpe = load_model("KVLM_MODEL", "SmolLM2-135M-Instruct.Q4_1.gguf");
    gemma = load_model("KVLM_GEMMA3", "gemma-3-270m-q4_k_m.gguf");
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
    tokenizer *t = (data[0] & 4) && gemma ? gemma : (data[0] & 2) ? spm : bpe;
    if (!t) t = bpe ? bpe : spm;
    bool exact = t == gemma && !special && utf8_valid(data + 1, size - 1) && !memmem(data + 1, size - 1, "\xe2\x96\x81", 3);
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
        if ((t == bpe && !special) || exact) { memcpy(dec + nd, piece, (size_t)k); nd += (size_t)k; }
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
    if (exact && (nd != len || memcmp(dec, text, len) != 0)) abort();
    free(dec);
    free(ids);
    return 0;
}
