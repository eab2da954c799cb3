/* test_kv_pool.c - the paged KV cache (kv_pool + kv_seq): unit tests of each
 * operation, then a randomized model-based test that runs 20,000 random
 * operations against a shadow model and checks after every one that each live
 * sequence reads exactly the K/V it wrote (so copy-on-write, sharing and prefix
 * reuse are exact) and that every refcount equals the references the sequences
 * hold.
 *
 * K/V values are a pure function of (fingerprint, namespace, token history,
 * layer, position): a row reused through the prefix index from the wrong
 * prefix, model or namespace reads different values and fails the check.
 * Every value is k/64 with |k| <= 128, exact in f16 as in f32. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kern/quant.h"
#include "kv/kv_pool.h"
#include "kv/kv_seq.h"

enum { N_LAYER = 2, N_HEAD_KV = 2, HEAD_DIM = 4, W = N_HEAD_KV * HEAD_DIM, MAXP = 160 };

/* ---- deterministic K/V ------------------------------------------------------------ */

static uint64_t mix64(uint64_t x)   /* splitmix64's finalizer */
{
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27; x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* hist[p]: hash of (fingerprint, ns, tok[0..p]) */
static uint64_t hist_next(uint64_t prev, kvlm_token t) { return mix64(prev ^ (0x9e3779b97f4a7c15ull + (uint64_t)t)); }
static uint64_t hist_seed(uint64_t fp, uint64_t ns) { return mix64(fp ^ mix64(ns + 1)); }

/* row: [W] expected K (kv 0) or V (kv 1) of layer il after history h */
static void expected_row(float *row, uint64_t h, int64_t il, int kv)
{
    const uint64_t r = mix64(h ^ ((uint64_t)il << 8) ^ (uint64_t)kv);
    for (int e = 0; e < W; e++) row[e] = (float)(int8_t)(r >> (8 * e)) / 64.0f;
}

static float read_elt(const kv_pool *pool, const void *row, int e)
{
    if (pool->type_k == KVLM_KV_F32) return ((const float *)row)[e];   /* these tests use one type for K and V */
    return fp16_to_f32(((const uint16_t *)row)[e]);
}

/* ---- a sequence with its shadow --------------------------------------------------- */

typedef struct shadow {
    bool live;
    kv_seq s;
    uint64_t fp, ns;
    int script;
    kvlm_token tok[MAXP];
    uint64_t hist[MAXP];
} shadow;

static kv_pool *make_pool(kv_pool *pool, int64_t n_blocks, kvlm_kv_type type, bool poison)
{
    kv_pool_params pp = { .n_layer = N_LAYER, .n_head_kv = N_HEAD_KV, .head_dim = HEAD_DIM,
                          .type_k = type, .type_v = type, .poison = poison };
    pp.budget_bytes = (size_t)n_blocks * kv_pool_block_bytes(N_LAYER, N_HEAD_KV, HEAD_DIM, type, type);
    char err[256] = "";
    assert_int_equal(kv_pool_init(pool, &pp, err, sizeof err), KVLM_OK);
    assert_int_equal(pool->n_blocks, n_blocks);
    return pool;
}

static void sh_init(shadow *sh, kv_pool *pool, uint64_t fp, uint64_t ns)
{
    memset(sh, 0, sizeof *sh);
    sh->live = true;
    sh->fp = fp;
    sh->ns = ns;
    kv_seq_init(&sh->s, pool);
}

static void sh_free(shadow *sh)
{
    kv_seq_free(&sh->s);
    sh->live = false;
}

/* Writes K/V for positions [from, to) of sh->tok (already reserved). */
static void sh_store(shadow *sh, int64_t from, int64_t to)
{
    float k[W], v[W];
    for (int64_t pos = from; pos < to; pos++) {          /* pos: [from, to) x il: [N_LAYER] */
        uint64_t prev = pos > 0 ? sh->hist[pos - 1] : hist_seed(sh->fp, sh->ns);
        sh->hist[pos] = hist_next(prev, sh->tok[pos]);
        for (int64_t il = 0; il < N_LAYER; il++) {
            expected_row(k, sh->hist[pos], il, 0);
            expected_row(v, sh->hist[pos], il, 1);
            kv_seq_store(&sh->s, il, pos, k, v);
        }
    }
}

/* Appends tokens[0, n): reserve, store, advance. On an error nothing changes. */
static kvlm_err sh_append(shadow *sh, const kvlm_token *tokens, int64_t n)
{
    const int64_t p0 = sh->s.n_pos;
    assert_true(p0 + n <= MAXP);
    kvlm_err rc = kv_seq_reserve(&sh->s, n, NULL, 0);
    if (rc != KVLM_OK) return rc;
    memcpy(sh->tok + p0, tokens, (size_t)n * sizeof *tokens);
    sh_store(sh, p0, p0 + n);
    kv_seq_advance(&sh->s, n);
    return KVLM_OK;
}

/* The shadow of a sequence that attached tokens[0, n) from the cache. */
static void sh_adopt(shadow *sh, const kvlm_token *tokens, int64_t n)
{
    for (int64_t p = 0; p < n; p++) {
        sh->tok[p] = tokens[p];
        sh->hist[p] = hist_next(p ? sh->hist[p - 1] : hist_seed(sh->fp, sh->ns), tokens[p]);
    }
}

static kvlm_token *seq_tokens(kvlm_token *t, int64_t n, kvlm_token base)
{
    for (int64_t i = 0; i < n; i++) t[i] = base + (kvlm_token)i;
    return t;
}

/* Every committed row of sh reads its expected value. */
static void sh_check_rows(const shadow *sh)
{
    const kv_pool *pool = sh->s.pool;
    float want[W];
    for (int64_t pos = 0; pos < sh->s.n_pos; pos++)       /* pos x il x {K,V} x [W] */
        for (int64_t il = 0; il < N_LAYER; il++)
            for (int kv = 0; kv < 2; kv++) {
                expected_row(want, sh->hist[pos], il, kv);
                for (int e = 0; e < W; e++) {
                    const float got = kv ? read_elt(pool, kv_seq_v_row(&sh->s, il, pos), e)
                                         : read_elt(pool, kv_seq_k_elem(&sh->s, il, pos, e), 0);
                    if (got != want[e])
                        fail_msg("pos %lld layer %lld %c[%d]: %g, want %g", (long long)pos, (long long)il,
                                 kv ? 'V' : 'K', e, (double)got, (double)want[e]);
                }
            }
}

static void check_pool(const kv_pool *pool)
{
    char err[256] = "";
    if (kv_pool_check(pool, err, sizeof err) != KVLM_OK) fail_msg("kv_pool_check: %s", err);
}

static kv_block_state state_of(const kv_pool *pool, kv_block b)
{
    kv_block_info info;
    kv_pool_block_info(pool, b, &info);
    return info.state;
}

static bool block_all_nan(const kv_pool *pool, kv_block b)
{
    const int64_t per_row = W;
    for (int64_t il = 0; il < N_LAYER; il++)
        for (int64_t slot = 0; slot < KV_BLOCK_TOKENS; slot++)
            for (int64_t e = 0; e < per_row; e++)
                if (!isnan(read_elt(pool, kv_pool_k(pool, b, il), (int)(slot * per_row + e))) ||
                    !isnan(read_elt(pool, kv_pool_v(pool, b, il, slot), (int)e)))
                    return false;
    return true;
}

/* ---- unit tests -------------------------------------------------------------------- */

static void test_init_and_sizes(void **state)
{
    (void)state;
    kv_pool pool;
    char err[256] = "";
    const size_t bb = kv_pool_block_bytes(N_LAYER, N_HEAD_KV, HEAD_DIM, KVLM_KV_F32, KVLM_KV_F32);
    assert_int_equal(bb, N_LAYER * 2 * KV_BLOCK_TOKENS * W * 4);   /* 2048: already 64-aligned */
    kv_pool_params pp = { .n_layer = N_LAYER, .n_head_kv = N_HEAD_KV, .head_dim = HEAD_DIM,
                          .type_k = KVLM_KV_F32, .type_v = KVLM_KV_F32, .budget_bytes = bb - 1 };
    assert_int_equal(kv_pool_init(&pool, &pp, err, sizeof err), KVLM_ERR_BUDGET);
    assert_non_null(strstr(err, "below one block"));
    pp.type_k = (kvlm_kv_type)7;
    assert_int_equal(kv_pool_init(&pool, &pp, err, sizeof err), KVLM_ERR_INVALID);
    pp.type_k = pp.type_v = KVLM_KV_F16;
    pp.budget_bytes = 5 * bb / 2 + 10;   /* f16 blocks are half as big: 5 of them */
    assert_int_equal(kv_pool_init(&pool, &pp, err, sizeof err), KVLM_OK);
    kv_pool_stats st;
    kv_pool_get_stats(&pool, &st);
    assert_int_equal(st.n_blocks, 5);
    assert_int_equal(st.n_free, 5);
    assert_int_equal(st.bytes_per_token_per_layer, 2 * W * 2);
    assert_int_equal(st.bytes_per_token, N_LAYER * 2 * W * 2);
    assert_int_equal((uintptr_t)pool.slab % 64, 0);
    check_pool(&pool);
    kv_pool_free(&pool);
    kv_pool_free(&pool);   /* zeroed: fine */
}

static void test_row_layout(void **state)
{
    (void)state;
    kv_pool pool;
    make_pool(&pool, 2, KVLM_KV_F32, false);
    kv_block b;
    assert_int_equal(kv_pool_alloc(&pool, &b, NULL, 0), KVLM_OK);
    uint8_t *base = pool.slab + (size_t)b * pool.block_bytes;
    const size_t rb = W * sizeof(float);
    assert_int_equal(kv_pool_row_stride(&pool), rb);
    /* [n_layer][K|V][16 * W]: K channel-major [W][16], V rows [16][W] */
    assert_ptr_equal(kv_pool_k(&pool, b, 0), base);
    assert_ptr_equal(kv_pool_v(&pool, b, 0, 0), base + 16 * rb);
    assert_ptr_equal(kv_pool_v(&pool, b, 0, 3), base + 19 * rb);
    assert_ptr_equal(kv_pool_k(&pool, b, 1), base + 32 * rb);
    assert_ptr_equal(kv_pool_v(&pool, b, 1, 15), base + 63 * rb);
    kv_pool_unref(&pool, b);
    kv_pool_free(&pool);
}

/* A pool of 4 blocks of the given shape and type, and a sequence holding npos
 * reserved positions in it. */
static void open_seq(kv_pool *pool, kv_seq *s, int64_t L, int64_t HK, int64_t HD, kvlm_kv_type type, int64_t npos)
{
    kv_pool_params pp = { .n_layer = L, .n_head_kv = HK, .head_dim = HD, .type_k = type, .type_v = type };
    pp.budget_bytes = 4 * kv_pool_block_bytes(L, HK, HD, type, type);
    assert_int_equal(kv_pool_init(pool, &pp, NULL, 0), KVLM_OK);
    kv_seq_init(s, pool);
    assert_int_equal(kv_seq_reserve(s, npos, NULL, 0), KVLM_OK);
}

/* q8: every stored K and V value dequantizes to within half a step of what was
 * stored, the largest of each group of 32 to exactly +-127 steps, in the layout
 * kv_pool.h gives; head_dim not a multiple of 32 is refused. */
static void test_store_q8(void **state)
{
    (void)state;
    enum { L = 2, HK = 2, HD = 32, NCH = HK * HD, NPOS = 21 };
    assert_int_equal(kv_pool_block_bytes(L, HK, 16, KVLM_KV_Q8, KVLM_KV_Q8), 0);
    assert_int_equal(kv_pool_block_bytes(L, HK, HD, KVLM_KV_Q8, KVLM_KV_Q8), 2 * L * ((17 * NCH + 63) / 64 * 64));
    kv_pool pool;
    kv_seq s;
    open_seq(&pool, &s, L, HK, HD, KVLM_KV_Q8, NPOS);
    static float k[NPOS][L][NCH], v[NPOS][L][NCH];
    uint64_t r = 99;
    for (int p = 0; p < NPOS; p++)
        for (int il = 0; il < L; il++) {
            for (int c = 0; c < NCH; c++) {
                r = r * 6364136223846793005ull + 1442695040888963407ull;
                k[p][il][c] = (float)((int)(r >> 40) % 2001 - 1000) / 97.0f;
                v[p][il][c] = (float)((int)(r >> 20) % 2001 - 1000) / 311.0f;
            }
            kv_seq_store(&s, il, p, k[p][il], v[p][il]);
        }
    kv_seq_advance(&s, NPOS);
    for (int p = 0; p < NPOS; p++)
        for (int il = 0; il < L; il++) {
            const kv_block b = s.blocks[p / KV_BLOCK_TOKENS];
            const int slot = p % KV_BLOCK_TOKENS;
            const int8_t *kq = kv_pool_k(&pool, b, il), *vq = kv_pool_v(&pool, b, il, 0);
            const uint16_t *kd = (const uint16_t *)(kq + NCH * KV_BLOCK_TOKENS), *vd = (const uint16_t *)(vq + NCH * KV_BLOCK_TOKENS);
            for (int g = 0; g < NCH / 32; g++) {
                const float dk = fp16_to_f32(kd[g * KV_BLOCK_TOKENS + slot]), dv = fp16_to_f32(vd[g * KV_BLOCK_TOKENS + slot]);
                int kmax = 0, vmax = 0;
                for (int c = g * 32; c < g * 32 + 32; c++) {
                    const int qk = kq[c * KV_BLOCK_TOKENS + slot], qv = vq[slot * NCH + c];
                    if (abs(qk) > kmax) kmax = abs(qk);
                    if (abs(qv) > vmax) vmax = abs(qv);
                    /* half a step, plus the step's own f16 rounding over up to 127 steps */
                    assert_true(fabsf(dk * (float)qk - k[p][il][c]) <= 0.5f * dk + 127.0f * dk / 1024.0f);
                    assert_true(fabsf(dv * (float)qv - v[p][il][c]) <= 0.5f * dv + 127.0f * dv / 1024.0f);
                }
                assert_int_equal(kmax, 127);
                assert_int_equal(vmax, 127);
            }
        }
    kv_seq_free(&s);
    kv_pool_free(&pool);
}

/* q4: every stored value dequantizes to within half a step (plus the scale's f16
 * rounding) of what was stored, except that values of the sign opposite to the
 * group's extreme may clip at +7 (q4_0's range is [-8, 7]): within one step; in
 * the packing kv_pool.h gives; the value of largest magnitude maps to -8. */
static void test_store_q4(void **state)
{
    (void)state;
    enum { L = 1, HK = 2, HD = 32, NCH = HK * HD, NPOS = 19 };
    assert_int_equal(kv_pool_block_bytes(L, HK, HD, KVLM_KV_Q4, KVLM_KV_Q4), 2 * L * ((9 * NCH + 63) / 64 * 64));
    kv_pool pool;
    kv_seq s;
    open_seq(&pool, &s, L, HK, HD, KVLM_KV_Q4, NPOS);
    static float k[NPOS][NCH], v[NPOS][NCH];
    uint64_t r = 7;
    for (int p = 0; p < NPOS; p++) {
        for (int c = 0; c < NCH; c++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            k[p][c] = (float)((int)(r >> 40) % 2001 - 1000) / 97.0f;
            v[p][c] = (float)((int)(r >> 20) % 2001 - 1000) / 311.0f;
        }
        kv_seq_store(&s, 0, p, k[p], v[p]);
    }
    kv_seq_advance(&s, NPOS);
    for (int p = 0; p < NPOS; p++) {
        const kv_block b = s.blocks[p / KV_BLOCK_TOKENS];
        const int slot = p % KV_BLOCK_TOKENS;
        const uint8_t *kq = kv_pool_k(&pool, b, 0), *vq = kv_pool_v(&pool, b, 0, 0);
        const uint16_t *kd = (const uint16_t *)(kq + NCH * 8), *vd = (const uint16_t *)(vq + NCH * 8);
        for (int g = 0; g < NCH / 32; g++) {
            const float dk = fp16_to_f32(kd[g * KV_BLOCK_TOKENS + slot]), dv = fp16_to_f32(vd[g * KV_BLOCK_TOKENS + slot]);
            int kmin = 99, vmin = 99;
            for (int i = 0; i < 32; i++) {
                const int c = g * 32 + i;
                const uint8_t bk = kq[c * 8 + slot % 8], bv = vq[slot * NCH / 2 + g * 16 + i % 16];
                const int qk = (slot < 8 ? bk & 15 : bk >> 4) - 8, qv = (i < 16 ? bv & 15 : bv >> 4) - 8;
                if (qk < kmin) kmin = qk;
                if (qv < vmin) vmin = qv;
                const float sk = qk == 7 ? 1.0f : 0.5f, sv = qv == 7 ? 1.0f : 0.5f;   /* 7: maybe clipped */
                assert_true(fabsf(dk * (float)qk - k[p][c]) <= sk * fabsf(dk) + 8.0f * fabsf(dk) / 1024.0f + 1e-6f);
                assert_true(fabsf(dv * (float)qv - v[p][c]) <= sv * fabsf(dv) + 8.0f * fabsf(dv) / 1024.0f + 1e-6f);
            }
            assert_int_equal(kmin, -8);
            assert_int_equal(vmin, -8);
        }
    }
    kv_seq_free(&s);
    kv_pool_free(&pool);
}

/* KIVI code k of a packed run (attn.h: with span = run * b / 8 bytes, code k sits in
 * byte k % span at bits b * (k / span)); run = 16 for a K channel, 32 for a V group */
static int kivi_code_at(const uint8_t *run_bytes, int bits, int run, int k)
{
    const int span = run * bits / 8;
    return (run_bytes[k % span] >> (bits * (k / span))) & ((1 << bits) - 1);
}

/* n values x[i * xstride] against their KIVI group (codes from code(i), d, m): each
 * within half a step plus the f16 rounding of d and m (codes are clamped to
 * [0, 2^b - 1]), the minimum at code 0 and the maximum at the top code. */
static void check_kivi_group(const float *x, size_t xstride, int n, int bits, const uint8_t *run_bytes, int run,
                             uint16_t d, uint16_t m, const char *what)
{
    const int top = (1 << bits) - 1;
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        lo = fminf(lo, x[(size_t)i * xstride]);
        hi = fmaxf(hi, x[(size_t)i * xstride]);
    }
    const float df = fp16_to_f32(d), mf = fp16_to_f32(m);
    const float tol = 0.5f * df + (fabsf(lo) + (hi - lo)) / 1024.0f + 1e-6f;
    for (int i = 0; i < n; i++) {
        const float xi = x[(size_t)i * xstride];
        const int c = kivi_code_at(run_bytes + (i / run) * (run * bits / 8), bits, run, i % run);
        if (!(fabsf(mf + df * (float)c - xi) <= tol))
            fail_msg("%s value %d: %g -> code %d (d %g, m %g)", what, i, (double)xi, c, (double)df, (double)mf);
        if (xi == lo) assert_int_equal(c, 0);
        if (xi == hi) assert_int_equal(c, top);
    }
}

