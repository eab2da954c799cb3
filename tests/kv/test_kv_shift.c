/* test_kv_shift.c - kv_shift on the real model's K and V, for every K/V type: the
 * moved K against K computed at the new position, V moved byte for byte, the kept
 * positions untouched, shifted blocks never published, in place and copied alike.
 *
 * The reference. The f32 run of the real model (nn/forward over an f32 pool) gives
 * K_p = R(p) k_p, the key of position p as attention sees it. Its pre-RoPE key is
 * k_p = R(-p) K_p and the key at the new position q = p - discard is R(q) k_p, both
 * rotated in double with exact angles p theta^(-2i/d) (RoPE's pairs (2i, 2i+1)): the
 * "K computed at the new position" from the same hidden state, independent of
 * kvlm's float RoPE tables and of rope_shift. Every type's pool is filled from
 * these same f32 rows through the normal store path (kv_seq_store, kv_seq_stage;
 * q8/q4 K and V in the Hadamard basis as forward stores them), shifted with
 * nn/rope_shift, and read back as attention reads it (attn_k_value).
 *
 * Tolerances: an L2 bound per head, derived, not fitted. The stored row was the
 * true one plus e_old (its storage error, measured: the stored row against the
 * reference at p); the shift rotates it by an orthogonal map (H R(delta) H for q8/q4,
 * R(delta) otherwise) and stores it again, adding e_new. So
 *   || shifted_q - ref_q ||_2  <=  ||e_old||_2 + ||e_new||_2 + slack
 * with ||e_new||_2 bounded from what the new position stores, per element:
 *   f16    ulp16(|value|) / 2                        (rounding to nearest)
 *   q8     d / 2 + 64 ulp16(d)                       (round(x / d'), d' the unrounded
 *                                                     scale, |q| <= 127)
 *   q4     |d| + 5 ulp16(d)                          (q4_0 clamps the far side at 15:
 *                                                     a whole step)
 *   kivi   d / 2 + (2^b - 1) ulp16(d) / 2 + ulp16(m) / 2   (codes rounded against the
 *                                                     stored d, m; clamped at both ends)
 * and slack for float arithmetic and float angles:
 *   SLACK_REL * (p + q + discard + 16) * ||K_p||_2,  SLACK_REL = 2^-23 per radian of
 *   position (float angles are exact to ~p 2^-24 rad; two FWHTs and a rotation add
 *   ~1e-6 relative).
 * f32 rows (KIVI's residual group) have e_old = e_new = 0: slack only. A rotation
 * by the wrong delta, a wrong pair layout or a missed Hadamard basis change is off by
 * the size of K itself, hundreds of times these bounds. */
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
#include "core/pool.h"
#include "kern/attn.h"
#include "kern/quant.h"
#include "kv/kv_pool.h"
#include "kv/kv_seq.h"
#include "kv/kv_shift.h"
#include "model/model.h"
#include "nn/forward.h"
#include "nn/ops.h"
#include "nn/rope_shift.h"
#include "util/testutil.h"

enum { N_POS = 470, BT = KV_BLOCK_TOKENS };
#define SLACK_REL (1.0 / 8388608.0)   /* 2^-23 */

static kvlm_model *g_model;
static int64_t g_vocab, g_layer, g_hkv, g_hd, g_ch;
static kvlm_token g_tok[N_POS];
static float *g_k, *g_v;               /* [n_layer][N_POS][n_ch] the f32 run's K and V */

static const char *TEXT =
    "The KV cache keeps the keys and values of every past token, so that each new token only needs "
    "its own query, key and value. When the context is full, a context shift keeps the first tokens, "
    "drops the oldest half of the rest and moves the others down, rotating their keys to the new "
    "positions instead of computing them again. Rotary position embeddings make that possible: the "
    "angle of a pair of channels grows linearly with the position, and rotations compose. ";

static float *krow_true(int64_t il, int64_t p) { return g_k + ((size_t)il * N_POS + (size_t)p) * (size_t)g_ch; }
static float *vrow_true(int64_t il, int64_t p) { return g_v + ((size_t)il * N_POS + (size_t)p) * (size_t)g_ch; }

