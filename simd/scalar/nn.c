/* simd/scalar/nn.c — reference transformer kernels: flash-style causal attention
 * (one query row at a time with an online softmax), fused softmax + cross-entropy,
 * embeddings, AdamW and sum of squares. Contracts in simd/kernels.h. */
#include <math.h>

#include "scalar.h"

#define KEY_TILE 32

static float dot(const float *a, const float *b, int64_t n)
{
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static void attn_fwd(int64_t tq, int64_t t0, int64_t hs, const float *q, int64_t ldq,
                     const float *k, const float *v, int64_t ldkv, float *out, int64_t ldo,
                     float *lse, float scale)
{
    float s[KEY_TILE];
    for (int64_t i = 0; i < tq; i++) {
        const float *qi = q + i * ldq;
        float *oi = out + i * ldo;
        int64_t nkeys = t0 + i + 1;
        float m = -INFINITY, l = 0.0f;
        for (int64_t d = 0; d < hs; d++)
            oi[d] = 0.0f;
        for (int64_t j0 = 0; j0 < nkeys; j0 += KEY_TILE) {
            int64_t nj = nkeys - j0 < KEY_TILE ? nkeys - j0 : KEY_TILE;
            float mt = -INFINITY;
            for (int64_t j = 0; j < nj; j++) {
                s[j] = dot(qi, k + (j0 + j) * ldkv, hs) * scale;
                mt = s[j] > mt ? s[j] : mt;
            }
            float mnew = mt > m ? mt : m;
            float corr = expf(m - mnew); /* rescales what the earlier tiles summed */
            l *= corr;
            for (int64_t d = 0; d < hs; d++)
                oi[d] *= corr;
            for (int64_t j = 0; j < nj; j++) {
                float p = expf(s[j] - mnew);
                l += p;
                const float *vj = v + (j0 + j) * ldkv;
                for (int64_t d = 0; d < hs; d++)
                    oi[d] += p * vj[d];
            }
            m = mnew;
        }
        float inv = 1.0f / l;
        for (int64_t d = 0; d < hs; d++)
            oi[d] *= inv;
        lse[i] = m + logf(l);
    }
}

static void attn_bwd(int64_t T, int64_t hs, const float *q, const float *k, const float *v,
                     int64_t ld, const float *out, const float *dout, int64_t ldo,
                     const float *lse, float *dq, float *dk, float *dv, int64_t ldd, float scale,
                     float *p)
{
    for (int64_t i = 0; i < T; i++) {
        const float *qi = q + i * ld, *doi = dout + i * ldo;
        float D = dot(doi, out + i * ldo, hs); /* = sum_j p_j dp_j */
        for (int64_t j = 0; j <= i; j++)
            p[j] = expf(dot(qi, k + j * ld, hs) * scale - lse[i]);
        for (int64_t j = 0; j <= i; j++) {
            const float *kj = k + j * ld, *vj = v + j * ld;
            float ds = p[j] * (dot(doi, vj, hs) - D) * scale;
            float *dqi = dq + i * ldd, *dkj = dk + j * ldd, *dvj = dv + j * ldd;
            for (int64_t d = 0; d < hs; d++) {
                dvj[d] += p[j] * doi[d];
                dqi[d] += ds * kj[d];
                dkj[d] += ds * qi[d];
            }
        }
    }
}

static void ce_fwd(int64_t rows, int64_t V, const float *logits, int64_t ld, const int32_t *target,
                   float *loss, float *lse)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *x = logits + r * ld;
        float mx = -INFINITY;
        for (int64_t j = 0; j < V; j++)
            mx = x[j] > mx ? x[j] : mx;
        float sum = 0.0f;
        for (int64_t j = 0; j < V; j++)
            sum += expf(x[j] - mx);
        lse[r] = mx + logf(sum);
        loss[r] = target[r] >= 0 ? lse[r] - x[target[r]] : lse[r];
    }
}

static void ce_bwd(int64_t rows, int64_t V, int64_t Vp, float *dlogits, const float *logits,
                   int64_t ld, const int32_t *target, const float *lse, const float *dloss)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *x = logits + r * ld;
        float *dx = dlogits + r * ld;
        for (int64_t j = 0; j < V; j++)
            dx[j] = expf(x[j] - lse[r]) * dloss[r];
        if (target[r] >= 0)
            dx[target[r]] -= dloss[r];
        for (int64_t j = V; j < Vp; j++)
            dx[j] = 0.0f;
    }
}

static void embed_fwd(int64_t rows, int64_t T, int64_t C, int64_t c0, int64_t c1,
                      const int32_t *tok, const float *wte, const float *wpe, float *out)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *e = wte + (int64_t)tok[r] * C, *p = wpe + (r % T) * C;
        for (int64_t c = c0; c < c1; c++)
            out[r * C + c] = e[c] + p[c];
    }
}

static void embed_bwd(int64_t rows, int64_t T, int64_t C, int64_t c0, int64_t c1,
                      const int32_t *tok, const float *dout, float *dwte, float *dwpe)
{
    for (int64_t r = 0; r < rows; r++) {
        float *e = dwte + (int64_t)tok[r] * C, *p = dwpe + (r % T) * C;
        for (int64_t c = c0; c < c1; c++) {
            e[c] += dout[r * C + c];
            p[c] += dout[r * C + c];
        }
    }
}

static void adamw(int64_t n, float *p, const float *g, float *m, float *v, float lr, float b1,
                  float b2, float eps, float wd, float bc1, float bc2, float gscale)
{
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i] * gscale;
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        float mh = m[i] / bc1, vh = v[i] / bc2;
        p[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * p[i]);
    }
}

static double adamw_sumsq(int64_t n, float *p, const float *g, float *m, float *v, float lr,
                          float b1, float b2, float eps, float wd, float bc1, float bc2,
                          float gscale)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += (double)g[i] * g[i];
    adamw(n, p, g, m, v, lr, b1, b2, eps, wd, bc1, bc2, gscale);
    return s;
}

static double sumsq(int64_t n, const float *x)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return s;
}

void parlm_scalar_nn_fill(parlm_kernels *k)
{
    k->attn_fwd = attn_fwd;
    k->attn_bwd = attn_bwd;
    k->ce_fwd = ce_fwd;
    k->ce_bwd = ce_bwd;
    k->embed_fwd = embed_fwd;
    k->embed_bwd = embed_bwd;
    k->adamw = adamw;
    k->sumsq = sumsq;
    k->adamw_sumsq = adamw_sumsq;
}
