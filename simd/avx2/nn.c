/* simd/avx2/nn.c — AVX2+FMA transformer kernels: causal flash attention (forward and
 * backward); cross-entropy, embeddings and AdamW are in simd/common/nn.c.
 * The one idea: attention holds a block of 16 queries TRANSPOSED (head dim major, one
 * query per lane), so the scores of 4 keys are 8 register accumulators fed by broadcast
 * key elements, the softmax statistics are per lane (no horizontal reductions) and P.V
 * accumulates into a transposed output in L1; each K/V row loaded serves 16 queries.
 * Few queries (decode) take a row path of vector dot products instead. Tails use
 * vmaskmovps. Contracts in simd/kernels.h; mirrors simd/avx512/nn.c (16 ymm registers:
 * half the block and half the key group). */
#include <immintrin.h>
#include <math.h>

#include "avx2.h"

#define MAX_HS 256
#define QV 2         /* query vectors per block */
#define QB (8 * QV)  /* queries per block */
#define KG 4         /* keys per group: scores are KG * QV registers */
#define ROWS_BELOW 5 /* a block of fewer queries takes the row path (measured crossover) */
/* The running max m only moves when a score exceeds it by more than SLACK, so the
 * rescale of the output is rare; exp(s - m) <= e^8 cannot overflow and l >= 1. */
#define SLACK 8.0f

/* lane mask (all-ones in lanes < n) for vmaskmovps; n clamped to [0, 8] */
static const int32_t mask_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
static inline __m256i tmask(int64_t n)
{
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    return _mm256_loadu_si256((const __m256i *)(mask_table + 8 - n));
}

static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hmax(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* exp(x), all lanes: 2^n exp(r), n = round(x log2 e), r = x - n ln2 (Cody-Waite, ln2 in
 * two parts), exp(r) = 1 + r + r^2 q(r) with the degree-4 minimax q of simd/avx2/eltwise.c
 * (max relative error 1.3 ulp on the normal range). 2^n is applied as two exponent-field
 * multiplies 2^(n/2) 2^(n - n/2), so results round into subnormals and reach exactly 0
 * (x <= -110, -inf) or +inf (x >= 89). NaN stays NaN. */
static inline __m256 exp_ps(__m256 x)
{
    x = _mm256_max_ps(_mm256_set1_ps(-110.0f), x); /* NaN in x wins (second operand) */
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
    __m256i ni = _mm256_cvtps_epi32(n); /* in [-159, 129]: each half is a normal power of 2 */
    __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

/* ---- transposes between rows (one query each) and the lane-per-query layout ------- */

/* In place 8x8 transpose: r[i] lane c -> r[c] lane i. */
static inline __attribute__((always_inline)) void tr8(__m256 r[8])
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

/* xt[d * QB + i] = x[i * ld + d] * mul for i < n, d < hs; zero for n <= i < QB and for
 * hs <= d < hs rounded up to 8 */
static void load_t(float *xt, const float *x, int64_t ld, int64_t n, int64_t hs, float mul)
{
    __m256 vm = _mm256_set1_ps(mul);
    for (int64_t d0 = 0; d0 < hs; d0 += 8) {
        __m256i m = tmask(hs - d0);
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++) {
            __m256 r[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) {
                int64_t row = 8 * g + i;
                r[i] = row < n ? _mm256_maskload_ps(x + row * ld + d0, m) : _mm256_setzero_ps();
            }
            tr8(r);
#pragma GCC unroll 8
            for (int c = 0; c < 8; c++)
                _mm256_store_ps(xt + (d0 + c) * QB + 8 * g, _mm256_mul_ps(r[c], vm));
        }
    }
}

/* y[i * ld + d] (=, or += if acc) xt[d * QB + i] * mul[lane i] for i < n, d < hs */
static void store_t(float *y, int64_t ld, const float *xt, int64_t n, int64_t hs,
                    const __m256 mul[QV], int acc)
{
    for (int64_t d0 = 0; d0 < hs; d0 += 8) {
        __m256i m = tmask(hs - d0);
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++) {
            if (8 * g >= n)
                break;
            __m256 r[8];
#pragma GCC unroll 8
            for (int c = 0; c < 8; c++)
                r[c] = _mm256_mul_ps(_mm256_load_ps(xt + (d0 + c) * QB + 8 * g), mul[g]);
            tr8(r);
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) {
                if (8 * g + i >= n)
                    break;
                float *yr = y + (8 * g + i) * ld + d0;
                if (acc)
                    r[i] = _mm256_add_ps(_mm256_maskload_ps(yr, m), r[i]);
                _mm256_maskstore_ps(yr, m, r[i]);
            }
        }
    }
}

