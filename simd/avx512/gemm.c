/* simd/avx512/gemm.c — AVX-512 GEMM micro-kernels, packing and GEMVs.
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
#include "../common/pack_x86.h"

#define MR 8
#define NR 32 /* bf16 k-pair kernel */
#define SNR 48 /* f32 kernel */
/* transposes prefetch each source row this many bytes ahead (8 cache lines) */
#define PACK_AHEAD 512
/* copies prefetch the source row this many rows ahead */
#define COPY_AHEAD 8
/* GEMV prefetches the weight rows this far ahead: decode weights come from memory in
 * rows of a few KB, too short for the hardware prefetcher alone */
#define GEMV_AHEAD 16

#include "vec_pack.h"

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
    for (int i = 0; i < m; i++) { /* see prefetch_tile */
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T1);
        _mm_prefetch((const char *)(c + i * ldc + 16 * nv - 1), _MM_HINT_T1);
        if (nv == 3)
            _mm_prefetch((const char *)(c + i * ldc + 16), _MM_HINT_T1);
    }
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
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        if (i >= m)
            break;
        float *ci = c + i * ldc;
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) {
            __mmask16 k = mask16(n - 16 * v);
            __m512 r = _mm512_mul_ps(va, acc[i][v]);
            if (beta != 0.0f)
                r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k, ci + 16 * v), r);
            _mm512_mask_storeu_ps(ci + 16 * v, k, r);
        }
    }
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

/* bf16 pairs -> two f32 vectors: the even element is the low half of each 32-bit lane
 * (shift it up), the odd one the high half (clear the low half). */
static inline __m512 bf16_even(__m512i v) { return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)); }
static inline __m512 bf16_odd(__m512i v)
{
    return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xffff0000u)));
}

