/* simd/neon/gemm.c — AArch64 Advanced SIMD GEMM micro-kernels and packing (the GEMVs:
 * simd/common/gemv.c).
 * The micro-kernels keep an 8x12 block of C in 24 q-registers: per k step, two
 * vectors of A (8 rows) and three of B (12 columns) are loaded and each A lane
 * multiplies a whole B vector with fmla-by-element, so 5 loads feed 24 FMAs with
 * 29 of the 32 vector registers live. bf16 needs no BF16 extension: widening a
 * bf16 to f32 is a shift left by 16 (shll), exact; the products accumulate in f32. */
#include <arm_neon.h>

#include "neon.h"
#include "vec.h"
#include "../common/gemm_store.h"
#include "../common/pack.h"
#include "../common/pack_copy.h"

#define MR 8
#define NR 12

/* The 24 accumulators: row i of the block is c[i][0..2] (12 floats). Every loop
 * over a tile is fully unrolled, so the compiler keeps it in registers. */
typedef struct tile {
    float32x4_t c[MR][3];
} tile;

static inline void tile_zero(tile *t)
{
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 3
        for (int j = 0; j < 3; j++)
            t->c[i][j] = vdupq_n_f32(0.0f);
}

static inline void tile_spill(const tile *t, float buf[MR][NR])
{
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 3
        for (int j = 0; j < 3; j++)
            vst1q_f32(&buf[i][4 * j], t->c[i][j]);
}

/* C[0:m, 0:n] = alpha * acc + beta * C (simd/common/gemm_store.h; beta == 0 never
 * reads C). The spilled block comes back into the 24 registers first. */
static inline void store_block(const float acc[MR][NR], float *c, int64_t ldc, float alpha,
                               float beta, int m, int n)
{
    vf t[MR][3];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 3
        for (int j = 0; j < 3; j++)
            t[i][j] = vld1q_f32(&acc[i][4 * j]);
    gemm_store_tile(&t[0][0], MR, 3, 3, c, ldc, alpha, beta, m, n);
}

/* Row i of the block += a[lane] * (b0 b1 b2). Lanes must be constants, so the eight
 * rows are spelled out in ROWS_FMA. */
#define ROW_FMA(t, i, a, lane, b0, b1, b2)                             \
    do {                                                               \
        (t).c[i][0] = vfmaq_laneq_f32((t).c[i][0], (b0), (a), (lane)); \
        (t).c[i][1] = vfmaq_laneq_f32((t).c[i][1], (b1), (a), (lane)); \
        (t).c[i][2] = vfmaq_laneq_f32((t).c[i][2], (b2), (a), (lane)); \
    } while (0)

/* The whole 8x12 rank-1 update: rows 0-3 from a_lo, rows 4-7 from a_hi. */
#define ROWS_FMA(t, a_lo, a_hi, b0, b1, b2)  \
    do {                                     \
        ROW_FMA(t, 0, a_lo, 0, b0, b1, b2);  \
        ROW_FMA(t, 1, a_lo, 1, b0, b1, b2);  \
        ROW_FMA(t, 2, a_lo, 2, b0, b1, b2);  \
        ROW_FMA(t, 3, a_lo, 3, b0, b1, b2);  \
        ROW_FMA(t, 4, a_hi, 0, b0, b1, b2);  \
        ROW_FMA(t, 5, a_hi, 1, b0, b1, b2);  \
        ROW_FMA(t, 6, a_hi, 2, b0, b1, b2);  \
        ROW_FMA(t, 7, a_hi, 3, b0, b1, b2);  \
    } while (0)

/* acc (MR, NR) = ap (kc, MR)^T . bp (kc, NR). Kept out of line so that alpha, beta
 * and C do not occupy registers during the k loop. */
static __attribute__((noinline)) void sgemm_block(int64_t kc, const float *ap,
                                                  const float *bp, float acc[MR][NR])
{
    tile t;
    tile_zero(&t);
    for (int64_t p = 0; p < kc; p++) {
        float32x4_t a_lo = vld1q_f32(ap), a_hi = vld1q_f32(ap + 4);
        float32x4_t b0 = vld1q_f32(bp), b1 = vld1q_f32(bp + 4), b2 = vld1q_f32(bp + 8);
        ROWS_FMA(t, a_lo, a_hi, b0, b1, b2);
        ap += MR;
        bp += NR;
    }
    tile_spill(&t, acc);
}

