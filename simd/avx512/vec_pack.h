/* simd/avx512/vec_pack.h — the AVX-512 GEMM pieces both bf16 k-pair kernels share
 * (simd/avx512/gemm.c's widening one and simd/avx512/bf16.c's vdpbf16ps one): tail masks,
 * the C-tile prefetch and the alpha/beta write-back of an MR x 32 tile held in two vectors
 * per row. Include after defining MR and NR (= 32). */
#include <immintrin.h>
#include <stdint.h>

/* lanes [0, n) of 16, n clamped to [0, 16] */
static inline __mmask16 mask16(int64_t n)
{
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1u);
}

/* C[0:m, 0:n] = alpha * acc + beta * C for an MR x NR tile held as acc[i][0..1].
 * beta == 0 never reads C. Full and edge tiles share this path: masks cost nothing. */
static inline void store_tile(__m512 acc[MR][2], float *c, int64_t ldc, float alpha,
                              float beta, int m, int n)
{
    __mmask16 k0 = mask16(n), k1 = mask16(n - 16);
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        if (i >= m)
            break;
        float *ci = c + i * ldc;
        __m512 r0 = _mm512_mul_ps(va, acc[i][0]), r1 = _mm512_mul_ps(va, acc[i][1]);
        if (beta != 0.0f) {
            r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k0, ci), r0);
            r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k1, ci + 16), r1);
        }
        _mm512_mask_storeu_ps(ci, k0, r0);
        _mm512_mask_storeu_ps(ci + 16, k1, r1);
    }
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
