/* test_ctx.c - the KV cache on the real model: every way of reaching the same
 * sequence (one batch, one token at a time, odd chunks, reuse of a cached
 * prefix, rollback, 1 or 2 threads, no cache at all) gives bitwise the same
 * logits; and the context's errors leave its state unchanged. */
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kvlm.h"
#include "testutil.h"

static kvlm_model *g_model;
static int64_t g_vocab;

static const char *TEXT =
    "The KV cache keeps the keys and values of every past token, so that each new "
    "token only needs its own query, key and value. Without it, generating n tokens "
    "costs O(n^2) work per token. 1234 + 5678 = 6912!";

static int setup(void **state)
{
    (void)state;
    return test_model_load(&g_model, &g_vocab);
}

static int teardown(void **state)
{
    (void)state;
    kvlm_model_free(g_model);
    return 0;
}

#define NEED_MODEL() do { if (!g_model) skip(); } while (0)
/* The sanitizer build (KVLM_TEST_QUICK, ~10x slower) runs the path tests of the
 * mixed q8 K / q4 V pair and of one KIVI pair only: q8 and q4 alone go through the
 * same storing code, and every kernel runs under ASan in test_attn. */
#define SKIP_IN_QUICK() do { if (test_quick()) skip(); } while (0)

static kvlm_ctx *new_ctx(int threads, int64_t n_ctx, bool no_cache)
{
    kvlm_ctx_params p = kvlm_ctx_default_params();
    p.n_threads = threads;
    p.n_ctx = n_ctx;
    p.no_kv_cache = no_cache;
    kvlm_ctx *c = NULL;
    char err[256];
    kvlm_err e = kvlm_ctx_init(g_model, &p, &c, err, sizeof err);
    if (e != KVLM_OK) print_error("ctx: %s\n", err);
    assert_int_equal(e, KVLM_OK);
    return c;
}

static size_t tokenize(const char *text, kvlm_token *out, size_t cap)
{
    size_t n = 0;
    assert_int_equal(kvlm_tokenize(g_model, text, strlen(text), false, false, out, cap, &n, NULL, 0), KVLM_OK);
    assert_true(n > 10);
    return n;
}

static void assert_logits_equal(const float *a, const float *b)
{
    assert_non_null(a);
    assert_non_null(b);
    if (memcmp(a, b, (size_t)g_vocab * sizeof(float)) != 0) {
        float md = 0;
        for (int64_t i = 0; i < g_vocab; i++) {
            float d = a[i] > b[i] ? a[i] - b[i] : b[i] - a[i];
            if (d > md) md = d;
        }
        fail_msg("logits differ (max abs diff %g); they must be bitwise equal", (double)md);
    }
}

/* Decodes t[0, n) into c: one token at a time in each of the k ranges [step[i][0],
 * step[i][1]) (ascending, apart), a batch before, between and after them. */
static void decode_with_steps(kvlm_ctx *c, const kvlm_token *t, size_t n, const size_t (*step)[2], int k)
{
    size_t pos = 0;
    for (int r = 0; r <= k; r++) {
        const size_t lo = r < k ? step[r][0] : n, hi = r < k ? step[r][1] : n;
        if (lo > pos) assert_int_equal(kvlm_ctx_decode(c, t + pos, lo - pos, NULL, 0), KVLM_OK);
        for (pos = lo; pos < hi; pos++) assert_int_equal(kvlm_ctx_decode(c, t + pos, 1, NULL, 0), KVLM_OK);
    }
}

static void test_batch_equals_one_at_a_time(void **state)
{
    (void)state;
    NEED_MODEL();
    kvlm_token t[256];
    size_t n = tokenize(TEXT, t, 256);
    kvlm_ctx *a = new_ctx(2, 256, false), *b = new_ctx(2, 256, false), *c = new_ctx(2, 256, false);
    assert_int_equal(kvlm_ctx_decode(a, t, n, NULL, 0), KVLM_OK);
    for (size_t i = 0; i < n; i++) assert_int_equal(kvlm_ctx_decode(b, t + i, 1, NULL, 0), KVLM_OK);
    /* odd chunk sizes: 1, 2, 3, ... */
    for (size_t i = 0, step = 1; i < n; i += step, step++) {
        size_t k = n - i < step ? n - i : step;
        assert_int_equal(kvlm_ctx_decode(c, t + i, k, NULL, 0), KVLM_OK);
    }
    assert_int_equal(kvlm_ctx_n_past(a), n);
    assert_logits_equal(kvlm_ctx_logits(a), kvlm_ctx_logits(b));
    assert_logits_equal(kvlm_ctx_logits(a), kvlm_ctx_logits(c));
    kvlm_ctx_free(a);
    kvlm_ctx_free(b);
    kvlm_ctx_free(c);
}

