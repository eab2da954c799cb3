/* test_ctx_shift.c - context shift through the public API on the real model
 * (kvlm_ctx_params.context_shift; the bytes are tests/kv/test_kv_shift.c's):
 *
 *   tiny context   -c 64 --keep 4, 200 greedy tokens: never stops, finite logits,
 *                  tokens[] moved as the sequence was, and every block the shared
 *                  cache has published is an unshifted block of the stream (its
 *                  tokens are the stream's at its absolute position): shifted
 *                  blocks never reach the prefix index
 *   vs recompute   after shifts, the next-token distribution against the same
 *                  window recomputed from scratch in a fresh context (what the
 *                  rotated K stands in for): mean KL and top-1 agreement within
 *                  RECOMPUTE_KL_MAX / RECOMPUTE_TOP1_MIN. Measured on this model
 *                  (c 128, keep 4, f16): KL ~0.1 nats, top-1 ~80-95%; with the
 *                  rotation left out, KL ~1.7 and top-1 ~40%; the bounds sit between.
 *   the stream     prefill of the whole stream after shifts decodes only the new
 *                  tokens, with the logits of decoding them directly (bitwise)
 *   prompts        a prompt longer than the context is decoded through shifts;
 *                  without context_shift it is refused as before
 *   rollback       truncating back to the kept tokens makes the sequence
 *                  unshifted: it publishes again
 *   refused        a model with sliding-window layers (arch gemma3: a copy of the
 *                  loaded model's struct renamed, since Gemma 3 does not load yet)
 *                  gets KVLM_ERR_UNSUPPORTED; n_keep < 0 KVLM_ERR_INVALID. */
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
#include "engine/cache.h"
#include "model/model.h"
#include "testrun.h"
#include "testutil.h"

#define RECOMPUTE_KL_MAX   0.35   /* mean KL(recomputed || shifted), nats */
#define RECOMPUTE_TOP1_MIN 0.70   /* share of positions whose argmax agrees */

static kvlm_model *g_model;
static int64_t g_vocab;
static kvlm_token g_text[4096];
static size_t g_n_text;

static const char *TEXT =
    "The GNU General Public License is a free, copyleft license for software and other kinds of works. "
    "The licenses for most software and other practical works are designed to take away your freedom to "
    "share and change the works. By contrast, the GNU General Public License is intended to guarantee your "
    "freedom to share and change all versions of a program, to make sure it remains free software for all "
    "its users. When we speak of free software, we are referring to freedom, not price. Our General Public "
    "Licenses are designed to make sure that you have the freedom to distribute copies of free software, "
    "that you receive source code or can get it if you want it, that you can change the software or use "
    "pieces of it in new free programs, and that you know you can do these things. ";

static int setup(void **state)
{
    (void)state;
    if (test_model_load(&g_model, &g_vocab) || !g_model) return g_model ? -1 : 0;
    char text[16384] = "";
    for (int i = 0; strlen(text) + strlen(TEXT) + 16 < sizeof text; i++) {
        char num[16];
        snprintf(num, sizeof num, "%d. ", i + 1);   /* numbered, so no window repeats another exactly */
        strcat(text, num);
        strcat(text, TEXT);
    }
    return kvlm_tokenize(g_model, text, strlen(text), true, false, g_text, 4096, &g_n_text, NULL, 0) ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    kvlm_model_free(g_model);
    return 0;
}

#define NEED_MODEL() do { if (!g_model) skip(); } while (0)

static kvlm_ctx *shift_ctx(kvlm_cache *cache, int64_t n_ctx, int keep, bool prefix)
{
    kvlm_ctx_params p = test_ctx_params(cache, KVLM_KV_F16, 0, n_ctx);
    p.context_shift = true;
    p.n_keep = keep;
    p.no_prefix_cache = !prefix;
    return test_ctx_open(g_model, &p);
}

static bool all_finite(const float *l)
{
    for (int64_t i = 0; i < g_vocab; i++) if (!isfinite(l[i])) return false;
    return true;
}

/* Every published block of the pool names tokens[16 i, 16 i + 16) of stream, i its
 * depth in its chain: only unshifted blocks were published. Returns their count. */
