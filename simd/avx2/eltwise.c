/* simd/avx2/eltwise.c — AVX2+FMA residual add, bias, GELU, layernorm and softmax, forward
 * and backward (backward accumulates); mirrors simd/avx512/eltwise.c; tails use vmaskmovps.
 * The one idea: exp = 2^n p(r) with |r| <= ln2/2 and 2^n applied as two exponent-field
 * multiplies 2^(n/2) 2^(n-n/2) (correct subnormals, inf and 0), and GELU through
 * 1 + tanh(u) = 2 / (1 + exp(-2u)), which avoids the cancellation of 1 + tanh(u), u < 0. */
#include <immintrin.h>
#include <math.h>

#include "avx2.h"

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_CUBIC 0.044715f
#define LN_EPS 1e-5f

/* lane mask (all-ones in lanes < n) for vmaskmovps; valid for 0 <= n <= 8 */
static const int32_t mask_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
static inline __m256i tail_mask(int64_t n)
{
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

/* exp(x), all lanes. exp(x) = 2^n * exp(r), n = round(x / ln2), r = x - n ln2 with ln2
 * split in two (Cody-Waite; FMA keeps n * ln2_hi exact). exp(r) on [-ln2/2, ln2/2] is
 * 1 + r + r^2 q(r), q of degree 4 fitted by us (minimax on relative error, Lawson
 * iterations; approximation error 3.1e-9, below float rounding). Same polynomial as
 * simd/avx512. Measured max relative error against double exp over every float in
 * [-87.3, 88.7] (the normal-result range): 1.19e-7 (1.27 ulp). Below -87.3 results are
 * subnormal (absolute error < 1e-45), below -110 and at -inf exactly 0; above 88.72
 * and at +inf +inf; NaN stays NaN. */
static inline __m256 exp_ps(__m256 x)
{
    const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
    const __m256 ln2_hi = _mm256_set1_ps(0.693145751953125f);
    const __m256 ln2_lo = _mm256_set1_ps(1.428606765330187e-06f);
    /* operand order keeps NaN: vmaxps/vminps return the second operand if either is NaN */
    x = _mm256_max_ps(_mm256_set1_ps(-110.0f), x);
    x = _mm256_min_ps(_mm256_set1_ps(89.0f), x);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, log2e),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, ln2_hi, x);
    r = _mm256_fnmadd_ps(n, ln2_lo, r);
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

/* u = sqrt(2/pi) (x + 0.044715 x^3) */
static inline __m256 gelu_arg(__m256 x)
{
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 inner = _mm256_fmadd_ps(_mm256_set1_ps(GELU_CUBIC), x2, _mm256_set1_ps(1.0f));
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(GELU_SCALE), x), inner);
}

/* gelu(x) = 0.5 x (1 + tanh u) = x / (1 + exp(-2u)); x clamped below at -30 (gelu is
 * -0 in float there) so x = -inf gives -0 / inf = -0, not NaN. Measured max relative
 * error of 1 / (1 + exp(-2u)) = (1 + tanh u) / 2 against double, over every float u in
 * [-44, 44]: 1.92e-7 (3.2 ulp). */
static inline __m256 gelu_ps(__m256 x)
{
    __m256 xc = _mm256_max_ps(_mm256_set1_ps(-30.0f), x);
    __m256 e = exp_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f), gelu_arg(xc)));
    return _mm256_div_ps(xc, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

/* gelu'(x) = s + 2 x u' s (e s) with e = exp(-2u), s = 1 / (1 + e) (derivation in
 * simd/avx512/eltwise.c); x clamped to [-10, 10] where gelu' is 0 or 1 in float. */
static inline __m256 gelu_grad_ps(__m256 x)
{
    x = _mm256_max_ps(_mm256_set1_ps(-10.0f), x);
    x = _mm256_min_ps(_mm256_set1_ps(10.0f), x);
    __m256 e = exp_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f), gelu_arg(x)));
    __m256 s = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 du = _mm256_mul_ps(_mm256_set1_ps(GELU_SCALE),
                              _mm256_fmadd_ps(_mm256_set1_ps(3.0f * GELU_CUBIC), x2,
                                              _mm256_set1_ps(1.0f)));
    __m256 one_minus_s = _mm256_mul_ps(e, s);
    __m256 k = _mm256_mul_ps(_mm256_mul_ps(_mm256_add_ps(x, x), du), s);
    return _mm256_fmadd_ps(k, one_minus_s, s);
}

/* ---- residual add and bias ---------------------------------------------------- */

