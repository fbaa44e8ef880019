/* simd/avx2/gemm.c — AVX2 + FMA GEMM micro-kernels and packing (GEMVs: common/gemv.c).
 * The f32 micro-kernel keeps a 6 x 16 block of C in 12 ymm accumulators (two FMAs per
 * cycle with 4-cycle latency want >= 8 in flight); 12 + 2 B vectors + 1 broadcast = 15 of
 * the 16 registers. Edges use vmaskmov loads/stores (never a scalar loop). bf16 widens
 * each bf16 of a k pair to f32 in registers (shift / mask: exact). */
#include <immintrin.h>
#include <string.h>

#include "avx2.h"
#include "vec.h"
#include "../common/gemm_store.h"
#include "../common/pack.h"
#include "../common/pack_x86.h"

#define MR 6
#define NR 16
/* transposes prefetch the source rows this far ahead (as simd/avx512/gemm.c) */
#define PACK_AHEAD_ROWS 16

/* lanes [0, n) of 8 set, n clamped to [0, 8] */
static inline __m256i mask8(int64_t n)
{
    int v = n < 0 ? 0 : n > 8 ? 8 : (int)n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(v), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* C[0:m, 0:n] = alpha * acc + beta * C; beta == 0 never reads C. */
static inline __attribute__((always_inline)) void store_tile(__m256 acc[MR][2], float *c,
                                                              int64_t ldc, float alpha,
                                                              float beta, int m, int n)
{
    gemm_store_tile(&acc[0][0], MR, 2, 2, c, ldc, alpha, beta, m, n);
}

static void sgemm_ukr(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                      float alpha, float beta, int m, int n)
{
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
        acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    gemm_prefetch_tile(c, ldc, m, NR);
    for (int64_t p = 0; p < kc; p++) {
        __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            __m256 a = _mm256_broadcast_ss(ap + i);
            acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
        }
        ap += MR;
        bp += NR;
    }
    store_tile(acc, c, ldc, alpha, beta, m, n);
}

#include "../common/gemm_bf16.h"

/* ---- packing ----------------------------------------------------------------------
 * Copies read the source block row by row; transposes move 8 source rows x 8 words at a
 * time through registers (AVX2 has no 16-bit masked loads: ragged ends go through a
 * small zero-padded copy). */

/* 4 words at word k of a row of `len` source elements (4-byte words, or with half the
 * 2-byte halves of words), zero past the end. */
static inline __m128 load4(const char *row, int64_t k, int64_t len, int half)
{
    int64_t have = half ? len - 2 * k : len - k, want = half ? 8 : 4, es = half ? 2 : 4;
    if (have >= want)
        return _mm_loadu_ps((const float *)(row + 4 * k));
    float tmp[4] = {0, 0, 0, 0};
    if (have > 0)
        memcpy(tmp, row + 4 * k, (size_t)(have * es));
    return _mm_loadu_ps(tmp);
}

/* Stores lanes [0, lanes) of v at p. */
static inline void store_lanes(float *p, __m256 v, int lanes)
{
    if (lanes >= 8)
        _mm256_storeu_ps(p, v);
    else
        _mm256_maskstore_ps(p, mask8(lanes), v);
}

/* Prefetches word k0 of the row PACK_AHEAD_ROWS below `row` (never dereferenced, so
 * running past the block is harmless; the address is formed as an integer). Always
 * inlined, as prefetch_tile. */
static inline __attribute__((always_inline)) void prefetch_ahead(const char *row,
                                                                  int64_t rs_bytes, int64_t k0)
{
    uintptr_t a = (uintptr_t)row + (uintptr_t)(PACK_AHEAD_ROWS * rs_bytes + 4 * k0);
    _mm_prefetch((const char *)a, _MM_HINT_T0);
}

/* out[k*w + i] = word k of row i for i < lanes (<= 8; row i at x + i*rs_bytes; rows >= mn
 * read as zero, without access), for the ceil(len / (1 + half)) words of a row. */
static inline __attribute__((always_inline)) void
transpose_rows8(int64_t len, int half, int64_t mn, const char *x, int64_t rs_bytes, int w,
                int lanes, float *out)
{
    int64_t kw = half ? (len + 1) / 2 : len, kfull = half ? len / 2 / 8 * 8 : len / 8 * 8;
    const char *row[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        row[i] = (const char *)((uintptr_t)x + (uintptr_t)(i * rs_bytes));
    int64_t k0 = 0;
    if (mn >= 8 && lanes == 8)
        for (; k0 < kfull; k0 += 8) {
            __m256 a[4], b[4], o[8];
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                prefetch_ahead(row[i], rs_bytes, k0);
                prefetch_ahead(row[i + 4], rs_bytes, k0);
                const float *lo = (const float *)row[i] + k0, *hi = (const float *)row[i + 4] + k0;
                a[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(lo)),
                                            _mm_loadu_ps(hi), 1);
                b[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(lo + 4)),
                                            _mm_loadu_ps(hi + 4), 1);
            }
            pack_transpose8(a, b, o);
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++)
                _mm256_storeu_ps(out + (k0 + j) * w, o[j]);
        }
    for (; k0 < kw; k0 += 8) {
        __m256 a[4], b[4], o[8];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            int64_t l0 = i < mn ? len : 0, l1 = i + 4 < mn ? len : 0;
            a[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(load4(row[i], k0, l0, half)),
                                        load4(row[i + 4], k0, l1, half), 1);
            b[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(load4(row[i], k0 + 4, l0, half)),
                                        load4(row[i + 4], k0 + 4, l1, half), 1);
        }
        pack_transpose8(a, b, o);
        for (int j = 0; j < 8 && k0 + j < kw; j++)
            store_lanes(out + (k0 + j) * w, o[j], lanes);
    }
}

