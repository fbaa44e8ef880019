/* simd/avx2/vec_q.h — the x86 int8 block dot of simd/common/qgemv.c (AVX2, and AVX-512
 * through simd/avx512/vec_q.h). vpmaddubsw multiplies unsigned by signed bytes, so the
 * weight's sign moves onto x: |w| * sign(w) x. With AVX512-VNNI (+VL), or AVX-VNNI (its
 * VEX form, on cores with AVX2 but not always AVX-512), vpdpbusd does the same products
 * and sums four of them into an int32 lane in one instruction. */
#ifndef PARLM_SIMD_X86_VEC_Q_H
#define PARLM_SIMD_X86_VEC_Q_H
#include <immintrin.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../kernels.h"

/* acc + the 4-byte dots of unsigned u and signed s per int32 lane (vpdpbusd), where the
 * build has it */
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define Q_DPBUSD(acc, u, s) _mm256_dpbusd_epi32(acc, u, s)
#elif defined(__AVXVNNI__)
#define Q_DPBUSD(acc, u, s) _mm256_dpbusd_avx_epi32(acc, u, s)
/* the avx2 set built again with -mavxvnni (simd/avx2/vnni.c) */
#define QV_NAME(x) parlm_avxvnni_##x
#endif

typedef __m256 qacc;  /* f32 partial sums of one row */
typedef __m256i qint; /* int32 partial sums of one block's dot */

static inline qint q_dot_s8(__m256i w, __m256i x)
{
    __m256i aw = _mm256_sign_epi8(w, w), sx = _mm256_sign_epi8(x, w);
#ifdef Q_DPBUSD
    return Q_DPBUSD(_mm256_setzero_si256(), aw, sx);
#else
    /* a pair of products is at most 2 * 128 * 127 (w = -128 from a file): no saturation */
    return _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), _mm256_set1_epi16(1));
#endif
}

static inline qint q_dot_q8(const uint8_t *w, const int8_t *x)
{
    return q_dot_s8(_mm256_loadu_si256((const __m256i *)w), _mm256_loadu_si256((const __m256i *)x));
}

/* 16 bytes of nibbles: low nibbles are weights 0..15, high nibbles 16..31, each q - 8 */
static inline qint q_dot_q4(const uint8_t *nib, const int8_t *x)
{
    const __m128i m4 = _mm_set1_epi8(15);
    __m128i b = _mm_loadu_si128((const __m128i *)nib);
    __m128i lo = _mm_and_si128(b, m4), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m4);
    __m256i w = _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8));
    return q_dot_s8(w, _mm256_loadu_si256((const __m256i *)x));
}

static inline qacc qacc_zero(void) { return _mm256_setzero_ps(); }
static inline qacc qacc_add(qacc a, qacc b) { return _mm256_add_ps(a, b); }

/* a + s * dot (the int32 sums are exact in f32: |dot| < 2^24) */
static inline qacc qacc_fma(qacc a, float s, qint d)
{
    return _mm256_fmadd_ps(_mm256_set1_ps(s), _mm256_cvtepi32_ps(d), a);
}

static inline float qacc_sum(qacc a)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- activations: one block of 32 floats -> d, 32 int8, their sum ------------------
 * The same bits as parlm_q8x_block (simd/scalar/scalar.h): max|x| is exact in any order,
 * d and 1/d are the same scalar divisions, q = roundf(x / d) is trunc(p + copysign(c, p))
 * with c the float below 0.5 (exact for |p| <= 2^23: a tie goes away from zero, anything
 * below it stays), and p = x * id is hidden from the compiler so that the add is never
 * fused with the multiply (an FMA would round the sum of the exact product instead). */
#define Q8X_BLOCK 1
static inline void q8x_block(const float *x, float *dout, int8_t *q, int32_t *sum)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.49999997f);
    const __m256 big = _mm256_set1_ps(FLT_MAX);
    __m256 v[4], m = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_loadu_ps(x + 8 * i);
        __m256 a = _mm256_andnot_ps(sign, v[i]);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, big, _CMP_NLE_UQ)); /* NaN or infinite */
        m = _mm256_max_ps(m, a);
    }
    if (_mm256_movemask_ps(bad)) { /* as parlm_q8x_block: d NaN, q and their sum 0 */
        *dout = NAN;
        _mm256_storeu_si256((__m256i *)q, _mm256_setzero_si256());
        *sum = 0;
        return;
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    float d = _mm_cvtss_f32(h) / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    *dout = d;
    __m256i r[4];
    for (int i = 0; i < 4; i++) {
        __m256 p = _mm256_mul_ps(v[i], _mm256_set1_ps(id));
        __asm__("" : "+x"(p)); /* not fused into the add below */
        r[i] = _mm256_cvttps_epi32(_mm256_add_ps(p, _mm256_or_ps(_mm256_and_ps(p, sign), half)));
    }
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(r[0], r[1]), _mm256_add_epi32(r[2], r[3]));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
    *sum = _mm_cvtsi128_si32(s4);
    /* packs work per 128-bit lane: bytes come out as dwords 0 4 1 5 2 6 3 7 */
    __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(r[0], r[1]), _mm256_packs_epi32(r[2], r[3]));
    b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)q, b);
}

