/* simd/common/attn.c — causal flash attention, forward and backward, written once over
 * "vec.h" + "vec_nn.h" and compiled once per ISA (simd/local.am); contracts in
 * simd/kernels.h. The one idea: a block of QB = 2 * VF_LANES queries is held TRANSPOSED
 * (head dim major, one query per lane), so the scores of ATTN_KG keys are 2 * ATTN_KG
 * register accumulators fed by broadcast key elements, the softmax statistics are per lane
 * (no horizontal reductions) and P.V accumulates into a transposed output in L1: each
 * K/V row loaded serves QB queries. Few queries (decode) take a row path of vector dot
 * products instead. Block sizes per ISA are the ATTN_* constants of vec_nn.h. */
#include <math.h>
#include <stdint.h>

#include "vec_nn.h"

#include "../kernels.h"

void VEC_ISA_NAME(attn_fill)(parlm_kernels *k);

#define L VF_LANES
#define MAX_HS 256
#define QV 2                     /* query vectors per block */
#define QB (QV * L)              /* queries per block */
#define KG ATTN_KG               /* keys per group: scores are KG * QV registers */
#define RK (ATTN_ROW_VECS * L)   /* keys per group of the row path */
#define UPD ATTN_UPD_VECS
/* The running max m only moves when a score exceeds it by more than SLACK, so the rescale
 * of the output (hs * QV multiplies) is rare; exp(s - m) <= e^8 cannot overflow and
 * l >= 1 (the max key has p >= 1), so nothing is lost in float. */
#define SLACK 8.0f

/* a full vector at p, or (full == 0) its first n lanes, the others 0: callers pass a
 * constant `full` so each call site compiles to one kind of load */
static inline vf load_full_or_n(const float *p, int64_t n, const int full)
{
    return full ? vf_load(p) : vf_load_n(p, n);
}

/* ---- transposes between rows (one query each) and the lane-per-query layout ------- */

/* xt[d * QB + i] = x[i * ld + d] * mul for i < n, d < hs; zero for n <= i < QB and for
 * hs <= d < hs rounded up to L */
static void load_t(float *xt, const float *x, int64_t ld, int64_t n, int64_t hs, float mul)
{
    vf vm = vf_set1(mul);
    for (int64_t d0 = 0; d0 < hs; d0 += L) {
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++) {
            vf r[L];
#pragma GCC unroll 16
            for (int i = 0; i < L; i++) {
                int64_t row = L * g + i;
                r[i] = row < n ? vf_load_n(x + row * ld + d0, hs - d0) : vf_zero();
            }
            vf_transpose(r);
#pragma GCC unroll 16
            for (int c = 0; c < L; c++)
                vf_store(xt + (d0 + c) * QB + L * g, vf_mul(r[c], vm));
        }
    }
}

/* y[i * ld + d] (=, or += if acc) xt[d * QB + i] * mul[lane i] for i < n, d < hs */
static void store_t(float *y, int64_t ld, const float *xt, int64_t n, int64_t hs,
                    const vf mul[QV], int acc)
{
    for (int64_t d0 = 0; d0 < hs; d0 += L) {
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++) {
            if (L * g >= n)
                break;
            vf r[L];
#pragma GCC unroll 16
            for (int c = 0; c < L; c++)
                r[c] = vf_mul(vf_load(xt + (d0 + c) * QB + L * g), mul[g]);
            vf_transpose(r);
#pragma GCC unroll 16
            for (int i = 0; i < L; i++) {
                if (L * g + i >= n)
                    break;
                float *yr = y + (L * g + i) * ld + d0;
                if (acc)
                    r[i] = vf_add(vf_load_n(yr, hs - d0), r[i]);
                vf_store_n(yr, hs - d0, r[i]);
            }
        }
    }
}

/* ---- the block path ---------------------------------------------------------------- */

/* s[j][g] = sum_d at[d * QB + L g + lane] * rows[j][d]: QK^T (or dO V^T) of a block
 * against KG rows, the row elements broadcast. */
