/* tests/test_ops.c — include/parlm/ops.h and the eltwise kernels of every kernel set.
 * Every SIMD kernel is compared with the scalar reference on awkward shapes; the
 * reference itself is checked against double precision (accuracy of exp / GELU) and
 * every backward op against finite differences, both through the public API in float
 * and against a naive double-precision forward. u below is the unit roundoff 2^-24. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/core/dispatch.h"
#include "parlm.h"
#include "../testutil.h"

#define U_RND (FLT_EPSILON / 2.0) /* unit roundoff of f32 */
#define GUARD 32                  /* sentinel floats after every buffer */
#define SENTINEL 1234.5f

/* ---- buffers: optionally misaligned by one float, followed by sentinels --------------- */

typedef struct gbuf {
    float *base, *p;
    int64_t n;
} gbuf;

static gbuf gb_new(int64_t n, int misalign)
{
    gbuf b;
    int off = misalign ? 1 : 0;
    b.base = parlm_alloc((size_t)(n + off + GUARD), sizeof(float));
    ck_assert_ptr_nonnull(b.base);
    b.p = b.base + off;
    b.n = n;
    for (int64_t i = 0; i < n + off + GUARD; i++)
        b.base[i] = SENTINEL;
    return b;
}

/* uniform in [lo, hi) */
static void gb_fill(gbuf *b, uint64_t seed, float lo, float hi)
{
    tu_fill(b->p, b->n, seed);
    for (int64_t i = 0; i < b->n; i++)
        b->p[i] = lo + (b->p[i] + 1.0f) * 0.5f * (hi - lo);
}

static void gb_nan(gbuf *b)
{
    for (int64_t i = 0; i < b->n; i++)
        b->p[i] = NAN;
}

static void gb_copy(gbuf *dst, const gbuf *src) { memcpy(dst->p, src->p, (size_t)src->n * 4); }

static void gb_guard_ok(const gbuf *b, const char *ctx, const char *what)
{
    for (int i = 0; i < GUARD; i++)
        ck_assert_msg(b->p[b->n + i] == SENTINEL, "%s: write past the end of %s (+%d)", ctx, what,
                      i);
}

static void gb_free(gbuf *b) { parlm_free(b->base); }

/* ---- comparison --------------------------------------------------------------------- */

/* Asserts |got - ref| <= tol[i] elementwise (NaN must match NaN, inf must match exactly);
 * returns the worst |got - ref| / tol seen, for the summary line. */
static double expect_close(const char *ctx, const char *what, const float *got, const float *ref,
                           const double *tol, int64_t n)
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

static double *tol_new(int64_t n)
{
    double *t = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    ck_assert_ptr_nonnull(t);
    return t;
}

/* The row statistics (means, variances, dot products) are sums of c rounded terms. By the
 * probabilistic error analysis of Higham & Mary (2019) such a sum is within
 * lambda sqrt(c) u sum|terms| of the exact value except with probability
 * < 2 exp(-lambda^2 / 2); with lambda = 8 for each of the two implementations compared,
 * plus 16 u for the handful of elementwise roundings around the sums: */
static double k_rows(int64_t c) { return 16.0 * sqrt((double)c) + 16.0; }

/* sets this build and CPU can run */
static int supported_isas(parlm_isa *out)
{
    int n = 0;
    for (int i = 0; i < PARLM_ISA_COUNT; i++)
        if (parlm_isa_supported((parlm_isa)i))
            out[n++] = (parlm_isa)i;
    return n;
}

static parlm_kernels table_of(parlm_isa isa)
{
    parlm_kernels k;
    ck_assert_int_eq(parlm_kernels_for(isa, &k), PARLM_OK);
    return k;
}

/* ---- shapes ------------------------------------------------------------------------------ */

static const int64_t ROWS[] = {1, 2, 7, 17, 31, 64, 127};
static const int64_t COLS[] = {1, 2, 7, 17, 31, 64, 127, 255, 1000, 768, 3072};
static const int64_t NS[] = {1, 2, 7, 15, 16, 17, 31, 33, 63, 64, 127, 255, 768, 1000, 3072,
                             100003};
#define NROWS ((int)(sizeof ROWS / sizeof ROWS[0]))
#define NCOLS ((int)(sizeof COLS / sizeof COLS[0]))
#define NNS ((int)(sizeof NS / sizeof NS[0]))
#define NSHAPES (NROWS * NCOLS + 2)

