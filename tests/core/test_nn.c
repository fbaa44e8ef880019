/* tests/test_nn.c — include/parlm/nn.h and the transformer kernels of every kernel set:
 * attention (forward, backward, KV-cache), cross-entropy, embeddings, AdamW, sum of squares.
 * References are naive double-precision loops written here (attention with the explicit
 * T x T softmax), finite differences, and the scalar kernel set. Tolerances are error
 * bounds computed from the data: a float sum of n terms is within lambda sqrt(n) u
 * sum|terms| of the exact sum except with probability < 2 exp(-lambda^2 / 2) (Higham and
 * Mary, 2019); lambda = 8 throughout, u = 2^-24 is the unit roundoff of f32. */
#include <check.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/core/dispatch.h"
#include "parlm.h"
#include "../testutil.h"

#define U_RND (FLT_EPSILON / 2.0) /* unit roundoff of f32 */
#define LAMBDA 8.0

/* probabilistic error factor of a float sum of n terms, relative to sum|terms|, plus a
 * few u for the elementwise roundings around it */
static double sum_err(int64_t n) { return (LAMBDA * sqrt((double)n) + 8.0) * U_RND; }

/* ---- helpers --------------------------------------------------------------------------------- */

static int supported_isas(parlm_isa *out)
{
    int n = 0;
    for (int i = 0; i < PARLM_ISA_COUNT; i++)
        if (parlm_isa_supported((parlm_isa)i))
            out[n++] = (parlm_isa)i;
    return n;
}

static parlm_kernels table_of(parlm_isa isa)
{
    parlm_kernels k;
    ck_assert_int_eq(parlm_kernels_for(isa, &k), PARLM_OK);
    return k;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n > 0 ? n : 1);
    ck_assert_ptr_nonnull(p);
    return p;
}

/* Asserts |got[i] - ref[i]| <= tol[i] for i < n (NaN fails); returns max |diff| / tol. */
static double expect_close(const char *ctx, const char *what, const float *got,
                           const double *ref, const double *tol, int64_t n)
{
    double worst = 0.0;
    int64_t wi = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        double ratio = tol[i] > 0 ? d / tol[i] : (d > 0 ? INFINITY : 0.0);
        if (!(ratio <= worst)) { /* NaN lands here */
            worst = isnan(ratio) ? INFINITY : ratio;
            wi = i;
        }
    }
    ck_assert_msg(worst <= 1.0, "%s: %s[%lld] = %.9g, reference %.9g, |diff| %.3g > tol %.3g",
                  ctx, what, (long long)wi, (double)got[wi], ref[wi],
                  fabs((double)got[wi] - ref[wi]), tol[wi]);
    return worst;
}

static void fill_range(float *x, int64_t n, uint64_t seed, float lo, float hi)
{
    tu_fill(x, n, seed);
    for (int64_t i = 0; i < n; i++)
        x[i] = lo + (x[i] + 1.0f) * 0.5f * (hi - lo);
}

/* ---- naive attention in double ----------------------------------------------------------
 * qkv (B,T,3C), head h of row t: q = qkv[t, h hs ..], k = qkv[t, C + h hs ..], v at 2C.
 * Explicit scores S (T,T) with the causal mask, explicit softmax P, out = P V. Also returns
 * the error bounds of a float implementation, from the sums it computes (per row i):
 *   ds_i   = err(hs) * scale * max_j sum_d |q_id k_jd|      (scores, one dot product each)
 *   out:   |v|max (2 ds_i + err(i+1))                          (softmax, then a sum of i+1)
 *   lse:   ds_i + err(i+1) + 2 u |lse_i|                                                 */

typedef struct attn_ref {
    int B, T, C, NH, hs;
    double scale;
    double *out, *lse;        /* (B,T,C), (B,NH,T) */
    double *tol_out, *tol_lse;
    double *dqkv, *tol_dqkv;  /* (B,T,3C), filled by naive_attn_bwd */
} attn_ref;

#define QKV(b, t, part, h, d) qkv[((int64_t)(b) * T + (t)) * 3 * C + (part) * C + (h) * hs + (d)]

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

static attn_ref naive_attn_fwd(const float *qkv, int B, int T, int C, int NH)
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
static void naive_attn_bwd(attn_ref *r, const float *qkv, const float *dout)
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

static void attn_ref_free(attn_ref *r)
{
    free(r->out), free(r->lse), free(r->tol_out), free(r->tol_lse);
    free(r->dqkv), free(r->tol_dqkv);
}

/* Keys of the last head (when NH > 1) grow along the sequence, |k_t| ~ 1 + t / 4, so the
 * running max of the online softmax keeps rising and its rescaling paths run. */
static void grow_last_head_keys(float *qkv, int B, int T, int C, int NH)
{
    if (NH < 2)
        return;
    int hs = C / NH;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int d = 0; d < hs; d++)
                QKV(b, t, 1, NH - 1, d) *= 1.0f + 0.25f * (float)t;
}

/* shapes of the attention sweep */
static const int A_T[] = {1, 2, 7, 17, 64, 127, 200};
static const int A_HS[] = {1, 7, 16, 32, 64, 80, 128};
#define N_AT ((int)(sizeof A_T / sizeof A_T[0]))
#define N_AHS ((int)(sizeof A_HS / sizeof A_HS[0]))

START_TEST(attention_forward_matches_naive_double)
{
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    double worst[PARLM_ISA_COUNT] = {0};
    for (int ti = 0; ti < N_AT; ti++)
        for (int hi = 0; hi < N_AHS; hi++)
            for (int B = 1; B <= 2; B++)
                for (int NH = 1; NH <= 3; NH++) {
                    int T = A_T[ti], hs = A_HS[hi], C = NH * hs;
                    /* the full product is 294 shapes; the longest sequences get one
                     * (B, NH) pair each, rotating, to keep the naive loops short */
                    if (T >= 127 && (B - 1) * 3 + NH - 1 != (ti + hi) % 6)
                        continue;
                    int64_t n3 = (int64_t)B * T * 3 * C, n = (int64_t)B * T * C;
                    float *qkv = tu_alloc_nan(n3);
                    fill_range(qkv, n3, 1000 + ti * 31 + hi * 7 + B * 3 + NH, -2.0f, 2.0f);
                    grow_last_head_keys(qkv, B, T, C, NH);
                    attn_ref r = naive_attn_fwd(qkv, B, T, C, NH);
                    float *out = tu_alloc_nan(n), *lse = tu_alloc_nan((int64_t)B * NH * T);
                    for (int ii = 0; ii < ni; ii++) {
                        ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
                        char ctx[96];
                        snprintf(ctx, sizeof ctx, "%s B=%d T=%d NH=%d hs=%d",
                                 parlm_isa_name(isas[ii]), B, T, NH, hs);
                        for (int64_t i = 0; i < n; i++)
                            out[i] = NAN; /* out and lse are write-only */
                        ck_assert_int_eq(parlm_attention_forward(out, lse, qkv, B, T, C, NH),
                                         PARLM_OK);
                        double w1 = expect_close(ctx, "out", out, r.out, r.tol_out, n);
                        double w2 = expect_close(ctx, "lse", lse, r.lse, r.tol_lse,
                                                 (int64_t)B * NH * T);
                        worst[ii] = fmax(worst[ii], fmax(w1, w2));
                    }
                    attn_ref_free(&r);
                    parlm_free(qkv), parlm_free(out), parlm_free(lse);
                }
    for (int ii = 0; ii < ni; ii++)
        printf("attention forward %-6s: worst |err| / bound = %.3f\n", parlm_isa_name(isas[ii]),
               worst[ii]);
    parlm_isa_select(saved);
}
END_TEST

START_TEST(attention_backward_matches_naive_double)
{
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    double worst[PARLM_ISA_COUNT] = {0};
    for (int ti = 0; ti < N_AT; ti++)
        for (int hi = 0; hi < N_AHS; hi++) {
            int combo = (ti + 2 * hi) % 6; /* rotate (B, NH) over the T x hs grid */
            int B = 1 + combo / 3, NH = 1 + combo % 3;
            int T = A_T[ti], hs = A_HS[hi], C = NH * hs;
            if (T == 200 && hs > 32)
                continue; /* the naive backward is O(T^2 hs): 127 covers the long case */
            int64_t n3 = (int64_t)B * T * 3 * C, n = (int64_t)B * T * C;
            float *qkv = tu_alloc_nan(n3), *dout = tu_alloc_nan(n);
            fill_range(qkv, n3, 2000 + ti * 31 + hi, -2.0f, 2.0f);
            grow_last_head_keys(qkv, B, T, C, NH);
            fill_range(dout, n, 3000 + ti * 31 + hi, -1.0f, 1.0f);
            attn_ref r = naive_attn_fwd(qkv, B, T, C, NH);
            naive_attn_bwd(&r, qkv, dout);
            float *out = tu_alloc_nan(n), *lse = tu_alloc_nan((int64_t)B * NH * T);
            float *dqkv = tu_alloc_nan(n3), *init = tu_alloc_nan(n3);
            double *ref = xmalloc((size_t)n3 * sizeof(double));
            fill_range(init, n3, 4000 + ti, -1.0f, 1.0f);
            for (int64_t i = 0; i < n3; i++) /* backward accumulates onto init */
                ref[i] = r.dqkv[i] + init[i];
            for (int ii = 0; ii < ni; ii++) {
                ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
                char ctx[96];
                snprintf(ctx, sizeof ctx, "%s B=%d T=%d NH=%d hs=%d", parlm_isa_name(isas[ii]),
                         B, T, NH, hs);
                ck_assert_int_eq(parlm_attention_forward(out, lse, qkv, B, T, C, NH), PARLM_OK);
                memcpy(dqkv, init, (size_t)n3 * sizeof(float));
                ck_assert_int_eq(
                    parlm_attention_backward(dqkv, dout, qkv, out, lse, B, T, C, NH), PARLM_OK);
                /* the kernels may add the terms onto init one at a time (the scalar one
                 * does): a float sum of init and <= T terms */
                double *tol = xmalloc((size_t)n3 * sizeof(double));
                for (int64_t i = 0; i < n3; i++)
                    tol[i] = r.tol_dqkv[i] + sum_err(T + 1) * fabs(init[i]);
                worst[ii] = fmax(worst[ii], expect_close(ctx, "dqkv", dqkv, ref, tol, n3));
                free(tol);
            }
            attn_ref_free(&r);
            free(ref);
            parlm_free(qkv), parlm_free(dout), parlm_free(out), parlm_free(lse);
            parlm_free(dqkv), parlm_free(init);
        }
    for (int ii = 0; ii < ni; ii++)
        printf("attention backward %-6s: worst |err| / bound = %.3f\n",
               parlm_isa_name(isas[ii]), worst[ii]);
    parlm_isa_select(saved);
}
END_TEST

