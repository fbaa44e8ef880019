/* simd/avx512/vec_pack.h — the AVX-512 GEMM pieces both bf16 k-pair kernels share
 * (simd/common/gemm_bf16.h's widening one and simd/avx512/bf16.c's vdpbf16ps one): tail
 * masks, and the C-tile prefetch and alpha/beta write-back of simd/common/gemm_store.h for
 * an MR x 32 tile held in two vectors per row. Include after defining MR and NR (= 32). */
#include <immintrin.h>
#include <stdint.h>

#include "vec.h"
#include "../common/gemm_store.h"

/* lanes [0, n) of 16, n clamped to [0, 16] */
static inline __mmask16 mask16(int64_t n)
{
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1u);
}

/* C[0:m, 0:n] = alpha * acc + beta * C for an MR x NR tile held as acc[i][0..1]
 * (simd/common/gemm_store.h; beta == 0 never reads C). */
static inline __attribute__((always_inline)) void store_tile(__m512 acc[MR][2], float *c,
                                                              int64_t ldc, float alpha,
                                                              float beta, int m, int n)
{
    gemm_store_tile(&acc[0][0], MR, 2, 2, c, ldc, alpha, beta, m, n);
}

/* the C-tile prefetch of simd/common/gemm_store.h over the tile's NR columns */
static inline __attribute__((always_inline)) void prefetch_tile(const float *c, int64_t ldc,
                                                                 int m)
{
    gemm_prefetch_tile(c, ldc, m, NR);
}
