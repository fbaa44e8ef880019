/* simd/avx512/eltwise.c — AVX-512 residual add, bias, GELU, layernorm and softmax, forward
 * and backward (backward accumulates); mirrors simd/avx2/eltwise.c; tails use k-masks.
 * The one idea: exp = 2^n p(r) with |r| <= ln2/2 and vscalefps applying 2^n (correct
 * subnormals, inf and 0), and GELU through 1 + tanh(u) = 2 / (1 + exp(-2u)), which
 * avoids the cancellation of 1 + tanh(u) for negative u. */
#include <immintrin.h>
#include <math.h>

#include "avx512.h"

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_CUBIC 0.044715f
#define LN_EPS 1e-5f

/* mask of the first n < 16 lanes */
static inline __mmask16 tail_mask(int64_t n) { return (__mmask16)((1u << n) - 1u); }

/* exp(x), all lanes. exp(x) = 2^n * exp(r), n = round(x / ln2), r = x - n ln2 with ln2
 * split in two (Cody-Waite; FMA keeps n * ln2_hi exact). exp(r) on [-ln2/2, ln2/2] is
 * 1 + r + r^2 q(r), q of degree 4 fitted by us (minimax on relative error, Lawson
 * iterations; approximation error 3.1e-9, below float rounding).
 * Measured max relative error against double exp over every float in [-87.3, 88.7]
 * (the normal-result range): 1.19e-7 (1.27 ulp). Below -87.3 results are subnormal (the
 * absolute error stays < 1e-45), below -110 and at -inf they are exactly 0; above
 * 88.72 and at +inf they are +inf; NaN stays NaN. */
static inline __m512 exp_ps(__m512 x)
{
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 ln2_hi = _mm512_set1_ps(0.693145751953125f);
    const __m512 ln2_lo = _mm512_set1_ps(1.428606765330187e-06f);
    /* operand order keeps NaN: vmaxps/vminps return the second operand if either is NaN */
    x = _mm512_max_ps(_mm512_set1_ps(-110.0f), x);
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, ln2_hi, x);
    r = _mm512_fnmadd_ps(n, ln2_lo, r);
    __m512 q = _mm512_set1_ps(1.381461043e-03f);
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(8.368710056e-03f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(4.166838899e-02f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(1.666652113e-01f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(4.999999404e-01f));
    __m512 p = _mm512_fmadd_ps(_mm512_mul_ps(q, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

/* u = sqrt(2/pi) (x + 0.044715 x^3) */
static inline __m512 gelu_arg(__m512 x)
{
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 inner = _mm512_fmadd_ps(_mm512_set1_ps(GELU_CUBIC), x2, _mm512_set1_ps(1.0f));
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(GELU_SCALE), x), inner);
}

/* gelu(x) = 0.5 x (1 + tanh u) = x / (1 + exp(-2u)). x is clamped below at -30 (gelu is
 * -0 in float there) so that x = -inf gives -0 / inf = -0 rather than -inf / inf = NaN.
 * Measured max relative error of 1 / (1 + exp(-2u)) = (1 + tanh u) / 2 against double,
 * over every float u in [-44, 44]: 1.92e-7 (3.2 ulp: the exp error plus the roundings
 * of the add and the division). */
static inline __m512 gelu_ps(__m512 x)
{
    __m512 xc = _mm512_max_ps(_mm512_set1_ps(-30.0f), x);
    __m512 e = exp_ps(_mm512_mul_ps(_mm512_set1_ps(-2.0f), gelu_arg(xc)));
    return _mm512_div_ps(xc, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

/* gelu'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) u', t = tanh u. With s = 1 / (1 + e),
 * e = exp(-2u): 0.5 (1 + t) = s, 1 - t^2 = 4 s (1 - s) and 1 - s = e s, so
 * gelu'(x) = s + 2 x u' s (e s). Outside [-10, 10] gelu' is 0 or 1 to float precision;
 * clamping there keeps e finite (|2u| <= 87.4), so +-inf give 1 and 0, not NaN. */
static inline __m512 gelu_grad_ps(__m512 x)
{
    x = _mm512_max_ps(_mm512_set1_ps(-10.0f), x);
    x = _mm512_min_ps(_mm512_set1_ps(10.0f), x);
    __m512 e = exp_ps(_mm512_mul_ps(_mm512_set1_ps(-2.0f), gelu_arg(x)));
    __m512 s = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 du = _mm512_mul_ps(_mm512_set1_ps(GELU_SCALE),
                              _mm512_fmadd_ps(_mm512_set1_ps(3.0f * GELU_CUBIC), x2,
                                              _mm512_set1_ps(1.0f)));
    __m512 one_minus_s = _mm512_mul_ps(e, s);
    __m512 k = _mm512_mul_ps(_mm512_mul_ps(_mm512_add_ps(x, x), du), s);
    return _mm512_fmadd_ps(k, one_minus_s, s);
}

/* ---- residual add and bias ---------------------------------------------------- */

/* out (n) = a + b; out may be a or b */
static void add(float *out, const float *a, const float *b, int64_t n)
{
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 s0 = _mm512_add_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        __m512 s1 = _mm512_add_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
        _mm512_storeu_ps(out + i, s0);
        _mm512_storeu_ps(out + i + 16, s1);
    }
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, _mm512_add_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(out + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, a + i),
                                                        _mm512_maskz_loadu_ps(m, b + i)));
    }
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
    __m512 acc[8];
    for (int v = 0; v < w; v++)
        acc[v] = _mm512_loadu_ps(dbias + j + 16 * v);
    for (int64_t r = 0; r < rows; r++) {
        const float *d = dout + r * c + j;
        for (int v = 0; v < w; v++)
            acc[v] = _mm512_add_ps(acc[v], _mm512_loadu_ps(d + 16 * v));
    }
    for (int v = 0; v < w; v++)
        _mm512_storeu_ps(dbias + j + 16 * v, acc[v]);
}

