/* tests/core/test_attention.c — the attention of lib/core/nn.c (forward, backward, KV-cache
 * prefill and decode) on every kernel set, against the naive double attention of
 * attn_ref.c with its data-derived error bounds, and the backward against central
 * finite differences of that naive forward. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_ref.h"
#include "harness.h"

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

/* ---- grouped-query attention ------------------------------------------------------
 * The reference is independent of the head mapping under test: the GQA qkv (rows of
 * C + 2 NKV hs) is expanded to multi-head qkv (rows of 3C) by copying key/value head
 * h / G into every query head h of its group, and the naive double attention runs on
 * that. The GQA gradient of a key/value head is the sum of the expanded heads' ones. */

/* gqa (B,T,C+2Ckv) -> mha (B,T,3C) */
static void gqa_expand(float *mha, const float *gqa, int B, int T, int C, int NH, int NKV)
{
    int hs = C / NH, G = NH / NKV, Ckv = NKV * hs, W = C + 2 * Ckv;
    for (int64_t r = 0; r < (int64_t)B * T; r++) {
        const float *g = gqa + r * W;
        float *o = mha + r * 3 * C;
        for (int c = 0; c < C; c++)
            o[c] = g[c];
        for (int h = 0; h < NH; h++)
            for (int d = 0; d < hs; d++) {
                o[C + h * hs + d] = g[C + (h / G) * hs + d];
                o[2 * C + h * hs + d] = g[C + Ckv + (h / G) * hs + d];
            }
    }
}

/* the naive (B,T,3C) gradient and bound reduced to the GQA layout: a key/value element
 * sums G exact terms, a float implementation adds G rounded ones (bound: their bounds
 * plus the rounding of a sum of G terms of those magnitudes) */
static void gqa_reduce(double *g, double *tol, const double *mg, const double *mtol, int B,
                       int T, int C, int NH, int NKV)
{
    int hs = C / NH, G = NH / NKV, Ckv = NKV * hs, W = C + 2 * Ckv;
    for (int64_t r = 0; r < (int64_t)B * T; r++) {
        const double *a = mg + r * 3 * C, *at = mtol + r * 3 * C;
        double *o = g + r * W, *ot = tol + r * W;
        for (int c = 0; c < C; c++)
            o[c] = a[c], ot[c] = at[c];
        for (int c = C; c < W; c++)
            o[c] = ot[c] = 0;
        double *absum = xmalloc((size_t)W * sizeof(double));
        for (int c = 0; c < W; c++)
            absum[c] = 0;
        for (int part = 1; part <= 2; part++)
            for (int h = 0; h < NH; h++)
                for (int d = 0; d < hs; d++) {
                    int to = C + (part - 1) * Ckv + (h / G) * hs + d, from = part * C + h * hs + d;
                    o[to] += a[from];
                    ot[to] += at[from];
                    absum[to] += fabs(a[from]);
                }
        for (int c = C; c < W; c++)
            ot[c] += sum_err(G + 1) * absum[c];
        free(absum);
    }
}

/* (NH, NKV) pairs with groups of 2, 3, 4 and 8 (NKV = 1: multi-query attention) */
static const int GQA_H[][2] = {{4, 2}, {6, 2}, {8, 2}, {8, 1}, {3, 1}};
static const int GQA_T[] = {1, 7, 17, 127};
static const int GQA_HS[] = {7, 16, 64};

