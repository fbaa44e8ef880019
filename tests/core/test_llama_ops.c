/* tests/core/test_llama_ops.c — lib/core/llama_ops.c: the three backwards (RMSNorm, RoPE,
 * SwiGLU) against central finite differences on every kernel set, of the loss through the
 * public float forward and of a naive double forward written here; RoPE against rotations
 * computed in double from theta (Llama 2 and Llama 3 bases, linear scaling); 3 threads
 * against 1; bad arguments. Backward gradients start random, so they must accumulate. */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

enum op { OP_RMSNORM, OP_ROPE, OP_SWIGLU, OP_COUNT };
static const char *const op_names[OP_COUNT] = {"rmsnorm", "rope", "swiglu"};

#define EPS 1e-5f
/* RoPE instance: T rows at positions POS0.., NH heads of HS, row stride LD (padded) */
#define T_ 5
#define NH 2
#define HS 6
#define LD 15
#define POS0 3
#define NPOS 16
#define THETA 10000.0

typedef struct problem {
    enum op op;
    int64_t rows, c, nout; /* RMSNorm: (rows, c); SwiGLU: (rows, h = c), out (rows, c) */
    float *p[2];           /* inputs: x, w (RMSNorm); gu (SwiGLU); x (RoPE) */
    int64_t np[2];
    float *r;       /* loss weights (nout) */
    float *cs, *sn; /* RoPE table */
} problem;

static problem problem_new(enum op op, uint64_t seed)
{
    problem P = {op, 3, 9, 27, {NULL, NULL}, {0, 0}, NULL, NULL, NULL};
    if (op == OP_RMSNORM)
        P.np[0] = P.nout, P.np[1] = P.c;
    if (op == OP_SWIGLU)
        P.np[0] = 2 * P.nout;
    if (op == OP_ROPE) {
        P.rows = T_, P.c = LD, P.nout = (T_ - 1) * LD + NH * HS, P.np[0] = P.nout;
        P.cs = tu_alloc_nan(NPOS * HS), P.sn = tu_alloc_nan(NPOS * HS);
        ck_assert_int_eq(parlm_rope_table(P.cs, P.sn, NPOS, HS, THETA, 1.0), PARLM_OK);
    }
    for (int k = 0; k < 2; k++)
        if (P.np[k]) {
            P.p[k] = tu_alloc_nan(P.np[k]);
            tu_fill(P.p[k], P.np[k], seed + (uint64_t)k);
        }
    if (op == OP_RMSNORM)
        for (int64_t j = 0; j < P.c; j++)
            P.p[1][j] += 1.5f;
    if (op == OP_SWIGLU)
        for (int64_t i = 0; i < P.np[0]; i++)
            P.p[0][i] *= 4.0f;
    P.r = tu_alloc_nan(P.nout);
    tu_fill(P.r, P.nout, seed + 99);
    return P;
}

static void problem_free(problem *P)
{
    parlm_free(P->p[0]), parlm_free(P->p[1]), parlm_free(P->r);
    parlm_free(P->cs), parlm_free(P->sn);
}

/* RoPE's loss ignores the padding of each row (it is not an output) */
static int is_output(const problem *P, int64_t i)
{
    return P->op != OP_ROPE || i % LD < NH * HS;
}

/* public float forward into out; L = sum out * r in double */
static double loss_float(void *ctx, float *out)
{
    const problem *P = ctx;
    float rstd[8];
    switch (P->op) {
    case OP_RMSNORM:
        ck_assert_int_eq(parlm_rmsnorm_forward(out, rstd, P->p[0], P->p[1], P->rows, P->c, EPS),
                         PARLM_OK);
        break;
    case OP_ROPE:
        memcpy(out, P->p[0], (size_t)P->nout * 4);
        ck_assert_int_eq(parlm_rope_forward(out, T_, NH, HS, LD, POS0, P->cs, P->sn, NPOS),
                         PARLM_OK);
        break;
    case OP_SWIGLU:
        ck_assert_int_eq(parlm_swiglu_forward(out, P->p[0], P->rows, P->c), PARLM_OK);
        break;
    default:
        break;
    }
    double L = 0;
    for (int64_t i = 0; i < P->nout; i++)
        if (is_output(P, i))
            L += (double)out[i] * P->r[i];
    return L;
}

