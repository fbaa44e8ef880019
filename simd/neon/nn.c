/* simd/neon/nn.c — AArch64 Advanced SIMD transformer kernels: causal flash attention
 * (forward and backward); cross-entropy, embeddings and AdamW are in simd/common/nn.c.
 * The one idea: attention holds a block of 8 queries TRANSPOSED (head dim major, one
 * query per lane), so the scores of 8 keys are 16 register accumulators fed by broadcast
 * key elements (ld1r), the softmax statistics are per lane (no horizontal reductions) and
 * P.V accumulates into a transposed output in L1; each K/V row loaded serves 8 queries.
 * Few queries (decode) take a row path of vector dot products instead. Tails go through
 * small zero-padded copies. Contracts in simd/kernels.h; mirrors simd/avx512/nn.c. */
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "neon.h"

#define MAX_HS 256
#define QV 2         /* query vectors per block */
#define QB (4 * QV)  /* queries per block */
#define KG 8         /* keys per group: scores are KG * QV registers */
#define ROWS_BELOW 3 /* a block of fewer queries takes the row path (lanes would idle) */
/* The running max m only moves when a score exceeds it by more than SLACK, so the
 * rescale of the output is rare; exp(s - m) <= e^8 cannot overflow and l >= 1. */
#define SLACK 8.0f

/* the first n (< 4) floats of x, the other lanes `fill` */
static inline float32x4_t load_part(const float *x, int64_t n, float fill)
{
    float t[4] = {fill, fill, fill, fill};
    memcpy(t, x, (size_t)n * sizeof(float));
    return vld1q_f32(t);
}

static inline float32x4_t load_n(const float *x, int64_t n, float fill)
{
    return n >= 4 ? vld1q_f32(x) : load_part(x, n, fill);
}

/* stores the first min(n, 4) lanes */
static inline void store_n(float *y, int64_t n, float32x4_t v)
{
    if (n >= 4) {
        vst1q_f32(y, v);
    } else {
        float t[4];
        vst1q_f32(t, v);
        memcpy(y, t, (size_t)n * sizeof(float));
    }
}

/* exp(x), all lanes: 2^n exp(r), n = round(x log2 e), r = x - n ln2 (Cody-Waite, ln2 in
 * two parts), exp(r) = 1 + r + r^2 q(r) with the degree-4 minimax q of simd/avx512/nn.c
 * (max relative error 1.3 ulp on the normal range). 2^n is applied as two exponent-field
 * multiplies 2^(n/2) 2^(n - n/2), so results round into subnormals and reach exactly 0
 * (x <= -110, -inf) or +inf (x >= 89). NaN stays NaN (fmax/fmin propagate it). */
static inline float32x4_t exp_ps(float32x4_t x)
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

/* ---- transposes between rows (one query each) and the lane-per-query layout ------- */

/* In place 4x4 transpose: r[i] lane c -> r[c] lane i. */
static inline void tr4(float32x4_t r[4])
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

/* xt[d * QB + i] = x[i * ld + d] * mul for i < n, d < hs; zero for n <= i < QB and for
 * hs <= d < hs rounded up to 4 */
static void load_t(float *xt, const float *x, int64_t ld, int64_t n, int64_t hs, float mul)
{
    for (int64_t d0 = 0; d0 < hs; d0 += 4) {
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++) {
            float32x4_t r[4];
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                int64_t row = 4 * g + i;
                r[i] = row < n ? load_n(x + row * ld + d0, hs - d0, 0.0f) : vdupq_n_f32(0.0f);
            }
            tr4(r);
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++)
                vst1q_f32(xt + (d0 + c) * QB + 4 * g, vmulq_n_f32(r[c], mul));
        }
    }
}