static void bgemm_ukr(int64_t kc2, const uint16_t *ap, const uint16_t *bp, float *c,
                      int64_t ldc, float alpha, float beta, int m, int n)
{
    __m512 acc[MR][2];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
        acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    prefetch_tile(c, ldc, m);
    for (int64_t p = 0; p < kc2; p++) {
        __m512i w0 = _mm512_load_si512(bp), w1 = _mm512_load_si512(bp + 32);
        __m512 be0 = bf16_even(w0), bo0 = bf16_odd(w0), be1 = bf16_even(w1), bo1 = bf16_odd(w1);
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            uint32_t pair;
            memcpy(&pair, ap + 2 * i, 4);
            __m512i a = _mm512_set1_epi32((int)pair);
            __m512 ae = bf16_even(a), ao = bf16_odd(a);
            acc[i][0] = _mm512_fmadd_ps(ae, be0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(ae, be1, acc[i][1]);
            acc[i][0] = _mm512_fmadd_ps(ao, bo0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(ao, bo1, acc[i][1]);
        }
        ap += 2 * MR;
        bp += 2 * NR;
    }
    store_tile(acc, c, ldc, alpha, beta, m, n);
}

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

/* 8 source rows x 8 words at word k0 -> o[j] = word k0 + j of the 8 rows. row[i] is row
 * i (never dereferenced for i >= nrows); full: all 8 rows present and the 8 words whole
 * (plain loads), else masked loads read zeros past a row's len elements (load4). */
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

static void spack(int64_t kc, int64_t mn, const float *x, int64_t rs, int64_t cs, int w,
                  float *out)
{
    int64_t ps = pack_panel_stride(kc, w), np = (mn + w - 1) / w;
    if (w % 8 != 0 || (rs != 1 && cs != 1)) {
        pack_plain_f32(kc, mn, x, 0, rs, cs, w, out);
        return;
    }
    if (rs == 1 && w == 8) { /* copy of 8-wide panels: two at a time, a 64-byte read */
        for (int64_t q = 0; q < np; q += 2) {
            __mmask16 m = mask16(mn - q * 8);
            float *d0 = out + q * ps, *d1 = d0 + ps;
            for (int64_t k = 0; k < kc; k++) {
                __m512 v = _mm512_maskz_loadu_ps(m, x + k * cs + q * 8);
                _mm256_store_ps(d0 + k * 8, _mm512_castps512_ps256(v));
                if (q + 1 < np)
                    _mm256_store_ps(d1 + k * 8, _mm512_extractf32x8_ps(v, 1));
            }
        }
        return;
    }
    if (rs == 1) { /* copy: 8 block rows at a time, each read in order across the panels */
        for (int64_t k0 = 0; k0 < kc; k0 += 8) {
            int64_t kn = kc - k0 < 8 ? kc - k0 : 8;
            for (int64_t q = 0; q < np; q++) {
                const float *src = x + q * w;
                float *dst = out + q * ps;
                if (w % 16 == 0 && (q + 1) * w <= mn) /* a whole panel: no masks */
                    for (int64_t k = k0; k < k0 + kn; k++) {
                        /* rows far apart (a 48-float panel of a long row): each row is its
                         * own short stream, so fetch the one COPY_AHEAD below (an address
                         * only: may point past the block) */
                        uintptr_t ahead = (uintptr_t)(src + k * cs) +
                                          (uintptr_t)(COPY_AHEAD * cs * 4);
                        for (int i = 0; i < w; i += 16)
                            _mm_prefetch((const char *)(ahead + (uintptr_t)(4 * i)), _MM_HINT_T0);
                        _mm_prefetch((const char *)(ahead + (uintptr_t)(4 * w - 4)), _MM_HINT_T0);
                        for (int i = 0; i < w; i += 16)
                            _mm512_store_ps(dst + k * w + i, _mm512_loadu_ps(src + k * cs + i));
                    }
                else
                    for (int64_t k = k0; k < k0 + kn; k++)
                        for (int i = 0; i < w; i += 16)
                            _mm512_mask_storeu_ps(dst + k * w + i, mask16(w - i),
                                                  _mm512_maskz_loadu_ps(mask16(mn - q * w - i),
                                                                        src + k * cs + i));
            }
        }
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
    if (rs == 1 && w == 8) { /* as spack: two 8-wide panels at a time */
        for (int64_t q = 0; q < np; q += 2) {
            __mmask16 m = mask16(mn - q * 8);
            float *d0 = out + q * ps, *d1 = d0 + ps;
            for (int64_t k = 0; k < kc; k++) {
                __m256i h = _mm256_maskz_loadu_epi16(m, x + k * cs + q * 8);
                __m512 v = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
                _mm256_store_ps(d0 + k * 8, _mm512_castps512_ps256(v));
                if (q + 1 < np)
                    _mm256_store_ps(d1 + k * 8, _mm512_extractf32x8_ps(v, 1));
            }
        }
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
    if (rs == 1) { /* interleave block rows 2p and 2p+1; 4 pairs at a time, as spack */
        for (int64_t p0 = 0; p0 < kc2; p0 += 4) {
            int64_t pn = kc2 - p0 < 4 ? kc2 - p0 : 4;
            for (int64_t q = 0; q < np; q++)
                for (int64_t p = p0; p < p0 + pn; p++) {
                    const uint16_t *r0 = x + 2 * p * cs + q * w;
                    int odd = 2 * p + 1 < kc;
                    for (int i = 0; i < w; i += 16) {
                        __mmask16 m = mask16(mn - q * w - i);
                        __m512i e = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, r0 + i));
                        __m512i o = _mm512_setzero_si512();
                        if (odd)
                            o = _mm512_slli_epi32(
                                _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, r0 + cs + i)),
                                16);
                        _mm512_mask_storeu_epi32(out + 2 * q * ps + (p * w + i) * 2,
                                                 mask16(w - i), _mm512_or_si512(e, o));
                    }
                }
        }
        return;
    }
    for (int64_t q = 0; q < np; q++) { /* transpose: a row's k pairs are 32-bit words already */
        const char *src = (const char *)((uintptr_t)x + (uintptr_t)(2 * q * w * rs));
        transpose_panel(kc, 1, 0, mn - q * w, src, 2 * rs, w, (float *)(out + 2 * q * ps));
    }
}

/* ---- GEMV ------------------------------------------------------------------------ */

