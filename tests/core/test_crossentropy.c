/* tests/core/test_crossentropy.c — the cross-entropy of lib/core/nn.c on every kernel set:
 * against a naive double loss (with logits that overflow exp without the max shift), and
 * its vocab-parallel form (per-slice partials combined) against the full rows and finite
 * differences. Bounds: a float sum of V exponentials is within (V + 8) u of exact. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* ---- cross-entropy --------------------------------------------------------------------------- */

START_TEST(crossentropy_matches_naive_double)
{
    static const int Vs[] = {1, 2, 7, 255, 50257};
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    const int64_t N = 5;
    for (int vi = 0; vi < 5; vi++)
        for (int big = 0; big < 2; big++) {
            int V = Vs[vi], Vp = V + 3 + (V > 1000 ? 44 : 0); /* 50257 -> 50304, as GPT-2 */
            int64_t nl = N * Vp;
            float *x = tu_alloc_nan(nl), *g = tu_alloc_nan(nl), *gi = tu_alloc_nan(nl);
            float *loss = tu_alloc_nan(N), *lse = tu_alloc_nan(N), dloss[5];
            int32_t tgt[5];
            /* big: logits in [-80, 80] (exp overflows float without the max shift) */
            fill_range(x, nl, 900 + vi * 2 + big, big ? -80.0f : -4.0f, big ? 80.0f : 4.0f);
            for (int64_t r = 0; r < N; r++) {
                tgt[r] = (int32_t)((r * 7919 + 13) % V);
                dloss[r] = (float)(r - 2) * 0.375f; /* per row, one of them 0 */
            }
            tgt[N - 1] = V - 1; /* the last logit is the row's max: a lost tail shows */
            x[(N - 1) * Vp + V - 1] = big ? 90.0f : 8.0f;
            /* reference, and bounds: the float sum of V exponentials is within
             * (V + 8) u of its exact value (deterministic: n u bounds any order of
             * summation), so |d lse| <= (V + 8) u + 2 u |lse|; then
             * dlogit_j = dloss (p_j - [j = t]) with p_j = exp(x_j - lse) carrying relative
             * error |d lse| + 2 u (1 + |x_j - lse|). */
            double rl[5], rlse[5], tl[5], tlse[5];
            double *rg = xmalloc((size_t)nl * sizeof(double));
            double *tg = xmalloc((size_t)nl * sizeof(double));
            for (int64_t r = 0; r < N; r++) {
                const float *xr = x + r * Vp;
                double m = -INFINITY, s = 0;
                for (int j = 0; j < V; j++)
                    m = fmax(m, xr[j]);
                for (int j = 0; j < V; j++)
                    s += exp(xr[j] - m);
                rlse[r] = m + log(s);
                rl[r] = rlse[r] - xr[tgt[r]];
                double el = (V + 8) * U_RND + 2 * U_RND * fabs(rlse[r]);
                tlse[r] = el;
                tl[r] = el + 2 * U_RND * (fabs(rl[r]) + fabs(xr[tgt[r]]));
                for (int j = 0; j < Vp; j++) {
                    int64_t at = r * Vp + j;
                    if (j >= V) {
                        rg[at] = tg[at] = 0; /* padding: exactly 0 */
                        continue;
                    }
                    double p = exp(xr[j] - rlse[r]);
                    rg[at] = dloss[r] * (p - (j == tgt[r]));
                    tg[at] = fabs(dloss[r]) * (p * (el + 4 * U_RND * (1 + fabs(xr[j] - rlse[r]))) +
                                               2 * U_RND * (1 + p));
                }
            }
            for (int ii = 0; ii < ni; ii++) {
                ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
                char ctx[96];
                snprintf(ctx, sizeof ctx, "%s V=%d Vp=%d%s", parlm_isa_name(isas[ii]), V, Vp,
                         big ? " +-80" : "");
                for (int64_t r = 0; r < N; r++)
                    loss[r] = lse[r] = NAN;
                ck_assert_int_eq(parlm_crossentropy_forward(loss, lse, x, tgt, N, V, Vp), PARLM_OK);
                expect_close(ctx, "loss", loss, rl, tl, N);
                expect_close(ctx, "lse", lse, rlse, tlse, N);
                for (int64_t i = 0; i < nl; i++)
                    g[i] = NAN; /* dlogits is written, padding included */
                ck_assert_int_eq(parlm_crossentropy_backward(g, x, tgt, lse, dloss, N, V, Vp),
                                 PARLM_OK);
                expect_close(ctx, "dlogits", g, rg, tg, nl);
                for (int64_t r = 0; r < N; r++)
                    for (int j = V; j < Vp; j++)
                        ck_assert_msg(g[r * Vp + j] == 0.0f && !signbit(g[r * Vp + j]),
                                      "%s: padding dlogits[%lld][%d] = %g", ctx, (long long)r, j,
                                      (double)g[r * Vp + j]);
                for (int64_t i = 0; i < nl; i++)
                    ck_assert_msg(isfinite(g[i]), "%s: dlogits[%lld] not finite", ctx,
                                  (long long)i);
                /* in place: the same kernel reading each logit before writing it */
                memcpy(gi, x, (size_t)nl * sizeof(float));
                ck_assert_int_eq(parlm_crossentropy_backward(gi, gi, tgt, lse, dloss, N, V, Vp),
                                 PARLM_OK);
                ck_assert_msg(memcmp(gi, g, (size_t)nl * sizeof(float)) == 0,
                              "%s: in place differs from out of place", ctx);
            }
            free(rg), free(tg);
            parlm_free(x), parlm_free(g), parlm_free(gi), parlm_free(loss), parlm_free(lse);
        }
    parlm_isa_select(saved);
}
END_TEST

