/* test_sampler.c - the sampling chain of src/engine/sampler.c through the public
 * API: greedy and its tie rule, top-k/top-p/min-p exclude exactly the tokens they
 * should, the seeded draw is reproducible and follows softmax, the repetition
 * penalty, NaN/inf logits, reset, parameter checks, no allocation per call.
 * No model needed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <malloc.h>
#include <math.h>
#include <string.h>
#include "kvlm.h"

/* Empirical vs expected counts: sum (obs - exp)^2 / exp over k categories has k-1
 * degrees of freedom. 4 dof: the 0.999 quantile is 18.47; the draws are seeded,
 * so this bound only has to hold for one fixed sequence, with a wide margin. */
#define CHI2_BOUND_4DOF 18.47

static kvlm_sampler *make(kvlm_sampler_params p, int64_t n_vocab)
{
    kvlm_sampler *s = NULL;
    char err[128] = "";
    kvlm_err e = kvlm_sampler_init(&p, n_vocab, &s, err, sizeof err);
    if (e != KVLM_OK) print_error("sampler init: %s\n", err);
    assert_int_equal(e, KVLM_OK);
    assert_non_null(s);
    return s;
}

/* Plain sampling at temp t: no top-k, top-p, min-p, penalty. */
static kvlm_sampler_params plain(float temp, uint64_t seed)
{
    kvlm_sampler_params p = kvlm_sampler_default_params();
    p.temp = temp;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.seed = seed;
    return p;
}

/* A small deterministic generator for test inputs (not the sampler's). */
static uint32_t lcg(uint64_t *st)
{
    *st = *st * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*st >> 33);
}

static void test_default_params(void **state)
{
    (void)state;
    kvlm_sampler_params p = kvlm_sampler_default_params();
    assert_true(p.temp == 0.8f);
    assert_int_equal(p.top_k, 40);
    assert_true(p.top_p == 0.95f);
    assert_true(p.min_p == 0.05f);
    assert_true(p.repeat_penalty == 1.0f);
    assert_int_equal(p.repeat_last_n, 64);
    assert_true(p.seed == 0xC0FFEE);
}

static void test_greedy_argmax_and_ties(void **state)
{
    (void)state;
    const float logits[6] = {1.0f, 5.0f, 3.0f, 5.0f, -2.0f, 5.0f};
    for (int k = 0; k < 2; k++) {
        kvlm_sampler_params p = kvlm_sampler_default_params();
        p.temp = k == 0 ? 0.0f : -1.0f;    /* 0 and negative: both greedy */
        kvlm_sampler *s = make(p, 6);
        for (int i = 0; i < 10; i++)
            assert_int_equal(kvlm_sampler_sample(s, logits), 1);  /* lowest id of the tie */
        kvlm_sampler_free(s);
    }
    const float one[1] = {-7.0f};
    kvlm_sampler *s = make(plain(0.0f, 1), 1);
    assert_int_equal(kvlm_sampler_sample(s, one), 0);
    kvlm_sampler_free(s);
}

static void test_top_k_1_is_greedy(void **state)
{
    (void)state;
    enum { N = 257 };
    float logits[N];
    const float temps[] = {0.05f, 0.7f, 1.0f, 3.0f, 100.0f};
    uint64_t st = 42;
    for (size_t t = 0; t < sizeof temps / sizeof temps[0]; t++) {
        kvlm_sampler_params p = plain(temps[t], 7 + t);
        p.top_k = 1;
        kvlm_sampler *s = make(p, N);
        for (int rep = 0; rep < 50; rep++) {
            int best = 0;
            for (int i = 0; i < N; i++) {
                logits[i] = (float)(lcg(&st) % 1000) / 100.0f;   /* ties happen */
                if (logits[i] > logits[best]) best = i;
            }
            assert_int_equal(kvlm_sampler_sample(s, logits), best);
        }
        kvlm_sampler_free(s);
    }
}