/* Past one attention chunk (ATTN_CHUNK = 256 positions) a decode step of 1-4
 * tokens splits each token's chunks among threads, a larger batch gives whole
 * tokens to threads: both must give the bits of one batch, with 1 or 2
 * threads. n: 576 tokens (3 chunks); under KVLM_TEST_QUICK 288 (2 chunks: the
 * same paths with half the tokens; each is a weight pass under ASan). */
static void test_long_context_paths(void **state)
{
    (void)state;
    NEED_MODEL();
    enum { CAP = 1024 };
    static kvlm_token t[CAP];
    size_t n = 0, one = tokenize(TEXT, t, CAP);
    const bool quick = test_quick();
    while (n + one <= 600) n += tokenize(TEXT, t + n, CAP - n);
    if (quick) n = 288;
    assert_true(n > 262);
    kvlm_ctx *a = new_ctx(2, CAP, false), *b = new_ctx(2, CAP, false), *c = new_ctx(2, CAP, false), *d = new_ctx(1, CAP, false);
    assert_int_equal(kvlm_ctx_decode(a, t, n, NULL, 0), KVLM_OK);
    /* b: a batch, single steps across position 256, a batch, single steps (the
       sanitizer build: 8 at the end, not 24) */
    const size_t head = n - (quick ? 8 : 24);
    assert_int_equal(kvlm_ctx_decode(b, t, 250, NULL, 0), KVLM_OK);
    for (size_t i = 250; i < 262; i++) assert_int_equal(kvlm_ctx_decode(b, t + i, 1, NULL, 0), KVLM_OK);
    assert_int_equal(kvlm_ctx_decode(b, t + 262, head - 262, NULL, 0), KVLM_OK);
    for (size_t i = head; i < n; i++) assert_int_equal(kvlm_ctx_decode(b, t + i, 1, NULL, 0), KVLM_OK);
    /* c: steps of 1, 2, ..., 6, 1, ...; the sanitizer build steps only from
       position 250, across 256 (steps whose tokens have one chunk and two) */
    const size_t lead = quick ? 250 : 0;
    if (lead) assert_int_equal(kvlm_ctx_decode(c, t, lead, NULL, 0), KVLM_OK);
    for (size_t i = lead, step = 1; i < n; i += step, step = step % 6 + 1) {
        size_t k = n - i < step ? n - i : step;
        assert_int_equal(kvlm_ctx_decode(c, t + i, k, NULL, 0), KVLM_OK);
    }
    assert_int_equal(kvlm_ctx_decode(d, t, head, NULL, 0), KVLM_OK);
    for (size_t i = head; i < n; i++) assert_int_equal(kvlm_ctx_decode(d, t + i, 1, NULL, 0), KVLM_OK);
    assert_logits_equal(kvlm_ctx_logits(a), kvlm_ctx_logits(b));
    assert_logits_equal(kvlm_ctx_logits(a), kvlm_ctx_logits(c));
    assert_logits_equal(kvlm_ctx_logits(a), kvlm_ctx_logits(d));
    kvlm_ctx_free(a);
    kvlm_ctx_free(b);
    kvlm_ctx_free(c);
    kvlm_ctx_free(d);
}

/* q8, q4 (and mixed, bf16) K/V: the same bitwise agreement between one batch, single steps
 * across the chunk edge and another thread count, as f16 (the quantization
 * happens per position when it is stored, so batching cannot change it). */