static inline __attribute__((always_inline)) void
block_dots(vf s[KG][QV], const float *at, const float *const rows[KG], int64_t hs)
{
#pragma GCC unroll 16
    for (int j = 0; j < KG; j++)
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++)
            s[j][g] = vf_zero();
    for (int64_t d = 0; d < hs; d++) {
        vf a[QV];
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++)
            a[g] = vf_load(at + d * QB + L * g);
#pragma GCC unroll 16
        for (int j = 0; j < KG; j++) {
            vf b = vf_bcast(rows[j] + d);
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++)
                s[j][g] = vf_fma(a[g], b, s[j][g]);
        }
    }
}

/* ot[d * QB + lanes] += sum_j w[j][g] * rows[j][d]: P.V into the transposed output (or
 * dS.K into the transposed dQ). ATTN_AXPY_ROWS rows of ot at a time: each accumulator is
 * a chain of KG dependent FMAs, so one row alone would wait on FMA latency. */
static inline __attribute__((always_inline)) void
block_axpy(float *ot, const vf w[KG][QV], const float *const rows[KG], int64_t hs)
{
    enum { E = ATTN_AXPY_ROWS };
    int64_t d = 0;
    for (; d + E <= hs; d += E) {
        vf o[E][QV];
#pragma GCC unroll 4
        for (int e = 0; e < E; e++)
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++)
                o[e][g] = vf_load(ot + (d + e) * QB + L * g);
#pragma GCC unroll 16
        for (int j = 0; j < KG; j++)
#pragma GCC unroll 4
            for (int e = 0; e < E; e++) {
                vf b = vf_bcast(rows[j] + d + e);
#pragma GCC unroll 2
                for (int g = 0; g < QV; g++)
                    o[e][g] = vf_fma(w[j][g], b, o[e][g]);
            }
#pragma GCC unroll 4
        for (int e = 0; e < E; e++)
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++)
                vf_store(ot + (d + e) * QB + L * g, o[e][g]);
    }
    for (; d < hs; d++) {
        vf o[QV];
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++)
            o[g] = vf_load(ot + d * QB + L * g);
#pragma GCC unroll 16
        for (int j = 0; j < KG; j++) {
            vf b = vf_bcast(rows[j] + d);
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++)
                o[g] = vf_fma(w[j][g], b, o[g]);
        }
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++)
            vf_store(ot + d * QB + L * g, o[g]);
    }
}

/* Rows j0 .. j0+KG-1 of x; rows past the last one (n) repeat it: valid memory, and their
 * scores are masked (key index > every query position of the block). */
static inline void group_rows(const float *rows[KG], const float *x, int64_t ld, int64_t j0,
                              int64_t n)
{
#pragma GCC unroll 16
    for (int j = 0; j < KG; j++)
        rows[j] = x + (j0 + j < n ? j0 + j : n - 1) * ld;
}

/* lanes of query positions pos0 + L g + lane */
static inline void lane_positions(vi pos[QV], int64_t pos0)
{
#pragma GCC unroll 2
    for (int g = 0; g < QV; g++)
        pos[g] = vi_add(vi_set1((int32_t)(pos0 + L * g)), vi_iota());
}

/* lanes whose query position is before key j (masked by causality) */
static inline vmask after_mask(vi pos, int64_t j) { return vi_lt(pos, vi_set1((int32_t)j)); }