/* naive double forward, independent of the library (RoPE angles from theta here) */
static double loss_double(void *ctx, double *const *q)
{
    const problem *P = ctx;
    double L = 0;
    if (P->op == OP_RMSNORM)
        for (int64_t i = 0; i < P->rows; i++) {
            double ss = 0;
            for (int64_t j = 0; j < P->c; j++)
                ss += q[0][i * P->c + j] * q[0][i * P->c + j];
            double s = 1 / sqrt(ss / (double)P->c + (double)EPS);
            for (int64_t j = 0; j < P->c; j++)
                L += q[0][i * P->c + j] * s * q[1][j] * P->r[i * P->c + j];
        }
    if (P->op == OP_SWIGLU)
        for (int64_t i = 0; i < P->rows; i++)
            for (int64_t j = 0; j < P->c; j++) {
                double g = q[0][i * 2 * P->c + j], u = q[0][i * 2 * P->c + P->c + j];
                L += g / (1 + exp(-g)) * u * P->r[i * P->c + j];
            }
    if (P->op == OP_ROPE)
        for (int64_t t = 0; t < T_; t++)
            for (int64_t h = 0; h < NH; h++)
                for (int64_t i = 0; i < HS / 2; i++) {
                    int64_t e = t * LD + h * HS + 2 * i;
                    double a = (double)(POS0 + t) * pow(THETA, -2.0 * (double)i / HS);
                    double x0 = q[0][e], x1 = q[0][e + 1];
                    L += (x0 * cos(a) - x1 * sin(a)) * P->r[e] +
                         (x0 * sin(a) + x1 * cos(a)) * P->r[e + 1];
                }
    return L;
}

/* public backward with dout = r; grad[k] = (after - before) in double */
static void grads_public(void *ctx, double **grad)
{
    const problem *P = ctx;
    float *g[2] = {NULL, NULL}, *g0[2] = {NULL, NULL}, rstd[8];
    float *out = tu_alloc_nan(P->nout);
    for (int k = 0; k < 2; k++)
        if (P->np[k]) {
            g[k] = tu_alloc_nan(P->np[k]), g0[k] = tu_alloc_nan(P->np[k]);
            tu_fill(g0[k], P->np[k], 500 + (uint64_t)k);
            memcpy(g[k], g0[k], (size_t)P->np[k] * 4);
        }
    switch (P->op) {
    case OP_RMSNORM:
        ck_assert_int_eq(parlm_rmsnorm_forward(out, rstd, P->p[0], P->p[1], P->rows, P->c, EPS),
                         PARLM_OK);
        ck_assert_int_eq(
            parlm_rmsnorm_backward(g[0], g[1], P->r, P->p[0], P->p[1], rstd, P->rows, P->c),
            PARLM_OK);
        break;
    case OP_ROPE: /* in place: the gradient is R^T r itself, so start from r (0 in the pads) */
        for (int64_t i = 0; i < P->nout; i++)
            g0[0][i] = 0.0f, g[0][i] = is_output(P, i) ? P->r[i] : 0.0f;
        ck_assert_int_eq(parlm_rope_backward(g[0], T_, NH, HS, LD, POS0, P->cs, P->sn, NPOS),
                         PARLM_OK);
        break;
    case OP_SWIGLU:
        ck_assert_int_eq(parlm_swiglu_backward(g[0], P->r, P->p[0], P->rows, P->c), PARLM_OK);
        break;
    default:
        break;
    }
    for (int k = 0; k < 2; k++) {
        for (int64_t i = 0; i < P->np[k]; i++)
            grad[k][i] = (double)g[k][i] - (double)g0[k][i];
        parlm_free(g[k]), parlm_free(g0[k]);
    }
    parlm_free(out);
}

/* sum |out r| over the outputs input k, element i feeds: the scale of L's rounding noise */
static double dependent_scale(void *ctx, const float *out, int k, int64_t i)
{
    const problem *P = ctx;
    double s = 0;
    if (P->op == OP_RMSNORM && k == 0)
        for (int64_t j = 0, r0 = i / P->c; j < P->c; j++)
            s += fabs(out[r0 * P->c + j] * P->r[r0 * P->c + j]);
    if (P->op == OP_RMSNORM && k == 1)
        for (int64_t r = 0; r < P->rows; r++)
            s += fabs(out[r * P->c + i] * P->r[r * P->c + i]);
    if (P->op == OP_SWIGLU) {
        int64_t r0 = i / (2 * P->c), j = i % P->c;
        s = fabs(out[r0 * P->c + j] * P->r[r0 * P->c + j]);
    }
    if (P->op == OP_ROPE && is_output(P, i)) {
        int64_t e = i - (i % LD % HS) % 2; /* the pair's first element */
        s = fabs(out[e] * P->r[e]) + fabs(out[e + 1] * P->r[e + 1]) +
            (fabs(P->p[0][e]) + fabs(P->p[0][e + 1])) * (fabs(P->r[e]) + fabs(P->r[e + 1]));
    }
    return s;
}

