/* simd/avx512/vec_nn.h — what simd/common/nn.c and attn.c need beyond vec.h: sums of
 * squares in double, and attention's block sizes for this ISA (ATTN_*). A `vd` holds one
 * float vector widened to two double vectors; squares of floats are exact in double, so
 * only the (vector-parallel) summation rounds. */
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
/* a + p[0:VF_LANES]^2 from memory */
static inline vd vd_add_sq_at(vd a, const float *p) { return vd_add_sq(a, vf_load(p)); }
static inline double vd_hsum(vd a) { return _mm512_reduce_add_pd(_mm512_add_pd(a.lo, a.hi)); }

/* attention (simd/common/attn.c) tuned for 32 zmm registers: a query block of 2 x 16
 * lanes against 8 keys keeps 16 score accumulators; P.V updates 4 rows at a time; the
 * row (decode) path scores 16 keys per group; the next block's rows are prefetched
 * (3C floats apart in training, a stride the hardware prefetchers do not follow) */
#define ATTN_KG 8          /* keys per group of the query-block path */
#define ATTN_AXPY_ROWS 4   /* rows of the transposed output updated together */
#define ATTN_ROWS_BELOW 10 /* fewer queries than this take the row path (measured crossover) */
#define ATTN_ROW_VECS 1    /* row path: ATTN_ROW_VECS * VF_LANES keys per group */
#define ATTN_UPD_VECS 4    /* dK/dV update: head-dim vectors per key held in registers */
#define ATTN_PREFETCH 1    /* prefetch the rows of the next query block */
#endif