static void quant_paths(kvlm_kv_type type, kvlm_kv_type type_v)
{
    enum { CAP = 512 };
    static kvlm_token t[CAP];
    size_t n = 0, one = tokenize(TEXT, t, CAP);
    while (n + one <= 400) n += tokenize(TEXT, t + n, CAP - n);
    if (test_quick()) n = 288;   /* the sanitizer build: past 262 is enough */
    assert_true(n > 262);
    kvlm_ctx *c[3];
    const int threads[3] = { 2, 2, 1 };
    for (int i = 0; i < 3; i++) {
        kvlm_ctx_params p = kvlm_ctx_default_params();
        p.n_threads = threads[i];
        p.n_ctx = CAP;
        p.kv_type = type;
        p.kv_type_v = type_v;
        assert_int_equal(kvlm_ctx_init(g_model, &p, &c[i], NULL, 0), KVLM_OK);
    }
    assert_int_equal(kvlm_ctx_decode(c[0], t, n, NULL, 0), KVLM_OK);
    /* single steps across position 256, a batch, and the last 8 single steps, whose logits
       are compared (two chunks split between the threads); the sanitizer build: [250, 262)
       only, then a batch. (Stepping all of [250, n = 384) repeated one path 134 times.) */
    const size_t steps[2][2] = { { 250, test_quick() ? 262 : 270 }, { test_quick() ? n : n - 8, n } };
    decode_with_steps(c[1], t, n, steps, 2);
    assert_int_equal(kvlm_ctx_decode(c[2], t, n - 3, NULL, 0), KVLM_OK);
    for (size_t i = n - 3; i < n; i++) assert_int_equal(kvlm_ctx_decode(c[2], t + i, 1, NULL, 0), KVLM_OK);
    assert_logits_equal(kvlm_ctx_logits(c[0]), kvlm_ctx_logits(c[1]));
    assert_logits_equal(kvlm_ctx_logits(c[0]), kvlm_ctx_logits(c[2]));
    for (int i = 0; i < 3; i++) kvlm_ctx_free(c[i]);
}

static void test_q8_paths(void **state)
{
    (void)state;
    NEED_MODEL();
    SKIP_IN_QUICK();
    quant_paths(KVLM_KV_Q8, KVLM_KV_SAME);
}

static void test_q4_paths(void **state)
{
    (void)state;
    NEED_MODEL();
    SKIP_IN_QUICK();
    quant_paths(KVLM_KV_Q4, KVLM_KV_SAME);
}

/* K and V of different types (q8 K with q4 V: each pair of q.k and p.v rotated on
 * its own), and bf16 */
static void test_mixed_and_bf16_paths(void **state)
{
    (void)state;
    NEED_MODEL();
    quant_paths(KVLM_KV_Q8, KVLM_KV_Q4);
    if (!test_quick()) quant_paths(KVLM_KV_BF16, KVLM_KV_SAME);
}

/* KIVI: a query reads the blocks before its residual group quantized and its own
 * group in f32, whatever the batching. One batch, single steps, steps of 1..6
 * tokens (crossing group edges inside a batch), one thread, a fork, and
 * rollbacks (inside the current group: kept as is; into an earlier group: cut
 * back to that group's start and recomputed) all give the bits of one batch. */
static kvlm_ctx *kivi_ctx(kvlm_kv_type tk, kvlm_kv_type tv, int64_t res, int threads)
{
    kvlm_ctx_params p = kvlm_ctx_default_params();
    p.n_threads = threads;
    p.n_ctx = 512;
    p.kv_type = tk;
    p.kv_type_v = tv;
    p.kv_residual = res;
    kvlm_ctx *c = NULL;
    assert_int_equal(kvlm_ctx_init(g_model, &p, &c, NULL, 0), KVLM_OK);
    return c;
}