/* Forward of nq <= QB queries at positions pos0 .. pos0+nq-1 (keys 0 .. pos0+nq-1). */
static void fwd_block(int64_t nq, int64_t pos0, int64_t hs, const float *q, int64_t ldq,
                      const float *k, const float *v, int64_t ldkv, float *out, int64_t ldo,
                      float *lse, float scale)
{
    _Alignas(64) float qt[MAX_HS * QB]; /* q * scale, transposed */
    _Alignas(64) float ot[MAX_HS * QB]; /* unnormalised output, transposed */
    const vf ninf = vf_set1(-INFINITY);
    int64_t hsl = (hs + L - 1) / L * L;
    load_t(qt, q, ldq, nq, hs, scale);
    for (int64_t i = 0; i < hsl * QB; i += L)
        vf_store(ot + i, vf_zero());
    vf m[QV], l[QV];
    vi pos[QV];
    lane_positions(pos, pos0);
#pragma GCC unroll 2
    for (int g = 0; g < QV; g++) {
        m[g] = ninf;
        l[g] = vf_zero();
    }
    const int64_t nkeys = pos0 + nq;
    for (int64_t j0 = 0; j0 < nkeys; j0 += KG) {
        const float *kr[KG], *vr[KG];
        group_rows(kr, k, ldkv, j0, nkeys);
        group_rows(vr, v, ldkv, j0, nkeys);
        vf s[KG][QV];
        block_dots(s, qt, kr, hs);
        if (j0 + KG - 1 > pos0) { /* the group reaches past the first query: causal mask */
#pragma GCC unroll 16
            for (int j = 0; j < KG; j++)
#pragma GCC unroll 2
                for (int g = 0; g < QV; g++)
                    s[j][g] = vf_select(after_mask(pos[g], j0 + j), ninf, s[j][g]);
        }
        /* online softmax; key 0 is in the first group, so m is finite after it */
        vf corr[QV];
        int rescale = 0;
#pragma GCC unroll 2
        for (int g = 0; g < QV; g++) {
            vf mx = s[0][g];
#pragma GCC unroll 16
            for (int j = 1; j < KG; j++)
                mx = vf_max(mx, s[j][g]);
            vmask up = vf_gt(mx, vf_add(m[g], vf_set1(SLACK)));
            corr[g] = vf_set1(1.0f);
            if (vm_any(up)) {
                vf mn = vf_select(up, mx, m[g]);
                /* m - mn is 0 where not up (exp gives exactly 1); -inf on the first group */
                corr[g] = vf_exp(vf_select(up, vf_sub(m[g], mn), vf_zero()));
                l[g] = vf_mul(l[g], corr[g]);
                m[g] = mn;
                rescale = 1;
            }
        }
        if (rescale) {
            for (int64_t d = 0; d < hs; d++)
#pragma GCC unroll 2
                for (int g = 0; g < QV; g++)
                    vf_store(ot + d * QB + L * g, vf_mul(vf_load(ot + d * QB + L * g), corr[g]));
        }
#pragma GCC unroll 16
        for (int j = 0; j < KG; j++)
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++) {
                s[j][g] = vf_exp(vf_sub(s[j][g], m[g]));
                l[g] = vf_add(l[g], s[j][g]);
            }
        block_axpy(ot, (const vf(*)[QV])s, vr, hs);
    }
    vf inv[QV];
    _Alignas(64) float mb[QB], lb[QB];
#pragma GCC unroll 2
    for (int g = 0; g < QV; g++) {
        inv[g] = vf_div(vf_set1(1.0f), l[g]);
        vf_store(mb + L * g, m[g]);
        vf_store(lb + L * g, l[g]);
    }
    store_t(out, ldo, ot, nq, hs, inv, 0);
    for (int64_t i = 0; i < nq; i++)
        lse[i] = mb[i] + logf(lb[i]);
}

/* ---- the row path (decode) ------------------------------------------------------------ */

/* a[j] = dot(qs, row j0 + j of k) for j < RK, qs zero-padded to a whole vector.
 * Chunk-major: each chunk of q is loaded once for RK keys. A partial group (full == 0)
 * repeats its last row, which the caller masks. */
static inline __attribute__((always_inline)) void
row_dots(vf a[RK], const float *qs, const float *k, int64_t ldkv, int64_t j0, int64_t nj,
         int64_t hs, const int full)
{
    const float *kb = k + j0 * ldkv;
#pragma GCC unroll 16
    for (int j = 0; j < RK; j++)
        a[j] = vf_zero();
    int64_t c = 0;
    for (; c + L <= hs; c += L) {
        vf qc = vf_load(qs + c);
#pragma GCC unroll 16
        for (int j = 0; j < RK; j++) {
            const float *kj = kb + (full ? j : j < nj ? j : nj - 1) * ldkv + c;
            a[j] = vf_fma(qc, vf_load(kj), a[j]);
        }
    }
    if (c < hs) {
        vf qc = vf_load(qs + c);
#pragma GCC unroll 16
        for (int j = 0; j < RK; j++) {
            const float *kj = kb + (full ? j : j < nj ? j : nj - 1) * ldkv + c;
            a[j] = vf_fma(qc, vf_load_n(kj, hs - c), a[j]);
        }
    }
}

