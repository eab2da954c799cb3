/* act_avx512.c - the GELU of act.h, 16 lanes. Room: kern. Built with the Makefile's
 * AVX512_FLAGS; used only when cpu_get() reports the set. May touch: kern/act*.h. */
#include "kern/act.h"

#include <stddef.h>

#if defined(__AVX512F__) && defined(__FMA__)
#include <immintrin.h>

#define V __m512
#define VN 16
#define VSET(c) _mm512_set1_ps(c)
#define VADD _mm512_add_ps
#define VSUB _mm512_sub_ps
#define VMUL _mm512_mul_ps
#define VDIV _mm512_div_ps
#define VFMA _mm512_fmadd_ps
#define VFNMA _mm512_fnmadd_ps
#define VABS _mm512_abs_ps
#define VMIN _mm512_min_ps
#define VMAX _mm512_max_ps
#define VROUND(x) _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VLEQ0_BLEND(x, a, b) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LE_OQ), b, a)
#define VSCALE _mm512_scalef_ps
#define VLOAD _mm512_loadu_ps
#define VSTORE _mm512_storeu_ps
#define VLOAD_N(p, n) _mm512_maskz_loadu_ps((__mmask16)((1u << (n)) - 1), p)
#define VSTORE_N(p, n, v) _mm512_mask_storeu_ps(p, (__mmask16)((1u << (n)) - 1), v)
#include "kern/act_impl.h"

static void gelu_avx512(float *y, const float *b, int64_t n) { act_gelu_loop(y, b, n); }

static const act_isa_kernels avx512_kernels = { "avx512", gelu_avx512 };
const act_isa_kernels *act_avx512_kernels(void) { return &avx512_kernels; }

#else
const act_isa_kernels *act_avx512_kernels(void) { return NULL; }
#endif