/* KIVI through kv_seq_stage, in batches that start and end inside blocks: the
 * stage returns the f32 values of each batch's groups; every full block's V is
 * quantized into the pool in attn.h's layout, per position over 64 channels,
 * and every full span's K per channel over its 64 positions, each block of the
 * span holding a quarter of the channels' scales (check_kivi_group). The block
 * still filling keeps its V untouched, the span still filling its K (NaN in a
 * poison pool). */
static void store_kivi(kvlm_kv_type tk, kvlm_kv_type tv)
{
    enum { L = 2, HK = 2, HD = 64, NCH = HK * HD, NQ = NCH / KV_KIVI_SPAN, NPOS = 150, R = 64,
           BT = KV_BLOCK_TOKENS, SPAN = KV_KIVI_SPAN * BT, MAXB = 64 };
    const int bk = tk == KVLM_KV_KIVI4 ? 4 : 2, bv = tv == KVLM_KV_KIVI4 ? 4 : 2;
    assert_int_equal(kv_pool_block_bytes(L, HK, 32, tk, tv), 0);   /* V groups of 64 channels: HK * 32 does not hold */
    kv_pool_params pp = { .n_layer = L, .n_head_kv = HK, .head_dim = HD, .type_k = tk, .type_v = tv,
                          .poison = true, .res_tokens = 32 };
    pp.budget_bytes = 10 * kv_pool_block_bytes(L, HK, HD, tk, tv);
    kv_pool pool;
    char err[256] = "";
    assert_int_equal(kv_pool_init(&pool, &pp, err, sizeof err), KVLM_ERR_INVALID);   /* K spans of 64 need R >= 64 */
    assert_non_null(strstr(err, "64"));
    pp.res_tokens = R;
    assert_int_equal(kv_pool_init(&pool, &pp, NULL, 0), KVLM_OK);
    assert_int_equal(pool.part_k, (size_t)(NCH * BT * bk / 8 + NQ * 4 + 63) / 64 * 64);
    assert_int_equal(pool.part_v, (size_t)(NCH * BT * bv / 8 + BT * (NCH / 64) * 4 + 63) / 64 * 64);
    kv_seq s;
    kv_seq_init(&s, &pool);
    static float k[L][NPOS][NCH], v[L][NPOS][NCH];   /* per layer [position][channel], as kv_seq_stage takes them */
    uint64_t r = 31;
    for (int il = 0; il < L; il++)
        for (int p = 0; p < NPOS; p++)
            for (int c = 0; c < NCH; c++) {
                r = r * 6364136223846793005ull + 1442695040888963407ull;
                k[il][p][c] = (float)((int)(r >> 40) % 2001 - 1000) / 97.0f * (c % 17 == 3 ? 8.0f : 1.0f);
                v[il][p][c] = (float)((int)(r >> 20) % 2001 - 1000) / 311.0f;
            }
    float *stage = malloc(kv_seq_stage_floats(&pool, MAXB) * sizeof *stage);
    assert_non_null(stage);
    static const int batch[] = { 7, 20, 1, 17, 60, 45 };   /* 150 positions: 0-6, 7-26, 27, 28-44, 45-104, 105-149 */
    for (size_t bi = 0, p0 = 0; bi < sizeof batch / sizeof batch[0]; p0 += (size_t)batch[bi++]) {
        const int64_t n = batch[bi], g0 = kv_seq_group_start(&pool, (int64_t)p0);
        assert_int_equal(kv_seq_reserve(&s, n, NULL, 0), KVLM_OK);
        for (int il = 0; il < L; il++) {
            kv_seq_stage(&s, il, (int64_t)p0, n, k[il][p0], v[il][p0], stage);
            for (int64_t pos = g0; pos < (int64_t)p0 + n; pos++) {   /* stage: f32 blocks of [g0, p0 + n) */
                const float *blk = stage + (size_t)((pos - g0) / BT) * kv_seq_stage_block_floats(&pool);
                for (int c = 0; c < NCH; c++) {
                    assert_true(blk[c * BT + pos % BT] == k[il][pos][c]);
                    assert_true(blk[NCH * BT + pos % BT * NCH + c] == v[il][pos][c]);
                }
            }
        }
        kv_seq_advance(&s, n);
    }
    free(stage);
    char what[128];
    for (int il = 0; il < L; il++) {
        for (int64_t sp = 0; sp * SPAN < NPOS; sp++) {  /* K: span sp, blocks 4 sp .. 4 sp + 3 */
            const uint8_t *kq[KV_KIVI_SPAN];
            for (int j = 0; j < KV_KIVI_SPAN; j++)
                kq[j] = sp * KV_KIVI_SPAN + j < s.n_blocks ? kv_pool_k(&pool, s.blocks[sp * KV_KIVI_SPAN + j], il) : NULL;
            if ((sp + 1) * SPAN > NPOS) {              /* the span still filling: its K never quantized */
                for (int j = 0; j < KV_KIVI_SPAN; j++)
                    if (kq[j])
                        for (int i = 0; i < 2 * NQ; i++) assert_int_equal(((const uint16_t *)(kq[j] + NCH * 2 * bk))[i], 0x7e00);
                continue;
            }
            for (int c = 0; c < NCH; c++) {            /* K channel c over the span's 64 positions */
                uint8_t codes[KV_KIVI_SPAN * 8];       /* its runs of 16 codes, block by block */
                for (int j = 0; j < KV_KIVI_SPAN; j++) memcpy(codes + j * 2 * bk, kq[j] + c * 2 * bk, (size_t)(2 * bk));
                const uint16_t *sc = (const uint16_t *)(kq[c / NQ] + NCH * 2 * bk);   /* d [NQ], m [NQ] */
                snprintf(what, sizeof what, "layer %d span %lld K channel %d", il, (long long)sp, c);
                check_kivi_group(&k[il][sp * SPAN][c], NCH, SPAN, bk, codes, BT, sc[c % NQ], sc[NQ + c % NQ], what);
            }
        }
        for (int64_t b = 0; b < s.n_blocks; b++) {
            const uint8_t *vq = kv_pool_v(&pool, s.blocks[b], il, 0);
            const uint16_t *vd = (const uint16_t *)(vq + BT * pool.row_bytes), *vm = vd + BT * (NCH / 64);
            if ((b + 1) * BT > NPOS) {                 /* the block still filling: its V never quantized */
                for (int i = 0; i < BT * (NCH / 64); i++) assert_int_equal(vm[i], 0x7e00);
                continue;
            }
            for (int slot = 0; slot < BT; slot++)      /* V row `slot`, groups of 64 channels */
                for (int g = 0; g < NCH / 64; g++) {
                    snprintf(what, sizeof what, "layer %d block %lld V row %d group %d", il, (long long)b, slot, g);
                    check_kivi_group(&v[il][b * BT + slot][g * 64], 1, 64, bv, vq + slot * pool.row_bytes + g * 64 * bv / 8,
                                     32, vd[slot * (NCH / 64) + g], vm[slot * (NCH / 64) + g], what);
                }
        }
    }
    kv_seq_free(&s);
    kv_pool_free(&pool);
}

