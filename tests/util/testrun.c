/* testrun.c - see testrun.h. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include "testrun.h"

kvlm_ctx_params test_ctx_params(kvlm_cache *cache, kvlm_kv_type kv_type, int64_t res, int64_t n_ctx)
{
    kvlm_ctx_params p = kvlm_ctx_default_params();
    p.n_threads = 2;
    p.n_ctx = n_ctx;
    p.cache = cache;
    p.kv_type = kv_type;
    p.kv_residual = res;
    return p;
}

kvlm_ctx *test_ctx_new(const kvlm_model *m, kvlm_cache *cache, kvlm_kv_type kv_type, int64_t res, int64_t n_ctx)
{
    const kvlm_ctx_params p = test_ctx_params(cache, kv_type, res, n_ctx);
    return test_ctx_open(m, &p);
}

kvlm_ctx *test_ctx_open(const kvlm_model *m, const kvlm_ctx_params *p)
{
    kvlm_ctx *c;
    char err[256];
    kvlm_err e = kvlm_ctx_init(m, p, &c, err, sizeof err);
    if (e) fail_msg("ctx: %s", err);
    return c;
}

kvlm_cache *test_cache_new(const kvlm_model *m, kvlm_kv_type kv_type, int64_t res, size_t mem_bytes, int64_t n_ctx)
{
    kvlm_cache_params cp = kvlm_cache_default_params();
    cp.poison = true;
    cp.kv_type = kv_type;
    cp.kv_residual = res;
    cp.mem_bytes = mem_bytes;
    cp.n_ctx = n_ctx;
    kvlm_cache *c;
    char err[256];
    if (kvlm_cache_init(m, &cp, &c, err, sizeof err) != KVLM_OK) fail_msg("cache: %s", err);
    return c;
}

kvlm_token test_argmax(const float *l, int64_t n_vocab)
{
    kvlm_token best = 0;
    for (int64_t i = 1; i < n_vocab; i++) if (l[i] > l[best]) best = (kvlm_token)i;
    return best;
}

void test_greedy(kvlm_ctx *c, int64_t n_vocab, test_run *r, size_t n)
{
    assert_true(n <= TEST_RUN_MAX);
    r->logits = malloc(n * (size_t)n_vocab * sizeof(float));
    assert_non_null(r->logits);
    r->n = n;
    r->n_vocab = n_vocab;
    for (size_t i = 0; i < n; i++) {   /* logits: [n][n_vocab] */
        const float *l = kvlm_ctx_logits(c);
        assert_non_null(l);
        memcpy(r->logits + i * (size_t)n_vocab, l, (size_t)n_vocab * sizeof(float));
        r->tok[i] = test_argmax(l, n_vocab);
        if (i + 1 < n) assert_int_equal(kvlm_ctx_decode(c, &r->tok[i], 1, NULL, 0), KVLM_OK);
    }
}

void test_assert_runs_equal(const test_run *a, const test_run *b, const char *what)
{
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->n_vocab, b->n_vocab);
    const size_t V = (size_t)a->n_vocab;
    for (size_t i = 0; i < a->n; i++) {
        if (a->tok[i] != b->tok[i]) fail_msg("%s: step %zu: token %d vs %d", what, i, a->tok[i], b->tok[i]);
        if (memcmp(a->logits + i * V, b->logits + i * V, V * sizeof(float)))
            fail_msg("%s: step %zu: logits differ", what, i);
    }
}

void test_free_run(test_run *r)
{
    free(r->logits);
    r->logits = NULL;
}
