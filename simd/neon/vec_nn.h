/* simd/neon/vec_nn.h — what simd/common/nn.c and attn.c need beyond vec.h: sums of
 * squares in double, and attention's block sizes for this ISA (ATTN_*). A `vd` holds one
 * float vector widened to two double vectors; squares of floats are exact in double, so
 * only the (vector-parallel) summation rounds. */
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
/* a + p[0:VF_LANES]^2 from memory */
static inline vd vd_add_sq_at(vd a, const float *p) { return vd_add_sq(a, vf_load(p)); }
static inline double vd_hsum(vd a) { return vaddvq_f64(vaddq_f64(a.lo, a.hi)); }

/* attention (simd/common/attn.c) tuned for 32 q registers: 2 x 4 query lanes against
 * 8 keys (16 accumulators); the row (decode) path scores 8 keys (two vectors) per group */
#define ATTN_KG 8          /* keys per group of the query-block path */
#define ATTN_AXPY_ROWS 4   /* rows of the transposed output updated together */
#define ATTN_ROWS_BELOW 3  /* fewer queries than this take the row path (measured crossover) */
#define ATTN_ROW_VECS 2    /* row path: ATTN_ROW_VECS * VF_LANES keys per group */
#define ATTN_UPD_VECS 4    /* dK/dV update: head-dim vectors per key held in registers */
#define ATTN_PREFETCH 0    /* prefetch the rows of the next query block */
#endif