static int64_t check_published(const kvlm_cache *cache, const kvlm_token *stream, size_t n)
{
    const kv_pool *p = &cache->pool;
    int64_t count = 0;
    for (kv_block b = 0; b < p->n_blocks; b++) {
        kv_block_info info;
        kv_pool_block_info(p, b, &info);
        if (!info.published) continue;
        int64_t depth = 0;
        for (kv_link l = info.link; l.parent != KV_BLOCK_NONE; depth++) {
            kv_block_info up;
            kv_pool_block_info(p, l.parent, &up);
            assert_true(up.published);
            l = up.link;
        }
        if ((size_t)(depth + 1) * 16 > n || memcmp(info.link.tokens, stream + depth * 16, 16 * sizeof *stream))
            fail_msg("block %d is published under tokens that are not the stream's at block %lld", (int)b,
                     (long long)depth);
        count++;
    }
    return count;
}

static void test_tiny_context(void **state)
{
    (void)state;
    NEED_MODEL();
    kvlm_cache_params cp = kvlm_cache_default_params();
    cp.mem_bytes = 0;
    cp.n_ctx = 64;
    cp.poison = true;                                /* a stale read shows as NaN */
    kvlm_cache *cache;
    char err[256];
    assert_int_equal(kvlm_cache_init(g_model, &cp, &cache, err, sizeof err), KVLM_OK);
    kvlm_ctx *c = shift_ctx(cache, 64, 4, true);
    enum { N_GEN = 200 };
    kvlm_token stream[64 + N_GEN];
    const size_t n_prompt = 40;
    memcpy(stream, g_text, n_prompt * sizeof *stream);
    assert_int_equal(kvlm_ctx_prefill(c, stream, n_prompt, NULL, err, sizeof err), KVLM_OK);
    size_t n = n_prompt;
    int64_t published = 0;
    for (int i = 0; i < N_GEN; i++) {
        const float *l = kvlm_ctx_logits(c);
        assert_non_null(l);
        if (!all_finite(l)) fail_msg("step %d: a logit is not finite", i);
        stream[n] = test_argmax(l, g_vocab);
        if (kvlm_ctx_decode(c, &stream[n], 1, err, sizeof err)) fail_msg("step %d: %s", i, err);
        n++;
        assert_true(kvlm_ctx_n_past(c) <= 64);
        /* the kept tokens, then the stream's last n_past - 4 */
        const kvlm_token *t = kvlm_ctx_tokens(c);
        const size_t np = kvlm_ctx_n_past(c);
        assert_memory_equal(t, stream, 4 * sizeof *t);
        assert_memory_equal(t + 4, stream + n - (np - 4), (np - 4) * sizeof *t);
        const int64_t now = check_published(cache, stream, n);   /* after every step */
        if (now > published) published = now;
    }
    kvlm_stats st;
    kvlm_ctx_get_stats(c, &st);
    assert_true(st.n_shifts >= 5);                   /* 240 tokens through 64 positions, 32 dropped a shift */
    assert_int_equal((int64_t)n - (int64_t)kvlm_ctx_n_past(c), st.n_dropped);
    assert_true(published >= 3);                     /* the full blocks before the first shift */
    assert_int_equal(kv_pool_check(&cache->pool, err, sizeof err), KVLM_OK);
    print_message("%lld shifts; up to %lld published blocks, all unshifted\n", (long long)st.n_shifts,
                  (long long)published);
    kvlm_ctx_free(c);
    kvlm_cache_free(cache);
}

/* KL(P || Q) of two logit rows, natural log */
static double kl_div(const float *p, const float *q)
{
    double mp = -INFINITY, mq = -INFINITY, sp = 0, sq = 0, kl = 0;
    for (int64_t v = 0; v < g_vocab; v++) {
        if (p[v] > mp) mp = p[v];
        if (q[v] > mq) mq = q[v];
    }
    for (int64_t v = 0; v < g_vocab; v++) {
        sp += exp((double)p[v] - mp);
        sq += exp((double)q[v] - mq);
    }
    const double lp = mp + log(sp), lq = mq + log(sq);
    for (int64_t v = 0; v < g_vocab; v++) {
        const double a = (double)p[v] - lp, b = (double)q[v] - lq;
        kl += exp(a) * (a - b);
    }
    return kl;
}

