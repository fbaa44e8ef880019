/* simd/avx512/vec_pack.h — the AVX-512 GEMM pieces both bf16 k-pair kernels share
 * (simd/avx512/gemm.c's widening one and simd/avx512/bf16.c's vdpbf16ps one): tail masks,
 * the C-tile prefetch and the alpha/beta write-back of an MR x 32 tile held in two vectors
 * per row. Include after defining MR and NR (= 32). */
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

/* The C tile is touched only after the k loop: ask for its lines now, so they arrive
 * while the FMAs run (a strided 8-row tile is invisible to the hardware prefetcher).
 * Into L2, not L1: in L1 they would compete with the B panel for the same sets.
 * Always inlined: as a function of its own, GCC finds it free of side effects and drops
 * the calls (as it would any function that only prefetches). */
static inline __attribute__((always_inline)) void prefetch_tile(const float *c, int64_t ldc,
                                                                 int m)
{
    for (int i = 0; i < m; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T1);
        _mm_prefetch((const char *)(c + i * ldc + NR - 1), _MM_HINT_T1);
    }
}