/* The real model's f32 K and V of N_POS tokens of TEXT (repeated). */
static int setup(void **state)
{
    (void)state;
    if (test_model_load(&g_model, &g_vocab)) return -1;
    if (!g_model) return 0;
    const model_hparams *hp = &g_model->hp;
    g_layer = hp->n_layer, g_hkv = hp->n_head_kv, g_hd = hp->head_dim, g_ch = g_hkv * g_hd;
    char text[8192] = "";
    while (strlen(text) + strlen(TEXT) < sizeof text) strcat(text, TEXT);
    size_t n = 0;
    kvlm_token *all = malloc(4096 * sizeof *all);
    if (!all || kvlm_tokenize(g_model, text, strlen(text), true, false, all, 4096, &n, NULL, 0) || n < N_POS) return -1;
    memcpy(g_tok, all, sizeof g_tok);
    free(all);
    kv_pool fp;
    kv_pool_params pp = { .n_layer = g_layer, .n_head_kv = g_hkv, .head_dim = g_hd, .type_k = KVLM_KV_F32,
                          .type_v = KVLM_KV_F32 };
    pp.budget_bytes = (N_POS / BT + 2) * kv_pool_block_bytes(g_layer, g_hkv, g_hd, KVLM_KV_F32, KVLM_KV_F32);
    forward_state fs;
    pool *thr = NULL;
    kv_seq s;
    float *logits = malloc((size_t)g_vocab * sizeof *logits);
    if (!logits || kv_pool_init(&fp, &pp, NULL, 0) || forward_init(&fs, g_model, N_POS, N_POS, 2, &fp, 1, NULL, 0) ||
        pool_init(&thr, 2, NULL, 0))
        return -1;
    kv_seq_init(&s, &fp);
    if (kv_seq_reserve(&s, N_POS, NULL, 0)) return -1;
    forward_run(&fs, thr, &s, g_tok, N_POS, logits, false);
    g_k = malloc((size_t)g_layer * N_POS * (size_t)g_ch * sizeof *g_k);
    g_v = malloc((size_t)g_layer * N_POS * (size_t)g_ch * sizeof *g_v);
    if (!g_k || !g_v) return -1;
    for (int64_t il = 0; il < g_layer; il++)
        for (int64_t p = 0; p < N_POS; p++) {         /* K [n_ch][16] channel-major, V rows */
            const float *kb = kv_pool_k(&fp, s.blocks[p / BT], il);
            for (int64_t c = 0; c < g_ch; c++) krow_true(il, p)[c] = kb[c * BT + p % BT];
            memcpy(vrow_true(il, p), kv_seq_v_row(&s, il, p), (size_t)g_ch * sizeof(float));
        }
    kv_seq_free(&s);
    forward_free(&fs);
    pool_free(thr);
    kv_pool_free(&fp);
    free(logits);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(g_k);
    free(g_v);
    kvlm_model_free(g_model);
    return 0;
}

/* ---- the reference, in double ------------------------------------------------------ */

/* x: [n_head_kv][head_dim] rotated by pos * theta^(-2i/d) per pair (2i, 2i+1) */
static void rope_double(double *x, double pos)
{
    for (int64_t h = 0; h < g_hkv; h++)
        for (int64_t i = 0; i < g_hd / 2; i++) {
            const double ang = pos * pow((double)g_model->hp.rope_theta, -2.0 * (double)i / (double)g_hd);
            const double c = cos(ang), s = sin(ang), a = x[h * g_hd + 2 * i], b = x[h * g_hd + 2 * i + 1];
            x[h * g_hd + 2 * i] = a * c - b * s;
            x[h * g_hd + 2 * i + 1] = a * s + b * c;
        }
}

/* x <- H x / sqrt(head_dim) per head, H the Sylvester-Hadamard matrix written out:
 * H[i][j] = (-1)^popcount(i & j) (not a fast transform: an independent one) */
static void hadamard_double(double *x)
{
    double y[1024];
    for (int64_t h = 0; h < g_hkv; h++) {
        const double *xh = x + h * g_hd;
        for (int64_t i = 0; i < g_hd; i++) {
            double acc = 0;
            for (int64_t j = 0; j < g_hd; j++) acc += (__builtin_popcountll((unsigned long long)(i & j)) & 1 ? -xh[j] : xh[j]);
            y[i] = acc / sqrt((double)g_hd);
        }
        memcpy(x + h * g_hd, y, (size_t)g_hd * sizeof *y);
    }
}

/* ref: [n_ch] the key of old position p at position q, in the stored basis */
static void reference(double *ref, int64_t il, int64_t p, int64_t q, bool hadamard)
{
    for (int64_t c = 0; c < g_ch; c++) ref[c] = krow_true(il, p)[c];
    rope_double(ref, -(double)p);
    rope_double(ref, (double)q);
    if (hadamard) hadamard_double(ref);
}

