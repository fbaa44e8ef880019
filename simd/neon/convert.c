/* simd/neon/convert.c — f32 <-> bf16 with AArch64 Advanced SIMD, bit-identical to the
 * scalar reference: round to nearest even by adding 0x7fff + (bit 16) to the f32 bits
 * and keeping the top half; a NaN instead keeps its top half with the quiet bit set
 * (the rounding add could carry it into infinity). No BF16 extension is needed. */
#include <arm_neon.h>

#include "../scalar/scalar.h"
#include "neon.h"

/* 4 f32 -> 4 rounded bf16, still in the top half of each u32 lane */
static inline uint32x4_t round_bf16(float32x4_t x)
{
    uint32x4_t u = vreinterpretq_u32_f32(x);
    uint32x4_t lsb = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
    uint32x4_t rounded = vaddq_u32(u, vaddq_u32(lsb, vdupq_n_u32(0x7fff)));
    uint32x4_t quiet = vorrq_u32(u, vdupq_n_u32(0x400000));
    uint32x4_t is_nan = vmvnq_u32(vceqq_f32(x, x));
    return vbslq_u32(is_nan, quiet, rounded);
}

/* x (n) f32 -> y (n) bf16 */
static void f32_to_bf16(const float *x, uint16_t *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint32x4_t lo = round_bf16(vld1q_f32(x + i)), hi = round_bf16(vld1q_f32(x + i + 4));
        /* uzp2 on u16 lanes keeps the odd (top) halves of the 8 u32 lanes */
        vst1q_u16(y + i, vuzp2q_u16(vreinterpretq_u16_u32(lo), vreinterpretq_u16_u32(hi)));
    }
    for (; i < n; i++)
        y[i] = parlm_f32_to_bf16_1(x[i]);
}

/* x (n) bf16 -> y (n) f32, exact */
static void bf16_to_f32(const uint16_t *x, float *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint16x8_t h = vld1q_u16(x + i);
        vst1q_f32(y + i, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16)));
        vst1q_f32(y + i + 4, vreinterpretq_f32_u32(vshll_high_n_u16(h, 16)));
    }
    for (; i < n; i++)
        y[i] = parlm_bf16_to_f32_1(x[i]);
}

void parlm_neon_convert_fill(parlm_kernels *k)
{
    k->f32_to_bf16 = f32_to_bf16;
    k->bf16_to_f32 = bf16_to_f32;
}