/* s[j][g] = sum_d at[d * QB + 8 g + lane] * rows[j][d]: QK^T (or dO V^T) of a block
 * against KG rows, the row elements broadcast. */
static inline __attribute__((always_inline)) void
block_dots(__m256 s[KG][QV], const float *at, const float *const rows[KG], int64_t hs)
{
#pragma GCC unroll 4
    for (int j = 0; j < KG; j++)
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++)
            s[j][g] = _mm256_setzero_ps();
    for (int64_t d = 0; d < hs; d++) {
        __m256 a[QV];
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++)
            a[g] = _mm256_load_ps(at + d * QB + 8 * g);
#pragma GCC unroll 4
        for (int j = 0; j < KG; j++) {
            __m256 b = _mm256_broadcast_ss(rows[j] + d);
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++)
                s[j][g] = _mm256_fmadd_ps(a[g], b, s[j][g]);
        }
    }
}

/* ot[d * QB + lanes] += sum_j w[j][g] * rows[j][d]: P.V into the transposed output (or
 * dS.K into the transposed dQ). Two rows of ot at a time, so that FMA latency overlaps. */
static inline __attribute__((always_inline)) void
block_axpy(float *ot, const __m256 w[KG][QV], const float *const rows[KG], int64_t hs)
{
    int64_t d = 0;
    for (; d + 2 <= hs; d += 2) {
        __m256 o[2][QV];
#pragma GCC unroll 2
        for (int e = 0; e < 2; e++)
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++)
                o[e][g] = _mm256_load_ps(ot + (d + e) * QB + 8 * g);
#pragma GCC unroll 4
        for (int j = 0; j < KG; j++)
#pragma GCC unroll 2
            for (int e = 0; e < 2; e++) {
                __m256 b = _mm256_broadcast_ss(rows[j] + d + e);
#pragma GCC unroll 2
                for (int g = 0; g < QV; g++)
                    o[e][g] = _mm256_fmadd_ps(w[j][g], b, o[e][g]);
            }
#pragma GCC unroll 2
        for (int e = 0; e < 2; e++)
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++)
                _mm256_store_ps(ot + (d + e) * QB + 8 * g, o[e][g]);
    }
    if (d < hs) {
        __m256 o[QV];
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++)
            o[g] = _mm256_load_ps(ot + d * QB + 8 * g);
#pragma GCC unroll 4
        for (int j = 0; j < KG; j++) {
            __m256 b = _mm256_broadcast_ss(rows[j] + d);
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++)
                o[g] = _mm256_fmadd_ps(w[j][g], b, o[g]);
        }
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++)
            _mm256_store_ps(ot + d * QB + 8 * g, o[g]);
    }
}

/* Rows j0 .. j0+KG-1 of x; rows past the last one (n) repeat it: valid memory, and their
 * scores are masked (key index > every query position of the block). */
static inline void group_rows(const float *rows[KG], const float *x, int64_t ld, int64_t j0,
                              int64_t n)
{
#pragma GCC unroll 4
    for (int j = 0; j < KG; j++)
        rows[j] = x + (j0 + j < n ? j0 + j : n - 1) * ld;
}

/* lanes of query positions pos0 + 8 g + lane */
static inline void lane_positions(__m256i pos[QV], int64_t pos0)
{
    const __m256i iota = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
#pragma GCC unroll 2
    for (int g = 0; g < QV; g++)
        pos[g] = _mm256_add_epi32(_mm256_set1_epi32((int)(pos0 + 8 * g)), iota);
}

/* all-ones in the lanes whose query position is before key j (masked by causality) */
static inline __m256 after_mask(__m256i pos, int64_t j)
{
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32((int)j), pos));
}

