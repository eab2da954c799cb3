/* test_sched.c - continuous batching on the real model: greedy output of a
 * sequence is the same alone, batched with others that join and leave at other
 * steps, and through kvlm_ctx (an independent path); prefix hits across
 * sequences; an exhausted pool ends the newest sequence and leaves the pool idle;
 * a paused sequence gets no token while the others go on, and resumed, the
 * tokens kvlm_ctx gives. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "engine/cache.h"
#include "engine/sched.h"

static kvlm_model *g_model;
static int64_t g_vocab;

static int setup(void **state)
{
    (void)state;
    return test_model_load(&g_model, &g_vocab);
}

#define NEED_MODEL() do { if (!g_model) skip(); } while (0)

static int teardown(void **state)
{
    (void)state;
    kvlm_model_free(g_model);
    return 0;
}

enum { GEN = 24, MAXTOK = 400, SHIFT_CTX = 64, SHIFT_GEN = 150 };

typedef struct out {
    kvlm_token toks[SHIFT_GEN];   /* [limit]; zero past n (every out is zeroed first) */
    int n;
    kvlm_err err;
    bool done;
    int limit;                    /* tokens wanted: 0 means GEN */
} out;

static bool on_token(void *user, sched_seq *q, kvlm_token tok, kvlm_err e)
{
    (void)q;
    out *o = user;
    const int limit = o->limit ? o->limit : GEN;
    if (e != KVLM_OK) {
        o->err = e;
        o->done = true;
        return false;
    }
    o->toks[o->n++] = tok;
    if (o->n == limit) o->done = true;
    return o->n < limit;
}

static kvlm_cache *new_cache(size_t mem)
{
    kvlm_cache_params cp = kvlm_cache_default_params();
    cp.poison = true;
    cp.mem_bytes = mem;
    kvlm_cache *c = NULL;
    assert_int_equal(kvlm_cache_init(g_model, &cp, &c, NULL, 0), KVLM_OK);
    return c;
}

static sched *new_sched(kvlm_cache *c, int64_t step_tokens)
{
    sched_params p = { .n_threads = 2, .n_ctx = 512, .step_tokens = step_tokens, .max_seqs = 8 };
    sched *S = NULL;
    char err[256];
    kvlm_err e = sched_init(g_model, c, &p, on_token, &S, err, sizeof err);
    if (e) print_error("%s\n", err);
    assert_int_equal(e, KVLM_OK);
    return S;
}

static size_t prompt(const char *text, kvlm_token *t)
{
    size_t n = 0;
    assert_int_equal(kvlm_tokenize(g_model, text, strlen(text), true, false, t, MAXTOK, &n, NULL, 0), KVLM_OK);
    return n;
}

static const char *TEXTS[3] = {
    "The history of maps begins with sketches on clay tablets, and over centuries "
    "cartographers learned to measure the land, the coasts and the rivers with ever finer tools.",
    "Photosynthesis turns light into chemical energy.",
    "A list of prime numbers: 2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, "
    "67, 71, 73, 79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163",
};

static void run_alone(int which, out *o)
{
    kvlm_cache *c = new_cache((size_t)64 << 20);
    sched *S = new_sched(c, 64);
    kvlm_token t[MAXTOK];
    size_t n = prompt(TEXTS[which], t), cached = 9;
    sched_seq *q;
    kvlm_sampler_params sp = kvlm_sampler_default_params();
    sp.temp = 0;
    memset(o, 0, sizeof *o);
    assert_int_equal(sched_add(S, t, n, GEN, &sp, 0, o, &q, &cached, NULL, NULL, 0), KVLM_OK);
    assert_int_equal(cached, 0);
    while (sched_n_seqs(S) > 0) sched_step(S);
    assert_true(o->done);
    assert_int_equal(o->n, GEN);
    sched_free(S);
    kvlm_cache_free(c);
}

/* Greedy tokens through kvlm_ctx: prefill, then one decode per token. */
static void run_ctx(int which, out *o)
{
    kvlm_ctx_params p = kvlm_ctx_default_params();
    p.n_threads = 1;
    p.n_ctx = 512;
    kvlm_ctx *c;
    assert_int_equal(kvlm_ctx_init(g_model, &p, &c, NULL, 0), KVLM_OK);
    kvlm_token t[MAXTOK];
    size_t n = prompt(TEXTS[which], t);
    assert_int_equal(kvlm_ctx_prefill(c, t, n, NULL, NULL, 0), KVLM_OK);
    kvlm_model_info mi;
    kvlm_model_get_info(g_model, &mi);
    memset(o, 0, sizeof *o);
    for (int i = 0; i < GEN; i++) {
        const float *l = kvlm_ctx_logits(c);
        kvlm_token best = 0;
        for (kvlm_token v = 1; v < mi.n_vocab; v++) if (l[v] > l[best]) best = v;
        o->toks[o->n++] = best;
        assert_int_equal(kvlm_ctx_decode(c, &best, 1, NULL, 0), KVLM_OK);
    }
    kvlm_ctx_free(c);
}

