/* test_prefix.c - the paged cache on the real model: every cache path gives the
 * tokens and the bitwise logits of a cold run on a private cache.
 *   cold vs warm prefix (another context's blocks, found in the prefix index)
 *   turn-by-turn chat vs the whole conversation at once (generated tokens hit too)
 *   fork vs independent runs (shared blocks, copy-on-write)
 *   heavy eviction (a budget of a few blocks) vs an unlimited budget
 *   an exhausted budget: a clean KVLM_ERR_BUDGET, and the context still works
 * Shared caches run in poison mode: a freed block reads as NaN, so a stale read
 * cannot pass. Room: tests/engine. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kvlm.h"
#include "testrun.h"
#include "testutil.h"

static kvlm_model *g_model;
static int64_t g_vocab;
static kvlm_kv_type g_kv_type = KVLM_KV_F16;   /* of every cache and context below */
enum { KIVI_RES = 64 };                         /* the KIVI residual group of the tests (KIVI K: >= 64) */
/* positions a prefix hit comes in: blocks, or for KIVI whole residual groups */
static size_t hit_unit(void) { return g_kv_type == KVLM_KV_KIVI4 || g_kv_type == KVLM_KV_KIVI2 ? KIVI_RES : 16; }

#define NEED_MODEL() do { if (!g_model) skip(); } while (0)
enum { MAX_TOK = 1024, GEN = 12 };

static const char *SYSTEM =
    "You are a careful assistant for a library of old maps. Answer in one short "
    "sentence, name the map when you can, and never invent a date. The library "
    "holds 1,204 maps of coasts, rivers and cities, most of them printed between "
    "1650 and 1900, and a few drawn by hand.";

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

static kvlm_cache *new_cache(size_t blocks)
{
    return test_cache_new(g_model, g_kv_type, KIVI_RES,
                          blocks * (size_t)kvlm_kv_bytes_per_token(g_model, g_kv_type) * 16 + 4096, 0);
}

/* cache NULL: a private cache (the cold reference) */
static kvlm_ctx *new_ctx(kvlm_cache *cache) { return test_ctx_new(g_model, cache, g_kv_type, KIVI_RES, MAX_TOK); }

static size_t chat_tokens(const char *user, const char *reply, const char *user2, kvlm_token *out)
{
    kvlm_chat_msg m[4] = { { "system", SYSTEM }, { "user", user }, { "assistant", reply }, { "user", user2 } };
    char *text;
    assert_int_equal(kvlm_chat_render(g_model, m, reply ? 4 : 2, true, &text, NULL, 0), KVLM_OK);
    size_t n;
    assert_int_equal(kvlm_tokenize(g_model, text, strlen(text), true, true, out, MAX_TOK, &n, NULL, 0), KVLM_OK);
    free(text);
    return n;
}

typedef test_run run;

static void greedy(kvlm_ctx *c, run *r, size_t n) { test_greedy(c, g_vocab, r, n); }

/* The cold reference: tokens prefilled on a fresh private cache, then greedy. */
static void cold(const kvlm_token *t, size_t n, run *r)
{
    kvlm_ctx *c = new_ctx(NULL);
    size_t reused = 99;
    assert_int_equal(kvlm_ctx_prefill(c, t, n, &reused, NULL, 0), KVLM_OK);
    assert_int_equal(reused, 0);
    greedy(c, r, GEN);
    kvlm_ctx_free(c);
}

static void test_warm_prefix(void **state)
{
    (void)state;
    NEED_MODEL();
    kvlm_cache *cache = new_cache(200);
    kvlm_token a[MAX_TOK], b[MAX_TOK];
    size_t na = chat_tokens("Which maps show rivers?", NULL, NULL, a);
    size_t nb = chat_tokens("Do you have a map of Lisbon?", NULL, NULL, b);
    size_t common = 0;
    while (common < na && common < nb && a[common] == b[common]) common++;
    assert_true(common >= 64);

    kvlm_ctx *ca = new_ctx(cache);
    size_t reused;
    assert_int_equal(kvlm_ctx_prefill(ca, a, na, &reused, NULL, 0), KVLM_OK);
    assert_int_equal(reused, 0);
    run ra;
    greedy(ca, &ra, GEN);

    kvlm_ctx *cb = new_ctx(cache);   /* a new context: the hit comes from the index */
    assert_int_equal(kvlm_ctx_prefill(cb, b, nb, &reused, NULL, 0), KVLM_OK);
    assert_int_equal(reused, common / hit_unit() * hit_unit());
    run rb, rb_cold;
    greedy(cb, &rb, GEN);
    cold(b, nb, &rb_cold);
    test_assert_runs_equal(&rb, &rb_cold, "warm vs cold");

    kvlm_stats st;
    kvlm_ctx_get_stats(cb, &st);
    assert_true(st.cache.hits >= (int64_t)(common / hit_unit() * hit_unit() / 16));
    assert_int_equal(st.n_reused, (int64_t)(common / hit_unit() * hit_unit()));
    print_message("shared prefix %zu tokens, reused %zu; blocks in use %lld, cached %lld\n", common, reused,
                  (long long)st.cache.n_in_use, (long long)st.cache.n_cached);
    kvlm_ctx_free(ca);
    kvlm_ctx_free(cb);
    kvlm_cache_free(cache);
    test_free_run(&ra);
    test_free_run(&rb);
    test_free_run(&rb_cold);
}

