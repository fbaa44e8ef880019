/* tests/core/test_gemm_setup.c — how lib/core/gemm.c sets up a call before any kernel runs:
 * blocking sizes from the cache sizes, the thread grid, the backend chosen by PARLM_GEMM,
 * and arguments refused with a message. (Its results are test_gemm.c's.) PARLM_GEMM is
 * read once per process, so the backend test re-runs this program as a child
 * (argv[1] == "--backend-child") with the variable set. */
#include "config.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/core/gemm.h"
#include "harness.h"

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
    ck_assert_int_le(b.kc * b.nc * 4, (36 << 20) / 2 / 2); /* B block: half an L3 share */
    ck_assert_int_gt(b.kc * (b.nc + 48) * 4, (36 << 20) / 2 / 2); /* and no tile less */
    /* a 2 MiB L2 doubles KC; a small one clamps it at 256 and keeps the A block in L2 */
    parlm_gemm_blocking z = parlm_gemm_blocking_for(49152, 2 << 20, 32 << 20, 8, 8, 48);
    ck_assert_int_eq(z.kc, 1536);
    ck_assert_int_eq(z.mc, 680);
    parlm_gemm_blocking s = parlm_gemm_blocking_for(16384, 256 << 10, 4 << 20, 4, 6, 16);
    ck_assert_int_eq(s.kc, 256);
    ck_assert_int_le(s.mc * s.kc * 4, (256 << 10) * 2);
    ck_assert_int_le(s.kc * s.nc * 4, (4 << 20) / 4 / 2);
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
    /* 256^3 in 8 x 48 tiles: rows split 128 | 128, columns only 144 | 112 (5 1/3 tiles) */
    parlm_gemm_grid(256, 256, 8, 48, 2, &tm, &tn);
    ck_assert_int_eq(tm, 2);
    parlm_gemm_grid(256, 288, 8, 48, 2, &tm, &tn); /* 6 whole tiles split evenly: N */
    ck_assert_int_eq(tn, 2);
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

/* ---- the optional OpenBLAS backend ---------------------------------------------------- */

/* Child (no Check here): one NT and one TN sgemm against the double reference; prints
 * the backend in use. Exit 0 if both are right. */