/* L(qkv) = sum(out * G) by the naive double forward */
static double attn_loss(const float *qkv, const float *G, int B, int T, int C, int NH)
{
    attn_ref r = naive_attn_fwd(qkv, B, T, C, NH);
    double L = 0;
    for (int64_t i = 0; i < (int64_t)B * T * C; i++)
        L += r.out[i] * G[i];
    attn_ref_free(&r);
    return L;
}

START_TEST(attention_backward_matches_finite_differences)
{
    /* independent of the derivation above: central differences of the double forward,
     * h = 1e-3 (truncation h^2 |L'''| ~ 1e-6, rounding 1e-16 / h), against the float
     * backward of every kernel set; bound 2e-4 + 1e-3 |g|: the float backward's error on
     * these O(1) inputs is ~1e-6 (see the test above), so this catches any wrong term. */
    const int B = 2, T = 6, C = 10, NH = 2;
    int64_t n3 = (int64_t)B * T * 3 * C, n = (int64_t)B * T * C;
    float *qkv = tu_alloc_nan(n3), *G = tu_alloc_nan(n), *out = tu_alloc_nan(n);
    float *lse = tu_alloc_nan((int64_t)B * NH * T), *dqkv = tu_alloc_nan(n3);
    fill_range(qkv, n3, 77, -1.5f, 1.5f);
    fill_range(G, n, 78, -1.0f, 1.0f);
    double *fd = xmalloc((size_t)n3 * sizeof(double)), *tol = xmalloc((size_t)n3 * sizeof(double));
    float *x = tu_alloc_nan(n3);
    const double h = 1e-3;
    for (int64_t i = 0; i < n3; i++) {
        /* perturb in double: the forward below reads floats, so step by exact floats */
        memcpy(x, qkv, (size_t)n3 * sizeof(float));
        float xp = (float)(qkv[i] + h), xm = (float)(qkv[i] - h);
        x[i] = xp;
        double lp = attn_loss(x, G, B, T, C, NH);
        x[i] = xm;
        double lm = attn_loss(x, G, B, T, C, NH);
        fd[i] = (lp - lm) / ((double)xp - (double)xm);
        tol[i] = 2e-4 + 1e-3 * fabs(fd[i]);
    }
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    for (int ii = 0; ii < ni; ii++) {
        ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
        ck_assert_int_eq(parlm_attention_forward(out, lse, qkv, B, T, C, NH), PARLM_OK);
        for (int64_t i = 0; i < n3; i++)
            dqkv[i] = 0.0f;
        ck_assert_int_eq(parlm_attention_backward(dqkv, G, qkv, out, lse, B, T, C, NH),
                         PARLM_OK);
        expect_close(parlm_isa_name(isas[ii]), "dqkv vs finite differences", dqkv, fd, tol, n3);
    }
    parlm_isa_select(saved);
    free(fd), free(tol);
    parlm_free(qkv), parlm_free(G), parlm_free(out), parlm_free(lse), parlm_free(dqkv);
    parlm_free(x);
}
END_TEST

START_TEST(attention_cached_prefill_and_decode_equal_forward)
{
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    static const int Ts[] = {1, 7, 40, 130};
    static const int HS[] = {7, 64};
    for (int ti = 0; ti < 4; ti++)
        for (int hi = 0; hi < 2; hi++) {
            int T = Ts[ti], hs = HS[hi], NH = 3, C = NH * hs;
            int64_t n3 = (int64_t)T * 3 * C, n = (int64_t)T * C;
            float *qkv = tu_alloc_nan(n3), *kc = tu_alloc_nan(n), *vc = tu_alloc_nan(n);
            fill_range(qkv, n3, 500 + ti * 2 + hi, -2.0f, 2.0f);
            for (int t = 0; t < T; t++) /* the caches hold k and v rows C floats apart */
                for (int c = 0; c < C; c++) {
                    kc[(int64_t)t * C + c] = qkv[(int64_t)t * 3 * C + C + c];
                    vc[(int64_t)t * C + c] = qkv[(int64_t)t * 3 * C + 2 * C + c];
                }
            attn_ref r = naive_attn_fwd(qkv, 1, T, C, NH);
            float *ref = tu_alloc_nan(n), *pre = tu_alloc_nan(n), *dec = tu_alloc_nan(n);
            float *lse = tu_alloc_nan((int64_t)NH * T);
            double *tol = xmalloc((size_t)n * sizeof(double));
            double *refd = xmalloc((size_t)n * sizeof(double));
            for (int ii = 0; ii < ni; ii++) {
                ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
                char ctx[96];
                snprintf(ctx, sizeof ctx, "%s T=%d hs=%d", parlm_isa_name(isas[ii]), T, hs);
                ck_assert_int_eq(parlm_attention_forward(ref, lse, qkv, 1, T, C, NH), PARLM_OK);
                ck_assert_int_eq(parlm_attention_cached(pre, qkv, 3 * C, kc, vc, 0, T, C, NH),
                                 PARLM_OK);
                for (int t = 0; t < T; t++) /* one token at a time, queries from qkv rows */
                    ck_assert_int_eq(parlm_attention_cached(dec + (int64_t)t * C,
                                                            qkv + (int64_t)t * 3 * C, 3 * C, kc,
                                                            vc, t, 1, C, NH),
                                     PARLM_OK);
                /* both are float evaluations of the same exact value: each is within
                 * tol_out of it, so they are within 2 tol_out of each other */
                for (int64_t i = 0; i < n; i++) {
                    refd[i] = ref[i];
                    tol[i] = 2 * r.tol_out[i];
                }
                expect_close(ctx, "prefill vs forward", pre, refd, tol, n);
                expect_close(ctx, "decode vs forward", dec, refd, tol, n);
            }
            attn_ref_free(&r);
            free(tol), free(refd);
            parlm_free(qkv), parlm_free(kc), parlm_free(vc), parlm_free(ref), parlm_free(pre);
            parlm_free(dec), parlm_free(lse);
        }
    parlm_isa_select(saved);
}
END_TEST

/* ---- cross-entropy --------------------------------------------------------------------------- */

