/* tests/core/test_kernels_quant.c — the quantized GEMV kernels (simd/scalar/quant.c,
 * simd/common/qgemv.c over each vec_q.h) and parlm_qgemv (lib/core/qgemv.c). Every set
 * (and the avx512 / neon table without its int8-dot upgrade) against the scalar kernel:
 * the block dots are exact integers, so only the float sum over blocks may differ. The
 * scalar kernel against the f32 product of the dequantized weights, within the error the
 * activation rounding allows; extreme blocks (+-127, -128, nibbles 0 / 15) exactly. The
 * same for the kernels over rows repacked 8 at a time (parlm_qrepack), bitwise the plain
 * rows' on x86; a plain row's bits whatever rows share its call; and the choice
 * between the two layouts (parlm_qlayout; PARLM_QLAYOUT is read once per process, so its
 * test re-runs this program as a child: argv[1] "--qlayout-child"). */
#include <check.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../simd/scalar/scalar.h"
#include "harness.h"

static const int64_t KS[] = {32, 64, 96, 4096 + 32};
static const int64_t ROWS[] = {1, 7, 17, 127};

/* every set this machine runs, plus the tables without their int8-dot upgrade */
static int qsets(kset *out, int max)
{
    int n = kernel_sets(out, max);
#if defined(__x86_64__)
    if (parlm_isa_supported(PARLM_ISA_AVX512) && parlm_cpu_has_int8dot() && n < max) {
        parlm_kernels_avx512(&out[n].k);
        snprintf(out[n].name, sizeof out[n].name, "avx512 (no vnni)");
        n++;
    }
    if (parlm_isa_supported(PARLM_ISA_AVX2) && parlm_cpu_has_avxvnni() && n < max) {
        parlm_kernels_avx2(&out[n].k);
        snprintf(out[n].name, sizeof out[n].name, "avx2 (no avx-vnni)");
        n++;
    }
#elif defined(__aarch64__)
    if (parlm_isa_supported(PARLM_ISA_NEON) && parlm_cpu_has_int8dot() && n < max) {
        parlm_kernels_neon(&out[n].k);
        snprintf(out[n].name, sizeof out[n].name, "neon (no dotprod)");
        n++;
    }
#endif
    return n;
}

static int64_t row_bytes(int type, int64_t k)
{
    uint64_t b;
    ck_assert_int_eq(parlm_wtype_bytes(type, (uint64_t)k, &b), PARLM_OK);
    return (int64_t)b;
}

/* rows x k random weights quantized to type, rows ldw bytes apart (the gap is junk) */
static uint8_t *make_w(int type, int64_t rows, int64_t k, int64_t ldw, uint64_t seed)
{
    float *f = xmalloc((size_t)k * 4);
    uint8_t *w = xmalloc((size_t)(rows * ldw));
    memset(w, 0xa5, (size_t)(rows * ldw));
    for (int64_t i = 0; i < rows; i++) {
        tu_fill(f, k, seed + (uint64_t)i);
        if (i % 5 == 3) /* a block of zeros: scale 0 */
            memset(f, 0, 32 * 4);
        ck_assert_int_eq(parlm_quantize(type, f, k, w + i * ldw), PARLM_OK);
    }
    free(f);
    return w;
}