/* shape s of the row-op sweep: every ROWS x COLS pair, then two larger ones */
static void shape(int s, int64_t *rows, int64_t *c)
{
    if (s < NROWS * NCOLS) {
        *rows = ROWS[s / NCOLS];
        *c = COLS[s % NCOLS];
    } else if (s == NROWS * NCOLS) {
        *rows = 255;
        *c = 768;
    } else {
        *rows = 1000;
        *c = 64;
    }
}

/* ---- every kernel set against the scalar reference ------------------------------------------ */

/* add: one correctly rounded addition per element, so any correct kernel is bitwise equal. */
START_TEST(kernels_add_match_scalar)
{
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_kernels ks = table_of(PARLM_ISA_SCALAR);
    for (int ii = 0; ii < ni; ii++) {
        if (isas[ii] == PARLM_ISA_SCALAR)
            continue;
        parlm_kernels kt = table_of(isas[ii]);
        for (int s = 0; s < NNS; s++) {
            int64_t n = NS[s];
            char ctx[96];
            snprintf(ctx, sizeof ctx, "%s add n=%lld", kt.name, (long long)n);
            gbuf a = gb_new(n, s & 1), b = gb_new(n, s & 1), o = gb_new(n, s & 1),
                 r = gb_new(n, 0);
            gb_fill(&a, 1 + s, -3, 3);
            gb_fill(&b, 100 + s, -3, 3);
            gb_nan(&o);
            ks.add(r.p, a.p, b.p, n);
            kt.add(o.p, a.p, b.p, n);
            ck_assert_msg(memcmp(o.p, r.p, (size_t)n * 4) == 0, "%s: not bitwise equal", ctx);
            gb_guard_ok(&o, ctx, "out");
            gb_free(&a), gb_free(&b), gb_free(&o), gb_free(&r);
        }
    }
}
END_TEST

/* The tanh-form GELU and its derivative in double, written with
 * (1 + tanh u) / 2 = s = 1 / (1 + exp(-2u)) and 1 - tanh^2 u = 4 s (1 - s), 1 - s = e s,
 * so that they keep their relative accuracy where tanh u -> -1 (even double would
 * round 1 + tanh(-33) to 0). */
static double gelu_d(double x)
{
    double u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    return x / (1.0 + exp(-2.0 * u));
}

static double gelu_grad_d(double x)
{
    double u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    double du = 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
    double e = exp(-2.0 * u), sg = 1.0 / (1.0 + e);
    return sg + 2.0 * x * du * sg * (e * sg);
}

START_TEST(kernels_gelu_match_scalar)
{
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_kernels ks = table_of(PARLM_ISA_SCALAR);
    for (int ii = 0; ii < ni; ii++) {
        if (isas[ii] == PARLM_ISA_SCALAR)
            continue;
        parlm_kernels kt = table_of(isas[ii]);
        double wf = 0, wb = 0;
        for (int s = 0; s < NNS; s++) {
            int64_t n = NS[s];
            char ctx[96];
            snprintf(ctx, sizeof ctx, "%s gelu n=%lld", kt.name, (long long)n);
            gbuf x = gb_new(n, s & 1), d = gb_new(n, s & 1), o = gb_new(n, s & 1),
                 r = gb_new(n, 0), dx = gb_new(n, s & 1), dr = gb_new(n, 0);
            double *tol = tol_new(n);
            gb_fill(&x, 7 + s, -6, 6);
            gb_fill(&d, 70 + s, -1, 1);
            gb_nan(&o);
            ks.gelu_fwd(r.p, x.p, n);
            kt.gelu_fwd(o.p, x.p, n);
            /* gelu = x * sigma with sigma = (1 + tanh u) / 2 in [0, 1]. The SIMD sigma has
             * relative error <= 1.92e-7 (measured, see simd/avx512/eltwise.c), the
             * reference's 0.5 (1 + tanhf) an absolute error <= ~1.2e-7 (tanhf within 1 ulp,
             * then the add); u itself is evaluated in a different order (a few ulp, which
             * moves sigma by <= 1e-7 here). Sum < 5e-7 |x|; bound 1e-6 |x|. */
            for (int64_t i = 0; i < n; i++)
                tol[i] = 1e-6 * fabs(x.p[i]);
            wf = fmax(wf, expect_close(ctx, "gelu_fwd out", o.p, r.p, tol, n));
            gb_guard_ok(&o, ctx, "out");

            gb_fill(&dx, 700 + s, -1, 1);
            gb_copy(&dr, &dx);
            ks.gelu_bwd(dr.p, x.p, d.p, n);
            kt.gelu_bwd(dx.p, x.p, d.p, n);
            /* The reference forms 1 - tanh^2 (absolute error ~2.4e-7 when tanh is near +-1)
             * and multiplies it by 0.5 |x| u'(x); the SIMD form has ~3e-7 relative error
             * per term. Bound: 1e-6 (1 + |x| u'(x)) |dout| + 4 u |dx| (the accumulation
             * rounds once with FMA, twice without, on each side). */
            for (int64_t i = 0; i < n; i++) {
                double xv = x.p[i], du = 0.7978845608 * (1 + 0.134145 * xv * xv);
                tol[i] = 1e-6 * (1 + fabs(xv) * du) * fabs(d.p[i]) + 4 * U_RND * fabs(dr.p[i]);
            }
            wb = fmax(wb, expect_close(ctx, "gelu_bwd dx", dx.p, dr.p, tol, n));
            gb_guard_ok(&dx, ctx, "dx");
            free(tol);
            gb_free(&x), gb_free(&d), gb_free(&o), gb_free(&r), gb_free(&dx), gb_free(&dr);
        }
        printf("%s: worst |diff| / tol vs scalar: gelu_fwd %.3f, gelu_bwd %.3f\n", kt.name, wf, wb);
    }
}
END_TEST

