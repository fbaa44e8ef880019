/* simd/avx2/vec.h — the AVX2+FMA vector layer: one float vector type `vf` (8 lanes) and
 * static inline operations whose names are the same in simd/avx512/vec.h and
 * simd/neon/vec.h, so kernels in simd/common/ are written once. Float tails use
 * vmaskmovps; bf16 tails go through a small buffer (no 16-bit masked moves in AVX2). */
#ifndef PARLM_SIMD_AVX2_VEC_H
#define PARLM_SIMD_AVX2_VEC_H
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

typedef __m256 vf;
typedef __m256i vi; /* 8 x int32 */
typedef __m256 vmask;  /* lane mask: all-ones or zero per lane */
#define VF_LANES 8
#define VEC_ISA_NAME(x) parlm_avx2_##x

/* all-ones in lanes < n, n clamped to [0, 8] */
static const int32_t vf_mask_table_[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
static inline __m256i vf_mask_(int64_t n)
{
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    return _mm256_loadu_si256((const __m256i *)(vf_mask_table_ + 8 - n));
}

static inline vf vf_load(const float *p) { return _mm256_loadu_ps(p); }
static inline void vf_store(float *p, vf v) { _mm256_storeu_ps(p, v); }
/* the first min(n, lanes) floats, other lanes 0 (or `fill`); reads nothing past p + n */
static inline vf vf_load_n(const float *p, int64_t n) { return _mm256_maskload_ps(p, vf_mask_(n)); }
static inline vf vf_load_n_fill(const float *p, int64_t n, float fill)
{
    __m256i m = vf_mask_(n);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
/* stores the first min(n, lanes) lanes */
static inline void vf_store_n(float *p, int64_t n, vf v) { _mm256_maskstore_ps(p, vf_mask_(n), v); }

static inline vf vf_set1(float x) { return _mm256_set1_ps(x); }
static inline vf vf_bcast(const float *p) { return _mm256_broadcast_ss(p); } /* *p in every lane */
static inline vf vf_zero(void) { return _mm256_setzero_ps(); }
static inline vf vf_add(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf vf_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf vf_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf vf_div(vf a, vf b) { return _mm256_div_ps(a, b); }
static inline vf vf_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }   /* a b + c */
static inline vf vf_fnma(vf a, vf b, vf c) { return _mm256_fnmadd_ps(a, b, c); } /* c - a b */
/* max/min return b if either is NaN: put the constant first to keep a NaN */
static inline vf vf_max(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf vf_min(vf a, vf b) { return _mm256_min_ps(a, b); }
static inline vf vf_sqrt(vf a) { return _mm256_sqrt_ps(a); }
static inline float vf_hsum(vf v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline float vf_hmax(vf v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline float vf_first(vf a) { return _mm256_cvtss_f32(a); }

/* compare + select: vf_select(vf_lt(a, b), x, y) = a < b ? x : y per lane */
static inline vmask vf_lt(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
static inline vmask vf_gt(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
static inline vmask vf_le(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
static inline vf vf_select(vmask m, vf x, vf y) { return _mm256_blendv_ps(y, x, m); }
static inline int vm_any(vmask m) { return _mm256_movemask_ps(m) != 0; } /* some lane set */

/* int32 lanes */
static inline vi vi_set1(int32_t x) { return _mm256_set1_epi32(x); }
static inline vi vi_iota(void) { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
static inline vi vi_add(vi a, vi b) { return _mm256_add_epi32(a, b); }
static inline vi vi_load(const int32_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline vmask vi_lt(vi a, vi b) { return _mm256_castsi256_ps(_mm256_cmpgt_epi32(b, a)); }
static inline vmask vi_eq(vi a, vi b) { return _mm256_castsi256_ps(_mm256_cmpeq_epi32(a, b)); }
static inline vf vf_from_vi(vi a) { return _mm256_cvtepi32_ps(a); }

/* exp(x), all lanes: the polynomial and reduction of simd/avx512/vec.h (see there; max
 * relative error 1.27 ulp on the normal range). 2^n is applied as two exponent-field
 * multiplies 2^(n/2) 2^(n - n/2), so results round into subnormals and reach exactly 0
 * (x <= -110, -inf) or +inf (x >= 89). NaN stays NaN. */
static inline vf vf_exp(vf x)
{
    x = _mm256_max_ps(_mm256_set1_ps(-110.0f), x);
    x = _mm256_min_ps(_mm256_set1_ps(89.0f), x);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
    __m256 q = _mm256_set1_ps(1.381461043e-03f);
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(8.368710056e-03f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(4.166838899e-02f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.666652113e-01f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(4.999999404e-01f));
    __m256 p = _mm256_fmadd_ps(_mm256_mul_ps(q, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* n in [-159, 129]: each half is a normal power of two */
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

/* lane j of the result = the sum of the lanes of a[j], j < 8 */
static inline vf vf_sum_lanes(const vf a[8])
{
    __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
    __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                         _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* in place 8 x 8 transpose: lane c of r[i] -> lane i of r[c] */
static inline __attribute__((always_inline)) void vf_transpose(vf r[8])
{
    __m256 t[8], u[8];
#pragma GCC unroll 4
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
#pragma GCC unroll 2
    for (int i = 0; i < 8; i += 4) { /* u[i + c], 128-bit half H: rows i..i+3 of column 4H+c */
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
        r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
}

/* prefetch a cache line for reading / for writing */
static inline void v_prefetch(const void *p) { _mm_prefetch((const char *)p, _MM_HINT_T0); }
static inline void v_prefetchw(const void *p) { __builtin_prefetch(p, 1, 3); }

/* ---- bf16: the top half of an f32. Narrowing rounds to nearest even by adding
 * 0x7fff + (bit 16) before the shift; a NaN keeps its top bits with the quiet bit set.
 * Bitwise the same as the scalar reference. Result in the low halves of the lanes. */
static inline __m256i vf_round_bf16_(vf x)
{
    __m256i u = _mm256_castps_si256(x);
    __m256i bias = _mm256_add_epi32(_mm256_set1_epi32(0x7fff),
                                    _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1)));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
    /* |u| > inf as signed compare: both sides are < 2^31 once the sign is cleared */
    __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                     _mm256_set1_epi32(0x7f800000));
    __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    return _mm256_blendv_epi8(r, q, nan);
}
static inline vf vf_load_bf16(const uint16_t *p)
{
    __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
}
/* the first min(n, lanes) of p, other lanes 0 */
static inline vf vf_load_bf16_n(const uint16_t *p, int64_t n)
{
    uint16_t t[8] = {0};
    memcpy(t, p, (size_t)(n < 8 ? n : 8) * sizeof *p);
    return vf_load_bf16(t);
}
static inline void vf_store_bf16(uint16_t *p, vf v)
{
    __m256i r = vf_round_bf16_(v);
    __m256i k = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0xd8);
    _mm_storeu_si128((__m128i *)p, _mm256_castsi256_si128(k));
}
static inline void vf_store_bf16_n(uint16_t *p, int64_t n, vf v)
{
    uint16_t t[8];
    vf_store_bf16(t, v);
    memcpy(p, t, (size_t)(n < 8 ? n : 8) * sizeof *p);
}
/* two vectors -> 2 * lanes bf16 at p (one pack: packus works per 128-bit lane,
 * a0 b0 a1 b1 -> permute to a0 a1 b0 b1) */
static inline void vf_store_bf16x2(uint16_t *p, vf a, vf b)
{
    __m256i k = _mm256_packus_epi32(vf_round_bf16_(a), vf_round_bf16_(b));
    _mm256_storeu_si256((__m256i *)p, _mm256_permute4x64_epi64(k, 0xd8));
}

/* ---- Llama ops (simd/common/llama.c) ---- */
/* lanes (0 1)(2 3)... -> (1 0)(3 2)...: the partner of each element in a rotary pair */
static inline vf vf_swap_pairs(vf a) { return _mm256_permute_ps(a, 0xb1); }

/* ---- GEMV write-back (simd/common/gemv.c): the lane sums of 4 rows' accumulators (or of
 * one) and y = alpha * sum + beta * y, beta == 0 never reading y. The reduction order is
 * this ISA's own (as before the kernels were shared, so results stay bitwise the same). */
#define GEMV_AHEAD_ROWS(es) 16 /* weight rows prefetched ahead (es: bytes per weight) */
#define GEMV_STREAM_AHEAD 4096 /* bytes a one-row GEMV prefetches ahead (gemv_t1) */
static inline void vf_gemv_out4(float *y, vf a, vf b, vf c, vf d, float alpha, float beta)
{
    float s[4] = {vf_hsum(a), vf_hsum(b), vf_hsum(c), vf_hsum(d)};
    for (int r = 0; r < 4; r++)
        y[r] = beta == 0.0f ? alpha * s[r] : alpha * s[r] + beta * y[r];
}
static inline void vf_gemv_out1(float *y, vf a, float alpha, float beta)
{
    float s = vf_hsum(a);
    *y = beta == 0.0f ? alpha * s : alpha * s + beta * *y;
}
/* tail loads/stores (vf_load_n, vf_store_n) as cheap as whole ones?
 * (vmaskmov is slower than a plain move) */
#define VF_TAIL_FREE 0
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
static inline vf vf_bf16_even(vi v) { return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)); }
static inline vf vf_bf16_odd(vi v)
{
    return _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int)0xffff0000u)));
}
/* VF_LANES 32-bit words e[j] | o[j] << 16 (o NULL: zero halves), zero past n, as the bits
 * of a vf (a bf16 k pair of the GEMM packing, stored with vf_store_n) */
static inline __m128i v_load8_u16_(const uint16_t *p, int64_t n)
{
    if (n >= 8)
        return _mm_loadu_si128((const __m128i *)p);
    uint16_t t[8] = {0};
    if (n > 0)
        memcpy(t, p, (size_t)n * 2);
    return _mm_loadu_si128((const __m128i *)t);
}
static inline vf vf_bf16_zip_n(const uint16_t *e, const uint16_t *o, int64_t n)
{
    __m128i a = v_load8_u16_(e, n), b = o ? v_load8_u16_(o, n) : _mm_setzero_si128();
    __m256i v = _mm256_set_m128i(_mm_unpackhi_epi16(a, b), _mm_unpacklo_epi16(a, b));
    return _mm256_castsi256_ps(v);
}
#endif
