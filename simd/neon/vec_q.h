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

/* ---- 8 rows at a time: the repacked layout of simd/kernels.h ("r8"), with sdot only.
 * A 32-byte chunk is rows 0-3 then 4-7, 4 consecutive weights each; vdotq_laneq_s32
 * takes x's 4 bytes from a lane of one x register. sdot is signed x signed: Q8_0's w + 128
 * goes back to signed (one eor), Q4_0's nibbles 0..15 are already valid s8. Base NEON
 * keeps the scalar repacked kernels (no widening version written). */
#ifdef __ARM_FEATURE_DOTPROD
#define QR_HAVE 1
typedef struct { float32x4_t lo, hi; } qracc;
typedef struct { int32x4_t lo, hi; } qrint;

/* a (rows 0-3, 4-7) += the chunk's rows (w0: rows 0-3, w1: rows 4-7) . x's lane */
#define QR_SDOT(a, w0, w1, xv, lane)                                                      \
    do {                                                                                  \
        a.lo = vdotq_laneq_s32(a.lo, w0, xv, lane);                                       \
        a.hi = vdotq_laneq_s32(a.hi, w1, xv, lane);                                       \
    } while (0)

/* 16 bytes of w + 128 -> w */
static inline int8x16_t qr_s8(const uint8_t *p)
{
    return vreinterpretq_s8_u8(veorq_u8(vld1q_u8(p), vdupq_n_u8(0x80)));
}

#define QR_Q8(a, ch, c, xv, lane) QR_SDOT(a, qr_s8(ch + 32 * c), qr_s8(ch + 32 * c + 16), xv, lane)

static inline qrint qr_dot_q8(const uint8_t *ch, const int8_t *x, int32_t s)
{
    (void)s;
    int8x16_t x0 = vld1q_s8(x), x1 = vld1q_s8(x + 16);
    qrint a = {vdupq_n_s32(0), vdupq_n_s32(0)}, b = a;
    QR_Q8(a, ch, 0, x0, 0);
    QR_Q8(b, ch, 1, x0, 1);
    QR_Q8(a, ch, 2, x0, 2);
    QR_Q8(b, ch, 3, x0, 3);
    QR_Q8(a, ch, 4, x1, 0);
    QR_Q8(b, ch, 5, x1, 1);
    QR_Q8(a, ch, 6, x1, 2);
    QR_Q8(b, ch, 7, x1, 3);
    a.lo = vaddq_s32(a.lo, b.lo), a.hi = vaddq_s32(a.hi, b.hi);
    return a;
}

/* chunk c of nibbles: low ones against x lane c of x0, high ones against lane c of x1 */
#define QR_Q4(a, b, ch, c, x0, x1)                                                        \
    do {                                                                                  \
        uint8x16_t v0 = vld1q_u8(ch + 32 * c), v1 = vld1q_u8(ch + 32 * c + 16);           \
        QR_SDOT(a, vreinterpretq_s8_u8(vandq_u8(v0, m4)),                                 \
                vreinterpretq_s8_u8(vandq_u8(v1, m4)), x0, c);                            \
        QR_SDOT(b, vreinterpretq_s8_u8(vshrq_n_u8(v0, 4)),                                \
                vreinterpretq_s8_u8(vshrq_n_u8(v1, 4)), x1, c);                           \
    } while (0)

static inline qrint qr_dot_q4(const uint8_t *ch, const int8_t *x, int32_t s)
{
    const uint8x16_t m4 = vdupq_n_u8(15);
    int8x16_t x0 = vld1q_s8(x), x1 = vld1q_s8(x + 16);
    qrint a = {vdupq_n_s32(0), vdupq_n_s32(0)}, b = a;
    QR_Q4(a, b, ch, 0, x0, x1);
    QR_Q4(a, b, ch, 1, x0, x1);
    QR_Q4(a, b, ch, 2, x0, x1);
    QR_Q4(a, b, ch, 3, x0, x1);
    int32x4_t o = vdupq_n_s32(8 * s);
    a.lo = vsubq_s32(vaddq_s32(a.lo, b.lo), o), a.hi = vsubq_s32(vaddq_s32(a.hi, b.hi), o);
    return a;
}

static inline qracc qr_scales(const uint8_t *d, float dx)
{
    float16x8_t h = vreinterpretq_f16_u8(vld1q_u8(d));
    qracc r = {vmulq_n_f32(vcvt_f32_f16(vget_low_f16(h)), dx),
               vmulq_n_f32(vcvt_high_f32_f16(h), dx)};
    return r;
}

static inline qracc qracc_zero(void)
{
    qracc r = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    return r;
}
static inline qracc qracc_add(qracc a, qracc b)
{
    qracc r = {vaddq_f32(a.lo, b.lo), vaddq_f32(a.hi, b.hi)};
    return r;
}
static inline qracc qracc_fma(qracc a, qracc s, qrint d)
{
    qracc r = {vfmaq_f32(a.lo, s.lo, vcvtq_f32_s32(d.lo)), vfmaq_f32(a.hi, s.hi, vcvtq_f32_s32(d.hi))};
    return r;
}
static inline void qracc_store(float *out, qracc a)
{
    vst1q_f32(out, a.lo);
    vst1q_f32(out + 4, a.hi);
}
#endif

static inline float q_f16(uint16_t h)
{
    __fp16 f;
    memcpy(&f, &h, 2);
    return (float)f;
}
#endif
