/* tests/core/test_gemm.c — the results of lib/core/gemm.c's public calls: GEMM (f32, bf16
 * on both paths, f32 x bf16), GEMV and the bf16 array conversions, on every kernel set this
 * CPU runs, against a naive triple loop in double precision. Shapes are awkward on purpose
 * (1, 2, 7, 17, 31, 64, 127, 255, 1000), a forced small blocking makes small shapes cross
 * every block boundary, and 2 threads must give the 1-thread result bit for bit.
 * bf16 runs both paths (dot: k-pair kernels; widen: f32 packs + the f32 kernel) on every
 * set, whichever path this CPU would pick. Tolerances: gemm_tol in harness.h. */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/core/gemm.h"
#include "harness.h"

/* The one place the tests force a GEMM blocking (NULL: back to the rule's). */
static void force_blocking(const parlm_gemm_blocking *b) { parlm_gemm_blocking_override(b); }

/* ---- the public GEMM against a double-precision loop ----------------------------------- */

typedef struct gemm_case {
    parlm_trans ta, tb;
    int64_t M, N, K, pad; /* pad: extra elements at the end of each row of A, B and C */
    float alpha, beta;
    int bf16;
} gemm_case;

/* Runs one case through the current kernel set; returns the worst error / tolerance (> 1
 * fails) and checks that C's padding is untouched. */
static double run_gemm_case(const gemm_case *g, uint64_t seed)
{
    int64_t M = g->M, N = g->N, K = g->K;
    int64_t ar = g->ta ? K : M, ac = g->ta ? M : K, br = g->tb ? N : K, bc = g->tb ? K : N;
    int64_t lda = ac + g->pad, ldb = bc + g->pad, ldc = N + g->pad;
    float *A = tu_alloc_nan(ar * lda), *B = tu_alloc_nan(br * ldb);
    float *C = tu_alloc_nan(M * ldc), *C0 = tu_alloc_nan(M * ldc);
    uint16_t *Ah = parlm_alloc((size_t)(ar * lda), 2), *Bh = parlm_alloc((size_t)(br * ldb), 2);
    tu_fill(A, ar * lda, seed);
    tu_fill(B, br * ldb, seed + 1);
    for (int64_t i = 0; i < ar * lda; i++) {
        Ah[i] = to_bf16(A[i]);
        if (g->bf16)
            A[i] = from_bf16(Ah[i]); /* the reference multiplies what the kernel sees */
    }
    for (int64_t i = 0; i < br * ldb; i++) {
        Bh[i] = to_bf16(B[i]);
        if (g->bf16)
            B[i] = from_bf16(Bh[i]);
    }
    if (g->beta != 0.0f) /* beta == 0: C stays NaN, which must not leak into the result */
        tu_fill(C, M * ldc, seed + 2);
    memcpy(C0, C, (size_t)(M * ldc) * sizeof(float));
    parlm_status st = g->bf16 ? parlm_gemm_bf16(g->ta, g->tb, M, N, K, g->alpha, Ah, lda, Bh,
                                                ldb, g->beta, C, ldc)
                              : parlm_sgemm(g->ta, g->tb, M, N, K, g->alpha, A, lda, B, ldb,
                                            g->beta, C, ldc);
    ck_assert_msg(st == PARLM_OK, "%s", parlm_last_error());
    double worst = 0.0;
    int64_t pad_bad = -1;
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double s = 0.0, sa = 0.0;
            for (int64_t p = 0; p < K; p++) {
                double a = g->ta ? A[p * lda + i] : A[i * lda + p];
                double b = g->tb ? B[j * ldb + p] : B[p * ldb + j];
                s += a * b;
                sa += fabs(a * b);
            }
            double bc0 = g->beta == 0.0f ? 0.0 : (double)g->beta * C0[i * ldc + j];
            double ref = g->alpha * s + bc0;
            double err = fabs(C[i * ldc + j] - ref) / gemm_tol(K, fabs(g->alpha) * sa, bc0);
            if (!(err <= worst)) /* NaN counts as the worst */
                worst = isnan(err) ? INFINITY : err;
        }
        for (int64_t j = N; j < ldc; j++) /* padding: bitwise untouched */
            if (bits_of(C[i * ldc + j]) != bits_of(C0[i * ldc + j]) && pad_bad < 0)
                pad_bad = i * ldc + j;
    }
    ck_assert_msg(pad_bad < 0, "C padding element %lld was written", (long long)pad_bad);
    parlm_free(A);
    parlm_free(B);
    parlm_free(C);
    parlm_free(C0);
    parlm_free(Ah);
    parlm_free(Bh);
    return worst;
}