static void test_store_kivi(void **state)
{
    (void)state;
    store_kivi(KVLM_KV_KIVI4, KVLM_KV_KIVI2);
    store_kivi(KVLM_KV_KIVI2, KVLM_KV_KIVI4);
}

/* ---- KIVI K spans: sharing a span's blocks ------------------------------------------ */
enum { SP_HD = 64, SP_MAX = 200 };

/* K of (token, position, channel): any deterministic value, outlier channels x8 */
static float sp_k(kvlm_token t, int64_t pos, int c)
{
    return (float)((int)(mix64((uint64_t)t * 1000003u + (uint64_t)pos * 131u + (uint64_t)c) % 2001) - 1000) / 97.0f *
           (c % 17 == 3 ? 8.0f : 1.0f);
}

/* Appends tokens[n_pos, n) to s (one layer, one K/V head of 64): reserve, stage, advance. */
static kvlm_err sp_append(kv_seq *s, const kvlm_token *tokens, int64_t n)
{
    const int64_t p0 = s->n_pos, m = n - p0;
    kvlm_err rc = kv_seq_reserve(s, m, NULL, 0);
    if (rc != KVLM_OK) return rc;
    static float k[SP_MAX][SP_HD], v[SP_MAX][SP_HD];
    for (int64_t i = 0; i < m; i++)
        for (int c = 0; c < SP_HD; c++) { k[i][c] = sp_k(tokens[p0 + i], p0 + i, c); v[i][c] = 0.5f * k[i][c]; }
    float *stage = malloc(kv_seq_stage_floats(s->pool, m) * sizeof *stage);
    assert_non_null(stage);
    kv_seq_stage(s, 0, p0, m, &k[0][0], &v[0][0], stage);
    free(stage);
    kv_seq_advance(s, m);
    return KVLM_OK;
}