START_TEST(crossentropy_matches_naive_double)
{
    static const int Vs[] = {1, 2, 7, 255, 50257};
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    const int64_t N = 5;
    for (int vi = 0; vi < 5; vi++)
        for (int big = 0; big < 2; big++) {
            int V = Vs[vi], Vp = V + 3 + (V > 1000 ? 44 : 0); /* 50257 -> 50304, as GPT-2 */
            int64_t nl = N * Vp;
            float *x = tu_alloc_nan(nl), *g = tu_alloc_nan(nl), *gi = tu_alloc_nan(nl);
            float *loss = tu_alloc_nan(N), *lse = tu_alloc_nan(N), dloss[5];
            int32_t tgt[5];
            /* big: logits in [-80, 80] (exp overflows float without the max shift) */
            fill_range(x, nl, 900 + vi * 2 + big, big ? -80.0f : -4.0f, big ? 80.0f : 4.0f);
            for (int64_t r = 0; r < N; r++) {
                tgt[r] = (int32_t)((r * 7919 + 13) % V);
                dloss[r] = (float)(r - 2) * 0.375f; /* per row, one of them 0 */
            }
            tgt[N - 1] = V - 1; /* the last logit is the row's max: a lost tail shows */
            x[(N - 1) * Vp + V - 1] = big ? 90.0f : 8.0f;
            /* reference, and bounds: the float sum of V exponentials is within
             * (V + 8) u of its exact value (deterministic: n u bounds any order of
             * summation), so |d lse| <= (V + 8) u + 2 u |lse|; then
             * dlogit_j = dloss (p_j - [j = t]) with p_j = exp(x_j - lse) carrying relative
             * error |d lse| + 2 u (1 + |x_j - lse|). */
            double rl[5], rlse[5], tl[5], tlse[5];
            double *rg = xmalloc((size_t)nl * sizeof(double));
            double *tg = xmalloc((size_t)nl * sizeof(double));
            for (int64_t r = 0; r < N; r++) {
                const float *xr = x + r * Vp;
                double m = -INFINITY, s = 0;
                for (int j = 0; j < V; j++)
                    m = fmax(m, xr[j]);
                for (int j = 0; j < V; j++)
                    s += exp(xr[j] - m);
                rlse[r] = m + log(s);
                rl[r] = rlse[r] - xr[tgt[r]];
                double el = (V + 8) * U_RND + 2 * U_RND * fabs(rlse[r]);
                tlse[r] = el;
                tl[r] = el + 2 * U_RND * (fabs(rl[r]) + fabs(xr[tgt[r]]));
                for (int j = 0; j < Vp; j++) {
                    int64_t at = r * Vp + j;
                    if (j >= V) {
                        rg[at] = tg[at] = 0; /* padding: exactly 0 */
                        continue;
                    }
                    double p = exp(xr[j] - rlse[r]);
                    rg[at] = dloss[r] * (p - (j == tgt[r]));
                    tg[at] = fabs(dloss[r]) * (p * (el + 4 * U_RND * (1 + fabs(xr[j] - rlse[r]))) +
                                               2 * U_RND * (1 + p));
                }
            }
            for (int ii = 0; ii < ni; ii++) {
                ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
                char ctx[96];
                snprintf(ctx, sizeof ctx, "%s V=%d Vp=%d%s", parlm_isa_name(isas[ii]), V, Vp,
                         big ? " +-80" : "");
                for (int64_t r = 0; r < N; r++)
                    loss[r] = lse[r] = NAN;
                ck_assert_int_eq(parlm_crossentropy_forward(loss, lse, x, tgt, N, V, Vp), PARLM_OK);
                expect_close(ctx, "loss", loss, rl, tl, N);
                expect_close(ctx, "lse", lse, rlse, tlse, N);
                for (int64_t i = 0; i < nl; i++)
                    g[i] = NAN; /* dlogits is written, padding included */
                ck_assert_int_eq(parlm_crossentropy_backward(g, x, tgt, lse, dloss, N, V, Vp),
                                 PARLM_OK);
                expect_close(ctx, "dlogits", g, rg, tg, nl);
                for (int64_t r = 0; r < N; r++)
                    for (int j = V; j < Vp; j++)
                        ck_assert_msg(g[r * Vp + j] == 0.0f && !signbit(g[r * Vp + j]),
                                      "%s: padding dlogits[%lld][%d] = %g", ctx, (long long)r, j,
                                      (double)g[r * Vp + j]);
                for (int64_t i = 0; i < nl; i++)
                    ck_assert_msg(isfinite(g[i]), "%s: dlogits[%lld] not finite", ctx,
                                  (long long)i);
                /* in place: the same kernel reading each logit before writing it */
                memcpy(gi, x, (size_t)nl * sizeof(float));
                ck_assert_int_eq(parlm_crossentropy_backward(gi, gi, tgt, lse, dloss, N, V, Vp),
                                 PARLM_OK);
                ck_assert_msg(memcmp(gi, g, (size_t)nl * sizeof(float)) == 0,
                              "%s: in place differs from out of place", ctx);
            }
            free(rg), free(tg);
            parlm_free(x), parlm_free(g), parlm_free(gi), parlm_free(loss), parlm_free(lse);
        }
    parlm_isa_select(saved);
}
END_TEST

/* ---- vocab-parallel cross-entropy and embedding ------------------------------------------------
 * The full vocabulary (N, Vp) split into ns column slices of Vp/ns, as tensor parallelism
 * holds it: the per-slice partials, gathered in slice order and combined, against
 * parlm_crossentropy_forward/backward on the whole rows. */

/* logits (N, Vp) -> the ns slices packed one after another, each (N, Vp/ns) */
static void split_cols(float *dst, const float *src, int64_t N, int Vp, int ns)
{
    int Vs = Vp / ns;
    for (int s = 0; s < ns; s++)
        for (int64_t r = 0; r < N; r++)
            memcpy(dst + ((int64_t)s * N + r) * Vs, src + r * Vp + (int64_t)s * Vs,
                   (size_t)Vs * sizeof(float));
}

/* losses and lse through the vocab-parallel ops; part scratch (ns, N, 2) */
static void vp_forward(float *loss, float *lse, const float *sl, const int32_t *tgt, int64_t N,
                       int V, int Vp, int ns, float *part)
{
    int Vs = Vp / ns;
    for (int s = 0; s < ns; s++)
        ck_assert_int_eq(parlm_crossentropy_vp_partial(part + (int64_t)s * N * 2,
                                                       sl + (int64_t)s * N * Vs, tgt, N, s * Vs,
                                                       Vs, V),
                         PARLM_OK);
    ck_assert_int_eq(parlm_crossentropy_vp_combine(loss, lse, part, N, ns), PARLM_OK);
}

START_TEST(crossentropy_vocab_parallel_matches_full)
{
    static const int64_t Ns[] = {1, 7, 17, 127};
    static const int Vv[] = {1, 5, 17, 127, 1000};
    for (int ni = 0; ni < 4; ni++)
        for (int vi = 0; vi < 5; vi++)
            for (int ns = 1; ns <= 4; ns++) {
                int64_t N = Ns[ni];
                int V = Vv[vi];
                /* padding up to a multiple of 16 ns (at least one padded column when
                 * ns > 1): V = 5 over 4 slices leaves two slices of padding only */
                int Vp = (V + 16 * ns) / (16 * ns) * (16 * ns), Vs = Vp / ns;
                int64_t nl = N * Vp;
                float *x = tu_alloc_nan(nl), *sl = tu_alloc_nan(nl), *g = tu_alloc_nan(nl);
                float *gs = tu_alloc_nan(nl), *gsplit = tu_alloc_nan(nl);
                float *loss = tu_alloc_nan(N), *lse = tu_alloc_nan(N);
                float *vloss = tu_alloc_nan(N), *vlse = tu_alloc_nan(N);
                float *part = tu_alloc_nan(N * 2 * ns), *dloss = tu_alloc_nan(N);
                int32_t *tgt = xmalloc((size_t)N * sizeof(int32_t));
                fill_range(x, nl, 3000 + ni * 40 + vi * 4 + ns, -6.0f, 6.0f);
                for (int64_t r = 0; r < N; r++) {
                    tgt[r] = (int32_t)((r * 7919 + 5 * ns) % V);
                    dloss[r] = (float)((r % 5) - 2) * 0.25f;
                }
                char ctx[96];
                snprintf(ctx, sizeof ctx, "N=%lld V=%d Vp=%d slices=%d", (long long)N, V, Vp, ns);
                ck_assert_int_eq(parlm_crossentropy_forward(loss, lse, x, tgt, N, V, Vp),
                                 PARLM_OK);
                split_cols(sl, x, N, Vp, ns);
                vp_forward(vloss, vlse, sl, tgt, N, V, Vp, ns, part);
                /* both are within (V + 8) u + 2 u |lse| of the exact lse (the bound of
                 * crossentropy_matches_naive_double: a float sum of V exponentials, log and
                 * add); grouping the sum by slices and combining them in double adds a few u
                 * |lse|. The loss subtracts the same target logit: 2 u (|loss| + |x_t|). */
                for (int64_t r = 0; r < N; r++) {
                    double el = 2 * (V + 8) * U_RND + 6 * U_RND * fabs(lse[r]);
                    double xt = x[r * Vp + tgt[r]];
                    ck_assert_msg(fabs((double)vlse[r] - lse[r]) <= el,
                                  "%s: lse[%lld] %.9g vs full %.9g", ctx, (long long)r,
                                  (double)vlse[r], (double)lse[r]);
                    ck_assert_msg(fabs((double)vloss[r] - loss[r]) <=
                                      el + 4 * U_RND * (fabs(loss[r]) + fabs(xt)),
                                  "%s: loss[%lld] %.9g vs full %.9g", ctx, (long long)r,
                                  (double)vloss[r], (double)loss[r]);
                }
                /* backward from the full lse: the slice kernels compute each column's
                 * exp(x - lse) dloss exactly as the full row does, so bitwise equal */
                ck_assert_int_eq(parlm_crossentropy_backward(g, x, tgt, lse, dloss, N, V, Vp),
                                 PARLM_OK);
                for (int s = 0; s < ns; s++) {
                    float *d = gs + (int64_t)s * N * Vs;
                    ck_assert_int_eq(parlm_crossentropy_vp_backward(d, sl + (int64_t)s * N * Vs,
                                                                    tgt, lse, dloss, N, s * Vs,
                                                                    Vs, V),
                                     PARLM_OK);
                }
                split_cols(gsplit, g, N, Vp, ns);
                ck_assert_msg(memcmp(gs, gsplit, (size_t)nl * sizeof(float)) == 0,
                              "%s: slice dlogits differ from the full ones", ctx);
                /* and in place, from the combined lse: within the lse difference el times
                 * p |dloss| (plus the roundings of exp and the product); padding exactly 0 */
                for (int s = 0; s < ns; s++) {
                    float *d = sl + (int64_t)s * N * Vs;
                    ck_assert_int_eq(parlm_crossentropy_vp_backward(d, d, tgt, vlse, dloss, N,
                                                                    s * Vs, Vs, V),
                                     PARLM_OK);
                }
                for (int s = 0; s < ns; s++)
                    for (int64_t r = 0; r < N; r++)
                        for (int j = 0; j < Vs; j++) {
                            int col = s * Vs + j;
                            float got = sl[((int64_t)s * N + r) * Vs + j], ref = g[r * Vp + col];
                            if (col >= V) {
                                ck_assert_msg(got == 0.0f && !signbit(got),
                                              "%s: padding column %d = %g", ctx, col,
                                              (double)got);
                                continue;
                            }
                            double xj = x[r * Vp + col], p = exp(xj - lse[r]);
                            double el = 2 * (V + 8) * U_RND + 6 * U_RND * fabs(lse[r]);
                            double tol = fabs(dloss[r]) *
                                         (p * (el + 8 * U_RND * (1 + fabs(xj - lse[r]))) +
                                          4 * U_RND * (1 + p));
                            ck_assert_msg(fabs((double)got - ref) <= tol,
                                          "%s: dlogits[%lld][%d] %.9g vs full %.9g", ctx,
                                          (long long)r, col, (double)got, (double)ref);
                        }
                free(tgt);
                parlm_free(x), parlm_free(sl), parlm_free(g), parlm_free(gs);
                parlm_free(gsplit), parlm_free(loss), parlm_free(lse), parlm_free(vloss);
                parlm_free(vlse), parlm_free(part), parlm_free(dloss);
            }
}
END_TEST

