/* test_reference_gemma3.c - kvlm's Gemma 3 270M forward pass against llama.cpp on the
 * same GGUF (issue 15 part 7), through the public API only. Room: tests/nn.
 *
 * The five prompts are tests/ref/gemma3_prompts.txt (fixed in a commit of their own
 * before any output was compared: a plain sentence, code, a list, a 722-token text past
 * the 512-position sliding window, special characters and newlines), raw, BOS added.
 * References (formats in tests/util/testref.h and the scripts):
 *   <fixtures>/ref/gemma3/forward_cases.txt, lc_<name>.f32   llama-cpp-python 0.3.36's
 *       logits at the last prompt position (f16 K/V, no flash attention, no repacking;
 *       tests/ref/ref_gemma3.py logits), generated into the cache by
 *       scripts/gen-gemma3-ref.sh (make test's set-up): five files of 1 MB
 *   tests/data/ref/gemma3_greedy_cases.txt   llama-server's greedy continuations
 *       (/completion, temperature 0, n_predict 64, -fa off; ref_gemma3.py greedy)
 *   tests/data/ref/gemma3_greedy_exact.txt   float64 numpy logits (no activation
 *       rounding) along llama-server's tokens: the exact top 4 and the server token's
 *       logit at every step (tests/ref/ref_gemma3_numpy.py)
 *
 * Tests (kvlm with its default f16 K/V, 2 threads):
 *   case files  the same prompt ids in both llama.cpp references, and kvlm's tokenizer
 *               gives them; the exact file follows the server's tokens
 *   forward     max |diff| <= LOGIT_TOL, mean |diff| <= LOGIT_MEAN_TOL over the 262,144
 *               logits, KL(P_llama.cpp || P_kvlm) <= KL_TOL; the same argmax, unless
 *               llama.cpp's own top-2 margin is a near-tie (< GREEDY_TIE_TOL) and kvlm
 *               picks its runner-up
 *   greedy      teacher-forced along llama-server's tokens: every step where kvlm's
 *               argmax differs is a near-tie for kvlm (gap <= GREEDY_TIE_TOL) and the
 *               exact logits do not prefer the server's token by more than
 *               EXACT_TIE_TOL; whole continuations (64 tokens, or up to and including
 *               the end-of-generation token the server stopped at) equal on at least
 *               GREEDY_MIN_EXACT_CASES of the five
 * All skip without the model (scripts/fetch-model.sh gemma3) or the generated logits.
 *
 * The figures behind the tolerances (AMD EPYC Zen 5, tests/ref/README.md):
 *   forward, kvlm vs llama.cpp: max |diff| 0.85-2.86 (code), mean 0.17-0.52, KL
 *   0.0002-0.013; most of the mean is a constant offset, which softmax ignores. Against
 *   the exact numpy logits llama.cpp is as far (max 0.76-2.16, mean 0.12-0.35, KL
 *   0.00004-0.009) as kvlm is (max 0.80-2.55, mean 0.13-0.59, KL 0.00006-0.006): both
 *   round every matmul input to 8 bits, differently, and the flips compound over 18
 *   layers. kvlm's own f16 and f32 K/V differ by up to 2.5 as well. LOGIT_TOL and
 *   KL_TOL leave 1.4x and 4x. A real bug is far outside: in the numpy forward, no
 *   sliding window moves the lighthouse logits by 13.2 (KL 1.9), the 1e6 RoPE base on
 *   window layers by 14.4 (KL 2.2). (A window of 511 or 513 moves them by 0.02-0.05:
 *   below this noise, so no end-to-end reference can pin the window's bounds.)
 *   greedy (with the exact tanh GELU, before ggml's f16 GELU table): 3 of 5 whole; with
 *   the table, 2 (capital then leaves at step 15 on AVX-512, still at 11 on AVX2).
 *   Before the table capital left the server at step 11 (kvlm "capital" 5279,
 *   the server "largest" 7488: kvlm's gap 0.048, exact 0.014 for the server's: a tie);
 *   special at step 3 (kvlm 62938, the server 9707: kvlm's gap 0.117, and the exact
 *   logits prefer kvlm's by 0.108). These prompts hold several such ties: along the
 *   server's own path the exact logits prefer another token at 4 steps (by 0.012 -
 *   0.152), kvlm with f32, bf16 or q8 K/V also matches 3 of 5 (each at other ties),
 *   and llama-server with its default flash attention matches its own -fa off run on
 *   2 of 5. The issue asked for 4 of 5; that needs llama.cpp's rounding, not its
 *   arithmetic, so the test holds GREEDY_MIN_EXACT_CASES (2) and settles every miss with
 *   the exact logits. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kvlm.h"
#include "util/testref.h"
#include "util/testutil.h"

#define LOGIT_TOL            4.0f   /* max |kvlm - llama.cpp| over the vocabulary */
#define LOGIT_MEAN_TOL       1.0f   /* mean |kvlm - llama.cpp| over the vocabulary */
#define KL_TOL               0.05   /* KL(P_llama.cpp || P_kvlm) in nats at the last position */
#define GREEDY_TIE_TOL       0.25f  /* kvlm's logit gap that excuses a different argmax */
#define EXACT_TIE_TOL        0.2f   /* ... if the exact logits do not prefer llama-server's token by more */
#define GREEDY_MIN_EXACT_CASES 2    /* of the five: whole continuations equal to llama-server's. With the
                                       exact tanh GELU kvlm matched 3; with ggml's f16 GELU table (what
                                       llama.cpp computes) 2: both off by near-ties only, which the
                                       teacher-forced check above bounds. Issue 15 asks 4: not met. */