/* Forward of nq <= QB queries at positions pos0 .. pos0+nq-1 (keys 0 .. pos0+nq-1). */
static void fwd_block(int64_t nq, int64_t pos0, int64_t hs, const float *q, int64_t ldq,
                      const float *k, const float *v, int64_t ldkv, float *out, int64_t ldo,
                      float *lse, float scale)
{
    _Alignas(32) float qt[MAX_HS * QB]; /* q * scale, transposed */
    _Alignas(32) float ot[MAX_HS * QB]; /* unnormalised output, transposed */
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    int64_t hs8 = (hs + 7) & ~(int64_t)7;
    load_t(qt, q, ldq, nq, hs, scale);
    for (int64_t i = 0; i < hs8 * QB; i += 8)
        _mm256_store_ps(ot + i, _mm256_setzero_ps());
    __m256 m[QV], l[QV];
    __m256i pos[QV];
    lane_positions(pos, pos0);
#pragma GCC unroll 2
    for (int g = 0; g < QV; g++) {
        m[g] = ninf;
        l[g] = _mm256_setzero_ps();
    }
    const int64_t nkeys = pos0 + nq;
    for (int64_t j0 = 0; j0 < nkeys; j0 += KG) {
        const float *kr[KG], *vr[KG];
        group_rows(kr, k, ldkv, j0, nkeys);
        group_rows(vr, v, ldkv, j0, nkeys);
        __m256 s[KG][QV];
        block_dots(s, qt, kr, hs);
        if (j0 + KG - 1 > pos0) { /* the group reaches past the first query: causal mask */
#pragma GCC unroll 4
            for (int j = 0; j < KG; j++)
#pragma GCC unroll 2
                for (int g = 0; g < QV; g++)
                    s[j][g] = _mm256_blendv_ps(s[j][g], ninf, after_mask(pos[g], j0 + j));
        }
        /* online softmax; key 0 is in the first group, so m is finite after it */
        __m256 corr[QV];
        int rescale = 0;
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++) {
            __m256 mx = s[0][g];
#pragma GCC unroll 4
            for (int j = 1; j < KG; j++)
                mx = _mm256_max_ps(mx, s[j][g]);
            __m256 up = _mm256_cmp_ps(mx, _mm256_add_ps(m[g], _mm256_set1_ps(SLACK)), _CMP_GT_OQ);
            corr[g] = _mm256_set1_ps(1.0f);
            if (_mm256_movemask_ps(up)) {
                __m256 mn = _mm256_blendv_ps(m[g], mx, up);
                /* m - mn is 0 where not up (exp gives exactly 1); -inf on the first group */
                corr[g] = exp_ps(_mm256_and_ps(up, _mm256_sub_ps(m[g], mn)));
                l[g] = _mm256_mul_ps(l[g], corr[g]);
                m[g] = mn;
                rescale = 1;
            }
        }
        if (rescale) {
            for (int64_t d = 0; d < hs; d++)
#pragma GCC unroll 2
                for (int g = 0; g < QV; g++)
                    _mm256_store_ps(ot + d * QB + 8 * g,
                                    _mm256_mul_ps(_mm256_load_ps(ot + d * QB + 8 * g), corr[g]));
        }
#pragma GCC unroll 4
        for (int j = 0; j < KG; j++)
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++) {
                s[j][g] = exp_ps(_mm256_sub_ps(s[j][g], m[g]));
                l[g] = _mm256_add_ps(l[g], s[j][g]);
            }
        block_axpy(ot, (const __m256(*)[QV])s, vr, hs);
    }
    __m256 inv[QV];
    _Alignas(32) float mb[QB], lb[QB];
#pragma GCC unroll 2
    for (int g = 0; g < QV; g++) {
        inv[g] = _mm256_div_ps(_mm256_set1_ps(1.0f), l[g]);
        _mm256_store_ps(mb + 8 * g, m[g]);
        _mm256_store_ps(lb + 8 * g, l[g]);
    }
    store_t(out, ldo, ot, nq, hs, inv, 0);
    for (int64_t i = 0; i < nq; i++)
        lse[i] = mb[i] + logf(lb[i]);
}

/* r[j] = sum of the lanes of a[j], j < 8 */
static inline __m256 reduce8(const __m256 a[8])
{
    __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
    __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                         _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* a[j] = dot(qs, row j0 + j of k) for j < 8, qs zero-padded to nc vectors. Chunk-major:
 * each chunk of q is loaded once for 8 keys. A partial group (full == 0) repeats its
 * last row, which the caller masks. */
static inline __attribute__((always_inline)) void
row_dots(__m256 a[8], const float *qs, const float *k, int64_t ldkv, int64_t j0, int64_t nj,
         int64_t nc, __m256i mlast, const int full)
{
    const float *kb = k + j0 * ldkv;
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
        a[j] = _mm256_setzero_ps();
    for (int64_t c = 0; c < nc; c++) {
        __m256i mc = c == nc - 1 ? mlast : tmask(8);
        __m256 qc = _mm256_load_ps(qs + 8 * c);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const float *kj = kb + (full ? j : j < nj ? j : nj - 1) * ldkv + 8 * c;
            a[j] = _mm256_fmadd_ps(qc, _mm256_maskload_ps(kj, mc), a[j]);
        }
    }
}