static float f16_at(const uint8_t *p) { return parlm_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* sum_b |d_w d_x| sum_j |q_w q_x| of row w: the scale of the float sums. Not |dot_b|:
 * a vector set scales each lane's partial integer sum of a block and adds lanes in
 * float, so its terms are up to these. */
static double abs_terms(int type, const uint8_t *w, int64_t k, const parlm_q8x *qx)
{
    int bytes = type == PARLM_WT_Q8_0 ? 34 : 18;
    double s = 0.0;
    for (int64_t b = 0; b < k / 32; b++) {
        const uint8_t *p = w + bytes * b;
        int64_t dot = 0;
        for (int j = 0; j < 32; j++) {
            int q = type == PARLM_WT_Q8_0 ? (int8_t)p[2 + j]
                                          : (j < 16 ? (p[2 + j] & 15) : (p[2 + j - 16] >> 4)) - 8;
            dot += abs(q * qx[b].q[j]);
        }
        s += fabs((double)f16_at(p) * qx[b].d * (double)dot);
    }
    return s;
}

/* The shared quantizer: d = max|x| / 127, |x - d q| <= d / 2 (+ the rounding of x / d),
 * and every set writes bitwise the scalar blocks. */
START_TEST(quantize_every_set)
{
    kset sets[8];
    int ns = qsets(sets, 8);
    parlm_kernels sc = table_of(PARLM_ISA_SCALAR);
    for (size_t ki = 0; ki < sizeof KS / sizeof KS[0]; ki++) {
        int64_t k = KS[ki], nb = k / 32;
        float *x = xmalloc((size_t)k * 4);
        fill_range(x, k, 7 + ki, -3.0f, 3.0f);
        memset(x + 32 * (nb - 1), 0, 32 * 4); /* last block all zero */
        parlm_q8x *ref = xmalloc((size_t)nb * sizeof *ref), *got = xmalloc((size_t)nb * sizeof *got);
        sc.q8_quantize(k, x, ref);
        for (int64_t b = 0; b < nb; b++) {
            float amax = 0.0f;
            for (int j = 0; j < 32; j++)
                amax = fmaxf(amax, fabsf(x[32 * b + j]));
            ck_assert_float_eq(ref[b].d, amax / 127.0f);
            for (int j = 0; j < 32; j++)
                ck_assert_msg(fabs((double)x[32 * b + j] - (double)ref[b].d * ref[b].q[j]) <=
                                  ref[b].d * (0.5 + 1e-5),
                              "k %lld block %lld: x %g -> q %d (d %g)", (long long)k, (long long)b,
                              x[32 * b + j], ref[b].q[j], ref[b].d);
        }
        ck_assert_float_eq(ref[nb - 1].d, 0.0f);
        for (int s = 0; s < ns; s++) {
            memset(got, 0x55, (size_t)nb * sizeof *got);
            sets[s].k.q8_quantize(k, x, got);
            ck_assert_msg(memcmp(got, ref, (size_t)nb * sizeof *got) == 0, "%s: k %lld",
                          sets[s].name, (long long)k);
        }
        free(x), free(ref), free(got);
    }
    /* halves: with max|x| = 127 (d = 1) x / d is x, and roundf takes ties away from zero;
     * the floats next to 0.5 and 2.5 stay on their side */
    static const float tx[32] = {127.0f, -126.5f, 0.5f, -0.5f, 1.5f, -1.5f, 2.5f, -2.5f,
                                 0.49999997f, -0.49999997f, 0.50000006f, -0.50000006f,
                                 2.4999998f, -2.5000002f, 126.5f, 63.5f, -64.5f, 0.0f, -0.0f,
                                 3.4999998f, 3.5f, -3.5f, 100.49999f, -100.5f, 7.0f, -7.5f,
                                 0.25f, -0.75f, 10.5f, -11.5f, 12.5f, -127.0f};
    static const int8_t tq[32] = {127, -127, 1, -1, 2, -2, 3, -3, 0, 0, 1, -1, 2, -3, 127, 64,
                                  -65, 0, 0, 3, 4, -4, 100, -101, 7, -8, 0, -1, 11, -12, 13, -127};
    parlm_q8x r, g;
    sc.q8_quantize(32, tx, &r);
    ck_assert_float_eq(r.d, 1.0f);
    ck_assert_int_eq(r.s, 10);
    for (int j = 0; j < 32; j++)
        ck_assert_msg(r.q[j] == tq[j], "x %.9g -> q %d, not %d", tx[j], r.q[j], tq[j]);
    for (int s = 0; s < ns; s++) {
        memset(&g, 0x55, sizeof g);
        sets[s].k.q8_quantize(32, tx, &g);
        ck_assert_msg(memcmp(&g, &r, sizeof g) == 0, "%s: the halves block", sets[s].name);
    }
    /* a block holding a NaN or an infinity: d NaN, q and s 0 in every set (no float-to-int
     * conversion of it), the next block as usual; a GEMV against it is NaN */
    float nx[128];
    fill_range(nx, 128, 5, -1.0f, 1.0f);
    nx[5] = NAN, nx[32 + 31] = INFINITY, nx[64] = -INFINITY;
    parlm_q8x nr[4], ng[4];
    sc.q8_quantize(128, nx, nr);
    for (int b = 0; b < 3; b++) {
        ck_assert_msg(isnan(nr[b].d) && nr[b].s == 0, "block %d: d %g s %d", b, nr[b].d, nr[b].s);
        for (int j = 0; j < 32; j++)
            ck_assert_int_eq(nr[b].q[j], 0);
    }
    ck_assert(isfinite(nr[3].d) && nr[3].d > 0.0f);
    for (int s = 0; s < ns; s++) {
        memset(ng, 0x55, sizeof ng);
        sets[s].k.q8_quantize(128, nx, ng);
        ck_assert_msg(memcmp(ng, nr, sizeof ng) == 0, "%s: non-finite blocks", sets[s].name);
    }
    uint8_t w8[4 * 34] = {0};
    w8[0] = 0x00, w8[1] = 0x3c; /* scale 1.0 in the first block, the others 0 */
    float y = 0.0f;
    ck_assert_int_eq(parlm_qgemv(PARLM_WT_Q8_0, 1, 128, w8, nx, &y), PARLM_OK);
    ck_assert_msg(isnan(y), "a GEMV against a NaN block gives %g", y);
}
END_TEST

/* Each set's Q8_0 / Q4_0 GEMV against the scalar kernel: beta 0 (y holds NaN: never
 * read) and beta != 0, rows strided with a gap, y past `rows` untouched. The sums of exact
 * block terms differ only in order: gemm_tol over nb blocks. */
START_TEST(gemv_every_set_vs_scalar)
{
    kset sets[8];
    int ns = qsets(sets, 8);
    parlm_kernels sc = table_of(PARLM_ISA_SCALAR);
    static const int types[] = {PARLM_WT_Q8_0, PARLM_WT_Q4_0};
    for (int ti = 0; ti < 2; ti++)
        for (size_t ki = 0; ki < sizeof KS / sizeof KS[0]; ki++)
            for (size_t ri = 0; ri < sizeof ROWS / sizeof ROWS[0]; ri++) {
                int type = types[ti];
                int64_t k = KS[ki], rows = ROWS[ri], nb = k / 32, ldw = row_bytes(type, k) + 6;
                uint8_t *w = make_w(type, rows, k, ldw, 100 * ki + ri);
                float *x = xmalloc((size_t)k * 4), *y0 = xmalloc((size_t)rows * 4);
                float *ref = xmalloc((size_t)rows * 4), *got = xmalloc((size_t)(rows + 4) * 4);
                double *tol = tol_new(rows);
                fill_range(x, k, 3 + ki, -2.0f, 2.0f);
                fill_range(y0, rows, 5, -1.0f, 1.0f);
                parlm_q8x *qx = xmalloc((size_t)nb * sizeof *qx);
                sc.q8_quantize(k, x, qx);
                void (*scg)(int64_t, int64_t, const void *, int64_t, const parlm_q8x *, float,
                            float, float *) = ti ? sc.q4_0_gemv : sc.q8_0_gemv;
                for (int bi = 0; bi < 2; bi++) {
                    float alpha = 0.75f, beta = bi ? -0.5f : 0.0f;
                    memcpy(ref, y0, (size_t)rows * 4);
                    scg(rows, k, w, ldw, qx, alpha, beta, ref);
                    for (int64_t i = 0; i < rows; i++)
                        tol[i] = gemm_tol(nb + 32, fabs(alpha) * abs_terms(type, w + i * ldw, k, qx),
                                          beta * y0[i]);
                    for (int s = 0; s < ns; s++) {
                        for (int64_t i = 0; i < rows + 4; i++)
                            got[i] = i < rows ? (bi ? y0[i] : NAN) : SENTINEL;
                        (ti ? sets[s].k.q4_0_gemv : sets[s].k.q8_0_gemv)(rows, k, w, ldw, qx,
                                                                         alpha, beta, got);
                        char ctx[96];
                        snprintf(ctx, sizeof ctx, "%.32s %s %lldx%lld beta %g", sets[s].name,
                                 parlm_wtype_name(type), (long long)rows, (long long)k, beta);
                        expect_close_f(ctx, "y", got, ref, tol, rows);
                        for (int64_t i = rows; i < rows + 4; i++)
                            ck_assert_msg(got[i] == SENTINEL, "%s wrote y[%lld]", ctx, (long long)i);
                    }
                }
                free(w), free(x), free(y0), free(ref), free(got), free(tol), free(qx);
            }
}
END_TEST

/* A plain row's value does not depend on the rows that share the call (the vector sets
 * take 8 rows a pass; a short last group repeats its last row): every range [r0, r1),
 * starting and ending inside groups, gives bitwise the whole call's rows, for row counts
 * around the group size and block counts 1, 3, 24 and 129 (an odd last block), beta 0 and
 * not. */
START_TEST(gemv_rows_any_range)
{
    static const int64_t ks[] = {32, 96, 768, 4096 + 32}, rowss[] = {1, 8, 9, 15, 33};
    static const int types[] = {PARLM_WT_Q8_0, PARLM_WT_Q4_0};
    kset sets[8];
    int ns = qsets(sets, 8);
    for (int ti = 0; ti < 2; ti++)
        for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
            for (size_t ri = 0; ri < sizeof rowss / sizeof rowss[0]; ri++) {
                int type = types[ti];
                int64_t k = ks[ki], rows = rowss[ri], nb = k / 32, ldw = row_bytes(type, k) + 2;
                uint8_t *w = make_w(type, rows, k, ldw, 500 + 10 * ki + ri);
                float *x = xmalloc((size_t)k * 4), *y0 = xmalloc((size_t)rows * 4);
                float *all = xmalloc((size_t)rows * 4), *got = xmalloc((size_t)(rows + 1) * 4);
                parlm_q8x *qx = xmalloc((size_t)nb * sizeof *qx);
                fill_range(x, k, 21 + ki, -2.0f, 2.0f);
                fill_range(y0, rows, 7, -1.0f, 1.0f);
                for (int s = 0; s < ns; s++) {
                    const parlm_kernels *kt = &sets[s].k;
                    void (*g)(int64_t, int64_t, const void *, int64_t, const parlm_q8x *, float,
                              float, float *) = ti ? kt->q4_0_gemv : kt->q8_0_gemv;
                    kt->q8_quantize(k, x, qx);
                    for (int bi = 0; bi < 2; bi++) {
                        float beta = bi ? 0.5f : 0.0f;
                        char ctx[96];
                        snprintf(ctx, sizeof ctx, "%.32s %s %lldx%lld beta %g", sets[s].name,
                                 parlm_wtype_name(type), (long long)rows, (long long)k, beta);
                        memcpy(all, y0, (size_t)rows * 4);
                        g(rows, k, w, ldw, qx, 1.5f, beta, all);
                        for (int64_t r0 = 0; r0 < rows; r0 += 3)
                            for (int64_t r1 = r0 + 1; r1 <= rows; r1 += 2) {
                                for (int64_t i = 0; i <= rows; i++)
                                    got[i] = i < r1 - r0 ? (bi ? y0[r0 + i] : NAN) : SENTINEL;
                                g(r1 - r0, k, w + r0 * ldw, ldw, qx, 1.5f, beta, got);
                                ck_assert_msg(memcmp(got, all + r0, (size_t)(r1 - r0) * 4) == 0,
                                              "%s: rows %lld..%lld differ from the whole call", ctx,
                                              (long long)r0, (long long)r1);
                                ck_assert_msg(got[r1 - r0] == SENTINEL, "%s: [%lld, %lld) wrote past",
                                              ctx, (long long)r0, (long long)r1);
                            }
                    }
                }
                free(w), free(x), free(y0), free(all), free(got), free(qx);
            }
}
END_TEST

/* The scalar kernel against the f32 GEMV of the dequantized weights (double reference).
 * Quantizing x moves each x_j by at most d_x(b) / 2 (+ 1e-5 of it for the rounding of
 * x / d), so |y - ref| <= sum_b (d_x(b) / 2) sum_j |w_j| plus the float sums' error,
 * bounded by gamma(k + 3) sum_j |w_j| (|x_j| + d_x(b)), doubled. A wrong nibble order or
 * scale errs by the order of sum_j |w_j x_j|, about 100x the bound on this data. */
START_TEST(gemv_vs_dequantized)
{
    parlm_kernels sc = table_of(PARLM_ISA_SCALAR);
    static const int types[] = {PARLM_WT_Q8_0, PARLM_WT_Q4_0};
    for (int ti = 0; ti < 2; ti++)
        for (size_t ki = 0; ki < sizeof KS / sizeof KS[0]; ki++) {
            int type = types[ti];
            int64_t k = KS[ki], rows = 17, nb = k / 32, ldw = row_bytes(type, k);
            uint8_t *w = make_w(type, rows, k, ldw, 40 + ki);
            float *wd = xmalloc((size_t)k * 4), *x = xmalloc((size_t)k * 4);
            float *y = xmalloc((size_t)rows * 4);
            double *ref = tol_new(rows), *tol = tol_new(rows);
            fill_range(x, k, 9 + ki, -1.5f, 1.5f);
            parlm_q8x *qx = xmalloc((size_t)nb * sizeof *qx);
            sc.q8_quantize(k, x, qx);
            (ti ? sc.q4_0_gemv : sc.q8_0_gemv)(rows, k, w, ldw, qx, 1.0f, 0.0f, y);
            double worst_abs = 0.0;
            for (int64_t i = 0; i < rows; i++) {
                ck_assert_int_eq(parlm_dequantize(type, w + i * ldw, k, wd), PARLM_OK);
                double r = 0.0, q = 0.0, g = 0.0, m = 0.0;
                for (int64_t j = 0; j < k; j++) {
                    double dx = qx[j / 32].d;
                    r += (double)wd[j] * x[j];
                    q += fabs(wd[j]) * dx * (0.5 + 1e-5);
                    g += fabs(wd[j]) * (fabs(x[j]) + dx);
                    m += fabs((double)wd[j] * x[j]);
                }
                ref[i] = r;
                tol[i] = q + 2.0 * gamma_n((double)k + 3.0) * g;
                worst_abs = fmax(worst_abs, tol[i] / m);
            }
            char ctx[64];
            snprintf(ctx, sizeof ctx, "scalar %s 17x%lld", parlm_wtype_name(type), (long long)k);
            expect_close(ctx, "y", y, ref, tol, rows);
            /* the bound itself is tight enough to see a misplaced weight */
            ck_assert_msg(worst_abs < 0.05, "%s: bound is %.3g of sum|w x|", ctx, worst_abs);
            free(w), free(wd), free(x), free(y), free(ref), free(tol), free(qx);
        }
}
END_TEST

static void put_f16(uint8_t *p, float v)
{
    uint16_t h = parlm_f32_to_f16(v);
    p[0] = (uint8_t)h, p[1] = (uint8_t)(h >> 8);
}

/* Extreme blocks, exact in every set: x = +-63.5 (d = 0.5, q = +-127), weights +-127 and
 * -128 (which a file may hold), nibbles 0 and 15 in both halves of a byte, scale 0 and
 * x = 0. Every block term is an even integer below 2^19 and sums stay below 2^25: exact.
 * Repacked, the extreme rows repeat over 17 rows (3 groups, the last padded), AVX512-VNNI
 * taking a zmm of two chunks at a time (its Q4_0 high nibbles as 16 q). */
START_TEST(gemv_extremes_exact)
{
    kset sets[8];
    int ns = qsets(sets, 8);
    for (size_t ki = 0; ki < sizeof KS / sizeof KS[0]; ki++) {
        int64_t k = KS[ki], nb = k / 32;
        float *x = xmalloc((size_t)k * 4), *x0 = xmalloc((size_t)k * 4);
        for (int64_t j = 0; j < k; j++) /* +127 for j % 32 < 16, -127 above */
            x[j] = (j % 32 < 16) ? 63.5f : -63.5f, x0[j] = 0.0f;
        /* Q8_0 rows: w = +-127 with x's sign (max dot), all -128, scale 0 */
        int64_t l8 = row_bytes(PARLM_WT_Q8_0, k), l4 = row_bytes(PARLM_WT_Q4_0, k);
        uint8_t *w8 = xmalloc((size_t)(17 * l8)), *w4 = xmalloc((size_t)(17 * l4));
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *p = w8 + 34 * b;
            put_f16(p, 1.0f), put_f16(p + l8, 1.0f), put_f16(p + 2 * l8, 0.0f);
            for (int j = 0; j < 32; j++) {
                p[2 + j] = (uint8_t)(int8_t)(j < 16 ? 127 : -127);
                p[l8 + 2 + j] = 0x80;
                p[2 * l8 + 2 + j] = 127;
            }
            /* Q4_0 rows: bytes 0xf0 (low 0 -> -8, high 15 -> 7), 0x0f, all 15, scale 0 */
            uint8_t *q = w4 + 18 * b;
            for (int r = 0; r < 4; r++) {
                put_f16(q + r * l4, r == 3 ? 0.0f : 2.0f);
                memset(q + r * l4 + 2, r == 0 ? 0xf0 : r == 1 ? 0x0f : 0xff, 16);
            }
        }
        for (int r = 3; r < 17; r++) /* row r repeats row r % 3 (Q8_0), r % 4 (Q4_0) */
            memcpy(w8 + r * l8, w8 + (r % 3) * l8, (size_t)l8);
        for (int r = 4; r < 17; r++)
            memcpy(w4 + r * l4, w4 + (r % 4) * l4, (size_t)l4);
        /* per block: d_w d_x dot, d_x = 0.5 */
        double e8[3] = {1.0 * 0.5 * 32 * 127 * 127, 1.0 * 0.5 * 0 /* -128 * (16 - 16) */, 0.0};
        double e4[4] = {2.0 * 0.5 * 127 * (16 * -8 - 16 * 7), 2.0 * 0.5 * 127 * (16 * 7 + 16 * 8),
                        2.0 * 0.5 * 127 * (16 * 7 - 16 * 7), 0.0};
        parlm_q8x *qx = xmalloc((size_t)nb * sizeof *qx), *qz = xmalloc((size_t)nb * sizeof *qz);
        uint64_t rb8, rb4;
        ck_assert_int_eq(parlm_qrepack_bytes(PARLM_WT_Q8_0, 17, k, &rb8), PARLM_OK);
        ck_assert_int_eq(parlm_qrepack_bytes(PARLM_WT_Q4_0, 17, k, &rb4), PARLM_OK);
        uint8_t *r8 = xmalloc((size_t)rb8), *r4 = xmalloc((size_t)rb4);
        ck_assert_int_eq(parlm_qrepack(PARLM_WT_Q8_0, 17, k, w8, r8), PARLM_OK);
        ck_assert_int_eq(parlm_qrepack(PARLM_WT_Q4_0, 17, k, w4, r4), PARLM_OK);
        for (int s = 0; s < ns; s++) {
            sets[s].k.q8_quantize(k, x, qx);
            sets[s].k.q8_quantize(k, x0, qz);
            ck_assert_float_eq(qx[0].d, 0.5f);
            ck_assert_int_eq(qx[0].q[0], 127);
            ck_assert_int_eq(qx[0].q[31], -127);
            float y[17];
            sets[s].k.q8_0_gemv(3, k, w8, l8, qx, 1.0f, 0.0f, y);
            for (int i = 0; i < 3; i++)
                ck_assert_msg(y[i] == (float)(e8[i] * (double)nb), "%s q8_0 k %lld row %d: %.9g",
                              sets[s].name, (long long)k, i, y[i]);
            sets[s].k.q4_0_gemv(4, k, w4, l4, qx, 1.0f, 0.0f, y);
            for (int i = 0; i < 4; i++)
                ck_assert_msg(y[i] == (float)(e4[i] * (double)nb), "%s q4_0 k %lld row %d: %.9g",
                              sets[s].name, (long long)k, i, y[i]);
            sets[s].k.q4_0_gemv(4, k, w4, l4, qz, 1.0f, 0.0f, y); /* x = 0: d_x = 0 */
            for (int i = 0; i < 4; i++)
                ck_assert_msg(y[i] == 0.0f, "%s q4_0 x = 0 row %d: %g", sets[s].name, i, y[i]);
            /* the rows repacked (3 groups, the last padded): Q8_0's -128 is stored 0 */
            sets[s].k.q8_0r_gemv(0, 17, k, r8, qx, 1.0f, 0.0f, y);
            for (int i = 0; i < 17; i++)
                ck_assert_msg(y[i] == (float)(e8[i % 3] * (double)nb),
                              "%s q8_0r k %lld row %d: %.9g", sets[s].name, (long long)k, i, y[i]);
            sets[s].k.q4_0r_gemv(0, 17, k, r4, qx, 1.0f, 0.0f, y);
            for (int i = 0; i < 17; i++)
                ck_assert_msg(y[i] == (float)(e4[i % 4] * (double)nb),
                              "%s q4_0r k %lld row %d: %.9g", sets[s].name, (long long)k, i, y[i]);
            sets[s].k.q4_0r_gemv(0, 17, k, r4, qz, 1.0f, 0.0f, y);
            for (int i = 0; i < 17; i++)
                ck_assert_msg(y[i] == 0.0f, "%s q4_0r x = 0 row %d: %g", sets[s].name, i, y[i]);
        }
        /* -128 against all +127: the one product a quantizer never writes */
        for (int64_t j = 0; j < k; j++)
            x[j] = 63.5f;
        for (int s = 0; s < ns; s++) {
            sets[s].k.q8_quantize(k, x, qx);
            float y, yr[16];
            sets[s].k.q8_0_gemv(1, k, w8 + l8, l8, qx, 1.0f, 0.0f, &y);
            ck_assert_msg(y == (float)(0.5 * -128 * 127 * 32 * (double)nb), "%s -128: %.9g",
                          sets[s].name, y);
            sets[s].k.q8_0r_gemv(1, 17, k, r8, qx, 1.0f, 0.0f, yr); /* rows 1, 4, ... 16 */
            for (int i = 1; i < 17; i += 3)
                ck_assert_msg(yr[i - 1] == (float)(0.5 * -128 * 127 * 32 * (double)nb),
                              "%s r8 -128 row %d: %.9g", sets[s].name, i, yr[i - 1]);
        }
        free(x), free(x0), free(w8), free(w4), free(qx), free(qz), free(r8), free(r4);
    }
}
END_TEST