/* out (n) = a + b; out may be a or b */
static void add(float *out, const float *a, const float *b, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 s0 = _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        __m256 s1 = _mm256_add_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
        _mm256_storeu_ps(out + i, s0);
        _mm256_storeu_ps(out + i + 8, s1);
    }
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    if (i < n) {
        __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(out + i, m, _mm256_add_ps(_mm256_maskload_ps(a + i, m),
                                                      _mm256_maskload_ps(b + i, m)));
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
    __m256 acc[8];
    for (int v = 0; v < w; v++)
        acc[v] = _mm256_loadu_ps(dbias + j + 8 * v);
    for (int64_t r = 0; r < rows; r++) {
        const float *d = dout + r * c + j;
        for (int v = 0; v < w; v++)
            acc[v] = _mm256_add_ps(acc[v], _mm256_loadu_ps(d + 8 * v));
    }
    for (int v = 0; v < w; v++)
        _mm256_storeu_ps(dbias + j + 8 * v, acc[v]);
}

/* dbias (c) += sum over rows of dout (rows, c); column blocks, rows innermost */
static void bias_bwd(float *dbias, const float *dout, int64_t rows, int64_t c)
{
    int64_t j = 0;
    for (; j + 64 <= c; j += 64)
        bias_bwd_block(dbias, dout, rows, c, j, 8);
    for (; j + 8 <= c; j += 8)
        bias_bwd_block(dbias, dout, rows, c, j, 1);
    if (j < c) {
        __m256i m = tail_mask(c - j);
        __m256 acc = _mm256_maskload_ps(dbias + j, m);
        for (int64_t r = 0; r < rows; r++)
            acc = _mm256_add_ps(acc, _mm256_maskload_ps(dout + r * c + j, m));
        _mm256_maskstore_ps(dbias + j, m, acc);
    }
}

/* ---- GELU ----------------------------------------------------------------------- */

/* out (n) = gelu(x); out may be x */
static void gelu_fwd(float *out, const float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, gelu_ps(_mm256_loadu_ps(x + i)));
    if (i < n) {
        __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(out + i, m, gelu_ps(_mm256_maskload_ps(x + i, m)));
    }
}

/* dx (n) += gelu'(x) * dout */
static void gelu_bwd(float *dx, const float *x, const float *dout, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = gelu_grad_ps(_mm256_loadu_ps(x + i));
        _mm256_storeu_ps(dx + i,
                         _mm256_fmadd_ps(g, _mm256_loadu_ps(dout + i), _mm256_loadu_ps(dx + i)));
    }
    if (i < n) {
        __m256i m = tail_mask(n - i);
        __m256 g = gelu_grad_ps(_mm256_maskload_ps(x + i, m));
        _mm256_maskstore_ps(dx + i, m,
                            _mm256_fmadd_ps(g, _mm256_maskload_ps(dout + i, m),
                                            _mm256_maskload_ps(dx + i, m)));
    }
}

/* ---- layernorm ------------------------------------------------------------------- */

/* sum of x[0:c] (4 accumulators, fixed order) */
static inline float row_sum(const float *x, int64_t c)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t j = 0;
    for (; j + 32 <= c; j += 32) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + j));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + j + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(x + j + 16));
        a3 = _mm256_add_ps(a3, _mm256_loadu_ps(x + j + 24));
    }
    for (; j + 8 <= c; j += 8)
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + j));
    if (j < c)
        a1 = _mm256_add_ps(a1, _mm256_maskload_ps(x + j, tail_mask(c - j)));
    return hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