/* sum_r dloss_r loss_r through the vocab-parallel ops, in double from float losses */
static double vp_objective(const float *sl, const int32_t *tgt, const float *dloss, int64_t N,
                           int V, int Vp, int ns)
{
    float loss[3], lse[3], part[3 * 2 * 4];
    vp_forward(loss, lse, sl, tgt, N, V, Vp, ns, part);
    double f = 0;
    for (int64_t r = 0; r < N; r++)
        f += (double)dloss[r] * loss[r];
    return f;
}

START_TEST(crossentropy_vocab_parallel_finite_differences)
{
    /* central differences of sum dloss * loss with h = 1e-2 on logits of size ~1: the
     * truncation error is h^2 / 6 times a third derivative below 1 (softmax), < 2e-5, and
     * the rounding of the float losses 2 u |f| / h < 1e-4; tolerance 1e-3 */
    const int64_t N = 3;
    const int V = 13, ns = 3, Vp = 24, Vs = Vp / ns;
    float x[3 * 24], sl[3 * 24], gs[3 * 24], loss[3], lse[3], part[3 * 2 * 3];
    float dloss[3] = {1.0f, -0.5f, 0.75f};
    int32_t tgt[3] = {2, 9, 12};
    fill_range(x, N * Vp, 77, -2.0f, 2.0f);
    split_cols(sl, x, N, Vp, ns);
    vp_forward(loss, lse, sl, tgt, N, V, Vp, ns, part);
    for (int s = 0; s < ns; s++)
        ck_assert_int_eq(parlm_crossentropy_vp_backward(gs + s * N * Vs, sl + s * N * Vs, tgt,
                                                        lse, dloss, N, s * Vs, Vs, V),
                         PARLM_OK);
    const float h = 1e-2f;
    for (int64_t i = 0; i < N * Vp; i++) {
        float keep = sl[i];
        sl[i] = keep + h;
        double fp = vp_objective(sl, tgt, dloss, N, V, Vp, ns);
        sl[i] = keep - h;
        double fm = vp_objective(sl, tgt, dloss, N, V, Vp, ns);
        sl[i] = keep;
        double fd = (fp - fm) / (2.0 * ((double)(keep + h) - keep));
        ck_assert_msg(fabs(fd - gs[i]) <= 1e-3, "dlogits[%lld] = %g, finite difference %g",
                      (long long)i, (double)gs[i], fd);
    }
}
END_TEST

START_TEST(embedding_vocab_parallel_equals_full_bitwise)
{
    /* one nonzero term per row, so the sum over slices is exact, and the position add is
     * the same float addition: bitwise equal to the full lookup; the backward adds the
     * same rows in the same order */
    const int B = 3, T = 7, C = 37, V = 21, Vp = 24;
    const int64_t N = (int64_t)B * T;
    float *wte = tu_alloc_nan(Vp * C), *wpe = tu_alloc_nan(T * C), *dout = tu_alloc_nan(N * C);
    float *ref = tu_alloc_nan(N * C), *sum = tu_alloc_nan(N * C), *o = tu_alloc_nan(N * C);
    float *dwte = tu_alloc_nan(Vp * C), *dwpe = tu_alloc_nan(T * C);
    int32_t tok[21];
    tu_fill(wte, Vp * C, 81), tu_fill(wpe, T * C, 82), tu_fill(dout, N * C, 83);
    for (int64_t r = 0; r < N; r++)
        tok[r] = (int32_t)((r * r * 5 + 3) % V) / (r % 3 ? 1 : 4); /* repeats */
    ck_assert_int_eq(parlm_embedding_forward(ref, tok, wte, wpe, B, T, C, V), PARLM_OK);
    tu_fill(dwte, Vp * C, 84), tu_fill(dwpe, T * C, 85); /* accumulate onto something */
    ck_assert_int_eq(parlm_embedding_backward(dwte, dwpe, dout, tok, B, T, C, V), PARLM_OK);
    for (int ns = 1; ns <= 4; ns++) {
        int Vs = Vp / ns;
        memset(sum, 0, (size_t)N * C * sizeof(float));
        for (int s = 0; s < ns; s++) {
            ck_assert_int_eq(parlm_embedding_vp_forward(o, tok, wte + (int64_t)s * Vs * C, N, C,
                                                        s * Vs, Vs, V),
                             PARLM_OK);
            for (int64_t i = 0; i < N * C; i++)
                sum[i] += o[i];
        }
        for (int b = 0; b < B; b++)
            ck_assert_int_eq(parlm_bias_forward(sum + (int64_t)b * T * C, wpe, 1, (int64_t)T * C),
                             PARLM_OK);
        ck_assert_msg(memcmp(sum, ref, (size_t)N * C * sizeof(float)) == 0,
                      "%d slices: lookup differs from the full one", ns);
        float *w = tu_alloc_nan(Vp * C), *p = tu_alloc_nan(T * C);
        tu_fill(w, Vp * C, 84), tu_fill(p, T * C, 85);
        for (int s = 0; s < ns; s++) /* wpe on one slice only, as one rank's */
            ck_assert_int_eq(parlm_embedding_vp_backward(w + (int64_t)s * Vs * C,
                                                         s == 0 ? p : NULL, dout, tok, B, T, C,
                                                         s * Vs, Vs, V),
                             PARLM_OK);
        ck_assert_msg(memcmp(w, dwte, (size_t)Vp * C * sizeof(float)) == 0,
                      "%d slices: dwte differs", ns);
        ck_assert_msg(memcmp(p, dwpe, (size_t)T * C * sizeof(float)) == 0,
                      "%d slices: dwpe differs", ns);
        parlm_free(w), parlm_free(p);
    }
    parlm_free(wte), parlm_free(wpe), parlm_free(dout), parlm_free(ref), parlm_free(sum);
    parlm_free(o), parlm_free(dwte), parlm_free(dwpe);
}
END_TEST

/* ---- embeddings ------------------------------------------------------------------------------ */