/* Every complete span of s holds its own tokens' K: channel c of span sp over
 * its 64 positions against its codes and the scales in block c / 16 of the span. */
static void sp_check(const kv_seq *s, const kvlm_token *tokens)
{
    enum { NQ = SP_HD / KV_KIVI_SPAN, SPAN = KV_KIVI_SPAN * KV_BLOCK_TOKENS };
    const int64_t done = kv_seq_group_start(s->pool, s->n_pos) / SPAN;   /* spans left in f32: not yet read */
    char what[96];
    for (int64_t sp = 0; sp < done; sp++)
        for (int c = 0; c < SP_HD; c++) {
            float x[SPAN];
            uint8_t codes[KV_KIVI_SPAN * 8];
            for (int i = 0; i < SPAN; i++) x[i] = sp_k(tokens[sp * SPAN + i], sp * SPAN + i, c);
            for (int j = 0; j < KV_KIVI_SPAN; j++)
                memcpy(codes + j * 8, (const uint8_t *)kv_pool_k(s->pool, s->blocks[sp * KV_KIVI_SPAN + j], 0) + c * 8, 8);
            const uint16_t *sc = (const uint16_t *)((const uint8_t *)kv_pool_k(s->pool, s->blocks[sp * KV_KIVI_SPAN + c / NQ], 0) +
                                                    SP_HD * 8);
            snprintf(what, sizeof what, "span %lld K channel %d", (long long)sp, c);
            check_kivi_group(x, 1, SPAN, 4, codes, KV_BLOCK_TOKENS, sc[c % NQ], sc[NQ + c % NQ], what);
        }
}

/* A KIVI K span is quantized when its 64 positions are known, into all four of
 * its blocks: a fork that shares the span's earlier blocks gets them copied
 * before either side writes (both then hold their own tokens' K); a block's key
 * covers its span's later tokens, so two sequences that differ only after block
 * 0 of a span publish apart and never adopt each other's blocks; only whole
 * spans are published, and a rollback into a published span copies it again. */
static void test_kivi_span_sharing(void **state)
{
    (void)state;
    kv_pool_params pp = { .n_layer = 1, .n_head_kv = 1, .head_dim = SP_HD, .type_k = KVLM_KV_KIVI4,
                          .type_v = KVLM_KV_F16, .poison = true, .res_tokens = 64 };
    pp.budget_bytes = 40 * kv_pool_block_bytes(1, 1, SP_HD, KVLM_KV_KIVI4, KVLM_KV_F16);
    kv_pool pool;
    assert_int_equal(kv_pool_init(&pool, &pp, NULL, 0), KVLM_OK);
    assert_int_equal(kv_pool_span(&pool), KV_KIVI_SPAN);
    kvlm_token ta[SP_MAX], tb[SP_MAX];
    seq_tokens(ta, 130, 7);
    memcpy(tb, ta, sizeof tb);
    for (int i = 20; i < 130; i++) tb[i] = ta[i] + 1;   /* b differs from position 20 on: inside block 1 */

    kv_seq a, b, c, d;
    kv_seq_init(&a, &pool);
    kv_seq_init(&b, &pool);
    assert_int_equal(sp_append(&a, ta, 20), KVLM_OK);
    assert_int_equal(kv_seq_fork(&b, &a, NULL, 0), KVLM_OK);   /* b shares blocks 0 and 1 */
    const int64_t copies0 = pool.stats.copies;
    assert_int_equal(sp_append(&a, ta, 70), KVLM_OK);   /* completes span 0: its blocks 0, 1 copied first */
    assert_int_equal(pool.stats.copies, copies0 + 2);
    assert_true(a.blocks[0] != b.blocks[0] && a.blocks[1] != b.blocks[1]);
    assert_int_equal(sp_append(&b, tb, 70), KVLM_OK);   /* b's own span 0, in the blocks it now holds alone */
    assert_int_equal(pool.stats.copies, copies0 + 2);
    sp_check(&a, ta);
    sp_check(&b, tb);

    /* publish: whole spans only; b's block 0 has a's tokens but other bytes */
    assert_int_equal(kv_seq_publish(&a, ta, 60, 1, 0, NULL, 0), KVLM_OK);
    assert_int_equal(a.n_published, 0);
    assert_int_equal(kv_seq_publish(&a, ta, 70, 1, 0, NULL, 0), KVLM_OK);
    assert_int_equal(a.n_published, 4);
    assert_int_equal(kv_seq_publish(&b, tb, 70, 1, 0, NULL, 0), KVLM_OK);
    assert_int_equal(b.n_published, 4);
    assert_true(b.blocks[0] != a.blocks[0]);         /* not adopted: the key covers tokens 16-63 */
    assert_int_not_equal(a.keys[0], b.keys[0]);
    sp_check(&b, tb);

    /* attach finds each sequence's own span */
    int64_t reused;
    kv_seq_init(&c, &pool);
    kv_seq_init(&d, &pool);
    assert_int_equal(kv_seq_attach_prefix(&c, ta, 70, 1, 0, &reused, NULL, 0), KVLM_OK);
    assert_int_equal(reused, 64);
    assert_int_equal(kv_seq_attach_prefix(&d, tb, 70, 1, 0, &reused, NULL, 0), KVLM_OK);
    assert_int_equal(reused, 64);
    for (int j = 0; j < KV_KIVI_SPAN; j++) {
        assert_int_equal(c.blocks[j], a.blocks[j]);
        assert_int_equal(d.blocks[j], b.blocks[j]);
    }
    assert_int_equal(kv_seq_attach_prefix(&c, ta, 63, 1, 0, &reused, NULL, 0), KVLM_ERR_INVALID);   /* not empty */
    kv_seq_free(&c);
    kv_seq_init(&c, &pool);
    assert_int_equal(kv_seq_attach_prefix(&c, ta, 64, 1, 0, &reused, NULL, 0), KVLM_OK);
    assert_int_equal(reused, 0);                      /* the last token is left to compute: no whole span */
    kv_seq_free(&c);
    kv_seq_free(&d);
    kv_seq_free(&b);
    kv_seq_free(&a);
    kv_pool_free(&pool);

    /* R = 128: a rollback inside the current group, into a published span */
    pp.res_tokens = 128;
    assert_int_equal(kv_pool_init(&pool, &pp, NULL, 0), KVLM_OK);
    kv_seq_init(&a, &pool);
    assert_int_equal(sp_append(&a, ta, 100), KVLM_OK);
    assert_int_equal(kv_seq_publish(&a, ta, 100, 1, 0, NULL, 0), KVLM_OK);
    assert_int_equal(a.n_published, 4);
    const kv_block old0 = a.blocks[0];
    kv_seq_truncate(&a, 50);
    assert_int_equal(a.n_pos, 50);
    assert_int_equal(a.n_published, 0);               /* span 0 is written again */
    assert_int_equal(sp_append(&a, tb, 130), KVLM_OK);   /* tb from 50 on: positions 50-63 differ */
    assert_true(a.blocks[0] != old0);                 /* the published copy untouched */
    kvlm_token mix[SP_MAX];
    memcpy(mix, ta, 50 * sizeof *mix);
    memcpy(mix + 50, tb + 50, 80 * sizeof *mix);
    sp_check(&a, mix);
    kv_seq_init(&c, &pool);
    assert_int_equal(kv_seq_attach_prefix(&c, ta, 100, 1, 0, &reused, NULL, 0), KVLM_OK);
    assert_int_equal(reused, 0);                      /* whole groups only (R = 128) */
    assert_int_equal(kv_seq_publish(&a, mix, 130, 1, 0, NULL, 0), KVLM_OK);
    kv_seq_free(&c);
    kv_seq_init(&c, &pool);
    assert_int_equal(kv_seq_attach_prefix(&c, mix, 130, 1, 0, &reused, NULL, 0), KVLM_OK);
    assert_int_equal(reused, 128);
    sp_check(&c, mix);
    kv_seq_free(&c);
    kv_seq_free(&a);
    check_pool(&pool);
    kv_pool_free(&pool);
}