static void kivi_paths(kvlm_kv_type tk, kvlm_kv_type tv, int64_t res)
{
    enum { CAP = 512 };
    static kvlm_token t[CAP];
    size_t n = 0, one = tokenize(TEXT, t, CAP);
    const bool quick = test_quick();
    const size_t want = quick ? 300 : 400;   /* past one chunk (256) either way */
    while (n < want && n + one <= CAP) n += tokenize(TEXT, t + n, CAP - n);
    assert_true(n > 256);
    kvlm_ctx *a = kivi_ctx(tk, tv, res, 2), *b = kivi_ctx(tk, tv, res, 2), *c = kivi_ctx(tk, tv, res, 2),
             *d = kivi_ctx(tk, tv, res, 1);
    assert_int_equal(kvlm_ctx_decode(a, t, n, NULL, 0), KVLM_OK);
    /* b: single steps across the group edges at 256 and 384 (groups of 16, 64 and 128),
       batches between, and the last 24 (n = 448); the sanitizer build (each step a weight
       pass) the last 24 only. (Stepping all of [250, 448) repeated those paths.) */
    const size_t lead = quick ? n - 60 : 0;
    const size_t all_steps[3][2] = { { 250, 270 }, { 376, 392 }, { n - 24, n } };
    assert_true(quick || (n == 448 && all_steps[1][1] < n - 24));
    decode_with_steps(b, t, n, quick ? all_steps + 2 : all_steps, quick ? 1 : 3);
    if (lead) assert_int_equal(kvlm_ctx_decode(c, t, lead, NULL, 0), KVLM_OK);
    for (size_t i = lead, step = 1; i < n; i += step, step = step % 6 + 1) {
        size_t k = n - i < step ? n - i : step;
        assert_int_equal(kvlm_ctx_decode(c, t + i, k, NULL, 0), KVLM_OK);
    }
    assert_int_equal(kvlm_ctx_decode(d, t, n - 3, NULL, 0), KVLM_OK);
    for (size_t i = n - 3; i < n; i++) assert_int_equal(kvlm_ctx_decode(d, t + i, 1, NULL, 0), KVLM_OK);
    assert_logits_equal(kvlm_ctx_logits(a), kvlm_ctx_logits(b));
    assert_logits_equal(kvlm_ctx_logits(a), kvlm_ctx_logits(c));
    assert_logits_equal(kvlm_ctx_logits(a), kvlm_ctx_logits(d));

    /* rollback inside the current group, then into an earlier one (mid-group): the
       second group, or in the sanitizer build the one before the current group
       (the same cut with ~60 tokens to recompute, not ~280) */
    const size_t r = n % (size_t)res, inside = r >= 2 ? n - r / 2 : n - 1;
    const size_t early = quick ? (inside / (size_t)res - 1) * (size_t)res + 5 : (size_t)res + 5;
    assert_true(early < inside);
    kvlm_ctx_truncate(b, inside);
    assert_int_equal(kvlm_ctx_n_past(b), inside);
    assert_int_equal(kvlm_ctx_decode(b, t + inside, n - inside, NULL, 0), KVLM_OK);
    assert_logits_equal(kvlm_ctx_logits(a), kvlm_ctx_logits(b));
    kvlm_ctx_truncate(b, early);
    assert_int_equal(kvlm_ctx_n_past(b), early);
    assert_int_equal(kvlm_ctx_decode(b, t + early, n - early, NULL, 0), KVLM_OK);
    assert_logits_equal(kvlm_ctx_logits(a), kvlm_ctx_logits(b));

    /* a fork copies the residual: both continue as the original would */
    kvlm_ctx *f = NULL;
    kvlm_ctx_truncate(c, n - 20);
    assert_int_equal(kvlm_ctx_fork(c, &f, NULL, 0), KVLM_OK);
    assert_int_equal(kvlm_ctx_decode(f, t + n - 20, 20, NULL, 0), KVLM_OK);
    assert_int_equal(kvlm_ctx_decode(c, t + n - 20, 20, NULL, 0), KVLM_OK);
    assert_logits_equal(kvlm_ctx_logits(a), kvlm_ctx_logits(f));
    assert_logits_equal(kvlm_ctx_logits(a), kvlm_ctx_logits(c));
    kvlm_ctx_free(f);

    /* and the quantized blocks are really read: the residual alone would give other logits */
    kvlm_ctx *full = kivi_ctx(KVLM_KV_F32, KVLM_KV_SAME, res, 2);
    assert_int_equal(kvlm_ctx_decode(full, t, n, NULL, 0), KVLM_OK);
    assert_memory_not_equal(kvlm_ctx_logits(a), kvlm_ctx_logits(full), (size_t)g_vocab * sizeof(float));
    kvlm_ctx_free(full);
    kvlm_ctx_free(a);
    kvlm_ctx_free(b);
    kvlm_ctx_free(c);
    kvlm_ctx_free(d);
}

static void test_kivi_paths(void **state)
{
    (void)state;
    NEED_MODEL();
    kivi_paths(KVLM_KV_KIVI4, KVLM_KV_SAME, 64);   /* KIVI K: groups of whole 64-position spans */
    if (test_quick()) return;
    kivi_paths(KVLM_KV_KIVI4, KVLM_KV_Q4, 128);   /* the mixed pair of the README table */
    kivi_paths(KVLM_KV_F16, KVLM_KV_KIVI2, 16);   /* KIVI V alone: any group of whole blocks */
}

/* decode_all: every row bitwise what single-token decodes give; the last row is
 * kvlm_ctx_logits(); refused without the KV cache. */