static const int64_t RKS[] = {32, 64, 96, 768, 768 + 32};
static const int64_t RROWS[] = {1, 7, 8, 9, 17, 33, 127};

/* rows repacked by parlm_qrepack */
static uint8_t *repack(int type, int64_t rows, int64_t k, const uint8_t *w)
{
    uint64_t bytes;
    ck_assert_int_eq(parlm_qrepack_bytes(type, rows, k, &bytes), PARLM_OK);
    ck_assert_uint_eq(bytes, (uint64_t)((rows + 7) / 8) * (uint64_t)(k / 32) *
                                 (type == PARLM_WT_Q8_0 ? 272u : 144u));
    uint8_t *r = xmalloc((size_t)bytes);
    memset(r, 0x5a, (size_t)bytes);
    ck_assert_int_eq(parlm_qrepack(type, rows, k, w, r), PARLM_OK);
    return r;
}

/* The repacked GEMVs: the scalar one against the scalar plain-row kernel, every set's
 * against both (alpha, beta 0 with y NaN, beta != 0), y past the range untouched; then
 * sub-ranges [r0, r1) that cut groups: the same bits as the whole range (a row's value
 * does not depend on the range, which makes decode's bits thread-count independent). */
START_TEST(repacked_every_set)
{
    kset sets[8];
    int ns = qsets(sets, 8);
    parlm_kernels sc = table_of(PARLM_ISA_SCALAR);
    static const int types[] = {PARLM_WT_Q8_0, PARLM_WT_Q4_0};
    for (int ti = 0; ti < 2; ti++)
        for (size_t ki = 0; ki < sizeof RKS / sizeof RKS[0]; ki++)
            for (size_t ri = 0; ri < sizeof RROWS / sizeof RROWS[0]; ri++) {
                int type = types[ti];
                int64_t k = RKS[ki], rows = RROWS[ri], nb = k / 32, ldw = row_bytes(type, k);
                uint8_t *w = make_w(type, rows, k, ldw, 300 + 10 * ki + ri);
                uint8_t *wr = repack(type, rows, k, w);
                float *x = xmalloc((size_t)k * 4), *y0 = xmalloc((size_t)rows * 4);
                float *ref = xmalloc((size_t)rows * 4), *got = xmalloc((size_t)(rows + 4) * 4);
                float *own = xmalloc((size_t)rows * 4), *all = xmalloc((size_t)rows * 4);
                double *tol = tol_new(rows);
                fill_range(x, k, 13 + ki, -2.0f, 2.0f);
                fill_range(y0, rows, 6, -1.0f, 1.0f);
                parlm_q8x *qx = xmalloc((size_t)nb * sizeof *qx);
                sc.q8_quantize(k, x, qx);
                for (int bi = 0; bi < 2; bi++) {
                    float alpha = 1.25f, beta = bi ? 0.5f : 0.0f;
                    memcpy(ref, y0, (size_t)rows * 4);
                    (ti ? sc.q4_0_gemv : sc.q8_0_gemv)(rows, k, w, ldw, qx, alpha, beta, ref);
                    for (int64_t i = 0; i < rows; i++)
                        tol[i] = gemm_tol(nb + 32, fabs(alpha) * abs_terms(type, w + i * ldw, k, qx),
                                          beta * y0[i]);
                    for (int s = -1; s < ns; s++) {
                        const parlm_kernels *kt = s < 0 ? &sc : &sets[s].k;
                        const char *nm = s < 0 ? "scalar ref" : sets[s].name;
                        char ctx[96];
                        snprintf(ctx, sizeof ctx, "%.32s %sr %lldx%lld beta %g", nm,
                                 parlm_wtype_name(type), (long long)rows, (long long)k, beta);
                        for (int64_t i = 0; i < rows + 4; i++)
                            got[i] = i < rows ? (bi ? y0[i] : NAN) : SENTINEL;
                        (ti ? kt->q4_0r_gemv : kt->q8_0r_gemv)(0, rows, k, wr, qx, alpha, beta, got);
                        expect_close_f(ctx, "y vs scalar plain rows", got, ref, tol, rows);
                        for (int64_t i = rows; i < rows + 4; i++)
                            ck_assert_msg(got[i] == SENTINEL, "%s wrote y[%lld]", ctx, (long long)i);
                        memcpy(own, y0, (size_t)rows * 4); /* this set's plain-row kernel */
                        (ti ? kt->q4_0_gemv : kt->q8_0_gemv)(rows, k, w, ldw, qx, alpha, beta, own);
                        expect_close_f(ctx, "y vs its plain rows", got, own, tol, rows);
#if defined(__x86_64__)
                        /* x86 (and scalar) plain rows: the same int32 block dots, scale
                         * products and sums as the repacked kernel, so the same bits */
                        ck_assert_msg(memcmp(got, own, (size_t)rows * 4) == 0,
                                      "%s: plain rows are not bitwise the repacked ones", ctx);
#else
                        if (s < 0)
                            ck_assert_msg(memcmp(got, own, (size_t)rows * 4) == 0,
                                          "%s: plain rows are not bitwise the repacked ones", ctx);
#endif
                        memcpy(all, got, (size_t)rows * 4);
                        /* ranges that start and end inside groups */
                        for (int64_t r0 = 0; r0 < rows; r0 += 3)
                            for (int64_t r1 = r0 + 1; r1 <= rows; r1 += 5) {
                                for (int64_t i = 0; i < rows + 4; i++)
                                    got[i] = i < r1 - r0 ? (bi ? y0[r0 + i] : NAN) : SENTINEL;
                                (ti ? kt->q4_0r_gemv : kt->q8_0r_gemv)(r0, r1, k, wr, qx, alpha,
                                                                      beta, got);
                                ck_assert_msg(memcmp(got, all + r0, (size_t)(r1 - r0) * 4) == 0,
                                              "%s rows %lld..%lld differ from the whole range", ctx,
                                              (long long)r0, (long long)r1);
                                for (int64_t i = r1 - r0; i < rows + 4; i++)
                                    ck_assert_msg(got[i] == SENTINEL, "%s [%lld, %lld) wrote y[%lld]",
                                                  ctx, (long long)r0, (long long)r1, (long long)i);
                            }
                    }
                }
                free(w), free(wr), free(x), free(y0), free(ref), free(got), free(own), free(all);
                free(tol), free(qx);
            }
}
END_TEST