static void test_store_f16_rounds_like_kern(void **state)
{
    (void)state;
    kv_pool pool;
    make_pool(&pool, 2, KVLM_KV_F16, false);
    kv_seq s;
    kv_seq_init(&s, &pool);
    assert_int_equal(kv_seq_reserve(&s, 1, NULL, 0), KVLM_OK);
    float k[W], v[W];
    for (int e = 0; e < W; e++) { k[e] = 0.1f * (float)e + 1e-4f; v[e] = -3.3333f * (float)e; }
    kv_seq_store(&s, 1, 0, k, v);
    kv_seq_advance(&s, 1);
    const uint16_t *vr = kv_seq_v_row(&s, 1, 0);
    for (int e = 0; e < W; e++) {
        assert_int_equal(*(const uint16_t *)kv_seq_k_elem(&s, 1, 0, e), f32_to_fp16(k[e]));
        assert_int_equal(vr[e], f32_to_fp16(v[e]));
    }
    kv_seq_free(&s);
    kv_pool_free(&pool);
}

static void test_fork_shares(void **state)
{
    (void)state;
    kv_pool pool;
    make_pool(&pool, 8, KVLM_KV_F32, true);
    shadow a, b;
    kvlm_token t[40];
    sh_init(&a, &pool, 1, 0);
    assert_int_equal(sh_append(&a, seq_tokens(t, 20, 100), 20), KVLM_OK);
    b = a;   /* the shadow's tokens and history */
    kv_seq_init(&b.s, &pool);
    assert_int_equal(kv_seq_fork(&b.s, &a.s, NULL, 0), KVLM_OK);
    assert_int_equal(b.s.n_pos, 20);
    assert_int_equal(b.s.n_blocks, 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(b.s.blocks[i], a.s.blocks[i]);
        assert_int_equal(kv_pool_refcount(&pool, a.s.blocks[i]), 2);
    }
    assert_int_equal(pool.stats.n_in_use, 2);   /* no bytes copied, no block taken */
    assert_int_equal(pool.stats.copies, 0);
    assert_int_equal(kv_seq_fork(&b.s, &a.s, NULL, 0), KVLM_ERR_INVALID);   /* not empty */
    sh_free(&a);
    assert_int_equal(kv_pool_refcount(&pool, b.s.blocks[0]), 1);
    sh_check_rows(&b);
    sh_free(&b);
    assert_int_equal(pool.stats.n_free, 8);
    check_pool(&pool);
    kv_pool_free(&pool);
}

static void test_cow_copies_exactly(void **state)
{
    (void)state;
    kv_pool pool;
    make_pool(&pool, 8, KVLM_KV_F16, true);
    shadow a, b;
    kvlm_token t[40];
    sh_init(&a, &pool, 1, 0);
    assert_int_equal(sh_append(&a, seq_tokens(t, 20, 100), 20), KVLM_OK);
    b = a;
    kv_seq_init(&b.s, &pool);
    assert_int_equal(kv_seq_fork(&b.s, &a.s, NULL, 0), KVLM_OK);
    const kv_block shared = a.s.blocks[1];
    assert_int_equal(kv_seq_reserve(&b.s, 1, NULL, 0), KVLM_OK);   /* position 20: in the shared block */
    assert_int_not_equal(b.s.blocks[1], shared);
    assert_int_equal(a.s.blocks[1], shared);
    assert_int_equal(b.s.blocks[0], a.s.blocks[0]);                 /* full block: still shared */
    assert_int_equal(kv_pool_refcount(&pool, a.s.blocks[0]), 2);
    assert_int_equal(kv_pool_refcount(&pool, shared), 1);
    assert_int_equal(pool.stats.copies, 1);
    assert_memory_equal(kv_pool_k(&pool, b.s.blocks[1], 0), kv_pool_k(&pool, shared, 0), pool.block_bytes);
    assert_int_equal(kv_seq_reserve(&b.s, 1, NULL, 0), KVLM_OK);   /* idempotent: no second copy */
    assert_int_equal(pool.stats.copies, 1);
    /* diverge: b writes other tokens at 20..23, a continues with its own */
    assert_int_equal(sh_append(&b, seq_tokens(t, 4, 900), 4), KVLM_OK);
    assert_int_equal(sh_append(&a, seq_tokens(t, 4, 500), 4), KVLM_OK);
    assert_int_equal(pool.stats.copies, 1);   /* a holds its block alone now: no copy */
    sh_check_rows(&a);
    sh_check_rows(&b);
    sh_free(&a);
    sh_free(&b);
    check_pool(&pool);
    assert_int_equal(pool.stats.n_in_use, 0);
    kv_pool_free(&pool);
}

static void test_truncate_frees(void **state)
{
    (void)state;
    kv_pool pool;
    make_pool(&pool, 8, KVLM_KV_F32, true);
    shadow a;
    kvlm_token t[64];
    sh_init(&a, &pool, 1, 0);
    assert_int_equal(sh_append(&a, seq_tokens(t, 50, 7), 50), KVLM_OK);
    assert_int_equal(kv_seq_reserve(&a.s, 20, NULL, 0), KVLM_OK);   /* reserved to 70: 5 blocks */
    assert_int_equal(a.s.n_blocks, 5);
    kv_seq_truncate(&a.s, 60);   /* beyond n_pos: positions kept, reservation dropped */
    assert_int_equal(a.s.n_pos, 50);
    assert_int_equal(a.s.n_blocks, 4);
    kv_seq_truncate(&a.s, 20);
    assert_int_equal(a.s.n_pos, 20);
    assert_int_equal(a.s.n_blocks, 2);
    assert_int_equal(pool.stats.n_free, 6);
    sh_check_rows(&a);
    kv_seq_truncate(&a.s, 16);
    assert_int_equal(a.s.n_blocks, 1);
    /* regrow with other tokens: rows after the cut are the new ones */
    assert_int_equal(sh_append(&a, seq_tokens(t, 10, 300), 10), KVLM_OK);
    sh_check_rows(&a);
    kv_seq_truncate(&a.s, 0);
    assert_int_equal(a.s.n_blocks, 0);
    assert_int_equal(pool.stats.n_free, 8);
    sh_free(&a);
    check_pool(&pool);
    kv_pool_free(&pool);
}

static void test_publish_lookup_lru(void **state)
{
    (void)state;
    kv_pool pool;
    make_pool(&pool, 8, KVLM_KV_F32, true);
    shadow a, b;
    kvlm_token t[40];
    seq_tokens(t, 40, 1000);
    sh_init(&a, &pool, 5, 9);
    assert_int_equal(sh_append(&a, t, 40), KVLM_OK);
    assert_int_equal(kv_seq_publish(&a.s, t, 40, 5, 9, NULL, 0), KVLM_OK);
    assert_int_equal(a.s.n_published, 2);
    assert_true(kv_pool_is_published(&pool, a.s.blocks[0]));
    assert_true(kv_pool_is_published(&pool, a.s.blocks[1]));
    assert_false(kv_pool_is_published(&pool, a.s.blocks[2]));   /* partial: never */
    const kv_block b0 = a.s.blocks[0], b1 = a.s.blocks[1];
    sh_free(&a);
    assert_int_equal(pool.stats.n_cached, 2);
    assert_int_equal(pool.stats.n_free, 6);
    assert_int_equal(pool.lru_head, b1);   /* released tail first: the tail is the oldest */
    assert_int_equal(pool.lru_tail, b0);
    check_pool(&pool);

    const int64_t cases[][2] = { { 40, 32 }, { 33, 32 }, { 32, 16 }, { 17, 16 }, { 16, 0 }, { 1, 0 }, { 0, 0 } };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        sh_init(&b, &pool, 5, 9);
        int64_t reused = -1;
        const int64_t hits0 = pool.stats.hits;
        assert_int_equal(kv_seq_attach_prefix(&b.s, t, cases[c][0], 5, 9, &reused, NULL, 0), KVLM_OK);
        assert_int_equal(reused, cases[c][1]);
        assert_int_equal(pool.stats.hits - hits0, reused / 16);
        if (reused > 0) assert_int_equal(b.s.blocks[0], b0);
        if (reused > 16) assert_int_equal(b.s.blocks[1], b1);
        sh_adopt(&b, t, reused);
        sh_check_rows(&b);
        assert_int_equal(pool.stats.n_cached, 2 - reused / 16);
        sh_free(&b);
        check_pool(&pool);
    }
    /* attach needs an empty sequence */
    sh_init(&b, &pool, 5, 9);
    assert_int_equal(sh_append(&b, t, 1), KVLM_OK);
    int64_t reused;
    assert_int_equal(kv_seq_attach_prefix(&b.s, t, 40, 5, 9, &reused, NULL, 0), KVLM_ERR_INVALID);
    sh_free(&b);
    kv_pool_free(&pool);
}