START_TEST(kernels_bias_match_scalar)
{
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_kernels ks = table_of(PARLM_ISA_SCALAR);
    for (int ii = 0; ii < ni; ii++) {
        if (isas[ii] == PARLM_ISA_SCALAR)
            continue;
        parlm_kernels kt = table_of(isas[ii]);
        double wb = 0;
        for (int s = 0; s < NSHAPES; s++) {
            int64_t rows, c;
            shape(s, &rows, &c);
            int64_t n = rows * c;
            char ctx[96];
            snprintf(ctx, sizeof ctx, "%s bias rows=%lld c=%lld", kt.name, (long long)rows,
                     (long long)c);
            gbuf o = gb_new(n, s & 1), r = gb_new(n, 0), bias = gb_new(c, s & 1);
            gb_fill(&o, 3 + s, -2, 2);
            gb_copy(&r, &o);
            gb_fill(&bias, 30 + s, -1, 1);
            ks.bias_fwd(r.p, bias.p, rows, c);
            kt.bias_fwd(o.p, bias.p, rows, c);
            /* one rounded addition per element: bitwise */
            ck_assert_msg(memcmp(o.p, r.p, (size_t)n * 4) == 0, "%s: bias_fwd not bitwise", ctx);
            gb_guard_ok(&o, ctx, "out");

            gbuf db = gb_new(c, s & 1), dbr = gb_new(c, 0);
            double *tol = tol_new(c);
            gb_fill(&db, 300 + s, -1, 1);
            gb_copy(&dbr, &db);
            /* recursive summation of rows + 1 terms: each side is within gamma_{rows}
             * sum|terms| ~ rows u sum|terms| of the exact sum (Higham, Thm 4.1). */
            for (int64_t j = 0; j < c; j++) {
                double m = fabs(db.p[j]);
                for (int64_t i = 0; i < rows; i++)
                    m += fabs(o.p[i * c + j]);
                tol[j] = 2.0 * (double)(rows + 1) * U_RND * m;
            }
            ks.bias_bwd(dbr.p, o.p, rows, c);
            kt.bias_bwd(db.p, o.p, rows, c);
            wb = fmax(wb, expect_close(ctx, "bias_bwd dbias", db.p, dbr.p, tol, c));
            gb_guard_ok(&db, ctx, "dbias");
            free(tol);
            gb_free(&o), gb_free(&r), gb_free(&bias), gb_free(&db), gb_free(&dbr);
        }
        printf("%s: worst |diff| / tol vs scalar: bias_bwd %.3f\n", kt.name, wb);
    }
}
END_TEST