/* Every x86 set and NEON with dotprod has its own repacked kernels (base NEON keeps the
 * scalar ones: it has no 4-byte dot to broadcast) */
START_TEST(repacked_not_scalar)
{
    kset sets[8];
    int ns = qsets(sets, 8);
    parlm_kernels sc = table_of(PARLM_ISA_SCALAR);
    for (int s = 0; s < ns; s++) {
        if (strcmp(sets[s].name, "scalar") == 0 || strcmp(sets[s].name, "neon (no dotprod)") == 0 ||
            (strcmp(sets[s].name, "neon") == 0 && !parlm_cpu_has_int8dot()))
            continue;
        ck_assert_msg(sets[s].k.q8_0r_gemv != sc.q8_0r_gemv, "%s: q8_0r_gemv is scalar",
                      sets[s].name);
        ck_assert_msg(sets[s].k.q4_0r_gemv != sc.q4_0r_gemv, "%s: q4_0r_gemv is scalar",
                      sets[s].name);
    }
#if defined(__x86_64__)
    if (parlm_isa_supported(PARLM_ISA_AVX2) && parlm_cpu_has_avxvnni()) {
        /* AVX-VNNI replaced the avx2 set's quantized GEMVs */
        parlm_kernels raw, up = table_of(PARLM_ISA_AVX2);
        parlm_kernels_avx2(&raw);
        ck_assert(up.q8_0_gemv != raw.q8_0_gemv && up.q4_0r_gemv != raw.q4_0r_gemv);
    }
#endif
}
END_TEST

