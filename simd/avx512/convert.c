/* simd/avx512/convert.c — f32 <-> bf16 with AVX-512 integer arithmetic.
 * bf16 is the top half of an f32: widening is a shift; narrowing rounds to nearest even
 * by adding 0x7fff + (bit 16) before the shift, and a NaN keeps its top bits with the
 * quiet bit set (an all-integer round would carry a NaN's payload into the exponent).
 * Bitwise the same as the scalar reference, denormals included. */
#include <immintrin.h>

#include "avx512.h"

static inline __mmask16 mask16(int64_t n)
{
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
}

/* 16 f32 bit patterns -> 16 bf16 in the low halves of the 32-bit lanes */
static inline __m512i round_bf16(__m512i u)
{
    __m512i one = _mm512_set1_epi32(1);
    __m512i bias = _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                    _mm512_and_si512(_mm512_srli_epi32(u, 16), one));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, bias), 16);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    __m512i q = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    return _mm512_mask_mov_epi32(r, nan, q);
}

static void f32_to_bf16(const float *x, uint16_t *y, int64_t n)
{
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = mask16(n - i);
        __m512i u = _mm512_castps_si512(_mm512_maskz_loadu_ps(m, x + i));
        _mm512_mask_cvtepi32_storeu_epi16(y + i, m, round_bf16(u));
    }
}

static void bf16_to_f32(const uint16_t *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = mask16(n - i);
        __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, x + i));
        _mm512_mask_storeu_ps(y + i, m, _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)));
    }
}

void parlm_avx512_convert_fill(parlm_kernels *k)
{
    k->f32_to_bf16 = f32_to_bf16;
    k->bf16_to_f32 = bf16_to_f32;
}