/* All of {1, 2, 7, 17, 31, 64, 127}^3 x {NN, NT, TN}, alpha / beta / padding rotating. */
static void gemm_small_shapes(int bf16)
{
    static const int64_t sz[] = {1, 2, 7, 17, 31, 64, 127};
    int ns = (int)(sizeof sz / sizeof sz[0]);
    for (int isa = 0; isa < PARLM_ISA_COUNT; isa++) {
        if (!parlm_isa_supported((parlm_isa)isa))
            continue;
        ck_assert_int_eq(parlm_isa_select((parlm_isa)isa), PARLM_OK);
        int idx = 0;
        for (int t = 0; t < 3; t++)
            for (int a = 0; a < ns; a++)
                for (int b = 0; b < ns; b++)
                    for (int c = 0; c < ns; c++, idx++) {
                        gemm_case g = {tas[t], tbs[t], sz[a], sz[b], sz[c], idx % 3 == 0 ? 0 : idx % 7,
                                       alphas[idx % 5], betas[idx % 5], bf16};
                        double w = run_gemm_case(&g, (uint64_t)idx);
                        ck_assert_msg(w <= 1.0,
                                      "%s %s %s M=%lld N=%lld K=%lld alpha=%g beta=%g: error "
                                      "%.3g x tolerance",
                                      parlm_isa_name((parlm_isa)isa), bf16 ? "bf16" : "f32",
                                      tnames[t], (long long)g.M, (long long)g.N, (long long)g.K,
                                      g.alpha, g.beta, w);
                    }
    }
}

START_TEST(sgemm_small_shapes_every_isa) { gemm_small_shapes(0); }
END_TEST

/* Both bf16 paths on every kernel set, whichever this CPU would choose: the dot path's
 * k-pair kernels (vdpbf16ps where the CPU has it, in-register widening elsewhere) and the
 * widening packs with the f32 kernel. */
START_TEST(gemm_bf16_small_shapes_every_isa)
{
    for (int path = PARLM_BF16_DOT; path <= PARLM_BF16_WIDEN; path++) {
        ck_assert_int_eq(parlm_bf16_path_select((parlm_bf16_path)path), PARLM_OK);
        gemm_small_shapes(1);
    }
}
END_TEST

/* Larger shapes: several KC blocks, MC blocks over 512 rows, edges everywhere; then each
 * of M, N, K in turn at 255 or 1000 with the other two from {1, 17, 64}. */