/* dbias (c) += sum over rows of dout (rows, c); column blocks, rows innermost */
static void bias_bwd(float *dbias, const float *dout, int64_t rows, int64_t c)
{
    int64_t j = 0;
    for (; j + 128 <= c; j += 128)
        bias_bwd_block(dbias, dout, rows, c, j, 8);
    for (; j + 16 <= c; j += 16)
        bias_bwd_block(dbias, dout, rows, c, j, 1);
    if (j < c) {
        __mmask16 m = tail_mask(c - j);
        __m512 acc = _mm512_maskz_loadu_ps(m, dbias + j);
        for (int64_t r = 0; r < rows; r++)
            acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(m, dout + r * c + j));
        _mm512_mask_storeu_ps(dbias + j, m, acc);
    }
}

/* ---- GELU ----------------------------------------------------------------------- */

/* out (n) = gelu(x); out may be x */
static void gelu_fwd(float *out, const float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, gelu_ps(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(out + i, m, gelu_ps(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* dx (n) += gelu'(x) * dout */
static void gelu_bwd(float *dx, const float *x, const float *dout, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 g = gelu_grad_ps(_mm512_loadu_ps(x + i));
        _mm512_storeu_ps(dx + i,
                         _mm512_fmadd_ps(g, _mm512_loadu_ps(dout + i), _mm512_loadu_ps(dx + i)));
    }
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        __m512 g = gelu_grad_ps(_mm512_maskz_loadu_ps(m, x + i));
        _mm512_mask_storeu_ps(dx + i, m,
                              _mm512_fmadd_ps(g, _mm512_maskz_loadu_ps(m, dout + i),
                                              _mm512_maskz_loadu_ps(m, dx + i)));
    }
}

/* ---- layernorm ------------------------------------------------------------------- */

/* sum of x[0:c] (4 accumulators, fixed order) */
static inline float row_sum(const float *x, int64_t c)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t j = 0;
    for (; j + 64 <= c; j += 64) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + j));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(x + j + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(x + j + 32));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(x + j + 48));
    }
    for (; j + 16 <= c; j += 16)
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + j));
    if (j < c)
        a1 = _mm512_add_ps(a1, _mm512_maskz_loadu_ps(tail_mask(c - j), x + j));
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* sum of (x[0:c] - m)^2 */
static inline float row_sqdev(const float *x, float mean, int64_t c)
{
    __m512 m = _mm512_set1_ps(mean);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t j = 0;
    for (; j + 64 <= c; j += 64) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + j), m);
        __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(x + j + 16), m);
        __m512 d2 = _mm512_sub_ps(_mm512_loadu_ps(x + j + 32), m);
        __m512 d3 = _mm512_sub_ps(_mm512_loadu_ps(x + j + 48), m);
        a0 = _mm512_fmadd_ps(d0, d0, a0);
        a1 = _mm512_fmadd_ps(d1, d1, a1);
        a2 = _mm512_fmadd_ps(d2, d2, a2);
        a3 = _mm512_fmadd_ps(d3, d3, a3);
    }
    for (; j + 16 <= c; j += 16) {
        __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + j), m);
        a0 = _mm512_fmadd_ps(d, d, a0);
    }
    if (j < c) {
        __mmask16 k = tail_mask(c - j);
        __m512 d = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, x + j), m);
        a1 = _mm512_fmadd_ps(d, d, a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
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
        __m512 vm = _mm512_set1_ps(m), vs = _mm512_set1_ps(s);
        int64_t j = 0;
        for (; j + 16 <= c; j += 16) {
            __m512 xhat = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(xr + j), vm), vs);
            _mm512_storeu_ps(o + j, _mm512_fmadd_ps(xhat, _mm512_loadu_ps(w + j),
                                                    _mm512_loadu_ps(b + j)));
        }
        if (j < c) {
            __mmask16 k = tail_mask(c - j);
            __m512 xhat = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, xr + j), vm), vs);
            _mm512_mask_storeu_ps(o + j, k,
                                  _mm512_fmadd_ps(xhat, _mm512_maskz_loadu_ps(k, w + j),
                                                  _mm512_maskz_loadu_ps(k, b + j)));
        }
        mean[r] = m;
        rstd[r] = s;
    }
}

