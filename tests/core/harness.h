/* tests/core/harness.h — what the Check suites of tests/core share: the kernel sets to
 * loop over, the error bounds the tolerances are built from, comparisons that report the
 * worst element, finite differences of a backward, a bf16 reference, re-running the test
 * program as a child with an environment variable set, and the runner. Written once here,
 * static inline, so every test program is one .c file plus this header (plus attn_ref.c
 * for the attention ones).
 * u = 2^-24 is the unit roundoff of f32 throughout. */
#ifndef PARLM_TESTS_CORE_HARNESS_H
#define PARLM_TESTS_CORE_HARNESS_H
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/core/dispatch.h"
#include "../simd/kernels.h"
#include "parlm.h"
#include "../testutil.h"

#define U_RND (FLT_EPSILON / 2.0) /* unit roundoff of f32 */
#define LAMBDA 8.0
#define SENTINEL 1234.5f /* fills memory a call must not write */

/* ---- error bounds ----------------------------------------------------------------------
 * gamma(n) = n u / (1 - n u): any summation order of n products (with or without FMA)
 * errs by at most gamma(n) sum|a||b| (Higham, Thm 3.1). A GEMM's alpha * s + beta * c
 * adds three more roundings, so its bound is gamma(K + 3) (|alpha| sum|a||b| + |beta c|),
 * doubled as margin for the reference's own double rounding. A wrong element, a lost or
 * doubled k, a stale C all give errors of order |a||b|, far above it. bf16 products are
 * exact in f32 (8 x 8 significand bits), so bf16 GEMM has the same bound against the
 * double product of the bf16-rounded inputs. */
static inline double gamma_n(double n)
{
    double u = ldexp(1.0, -24);
    return n * u / (1.0 - n * u);
}

static inline double gemm_tol(int64_t K, double alpha_sum_abs, double beta_c)
{
    return 2.0 * gamma_n((double)K + 3.0) * (alpha_sum_abs + fabs(beta_c)) + 1e-30;
}

/* The row statistics (means, variances, dot products) are sums of c rounded terms. By the
 * probabilistic error analysis of Higham & Mary (2019) such a sum is within
 * lambda sqrt(c) u sum|terms| of the exact value except with probability
 * < 2 exp(-lambda^2 / 2); with lambda = 8 for each of the two implementations compared,
 * plus 16 u for the handful of elementwise roundings around the sums: */
static inline double k_rows(int64_t c) { return 16.0 * sqrt((double)c) + 16.0; }

/* The same bound for one float sum of n terms, relative to sum|terms| (lambda = 8), plus
 * a few u for the elementwise roundings around it. */
static inline double sum_err(int64_t n) { return (LAMBDA * sqrt((double)n) + 8.0) * U_RND; }

/* ---- the kernel sets -------------------------------------------------------------------- */

/* sets this build and CPU can run */
static inline int supported_isas(parlm_isa *out)
{
    int n = 0;
    for (int i = 0; i < PARLM_ISA_COUNT; i++)
        if (parlm_isa_supported((parlm_isa)i))
            out[n++] = (parlm_isa)i;
    return n;
}

static inline parlm_kernels table_of(parlm_isa isa)
{
    parlm_kernels k;
    ck_assert_int_eq(parlm_kernels_for(isa, &k), PARLM_OK);
    return k;
}

/* The kernel sets for the GEMM and conversion kernels: every supported ISA, plus (x86)
 * the plain avx512 table when the CPU also has AVX512-BF16, whose bf16 fallback would
 * otherwise never run here. */
typedef struct kset {
    char name[32];
    parlm_kernels k;
} kset;

static inline int kernel_sets(kset *out, int max)
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

/* ---- buffers ------------------------------------------------------------------------------ */

static inline void *xmalloc(size_t n)
{
    void *p = malloc(n > 0 ? n : 1);
    ck_assert_ptr_nonnull(p);
    return p;
}

/* n doubles (tolerances, references) */
static inline double *tol_new(int64_t n)
{
    return xmalloc((size_t)(n > 0 ? n : 1) * sizeof(double));
}