static void spack(int64_t kc, int64_t mn, const float *x, int64_t rs, int64_t cs, int w,
                  float *out)
{
    int64_t ps = pack_panel_stride(kc, w), np = (mn + w - 1) / w;
    if (rs != 1 && cs != 1) { /* not a layout of this set: plain loops */
        pack_plain_f32(kc, mn, x, 0, rs, cs, w, out);
        return;
    }
    if (rs == 1) { /* copy: 8 block rows at a time, each read in order across the panels */
        for (int64_t k0 = 0; k0 < kc; k0 += 8) {
            int64_t kn = kc - k0 < 8 ? kc - k0 : 8;
            for (int64_t q = 0; q < np; q++) {
                const float *src = x + q * w;
                float *dst = out + q * ps;
                if (w % 8 == 0 && (q + 1) * w <= mn)
                    for (int64_t k = k0; k < k0 + kn; k++)
                        for (int i = 0; i < w; i += 8)
                            _mm256_storeu_ps(dst + k * w + i, _mm256_loadu_ps(src + k * cs + i));
                else
                    for (int64_t k = k0; k < k0 + kn; k++)
                        for (int i = 0; i < w; i += 8) {
                            __m256 v = _mm256_maskload_ps(src + k * cs + i,
                                                          mask8(mn - q * w - i));
                            _mm256_maskstore_ps(dst + k * w + i, mask8(w - i), v);
                        }
            }
        }
        return;
    }
    for (int64_t q = 0; q < np; q++) /* transpose, 8 rows at a time */
        for (int g = 0; g < w; g += 8) {
            int64_t r = q * w + g;
            /* rows past mn are never read: their address is only formed */
            const char *src = (const char *)((uintptr_t)x + (uintptr_t)(4 * r * rs));
            transpose_rows8(kc, 0, mn - r, src, 4 * rs, w, w - g < 8 ? w - g : 8,
                            out + q * ps + g);
        }
}

/* 8 bf16 at p, zero past n (n may be < 8) */
static inline __m128i load8_u16(const uint16_t *p, int64_t n)
{
    if (n >= 8)
        return _mm_loadu_si128((const __m128i *)p);
    uint16_t tmp[8] = {0};
    if (n > 0)
        memcpy(tmp, p, (size_t)n * 2);
    return _mm_loadu_si128((const __m128i *)tmp);
}

static void bpack(int64_t kc, int64_t mn, const uint16_t *x, int64_t rs, int64_t cs, int w,
                  uint16_t *out)
{
    int64_t kc2 = (kc + 1) / 2, ps = pack_panel_stride(kc2, w), np = (mn + w - 1) / w;
    if (rs != 1 && cs != 1) {
        pack_plain_bf16(kc, mn, x, rs, cs, w, out);
        return;
    }
    if (rs == 1) { /* interleave block rows 2p and 2p+1 into 32-bit pairs, 8 at a time */
        for (int64_t p0 = 0; p0 < kc2; p0 += 4) {
            int64_t pn = kc2 - p0 < 4 ? kc2 - p0 : 4;
            for (int64_t q = 0; q < np; q++)
                for (int64_t p = p0; p < p0 + pn; p++) {
                    const uint16_t *r0 = x + 2 * p * cs + q * w;
                    int odd = 2 * p + 1 < kc;
                    for (int i = 0; i < w; i += 8) {
                        int64_t have = mn - q * w - i;
                        __m128i e = load8_u16(r0 + i, have);
                        __m128i o = odd ? load8_u16(r0 + cs + i, have) : _mm_setzero_si128();
                        __m256 v = _mm256_castsi256_ps(_mm256_set_m128i(_mm_unpackhi_epi16(e, o),
                                                                        _mm_unpacklo_epi16(e, o)));
                        store_lanes((float *)(out + 2 * q * ps + (p * w + i) * 2), v,
                                    w - i < 8 ? w - i : 8);
                    }
                }
        }
        return;
    }
    for (int64_t q = 0; q < np; q++) /* transpose: a row's k pairs are 32-bit words already */
        for (int g = 0; g < w; g += 8) {
            int64_t r = q * w + g;
            const char *src = (const char *)((uintptr_t)x + (uintptr_t)(2 * r * rs));
            transpose_rows8(kc, 1, mn - r, src, 2 * rs, w, w - g < 8 ? w - g : 8,
                            (float *)(out + 2 * q * ps + 2 * g));
        }
}

#define SNR NR
#define GEMM_WPACK NULL
#include "../common/gemm_fill.h"

/* simd/common/gemv.c, compiled for this ISA */
void parlm_avx2_gemv_fill(parlm_kernels *k);

void parlm_avx2_gemm_fill(parlm_kernels *k)
{
    gemm_fill(k);
    parlm_avx2_gemv_fill(k);
}