/* One row of layernorm backward: with xhat = (x - mean) rstd and dn = w * dout,
 * dx += rstd (dn - mean(dn) - xhat mean(dn xhat)); dw += xhat dout; db += dout. */
static void layernorm_bwd(float *dx, float *dw, float *db, const float *dout, const float *x,
                          const float *w, const float *mean, const float *rstd, int64_t rows,
                          int64_t c)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c, *dr = dout + r * c;
        float *dxr = dx + r * c;
        __m512 vm = _mm512_set1_ps(mean[r]), vs = _mm512_set1_ps(rstd[r]);
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
        int64_t j = 0;
        for (; j + 32 <= c; j += 32) {
            __m512 xh0 = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(xr + j), vm), vs);
            __m512 xh1 = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(xr + j + 16), vm), vs);
            __m512 dn0 = _mm512_mul_ps(_mm512_loadu_ps(w + j), _mm512_loadu_ps(dr + j));
            __m512 dn1 = _mm512_mul_ps(_mm512_loadu_ps(w + j + 16), _mm512_loadu_ps(dr + j + 16));
            a0 = _mm512_add_ps(a0, dn0);
            a1 = _mm512_add_ps(a1, dn1);
            b0 = _mm512_fmadd_ps(dn0, xh0, b0);
            b1 = _mm512_fmadd_ps(dn1, xh1, b1);
        }
        for (; j < c; j += 16) {
            __mmask16 k = c - j >= 16 ? (__mmask16)0xffff : tail_mask(c - j);
            __m512 xh = _mm512_maskz_mul_ps(
                k, _mm512_sub_ps(_mm512_maskz_loadu_ps(k, xr + j), vm), vs);
            __m512 dn = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, w + j),
                                      _mm512_maskz_loadu_ps(k, dr + j));
            a0 = _mm512_add_ps(a0, dn);
            b0 = _mm512_fmadd_ps(dn, xh, b0);
        }
        float dn_mean = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) / (float)c;
        float dnx_mean = _mm512_reduce_add_ps(_mm512_add_ps(b0, b1)) / (float)c;
        __m512 va = _mm512_set1_ps(dn_mean), vb = _mm512_set1_ps(dnx_mean);
        for (j = 0; j < c; j += 16) {
            __mmask16 k = c - j >= 16 ? (__mmask16)0xffff : tail_mask(c - j);
            __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, xr + j), vm), vs);
            __m512 d = _mm512_maskz_loadu_ps(k, dr + j);
            __m512 dn = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, w + j), d);
            _mm512_mask_storeu_ps(db + j, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, db + j), d));
            _mm512_mask_storeu_ps(dw + j, k,
                                  _mm512_fmadd_ps(xh, d, _mm512_maskz_loadu_ps(k, dw + j)));
            __m512 g = _mm512_sub_ps(_mm512_sub_ps(dn, va), _mm512_mul_ps(xh, vb));
            _mm512_mask_storeu_ps(dxr + j, k,
                                  _mm512_fmadd_ps(vs, g, _mm512_maskz_loadu_ps(k, dxr + j)));
        }
    }
}

