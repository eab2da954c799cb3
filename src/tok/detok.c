/* detok.c - see detok.h. Room: tok. */
#include "tok/detok.h"

#include <string.h>
#include <utf8proc.h>

typedef struct sink { char *p; size_t cap, n; } sink;

static void put(sink *s, const void *b, size_t n)
{
    if (s->cap == 0 || s->n + n + 1 > s->cap) return;   /* truncated: never overrun */
    memcpy(s->p + s->n, b, n);
    s->n += n;
    s->p[s->n] = '\0';
}

static void put_fffd(sink *s) { put(s, "\xef\xbf\xbd", 3); }

/* bytes a valid character led by c has, 0 if c cannot lead one */
static size_t lead_len(unsigned char c)
{
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) return 2;
    if (c >= 0xe0 && c <= 0xef) return 3;
    if (c >= 0xf0 && c <= 0xf4) return 4;
    return 0;
}

/* Is the second byte c2 allowed after lead c (no overlongs, surrogates, > U+10FFFF)? */
static int second_ok(unsigned char c, unsigned char c2)
{
    if (c == 0xe0) return c2 >= 0xa0 && c2 <= 0xbf;
    if (c == 0xed) return c2 >= 0x80 && c2 <= 0x9f;
    if (c == 0xf0) return c2 >= 0x90 && c2 <= 0xbf;
    if (c == 0xf4) return c2 >= 0x80 && c2 <= 0x8f;
    return (c2 & 0xc0) == 0x80;
}

size_t detok_push(kvlm_detok *d, const char *piece, size_t n, char *out, size_t cap)
{
    /* the stream: pending[0..np) then piece[0..n) */
    size_t np = d->n_pending, total = np + n;
    unsigned char in[4];
    sink s = { out, cap, 0 };
    if (cap) out[0] = '\0';
#define AT(i) ((i) < np ? (unsigned char)d->pending[i] : (unsigned char)piece[(i) - np])
    size_t i = 0;
    while (i < total) {
        unsigned char c = AT(i);
        size_t need = lead_len(c), k = 1;
        if (need == 0) { put_fffd(&s); i++; continue; }
        in[0] = c;
        while (k < need && i + k < total) {
            unsigned char ck = AT(i + k);
            if (k == 1 ? !second_ok(c, ck) : (ck & 0xc0) != 0x80) break;
            in[k++] = ck;
        }
        if (k < need && i + k == total) break;              /* incomplete tail: hold back */
        if (k < need) { put_fffd(&s); i += k; continue; }   /* a maximal invalid subpart */
        utf8proc_int32_t cp;
        if (utf8proc_iterate(in, (utf8proc_ssize_t)need, &cp) != (utf8proc_ssize_t)need) put_fffd(&s);
        else put(&s, in, need);
        i += need;
    }
    /* keep the tail [i, total): at most 3 bytes */
    char tail[8];
    size_t nt = 0;
    for (size_t j = i; j < total && nt < sizeof tail; j++) tail[nt++] = (char)AT(j);
#undef AT
    memcpy(d->pending, tail, nt);
    d->n_pending = nt;
    return s.n;
}

size_t detok_flush(kvlm_detok *d, char *out, size_t cap)
{
    sink s = { out, cap, 0 };
    if (cap) out[0] = '\0';
    if (d->n_pending) put_fffd(&s);
    d->n_pending = 0;
    return s.n;
}