static int backend_child(void)
{
    const char *env = getenv("PARLM_GEMM"); /* as programs set it (apps/cli.c) */
    parlm_gemm_set_backend(env && !strcmp(env, "openblas") ? PARLM_GEMM_OPENBLAS : PARLM_GEMM_NATIVE);
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

static int run_backend_child(const char *value, char *out, size_t n)
{
    return run_child("--backend-child", "PARLM_GEMM", value, out, n);
}

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

/* ---- bad input ---------------------------------------------------------------------------- */

START_TEST(bad_input_is_an_error_with_message)
{
    float *A = tu_alloc_nan(64 * 64), *B = tu_alloc_nan(64 * 64), *C = tu_alloc_nan(64 * 64);
    uint16_t *H = parlm_alloc(64 * 64, 2);
    const parlm_trans N = PARLM_NO_TRANS, T = PARLM_TRANS;
    expect_einval_msg(parlm_sgemm(N, N, 4, 4, 4, 1, NULL, 4, B, 4, 0, C, 4), "A is NULL");
    expect_einval_msg(parlm_sgemm(N, N, 4, 4, 4, 1, A, 4, NULL, 4, 0, C, 4), "B is NULL");
    expect_einval_msg(parlm_sgemm(N, N, 4, 4, 4, 1, A, 4, B, 4, 0, NULL, 4), "C is NULL");
    expect_einval_msg(parlm_sgemm(N, N, 0, 4, 4, 1, A, 4, B, 4, 0, C, 4), "M must be >= 1, got 0");
    expect_einval_msg(parlm_sgemm(N, N, 4, -3, 4, 1, A, 4, B, 4, 0, C, 4), "N must be >= 1, got -3");
    expect_einval_msg(parlm_sgemm(N, N, 4, 4, 0, 1, A, 4, B, 4, 0, C, 4), "K must be >= 1, got 0");
    expect_einval_msg(parlm_sgemm(N, N, 4, 5, 6, 1, A, 5, B, 5, 0, C, 5), "lda = 5");
    expect_einval_msg(parlm_sgemm(T, N, 4, 5, 6, 1, A, 3, B, 5, 0, C, 5), "lda = 3");
    expect_einval_msg(parlm_sgemm(N, N, 4, 5, 6, 1, A, 6, B, 4, 0, C, 5), "ldb = 4");
    expect_einval_msg(parlm_sgemm(N, T, 4, 5, 6, 1, A, 6, B, 5, 0, C, 5), "ldb = 5");
    expect_einval_msg(parlm_sgemm(N, N, 4, 5, 6, 1, A, 6, B, 5, 0, C, 4), "ldc = 4");
    expect_einval_msg(parlm_sgemm(T, T, 4, 4, 4, 1, A, 4, B, 4, 0, C, 4), "TT");
    expect_einval_msg(parlm_sgemm((parlm_trans)2, N, 4, 4, 4, 1, A, 4, B, 4, 0, C, 4), "ta = 2");
    expect_einval_msg(parlm_sgemm(N, (parlm_trans)-1, 4, 4, 4, 1, A, 4, B, 4, 0, C, 4), "tb = -1");
    expect_einval_msg(parlm_sgemm(N, N, 4, 4, 4, 1, A, 4, B, 4, 0, A + 15, 4), "C");
    expect_einval_msg(parlm_sgemm(N, N, 4, 4, 4, 1, A, 4, B, 4, 0, A + 12, 4), "overlaps A");
    expect_einval_msg(parlm_sgemm(N, T, 4, 4, 4, 1, A, 4, B, 4, 0, B, 4), "overlaps B");
    expect_einval_msg(parlm_sgemm(N, N, 1, 4, 4, 1, A, 4, B, 4, 0, B + 8, 4), "overlaps B");
    expect_einval_msg(parlm_sgemm(N, N, 4, 4, INT64_MAX / 2, 1, A, INT64_MAX / 2, B, 4, 0, C, 4),
                  "too large");
    /* interleaved column views of one buffer do not overlap and are accepted */
    ck_assert_int_eq(parlm_sgemm(N, N, 8, 4, 4, 1, A, 16, B, 4, 0, A + 8, 16), PARLM_OK);
    expect_einval_msg(parlm_sgemm(N, N, 8, 4, 4, 1, A, 16, B, 4, 0, A + 2, 16), "overlaps A");

    expect_einval_msg(parlm_gemm_bf16(N, N, 4, 4, 4, 1, NULL, 4, H, 4, 0, C, 4), "A is NULL");
    expect_einval_msg(parlm_gemm_bf16(T, T, 4, 4, 4, 1, H, 4, H, 4, 0, C, 4), "TT");
    expect_einval_msg(parlm_gemm_bf16(N, N, 4, 4, 4, 1, H, 3, H, 4, 0, C, 4), "lda = 3");
    expect_einval_msg(parlm_gemm_bf16(N, N, 4, 4, 4, 1, H, 4, H, 4, 0, (float *)H, 4),
                  "overlaps A");

    expect_einval_msg(parlm_sgemv(N, 4, 4, 1, NULL, 4, B, 0, C), "A is NULL");
    expect_einval_msg(parlm_sgemv(N, 4, 4, 1, A, 4, NULL, 0, C), "x is NULL");
    expect_einval_msg(parlm_sgemv(N, 4, 4, 1, A, 4, B, 0, NULL), "y is NULL");
    expect_einval_msg(parlm_sgemv(N, 0, 4, 1, A, 4, B, 0, C), "rows must be >= 1");
    expect_einval_msg(parlm_sgemv(N, 4, 4, 1, A, 3, B, 0, C), "lda = 3");
    expect_einval_msg(parlm_sgemv((parlm_trans)5, 4, 4, 1, A, 4, B, 0, C), "ta = 5");
    expect_einval_msg(parlm_sgemv(N, 4, 4, 1, A, 4, B, 0, A + 2), "y");
    expect_einval_msg(parlm_sgemv(N, 4, 4, 1, A, 4, B, 0, B + 1), "overlaps x");
    expect_einval_msg(parlm_gemv_bf16(4, 0, 1, H, 4, B, 0, C), "cols must be >= 1");
    expect_einval_msg(parlm_gemv_bf16(4, 4, 1, H, 4, B, 0, (float *)H), "overlaps A");

    expect_einval_msg(parlm_f32_to_bf16(NULL, H, 4), "x is NULL");
    expect_einval_msg(parlm_f32_to_bf16(A, NULL, 4), "y is NULL");
    expect_einval_msg(parlm_f32_to_bf16(A, H, -1), "n must be >= 0");
    expect_einval_msg(parlm_f32_to_bf16(A, (uint16_t *)A + 2, 8), "overlaps");
    expect_einval_msg(parlm_bf16_to_f32(H, NULL, 4), "y is NULL");
    expect_einval_msg(parlm_bf16_to_f32(H, (float *)H, 4), "overlaps");
    parlm_free(A);
    parlm_free(B);
    parlm_free(C);
    parlm_free(H);
}
END_TEST

static Suite *gemm_setup_suite(void)
{
    Suite *s = suite_create("gemm setup");
    TCase *tc = tcase_create("blocking");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, blocking_rule_fits_the_caches);
    tcase_add_test(tc, thread_grid_gives_every_thread_work);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, bad_input_is_an_error_with_message);
    suite_add_tcase(s, tc);
    tc = tcase_create("backend");
    tcase_add_test(tc, openblas_backend_by_environment);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--backend-child") == 0)
        return backend_child();
    if (find_self("test_gemm_setup") != 0)
        return EXIT_FAILURE;
    return run_suite(gemm_setup_suite());
}