static void gemm_large_shapes(int bf16)
{
    static const int64_t shapes[][3] = {{255, 1000, 255}, {1000, 255, 127}, {127, 255, 1000},
                                        {17, 1000, 1000}, {1000, 64, 300},  {256, 768, 64}};
    static const int64_t big[] = {255, 1000}, small[] = {1, 17, 64};
    int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    for (int isa = 0; isa < PARLM_ISA_COUNT; isa++) {
        if (!parlm_isa_supported((parlm_isa)isa))
            continue;
        ck_assert_int_eq(parlm_isa_select((parlm_isa)isa), PARLM_OK);
        int idx = 0;
        for (int s = 0; s < nshapes + 3 * 2 * 9; s++, idx++) {
            int64_t d[3];
            if (s < nshapes) {
                memcpy(d, shapes[s], sizeof d);
            } else { /* dimension `which` is big, the others small */
                int r = s - nshapes, which = r / 18, b = r / 9 % 2, o1 = r % 3, o2 = r / 3 % 3;
                d[which] = big[b];
                d[(which + 1) % 3] = small[o1];
                d[(which + 2) % 3] = small[o2];
            }
            int t = idx % 3;
            gemm_case g = {tas[t], tbs[t], d[0], d[1], d[2], idx % 2 ? 3 : 0, alphas[idx % 5],
                           betas[idx % 5], bf16};
            double w = run_gemm_case(&g, 100 + (uint64_t)idx);
            ck_assert_msg(w <= 1.0, "%s %s %s %lldx%lldx%lld: error %.3g x tolerance",
                          parlm_isa_name((parlm_isa)isa), bf16 ? "bf16" : "f32", tnames[t],
                          (long long)g.M, (long long)g.N, (long long)g.K, w);
        }
    }
}

START_TEST(sgemm_large_shapes_every_isa) { gemm_large_shapes(0); }
END_TEST

START_TEST(gemm_bf16_large_shapes_every_isa)
{
    for (int path = PARLM_BF16_DOT; path <= PARLM_BF16_WIDEN; path++) {
        ck_assert_int_eq(parlm_bf16_path_select((parlm_bf16_path)path), PARLM_OK);
        gemm_large_shapes(1);
    }
}
END_TEST

/* The widening path is the f32 GEMM of the widened inputs, bit for bit (widening is exact
 * and the blocking the same), on 1 and 2 threads, for NN, NT and TN. */
START_TEST(gemm_bf16_widen_is_f32_of_widened_bitwise)
{
    ck_assert_int_eq(parlm_bf16_path_select(PARLM_BF16_WIDEN), PARLM_OK);
    int64_t M = 200, N = 300, K = 1100; /* K: two KC blocks */
    int64_t na = M * K, nb = K * N;
    float *A = tu_alloc_nan(na), *B = tu_alloc_nan(nb);
    float *C32 = tu_alloc_nan(M * N), *C16 = tu_alloc_nan(M * N);
    uint16_t *Ah = parlm_alloc((size_t)na, 2), *Bh = parlm_alloc((size_t)nb, 2);
    tu_fill(A, na, 61);
    tu_fill(B, nb, 62);
    for (int64_t i = 0; i < na; i++)
        A[i] = from_bf16(Ah[i] = to_bf16(A[i]));
    for (int64_t i = 0; i < nb; i++)
        B[i] = from_bf16(Bh[i] = to_bf16(B[i]));
    for (int nt = 1; nt <= 2; nt++) {
        omp_set_num_threads(nt);
        for (int t = 0; t < 3; t++) {
            int64_t lda = tas[t] ? M : K, ldb = tbs[t] ? K : N;
            ck_assert_int_eq(parlm_sgemm(tas[t], tbs[t], M, N, K, 0.5f, A, lda, B, ldb, 0.0f,
                                         C32, N),
                             PARLM_OK);
            ck_assert_int_eq(parlm_gemm_bf16(tas[t], tbs[t], M, N, K, 0.5f, Ah, lda, Bh, ldb,
                                             0.0f, C16, N),
                             PARLM_OK);
            ck_assert_msg(memcmp(C32, C16, (size_t)(M * N) * 4) == 0,
                          "%s, %d threads: widened bf16 GEMM differs from f32", tnames[t], nt);
        }
    }
    omp_set_num_threads(1);
    parlm_free(A);
    parlm_free(B);
    parlm_free(C32);
    parlm_free(C16);
    parlm_free(Ah);
    parlm_free(Bh);
}
END_TEST

/* f32 A times bf16 B is the f32 GEMM of A and the widened B, bit for bit, on every set,
 * both bf16 paths, 1 and 2 threads, NN / NT / TN, awkward shapes and a padded ldc; M = 1
 * (the GEMV) within rounding. */
