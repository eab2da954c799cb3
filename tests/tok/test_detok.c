/* test_detok.c - streaming detokenization: characters split across pieces come out
 * whole, invalid bytes become U+FFFD (one per maximal invalid subpart, the rule
 * Python's bytes.decode(errors="replace") follows), output never overruns.
 * Room: tests/tok. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tok/detok.h"

#define FFFD "\xef\xbf\xbd"

/* feeds s split into pieces of the given sizes (0-terminated list), then flushes */
static void run(const char *s, size_t n, const size_t *cuts, char *out, size_t cap)
{
    kvlm_detok d = { 0 };
    size_t o = 0, at = 0;
    char buf[256];
    for (size_t k = 0; at < n; k++) {
        size_t len = cuts[k] ? cuts[k] : n - at;
        if (len > n - at) len = n - at;
        size_t m = detok_push(&d, s + at, len, buf, sizeof buf);
        assert_true(strlen(buf) == m);
        memcpy(out + o, buf, m);
        o += m;
        at += len;
    }
    o += detok_flush(&d, out + o, cap - o);
    assert_int_equal(d.n_pending, 0);
    out[o] = '\0';
}

static void test_split_chars(void **state)
{
    (void)state;
    const char *s = "a\xf0\x9f\xa6\x99 \xe6\x88\x91\xc3\xa9!";   /* a, U+1F999, space, U+6211, e-acute, ! */
    size_t ones[32];
    for (int i = 0; i < 32; i++) ones[i] = 1;
    char out[256];
    run(s, strlen(s), ones, out, sizeof out);
    assert_string_equal(out, s);
    /* held back: after the first 3 bytes of the emoji nothing but 'a' is out */
    kvlm_detok d = { 0 };
    char buf[64];
    assert_int_equal(detok_push(&d, s, 3, buf, sizeof buf), 1);
    assert_string_equal(buf, "a");
    assert_int_equal(d.n_pending, 2);
    assert_int_equal(detok_push(&d, s + 3, 2, buf, sizeof buf), 4);
    assert_memory_equal(buf, s + 1, 4);
}

static void test_invalid(void **state)
{
    (void)state;
    static const size_t whole[] = { 0 };
    struct { const char *in; size_t n; const char *want; } c[] = {
        { "\x80", 1, FFFD },                                  /* stray continuation */
        { "a\xc0\xaf" "b", 4, "a" FFFD FFFD "b" },            /* overlong lead: each byte */
        { "\xe2\x82" "A", 3, FFFD "A" },                      /* truncated 3-byte: one FFFD */
        { "\xed\xa0\x80", 3, FFFD FFFD FFFD },                /* surrogate: 0xa0 not allowed after 0xed */
        { "\xf4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD },       /* > U+10FFFF */
        { "\xf0\x9f\xa6", 3, FFFD },                          /* incomplete at the end: flushed */
        { "\xff" "ok", 3, FFFD "ok" },
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char out[128];
        run(c[i].in, c[i].n, whole, out, sizeof out);
        assert_string_equal(out, c[i].want);
    }
}

/* random valid UTF-8 split anywhere comes out unchanged */
static void test_random_valid(void **state)
{
    (void)state;
    static const char *chars[] = { "a", "\xc3\xa9", "\xe6\x88\x91", "\xf0\x9f\xa6\x99", " ", "\n", "\xd9\xa3" };
    unsigned seed = 7;
    for (int trial = 0; trial < 500; trial++) {
        char s[512] = "";
        size_t n = 0, cuts[600], nc = 0;
        while (n < 400) {
            seed = seed * 1103515245u + 12345u;
            const char *ch = chars[(seed >> 16) % 7];
            memcpy(s + n, ch, strlen(ch));
            n += strlen(ch);
        }
        s[n] = '\0';
        for (size_t at = 0; at < n && nc < 599;) {
            seed = seed * 1103515245u + 12345u;
            size_t len = 1 + (seed >> 16) % 9;
            cuts[nc++] = len;
            at += len;
        }
        cuts[nc] = 0;
        char out[1024];
        run(s, n, cuts, out, sizeof out);
        assert_string_equal(out, s);
    }
}

static void test_capacity(void **state)
{
    (void)state;
    kvlm_detok d = { 0 };
    char buf[4];
    /* "abcdef" does not fit in 4: output is truncated, NUL-terminated, no overrun */
    size_t m = detok_push(&d, "abcdef", 6, buf, sizeof buf);
    assert_true(m < sizeof buf);
    assert_int_equal(buf[m], '\0');
    assert_int_equal(detok_push(&d, "x", 1, NULL, 0), 0);
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_split_chars),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_random_valid),
        cmocka_unit_test(test_capacity),
    };
    return cmocka_run_group_tests_name("detok", t, NULL, NULL);
}
