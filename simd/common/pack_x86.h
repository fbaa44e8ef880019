/* simd/common/pack_x86.h — the 8 x 8 f32 transpose both x86 GEMM packers (simd/avx2,
 * simd/avx512) move source rows through; AVX2 instructions only, so either ISA's flags
 * compile it. Lane half h of a[i] / b[i] holds row i + 4h at words 0-3 / 4-7, so unpack +
 * shuffle within 128-bit lanes finish the job (256-bit shuffles: two per cycle on cores
 * that split 512-bit ones). */
#include <immintrin.h>

static inline __attribute__((always_inline)) void pack_transpose8(const __m256 a[4],
                                                                  const __m256 b[4], __m256 o[8])
{
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const __m256 *v = h ? b : a;
        __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
        __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
        o[4 * h] = _mm256_shuffle_ps(t0, t2, 0x44);
        o[4 * h + 1] = _mm256_shuffle_ps(t0, t2, 0xee);
        o[4 * h + 2] = _mm256_shuffle_ps(t1, t3, 0x44);
        o[4 * h + 3] = _mm256_shuffle_ps(t1, t3, 0xee);
    }
}