/* Three sequences: two start together, the third joins after 5 steps; a step
 * budget of 16 tokens cuts the long prompts into chunks interleaved with the
 * others' decode steps. Each sequence's tokens equal those it gets alone, and
 * those kvlm_ctx gives. */
static void test_batched_equals_alone(void **state)
{
    (void)state;
    NEED_MODEL();
    out alone[3], ctx[3], batched[3];
    for (int i = 0; i < 3; i++) {
        run_alone(i, &alone[i]);
        run_ctx(i, &ctx[i]);
        assert_memory_equal(alone[i].toks, ctx[i].toks, sizeof alone[i].toks);
    }
    kvlm_cache *c = new_cache((size_t)64 << 20);
    sched *S = new_sched(c, 16);
    kvlm_sampler_params sp = kvlm_sampler_default_params();
    sp.temp = 0;
    kvlm_token t[3][MAXTOK];
    size_t n[3];
    sched_seq *q;
    for (int i = 0; i < 3; i++) {
        n[i] = prompt(TEXTS[i], t[i]);
        memset(&batched[i], 0, sizeof batched[i]);
    }
    assert_int_equal(sched_add(S, t[0], n[0], GEN, &sp, 0, &batched[0], &q, NULL, NULL, NULL, 0), KVLM_OK);
    assert_int_equal(sched_add(S, t[1], n[1], GEN, &sp, 0, &batched[1], &q, NULL, NULL, NULL, 0), KVLM_OK);
    int steps = 0, max_batch = 0;
    while (sched_n_seqs(S) > 0 || steps < 5) {
        if (steps == 5) assert_int_equal(sched_add(S, t[2], n[2], GEN, &sp, 0, &batched[2], &q, NULL, NULL, NULL, 0), KVLM_OK);
        int64_t ran = sched_step(S);
        if (ran > max_batch) max_batch = (int)ran;
        steps++;
        assert_true(steps < 1000);
    }
    assert_true(max_batch >= 3);   /* the three really ran together */
    for (int i = 0; i < 3; i++) {
        assert_true(batched[i].done);
        assert_int_equal(batched[i].err, KVLM_OK);
        assert_memory_equal(batched[i].toks, alone[i].toks, sizeof alone[i].toks);
    }
    kvlm_cache_stats st;
    sched_cache_stats(S, &st);
    assert_int_equal(st.n_in_use, 0);   /* every sequence's blocks went back */
    sched_free(S);
    kvlm_cache_free(c);
}

/* A second sequence with the same long prompt prefix hits the first one's
 * blocks and still decodes the tokens of a cold run. */
static void test_prefix_hit(void **state)
{
    (void)state;
    NEED_MODEL();
    out first, second, cold;
    run_alone(0, &cold);
    kvlm_cache *c = new_cache((size_t)64 << 20);
    sched *S = new_sched(c, 64);
    kvlm_sampler_params sp = kvlm_sampler_default_params();
    sp.temp = 0;
    kvlm_token t[MAXTOK];
    size_t n = prompt(TEXTS[0], t), cached = 99;
    sched_seq *q;
    memset(&first, 0, sizeof first);
    memset(&second, 0, sizeof second);
    assert_int_equal(sched_add(S, t, n, GEN, &sp, 7, &first, &q, &cached, NULL, NULL, 0), KVLM_OK);
    assert_int_equal(cached, 0);
    while (sched_n_seqs(S) > 0) sched_step(S);
    assert_int_equal(sched_add(S, t, n, GEN, &sp, 7, &second, &q, &cached, NULL, NULL, 0), KVLM_OK);
    assert_int_equal(cached, (n - 1) / 16 * 16);
    while (sched_n_seqs(S) > 0) sched_step(S);
    assert_memory_equal(second.toks, cold.toks, sizeof cold.toks);
    /* another namespace (tenant) never hits */
    out third;
    memset(&third, 0, sizeof third);
    assert_int_equal(sched_add(S, t, n, GEN, &sp, 8, &third, &q, &cached, NULL, NULL, 0), KVLM_OK);
    assert_int_equal(cached, 0);
    sched_remove(S, q);                 /* cancelled before it ran: its blocks go back at once */
    kvlm_cache_stats st;
    sched_cache_stats(S, &st);
    assert_int_equal(st.n_in_use, 0);
    sched_free(S);
    kvlm_cache_free(c);
}