START_TEST(kernels_layernorm_match_scalar)
{
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_kernels ks = table_of(PARLM_ISA_SCALAR);
    for (int ii = 0; ii < ni; ii++) {
        if (isas[ii] == PARLM_ISA_SCALAR)
            continue;
        parlm_kernels kt = table_of(isas[ii]);
        double wo = 0, wm = 0, ws = 0, wdx = 0, wdw = 0, wdb = 0;
        for (int s = 0; s < NSHAPES; s++) {
            int64_t rows, c;
            shape(s, &rows, &c);
            int64_t n = rows * c;
            int mis = s & 1;
            double K = k_rows(c) * U_RND;
            char ctx[96];
            snprintf(ctx, sizeof ctx, "%s layernorm rows=%lld c=%lld", kt.name, (long long)rows,
                     (long long)c);
            gbuf x = gb_new(n, mis), w = gb_new(c, mis), b = gb_new(c, mis);
            gbuf o = gb_new(n, mis), m = gb_new(rows, mis), rs = gb_new(rows, mis);
            gbuf orf = gb_new(n, 0), mrf = gb_new(rows, 0), rsrf = gb_new(rows, 0);
            gb_fill(&x, 11 + s, -1.5f, 2.5f);
            gb_fill(&w, 12 + s, 0.5f, 1.5f);
            gb_fill(&b, 13 + s, -0.5f, 0.5f);
            gb_nan(&o), gb_nan(&m), gb_nan(&rs);
            ks.layernorm_fwd(orf.p, mrf.p, rsrf.p, x.p, w.p, b.p, rows, c);
            kt.layernorm_fwd(o.p, m.p, rs.p, x.p, w.p, b.p, rows, c);
            double *tol = tol_new(n), *tm = tol_new(rows), *ts = tol_new(rows);
            /* mean: K mean|x|; rstd: K rstd (half the variance's relative error, plus the
             * sqrt and division); out = xhat w + b moves by |w| (rstd dmean + |xhat| drstd/rstd)
             * plus the affine step's roundings, all within K. */
            for (int64_t i = 0; i < rows; i++) {
                double ma = 0;
                for (int64_t j = 0; j < c; j++)
                    ma += fabs(x.p[i * c + j]);
                ma /= (double)c;
                tm[i] = K * ma;
                ts[i] = K * rsrf.p[i];
                for (int64_t j = 0; j < c; j++) {
                    double xhat = (x.p[i * c + j] - mrf.p[i]) * rsrf.p[i];
                    tol[i * c + j] =
                        K * (fabs(w.p[j]) * (rsrf.p[i] * ma + fabs(xhat)) + fabs(b.p[j]));
                }
            }
            wo = fmax(wo, expect_close(ctx, "layernorm_fwd out", o.p, orf.p, tol, n));
            wm = fmax(wm, expect_close(ctx, "layernorm_fwd mean", m.p, mrf.p, tm, rows));
            ws = fmax(ws, expect_close(ctx, "layernorm_fwd rstd", rs.p, rsrf.p, ts, rows));
            gb_guard_ok(&o, ctx, "out"), gb_guard_ok(&m, ctx, "mean"), gb_guard_ok(&rs, ctx, "rstd");

            /* backward from the reference's mean / rstd; gradients start non-zero */
            gbuf d = gb_new(n, mis), dx = gb_new(n, mis), dw = gb_new(c, mis), db = gb_new(c, mis);
            gbuf dxr = gb_new(n, 0), dwr = gb_new(c, 0), dbr = gb_new(c, 0);
            gb_fill(&d, 14 + s, -1, 1);
            gb_fill(&dx, 15 + s, -1, 1), gb_fill(&dw, 16 + s, -1, 1), gb_fill(&db, 17 + s, -1, 1);
            gb_copy(&dxr, &dx), gb_copy(&dwr, &dw), gb_copy(&dbr, &db);
            double *tw = tol_new(c), *tb = tol_new(c);
            /* dx = rstd (dn - A - xhat B) with A = mean(dn), B = mean(dn xhat): the two row
             * sums are within K of their magnitudes; dw, db are recursive sums over rows
             * (2 (rows + 1) u sum|terms|, as bias_bwd). */
            for (int64_t j = 0; j < c; j++) {
                tw[j] = fabs(dw.p[j]);
                tb[j] = fabs(db.p[j]);
            }
            for (int64_t i = 0; i < rows; i++) {
                double A = 0, B = 0, s_ = rsrf.p[i];
                for (int64_t j = 0; j < c; j++) {
                    double xhat = (x.p[i * c + j] - mrf.p[i]) * s_, dn = w.p[j] * d.p[i * c + j];
                    A += fabs(dn);
                    B += fabs(dn * xhat);
                    tw[j] += fabs(xhat * d.p[i * c + j]);
                    tb[j] += fabs(d.p[i * c + j]);
                }
                A /= (double)c, B /= (double)c;
                for (int64_t j = 0; j < c; j++) {
                    double xhat = (x.p[i * c + j] - mrf.p[i]) * s_, dn = w.p[j] * d.p[i * c + j];
                    tol[i * c + j] = K * s_ * (fabs(dn) + A + fabs(xhat) * B) +
                                     4 * U_RND * fabs(dx.p[i * c + j]);
                }
            }
            for (int64_t j = 0; j < c; j++) {
                tw[j] *= 2.0 * (double)(rows + 1) * U_RND;
                tb[j] *= 2.0 * (double)(rows + 1) * U_RND;
            }
            ks.layernorm_bwd(dxr.p, dwr.p, dbr.p, d.p, x.p, w.p, mrf.p, rsrf.p, rows, c);
            kt.layernorm_bwd(dx.p, dw.p, db.p, d.p, x.p, w.p, mrf.p, rsrf.p, rows, c);
            wdx = fmax(wdx, expect_close(ctx, "layernorm_bwd dx", dx.p, dxr.p, tol, n));
            wdw = fmax(wdw, expect_close(ctx, "layernorm_bwd dw", dw.p, dwr.p, tw, c));
            wdb = fmax(wdb, expect_close(ctx, "layernorm_bwd db", db.p, dbr.p, tb, c));
            gb_guard_ok(&dx, ctx, "dx"), gb_guard_ok(&dw, ctx, "dw"), gb_guard_ok(&db, ctx, "db");
            free(tol), free(tm), free(ts), free(tw), free(tb);
            gb_free(&x), gb_free(&w), gb_free(&b), gb_free(&o), gb_free(&m), gb_free(&rs);
            gb_free(&orf), gb_free(&mrf), gb_free(&rsrf), gb_free(&d), gb_free(&dx);
            gb_free(&dw), gb_free(&db), gb_free(&dxr), gb_free(&dwr), gb_free(&dbr);
        }
        printf("%s: worst |diff| / tol vs scalar: layernorm out %.3f mean %.3f rstd %.3f, "
               "dx %.3f dw %.3f db %.3f\n", kt.name, wo, wm, ws, wdx, wdw, wdb);
    }
}
END_TEST

