/* test_cli_perplexity.c - `kvlm perplexity`: exit codes, and its numbers against
 * an independent computation of the same protocol in this test: every window
 * decoded one token at a time through the library (kvlm_ctx_decode, the
 * last-token logits), the NLL of the second half summed here. The tool uses
 * kvlm_ctx_decode_all and its own scoring loop, so the two share only the model.
 * Also: KL of a cache type against itself is exactly 0 with 100% top-1
 * agreement, and f32 against f16 is small but not zero. Text: the start of
 * /usr/share/common-licenses/GPL-3 (every Debian machine has it), copied to a
 * temporary file. Runs BUILD/kvlm next to this test.
 * Gemma 3 270M (issue 15 part 7): the first window of 2,048 of the GPL-3 within 0.5% of
 * llama.cpp's own tool on the same file, `llama-perplexity -m FILE -f GPL-3 -c 2048
 * --chunks 1 --no-repack -t 2` (bench/peers; its default flash attention, f16 K/V): PPL
 * 17.5373 +/- 1.5916 (its first window of the whole file's 3: 14.5091 over all three,
 * tests/ref/README.md). kvlm gave 17.5775 (+0.23%) on the AMD EPYC Zen 5, 17.5241 (-0.08%)
 * on an Intel Xeon (AVX-512) in 8 s; the 3 windows took 33 s and run the same code per
 * window (SmolLM2's 3 windows above go through the window loop). Skipped in the sanitizer run. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <cJSON.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kvlm.h"
#include "testproc.h"
#include "testutil.h"

enum { WIN = 64 };
/* windows of the tool and of the references: 3; the sanitizer build (KVLM_TEST_QUICK) 2, each
 * window after the first the same path (and for --context-shift still 3 shifts) */
static int chunks(void) { return test_quick() ? 2 : 3; }
#define GPL3 "/usr/share/common-licenses/GPL-3"
#define GEMMA3_LLAMA_PPL   17.5373   /* llama-perplexity -c 2048 --chunks 1 on GPL3 (see above) */
#define GEMMA3_PPL_REL_TOL 0.005    /* the 0.5% */
enum { GEMMA3_SCORED = 2048 - 1 - 1024 };   /* 1,023 tokens: 1 window */

static char g_kvlm[4096], g_text[256];
static kvlm_model *g_model;
static int64_t g_vocab;

static int ppl(const char *args, char *out, size_t cap)
{
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "%s perplexity %s </dev/null 2>/dev/null", g_kvlm, args);
    int rc = test_proc_run(cmd, out, cap);
    assert_true(rc >= 0);
    return rc;
}

static int setup(void **state)
{
    (void)state;
    /* the first 6 KB of the GPL-3: about 1,300 tokens, enough for 3 windows of 64 */
    snprintf(g_text, sizeof g_text, "/tmp/kvlm_ppl_%d.txt", (int)getpid());
    FILE *in = fopen(GPL3, "rb"), *out = fopen(g_text, "wb");
    if (!in || !out) {
        if (in) fclose(in);
        if (out) fclose(out);
        return -1;
    }
    char buf[6144];
    size_t n = fread(buf, 1, sizeof buf, in);
    fwrite(buf, 1, n, out);
    fclose(in);
    fclose(out);
    return test_model_load(&g_model, &g_vocab);
}

static int teardown(void **state)
{
    (void)state;
    unlink(g_text);
    kvlm_model_free(g_model);
    return 0;
}

