/* tests/core/attn_ref.c — naive causal attention in double with the explicit T x T
 * softmax (see attn_ref.h), forward and backward, and the error bounds of a float
 * implementation derived from the same sums. */
#include <math.h>
#include <stdlib.h>

#include "attn_ref.h"
#include "harness.h"

/* P (T,T) of head (b, h) and the per-row score error bound ds (T) */
static void head_softmax(const float *qkv, int b, int h, int T, int C, int hs, double scale,
                         double *P, double *lse, double *ds)
{
    for (int i = 0; i < T; i++) {
        double m = -INFINITY, amax = 0;
        for (int j = 0; j <= i; j++) {
            double s = 0, a = 0;
            for (int d = 0; d < hs; d++) {
                s += (double)QKV(b, i, 0, h, d) * QKV(b, j, 1, h, d);
                a += fabs((double)QKV(b, i, 0, h, d) * QKV(b, j, 1, h, d));
            }
            P[(int64_t)i * T + j] = s * scale;
            m = fmax(m, s * scale);
            amax = fmax(amax, a * scale);
        }
        double sum = 0;
        for (int j = 0; j <= i; j++)
            sum += exp(P[(int64_t)i * T + j] - m);
        for (int j = 0; j < T; j++)
            P[(int64_t)i * T + j] = j <= i ? exp(P[(int64_t)i * T + j] - m) / sum : 0.0;
        lse[i] = m + log(sum);
        ds[i] = sum_err(hs) * amax + 2 * U_RND * fabs(m);
    }
}

attn_ref naive_attn_fwd(const float *qkv, int B, int T, int C, int NH)
{
    attn_ref r = {B, T, C, NH, C / NH, 1.0 / sqrt((double)(C / NH)), NULL, NULL, NULL, NULL,
                  NULL, NULL};
    int hs = r.hs;
    int64_t n = (int64_t)B * T * C, nl = (int64_t)B * NH * T;
    r.out = xmalloc((size_t)n * sizeof(double));
    r.tol_out = xmalloc((size_t)n * sizeof(double));
    r.lse = xmalloc((size_t)nl * sizeof(double));
    r.tol_lse = xmalloc((size_t)nl * sizeof(double));
    double *P = xmalloc((size_t)T * T * sizeof(double)), *ds = xmalloc((size_t)T * sizeof(double));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            double *lse = r.lse + ((int64_t)b * NH + h) * T;
            head_softmax(qkv, b, h, T, C, hs, r.scale, P, lse, ds);
            for (int i = 0; i < T; i++) {
                double vmax = 0;
                for (int j = 0; j <= i; j++)
                    for (int d = 0; d < hs; d++)
                        vmax = fmax(vmax, fabs((double)QKV(b, j, 2, h, d)));
                for (int d = 0; d < hs; d++) {
                    double o = 0;
                    for (int j = 0; j <= i; j++)
                        o += P[(int64_t)i * T + j] * QKV(b, j, 2, h, d);
                    int64_t at = ((int64_t)b * T + i) * C + h * hs + d;
                    r.out[at] = o;
                    r.tol_out[at] = vmax * (2 * ds[i] + sum_err(i + 1));
                }
                r.tol_lse[((int64_t)b * NH + h) * T + i] =
                    ds[i] + sum_err(i + 1) + 2 * U_RND * fabs(lse[i]);
            }
        }
    free(P), free(ds);
    return r;
}

/* Gradient of sum(out * dout) with respect to qkv, from the explicit softmax:
 * dV = P^T dO, dP = dO V^T, dS = P o (dP - rowsum(P o dP)), dQ = scale dS K,
 * dK = scale dS^T Q. Error bounds follow the same sums: eP bounds the relative error of a
 * float P (scores and lse), eS[i][j] the absolute error of a float dS. */
