/* bench_matmul.c - kernel lab timing of matmul_rows, 1 thread, on synthetic weights of
 * SmolLM2-135M's shapes (no model file needed; speed does not depend on the values).
 *   build/bench_matmul [hot,cold,pre,seq] [old|avx2|avx2old]
 * Through the public kern interface (matmul_rows with quant_get_fast tables, as
 * forward.c calls it); with "old", through a table holding the quant_avx512.c vec_dot
 * instead (one vec_dot per output: the path before the tiled kernels). "avx2" and
 * "avx2old" time what an AVX2-only CPU runs: tables holding matmul_avx2.c's vec_dots
 * (so matmul_rows takes its tiled kernels), or quant_avx2.c's (one per output).
 *   hot   n_tok = 1, one matrix resident in L2/L3, many passes: GB/s of weight bytes
 *   cold  n_tok = 1, rotating over copies of the matrix (>= 256 MB), as decode streams
 *         weights from DRAM: GB/s of weight bytes
 *   pre   n_tok = 512: GFLOP/s-equivalent (2 n_in n_out n_tok / time)
 *   seq   the decode sequence: 30 layers x 7 matrices + the Q8_0 output (~96 MB)
 *   whisper  Whisper tiny.en's encoder shapes (1152x384 fused QKV, 1536x384 fc1, 384x1536
 *         fc2) with F16, F32 and Q8_0 weights at n_tok = 1, 16, 512, 1500: GFLOP/s.
 *         Not in the default list; "whisper" alone runs it (with mode avx2: the
 *         matmul_avx2.c kernels).
 *   kquant   Gemma 3 270M's matrix shapes (n_in 640, 1024, 2048) in each weight type it
 *         uses (Q5_0, Q8_0, Q4_K, Q6_K; Q5_K of Q5_K_M llama files; Q4_1 beside them) at
 *         n_tok = 1 (GB/s of weights, in L2) and 512 (GFLOP/s), plus the time to quantize
 *         512 activation rows to the type's vec_dot_type. "kquant" alone runs it (with mode
 *         avx2: the matmul_avx2.c kernels; ref: the scalar reference, n_tok = 64).
 * Every rate is followed by its fraction of this machine's 1-thread peak (roof.h; from
 * build/peak.txt, or measured briefly first): GB/s of the read bandwidth at the working
 * set's size, GFLOP/s (2 MAC) of the int8 peak of the ISA the kernels were written in
 * (AVX-512: VNNI zmm; AVX2: maddubs ymm), F16/F32 GFLOP/s of that ISA's FMA peak. */
#include "kern/cpu.h"
#include "kern/matmul.h"
#include "kern/quant.h"
#include "roof.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* the ISA a mode's kernels are written in: 256 for the AVX2 sets, else the fast table's */
static int mode_isa(const char *mode)
{
    if (!strncmp(mode, "avx2", 4)) return 256;
    return cpu_has_avx512_set(cpu_get()) ? 512 : 256;
}

/* "12%": GFLOP/s (2 per MAC) of the 1-thread int8 peak of isa */
static const char *pct_int8(char *buf, double gflops, int isa)
{
    return roof_pct(buf, gflops / 2, roof_int8(roof_get(), isa, 0));
}

static void print_roof(const char *mode)
{
    const roof_peaks *p = roof_get();
    const int isa = mode_isa(mode);
    printf("roofline (1 thread): %s\n  int8 %s %.1f GMAC/s (%.1f GOP/s), FMA %s %.1f GFLOP/s, read %.1f GB/s in 1 MiB, "
           "%.1f in 512 MiB\n", p->source, isa == 512 ? "zmm" : "ymm maddubs", roof_int8(p, isa, 0),
           2 * roof_int8(p, isa, 0), isa == 512 ? "zmm" : "ymm", roof_fma(p, isa, 0), roof_bw_at(p, 1u << 20, 0),
           roof_bw_at(p, 512u << 20, 0));
}

typedef struct shape { const char *name; uint32_t type; int64_t n_out, n_in; } shape;

static const shape shapes[] = {
    { "attn_q/o", QT_Q4_1, 576, 576 },   { "attn_k/v", QT_Q4_1, 192, 576 },
    { "ffn_gate/up", QT_Q4_1, 1536, 576 }, { "ffn_down", QT_Q4_1, 576, 1536 },
    { "output", QT_Q8_0, 49152, 576 },
};

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

