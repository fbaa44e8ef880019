/* simd/avx512/nn.c — AVX-512 transformer kernels: causal flash attention (forward and
 * backward); cross-entropy, embeddings and AdamW are in simd/common/nn.c.
 * The one idea: attention holds a block of 32 queries TRANSPOSED (head dim major, one
 * query per lane), so the scores of 8 keys are 16 register accumulators fed by broadcast
 * key elements, the softmax statistics are per lane (no horizontal reductions) and P.V
 * accumulates into a transposed output in L1; each K/V row loaded serves 32 queries.
 * Few queries (decode) take a row path of vector dot products instead. Contracts in
 * simd/kernels.h; mirrors simd/avx2/nn.c and simd/neon/nn.c. */
#include <immintrin.h>
#include <math.h>

#include "avx512.h"

#define MAX_HS 256
#define QV 2         /* query vectors per block */
#define QB (16 * QV) /* queries per block */
#define KG 8         /* keys per group: scores are KG * QV registers */
#define ROWS_BELOW 10 /* a block of fewer queries takes the row path (measured crossover) */
/* The running max m is only moved when a score exceeds it by more than SLACK, so the
 * rescale of the output (hs * QV multiplies) is rare; exp(s - m) <= e^8 cannot overflow
 * and l >= 1 (the max key has p >= 1), so nothing is lost in float. */
#define SLACK 8.0f

/* mask of the first n lanes, n clamped to [0, 16] */
static inline __mmask16 tmask(int64_t n)
{
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

/* exp(x), all lanes: 2^n exp(r), n = round(x log2 e), r = x - n ln2 (Cody-Waite, ln2 in
 * two parts), exp(r) = 1 + r + r^2 q(r) with the degree-4 minimax q of simd/avx512/eltwise.c
 * (max relative error 1.3 ulp on the normal range); vscalefps applies 2^n, rounding into
 * subnormals and to 0 (x <= -110, -inf) or +inf (x >= 89). NaN stays NaN. */
static inline __m512 exp_ps(__m512 x)
{
    x = _mm512_max_ps(_mm512_set1_ps(-110.0f), x); /* NaN in x wins (second operand) */
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

/* ---- transposes between rows (one query each) and the lane-per-query layout ------- */

/* In place 16x16 transpose: r[i] lane c -> r[c] lane i. */
static inline __attribute__((always_inline)) void tr16(__m512 r[16])
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

/* xt[d * QB + i] = x[i * ld + d] * mul for i < n, d < hs; zero for n <= i < QB and for
 * hs <= d < hs rounded up to 16 */
static void load_t(float *xt, const float *x, int64_t ld, int64_t n, int64_t hs, float mul)
{
    __m512 vm = _mm512_set1_ps(mul);
    for (int64_t d0 = 0; d0 < hs; d0 += 16) {
        __mmask16 m = tmask(hs - d0);
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++) {
            __m512 r[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) {
                int64_t row = 16 * g + i;
                r[i] = row < n ? _mm512_maskz_loadu_ps(m, x + row * ld + d0)
                               : _mm512_setzero_ps();
            }
            tr16(r);
#pragma GCC unroll 16
            for (int c = 0; c < 16; c++)
                _mm512_store_ps(xt + (d0 + c) * QB + 16 * g, _mm512_mul_ps(r[c], vm));
        }
    }
}

/* y[i * ld + d] (=, or += if acc) xt[d * QB + i] * mul[lane i] for i < n, d < hs */
static void store_t(float *y, int64_t ld, const float *xt, int64_t n, int64_t hs,
                    const __m512 mul[QV], int acc)
{
    for (int64_t d0 = 0; d0 < hs; d0 += 16) {
        __mmask16 m = tmask(hs - d0);
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++) {
            if (16 * g >= n)
                break;
            __m512 r[16];
#pragma GCC unroll 16
            for (int c = 0; c < 16; c++)
                r[c] = _mm512_mul_ps(_mm512_load_ps(xt + (d0 + c) * QB + 16 * g), mul[g]);
            tr16(r);
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) {
                if (16 * g + i >= n)
                    break;
                float *yr = y + (16 * g + i) * ld + d0;
                if (acc)
                    r[i] = _mm512_add_ps(_mm512_maskz_loadu_ps(m, yr), r[i]);
                _mm512_mask_storeu_ps(yr, m, r[i]);
            }
        }
    }
}

