/* tests/core/test_dispatch.c — lib/core/dispatch.c: choosing the kernel set (by name, by
 * CPU, by PARLM_ISA) and the bf16 GEMM path (calibrated, selected, by PARLM_BF16_PATH).
 * Both variables are read once per process, so their tests re-run this very program as
 * a child with the variable set: argv[1] is "--isa-init" or "--bf16-child". */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* ---- kernel sets ------------------------------------------------------------------ */

START_TEST(isa_names_parse_and_select)
{
    parlm_isa isa;
    for (int i = 0; i < PARLM_ISA_COUNT; i++) {
        ck_assert_int_eq(parlm_isa_parse(parlm_isa_name((parlm_isa)i), &isa), PARLM_OK);
        ck_assert_int_eq(isa, i);
    }
    ck_assert_int_eq(parlm_isa_parse("sse9", &isa), PARLM_EINVAL);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "sse9"));
    ck_assert(parlm_isa_supported(PARLM_ISA_SCALAR));
    ck_assert(parlm_isa_supported(parlm_isa_current()));
    /* x86-64 and aarch64 are exclusive: one of avx2 / neon is unsupported */
    ck_assert(!(parlm_isa_supported(PARLM_ISA_AVX2) && parlm_isa_supported(PARLM_ISA_NEON)));
    parlm_isa orig = parlm_isa_current();
    for (int i = 0; i < PARLM_ISA_COUNT; i++) {
        parlm_isa before = parlm_isa_current();
        parlm_status st = parlm_isa_select((parlm_isa)i);
        if (parlm_isa_supported((parlm_isa)i)) {
            ck_assert_int_eq(st, PARLM_OK);
            ck_assert_int_eq(parlm_isa_current(), i);
        } else {
            ck_assert_int_eq(st, PARLM_EUNSUPPORTED);
            ck_assert_ptr_nonnull(strstr(parlm_last_error(), parlm_isa_name((parlm_isa)i)));
            ck_assert_int_eq(parlm_isa_current(), before); /* a refused switch changes nothing */
        }
    }
    ck_assert_int_eq(parlm_isa_select((parlm_isa)42), PARLM_EINVAL);
    ck_assert_int_eq(parlm_isa_select(orig), PARLM_OK);
}
END_TEST

/* Runs this program with PARLM_ISA=value; returns its exit status, message in out. */
static int run_isa_child(const char *value, char *out, size_t outlen)
{
    return run_child("--isa-init", "PARLM_ISA", value, out, outlen);
}

START_TEST(isa_environment_override)
{
    char out[512];
    ck_assert_int_eq(run_isa_child("scalar", out, sizeof out), 0);
    ck_assert_str_eq(out, "scalar");
    ck_assert_int_eq(run_isa_child("bogus", out, sizeof out), 1);
    ck_assert_ptr_nonnull(strstr(out, "bogus"));
    /* a set this CPU cannot run: neon on x86-64, avx2 on aarch64 */
    const char *foreign = parlm_isa_supported(PARLM_ISA_NEON) ? "avx2" : "neon";
    ck_assert_int_eq(run_isa_child(foreign, out, sizeof out), 1);
    ck_assert_ptr_nonnull(strstr(out, foreign));
    for (int i = 1; i < PARLM_ISA_COUNT; i++)
        if (parlm_isa_supported((parlm_isa)i)) {
            ck_assert_int_eq(run_isa_child(parlm_isa_name((parlm_isa)i), out, sizeof out), 0);
            ck_assert_str_eq(out, parlm_isa_name((parlm_isa)i));
        }
}
END_TEST

/* Child of isa_environment_override (no Check here): parlm_isa_init's verdict on
 * PARLM_ISA, the set's name or the error message. */
static int isa_child(void)
{
    if (parlm_isa_init() != PARLM_OK) {
        printf("%s", parlm_last_error());
        return 1;
    }
    printf("%s", parlm_isa_name(parlm_isa_current()));
    return 0;
}

/* ---- the bf16 GEMM path ------------------------------------------------------------ */

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

/* ---- the GEMV loop order ----------------------------------------------------------- */

/* A valid mode with a measured reason; a bad mode is an error; selecting a mode switches
 * parlm_sgemv / parlm_gemv_bf16 to it, and both modes agree with the double reference. */