#define EXACT_TOP            4      /* ids with their exact logit per step in gemma3_greedy_exact.txt */
#define N_CASES              5
#define N_THREADS            2
#define N_CTX                1024   /* the longest prompt (722) + 64 */

static kvlm_model *g_model;
static int64_t g_vocab;
static ref_case_list g_fwd, g_greedy;

/* gemma3_greedy_exact.txt: the float64 logits of a few ids at every step of a greedy case */
typedef struct exact_step {
    kvlm_token ref;          /* llama-server's token ... */
    double ref_logit;        /* ... and its exact logit */
    kvlm_token top[EXACT_TOP];
    double top_logit[EXACT_TOP];
} exact_step;
typedef struct exact_case {
    char name[64];
    exact_step *steps;       /* [n] */
    size_t n;
} exact_case;
static exact_case g_exact[8];
static size_t g_n_exact;

/* Reads tests/data/ref/gemma3_greedy_exact.txt (format: tests/ref/ref_gemma3_numpy.py). 0 or -1. */
static int read_exact(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    exact_case *cur = NULL;
    if (!f) { print_error("%s: cannot open\n", path); return -1; }
    while (fgets(line, sizeof line, f)) {
        char name[64];
        exact_step st;
        size_t i;
        int used = 0;
        if (line[0] == '#' || line[0] == '\n') continue;
        if (sscanf(line, "case %63s", name) == 1) {
            if (cur || g_n_exact == sizeof g_exact / sizeof g_exact[0]) goto bad;
            cur = &g_exact[g_n_exact++];
            snprintf(cur->name, sizeof cur->name, "%s", name);
        } else if (strncmp(line, "end", 3) == 0 && cur) {
            cur = NULL;
        } else if (cur && sscanf(line, "step %zu %d %lf%n", &i, &st.ref, &st.ref_logit, &used) == 3 && i == cur->n) {
            for (int k = 0; k < EXACT_TOP; k++) {
                int more = 0;
                if (sscanf(line + used, " %d %lf%n", &st.top[k], &st.top_logit[k], &more) != 2) goto bad;
                used += more;
            }
            exact_step *v = realloc(cur->steps, (cur->n + 1) * sizeof *v);
            if (!v) goto bad;
            cur->steps = v;
            cur->steps[cur->n++] = st;
        } else {
            goto bad;
        }
    }
    fclose(f);
    return cur ? -1 : 0;
bad:
    print_error("%s: malformed line: %s", path, line);
    fclose(f);
    return -1;
}

static const exact_case *exact_of(const char *name)
{
    for (size_t i = 0; i < g_n_exact; i++)
        if (strcmp(g_exact[i].name, name) == 0) return &g_exact[i];
    return NULL;
}

/* The exact logits' preference for llama-server's token over id at a step (ref - id), or
 * +INFINITY if id is neither that token nor among the exact top ids (then it is at least
 * ref - the last top logit below: treated as unknown, i.e. too far). */
static double exact_pref(const exact_step *st, kvlm_token id)
{
    if (id == st->ref) return 0.0;
    for (int k = 0; k < EXACT_TOP; k++)
        if (st->top[k] == id) return st->ref_logit - st->top_logit[k];
    return INFINITY;
}

