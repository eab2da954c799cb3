/* quant.h - ggml block formats, fp16/bf16 conversion and the per-type table of
 * scalar reference kernels (the spec every SIMD kernel is tested against).
 * Room: kern. May touch: libc only (no core, no I/O, no allocation).
 *
 * A row of n elements of a block type is n / blck_size blocks laid end to end:
 *
 *   row: [ blk 0 | blk 1 | ... | blk n/blck_size - 1 ]      type_size bytes each
 *
 * Block layouts (bit-compatible with ggml; fp16 stored as uint16_t, little-endian):
 *   Q4_0  32 el, 18 B: d;        qs[16]: el j = low nibble of qs[j], el j+16 = high nibble;
 *                                x = (q - 8) * d
 *   Q4_1  32 el, 20 B: d, m;     qs as Q4_0;                 x = q * d + m
 *   Q5_0  32 el, 22 B: d, qh[4]; qs as Q4_0, bit j of the LE u32 qh is bit 4 of el j;
 *                                x = (q - 16) * d
 *   Q5_1  32 el, 24 B: d, m, qh[4], qs;                      x = q * d + m
 *   Q8_0  32 el, 34 B: d, qs[32] int8;                       x = q * d
 *   Q8_1  32 el, 36 B: d, s = fp16(d * sum(q)), qs[32];      x = q * d  (activations;
 *                                36 B as in current ggml; gguf-py's size table still says 40,
 *                                from an old float layout: never seen in files)
 *   K-quants: super-blocks of 256 (QK_K), sub-blocks of 16 or 32 with 4/6/8-bit scales;
 *   see the comment above each struct. Q8_K (float d, int8 qs[256], int16 bsums[16]) is
 *   the activation format of every K-quant dot.
 *
 * Traits: quant_get(type) is the reference table and never changes; quant_get_fast(type)
 * is the same table with vec_dot/from_float replaced by the best kernels this CPU runs
 * (cpu.h), results within the tolerances named in tests/kern/test_quant.c (activation
 * quantizers are bit-identical to the reference).
 *
 * vec_dot_type choices: Q4_0/Q5_0/Q8_0 -> Q8_0; Q4_1/Q5_1/Q8_1 -> Q8_1; K-quants -> Q8_K;
 * F32, F16 and BF16 -> F32 (the activation row stays f32, the weight is widened).
 *
 * Activation rows given to vec_dot must come from the from_float of vec_dot_type: the
 * SIMD kernels rely on |q| <= 127 there (ggml has the same rule). Quantizers expect finite
 * input; NaN/Inf give deterministic garbage, never undefined behaviour. */
#ifndef KVLM_KERN_QUANT_H
#define KVLM_KERN_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ggml type ids, as stored in GGUF tensor infos. */
enum {
    QT_F32 = 0, QT_F16 = 1, QT_Q4_0 = 2, QT_Q4_1 = 3, QT_Q5_0 = 6, QT_Q5_1 = 7,
    QT_Q8_0 = 8, QT_Q8_1 = 9, QT_Q2_K = 10, QT_Q3_K = 11, QT_Q4_K = 12, QT_Q5_K = 13,
    QT_Q6_K = 14, QT_Q8_K = 15,
    /* known to the table (sizes, so GGUF files using them parse) but not supported */
    QT_IQ2_XXS = 16, QT_IQ2_XS = 17, QT_IQ3_XXS = 18, QT_IQ1_S = 19, QT_IQ4_NL = 20,
    QT_IQ3_S = 21, QT_IQ2_S = 22, QT_IQ4_XS = 23, QT_I8 = 24, QT_I16 = 25, QT_I32 = 26,
    QT_I64 = 27, QT_F64 = 28, QT_IQ1_M = 29,
    QT_BF16 = 30,
    QT_TQ1_0 = 34, QT_TQ2_0 = 35, QT_MXFP4 = 39,
    QT_COUNT = 40                  /* ids >= QT_COUNT are unknown */
};

enum { QK4_0 = 32, QK4_1 = 32, QK5_0 = 32, QK5_1 = 32, QK8_0 = 32, QK8_1 = 32, QK_K = 256,
       K_SCALE_SIZE = 12 };

typedef struct blk_q4_0 { uint16_t d; uint8_t qs[QK4_0 / 2]; } blk_q4_0;
typedef struct blk_q4_1 { uint16_t d, m; uint8_t qs[QK4_1 / 2]; } blk_q4_1;
typedef struct blk_q5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; } blk_q5_0;
typedef struct blk_q5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; } blk_q5_1;
typedef struct blk_q8_0 { uint16_t d; int8_t qs[QK8_0]; } blk_q8_0;
typedef struct blk_q8_1 { uint16_t d, s; int8_t qs[QK8_1]; } blk_q8_1;

/* Q2_K: 16 sub-blocks of 16. scales[i]: low nibble scale, high nibble min of sub-block i.
 * el e = h*128 + k*32 + l (h < 2, k < 4, l < 32): q = (qs[h*32 + l] >> 2k) & 3;
 * x = d * (sc & 15) * q - dmin * (sc >> 4). */
typedef struct blk_q2_K { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; uint16_t d, dmin; } blk_q2_K;
/* Q3_K: 16 sub-blocks of 16 with 6-bit signed scales (bias 32) packed in 12 bytes:
 * low 4 bits of scale i in scales[i % 8] >> 4*(i / 8), high 2 bits in
 * scales[8 + i % 4] >> 2*(i / 4). el e = h*128 + k*32 + l: low bits (qs[h*32 + l] >> 2k) & 3,
 * high bit = bit (e / 32) of hmask[l]; q = low - (high ? 0 : 4); x = d * (sc - 32) * q. */