/* ---- reading a pool ---------------------------------------------------------------- */

static double ulp16(double x)   /* spacing of f16 values at |x| */
{
    x = fabs(x);
    if (x < 6.103515625e-05) return 5.960464477539063e-08;   /* subnormal: 2^-24 */
    return ldexp(1.0, (int)floor(log2(x)) - 10);
}

/* row: [n_ch] K of position pos of layer il as attention reads it from the pool;
 * bound: [n_ch] each element's storage error bound (the table above), or NULL */
static void read_k(const kv_seq *s, int64_t il, int64_t pos, double *row, double *bound)
{
    const kv_pool *p = s->pool;
    const int64_t span = kv_pool_span(p), b0 = pos / BT / span * span;
    const void *kb[KV_KIVI_SPAN];
    for (int64_t i = 0; i < span && b0 + i < s->n_blocks; i++) kb[i] = kv_pool_k(p, s->blocks[b0 + i], il);
    const int64_t j = pos - b0 * BT, slot = pos % BT;
    for (int64_t c = 0; c < g_ch; c++) {
        row[c] = attn_k_value(kb, g_ch, j, c, (int)p->type_k);
        if (!bound) continue;
        const uint8_t *base = kb[j / BT];
        switch (p->type_k) {
        case KVLM_KV_F16: bound[c] = ulp16(row[c]) / 2; break;
        case KVLM_KV_Q8: case KVLM_KV_Q4: {
            const size_t qbytes = p->type_k == KVLM_KV_Q8 ? (size_t)g_ch * BT : (size_t)g_ch * BT / 2;
            const double d = fabs(fp16_to_f32(((const uint16_t *)(base + qbytes))[(c / KV_Q8_GROUP) * BT + slot]));
            bound[c] = p->type_k == KVLM_KV_Q8 ? d / 2 + 64 * ulp16(d) : d + 5 * ulp16(d);
            break;
        }
        case KVLM_KV_KIVI4: case KVLM_KV_KIVI2: {
            const int bits = attn_kivi_bits((int)p->type_k);
            const int64_t nq = g_ch / KV_KIVI_SPAN;
            const uint8_t *h = kb[c / nq];              /* block c / nq of the span holds channel c's scales */
            const uint16_t *d = (const uint16_t *)(h + (size_t)g_ch * 2 * (size_t)bits), *m = d + nq;
            const double df = fp16_to_f32(d[c % nq]), mf = fp16_to_f32(m[c % nq]);
            bound[c] = df / 2 + ((1 << bits) - 1) * ulp16(df) / 2 + ulp16(mf) / 2 + 1e-6 * fabs(mf);
            break;
        }
        default: bound[c] = 0; break;                  /* f32 */
        }
    }
}

/* The bytes of position slot's V in block b, layer il (row, then its scales), as
 * kv_pool.h and kern/attn.h lay them out; returns the count. */
static size_t v_bytes(const kv_pool *p, kv_block b, int64_t il, int64_t slot, uint8_t *out)
{
    size_t n = 0;
    memcpy(out, kv_pool_v(p, b, il, slot), p->row_bytes);
    n += p->row_bytes;
    const uint16_t *d = (const uint16_t *)kv_pool_v(p, b, il, BT);
    if (p->type_v == KVLM_KV_Q8 || p->type_v == KVLM_KV_Q4)
        for (int64_t g = 0; g < g_ch / KV_Q8_GROUP; g++, n += 2) memcpy(out + n, &d[g * BT + slot], 2);
    if (kv_type_is_kivi(p->type_v)) {
        const int64_t ng = g_ch / ATTN_KIVI_VGROUP;
        for (int64_t g = 0; g < ng; g++, n += 4) {
            memcpy(out + n, &d[slot * ng + g], 2);
            memcpy(out + n + 2, &d[BT * ng + slot * ng + g], 2);
        }
    }
    return n;
}

/* The bytes of position slot's K in block b, layer il (non-KIVI types: its
 * elements, q4 nibbles one per byte, then its scales). */