static void test_seed_reproducible(void **state)
{
    (void)state;
    enum { N = 50, DRAWS = 300 };
    float logits[N];
    for (int i = 0; i < N; i++) logits[i] = (float)(i % 7) * 0.3f;
    kvlm_sampler *a = make(plain(1.0f, 123), N);
    kvlm_sampler *b = make(plain(1.0f, 123), N);
    kvlm_sampler *c = make(plain(1.0f, 124), N);
    int n_diff = 0;
    for (int i = 0; i < DRAWS; i++) {
        kvlm_token ta = kvlm_sampler_sample(a, logits);
        kvlm_token tb = kvlm_sampler_sample(b, logits);
        kvlm_token tc = kvlm_sampler_sample(c, logits);
        assert_int_equal(ta, tb);
        assert_true(ta >= 0 && ta < N);
        n_diff += ta != tc;
    }
    assert_true(n_diff > DRAWS / 2);   /* ~49/50 of the draws differ */
    kvlm_sampler_free(a);
    kvlm_sampler_free(b);
    kvlm_sampler_free(c);
}

/* Chi-square statistic of draws from `s` against softmax(logits / temp). */
static double chi2_vs_softmax(kvlm_sampler *s, const float *logits, int n, float temp,
                              int draws)
{
    int counts[16] = {0};
    double p[16], sum = 0.0;
    for (int i = 0; i < n; i++) sum += p[i] = exp(logits[i] / temp);
    for (int i = 0; i < draws; i++) {
        kvlm_token t = kvlm_sampler_sample(s, logits);
        assert_true(t >= 0 && t < n);
        counts[t]++;
    }
    double chi2 = 0.0;
    for (int i = 0; i < n; i++) {
        double e = draws * p[i] / sum;
        chi2 += (counts[i] - e) * (counts[i] - e) / e;
    }
    return chi2;
}

static void test_distribution_matches_softmax(void **state)
{
    (void)state;
    const float logits[5] = {0.0f, 1.0f, 2.0f, -1.0f, 0.5f};
    const uint64_t seeds[3] = {1, 0xC0FFEE, 987654321};
    for (int k = 0; k < 3; k++) {
        kvlm_sampler *s = make(plain(1.0f, seeds[k]), 5);
        double chi2 = chi2_vs_softmax(s, logits, 5, 1.0f, 20000);
        print_message("temp 1, seed %llu: chi2 %.2f (bound %.2f)\n",
                      (unsigned long long)seeds[k], chi2, CHI2_BOUND_4DOF);
        assert_true(chi2 < CHI2_BOUND_4DOF);
        kvlm_sampler_free(s);
    }
    kvlm_sampler *s = make(plain(2.5f, 5), 5);   /* temperature flattens */
    double chi2 = chi2_vs_softmax(s, logits, 5, 2.5f, 20000);
    print_message("temp 2.5: chi2 %.2f\n", chi2);
    assert_true(chi2 < CHI2_BOUND_4DOF);
    kvlm_sampler_free(s);
}

/* Probabilities 0.5, 0.3, 0.15, 0.05 placed at ids 3, 6, 0, 5 of 8; the other ids
 * are -inf. Returns a bitmask of the ids drawn in `draws` samples. */
enum { KNOWN_N = 8 };
static void known_logits(float *l)
{
    for (int i = 0; i < KNOWN_N; i++) l[i] = -INFINITY;
    l[3] = logf(0.5f);
    l[6] = logf(0.3f);
    l[0] = logf(0.15f);
    l[5] = logf(0.05f);
}

static unsigned drawn_mask(kvlm_sampler_params p, int draws)
{
    float l[KNOWN_N];
    known_logits(l);
    kvlm_sampler *s = make(p, KNOWN_N);
    unsigned mask = 0;
    for (int i = 0; i < draws; i++) {
        kvlm_token t = kvlm_sampler_sample(s, l);
        assert_true(t >= 0 && t < KNOWN_N);
        mask |= 1u << t;
    }
    kvlm_sampler_free(s);
    return mask;
}

#define BIT(i) (1u << (i))

static void test_top_p_excludes(void **state)
{
    (void)state;
    kvlm_sampler_params p = plain(1.0f, 11);
    /* cumulative 0.5, 0.8, 0.95, 1.0 */
    p.top_p = 0.45f; assert_int_equal(drawn_mask(p, 3000), BIT(3));
    p.top_p = 0.75f; assert_int_equal(drawn_mask(p, 3000), BIT(3) | BIT(6));
    p.top_p = 0.9f;  assert_int_equal(drawn_mask(p, 3000), BIT(3) | BIT(6) | BIT(0));
    p.top_p = 0.97f; assert_int_equal(drawn_mask(p, 6000), BIT(3) | BIT(6) | BIT(0) | BIT(5));
    p.top_p = 1.0f;  assert_int_equal(drawn_mask(p, 6000), BIT(3) | BIT(6) | BIT(0) | BIT(5));
}