static void test_usage_and_runtime_errors(void **state)
{
    (void)state;
    char out[8192], args[512];
    assert_int_equal(ppl("--help", out, sizeof out), 0);
    assert_non_null(strstr(out, "usage: kvlm perplexity"));
    assert_int_equal(ppl("", NULL, 0), 2);                          /* no -f */
    assert_int_equal(ppl("-f x --bogus", NULL, 0), 2);
    assert_int_equal(ppl("-f x -c 2", NULL, 0), 2);                 /* window too small */
    assert_int_equal(ppl("-f x --cache-type q9", NULL, 0), 2);
    assert_int_equal(ppl("-f x --context-shift --kl-base f16", NULL, 0), 2);   /* KL compares windows */
    assert_int_equal(ppl("-f x --context-shift --keep -1", NULL, 0), 2);
    assert_int_equal(ppl("-f /nonexistent.txt", NULL, 0), 1);
    snprintf(args, sizeof args, "-f %s -c 100000", g_text);          /* shorter than one window */
    assert_int_equal(ppl(args, NULL, 0), 1);
}

static cJSON *run_json(const char *extra)
{
    static char out[16384];
    char args[1024];
    snprintf(args, sizeof args, "-f %s -c %d --chunks %d -t 2 --json %s", g_text, WIN, chunks(), extra);
    assert_int_equal(ppl(args, out, sizeof out), 0);
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    return j;
}

static double num(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

/* The text's tokens, as the tool tokenizes it (BOS first if the model asks). */
static const kvlm_token *text_tokens(size_t *n)
{
    static char text[8192];
    FILE *f = fopen(g_text, "rb");
    assert_non_null(f);
    size_t len = fread(text, 1, sizeof text, f);
    fclose(f);
    static kvlm_token tok[4096];
    assert_int_equal(kvlm_tokenize(g_model, text, len, true, false, tok, 4096, n, NULL, 0), KVLM_OK);
    assert_true(*n >= (size_t)(WIN * chunks()));
    return tok;
}

/* -log P(next) under logits lg: [n_vocab], in double */
static double nll_of(const float *lg, kvlm_token next)
{
    double mx = -INFINITY, sum = 0.0;
    for (int64_t v = 0; v < g_vocab; v++) if (lg[v] > mx) mx = lg[v];
    for (int64_t v = 0; v < g_vocab; v++) sum += exp((double)lg[v] - mx);
    return mx + log(sum) - (double)lg[next];
}

/* The protocol, written again: windows of WIN tokens in fresh sequences,
 * token i+1 scored from the logits at i for i in [WIN/2, WIN-1). */
static double reference_ppl(int64_t *scored)
{
    size_t n = 0;
    const kvlm_token *tok = text_tokens(&n);
    kvlm_ctx_params p = kvlm_ctx_default_params();
    p.n_ctx = WIN;
    p.n_threads = 2;
    double nll = 0.0;
    *scored = 0;
    for (int k = 0; k < chunks(); k++) {
        kvlm_ctx *c;
        assert_int_equal(kvlm_ctx_init(g_model, &p, &c, NULL, 0), KVLM_OK);
        const kvlm_token *w = tok + k * WIN;
        for (int i = 0; i < WIN - 1; i++) {
            assert_int_equal(kvlm_ctx_decode(c, w + i, 1, NULL, 0), KVLM_OK);
            if (i < WIN / 2) continue;
            nll += nll_of(kvlm_ctx_logits(c), w[i + 1]);
            (*scored)++;
        }
        kvlm_ctx_free(c);
    }
    return exp(nll / (double)*scored);
}

/* The tool's report j against a reference: scored tokens (also = expected), PPL. */
static void assert_matches(const cJSON *j, double want, int64_t scored, int64_t expected)
{
    assert_int_equal((int64_t)num(j, "scored"), scored);
    assert_int_equal(scored, expected);
    const double got = num(j, "ppl");
    if (!(fabs(got - want) <= 1e-9 * want)) fail_msg("perplexity %.12g, reference %.12g", got, want);
    assert_true(got > 1.0 && got < 1000.0);
}

static void test_against_reference(void **state)
{
    (void)state;
    if (!g_model) skip();
    cJSON *j = run_json("");
    int64_t scored;
    const double want = reference_ppl(&scored);
    assert_matches(j, want, scored, chunks() * (WIN - 1 - WIN / 2));
    cJSON_Delete(j);
}

/* --context-shift, written again: the first chunks() windows' tokens through one
 * shifting context a token at a time (kvlm_ctx_decode), every token after the first
 * window scored here. */
static double reference_shift_ppl(int keep, int64_t *scored, int64_t *shifts)
{
    size_t n = 0;
    const kvlm_token *tok = text_tokens(&n);
    kvlm_ctx_params p = kvlm_ctx_default_params();
    p.n_ctx = WIN;
    p.n_threads = 2;
    p.context_shift = true;
    p.n_keep = keep;
    kvlm_ctx *c;
    assert_int_equal(kvlm_ctx_init(g_model, &p, &c, NULL, 0), KVLM_OK);
    double nll = 0.0;
    *scored = 0;
    for (int i = 0; i < WIN * chunks() - 1; i++) {
        assert_int_equal(kvlm_ctx_decode(c, tok + i, 1, NULL, 0), KVLM_OK);
        if (i < WIN - 1) continue;
        nll += nll_of(kvlm_ctx_logits(c), tok[i + 1]);
        (*scored)++;
    }
    kvlm_stats st;
    kvlm_ctx_get_stats(c, &st);
    *shifts = st.n_shifts;
    kvlm_ctx_free(c);
    return exp(nll / (double)*scored);
}

static void test_context_shift(void **state)
{
    (void)state;
    if (!g_model) skip();
    cJSON *j = run_json("--context-shift --keep 4");
    int64_t scored, shifts;
    const double want = reference_shift_ppl(4, &scored, &shifts);
    assert_matches(j, want, scored, (chunks() - 1) * WIN);
    assert_int_equal((int64_t)num(j, "shifts"), shifts);
    assert_true(shifts >= 2);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "context_shift")));
    cJSON_Delete(j);
}