static size_t k_bytes(const kv_pool *p, kv_block b, int64_t il, int64_t slot, uint8_t *out)
{
    const uint8_t *base = kv_pool_k(p, b, il);
    size_t n = 0;
    const size_t elt = kv_type_bytes(p->type_k);
    for (int64_t c = 0; c < g_ch; c++) {
        if (p->type_k == KVLM_KV_Q4) {
            const uint8_t byte = base[c * (BT / 2) + slot % 8];
            out[n++] = slot < 8 ? byte & 15 : byte >> 4;
        } else {
            memcpy(out + n, base + ((size_t)c * BT + (size_t)slot) * elt, elt);
            n += elt;
        }
    }
    if (p->type_k == KVLM_KV_Q8 || p->type_k == KVLM_KV_Q4) {
        const uint16_t *d = (const uint16_t *)(base + (p->type_k == KVLM_KV_Q8 ? g_ch * BT : g_ch * BT / 2));
        for (int64_t g = 0; g < g_ch / KV_Q8_GROUP; g++, n += 2) memcpy(out + n, &d[g * BT + slot], 2);
    }
    return n;
}

/* ---- filling and shifting ----------------------------------------------------------- */

typedef struct shift_case {
    kvlm_kv_type tk, tv;
    int64_t res;                 /* KIVI residual (0: none) */
} shift_case;

static kv_pool *make_pool(const shift_case *sc, int64_t n_blocks)
{
    kv_pool *p = calloc(1, sizeof *p);
    assert_non_null(p);
    kv_pool_params pp = { .n_layer = g_layer, .n_head_kv = g_hkv, .head_dim = g_hd, .type_k = sc->tk,
                          .type_v = sc->tv, .poison = true, .res_tokens = sc->res };
    pp.budget_bytes = (size_t)n_blocks * kv_pool_block_bytes(g_layer, g_hkv, g_hd, sc->tk, sc->tv);
    char err[256];
    assert_int_equal(kv_pool_init(p, &pp, err, sizeof err), KVLM_OK);
    return p;
}

/* s <- positions [0, N_POS) of the f32 run, stored as forward stores them */
static void fill(kv_seq *s)
{
    const kv_pool *p = s->pool;
    const bool hk = forward_rotates(p->type_k, g_hd), hv = forward_rotates(p->type_v, g_hd);
    assert_int_equal(kv_seq_reserve(s, N_POS, NULL, 0), KVLM_OK);
    float *k = malloc((size_t)N_POS * (size_t)g_ch * sizeof *k), *v = malloc((size_t)N_POS * (size_t)g_ch * sizeof *v);
    float *stage = p->res_tokens ? malloc(kv_seq_stage_floats(p, N_POS) * sizeof *stage) : NULL;
    assert_true(k && v && (!p->res_tokens || stage));
    for (int64_t il = 0; il < g_layer; il++) {
        for (int64_t t = 0; t < N_POS; t++) {         /* k, v: [N_POS][n_ch] */
            memcpy(k + t * g_ch, krow_true(il, t), (size_t)g_ch * sizeof *k);
            memcpy(v + t * g_ch, vrow_true(il, t), (size_t)g_ch * sizeof *v);
            if (hk) ops_hadamard(k + t * g_ch, g_hkv, g_hd);
            if (hv) ops_hadamard(v + t * g_ch, g_hkv, g_hd);
            if (!p->res_tokens) kv_seq_store(s, il, t, k + t * g_ch, v + t * g_ch);
        }
        if (p->res_tokens) kv_seq_stage(s, il, 0, N_POS, k, v, stage);
    }
    kv_seq_advance(s, N_POS);
    free(k);
    free(v);
    free(stage);
}

/* What a test needs from before the shift, per old position and layer. */
typedef struct before {
    uint8_t *vb, *kb;            /* [n_layer][N_POS][row] V and K slot bytes */
    size_t vlen, klen;
    double *eold;                /* [n_layer][N_POS][n_head_kv] ||stored - true||_2 per head */
    float *res;                  /* KIVI: a copy of the residual */
    kv_block *blocks;            /* the table */
    uint8_t *kept;               /* [keep / 16] whole blocks before keep */
} before;