/* ---- vocab-parallel cross-entropy -------------------------------------------------------------
 * The full vocabulary (N, Vp) split into ns column slices of Vp/ns, as tensor parallelism
 * holds it: the per-slice partials, gathered in slice order and combined, against
 * parlm_crossentropy_forward/backward on the whole rows. */

/* logits (N, Vp) -> the ns slices packed one after another, each (N, Vp/ns) */
static void split_cols(float *dst, const float *src, int64_t N, int Vp, int ns)
{
    int Vs = Vp / ns;
    for (int s = 0; s < ns; s++)
        for (int64_t r = 0; r < N; r++)
            memcpy(dst + ((int64_t)s * N + r) * Vs, src + r * Vp + (int64_t)s * Vs,
                   (size_t)Vs * sizeof(float));
}

/* losses and lse through the vocab-parallel ops; part scratch (ns, N, 2) */
static void vp_forward(float *loss, float *lse, const float *sl, const int32_t *tgt, int64_t N,
                       int V, int Vp, int ns, float *part)
{
    int Vs = Vp / ns;
    for (int s = 0; s < ns; s++)
        ck_assert_int_eq(parlm_crossentropy_vp_partial(part + (int64_t)s * N * 2,
                                                       sl + (int64_t)s * N * Vs, tgt, N, s * Vs,
                                                       Vs, V),
                         PARLM_OK);
    ck_assert_int_eq(parlm_crossentropy_vp_combine(loss, lse, part, N, ns), PARLM_OK);
}