START_TEST(gemv_mode_choice)
{
    const char *why = NULL;
    parlm_gemv_mode m = parlm_gemv_mode_current(&why);
    ck_assert(m == PARLM_GEMV_ROWS4 || m == PARLM_GEMV_ROW1);
    ck_assert_ptr_nonnull(strstr(why, "GB/s"));
    ck_assert_str_eq(parlm_gemv_mode_name(PARLM_GEMV_ROWS4), "rows4");
    ck_assert_str_eq(parlm_gemv_mode_name(PARLM_GEMV_ROW1), "row1");
    ck_assert_int_eq(parlm_gemv_mode_select((parlm_gemv_mode)5), PARLM_EINVAL);
    const int64_t R = 37, K = 203;
    float *w = tu_alloc_nan(R * K), *x = tu_alloc_nan(K), *y = tu_alloc_nan(R);
    uint16_t *wh = parlm_alloc((size_t)(R * K), 2);
    tu_fill(w, R * K, 5);
    tu_fill(x, K, 6);
    for (int64_t i = 0; i < R * K; i++)
        wh[i] = to_bf16(w[i]);
    for (int mode = 0; mode < 2; mode++) {
        ck_assert_int_eq(parlm_gemv_mode_select((parlm_gemv_mode)mode), PARLM_OK);
        ck_assert_int_eq(parlm_gemv_mode_current(NULL), mode);
        for (int bf16 = 0; bf16 < 2; bf16++) {
            ck_assert_int_eq(bf16 ? parlm_gemv_bf16(R, K, 1.0f, wh, K, x, 0.0f, y)
                                  : parlm_sgemv(PARLM_NO_TRANS, R, K, 1.0f, w, K, x, 0.0f, y),
                             PARLM_OK);
            for (int64_t i = 0; i < R; i++) {
                double s = 0.0, sa = 0.0;
                for (int64_t p = 0; p < K; p++) {
                    double a = bf16 ? from_bf16(wh[i * K + p]) : w[i * K + p];
                    s += a * x[p];
                    sa += fabs(a * x[p]);
                }
                ck_assert_msg(fabs(y[i] - s) <= gemm_tol(K, sa, 0.0),
                              "mode %d bf16 %d row %lld: %g vs %g", mode, bf16, (long long)i,
                              y[i], s);
            }
        }
    }
    ck_assert_int_eq(parlm_gemv_mode_select(m), PARLM_OK);
    parlm_free(w), parlm_free(x), parlm_free(y), parlm_free(wh);
}
END_TEST

/* Child: parlm_isa_init's verdict on PARLM_GEMV, then the mode in use ("error" if init
 * failed). */
static int gemv_child(void)
{
    if (parlm_isa_init() != PARLM_OK) {
        printf("error");
        return 0;
    }
    printf("%s", parlm_gemv_mode_name(parlm_gemv_mode_current(NULL)));
    return 0;
}

START_TEST(gemv_mode_by_environment)
{
    char out[64];
    ck_assert_int_eq(run_child("--gemv-child", "PARLM_GEMV", "rows4", out, sizeof out), 0);
    ck_assert_str_eq(out, "rows4");
    ck_assert_int_eq(run_child("--gemv-child", "PARLM_GEMV", "row1", out, sizeof out), 0);
    ck_assert_str_eq(out, "row1");
    ck_assert_int_eq(run_child("--gemv-child", "PARLM_GEMV", "rows8", out, sizeof out), 0);
    ck_assert_str_eq(out, "error");
}
END_TEST

static Suite *dispatch_suite(void)
{
    Suite *s = suite_create("dispatch");
    TCase *tc = tcase_create("isa");
    tcase_add_test(tc, isa_names_parse_and_select);
    tcase_add_test(tc, isa_environment_override);
    suite_add_tcase(s, tc);
    tc = tcase_create("bf16 path");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, bf16_path_choice);
    suite_add_tcase(s, tc);
    tc = tcase_create("bf16 path environment");
    tcase_add_test(tc, bf16_path_by_environment);
    suite_add_tcase(s, tc);
    tc = tcase_create("gemv mode");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, gemv_mode_choice);
    tcase_add_test(tc, gemv_mode_by_environment);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--isa-init") == 0)
        return isa_child();
    if (argc > 1 && strcmp(argv[1], "--bf16-child") == 0)
        return bf16_child();
    if (argc > 1 && strcmp(argv[1], "--gemv-child") == 0)
        return gemv_child();
    if (find_self("test_dispatch") != 0)
        return EXIT_FAILURE;
    return run_suite(dispatch_suite());
}