/* Central differences of L through the public float API and of the naive double forward,
 * against the public backward, for every op and kernel set (tolerances: harness.h) */
START_TEST(backward_matches_finite_differences)
{
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    for (int ii = 0; ii < ni; ii++) {
        ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
        for (int op = 0; op < OP_COUNT; op++) {
            problem P = problem_new((enum op)op, 60 + (uint64_t)op);
            /* output rounding, relative: RMSNorm's row sums k_rows(C), the others a few
             * roundings (K = 16); RoPE's float table adds ~u, inside the double bound */
            double K = op == OP_RMSNORM ? k_rows(P.c) : 16.0;
            const fd_op F = {parlm_isa_name(isas[ii]), op_names[op], &P, 2, {P.p[0], P.p[1]},
                             {P.np[0], P.np[1]}, P.nout, K, grads_public, loss_float,
                             loss_double, dependent_scale};
            fd_expect(&F);
            problem_free(&P);
        }
    }
    parlm_isa_select(saved);
}
END_TEST

/* max(worst, r) where a NaN r counts as infinitely bad. (Also keeps gcc 12's aarch64
 * vectorizer off a fmax reduction it crashes on.) */
static double worse(double worst, double r)
{
    return r <= worst ? worst : isnan(r) ? INFINITY : r;
}

/* RoPE at long positions against angles in double: Llama 2 (theta 1e4), Llama 3 (5e5) and
 * 4x linear scaling; then the backward undoes the forward. The table's cos / sin are
 * rounded once (u each), the rotation adds 2-3 roundings: 8 u (|a| + |b|) per output. */
START_TEST(rope_matches_double_rotation_and_inverts)
{
    const double thetas[3] = {10000.0, 500000.0, 500000.0}, scales[3] = {1.0, 1.0, 4.0};
    const int64_t npos = 8192, T = 9, nh = 3, hs = 128, ld = nh * hs, pos0 = npos - T;
    float *cs = tu_alloc_nan(npos * hs), *sn = tu_alloc_nan(npos * hs);
    float *x = tu_alloc_nan(T * ld), *x0 = tu_alloc_nan(T * ld);
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    tu_fill(x0, T * ld, 77);
    for (int c = 0; c < 3; c++) {
        ck_assert_int_eq(parlm_rope_table(cs, sn, npos, hs, thetas[c], scales[c]), PARLM_OK);
        for (int64_t i = 0; i < hs; i += 2) { /* position 0: identity; pairs share a, sin folded */
            ck_assert(cs[i] == 1.0f && cs[i + 1] == 1.0f && sn[i] == 0.0f && sn[i + 1] == 0.0f);
            ck_assert(cs[77 * hs + i] == cs[77 * hs + i + 1] &&
                      sn[77 * hs + i] == -sn[77 * hs + i + 1]);
        }
        for (int ii = 0; ii < ni; ii++) {
            ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
            memcpy(x, x0, (size_t)(T * ld) * 4);
            ck_assert_int_eq(parlm_rope_forward(x, T, nh, hs, ld, pos0, cs, sn, npos), PARLM_OK);
            double worst = 0, worst_inv = 0;
            for (int64_t t = 0; t < T; t++)
                for (int64_t e = t * ld; e < (t + 1) * ld; e += 2) {
                    int64_t i = (e - t * ld) % hs / 2;
                    double a =
                        (double)(pos0 + t) / scales[c] * pow(thetas[c], -2.0 * (double)i / hs);
                    double p = x0[e], q = x0[e + 1], tol = 8 * U_RND * (fabs(p) + fabs(q));
                    worst = worse(worst, fabs(x[e] - (p * cos(a) - q * sin(a))) / tol);
                    worst = worse(worst, fabs(x[e + 1] - (p * sin(a) + q * cos(a))) / tol);
                }
            ck_assert_int_eq(parlm_rope_backward(x, T, nh, hs, ld, pos0, cs, sn, npos), PARLM_OK);
            /* R^T R = I up to the table's rounding (|cos^2 + sin^2 - 1| <= 2 u) and two
             * rotations' roundings: 16 u (|a| + |b|) */
            for (int64_t e = 0; e < T * ld; e += 2) {
                double tol = 16 * U_RND * (fabs(x0[e]) + fabs(x0[e + 1]));
                worst_inv = worse(worst_inv, fabs(x[e] - x0[e]) / tol);
                worst_inv = worse(worst_inv, fabs(x[e + 1] - x0[e + 1]) / tol);
            }
            printf("%s rope theta %g scale %g: worst |diff| / tol vs double %.3f, inverse %.3f\n",
                   parlm_isa_name(isas[ii]), thetas[c], scales[c], worst, worst_inv);
            ck_assert_msg(worst <= 1.0, "rope vs double: %.3f x tol", worst);
            ck_assert_msg(worst_inv <= 1.0, "rope inverse: %.3f x tol", worst_inv);
        }
    }
    parlm_isa_select(saved);
    parlm_free(cs), parlm_free(sn), parlm_free(x), parlm_free(x0);
}
END_TEST

