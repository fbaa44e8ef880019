/* simd/avx2/vec_q.h — the x86 int8 block dot of simd/common/qgemv.c (AVX2, and AVX-512
 * through simd/avx512/vec_q.h). vpmaddubsw multiplies unsigned by signed bytes, so the
 * weight's sign moves onto x: |w| * sign(w) x. With AVX512-VNNI (+VL) vpdpbusd does the
 * same products and sums four of them into an int32 lane in one instruction. */
#ifndef PARLM_SIMD_X86_VEC_Q_H
#define PARLM_SIMD_X86_VEC_Q_H
#include <immintrin.h>
#include <stdint.h>

typedef __m256 qacc;  /* f32 partial sums of one row */
typedef __m256i qint; /* int32 partial sums of one block's dot */

static inline qint q_dot_s8(__m256i w, __m256i x)
{
    __m256i aw = _mm256_sign_epi8(w, w), sx = _mm256_sign_epi8(x, w);
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, sx);
#else
    /* a pair of products is at most 2 * 128 * 127 (w = -128 from a file): no saturation */
    return _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), _mm256_set1_epi16(1));
#endif
}

static inline qint q_dot_q8(const uint8_t *w, const int8_t *x)
{
    return q_dot_s8(_mm256_loadu_si256((const __m256i *)w), _mm256_loadu_si256((const __m256i *)x));
}

/* 16 bytes of nibbles: low nibbles are weights 0..15, high nibbles 16..31, each q - 8 */
static inline qint q_dot_q4(const uint8_t *nib, const int8_t *x)
{
    const __m128i m4 = _mm_set1_epi8(15);
    __m128i b = _mm_loadu_si128((const __m128i *)nib);
    __m128i lo = _mm_and_si128(b, m4), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m4);
    __m256i w = _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8));
    return q_dot_s8(w, _mm256_loadu_si256((const __m256i *)x));
}

static inline qacc qacc_zero(void) { return _mm256_setzero_ps(); }
static inline qacc qacc_add(qacc a, qacc b) { return _mm256_add_ps(a, b); }

/* a + s * dot (the int32 sums are exact in f32: |dot| < 2^24) */
static inline qacc qacc_fma(qacc a, float s, qint d)
{
    return _mm256_fmadd_ps(_mm256_set1_ps(s), _mm256_cvtepi32_ps(d), a);
}

static inline float qacc_sum(qacc a)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* the f16 block scale (exact) */
static inline float q_f16(uint16_t h)
{
#ifdef __F16C__
    return _cvtsh_ss(h);
#else /* the avx512 build has no -mf16c: the AVX512VL form of vcvtph2ps */
    return _mm_cvtss_f32(_mm_maskz_cvtph_ps(1, _mm_cvtsi32_si128(h)));
#endif
}
#endif
