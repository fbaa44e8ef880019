/* simd/common/eltwise.c — residual add, bias, GELU, layernorm and softmax, forward and
 * backward (backward accumulates), written once over the per-ISA vector layer "vec.h" and
 * compiled once per ISA (simd/local.am); contracts in simd/kernels.h. Tails take one
 * partial-vector step (masked on x86, a padded copy on NEON).
 * The one idea: GELU goes through 1 + tanh(u) = 2 / (1 + exp(-2u)), so everything
 * transcendental is vf_exp, and the cancellation of 1 + tanh(u) for negative u is avoided. */
#include <math.h>

#include "vec.h"

#include "../kernels.h"

void VEC_ISA_NAME(eltwise_fill)(parlm_kernels *k);

#define L VF_LANES
#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_CUBIC 0.044715f
#define LN_EPS 1e-5f

/* u = sqrt(2/pi) (x + 0.044715 x^3) */
static inline vf gelu_arg(vf x)
{
    vf inner = vf_fma(vf_set1(GELU_CUBIC), vf_mul(x, x), vf_set1(1.0f));
    return vf_mul(vf_mul(vf_set1(GELU_SCALE), x), inner);
}

/* gelu(x) = 0.5 x (1 + tanh u) = x / (1 + exp(-2u)). x is clamped below at -30 (gelu is
 * -0 in float there) so that x = -inf gives -0 / inf = -0 rather than -inf / inf = NaN.
 * Measured max relative error of 1 / (1 + exp(-2u)) = (1 + tanh u) / 2 against double,
 * over every float u in [-44, 44]: 1.92e-7 (3.2 ulp: the exp error plus the roundings
 * of the add and the division). */
static inline vf gelu_v(vf x)
{
    vf xc = vf_max(vf_set1(-30.0f), x);
    vf e = vf_exp(vf_mul(vf_set1(-2.0f), gelu_arg(xc)));
    return vf_div(xc, vf_add(vf_set1(1.0f), e));
}

/* gelu'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) u', t = tanh u. With s = 1 / (1 + e),
 * e = exp(-2u): 0.5 (1 + t) = s, 1 - t^2 = 4 s (1 - s) and 1 - s = e s, so
 * gelu'(x) = s + 2 x u' s (e s). Outside [-10, 10] gelu' is 0 or 1 to float precision;
 * clamping there keeps e finite (|2u| <= 87.4), so +-inf give 1 and 0, not NaN. */
static inline vf gelu_grad_v(vf x)
{
    x = vf_max(vf_set1(-10.0f), x);
    x = vf_min(vf_set1(10.0f), x);
    vf e = vf_exp(vf_mul(vf_set1(-2.0f), gelu_arg(x)));
    vf s = vf_div(vf_set1(1.0f), vf_add(vf_set1(1.0f), e));
    vf du = vf_mul(vf_set1(GELU_SCALE),
                   vf_fma(vf_set1(3.0f * GELU_CUBIC), vf_mul(x, x), vf_set1(1.0f)));
    vf one_minus_s = vf_mul(e, s);
    vf k = vf_mul(vf_mul(vf_add(x, x), du), s);
    return vf_fma(k, one_minus_s, s);
}

/* ---- residual add and bias ---------------------------------------------------- */

/* out (n) = a + b; out may be a or b */
static void add(float *out, const float *a, const float *b, int64_t n)
{
    int64_t i = 0;
    for (; i + 2 * L <= n; i += 2 * L) {
        vf s0 = vf_add(vf_load(a + i), vf_load(b + i));
        vf s1 = vf_add(vf_load(a + i + L), vf_load(b + i + L));
        vf_store(out + i, s0);
        vf_store(out + i + L, s1);
    }
    for (; i + L <= n; i += L)
        vf_store(out + i, vf_add(vf_load(a + i), vf_load(b + i)));
    if (i < n)
        vf_store_n(out + i, n - i, vf_add(vf_load_n(a + i, n - i), vf_load_n(b + i, n - i)));
}

/* out (rows, c) += bias (c) */
static void bias_fwd(float *out, const float *bias, int64_t rows, int64_t c)
{
    for (int64_t r = 0; r < rows; r++)
        add(out + r * c, out + r * c, bias, c);
}

/* Sums rows of dout (rows, c) into w <= 8 vectors of columns starting at column j,
 * starting from dbias itself: the additions happen in the scalar reference's order. */