static void test_truncate_into_published_block_cows(void **state)
{
    (void)state;
    kv_pool pool;
    make_pool(&pool, 8, KVLM_KV_F32, true);
    shadow a, b;
    kvlm_token t[48];
    seq_tokens(t, 48, 50);
    sh_init(&a, &pool, 1, 1);
    assert_int_equal(sh_append(&a, t, 32), KVLM_OK);
    assert_int_equal(kv_seq_publish(&a.s, t, 32, 1, 1, NULL, 0), KVLM_OK);
    const kv_block old = a.s.blocks[1];
    kv_seq_truncate(&a.s, 20);   /* keeps part of the published block 1 */
    assert_int_equal(a.s.n_published, 1);
    kvlm_token other[4] = { 7, 7, 7, 7 };
    assert_int_equal(sh_append(&a, other, 4), KVLM_OK);   /* must not write into the published block */
    assert_int_not_equal(a.s.blocks[1], old);
    assert_int_equal(state_of(&pool, old), KV_BLOCK_CACHED);   /* still findable */
    sh_check_rows(&a);
    sh_init(&b, &pool, 1, 1);
    int64_t reused;
    assert_int_equal(kv_seq_attach_prefix(&b.s, t, 48, 1, 1, &reused, NULL, 0), KVLM_OK);
    assert_int_equal(reused, 32);
    assert_int_equal(b.s.blocks[1], old);
    sh_adopt(&b, t, reused);
    sh_check_rows(&b);
    sh_free(&a);
    sh_free(&b);
    check_pool(&pool);
    kv_pool_free(&pool);
}

/* A one-block sequence of 16 tokens starting at base, published, then freed. */
static kv_block cached_block(kv_pool *pool, kvlm_token base, uint64_t ns)
{
    shadow s;
    kvlm_token t[16];
    sh_init(&s, pool, 1, ns);
    assert_int_equal(sh_append(&s, seq_tokens(t, 16, base), 16), KVLM_OK);
    assert_int_equal(kv_seq_publish(&s.s, t, 16, 1, ns, NULL, 0), KVLM_OK);
    kv_block b = s.s.blocks[0];
    sh_free(&s);
    assert_int_equal(state_of(pool, b), KV_BLOCK_CACHED);
    return b;
}

static void test_eviction_order(void **state)
{
    (void)state;
    kv_pool pool;
    make_pool(&pool, 3, KVLM_KV_F32, true);
    const kv_block x = cached_block(&pool, 100, 0);
    const kv_block y = cached_block(&pool, 200, 0);
    const kv_block z = cached_block(&pool, 300, 0);
    assert_int_equal(pool.stats.n_cached, 3);
    assert_int_equal(pool.stats.n_free, 0);
    /* touch x: a hit moves it to the newest end, so the order is y, z, x */
    kv_link link;
    kvlm_token t[16];
    kv_pool_link(&link, KV_BLOCK_NONE, 0, seq_tokens(t, 16, 100), 1, 0);
    assert_int_equal(kv_pool_lookup(&pool, &link), x);
    kv_pool_unref(&pool, x);
    kv_block got[3];
    for (int i = 0; i < 3; i++) assert_int_equal(kv_pool_alloc(&pool, &got[i], NULL, 0), KVLM_OK);
    assert_int_equal(got[0], y);
    assert_int_equal(got[1], z);
    assert_int_equal(got[2], x);
    assert_int_equal(pool.stats.evictions, 3);
    assert_int_equal(kv_pool_lookup(&pool, &link), KV_BLOCK_NONE);   /* evicted: gone from the index */
    char err[128] = "";
    kv_block none;
    assert_int_equal(kv_pool_alloc(&pool, &none, err, sizeof err), KVLM_ERR_BUDGET);
    assert_int_equal(none, KV_BLOCK_NONE);
    assert_non_null(strstr(err, "exhausted"));
    for (int i = 0; i < 3; i++) kv_pool_unref(&pool, got[i]);
    check_pool(&pool);
    kv_pool_free(&pool);
}

/* A published chain p -> c of two blocks built by hand from t[0, 32), both IN_USE. */
static void hand_chain(kv_pool *pool, const kvlm_token *t, uint64_t fp, uint64_t ns,
                       kv_block *p, kv_block *c, kv_link *lp, kv_link *lc)
{
    assert_int_equal(kv_pool_alloc(pool, p, NULL, 0), KVLM_OK);
    assert_int_equal(kv_pool_alloc(pool, c, NULL, 0), KVLM_OK);
    kv_pool_link(lp, KV_BLOCK_NONE, 0, t, fp, ns);
    kv_pool_link(lc, *p, lp->key, t + 16, fp, ns);
    assert_int_equal(kv_pool_publish(pool, *p, lp), *p);
    assert_int_equal(kv_pool_publish(pool, *c, lc), *c);
}

/* A parent is pinned by its cached child even when the parent is older. */
static void test_eviction_skips_pinned_parent(void **state)
{
    (void)state;
    kv_pool pool;
    make_pool(&pool, 2, KVLM_KV_F32, false);
    kvlm_token t[32];
    seq_tokens(t, 32, 40);
    kv_block p, c;
    kv_link lp, lc;
    hand_chain(&pool, t, 1, 0, &p, &c, &lp, &lc);
    kv_block_info info;
    kv_pool_block_info(&pool, p, &info);
    assert_int_equal(info.n_child, 1);
    kv_pool_unref(&pool, p);   /* parent first: it is the oldest on the LRU */
    kv_pool_unref(&pool, c);
    assert_int_equal(pool.lru_head, p);
    kv_block got;
    assert_int_equal(kv_pool_alloc(&pool, &got, NULL, 0), KVLM_OK);
    assert_int_equal(got, c);   /* the child goes first */
    kv_pool_block_info(&pool, p, &info);
    assert_int_equal(info.n_child, 0);
    assert_int_equal(info.state, KV_BLOCK_CACHED);
    kv_pool_unref(&pool, got);
    check_pool(&pool);
    kv_pool_free(&pool);
}

static void test_budget_exhaustion(void **state)
{
    (void)state;
    kv_pool pool;
    make_pool(&pool, 3, KVLM_KV_F32, true);
    shadow a, b;
    kvlm_token t[64];
    seq_tokens(t, 64, 3);
    sh_init(&a, &pool, 1, 0);
    sh_init(&b, &pool, 1, 0);
    assert_int_equal(sh_append(&a, t, 40), KVLM_OK);   /* 3 blocks */
    char err[256] = "";
    const kv_pool_stats before = pool.stats;
    assert_int_equal(kv_seq_reserve(&b.s, 1, err, sizeof err), KVLM_ERR_BUDGET);
    assert_non_null(strstr(err, "exhausted"));
    assert_int_equal(b.s.n_blocks, 0);
    assert_int_equal(kv_seq_reserve(&a.s, 9, NULL, 0), KVLM_ERR_BUDGET);   /* 40 + 9 > 48 */
    assert_int_equal(a.s.n_blocks, 3);
    assert_int_equal(a.s.n_pos, 40);
    assert_memory_equal(&before, &pool.stats, sizeof before);
    assert_int_equal(kv_seq_reserve(&a.s, 8, NULL, 0), KVLM_OK);   /* fits the last block */
    sh_check_rows(&a);

    /* copy-on-write needs a block too: a fork cannot write into the shared partial block */
    kv_seq_truncate(&a.s, 20);   /* 2 blocks, 1 free */
    assert_int_equal(kv_seq_fork(&b.s, &a.s, NULL, 0), KVLM_OK);
    assert_int_equal(kv_seq_reserve(&b.s, 13, NULL, 0), KVLM_ERR_BUDGET);   /* copy + 1 new */
    assert_int_equal(b.s.blocks[1], a.s.blocks[1]);
    assert_int_equal(kv_pool_refcount(&pool, a.s.blocks[1]), 2);
    assert_int_equal(pool.stats.n_free, 1);
    kv_seq_truncate(&b.s, 0);

    /* cached blocks count as supply, but are not evicted for a request that cannot fit */
    assert_int_equal(sh_append(&a, t + 20, 28), KVLM_OK);   /* a: 48 tokens, 3 full blocks */
    assert_int_equal(kv_seq_publish(&a.s, t, 48, 1, 0, NULL, 0), KVLM_OK);
    sh_free(&a);
    assert_int_equal(pool.stats.n_cached, 3);
    assert_int_equal(kv_seq_reserve(&b.s, 49, NULL, 0), KVLM_ERR_BUDGET);
    assert_int_equal(pool.stats.n_cached, 3);
    assert_int_equal(pool.stats.evictions, 0);
    assert_int_equal(kv_seq_reserve(&b.s, 48, NULL, 0), KVLM_OK);
    assert_int_equal(pool.stats.evictions, 3);
    sh_free(&b);
    check_pool(&pool);
    kv_pool_free(&pool);
}

static void test_poison(void **state)
{
    (void)state;
    const kvlm_kv_type types[] = { KVLM_KV_F32, KVLM_KV_F16 };
    for (int ti = 0; ti < 2; ti++) {
        kv_pool pool;
        make_pool(&pool, 1, types[ti], true);
        shadow a;
        kvlm_token t[16];
        sh_init(&a, &pool, 1, 0);
        assert_true(block_all_nan(&pool, 0));   /* never written: NaN from the start */
        assert_int_equal(sh_append(&a, seq_tokens(t, 16, 1), 16), KVLM_OK);
        assert_false(block_all_nan(&pool, 0));
        sh_free(&a);                             /* unpublished: freed, poisoned */
        assert_true(block_all_nan(&pool, 0));
        sh_init(&a, &pool, 1, 0);
        assert_int_equal(sh_append(&a, t, 16), KVLM_OK);
        assert_int_equal(kv_seq_publish(&a.s, t, 16, 1, 0, NULL, 0), KVLM_OK);
        sh_free(&a);                             /* published: cached, bytes kept */
        assert_false(block_all_nan(&pool, 0));
        kv_block b;
        assert_int_equal(kv_pool_alloc(&pool, &b, NULL, 0), KVLM_OK);   /* evicts it */
        assert_int_equal(b, 0);
        assert_true(block_all_nan(&pool, 0));
        kv_pool_unref(&pool, b);
        kv_pool_free(&pool);
    }
}