START_TEST(gemm_f32_bf16_is_f32_of_widened_b)
{
    static const int64_t shapes[][3] = {{2, 1, 1}, {7, 17, 31}, {17, 127, 7}, {127, 64, 300},
                                        {200, 33, 1100}, {1, 127, 64}, {1, 7, 17}};
    for (int isa = 0; isa < PARLM_ISA_COUNT; isa++) {
        if (!parlm_isa_supported((parlm_isa)isa))
            continue;
        ck_assert_int_eq(parlm_isa_select((parlm_isa)isa), PARLM_OK);
        for (int path = 0; path < 2; path++) {
            ck_assert_int_eq(parlm_bf16_path_select(path ? PARLM_BF16_DOT : PARLM_BF16_WIDEN),
                             PARLM_OK);
            for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++)
                for (int t = 0; t < 3; t++)
                    for (int nt = 1; nt <= 2; nt++) {
                        omp_set_num_threads(nt);
                        int64_t M = shapes[c][0], N = shapes[c][1], K = shapes[c][2];
                        int64_t lda = tas[t] ? M : K, ldb = tbs[t] ? K : N, ldc = N + 3;
                        float *A = tu_alloc_nan(M * K), *B = tu_alloc_nan(K * N);
                        float *C32 = tu_alloc_nan(M * ldc), *Cm = tu_alloc_nan(M * ldc);
                        uint16_t *Bh = parlm_alloc((size_t)(K * N), 2);
                        tu_fill(A, M * K, 71 + c);
                        tu_fill(B, K * N, 72 + c);
                        for (int64_t i = 0; i < K * N; i++)
                            B[i] = from_bf16(Bh[i] = to_bf16(B[i]));
                        for (int64_t i = 0; i < M * ldc; i++)
                            C32[i] = Cm[i] = (float)(i % 5);
                        ck_assert_int_eq(parlm_sgemm(tas[t], tbs[t], M, N, K, 0.5f, A, lda, B,
                                                     ldb, 0.25f, C32, ldc),
                                         PARLM_OK);
                        ck_assert_msg(parlm_gemm_f32_bf16(tas[t], tbs[t], M, N, K, 0.5f, A, lda,
                                                          Bh, ldb, 0.25f, Cm, ldc) == PARLM_OK,
                                      "%s", parlm_last_error());
                        for (int64_t i = 0; i < M * ldc; i++) {
                            double d = fabs((double)Cm[i] - C32[i]);
                            ck_assert_msg(M == 1 ? d <= 1e-5 * (1 + fabs(C32[i]) + K * 1e-2)
                                                 : bits_of(Cm[i]) == bits_of(C32[i]),
                                          "%s path %d %s M=%lld N=%lld K=%lld %d thr: element "
                                          "%lld %.9g vs f32 %.9g",
                                          parlm_isa_name((parlm_isa)isa), path, tnames[t],
                                          (long long)M, (long long)N, (long long)K, nt,
                                          (long long)i, Cm[i], C32[i]);
                        }
                        parlm_free(A), parlm_free(B), parlm_free(C32), parlm_free(Cm);
                        parlm_free(Bh);
                    }
        }
    }
    omp_set_num_threads(1);
    ck_assert_int_eq(parlm_bf16_path_select(PARLM_BF16_WIDEN), PARLM_OK);
    float a = 1;
    uint16_t b = 0;
    ck_assert_int_eq(parlm_gemm_f32_bf16(PARLM_TRANS, PARLM_TRANS, 1, 1, 1, 1, &a, 1, &b, 1, 0,
                                         &a, 1), PARLM_EINVAL);
}
END_TEST

/* Tiny forced blocks (MC = 2 MR, KC = 32, NC = 2 NR) make every loop of the framework
 * iterate many times, with ragged last blocks, on shapes cheap to check. */
