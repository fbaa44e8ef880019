/* tests/core/test_kernels_gemm.c — simd/<isa>/gemm.c: each kernel set's GEMM micro-kernels,
 * packing routines and GEMV kernels against the scalar set's (simd/scalar), called
 * directly from the table on ragged tiles, odd depths and awkward strides; and that no
 * set still points at a scalar entry (which would make those comparisons vacuous). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/core/gemm.h"
#include "harness.h"

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
    parlm_kernels sc = table_of(PARLM_ISA_SCALAR);
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

/* sgemm_ukr_ua, where a set has one: A read in place gives the set's packed-panel result
 * bit for bit. A is a malloc'd block of exactly m rows (the last kc long, lda > kc), so a
 * read of a row past m or past the end shows under the sanitizers; C keeps its frame. */
static void check_ukr_ua(const kset *ks, int64_t kc, int m, int n, int64_t lda, float alpha,
                         float beta, uint64_t seed)
{
    const parlm_kernels *k = &ks->k;
    int MR = k->sgemm_mr, NR = k->sgemm_nr;
    int64_t ldc = NR + 3, na = (m - 1) * lda + kc;
    float *a = malloc((size_t)na * sizeof(float));
    float *ap = tu_alloc_nan(kc * MR), *bp = tu_alloc_nan(kc * NR);
    float *c = tu_alloc_nan((MR + 2) * ldc), *ref = tu_alloc_nan((MR + 2) * ldc);
    ck_assert_ptr_nonnull(a);
    tu_fill(a, na, seed);
    tu_fill(bp, kc * NR, seed + 1);
    for (int64_t p = 0; p < kc; p++) /* the packed panel of the same rows, zero past m */
        for (int i = 0; i < MR; i++)
            ap[p * MR + i] = i < m ? a[i * lda + p] : 0.0f;
    tu_fill(c, (MR + 2) * ldc, seed + 2);
    if (beta == 0.0f)
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                c[i * ldc + j] = NAN;
    memcpy(ref, c, (size_t)((MR + 2) * ldc) * sizeof(float));
    k->sgemm_ukr(kc, ap, bp, ref, ldc, alpha, beta, m, n);
    k->sgemm_ukr_ua(kc, a, lda, bp, c, ldc, alpha, beta, m, n);
    for (int64_t e = 0; e < (MR + 2) * ldc; e++)
        if (bits_of(c[e]) != bits_of(ref[e]))
            ck_abort_msg("%s ukr_ua kc=%lld m=%d n=%d lda=%lld: C[%lld] = %g, packed %g",
                         ks->name, (long long)kc, m, n, (long long)lda, (long long)e, c[e],
                         ref[e]);
    free(a);
    parlm_free(ap);
    parlm_free(bp);
    parlm_free(c);
    parlm_free(ref);
}

START_TEST(ukr_ua_matches_packed_every_set)
{
    kset sets[8];
    int ns = kernel_sets(sets, 8), tested = 0;
    for (int s = 0; s < ns; s++) {
        if (!sets[s].k.sgemm_ukr_ua)
            continue;
        int MR = sets[s].k.sgemm_mr, NR = sets[s].k.sgemm_nr;
        int ms[] = {MR, 1, MR - 1 > 0 ? MR - 1 : 1, 7 < MR ? 7 : MR};
        int nsz[] = {NR, 1, 17 < NR ? 17 : NR, NR - 1 > 0 ? NR - 1 : 1};
        int64_t kcs[] = {1, 7, 17, 127};
        int idx = 0;
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++)
                for (int c = 0; c < 4; c++, idx++)
                    check_ukr_ua(&sets[s], kcs[c], ms[a], nsz[b], kcs[c] + 1 + idx % 5,
                                 alphas[idx % 5], betas[idx % 5], 900 + (uint64_t)idx);
        tested++;
    }
#if defined(__x86_64__)
    /* the AVX-512 set has one: the comparison ran at least there when this CPU has it */
    if (parlm_isa_supported(PARLM_ISA_AVX512))
        ck_assert_int_gt(tested, 0);
#endif
}
END_TEST

/* Packing is data movement: every set must match the scalar packing bitwise, for copies
 * (rs == 1) and transposes (cs == 1), ragged mn, odd kc, widths MR and NR. */
START_TEST(pack_matches_scalar_every_set)
{
    kset sets[8];
    int ns = kernel_sets(sets, 8);
    parlm_kernels sc = table_of(PARLM_ISA_SCALAR);
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
    parlm_kernels sc = table_of(PARLM_ISA_SCALAR);
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
        /* kinds: sgemv_t, sgemv_n, bgemv_t, and the one-row sgemv_t1, bgemv_t1 */
        for (int kind = 0; kind < 5; kind++)
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
                    } else if (kind == 2) {
                        k->bgemv_t(r, kk, alpha, wh, ld, x, beta, y1);
                        sc.bgemv_t(r, kk, alpha, wh, ld, x, beta, y2);
                    } else if (kind == 3) {
                        k->sgemv_t1(r, kk, alpha, w, ld, x, beta, y1);
                        sc.sgemv_t(r, kk, alpha, w, ld, x, beta, y2);
                    } else {
                        k->bgemv_t1(r, kk, alpha, wh, ld, x, beta, y1);
                        sc.bgemv_t(r, kk, alpha, wh, ld, x, beta, y2);
                    }
                    ck_assert(bits_of(y1[ny]) == bits_of(y2[ny])); /* one past: untouched */
                    int64_t depth = kind == 1 ? r : kk;
                    for (int64_t i = 0; i < ny; i++) {
                        double sa = 0.0;
                        for (int64_t p = 0; p < depth; p++) {
                            double wv = kind == 0 || kind == 3 ? w[i * ld + p]
                                        : kind == 1            ? w[p * ld + i]
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
    parlm_kernels sc = table_of(PARLM_ISA_SCALAR);
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
        ck_assert_msg(k->sgemv_t1 != sc.sgemv_t1, "%s: sgemv_t1 is scalar", n);
        ck_assert_msg(k->bgemv_t1 != sc.bgemv_t1, "%s: bgemv_t1 is scalar", n);
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

static Suite *kernels_gemm_suite(void)
{
    Suite *s = suite_create("gemm kernels");
    TCase *tc = tcase_create("kernels vs scalar");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, ukr_matches_scalar_every_set);
    tcase_add_test(tc, ukr_ua_matches_packed_every_set);
    tcase_add_test(tc, pack_matches_scalar_every_set);
    tcase_add_test(tc, gemv_kernels_match_scalar_every_set);
    tcase_add_test(tc, no_scalar_entries_left);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return run_suite(kernels_gemm_suite()); }