static void snapshot(const kv_seq *s, before *B, int64_t keep)
{
    const kv_pool *p = s->pool;
    const bool hk = forward_rotates(p->type_k, g_hd);
    uint8_t tmp[8192];
    B->vlen = v_bytes(p, s->blocks[0], 0, 0, tmp);
    B->klen = kv_type_is_kivi(p->type_k) ? 0 : k_bytes(p, s->blocks[0], 0, 0, tmp);
    B->vb = malloc((size_t)g_layer * N_POS * B->vlen);
    B->kb = malloc((size_t)g_layer * N_POS * (B->klen ? B->klen : 1));
    B->eold = malloc((size_t)g_layer * N_POS * (size_t)g_hkv * sizeof *B->eold);
    B->blocks = malloc((size_t)s->n_blocks * sizeof *B->blocks);
    assert_true(B->vb && B->kb && B->eold && B->blocks);
    memcpy(B->blocks, s->blocks, (size_t)s->n_blocks * sizeof *B->blocks);
    const size_t kept_bytes = (size_t)(keep / BT) * p->block_bytes;
    B->kept = malloc(kept_bytes ? kept_bytes : 1);
    assert_non_null(B->kept);
    for (int64_t i = 0; i < keep / BT; i++)
        memcpy(B->kept + (size_t)i * p->block_bytes, p->slab + (size_t)s->blocks[i] * p->block_bytes, p->block_bytes);
    B->res = NULL;
    if (s->res) {
        const size_t nf = (size_t)g_layer * (size_t)(p->res_tokens / BT) * kv_seq_stage_block_floats(p);
        B->res = malloc(nf * sizeof *B->res);
        memcpy(B->res, s->res, nf * sizeof *B->res);
    }
    double row[1024], ref[1024];
    const int64_t gs = p->res_tokens ? kv_seq_group_start(p, N_POS) : N_POS;
    for (int64_t il = 0; il < g_layer; il++)
        for (int64_t t = 0; t < N_POS; t++) {
            const size_t at = (size_t)il * N_POS + (size_t)t;
            v_bytes(p, s->blocks[t / BT], il, t % BT, B->vb + at * B->vlen);
            if (B->klen) k_bytes(p, s->blocks[t / BT], il, t % BT, B->kb + at * B->klen);
            if (t < gs) read_k(s, il, t, row, NULL);
            else                                      /* the residual group: f32, exact */
                for (int64_t c = 0; c < g_ch; c++) row[c] = hk ? NAN : krow_true(il, t)[c];
            reference(ref, il, t, t, hk);
            for (int64_t h = 0; h < g_hkv; h++) {
                double e2 = 0;
                for (int64_t i = 0; i < g_hd; i++) e2 += (row[h * g_hd + i] - ref[h * g_hd + i]) * (row[h * g_hd + i] - ref[h * g_hd + i]);
                B->eold[at * (size_t)g_hkv + (size_t)h] = t < gs ? sqrt(e2) : 0.0;
            }
        }
}

static void before_free(before *B)
{
    free(B->vb);
    free(B->kb);
    free(B->eold);
    free(B->res);
    free(B->blocks);
    free(B->kept);
}

/* ---- the checks ----------------------------------------------------------------------- */

/* Every moved position's K against the reference (the bound of the file comment), V
 * bytes equal to the old position's, the kept positions' bytes untouched. Returns the
 * largest ||diff|| / bound seen. */