static int setup(void **state)
{
    (void)state;
    if (test_ref_read_cases(test_data_path("ref/gemma3_greedy_cases.txt"), &g_greedy) != 0) return -1;
    if (read_exact(test_data_path("ref/gemma3_greedy_exact.txt")) != 0) return -1;
    const char *path = test_gemma3_path();
    if (!path) {
        print_message("no Gemma 3 model (scripts/fetch-model.sh gemma3): skipped\n");
        return 0;
    }
    const char *fwd = test_fixture_path("ref/gemma3/forward_cases.txt");
    FILE *f = fopen(fwd, "r");
    if (!f) {
        print_message("no reference %s (scripts/gen-gemma3-ref.sh): skipped\n", fwd);
        return 0;
    }
    fclose(f);
    if (test_ref_read_cases(fwd, &g_fwd) != 0) return -1;
    return test_model_load_path(path, &g_model, &g_vocab);
}

static int teardown(void **state)
{
    (void)state;
    kvlm_model_free(g_model);
    g_model = NULL;
    test_ref_free_cases(&g_fwd);
    test_ref_free_cases(&g_greedy);
    for (size_t i = 0; i < g_n_exact; i++) free(g_exact[i].steps);
    g_n_exact = 0;
    return 0;
}

#define NEED_MODEL() do { if (!g_model) skip(); } while (0)

/* The greedy case of forward case c (forward "lc_<name>", greedy "<name>"), or NULL. */
static const ref_case *greedy_of(const ref_case *c)
{
    for (size_t i = 0; i < g_greedy.n; i++)
        if (strncmp(c->name, "lc_", 3) == 0 && strcmp(c->name + 3, g_greedy.v[i].name) == 0) return &g_greedy.v[i];
    return NULL;
}

/* KL(P || Q) in nats of the softmaxes of logits p, q [g_vocab] */
static double kl_div(const float *p, const float *q)
{
    double mp = -INFINITY, mq = -INFINITY, sp = 0.0, sq = 0.0, kl = 0.0;
    for (int64_t i = 0; i < g_vocab; i++) { mp = fmax(mp, p[i]); mq = fmax(mq, q[i]); }
    for (int64_t i = 0; i < g_vocab; i++) { sp += exp(p[i] - mp); sq += exp(q[i] - mq); }
    const double lp0 = mp + log(sp), lq0 = mq + log(sq);
    for (int64_t i = 0; i < g_vocab; i++) {
        const double lp = p[i] - lp0, lq = q[i] - lq0;
        kl += exp(lp) * (lp - lq);
    }
    return kl;
}

/* ---- tests -------------------------------------------------------------------------- */
static void test_case_files(void **state)
{
    (void)state;
    assert_int_equal(g_greedy.n, N_CASES);
    assert_int_equal(g_n_exact, N_CASES);
    for (size_t i = 0; i < g_greedy.n; i++) {
        const ref_case *g = &g_greedy.v[i];
        const exact_case *x = exact_of(g->name);
        assert_true(g->n_gen >= 1 && g->n_gen <= 64);
        assert_non_null(x);   /* the exact logits follow llama-server's tokens */
        assert_int_equal(x->n, g->n_gen);
        for (size_t j = 0; j < g->n_gen; j++) assert_int_equal(x->steps[j].ref, g->gen[j]);
    }
    NEED_MODEL();
    assert_int_equal(g_fwd.n, N_CASES);
    bool long_case = false;
    for (size_t ci = 0; ci < g_fwd.n; ci++) {
        const ref_case *c = &g_fwd.v[ci], *g = greedy_of(c);
        assert_non_null(g);
        assert_non_null(c->text);
        assert_int_equal(c->n_prompt, g->n_prompt);   /* llama-cpp-python and llama-server */
        assert_memory_equal(c->prompt, g->prompt, c->n_prompt * sizeof *c->prompt);
        test_ref_check_ids(c->prompt, c->n_prompt, g_vocab);
        long_case |= c->n_prompt > 600;
        /* kvlm's tokenizer on the prompt text: BOS added, special texts parsed (as llama-server) */
        kvlm_token *ids = malloc((c->n_prompt + 16) * sizeof *ids);
        size_t n = 0;
        assert_non_null(ids);
        assert_int_equal(kvlm_tokenize(g_model, c->text, c->n_text, true, true, ids, c->n_prompt + 16, &n, NULL, 0),
                         KVLM_OK);
        assert_int_equal(n, c->n_prompt);
        assert_memory_equal(ids, c->prompt, n * sizeof *ids);
        free(ids);
    }
    assert_true(long_case);   /* one prompt is past the 512-position sliding window */
}