static void test_min_p_excludes(void **state)
{
    (void)state;
    kvlm_sampler_params p = plain(1.0f, 12);
    /* relative to p_max 0.5: 1, 0.6, 0.3, 0.1 */
    p.min_p = 0.05f; assert_int_equal(drawn_mask(p, 6000), BIT(3) | BIT(6) | BIT(0) | BIT(5));
    p.min_p = 0.2f;  assert_int_equal(drawn_mask(p, 3000), BIT(3) | BIT(6) | BIT(0));
    p.min_p = 0.5f;  assert_int_equal(drawn_mask(p, 3000), BIT(3) | BIT(6));
    p.min_p = 0.7f;  assert_int_equal(drawn_mask(p, 3000), BIT(3));
    p.min_p = 1.0f;  assert_int_equal(drawn_mask(p, 100), BIT(3));
    /* min-p and top-p together keep the shorter prefix */
    p.min_p = 0.2f; p.top_p = 0.75f;
    assert_int_equal(drawn_mask(p, 3000), BIT(3) | BIT(6));
    p.min_p = 0.5f; p.top_p = 0.9f;
    assert_int_equal(drawn_mask(p, 3000), BIT(3) | BIT(6));
    /* top-k 2 then top-p: top-p renormalizes over the 2 kept (0.625, 0.375) */
    p = plain(1.0f, 13);
    p.top_k = 2; p.top_p = 0.6f;
    assert_int_equal(drawn_mask(p, 3000), BIT(3));
    p.top_p = 0.7f;
    assert_int_equal(drawn_mask(p, 3000), BIT(3) | BIT(6));
    /* temperature sharpens before min-p: at temp 0.5 the ratios square
     * (0.36, 0.09, 0.01), so min_p 0.2 keeps only ids 3 and 6 */
    p = plain(0.5f, 14);
    p.min_p = 0.2f;
    assert_int_equal(drawn_mask(p, 3000), BIT(3) | BIT(6));
}

static void test_kept_tokens_renormalized(void **state)
{
    (void)state;
    /* top-p 0.75 keeps ids 3 and 6 with 0.5 : 0.3 -> 0.625 : 0.375 */
    float l[KNOWN_N];
    known_logits(l);
    kvlm_sampler_params p = plain(1.0f, 99);
    p.top_p = 0.75f;
    kvlm_sampler *s = make(p, KNOWN_N);
    int n3 = 0, draws = 20000;
    for (int i = 0; i < draws; i++) n3 += kvlm_sampler_sample(s, l) == 3;
    double frac = (double)n3 / draws;   /* sd ~0.0034 */
    print_message("top-p kept: P(id 3) = %.4f (expect 0.625)\n", frac);
    assert_true(fabs(frac - 0.625) < 0.02);
    kvlm_sampler_free(s);
}

static void test_top_k_large_vocab(void **state)
{
    (void)state;
    enum { N = 49152 };
    static float logits[N];
    static int rank_ok[N];
    uint64_t st = 5;
    for (int i = 0; i < N; i++) logits[i] = (float)(lcg(&st) % 100000) / 10000.0f;
    /* the 40th largest logit */
    float sorted_top[40];
    for (int k = 0; k < 40; k++) sorted_top[k] = -INFINITY;
    for (int i = 0; i < N; i++) {
        if (logits[i] <= sorted_top[39]) continue;
        int j = 39;
        while (j > 0 && sorted_top[j - 1] < logits[i]) { sorted_top[j] = sorted_top[j - 1]; j--; }
        sorted_top[j] = logits[i];
    }
    for (int i = 0; i < N; i++) rank_ok[i] = logits[i] >= sorted_top[39];

    kvlm_sampler_params p = kvlm_sampler_default_params();
    p.temp = 5.0f;     /* flat enough that min-p keeps many */
    p.min_p = 0.0f;
    kvlm_sampler *s = make(p, N);
    for (int i = 0; i < 500; i++) assert_true(rank_ok[kvlm_sampler_sample(s, logits)]);
    kvlm_sampler_free(s);

    /* Full-vocabulary path (no top-k, no min-p): any id, but valid. */
    p = plain(1.0f, 77);
    p.top_p = 0.95f;
    s = make(p, N);
    for (int i = 0; i < 50; i++) {
        kvlm_token t = kvlm_sampler_sample(s, logits);
        assert_true(t >= 0 && t < N);
    }
    kvlm_sampler_free(s);
}