/* sum of (x[0:c] - m)^2 */
static inline float row_sqdev(const float *x, float mean, int64_t c)
{
    __m256 m = _mm256_set1_ps(mean);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t j = 0;
    for (; j + 32 <= c; j += 32) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + j), m);
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(x + j + 8), m);
        __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(x + j + 16), m);
        __m256 d3 = _mm256_sub_ps(_mm256_loadu_ps(x + j + 24), m);
        a0 = _mm256_fmadd_ps(d0, d0, a0);
        a1 = _mm256_fmadd_ps(d1, d1, a1);
        a2 = _mm256_fmadd_ps(d2, d2, a2);
        a3 = _mm256_fmadd_ps(d3, d3, a3);
    }
    for (; j + 8 <= c; j += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + j), m);
        a0 = _mm256_fmadd_ps(d, d, a0);
    }
    if (j < c) {
        __m256i k = tail_mask(c - j);
        __m256 d = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(x + j, k), m),
                                 _mm256_castsi256_ps(k));
        a1 = _mm256_fmadd_ps(d, d, a1);
    }
    return hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
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
        __m256 vm = _mm256_set1_ps(m), vs = _mm256_set1_ps(s);
        int64_t j = 0;
        for (; j + 8 <= c; j += 8) {
            __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + j), vm), vs);
            _mm256_storeu_ps(o + j, _mm256_fmadd_ps(xhat, _mm256_loadu_ps(w + j),
                                                    _mm256_loadu_ps(b + j)));
        }
        if (j < c) {
            __m256i k = tail_mask(c - j);
            __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(xr + j, k), vm), vs);
            _mm256_maskstore_ps(o + j, k,
                                _mm256_fmadd_ps(xhat, _mm256_maskload_ps(w + j, k),
                                                _mm256_maskload_ps(b + j, k)));
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
        __m256 vm = _mm256_set1_ps(mean[r]), vs = _mm256_set1_ps(rstd[r]);
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
        int64_t j = 0;
        for (; j + 16 <= c; j += 16) {
            __m256 xh0 = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + j), vm), vs);
            __m256 xh1 = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + j + 8), vm), vs);
            __m256 dn0 = _mm256_mul_ps(_mm256_loadu_ps(w + j), _mm256_loadu_ps(dr + j));
            __m256 dn1 = _mm256_mul_ps(_mm256_loadu_ps(w + j + 8), _mm256_loadu_ps(dr + j + 8));
            a0 = _mm256_add_ps(a0, dn0);
            a1 = _mm256_add_ps(a1, dn1);
            b0 = _mm256_fmadd_ps(dn0, xh0, b0);
            b1 = _mm256_fmadd_ps(dn1, xh1, b1);
        }
        for (; j < c; j += 8) {
            __m256i k = tail_mask(c - j < 8 ? c - j : 8);
            __m256 xh = _mm256_and_ps(
                _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(xr + j, k), vm), vs),
                _mm256_castsi256_ps(k));
            __m256 dn = _mm256_mul_ps(_mm256_maskload_ps(w + j, k), _mm256_maskload_ps(dr + j, k));
            a0 = _mm256_add_ps(a0, dn);
            b0 = _mm256_fmadd_ps(dn, xh, b0);
        }
        float dn_mean = hsum(_mm256_add_ps(a0, a1)) / (float)c;
        float dnx_mean = hsum(_mm256_add_ps(b0, b1)) / (float)c;
        __m256 va = _mm256_set1_ps(dn_mean), vb = _mm256_set1_ps(dnx_mean);
        for (j = 0; j + 8 <= c; j += 8) {
            __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + j), vm), vs);
            __m256 d = _mm256_loadu_ps(dr + j);
            __m256 dn = _mm256_mul_ps(_mm256_loadu_ps(w + j), d);
            _mm256_storeu_ps(db + j, _mm256_add_ps(_mm256_loadu_ps(db + j), d));
            _mm256_storeu_ps(dw + j, _mm256_fmadd_ps(xh, d, _mm256_loadu_ps(dw + j)));
            __m256 g = _mm256_sub_ps(_mm256_sub_ps(dn, va), _mm256_mul_ps(xh, vb));
            _mm256_storeu_ps(dxr + j, _mm256_fmadd_ps(vs, g, _mm256_loadu_ps(dxr + j)));
        }
        if (j < c) {
            __m256i k = tail_mask(c - j);
            __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(xr + j, k), vm), vs);
            __m256 d = _mm256_maskload_ps(dr + j, k);
            __m256 dn = _mm256_mul_ps(_mm256_maskload_ps(w + j, k), d);
            _mm256_maskstore_ps(db + j, k, _mm256_add_ps(_mm256_maskload_ps(db + j, k), d));
            _mm256_maskstore_ps(dw + j, k, _mm256_fmadd_ps(xh, d, _mm256_maskload_ps(dw + j, k)));
            __m256 g = _mm256_sub_ps(_mm256_sub_ps(dn, va), _mm256_mul_ps(xh, vb));
            _mm256_maskstore_ps(dxr + j, k,
                                _mm256_fmadd_ps(vs, g, _mm256_maskload_ps(dxr + j, k)));
        }
    }
}

/* ---- softmax ---------------------------------------------------------------------- */

/* out (rows, c) = exp(x - max) / sum per row; out may be x. A row that is all -inf
 * (fully masked) gives zeros, as in the reference. */
