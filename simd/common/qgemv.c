/* simd/common/qgemv.c — quantized GEMV (Q8_0 / Q4_0 weights times Q8 activations),
 * written once and compiled per ISA. The block loop, the scale products and the tail
 * live here; the one per-ISA part is the exact int8 dot of a 32-weight block (and the
 * Q4 nibble unpack feeding it), in that ISA's vec_q.h: maddubs on AVX2, vpdpbusd with
 * VNNI, vmull/vpadal on NEON, sdot with dotprod. */
#include <string.h>

#include "vec.h"
#include "vec_q.h"

#include "../kernels.h"
#include "../scalar/scalar.h"

#ifndef QV_NAME /* vec_q.h renames the build that upgrades a table (VNNI, dotprod) */
#define QV_NAME VEC_ISA_NAME
#endif

void QV_NAME(qgemv_fill)(parlm_kernels *k);

static void q8_quantize(int64_t k, const float *x, parlm_q8x *qx)
{
    for (int64_t b = 0; b < k / 32; b++)
        parlm_q8x_block(x + 32 * b, qx + b);
}

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

static void q8_0_gemv(int64_t rows, int64_t k, const void *w, int64_t ldw, const parlm_q8x *qx,
                      float alpha, float beta, float *y)
{
    qgemv(rows, k, w, ldw, qx, alpha, beta, y, 0);
}

static void q4_0_gemv(int64_t rows, int64_t k, const void *w, int64_t ldw, const parlm_q8x *qx,
                      float alpha, float beta, float *y)
{
    qgemv(rows, k, w, ldw, qx, alpha, beta, y, 1);
}

void QV_NAME(qgemv_fill)(parlm_kernels *k)
{
    k->q8_quantize = q8_quantize;
    k->q8_0_gemv = q8_0_gemv;
    k->q4_0_gemv = q4_0_gemv;
}
