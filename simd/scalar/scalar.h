/* simd/scalar/scalar.h — the reference kernels, also callable directly by other
 * ISA sets for their scalar tails and by tests. */
#ifndef PARLM_SIMD_SCALAR_H
#define PARLM_SIMD_SCALAR_H
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
void parlm_scalar_eltwise_fill(parlm_kernels *k);
void parlm_scalar_nn_fill(parlm_kernels *k); /* nn.c: attention, cross-entropy, embeddings, AdamW */
void parlm_scalar_llama_fill(parlm_kernels *k); /* llama.c: RMSNorm, RoPE, SwiGLU */
#endif