/* n_out rows of random blocks with modest fp16 scales. */
static uint8_t *make_w(const shape *s, size_t *bytes)
{
    const quant_traits *t = quant_get(s->type);
    *bytes = quant_row_size(s->type, s->n_in) * (size_t)s->n_out;
    uint8_t *w = aligned_alloc(64, (*bytes + 63) / 64 * 64);
    for (size_t i = 0; i < *bytes; i++) w[i] = (uint8_t)rnd();
    if (s->type == QT_F16 || s->type == QT_F32) {           /* values in [-0.05, 0.05]: no NaN, no subnormals */
        float *row = malloc(sizeof(float) * (size_t)s->n_in);
        const size_t rb = quant_row_size(s->type, s->n_in);
        for (int64_t r = 0; r < s->n_out; r++) {
            for (int64_t i = 0; i < s->n_in; i++) row[i] = (float)((int64_t)(rnd() % 2001) - 1000) * 5e-5f;
            t->from_float(row, w + (size_t)r * rb, s->n_in);
        }
        free(row);
        return w;
    }
    for (size_t b = 0; b < *bytes; b += t->type_size) {     /* b: block start */
        uint16_t d = f32_to_fp16(0.01f), m = f32_to_fp16(-0.05f);
        memcpy(w + b, &d, 2);
        if (s->type == QT_Q4_1) memcpy(w + b + 2, &m, 2);
    }
    return w;
}

/* x: [n_tok][n_in] quantized to the weight's vec_dot_type */
static void *make_x(const shape *s, int64_t n_tok, size_t *xq_bytes)
{
    const uint32_t vt = quant_get(s->type)->vec_dot_type;
    *xq_bytes = quant_row_size(vt, s->n_in);
    float *x = malloc(sizeof(float) * (size_t)(s->n_in * n_tok));
    for (int64_t i = 0; i < s->n_in * n_tok; i++) x[i] = (float)((int64_t)(rnd() % 2001) - 1000) * 1e-3f;
    void *xq = malloc(*xq_bytes * (size_t)n_tok);
    matmul_quantize_rows(quant_get_fast(vt), x, s->n_in, 0, n_tok, xq, *xq_bytes);
    free(x);
    return xq;
}

/* Whisper: GFLOP/s of matmul_rows with table qt for each n_tok (best of 5 runs of at
 * least ~0.2 s of work or 3 calls). */
static void bench_whisper(const quant_traits *f16, const quant_traits *f32, const quant_traits *q80, int isa)
{
    static const int64_t dims[3][2] = { { 1152, 384 }, { 1536, 384 }, { 384, 1536 } };
    static const int64_t n_toks[4] = { 1, 16, 512, 1500 };
    struct { const char *name; uint32_t type; const quant_traits *qt; } kinds[3] = {
        { "F16", QT_F16, f16 }, { "F32", QT_F32, f32 }, { "Q8_0", QT_Q8_0, q80 } };
    printf("whisper shapes, GFLOP/s (2 n_in n_out n_tok / time) and %% of the FMA (F16, F32) or int8 (Q8_0) "
           "peak, 1 thread:\n");
    printf("%-12s %-5s %-18s", "n_out x n_in", "type", "kernel");
    for (int k = 0; k < 4; k++) printf("  n_tok=%-10lld", (long long)n_toks[k]);
    printf("\n");
    float *y = malloc(sizeof(float) * 1500 * 1536);
    for (int d = 0; d < 3; d++)
        for (int k = 0; k < 3; k++) {
            const shape s = { kinds[k].name, kinds[k].type, dims[d][0], dims[d][1] };
            size_t bytes, xqb;
            uint8_t *w = make_w(&s, &bytes);
            printf("%4lld x %-5lld %-5s %-18s", (long long)s.n_out, (long long)s.n_in, kinds[k].name,
                   matmul_tiled_for(kinds[k].qt) ? "tiled" : "vec_dot per output");
            for (int ni = 0; ni < 4; ni++) {
                const int64_t n_tok = n_toks[ni];
                void *x = make_x(&s, n_tok, &xqb);
                const double flop = 2.0 * (double)s.n_in * (double)s.n_out * (double)n_tok;
                int calls = (int)(2e8 / flop) + 3;
                double best = 1e30;
                for (int rep = 0; rep < 5; rep++) {
                    double t0 = now();
                    for (int c = 0; c < calls; c++)
                        matmul_rows(kinds[k].qt, w, quant_row_size(s.type, s.n_in), 0, s.n_out, x, xqb,
                                    n_tok, s.n_in, y, s.n_out);
                    double dt = (now() - t0) / calls;
                    if (dt < best) best = dt;
                }
                char pc[8];
                const double gf = flop / best / 1e9;
                printf(" %10.1f %5s", gf, k == 2 ? pct_int8(pc, gf, isa) : roof_pct(pc, gf, roof_fma(roof_get(), isa, 0)));
                free(x);
            }
            printf("\n");
            free(w);
        }
    free(y);
}

