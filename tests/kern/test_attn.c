/* test_attn.c - the attention chunk kernels (kern/attn.h).
 *  - every set against a double-precision softmax computed directly over all rows
 *    (independent of chunks, online folding and the kernels' exp), for f32 and
 *    f16, bf16, q8, q4, KIVI4 and KIVI2 rows (and K and V of different types),
 *    head sizes 64, 128, 96 and 80 (q8/q4: multiples of 32, KIVI: the K/V heads'
 *    channels a multiple of 64), groups of 1 to 6 query heads per K/V head, and
 *    row counts that end inside a block, on one, or past one chunk;
 *  - every SIMD set against the scalar set on the same chunks;
 *  - the exactness contract: a chunk's part does not depend on where its blocks
 *    sit in memory, and folding parts as they come equals storing them and
 *    folding later;
 *  - round_f16 bit-exact against f32_to_fp16 (ties, subnormals, overflow, tails);
 *  - attn_for picks the widest set the CPU runs.
 * Room: tests/kern. SIMD sets the CPU lacks are skipped, not failed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>

#include "kern/attn.h"
#include "kern/cpu.h"
#include "kern/quant.h"

enum { MAX_ROWS = 700, MAX_HK = 3, MAX_G = 6, MAX_HD = 128 };

static uint32_t rng = 12345;
static float frand(void)   /* [-1, 1) */
{
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* A synthetic cache laid out like kv_pool's: per block K channel-major
 * [hk * hd][16] and V rows [16][hk * hd], blocks in reversed order with gaps. */
typedef struct cache {
    int64_t hk, hd, n;
    int tk, tv;                 /* T_F32 ... T_KIVI2 (the ATTN_* ids) */
    uint8_t *mem;
    const void *k[MAX_ROWS / ATTN_BLOCK + 1], *v[MAX_ROWS / ATTN_BLOCK + 1];
    double kd[MAX_ROWS][MAX_HK * MAX_HD], vd[MAX_ROWS][MAX_HK * MAX_HD];   /* the values stored, exactly */
} cache;

static cache C;

enum { T_F32 = ATTN_F32, T_F16 = ATTN_F16, T_Q8 = ATTN_Q8, T_Q4 = ATTN_Q4, T_BF16 = ATTN_BF16,
       T_KIVI4 = ATTN_KIVI4, T_KIVI2 = ATTN_KIVI2, N_T = ATTN_KIVI2 + 1 };
static const char *TNAME[] = { "f32", "f16", "q8", "q4", "bf16", "kivi4", "kivi2" };

static int kivi_bits(int t) { return t == T_KIVI4 ? 4 : t == T_KIVI2 ? 2 : 0; }

/* The channels a type can hold: q8/q4 group 32 channels, KIVI's V 64. */
static int type_fits(int t, int64_t n_ch) { return kivi_bits(t) ? n_ch % 64 == 0 : t == T_Q8 || t == T_Q4 ? n_ch % 32 == 0 : 1; }

/* q4 of 32 values as ggml's q4_0 (an independent copy of the rule in kv_seq.c):
 * d = the value of largest magnitude / -8, q = min(15, trunc(x / d + 8.5)) */
static void q4_group(const float *x, uint8_t *q, uint16_t *d, double *back)
{
    float amax = 0.0f, mx = 0.0f;
    for (int i = 0; i < 32; i++)
        if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); mx = x[i]; }
    const float dd = mx / -8.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
    *d = f32_to_fp16(dd);
    for (int i = 0; i < 32; i++) {
        const int v = (int)(x[i] * id + 8.5f);
        q[i] = (uint8_t)(v > 15 ? 15 : v < 0 ? 0 : v);
        back[i] = (double)fp16_to_f32(*d) * (double)(q[i] - 8);
    }
}

/* q8 of 32 values as the cache stores them: d = max|x| / 127 (f16), ints round(x / d) */
static void q8_group(const float *x, int8_t *q, size_t qstride, uint16_t *d, double *back)
{
    float amax = 0.0f;
    for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
    const float dd = amax / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
    *d = f32_to_fp16(dd);
    for (int i = 0; i < 32; i++) {
        q[(size_t)i * qstride] = (int8_t)roundf(x[i] * id);
        back[i] = (double)fp16_to_f32(*d) * (double)q[(size_t)i * qstride];
    }
}