static double check_shifted(const kv_seq *s, const before *B, int64_t keep, int64_t discard, const char *label)
{
    const kv_pool *p = s->pool;
    const bool hk = forward_rotates(p->type_k, g_hd);
    const int64_t n_new = N_POS - discard, gs = p->res_tokens ? kv_seq_group_start(p, n_new) : n_new;
    const int64_t complete = kv_type_is_kivi(p->type_k) ? n_new / 64 * 64 : n_new;   /* KIVI K: whole spans in the pool */
    assert_int_equal(s->n_pos, n_new);
    for (int64_t i = 0; i < keep / BT; i++) {        /* the kept full blocks: the same ids, the same bytes */
        assert_int_equal(s->blocks[i], B->blocks[i]);
        if (memcmp(p->slab + (size_t)s->blocks[i] * p->block_bytes, B->kept + (size_t)i * p->block_bytes,
                   p->block_bytes))
            fail_msg("%s: kept block %lld changed", label, (long long)i);
    }
    double row[1024], bound[1024], ref[1024], worst = 0;
    uint8_t got[8192];
    for (int64_t il = 0; il < g_layer; il++)
        for (int64_t q = 0; q < n_new; q++) {
            const int64_t pold = q < keep ? q : q + discard;
            const size_t at = (size_t)il * N_POS + (size_t)pold;
            /* V: byte for byte (a KIVI V block is in the pool once full) */
            const bool v_in_pool = !kv_type_is_kivi(p->type_v) || q / BT * BT + BT <= n_new;
            if (v_in_pool) {
                v_bytes(p, s->blocks[q / BT], il, q % BT, got);
                if (memcmp(got, B->vb + at * B->vlen, B->vlen))
                    fail_msg("%s: V of layer %lld, position %lld (from %lld) changed", label, (long long)il,
                             (long long)q, (long long)pold);
            }
            if (q < keep) {                           /* kept: untouched */
                if (B->klen) {
                    k_bytes(p, s->blocks[q / BT], il, q % BT, got);
                    if (memcmp(got, B->kb + at * B->klen, B->klen))
                        fail_msg("%s: K of kept position %lld, layer %lld changed", label, (long long)q, (long long)il);
                }
                continue;
            }
            reference(ref, il, pold, q, hk);
            const double slack = SLACK_REL * (double)(pold + q + discard + 16);
            /* the pool's copy: what attention reads once the group is left */
            if (q < complete) {
                read_k(s, il, q, row, bound);
                for (int64_t h = 0; h < g_hkv; h++) {
                    double d2 = 0, b2 = 0, k2 = 0;
                    for (int64_t i = h * g_hd; i < (h + 1) * g_hd; i++) {
                        d2 += (row[i] - ref[i]) * (row[i] - ref[i]);
                        b2 += bound[i] * bound[i];
                        k2 += ref[i] * ref[i];
                    }
                    const double lim = B->eold[at * (size_t)g_hkv + (size_t)h] + sqrt(b2) + slack * sqrt(k2);
                    if (!(sqrt(d2) <= lim))
                        fail_msg("%s: K of layer %lld head %lld at %lld (from %lld): |diff| %.6g > bound %.6g", label,
                                 (long long)il, (long long)h, (long long)q, (long long)pold, sqrt(d2), lim);
                    if (sqrt(d2) / lim > worst) worst = sqrt(d2) / lim;
                }
            }
            /* KIVI: the current group in the f32 residual, and its V rows moved as they were */
            if (q >= gs) {
                const float *blk = s->res + ((size_t)il * (size_t)(p->res_tokens / BT) + (size_t)((q - gs) / BT)) *
                                   kv_seq_stage_block_floats(p);
                const float *oblk = B->res + ((size_t)il * (size_t)(p->res_tokens / BT) + (size_t)((q - gs) / BT)) *
                                    kv_seq_stage_block_floats(p);
                if (memcmp(blk + g_ch * BT + (q % BT) * g_ch, oblk + g_ch * BT + (q % BT) * g_ch,
                           (size_t)g_ch * sizeof(float)))
                    fail_msg("%s: residual V of layer %lld position %lld changed", label, (long long)il, (long long)q);
                for (int64_t h = 0; h < g_hkv; h++) {
                    double d2 = 0, k2 = 0;
                    for (int64_t i = h * g_hd; i < (h + 1) * g_hd; i++) {
                        const double x = blk[i * BT + q % BT];
                        d2 += (x - ref[i]) * (x - ref[i]);
                        k2 += ref[i] * ref[i];
                    }
                    if (!(sqrt(d2) <= slack * sqrt(k2)))
                        fail_msg("%s: residual K of layer %lld head %lld at %lld: |diff| %.6g > %.6g", label,
                                 (long long)il, (long long)h, (long long)q, sqrt(d2), slack * sqrt(k2));
                }
            }
        }
    return worst;
}

/* One type: a published sequence and an unpublished one (same rows) are shifted;
 * both must pass check_shifted and hold the same bytes. */