/* parlm_qgemv_repacked: the table's kernel on all rows, bitwise, for 1 and 2 threads, and
 * parlm_qgemv's result within the float-order tolerance; bad calls */
START_TEST(qgemv_repacked_threads_and_errors)
{
    const parlm_kernels *kt = parlm_kern();
    int64_t rows = 1027, k = 768;
    for (int ti = 0; ti < 2; ti++) {
        int type = ti ? PARLM_WT_Q4_0 : PARLM_WT_Q8_0;
        int64_t ldw = row_bytes(type, k);
        uint8_t *w = make_w(type, rows, k, ldw, 78);
        uint8_t *wr = repack(type, rows, k, w);
        float *x = xmalloc((size_t)k * 4), *ref = xmalloc((size_t)rows * 4);
        float *got = xmalloc((size_t)rows * 4), *plain = xmalloc((size_t)rows * 4);
        double *tol = tol_new(rows);
        fill_range(x, k, 8, -1.0f, 1.0f);
        parlm_q8x *qx = xmalloc((size_t)(k / 32) * sizeof *qx);
        kt->q8_quantize(k, x, qx);
        (ti ? kt->q4_0r_gemv : kt->q8_0r_gemv)(0, rows, k, wr, qx, 1.0f, 0.0f, ref);
        ck_assert_int_eq(parlm_qgemv(type, rows, k, w, x, plain), PARLM_OK);
        for (int64_t i = 0; i < rows; i++)
            tol[i] = gemm_tol(k / 32 + 32, abs_terms(type, w + i * ldw, k, qx), 0.0);
        expect_close_f("parlm_qgemv_repacked vs parlm_qgemv", "y", ref, plain, tol, rows);
        for (int nt = 1; nt <= 2; nt++) {
            omp_set_num_threads(nt);
            for (int64_t i = 0; i < rows; i++)
                got[i] = NAN;
            ck_assert_int_eq(parlm_qgemv_repacked(type, rows, k, wr, x, got), PARLM_OK);
            ck_assert_msg(memcmp(got, ref, (size_t)rows * 4) == 0, "%s, %d threads",
                          parlm_wtype_name(type), nt);
        }
        free(w), free(wr), free(x), free(ref), free(got), free(plain), free(tol), free(qx);
    }
    float x[64] = {0}, y[2];
    uint8_t w[2 * 68] = {0}, wr[2 * 272];
    uint64_t bytes;
    ck_assert_int_eq(parlm_qgemv_repacked(PARLM_WT_F32, 2, 64, w, x, y), PARLM_EUNSUPPORTED);
    parlm_clear_error();
    expect_einval_msg(parlm_qgemv_repacked(PARLM_WT_Q8_0, 2, 48, w, x, y), "multiple of 32");
    expect_einval_msg(parlm_qgemv_repacked(PARLM_WT_Q4_0, -1, 64, w, x, y), "rows");
    expect_einval_msg(parlm_qgemv_repacked(PARLM_WT_Q4_0, 2, 64, w, x, NULL), "y is NULL");
    expect_einval_msg(parlm_qrepack(PARLM_WT_Q8_0, 2, 64, NULL, wr), "w is NULL");
    expect_einval_msg(parlm_qrepack_bytes(PARLM_WT_Q8_0, 2, 64, NULL), "bytes is NULL");
    expect_einval_msg(parlm_qrepack_bytes(PARLM_WT_Q8_0, INT64_MAX / 2, 1 << 20, &bytes),
                      "overflow");
    ck_assert_int_eq(parlm_qrepack_bytes(PARLM_WT_BF16, 2, 64, &bytes), PARLM_EUNSUPPORTED);
    parlm_clear_error();
    ck_assert_int_eq(parlm_qrepack(PARLM_WT_Q8_0, 2, 64, w, wr), PARLM_OK); /* zero scales */
    ck_assert_int_eq(parlm_qgemv_repacked(PARLM_WT_Q8_0, 2, 64, wr, x, y), PARLM_OK);
    ck_assert(y[0] == 0.0f && y[1] == 0.0f);
    ck_assert_int_eq(parlm_qgemv_repacked(PARLM_WT_Q8_0, 0, 64, wr, x, y), PARLM_OK);
}
END_TEST