static void test_decode_all(void **state)
{
    (void)state;
    NEED_MODEL();
    enum { N = 20 };
    kvlm_token t[256];
    assert_true(tokenize(TEXT, t, 256) >= N);
    kvlm_ctx *a = new_ctx(2, 64, false), *b = new_ctx(2, 64, false), *nc = new_ctx(1, 64, true);
    float *all = malloc((size_t)N * (size_t)g_vocab * sizeof *all);
    assert_non_null(all);
    assert_int_equal(kvlm_ctx_decode_all(a, t, N, all, NULL, 0), KVLM_OK);
    for (int i = 0; i < N; i++) {
        assert_int_equal(kvlm_ctx_decode(b, t + i, 1, NULL, 0), KVLM_OK);
        assert_logits_equal(all + (size_t)i * (size_t)g_vocab, kvlm_ctx_logits(b));
    }
    assert_logits_equal(all + (size_t)(N - 1) * (size_t)g_vocab, kvlm_ctx_logits(a));
    assert_int_equal(kvlm_ctx_decode_all(nc, t, 2, all, NULL, 0), KVLM_ERR_INVALID);
    free(all);
    kvlm_ctx_free(a);
    kvlm_ctx_free(b);
    kvlm_ctx_free(nc);
}

/* The benchmark hook: zero K/V without a model run, then decoding works, and
 * nothing of it reaches the prefix cache; its errors leave the context as it was. */
static void test_fill_zero(void **state)
{
    (void)state;
    NEED_MODEL();
    kvlm_token t[256];
    size_t n = tokenize(TEXT, t, 256);
    kvlm_ctx *a = new_ctx(2, 64, false), *nc = new_ctx(1, 64, true);
    char err[256];
    assert_int_equal(kvlm_ctx_decode(a, t, 5, NULL, 0), KVLM_OK);
    assert_int_equal(kvlm_ctx_fill_zero(a, 60, err, sizeof err), KVLM_ERR_CONTEXT_FULL);
    assert_int_equal(kvlm_ctx_n_past(a), 5);
    assert_non_null(kvlm_ctx_logits(a));
    assert_int_equal(kvlm_ctx_fill_zero(nc, 4, err, sizeof err), KVLM_ERR_INVALID);
    assert_int_equal(kvlm_ctx_fill_zero(a, 40, err, sizeof err), KVLM_OK);
    assert_int_equal(kvlm_ctx_n_past(a), 45);
    assert_null(kvlm_ctx_logits(a));
    assert_int_equal(kvlm_ctx_decode(a, t + 5, n < 19 ? n - 5 : 14, NULL, 0), KVLM_OK);
    const float *lg = kvlm_ctx_logits(a);
    assert_non_null(lg);
    for (int64_t i = 0; i < g_vocab; i++) assert_true(isfinite(lg[i]));
    kvlm_ctx_free(a);
    kvlm_ctx_free(nc);

    /* on a shared cache: a zero-filled context leaves nothing cached behind, a
     * normal one with as many positions does */
    kvlm_cache_params cp = kvlm_cache_default_params();
    kvlm_cache *cache;
    assert_int_equal(kvlm_cache_init(g_model, &cp, &cache, err, sizeof err), KVLM_OK);
    kvlm_ctx_params p = kvlm_ctx_default_params();
    p.n_threads = 1;
    p.n_ctx = 64;
    p.cache = cache;
    kvlm_ctx *z, *r;
    kvlm_cache_stats cs;
    assert_int_equal(kvlm_ctx_init(g_model, &p, &z, err, sizeof err), KVLM_OK);
    assert_int_equal(kvlm_ctx_fill_zero(z, 40, err, sizeof err), KVLM_OK);
    assert_int_equal(kvlm_ctx_decode(z, t, 1, NULL, 0), KVLM_OK);
    kvlm_ctx_free(z);
    kvlm_cache_get_stats(cache, &cs);
    assert_int_equal(cs.n_cached, 0);
    assert_int_equal(kvlm_ctx_init(g_model, &p, &r, err, sizeof err), KVLM_OK);
    assert_int_equal(kvlm_ctx_decode(r, t, 41, NULL, 0), KVLM_OK);
    kvlm_ctx_free(r);
    kvlm_cache_get_stats(cache, &cs);
    assert_true(cs.n_cached >= 2);
    kvlm_cache_free(cache);
}