START_TEST(kernels_softmax_match_scalar)
{
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_kernels ks = table_of(PARLM_ISA_SCALAR);
    for (int ii = 0; ii < ni; ii++) {
        if (isas[ii] == PARLM_ISA_SCALAR)
            continue;
        parlm_kernels kt = table_of(isas[ii]);
        double wf = 0, wb = 0;
        for (int s = 0; s < NSHAPES; s++) {
            int64_t rows, c;
            shape(s, &rows, &c);
            int64_t n = rows * c;
            int mis = s & 1;
            double K = k_rows(c) * U_RND;
            char ctx[96];
            snprintf(ctx, sizeof ctx, "%s softmax rows=%lld c=%lld", kt.name, (long long)rows,
                     (long long)c);
            gbuf x = gb_new(n, mis), o = gb_new(n, mis), r = gb_new(n, 0);
            gb_fill(&x, 21 + s, -8, 8);
            if (rows > 2) /* a causal-style mask on row 1: entries past the first half are -inf */
                for (int64_t j = c / 2 + 1; j < c; j++)
                    x.p[c + j] = -INFINITY;
            gb_nan(&o);
            ks.softmax_fwd(r.p, x.p, rows, c);
            kt.softmax_fwd(o.p, x.p, rows, c);
            double *tol = tol_new(n);
            /* out = e_j / sum: exp within ~1.3 ulp on both sides (SIMD measured, libm),
             * the sum of c positive terms within K, two more roundings: K |out|; FLT_MIN
             * absolute for results in exp's subnormal range. */
            for (int64_t i = 0; i < n; i++)
                tol[i] = K * fabs(r.p[i]) + FLT_MIN;
            wf = fmax(wf, expect_close(ctx, "softmax_fwd out", o.p, r.p, tol, n));
            gb_guard_ok(&o, ctx, "out");

            gbuf dy = gb_new(n, mis), dx = gb_new(n, mis), dxr = gb_new(n, 0);
            gb_fill(&dy, 22 + s, -1, 1);
            gb_fill(&dx, 23 + s, -1, 1);
            gb_copy(&dxr, &dx);
            /* dx += y (dy - dot): dot is a sum of c terms (K sum|y dy|), then the product
             * and the accumulation (FMA or not: up to 2 u |dx| per side) */
            for (int64_t i = 0; i < rows; i++) {
                double sa = 0;
                for (int64_t j = 0; j < c; j++)
                    sa += fabs(r.p[i * c + j] * dy.p[i * c + j]);
                for (int64_t j = 0; j < c; j++) {
                    int64_t e = i * c + j;
                    tol[e] = K * fabs(r.p[e]) * (sa + fabs(dy.p[e])) + 4 * U_RND * fabs(dx.p[e]);
                }
            }
            ks.softmax_bwd(dxr.p, r.p, dy.p, rows, c);
            kt.softmax_bwd(dx.p, r.p, dy.p, rows, c);
            wb = fmax(wb, expect_close(ctx, "softmax_bwd dx", dx.p, dxr.p, tol, n));
            gb_guard_ok(&dx, ctx, "dx");
            free(tol);
            gb_free(&x), gb_free(&o), gb_free(&r), gb_free(&dy), gb_free(&dx), gb_free(&dxr);
        }
        printf("%s: worst |diff| / tol vs scalar: softmax_fwd %.3f, softmax_bwd %.3f\n", kt.name,
               wf, wb);
    }
}
END_TEST