START_TEST(gemm_forced_small_blocking)
{
    static const int64_t shapes[][3] = {{31, 127, 67}, {127, 70, 33}, {9, 200, 100}, {64, 64, 64}};
    for (int isa = 0; isa < PARLM_ISA_COUNT; isa++) {
        if (!parlm_isa_supported((parlm_isa)isa))
            continue;
        ck_assert_int_eq(parlm_isa_select((parlm_isa)isa), PARLM_OK);
        const parlm_kernels *k = parlm_kern();
        parlm_gemm_blocking b = {2 * k->sgemm_mr, 32, 2 * k->sgemm_nr};
        force_blocking(&b);
        for (int s = 0; s < 4; s++)
            for (int t = 0; t < 3; t++)
                for (int v = 0; v < 3; v++) { /* f32, bf16 dot, bf16 widen */
                    int bf16 = v > 0;
                    if (bf16)
                        ck_assert_int_eq(parlm_bf16_path_select(v == 1 ? PARLM_BF16_DOT
                                                                       : PARLM_BF16_WIDEN),
                                         PARLM_OK);
                    gemm_case g = {tas[t], tbs[t], shapes[s][0], shapes[s][1], shapes[s][2], t,
                                   alphas[(s + t) % 5], betas[(s + t) % 5], bf16};
                    double w = run_gemm_case(&g, 200 + (uint64_t)(s * 3 + t));
                    ck_assert_msg(w <= 1.0, "%s %s %s %lldx%lldx%lld: error %.3g x tolerance",
                                  parlm_isa_name((parlm_isa)isa),
                                  v == 0 ? "f32" : v == 1 ? "bf16 dot" : "bf16 widen", tnames[t],
                                  (long long)g.M, (long long)g.N, (long long)g.K, w);
                }
        force_blocking(NULL);
    }
}
END_TEST

/* bf16 vs f32 on the same (unrounded) inputs: each input rounding errs by at most
 * u_bf16 = 2^-8 relative, so a product by at most 2^-7 + 2^-16; the sum of products then
 * differs by at most that times sum|a||b|, plus both results' own f32 tolerances. */
START_TEST(gemm_bf16_close_to_f32)
{
    int64_t M = 64, N = 127, K = 300;
    float *A = tu_alloc_nan(M * K), *B = tu_alloc_nan(K * N);
    float *C32 = tu_alloc_nan(M * N), *C16 = tu_alloc_nan(M * N);
    uint16_t *Ah = parlm_alloc((size_t)(M * K), 2), *Bh = parlm_alloc((size_t)(K * N), 2);
    tu_fill(A, M * K, 7);
    tu_fill(B, K * N, 8);
    ck_assert_int_eq(parlm_f32_to_bf16(A, Ah, M * K), PARLM_OK);
    ck_assert_int_eq(parlm_f32_to_bf16(B, Bh, K * N), PARLM_OK);
    ck_assert_int_eq(parlm_sgemm(PARLM_NO_TRANS, PARLM_NO_TRANS, M, N, K, 1.0f, A, K, B, N, 0.0f,
                                 C32, N),
                     PARLM_OK);
    ck_assert_int_eq(parlm_gemm_bf16(PARLM_NO_TRANS, PARLM_NO_TRANS, M, N, K, 1.0f, Ah, K, Bh, N,
                                     0.0f, C16, N),
                     PARLM_OK);
    double worst = 0.0, any_diff = 0.0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double sa = 0.0;
            for (int64_t p = 0; p < K; p++)
                sa += fabs((double)A[i * K + p] * B[p * N + j]);
            double bound = (ldexp(1.0, -7) + ldexp(1.0, -16)) * sa + 2.0 * gemm_tol(K, sa, 0.0);
            double d = fabs((double)C16[i * N + j] - C32[i * N + j]);
            if (!(d <= bound))
                ck_abort_msg("(%lld,%lld): |bf16 - f32| = %g > %g", (long long)i, (long long)j, d,
                             bound);
            any_diff = fmax(any_diff, d);
            worst = fmax(worst, d / bound);
        }
    ck_assert_msg(any_diff > 0.0, "bf16 result equals f32 exactly: inputs were not rounded?");
    parlm_free(A);
    parlm_free(B);
    parlm_free(C32);
    parlm_free(C16);
    parlm_free(Ah);
    parlm_free(Bh);
}
END_TEST