/* os[0:L] += sum_{j < nj} pb[j] * vb[j * ldkv : L] (n floats of each row when full == 0);
 * two chains (even, odd keys) hide FMA latency */
static inline __attribute__((always_inline)) void
row_pv(float *os, const float *pb, const float *vb, int64_t ldkv, int64_t nj, int64_t n,
       const int full)
{
    vf o0 = vf_load(os), o1 = vf_zero();
    int64_t j = 0;
    for (; j + 2 <= nj; j += 2) {
        o0 = vf_fma(vf_bcast(pb + j), load_full_or_n(vb + j * ldkv, n, full), o0);
        o1 = vf_fma(vf_bcast(pb + j + 1), load_full_or_n(vb + (j + 1) * ldkv, n, full), o1);
    }
    if (j < nj)
        o0 = vf_fma(vf_bcast(pb + j), load_full_or_n(vb + j * ldkv, n, full), o0);
    vf_store(os, vf_add(o0, o1));
}

/* Forward of one query at position pos (decode): RK keys at a time, scores by vector dot
 * products reduced into ATTN_ROW_VECS vectors, P.V into a row accumulator in L1. */
static void fwd_row(int64_t pos, int64_t hs, const float *q, const float *k, const float *v,
                    int64_t ldkv, float *out, float *lse, float scale)
{
    _Alignas(64) float qs[MAX_HS], os[MAX_HS], pb[RK];
    const int64_t hsl = (hs + L - 1) / L * L;
    for (int64_t c = 0; c < hsl; c += L) {
        vf_store(qs + c, vf_mul(vf_load_n(q + c, hs - c), vf_set1(scale)));
        vf_store(os + c, vf_zero());
    }
    float m = -INFINITY;
    vf lsum = vf_zero();
    const int64_t nkeys = pos + 1;
    for (int64_t j0 = 0; j0 < nkeys; j0 += RK) {
        int64_t nj = nkeys - j0 < RK ? nkeys - j0 : RK;
        vf a[RK], s[ATTN_ROW_VECS], smax = vf_set1(-INFINITY);
        if (nj == RK)
            row_dots(a, qs, k, ldkv, j0, nj, hs, 1);
        else
            row_dots(a, qs, k, ldkv, j0, nj, hs, 0);
#pragma GCC unroll 4
        for (int u = 0; u < ATTN_ROW_VECS; u++) {
            vmask valid = vi_lt(vi_add(vi_iota(), vi_set1(L * u)), vi_set1((int32_t)nj));
            s[u] = vf_select(valid, vf_sum_lanes(a + L * u), vf_set1(-INFINITY));
            smax = vf_max(smax, s[u]);
        }
        float mx = vf_hmax(smax);
        if (mx > m + SLACK) {
            vf corr = vf_set1(expf(m - mx)); /* 0 on the first group */
            lsum = vf_mul(lsum, corr);
            for (int64_t c = 0; c < hsl; c += L)
                vf_store(os + c, vf_mul(vf_load(os + c), corr));
            m = mx;
        }
#pragma GCC unroll 4
        for (int u = 0; u < ATTN_ROW_VECS; u++) {
            vf p = vf_exp(vf_sub(s[u], vf_set1(m)));
            lsum = vf_add(lsum, p);
            vf_store(pb + L * u, p);
        }
        const float *vb = v + j0 * ldkv;
        int64_t c = 0;
        for (; c + L <= hs; c += L)
            row_pv(os + c, pb, vb + c, ldkv, nj, L, 1);
        if (c < hs)
            row_pv(os + c, pb, vb + c, ldkv, nj, hs - c, 0);
    }
    float l = vf_hsum(lsum);
    vf inv = vf_set1(1.0f / l);
    for (int64_t c = 0; c < hsl; c += L)
        vf_store_n(out + c, hs - c, vf_mul(vf_load(os + c), inv));
    *lse = m + logf(l);
}

/* Prefetches the rows of the query block at i0 (q, out, and k, v of the same positions:
 * its diagonal keys) while the current block computes: rows are 3C floats apart in
 * training, a stride the hardware prefetchers do not follow. One prefetch per 64 bytes. */
