/* simd/common/pack_x86.h — the 8 x 8 f32 transpose both x86 GEMM packers (simd/avx2,
 * simd/avx512) move source rows through, and the load of an 8 x 8 block into it; AVX2
 * instructions only, so either ISA's flags compile it. Include after defining load4.
 * Lane half h of a[i] / b[i] holds row i + 4h at words 0-3 / 4-7, so unpack + shuffle
 * within 128-bit lanes finish the job (256-bit shuffles: two per cycle on cores
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

/* 8 source rows x 8 words at word k0 -> o[j] = word k0 + j of the 8 rows. row[i] is row
 * i (never dereferenced for i >= nrows); full: all 8 rows present and the 8 words whole
 * (plain loads), else the includer's load4(row, k, len, half) reads zeros past a row's len
 * elements (4 words at word k; half: len counts the 16-bit halves of words). */
static inline __attribute__((always_inline)) void
load_t8(const char *const row[8], int64_t k0, int64_t len, int half, int nrows, int full,
        __m256 o[8])
{
    __m256 a[4], b[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        if (full) {
            const float *lo = (const float *)row[i] + k0, *hi = (const float *)row[i + 4] + k0;
            a[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(lo)),
                                        _mm_loadu_ps(hi), 1);
            b[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(lo + 4)),
                                        _mm_loadu_ps(hi + 4), 1);
        } else {
            int64_t l0 = i < nrows ? len : 0, l1 = i + 4 < nrows ? len : 0;
            a[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(load4(row[i], k0, l0, half)),
                                        load4(row[i + 4], k0, l1, half), 1);
            b[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(load4(row[i], k0 + 4, l0, half)),
                                        load4(row[i + 4], k0 + 4, l1, half), 1);
        }
    }
    pack_transpose8(a, b, o);
}
