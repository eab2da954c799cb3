/* test_swa.c - sliding-window layer groups in the KV pool (kv_pool.h "Layer
 * groups", kv_seq.h) and, on Gemma 3 270M, every cache path against a cold run:
 *   the layout: which layers share a table, how many tables
 *   window memory: a window table holds its window and one step, whatever n_pos;
 *     what it lets go stays cached (published) and evictable
 *   cold vs no KV cache (the whole sequence recomputed each step)
 *   warm prefix: another context's blocks, found in the prefix index
 *   a prompt diverging more than a window before the end of the cached one: the
 *     window blocks it needs come back from the LRU
 *   chat turn by turn vs one shot, fork, heavy eviction, truncate into a window
 *     already let go, a budget that runs out midway (kvlm.h: the batches done stay)
 * all bitwise equal (tokens and logits). Shared caches run in poison mode: a freed
 * block reads as NaN. Room: tests/engine. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kvlm.h"
#include "kv/kv_pool.h"
#include "kv/kv_seq.h"
#include "kern/quant.h"
#include "testrun.h"
#include "testutil.h"

static kvlm_model *g_model;
static int64_t g_vocab;
static kvlm_token *g_text;       /* the GPL-3 text, tokenized */
static size_t g_n_text;
/* the cold run of A (the text's first len_a() tokens), computed once for the tests that compare to it */
static test_run g_cold_a;
static bool g_have_cold_a;
enum { MAX_TOK = 4096, GEN = 8, WINDOW = 512 };

#define NEED_MODEL() do { if (!g_model) skip(); } while (0)

static int setup(void **state)
{
    (void)state;
    const char *path = test_gemma3_path();
    if (!path) return 0;
    char err[256];
    if (kvlm_model_load(path, &g_model, err, sizeof err) != KVLM_OK) {
        fprintf(stderr, "load: %s\n", err);
        return -1;
    }
    kvlm_model_info in;
    kvlm_model_get_info(g_model, &in);
    g_vocab = in.n_vocab;
    FILE *f = fopen("/usr/share/common-licenses/GPL-3", "rb");
    if (!f) return -1;
    char *buf = malloc(1 << 16);
    size_t len = buf ? fread(buf, 1, (1 << 16) - 1, f) : 0;
    fclose(f);
    g_text = malloc(MAX_TOK * sizeof *g_text);
    if (!buf || !g_text) return -1;
    kvlm_err e = kvlm_tokenize(g_model, buf, len, true, false, g_text, MAX_TOK, &g_n_text, NULL, 0);
    free(buf);
    return e == KVLM_OK || e == KVLM_ERR_INVALID ? 0 : -1;   /* INVALID: more tokens than MAX_TOK */
}

static int teardown(void **state)
{
    (void)state;
    kvlm_model_free(g_model);
    free(g_text);
    if (g_have_cold_a) test_free_run(&g_cold_a);
    return 0;
}

/* ---- the layout and the window's memory (no model) --------------------------------- */
static const bool GEMMA_PATTERN[18] = { 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0 };

static void test_layout(void **state)
{
    (void)state;
    assert_int_equal(kv_pool_layers_per_block(18, GEMMA_PATTERN), 3);
    assert_int_equal(kv_pool_layers_per_block(18, NULL), 18);
    bool g4b[34];                                  /* Gemma 3 4B: 5 global of 34 */
    for (int i = 0; i < 34; i++) g4b[i] = i % 6 < 5;
    assert_int_equal(kv_pool_layers_per_block(34, g4b), 1);
    bool many[130];
    for (int i = 0; i < 130; i++) many[i] = i % 2;   /* gcd 65: 2 tables */
    assert_int_equal(kv_pool_layers_per_block(130, many), 65);
    many[1] = false;                               /* 64 / 66 window: gcd 2, 65 tables > 64 */
    assert_int_equal(kv_pool_layers_per_block(130, many), 0);

    kv_pool pool;
    kv_pool_params pp = { 18, 1, 256, KVLM_KV_F16, KVLM_KV_F16, 64 << 20, true, 0, GEMMA_PATTERN, WINDOW };
    char err[256];
    assert_int_equal(kv_pool_init(&pool, &pp, err, sizeof err), KVLM_OK);
    assert_int_equal(pool.n_tab, 6);
    assert_int_equal(pool.n_layer, 3);
    assert_int_equal(pool.tab_window[0], 0);       /* the full layers 5, 11, 17 */
    for (int t = 1; t < 6; t++) assert_int_equal(pool.tab_window[t], WINDOW);
    const int full[3] = { 5, 11, 17 };
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pool.layer_tab[full[i]], 0);
        assert_int_equal(pool.layer_slot[full[i]], i);
    }
    assert_int_equal(pool.layer_tab[0], 1);
    assert_int_equal(pool.layer_tab[16], 5);
    assert_int_equal(pool.block_bytes, 3 * 2 * 16 * 256 * 2);
    kv_pool_stats st;
    kv_pool_get_stats(&pool, &st);
    assert_int_equal(st.bytes_per_token, 18 * 2 * 256 * 2);
    kv_pool_free(&pool);
}

