/* simd/avx512/vec_nn.h — what simd/common/nn.c needs beyond vec.h: sums of squares in
 * double. A `vd` holds one float vector widened to two double vectors; squares of floats
 * are exact in double, so only the (vector-parallel) summation rounds. */
#ifndef PARLM_SIMD_AVX512_VEC_NN_H
#define PARLM_SIMD_AVX512_VEC_NN_H
#include "vec.h"

typedef struct { __m512d lo, hi; } vd;
static inline vd vd_zero(void) { return (vd){_mm512_setzero_pd(), _mm512_setzero_pd()}; }
/* a + x^2, lane by lane in double */
static inline vd vd_add_sq(vd a, vf x)
{
    __m512d x0 = _mm512_cvtps_pd(_mm512_castps512_ps256(x));
    __m512d x1 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(x, 1));
    return (vd){_mm512_fmadd_pd(x0, x0, a.lo), _mm512_fmadd_pd(x1, x1, a.hi)};
}
static inline double vd_hsum(vd a) { return _mm512_reduce_add_pd(_mm512_add_pd(a.lo, a.hi)); }
#endif