/* Two sequences; after 5 tokens the first is paused for 10 steps: it gets no
 * token then (and alone, paused, a step runs nothing and ends nothing) while the
 * second gets one a step; resumed, both finish with the tokens kvlm_ctx gives. */
static void test_pause(void **state)
{
    (void)state;
    NEED_MODEL();
    out ctx[2], got[2];
    kvlm_token t[2][MAXTOK];
    size_t n[2];
    sched_seq *q[2];
    kvlm_cache *c = new_cache((size_t)64 << 20);
    sched *S = new_sched(c, 64);
    kvlm_sampler_params sp = kvlm_sampler_default_params();
    sp.temp = 0;
    for (int i = 0; i < 2; i++) {
        run_ctx(i, &ctx[i]);
        n[i] = prompt(TEXTS[i], t[i]);
        memset(&got[i], 0, sizeof got[i]);
        got[i].limit = i == 0 ? GEN : 2 * GEN;   /* the second outlives the pause */
        assert_int_equal(sched_add(S, t[i], n[i], got[i].limit, &sp, 0, &got[i], &q[i], NULL, NULL, NULL, 0),
                         KVLM_OK);
    }
    int steps = 0;
    while (got[0].n < 5) { sched_step(S); assert_true(++steps < 100); }
    sched_pause(S, q[0], true);
    const int a = got[0].n, b = got[1].n;
    for (int k = 0; k < 10; k++) assert_int_equal(sched_step(S), 1);
    assert_int_equal(got[0].n, a);
    assert_int_equal(got[1].n, b + 10);
    sched_pause(S, q[0], false);
    while (!got[0].done) { sched_step(S); assert_true(++steps < 1000); }
    sched_pause(S, q[1], true);                  /* alone and paused: nothing runs, nothing ends */
    const int b2 = got[1].n;
    for (int k = 0; k < 3; k++) assert_int_equal(sched_step(S), 0);
    assert_int_equal(sched_n_seqs(S), 1);
    assert_int_equal(got[1].n, b2);
    assert_int_equal(got[1].err, KVLM_OK);
    sched_pause(S, q[1], false);
    while (sched_n_seqs(S) > 0) { sched_step(S); assert_true(++steps < 1000); }
    assert_int_equal(got[0].err, KVLM_OK);
    assert_int_equal(got[1].n, 2 * GEN);
    assert_memory_equal(got[0].toks, ctx[0].toks, GEN * sizeof(kvlm_token));
    assert_memory_equal(got[1].toks, ctx[1].toks, GEN * sizeof(kvlm_token));
    kvlm_cache_stats st;
    sched_cache_stats(S, &st);
    assert_int_equal(st.n_in_use, 0);
    sched_free(S);
    kvlm_cache_free(c);
}

/* A pool too small for two long sequences: the newest is ended with
 * KVLM_ERR_BUDGET, the other finishes, nothing stays in use. */
static void test_budget(void **state)
{
    (void)state;
    NEED_MODEL();
    kvlm_token t[MAXTOK];
    size_t n = prompt(TEXTS[2], t);
    const size_t block = (size_t)kvlm_kv_bytes_per_token(g_model, KVLM_KV_F16) * 16;
    const size_t need = (n + GEN + 15) / 16;   /* blocks for one sequence; the pool has one more */
    kvlm_cache *c = new_cache(block * (need + 1));
    sched *S = new_sched(c, 32);
    kvlm_sampler_params sp = kvlm_sampler_default_params();
    sp.temp = 0;
    out a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    sched_seq *q;
    assert_int_equal(sched_add(S, t, n, GEN, &sp, 1, &a, &q, NULL, NULL, NULL, 0), KVLM_OK);
    assert_int_equal(sched_add(S, t, n, GEN, &sp, 2, &b, &q, NULL, NULL, NULL, 0), KVLM_OK);
    for (int steps = 0; sched_n_seqs(S) > 0; steps++) {
        sched_step(S);
        assert_true(steps < 1000);
    }
    assert_true(a.done && b.done);
    assert_int_equal(a.err, KVLM_OK);
    assert_int_equal(a.n, GEN);
    assert_int_equal(b.err, KVLM_ERR_BUDGET);
    kvlm_cache_stats st;
    sched_cache_stats(S, &st);
    assert_int_equal(st.n_in_use, 0);
    sched_free(S);
    kvlm_cache_free(c);
}