/* KIVI of the n values x[i * xstride] (an independent copy of attn.h's rule):
 * unsigned b-bit codes with d = (max - min) / (2^b - 1) and m = min, both f16,
 * code = the nearest step from the stored m in the stored d, clamped. Code k of
 * the run goes to byte k % span at bits b * (k / span), span = run * b / 8 (run:
 * 16 for a K channel, 32 for a V group); only the n codes' bits are written, so
 * a partial K channel keeps the cache's filler in its unused slots.
 * back[i * xstride] = the element m + d * code, in f32 as attn.h defines it. */
static void kivi_quant(const float *x, size_t xstride, int n, int bits, int run, uint8_t *pack, uint16_t *d,
                       uint16_t *m, double *back)
{
    float lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        lo = fminf(lo, x[(size_t)i * xstride]);
        hi = fmaxf(hi, x[(size_t)i * xstride]);
    }
    const int top = (1 << bits) - 1, span = run * bits / 8;
    *d = f32_to_fp16((hi - lo) / (float)top);
    *m = f32_to_fp16(lo);
    const float df = fp16_to_f32(*d), mf = fp16_to_f32(*m);
    for (int i = 0; i < n; i++) {
        long c = df > 0.0f ? lroundf((x[(size_t)i * xstride] - mf) / df) : 0;
        c = c < 0 ? 0 : c > top ? top : c;
        const int k = i % run, shift = bits * (k / span);
        uint8_t *byte = pack + (i / run) * span + k % span;
        *byte = (uint8_t)((*byte & ~(top << shift)) | (c << shift));
        back[(size_t)i * xstride] = (double)(mf + df * (float)c);
    }
}

/* Bytes of one block's K or V part of type t (attn_part_bytes, written out again). */
static size_t part_size(int t, int64_t n_ch, int is_v)
{
    const size_t n = (size_t)n_ch * ATTN_BLOCK, sc = (size_t)(n_ch / 32) * ATTN_BLOCK * 2;
    if (kivi_bits(t))                                 /* codes, then d and m: K a quarter of its span's channels, V per row and 64 */
        return n * (size_t)kivi_bits(t) / 8 + (is_v ? ATTN_BLOCK * (size_t)(n_ch / 64) * 4 : (size_t)(n_ch / 4) * 4);
    return t == T_F32 ? 4 * n : t == T_F16 || t == T_BF16 ? 2 * n : t == T_Q8 ? n + sc : n / 2 + sc;
}

/* KIVI K of one span of 4 blocks (kb[0..4)) from its first m positions kf
 * [m][MAX_HK * MAX_HD]: per channel over those m positions; block r holds the
 * codes of its 16 slots [n_ch][2b bytes], then d and m of channels
 * [r n_ch / 4, (r + 1) n_ch / 4).   back: [m][MAX_HK * MAX_HD], as kf */
static void put_k_kivi(uint8_t *const *kb, int64_t m, int64_t n_ch, const float (*kf)[MAX_HK * MAX_HD], int bits,
                       double (*back)[MAX_HK * MAX_HD])
{
    const int64_t nq = n_ch / 4, cb = 2 * bits;       /* code bytes of one channel in one block */
    for (int64_t ch = 0; ch < n_ch; ch++) {           /* channel ch: column ch of kf and back */
        uint8_t pack[4 * 8];
        for (int r = 0; r < 4; r++) memcpy(pack + r * cb, kb[r] + ch * cb, (size_t)cb);   /* filler kept past m */
        uint16_t *d = (uint16_t *)(kb[ch / nq] + (size_t)n_ch * (size_t)cb), *mn = d + nq;
        kivi_quant(&kf[0][ch], MAX_HK * MAX_HD, (int)m, bits, ATTN_BLOCK, pack, d + ch % nq, mn + ch % nq, &back[0][ch]);
        for (int r = 0; r < 4; r++) memcpy(kb[r] + ch * cb, pack + r * cb, (size_t)cb);
    }
}

/* KIVI V of row `slot`: per group of 64 channels; codes [16][n_ch * b / 8] (packed
 * per 32 channels), d [16][n_ch / 64], m [16][n_ch / 64] */
