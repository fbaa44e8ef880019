/* simd/common/llama.c — the Llama ops: RMSNorm, rotary position embedding (RoPE) and
 * SwiGLU, forward and backward (backward accumulates), written once over "vec.h" and
 * compiled per ISA; contracts in simd/kernels.h. The one idea for RoPE: with the cos table
 * duplicated per pair and the sin table sign-folded (-sin, +sin), rotating adjacent pairs
 * is x * cs + swap_pairs(x) * sn, one in-lane permute and an FMA per vector. */
#include <math.h>

#include "vec.h"

#include "../kernels.h"

void VEC_ISA_NAME(llama_fill)(parlm_kernels *k);

#define L VF_LANES

/* ---- RMSNorm ------------------------------------------------------------------------ */

/* sum of x[0:c]^2 (4 accumulators, fixed order) */
static inline float row_sumsq(const float *x, int64_t c)
{
    vf a0 = vf_zero(), a1 = a0, a2 = a0, a3 = a0;
    int64_t j = 0;
    for (; j + 4 * L <= c; j += 4 * L) {
        vf x0 = vf_load(x + j), x1 = vf_load(x + j + L);
        vf x2 = vf_load(x + j + 2 * L), x3 = vf_load(x + j + 3 * L);
        a0 = vf_fma(x0, x0, a0);
        a1 = vf_fma(x1, x1, a1);
        a2 = vf_fma(x2, x2, a2);
        a3 = vf_fma(x3, x3, a3);
    }
    for (; j + L <= c; j += L) {
        vf v = vf_load(x + j);
        a0 = vf_fma(v, v, a0);
    }
    if (j < c) {
        vf v = vf_load_n(x + j, c - j);
        a1 = vf_fma(v, v, a1);
    }
    return vf_hsum(vf_add(vf_add(a0, a1), vf_add(a2, a3)));
}

/* out (rows, c) = x * rstd * w, rstd (rows) saved. out may be x. */
static void rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, int64_t rows,
                        int64_t c, float eps)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float *o = out + r * c;
        float s = 1.0f / sqrtf(row_sumsq(xr, c) / (float)c + eps);
        vf vs = vf_set1(s);
        int64_t j = 0;
        for (; j + L <= c; j += L)
            vf_store(o + j, vf_mul(vf_mul(vf_load(xr + j), vs), vf_load(w + j)));
        if (j < c) {
            int64_t n = c - j;
            vf_store_n(o + j, n, vf_mul(vf_mul(vf_load_n(xr + j, n), vs), vf_load_n(w + j, n)));
        }
        rstd[r] = s;
    }
}

/* dx (rows, c) += rstd (dn - xhat mean(dn xhat)), dw (c) += xhat dout; dn = w dout */
static void rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w,
                        const float *rstd, int64_t rows, int64_t c)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c, *dr = dout + r * c;
        float *dxr = dx + r * c;
        vf vs = vf_set1(rstd[r]);
        vf a0 = vf_zero(), a1 = a0;
        int64_t j = 0;
        for (; j + 2 * L <= c; j += 2 * L) {
            vf p0 = vf_mul(vf_load(w + j), vf_load(dr + j));
            vf p1 = vf_mul(vf_load(w + j + L), vf_load(dr + j + L));
            a0 = vf_fma(p0, vf_load(xr + j), a0);
            a1 = vf_fma(p1, vf_load(xr + j + L), a1);
        }
        for (; j < c; j += L) {
            int64_t n = c - j; /* padded lanes load 0 */
            vf p = vf_mul(vf_load_n(w + j, n), vf_load_n(dr + j, n));
            a0 = vf_fma(p, vf_load_n(xr + j, n), a0);
        }
        /* mean(dn xhat) = rstd sum(dn x) / c */
        vf vm = vf_set1(vf_hsum(vf_add(a0, a1)) * rstd[r] / (float)c);
        for (j = 0; j + L <= c; j += L) {
            vf d = vf_load(dr + j), xh = vf_mul(vf_load(xr + j), vs);
            vf_store(dw + j, vf_fma(xh, d, vf_load(dw + j)));
            vf g = vf_fnma(xh, vm, vf_mul(vf_load(w + j), d));
            vf_store(dxr + j, vf_fma(vs, g, vf_load(dxr + j)));
        }
        if (j < c) {
            int64_t n = c - j;
            vf d = vf_load_n(dr + j, n), xh = vf_mul(vf_load_n(xr + j, n), vs);
            vf_store_n(dw + j, n, vf_fma(xh, d, vf_load_n(dw + j, n)));
            vf g = vf_fnma(xh, vm, vf_mul(vf_load_n(w + j, n), d));
            vf_store_n(dxr + j, n, vf_fma(vs, g, vf_load_n(dxr + j, n)));
        }
    }
}

/* ---- RoPE ---------------------------------------------------------------------------- */

/* hs is even and vectors hold an even number of lanes, so a pair never straddles two
 * vectors; a partial last vector keeps whole pairs (its padded lanes are 0). */
