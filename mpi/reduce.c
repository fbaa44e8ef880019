/* mpi/reduce.c — the arithmetic of the collectives: f32 sums, scaling and the bf16
 * wire format. Plain loops marked `omp simd` so the compiler vectorizes them for the
 * build's baseline ISA; they run on cache-resident chunks, so memory, not SIMD width,
 * bounds them. bf16 = the top 16 bits of an f32, rounded to nearest even. The block
 * distribution (parlm_block_range) is here too: the bottom of mpi/, every layer uses it. */
#include <string.h>

#include "algo.h"

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Round to nearest even on the 16 dropped bits; NaN stays NaN (quieted: adding the
 * rounding bias could carry a NaN's payload into the exponent and make it infinite). */
static inline uint16_t to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t nan = (u >> 16) | 0x40u;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

static inline float from_bf16(uint16_t h) { return bits_f32((uint32_t)h << 16); }

void dist_add(float *restrict dst, const float *restrict src, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        dst[i] += src[i];
}

void dist_add_bf16(float *restrict dst, const uint16_t *restrict src, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        dst[i] += from_bf16(src[i]);
}

void dist_scale(float *x, float s, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        x[i] *= s;
}

void dist_to_bf16(uint16_t *restrict dst, const float *restrict src, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        dst[i] = to_bf16(src[i]);
}

void dist_from_bf16(float *restrict dst, const uint16_t *restrict src, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        dst[i] = from_bf16(src[i]);
}

void dist_round_bf16(float *x, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        x[i] = from_bf16(to_bf16(x[i]));
}

void dist_sum_k(float *restrict dst, const float *const *src, int k, int64_t n, float scale)
{
    if (k == 1) {
        const float *restrict a = src[0];
#pragma omp simd
        for (int64_t i = 0; i < n; i++)
            dst[i] = a[i] * scale;
        return;
    }
    const float *restrict a = src[0], *restrict b = src[1];
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        dst[i] = a[i] + b[i];
    for (int j = 2; j < k; j++)
        dist_add(dst, src[j], n);
    if (scale != 1.0f)
        dist_scale(dst, scale, n);
}

void parlm_block_range(int64_t n, int p, int r, int64_t *start, int64_t *count)
{
    /* floor(r*n/p) without forming r*n (which could overflow for huge n) */
    int64_t q = n / p, m = n % p;
    int64_t lo = q * r + m * r / p, hi = q * (r + 1) + m * (r + 1) / p;
    *start = lo;
    *count = hi - lo;
}