/* Writes positions [n_pos, n_pos + n) of every layer: value = pos + layer / 64. */
static void write_step(kv_seq *s, int64_t n)
{
    float k[256], v[256];
    assert_int_equal(kv_seq_reserve(s, n, NULL, 0), KVLM_OK);
    for (int64_t p = s->n_pos; p < s->n_pos + n; p++)
        for (int64_t il = 0; il < 18; il++) {
            for (int i = 0; i < 256; i++) k[i] = v[i] = (float)p + (float)il / 64.0f;
            kv_seq_store(s, il, p, k, v);
        }
    kv_seq_advance(s, n);
}

static void test_window_memory(void **state)
{
    (void)state;
    kv_pool pool;
    kv_pool_params pp = { 18, 1, 256, KVLM_KV_F16, KVLM_KV_F16, 1200 * 3 * 2 * 16 * 512, true, 0, GEMMA_PATTERN,
                          WINDOW };
    char err[256];
    assert_int_equal(kv_pool_init(&pool, &pp, err, sizeof err), KVLM_OK);
    kv_seq s;
    kv_seq_init(&s, &pool);
    kvlm_token *tok = calloc(4000, sizeof *tok);
    assert_non_null(tok);
    for (int i = 0; i < 4000; i++) tok[i] = i % 1000;
    const int64_t step = 100;
    for (int64_t done = 0; done < 3000; done += step) {
        write_step(&s, step);
        assert_int_equal(kv_seq_publish(&s, tok, s.n_pos, 7, 0, err, sizeof err), KVLM_OK);
        kv_seq_slide(&s);
        /* each window table: blocks of [n_pos + 1 - 512, n_pos) and the partial one */
        for (int t = 1; t < 6; t++) {
            const kv_seq *u = &s.sub[t - 1];
            int64_t held = 0;
            for (int64_t i = 0; i < u->n_blocks; i++) held += u->blocks[i] != KV_BLOCK_NONE;
            assert_true(held <= WINDOW / 16 + 2);
            /* every position a query at n_pos reads is there, and holds what was written */
            const int64_t lo = s.n_pos + 1 > WINDOW ? s.n_pos + 1 - WINDOW : 0;
            for (int64_t p = lo; p < s.n_pos; p++) assert_int_not_equal(u->blocks[p / 16], KV_BLOCK_NONE);
        }
        assert_int_equal(s.n_blocks, (s.n_pos + 15) / 16);   /* the full table keeps everything */
        assert_int_equal(kv_pool_check(&pool, err, sizeof err), KVLM_OK);
    }
    const int il = 3;                              /* a window layer: its last rows read back */
    const uint16_t *k = kv_seq_k_elem(&s, il, s.n_pos - 1, 0);
    assert_float_equal(fp16_to_f32(*k), (float)(s.n_pos - 1) + 3.0f / 64.0f, 1.0f);
    kv_pool_stats st;
    kv_pool_get_stats(&pool, &st);
    /* in use: 188 full blocks + 5 x <= 34; the window blocks let go are cached */
    assert_true(st.n_in_use <= 188 + 5 * (WINDOW / 16 + 2));
    assert_true(st.n_cached > 5 * 100);
    /* loose links pin nothing: a second sequence can evict every cached window block */
    kv_seq s2;
    kv_seq_init(&s2, &pool);
    for (int64_t done = 0; done < 2500; done += step) {
        write_step(&s2, step);
        kv_seq_slide(&s2);
    }
    kv_pool_get_stats(&pool, &st);
    assert_true(st.evictions > 0);
    assert_int_equal(kv_pool_check(&pool, err, sizeof err), KVLM_OK);
    kv_seq_free(&s2);
    kv_seq_free(&s);
    kv_pool_get_stats(&pool, &st);
    assert_int_equal(st.n_in_use, 0);
    kv_pool_free(&pool);
    free(tok);
}

