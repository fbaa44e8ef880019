/* tests/core/test_ops.c — lib/core/ops.c, the public elementwise and row ops (add, bias,
 * GELU, layernorm, softmax) on every kernel set: special values, 2 threads against 1, in
 * place against out of place, bad arguments refused with a message, and the tensor
 * forms. The kernels themselves: test_kernels_eltwise.c; the backward ops against finite
 * differences: test_ops_grad.c. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* ---- special values, through the public API on every set ----------------------------------- */

START_TEST(softmax_special_values)
{
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    enum { R = 7, C = 19 }; /* 19: a tail for both vector widths */
    float x[R * C], out[R * C], ref[R * C];
    const float ninf = -INFINITY;
    uint64_t seed = 5;
    for (int i = 0; i < R * C; i++)
        x[i] = 50.0f * tu_uniform(&seed);
    for (int j = 0; j < C; j++) {
        x[0 * C + j] = ninf;                         /* fully masked */
        x[1 * C + j] = j == 4 ? 3.0f : ninf;         /* one survivor */
        x[2 * C + j] = j == 0 ? 1e30f : j == 1 ? -1e30f : 0.0f;
        x[3 * C + j] = j == 5 ? FLT_MAX : j == 6 ? -FLT_MAX : 1.0f;
        if (j % 3 == 0)
            x[4 * C + j] = ninf;                     /* scattered masks, values in +-50 */
        x[5 * C + j] = 1e30f;                        /* all equal and huge */
        x[6 * C + j] = -200.0f - (float)j;           /* all far below zero */
    }
    for (int ii = 0; ii < ni; ii++) {
        ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
        const char *nm = parlm_isa_name(isas[ii]);
        ck_assert_int_eq(parlm_softmax_forward(out, x, R, C), PARLM_OK);
        for (int i = 0; i < R * C; i++)
            ck_assert_msg(!isnan(out[i]) && out[i] >= 0.0f && out[i] <= 1.0f,
                          "%s: softmax out[%d] = %g", nm, i, out[i]);
        for (int j = 0; j < C; j++) {
            ck_assert_msg(out[j] == 0.0f, "%s: fully masked row gives %g", nm, out[j]);
            ck_assert(out[1 * C + j] == (j == 4 ? 1.0f : 0.0f));
            ck_assert(out[2 * C + j] == (j == 0 ? 1.0f : 0.0f));
            ck_assert(out[3 * C + j] == (j == 5 ? 1.0f : 0.0f));
            if (j % 3 == 0)
                ck_assert_msg(out[4 * C + j] == 0.0f, "%s: -inf entry gives %g", nm, out[4 * C + j]);
            /* 1 / 19 to the roundings of the sum (19 u) and the reciprocal */
            ck_assert(fabs(out[5 * C + j] - 1.0 / C) <= 20 * U_RND / C);
        }
        for (int i = 1; i < R; i++) {
            double s = 0;
            for (int j = 0; j < C; j++)
                s += out[i * C + j];
            /* each row sums to 1 within the roundings of its sum and scaling (2 C u) */
            ck_assert_msg(fabs(s - 1.0) <= 2 * C * U_RND, "%s: row %d sums to %.9g", nm, i, s);
        }
        /* and the rows agree with the double-precision softmax */
        for (int i = 1; i < R; i++) {
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < C; j++)
                mx = fmax(mx, x[i * C + j]);
            for (int j = 0; j < C; j++)
                sum += exp((double)x[i * C + j] - mx);
            for (int j = 0; j < C; j++) {
                ref[i * C + j] = (float)(exp((double)x[i * C + j] - mx) / sum);
                ck_assert_msg(fabs(out[i * C + j] - ref[i * C + j]) <=
                                  k_rows(C) * U_RND * ref[i * C + j] + FLT_MIN,
                              "%s: softmax row %d col %d: %g vs %g", nm, i, j, out[i * C + j],
                              ref[i * C + j]);
            }
        }
    }
    parlm_isa_select(saved);
}
END_TEST

