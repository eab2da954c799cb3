/* testrun.h - greedy runs on the real model, kept with their logits, for tests
 * that compare a cache path against a cold run bitwise (never linked into the library). */
#ifndef KVLM_TESTRUN_H
#define KVLM_TESTRUN_H

#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"

enum { TEST_RUN_MAX = 64 };

/* A greedy run: the tokens and a copy of the logits before each of them. */
typedef struct test_run {
    kvlm_token tok[TEST_RUN_MAX];
    float *logits;        /* [n][n_vocab] */
    size_t n;
    int64_t n_vocab;
} test_run;

/* A context of n_ctx positions, 2 threads, on cache (NULL: a private cache of
 * kv_type with KIVI residual res); a cmocka failure if it cannot be made. */
kvlm_ctx *test_ctx_new(const kvlm_model *m, kvlm_cache *cache, kvlm_kv_type kv_type, int64_t res, int64_t n_ctx);
/* test_ctx_new's parameters, to change before test_ctx_open. */
kvlm_ctx_params test_ctx_params(kvlm_cache *cache, kvlm_kv_type kv_type, int64_t res, int64_t n_ctx);
/* A context with params p; a cmocka failure (with the message) if it cannot be made. */
kvlm_ctx *test_ctx_open(const kvlm_model *m, const kvlm_ctx_params *p);

/* A shared cache in poison mode (a freed block reads as NaN) of mem_bytes, kv_type
 * with KIVI residual res, sized for n_ctx when mem_bytes is 0; a cmocka failure if
 * it cannot be made. */
kvlm_cache *test_cache_new(const kvlm_model *m, kvlm_kv_type kv_type, int64_t res, size_t mem_bytes, int64_t n_ctx);

/* Lowest id of the largest logit: l [n_vocab]. */
kvlm_token test_argmax(const float *l, int64_t n_vocab);
/* n (<= TEST_RUN_MAX) greedy steps from c's current logits (a cmocka failure if
 * there are none or a decode fails). */
void test_greedy(kvlm_ctx *c, int64_t n_vocab, test_run *r, size_t n);
/* cmocka failure naming `what` and the step unless tokens and logits are bitwise equal. */
void test_assert_runs_equal(const test_run *a, const test_run *b, const char *what);
void test_free_run(test_run *r);

#endif