/* y[i * ld + d] (=, or += if acc) xt[d * QB + i] * mul[lane i] for i < n, d < hs */
static void store_t(float *y, int64_t ld, const float *xt, int64_t n, int64_t hs,
                    const float32x4_t mul[QV], int acc)
{
    for (int64_t d0 = 0; d0 < hs; d0 += 4) {
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++) {
            if (4 * g >= n)
                break;
            float32x4_t r[4];
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++)
                r[c] = vmulq_f32(vld1q_f32(xt + (d0 + c) * QB + 4 * g), mul[g]);
            tr4(r);
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                if (4 * g + i >= n)
                    break;
                float *yr = y + (4 * g + i) * ld + d0;
                if (acc)
                    r[i] = vaddq_f32(load_n(yr, hs - d0, 0.0f), r[i]);
                store_n(yr, hs - d0, r[i]);
            }
        }
    }
}

/* s[j][g] = sum_d at[d * QB + 4 g + lane] * rows[j][d]: QK^T (or dO V^T) of a block
 * against KG rows, the row elements broadcast. */
static inline __attribute__((always_inline)) void
block_dots(float32x4_t s[KG][QV], const float *at, const float *const rows[KG], int64_t hs)
{
#pragma GCC unroll 8
    for (int j = 0; j < KG; j++)
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++)
            s[j][g] = vdupq_n_f32(0.0f);
    for (int64_t d = 0; d < hs; d++) {
        float32x4_t a[QV];
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++)
            a[g] = vld1q_f32(at + d * QB + 4 * g);
#pragma GCC unroll 8
        for (int j = 0; j < KG; j++) {
            float32x4_t b = vld1q_dup_f32(rows[j] + d);
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++)
                s[j][g] = vfmaq_f32(s[j][g], a[g], b);
        }
    }
}

/* ot[d * QB + lanes] += sum_j w[j][g] * rows[j][d]: P.V into the transposed output (or
 * dS.K into the transposed dQ). Four rows of ot at a time, so that FMA latency overlaps. */
static inline __attribute__((always_inline)) void
block_axpy(float *ot, const float32x4_t w[KG][QV], const float *const rows[KG], int64_t hs)
{
    int64_t d = 0;
    for (; d + 4 <= hs; d += 4) {
        float32x4_t o[4][QV];
#pragma GCC unroll 4
        for (int e = 0; e < 4; e++)
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++)
                o[e][g] = vld1q_f32(ot + (d + e) * QB + 4 * g);
#pragma GCC unroll 8
        for (int j = 0; j < KG; j++)
#pragma GCC unroll 4
            for (int e = 0; e < 4; e++) {
                float32x4_t b = vld1q_dup_f32(rows[j] + d + e);
#pragma GCC unroll 2
                for (int g = 0; g < QV; g++)
                    o[e][g] = vfmaq_f32(o[e][g], w[j][g], b);
            }
#pragma GCC unroll 4
        for (int e = 0; e < 4; e++)
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++)
                vst1q_f32(ot + (d + e) * QB + 4 * g, o[e][g]);
    }
    for (; d < hs; d++) {
        float32x4_t o[QV];
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++)
            o[g] = vld1q_f32(ot + d * QB + 4 * g);
#pragma GCC unroll 8
        for (int j = 0; j < KG; j++) {
            float32x4_t b = vld1q_dup_f32(rows[j] + d);
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++)
                o[g] = vfmaq_f32(o[g], w[j][g], b);
        }
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++)
            vst1q_f32(ot + d * QB + 4 * g, o[g]);
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

/* lanes of query positions pos0 + 4 g + lane */
static inline void lane_positions(int32x4_t pos[QV], int64_t pos0)
{
    const int32_t iota[4] = {0, 1, 2, 3};
#pragma GCC unroll 2
    for (int g = 0; g < QV; g++)
        pos[g] = vaddq_s32(vdupq_n_s32((int32_t)(pos0 + 4 * g)), vld1q_s32(iota));
}

/* all-ones in the lanes whose query position is before key j (masked by causality) */
static inline uint32x4_t after_mask(int32x4_t pos, int64_t j)
{
    return vcltq_s32(pos, vdupq_n_s32((int32_t)j));
}