static inline void bias_bwd_block(float *dbias, const float *dout, int64_t rows, int64_t c,
                                  int64_t j, int w)
{
    vf acc[8];
    for (int v = 0; v < w; v++)
        acc[v] = vf_load(dbias + j + L * v);
    for (int64_t r = 0; r < rows; r++) {
        const float *d = dout + r * c + j;
        for (int v = 0; v < w; v++)
            acc[v] = vf_add(acc[v], vf_load(d + L * v));
    }
    for (int v = 0; v < w; v++)
        vf_store(dbias + j + L * v, acc[v]);
}

/* dbias (c) += sum over rows of dout (rows, c); column blocks, rows innermost */
static void bias_bwd(float *dbias, const float *dout, int64_t rows, int64_t c)
{
    int64_t j = 0;
    for (; j + 8 * L <= c; j += 8 * L)
        bias_bwd_block(dbias, dout, rows, c, j, 8);
    for (; j + L <= c; j += L)
        bias_bwd_block(dbias, dout, rows, c, j, 1);
    if (j < c) {
        vf acc = vf_load_n(dbias + j, c - j);
        for (int64_t r = 0; r < rows; r++)
            acc = vf_add(acc, vf_load_n(dout + r * c + j, c - j));
        vf_store_n(dbias + j, c - j, acc);
    }
}

/* ---- GELU ----------------------------------------------------------------------- */

/* out (n) = gelu(x); out may be x */
static void gelu_fwd(float *out, const float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + L <= n; i += L)
        vf_store(out + i, gelu_v(vf_load(x + i)));
    if (i < n)
        vf_store_n(out + i, n - i, gelu_v(vf_load_n(x + i, n - i)));
}

/* dx (n) += gelu'(x) * dout */
static void gelu_bwd(float *dx, const float *x, const float *dout, int64_t n)
{
    int64_t i = 0;
    for (; i + L <= n; i += L)
        vf_store(dx + i, vf_fma(gelu_grad_v(vf_load(x + i)), vf_load(dout + i), vf_load(dx + i)));
    if (i < n) {
        int64_t m = n - i;
        vf g = gelu_grad_v(vf_load_n(x + i, m));
        vf_store_n(dx + i, m, vf_fma(g, vf_load_n(dout + i, m), vf_load_n(dx + i, m)));
    }
}

/* ---- layernorm ------------------------------------------------------------------- */

/* sum of x[0:c] (4 accumulators, fixed order) */
static inline float row_sum(const float *x, int64_t c)
{
    vf a0 = vf_zero(), a1 = a0, a2 = a0, a3 = a0;
    int64_t j = 0;
    for (; j + 4 * L <= c; j += 4 * L) {
        a0 = vf_add(a0, vf_load(x + j));
        a1 = vf_add(a1, vf_load(x + j + L));
        a2 = vf_add(a2, vf_load(x + j + 2 * L));
        a3 = vf_add(a3, vf_load(x + j + 3 * L));
    }
    for (; j + L <= c; j += L)
        a0 = vf_add(a0, vf_load(x + j));
    if (j < c)
        a1 = vf_add(a1, vf_load_n(x + j, c - j));
    return vf_hsum(vf_add(vf_add(a0, a1), vf_add(a2, a3)));
}

/* sum of (x[0:c] - m)^2 */
static inline float row_sqdev(const float *x, float mean, int64_t c)
{
    vf m = vf_set1(mean);
    vf a0 = vf_zero(), a1 = a0, a2 = a0, a3 = a0;
    int64_t j = 0;
    for (; j + 4 * L <= c; j += 4 * L) {
        vf d0 = vf_sub(vf_load(x + j), m);
        vf d1 = vf_sub(vf_load(x + j + L), m);
        vf d2 = vf_sub(vf_load(x + j + 2 * L), m);
        vf d3 = vf_sub(vf_load(x + j + 3 * L), m);
        a0 = vf_fma(d0, d0, a0);
        a1 = vf_fma(d1, d1, a1);
        a2 = vf_fma(d2, d2, a2);
        a3 = vf_fma(d3, d3, a3);
    }
    for (; j + L <= c; j += L) {
        vf d = vf_sub(vf_load(x + j), m);
        a0 = vf_fma(d, d, a0);
    }
    if (j < c) {
        /* padded lanes load `mean` so they add 0 */
        vf d = vf_sub(vf_load_n_fill(x + j, c - j, mean), m);
        a1 = vf_fma(d, d, a1);
    }
    return vf_hsum(vf_add(vf_add(a0, a1), vf_add(a2, a3)));
}