/* ap (kc, MR) packed, bp (kc, NR) packed -> C (m, n), m <= 8, n <= 12 */
static void sgemm_ukr(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                      float alpha, float beta, int m, int n)
{
    float acc[MR][NR];
    sgemm_block(kc, ap, bp, acc);
    store_block(acc, c, ldc, alpha, beta, m, n);
}

/* Four bf16 -> four f32, exact: the bf16 bits become the top half of each lane. */
static inline float32x4_t widen_bf16(uint16x4_t h)
{
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

/* Column vector j of the block += A lanes * b. A arrives as four vectors
 * (row 2r k-even, row 2r k-odd, row 2r+1 k-even, row 2r+1 k-odd), r = 0..3, and
 * parity picks the k-even (0) or k-odd (1) lanes. */
#define COL_FMA_BF16(t, j, x0, x1, x2, x3, parity, b)                       \
    do {                                                                     \
        (t).c[0][j] = vfmaq_laneq_f32((t).c[0][j], (b), (x0), (parity));     \
        (t).c[1][j] = vfmaq_laneq_f32((t).c[1][j], (b), (x0), 2 + (parity)); \
        (t).c[2][j] = vfmaq_laneq_f32((t).c[2][j], (b), (x1), (parity));     \
        (t).c[3][j] = vfmaq_laneq_f32((t).c[3][j], (b), (x1), 2 + (parity)); \
        (t).c[4][j] = vfmaq_laneq_f32((t).c[4][j], (b), (x2), (parity));     \
        (t).c[5][j] = vfmaq_laneq_f32((t).c[5][j], (b), (x2), 2 + (parity)); \
        (t).c[6][j] = vfmaq_laneq_f32((t).c[6][j], (b), (x3), (parity));     \
        (t).c[7][j] = vfmaq_laneq_f32((t).c[7][j], (b), (x3), 2 + (parity)); \
    } while (0)

/* GCC's pre-allocation scheduler hoists all three ld2 of B to the top of the loop
 * body, which needs 34 registers and spills accumulators; without it the loop
 * allocates with no spill (checked in the assembly, GCC 12). */
#if defined(__GNUC__) && !defined(__clang__)
#define NO_PRE_RA_SCHED __attribute__((optimize("no-schedule-insns")))
#else
#define NO_PRE_RA_SCHED
#endif

/* acc (MR, NR) = sum over pairs of A pair . B pair, in f32. Per pair step A is
 * widened in place (4 vectors, pairs left interleaved: fmla-by-element picks the
 * lane); B goes one group of 4 column pairs at a time through a de-interleaving
 * ld2 (a k-even and a k-odd vector), so 24 + 4 + 2-3 registers are live. */
static __attribute__((noinline)) NO_PRE_RA_SCHED void
bgemm_block(int64_t kc2, const uint16_t *ap, const uint16_t *bp, float acc[MR][NR])
{
    tile t;
    tile_zero(&t);
    for (int64_t p = 0; p < kc2; p++) {
        uint16x8_t ra_lo = vld1q_u16(ap), ra_hi = vld1q_u16(ap + 8);
        float32x4_t x0 = widen_bf16(vget_low_u16(ra_lo)), x1 = widen_bf16(vget_high_u16(ra_lo));
        float32x4_t x2 = widen_bf16(vget_low_u16(ra_hi)), x3 = widen_bf16(vget_high_u16(ra_hi));
#pragma GCC unroll 3
        for (int j = 0; j < 3; j++) {
            uint16x4x2_t rb = vld2_u16(bp + 8 * j);
            COL_FMA_BF16(t, j, x0, x1, x2, x3, 0, widen_bf16(rb.val[0]));
            COL_FMA_BF16(t, j, x0, x1, x2, x3, 1, widen_bf16(rb.val[1]));
        }
        ap += 2 * MR;
        bp += 2 * NR;
    }
    tile_spill(&t, acc);
}

/* ap (kc2, MR, 2) packed bf16, bp (kc2, NR, 2) packed bf16 -> C (m, n), f32 sums */
static void bgemm_ukr(int64_t kc2, const uint16_t *ap, const uint16_t *bp, float *c,
                      int64_t ldc, float alpha, float beta, int m, int n)
{
    float acc[MR][NR];
    bgemm_block(kc2, ap, bp, acc);
    store_block(acc, c, ldc, alpha, beta, m, n);
}

/* ---- packing ---------------------------------------------------------------------
 * A block of mn rows (A) or columns (B) becomes panels of width w (MR or NR), panel q
 * at out + q*ps words (layout in simd/kernels.h). A copy (rs == 1: a panel's step k is
 * contiguous in x) reads x row by row across all panels and moves vectors; a transpose
 * (cs == 1: a panel's column i is contiguous) goes through 4x4 register transposes of
 * 32-bit lanes (one f32, or one bf16 k-pair). Leftovers of fewer than 4 go one by one. */

/* 4x4 transpose of 32-bit lanes: rows r0..r3 in, columns out (in place) */
static inline void transpose4_u32(uint32x4_t *r0, uint32x4_t *r1, uint32x4_t *r2,
                                  uint32x4_t *r3)
{
    uint32x4_t t0 = vtrn1q_u32(*r0, *r1), t1 = vtrn2q_u32(*r0, *r1);
    uint32x4_t t2 = vtrn1q_u32(*r2, *r3), t3 = vtrn2q_u32(*r2, *r3);
    uint64x2_t u0 = vreinterpretq_u64_u32(t0), u1 = vreinterpretq_u64_u32(t1);
    uint64x2_t u2 = vreinterpretq_u64_u32(t2), u3 = vreinterpretq_u64_u32(t3);
    *r0 = vreinterpretq_u32_u64(vtrn1q_u64(u0, u2));
    *r1 = vreinterpretq_u32_u64(vtrn1q_u64(u1, u3));
    *r2 = vreinterpretq_u32_u64(vtrn2q_u64(u0, u2));
    *r3 = vreinterpretq_u32_u64(vtrn2q_u64(u1, u3));
}

/* One f32 panel by transposition: out (kc, w) <- x (mn rows of kc contiguous floats,
 * rows rs apart), rows mn..w-1 zero. */
static void spack_panel_t(int64_t kc, int64_t mn, const float *x, int64_t rs, int w,
                          float *out)
{
    int64_t k = 0;
    for (; k + 4 <= kc; k += 4) {
        int64_t i = 0;
        for (; i + 4 <= mn; i += 4) {
            const float *xi = x + i * rs + k;
            uint32x4_t r0 = vreinterpretq_u32_f32(vld1q_f32(xi));
            uint32x4_t r1 = vreinterpretq_u32_f32(vld1q_f32(xi + rs));
            uint32x4_t r2 = vreinterpretq_u32_f32(vld1q_f32(xi + 2 * rs));
            uint32x4_t r3 = vreinterpretq_u32_f32(vld1q_f32(xi + 3 * rs));
            transpose4_u32(&r0, &r1, &r2, &r3);
            vst1q_f32(out + k * w + i, vreinterpretq_f32_u32(r0));
            vst1q_f32(out + (k + 1) * w + i, vreinterpretq_f32_u32(r1));
            vst1q_f32(out + (k + 2) * w + i, vreinterpretq_f32_u32(r2));
            vst1q_f32(out + (k + 3) * w + i, vreinterpretq_f32_u32(r3));
        }
        for (int64_t kk = k; kk < k + 4; kk++)
            for (int64_t t = i; t < w; t++)
                out[kk * w + t] = t < mn ? x[t * rs + kk] : 0.0f;
    }
    for (; k < kc; k++)
        for (int64_t t = 0; t < w; t++)
            out[k * w + t] = t < mn ? x[t * rs + k] : 0.0f;
}

/* out: panels of (kc, w) <- x block, out[q*ps + k*w + i] = x[(q*w + i)*rs + k*cs] */
static void spack(int64_t kc, int64_t mn, const float *x, int64_t rs, int64_t cs, int w,
                  float *out)
{
    int64_t ps = pack_panel_stride(kc, w), np = (mn + w - 1) / w;
    if (rs == 1) {
        pack_copy_f32(kc, mn, x, cs, w, out);
        return;
    }
    if (cs != 1) { /* general strides: not used by lib/, kept exact */
        pack_plain_f32(kc, mn, x, 0, rs, cs, w, out);
        return;
    }
    for (int64_t q = 0; q < np; q++) {
        int64_t n = mn - q * w < w ? mn - q * w : w;
        spack_panel_t(kc, n, x + q * w * rs, rs, w, out + q * ps);
    }
}

/* One bf16 panel by transposition: a k-pair of a source row is one 32-bit lane, so this
 * is spack_panel_t on u32 lanes; an odd kc's last pair gets a zero partner. */
static void bpack_panel_t(int64_t kc, int64_t mn, const uint16_t *x, int64_t rs, int w,
                          uint16_t *out)
{
    int64_t kc2 = (kc + 1) / 2, p = 0;
    for (; 2 * p + 8 <= kc; p += 4) {
        int64_t i = 0;
        for (; i + 4 <= mn; i += 4) {
            const uint16_t *xi = x + i * rs + 2 * p;
            uint32x4_t r0 = vreinterpretq_u32_u16(vld1q_u16(xi));
            uint32x4_t r1 = vreinterpretq_u32_u16(vld1q_u16(xi + rs));
            uint32x4_t r2 = vreinterpretq_u32_u16(vld1q_u16(xi + 2 * rs));
            uint32x4_t r3 = vreinterpretq_u32_u16(vld1q_u16(xi + 3 * rs));
            transpose4_u32(&r0, &r1, &r2, &r3);
            vst1q_u16(out + (p * w + i) * 2, vreinterpretq_u16_u32(r0));
            vst1q_u16(out + ((p + 1) * w + i) * 2, vreinterpretq_u16_u32(r1));
            vst1q_u16(out + ((p + 2) * w + i) * 2, vreinterpretq_u16_u32(r2));
            vst1q_u16(out + ((p + 3) * w + i) * 2, vreinterpretq_u16_u32(r3));
        }
        for (int64_t pp = p; pp < p + 4; pp++)
            for (int64_t t = i; t < w; t++) {
                out[(pp * w + t) * 2] = t < mn ? x[t * rs + 2 * pp] : 0;
                out[(pp * w + t) * 2 + 1] = t < mn ? x[t * rs + 2 * pp + 1] : 0;
            }
    }
    for (; p < kc2; p++)
        for (int64_t t = 0; t < w; t++)
            for (int e = 0; e < 2; e++) {
                int64_t k = 2 * p + e;
                out[(p * w + t) * 2 + e] = t < mn && k < kc ? x[t * rs + k] : 0;
            }
}

/* out: bf16 panels, out[2*q*ps + (p*w + i)*2 + e] = x[(q*w + i)*rs + (2p+e)*cs] */
static void bpack(int64_t kc, int64_t mn, const uint16_t *x, int64_t rs, int64_t cs, int w,
                  uint16_t *out)
{
    int64_t kc2 = (kc + 1) / 2, ps = pack_panel_stride(kc2, w), np = (mn + w - 1) / w;
    if (rs == 1) {
        pack_copy_bf16(kc, mn, x, cs, w, out);
        return;
    }
    if (cs != 1) { /* general strides: not used by lib/, kept exact */
        pack_plain_bf16(kc, mn, x, rs, cs, w, out);
        return;
    }
    for (int64_t q = 0; q < np; q++) {
        int64_t n = mn - q * w < w ? mn - q * w : w;
        bpack_panel_t(kc, n, x + q * w * rs, rs, w, out + 2 * q * ps);
    }
}

#define SNR NR
#define GEMM_WPACK NULL
#include "../common/gemm_fill.h"

/* simd/common/gemv.c, compiled for this ISA */
void parlm_neon_gemv_fill(parlm_kernels *k);

void parlm_neon_gemm_fill(parlm_kernels *k)
{
    gemm_fill(k);
    parlm_neon_gemv_fill(k);
}