/* Forward of nq <= QB queries at positions pos0 .. pos0+nq-1 (keys 0 .. pos0+nq-1). */
static void fwd_block(int64_t nq, int64_t pos0, int64_t hs, const float *q, int64_t ldq,
                      const float *k, const float *v, int64_t ldkv, float *out, int64_t ldo,
                      float *lse, float scale)
{
    float qt[MAX_HS * QB]; /* q * scale, transposed */
    float ot[MAX_HS * QB]; /* unnormalised output, transposed */
    const float32x4_t ninf = vdupq_n_f32(-INFINITY);
    int64_t hs4 = (hs + 3) & ~(int64_t)3;
    load_t(qt, q, ldq, nq, hs, scale);
    memset(ot, 0, (size_t)(hs4 * QB) * sizeof(float));
    float32x4_t m[QV], l[QV];
    int32x4_t pos[QV];
    lane_positions(pos, pos0);
#pragma GCC unroll 2
    for (int g = 0; g < QV; g++) {
        m[g] = ninf;
        l[g] = vdupq_n_f32(0.0f);
    }
    const int64_t nkeys = pos0 + nq;
    for (int64_t j0 = 0; j0 < nkeys; j0 += KG) {
        const float *kr[KG], *vr[KG];
        group_rows(kr, k, ldkv, j0, nkeys);
        group_rows(vr, v, ldkv, j0, nkeys);
        float32x4_t s[KG][QV];
        block_dots(s, qt, kr, hs);
        if (j0 + KG - 1 > pos0) { /* the group reaches past the first query: causal mask */
#pragma GCC unroll 8
            for (int j = 0; j < KG; j++)
#pragma GCC unroll 2
                for (int g = 0; g < QV; g++)
                    s[j][g] = vbslq_f32(after_mask(pos[g], j0 + j), ninf, s[j][g]);
        }
        /* online softmax; key 0 is in the first group, so m is finite after it */
        float32x4_t corr[QV];
        int rescale = 0;
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++) {
            float32x4_t mx = s[0][g];
#pragma GCC unroll 8
            for (int j = 1; j < KG; j++)
                mx = vmaxq_f32(mx, s[j][g]);
            uint32x4_t up = vcgtq_f32(mx, vaddq_f32(m[g], vdupq_n_f32(SLACK)));
            corr[g] = vdupq_n_f32(1.0f);
            if (vmaxvq_u32(up)) {
                float32x4_t mn = vbslq_f32(up, mx, m[g]);
                /* m - mn is 0 where not up (exp gives exactly 1); -inf on the first group */
                float32x4_t dm = vreinterpretq_f32_u32(
                    vandq_u32(up, vreinterpretq_u32_f32(vsubq_f32(m[g], mn))));
                corr[g] = exp_ps(dm);
                l[g] = vmulq_f32(l[g], corr[g]);
                m[g] = mn;
                rescale = 1;
            }
        }
        if (rescale) {
            for (int64_t d = 0; d < hs; d++)
#pragma GCC unroll 2
                for (int g = 0; g < QV; g++)
                    vst1q_f32(ot + d * QB + 4 * g,
                              vmulq_f32(vld1q_f32(ot + d * QB + 4 * g), corr[g]));
        }
#pragma GCC unroll 8
        for (int j = 0; j < KG; j++)
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++) {
                s[j][g] = exp_ps(vsubq_f32(s[j][g], m[g]));
                l[g] = vaddq_f32(l[g], s[j][g]);
            }
        block_axpy(ot, (const float32x4_t(*)[QV])s, vr, hs);
    }
    float32x4_t inv[QV];
    float mb[QB], lb[QB];
