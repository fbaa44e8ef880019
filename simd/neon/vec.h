/* simd/neon/vec.h — the AArch64 Advanced SIMD vector layer: one float vector type `vf`
 * (4 lanes) and static inline operations whose names are the same in simd/avx2/vec.h and
 * simd/avx512/vec.h, so kernels in simd/common/ are written once. NEON has no masked
 * moves: tails (n < lanes) go through a small zero-padded buffer. */
#ifndef PARLM_SIMD_NEON_VEC_H
#define PARLM_SIMD_NEON_VEC_H
#include <arm_neon.h>
#include <stdint.h>
#include <string.h>

typedef float32x4_t vf;
typedef int32x4_t vi;  /* 4 x int32 */
typedef uint32x4_t vmask; /* lane mask: all-ones or zero per lane */
#define VF_LANES 4
#define VEC_ISA_NAME(x) parlm_neon_##x

static inline vf vf_load(const float *p) { return vld1q_f32(p); }
static inline void vf_store(float *p, vf v) { vst1q_f32(p, v); }
/* the first min(n, lanes) floats, other lanes `fill` (or 0); reads nothing past p + n */
static inline vf vf_load_n_fill(const float *p, int64_t n, float fill)
{
    if (n >= 4)
        return vld1q_f32(p);
    float t[4] = {fill, fill, fill, fill};
    if (n > 0)
        memcpy(t, p, (size_t)n * sizeof(float));
    return vld1q_f32(t);
}
static inline vf vf_load_n(const float *p, int64_t n) { return vf_load_n_fill(p, n, 0.0f); }
/* stores the first min(n, lanes) lanes */
static inline void vf_store_n(float *p, int64_t n, vf v)
{
    if (n >= 4) {
        vst1q_f32(p, v);
    } else if (n > 0) {
        float t[4];
        vst1q_f32(t, v);
        memcpy(p, t, (size_t)n * sizeof(float));
    }
}

static inline vf vf_set1(float x) { return vdupq_n_f32(x); }
static inline vf vf_bcast(const float *p) { return vld1q_dup_f32(p); } /* *p in every lane (ld1r) */
static inline vf vf_zero(void) { return vdupq_n_f32(0.0f); }
static inline vf vf_add(vf a, vf b) { return vaddq_f32(a, b); }
static inline vf vf_sub(vf a, vf b) { return vsubq_f32(a, b); }
static inline vf vf_mul(vf a, vf b) { return vmulq_f32(a, b); }
static inline vf vf_div(vf a, vf b) { return vdivq_f32(a, b); }
static inline vf vf_fma(vf a, vf b, vf c) { return vfmaq_f32(c, a, b); }  /* a b + c */
static inline vf vf_fnma(vf a, vf b, vf c) { return vfmsq_f32(c, a, b); } /* c - a b */
/* fmax/fmin: NaN in either operand gives NaN */
static inline vf vf_max(vf a, vf b) { return vmaxq_f32(a, b); }
static inline vf vf_min(vf a, vf b) { return vminq_f32(a, b); }
static inline vf vf_sqrt(vf a) { return vsqrtq_f32(a); }
static inline float vf_hsum(vf a) { return vaddvq_f32(a); }
static inline float vf_hmax(vf a) { return vmaxvq_f32(a); }
static inline float vf_first(vf a) { return vgetq_lane_f32(a, 0); }

/* compare + select: vf_select(vf_lt(a, b), x, y) = a < b ? x : y per lane */
static inline vmask vf_lt(vf a, vf b) { return vcltq_f32(a, b); }
static inline vmask vf_gt(vf a, vf b) { return vcgtq_f32(a, b); }
static inline vmask vf_le(vf a, vf b) { return vcleq_f32(a, b); }
static inline vf vf_select(vmask m, vf x, vf y) { return vbslq_f32(m, x, y); }
static inline int vm_any(vmask m) { return vmaxvq_u32(m) != 0; } /* some lane set */

/* int32 lanes */
static inline vi vi_set1(int32_t x) { return vdupq_n_s32(x); }
static inline vi vi_iota(void)
{
    static const int32_t k[4] = {0, 1, 2, 3};
    return vld1q_s32(k);
}
static inline vi vi_add(vi a, vi b) { return vaddq_s32(a, b); }
static inline vi vi_load(const int32_t *p) { return vld1q_s32(p); }
static inline vmask vi_lt(vi a, vi b) { return vcltq_s32(a, b); }
static inline vmask vi_eq(vi a, vi b) { return vceqq_s32(a, b); }
static inline vf vf_from_vi(vi a) { return vcvtq_f32_s32(a); }