/* parlm_qgemv: the table's kernel on all rows, bitwise, for 1 and 2 threads; bad calls */
START_TEST(qgemv_threads_and_errors)
{
    const parlm_kernels *kt = parlm_kern();
    int64_t rows = 1027, k = 768;
    for (int ti = 0; ti < 2; ti++) {
        int type = ti ? PARLM_WT_Q4_0 : PARLM_WT_Q8_0;
        int64_t ldw = row_bytes(type, k);
        uint8_t *w = make_w(type, rows, k, ldw, 77);
        float *x = xmalloc((size_t)k * 4), *ref = xmalloc((size_t)rows * 4);
        float *got = xmalloc((size_t)rows * 4);
        fill_range(x, k, 8, -1.0f, 1.0f);
        parlm_q8x *qx = xmalloc((size_t)(k / 32) * sizeof *qx);
        kt->q8_quantize(k, x, qx);
        (ti ? kt->q4_0_gemv : kt->q8_0_gemv)(rows, k, w, ldw, qx, 1.0f, 0.0f, ref);
        for (int nt = 1; nt <= 2; nt++) {
            omp_set_num_threads(nt);
            for (int64_t i = 0; i < rows; i++)
                got[i] = NAN;
            ck_assert_int_eq(parlm_qgemv(type, rows, k, w, x, got), PARLM_OK);
            ck_assert_msg(memcmp(got, ref, (size_t)rows * 4) == 0, "%s, %d threads",
                          parlm_wtype_name(type), nt);
        }
        free(w), free(x), free(ref), free(got), free(qx);
    }
    float x[64] = {0}, y[2];
    uint8_t w[2 * 68] = {0};
    ck_assert_int_eq(parlm_qgemv(PARLM_WT_F32, 2, 64, w, x, y), PARLM_EUNSUPPORTED);
    ck_assert_msg(strstr(parlm_last_error(), "q8_0") != NULL, "%s", parlm_last_error());
    parlm_clear_error();
    ck_assert_int_eq(parlm_qgemv(99, 2, 64, w, x, y), PARLM_EUNSUPPORTED);
    parlm_clear_error();
    expect_einval_msg(parlm_qgemv(PARLM_WT_Q8_0, 2, 48, w, x, y), "multiple of 32");
    expect_einval_msg(parlm_qgemv(PARLM_WT_Q8_0, 2, 0, w, x, y), "multiple of 32");
    expect_einval_msg(parlm_qgemv(PARLM_WT_Q4_0, -1, 64, w, x, y), "rows");
    expect_einval_msg(parlm_qgemv(PARLM_WT_Q4_0, 2, 64, NULL, x, y), "w is NULL");
    expect_einval_msg(parlm_qgemv(PARLM_WT_Q4_0, 2, 64, w, NULL, y), "x is NULL");
    expect_einval_msg(parlm_qgemv(PARLM_WT_Q4_0, 2, 64, w, x, NULL), "y is NULL");
    parlm_clear_error();
    ck_assert_int_eq(parlm_qgemv(PARLM_WT_Q8_0, 2, 64, w, x, y), PARLM_OK); /* zero scales */
    ck_assert(y[0] == 0.0f && y[1] == 0.0f);
    ck_assert_int_eq(parlm_qgemv(PARLM_WT_Q8_0, 0, 64, w, x, y), PARLM_OK);
}
END_TEST

