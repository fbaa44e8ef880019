/* simd/avx2/convert.c — f32 <-> bf16 with AVX2 integer arithmetic.
 * bf16 is the top half of an f32: widening is a shift; narrowing rounds to nearest even
 * by adding 0x7fff + (bit 16) before the shift, and a NaN keeps its top bits with the
 * quiet bit set. Bitwise the same as the scalar reference; the last n % 8 elements go
 * through the scalar helper (AVX2 has no 16-bit masked stores). */
#include <immintrin.h>

#include "../scalar/scalar.h"
#include "avx2.h"

/* 8 f32 bit patterns -> 8 bf16 (RNE, NaN quieted) in the low halves of the lanes */
static inline __m256i round_bf16(__m256i u)
{
    __m256i bias = _mm256_add_epi32(_mm256_set1_epi32(0x7fff),
                                    _mm256_and_si256(_mm256_srli_epi32(u, 16),
                                                     _mm256_set1_epi32(1)));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
    /* |u| > inf as signed compare: both sides are < 2^31 once the sign is cleared */
    __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                     _mm256_set1_epi32(0x7f800000));
    __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    return _mm256_blendv_epi8(r, q, nan);
}

static void f32_to_bf16(const float *x, uint16_t *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i a = round_bf16(_mm256_castps_si256(_mm256_loadu_ps(x + i)));
        __m256i b = round_bf16(_mm256_castps_si256(_mm256_loadu_ps(x + i + 8)));
        /* packus works per 128-bit lane: a0 b0 a1 b1 -> restore a0 a1 b0 b1 */
        __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xd8);
        _mm256_storeu_si256((__m256i *)(y + i), p);
    }
    for (; i < n; i++)
        y[i] = parlm_f32_to_bf16_1(x[i]);
}

static void bf16_to_f32(const uint16_t *x, float *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
    }
    for (; i < n; i++)
        y[i] = parlm_bf16_to_f32_1(x[i]);
}

void parlm_avx2_convert_fill(parlm_kernels *k)
{
    k->f32_to_bf16 = f32_to_bf16;
    k->bf16_to_f32 = bf16_to_f32;
}