/* Weights quantized by the reference quantizer from Gaussian-ish values (no NaN, no
 * subnormal partial sums: timings of raw random bytes can hit float assists). */
static uint8_t *make_wq(uint32_t type, int64_t n_out, int64_t n_in, size_t *bytes)
{
    const quant_traits *t = quant_get(type);
    const size_t rb = quant_row_size(type, n_in);
    *bytes = rb * (size_t)n_out;
    uint8_t *w = aligned_alloc(64, (*bytes + 63) / 64 * 64);
    float *row = malloc(sizeof(float) * (size_t)n_in);
    for (int64_t r = 0; r < n_out; r++) {
        for (int64_t i = 0; i < n_in; i++)
            row[i] = (float)((int64_t)(rnd() % 2001) - 1000) * 5e-5f * (float)(1 + (i / 32) % 4);
        t->from_float(row, w + (size_t)r * rb, n_in);
    }
    free(row);
    return w;
}

/* Gemma 3 270M's shapes in its weight types (and Q4_1 / Q5_K), GB/s at n_tok = 1 and
 * GFLOP/s at 512; mode: "" fast table, "avx2" the matmul_avx2.c set, "ref" the reference. */
static void bench_kquant(const char *mode)
{
    static const struct { const char *name; int64_t n_out, n_in; } dims[3] = {
        { "attn_q / ffn_gate", 2048, 640 }, { "attn_output", 640, 1024 }, { "ffn_down", 640, 2048 } };
    static const uint32_t types[6] = { QT_Q4_1, QT_Q8_0, QT_Q5_0, QT_Q4_K, QT_Q5_K, QT_Q6_K };
    const matmul_isa_kernels *k2 = matmul_avx2_kernels();
    const int ref = strcmp(mode, "ref") == 0;
    const int64_t n_big = ref ? 64 : 512;
    float *x = malloc(sizeof(float) * 512 * 2048), *y = malloc(sizeof(float) * 512 * 2048);
    for (int64_t i = 0; i < 512 * 2048; i++) x[i] = (float)((int64_t)(rnd() % 2001) - 1000) * 1e-3f;
    const int isa = mode_isa(mode);
    printf("kernels: %s; 1 thread; %% of the read bandwidth at the matrix's size, of the int8 peak\n",
           mode[0] ? mode : "fast table");
    printf("%-18s %-12s %-5s %-8s %17s %22s %22s\n", "matrix", "n_out x n_in", "type", "path",
           "n_tok=1 GB/s", "GFLOP/s", "quantize acts (ms)");
    for (int d = 0; d < 3; d++)
        for (int ti = 0; ti < 6; ti++) {
            const uint32_t type = types[ti];
            const int64_t n_out = dims[d].n_out, n_in = dims[d].n_in;
            if (n_in % quant_get(type)->blck_size) continue;
            quant_traits qt = ref ? *quant_get(type) : *quant_get_fast(type);
            if (strcmp(mode, "avx2") == 0 && k2) {
                const quant_vec_dot_fn dots[6] = { k2->vec_dot_q4_1_q8_1, k2->vec_dot_q8_0_q8_0, k2->vec_dot_q5_0_q8_0,
                                                   k2->vec_dot_q4_K_q8_K, k2->vec_dot_q5_K_q8_K, k2->vec_dot_q6_K_q8_K };
                qt.vec_dot = dots[ti];
            }
            const quant_traits *vt = quant_get_fast(qt.vec_dot_type);
            size_t bytes;
            uint8_t *w = make_wq(type, n_out, n_in, &bytes);
            const size_t rb = quant_row_size(type, n_in), xqb = quant_row_size(qt.vec_dot_type, n_in);
            void *xq = malloc(xqb * (size_t)n_big);
            double tq = 1e30, t1 = 1e30, tb = 1e30;
            for (int rep = 0; rep < 5; rep++) {
                double t0 = now();
                matmul_quantize_rows(vt, x, n_in, 0, n_big, xq, xqb);
                if (now() - t0 < tq) tq = now() - t0;
            }
            const int calls = (int)(1e9 / (double)bytes) + 1;
            for (int rep = 0; rep < 5; rep++) {
                double t0 = now();
                for (int c = 0; c < calls; c++) matmul_rows(&qt, w, rb, 0, n_out, xq, xqb, 1, n_in, y, n_out);
                double dt = (now() - t0) / calls;
                if (dt < t1) t1 = dt;
            }
            for (int rep = 0; rep < 15; rep++) {   /* best of 15: other jobs share this machine */
                double t0 = now();
                matmul_rows(&qt, w, rb, 0, n_out, xq, xqb, n_big, n_in, y, n_out);
                if (now() - t0 < tb) tb = now() - t0;
            }
            const double gbs = (double)bytes / t1 / 1e9;
            const double gf = 2.0 * (double)n_in * (double)n_out * (double)n_big / tb / 1e9;
            char pb[8], pf[8];
            printf("%-18s %4lld x %-5lld %-5s %-8s %12.1f %4s %9.1f %4s (n=%3lld) %12.2f (n=%3lld)\n", dims[d].name,
                   (long long)n_out, (long long)n_in, quant_get(type)->name, matmul_tiled_for(&qt) ? "tiled" : "vec_dot",
                   gbs, roof_pct(pb, gbs, roof_bw_at(roof_get(), bytes, 0)), gf, pct_int8(pf, gf, isa),
                   (long long)n_big, tq * 1e3, (long long)n_big);
            free(xq);
            free(w);
        }
    free(x);
    free(y);
}