/* Turn 1 in one context; turn 2 in a NEW context on the same cache: it must hit
 * the blocks of turn 1 including the reply's generated tokens, and give what the
 * whole conversation computed cold gives. */
static void test_chat_turns(void **state)
{
    (void)state;
    NEED_MODEL();
    kvlm_cache *cache = new_cache(200);
    kvlm_token t1[MAX_TOK], t2[MAX_TOK];
    size_t n1 = chat_tokens("Name a map of a river.", NULL, NULL, t1);
    kvlm_ctx *c1 = new_ctx(cache);
    assert_int_equal(kvlm_ctx_prefill(c1, t1, n1, NULL, NULL, 0), KVLM_OK);
    /* the reply: greedy until <|im_end|> (at most 40 tokens), fed into the cache */
    char reply[1024] = "";
    size_t nr = 0, n_seq = n1;                       /* t1[0, n_seq): turn 1's sequence, reply included */
    for (int i = 0; i < 40; i++) {
        kvlm_token t = test_argmax(kvlm_ctx_logits(c1), g_vocab);
        if (kvlm_token_is_eog(g_model, t)) break;
        assert_true(n_seq < MAX_TOK);
        t1[n_seq++] = t;
        char piece[64];
        int64_t k = kvlm_token_to_bytes(g_model, t, false, piece, sizeof piece);
        assert_true(k >= 0 && nr + (size_t)k < sizeof reply);
        memcpy(reply + nr, piece, (size_t)k);
        reply[nr += (size_t)k] = '\0';
        assert_int_equal(kvlm_ctx_decode(c1, &t, 1, NULL, 0), KVLM_OK);
    }
    kvlm_ctx_free(c1);   /* its blocks stay cached */

    size_t n2 = chat_tokens("Name a map of a river.", reply, "And one of a city?", t2);
    kvlm_ctx *c2 = new_ctx(cache);
    size_t reused;
    assert_int_equal(kvlm_ctx_prefill(c2, t2, n2, &reused, NULL, 0), KVLM_OK);
    print_message("turn 2: %zu prompt tokens, %zu reused (turn 1 had %zu + reply)\n", n2, reused, n1);
    /* every whole unit (block, KIVI group) of turn 1's sequence that turn 2 starts with,
       the last prompt token left to compute: generated tokens were cached too */
    size_t common = 0;
    while (common < n_seq && common < n2 - 1 && t1[common] == t2[common]) common++;
    assert_int_equal(reused, common / hit_unit() * hit_unit());
    if (hit_unit() == 16) assert_true(reused > n1);
    run warm, whole;
    greedy(c2, &warm, GEN);
    cold(t2, n2, &whole);
    test_assert_runs_equal(&warm, &whole, "turn by turn vs one shot");
    kvlm_ctx_free(c2);
    kvlm_cache_free(cache);
    test_free_run(&warm);
    test_free_run(&whole);
}

/* Forks share the prompt's blocks; each continues with a different token. */
static void test_fork(void **state)
{
    (void)state;
    NEED_MODEL();
    kvlm_cache *cache = new_cache(200);
    kvlm_token p[MAX_TOK + 1];
    size_t n = chat_tokens("Which maps were drawn by hand?", NULL, NULL, p);
    assert_true(n % 16 != 0);   /* the last block is partly filled: forks must copy it */
    kvlm_ctx *base = new_ctx(cache);
    assert_int_equal(kvlm_ctx_prefill(base, p, n, NULL, NULL, 0), KVLM_OK);
    kvlm_ctx *f[3] = { base, NULL, NULL };
    for (int i = 1; i < 3; i++) assert_int_equal(kvlm_ctx_fork(base, &f[i], NULL, 0), KVLM_OK);
    kvlm_stats st;
    kvlm_ctx_get_stats(base, &st);
    int64_t in_use_shared = st.cache.n_in_use;
    assert_int_equal(in_use_shared, (int64_t)((n + 15) / 16));   /* forks copied nothing yet */
    const kvlm_token first[3] = { 504, 1782, 378 };
    run r[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(kvlm_ctx_decode(f[i], &first[i], 1, NULL, 0), KVLM_OK);
        greedy(f[i], &r[i], GEN);
    }
    kvlm_ctx_get_stats(base, &st);
    assert_true(st.cache.copies >= 2);
    for (int i = 0; i < 3; i++) {
        p[n] = first[i];
        run ind;
        cold(p, n + 1, &ind);
        test_assert_runs_equal(&r[i], &ind, "fork vs independent");
        test_free_run(&ind);
        test_free_run(&r[i]);
    }
    for (int i = 0; i < 3; i++) kvlm_ctx_free(f[i]);
    kvlm_cache_get_stats(cache, &st.cache);
    assert_int_equal(st.cache.n_in_use, 0);
    kvlm_cache_free(cache);
}