START_TEST(gelu_special_values)
{
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    enum { N = 19 };
    const float x[N] = {10, -10, INFINITY, -INFINITY, 30, -30, 1e20f, -1e20f, FLT_MAX,
                        -FLT_MAX, 0.0f, -0.0f, 50, -50, 5, -5, 9.5f, -9.5f, NAN};
    float out[N], dx[N], one[N];
    for (int i = 0; i < N; i++)
        one[i] = 1.0f;
    for (int ii = 0; ii < ni; ii++) {
        ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
        const char *nm = parlm_isa_name(isas[ii]);
        ck_assert_int_eq(parlm_gelu_forward(out, x, N), PARLM_OK);
        memset(dx, 0, sizeof dx);
        ck_assert_int_eq(parlm_gelu_backward(dx, x, one, N), PARLM_OK);
        for (int i = 0; i < N - 1; i++) {
            double xv = x[i];
            ck_assert_msg(!isnan(out[i]) && !isnan(dx[i]), "%s: gelu(%g) = %g, gelu' = %g", nm,
                          xv, out[i], dx[i]);
            if (xv > 0) { /* gelu(x) = x and gelu'(x) = 1 to float precision for x >= 9.5 */
                double want = fabs(xv) < 9 ? gelu_d(xv) : xv;
                ck_assert_msg(out[i] == want || fabs(out[i] - want) <= 1e-6 * fabs(want),
                              "%s: gelu(%g) = %.9g, want %.9g", nm, xv, out[i], want);
                double wantd = fabs(xv) < 9 ? gelu_grad_d(xv) : 1.0;
                ck_assert_msg(fabs(dx[i] - wantd) <= 1e-6, "%s: gelu'(%g) = %.9g", nm, xv, dx[i]);
            } else if (xv < 0) { /* x Phi(x): below 1e-30 in magnitude from -9.5 on */
                double want = xv > -9 ? gelu_d(xv) : 0.0, tol = xv > -9 ? 1e-6 : 1e-30;
                ck_assert_msg(fabs(out[i] - want) <= tol, "%s: gelu(%g) = %.9g", nm, xv, out[i]);
                double wantd = xv > -9 ? gelu_grad_d(xv) : 0.0;
                ck_assert_msg(fabs(dx[i] - wantd) <= tol, "%s: gelu'(%g) = %.9g", nm, xv, dx[i]);
            } else {
                ck_assert(out[i] == 0.0f);
                ck_assert(dx[i] == 0.5f);
            }
        }
        ck_assert_msg(isnan(out[N - 1]) && isnan(dx[N - 1]), "%s: NaN must propagate", nm);
    }
    parlm_isa_select(saved);
}
END_TEST

/* ---- threads ------------------------------------------------------------------------------------ */

/* Runs every public op on shapes far above the single-thread grains (at most 65536
 * elements per thread, lib/core/ops.c), writing all outputs into res (one slot per output). */
enum { TR = 1000, TC = 768, TN = TR * TC, NOUT = 13 };

static void run_all_ops(float *const res[NOUT], const float *x, const float *y, const float *w,
                        const float *b)
{
    int i = 0;
    ck_assert_int_eq(parlm_add(res[i++], x, y, TN), PARLM_OK);
    memcpy(res[i], x, (size_t)TN * 4);
    ck_assert_int_eq(parlm_bias_forward(res[i++], w, TR, TC), PARLM_OK);
    memset(res[i], 0, (size_t)TC * 4);
    ck_assert_int_eq(parlm_bias_backward(res[i++], y, TR, TC), PARLM_OK);
    ck_assert_int_eq(parlm_gelu_forward(res[i++], x, TN), PARLM_OK);
    memset(res[i], 0, (size_t)TN * 4);
    ck_assert_int_eq(parlm_gelu_backward(res[i++], x, y, TN), PARLM_OK);
    ck_assert_int_eq(parlm_layernorm_forward(res[i], res[i + 1], res[i + 2], x, w, b, TR, TC),
                     PARLM_OK);
    i += 3;
    memset(res[i], 0, (size_t)TN * 4);
    memset(res[i + 1], 0, (size_t)TC * 4);
    memset(res[i + 2], 0, (size_t)TC * 4);
    ck_assert_int_eq(parlm_layernorm_backward(res[i], res[i + 1], res[i + 2], y, x, w, res[6],
                                              res[7], TR, TC), PARLM_OK);
    i += 3;
    ck_assert_int_eq(parlm_softmax_forward(res[i], x, TR, TC), PARLM_OK);
    memset(res[i + 1], 0, (size_t)TN * 4);
    ck_assert_int_eq(parlm_softmax_backward(res[i + 1], res[i], y, TR, TC), PARLM_OK);
    i += 2;
    ck_assert_int_eq(i, NOUT);
}