/* out (rows, c) = (x - mean) * rstd * w + b per row; mean, rstd (rows) saved.
 * Two passes for the variance (as the reference): no cancellation for large means.
 * out may be x: each block of x is read before the same block of out is written. */
static void layernorm_fwd(float *out, float *mean, float *rstd, const float *x,
                          const float *w, const float *b, int64_t rows, int64_t c)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float *o = out + r * c;
        float m = row_sum(xr, c) / (float)c;
        float v = row_sqdev(xr, m, c) / (float)c;
        float s = 1.0f / sqrtf(v + LN_EPS);
        vf vm = vf_set1(m), vs = vf_set1(s);
        int64_t j = 0;
        for (; j + L <= c; j += L) {
            vf xhat = vf_mul(vf_sub(vf_load(xr + j), vm), vs);
            vf_store(o + j, vf_fma(xhat, vf_load(w + j), vf_load(b + j)));
        }
        if (j < c) {
            int64_t n = c - j;
            vf xhat = vf_mul(vf_sub(vf_load_n(xr + j, n), vm), vs);
            vf_store_n(o + j, n, vf_fma(xhat, vf_load_n(w + j, n), vf_load_n(b + j, n)));
        }
        mean[r] = m;
        rstd[r] = s;
    }
}

/* One row of layernorm backward: with xhat = (x - mean) rstd and dn = w * dout,
 * dx += rstd (dn - mean(dn) - xhat mean(dn xhat)); dw += xhat dout; db += dout. */
static inline void layernorm_bwd_step(float *dxr, float *dw, float *db, const float *dr,
                                      const float *xr, const float *w, int64_t n, vf vm, vf vs,
                                      vf va, vf vb)
{
    vf xh = vf_mul(vf_sub(vf_load_n(xr, n), vm), vs);
    vf d = vf_load_n(dr, n);
    vf dn = vf_mul(vf_load_n(w, n), d);
    vf_store_n(db, n, vf_add(vf_load_n(db, n), d));
    vf_store_n(dw, n, vf_fma(xh, d, vf_load_n(dw, n)));
    vf g = vf_sub(vf_sub(dn, va), vf_mul(xh, vb));
    vf_store_n(dxr, n, vf_fma(vs, g, vf_load_n(dxr, n)));
}

static void layernorm_bwd(float *dx, float *dw, float *db, const float *dout, const float *x,
                          const float *w, const float *mean, const float *rstd, int64_t rows,
                          int64_t c)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c, *dr = dout + r * c;
        float *dxr = dx + r * c;
        vf vm = vf_set1(mean[r]), vs = vf_set1(rstd[r]);
        vf a0 = vf_zero(), a1 = a0, b0 = a0, b1 = a0;
        int64_t j = 0;
        for (; j + 2 * L <= c; j += 2 * L) {
            vf xh0 = vf_mul(vf_sub(vf_load(xr + j), vm), vs);
            vf xh1 = vf_mul(vf_sub(vf_load(xr + j + L), vm), vs);
            vf dn0 = vf_mul(vf_load(w + j), vf_load(dr + j));
            vf dn1 = vf_mul(vf_load(w + j + L), vf_load(dr + j + L));
            a0 = vf_add(a0, dn0);
            a1 = vf_add(a1, dn1);
            b0 = vf_fma(dn0, xh0, b0);
            b1 = vf_fma(dn1, xh1, b1);
        }
        for (; j < c; j += L) {
            /* padded lanes: dn = 0, so xh's value there does not matter */
            int64_t n = c - j;
            vf xh = vf_mul(vf_sub(vf_load_n(xr + j, n), vm), vs);
            vf dn = vf_mul(vf_load_n(w + j, n), vf_load_n(dr + j, n));
            a0 = vf_add(a0, dn);
            b0 = vf_fma(dn, xh, b0);
        }
        float dn_mean = vf_hsum(vf_add(a0, a1)) / (float)c;
        float dnx_mean = vf_hsum(vf_add(b0, b1)) / (float)c;
        vf va = vf_set1(dn_mean), vb = vf_set1(dnx_mean);
        for (j = 0; j + L <= c; j += L) {
            vf xh = vf_mul(vf_sub(vf_load(xr + j), vm), vs);
            vf d = vf_load(dr + j);
            vf dn = vf_mul(vf_load(w + j), d);
            vf_store(db + j, vf_add(vf_load(db + j), d));
            vf_store(dw + j, vf_fma(xh, d, vf_load(dw + j)));
            vf g = vf_sub(vf_sub(dn, va), vf_mul(xh, vb));
            vf_store(dxr + j, vf_fma(vs, g, vf_load(dxr + j)));
        }
        if (j < c)
            layernorm_bwd_step(dxr + j, dw + j, db + j, dr + j, xr + j, w + j, c - j, vm, vs, va,
                               vb);
    }
}