/* ---- GEMV ------------------------------------------------------------------------------- */

/* y = alpha op(A) x + beta y for A rows x cols (lda), f32 or bf16 A; worst error/tolerance. */
static double run_gemv_case(parlm_trans ta, int64_t rows, int64_t cols, int64_t pad, float alpha,
                            float beta, int bf16, uint64_t seed)
{
    int64_t lda = cols + pad, nx = ta ? rows : cols, ny = ta ? cols : rows;
    float *A = tu_alloc_nan(rows * lda), *x = tu_alloc_nan(nx), *y = tu_alloc_nan(ny + 1);
    float *y0 = tu_alloc_nan(ny + 1);
    uint16_t *Ah = parlm_alloc((size_t)(rows * lda), 2);
    tu_fill(A, rows * lda, seed);
    tu_fill(x, nx, seed + 1);
    for (int64_t i = 0; i < rows * lda; i++) {
        Ah[i] = to_bf16(A[i]);
        if (bf16)
            A[i] = from_bf16(Ah[i]);
    }
    if (beta != 0.0f)
        tu_fill(y, ny, seed + 2);
    y[ny] = 12345.0f; /* one past the end: must stay */
    memcpy(y0, y, (size_t)(ny + 1) * sizeof(float));
    parlm_status st = bf16 ? parlm_gemv_bf16(rows, cols, alpha, Ah, lda, x, beta, y)
                           : parlm_sgemv(ta, rows, cols, alpha, A, lda, x, beta, y);
    ck_assert_msg(st == PARLM_OK, "%s", parlm_last_error());
    ck_assert(y[ny] == 12345.0f);
    double worst = 0.0;
    for (int64_t o = 0; o < ny; o++) {
        double s = 0.0, sa = 0.0;
        for (int64_t p = 0; p < nx; p++) {
            double a = ta ? A[p * lda + o] : A[o * lda + p];
            s += a * x[p];
            sa += fabs(a * x[p]);
        }
        double bc = beta == 0.0f ? 0.0 : (double)beta * y0[o];
        double err = fabs(y[o] - (alpha * s + bc)) / gemm_tol(nx, fabs(alpha) * sa, bc);
        if (!(err <= worst))
            worst = isnan(err) ? INFINITY : err;
    }
    parlm_free(A);
    parlm_free(x);
    parlm_free(y);
    parlm_free(y0);
    parlm_free(Ah);
    return worst;
}

START_TEST(gemv_every_isa)
{
    static const int64_t sz[] = {1, 2, 7, 17, 31, 64, 127, 255, 1000, 3000};
    int ns = (int)(sizeof sz / sizeof sz[0]);
    for (int isa = 0; isa < PARLM_ISA_COUNT; isa++) {
        if (!parlm_isa_supported((parlm_isa)isa))
            continue;
        ck_assert_int_eq(parlm_isa_select((parlm_isa)isa), PARLM_OK);
        int idx = 0;
        for (int kind = 0; kind < 3; kind++) /* f32 NO_TRANS, f32 TRANS, bf16 */
            for (int a = 0; a < ns; a++)
                for (int b = 0; b < ns; b++, idx++) {
                    parlm_trans ta = kind == 1 ? PARLM_TRANS : PARLM_NO_TRANS;
                    double w = run_gemv_case(ta, sz[a], sz[b], idx % 3 ? 5 : 0, alphas[idx % 5],
                                             betas[idx % 5], kind == 2, 300 + (uint64_t)idx);
                    ck_assert_msg(w <= 1.0, "%s gemv kind %d rows=%lld cols=%lld: %.3g x tol",
                                  parlm_isa_name((parlm_isa)isa), kind, (long long)sz[a],
                                  (long long)sz[b], w);
                }
    }
}
END_TEST

