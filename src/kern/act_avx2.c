/* act_avx2.c - the GELU of act.h, 8 lanes. Room: kern. Built with the Makefile's
 * AVX2_FLAGS; used only when cpu_get() reports the set. May touch: kern/act*.h. */
#include "kern/act.h"

#include <stddef.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

/* p * 2^n for integral n in [-300, 0]: 0 below 2^-126 (no subnormals without scalef) */
static inline __m256 scale2(__m256 p, __m256 n)
{
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    const __m256 r = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_and_ps(r, _mm256_cmp_ps(n, _mm256_set1_ps(-126.0f), _CMP_GE_OQ));
}

static inline __m256i tail_mask(int64_t n)   /* lanes [0, n) */
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

#define V __m256
#define VN 8
#define VSET(c) _mm256_set1_ps(c)
#define VADD _mm256_add_ps
#define VSUB _mm256_sub_ps
#define VMUL _mm256_mul_ps
#define VDIV _mm256_div_ps
#define VFMA _mm256_fmadd_ps
#define VFNMA _mm256_fnmadd_ps
#define VABS(x) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x)
#define VMIN _mm256_min_ps
#define VMAX _mm256_max_ps
#define VROUND(x) _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VLEQ0_BLEND(x, a, b) _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LE_OQ))
#define VSCALE scale2
#define VLOAD _mm256_loadu_ps
#define VSTORE _mm256_storeu_ps
#define VLOAD_N(p, n) _mm256_maskload_ps(p, tail_mask(n))
#define VSTORE_N(p, n, v) _mm256_maskstore_ps(p, tail_mask(n), v)
#include "kern/act_impl.h"

static void gelu_avx2(float *y, const float *b, int64_t n) { act_gelu_loop(y, b, n); }

static const act_isa_kernels avx2_kernels = { "avx2", gelu_avx2 };
const act_isa_kernels *act_avx2_kernels(void) { return &avx2_kernels; }

#else
const act_isa_kernels *act_avx2_kernels(void) { return NULL; }
#endif
