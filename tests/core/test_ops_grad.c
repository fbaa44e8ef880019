/* tests/core/test_ops_grad.c — the backward ops of lib/core/ops.c against central finite
 * differences, on every kernel set: of the loss through the public float forward, and of
 * a naive double forward written here (independent of the library). Each backward starts
 * from random gradients, so it must accumulate. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* The checked ops, each as "forward into out (L = sum out * r) / backward with dout = r". */
enum op { OP_ADD, OP_BIAS, OP_GELU, OP_LAYERNORM, OP_SOFTMAX, OP_COUNT };
static const char *const op_names[OP_COUNT] = {"add", "bias", "gelu", "layernorm", "softmax"};

/* Problem instance: inputs p0 (x or a), p1 (b / bias / w), p2 (layernorm b). */
typedef struct problem {
    enum op op;
    int64_t rows, c, n;           /* out has n = rows * c elements */
    float *p[3];                  /* inputs */
    int64_t np[3];                /* their lengths (0: absent) */
    float *r;                     /* the loss weights (n) */
} problem;

static problem problem_new(enum op op, uint64_t seed)
{
    problem P = {op, 3, 7, 21, {NULL, NULL, NULL}, {0, 0, 0}, NULL};
    if (op == OP_ADD || op == OP_GELU)
        P.rows = 1, P.c = 23, P.n = 23;
    P.np[0] = P.n;
    if (op == OP_ADD)
        P.np[1] = P.n;
    if (op == OP_BIAS || op == OP_LAYERNORM)
        P.np[1] = P.c;
    if (op == OP_LAYERNORM)
        P.np[2] = P.c;
    for (int k = 0; k < 3; k++)
        if (P.np[k]) {
            P.p[k] = tu_alloc_nan(P.np[k]);
            tu_fill(P.p[k], P.np[k], seed + (uint64_t)k);
        }
    if (op == OP_GELU)
        for (int64_t i = 0; i < P.n; i++)
            P.p[0][i] *= 4.0f;
    if (op == OP_SOFTMAX)
        for (int64_t i = 0; i < P.n; i++)
            P.p[0][i] *= 3.0f;
    if (op == OP_LAYERNORM)
        for (int64_t j = 0; j < P.c; j++)
            P.p[1][j] += 1.5f;
    P.r = tu_alloc_nan(P.n);
    tu_fill(P.r, P.n, seed + 99);
    return P;
}

static void problem_free(problem *P)
{
    for (int k = 0; k < 3; k++)
        parlm_free(P->p[k]);
    parlm_free(P->r);
}

/* Public float forward; returns L = sum out * r in double and fills out. */
static double loss_float(void *ctx, float *out)
{
    const problem *P = ctx;
    float mean[8], rstd[8];
    switch (P->op) {
    case OP_ADD: ck_assert_int_eq(parlm_add(out, P->p[0], P->p[1], P->n), PARLM_OK); break;
    case OP_BIAS:
        memcpy(out, P->p[0], (size_t)P->n * 4);
        ck_assert_int_eq(parlm_bias_forward(out, P->p[1], P->rows, P->c), PARLM_OK);
        break;
    case OP_GELU: ck_assert_int_eq(parlm_gelu_forward(out, P->p[0], P->n), PARLM_OK); break;
    case OP_LAYERNORM:
        ck_assert_int_eq(parlm_layernorm_forward(out, mean, rstd, P->p[0], P->p[1], P->p[2],
                                                 P->rows, P->c), PARLM_OK);
        break;
    case OP_SOFTMAX:
        ck_assert_int_eq(parlm_softmax_forward(out, P->p[0], P->rows, P->c), PARLM_OK);
        break;
    default: break;
    }
    double L = 0;
    for (int64_t i = 0; i < P->n; i++)
        L += (double)out[i] * P->r[i];
    return L;
}

/* Naive double forward (independent of the library); L = sum out * r. */
static double loss_double(void *ctx, double *const *q)
{
    const problem *P = ctx;
    double L = 0;
    for (int64_t i = 0; i < P->rows; i++) {
        const double *x = q[0] + i * P->c;
        double mx = -INFINITY, mu = 0, var = 0, sum = 0;
        for (int64_t j = 0; j < P->c; j++) {
            mx = fmax(mx, x[j]);
            mu += x[j];
        }
        mu /= (double)P->c;
        for (int64_t j = 0; j < P->c; j++) {
            var += (x[j] - mu) * (x[j] - mu);
            sum += exp(x[j] - mx);
        }
        var /= (double)P->c;
        for (int64_t j = 0; j < P->c; j++) {
            double o = 0;
            switch (P->op) {
            case OP_ADD: o = x[j] + q[1][i * P->c + j]; break;
            case OP_BIAS: o = x[j] + q[1][j]; break;
            case OP_GELU: o = gelu_d(x[j]); break;
            case OP_LAYERNORM: o = (x[j] - mu) / sqrt(var + 1e-5) * q[1][j] + q[2][j]; break;
            case OP_SOFTMAX: o = exp(x[j] - mx) / sum; break;
            default: break;
            }
            L += o * P->r[i * P->c + j];
        }
    }
    return L;
}

