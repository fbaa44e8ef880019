/* simd/common/qgemv.c — quantized GEMV (Q8_0 / Q4_0 weights times Q8 activations),
 * written once and compiled per ISA. The block loop, the scale products and the tail
 * live here; the one per-ISA part is the exact int8 dot of a 32-weight block (and the
 * Q4 nibble unpack feeding it), in that ISA's vec_q.h: maddubs on AVX2, vpdpbusd with
 * VNNI, vmull/vpadal on NEON, sdot with dotprod. The same GEMVs over rows repacked 8 at a
 * time (simd/kernels.h) do 8 rows per int8 dot instruction, where vec_q.h has the pieces
 * (QR_HAVE: every x86 set, NEON with dotprod). Where vec_q.h has QP_HAVE (x86) the plain
 * rows too are taken 8 at a time (qp_gemv), with r8's arithmetic per row; NEON keeps the
 * row-at-a-time qgemv. */
#include <string.h>

#include "vec.h"
#include "vec_q.h"

#include "../kernels.h"
#include "../scalar/scalar.h"

#ifndef QV_NAME /* vec_q.h renames the build that upgrades a table (VNNI, dotprod) */
#define QV_NAME VEC_ISA_NAME
#endif

void QV_NAME(qgemv_fill)(parlm_kernels *k);

/* vec_q.h's q8x_block where it has one (x86: each thread of a decode quantizes a whole
 * input row per product, and the scalar block's roundf calls cost ~8% of a Q4_0 token) */
static void q8_quantize(int64_t k, const float *x, parlm_q8x *qx)
{
    for (int64_t b = 0; b < k / 32; b++)
#ifdef Q8X_BLOCK
        q8x_block(x + 32 * b, &qx[b].d, qx[b].q, &qx[b].s);
#else
        parlm_q8x_block(x + 32 * b, qx + b);
#endif
}

#ifndef QP_HAVE /* the row-at-a-time kernel (NEON and the scalar-fallback sets) */
static inline qint block_dot(const uint8_t *blk, const int8_t *xq, int q4)
{
    return q4 ? q_dot_q4(blk + 2, xq) : q_dot_q8(blk + 2, xq);
}

/* Two accumulators over even and odd blocks: a block's convert + FMA chain is short,
 * but one accumulator would serialize every block on the FMA latency. */
static inline void qgemv(int64_t rows, int64_t k, const void *w, int64_t ldw,
                         const parlm_q8x *qx, float alpha, float beta, float *y, int q4)
{
    const int64_t nb = k / 32, bytes = q4 ? 18 : 34;
    for (int64_t i = 0; i < rows; i++) {
        const uint8_t *row = (const uint8_t *)w + i * ldw;
        qacc a0 = qacc_zero(), a1 = qacc_zero();
        int64_t b = 0;
        for (; b + 2 <= nb; b += 2) {
            const uint8_t *p = row + bytes * b;
            uint16_t h0, h1;
            memcpy(&h0, p, 2);
            memcpy(&h1, p + bytes, 2);
            a0 = qacc_fma(a0, q_f16(h0) * qx[b].d, block_dot(p, qx[b].q, q4));
            a1 = qacc_fma(a1, q_f16(h1) * qx[b + 1].d, block_dot(p + bytes, qx[b + 1].q, q4));
        }
        if (b < nb) {
            const uint8_t *p = row + bytes * b;
            uint16_t h0;
            memcpy(&h0, p, 2);
            a0 = qacc_fma(a0, q_f16(h0) * qx[b].d, block_dot(p, qx[b].q, q4));
        }
        float acc = qacc_sum(qacc_add(a0, a1));
        y[i] = beta == 0.0f ? alpha * acc : alpha * acc + beta * y[i];
    }
}
#endif

#ifdef QP_HAVE
/* Plain rows 8 at a time (vec_q.h's qp_*): the 8 rows' blocks are read where they are
 * stored and dotted with the same x block (loaded once), their int32 lanes summed across
 * into one vector of exact block dots, a lane per row; from there on as qr_gemv, so a
 * row's value is bitwise the r8 kernel's and depends on no other row: a last group of
 * n < 8 rows repeats row n - 1 in the spare lanes. */
#define QP_AHEAD 16
static inline __attribute__((always_inline)) void
qp_gemv(int64_t rows, int64_t k, const void *w, int64_t ldw, const parlm_q8x *qx, float alpha,
        float beta, float *y, int q4)
{
    const int64_t nb = k / 32;
    const int bytes = q4 ? 18 : 34;
    /* The group QP_AHEAD rows on (8 contiguous rows) is prefetched front to back, a share
     * per pair of blocks: one stream ahead of the 8 the loads follow, which Zen 5 reads
     * from memory slowly on its own (one thread, 50304 x 768 cycled from memory, load 4,
     * AVX512-VNNI: Q8_0 2.2 ms without, 1.7-1.8 with; Q4_0 1.3-1.6 ms, 0.85-1.1). */
    const int64_t share = (8 * ldw / (nb / 2 > 0 ? nb / 2 : 1) + 63) / 64 * 64;
    for (int64_t i = 0; i < rows; i += 8) {
        int n = rows - i < 8 ? (int)(rows - i) : 8;
        qprows r = qp_rows((const uint8_t *)w + i * ldw, ldw, n);
        /* (the shares may run past that group, never past the one after it) */
        const uint8_t *next = i + QP_AHEAD + 16 <= rows ? (const uint8_t *)w + (i + QP_AHEAD) * ldw
                                                       : NULL;
        qpacc a = qpacc_zero();
        int64_t b = 0;
        for (; b + 2 <= nb; b += 2) {
            if (next)
                for (int64_t o = 0; o < share; o += 64)
                    __builtin_prefetch(next + share * (b / 2) + o);
            a = qp_pair(a, &r, bytes * b, bytes, qx + b, q4);
        }
        if (b < nb)
            a = qp_last(a, &r, bytes * b, qx + b, q4);
        float out[8];
        qp_store(out, a);
        for (int j = 0; j < n; j++)
            y[i + j] = beta == 0.0f ? alpha * out[j] : alpha * out[j] + beta * y[i + j];
    }
}
#define QGEMV qp_gemv
#else
#define QGEMV qgemv
#endif