/* uniform in [lo, hi) */
static inline void fill_range(float *x, int64_t n, uint64_t seed, float lo, float hi)
{
    tu_fill(x, n, seed);
    for (int64_t i = 0; i < n; i++)
        x[i] = lo + (x[i] + 1.0f) * 0.5f * (hi - lo);
}

/* ---- comparisons --------------------------------------------------------------------------
 * Check records every assertion (a write to its log), so element loops find the worst
 * element with plain code and assert once. */

/* Asserts |got[i] - ref[i]| <= tol[i] for i < n (NaN fails); returns max |diff| / tol. */
static inline double expect_close(const char *ctx, const char *what, const float *got,
                                  const double *ref, const double *tol, int64_t n)
{
    double worst = 0.0;
    int64_t wi = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        double ratio = tol[i] > 0 ? d / tol[i] : (d > 0 ? INFINITY : 0.0);
        if (!(ratio <= worst)) { /* NaN lands here */
            worst = isnan(ratio) ? INFINITY : ratio;
            wi = i;
        }
    }
    ck_assert_msg(worst <= 1.0, "%s: %s[%lld] = %.9g, reference %.9g, |diff| %.3g > tol %.3g",
                  ctx, what, (long long)wi, (double)got[wi], ref[wi],
                  fabs((double)got[wi] - ref[wi]), tol[wi]);
    return worst;
}

/* The same against a float reference (another kernel set's output), where special values
 * must match: NaN must match NaN, inf must match exactly. */
static inline double expect_close_f(const char *ctx, const char *what, const float *got,
                                    const float *ref, const double *tol, int64_t n)
{
    double worst = 0.0;
    int64_t wi = -1;
    for (int64_t i = 0; i < n; i++) {
        double g = got[i], r = ref[i];
        if (isnan(r) || isinf(r) || isinf(g)) {
            ck_assert_msg((isnan(r) && isnan(g)) || g == r, "%s: %s[%lld] = %g, reference %g", ctx,
                          what, (long long)i, g, r);
            continue;
        }
        double d = fabs(g - r), ratio = tol[i] > 0 ? d / tol[i] : (d > 0 ? INFINITY : 0.0);
        if (!(ratio <= worst)) { /* NaN in got lands here too */
            worst = isnan(ratio) ? INFINITY : ratio;
            wi = i;
        }
    }
    ck_assert_msg(worst <= 1.0, "%s: %s[%lld] = %.9g, reference %.9g, |diff| %.3g > tol %.3g", ctx,
                  what, (long long)wi, (double)got[wi], (double)ref[wi],
                  fabs((double)got[wi] - ref[wi]), tol[wi]);
    return worst;
}

/* A call refused with PARLM_EINVAL and a message; the message is cleared for the next. */
static inline void expect_einval(parlm_status st, const char *what)
{
    ck_assert_msg(st == PARLM_EINVAL, "%s: got status %d, want PARLM_EINVAL", what, (int)st);
    ck_assert_msg(parlm_last_error()[0] != '\0', "%s: no error message", what);
    parlm_clear_error();
}

/* A call refused with PARLM_EINVAL whose message names the problem (contains needle). */
static inline void expect_einval_msg(parlm_status st, const char *needle)
{
    ck_assert_int_eq(st, PARLM_EINVAL);
    ck_assert_msg(strstr(parlm_last_error(), needle) != NULL, "message '%s' lacks '%s'",
                  parlm_last_error(), needle);
}

/* ---- finite differences --------------------------------------------------------------------
 * A backward against central differences of its scalar loss L, one input element at a
 * time: the element is set to v + h, then v - h, L evaluated by the callback (which reads
 * the inputs through ctx), the element restored. Both return the worst |fd - grad| / tol
 * over the n elements (a NaN counts as infinitely bad), so a caller asserts once per op. */

static inline double fd_worse(double worst, double r)
{
    return r <= worst ? worst : isnan(r) ? INFINITY : r;
}

/* Float inputs, L through the public float forward. L(v +- h) each carry <= K u S of
 * rounding, S = scale(ctx, i) = sum |out r| over the outputs x[i] feeds, so the quotient
 * carries 2 K u S / (2h); taken twice for margin. Truncation h^2/6 |L'''| and the
 * backward's own rounding stay under 1e-3 |grad| + 1e-6. The quotient divides by the step
 * the floats really took. */