/* ---- Gemma 3: every path against a cold run ------------------------------------------- */
static kvlm_cache *new_cache(size_t mem) { return test_cache_new(g_model, KVLM_KV_F16, 0, mem, MAX_TOK); }

static kvlm_ctx *new_ctx(kvlm_cache *cache) { return test_ctx_new(g_model, cache, KVLM_KV_F16, 0, MAX_TOK); }

/* prefill toks, then GEN greedy steps into r; returns the positions reused */
static size_t run_prompt(kvlm_ctx *c, const kvlm_token *toks, size_t n, test_run *r)
{
    size_t reused = 0;
    char err[256];
    kvlm_err e = kvlm_ctx_prefill(c, toks, n, &reused, err, sizeof err);
    if (e) fail_msg("prefill: %s", err);
    test_greedy(c, g_vocab, r, GEN);
    return reused;
}

static void cold(const kvlm_token *toks, size_t n, test_run *r)
{
    kvlm_ctx *c = new_ctx(NULL);
    assert_int_equal(run_prompt(c, toks, n, r), 0);
    kvlm_ctx_free(c);
}

/* prompt B: the text's first `shared` tokens, then tokens from far into the text */
static size_t diverged(kvlm_token *out, size_t shared, size_t tail)
{
    memcpy(out, g_text, shared * sizeof *out);
    memcpy(out + shared, g_text + 2600, tail * sizeof *out);
    return shared + tail;
}

static size_t len_a(void) { return test_quick() ? 700 : 1300; }

static const test_run *cold_a(void)
{
    if (!g_have_cold_a) {
        cold(g_text, len_a(), &g_cold_a);
        g_have_cold_a = true;
    }
    return &g_cold_a;
}

/* A (1,300 tokens: 788 before the last one's window) without a KV cache: NO_CACHE_GEN
 * greedy steps, each recomputing the whole sequence, against the first steps of A's
 * cold run, computed once for the other tests: 5,206 positions computed here (900 tokens
 * and 8 steps took 7,228 and a cold run of their own). */
enum { NO_CACHE_GEN = 4 };

static void test_cold_vs_no_cache(void **state)
{
    (void)state;
    NEED_MODEL();
    if (test_quick()) skip();                      /* the no-cache run is quadratic */
    const size_t n = len_a();
    test_run a = *cold_a(), b;
    a.n = NO_CACHE_GEN;                            /* a view of its first steps: [n][n_vocab] rows */
    kvlm_ctx_params p = kvlm_ctx_default_params();
    p.n_threads = 2;
    p.n_ctx = MAX_TOK;
    p.no_kv_cache = true;
    kvlm_ctx *c;
    assert_int_equal(kvlm_ctx_init(g_model, &p, &c, NULL, 0), KVLM_OK);
    char err[256];
    if (kvlm_ctx_prefill(c, g_text, n, NULL, err, sizeof err)) fail_msg("prefill: %s", err);
    test_greedy(c, g_vocab, &b, NO_CACHE_GEN);
    test_assert_runs_equal(&a, &b, "no KV cache");
    kvlm_ctx_free(c);
    test_free_run(&b);
}