static void test_threads_do_not_change_logits(void **state)
{
    (void)state;
    NEED_MODEL();
    kvlm_token t[256];
    size_t n = tokenize(TEXT, t, 256);
    kvlm_ctx *a = new_ctx(1, 256, false), *b = new_ctx(2, 256, false), *c = new_ctx(3, 256, false);
    assert_int_equal(kvlm_ctx_decode(a, t, n, NULL, 0), KVLM_OK);
    assert_int_equal(kvlm_ctx_decode(b, t, n, NULL, 0), KVLM_OK);
    assert_int_equal(kvlm_ctx_decode(c, t, n, NULL, 0), KVLM_OK);
    assert_logits_equal(kvlm_ctx_logits(a), kvlm_ctx_logits(b));
    assert_logits_equal(kvlm_ctx_logits(a), kvlm_ctx_logits(c));
    kvlm_ctx_free(a);
    kvlm_ctx_free(b);
    kvlm_ctx_free(c);
}

static void test_prefix_reuse_and_rollback(void **state)
{
    (void)state;
    NEED_MODEL();
    kvlm_token t[256], u[256];
    size_t n = tokenize(TEXT, t, 256);
    memcpy(u, t, n * sizeof *t);
    const size_t split = n / 2;
    u[split] = (t[split] + 1) % (kvlm_token)g_vocab;   /* diverge in the middle */

    kvlm_ctx *warm = new_ctx(2, 256, false), *cold = new_ctx(2, 256, false);
    size_t reused = 99;
    assert_int_equal(kvlm_ctx_prefill(warm, t, n, &reused, NULL, 0), KVLM_OK);
    assert_int_equal(reused, 0);
    /* same prompt again: everything but the last token comes from the cache */
    assert_int_equal(kvlm_ctx_prefill(warm, t, n, &reused, NULL, 0), KVLM_OK);
    assert_int_equal(reused, n - 1);
    assert_int_equal(kvlm_ctx_decode(cold, t, n, NULL, 0), KVLM_OK);
    assert_logits_equal(kvlm_ctx_logits(warm), kvlm_ctx_logits(cold));

    /* a prompt that diverges at `split` reuses exactly the common prefix */
    assert_int_equal(kvlm_ctx_prefill(warm, u, n, &reused, NULL, 0), KVLM_OK);
    assert_int_equal(reused, split);
    kvlm_ctx_truncate(cold, 0);
    assert_int_equal(kvlm_ctx_n_past(cold), 0);
    assert_null(kvlm_ctx_logits(cold));
    assert_int_equal(kvlm_ctx_decode(cold, u, n, NULL, 0), KVLM_OK);
    assert_logits_equal(kvlm_ctx_logits(warm), kvlm_ctx_logits(cold));

    /* rollback then re-extend */
    kvlm_ctx_truncate(warm, 5);
    assert_int_equal(kvlm_ctx_n_past(warm), 5);
    assert_int_equal(kvlm_ctx_decode(warm, u + 5, n - 5, NULL, 0), KVLM_OK);
    assert_logits_equal(kvlm_ctx_logits(warm), kvlm_ctx_logits(cold));

    kvlm_stats s;
    kvlm_ctx_get_stats(warm, &s);
    assert_int_equal(s.n_prompt, 3 * (int64_t)n);
    assert_int_equal(s.n_reused, (int64_t)(n - 1 + split));
    assert_int_equal(s.kv_bytes_per_token, 30 * 3 * 64 * 2 * 2);   /* f16: 23,040 bytes */
    assert_int_equal(s.kv_bytes_per_token_layer, 3 * 64 * 2 * 2);
    assert_int_equal(s.kv_bytes_used, (int64_t)n * s.kv_bytes_per_token);
    kvlm_ctx_free(warm);
    kvlm_ctx_free(cold);
}

/* Greedy generation with the cache and without it: same tokens, same logits.
 * 12 steps; the sanitizer build 4 (each no-cache step recomputes the sequence). */