static void test_vs_recompute(void **state)
{
    (void)state;
    NEED_MODEL();
    const int64_t C = 128;
    const size_t N = 4 * (size_t)C, every = test_quick() ? 41 : 11;
    assert_true(g_n_text >= N);
    kvlm_ctx *c = shift_ctx(NULL, C, 4, false);
    kvlm_ctx *r = test_ctx_new(g_model, NULL, KVLM_KV_F16, 0, C);
    double kl = 0;
    int n = 0, agree = 0;
    char err[256];
    /* the first C tokens fill the context in one batch (nothing is compared before the
       first shift; test_ctx: a batch gives the bits of single steps), then one at a time */
    assert_int_equal(kvlm_ctx_decode(c, g_text, (size_t)C, err, sizeof err), KVLM_OK);
    for (size_t i = (size_t)C; i < N; i++) {
        assert_int_equal(kvlm_ctx_decode(c, &g_text[i], 1, err, sizeof err), KVLM_OK);
        kvlm_stats st;
        kvlm_ctx_get_stats(c, &st);
        if (st.n_shifts == 0 || i % every) continue;
        kvlm_ctx_truncate(r, 0);                     /* the same window, computed at its positions */
        assert_int_equal(kvlm_ctx_decode(r, kvlm_ctx_tokens(c), kvlm_ctx_n_past(c), err, sizeof err), KVLM_OK);
        const float *ls = kvlm_ctx_logits(c), *lr = kvlm_ctx_logits(r);
        kl += kl_div(lr, ls);
        agree += test_argmax(lr, g_vocab) == test_argmax(ls, g_vocab);
        n++;
    }
    kl /= n;
    print_message("shifted vs recomputed window, %d positions: KL %.4f nats, top-1 agreement %.1f%%\n", n, kl,
                  100.0 * agree / n);
    assert_true(n >= 8);
    if (!(kl <= RECOMPUTE_KL_MAX)) fail_msg("mean KL %.4f > %.2f", kl, RECOMPUTE_KL_MAX);
    if (!((double)agree / n >= RECOMPUTE_TOP1_MIN)) fail_msg("top-1 agreement %.3f < %.2f", (double)agree / n, RECOMPUTE_TOP1_MIN);
    kvlm_ctx_free(c);
    kvlm_ctx_free(r);
}

static void test_prefill_continues_stream(void **state)
{
    (void)state;
    NEED_MODEL();
    const int64_t C = 64;
    kvlm_ctx *c = shift_ctx(NULL, C, 4, true);
    char err[256];
    const size_t n0 = 150, extra = 7;
    assert_int_equal(kvlm_ctx_prefill(c, g_text, n0, NULL, err, sizeof err), KVLM_OK);   /* > C: shifts */
    kvlm_stats st;
    kvlm_ctx_get_stats(c, &st);
    assert_true(st.n_shifts > 0);
    kvlm_ctx *f;
    assert_int_equal(kvlm_ctx_fork(c, &f, err, sizeof err), KVLM_OK);
    const size_t np = kvlm_ctx_n_past(c);
    size_t reused = 0;
    assert_int_equal(kvlm_ctx_prefill(c, g_text, n0 + extra, &reused, err, sizeof err), KVLM_OK);
    assert_int_equal(reused, np);                    /* only the new tokens were computed */
    assert_int_equal(kvlm_ctx_decode(f, g_text + n0, extra, err, sizeof err), KVLM_OK);
    assert_int_equal(kvlm_ctx_n_past(c), kvlm_ctx_n_past(f));
    assert_memory_equal(kvlm_ctx_logits(c), kvlm_ctx_logits(f), (size_t)g_vocab * sizeof(float));
    /* the same stream again: everything but its last token reused */
    assert_int_equal(kvlm_ctx_prefill(c, g_text, n0 + extra, &reused, err, sizeof err), KVLM_OK);
    assert_int_equal(reused, kvlm_ctx_n_past(c) - 1);
    assert_memory_equal(kvlm_ctx_logits(c), kvlm_ctx_logits(f), (size_t)g_vocab * sizeof(float));
    kvlm_ctx_free(f);
    kvlm_ctx_free(c);
}