/* parlm_qgemm: every row of Y bitwise parlm_qgemv of that row of X, for awkward M, rows
 * and k, strided X and Y, 1 and 2 threads; the strides' padding untouched; bad calls */
START_TEST(qgemm_rows_are_qgemv)
{
    const int64_t Ms[] = {1, 2, 7, 17}, rowss[] = {1, 7, 17, 127, 1027}, ks[] = {32, 96, 768};
    for (int ti = 0; ti < 2; ti++)
        for (size_t a = 0; a < 4; a++)
            for (size_t b = 0; b < 5; b++)
                for (size_t c = 0; c < 3; c++) {
                    int type = ti ? PARLM_WT_Q4_0 : PARLM_WT_Q8_0;
                    int64_t M = Ms[a], rows = rowss[b], k = ks[c], ldx = k + 5, ldy = rows + 3;
                    int64_t ldw = row_bytes(type, k);
                    uint8_t *w = make_w(type, rows, k, ldw, 31 + (uint64_t)(a * 15 + b * 3 + c));
                    float *x = xmalloc((size_t)(M * ldx) * 4), *y = xmalloc((size_t)(M * ldy) * 4);
                    float *ref = xmalloc((size_t)rows * 4);
                    fill_range(x, M * ldx, 9 + a, -2.0f, 2.0f);
                    for (int nt = 1; nt <= 2; nt++) {
                        omp_set_num_threads(nt);
                        for (int64_t i = 0; i < M * ldy; i++)
                            y[i] = -7.0f;
                        ck_assert_int_eq(parlm_qgemm(type, M, rows, k, w, x, ldx, y, ldy), PARLM_OK);
                        for (int64_t i = 0; i < M; i++) {
                            ck_assert_int_eq(parlm_qgemv(type, rows, k, w, x + i * ldx, ref), PARLM_OK);
                            ck_assert_msg(memcmp(y + i * ldy, ref, (size_t)rows * 4) == 0,
                                          "%s M %lld rows %lld k %lld row %lld, %d threads",
                                          parlm_wtype_name(type), (long long)M, (long long)rows,
                                          (long long)k, (long long)i, nt);
                            for (int64_t j = rows; j < ldy; j++)
                                ck_assert(y[i * ldy + j] == -7.0f);
                        }
                    }
                    free(w), free(x), free(y), free(ref);
                }
    omp_set_num_threads(2);
    float x[128] = {0}, y[8];
    uint8_t w[4 * 68] = {0};
    expect_einval_msg(parlm_qgemm(PARLM_WT_Q8_0, -1, 2, 64, w, x, 64, y, 2), "M -1");
    expect_einval_msg(parlm_qgemm(PARLM_WT_Q8_0, 2, 2, 64, w, x, 63, y, 2), "ldx 63");
    expect_einval_msg(parlm_qgemm(PARLM_WT_Q8_0, 2, 2, 64, w, x, 64, y, 1), "ldy 1");
    expect_einval_msg(parlm_qgemm(PARLM_WT_Q4_0, 2, 2, 48, w, x, 64, y, 2), "multiple of 32");
    ck_assert_int_eq(parlm_qgemm(PARLM_WT_BF16, 2, 2, 64, w, x, 64, y, 2), PARLM_EUNSUPPORTED);
    parlm_clear_error();
    ck_assert_int_eq(parlm_qgemm(PARLM_WT_Q8_0, 0, 2, 64, w, x, 64, y, 2), PARLM_OK);
    ck_assert_int_eq(parlm_qgemm(PARLM_WT_Q8_0, 2, 2, 64, w, x, 64, y, 2), PARLM_OK);
    ck_assert(y[0] == 0.0f && y[1] == 0.0f && y[2] == 0.0f && y[3] == 0.0f);
}
END_TEST