/* Five prompts through a cache of a few blocks: constant eviction, same results. */
static void test_heavy_eviction(void **state)
{
    (void)state;
    NEED_MODEL();
    /* each prompt long enough to publish a block that differs between questions
       even at a KIVI K cache's granularity (whole groups of KIVI_RES positions) */
    static const char *q[] = {
        "I collect old maps of coasts, mountains and cities, and I read every legend on them with care. "
        "I keep them in drawers sorted by year and by region. Which maps show rivers?",
        "I collect old maps of coasts, mountains and cities, and I read every legend on them with care. "
        "I keep them in drawers sorted by year and by region. Do you have a map of Lisbon?",
        "I collect old maps of coasts, mountains and cities, and I read every legend on them with care. "
        "I keep them in drawers sorted by year and by region. Which maps show rivers?",
        "I collect old maps of coasts, mountains and cities, and I read every legend on them with care. "
        "I keep them in drawers sorted by year and by region. What is the oldest map?",
        "I collect old maps of coasts, mountains and cities, and I read every legend on them with care. "
        "I keep them in drawers sorted by year and by region. Do you have a map of Lisbon?" };
    kvlm_token t[MAX_TOK];
    size_t longest = 0, shortest = MAX_TOK;
    for (int i = 0; i < 5; i++) {
        size_t n = chat_tokens(q[i], NULL, NULL, t);
        if (n > longest) longest = n;
        if (n < shortest) shortest = n;
    }
    assert_true(shortest + GEN >= 2 * KIVI_RES && shortest < 2 * KIVI_RES);   /* the questions differ inside group 1 */
    size_t blocks = (longest + GEN + 15) / 16 + 1;   /* one sequence and a copy, no more */
    kvlm_cache *small = new_cache(blocks), *big = new_cache(400);
    /* the unlimited budget's run of each of the three questions, once (q[2] is q[0], q[4] q[1]) */
    run rb[3];
    static const int ref[5] = { 0, 1, 0, 2, 1 };
    static const bool first_seen[5] = { true, true, false, true, false };
    for (int i = 0; i < 5; i++) {
        size_t n = chat_tokens(q[i], NULL, NULL, t);
        run rs;
        kvlm_ctx *cs = new_ctx(small);
        assert_int_equal(kvlm_ctx_prefill(cs, t, n, NULL, NULL, 0), KVLM_OK);
        greedy(cs, &rs, GEN);
        if (first_seen[i]) {
            kvlm_ctx *cb = new_ctx(big);
            assert_int_equal(kvlm_ctx_prefill(cb, t, n, NULL, NULL, 0), KVLM_OK);
            greedy(cb, &rb[ref[i]], GEN);
            kvlm_ctx_free(cb);
        }
        test_assert_runs_equal(&rs, &rb[ref[i]], "small budget vs unlimited");
        kvlm_ctx_free(cs);
        test_free_run(&rs);
    }
    for (int i = 0; i < 3; i++) test_free_run(&rb[i]);
    kvlm_cache_stats s;
    kvlm_cache_get_stats(small, &s);
    print_message("%lld blocks: %lld evictions, %lld hits\n", (long long)s.n_blocks, (long long)s.evictions,
                  (long long)s.hits);
    assert_true(s.evictions > 0);
    assert_int_equal(s.n_in_use, 0);
    kvlm_cache_free(small);
    kvlm_cache_free(big);
}

/* A budget too small for the sequence: a clean error, nothing changed, and the
 * context goes on once the sequence is shorter. */
