/* simd/avx512/gemm.c — AVX-512 GEMM micro-kernels and packing (GEMVs: common/gemv.c).
 * The f32 micro-kernel keeps an 8 x 48 block of C in 24 zmm accumulators: per k step it
 * loads three vectors of B (48 columns) and broadcasts each of the 8 A values into three
 * FMAs. Cores with two 512-bit FMA pipes (Skylake-SP and later Xeons) need >= 8 chains to
 * hide the 4-cycle latency and, more to the point, a loop that issues 2 FMAs per cycle
 * within the 4-uop/cycle front end: 8 x 32 spent 30 uops per 16 FMAs (72-117 GFLOP/s of a
 * 145 peak on Cascade Lake, L1-resident), 8 x 48 spends 38 per 24 (136-143). MR = 8 divides
 * the row counts of GPT-2 training (B*T) and 48 its widths (768, 2304, 3072, 50304).
 * Edge tiles run the same loop on 1, 2 or 3 vectors and store through k-masks.
 * The bf16 k-pair kernel (used only when forced: PARLM_BF16_PATH=dot) widens each bf16 of a
 * pair to f32 in registers (a bf16 is the top half of an f32, so this is exact). */
#include <immintrin.h>
#include <string.h>

#include "avx512.h"
#include "../common/pack.h"

#define MR 8
#define NR 32 /* bf16 k-pair kernel */
#define SNR 48 /* f32 kernel */
/* transposes prefetch each source row this many bytes ahead (8 cache lines) */
#define PACK_AHEAD 512
/* copies prefetch the source row this many rows ahead: the rows of a 48-float panel of a
 * long row are far apart, each its own short stream (simd/common/pack_copy.h) */
#define PACK_COPY_AHEAD 8

#include "vec_pack.h"
#include "../common/pack_copy.h"

/* The lines of the C tile's m rows of nv vectors, asked for before the k loop (see
 * gemm_prefetch_tile in common/gemm_store.h; here each row's middle line too) */
static inline __attribute__((always_inline)) void tile_prefetch_c(const int nv, const float *c,
                                                                  int64_t ldc, int m)
{
    for (int i = 0; i < m; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T1);
        _mm_prefetch((const char *)(c + i * ldc + 16 * nv - 1), _MM_HINT_T1);
        if (nv == 3)
            _mm_prefetch((const char *)(c + i * ldc + 16), _MM_HINT_T1);
    }
}

/* The f32 tile on nv vectors (nv = 1..3, a constant after inlining): acc[i][v] holds
 * C[i, 16v : 16v+16]. The k loop runs two steps per iteration (loop overhead is uops the
 * front end would otherwise take from the FMAs). */
static inline __attribute__((always_inline)) void
sgemm_tile(const int nv, int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
           float alpha, float beta, int m, int n)
{
    __m512 acc[MR][3];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++)
            acc[i][v] = _mm512_setzero_ps();
    tile_prefetch_c(nv, c, ldc, m);
    int64_t p = 0;
    for (; p + 2 <= kc; p += 2) {
#pragma GCC unroll 2
        for (int u = 0; u < 2; u++) {
            __m512 b[3];
#pragma GCC unroll 3
            for (int v = 0; v < nv; v++)
                b[v] = _mm512_load_ps(bp + u * SNR + 16 * v);
#pragma GCC unroll 8
            for (int i = 0; i < MR; i++) {
                __m512 a = _mm512_set1_ps(ap[u * MR + i]);
#pragma GCC unroll 3
                for (int v = 0; v < nv; v++)
                    acc[i][v] = _mm512_fmadd_ps(a, b[v], acc[i][v]);
            }
        }
        ap += 2 * MR;
        bp += 2 * SNR;
    }
    if (p < kc) {
        __m512 b[3];
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++)
            b[v] = _mm512_load_ps(bp + 16 * v);
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            __m512 a = _mm512_set1_ps(ap[i]);
#pragma GCC unroll 3
            for (int v = 0; v < nv; v++)
                acc[i][v] = _mm512_fmadd_ps(a, b[v], acc[i][v]);
        }
    }
    gemm_store_tile(&acc[0][0], MR, 3, nv, c, ldc, alpha, beta, m, n);
}