/* The SIMD tables start as a copy of the scalar one: an entry left behind would make the
 * comparisons above vacuous. */
START_TEST(simd_tables_override_every_eltwise_entry)
{
    parlm_kernels ks = table_of(PARLM_ISA_SCALAR);
    int checked = 0;
    for (int i = 1; i < PARLM_ISA_COUNT; i++) {
        if (!parlm_isa_supported((parlm_isa)i))
            continue;
        parlm_kernels kt = table_of((parlm_isa)i);
        const char *nm = kt.name;
        ck_assert_msg(kt.add != ks.add, "%s: add is the scalar kernel", nm);
        ck_assert_msg(kt.bias_fwd != ks.bias_fwd, "%s: bias_fwd is the scalar kernel", nm);
        ck_assert_msg(kt.bias_bwd != ks.bias_bwd, "%s: bias_bwd is the scalar kernel", nm);
        ck_assert_msg(kt.gelu_fwd != ks.gelu_fwd, "%s: gelu_fwd is the scalar kernel", nm);
        ck_assert_msg(kt.gelu_bwd != ks.gelu_bwd, "%s: gelu_bwd is the scalar kernel", nm);
        ck_assert_msg(kt.layernorm_fwd != ks.layernorm_fwd, "%s: layernorm_fwd is scalar", nm);
        ck_assert_msg(kt.layernorm_bwd != ks.layernorm_bwd, "%s: layernorm_bwd is scalar", nm);
        ck_assert_msg(kt.softmax_fwd != ks.softmax_fwd, "%s: softmax_fwd is scalar", nm);
        ck_assert_msg(kt.softmax_bwd != ks.softmax_bwd, "%s: softmax_bwd is scalar", nm);
        checked++;
    }
#if defined(__x86_64__)
    if (checked == 0)
        printf("note: no SIMD kernel set runs on this CPU; nothing to check\n");
#endif
}
END_TEST

/* ---- accuracy against double precision (every set, the reference included) ----------------- */

/* softmax of [x, 0] is 1 / (1 + exp(-x)) and 1 / (1 + exp(x)): a sweep over x in
 * [-87, 87] measures exp over its normal range through the kernels. */
START_TEST(softmax_exp_accuracy_vs_double)
{
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    const int64_t rows = 65537;
    float *x = tu_alloc_nan(2 * rows), *o = tu_alloc_nan(2 * rows);
    for (int64_t i = 0; i < rows; i++) {
        x[2 * i] = (float)(-87.0 + 174.0 * (double)i / (double)(rows - 1));
        x[2 * i + 1] = 0.0f;
    }
    for (int ii = 0; ii < ni; ii++) {
        parlm_kernels k = table_of(isas[ii]);
        k.softmax_fwd(o, x, rows, 2);
        double worst = 0;
        for (int64_t i = 0; i < 2 * rows; i++) {
            double xi = x[2 * (i / 2)], ref = i % 2 == 0 ? 1 / (1 + exp(-xi)) : 1 / (1 + exp(xi));
            worst = fmax(worst, fabs(o[i] - ref) / ref);
        }
        /* exp within 1.27 ulp (<= 2.6 u; measured exhaustively for the SIMD sets, libm
         * expf is tighter) + the sum, the reciprocal and the product: < 6 u. Bound 8 u. */
        printf("%s: softmax([x, 0]) max relative error vs double %.3g (%.2f u)\n", k.name, worst,
               worst / U_RND);
        ck_assert_msg(worst <= 8 * U_RND, "%s: softmax relative error %.3g > 8u", k.name, worst);
    }
    parlm_free(x), parlm_free(o);
}
END_TEST