START_TEST(embedding_matches_naive_with_repeated_tokens)
{
    const int B = 3, T = 7, C = 45, V = 11, Tp = 9; /* wpe has more rows than T */
    int64_t rows = (int64_t)B * T;
    int32_t tok[21];
    for (int64_t r = 0; r < rows; r++)
        tok[r] = (int32_t)((r * r + 3) % 5); /* only 5 distinct tokens: many repeats */
    float *wte = tu_alloc_nan((int64_t)V * C), *wpe = tu_alloc_nan((int64_t)Tp * C);
    float *dout = tu_alloc_nan(rows * C), *out = tu_alloc_nan(rows * C);
    float *dwte = tu_alloc_nan((int64_t)V * C), *dwpe = tu_alloc_nan((int64_t)Tp * C);
    fill_range(wte, (int64_t)V * C, 41, -1, 1), fill_range(wpe, (int64_t)Tp * C, 42, -1, 1);
    fill_range(dout, rows * C, 43, -1, 1);
    float *dwte0 = tu_alloc_nan((int64_t)V * C), *dwpe0 = tu_alloc_nan((int64_t)Tp * C);
    fill_range(dwte0, (int64_t)V * C, 44, -1, 1), fill_range(dwpe0, (int64_t)Tp * C, 45, -1, 1);
    /* references: the forward is one float addition (exact in double, rounded once: equal);
     * the scatter-add of n rows onto a start value is within n u sum|terms| */
    size_t no = (size_t)(rows * C) * sizeof(double), nte = (size_t)V * C * sizeof(double);
    size_t npe = (size_t)Tp * C * sizeof(double);
    double *rout = xmalloc(no), *tout = xmalloc(no), *rte = xmalloc(nte), *tte = xmalloc(nte);
    double *rpe = xmalloc(npe), *tpe = xmalloc(npe);
    for (int64_t r = 0; r < rows; r++)
        for (int c = 0; c < C; c++) {
            rout[r * C + c] = (float)((double)wte[tok[r] * C + c] + wpe[(r % T) * C + c]);
            tout[r * C + c] = 0;
        }
    for (int64_t i = 0; i < (int64_t)V * C; i++)
        rte[i] = dwte0[i], tte[i] = fabs(dwte0[i]);
    for (int64_t i = 0; i < (int64_t)Tp * C; i++)
        rpe[i] = dwpe0[i], tpe[i] = fabs(dwpe0[i]);
    int cnt_te[11] = {0};
    for (int64_t r = 0; r < rows; r++) {
        cnt_te[tok[r]]++;
        for (int c = 0; c < C; c++) {
            rte[tok[r] * C + c] += dout[r * C + c], tte[tok[r] * C + c] += fabs(dout[r * C + c]);
            rpe[(r % T) * C + c] += dout[r * C + c], tpe[(r % T) * C + c] += fabs(dout[r * C + c]);
        }
    }
    for (int v = 0; v < V; v++)
        for (int c = 0; c < C; c++)
            tte[v * C + c] *= (cnt_te[v] + 1) * U_RND;
    for (int64_t i = 0; i < (int64_t)Tp * C; i++)
        tpe[i] *= (B + 1) * U_RND;
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    for (int ii = 0; ii < ni; ii++) {
        ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
        const char *nm = parlm_isa_name(isas[ii]);
        ck_assert_int_eq(parlm_embedding_forward(out, tok, wte, wpe, B, T, C, V), PARLM_OK);
        expect_close(nm, "embedding out", out, rout, tout, rows * C);
        memcpy(dwte, dwte0, (size_t)V * C * sizeof(float));
        memcpy(dwpe, dwpe0, (size_t)Tp * C * sizeof(float));
        ck_assert_int_eq(parlm_embedding_backward(dwte, dwpe, dout, tok, B, T, C, V), PARLM_OK);
        expect_close(nm, "dwte", dwte, rte, tte, (int64_t)V * C);
        expect_close(nm, "dwpe", dwpe, rpe, tpe, (int64_t)Tp * C); /* rows >= T untouched */
    }
    parlm_isa_select(saved);
    free(rout), free(tout), free(rte), free(tte), free(rpe), free(tpe);
    parlm_free(wte), parlm_free(wpe), parlm_free(dout), parlm_free(out), parlm_free(dwte);
    parlm_free(dwpe), parlm_free(dwte0), parlm_free(dwpe0);
}
END_TEST

START_TEST(embedding_threads_bitwise_repeatable)
{
    /* large enough for the wrappers to use both threads (rows * C >= 2 * 32768) */
    const int B = 4, T = 64, C = 768, V = 50;
    int64_t rows = (int64_t)B * T;
    int32_t *tok = xmalloc((size_t)rows * sizeof(int32_t));
    for (int64_t r = 0; r < rows; r++)
        tok[r] = (int32_t)((r * 31) % 7); /* 7 distinct tokens: heavy duplication */
    float *wte = tu_alloc_nan((int64_t)V * C), *wpe = tu_alloc_nan((int64_t)T * C);
    float *dout = tu_alloc_nan(rows * C);
    fill_range(wte, (int64_t)V * C, 51, -1, 1), fill_range(wpe, (int64_t)T * C, 52, -1, 1);
    fill_range(dout, rows * C, 53, -1, 1);
    float *o[3], *te[3], *pe[3];
    for (int t = 0; t < 3; t++) {
        o[t] = tu_alloc_nan(rows * C);
        te[t] = tu_alloc_nan((int64_t)V * C);
        pe[t] = tu_alloc_nan((int64_t)T * C);
    }
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    int saved_threads = omp_get_max_threads();
    for (int ii = 0; ii < ni; ii++) {
        ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
        const int threads[3] = {1, 2, 2};
        for (int t = 0; t < 3; t++) {
            omp_set_num_threads(threads[t]);
            memset(te[t], 0, (size_t)V * C * sizeof(float));
            memset(pe[t], 0, (size_t)T * C * sizeof(float));
            ck_assert_int_eq(parlm_embedding_forward(o[t], tok, wte, wpe, B, T, C, V), PARLM_OK);
            ck_assert_int_eq(parlm_embedding_backward(te[t], pe[t], dout, tok, B, T, C, V),
                             PARLM_OK);
        }
        /* every float is accumulated by one thread in row order: 1 and 2 threads agree */
        for (int t = 1; t < 3; t++) {
            ck_assert_msg(memcmp(o[0], o[t], (size_t)(rows * C) * 4) == 0, "%s: out differs",
                          parlm_isa_name(isas[ii]));
            ck_assert_msg(memcmp(te[0], te[t], (size_t)V * C * 4) == 0, "%s: dwte differs",
                          parlm_isa_name(isas[ii]));
            ck_assert_msg(memcmp(pe[0], pe[t], (size_t)T * C * 4) == 0, "%s: dwpe differs",
                          parlm_isa_name(isas[ii]));
        }
    }
    omp_set_num_threads(saved_threads);
    parlm_isa_select(saved);
    for (int t = 0; t < 3; t++)
        parlm_free(o[t]), parlm_free(te[t]), parlm_free(pe[t]);
    free(tok);
    parlm_free(wte), parlm_free(wpe), parlm_free(dout);
}
END_TEST

/* ---- optimizer and norm ---------------------------------------------------------------------- */

START_TEST(adamw_matches_naive_double)
{
    const int64_t n = 1000 + 37; /* several threads' slices and vector tails */
    const parlm_adamw_cfg cfg = {3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f};
    const int steps = 5;
    float *p = tu_alloc_nan(n), *m = tu_alloc_nan(n), *v = tu_alloc_nan(n), *g = tu_alloc_nan(n);
    double *rp = xmalloc((size_t)n * sizeof(double)), *rm = xmalloc((size_t)n * sizeof(double));
    double *rv = xmalloc((size_t)n * sizeof(double)), *tp = xmalloc((size_t)n * sizeof(double));
    double *tm = xmalloc((size_t)n * sizeof(double)), *tv = xmalloc((size_t)n * sizeof(double));
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    const double b1 = cfg.beta1, b2 = cfg.beta2; /* the float values, exactly */
    for (int ii = 0; ii < ni; ii++) {
        ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
        fill_range(p, n, 61, -1, 1);
        for (int64_t i = 0; i < n; i++) {
            m[i] = v[i] = 0.0f;
            rp[i] = p[i], rm[i] = rv[i] = 0, tp[i] = tm[i] = tv[i] = 0;
        }
        for (int t = 1; t <= steps; t++) {
            fill_range(g, n, 70 + t, -2, 2);
            if (t == 3)
                g[5] = 0.0f; /* a zero gradient: the update is decay plus momentum only */
            float gs = t == 2 ? 0.25f : 1.0f; /* a clipping step */
            ck_assert_int_eq(parlm_adamw_update(p, g, m, v, n, &cfg, t, gs), PARLM_OK);
            /* The library forms bc = 1 - powf(beta, t) in float: relative error
             * eb = 2 u beta^t / (1 - beta^t) + u. Each state update is a few roundings
             * (4 u relative, plus the error carried from the last step times beta); the
             * step is lr * (mh / (sqrt(vh) + eps) + wd p), relative error
             * em + ev / 2 + 2 eb + 8 u, plus u |p| for the subtraction. */
            double bc1 = 1 - pow(b1, t), bc2 = 1 - pow(b2, t);
            double eb1 = 2 * U_RND * pow(b1, t) / bc1 + U_RND;
            double eb2 = 2 * U_RND * pow(b2, t) / bc2 + U_RND;
            for (int64_t i = 0; i < n; i++) {
                double gi = (double)g[i] * gs;
                rm[i] = b1 * rm[i] + (1 - b1) * gi;
                rv[i] = b2 * rv[i] + (1 - b2) * gi * gi;
                tm[i] = b1 * tm[i] + 4 * U_RND * (b1 * fabs(rm[i]) + (1 - b1) * fabs(gi));
                tv[i] = b2 * tv[i] + 4 * U_RND * (b2 * fabs(rv[i]) + (1 - b2) * gi * gi);
                double mh = rm[i] / bc1, vh = rv[i] / bc2, den = sqrt(vh) + cfg.eps;
                double step = mh / den + cfg.weight_decay * rp[i];
                double em = (tm[i] / bc1 + fabs(mh) * eb1) / den;
                double dsq = (tv[i] / bc2 + vh * eb2) / (2 * sqrt(vh) + 1e-300); /* sqrt */
                double ev = dsq / den * fabs(mh / den);
                rp[i] -= cfg.lr * step;
                tp[i] += cfg.lr * (em + ev + 8 * U_RND * fabs(step) +
                                   cfg.weight_decay * tp[i]) + 2 * U_RND * fabs(rp[i]);
            }
        }
        const char *nm = parlm_isa_name(isas[ii]);
        double *tpp = xmalloc((size_t)n * sizeof(double));
        for (int64_t i = 0; i < n; i++)
            tpp[i] = tp[i] + 1e-12; /* zero-gradient coordinates can be exact */
        expect_close(nm, "adamw params", p, rp, tpp, n);
        for (int64_t i = 0; i < n; i++)
            tpp[i] = tm[i] + 1e-30;
        expect_close(nm, "adamw m", m, rm, tpp, n);
        for (int64_t i = 0; i < n; i++)
            tpp[i] = tv[i] + 1e-30;
        expect_close(nm, "adamw v", v, rv, tpp, n);
        free(tpp);
    }
    parlm_isa_select(saved);
    parlm_free(p), parlm_free(m), parlm_free(v), parlm_free(g);
    free(rp), free(rm), free(rv), free(tp), free(tm), free(tv);
}
END_TEST

