/* simd/avx512/bf16.c — AVX512-BF16 kernels (built with -mavx512bf16, used only when the
 * CPU has the extension): they upgrade the avx512 table in place.
 * vdpbf16ps adds a[2p]*b[2p] + a[2p+1]*b[2p+1] into each f32 lane, so the packed k-pair
 * layout of simd/kernels.h feeds it directly: one 32-bit broadcast of an A pair against a
 * vector of 16 B pairs. Like the f32 kernel, an 8 x 32 tile lives in 16 accumulators.
 * The instruction treats bf16 denormals (|x| < 2^-126) as zero; vcvtneps2bf16 does too,
 * so the conversion redoes denormal lanes with the integer rounding of the reference. */
#include <immintrin.h>
#include <string.h>

#include "avx512.h"

#define MR 8
#define NR 32

#include "vec_pack.h"

static void bgemm_ukr(int64_t kc2, const uint16_t *ap, const uint16_t *bp, float *c,
                      int64_t ldc, float alpha, float beta, int m, int n)
{
    __m512 acc[MR][2];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
        acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    prefetch_tile(c, ldc, m);
    for (int64_t p = 0; p < kc2; p++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512(bp), b1 = (__m512bh)_mm512_load_si512(bp + 32);
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            uint32_t pair;
            memcpy(&pair, ap + 2 * i, 4);
            __m512bh a = (__m512bh)_mm512_set1_epi32((int)pair);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], a, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], a, b1);
        }
        ap += 2 * MR;
        bp += 2 * NR;
    }
    store_tile(acc, c, ldc, alpha, beta, m, n);
}

/* Integer round-to-nearest-even of 16 f32 bit patterns (as simd/avx512/convert.c), for
 * the denormal lanes only: NaN needs no care there. */
static inline __m256i round_bf16_int(__m512i u)
{
    __m512i bias = _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                    _mm512_and_si512(_mm512_srli_epi32(u, 16),
                                                     _mm512_set1_epi32(1)));
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_add_epi32(u, bias), 16));
}

static void f32_to_bf16(const float *x, uint16_t *y, int64_t n)
{
    const __m512i expo = _mm512_set1_epi32(0x7f800000), mant = _mm512_set1_epi32(0x007fffff);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = mask16(n - i);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        __m256i h = (__m256i)_mm512_cvtneps_pbh(v);
        __m512i u = _mm512_castps_si512(v);
        __mmask16 denorm = _mm512_testn_epi32_mask(u, expo) & _mm512_test_epi32_mask(u, mant);
        if (denorm)
            h = _mm256_mask_mov_epi16(h, denorm, round_bf16_int(u));
        _mm256_mask_storeu_epi16(y + i, m, h);
    }
}

void parlm_kernels_avx512bf16(parlm_kernels *k)
{
    k->bgemm_mr = MR;
    k->bgemm_nr = NR;
    k->bgemm_ukr = bgemm_ukr;
    k->bgemm_dot = "vdpbf16ps";
    k->f32_to_bf16 = f32_to_bf16;
}