static void test_no_allocation_per_call(void **state)
{
    (void)state;
    enum { N = 4096 };
    static float logits[N];
    for (int i = 0; i < N; i++) logits[i] = (float)((i * 37) % 101) / 10.0f;
    kvlm_sampler_params p = kvlm_sampler_default_params();
    p.repeat_penalty = 1.3f;
    p.top_k = 0;
    kvlm_sampler *s = make(p, N);
    kvlm_sampler_sample(s, logits);
    struct mallinfo2 before = mallinfo2();
    for (int i = 0; i < 200; i++) kvlm_sampler_accept(s, kvlm_sampler_sample(s, logits));
    kvlm_sampler_reset(s);
    struct mallinfo2 after = mallinfo2();
    assert_true(before.uordblks == after.uordblks);
    assert_true(before.hblkhd == after.hblkhd);
    kvlm_sampler_free(s);
}

static void test_repeat_penalty(void **state)
{
    (void)state;
    kvlm_sampler_params p = plain(0.0f, 1);
    p.repeat_penalty = 1.1f;
    p.repeat_last_n = 2;

    /* positive logits are divided: 2.0 / 1.1 = 1.818 < 1.9 */
    const float pos[4] = {2.0f, 1.9f, -1.0f, 0.0f};
    kvlm_sampler *s = make(p, 4);
    assert_int_equal(kvlm_sampler_sample(s, pos), 0);
    kvlm_sampler_accept(s, 0);
    assert_int_equal(kvlm_sampler_sample(s, pos), 1);
    /* the window is the last 2 accepted: 0 falls out after two others */
    kvlm_sampler_accept(s, 2);
    assert_int_equal(kvlm_sampler_sample(s, pos), 1);
    kvlm_sampler_accept(s, 3);
    assert_int_equal(kvlm_sampler_sample(s, pos), 0);
    /* out-of-range ids are ignored */
    kvlm_sampler_accept(s, -1);
    kvlm_sampler_accept(s, 4);
    assert_int_equal(kvlm_sampler_sample(s, pos), 0);
    kvlm_sampler_free(s);

    /* negative logits are multiplied: -1.0 * 1.1 = -1.1 < -1.05 */
    const float neg[2] = {-1.0f, -1.05f};
    s = make(p, 2);
    assert_int_equal(kvlm_sampler_sample(s, neg), 0);
    kvlm_sampler_accept(s, 0);
    assert_int_equal(kvlm_sampler_sample(s, neg), 1);
    kvlm_sampler_free(s);

    /* a token seen twice is penalized once: 2.0 / 1.1 = 1.818 > 1.7 */
    const float twice[2] = {2.0f, 1.7f};
    p.repeat_last_n = 8;
    s = make(p, 2);
    kvlm_sampler_accept(s, 0);
    kvlm_sampler_accept(s, 0);
    assert_int_equal(kvlm_sampler_sample(s, twice), 0);
    kvlm_sampler_free(s);

    /* penalty 1 or repeat_last_n 0: off */
    p.repeat_penalty = 1.0f;
    s = make(p, 4);
    kvlm_sampler_accept(s, 0);
    assert_int_equal(kvlm_sampler_sample(s, pos), 0);
    kvlm_sampler_free(s);
    p.repeat_penalty = 1.5f;
    p.repeat_last_n = 0;
    s = make(p, 4);
    kvlm_sampler_accept(s, 0);
    assert_int_equal(kvlm_sampler_sample(s, pos), 0);
    kvlm_sampler_free(s);

    /* the logits array is not modified */
    p.repeat_last_n = 4;
    s = make(p, 4);
    kvlm_sampler_accept(s, 0);
    float copy[4];
    memcpy(copy, pos, sizeof copy);
    kvlm_sampler_sample(s, copy);
    assert_memory_equal(copy, pos, sizeof copy);
    kvlm_sampler_free(s);
}