/* exp(x), all lanes: the polynomial and reduction of simd/avx512/vec.h (see there; max
 * relative error 1.27 ulp on the normal range). 2^n is applied as two exponent-field
 * multiplies 2^(n/2) 2^(n - n/2), so results round into subnormals and reach exactly 0
 * (x <= -110, -inf) or +inf (x >= 89). NaN stays NaN (fmax/fmin propagate it). */
static inline vf vf_exp(vf x)
{
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-110.0f)), vdupq_n_f32(89.0f));
    float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693145751953125f));
    r = vfmsq_f32(r, n, vdupq_n_f32(1.428606765330187e-06f));
    float32x4_t q = vdupq_n_f32(1.381461043e-03f);
    q = vfmaq_f32(vdupq_n_f32(8.368710056e-03f), q, r);
    q = vfmaq_f32(vdupq_n_f32(4.166838899e-02f), q, r);
    q = vfmaq_f32(vdupq_n_f32(1.666652113e-01f), q, r);
    q = vfmaq_f32(vdupq_n_f32(4.999999404e-01f), q, r);
    float32x4_t p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), vmulq_f32(q, r), r);
    int32x4_t ni = vcvtq_s32_f32(n); /* in [-159, 129]: each half is a normal power of 2 */
    int32x4_t n1 = vshrq_n_s32(ni, 1), n2 = vsubq_s32(ni, n1);
    float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n1, vdupq_n_s32(127)), 23));
    float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n2, vdupq_n_s32(127)), 23));
    return vmulq_f32(vmulq_f32(p, s1), s2);
}

/* lane j of the result = the sum of the lanes of a[j], j < 4 (pairwise adds) */
static inline vf vf_sum_lanes(const vf a[4])
{
    return vpaddq_f32(vpaddq_f32(a[0], a[1]), vpaddq_f32(a[2], a[3]));
}

/* in place 4 x 4 transpose: lane c of r[i] -> lane i of r[c] */
static inline void vf_transpose(vf r[4])
{
    float32x4_t t0 = vtrn1q_f32(r[0], r[1]), t1 = vtrn2q_f32(r[0], r[1]);
    float32x4_t t2 = vtrn1q_f32(r[2], r[3]), t3 = vtrn2q_f32(r[2], r[3]);
    float64x2_t a0 = vreinterpretq_f64_f32(t0), a1 = vreinterpretq_f64_f32(t1);
    float64x2_t a2 = vreinterpretq_f64_f32(t2), a3 = vreinterpretq_f64_f32(t3);
    r[0] = vreinterpretq_f32_f64(vtrn1q_f64(a0, a2));
    r[1] = vreinterpretq_f32_f64(vtrn1q_f64(a1, a3));
    r[2] = vreinterpretq_f32_f64(vtrn2q_f64(a0, a2));
    r[3] = vreinterpretq_f32_f64(vtrn2q_f64(a1, a3));
}

/* prefetch a cache line for reading / for writing */
static inline void v_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }
static inline void v_prefetchw(const void *p) { __builtin_prefetch(p, 1, 3); }

/* ---- bf16: the top half of an f32. Narrowing rounds to nearest even by adding
 * 0x7fff + (bit 16); a NaN keeps its top half with the quiet bit set. Bitwise the same as
 * the scalar reference. Result still in the top half of each u32 lane. */
