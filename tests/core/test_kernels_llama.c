/* tests/core/test_kernels_llama.c — simd/common/llama.c: each kernel set's RMSNorm, RoPE and
 * SwiGLU kernels (forward and backward) against the scalar set on awkward shapes (1, 7, 17,
 * 127, 768 + 3: vector tails), inputs misaligned by one float and outputs followed by
 * sentinels; and every SIMD table overriding all six entries. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define GUARD 32

static const int64_t CS[] = {1, 7, 17, 127, 771};
static const int64_t RS[] = {1, 3, 17};
#define NC ((int)(sizeof CS / sizeof CS[0]))
#define NR ((int)(sizeof RS / sizeof RS[0]))

/* n floats filled in [lo, hi), 64-byte aligned + 4 bytes, or + 8 bytes (mis = 1: a vector
 * load of them is misaligned either way, by one float more when mis), followed by GUARD
 * sentinels. base[0] records mis for unbuf. */
static float *buf(int64_t n, int mis, uint64_t seed, float lo, float hi)
{
    float *b = parlm_alloc((size_t)(n + 2 + GUARD), sizeof(float));
    ck_assert_ptr_nonnull(b);
    for (int64_t i = 0; i < n + 2 + GUARD; i++)
        b[i] = SENTINEL;
    b[0] = (float)mis;
    fill_range(b + 1 + mis, n, seed, lo, hi);
    return b + 1 + mis;
}

static float *clone(const float *src, int64_t n)
{
    float *b = buf(n, 0, 1, 0, 1);
    memcpy(b, src, (size_t)n * 4);
    return b;
}

static void guard_ok(const float *p, int64_t n, const char *ctx, const char *what)
{
    for (int i = 0; i < GUARD; i++)
        ck_assert_msg(p[n + i] == SENTINEL, "%s: write past the end of %s (+%d)", ctx, what, i);
}

/* frees a buf(): p[-1] is base[0] (0) or the sentinel base[1] before a misaligned one */
static void unbuf(float *p)
{
    parlm_free(p[-1] == SENTINEL ? p - 2 : p - 1);
}

/* the kernel sets to compare with scalar */
static int simd_sets(parlm_kernels *out)
{
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas), n = 0;
    for (int i = 0; i < ni; i++)
        if (isas[i] != PARLM_ISA_SCALAR)
            out[n++] = table_of(isas[i]);
    return n;
}