/* s[j][g] = sum_d at[d * QB + 16 g + lane] * rows[j][d]: QK^T (or dO V^T) of a block
 * against KG rows, the row elements broadcast. */
static inline __attribute__((always_inline)) void
block_dots(__m512 s[KG][QV], const float *at, const float *const rows[KG], int64_t hs)
{
#pragma GCC unroll 8
    for (int j = 0; j < KG; j++)
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++)
            s[j][g] = _mm512_setzero_ps();
    for (int64_t d = 0; d < hs; d++) {
        __m512 a[QV];
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++)
            a[g] = _mm512_load_ps(at + d * QB + 16 * g);
#pragma GCC unroll 8
        for (int j = 0; j < KG; j++) {
            __m512 b = _mm512_set1_ps(rows[j][d]);
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++)
                s[j][g] = _mm512_fmadd_ps(a[g], b, s[j][g]);
        }
    }
}

/* ot[d * QB + lanes] += sum_j w[j][g] * rows[j][d]: P.V into the transposed output (or
 * dS.K into the transposed dQ). Four rows of ot at a time: each accumulator is a chain
 * of KG dependent FMAs, so one row alone would wait on FMA latency. */
static inline __attribute__((always_inline)) void
block_axpy(float *ot, const __m512 w[KG][QV], const float *const rows[KG], int64_t hs)
{
    int64_t d = 0;
    for (; d + 4 <= hs; d += 4) {
        __m512 o[4][QV];
#pragma GCC unroll 4
        for (int e = 0; e < 4; e++)
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++)
                o[e][g] = _mm512_load_ps(ot + (d + e) * QB + 16 * g);
#pragma GCC unroll 8
        for (int j = 0; j < KG; j++)
#pragma GCC unroll 4
            for (int e = 0; e < 4; e++) {
                __m512 b = _mm512_set1_ps(rows[j][d + e]);
#pragma GCC unroll 2
                for (int g = 0; g < QV; g++)
                    o[e][g] = _mm512_fmadd_ps(w[j][g], b, o[e][g]);
            }
#pragma GCC unroll 4
        for (int e = 0; e < 4; e++)
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++)
                _mm512_store_ps(ot + (d + e) * QB + 16 * g, o[e][g]);
    }
    for (; d < hs; d++) {
        __m512 o[QV];
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++)
            o[g] = _mm512_load_ps(ot + d * QB + 16 * g);
#pragma GCC unroll 8
        for (int j = 0; j < KG; j++) {
            __m512 b = _mm512_set1_ps(rows[j][d]);
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++)
                o[g] = _mm512_fmadd_ps(w[j][g], b, o[g]);
        }
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++)
            _mm512_store_ps(ot + d * QB + 16 * g, o[g]);
    }
}

/* Rows j0 .. j0+KG-1 of x; rows past the last one (n) repeat it: valid memory, and their
 * scores are masked (key index > every query position of the block). */
static inline void group_rows(const float *rows[KG], const float *x, int64_t ld, int64_t j0,
                              int64_t n)
{
#pragma GCC unroll 8
    for (int j = 0; j < KG; j++)
        rows[j] = x + (j0 + j < n ? j0 + j : n - 1) * ld;
}

/* lanes of query positions pos0 + 16 g + lane */
static inline void lane_positions(__m512i pos[QV], int64_t pos0)
{
    const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
#pragma GCC unroll 2
    for (int g = 0; g < QV; g++)
        pos[g] = _mm512_add_epi32(_mm512_set1_epi32((int)(pos0 + 16 * g)), iota);
}

/* lanes whose query position is before key j (masked by causality) */
static inline __mmask16 after_mask(__m512i pos, int64_t j)
{
    return _mm512_cmplt_epi32_mask(pos, _mm512_set1_epi32((int)j));
}