/* ---- softmax ---------------------------------------------------------------------- */

/* out (rows, c) = exp(x - max) / sum per row; out may be x. A row that is all -inf
 * (fully masked) gives zeros, as in the reference. Padded tail lanes hold -inf, whose
 * exp is 0. */
static void softmax_fwd(float *out, const float *x, int64_t rows, int64_t c)
{
    const vf ninf = vf_set1(-INFINITY);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float *o = out + r * c;
        vf m0 = ninf, m1 = ninf;
        int64_t j = 0;
        for (; j + 2 * L <= c; j += 2 * L) {
            m0 = vf_max(m0, vf_load(xr + j));
            m1 = vf_max(m1, vf_load(xr + j + L));
        }
        for (; j < c; j += L)
            m0 = vf_max(m0, vf_load_n_fill(xr + j, c - j, -INFINITY));
        float mx = vf_hmax(vf_max(m0, m1));
        if (mx == -INFINITY) {
            for (j = 0; j < c; j += L)
                vf_store_n(o + j, c - j, vf_zero());
            continue;
        }
        vf vmx = vf_set1(mx), s0 = vf_zero(), s1 = s0;
        for (j = 0; j + 2 * L <= c; j += 2 * L) {
            vf e0 = vf_exp(vf_sub(vf_load(xr + j), vmx));
            vf e1 = vf_exp(vf_sub(vf_load(xr + j + L), vmx));
            vf_store(o + j, e0);
            vf_store(o + j + L, e1);
            s0 = vf_add(s0, e0);
            s1 = vf_add(s1, e1);
        }
        for (; j < c; j += L) {
            vf e = vf_exp(vf_sub(vf_load_n_fill(xr + j, c - j, -INFINITY), vmx));
            vf_store_n(o + j, c - j, e);
            s0 = vf_add(s0, e);
        }
        vf inv = vf_set1(1.0f / vf_hsum(vf_add(s0, s1)));
        for (j = 0; j + L <= c; j += L)
            vf_store(o + j, vf_mul(vf_load(o + j), inv));
        if (j < c)
            vf_store_n(o + j, c - j, vf_mul(vf_load_n(o + j, c - j), inv));
    }
}

/* dx (rows, c) += y * (dy - dot(y, dy)) per row */
static void softmax_bwd(float *dx, const float *y, const float *dy, int64_t rows, int64_t c)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y + r * c, *dyr = dy + r * c;
        float *d = dx + r * c;
        vf a0 = vf_zero(), a1 = a0;
        int64_t j = 0;
        for (; j + 2 * L <= c; j += 2 * L) {
            a0 = vf_fma(vf_load(yr + j), vf_load(dyr + j), a0);
            a1 = vf_fma(vf_load(yr + j + L), vf_load(dyr + j + L), a1);
        }
        for (; j < c; j += L)
            a0 = vf_fma(vf_load_n(yr + j, c - j), vf_load_n(dyr + j, c - j), a0);
        vf dot = vf_set1(vf_hsum(vf_add(a0, a1)));
        for (j = 0; j + L <= c; j += L) {
            vf g = vf_mul(vf_load(yr + j), vf_sub(vf_load(dyr + j), dot));
            vf_store(d + j, vf_add(vf_load(d + j), g));
        }
        if (j < c) {
            int64_t n = c - j;
            vf g = vf_mul(vf_load_n(yr + j, n), vf_sub(vf_load_n(dyr + j, n), dot));
            vf_store_n(d + j, n, vf_add(vf_load_n(d + j, n), g));
        }
    }
}

void VEC_ISA_NAME(eltwise_fill)(parlm_kernels *k)
{
    k->add = add;
    k->bias_fwd = bias_fwd;
    k->bias_bwd = bias_bwd;
    k->gelu_fwd = gelu_fwd;
    k->gelu_bwd = gelu_bwd;
    k->layernorm_fwd = layernorm_fwd;
    k->layernorm_bwd = layernorm_bwd;
    k->softmax_fwd = softmax_fwd;
    k->softmax_bwd = softmax_bwd;
}