static void test_forward_cases(void **state)
{
    (void)state;
    NEED_MODEL();
    int n_fail = 0;
    double worst = 0.0;
    for (size_t ci = 0; ci < g_fwd.n; ci++) {
        const ref_case *c = &g_fwd.v[ci];
        char rel[256];
        snprintf(rel, sizeof rel, "ref/gemma3/%s", c->logits);
        float *ref = test_ref_read_logits(test_fixture_path(rel), g_vocab);
        assert_non_null(ref);

        kvlm_ctx *ctx = test_ref_ctx(g_model, N_CTX, N_THREADS, false);
        const float *got = test_ref_prompt_logits(ctx, c);

        const ref_diff d = test_ref_logits_diff(got, ref, g_vocab);
        const double kl = kl_div(ref, got);
        const kvlm_token a_got = test_ref_argmax(got, g_vocab), a_ref = test_ref_argmax(ref, g_vocab);
        /* llama.cpp's own margin between its top token and kvlm's pick */
        const float ref_gap = ref[a_ref] - ref[a_got];
        const bool top1 = a_got == a_ref || ref_gap < GREEDY_TIE_TOL;
        const bool ok = d.finite && top1 && d.max <= LOGIT_TOL && d.mean <= LOGIT_MEAN_TOL && kl <= KL_TOL;
        print_message("%-14s (%3zu tokens): max|diff| %.4f at id %lld (tol %.2f), mean|diff| %.4f, KL %.5f, "
                      "argmax %d / ref %d%s%s\n", c->name, c->n_prompt, d.max, (long long)d.at,
                      (double)LOGIT_TOL, d.mean, kl, (int)a_got, (int)a_ref,
                      a_got == a_ref ? "" : " (llama.cpp's near-tie)", ok ? "" : "   <-- FAIL");
        if (a_got != a_ref) print_message("  llama.cpp's gap between the two: %.4f\n", (double)ref_gap);
        worst = fmax(worst, d.max);
        n_fail += !ok;
        kvlm_ctx_free(ctx);
        free(ref);
    }
    print_message("largest max|diff| %.4f\n", worst);
    assert_int_equal(n_fail, 0);
}

/* Teacher-forced along llama-server's continuation (see the file comment). */
static void test_greedy_cases(void **state)
{
    (void)state;
    NEED_MODEL();
    /* KVLM_TEST_QUICK (the sanitizer build): the three short prompts only */
    const bool quick = test_quick();
    int n_fail = 0, n_whole = 0, n_run = 0;
    for (size_t ci = 0; ci < g_greedy.n; ci++) {
        const ref_case *c = &g_greedy.v[ci];
        if (quick && (c->n_prompt > 100 || n_run == 3)) continue;
        n_run++;
        test_ref_check_ids(c->gen, c->n_gen, g_vocab);
        kvlm_ctx *ctx = test_ref_ctx(g_model, N_CTX, N_THREADS, false);
        test_ref_decode(ctx, c->prompt, c->n_prompt);
        const ref_greedy r = test_ref_greedy(ctx, c, g_vocab, GREEDY_TIE_TOL);
        const exact_case *x = exact_of(c->name);
        assert_non_null(x);
        bool bad = r.bad || r.n_miss == REF_MAX_MISSES;
        const bool whole = r.first_miss == c->n_gen;
        print_message("%-10s %2zu/%2zu steps exact, %zu near-ties, free-running match for %zu steps%s\n", c->name,
                      r.n_exact, c->n_gen, r.n_tie, r.first_miss, whole ? "" : ":");
        for (size_t k = 0; k < r.n_miss; k++) {   /* each miss, settled by the exact logits */
            const size_t i = r.miss_step[k];
            const double pref = exact_pref(&x->steps[i], r.miss_got[k]);
            const bool far = !(pref <= EXACT_TIE_TOL);
            print_message("  step %zu: kvlm %d, llama-server %d: kvlm's gap %.4f, the exact logits prefer "
                          "llama-server's by %.4f%s\n", i, (int)r.miss_got[k], (int)c->gen[i],
                          (double)r.miss_gap[k], pref, far ? "   <-- FAIL" : "");
            bad |= far;
        }
        n_fail += bad;
        n_whole += whole;
        kvlm_ctx_free(ctx);
    }
    assert_int_equal(n_fail, 0);
    print_message("%d of %d cases: whole continuations equal to llama-server's\n", n_whole, n_run);
    if (!quick) assert_true(n_whole >= GREEDY_MIN_EXACT_CASES);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_case_files),
        cmocka_unit_test(test_forward_cases),
        cmocka_unit_test(test_greedy_cases),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
