/* simd/neon/eltwise.c — AArch64 Advanced SIMD elementwise and row-wise ops, forward and
 * backward (backward accumulates), same contract as simd/scalar/eltwise.c.
 * One idea to know: GELU's 0.5 (1 + tanh u) equals the logistic 1 / (1 + exp(-2u)), so
 * everything transcendental here is one vector exp; written that way it also avoids the
 * cancellation of 1 + tanh u for negative u. GELU and softmax finish a length that is
 * not a multiple of 4 with a padded 4-lane step (the same vector exp), the other ops
 * with scalar tails. */
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "neon.h"

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_CUBIC 0.044715f
#define LN_EPS 1e-5f

/* ---- vector exp --------------------------------------------------------------
 * exp(x) = 2^n * exp(r), n = round(x / ln2), r = x - n ln2 in [-ln2/2, ln2/2]; ln2 is
 * split in two (Cody-Waite) so n * LN2_HI is exact for |n| < 2^15. exp(r) = 1 + q(r),
 * q the degree-7 Taylor polynomial (truncation < 2.2e-9 relative on the interval);
 * 2^n is built in the exponent field. Max error, measured against double exp on every
 * 97th float of [-87.3, 88.37] (23M arguments): 1.05 ulp (8.8e-8 relative).
 * x < -87.3 gives 0 (the true value is below 1.2e-38), x > 88.37 gives +inf (true
 * overflow is at 88.72); NaN gives NaN. */
#define EXP_LO -87.3f
#define EXP_HI 88.37f /* 127.5 ln2 rounded down: n <= 127 */
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f      /* 355/512: 9 significant bits */
#define LN2_LO -2.12194440e-4f   /* ln2 - LN2_HI */

static inline float32x4_t vexp(float32x4_t x)
{
    float32x4_t xc = vminq_f32(vmaxq_f32(x, vdupq_n_f32(EXP_LO)), vdupq_n_f32(EXP_HI));
    float32x4_t n = vrndnq_f32(vmulq_n_f32(xc, LOG2E));
    float32x4_t r = vfmsq_f32(xc, n, vdupq_n_f32(LN2_HI));
    r = vfmsq_f32(r, n, vdupq_n_f32(LN2_LO));
    /* q = r + r^2 (1/2 + r/6 + r^2/24 + ... + r^5/5040), Horner from the top */
    float32x4_t p = vdupq_n_f32(1.0f / 5040.0f);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 720.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    float32x4_t q = vfmaq_f32(r, vmulq_f32(r, r), p);
    int32x4_t bits = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    float32x4_t scale = vreinterpretq_f32_s32(bits);
    float32x4_t e = vfmaq_f32(scale, scale, q); /* 2^n (1 + q) */
    e = vbslq_f32(vcltq_f32(x, vdupq_n_f32(EXP_LO)), vdupq_n_f32(0.0f), e);
    return vbslq_f32(vcgtq_f32(x, vdupq_n_f32(EXP_HI)), vdupq_n_f32(INFINITY), e);
}

/* ---- residual add and bias ------------------------------------------------------ */

/* out (n) = a (n) + b (n) */
static void add(float *out, const float *a, const float *b, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(out + i, vaddq_f32(vld1q_f32(a + i), vld1q_f32(b + i)));
    for (; i < n; i++)
        out[i] = a[i] + b[i];
}

/* out (rows, c) += bias (c) */
static void bias_fwd(float *out, const float *bias, int64_t rows, int64_t c)
{
    for (int64_t r = 0; r < rows; r++) {
        float *o = out + r * c;
        int64_t j = 0;
        for (; j + 4 <= c; j += 4)
            vst1q_f32(o + j, vaddq_f32(vld1q_f32(o + j), vld1q_f32(bias + j)));
        for (; j < c; j++)
            o[j] += bias[j];
    }
}

/* dbias (c) += sum_r dout (rows, c): 16 columns at a time, summed down the rows in
 * registers, so dbias is read and written once. */