static inline void rope_head(float *v, const float *cs, const float *sn, int64_t hs, vf sign)
{
    int64_t j = 0;
    for (; j + L <= hs; j += L) {
        vf x = vf_load(v + j);
        vf s = vf_mul(sign, vf_load(sn + j));
        vf_store(v + j, vf_fma(vf_swap_pairs(x), s, vf_mul(x, vf_load(cs + j))));
    }
    if (j < hs) {
        int64_t n = hs - j;
        vf x = vf_load_n(v + j, n);
        vf s = vf_mul(sign, vf_load_n(sn + j, n));
        vf_store_n(v + j, n, vf_fma(vf_swap_pairs(x), s, vf_mul(x, vf_load_n(cs + j, n))));
    }
}

static inline void rope(float *x, int64_t T, int64_t nh, int64_t hs, int64_t ld, const float *cs,
                        const float *sn, float sign)
{
    vf vsign = vf_set1(sign);
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < nh; h++)
            rope_head(x + t * ld + h * hs, cs + t * hs, sn + t * hs, hs, vsign);
}

static void rope_fwd(float *x, int64_t T, int64_t nh, int64_t hs, int64_t ld, const float *cs,
                     const float *sn)
{
    rope(x, T, nh, hs, ld, cs, sn, 1.0f);
}

/* the inverse rotation: the sin table negated (a multiplication by -1 is exact) */
static void rope_bwd(float *x, int64_t T, int64_t nh, int64_t hs, int64_t ld, const float *cs,
                     const float *sn)
{
    rope(x, T, nh, hs, ld, cs, sn, -1.0f);
}

/* ---- SwiGLU --------------------------------------------------------------------------- */

/* sigmoid(g) = 1 / (1 + exp(-g)) on gc = max(g, -80): sigmoid < 2e-35 there, so silu and
 * its derivative are 0 to float precision either way, and exp(-gc) stays finite. */
static inline vf sigmoid_v(vf g, vf *gc)
{
    *gc = vf_max(vf_set1(-80.0f), g);
    vf e = vf_exp(vf_sub(vf_zero(), *gc));
    return vf_div(vf_set1(1.0f), vf_add(vf_set1(1.0f), e));
}

static inline vf swiglu_v(vf g, vf u)
{
    vf gc;
    return vf_mul(vf_mul(g, sigmoid_v(g, &gc)), u);
}

/* out (rows, h) = silu(gate) * up, gu (rows, 2h) = gate | up */
static void swiglu_fwd(float *out, const float *gu, int64_t rows, int64_t h)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *g = gu + r * 2 * h, *u = g + h;
        float *o = out + r * h;
        int64_t j = 0;
        for (; j + L <= h; j += L)
            vf_store(o + j, swiglu_v(vf_load(g + j), vf_load(u + j)));
        if (j < h)
            vf_store_n(o + j, h - j, swiglu_v(vf_load_n(g + j, h - j), vf_load_n(u + j, h - j)));
    }
}

/* d(silu(g) u) / dg = u silu'(g), silu' = s (1 + g (1 - s)); d / du = silu(g) = g s */
static inline void swiglu_grads(vf g, vf u, vf d, vf *dg, vf *du)
{
    const vf one = vf_set1(1.0f);
    vf gc, s = sigmoid_v(g, &gc);
    *dg = vf_mul(vf_mul(d, u), vf_mul(s, vf_fma(gc, vf_sub(one, s), one)));
    *du = vf_mul(d, vf_mul(g, s));
}

/* dgu (rows, 2h): gate half += dout up silu'(gate), up half += dout silu(gate) */
static void swiglu_bwd(float *dgu, const float *dout, const float *gu, int64_t rows, int64_t h)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *g = gu + r * 2 * h, *u = g + h, *d = dout + r * h;
        float *dg = dgu + r * 2 * h, *du = dg + h;
        vf a, b;
        int64_t j = 0;
        for (; j + L <= h; j += L) {
            swiglu_grads(vf_load(g + j), vf_load(u + j), vf_load(d + j), &a, &b);
            vf_store(dg + j, vf_add(vf_load(dg + j), a));
            vf_store(du + j, vf_add(vf_load(du + j), b));
        }
        if (j < h) {
            int64_t n = h - j;
            swiglu_grads(vf_load_n(g + j, n), vf_load_n(u + j, n), vf_load_n(d + j, n), &a, &b);
            vf_store_n(dg + j, n, vf_add(vf_load_n(dg + j, n), a));
            vf_store_n(du + j, n, vf_add(vf_load_n(du + j, n), b));
        }
    }
}

void VEC_ISA_NAME(llama_fill)(parlm_kernels *k)
{
    k->rmsnorm_fwd = rmsnorm_fwd;
    k->rmsnorm_bwd = rmsnorm_bwd;
    k->rope_fwd = rope_fwd;
    k->rope_bwd = rope_bwd;
    k->swiglu_fwd = swiglu_fwd;
    k->swiglu_bwd = swiglu_bwd;
}
