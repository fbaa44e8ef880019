/* simd/avx2/vec_nn.h — what simd/common/nn.c needs beyond vec.h: sums of squares in
 * double. A `vd` holds one float vector widened to two double vectors; squares of floats
 * are exact in double, so only the (vector-parallel) summation rounds. */
#ifndef PARLM_SIMD_AVX2_VEC_NN_H
#define PARLM_SIMD_AVX2_VEC_NN_H
#include "vec.h"

typedef struct { __m256d lo, hi; } vd;
static inline vd vd_zero(void) { return (vd){_mm256_setzero_pd(), _mm256_setzero_pd()}; }
/* a + x^2, lane by lane in double */
static inline vd vd_add_sq(vd a, vf x)
{
    __m256d x0 = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
    __m256d x1 = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
    return (vd){_mm256_fmadd_pd(x0, x0, a.lo), _mm256_fmadd_pd(x1, x1, a.hi)};
}
static inline double vd_hsum(vd a)
{
    __m256d s = _mm256_add_pd(a.lo, a.hi);
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}
#endif