/* ---- the bf16 array conversions ------------------------------------------------------ */

/* The public conversions (threaded for large n) agree with the reference and round-trip. */
START_TEST(public_conversions)
{
    int64_t n = 3000017;
    float *x = tu_alloc_nan(n), *back = tu_alloc_nan(n);
    uint16_t *h = parlm_alloc((size_t)n, 2);
    tu_fill(x, n, 31);
    ck_assert_int_eq(parlm_f32_to_bf16(x, h, n), PARLM_OK);
    ck_assert_int_eq(parlm_bf16_to_f32(h, back, n), PARLM_OK);
    for (int64_t i = 0; i < n; i++)
        if (h[i] != to_bf16(x[i]) || bits_of(back[i]) != (uint32_t)h[i] << 16)
            ck_abort_msg("element %lld: %08x -> %04x -> %08x", (long long)i, bits_of(x[i]), h[i],
                         bits_of(back[i]));
    ck_assert_int_eq(parlm_f32_to_bf16(x, h, 0), PARLM_OK); /* n == 0: nothing to do */
    parlm_free(x);
    parlm_free(back);
    parlm_free(h);
}
END_TEST

/* ---- threads -------------------------------------------------------------------------------
 * Each element of C is summed by one thread in a fixed order (KC does not depend on the
 * thread count), so 2 threads match 1 thread bitwise, on both bf16 paths. */

static void mt_run(int which, int threads, float *A, float *B, uint16_t *Ah, uint16_t *Bh,
                   float *C)
{
    omp_set_num_threads(threads);
    parlm_status st = PARLM_OK;
    switch (which) {
    case 0: st = parlm_sgemm(PARLM_NO_TRANS, PARLM_TRANS, 256, 768, 300, 1.0f, A, 300, B, 300,
                             0.0f, C, 768);
        break;
    case 1: st = parlm_sgemm(PARLM_TRANS, PARLM_NO_TRANS, 1000, 255, 127, 0.5f, A, 1000, B, 255,
                             0.0f, C, 255);
        break;
    case 2: st = parlm_gemm_bf16(PARLM_NO_TRANS, PARLM_NO_TRANS, 255, 1000, 200, 1.0f, Ah, 200,
                                 Bh, 1000, 0.0f, C, 1000);
        break;
    case 3: st = parlm_sgemv(PARLM_NO_TRANS, 5000, 300, 1.0f, A, 300, B, 0.0f, C); break;
    case 4: st = parlm_gemv_bf16(5000, 300, 1.0f, Ah, 300, B, 0.0f, C); break;
    case 5: st = parlm_sgemv(PARLM_TRANS, 300, 5000, 1.0f, A, 5000, B, 0.0f, C); break;
    /* several KC and MC blocks */
    case 6: st = parlm_sgemm(PARLM_NO_TRANS, PARLM_NO_TRANS, 600, 500, 2000, 1.0f, A, 2000, B,
                             500, 0.0f, C, 500);
        break;
    case 7: st = parlm_gemm_bf16(PARLM_NO_TRANS, PARLM_TRANS, 600, 500, 2000, 1.0f, Ah, 2000, Bh,
                                 2000, 0.0f, C, 500);
        break;
    /* wide: columns go out in dynamically scheduled chunks (the LM head's case) */
    case 8: st = parlm_sgemm(PARLM_NO_TRANS, PARLM_TRANS, 64, 17000, 70, 1.0f, A, 70, B, 70,
                             0.0f, C, 17000);
        break;
    /* the same in forced small blocks: chunks of several MC and KC blocks, where a thread
     * packs A again for each chunk (one block: packed once for all its chunks) */
    case 9: {
        const parlm_kernels *k = parlm_kern();
        parlm_gemm_blocking b = {2 * k->sgemm_mr, 32, 2 * k->sgemm_nr};
        force_blocking(&b);
        st = parlm_sgemm(PARLM_NO_TRANS, PARLM_TRANS, 64, 17000, 70, 0.5f, A, 70, B, 70, 0.0f, C,
                         17000);
        force_blocking(NULL);
        break;
    }
    }
    ck_assert_msg(st == PARLM_OK, "%s", parlm_last_error());
}

