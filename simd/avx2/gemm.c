/* simd/avx2/gemm.c — AVX2 + FMA GEMM micro-kernels and packing (GEMVs: common/gemv.c).
 * The f32 micro-kernel keeps a 6 x 16 block of C in 12 ymm accumulators (two FMAs per
 * cycle with 4-cycle latency want >= 8 in flight); 12 + 2 B vectors + 1 broadcast = 15 of
 * the 16 registers. The write-back, the bf16 kernel, the copy packers and the 8 x 8
 * transpose block are shared (simd/common/gemm_*.h, pack*.h); the k loop here is AVX2's. */
#include <immintrin.h>
#include <string.h>

#include "avx2.h"
#include "vec.h"
#include "../common/gemm_store.h"
#include "../common/pack.h"
#include "../common/pack_copy.h"

#define MR 6
#define NR 16
/* transposes prefetch the source rows this far ahead (as simd/avx512/gemm.c) */
#define PACK_AHEAD_ROWS 16

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

#include "../common/pack_x86.h"

/* Prefetches word k0 of the row PACK_AHEAD_ROWS below `row` (never dereferenced, so
 * running past the block is harmless; the address is formed as an integer). Always
 * inlined, as gemm_prefetch_tile. */
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
    __m256 o[8];
    if (mn >= 8 && lanes == 8)
        for (; k0 < kfull; k0 += 8) {
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++)
                prefetch_ahead(row[i], rs_bytes, k0);
            load_t8(row, k0, len, half, 8, 1, o);
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++)
                _mm256_storeu_ps(out + (k0 + j) * w, o[j]);
        }
    for (; k0 < kw; k0 += 8) {
        load_t8(row, k0, len, half, mn < 0 ? 0 : mn > 8 ? 8 : (int)mn, 0, o);
        for (int j = 0; j < 8 && k0 + j < kw; j++)
            vf_store_n(out + (k0 + j) * w, lanes, o[j]);
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
    if (rs == 1) {
        pack_copy_f32(kc, mn, x, cs, w, out);
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

static void bpack(int64_t kc, int64_t mn, const uint16_t *x, int64_t rs, int64_t cs, int w,
                  uint16_t *out)
{
    int64_t kc2 = (kc + 1) / 2, ps = pack_panel_stride(kc2, w), np = (mn + w - 1) / w;
    if (rs != 1 && cs != 1) {
        pack_plain_bf16(kc, mn, x, rs, cs, w, out);
        return;
    }
    if (rs == 1) {
        pack_copy_bf16(kc, mn, x, cs, w, out);
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