START_TEST(sumsq_matches_double)
{
    static const int64_t Ns[] = {1, 5, 16, 33, 1000, 100003, 1 << 20};
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    float *x = tu_alloc_nan(1 << 20);
    fill_range(x, 1 << 20, 81, -3, 3);
    x[7] = 1e20f, x[9] = 1e-20f; /* wide range: squares need double */
    for (int k = 0; k < 7; k++) {
        int64_t n = Ns[k];
        /* the squares are exact in double; Neumaier's compensated sum of them is within
         * 2 2^-53 of the exact sum (+ n 2^-106): a reference far tighter than the bound */
        double ref = 0, comp = 0;
        for (int64_t i = 0; i < n; i++) {
            double sq = (double)x[i] * x[i], t = ref + sq;
            comp += fabs(ref) >= fabs(sq) ? (ref - t) + sq : (sq - t) + ref;
            ref = t;
        }
        ref += comp;
        for (int ii = 0; ii < ni; ii++) {
            ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
            double got;
            ck_assert_int_eq(parlm_sumsq(x, n, &got), PARLM_OK);
            /* double summation of n exact squares in any order: n 2^-53 relative */
            double tol = (double)(n + 8) * DBL_EPSILON / 2 * ref;
            ck_assert_msg(fabs(got - ref) <= tol, "%s n=%lld: %.17g vs %.17g",
                          parlm_isa_name(isas[ii]), (long long)n, got, ref);
        }
    }
    parlm_isa_select(saved);
    parlm_free(x);
}
END_TEST

/* ---- each SIMD kernel against the scalar kernel ---------------------------------------------- */

/* One head in the (1, t0 + tq, 3 hs) qkv layout of the naive reference: query rows
 * t0 .. t0+tq-1 from q (earlier query rows are zeros, their outputs unused), keys and
 * values of every position from k, v (rows ldkv apart). */
static float *pack_head(const float *q, int64_t ldq, const float *k, const float *v,
                        int64_t ldkv, int t0, int tq, int hs)
{
    int T = t0 + tq;
    float *qkv = tu_alloc_nan((int64_t)T * 3 * hs);
    for (int t = 0; t < T; t++)
        for (int d = 0; d < hs; d++) {
            qkv[(int64_t)t * 3 * hs + d] = t >= t0 ? q[(t - t0) * ldq + d] : 0.0f;
            qkv[(int64_t)t * 3 * hs + hs + d] = k[t * ldkv + d];
            qkv[(int64_t)t * 3 * hs + 2 * hs + d] = v[t * ldkv + d];
        }
    return qkv;
}