/* A link that claims a published key but differs in one field never hits. */
static void test_hash_verification(void **state)
{
    (void)state;
    kv_pool pool;
    make_pool(&pool, 4, KVLM_KV_F32, false);
    kvlm_token t[32];
    seq_tokens(t, 32, 10);
    kv_block p, c;
    kv_link lp, lc;
    hand_chain(&pool, t, 77, 5, &p, &c, &lp, &lc);

    kv_link forged = lc;   /* same key, different content */
    forged.tokens[15]++;
    assert_int_equal(kv_pool_lookup(&pool, &forged), KV_BLOCK_NONE);
    forged = lc;
    forged.ns = 6;
    assert_int_equal(kv_pool_lookup(&pool, &forged), KV_BLOCK_NONE);
    forged = lc;
    forged.fingerprint = 78;
    assert_int_equal(kv_pool_lookup(&pool, &forged), KV_BLOCK_NONE);
    forged = lc;
    forged.parent_key ^= 1;
    assert_int_equal(kv_pool_lookup(&pool, &forged), KV_BLOCK_NONE);
    forged = lc;
    forged.parent = c;   /* right key, wrong parent block */
    assert_int_equal(kv_pool_lookup(&pool, &forged), KV_BLOCK_NONE);
    /* honest keys differ as well */
    kv_link other;
    kv_pool_link(&other, KV_BLOCK_NONE, 0, t, 77, 6);
    assert_true(other.key != lp.key);
    kv_pool_link(&other, KV_BLOCK_NONE, 0, t, 78, 5);
    assert_true(other.key != lp.key);
    assert_int_equal(pool.stats.hits, 0);
    assert_int_equal(kv_pool_lookup(&pool, &lc), c);
    assert_int_equal(kv_pool_refcount(&pool, c), 2);
    kv_pool_unref(&pool, c);

    /* publishing: a collision is refused, an identical link returns the entry */
    kv_block d;
    assert_int_equal(kv_pool_alloc(&pool, &d, NULL, 0), KVLM_OK);
    forged = lc;
    forged.tokens[0]++;
    assert_int_equal(kv_pool_publish(&pool, d, &forged), KV_BLOCK_NONE);
    assert_false(kv_pool_is_published(&pool, d));
    assert_int_equal(kv_pool_publish(&pool, d, &lc), c);
    assert_int_equal(kv_pool_refcount(&pool, c), 2);
    assert_false(kv_pool_is_published(&pool, d));
    kv_pool_unref(&pool, c);
    kv_pool_unref(&pool, d);
    kv_pool_unref(&pool, c);
    kv_pool_unref(&pool, p);
    check_pool(&pool);
    kv_pool_free(&pool);
}

static void test_attach_respects_namespace_and_fingerprint(void **state)
{
    (void)state;
    kv_pool pool;
    make_pool(&pool, 8, KVLM_KV_F32, false);
    shadow a, b;
    kvlm_token t[40];
    seq_tokens(t, 40, 1);
    sh_init(&a, &pool, 11, 22);
    assert_int_equal(sh_append(&a, t, 40), KVLM_OK);
    assert_int_equal(kv_seq_publish(&a.s, t, 40, 11, 22, NULL, 0), KVLM_OK);
    const uint64_t probes[][2] = { { 11, 23 }, { 12, 22 } };
    for (int i = 0; i < 2; i++) {
        sh_init(&b, &pool, probes[i][0], probes[i][1]);
        int64_t reused = -1;
        assert_int_equal(kv_seq_attach_prefix(&b.s, t, 40, probes[i][0], probes[i][1], &reused, NULL, 0), KVLM_OK);
        assert_int_equal(reused, 0);
        sh_free(&b);
    }
    kvlm_token t2[40];
    memcpy(t2, t, sizeof t2);
    t2[20] = 999;   /* differs in block 1: only block 0 is reused */
    sh_init(&b, &pool, 11, 22);
    int64_t reused;
    assert_int_equal(kv_seq_attach_prefix(&b.s, t2, 40, 11, 22, &reused, NULL, 0), KVLM_OK);
    assert_int_equal(reused, 16);
    sh_free(&b);
    /* publish argument checks */
    assert_int_equal(kv_seq_publish(&a.s, t, 41, 11, 22, NULL, 0), KVLM_ERR_INVALID);
    assert_int_equal(kv_seq_publish(&a.s, t, 40, 11, 23, NULL, 0), KVLM_ERR_INVALID);
    assert_int_equal(kv_seq_publish(&a.s, t, 40, 11, 22, NULL, 0), KVLM_OK);   /* already published: no-op */
    sh_free(&a);
    check_pool(&pool);
    kv_pool_free(&pool);
}

/* Two sequences compute the same prefix without sharing: publishing the second
 * adopts the first's blocks and frees its own copies. */
static void test_publish_dedupes(void **state)
{
    (void)state;
    kv_pool pool;
    make_pool(&pool, 8, KVLM_KV_F32, true);
    shadow a, b;
    kvlm_token t[40];
    seq_tokens(t, 40, 60);
    sh_init(&a, &pool, 1, 0);
    sh_init(&b, &pool, 1, 0);
    assert_int_equal(sh_append(&a, t, 40), KVLM_OK);
    assert_int_equal(sh_append(&b, t, 36), KVLM_OK);
    assert_int_equal(pool.stats.n_in_use, 6);
    assert_int_equal(kv_seq_publish(&a.s, t, 40, 1, 0, NULL, 0), KVLM_OK);
    assert_int_equal(kv_seq_publish(&b.s, t, 36, 1, 0, NULL, 0), KVLM_OK);
    assert_int_equal(b.s.blocks[0], a.s.blocks[0]);
    assert_int_equal(b.s.blocks[1], a.s.blocks[1]);
    assert_int_equal(b.s.n_published, 2);
    assert_int_equal(pool.stats.n_in_use, 4);
    sh_check_rows(&b);
    sh_free(&a);
    sh_check_rows(&b);
    sh_free(&b);
    check_pool(&pool);
    kv_pool_free(&pool);
}

/* ---- the randomized model-based test ------------------------------------------------- */

enum { R_SEQS = 8, N_SCRIPTS = 3, VOCAB = 5 };

typedef struct world {
    kv_pool pool;
    shadow seq[R_SEQS];
    kvlm_token script[N_SCRIPTS][MAXP];
    uint64_t rng;
    int32_t *refs;   /* [n_blocks] references counted from the shadow */
    int64_t n_reused, n_budget_fail, n_ops;
} world;

static uint64_t rnd(world *w)   /* xorshift64* */
{
    w->rng ^= w->rng >> 12; w->rng ^= w->rng << 25; w->rng ^= w->rng >> 27;
    return w->rng * 0x2545f4914f6cdd1dull;
}
static int64_t rnd_below(world *w, int64_t n) { return n > 0 ? (int64_t)(rnd(w) % (uint64_t)n) : 0; }

/* A random live sequence (or a free slot when want_free), -1 if none. */
static int pick(world *w, bool want_free)
{
    int start = (int)rnd_below(w, R_SEQS);
    for (int i = 0; i < R_SEQS; i++) {
        int k = (start + i) % R_SEQS;
        if (w->seq[k].live != want_free) return k;
    }
    return -1;
}

/* Mostly the script's next token, sometimes another: prefixes repeat and diverge. */
static kvlm_token next_token(world *w, const shadow *sh, int64_t pos)
{
    return rnd_below(w, 8) ? w->script[sh->script][pos] : (kvlm_token)rnd_below(w, VOCAB);
}

static void new_shadow(world *w, shadow *sh)
{
    sh_init(sh, &w->pool, 1 + (uint64_t)rnd_below(w, 2), (uint64_t)rnd_below(w, 2));
    sh->script = (int)rnd_below(w, N_SCRIPTS);
}

/* Appends up to n tokens; sometimes reserves more than it commits. A budget
 * failure must leave the sequence and the pool untouched. */
static void op_append(world *w, shadow *sh, int64_t n)
{
    if (sh->s.n_pos + n > MAXP) n = MAXP - sh->s.n_pos;
    if (n <= 0) return;
    kvlm_token t[MAXP];
    for (int64_t i = 0; i < n; i++) t[i] = next_token(w, sh, sh->s.n_pos + i);
    const int64_t extra = rnd_below(w, 2) ? rnd_below(w, 20) : 0;
    const kv_seq before = sh->s;
    kv_block blocks[MAXP / KV_BLOCK_TOKENS + 2];
    for (int64_t i = 0; i < before.n_blocks; i++) blocks[i] = before.blocks[i];
    const kv_pool_stats st = w->pool.stats;
    kvlm_err rc = kv_seq_reserve(&sh->s, n + extra, NULL, 0);
    if (rc == KVLM_OK) rc = sh_append(sh, t, n);   /* the second reserve is within the first */
    if (rc != KVLM_OK) {
        assert_int_equal(rc, KVLM_ERR_BUDGET);
        assert_int_equal(sh->s.n_pos, before.n_pos);
        assert_int_equal(sh->s.n_blocks, before.n_blocks);
        for (int64_t i = 0; i < before.n_blocks; i++) assert_int_equal(blocks[i], sh->s.blocks[i]);
        assert_int_equal(st.n_free, w->pool.stats.n_free);
        assert_int_equal(st.n_cached, w->pool.stats.n_cached);
        assert_int_equal(st.evictions, w->pool.stats.evictions);
        w->n_budget_fail++;
    }
}