static void run_case(const shift_case *sc)
{
    if (!g_model) skip();
    char label[64], err[256];
    snprintf(label, sizeof label, "%s/%s", kvlm_kv_type_name(sc->tk), kvlm_kv_type_name(sc->tv));
    const int64_t nb = (N_POS + BT - 1) / BT;
    kv_pool *p = make_pool(sc, 2 * nb + KV_KIVI_SPAN);
    kv_seq a, b;                                     /* a published, b not */
    kv_seq_init(&a, p);
    kv_seq_init(&b, p);
    fill(&a);
    fill(&b);
    assert_int_equal(kv_seq_publish(&a, g_tok, N_POS, 7, 0, err, sizeof err), KVLM_OK);
    assert_int_equal(a.n_published, (N_POS / BT) / kv_pool_span(p) * kv_pool_span(p));
    int64_t keep, discard;
    assert_int_equal(kv_shift_plan(p, N_POS, 4, &keep, &discard, err, sizeof err), KVLM_OK);
    before Ba, Bb;
    snapshot(&a, &Ba, keep);
    snapshot(&b, &Bb, keep);
    rope_shift rs;
    rope_shift_init(&rs, g_model, sc->tk);
    assert_int_equal(kv_shift(&a, keep, discard, rope_shift_k, &rs, err, sizeof err), KVLM_OK);
    assert_int_equal(kv_shift(&b, keep, discard, rope_shift_k, &rs, err, sizeof err), KVLM_OK);
    assert_int_equal(kv_pool_check(p, err, sizeof err), KVLM_OK);
    const double wa = check_shifted(&a, &Ba, keep, discard, label);
    check_shifted(&b, &Bb, keep, discard, label);
    /* in place (b) and through copies (a): the same values and bytes */
    const int64_t complete = kv_type_is_kivi(p->type_k) ? a.n_pos / 64 * 64 : a.n_pos;
    uint8_t va[8192], vb[8192];
    for (int64_t il = 0; il < g_layer; il++)
        for (int64_t q = 0; q < complete; q++) {
            double ra[1024], rb[1024];
            read_k(&a, il, q, ra, NULL);
            read_k(&b, il, q, rb, NULL);
            const size_t n = v_bytes(p, a.blocks[q / BT], il, q % BT, va);
            v_bytes(p, b.blocks[q / BT], il, q % BT, vb);
            if (memcmp(ra, rb, (size_t)g_ch * sizeof *ra) || (q / BT * BT + BT <= a.n_pos && memcmp(va, vb, n)))
                fail_msg("%s: position %lld of layer %lld differs between the published and the private sequence",
                         label, (long long)q, (long long)il);
        }
    /* published: the kept full blocks, the same ids; nothing shifted, ever */
    const int64_t kb = keep / BT;
    assert_true(a.no_publish && b.no_publish);
    assert_true(a.n_published <= kb && a.n_keyed <= kb);
    for (int64_t i = 0; i < a.n_blocks; i++) {
        if (i < kb) {
            assert_int_equal(a.blocks[i], Ba.blocks[i]);
            assert_true(kv_pool_is_published(p, a.blocks[i]));
        } else {
            assert_false(kv_pool_is_published(p, a.blocks[i]));
            assert_int_equal(kv_pool_refcount(p, a.blocks[i]), 1);
        }
        assert_false(kv_pool_is_published(p, b.blocks[i]));
    }
    kvlm_token fake[N_POS];
    memcpy(fake, g_tok, sizeof fake);
    assert_int_equal(kv_seq_publish(&a, fake, a.n_pos, 7, 0, err, sizeof err), KVLM_OK);
    for (int64_t i = kb; i < a.n_blocks; i++) assert_false(kv_pool_is_published(p, a.blocks[i]));
    print_message("%-12s keep %lld, drop %lld: worst |diff| / bound %.3f\n", label, (long long)keep,
                  (long long)discard, wa);
    kv_seq_free(&a);
    kv_seq_free(&b);
    assert_int_equal(kv_pool_check(p, err, sizeof err), KVLM_OK);
    before_free(&Ba);
    before_free(&Bb);
    kv_pool_free(p);
    free(p);
}

static void test_f16(void **state) { (void)state; run_case(&(shift_case){ KVLM_KV_F16, KVLM_KV_F16, 0 }); }
static void test_f32(void **state) { (void)state; run_case(&(shift_case){ KVLM_KV_F32, KVLM_KV_F32, 0 }); }
static void test_q8(void **state) { (void)state; run_case(&(shift_case){ KVLM_KV_Q8, KVLM_KV_Q8, 0 }); }
static void test_q4(void **state) { (void)state; run_case(&(shift_case){ KVLM_KV_Q4, KVLM_KV_Q4, 0 }); }
static void test_kivi4(void **state) { (void)state; run_case(&(shift_case){ KVLM_KV_KIVI4, KVLM_KV_KIVI4, 128 }); }
static void test_kivi2(void **state) { (void)state; run_case(&(shift_case){ KVLM_KV_KIVI2, KVLM_KV_KIVI2, 128 }); }
/* KIVI V with a q8 K: the K of the current group is stored again from the f32 residual */
static void test_q8_kivi4(void **state) { (void)state; run_case(&(shift_case){ KVLM_KV_Q8, KVLM_KV_KIVI4, 64 }); }