static void prefetch_block(int64_t i0, int64_t n, int64_t hs, const float *q, int64_t ldq,
                           const float *k, const float *v, int64_t ldkv, const float *out,
                           int64_t ldo)
{
    for (int64_t i = i0; i < i0 + QB && i < n; i++)
        for (int64_t d = 0; d < hs; d += 16) {
            v_prefetch(q + i * ldq + d);
            v_prefetch(k + i * ldkv + d);
            v_prefetch(v + i * ldkv + d);
            v_prefetchw(out + i * ldo + d);
        }
}

/* out (tq, hs) = causal softmax(q k^T * scale) v for queries at t0 .. t0+tq-1 */
static void attn_fwd(int64_t tq, int64_t t0, int64_t hs, const float *q, int64_t ldq,
                     const float *k, const float *v, int64_t ldkv, float *out, int64_t ldo,
                     float *lse, float scale)
{
    for (int64_t i0 = 0; i0 < tq; i0 += QB) {
        int64_t nq = tq - i0 < QB ? tq - i0 : QB;
        if (ATTN_PREFETCH)
            prefetch_block(i0 + QB, tq, hs, q, ldq, k + t0 * ldkv, v + t0 * ldkv, ldkv, out, ldo);
        if (nq >= ATTN_ROWS_BELOW)
            fwd_block(nq, t0 + i0, hs, q + i0 * ldq, ldq, k, v, ldkv, out + i0 * ldo, ldo,
                      lse + i0, scale);
        else
            for (int64_t i = i0; i < i0 + nq; i++)
                fwd_row(t0 + i, hs, q + i * ldq, k, v, ldkv, out + i * ldo, lse + i, scale);
    }
}

/* ---- backward ------------------------------------------------------------------------ */

/* dst[j] (rows ldd apart, j < nj) += mul * sum_{i < nq} w[j * QB + i] * x[i * ldx + :hs]:
 * the products that contract over queries (dV = P^T dO, dK = dS^T Q), in row layout:
 * 4 keys x NC vectors of the head dim (from d0) in registers, one pass over the rows. */
static inline __attribute__((always_inline)) void
rows_update_nc(float *dst, int64_t ldd, int64_t nj, const float *w, const float *x, int64_t ldx,
               int64_t nq, int64_t d0, int64_t hs, float mul, const int NC)
{
    int64_t left[UPD]; /* floats of the head dim from vector c on */
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++)
        left[c] = hs - d0 - L * c;
    for (int64_t jb = 0; jb < nj; jb += 4) {
        vf acc[4][UPD];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++)
                acc[j][c] = vf_zero();
        for (int64_t i = 0; i < nq; i++) {
            vf xv[UPD];
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++)
                xv[c] = vf_load_n(x + i * ldx + d0 + L * c, left[c]);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                vf b = vf_bcast(w + (jb + j) * QB + i);
#pragma GCC unroll 4
                for (int c = 0; c < NC; c++)
                    acc[j][c] = vf_fma(b, xv[c], acc[j][c]);
            }
        }
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            if (jb + j >= nj)
                break;
            float *dr = dst + (jb + j) * ldd + d0;
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++)
                vf_store_n(dr + L * c, left[c],
                           vf_fma(acc[j][c], vf_set1(mul), vf_load_n(dr + L * c, left[c])));
        }
    }
}

/* NC = the vectors left in the head dim, at most UPD (a constant at each call) */
#define NC_(n) ((n) < UPD ? (n) : UPD)
static void rows_update(float *dst, int64_t ldd, int64_t nj, const float *w, const float *x,
                        int64_t ldx, int64_t nq, int64_t hs, float mul)
{
    for (int64_t d0 = 0; d0 < hs; d0 += UPD * L) {
        int64_t nc = (hs - d0 + L - 1) / L;
        if (nc >= UPD)
            rows_update_nc(dst, ldd, nj, w, x, ldx, nq, d0, hs, mul, UPD);
        else if (nc == 3)
            rows_update_nc(dst, ldd, nj, w, x, ldx, nq, d0, hs, mul, NC_(3));
        else if (nc == 2)
            rows_update_nc(dst, ldd, nj, w, x, ldx, nq, d0, hs, mul, NC_(2));
        else
            rows_update_nc(dst, ldd, nj, w, x, ldx, nq, d0, hs, mul, 1);
    }
}

