/* simd/neon/vec_q.h — the NEON int8 block dot of simd/common/qgemv.c: widening
 * multiplies (vmull_s8, pairwise-added into int32 by vpadal) in base NEON; built with
 * +dotprod (__ARM_FEATURE_DOTPROD) it is two sdot (vdotq_s32), in the library that
 * upgrades the neon table when HWCAP says ASIMDDP. */
#ifndef PARLM_SIMD_NEON_VEC_Q_H
#define PARLM_SIMD_NEON_VEC_Q_H
#include <arm_neon.h>
#include <stdint.h>
#include <string.h>

typedef float32x4_t qacc;
typedef int32x4_t qint;

#ifdef __ARM_FEATURE_DOTPROD
#define QV_NAME(x) parlm_neondot_##x
#endif

/* w0, w1 against x0, x1 (weights 0..15 and 16..31) */
static inline qint q_dot_s8(int8x16_t w0, int8x16_t w1, int8x16_t x0, int8x16_t x1)
{
#ifdef __ARM_FEATURE_DOTPROD
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), w0, x0), w1, x1);
#else
    /* one product fits int16 (|128 * 127|), a sum of two might not: widen per product */
    int32x4_t s = vpaddlq_s16(vmull_s8(vget_low_s8(w0), vget_low_s8(x0)));
    s = vpadalq_s16(s, vmull_high_s8(w0, x0));
    s = vpadalq_s16(s, vmull_s8(vget_low_s8(w1), vget_low_s8(x1)));
    return vpadalq_s16(s, vmull_high_s8(w1, x1));
#endif
}

static inline qint q_dot_q8(const uint8_t *w, const int8_t *x)
{
    return q_dot_s8(vld1q_s8((const int8_t *)w), vld1q_s8((const int8_t *)w + 16), vld1q_s8(x),
                    vld1q_s8(x + 16));
}

/* 16 bytes of nibbles: low nibbles are weights 0..15, high nibbles 16..31, each q - 8 */
static inline qint q_dot_q4(const uint8_t *nib, const int8_t *x)
{
    uint8x16_t b = vld1q_u8(nib);
    int8x16_t w0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(b, vdupq_n_u8(15))), vdupq_n_s8(8));
    int8x16_t w1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(b, 4)), vdupq_n_s8(8));
    return q_dot_s8(w0, w1, vld1q_s8(x), vld1q_s8(x + 16));
}

static inline qacc qacc_zero(void) { return vdupq_n_f32(0.0f); }
static inline qacc qacc_add(qacc a, qacc b) { return vaddq_f32(a, b); }
static inline qacc qacc_fma(qacc a, float s, qint d) { return vfmaq_n_f32(a, vcvtq_f32_s32(d), s); }
static inline float qacc_sum(qacc a) { return vaddvq_f32(a); }

static inline float q_f16(uint16_t h)
{
    __fp16 f;
    memcpy(&f, &h, 2);
    return (float)f;
}
#endif
