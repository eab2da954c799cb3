/* tokenizer_spm.c - SentencePiece-style BPE (tokenizer.ggml.model = "llama"): spaces
 * become U+2581, adjacent pieces merge by highest score, characters the vocabulary
 * lacks fall back to <0xXX> byte tokens. Room: tok. Follows llama.cpp's
 * llm_tokenizer_spm, which agrees with sentencepiece on the golden corpus. */
#include "tok/tokenizer_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/err.h"

kvlm_err tok_spm_init(tokenizer *t, const gguf_file *f, char *err, size_t errlen)
{
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_piece[b] = tok_lookup(t, name, 6);
    }
    return KVLM_OK;
}

/* length of the UTF-8 char led by c, by its high nibble as llama.cpp's unicode_len_utf8
 * reads it: 1 for ASCII and a stray continuation byte, 4 for 0xf0..0xff (so an invalid
 * lead 0xf8..0xff takes the next 3 bytes into its symbol, which then falls back to bytes) */
static size_t utf8_len(unsigned char c)
{
    static const uint8_t by_nibble[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
    return by_nibble[c >> 4];
}

/*   buf: the escaped text, [m] bytes
 *   sym: [n_sym] off/len into buf, prev/next live neighbours (len 0 = merged away) */
typedef struct spm_sym { int32_t off, len, prev, next; } spm_sym;

static void try_pair(const tokenizer *t, const char *buf, spm_sym *sym, tok_heap *h, int32_t l, int32_t r)
{
    if (l < 0 || r < 0) return;
    int32_t n = sym[l].len + sym[r].len;
    kvlm_token id = tok_lookup(t, buf + sym[l].off, (size_t)n);
    if (id < 0) return;
    double score = t->score ? t->score[id] : 0.0;
    tok_heap_push(h, (tok_cand){ -score, l, r, sym[l].len, sym[r].len, id });
}

static void emit_symbol(const tokenizer *t, const char *s, size_t n, tok_out *o)
{
    kvlm_token id = tok_lookup(t, s, n);
    if (id >= 0) { tok_out_push(o, id); return; }
    for (size_t i = 0; i < n; i++) {   /* byte fallback */
        int32_t b = t->byte_piece[(unsigned char)s[i]];
        if (b >= 0) tok_out_push(o, b);
        else if (t->unk >= 0) tok_out_push(o, t->unk);
    }
}

kvlm_err tok_spm_encode(const tokenizer *t, const char *s, size_t n, bool prefix_space, tok_out *o)
{
    size_t m = 0, cap = 3 * (n + 1);
    if (n > (size_t)INT32_MAX / 4) return KVLM_ERR_NOMEM;
    char *buf = malloc(cap);
    /* at most one symbol per byte of buf (a stray lead byte can split a U+2581) */
    spm_sym *sym = malloc(cap * sizeof *sym);
    tok_heap h = { 0 };
    if (!buf || !sym || !tok_heap_alloc(&h, cap)) { free(buf); free(sym); free(h.v); return KVLM_ERR_NOMEM; }
    /* buf: (' ' if prefix_space) + s, with every ' ' -> U+2581 */
    for (size_t i = 0; i < n + prefix_space; i++) {
        char c = (prefix_space && i == 0) ? ' ' : s[i - prefix_space];
        if (c == ' ') { memcpy(buf + m, "\xe2\x96\x81", 3); m += 3; }
        else buf[m++] = c;
    }
    int32_t n_sym = 0;   /* sym: [n_sym] one per UTF-8 char of buf */
    for (size_t i = 0; i < m; n_sym++) {
        size_t len = utf8_len((unsigned char)buf[i]);
        if (len > m - i) len = m - i;
        sym[n_sym] = (spm_sym){ (int32_t)i, (int32_t)len, n_sym - 1, -1 };
        if (n_sym > 0) sym[n_sym - 1].next = n_sym;
        i += len;
    }
    for (int32_t i = 0; i + 1 < n_sym; i++) try_pair(t, buf, sym, &h, i, i + 1);
    while (h.n) {
        tok_cand c = tok_heap_pop(&h);
        spm_sym *l = &sym[c.left], *r = &sym[c.right];
        if (l->len != c.a || r->len != c.b || l->next != c.right) continue;   /* stale */
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = c.left;
        try_pair(t, buf, sym, &h, l->prev, c.left);
        try_pair(t, buf, sym, &h, c.left, l->next);
    }
    for (int32_t i = n_sym ? 0 : -1; i >= 0; i = sym[i].next)
        emit_symbol(t, buf + sym[i].off, (size_t)sym[i].len, o);
    free(buf);
    free(sym);
    free(h.v);
    return KVLM_OK;
}