static inline double fd_worst_float(double (*loss)(void *ctx),
                                    double (*scale)(void *ctx, int64_t i), void *ctx, float *x,
                                    const double *grad, int64_t n, float h, double K)
{
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = v + h;
        double xp = x[i], Lp = loss(ctx);
        x[i] = v - h;
        double xm = x[i], Lm = loss(ctx);
        x[i] = v;
        double tol = 1e-3 * fabs(grad[i]) + 1e-6 + 4 * K * U_RND * scale(ctx, i) / (xp - xm);
        worst = fd_worse(worst, fabs((Lp - Lm) / (xp - xm) - grad[i]) / tol);
    }
    return worst;
}

/* Double inputs, L through a naive double forward, h = 1e-3: rounding noise ~1e-13 is
 * negligible; truncation h^2/6 |L'''| is ~2e-7 |L'''|, with |L'''| = O(10) for smooth ops
 * on O(1) inputs; the float backward's rounding is K u of the gradient scale. Bound
 * 1e-5 (|grad| + gmax), gmax = max |grad| over all the op's inputs. */
static inline double fd_worst_double(double (*loss)(void *ctx), void *ctx, double *q,
                                     const double *grad, int64_t n, double gmax)
{
    const double h = 1e-3;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = q[i];
        q[i] = v + h;
        double Lp = loss(ctx);
        q[i] = v - h;
        double Lm = loss(ctx);
        q[i] = v;
        double tol = 1e-5 * (fabs(grad[i]) + gmax);
        worst = fd_worse(worst, fabs((Lp - Lm) / (2 * h) - grad[i]) / tol);
    }
    return worst;
}

/* One op to check against finite differences: its inputs and the caller's callbacks, each
 * handed ctx (the caller's problem). L = sum out * r for fixed weights r. */
#define FD_MAX_IN 3
typedef struct fd_op {
    const char *isa, *name; /* for the messages */
    void *ctx;
    int nin;               /* inputs, <= FD_MAX_IN */
    float *x[FD_MAX_IN];   /* the float inputs the forwards read, perturbed in place */
    int64_t n[FD_MAX_IN];  /* their lengths (0: the op has no input k) */
    int64_t nout;          /* floats the forward writes */
    double K;              /* L's float rounding is <= K u scale */
    void (*grads)(void *ctx, double **grad);            /* the public backward's dL/dx[k] */
    double (*loss_float)(void *ctx, float *out);        /* public float forward; fills out */
    double (*loss_double)(void *ctx, double *const *q); /* naive double forward at q */
    /* sum |out r| over the outputs x[k][i] feeds, out at the unperturbed inputs */
    double (*scale)(void *ctx, const float *out, int k, int64_t i);
} fd_op;

/* what fd_worst_float / fd_worst_double's callbacks see of an fd_op being checked */
typedef struct fd_run {
    const fd_op *op;
    const float *out;
    float *tmp;
    double **q;
    int k;
} fd_run;

static inline double fd_run_float(void *c)
{
    const fd_run *r = c;
    return r->op->loss_float(r->op->ctx, r->tmp);
}

static inline double fd_run_double(void *c)
{
    const fd_run *r = c;
    return r->op->loss_double(r->op->ctx, r->q);
}

static inline double fd_run_scale(void *c, int64_t i)
{
    const fd_run *r = c;
    return r->op->scale(r->op->ctx, r->out, r->k, i);
}

/* Both checks of every input of op on the current kernel set (h = 1e-3); prints the worst
 * ratios, asserts each <= 1. */