START_TEST(threads_two_equal_one_and_repeat_bitwise)
{
    static const char *const names[NOUT] = {"add", "bias_fwd", "bias_bwd", "gelu_fwd", "gelu_bwd",
                                            "ln out", "ln mean", "ln rstd", "ln dx", "ln dw",
                                            "ln db", "softmax_fwd", "softmax_bwd"};
    static const int64_t lens[NOUT] = {TN, TN, TC, TN, TN, TN, TR, TR, TN, TC, TC, TN, TN};
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    float *x = tu_alloc_nan(TN), *y = tu_alloc_nan(TN), *w = tu_alloc_nan(TC), *b = tu_alloc_nan(TC);
    tu_fill(x, TN, 61), tu_fill(y, TN, 62), tu_fill(w, TC, 63), tu_fill(b, TC, 64);
    float *res[3][NOUT];
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < NOUT; i++)
            res[t][i] = tu_alloc_nan(lens[i]);
    for (int ii = 0; ii < ni; ii++) {
        ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
        const char *nm = parlm_isa_name(isas[ii]);
        const int threads[3] = {1, 2, 2};
        for (int t = 0; t < 3; t++) {
            omp_set_num_threads(threads[t]);
            run_all_ops(res[t], x, y, w, b);
        }
        omp_set_num_threads(2);
        for (int i = 0; i < NOUT; i++) {
            /* same thread count, same static split: bitwise */
            ck_assert_msg(memcmp(res[1][i], res[2][i], (size_t)lens[i] * 4) == 0,
                          "%s %s: two 2-thread runs differ", nm, names[i]);
            if (i == 2 || i == 9 || i == 10) {
                /* reductions over rows: 1 thread sums TR rows in order, 2 threads add two
                 * partial sums; both within TR u sum|terms| (recursive summation bound). */
                const float *dout = y;
                double worst = 0;
                for (int64_t j = 0; j < TC; j++) {
                    double m = 0;
                    for (int64_t r = 0; r < TR; r++) {
                        double t_ = dout[r * TC + j];
                        if (i == 9)
                            t_ *= (x[r * TC + j] - res[1][6][r]) * res[1][7][r];
                        m += fabs(t_);
                    }
                    double tol = 2.0 * TR * U_RND * m;
                    worst = fmax(worst, fabs((double)res[0][i][j] - res[1][i][j]) / tol);
                }
                ck_assert_msg(worst <= 1.0, "%s %s: 1 vs 2 threads %.3f x tol", nm, names[i],
                              worst);
                /* the split really happened: a different summation order changes bits */
                ck_assert_msg(memcmp(res[0][i], res[1][i], (size_t)lens[i] * 4) != 0,
                              "%s %s: 2 threads gave the 1-thread sums bit for bit; did the "
                              "op run on one thread?", nm, names[i]);
            } else {
                /* each element or row is computed by the same code whatever the split */
                ck_assert_msg(memcmp(res[0][i], res[1][i], (size_t)lens[i] * 4) == 0,
                              "%s %s: 1 and 2 threads differ", nm, names[i]);
            }
        }
    }
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < NOUT; i++)
            parlm_free(res[t][i]);
    parlm_free(x), parlm_free(y), parlm_free(w), parlm_free(b);
    parlm_isa_select(saved);
}
END_TEST

/* ---- in place ------------------------------------------------------------------------------------ */

