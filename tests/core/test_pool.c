/* test_pool.c - the thread pool runs every ith exactly once per job, joins,
 * and pool_split covers [0, n) without gaps or overlap. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <string.h>
#include "core/pool.h"

typedef struct job {
    atomic_int calls[8];
    atomic_long sum;
    int nth_seen;
} job;

static void count_task(void *arg, int ith, int nth)
{
    job *j = arg;
    atomic_fetch_add(&j->calls[ith], 1);
    j->nth_seen = nth;
    int64_t lo, hi;
    pool_split(1000, ith, nth, &lo, &hi);
    long s = 0;
    for (int64_t i = lo; i < hi; i++) s += i;
    atomic_fetch_add(&j->sum, s);
}

static void test_every_thread_runs_once(void **state)
{
    (void)state;
    for (int n = 1; n <= 4; n++) {
        pool *p;
        assert_int_equal(pool_init(&p, n, NULL, 0), KVLM_OK);
        assert_int_equal(pool_size(p), n);
        for (int rep = 0; rep < 2000; rep++) {   /* many short jobs: the decode pattern */
            job j;
            memset(&j, 0, sizeof j);
            pool_run(p, count_task, &j);
            for (int i = 0; i < n; i++) assert_int_equal(atomic_load(&j.calls[i]), 1);
            assert_int_equal(j.nth_seen, n);
            assert_int_equal(atomic_load(&j.sum), 999L * 1000 / 2);
        }
        pool_free(p);
    }
}

static void test_split_covers_range(void **state)
{
    (void)state;
    for (int64_t n = 0; n < 50; n++)
        for (int nth = 1; nth <= 7; nth++) {
            int64_t expect_lo = 0;
            for (int ith = 0; ith < nth; ith++) {
                int64_t lo, hi;
                pool_split(n, ith, nth, &lo, &hi);
                assert_int_equal(lo, expect_lo);
                assert_true(hi >= lo);
                assert_true(hi - lo <= n / nth + 1);
                expect_lo = hi;
            }
            assert_int_equal(expect_lo, n);
        }
}

static void test_bad_thread_count(void **state)
{
    (void)state;
    pool *p = (pool *)1;
    char err[128] = "";
    assert_int_equal(pool_init(&p, 0, err, sizeof err), KVLM_ERR_INVALID);
    assert_null(p);
    assert_non_null(strstr(err, "thread count"));
    pool_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_thread_runs_once),
        cmocka_unit_test(test_split_covers_range),
        cmocka_unit_test(test_bad_thread_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