static void sgemm_ukr(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                      float alpha, float beta, int m, int n)
{
    if (n > 32)
        sgemm_tile(3, kc, ap, bp, c, ldc, alpha, beta, m, n);
    else if (n > 16)
        sgemm_tile(2, kc, ap, bp, c, ldc, alpha, beta, m, n);
    else
        sgemm_tile(1, kc, ap, bp, c, ldc, alpha, beta, m, n);
}

/* The f32 tile with A read in place (sgemm_ukr_ua): row i at a + i * lda. Each A value is
 * broadcast from its row as from the packed panel, in the same order, so the sums are the
 * packed kernel's bit for bit. Rows past m point at row m - 1 (read, never stored): no row
 * outside A is touched. */
static inline __attribute__((always_inline)) void
sgemm_tile_ua(const int nv, int64_t kc, const float *a, int64_t lda, const float *bp, float *c,
              int64_t ldc, float alpha, float beta, int m, int n)
{
    __m512 acc[MR][3];
    const float *r[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        r[i] = a + (i < m ? i : m - 1) * lda;
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++)
            acc[i][v] = _mm512_setzero_ps();
    }
    tile_prefetch_c(nv, c, ldc, m);
#pragma GCC unroll 2
    for (int64_t p = 0; p < kc; p++) {
        __m512 b[3];
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++)
            b[v] = _mm512_load_ps(bp + p * SNR + 16 * v);
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            __m512 av = _mm512_set1_ps(r[i][p]);
#pragma GCC unroll 3
            for (int v = 0; v < nv; v++)
                acc[i][v] = _mm512_fmadd_ps(av, b[v], acc[i][v]);
        }
    }
    gemm_store_tile(&acc[0][0], MR, 3, nv, c, ldc, alpha, beta, m, n);
}

static void sgemm_ukr_ua(int64_t kc, const float *a, int64_t lda, const float *bp, float *c,
                         int64_t ldc, float alpha, float beta, int m, int n)
{
    if (n > 32)
        sgemm_tile_ua(3, kc, a, lda, bp, c, ldc, alpha, beta, m, n);
    else if (n > 16)
        sgemm_tile_ua(2, kc, a, lda, bp, c, ldc, alpha, beta, m, n);
    else
        sgemm_tile_ua(1, kc, a, lda, bp, c, ldc, alpha, beta, m, n);
}
#define GEMM_UKR_UA sgemm_ukr_ua

#include "../common/gemm_bf16.h"

/* ---- packing ----------------------------------------------------------------------
 * Copies read the source block row by row (long sequential streams); transposes move
 * 8 source rows x 8 words at a time through registers. */

/* 4 words at word k of a row, zero past the row's `len` source elements (32-bit words,
 * or with half the 16-bit halves of words, so an odd bf16 row ends in a half pair). */
static inline __m128 load4(const char *row, int64_t k, int64_t len, int half)
{
    if (half) {
        int64_t n = len - 2 * k;
        __mmask8 m = n >= 8 ? 0xff : n <= 0 ? 0 : (__mmask8)((1u << n) - 1u);
        return _mm_castsi128_ps(_mm_maskz_loadu_epi16(m, row + 4 * k));
    }
    int64_t n = len - k;
    __mmask8 m = n >= 4 ? 0xf : n <= 0 ? 0 : (__mmask8)((1u << n) - 1u);
    return _mm_maskz_loadu_ps(m, row + 4 * k);
}

#include "../common/pack_x86.h"

/* Stores word columns j < nj of o at word row k0 + j of a panel of width w (out points at
 * the group's column). widen: the words are bf16 pairs of k = 2(k0+j), 2(k0+j)+1 and go out
 * as two f32 rows (a bf16 is the top half of an f32: shift the even one up, mask the odd
 * one), the odd row only when k + 1 < len. */
static inline __attribute__((always_inline)) void
store_t8(const __m256 o[8], int64_t k0, int nj, int widen, int64_t len, int w, float *out)
{
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        if (j >= nj)
            break;
        if (!widen) {
            _mm256_store_ps(out + (k0 + j) * w, o[j]);
        } else {
            int64_t k = 2 * (k0 + j);
            __m256i v = _mm256_castps_si256(o[j]);
            _mm256_store_si256((__m256i *)(out + k * w), _mm256_slli_epi32(v, 16));
            if (k + 1 < len)
                _mm256_store_si256((__m256i *)(out + (k + 1) * w), _mm256_and_si256(v, hi));
        }
    }
}

