/* tests/test_gemm.c — GEMM, GEMV and bf16 conversion, on every kernel set this CPU runs.
 * The references are independent: a naive triple loop in double precision for the public
 * calls, and the scalar kernel set (simd/scalar) for each set's micro-kernels, packing,
 * GEMVs and conversions. Shapes are awkward on purpose (1, 2, 7, 17, 31, 64, 127, 255,
 * 1000), and a forced small blocking makes small shapes cross every block boundary.
 * bf16 runs both paths (dot: k-pair kernels; widen: f32 packs + the f32 kernel) on every
 * set, whichever path this CPU would pick.
 * PARLM_GEMM is read once per process, so the backend test re-runs this program
 * (argv[1] == "--backend-child") with the variable set. */
#include "config.h"

#include <check.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/core/dispatch.h"
#include "../lib/core/gemm.h"
#include "../simd/kernels.h"
#include "parlm.h"
#include "../testutil.h"

/* ---- tolerances ------------------------------------------------------------------------
 * u = 2^-24 is the f32 unit roundoff and gamma(n) = n u / (1 - n u). Any summation order
 * of K products (with or without FMA) errs by at most gamma(K) * sum|a||b|; alpha * s and
 * + beta * c add three more roundings. The kernels use FMA and blocked sums, so the bound
 * is gamma(K + 3) * (|alpha| sum|a||b| + |beta c|), doubled as margin for the reference's
 * own double rounding. A wrong element, a lost or doubled k, a stale C all give errors of
 * order |a||b|, far above it. bf16 products are exact in f32 (8 x 8 significand bits), so
 * bf16 GEMM has the same bound against the double product of the bf16-rounded inputs. */
static double gamma_n(double n)
{
    double u = ldexp(1.0, -24);
    return n * u / (1.0 - n * u);
}

static double gemm_tol(int64_t K, double alpha_sum_abs, double beta_c)
{
    return 2.0 * gamma_n((double)K + 3.0) * (alpha_sum_abs + fabs(beta_c)) + 1e-30;
}

/* ---- helpers ---------------------------------------------------------------------------
 * Check records every assertion (a write to its log), so element loops find the first bad
 * element with plain code and assert once. */

static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* The kernel sets to test: every supported ISA, plus (x86) the plain avx512 table when
 * the CPU also has AVX512-BF16, whose bf16 fallback would otherwise never run here. */
typedef struct kset {
    char name[32];
    parlm_kernels k;
} kset;

static int kernel_sets(kset *out, int max)
{
    int n = 0;
    for (int i = 0; i < PARLM_ISA_COUNT && n < max; i++) {
        if (!parlm_isa_supported((parlm_isa)i))
            continue;
        ck_assert_int_eq(parlm_kernels_for((parlm_isa)i, &out[n].k), PARLM_OK);
        snprintf(out[n].name, sizeof out[n].name, "%s", parlm_isa_name((parlm_isa)i));
        n++;
    }
#if defined(__x86_64__)
    if (parlm_isa_supported(PARLM_ISA_AVX512) && parlm_cpu_has_avx512bf16() && n < max) {
        parlm_kernels_avx512(&out[n].k);
        snprintf(out[n].name, sizeof out[n].name, "avx512 (no bf16 ext)");
        n++;
    }
#endif
    return n;
}

static parlm_kernels scalar_table(void)
{
    parlm_kernels s;
    ck_assert_int_eq(parlm_kernels_for(PARLM_ISA_SCALAR, &s), PARLM_OK);
    return s;
}

/* ---- the public GEMM against a double-precision loop ----------------------------------- */

typedef struct gemm_case {
    parlm_trans ta, tb;
    int64_t M, N, K, pad; /* pad: extra elements at the end of each row of A, B and C */
    float alpha, beta;
    int bf16;
} gemm_case;

static const float alphas[] = {1.0f, 0.7f, 1.0f, 0.0f, -1.5f};
static const float betas[] = {0.0f, -0.3f, 1.0f, 0.5f, 0.0f};

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

static const parlm_trans tas[3] = {PARLM_NO_TRANS, PARLM_NO_TRANS, PARLM_TRANS};
static const parlm_trans tbs[3] = {PARLM_NO_TRANS, PARLM_TRANS, PARLM_NO_TRANS};
static const char *const tnames[3] = {"NN", "NT", "TN"};

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

/* The path choice: a valid path with a reason; the calibration measures both kernels of
 * every set; a bad path is an error. (Which path wins is speed, never asserted.) */