START_TEST(in_place_equals_out_of_place)
{
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    const int64_t rows = 5, c = 37, n = rows * c;
    float *a = tu_alloc_nan(n), *b = tu_alloc_nan(n), *o = tu_alloc_nan(n), *io = tu_alloc_nan(n);
    float *w = tu_alloc_nan(c), *bb = tu_alloc_nan(c), *m = tu_alloc_nan(rows),
          *s = tu_alloc_nan(rows);
    tu_fill(a, n, 81), tu_fill(b, n, 82), tu_fill(w, c, 83), tu_fill(bb, c, 84);
    for (int ii = 0; ii < ni; ii++) {
        ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
        const char *nm = parlm_isa_name(isas[ii]);
        ck_assert_int_eq(parlm_add(o, a, b, n), PARLM_OK);
        memcpy(io, a, (size_t)n * 4);
        ck_assert_int_eq(parlm_add(io, io, b, n), PARLM_OK);
        ck_assert_msg(memcmp(o, io, (size_t)n * 4) == 0, "%s: add out == a", nm);
        memcpy(io, b, (size_t)n * 4);
        ck_assert_int_eq(parlm_add(io, a, io, n), PARLM_OK);
        ck_assert_msg(memcmp(o, io, (size_t)n * 4) == 0, "%s: add out == b", nm);
        memcpy(io, a, (size_t)n * 4);
        ck_assert_int_eq(parlm_add(io, io, io, n), PARLM_OK);
        for (int64_t i = 0; i < n; i++)
            ck_assert(io[i] == 2 * a[i]);

        ck_assert_int_eq(parlm_gelu_forward(o, a, n), PARLM_OK);
        memcpy(io, a, (size_t)n * 4);
        ck_assert_int_eq(parlm_gelu_forward(io, io, n), PARLM_OK);
        ck_assert_msg(memcmp(o, io, (size_t)n * 4) == 0, "%s: gelu in place", nm);

        ck_assert_int_eq(parlm_softmax_forward(o, a, rows, c), PARLM_OK);
        memcpy(io, a, (size_t)n * 4);
        ck_assert_int_eq(parlm_softmax_forward(io, io, rows, c), PARLM_OK);
        ck_assert_msg(memcmp(o, io, (size_t)n * 4) == 0, "%s: softmax in place", nm);

        ck_assert_int_eq(parlm_layernorm_forward(o, m, s, a, w, bb, rows, c), PARLM_OK);
        memcpy(io, a, (size_t)n * 4);
        ck_assert_int_eq(parlm_layernorm_forward(io, m, s, io, w, bb, rows, c), PARLM_OK);
        ck_assert_msg(memcmp(o, io, (size_t)n * 4) == 0, "%s: layernorm in place", nm);

        /* add_backward with da == db (out = x + x) receives dout twice */
        memset(io, 0, (size_t)n * 4);
        ck_assert_int_eq(parlm_add_backward(io, io, b, n), PARLM_OK);
        for (int64_t i = 0; i < n; i++)
            ck_assert(io[i] == 2 * b[i]);
    }
    parlm_free(a), parlm_free(b), parlm_free(o), parlm_free(io);
    parlm_free(w), parlm_free(bb), parlm_free(m), parlm_free(s);
    parlm_isa_select(saved);
}
END_TEST

/* ---- bad input ------------------------------------------------------------------------------------ */