static void bias_bwd(float *dbias, const float *dout, int64_t rows, int64_t c)
{
    int64_t j = 0;
    for (; j + 16 <= c; j += 16) {
        float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
        for (int64_t r = 0; r < rows; r++) {
            const float *d = dout + r * c + j;
            s0 = vaddq_f32(s0, vld1q_f32(d));
            s1 = vaddq_f32(s1, vld1q_f32(d + 4));
            s2 = vaddq_f32(s2, vld1q_f32(d + 8));
            s3 = vaddq_f32(s3, vld1q_f32(d + 12));
        }
        vst1q_f32(dbias + j, vaddq_f32(vld1q_f32(dbias + j), s0));
        vst1q_f32(dbias + j + 4, vaddq_f32(vld1q_f32(dbias + j + 4), s1));
        vst1q_f32(dbias + j + 8, vaddq_f32(vld1q_f32(dbias + j + 8), s2));
        vst1q_f32(dbias + j + 12, vaddq_f32(vld1q_f32(dbias + j + 12), s3));
    }
    for (; j + 4 <= c; j += 4) {
        float32x4_t s = vdupq_n_f32(0.0f);
        for (int64_t r = 0; r < rows; r++)
            s = vaddq_f32(s, vld1q_f32(dout + r * c + j));
        vst1q_f32(dbias + j, vaddq_f32(vld1q_f32(dbias + j), s));
    }
    for (; j < c; j++) {
        float s = 0.0f;
        for (int64_t r = 0; r < rows; r++)
            s += dout[r * c + j];
        dbias[j] += s;
    }
}

/* ---- GELU (tanh form) -------------------------------------------------------------
 * u = sqrt(2/pi) (x + 0.044715 x^3), e = exp(-2u), sig = 1 / (1 + e) = 0.5 (1 + tanh u):
 *   gelu(x)  = x sig
 *   gelu'(x) = sig + 2 x sig (1 - sig) du/dx     (sech^2 u = 4 sig (1 - sig))
 * 1 - sig is e sig where sig is near 1 (u >= 0) and 1 - sig elsewhere: no cancellation.
 * Measured against a double evaluation of these formulas (2.6M log-spaced |x| in
 * [1e-8, 30]): gelu within 1.6e-7 relative for x >= 0 and 1.6e-7 (1 + |2u|) for x < 0,
 * where rounding u to float dominates (the reference's 1 + tanh u loses far more);
 * gelu' within 2.1e-7 absolute. */
static inline float32x4_t gelu_u(float32x4_t x)
{
    float32x4_t x2 = vmulq_f32(x, x);
    return vmulq_n_f32(vfmaq_f32(x, vmulq_n_f32(x2, GELU_CUBIC), x), GELU_SCALE);
}

/* As the reference, x is clamped below at -30 (gelu is -0 in float there), so -inf
 * gives -0 and not -inf / inf. */
static inline float32x4_t gelu4(float32x4_t x)
{
    x = vmaxq_f32(x, vdupq_n_f32(-30.0f)); /* fmax: NaN stays NaN */
    float32x4_t e = vexp(vmulq_n_f32(gelu_u(x), -2.0f));
    return vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0f), e)); /* x / (1 + e), e = inf -> -0 */
}

/* As the reference, x is clamped to [-10, 10] (gelu' is 0 or 1 in float beyond), so
 * +-inf and huge x give 0 or 1 and not 0 * inf. */
static inline float32x4_t dgelu4(float32x4_t x)
{
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-10.0f)), vdupq_n_f32(10.0f));
    float32x4_t u = gelu_u(x);
    float32x4_t e = vexp(vmulq_n_f32(u, -2.0f));
    float32x4_t sig = vdivq_f32(vdupq_n_f32(1.0f), vaddq_f32(vdupq_n_f32(1.0f), e));
    float32x4_t sigc = vbslq_f32(vcgezq_f32(u), vmulq_f32(e, sig),
                                 vsubq_f32(vdupq_n_f32(1.0f), sig));
    float32x4_t x2 = vmulq_f32(x, x);
    float32x4_t du = vmulq_n_f32(vfmaq_n_f32(vdupq_n_f32(1.0f), x2, 3.0f * GELU_CUBIC),
                                 GELU_SCALE);
    float32x4_t xs = vmulq_f32(vmulq_f32(x, sig), vmulq_f32(sigc, du));
    return vfmaq_n_f32(sig, xs, 2.0f);
}