START_TEST(gqa_forward_backward_match_expanded_naive)
{
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    double worst[PARLM_ISA_COUNT] = {0};
    for (int ti = 0; ti < 4; ti++)
        for (int hi = 0; hi < 3; hi++)
            for (int gi = 0; gi < 5; gi++) {
                int T = GQA_T[ti], hs = GQA_HS[hi], NH = GQA_H[gi][0], NKV = GQA_H[gi][1];
                int B = 1 + (ti + gi) % 2, C = NH * hs, W = C + 2 * NKV * hs;
                if (T == 127 && (hs == 64 || gi % 2)) /* the naive backward is O(T^2 hs NH) */
                    continue;
                int64_t nw = (int64_t)B * T * W, n3 = (int64_t)B * T * 3 * C,
                        n = (int64_t)B * T * C, nl = (int64_t)B * NH * T;
                float *qkv = tu_alloc_nan(nw), *mha = tu_alloc_nan(n3), *dout = tu_alloc_nan(n);
                fill_range(qkv, nw, 6000 + ti * 37 + hi * 5 + gi, -2.0f, 2.0f);
                fill_range(dout, n, 7000 + ti * 37 + hi * 5 + gi, -1.0f, 1.0f);
                gqa_expand(mha, qkv, B, T, C, NH, NKV);
                attn_ref r = naive_attn_fwd(mha, B, T, C, NH);
                naive_attn_bwd(&r, mha, dout);
                double *ref = xmalloc((size_t)nw * sizeof(double));
                double *tol = xmalloc((size_t)nw * sizeof(double));
                gqa_reduce(ref, tol, r.dqkv, r.tol_dqkv, B, T, C, NH, NKV);
                float *out = tu_alloc_nan(n), *lse = tu_alloc_nan(nl), *dqkv = tu_alloc_nan(nw);
                for (int ii = 0; ii < ni; ii++) {
                    ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
                    char ctx[128];
                    snprintf(ctx, sizeof ctx, "%s B=%d T=%d NH=%d NKV=%d hs=%d",
                             parlm_isa_name(isas[ii]), B, T, NH, NKV, hs);
                    ck_assert_int_eq(
                        parlm_attention_forward_gqa(out, lse, qkv, B, T, C, NH, NKV), PARLM_OK);
                    double w = expect_close(ctx, "gqa out", out, r.out, r.tol_out, n);
                    w = fmax(w, expect_close(ctx, "gqa lse", lse, r.lse, r.tol_lse, nl));
                    for (int64_t i = 0; i < nw; i++)
                        dqkv[i] = 0.0f;
                    ck_assert_int_eq(parlm_attention_backward_gqa(dqkv, dout, qkv, out, lse, B,
                                                                  T, C, NH, NKV),
                                     PARLM_OK);
                    w = fmax(w, expect_close(ctx, "gqa dqkv", dqkv, ref, tol, nw));
                    worst[ii] = fmax(worst[ii], w);
                }
                attn_ref_free(&r);
                free(ref), free(tol);
                parlm_free(qkv), parlm_free(mha), parlm_free(dout), parlm_free(out);
                parlm_free(lse), parlm_free(dqkv);
            }
    for (int ii = 0; ii < ni; ii++)
        printf("gqa forward+backward %-6s: worst |err| / bound = %.3f\n",
               parlm_isa_name(isas[ii]), worst[ii]);
    parlm_isa_select(saved);
}
END_TEST

typedef struct gqa_fd {
    int B, T, C, NH, NKV;
    const float *G;
    float *mha;
} gqa_fd;

/* L(qkv) = sum(out * G) of the GQA qkv, by the naive double forward of its expansion */
static double gqa_loss(const float *qkv, const gqa_fd *f)
{
    gqa_expand(f->mha, qkv, f->B, f->T, f->C, f->NH, f->NKV);
    return attn_loss(f->mha, f->G, f->B, f->T, f->C, f->NH);
}

START_TEST(gqa_backward_matches_finite_differences)
{
    /* as attention_backward_matches_finite_differences, with 4 query heads on 2
     * key/value heads (each k, v element feeds two heads: a missed group term fails) */
    const int B = 2, T = 7, NH = 4, NKV = 2, hs = 4, C = NH * hs, W = C + 2 * NKV * hs;
    int64_t nw = (int64_t)B * T * W, n = (int64_t)B * T * C;
    float *qkv = tu_alloc_nan(nw), *G = tu_alloc_nan(n), *out = tu_alloc_nan(n);
    float *lse = tu_alloc_nan((int64_t)B * NH * T), *dqkv = tu_alloc_nan(nw);
    float *x = tu_alloc_nan(nw), *mha = tu_alloc_nan((int64_t)B * T * 3 * C);
    fill_range(qkv, nw, 91, -1.5f, 1.5f);
    fill_range(G, n, 92, -1.0f, 1.0f);
    gqa_fd f = {B, T, C, NH, NKV, G, mha};
    double *fd = xmalloc((size_t)nw * sizeof(double)), *tol = xmalloc((size_t)nw * sizeof(double));
    const double h = 1e-3;
    for (int64_t i = 0; i < nw; i++) {
        memcpy(x, qkv, (size_t)nw * sizeof(float));
        float xp = (float)(qkv[i] + h), xm = (float)(qkv[i] - h);
        x[i] = xp;
        double lp = gqa_loss(x, &f);
        x[i] = xm;
        double lm = gqa_loss(x, &f);
        fd[i] = (lp - lm) / ((double)xp - (double)xm);
        tol[i] = 2e-4 + 1e-3 * fabs(fd[i]);
    }
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    for (int ii = 0; ii < ni; ii++) {
        ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
        ck_assert_int_eq(parlm_attention_forward_gqa(out, lse, qkv, B, T, C, NH, NKV), PARLM_OK);
        for (int64_t i = 0; i < nw; i++)
            dqkv[i] = 0.0f;
        ck_assert_int_eq(parlm_attention_backward_gqa(dqkv, G, qkv, out, lse, B, T, C, NH, NKV),
                         PARLM_OK);
        expect_close(parlm_isa_name(isas[ii]), "gqa dqkv vs finite differences", dqkv, fd, tol,
                     nw);
    }
    parlm_isa_select(saved);
    free(fd), free(tol);
    parlm_free(qkv), parlm_free(G), parlm_free(out), parlm_free(lse), parlm_free(dqkv);
    parlm_free(x), parlm_free(mha);
}
END_TEST