/* Forward of nq <= QB queries at positions pos0 .. pos0+nq-1 (keys 0 .. pos0+nq-1). */
static void fwd_block(int64_t nq, int64_t pos0, int64_t hs, const float *q, int64_t ldq,
                      const float *k, const float *v, int64_t ldkv, float *out, int64_t ldo,
                      float *lse, float scale)
{
    _Alignas(64) float qt[MAX_HS * QB]; /* q * scale, transposed */
    _Alignas(64) float ot[MAX_HS * QB]; /* unnormalised output, transposed */
    int64_t hs16 = (hs + 15) & ~(int64_t)15;
    load_t(qt, q, ldq, nq, hs, scale);
    for (int64_t i = 0; i < hs16 * QB; i += 16)
        _mm512_store_ps(ot + i, _mm512_setzero_ps());
    __m512 m[QV], l[QV];
    __m512i pos[QV];
    lane_positions(pos, pos0);
#pragma GCC unroll 2
    for (int g = 0; g < QV; g++) {
        m[g] = _mm512_set1_ps(-INFINITY);
        l[g] = _mm512_setzero_ps();
    }
    const int64_t nkeys = pos0 + nq;
    for (int64_t j0 = 0; j0 < nkeys; j0 += KG) {
        const float *kr[KG], *vr[KG];
        group_rows(kr, k, ldkv, j0, nkeys);
        group_rows(vr, v, ldkv, j0, nkeys);
        __m512 s[KG][QV];
        block_dots(s, qt, kr, hs);
        if (j0 + KG - 1 > pos0) { /* the group reaches past the first query: causal mask */
#pragma GCC unroll 8
            for (int j = 0; j < KG; j++)
#pragma GCC unroll 2
                for (int g = 0; g < QV; g++)
                    s[j][g] = _mm512_mask_mov_ps(s[j][g], after_mask(pos[g], j0 + j),
                                                 _mm512_set1_ps(-INFINITY));
        }
        /* online softmax; key 0 is in the first group, so m is finite after it */
        __m512 corr[QV];
        int rescale = 0;
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++) {
            __m512 mx = s[0][g];
#pragma GCC unroll 8
            for (int j = 1; j < KG; j++)
                mx = _mm512_max_ps(mx, s[j][g]);
            __mmask16 up = _mm512_cmp_ps_mask(mx, _mm512_add_ps(m[g], _mm512_set1_ps(SLACK)),
                                              _CMP_GT_OQ);
            corr[g] = _mm512_set1_ps(1.0f);
            if (up) {
                __m512 mn = _mm512_mask_mov_ps(m[g], up, mx);
                corr[g] = exp_ps(_mm512_maskz_sub_ps(up, m[g], mn)); /* 1 where not up */
                l[g] = _mm512_mul_ps(l[g], corr[g]);
                m[g] = mn;
                rescale = 1;
            }
        }
        if (rescale) {
            for (int64_t d = 0; d < hs; d++)
#pragma GCC unroll 2
                for (int g = 0; g < QV; g++)
                    _mm512_store_ps(ot + d * QB + 16 * g,
                                    _mm512_mul_ps(_mm512_load_ps(ot + d * QB + 16 * g), corr[g]));
        }
#pragma GCC unroll 8
        for (int j = 0; j < KG; j++)
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++) {
                s[j][g] = exp_ps(_mm512_sub_ps(s[j][g], m[g]));
                l[g] = _mm512_add_ps(l[g], s[j][g]);
            }
        block_axpy(ot, (const __m512(*)[QV])s, vr, hs);
    }
    __m512 inv[QV];
    _Alignas(64) float mb[QB], lb[QB];
#pragma GCC unroll 2
    for (int g = 0; g < QV; g++) {
        inv[g] = _mm512_div_ps(_mm512_set1_ps(1.0f), l[g]);
        _mm512_store_ps(mb + 16 * g, m[g]);
        _mm512_store_ps(lb + 16 * g, l[g]);
    }
    store_t(out, ldo, ot, nq, hs, inv, 0);
    for (int64_t i = 0; i < nq; i++)
        lse[i] = mb[i] + logf(lb[i]);
}

/* r[j] = sum of the lanes of a[j], j < 16 (a transpose-and-add tree, 45 shuffles/adds) */
static inline __m512 reduce16(const __m512 a[16])
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

/* a[j] = dot(qs, row j0 + j of k) for j < 16, qs zero-padded to nc vectors. Chunk-major:
 * each chunk of q is loaded once for 16 keys. A partial group (full == 0) repeats its
 * last row, which the caller masks. */
