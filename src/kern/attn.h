/* attn.h - attention of a group of query heads over one chunk of cached rows,
 * and the fold of chunk results into a softmax-weighted sum (flash-decoding).
 * Room: kern. May touch: kern/cpu, kern/quant (f16 conversion). No allocation,
 * no threads: the caller (nn) splits chunks and heads between threads.
 *
 * A chunk is the rows [c * ATTN_CHUNK, min(n_kv, (c + 1) * ATTN_CHUNK)) of one
 * layer, held in blocks of ATTN_BLOCK rows (the cache's blocks). Block b holds
 *   K at k[b]: [n_head_kv * hd][ATTN_BLOCK]   channel-major (kv_pool's layout)
 *   V at v[b]: [ATTN_BLOCK][stride]            rows, a row is [n_head_kv][hd]
 * in f32, f16 or bf16 elements; for q8, int8 elements followed by f16 scales, one
 * per position and group of ATTN_Q8_GROUP channels, [n_ch / 32][16] for K and V alike
 * (a group's 16 positions adjacent, so one load gives a block's scales; element =
 * scale * int); for q4, 4-bit values q + 8 packed two per byte as
 * kv_pool.h describes, then the same scales (element = scale * q). K and V types
 * are independent. The G query heads of K/V head g (heads g*G .. g*G+G-1) read each of its rows
 * once, and a block is read for all K/V heads together (contiguous memory).
 * What every kernel set computes, for query head h in [0, n_head_kv * G), reading
 * K/V head g = h / G:
 *
 *   q: [n_head_kv * G][hd] f32 (rounded to f16 first for an f16 cache)
 *   s_j = scale * (q_h . k_j)                     j in [0, n)
 *   m_h = max_j s_j
 *   p_j = exp(s_j - m_h)                          rounded to f16 for an f16 cache
 *                                                 (only f16 rounds: q when K is f16,
 *                                                 p when V is f16)
 *   l_h = sum_j p_j
 *   o_h = sum_j p_j v_j                           j ascending
 *   part: [n_head_kv * G][ATTN_PART(hd)] = { m_h, l_h, o_h[0..hd) }
 *
 * attn_merge folds a chunk's part into a running one: with M' = max(M, m),
 *   L = L e^(M-M') + l e^(m-M'),  O = O e^(M-M') + o e^(m-M'),
 * starting from attn_part_init (M = -inf, L = 0, O = 0), chunks in ascending
 * order; attn_finish writes O / L. No buffer grows with the context.
 *
 * Exactness: the chunk grid is fixed by absolute position (ATTN_CHUNK never
 * changes), a chunk is always computed by one kernel call in one fixed order,
 * and the fold is plain C run in chunk order. So a token's output depends only
 * on its position and the cached rows: not on how many tokens run together, how
 * chunks are shared among threads, or whether parts are folded as they come or
 * stored and folded later. That is what keeps cached and recomputed paths
 * bitwise equal. The scalar set is the specification; a SIMD set sums in
 * another fixed order and uses its own exp, agreeing within rounding (the AVX2
 * set also rounds q to 16-bit ints for q8/q4 K: relative 2^-16 per group of 32). */
#ifndef KVLM_KERN_ATTN_H
#define KVLM_KERN_ATTN_H

#include <stddef.h>
#include <stdint.h>

#define ATTN_BLOCK 16           /* rows per cache block (KV_BLOCK_TOKENS) */
#define ATTN_CHUNK 256          /* rows per chunk: a fixed multiple of ATTN_BLOCK */
#define ATTN_PART(hd) ((hd) + 2)
#define ATTN_Q8_GROUP 32        /* q8: channels of one position sharing a scale */
#define ATTN_KIVI_VGROUP 64     /* KIVI V: channels of one position sharing a scale and a minimum */

/* Element types of K and V, chosen separately (the values of kvlm_kv_type). */
enum { ATTN_F32 = 0, ATTN_F16 = 1, ATTN_Q8 = 2, ATTN_Q4 = 3, ATTN_BF16 = 4, ATTN_KIVI4 = 5, ATTN_KIVI2 = 6,
       ATTN_N_TYPES = 7 };

/* KIVI (Liu et al. 2024): unsigned b-bit codes (b = 4 or 2) with an f16 scale d and
 * an f16 minimum m per group, element = m + d * code. K is grouped per channel
 * over a span of ATTN_KIVI_SPAN blocks (64 positions: its outlier channels get
 * their own range, at 0.5 bit of scales per element), V per position over
 * ATTN_KIVI_VGROUP channels. Layout of one layer in one block:
 *   K: codes [n_ch][2b bytes]: b = 4: byte i holds slot i (low nibble) and slot
 *      i + 8 (high); b = 2: byte i holds slots i, i+4, i+8, i+12 at bits 0, 2, 4, 6;
 *      then this block's quarter of its span's scales: block r of a span (r in
 *      [0, 4)) holds d [n_ch / 4] then m [n_ch / 4] of channels
 *      [r n_ch / 4, (r + 1) n_ch / 4)                     (b + 0.5 bits per element)
 *   V: codes [16][n_ch * b / 8]: in each group of 32 channels, b = 4: byte i holds
 *      channel i (low) and i + 16 (high); b = 2: byte i holds channels i, i+8,
 *      i+16, i+24 at bits 0, 2, 4, 6; then d [16][n_ch / 64], then m [16][n_ch / 64]
 *                                                          (b + 0.5 bits per element)
 * Spans are aligned to absolute positions (a chunk starts one), and a KIVI K
 * chunk's k[] holds every block of each span its rows touch. A V block is
 * quantized when its 16 positions are known, a span's K when its 64 are; until
 * then (and for the rest of its residual group) attention reads them in f32
 * (kv_seq.h). */