/* ---- 8 rows at a time: the repacked layout of simd/kernels.h ("r8") --------------
 * A 32-byte chunk is 8 rows x 4 consecutive unsigned weights; x's 4 bytes are broadcast
 * to every row. vpdpbusd (u8 x s8, 4 products into an int32) takes it as is. Without
 * VNNI, vpmaddubsw sums pairs into int16: Q4_0's nibbles (<= 15) never saturate, but
 * Q8_0's 255 * 127 pairs would, so its chunks go back to signed and use the sign trick. */
#define QR_HAVE 1
typedef __m256 qracc;  /* f32 sums of 8 rows */
typedef __m256i qrint; /* the 8 rows' exact int32 dots */

static inline __m256i qr_bcast4(const int8_t *x)
{
    int32_t v;
    memcpy(&v, x, 4);
    return _mm256_set1_epi32(v);
}

/* acc + dot of each row's 4 unsigned weights (u <= 15 without VNNI) with x[0..3] */
static inline __m256i qr_dot4u(__m256i acc, __m256i u, const int8_t *x)
{
#ifdef Q_DPBUSD
    return Q_DPBUSD(acc, u, qr_bcast4(x));
#else
    __m256i p = _mm256_maddubs_epi16(u, qr_bcast4(x));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
#endif
}

/* Q8_0: 8 chunks of w + 128; s = sum of x's 32 q */
static inline qrint qr_dot_q8(const uint8_t *ch, const int8_t *x, int32_t s)
{
    __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
#ifdef Q_DPBUSD
    for (int c = 0; c < 8; c += 2) {
        a0 = qr_dot4u(a0, _mm256_loadu_si256((const __m256i *)(ch + 32 * c)), x + 4 * c);
        a1 = qr_dot4u(a1, _mm256_loadu_si256((const __m256i *)(ch + 32 * c + 32)), x + 4 * c + 4);
    }
    return _mm256_sub_epi32(_mm256_add_epi32(a0, a1), _mm256_set1_epi32(128 * s));
#else
    (void)s;
    const __m256i one = _mm256_set1_epi16(1), flip = _mm256_set1_epi8((char)0x80);
    for (int c = 0; c < 8; c++) {
        __m256i w = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(ch + 32 * c)), flip);
        __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(qr_bcast4(x + 4 * c), w));
        if (c & 1)
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(p, one));
        else
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(p, one));
    }
    return _mm256_add_epi32(a0, a1);
#endif
}

/* Q4_0: 4 chunks of nibbles (low: weight 4c + t, high: 16 + 4c + t), stored q = w + 8 */
static inline qrint qr_dot_q4(const uint8_t *ch, const int8_t *x, int32_t s)
{
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(ch + 32 * c));
        a0 = qr_dot4u(a0, _mm256_and_si256(v, m4), x + 4 * c);
        a1 = qr_dot4u(a1, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4), x + 16 + 4 * c);
    }
    return _mm256_sub_epi32(_mm256_add_epi32(a0, a1), _mm256_set1_epi32(8 * s));
}

/* Bytes ahead of a group's stream to prefetch (0: none): the repacked GEMV reads one
 * group after another, front to back. Zen 5, one thread, 50304 x 768 cycled from memory
 * (load 4-7), this avx2 set: Q8_0 1.28 ms without, 1.20 at 4 KB, 1.03 at 8 KB, 1.02 at
 * 16 KB; Q4_0 0.70, 0.65, 0.56, 0.57 ms. The AVX512-VNNI kernel (two sweeps): Q8_0
 * 1.08-1.11 ms without, 1.04-1.06 at 4 KB, 0.98-1.07 at 8 KB, 1.05-1.10 at 16 KB; Q4_0
 * 0.61-0.62, 0.54-0.58, 0.52-0.55, 0.56-0.59 ms. */
