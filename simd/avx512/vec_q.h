/* simd/avx512/vec_q.h — the avx512 sets use the 256-bit x86 block dot (a block is 32
 * bytes: one ymm); built with -mavx512vnni it becomes vpdpbusd, in the library that
 * upgrades the avx512 table when cpuid reports AVX512_VNNI. That build also runs the
 * repacked GEMV a zmm at a time ("wide"): two consecutive 32-byte chunks of one 8-row
 * group, so the weights are read front to back as one stream, with x's dwords permuted
 * to match and the two halves' int32 sums added before the f32 scale. */
#ifndef PARLM_SIMD_AVX512_VEC_Q_H
#define PARLM_SIMD_AVX512_VEC_Q_H
#include "../avx2/vec_q.h"

#ifdef __AVX512VNNI__
#define QV_NAME(x) parlm_avx512vnni_##x

#define QR_WIDE 1
/* x's dwords c and c + 1, each broadcast over 8 lanes: the x of a zmm holding chunks c and
 * c + 1 of one group (row j's 4 weights in lanes j and 8 + j) */
static inline __m512i qrw_x2(__m512i x, int c)
{
    const __m512i lo = _mm512_set1_epi32(c), hi = _mm512_set1_epi32(c + 1);
    return _mm512_permutexvar_epi32(_mm512_mask_blend_epi32(0xff00, lo, hi), x);
}

/* the 8 rows' exact int32 dots: lanes j and 8 + j of s are row j's two halves */
static inline __m256i qrw_fold(__m512i s)
{
    return _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
}

/* Q8_0: one group's 8 chunks (w + 128) as 4 zmm in memory order, so that a GEMV reads one
 * stream; the -128 sum(x) correction is the accumulator's start value */
static inline __m256i qrw_dot_q8(const uint8_t *ch, const int8_t *x, int32_t s)
{
    __m512i xv = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)x));
    __m512i a = _mm512_maskz_set1_epi32(0x00ff, -128 * s), b = _mm512_setzero_si512();
    a = _mm512_dpbusd_epi32(a, _mm512_loadu_si512(ch), qrw_x2(xv, 0));
    b = _mm512_dpbusd_epi32(b, _mm512_loadu_si512(ch + 64), qrw_x2(xv, 2));
    a = _mm512_dpbusd_epi32(a, _mm512_loadu_si512(ch + 128), qrw_x2(xv, 4));
    b = _mm512_dpbusd_epi32(b, _mm512_loadu_si512(ch + 192), qrw_x2(xv, 6));
    return qrw_fold(_mm512_add_epi32(a, b));
}

/* Q4_0: 4 chunks of nibbles as 2 zmm. The high nibbles are masked in place (16 q): their
 * sum is shifted down once, exactly, instead of shifting every vector. */
static inline __m256i qrw_dot_q4(const uint8_t *ch, const int8_t *x, int32_t s)
{
    const __m512i m4 = _mm512_set1_epi8(15);
    __m512i xv = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)x));
    __m512i v0 = _mm512_loadu_si512(ch), v1 = _mm512_loadu_si512(ch + 64);
    __m512i lo = _mm512_maskz_set1_epi32(0x00ff, -8 * s), hi = _mm512_setzero_si512();
    lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(v0, m4), qrw_x2(xv, 0));
    hi = _mm512_dpbusd_epi32(hi, _mm512_andnot_si512(m4, v0), qrw_x2(xv, 4));
    lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(v1, m4), qrw_x2(xv, 2));
    hi = _mm512_dpbusd_epi32(hi, _mm512_andnot_si512(m4, v1), qrw_x2(xv, 6));
    return qrw_fold(_mm512_add_epi32(lo, _mm512_srai_epi32(hi, 4)));
}

#endif
#endif
