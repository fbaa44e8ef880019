/* simd/avx512/vec_q.h — the avx512 sets use the 256-bit x86 block dot (a block is 32
 * bytes: one ymm); built with -mavx512vnni it becomes vpdpbusd, in the library that
 * upgrades the avx512 table when cpuid reports AVX512_VNNI. That build also runs the
 * repacked GEMV a zmm at a time ("wide"): two consecutive 32-byte chunks of one 8-row
 * group, so the weights are read front to back as one stream, with x's dwords permuted
 * to match and the two halves' int32 sums added before the f32 scale; and the plain-row
 * GEMV two blocks of a row a zmm (QP_WIDE). */
#ifndef PARLM_SIMD_AVX512_VEC_Q_H
#define PARLM_SIMD_AVX512_VEC_Q_H
#ifdef __AVX512VNNI__
#define QP_WIDE 1 /* the plain-row GEMV below, not the avx2 one */
#endif
#include "../avx2/vec_q.h"

#ifdef __AVX512VNNI__
#define QV_NAME(x) parlm_avx512vnni_##x

#define QR_WIDE 1
/* x's dwords c and c + 1, each broadcast over 8 lanes: the x of a zmm holding chunks c and
 * c + 1 of one group (row j's 4 weights in lanes j and 8 + j) */
static inline __m512i qrw_x2(__m512i x, int c)
{
    const __m512i lo = _mm512_set1_epi32(c), hi = _mm512_set1_epi32(c + 1);
    return _mm512_permutexvar_epi32(_mm512_mask_blend_epi32(0xff00, lo, hi), x);
}

/* the 8 rows' exact int32 dots: lanes j and 8 + j of s are row j's two halves */
static inline __m256i qrw_fold(__m512i s)
{
    return _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
}

/* Q8_0: one group's 8 chunks (w + 128) as 4 zmm in memory order, so that a GEMV reads one
 * stream; the -128 sum(x) correction is the accumulator's start value */
static inline __m256i qrw_dot_q8(const uint8_t *ch, const int8_t *x, int32_t s)
{
    __m512i xv = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)x));
    __m512i a = _mm512_maskz_set1_epi32(0x00ff, -128 * s), b = _mm512_setzero_si512();
    a = _mm512_dpbusd_epi32(a, _mm512_loadu_si512(ch), qrw_x2(xv, 0));
    b = _mm512_dpbusd_epi32(b, _mm512_loadu_si512(ch + 64), qrw_x2(xv, 2));
    a = _mm512_dpbusd_epi32(a, _mm512_loadu_si512(ch + 128), qrw_x2(xv, 4));
    b = _mm512_dpbusd_epi32(b, _mm512_loadu_si512(ch + 192), qrw_x2(xv, 6));
    return qrw_fold(_mm512_add_epi32(a, b));
}

/* Q4_0: 4 chunks of nibbles as 2 zmm. The high nibbles are masked in place (16 q): their
 * sum is shifted down once, exactly, instead of shifting every vector. */
static inline __m256i qrw_dot_q4(const uint8_t *ch, const int8_t *x, int32_t s)
{
    const __m512i m4 = _mm512_set1_epi8(15);
    __m512i xv = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)x));
    __m512i v0 = _mm512_loadu_si512(ch), v1 = _mm512_loadu_si512(ch + 64);
    __m512i lo = _mm512_maskz_set1_epi32(0x00ff, -8 * s), hi = _mm512_setzero_si512();
    lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(v0, m4), qrw_x2(xv, 0));
    hi = _mm512_dpbusd_epi32(hi, _mm512_andnot_si512(m4, v0), qrw_x2(xv, 4));
    lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(v1, m4), qrw_x2(xv, 2));
    hi = _mm512_dpbusd_epi32(hi, _mm512_andnot_si512(m4, v1), qrw_x2(xv, 6));
    return qrw_fold(_mm512_add_epi32(lo, _mm512_srai_epi32(hi, 4)));
}

/* ---- plain rows 8 at a time, two blocks a zmm (simd/avx2/vec_q.h says the idea) -----
 * A row's blocks b and b + 1 are one zmm (Q8_0: the two 32-byte runs; Q4_0: the two
 * 16-byte nibble runs, each in two chunks: low nibbles masked in the first, high in place
 * in the second), so one vpdpbusd serves two blocks of a row. The 8 rows' zmm are summed
 * across within 128-bit chunks (unpack / add), then the chunks are paired: the result
 * and the accumulator hold lanes [b rows 0-3, b+1 rows 0-3, b rows 4-7, b+1 rows 4-7],
 * b's lanes being r8's even sums and b+1's its odd ones. */
typedef __m512 qpacc;
static inline qpacc qpacc_zero(void) { return _mm512_setzero_ps(); }