/* 3 threads against 1 on shapes large enough to split (RMSNorm dw goes through per-thread
 * partials): equal within the reordering of dw's row sums, the rest bitwise (rows are
 * independent). */
START_TEST(threads_match_one)
{
    const int64_t rows = 300, c = 768, h = 2048, T = 256, nh = 12, hs = 64;
    float *x = tu_alloc_nan(rows * c), *w = tu_alloc_nan(c), *d = tu_alloc_nan(rows * c);
    float *o[2], *rs[2], *dx[2], *dw[2], *sw[2], *dgu[2], *q[2];
    float *gu = tu_alloc_nan(rows * 2 * h), *dsw = tu_alloc_nan(rows * h);
    float *cs = tu_alloc_nan(T * hs), *sn = tu_alloc_nan(T * hs);
    tu_fill(x, rows * c, 1), tu_fill(w, c, 2), tu_fill(d, rows * c, 3),
        tu_fill(gu, rows * 2 * h, 4);
    tu_fill(dsw, rows * h, 5);
    ck_assert_int_eq(parlm_rope_table(cs, sn, T, hs, 10000.0, 1.0), PARLM_OK);
    for (int v = 0; v < 2; v++) {
        omp_set_num_threads(v == 0 ? 1 : 3);
        o[v] = tu_alloc_nan(rows * c), rs[v] = tu_alloc_nan(rows), dx[v] = tu_alloc_nan(rows * c);
        dw[v] = tu_alloc_nan(c), sw[v] = tu_alloc_nan(rows * h),
        dgu[v] = tu_alloc_nan(rows * 2 * h);
        q[v] = tu_alloc_nan(T * nh * hs);
        memset(dx[v], 0, (size_t)(rows * c) * 4), memset(dw[v], 0, (size_t)c * 4);
        memset(dgu[v], 0, (size_t)(rows * 2 * h) * 4);
        tu_fill(q[v], T * nh * hs, 6);
        ck_assert_int_eq(parlm_rmsnorm_forward(o[v], rs[v], x, w, rows, c, 1e-6f), PARLM_OK);
        ck_assert_int_eq(parlm_rmsnorm_backward(dx[v], dw[v], d, x, w, rs[v], rows, c), PARLM_OK);
        ck_assert_int_eq(parlm_swiglu_forward(sw[v], gu, rows, h), PARLM_OK);
        ck_assert_int_eq(parlm_swiglu_backward(dgu[v], dsw, gu, rows, h), PARLM_OK);
        ck_assert_int_eq(parlm_rope_forward(q[v], T, nh, hs, nh * hs, 0, cs, sn, T), PARLM_OK);
    }
    omp_set_num_threads(2);
    ck_assert(memcmp(o[0], o[1], (size_t)(rows * c) * 4) == 0);
    ck_assert(memcmp(rs[0], rs[1], (size_t)rows * 4) == 0);
    ck_assert(memcmp(dx[0], dx[1], (size_t)(rows * c) * 4) == 0);
    ck_assert(memcmp(sw[0], sw[1], (size_t)(rows * h) * 4) == 0);
    ck_assert(memcmp(dgu[0], dgu[1], (size_t)(rows * 2 * h) * 4) == 0);
    ck_assert(memcmp(q[0], q[1], (size_t)(T * nh * hs) * 4) == 0);
    double *tol = tol_new(c);
    for (int64_t j = 0; j < c; j++) { /* two orders of a sum of rows terms: 2 rows u sum|terms| */
        double s = 0;
        for (int64_t r = 0; r < rows; r++)
            s += fabs(x[r * c + j] * rs[0][r] * d[r * c + j]);
        tol[j] = 2.0 * (double)rows * U_RND * s;
    }
    expect_close_f("3 vs 1 threads", "rmsnorm dw", dw[1], dw[0], tol, c);
    free(tol);
    for (int v = 0; v < 2; v++)
        parlm_free(o[v]), parlm_free(rs[v]), parlm_free(dx[v]), parlm_free(dw[v]),
            parlm_free(sw[v]), parlm_free(dgu[v]), parlm_free(q[v]);
    parlm_free(x), parlm_free(w), parlm_free(d), parlm_free(gu), parlm_free(dsw);
    parlm_free(cs), parlm_free(sn);
}
END_TEST