/* GELU over x in [-9, 9] against the double tanh form. */
START_TEST(gelu_accuracy_vs_double)
{
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    const int64_t n = 100001;
    float *x = tu_alloc_nan(n), *o = tu_alloc_nan(n), *dx = tu_alloc_nan(n), *one = tu_alloc_nan(n);
    for (int64_t i = 0; i < n; i++) {
        x[i] = (float)(-9.0 + 18.0 * (double)i / (double)(n - 1));
        one[i] = 1.0f;
    }
    for (int ii = 0; ii < ni; ii++) {
        parlm_kernels k = table_of(isas[ii]);
        int simd = isas[ii] != PARLM_ISA_SCALAR;
        k.gelu_fwd(o, x, n);
        memset(dx, 0, (size_t)n * 4);
        k.gelu_bwd(dx, x, one, n);
        double worst_f = 0, worst_b = 0;
        for (int64_t i = 0; i < n; i++) {
            double xv = x[i], u = 0.7978845608028654 * (xv + 0.044715 * xv * xv * xv);
            double sig = 1 / (1 + exp(-2 * u)), ref = gelu_d(xv), d = fabs(o[i] - ref);
            /* the float argument u carries ~4 u relative error, which moves log(sigma) by
             * 2 (1 - sigma) |du|; the SIMD sigma adds 3.2 ulp (measured) + 2 roundings: a
             * relative bound. The reference's 0.5 (1 + tanhf) loses relative accuracy where
             * tanh -> -1; its error is absolute, ~1.5 u in sigma. */
            double tol = fabs(ref) * (8 * U_RND + 8 * U_RND * fabs(u) * (1 - sig)) +
                         (simd ? 0 : 1.5 * U_RND * fabs(xv));
            worst_f = fmax(worst_f, d / tol);
            /* gelu' in [-0.17, 1.13]: the reference's 1 - tanh^2 has absolute error ~2.4e-7,
             * scaled by 0.5 |x| u'; the SIMD form is relative per term. Bound as above. */
            double du = 0.7978845608 * (1 + 0.134145 * xv * xv);
            double tb = 1e-6 * (1 + fabs(xv) * du) * 0.5;
            worst_b = fmax(worst_b, fabs(dx[i] - gelu_grad_d(xv)) / tb);
        }
        printf("%s: gelu vs double: worst |diff| / tol fwd %.3f, bwd %.3f\n", k.name, worst_f,
               worst_b);
        ck_assert_msg(worst_f <= 1.0, "%s: gelu_fwd error / tol %.3f", k.name, worst_f);
        ck_assert_msg(worst_b <= 1.0, "%s: gelu_bwd error / tol %.3f", k.name, worst_b);
    }
    parlm_free(x), parlm_free(o), parlm_free(dx), parlm_free(one);
}
END_TEST

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

