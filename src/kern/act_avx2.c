/* act_avx2.c - the GELU of act.h, 4 lanes of double per step. Room: kern. Built with the Makefile's
 * AVX2_FLAGS; used only when cpu_get() reports the set. May touch: kern/act*.h. */
#include "kern/act.h"

#include <stddef.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

/* p * 2^n for integral n in [-300, 0] (the exponent field built by hand) */
static inline __m256d scale2(__m256d p, __m256d n)
{
    const __m256i e = _mm256_slli_epi64(_mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(n)),
                                                         _mm256_set1_epi64x(1023)), 52);
    return _mm256_mul_pd(p, _mm256_castsi256_pd(e));
}

static inline __m128i tail_mask(int64_t n)   /* lanes [0, n) */
{
    return _mm_cmpgt_epi32(_mm_set1_epi32((int)n), _mm_setr_epi32(0, 1, 2, 3));
}

#define F __m128
#define D __m256d
#define VN 4
#define FLOAD _mm_loadu_ps
#define FSTORE _mm_storeu_ps
#define FLOAD_N(p, n) _mm_maskload_ps(p, tail_mask(n))
#define FSTORE_N(p, n, v) _mm_maskstore_ps(p, tail_mask(n), v)
#define FADD _mm_add_ps
#define TO_D _mm256_cvtps_pd
#define TO_F _mm256_cvtpd_ps
#define DSET(c) _mm256_set1_pd(c)
#define DADD _mm256_add_pd
#define DSUB _mm256_sub_pd
#define DMUL _mm256_mul_pd
#define DDIV _mm256_div_pd
#define DFMA _mm256_fmadd_pd
#define DFNMA _mm256_fnmadd_pd
#define DABS(x) _mm256_andnot_pd(_mm256_set1_pd(-0.0), x)
#define DMIN _mm256_min_pd
#define DMAX _mm256_max_pd
#define DROUND(x) _mm256_round_pd(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define DFLUSH(x) _mm256_and_pd(x, _mm256_cmp_pd(DABS(x), _mm256_set1_pd(0x1p-126), _CMP_NLT_UQ))
#define DLEQ0_BLEND(x, a, b) _mm256_blendv_pd(b, a, _mm256_cmp_pd(x, _mm256_setzero_pd(), _CMP_LE_OQ))
#define DSCALE scale2
#include "kern/act_impl.h"

static void gelu_avx2(float *y, const float *b, int64_t n) { act_gelu_loop(y, b, n); }

static const act_isa_kernels avx2_kernels = { "avx2", gelu_avx2 };
const act_isa_kernels *act_avx2_kernels(void) { return &avx2_kernels; }

#else
const act_isa_kernels *act_avx2_kernels(void) { return NULL; }
#endif
