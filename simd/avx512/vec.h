/* simd/avx512/vec.h — the AVX-512 vector layer: one float vector type `vf` (16 lanes)
 * and static inline operations whose names are the same in simd/avx2/vec.h and
 * simd/neon/vec.h, so kernels in simd/common/ are written once. Tails (n < lanes) use
 * k-masks. exp is the shared degree-4 minimax polynomial; 2^n is applied by vscalefps. */
#ifndef PARLM_SIMD_AVX512_VEC_H
#define PARLM_SIMD_AVX512_VEC_H
#include <immintrin.h>
#include <stdint.h>

typedef __m512 vf;
typedef __m512i vi; /* 16 x int32 */
#define VF_LANES 16
#define VEC_ISA_NAME(x) parlm_avx512_##x

static inline __mmask16 vf_mask_(int64_t n)
{
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

static inline vf vf_load(const float *p) { return _mm512_loadu_ps(p); }
static inline void vf_store(float *p, vf v) { _mm512_storeu_ps(p, v); }
/* the first min(n, lanes) floats, other lanes 0 (or `fill`); reads nothing past p + n */
static inline vf vf_load_n(const float *p, int64_t n) { return _mm512_maskz_loadu_ps(vf_mask_(n), p); }
static inline vf vf_load_n_fill(const float *p, int64_t n, float fill)
{
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), vf_mask_(n), p);
}
/* stores the first min(n, lanes) lanes */
static inline void vf_store_n(float *p, int64_t n, vf v) { _mm512_mask_storeu_ps(p, vf_mask_(n), v); }