/* out (n) = gelu(x (n)) */
static void gelu_fwd(float *out, const float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(out + i, gelu4(vld1q_f32(x + i)));
    if (i < n) {
        float buf[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        memcpy(buf, x + i, (size_t)(n - i) * sizeof(float));
        vst1q_f32(buf, gelu4(vld1q_f32(buf)));
        memcpy(out + i, buf, (size_t)(n - i) * sizeof(float));
    }
}

/* dx (n) += gelu'(x (n)) * dout (n) */
static void gelu_bwd(float *dx, const float *x, const float *dout, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(dx + i, vfmaq_f32(vld1q_f32(dx + i), dgelu4(vld1q_f32(x + i)),
                                    vld1q_f32(dout + i)));
    if (i < n) {
        float buf[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        memcpy(buf, x + i, (size_t)(n - i) * sizeof(float));
        vst1q_f32(buf, dgelu4(vld1q_f32(buf)));
        for (int64_t j = 0; i + j < n; j++)
            dx[i + j] += buf[j] * dout[i + j];
    }
}

/* ---- layernorm ------------------------------------------------------------------- */

/* sum of x (c), four vectors in flight */
static inline float row_sum(const float *x, int64_t c)
{
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
    int64_t j = 0;
    for (; j + 16 <= c; j += 16) {
        s0 = vaddq_f32(s0, vld1q_f32(x + j));
        s1 = vaddq_f32(s1, vld1q_f32(x + j + 4));
        s2 = vaddq_f32(s2, vld1q_f32(x + j + 8));
        s3 = vaddq_f32(s3, vld1q_f32(x + j + 12));
    }
    for (; j + 4 <= c; j += 4)
        s0 = vaddq_f32(s0, vld1q_f32(x + j));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; j < c; j++)
        s += x[j];
    return s;
}

/* sum of (x - m)^2 over x (c); two passes (mean first) as in the reference */
static inline float row_sqdev(const float *x, float m, int64_t c)
{
    float32x4_t vm = vdupq_n_f32(m);
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0;
    int64_t j = 0;
    for (; j + 8 <= c; j += 8) {
        float32x4_t d0 = vsubq_f32(vld1q_f32(x + j), vm);
        float32x4_t d1 = vsubq_f32(vld1q_f32(x + j + 4), vm);
        s0 = vfmaq_f32(s0, d0, d0);
        s1 = vfmaq_f32(s1, d1, d1);
    }
    for (; j + 4 <= c; j += 4) {
        float32x4_t d0 = vsubq_f32(vld1q_f32(x + j), vm);
        s0 = vfmaq_f32(s0, d0, d0);
    }
    float s = vaddvq_f32(vaddq_f32(s0, s1));
    for (; j < c; j++)
        s += (x[j] - m) * (x[j] - m);
    return s;
}

/* x (rows, c) -> out (rows, c) = (x - mean) * rstd * w + b; mean, rstd (rows) saved */
static void layernorm_fwd(float *out, float *mean, float *rstd, const float *x,
                          const float *w, const float *b, int64_t rows, int64_t c)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float *o = out + r * c;
        float m = row_sum(xr, c) / (float)c;
        float v = row_sqdev(xr, m, c) / (float)c;
        float s = 1.0f / sqrtf(v + LN_EPS);
        float32x4_t vm = vdupq_n_f32(m);
        int64_t j = 0;
        for (; j + 4 <= c; j += 4) {
            float32x4_t xhat = vmulq_n_f32(vsubq_f32(vld1q_f32(xr + j), vm), s);
            vst1q_f32(o + j, vfmaq_f32(vld1q_f32(b + j), xhat, vld1q_f32(w + j)));
        }
        for (; j < c; j++)
            o[j] = (xr[j] - m) * s * w[j] + b[j];
        mean[r] = m;
        rstd[r] = s;
    }
}

/* dout, x (rows, c), w (c), mean, rstd (rows) -> dx (rows, c) +=, dw, db (c) +=
 * dnorm = dout * w; dx = rstd * (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)) */
static void layernorm_bwd(float *dx, float *dw, float *db, const float *dout, const float *x,
                          const float *w, const float *mean, const float *rstd, int64_t rows,
                          int64_t c)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c, *dr = dout + r * c;
        float *dxr = dx + r * c;
        float m = mean[r], s = rstd[r];
        float32x4_t vm = vdupq_n_f32(m);
        float32x4_t sdn = vdupq_n_f32(0.0f), sdnx = sdn;
        int64_t j = 0;
        for (; j + 4 <= c; j += 4) {
            float32x4_t xhat = vmulq_n_f32(vsubq_f32(vld1q_f32(xr + j), vm), s);
            float32x4_t dn = vmulq_f32(vld1q_f32(w + j), vld1q_f32(dr + j));
            sdn = vaddq_f32(sdn, dn);
            sdnx = vfmaq_f32(sdnx, dn, xhat);
        }
        float dnorm_mean = vaddvq_f32(sdn), dnorm_xhat_mean = vaddvq_f32(sdnx);
        for (int64_t t = j; t < c; t++) {
            float xhat = (xr[t] - m) * s, dn = w[t] * dr[t];
            dnorm_mean += dn;
            dnorm_xhat_mean += dn * xhat;
        }
        dnorm_mean /= (float)c;
        dnorm_xhat_mean /= (float)c;
        float32x4_t vdm = vdupq_n_f32(dnorm_mean), vdxm = vdupq_n_f32(dnorm_xhat_mean);
        for (j = 0; j + 4 <= c; j += 4) {
            float32x4_t d = vld1q_f32(dr + j);
            float32x4_t xhat = vmulq_n_f32(vsubq_f32(vld1q_f32(xr + j), vm), s);
            float32x4_t dn = vmulq_f32(vld1q_f32(w + j), d);
            vst1q_f32(db + j, vaddq_f32(vld1q_f32(db + j), d));
            vst1q_f32(dw + j, vfmaq_f32(vld1q_f32(dw + j), xhat, d));
            float32x4_t g = vfmsq_f32(vsubq_f32(dn, vdm), xhat, vdxm);
            vst1q_f32(dxr + j, vfmaq_n_f32(vld1q_f32(dxr + j), g, s));
        }
        for (; j < c; j++) {
            float xhat = (xr[j] - m) * s, dn = w[j] * dr[j];
            db[j] += dr[j];
            dw[j] += xhat * dr[j];
            dxr[j] += s * (dn - dnorm_mean - xhat * dnorm_xhat_mean);
        }
    }
}