/* Public backward with dout = r into gradients that start at g0 (random, to check that
 * backward accumulates); grad[k] = (after - g0) in double. */
static void grads_public(void *ctx, double **grad)
{
    const problem *P = ctx;
    float *g[3] = {NULL, NULL, NULL}, *g0[3] = {NULL, NULL, NULL};
    float *out = tu_alloc_nan(P->n), mean[8], rstd[8];
    for (int k = 0; k < 3; k++)
        if (P->np[k]) {
            g[k] = tu_alloc_nan(P->np[k]);
            g0[k] = tu_alloc_nan(P->np[k]);
            tu_fill(g0[k], P->np[k], 500 + (uint64_t)k);
            memcpy(g[k], g0[k], (size_t)P->np[k] * 4);
        }
    switch (P->op) {
    case OP_ADD: ck_assert_int_eq(parlm_add_backward(g[0], g[1], P->r, P->n), PARLM_OK); break;
    case OP_BIAS:
        ck_assert_int_eq(parlm_accumulate(g[0], P->r, P->n), PARLM_OK); /* out = x + bias */
        ck_assert_int_eq(parlm_bias_backward(g[1], P->r, P->rows, P->c), PARLM_OK);
        break;
    case OP_GELU: ck_assert_int_eq(parlm_gelu_backward(g[0], P->p[0], P->r, P->n), PARLM_OK); break;
    case OP_LAYERNORM:
        ck_assert_int_eq(parlm_layernorm_forward(out, mean, rstd, P->p[0], P->p[1], P->p[2],
                                                 P->rows, P->c), PARLM_OK);
        ck_assert_int_eq(parlm_layernorm_backward(g[0], g[1], g[2], P->r, P->p[0], P->p[1], mean,
                                                  rstd, P->rows, P->c), PARLM_OK);
        break;
    case OP_SOFTMAX:
        ck_assert_int_eq(parlm_softmax_forward(out, P->p[0], P->rows, P->c), PARLM_OK);
        ck_assert_int_eq(parlm_softmax_backward(g[0], out, P->r, P->rows, P->c), PARLM_OK);
        break;
    default: break;
    }
    for (int k = 0; k < 3; k++) {
        for (int64_t i = 0; i < P->np[k]; i++)
            grad[k][i] = (double)g[k][i] - (double)g0[k][i];
        parlm_free(g[k]), parlm_free(g0[k]);
    }
    parlm_free(out);
}

/* Sum of |out * r| over the outputs that input k, element i feeds: the scale of the
 * rounding noise in L when that input moves. */
static double dependent_scale(void *ctx, const float *out, int k, int64_t i)
{
    const problem *P = ctx;
    double s = 0;
    int rowwise = P->op == OP_LAYERNORM || P->op == OP_SOFTMAX;
    if (P->op == OP_GELU) /* the reference's gelu error is absolute, ~u |x| (see above) */
        return fabs(P->p[0][i] * P->r[i]);
    if (k == 0 && !rowwise)
        return fabs(out[i] * P->r[i]);
    if (k == 0) {
        int64_t r0 = i / P->c;
        for (int64_t j = 0; j < P->c; j++)
            s += fabs(out[r0 * P->c + j] * P->r[r0 * P->c + j]);
        return s;
    }
    if (P->op == OP_ADD)
        return fabs(out[i] * P->r[i]);
    for (int64_t r = 0; r < P->rows; r++) /* a per-column parameter feeds its column */
        s += fabs(out[r * P->c + i] * P->r[r * P->c + i]);
    return s;
}

/* Central differences (h = 1e-3) of L through the public float API, and of the naive
 * double forward, against the public backward; for every op and every kernel set
 * (tolerances: fd_expect in harness.h). */
START_TEST(backward_matches_finite_differences)
{
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    for (int ii = 0; ii < ni; ii++) {
        ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
        for (int op = 0; op < OP_COUNT; op++) {
            problem P = problem_new((enum op)op, 40 + (uint64_t)op);
            /* output rounding, relative: elementwise ops a few roundings plus the 3.2 ulp
             * of sigma (K = 16); row ops k_rows(C). */
            double K = (op == OP_LAYERNORM || op == OP_SOFTMAX) ? k_rows(P.c) : 16.0;
            const fd_op F = {parlm_isa_name(isas[ii]), op_names[op], &P, 3,
                             {P.p[0], P.p[1], P.p[2]}, {P.np[0], P.np[1], P.np[2]}, P.n, K,
                             grads_public, loss_float, loss_double, dependent_scale};
            fd_expect(&F);
            problem_free(&P);
        }
    }
    parlm_isa_select(saved);
}
END_TEST

static Suite *ops_grad_suite(void)
{
    Suite *s = suite_create("ops gradients");
    TCase *tc = tcase_create("gradients");
    tcase_add_test(tc, backward_matches_finite_differences);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return run_suite(ops_grad_suite()); }