START_TEST(rmsnorm_matches_scalar)
{
    parlm_kernels ks = table_of(PARLM_ISA_SCALAR), sets[PARLM_ISA_COUNT];
    int ns = simd_sets(sets);
    for (int si = 0; si < ns; si++) {
        parlm_kernels kt = sets[si];
        double wo = 0, ws = 0, wdx = 0, wdw = 0;
        for (int ri = 0; ri < NR; ri++)
            for (int ci = 0; ci < NC; ci++) {
                int64_t rows = RS[ri], c = CS[ci], n = rows * c;
                int mis = (ri + ci) & 1;
                double K = k_rows(c) * U_RND;
                char ctx[96];
                snprintf(ctx, sizeof ctx, "%s rmsnorm rows=%lld c=%lld", kt.name, (long long)rows,
                         (long long)c);
                float *x = buf(n, mis, 11 + ci, -2.0f, 2.5f), *w = buf(c, mis, 12 + ci, 0.5f, 1.5f);
                float *o = buf(n, mis, 1, 0, 1), *rs = buf(rows, mis, 1, 0, 1);
                float *orf = buf(n, 0, 1, 0, 1), *rsrf = buf(rows, 0, 1, 0, 1);
                ks.rmsnorm_fwd(orf, rsrf, x, w, rows, c, 1e-5f);
                kt.rmsnorm_fwd(o, rs, x, w, rows, c, 1e-5f);
                double *tol = tol_new(n), *ts = tol_new(rows);
                /* rstd: half the relative error of the sum of squares (K), plus the sqrt and
                 * the division; out = x rstd w: that, plus two roundings per side. */
                for (int64_t i = 0; i < rows; i++) {
                    ts[i] = K * rsrf[i];
                    for (int64_t j = 0; j < c; j++)
                        tol[i * c + j] = (K + 4 * U_RND) * fabs(x[i * c + j] * rsrf[i] * w[j]);
                }
                wo = fmax(wo, expect_close_f(ctx, "rmsnorm_fwd out", o, orf, tol, n));
                ws = fmax(ws, expect_close_f(ctx, "rmsnorm_fwd rstd", rs, rsrf, ts, rows));
                guard_ok(o, n, ctx, "out"), guard_ok(rs, rows, ctx, "rstd");

                float *d = buf(n, mis, 14 + ci, -1, 1), *dx = buf(n, mis, 15 + ci, -1, 1);
                float *dw = buf(c, mis, 16 + ci, -1, 1), *dxr = clone(dx, n), *dwr = clone(dw, c);
                double *tw = tol_new(c);
                /* dx = rstd (dn - xhat B), B = mean(dn xhat) a sum of c terms (K of its
                 * magnitude); dw: recursive sums over rows, 2 (rows + 1) u sum|terms|; the
                 * accumulations round once (FMA) or twice per side. */
                for (int64_t j = 0; j < c; j++)
                    tw[j] = fabs(dw[j]);
                for (int64_t i = 0; i < rows; i++) {
                    double B = 0, s = rsrf[i];
                    for (int64_t j = 0; j < c; j++) {
                        double xh = x[i * c + j] * s;
                        B += fabs(w[j] * d[i * c + j] * xh);
                        tw[j] += fabs(xh * d[i * c + j]);
                    }
                    B /= (double)c;
                    for (int64_t j = 0; j < c; j++) {
                        double xh = x[i * c + j] * s;
                        tol[i * c + j] = K * s * (fabs(w[j] * d[i * c + j]) + fabs(xh) * B) +
                                         4 * U_RND * fabs(dx[i * c + j]);
                    }
                }
                for (int64_t j = 0; j < c; j++)
                    tw[j] *= 2.0 * (double)(rows + 1) * U_RND;
                ks.rmsnorm_bwd(dxr, dwr, d, x, w, rsrf, rows, c);
                kt.rmsnorm_bwd(dx, dw, d, x, w, rsrf, rows, c);
                wdx = fmax(wdx, expect_close_f(ctx, "rmsnorm_bwd dx", dx, dxr, tol, n));
                wdw = fmax(wdw, expect_close_f(ctx, "rmsnorm_bwd dw", dw, dwr, tw, c));
                guard_ok(dx, n, ctx, "dx"), guard_ok(dw, c, ctx, "dw");
                free(tol), free(ts), free(tw);
                unbuf(x), unbuf(w), unbuf(o), unbuf(rs), unbuf(orf), unbuf(rsrf);
                unbuf(d), unbuf(dx), unbuf(dw), unbuf(dxr), unbuf(dwr);
            }
        printf("%s: worst |diff| / tol vs scalar: rmsnorm out %.3f rstd %.3f, dx %.3f dw %.3f\n",
               kt.name, wo, ws, wdx, wdw);
    }
}
END_TEST

/* head sizes: even, with tails of 2, 6, 14 lanes and whole vectors */
static const int64_t HS[] = {2, 6, 18, 64, 128, 130};
#define NHS ((int)(sizeof HS / sizeof HS[0]))