void naive_attn_bwd(attn_ref *r, const float *qkv, const float *dout)
{
    int B = r->B, T = r->T, C = r->C, NH = r->NH, hs = r->hs;
    double scale = r->scale;
    int64_t n3 = (int64_t)B * T * 3 * C;
    r->dqkv = xmalloc((size_t)n3 * sizeof(double));
    r->tol_dqkv = xmalloc((size_t)n3 * sizeof(double));
    for (int64_t i = 0; i < n3; i++)
        r->dqkv[i] = r->tol_dqkv[i] = 0;
    size_t tt = (size_t)T * T * sizeof(double);
    double *P = xmalloc(tt), *dS = xmalloc(tt), *eS = xmalloc(tt);
    double *ds = xmalloc(T * sizeof(double)), *lse = xmalloc(T * sizeof(double));
#define DO(b, t, h, d) ((double)dout[((int64_t)(b) * T + (t)) * C + (h) * hs + (d)])
#define DQKV(arr, b, t, part, h, d) \
    arr[((int64_t)(b) * T + (t)) * 3 * C + (part) * C + (h) * hs + (d)]
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            head_softmax(qkv, b, h, T, C, hs, scale, P, lse, ds);
            for (int i = 0; i < T; i++) {
                /* float P: exp(s - lse) with errors ds_i (s) + ds_i + err (lse) + 2u (exp) */
                double eP = 2 * ds[i] + sum_err(i + 1) + 4 * U_RND * (1 + fabs(lse[i]));
                double D = 0, Dabs = 0;
                for (int j = 0; j <= i; j++) {
                    double dp = 0;
                    for (int d = 0; d < hs; d++)
                        dp += DO(b, i, h, d) * QKV(b, j, 2, h, d);
                    dS[(int64_t)i * T + j] = dp;
                    D += P[(int64_t)i * T + j] * dp;
                }
                /* D_i = dO_i . out_i in the kernels: out carries tol_out, the dot err(hs) */
                double eD = 0;
                for (int d = 0; d < hs; d++) {
                    int64_t at = ((int64_t)b * T + i) * C + h * hs + d;
                    Dabs += fabs(DO(b, i, h, d) * r->out[at]);
                    eD += fabs(DO(b, i, h, d)) * r->tol_out[at];
                }
                eD += sum_err(hs) * Dabs;
                for (int j = 0; j <= i; j++) {
                    double dpabs = 0;
                    for (int d = 0; d < hs; d++)
                        dpabs += fabs(DO(b, i, h, d) * QKV(b, j, 2, h, d));
                    double p = P[(int64_t)i * T + j], dp = dS[(int64_t)i * T + j];
                    dS[(int64_t)i * T + j] = p * (dp - D);
                    eS[(int64_t)i * T + j] = fabs(p * (dp - D)) * (eP + 4 * U_RND) +
                                             p * (sum_err(hs) * dpabs + eD);
                }
                for (int j = i + 1; j < T; j++)
                    dS[(int64_t)i * T + j] = eS[(int64_t)i * T + j] = 0;
            }
            for (int i = 0; i < T; i++)
                for (int d = 0; d < hs; d++) {
                    double gq = 0, tq = 0, aq = 0;
                    for (int j = 0; j <= i; j++) {
                        double kj = QKV(b, j, 1, h, d);
                        gq += dS[(int64_t)i * T + j] * kj;
                        tq += eS[(int64_t)i * T + j] * fabs(kj);
                        aq += fabs(dS[(int64_t)i * T + j] * kj);
                    }
                    DQKV(r->dqkv, b, i, 0, h, d) = scale * gq;
                    DQKV(r->tol_dqkv, b, i, 0, h, d) = scale * (tq + sum_err(i + 1) * aq);
                }
            for (int j = 0; j < T; j++)
                for (int d = 0; d < hs; d++) {
                    double gk = 0, tk = 0, ak = 0, gv = 0, av = 0, tv = 0;
                    for (int i = j; i < T; i++) {
                        double qi = QKV(b, i, 0, h, d), p = P[(int64_t)i * T + j];
                        double eP = 2 * ds[i] + sum_err(i + 1) + 4 * U_RND * (1 + fabs(lse[i]));
                        gk += dS[(int64_t)i * T + j] * qi;
                        tk += eS[(int64_t)i * T + j] * fabs(qi);
                        ak += fabs(dS[(int64_t)i * T + j] * qi);
                        gv += p * DO(b, i, h, d);
                        av += fabs(p * DO(b, i, h, d));
                        tv += eP * fabs(p * DO(b, i, h, d));
                    }
                    DQKV(r->dqkv, b, j, 1, h, d) = scale * gk;
                    DQKV(r->tol_dqkv, b, j, 1, h, d) = scale * (tk + sum_err(T - j) * ak);
                    DQKV(r->dqkv, b, j, 2, h, d) = gv;
                    DQKV(r->tol_dqkv, b, j, 2, h, d) = tv + sum_err(T - j) * av;
                }
        }
#undef DO
#undef DQKV
    free(P), free(dS), free(eS), free(ds), free(lse);
}

void attn_ref_free(attn_ref *r)
{
    free(r->out), free(r->lse), free(r->tol_out), free(r->tol_lse);
    free(r->dqkv), free(r->tol_dqkv);
}