static void test_warm_and_diverged(void **state)
{
    (void)state;
    NEED_MODEL();
    const size_t na = len_a();
    kvlm_token *b = malloc(MAX_TOK * sizeof *b);
    assert_non_null(b);
    const size_t shared = na - 600, nb = diverged(b, shared, 400);   /* diverges 600 > 512 before A's end */
    test_run cb, wa, wb;
    const test_run *ca = cold_a();
    cold(b, nb, &cb);
    kvlm_cache *cache = new_cache(64 << 20);
    kvlm_ctx *c1 = new_ctx(cache), *c2 = new_ctx(cache), *c3 = new_ctx(cache);
    test_run first;
    assert_int_equal(run_prompt(c1, g_text, na, &first), 0);
    test_assert_runs_equal(ca, &first, "first run on a shared cache");
    const size_t r2 = run_prompt(c2, g_text, na, &wa);
    assert_int_equal(r2, (na - 1) / 16 * 16);
    test_assert_runs_equal(ca, &wa, "warm prefix");
    const size_t r3 = run_prompt(c3, b, nb, &wb);
    assert_int_equal(r3, shared / 16 * 16);       /* its window's blocks came back from the LRU */
    test_assert_runs_equal(&cb, &wb, "diverged more than a window before the end");
    kvlm_cache_stats st;
    kvlm_cache_get_stats(cache, &st);
    assert_true(st.n_cached > 0);
    kvlm_ctx_free(c1);
    kvlm_ctx_free(c2);
    kvlm_ctx_free(c3);
    kvlm_cache_free(cache);
    test_free_run(&cb);
    test_free_run(&wa);
    test_free_run(&wb);
    test_free_run(&first);
    free(b);
}

/* turn 1: the first t1 tokens and GEN replies; turn 2 adds 300 more text tokens
 * after the replies. One shot: the whole of turn 2's tokens on a private cache. */
static void test_chat_turns(void **state)
{
    (void)state;
    NEED_MODEL();
    const size_t t1 = test_quick() ? 300 : 600;
    kvlm_token *all = malloc(MAX_TOK * sizeof *all);
    assert_non_null(all);
    kvlm_ctx *c = new_ctx(NULL);
    test_run r1, r2, ref;
    run_prompt(c, g_text, t1, &r1);
    memcpy(all, g_text, t1 * sizeof *all);
    memcpy(all + t1, r1.tok, GEN * sizeof *all);
    memcpy(all + t1 + GEN, g_text + 2600, 300 * sizeof *all);
    const size_t n = t1 + GEN + 300;
    const size_t reused = run_prompt(c, all, n, &r2);
    assert_int_equal(reused, t1 + GEN - 1);        /* the last reply token was never decoded */
    cold(all, n, &ref);
    test_assert_runs_equal(&ref, &r2, "chat turn by turn vs one shot");
    kvlm_ctx_free(c);
    test_free_run(&r1);
    test_free_run(&r2);
    test_free_run(&ref);
    free(all);
}

static void test_fork(void **state)
{
    (void)state;
    NEED_MODEL();
    const size_t n = len_a();
    test_run a, b;
    const test_run *ref = cold_a();
    kvlm_cache *cache = new_cache(64 << 20);
    kvlm_ctx *c = new_ctx(cache), *f;
    char err[256];
    assert_int_equal(kvlm_ctx_prefill(c, g_text, n, NULL, err, sizeof err), KVLM_OK);
    assert_int_equal(kvlm_ctx_fork(c, &f, err, sizeof err), KVLM_OK);
    test_greedy(f, g_vocab, &b, GEN);              /* the fork first: it writes into shared blocks' copies */
    test_greedy(c, g_vocab, &a, GEN);
    test_assert_runs_equal(ref, &a, "fork: the parent");
    test_assert_runs_equal(ref, &b, "fork: the child");
    kvlm_ctx_free(f);
    kvlm_ctx_free(c);
    kvlm_cache_free(cache);
    test_free_run(&a);
    test_free_run(&b);
}

/* A budget of a little more than one sequence's: each prompt evicts the others'. */
static void test_eviction(void **state)
{
    (void)state;
    NEED_MODEL();
    const size_t na = len_a();
    kvlm_token *b = malloc(MAX_TOK * sizeof *b);
    assert_non_null(b);
    const size_t nb = diverged(b, 200, na - 200);
    test_run cb;
    const test_run *ca = cold_a();
    cold(b, nb, &cb);
    const size_t block = 3 * 2 * 16 * 256 * 2;     /* f16: 3 layers x K,V x 16 x 256 */
    kvlm_cache *cache = new_cache((na / 16 + 8 + 5 * (WINDOW / 16 + 40)) * block);
    for (int round = 0; round < 2; round++) {
        kvlm_ctx *c1 = new_ctx(cache), *c2 = new_ctx(cache);
        test_run r1, r2;
        run_prompt(c1, g_text, na, &r1);
        kvlm_ctx_free(c1);
        run_prompt(c2, b, nb, &r2);
        kvlm_ctx_free(c2);
        test_assert_runs_equal(ca, &r1, "eviction: A");
        test_assert_runs_equal(&cb, &r2, "eviction: B");
        test_free_run(&r1);
        test_free_run(&r2);
    }
    kvlm_cache_stats st;
    kvlm_cache_get_stats(cache, &st);
    assert_true(st.evictions > 0);
    kvlm_cache_free(cache);
    test_free_run(&cb);
    free(b);
}