START_TEST(gqa_cached_prefill_and_decode_equal_forward)
{
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    for (int ti = 0; ti < 4; ti++)
        for (int gi = 0; gi < 5; gi += 2) {
            int T = GQA_T[ti], hs = 16, NH = GQA_H[gi][0], NKV = GQA_H[gi][1];
            int C = NH * hs, Ckv = NKV * hs, W = C + 2 * Ckv;
            int64_t nw = (int64_t)T * W, n = (int64_t)T * C, nk = (int64_t)T * Ckv;
            float *qkv = tu_alloc_nan(nw), *kc = tu_alloc_nan(nk), *vc = tu_alloc_nan(nk);
            float *mha = tu_alloc_nan((int64_t)T * 3 * C);
            fill_range(qkv, nw, 800 + ti * 5 + gi, -2.0f, 2.0f);
            for (int t = 0; t < T; t++) /* the caches hold k and v rows Ckv floats apart */
                for (int c = 0; c < Ckv; c++) {
                    kc[(int64_t)t * Ckv + c] = qkv[(int64_t)t * W + C + c];
                    vc[(int64_t)t * Ckv + c] = qkv[(int64_t)t * W + C + Ckv + c];
                }
            gqa_expand(mha, qkv, 1, T, C, NH, NKV);
            attn_ref r = naive_attn_fwd(mha, 1, T, C, NH);
            float *pre = tu_alloc_nan(n), *dec = tu_alloc_nan(n);
            for (int ii = 0; ii < ni; ii++) {
                ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
                char ctx[96];
                snprintf(ctx, sizeof ctx, "%s T=%d NH=%d NKV=%d", parlm_isa_name(isas[ii]), T,
                         NH, NKV);
                ck_assert_int_eq(
                    parlm_attention_cached_gqa(pre, qkv, W, kc, vc, 0, T, C, NH, NKV), PARLM_OK);
                for (int t = 0; t < T; t++)
                    ck_assert_int_eq(parlm_attention_cached_gqa(dec + (int64_t)t * C,
                                                                qkv + (int64_t)t * W, W, kc, vc,
                                                                t, 1, C, NH, NKV),
                                     PARLM_OK);
                expect_close(ctx, "gqa prefill vs naive", pre, r.out, r.tol_out, n);
                expect_close(ctx, "gqa decode vs naive", dec, r.out, r.tol_out, n);
            }
            attn_ref_free(&r);
            parlm_free(qkv), parlm_free(kc), parlm_free(vc), parlm_free(mha);
            parlm_free(pre), parlm_free(dec);
        }
    parlm_isa_select(saved);
}
END_TEST

START_TEST(gqa_rejects_bad_groups)
{
    float buf[64] = {0}, lse[8];
    expect_einval(parlm_attention_forward_gqa(buf, lse, buf, 1, 1, 8, 4, 3), "NH % NKV");
    expect_einval(parlm_attention_forward_gqa(buf, lse, buf, 1, 1, 8, 4, 0), "NKV = 0");
    expect_einval(parlm_attention_backward_gqa(buf, buf, buf, buf, lse, 1, 1, 8, 4, 8), "NKV>NH");
    expect_einval(parlm_attention_cached_gqa(buf, buf, 8, buf, buf, 0, 1, 8, 4, 3), "cached");
}
END_TEST

static Suite *attention_suite(void)
{
    Suite *s = suite_create("attention");
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
    tc = tcase_create("attention_gqa");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, gqa_forward_backward_match_expanded_naive);
    tcase_add_test(tc, gqa_backward_matches_finite_differences);
    tcase_add_test(tc, gqa_cached_prefill_and_decode_equal_forward);
    tcase_add_test(tc, gqa_rejects_bad_groups);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return run_suite(attention_suite()); }