START_TEST(kernels_match_scalar)
{
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_kernels S = table_of(PARLM_ISA_SCALAR);
    static const int HS[] = {1, 3, 16, 17, 33, 64, 100, 256};
    static const int TQ[] = {1, 3, 9, 16, 31, 33, 70};
    static const int T0[] = {0, 5, 40};
    for (int ii = 0; ii < ni; ii++) {
        if (isas[ii] == PARLM_ISA_SCALAR)
            continue;
        parlm_kernels K = table_of(isas[ii]);
        const char *nm = K.name;
        /* attention forward with its own strides (ldq, ldkv, ldo not hs), queries at
         * t0 > 0: both sets are within the naive bound of the exact value, so within
         * twice the bound of each other */
        for (int a = 0; a < 8; a++)
            for (int b = 0; b < 7; b++)
                for (int c = 0; c < 3; c++) {
                    int hs = HS[a], tq = TQ[b], t0 = T0[c], nk = t0 + tq;
                    int64_t ldq = hs + 3, ldkv = 2 * hs + 5, ldo = hs + 1;
                    float *q = tu_alloc_nan(tq * ldq), *kv = tu_alloc_nan(nk * ldkv);
                    float *o1 = tu_alloc_nan(tq * ldo), *o2 = tu_alloc_nan(tq * ldo);
                    float *l1 = tu_alloc_nan(tq), *l2 = tu_alloc_nan(tq);
                    fill_range(q, tq * ldq, 300 + a * 21 + b * 3 + c, -2, 2);
                    fill_range(kv, nk * ldkv, 400 + a * 21 + b * 3 + c, -2, 2);
                    for (int j = 0; c == 2 && j < nk; j++) /* rising scores: rescaling */
                        for (int d = 0; d < hs; d++)
                            kv[j * ldkv + d] *= 1.0f + 0.25f * (float)j;
                    float scale = 1.0f / sqrtf((float)hs);
                    S.attn_fwd(tq, t0, hs, q, ldq, kv, kv + hs, ldkv, o1, ldo, l1, scale);
                    K.attn_fwd(tq, t0, hs, q, ldq, kv, kv + hs, ldkv, o2, ldo, l2, scale);
                    float *qkv = pack_head(q, ldq, kv, kv + hs, ldkv, t0, tq, hs);
                    attn_ref r = naive_attn_fwd(qkv, 1, nk, hs, 1);
                    char ctx[96];
                    snprintf(ctx, sizeof ctx, "%s attn_fwd hs=%d tq=%d t0=%d", nm, hs, tq, t0);
                    double *ref = xmalloc((size_t)tq * sizeof(double));
                    double *tol = xmalloc((size_t)tq * sizeof(double));
                    for (int i = 0; i < tq; i++) {
                        for (int d = 0; d < hs; d++) {
                            double ro = o1[i * ldo + d];
                            double to = 2 * r.tol_out[(int64_t)(t0 + i) * hs + d];
                            expect_close(ctx, "out", o2 + i * ldo + d, &ro, &to, 1);
                        }
                        ck_assert_msg(isnan(o2[i * ldo + hs]), "%s: wrote past hs", ctx);
                        ref[i] = l1[i];
                        tol[i] = 2 * r.tol_lse[t0 + i];
                    }
                    expect_close(ctx, "lse", l2, ref, tol, tq);
                    attn_ref_free(&r);
                    free(ref), free(tol);
                    parlm_free(qkv), parlm_free(q), parlm_free(kv), parlm_free(o1);
                    parlm_free(o2), parlm_free(l1), parlm_free(l2);
                }
        /* attention backward, strided like training (q, k, v interleaved in rows of ld
         * floats, gradients in rows of ldd): within twice the naive bound of each other */
        for (int a = 0; a < 8; a++)
            for (int b = 0; b < 7; b++) {
                int hs = HS[a], T = TQ[b];
                int64_t ld = 3 * hs + 2, ldo = hs + 3, ldd = 3 * hs + 1;
                float *x = tu_alloc_nan(T * ld), *o = tu_alloc_nan(T * ldo);
                float *dout = tu_alloc_nan(T * ldo), *lse = tu_alloc_nan(T);
                float *d1 = tu_alloc_nan(T * ldd), *d2 = tu_alloc_nan(T * ldd);
                float *scr = tu_alloc_nan(T), *dop = tu_alloc_nan((int64_t)T * hs);
                fill_range(x, T * ld, 600 + a * 7 + b, -2, 2);
                for (int j = 0; b % 2 && j < T; j++) /* rising scores */
                    for (int d = 0; d < hs; d++)
                        x[j * ld + hs + d] *= 1.0f + 0.25f * (float)j;
                fill_range(dout, T * ldo, 700 + a * 7 + b, -1, 1);
                fill_range(d1, T * ldd, 800 + a * 7 + b, -1, 1);
                memcpy(d2, d1, (size_t)(T * ldd) * sizeof(float));
                float *init = tu_alloc_nan(T * ldd);
                memcpy(init, d1, (size_t)(T * ldd) * sizeof(float));
                float scale = 1.0f / sqrtf((float)hs);
                S.attn_fwd(T, 0, hs, x, ld, x + hs, x + 2 * hs, ld, o, ldo, lse, scale);
                S.attn_bwd(T, hs, x, x + hs, x + 2 * hs, ld, o, dout, ldo, lse, d1, d1 + hs,
                           d1 + 2 * hs, ldd, scale, scr);
                K.attn_bwd(T, hs, x, x + hs, x + 2 * hs, ld, o, dout, ldo, lse, d2, d2 + hs,
                           d2 + 2 * hs, ldd, scale, scr);
                float *qkv = pack_head(x, ld, x + hs, x + 2 * hs, ld, 0, T, hs);
                for (int t = 0; t < T; t++)
                    memcpy(dop + (int64_t)t * hs, dout + t * ldo, (size_t)hs * sizeof(float));
                attn_ref r = naive_attn_fwd(qkv, 1, T, hs, 1);
                naive_attn_bwd(&r, qkv, dop);
                char ctx[96];
                snprintf(ctx, sizeof ctx, "%s attn_bwd hs=%d T=%d", nm, hs, T);
                double ref, tol;
                for (int t = 0; t < T; t++)
                    for (int64_t c = 0; c < ldd; c++) {
                        ref = d1[t * ldd + c];
                        /* column 3 hs is padding: untouched, equal */
                        tol = c < 3 * hs ? 2 * (r.tol_dqkv[(int64_t)t * 3 * hs + c] +
                                                sum_err(T + 1) * fabs(init[t * ldd + c]))
                                         : 0;
                        expect_close(ctx, "dq|dk|dv", d2 + t * ldd + c, &ref, &tol, 1);
                    }
                attn_ref_free(&r);
                parlm_free(qkv), parlm_free(dop);
                parlm_free(x), parlm_free(o), parlm_free(dout), parlm_free(lse);
                parlm_free(d1), parlm_free(d2), parlm_free(scr), parlm_free(init);
            }
        /* cross-entropy: rows of awkward lengths, ld > Vp; the last row's target is
         * outside the columns (-1: a vocab slice without it) */
        static const int Vs[] = {1, 5, 16, 17, 100, 2047, 2049, 5000};
        for (int a = 0; a < 8; a++) {
            int V = Vs[a], Vp = V + 7, rows = 4;
            int64_t ld = Vp + 2;
            float *x = tu_alloc_nan(rows * ld), *g1 = tu_alloc_nan(rows * ld);
            float *g2 = tu_alloc_nan(rows * ld);
            float l1[4], l2[4], s1[4], s2[4], dl[4] = {1.0f, -0.5f, 0.25f, 0.75f};
            int32_t tg[4] = {0, (int32_t)(V / 2), (int32_t)(V - 1), -1};
            fill_range(x, rows * ld, 950 + a, -10, 10);
            S.ce_fwd(rows, V, x, ld, tg, l1, s1);
            K.ce_fwd(rows, V, x, ld, tg, l2, s2);
            for (int r = 0; r < rows; r++) {
                double el = 2 * ((V + 8) * U_RND + 2 * U_RND * fabs(s1[r]));
                /* |x| <= 10: the loss adds 4 u 10 for the subtraction */
                ck_assert_msg(fabs(s1[r] - s2[r]) <= el &&
                                  fabs(l1[r] - l2[r]) <= el + 4 * U_RND * 10,
                              "%s ce_fwd V=%d row %d: lse %g vs %g", nm, V, r, (double)s2[r],
                              (double)s1[r]);
            }
            S.ce_bwd(rows, V, Vp, g1, x, ld, tg, s1, dl);
            K.ce_bwd(rows, V, Vp, g2, x, ld, tg, s1, dl);
            for (int r = 0; r < rows; r++)
                for (int64_t j = 0; j < ld; j++) {
                    float u1 = g1[r * ld + j], u2 = g2[r * ld + j];
                    if (j >= Vp) { /* beyond Vp: never written */
                        ck_assert_msg(isnan(u2), "%s ce_bwd wrote past Vp", nm);
                        continue;
                    }
                    /* exp of the same argument: 2 x 1.3 ulp apart, times dloss */
                    double tol = 8 * U_RND * (fabs(u1) + fabs(dl[r])) + 1e-38;
                    ck_assert_msg(fabs((double)u1 - u2) <= tol,
                                  "%s ce_bwd V=%d [%d][%lld]: %g vs %g", nm, V, r, (long long)j,
                                  (double)u2, (double)u1);
                }
            parlm_free(x), parlm_free(g1), parlm_free(g2);
        }
        /* embeddings over column slices: the same float additions in the same order */
        {
            const int64_t rows = 13, T = 5, C = 70, Vv = 9;
            float *wte = tu_alloc_nan(Vv * C), *wpe = tu_alloc_nan(T * C);
            float *o1 = tu_alloc_nan(rows * C), *o2 = tu_alloc_nan(rows * C);
            float *d = tu_alloc_nan(rows * C);
            float *e1 = tu_alloc_nan(Vv * C), *e2 = tu_alloc_nan(Vv * C);
            float *p1 = tu_alloc_nan(T * C), *p2 = tu_alloc_nan(T * C);
            int32_t tok[13];
            fill_range(wte, Vv * C, 31, -1, 1), fill_range(wpe, T * C, 32, -1, 1);
            fill_range(d, rows * C, 33, -1, 1), fill_range(e1, Vv * C, 34, -1, 1);
            fill_range(p1, T * C, 35, -1, 1);
            memcpy(e2, e1, (size_t)(Vv * C) * 4), memcpy(p2, p1, (size_t)(T * C) * 4);
            for (int r = 0; r < rows; r++)
                tok[r] = (int32_t)((r * 3) % 4);
            static const int64_t cs[][2] = {{0, 70}, {3, 20}, {5, 6}, {16, 70}, {0, 1}};
            for (int c = 0; c < 5; c++) {
                S.embed_fwd(rows, T, C, cs[c][0], cs[c][1], tok, wte, wpe, o1);
                K.embed_fwd(rows, T, C, cs[c][0], cs[c][1], tok, wte, wpe, o2);
                ck_assert_msg(memcmp(o1, o2, (size_t)(rows * C) * 4) == 0,
                              "%s embed_fwd [%lld, %lld)", nm, (long long)cs[c][0],
                              (long long)cs[c][1]);
                S.embed_bwd(rows, T, C, cs[c][0], cs[c][1], tok, d, e1, p1);
                K.embed_bwd(rows, T, C, cs[c][0], cs[c][1], tok, d, e2, p2);
                ck_assert_msg(memcmp(e1, e2, (size_t)(Vv * C) * 4) == 0, "%s embed_bwd dwte", nm);
                ck_assert_msg(memcmp(p1, p2, (size_t)(T * C) * 4) == 0, "%s embed_bwd dwpe", nm);
            }
            parlm_free(wte), parlm_free(wpe), parlm_free(o1), parlm_free(o2), parlm_free(d);
            parlm_free(e1), parlm_free(e2), parlm_free(p1), parlm_free(p2);
        }
        /* AdamW: the reference's operations in the reference's order, correctly rounded
         * each (no FMA, IEEE div and sqrt): bitwise equal */
        for (int64_t n = 1; n < 80; n += 7) {
            float p1[80], p2[80], g[80], m1[80], m2[80], v1[80], v2[80];
            tu_fill(p1, n, 11 + n), tu_fill(g, n, 12 + n), tu_fill(m1, n, 13 + n);
            tu_fill(v1, n, 14 + n);
            for (int64_t i = 0; i < n; i++)
                v1[i] = fabsf(v1[i]) * 0.01f;
            memcpy(p2, p1, sizeof p1), memcpy(m2, m1, sizeof m1), memcpy(v2, v1, sizeof v1);
            for (int s = 0; s < 3; s++) {
                S.adamw(n, p1, g, m1, v1, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 0.3f, 0.7f);
                K.adamw(n, p2, g, m2, v2, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 0.3f, 0.7f);
            }
            ck_assert_msg(memcmp(p1, p2, (size_t)n * 4) == 0 &&
                              memcmp(m1, m2, (size_t)n * 4) == 0 &&
                              memcmp(v1, v2, (size_t)n * 4) == 0,
                          "%s adamw n=%lld not bitwise equal to scalar", nm, (long long)n);
        }
        /* fused AdamW + zeroing + sum of g^2: p, m, v bitwise the scalar adamw's (same
         * operations in the same order), g left 0, the sum within the sumsq bound below */
        for (int64_t n = 1; n < 300; n += (n < 20 ? 3 : 37)) { /* 1 4 7 .. 19 22 59 .. 281 */
            float p1[300], p2[300], g1[300], g2[300], m1[300], m2[300], v1[300], v2[300];
            tu_fill(p1, n, 31 + n), tu_fill(g1, n, 32 + n), tu_fill(m1, n, 33 + n);
            tu_fill(v1, n, 34 + n);
            for (int64_t i = 0; i < n; i++)
                v1[i] = fabsf(v1[i]) * 0.01f;
            memcpy(p2, p1, sizeof p1), memcpy(m2, m1, sizeof m1), memcpy(v2, v1, sizeof v1);
            memcpy(g2, g1, sizeof g1);
            double want = S.sumsq(n, g1);
            S.adamw(n, p1, g1, m1, v1, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, 0.5f, 0.3f, 0.7f);
            double got = K.adamw_zero(n, p2, g2, m2, v2, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, 0.5f,
                                      0.3f, 0.7f);
            ck_assert_msg(memcmp(p1, p2, (size_t)n * 4) == 0 &&
                              memcmp(m1, m2, (size_t)n * 4) == 0 &&
                              memcmp(v1, v2, (size_t)n * 4) == 0,
                          "%s adamw_zero n=%lld: p, m, v differ from the scalar adamw", nm,
                          (long long)n);
            int zero = 1;
            for (int64_t i = 0; i < n; i++)
                zero &= g2[i] == 0.0f;
            ck_assert_msg(zero, "%s adamw_zero n=%lld left a gradient non-zero", nm,
                          (long long)n);
            ck_assert_msg(fabs(got - want) <= 2 * (double)(n + 8) * DBL_EPSILON / 2 * want,
                          "%s adamw_zero n=%lld: sum of squares %.17g vs %.17g", nm,
                          (long long)n, got, want);
        }
        /* sum of squares: both within (n + 8) 2^-53 of the exact sum */
        for (int64_t n = 1; n < 300; n += 13) {
            float x[300];
            tu_fill(x, n, 21 + n);
            double a1 = S.sumsq(n, x), a2 = K.sumsq(n, x);
            ck_assert_msg(fabs(a1 - a2) <= 2 * (double)(n + 8) * DBL_EPSILON / 2 * a1,
                          "%s sumsq n=%lld: %.17g vs %.17g", nm, (long long)n, a2, a1);
        }
    }
}
END_TEST