static inline vf vf_set1(float x) { return _mm512_set1_ps(x); }
/* *p in every lane (an FMA operand becomes an embedded {1to16} broadcast) */
static inline vf vf_bcast(const float *p) { return _mm512_set1_ps(*p); }
static inline vf vf_zero(void) { return _mm512_setzero_ps(); }
static inline vf vf_add(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf vf_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf vf_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf vf_div(vf a, vf b) { return _mm512_div_ps(a, b); }
static inline vf vf_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }   /* a b + c */
static inline vf vf_fnma(vf a, vf b, vf c) { return _mm512_fnmadd_ps(a, b, c); } /* c - a b */
/* max/min return b if either is NaN: put the constant first to keep a NaN */
static inline vf vf_max(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline vf vf_min(vf a, vf b) { return _mm512_min_ps(a, b); }
static inline vf vf_sqrt(vf a) { return _mm512_sqrt_ps(a); }
static inline float vf_hsum(vf a) { return _mm512_reduce_add_ps(a); }
static inline float vf_hmax(vf a) { return _mm512_reduce_max_ps(a); }
static inline float vf_first(vf a) { return _mm512_cvtss_f32(a); }

/* compare + select: vf_select(vf_lt(a, b), x, y) = a < b ? x : y per lane */
typedef __mmask16 vmask;
static inline vmask vf_lt(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
static inline vmask vf_gt(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
static inline vmask vf_le(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
static inline vf vf_select(vmask m, vf x, vf y) { return _mm512_mask_blend_ps(m, y, x); }
static inline int vm_any(vmask m) { return m != 0; } /* some lane set */

/* int32 lanes */
static inline vi vi_set1(int32_t x) { return _mm512_set1_epi32(x); }
static inline vi vi_iota(void)
{
    return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
static inline vi vi_add(vi a, vi b) { return _mm512_add_epi32(a, b); }
static inline vi vi_load(const int32_t *p) { return _mm512_loadu_si512(p); }
static inline vmask vi_lt(vi a, vi b) { return _mm512_cmplt_epi32_mask(a, b); }
static inline vmask vi_eq(vi a, vi b) { return _mm512_cmpeq_epi32_mask(a, b); }
static inline vf vf_from_vi(vi a) { return _mm512_cvtepi32_ps(a); }

/* exp(x), all lanes. exp(x) = 2^n exp(r), n = round(x / ln2), r = x - n ln2 with ln2 split
 * in two (Cody-Waite; FMA keeps n ln2_hi exact). exp(r) on [-ln2/2, ln2/2] is
 * 1 + r + r^2 q(r), q of degree 4 fitted by us (minimax on relative error, Lawson
 * iterations; approximation error 3.1e-9, below float rounding). Measured max relative
 * error against double exp over every float in [-87.3, 88.7]: 1.19e-7 (1.27 ulp). Below
 * -87.3 results are subnormal (absolute error < 1e-45), below -110 and at -inf exactly 0;
 * above 88.72 and at +inf +inf; NaN stays NaN. */
static inline vf vf_exp(vf x)
{
    x = _mm512_max_ps(_mm512_set1_ps(-110.0f), x);
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 q = _mm512_set1_ps(1.381461043e-03f);
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(8.368710056e-03f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(4.166838899e-02f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(1.666652113e-01f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(4.999999404e-01f));
    __m512 p = _mm512_fmadd_ps(_mm512_mul_ps(q, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

/* lane j of the result = the sum of the lanes of a[j], j < 16 (a transpose-and-add tree,
 * 45 shuffles/adds instead of 16 separate reductions) */
static inline vf vf_sum_lanes(const vf a[16])
{
    __m512 t[8], u[4];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        t[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]),
                             _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) { /* 128-bit lane L of u[i]: partial sums of a[4i .. 4i+3] */
        __m512d x = _mm512_castps_pd(t[2 * i]), y = _mm512_castps_pd(t[2 * i + 1]);
        u[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
    }
    __m512 v0 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], 0x88),
                              _mm512_shuffle_f32x4(u[0], u[1], 0xdd));
    __m512 v1 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], 0x88),
                              _mm512_shuffle_f32x4(u[2], u[3], 0xdd));
    return _mm512_add_ps(_mm512_shuffle_f32x4(v0, v1, 0x88), _mm512_shuffle_f32x4(v0, v1, 0xdd));
}

/* in place 16 x 16 transpose: lane c of r[i] -> lane i of r[c] */
static inline __attribute__((always_inline)) void vf_transpose(vf r[16])
{
    __m512 t[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 4) { /* r[i + c], 128-bit lane L: rows i..i+3 of column 4L+c */
        __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
        __m512d c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        t[c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);
        t[4 + c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);
        t[8 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
        t[12 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
    }
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xdd);
        r[4 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0xdd);
    }
}

/* prefetch a cache line for reading / for writing */
static inline void v_prefetch(const void *p) { _mm_prefetch((const char *)p, _MM_HINT_T0); }
static inline void v_prefetchw(const void *p) { _mm_prefetch((const char *)p, _MM_HINT_ET0); }

/* ---- bf16: the top half of an f32. Narrowing rounds to nearest even by adding
 * 0x7fff + (bit 16) before the shift; a NaN keeps its top bits with the quiet bit set.
 * Bitwise the same as the scalar reference, denormals included. */
static inline __m512i vf_round_bf16_(vf x)
{
    __m512i u = _mm512_castps_si512(x);
    __m512i bias = _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                    _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1)));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, bias), 16);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    __m512i q = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    return _mm512_mask_mov_epi32(r, nan, q);
}
/* lanes of a bf16 vector: the first min(n, lanes) of p, other lanes 0 */
static inline vf vf_load_bf16_n(const uint16_t *p, int64_t n)
{
    __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(vf_mask_(n), p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
}
/* a plain load (not a full mask): it folds into vpmovzxwd's memory operand */
static inline vf vf_load_bf16(const uint16_t *p)
{
    __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
}
static inline void vf_store_bf16_n(uint16_t *p, int64_t n, vf v)
{
    _mm512_mask_cvtepi32_storeu_epi16(p, vf_mask_(n), vf_round_bf16_(v));
}
static inline void vf_store_bf16(uint16_t *p, vf v) { vf_store_bf16_n(p, VF_LANES, v); }
/* two vectors -> 2 * lanes bf16 at p */
static inline void vf_store_bf16x2(uint16_t *p, vf a, vf b)
{
    vf_store_bf16(p, a);
    vf_store_bf16(p + VF_LANES, b);
}

/* ---- Llama ops (simd/common/llama.c) ---- */
/* lanes (0 1)(2 3)... -> (1 0)(3 2)...: the partner of each element in a rotary pair */
static inline vf vf_swap_pairs(vf a) { return _mm512_permute_ps(a, 0xb1); }

/* ---- GEMV write-back (simd/common/gemv.c): the lane sums of 4 rows' accumulators (or of
 * one) and y = alpha * sum + beta * y, beta == 0 never reading y. 4 sums at once take 3
 * add levels instead of 4 separate reductions; one row takes the same path (zeros
 * beside it), so a row's result does not depend on how rows are grouped. */
#define GEMV_AHEAD_ROWS(es) (16 * 4 / (es)) /* weight rows prefetched ahead */
#define GEMV_STREAM_AHEAD 4096 /* bytes a one-row GEMV prefetches ahead (gemv_t1) */
static inline __m128 vf_hsum4_(vf v0, vf v1, vf v2, vf v3)
{
    __m512 t0 = _mm512_add_ps(_mm512_unpacklo_ps(v0, v1), _mm512_unpackhi_ps(v0, v1));
    __m512 t1 = _mm512_add_ps(_mm512_unpacklo_ps(v2, v3), _mm512_unpackhi_ps(v2, v3));
    /* each 128-bit lane: v0, v1, v2, v3 partial sums */
    __m512 u = _mm512_add_ps(_mm512_shuffle_ps(t0, t1, 0x44), _mm512_shuffle_ps(t0, t1, 0xee));
    u = _mm512_add_ps(u, _mm512_shuffle_f32x4(u, u, 0x4e));
    u = _mm512_add_ps(u, _mm512_shuffle_f32x4(u, u, 0xb1));
    return _mm512_castps512_ps128(u);
}
static inline void vf_gemv_out4(float *y, vf a, vf b, vf c, vf d, float alpha, float beta)
{
    __m128 s = _mm_mul_ps(_mm_set1_ps(alpha), vf_hsum4_(a, b, c, d));
    if (beta != 0.0f)
        s = _mm_fmadd_ps(_mm_set1_ps(beta), _mm_loadu_ps(y), s);
    _mm_storeu_ps(y, s);
}
static inline void vf_gemv_out1(float *y, vf a, float alpha, float beta)
{
    __m512 z = _mm512_setzero_ps();
    float s = _mm_cvtss_f32(vf_hsum4_(a, z, z, z));
    *y = beta == 0.0f ? alpha * s : alpha * s + beta * *y;
}
/* tail loads/stores (vf_load_n, vf_store_n) as cheap as whole ones?
 * (a k-masked move costs what a plain one does) */
#define VF_TAIL_FREE 1
/* ---- GEMM pieces (simd/common/gemm_*.h) */
/* prefetch a cache line into L1 / into L2 (the C tile: in L1 it would compete with the B
 * panel). Always inlined: GCC finds a call free of side effects and drops it. */
static inline __attribute__((always_inline)) void v_prefetch_l1(const void *p)
{
    _mm_prefetch((const char *)p, _MM_HINT_T0);
}
static inline __attribute__((always_inline)) void v_prefetch_l2(const void *p)
{
    _mm_prefetch((const char *)p, _MM_HINT_T1);
}
/* bf16 pairs in 32-bit lanes -> the even (low half) or odd (high half) element as f32 (exact) */
static inline vf vf_bf16_even(vi v) { return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)); }
static inline vf vf_bf16_odd(vi v)
{
    return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xffff0000u)));
}
/* VF_LANES 32-bit words e[j] | o[j] << 16 (o NULL: zero halves), zero past n, as the bits
 * of a vf (a bf16 k pair of the GEMM packing, stored with vf_store_n) */
static inline vf vf_bf16_zip_n(const uint16_t *e, const uint16_t *o, int64_t n)
{
    __mmask16 m = vf_mask_(n);
    __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, e));
    if (o) {
        __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, o));
        v = _mm512_or_si512(v, _mm512_slli_epi32(h, 16));
    }
    return _mm512_castsi512_ps(v);
}
#endif
