/* simd/scalar/quant.c — the quantized GEMV reference: plain loops that define what the
 * vector sets compute. A block's dot is an exact int32 sum (|sum| <= 32 * 128 * 127 < 2^24,
 * so also exact as a float); only the scale products and the sum over blocks round. */
#include "scalar.h"

static void q8_quantize(int64_t k, const float *x, parlm_q8x *qx)
{
    for (int64_t b = 0; b < k / 32; b++)
        parlm_q8x_block(x + 32 * b, qx + b);
}

static float scale_of(const uint8_t *blk)
{
    return parlm_f16_to_f32_1((uint16_t)(blk[0] | blk[1] << 8));
}

static void finish(float *y, float acc, float alpha, float beta)
{
    *y = beta == 0.0f ? alpha * acc : alpha * acc + beta * *y;
}

static void q8_0_gemv(int64_t rows, int64_t k, const void *w, int64_t ldw, const parlm_q8x *qx,
                      float alpha, float beta, float *y)
{
    for (int64_t i = 0; i < rows; i++) {
        const uint8_t *row = (const uint8_t *)w + i * ldw;
        float acc = 0.0f;
        for (int64_t b = 0; b < k / 32; b++) {
            const uint8_t *blk = row + 34 * b;
            int32_t dot = 0;
            for (int j = 0; j < 32; j++)
                dot += (int8_t)blk[2 + j] * qx[b].q[j];
            acc += scale_of(blk) * qx[b].d * (float)dot;
        }
        finish(y + i, acc, alpha, beta);
    }
}

/* Q4_0: byte j of a block holds weight j (low nibble) and weight j + 16 (high), q - 8 */
static void q4_0_gemv(int64_t rows, int64_t k, const void *w, int64_t ldw, const parlm_q8x *qx,
                      float alpha, float beta, float *y)
{
    for (int64_t i = 0; i < rows; i++) {
        const uint8_t *row = (const uint8_t *)w + i * ldw;
        float acc = 0.0f;
        for (int64_t b = 0; b < k / 32; b++) {
            const uint8_t *blk = row + 18 * b;
            int32_t dot = 0;
            for (int j = 0; j < 16; j++) {
                dot += ((blk[2 + j] & 15) - 8) * qx[b].q[j];
                dot += ((blk[2 + j] >> 4) - 8) * qx[b].q[j + 16];
            }
            acc += scale_of(blk) * qx[b].d * (float)dot;
        }
        finish(y + i, acc, alpha, beta);
    }
}

void parlm_scalar_quant_fill(parlm_kernels *k)
{
    k->q8_quantize = q8_quantize;
    k->q8_0_gemv = q8_0_gemv;
    k->q4_0_gemv = q4_0_gemv;
}