static inline uint32x4_t vf_round_bf16_(vf x)
{
    uint32x4_t u = vreinterpretq_u32_f32(x);
    uint32x4_t lsb = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
    uint32x4_t rounded = vaddq_u32(u, vaddq_u32(lsb, vdupq_n_u32(0x7fff)));
    uint32x4_t quiet = vorrq_u32(u, vdupq_n_u32(0x400000));
    return vbslq_u32(vmvnq_u32(vceqq_f32(x, x)), quiet, rounded);
}
static inline vf vf_load_bf16(const uint16_t *p)
{
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}
/* the first min(n, lanes) of p, other lanes 0 */
static inline vf vf_load_bf16_n(const uint16_t *p, int64_t n)
{
    uint16_t t[4] = {0};
    if (n > 0)
        memcpy(t, p, (size_t)(n < 4 ? n : 4) * sizeof *p);
    return vf_load_bf16(t);
}
static inline void vf_store_bf16(uint16_t *p, vf v)
{
    vst1_u16(p, vshrn_n_u32(vf_round_bf16_(v), 16));
}
static inline void vf_store_bf16_n(uint16_t *p, int64_t n, vf v)
{
    uint16_t t[4];
    vf_store_bf16(t, v);
    if (n > 0)
        memcpy(p, t, (size_t)(n < 4 ? n : 4) * sizeof *p);
}
/* two vectors -> 2 * lanes bf16 at p (uzp2 keeps the top halves of the 8 u32 lanes) */
static inline void vf_store_bf16x2(uint16_t *p, vf a, vf b)
{
    vst1q_u16(p, vuzp2q_u16(vreinterpretq_u16_u32(vf_round_bf16_(a)),
                            vreinterpretq_u16_u32(vf_round_bf16_(b))));
}

/* ---- Llama ops (simd/common/llama.c) ---- */
/* lanes (0 1)(2 3)... -> (1 0)(3 2)...: the partner of each element in a rotary pair */
static inline vf vf_swap_pairs(vf a) { return vrev64q_f32(a); }

/* ---- GEMV write-back (simd/common/gemv.c): the lane sums of 4 rows' accumulators (or of
 * one) and y = alpha * sum + beta * y, beta == 0 never reading y. Pairwise adds give the
 * 4 sums in one vector. */
#define GEMV_AHEAD_ROWS(es) 16 /* weight rows prefetched ahead (es: bytes per weight) */
#define GEMV_STREAM_AHEAD 4096 /* bytes a one-row GEMV prefetches ahead (gemv_t1) */
static inline void vf_gemv_out4(float *y, vf a, vf b, vf c, vf d, float alpha, float beta)
{
    float32x4_t v = vmulq_n_f32(vpaddq_f32(vpaddq_f32(a, b), vpaddq_f32(c, d)), alpha);
    if (beta != 0.0f)
        v = vfmaq_n_f32(v, vld1q_f32(y), beta);
    vst1q_f32(y, v);
}
static inline void vf_gemv_out1(float *y, vf a, float alpha, float beta)
{
    float s = vaddvq_f32(a);
    *y = beta == 0.0f ? alpha * s : alpha * s + beta * *y;
}
/* tail loads/stores (vf_load_n, vf_store_n) as cheap as whole ones?
 * (tails go through a small buffer) */
#define VF_TAIL_FREE 0
/* ---- GEMM pieces (simd/common/gemm_*.h) */
/* prefetch a cache line into L1 / into L2 (the C tile: in L1 it would compete with the B
 * panel). Always inlined: GCC finds a call free of side effects and drops it. */
static inline __attribute__((always_inline)) void v_prefetch_l1(const void *p)
{
    __builtin_prefetch(p, 0, 3);
}
static inline __attribute__((always_inline)) void v_prefetch_l2(const void *p)
{
    __builtin_prefetch(p, 0, 2);
}
/* bf16 pairs in 32-bit lanes -> the even (low half) or odd (high half) element as f32 (exact) */
static inline vf vf_bf16_even(vi v) { return vreinterpretq_f32_s32(vshlq_n_s32(v, 16)); }
static inline vf vf_bf16_odd(vi v)
{
    return vreinterpretq_f32_s32(vandq_s32(v, vdupq_n_s32((int32_t)0xffff0000u)));
}
/* VF_LANES 32-bit words e[j] | o[j] << 16 (o NULL: zero halves), zero past n, as the bits
 * of a vf (a bf16 k pair of the GEMM packing, stored with vf_store_n) */
static inline uint16x4_t v_load4_u16_(const uint16_t *p, int64_t n)
{
    if (n >= 4)
        return vld1_u16(p);
    uint16_t t[4] = {0};
    if (n > 0)
        memcpy(t, p, (size_t)n * 2);
    return vld1_u16(t);
}
static inline vf vf_bf16_zip_n(const uint16_t *e, const uint16_t *o, int64_t n)
{
    uint16x4_t a = v_load4_u16_(e, n), b = o ? v_load4_u16_(o, n) : vdup_n_u16(0);
    uint16x4x2_t z = vzip_u16(a, b);
    return vreinterpretq_f32_u16(vcombine_u16(z.val[0], z.val[1]));
}
#endif