static inline void fd_expect(const fd_op *op)
{
    double *grad[FD_MAX_IN] = {NULL}, *q[FD_MAX_IN] = {NULL};
    float *out = tu_alloc_nan(op->nout), *tmp = tu_alloc_nan(op->nout);
    for (int k = 0; k < op->nin; k++)
        if (op->n[k] > 0) {
            grad[k] = tol_new(op->n[k]), q[k] = tol_new(op->n[k]);
            for (int64_t i = 0; i < op->n[k]; i++)
                q[k][i] = op->x[k][i];
        }
    op->grads(op->ctx, grad);
    op->loss_float(op->ctx, out);
    double worst_f = 0, worst_d = 0, gmax = 0;
    for (int k = 0; k < op->nin; k++)
        for (int64_t i = 0; i < op->n[k]; i++)
            gmax = fmax(gmax, fabs(grad[k][i]));
    fd_run r = {op, out, tmp, q, 0};
    for (r.k = 0; r.k < op->nin; r.k++) {
        if (op->n[r.k] < 1)
            continue;
        int k = r.k;
        double wf = fd_worst_float(fd_run_float, fd_run_scale, &r, op->x[k], grad[k], op->n[k],
                                   1e-3f, op->K);
        double wd = fd_worst_double(fd_run_double, &r, q[k], grad[k], op->n[k], gmax);
        worst_f = fd_worse(worst_f, wf), worst_d = fd_worse(worst_d, wd);
    }
    printf("%s %s: worst |fd - backward| / tol: float public %.3f, double naive %.3f\n", op->isa,
           op->name, worst_f, worst_d);
    ck_assert_msg(worst_f <= 1.0, "%s %s: float finite differences off (%.3f x tol)", op->isa,
                  op->name, worst_f);
    ck_assert_msg(worst_d <= 1.0, "%s %s: double finite differences off (%.3f x tol)", op->isa,
                  op->name, worst_d);
    for (int k = 0; k < op->nin; k++)
        free(grad[k]), free(q[k]);
    parlm_free(out), parlm_free(tmp);
}

/* ---- references --------------------------------------------------------------------------- */

/* f32 -> bf16, round to nearest even, NaN kept quiet: an independent statement of what
 * the conversion kernels must do. */
static inline uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* The tanh-form GELU and its derivative in double, written with
 * (1 + tanh u) / 2 = s = 1 / (1 + exp(-2u)) and 1 - tanh^2 u = 4 s (1 - s), 1 - s = e s,
 * so that they keep their relative accuracy where tanh u -> -1 (even double would
 * round 1 + tanh(-33) to 0). */
static inline double gelu_d(double x)
{
    double u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    return x / (1.0 + exp(-2.0 * u));
}

static inline double gelu_grad_d(double x)
{
    double u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    double du = 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
    double e = exp(-2.0 * u), sg = 1.0 / (1.0 + e);
    return sg + 2.0 * x * du * sg * (e * sg);
}

/* ---- GEMM arguments shared by the GEMM suites ---------------------------------------------- */

static const float alphas[] = {1.0f, 0.7f, 1.0f, 0.0f, -1.5f};
static const float betas[] = {0.0f, -0.3f, 1.0f, 0.5f, 0.0f};
static const parlm_trans tas[3] = {PARLM_NO_TRANS, PARLM_NO_TRANS, PARLM_TRANS};
static const parlm_trans tbs[3] = {PARLM_NO_TRANS, PARLM_TRANS, PARLM_NO_TRANS};
static const char *const tnames[3] = {"NN", "NT", "TN"};

/* ---- child processes and the runner --------------------------------------------------------
 * The library reads its environment variables (PARLM_ISA, PARLM_BF16_PATH, PARLM_GEMM)
 * once per process, so a test of them re-runs this very program as a child with the
 * variable set and a mode argument main() dispatches on. */

/* this program's path, set by find_self() in main */
static inline char *self_path(void)
{
    static char path[4096];
    return path;
}

static inline int find_self(const char *prog)
{
    ssize_t n = readlink("/proc/self/exe", self_path(), 4095);
    if (n <= 0) {
        fprintf(stderr, "%s: cannot find its own executable\n", prog);
        return -1;
    }
    self_path()[n] = '\0';
    return 0;
}

/* Runs this program as `mode` with variable var=value (NULL: unset); returns its exit
 * code, its standard output in out (n bytes). */
static inline int run_child(const char *mode, const char *var, const char *value, char *out,
                            size_t n)
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
        execl(self_path(), self_path(), mode, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < n && (r = read(fd[0], out + got, n - 1 - got)) > 0)
        got += (size_t)r;
    out[got] = '\0';
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Runs the suite the default way (each test forked, CK_DEFAULT_TIMEOUT from the
 * environment); the exit status for main. */
static inline int run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
#endif