START_TEST(two_threads_match_one_and_repeat_bitwise)
{
    int64_t n = 1500000, nc = 64 * 17000;
    float *A = tu_alloc_nan(n), *B = tu_alloc_nan(n);
    uint16_t *Ah = parlm_alloc((size_t)n, 2), *Bh = parlm_alloc((size_t)n, 2);
    tu_fill(A, n, 41);
    tu_fill(B, n, 42);
    ck_assert_int_eq(parlm_f32_to_bf16(A, Ah, n), PARLM_OK);
    ck_assert_int_eq(parlm_f32_to_bf16(B, Bh, n), PARLM_OK);
    float *c1 = tu_alloc_nan(nc), *c2 = tu_alloc_nan(nc), *c3 = tu_alloc_nan(nc);
    static const int64_t outs[] = {256 * 768, 1000 * 255, 255 * 1000, 5000,    5000,
                                   5000,      600 * 500,  600 * 500,  64 * 17000, 64 * 17000};
    for (int path = PARLM_BF16_DOT; path <= PARLM_BF16_WIDEN; path++) {
        ck_assert_int_eq(parlm_bf16_path_select((parlm_bf16_path)path), PARLM_OK);
        for (int which = 0; which < 10; which++) {
            mt_run(which, 1, A, B, Ah, Bh, c1);
            mt_run(which, 2, A, B, Ah, Bh, c2);
            mt_run(which, 2, A, B, Ah, Bh, c3);
            size_t bytes = (size_t)outs[which] * 4;
            ck_assert_msg(memcmp(c2, c3, bytes) == 0, "case %d: two 2-thread runs differ", which);
            /* each output is summed by one thread in a fixed order whatever the split */
            ck_assert_msg(memcmp(c1, c2, bytes) == 0, "case %d: 1 and 2 threads differ", which);
        }
    }
    omp_set_num_threads(1);
    parlm_free(A);
    parlm_free(B);
    parlm_free(Ah);
    parlm_free(Bh);
    parlm_free(c1);
    parlm_free(c2);
    parlm_free(c3);
}
END_TEST

static Suite *gemm_suite(void)
{
    Suite *s = suite_create("gemm");
    TCase *tc = tcase_create("sgemm");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, sgemm_small_shapes_every_isa);
    tcase_add_test(tc, sgemm_large_shapes_every_isa);
    suite_add_tcase(s, tc);
    tc = tcase_create("bf16 gemm");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, gemm_bf16_small_shapes_every_isa);
    tcase_add_test(tc, gemm_bf16_large_shapes_every_isa);
    tcase_add_test(tc, gemm_bf16_close_to_f32);
    tcase_add_test(tc, gemm_bf16_widen_is_f32_of_widened_bitwise);
    tcase_add_test(tc, gemm_f32_bf16_is_f32_of_widened_b);
    suite_add_tcase(s, tc);
    tc = tcase_create("blocking");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, gemm_forced_small_blocking);
    suite_add_tcase(s, tc);
    tc = tcase_create("gemv");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, gemv_every_isa);
    suite_add_tcase(s, tc);
    tc = tcase_create("conversions");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, public_conversions);
    suite_add_tcase(s, tc);
    tc = tcase_create("threads");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, two_threads_match_one_and_repeat_bitwise);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return run_suite(gemm_suite()); }