/* parlm_qlayout: each type has a layout and a reason (measured times, unless the
 * environment forces one); parlm_qlayout_select sets it; bad calls */
START_TEST(qlayout_choice)
{
    const int types[2] = {PARLM_WT_Q8_0, PARLM_WT_Q4_0};
    const char *env = getenv("PARLM_QLAYOUT");
    for (int ti = 0; ti < 2; ti++) {
        const char *why = NULL;
        parlm_qlayout l = parlm_qlayout_current(types[ti], &why);
        ck_assert(l == PARLM_QLAYOUT_ROWS || l == PARLM_QLAYOUT_R8);
        ck_assert(why != NULL);
        if (!env || !*env) /* "measured rows 12.3 us, r8 45.6 us (...)" */
            ck_assert_msg(strstr(why, "measured rows ") && strstr(why, " us, r8 "), "%s", why);
        for (int li = 0; li < 2; li++) {
            parlm_qlayout want = li ? PARLM_QLAYOUT_R8 : PARLM_QLAYOUT_ROWS;
            ck_assert_int_eq(parlm_qlayout_select(types[ti], want), PARLM_OK);
            ck_assert_int_eq(parlm_qlayout_current(types[ti], &why), want);
            ck_assert_str_eq(why, "selected by the program");
        }
        ck_assert_int_eq(parlm_qlayout_select(types[ti], l), PARLM_OK);
    }
    ck_assert_str_eq(parlm_qlayout_name(PARLM_QLAYOUT_ROWS), "rows");
    ck_assert_str_eq(parlm_qlayout_name(PARLM_QLAYOUT_R8), "r8");
    ck_assert_str_eq(parlm_qlayout_name((parlm_qlayout)7), "unknown");
    ck_assert_int_eq(parlm_qlayout_select(PARLM_WT_BF16, PARLM_QLAYOUT_ROWS), PARLM_EUNSUPPORTED);
    expect_einval_msg(parlm_qlayout_select(PARLM_WT_Q8_0, (parlm_qlayout)7), "not a layout");
    parlm_clear_error();
}
END_TEST

/* Child: the two types' layouts and the Q8_0 reason, "q8 q4|why" */
static int qlayout_child(void)
{
    const char *why;
    parlm_qlayout l8 = parlm_qlayout_current(PARLM_WT_Q8_0, &why);
    printf("%s %s|%s", parlm_qlayout_name(l8),
           parlm_qlayout_name(parlm_qlayout_current(PARLM_WT_Q4_0, NULL)), why);
    return 0;
}

/* PARLM_QLAYOUT forces both types; another value is said in the reason, then measured */
START_TEST(qlayout_by_environment)
{
    char out[256];
    ck_assert_int_eq(run_child("--qlayout-child", "PARLM_QLAYOUT", "rows", out, sizeof out), 0);
    ck_assert_str_eq(out, "rows rows|forced by PARLM_QLAYOUT");
    ck_assert_int_eq(run_child("--qlayout-child", "PARLM_QLAYOUT", "r8", out, sizeof out), 0);
    ck_assert_str_eq(out, "r8 r8|forced by PARLM_QLAYOUT");
    ck_assert_int_eq(run_child("--qlayout-child", "PARLM_QLAYOUT", "r16", out, sizeof out), 0);
    ck_assert_msg(strstr(out, "|PARLM_QLAYOUT is not rows or r8: measured rows "), "%s", out);
}
END_TEST

static Suite *kernels_quant_suite(void)
{
    Suite *s = suite_create("quantized gemv kernels");
    TCase *tc = tcase_create("qgemv");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, quantize_every_set);
    tcase_add_test(tc, gemv_every_set_vs_scalar);
    tcase_add_test(tc, gemv_rows_any_range);
    tcase_add_test(tc, gemv_vs_dequantized);
    tcase_add_test(tc, gemv_extremes_exact);
    tcase_add_test(tc, qgemv_threads_and_errors);
    tcase_add_test(tc, qgemm_rows_are_qgemv);
    tcase_add_test(tc, repacked_every_set);
    tcase_add_test(tc, repacked_not_scalar);
    tcase_add_test(tc, qgemv_repacked_threads_and_errors);
    tcase_add_test(tc, qlayout_choice);
    tcase_add_test(tc, qlayout_by_environment);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--qlayout-child") == 0)
        return qlayout_child();
    if (find_self("test_kernels_quant") != 0)
        return EXIT_FAILURE;
    return run_suite(kernels_quant_suite());
}
