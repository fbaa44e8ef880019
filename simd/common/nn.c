/* simd/common/nn.c — cross-entropy, embeddings, AdamW (plain and fused with zeroing and
 * the gradient norm) and the sum of squares, written once over "vec.h" + "vec_nn.h" and
 * compiled once per ISA (simd/local.am); contracts in simd/kernels.h. The one idea: AdamW keeps the
 * reference's order of operations (no FMA), so with correctly rounded div/sqrt every ISA
 * gives the scalar reference's bits. Attention is in simd/common/attn.c. */
#include <math.h>
#include <stdint.h>

#include "vec_nn.h"

#include "../kernels.h"

void VEC_ISA_NAME(nn_fill)(parlm_kernels *k);

#define L VF_LANES

/* ---- cross-entropy ---------------------------------------------------------------- */

#define CE_BLOCK 2048 /* a block of logits (8 KB) is maxed, then exp-summed while in L1 */

/* per row: lse = max + log(sum exp(x - max)), the max taken per block and the running sum
 * rescaled when it grows (one read of the block from memory, one from L1) */
static void ce_fwd(int64_t rows, int64_t V, const float *logits, int64_t ld, const int32_t *target,
                   float *loss, float *lse)
{
    const vf ninf = vf_set1(-INFINITY);
    for (int64_t r = 0; r < rows; r++) {
        const float *x = logits + r * ld;
        float m = -INFINITY;
        vf s0 = vf_zero(), s1 = s0, s2 = s0, s3 = s0;
        for (int64_t b0 = 0; b0 < V; b0 += CE_BLOCK) {
            int64_t n = V - b0 < CE_BLOCK ? V - b0 : CE_BLOCK;
            const float *xb = x + b0;
            vf m0 = ninf, m1 = ninf;
            int64_t j = 0;
            for (; j + 2 * L <= n; j += 2 * L) {
                m0 = vf_max(m0, vf_load(xb + j));
                m1 = vf_max(m1, vf_load(xb + j + L));
            }
            for (; j < n; j += L)
                m0 = vf_max(m0, vf_load_n_fill(xb + j, n - j, -INFINITY));
            float bm = vf_hmax(vf_max(m0, m1));
            if (bm > m) {
                vf c = vf_set1(expf(m - bm)); /* 0 on the first block */
                s0 = vf_mul(s0, c), s1 = vf_mul(s1, c);
                s2 = vf_mul(s2, c), s3 = vf_mul(s3, c);
                m = bm;
            }
            if (m == -INFINITY)
                continue; /* every logit so far is -inf: nothing to add */
            vf vmax = vf_set1(m);
            for (j = 0; j + 4 * L <= n; j += 4 * L) {
                s0 = vf_add(s0, vf_exp(vf_sub(vf_load(xb + j), vmax)));
                s1 = vf_add(s1, vf_exp(vf_sub(vf_load(xb + j + L), vmax)));
                s2 = vf_add(s2, vf_exp(vf_sub(vf_load(xb + j + 2 * L), vmax)));
                s3 = vf_add(s3, vf_exp(vf_sub(vf_load(xb + j + 3 * L), vmax)));
            }
            for (; j < n; j += L) /* lanes past n are -inf: exp gives 0 */
                s0 = vf_add(s0, vf_exp(vf_sub(vf_load_n_fill(xb + j, n - j, -INFINITY), vmax)));
        }
        float sum = vf_hsum(vf_add(vf_add(s0, s1), vf_add(s2, s3)));
        lse[r] = m + logf(sum);
        loss[r] = target[r] >= 0 ? lse[r] - x[target[r]] : lse[r];
    }
}

/* dx[j] = exp(x[j] - lse) dloss - [j == target] dloss (j < V), 0 up to Vp; dx may be x */
static void ce_bwd(int64_t rows, int64_t V, int64_t Vp, float *dlogits, const float *logits,
                   int64_t ld, const int32_t *target, const float *lse, const float *dloss)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *x = logits + r * ld;
        float *dx = dlogits + r * ld;
        vf vl = vf_set1(lse[r]), vdl = vf_set1(dloss[r]);
        int64_t j = 0;
        for (; j + 2 * L <= V; j += 2 * L) {
            vf a = vf_exp(vf_sub(vf_load(x + j), vl));
            vf b = vf_exp(vf_sub(vf_load(x + j + L), vl));
            vf_store(dx + j, vf_mul(a, vdl));
            vf_store(dx + j + L, vf_mul(b, vdl));
        }
        for (; j < V; j += L) {
            vf a = vf_exp(vf_sub(vf_load_n(x + j, V - j), vl));
            vf_store_n(dx + j, V - j, vf_mul(a, vdl));
        }
        if (target[r] >= 0)
            dx[target[r]] -= dloss[r];
        for (j = V; j < Vp; j += L)
            vf_store_n(dx + j, Vp - j, vf_zero());
    }
}

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

/* adamw and the sum of g^2 in one pass: the four arrays are read once and p, m, v
 * written once, instead of two passes (norm, update) over the gradient; g is left as it
 * was (the next backward writes it rather than adding to zeros: one write fewer) */
static double adamw_sumsq(int64_t n, float *p, const float *g, float *m, float *v, float lr,
                          float b1, float b2, float eps, float wd, float bc1, float bc2,
                          float gscale)
{
    adamw_consts c = adamw_set(lr, b1, b2, eps, wd, bc1, bc2, gscale);
    vd acc = vd_zero();
    int64_t i = 0;
    for (; i + L <= n; i += L) {
        vf gi = vf_load(g + i);
        acc = vd_add_sq(acc, gi);
        adamw_v(&c, L, p + i, gi, m + i, v + i);
    }
    if (i < n) {
        vf gi = vf_load_n(g + i, n - i);
        acc = vd_add_sq(acc, gi);
        adamw_v(&c, n - i, p + i, gi, m + i, v + i);
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
        a0 = vd_add_sq_at(a0, x + i);
        a1 = vd_add_sq_at(a1, x + i + L);
    }
    for (; i < n; i += L)
        a0 = vd_add_sq(a0, vf_load_n(x + i, n - i));
    return vd_hsum(a0) + vd_hsum(a1);
}

void VEC_ISA_NAME(nn_fill)(parlm_kernels *k)
{
    k->ce_fwd = ce_fwd;
    k->ce_bwd = ce_bwd;
    k->embed_fwd = embed_fwd;
    k->embed_bwd = embed_bwd;
    k->adamw = adamw;
    k->sumsq = sumsq;
    k->adamw_sumsq = adamw_sumsq;
}