START_TEST(rope_matches_scalar)
{
    parlm_kernels ks = table_of(PARLM_ISA_SCALAR), sets[PARLM_ISA_COUNT];
    int ns = simd_sets(sets);
    const int64_t Ts[] = {1, 17}, NHs[] = {1, 7};
    for (int si = 0; si < ns; si++) {
        parlm_kernels kt = sets[si];
        double wf = 0, wb = 0;
        for (int hi = 0; hi < NHS; hi++)
            for (int ti = 0; ti < 2; ti++)
                for (int ni = 0; ni < 2; ni++) {
                    int64_t hs = HS[hi], T = Ts[ti], nh = NHs[ni], ld = nh * hs + 3;
                    int64_t n = (T - 1) * ld + nh * hs, npos = T + 5;
                    int mis = (hi + ti + ni) & 1;
                    char ctx[96];
                    snprintf(ctx, sizeof ctx, "%s rope T=%lld nh=%lld hs=%lld", kt.name,
                             (long long)T, (long long)nh, (long long)hs);
                    float *cs = buf(npos * hs, 0, 1, 0, 1), *sn = buf(npos * hs, 0, 1, 0, 1);
                    ck_assert_int_eq(parlm_rope_table(cs, sn, npos, hs, 10000.0, 1.0), PARLM_OK);
                    const float *c5 = cs + 5 * hs, *s5 = sn + 5 * hs; /* positions 5 .. */
                    float *x = buf(n, mis, 31 + hi, -3, 3), *xr = clone(x, n), *x0 = clone(x, n);
                    double *tol = tol_new(n);
                    /* each output is a c + b s of its pair (a, b): three roundings (scalar)
                     * or two (FMA) per side, |c|, |s| <= 1: 8 u (|a| + |b|) */
                    for (int64_t i = 0; i < n; i++) {
                        /* the partner; pairs start at even offsets of a head */
                        int64_t pr = ((i % ld) % hs) % 2 ? i - 1 : i + 1;
                        tol[i] =
                            (i % ld) < nh * hs ? 8 * U_RND * (fabs(x0[i]) + fabs(x0[pr])) : 0.0;
                    }
                    ks.rope_fwd(xr, T, nh, hs, ld, c5, s5);
                    kt.rope_fwd(x, T, nh, hs, ld, c5, s5);
                    wf = fmax(wf, expect_close_f(ctx, "rope_fwd x", x, xr, tol, n));
                    guard_ok(x, n, ctx, "x");
                    memcpy(x, x0, (size_t)n * 4), memcpy(xr, x0, (size_t)n * 4);
                    ks.rope_bwd(xr, T, nh, hs, ld, c5, s5);
                    kt.rope_bwd(x, T, nh, hs, ld, c5, s5);
                    wb = fmax(wb, expect_close_f(ctx, "rope_bwd x", x, xr, tol, n));
                    guard_ok(x, n, ctx, "x");
                    /* the padding between rows (ld > nh hs) is never touched */
                    for (int64_t t = 0; t + 1 < T; t++)
                        for (int64_t j = nh * hs; j < ld; j++)
                            ck_assert_msg(x[t * ld + j] == x0[t * ld + j], "%s: pad written", ctx);
                    free(tol);
                    unbuf(cs), unbuf(sn), unbuf(x), unbuf(xr), unbuf(x0);
                }
        printf("%s: worst |diff| / tol vs scalar: rope fwd %.3f bwd %.3f\n", kt.name, wf, wb);
    }
}
END_TEST

