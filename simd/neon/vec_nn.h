/* simd/neon/vec_nn.h — what simd/common/nn.c needs beyond vec.h: sums of squares in
 * double. A `vd` holds one float vector widened to two double vectors; squares of floats
 * are exact in double, so only the (vector-parallel) summation rounds. */
#ifndef PARLM_SIMD_NEON_VEC_NN_H
#define PARLM_SIMD_NEON_VEC_NN_H
#include "vec.h"

typedef struct { float64x2_t lo, hi; } vd;
static inline vd vd_zero(void) { return (vd){vdupq_n_f64(0.0), vdupq_n_f64(0.0)}; }
/* a + x^2, lane by lane in double */
static inline vd vd_add_sq(vd a, vf x)
{
    float64x2_t x0 = vcvt_f64_f32(vget_low_f32(x)), x1 = vcvt_high_f64_f32(x);
    return (vd){vfmaq_f64(a.lo, x0, x0), vfmaq_f64(a.hi, x1, x1)};
}
static inline double vd_hsum(vd a) { return vaddvq_f64(vaddq_f64(a.lo, a.hi)); }
#endif