/* One panel by transposition: out[k*w + i] = word k of row i (row i at x + i*rs_bytes,
 * rows >= rows read as zero, without access) for the ceil(len / (1 + half)) words of a
 * row (f32, or bf16 k pairs; widen writes the pairs as f32 rows, see store_t8).
 * A whole panel goes 16 rows at a time (w a multiple of 16) over all of k: each k step
 * then writes a whole 64-byte line of the panel (8 rows at a time wrote each line in two
 * halves, far apart in time: the panel, 147 KB at KC = 768, is larger than L1), and 16
 * source rows are streams the hardware prefetcher follows (all 48 of a panel at once
 * were not: 48 rows 3 KB apart also share 4 L1 sets). Rows are also prefetched
 * PACK_AHEAD bytes ahead, once per line. */
static inline __attribute__((always_inline)) void
transpose_panel(int64_t len, int half, int widen, int64_t rows, const char *x, int64_t rs_bytes,
                int w, float *out)
{
    int64_t kw = half ? (len + 1) / 2 : len, kfull = half ? len / 2 / 8 * 8 : len / 8 * 8;
    int64_t k0 = 0;
    if (rows >= w) {
        int gw = w % 16 == 0 ? 16 : 8; /* rows per pass */
        for (int g = 0; g < w; g += gw) {
            const char *row[16];
            for (int i = 0; i < gw; i++)
                row[i] = x + (g + i) * rs_bytes;
            for (k0 = 0; k0 < kfull; k0 += 16) {
                if (k0 + 16 <= kfull) /* never dereferenced: may run past the block */
                    for (int i = 0; i < gw; i++)
                        _mm_prefetch((const char *)((uintptr_t)row[i] +
                                                    (uintptr_t)(4 * k0 + PACK_AHEAD)),
                                     _MM_HINT_T0);
                /* both halves of a row's line back to back: with rows 4 KiB apart all in
                 * one L1 set, a line left half read would be gone by the next pass */
                for (int sub = 0; sub < gw; sub += 8)
                    for (int h = 0; h < 16 && k0 + h < kfull; h += 8) {
                        __m256 o[8];
                        load_t8(row + sub, k0 + h, len, half, 8, 1, o);
                        store_t8(o, k0 + h, 8, widen, len, w, out + g + sub);
                    }
            }
        }
        k0 = kfull;
    }
    for (; k0 < kw; k0 += 8) /* rows or words missing: masked loads */
        for (int g = 0; g < w; g += 8) {
            const char *row[8];
            __m256 o[8];
            int64_t nr = rows - g;
            for (int i = 0; i < 8; i++) /* addresses of absent rows are only formed */
                row[i] = (const char *)((uintptr_t)x + (uintptr_t)((g + i) * rs_bytes));
            load_t8(row, k0, len, half, nr < 0 ? 0 : nr > 8 ? 8 : (int)nr, 0, o);
            store_t8(o, k0, kw - k0 < 8 ? (int)(kw - k0) : 8, widen, len, w, out + g);
        }
}

/* Copy of 8-wide panels (rs == 1), two at a time: a 64-byte read, then two 32-byte panel
 * rows. bf16: x holds bf16, widened exactly (wpack). */
static inline __attribute__((always_inline)) void copy8x2(int64_t kc, int64_t mn, const void *x,
                                                          int bf16, int64_t cs, int64_t ps,
                                                          float *out)
{
    int64_t np = (mn + 7) / 8;
    for (int64_t q = 0; q < np; q += 2) {
        float *d0 = out + q * ps, *d1 = d0 + ps;
        for (int64_t k = 0; k < kc; k++) {
            __m512 v = bf16 ? vf_load_bf16_n((const uint16_t *)x + k * cs + q * 8, mn - q * 8)
                            : vf_load_n((const float *)x + k * cs + q * 8, mn - q * 8);
            _mm256_store_ps(d0 + k * 8, _mm512_castps512_ps256(v));
            if (q + 1 < np)
                _mm256_store_ps(d1 + k * 8, _mm512_extractf32x8_ps(v, 1));
        }
    }
}

