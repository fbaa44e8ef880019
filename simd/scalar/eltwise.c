/* simd/scalar/eltwise.c — reference elementwise and row-wise transformer ops,
 * forward and backward (backward accumulates). Written for clarity, llm.c style. */
#include <math.h>

#include "scalar.h"

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */
#define LN_EPS 1e-5f

static void add(float *out, const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

static void bias_fwd(float *out, const float *bias, int64_t rows, int64_t c)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < c; j++)
            out[r * c + j] += bias[j];
}

static void bias_bwd(float *dbias, const float *dout, int64_t rows, int64_t c)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < c; j++)
            dbias[j] += dout[r * c + j];
}

/* Below -30 gelu is -0 in float; clamping there makes x = -inf give -0, not -inf * 0. */
static void gelu_fwd(float *out, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] < -30.0f ? -30.0f : x[i];
        out[i] = 0.5f * v * (1.0f + tanhf(GELU_SCALE * (v + 0.044715f * v * v * v)));
    }
}

/* Outside [-10, 10] tanh(u) is +-1 in float, so gelu' is exactly 0 or 1; clamping there
 * keeps 0 * inf out of the product for |x| > 1e19 and +-inf (NaN still propagates). */
static void gelu_bwd(float *dx, const float *x, const float *dout, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] < -10.0f ? -10.0f : x[i] > 10.0f ? 10.0f : x[i];
        float u = GELU_SCALE * (v + 0.044715f * v * v * v);
        float t = tanhf(u);
        float sech2 = 1.0f - t * t;
        float du = GELU_SCALE * (1.0f + 3.0f * 0.044715f * v * v);
        dx[i] += (0.5f * (1.0f + t) + 0.5f * v * sech2 * du) * dout[i];
    }
}

static void layernorm_fwd(float *out, float *mean, float *rstd, const float *x,
                          const float *w, const float *b, int64_t rows, int64_t c)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float m = 0.0f;
        for (int64_t j = 0; j < c; j++)
            m += xr[j];
        m /= (float)c;
        float v = 0.0f;
        for (int64_t j = 0; j < c; j++)
            v += (xr[j] - m) * (xr[j] - m);
        v /= (float)c;
        float s = 1.0f / sqrtf(v + LN_EPS);
        for (int64_t j = 0; j < c; j++)
            out[r * c + j] = (xr[j] - m) * s * w[j] + b[j];
        mean[r] = m;
        rstd[r] = s;
    }
}

static void layernorm_bwd(float *dx, float *dw, float *db, const float *dout, const float *x,
                          const float *w, const float *mean, const float *rstd, int64_t rows,
                          int64_t c)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c, *dr = dout + r * c;
        float m = mean[r], s = rstd[r];
        /* dnorm = dout * w; dx = s * (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)) */
        float dnorm_mean = 0.0f, dnorm_xhat_mean = 0.0f;
        for (int64_t j = 0; j < c; j++) {
            float xhat = (xr[j] - m) * s, dn = w[j] * dr[j];
            dnorm_mean += dn;
            dnorm_xhat_mean += dn * xhat;
        }
        dnorm_mean /= (float)c;
        dnorm_xhat_mean /= (float)c;
        for (int64_t j = 0; j < c; j++) {
            float xhat = (xr[j] - m) * s, dn = w[j] * dr[j];
            db[j] += dr[j];
            dw[j] += xhat * dr[j];
            dx[r * c + j] += s * (dn - dnorm_mean - xhat * dnorm_xhat_mean);
        }
    }
}

static void softmax_fwd(float *out, const float *x, int64_t rows, int64_t c)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float *o = out + r * c;
        float mx = -INFINITY;
        for (int64_t j = 0; j < c; j++)
            mx = xr[j] > mx ? xr[j] : mx;
        if (mx == -INFINITY) { /* fully masked row: zeros, not 0/0 */
            for (int64_t j = 0; j < c; j++)
                o[j] = 0.0f;
            continue;
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < c; j++) {
            o[j] = expf(xr[j] - mx);
            sum += o[j];
        }
        float inv = 1.0f / sum;
        for (int64_t j = 0; j < c; j++)
            o[j] *= inv;
    }
}

static void softmax_bwd(float *dx, const float *y, const float *dy, int64_t rows, int64_t c)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y + r * c, *dyr = dy + r * c;
        float dot = 0.0f;
        for (int64_t j = 0; j < c; j++)
            dot += yr[j] * dyr[j];
        for (int64_t j = 0; j < c; j++)
            dx[r * c + j] += yr[j] * (dyr[j] - dot);
    }
}

static void f32_to_bf16(const float *x, uint16_t *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = parlm_f32_to_bf16_1(x[i]);
}

static void bf16_to_f32(const uint16_t *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = parlm_bf16_to_f32_1(x[i]);
}

void parlm_scalar_eltwise_fill(parlm_kernels *k)
{
    k->f32_to_bf16 = f32_to_bf16;
    k->bf16_to_f32 = bf16_to_f32;
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