static void q8_0_gemv(int64_t rows, int64_t k, const void *w, int64_t ldw, const parlm_q8x *qx,
                      float alpha, float beta, float *y)
{
    QGEMV(rows, k, w, ldw, qx, alpha, beta, y, 0);
}

static void q4_0_gemv(int64_t rows, int64_t k, const void *w, int64_t ldw, const parlm_q8x *qx,
                      float alpha, float beta, float *y)
{
    QGEMV(rows, k, w, ldw, qx, alpha, beta, y, 1);
}

#ifdef QR_HAVE
static inline qrint qr_dot(const uint8_t *ch, const parlm_q8x *xb, int q4)
{
#ifdef QR_WIDE
    return q4 ? qrw_dot_q4(ch, xb->q, xb->s) : qrw_dot_q8(ch, xb->q, xb->s);
#else
    return q4 ? qr_dot_q4(ch, xb->q, xb->s) : qr_dot_q8(ch, xb->q, xb->s);
#endif
}

/* Rows repacked 8 at a time: a group's 8 rows are one vector of sums, the groups taken
 * one after another so that the weights are read front to back, one stream (prefetched
 * where vec_q.h has QR_PREFETCH). Reading two groups side by side (sharing x's
 * broadcasts; 20-30% faster on Cascade Lake in cache) makes two streams a group apart,
 * which Zen 5 reads from memory far slower: one thread, 50304 x 768, the avx2 set Q8_0 12
 * vs 40 GB/s, Q4_0 8.5 vs 39; AVX512-VNNI 31 vs 39-44, 26 vs 40-43 (and in cache the
 * same or faster). With QR_WIDE (AVX512-VNNI) a block's dot takes a zmm of two chunks at a
 * time. Even and odd blocks go to two accumulators. A group partly in [r0, r1) is
 * computed whole and stored in part; each lane is its own row with exact integer dots,
 * so a row's bits do not depend on the range. */
static inline void qr_gemv(int64_t r0, int64_t r1, int64_t k, const void *w,
                           const parlm_q8x *qx, float alpha, float beta, float *y, int q4)
{
    const int64_t nb = k / 32, gb = q4 ? PARLM_Q4R_BLOCK : PARLM_Q8R_BLOCK;
    for (int64_t g = r0 / 8; g * 8 < r1; g++) {
        const uint8_t *p = (const uint8_t *)w + g * nb * gb;
        qracc a0 = qracc_zero(), a1 = qracc_zero();
        int64_t b = 0;
        for (; b + 2 <= nb; b += 2, p += 2 * gb) {
#ifdef QR_PREFETCH
            qr_prefetch(p, 2 * gb);
#endif
            a0 = qracc_fma(a0, qr_scales(p, qx[b].d), qr_dot(p + 16, qx + b, q4));
            a1 = qracc_fma(a1, qr_scales(p + gb, qx[b + 1].d), qr_dot(p + gb + 16, qx + b + 1, q4));
        }
        if (b < nb)
            a0 = qracc_fma(a0, qr_scales(p, qx[b].d), qr_dot(p + 16, qx + b, q4));
        float out[8];
        qracc_store(out, qracc_add(a0, a1));
        int64_t j0 = r0 > 8 * g ? r0 - 8 * g : 0, j1 = r1 - 8 * g < 8 ? r1 - 8 * g : 8;
        for (int64_t j = j0; j < j1; j++) {
            float *yi = y + (8 * g + j - r0);
            *yi = beta == 0.0f ? alpha * out[j] : alpha * out[j] + beta * *yi;
        }
    }
}

static void q8_0r_gemv(int64_t r0, int64_t r1, int64_t k, const void *w, const parlm_q8x *qx,
                       float alpha, float beta, float *y)
{
    qr_gemv(r0, r1, k, w, qx, alpha, beta, y, 0);
}

static void q4_0r_gemv(int64_t r0, int64_t r1, int64_t k, const void *w, const parlm_q8x *qx,
                       float alpha, float beta, float *y)
{
    qr_gemv(r0, r1, k, w, qx, alpha, beta, y, 1);
}
#endif

void QV_NAME(qgemv_fill)(parlm_kernels *k)
{
    k->q8_quantize = q8_quantize;
    k->q8_0_gemv = q8_0_gemv;
    k->q4_0_gemv = q4_0_gemv;
#ifdef QR_HAVE
    k->q8_0r_gemv = q8_0r_gemv;
    k->q4_0r_gemv = q4_0r_gemv;
#endif
}
