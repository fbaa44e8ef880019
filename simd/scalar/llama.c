/* simd/scalar/llama.c — reference RMSNorm, rotary position embedding and SwiGLU, forward
 * and backward (backward accumulates), plain loops; contracts in simd/kernels.h. RoPE
 * rotates each adjacent pair (2i, 2i+1) explicitly with its cos / sin, not through the
 * sign-folded swap the SIMD sets use, so the two codes stay independent. */
#include <math.h>

#include "scalar.h"

static void rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, int64_t rows,
                        int64_t c, float eps)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float ss = 0.0f;
        for (int64_t j = 0; j < c; j++)
            ss += xr[j] * xr[j];
        float s = 1.0f / sqrtf(ss / (float)c + eps);
        for (int64_t j = 0; j < c; j++)
            out[r * c + j] = xr[j] * s * w[j];
        rstd[r] = s;
    }
}

static void rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w,
                        const float *rstd, int64_t rows, int64_t c)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c, *dr = dout + r * c;
        float s = rstd[r];
        /* out = xhat w, xhat = x s, ds/dx_j = -s^3 x_j / c:
         * dx = s (dn - xhat mean(dn xhat)), dn = w dout */
        float m = 0.0f;
        for (int64_t j = 0; j < c; j++)
            m += w[j] * dr[j] * xr[j] * s;
        m /= (float)c;
        for (int64_t j = 0; j < c; j++) {
            float xhat = xr[j] * s;
            dw[j] += xhat * dr[j];
            dx[r * c + j] += s * (w[j] * dr[j] - xhat * m);
        }
    }
}

/* sign +1: rotate by a, -1: by -a */
static void rope(float *x, int64_t T, int64_t nh, int64_t hs, int64_t ld, const float *cs,
                 const float *sn, float sign)
{
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < nh; h++) {
            float *v = x + t * ld + h * hs;
            for (int64_t i = 0; i < hs / 2; i++) {
                float c = cs[t * hs + 2 * i], s = sign * sn[t * hs + 2 * i + 1];
                float a = v[2 * i], b = v[2 * i + 1];
                v[2 * i] = a * c - b * s;
                v[2 * i + 1] = a * s + b * c;
            }
        }
}

static void rope_fwd(float *x, int64_t T, int64_t nh, int64_t hs, int64_t ld, const float *cs,
                     const float *sn)
{
    rope(x, T, nh, hs, ld, cs, sn, 1.0f);
}

static void rope_bwd(float *x, int64_t T, int64_t nh, int64_t hs, int64_t ld, const float *cs,
                     const float *sn)
{
    rope(x, T, nh, hs, ld, cs, sn, -1.0f);
}

static void swiglu_fwd(float *out, const float *gu, int64_t rows, int64_t h)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *g = gu + r * 2 * h, *u = g + h;
        for (int64_t j = 0; j < h; j++) {
            float sig = 1.0f / (1.0f + expf(-g[j]));
            out[r * h + j] = g[j] * sig * u[j];
        }
    }
}

/* silu'(g) = sig + g sig (1 - sig) */
static void swiglu_bwd(float *dgu, const float *dout, const float *gu, int64_t rows, int64_t h)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *g = gu + r * 2 * h, *u = g + h, *d = dout + r * h;
        float *dg = dgu + r * 2 * h, *du = dg + h;
        for (int64_t j = 0; j < h; j++) {
            float sig = 1.0f / (1.0f + expf(-g[j]));
            dg[j] += d[j] * u[j] * (sig + g[j] * sig * (1.0f - sig));
            du[j] += d[j] * g[j] * sig;
        }
    }
}

void parlm_scalar_llama_fill(parlm_kernels *k)
{
    k->rmsnorm_fwd = rmsnorm_fwd;
    k->rmsnorm_bwd = rmsnorm_bwd;
    k->rope_fwd = rope_fwd;
    k->rope_bwd = rope_bwd;
    k->swiglu_fwd = swiglu_fwd;
    k->swiglu_bwd = swiglu_bwd;
}