static void put_v_kivi(uint8_t *vb, size_t slot, int64_t n_ch, const float *vf, int bits, double *back)
{
    const size_t row = (size_t)n_ch * (size_t)bits / 8, ng = (size_t)n_ch / 64;
    uint16_t *d = (uint16_t *)(vb + ATTN_BLOCK * row), *mn = d + ATTN_BLOCK * ng;
    for (size_t g = 0; g < ng; g++)
        kivi_quant(vf + g * 64, 1, 64, bits, 32, vb + slot * row + g * 64 * (size_t)bits / 8, d + slot * ng + g,
                   mn + slot * ng + g, back + g * 64);
}

static uint16_t half_of(float x, int t) { return t == T_BF16 ? f32_to_bf16(x) : f32_to_fp16(x); }
static double half_back(uint16_t h, int t) { return t == T_BF16 ? bf16_to_f32(h) : fp16_to_f32(h); }

/* position `slot` of one block: K (channel-major) from kf, in type tk */
static void put_k(uint8_t *kb, size_t slot, int64_t n_ch, const float *kf, int tk, double *back)
{
    if (tk == T_Q4) {                                 /* nibbles [n_ch][8] + d [n_ch/32][16] */
        uint16_t *kd = (uint16_t *)(kb + n_ch * ATTN_BLOCK / 2);
        for (int64_t g = 0; g < n_ch / 32; g++) {
            uint8_t qk[32];
            q4_group(kf + g * 32, qk, kd + g * ATTN_BLOCK + slot, back + g * 32);
            for (int i = 0; i < 32; i++) {             /* slot s in byte s % 8 of its channel, high nibble if s >= 8 */
                uint8_t *bk = kb + (size_t)(g * 32 + i) * 8 + slot % 8;
                *bk = slot < 8 ? (uint8_t)((*bk & 0xF0) | qk[i]) : (uint8_t)((*bk & 0x0F) | (qk[i] << 4));
            }
        }
    } else if (tk == T_Q8) {                          /* ints [n_ch][16] + d [n_ch/32][16] */
        uint16_t *kd = (uint16_t *)(kb + n_ch * ATTN_BLOCK);
        for (int64_t g = 0; g < n_ch / 32; g++)
            q8_group(kf + g * 32, (int8_t *)kb + g * 32 * ATTN_BLOCK + slot, ATTN_BLOCK, kd + g * ATTN_BLOCK + slot,
                     back + g * 32);
    } else {
        for (int64_t i = 0; i < n_ch; i++) {
            const size_t ki = (size_t)i * ATTN_BLOCK + slot;   /* channel i, this slot */
            if (tk == T_F32) back[i] = ((float *)kb)[ki] = kf[i];
            else back[i] = half_back(((uint16_t *)kb)[ki] = half_of(kf[i], tk), tk);
        }
    }
}

/* position `slot` of one block: the V row from vf, in type tv */
static void put_v(uint8_t *vb, size_t slot, int64_t n_ch, const float *vf, int tv, double *back)
{
    if (kivi_bits(tv)) {
        put_v_kivi(vb, slot, n_ch, vf, kivi_bits(tv), back);
    } else if (tv == T_Q4) {                                 /* nibbles [16][n_ch/2] + d [n_ch/32][16] */
        uint16_t *vd = (uint16_t *)(vb + n_ch * ATTN_BLOCK / 2);
        for (int64_t g = 0; g < n_ch / 32; g++) {
            uint8_t qv[32];
            q4_group(vf + g * 32, qv, vd + g * ATTN_BLOCK + slot, back + g * 32);
            for (int i = 0; i < 16; i++)               /* byte i of a group = channel i low, i + 16 high */
                vb[slot * (size_t)n_ch / 2 + (size_t)g * 16 + (size_t)i] = (uint8_t)(qv[i] | (qv[i + 16] << 4));
        }
    } else if (tv == T_Q8) {                          /* ints [16][n_ch] + d [n_ch/32][16] */
        uint16_t *vd = (uint16_t *)(vb + n_ch * ATTN_BLOCK);
        for (int64_t g = 0; g < n_ch / 32; g++)
            q8_group(vf + g * 32, (int8_t *)vb + slot * (size_t)n_ch + g * 32, 1, vd + g * ATTN_BLOCK + slot,
                     back + g * 32);
    } else {
        for (int64_t i = 0; i < n_ch; i++) {
            const size_t vi = slot * (size_t)n_ch + (size_t)i;
            if (tv == T_F32) back[i] = ((float *)vb)[vi] = vf[i];
            else back[i] = half_back(((uint16_t *)vb)[vi] = half_of(vf[i], tv), tv);
        }
    }
}