static inline __attribute__((always_inline)) void
row_dots(__m512 a[16], const float *qs, const float *k, int64_t ldkv, int64_t j0, int64_t nj,
         int64_t nc, __mmask16 mlast, const int full)
{
    const float *kb = k + j0 * ldkv;
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++)
        a[j] = _mm512_setzero_ps();
    for (int64_t c = 0; c < nc; c++) {
        __mmask16 mc = c == nc - 1 ? mlast : (__mmask16)0xffff;
        __m512 qc = _mm512_load_ps(qs + 16 * c);
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) {
            const float *kj = kb + (full ? j : j < nj ? j : nj - 1) * ldkv + 16 * c;
            a[j] = _mm512_fmadd_ps(qc, _mm512_maskz_loadu_ps(mc, kj), a[j]);
        }
    }
}

/* Forward of one query at position pos (decode): 16 keys at a time, scores by vector dot
 * products reduced into one vector, P.V into a row accumulator in L1. */
static void fwd_row(int64_t pos, int64_t hs, const float *q, const float *k, const float *v,
                    int64_t ldkv, float *out, float *lse, float scale)
{
    _Alignas(64) float qs[MAX_HS], os[MAX_HS], pb[16];
    const int64_t nc = (hs + 15) / 16;
    const __mmask16 mlast = tmask(hs - 16 * (nc - 1));
    for (int64_t c = 0; c < nc; c++) {
        __mmask16 mc = c == nc - 1 ? mlast : (__mmask16)0xffff;
        _mm512_store_ps(qs + 16 * c, _mm512_mul_ps(_mm512_maskz_loadu_ps(mc, q + 16 * c),
                                                   _mm512_set1_ps(scale)));
        _mm512_store_ps(os + 16 * c, _mm512_setzero_ps());
    }
    float m = -INFINITY;
    __m512 lsum = _mm512_setzero_ps();
    const int64_t nkeys = pos + 1;
    for (int64_t j0 = 0; j0 < nkeys; j0 += 16) {
        int64_t nj = nkeys - j0 < 16 ? nkeys - j0 : 16;
        __m512 a[16];
        if (nj == 16)
            row_dots(a, qs, k, ldkv, j0, nj, nc, mlast, 1);
        else
            row_dots(a, qs, k, ldkv, j0, nj, nc, mlast, 0);
        __m512 s = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), tmask(nj), reduce16(a));
        float mx = _mm512_reduce_max_ps(s);
        if (mx > m + SLACK) {
            float corr = expf(m - mx); /* 0 on the first group */
            lsum = _mm512_mul_ps(lsum, _mm512_set1_ps(corr));
            for (int64_t c = 0; c < nc; c++)
                _mm512_store_ps(os + 16 * c,
                                _mm512_mul_ps(_mm512_load_ps(os + 16 * c), _mm512_set1_ps(corr)));
            m = mx;
        }
        __m512 p = exp_ps(_mm512_sub_ps(s, _mm512_set1_ps(m)));
        lsum = _mm512_add_ps(lsum, p);
        _mm512_store_ps(pb, p);
        const float *vb = v + j0 * ldkv;
        for (int64_t c = 0; c < nc; c++) { /* two chains (even, odd keys) hide FMA latency */
            __mmask16 mc = c == nc - 1 ? mlast : (__mmask16)0xffff;
            __m512 o0 = _mm512_load_ps(os + 16 * c), o1 = _mm512_setzero_ps();
            int64_t j = 0;
            for (; j + 2 <= nj; j += 2) {
                o0 = _mm512_fmadd_ps(_mm512_set1_ps(pb[j]),
                                     _mm512_maskz_loadu_ps(mc, vb + j * ldkv + 16 * c), o0);
                o1 = _mm512_fmadd_ps(_mm512_set1_ps(pb[j + 1]),
                                     _mm512_maskz_loadu_ps(mc, vb + (j + 1) * ldkv + 16 * c), o1);
            }
            if (j < nj)
                o0 = _mm512_fmadd_ps(_mm512_set1_ps(pb[j]),
                                     _mm512_maskz_loadu_ps(mc, vb + j * ldkv + 16 * c), o0);
            _mm512_store_ps(os + 16 * c, _mm512_add_ps(o0, o1));
        }
    }
    float l = _mm512_reduce_add_ps(lsum);
    __m512 inv = _mm512_set1_ps(1.0f / l);
    for (int64_t c = 0; c < nc; c++)
        _mm512_mask_storeu_ps(out + 16 * c, c == nc - 1 ? mlast : (__mmask16)0xffff,
                              _mm512_mul_ps(_mm512_load_ps(os + 16 * c), inv));
    *lse = m + logf(l);
}