#pragma GCC unroll 2
    for (int g = 0; g < QV; g++) {
        inv[g] = vdivq_f32(vdupq_n_f32(1.0f), l[g]);
        vst1q_f32(mb + 4 * g, m[g]);
        vst1q_f32(lb + 4 * g, l[g]);
    }
    store_t(out, ldo, ot, nq, hs, inv, 0);
    for (int64_t i = 0; i < nq; i++)
        lse[i] = mb[i] + logf(lb[i]);
}

/* a[j] = dot(qs, row j0 + j of k) for j < 8, qs zero-padded to nc vectors (the last one
 * read through a zero-padded copy). A partial group (full == 0) repeats its last row,
 * which the caller masks. */
static inline __attribute__((always_inline)) void
row_dots(float32x4_t a[8], const float *qs, const float *k, int64_t ldkv, int64_t j0,
         int64_t nj, int64_t hs, const int full)
{
    const float *kb = k + j0 * ldkv;
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
        a[j] = vdupq_n_f32(0.0f);
    int64_t c = 0;
    for (; c + 4 <= hs; c += 4) {
        float32x4_t qc = vld1q_f32(qs + c);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const float *kj = kb + (full ? j : j < nj ? j : nj - 1) * ldkv + c;
            a[j] = vfmaq_f32(a[j], qc, vld1q_f32(kj));
        }
    }
    if (c < hs) {
        float32x4_t qc = vld1q_f32(qs + c);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const float *kj = kb + (full ? j : j < nj ? j : nj - 1) * ldkv + c;
            a[j] = vfmaq_f32(a[j], qc, load_part(kj, hs - c, 0.0f));
        }
    }
}

/* Forward of one query at position pos (decode): 8 keys at a time, scores by vector dot
 * products reduced pairwise, P.V into a row accumulator in L1. */