/* per 128-bit chunk: the sums of a, b, c, d's four lanes */
static inline __m512i qpw_sum4(__m512i a, __m512i b, __m512i c, __m512i d)
{
    __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
}

static inline __m512i qpw_two(const void *p0, const void *p1) /* 32 bytes at p0, p1 */
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p0)),
                              _mm256_loadu_si256((const __m256i *)p1), 1);
}

static inline __m512i qpw_bcast16(const uint8_t *p)
{
    return _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)p));
}

/* a + the 8 rows' blocks b, b + 1 at byte offsets ob, ob + bytes of each row; two = 0:
 * block b only (b + 1's lanes of a unchanged, its weights and x's block not read) */
static inline __attribute__((always_inline)) qpacc
qpw_blocks(qpacc a, const qprows *r, int64_t ob, int bytes, const parlm_q8x *xb, int q4, int two)
{
    const __m512i x01 = two ? qpw_two(xb[0].q, xb[1].q)
                            : _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)xb[0].q));
    __m512i v[8], s;
    if (q4) {
        /* chunks [b low, b+1 low, b high (16 q), b+1 high (16 q)] and x to match */
        const __m512i m =
            _mm512_inserti64x4(_mm512_set1_epi8(15), _mm256_set1_epi8((char)0xf0), 1);
        const __m512i x = _mm512_shuffle_i64x2(x01, x01, 0xd8);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const uint8_t *p = r->p[j] + ob + 2;
            __m512i w = qpw_bcast16(p);
            if (two)
                w = _mm512_mask_blend_epi32(0xf0f0, w, qpw_bcast16(p + bytes));
            v[j] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(w, m), x);
        }
        __m512i lo = qpw_sum4(v[0], v[1], v[2], v[3]), hi = qpw_sum4(v[4], v[5], v[6], v[7]);
        s = _mm512_add_epi32(_mm512_shuffle_i64x2(lo, hi, 0x44),
                             _mm512_srai_epi32(_mm512_shuffle_i64x2(lo, hi, 0xee), 4));
    } else {
        /* chunks [b 0-15, b 16-31, b+1 0-15, b+1 16-31], as unsigned w + 128 */
        const __m512i flip = _mm512_set1_epi8((char)0x80);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const uint8_t *p = r->p[j] + ob + 2;
            __m512i w = two ? qpw_two(p, p + bytes)
                            : _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)p));
            v[j] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_xor_si512(w, flip), x01);
        }
        __m512i lo = qpw_sum4(v[0], v[1], v[2], v[3]), hi = qpw_sum4(v[4], v[5], v[6], v[7]);
        s = _mm512_add_epi32(_mm512_shuffle_i64x2(lo, hi, 0x88),
                             _mm512_shuffle_i64x2(lo, hi, 0xdd));
    }
    const int o = q4 ? 8 : 128;
    const __mmask16 k = two ? 0xffff : 0x0f0f;
    s = _mm512_sub_epi32(s, _mm512_mask_blend_epi32(0xf0f0, _mm512_set1_epi32(o * xb[0].s),
                                                    _mm512_set1_epi32(two ? o * xb[1].s : 0)));
    /* the 16 scales in the lanes' order */
    __m256i h = _mm256_setr_epi64x((long long)qp_h4(r->p, ob),
                                   two ? (long long)qp_h4(r->p, ob + bytes) : 0,
                                   (long long)qp_h4(r->p + 4, ob),
                                   two ? (long long)qp_h4(r->p + 4, ob + bytes) : 0);
    __m512 sc = _mm512_mul_ps(_mm512_cvtph_ps(h),
                              _mm512_mask_blend_ps(0xf0f0, _mm512_set1_ps(xb[0].d),
                                                   _mm512_set1_ps(two ? xb[1].d : 0.0f)));
    return _mm512_mask3_fmadd_ps(sc, _mm512_cvtepi32_ps(s), a, k);
}

static inline qpacc qp_pair(qpacc a, const qprows *r, int64_t ob, int bytes, const parlm_q8x *xb,
                            int q4)
{
    return qpw_blocks(a, r, ob, bytes, xb, q4, 1);
}

static inline qpacc qp_last(qpacc a, const qprows *r, int64_t ob, const parlm_q8x *xb, int q4)
{
    return qpw_blocks(a, r, ob, 0, xb, q4, 0);
}

/* row j: its even sums (chunks 0, 2) plus its odd ones (1, 3), as r8's a0 + a1 */
static inline void qp_store(float *out, qpacc a)
{
    __m512 e = _mm512_shuffle_f32x4(a, a, 0x88), o = _mm512_shuffle_f32x4(a, a, 0xdd);
    _mm256_storeu_ps(out, _mm256_add_ps(_mm512_castps512_ps256(e), _mm512_castps512_ps256(o)));
}

#endif
#endif