static void cache_fill(cache *c, int64_t hk, int64_t hd, int64_t n, int tk, int tv, int64_t shift)
{
    /* KIVI K: every block of the spans of 4 the rows touch (attn.h) */
    const int64_t n_ch = hk * hd, nb = kivi_bits(tk) ? (n + 63) / 64 * 4 : (n + ATTN_BLOCK - 1) / ATTN_BLOCK;
    const size_t kbytes = (part_size(tk, n_ch, 0) + 63) / 64 * 64, vbytes = (part_size(tv, n_ch, 1) + 63) / 64 * 64;
    const size_t slot_bytes = kbytes + vbytes;
    free(c->mem);
    c->hk = hk; c->hd = hd; c->n = n; c->tk = tk; c->tv = tv;
    c->mem = aligned_alloc(64, (size_t)(2 * nb + 1) * slot_bytes + 64 * (size_t)(shift + 1));
    assert_non_null(c->mem);
    memset(c->mem, 0x5a, (size_t)(2 * nb + 1) * slot_bytes + 64 * (size_t)(shift + 1));
    for (int64_t b = 0; b < nb; b++) {              /* block b at slot (nb - 1 - b) * 2: reversed, gaps between */
        uint8_t *base = c->mem + 64 * (size_t)shift + (size_t)(nb - 1 - b) * 2 * slot_bytes;
        c->k[b] = base;
        c->v[b] = base + kbytes;
    }
    static float kf[64][MAX_HK * MAX_HD];              /* this span's K rows so far (KIVI K takes them at once) */
    float vf[MAX_HK * MAX_HD];
    for (int64_t j = 0; j < n; j++) {
        const size_t slot = (size_t)(j % ATTN_BLOCK), at = (size_t)(j % 64);   /* at: row in the span */
        for (int64_t i = 0; i < n_ch; i++) { kf[at][i] = frand() * 2.0f; vf[i] = frand(); }
        if (kivi_bits(tk) && j % 5 == 0) kf[at][j % n_ch] = 40.0f;   /* outlier channels, as KIVI's keys have */
        if (!kivi_bits(tk)) put_k((uint8_t *)c->k[j / ATTN_BLOCK], slot, n_ch, kf[at], tk, c->kd[j]);
        else if (at == 63 || j == n - 1) {            /* a full span, or the last one's rows */
            uint8_t *kb[4];
            for (int r = 0; r < 4; r++) kb[r] = (uint8_t *)c->k[j / 64 * 4 + r];
            put_k_kivi(kb, (int64_t)at + 1, n_ch, (const float (*)[MAX_HK * MAX_HD])kf, kivi_bits(tk), c->kd + (j - (int64_t)at));
        }
        put_v((uint8_t *)c->v[j / ATTN_BLOCK], slot, n_ch, vf, tv, c->vd[j]);
    }
}

/* out: [hk * G][hd] by chunks of the set, folded in order (parts kept if keep) */
static void run_set(const attn_kernels *ak, const cache *c, const float *q, int64_t G, float scale,
                    float *out, float *parts_keep)
{
    const int64_t H = c->hk * G, P = H * ATTN_PART(c->hd);
    float *scratch = aligned_alloc(64, attn_scratch_floats(H, c->hd) * sizeof(float) + 64);
    float *acc = malloc((size_t)P * sizeof *acc), *part = malloc((size_t)P * sizeof *part);
    attn_part_init(acc, H, c->hd);
    for (int64_t j0 = 0, ci = 0; j0 < c->n; j0 += ATTN_CHUNK, ci++) {
        const attn_chunk ch = { c->k + j0 / ATTN_BLOCK, c->v + j0 / ATTN_BLOCK, (size_t)(c->hk * c->hd),
                                c->n - j0 < ATTN_CHUNK ? c->n - j0 : ATTN_CHUNK, c->hk, c->tk, c->tv, 0 };
        attn_chunk_run(ak, part, q, G, c->hd, scale, &ch, scratch);
        if (parts_keep) memcpy(parts_keep + ci * P, part, (size_t)P * sizeof *part);
        attn_merge(acc, part, H, c->hd);
    }
    attn_finish(out, acc, H, c->hd);
    free(scratch);
    free(acc);
    free(part);
}

