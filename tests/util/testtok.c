/* testtok.c - see testtok.h. */
#include "testtok.h"

#include <stdio.h>
#include <string.h>

size_t test_hex_decode(const char *hex, char *out)
{
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (char)v;
    }
    return n;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) { h ^= b[i]; h *= 0x100000001b3ULL; }
    return h;
}

bool test_tok_pieces_hash(const tokenizer *t, bool special, char hex[17])
{
    uint64_t h = 0xcbf29ce484222325ULL;
    char buf[512];
    for (int64_t id = 0; id < tokenizer_n_vocab(t); id++) {
        int64_t n = tokenizer_token_bytes(t, (kvlm_token)id, special, buf, sizeof buf);
        if (n < 0 || n > (int64_t)sizeof buf) return false;
        uint32_t n32 = (uint32_t)n;
        unsigned char le[4] = { n32 & 255, (n32 >> 8) & 255, (n32 >> 16) & 255, n32 >> 24 };
        h = fnv1a(h, le, 4);
        h = fnv1a(h, buf, (size_t)n);
    }
    snprintf(hex, 17, "%016llx", (unsigned long long)h);
    return true;
}

bool test_tok_eog_equals(const tokenizer *t, const cJSON *eog)
{
    const cJSON *e;
    int n_eog = 0;
    for (int64_t id = 0; id < tokenizer_n_vocab(t); id++) n_eog += tokenizer_is_eog(t, (kvlm_token)id);
    if (n_eog != cJSON_GetArraySize(eog)) return false;
    cJSON_ArrayForEach(e, eog) if (!tokenizer_is_eog(t, e->valueint)) return false;
    return true;
}