/* Forward of one query at position pos (decode): 8 keys at a time, scores by vector dot
 * products reduced into one vector, P.V into a row accumulator in L1. */
static void fwd_row(int64_t pos, int64_t hs, const float *q, const float *k, const float *v,
                    int64_t ldkv, float *out, float *lse, float scale)
{
    _Alignas(32) float qs[MAX_HS], os[MAX_HS], pb[8];
    const int64_t nc = (hs + 7) / 8;
    const __m256i mlast = tmask(hs - 8 * (nc - 1)), mall = tmask(8);
    for (int64_t c = 0; c < nc; c++) {
        __m256i mc = c == nc - 1 ? mlast : mall;
        _mm256_store_ps(qs + 8 * c,
                        _mm256_mul_ps(_mm256_maskload_ps(q + 8 * c, mc), _mm256_set1_ps(scale)));
        _mm256_store_ps(os + 8 * c, _mm256_setzero_ps());
    }
    float m = -INFINITY;
    __m256 lsum = _mm256_setzero_ps();
    const int64_t nkeys = pos + 1;
    for (int64_t j0 = 0; j0 < nkeys; j0 += 8) {
        int64_t nj = nkeys - j0 < 8 ? nkeys - j0 : 8;
        __m256 a[8];
        if (nj == 8)
            row_dots(a, qs, k, ldkv, j0, nj, nc, mlast, 1);
        else
            row_dots(a, qs, k, ldkv, j0, nj, nc, mlast, 0);
        __m256 s = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), reduce8(a),
                                    _mm256_castsi256_ps(tmask(nj)));
        float mx = hmax(s);
        if (mx > m + SLACK) {
            float corr = expf(m - mx); /* 0 on the first group */
            lsum = _mm256_mul_ps(lsum, _mm256_set1_ps(corr));
            for (int64_t c = 0; c < nc; c++)
                _mm256_store_ps(os + 8 * c,
                                _mm256_mul_ps(_mm256_load_ps(os + 8 * c), _mm256_set1_ps(corr)));
            m = mx;
        }
        __m256 p = exp_ps(_mm256_sub_ps(s, _mm256_set1_ps(m)));
        lsum = _mm256_add_ps(lsum, p);
        _mm256_store_ps(pb, p);
        const float *vb = v + j0 * ldkv;
        for (int64_t c = 0; c < nc; c++) { /* two chains (even, odd keys) hide FMA latency */
            __m256i mc = c == nc - 1 ? mlast : mall;
            __m256 o0 = _mm256_load_ps(os + 8 * c), o1 = _mm256_setzero_ps();
            int64_t j = 0;
            for (; j + 2 <= nj; j += 2) {
                o0 = _mm256_fmadd_ps(_mm256_broadcast_ss(pb + j),
                                     _mm256_maskload_ps(vb + j * ldkv + 8 * c, mc), o0);
                o1 = _mm256_fmadd_ps(_mm256_broadcast_ss(pb + j + 1),
                                     _mm256_maskload_ps(vb + (j + 1) * ldkv + 8 * c, mc), o1);
            }
            if (j < nj)
                o0 = _mm256_fmadd_ps(_mm256_broadcast_ss(pb + j),
                                     _mm256_maskload_ps(vb + j * ldkv + 8 * c, mc), o0);
            _mm256_store_ps(os + 8 * c, _mm256_add_ps(o0, o1));
        }
    }
    float l = hsum(lsum);
    __m256 inv = _mm256_set1_ps(1.0f / l);
    for (int64_t c = 0; c < nc; c++)
        _mm256_maskstore_ps(out + 8 * c, c == nc - 1 ? mlast : mall,
                            _mm256_mul_ps(_mm256_load_ps(os + 8 * c), inv));
    *lse = m + logf(l);
}