START_TEST(bad_input_is_an_error_with_message)
{
    enum { N = 64 };
    float a[N], b[N], o[N], w[8], m[8], s[8], big[4 * N];
    for (int i = 0; i < N; i++)
        a[i] = b[i] = 1.0f, o[i] = SENTINEL;
    for (int i = 0; i < 8; i++)
        w[i] = m[i] = s[i] = 1.0f;
    for (int i = 0; i < 4 * N; i++)
        big[i] = 0.5f;
    const int64_t huge = INT64_MAX / 2;
    parlm_clear_error();

    expect_einval(parlm_add(NULL, a, b, N), "add out NULL");
    expect_einval(parlm_add(o, NULL, b, N), "add a NULL");
    expect_einval(parlm_add(o, a, b, 0), "add n 0");
    expect_einval(parlm_add(o, a, b, -3), "add n < 0");
    expect_einval(parlm_add(o, a, b, INT64_MAX), "add n overflows");
    expect_einval(parlm_add(big + 1, big, b, N), "add out partially overlaps a");
    expect_einval(parlm_accumulate(big, big + 8, N), "accumulate partial overlap");
    expect_einval(parlm_accumulate(o, NULL, N), "accumulate src NULL");
    expect_einval(parlm_add_backward(big, big + 2 * N, big, N), "add_backward dout == da");
    expect_einval(parlm_add_backward(big, big + 4, a, N), "add_backward da, db overlap");

    expect_einval(parlm_bias_forward(o, w, 0, 8), "bias rows 0");
    expect_einval(parlm_bias_forward(o, w, 8, 0), "bias C 0");
    expect_einval(parlm_bias_forward(o, w, huge, 3), "bias rows * C overflows");
    expect_einval(parlm_bias_forward(big, big + 8, 8, 8), "bias inside out");
    expect_einval(parlm_bias_backward(w, NULL, 8, 8), "bias_backward dout NULL");
    expect_einval(parlm_bias_backward(big + 8, big, 8, 8), "dbias inside dout");

    expect_einval(parlm_gelu_forward(o, NULL, N), "gelu x NULL");
    expect_einval(parlm_gelu_forward(big + 3, big, N), "gelu partial overlap");
    expect_einval(parlm_gelu_backward(o, a, o, N), "gelu_backward dx == dout");
    expect_einval(parlm_gelu_backward(o, o, b, N), "gelu_backward dx == x");

    expect_einval(parlm_layernorm_forward(o, NULL, s, a, w, w, 8, 8), "layernorm mean NULL");
    expect_einval(parlm_layernorm_forward(o, m, m, a, w, w, 8, 8), "layernorm mean == rstd");
    expect_einval(parlm_layernorm_forward(o, a, s, a, w, w, 8, 8), "layernorm mean inside x");
    expect_einval(parlm_layernorm_forward(big, m, s, big + 4, w, w, 8, 8), "ln out overlaps x");
    expect_einval(parlm_layernorm_forward(o, m, s, a, o, w, 8, 8), "layernorm w inside out");
    expect_einval(parlm_layernorm_forward(o, m, s, a, w, w, 8, -5), "layernorm C < 0");
    expect_einval(parlm_layernorm_backward(o, w, w, b, a, w, m, s, 8, 8), "ln dw == db");
    expect_einval(parlm_layernorm_backward(o, w, m, o, a, w, m, s, 1, 8), "ln dx == dout");
    expect_einval(parlm_layernorm_backward(o, w, s, b, a, a, m, NULL, 8, 8), "ln rstd NULL");

    expect_einval(parlm_softmax_forward(o, a, 8, 0), "softmax C 0");
    expect_einval(parlm_softmax_forward(big + 1, big, 8, 8), "softmax partial overlap");
    expect_einval(parlm_softmax_backward(o, a, o, 8, 8), "softmax_backward dx == dy");
    expect_einval(parlm_softmax_backward(o, o, b, 8, 8), "softmax_backward dx == y");

    /* nothing was written by the failing calls */
    for (int i = 0; i < N; i++)
        ck_assert(o[i] == SENTINEL);
    for (int i = 0; i < 4 * N; i++)
        ck_assert(big[i] == 0.5f);
    ck_assert_str_eq(parlm_last_error(), "");
}
END_TEST

/* ---- tensor forms ------------------------------------------------------------------------------------ */

