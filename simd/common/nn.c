/* simd/common/nn.c — embeddings, AdamW (plain and fused with zeroing and the gradient
 * norm) and the sum of squares, written once over "vec.h" + "vec_nn.h" and compiled once
 * per ISA (simd/local.am); contracts in simd/kernels.h. The one idea: AdamW keeps the
 * reference's order of operations (no FMA), so with correctly rounded div/sqrt every ISA
 * gives the scalar reference's bits. Attention and cross-entropy are still per ISA. */
#include <stdint.h>

#include "vec_nn.h"

#include "../kernels.h"

void VEC_ISA_NAME(nn_common_fill)(parlm_kernels *k);

#define L VF_LANES

/* ---- embeddings ------------------------------------------------------------------- */

/* out[r, c0:c1] = wte[tok[r], c0:c1] + wpe[r % T, c0:c1] */
static void embed_fwd(int64_t rows, int64_t T, int64_t C, int64_t c0, int64_t c1,
                      const int32_t *tok, const float *wte, const float *wpe, float *out)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *e = wte + (int64_t)tok[r] * C, *p = wpe + (r % T) * C;
        float *o = out + r * C;
        int64_t c = c0;
        for (; c + L <= c1; c += L)
            vf_store(o + c, vf_add(vf_load(e + c), vf_load(p + c)));
        if (c < c1)
            vf_store_n(o + c, c1 - c, vf_add(vf_load_n(e + c, c1 - c), vf_load_n(p + c, c1 - c)));
    }
}

/* dst[0:n] += g, for n <= L */
static inline void acc_n(float *dst, int64_t n, vf g)
{
    vf_store_n(dst, n, vf_add(vf_load_n(dst, n), g));
}

/* dwte[tok[r], c0:c1] += dout[r]; dwpe[r % T, c0:c1] += dout[r]; rows in order, so a
 * repeated token accumulates in the same order as the reference (bitwise equal) */
static void embed_bwd(int64_t rows, int64_t T, int64_t C, int64_t c0, int64_t c1,
                      const int32_t *tok, const float *dout, float *dwte, float *dwpe)
{
    for (int64_t r = 0; r < rows; r++) {
        float *e = dwte + (int64_t)tok[r] * C, *p = dwpe + (r % T) * C;
        const float *d = dout + r * C;
        int64_t c = c0;
        for (; c + L <= c1; c += L) {
            vf g = vf_load(d + c);
            vf_store(e + c, vf_add(vf_load(e + c), g));
            vf_store(p + c, vf_add(vf_load(p + c), g));
        }
        if (c < c1) {
            vf g = vf_load_n(d + c, c1 - c);
            acc_n(e + c, c1 - c, g);
            acc_n(p + c, c1 - c, g);
        }
    }
}

/* ---- optimizer and norm ----------------------------------------------------------- */

typedef struct {
    vf b1, b2, c1, c2, bc1, bc2, lr, eps, wd, gs;
} adamw_consts;

static inline adamw_consts adamw_set(float lr, float b1, float b2, float eps, float wd, float bc1,
                                     float bc2, float gscale)
{
    return (adamw_consts){vf_set1(b1),        vf_set1(b2),  vf_set1(1.0f - b1),
                          vf_set1(1.0f - b2), vf_set1(bc1), vf_set1(bc2),
                          vf_set1(lr),        vf_set1(eps), vf_set1(wd),
                          vf_set1(gscale)};
}

/* n <= L elements at p, m, v (a full vector when n == L) with the raw gradient g, in the
 * reference's order of operations */
static inline void adamw_v(const adamw_consts *c, int64_t n, float *p, vf g, float *m, float *v)
{
    int full = n >= L;
    vf gi = vf_mul(g, c->gs);
    vf m0 = full ? vf_load(m) : vf_load_n(m, n), v0 = full ? vf_load(v) : vf_load_n(v, n);
    vf pi = full ? vf_load(p) : vf_load_n(p, n);
    vf mi = vf_add(vf_mul(c->b1, m0), vf_mul(c->c1, gi));
    vf v1 = vf_add(vf_mul(c->b2, v0), vf_mul(vf_mul(c->c2, gi), gi));
    vf mh = vf_div(mi, c->bc1), vh = vf_div(v1, c->bc2);
    vf upd = vf_add(vf_div(mh, vf_add(vf_sqrt(vh), c->eps)), vf_mul(c->wd, pi));
    vf po = vf_sub(pi, vf_mul(c->lr, upd));
    if (full) {
        vf_store(m, mi);
        vf_store(v, v1);
        vf_store(p, po);
    } else {
        vf_store_n(m, n, mi);
        vf_store_n(v, n, v1);
        vf_store_n(p, n, po);
    }
}

static void adamw(int64_t n, float *p, const float *g, float *m, float *v, float lr, float b1,
                  float b2, float eps, float wd, float bc1, float bc2, float gscale)
{
    adamw_consts c = adamw_set(lr, b1, b2, eps, wd, bc1, bc2, gscale);
    int64_t i = 0;
    for (; i + L <= n; i += L)
        adamw_v(&c, L, p + i, vf_load(g + i), m + i, v + i);
    if (i < n)
        adamw_v(&c, n - i, p + i, vf_load_n(g + i, n - i), m + i, v + i);
}

/* adamw, g = 0 and the sum of g^2 in one pass: the four arrays are read once and
 * written once, instead of three passes (norm, update, zeroing) over the gradient */
static double adamw_zero(int64_t n, float *p, float *g, float *m, float *v, float lr, float b1,
                         float b2, float eps, float wd, float bc1, float bc2, float gscale)
{
    adamw_consts c = adamw_set(lr, b1, b2, eps, wd, bc1, bc2, gscale);
    vd acc = vd_zero();
    int64_t i = 0;
    for (; i + L <= n; i += L) {
        vf gi = vf_load(g + i);
        acc = vd_add_sq(acc, gi);
        adamw_v(&c, L, p + i, gi, m + i, v + i);
        vf_store(g + i, vf_zero());
    }
    if (i < n) {
        vf gi = vf_load_n(g + i, n - i);
        acc = vd_add_sq(acc, gi);
        adamw_v(&c, n - i, p + i, gi, m + i, v + i);
        vf_store_n(g + i, n - i, vf_zero());
    }
    return vd_hsum(acc);
}

/* sum of x^2 in double: each float is widened, its square is exact in double (48
 * significant bits), so the only error is the double summation over 2 x 2 x (L/2)
 * lanes, far below a serial double loop's n 2^-53 */
static double sumsq(int64_t n, const float *x)
{
    vd a0 = vd_zero(), a1 = vd_zero();
    int64_t i = 0;
    for (; i + 2 * L <= n; i += 2 * L) {
        a0 = vd_add_sq(a0, vf_load(x + i));
        a1 = vd_add_sq(a1, vf_load(x + i + L));
    }
    for (; i < n; i += L)
        a0 = vd_add_sq(a0, vf_load_n(x + i, n - i));
    return vd_hsum(a0) + vd_hsum(a1);
}

void VEC_ISA_NAME(nn_common_fill)(parlm_kernels *k)
{
    k->embed_fwd = embed_fwd;
    k->embed_bwd = embed_bwd;
    k->adamw = adamw;
    k->sumsq = sumsq;
    k->adamw_zero = adamw_zero;
}