#define ATTN_KIVI_SPAN 4        /* KIVI K: blocks sharing their channels' scales */
static inline int attn_kivi_bits(int type) { return type == ATTN_KIVI4 ? 4 : type == ATTN_KIVI2 ? 2 : 0; }

typedef struct attn_chunk {
    const void *const *k;       /* [ceil(n / ATTN_BLOCK)] each block's K, channel-major */
    const void *const *v;       /* [ceil(n / ATTN_BLOCK)] each block's first V row */
    size_t stride;              /* V elements between consecutive rows, >= n_head_kv * hd */
    int64_t n;                  /* rows, 1..ATTN_CHUNK */
    int64_t n_head_kv;          /* K/V heads in a row, each hd elements */
    int type_k, type_v;         /* ATTN_* */
    int64_t skip;               /* rows [0, skip) are masked out (a sliding window starting
                                   inside the first block or KIVI span), 0 <= skip < n */
} attn_chunk;

/* The three phases of a chunk (attn_chunk_run runs them in order):
 *   scores:  s[h][j] = scale * q_h . k_j       s: [H][ATTN_CHUNK], H = n_head_kv * G
 *   softmax: part[h] = { m_h, l_h, 0... }, s[h][j] <- p_j (0 past n; rounded to f16
 *            when round_p: V is f16, as llama.cpp's f16 p.v runs on f16 operands)
 *   pv:      part[h].o += sum_j p_j v_j, j ascending
 * tmp: the part of the scratch after s (attn_scratch_floats). */
typedef void (*attn_scores_fn)(float *s, const float *q, int64_t G, int64_t hd, float scale,
                               const attn_chunk *c, float *tmp);
typedef void (*attn_softmax_fn)(float *part, float *s, int64_t H, int64_t n, int64_t hd, int round_p);
typedef void (*attn_pv_fn)(float *part, const float *s, int64_t G, int64_t hd, const attn_chunk *c, float *tmp);

typedef struct attn_kernels {
    const char *name;
    attn_scores_fn scores[ATTN_N_TYPES];   /* by K type; NULL: the scalar set's */
    attn_softmax_fn softmax;
    attn_pv_fn pv[ATTN_N_TYPES];           /* by V type; NULL: the scalar set's */
    void (*round_f16)(float *x, int64_t n);   /* x[i] = nearest f16 value (ties to even) */
} attn_kernels;

/* scratch: [n_head][ATTN_CHUNK] scores, then room for a block's K or V widened to
 * f32 (three times, for the kernels' padded and unpacked copies); 64-byte aligned. */
static inline size_t attn_scratch_floats(int64_t n_head, int64_t hd)
{
    return (size_t)n_head * ATTN_CHUNK + 3 * (size_t)n_head * (size_t)hd * ATTN_BLOCK + 64;
}

/* One chunk with set ak (the scalar set's phase where ak has none); masked rows
 * get score -inf between the scores and the softmax, so every set gives them p = 0:
 *   part: [n_head_kv * G][ATTN_PART(hd)], q: [n_head_kv * G][hd]
 *   (q rounded to f16 by the caller when K is f16). */
void attn_chunk_run(const attn_kernels *ak, float *part, const float *q, int64_t G, int64_t hd, float scale,
                    const attn_chunk *c, float *scratch);

/* Bytes of one layer's K (is_v = 0) or V (is_v = 1) in one block of n_ch channels
 * (unpadded); 0 when the type cannot hold it (q8/q4 need n_ch % 32 == 0, KIVI
 * n_ch % 64 == 0). Only KIVI's K and V differ (their scales group differently). */
size_t attn_part_bytes(int type, int64_t n_ch, int is_v);

/* K of row j, channel ch (of n_ch) of a run of channel-major blocks k[] (row j in
 * block k[j / ATTN_BLOCK]; KIVI K: k[0] is the first block of a span, whose scales
 * its blocks share), as the scalar set reads it: the value attention uses. */
float attn_k_value(const void *const *k, int64_t n_ch, int64_t j, int64_t ch, int type);

const attn_kernels *attn_scalar(void);
const attn_kernels *attn_avx2_kernels(void);     /* NULL when built without the ISA */
const attn_kernels *attn_avx512_kernels(void);
/* The fastest set this CPU runs for heads of hd elements. */
const attn_kernels *attn_for(int64_t hd);

/* part, acc: [G][ATTN_PART(hd)] */
void attn_part_init(float *acc, int64_t G, int64_t hd);
void attn_merge(float *acc, const float *part, int64_t G, int64_t hd);
/* out: [G][hd]: out[h][i] = O_h[i] / L_h */
void attn_finish(float *out, const float *acc, int64_t G, int64_t hd);

#endif
