/* simd/avx512/vec_q.h — the avx512 sets use the 256-bit x86 block dot (a block is 32
 * bytes: one ymm); built with -mavx512vnni it becomes vpdpbusd, in the library that
 * upgrades the avx512 table when cpuid reports AVX512_VNNI. That build also runs the
 * repacked GEMV 16 rows per zmm ("wide"): two 8-row groups side by side, one vpdpbusd
 * per 4 weights of 16 rows with x's 4 bytes broadcast from memory, and a software
 * prefetch ahead of both groups' streams. */
#ifndef PARLM_SIMD_AVX512_VEC_Q_H
#define PARLM_SIMD_AVX512_VEC_Q_H
#include "../avx2/vec_q.h"

#ifdef __AVX512VNNI__
#define QV_NAME(x) parlm_avx512vnni_##x

#define QR_WIDE 1
/* Bytes ahead of each group's stream to prefetch: the hardware prefetchers do not run far
 * enough ahead of the two streams. Zen 5, one thread, 50304 x 768 from memory (busy
 * machine): Q4_0 1.61 ms without, 1.34 ms at 1 KB, 0.63 at 8 KB, 0.54 at 16 KB, 0.61 at
 * 32 KB; Q8_0 1.93 ms without, 1.20 at 16 KB, 1.32 at 32 KB. */
#ifndef QR_PREFETCH
#define QR_PREFETCH 16384
#endif
typedef __m512 qrwacc; /* f32 sums of 16 rows: group g in lanes 0..7, group g + 1 in 8..15 */

/* 32 bytes of group g's chunk and 32 of group g + 1's, as one zmm */
static inline __m512i qrw_load2(const uint8_t *a, const uint8_t *b)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)),
                              _mm256_loadu_si256((const __m256i *)b), 1);
}

static inline __m512i qrw_bcast4(const int8_t *x)
{
    int32_t v;
    memcpy(&v, x, 4);
    return _mm512_set1_epi32(v);
}

/* The 16 rows' exact int32 dots with x's block: the -o sum(x) correction of the unsigned
 * weights is the accumulator's start value, so it costs nothing per chunk */
static inline __m512i qrw_dot(const uint8_t *c0, const uint8_t *c1, const int8_t *x, int32_t s,
                              int q4)
{
    __m512i a = _mm512_set1_epi32(-(q4 ? 8 : 128) * s), b = _mm512_setzero_si512();
    if (q4) {
        const __m512i m4 = _mm512_set1_epi8(15);
        for (int c = 0; c < 4; c++) {
            __m512i v = qrw_load2(c0 + 32 * c, c1 + 32 * c);
            a = _mm512_dpbusd_epi32(a, _mm512_and_si512(v, m4), qrw_bcast4(x + 4 * c));
            b = _mm512_dpbusd_epi32(b, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4),
                                    qrw_bcast4(x + 16 + 4 * c));
        }
    } else {
        for (int c = 0; c < 8; c += 2) {
            a = _mm512_dpbusd_epi32(a, qrw_load2(c0 + 32 * c, c1 + 32 * c), qrw_bcast4(x + 4 * c));
            b = _mm512_dpbusd_epi32(b, qrw_load2(c0 + 32 * c + 32, c1 + 32 * c + 32),
                                    qrw_bcast4(x + 4 * c + 4));
        }
    }
    return _mm512_add_epi32(a, b);
}

/* the 16 rows' f16 scales times x's scale */
static inline qrwacc qrw_scales(const uint8_t *d0, const uint8_t *d1, float dx)
{
    __m128i h0 = _mm_loadu_si128((const __m128i *)d0), h1 = _mm_loadu_si128((const __m128i *)d1);
    __m256i h = _mm256_inserti128_si256(_mm256_castsi128_si256(h0), h1, 1);
    return _mm512_mul_ps(_mm512_cvtph_ps(h), _mm512_set1_ps(dx));
}

static inline qrwacc qrw_zero(void) { return _mm512_setzero_ps(); }
static inline qrwacc qrw_add(qrwacc a, qrwacc b) { return _mm512_add_ps(a, b); }
static inline qrwacc qrw_fma(qrwacc a, qrwacc s, __m512i d)
{
    return _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(d), a);
}
static inline void qrw_store(float *out, qrwacc a) { _mm512_storeu_ps(out, a); }

/* every cache line of [p, p + n) */
static inline void qrw_prefetch(const uint8_t *p, int64_t n)
{
#if QR_PREFETCH > 0
    for (int64_t o = 0; o < n; o += 64)
        _mm_prefetch((const char *)(p + QR_PREFETCH + o), _MM_HINT_T0);
#else
    (void)p, (void)n;
#endif
}
#endif
#endif