START_TEST(swiglu_matches_scalar)
{
    parlm_kernels ks = table_of(PARLM_ISA_SCALAR), sets[PARLM_ISA_COUNT];
    int ns = simd_sets(sets);
    for (int si = 0; si < ns; si++) {
        parlm_kernels kt = sets[si];
        double wf = 0, wg = 0, wu = 0;
        for (int ri = 0; ri < NR; ri++)
            for (int ci = 0; ci < NC; ci++) {
                int64_t rows = RS[ri], h = CS[ci], n = rows * h;
                int mis = (ri + ci) & 1;
                char ctx[96];
                snprintf(ctx, sizeof ctx, "%s swiglu rows=%lld h=%lld", kt.name, (long long)rows,
                         (long long)h);
                float *gu = buf(2 * n, mis, 41 + ci, -8, 8), *o = buf(n, mis, 1, 0, 1);
                float *orf = buf(n, 0, 1, 0, 1);
                ks.swiglu_fwd(orf, gu, rows, h);
                kt.swiglu_fwd(o, gu, rows, h);
                double *tol = tol_new(2 * n);
                /* out = g sigma(g) u: sigma = 1 / (1 + e) with e within 1.3 ulp (SIMD exp,
                 * measured; libm expf tighter), then the add, division and two products: a
                 * relative error < 8 u per side. Bound 16 u |out|. */
                for (int64_t i = 0; i < n; i++)
                    tol[i] = 16 * U_RND * fabs(orf[i]) + FLT_MIN;
                wf = fmax(wf, expect_close_f(ctx, "swiglu_fwd out", o, orf, tol, n));
                guard_ok(o, n, ctx, "out");

                float *d = buf(n, mis, 43 + ci, -1, 1), *dgu = buf(2 * n, mis, 44 + ci, -1, 1);
                float *dgur = clone(dgu, 2 * n);
                /* dup = d g sigma: 16 u relative, as out. dgate = d u sigma (1 + g (1 - sigma)):
                 * 1 - sigma carries sigma's absolute error (<= 8 u), times |g|; plus the
                 * accumulation's rounding (2 u |dgu| per side). */
                for (int64_t r = 0; r < rows; r++)
                    for (int64_t j = 0; j < h; j++) {
                        double g = gu[r * 2 * h + j], u = gu[r * 2 * h + h + j], dv = d[r * h + j];
                        double sg = 1 / (1 + exp(-g));
                        tol[r * 2 * h + j] =
                            16 * U_RND * fabs(dv * u * sg) * (fabs(1 + g * (1 - sg)) + fabs(g)) +
                            4 * U_RND * fabs(dgu[r * 2 * h + j]) + FLT_MIN;
                        tol[r * 2 * h + h + j] = 16 * U_RND * fabs(dv * g * sg) +
                                                 4 * U_RND * fabs(dgu[r * 2 * h + h + j]) + FLT_MIN;
                    }
                ks.swiglu_bwd(dgur, d, gu, rows, h);
                kt.swiglu_bwd(dgu, d, gu, rows, h);
                for (int64_t r = 0; r < rows; r++) {
                    wg = fmax(wg, expect_close_f(ctx, "swiglu_bwd dgate", dgu + r * 2 * h,
                                                 dgur + r * 2 * h, tol + r * 2 * h, h));
                    wu = fmax(wu, expect_close_f(ctx, "swiglu_bwd dup", dgu + r * 2 * h + h,
                                                 dgur + r * 2 * h + h, tol + r * 2 * h + h, h));
                }
                guard_ok(dgu, 2 * n, ctx, "dgu");
                free(tol);
                unbuf(gu), unbuf(o), unbuf(orf), unbuf(d), unbuf(dgu), unbuf(dgur);
            }
        printf("%s: worst |diff| / tol vs scalar: swiglu out %.3f, dgate %.3f dup %.3f\n", kt.name,
               wf, wg, wu);
    }
}
END_TEST

/* The SIMD tables start as a copy of the scalar one: an entry left behind would make the
 * comparisons above vacuous. */
START_TEST(simd_tables_override_every_llama_entry)
{
    parlm_kernels ks = table_of(PARLM_ISA_SCALAR), sets[PARLM_ISA_COUNT];
    int ns = simd_sets(sets);
    for (int si = 0; si < ns; si++) {
        parlm_kernels kt = sets[si];
        const char *nm = kt.name;
        ck_assert_msg(kt.rmsnorm_fwd != ks.rmsnorm_fwd, "%s: rmsnorm_fwd is scalar", nm);
        ck_assert_msg(kt.rmsnorm_bwd != ks.rmsnorm_bwd, "%s: rmsnorm_bwd is scalar", nm);
        ck_assert_msg(kt.rope_fwd != ks.rope_fwd, "%s: rope_fwd is scalar", nm);
        ck_assert_msg(kt.rope_bwd != ks.rope_bwd, "%s: rope_bwd is scalar", nm);
        ck_assert_msg(kt.swiglu_fwd != ks.swiglu_fwd, "%s: swiglu_fwd is scalar", nm);
        ck_assert_msg(kt.swiglu_bwd != ks.swiglu_bwd, "%s: swiglu_bwd is scalar", nm);
        ck_assert_ptr_nonnull(kt.rope_fwd);
    }
    if (ns == 0)
        printf("note: no SIMD kernel set runs on this CPU; nothing to check\n");
}
END_TEST

static Suite *kernels_llama_suite(void)
{
    Suite *s = suite_create("llama kernels");
    TCase *tc = tcase_create("kernels_vs_scalar");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, rmsnorm_matches_scalar);
    tcase_add_test(tc, rope_matches_scalar);
    tcase_add_test(tc, swiglu_matches_scalar);
    tcase_add_test(tc, simd_tables_override_every_llama_entry);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(kernels_llama_suite());
}
