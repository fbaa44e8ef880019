/* tests/core/test_kernels_nn.c — simd/common/{attn,nn}.c: each kernel set's attention (own
 * strides, queries at t0 > 0), cross-entropy, embedding, AdamW, fused AdamW + zeroing and sum of
 * squares kernels against the scalar set's, called directly from the table; attention
 * within twice the naive bound of attn_ref.c, the data movement and AdamW bitwise. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_ref.h"
#include "harness.h"

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
        /* fused AdamW + sum of g^2: p, m, v bitwise the scalar adamw's (same operations in
         * the same order), g unchanged, the sum within the sumsq bound below */
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
            double got = K.adamw_sumsq(n, p2, g2, m2, v2, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f,
                                       0.5f, 0.3f, 0.7f);
            ck_assert_msg(memcmp(p1, p2, (size_t)n * 4) == 0 &&
                              memcmp(m1, m2, (size_t)n * 4) == 0 &&
                              memcmp(v1, v2, (size_t)n * 4) == 0,
                          "%s adamw_sumsq n=%lld: p, m, v differ from the scalar adamw", nm,
                          (long long)n);
            ck_assert_msg(memcmp(g1, g2, (size_t)n * 4) == 0,
                          "%s adamw_sumsq n=%lld changed a gradient", nm, (long long)n);
            ck_assert_msg(fabs(got - want) <= 2 * (double)(n + 8) * DBL_EPSILON / 2 * want,
                          "%s adamw_sumsq n=%lld: sum of squares %.17g vs %.17g", nm,
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
        ck_assert_msg(K.adamw_sumsq != S.adamw_sumsq, "%s: adamw_sumsq is the scalar one", nm);
    }
}
END_TEST

static Suite *kernels_nn_suite(void)
{
    Suite *s = suite_create("nn kernels");
    TCase *tc = tcase_create("kernels_vs_scalar");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, kernels_match_scalar);
    tcase_add_test(tc, simd_tables_override_every_nn_entry);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return run_suite(kernels_nn_suite()); }
