/* act_avx512.c - the GELU of act.h, 8 lanes of double per step. Room: kern. Built with the Makefile's
 * AVX512_FLAGS; used only when cpu_get() reports the set. May touch: kern/act*.h. */
#include "kern/act.h"

#include <stddef.h>

#if defined(__AVX512F__) && defined(__FMA__)
#include <immintrin.h>

#define F __m256
#define D __m512d
#define VN 8
#define FLOAD _mm256_loadu_ps
#define FSTORE _mm256_storeu_ps
#define FLOAD_N(p, n) _mm256_maskz_loadu_ps((__mmask8)((1u << (n)) - 1), p)
#define FSTORE_N(p, n, v) _mm256_mask_storeu_ps(p, (__mmask8)((1u << (n)) - 1), v)
#define FADD _mm256_add_ps
#define TO_D _mm512_cvtps_pd
#define TO_F _mm512_cvtpd_ps
#define DSET(c) _mm512_set1_pd(c)
#define DADD _mm512_add_pd
#define DSUB _mm512_sub_pd
#define DMUL _mm512_mul_pd
#define DDIV _mm512_div_pd
#define DFMA _mm512_fmadd_pd
#define DFNMA _mm512_fnmadd_pd
#define DABS _mm512_abs_pd
#define DMIN _mm512_min_pd
#define DMAX _mm512_max_pd
#define DROUND(x) _mm512_roundscale_pd(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define DLEQ0_BLEND(x, a, b) _mm512_mask_blend_pd(_mm512_cmp_pd_mask(x, _mm512_setzero_pd(), _CMP_LE_OQ), b, a)
#define DSCALE _mm512_scalef_pd
#define DFLUSH(x) _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(DABS(x), DSET(0x1p-126), _CMP_NLT_UQ), x)
#include "kern/act_impl.h"

static void gelu_avx512(float *y, const float *b, int64_t n) { act_gelu_loop(y, b, n); }

static const act_isa_kernels avx512_kernels = { "avx512", gelu_avx512 };
const act_isa_kernels *act_avx512_kernels(void) { return &avx512_kernels; }

#else
const act_isa_kernels *act_avx512_kernels(void) { return NULL; }
#endif
