/* test_attn.c - the attention chunk kernels (kern/attn.h).
 *  - every set against a double-precision softmax computed directly over all rows
 *    (independent of chunks, online folding and the kernels' exp), for f32 and
 *    f16 rows, head sizes 64, 128 and 80, groups of 1 to 6 query heads per K/V
 *    head, and row counts that end inside a block, on one, or past one chunk;
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
    int f16;
    uint8_t *mem;
    const void *k[MAX_ROWS / ATTN_BLOCK + 1], *v[MAX_ROWS / ATTN_BLOCK + 1];
    double kd[MAX_ROWS][MAX_HK * MAX_HD], vd[MAX_ROWS][MAX_HK * MAX_HD];   /* the values stored, exactly */
} cache;

static cache C;

static void cache_fill(cache *c, int64_t hk, int64_t hd, int64_t n, int f16, int64_t shift)
{
    const size_t elt = f16 ? 2 : 4, row = (size_t)(hk * hd) * elt, blk = ATTN_BLOCK * row;
    const int64_t nb = (n + ATTN_BLOCK - 1) / ATTN_BLOCK;
    free(c->mem);
    c->hk = hk; c->hd = hd; c->n = n; c->f16 = f16;
    c->mem = aligned_alloc(64, (size_t)(2 * nb + 1) * 2 * blk + 64 * (size_t)(shift + 1));
    assert_non_null(c->mem);
    for (int64_t b = 0; b < nb; b++) {              /* block b at slot (nb - 1 - b) * 2: reversed, gaps between */
        uint8_t *base = c->mem + 64 * (size_t)shift + (size_t)(nb - 1 - b) * 2 * 2 * blk;
        c->k[b] = base;
        c->v[b] = base + blk;
    }
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < hk * hd; i++) {
            const float kf = frand() * 2.0f, vf = frand();
            const size_t ki = (size_t)i * ATTN_BLOCK + (size_t)(j % ATTN_BLOCK);   /* channel i, slot j % 16 */
            uint8_t *kb = (uint8_t *)c->k[j / ATTN_BLOCK];
            uint8_t *vr = (uint8_t *)c->v[j / ATTN_BLOCK] + (size_t)(j % ATTN_BLOCK) * row;
            if (f16) {
                ((uint16_t *)kb)[ki] = f32_to_fp16(kf);
                ((uint16_t *)vr)[i] = f32_to_fp16(vf);
                c->kd[j][i] = fp16_to_f32(((uint16_t *)kb)[ki]);
                c->vd[j][i] = fp16_to_f32(((uint16_t *)vr)[i]);
            } else {
                ((float *)kb)[ki] = kf;
                ((float *)vr)[i] = vf;
                c->kd[j][i] = kf;
                c->vd[j][i] = vf;
            }
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
                                c->n - j0 < ATTN_CHUNK ? c->n - j0 : ATTN_CHUNK, c->hk };
        (c->f16 ? ak->chunk_f16 : ak->chunk_f32)(part, q, G, c->hd, scale, &ch, scratch);
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

/* Every set against the double reference and against the scalar set. */
static void test_against_reference(void **state)
{
    (void)state;
    find_sets();
    static const int64_t rows[] = { 1, 15, 16, 17, 100, 256, 257, 700 };
    static const struct { int64_t hk, hd, G; } shapes[] = { { 3, 64, 3 }, { 1, 64, 1 }, { 2, 128, 2 }, { 1, 80, 6 }, { 3, 64, 5 } };
    static float q[MAX_HK * MAX_G * MAX_HD], out[MAX_HK * MAX_G * MAX_HD], out_s[MAX_HK * MAX_G * MAX_HD];
    static double ref[MAX_HK * MAX_G * MAX_HD];
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int f16 = 0; f16 < 2; f16++)
            for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++) {
                const int64_t hk = shapes[si].hk, hd = shapes[si].hd, G = shapes[si].G, H = hk * G, n = rows[ri];
                cache_fill(&C, hk, hd, n, f16, 0);
                for (int64_t i = 0; i < H * hd; i++) q[i] = frand();
                if (f16) attn_scalar()->round_f16(q, H * hd);
                const float scale = 1.0f / sqrtf((float)hd);
                reference(&C, q, G, scale, ref);
                run_set(attn_scalar(), &C, q, G, scale, out_s, NULL);
                for (int s = 0; s < n_sets; s++) {
                    if (!set_runs_hd(s, hd)) continue;
                    run_set(sets[s], &C, q, G, scale, out, NULL);
                    char what[96];
                    snprintf(what, sizeof what, "%s hk %lld hd %lld G %lld n %lld %s", set_names[s], (long long)hk,
                             (long long)hd, (long long)G, (long long)n, f16 ? "f16" : "f32");
                    /* f16 rows round p to f16 (relative 2^-11), f32 rows only float sums */
                    close_to(out, ref, H * hd, f16 ? 2e-3 : 2e-5, what);
                    double sd[MAX_HK * MAX_G * MAX_HD];
                    for (int64_t i = 0; i < H * hd; i++) sd[i] = out_s[i];
                    close_to(out, sd, H * hd, f16 ? 2e-3 : 2e-5, what);
                }
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
        for (int f16 = 0; f16 < 2; f16++) {
            uint32_t seed = 777;
            rng = seed;
            cache_fill(&C, HK, HD, N, f16, 0);
            for (int i = 0; i < H * HD; i++) q[i] = frand();
            run_set(sets[s], &C, q, G, 0.125f, a, parts);
            rng = seed;                               /* the same values, blocks 3 lines further on */
            cache_fill(&C, HK, HD, N, f16, 3);
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
