/* simd/scalar/gemm.c — reference GEMM micro-kernels and GEMVs in plain C.
 * The contract is in simd/kernels.h; every SIMD set is tested against these.
 * MR x NR = 4 x 4: small, because here clarity matters more than speed. */
#include <string.h>

#include "../kernels.h"
#include "scalar.h"

#define MR 4
#define NR 4

static void store_tile(const float acc[MR][NR], float *c, int64_t ldc, float alpha,
                       float beta, int m, int n)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float v = alpha * acc[i][j];
            c[i * ldc + j] = beta == 0.0f ? v : v + beta * c[i * ldc + j];
        }
}

void parlm_scalar_sgemm_ukr(int64_t kc, const float *ap, const float *bp, float *c,
                            int64_t ldc, float alpha, float beta, int m, int n)
{
    float acc[MR][NR];
    memset(acc, 0, sizeof acc);
    for (int64_t p = 0; p < kc; p++)
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++)
                acc[i][j] += ap[p * MR + i] * bp[p * NR + j];
    store_tile(acc, c, ldc, alpha, beta, m, n);
}

void parlm_scalar_bgemm_ukr(int64_t kc2, const uint16_t *ap, const uint16_t *bp, float *c,
                            int64_t ldc, float alpha, float beta, int m, int n)
{
    float acc[MR][NR];
    memset(acc, 0, sizeof acc);
    for (int64_t p = 0; p < kc2; p++)
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) {
                const uint16_t *a = ap + p * 2 * MR + 2 * i, *b = bp + p * 2 * NR + 2 * j;
                acc[i][j] += parlm_bf16_to_f32_1(a[0]) * parlm_bf16_to_f32_1(b[0]) +
                             parlm_bf16_to_f32_1(a[1]) * parlm_bf16_to_f32_1(b[1]);
            }
    store_tile(acc, c, ldc, alpha, beta, m, n);
}

void parlm_scalar_sgemv_t(int64_t rows, int64_t k, float alpha, const float *w, int64_t ldw,
                          const float *x, float beta, float *y)
{
    for (int64_t i = 0; i < rows; i++) {
        float s = 0.0f;
        for (int64_t p = 0; p < k; p++)
            s += w[i * ldw + p] * x[p];
        y[i] = beta == 0.0f ? alpha * s : alpha * s + beta * y[i];
    }
}

void parlm_scalar_sgemv_n(int64_t k, int64_t n, float alpha, const float *b, int64_t ldb,
                          const float *x, float beta, float *y)
{
    for (int64_t j = 0; j < n; j++) {
        float s = 0.0f;
        for (int64_t p = 0; p < k; p++)
            s += x[p] * b[p * ldb + j];
        y[j] = beta == 0.0f ? alpha * s : alpha * s + beta * y[j];
    }
}

void parlm_scalar_bgemv_t(int64_t rows, int64_t k, float alpha, const uint16_t *w,
                          int64_t ldw, const float *x, float beta, float *y)
{
    for (int64_t i = 0; i < rows; i++) {
        float s = 0.0f;
        for (int64_t p = 0; p < k; p++)
            s += parlm_bf16_to_f32_1(w[i * ldw + p]) * x[p];
        y[i] = beta == 0.0f ? alpha * s : alpha * s + beta * y[i];
    }
}

/* The reference packing (block layout in simd/kernels.h). */
static void scalar_spack(int64_t kc, int64_t mn, const float *x, int64_t rs, int64_t cs, int w,
                         float *out)
{
    int64_t ps = (kc * w + 15) / 16 * 16;
    for (int64_t q = 0; q * w < mn; q++)
        for (int64_t k = 0; k < kc; k++)
            for (int i = 0; i < w; i++) {
                int64_t r = q * w + i;
                out[q * ps + k * w + i] = r < mn ? x[r * rs + k * cs] : 0.0f;
            }
}

static void scalar_bpack(int64_t kc, int64_t mn, const uint16_t *x, int64_t rs, int64_t cs,
                         int w, uint16_t *out)
{
    int64_t kc2 = (kc + 1) / 2, ps = (kc2 * w + 15) / 16 * 16;
    for (int64_t q = 0; q * w < mn; q++)
        for (int64_t p = 0; p < kc2; p++)
            for (int i = 0; i < w; i++)
                for (int e = 0; e < 2; e++) {
                    int64_t r = q * w + i, k = 2 * p + e;
                    out[2 * q * ps + (p * w + i) * 2 + e] =
                        r < mn && k < kc ? x[r * rs + k * cs] : 0;
                }
}

/* bf16 source, f32 panels of scalar_spack's layout (widening is exact). */
static void scalar_wpack(int64_t kc, int64_t mn, const uint16_t *x, int64_t rs, int64_t cs,
                         int w, float *out)
{
    int64_t ps = (kc * w + 15) / 16 * 16;
    for (int64_t q = 0; q * w < mn; q++)
        for (int64_t k = 0; k < kc; k++)
            for (int i = 0; i < w; i++) {
                int64_t r = q * w + i;
                out[q * ps + k * w + i] = r < mn ? parlm_bf16_to_f32_1(x[r * rs + k * cs]) : 0.0f;
            }
}

void parlm_scalar_gemm_fill(parlm_kernels *k)
{
    k->sgemm_mr = MR;
    k->sgemm_nr = NR;
    k->sgemm_ukr = parlm_scalar_sgemm_ukr;
    k->sgemm_ukr_ua = NULL; /* the reference packs A */
    k->bgemm_mr = MR;
    k->bgemm_nr = NR;
    k->bgemm_dot = NULL;
    k->bgemm_ukr = parlm_scalar_bgemm_ukr;
    k->spack = scalar_spack;
    k->bpack = scalar_bpack;
    k->wpack = scalar_wpack;
    k->sgemv_t = parlm_scalar_sgemv_t;
    k->sgemv_n = parlm_scalar_sgemv_n;
    k->bgemv_t = parlm_scalar_bgemv_t;
    k->sgemv_t1 = parlm_scalar_sgemv_t; /* one row at a time already */
    k->bgemv_t1 = parlm_scalar_bgemv_t;
}