/* A context that has let its window go is asked for a prompt sharing only 300
 * tokens: it cannot keep them in place (their window is gone), finds them in the
 * prefix index, and matches a cold run. */
static void test_truncate_into_window(void **state)
{
    (void)state;
    NEED_MODEL();
    const size_t na = len_a();
    kvlm_token *b = malloc(MAX_TOK * sizeof *b);
    assert_non_null(b);
    const size_t nb = diverged(b, 300, 60);
    test_run cb, r, first;
    cold(b, nb, &cb);
    kvlm_cache *cache = new_cache(64 << 20);
    kvlm_ctx *c = new_ctx(cache);
    run_prompt(c, g_text, na, &first);
    const size_t reused = run_prompt(c, b, nb, &r);
    assert_int_equal(reused, 288);
    test_assert_runs_equal(&cb, &r, "truncate into a window let go");
    kvlm_ctx_truncate(c, 100);                    /* without the index: recomputed, still exact */
    assert_int_equal(kvlm_ctx_n_past(c), 100);
    kvlm_ctx_free(c);
    kvlm_cache_free(cache);
    test_free_run(&cb);
    test_free_run(&r);
    test_free_run(&first);
    free(b);
}

/* kvlm.h's contract for sliding-window models: a budget that runs out midway
 * leaves the 512-token batches done in the sequence, with their last logits,
 * bitwise those of a context that decoded only them; the context stays usable. */
static void test_budget_midway(void **state)
{
    (void)state;
    NEED_MODEL();
    const size_t n = len_a(), block = 3 * 2 * 16 * 256 * 2;
    /* the first batch's 512 / 16 blocks in each of the 6 tables fit (nothing has left
       the window yet), and 8 more: the second batch (188 tokens or more) needs 12 more
       in each table */
    kvlm_cache *cache = new_cache((6 * 512 / 16 + 8) * block);
    kvlm_ctx *c = new_ctx(cache);
    char err[256];
    assert_int_equal(kvlm_ctx_decode(c, g_text, n, err, sizeof err), KVLM_ERR_BUDGET);
    const size_t done = kvlm_ctx_n_past(c);
    assert_true(done > 0 && done < n && done % 512 == 0);
    const float *lg = kvlm_ctx_logits(c);
    assert_non_null(lg);
    kvlm_ctx *ref = new_ctx(NULL);
    assert_int_equal(kvlm_ctx_decode(ref, g_text, done, err, sizeof err), KVLM_OK);
    assert_memory_equal(lg, kvlm_ctx_logits(ref), (size_t)g_vocab * sizeof *lg);
    /* still usable: one more token decodes (or fails cleanly for lack of budget) */
    kvlm_err e = kvlm_ctx_decode(c, g_text + done, 1, err, sizeof err);
    assert_true(e == KVLM_OK || e == KVLM_ERR_BUDGET);
    if (e == KVLM_OK) {
        assert_int_equal(kvlm_ctx_decode(ref, g_text + done, 1, err, sizeof err), KVLM_OK);
        assert_memory_equal(kvlm_ctx_logits(c), kvlm_ctx_logits(ref), (size_t)g_vocab * sizeof *lg);
    }
    kvlm_ctx_free(ref);
    kvlm_ctx_free(c);
    kvlm_cache_free(cache);
}

int main(void)
{
    const struct CMUnitTest kv_tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_window_memory),
    };
    const struct CMUnitTest model_tests[] = {
        cmocka_unit_test(test_cold_vs_no_cache),
        cmocka_unit_test(test_warm_and_diverged),
        cmocka_unit_test(test_chat_turns),
        cmocka_unit_test(test_fork),
        cmocka_unit_test(test_eviction),
        cmocka_unit_test(test_truncate_into_window),
        cmocka_unit_test(test_budget_midway),
    };
    int rc = cmocka_run_group_tests_name("swa_pool", kv_tests, NULL, NULL);
    return rc | cmocka_run_group_tests_name("swa_gemma3", model_tests, setup, teardown);
}