static void fwd_row(int64_t pos, int64_t hs, const float *q, const float *k, const float *v,
                    int64_t ldkv, float *out, float *lse, float scale)
{
    float qs[MAX_HS], os[MAX_HS], pb[8];
    const int64_t hs4 = (hs + 3) & ~(int64_t)3;
    for (int64_t c = 0; c < hs4; c += 4) {
        vst1q_f32(qs + c, vmulq_n_f32(load_n(q + c, hs - c, 0.0f), scale));
        vst1q_f32(os + c, vdupq_n_f32(0.0f));
    }
    float m = -INFINITY;
    float32x4_t lsum = vdupq_n_f32(0.0f);
    const int64_t nkeys = pos + 1;
    for (int64_t j0 = 0; j0 < nkeys; j0 += 8) {
        int64_t nj = nkeys - j0 < 8 ? nkeys - j0 : 8;
        float32x4_t a[8];
        if (nj == 8)
            row_dots(a, qs, k, ldkv, j0, nj, hs, 1);
        else
            row_dots(a, qs, k, ldkv, j0, nj, hs, 0);
        float32x4_t s0 = vpaddq_f32(vpaddq_f32(a[0], a[1]), vpaddq_f32(a[2], a[3]));
        float32x4_t s1 = vpaddq_f32(vpaddq_f32(a[4], a[5]), vpaddq_f32(a[6], a[7]));
        const int32_t iota[4] = {0, 1, 2, 3};
        int32x4_t idx = vld1q_s32(iota);
        s0 = vbslq_f32(vcgeq_s32(idx, vdupq_n_s32((int32_t)nj)), vdupq_n_f32(-INFINITY), s0);
        s1 = vbslq_f32(vcgeq_s32(idx, vdupq_n_s32((int32_t)nj - 4)), vdupq_n_f32(-INFINITY), s1);
        float mx = vmaxvq_f32(vmaxq_f32(s0, s1));
        if (mx > m + SLACK) {
            float corr = expf(m - mx); /* 0 on the first group */
            lsum = vmulq_n_f32(lsum, corr);
            for (int64_t c = 0; c < hs4; c += 4)
                vst1q_f32(os + c, vmulq_n_f32(vld1q_f32(os + c), corr));
            m = mx;
        }
        float32x4_t vm = vdupq_n_f32(m);
        float32x4_t p0 = exp_ps(vsubq_f32(s0, vm)), p1 = exp_ps(vsubq_f32(s1, vm));
        lsum = vaddq_f32(lsum, vaddq_f32(p0, p1));
        vst1q_f32(pb, p0);
        vst1q_f32(pb + 4, p1);
        const float *vb = v + j0 * ldkv;
        for (int64_t c = 0; c < hs4; c += 4) { /* two chains (even, odd keys) */
            float32x4_t o0 = vld1q_f32(os + c), o1 = vdupq_n_f32(0.0f);
            int64_t j = 0;
            if (c + 4 <= hs) {
                for (; j + 2 <= nj; j += 2) {
                    o0 = vfmaq_n_f32(o0, vld1q_f32(vb + j * ldkv + c), pb[j]);
                    o1 = vfmaq_n_f32(o1, vld1q_f32(vb + (j + 1) * ldkv + c), pb[j + 1]);
                }
                if (j < nj)
                    o0 = vfmaq_n_f32(o0, vld1q_f32(vb + j * ldkv + c), pb[j]);
            } else {
                for (; j < nj; j++)
                    o0 = vfmaq_n_f32(o0, load_part(vb + j * ldkv + c, hs - c, 0.0f), pb[j]);
            }
            vst1q_f32(os + c, vaddq_f32(o0, o1));
        }
    }
    float l = vaddvq_f32(lsum);
    for (int64_t c = 0; c < hs4; c += 4)
        store_n(out + c, hs - c, vmulq_n_f32(vld1q_f32(os + c), 1.0f / l));
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
    int64_t left[4];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++)
        left[c] = hs - d0 - 4 * c; /* floats of the head dim from this vector on */
    for (int64_t jb = 0; jb < nj; jb += 4) {
        float32x4_t acc[4][4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++)
                acc[j][c] = vdupq_n_f32(0.0f);
        for (int64_t i = 0; i < nq; i++) {
            float32x4_t xv[4];
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++)
                xv[c] = load_n(x + i * ldx + d0 + 4 * c, left[c], 0.0f);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                float b = w[(jb + j) * QB + i];
#pragma GCC unroll 4
                for (int c = 0; c < NC; c++)
                    acc[j][c] = vfmaq_n_f32(acc[j][c], xv[c], b);
            }
        }
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            if (jb + j >= nj)
                break;
            float *dr = dst + (jb + j) * ldd + d0;
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++)
                store_n(dr + 4 * c, left[c],
                        vfmaq_n_f32(load_n(dr + 4 * c, left[c], 0.0f), acc[j][c], mul));
        }
    }
}