START_TEST(tensor_forms_match_raw_and_check_shapes)
{
    parlm_tensor x, out, mean, rstd, w, b, bad;
    int64_t sh[3] = {2, 3, 16};
    ck_assert_int_eq(parlm_tensor_alloc(&x, PARLM_F32, 3, sh), PARLM_OK);
    ck_assert_int_eq(parlm_tensor_alloc(&out, PARLM_F32, 3, sh), PARLM_OK);
    ck_assert_int_eq(parlm_tensor_alloc(&mean, PARLM_F32, 2, sh), PARLM_OK);
    ck_assert_int_eq(parlm_tensor_alloc(&rstd, PARLM_F32, 2, sh), PARLM_OK);
    ck_assert_int_eq(parlm_tensor_alloc(&w, PARLM_F32, 1, sh + 2), PARLM_OK);
    ck_assert_int_eq(parlm_tensor_alloc(&b, PARLM_F32, 1, sh + 2), PARLM_OK);
    tu_fill(x.data, 96, 91), tu_fill(w.data, 16, 92), tu_fill(b.data, 16, 93);
    float ref[96], rm[6], rs[6];

    ck_assert_int_eq(parlm_tensor_gelu_forward(&out, &x), PARLM_OK);
    ck_assert_int_eq(parlm_gelu_forward(ref, x.data, 96), PARLM_OK);
    ck_assert(memcmp(ref, out.data, sizeof ref) == 0);
    ck_assert_int_eq(parlm_tensor_softmax_forward(&out, &x), PARLM_OK);
    ck_assert_int_eq(parlm_softmax_forward(ref, x.data, 6, 16), PARLM_OK);
    ck_assert(memcmp(ref, out.data, sizeof ref) == 0);
    ck_assert_int_eq(parlm_tensor_layernorm_forward(&out, &mean, &rstd, &x, &w, &b), PARLM_OK);
    ck_assert_int_eq(parlm_layernorm_forward(ref, rm, rs, x.data, w.data, b.data, 6, 16), PARLM_OK);
    ck_assert(memcmp(ref, out.data, sizeof ref) == 0);
    ck_assert(memcmp(rm, mean.data, sizeof rm) == 0 && memcmp(rs, rstd.data, sizeof rs) == 0);

    parlm_clear_error();
    expect_einval(parlm_tensor_gelu_forward(NULL, &x), "tensor gelu out NULL");
    expect_einval(parlm_tensor_softmax_forward(&out, &mean), "tensor softmax shape mismatch");
    ck_assert_int_eq(parlm_tensor_alloc(&bad, PARLM_BF16, 3, sh), PARLM_OK);
    expect_einval(parlm_tensor_gelu_forward(&out, &bad), "tensor gelu bf16");
    parlm_tensor_free(&bad);
    bad = x;
    bad.stride[0] = 100; /* rows 100 floats apart: not contiguous */
    expect_einval(parlm_tensor_softmax_forward(&out, &bad), "tensor softmax strided");
    expect_einval(parlm_tensor_layernorm_forward(&out, &mean, &rstd, &x, &mean, &b),
                  "tensor layernorm w 2-D");
    ck_assert_int_eq(parlm_tensor_alloc(&bad, PARLM_F32, 1, (int64_t[]){15}), PARLM_OK);
    expect_einval(parlm_tensor_layernorm_forward(&out, &mean, &rstd, &x, &w, &bad),
                  "tensor layernorm b of 15");
    expect_einval(parlm_tensor_layernorm_forward(&out, &bad, &rstd, &x, &w, &b),
                  "tensor layernorm mean of 15");
    parlm_tensor_free(&bad);
    parlm_tensor_free(&x), parlm_tensor_free(&out), parlm_tensor_free(&mean);
    parlm_tensor_free(&rstd), parlm_tensor_free(&w), parlm_tensor_free(&b);
}
END_TEST

static Suite *ops_suite(void)
{
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("special_values");
    tcase_add_test(tc, softmax_special_values);
    tcase_add_test(tc, gelu_special_values);
    suite_add_tcase(s, tc);
    tc = tcase_create("threads");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, threads_two_equal_one_and_repeat_bitwise);
    suite_add_tcase(s, tc);
    tc = tcase_create("in_place");
    tcase_add_test(tc, in_place_equals_out_of_place);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, bad_input_is_an_error_with_message);
    tcase_add_test(tc, tensor_forms_match_raw_and_check_shapes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return run_suite(ops_suite()); }