/* out (tq, hs) = causal softmax(q k^T * scale) v for queries at t0 .. t0+tq-1 */
static void attn_fwd(int64_t tq, int64_t t0, int64_t hs, const float *q, int64_t ldq,
                     const float *k, const float *v, int64_t ldkv, float *out, int64_t ldo,
                     float *lse, float scale)
{
    for (int64_t i0 = 0; i0 < tq; i0 += QB) {
        int64_t nq = tq - i0 < QB ? tq - i0 : QB;
        if (nq >= ROWS_BELOW)
            fwd_block(nq, t0 + i0, hs, q + i0 * ldq, ldq, k, v, ldkv, out + i0 * ldo, ldo,
                      lse + i0, scale);
        else
            for (int64_t i = i0; i < i0 + nq; i++)
                fwd_row(t0 + i, hs, q + i * ldq, k, v, ldkv, out + i * ldo, lse + i, scale);
    }
}

/* ---- attention backward ------------------------------------------------------------ */

/* dst[j] (rows ldd apart, j < nj) += mul * sum_{i < nq} w[j * QB + i] * x[i * ldx + :hs]:
 * the products that contract over queries (dV = P^T dO, dK = dS^T Q), in row layout:
 * 4 keys x NC vectors of the head dim in registers, one pass over the block's rows. */
static inline __attribute__((always_inline)) void
rows_update_nc(float *dst, int64_t ldd, int64_t nj, const float *w, const float *x, int64_t ldx,
               int64_t nq, int64_t d0, int64_t hs, float mul, const int NC)
{
    __m256i mk[2];
#pragma GCC unroll 2
    for (int c = 0; c < NC; c++)
        mk[c] = tmask(hs - d0 - 8 * c);
    for (int64_t jb = 0; jb < nj; jb += 4) {
        __m256 acc[4][2];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
#pragma GCC unroll 2
            for (int c = 0; c < NC; c++)
                acc[j][c] = _mm256_setzero_ps();
        for (int64_t i = 0; i < nq; i++) {
            __m256 xv[2];
#pragma GCC unroll 2
            for (int c = 0; c < NC; c++)
                xv[c] = _mm256_maskload_ps(x + i * ldx + d0 + 8 * c, mk[c]);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                __m256 b = _mm256_broadcast_ss(w + (jb + j) * QB + i);
#pragma GCC unroll 2
                for (int c = 0; c < NC; c++)
                    acc[j][c] = _mm256_fmadd_ps(b, xv[c], acc[j][c]);
            }
        }
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            if (jb + j >= nj)
                break;
            float *dr = dst + (jb + j) * ldd + d0;
#pragma GCC unroll 2
            for (int c = 0; c < NC; c++)
                _mm256_maskstore_ps(dr + 8 * c, mk[c],
                                    _mm256_fmadd_ps(acc[j][c], _mm256_set1_ps(mul),
                                                    _mm256_maskload_ps(dr + 8 * c, mk[c])));
        }
    }
}

static void rows_update(float *dst, int64_t ldd, int64_t nj, const float *w, const float *x,
                        int64_t ldx, int64_t nq, int64_t hs, float mul)
{
    for (int64_t d0 = 0; d0 < hs; d0 += 16) {
        if (hs - d0 > 8)
            rows_update_nc(dst, ldd, nj, w, x, ldx, nq, d0, hs, mul, 2);
        else
            rows_update_nc(dst, ldd, nj, w, x, ldx, nq, d0, hs, mul, 1);
    }
}

/* dot(a, b) over n floats */
static inline float dot_row(const float *a, const float *b, int64_t n)
{
    __m256 acc = _mm256_setzero_ps();
    for (int64_t d = 0; d < n; d += 8) {
        __m256i m = tmask(n - d);
        acc = _mm256_fmadd_ps(_mm256_maskload_ps(a + d, m), _mm256_maskload_ps(b + d, m), acc);
    }
    return hsum(acc);
}

/* Backward of the query block i0 .. i0+nq-1 (t0 = 0) against keys 0 .. i0+nq-1:
 * P = exp(S - lse), dP = dO V^T, dS = P (dP - D); dQ, dK, dV accumulate. */