static void spack(int64_t kc, int64_t mn, const float *x, int64_t rs, int64_t cs, int w,
                  float *out)
{
    int64_t ps = pack_panel_stride(kc, w), np = (mn + w - 1) / w;
    if (w % 8 != 0 || (rs != 1 && cs != 1)) {
        pack_plain_f32(kc, mn, x, 0, rs, cs, w, out);
        return;
    }
    if (rs == 1 && w == 8) {
        copy8x2(kc, mn, x, 0, cs, ps, out);
        return;
    }
    if (rs == 1) {
        pack_copy_f32(kc, mn, x, cs, w, out);
        return;
    }
    for (int64_t q = 0; q < np; q++) { /* rows past mn are never read: addresses only */
        const char *src = (const char *)((uintptr_t)x + (uintptr_t)(4 * q * w * rs));
        transpose_panel(kc, 0, 0, mn - q * w, src, 4 * rs, w, out + q * ps);
    }
}

/* bf16 source -> f32 panels of spack's layout (the widening path: the f32 micro-kernel
 * then runs on them). Widening is exact, so a GEMM through these equals the f32 GEMM of
 * the widened inputs bit for bit. */
static void wpack(int64_t kc, int64_t mn, const uint16_t *x, int64_t rs, int64_t cs, int w,
                  float *out)
{
    int64_t ps = pack_panel_stride(kc, w), np = (mn + w - 1) / w;
    if (w % 8 != 0 || (rs != 1 && cs != 1)) {
        pack_plain_f32(kc, mn, x, 1, rs, cs, w, out);
        return;
    }
    if (rs == 1 && w == 8) {
        copy8x2(kc, mn, x, 1, cs, ps, out);
        return;
    }
    if (rs == 1) { /* copy, as spack: 16 bf16 -> 16 f32 per vector */
        for (int64_t k0 = 0; k0 < kc; k0 += 8) {
            int64_t kn = kc - k0 < 8 ? kc - k0 : 8;
            for (int64_t q = 0; q < np; q++)
                for (int64_t k = k0; k < k0 + kn; k++)
                    for (int i = 0; i < w; i += 16) {
                        const uint16_t *src = x + k * cs + q * w + i;
                        __m256i h = (q + 1) * w <= mn && i + 16 <= w
                                        ? _mm256_loadu_si256((const __m256i *)src)
                                        : _mm256_maskz_loadu_epi16(mask16(mn - q * w - i), src);
                        __m512i v = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
                        _mm512_mask_storeu_epi32(out + q * ps + k * w + i, mask16(w - i), v);
                    }
        }
        return;
    }
    for (int64_t q = 0; q < np; q++) { /* transpose k pairs as words, widen on the way out */
        const char *src = (const char *)((uintptr_t)x + (uintptr_t)(2 * q * w * rs));
        transpose_panel(kc, 1, 1, mn - q * w, src, 2 * rs, w, out + q * ps);
    }
}

static void bpack(int64_t kc, int64_t mn, const uint16_t *x, int64_t rs, int64_t cs, int w,
                  uint16_t *out)
{
    int64_t kc2 = (kc + 1) / 2, ps = pack_panel_stride(kc2, w), np = (mn + w - 1) / w;
    if (w % 8 != 0 || (rs != 1 && cs != 1)) {
        pack_plain_bf16(kc, mn, x, rs, cs, w, out);
        return;
    }
    if (rs == 1) {
        pack_copy_bf16(kc, mn, x, cs, w, out);
        return;
    }
    for (int64_t q = 0; q < np; q++) { /* transpose: a row's k pairs are 32-bit words already */
        const char *src = (const char *)((uintptr_t)x + (uintptr_t)(2 * q * w * rs));
        transpose_panel(kc, 1, 0, mn - q * w, src, 2 * rs, w, (float *)(out + 2 * q * ps));
    }
}

#define GEMM_WPACK wpack
#include "../common/gemm_fill.h"

/* simd/common/gemv.c, compiled for this ISA */
void parlm_avx512_gemv_fill(parlm_kernels *k);

void parlm_avx512_gemm_fill(parlm_kernels *k)
{
    gemm_fill(k);
    parlm_avx512_gemv_fill(k);
}