START_TEST(simd_tables_override_every_nn_entry)
{
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_kernels S = table_of(PARLM_ISA_SCALAR);
    for (int ii = 0; ii < ni; ii++) {
        if (isas[ii] == PARLM_ISA_SCALAR)
            continue;
        parlm_kernels K = table_of(isas[ii]);
        const char *nm = K.name;
        ck_assert_msg(K.attn_fwd != S.attn_fwd, "%s: attn_fwd is the scalar one", nm);
        ck_assert_msg(K.attn_bwd != S.attn_bwd, "%s: attn_bwd is the scalar one", nm);
        ck_assert_msg(K.ce_fwd != S.ce_fwd, "%s: ce_fwd is the scalar one", nm);
        ck_assert_msg(K.ce_bwd != S.ce_bwd, "%s: ce_bwd is the scalar one", nm);
        ck_assert_msg(K.embed_fwd != S.embed_fwd, "%s: embed_fwd is the scalar one", nm);
        ck_assert_msg(K.embed_bwd != S.embed_bwd, "%s: embed_bwd is the scalar one", nm);
        ck_assert_msg(K.adamw != S.adamw, "%s: adamw is the scalar one", nm);
        ck_assert_msg(K.sumsq != S.sumsq, "%s: sumsq is the scalar one", nm);
        ck_assert_msg(K.adamw_zero != S.adamw_zero, "%s: adamw_zero is the scalar one", nm);
    }
}
END_TEST

/* ---- errors ---------------------------------------------------------------------------------- */

static void expect_einval(parlm_status st, const char *what)
{
    ck_assert_msg(st == PARLM_EINVAL, "%s: got status %d, want PARLM_EINVAL", what, (int)st);
    ck_assert_msg(parlm_last_error()[0] != '\0', "%s: no error message", what);
    parlm_clear_error();
}

START_TEST(bad_input_is_an_error_with_message)
{
    enum { B = 1, T = 4, C = 8, NH = 2 };
    float qkv[B * T * 3 * C] = {0}, out[B * T * C], dout[B * T * C] = {0}, lse[B * NH * T];
    float dqkv[B * T * 3 * C] = {0};
    float big[3 * 514] = {0}; /* C = 514, NH = 2: hs = 257 > 256 */
    expect_einval(parlm_attention_forward(NULL, lse, qkv, B, T, C, NH), "fwd out NULL");
    expect_einval(parlm_attention_forward(out, NULL, qkv, B, T, C, NH), "fwd lse NULL");
    expect_einval(parlm_attention_forward(out, lse, NULL, B, T, C, NH), "fwd qkv NULL");
    expect_einval(parlm_attention_forward(out, lse, qkv, B, T, C, 3), "fwd C % NH");
    expect_einval(parlm_attention_forward(out, lse, qkv, 0, T, C, NH), "fwd B = 0");
    expect_einval(parlm_attention_forward(out, lse, qkv, B, 0, C, NH), "fwd T = 0");
    expect_einval(parlm_attention_forward(out, lse, qkv, B, T, C, 0), "fwd NH = 0");
    expect_einval(parlm_attention_forward(out, lse, big, 1, 1, 514, 2), "fwd hs 257");
    expect_einval(parlm_attention_backward(NULL, dout, qkv, out, lse, B, T, C, NH), "bwd NULL");
    expect_einval(parlm_attention_backward(dqkv, dout, qkv, out, NULL, B, T, C, NH), "bwd lse");
    expect_einval(parlm_attention_backward(dqkv, dout, qkv, out, lse, B, T, C, 3), "bwd C % NH");
    expect_einval(parlm_attention_backward(dqkv, dout, qkv, out, lse, B, -1, C, NH), "bwd T<0");
    expect_einval(parlm_attention_cached(out, qkv, C, qkv, qkv, 0, 0, C, NH), "cached tq = 0");
    expect_einval(parlm_attention_cached(out, qkv, C, qkv, qkv, -1, 1, C, NH), "cached t0 < 0");
    expect_einval(parlm_attention_cached(out, qkv, C - 1, qkv, qkv, 0, 1, C, NH), "cached ldq");
    expect_einval(parlm_attention_cached(out, qkv, C, NULL, qkv, 0, 1, C, NH), "cached NULL");
    expect_einval(parlm_attention_cached(out, qkv, C, qkv, qkv, 0, 1, C, 3), "cached C % NH");
    expect_einval(parlm_attention_cached(out, qkv, C, qkv, qkv, INT_MAX, 2, C, NH),
                  "cached t0 + tq overflows");

    float logits[2 * 8] = {0}, loss[2], ls[2], dl[2] = {1, 1};
    int32_t tg[2] = {1, 5}, bad[2] = {1, 7}, neg[2] = {-1, 0};
    expect_einval(parlm_crossentropy_forward(loss, ls, logits, bad, 2, 7, 8), "ce target = V");
    expect_einval(parlm_crossentropy_forward(loss, ls, logits, neg, 2, 7, 8), "ce target < 0");
    expect_einval(parlm_crossentropy_forward(NULL, ls, logits, tg, 2, 7, 8), "ce NULL");
    expect_einval(parlm_crossentropy_forward(loss, ls, logits, tg, 2, 9, 8), "ce Vp < V");
    expect_einval(parlm_crossentropy_forward(loss, ls, logits, tg, 0, 7, 8), "ce N = 0");
    expect_einval(parlm_crossentropy_backward(logits, logits, bad, ls, dl, 2, 7, 8), "ceb target");
    expect_einval(parlm_crossentropy_backward(logits, logits, tg, ls, NULL, 2, 7, 8), "ceb NULL");
    float part[4];
    expect_einval(parlm_crossentropy_vp_partial(part, logits, bad, 2, 0, 4, 7), "vp target = V");
    expect_einval(parlm_crossentropy_vp_partial(part, logits, tg, 2, -1, 4, 7), "vp v0 < 0");
    expect_einval(parlm_crossentropy_vp_partial(part, logits, tg, 2, 0, 0, 7), "vp Vs = 0");
    expect_einval(parlm_crossentropy_vp_combine(loss, ls, part, 2, 0), "vp tp = 0");
    expect_einval(parlm_crossentropy_vp_backward(logits, logits, tg, ls, NULL, 2, 0, 4, 7),
                  "vpb NULL");
    expect_einval(parlm_embedding_vp_forward(logits, neg, logits, 2, 1, 0, 4, 7), "vp token < 0");
    expect_einval(parlm_embedding_vp_backward(logits, NULL, logits, bad, 1, 2, 1, 0, 4, 7),
                  "vpb token = V");

    float wte[4 * 3] = {0}, wpe[2 * 3] = {0}, eo[2 * 3];
    int32_t tok[2] = {0, 4};
    expect_einval(parlm_embedding_forward(eo, tok, wte, wpe, 1, 2, 3, 4), "embed token = V");
    expect_einval(parlm_embedding_forward(eo, NULL, wte, wpe, 1, 2, 3, 4), "embed NULL");
    expect_einval(parlm_embedding_forward(eo, tg, wte, wpe, 0, 2, 3, 4), "embed B = 0");
    expect_einval(parlm_embedding_backward(wte, wpe, eo, tok, 1, 2, 3, 4), "embed bwd token");

    float p[4] = {0}, g[4] = {0}, m[4] = {0}, v[4] = {0};
    parlm_adamw_cfg cfg = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f};
    expect_einval(parlm_adamw_update(p, g, m, v, 4, NULL, 1, 1.0f), "adamw cfg NULL");
    expect_einval(parlm_adamw_update(p, g, m, v, 4, &cfg, 0, 1.0f), "adamw t = 0");
    cfg.beta1 = 1.0f;
    expect_einval(parlm_adamw_update(p, g, m, v, 4, &cfg, 1, 1.0f), "adamw beta1 = 1");
    double s;
    expect_einval(parlm_sumsq(NULL, 4, &s), "sumsq NULL");
    expect_einval(parlm_sumsq(p, 4, NULL), "sumsq out NULL");
}
END_TEST

static Suite *nn_suite(void)
{
    Suite *s = suite_create("nn");
    TCase *tc = tcase_create("attention_vs_naive");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, attention_forward_matches_naive_double);
    tcase_add_test(tc, attention_backward_matches_naive_double);
    suite_add_tcase(s, tc);
    tc = tcase_create("attention_gradient");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, attention_backward_matches_finite_differences);
    suite_add_tcase(s, tc);
    tc = tcase_create("attention_cached");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, attention_cached_prefill_and_decode_equal_forward);
    suite_add_tcase(s, tc);
    tc = tcase_create("crossentropy");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, crossentropy_matches_naive_double);
    tcase_add_test(tc, crossentropy_vocab_parallel_matches_full);
    tcase_add_test(tc, crossentropy_vocab_parallel_finite_differences);
    suite_add_tcase(s, tc);
    tc = tcase_create("embedding");
    tcase_add_test(tc, embedding_matches_naive_with_repeated_tokens);
    tcase_add_test(tc, embedding_threads_bitwise_repeatable);
    tcase_add_test(tc, embedding_vocab_parallel_equals_full_bitwise);
    suite_add_tcase(s, tc);
    tc = tcase_create("optimizer");
    tcase_add_test(tc, adamw_matches_naive_double);
    tcase_add_test(tc, sumsq_matches_double);
    suite_add_tcase(s, tc);
    tc = tcase_create("kernels_vs_scalar");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, kernels_match_scalar);
    tcase_add_test(tc, simd_tables_override_every_nn_entry);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, bad_input_is_an_error_with_message);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(nn_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