static void bwd_block(int64_t i0, int64_t nq, int64_t hs, const float *q, const float *k,
                      const float *v, int64_t ld, const float *out, const float *dout,
                      int64_t ldo, const float *lse, float *dq, float *dk, float *dv,
                      int64_t ldd, float scale)
{
    _Alignas(32) float qt[MAX_HS * QB];  /* q * scale, transposed */
    _Alignas(32) float dot[MAX_HS * QB]; /* dout, transposed */
    _Alignas(32) float dqt[MAX_HS * QB]; /* sum_j dS k_j, transposed */
    _Alignas(32) float pb[KG * QB], dsb[KG * QB], db[QB], lb[QB];
    int64_t hs8 = (hs + 7) & ~(int64_t)7;
    load_t(qt, q + i0 * ld, ld, nq, hs, scale);
    load_t(dot, dout + i0 * ldo, ldo, nq, hs, 1.0f);
    for (int64_t i = 0; i < hs8 * QB; i += 8)
        _mm256_store_ps(dqt + i, _mm256_setzero_ps());
    for (int64_t i = 0; i < QB; i++) { /* D_i = dO_i . out_i = sum_j P_ij dP_ij */
        db[i] = i < nq ? dot_row(dout + (i0 + i) * ldo, out + (i0 + i) * ldo, hs) : 0.0f;
        lb[i] = i < nq ? lse[i0 + i] : 0.0f;
    }
    __m256 lv[QV], Dv[QV];
    __m256i pos[QV];
    lane_positions(pos, i0);
#pragma GCC unroll 2
    for (int g = 0; g < QV; g++) {
        lv[g] = _mm256_load_ps(lb + 8 * g);
        Dv[g] = _mm256_load_ps(db + 8 * g);
    }
    const int64_t nkeys = i0 + nq;
    for (int64_t j0 = 0; j0 < nkeys; j0 += KG) {
        const float *kr[KG], *vr[KG];
        group_rows(kr, k, ld, j0, nkeys);
        group_rows(vr, v, ld, j0, nkeys);
        int64_t nj = nkeys - j0 < KG ? nkeys - j0 : KG;
        __m256 s[KG][QV];
        block_dots(s, qt, kr, hs);
        int diag = j0 + KG - 1 > i0;
#pragma GCC unroll 4
        for (int j = 0; j < KG; j++)
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++) {
                __m256 p = exp_ps(_mm256_sub_ps(s[j][g], lv[g]));
                if (diag)
                    p = _mm256_andnot_ps(after_mask(pos[g], j0 + j), p);
                _mm256_store_ps(pb + j * QB + 8 * g, p);
            }
        block_dots(s, dot, vr, hs); /* dP */
#pragma GCC unroll 4
        for (int j = 0; j < KG; j++)
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++) {
                s[j][g] = _mm256_mul_ps(_mm256_load_ps(pb + j * QB + 8 * g),
                                        _mm256_sub_ps(s[j][g], Dv[g]));
                _mm256_store_ps(dsb + j * QB + 8 * g, s[j][g]);
            }
        block_axpy(dqt, (const __m256(*)[QV])s, kr, hs);
        rows_update(dv + j0 * ldd, ldd, nj, pb, dout + i0 * ldo, ldo, nq, hs, 1.0f);
        rows_update(dk + j0 * ldd, ldd, nj, dsb, q + i0 * ld, ld, nq, hs, scale);
    }
    __m256 sc[QV];
#pragma GCC unroll 2
    for (int g = 0; g < QV; g++)
        sc[g] = _mm256_set1_ps(scale);
    store_t(dq + i0 * ldd, ldd, dqt, nq, hs, sc, 1);
}

static void attn_bwd(int64_t T, int64_t hs, const float *q, const float *k, const float *v,
                     int64_t ld, const float *out, const float *dout, int64_t ldo,
                     const float *lse, float *dq, float *dk, float *dv, int64_t ldd, float scale,
                     float *scratch)
{
    (void)scratch; /* the block buffers live on the stack (<= 50 KB) */
    for (int64_t i0 = 0; i0 < T; i0 += QB)
        bwd_block(i0, T - i0 < QB ? T - i0 : QB, hs, q, k, v, ld, out, dout, ldo, lse, dq, dk,
                  dv, ldd, scale);
}

/* x[j .. j+8) with lanes >= n set to -inf (exp gives 0, max ignores them) */
static inline __m256 load_or_ninf(const float *x, int64_t n)
{
    __m256i m = tmask(n);
    return _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_maskload_ps(x, m),
                            _mm256_castsi256_ps(m));
}

void parlm_avx2_nn_fill(parlm_kernels *k)
{
    k->attn_fwd = attn_fwd;
    k->attn_bwd = attn_bwd;
    parlm_avx2_nn_common_fill(k); /* common/nn.c */
}