static void test_no_kv_cache_is_identical(void **state)
{
    (void)state;
    NEED_MODEL();
    kvlm_token t[256];
    size_t n = tokenize(TEXT, t, 256);
    const int64_t steps = test_quick() ? 4 : 12;
    kvlm_ctx *a = new_ctx(2, 256, false), *b = new_ctx(2, 256, true);
    assert_int_equal(kvlm_ctx_prefill(a, t, n, NULL, NULL, 0), KVLM_OK);
    assert_int_equal(kvlm_ctx_prefill(b, t, n, NULL, NULL, 0), KVLM_OK);
    for (int64_t step = 0; step < steps; step++) {
        const float *la = kvlm_ctx_logits(a), *lb = kvlm_ctx_logits(b);
        assert_logits_equal(la, lb);
        kvlm_token best = 0;
        for (int64_t i = 1; i < g_vocab; i++) if (la[i] > la[best]) best = (kvlm_token)i;
        assert_int_equal(kvlm_ctx_decode(a, &best, 1, NULL, 0), KVLM_OK);
        assert_int_equal(kvlm_ctx_decode(b, &best, 1, NULL, 0), KVLM_OK);
    }
    kvlm_stats sa, sb;
    kvlm_ctx_get_stats(a, &sa);
    kvlm_ctx_get_stats(b, &sb);
    assert_int_equal(sa.n_computed, (int64_t)n + steps);
    /* the baseline recomputes the whole sequence at every step: O(n^2) */
    assert_int_equal(sb.n_computed, (int64_t)n + steps * (int64_t)n + steps * (steps + 1) / 2);
    kvlm_ctx_free(a);
    kvlm_ctx_free(b);
}

static void test_errors_leave_state_unchanged(void **state)
{
    (void)state;
    NEED_MODEL();
    kvlm_ctx *c = new_ctx(2, 16, false);
    kvlm_token t[20];
    for (int i = 0; i < 20; i++) t[i] = 100 + i;
    char err[256] = "";
    assert_int_equal(kvlm_ctx_decode(c, t, 10, err, sizeof err), KVLM_OK);
    assert_int_equal(kvlm_ctx_decode(c, t, 7, err, sizeof err), KVLM_ERR_CONTEXT_FULL);
    assert_non_null(strstr(err, "context"));
    assert_int_equal(kvlm_ctx_n_past(c), 10);
    assert_int_equal(kvlm_ctx_prefill(c, t, 17, NULL, err, sizeof err), KVLM_ERR_CONTEXT_FULL);
    kvlm_token bad[2] = { 5, (kvlm_token)g_vocab };
    assert_int_equal(kvlm_ctx_decode(c, bad, 2, err, sizeof err), KVLM_ERR_INVALID);
    assert_non_null(strstr(err, "token id"));
    bad[1] = -1;
    assert_int_equal(kvlm_ctx_decode(c, bad, 2, err, sizeof err), KVLM_ERR_INVALID);
    assert_int_equal(kvlm_ctx_decode(c, t, 0, err, sizeof err), KVLM_ERR_INVALID);
    assert_int_equal(kvlm_ctx_n_past(c), 10);
    assert_int_equal(kvlm_ctx_decode(c, t + 10, 6, err, sizeof err), KVLM_OK);
    assert_int_equal(kvlm_ctx_n_past(c), 16);
    kvlm_ctx_free(c);

    kvlm_ctx_params p = kvlm_ctx_default_params();
    p.n_ctx = -5;
    kvlm_ctx *d = (kvlm_ctx *)1;
    assert_int_equal(kvlm_ctx_init(g_model, &p, &d, err, sizeof err), KVLM_ERR_INVALID);
    assert_null(d);
}

static void test_model_load_errors(void **state)
{
    (void)state;
    kvlm_model *m = (kvlm_model *)1;
    char err[512] = "";
    assert_int_equal(kvlm_model_load("/nonexistent/model.gguf", &m, err, sizeof err), KVLM_ERR_IO);
    assert_null(m);
    assert_non_null(strstr(err, "/nonexistent/model.gguf"));
    assert_string_equal(kvlm_err_name(KVLM_ERR_FORMAT), "KVLM_ERR_FORMAT");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_equals_one_at_a_time),
        cmocka_unit_test(test_long_context_paths),
        cmocka_unit_test(test_fill_zero),
        cmocka_unit_test(test_decode_all),
        cmocka_unit_test(test_q8_paths),
        cmocka_unit_test(test_q4_paths),
        cmocka_unit_test(test_mixed_and_bf16_paths),
        cmocka_unit_test(test_kivi_paths),
        cmocka_unit_test(test_threads_do_not_change_logits),
        cmocka_unit_test(test_prefix_reuse_and_rollback),
        cmocka_unit_test(test_no_kv_cache_is_identical),
        cmocka_unit_test(test_errors_leave_state_unchanged),
        cmocka_unit_test(test_model_load_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