/* Prefetches the rows of the query block at i0 (q, out, and k, v of the same positions:
 * its diagonal keys) while the current block computes: rows are 3C floats apart in
 * training, a stride the hardware prefetchers do not follow. */
static void prefetch_block(int64_t i0, int64_t n, int64_t hs, const float *q, int64_t ldq,
                           const float *k, const float *v, int64_t ldkv, const float *out,
                           int64_t ldo)
{
    for (int64_t i = i0; i < i0 + QB && i < n; i++)
        for (int64_t d = 0; d < hs; d += 16) {
            _mm_prefetch((const char *)(q + i * ldq + d), _MM_HINT_T0);
            _mm_prefetch((const char *)(k + i * ldkv + d), _MM_HINT_T0);
            _mm_prefetch((const char *)(v + i * ldkv + d), _MM_HINT_T0);
            _mm_prefetch((const char *)(out + i * ldo + d), _MM_HINT_ET0);
        }
}

/* out (tq, hs) = causal softmax(q k^T * scale) v for queries at t0 .. t0+tq-1 */
static void attn_fwd(int64_t tq, int64_t t0, int64_t hs, const float *q, int64_t ldq,
                     const float *k, const float *v, int64_t ldkv, float *out, int64_t ldo,
                     float *lse, float scale)
{
    for (int64_t i0 = 0; i0 < tq; i0 += QB) {
        int64_t nq = tq - i0 < QB ? tq - i0 : QB;
        prefetch_block(i0 + QB, tq, hs, q, ldq, k + t0 * ldkv, v + t0 * ldkv, ldkv, out, ldo);
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
    __mmask16 mk[4];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++)
        mk[c] = tmask(hs - d0 - 16 * c);
    for (int64_t jb = 0; jb < nj; jb += 4) {
        __m512 acc[4][4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++)
                acc[j][c] = _mm512_setzero_ps();
        for (int64_t i = 0; i < nq; i++) {
            __m512 xv[4];
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++)
                xv[c] = _mm512_maskz_loadu_ps(mk[c], x + i * ldx + d0 + 16 * c);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                __m512 b = _mm512_set1_ps(w[(jb + j) * QB + i]);
#pragma GCC unroll 4
                for (int c = 0; c < NC; c++)
                    acc[j][c] = _mm512_fmadd_ps(b, xv[c], acc[j][c]);
            }
        }
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            if (jb + j >= nj)
                break;
            float *dr = dst + (jb + j) * ldd + d0;
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++)
                _mm512_mask_storeu_ps(dr + 16 * c, mk[c],
                                      _mm512_fmadd_ps(acc[j][c], _mm512_set1_ps(mul),
                                                      _mm512_maskz_loadu_ps(mk[c], dr + 16 * c)));
        }
    }
}

static void rows_update(float *dst, int64_t ldd, int64_t nj, const float *w, const float *x,
                        int64_t ldx, int64_t nq, int64_t hs, float mul)
{
    for (int64_t d0 = 0; d0 < hs; d0 += 64) {
        int64_t nc = (hs - d0 + 15) / 16;
        if (nc >= 4)
            rows_update_nc(dst, ldd, nj, w, x, ldx, nq, d0, hs, mul, 4);
        else if (nc == 3)
            rows_update_nc(dst, ldd, nj, w, x, ldx, nq, d0, hs, mul, 3);
        else if (nc == 2)
            rows_update_nc(dst, ldd, nj, w, x, ldx, nq, d0, hs, mul, 2);
        else
            rows_update_nc(dst, ldd, nj, w, x, ldx, nq, d0, hs, mul, 1);
    }
}