START_TEST(rmsnorm_in_place_equals_out_of_place)
{
    const int64_t rows = 4, c = 33;
    float *x = tu_alloc_nan(rows * c), *w = tu_alloc_nan(c), *o = tu_alloc_nan(rows * c);
    float r1[4], r2[4];
    tu_fill(x, rows * c, 9), tu_fill(w, c, 10);
    ck_assert_int_eq(parlm_rmsnorm_forward(o, r1, x, w, rows, c, EPS), PARLM_OK);
    ck_assert_int_eq(parlm_rmsnorm_forward(x, r2, x, w, rows, c, EPS), PARLM_OK);
    ck_assert(memcmp(o, x, (size_t)(rows * c) * 4) == 0 && memcmp(r1, r2, sizeof r1) == 0);
    parlm_free(x), parlm_free(w), parlm_free(o);
}
END_TEST

START_TEST(bad_arguments)
{
    float a[64], b[64], c[64], d[64];
    memset(a, 0, sizeof a), memset(b, 0, sizeof b), memset(c, 0, sizeof c), memset(d, 0, sizeof d);
    expect_einval_msg(parlm_rmsnorm_forward(a, b, NULL, c, 2, 8, EPS), "x is NULL");
    expect_einval_msg(parlm_rmsnorm_forward(a, b, c, d, 0, 8, EPS), "rows");
    expect_einval_msg(parlm_rmsnorm_forward(a, b, c, d, 2, 8, 0.0f), "eps");
    expect_einval_msg(parlm_rmsnorm_forward(a, a + 15, c, d, 2, 8, EPS), "must not overlap");
    expect_einval_msg(parlm_rmsnorm_forward(a, b, a + 1, d, 2, 8, EPS),
                      "in-place use must pass the same pointer");
    expect_einval_msg(parlm_rmsnorm_backward(a, a + 8, b, c, d, d + 8, 2, 8), "must not overlap");
    expect_einval_msg(parlm_rmsnorm_backward(a, b, c, d, d, NULL, 2, 8), "rstd is NULL");
    expect_einval_msg(parlm_rope_table(a, b, 4, 7, 10000.0, 1.0), "odd");
    expect_einval_msg(parlm_rope_table(a, b, 4, 8, 1.0, 1.0), "theta");
    expect_einval_msg(parlm_rope_table(a, b, 4, 8, 10000.0, 0.5), "scale");
    expect_einval_msg(parlm_rope_table(a, a + 4, 4, 8, 10000.0, 1.0), "must not overlap");
    ck_assert_int_eq(parlm_rope_table(a, b, 4, 8, 10000.0, 1.0), PARLM_OK);
    expect_einval_msg(parlm_rope_forward(c, 2, 2, 8, 16, 3, a, b, 4), "outside the table");
    expect_einval_msg(parlm_rope_forward(c, 2, 2, 8, 16, -1, a, b, 4), "outside the table");
    expect_einval_msg(parlm_rope_forward(c, 2, 2, 8, 15, 0, a, b, 4), "row stride");
    expect_einval_msg(parlm_rope_forward(c, 2, 2, 7, 16, 0, a, b, 4), "odd");
    expect_einval_msg(parlm_rope_backward(a, 2, 1, 8, 8, 0, a, b, 4), "must not overlap");
    expect_einval_msg(parlm_rope_backward(NULL, 2, 1, 8, 8, 0, a, b, 4), "NULL");
    expect_einval_msg(parlm_swiglu_forward(a, a + 4, 2, 8), "must not overlap");
    expect_einval_msg(parlm_swiglu_forward(a, b, 2, 0), "H");
    expect_einval_msg(parlm_swiglu_forward(a, b, INT64_MAX / 4, 4), "address space");
    expect_einval_msg(parlm_swiglu_backward(a, b, a + 16, 2, 8), "must not overlap");
    /* a refused call leaves outputs untouched */
    ck_assert(c[0] == 0.0f && c[31] == 0.0f);
}
END_TEST

static Suite *llama_ops_suite(void)
{
    Suite *s = suite_create("llama ops");
    TCase *tc = tcase_create("gradients");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, backward_matches_finite_differences);
    tcase_add_test(tc, rope_matches_double_rotation_and_inverts);
    suite_add_tcase(s, tc);
    tc = tcase_create("behaviour");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, threads_match_one);
    tcase_add_test(tc, rmsnorm_in_place_equals_out_of_place);
    tcase_add_test(tc, bad_arguments);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(llama_ops_suite());
}
