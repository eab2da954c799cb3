/* bench_attn.c - the attention chunk kernels alone, on a synthetic cache laid out
 * like kv_pool's (blocks of 16 rows of every layer's K and V), to tell compute from
 * memory: `hot` reuses one layer's blocks (they stay in L2), `cold` walks every
 * layer of every block as a decode step does.
 *   build: make -C dev/kernels
 *   run:   dev/kernels/build/bench_attn [scalar|avx2|avx512] [depth] [type_k] [type_v]
 * types by ATTN_* id (default 1, f16); each block holds any type's bytes in the f16
 * layout's room (the bytes are f16 values, so codes and scales are finite).
 * Each line ends with fractions of this machine's 1-thread peaks (roof.h, build/peak.txt):
 * GB/s of the read bandwidth at the walked bytes' size (hot: one layer's K/V, cold: all
 * layers'), and GFLOP/s (2 x 2 x n_head x head_dim per row and layer: the q.k and p.v
 * FMAs, not exp or conversions) of the FMA peak of the set's ISA (scalar: the best). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stdint.h>
#include <sys/mman.h>
#include "kern/attn.h"
#include "kern/quant.h"
#include "kern/cpu.h"
#include "roof.h"

enum { HD = 64, HK = 3, G = 3, NL = 30, B = 16 };

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

int main(int argc, char **argv)
{
    const char *set = argc > 1 ? argv[1] : "avx512";
    const int64_t depth = argc > 2 ? atoll(argv[2]) : 4096;
    const int tk = argc > 3 ? atoi(argv[3]) : ATTN_F16, tv = argc > 4 ? atoi(argv[4]) : tk;
    if (tk < 0 || tk >= ATTN_N_TYPES || tv < 0 || tv >= ATTN_N_TYPES || tk == ATTN_F32 || tv == ATTN_F32) {
        fprintf(stderr, "types: 1 to %d (f32 does not fit the f16 layout)\n", ATTN_N_TYPES - 1);
        return 2;
    }
    const attn_kernels *ak = !strcmp(set, "scalar") ? attn_scalar() : !strcmp(set, "avx2") ? attn_avx2_kernels() : attn_avx512_kernels();
    if (!ak) { fprintf(stderr, "set %s not built\n", set); return 1; }
    const size_t row = HK * HD * 2, blk = (size_t)NL * 2 * B * row;     /* f16 */
    const int64_t nblk = (depth + B - 1) / B;
    const size_t slab_bytes = ((nblk * blk) | ((1 << 21) - 1)) + 1;
    uint8_t *slab = aligned_alloc(1 << 21, slab_bytes);
    (void)madvise(slab, slab_bytes, MADV_HUGEPAGE);   /* as kv_pool's slab: 2 MiB pages where THP allows */
    for (size_t i = 0; i < nblk * blk / 2; i++) ((uint16_t *)slab)[i] = f32_to_fp16((float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f);
    /* q8/q4 scales: ~0.5/127 (q4: 0.5/7), so scores are as small as f16's and softmax
     * sees ordinary values; the f16 bytes read as scales would give scores in the
     * hundreds and a one-hot p. */
    const uint16_t sk = f32_to_fp16(tk == ATTN_Q4 ? 0.07f : 0.004f), sv = f32_to_fp16(tv == ATTN_Q4 ? 0.07f : 0.004f);
    for (int64_t b = 0; b < nblk; b++)
        for (int l = 0; l < NL; l++) {
            uint8_t *k = slab + (size_t)b * blk + (size_t)l * 2 * B * row, *v = k + B * row;
            const size_t n = (size_t)HK * HD * B, nk = n / 32;   /* ints, scales per part */
            if (tk == ATTN_Q8 || tk == ATTN_Q4)
                for (size_t i = 0; i < nk; i++) ((uint16_t *)(k + (tk == ATTN_Q8 ? n : n / 2)))[i] = sk;
            if (tv == ATTN_Q8 || tv == ATTN_Q4)
                for (size_t i = 0; i < nk; i++) ((uint16_t *)(v + (tv == ATTN_Q8 ? n : n / 2)))[i] = sv;
        }
    float q[HK * G * HD], part[HK * G * ATTN_PART(HD)];
    for (int i = 0; i < HK * G * HD; i++) q[i] = (float)(i % 7) / 7.0f - 0.5f;
    float *scratch = aligned_alloc(64, attn_scratch_floats(HK * G, HD) * 4 + 64);
    attn_part_init(part, HK * G, HD);
    const void *kb[ATTN_CHUNK / B], *vb[ATTN_CHUNK / B];
    const roof_peaks *pk = roof_get();
    const int isa = !strcmp(set, "avx2") || !cpu_has_avx512_set(cpu_get()) ? 256 : 512;
    printf("roofline (1 thread): %s; FMA %s %.1f GFLOP/s\n", pk->source, isa == 512 ? "zmm" : "ymm", roof_fma(pk, isa, 0));
    for (int mode = 0; mode < 2; mode++) {           /* 0 hot: layer 0 only, 1 cold: all layers */
        double best = 1e9;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = now();
            for (int il = 0; il < NL; il++) {
                const int64_t l = mode ? il : 0;
                for (int64_t j0 = 0; j0 < depth; j0 += ATTN_CHUNK) {
                    const int64_t n = depth - j0 < ATTN_CHUNK ? depth - j0 : ATTN_CHUNK;
                    for (int64_t b = 0; b < (n + B - 1) / B; b++) {
                        kb[b] = slab + (size_t)(j0 / B + b) * blk + (size_t)l * 2 * B * row;
                        vb[b] = (const uint8_t *)kb[b] + B * row;
                    }
                    attn_chunk c = { kb, vb, HK * HD, n, HK, tk, tv, 0 };   /* in the f16 layout's room; skip 0 */
                    attn_chunk_run(ak, part, q, G, HD, 0.125f, &c, scratch);
                }
            }
            double dt = now() - t0;
            if (dt < best) best = dt;
        }
        const double bytes = (double)(attn_part_bytes(tk, HK * HD, 0) + attn_part_bytes(tv, HK * HD, 1)) / B;   /* per row */
        const double gbs = (double)(depth * NL) * bytes / best / 1e9;
        const double gflops = (double)(depth * NL) * 4.0 * HK * G * HD / best / 1e9;
        char pb[8], pf[8];
        printf("%-7s K %d V %d depth %lld %s: %.3f ms per decode step (30 layers), %.1f ns per row-layer, %.1f GB/s "
               "(%s of read), %.1f GFLOP/s (%s of FMA)\n",
               set, tk, tv, (long long)depth, mode ? "cold" : "hot ", best * 1e3, best * 1e9 / (double)(depth * NL), gbs,
               roof_pct(pb, gbs, roof_bw_at(pk, (size_t)((double)depth * bytes * (mode ? NL : 1)), 0)), gflops,
               roof_pct(pf, gflops, roof_fma(pk, isa, 0)));
    }
    return 0;
}