/* softmax(scale q.k) v in double over all rows at once, q as given */
static void reference(const cache *c, const float *q, int64_t G, float scale, double *out)
{
    static double s[MAX_ROWS];
    for (int64_t h = 0; h < c->hk * G; h++) {
        const int64_t off = (h / G) * c->hd;
        double mx = -INFINITY, sum = 0.0;
        for (int64_t j = 0; j < c->n; j++) {
            double d = 0.0;
            for (int64_t i = 0; i < c->hd; i++) d += (double)q[h * c->hd + i] * c->kd[j][off + i];
            s[j] = d * scale;
            if (s[j] > mx) mx = s[j];
        }
        for (int64_t j = 0; j < c->n; j++) sum += (s[j] = exp(s[j] - mx));
        for (int64_t i = 0; i < c->hd; i++) {
            double o = 0.0;
            for (int64_t j = 0; j < c->n; j++) o += s[j] * c->vd[j][off + i];
            out[h * c->hd + i] = o / sum;
        }
    }
}

static void close_to(const float *a, const double *b, int64_t n, double tol, const char *what)
{
    for (int64_t i = 0; i < n; i++)
        if (!(fabs((double)a[i] - b[i]) <= tol))
            fail_msg("%s: element %lld: %.9g vs %.9g (tol %g)", what, (long long)i, (double)a[i], b[i], tol);
}

static const attn_kernels *sets[3];
static const char *set_names[3];
static int n_sets;

static void find_sets(void)
{
    const cpu_features *cf = cpu_get();
    n_sets = 0;
    sets[n_sets] = attn_scalar(); set_names[n_sets++] = "scalar";
    if (attn_avx2_kernels() && cpu_has_avx2_set(cf)) { sets[n_sets] = attn_avx2_kernels(); set_names[n_sets++] = "avx2"; }
    if (attn_avx512_kernels() && cpu_has_avx512_set(cf)) { sets[n_sets] = attn_avx512_kernels(); set_names[n_sets++] = "avx512"; }
}

static int set_runs_hd(int s, int64_t hd)
{
    return !strcmp(set_names[s], "scalar") || (!strcmp(set_names[s], "avx2") ? hd % 8 == 0 : hd % 16 == 0);
}

/* One case: every set against the double reference and against the scalar set. */
static void check_case(int64_t hk, int64_t hd, int64_t G, int64_t n, int tk, int tv)
{
    static float q[MAX_HK * MAX_G * MAX_HD], out[MAX_HK * MAX_G * MAX_HD], out_s[MAX_HK * MAX_G * MAX_HD];
    static double ref[MAX_HK * MAX_G * MAX_HD], sd[MAX_HK * MAX_G * MAX_HD];
    const int64_t H = hk * G;
    cache_fill(&C, hk, hd, n, tk, tv, 0);
    for (int64_t i = 0; i < H * hd; i++) q[i] = frand();
    if (tk == T_F16) attn_scalar()->round_f16(q, H * hd);
    const float scale = 1.0f / sqrtf((float)hd);
    reference(&C, q, G, scale, ref);
    run_set(attn_scalar(), &C, q, G, scale, out_s, NULL);
    for (int64_t i = 0; i < H * hd; i++) sd[i] = out_s[i];
    for (int s = 0; s < n_sets; s++) {
        if (!set_runs_hd(s, hd)) continue;
        run_set(sets[s], &C, q, G, scale, out, NULL);
        char what[128];
        snprintf(what, sizeof what, "%s hk %lld hd %lld G %lld n %lld K %s V %s", set_names[s], (long long)hk,
                 (long long)hd, (long long)G, (long long)n, TNAME[tk], TNAME[tv]);
        /* f16 V rounds p to f16 (relative 2^-11); otherwise only float sums differ
         * (the reference reads exactly the values stored, dequantized) */
        const double tol = tv == T_F16 ? 2e-3 : 2e-5;
        close_to(out, ref, H * hd, tol, what);
        close_to(out, sd, H * hd, tol, what);
    }
}