static void test_add_errors(void **state)
{
    (void)state;
    NEED_MODEL();
    kvlm_cache *c = new_cache((size_t)8 << 20);
    sched *S = new_sched(c, 16);
    kvlm_sampler_params sp = kvlm_sampler_default_params();
    kvlm_token t[4] = { 1, 2, 3, -5 };
    sched_seq *q;
    out o;
    assert_int_equal(sched_add(S, t, 0, 4, &sp, 0, &o, &q, NULL, NULL, NULL, 0), KVLM_ERR_INVALID);
    assert_int_equal(sched_add(S, t, 4, 4, &sp, 0, &o, &q, NULL, NULL, NULL, 0), KVLM_ERR_INVALID);
    assert_int_equal(sched_add(S, t, 3, 510, &sp, 0, &o, &q, NULL, NULL, NULL, 0), KVLM_ERR_CONTEXT_FULL);
    assert_null(q);
    assert_int_equal(sched_n_seqs(S), 0);
    sched_free(S);
    kvlm_cache_free(c);
}

/* context_shift: a sequence generating past n_ctx is shifted as kvlm_ctx shifts it
 * (the same plan and bytes), so its greedy tokens equal kvlm_ctx's, shift after
 * shift, batched with a second sequence. */
static void test_context_shift(void **state)
{
    (void)state;
    NEED_MODEL();
    kvlm_token t[MAXTOK];
    const size_t n = prompt(TEXTS[0], t);
    /* kvlm_ctx: prefill, then one decode per token, shifting at n_ctx */
    kvlm_ctx_params cp = kvlm_ctx_default_params();
    cp.n_threads = 2;
    cp.n_ctx = SHIFT_CTX;
    cp.context_shift = true;
    cp.n_keep = 4;
    kvlm_ctx *c;
    assert_int_equal(kvlm_ctx_init(g_model, &cp, &c, NULL, 0), KVLM_OK);
    assert_int_equal(kvlm_ctx_prefill(c, t, n, NULL, NULL, 0), KVLM_OK);
    kvlm_token want[SHIFT_GEN];
    for (int i = 0; i < SHIFT_GEN; i++) {
        const float *l = kvlm_ctx_logits(c);
        kvlm_token best = 0;
        for (kvlm_token v = 1; v < g_vocab; v++) if (l[v] > l[best]) best = v;
        want[i] = best;
        if (i + 1 < SHIFT_GEN) assert_int_equal(kvlm_ctx_decode(c, &best, 1, NULL, 0), KVLM_OK);
    }
    kvlm_stats st;
    kvlm_ctx_get_stats(c, &st);
    assert_true(st.n_shifts >= 3);
    kvlm_ctx_free(c);

    kvlm_cache *cache = new_cache((size_t)64 << 20);
    sched_params p = { .n_threads = 2, .n_ctx = SHIFT_CTX, .step_tokens = 32, .max_seqs = 4,
                       .context_shift = true, .n_keep = 4 };
    sched *S = NULL;
    assert_int_equal(sched_init(g_model, cache, &p, on_token, &S, NULL, 0), KVLM_OK);
    kvlm_sampler_params sp = kvlm_sampler_default_params();
    sp.temp = 0;
    out got = { .limit = SHIFT_GEN }, other = { .limit = SHIFT_GEN };
    sched_seq *q;
    assert_int_equal(sched_add(S, t, n, SHIFT_GEN, &sp, 0, &got, &q, NULL, NULL, NULL, 0), KVLM_OK);
    kvlm_token t2[MAXTOK];
    const size_t n2 = prompt(TEXTS[1], t2);
    assert_int_equal(sched_add(S, t2, n2, SHIFT_GEN, &sp, 0, &other, &q, NULL, NULL, NULL, 0), KVLM_OK);
    while (sched_n_seqs(S) > 0) sched_step(S);
    assert_int_equal(got.err, KVLM_OK);
    assert_int_equal(other.err, KVLM_OK);
    assert_int_equal(got.n, SHIFT_GEN);
    assert_int_equal(other.n, SHIFT_GEN);
    assert_memory_equal(got.toks, want, sizeof want);
    sched_free(S);
    char err[256];
    assert_int_equal(kv_pool_check(&cache->pool, err, sizeof err), KVLM_OK);
    kvlm_cache_free(cache);
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_batched_equals_alone),
        cmocka_unit_test(test_prefix_hit),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_pause),
        cmocka_unit_test(test_add_errors),
        cmocka_unit_test(test_context_shift),
    };
    return cmocka_run_group_tests_name("sched", t, setup, teardown);
}
