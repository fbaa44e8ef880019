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
    return s;
}

int main(void) { return run_suite(attention_suite()); }