static void test_nan_inf(void **state)
{
    (void)state;
    const float with_nan[5] = {NAN, 1.0f, NAN, 3.0f, 2.0f};
    kvlm_sampler *g = make(plain(0.0f, 1), 5);
    kvlm_sampler *r = make(plain(1.0f, 2), 5);
    assert_int_equal(kvlm_sampler_sample(g, with_nan), 3);
    for (int i = 0; i < 2000; i++) {
        kvlm_token t = kvlm_sampler_sample(r, with_nan);
        assert_true(t == 1 || t == 3 || t == 4);
    }
    const float all_nan[5] = {NAN, NAN, NAN, NAN, NAN};
    const float all_ninf[5] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    assert_int_equal(kvlm_sampler_sample(g, all_nan), 0);
    assert_int_equal(kvlm_sampler_sample(r, all_nan), 0);
    assert_int_equal(kvlm_sampler_sample(r, all_ninf), 0);
    const float pinf[5] = {1.0f, INFINITY, 2.0f, NAN, -INFINITY};
    assert_int_equal(kvlm_sampler_sample(g, pinf), 1);
    for (int i = 0; i < 200; i++) assert_int_equal(kvlm_sampler_sample(r, pinf), 1);
    const float two_inf[5] = {-INFINITY, INFINITY, 0.0f, INFINITY, NAN};
    assert_int_equal(kvlm_sampler_sample(g, two_inf), 1);
    int n1 = 0;
    for (int i = 0; i < 2000; i++) {   /* +inf ties share the mass */
        kvlm_token t = kvlm_sampler_sample(r, two_inf);
        assert_true(t == 1 || t == 3);
        n1 += t == 1;
    }
    assert_true(n1 > 800 && n1 < 1200);
    kvlm_sampler_free(g);
    kvlm_sampler_free(r);

    /* extreme temperatures and huge finite logits stay finite */
    const float huge[3] = {3e38f, -3e38f, 1e38f};
    kvlm_sampler_params p = plain(1e-30f, 3);
    kvlm_sampler *s = make(p, 3);
    assert_int_equal(kvlm_sampler_sample(s, huge), 0);
    kvlm_sampler_free(s);
    p = plain(1e30f, 3);
    s = make(p, 3);
    for (int i = 0; i < 100; i++) {
        kvlm_token t = kvlm_sampler_sample(s, huge);
        assert_true(t >= 0 && t < 3);
    }
    kvlm_sampler_free(s);
}

static void test_reset(void **state)
{
    (void)state;
    enum { N = 20, DRAWS = 100 };
    float logits[N];
    for (int i = 0; i < N; i++) logits[i] = (float)(i % 5) * 0.4f;
    kvlm_sampler_params p = plain(1.0f, 31337);
    p.repeat_penalty = 3.0f;
    kvlm_sampler *s = make(p, N);
    kvlm_token first[DRAWS];
    for (int i = 0; i < DRAWS; i++) {
        first[i] = kvlm_sampler_sample(s, logits);
        kvlm_sampler_accept(s, first[i]);
    }
    kvlm_sampler_reset(s);   /* history and PRNG back to the start */
    for (int i = 0; i < DRAWS; i++) {
        kvlm_token t = kvlm_sampler_sample(s, logits);
        assert_int_equal(t, first[i]);
        kvlm_sampler_accept(s, t);
    }
    kvlm_sampler_free(s);

    /* reset forgets the penalty history */
    p = plain(0.0f, 1);
    p.repeat_penalty = 2.0f;
    const float l[2] = {2.0f, 1.5f};
    s = make(p, 2);
    kvlm_sampler_accept(s, 0);
    assert_int_equal(kvlm_sampler_sample(s, l), 1);
    kvlm_sampler_reset(s);
    assert_int_equal(kvlm_sampler_sample(s, l), 0);
    kvlm_sampler_free(s);
}