static void op_fork(world *w)
{
    int src = pick(w, false), dst = pick(w, true);
    if (src < 0 || dst < 0) return;
    shadow *d = &w->seq[dst];
    *d = w->seq[src];   /* shadow tokens and history; the kv_seq is replaced below */
    kv_seq_init(&d->s, &w->pool);
    assert_int_equal(kv_seq_fork(&d->s, &w->seq[src].s, NULL, 0), KVLM_OK);
}

/* A new sequence whose tokens come from a live one (extended), or from a script;
 * attaches what the index holds and computes the rest. */
static void op_attach(world *w)
{
    int dst = pick(w, true);
    if (dst < 0) return;
    kvlm_token t[MAXP];
    int64_t n = 1 + rnd_below(w, MAXP);
    int from = rnd_below(w, 2) ? pick(w, false) : -1;
    shadow *sh = &w->seq[dst];
    new_shadow(w, sh);
    if (from >= 0) {
        const shadow *f = &w->seq[from];
        sh->fp = f->fp;
        sh->ns = f->ns;
        sh->script = f->script;
        memcpy(t, f->tok, (size_t)f->s.n_pos * sizeof *t);
        if (n < f->s.n_pos) n = f->s.n_pos + (f->s.n_pos < MAXP ? 1 : 0);
        if (n < 1) n = 1;
    }
    const int64_t own = from >= 0 ? w->seq[from].s.n_pos : 0;
    for (int64_t p = own; p < n; p++) t[p] = next_token(w, sh, p);
    int64_t reused = -1;
    assert_int_equal(kv_seq_attach_prefix(&sh->s, t, n, sh->fp, sh->ns, &reused, NULL, 0), KVLM_OK);
    const int64_t cap = (n - 1) / KV_BLOCK_TOKENS * KV_BLOCK_TOKENS;
    assert_true(reused % KV_BLOCK_TOKENS == 0 && reused >= 0 && reused <= cap);
    if (from >= 0) {   /* blocks a live sequence published cannot have been evicted */
        int64_t sure = w->seq[from].s.n_published * KV_BLOCK_TOKENS;
        assert_true(reused >= (sure < cap ? sure : cap));
    }
    sh_adopt(sh, t, reused);
    w->n_reused += reused;
    if (sh_append(sh, t + reused, n - reused) != KVLM_OK) w->n_budget_fail++;
}

static void op_publish(world *w, shadow *sh)
{
    const int64_t n = rnd_below(w, 4) ? sh->s.n_pos : rnd_below(w, sh->s.n_pos + 1);
    char err[256] = "";
    if (kv_seq_publish(&sh->s, sh->tok, n, sh->fp, sh->ns, err, sizeof err) != KVLM_OK)
        fail_msg("publish: %s", err);
}

static void random_op(world *w)
{
    const int op = (int)rnd_below(w, 100);
    if (op < 8) {
        int k = pick(w, true);
        if (k >= 0) new_shadow(w, &w->seq[k]);
        return;
    }
    if (op < 20) { op_attach(w); return; }
    if (op < 28) { op_fork(w); return; }
    int k = pick(w, false);
    if (k < 0) return;
    shadow *sh = &w->seq[k];
    if (op < 58) op_append(w, sh, 1 + rnd_below(w, rnd_below(w, 3) ? 4 : 40));
    else if (op < 72) op_publish(w, sh);
    else if (op < 86) kv_seq_truncate(&sh->s, rnd_below(w, sh->s.n_pos + 8));
    else sh_free(sh);
}

/* After every op: rows exact, refcounts = references held, counters add up,
 * published blocks chain to their table predecessors, pool lists consistent. */
static void check_world(world *w)
{
    kv_pool *pool = &w->pool;
    memset(w->refs, 0, (size_t)pool->n_blocks * sizeof *w->refs);
    for (int k = 0; k < R_SEQS; k++) {
        const shadow *sh = &w->seq[k];
        if (!sh->live) continue;
        sh_check_rows(sh);
        for (int64_t i = 0; i < sh->s.n_blocks; i++) {   /* blocks[i]: [n_blocks] */
            kv_block_info info;
            kv_pool_block_info(pool, sh->s.blocks[i], &info);
            w->refs[sh->s.blocks[i]]++;
            if (info.published && i > 0) assert_int_equal(info.link.parent, sh->s.blocks[i - 1]);
            if (i < sh->s.n_published) assert_true(info.published && info.link.key == sh->s.keys[i]);
        }
    }
    for (kv_block b = 0; b < pool->n_blocks; b++) {
        kv_block_info info;
        kv_pool_block_info(pool, b, &info);
        if (info.refcount != w->refs[b])
            fail_msg("op %lld: block %d refcount %d, held %d times", (long long)w->n_ops, b, info.refcount, w->refs[b]);
        assert_true((info.state == KV_BLOCK_IN_USE) == (w->refs[b] > 0));
    }
    const kv_pool_stats *s = &pool->stats;
    assert_int_equal(s->n_free + s->n_cached + s->n_in_use, s->n_blocks);
    check_pool(pool);
}

static void run_world(uint64_t seed, int64_t n_blocks, kvlm_kv_type type, bool poison, int64_t n_ops,
                      int64_t *reused, int64_t *evictions, int64_t *copies, int64_t *budget_fails)
{
    world *w = test_calloc(1, sizeof *w);
    w->rng = seed;
    make_pool(&w->pool, n_blocks, type, poison);
    w->refs = test_calloc((size_t)n_blocks, sizeof *w->refs);
    for (int s = 0; s < N_SCRIPTS; s++)
        for (int p = 0; p < MAXP; p++) w->script[s][p] = (kvlm_token)rnd_below(w, VOCAB);
    for (w->n_ops = 0; w->n_ops < n_ops; w->n_ops++) {
        random_op(w);
        check_world(w);
    }
    for (int k = 0; k < R_SEQS; k++)
        if (w->seq[k].live) sh_free(&w->seq[k]);
    check_world(w);
    assert_int_equal(w->pool.stats.n_in_use, 0);
    assert_int_equal(w->pool.stats.n_free + w->pool.stats.n_cached, n_blocks);
    *reused += w->n_reused;
    *evictions += w->pool.stats.evictions;
    *copies += w->pool.stats.copies;
    *budget_fails += w->n_budget_fail;
    kv_pool_free(&w->pool);
    test_free(w->refs);
    test_free(w);
}

static void test_random_against_shadow(void **state)
{
    (void)state;
    const struct { int64_t n_blocks; kvlm_kv_type type; bool poison; } cfg[] = {
        { 5, KVLM_KV_F32, true },     /* tiny: constant eviction and budget failures */
        { 14, KVLM_KV_F16, true },
        { 40, KVLM_KV_F32, false },
        { 120, KVLM_KV_F16, true },   /* roomy: long-lived cached prefixes */
    };
    int64_t reused = 0, evictions = 0, copies = 0, budget_fails = 0;
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++)
        run_world(0x5eed0000ull + c, cfg[c].n_blocks, cfg[c].type, cfg[c].poison, 5000,
                  &reused, &evictions, &copies, &budget_fails);
    /* the run exercised what it claims to test */
    printf("    random: %lld positions reused, %lld evictions, %lld copies, %lld budget failures\n",
           (long long)reused, (long long)evictions, (long long)copies, (long long)budget_fails);
    assert_true(reused > 1000);
    assert_true(evictions > 100);
    assert_true(copies > 100);
    assert_true(budget_fails > 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_and_sizes),
        cmocka_unit_test(test_row_layout),
        cmocka_unit_test(test_store_f16_rounds_like_kern),
        cmocka_unit_test(test_store_q8),
        cmocka_unit_test(test_store_q4),
        cmocka_unit_test(test_store_kivi),
        cmocka_unit_test(test_kivi_span_sharing),
        cmocka_unit_test(test_fork_shares),
        cmocka_unit_test(test_cow_copies_exactly),
        cmocka_unit_test(test_truncate_frees),
        cmocka_unit_test(test_publish_lookup_lru),
        cmocka_unit_test(test_truncate_into_published_block_cows),
        cmocka_unit_test(test_eviction_order),
        cmocka_unit_test(test_eviction_skips_pinned_parent),
        cmocka_unit_test(test_budget_exhaustion),
        cmocka_unit_test(test_poison),
        cmocka_unit_test(test_hash_verification),
        cmocka_unit_test(test_attach_respects_namespace_and_fingerprint),
        cmocka_unit_test(test_publish_dedupes),
        cmocka_unit_test(test_random_against_shadow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