static void test_prompt_longer_than_context(void **state)
{
    (void)state;
    NEED_MODEL();
    char err[256];
    kvlm_ctx *plain = test_ctx_new(g_model, NULL, KVLM_KV_F16, 0, 64);
    assert_int_equal(kvlm_ctx_prefill(plain, g_text, 100, NULL, err, sizeof err), KVLM_ERR_CONTEXT_FULL);
    assert_int_equal(kvlm_ctx_decode(plain, g_text, 65, err, sizeof err), KVLM_ERR_CONTEXT_FULL);
    assert_int_equal(kvlm_ctx_n_past(plain), 0);
    kvlm_ctx_free(plain);
    kvlm_ctx *c = shift_ctx(NULL, 64, 0, true);
    assert_int_equal(kvlm_ctx_prefill(c, g_text, 100, NULL, err, sizeof err), KVLM_OK);
    assert_true(kvlm_ctx_n_past(c) <= 64);
    assert_true(all_finite(kvlm_ctx_logits(c)));
    kvlm_ctx_free(c);
    /* a keep that leaves nothing to drop is an error, not a loop */
    kvlm_ctx *k = shift_ctx(NULL, 64, 60, true);
    assert_int_equal(kvlm_ctx_decode(k, g_text, 64, err, sizeof err), KVLM_OK);
    assert_int_equal(kvlm_ctx_decode(k, g_text + 64, 1, err, sizeof err), KVLM_ERR_CONTEXT_FULL);
    kvlm_ctx_free(k);
}

static void test_rollback_unshifts(void **state)
{
    (void)state;
    NEED_MODEL();
    kvlm_cache_params cp = kvlm_cache_default_params();
    cp.mem_bytes = 64u << 20;
    kvlm_cache *cache;
    char err[256];
    assert_int_equal(kvlm_cache_init(g_model, &cp, &cache, err, sizeof err), KVLM_OK);
    kvlm_ctx *c = shift_ctx(cache, 64, 20, true);
    assert_int_equal(kvlm_ctx_decode(c, g_text, 100, err, sizeof err), KVLM_OK);
    kvlm_ctx_truncate(c, 20);                        /* back to the kept tokens: unshifted */
    assert_int_equal(kvlm_ctx_decode(c, g_text + 20, 40, err, sizeof err), KVLM_OK);
    assert_true(check_published(cache, g_text, 100) >= 3);  /* blocks 0..2 of the stream, published again */
    kvlm_cache_stats cs;
    kvlm_cache_get_stats(cache, &cs);
    kvlm_ctx *d = test_ctx_new(g_model, cache, KVLM_KV_F16, 0, 64);
    size_t reused = 0;
    assert_int_equal(kvlm_ctx_prefill(d, g_text, 60, &reused, err, sizeof err), KVLM_OK);
    assert_int_equal(reused, 48);                    /* found by another context */
    kvlm_ctx_free(d);
    kvlm_ctx_free(c);
    kvlm_cache_free(cache);
}

static void test_refused(void **state)
{
    (void)state;
    NEED_MODEL();
    kvlm_ctx_params p = kvlm_ctx_default_params();
    kvlm_ctx *c = NULL;
    char err[256] = "";
    kvlm_model *gm = NULL;                          /* Gemma 3, when it is cached */
    if (test_gemma3_path() && kvlm_model_load(test_gemma3_path(), &gm, err, sizeof err) == KVLM_OK) {
        p.context_shift = true;
        p.n_ctx = 64;
        assert_int_equal(kvlm_ctx_init(gm, &p, &c, err, sizeof err), KVLM_ERR_UNSUPPORTED);
        assert_null(c);
        assert_non_null(strstr(err, "gemma3"));
        assert_non_null(strstr(err, "sliding-window"));
        p.context_shift = false;                     /* the check is only for a shift */
        assert_int_equal(kvlm_ctx_init(gm, &p, &c, err, sizeof err), KVLM_OK);
        kvlm_ctx_free(c);
        kvlm_model_free(gm);
    }
    p.context_shift = true;
    p.n_keep = -1;
    assert_int_equal(kvlm_ctx_init(g_model, &p, &c, err, sizeof err), KVLM_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_context),
        cmocka_unit_test(test_vs_recompute),
        cmocka_unit_test(test_prefill_continues_stream),
        cmocka_unit_test(test_prompt_longer_than_context),
        cmocka_unit_test(test_rollback_unshifts),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