START_TEST(bf16_path_choice)
{
    const char *why = NULL;
    parlm_bf16_path p = parlm_bf16_path_current(&why);
    ck_assert(p == PARLM_BF16_DOT || p == PARLM_BF16_WIDEN);
    ck_assert_ptr_nonnull(why);
    ck_assert_int_gt((int)strlen(why), 0);
    ck_assert_str_eq(parlm_bf16_path_name(PARLM_BF16_DOT), "dot");
    ck_assert_str_eq(parlm_bf16_path_name(PARLM_BF16_WIDEN), "widen");
    ck_assert_int_eq(parlm_bf16_path_select((parlm_bf16_path)7), PARLM_EINVAL);
    kset sets[8];
    int ns = kernel_sets(sets, 8);
    for (int s = 0; s < ns; s++) {
        double dot = 0.0, f32 = 0.0;
        ck_assert_int_eq(parlm_bf16_calibrate(&sets[s].k, &dot, &f32), PARLM_OK);
        ck_assert_msg(dot > 0.0 && f32 > 0.0, "%s: calibration gave %g / %g GFLOP/s",
                      sets[s].name, dot, f32);
    }
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
        parlm_gemm_blocking_override(&b);
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
        parlm_gemm_blocking_override(NULL);
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

/* ---- kernels of each set against the scalar set --------------------------------------- */

/* One MR x NR micro-kernel call of set k against the scalar micro-kernel (4 x 4) run on
 * 4 x 4 sub-panels of the same packed data. C has a sentinel frame: the kernel must write
 * exactly C[0:m, 0:n]. beta == 0 starts from NaN. */
static void check_ukr(const kset *ks, const parlm_kernels *sc, int bf16, int64_t kc, int m, int n,
                      float alpha, float beta, uint64_t seed)
{
    const parlm_kernels *k = &ks->k;
    int MR = bf16 ? k->bgemm_mr : k->sgemm_mr, NR = bf16 ? k->bgemm_nr : k->sgemm_nr;
    int sMR = bf16 ? sc->bgemm_mr : sc->sgemm_mr, sNR = bf16 ? sc->bgemm_nr : sc->sgemm_nr;
    int64_t steps = bf16 ? (kc + 1) / 2 : kc, wpk = bf16 ? 2 : 1; /* 16-bit words per value */
    int64_t ldc = NR + 5;
    float *apf = tu_alloc_nan(steps * MR * 2), *bpf = tu_alloc_nan(steps * NR * 2);
    uint16_t *ap = (uint16_t *)apf, *bp = (uint16_t *)bpf; /* bf16 view of the same panels */
    float *c = tu_alloc_nan((MR + 2) * ldc), *ref = tu_alloc_nan((MR + 2) * ldc);
    float *sa = tu_alloc_nan(steps * sMR * 2), *sb = tu_alloc_nan(steps * sNR * 2);
    float *vals = tu_alloc_nan(steps * (MR + NR) * 2);
    tu_fill(vals, steps * (MR + NR) * 2, seed);
    /* packed panels as the contract says: rows >= m / cols >= n are zero */
    for (int64_t p = 0; p < steps; p++)
        for (int64_t e = 0; e < wpk; e++) {
            for (int i = 0; i < MR; i++) {
                float v = i < m ? vals[(p * wpk + e) * (MR + NR) + i] : 0.0f;
                if (bf16)
                    ap[(p * MR + i) * 2 + e] = to_bf16(v);
                else
                    apf[p * MR + i] = v;
            }
            for (int j = 0; j < NR; j++) {
                float v = j < n ? vals[(p * wpk + e) * (MR + NR) + MR + j] : 0.0f;
                if (bf16)
                    bp[(p * NR + j) * 2 + e] = to_bf16(v);
                else
                    bpf[p * NR + j] = v;
            }
        }
    tu_fill(c, (MR + 2) * ldc, seed + 9);
    if (beta == 0.0f)
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                c[i * ldc + j] = NAN;
    memcpy(ref, c, (size_t)((MR + 2) * ldc) * sizeof(float));
    /* reference: scalar kernel per sMR x sNR sub-tile, on re-cut panels */
    for (int i0 = 0; i0 < m; i0 += sMR)
        for (int j0 = 0; j0 < n; j0 += sNR) {
            for (int64_t p = 0; p < steps; p++)
                for (int64_t e = 0; e < wpk; e++) {
                    for (int i = 0; i < sMR; i++) {
                        if (bf16)
                            ((uint16_t *)sa)[(p * sMR + i) * 2 + e] =
                                i0 + i < MR ? ap[(p * MR + i0 + i) * 2 + e] : 0;
                        else
                            sa[p * sMR + i] = i0 + i < MR ? apf[p * MR + i0 + i] : 0.0f;
                    }
                    for (int j = 0; j < sNR; j++) {
                        if (bf16)
                            ((uint16_t *)sb)[(p * sNR + j) * 2 + e] =
                                j0 + j < NR ? bp[(p * NR + j0 + j) * 2 + e] : 0;
                        else
                            sb[p * sNR + j] = j0 + j < NR ? bpf[p * NR + j0 + j] : 0.0f;
                    }
                }
            int mm = m - i0 < sMR ? m - i0 : sMR, nn = n - j0 < sNR ? n - j0 : sNR;
            if (bf16)
                sc->bgemm_ukr(steps, (uint16_t *)sa, (uint16_t *)sb, ref + i0 * ldc + j0, ldc,
                              alpha, beta, mm, nn);
            else
                sc->sgemm_ukr(steps, sa, sb, ref + i0 * ldc + j0, ldc, alpha, beta, mm, nn);
        }
    if (bf16)
        k->bgemm_ukr(steps, ap, bp, c, ldc, alpha, beta, m, n);
    else
        k->sgemm_ukr(steps, apf, bpf, c, ldc, alpha, beta, m, n);
    for (int i = 0; i < MR + 2; i++)
        for (int64_t j = 0; j < ldc; j++) {
            float got = c[i * ldc + j], want = ref[i * ldc + j];
            if (i >= m || j >= n) { /* outside the tile: bitwise untouched */
                if (bits_of(got) != bits_of(want))
                    ck_abort_msg("%s ukr wrote outside %dx%d at (%d,%lld)", ks->name, m, n, i,
                                 (long long)j);
                continue;
            }
            /* both sums of the same 2*steps exact-or-rounded products: 2 gamma(kc+3) each */
            double sabs = 0.0;
            for (int64_t p = 0; p < steps; p++)
                for (int64_t e = 0; e < wpk; e++) {
                    double a = bf16 ? from_bf16(ap[(p * MR + i) * 2 + e]) : apf[p * MR + i];
                    double b = bf16 ? from_bf16(bp[(p * NR + j) * 2 + e]) : bpf[p * NR + j];
                    sabs += fabs(a * b);
                }
            double bc = beta == 0.0f ? 0.0 : fabs(beta * c[i * ldc + j]);
            double tol = 2.0 * gemm_tol(kc, fabs(alpha) * sabs, bc);
            if (!(fabs((double)got - want) <= tol))
                ck_abort_msg("%s %s ukr kc=%lld m=%d n=%d (%d,%lld): %g vs scalar %g", ks->name,
                             bf16 ? "bf16" : "f32", (long long)kc, m, n, i, (long long)j, got, want);
        }
    parlm_free(apf);
    parlm_free(bpf);
    parlm_free(c);
    parlm_free(ref);
    parlm_free(sa);
    parlm_free(sb);
    parlm_free(vals);
}

START_TEST(ukr_matches_scalar_every_set)
{
    kset sets[8];
    int ns = kernel_sets(sets, 8);
    parlm_kernels sc = scalar_table();
    for (int s = 0; s < ns; s++)
        for (int bf16 = 0; bf16 < 2; bf16++) {
            int MR = bf16 ? sets[s].k.bgemm_mr : sets[s].k.sgemm_mr;
            int NR = bf16 ? sets[s].k.bgemm_nr : sets[s].k.sgemm_nr;
            int ms[] = {MR, 1, MR - 1 > 0 ? MR - 1 : 1, (MR + 1) / 2};
            int nsz[] = {NR, 1, NR - 1 > 0 ? NR - 1 : 1, NR / 2 + 1, 17 < NR ? 17 : NR};
            int64_t kcs[] = {1, 2, 7, 64, 257};
            int idx = 0;
            for (int a = 0; a < 4; a++)
                for (int b = 0; b < 5; b++)
                    for (int c = 0; c < 5; c++, idx++)
                        check_ukr(&sets[s], &sc, bf16, kcs[c], ms[a], nsz[b], alphas[idx % 5],
                                  betas[idx % 5], 400 + (uint64_t)idx);
        }
}
END_TEST

/* Packing is data movement: every set must match the scalar packing bitwise, for copies
 * (rs == 1) and transposes (cs == 1), ragged mn, odd kc, widths MR and NR. */
START_TEST(pack_matches_scalar_every_set)
{
    kset sets[8];
    int ns = kernel_sets(sets, 8);
    parlm_kernels sc = scalar_table();
    int64_t kcs[] = {1, 2, 7, 8, 9, 31, 64, 67};
    int64_t ld = 203; /* source leading dim: odd, so bf16 rows are not 4-byte aligned */
    float *src = tu_alloc_nan(ld * ld);
    tu_fill(src, ld * ld, 11);
    uint16_t *hsrc = parlm_alloc((size_t)(ld * ld), 2);
    for (int64_t i = 0; i < ld * ld; i++)
        hsrc[i] = to_bf16(src[i]);
    size_t cap = (size_t)(200 * 80 + 64) * 4; /* bytes: mn <= 70 (+ pad to 80), kc <= 67 */
    float *o1 = parlm_alloc(cap, 1), *o2 = parlm_alloc(cap, 1);
    for (int s = 0; s < ns; s++) {
        const parlm_kernels *k = &sets[s].k;
        /* f32, bf16 k pairs, bf16 widened to f32 (wpack) */
        int widths[6] = {k->sgemm_mr, k->sgemm_nr, k->bgemm_mr, k->bgemm_nr, k->sgemm_mr,
                         k->sgemm_nr};
        for (int wi = 0; wi < 6; wi++) {
            int w = widths[wi], bf16 = wi >= 2 && wi < 4, widen = wi >= 4;
            int64_t mns[] = {1, w - 1 > 0 ? w - 1 : 1, w, w + 1, 2 * w + 3, 70};
            for (int a = 0; a < 6; a++)
                for (int c = 0; c < 8; c++)
                    for (int tr = 0; tr < 2; tr++) {
                        int64_t mn = mns[a], kc = kcs[c];
                        int64_t rs = tr ? ld : 1, cs = tr ? 1 : ld;
                        memset(o1, 0xa5, cap);
                        memset(o2, 0xa5, cap);
                        if (bf16) {
                            k->bpack(kc, mn, hsrc + 3, rs, cs, w, (uint16_t *)o1);
                            sc.bpack(kc, mn, hsrc + 3, rs, cs, w, (uint16_t *)o2);
                        } else if (widen) {
                            if (k->wpack)
                                k->wpack(kc, mn, hsrc + 3, rs, cs, w, o1);
                            else /* the composition lib/core/gemm.c packs with instead */
                                parlm_gemm_widen_pack(k, kc, mn, hsrc + 3, rs, cs, w, o1);
                            sc.wpack(kc, mn, hsrc + 3, rs, cs, w, o2);
                        } else {
                            k->spack(kc, mn, src + 3, rs, cs, w, o1);
                            sc.spack(kc, mn, src + 3, rs, cs, w, o2);
                        }
                        ck_assert_msg(memcmp(o1, o2, cap) == 0,
                                      "%s %s pack w=%d mn=%lld kc=%lld %s differs from scalar",
                                      sets[s].name, bf16 ? "bf16" : widen ? "widen" : "f32", w,
                                      (long long)mn,
                                      (long long)kc, tr ? "transpose" : "copy");
                    }
        }
    }
    parlm_free(src);
    parlm_free(hsrc);
    parlm_free(o1);
    parlm_free(o2);
}
END_TEST

/* The GEMV kernels of each set against the scalar ones: row counts around the 4-row
 * groups, k around the vector widths. Same tolerance as GEMM. */
START_TEST(gemv_kernels_match_scalar_every_set)
{
    kset sets[8];
    int ns = kernel_sets(sets, 8);
    parlm_kernels sc = scalar_table();
    int64_t rows_[] = {1, 3, 4, 5, 9, 130}, ks[] = {1, 7, 15, 16, 17, 31, 33, 100, 129, 200};
    int64_t ld = 211;
    float *w = tu_alloc_nan(130 * ld), *x = tu_alloc_nan(ld), *y1 = tu_alloc_nan(ld + 1);
    float *y2 = tu_alloc_nan(ld + 1);
    uint16_t *wh = parlm_alloc((size_t)(130 * ld), 2);
    tu_fill(w, 130 * ld, 21);
    tu_fill(x, ld, 22);
    for (int64_t i = 0; i < 130 * ld; i++) {
        wh[i] = to_bf16(w[i]);
    }
    for (int s = 0; s < ns; s++) {
        const parlm_kernels *k = &sets[s].k;
        int idx = 0;
        for (int kind = 0; kind < 3; kind++)
            for (int a = 0; a < 6; a++)
                for (int b = 0; b < 10; b++, idx++) {
                    int64_t r = rows_[a], kk = ks[b];
                    float alpha = alphas[idx % 5], beta = betas[idx % 5];
                    int64_t ny = kind == 1 ? kk : r; /* sgemv_n: k rows of B, n = kk columns */
                    tu_fill(y1, ny + 1, 23 + (uint64_t)idx);
                    if (beta == 0.0f)
                        for (int64_t i = 0; i < ny; i++)
                            y1[i] = NAN;
                    memcpy(y2, y1, (size_t)(ny + 1) * sizeof(float));
                    if (kind == 0) {
                        k->sgemv_t(r, kk, alpha, w, ld, x, beta, y1);
                        sc.sgemv_t(r, kk, alpha, w, ld, x, beta, y2);
                    } else if (kind == 1) {
                        k->sgemv_n(r, kk, alpha, w, ld, x, beta, y1);
                        sc.sgemv_n(r, kk, alpha, w, ld, x, beta, y2);
                    } else {
                        k->bgemv_t(r, kk, alpha, wh, ld, x, beta, y1);
                        sc.bgemv_t(r, kk, alpha, wh, ld, x, beta, y2);
                    }
                    ck_assert(bits_of(y1[ny]) == bits_of(y2[ny])); /* one past: untouched */
                    int64_t depth = kind == 1 ? r : kk;
                    for (int64_t i = 0; i < ny; i++) {
                        double sa = 0.0;
                        for (int64_t p = 0; p < depth; p++) {
                            double wv = kind == 0   ? w[i * ld + p]
                                        : kind == 1 ? w[p * ld + i]
                                                    : from_bf16(wh[i * ld + p]);
                            sa += fabs(wv * x[p]);
                        }
                        double bc = beta == 0.0f ? 0.0 : fabs((double)beta * y2[i]);
                        double tol = 2.0 * gemm_tol(depth, fabs(alpha) * sa, bc);
                        if (!(fabs((double)y1[i] - y2[i]) <= tol))
                            ck_abort_msg("%s gemv kind %d rows=%lld k=%lld [%lld]: %g vs %g",
                                         sets[s].name, kind, (long long)r, (long long)kk,
                                         (long long)i, y1[i], y2[i]);
                    }
                }
    }
    parlm_free(w);
    parlm_free(x);
    parlm_free(y1);
    parlm_free(y2);
    parlm_free(wh);
}
END_TEST

/* Every non-scalar set has its own GEMM, packing, GEMV and conversion kernels. */
START_TEST(no_scalar_entries_left)
{
    kset sets[8];
    int ns = kernel_sets(sets, 8);
    parlm_kernels sc = scalar_table();
    for (int s = 0; s < ns; s++) {
        const parlm_kernels *k = &sets[s].k;
        if (strcmp(k->name, "scalar") == 0)
            continue;
        const char *n = sets[s].name;
        ck_assert_msg(k->sgemm_ukr != sc.sgemm_ukr, "%s: sgemm_ukr is scalar", n);
        ck_assert_msg(k->bgemm_ukr != sc.bgemm_ukr, "%s: bgemm_ukr is scalar", n);
        ck_assert_msg(k->sgemv_t != sc.sgemv_t, "%s: sgemv_t is scalar", n);
        ck_assert_msg(k->sgemv_n != sc.sgemv_n, "%s: sgemv_n is scalar", n);
        ck_assert_msg(k->bgemv_t != sc.bgemv_t, "%s: bgemv_t is scalar", n);
        ck_assert_msg(k->f32_to_bf16 != sc.f32_to_bf16, "%s: f32_to_bf16 is scalar", n);
        ck_assert_msg(k->bf16_to_f32 != sc.bf16_to_f32, "%s: bf16_to_f32 is scalar", n);
        /* neon packs with the reference until it has its own packing kernels */
        if (strcmp(k->name, "neon") != 0) {
            ck_assert_msg(k->spack != sc.spack, "%s: spack is scalar", n);
            ck_assert_msg(k->bpack != sc.bpack, "%s: bpack is scalar", n);
        }
        /* the widening pack: its own (avx512), or NULL for lib/core/gemm.c's composition of the
         * set's own conversion and packing (avx2, neon) */
        ck_assert_msg(k->wpack != sc.wpack, "%s: wpack is scalar", n);
    }
}
END_TEST

/* ---- conversions ------------------------------------------------------------------------ */

/* All 65536 bf16 -> f32, bitwise against the scalar set (NaN payloads included). */
START_TEST(bf16_to_f32_exhaustive_every_set)
{
    kset sets[8];
    int ns = kernel_sets(sets, 8);
    uint16_t *h = parlm_alloc(65536, 2);
    float *a = parlm_alloc(65536, 4), *b = parlm_alloc(65536, 4);
    for (int i = 0; i < 65536; i++)
        h[i] = (uint16_t)i;
    parlm_kernels sc = scalar_table();
    sc.bf16_to_f32(h, b, 65536);
    for (int i = 0; i < 65536; i++) /* the reference itself */
        if (bits_of(b[i]) != (uint32_t)i << 16)
            ck_abort_msg("scalar bf16_to_f32(%04x) = %08x", i, bits_of(b[i]));
    for (int s = 0; s < ns; s++) {
        memset(a, 0, 65536 * 4);
        sets[s].k.bf16_to_f32(h, a, 65536);
        ck_assert_msg(memcmp(a, b, 65536 * 4) == 0, "%s bf16_to_f32 differs", sets[s].name);
    }
    parlm_free(h);
    parlm_free(a);
    parlm_free(b);
}
END_TEST

/* f32 -> bf16: every special class (zeros, denormals, rounding ties, the largest finite
 * that rounds to inf, infinities, NaNs whose payload would carry into the exponent), then
 * 2^20 random bit patterns; bitwise against the scalar reference, at lengths that exercise
 * the vector tails. */
START_TEST(f32_to_bf16_specials_and_random_every_set)
{
    static const uint32_t specials[] = {
        0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x00007fff, 0x00008000, 0x00008001,
        0x00018000, 0x0000ffff, 0x00010000, 0x007fffff, 0x807fffff, 0x00400000, 0x00800000,
        0x3f800000, 0x3f808000, 0x3f818000, 0x3f807fff, 0x3f808001, 0xbf808000, 0x7f7fffff,
        0xff7fffff, 0x7f7f7fff, 0x7f7f8000, 0x7f800000, 0xff800000, 0x7f800001, 0xff800001,
        0x7f80ffff, 0x7fbfffff, 0x7fc00000, 0xffc00000, 0x7fffffff, 0xffffffff, 0x7fff8000};
    int nsp = (int)(sizeof specials / sizeof specials[0]);
    int64_t n = (1 << 20) + 13;
    float *x = parlm_alloc((size_t)n, 4);
    uint16_t *a = parlm_alloc((size_t)n + 8, 2), *b = parlm_alloc((size_t)n + 8, 2);
    for (int i = 0; i < nsp; i++)
        memcpy(&x[i], &specials[i], 4);
    uint64_t st = 99;
    for (int64_t i = nsp; i < n; i++) {
        uint32_t u = (uint32_t)(tu_next(&st) >> 32);
        memcpy(&x[i], &u, 4);
    }
    for (int64_t i = 0; i < n; i++) /* the reference against an independent statement of RNE */
        b[i] = to_bf16(x[i]);
    parlm_kernels sc = scalar_table();
    sc.f32_to_bf16(x, a, n);
    ck_assert(memcmp(a, b, (size_t)n * 2) == 0);
    kset sets[8];
    int ns = kernel_sets(sets, 8);
    for (int s = 0; s < ns; s++) {
        for (int64_t len = 0; len <= 40; len++) { /* tails: write exactly len outputs */
            for (int64_t i = 0; i < len + 8; i++)
                a[i] = 0xdead;
            sets[s].k.f32_to_bf16(x, a, len);
            for (int64_t i = 0; i < len; i++)
                if (a[i] != b[i])
                    ck_abort_msg("%s: x=%08x -> %04x, expected %04x", sets[s].name,
                                 bits_of(x[i]), a[i], b[i]);
            for (int64_t i = len; i < len + 8; i++)
                if (a[i] != 0xdead)
                    ck_abort_msg("%s: f32_to_bf16 of %lld wrote y[%lld]", sets[s].name,
                                 (long long)len, (long long)i);
        }
        sets[s].k.f32_to_bf16(x, a, n);
        for (int64_t i = 0; i < n; i++)
            if (a[i] != b[i])
                ck_abort_msg("%s: x=%08x -> %04x, expected %04x", sets[s].name, bits_of(x[i]),
                             a[i], b[i]);
    }
    parlm_free(x);
    parlm_free(a);
    parlm_free(b);
}
END_TEST

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

/* ---- bad input ---------------------------------------------------------------------------- */

static void expect_einval(parlm_status st, const char *needle)
{
    ck_assert_int_eq(st, PARLM_EINVAL);
    ck_assert_msg(strstr(parlm_last_error(), needle) != NULL, "message '%s' lacks '%s'",
                  parlm_last_error(), needle);
}

START_TEST(bad_input_is_an_error_with_message)
{
    float *A = tu_alloc_nan(64 * 64), *B = tu_alloc_nan(64 * 64), *C = tu_alloc_nan(64 * 64);
    uint16_t *H = parlm_alloc(64 * 64, 2);
    const parlm_trans N = PARLM_NO_TRANS, T = PARLM_TRANS;
    expect_einval(parlm_sgemm(N, N, 4, 4, 4, 1, NULL, 4, B, 4, 0, C, 4), "A is NULL");
    expect_einval(parlm_sgemm(N, N, 4, 4, 4, 1, A, 4, NULL, 4, 0, C, 4), "B is NULL");
    expect_einval(parlm_sgemm(N, N, 4, 4, 4, 1, A, 4, B, 4, 0, NULL, 4), "C is NULL");
    expect_einval(parlm_sgemm(N, N, 0, 4, 4, 1, A, 4, B, 4, 0, C, 4), "M must be >= 1, got 0");
    expect_einval(parlm_sgemm(N, N, 4, -3, 4, 1, A, 4, B, 4, 0, C, 4), "N must be >= 1, got -3");
    expect_einval(parlm_sgemm(N, N, 4, 4, 0, 1, A, 4, B, 4, 0, C, 4), "K must be >= 1, got 0");
    expect_einval(parlm_sgemm(N, N, 4, 5, 6, 1, A, 5, B, 5, 0, C, 5), "lda = 5");
    expect_einval(parlm_sgemm(T, N, 4, 5, 6, 1, A, 3, B, 5, 0, C, 5), "lda = 3");
    expect_einval(parlm_sgemm(N, N, 4, 5, 6, 1, A, 6, B, 4, 0, C, 5), "ldb = 4");
    expect_einval(parlm_sgemm(N, T, 4, 5, 6, 1, A, 6, B, 5, 0, C, 5), "ldb = 5");
    expect_einval(parlm_sgemm(N, N, 4, 5, 6, 1, A, 6, B, 5, 0, C, 4), "ldc = 4");
    expect_einval(parlm_sgemm(T, T, 4, 4, 4, 1, A, 4, B, 4, 0, C, 4), "TT");
    expect_einval(parlm_sgemm((parlm_trans)2, N, 4, 4, 4, 1, A, 4, B, 4, 0, C, 4), "ta = 2");
    expect_einval(parlm_sgemm(N, (parlm_trans)-1, 4, 4, 4, 1, A, 4, B, 4, 0, C, 4), "tb = -1");
    expect_einval(parlm_sgemm(N, N, 4, 4, 4, 1, A, 4, B, 4, 0, A + 15, 4), "C");
    expect_einval(parlm_sgemm(N, N, 4, 4, 4, 1, A, 4, B, 4, 0, A + 12, 4), "overlaps A");
    expect_einval(parlm_sgemm(N, T, 4, 4, 4, 1, A, 4, B, 4, 0, B, 4), "overlaps B");
    expect_einval(parlm_sgemm(N, N, 1, 4, 4, 1, A, 4, B, 4, 0, B + 8, 4), "overlaps B");
    expect_einval(parlm_sgemm(N, N, 4, 4, INT64_MAX / 2, 1, A, INT64_MAX / 2, B, 4, 0, C, 4),
                  "too large");
    /* interleaved column views of one buffer do not overlap and are accepted */
    ck_assert_int_eq(parlm_sgemm(N, N, 8, 4, 4, 1, A, 16, B, 4, 0, A + 8, 16), PARLM_OK);
    expect_einval(parlm_sgemm(N, N, 8, 4, 4, 1, A, 16, B, 4, 0, A + 2, 16), "overlaps A");

    expect_einval(parlm_gemm_bf16(N, N, 4, 4, 4, 1, NULL, 4, H, 4, 0, C, 4), "A is NULL");
    expect_einval(parlm_gemm_bf16(T, T, 4, 4, 4, 1, H, 4, H, 4, 0, C, 4), "TT");
    expect_einval(parlm_gemm_bf16(N, N, 4, 4, 4, 1, H, 3, H, 4, 0, C, 4), "lda = 3");
    expect_einval(parlm_gemm_bf16(N, N, 4, 4, 4, 1, H, 4, H, 4, 0, (float *)H, 4),
                  "overlaps A");

    expect_einval(parlm_sgemv(N, 4, 4, 1, NULL, 4, B, 0, C), "A is NULL");
    expect_einval(parlm_sgemv(N, 4, 4, 1, A, 4, NULL, 0, C), "x is NULL");
    expect_einval(parlm_sgemv(N, 4, 4, 1, A, 4, B, 0, NULL), "y is NULL");
    expect_einval(parlm_sgemv(N, 0, 4, 1, A, 4, B, 0, C), "rows must be >= 1");
    expect_einval(parlm_sgemv(N, 4, 4, 1, A, 3, B, 0, C), "lda = 3");
    expect_einval(parlm_sgemv((parlm_trans)5, 4, 4, 1, A, 4, B, 0, C), "ta = 5");
    expect_einval(parlm_sgemv(N, 4, 4, 1, A, 4, B, 0, A + 2), "y");
    expect_einval(parlm_sgemv(N, 4, 4, 1, A, 4, B, 0, B + 1), "overlaps x");
    expect_einval(parlm_gemv_bf16(4, 0, 1, H, 4, B, 0, C), "cols must be >= 1");
    expect_einval(parlm_gemv_bf16(4, 4, 1, H, 4, B, 0, (float *)H), "overlaps A");

    expect_einval(parlm_f32_to_bf16(NULL, H, 4), "x is NULL");
    expect_einval(parlm_f32_to_bf16(A, NULL, 4), "y is NULL");
    expect_einval(parlm_f32_to_bf16(A, H, -1), "n must be >= 0");
    expect_einval(parlm_f32_to_bf16(A, (uint16_t *)A + 2, 8), "overlaps");
    expect_einval(parlm_bf16_to_f32(H, NULL, 4), "y is NULL");
    expect_einval(parlm_bf16_to_f32(H, (float *)H, 4), "overlaps");
    parlm_free(A);
    parlm_free(B);
    parlm_free(C);
    parlm_free(H);
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
                                   5000,      600 * 500,  600 * 500,  64 * 17000};
    for (int path = PARLM_BF16_DOT; path <= PARLM_BF16_WIDEN; path++) {
        ck_assert_int_eq(parlm_bf16_path_select((parlm_bf16_path)path), PARLM_OK);
        for (int which = 0; which < 9; which++) {
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

/* ---- the optional OpenBLAS backend ---------------------------------------------------- */

static char self_path[4096];

/* Child (no Check here): one NT and one TN sgemm against the double reference; prints
 * the backend in use. Exit 0 if both are right. */
static int backend_child(void)
{
    int64_t M = 64, N = 50, K = 70, ld = 80;
    float *A = tu_alloc_nan(ld * ld), *B = tu_alloc_nan(ld * ld), *C = tu_alloc_nan(M * N);
    tu_fill(A, ld * ld, 51);
    tu_fill(B, ld * ld, 52);
    int bad = 0;
    for (int t = 1; t < 3; t++) {
        if (parlm_sgemm(tas[t], tbs[t], M, N, K, 0.5f, A, ld, B, ld, 0.0f, C, N) != PARLM_OK)
            return 2;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double s = 0.0, sa = 0.0;
                for (int64_t p = 0; p < K; p++) {
                    double a = tas[t] ? A[p * ld + i] : A[i * ld + p];
                    double b = tbs[t] ? B[j * ld + p] : B[p * ld + j];
                    s += a * b;
                    sa += fabs(a * b);
                }
                bad |= !(fabs(C[i * N + j] - 0.5 * s) <= gemm_tol(K, 0.5 * sa, 0.0));
            }
    }
    printf("%s", parlm_gemm_uses_openblas() ? "openblas" : "native");
    parlm_free(A);
    parlm_free(B);
    parlm_free(C);
    return bad;
}

/* Child: parlm_isa_init's verdict on PARLM_BF16_PATH, then the path in use ("error" if
 * init failed), and a bf16 GEMM against the double reference. Exit 0 if that is right. */
static int bf16_child(void)
{
    if (parlm_isa_init() != PARLM_OK) {
        printf("error");
        return 0;
    }
    int64_t M = 33, N = 70, K = 41;
    uint16_t *A = parlm_alloc((size_t)(M * K), 2), *B = parlm_alloc((size_t)(K * N), 2);
    float *C = tu_alloc_nan(M * N), *f = tu_alloc_nan(M * K + K * N);
    tu_fill(f, M * K + K * N, 71);
    for (int64_t i = 0; i < M * K; i++)
        A[i] = to_bf16(f[i]);
    for (int64_t i = 0; i < K * N; i++)
        B[i] = to_bf16(f[M * K + i]);
    int bad = parlm_gemm_bf16(PARLM_NO_TRANS, PARLM_NO_TRANS, M, N, K, 1.0f, A, K, B, N, 0.0f, C,
                              N) != PARLM_OK;
    for (int64_t i = 0; i < M && !bad; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0.0, sa = 0.0;
            for (int64_t p = 0; p < K; p++) {
                double a = from_bf16(A[i * K + p]), b = from_bf16(B[p * N + j]);
                s += a * b;
                sa += fabs(a * b);
            }
            bad |= !(fabs(C[i * N + j] - s) <= gemm_tol(K, sa, 0.0));
        }
    printf("%s", parlm_bf16_path_name(parlm_bf16_path_current(NULL)));
    parlm_free(A);
    parlm_free(B);
    parlm_free(C);
    parlm_free(f);
    return bad;
}

/* Runs this program as `mode` with variable var=value (NULL: unset); returns its exit
 * code, its output in out. */
static int run_child(const char *mode, const char *var, const char *value, char *out, size_t n)
{
    int fd[2];
    ck_assert_int_eq(pipe(fd), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        if (value)
            setenv(var, value, 1);
        else
            unsetenv(var);
        execl(self_path, self_path, mode, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    ssize_t got = read(fd[0], out, n - 1);
    out[got > 0 ? got : 0] = '\0';
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int run_backend_child(const char *value, char *out, size_t n)
{
    return run_child("--backend-child", "PARLM_GEMM", value, out, n);
}

START_TEST(bf16_path_by_environment)
{
    char out[64];
    ck_assert_int_eq(run_child("--bf16-child", "PARLM_BF16_PATH", "dot", out, sizeof out), 0);
    ck_assert_str_eq(out, "dot");
    ck_assert_int_eq(run_child("--bf16-child", "PARLM_BF16_PATH", "widen", out, sizeof out), 0);
    ck_assert_str_eq(out, "widen");
    ck_assert_int_eq(run_child("--bf16-child", "PARLM_BF16_PATH", "fast", out, sizeof out), 0);
    ck_assert_str_eq(out, "error");
    ck_assert_int_eq(run_child("--bf16-child", "PARLM_BF16_PATH", NULL, out, sizeof out), 0);
    ck_assert(strcmp(out, "dot") == 0 || strcmp(out, "widen") == 0);
}
END_TEST

START_TEST(openblas_backend_by_environment)
{
    char out[64];
    ck_assert_int_eq(run_backend_child(NULL, out, sizeof out), 0);
    ck_assert_str_eq(out, "native");
    ck_assert_int_eq(run_backend_child("parlm", out, sizeof out), 0);
    ck_assert_str_eq(out, "native");
    ck_assert_int_eq(run_backend_child("openblas", out, sizeof out), 0);
#ifdef PARLM_HAVE_OPENBLAS
    ck_assert_str_eq(out, "openblas");
#else
    ck_assert_str_eq(out, "native"); /* not built with OpenBLAS: the variable is ignored */
#endif
}
END_TEST

/* ---- blocking and the thread grid --------------------------------------------------------- */

START_TEST(blocking_rule_fits_the_caches)
{
    /* Cascade Lake: 32 KiB L1d, 1 MiB L2, 36 MiB L3 shared by 2 cores; 8 x 48 tiles */
    parlm_gemm_blocking b = parlm_gemm_blocking_for(32768, 1 << 20, 36 << 20, 2, 8, 48);
    ck_assert_int_eq(b.kc, 768); /* measured best there (lib/core/gemm.c) */
    ck_assert_int_eq(b.mc, 680);
    ck_assert_int_eq(b.nc % 48, 0);
    ck_assert_int_le(256 * b.kc * 4 + b.kc * 48 * 4, 1 << 20); /* 256 rows + a B panel in L2 */
    ck_assert_int_le(b.mc * b.kc * 4, 2 << 20);                /* A block: twice L2 */
    ck_assert_int_le((b.kc + b.mc) * b.nc * 4, (36 << 20) / 2 / 2); /* B + C blocks in L3 */
    /* a 2 MiB L2 doubles KC; a small one clamps it at 256 and keeps the A block in L2 */
    parlm_gemm_blocking z = parlm_gemm_blocking_for(49152, 2 << 20, 32 << 20, 8, 8, 48);
    ck_assert_int_eq(z.kc, 1536);
    ck_assert_int_eq(z.mc, 680);
    parlm_gemm_blocking s = parlm_gemm_blocking_for(16384, 256 << 10, 4 << 20, 4, 6, 16);
    ck_assert_int_eq(s.kc, 256);
    ck_assert_int_le(s.mc * s.kc * 4, (256 << 10) * 2);
    ck_assert_int_le((s.kc + s.mc) * s.nc * 4, (4 << 20) / 4 / 2);
    ck_assert_int_eq(s.mc % 6, 0);
    ck_assert_int_gt(s.mc, 0);
    /* KC does not depend on the threads sharing the L3 (the sums' order must not) */
    ck_assert_int_eq(parlm_gemm_blocking_for(32768, 1 << 20, 36 << 20, 1, 8, 48).kc, b.kc);
    parlm_gemm_blocking d = parlm_gemm_blocking_for(0, -1, 0, 0, 8, 32);
    parlm_gemm_blocking e = parlm_gemm_blocking_for(PARLM_TOPO_L1_DEFAULT, PARLM_TOPO_L2_DEFAULT,
                                                    PARLM_TOPO_L3_DEFAULT, 1, 8, 32);
    ck_assert(d.kc == e.kc && d.mc == e.mc && d.nc == e.nc);
    /* the blocking in use is positive and matches the current kernel's tile */
    parlm_gemm_blocking g = parlm_gemm_blocking_get();
    const parlm_kernels *k = parlm_kern();
    ck_assert_int_gt(g.kc, 0);
    ck_assert_int_eq(g.mc % k->sgemm_mr, 0);
    ck_assert_int_eq(g.nc % k->sgemm_nr, 0);
}
END_TEST

START_TEST(thread_grid_gives_every_thread_work)
{
    int tm, tn;
    parlm_gemm_grid(256, 768, 8, 32, 2, &tm, &tn); /* GPT-2 training shape: split N evenly */
    ck_assert_int_eq(tm * tn, 2);
    ck_assert_int_eq(tn, 2);
    parlm_gemm_grid(4096, 64, 8, 32, 2, &tm, &tn); /* tall: split M */
    ck_assert_int_eq(tm, 2);
    parlm_gemm_grid(8, 50304, 8, 32, 4, &tm, &tn); /* one row panel: split N */
    ck_assert_int_eq(tn, 4);
    parlm_gemm_grid(1000, 1000, 8, 32, 6, &tm, &tn);
    ck_assert_int_eq(tm * tn, 6);
    for (int nt = 1; nt <= 8; nt++) { /* every cell of the grid has rows and columns */
        parlm_gemm_grid(256, 768, 8, 32, nt, &tm, &tn);
        ck_assert_int_eq(tm * tn, nt);
        ck_assert_int_le(tm, 256 / 8);
        ck_assert_int_le(tn, 768 / 32);
    }
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
    tcase_add_test(tc, bf16_path_choice);
    suite_add_tcase(s, tc);
    tc = tcase_create("blocking");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, gemm_forced_small_blocking);
    tcase_add_test(tc, blocking_rule_fits_the_caches);
    tcase_add_test(tc, thread_grid_gives_every_thread_work);
    suite_add_tcase(s, tc);
    tc = tcase_create("gemv");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, gemv_every_isa);
    suite_add_tcase(s, tc);
    tc = tcase_create("kernels vs scalar");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, ukr_matches_scalar_every_set);
    tcase_add_test(tc, pack_matches_scalar_every_set);
    tcase_add_test(tc, gemv_kernels_match_scalar_every_set);
    tcase_add_test(tc, no_scalar_entries_left);
    suite_add_tcase(s, tc);
    tc = tcase_create("conversions");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, bf16_to_f32_exhaustive_every_set);
    tcase_add_test(tc, f32_to_bf16_specials_and_random_every_set);
    tcase_add_test(tc, public_conversions);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, bad_input_is_an_error_with_message);
    suite_add_tcase(s, tc);
    tc = tcase_create("backend");
    tcase_add_test(tc, openblas_backend_by_environment);
    tcase_add_test(tc, bf16_path_by_environment);
    suite_add_tcase(s, tc);
    tc = tcase_create("threads");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, two_threads_match_one_and_repeat_bitwise);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--backend-child") == 0)
        return backend_child();
    if (argc > 1 && strcmp(argv[1], "--bf16-child") == 0)
        return bf16_child();
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n <= 0) {
        fprintf(stderr, "test_gemm: cannot find its own executable\n");
        return EXIT_FAILURE;
    }
    self_path[n] = '\0';
    SRunner *sr = srunner_create(gemm_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