/* dot(a, b) over n floats */
static inline float dot_row(const float *a, const float *b, int64_t n)
{
    vf acc = vf_zero();
    for (int64_t d = 0; d < n; d += L)
        acc = vf_fma(vf_load_n(a + d, n - d), vf_load_n(b + d, n - d), acc);
    return vf_hsum(acc);
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
    int64_t hsl = (hs + L - 1) / L * L;
    load_t(qt, q + i0 * ld, ld, nq, hs, scale);
    load_t(dot, dout + i0 * ldo, ldo, nq, hs, 1.0f);
    for (int64_t i = 0; i < hsl * QB; i += L)
        vf_store(dqt + i, vf_zero());
    for (int64_t i = 0; i < QB; i++) /* D_i = dO_i . out_i = sum_j P_ij dP_ij */
        db[i] = i < nq ? dot_row(dout + (i0 + i) * ldo, out + (i0 + i) * ldo, hs) : 0.0f;
    vf lv[QV], Dv[QV];
    vi pos[QV];
    lane_positions(pos, i0);
#pragma GCC unroll 2
    for (int g = 0; g < QV; g++) {
        lv[g] = vf_load_n(lse + i0 + L * g, nq - L * g);
        Dv[g] = vf_load(db + L * g);
    }
    const int64_t nkeys = i0 + nq;
    for (int64_t j0 = 0; j0 < nkeys; j0 += KG) {
        const float *kr[KG], *vr[KG];
        group_rows(kr, k, ld, j0, nkeys);
        group_rows(vr, v, ld, j0, nkeys);
        int64_t nj = nkeys - j0 < KG ? nkeys - j0 : KG;
        vf s[KG][QV];
        block_dots(s, qt, kr, hs);
        int diag = j0 + KG - 1 > i0;
#pragma GCC unroll 16
        for (int j = 0; j < KG; j++)
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++) {
                vf p = vf_exp(vf_sub(s[j][g], lv[g]));
                if (diag)
                    p = vf_select(after_mask(pos[g], j0 + j), vf_zero(), p);
                vf_store(pb + j * QB + L * g, p);
            }
        block_dots(s, dot, vr, hs); /* dP */
#pragma GCC unroll 16
        for (int j = 0; j < KG; j++)
#pragma GCC unroll 2
            for (int g = 0; g < QV; g++) {
                s[j][g] = vf_mul(vf_load(pb + j * QB + L * g), vf_sub(s[j][g], Dv[g]));
                vf_store(dsb + j * QB + L * g, s[j][g]);
            }
        block_axpy(dqt, (const vf(*)[QV])s, kr, hs);
        rows_update(dv + j0 * ldd, ldd, nj, pb, dout + i0 * ldo, ldo, nq, hs, 1.0f);
        rows_update(dk + j0 * ldd, ldd, nj, dsb, q + i0 * ld, ld, nq, hs, scale);
    }
    vf sc[QV];
#pragma GCC unroll 2
    for (int g = 0; g < QV; g++)
        sc[g] = vf_set1(scale);
    store_t(dq + i0 * ldd, ldd, dqt, nq, hs, sc, 1);
}

static void attn_bwd(int64_t T, int64_t hs, const float *q, const float *k, const float *v,
                     int64_t ld, const float *out, const float *dout, int64_t ldo,
                     const float *lse, float *dq, float *dk, float *dv, int64_t ldd, float scale,
                     float *scratch)
{
    (void)scratch; /* the block buffers live on the stack (<= 100 KB with AVX-512) */
    for (int64_t i0 = 0; i0 < T; i0 += QB)
        bwd_block(i0, T - i0 < QB ? T - i0 : QB, hs, q, k, v, ld, out, dout, ldo, lse, dq, dk,
                  dv, ldd, scale);
}

void VEC_ISA_NAME(attn_fill)(parlm_kernels *k)
{
    k->attn_fwd = attn_fwd;
    k->attn_bwd = attn_bwd;
}