static void test_against_reference(void **state)
{
    (void)state;
    find_sets();
    static const int64_t rows[] = { 1, 15, 16, 17, 100, 256, 257, 700 };
    /* { 2, 96, 2 }: hd not a literal of DISPATCH_HD, and KIVI V groups of 64 that straddle two heads */
    static const struct { int64_t hk, hd, G; } shapes[] = { { 3, 64, 3 }, { 1, 64, 1 }, { 2, 128, 2 }, { 1, 80, 6 }, { 3, 64, 5 },
                                                            { 2, 96, 2 } };
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int t = 0; t < N_T; t++)
            for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++) {
                if (!type_fits(t, shapes[si].hk * shapes[si].hd)) continue;
                check_case(shapes[si].hk, shapes[si].hd, shapes[si].G, rows[ri], t, t);
            }
    /* K and V of different types */
    static const int pairs[][2] = { { T_Q8, T_Q4 }, { T_Q4, T_Q8 }, { T_F16, T_Q8 }, { T_Q8, T_F16 }, { T_BF16, T_F16 },
                                    { T_F32, T_BF16 }, { T_Q4, T_F32 }, { T_KIVI4, T_Q4 }, { T_KIVI2, T_KIVI4 },
                                    { T_KIVI4, T_KIVI2 }, { T_F16, T_KIVI2 }, { T_KIVI2, T_F16 }, { T_Q8, T_KIVI4 },
                                    { T_KIVI4, T_F32 } };
    for (size_t pi = 0; pi < sizeof pairs / sizeof pairs[0]; pi++) {
        check_case(3, 64, 3, 17, pairs[pi][0], pairs[pi][1]);
        check_case(3, 64, 3, 300, pairs[pi][0], pairs[pi][1]);
    }
}

/* Bits do not depend on where blocks sit, nor on folding now or later. */
static void test_exactness(void **state)
{
    (void)state;
    find_sets();
    enum { HK = 3, HD = 64, G = 3, H = HK * G, N = 600, NC = (N + ATTN_CHUNK - 1) / ATTN_CHUNK };
    static float q[H * HD], a[H * HD], b[H * HD], c[H * HD], parts[NC * H * ATTN_PART(HD)];
    for (int s = 0; s < n_sets; s++) {
        for (int t = 0; t < N_T; t++) {
            uint32_t seed = 777;
            rng = seed;
            cache_fill(&C, HK, HD, N, t, t, 0);
            for (int i = 0; i < H * HD; i++) q[i] = frand();
            run_set(sets[s], &C, q, G, 0.125f, a, parts);
            rng = seed;                               /* the same values, blocks 3 lines further on */
            cache_fill(&C, HK, HD, N, t, t, 3);
            for (int i = 0; i < H * HD; i++) q[i] = frand();
            run_set(sets[s], &C, q, G, 0.125f, b, NULL);
            assert_memory_equal(a, b, sizeof a);
            float acc[H * ATTN_PART(HD)];             /* stored parts folded later, in two halves of heads */
            for (int h0 = 0; h0 < H; h0 += G) {
                attn_part_init(acc, G, HD);
                for (int ci = 0; ci < NC; ci++) attn_merge(acc, parts + (ci * H + h0) * ATTN_PART(HD), G, HD);
                attn_finish(c + h0 * HD, acc, G, HD);
            }
            assert_memory_equal(a, c, sizeof a);
        }
    }
}

static void test_round_f16(void **state)
{
    (void)state;
    find_sets();
    enum { N = 37 };
    float x[N], y[N];
    for (int s = 1; s < n_sets; s++) {
        for (int i = 0; i < N; i++) x[i] = y[i] = frand() * (i % 3 == 0 ? 1e-5f : i % 3 == 1 ? 7e4f : 1.0f);
        x[0] = y[0] = 1.0f + 1.0f / 2048.0f;          /* a tie: rounds to even */
        x[1] = y[1] = 70000.0f;                       /* overflow: inf */
        x[2] = y[2] = 3e-8f;                          /* subnormal in f16 */
        sets[s]->round_f16(x, N);                     /* 37 = 2 x 16 + a tail of 5 */
        for (int i = 0; i < N; i++) y[i] = fp16_to_f32(f32_to_fp16(y[i]));
        assert_memory_equal(x, y, sizeof x);
    }
}

static void test_choice(void **state)
{
    (void)state;
    find_sets();
    const attn_kernels *best = sets[n_sets - 1];
    assert_ptr_equal(attn_for(64), best);
    assert_ptr_equal(attn_for(60), attn_scalar());   /* not a multiple of 8: no SIMD set */
}

static int teardown(void **state)
{
    (void)state;
    free(C.mem);
    C.mem = NULL;
    return 0;
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_exactness),
        cmocka_unit_test(test_round_f16),
        cmocka_unit_test(test_choice),
    };
    return cmocka_run_group_tests_name("attn", t, NULL, teardown);
}