/* ---- softmax ---------------------------------------------------------------------- */

/* out (rows, c) = exp(x - max) / sum per row; out may be x. A row that is all -inf
 * (fully masked) gives zeros, as in the reference. */
static void softmax_fwd(float *out, const float *x, int64_t rows, int64_t c)
{
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float *o = out + r * c;
        __m512 m0 = ninf, m1 = ninf;
        int64_t j = 0;
        for (; j + 32 <= c; j += 32) {
            m0 = _mm512_max_ps(m0, _mm512_loadu_ps(xr + j));
            m1 = _mm512_max_ps(m1, _mm512_loadu_ps(xr + j + 16));
        }
        for (; j < c; j += 16) {
            __mmask16 k = c - j >= 16 ? (__mmask16)0xffff : tail_mask(c - j);
            m0 = _mm512_max_ps(m0, _mm512_mask_loadu_ps(ninf, k, xr + j));
        }
        float mx = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
        if (mx == -INFINITY) {
            for (j = 0; j < c; j += 16) {
                __mmask16 k = c - j >= 16 ? (__mmask16)0xffff : tail_mask(c - j);
                _mm512_mask_storeu_ps(o + j, k, _mm512_setzero_ps());
            }
            continue;
        }
        __m512 vmx = _mm512_set1_ps(mx), s0 = _mm512_setzero_ps(), s1 = s0;
        for (j = 0; j + 32 <= c; j += 32) {
            __m512 e0 = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(xr + j), vmx));
            __m512 e1 = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(xr + j + 16), vmx));
            _mm512_storeu_ps(o + j, e0);
            _mm512_storeu_ps(o + j + 16, e1);
            s0 = _mm512_add_ps(s0, e0);
            s1 = _mm512_add_ps(s1, e1);
        }
        for (; j < c; j += 16) {
            __mmask16 k = c - j >= 16 ? (__mmask16)0xffff : tail_mask(c - j);
            __m512 e = exp_ps(_mm512_sub_ps(_mm512_mask_loadu_ps(ninf, k, xr + j), vmx));
            _mm512_mask_storeu_ps(o + j, k, e);
            s0 = _mm512_mask_add_ps(s0, k, s0, e);
        }
        __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)));
        for (j = 0; j + 16 <= c; j += 16)
            _mm512_storeu_ps(o + j, _mm512_mul_ps(_mm512_loadu_ps(o + j), inv));
        if (j < c) {
            __mmask16 k = tail_mask(c - j);
            _mm512_mask_storeu_ps(o + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, o + j), inv));
        }
    }
}

/* dx (rows, c) += y * (dy - dot(y, dy)) per row */
static void softmax_bwd(float *dx, const float *y, const float *dy, int64_t rows, int64_t c)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y + r * c, *dyr = dy + r * c;
        float *d = dx + r * c;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0;
        int64_t j = 0;
        for (; j + 32 <= c; j += 32) {
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(yr + j), _mm512_loadu_ps(dyr + j), a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(yr + j + 16), _mm512_loadu_ps(dyr + j + 16), a1);
        }
        for (; j < c; j += 16) {
            __mmask16 k = c - j >= 16 ? (__mmask16)0xffff : tail_mask(c - j);
            a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, yr + j), _mm512_maskz_loadu_ps(k, dyr + j),
                                 a0);
        }
        __m512 dot = _mm512_set1_ps(_mm512_reduce_add_ps(_mm512_add_ps(a0, a1)));
        for (j = 0; j < c; j += 16) {
            __mmask16 k = c - j >= 16 ? (__mmask16)0xffff : tail_mask(c - j);
            __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, yr + j),
                                     _mm512_sub_ps(_mm512_maskz_loadu_ps(k, dyr + j), dot));
            _mm512_mask_storeu_ps(d + j, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, d + j), g));
        }
    }
}

void parlm_avx512_eltwise_fill(parlm_kernels *k)
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