#ifndef QR_PREFETCH
#define QR_PREFETCH 8192
#endif
static inline void qr_prefetch(const uint8_t *p, int64_t n)
{
    for (int64_t o = 0; o < n; o += 64)
        _mm_prefetch((const char *)(p + QR_PREFETCH + o), _MM_HINT_T0);
}

/* 8 f16 -> f32 (exact) */
static inline __m256 q_cvtph8(__m128i h)
{
#ifdef __F16C__
    return _mm256_cvtph_ps(h);
#else /* the avx512 build has no -mf16c: the AVX512VL form */
    return _mm256_maskz_cvtph_ps(0xff, h);
#endif
}

/* the 8 rows' f16 scales times x's scale */
static inline qracc qr_scales(const uint8_t *d, float dx)
{
    return _mm256_mul_ps(q_cvtph8(_mm_loadu_si128((const __m128i *)d)), _mm256_set1_ps(dx));
}

static inline qracc qracc_zero(void) { return _mm256_setzero_ps(); }
static inline qracc qracc_add(qracc a, qracc b) { return _mm256_add_ps(a, b); }
static inline qracc qracc_fma(qracc a, qracc s, qrint d)
{
    return _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(d), a);
}
static inline void qracc_store(float *out, qracc a) { _mm256_storeu_ps(out, a); }

/* ---- plain rows 8 at a time (the stored layout, simd/common/qgemv.c's qp_gemv) --------
 * Each of 8 rows' blocks is dotted with x's block as in a single-row GEMV, then the 8
 * rows' int32 lanes are summed across (a transposing hadd tree) into one vector of the 8
 * rows' exact block dots: from there on a row is a lane, as in the r8 kernels, with the
 * same scale products and even / odd accumulators, so a row's value is bitwise r8's and
 * does not depend on the other lanes (a short group repeats its last row). The 8 rows'
 * f16 scales are gathered by integer loads and shifts (qp_h4). The AVX512-VNNI
 * build has its own, two blocks a zmm (simd/avx512/vec_q.h sets QP_WIDE). */
#define QP_HAVE 1
#ifndef QP_WIDE
typedef struct {
    __m256 e, o; /* even and odd blocks: lane j is row j */
} qpacc;
#endif
typedef struct {
    const uint8_t *p[8]; /* each lane's row */
} qprows;

/* lanes j < n are rows g + j ldw, the others repeat row n - 1 */
static inline qprows qp_rows(const uint8_t *g, int64_t ldw, int n)
{
    qprows r;
    for (int j = 0; j < 8; j++)
        r.p[j] = g + (j < n ? j : n - 1) * ldw;
    return r;
}

/* the f16 at byte o of rows p[0..3], as 4 halves of a qword (integer loads and shifts: a
 * vector gather of the 8 rows' scales costs Zen 5 as much as the block dots) */
static inline uint64_t qp_h4(const uint8_t *const *p, int64_t o)
{
    uint16_t v[4];
    memcpy(&v[0], p[0] + o, 2);
    memcpy(&v[1], p[1] + o, 2);
    memcpy(&v[2], p[2] + o, 2);
    memcpy(&v[3], p[3] + o, 2);
    return (uint64_t)v[0] | (uint64_t)v[1] << 16 | (uint64_t)v[2] << 32 | (uint64_t)v[3] << 48;
}
#ifndef QP_WIDE
static inline qpacc qpacc_zero(void) { return (qpacc){_mm256_setzero_ps(), _mm256_setzero_ps()}; }

/* Q8_0 block w (32 weights) against x: int32 lanes whose sum is dot(w, x) (with VNNI:
 * dot(w + 128, x), unsigned as vpdpbusd wants it) */
static inline __m256i qp_dot_q8(const uint8_t *w, __m256i x)
{
    __m256i v = _mm256_loadu_si256((const __m256i *)w);
#ifdef Q_DPBUSD
    return Q_DPBUSD(_mm256_setzero_si256(), _mm256_xor_si256(v, _mm256_set1_epi8((char)0x80)), x);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(x, v)),
                             _mm256_set1_epi16(1));
#endif
}

/* Q4_0 block's 16 nibble bytes against x: lanes 0..3 sum dot(q, x) of weights 0..15, lanes
 * 4..7 of weights 16..31 (q = w + 8, unsigned). With VNNI the high nibbles stay in place
 * (16 q: lanes 4..7 are 16 times theirs, shifted down once per group in qp_sum8); without,
 * vpmaddubsw's int16 pairs need q <= 15. */
