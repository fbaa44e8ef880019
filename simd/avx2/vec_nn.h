/* simd/avx2/vec_nn.h — what simd/common/nn.c and attn.c need beyond vec.h: sums of
 * squares in double, and attention's block sizes for this ISA (ATTN_*). A `vd` holds one
 * float vector widened to two double vectors; squares of floats are exact in double, so
 * only the (vector-parallel) summation rounds. */
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
/* a + p[0:8]^2 from memory: two 4-float loads fold into vcvtps2pd, where widening a
 * loaded vector costs a lane extract more (port 5, which the conversions share) */
static inline vd vd_add_sq_at(vd a, const float *p)
{
    __m256d x0 = _mm256_cvtps_pd(_mm_loadu_ps(p)), x1 = _mm256_cvtps_pd(_mm_loadu_ps(p + 4));
    return (vd){_mm256_fmadd_pd(x0, x0, a.lo), _mm256_fmadd_pd(x1, x1, a.hi)};
}
static inline double vd_hsum(vd a)
{
    __m256d s = _mm256_add_pd(a.lo, a.hi);
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

/* attention (simd/common/attn.c) tuned for 16 ymm registers: half the AVX-512 block
 * (2 x 8 query lanes) and half its key group; P.V updates 2 rows at a time */
#define ATTN_KG 4          /* keys per group of the query-block path */
#define ATTN_AXPY_ROWS 2   /* rows of the transposed output updated together */
#define ATTN_ROWS_BELOW 5  /* fewer queries than this take the row path (measured crossover) */
#define ATTN_ROW_VECS 1    /* row path: ATTN_ROW_VECS * VF_LANES keys per group */
#define ATTN_UPD_VECS 2    /* dK/dV update: head-dim vectors per key held in registers */
#define ATTN_PREFETCH 0    /* prefetch the rows of the next query block */
#endif