static quant_traits old_q41, old_q80;   /* mode "old", "avx2", "avx2old": see main */

static const quant_traits *table(uint32_t type, int old)
{
    return !old ? quant_get_fast(type) : type == QT_Q4_1 ? &old_q41 : &old_q80;
}

/* Q4_1 and Q8_0 tables whose vec_dots are d41 and d80 (kept when NULL). */
static void set_old(quant_vec_dot_fn d41, quant_vec_dot_fn d80)
{
    if (d41) old_q41.vec_dot = d41;
    if (d80) old_q80.vec_dot = d80;
}

static void run(const shape *s, const uint8_t *w, const void *xq, size_t xqb, int64_t n_tok,
                float *y, int old)
{
    matmul_rows(table(s->type, old), w, quant_row_size(s->type, s->n_in), 0, s->n_out, xq, xqb,
                n_tok, s->n_in, y, s->n_out);
}

/* Best seconds per call of `calls` consecutive calls over copies w[0..n_copy) */
static double best_time(const shape *s, uint8_t **w, int n_copy, const void *xq, size_t xqb,
                        int64_t n_tok, float *y, int calls, int old)
{
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        for (int c = 0; c < calls; c++) run(s, w[c % n_copy], xq, xqb, n_tok, y, old);
        double dt = (now() - t0) / calls;
        if (dt < best) best = dt;
    }
    return best;
}