/* ---- softmax --------------------------------------------------------------------- */

/* x (rows, c) -> out (rows, c) = exp(x - max) / sum, per row */
static void softmax_fwd(float *out, const float *x, int64_t rows, int64_t c)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float *o = out + r * c;
        /* fmaxnm skips NaN like the reference's compare; a NaN still poisons the row */
        float32x4_t vmx = vdupq_n_f32(-INFINITY);
        int64_t j = 0;
        for (; j + 4 <= c; j += 4)
            vmx = vmaxnmq_f32(vmx, vld1q_f32(xr + j));
        float mx = vmaxnmvq_f32(vmx);
        for (; j < c; j++)
            mx = xr[j] > mx ? xr[j] : mx;
        if (mx == -INFINITY) { /* fully masked row: zeros, not 0/0 */
            memset(o, 0, (size_t)c * sizeof(float));
            continue;
        }
        vmx = vdupq_n_f32(mx);
        float32x4_t vsum = vdupq_n_f32(0.0f);
        for (j = 0; j + 4 <= c; j += 4) {
            float32x4_t e = vexp(vsubq_f32(vld1q_f32(xr + j), vmx));
            vst1q_f32(o + j, e);
            vsum = vaddq_f32(vsum, e);
        }
        if (j < c) { /* pad with -inf: exp gives 0, which adds nothing to the sum */
            float buf[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
            memcpy(buf, xr + j, (size_t)(c - j) * sizeof(float));
            float32x4_t e = vexp(vsubq_f32(vld1q_f32(buf), vmx));
            vsum = vaddq_f32(vsum, e);
            vst1q_f32(buf, e);
            memcpy(o + j, buf, (size_t)(c - j) * sizeof(float));
        }
        float inv = 1.0f / vaddvq_f32(vsum);
        for (j = 0; j + 4 <= c; j += 4)
            vst1q_f32(o + j, vmulq_n_f32(vld1q_f32(o + j), inv));
        for (; j < c; j++)
            o[j] *= inv;
    }
}

/* y, dy (rows, c) -> dx (rows, c) += y * (dy - dot(y, dy)), per row */
static void softmax_bwd(float *dx, const float *y, const float *dy, int64_t rows, int64_t c)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y + r * c, *dyr = dy + r * c;
        float *dxr = dx + r * c;
        float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0;
        int64_t j = 0;
        for (; j + 8 <= c; j += 8) {
            s0 = vfmaq_f32(s0, vld1q_f32(yr + j), vld1q_f32(dyr + j));
            s1 = vfmaq_f32(s1, vld1q_f32(yr + j + 4), vld1q_f32(dyr + j + 4));
        }
        for (; j + 4 <= c; j += 4)
            s0 = vfmaq_f32(s0, vld1q_f32(yr + j), vld1q_f32(dyr + j));
        float dot = vaddvq_f32(vaddq_f32(s0, s1));
        for (; j < c; j++)
            dot += yr[j] * dyr[j];
        float32x4_t vdot = vdupq_n_f32(dot);
        for (j = 0; j + 4 <= c; j += 4) {
            float32x4_t yv = vld1q_f32(yr + j);
            float32x4_t g = vmulq_f32(yv, vsubq_f32(vld1q_f32(dyr + j), vdot));
            vst1q_f32(dxr + j, vaddq_f32(vld1q_f32(dxr + j), g));
        }
        for (; j < c; j++)
            dxr[j] += yr[j] * (dyr[j] - dot);
    }
}

void parlm_neon_eltwise_fill(parlm_kernels *k)
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