START_TEST(crossentropy_vocab_parallel_matches_full)
{
    static const int64_t Ns[] = {1, 7, 17, 127};
    static const int Vv[] = {1, 5, 17, 127, 1000};
    for (int ni = 0; ni < 4; ni++)
        for (int vi = 0; vi < 5; vi++)
            for (int ns = 1; ns <= 4; ns++) {
                int64_t N = Ns[ni];
                int V = Vv[vi];
                /* padding up to a multiple of 16 ns (at least one padded column when
                 * ns > 1): V = 5 over 4 slices leaves two slices of padding only */
                int Vp = (V + 16 * ns) / (16 * ns) * (16 * ns), Vs = Vp / ns;
                int64_t nl = N * Vp;
                float *x = tu_alloc_nan(nl), *sl = tu_alloc_nan(nl), *g = tu_alloc_nan(nl);
                float *gs = tu_alloc_nan(nl), *gsplit = tu_alloc_nan(nl);
                float *loss = tu_alloc_nan(N), *lse = tu_alloc_nan(N);
                float *vloss = tu_alloc_nan(N), *vlse = tu_alloc_nan(N);
                float *part = tu_alloc_nan(N * 2 * ns), *dloss = tu_alloc_nan(N);
                int32_t *tgt = xmalloc((size_t)N * sizeof(int32_t));
                fill_range(x, nl, 3000 + ni * 40 + vi * 4 + ns, -6.0f, 6.0f);
                for (int64_t r = 0; r < N; r++) {
                    tgt[r] = (int32_t)((r * 7919 + 5 * ns) % V);
                    dloss[r] = (float)((r % 5) - 2) * 0.25f;
                }
                char ctx[96];
                snprintf(ctx, sizeof ctx, "N=%lld V=%d Vp=%d slices=%d", (long long)N, V, Vp, ns);
                ck_assert_int_eq(parlm_crossentropy_forward(loss, lse, x, tgt, N, V, Vp),
                                 PARLM_OK);
                split_cols(sl, x, N, Vp, ns);
                vp_forward(vloss, vlse, sl, tgt, N, V, Vp, ns, part);
                /* both are within (V + 8) u + 2 u |lse| of the exact lse (the bound of
                 * crossentropy_matches_naive_double: a float sum of V exponentials, log and
                 * add); grouping the sum by slices and combining them in double adds a few u
                 * |lse|. The loss subtracts the same target logit: 2 u (|loss| + |x_t|). */
                for (int64_t r = 0; r < N; r++) {
                    double el = 2 * (V + 8) * U_RND + 6 * U_RND * fabs(lse[r]);
                    double xt = x[r * Vp + tgt[r]];
                    ck_assert_msg(fabs((double)vlse[r] - lse[r]) <= el,
                                  "%s: lse[%lld] %.9g vs full %.9g", ctx, (long long)r,
                                  (double)vlse[r], (double)lse[r]);
                    ck_assert_msg(fabs((double)vloss[r] - loss[r]) <=
                                      el + 4 * U_RND * (fabs(loss[r]) + fabs(xt)),
                                  "%s: loss[%lld] %.9g vs full %.9g", ctx, (long long)r,
                                  (double)vloss[r], (double)loss[r]);
                }
                /* backward from the full lse: the slice kernels compute each column's
                 * exp(x - lse) dloss exactly as the full row does, so bitwise equal */
                ck_assert_int_eq(parlm_crossentropy_backward(g, x, tgt, lse, dloss, N, V, Vp),
                                 PARLM_OK);
                for (int s = 0; s < ns; s++) {
                    float *d = gs + (int64_t)s * N * Vs;
                    ck_assert_int_eq(parlm_crossentropy_vp_backward(d, sl + (int64_t)s * N * Vs,
                                                                    tgt, lse, dloss, N, s * Vs,
                                                                    Vs, V),
                                     PARLM_OK);
                }
                split_cols(gsplit, g, N, Vp, ns);
                ck_assert_msg(memcmp(gs, gsplit, (size_t)nl * sizeof(float)) == 0,
                              "%s: slice dlogits differ from the full ones", ctx);
                /* and in place, from the combined lse: within the lse difference el times
                 * p |dloss| (plus the roundings of exp and the product); padding exactly 0 */
                for (int s = 0; s < ns; s++) {
                    float *d = sl + (int64_t)s * N * Vs;
                    ck_assert_int_eq(parlm_crossentropy_vp_backward(d, d, tgt, vlse, dloss, N,
                                                                    s * Vs, Vs, V),
                                     PARLM_OK);
                }
                for (int s = 0; s < ns; s++)
                    for (int64_t r = 0; r < N; r++)
                        for (int j = 0; j < Vs; j++) {
                            int col = s * Vs + j;
                            float got = sl[((int64_t)s * N + r) * Vs + j], ref = g[r * Vp + col];
                            if (col >= V) {
                                ck_assert_msg(got == 0.0f && !signbit(got),
                                              "%s: padding column %d = %g", ctx, col,
                                              (double)got);
                                continue;
                            }
                            double xj = x[r * Vp + col], p = exp(xj - lse[r]);
                            double el = 2 * (V + 8) * U_RND + 6 * U_RND * fabs(lse[r]);
                            double tol = fabs(dloss[r]) *
                                         (p * (el + 8 * U_RND * (1 + fabs(xj - lse[r]))) +
                                          4 * U_RND * (1 + p));
                            ck_assert_msg(fabs((double)got - ref) <= tol,
                                          "%s: dlogits[%lld][%d] %.9g vs full %.9g", ctx,
                                          (long long)r, col, (double)got, (double)ref);
                        }
                free(tgt);
                parlm_free(x), parlm_free(sl), parlm_free(g), parlm_free(gs);
                parlm_free(gsplit), parlm_free(loss), parlm_free(lse), parlm_free(vloss);
                parlm_free(vlse), parlm_free(part), parlm_free(dloss);
            }
}
END_TEST