typedef struct blk_q3_K { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; uint16_t d; } blk_q3_K;
/* Q4_K: 8 sub-blocks of 32 with 6-bit scale and min (quant_get_scale_min_k4).
 * el e = c*64 + hi*32 + l: q = (qs[c*32 + l] >> 4hi) & 15; sub-block j = e / 32;
 * x = d * sc_j * q - dmin * m_j. */
typedef struct blk_q4_K { uint16_t d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; } blk_q4_K;
/* Q5_K: as Q4_K plus bit 4 of el e in bit (e / 32) of qh[e % 32]. */
typedef struct blk_q5_K { uint16_t d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } blk_q5_K;
/* Q6_K: 16 sub-blocks of 16, int8 scales. el e = h*128 + k*32 + l (l < 32):
 * low 4 bits (ql[h*64 + (k & 1)*32 + l] >> 4*(k >> 1)) & 15, high 2 bits
 * (qh[h*32 + l] >> 2k) & 3; x = d * scales[e / 16] * (q - 32). */
typedef struct blk_q6_K { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; } blk_q6_K;
/* Q8_K: x = d * q; bsums[i] = sum of qs[16i .. 16i+15] (used by the K-quant dots). */
typedef struct blk_q8_K { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; } blk_q8_K;

_Static_assert(sizeof(blk_q4_0) == 18, "blk_q4_0 size");
_Static_assert(sizeof(blk_q4_1) == 20, "blk_q4_1 size");
_Static_assert(sizeof(blk_q5_0) == 22, "blk_q5_0 size");
_Static_assert(sizeof(blk_q5_1) == 24, "blk_q5_1 size");
_Static_assert(sizeof(blk_q8_0) == 34, "blk_q8_0 size");
_Static_assert(sizeof(blk_q8_1) == 36, "blk_q8_1 size");
_Static_assert(sizeof(blk_q2_K) == 84, "blk_q2_K size");
_Static_assert(sizeof(blk_q3_K) == 110, "blk_q3_K size");
_Static_assert(sizeof(blk_q4_K) == 144, "blk_q4_K size");
_Static_assert(sizeof(blk_q5_K) == 176, "blk_q5_K size");
_Static_assert(sizeof(blk_q6_K) == 210, "blk_q6_K size");
_Static_assert(sizeof(blk_q8_K) == 292, "blk_q8_K size");

/* ---- fp16 / bf16 ---------------------------------------------------------------- */
float    fp16_to_f32(uint16_t h);   /* exact for every input, NaN payload kept */
uint16_t f32_to_fp16(float f);      /* round to nearest even; subnormals, overflow to inf, NaN stays NaN */
float    bf16_to_f32(uint16_t h);   /* exact */
uint16_t f32_to_bf16(float f);      /* round to nearest even (as ggml: NaN is quieted, no flush) */

/* ---- per-type traits ---------------------------------------------------------------- */
typedef void  (*quant_dequant_fn)(const void *src, float *dst, int64_t n);   /* n multiple of blck_size */
typedef void  (*quant_quantize_fn)(const float *src, void *dst, int64_t n);  /* n multiple of blck_size */
/* Dot of one weight row w (this type) with one activation row x (vec_dot_type), n elements. */
typedef float (*quant_vec_dot_fn)(const void *w, const void *x, int64_t n);

typedef struct quant_traits {
    const char *name;
    int64_t     blck_size;       /* elements per block */
    size_t      type_size;       /* bytes per block */
    bool        supported;       /* to_float and vec_dot are available */
    uint32_t    vec_dot_type;    /* activation format vec_dot expects (see above) */
    quant_dequant_fn  to_float;
    quant_quantize_fn from_float;  /* reference quantizer; NULL for unsupported types */
    quant_vec_dot_fn  vec_dot;
} quant_traits;

const quant_traits *quant_get(uint32_t type);       /* reference kernels; NULL if unknown */
const quant_traits *quant_get_fast(uint32_t type);  /* best kernels for this CPU; NULL if unknown */
/* Bytes for n elements; 0 if the type is unknown, n <= 0, n is not a multiple of the
 * block size or the size overflows. */
size_t quant_row_size(uint32_t type, int64_t n);

/* Q4_K/Q5_K scale and min of sub-block j (0..7) from the 12 packed bytes. */
void quant_get_scale_min_k4(int j, const uint8_t *scales, uint8_t *sc, uint8_t *m);

/* ---- ISA kernel sets (quant_avx2.c, quant_avx512.c) --------------------------------
 * Each returns NULL when its file was built without the ISA flags; calling a kernel
 * on a CPU without the ISA is undefined: check cpu_get() first (quant_get_fast does). */
typedef struct quant_isa_kernels {
    const char       *name;                 /* "avx2", "avx512" */
    quant_quantize_fn quantize_q8_0;        /* bit-identical to the reference */
    quant_quantize_fn quantize_q8_1;
    quant_quantize_fn quantize_q8_K;        /* bit-identical to the reference (n: multiples of 256) */
    quant_vec_dot_fn  vec_dot_q4_0_q8_0;
    quant_vec_dot_fn  vec_dot_q4_1_q8_1;
    quant_vec_dot_fn  vec_dot_q8_0_q8_0;
} quant_isa_kernels;
const quant_isa_kernels *quant_avx2_kernels(void);
const quant_isa_kernels *quant_avx512_kernels(void);

#endif