static void rows_update(float *dst, int64_t ldd, int64_t nj, const float *w, const float *x,
                        int64_t ldx, int64_t nq, int64_t hs, float mul)
{
    for (int64_t d0 = 0; d0 < hs; d0 += 16) {
        int64_t nc = (hs - d0 + 3) / 4;
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
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (int64_t d = 0; d < n; d += 4)
        acc = vfmaq_f32(acc, load_n(a + d, n - d, 0.0f), load_n(b + d, n - d, 0.0f));
    return vaddvq_f32(acc);
}

/* Backward of the query block i0 .. i0+nq-1 (t0 = 0) against keys 0 .. i0+nq-1:
 * P = exp(S - lse), dP = dO V^T, dS = P (dP - D); dQ, dK, dV accumulate. */
static void bwd_block(int64_t i0, int64_t nq, int64_t hs, const float *q, const float *k,
                      const float *v, int64_t ld, const float *out, const float *dout,
                      int64_t ldo, const float *lse, float *dq, float *dk, float *dv,
                      int64_t ldd, float scale)
{
    float qt[MAX_HS * QB];  /* q * scale, transposed */
    float dot[MAX_HS * QB]; /* dout, transposed */
    float dqt[MAX_HS * QB]; /* sum_j dS k_j, transposed */
    float pb[KG * QB], dsb[KG * QB], db[QB], lb[QB];
    int64_t hs4 = (hs + 3) & ~(int64_t)3;
    load_t(qt, q + i0 * ld, ld, nq, hs, scale);
    load_t(dot, dout + i0 * ldo, ldo, nq, hs, 1.0f);
    memset(dqt, 0, (size_t)(hs4 * QB) * sizeof(float));
    for (int64_t i = 0; i < QB; i++) { /* D_i = dO_i . out_i = sum_j P_ij dP_ij */
        db[i] = i < nq ? dot_row(dout + (i0 + i) * ldo, out + (i0 + i) * ldo, hs) : 0.0f;
        lb[i] = i < nq ? lse[i0 + i] : 0.0f;
    }
    float32x4_t lv[QV], Dv[QV];
    int32x4_t pos[QV];
    lane_positions(pos, i0);
#pragma GCC unroll 2
    for (int g = 0; g < QV; g++) {
        lv[g] = vld1q_f32(lb + 4 * g);
        Dv[g] = vld1q_f32(db + 4 * g);
    }
    const int64_t nkeys = i0 + nq;
    for (int64_t j0 = 0; j0 < nkeys; j0 += KG) {
        const float *kr[KG], *vr[KG];
        group_rows(kr, k, ld, j0, nkeys);
        group_rows(vr, v, ld, j0, nkeys);
        int64_t nj = nkeys - j0 < KG ? nkeys - j0 : KG;
        float32x4_t s[KG][QV];
        block_dots(s, qt, kr, hs);
        int diag = j0 + KG - 1 > i0;
#pragma GCC unroll 8
        for (int j = 0; j < KG; j++)
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++) {
                float32x4_t p = exp_ps(vsubq_f32(s[j][g], lv[g]));
                if (diag)
                    p = vbslq_f32(after_mask(pos[g], j0 + j), vdupq_n_f32(0.0f), p);
                vst1q_f32(pb + j * QB + 4 * g, p);
            }
        block_dots(s, dot, vr, hs); /* dP */
#pragma GCC unroll 8
        for (int j = 0; j < KG; j++)
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++) {
                s[j][g] = vmulq_f32(vld1q_f32(pb + j * QB + 4 * g), vsubq_f32(s[j][g], Dv[g]));
                vst1q_f32(dsb + j * QB + 4 * g, s[j][g]);
            }
        block_axpy(dqt, (const float32x4_t(*)[QV])s, kr, hs);
        rows_update(dv + j0 * ldd, ldd, nj, pb, dout + i0 * ldo, ldo, nq, hs, 1.0f);
        rows_update(dk + j0 * ldd, ldd, nj, dsb, q + i0 * ld, ld, nq, hs, scale);
    }
    float32x4_t sc[QV];
#pragma GCC unroll 2
    for (int g = 0; g < QV; g++)
        sc[g] = vdupq_n_f32(scale);
    store_t(dq + i0 * ldd, ldd, dqt, nq, hs, sc, 1);
}

static void attn_bwd(int64_t T, int64_t hs, const float *q, const float *k, const float *v,
                     int64_t ld, const float *out, const float *dout, int64_t ldo,
                     const float *lse, float *dq, float *dk, float *dv, int64_t ldd, float scale,
                     float *scratch)
{
    (void)scratch; /* the block buffers live on the stack (<= 25 KB) */
    for (int64_t i0 = 0; i0 < T; i0 += QB)
        bwd_block(i0, T - i0 < QB ? T - i0 : QB, hs, q, k, v, ld, out, dout, ldo, lse, dq, dk,
                  dv, ldd, scale);
}

void parlm_neon_nn_fill(parlm_kernels *k)
{
    k->attn_fwd = attn_fwd;
    k->attn_bwd = attn_bwd;
    parlm_neon_nn_common_fill(k); /* common/nn.c */
}