static void test_budget_exhausted(void **state)
{
    (void)state;
    NEED_MODEL();
    kvlm_cache *cache = new_cache(3);   /* 48 positions */
    kvlm_ctx *c = new_ctx(cache);
    kvlm_token t[MAX_TOK];
    size_t n = chat_tokens("Which maps show rivers?", NULL, NULL, t);
    assert_true(n > 48);
    char err[256] = "";
    assert_int_equal(kvlm_ctx_prefill(c, t, n, NULL, err, sizeof err), KVLM_ERR_BUDGET);
    print_message("error: %s\n", err);
    assert_true(strlen(err) > 10);
    assert_int_equal(kvlm_ctx_n_past(c), 0);
    assert_int_equal(kvlm_ctx_prefill(c, t, 40, NULL, err, sizeof err), KVLM_OK);
    assert_int_equal(kvlm_ctx_decode(c, t + 40, 8, NULL, 0), KVLM_OK);
    assert_int_equal(kvlm_ctx_decode(c, t + 48, 1, err, sizeof err), KVLM_ERR_BUDGET);
    assert_int_equal(kvlm_ctx_n_past(c), 48);
    assert_non_null(kvlm_ctx_logits(c));
    for (int64_t i = 0; i < g_vocab; i++) assert_false(isnan(kvlm_ctx_logits(c)[i]));
    kvlm_ctx_free(c);
    kvlm_cache_free(cache);
    /* a budget below one block is refused at init */
    kvlm_cache_params cp = kvlm_cache_default_params();
    cp.mem_bytes = 1000;
    kvlm_cache *tiny = NULL;
    assert_int_equal(kvlm_cache_init(g_model, &cp, &tiny, err, sizeof err), KVLM_ERR_BUDGET);
    assert_null(tiny);
}

/* Different namespaces never share blocks. */
static void test_namespaces(void **state)
{
    (void)state;
    NEED_MODEL();
    kvlm_cache *cache = new_cache(200);
    kvlm_token t[MAX_TOK];
    size_t n = chat_tokens("Which maps show rivers?", NULL, NULL, t), reused;
    kvlm_ctx_params p = kvlm_ctx_default_params();
    p.n_threads = 2;
    p.n_ctx = MAX_TOK;
    p.cache = cache;
    kvlm_ctx *c[3];
    for (int i = 0; i < 3; i++) {
        p.cache_ns = i == 1 ? 7 : 0;
        assert_int_equal(kvlm_ctx_init(g_model, &p, &c[i], NULL, 0), KVLM_OK);
    }
    assert_int_equal(kvlm_ctx_prefill(c[0], t, n, &reused, NULL, 0), KVLM_OK);
    assert_int_equal(reused, 0);
    assert_int_equal(kvlm_ctx_prefill(c[1], t, n, &reused, NULL, 0), KVLM_OK);
    assert_int_equal(reused, 0);   /* namespace 7 does not see namespace 0 */
    assert_int_equal(kvlm_ctx_prefill(c[2], t, n, &reused, NULL, 0), KVLM_OK);
    assert_int_equal(reused, (n - 1) / 16 * 16);
    for (int i = 0; i < 3; i++) kvlm_ctx_free(c[i]);
    kvlm_cache_free(cache);
}

/* The same cache paths with q8 K/V: blocks are opaque bytes to the pool, and a
 * position's quantization is fixed when it is stored, so warm, cold and evicted
 * paths must agree bitwise for q8 as they do for f16. */
static void test_heavy_eviction(void **state);
static void test_fork(void **state);
static void test_q8_cache_paths(void **state)
{
    g_kv_type = KVLM_KV_Q8;
    test_warm_prefix(state);
    if (!getenv("KVLM_TEST_QUICK")) {                /* the sanitizer build: warm and cold only */
        test_chat_turns(state);
        test_heavy_eviction(state);
    }
    g_kv_type = KVLM_KV_F16;
}

static void test_q4_cache_paths(void **state)
{
    g_kv_type = KVLM_KV_Q4;
    test_warm_prefix(state);
    test_fork(state);
    g_kv_type = KVLM_KV_F16;
}

/* KIVI: a query reads its own residual group in f32 from the sequence, so a hit
 * comes in whole groups (the f32 residual is rebuilt by computing the rest of
 * it), and chat turns, forks (which copy the residual) and evictions must still
 * agree bitwise with cold runs. */
static void test_kivi_cache_paths(void **state)
{
    g_kv_type = KVLM_KV_KIVI4;
    test_warm_prefix(state);
    test_chat_turns(state);
    test_fork(state);
    if (!getenv("KVLM_TEST_QUICK")) test_heavy_eviction(state);
    g_kv_type = KVLM_KV_F16;
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_warm_prefix),
        cmocka_unit_test(test_chat_turns),
        cmocka_unit_test(test_fork),
        cmocka_unit_test(test_heavy_eviction),
        cmocka_unit_test(test_budget_exhausted),
        cmocka_unit_test(test_namespaces),
        cmocka_unit_test(test_q8_cache_paths),
        cmocka_unit_test(test_q4_cache_paths),
        cmocka_unit_test(test_kivi_cache_paths),
    };
    return cmocka_run_group_tests_name("prefix_cache", t, setup, teardown);
}