static inline __m256i qp_dot_q4(const uint8_t *nib, __m256i x)
{
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)nib));
#ifdef Q_DPBUSD
    const __m256i m = _mm256_setr_epi64x(0x0f0f0f0f0f0f0f0fLL, 0x0f0f0f0f0f0f0f0fLL,
                                         (long long)0xf0f0f0f0f0f0f0f0ULL,
                                         (long long)0xf0f0f0f0f0f0f0f0ULL);
    return Q_DPBUSD(_mm256_setzero_si256(), _mm256_and_si256(v, m), x);
#else
    v = _mm256_and_si256(_mm256_blend_epi32(v, _mm256_srli_epi16(v, 4), 0xf0),
                         _mm256_set1_epi8(15));
    return _mm256_madd_epi16(_mm256_maddubs_epi16(v, x), _mm256_set1_epi16(1));
#endif
}

/* per 128-bit half: the sums of a, b, c, d's four lanes */
static inline __m256i qp_sum4(__m256i a, __m256i b, __m256i c, __m256i d)
{
    __m256i ab = _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
    __m256i cd = _mm256_add_epi32(_mm256_unpacklo_epi32(c, d), _mm256_unpackhi_epi32(c, d));
    return _mm256_add_epi32(_mm256_unpacklo_epi64(ab, cd), _mm256_unpackhi_epi64(ab, cd));
}

/* rows j's lanes v[j] -> lane j: the sum of v[j] (exact int32). Summed across within
 * 128-bit halves first (unpack / add, not vphaddd: 3 uops): q0 holds rows 0..3 per half,
 * q1 rows 4..7; the halves are then added (the high half, Q4_0's 16 q with VNNI, shifted
 * down first). */
static inline __m256i qp_sum8(const __m256i *v, int shift_hi)
{
    __m256i q0 = qp_sum4(v[0], v[1], v[2], v[3]), q1 = qp_sum4(v[4], v[5], v[6], v[7]);
    __m256i lo = _mm256_permute2x128_si256(q0, q1, 0x20);
    __m256i hi = _mm256_permute2x128_si256(q0, q1, 0x31);
    return _mm256_add_epi32(lo, shift_hi ? _mm256_srai_epi32(hi, 4) : hi);
}

/* a + the 8 rows' block ob (byte offset in a row): scales times exact dots */
static inline __attribute__((always_inline)) __m256
qp_block(__m256 a, const qprows *r, int64_t ob, const parlm_q8x *xb, int q4)
{
    __m256i x = _mm256_loadu_si256((const __m256i *)xb->q), v[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
        v[j] = q4 ? qp_dot_q4(r->p[j] + ob + 2, x) : qp_dot_q8(r->p[j] + ob + 2, x);
#ifdef Q_DPBUSD
    __m256i d = _mm256_sub_epi32(qp_sum8(v, q4), _mm256_set1_epi32((q4 ? 8 : 128) * xb->s));
#else
    __m256i d = qp_sum8(v, 0);
    if (q4)
        d = _mm256_sub_epi32(d, _mm256_set1_epi32(8 * xb->s));
#endif
    __m128i h = _mm_set_epi64x((long long)qp_h4(r->p + 4, ob), (long long)qp_h4(r->p, ob));
    __m256 s = _mm256_mul_ps(q_cvtph8(h), _mm256_set1_ps(xb->d));
    return _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(d), a);
}

/* blocks b (byte offset ob) and b + 1 */
static inline qpacc qp_pair(qpacc a, const qprows *r, int64_t ob, int bytes, const parlm_q8x *xb,
                            int q4)
{
    a.e = qp_block(a.e, r, ob, xb, q4);
    a.o = qp_block(a.o, r, ob + bytes, xb + 1, q4);
    return a;
}

/* an odd count's last block, to the even sums */
static inline qpacc qp_last(qpacc a, const qprows *r, int64_t ob, const parlm_q8x *xb, int q4)
{
    a.e = qp_block(a.e, r, ob, xb, q4);
    return a;
}

static inline void qp_store(float *out, qpacc a) { _mm256_storeu_ps(out, _mm256_add_ps(a.e, a.o)); }
#endif

/* the f16 block scale (exact) */
static inline float q_f16(uint16_t h)
{
#ifdef __F16C__
    return _cvtsh_ss(h);
#else /* the avx512 build has no -mf16c: the AVX512VL form of vcvtph2ps */
    return _mm_cvtss_f32(_mm_maskz_cvtph_ps(1, _mm_cvtsi32_si128(h)));
#endif
}
#endif