/* dot(a, b) over n floats */
static inline float dot_row(const float *a, const float *b, int64_t n)
{
    __m512 acc = _mm512_setzero_ps();
    for (int64_t d = 0; d < n; d += 16) {
        __mmask16 m = tmask(n - d);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + d), _mm512_maskz_loadu_ps(m, b + d),
                              acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* Backward of the query block i0 .. i0+nq-1 (t0 = 0) against keys 0 .. i0+nq-1:
 * P = exp(S - lse), dP = dO V^T, dS = P (dP - D); dQ, dK, dV accumulate. */
static void bwd_block(int64_t i0, int64_t nq, int64_t hs, const float *q, const float *k,
                      const float *v, int64_t ld, const float *out, const float *dout,
                      int64_t ldo, const float *lse, float *dq, float *dk, float *dv,
                      int64_t ldd, float scale)
{
    _Alignas(64) float qt[MAX_HS * QB];  /* q * scale, transposed */
    _Alignas(64) float dot[MAX_HS * QB]; /* dout, transposed */
    _Alignas(64) float dqt[MAX_HS * QB]; /* sum_j dS k_j, transposed */
    _Alignas(64) float pb[KG * QB], dsb[KG * QB], db[QB];
    int64_t hs16 = (hs + 15) & ~(int64_t)15;
    load_t(qt, q + i0 * ld, ld, nq, hs, scale);
    load_t(dot, dout + i0 * ldo, ldo, nq, hs, 1.0f);
    for (int64_t i = 0; i < hs16 * QB; i += 16)
        _mm512_store_ps(dqt + i, _mm512_setzero_ps());
    for (int64_t i = 0; i < QB; i++) /* D_i = dO_i . out_i = sum_j P_ij dP_ij */
        db[i] = i < nq ? dot_row(dout + (i0 + i) * ldo, out + (i0 + i) * ldo, hs) : 0.0f;
    __m512 lv[QV], Dv[QV];
    __m512i pos[QV];
    lane_positions(pos, i0);
#pragma GCC unroll 2
    for (int g = 0; g < QV; g++) {
        lv[g] = _mm512_maskz_loadu_ps(tmask(nq - 16 * g), lse + i0 + 16 * g);
        Dv[g] = _mm512_load_ps(db + 16 * g);
    }
    const int64_t nkeys = i0 + nq;
    for (int64_t j0 = 0; j0 < nkeys; j0 += KG) {
        const float *kr[KG], *vr[KG];
        group_rows(kr, k, ld, j0, nkeys);
        group_rows(vr, v, ld, j0, nkeys);
        int64_t nj = nkeys - j0 < KG ? nkeys - j0 : KG;
        __m512 s[KG][QV];
        block_dots(s, qt, kr, hs);
        int diag = j0 + KG - 1 > i0;
#pragma GCC unroll 8
        for (int j = 0; j < KG; j++)
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++) {
                __m512 p = exp_ps(_mm512_sub_ps(s[j][g], lv[g]));
                if (diag)
                    p = _mm512_maskz_mov_ps(~after_mask(pos[g], j0 + j), p);
                _mm512_store_ps(pb + j * QB + 16 * g, p);
            }
        block_dots(s, dot, vr, hs); /* dP */
#pragma GCC unroll 8
        for (int j = 0; j < KG; j++)
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++) {
                s[j][g] = _mm512_mul_ps(_mm512_load_ps(pb + j * QB + 16 * g),
                                        _mm512_sub_ps(s[j][g], Dv[g]));
                _mm512_store_ps(dsb + j * QB + 16 * g, s[j][g]);
            }
        block_axpy(dqt, (const __m512(*)[QV])s, kr, hs);
        rows_update(dv + j0 * ldd, ldd, nj, pb, dout + i0 * ldo, ldo, nq, hs, 1.0f);
        rows_update(dk + j0 * ldd, ldd, nj, dsb, q + i0 * ld, ld, nq, hs, scale);
    }
    __m512 sc[QV];
#pragma GCC unroll 2
    for (int g = 0; g < QV; g++)
        sc[g] = _mm512_set1_ps(scale);
    store_t(dq + i0 * ldd, ldd, dqt, nq, hs, sc, 1);
}

static void attn_bwd(int64_t T, int64_t hs, const float *q, const float *k, const float *v,
                     int64_t ld, const float *out, const float *dout, int64_t ldo,
                     const float *lse, float *dq, float *dk, float *dv, int64_t ldd, float scale,
                     float *scratch)
{
    (void)scratch; /* the block buffers live on the stack (<= 100 KB) */
    for (int64_t i0 = 0; i0 < T; i0 += QB)
        bwd_block(i0, T - i0 < QB ? T - i0 : QB, hs, q, k, v, ld, out, dout, ldo, lse, dq, dk,
                  dv, ldd, scale);
}

void parlm_avx512_nn_fill(parlm_kernels *k)
{
    k->attn_fwd = attn_fwd;
    k->attn_bwd = attn_bwd;
    parlm_avx512_nn_common_fill(k); /* common/nn.c */
}
