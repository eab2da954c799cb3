/* matmul_avx2.c - the AVX2 tiled matmul set: not written yet, so the set is NULL.
 * Room: kern. May touch: kern/matmul.h.
 * With no set here, an AVX2-only CPU keeps quant_avx2.c's vec_dots in the fast table
 * and matmul_rows calls them once per output (exact by construction, ~2-3x slower in
 * prefill than a tiled kernel would be). The machine we run on has AVX-512, where
 * matmul_avx512.c does the work; an AVX2 port would mirror its structure (prepared
 * activations, R x T register tiles, vec_dot = the 1 x 1 tile). */
#include "kern/matmul.h"

const matmul_isa_kernels *matmul_avx2_kernels(void) { return NULL; }