/* sum_r dloss_r loss_r through the vocab-parallel ops, in double from float losses */
static double vp_objective(const float *sl, const int32_t *tgt, const float *dloss, int64_t N,
                           int V, int Vp, int ns)
{
    float loss[3], lse[3], part[3 * 2 * 4];
    vp_forward(loss, lse, sl, tgt, N, V, Vp, ns, part);
    double f = 0;
    for (int64_t r = 0; r < N; r++)
        f += (double)dloss[r] * loss[r];
    return f;
}

START_TEST(crossentropy_vocab_parallel_finite_differences)
{
    /* central differences of sum dloss * loss with h = 1e-2 on logits of size ~1: the
     * truncation error is h^2 / 6 times a third derivative below 1 (softmax), < 2e-5, and
     * the rounding of the float losses 2 u |f| / h < 1e-4; tolerance 1e-3 */
    const int64_t N = 3;
    const int V = 13, ns = 3, Vp = 24, Vs = Vp / ns;
    float x[3 * 24], sl[3 * 24], gs[3 * 24], loss[3], lse[3], part[3 * 2 * 3];
    float dloss[3] = {1.0f, -0.5f, 0.75f};
    int32_t tgt[3] = {2, 9, 12};
    fill_range(x, N * Vp, 77, -2.0f, 2.0f);
    split_cols(sl, x, N, Vp, ns);
    vp_forward(loss, lse, sl, tgt, N, V, Vp, ns, part);
    for (int s = 0; s < ns; s++)
        ck_assert_int_eq(parlm_crossentropy_vp_backward(gs + s * N * Vs, sl + s * N * Vs, tgt,
                                                        lse, dloss, N, s * Vs, Vs, V),
                         PARLM_OK);
    const float h = 1e-2f;
    for (int64_t i = 0; i < N * Vp; i++) {
        float keep = sl[i];
        sl[i] = keep + h;
        double fp = vp_objective(sl, tgt, dloss, N, V, Vp, ns);
        sl[i] = keep - h;
        double fm = vp_objective(sl, tgt, dloss, N, V, Vp, ns);
        sl[i] = keep;
        double fd = (fp - fm) / (2.0 * ((double)(keep + h) - keep));
        ck_assert_msg(fabs(fd - gs[i]) <= 1e-3, "dlogits[%lld] = %g, finite difference %g",
                      (long long)i, (double)gs[i], fd);
    }
}
END_TEST

static Suite *crossentropy_suite(void)
{
    Suite *s = suite_create("crossentropy");
    TCase *tc = tcase_create("crossentropy");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, crossentropy_matches_naive_double);
    tcase_add_test(tc, crossentropy_vocab_parallel_matches_full);
    tcase_add_test(tc, crossentropy_vocab_parallel_finite_differences);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return run_suite(crossentropy_suite()); }