int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : "hot,cold,pre,seq";
    const char *mode = argc > 2 ? argv[2] : "";
    print_roof(mode);
    const int isa = mode_isa(mode);
    char pc[8];
    if (strcmp(only, "kquant") == 0) {
        bench_kquant(mode);
        return 0;
    }
    if (strcmp(only, "whisper") == 0) {
        quant_traits f16 = *quant_get_fast(QT_F16), f32 = *quant_get_fast(QT_F32), q80 = *quant_get_fast(QT_Q8_0);
        const matmul_isa_kernels *k2 = matmul_avx2_kernels();
        if (strcmp(mode, "avx2") == 0 && k2) {
            f16.vec_dot = k2->vec_dot_f16_f32;
            f32.vec_dot = k2->vec_dot_f32_f32;
            q80.vec_dot = k2->vec_dot_q8_0_q8_0;
        } else if (strcmp(mode, "ref") == 0) {
            f16 = *quant_get(QT_F16);
            f32 = *quant_get(QT_F32);
        }
        printf("kernels: %s\n", mode[0] ? mode : "fast table");
        bench_whisper(&f16, &f32, &q80, isa);
        return 0;
    }
    old_q41 = *quant_get_fast(QT_Q4_1);
    old_q80 = *quant_get_fast(QT_Q8_0);
    const quant_isa_kernels *q2 = quant_avx2_kernels(), *q512 = quant_avx512_kernels();
    const matmul_isa_kernels *m2 = matmul_avx2_kernels();
    int old = 1;
    if (strcmp(mode, "old") == 0 && q512) set_old(q512->vec_dot_q4_1_q8_1, q512->vec_dot_q8_0_q8_0);
    else if (strcmp(mode, "avx2") == 0 && m2) set_old(m2->vec_dot_q4_1_q8_1, m2->vec_dot_q8_0_q8_0);
    else if (strcmp(mode, "avx2old") == 0 && q2) set_old(q2->vec_dot_q4_1_q8_1, q2->vec_dot_q8_0_q8_0);
    else old = 0;
    printf("kernels: %s%s\n", old ? mode : "fast table",
           matmul_tiled_for(table(QT_Q4_1, old)) ? ", tiled" : ", vec_dot per output");
    float *y = malloc(sizeof(float) * 512 * 49152);
    const int ns = (int)(sizeof shapes / sizeof shapes[0]);
    for (int i = 0; i < ns; i++) {
        const shape *s = &shapes[i];
        size_t bytes, xqb;
        const int n_copy = strstr(only, "cold") ? (int)((256u << 20) / (quant_row_size(s->type, s->n_in) *
                                                                    (size_t)s->n_out)) + 1 : 1;
        uint8_t **w = malloc(sizeof(uint8_t *) * (size_t)n_copy);
        for (int c = 0; c < n_copy; c++) w[c] = make_w(s, &bytes);
        printf("%-12s %s n_out %5lld n_in %4lld (%6.2f MB):", s->name, quant_get(s->type)->name,
               (long long)s->n_out, (long long)s->n_in, (double)bytes / 1e6);
        void *x1 = make_x(s, 1, &xqb);
        if (strstr(only, "hot")) {
            int calls = (int)(2e9 / (double)bytes) + 1;
            if (calls > 4000) calls = 4000;
            const double gbs = (double)bytes / best_time(s, w, 1, x1, xqb, 1, y, calls, old) / 1e9;
            printf("  hot %5.1f GB/s %4s", gbs, roof_pct(pc, gbs, roof_bw_at(roof_get(), bytes, 0)));
        }
        if (strstr(only, "cold")) {
            const double gbs = (double)bytes / best_time(s, w, n_copy, x1, xqb, 1, y, n_copy, old) / 1e9;
            printf("  cold %5.1f GB/s %4s", gbs, roof_pct(pc, gbs, roof_bw_at(roof_get(), bytes * (size_t)n_copy, 0)));
        }
        free(x1);
        if (strstr(only, "pre") && (s->n_out <= 1536 || matmul_tiled_for(table(s->type, old)))) {
            void *x512 = make_x(s, 512, &xqb);
            double t = best_time(s, w, 1, x512, xqb, 512, y, 1, old);
            const double gf = 2.0 * (double)s->n_in * (double)s->n_out * 512 / t / 1e9;
            printf("  n_tok=512 %6.1f GFLOP/s %4s", gf, pct_int8(pc, gf, isa));
            free(x512);
        }
        printf("\n");
        for (int c = 0; c < n_copy; c++) free(w[c]);
        free(w);
    }
    if (strstr(only, "seq")) {
        /* 30 layers of q k v o gate up down, then the output matrix */
        enum { NL = 30, NM = NL * 7 + 1 };
        static const int kind[7] = { 0, 1, 1, 0, 2, 2, 3 };    /* index into shapes[] */
        uint8_t *w[NM];
        void *x[5];
        size_t xqb[5], total = 0, bytes;
        for (int k = 0; k < 5; k++) x[k] = make_x(&shapes[k], 1, &xqb[k]);
        for (int m = 0; m < NM; m++) {
            w[m] = make_w(&shapes[m < NL * 7 ? kind[m % 7] : 4], &bytes);
            total += bytes;
        }
        double best = 1e30;
        for (int rep = 0; rep < 10; rep++) {
            double t0 = now();
            for (int m = 0; m < NM; m++) {
                const int k = m < NL * 7 ? kind[m % 7] : 4;
                run(&shapes[k], w[m], x[k], xqb[k], 1, y, old);
            }
            if (now() - t0 < best) best = now() - t0;
        }
        printf("decode sequence %.1f MB: %5.1f GB/s (%s of the read at its size)  %6.2f ms/token (matmuls only, "
               "1 thread)\n", (double)total / 1e6, (double)total / best / 1e9,
               roof_pct(pc, (double)total / best / 1e9, roof_bw_at(roof_get(), total, 0)), best * 1e3);
        for (int m = 0; m < NM; m++) free(w[m]);
        for (int k = 0; k < 5; k++) free(x[k]);
    }
    free(y);
    return 0;
}