/* ---- finite differences ------------------------------------------------------------------------ */

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
static double loss_float(const problem *P, float *out)
{
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
static double loss_double(const problem *P, double *const q[3])
{
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
static void grads_public(const problem *P, double *grad[3])
{
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
static double dependent_scale(const problem *P, const float *out, int k, int64_t i)
{
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
 * double forward, against the public backward; for every op and every kernel set. */
START_TEST(backward_matches_finite_differences)
{
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    const float h = 1e-3f;
    for (int ii = 0; ii < ni; ii++) {
        ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
        const char *nm = parlm_isa_name(isas[ii]);
        for (int op = 0; op < OP_COUNT; op++) {
            problem P = problem_new((enum op)op, 40 + (uint64_t)op);
            double *grad[3] = {NULL, NULL, NULL}, *q[3] = {NULL, NULL, NULL};
            float *out = tu_alloc_nan(P.n), *tmp = tu_alloc_nan(P.n);
            for (int k = 0; k < 3; k++)
                if (P.np[k]) {
                    grad[k] = tol_new(P.np[k]);
                    q[k] = tol_new(P.np[k]);
                    for (int64_t i = 0; i < P.np[k]; i++)
                        q[k][i] = P.p[k][i];
                }
            grads_public(&P, grad);
            loss_float(&P, out);
            /* output rounding, relative: elementwise ops a few roundings plus the 3.2 ulp
             * of sigma (K = 16); row ops k_rows(C). */
            double K = (op == OP_LAYERNORM || op == OP_SOFTMAX) ? k_rows(P.c) : 16.0;
            double worst_f = 0, worst_d = 0, gmax = 0;
            for (int k = 0; k < 3; k++)
                for (int64_t i = 0; i < P.np[k]; i++)
                    gmax = fmax(gmax, fabs(grad[k][i]));
            for (int k = 0; k < 3; k++)
                for (int64_t i = 0; i < P.np[k]; i++) {
                    float v = P.p[k][i];
                    P.p[k][i] = v + h;
                    double xp = P.p[k][i], Lp = loss_float(&P, tmp);
                    P.p[k][i] = v - h;
                    double xm = P.p[k][i], Lm = loss_float(&P, tmp);
                    P.p[k][i] = v;
                    double fd = (Lp - Lm) / (xp - xm), an = grad[k][i];
                    /* Float: L+- each carry <= K u S of rounding (S = sum |out r| over the
                     * outputs this input feeds), so the difference quotient carries
                     * 2 K u S / (2h); taken twice for margin. Truncation h^2/6 |L'''| and the
                     * backward's own rounding stay under 1e-3 |an| + 1e-6. */
                    double tf = 1e-3 * fabs(an) + 1e-6 +
                                4 * K * U_RND * dependent_scale(&P, out, k, i) / (xp - xm);
                    worst_f = fmax(worst_f, fabs(fd - an) / tf);
                    /* Double: rounding noise ~1e-13 is negligible; truncation h^2/6 |L'''|
                     * is ~2e-7 |L'''| with |L'''| = O(10) for these smooth ops on O(1)
                     * inputs; the float backward's rounding is K u of the gradient scale.
                     * Bound 1e-5 (|an| + max|an|). */
                    double qv = q[k][i];
                    q[k][i] = qv + 1e-3;
                    double Dp = loss_double(&P, q);
                    q[k][i] = qv - 1e-3;
                    double Dm = loss_double(&P, q);
                    q[k][i] = qv;
                    double fdd = (Dp - Dm) / 2e-3;
                    worst_d = fmax(worst_d, fabs(fdd - an) / (1e-5 * (fabs(an) + gmax)));
                }
            printf("%s %s: worst |fd - backward| / tol: float public %.3f, double naive %.3f\n",
                   nm, op_names[op], worst_f, worst_d);
            ck_assert_msg(worst_f <= 1.0, "%s %s: float finite differences off (%.3f x tol)", nm,
                          op_names[op], worst_f);
            ck_assert_msg(worst_d <= 1.0, "%s %s: double finite differences off (%.3f x tol)",
                          nm, op_names[op], worst_d);
            for (int k = 0; k < 3; k++)
                free(grad[k]), free(q[k]);
            parlm_free(out), parlm_free(tmp);
            problem_free(&P);
        }
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

static void expect_einval(parlm_status st, const char *what)
{
    ck_assert_msg(st == PARLM_EINVAL, "%s: got status %d, want PARLM_EINVAL", what, (int)st);
    ck_assert_msg(parlm_last_error()[0] != '\0', "%s: no error message", what);
    parlm_clear_error();
}

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
    TCase *tc = tcase_create("kernels_vs_scalar");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, kernels_add_match_scalar);
    tcase_add_test(tc, kernels_gelu_match_scalar);
    tcase_add_test(tc, kernels_bias_match_scalar);
    tcase_add_test(tc, kernels_layernorm_match_scalar);
    tcase_add_test(tc, kernels_softmax_match_scalar);
    tcase_add_test(tc, simd_tables_override_every_eltwise_entry);
    suite_add_tcase(s, tc);
    tc = tcase_create("accuracy_vs_double");
    tcase_add_test(tc, softmax_exp_accuracy_vs_double);
    tcase_add_test(tc, gelu_accuracy_vs_double);
    suite_add_tcase(s, tc);
    tc = tcase_create("special_values");
    tcase_add_test(tc, softmax_special_values);
    tcase_add_test(tc, gelu_special_values);
    suite_add_tcase(s, tc);
    tc = tcase_create("gradients");
    tcase_add_test(tc, backward_matches_finite_differences);
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

int main(void)
{
    SRunner *sr = srunner_create(ops_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