static void test_kl(void **state)
{
    (void)state;
    if (!g_model) skip();
    cJSON *same = run_json("--cache-type f16 --kl-base f16");
    assert_true(num(same, "kl_mean") == 0.0);
    assert_true(num(same, "top1_agreement") == 1.0);
    cJSON *f32 = run_json("--cache-type f32 --kl-base f16");
    const double kl = num(f32, "kl_mean");
    assert_true(kl > 0.0 && kl < 0.05);
    assert_true(num(f32, "top1_agreement") > 0.8);
    cJSON_Delete(same);
    cJSON_Delete(f32);
}

static void test_gemma3_vs_llama_perplexity(void **state)
{
    (void)state;
    const char *g = test_gemma3_path();
    if (!g || test_quick()) skip();   /* ~8 s release, minutes under ASan */
    static char out[16384];
    char args[4352];
    snprintf(args, sizeof args, "-m %s -f " GPL3 " -c 2048 --chunks 1 -t 2 --json", g);
    assert_int_equal(ppl(args, out, sizeof out), 0);
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    const double got = num(j, "ppl"), rel = got / GEMMA3_LLAMA_PPL - 1.0;
    print_message("gemma3 PPL %.4f +/- %.4f over %d tokens; llama-perplexity %.4f: %+.3f%% (tol %.1f%%), %.1f s\n",
                  got, num(j, "ppl_err"), (int)num(j, "scored"), GEMMA3_LLAMA_PPL, 100.0 * rel,
                  100.0 * GEMMA3_PPL_REL_TOL, num(j, "seconds"));
    assert_int_equal((int64_t)num(j, "scored"), GEMMA3_SCORED);
    assert_true(fabs(rel) <= GEMMA3_PPL_REL_TOL);
    cJSON_Delete(j);
}

int main(int argc, char **argv)
{
    (void)argc;
    test_proc_sibling(argv[0], "kvlm", g_kvlm, sizeof g_kvlm);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage_and_runtime_errors),
        cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_context_shift),
        cmocka_unit_test(test_kl),
        cmocka_unit_test(test_gemma3_vs_llama_perplexity),
    };
    return cmocka_run_group_tests_name("cli_perplexity", tests, setup, teardown);
}
