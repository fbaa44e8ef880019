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

/* Rows repacked 8 at a time (the layout in simd/kernels.h), row by row: weight 4c + t of
 * row j of a group is byte 16 + 32c + 4j + t of its block (Q8_0: stored w + 128; Q4_0: low
 * nibble, with weight 16 + 4c + t in the high one). Plain signed products: s is not used. */
static void qr_gemv(int64_t r0, int64_t r1, int64_t k, const void *w, const parlm_q8x *qx,
                    float alpha, float beta, float *y, int q4)
{
    const int64_t nb = k / 32, gb = q4 ? PARLM_Q4R_BLOCK : PARLM_Q8R_BLOCK;
    for (int64_t i = r0; i < r1; i++) {
        const uint8_t *grp = (const uint8_t *)w + (i / 8) * nb * gb;
        int j = (int)(i % 8);
        float acc = 0.0f;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = grp + b * gb;
            int32_t dot = 0;
            for (int c = 0; c < (q4 ? 4 : 8); c++)
                for (int t = 0; t < 4; t++) {
                    int u = blk[16 + 32 * c + 4 * j + t];
                    if (q4) {
                        dot += ((u & 15) - 8) * qx[b].q[4 * c + t];
                        dot += ((u >> 4) - 8) * qx[b].q[16 + 4 * c + t];
                    } else {
                        dot += (u - 128) * qx[b].q[4 * c + t];
                    }
                }
            acc += scale_of(blk + 2 * j) * qx[b].d * (float)dot;
        }
        finish(y + (i - r0), acc, alpha, beta);
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

void parlm_scalar_quant_fill(parlm_kernels *k)
{
    k->q8_quantize = q8_quantize;
    k->q8_0_gemv = q8_0_gemv;
    k->q4_0_gemv = q4_0_gemv;
    k->q8_0r_gemv = q8_0r_gemv;
    k->q4_0r_gemv = q4_0r_gemv;
}