/* 16 weights from index p of a row as f32 (bf16 widened: exact), zero past n weights */
static inline __m512 wload(const void *row, int64_t p, int64_t n, int bf16)
{
    if (bf16) {
        const uint16_t *q = (const uint16_t *)row + p;
        __m256i h = n >= 16 ? _mm256_loadu_si256((const __m256i *)q)
                            : _mm256_maskz_loadu_epi16(mask16(n), q);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    const float *f = (const float *)row + p;
    return n >= 16 ? _mm512_loadu_ps(f) : _mm512_maskz_loadu_ps(mask16(n), f);
}

/* The lane sums of 4 vectors at once: [sum v0, sum v1, sum v2, sum v3] (3 add levels
 * instead of 4 separate reductions). */
static inline __m128 hsum4(__m512 v0, __m512 v1, __m512 v2, __m512 v3)
{
    __m512 t0 = _mm512_add_ps(_mm512_unpacklo_ps(v0, v1), _mm512_unpackhi_ps(v0, v1));
    __m512 t1 = _mm512_add_ps(_mm512_unpacklo_ps(v2, v3), _mm512_unpackhi_ps(v2, v3));
    /* each 128-bit lane: v0, v1, v2, v3 partial sums */
    __m512 u = _mm512_add_ps(_mm512_shuffle_ps(t0, t1, 0x44), _mm512_shuffle_ps(t0, t1, 0xee));
    u = _mm512_add_ps(u, _mm512_shuffle_f32x4(u, u, 0x4e));
    u = _mm512_add_ps(u, _mm512_shuffle_f32x4(u, u, 0xb1));
    return _mm512_castps512_ps128(u);
}

/* y[i] = alpha * dot(w[i, :k], x) + beta * y[i]: 4 rows at a time, 2 k vectors per step
 * (8 independent accumulators, 4 weight streams for the hardware prefetcher). The
 * single-row tail sums in the same order, so a row's result does not depend on how rows
 * are grouped (or split over threads). bf16 is a constant at each caller. */
static inline __attribute__((always_inline)) void
gemv_t(int64_t rows, int64_t k, float alpha, const void *w, int64_t ldw, const float *x,
       float beta, float *y, int bf16)
{
    int64_t es = bf16 ? 2 : 4, i = 0;
    for (; i + 4 <= rows; i += 4) {
        const char *w0 = (const char *)w + i * ldw * es, *w1 = w0 + ldw * es;
        const char *w2 = w1 + ldw * es, *w3 = w2 + ldw * es;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        __m512 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        int64_t p = 0;
        for (; p + 32 <= k; p += 32) {
            for (int r = 0; r < 4; r++) { /* the rows GEMV_AHEAD below, same columns */
                uintptr_t a = (uintptr_t)w0 +
                              (uintptr_t)(((GEMV_AHEAD * 4 / es + r) * ldw + p) * es);
                _mm_prefetch((const char *)a, _MM_HINT_T0);
                if (!bf16)
                    _mm_prefetch((const char *)(a + 64), _MM_HINT_T0);
            }
            __m512 x0 = _mm512_loadu_ps(x + p), x1 = _mm512_loadu_ps(x + p + 16);
            a0 = _mm512_fmadd_ps(wload(w0, p, 16, bf16), x0, a0);
            a1 = _mm512_fmadd_ps(wload(w1, p, 16, bf16), x0, a1);
            a2 = _mm512_fmadd_ps(wload(w2, p, 16, bf16), x0, a2);
            a3 = _mm512_fmadd_ps(wload(w3, p, 16, bf16), x0, a3);
            b0 = _mm512_fmadd_ps(wload(w0, p + 16, 16, bf16), x1, b0);
            b1 = _mm512_fmadd_ps(wload(w1, p + 16, 16, bf16), x1, b1);
            b2 = _mm512_fmadd_ps(wload(w2, p + 16, 16, bf16), x1, b2);
            b3 = _mm512_fmadd_ps(wload(w3, p + 16, 16, bf16), x1, b3);
        }
        for (; p < k; p += 16) {
            __m512 x0 = wload(x, p, k - p, 0);
            a0 = _mm512_fmadd_ps(wload(w0, p, k - p, bf16), x0, a0);
            a1 = _mm512_fmadd_ps(wload(w1, p, k - p, bf16), x0, a1);
            a2 = _mm512_fmadd_ps(wload(w2, p, k - p, bf16), x0, a2);
            a3 = _mm512_fmadd_ps(wload(w3, p, k - p, bf16), x0, a3);
        }
        __m128 s = hsum4(_mm512_add_ps(a0, b0), _mm512_add_ps(a1, b1), _mm512_add_ps(a2, b2),
                         _mm512_add_ps(a3, b3));
        s = _mm_mul_ps(_mm_set1_ps(alpha), s);
        if (beta != 0.0f)
            s = _mm_fmadd_ps(_mm_set1_ps(beta), _mm_loadu_ps(y + i), s);
        _mm_storeu_ps(y + i, s);
    }
    for (; i < rows; i++) {
        const char *w0 = (const char *)w + i * ldw * es;
        __m512 a0 = _mm512_setzero_ps(), b0 = a0;
        int64_t p = 0;
        for (; p + 32 <= k; p += 32) {
            a0 = _mm512_fmadd_ps(wload(w0, p, 16, bf16), _mm512_loadu_ps(x + p), a0);
            b0 = _mm512_fmadd_ps(wload(w0, p + 16, 16, bf16), _mm512_loadu_ps(x + p + 16), b0);
        }
        for (; p < k; p += 16)
            a0 = _mm512_fmadd_ps(wload(w0, p, k - p, bf16), wload(x, p, k - p, 0), a0);
        __m512 z = _mm512_setzero_ps();
        float s = _mm_cvtss_f32(hsum4(_mm512_add_ps(a0, b0), z, z, z));
        y[i] = beta == 0.0f ? alpha * s : alpha * s + beta * y[i];
    }
}

static void sgemv_t(int64_t rows, int64_t k, float alpha, const float *w, int64_t ldw,
                    const float *x, float beta, float *y)
{
    gemv_t(rows, k, alpha, w, ldw, x, beta, y, 0);
}

static void bgemv_t(int64_t rows, int64_t k, float alpha, const uint16_t *w, int64_t ldw,
                    const float *x, float beta, float *y)
{
    gemv_t(rows, k, alpha, w, ldw, x, beta, y, 1);
}

/* 128 columns (8 accumulators) per pass over the k rows of B. */
static void sgemv_n(int64_t k, int64_t n, float alpha, const float *b, int64_t ldb,
                    const float *x, float beta, float *y)
{
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int64_t j0 = 0; j0 < n; j0 += 128) {
        __mmask16 m[8];
        __m512 acc[8];
        for (int q = 0; q < 8; q++) {
            m[q] = mask16(n - j0 - 16 * q);
            acc[q] = _mm512_setzero_ps();
        }
        if (n - j0 >= 128) {
            for (int64_t p = 0; p < k; p++) {
                __m512 xp = _mm512_set1_ps(x[p]);
                const float *row = b + p * ldb + j0;
#pragma GCC unroll 8
                for (int q = 0; q < 8; q++)
                    acc[q] = _mm512_fmadd_ps(xp, _mm512_loadu_ps(row + 16 * q), acc[q]);
            }
        } else {
            for (int64_t p = 0; p < k; p++) {
                __m512 xp = _mm512_set1_ps(x[p]);
                const float *row = b + p * ldb + j0;
#pragma GCC unroll 8
                for (int q = 0; q < 8; q++)
                    acc[q] = _mm512_fmadd_ps(xp, _mm512_maskz_loadu_ps(m[q], row + 16 * q),
                                             acc[q]);
            }
        }
#pragma GCC unroll 8
        for (int q = 0; q < 8; q++) {
            __m512 r = _mm512_mul_ps(va, acc[q]);
            if (beta != 0.0f)
                r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m[q], y + j0 + 16 * q), r);
            _mm512_mask_storeu_ps(y + j0 + 16 * q, m[q], r);
        }
    }
}

#define GEMM_WPACK wpack
#include "../common/gemm_fill.h"

void parlm_avx512_gemm_fill(parlm_kernels *k) { gemm_fill(k); }