static void expect_invalid(kvlm_sampler_params p, int64_t n_vocab)
{
    kvlm_sampler *s = (kvlm_sampler *)&p;   /* must be overwritten with NULL */
    char err[128] = "";
    assert_int_equal(kvlm_sampler_init(&p, n_vocab, &s, err, sizeof err), KVLM_ERR_INVALID);
    assert_null(s);
    assert_true(err[0] != '\0');
}

static void test_bad_params(void **state)
{
    (void)state;
    kvlm_sampler_params d = kvlm_sampler_default_params(), p;
    expect_invalid(d, 0);
    expect_invalid(d, -5);
    p = d; p.top_p = 0.0f;           expect_invalid(p, 10);
    p = d; p.top_p = -0.5f;          expect_invalid(p, 10);
    p = d; p.top_p = NAN;            expect_invalid(p, 10);
    p = d; p.temp = NAN;             expect_invalid(p, 10);
    p = d; p.temp = INFINITY;        expect_invalid(p, 10);
    p = d; p.min_p = 1.5f;           expect_invalid(p, 10);
    p = d; p.min_p = NAN;            expect_invalid(p, 10);
    p = d; p.repeat_penalty = 0.0f;  expect_invalid(p, 10);
    p = d; p.repeat_penalty = -1.0f; expect_invalid(p, 10);
    p = d; p.repeat_penalty = INFINITY; expect_invalid(p, 10);
    p = d; p.repeat_last_n = -1;     expect_invalid(p, 10);
    assert_int_equal(kvlm_sampler_init(NULL, 10, &(kvlm_sampler *){NULL}, NULL, 0),
                     KVLM_ERR_INVALID);
    assert_int_equal(kvlm_sampler_init(&d, 10, NULL, NULL, 0), KVLM_ERR_INVALID);

    /* accepted and clamped: top_p > 1 is off, negative temp is greedy, top_k
     * larger than the vocabulary and negative min_p are off, err may be NULL */
    const float l[3] = {0.0f, 4.0f, 1.0f};
    p = d; p.top_p = 7.0f; p.temp = -2.0f; p.top_k = 1000; p.min_p = -1.0f;
    kvlm_sampler *s = NULL;
    assert_int_equal(kvlm_sampler_init(&p, 3, &s, NULL, 0), KVLM_OK);
    assert_int_equal(kvlm_sampler_sample(s, l), 1);
    kvlm_sampler_free(s);
    kvlm_sampler_free(NULL);
}

static void test_err_name(void **state)
{
    (void)state;
    assert_string_equal(kvlm_err_name(KVLM_OK), "KVLM_OK");
    assert_string_equal(kvlm_err_name(KVLM_ERR_IO), "KVLM_ERR_IO");
    assert_string_equal(kvlm_err_name(KVLM_ERR_FORMAT), "KVLM_ERR_FORMAT");
    assert_string_equal(kvlm_err_name(KVLM_ERR_UNSUPPORTED), "KVLM_ERR_UNSUPPORTED");
    assert_string_equal(kvlm_err_name(KVLM_ERR_NOMEM), "KVLM_ERR_NOMEM");
    assert_string_equal(kvlm_err_name(KVLM_ERR_INVALID), "KVLM_ERR_INVALID");
    assert_string_equal(kvlm_err_name(KVLM_ERR_CONTEXT_FULL), "KVLM_ERR_CONTEXT_FULL");
    assert_string_equal(kvlm_err_name(KVLM_ERR_BUDGET), "KVLM_ERR_BUDGET");
    assert_non_null(kvlm_err_name((kvlm_err)12345));
    assert_non_null(kvlm_err_name((kvlm_err)-1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_params),
        cmocka_unit_test(test_greedy_argmax_and_ties),
        cmocka_unit_test(test_top_k_1_is_greedy),
        cmocka_unit_test(test_seed_reproducible),
        cmocka_unit_test(test_distribution_matches_softmax),
        cmocka_unit_test(test_top_p_excludes),
        cmocka_unit_test(test_min_p_excludes),
        cmocka_unit_test(test_kept_tokens_renormalized),
        cmocka_unit_test(test_top_k_large_vocab),
        cmocka_unit_test(test_no_allocation_per_call),
        cmocka_unit_test(test_repeat_penalty),
        cmocka_unit_test(test_nan_inf),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_err_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
