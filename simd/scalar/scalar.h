/* simd/scalar/scalar.h — the reference kernels, also callable directly by other
 * ISA sets for their scalar tails and by tests. */
#ifndef PARLM_SIMD_SCALAR_H
#define PARLM_SIMD_SCALAR_H
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../kernels.h"

/* bf16 is the top half of an f32. Round to nearest even; NaN stays a (quiet) NaN. */
static inline uint16_t parlm_f32_to_bf16_1(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float parlm_bf16_to_f32_1(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* IEEE half -> f32, exact (the Q8_0 / Q4_0 block scales). */
static inline float parlm_f16_to_f32_1(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
    if (e == 0) { /* zero or subnormal: m * 2^-24 */
        float f = (float)m * 5.9604644775390625e-8f;
        memcpy(&u, &f, 4);
        u |= sign;
    } else if (e == 31) {
        u = sign | 0x7f800000u | (m << 13);
    } else {
        u = sign | ((e + 112) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* One block of activations -> parlm_q8x (the q8_quantize contract). Every kernel set
 * calls this one definition, so all sets hold bitwise the same quantized x and their
 * GEMVs differ only in the order of the float sum over blocks. */
static inline void parlm_q8x_block(const float *x, parlm_q8x *b)
{
    float amax = 0.0f;
    int finite = 1;
    for (int j = 0; j < 32; j++) {
        float a = x[j] < 0 ? -x[j] : x[j];
        finite &= a <= FLT_MAX; /* 0 for NaN and infinities */
        amax = a > amax ? a : amax;
    }
    if (!finite) { /* no 8-bit value stands for it: d NaN (so every dot with the block is
                    * NaN), q and their sum 0, the same in every kernel set */
        b->d = NAN;
        memset(b->q, 0, sizeof b->q);
        b->s = 0;
        return;
    }
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = d;
    int32_t s = 0;
    for (int j = 0; j < 32; j++) {
        b->q[j] = (int8_t)roundf(x[j] * id); /* |x * id| <= 127 (+ an ulp) */
        s += b->q[j];
    }
    b->s = s;
}

void parlm_scalar_sgemm_ukr(int64_t kc, const float *ap, const float *bp, float *c,
                            int64_t ldc, float alpha, float beta, int m, int n);
void parlm_scalar_bgemm_ukr(int64_t kc2, const uint16_t *ap, const uint16_t *bp, float *c,
                            int64_t ldc, float alpha, float beta, int m, int n);
void parlm_scalar_sgemv_t(int64_t rows, int64_t k, float alpha, const float *w, int64_t ldw,
                          const float *x, float beta, float *y);
void parlm_scalar_sgemv_n(int64_t k, int64_t n, float alpha, const float *b, int64_t ldb,
                          const float *x, float beta, float *y);
void parlm_scalar_bgemv_t(int64_t rows, int64_t k, float alpha, const uint16_t *w,
                          int64_t ldw, const float *x, float beta, float *y);
void parlm_scalar_gemm_fill(parlm_kernels *k);
void parlm_scalar_quant_fill(parlm_kernels *k);
void parlm_scalar_eltwise_fill(parlm_kernels *k);
void parlm_scalar_nn_fill(parlm_kernels *k); /* nn.c: attention, cross-entropy, embeddings, AdamW */
void parlm_scalar_llama_fill(parlm_kernels *k); /* llama.c: RMSNorm, RoPE, SwiGLU */
#endif