/* The plan: llama.cpp's half, in units; too little to drop is an error. */
static void test_plan(void **state)
{
    (void)state;
    kv_pool p = { .res_tokens = 0 };
    int64_t keep, discard;
    assert_int_equal(kv_shift_plan(&p, 64, 4, &keep, &discard, NULL, 0), KVLM_OK);
    assert_int_equal(keep, 4);
    assert_int_equal(discard, 32);                   /* (64 - 4) / 2 = 30 -> 32 */
    assert_int_equal(kv_shift_plan(&p, 512, 0, &keep, &discard, NULL, 0), KVLM_OK);
    assert_int_equal(discard, 256);
    assert_int_equal(kv_shift_plan(&p, 40, 30, &keep, &discard, NULL, 0), KVLM_ERR_CONTEXT_FULL);
    assert_int_equal(kv_shift_plan(&p, 47, 30, &keep, &discard, NULL, 0), KVLM_OK);
    assert_int_equal(discard, 16);                   /* at least one block, at most what follows */
    p.res_tokens = 128;
    assert_int_equal(kv_shift_plan(&p, 512, 4, &keep, &discard, NULL, 0), KVLM_OK);
    assert_int_equal(keep, 128);                     /* KIVI: whole residual groups */
    assert_int_equal(discard, 256);                  /* (512 - 128) / 2 = 192 -> 256 (nearest; ties up) */
    assert_int_equal(kv_shift_plan(&p, 200, 4, &keep, &discard, NULL, 0), KVLM_ERR_CONTEXT_FULL);
}

/* A shift the pool cannot supply leaves the sequence as it was. */
static void test_budget(void **state)
{
    (void)state;
    if (!g_model) skip();
    const shift_case sc = { KVLM_KV_F16, KVLM_KV_F16, 0 };
    const int64_t nb = (N_POS + BT - 1) / BT;
    kv_pool *p = make_pool(&sc, nb);                 /* exactly the sequence: no block to spare */
    kv_seq a, f;
    kv_seq_init(&a, p);
    kv_seq_init(&f, p);
    fill(&a);
    char err[256];
    assert_int_equal(kv_seq_fork(&f, &a, err, sizeof err), KVLM_OK);   /* every block shared: copies needed */
    rope_shift rs;
    rope_shift_init(&rs, g_model, sc.tk);
    kv_block *old = malloc((size_t)a.n_blocks * sizeof *old);
    memcpy(old, a.blocks, (size_t)a.n_blocks * sizeof *old);
    assert_int_equal(kv_shift(&a, 4, 240, rope_shift_k, &rs, err, sizeof err), KVLM_ERR_BUDGET);
    assert_int_equal(a.n_pos, N_POS);
    assert_memory_equal(old, a.blocks, (size_t)a.n_blocks * sizeof *old);
    assert_false(a.no_publish);
    assert_int_equal(kv_shift(&a, 4, 24, rope_shift_k, &rs, err, sizeof err), KVLM_ERR_INVALID);   /* not whole blocks */
    kv_seq_free(&f);
    /* alone now: every block is rewritten in place, with no block to spare */
    assert_int_equal(kv_shift(&a, 5, 240, rope_shift_k, &rs, err, sizeof err), KVLM_OK);
    assert_int_equal(kv_pool_check(p, err, sizeof err), KVLM_OK);
    kv_seq_free(&a);
    kv_pool_free(p);
    free(p);
    /* published and alone, one block to spare: each copy comes after its source left */
    p = make_pool(&sc, nb + 1);
    kv_seq_init(&a, p);
    fill(&a);
    assert_int_equal(kv_seq_publish(&a, g_tok, N_POS, 7, 0, err, sizeof err), KVLM_OK);
    assert_int_equal(kv_shift(&a, 4, 240, rope_shift_k, &rs, err, sizeof err), KVLM_OK);
    assert_int_equal(kv_pool_check(p, err, sizeof err), KVLM_OK);
    for (int64_t i = 0; i < a.n_blocks; i++) assert_false(kv_pool_is_published(p, a.blocks[i]));
    free(old);
    kv_seq_free(&a);
    kv_pool_free(p);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_f16),
        cmocka_unit_test(test_f32),
        cmocka_unit_test(test_q8),
        cmocka_unit_test(test_q4),
        cmocka_unit_test(test_kivi4),
        cmocka_unit_test(test_kivi2),
        cmocka_unit_test(test_q8_kivi4),
        cmocka_unit_test(test_budget),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