static void softmax_fwd(float *out, const float *x, int64_t rows, int64_t c)
{
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float *o = out + r * c;
        __m256 m0 = ninf, m1 = ninf;
        int64_t j = 0;
        for (; j + 16 <= c; j += 16) {
            m0 = _mm256_max_ps(m0, _mm256_loadu_ps(xr + j));
            m1 = _mm256_max_ps(m1, _mm256_loadu_ps(xr + j + 8));
        }
        for (; j + 8 <= c; j += 8)
            m0 = _mm256_max_ps(m0, _mm256_loadu_ps(xr + j));
        __m256i tk = tail_mask(c - j); /* lanes of the last partial vector (may be none) */
        if (j < c)
            m1 = _mm256_max_ps(m1, _mm256_blendv_ps(ninf, _mm256_maskload_ps(xr + j, tk),
                                                    _mm256_castsi256_ps(tk)));
        float mx = hmax(_mm256_max_ps(m0, m1));
        if (mx == -INFINITY) {
            for (j = 0; j + 8 <= c; j += 8)
                _mm256_storeu_ps(o + j, _mm256_setzero_ps());
            if (j < c)
                _mm256_maskstore_ps(o + j, tk, _mm256_setzero_ps());
            continue;
        }
        __m256 vmx = _mm256_set1_ps(mx), s0 = _mm256_setzero_ps(), s1 = s0;
        for (j = 0; j + 16 <= c; j += 16) {
            __m256 e0 = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + j), vmx));
            __m256 e1 = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + j + 8), vmx));
            _mm256_storeu_ps(o + j, e0);
            _mm256_storeu_ps(o + j + 8, e1);
            s0 = _mm256_add_ps(s0, e0);
            s1 = _mm256_add_ps(s1, e1);
        }
        for (; j + 8 <= c; j += 8) {
            __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + j), vmx));
            _mm256_storeu_ps(o + j, e);
            s0 = _mm256_add_ps(s0, e);
        }
        if (j < c) {
            __m256 e = _mm256_and_ps(exp_ps(_mm256_sub_ps(_mm256_maskload_ps(xr + j, tk), vmx)),
                                     _mm256_castsi256_ps(tk));
            _mm256_maskstore_ps(o + j, tk, e);
            s1 = _mm256_add_ps(s1, e);
        }
        __m256 inv = _mm256_set1_ps(1.0f / hsum(_mm256_add_ps(s0, s1)));
        for (j = 0; j + 8 <= c; j += 8)
            _mm256_storeu_ps(o + j, _mm256_mul_ps(_mm256_loadu_ps(o + j), inv));
        if (j < c)
            _mm256_maskstore_ps(o + j, tk, _mm256_mul_ps(_mm256_maskload_ps(o + j, tk), inv));
    }
}

/* dx (rows, c) += y * (dy - dot(y, dy)) per row */
static void softmax_bwd(float *dx, const float *y, const float *dy, int64_t rows, int64_t c)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y + r * c, *dyr = dy + r * c;
        float *d = dx + r * c;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;
        int64_t j = 0;
        for (; j + 16 <= c; j += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(yr + j), _mm256_loadu_ps(dyr + j), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(yr + j + 8), _mm256_loadu_ps(dyr + j + 8), a1);
        }
        for (; j + 8 <= c; j += 8)
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(yr + j), _mm256_loadu_ps(dyr + j), a0);
        __m256i tk = tail_mask(c - j);
        if (j < c)
            a1 = _mm256_fmadd_ps(_mm256_maskload_ps(yr + j, tk), _mm256_maskload_ps(dyr + j, tk),
                                 a1);
        __m256 dot = _mm256_set1_ps(hsum(_mm256_add_ps(a0, a1)));
        for (j = 0; j + 8 <= c; j += 8) {
            __m256 g = _mm256_mul_ps(_mm256_loadu_ps(yr + j),
                                     _mm256_sub_ps(_mm256_loadu_ps(dyr + j), dot));
            _mm256_storeu_ps(d + j, _mm256_add_ps(_mm256_loadu_ps(d + j), g));
        }
        if (j < c) {
            __m256 g = _mm256_mul_ps(_mm256_maskload_ps(yr + j, tk),
                                     _mm256_sub_ps(_mm256_maskload_ps(dyr + j, tk), dot));
            _mm256_maskstore_ps(d + j, tk, _mm256_add_ps(_mm256_maskload_ps(d + j, tk), g));
        }
    }
}

void parlm_avx2_eltwise_fill(parlm_kernels *k)
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
